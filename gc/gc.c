/* The cycle collector: PyGC_Collect and automatic collection.
 *
 * WHAT IT DOES
 *   Non-generational: every collection looks at every tracked GC object of
 *   the interpreter, including objects created by threads that have since
 *   exited (their heaps are orphaned, not lost: core/obmalloc.c).  It finds
 *   the objects no reference from outside the tracked set can reach
 *   (CPython's subtract-internal-references algorithm), finalizes them once
 *   (PEP 442), checks whether a finalizer brought any back, breaks the
 *   cycles of the rest with tp_clear, and drops them.
 *
 * PHASES (one collection; only one runs at a time per interpreter)
 *
 *     PyGC_Collect ─ CAS collecting 0->1 (else return 0 at once)
 *       │
 *       ├─ PAUSE 1 (world stopped, reason "gc")
 *       │    merge every thread's refcount merge queue (core/brc.c); what
 *       │      only a queue held keeps that reference until the pause ends
 *       │    snapshot: number every listed object (ft_gc_heaps_snapshot)
 *       │    refs[i] = true count of each tracked, mortal object
 *       │    subtract: for each such object, tp_traverse decrements refs of
 *       │      the tracked objects it references
 *       │    mark: objects with refs > 0 are referenced from outside (a C
 *       │      local, a non-GC object...): they and all they
 *       │      reach are reachable
 *       │    legacy tp_del objects among the rest go to the garbage list
 *       │      (CPython's gc.garbage); what they reach is kept with them
 *       │    the rest is UNREACHABLE: each gets one reference owned by the
 *       │      collector, through an explicit merge of its count
 *       ├─ world running: tp_finalize of each unreachable object not yet
 *       │    finalized (FINALIZED bit: once per object, ever)
 *       ├─ PAUSE 2 (only if a finalizer ran): refs = count - 1 (ours), minus
 *       │    references among the unreachable set; anything above 0 was
 *       │    resurrected and keeps everything it reaches in the set alive
 *       └─ world running: tp_clear each object still unreachable and still
 *            tracked, then drop the collector's references: the cycles
 *            are broken, counts reach 0, objects are freed by _Py_Dealloc
 *
 * WHY THE WORLD IS STOPPED, AND WHEN IT IS NOT
 *   The counts and the references tp_traverse reports must not change while
 *   they are compared, so pause 1 runs with every other thread of the
 *   interpreter parked (free-threaded build: ft_stop_the_world; GIL build:
 *   the GIL, which the collector holds and does not drop during a pause, as
 *   nothing in a pause allocates an object).  Parked threads stopped at a
 *   safe point: an allocation, a detach, an explicit safe point; the
 *   containers keep their published state readable at every such point (the
 *   lock-free readers need the same), so traversal sees consistent objects.
 *   Finalizers and tp_clear run arbitrary code that may take locks held by
 *   other threads: they run with the world running.  Only objects nobody
 *   else can reach are touched then, so other threads cannot observe them,
 *   except through a finalizer that publishes one: pause 2 catches that.
 *
 * REFERENCE COUNTS (free-threaded build)
 *   A parked owner does not write its local counts, so refs[i] = Py_REFCNT
 *   (local + shared) is exact once the merge queues are merged: a queued
 *   object carries the queue's reference (core/brc.c), which no traverse
 *   reports, so pause 1 first merges every queue on the owners' behalf
 *   (ft_brc_merge_all_stopped) and drops those references.  An object the
 *   queue alone held keeps it through the pause (its destructor cannot run
 *   with the world stopped), so it and what it reaches survive this
 *   collection; it is freed by reference counting (ft_brc_release) as soon
 *   as the world runs.  The collector's reference to an unreachable
 *   object it owns is a plain local increment; any other one's count is
 *   merged explicitly with +1 (ft_object_explicit_merge: allowed with the
 *   world stopped): from then on its count is shared and whichever thread
 *   drops the last reference frees it at once, even if its owner thread is
 *   detached forever or gone, instead of through the owner's merge queue.
 *
 * MEMORY ORDERING
 *   Everything a parked thread wrote happens-before the pause (it published
 *   SUSPENDED or DETACHED with release; the requester read it with
 *   acquire), and everything the pause wrote happens-before the threads'
 *   next attach (start-the-world releases, attach acquires).  `collecting`
 *   is a CAS (acq_rel) so a second collector sees 1 and leaves.  young,
 *   trigger, threshold and enabled are hints: relaxed.
 *
 * THE TRIGGER
 *   core/obmalloc.c counts GC objects created minus freed (per thread,
 *   flushed every 512 into gc.young) and calls ft_gc_auto_hook at an
 *   allocation's safe point once young > gc.trigger.  After each collection
 *   trigger = max(threshold, survivors / 4): a heap of N live objects is
 *   collected again only after N/4 new ones, so the cost stays linear in
 *   the allocations however large the heap grows (CPython #114817 and
 *   #132917 were quadratic collections of a growing heap).
 *
 * OUT OF MEMORY
 *   The collector's arrays are raw memory.  If they cannot be had the
 *   collection gives up before it changes anything (nothing is collected,
 *   0 is returned); it never crashes or leaves an object half-handled.
 */
#include <string.h>

#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"

enum {
    OUT = 0,        /* not a candidate: untracked, immortal, frozen */
    IN,             /* a candidate, not (yet) known reachable */
    REACHABLE,      /* reachable from outside the candidates */
};

/* One pause's working set: objs[i] is object number i (ft_gc_number). */
typedef struct scan {
    PyObject **objs;
    size_t n;
    int64_t *refs;
    uint8_t *state;
    PyObject **stack;          /* mark stack */
    size_t sp, cap;
    bool oom;
} scan;

static bool
candidate_type(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    return (tp->tp_flags & Py_TPFLAGS_HAVE_GC) && (tp->tp_is_gc == NULL || tp->tp_is_gc(op));
}

/* The number of op in s if op is a GC object listed there, else SIZE_MAX.
 * Immortal objects are excluded first: static objects have no pre-header. */
static inline size_t
number_in(scan *s, PyObject *op)
{
    if (_Py_IsImmortal(op) || !candidate_type(op)) {
        return SIZE_MAX;
    }
    size_t i = ft_gc_number(op);
    return i < s->n && s->objs[i] == op ? i : SIZE_MAX;
}

static bool
scan_open(scan *s, PyInterpreterState *interp)
{
    memset(s, 0, sizeof *s);
    if (ft_gc_heaps_snapshot(interp, &s->objs, &s->n) < 0) {
        return false;
    }
    s->refs = PyMem_RawMalloc((s->n ? s->n : 1) * sizeof *s->refs);
    s->state = PyMem_RawCalloc(s->n ? s->n : 1, 1);
    s->cap = 256;
    s->stack = PyMem_RawMalloc(s->cap * sizeof *s->stack);
    if (!s->refs || !s->state || !s->stack) {
        PyMem_RawFree(s->refs);
        PyMem_RawFree(s->state);
        PyMem_RawFree(s->stack);
        PyMem_RawFree(s->objs);
        return false;
    }
    return true;
}

static void
scan_close(scan *s)
{
    PyMem_RawFree(s->objs);
    PyMem_RawFree(s->refs);
    PyMem_RawFree(s->state);
    PyMem_RawFree(s->stack);
}

static inline void
push(scan *s, PyObject *op)
{
    if (ft_unlikely(s->sp == s->cap)) {
        PyObject **bigger = PyMem_RawRealloc(s->stack, 2 * s->cap * sizeof *bigger);
        if (bigger == NULL) {
            s->oom = true;   /* the caller gives up the whole collection */
            return;
        }
        s->stack = bigger;
        s->cap *= 2;
    }
    s->stack[s->sp++] = op;
}

static int
visit_decref(PyObject *op, void *arg)
{
    scan *s = arg;
    size_t i = number_in(s, op);
    if (i != SIZE_MAX && s->state[i] == IN) {
        s->refs[i]--;
    }
    return 0;
}

static int
visit_reach(PyObject *op, void *arg)
{
    scan *s = arg;
    size_t i = number_in(s, op);
    if (i != SIZE_MAX && s->state[i] == IN) {
        s->state[i] = REACHABLE;
        push(s, op);
    }
    return 0;
}

static void
traverse(PyObject *op, visitproc visit, scan *s)
{
    traverseproc tr = Py_TYPE(op)->tp_traverse;
    if (tr != NULL) {
        (void)tr(op, visit, s);
    }
}

/* Mark op (state IN) reachable, and everything it reaches among IN. */
static void
mark_from(scan *s, size_t i)
{
    s->state[i] = REACHABLE;
    push(s, s->objs[i]);
    while (s->sp > 0 && !s->oom) {
        traverse(s->stack[--s->sp], visit_reach, s);
    }
}

/* With refs[i] = the count of each IN object (minus the collector's own
 * references): subtract the references among the IN objects, then mark
 * from every IN object whose refs stay above 0.  Objects left IN are
 * unreachable. */
static void
subtract_and_mark(scan *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->state[i] == IN) {
            traverse(s->objs[i], visit_decref, s);
        }
    }
    for (size_t i = 0; i < s->n && !s->oom; i++) {
        if (s->state[i] == IN && s->refs[i] > 0) {
            mark_from(s, i);
        }
    }
}

/* A growable array of objects the collector holds a reference to. */
typedef struct objvec {
    PyObject **v;
    size_t n, cap;
} objvec;

static bool
objvec_push(objvec *a, PyObject *op)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        PyObject **v = PyMem_RawRealloc(a->v, cap * sizeof *v);
        if (v == NULL) {
            return false;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = op;
    return true;
}

/* The collector's reference to an unreachable object, taken in pause 1. */
static void
take_reference(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    if (_Py_IsOwnedByCurrentThread(op)) {
        Py_INCREF(op);   /* ours: the local count, and local decrefs later */
    }
    else {
        (void)ft_object_explicit_merge(op, 1);   /* world stopped: allowed */
    }
#else
    Py_INCREF(op);
#endif
}

static inline bool
is_tracked(PyObject *op)
{
    return (ft_gc_bits(op) & FT_GC_TRACKED) != 0;
}

/* ---- pause 1 --------------------------------------------------------------------- */

typedef struct result {
    objvec unreachable;        /* the collector holds a reference to each */
    objvec legacy;             /* kept alive: to the garbage list (reference held) */
    uint64_t examined;
    size_t to_finalize;        /* unreachable objects with a finalizer still to run */
    int64_t listed;            /* GC objects listed at pause 1 */
    bool failed;
} result;

static void
pause1(PyInterpreterState *interp, result *r)
{
    scan s;
    if (!scan_open(&s, interp)) {
        r->failed = true;
        return;
    }
    r->listed = (int64_t)s.n;
    /* The candidates with a legacy finalizer (tp_del), in number order, noted
     * while their headers are in cache: a second pass over every header to
     * look for them cost a fifth of pause 1 with 1e6 candidates. */
    objvec with_del = {0};
    for (size_t i = 0; i < s.n; i++) {
        PyObject *op = s.objs[i];
        if (is_tracked(op) && !_Py_IsImmortal(op) && !(ft_gc_bits(op) & FT_GC_FROZEN) &&
            candidate_type(op)) {
            s.state[i] = IN;
            s.refs[i] = (int64_t)Py_REFCNT(op);
            r->examined++;
            if (ft_unlikely(Py_TYPE(op)->tp_del != NULL) && !s.oom &&
                !objvec_push(&with_del, op)) {
                s.oom = true;
            }
        }
    }
    if (!s.oom) {
        subtract_and_mark(&s);
    }
    /* Legacy finalizers (tp_del) are never run by the collector: the object
     * and everything it reaches stay alive (CPython's gc.garbage).  One that
     * an earlier one reaches is kept by that one, not listed itself. */
    for (size_t k = 0; k < with_del.n && !s.oom; k++) {
        PyObject *op = with_del.v[k];
        size_t i = ft_gc_number(op);
        if (s.state[i] == IN) {
            mark_from(&s, i);
            if (!objvec_push(&r->legacy, op)) {
                s.oom = true;
            }
        }
    }
    PyMem_RawFree(with_del.v);
    if (s.oom) {
        r->legacy.n = 0;
        r->failed = true;
        scan_close(&s);
        return;
    }
    size_t count = 0;
    for (size_t i = 0; i < s.n; i++) {
        count += s.state[i] == IN;
    }
    r->unreachable.v = PyMem_RawMalloc((count ? count : 1) * sizeof(PyObject *));
    if (r->unreachable.v == NULL) {
        r->legacy.n = 0;
        r->failed = true;
        scan_close(&s);
        return;
    }
    /* Nothing has changed so far; from here the collection commits.  One
     * pass over the unreachable objects' headers (they are far larger than
     * the caches): reference, garbage bit, finalizer needed. */
    for (size_t i = 0; i < s.n; i++) {
        if (s.state[i] == IN) {
            PyObject *op = s.objs[i];
            r->unreachable.v[r->unreachable.n++] = op;
            take_reference(op);
            ft_gc_bits_set(op, FT_GC_UNREACHABLE);   /* freed at once */
            r->to_finalize += Py_TYPE(op)->tp_finalize != NULL &&
                              !(ft_gc_bits(op) & FT_GC_FINALIZED);
        }
    }
    for (size_t i = 0; i < r->legacy.n; i++) {
        Py_INCREF(r->legacy.v[i]);
    }
    scan_close(&s);
}

/* ---- pause 2: resurrection ---------------------------------------------------------- */

/* Remove from u every object a finalizer resurrected (and whatever those
 * reach within u) or untracked; their references go to `drop`.  Returns
 * the number resurrected, or -1 if out of memory (then every object is
 * treated as resurrected: nothing is cleared, all are just dropped). */
static int64_t
pause2(PyInterpreterState *interp, objvec *u, objvec *drop)
{
    scan s;
    if (!scan_open(&s, interp)) {
        return -1;
    }
    for (size_t k = 0; k < u->n; k++) {
        size_t i = ft_gc_number(u->v[k]);
        if (is_tracked(u->v[k])) {
            s.state[i] = IN;
            s.refs[i] = (int64_t)Py_REFCNT(u->v[k]) - 1;   /* not ours */
        }
    }
    subtract_and_mark(&s);
    if (s.oom) {
        scan_close(&s);
        return -1;
    }
    int64_t resurrected = 0;
    size_t kept = 0;
    for (size_t k = 0; k < u->n; k++) {
        PyObject *op = u->v[k];
        uint8_t st = s.state[ft_gc_number(op)];
        if (st == IN) {
            u->v[kept++] = op;
        }
        else {
            resurrected += st == REACHABLE;
            ft_gc_bits_clear(op, FT_GC_UNREACHABLE);   /* visible again: deferred frees */
            drop->v[drop->n++] = op;   /* drop has room for all of u */
        }
    }
    u->n = kept;
    scan_close(&s);
    return resurrected;
}

/* ---- the collection ------------------------------------------------------------------ */

static void
stats_update(PyInterpreterState *interp, void (*fn)(PyUnstable_GCStats *, void *), void *arg)
{
    ft_raw_mutex_lock(&interp->gc.stats_lock);
    fn(&interp->gc.stats, arg);
    ft_raw_mutex_unlock(&interp->gc.stats_lock);
}

typedef struct outcome {
    bool automatic;
    uint64_t examined, collected, uncollectable, finalized, resurrected;
    uint64_t pause1_ns, pause2_ns, total_ns;
    int64_t live;
} outcome;

static void
record(PyUnstable_GCStats *st, void *arg)
{
    outcome *o = arg;
    st->collections++;
    st->automatic += o->automatic;
    st->collected += o->collected;
    st->uncollectable += o->uncollectable;
    st->finalized += o->finalized;
    st->resurrected += o->resurrected;
    st->last_examined = o->examined;
    st->last_collected = o->collected;
    st->last_pause1_ns = o->pause1_ns;
    st->last_pause2_ns = o->pause2_ns;
    st->last_total_ns = o->total_ns;
    st->live = o->live;
}

static void
set_trigger(PyInterpreterState *interp, int64_t live)
{
    int64_t threshold = atomic_load_explicit(&interp->gc.threshold, memory_order_relaxed);
    int64_t trigger = threshold == 0 ? INT64_MAX : (live / 4 > threshold ? live / 4 : threshold);
    atomic_store_explicit(&interp->gc.trigger, trigger, memory_order_relaxed);
}

/* The interpreter's garbage list, created on first use (CAS: a concurrent
 * creator's list wins, ours is dropped); NULL with MemoryError set. */
static PyObject *
garbage_list(PyInterpreterState *interp)
{
    PyObject *garbage = atomic_load_explicit(&interp->gc.garbage, memory_order_acquire);
    if (garbage != NULL) {
        return garbage;
    }
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL) {
        return NULL;
    }
    if (atomic_compare_exchange_strong_explicit(&interp->gc.garbage, &garbage, fresh,
                                                memory_order_acq_rel, memory_order_acquire)) {
        return fresh;
    }
    Py_DECREF(fresh);
    return garbage;
}

static void
add_to_garbage(PyInterpreterState *interp, objvec *legacy)
{
    if (legacy->n == 0) {
        return;
    }
    PyObject *garbage = garbage_list(interp);
    if (garbage == NULL) {
        PyErr_Clear();   /* out of memory: the objects just stay alive */
    }
    for (size_t i = 0; i < legacy->n; i++) {
        if (garbage != NULL && PyList_Append(garbage, legacy->v[i]) < 0) {
            PyErr_Clear();
        }
        Py_DECREF(legacy->v[i]);
    }
}

/* Run with `collecting` held by the caller; ts attached. */
static Py_ssize_t
collect(ft_tstate *ts, bool automatic)
{
    PyInterpreterState *interp = ts->base.interp;
    outcome o = { .automatic = automatic };
    int64_t t0 = ft_monotonic_ns();
    PyObject *exc = PyErr_GetRaisedException();   /* finalizers must not see it */

    result r = { 0 };
    ft_stop_the_world(interp, PyUnstable_STOP_GC);
    ft_brc_chunk *held = ft_brc_merge_all_stopped();
    pause1(interp, &r);
    ft_start_the_world(interp);
    ft_brc_release(held);   /* what only a merge queue held: freed now */
    int64_t t1 = ft_monotonic_ns();
    o.pause1_ns = (uint64_t)(t1 - t0);
    if (r.failed) {
        PyMem_RawFree(r.unreachable.v);
        PyMem_RawFree(r.legacy.v);
        PyErr_SetRaisedException(exc);
        return 0;
    }
    o.examined = r.examined;
    o.uncollectable = r.legacy.n;
    add_to_garbage(interp, &r.legacy);

    /* Finalizers, world running.  The collector's reference keeps each
     * object alive whatever its finalizer drops. */
    objvec *u = &r.unreachable;
    for (size_t k = 0; k < u->n && r.to_finalize > 0; k++) {
        PyObject *op = u->v[k];
        if (Py_TYPE(op)->tp_finalize != NULL && !PyObject_GC_IsFinalized(op)) {
            PyObject_CallFinalizer(op);
            o.finalized++;
            if (PyErr_Occurred()) {
                PyErr_WriteUnraisable(op);
            }
        }
    }

    /* Resurrection, and objects a finalizer untracked: not cleared. */
    objvec drop = { 0 };
    bool clear_none = false;
    if (o.finalized > 0) {
        drop.v = PyMem_RawMalloc((u->n ? u->n : 1) * sizeof *drop.v);
        int64_t res = -1;
        if (drop.v != NULL) {
            int64_t t2 = ft_monotonic_ns();
            ft_stop_the_world(interp, PyUnstable_STOP_GC);
            res = pause2(interp, u, &drop);
            ft_start_the_world(interp);
            o.pause2_ns = (uint64_t)(ft_monotonic_ns() - t2);
        }
        if (res < 0) {
            /* No memory to check: any of them may be resurrected, so
             * clear none; they are only dropped (cycles among them stay). */
            clear_none = true;
            res = 0;
            ft_stop_the_world(interp, PyUnstable_STOP_GC);
            for (size_t k = 0; k < u->n; k++) {
                ft_gc_bits_clear(u->v[k], FT_GC_UNREACHABLE);
            }
            ft_start_the_world(interp);
        }
        o.resurrected = (uint64_t)res;
    }

    /* Break the cycles, then drop the collector's references.  Backwards:
     * u is in heap order, and a heap removes an object by moving its last
     * one into the hole, so freeing from the end touches no other object. */
    for (size_t k = u->n; k-- > 0;) {
        PyObject *op = u->v[k];
        inquiry clear = Py_TYPE(op)->tp_clear;
        if (clear != NULL && is_tracked(op) && !clear_none) {
            (void)clear(op);
            if (PyErr_Occurred()) {
                PyErr_WriteUnraisable(op);
            }
        }
        Py_DECREF(op);   /* held since pause 1: nothing in u was freed before */
    }
    o.collected = clear_none ? 0 : u->n;
    for (size_t k = 0; k < drop.n; k++) {
        Py_DECREF(drop.v[k]);
    }
    PyMem_RawFree(u->v);
    PyMem_RawFree(drop.v);
    PyMem_RawFree(r.legacy.v);
    /* Our own frees counted young down (core/obmalloc.c counts every free):
     * start from 0 again, or the next trigger would wait for as many new
     * objects as this collection freed on top of the trigger. */
    atomic_store_explicit(&interp->gc.young, 0, memory_order_relaxed);

    o.live = r.listed - (int64_t)o.collected;
    set_trigger(interp, o.live);
    o.total_ns = (uint64_t)(ft_monotonic_ns() - t0);
    stats_update(interp, record, &o);
    PyErr_SetRaisedException(exc);
    return (Py_ssize_t)(o.collected + o.uncollectable);
}

static ft_tstate *
require_attached(const char *func)
{
    ft_tstate *ts = ft_current();
    if (ts == NULL) {
        _Py_FatalErrorFunc(func, "no thread state is attached");
    }
    return ts;
}

static bool
try_begin(PyInterpreterState *interp)
{
    int expected = 0;
    return atomic_compare_exchange_strong_explicit(&interp->gc.collecting, &expected, 1,
                                                   memory_order_acq_rel,
                                                   memory_order_relaxed);
}

static void
end(PyInterpreterState *interp)
{
    atomic_store_explicit(&interp->gc.collecting, 0, memory_order_release);
}

Py_ssize_t
PyGC_Collect(void)
{
    ft_tstate *ts = require_attached("PyGC_Collect");
    PyInterpreterState *interp = ts->base.interp;
    if (!try_begin(interp)) {
        return 0;
    }
    Py_ssize_t n = collect(ts, false);
    end(interp);
    return n;
}

/* ft_gc_auto_hook: an allocation pushed gc.young past gc.trigger. */
static void
auto_collect(ft_tstate *ts)
{
    PyInterpreterState *interp = ts->base.interp;
    if (!atomic_load_explicit(&interp->gc.enabled, memory_order_relaxed) ||
        atomic_load_explicit(&interp->gc.threshold, memory_order_relaxed) == 0 ||
        atomic_load_explicit(&interp->finalizing, memory_order_relaxed) != NULL) {
        return;
    }
    if (!try_begin(interp)) {
        return;
    }
    /* Re-check under the flag: another thread may have just collected. */
    if (atomic_load_explicit(&interp->gc.young, memory_order_relaxed) >
        atomic_load_explicit(&interp->gc.trigger, memory_order_relaxed)) {
        (void)collect(ts, true);
    }
    end(interp);
}

/* ft_gc_fini_hook: Py_FinalizeEx, other threads already shut down. */
static void
final_collect(ft_tstate *ts)
{
    PyInterpreterState *interp = ts->base.interp;
    if (try_begin(interp)) {
        (void)collect(ts, false);
        end(interp);
    }
    PyObject *garbage = atomic_exchange_explicit(&interp->gc.garbage, NULL, memory_order_acq_rel);
    Py_XDECREF(garbage);
}

__attribute__((constructor)) static void
register_hooks(void)
{
    atomic_store_explicit(&ft_gc_auto_hook, auto_collect, memory_order_release);
    atomic_store_explicit(&ft_gc_fini_hook, final_collect, memory_order_release);
}

/* ---- switches and statistics ----------------------------------------------------------- */

static int
set_enabled(const char *func, int on)
{
    ft_tstate *ts = require_attached(func);
    return atomic_exchange_explicit(&ts->base.interp->gc.enabled, on, memory_order_relaxed);
}

int
PyGC_Enable(void)
{
    return set_enabled("PyGC_Enable", 1);
}

int
PyGC_Disable(void)
{
    return set_enabled("PyGC_Disable", 0);
}

int
PyGC_IsEnabled(void)
{
    ft_tstate *ts = require_attached("PyGC_IsEnabled");
    return atomic_load_explicit(&ts->base.interp->gc.enabled, memory_order_relaxed);
}

static void
copy_out(PyUnstable_GCStats *st, void *arg)
{
    *(PyUnstable_GCStats *)arg = *st;
}

int
PyUnstable_GC_GetStats(PyUnstable_GCStats *out)
{
    ft_tstate *ts = require_attached("PyUnstable_GC_GetStats");
    if (out == NULL) {
        PyErr_SetString(PyExc_ValueError, "PyUnstable_GC_GetStats: out is NULL");
        return -1;
    }
    PyInterpreterState *interp = ts->base.interp;
    stats_update(interp, copy_out, out);
    out->threshold = atomic_load_explicit(&interp->gc.threshold, memory_order_relaxed);
    return 0;
}

int
PyUnstable_GC_SetThreshold(int64_t threshold)
{
    ft_tstate *ts = require_attached("PyUnstable_GC_SetThreshold");
    if (threshold < 0) {
        PyErr_SetString(PyExc_ValueError, "the collection threshold must not be negative");
        return -1;
    }
    PyInterpreterState *interp = ts->base.interp;
    atomic_store_explicit(&interp->gc.threshold, threshold, memory_order_relaxed);
    int64_t live;
    ft_raw_mutex_lock(&interp->gc.stats_lock);
    live = interp->gc.stats.live;
    ft_raw_mutex_unlock(&interp->gc.stats_lock);
    set_trigger(interp, live);
    return 0;
}

int64_t
PyUnstable_GC_GetThreshold(void)
{
    ft_tstate *ts = require_attached("PyUnstable_GC_GetThreshold");
    return atomic_load_explicit(&ts->base.interp->gc.threshold, memory_order_relaxed);
}

PyObject *
PyUnstable_GC_GetGarbage(void)
{
    ft_tstate *ts = require_attached("PyUnstable_GC_GetGarbage");
    return Py_XNewRef(garbage_list(ts->base.interp));
}
