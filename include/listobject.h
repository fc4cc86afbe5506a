/* Lists (CPython 3.13's API and layout).
 *
 * Free-threaded build: every mutation holds the list's critical section;
 * PyList_GetItemRef and iteration read without it (core/listobject.c
 * explains the protocol).  PyList_GetItem returns a borrowed reference and
 * the macros below read without any synchronisation: use them only on a
 * list no other thread can change (CPython's rule).
 */
#ifndef PY_LISTOBJECT_H
#define PY_LISTOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

typedef struct {
    PyObject_VAR_HEAD
    /* ob_item[0 .. ob_size) are the items; the array has room for
     * `allocated` (NULL and 0 when empty). */
    PyObject **ob_item;
    Py_ssize_t allocated;
} PyListObject;

PyAPI_DATA(PyTypeObject) PyList_Type;
PyAPI_DATA(PyTypeObject) PyListIter_Type;

#define PyList_Check(op) PyType_FastSubclass(Py_TYPE(op), Py_TPFLAGS_LIST_SUBCLASS)
#define PyList_CheckExact(op) Py_IS_TYPE((op), &PyList_Type)

PyAPI_FUNC(PyObject *) PyList_New(Py_ssize_t size);
PyAPI_FUNC(Py_ssize_t) PyList_Size(PyObject *list);
PyAPI_FUNC(PyObject *) PyList_GetItem(PyObject *list, Py_ssize_t index);     /* borrowed */
PyAPI_FUNC(PyObject *) PyList_GetItemRef(PyObject *list, Py_ssize_t index);  /* new */
PyAPI_FUNC(int) PyList_SetItem(PyObject *list, Py_ssize_t index, PyObject *item);  /* steals */
PyAPI_FUNC(int) PyList_Insert(PyObject *list, Py_ssize_t index, PyObject *item);
PyAPI_FUNC(int) PyList_Append(PyObject *list, PyObject *item);
PyAPI_FUNC(PyObject *) PyList_GetSlice(PyObject *list, Py_ssize_t low, Py_ssize_t high);
PyAPI_FUNC(int) PyList_SetSlice(PyObject *list, Py_ssize_t low, Py_ssize_t high,
                                PyObject *itemlist);
PyAPI_FUNC(int) PyList_Extend(PyObject *list, PyObject *iterable);
PyAPI_FUNC(int) PyList_Clear(PyObject *list);
PyAPI_FUNC(int) PyList_Sort(PyObject *list);
PyAPI_FUNC(int) PyList_Reverse(PyObject *list);
PyAPI_FUNC(PyObject *) PyList_AsTuple(PyObject *list);

#define _PyList_CAST(op) ((PyListObject *)(op))
static inline Py_ssize_t PyList_GET_SIZE(PyObject *op) { return Py_SIZE(op); }
#define PyList_GET_SIZE(op) PyList_GET_SIZE(_PyObject_CAST(op))
#define PyList_GET_ITEM(op, i) (_PyList_CAST(op)->ob_item[(i)])
static inline void
PyList_SET_ITEM(PyObject *op, Py_ssize_t index, PyObject *value)
{
    _PyList_CAST(op)->ob_item[index] = value;
}
#define PyList_SET_ITEM(op, index, value) \
    PyList_SET_ITEM(_PyObject_CAST(op), (index), _PyObject_CAST(value))

#endif /* PY_LISTOBJECT_H */
