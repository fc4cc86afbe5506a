/* Raw memory interface.  Safe before Py_Initialize and without a thread state.
 * Backed by jemalloc (mallocx/sdallocx) or, in sanitizer and valgrind builds,
 * by the C library's allocator; see the 'allocator' meson option. */
#ifndef Py_PYMEM_H
#define Py_PYMEM_H

#include "pyport.h"

/* A request of 0 bytes returns a unique non-NULL pointer, as in CPython.
 * Failure returns NULL; no exception is set (there may be no thread state). */
PyAPI_FUNC(void *) PyMem_RawMalloc(size_t size);
PyAPI_FUNC(void *) PyMem_RawCalloc(size_t nelem, size_t elsize);
PyAPI_FUNC(void *) PyMem_RawRealloc(void *ptr, size_t new_size);
PyAPI_FUNC(void) PyMem_RawFree(void *ptr);

/* The "mem" domain: callers have an attached thread state (CPython's rule;
 * ftrt does not check it).  Same results as the raw domain; on failure NULL
 * is returned and no exception is set (PyMem_* never set one, as in
 * CPython: callers say PyErr_NoMemory()). */
PyAPI_FUNC(void *) PyMem_Malloc(size_t size);
PyAPI_FUNC(void *) PyMem_Calloc(size_t nelem, size_t elsize);
PyAPI_FUNC(void *) PyMem_Realloc(void *ptr, size_t new_size);
PyAPI_FUNC(void) PyMem_Free(void *ptr);

#define PyMem_New(type, n)                                                  \
    ((size_t)(n) > PY_SSIZE_T_MAX / sizeof(type) ? NULL                    \
        : (type *)PyMem_Malloc((size_t)(n) * sizeof(type)))
#define PyMem_Resize(p, type, n)                                            \
    ((p) = ((size_t)(n) > PY_SSIZE_T_MAX / sizeof(type)) ? NULL             \
        : (type *)PyMem_Realloc((p), (size_t)(n) * sizeof(type)))

#endif /* Py_PYMEM_H */
