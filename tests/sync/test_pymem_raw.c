/* Tests for sync/pymem_raw.c: PyMem_Raw* and the sized internal allocator. */
#include "harness.h"
#include "test_util.h"

#include "ft_alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef FT_USE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

static bool
all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        if (c[i] != 0) {
            return false;
        }
    }
    return true;
}

static bool
has_pattern(const void *p, size_t n, unsigned char seed)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        if (c[i] != (unsigned char)(seed + i)) {
            return false;
        }
    }
    return true;
}

static void
fill_pattern(void *p, size_t n, unsigned char seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        c[i] = (unsigned char)(seed + i);
    }
}

Test(pymem_raw, malloc_and_free)
{
    char *p = PyMem_RawMalloc(100);
    cr_assert_not_null(p);
    fill_pattern(p, 100, 3);   /* writable over its whole size (ASan checks) */
    char *q = PyMem_RawMalloc(100);
    cr_assert_not_null(q);
    cr_assert_neq(p, q);
    cr_assert(has_pattern(p, 100, 3));
    PyMem_RawFree(p);
    PyMem_RawFree(q);
    PyMem_RawFree(NULL);
}

Test(pymem_raw, zero_size_is_unique_non_null)
{
    void *a = PyMem_RawMalloc(0);
    void *b = PyMem_RawMalloc(0);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_neq(a, b);

    void *c = PyMem_RawCalloc(0, 0);
    void *d = PyMem_RawCalloc(0, 16);
    void *e = PyMem_RawCalloc(16, 0);
    cr_assert_not_null(c);
    cr_assert_not_null(d);
    cr_assert_not_null(e);
    cr_assert_neq(c, d);
    cr_assert_neq(d, e);

    void *f = PyMem_RawRealloc(NULL, 0);
    cr_assert_not_null(f);
    cr_assert_neq(f, a);
    PyMem_RawFree(a);
    PyMem_RawFree(b);
    PyMem_RawFree(c);
    PyMem_RawFree(d);
    PyMem_RawFree(e);
    PyMem_RawFree(f);
}

Test(pymem_raw, calloc_zeroes)
{
    /* Dirty the heap first so a non-zeroing calloc would likely show. */
    for (int round = 0; round < 4; round++) {
        unsigned char *dirty = PyMem_RawMalloc(4096);
        cr_assert_not_null(dirty);
        memset(dirty, 0xa5, 4096);
        PyMem_RawFree(dirty);
        unsigned char *p = PyMem_RawCalloc(512, 8);
        cr_assert_not_null(p);
        cr_assert(all_zero(p, 4096));
        PyMem_RawFree(p);
    }
}

Test(pymem_raw, calloc_overflow_fails)
{
    cr_assert_null(PyMem_RawCalloc(SIZE_MAX, 2));
    cr_assert_null(PyMem_RawCalloc(2, SIZE_MAX));
    cr_assert_null(PyMem_RawCalloc((size_t)1 << (sizeof(size_t) * 4),
                                   (size_t)1 << (sizeof(size_t) * 4)));
    cr_assert_null(PyMem_RawCalloc((size_t)PY_SSIZE_T_MAX, 2));
    /* one past the limit, no overflow of size_t */
    cr_assert_null(PyMem_RawCalloc((size_t)PY_SSIZE_T_MAX + 1, 1));
}

Test(pymem_raw, huge_sizes_fail)
{
    size_t huge = (size_t)PY_SSIZE_T_MAX + 1;
    cr_assert_null(PyMem_RawMalloc(huge));
    cr_assert_null(PyMem_RawMalloc(SIZE_MAX));
    cr_assert_null(PyMem_RawRealloc(NULL, huge));

    char *p = PyMem_RawMalloc(32);
    cr_assert_not_null(p);
    fill_pattern(p, 32, 9);
    cr_assert_null(PyMem_RawRealloc(p, huge));
    cr_assert(has_pattern(p, 32, 9), "a failed realloc damaged the block");
    PyMem_RawFree(p);
}

Test(pymem_raw, realloc_grows_and_shrinks)
{
    char *p = PyMem_RawRealloc(NULL, 64);   /* acts as malloc */
    cr_assert_not_null(p);
    fill_pattern(p, 64, 1);

    p = PyMem_RawRealloc(p, 1 << 16);
    cr_assert_not_null(p);
    cr_assert(has_pattern(p, 64, 1));
    fill_pattern(p, 1 << 16, 1);

    p = PyMem_RawRealloc(p, 16);
    cr_assert_not_null(p);
    cr_assert(has_pattern(p, 16, 1));

    p = PyMem_RawRealloc(p, 0);   /* still a unique non-NULL block */
    cr_assert_not_null(p);
    PyMem_RawFree(p);
}

Test(pymem_raw, injected_failures)
{
    ft_alloc_fail_after(1);
    cr_assert_null(PyMem_RawMalloc(8));
    void *p = PyMem_RawMalloc(8);   /* the injection fired once */
    cr_assert_not_null(p);
    PyMem_RawFree(p);

    ft_alloc_fail_after(1);
    cr_assert_null(PyMem_RawCalloc(4, 4));
    ft_alloc_fail_after(1);
    cr_assert_null(PyMem_RawRealloc(NULL, 8));

    /* the second allocation from now fails, the first does not */
    ft_alloc_fail_after(2);
    void *first = PyMem_RawMalloc(8);
    void *second = PyMem_RawMalloc(8);
    void *third = PyMem_RawMalloc(8);
    ft_alloc_fail_after(0);
    cr_assert_not_null(first);
    cr_assert_null(second);
    cr_assert_not_null(third);
    PyMem_RawFree(first);
    PyMem_RawFree(third);

    ft_alloc_fail_after(1);
    ft_alloc_fail_after(0);   /* off again */
    p = PyMem_RawMalloc(8);
    cr_assert_not_null(p);
    PyMem_RawFree(p);
}

Test(pymem_raw, realloc_failure_keeps_block)
{
    char *p = PyMem_RawMalloc(48);
    cr_assert_not_null(p);
    fill_pattern(p, 48, 200);
    ft_alloc_fail_after(1);
    char *q = PyMem_RawRealloc(p, 1 << 20);
    ft_alloc_fail_after(0);
    cr_assert_null(q);
    cr_assert(has_pattern(p, 48, 200), "a failed realloc damaged the block");
    q = PyMem_RawRealloc(p, 1 << 20);
    cr_assert_not_null(q);
    cr_assert(has_pattern(q, 48, 200));
    PyMem_RawFree(q);
}

Test(pymem_raw, sized_internal_allocator)
{
    unsigned char *p = ft_raw_alloc(24);
    cr_assert_not_null(p);
    fill_pattern(p, 24, 5);
    cr_assert(has_pattern(p, 24, 5));
    ft_raw_free(p, 24);

    unsigned char *dirty = ft_raw_alloc(200);
    cr_assert_not_null(dirty);
    memset(dirty, 0xff, 200);
    ft_raw_free(dirty, 200);
    unsigned char *z = ft_raw_calloc(200);
    cr_assert_not_null(z);
    cr_assert(all_zero(z, 200));
    ft_raw_free(z, 200);

    void *a = ft_raw_alloc(0);
    void *b = ft_raw_alloc(0);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_neq(a, b);
    ft_raw_free(a, 0);
    ft_raw_free(b, 0);
    ft_raw_free(NULL, 0);
    ft_raw_free(NULL, 64);

    ft_alloc_fail_after(1);
    cr_assert_null(ft_raw_alloc(16));
    ft_alloc_fail_after(1);
    cr_assert_null(ft_raw_calloc(16));
    ft_alloc_fail_after(0);
}

#ifdef FT_USE_JEMALLOC
/* sync/pymem_raw.c's malloc_conf reached jemalloc: every size class up to
 * 256 bytes has one-page slabs (jemalloc's default gives 80 bytes 5 pages).
 * Skipped when MALLOC_CONF in the environment sets slab sizes itself. */
Test(pymem_raw, jemalloc_small_classes_use_one_page_slabs)
{
    const char *env = getenv("MALLOC_CONF");
    if (env != NULL && strstr(env, "slab_sizes") != NULL) {
        cr_skip_test("MALLOC_CONF sets slab_sizes");
    }
    void *p = ft_raw_alloc(80);   /* jemalloc is initialised */
    ft_raw_free(p, 80);
    unsigned nbins = 0;
    size_t len = sizeof nbins;
    cr_assert_eq(mallctl("arenas.nbins", &nbins, &len, NULL, 0), 0);
    size_t page = 0;
    len = sizeof page;
    cr_assert_eq(mallctl("arenas.page", &page, &len, NULL, 0), 0);
    int small = 0;
    for (unsigned i = 0; i < nbins; i++) {
        char name[64];
        size_t size = 0, slab = 0;
        snprintf(name, sizeof name, "arenas.bin.%u.size", i);
        len = sizeof size;
        cr_assert_eq(mallctl(name, &size, &len, NULL, 0), 0);
        if (size > 256) {
            continue;
        }
        snprintf(name, sizeof name, "arenas.bin.%u.slab_size", i);
        len = sizeof slab;
        cr_assert_eq(mallctl(name, &slab, &len, NULL, 0), 0);
        cr_assert_eq(slab, page, "size class %zu has %zu-byte slabs, want one page (%zu)",
                     size, slab, page);
        small++;
    }
    cr_assert_gt(small, 10, "only %d size classes up to 256 bytes", small);
}
#endif

Test(pymem_raw, allocator_name)
{
    const char *name = ft_allocator_name();
    cr_assert_not_null(name);
#ifdef FT_USE_JEMALLOC
    cr_assert_str_eq(name, "jemalloc");
#else
    cr_assert_str_eq(name, "system");
#endif
}
