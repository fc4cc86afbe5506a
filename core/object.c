/* Reference counting: the slow paths behind refcount.h's inline fast paths,
 * immortality, Py_SET_REFCNT, _Py_Dealloc, the reference tracer, the
 * try-incref family's out-of-line parts and resurrection during dealloc.
 * The merge queues a non-owner hands objects to live in core/brc.c.
 *
 * BIASED REFERENCE COUNTING (free-threaded build)
 *   An object's count is split in two.  ob_ref_local belongs to the owner,
 *   the thread whose thread pointer is in ob_tid: only the owner writes it,
 *   with plain (relaxed atomic) loads and stores, no read-modify-write.
 *   Every other thread adds or subtracts 4 (one reference) on ob_ref_shared
 *   atomically.  The true count is local + (shared >> 2) minus one for an
 *   object sitting in a merge queue (the queue owes that decrement, below).
 *   The shared word may go negative: a reference the owner created can be
 *   dropped by another thread.
 *
 *   The low two bits of ob_ref_shared:
 *     0               default
 *     MAYBE_WEAKREF   the object was published for lock-free readers
 *                     (ft_new_ref_with_lock): a non-owner may try-incref
 *                     it while its shared count is 0
 *     QUEUED          a non-owner took the shared count "below zero": it
 *                     set QUEUED instead of subtracting and handed the
 *                     object to the owner's merge queue, which now holds
 *                     that reference (core/brc.c)
 *     MERGED          local and shared are merged: ob_tid is 0, local is 0,
 *                     the whole count lives in the shared word and every
 *                     thread uses atomics on it
 *   Transitions, all by CAS on the whole word except where noted:
 *     0 / MAYBE_WEAKREF -> QUEUED   a non-owner's decref that finds the
 *                                   count exactly 0 (_Py_DecRefShared)
 *     0 -> MAYBE_WEAKREF            a non-owner's ft_new_ref_with_lock, or
 *                                   ft_object_set_maybe_weakref
 *     any -> MERGED                 the owner when its local count reaches 0
 *                                   (_Py_MergeZeroLocalRefcount), or an
 *                                   explicit merge: the owner draining its
 *                                   queue, a non-owner whose owner has
 *                                   exited, a stopped world
 *                                   (ft_object_explicit_merge)
 *   MERGED is final while the object lives (only a destructor's temporary
 *   resurrection, ft_object_resurrect_start, resets the word, when the
 *   count is 0 and nobody else can reach the object); the count part
 *   changes freely under any flag.  An object is freed by whoever makes the true count 0:
 *   the owner with the whole shared word still 0 (nobody else ever held a
 *   reference), or anyone whose CAS leaves exactly MERGED with count 0.
 *
 * TWO STORE-ORDERING PITFALLS (CPython hit both)
 *   gh-119999, explicit merge: the merging thread gives up ownership by
 *     storing local = 0 and tid = 0, and publishes the merged total with the
 *     CAS on the shared word.  The stores must come BEFORE the CAS.  The
 *     CAS is what lets other threads see a merged count: one of them may
 *     drop the last reference right after it and free the object, so any
 *     write after the CAS could land in freed (or reused) memory.
 *   gh-121794, the owner's local count reaching 0: the same reasoning puts
 *     tid = 0 before the CAS that sets MERGED, but it must come AFTER the
 *     fast path (shared word exactly 0: free at once).  An object freed by
 *     the fast path still belongs to its owner while its destructor runs,
 *     so a destructor that resurrects it, or a free list that keeps it,
 *     finds it owned by the current thread; and ob_tid == 0 keeps meaning
 *     "merged", which the merge queue relies on (a queued object whose
 *     tid reads 0 is decref'd normally instead of queued).
 *
 * MEMORY ORDERINGS
 *   Increments are relaxed: whoever increments already holds a reference,
 *   so the object cannot die meanwhile.  Every decrement that may be the
 *   last one is a release (its owner's accesses to the object happen before
 *   the free) and the thread that frees acquires first: the owner's fast
 *   path loads the shared word with acquire; the CASes on the shared word
 *   are acq_rel.  The owner's own local stores need no ordering of their
 *   own: other threads read ob_ref_local only to test immortality
 *   (UINT32_MAX, which a count reaches only by becoming immortal), for
 *   Py_REFCNT (a snapshot), and in an explicit merge by a non-owner, which
 *   happens only after the owner is gone (its exit unlinks its merge-queue
 *   record under a lock the merging thread then takes) or stopped (the
 *   stop-the-world handshake orders it).
 *
 * IMMORTAL OBJECTS
 *   ob_ref_local == UINT32_MAX (free-threaded; ob_tid and the shared word
 *   are 0 when made immortal on purpose), ob_refcnt >= 2^60 (GIL build).
 *   Py_INCREF / Py_DECREF test that first and write nothing; an owner
 *   increment that would make local UINT32_MAX therefore makes the object
 *   immortal instead of wrapping.  Types are immortal (core/typeobject.c).
 *
 * GIL BUILD
 *   One plain ob_refcnt; the GIL orders every access.  The functions below
 *   that only the free-threaded build reaches (the shared decref, merges)
 *   still exist there and do the plain-count equivalent.
 */
#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_raw_mutex.h"

/* ---- the reference tracer ---------------------------------------------------
 *
 * One (function, data) pair read on every creation and destruction while a
 * tracer is set.  A seqlock keeps the pair consistent for readers (a
 * creation on one thread never sees the new function with the old data):
 * setters serialise on set_lock and make `seq` odd while they write;
 * readers retry while it is odd or changed under them.  The fast check in
 * ft_object_init is a relaxed load of `fn` alone: a creation racing with
 * SetTracer may or may not be traced, as in CPython. */

ft_reftracer ft_reftracer_state;
static ft_raw_mutex set_lock = FT_RAW_MUTEX_INIT;

static void
tracer_read(PyRefTracer *fn, void **data)
{
    for (;;) {
        uint32_t s1 = atomic_load_explicit(&ft_reftracer_state.seq, memory_order_acquire);
        *fn = atomic_load_explicit(&ft_reftracer_state.fn, memory_order_relaxed);
        *data = atomic_load_explicit(&ft_reftracer_state.data, memory_order_relaxed);
        /* The two loads above complete before the re-check of seq. */
        atomic_thread_fence(memory_order_acquire);
        uint32_t s2 = atomic_load_explicit(&ft_reftracer_state.seq, memory_order_relaxed);
        if (!(s1 & 1) && s1 == s2) {
            return;
        }
    }
}

void
ft_reftracer_call(PyObject *op, PyRefTracerEvent event)
{
    PyRefTracer fn;
    void *data;
    tracer_read(&fn, &data);
    if (fn != NULL) {
        (void)fn(op, event, data);   /* CPython ignores the result too */
    }
}

int
PyRefTracer_SetTracer(PyRefTracer tracer, void *data)
{
    ft_raw_mutex_lock(&set_lock);
    /* The tracer being replaced hears it first (3.14's TRACKER_REMOVED),
     * once, with its own data; it must not set a tracer itself. */
    PyRefTracer old = atomic_load_explicit(&ft_reftracer_state.fn, memory_order_relaxed);
    if (old != NULL) {
        (void)old(NULL, PyRefTracer_TRACKER_REMOVED,
                  atomic_load_explicit(&ft_reftracer_state.data, memory_order_relaxed));
    }
    uint32_t s = atomic_load_explicit(&ft_reftracer_state.seq, memory_order_relaxed);
    atomic_store_explicit(&ft_reftracer_state.seq, s + 1, memory_order_relaxed);
    /* seq odd before either field changes. */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&ft_reftracer_state.data, data, memory_order_relaxed);
    atomic_store_explicit(&ft_reftracer_state.fn, tracer, memory_order_relaxed);
    /* Both fields before seq is even again. */
    atomic_store_explicit(&ft_reftracer_state.seq, s + 2, memory_order_release);
    ft_raw_mutex_unlock(&set_lock);
    return 0;
}

PyRefTracer
PyRefTracer_GetTracer(void **data)
{
    PyRefTracer fn;
    void *d;
    tracer_read(&fn, &d);
    if (data != NULL) {
        *data = d;
    }
    return fn;
}

/* ---- deallocation ------------------------------------------------------------ */

/* Could a lock-free reader still hold op (free-threaded build)?  Its shared
 * word is 0 only if no other thread ever kept a reference, or every one
 * they took was given back with no flag left: published objects carry
 * _Py_REF_MAYBE_WEAKREF for life, merged ones _Py_REF_MERGED. */
static inline bool
may_be_read_by_others(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    return __atomic_load_n(&op->ob_ref_shared, __ATOMIC_RELAXED) != 0;
#else
    (void)op;
    return false;
#endif
}

void
_Py_Dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    destructor dealloc = type->tp_dealloc;
    if (ft_unlikely(dealloc == NULL)) {
        Py_FatalError("the object's type has no tp_dealloc");
    }
    if (ft_unlikely(atomic_load_explicit(&ft_reftracer_state.fn, memory_order_relaxed) != NULL)) {
        ft_reftracer_call(op, PyRefTracer_DESTROY);
    }
    if (ft_free_threaded && ft_unlikely(may_be_read_by_others(op)) &&
        !PyType_HasFeature(type, Py_TPFLAGS_HAVE_GC)) {
        /* Its memory must stay an object's until a grace period has passed
         * (core/obmalloc.c, "TYPE-STABLE FREES"): tell PyObject_Free which
         * block that is.  Saved and restored: destructors nest. */
        void *outer = ft_dying_shared;
        ft_dying_shared = op;
        dealloc(op);
        ft_dying_shared = outer;
        return;
    }
    dealloc(op);
}

/* ---- the free-threaded slow paths --------------------------------------------
 *
 * The object header's fields differ between the builds: the bodies below
 * are the file's #ifdefs. */

#ifdef Py_GIL_DISABLED

static inline Py_ssize_t
shared_load(PyObject *op, int order)
{
    return __atomic_load_n(&op->ob_ref_shared, order);
}

static inline bool
shared_cas(PyObject *op, Py_ssize_t *expected, Py_ssize_t desired)
{
    return __atomic_compare_exchange_n(&op->ob_ref_shared, expected, desired, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

/* A non-owner drops a reference.  Returns true if the caller must free op
 * (its CAS left the word exactly MERGED: count 0).  If the count was
 * exactly 0 and not merged or queued, sets QUEUED without subtracting and
 * hands op, with that reference, to its owner's queue. */
static bool
decref_shared_is_dead(PyObject *op)
{
    Py_ssize_t shared = shared_load(op, __ATOMIC_RELAXED);
    Py_ssize_t desired;
    bool queue;
    do {
        queue = shared == 0 || shared == _Py_REF_MAYBE_WEAKREF;
        desired = queue ? _Py_REF_QUEUED : shared - ((Py_ssize_t)1 << _Py_REF_SHARED_SHIFT);
    } while (!shared_cas(op, &shared, desired));
    if (queue) {
        ft_brc_queue_object(op);
        return false;
    }
    return desired == _Py_REF_MERGED;
}

void
_Py_DecRefShared(PyObject *op)
{
    if (decref_shared_is_dead(op)) {
        _Py_Dealloc(op);
    }
}

void
_Py_MergeZeroLocalRefcount(PyObject *op)
{
    /* Acquire: a non-owner's decref that brought the word back to 0
     * released its accesses to op, which happen before the free. */
    Py_ssize_t shared = shared_load(op, __ATOMIC_ACQUIRE);
    if (shared == 0) {
        _Py_Dealloc(op);   /* nobody else holds or may take a reference */
        return;
    }
    /* gh-121794: after the fast path, before the CAS (file header). */
    __atomic_store_n(&op->ob_tid, 0, __ATOMIC_RELAXED);
    Py_ssize_t desired;
    do {
        desired = (shared & ~(Py_ssize_t)_Py_REF_SHARED_FLAG_MASK) | _Py_REF_MERGED;
    } while (!shared_cas(op, &shared, desired));
    if (desired == _Py_REF_MERGED) {
        _Py_Dealloc(op);
    }
}

Py_ssize_t
ft_object_explicit_merge(PyObject *op, Py_ssize_t extra)
{
    Py_ssize_t local = __atomic_load_n(&op->ob_ref_local, __ATOMIC_RELAXED);
    /* gh-119999: give up ownership before the CAS publishes the total. */
    __atomic_store_n(&op->ob_ref_local, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&op->ob_tid, 0, __ATOMIC_RELAXED);
    Py_ssize_t shared = shared_load(op, __ATOMIC_RELAXED);
    Py_ssize_t total;
    do {
        total = (shared >> _Py_REF_SHARED_SHIFT) + local + extra;
    } while (!shared_cas(op, &shared, _Py_REF_SHARED(total, _Py_REF_MERGED)));
    return total;
}

void
_Py_SetImmortal(PyObject *op)
{
    if (_Py_IsImmortal(op)) {
        return;   /* never downgrade a static object's immortality */
    }
    if (PyType_HasFeature(Py_TYPE(op), Py_TPFLAGS_HAVE_GC) && PyObject_GC_IsTracked(op)) {
        PyObject_GC_UnTrack(op);   /* the collector never needs to look at it */
    }
    /* Immortal first: a racing incref or decref that still sees a mortal
     * count only touches the shared word, which is reset next. */
    __atomic_store_n(&op->ob_ref_local, UINT32_MAX, __ATOMIC_RELAXED);
    __atomic_store_n(&op->ob_tid, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&op->ob_ref_shared, 0, __ATOMIC_RELAXED);
    __atomic_fetch_or(&op->ob_gc_bits, FT_GC_DEFERRED, __ATOMIC_RELAXED);
}

void
_Py_SetRefcnt(PyObject *op, Py_ssize_t refcnt)
{
    if (_Py_IsImmortal(op)) {
        return;   /* code unaware of immortality must not change it */
    }
    if (refcnt < 0) {
        Py_FatalError("negative reference count");
    }
    if ((size_t)refcnt >= UINT32_MAX) {
        /* More than the header holds (UINT32_MAX itself is the immortal
         * marker): immortal, as an overflowing incref would make it. */
        __atomic_store_n(&op->ob_ref_local, UINT32_MAX, __ATOMIC_RELAXED);
        __atomic_store_n(&op->ob_tid, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&op->ob_ref_shared, 0, __ATOMIC_RELAXED);
        return;
    }
    if (_Py_IsOwnedByCurrentThread(op)) {
        /* The whole count becomes local; the shared flags stay. */
        __atomic_store_n(&op->ob_ref_local, (uint32_t)refcnt, __ATOMIC_RELAXED);
        __atomic_fetch_and(&op->ob_ref_shared, (Py_ssize_t)_Py_REF_SHARED_FLAG_MASK,
                           __ATOMIC_RELAXED);
    }
    else {
        /* Not the owner: give the count to the shared word, merged. */
        __atomic_store_n(&op->ob_tid, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&op->ob_ref_local, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&op->ob_ref_shared, _Py_REF_SHARED(refcnt, _Py_REF_MERGED),
                         __ATOMIC_RELAXED);
    }
}

void
ft_object_resurrect_start(PyObject *op)
{
    /* The count is 0 and the caller is the only thread that can reach op:
     * it becomes op's owner with one local reference. */
    __atomic_store_n(&op->ob_tid, _Py_ThreadId(), __ATOMIC_RELAXED);
    __atomic_store_n(&op->ob_ref_local, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&op->ob_ref_shared, 0, __ATOMIC_RELAXED);
}

int
ft_object_resurrect_end(PyObject *op)
{
    uint32_t local = __atomic_load_n(&op->ob_ref_local, __ATOMIC_RELAXED);
    Py_ssize_t shared = shared_load(op, __ATOMIC_ACQUIRE);
    if (_Py_IsOwnedByCurrentThread(op) && local == 1 && shared == 0) {
        /* Nobody else saw it: drop the temporary reference, dead. */
        __atomic_store_n(&op->ob_ref_local, 0, __ATOMIC_RELAXED);
        return 0;
    }
    if (_Py_IsImmortal(op)) {
        return 1;
    }
    if (_Py_IsOwnedByCurrentThread(op)) {
        /* Other references exist (or flags were set): merge, so that
         * whoever drops the last one frees it. */
        return ft_object_explicit_merge(op, -1) != 0;
    }
    return !decref_shared_is_dead(op);
}

#else /* GIL build: one plain count, the GIL held */

void
_Py_DecRefShared(PyObject *op)
{
    Py_DECREF(op);
}

void
_Py_MergeZeroLocalRefcount(PyObject *op)
{
    _Py_Dealloc(op);
}

Py_ssize_t
ft_object_explicit_merge(PyObject *op, Py_ssize_t extra)
{
    op->ob_refcnt += extra;
    return op->ob_refcnt;
}

void
_Py_SetImmortal(PyObject *op)
{
    if (_Py_IsImmortal(op)) {
        return;
    }
    if (PyType_HasFeature(Py_TYPE(op), Py_TPFLAGS_HAVE_GC) && PyObject_GC_IsTracked(op)) {
        PyObject_GC_UnTrack(op);
    }
    op->ob_refcnt = _Py_IMMORTAL_INITIAL_REFCNT;
}

void
_Py_SetRefcnt(PyObject *op, Py_ssize_t refcnt)
{
    if (_Py_IsImmortal(op)) {
        return;
    }
    if (refcnt < 0) {
        Py_FatalError("negative reference count");
    }
    op->ob_refcnt = refcnt >= _Py_IMMORTAL_MINIMUM_REFCNT ? _Py_IMMORTAL_INITIAL_REFCNT : refcnt;
}

void
ft_object_resurrect_start(PyObject *op)
{
    op->ob_refcnt = 1;
}

int
ft_object_resurrect_end(PyObject *op)
{
    return --op->ob_refcnt != 0;
}

#endif /* Py_GIL_DISABLED */

/* ---- function forms ------------------------------------------------------------ */

void
Py_IncRef(PyObject *op)
{
    Py_XINCREF(op);
}

void
Py_DecRef(PyObject *op)
{
    Py_XDECREF(op);
}
