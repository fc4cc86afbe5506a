/* Memory:
 *   - the raw heap (sync/pymem_raw.c): jemalloc's sized API, or the C
 *     library's allocator in sanitizer and valgrind builds (meson option
 *     'allocator').  Internal callers that know the size free with it
 *     (sdallocx skips a size look-up); PyMem_Raw* sit on top for callers
 *     that do not.
 *   - the GC object heaps (core/obmalloc.c), at the end of this file.
 */
#ifndef FT_ALLOC_H
#define FT_ALLOC_H

#include "ft_core.h"
#include "ft_object.h"   /* the FT_GC_* bits */
#include <stddef.h>

FT_INTERNAL void *ft_raw_alloc(size_t size);         /* NULL on failure */
FT_INTERNAL void *ft_raw_calloc(size_t size);        /* zeroed */
FT_INTERNAL void ft_raw_free(void *p, size_t size);  /* size as allocated; p may be NULL */
/* Extend the block p (from ft_raw_alloc) to at least size bytes without
 * moving it; false if the allocator cannot, the block unchanged.  jemalloc
 * extends in place when the neighbouring pages are free (xallocx); the
 * system backend never does. */
FT_INTERNAL bool ft_raw_grow_in_place(void *p, size_t size);

/* "jemalloc" or "system": what this build uses (for reports). */
FT_INTERNAL const char *ft_allocator_name(void);

/* Test-only failure injection: make the nth next allocation (1 = the next)
 * fail, 0 = off.  Counts calls to every ft_raw_* and PyMem_Raw* allocator. */
FT_INTERNAL void ft_alloc_fail_after(long nth);

/* ---- GC object heaps (core/obmalloc.c) --------------------------------------
 *
 * Every GC object (a type with Py_TPFLAGS_HAVE_GC) is allocated with a
 * 16-byte pre-header naming the heap that lists it and its position there;
 * core/obmalloc.c explains the protocol.  The collector (gc/gc.c) finds objects
 * through ft_gc_heaps_visit, never by walking jemalloc. */

struct ft_tstate;
typedef struct ft_gc_heap ft_gc_heap;

typedef struct ft_gc_prehdr {
    ft_gc_heap *heap;   /* the heap listing the object; in a remote-free stack, the link */
    uint32_t index;     /* its position in heap->objs */
    uint32_t bits;      /* FT_PRE_* below */
} ft_gc_prehdr;

/* ft_gc_prehdr.bits */
#define FT_PRE_GC_BITS 0xffu      /* GIL build: the FT_GC_* bits (free-threaded: ob_gc_bits) */
#define FT_PRE_DEFER (1u << 8)    /* dead, in a remote-free stack: free after a grace period */

static inline ft_gc_prehdr *
ft_gc_prehdr_of(PyObject *op)
{
    return (ft_gc_prehdr *)op - 1;
}

/* The FT_GC_* bits (ft_object.h) of a GC object, read and changed with
 * relaxed loads and stores by whoever may change the object (its lock or
 * the world stopped).  The two headers differ here: the free-threaded one
 * has CPython's ob_gc_bits (non-GC objects use it too: SHARED, DEFERRED),
 * the GIL one has none, so the pre-header carries them. */
static inline uint32_t
ft_gc_bits(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    return __atomic_load_n(&op->ob_gc_bits, __ATOMIC_RELAXED);
#else
    return __atomic_load_n(&ft_gc_prehdr_of(op)->bits, __ATOMIC_RELAXED) & FT_PRE_GC_BITS;
#endif
}

/* The collector's garbage (gc/gc.c): FT_GC_UNREACHABLE is set in its first
 * pause on every object it found unreachable (cleared again if a finalizer
 * resurrects one).  Only the collector can reach such an object, and no
 * lock-free read of it can be in progress (every attached thread passed a
 * safe point in the pause), so containers treat it as owned by the caller
 * and not SHARED, and its memory is freed at once, never after a grace
 * period (core/obmalloc.c). */
static inline bool ft_gc_is_garbage(PyObject *op);

static inline void
ft_gc_bits_set(PyObject *op, uint32_t bits)
{
#ifdef Py_GIL_DISABLED
    __atomic_store_n(&op->ob_gc_bits, (uint8_t)(ft_gc_bits(op) | bits), __ATOMIC_RELAXED);
#else
    uint32_t *w = &ft_gc_prehdr_of(op)->bits;
    __atomic_store_n(w, __atomic_load_n(w, __ATOMIC_RELAXED) | (bits & FT_PRE_GC_BITS),
                     __ATOMIC_RELAXED);
#endif
}

static inline void
ft_gc_bits_clear(PyObject *op, uint32_t bits)
{
#ifdef Py_GIL_DISABLED
    __atomic_store_n(&op->ob_gc_bits, (uint8_t)(ft_gc_bits(op) & ~bits), __ATOMIC_RELAXED);
#else
    uint32_t *w = &ft_gc_prehdr_of(op)->bits;
    __atomic_store_n(w, __atomic_load_n(w, __ATOMIC_RELAXED) & ~(bits & FT_PRE_GC_BITS),
                     __ATOMIC_RELAXED);
#endif
}

/* Call fn(op, arg) for every allocated GC object of interp (tracked or not),
 * stopping at the first non-zero result, which it returns.  WORLD STOPPED
 * ONLY: the caller stopped interp's world (free-threaded) or holds the GIL;
 * fatal otherwise.  fn must not allocate or free GC objects (the heap lock
 * is held): collect into a side stack instead. */
typedef int (*ft_gc_visit_fn)(PyObject *op, void *arg);
FT_INTERNAL int ft_gc_heaps_visit(PyInterpreterState *interp, ft_gc_visit_fn fn, void *arg);

static inline bool
ft_gc_is_garbage(PyObject *op)
{
    return ft_free_threaded && PyObject_IS_GC(op) && (ft_gc_bits(op) & FT_GC_UNREACHABLE) != 0;
}

/* The collector's numbering (gc/gc.c).  With the world stopped by the
 * caller, ft_gc_heaps_snapshot takes the owners' pending remote frees, then
 * numbers every listed object 0..n-1 (heap by heap: each heap records its
 * first number) and copies them into a new PyMem_Raw array (*objs, freed by
 * the caller), so that objs[ft_gc_number(op)] == op for every listed op
 * until the world restarts.  -1 (nothing set) if the array cannot be
 * allocated. */
FT_INTERNAL int ft_gc_heaps_snapshot(PyInterpreterState *interp, PyObject ***objs, size_t *n);
static inline size_t
ft_gc_number(PyObject *op)
{
    ft_gc_prehdr *pre = ft_gc_prehdr_of(op);
    return *(const size_t *)pre->heap + pre->index;   /* heap->gc_base is its first field */
}

/* The automatic collection hook (core/obmalloc.c calls it at an allocation's
 * safe point once interp->gc.young passes interp->gc.trigger; gc/ registers
 * it).  A lower layer never calls up otherwise. */
FT_INTERNAL extern void (*_Atomic ft_gc_auto_hook)(struct ft_tstate *ts);
/* Py_FinalizeEx calls it once the other threads are shut down (core/lifecycle.c). */
FT_INTERNAL extern void (*_Atomic ft_gc_fini_hook)(struct ft_tstate *ts);
#define FT_GC_DEFAULT_THRESHOLD 2000

/* The heap listing op (a live GC object). */
FT_INTERNAL ft_gc_heap *ft_gc_heap_of(PyObject *op);

/* Give up ts's heap (PyThreadState_Clear, and the state's final free):
 * drain it and orphan it, or free it if it is empty.  ts is not attached to
 * another thread. */
FT_INTERNAL void ft_gc_heap_release(struct ft_tstate *ts);

/* Counts for tests and the collector's statistics (takes the heap lock). */
typedef struct ft_gc_heap_stats {
    size_t live_heaps;      /* owned by a thread state */
    size_t orphan_heaps;
    size_t objects;         /* listed in any heap, remote frees not yet drained included */
} ft_gc_heap_stats;
FT_INTERNAL void ft_gc_heaps_stats(PyInterpreterState *interp, ft_gc_heap_stats *out);

/* Type-stable frees (free-threaded build): objects other threads may still
 * read lock-free are freed after an RCU grace period, in batches.
 * ft_gc_defer_flush hands ts's partial batch to RCU now; the counter is the
 * number of objects handed to RCU and not yet freed. */
FT_INTERNAL void ft_gc_defer_flush(struct ft_tstate *ts);
/* Non-GC objects (core/obmalloc.c): _Py_Dealloc sets this to an object other
 * threads may still read while its tp_dealloc runs; PyObject_Free of that
 * address defers the block past a grace period.  ft_nongc_leaked: blocks
 * that could not be deferred (out of memory, no attached state) and were
 * leaked instead of freed early. */
FT_INTERNAL extern _Thread_local void *ft_dying_shared
    __attribute__((tls_model("initial-exec")));
FT_INTERNAL int64_t ft_nongc_leaked(void);
FT_INTERNAL int64_t ft_gc_deferred_outstanding(void);

/* fork(): the heap lock of the main interpreter is held across fork()
 * (taken after liburcu is quiesced: its worker thread may need it). */
FT_INTERNAL void ft_gc_heaps_before_fork(void);
FT_INTERNAL void ft_gc_heaps_after_fork_parent(void);
FT_INTERNAL void ft_gc_heaps_after_fork_child(void);

#endif /* FT_ALLOC_H */
