/* Error reporting.  The exception machinery arrives with the object core;
 * what exists now is the fatal-error path every layer uses for misuse. */
#ifndef Py_PYERRORS_H
#define Py_PYERRORS_H

#include "pyport.h"

/* Print "Fatal Python error: FUNC: MESSAGE" to stderr and abort().
 * Py_FatalError() is a macro that passes the calling function's name, as in
 * CPython; the function of the same name stays exported for callers that
 * cannot use macros. */
PyAPI_FUNC(void) _Py_NO_RETURN _Py_FatalErrorFunc(const char *func, const char *message);
PyAPI_FUNC(void) _Py_NO_RETURN Py_FatalError(const char *message);
#define Py_FatalError(message) _Py_FatalErrorFunc(__func__, (message))

/* A safe point (docs/threads.md).  ftrt installs no signal handlers and has
 * no Python-level handlers to run, so this runs what is due at a safe point
 * (GIL hand-off, stop-the-world, pending calls in the main thread) and
 * returns 0, or -1 if a pending call failed. */
PyAPI_FUNC(int) PyErr_CheckSignals(void);

#endif /* Py_PYERRORS_H */
