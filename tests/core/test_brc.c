/* The biased-refcount merge queues (core/brc.c), white-box.
 *
 * Covers scenarios C35-C37 of cpython-ft-internals.md §14: a non-owner
 * taking the shared count below zero queues the object and flags the
 * owner, which merges at its next safe point (attached; detached and then
 * attaching another state); the owner that already dropped its own
 * references frees the object while merging; an owner that has exited
 * (the dropping thread merges and frees at once); a thread that exits with
 * a non-empty queue drains it first (attached, and with no state left, 8
 * threads handing objects back to it); the out-of-memory fallback (the
 * world is stopped and the object merged); a thread id reused by a new
 * thread; a fork child taking over a dead thread's queue; and the refcount
 * stress: 8 threads pass objects to each other through mutex-protected
 * slots and drop references in random order, and the reference tracer sees
 * every object destroyed exactly once.
 *
 * The GIL build has no merge queues: the scenarios that exist there run
 * with its plain counts (objects die on whichever thread drops the last
 * reference); the queue-only ones are skipped.  Helper threads record into
 * atomics; the main thread asserts.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"

#include <stdlib.h>

#define POLL_MS 10000

TestSuite(brc, .timeout = FT_TIMEOUT(60));

/* ---- a test type: each object has an id; its destruction is recorded ------- */

#define MAX_OBJS 65536

typedef struct {
    PyObject_HEAD
    int id;
} tobj;

static atomic_int next_id;
static atomic_int destroyed_total;
static atomic_int destroyed[MAX_OBJS];
static _Atomic uintptr_t destroyed_by[MAX_OBJS];

static void
tobj_dealloc(PyObject *op)
{
    int id = ((tobj *)op)->id;
    atomic_store(&destroyed_by[id], _Py_ThreadId());
    atomic_fetch_add(&destroyed[id], 1);
    atomic_fetch_add(&destroyed_total, 1);
    PyObject_Free(op);
}

static PyTypeObject tobj_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.brc_obj",
    .tp_basicsize = sizeof(tobj),
    .tp_dealloc = tobj_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

/* NULL only when out of ids (the caller records that as a failure). */
static PyObject *
tobj_new(void)
{
    int id = atomic_fetch_add(&next_id, 1);
    if (id >= MAX_OBJS) {
        return NULL;
    }
    PyObject *op = PyObject_Malloc(sizeof(tobj));
    if (op == NULL) {
        return NULL;
    }
    PyObject_Init(op, &tobj_type);
    ((tobj *)op)->id = id;
    return op;
}

static int
id_of(PyObject *op)
{
    return ((tobj *)op)->id;
}

static void
setup(void)
{
    atomic_store(&next_id, 0);
    atomic_store(&destroyed_total, 0);
    for (int i = 0; i < MAX_OBJS; i++) {
        atomic_store(&destroyed[i], 0);
        atomic_store(&destroyed_by[i], 0);
    }
    Py_InitializeEx(0);
}

static void
teardown(void)
{
    PyRefTracer_SetTracer(NULL, NULL);
    ft_alloc_fail_after(0);
    if (PyThreadState_GetUnchecked() != NULL) {
        cr_assert_eq(Py_FinalizeEx(), 0);
    }
}

/* The queue-only scenarios skip the GIL build, which has no merge queues. */
static void
skip_without_merge_queues(void)
{
    if (!ft_free_threaded) {
        cr_skip_test("the GIL build has no merge queues");
    }
}

static bool
merge_requested(PyThreadState *ts)
{
    return (atomic_load(&ft_ts(ts)->breaker) & FT_BREAK_MERGE) != 0;
}

/* Jobs run on other threads with test_objects.h's helpers: mostly
 * test_run_on_thread_staying_attached, so that in the free-threaded build
 * what a job queues to the main thread stays queued until the test's own
 * safe point (re-attaching with PyEval_RestoreThread is one); plain
 * test_run_on_thread where the main thread must be stoppable. */
static void do_decref(void *op) { Py_DECREF((PyObject *)op); }

/* ---- C35: the owner merges at its next safe point ------------------------------ */

Test(brc, c35_queued_then_merged_at_the_owners_safe_point, .init = setup, .fini = teardown)
{
    PyThreadState *me = PyThreadState_Get();
    PyObject *op = tobj_new();
    Py_INCREF(op);   /* local 2: one of them goes to another thread */
    test_run_on_thread_staying_attached(do_decref, op);   /* it finds the shared count 0 */
    cr_assert_eq(atomic_load(&destroyed_total), 0);
    cr_assert_eq(Py_REFCNT(op), ft_free_threaded ? 2 : 1,
                 "(free-threaded: the queue's reference is not subtracted yet)");
    if (ft_free_threaded) {
        cr_assert_eq(shared_of(op), _Py_REF_QUEUED);
        cr_assert_eq(local_of(op), 2);
        cr_assert_eq(tid_of(op), _Py_ThreadId(), "still ours until merged");
        cr_assert(merge_requested(me), "the owner's state was asked to merge");
        cr_assert_eq(atomic_load(&ft_brc_self.pending), 1);
        cr_assert_eq(PyErr_CheckSignals(), 0);   /* a safe point */
        cr_assert_not(merge_requested(me));
        cr_assert_eq(atomic_load(&ft_brc_self.pending), 0);
        cr_assert_eq(tid_of(op), 0, "merged: no owner");
        cr_assert_eq(local_of(op), 0);
        cr_assert_eq(shared_of(op), _Py_REF_SHARED(1, _Py_REF_MERGED));
        cr_assert_eq(Py_REFCNT(op), 1);
    }
    cr_assert_eq(atomic_load(&destroyed_total), 0);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed_total), 1);
    cr_assert_eq(atomic_load(&destroyed_by[0]), _Py_ThreadId());
}

Test(brc, c35_owner_that_dropped_its_own_frees_while_merging, .init = setup,
     .fini = teardown)
{
    PyObject *op = tobj_new();
    Py_INCREF(op);
    Py_DECREF(op);   /* dropped our own: local 1 is the reference we hand off */
    uintptr_t other = test_run_on_thread_staying_attached(do_decref, op);
    (void)other;
    if (ft_free_threaded) {
        cr_assert_eq(atomic_load(&destroyed_total), 0, "queued, not freed by the non-owner");
        cr_assert_eq(shared_of(op), _Py_REF_QUEUED);
        cr_assert_eq(PyErr_CheckSignals(), 0);
    }
    cr_assert_eq(atomic_load(&destroyed_total), 1);
    cr_assert_eq(atomic_load(&destroyed_by[0]), ft_free_threaded ? _Py_ThreadId() : other,
                 "free-threaded: freed by the owner's merge");
}

Test(brc, c35_owner_detached_then_attaching_another_state, .init = setup, .fini = teardown)
{
    skip_without_merge_queues();
    PyThreadState *a = PyThreadState_Get();
    PyObject *op = tobj_new();
    Py_INCREF(op);
    Py_DECREF(op);
    PyThreadState *b = PyThreadState_New(PyInterpreterState_Get());
    cr_assert_not_null(b);
    /* Queue while the owner has no attached state. */
    PyThreadState *save = PyEval_SaveThread();
    cr_assert_eq(save, a);
    test_run_on_thread(do_decref, op);
    cr_assert_eq(atomic_load(&destroyed_total), 0);
    cr_assert(merge_requested(a), "the thread's last state holds the request");
    /* Attach a different state: the attach hook hands it the request, and
     * PyEval_RestoreThread's safe point merges. */
    cr_assert_not(merge_requested(b));
    PyEval_RestoreThread(b);
    cr_assert_eq(atomic_load(&destroyed_total), 1, "merged and freed under the new state");
    cr_assert_not(merge_requested(b));
    cr_assert_eq(atomic_load(&destroyed_by[0]), _Py_ThreadId());
    (void)PyEval_SaveThread();
    PyEval_RestoreThread(a);   /* a's stale request: nothing left to merge */
    cr_assert_not(merge_requested(a));
    cr_assert_eq(atomic_load(&destroyed_total), 1);
    PyThreadState_Clear(b);
    PyThreadState_Delete(b);
}

/* Py_FinalizeEx merges the finalizing thread's own queue before its state
 * goes: an object whose last reference was queued to it is destroyed, not
 * leaked. */
Test(brc, finalize_merges_the_finalizing_threads_queue, .init = setup)
{
    skip_without_merge_queues();
    PyObject *op = tobj_new();
    Py_INCREF(op);
    Py_DECREF(op);   /* local 1: the reference we hand off */
    test_run_on_thread_staying_attached(do_decref, op);   /* queued to us; no safe point since */
    cr_assert_eq(shared_of(op), _Py_REF_QUEUED);
    cr_assert_eq(atomic_load(&destroyed_total), 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(atomic_load(&destroyed_total), 1, "destroyed by finalization's merge");
    cr_assert_eq(atomic_load(&destroyed_by[0]), _Py_ThreadId());
}

/* The owner merged between a non-owner's QUEUED CAS and its look at ob_tid:
 * the enqueuer finds tid 0 and drops its reference the ordinary way.  The
 * window cannot be hit on purpose, so the enqueuer is called directly on an
 * object in that state (merged, the reference in the shared count). */
static void
queue_merged_object(void *op)
{
    ft_brc_queue_object((PyObject *)op);
}

static void do_incref(void *op) { Py_INCREF((PyObject *)op); }

Test(brc, enqueuer_finding_the_owner_merged_decrefs_normally, .init = setup,
     .fini = teardown)
{
    skip_without_merge_queues();
    PyObject *op = tobj_new();
    test_run_on_thread_staying_attached(do_incref, op);
    Py_DECREF(op);   /* the owner's last local reference: merged */
    cr_assert_eq(tid_of(op), 0);
    cr_assert_eq(shared_of(op), _Py_REF_SHARED(1, _Py_REF_MERGED));
    uintptr_t other = test_run_on_thread_staying_attached(queue_merged_object, op);
    cr_assert_eq(atomic_load(&destroyed_total), 1, "its decref was the last");
    cr_assert_eq(atomic_load(&destroyed_by[0]), other);
    cr_assert_eq(atomic_load(&ft_brc_self.pending), 0, "nothing queued to the old owner");
}

/* ---- C36: the owner has exited ------------------------------------------------------ */

typedef struct {
    PyObject *op;
    int extra_refs;
} make_job;

static void
make_and_hand_over(void *p)
{
    make_job *j = p;
    j->op = tobj_new();
    for (int i = 0; i < j->extra_refs; i++) {
        Py_INCREF(j->op);
    }
}

Test(brc, c36_owner_exited_the_dropping_thread_frees_at_once, .init = setup,
     .fini = teardown)
{
    make_job j = { NULL, 1 };
    /* two local references, the owner gone */
    test_run_on_thread_staying_attached(make_and_hand_over, &j);
    PyObject *op = j.op;
    cr_assert_not_null(op);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed_total), 0);
    if (ft_free_threaded) {
        cr_assert_eq(tid_of(op), 0, "merged at once, no queue to wait in");
        cr_assert_eq(shared_of(op), _Py_REF_SHARED(1, _Py_REF_MERGED));
        cr_assert_eq(atomic_load(&ft_brc_self.pending), 0);
    }
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed_total), 1);
    cr_assert_eq(atomic_load(&destroyed_by[0]), _Py_ThreadId(), "on the dropping thread");

    /* The last reference goes through the queue path itself. */
    j.extra_refs = 0;
    test_run_on_thread_staying_attached(make_and_hand_over, &j);
    Py_DECREF(j.op);
    cr_assert_eq(atomic_load(&destroyed_total), 2, "merged and freed by that same decref");
    cr_assert_eq(atomic_load(&destroyed_by[1]), _Py_ThreadId());
}

/* ---- C37: an exiting thread drains its queue -------------------------------------------- */

enum { C37_OBJS = 64, C37_WORKERS = 8 };

typedef struct {
    bool keep_state;                   /* exit attached, or after PyGILState_Release */
    PyObject *objs[C37_OBJS];
    atomic_int ready;                  /* objects published */
    atomic_int workers_done;
    atomic_int destroyed_before_exit;  /* -1 until the exiter records it */
    atomic_int pending_before_exit;
    _Atomic uintptr_t exiter_tid;
    atomic_int failures;
} c37_ctx;

static void *
c37_exiter(void *p)
{
    c37_ctx *c = p;
    atomic_store(&c->exiter_tid, _Py_ThreadId());
    PyGILState_STATE g = PyGILState_Ensure();
    for (int i = 0; i < C37_OBJS; i++) {
        c->objs[i] = tobj_new();
        if (c->objs[i] == NULL) {
            atomic_fetch_add(&c->failures, 1);
            PyGILState_Release(g);
            return NULL;
        }
        for (int k = 0; k < C37_WORKERS; k++) {
            Py_INCREF(c->objs[i]);   /* one reference for each worker */
        }
    }
    atomic_store(&c->ready, 1);
    /* Free-threaded: wait attached, reaching no safe point, so the merge
     * requests pile up and nothing merges (re-attaching would be a safe
     * point).  GIL build: detached, so the workers get the GIL. */
    PyThreadState *save = ft_free_threaded ? NULL : PyEval_SaveThread();
    if (!TEST_POLL_UNTIL(atomic_load(&c->workers_done) == C37_WORKERS, POLL_MS)) {
        atomic_fetch_add(&c->failures, 1);
    }
    if (save) {
        PyEval_RestoreThread(save);
    }
    for (int i = 0; i < C37_OBJS; i++) {
        Py_DECREF(c->objs[i]);   /* our own reference; the queue still owes one each */
    }
    atomic_store(&c->destroyed_before_exit, atomic_load(&destroyed_total));
    atomic_store(&c->pending_before_exit, (int)atomic_load(&ft_brc_self.pending));
    if (!c->keep_state) {
        PyGILState_Release(g);   /* deletes the state: the thread exits with none */
    }
    return NULL;   /* exits attached if keep_state */
}

typedef struct {
    c37_ctx *c;
    int index;
} c37_worker_arg;

static void *
c37_worker(void *p)
{
    c37_worker_arg *a = p;
    c37_ctx *c = a->c;
    if (!TEST_POLL_UNTIL(atomic_load(&c->ready), POLL_MS)) {
        atomic_fetch_add(&c->failures, 1);
        atomic_fetch_add(&c->workers_done, 1);
        return NULL;
    }
    PyGILState_STATE g = PyGILState_Ensure();
    /* Different orders per worker; the first drop of each object queues it. */
    for (int k = 0; k < C37_OBJS; k++) {
        int i = (k * 7 + a->index * 13) % C37_OBJS;
        Py_DECREF(c->objs[i]);
        if (k % 8 == 0) {
            (void)PyErr_CheckSignals();
        }
    }
    PyGILState_Release(g);
    atomic_fetch_add(&c->workers_done, 1);
    return NULL;
}

static void
c37_run(bool keep_state)
{
    static c37_ctx c;
    memset(&c, 0, sizeof c);
    c.keep_state = keep_state;
    atomic_store(&c.destroyed_before_exit, -1);
    PyThreadState *save = PyEval_SaveThread();
    pthread_t ex = test_start_thread(c37_exiter, &c);
    pthread_t w[C37_WORKERS];
    c37_worker_arg args[C37_WORKERS];
    for (int k = 0; k < C37_WORKERS; k++) {
        args[k] = (c37_worker_arg){ &c, k };
        w[k] = test_start_thread(c37_worker, &args[k]);
    }
    for (int k = 0; k < C37_WORKERS; k++) {
        test_join_thread(w[k]);
    }
    test_join_thread(ex);
    PyEval_RestoreThread(save);
    cr_assert_eq(atomic_load(&c.failures), 0);
    if (ft_free_threaded) {
        cr_assert_eq(atomic_load(&c.destroyed_before_exit), 0,
                     "nothing was merged before the thread exited");
        cr_assert_eq(atomic_load(&c.pending_before_exit), 1, "its queue was not empty");
    }
    else {
        cr_assert_eq(atomic_load(&c.destroyed_before_exit), C37_OBJS,
                     "GIL build: the exiter's own last decref freed each");
    }
    cr_assert_eq(atomic_load(&destroyed_total), C37_OBJS, "every object freed");
    uintptr_t ex_tid = atomic_load(&c.exiter_tid);
    for (int i = 0; i < C37_OBJS; i++) {
        cr_assert_eq(atomic_load(&destroyed[i]), 1, "object %d destroyed %d times", i,
                     atomic_load(&destroyed[i]));
        cr_assert_eq(atomic_load(&destroyed_by[i]), ex_tid,
                     "object %d freed by the exiting owner", i);
    }
}

Test(brc, c37_thread_exiting_attached_drains_its_queue, .init = setup, .fini = teardown)
{
    c37_run(true);
}

Test(brc, c37_thread_exiting_without_a_state_drains_its_queue, .init = setup,
     .fini = teardown)
{
    c37_run(false);
}

/* ---- out of memory: the world is stopped instead ------------------------------------------ */

typedef struct {
    PyObject *op;
} oom_job;

static void
oom_decref(void *p)
{
    oom_job *j = p;
    ft_alloc_fail_after(1);   /* the queue's chunk allocation fails */
    Py_DECREF(j->op);
    ft_alloc_fail_after(0);
}

Test(brc, out_of_memory_in_the_queue_stops_the_world, .init = setup, .fini = teardown)
{
    skip_without_merge_queues();
    PyInterpreterState *interp = PyInterpreterState_Get();
    PyObject *op = tobj_new();
    Py_INCREF(op);
    PyUnstable_StopTheWorldStats st;
    cr_assert_eq(PyUnstable_StopTheWorld_GetStats(interp, &st), 0);
    uint64_t stops_before = st.by_reason[PyUnstable_STOP_REFCOUNT].stops;
    oom_job j = { op };
    test_run_on_thread(oom_decref, &j);   /* the main thread must stop too */
    cr_assert_eq(PyUnstable_StopTheWorld_GetStats(interp, &st), 0);
    uint64_t stops_after = st.by_reason[PyUnstable_STOP_REFCOUNT].stops;
    cr_assert_eq(stops_after, stops_before + 1, "the fallback stopped the world once, "
                 "recorded with the reason \"refcount\"");
    cr_assert_eq(atomic_load(&ft_brc_self.pending), 0, "nothing was queued");
    cr_assert_not(merge_requested(PyThreadState_Get()));
    cr_assert_eq(tid_of(op), 0, "merged by the stopped-world fallback");
    cr_assert_eq(local_of(op), 0);
    cr_assert_eq(shared_of(op), _Py_REF_SHARED(1, _Py_REF_MERGED));
    cr_assert_eq(atomic_load(&destroyed_total), 0);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed_total), 1);
}

/* ---- a reused thread id inherits the dead thread's objects ---------------------------------- */

typedef struct {
    PyObject *op;
    uintptr_t dead_tid;
    atomic_int phase;        /* 1: incref'd (or gave up), 2: main dropped its refs */
    atomic_int reused;
    atomic_int failures;
} reuse_ctx;

static void *
reuse_thread(void *p)
{
    reuse_ctx *c = p;
    if (_Py_ThreadId() != c->dead_tid) {
        atomic_store(&c->phase, 1);
        return NULL;
    }
    atomic_store(&c->reused, 1);
    PyGILState_STATE g = PyGILState_Ensure();
    Py_INCREF(c->op);   /* ob_tid matches: counted as the owner, locally */
    atomic_store(&c->phase, 1);
    Py_BEGIN_ALLOW_THREADS
    if (!TEST_POLL_UNTIL(atomic_load(&c->phase) == 2, POLL_MS)) {
        atomic_fetch_add(&c->failures, 1);
    }
    Py_END_ALLOW_THREADS
    (void)PyErr_CheckSignals();   /* merges what main queued to us */
    Py_DECREF(c->op);             /* the last reference */
    PyGILState_Release(g);
    return NULL;
}

Test(brc, reused_thread_id_inherits_unmerged_objects, .init = setup, .fini = teardown)
{
    static reuse_ctx c;
    memset(&c, 0, sizeof c);
    for (int attempt = 0; attempt < 20 && !atomic_load(&c.reused); attempt++) {
        make_job j = { NULL, 1 };
        c.dead_tid = test_run_on_thread_staying_attached(make_and_hand_over, &j);
        c.op = j.op;
        atomic_store(&c.phase, 0);
        PyThreadState *save = PyEval_SaveThread();
        pthread_t t = test_start_thread(reuse_thread, &c);
        bool ok = TEST_POLL_UNTIL(atomic_load(&c.phase) == 1, POLL_MS);
        PyEval_RestoreThread(save);
        cr_assert(ok);
        if (!atomic_load(&c.reused)) {
            test_join_thread(t);
            Py_DECREF(c.op);   /* owner gone: merged and freed here */
            Py_DECREF(c.op);
            continue;
        }
        /* The new thread owns op now: our drops go through its queue. */
        Py_DECREF(c.op);
        Py_DECREF(c.op);
        cr_assert_eq(atomic_load(&destroyed[id_of(c.op)]), 0);
        atomic_store(&c.phase, 2);
        save = PyEval_SaveThread();
        test_join_thread(t);
        PyEval_RestoreThread(save);
        cr_assert_eq(atomic_load(&c.failures), 0);
    }
    if (!atomic_load(&c.reused)) {
        cr_skip_test("no thread reused a dead thread's thread pointer in 20 tries");
    }
    int n = atomic_load(&next_id);
    cr_assert_eq(atomic_load(&destroyed_total), n, "every object freed");
    for (int i = 0; i < n; i++) {
        cr_assert_eq(atomic_load(&destroyed[i]), 1, "object %d destroyed %d times", i,
                     atomic_load(&destroyed[i]));
    }
}

/* ---- fork: the child takes over a dead thread's queue ---------------------------------------- */

typedef struct {
    PyObject *op;
    atomic_int phase;   /* 1: handed over, 2: may merge */
    atomic_int failures;
} fork_ctx;

static void *
fork_owner(void *p)
{
    fork_ctx *c = p;
    PyGILState_STATE g = PyGILState_Ensure();
    c->op = tobj_new();
    Py_INCREF(c->op);
    Py_DECREF(c->op);   /* local 1: the reference main holds */
    atomic_store(&c->phase, 1);
    Py_BEGIN_ALLOW_THREADS
    if (!TEST_POLL_UNTIL(atomic_load(&c->phase) == 2, POLL_MS)) {
        atomic_fetch_add(&c->failures, 1);
    }
    Py_END_ALLOW_THREADS
    (void)PyErr_CheckSignals();
    PyGILState_Release(g);
    return NULL;
}

Test(brc, fork_child_merges_a_dead_threads_queue, .init = setup, .fini = teardown)
{
    skip_without_merge_queues();
    static fork_ctx c;
    memset(&c, 0, sizeof c);
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(fork_owner, &c);
    bool ok = TEST_POLL_UNTIL(atomic_load(&c.phase) == 1, POLL_MS);
    PyEval_RestoreThread(save);
    cr_assert(ok);
    Py_DECREF(c.op);   /* queued to the owner, which waits detached */
    cr_assert_eq(atomic_load(&destroyed_total), 0);
    cr_assert_eq(shared_of(c.op), _Py_REF_QUEUED);

    fflush(NULL);
    PyOS_BeforeFork();
    pid_t pid = fork();
    if (pid == 0) {
        alarm((unsigned)FT_TIMEOUT(10));
        PyOS_AfterFork_Child();
        int code = 0;
        if (atomic_load(&destroyed_total) != 0) {
            code = 10;   /* merged too early */
        }
        else if (!merge_requested(PyThreadState_Get())) {
            code = 11;   /* the forking thread was not asked to merge */
        }
        else {
            (void)PyErr_CheckSignals();
            if (atomic_load(&destroyed_total) != 1) {
                code = 12;   /* not merged and freed at the safe point */
            }
        }
        _exit(code);
    }
    PyOS_AfterFork_Parent();
    cr_assert_gt(pid, 0);
    int status = 0;
    save = PyEval_SaveThread();
    bool exited = test_wait_child(pid, POLL_MS, &status);
    PyEval_RestoreThread(save);
    cr_assert(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child status %#x", status);

    /* The parent's owner is alive: it merges at its own safe point. */
    cr_assert_eq(atomic_load(&destroyed_total), 0);
    atomic_store(&c.phase, 2);
    save = PyEval_SaveThread();
    test_join_thread(t);
    PyEval_RestoreThread(save);
    cr_assert_eq(atomic_load(&c.failures), 0);
    cr_assert_eq(atomic_load(&destroyed_total), 1);
}

/* ---- the refcount stress ------------------------------------------------------------------- */

enum { ST_THREADS = 8, ST_SLOTS = 32, ST_ITERS = 20000 / FT_TIMEOUT_SCALE, ST_BAG = 32 };

typedef struct {
    PyMutex lock;
    PyObject *obj;
} st_slot;

static st_slot st_slots[ST_SLOTS];
static atomic_int st_failures;
static atomic_int st_traced_creates;
static atomic_int st_traced_destroys[MAX_OBJS];
static atomic_int st_traced_after_free;
/* Drops by a non-owner that found the shared word 0 (a snapshot: the
 * decref right after it most likely queued the object). */
static atomic_int st_foreign_drops_at_zero;

static int
st_tracer(PyObject *op, PyRefTracerEvent ev, void *data)
{
    (void)data;
    if (ev == PyRefTracer_TRACKER_REMOVED || Py_TYPE(op) != &tobj_type) {
        return 0;   /* TRACKER_REMOVED: teardown unsets the tracer (op is NULL) */
    }
    if (ev == PyRefTracer_CREATE) {
        atomic_fetch_add(&st_traced_creates, 1);
    }
    else {
        int id = id_of(op);
        if (atomic_load(&destroyed[id]) != 0) {
            atomic_fetch_add(&st_traced_after_free, 1);
        }
        atomic_fetch_add(&st_traced_destroys[id], 1);
    }
    return 0;
}

/* Puts op (a reference, or NULL) in the slot; returns what was there. */
static PyObject *
st_swap(st_slot *s, PyObject *op)
{
    PyMutex_Lock(&s->lock);
    PyObject *old = s->obj;
    s->obj = op;
    PyMutex_Unlock(&s->lock);
    return old;
}

static void *
st_worker(void *p)
{
    unsigned seed = (unsigned)(uintptr_t)p * 2654435761u + 1;
    PyObject *bag[ST_BAG];
    int n = 0;
    PyGILState_STATE g = PyGILState_Ensure();
    for (int it = 0; it < ST_ITERS; it++) {
        int r = (int)(rand_r(&seed) % 100);
        st_slot *s = &st_slots[rand_r(&seed) % ST_SLOTS];
        if (n == ST_BAG) {
            r = 99;   /* full: drop one */
        }
        if (r < 25) {                 /* create, publish, keep what was there */
            PyObject *op = tobj_new();
            if (op == NULL) {
                atomic_fetch_add(&st_failures, 1);
                break;
            }
            PyObject *old = st_swap(s, op);
            if (old) {
                bag[n++] = old;
            }
        }
        else if (r < 50) {            /* a new reference to what a slot holds */
            PyMutex_Lock(&s->lock);
            PyObject *op = s->obj;
            if (op) {
                Py_INCREF(op);
            }
            PyMutex_Unlock(&s->lock);
            if (op) {
                bag[n++] = op;
            }
        }
        else if (r < 65) {            /* take the slot's reference */
            PyObject *op = st_swap(s, NULL);
            if (op) {
                bag[n++] = op;
            }
        }
        else if (r < 75 && n > 0) {   /* give one of ours to a slot */
            int k = (int)(rand_r(&seed) % (unsigned)n);
            PyObject *op = bag[k];
            bag[k] = bag[--n];
            PyObject *old = st_swap(s, op);
            if (old) {
                bag[n++] = old;
            }
        }
        else if (n > 0) {             /* drop a random one of ours */
            int k = (int)(rand_r(&seed) % (unsigned)n);
            PyObject *op = bag[k];
            bag[k] = bag[--n];
            if (ft_free_threaded && tid_of(op) != _Py_ThreadId() &&
                (shared_of(op) & ~(Py_ssize_t)_Py_REF_MAYBE_WEAKREF) == 0) {
                atomic_fetch_add(&st_foreign_drops_at_zero, 1);
            }
            Py_DECREF(op);
        }
        if (it % 64 == 0) {
            (void)PyErr_CheckSignals();   /* merges; the GIL build drops the GIL */
        }
    }
    while (n > 0) {
        int k = (int)(rand_r(&seed) % (unsigned)n);
        PyObject *op = bag[k];
        bag[k] = bag[--n];
        Py_DECREF(op);
    }
    PyGILState_Release(g);
    return NULL;
}

Test(brc, stress_objects_passed_between_threads_die_exactly_once, .init = setup,
     .fini = teardown, .timeout = FT_TIMEOUT(120))
{
    memset(st_slots, 0, sizeof st_slots);
    atomic_store(&st_failures, 0);
    atomic_store(&st_traced_creates, 0);
    atomic_store(&st_traced_after_free, 0);
    atomic_store(&st_foreign_drops_at_zero, 0);
    for (int i = 0; i < MAX_OBJS; i++) {
        atomic_store(&st_traced_destroys[i], 0);
    }
    PyRefTracer_SetTracer(st_tracer, NULL);
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t[ST_THREADS];
    for (int i = 0; i < ST_THREADS; i++) {
        t[i] = test_start_thread(st_worker, (void *)(uintptr_t)(i + 1));
    }
    for (int i = 0; i < ST_THREADS; i++) {
        test_join_thread(t[i]);
    }
    PyEval_RestoreThread(save);
    cr_assert_eq(atomic_load(&st_failures), 0);
    for (int i = 0; i < ST_SLOTS; i++) {
        Py_CLEAR(st_slots[i].obj);   /* their owners have exited */
    }
    (void)PyErr_CheckSignals();
    int n = atomic_load(&next_id);
    cr_assert_gt(n, ST_THREADS * ST_ITERS / 10, "the workers created objects");
    cr_assert_eq(atomic_load(&st_traced_creates), n, "every creation traced");
    cr_assert_eq(atomic_load(&destroyed_total), n, "every object freed");
    cr_assert_eq(atomic_load(&st_traced_after_free), 0, "DESTROY precedes the free");
    if (ft_free_threaded) {
        cr_assert_gt(atomic_load(&st_foreign_drops_at_zero), 0,
                     "the stress reached the merge queues");
        cr_log_info("%d objects, %d foreign drops at a zero shared count", n,
                    atomic_load(&st_foreign_drops_at_zero));
    }
    for (int i = 0; i < n; i++) {
        cr_assert_eq(atomic_load(&destroyed[i]), 1, "object %d destroyed %d times", i,
                     atomic_load(&destroyed[i]));
        cr_assert_eq(atomic_load(&st_traced_destroys[i]), 1, "object %d traced %d times", i,
                     atomic_load(&st_traced_destroys[i]));
    }
}
