/* Tuples (CPython 3.13's API and layout).
 *
 * A tuple is immutable once its creator hands it out: PyTuple_SetItem and
 * PyTuple_SET_ITEM are for filling a new tuple (refcount 1) only, so
 * readers need no lock.  The empty tuple is a static immortal singleton:
 * PyTuple_New(0) always returns it.
 */
#ifndef PY_TUPLEOBJECT_H
#define PY_TUPLEOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

typedef struct {
    PyObject_VAR_HEAD
    /* ob_item holds ob_size items (CPython declares one, the allocation
     * has room for ob_size). */
    PyObject *ob_item[1];
} PyTupleObject;

PyAPI_DATA(PyTypeObject) PyTuple_Type;
PyAPI_DATA(PyTypeObject) PyTupleIter_Type;

#define PyTuple_Check(op) PyType_FastSubclass(Py_TYPE(op), Py_TPFLAGS_TUPLE_SUBCLASS)
#define PyTuple_CheckExact(op) Py_IS_TYPE((op), &PyTuple_Type)

PyAPI_FUNC(PyObject *) PyTuple_New(Py_ssize_t size);
PyAPI_FUNC(Py_ssize_t) PyTuple_Size(PyObject *p);
PyAPI_FUNC(PyObject *) PyTuple_GetItem(PyObject *p, Py_ssize_t pos);     /* borrowed */
PyAPI_FUNC(int) PyTuple_SetItem(PyObject *p, Py_ssize_t pos, PyObject *o);  /* steals o */
PyAPI_FUNC(PyObject *) PyTuple_GetSlice(PyObject *p, Py_ssize_t low, Py_ssize_t high);
PyAPI_FUNC(PyObject *) PyTuple_Pack(Py_ssize_t n, ...);

#define _PyTuple_CAST(op) ((PyTupleObject *)(op))
static inline Py_ssize_t PyTuple_GET_SIZE(PyObject *op) { return Py_SIZE(op); }
#define PyTuple_GET_SIZE(op) PyTuple_GET_SIZE(_PyObject_CAST(op))
#define PyTuple_GET_ITEM(op, i) (_PyTuple_CAST(op)->ob_item[(i)])
static inline void
PyTuple_SET_ITEM(PyObject *op, Py_ssize_t index, PyObject *value)
{
    _PyTuple_CAST(op)->ob_item[index] = value;
}
#define PyTuple_SET_ITEM(op, index, value) \
    PyTuple_SET_ITEM(_PyObject_CAST(op), (index), _PyObject_CAST(value))

#endif /* PY_TUPLEOBJECT_H */
