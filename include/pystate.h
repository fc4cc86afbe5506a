/* Thread states and interpreter states (CPython's Include/pystate.h and
 * Include/cpython/pystate.h).
 *
 * A PyThreadState belongs to one interpreter and is attached to at most one
 * OS thread at a time; a thread has at most one attached state.  Only the
 * `interp` member is public; the rest lives in core/ (ft_tstate).
 */
#ifndef Py_PYSTATE_H
#define Py_PYSTATE_H

#include <stdint.h>
#include "pyport.h"

typedef struct _is PyInterpreterState;
typedef struct _ts PyThreadState;

struct _ts {
    /* The interpreter that owns this thread state.  Read-only. */
    PyInterpreterState *interp;
};

/* ---- thread states --------------------------------------------------- */

/* A new, detached thread state of interp; NULL if out of memory. */
PyAPI_FUNC(PyThreadState *) PyThreadState_New(PyInterpreterState *interp);
/* Reset a state's contents: it must be attached to the calling thread or
 * not attached at all. */
PyAPI_FUNC(void) PyThreadState_Clear(PyThreadState *tstate);
/* Free a state that is not attached (fatal if it is). */
PyAPI_FUNC(void) PyThreadState_Delete(PyThreadState *tstate);
/* Detach and free the calling thread's attached state. */
PyAPI_FUNC(void) PyThreadState_DeleteCurrent(void);

/* The attached state; fatal if there is none. */
PyAPI_FUNC(PyThreadState *) PyThreadState_Get(void);
#define PyThreadState_GET() PyThreadState_Get()
/* The attached state, or NULL. */
PyAPI_FUNC(PyThreadState *) PyThreadState_GetUnchecked(void);
/* Detach the current state (if any), attach tstate (if not NULL); returns
 * the previous state.  Blocks forever during finalization. */
PyAPI_FUNC(PyThreadState *) PyThreadState_Swap(PyThreadState *tstate);
PyAPI_FUNC(PyInterpreterState *) PyThreadState_GetInterpreter(PyThreadState *tstate);
PyAPI_FUNC(uint64_t) PyThreadState_GetID(PyThreadState *tstate);
/* The attached state's dict for extensions' per-thread data (borrowed);
 * NULL, without an exception, if no state is attached or it cannot be
 * created. */
PyAPI_FUNC(PyObject *) PyThreadState_GetDict(void);
/* Schedule `exc` (an exception class or instance; NULL: cancel) to be
 * raised in every state of the current interpreter bound to the OS thread
 * `id` (PyThread_get_thread_ident).  ftrt has no evaluation loop: the
 * exception is raised by that thread's next PyErr_CheckSignals or
 * Py_MakePendingCalls, which then return -1.  Returns how many states were
 * found; never raises.  Needs an attached thread state. */
PyAPI_FUNC(int) PyThreadState_SetAsyncExc(unsigned long id, PyObject *exc);
/* The frame the state is executing: always NULL (there is no evaluator). */
struct _frame;
PyAPI_FUNC(struct _frame *) PyThreadState_GetFrame(PyThreadState *tstate);

/* ---- interpreters and walking (debuggers, profilers) ------------------ */

PyAPI_FUNC(PyInterpreterState *) PyInterpreterState_Get(void);
PyAPI_FUNC(int64_t) PyInterpreterState_GetID(PyInterpreterState *interp);
/* interp's dict for extensions' per-interpreter data (borrowed); NULL,
 * without an exception, if it cannot be created. */
PyAPI_FUNC(PyObject *) PyInterpreterState_GetDict(PyInterpreterState *interp);
PyAPI_FUNC(PyInterpreterState *) PyInterpreterState_Head(void);
PyAPI_FUNC(PyInterpreterState *) PyInterpreterState_Main(void);
PyAPI_FUNC(PyInterpreterState *) PyInterpreterState_Next(PyInterpreterState *interp);
/* Walking the thread states of an interpreter never blocks and never sees
 * freed memory as long as the walking thread stays attached and reaches no
 * safe point between the calls (docs/threads.md, "Walking thread states"). */
PyAPI_FUNC(PyThreadState *) PyInterpreterState_ThreadHead(PyInterpreterState *interp);
PyAPI_FUNC(PyThreadState *) PyThreadState_Next(PyThreadState *tstate);

/* ---- the GIL-state API (foreign threads; soft-deprecated in 3.15) ------ */

typedef enum { PyGILState_LOCKED, PyGILState_UNLOCKED } PyGILState_STATE;

PyAPI_FUNC(PyGILState_STATE) PyGILState_Ensure(void);
PyAPI_FUNC(void) PyGILState_Release(PyGILState_STATE oldstate);
PyAPI_FUNC(PyThreadState *) PyGILState_GetThisThreadState(void);
PyAPI_FUNC(int) PyGILState_Check(void);

/* ---- PEP 788: finalization guards, interpreter views (CPython 3.15) ---- */

typedef struct PyInterpreterGuard PyInterpreterGuard;
typedef struct PyInterpreterView PyInterpreterView;
typedef struct PyThreadStateToken PyThreadStateToken;

PyAPI_FUNC(PyInterpreterGuard *) PyInterpreterGuard_FromCurrent(void);
PyAPI_FUNC(PyInterpreterGuard *) PyInterpreterGuard_FromView(PyInterpreterView *view);
PyAPI_FUNC(void) PyInterpreterGuard_Close(PyInterpreterGuard *guard);

PyAPI_FUNC(PyInterpreterView *) PyInterpreterView_FromCurrent(void);
PyAPI_FUNC(PyInterpreterView *) PyInterpreterView_FromMain(void);
PyAPI_FUNC(void) PyInterpreterView_Close(PyInterpreterView *view);

PyAPI_FUNC(PyThreadStateToken *) PyThreadState_Ensure(PyInterpreterGuard *guard);
PyAPI_FUNC(PyThreadStateToken *) PyThreadState_EnsureFromView(PyInterpreterView *view);
PyAPI_FUNC(void) PyThreadState_Release(PyThreadStateToken *token);

/* ftrt extension: what stopped the world and for how long. */
#include "cpython/stoptheworld.h"

#endif /* Py_PYSTATE_H */
