/* Reference counting: the slow paths behind refcount.h's inline fast paths,
 * immortality, Py_SET_REFCNT, _Py_Dealloc, the reference tracer, the
 * try-incref family's out-of-line parts and resurrection during dealloc.
 * The merge queues a non-owner hands objects to live in core/brc.c.  At
 * the end: Py_ReprEnter / Py_ReprLeave and the writer behind the list,
 * tuple and dict reprs.
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

#include <string.h>

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

/* ---- Py_ReprEnter / Py_ReprLeave ------------------------------------------------
 *
 * The objects whose repr is running on this thread, innermost last, each
 * with a strong reference: a stack kept in the thread-state dict
 * (PyThreadState_GetDict) under its own type as the key, so
 * PyThreadState_Clear (and so a thread's exit, and Py_FinalizeEx for the
 * main thread) frees it.  CPython keeps a list there under "Py_Repr"; a
 * stack of our own never allocates to pop, so Py_ReprLeave cannot fail.
 * Only its thread uses it: plain fields, no lock. */

typedef struct {
    PyObject_HEAD
    Py_ssize_t len;
    Py_ssize_t cap;
    PyObject **objs;   /* PyMem block of cap entries, or NULL */
} repr_stack;

static void
repr_stack_dealloc(PyObject *op)
{
    repr_stack *s = (repr_stack *)op;
    while (s->len > 0) {   /* an Enter without its Leave */
        Py_DECREF(s->objs[--s->len]);
    }
    PyMem_Free(s->objs);
    PyObject_Free(op);
}

static PyTypeObject repr_stack_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "repr_stack",
    .tp_basicsize = sizeof(repr_stack),
    .tp_dealloc = repr_stack_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
};

/* A new reference to this thread's stack, created if `create`; NULL if
 * there is none, or with an exception if creating it failed.  The caller
 * has a thread state. */
static repr_stack *
repr_stack_get(bool create)
{
    PyObject *dict = PyThreadState_GetDict();
    if (dict == NULL) {
        return create ? (repr_stack *)PyErr_NoMemory() : NULL;
    }
    PyObject *key = (PyObject *)&repr_stack_type;
    PyObject *found;
    (void)PyDict_GetItemRef(dict, key, &found);   /* a type's hash cannot fail */
    if (found != NULL && Py_IS_TYPE(found, &repr_stack_type)) {
        return (repr_stack *)found;
    }
    Py_XDECREF(found);   /* someone else's object under our key: replaced below */
    if (!create) {
        return NULL;
    }
    if (PyType_Ready(&repr_stack_type) < 0) {
        return NULL;
    }
    repr_stack *s = PyObject_New(repr_stack, &repr_stack_type);
    if (s == NULL) {
        return NULL;
    }
    s->len = 0;
    s->cap = 0;
    s->objs = NULL;
    if (PyDict_SetItem(dict, key, (PyObject *)s) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    return s;
}

/* Where obj is on s, or -1. */
static Py_ssize_t
repr_stack_find(repr_stack *s, PyObject *obj)
{
    Py_ssize_t i = s->len;
    while (--i >= 0 && s->objs[i] != obj) {
    }
    return i;
}

int
Py_ReprEnter(PyObject *obj)
{
    if (PyThreadState_GetUnchecked() == NULL) {
        return 0;   /* as CPython: nothing to record in */
    }
    repr_stack *s = repr_stack_get(true);
    if (s == NULL) {
        return -1;
    }
    int r = 0;
    if (repr_stack_find(s, obj) >= 0) {
        r = 1;
    }
    else if (s->len == s->cap) {
        Py_ssize_t cap = s->cap == 0 ? 8 : s->cap * 2;
        PyObject **objs = PyMem_Realloc(s->objs, (size_t)cap * sizeof(PyObject *));
        if (objs == NULL) {
            PyErr_NoMemory();
            r = -1;
        }
        else {
            s->objs = objs;
            s->cap = cap;
        }
    }
    if (r == 0) {
        s->objs[s->len++] = Py_NewRef(obj);
    }
    Py_DECREF(s);
    return r;
}

void
Py_ReprLeave(PyObject *obj)
{
    if (PyThreadState_GetUnchecked() == NULL) {
        return;
    }
    PyObject *exc = PyErr_GetRaisedException();   /* kept as it was */
    repr_stack *s = repr_stack_get(false);
    if (s != NULL) {
        Py_ssize_t i = repr_stack_find(s, obj);   /* the top, unless misused */
        if (i >= 0) {
            s->len--;
            memmove(&s->objs[i], &s->objs[i + 1], (size_t)(s->len - i) * sizeof(PyObject *));
            Py_DECREF(obj);
        }
        Py_DECREF(s);
    }
    PyErr_SetRaisedException(exc);
}

/* ---- container reprs ------------------------------------------------------------
 *
 * list, tuple and dict write "open item, item, ... close" into a growing
 * UTF-8 buffer (every piece is valid UTF-8, so the whole is) and make one
 * str at the end.  ft_repr_begin takes the Py_ReprEnter guard and
 * ft_repr_end leaves it; in between, the container writes its items with
 * ft_repr_item.  An item's repr runs arbitrary code, which may change the
 * container or free the item: callers hold a new reference to each item
 * while its repr runs. */

int
ft_repr_write(ft_repr_writer *w, const char *s, size_t n)
{
    if (w->cap - w->len < n) {
        size_t cap = w->cap != 0 ? w->cap : 64;
        while (cap - w->len < n) {
            if (cap > (size_t)PY_SSIZE_T_MAX / 2) {
                PyErr_NoMemory();
                return -1;
            }
            cap *= 2;
        }
        char *buf = PyMem_RawRealloc(w->buf, cap);
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->buf = buf;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    return 0;
}

int
ft_repr_write_repr(ft_repr_writer *w, PyObject *o)
{
    PyObject *r = PyObject_Repr(o);
    if (r == NULL) {
        return -1;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(r, &n);   /* cannot fail for a str */
    int rc = ft_repr_write(w, u, (size_t)n);
    Py_DECREF(r);
    return rc;
}

int
ft_repr_item(ft_repr_writer *w, PyObject *item)
{
    if (w->items++ > 0 && ft_repr_write(w, ", ", 2) < 0) {
        return -1;
    }
    return ft_repr_write_repr(w, item);
}

int
ft_repr_begin(ft_repr_writer *w, PyObject *self, Py_ssize_t size, const char *open,
              const char *close, PyObject **result)
{
    *w = (ft_repr_writer){ .self = self, .close = close };
    if (size == 0) {
        *result = PyUnicode_FromFormat("%s%s", open, close);
        return 1;
    }
    int entered = Py_ReprEnter(self);
    if (entered != 0) {
        /* Already being repr'd on this thread: "[...]", and "(...)" for a
         * one-item tuple, whose close is ",)". */
        *result = entered < 0 ? NULL
                              : PyUnicode_FromFormat("%s...%s", open, close + strlen(close) - 1);
        return 1;
    }
    if (ft_repr_write(w, open, strlen(open)) < 0) {
        Py_ReprLeave(self);
        *result = NULL;
        return 1;
    }
    return 0;
}

PyObject *
ft_repr_end(ft_repr_writer *w, int status)
{
    if (status == 0) {
        status = ft_repr_write(w, w->close, strlen(w->close));
    }
    Py_ReprLeave(w->self);
    PyObject *r = status == 0 ? PyUnicode_FromStringAndSize(w->buf, (Py_ssize_t)w->len) : NULL;
    PyMem_RawFree(w->buf);
    w->buf = NULL;
    return r;
}

PyObject *
ft_sequence_repr(PyObject *self, getiterfunc iter, const char *open, const char *close)
{
    ft_repr_writer w;
    PyObject *result;
    Py_ssize_t size = __atomic_load_n(&((PyVarObject *)self)->ob_size, __ATOMIC_RELAXED);
    if (ft_repr_begin(&w, self, size, open, close, &result)) {
        return result;
    }
    PyObject *it = iter(self);
    int status = it == NULL ? -1 : 0;
    PyObject *item;
    while (status == 0 && (item = PyIter_Next(it)) != NULL) {
        status = ft_repr_item(&w, item);
        Py_DECREF(item);
    }
    if (status == 0 && PyErr_Occurred()) {
        status = -1;   /* the iterator failed */
    }
    Py_XDECREF(it);
    return ft_repr_end(&w, status);
}
