/* Floats (CPython 3.13's names and error conventions): an immutable C
 * double. */
#ifndef PY_FLOATOBJECT_H
#define PY_FLOATOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

typedef struct {
    PyObject_HEAD
    double ob_fval;
} PyFloatObject;

PyAPI_DATA(PyTypeObject) PyFloat_Type;

#define PyFloat_Check(op) PyObject_TypeCheck((op), &PyFloat_Type)
#define PyFloat_CheckExact(op) Py_IS_TYPE((op), &PyFloat_Type)

/* A new reference; NULL with MemoryError set. */
PyAPI_FUNC(PyObject *) PyFloat_FromDouble(double v);
/* float(str): decimal or exponent notation with optional underscores
 * between digits, inf/infinity/nan (any case), surrounding whitespace;
 * ValueError otherwise, TypeError if str is not a str. */
PyAPI_FUNC(PyObject *) PyFloat_FromString(PyObject *str);
/* op's value via __float__ (nb_float) or __index__ (nb_index); -1.0 with
 * TypeError set for anything else. */
PyAPI_FUNC(double) PyFloat_AsDouble(PyObject *op);

static inline double PyFloat_AS_DOUBLE(PyObject *op) { return ((PyFloatObject *)op)->ob_fval; }
#define PyFloat_AS_DOUBLE(op) PyFloat_AS_DOUBLE(_PyObject_CAST(op))

#endif /* PY_FLOATOBJECT_H */
