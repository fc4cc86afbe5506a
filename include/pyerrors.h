/* Error reporting: the fatal-error path every layer uses for misuse, and the
 * per-thread exception state (core/errors.c, exception objects in
 * core/exceptions.c).
 *
 * The current exception belongs to the attached thread state: each thread
 * sees only its own.  Every PyErr_* function except
 * PyErr_GivenExceptionMatches needs an attached thread state; calling one
 * without is a fatal error naming the function.
 *
 * Exception objects are simple (a type and a UTF-8 message).  PyErr_Format
 * understands PyUnicode_FromFormat's conversions: %s %c %d %i %u %x %X %o
 * %p %% with the l, ll, z, t and j sizes, the - and 0 flags, widths and
 * precisions (also *), %T / %N (type names), and the object conversions
 * %S %R %A %U %V (str(), repr(), ascii(), a str).  PyErr_SetObject takes
 * None, NULL or an exception instance as the value (other values need
 * str). */
#ifndef Py_PYERRORS_H
#define Py_PYERRORS_H

#include "pyport.h"
#include "object.h"

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

/* ---- exception objects --------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    char *msg;               /* UTF-8 message (owned), or NULL */
    PyObject *args;          /* reserved for later issues; NULL */
    PyObject *context;       /* PyErr_SetRaisedException chains nothing yet */
} PyBaseExceptionObject;

PyAPI_DATA(PyObject *) PyExc_BaseException;
PyAPI_DATA(PyObject *) PyExc_Exception;
PyAPI_DATA(PyObject *) PyExc_ArithmeticError;
PyAPI_DATA(PyObject *) PyExc_LookupError;
PyAPI_DATA(PyObject *) PyExc_MemoryError;
PyAPI_DATA(PyObject *) PyExc_TypeError;
PyAPI_DATA(PyObject *) PyExc_ValueError;
PyAPI_DATA(PyObject *) PyExc_UnicodeError;
PyAPI_DATA(PyObject *) PyExc_UnicodeDecodeError;
PyAPI_DATA(PyObject *) PyExc_OSError;
PyAPI_DATA(PyObject *) PyExc_IndexError;
PyAPI_DATA(PyObject *) PyExc_KeyError;
PyAPI_DATA(PyObject *) PyExc_OverflowError;
PyAPI_DATA(PyObject *) PyExc_ZeroDivisionError;
PyAPI_DATA(PyObject *) PyExc_RuntimeError;
PyAPI_DATA(PyObject *) PyExc_SystemError;
PyAPI_DATA(PyObject *) PyExc_AttributeError;
PyAPI_DATA(PyObject *) PyExc_StopIteration;

#define PyExceptionClass_Check(x)                                           \
    (PyType_Check((x)) &&                                                   \
     PyType_FastSubclass((PyTypeObject *)(x), Py_TPFLAGS_BASE_EXC_SUBCLASS))
#define PyExceptionInstance_Check(x)                                        \
    PyType_FastSubclass(Py_TYPE(x), Py_TPFLAGS_BASE_EXC_SUBCLASS)

/* The message of an exception instance ("" if none); borrowed, valid while
 * the exception lives.  ftrt-specific until str exists. */
PyAPI_FUNC(const char *) PyException_GetMessageUTF8(PyObject *exc);

/* ---- the per-thread error indicator --------------------------------------- */

PyAPI_FUNC(void) PyErr_SetString(PyObject *exception, const char *message);
PyAPI_FUNC(void) PyErr_SetNone(PyObject *exception);
PyAPI_FUNC(void) PyErr_SetObject(PyObject *exception, PyObject *value);
PyAPI_FUNC(PyObject *) PyErr_Format(PyObject *exception, const char *format, ...);
PyAPI_FUNC(PyObject *) PyErr_Occurred(void);
PyAPI_FUNC(void) PyErr_Clear(void);
PyAPI_FUNC(PyObject *) PyErr_NoMemory(void);
PyAPI_FUNC(void) _PyErr_BadInternalCall(const char *filename, int lineno);
#define PyErr_BadInternalCall() _PyErr_BadInternalCall(__FILE__, __LINE__)
PyAPI_FUNC(int) PyErr_BadArgument(void);
PyAPI_FUNC(int) PyErr_ExceptionMatches(PyObject *exc);
PyAPI_FUNC(int) PyErr_GivenExceptionMatches(PyObject *given, PyObject *exc);
PyAPI_FUNC(PyObject *) PyErr_GetRaisedException(void);
PyAPI_FUNC(void) PyErr_SetRaisedException(PyObject *exc);
PyAPI_FUNC(void) PyErr_Print(void);
PyAPI_FUNC(void) PyErr_PrintEx(int set_sys_last_vars);
PyAPI_FUNC(void) PyErr_WriteUnraisable(PyObject *obj);

#endif /* Py_PYERRORS_H */
