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

#endif /* Py_PYMEM_H */
