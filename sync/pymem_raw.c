/* The raw heap: PyMem_Raw* and the sized internal allocator.
 *
 * Backend, chosen at build time (meson option 'allocator'):
 *   jemalloc  mallocx / rallocx / sdallocx.  Sized free skips jemalloc's
 *             size look-up; internal callers that know the size use it.
 *   system    malloc / realloc / free, so ASan, TSan and valgrind see every
 *             block (they cannot see mallocx memory).
 * This file is the only place that knows which one is linked.
 *
 * All functions are safe before Py_Initialize and without a thread state.
 * A request for 0 bytes allocates 1, so the result is unique and non-NULL,
 * as in CPython.
 */
#include "ft_alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef FT_USE_JEMALLOC
#include <jemalloc/jemalloc.h>
#define FT_BACKEND_NAME "jemalloc"
#define backend_malloc(n)        mallocx((n), 0)
#define backend_calloc(n)        mallocx((n), MALLOCX_ZERO)
#define backend_realloc(p, n)    rallocx((p), (n), 0)
#define backend_free(p)          dallocx((p), 0)
#define backend_sized_free(p, n) sdallocx((p), (n), 0)
#else
#define FT_BACKEND_NAME "system"
#define backend_malloc(n)        malloc(n)
#define backend_calloc(n)        calloc(1, (n))
#define backend_realloc(p, n)    realloc((p), (n))
#define backend_free(p)          free(p)
#define backend_sized_free(p, n) ((void)(n), free(p))
#endif

/* Failure injection for tests: the allocation that brings the counter to
 * zero fails.  One relaxed load on the normal path. */
static _Atomic long fail_countdown;

void
ft_alloc_fail_after(long nth)
{
    atomic_store_explicit(&fail_countdown, nth > 0 ? nth : 0, memory_order_relaxed);
}

static inline bool
injected_failure(void)
{
    if (ft_likely(atomic_load_explicit(&fail_countdown, memory_order_relaxed) == 0)) {
        return false;
    }
    return atomic_fetch_sub_explicit(&fail_countdown, 1, memory_order_relaxed) == 1;
}

const char *
ft_allocator_name(void)
{
    return FT_BACKEND_NAME;
}

void *
ft_raw_alloc(size_t size)
{
    if (injected_failure()) {
        return NULL;
    }
    return backend_malloc(size ? size : 1);
}

void *
ft_raw_calloc(size_t size)
{
    if (injected_failure()) {
        return NULL;
    }
    return backend_calloc(size ? size : 1);
}

void
ft_raw_free(void *p, size_t size)
{
    if (p) {
        backend_sized_free(p, size ? size : 1);
    }
}

void *
PyMem_RawMalloc(size_t size)
{
    if (size > (size_t)PY_SSIZE_T_MAX) {
        return NULL;
    }
    return ft_raw_alloc(size);
}

void *
PyMem_RawCalloc(size_t nelem, size_t elsize)
{
    if (elsize != 0 && nelem > (size_t)PY_SSIZE_T_MAX / elsize) {
        return NULL;   /* the product would overflow */
    }
    return ft_raw_calloc(nelem * elsize);
}

void *
PyMem_RawRealloc(void *ptr, size_t new_size)
{
    if (new_size > (size_t)PY_SSIZE_T_MAX) {
        return NULL;
    }
    if (ptr == NULL) {
        return ft_raw_alloc(new_size);
    }
    if (injected_failure()) {
        return NULL;   /* like realloc: the old block stays valid */
    }
    return backend_realloc(ptr, new_size ? new_size : 1);
}

void
PyMem_RawFree(void *ptr)
{
    if (ptr) {
        backend_free(ptr);
    }
}
