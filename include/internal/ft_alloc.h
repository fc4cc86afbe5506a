/* The raw heap (sync/pymem_raw.c): jemalloc's sized API, or the C library's
 * allocator in sanitizer and valgrind builds (meson option 'allocator').
 *
 * Internal callers that know the size free with it (sdallocx skips a size
 * look-up); PyMem_Raw* sit on top for callers that do not.
 */
#ifndef FT_ALLOC_H
#define FT_ALLOC_H

#include "ft_core.h"
#include <stddef.h>

FT_INTERNAL void *ft_raw_alloc(size_t size);         /* NULL on failure */
FT_INTERNAL void *ft_raw_calloc(size_t size);        /* zeroed */
FT_INTERNAL void ft_raw_free(void *p, size_t size);  /* size as allocated; p may be NULL */

/* "jemalloc" or "system": what this build uses (for reports). */
FT_INTERNAL const char *ft_allocator_name(void);

/* Test-only failure injection: make the nth next allocation (1 = the next)
 * fail, 0 = off.  Counts calls to every ft_raw_* and PyMem_Raw* allocator. */
FT_INTERNAL void ft_alloc_fail_after(long nth);

#endif /* FT_ALLOC_H */
