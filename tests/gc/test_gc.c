/* The cycle collector (gc/gc.c).
 *
 * Single-threaded:
 *   - cycles die: a self-referencing list, a 2-list cycle, a dict<->list
 *     cycle, a cycle through a tuple (PyGC_Collect returns the count, the
 *     tracer sees each destroyed); the same cycles held by a C local are
 *     kept intact, and collected once it is dropped;
 *   - a user GC type (PyType_FromSpec: traverse, clear, dealloc, finalize):
 *     the finalizer runs once per object, ever; PyObject_GC_IsFinalized;
 *     resurrection keeps the object and everything it reaches (stats
 *     `resurrected`), a later collection frees it without finalizing again;
 *     a raising finalizer is reported as unraisable and the caller's pending
 *     exception comes back unchanged;
 *   - legacy tp_del: the unreachable object goes to the garbage list, is not
 *     freed, counts as uncollectable (and the PyType_FromSpec slot);
 *   - immortal objects inside or around cycles are never collected;
 *     untracked objects are not examined (stats last_examined);
 *   - switches: PyGC_Enable/Disable/IsEnabled; automatic collection with a
 *     low threshold, none when disabled or with threshold 0, a negative
 *     threshold refused; the trigger scales with the live heap
 *     (max(threshold, survivors / 4)); the frees of a collection's own
 *     garbage do not push the next automatic collection further away;
 *   - stop-the-world statistics: one "gc" stop per collection, two when a
 *     finalizer ran (free-threaded); none in the GIL build;
 *   - out of memory (ft_alloc_fail_after, which PyMem_Raw* obeys) at every
 *     allocation of a collection: it returns 0 and changes nothing, or fails
 *     its resurrection check and leaves the finalized objects alive; a later
 *     collection frees everything, finalizing nothing twice;
 *   - misuse: every function without an attached thread state is fatal,
 *     naming itself.
 * Concurrent (cpython-ft-internals.md §14 F58-F60, B22, B25):
 *   - a cycle held by another thread's C local (attached at safe points, or
 *     detached) is kept; collected once that thread drops it (F58);
 *   - cycles built across two threads, then dropped: collected by the main
 *     thread, whether the threads still live or have exited (F60);
 *   - merge queues: an object whose owner stays detached and whose last
 *     outside reference a non-owner dropped (so the owner's queue holds it):
 *     a self-referencing list is collected, a plain list is freed by the
 *     collection's merge;
 *   - one collection at a time (F59): a finalizer's PyGC_Collect returns 0;
 *     while a finalizer of one collection waits, another thread's calls all
 *     return 0, traverse nothing and complete no collection;
 *   - B22 (gh-118332): a collection run inside a critical section on obj
 *     while two threads wait for obj; all finish;
 *   - B25 (gh-144513) with the collector as the stopping thread: two
 *     threads take turns holding obj and parking on it; the collection's
 *     stop hands obj to the parked one, and a tp_traverse begins a section
 *     on obj in the pause;
 *   - stress: 4 threads making cycles (lists, user-type pairs) while 2
 *     threads collect in a loop (and, in a second run, automatic
 *     collections race them); afterwards every cycle was freed, exactly,
 *     and the explicit collections' results add up to what was made.
 * Workers record into atomics; only the test's main thread asserts.  The
 * main thread detaches while it waits for workers (GIL build: they need the
 * GIL; free-threaded: they may stop the world).
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_critical_section.h"
#include "ft_lock.h"
#include "ft_object.h"
#include "ft_pystate.h"

TestSuite(gc, .init = test_runtime_setup, .fini = test_runtime_teardown,
          .timeout = FT_TIMEOUT(60));

#define POLL_MS 10000
/* Sanitizers and valgrind run 5-50x slower (valgrind serialises threads). */
#define SLOW_BUILD (FT_TIMEOUT_SCALE > 1)

/* ---- observing frees: the reference tracer ------------------------------------------------ */

static atomic_long destroyed_lists, destroyed_dicts, destroyed_tuples;

static int
tracer(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    if (event == PyRefTracer_DESTROY) {
        if (Py_IS_TYPE(op, &PyList_Type)) {
            atomic_fetch_add(&destroyed_lists, 1);
        }
        else if (Py_IS_TYPE(op, &PyDict_Type)) {
            atomic_fetch_add(&destroyed_dicts, 1);
        }
        else if (Py_IS_TYPE(op, &PyTuple_Type)) {
            atomic_fetch_add(&destroyed_tuples, 1);
        }
    }
    return 0;
}

static void
trace_on(void)
{
    atomic_store(&destroyed_lists, 0);
    atomic_store(&destroyed_dicts, 0);
    atomic_store(&destroyed_tuples, 0);
    cr_assert_eq(PyRefTracer_SetTracer(tracer, NULL), 0);
}

static void
trace_off(void)
{
    cr_assert_eq(PyRefTracer_SetTracer(NULL, NULL), 0);
}

static long
destroyed_total(void)
{
    return atomic_load(&destroyed_lists) + atomic_load(&destroyed_dicts) +
           atomic_load(&destroyed_tuples);
}

static PyUnstable_GCStats
stats(void)
{
    PyUnstable_GCStats st;
    cr_assert_eq(PyUnstable_GC_GetStats(&st), 0);
    return st;
}

/* Not asserting: workers use it too (a failure leaves NULL). */
static PyObject *
self_cycle(void)
{
    PyObject *l = PyList_New(0);
    if (l != NULL && PyList_Append(l, l) < 0) {
        Py_CLEAR(l);
    }
    return l;
}

static PyObject *
new_list(void)
{
    PyObject *l = PyList_New(0);
    cr_assert_not_null(l);
    return l;
}

/* ---- the four cycle shapes ------------------------------------------------------------------ */

/* Each builder returns a new reference to one object of a fresh cycle (the
 * rest is reachable only through the cycle); check says whether the cycle
 * is still whole; `objects` is its size. */
typedef struct {
    const char *name;
    PyObject *(*build)(void);
    bool (*check)(PyObject *root);
    long objects;
    long lists, dicts, tuples;
} shape;

static PyObject *
build_self_list(void)
{
    PyObject *l = self_cycle();
    cr_assert_not_null(l);
    return l;
}

static bool
check_self_list(PyObject *l)
{
    return PyList_GET_SIZE(l) == 1 && PyList_GET_ITEM(l, 0) == l;
}

static PyObject *
build_two_lists(void)
{
    PyObject *a = new_list(), *b = new_list();
    cr_assert_eq(PyList_Append(a, b), 0);
    cr_assert_eq(PyList_Append(b, a), 0);
    Py_DECREF(b);
    return a;
}

static bool
check_two_lists(PyObject *a)
{
    if (PyList_GET_SIZE(a) != 1) {
        return false;
    }
    PyObject *b = PyList_GET_ITEM(a, 0);
    return PyList_Check(b) && PyList_GET_SIZE(b) == 1 && PyList_GET_ITEM(b, 0) == a;
}

static PyObject *
build_dict_list(void)
{
    PyObject *d = PyDict_New(), *l = new_list();
    cr_assert_not_null(d);
    cr_assert_eq(PyDict_SetItemString(d, "l", l), 0);
    cr_assert_eq(PyList_Append(l, d), 0);
    Py_DECREF(l);
    return d;
}

static bool
check_dict_list(PyObject *d)
{
    PyObject *l = PyDict_GetItemString(d, "l");   /* borrowed */
    return l != NULL && PyList_Check(l) && PyList_GET_SIZE(l) == 1 &&
           PyList_GET_ITEM(l, 0) == d;
}

static PyObject *
build_tuple_list(void)
{
    PyObject *l = new_list();
    PyObject *t = PyTuple_New(1);
    cr_assert_not_null(t);
    PyTuple_SET_ITEM(t, 0, Py_NewRef(l));
    cr_assert_eq(PyList_Append(l, t), 0);
    Py_DECREF(t);
    return l;
}

static bool
check_tuple_list(PyObject *l)
{
    if (PyList_GET_SIZE(l) != 1) {
        return false;
    }
    PyObject *t = PyList_GET_ITEM(l, 0);
    return PyTuple_Check(t) && PyTuple_GET_SIZE(t) == 1 && PyTuple_GET_ITEM(t, 0) == l;
}

static const shape shapes[] = {
    { "self-referencing list", build_self_list, check_self_list, 1, 1, 0, 0 },
    { "two lists", build_two_lists, check_two_lists, 2, 2, 0, 0 },
    { "dict <-> list", build_dict_list, check_dict_list, 2, 1, 1, 0 },
    { "list <-> tuple", build_tuple_list, check_tuple_list, 2, 1, 0, 1 },
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

/* ---- F58: unreachable cycles die, referenced ones stay ----------------------------------- */

Test(gc, unreachable_cycles_are_collected)
{
    PyGC_Collect();
    for (size_t s = 0; s < NSHAPES; s++) {
        const shape *sh = &shapes[s];
        enum { N = 50 };
        PyUnstable_GCStats st0 = stats();
        trace_on();
        for (int i = 0; i < N; i++) {
            PyObject *root = sh->build();
            cr_assert(sh->check(root), "%s: built wrong", sh->name);
            Py_DECREF(root);
        }
        cr_assert_eq(destroyed_total(), 0, "%s: reference counting alone freed a cycle",
                     sh->name);
        Py_ssize_t n = PyGC_Collect();
        trace_off();
        PyUnstable_GCStats st1 = stats();
        cr_assert_eq(n, N * sh->objects, "%s: collected %zd", sh->name, n);
        cr_assert_eq(atomic_load(&destroyed_lists), N * sh->lists, "%s", sh->name);
        cr_assert_eq(atomic_load(&destroyed_dicts), N * sh->dicts, "%s", sh->name);
        cr_assert_eq(atomic_load(&destroyed_tuples), N * sh->tuples, "%s", sh->name);
        cr_assert_eq(st1.collections, st0.collections + 1);
        cr_assert_eq(st1.automatic, st0.automatic);
        cr_assert_eq(st1.collected, st0.collected + (uint64_t)n);
        cr_assert_eq(st1.last_collected, (uint64_t)n);
        cr_assert_eq(PyGC_Collect(), 0, "%s: nothing left", sh->name);
    }
    cr_assert_null(PyErr_Occurred());
}

Test(gc, cycle_held_by_a_c_local_is_kept_until_dropped)
{
    PyGC_Collect();
    for (size_t s = 0; s < NSHAPES; s++) {
        const shape *sh = &shapes[s];
        trace_on();
        PyObject *root = sh->build();   /* our reference: from outside the cycle */
        for (int round = 0; round < 3; round++) {
            cr_assert_eq(PyGC_Collect(), 0, "%s: a referenced cycle was collected", sh->name);
            cr_assert_eq(destroyed_total(), 0, "%s", sh->name);
            cr_assert(sh->check(root), "%s: the kept cycle was changed", sh->name);
        }
        cr_assert_eq(Py_REFCNT(root), 2, "%s: the cycle's and ours", sh->name);
        Py_DECREF(root);
        cr_assert_eq(destroyed_total(), 0);
        cr_assert_eq(PyGC_Collect(), sh->objects, "%s", sh->name);
        trace_off();
        cr_assert_eq(destroyed_total(), sh->objects, "%s", sh->name);
    }
    /* a reference to an inner member (not the one we built from) keeps it all */
    trace_on();
    PyObject *a = build_two_lists();
    PyObject *b = Py_NewRef(PyList_GET_ITEM(a, 0));
    Py_DECREF(a);
    cr_assert_eq(PyGC_Collect(), 0);
    cr_assert(check_two_lists(PyList_GET_ITEM(b, 0)));
    Py_DECREF(b);
    cr_assert_eq(PyGC_Collect(), 2);
    trace_off();
    cr_assert_eq(atomic_load(&destroyed_lists), 2);
}

/* ---- F58: a cycle held by another running thread's local --------------------------------- */

static struct {
    bool attached;               /* spin attached through safe points, else wait detached */
    atomic_int ready, drop, dropped, finish;
    atomic_int intact;           /* the cycle was whole when the worker dropped it */
} tl;

static void *
tl_worker(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *a = PyList_New(0), *b = PyList_New(0);
    bool ok = a && b && PyList_Append(a, b) == 0 && PyList_Append(b, a) == 0;
    Py_XDECREF(b);   /* only `a`, a C local, holds the cycle from outside */
    atomic_store(&tl.ready, ok ? 1 : -1);
    if (tl.attached) {
        TEST_HELPER_WAIT(((void)PyErr_CheckSignals(), atomic_load(&tl.drop)), POLL_MS);
    }
    else {
        Py_BEGIN_ALLOW_THREADS
        TEST_HELPER_WAIT(atomic_load(&tl.drop), POLL_MS);
        Py_END_ALLOW_THREADS
    }
    atomic_store(&tl.intact, ok && check_two_lists(a));
    Py_XDECREF(a);
    atomic_store(&tl.dropped, 1);
    /* still running (detached) while the main thread collects */
    Py_BEGIN_ALLOW_THREADS
    TEST_HELPER_WAIT(atomic_load(&tl.finish), POLL_MS);
    Py_END_ALLOW_THREADS
    PyGILState_Release(g);
    return NULL;
}

static void
held_by_thread(bool attached)
{
    PyGC_Collect();
    tl.attached = attached;
    trace_on();
    pthread_t t = test_start_thread(tl_worker, NULL);
    bool ready;
    Py_BEGIN_ALLOW_THREADS
    ready = TEST_POLL_UNTIL(atomic_load(&tl.ready) != 0, POLL_MS);
    Py_END_ALLOW_THREADS
    PyUnstable_GCStats st0 = stats();
    Py_ssize_t kept = PyGC_Collect();   /* free-threaded + attached: parks it at a safe point */
    PyUnstable_GCStats st1 = stats();
    long destroyed_while_held = atomic_load(&destroyed_lists);
    atomic_store(&tl.drop, 1);
    bool dropped;
    Py_BEGIN_ALLOW_THREADS
    dropped = TEST_POLL_UNTIL(atomic_load(&tl.dropped), POLL_MS);
    Py_END_ALLOW_THREADS
    Py_ssize_t collected = PyGC_Collect();   /* the worker still runs, detached */
    long destroyed_after = atomic_load(&destroyed_lists);
    atomic_store(&tl.finish, 1);
    Py_BEGIN_ALLOW_THREADS
    test_join_thread(t);
    Py_END_ALLOW_THREADS
    trace_off();
    cr_assert(ready);
    cr_assert_eq(atomic_load(&tl.ready), 1, "the worker could not build its cycle");
    cr_assert_eq(st1.collections, st0.collections + 1, "the collection did run");
    cr_assert_eq(kept, 0, "a cycle a running thread holds was collected");
    cr_assert_eq(destroyed_while_held, 0);
    cr_assert(dropped);
    cr_assert(atomic_load(&tl.intact), "the held cycle was changed by the collection");
    cr_assert_eq(collected, 2, "the dropped cycle was not collected");
    cr_assert_eq(destroyed_after, 2);
}

Test(gc, cycle_held_by_an_attached_thread_is_kept)
{
    held_by_thread(true);
}

Test(gc, cycle_held_by_a_detached_thread_is_kept)
{
    held_by_thread(false);
}

/* ---- F60: cycles built across threads --------------------------------------------------- */

enum { XT_PAIRS = 100 };

static struct {
    PyObject *x[XT_PAIRS], *y[XT_PAIRS];   /* published by made[], read after it */
    atomic_int made[2], linked[2], dropped[2], finish;
    atomic_int bad;
    bool stay_alive;
} xt;

static void *
xt_worker(void *arg)
{
    int me = (int)(intptr_t)arg, other = 1 - me;
    PyObject **mine = me == 0 ? xt.x : xt.y, **theirs = me == 0 ? xt.y : xt.x;
    PyGILState_STATE g = PyGILState_Ensure();
    for (int i = 0; i < XT_PAIRS; i++) {
        mine[i] = PyList_New(0);
        if (mine[i] == NULL) {
            atomic_fetch_add(&xt.bad, 1);
        }
    }
    atomic_store(&xt.made[me], 1);
    Py_BEGIN_ALLOW_THREADS
    TEST_HELPER_WAIT(atomic_load(&xt.made[other]), POLL_MS);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < XT_PAIRS; i++) {   /* mine[i] -> theirs[i] (a reference to theirs) */
        if (mine[i] == NULL || theirs[i] == NULL || PyList_Append(mine[i], theirs[i]) < 0) {
            atomic_fetch_add(&xt.bad, 1);
        }
    }
    atomic_store(&xt.linked[me], 1);
    Py_BEGIN_ALLOW_THREADS
    TEST_HELPER_WAIT(atomic_load(&xt.linked[other]), POLL_MS);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < XT_PAIRS; i++) {
        Py_XDECREF(mine[i]);   /* now only the other thread's object holds it */
    }
    atomic_store(&xt.dropped[me], 1);
    if (xt.stay_alive) {
        Py_BEGIN_ALLOW_THREADS
        TEST_HELPER_WAIT(atomic_load(&xt.finish), POLL_MS);
        Py_END_ALLOW_THREADS
    }
    PyGILState_Release(g);
    return NULL;
}

static void
cycles_across_threads(bool stay_alive)
{
    PyGC_Collect();
    xt.stay_alive = stay_alive;
    trace_on();
    pthread_t t[2];
    bool dropped;
    Py_BEGIN_ALLOW_THREADS
    t[0] = test_start_thread(xt_worker, (void *)(intptr_t)0);
    t[1] = test_start_thread(xt_worker, (void *)(intptr_t)1);
    dropped = TEST_POLL_UNTIL(atomic_load(&xt.dropped[0]) && atomic_load(&xt.dropped[1]),
                              POLL_MS);
    if (!stay_alive) {
        test_join_thread(t[0]);   /* both exited: their heaps are orphaned */
        test_join_thread(t[1]);
    }
    Py_END_ALLOW_THREADS
    long before = atomic_load(&destroyed_lists);
    bool intact = true;
    for (int i = 0; i < XT_PAIRS && dropped; i++) {
        intact = intact && PyList_GET_SIZE(xt.x[i]) == 1 && PyList_GET_ITEM(xt.x[i], 0) == xt.y[i] &&
                 PyList_GET_SIZE(xt.y[i]) == 1 && PyList_GET_ITEM(xt.y[i], 0) == xt.x[i];
    }
    Py_ssize_t n = PyGC_Collect();
    long after = atomic_load(&destroyed_lists);
    if (stay_alive) {
        atomic_store(&xt.finish, 1);
        Py_BEGIN_ALLOW_THREADS
        test_join_thread(t[0]);
        test_join_thread(t[1]);
        Py_END_ALLOW_THREADS
    }
    trace_off();
    cr_assert(dropped, "the workers did not finish");
    cr_assert_eq(atomic_load(&xt.bad), 0);
    cr_assert_eq(before, 0, "reference counting alone freed a cross-thread cycle");
    cr_assert(intact);
    cr_assert_eq(n, 2 * XT_PAIRS);
    cr_assert_eq(after, 2 * XT_PAIRS);
}

Test(gc, cycles_built_across_threads_that_exited_are_collected)
{
    cycles_across_threads(false);
}

Test(gc, cycles_built_across_live_threads_are_collected)
{
    cycles_across_threads(true);
}

/* ---- merge queues: a reference a non-owner dropped ----------------------------------------- */

/* The owner makes an object, gives its creation reference to the main thread
 * (which drops it: the owner's merge queue takes it) and then stays detached,
 * so it never merges.  A collection merges the queue itself. */
enum { MQ_CYCLE, MQ_PLAIN };

static struct {
    int kind;
    PyObject *_Atomic obj;      /* the owner's object, with one reference for main */
    PyThreadState *_Atomic ts;  /* the owner's state */
    atomic_int finish;
} mq;

static void *
mq_owner(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    /* a self-referencing list, or a list nothing else references */
    PyObject *l = mq.kind == MQ_CYCLE ? self_cycle() : PyList_New(0);
    atomic_store(&mq.ts, PyThreadState_Get());
    atomic_store(&mq.obj, l);   /* NULL on failure: main reports it */
    Py_BEGIN_ALLOW_THREADS      /* detached until the test ends: never merges */
    TEST_HELPER_WAIT(atomic_load(&mq.finish), POLL_MS);
    Py_END_ALLOW_THREADS
    PyGILState_Release(g);
    return NULL;
}

static void
queued_reference(int kind)
{
    PyGC_Collect();
    memset(&mq, 0, sizeof mq);
    mq.kind = kind;
    pthread_t t;
    PyObject *op = NULL;
    bool detached, queued = false;
    long before = -1, after = -1;
    Py_ssize_t n = -1;
    Py_BEGIN_ALLOW_THREADS
    t = test_start_thread(mq_owner, NULL);
    /* detached first: a safe point of the owner's would merge the queue */
    detached = TEST_POLL_UNTIL((op = atomic_load(&mq.obj)) != NULL &&
                               kind_of(atomic_load(&mq.ts)) == FT_TS_DETACHED, POLL_MS);
    Py_END_ALLOW_THREADS
    if (op != NULL && detached) {
        trace_on();
        Py_DECREF(op);   /* not ours: free-threaded, the owner's queue takes the reference */
        queued = !ft_free_threaded || shared_of(op) == _Py_REF_QUEUED;
        before = atomic_load(&destroyed_lists);
        n = PyGC_Collect();
        after = atomic_load(&destroyed_lists);
        trace_off();
    }
    atomic_store(&mq.finish, 1);
    Py_BEGIN_ALLOW_THREADS
    test_join_thread(t);
    Py_END_ALLOW_THREADS
    cr_assert_not_null(op, "the owner made no object");
    cr_assert(detached, "the owner did not detach");
    cr_assert(queued, "the drop did not go through the owner's merge queue");
    if (kind == MQ_CYCLE) {
        /* GIL build: the decref leaves the self-reference; the cycle is garbage */
        cr_assert_eq(before, 0, "the cycle was freed before the collection");
        cr_assert_eq(n, 1, "the collection found %zd objects, not the queued cycle", n);
    }
    else {
        /* GIL build: freed by the decref itself */
        cr_assert_eq(before, ft_free_threaded ? 0 : 1);
        cr_assert_eq(n, 0, "a list without a cycle counted as collected");
    }
    cr_assert_eq(after, 1, "the list the owner's queue held was not freed");
}

Test(gc, a_cycle_whose_last_outside_reference_is_queued_is_collected)
{
    queued_reference(MQ_CYCLE);
}

Test(gc, an_object_only_a_merge_queue_holds_is_freed_by_a_collection)
{
    queued_reference(MQ_PLAIN);
}

/* ---- a user GC type ---------------------------------------------------------------------- */

/* What a node's finalizer does. */
enum { FIN_COUNT, FIN_RESURRECT, FIN_RAISE, FIN_COLLECT, FIN_BLOCK, FIN_SECTION };

typedef struct {
    PyObject_HEAD
    PyObject *ref, *ref2;
    int mode;
    bool traverse_takes_section;   /* B25: its traverse begins a section on section_obj */
} node;

static atomic_long node_deallocs, node_finalized, node_traverses;
static atomic_int finalized_flag_in_finalizer;   /* PyObject_GC_IsFinalized(self) seen set */
static PyObject *resurrected;                    /* FIN_RESURRECT stores self here */
static atomic_long inner_collect_result = -1;    /* FIN_COLLECT */
static PyObject *section_obj;                    /* FIN_SECTION, traverse_takes_section */
static atomic_long section_bumps;
static atomic_long traverse_sections, traverse_saw_locked;
static void block_in_finalizer(void);

static int
node_traverse(PyObject *self, visitproc visit, void *arg)
{
    node *n = (node *)self;
    atomic_fetch_add_explicit(&node_traverses, 1, memory_order_relaxed);
    if (n->traverse_takes_section) {
        /* The collector runs traverse with the world stopped: a section begun
         * then must not wait for a thread the stop suspended (gh-144513). */
        if (ft_free_threaded && PyMutex_IsLocked(ft_object_mutex(section_obj))) {
            atomic_fetch_add(&traverse_saw_locked, 1);
        }
        Py_BEGIN_CRITICAL_SECTION(section_obj);
        atomic_fetch_add(&traverse_sections, 1);
        Py_END_CRITICAL_SECTION();
    }
    Py_VISIT(n->ref);
    Py_VISIT(n->ref2);
    return 0;
}

static int
node_clear(PyObject *self)
{
    node *n = (node *)self;
    Py_CLEAR(n->ref);
    Py_CLEAR(n->ref2);
    return 0;
}

static void
node_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (tp->tp_finalize != NULL && PyObject_CallFinalizerFromDealloc(self) < 0) {
        return;   /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    node_clear(self);
    atomic_fetch_add(&node_deallocs, 1);
    tp->tp_free(self);   /* PyObject_GC_Del */
    Py_DECREF(tp);
}

static void
node_finalize(PyObject *self)
{
    node *n = (node *)self;
    atomic_fetch_add(&node_finalized, 1);
    if (PyObject_GC_IsFinalized(self)) {
        atomic_store(&finalized_flag_in_finalizer, 1);   /* would mean: called again */
    }
    switch (n->mode) {
    case FIN_RESURRECT:
        Py_XSETREF(resurrected, Py_NewRef(self));
        break;
    case FIN_RAISE:
        PyErr_SetString(PyExc_RuntimeError, "a finalizer that fails");
        break;
    case FIN_COLLECT:
        atomic_store(&inner_collect_result, (long)PyGC_Collect());
        break;
    case FIN_BLOCK:
        block_in_finalizer();
        break;
    case FIN_SECTION:
        Py_BEGIN_CRITICAL_SECTION(section_obj);
        atomic_fetch_add(&section_bumps, 1);
        Py_END_CRITICAL_SECTION();
        break;
    default:
        break;
    }
}

static PyTypeObject *
make_node_type(bool with_finalizer)
{
    PyType_Slot slots[] = {
        { Py_tp_traverse, TEST_FP(node_traverse) },
        { Py_tp_clear, TEST_FP(node_clear) },
        { Py_tp_dealloc, TEST_FP(node_dealloc) },
        { with_finalizer ? Py_tp_finalize : Py_tp_doc,
          with_finalizer ? TEST_FP(node_finalize) : (void *)"no finalizer" },
        { 0, NULL },
    };
    PyType_Spec spec = { with_finalizer ? "test_gc.FNode" : "test_gc.Node", sizeof(node), 0,
                         Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, slots };
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(tp);
    cr_assert_eq(tp->tp_free, PyObject_GC_Del);
    return tp;
}

/* Not asserting (workers use it): NULL on failure. */
static PyObject *
node_new(PyTypeObject *tp, int mode)
{
    node *n = (node *)tp->tp_alloc(tp, 0);
    if (n != NULL) {
        n->mode = mode;
    }
    return (PyObject *)n;
}

/* a <-> b, both dropped; returns a borrowed pointer to a (for checks while
 * something else keeps it alive) or NULL. */
static PyObject *
node_pair(PyTypeObject *tp, int mode_a, int mode_b)
{
    PyObject *a = node_new(tp, mode_a), *b = node_new(tp, mode_b);
    if (a == NULL || b == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    ((node *)a)->ref = b;   /* steals b */
    ((node *)b)->ref = a;   /* steals a */
    return a;
}

static void
node_counts_reset(void)
{
    atomic_store(&node_deallocs, 0);
    atomic_store(&node_finalized, 0);
    atomic_store(&finalized_flag_in_finalizer, 0);
}

/* ---- F58: finalizers ---------------------------------------------------------------------- */

Test(gc, finalizer_runs_exactly_once)
{
    PyTypeObject *tp = make_node_type(true);
    PyGC_Collect();
    node_counts_reset();
    PyObject *a = node_new(tp, FIN_COUNT), *b = node_new(tp, FIN_COUNT);
    cr_assert(a && b);
    ((node *)a)->ref = Py_NewRef(b);
    ((node *)b)->ref = Py_NewRef(a);
    Py_DECREF(b);   /* a is still ours */
    cr_assert(PyObject_GC_IsTracked(a));
    cr_assert_not(PyObject_GC_IsFinalized(a));
    PyUnstable_GCStats st0 = stats();
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(PyGC_Collect(), 0);
    }
    cr_assert_eq(atomic_load(&node_finalized), 0, "a reachable object was finalized");
    cr_assert_not(PyObject_GC_IsFinalized(a));
    Py_DECREF(a);
    cr_assert_eq(atomic_load(&node_deallocs), 0);
    cr_assert_eq(PyGC_Collect(), 2);
    PyUnstable_GCStats st1 = stats();
    cr_assert_eq(atomic_load(&node_finalized), 2);
    cr_assert_eq(atomic_load(&node_deallocs), 2);
    cr_assert_eq(atomic_load(&finalized_flag_in_finalizer), 0,
                 "the FINALIZED bit was set before the (first) call");
    cr_assert_eq(st1.finalized, st0.finalized + 2);
    cr_assert_eq(st1.resurrected, st0.resurrected);
    cr_assert_eq(st1.collected, st0.collected + 2);
    cr_assert_eq(PyGC_Collect(), 0);
    cr_assert_eq(atomic_load(&node_finalized), 2);
}

Test(gc, finalizer_resurrection_keeps_what_it_reaches)
{
    PyTypeObject *tp = make_node_type(true);
    PyGC_Collect();
    node_counts_reset();
    /* a <-> b, b -> l, l = [l]; only a's finalizer resurrects */
    PyObject *a = node_pair(tp, FIN_RESURRECT, FIN_COUNT);
    cr_assert_not_null(a);
    PyObject *b = ((node *)a)->ref;
    PyObject *l = self_cycle();
    cr_assert_not_null(l);
    ((node *)b)->ref2 = l;   /* steals */
    trace_on();
    PyUnstable_GCStats st0 = stats();
    Py_ssize_t n = PyGC_Collect();
    PyUnstable_GCStats st1 = stats();
    cr_assert_eq(resurrected, a);
    cr_assert_eq(n, 0, "resurrected objects were counted as collected");
    cr_assert_eq(atomic_load(&node_finalized), 2, "both were finalized");
    cr_assert_eq(atomic_load(&node_deallocs), 0);
    cr_assert_eq(atomic_load(&destroyed_lists), 0, "what the resurrected object reaches died");
    cr_assert_eq(st1.finalized, st0.finalized + 2);
    cr_assert_eq(st1.resurrected, st0.resurrected + 3, "a, and b and l which it reaches");
    cr_assert_eq(st1.collected, st0.collected);
    cr_assert_gt(st1.last_pause2_ns, 0, "a finalizer ran: the resurrection check ran");
    /* nothing was cleared */
    cr_assert_eq(((node *)a)->ref, b);
    cr_assert_eq(((node *)b)->ref, a);
    cr_assert_eq(((node *)b)->ref2, l);
    cr_assert(check_self_list(l));
    cr_assert(PyObject_GC_IsFinalized(a));
    cr_assert(PyObject_GC_IsFinalized(b));
    cr_assert(PyObject_GC_IsTracked(a));
    /* still reachable: nothing happens */
    cr_assert_eq(PyGC_Collect(), 0);
    cr_assert_eq(atomic_load(&node_finalized), 2);
    /* dropped again: freed without a second finalizer call */
    Py_CLEAR(resurrected);
    PyUnstable_GCStats st2 = stats();
    cr_assert_eq(PyGC_Collect(), 3);
    PyUnstable_GCStats st3 = stats();
    trace_off();
    cr_assert_eq(atomic_load(&node_finalized), 2, "a finalizer ran twice");
    cr_assert_eq(atomic_load(&node_deallocs), 2);
    cr_assert_eq(atomic_load(&destroyed_lists), 1);
    cr_assert_eq(st3.finalized, st2.finalized);
    cr_assert_eq(st3.resurrected, st2.resurrected);
    cr_assert_eq(st3.last_pause2_ns, 0, "no finalizer ran: no second pause");
    cr_assert_null(resurrected);
}

Test(gc, raising_finalizer_is_unraisable_and_pending_exception_is_kept)
{
    PyTypeObject *tp = make_node_type(true);
    PyGC_Collect();
    node_counts_reset();
    /* no exception pending: the finalizer's error does not leak out */
    cr_assert_not_null(node_pair(tp, FIN_RAISE, FIN_RAISE));
    cr_assert_eq(PyGC_Collect(), 2);
    cr_assert_null(PyErr_Occurred(), "a finalizer's exception escaped the collection");
    cr_assert_eq(atomic_load(&node_finalized), 2);
    cr_assert_eq(atomic_load(&node_deallocs), 2);

    /* a pending exception comes back as the very same object; finalizers
     * do not see it (one that raises does not replace it) */
    node_counts_reset();
    cr_assert_not_null(node_pair(tp, FIN_RAISE, FIN_COUNT));
    PyErr_SetString(PyExc_KeyError, "pending");
    PyObject *pending = PyErr_GetRaisedException();
    cr_assert_not_null(pending);
    PyErr_SetRaisedException(Py_NewRef(pending));
    Py_ssize_t n = PyGC_Collect();
    PyObject *after = PyErr_GetRaisedException();
    cr_assert_eq(n, 2);
    cr_assert_eq(after, pending, "the caller's exception was replaced or lost");
    cr_assert_eq(Py_TYPE(after), (PyTypeObject *)PyExc_KeyError);
    cr_assert_null(PyErr_Occurred());
    cr_assert_eq(atomic_load(&node_finalized), 2);
    cr_assert_eq(atomic_load(&node_deallocs), 2);
    Py_DECREF(after);
    Py_DECREF(pending);
}

/* ---- F59: one collection at a time ------------------------------------------------------- */

Test(gc, collect_from_a_finalizer_returns_zero)
{
    PyTypeObject *tp = make_node_type(true);
    PyGC_Collect();
    node_counts_reset();
    cr_assert_not_null(node_pair(tp, FIN_COLLECT, FIN_COUNT));
    PyObject *l = self_cycle();   /* would be found by a nested collection */
    cr_assert_not_null(l);
    Py_DECREF(l);
    PyUnstable_GCStats st0 = stats();
    Py_ssize_t n = PyGC_Collect();
    PyUnstable_GCStats st1 = stats();
    cr_assert_eq(atomic_load(&inner_collect_result), 0, "the nested collection ran");
    cr_assert_eq(n, 3);
    cr_assert_eq(st1.collections, st0.collections + 1);
    cr_assert_eq(atomic_load(&node_deallocs), 2);
}

enum { F59_CALLS = 50 };

static struct {
    atomic_int blocking;          /* set once, cleared once, by the finalizer */
    atomic_long calls_during;     /* the worker's calls made entirely inside the window */
    atomic_long nonzero_during;
    atomic_long calls;
    atomic_int stop, started;
    /* recorded by the finalizer (the main thread, during its collection) */
    atomic_int waited_ok;
    atomic_long traverses_during;
    atomic_long collections_during;
} f59;

static void
block_in_finalizer(void)
{
    PyUnstable_GCStats st0, st1;
    (void)PyUnstable_GC_GetStats(&st0);
    long trav0 = atomic_load(&node_traverses);
    atomic_store(&f59.blocking, 1);
    bool ok;
    Py_BEGIN_ALLOW_THREADS   /* GIL build: the worker needs the GIL */
    ok = TEST_POLL_UNTIL(atomic_load(&f59.calls_during) >= F59_CALLS, POLL_MS);
    Py_END_ALLOW_THREADS
    /* read before the window closes: any collection so far overlapped ours */
    long trav1 = atomic_load(&node_traverses);
    (void)PyUnstable_GC_GetStats(&st1);
    atomic_store(&f59.traverses_during, trav1 - trav0);
    atomic_store(&f59.collections_during, (long)(st1.collections - st0.collections));
    atomic_store(&f59.waited_ok, ok);
    atomic_store(&f59.blocking, 0);
}

static void *
f59_worker(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&f59.started, 1);
    /* start calling once the main thread's collection is in its finalizer:
     * before that, a collection of ours would run the finalizer here */
    Py_BEGIN_ALLOW_THREADS
    TEST_HELPER_WAIT(atomic_load(&f59.blocking), POLL_MS);
    Py_END_ALLOW_THREADS
    while (!atomic_load(&f59.stop)) {
        int before = atomic_load(&f59.blocking);
        Py_ssize_t r = PyGC_Collect();
        int after = atomic_load(&f59.blocking);
        if (before && after) {
            if (r != 0) {
                atomic_fetch_add(&f59.nonzero_during, 1);
            }
            atomic_fetch_add(&f59.calls_during, 1);
        }
        atomic_fetch_add(&f59.calls, 1);
        (void)PyErr_CheckSignals();   /* the main thread's second pause stops us here */
    }
    PyGILState_Release(g);
    return NULL;
}

Test(gc, other_threads_get_zero_while_a_collection_runs)
{
    PyTypeObject *tp = make_node_type(true);
    PyGC_Collect();
    node_counts_reset();
    PyObject *sentinel = node_new(tp, FIN_COUNT);   /* tracked, alive: any collection traverses it */
    cr_assert_not_null(sentinel);
    cr_assert_not_null(node_pair(tp, FIN_BLOCK, FIN_COUNT));
    pthread_t t = test_start_thread(f59_worker, NULL);
    Py_ssize_t n = PyGC_Collect();
    atomic_store(&f59.stop, 1);
    Py_BEGIN_ALLOW_THREADS
    test_join_thread(t);
    Py_END_ALLOW_THREADS
    cr_assert(atomic_load(&f59.waited_ok), "the worker made %ld calls during the finalizer",
              atomic_load(&f59.calls_during));
    cr_assert_eq(atomic_load(&f59.nonzero_during), 0,
                 "a concurrent PyGC_Collect returned non-zero while another collection ran");
    cr_assert_eq(atomic_load(&f59.traverses_during), 0, "two collections overlapped");
    cr_assert_eq(atomic_load(&f59.collections_during), 0, "two collections overlapped");
    cr_assert_eq(n, 2);
    cr_assert_eq(atomic_load(&node_deallocs), 2);
    cr_assert_eq(atomic_load(&node_finalized), 2);
    Py_DECREF(sentinel);
}

/* ---- legacy finalizers (tp_del) ----------------------------------------------------------- */

static atomic_long legacy_del_calls, legacy_deallocs;

static void
legacy_del(PyObject *self)
{
    (void)self;
    atomic_fetch_add(&legacy_del_calls, 1);
}

static void
legacy_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    node_clear(self);
    atomic_fetch_add(&legacy_deallocs, 1);
    Py_TYPE(self)->tp_free(self);
}

static PyTypeObject legacy_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test_gc.Legacy",
    .tp_basicsize = sizeof(node),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = node_traverse,
    .tp_clear = node_clear,
    .tp_dealloc = legacy_dealloc,
    .tp_del = legacy_del,
};

static bool
list_contains_ptr(PyObject *l, PyObject *op)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(l); i++) {
        if (PyList_GET_ITEM(l, i) == op) {
            return true;
        }
    }
    return false;
}

Test(gc, legacy_tp_del_cycle_goes_to_garbage)
{
    cr_assert_eq(PyType_Ready(&legacy_type), 0);
    PyGC_Collect();
    /* leg -> l -> leg, leg -> l2 (reached only from the legacy object) */
    PyObject *leg = legacy_type.tp_alloc(&legacy_type, 0);
    cr_assert_not_null(leg);
    PyObject *l = new_list(), *l2 = self_cycle();
    cr_assert_not_null(l2);
    cr_assert_eq(PyList_Append(l, leg), 0);
    ((node *)leg)->ref = l;     /* steals */
    ((node *)leg)->ref2 = l2;   /* steals */
    trace_on();
    Py_DECREF(leg);
    PyUnstable_GCStats st0 = stats();
    Py_ssize_t n = PyGC_Collect();
    PyUnstable_GCStats st1 = stats();
    cr_assert_eq(n, 1, "the legacy object counts as uncollectable");
    cr_assert_eq(st1.uncollectable, st0.uncollectable + 1);
    cr_assert_eq(st1.collected, st0.collected, "what it reaches was collected");
    cr_assert_eq(atomic_load(&destroyed_lists), 0);
    cr_assert_eq(atomic_load(&legacy_deallocs), 0);
    cr_assert_eq(atomic_load(&legacy_del_calls), 0, "the collector called a legacy tp_del");
    PyObject *garbage = PyUnstable_GC_GetGarbage();
    cr_assert_not_null(garbage);
    cr_assert(PyList_Check(garbage));
    cr_assert_eq(PyList_GET_SIZE(garbage), 1);
    cr_assert_eq(PyList_GET_ITEM(garbage, 0), leg);
    cr_assert_not(list_contains_ptr(garbage, l));
    /* untouched: not cleared */
    cr_assert_eq(((node *)leg)->ref, l);
    cr_assert_eq(((node *)leg)->ref2, l2);
    cr_assert(PyList_GET_SIZE(l) == 1 && PyList_GET_ITEM(l, 0) == leg);
    cr_assert(check_self_list(l2));
    /* now reachable from the garbage list: not found again */
    cr_assert_eq(PyGC_Collect(), 0);
    cr_assert_eq(PyList_GET_SIZE(garbage), 1);
    PyObject *same = PyUnstable_GC_GetGarbage();
    cr_assert_eq(same, garbage, "one garbage list per interpreter");
    Py_DECREF(same);
    /* the embedder's way out (as gc.garbage.clear() plus breaking the cycle):
     * empty the list, clear the object; then everything dies */
    Py_INCREF(leg);
    cr_assert_eq(PyList_SetSlice(garbage, 0, PyList_GET_SIZE(garbage), NULL), 0);
    Py_DECREF(garbage);
    node_clear(leg);
    Py_DECREF(leg);
    cr_assert_eq(atomic_load(&legacy_deallocs), 1);
    cr_assert_eq(PyGC_Collect(), 1, "l2, the self-referencing list");
    trace_off();
    cr_assert_eq(atomic_load(&destroyed_lists), 2);
    cr_assert_eq(atomic_load(&legacy_del_calls), 0);
}

/* Documents the expected behaviour: PyType_FromSpec accepts CPython's
 * Py_tp_del slot (53) and stores it in tp_del. */
Test(gc, from_spec_accepts_the_tp_del_slot)
{
    PyType_Slot slots[] = {
        { Py_tp_traverse, TEST_FP(node_traverse) },
        { Py_tp_clear, TEST_FP(node_clear) },
        { Py_tp_del, TEST_FP(legacy_del) },
        { 0, NULL },
    };
    PyType_Spec spec = { "test_gc.HeapLegacy", sizeof(node), 0,
                         Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, slots };
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&spec);
    if (tp == NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        cr_assert_fail("PyType_FromSpec refused Py_tp_del: %s",
                       exc ? PyException_GetMessageUTF8(exc) : "(no exception)");
    }
    cr_assert_eq(tp->tp_del, legacy_del);
    cr_assert_eq(PyType_GetSlot(tp, Py_tp_del), TEST_FP(legacy_del));
}

/* ---- immortal objects ---------------------------------------------------------------------- */

Test(gc, immortal_objects_are_never_collected)
{
    PyTypeObject *tp = make_node_type(false);
    PyGC_Collect();
    node_counts_reset();
    trace_on();
    /* a mortal cycle holding immortal objects: it dies, they do not change */
    PyObject *small = PyLong_FromLong(5);
    cr_assert(_Py_IsImmortal(small));
    PyObject *l = self_cycle();
    cr_assert_not_null(l);
    cr_assert_eq(PyList_Append(l, Py_None), 0);
    cr_assert_eq(PyList_Append(l, small), 0);
    cr_assert_eq(PyList_Append(l, Py_True), 0);
    Py_DECREF(l);
    cr_assert_eq(PyGC_Collect(), 1);
    cr_assert_eq(atomic_load(&destroyed_lists), 1);
    cr_assert_eq(Py_REFCNT(Py_None), _Py_IMMORTAL_REFCNT);
    cr_assert_eq(Py_REFCNT(small), _Py_IMMORTAL_REFCNT);
    cr_assert_eq(Py_REFCNT(Py_True), _Py_IMMORTAL_REFCNT);

    /* an immortal GC object in a cycle with itself, untracked (as
     * _Py_SetImmortal leaves it) and then tracked again: never collected;
     * the mortal self-cycle it references is kept alive by it */
    PyObject *imm = node_new(tp, FIN_COUNT);
    cr_assert_not_null(imm);
    PyObject *x = self_cycle();
    cr_assert_not_null(x);
    ((node *)imm)->ref = Py_NewRef(imm);
    ((node *)imm)->ref2 = x;   /* steals */
    _Py_SetImmortal(imm);
    cr_assert(_Py_IsImmortal(imm));
    cr_assert_not(PyObject_GC_IsTracked(imm), "_Py_SetImmortal untracks");
    Py_DECREF(imm);   /* a no-op */
    PyUnstable_GCStats st0 = stats();
    cr_assert_eq(PyGC_Collect(), 0);
    PyUnstable_GCStats st1 = stats();
    PyObject_GC_Track(imm);
    cr_assert_eq(PyGC_Collect(), 0, "a tracked immortal object was collected");
    PyUnstable_GCStats st2 = stats();
    cr_assert_eq(atomic_load(&node_deallocs), 0);
    cr_assert_eq(atomic_load(&destroyed_lists), 1, "what an immortal object references died");
    cr_assert_eq(((node *)imm)->ref, imm);
    cr_assert_eq(((node *)imm)->ref2, x);
    cr_assert(check_self_list(x));
    cr_assert_eq(Py_REFCNT(imm), _Py_IMMORTAL_REFCNT);
    cr_assert_eq(st2.last_examined, st1.last_examined, "a tracked immortal object was examined");
    cr_assert_eq(st1.last_examined, st0.last_examined);

    /* a mortal cycle referencing the immortal object: only the cycle dies */
    PyObject *m = self_cycle();
    cr_assert_not_null(m);
    cr_assert_eq(PyList_Append(m, imm), 0);
    Py_DECREF(m);
    cr_assert_eq(PyGC_Collect(), 1);
    cr_assert_eq(atomic_load(&destroyed_lists), 2);
    cr_assert_eq(Py_REFCNT(imm), _Py_IMMORTAL_REFCNT);

    /* nothing frees an immortal object: do it by hand (drops x, then collected) */
    PyObject_GC_UnTrack(imm);
    tp->tp_dealloc(imm);
    cr_assert_eq(PyGC_Collect(), 1);
    trace_off();
    cr_assert_eq(atomic_load(&destroyed_lists), 3);
}

/* ---- untracked objects ----------------------------------------------------------------------- */

Test(gc, untracked_objects_are_not_examined)
{
    PyGC_Collect();
    uint64_t base = stats().last_examined;
    cr_assert_eq(PyGC_Collect(), 0);
    cr_assert_eq(stats().last_examined, base, "examined count not stable");
    enum { N = 50, UNTRACK = 20 };
    PyObject *l[N];
    for (int i = 0; i < N; i++) {
        l[i] = new_list();
    }
    cr_assert_eq(PyGC_Collect(), 0);
    cr_assert_eq(stats().last_examined, base + N);
    for (int i = 0; i < UNTRACK; i++) {
        PyObject_GC_UnTrack(l[i]);
        cr_assert_not(PyObject_GC_IsTracked(l[i]));
    }
    cr_assert_eq(PyGC_Collect(), 0);
    cr_assert_eq(stats().last_examined, base + N - UNTRACK);
    for (int i = 0; i < N; i++) {
        Py_DECREF(l[i]);
    }
    cr_assert_eq(PyGC_Collect(), 0);
    cr_assert_eq(stats().last_examined, base);

    /* an untracked cycle is invisible: never collected, until tracked again */
    trace_on();
    PyObject *c = self_cycle();
    cr_assert_not_null(c);
    PyObject_GC_UnTrack(c);
    Py_DECREF(c);
    cr_assert_eq(PyGC_Collect(), 0);
    cr_assert_eq(stats().last_examined, base);
    cr_assert_eq(atomic_load(&destroyed_lists), 0);
    cr_assert(check_self_list(c));
    PyObject_GC_Track(c);
    cr_assert_eq(PyGC_Collect(), 1);
    cr_assert_eq(stats().last_examined, base + 1);
    trace_off();
    cr_assert_eq(atomic_load(&destroyed_lists), 1);
}

/* ---- switches and automatic collection -------------------------------------------------- */

Test(gc, enable_and_disable_return_the_previous_state)
{
    cr_assert_eq(PyGC_IsEnabled(), 1, "enabled by default");
    cr_assert_eq(PyGC_Disable(), 1);
    cr_assert_eq(PyGC_IsEnabled(), 0);
    cr_assert_eq(PyGC_Disable(), 0);
    cr_assert_eq(PyGC_IsEnabled(), 0);
    cr_assert_eq(PyGC_Enable(), 0);
    cr_assert_eq(PyGC_IsEnabled(), 1);
    cr_assert_eq(PyGC_Enable(), 1);
    cr_assert_eq(PyGC_IsEnabled(), 1);
    cr_assert_eq(PyUnstable_GC_GetThreshold(), FT_GC_DEFAULT_THRESHOLD);
    cr_assert_eq(stats().threshold, FT_GC_DEFAULT_THRESHOLD);
    cr_assert_null(PyErr_Occurred());
}

enum { AUTO_CYCLES = 5000 };

/* Make `count` self-referencing lists and drop them. */
static void
make_garbage(int count)
{
    for (int i = 0; i < count; i++) {
        PyObject *l = self_cycle();
        cr_assert_not_null(l);
        Py_DECREF(l);
    }
}

Test(gc, automatic_collection_with_a_low_threshold)
{
    PyGC_Collect();
    cr_assert_eq(PyUnstable_GC_SetThreshold(100), 0);
    cr_assert_eq(PyUnstable_GC_GetThreshold(), 100);
    cr_assert_eq(stats().threshold, 100);
    PyUnstable_GCStats st0 = stats();
    trace_on();
    make_garbage(AUTO_CYCLES);   /* a flush every 512 allocations: well past 100 */
    PyUnstable_GCStats st1 = stats();
    long freed = atomic_load(&destroyed_lists);
    cr_assert_gt(st1.automatic, st0.automatic, "no automatic collection");
    cr_assert_eq(st1.collections - st0.collections, st1.automatic - st0.automatic);
    cr_assert_gt(freed, 0, "automatic collections freed nothing");
    cr_assert_eq(st1.collected - st0.collected, (uint64_t)freed);
    /* the rest, explicitly: every cycle exactly once */
    cr_assert_eq(PyGC_Collect(), AUTO_CYCLES - freed);
    trace_off();
    cr_assert_eq(atomic_load(&destroyed_lists), AUTO_CYCLES);
}

Test(gc, disabled_collector_collects_only_when_asked)
{
    PyGC_Collect();
    cr_assert_eq(PyUnstable_GC_SetThreshold(100), 0);
    cr_assert_eq(PyGC_Disable(), 1);
    PyUnstable_GCStats st0 = stats();
    trace_on();
    make_garbage(AUTO_CYCLES);
    PyUnstable_GCStats st1 = stats();
    cr_assert_eq(st1.automatic, st0.automatic, "an automatic collection while disabled");
    cr_assert_eq(st1.collections, st0.collections);
    cr_assert_eq(atomic_load(&destroyed_lists), 0);
    cr_assert_eq(PyGC_Collect(), AUTO_CYCLES, "PyGC_Collect works while disabled");
    cr_assert_eq(atomic_load(&destroyed_lists), AUTO_CYCLES);
    trace_off();
    cr_assert_eq(stats().automatic, st0.automatic);
    cr_assert_eq(PyGC_Enable(), 0);
}

/* young counts GC objects made minus freed since the last collection; the
 * objects a collection frees were made before it, so their frees must not
 * count against the objects made after it (else each collection of N
 * garbage objects puts the next one N allocations further away, and a
 * program making cyclic garbage at a steady rate collects ever larger
 * heaps: the k-th automatic collection finds about k x threshold). */
Test(gc, collected_objects_do_not_delay_the_next_automatic_collection)
{
    enum { THRESHOLD = 100, BATCH = 512, GARBAGE = 20000 };
    PyGC_Collect();
    cr_assert_eq(PyUnstable_GC_SetThreshold(THRESHOLD), 0);
    cr_assert_eq(PyGC_Disable(), 1);
    make_garbage(GARBAGE);
    cr_assert_eq(PyGC_Collect(), GARBAGE);
    cr_assert_eq(PyGC_Enable(), 0);
    PyUnstable_GCStats st0 = stats();
    cr_assert_lt(st0.live / 4, THRESHOLD, "a small heap: the trigger is the threshold");
    trace_on();
    make_garbage(THRESHOLD + 4 * BATCH);   /* past the trigger even after a partial flush */
    PyUnstable_GCStats st1 = stats();
    long freed = atomic_load(&destroyed_lists);
    Py_ssize_t rest = PyGC_Collect();   /* before asserting: nothing left behind */
    trace_off();
    cr_assert_gt(st1.automatic, st0.automatic,
                 "%d new objects after a collection that freed %d, threshold %d: "
                 "no automatic collection", THRESHOLD + 4 * BATCH, GARBAGE, THRESHOLD);
    cr_assert_gt(freed, 0);
    cr_assert_eq(rest, THRESHOLD + 4 * BATCH - freed);
}

Test(gc, threshold_zero_turns_automatic_collection_off)
{
    PyGC_Collect();
    cr_assert_eq(PyUnstable_GC_SetThreshold(0), 0);
    cr_assert_eq(PyUnstable_GC_GetThreshold(), 0);
    cr_assert_eq(PyGC_IsEnabled(), 1);
    PyUnstable_GCStats st0 = stats();
    trace_on();
    make_garbage(AUTO_CYCLES);
    cr_assert_eq(stats().automatic, st0.automatic);
    cr_assert_eq(atomic_load(&destroyed_lists), 0);
    cr_assert_eq(PyGC_Collect(), AUTO_CYCLES);
    trace_off();
    /* negative: refused, nothing changed */
    cr_assert_eq(PyUnstable_GC_SetThreshold(-1), -1);
    test_expect_error(PyExc_ValueError, "threshold");
    cr_assert_eq(PyUnstable_GC_GetThreshold(), 0);
    cr_assert_eq(PyUnstable_GC_SetThreshold(INT64_MIN), -1);
    test_expect_error(PyExc_ValueError, "threshold");
    cr_assert_eq(PyUnstable_GC_SetThreshold(2000), 0);
    cr_assert_eq(PyUnstable_GC_GetThreshold(), 2000);
}

/* After a collection the trigger is max(threshold, survivors / 4); counts
 * reach interp->gc.young in batches of 512 per thread, so with one thread
 * allocating, fewer than trigger - 512 new objects never trigger, and
 * trigger + 512 more always do. */
Test(gc, trigger_scales_with_the_live_heap)
{
    enum { LIVE = 20000, THRESHOLD = 100, BATCH = 512 };
    PyGC_Collect();
    cr_assert_eq(PyUnstable_GC_SetThreshold(THRESHOLD), 0);
    PyObject *keep = new_list();
    for (int i = 0; i < LIVE; i++) {
        PyObject *l = new_list();
        cr_assert_eq(PyList_Append(keep, l), 0);
        Py_DECREF(l);
    }
    cr_assert_eq(PyGC_Collect(), 0);
    PyUnstable_GCStats st0 = stats();
    cr_assert_geq(st0.live, LIVE);
    int64_t trigger = st0.live / 4 > THRESHOLD ? st0.live / 4 : THRESHOLD;
    int below = (int)(trigger - 2 * BATCH);
    cr_assert_gt(below, 10 * THRESHOLD);
    trace_on();
    make_garbage(below);
    PyUnstable_GCStats st1 = stats();
    cr_assert_eq(st1.automatic, st0.automatic,
                 "%d new objects (threshold %d) collected a heap of %lld", below, THRESHOLD,
                 (long long)st0.live);
    cr_assert_eq(atomic_load(&destroyed_lists), 0);
    make_garbage(4 * BATCH);
    PyUnstable_GCStats st2 = stats();
    cr_assert_gt(st2.automatic, st1.automatic, "past live / 4: no automatic collection");
    long freed = atomic_load(&destroyed_lists);
    cr_assert_gt(freed, 0);
    cr_assert_eq(PyGC_Collect(), below + 4 * BATCH - freed);
    trace_off();
    cr_assert_eq(atomic_load(&destroyed_lists), below + 4 * BATCH);
    cr_assert_eq(PyList_GET_SIZE(keep), LIVE);
    Py_DECREF(keep);
}

/* ---- stop-the-world statistics --------------------------------------------------------------- */

static uint64_t
gc_stops(void)
{
    PyUnstable_StopTheWorldStats st;
    cr_assert_eq(PyUnstable_StopTheWorld_GetStats(PyInterpreterState_Get(), &st), 0);
    return st.by_reason[PyUnstable_STOP_GC].stops;
}

Test(gc, collections_are_counted_as_gc_stops)
{
    PyTypeObject *tp = make_node_type(true);
    PyGC_Collect();
    uint64_t per_plain = ft_free_threaded ? 1 : 0, per_finalizing = ft_free_threaded ? 2 : 0;
    /* nothing to finalize: one pause */
    uint64_t s0 = gc_stops();
    PyObject *l = self_cycle();
    cr_assert_not_null(l);
    Py_DECREF(l);
    cr_assert_eq(PyGC_Collect(), 1);
    uint64_t s1 = gc_stops();
    cr_assert_eq(s1, s0 + per_plain);
    cr_assert_eq(PyGC_Collect(), 0);
    uint64_t s2 = gc_stops();
    cr_assert_eq(s2, s1 + per_plain, "an empty collection pauses too");
    /* a finalizer ran: the resurrection check is a second pause */
    cr_assert_not_null(node_pair(tp, FIN_RESURRECT, FIN_COUNT));
    cr_assert_eq(PyGC_Collect(), 0);
    uint64_t s3 = gc_stops();
    cr_assert_eq(s3, s2 + per_finalizing);
    cr_assert_not_null(resurrected);
    /* already finalized: one pause again */
    Py_CLEAR(resurrected);
    cr_assert_eq(PyGC_Collect(), 2);
    uint64_t s4 = gc_stops();
    cr_assert_eq(s4, s3 + per_plain);
    if (!ft_free_threaded) {
        cr_assert_eq(s4, 0, "the GIL build never stops the world");
    }
}

/* ---- out of memory ------------------------------------------------------------------------- */

/* A ring of n lists, l[i] -> l[(i + 1) % n]; returns a new reference to l[0]. */
static PyObject *
ring(int n)
{
    PyObject *first = new_list(), *prev = first;
    for (int i = 1; i < n; i++) {
        PyObject *l = new_list();
        cr_assert_eq(PyList_Append(prev, l), 0);
        Py_DECREF(l);
        prev = l;
    }
    cr_assert_eq(PyList_Append(prev, first), 0);
    return first;
}

static bool
ring_intact(PyObject *first, int n)
{
    PyObject *l = first;
    for (int i = 0; i < n; i++) {
        if (!PyList_Check(l) || PyList_GET_SIZE(l) != 1) {
            return false;
        }
        l = PyList_GET_ITEM(l, 0);
    }
    return l == first;
}

Test(gc, out_of_memory_changes_nothing)
{
    /* Big enough that the collector's arrays grow while it works: the mark
     * stack (from 256, marking the `keep` list's 1000 items) and the
     * unreachable set (from 64, the ring's 1000 lists). */
    enum { RING = 1000, KEPT = 1000, MAX_N = 200 };
    PyGC_Collect();
    cr_assert_eq(PyGC_Disable(), 1);
    PyObject *keep = new_list();
    for (int i = 0; i < KEPT; i++) {
        PyObject *l = new_list();
        cr_assert_eq(PyList_Append(keep, l), 0);
        Py_DECREF(l);
    }
    PyObject *first = ring(RING);
    PyObject *borrowed = first;
    Py_DECREF(first);   /* only the ring holds it now */
    trace_on();
    int failures = 0;
    Py_ssize_t n = 0;
    long n_at = 0;
    for (long nth = 1; nth <= MAX_N; nth++) {
        PyUnstable_GCStats st0 = stats();
        ft_alloc_fail_after(nth);
        n = PyGC_Collect();
        ft_alloc_fail_after(0);
        PyUnstable_GCStats st1 = stats();
        cr_assert_null(PyErr_Occurred(), "failure %ld left an exception", nth);
        if (n != 0) {
            n_at = nth;
            cr_assert_eq(st1.collections, st0.collections + 1);
            break;
        }
        failures++;
        cr_assert_eq(st1.collections, st0.collections, "a failed collection was counted");
        cr_assert_eq(atomic_load(&destroyed_lists), 0, "failure at allocation %ld freed", nth);
        cr_assert(ring_intact(borrowed, RING), "failure at allocation %ld broke the ring", nth);
        cr_assert_eq(PyList_GET_SIZE(keep), KEPT);
    }
    trace_off();
    cr_assert_gt(failures, 4, "expected the snapshot, its arrays and their growth to fail");
    cr_assert_eq(n, RING, "collection with allocation %ld failing", n_at);
    cr_assert_eq(atomic_load(&destroyed_lists), RING);
    cr_assert_eq(PyList_GET_SIZE(keep), KEPT);
    Py_DECREF(keep);
}

/* With finalizers: a failure before they run changes nothing; a failure in
 * the resurrection check leaves the finalized objects alive and whole, and
 * the next collection frees them without finalizing them again. */
Test(gc, out_of_memory_with_finalizers)
{
    enum { MAX_N = 100 };
    PyTypeObject *tp = make_node_type(true);
    PyGC_Collect();
    cr_assert_eq(PyGC_Disable(), 1);
    int before_finalizers = 0, in_check = 0;
    bool succeeded = false;
    for (long nth = 1; nth <= MAX_N && !succeeded; nth++) {
        node_counts_reset();
        PyObject *a = node_pair(tp, FIN_COUNT, FIN_COUNT);
        cr_assert_not_null(a);
        PyObject *b = ((node *)a)->ref;
        ft_alloc_fail_after(nth);
        Py_ssize_t n = PyGC_Collect();
        ft_alloc_fail_after(0);
        cr_assert_null(PyErr_Occurred());
        if (n == 2) {
            succeeded = true;
            cr_assert_eq(atomic_load(&node_finalized), 2);
            cr_assert_eq(atomic_load(&node_deallocs), 2);
            continue;
        }
        cr_assert_eq(n, 0, "allocation %ld failing", nth);
        cr_assert_eq(atomic_load(&node_deallocs), 0);
        cr_assert(((node *)a)->ref == b && ((node *)b)->ref == a,
                  "allocation %ld failing: the cycle was cleared but not freed", nth);
        long fin = atomic_load(&node_finalized);
        if (fin == 0) {
            before_finalizers++;
            cr_assert_not(PyObject_GC_IsFinalized(a));
        }
        else {
            cr_assert_eq(fin, 2, "allocation %ld failing", nth);
            in_check++;
            cr_assert(PyObject_GC_IsFinalized(a) && PyObject_GC_IsFinalized(b));
        }
        /* memory back: freed, each finalized once in all */
        cr_assert_eq(PyGC_Collect(), 2, "allocation %ld failed before", nth);
        cr_assert_eq(atomic_load(&node_finalized), 2);
        cr_assert_eq(atomic_load(&node_deallocs), 2);
    }
    cr_assert(succeeded);
    cr_assert_gt(before_finalizers, 0);
    cr_assert_gt(in_check, 0, "no failure hit the resurrection check");
    cr_assert_eq(atomic_load(&finalized_flag_in_finalizer), 0);
}

/* ---- misuse --------------------------------------------------------------------------------- */

static void collect_detached(void) { (void)PyGC_Collect(); }
static void enable_detached(void) { (void)PyGC_Enable(); }
static void disable_detached(void) { (void)PyGC_Disable(); }
static void is_enabled_detached(void) { (void)PyGC_IsEnabled(); }
static void get_stats_detached(void)
{
    PyUnstable_GCStats st;
    (void)PyUnstable_GC_GetStats(&st);
}
static void set_threshold_detached(void) { (void)PyUnstable_GC_SetThreshold(10); }
static void get_threshold_detached(void) { (void)PyUnstable_GC_GetThreshold(); }
static void get_garbage_detached(void) { (void)PyUnstable_GC_GetGarbage(); }

Test(gc, calls_without_a_thread_state_are_fatal)
{
    /* forked children of a detached parent: no thread state attached */
    PyThreadState *save = PyEval_SaveThread();
    test_expect_fatal(collect_detached, "Fatal Python error: PyGC_Collect: ");
    test_expect_fatal(enable_detached, "PyGC_Enable");
    test_expect_fatal(disable_detached, "PyGC_Disable");
    test_expect_fatal(is_enabled_detached, "PyGC_IsEnabled");
    test_expect_fatal(get_stats_detached, "PyUnstable_GC_GetStats");
    test_expect_fatal(set_threshold_detached, "PyUnstable_GC_SetThreshold");
    test_expect_fatal(get_threshold_detached, "PyUnstable_GC_GetThreshold");
    test_expect_fatal(get_garbage_detached, "PyUnstable_GC_GetGarbage");
    PyEval_RestoreThread(save);
    /* and with one: out NULL is an error, not a crash */
    cr_assert_eq(PyUnstable_GC_GetStats(NULL), -1);
    test_expect_error(PyExc_ValueError, "NULL");
}

/* ---- B22 (gh-118332): a collection inside a critical section --------------------------------- */

static struct {
    PyThreadState *_Atomic ts[3];
    atomic_int holding, trying[3], done;
    atomic_long collected;
    long n;   /* under obj's section (GIL build: under the GIL) */
} b22;

static void *
b22_holder(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    Py_BEGIN_CRITICAL_SECTION(section_obj);
    atomic_store(&b22.holding, 1);
    if (ft_free_threaded) {
        /* both contenders parked on obj (polling attached: nobody else stops) */
        (void)TEST_POLL_UNTIL(atomic_load(&b22.trying[1]) && atomic_load(&b22.trying[2]) &&
                                  kind_of(atomic_load(&b22.ts[1])) == FT_TS_DETACHED &&
                                  kind_of(atomic_load(&b22.ts[2])) == FT_TS_DETACHED,
                              POLL_MS);
    }
    /* its finalizer begins a section on obj too: held by this thread already */
    atomic_store(&b22.collected, (long)PyGC_Collect());
    b22.n++;
    Py_END_CRITICAL_SECTION();
    PyGILState_Release(g);
    atomic_fetch_add(&b22.done, 1);
    return NULL;
}

static void *
b22_contender(void *arg)
{
    int i = (int)(intptr_t)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&b22.ts[i], PyThreadState_Get());
    Py_BEGIN_ALLOW_THREADS
    TEST_HELPER_WAIT(atomic_load(&b22.holding), POLL_MS);
    Py_END_ALLOW_THREADS
    atomic_store(&b22.trying[i], 1);
    Py_BEGIN_CRITICAL_SECTION(section_obj);
    b22.n++;
    PyObject *l = PyList_New(0);   /* a GC allocation (a safe point) inside the section */
    Py_XDECREF(l);
    Py_END_CRITICAL_SECTION();
    PyGILState_Release(g);
    atomic_fetch_add(&b22.done, 1);
    return NULL;
}

Test(gc, b22_collection_inside_a_critical_section)
{
    PyTypeObject *tp = make_node_type(true);
    PyGC_Collect();
    node_counts_reset();
    section_obj = new_list();
    ft_mutex_set_fairness_ns(0);   /* every unlock hands obj over to a waiter */
    make_garbage(10);
    cr_assert_not_null(node_pair(tp, FIN_SECTION, FIN_COUNT));
    pthread_t t[3];
    bool done;
    Py_BEGIN_ALLOW_THREADS
    t[0] = test_start_thread(b22_holder, NULL);
    t[1] = test_start_thread(b22_contender, (void *)(intptr_t)1);
    t[2] = test_start_thread(b22_contender, (void *)(intptr_t)2);
    done = TEST_POLL_UNTIL(atomic_load(&b22.done) == 3, POLL_MS);
    if (done) {
        for (int i = 0; i < 3; i++) {
            test_join_thread(t[i]);
        }
    }
    Py_END_ALLOW_THREADS
    ft_mutex_set_fairness_ns(-1);
    cr_assert(done, "%d of 3 threads finished (deadlock?)", atomic_load(&b22.done));
    cr_assert_eq(atomic_load(&b22.collected), 12, "10 lists and 2 nodes");
    cr_assert_eq(atomic_load(&section_bumps), 1, "the finalizer's section");
    cr_assert_eq(atomic_load(&node_deallocs), 2);
    cr_assert_eq(b22.n, 3);
    if (ft_free_threaded) {
        cr_assert_not(PyMutex_IsLocked(ft_object_mutex(section_obj)));
    }
    Py_CLEAR(section_obj);
}

/* ---- B25 (gh-144513) with the collector as the stopping thread ------------------------------- */

/* Rounds; in round r thread r % 2 holds obj at safe points and the other
 * parks waiting for it.  The main thread's collection then stops the world:
 * the holder's suspension hands obj to the parked thread, which the stop
 * holds suspended with obj locked; the sentinel's tp_traverse begins a
 * section on obj in that pause (twice: the finalizers make a second pause),
 * which must not wait for it. */
enum { B25_ROUNDS = 4 };

static struct {
    PyThreadState *_Atomic ts[2];
    atomic_int round;               /* set by the main thread: 1.. */
    atomic_int holding, trying, release;
    atomic_int holder_done, waiter_done;
    atomic_int exited;
    long n;   /* under obj's section (GIL build: under the GIL) */
} b25;

static void *
b25_thread(void *arg)
{
    int me = (int)(intptr_t)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&b25.ts[me], PyThreadState_Get());
    for (int r = 1; r <= B25_ROUNDS; r++) {
        Py_BEGIN_ALLOW_THREADS
        TEST_HELPER_WAIT(atomic_load(&b25.round) >= r, POLL_MS);
        Py_END_ALLOW_THREADS
        if (r % 2 == me) {   /* the holder */
            Py_BEGIN_CRITICAL_SECTION(section_obj);
            b25.n++;
            atomic_store(&b25.holding, r);
            /* safe points while holding obj, until released */
            TEST_HELPER_WAIT(((void)PyErr_CheckSignals(), atomic_load(&b25.release) >= r),
                             POLL_MS);
            b25.n++;
            Py_END_CRITICAL_SECTION();
            atomic_store(&b25.holder_done, r);
        }
        else {   /* the waiter */
            Py_BEGIN_ALLOW_THREADS
            TEST_HELPER_WAIT(atomic_load(&b25.holding) >= r, POLL_MS);
            Py_END_ALLOW_THREADS
            atomic_store(&b25.trying, r);
            Py_BEGIN_CRITICAL_SECTION(section_obj);
            b25.n++;
            Py_END_CRITICAL_SECTION();
            atomic_store(&b25.waiter_done, r);
        }
    }
    PyGILState_Release(g);
    atomic_fetch_add(&b25.exited, 1);
    return NULL;
}

Test(gc, b25_collector_pause_with_the_section_handed_to_a_suspended_thread)
{
    PyTypeObject *tp = make_node_type(true);
    PyGC_Collect();
    node_counts_reset();
    section_obj = new_list();
    PyObject *sentinel = node_new(tp, FIN_COUNT);
    cr_assert_not_null(sentinel);
    ((node *)sentinel)->traverse_takes_section = true;
    ft_mutex_set_fairness_ns(0);   /* the holder's release hands obj to the parked waiter */
    pthread_t t[2];
    Py_BEGIN_ALLOW_THREADS
    t[0] = test_start_thread(b25_thread, (void *)(intptr_t)0);
    t[1] = test_start_thread(b25_thread, (void *)(intptr_t)1);
    Py_END_ALLOW_THREADS
    int parked = 0, wrong = 0, finished = 0;
    long saw_locked[B25_ROUNDS + 1] = { 0 };
    for (int r = 1; r <= B25_ROUNDS; r++) {
        cr_assert_not_null(node_pair(tp, FIN_COUNT, FIN_COUNT));
        atomic_store(&b25.round, r);
        int waiter = 1 - r % 2;
        bool ok;
        Py_BEGIN_ALLOW_THREADS
        ok = TEST_POLL_UNTIL(
            ft_free_threaded
                ? atomic_load(&b25.trying) == r &&
                      kind_of(atomic_load(&b25.ts[waiter])) == FT_TS_DETACHED &&
                      (ft_mutex_bits(ft_object_mutex(section_obj)) & _Py_HAS_PARKED)
                : atomic_load(&b25.waiter_done) == r,   /* GIL build: sections lock nothing */
            POLL_MS);
        Py_END_ALLOW_THREADS
        parked += ok;
        long before = atomic_load(&traverse_saw_locked);
        wrong += PyGC_Collect() != 2;   /* would hang in traverse without the rule */
        saw_locked[r] = atomic_load(&traverse_saw_locked) - before;
        atomic_store(&b25.release, r);
        Py_BEGIN_ALLOW_THREADS
        ok = TEST_POLL_UNTIL(atomic_load(&b25.holder_done) == r && atomic_load(&b25.waiter_done) == r,
                             POLL_MS);
        Py_END_ALLOW_THREADS
        finished += ok;
        if (!ok) {
            break;
        }
    }
    bool exited;
    Py_BEGIN_ALLOW_THREADS
    exited = TEST_POLL_UNTIL(atomic_load(&b25.exited) == 2, POLL_MS);
    if (exited) {
        test_join_thread(t[0]);
        test_join_thread(t[1]);
    }
    Py_END_ALLOW_THREADS
    ft_mutex_set_fairness_ns(-1);
    cr_assert_eq(finished, B25_ROUNDS, "round %d did not finish (deadlock?)", finished + 1);
    cr_assert(exited);
    cr_assert_eq(parked, B25_ROUNDS, "the waiter did not park on obj");
    cr_assert_eq(wrong, 0, "%d collections did not collect the pair", wrong);
    cr_assert_eq(atomic_load(&node_deallocs), 2 * B25_ROUNDS);
    cr_assert_eq(atomic_load(&node_finalized), 2 * B25_ROUNDS);
    cr_assert_geq(atomic_load(&traverse_sections), 2 * B25_ROUNDS, "both pauses, every round");
    cr_assert_eq(b25.n, 3 * B25_ROUNDS);
    if (ft_free_threaded) {
        for (int r = 1; r <= B25_ROUNDS; r++) {
            cr_assert_gt(saw_locked[r], 0, "round %d: obj was not handed to the suspended waiter", r);
        }
        cr_assert_not(PyMutex_IsLocked(ft_object_mutex(section_obj)));
    }
    Py_DECREF(sentinel);
    Py_CLEAR(section_obj);
}

/* ---- stress: making cycles while others collect ------------------------------------------ */

enum { ST_MAKERS = 4, ST_COLLECTORS = 2, ST_BACKLOG = SLOW_BUILD ? 4000 : 40000, ST_MIN_ITERS = 256 };

static struct {
    PyTypeObject *tp;
    int64_t deadline;
    atomic_long lists, nodes, failures, made;
    atomic_int go, makers_done, collectors_done, collectors_started;
    atomic_long returned, calls;
} st;

static long
st_outstanding(void)
{
    return atomic_load(&st.made) - atomic_load(&destroyed_lists) - atomic_load(&node_deallocs);
}

static void *
st_maker(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    long lists = 0, nodes = 0, published = 0;
    /* from when the collectors are running (valgrind and the GIL can keep
     * a thread from starting for a long time) */
    Py_BEGIN_ALLOW_THREADS
    TEST_HELPER_WAIT(atomic_load(&st.go), POLL_MS);
    Py_END_ALLOW_THREADS
    for (long k = 0; k < ST_MIN_ITERS || (k & 63) != 0 || test_now_ns() < st.deadline; k++) {
        if ((k & 63) == 0) {
            /* back-pressure: at most ST_BACKLOG objects made and not yet
             * freed, so the collectors run often on a bounded heap */
            atomic_fetch_add(&st.made, lists + nodes - published);
            published = lists + nodes;
            if (st_outstanding() > ST_BACKLOG) {
                Py_BEGIN_ALLOW_THREADS
                (void)TEST_POLL_UNTIL(st_outstanding() <= ST_BACKLOG / 2 ||
                                          test_now_ns() >= st.deadline,
                                      POLL_MS);
                Py_END_ALLOW_THREADS
            }
        }
        if (k & 1) {
            PyObject *l = self_cycle();
            if (l == NULL) {
                atomic_fetch_add(&st.failures, 1);
                PyErr_Clear();
                continue;
            }
            lists++;
            Py_DECREF(l);
        }
        else if (node_pair(st.tp, FIN_COUNT, FIN_COUNT) != NULL) {
            nodes += 2;
        }
        else {
            atomic_fetch_add(&st.failures, 1);
            PyErr_Clear();
        }
    }
    atomic_fetch_add(&st.lists, lists);
    atomic_fetch_add(&st.nodes, nodes);
    PyGILState_Release(g);
    atomic_fetch_add(&st.makers_done, 1);
    return NULL;
}

static void *
st_collector(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    long sum = 0, calls = 0;
    atomic_fetch_add(&st.collectors_started, 1);
    do {
        sum += PyGC_Collect();
        calls++;
        (void)PyErr_CheckSignals();
    } while (atomic_load(&st.makers_done) < ST_MAKERS);
    atomic_fetch_add(&st.returned, sum);
    atomic_fetch_add(&st.calls, calls);
    PyGILState_Release(g);
    atomic_fetch_add(&st.collectors_done, 1);
    return NULL;
}

static void
stress(bool automatic, int64_t duration_ms)
{
    st.tp = make_node_type(true);
    PyGC_Collect();
    node_counts_reset();
    if (automatic) {
        cr_assert_eq(PyUnstable_GC_SetThreshold(1000), 0);   /* racing the explicit ones */
    }
    else {
        cr_assert_eq(PyGC_Disable(), 1);
    }
    PyUnstable_GCStats st0 = stats();
    trace_on();
    pthread_t t[ST_MAKERS + ST_COLLECTORS];
    bool started, done;
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < ST_MAKERS + ST_COLLECTORS; i++) {
        t[i] = test_start_thread(i < ST_MAKERS ? st_maker : st_collector, NULL);
    }
    started = TEST_POLL_UNTIL(atomic_load(&st.collectors_started) == ST_COLLECTORS, POLL_MS);
    st.deadline = test_now_ns() + duration_ms * FT_NS_PER_MS;
    atomic_store(&st.go, 1);   /* publishes the deadline */
    done = TEST_POLL_UNTIL(atomic_load(&st.makers_done) == ST_MAKERS &&
                               atomic_load(&st.collectors_done) == ST_COLLECTORS,
                           POLL_MS + duration_ms);
    if (done) {
        for (int i = 0; i < ST_MAKERS + ST_COLLECTORS; i++) {
            test_join_thread(t[i]);
        }
    }
    Py_END_ALLOW_THREADS
    cr_assert(started && done, "the threads did not start or finish");
    Py_ssize_t last = PyGC_Collect();
    trace_off();
    PyUnstable_GCStats st1 = stats();
    long lists = atomic_load(&st.lists), nodes = atomic_load(&st.nodes);
    cr_assert_eq(atomic_load(&st.failures), 0);
    cr_assert_gt(lists, 0);
    cr_assert_gt(nodes, 0);
    cr_assert_gt(atomic_load(&st.calls), 0);
    cr_assert_eq(atomic_load(&destroyed_lists), lists, "lists made %ld", lists);
    cr_assert_eq(atomic_load(&node_deallocs), nodes, "nodes made %ld", nodes);
    cr_assert_eq(atomic_load(&node_finalized), nodes);
    cr_assert_eq(atomic_load(&finalized_flag_in_finalizer), 0);
    cr_assert_eq(st1.collected - st0.collected, (uint64_t)(lists + nodes),
                 "the collector counted a cycle twice or missed one");
    cr_assert_eq(st1.finalized - st0.finalized, (uint64_t)nodes);
    if (automatic) {
        cr_assert_leq(atomic_load(&st.returned) + last, lists + nodes);
    }
    else {
        cr_assert_eq(st1.automatic, st0.automatic);
        cr_assert_eq(atomic_load(&st.returned) + last, lists + nodes,
                     "the explicit collections' results do not add up");
    }
    cr_assert_eq(PyGC_Collect(), 0);
}

Test(gc, stress_making_cycles_while_collecting)
{
    stress(false, SLOW_BUILD ? 150 : 2000);   /* the issue: 2 s */
}

Test(gc, stress_with_automatic_collections)
{
    stress(true, SLOW_BUILD ? 150 : 800);
}
