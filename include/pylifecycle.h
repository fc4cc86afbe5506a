/* Initialization, finalization, fork, version strings (CPython's
 * Include/pylifecycle.h). */
#ifndef Py_PYLIFECYCLE_H
#define Py_PYLIFECYCLE_H

#include "pyport.h"
#include "pystate.h"
#include "cpython/initconfig.h"

/* Bring up the runtime and the main interpreter and leave the calling
 * thread with an attached thread state.  A second call is a no-op. */
PyAPI_FUNC(void) Py_Initialize(void);
PyAPI_FUNC(void) Py_InitializeEx(int initsigs);
PyAPI_FUNC(PyStatus) Py_InitializeFromConfig(const PyConfig *config);
PyAPI_FUNC(int) Py_IsInitialized(void);
PyAPI_FUNC(int) Py_IsFinalizing(void);

/* Tear everything down; call it with the thread state Py_Initialize left
 * attached.  Other threads that try to attach afterwards block forever.
 * Returns 0 (or -1 if a pending error could not be handled). */
PyAPI_FUNC(int) Py_FinalizeEx(void);
PyAPI_FUNC(void) Py_Finalize(void);

/* Register a function Py_FinalizeEx calls at its very end, after the
 * runtime is gone (no API may be used).  Called last-registered first;
 * at most 32; 0 on success, -1 if the table is full. */
PyAPI_FUNC(int) Py_AtExit(void (*func)(void));
/* Per-interpreter exit callback, run at the start of finalization with the
 * finalizing thread attached.  Needs an attached thread state of interp. */
PyAPI_FUNC(int) PyUnstable_AtExit(PyInterpreterState *interp, void (*func)(void *), void *data);

/* fork(): call BeforeFork in the parent, then AfterFork_Parent there and
 * AfterFork_Child in the child (as CPython's os.fork does). */
PyAPI_FUNC(void) PyOS_BeforeFork(void);
PyAPI_FUNC(void) PyOS_AfterFork_Parent(void);
PyAPI_FUNC(void) PyOS_AfterFork_Child(void);

/* Static strings, safe before initialization. */
PyAPI_FUNC(const char *) Py_GetVersion(void);
PyAPI_FUNC(const char *) Py_GetPlatform(void);
PyAPI_FUNC(const char *) Py_GetCopyright(void);
PyAPI_FUNC(const char *) Py_GetCompiler(void);
PyAPI_FUNC(const char *) Py_GetBuildInfo(void);

#endif /* Py_PYLIFECYCLE_H */
