/* The raw heap: PyMem_Raw* and the sized internal allocator.
 *
 * Backend, chosen at build time (meson option 'allocator'):
 *   jemalloc  jemalloc's malloc / calloc / realloc / free (see below why
 *             not mallocx & co., which remain the fallback).
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
#include <dlfcn.h>
#include <jemalloc/jemalloc.h>
#define FT_BACKEND_NAME "jemalloc"

/* jemalloc's own malloc/calloc/realloc/free.  Its *allocx API has no fast
 * path in jemalloc 5.3 (mallocx + sdallocx of 48 bytes: 6.8 ns on the
 * benchmark machine; malloc + free: 2.95 ns), but the plain names cannot be
 * called directly: in a process that does not link jemalloc itself, they
 * resolve to the C library's (libc comes before libftrt's dependencies in
 * the global search order).  So they are looked up in jemalloc's own object
 * (found through mallocx, which only jemalloc defines) when the library is
 * loaded; until then, and if the look-up fails, the *allocx calls serve.
 * Memory from either path belongs to the same jemalloc. */
static struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
} je;

__attribute__((constructor)) static void
find_jemalloc(void)
{
    /* POSIX: function and object pointers convert (dladdr, dlsym); ISO C
     * does not say so, hence memcpy */
    void *(*mallocx_fn)(size_t, int) = mallocx;
    void *addr;
    memcpy(&addr, &mallocx_fn, sizeof addr);
    Dl_info info;
    if (!dladdr(addr, &info) || info.dli_fname == NULL) {
        return;
    }
    void *h = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL) {
        return;
    }
    void *m = dlsym(h, "malloc"), *c = dlsym(h, "calloc");
    void *r = dlsym(h, "realloc"), *f = dlsym(h, "free");
    if (m && c && r && f) {
        void *(*malloc_fn)(size_t);
        memcpy(&malloc_fn, &m, sizeof m);
        memcpy(&je.calloc, &c, sizeof c);
        memcpy(&je.realloc, &r, sizeof r);
        memcpy(&je.free, &f, sizeof f);
        __atomic_store_n(&je.malloc, malloc_fn, __ATOMIC_RELEASE);   /* last: publishes */
    }
    dlclose(h);   /* drops only the reference NOLOAD took */
}

static inline bool
je_found(void)
{
    return ft_likely(__atomic_load_n(&je.malloc, __ATOMIC_ACQUIRE) != NULL);
}

#define backend_malloc(n)        (je_found() ? je.malloc(n) : mallocx((n), 0))
#define backend_calloc(n)        (je_found() ? je.calloc(1, (n)) : mallocx((n), MALLOCX_ZERO))
#define backend_realloc(p, n)    (je_found() ? je.realloc((p), (n)) : rallocx((p), (n), 0))
#define backend_free(p)          (je_found() ? je.free(p) : dallocx((p), 0))
/* free beats sdallocx here (2.95 vs 4.6 ns a pair): its size look-up is
 * cheaper than sdallocx's slower entry */
#define backend_sized_free(p, n) (je_found() ? je.free(p) : sdallocx((p), (n), 0))

/* jemalloc's options for the heap it gives this library.  jemalloc reads the
 * exported variable malloc_conf once, when it initialises, then the
 * MALLOC_CONF environment variable, whose settings override these.  The
 * definition is weak: a program that defines malloc_conf itself replaces
 * ours, whether it links this library statically or not.
 *
 *   slab_sizes:1-256:1   every size class up to 256 bytes carves its regions
 *       from one-page slabs.  By default jemalloc gives some classes
 *       multi-page slabs (80 bytes, a free-threaded list with its GC
 *       pre-header: 5 pages), and a slab may reuse a dirty (freed, still
 *       mapped) extent only if that extent is at most 64 times its size
 *       (opt.lg_extent_max_active_fit).  Once freed slabs had coalesced into
 *       extents of several MiB, every round of "create 1e6 lists, free them"
 *       mapped fresh pages and faulted them in again: 37,000 page faults a
 *       round where the GIL build (64-byte lists, one-page slabs) took
 *       2,000, and 157 ms against 88 ms with this setting.  One-page slabs
 *       waste at most 96 bytes a page in these classes (80: 16, 160: 96). */
Py_EXPORTED_SYMBOL __attribute__((weak)) const char *malloc_conf = "slab_sizes:1-256:1";
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

bool
ft_raw_grow_in_place(void *p, size_t size)
{
#ifdef FT_USE_JEMALLOC
    /* xallocx answers the block's size after trying; it never moves it */
    return xallocx(p, size, 0, 0) >= size;
#else
    (void)p;
    (void)size;
    return false;
#endif
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
