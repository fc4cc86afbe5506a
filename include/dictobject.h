/* Dictionaries (core/dictobject.c): CPython 3.13's PyDict_* API.
 *
 * Thread safety (free-threaded build), as in CPython 3.13t: every mutation
 * runs inside the dict's critical section; PyDict_GetItemRef,
 * PyDict_GetItemWithError, PyDict_GetItem and PyDict_Contains read without
 * locking.  PyDict_Next returns borrowed references and is only safe while
 * the caller holds the dict's critical section (Py_BEGIN_CRITICAL_SECTION).
 */
#ifndef PY_DICTOBJECT_H
#define PY_DICTOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

struct _dictkeysobject;
struct _dictvalues;

typedef struct {
    PyObject_HEAD
    Py_ssize_t ma_used;                /* number of items */
    uint64_t _ma_watcher_tag;          /* unused (no dict watchers yet) */
    struct _dictkeysobject *ma_keys;   /* NULL while empty; internal */
    struct _dictvalues *ma_values;     /* always NULL (no split tables) */
} PyDictObject;

PyAPI_DATA(PyTypeObject) PyDict_Type;
PyAPI_DATA(PyTypeObject) PyDictIterKey_Type;

#define PyDict_Check(op) PyType_FastSubclass(Py_TYPE(op), Py_TPFLAGS_DICT_SUBCLASS)
#define PyDict_CheckExact(op) Py_IS_TYPE((op), &PyDict_Type)

PyAPI_FUNC(PyObject *) PyDict_New(void);
PyAPI_FUNC(int) PyDict_SetItem(PyObject *mp, PyObject *key, PyObject *item);
PyAPI_FUNC(int) PyDict_SetItemString(PyObject *dp, const char *key, PyObject *item);
PyAPI_FUNC(PyObject *) PyDict_GetItem(PyObject *mp, PyObject *key);
PyAPI_FUNC(PyObject *) PyDict_GetItemWithError(PyObject *mp, PyObject *key);
PyAPI_FUNC(int) PyDict_GetItemRef(PyObject *mp, PyObject *key, PyObject **result);
PyAPI_FUNC(int) PyDict_GetItemStringRef(PyObject *mp, const char *key, PyObject **result);
PyAPI_FUNC(PyObject *) PyDict_GetItemString(PyObject *dp, const char *key);   /* borrowed */
PyAPI_FUNC(int) PyDict_DelItem(PyObject *mp, PyObject *key);
PyAPI_FUNC(int) PyDict_DelItemString(PyObject *dp, const char *key);
PyAPI_FUNC(int) PyDict_Contains(PyObject *mp, PyObject *key);
PyAPI_FUNC(int) PyDict_ContainsString(PyObject *mp, const char *key);
PyAPI_FUNC(Py_ssize_t) PyDict_Size(PyObject *mp);
PyAPI_FUNC(int) PyDict_Next(PyObject *mp, Py_ssize_t *pos, PyObject **key, PyObject **value);
PyAPI_FUNC(void) PyDict_Clear(PyObject *mp);
PyAPI_FUNC(PyObject *) PyDict_Copy(PyObject *mp);
PyAPI_FUNC(PyObject *) PyDict_Keys(PyObject *mp);
PyAPI_FUNC(PyObject *) PyDict_Values(PyObject *mp);
PyAPI_FUNC(PyObject *) PyDict_Items(PyObject *mp);
PyAPI_FUNC(int) PyDict_SetDefaultRef(PyObject *mp, PyObject *key, PyObject *default_value,
                                     PyObject **result);
PyAPI_FUNC(int) PyDict_Pop(PyObject *dict, PyObject *key, PyObject **result);
PyAPI_FUNC(int) PyDict_Update(PyObject *mp, PyObject *other);
PyAPI_FUNC(int) PyDict_Merge(PyObject *mp, PyObject *other, int override);

#endif /* PY_DICTOBJECT_H */
