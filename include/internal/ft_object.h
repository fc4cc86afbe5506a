/* The object core's internal view: GC bits, header initialisation, and the
 * hooks between the object core and the thread-state layer.
 *
 * Who owns what (one file each):
 *   core/object.c            refcount slow paths, immortality, _Py_Dealloc,
 *                            the reference tracer, Py_ReprEnter and the
 *                            container repr writer
 *   core/brc.c               the biased-refcount merge queues
 *   core/obmalloc.c          PyMem_*, PyObject_Malloc, object creation,
 *                            the per-thread GC object lists
 *   core/typeobject.c        PyType_*, object and type types, singletons
 *   core/errors.c            the per-thread error indicator
 *   core/exceptions.c        exception types and objects
 *   core/critical_section.c  critical sections
 */
#ifndef FT_OBJECT_H
#define FT_OBJECT_H

#include <stdatomic.h>

#include "ft_core.h"

/* ob_gc_bits (free-threaded build; CPython's values).  Changed with relaxed
 * load+store by the thread that owns the object's lock or the object. */
enum {
    FT_GC_TRACKED = 1 << 0,
    FT_GC_FINALIZED = 1 << 1,
    FT_GC_UNREACHABLE = 1 << 2,
    FT_GC_FROZEN = 1 << 3,
    FT_GC_SHARED = 1 << 4,
    FT_GC_ALIVE = 1 << 5,
    FT_GC_DEFERRED = 1 << 6,
};

/* The reference tracer (core/object.c): read on every creation and
 * destruction, so it is one relaxed load when unset.  `seq` is a seqlock
 * (odd while PyRefTracer_SetTracer writes) that keeps fn and data paired. */
typedef struct ft_reftracer {
    PyRefTracer _Atomic fn;
    void *_Atomic data;
    uint32_t _Atomic seq;
} ft_reftracer;
FT_INTERNAL extern ft_reftracer ft_reftracer_state;
FT_INTERNAL void ft_reftracer_call(PyObject *op, PyRefTracerEvent event);

/* Header of a new object: count 1, owned by the calling thread, not
 * tracked; the tracer sees it created. */
static inline void
ft_object_init(PyObject *op, PyTypeObject *type)
{
    /* The two headers have different fields (the reason for every #ifdef
     * in this file). */
#ifdef Py_GIL_DISABLED
    op->ob_tid = _Py_ThreadId();
    op->ob_flags = 0;
    op->ob_mutex = (PyMutex){ 0 };
    op->ob_gc_bits = 0;
    op->ob_ref_local = 1;
    op->ob_ref_shared = 0;
#else
    op->ob_refcnt = 1;
#endif
    op->ob_type = type;
    if (ft_unlikely(atomic_load_explicit(&ft_reftracer_state.fn, memory_order_relaxed) != NULL)) {
        ft_reftracer_call(op, PyRefTracer_CREATE);
    }
}

/* ---- reference counting internals (core/object.c, core/brc.c) ------------ */

/* CPython's _Py_ExplicitMergeRefcount: give up ownership of op and move its
 * whole count, plus `extra`, into the shared word flagged MERGED; returns
 * the new count (the caller frees op if it is 0).  Only for a caller that
 * no other thread can race on ob_ref_local with: op's owner, anyone once
 * the owner has exited, or anyone with the world stopped. */
FT_INTERNAL Py_ssize_t ft_object_explicit_merge(PyObject *op, Py_ssize_t extra);

/* Hand op, whose shared word a non-owner just set to QUEUED, to its owner's
 * merge queue; steals that reference (core/brc.c). */
FT_INTERNAL void ft_brc_queue_object(PyObject *op);

/* Resurrection around a finalizer called from a destructor (CPython's
 * _PyObject_ResurrectStart/End): start gives op, whose count is 0, one
 * reference owned by the calling thread; end drops it and returns 0 if op
 * is dead (the destructor goes on), 1 if the finalizer resurrected it.
 * After 1 the caller must not touch op again: another thread may already
 * hold, drop and free it (gh-130202). */
FT_INTERNAL void ft_object_resurrect_start(PyObject *op);
FT_INTERNAL int ft_object_resurrect_end(PyObject *op);

/* The thread that owns op's local count (0: merged, immortal, or the GIL
 * build). */
static inline uintptr_t
ft_object_owner(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    return __atomic_load_n(&op->ob_tid, __ATOMIC_ACQUIRE);
#else
    (void)op;
    return 0;
#endif
}

/* ---- try-incref (lock-free readers) ------------------------------------------
 *
 * A lock-free reader loads a pointer from a slot that a writer may clear and
 * whose object may die at any moment (its memory stays type-stable for a
 * grace period, core/obmalloc.c).  It may only take a reference if the
 * object is still alive, and must find out if it is not:
 *   ft_try_incref_fast     immortal, or owned by the calling thread (then
 *                          a plain local increment): succeeds; else fails
 *   ft_try_incref_shared   a CAS adding one reference to the shared word;
 *                          fails if the word is exactly 0 (no shared
 *                          count, not published: the owner may free it
 *                          without a CAS) or exactly MERGED (count 0: dead
 *                          or dying)
 *   ft_try_incref_compare  fast, else shared; then re-reads *src and, if
 *                          the slot no longer holds op (it was replaced,
 *                          and op may even be another object now occupying
 *                          the same memory), drops the reference and fails
 * A writer that publishes an object for such readers takes its reference
 * with ft_new_ref_with_lock, which sets MAYBE_WEAKREF when it goes through
 * the shared word, so readers' CASes can succeed on a live object whose
 * shared count is 0 and the owner's final merge races with them through
 * the CAS instead of freeing at once.  GIL build: plain counts (the GIL
 * excludes every writer); "alive" means a count above 0. */

static inline bool
ft_try_incref_fast(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    uint32_t local = __atomic_load_n(&op->ob_ref_local, __ATOMIC_RELAXED) + 1;
    if (local == 0) {
        return true;   /* immortal */
    }
    if (_Py_IsOwnedByCurrentThread(op)) {
        __atomic_store_n(&op->ob_ref_local, local, __ATOMIC_RELAXED);
        return true;
    }
    return false;
#else
    if (op->ob_refcnt == 0) {
        return false;
    }
    Py_INCREF(op);
    return true;
#endif
}

static inline bool
ft_try_incref_shared(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    Py_ssize_t shared = __atomic_load_n(&op->ob_ref_shared, __ATOMIC_RELAXED);
    for (;;) {
        if (shared == 0 || shared == _Py_REF_MERGED) {
            return false;
        }
        if (__atomic_compare_exchange_n(&op->ob_ref_shared, &shared,
                                        shared + ((Py_ssize_t)1 << _Py_REF_SHARED_SHIFT),
                                        false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            return true;
        }
    }
#else
    return ft_try_incref_fast(op);
#endif
}

static inline bool
ft_try_incref_compare(PyObject **src, PyObject *op)
{
    if (ft_try_incref_fast(op)) {
        if (ft_free_threaded) {
            return true;   /* immortal, or ours: nobody else can free it */
        }
    }
    else if (!ft_try_incref_shared(op)) {
        return false;
    }
    /* Acquire: pairs with the writer's release store of the replacement. */
    if (__atomic_load_n(src, __ATOMIC_ACQUIRE) != op) {
        Py_DECREF(op);
        return false;
    }
    return true;
}

/* CPython's _PyObject_IsUniquelyReferenced: the caller holds the only
 * reference and no other thread can be about to create one.  Free-threaded:
 * owned by the caller, local count 1, and the whole shared word 0 (a set
 * flag means another thread may hold or take a reference). */
static inline bool
ft_object_is_uniquely_referenced(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    return _Py_IsOwnedByCurrentThread(op) &&
           __atomic_load_n(&op->ob_ref_local, __ATOMIC_RELAXED) == 1 &&
           __atomic_load_n(&op->ob_ref_shared, __ATOMIC_RELAXED) == 0;
#else
    return op->ob_refcnt == 1;
#endif
}

/* Set MAYBE_WEAKREF on op's shared word if no flag is set yet (CPython's
 * _PyObject_SetMaybeWeakref): op may from now on be try-incref'd by
 * lock-free readers. */
static inline void
ft_object_set_maybe_weakref(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    if (_Py_IsImmortal(op)) {
        return;
    }
    Py_ssize_t shared = __atomic_load_n(&op->ob_ref_shared, __ATOMIC_RELAXED);
    while ((shared & _Py_REF_SHARED_FLAG_MASK) == 0) {
        if (__atomic_compare_exchange_n(&op->ob_ref_shared, &shared,
                                        shared | _Py_REF_MAYBE_WEAKREF, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            return;
        }
    }
#else
    (void)op;
#endif
}

/* A new reference to op taken under the lock that guards the slot op is
 * read from, for an object lock-free readers may also reach (CPython's
 * _Py_NewRefWithLock): the owner increments locally; anyone else adds to
 * the shared word and sets MAYBE_WEAKREF if no flag is set. */
static inline PyObject *
ft_new_ref_with_lock(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    if (ft_try_incref_fast(op)) {
        return op;
    }
    Py_ssize_t shared = __atomic_load_n(&op->ob_ref_shared, __ATOMIC_RELAXED);
    for (;;) {
        Py_ssize_t desired = shared + ((Py_ssize_t)1 << _Py_REF_SHARED_SHIFT);
        if ((shared & _Py_REF_SHARED_FLAG_MASK) == 0) {
            desired |= _Py_REF_MAYBE_WEAKREF;
        }
        if (__atomic_compare_exchange_n(&op->ob_ref_shared, &shared, desired, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            return op;
        }
    }
#else
    Py_INCREF(op);
    return op;
#endif
}

/* ---- container reprs (core/object.c) ----------------------------------------
 *
 *     ft_repr_writer w;
 *     PyObject *result;
 *     if (ft_repr_begin(&w, self, size, "[", "]", &result)) {
 *         return result;                 // "[]", "[...]" (recursive), or NULL
 *     }
 *     int status = 0;
 *     for (each item, a new reference, while status == 0) {
 *         status = ft_repr_item(&w, item);   // ", " between items, then repr(item)
 *     }
 *     return ft_repr_end(&w, status);    // close, leave the guard, the str
 *
 * Every function returning int gives 0, or -1 with an exception set
 * (MemoryError, or whatever an item's repr raised). */
typedef struct {
    PyObject *self;       /* the container; its Py_ReprEnter guard is held */
    const char *close;
    char *buf;            /* PyMem_Raw block of cap bytes, or NULL */
    size_t len;
    size_t cap;
    Py_ssize_t items;     /* items written */
} ft_repr_writer;

/* 0: go on writing items into w (the guard on self is taken, `open`
 * written).  1: *result is the whole answer: open+close for size 0, open
 * "..." and close's last character if self's repr is already running on
 * this thread, or NULL with an exception. */
FT_INTERNAL int ft_repr_begin(ft_repr_writer *w, PyObject *self, Py_ssize_t size,
                              const char *open, const char *close, PyObject **result);
FT_INTERNAL int ft_repr_item(ft_repr_writer *w, PyObject *item);
FT_INTERNAL int ft_repr_write(ft_repr_writer *w, const char *s, size_t n);
FT_INTERNAL int ft_repr_write_repr(ft_repr_writer *w, PyObject *o);
/* With status 0, write close and make the str; either way leave the guard
 * and free the buffer.  NULL with an exception on failure. */
FT_INTERNAL PyObject *ft_repr_end(ft_repr_writer *w, int status);
/* The repr of a list or tuple (a PyVarObject whose ob_size is its length,
 * read relaxed) through its own iterator function `iter` (not tp_iter,
 * which a subclass may override), as open item, item close. */
/* A sequence subscript's integer key (core/abstract.c): the index, not yet
 * adjusted for a negative value (the caller adds its length, read after
 * the conversion, which may run code); -1 with TypeError(bad_key_fmt % the
 * key's type name) for a key that is not an integer, or with the
 * conversion's exception (IndexError when it does not fit). */
FT_INTERNAL int ft_subscript_index(PyObject *key, const char *bad_key_fmt, Py_ssize_t *index);

FT_INTERNAL PyObject *ft_sequence_repr(PyObject *self, getiterfunc iter, const char *open,
                                       const char *close);

#endif /* FT_OBJECT_H */
