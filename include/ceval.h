/* Attaching and detaching the thread state, pending calls, safe points
 * (CPython's Include/ceval.h). */
#ifndef Py_CEVAL_H
#define Py_CEVAL_H

#include "pyport.h"
#include "pystate.h"

/* Detach the attached state and return it (fatal if there is none). */
PyAPI_FUNC(PyThreadState *) PyEval_SaveThread(void);
/* Attach tstate: waits for the GIL (GIL build) or for a stop-the-world to
 * end (free-threaded build); blocks forever during finalization. */
PyAPI_FUNC(void) PyEval_RestoreThread(PyThreadState *tstate);
PyAPI_FUNC(void) PyEval_AcquireThread(PyThreadState *tstate);
PyAPI_FUNC(void) PyEval_ReleaseThread(PyThreadState *tstate);

#define Py_BEGIN_ALLOW_THREADS { \
                        PyThreadState *_save; \
                        _save = PyEval_SaveThread();
#define Py_BLOCK_THREADS        PyEval_RestoreThread(_save);
#define Py_UNBLOCK_THREADS      _save = PyEval_SaveThread();
#define Py_END_ALLOW_THREADS    PyEval_RestoreThread(_save); \
                 }

/* Queue func(arg) for the main thread of the main interpreter; 0, or -1 if
 * the queue is full.  Callable from any thread, attached or not. */
PyAPI_FUNC(int) Py_AddPendingCall(int (*func)(void *), void *arg);
/* A safe point; in the main thread of the main interpreter it also runs the
 * queued pending calls.  0, or -1 if one of them returned -1. */
PyAPI_FUNC(int) Py_MakePendingCalls(void);

/* GIL build: how long a thread waiting for the GIL waits before it asks the
 * holder to drop it at its next safe point (CPython's sys.setswitchinterval,
 * in microseconds; default 5000).  The free-threaded build stores it. */
PyAPI_FUNC(void) _PyEval_SetSwitchInterval(unsigned long microseconds);
PyAPI_FUNC(unsigned long) _PyEval_GetSwitchInterval(void);

#endif /* Py_CEVAL_H */
