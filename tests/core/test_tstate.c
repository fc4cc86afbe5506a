/* Thread states (core/tstate.c): the public API and the state machine,
 * white-box.
 *
 * Covers: Py_Initialize's attached state, Get / GetUnchecked / GET, the
 * interpreter accessors, ids; SaveThread / RestoreThread and the
 * Py_*_ALLOW_THREADS / Py_*_THREADS macros with the state word at each step
 * and errno preserved; New / Swap / Clear / Delete / DeleteCurrent /
 * AcquireThread / ReleaseThread, a state created on one thread and attached
 * on another; the registry walk (ThreadHead / Next) finding exactly the
 * registered states; misuse that is fatal with a message naming the function
 * (scenario D48 among them); a thread blocked in PyMutex_Lock, a legacy lock
 * or an event being DETACHED while it waits; the walker-versus-churn stress;
 * PyThreadState_Next on a state removed while a walker holds it; a thread
 * that exits with its state attached.
 *
 * Helper threads only record into atomics; the test's main thread asserts.
 * In the GIL build only one state is attached at a time, so the main thread
 * detaches (PyEval_SaveThread) whenever helper threads must attach.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_lock.h"
#include "ft_pystate.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_MS 5000

TestSuite(tstate, .timeout = FT_TIMEOUT(30));

/* ---- helpers ------------------------------------------------------------ */

/* How many times ts appears in a walk of interp (caller attached). */
static int
walk_occurrences(PyInterpreterState *interp, PyThreadState *ts)
{
    int n = 0;
    for (PyThreadState *p = PyInterpreterState_ThreadHead(interp); p; p = PyThreadState_Next(p)) {
        n += p == ts;
    }
    return n;
}

/* ---- initialization, accessors --------------------------------------------- */

Test(tstate, initialize_leaves_attached_state, .timeout = FT_TIMEOUT(20))
{
    cr_assert_null(PyThreadState_GetUnchecked());
    Py_Initialize();
    PyThreadState *ts = PyThreadState_GetUnchecked();
    cr_assert_not_null(ts, "Py_Initialize left no attached state");
    cr_assert_eq(PyThreadState_Get(), ts);
    cr_assert_eq(PyThreadState_GET(), ts);
    cr_assert_eq(ft_current(), ft_ts(ts));
    cr_assert_eq(kind_of(ts), FT_TS_ATTACHED, "state %s", kind_name(kind_of(ts)));

    PyInterpreterState *interp = PyInterpreterState_Main();
    cr_assert_not_null(interp);
    cr_assert_eq(PyThreadState_GetInterpreter(ts), interp);
    cr_assert_eq(ts->interp, interp);
    cr_assert_eq(PyInterpreterState_Get(), interp);
    cr_assert_eq(PyInterpreterState_Head(), interp);
    cr_assert_null(PyInterpreterState_Next(interp));
    cr_assert_eq(PyInterpreterState_GetID(interp), 0);
    cr_assert_neq(PyThreadState_GetID(ts), 0);

    /* the registry holds exactly this state */
    cr_assert_eq(PyInterpreterState_ThreadHead(interp), ts);
    cr_assert_null(PyThreadState_Next(ts));

    /* a second call is a no-op */
    Py_Initialize();
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    cr_assert_eq(test_count_states(interp), 1);

    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_null(PyThreadState_GetUnchecked());
}

Test(tstate, ids_unique_nonzero_never_reused, .timeout = FT_TIMEOUT(20))
{
    enum { N = 40 };
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *me = PyThreadState_Get();
    PyThreadState *ts[N];
    uint64_t ids[N + 1];
    ids[N] = PyThreadState_GetID(me);
    for (int i = 0; i < N; i++) {
        ts[i] = PyThreadState_New(interp);
        cr_assert_not_null(ts[i]);
        ids[i] = PyThreadState_GetID(ts[i]);
        cr_assert_neq(ids[i], 0);
        cr_assert_eq(PyThreadState_GetInterpreter(ts[i]), interp);
    }
    for (int i = 0; i <= N; i++) {
        for (int j = i + 1; j <= N; j++) {
            cr_assert_neq(ids[i], ids[j], "ids %d and %d are both %llu", i, j,
                          (unsigned long long)ids[i]);
        }
    }
    /* ids of deleted states are not handed out again */
    for (int i = 0; i < N; i++) {
        PyThreadState_Clear(ts[i]);
        PyThreadState_Delete(ts[i]);
    }
    for (int i = 0; i < N; i++) {
        PyThreadState *t = PyThreadState_New(interp);
        cr_assert_not_null(t);
        uint64_t id = PyThreadState_GetID(t);
        for (int j = 0; j <= N; j++) {
            cr_assert_neq(id, ids[j], "id %llu reused", (unsigned long long)id);
        }
        PyThreadState_Delete(t);
    }
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(tstate, walk_finds_exactly_the_registered_states, .timeout = FT_TIMEOUT(20))
{
    enum { N = 24 };
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *me = PyThreadState_Get();
    PyThreadState *ts[N];
    for (int i = 0; i < N; i++) {
        ts[i] = PyThreadState_New(interp);
        cr_assert_not_null(ts[i]);
        cr_assert_eq(kind_of(ts[i]), FT_TS_DETACHED, "new state %d is %s", i,
                     kind_name(kind_of(ts[i])));
        cr_assert_eq(PyThreadState_GetUnchecked(), me, "New must not attach");
    }
    cr_assert_eq(test_count_states(interp), N + 1);
    cr_assert_eq(walk_occurrences(interp, me), 1);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(walk_occurrences(interp, ts[i]), 1, "state %d found %d times", i,
                     walk_occurrences(interp, ts[i]));
    }
    /* delete every other one (some cleared first, some not) */
    for (int i = 0; i < N; i += 2) {
        if (i % 4 == 0) {
            PyThreadState_Clear(ts[i]);
        }
        PyThreadState_Delete(ts[i]);
    }
    cr_assert_eq(test_count_states(interp), N / 2 + 1);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(walk_occurrences(interp, ts[i]), i % 2 ? 1 : 0, "state %d found %d times",
                     i, walk_occurrences(interp, ts[i]));
    }
    for (int i = 1; i < N; i += 2) {
        PyThreadState_Delete(ts[i]);
    }
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(PyInterpreterState_ThreadHead(interp), me);
    cr_assert_null(PyThreadState_Next(NULL));
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- attach / detach on one thread ------------------------------------------- */

Test(tstate, save_restore_state_word_and_errno, .timeout = FT_TIMEOUT(20))
{
    Py_Initialize();
    PyThreadState *ts = PyThreadState_Get();
    for (int round = 0; round < 3; round++) {
        PyThreadState *saved = PyEval_SaveThread();
        cr_assert_eq(saved, ts);
        cr_assert_null(PyThreadState_GetUnchecked());
        cr_assert_eq(kind_of(ts), FT_TS_DETACHED, "after SaveThread: %s",
                     kind_name(kind_of(ts)));
        errno = ERANGE + round;
        PyEval_RestoreThread(saved);
        int e = errno;
        cr_assert_eq(e, ERANGE + round, "errno %d after RestoreThread", e);
        cr_assert_eq(PyThreadState_GetUnchecked(), ts);
        cr_assert_eq(kind_of(ts), FT_TS_ATTACHED, "after RestoreThread: %s",
                     kind_name(kind_of(ts)));
    }
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(tstate, allow_threads_macros, .timeout = FT_TIMEOUT(20))
{
    Py_Initialize();
    PyThreadState *ts = PyThreadState_Get();
    Py_BEGIN_ALLOW_THREADS
    cr_assert_eq(_save, ts);
    cr_assert_null(PyThreadState_GetUnchecked());
    cr_assert_eq(kind_of(ts), FT_TS_DETACHED);
    errno = EDOM;
    Py_BLOCK_THREADS
    cr_assert_eq(errno, EDOM);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    cr_assert_eq(kind_of(ts), FT_TS_ATTACHED);
    Py_UNBLOCK_THREADS
    cr_assert_null(PyThreadState_GetUnchecked());
    cr_assert_eq(kind_of(ts), FT_TS_DETACHED);
    errno = EILSEQ;
    Py_END_ALLOW_THREADS
    cr_assert_eq(errno, EILSEQ);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    cr_assert_eq(kind_of(ts), FT_TS_ATTACHED);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(tstate, swap, .timeout = FT_TIMEOUT(20))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *me = PyThreadState_Get();
    PyThreadState *other = PyThreadState_New(interp);
    cr_assert_not_null(other);

    cr_assert_eq(PyThreadState_Swap(other), me, "Swap returns the previous state");
    cr_assert_eq(PyThreadState_GetUnchecked(), other);
    cr_assert_eq(kind_of(other), FT_TS_ATTACHED);
    cr_assert_eq(kind_of(me), FT_TS_DETACHED);

    /* swapping in the attached state changes nothing */
    cr_assert_eq(PyThreadState_Swap(other), other);
    cr_assert_eq(PyThreadState_GetUnchecked(), other);
    cr_assert_eq(kind_of(other), FT_TS_ATTACHED);

    /* Swap(NULL) detaches */
    cr_assert_eq(PyThreadState_Swap(NULL), other);
    cr_assert_null(PyThreadState_GetUnchecked());
    cr_assert_eq(kind_of(other), FT_TS_DETACHED);
    cr_assert_eq(kind_of(me), FT_TS_DETACHED);
    cr_assert_null(PyThreadState_Swap(NULL));

    errno = ENOTDIR;
    cr_assert_null(PyThreadState_Swap(me));
    cr_assert_eq(errno, ENOTDIR);
    cr_assert_eq(PyThreadState_GetUnchecked(), me);
    cr_assert_eq(kind_of(me), FT_TS_ATTACHED);

    PyThreadState_Clear(other);
    PyThreadState_Delete(other);
    cr_assert_eq(walk_occurrences(interp, other), 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(tstate, clear_and_delete_current, .timeout = FT_TIMEOUT(20))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *me = PyThreadState_Get();
    PyThreadState *other = PyThreadState_New(interp);
    cr_assert_not_null(other);
    cr_assert_eq(PyThreadState_Swap(other), me);
    PyThreadState_Clear(other);   /* allowed: attached to the calling thread */
    cr_assert_eq(kind_of(other), FT_TS_ATTACHED, "Clear must not detach");
    cr_assert_eq(PyThreadState_GetUnchecked(), other);
    PyThreadState_DeleteCurrent();
    cr_assert_null(PyThreadState_GetUnchecked());
    PyEval_RestoreThread(me);
    cr_assert_eq(walk_occurrences(interp, other), 0, "deleted state still in the registry");
    cr_assert_eq(test_count_states(interp), 1);

    /* DeleteCurrent without a Clear first */
    other = PyThreadState_New(interp);
    cr_assert_not_null(other);
    PyEval_SaveThread();
    PyEval_RestoreThread(other);
    PyThreadState_DeleteCurrent();
    cr_assert_null(PyThreadState_GetUnchecked());
    cr_assert_eq(kind_of(me), FT_TS_DETACHED);
    PyEval_RestoreThread(me);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(tstate, acquire_release_thread, .timeout = FT_TIMEOUT(20))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *me = PyEval_SaveThread();
    PyThreadState *other = PyThreadState_New(interp);
    cr_assert_not_null(other);
    for (int i = 0; i < 3; i++) {
        errno = EXDEV;
        PyEval_AcquireThread(other);
        cr_assert_eq(errno, EXDEV);
        cr_assert_eq(PyThreadState_GetUnchecked(), other);
        cr_assert_eq(kind_of(other), FT_TS_ATTACHED);
        PyEval_ReleaseThread(other);
        cr_assert_null(PyThreadState_GetUnchecked());
        cr_assert_eq(kind_of(other), FT_TS_DETACHED);
    }
    PyThreadState_Clear(other);
    PyThreadState_Delete(other);
    PyEval_AcquireThread(me);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- states crossing threads --------------------------------------------------- */

typedef struct cross {
    PyThreadState *_Atomic ts;     /* in: the state to use; out: the one created */
    atomic_int unchecked_null_before;
    atomic_int got_current;
    atomic_int got_interp;
    atomic_int kind_attached;
    atomic_int kind_detached_after;
} cross;

/* Attach a state another thread created, use it, detach. */
static void *
attach_foreign_state(void *arg)
{
    cross *c = arg;
    PyThreadState *ts = atomic_load(&c->ts);
    atomic_store(&c->unchecked_null_before, PyThreadState_GetUnchecked() == NULL);
    PyEval_RestoreThread(ts);
    atomic_store(&c->got_current, PyThreadState_Get() == ts);
    atomic_store(&c->got_interp, PyInterpreterState_Get() == PyInterpreterState_Main());
    atomic_store(&c->kind_attached, kind_of(ts) == FT_TS_ATTACHED);
    PyThreadState *saved = PyEval_SaveThread();
    atomic_store(&c->kind_detached_after, saved == ts && kind_of(ts) == FT_TS_DETACHED &&
                                              PyThreadState_GetUnchecked() == NULL);
    return NULL;
}

/* Create a state without attaching it, hand it out. */
static void *
create_state_only(void *arg)
{
    cross *c = arg;
    atomic_store(&c->ts, PyThreadState_New(PyInterpreterState_Main()));
    return NULL;
}

Test(tstate, state_created_on_one_thread_attached_on_another, .timeout = FT_TIMEOUT(20))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *me = PyEval_SaveThread();

    /* created here, attached there */
    PyThreadState *ts = PyThreadState_New(interp);
    cr_assert_not_null(ts);
    cross c;
    memset(&c, 0, sizeof c);
    atomic_store(&c.ts, ts);
    test_join_thread(test_start_thread(attach_foreign_state, &c));
    cr_assert(atomic_load(&c.unchecked_null_before), "a new thread has no attached state");
    cr_assert(atomic_load(&c.got_current));
    cr_assert(atomic_load(&c.got_interp));
    cr_assert(atomic_load(&c.kind_attached));
    cr_assert(atomic_load(&c.kind_detached_after));
    cr_assert_eq(kind_of(ts), FT_TS_DETACHED);

    /* ... and attached here afterwards too */
    PyEval_RestoreThread(ts);
    cr_assert_eq(PyThreadState_Get(), ts);
    PyEval_SaveThread();
    PyThreadState_Clear(ts);
    PyThreadState_Delete(ts);

    /* created there, attached here */
    cross d;
    memset(&d, 0, sizeof d);
    test_join_thread(test_start_thread(create_state_only, &d));
    ts = atomic_load(&d.ts);
    cr_assert_not_null(ts);
    cr_assert_eq(kind_of(ts), FT_TS_DETACHED);
    cr_assert_eq(PyThreadState_Swap(ts), NULL);
    cr_assert_eq(PyThreadState_Get(), ts);
    cr_assert_eq(walk_occurrences(interp, ts), 1);
    cr_assert_eq(walk_occurrences(interp, me), 1);
    cr_assert_eq(PyThreadState_Swap(me), ts);
    PyThreadState_Clear(ts);
    PyThreadState_Delete(ts);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- misuse is fatal ------------------------------------------------------------- */

static void
child_restore_second_state(void)
{
    Py_Initialize();
    PyThreadState *other = PyThreadState_New(PyInterpreterState_Main());
    PyEval_RestoreThread(other);   /* one is attached already */
}

static void
child_restore_same_state(void)
{
    Py_Initialize();
    PyEval_RestoreThread(PyThreadState_Get());
}

static void
child_acquire_second_state(void)
{
    Py_Initialize();
    PyThreadState *other = PyThreadState_New(PyInterpreterState_Main());
    PyEval_AcquireThread(other);
}

static void
child_restore_null(void)
{
    Py_Initialize();
    PyEval_SaveThread();
    PyEval_RestoreThread(NULL);
}

static void
child_get_none_attached(void)
{
    Py_Initialize();
    PyEval_SaveThread();
    (void)PyThreadState_Get();
}

static void
child_save_none_attached(void)
{
    Py_Initialize();
    PyEval_SaveThread();
    PyEval_SaveThread();
}

static void
child_release_wrong_state(void)
{
    Py_Initialize();
    PyThreadState *other = PyThreadState_New(PyInterpreterState_Main());
    PyEval_ReleaseThread(other);   /* the attached one is the main state */
}

static void
child_release_none_attached(void)
{
    Py_Initialize();
    PyThreadState *me = PyEval_SaveThread();
    PyEval_ReleaseThread(me);
}

static void
child_delete_current(void)
{
    Py_Initialize();
    PyThreadState_Delete(PyThreadState_Get());
}

static void
child_delete_current_none_attached(void)
{
    Py_Initialize();
    PyEval_SaveThread();
    PyThreadState_DeleteCurrent();
}

/* A helper thread attaches `held`, says so, and stays attached (no safe
 * point) until the process dies. */
static PyThreadState *_Atomic held;
static atomic_int held_attached;

static void *
hold_attached(void *arg)
{
    (void)arg;
    PyEval_RestoreThread(atomic_load(&held));
    atomic_store(&held_attached, 1);
    for (;;) {
        test_sleep_ns(1000000);   /* idles until the process dies: waits for nothing */
    }
    return NULL;
}

/* Leaves the calling (main) thread detached, `held` attached to a helper. */
static void
start_holder(void)
{
    Py_Initialize();
    atomic_store(&held, PyThreadState_New(PyInterpreterState_Main()));
    PyEval_SaveThread();
    pthread_t t;
    if (pthread_create(&t, NULL, hold_attached, NULL) != 0) {
        _exit(101);
    }
    if (!TEST_POLL_UNTIL(atomic_load(&held_attached), POLL_MS)) {
        _exit(102);
    }
}

static void
child_delete_attached_elsewhere(void)
{
    start_holder();
    PyThreadState_Delete(atomic_load(&held));
}

static void
child_clear_attached_elsewhere(void)
{
    start_holder();
    PyThreadState_Clear(atomic_load(&held));
}

static void
child_release_attached_elsewhere(void)
{
    start_holder();
    PyEval_ReleaseThread(atomic_load(&held));   /* only its own thread may detach it */
}

/* Free-threaded only: with the GIL the second attach waits for the GIL. */
static void
child_restore_attached_elsewhere(void)
{
    start_holder();
    PyEval_RestoreThread(atomic_load(&held));
}

static void
child_swap_attached_elsewhere(void)
{
    start_holder();
    (void)PyThreadState_Swap(atomic_load(&held));
}

Test(tstate, fatal_restore_second_state_on_thread, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_restore_second_state, "Fatal Python error: PyEval_RestoreThread: ");
}

Test(tstate, fatal_restore_already_attached_state, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_restore_same_state, "Fatal Python error: PyEval_RestoreThread: ");
}

Test(tstate, fatal_acquire_second_state_on_thread, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_acquire_second_state, "Fatal Python error: PyEval_AcquireThread: ");
}

Test(tstate, fatal_restore_null, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_restore_null, "Fatal Python error: PyEval_RestoreThread: ");
}

Test(tstate, fatal_get_with_none_attached, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_get_none_attached, "Fatal Python error: PyThreadState_Get: ");
}

Test(tstate, fatal_save_with_none_attached, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_save_none_attached, "Fatal Python error: PyEval_SaveThread: ");
}

Test(tstate, fatal_release_wrong_state, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_release_wrong_state, "Fatal Python error: PyEval_ReleaseThread: ");
}

Test(tstate, fatal_release_with_none_attached, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_release_none_attached, "Fatal Python error: PyEval_ReleaseThread: ");
}

Test(tstate, fatal_delete_current_state, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_delete_current, "Fatal Python error: PyThreadState_Delete: ");
}

Test(tstate, fatal_delete_current_with_none_attached, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_delete_current_none_attached,
                      "Fatal Python error: PyThreadState_DeleteCurrent: ");
}

Test(tstate, fatal_delete_state_attached_elsewhere, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_delete_attached_elsewhere,
                      "Fatal Python error: PyThreadState_Delete: ");
}

Test(tstate, fatal_clear_state_attached_elsewhere, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_clear_attached_elsewhere, "Fatal Python error: PyThreadState_Clear: ");
}

/* D48: only the thread a state is attached to detaches it. */
Test(tstate, fatal_release_state_attached_elsewhere, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_release_attached_elsewhere,
                      "Fatal Python error: PyEval_ReleaseThread: ");
}

Test(tstate, fatal_restore_state_attached_elsewhere, .timeout = FT_TIMEOUT(20))
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: the second attach waits for the GIL, which the holder keeps");
    }
    test_expect_fatal(child_restore_attached_elsewhere,
                      "Fatal Python error: PyEval_RestoreThread: ");
}

Test(tstate, fatal_swap_state_attached_elsewhere, .timeout = FT_TIMEOUT(20))
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: the second attach waits for the GIL, which the holder keeps");
    }
    test_expect_fatal(child_swap_attached_elsewhere, "Fatal Python error: PyThreadState_Swap: ");
}

/* GIL build: the same misuse waits for the GIL instead (the holder never
 * reaches a safe point), and must not attach the state a second time. */
static atomic_int second_attach_trying, second_attach_returned;

static void *
second_attach(void *arg)
{
    (void)arg;
    atomic_store(&second_attach_trying, 1);
    PyEval_RestoreThread(atomic_load(&held));
    atomic_store(&second_attach_returned, 1);
    return NULL;
}

Test(tstate, gil_second_attach_of_attached_state_waits, .timeout = FT_TIMEOUT(20))
{
    if (ft_free_threaded) {
        cr_skip_test("free-threaded build: fatal instead (fatal_restore_state_attached_elsewhere)");
    }
    Py_Initialize();
    atomic_store(&held, PyThreadState_New(PyInterpreterState_Main()));
    PyEval_SaveThread();
    pthread_t h = test_start_thread(hold_attached, NULL);
    (void)h;
    cr_assert(TEST_POLL_UNTIL(atomic_load(&held_attached), POLL_MS));
    pthread_t t = test_start_thread(second_attach, NULL);
    (void)t;
    /* It waits for the GIL: it asked the holder to drop it. */
    cr_assert(TEST_POLL_UNTIL(atomic_load(&second_attach_trying) &&
                                  (atomic_load(&ft_ts(atomic_load(&held))->breaker) &
                                   FT_BREAK_GIL_DROP),
                              POLL_MS),
              "the second attach never asked for the GIL (returned %d)",
              atomic_load(&second_attach_returned));
    test_sleep_ns(50 * 1000000LL);   /* a window for a wrong attach to show: not a wait */
    cr_assert_eq(atomic_load(&second_attach_returned), 0,
                 "the state was attached by a second thread while the first held it");
    cr_assert_eq(kind_of(atomic_load(&held)), FT_TS_ATTACHED);
    /* the threads stay blocked; the process just exits */
}

/* ---- blocking while attached detaches ----------------------------------------------- */

enum wait_kind { WAIT_MUTEX, WAIT_LEGACY, WAIT_LEGACY_TIMED, WAIT_LEGACY_INTR, WAIT_EVENT };

typedef struct blocker {
    enum wait_kind kind;
    PyMutex mutex;
    PyThread_type_lock lock;
    ft_event event;
    PyThreadState *_Atomic ts;
    atomic_int stage;              /* 1: attached, about to wait; 2: got it */
    atomic_int kind_before;
    atomic_int kind_after;
    atomic_int current_after;
    atomic_int acquire_rc;
} blocker;

static void *
block_attached(void *arg)
{
    blocker *b = arg;
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    PyEval_RestoreThread(ts);
    atomic_store(&b->ts, ts);
    atomic_store(&b->kind_before, kind_of(ts));
    atomic_store(&b->stage, 1);
    int rc = PY_LOCK_ACQUIRED;
    switch (b->kind) {
    case WAIT_MUTEX:
        PyMutex_Lock(&b->mutex);
        break;
    case WAIT_LEGACY:
        rc = PyThread_acquire_lock(b->lock, WAIT_LOCK) ? PY_LOCK_ACQUIRED : PY_LOCK_FAILURE;
        break;
    case WAIT_LEGACY_TIMED:
        rc = PyThread_acquire_lock_timed(b->lock, 600LL * 1000 * 1000, 0);
        break;
    case WAIT_LEGACY_INTR:
        rc = PyThread_acquire_lock_timed(b->lock, -1, 1);
        break;
    case WAIT_EVENT:
        ft_event_wait(&b->event);
        break;
    }
    atomic_store(&b->acquire_rc, rc);
    atomic_store(&b->kind_after, kind_of(ts));
    atomic_store(&b->current_after, PyThreadState_GetUnchecked() == ts);
    atomic_store(&b->stage, 2);
    if (b->kind == WAIT_MUTEX) {
        PyMutex_Unlock(&b->mutex);
    }
    else if (b->kind != WAIT_EVENT && rc == PY_LOCK_ACQUIRED) {
        PyThread_release_lock(b->lock);
    }
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    return NULL;
}

static void
check_detached_while_blocked(enum wait_kind kind)
{
    Py_Initialize();
    PyThreadState *me = PyEval_SaveThread();
    blocker *b = calloc(1, sizeof *b);
    cr_assert_not_null(b);
    b->kind = kind;
    switch (kind) {
    case WAIT_MUTEX:
        PyMutex_Lock(&b->mutex);
        break;
    case WAIT_EVENT:
        break;
    default:
        b->lock = PyThread_allocate_lock();
        cr_assert_not_null(b->lock);
        cr_assert_eq(PyThread_acquire_lock(b->lock, NOWAIT_LOCK), 1);
        break;
    }
    pthread_t t = test_start_thread(block_attached, b);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&b->stage) >= 1, POLL_MS), "helper never attached");
    PyThreadState *ts = atomic_load(&b->ts);
    cr_assert_eq(atomic_load(&b->kind_before), FT_TS_ATTACHED);
    cr_assert(TEST_POLL_UNTIL(kind_of(ts) == FT_TS_DETACHED, POLL_MS),
              "a thread waiting while attached stays %s", kind_name(kind_of(ts)));
    cr_assert_eq(atomic_load(&b->stage), 1, "the wait returned before the release");

    /* Someone else can attach meanwhile (GIL build: the waiter let the GIL go). */
    PyEval_RestoreThread(me);
    cr_assert_eq(PyThreadState_GetUnchecked(), me);
    me = PyEval_SaveThread();
    cr_assert_eq(atomic_load(&b->stage), 1);
    cr_assert_eq(kind_of(ts), FT_TS_DETACHED);

    switch (kind) {
    case WAIT_MUTEX:
        PyMutex_Unlock(&b->mutex);
        break;
    case WAIT_EVENT:
        ft_event_set(&b->event);
        break;
    default:
        PyThread_release_lock(b->lock);
        break;
    }
    cr_assert(TEST_POLL_UNTIL(atomic_load(&b->stage) == 2, POLL_MS), "the waiter never woke");
    test_join_thread(t);
    cr_assert_eq(atomic_load(&b->acquire_rc), PY_LOCK_ACQUIRED);
    cr_assert_eq(atomic_load(&b->kind_after), FT_TS_ATTACHED, "after the wait: %s",
                 kind_name(atomic_load(&b->kind_after)));
    cr_assert(atomic_load(&b->current_after), "the waiter's state is not current after the wait");
    if (b->lock) {
        PyThread_free_lock(b->lock);
    }
    free(b);
    PyEval_RestoreThread(me);
    cr_assert_eq(test_count_states(PyInterpreterState_Main()), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(tstate, detached_while_blocked_in_pymutex, .timeout = FT_TIMEOUT(20))
{
    check_detached_while_blocked(WAIT_MUTEX);
}

Test(tstate, detached_while_blocked_in_legacy_lock, .timeout = FT_TIMEOUT(20))
{
    check_detached_while_blocked(WAIT_LEGACY);
}

Test(tstate, detached_while_blocked_in_legacy_lock_timed, .timeout = FT_TIMEOUT(20))
{
    check_detached_while_blocked(WAIT_LEGACY_TIMED);
}

Test(tstate, detached_while_blocked_in_legacy_lock_intr, .timeout = FT_TIMEOUT(20))
{
    check_detached_while_blocked(WAIT_LEGACY_INTR);
}

Test(tstate, detached_while_waiting_for_event, .timeout = FT_TIMEOUT(20))
{
    check_detached_while_blocked(WAIT_EVENT);
}

/* ---- walker versus churn --------------------------------------------------------------- */

#define CHURNERS 8
#define CHURN_ITERS 2000

typedef struct walk_shared {
    PyInterpreterState *interp;
    atomic_int stop;
    atomic_long walks;
    atomic_long visits;
    atomic_long bad_interp;
    atomic_long bad_id;
    atomic_long shutting_down;
    atomic_int max_seen;
    atomic_int churn_started;
    atomic_long churn_bad;
} walk_shared;

static void *
walker(void *arg)
{
    walk_shared *w = arg;
    PyThreadState *ts = PyThreadState_New(w->interp);
    PyEval_RestoreThread(ts);
    while (!atomic_load(&w->stop)) {
        int n = 0;
        for (PyThreadState *p = PyInterpreterState_ThreadHead(w->interp); p;
             p = PyThreadState_Next(p)) {
            if (PyThreadState_GetInterpreter(p) != w->interp) {
                atomic_fetch_add(&w->bad_interp, 1);
            }
            if (PyThreadState_GetID(p) == 0) {
                atomic_fetch_add(&w->bad_id, 1);
            }
            if (kind_of(p) == FT_TS_SHUTTING_DOWN) {
                atomic_fetch_add(&w->shutting_down, 1);   /* being deleted: fine */
            }
            n++;
        }
        atomic_fetch_add(&w->walks, 1);
        atomic_fetch_add(&w->visits, n);
        if (n > atomic_load(&w->max_seen)) {
            atomic_store(&w->max_seen, n);
        }
        (void)PyErr_CheckSignals();
    }
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    return NULL;
}

static void *
churner(void *arg)
{
    walk_shared *w = arg;
    atomic_fetch_add(&w->churn_started, 1);
    for (int i = 0; i < CHURN_ITERS; i++) {
        PyThreadState *ts = PyThreadState_New(w->interp);
        if (!ts) {
            atomic_fetch_add(&w->churn_bad, 1);
            continue;
        }
        if (i % 100 == 0) {
            /* Now and then stay registered (detached, so the GIL build's
             * walker can run) until the walker has made a full walk: it
             * must meet churning states, whatever the scheduler does. */
            long walks = atomic_load(&w->walks);
            (void)TEST_POLL_UNTIL(atomic_load(&w->walks) >= walks + 2, POLL_MS);
        }
        PyEval_RestoreThread(ts);
        if (PyThreadState_GetUnchecked() != ts || kind_of(ts) != FT_TS_ATTACHED) {
            atomic_fetch_add(&w->churn_bad, 1);
        }
        if (i % 3 == 0) {
            (void)PyErr_CheckSignals();
        }
        if (i % 2 == 0) {
            PyThreadState_Clear(ts);
            PyThreadState_DeleteCurrent();
        }
        else {
            if (PyEval_SaveThread() != ts) {
                atomic_fetch_add(&w->churn_bad, 1);
            }
            PyThreadState_Clear(ts);
            PyThreadState_Delete(ts);
        }
        if (PyThreadState_GetUnchecked() != NULL) {
            atomic_fetch_add(&w->churn_bad, 1);
        }
    }
    return NULL;
}

Test(tstate, walker_versus_churn, .timeout = FT_TIMEOUT(60))
{
    Py_Initialize();
    walk_shared *w = calloc(1, sizeof *w);
    cr_assert_not_null(w);
    w->interp = PyInterpreterState_Main();
    PyThreadState *me = PyEval_SaveThread();
    pthread_t wt = test_start_thread(walker, w);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&w->walks) > 0, POLL_MS), "the walker never walked");
    pthread_t ct[CHURNERS];
    for (int i = 0; i < CHURNERS; i++) {
        ct[i] = test_start_thread(churner, w);
    }
    for (int i = 0; i < CHURNERS; i++) {
        test_join_thread(ct[i]);
    }
    long walks_after_churn = atomic_load(&w->walks);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&w->walks) > walks_after_churn, POLL_MS),
              "the walker stopped walking");
    atomic_store(&w->stop, 1);
    test_join_thread(wt);
    PyEval_RestoreThread(me);

    cr_log_info("walks %ld, visits %ld, max seen %d, being deleted %ld", atomic_load(&w->walks),
                atomic_load(&w->visits), atomic_load(&w->max_seen),
                atomic_load(&w->shutting_down));
    cr_assert_eq(atomic_load(&w->bad_interp), 0, "walker reached states of another interp");
    cr_assert_eq(atomic_load(&w->bad_id), 0, "walker reached states with id 0");
    cr_assert_eq(atomic_load(&w->churn_bad), 0);
    /* main + walker + at least one churner at some point */
    cr_assert_geq(atomic_load(&w->max_seen), 3, "the walker never saw a churner's state");
    cr_assert_eq(test_count_states(w->interp), 1, "states left in the registry");
    cr_assert_eq(PyInterpreterState_ThreadHead(w->interp), me);
    free(w);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- PyThreadState_Next on a state removed under the walker ------------------------------ */

#define NVICTIMS 6

typedef struct removal {
    PyInterpreterState *interp;
    PyThreadState *main_ts;
    PyThreadState *victims[NVICTIMS];
    PyThreadState *_Atomic walker_ts;
    atomic_int stage;        /* 1: pair chosen; 2: pair deleted; 3: walked on */
    atomic_int b, c;         /* indices of the chosen pair (c = old successor of b) */
    atomic_int deleted_reached;
    atomic_int unknown_reached;
    atomic_int first_after;  /* classification of Next(b) */
    atomic_int rest;         /* states reached from there on */
    atomic_int no_pair;
} removal;

enum { CLS_NULL = -1, CLS_MAIN = 100, CLS_WALKER = 101, CLS_DELETED = 200, CLS_UNKNOWN = 300 };

static int
classify(removal *r, PyThreadState *p, PyThreadState *self)
{
    if (!p) {
        return CLS_NULL;
    }
    if (p == r->main_ts) {
        return CLS_MAIN;
    }
    if (p == self) {
        return CLS_WALKER;
    }
    int b = atomic_load(&r->b), c = atomic_load(&r->c);
    for (int i = 0; i < NVICTIMS; i++) {
        if (p == r->victims[i]) {
            return (atomic_load(&r->stage) >= 2 && (i == b || i == c)) ? CLS_DELETED : i;
        }
    }
    return CLS_UNKNOWN;
}

static void *
removal_walker(void *arg)
{
    removal *r = arg;
    PyThreadState *self = PyThreadState_New(r->interp);
    PyEval_RestoreThread(self);
    atomic_store(&r->walker_ts, self);
    /* find consecutive victims b, c */
    PyThreadState *pb = NULL;
    for (PyThreadState *p = PyInterpreterState_ThreadHead(r->interp); p;
         p = PyThreadState_Next(p)) {
        PyThreadState *q = PyThreadState_Next(p);
        int cp = classify(r, p, self), cq = classify(r, q, self);
        if (cp >= 0 && cp < NVICTIMS && cq >= 0 && cq < NVICTIMS) {
            atomic_store(&r->b, cp);
            atomic_store(&r->c, cq);
            pb = p;
            break;
        }
    }
    if (!pb) {
        atomic_store(&r->no_pair, 1);
        atomic_store(&r->stage, 3);
        goto out;
    }
    atomic_store(&r->stage, 1);
    /* No safe point, no detach: pb must stay readable. */
    while (atomic_load(&r->stage) != 2) {
    }
    PyThreadState *n = PyThreadState_Next(pb);
    int cls = classify(r, n, self);
    atomic_store(&r->first_after, cls);
    int reached = 0;
    for (PyThreadState *p = n; p; p = PyThreadState_Next(p)) {
        int k = classify(r, p, self);
        if (k == CLS_DELETED) {
            atomic_fetch_add(&r->deleted_reached, 1);
        }
        if (k == CLS_UNKNOWN) {
            atomic_fetch_add(&r->unknown_reached, 1);
        }
        if (++reached > 100) {
            break;   /* a cycle */
        }
    }
    atomic_store(&r->rest, reached);
    atomic_store(&r->stage, 3);
out:
    (void)PyErr_CheckSignals();
    PyThreadState_Clear(self);
    PyThreadState_DeleteCurrent();
    return NULL;
}

Test(tstate, next_on_state_removed_under_walker, .timeout = FT_TIMEOUT(20))
{
    for (int round = 0; round < 5; round++) {
        Py_Initialize();
        removal *r = calloc(1, sizeof *r);
        cr_assert_not_null(r);
        r->interp = PyInterpreterState_Main();
        r->main_ts = PyThreadState_Get();
        atomic_store(&r->b, -1);
        atomic_store(&r->c, -1);
        for (int i = 0; i < NVICTIMS; i++) {
            r->victims[i] = PyThreadState_New(r->interp);
            cr_assert_not_null(r->victims[i]);
        }
        PyEval_SaveThread();
        pthread_t t = test_start_thread(removal_walker, r);
        cr_assert(TEST_POLL_UNTIL(atomic_load(&r->stage) >= 1, POLL_MS));
        cr_assert_eq(atomic_load(&r->no_pair), 0,
                     "no two victims adjacent in the walk (impossible with 6 of 8)");
        int b = atomic_load(&r->b), c = atomic_load(&r->c);
        /* delete the state the walker holds and its successor, detached */
        PyThreadState_Clear(r->victims[b]);
        PyThreadState_Delete(r->victims[b]);
        PyThreadState_Delete(r->victims[c]);
        atomic_store(&r->stage, 2);
        cr_assert(TEST_POLL_UNTIL(atomic_load(&r->stage) == 3, POLL_MS));
        test_join_thread(t);
        int first = atomic_load(&r->first_after);
        cr_assert(first == CLS_NULL || first == CLS_MAIN || first == CLS_WALKER ||
                      (first >= 0 && first < NVICTIMS),
                  "Next(removed) returned a %s state (class %d)",
                  first == CLS_DELETED ? "deleted" : "unknown", first);
        cr_assert_eq(atomic_load(&r->deleted_reached), 0, "walk from the removed state "
                     "reached deleted states");
        cr_assert_eq(atomic_load(&r->unknown_reached), 0);
        cr_assert_leq(atomic_load(&r->rest), 100, "the walk did not end");

        PyEval_RestoreThread(r->main_ts);
        for (int i = 0; i < NVICTIMS; i++) {
            if (i != b && i != c) {
                PyThreadState_Delete(r->victims[i]);
            }
        }
        cr_assert_eq(test_count_states(r->interp), 1);
        free(r);
        cr_assert_eq(Py_FinalizeEx(), 0);
    }
}

/* ---- a thread that exits attached ---------------------------------------------------------- */

static void *
exit_attached(void *arg)
{
    PyThreadState *_Atomic *out = arg;
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    PyEval_RestoreThread(ts);
    atomic_store(out, ts);
    return NULL;   /* still attached */
}

Test(tstate, thread_exit_while_attached, .timeout = FT_TIMEOUT(20))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *me = PyEval_SaveThread();
    PyThreadState *_Atomic out = NULL;
    test_join_thread(test_start_thread(exit_attached, (void *)&out));
    PyThreadState *ts = atomic_load(&out);
    cr_assert_not_null(ts);
    cr_assert_eq(kind_of(ts), FT_TS_DETACHED, "a thread exited with its state %s",
                 kind_name(kind_of(ts)));

    /* GIL build: this waits forever if the dead thread kept the GIL */
    PyEval_RestoreThread(me);
    cr_assert_eq(PyThreadState_Get(), me);
    cr_assert_eq(walk_occurrences(interp, ts), 1, "the state is still registered");

    /* Free-threaded: a stop does not wait for the dead thread */
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    if (ft_free_threaded) {
        cr_assert_eq(kind_of(ts), FT_TS_SUSPENDED);
    }
    ft_start_the_world(interp);
    cr_assert_eq(kind_of(ts), FT_TS_DETACHED);

    /* and the state can still be used and deleted from another thread */
    cr_assert_eq(PyThreadState_Swap(ts), me);
    cr_assert_eq(PyThreadState_Swap(me), ts);
    PyThreadState_Clear(ts);
    PyThreadState_Delete(ts);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- asynchronous exceptions, frames ---------------------------------------------- */

Test(tstate, set_async_exc_on_own_thread, .timeout = FT_TIMEOUT(20))
{
    Py_InitializeEx(0);
    unsigned long me = PyThread_get_thread_ident();
    cr_assert_eq(PyThreadState_SetAsyncExc(0, PyExc_RuntimeError), 0, "no thread has ident 0");
    cr_assert_null(PyErr_Occurred(), "SetAsyncExc never raises");

    cr_assert_eq(PyThreadState_SetAsyncExc(me, PyExc_RuntimeError), 1);
    cr_assert_null(PyErr_Occurred(), "nothing is raised before a safe point");
    cr_assert_eq(PyErr_CheckSignals(), -1);
    cr_assert(PyErr_ExceptionMatches(PyExc_RuntimeError));
    PyErr_Clear();
    cr_assert_eq(PyErr_CheckSignals(), 0, "raised once");

    /* NULL cancels a pending one */
    cr_assert_eq(PyThreadState_SetAsyncExc(me, PyExc_RuntimeError), 1);
    cr_assert_eq(PyThreadState_SetAsyncExc(me, NULL), 1);
    cr_assert_eq(PyErr_CheckSignals(), 0);
    cr_assert_null(PyErr_Occurred());

    /* an instance is raised as it is, through Py_MakePendingCalls too */
    PyErr_SetString(PyExc_ValueError, "from elsewhere");
    PyObject *exc = PyErr_GetRaisedException();
    cr_assert_not_null(exc);
    cr_assert_eq(PyThreadState_SetAsyncExc(me, exc), 1);
    cr_assert_eq(Py_MakePendingCalls(), -1);
    PyObject *got = PyErr_GetRaisedException();
    cr_assert_eq(got, exc, "not the instance that was scheduled");
    cr_assert_str_eq(PyException_GetMessageUTF8(got), "from elsewhere");
    Py_DECREF(got);
    Py_DECREF(exc);

    cr_assert_null(PyThreadState_GetFrame(PyThreadState_Get()), "there are no frames");
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static struct {
    atomic_ulong ident;
    atomic_int ready, raised, matched;
} ax;

static void *
async_target(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&ax.ident, PyThread_get_thread_ident());
    atomic_store(&ax.ready, 1);
    int64_t deadline = test_now_ns() + (int64_t)POLL_MS * FT_NS_PER_MS * FT_TIMEOUT_SCALE;
    int rc = 0;
    while ((rc = PyErr_CheckSignals()) == 0 && test_now_ns() < deadline) {
        sched_yield();   /* a C loop reaching safe points */
    }
    atomic_store(&ax.raised, rc == -1);
    atomic_store(&ax.matched, rc == -1 && PyErr_ExceptionMatches(PyExc_ValueError));
    PyErr_Clear();
    PyGILState_Release(g);
    return NULL;
}

Test(tstate, set_async_exc_reaches_another_threads_safe_point, .timeout = FT_TIMEOUT(30))
{
    Py_InitializeEx(0);
    memset(&ax, 0, sizeof ax);
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(async_target, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&ax.ready), POLL_MS));
    PyEval_RestoreThread(save);
    cr_assert_eq(PyThreadState_SetAsyncExc(atomic_load(&ax.ident), PyExc_ValueError), 1);
    save = PyEval_SaveThread();
    test_join_thread(t);
    PyEval_RestoreThread(save);
    cr_assert(atomic_load(&ax.raised), "the other thread's PyErr_CheckSignals never failed");
    cr_assert(atomic_load(&ax.matched), "it raised something else than ValueError");
    cr_assert_null(PyErr_Occurred(), "the caller's own indicator was touched");
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static void
child_set_async_exc_detached(void)
{
    (void)PyThreadState_SetAsyncExc(1, PyExc_ValueError);
}

Test(tstate, set_async_exc_without_attached_state_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(child_set_async_exc_detached,
                      "Fatal Python error: PyThreadState_SetAsyncExc: "
                      "the function must be called with an attached thread state");
}
