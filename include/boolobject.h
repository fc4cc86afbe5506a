/* Booleans.  bool is a subclass of int (core/longobject.c), as in CPython:
 * Py_True and Py_False are immortal static int objects of PyBool_Type with
 * the values 1 and 0. */
#ifndef Py_BOOLOBJECT_H
#define Py_BOOLOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

PyAPI_DATA(PyTypeObject) PyBool_Type;
PyAPI_DATA(struct _longobject) _Py_FalseStruct;
PyAPI_DATA(struct _longobject) _Py_TrueStruct;

#define Py_False _PyObject_CAST(&_Py_FalseStruct)
#define Py_True _PyObject_CAST(&_Py_TrueStruct)
#define PyBool_Check(x) Py_IS_TYPE((x), &PyBool_Type)

static inline int Py_IsTrue(PyObject *x) { return Py_Is(x, Py_True); }
#define Py_IsTrue(x) Py_IsTrue(_PyObject_CAST(x))
static inline int Py_IsFalse(PyObject *x) { return Py_Is(x, Py_False); }
#define Py_IsFalse(x) Py_IsFalse(_PyObject_CAST(x))

/* A new reference to Py_True if v is non-zero, else to Py_False. */
PyAPI_FUNC(PyObject *) PyBool_FromLong(long v);

#define Py_RETURN_TRUE return Py_True
#define Py_RETURN_FALSE return Py_False

#endif /* Py_BOOLOBJECT_H */
