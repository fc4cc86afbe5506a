/* Integers (CPython 3.13's names and error conventions).
 *
 * ftrt's int holds one int64_t: values outside [-2**63, 2**63) are not
 * representable, so where CPython would grow the number (arithmetic,
 * PyLong_FromUnsignedLong(ULONG_MAX), PyLong_FromDouble(1e30)) ftrt raises
 * OverflowError.  docs/containers.md ("Numbers") lists the differences.
 * The small ints -5..256 are static immortal objects. */
#ifndef PY_LONGOBJECT_H
#define PY_LONGOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

/* CPython keeps the layout in cpython/longintrepr.h; ftrt's is one word. */
typedef struct _longobject PyLongObject;
struct _longobject {
    PyObject_HEAD
    int64_t long_value;
};

PyAPI_DATA(PyTypeObject) PyLong_Type;

#define PyLong_Check(op) PyType_FastSubclass(Py_TYPE(op), Py_TPFLAGS_LONG_SUBCLASS)
#define PyLong_CheckExact(op) Py_IS_TYPE((op), &PyLong_Type)

/* New references; NULL with an exception set (MemoryError; OverflowError
 * for a value outside int64, see above; ValueError for a NaN double). */
PyAPI_FUNC(PyObject *) PyLong_FromLong(long v);
PyAPI_FUNC(PyObject *) PyLong_FromUnsignedLong(unsigned long v);
PyAPI_FUNC(PyObject *) PyLong_FromSsize_t(Py_ssize_t v);
PyAPI_FUNC(PyObject *) PyLong_FromSize_t(size_t v);
PyAPI_FUNC(PyObject *) PyLong_FromLongLong(long long v);
PyAPI_FUNC(PyObject *) PyLong_FromUnsignedLongLong(unsigned long long v);
PyAPI_FUNC(PyObject *) PyLong_FromDouble(double v);
/* Parse str as int() does: optional whitespace and sign, a 0x/0o/0b prefix
 * (base 0: the prefix decides, else base 10 without leading zeros, or the
 * prefix matching `base`), digits with single underscores between them,
 * optional whitespace.  ValueError for anything else or a base outside
 * 0 and 2..36; *pend (if pend) is set past the text on success, at the
 * offending character on error. */
PyAPI_FUNC(PyObject *) PyLong_FromString(const char *str, char **pend, int base);

/* -1 (-1.0, (unsigned)-1) with an exception set on failure: callers check
 * PyErr_Occurred().  AsLong, AsLongAndOverflow and AsLongLong accept any
 * object with __index__ (nb_index); the others want an int (TypeError). */
PyAPI_FUNC(long) PyLong_AsLong(PyObject *obj);
PyAPI_FUNC(long) PyLong_AsLongAndOverflow(PyObject *obj, int *overflow);
PyAPI_FUNC(long long) PyLong_AsLongLong(PyObject *obj);
PyAPI_FUNC(long long) PyLong_AsLongLongAndOverflow(PyObject *obj, int *overflow);
PyAPI_FUNC(Py_ssize_t) PyLong_AsSsize_t(PyObject *pylong);
PyAPI_FUNC(size_t) PyLong_AsSize_t(PyObject *pylong);
PyAPI_FUNC(unsigned long) PyLong_AsUnsignedLong(PyObject *pylong);
PyAPI_FUNC(unsigned long long) PyLong_AsUnsignedLongLong(PyObject *pylong);
PyAPI_FUNC(double) PyLong_AsDouble(PyObject *pylong);
/* CPython 3.13: like PyLong_AsLong, OverflowError outside the C int range. */
PyAPI_FUNC(int) PyLong_AsInt(PyObject *obj);
/* The value modulo 2**64 (no overflow check; __index__ accepted). */
PyAPI_FUNC(unsigned long) PyLong_AsUnsignedLongMask(PyObject *obj);
PyAPI_FUNC(unsigned long long) PyLong_AsUnsignedLongLongMask(PyObject *obj);
/* A pointer as an int and back (user-space addresses fit int64). */
PyAPI_FUNC(PyObject *) PyLong_FromVoidPtr(void *p);
PyAPI_FUNC(void *) PyLong_AsVoidPtr(PyObject *pylong);

#endif /* PY_LONGOBJECT_H */
