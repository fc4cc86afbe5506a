/* Object memory: the object domain allocator and object creation.
 *
 * Every allocating function returns NULL on failure; those that create an
 * object (PyObject_New*, PyObject_GC_New*, PyType_GenericAlloc) also set
 * MemoryError.  PyObject_Malloc & co. set nothing (CPython's rule).
 *
 * GC objects (types with Py_TPFLAGS_HAVE_GC) carry a small pre-header the
 * collector uses to find them (core/obmalloc.c explains the layout); they
 * must be allocated with PyObject_GC_New / NewVar / PyType_GenericAlloc and
 * freed with PyObject_GC_Del, never with PyObject_Free.
 */
#ifndef Py_OBJIMPL_H
#define Py_OBJIMPL_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

PyAPI_FUNC(void *) PyObject_Malloc(size_t size);
PyAPI_FUNC(void *) PyObject_Calloc(size_t nelem, size_t elsize);
PyAPI_FUNC(void *) PyObject_Realloc(void *ptr, size_t new_size);
PyAPI_FUNC(void) PyObject_Free(void *ptr);

/* Initialise the header of memory the caller allocated (count 1, owned by
 * the calling thread); returns op. */
PyAPI_FUNC(PyObject *) PyObject_Init(PyObject *op, PyTypeObject *type);
PyAPI_FUNC(PyVarObject *) PyObject_InitVar(PyVarObject *op, PyTypeObject *type,
                                           Py_ssize_t size);

PyAPI_FUNC(PyObject *) _PyObject_New(PyTypeObject *type);
PyAPI_FUNC(PyVarObject *) _PyObject_NewVar(PyTypeObject *type, Py_ssize_t nitems);
#define PyObject_New(type, typeobj) ((type *)_PyObject_New(typeobj))
#define PyObject_NewVar(type, typeobj, n) ((type *)_PyObject_NewVar((typeobj), (n)))
#define PyObject_Del PyObject_Free
#define PyObject_DEL PyObject_Free
#define PyObject_NEW PyObject_New
#define PyObject_NEW_VAR PyObject_NewVar

/* Size of a variable-size object of type with n items. */
#define _PyObject_SIZE(typeobj) ((typeobj)->tp_basicsize)
#define _PyObject_VAR_SIZE(typeobj, n)                                      \
    ((size_t)(((typeobj)->tp_basicsize + (n) * (typeobj)->tp_itemsize + 7) & ~(Py_ssize_t)7))

/* ---- the cycle collector's side (the collector itself: gc/) --------------- */

PyAPI_FUNC(PyObject *) _PyObject_GC_New(PyTypeObject *type);
PyAPI_FUNC(PyVarObject *) _PyObject_GC_NewVar(PyTypeObject *type, Py_ssize_t nitems);
#define PyObject_GC_New(type, typeobj) ((type *)_PyObject_GC_New(typeobj))
#define PyObject_GC_NewVar(type, typeobj, n) ((type *)_PyObject_GC_NewVar((typeobj), (n)))
PyAPI_FUNC(PyVarObject *) _PyObject_GC_Resize(PyVarObject *op, Py_ssize_t nitems);
#define PyObject_GC_Resize(type, op, n) ((type *)_PyObject_GC_Resize(_PyVarObject_CAST(op), (n)))
PyAPI_FUNC(void) PyObject_GC_Track(void *op);
PyAPI_FUNC(void) PyObject_GC_UnTrack(void *op);
PyAPI_FUNC(int) PyObject_GC_IsTracked(PyObject *op);
PyAPI_FUNC(int) PyObject_GC_IsFinalized(PyObject *op);
PyAPI_FUNC(void) PyObject_GC_Del(void *op);

#define PyObject_IS_GC(o) PyType_HasFeature(Py_TYPE(o), Py_TPFLAGS_HAVE_GC)

/* The collector (gc/gc.c).  PyGC_Collect returns the number of unreachable
 * objects found (0 if a collection is already running in another thread or
 * lower on this one's stack); Enable/Disable return the previous state and
 * affect automatic collection only. */
PyAPI_FUNC(Py_ssize_t) PyGC_Collect(void);
PyAPI_FUNC(int) PyGC_Enable(void);
PyAPI_FUNC(int) PyGC_Disable(void);
PyAPI_FUNC(int) PyGC_IsEnabled(void);

#include "cpython/gc.h"

#endif /* Py_OBJIMPL_H */
