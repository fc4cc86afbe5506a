/* The abstract object protocol (CPython 3.13 names and error conventions):
 * generic operations that dispatch on the type's slots. */
#ifndef PY_ABSTRACT_H
#define PY_ABSTRACT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

PyAPI_FUNC(Py_ssize_t) PyObject_Size(PyObject *o);
PyAPI_FUNC(Py_ssize_t) PyObject_Length(PyObject *o);
PyAPI_FUNC(PyObject *) PyObject_GetItem(PyObject *o, PyObject *key);
PyAPI_FUNC(int) PyObject_SetItem(PyObject *o, PyObject *key, PyObject *v);
PyAPI_FUNC(int) PyObject_DelItem(PyObject *o, PyObject *key);
PyAPI_FUNC(int) PyObject_IsTrue(PyObject *o);
PyAPI_FUNC(int) PyObject_Not(PyObject *o);

PyAPI_FUNC(PyObject *) PyObject_GetIter(PyObject *o);
PyAPI_FUNC(PyObject *) PyObject_SelfIter(PyObject *o);
PyAPI_FUNC(int) PyIter_Check(PyObject *o);
/* The next item (new reference); NULL at the end (no exception) or on an
 * error (exception set).  StopIteration raised by tp_iternext is cleared. */
PyAPI_FUNC(PyObject *) PyIter_Next(PyObject *iter);

PyAPI_FUNC(int) PySequence_Check(PyObject *o);
PyAPI_FUNC(Py_ssize_t) PySequence_Size(PyObject *o);
PyAPI_FUNC(Py_ssize_t) PySequence_Length(PyObject *o);
PyAPI_FUNC(PyObject *) PySequence_GetItem(PyObject *o, Py_ssize_t i);
PyAPI_FUNC(int) PySequence_SetItem(PyObject *o, Py_ssize_t i, PyObject *v);
PyAPI_FUNC(int) PySequence_DelItem(PyObject *o, Py_ssize_t i);
PyAPI_FUNC(int) PySequence_Contains(PyObject *seq, PyObject *ob);
/* How many items equal ob; the index of the first (ValueError if none). */
PyAPI_FUNC(Py_ssize_t) PySequence_Count(PyObject *seq, PyObject *ob);
PyAPI_FUNC(Py_ssize_t) PySequence_Index(PyObject *seq, PyObject *ob);
/* s + o, o * count (count <= 0: empty), and the in-place forms (a list
 * is changed and returned; a type without them gets the plain ones). */
PyAPI_FUNC(PyObject *) PySequence_Concat(PyObject *s, PyObject *o);
PyAPI_FUNC(PyObject *) PySequence_Repeat(PyObject *o, Py_ssize_t count);
PyAPI_FUNC(PyObject *) PySequence_InPlaceConcat(PyObject *s, PyObject *o);
PyAPI_FUNC(PyObject *) PySequence_InPlaceRepeat(PyObject *o, Py_ssize_t count);
/* s[i1:i2] of an exact list or tuple (no slice objects yet: any other
 * type raises TypeError, "unsliceable"). */
PyAPI_FUNC(PyObject *) PySequence_GetSlice(PyObject *s, Py_ssize_t i1, Py_ssize_t i2);
PyAPI_FUNC(PyObject *) PySequence_Tuple(PyObject *o);
PyAPI_FUNC(PyObject *) PySequence_List(PyObject *o);
/* o itself if it is a list or tuple, else a new list of its items; m is
 * the TypeError message if o is not iterable. */
PyAPI_FUNC(PyObject *) PySequence_Fast(PyObject *o, const char *m);
#define PySequence_Fast_GET_SIZE(o) \
    (PyList_Check(o) ? PyList_GET_SIZE(o) : PyTuple_GET_SIZE(o))
#define PySequence_Fast_GET_ITEM(o, i) \
    (PyList_Check(o) ? PyList_GET_ITEM((o), (i)) : PyTuple_GET_ITEM((o), (i)))
#define PySequence_Fast_ITEMS(o) \
    (PyList_Check(o) ? ((PyListObject *)(o))->ob_item : ((PyTupleObject *)(o))->ob_item)

PyAPI_FUNC(int) PyIndex_Check(PyObject *o);
/* o's __index__ (nb_index), which must return an int: a new reference to
 * an int, or NULL with TypeError. */
PyAPI_FUNC(PyObject *) PyNumber_Index(PyObject *o);
/* o's index as a Py_ssize_t; if it does not fit: exc == NULL clamps to
 * PY_SSIZE_T_MIN / MAX, else raises exc.  -1 with an exception on error. */
PyAPI_FUNC(Py_ssize_t) PyNumber_AsSsize_t(PyObject *o, PyObject *exc);

#endif /* PY_ABSTRACT_H */
