/* Stop-the-world (core/tstate.c), white-box: ft_stop_the_world /
 * ft_start_the_world on the main interpreter.
 *
 * Covers scenarios D42 (attached threads at safe points end up SUSPENDED and
 * stay still until start), D43 (threads blocked detached do not hold a stop
 * up), D44 (a state registered during a stop starts SUSPENDED and cannot
 * attach until start; also while the stop is only pending), D45 (a thread
 * deleting its state while a stop is pending), D47 (attach while SUSPENDED
 * blocks until start, through RestoreThread, AcquireThread and Swap), a
 * thread without safe points holding a stop up until it reaches one,
 * back-to-back stops against threads attaching and detaching, two
 * requesters excluding each other, a requester with no attached state, and a
 * requester using safe points and detaching during its own stop.
 *
 * Also: the statistics (PyUnstable_StopTheWorld_*: counts by reason, the
 * threads stopped, histograms and percentiles, reset, reason names, NULL
 * arguments); the forward-progress guarantee (gh-151518: a thread waiting
 * to attach when a stop ends is attached by the restart itself), round by
 * round under a storm of back-to-back stops, its mechanism step by step,
 * and a granted thread meeting finalization; and ft_stop_the_world_all.
 *
 * In the GIL build ft_stop_the_world is a no-op: the requester holds the GIL,
 * which already keeps every other thread detached.  The tests that make
 * sense there assert that instead (others stay DETACHED, nothing advances,
 * an attach waits until the requester detaches); the rest skip.
 *
 * Helper threads only record into atomics; the test's main thread asserts.
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

#define POLL_MS 5000
/* How long "has not happened yet" is watched for: long enough that a broken
 * stop would usually be caught, short enough to keep the file fast.  These
 * sleeps are windows for a wrong outcome to show, never waits: what must
 * have happened before one is polled for first. */
#define QUIET_NS (30 * 1000000LL)

TestSuite(stw, .timeout = FT_TIMEOUT(30));

/* ---- helpers ------------------------------------------------------------ */

/* The state word's WAITING bit (ft_pystate.h, white-box): a SUSPENDED
 * word's owner waits in attach (a restart then hands it the state ATTACHED,
 * tagged with the restarted stop, until the owner claims it).  A state
 * suspended at a safe point carries exactly this bit. */

static uint64_t
unwaited(uint64_t w)
{
    return w & ~FT_TS_WAITING;
}

static uint64_t
stw_seq(PyInterpreterState *interp)
{
    return atomic_load(&interp->stw.seq);
}

/* States of interp other than `me` that are ATTACHED.  Works attached or
 * not (goes online for the walk). */
static int
attached_others(PyInterpreterState *interp, PyThreadState *me)
{
    bool online = ft_rcu_is_online();
    if (!online) {
        ft_rcu_ensure_registered();
        ft_rcu_online();
    }
    int n = 0;
    for (ft_tstate *t = ft_tstate_first(interp); t; t = ft_tstate_next(t)) {
        if (&t->base != me && FT_TS_KIND(atomic_load(&t->state)) == FT_TS_ATTACHED) {
            n++;
        }
    }
    if (!online) {
        ft_rcu_offline();
    }
    return n;
}

/* ---- spinners: attached threads counting, with or without safe points ------ */

#define MAX_SPIN 8

typedef struct spinner {
    PyThreadState *_Atomic ts;
    atomic_long counter;
    atomic_int safe_points;     /* call PyErr_CheckSignals each round */
    atomic_int stop;
    atomic_int done;
} spinner;

static void *
spin(void *arg)
{
    spinner *s = arg;
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    PyEval_RestoreThread(ts);
    atomic_store(&s->ts, ts);
    while (!atomic_load(&s->stop)) {
        atomic_fetch_add(&s->counter, 1);
        if (atomic_load(&s->safe_points)) {
            (void)PyErr_CheckSignals();
        }
    }
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    atomic_store(&s->done, 1);
    return NULL;
}

static void
start_spinners(spinner *s, pthread_t *t, int n, bool safe_points)
{
    for (int i = 0; i < n; i++) {
        atomic_store(&s[i].safe_points, safe_points);
        t[i] = test_start_thread(spin, &s[i]);
    }
    for (int i = 0; i < n; i++) {
        cr_assert(TEST_POLL_UNTIL(atomic_load(&s[i].counter) > 0, POLL_MS),
                  "spinner %d never ran", i);
    }
}

/* Call detached (GIL build: the spinners need the GIL to finish). */
static void
stop_spinners(spinner *s, pthread_t *t, int n)
{
    for (int i = 0; i < n; i++) {
        atomic_store(&s[i].stop, 1);
    }
    for (int i = 0; i < n; i++) {
        test_join_thread(t[i]);
        cr_assert(atomic_load(&s[i].done));
    }
}

/* The usual start: the runtime up, the main thread detached (its state
 * returned), n spinners attached and counting. */
static PyThreadState *
init_with_spinners(spinner *s, pthread_t *t, int n, bool safe_points)
{
    Py_Initialize();
    PyThreadState *me = PyEval_SaveThread();
    memset(s, 0, (size_t)n * sizeof *s);
    start_spinners(s, t, n, safe_points);
    return me;
}

/* The usual end, from the detached main thread: the spinners stopped, main
 * attached again with no other state left, the runtime finalized. */
static void
end_with_spinners(spinner *s, pthread_t *t, int n, PyThreadState *me)
{
    stop_spinners(s, t, n);
    PyEval_RestoreThread(me);
    cr_assert_eq(test_count_states(PyInterpreterState_Main()), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* Each spinner's counter before and after a QUIET_NS window. */
static void
watch_counters(spinner *s, int n, long *before, long *after)
{
    for (int i = 0; i < n; i++) {
        before[i] = atomic_load(&s[i].counter);
    }
    test_sleep_ns(QUIET_NS);
    for (int i = 0; i < n; i++) {
        after[i] = atomic_load(&s[i].counter);
    }
}

/* ---- D42 ------------------------------------------------------------------------ */

Test(stw, d42_stop_suspends_threads_at_safe_points, .timeout = FT_TIMEOUT(30))
{
    enum { N = 8 };
    spinner s[N];
    pthread_t t[N];
    PyThreadState *me = init_with_spinners(s, t, N, true);
    PyInterpreterState *interp = PyInterpreterState_Main();
    if (ft_free_threaded) {
        for (int i = 0; i < N; i++) {
            cr_assert(TEST_POLL_UNTIL(kind_of(atomic_load(&s[i].ts)) == FT_TS_ATTACHED, POLL_MS));
        }
    }
    PyEval_RestoreThread(me);

    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    uint64_t seq = stw_seq(interp);
    int kinds[N];
    uint64_t words[N];
    for (int i = 0; i < N; i++) {
        words[i] = word_of(atomic_load(&s[i].ts));
        kinds[i] = FT_TS_KIND(words[i]);
    }
    long c1[N], c2[N];
    watch_counters(s, N, c1, c2);
    int attached_during = attached_others(interp, me);
    int me_kind = kind_of(me);
    ft_start_the_world(interp);
    uint64_t seq_after = stw_seq(interp);

    for (int i = 0; i < N; i++) {
        if (ft_free_threaded) {
            cr_assert_eq(unwaited(words[i]), FT_TS_SUSPENDED_BY(seq),
                         "spinner %d is %s (tag %llu, stop %llu) when the stop returned", i,
                         kind_name(kinds[i]), (unsigned long long)FT_TS_TAG(unwaited(words[i])),
                         (unsigned long long)seq);
        }
        else {
            cr_assert_neq(kinds[i], FT_TS_ATTACHED, "GIL build: spinner %d attached while the "
                          "requester holds the GIL", i);
        }
        cr_assert_eq(c1[i], c2[i], "spinner %d advanced while the world was stopped", i);
    }
    cr_assert_eq(attached_during, 0);
    cr_assert_eq(me_kind, FT_TS_ATTACHED, "the requester suspended itself");
    if (ft_free_threaded) {
        cr_assert(seq & 1, "stw.seq %llu is even while stopped", (unsigned long long)seq);
        cr_assert_eq(seq_after, seq + 1);
        for (int i = 0; i < N; i++) {
            PyThreadState *ts = atomic_load(&s[i].ts);
            /* suspended at a safe point, so waiting to attach: the restart
             * attached them itself (and they never detach) */
            cr_assert(words[i] & FT_TS_WAITING, "spinner %d not marked waiting", i);
            cr_assert_eq(kind_of(ts), FT_TS_ATTACHED, "spinner %d is %s after the restart", i,
                         kind_name(kind_of(ts)));
            cr_assert_eq(breaker_of(ts) & FT_BREAK_PLEASE_STOP, 0,
                         "spinner %d still asked to stop", i);
        }
    }

    /* after start, everyone moves again */
    me = PyEval_SaveThread();
    for (int i = 0; i < N; i++) {
        cr_assert(TEST_POLL_UNTIL(atomic_load(&s[i].counter) > c2[i], POLL_MS),
                  "spinner %d did not resume", i);
    }
    end_with_spinners(s, t, N, me);
}

/* ---- D43 ------------------------------------------------------------------------ */

enum block_how { BLOCK_SLEEP, BLOCK_MUTEX, BLOCK_LEGACY };

typedef struct blocked {
    enum block_how how;
    PyMutex *mutex;
    PyThread_type_lock lock;
    atomic_int *release;
    PyThreadState *_Atomic ts;
    atomic_int stage;          /* 1: about to block; 2: through */
    atomic_int kind_after;
} blocked;

static void *
block_detached(void *arg)
{
    blocked *b = arg;
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    PyEval_RestoreThread(ts);
    atomic_store(&b->ts, ts);
    atomic_store(&b->stage, 1);
    switch (b->how) {
    case BLOCK_SLEEP:
        Py_BEGIN_ALLOW_THREADS
        test_wait_flag(b->release, 4 * POLL_MS);
        Py_END_ALLOW_THREADS
        break;
    case BLOCK_MUTEX:
        PyMutex_Lock(b->mutex);
        PyMutex_Unlock(b->mutex);
        break;
    case BLOCK_LEGACY:
        (void)PyThread_acquire_lock(b->lock, WAIT_LOCK);
        PyThread_release_lock(b->lock);
        break;
    }
    atomic_store(&b->kind_after, kind_of(ts));
    atomic_store(&b->stage, 2);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    return NULL;
}

/* words[i]: b[i]'s state word during stop `seq`, which stamped it SUSPENDED
 * (GIL build: still DETACHED; the stop is the GIL). */
static void
check_stopped_while_blocked(const blocked *b, const uint64_t *words, int n, uint64_t seq)
{
    for (int i = 0; i < n; i++) {
        if (ft_free_threaded) {
            cr_assert_eq(unwaited(words[i]), FT_TS_SUSPENDED_BY(seq), "thread %d (how %d) is %s", i,
                         b[i].how, kind_name(FT_TS_KIND(words[i])));
        }
        else {
            cr_assert_eq(FT_TS_KIND(words[i]), FT_TS_DETACHED);
        }
    }
}

Test(stw, d43_threads_blocked_detached_do_not_hold_up_a_stop, .timeout = FT_TIMEOUT(30))
{
    enum { N = 8 };
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyMutex mutex = {0};
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    atomic_int release = 0;
    PyMutex_Lock(&mutex);
    cr_assert_eq(PyThread_acquire_lock(lock, NOWAIT_LOCK), 1);
    PyThreadState *me = PyEval_SaveThread();

    blocked b[N];
    pthread_t t[N];
    memset(b, 0, sizeof b);
    for (int i = 0; i < N; i++) {
        b[i].how = i < 3 ? BLOCK_SLEEP : i < 6 ? BLOCK_MUTEX : BLOCK_LEGACY;
        b[i].mutex = &mutex;
        b[i].lock = lock;
        b[i].release = &release;
        t[i] = test_start_thread(block_detached, &b[i]);
    }
    for (int i = 0; i < N; i++) {
        cr_assert(TEST_POLL_UNTIL(atomic_load(&b[i].stage) == 1, POLL_MS));
        cr_assert(TEST_POLL_UNTIL(kind_of(atomic_load(&b[i].ts)) == FT_TS_DETACHED, POLL_MS),
                  "thread %d (how %d) not detached while blocked", i, b[i].how);
    }

    PyEval_RestoreThread(me);
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);   /* must return: nothing here may block it */
    uint64_t seq = stw_seq(interp);
    uint64_t words[N];
    for (int i = 0; i < N; i++) {
        words[i] = word_of(atomic_load(&b[i].ts));
    }
    ft_start_the_world(interp);
    check_stopped_while_blocked(b, words, N, seq);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&b[i].stage), 1);
    }
    /* A second stop, and everything they wait for is released while it is
     * in force: they get their locks (or wake) but must not attach until the
     * world restarts (GIL build: until the requester lets the GIL go). */
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    seq = stw_seq(interp);
    atomic_store(&release, 1);
    PyMutex_Unlock(&mutex);
    PyThread_release_lock(lock);
    test_sleep_ns(QUIET_NS);
    int through = 0;
    for (int i = 0; i < N; i++) {
        through += atomic_load(&b[i].stage) == 2;
        words[i] = word_of(atomic_load(&b[i].ts));
    }
    int attached = attached_others(interp, me);
    ft_start_the_world(interp);
    cr_assert_eq(through, 0, "%d threads attached while the world was stopped", through);
    cr_assert_eq(attached, 0);
    check_stopped_while_blocked(b, words, N, seq);

    me = PyEval_SaveThread();
    for (int i = 0; i < N; i++) {
        cr_assert(TEST_POLL_UNTIL(atomic_load(&b[i].stage) == 2, POLL_MS),
                  "thread %d (how %d) never got through after the world restarted", i, b[i].how);
        test_join_thread(t[i]);
        cr_assert_eq(atomic_load(&b[i].kind_after), FT_TS_ATTACHED);
    }
    PyThread_free_lock(lock);
    PyEval_RestoreThread(me);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- attaching a state that is (or starts) SUSPENDED: D44, D47 ------------------------- */

enum attach_how { ATTACH_RESTORE, ATTACH_ACQUIRE, ATTACH_SWAP };

typedef struct attacher {
    enum attach_how how;
    PyThreadState *_Atomic ts;  /* given, or NULL: create one after `go` */
    atomic_int go;
    atomic_int created_kind;    /* kind of the state it created, +1 (0 = not yet) */
    atomic_ullong created_word;
    atomic_int stage;           /* 1: about to attach; 2: attached */
    atomic_int errno_ok;
    atomic_int current_ok;
} attacher;

static void *
attach_when_told(void *arg)
{
    attacher *a = arg;
    test_wait_flag(&a->go, 4 * POLL_MS);
    PyThreadState *ts = atomic_load(&a->ts);
    if (!ts) {
        ts = PyThreadState_New(PyInterpreterState_Main());
        atomic_store(&a->ts, ts);
        atomic_store(&a->created_word, word_of(ts));
        atomic_store(&a->created_kind, kind_of(ts) + 1);
    }
    atomic_store(&a->stage, 1);
    errno = ENOENT;
    switch (a->how) {
    case ATTACH_RESTORE:
        PyEval_RestoreThread(ts);
        break;
    case ATTACH_ACQUIRE:
        PyEval_AcquireThread(ts);
        break;
    case ATTACH_SWAP:
        (void)PyThreadState_Swap(ts);
        break;
    }
    atomic_store(&a->errno_ok, errno == ENOENT);
    atomic_store(&a->current_ok,
                 PyThreadState_GetUnchecked() == ts && kind_of(ts) == FT_TS_ATTACHED);
    atomic_store(&a->stage, 2);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    return NULL;
}

/* Main is attached and has stopped the world; the attachers are blocked (or
 * about to be).  Check they stay blocked, restart the world, check they get
 * through: at once in the free-threaded build, once main detaches with the
 * GIL.  Leaves main detached; returns its state. */
static PyThreadState *
restart_and_release(PyInterpreterState *interp, attacher *a, pthread_t *t, int n)
{
    PyThreadState *me = PyThreadState_Get();
    for (int i = 0; i < n; i++) {
        cr_assert(TEST_POLL_UNTIL(atomic_load(&a[i].stage) >= 1, POLL_MS));
    }
    test_sleep_ns(QUIET_NS);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(atomic_load(&a[i].stage), 1,
                     "attacher %d (how %d) attached while the world was stopped", i, a[i].how);
        PyThreadState *ts = atomic_load(&a[i].ts);
        if (ft_free_threaded) {
            cr_assert_eq(kind_of(ts), FT_TS_SUSPENDED, "attacher %d: %s", i,
                         kind_name(kind_of(ts)));
        }
        else {
            cr_assert_eq(kind_of(ts), FT_TS_DETACHED);
        }
    }
    /* Interrupt their waits (a handler without SA_RESTART, as Python's):
     * the attach must go back to waiting, and errno must survive. */
    struct sigaction old_sa;
    test_install_sigusr1_without_restart(&old_sa);
    int sent_before = atomic_load(&test_sigusr1_count);
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < n; i++) {
            cr_assert_eq(pthread_kill(t[i], SIGUSR1), 0);
        }
        test_sleep_ns(1000000);   /* spaces the rounds: not a wait (polled below) */
    }
    cr_assert(TEST_POLL_UNTIL(atomic_load(&test_sigusr1_count) > sent_before, POLL_MS),
              "the signals were not delivered");
    for (int i = 0; i < n; i++) {
        cr_assert_eq(atomic_load(&a[i].stage), 1,
                     "attacher %d (how %d) attached after a signal, world stopped", i, a[i].how);
    }
    ft_start_the_world(interp);
    if (ft_free_threaded) {
        for (int i = 0; i < n; i++) {
            cr_assert(TEST_POLL_UNTIL(atomic_load(&a[i].stage) == 2, POLL_MS),
                      "attacher %d (how %d) still blocked after the world restarted", i,
                      a[i].how);
        }
    }
    else {
        test_sleep_ns(QUIET_NS);
        for (int i = 0; i < n; i++) {
            cr_assert_eq(atomic_load(&a[i].stage), 1, "GIL build: attacher %d attached while "
                         "the requester holds the GIL", i);
        }
    }
    cr_assert_eq(PyThreadState_GetUnchecked(), me);
    me = PyEval_SaveThread();
    for (int i = 0; i < n; i++) {
        cr_assert(TEST_POLL_UNTIL(atomic_load(&a[i].stage) == 2, POLL_MS),
                  "attacher %d never attached", i);
        test_join_thread(t[i]);
        cr_assert(atomic_load(&a[i].errno_ok), "attacher %d: errno not preserved", i);
        cr_assert(atomic_load(&a[i].current_ok), "attacher %d: not the current state", i);
    }
    return me;
}

/* D44 and "a thread registering while a stop is requested ends up
 * suspended": states made during a stop, by the requester and by other
 * threads, start SUSPENDED and attach only after start. */
Test(stw, d44_state_created_during_stop_starts_suspended, .timeout = FT_TIMEOUT(30))
{
    enum { N = 4 };
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    attacher a[N];
    pthread_t t[N];
    memset(a, 0, sizeof a);
    for (int i = 0; i < N; i++) {
        a[i].how = (enum attach_how)(i % 3);
        t[i] = test_start_thread(attach_when_told, &a[i]);
    }

    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    uint64_t seq = stw_seq(interp);
    /* made by the requester */
    PyThreadState *made = PyThreadState_New(interp);
    cr_assert_not_null(made);
    uint64_t w = word_of(made);
    if (ft_free_threaded) {
        cr_assert_eq(w, FT_TS_SUSPENDED_BY(seq), "a state made during a stop is %s",
                     kind_name(FT_TS_KIND(w)));
    }
    else {
        cr_assert_eq(w, FT_TS_DETACHED);
    }
    atomic_store(&a[0].ts, made);
    /* the others make their own, during the stop */
    for (int i = 0; i < N; i++) {
        atomic_store(&a[i].go, 1);
    }
    for (int i = 1; i < N; i++) {
        cr_assert(TEST_POLL_UNTIL(atomic_load(&a[i].created_kind) != 0, POLL_MS));
        uint64_t cw = atomic_load(&a[i].created_word);
        if (ft_free_threaded) {
            cr_assert_eq(cw, FT_TS_SUSPENDED_BY(seq), "thread %d registered during a stop: %s",
                         i, kind_name(FT_TS_KIND(cw)));
        }
        else {
            cr_assert_eq(cw, FT_TS_DETACHED);
        }
    }
    PyThreadState *me = restart_and_release(interp, a, t, N);
    PyEval_RestoreThread(me);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* D47: a state that was DETACHED when the stop began is SUSPENDED; attaching
 * it (any of the three ways) blocks until start, errno preserved. */
Test(stw, d47_attach_while_suspended_blocks_until_start, .timeout = FT_TIMEOUT(30))
{
    enum { N = 3 };
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    attacher a[N];
    pthread_t t[N];
    memset(a, 0, sizeof a);
    for (int i = 0; i < N; i++) {
        a[i].how = (enum attach_how)i;
        PyThreadState *ts = PyThreadState_New(interp);
        cr_assert_not_null(ts);
        atomic_store(&a[i].ts, ts);
        t[i] = test_start_thread(attach_when_told, &a[i]);
    }
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    uint64_t seq = stw_seq(interp);
    for (int i = 0; i < N; i++) {
        uint64_t w = word_of(atomic_load(&a[i].ts));
        if (ft_free_threaded) {
            cr_assert_eq(w, FT_TS_SUSPENDED_BY(seq), "detached state %d is %s during a stop", i,
                         kind_name(FT_TS_KIND(w)));
        }
        atomic_store(&a[i].go, 1);
    }
    PyThreadState *me = restart_and_release(interp, a, t, N);
    PyEval_RestoreThread(me);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- a requester thread, for stops that cannot complete yet ----------------------- */

typedef struct requester {
    atomic_int attach;          /* attach a state of its own first */
    atomic_int stopped;         /* ft_stop_the_world returned */
    atomic_int release;         /* main says: start the world */
    atomic_int done;
    PyThreadState *watch;       /* a spinner state to look at once stopped */
    atomic_int watch_kind;
    atomic_long watch_counter;
    atomic_long *counter;
    atomic_int counter_moved;   /* the spinner advanced while stopped */
} requester;

static void *
request_stop(void *arg)
{
    requester *r = arg;
    PyThreadState *ts = NULL;
    if (atomic_load(&r->attach)) {
        ts = PyThreadState_New(PyInterpreterState_Main());
        PyEval_RestoreThread(ts);   /* GIL build: this is where it waits */
    }
    ft_stop_the_world(PyInterpreterState_Main(), PyUnstable_STOP_OTHER);
    if (r->watch) {
        atomic_store(&r->watch_kind, kind_of(r->watch));
    }
    long c = r->counter ? atomic_load(r->counter) : 0;
    atomic_store(&r->stopped, 1);
    test_wait_flag(&r->release, 4 * POLL_MS);
    if (r->counter && atomic_load(r->counter) != c) {
        atomic_store(&r->counter_moved, 1);
    }
    ft_start_the_world(PyInterpreterState_Main());
    if (ts) {
        PyThreadState_Clear(ts);
        PyThreadState_DeleteCurrent();
    }
    atomic_store(&r->done, 1);
    return NULL;
}

/* Starts a requester (with a state of its own); once stopped it looks at
 * `watch` and `counter` when given. */
static pthread_t
start_requester(requester *r, PyThreadState *watch, atomic_long *counter)
{
    memset(r, 0, sizeof *r);
    atomic_store(&r->attach, 1);
    r->watch = watch;
    r->counter = counter;
    return test_start_thread(request_stop, r);
}

/* True once the requester has asked ts (attached, no safe point) to stop:
 * the stop request (free-threaded) or the GIL drop request (GIL build). */
static bool
asked_to_stop(PyInterpreterState *interp, PyThreadState *ts)
{
    if (ft_free_threaded) {
        return (stw_seq(interp) & 1) && (breaker_of(ts) & FT_BREAK_PLEASE_STOP);
    }
    return breaker_of(ts) & FT_BREAK_GIL_DROP;
}

/* A thread attached in a loop without safe points holds the stop up until it
 * reaches one. */
Test(stw, thread_without_safe_points_holds_up_the_stop, .timeout = FT_TIMEOUT(30))
{
    spinner s;
    pthread_t st;
    PyThreadState *me = init_with_spinners(&s, &st, 1, false);
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *sts = atomic_load(&s.ts);

    requester r;
    pthread_t rt = start_requester(&r, sts, &s.counter);
    cr_assert(TEST_POLL_UNTIL(asked_to_stop(interp, sts), POLL_MS),
              "the requester never asked the spinner to stop");
    test_sleep_ns(QUIET_NS);
    cr_assert_eq(atomic_load(&r.stopped), 0,
                 "the stop completed while a thread was attached without a safe point");
    cr_assert_eq(kind_of(sts), FT_TS_ATTACHED);
    long c = atomic_load(&s.counter);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&s.counter) > c, POLL_MS), "the spinner is not running");

    /* let it reach safe points */
    atomic_store(&s.safe_points, 1);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&r.stopped), POLL_MS),
              "the stop never completed after the spinner reached a safe point");
    int k = atomic_load(&r.watch_kind);
    cr_assert_eq(k, ft_free_threaded ? FT_TS_SUSPENDED : FT_TS_DETACHED, "spinner was %s",
                 kind_name(k));
    atomic_store(&r.release, 1);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&r.done), POLL_MS));
    test_join_thread(rt);
    cr_assert_eq(atomic_load(&r.counter_moved), 0, "the spinner ran while the world was stopped");
    c = atomic_load(&s.counter);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&s.counter) > c, POLL_MS), "the spinner did not resume");
    end_with_spinners(&s, &st, 1, me);
}

/* D45: a thread that deletes its state while a stop waits for it. */
typedef struct deleter {
    PyThreadState *_Atomic ts;
    atomic_int go;
    atomic_int done;
    bool just_exit;             /* exit with the state attached instead */
} deleter;

static void *
delete_when_told(void *arg)
{
    deleter *d = arg;
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    PyEval_RestoreThread(ts);
    atomic_store(&d->ts, ts);
    test_wait_flag(&d->go, 4 * POLL_MS);   /* attached, no safe point */
    if (!d->just_exit) {
        PyThreadState_Clear(ts);
        PyThreadState_DeleteCurrent();
    }
    atomic_store(&d->done, 1);
    return NULL;
}

static void
check_thread_leaving_during_a_pending_stop(bool just_exit)
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *me = PyEval_SaveThread();
    deleter d;
    memset(&d, 0, sizeof d);
    d.just_exit = just_exit;
    pthread_t dt = test_start_thread(delete_when_told, &d);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&d.ts) != NULL, POLL_MS));
    PyThreadState *dts = atomic_load(&d.ts);

    requester r;
    pthread_t rt = start_requester(&r, NULL, NULL);
    cr_assert(TEST_POLL_UNTIL(asked_to_stop(interp, dts), POLL_MS),
              "the requester never asked the thread to stop");
    test_sleep_ns(QUIET_NS);
    cr_assert_eq(atomic_load(&r.stopped), 0);
    atomic_store(&d.go, 1);   /* it deletes its state (or exits) instead of stopping */
    cr_assert(TEST_POLL_UNTIL(atomic_load(&r.stopped), POLL_MS),
              "the stop kept waiting for a thread that %s",
              just_exit ? "exited attached" : "deleted its state");
    cr_assert(TEST_POLL_UNTIL(atomic_load(&d.done), POLL_MS));
    test_join_thread(dt);
    if (just_exit && ft_free_threaded) {
        /* the exit detached it; the stop in force then stamped it */
        cr_assert_eq(kind_of(dts), FT_TS_SUSPENDED, "state of the exited thread: %s",
                     kind_name(kind_of(dts)));
    }
    atomic_store(&r.release, 1);
    test_join_thread(rt);
    cr_assert(atomic_load(&r.done));
    PyEval_RestoreThread(me);
    if (just_exit) {
        cr_assert_eq(kind_of(dts), FT_TS_DETACHED);
        PyThreadState_Clear(dts);
        PyThreadState_Delete(dts);
    }
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(stw, d45_thread_deleting_its_state_during_a_pending_stop, .timeout = FT_TIMEOUT(30))
{
    check_thread_leaving_during_a_pending_stop(false);
}

Test(stw, thread_exiting_attached_during_a_pending_stop, .timeout = FT_TIMEOUT(30))
{
    check_thread_leaving_during_a_pending_stop(true);
}

/* Registering while a stop is requested but not yet in force. */
Test(stw, state_created_while_stop_pending_is_suspended, .timeout = FT_TIMEOUT(30))
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: there is no pending stop (the requester waits for the GIL)");
    }
    spinner s;
    pthread_t st;
    PyThreadState *me = init_with_spinners(&s, &st, 1, false);
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *sts = atomic_load(&s.ts);
    requester r;
    pthread_t rt = start_requester(&r, NULL, NULL);
    cr_assert(TEST_POLL_UNTIL(asked_to_stop(interp, sts), POLL_MS));
    cr_assert_eq(atomic_load(&r.stopped), 0);
    uint64_t seq = stw_seq(interp);

    /* made while the requester still waits for the spinner */
    PyThreadState *made = PyThreadState_New(interp);
    cr_assert_not_null(made);
    uint64_t w = word_of(made);
    int stopped_then = atomic_load(&r.stopped);
    cr_assert_eq(stopped_then, 0, "the stop completed too early for this test");
    cr_assert_eq(w, FT_TS_SUSPENDED_BY(seq), "a state made during a pending stop is %s",
                 kind_name(FT_TS_KIND(w)));

    /* attaching it waits for the world to restart */
    attacher a;
    memset(&a, 0, sizeof a);
    a.how = ATTACH_RESTORE;
    atomic_store(&a.ts, made);
    atomic_store(&a.go, 1);
    pthread_t at = test_start_thread(attach_when_told, &a);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&a.stage) >= 1, POLL_MS));
    test_sleep_ns(QUIET_NS);
    cr_assert_eq(atomic_load(&a.stage), 1, "attached during a pending stop");

    atomic_store(&s.safe_points, 1);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&r.stopped), POLL_MS));
    cr_assert_eq(atomic_load(&a.stage), 1, "attached while the world was stopped");
    cr_assert_eq(kind_of(made), FT_TS_SUSPENDED);
    atomic_store(&r.release, 1);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&a.stage) == 2, POLL_MS), "never attached after start");
    test_join_thread(at);
    cr_assert(atomic_load(&a.current_ok));
    cr_assert(atomic_load(&a.errno_ok));
    test_join_thread(rt);
    end_with_spinners(&s, &st, 1, me);
}

/* ---- a requester with no attached state ------------------------------------------- */

Test(stw, stop_with_requester_detached, .timeout = FT_TIMEOUT(30))
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: the no-op stop relies on the caller holding the GIL");
    }
    enum { N = 4 };
    spinner s[N];
    pthread_t t[N];
    PyThreadState *me = init_with_spinners(s, t, N, true);
    PyInterpreterState *interp = PyInterpreterState_Main();
    for (int round = 0; round < 3; round++) {
        cr_assert_null(PyThreadState_GetUnchecked());
        ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
        uint64_t seq = stw_seq(interp);
        uint64_t words[N];
        for (int i = 0; i < N; i++) {
            words[i] = word_of(atomic_load(&s[i].ts));
        }
        uint64_t mine = word_of(me);
        long c1[N], c2[N];
        watch_counters(s, N, c1, c2);
        int attached = attached_others(interp, NULL);
        ft_start_the_world(interp);
        cr_assert_eq(attached, 0);
        for (int i = 0; i < N; i++) {
            cr_assert_eq(unwaited(words[i]), FT_TS_SUSPENDED_BY(seq), "round %d: spinner %d is %s", round,
                         i, kind_name(FT_TS_KIND(words[i])));
            cr_assert_eq(c1[i], c2[i], "round %d: spinner %d ran while stopped", round, i);
        }
        /* the requester's own detached state is stopped like any other */
        cr_assert_eq(mine, FT_TS_SUSPENDED_BY(seq), "round %d: main state %s", round,
                     kind_name(FT_TS_KIND(mine)));
        cr_assert_eq(kind_of(me), FT_TS_DETACHED, "start left the requester's state %s",
                     kind_name(kind_of(me)));
        for (int i = 0; i < N; i++) {
            cr_assert(TEST_POLL_UNTIL(atomic_load(&s[i].counter) > c2[i], POLL_MS),
                      "round %d: spinner %d did not resume", round, i);
        }
        /* and it can attach afterwards */
        PyEval_RestoreThread(me);
        me = PyEval_SaveThread();
    }
    end_with_spinners(s, t, N, me);
}

/* The requester may reach safe points and detach during its own stop. */
Test(stw, requester_safe_points_and_detach_during_its_stop, .timeout = FT_TIMEOUT(30))
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: detaching hands the GIL to the others; nothing is stopped");
    }
    enum { N = 2 };
    spinner s[N];
    pthread_t t[N];
    PyThreadState *me = init_with_spinners(s, t, N, true);
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyEval_RestoreThread(me);

    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    uint64_t seq = stw_seq(interp);
    long c[N];
    for (int i = 0; i < N; i++) {
        c[i] = atomic_load(&s[i].counter);
    }
    (void)PyErr_CheckSignals();
    (void)Py_MakePendingCalls();
    int k1 = kind_of(me);
    Py_BEGIN_ALLOW_THREADS
    test_sleep_ns(QUIET_NS / 3);
    Py_END_ALLOW_THREADS
    int k2 = kind_of(me);
    PyThreadState *cur = PyThreadState_GetUnchecked();
    PyMutex m = {0};
    PyMutex_Lock(&m);
    PyMutex_Unlock(&m);
    uint64_t words[N];
    long c2[N];
    for (int i = 0; i < N; i++) {
        words[i] = word_of(atomic_load(&s[i].ts));
        c2[i] = atomic_load(&s[i].counter);
    }
    uint64_t seq2 = stw_seq(interp);
    ft_start_the_world(interp);

    cr_assert_eq(k1, FT_TS_ATTACHED, "the requester suspended itself at a safe point");
    cr_assert_eq(k2, FT_TS_ATTACHED);
    cr_assert_eq(cur, me);
    cr_assert_eq(seq2, seq, "the stop ended while the requester detached");
    for (int i = 0; i < N; i++) {
        cr_assert_eq(unwaited(words[i]), FT_TS_SUSPENDED_BY(seq));
        cr_assert_eq(c[i], c2[i], "spinner %d ran while the requester was detached", i);
    }
    me = PyEval_SaveThread();
    stop_spinners(s, t, N);
    PyEval_RestoreThread(me);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- many stops --------------------------------------------------------------------- */

#define CHURN_WORKERS 4
#define MIN_WORKER_ITERS 200

typedef struct churn {
    atomic_int stop;
    atomic_long iters[CHURN_WORKERS];
    atomic_int done[CHURN_WORKERS];
    atomic_long bad;
    atomic_int next_index;
} churn;

static void *
churn_worker(void *arg)
{
    churn *c = arg;
    int me = atomic_fetch_add(&c->next_index, 1);
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *ts = PyThreadState_New(interp);
    for (long i = 0; !atomic_load(&c->stop) || i < MIN_WORKER_ITERS; i++) {
        PyEval_RestoreThread(ts);
        if (PyThreadState_GetUnchecked() != ts || kind_of(ts) != FT_TS_ATTACHED) {
            atomic_fetch_add(&c->bad, 1);
        }
        if (i % 2) {
            (void)PyErr_CheckSignals();
        }
        if (i % 16 == 15) {
            /* a fresh state now and then: registration races the stops */
            PyThreadState_Clear(ts);
            PyThreadState_DeleteCurrent();
            ts = PyThreadState_New(interp);
        }
        else if (PyEval_SaveThread() != ts) {
            atomic_fetch_add(&c->bad, 1);
        }
        atomic_store(&c->iters[me], i + 1);
    }
    PyThreadState_Clear(ts);
    PyThreadState_Delete(ts);
    atomic_store(&c->done[me], 1);
    return NULL;
}

Test(stw, back_to_back_stops_while_threads_attach_and_detach, .timeout = FT_TIMEOUT(60))
{
    enum { STOPS = 200 };
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *me = PyEval_SaveThread();
    churn *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    pthread_t t[CHURN_WORKERS];
    for (int i = 0; i < CHURN_WORKERS; i++) {
        t[i] = test_start_thread(churn_worker, c);
    }
    for (int i = 0; i < CHURN_WORKERS; i++) {
        cr_assert(TEST_POLL_UNTIL(atomic_load(&c->iters[i]) > 0, POLL_MS));
    }
    int attached_violations = 0, self_violations = 0;
    for (int k = 0; k < STOPS; k++) {
        bool attached = k % 2 == 0 || !ft_free_threaded;
        if (attached) {
            PyEval_RestoreThread(me);
        }
        ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
        attached_violations += attached_others(interp, attached ? me : NULL) != 0;
        if (ft_free_threaded) {
            int want = attached ? FT_TS_ATTACHED : FT_TS_SUSPENDED;
            self_violations += kind_of(me) != want;
        }
        ft_start_the_world(interp);
        if (attached) {
            me = PyEval_SaveThread();
        }
    }
    atomic_store(&c->stop, 1);
    for (int i = 0; i < CHURN_WORKERS; i++) {
        test_join_thread(t[i]);
    }
    for (int i = 0; i < CHURN_WORKERS; i++) {
        cr_assert(atomic_load(&c->done[i]), "worker %d did not finish", i);
    }
    cr_assert_eq(attached_violations, 0, "%d stops returned with another state attached",
                 attached_violations);
    cr_assert_eq(self_violations, 0);
    cr_assert_eq(atomic_load(&c->bad), 0);
    cr_log_info("worker iterations: %ld %ld %ld %ld", atomic_load(&c->iters[0]),
                atomic_load(&c->iters[1]), atomic_load(&c->iters[2]), atomic_load(&c->iters[3]));
    free(c);
    PyEval_RestoreThread(me);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* Two threads stopping the world over and over: never both at once, and
 * neither finds another state attached. */
typedef struct duel {
    atomic_int in_stop;
    atomic_int overlaps;
    atomic_int violations;
    atomic_int rounds_done;
} duel;

#define DUEL_ROUNDS 100

/* A requester: global (every interpreter) or this interpreter's stops. */
typedef struct mixed_duel {
    duel *d;                    /* shared by all the requesters */
    bool global;
} mixed_duel;

static void *
mixed_requester(void *arg)
{
    mixed_duel *m = arg;
    duel *d = m->d;
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *ts = PyThreadState_New(interp);
    PyEval_RestoreThread(ts);
    for (int k = 0; k < DUEL_ROUNDS; k++) {
        if (m->global) {
            ft_stop_the_world_all(PyUnstable_STOP_OTHER);
        }
        else {
            ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
        }
        if (atomic_fetch_add(&d->in_stop, 1) != 0) {
            atomic_fetch_add(&d->overlaps, 1);
        }
        if (attached_others(interp, ts) != 0) {
            atomic_fetch_add(&d->violations, 1);
        }
        atomic_fetch_sub(&d->in_stop, 1);
        if (m->global) {
            ft_start_the_world_all();
        }
        else {
            ft_start_the_world(interp);
        }
        (void)PyErr_CheckSignals();
        atomic_fetch_add(&d->rounds_done, 1);
    }
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    return NULL;
}

/* n requesters (global[i]: which kind) stop and start the world over and
 * over while two threads spin attached. */
static void
run_duel(const bool *global, int n)
{
    enum { N = 2, MAX_REQUESTERS = 3 };
    cr_assert_leq(n, MAX_REQUESTERS);
    spinner s[N];
    pthread_t st[N];
    PyThreadState *me = init_with_spinners(s, st, N, true);
    PyInterpreterState *interp = PyInterpreterState_Main();
    static duel d;
    memset(&d, 0, sizeof d);
    mixed_duel m[MAX_REQUESTERS];
    pthread_t r[MAX_REQUESTERS];
    for (int i = 0; i < n; i++) {
        m[i] = (mixed_duel){ &d, global[i] };
        r[i] = test_start_thread(mixed_requester, &m[i]);
    }
    for (int i = 0; i < n; i++) {
        test_join_thread(r[i]);
    }
    stop_spinners(s, st, N);
    cr_assert_eq(atomic_load(&d.rounds_done), n * DUEL_ROUNDS);
    cr_assert_eq(atomic_load(&d.overlaps), 0, "two stops in force at once");
    cr_assert_eq(atomic_load(&d.violations), 0, "a stop returned with another state attached");
    PyEval_RestoreThread(me);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(stw, two_requesters_exclude_each_other, .timeout = FT_TIMEOUT(60))
{
    run_duel((const bool[]){ false, false }, 2);
}

/* ---- suspensions and deletion ------------------------------------------------------- */

/* A suspension stamped by a stop that has ended is stale: the owner clears
 * it itself when it attaches, instead of waiting for a start that already
 * happened. */
Test(stw, stale_suspension_is_cleared_by_the_owner, .timeout = FT_TIMEOUT(30))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *ts = PyThreadState_New(interp);
    cr_assert_not_null(ts);
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    uint64_t old = stw_seq(interp);
    ft_start_the_world(interp);
    if (!ft_free_threaded) {
        old = 1;   /* no stop ever runs: any odd tag is not the current one */
    }
    cr_assert(old & 1);
    cr_assert_neq(stw_seq(interp), old);
    cr_assert_eq(kind_of(ts), FT_TS_DETACHED);
    atomic_store(&ft_ts(ts)->state, FT_TS_SUSPENDED_BY(old));

    attacher a;
    memset(&a, 0, sizeof a);
    a.how = ATTACH_RESTORE;
    atomic_store(&a.ts, ts);
    atomic_store(&a.go, 1);
    PyThreadState *me = PyEval_SaveThread();
    pthread_t t = test_start_thread(attach_when_told, &a);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&a.stage) == 2, POLL_MS),
              "attaching a state with a stale suspension blocked (state %s)",
              kind_name(kind_of(ts)));
    test_join_thread(t);
    cr_assert(atomic_load(&a.current_ok));
    cr_assert(atomic_load(&a.errno_ok));
    PyEval_RestoreThread(me);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* A detached thread deletes its own state while the world is stopped (the
 * state is SUSPENDED): no wait, no fatal error, and the stop and the next one
 * are unaffected. */
typedef struct suspended_deleter {
    PyThreadState *_Atomic ts;
    atomic_int go;
    atomic_int done;
} suspended_deleter;

static void *
delete_own_detached_state(void *arg)
{
    suspended_deleter *d = arg;
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    PyEval_RestoreThread(ts);
    PyEval_SaveThread();
    atomic_store(&d->ts, ts);
    test_wait_flag(&d->go, 4 * POLL_MS);
    PyThreadState_Clear(ts);
    PyThreadState_Delete(ts);
    atomic_store(&d->done, 1);
    return NULL;
}

Test(stw, suspended_state_deleted_during_stop, .timeout = FT_TIMEOUT(30))
{
    enum { N = 3 };
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *me = PyEval_SaveThread();
    suspended_deleter d[N];
    pthread_t t[N];
    memset(d, 0, sizeof d);
    for (int i = 0; i < N; i++) {
        t[i] = test_start_thread(delete_own_detached_state, &d[i]);
    }
    for (int i = 0; i < N; i++) {
        cr_assert(TEST_POLL_UNTIL(atomic_load(&d[i].ts) != NULL, POLL_MS));
    }
    PyEval_RestoreThread(me);
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    for (int i = 0; i < N; i++) {
        if (ft_free_threaded) {
            cr_assert_eq(kind_of(atomic_load(&d[i].ts)), FT_TS_SUSPENDED);
        }
        atomic_store(&d[i].go, 1);
    }
    bool all_done = TEST_POLL_UNTIL(atomic_load(&d[0].done) && atomic_load(&d[1].done) &&
                                        atomic_load(&d[2].done),
                                    POLL_MS);
    int left = test_count_states(interp);
    ft_start_the_world(interp);
    cr_assert(all_done, "deleting a suspended state waited for the world to restart");
    cr_assert_eq(left, 1, "%d states registered after the deletions", left);
    for (int i = 0; i < N; i++) {
        test_join_thread(t[i]);
    }
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    ft_start_the_world(interp);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- statistics ------------------------------------------------------------------------ */

static PyUnstable_StopTheWorldStats
get_stats(PyInterpreterState *interp)
{
    PyUnstable_StopTheWorldStats st;
    memset(&st, 0xAB, sizeof st);
    cr_assert_eq(PyUnstable_StopTheWorld_GetStats(interp, &st), 0);
    return st;
}

static uint64_t
hist_sum(const uint64_t *hist)
{
    uint64_t n = 0;
    for (int k = 0; k < PyUnstable_STOP_HIST_BUCKETS; k++) {
        n += hist[k];
    }
    return n;
}

/* The bucket a duration must land in, by the header's definition. */
static int
expected_bucket(uint64_t ns)
{
    int k = 0;
    while (k < PyUnstable_STOP_HIST_BUCKETS - 1 && ns >= ((uint64_t)2 << k)) {
        k++;
    }
    return k;
}

static bool
stats_all_zero(const PyUnstable_StopTheWorldStats *st)
{
    static const PyUnstable_StopTheWorldStats zero;
    return memcmp(st, &zero, sizeof zero) == 0;
}

/* Percentiles read off one histogram: monotone in p, never below the bucket
 * of the smallest sample, and above the maximum (exclusive bounds). */
static void
check_percentiles(const uint64_t *hist, uint64_t max_ns, const char *what)
{
    uint64_t p50 = PyUnstable_StopTheWorld_Percentile(hist, 50);
    uint64_t p90 = PyUnstable_StopTheWorld_Percentile(hist, 90);
    uint64_t p99 = PyUnstable_StopTheWorld_Percentile(hist, 99);
    uint64_t p100 = PyUnstable_StopTheWorld_Percentile(hist, 100);
    cr_assert(p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= p100,
              "%s: percentiles not monotone: %llu %llu %llu %llu", what,
              (unsigned long long)p50, (unsigned long long)p90, (unsigned long long)p99,
              (unsigned long long)p100);
    cr_assert_gt(p100, max_ns, "%s: p100 %llu <= max %llu", what, (unsigned long long)p100,
                 (unsigned long long)max_ns);
}

Test(stw, stats_count_stops_by_reason_and_threads, .timeout = FT_TIMEOUT(30))
{
    enum { K = 3, N_GC = 5, N_OTHER = 3 };
    spinner s[K];
    pthread_t t[K];
    PyThreadState *me = init_with_spinners(s, t, K, true);
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyEval_RestoreThread(me);
    PyUnstable_StopTheWorld_ResetStats(interp);
    PyUnstable_StopTheWorldStats st0 = get_stats(interp);
    cr_assert(stats_all_zero(&st0), "ResetStats left counters");

    for (int i = 0; i < N_GC + N_OTHER; i++) {
        if (ft_free_threaded) {
            /* each stop really has K attached threads to stop */
            for (int j = 0; j < K; j++) {
                cr_assert(TEST_POLL_UNTIL(kind_of(atomic_load(&s[j].ts)) == FT_TS_ATTACHED,
                                          POLL_MS));
            }
        }
        ft_stop_the_world(interp, i < N_GC ? PyUnstable_STOP_GC : PyUnstable_STOP_OTHER);
        ft_start_the_world(interp);
    }
    PyUnstable_StopTheWorldStats st = get_stats(interp);
    if (!ft_free_threaded) {
        cr_assert(stats_all_zero(&st), "GIL build: stops are no-ops, counters must stay 0");
    }
    else {
        cr_assert_eq(st.stops, N_GC + N_OTHER);
        cr_assert_eq(st.by_reason[PyUnstable_STOP_GC].stops, N_GC);
        cr_assert_eq(st.by_reason[PyUnstable_STOP_OTHER].stops, N_OTHER);
        for (int r = 0; r < PyUnstable_STOP_NREASONS; r++) {
            const PyUnstable_StopReasonStats *b = &st.by_reason[r];
            if (r != PyUnstable_STOP_GC && r != PyUnstable_STOP_OTHER) {
                cr_assert_eq(b->stops, 0, "reason %s counted", PyUnstable_StopTheWorld_ReasonName(r));
                cr_assert_eq(b->to_stop_ns_total + b->stopped_ns_total, 0);
            }
            cr_assert_leq(b->to_stop_ns_max, b->to_stop_ns_total);
            cr_assert_leq(b->stopped_ns_max, b->stopped_ns_total);
        }
        cr_assert_eq(st.last_reason, PyUnstable_STOP_OTHER);
        cr_assert_eq(st.last_threads, K, "last stop stopped %u threads", st.last_threads);
        cr_assert_leq(st.last_to_stop_ns, st.by_reason[PyUnstable_STOP_OTHER].to_stop_ns_max);
        cr_assert_leq(st.last_stopped_ns, st.by_reason[PyUnstable_STOP_OTHER].stopped_ns_max);
        cr_assert_eq(hist_sum(st.to_stop_hist), N_GC + N_OTHER);
        cr_assert_eq(hist_sum(st.stopped_hist), N_GC + N_OTHER);
        uint64_t max_to = st.by_reason[PyUnstable_STOP_GC].to_stop_ns_max;
        if (st.by_reason[PyUnstable_STOP_OTHER].to_stop_ns_max > max_to) {
            max_to = st.by_reason[PyUnstable_STOP_OTHER].to_stop_ns_max;
        }
        uint64_t max_stopped = st.by_reason[PyUnstable_STOP_GC].stopped_ns_max;
        if (st.by_reason[PyUnstable_STOP_OTHER].stopped_ns_max > max_stopped) {
            max_stopped = st.by_reason[PyUnstable_STOP_OTHER].stopped_ns_max;
        }
        check_percentiles(st.to_stop_hist, max_to, "time to stop");
        check_percentiles(st.stopped_hist, max_stopped, "time stopped");
    }

    /* One more stop, alone: its durations land in the buckets the header
     * defines; and a requester without a state stops its own state too. */
    PyUnstable_StopTheWorld_ResetStats(interp);
    me = PyEval_SaveThread();
    ft_stop_the_world(interp, PyUnstable_STOP_FORK);
    ft_start_the_world(interp);
    st = get_stats(interp);
    if (ft_free_threaded) {
        cr_assert_eq(st.stops, 1);
        cr_assert_eq(st.by_reason[PyUnstable_STOP_FORK].stops, 1);
        cr_assert_eq(st.last_reason, PyUnstable_STOP_FORK);
        cr_assert_eq(st.last_threads, K + 1, "a detached requester's own state counts: %u",
                     st.last_threads);
        cr_assert_eq(st.by_reason[PyUnstable_STOP_FORK].to_stop_ns_total, st.last_to_stop_ns);
        cr_assert_eq(st.by_reason[PyUnstable_STOP_FORK].stopped_ns_max, st.last_stopped_ns);
        int kt = expected_bucket(st.last_to_stop_ns), ks = expected_bucket(st.last_stopped_ns);
        cr_assert_eq(st.to_stop_hist[kt], 1, "time to stop %llu ns not in bucket %d",
                     (unsigned long long)st.last_to_stop_ns, kt);
        cr_assert_eq(st.stopped_hist[ks], 1, "time stopped %llu ns not in bucket %d",
                     (unsigned long long)st.last_stopped_ns, ks);
        cr_assert_eq(hist_sum(st.to_stop_hist) + hist_sum(st.stopped_hist), 2);
    }
    else {
        cr_assert(stats_all_zero(&st));
    }
    PyEval_RestoreThread(me);
    PyUnstable_StopTheWorld_ResetStats(interp);
    st = get_stats(interp);
    cr_assert(stats_all_zero(&st), "ResetStats left counters");
    me = PyEval_SaveThread();
    end_with_spinners(s, t, K, me);
}

Test(stw, stats_reason_names, .timeout = FT_TIMEOUT(10))
{
    cr_assert_str_eq(PyUnstable_StopTheWorld_ReasonName(PyUnstable_STOP_OTHER), "other");
    cr_assert_str_eq(PyUnstable_StopTheWorld_ReasonName(PyUnstable_STOP_GC), "gc");
    cr_assert_str_eq(PyUnstable_StopTheWorld_ReasonName(PyUnstable_STOP_FORK), "fork");
    cr_assert_str_eq(PyUnstable_StopTheWorld_ReasonName(PyUnstable_STOP_FINALIZE), "finalize");
    cr_assert_str_eq(PyUnstable_StopTheWorld_ReasonName(PyUnstable_STOP_REFCOUNT), "refcount");
    cr_assert_null(PyUnstable_StopTheWorld_ReasonName(-1));
    cr_assert_null(PyUnstable_StopTheWorld_ReasonName(PyUnstable_STOP_NREASONS));
    cr_assert_null(PyUnstable_StopTheWorld_ReasonName(1000));
}

static uint64_t
pct(const uint64_t *hist, double p)
{
    return PyUnstable_StopTheWorld_Percentile(hist, p);
}

Test(stw, stats_percentile_on_built_histograms, .timeout = FT_TIMEOUT(10))
{
    uint64_t h[PyUnstable_STOP_HIST_BUCKETS];
    memset(h, 0, sizeof h);
    cr_assert_eq(pct(h, 50), 0, "empty histogram");
    cr_assert_eq(pct(h, 100), 0);
    cr_assert_eq(pct(NULL, 50), 0);

    h[0] = 10;   /* [0, 2) ns */
    cr_assert_eq(pct(h, 50), 2);
    cr_assert_eq(pct(h, 100), 2);

    memset(h, 0, sizeof h);
    h[3] = 1;    /* [8, 16) */
    cr_assert_eq(pct(h, 0.001), 16);
    cr_assert_eq(pct(h, 100), 16);

    memset(h, 0, sizeof h);
    h[1] = 50;   /* [2, 4) */
    h[5] = 50;   /* [32, 64) */
    cr_assert_eq(pct(h, 1), 4);
    cr_assert_eq(pct(h, 50), 4, "the 50th of 100 samples is the last of bucket 1");
    cr_assert_eq(pct(h, 50.5), 64);
    cr_assert_eq(pct(h, 51), 64);
    cr_assert_eq(pct(h, 100), 64);
    cr_assert_eq(pct(h, 0), 4, "p <= 0: the lowest non-empty bucket");
    cr_assert_eq(pct(h, -5), 4);
    cr_assert_eq(pct(h, 250), 64, "p > 100: as 100");

    memset(h, 0, sizeof h);
    h[0] = 99;
    h[10] = 1;   /* [1024, 2048) */
    cr_assert_eq(pct(h, 99), 2);
    cr_assert_eq(pct(h, 99.5), 2048);
    cr_assert_eq(pct(h, 100), 2048);

    memset(h, 0, sizeof h);
    h[7] = 3;    /* [128, 256) */
    h[20] = 1;   /* [2^20, 2^21) */
    cr_assert_eq(pct(h, 75), 256, "rank ceil(0.75 * 4) = 3");
    cr_assert_eq(pct(h, 75.1), (uint64_t)1 << 21);

    memset(h, 0, sizeof h);
    h[PyUnstable_STOP_HIST_BUCKETS - 2] = 1;
    cr_assert_eq(pct(h, 50), (uint64_t)1 << (PyUnstable_STOP_HIST_BUCKETS - 1));
    h[PyUnstable_STOP_HIST_BUCKETS - 1] = 1;   /* the last: no upper bound */
    cr_assert_eq(pct(h, 100), UINT64_MAX);
    cr_assert_eq(pct(h, 50), (uint64_t)1 << (PyUnstable_STOP_HIST_BUCKETS - 1));
}

Test(stw, stats_get_null_args, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyUnstable_StopTheWorldStats st;
    cr_assert_eq(PyUnstable_StopTheWorld_GetStats(NULL, &st), -1);
    test_expect_error(PyExc_ValueError, "interp is NULL");
    cr_assert_eq(PyUnstable_StopTheWorld_GetStats(interp, NULL), -1);
    test_expect_error(PyExc_ValueError, "out is NULL");
    PyThreadState *me = PyEval_SaveThread();
    cr_assert_eq(PyUnstable_StopTheWorld_GetStats(NULL, &st), -1, "detached: just -1");
    cr_assert_eq(PyUnstable_StopTheWorld_GetStats(interp, NULL), -1);
    cr_assert_eq(PyUnstable_StopTheWorld_GetStats(interp, &st), 0, "detached reads work");
    PyUnstable_StopTheWorld_ResetStats(NULL);   /* no-op */
    PyEval_RestoreThread(me);
    cr_assert_null(PyErr_Occurred());
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ResetStats takes the stop mutex: one called during a stop by another
 * thread waits, so the stop is recorded first and then zeroed; one called
 * by the requester itself (attached or not) does not deadlock, and the stop
 * in force is recorded after it. */
typedef struct resetter {
    atomic_int started;
    atomic_int done;
} resetter;

static void *
reset_stats_thread(void *arg)
{
    resetter *r = arg;
    atomic_store(&r->started, 1);
    PyUnstable_StopTheWorld_ResetStats(PyInterpreterState_Main());   /* no thread state */
    atomic_store(&r->done, 1);
    return NULL;
}

Test(stw, stats_reset_waits_for_the_stop_in_progress, .timeout = FT_TIMEOUT(30))
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: stops are no-ops and record nothing");
    }
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    ft_stop_the_world(interp, PyUnstable_STOP_GC);
    resetter r;
    memset(&r, 0, sizeof r);
    pthread_t t = test_start_thread(reset_stats_thread, &r);
    bool parked = TEST_POLL_UNTIL(ft_mutex_bits(&interp->stw.mutex) & _Py_HAS_PARKED, POLL_MS);
    int done_during = atomic_load(&r.done);
    ft_start_the_world(interp);
    cr_assert(parked, "ResetStats did not wait for the stop mutex");
    cr_assert_eq(done_during, 0, "ResetStats returned during a stop");
    cr_assert(TEST_POLL_UNTIL(atomic_load(&r.done), POLL_MS));
    test_join_thread(t);
    PyUnstable_StopTheWorldStats st = get_stats(interp);
    cr_assert_eq(st.stops, 0, "the reset ran before the stop was recorded");

    /* the requester resets during its own stop, attached and detached */
    ft_stop_the_world(interp, PyUnstable_STOP_GC);
    PyUnstable_StopTheWorld_ResetStats(interp);
    ft_start_the_world(interp);
    PyThreadState *me = PyEval_SaveThread();
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    PyUnstable_StopTheWorld_ResetStats(interp);
    ft_start_the_world(interp);
    PyEval_RestoreThread(me);
    st = get_stats(interp);
    cr_assert_eq(st.stops, 1, "stops after the last reset: %llu", (unsigned long long)st.stops);
    cr_assert_eq(st.by_reason[PyUnstable_STOP_OTHER].stops, 1);
    cr_assert_eq(st.by_reason[PyUnstable_STOP_GC].stops, 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- the forward-progress guarantee (gh-151518) ------------------------------------- */

/* A thread that re-attaches in a loop (an empty detached region, then a
 * count attached) while another thread stops the world back to back.
 * Without the guarantee the restart only detaches it, and the next stop
 * re-suspends it before it ever runs. */
enum { LOOP_ALLOW_THREADS, LOOP_GILSTATE };

typedef struct looper {
    int mode;                   /* how it re-attaches: LOOP_* */
    PyThreadState *_Atomic ts;
    atomic_long attaches;       /* completed: counted attached, after the re-attach */
    atomic_int stop;
    atomic_int returned;        /* RestoreThread returned (the mechanism tests) */
    atomic_int go;
    atomic_int done;
} looper;

/* LOOP_GILSTATE: a foreign thread calling back into the runtime in a loop;
 * each PyGILState_Ensure re-attaches the thread's one (detached) state. */
static void
gilstate_loop(looper *l)
{
    PyGILState_STATE outer = PyGILState_Ensure();
    atomic_store(&l->ts, PyThreadState_Get());
    PyThreadState *saved = PyEval_SaveThread();
    while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
        PyGILState_STATE g = PyGILState_Ensure();
        atomic_fetch_add_explicit(&l->attaches, 1, memory_order_relaxed);
        PyGILState_Release(g);
    }
    PyEval_RestoreThread(saved);
    PyGILState_Release(outer);
    atomic_store(&l->done, 1);
}

static void *
attach_loop(void *arg)
{
    looper *l = arg;
    if (l->mode == LOOP_GILSTATE) {
        gilstate_loop(l);
        return NULL;
    }
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    PyEval_RestoreThread(ts);
    atomic_store(&l->ts, ts);
    while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
        Py_BEGIN_ALLOW_THREADS
        Py_END_ALLOW_THREADS
        atomic_fetch_add_explicit(&l->attaches, 1, memory_order_relaxed);
    }
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    atomic_store(&l->done, 1);
    return NULL;
}

/* Free-threaded build: this many stop/start rounds, each restarting the
 * world with the looper waiting to attach.  GIL build (no stops): until the
 * looper made this many attaches; the requester's safe point hands it the
 * GIL, one switch interval (5 ms) per attach. */
#define STORM_ROUNDS (FT_TIMEOUT_SCALE > 1 ? 30 : 100)
#define STORM_GIL_ATTACHES 20

/* Spin (yielding) until ts is marked waiting to attach, at most POLL_MS
 * (scaled); a wait for the other side's progress, not a sleep. */
static bool
until_waiting(PyThreadState *ts)
{
    int64_t deadline = test_now_ns() + (int64_t)POLL_MS * 1000000LL * FT_TIMEOUT_SCALE;
    while (!(word_of(ts) & FT_TS_WAITING)) {
        if (test_now_ns() >= deadline) {
            return false;
        }
        sched_yield();
    }
    return true;
}

/* The guarantee, round by round: the requester restarts the world with the
 * looper waiting to attach (it waits for that, bounded), then stops it again
 * at once, as a thread looping on gc.collect() does.  That next stop must
 * complete only after the looper finished its attach (its count moved).
 * This holds however the threads are scheduled: if the looper does not run,
 * the stop waits for it.  Without the guarantee the restart only detaches
 * the looper and the next stop, microseconds later, suspends it again before
 * it has woken up: most rounds starve it. */
static void
stop_storm(int mode)
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    looper l;
    memset(&l, 0, sizeof l);
    l.mode = mode;
    PyThreadState *me = PyEval_SaveThread();
    pthread_t t = test_start_thread(attach_loop, &l);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&l.attaches) > 0, POLL_MS), "the looper never ran");
    PyThreadState *lts = atomic_load(&l.ts);
    PyEval_RestoreThread(me);

    long base = atomic_load(&l.attaches);
    long rounds = 0, waiting_rounds = 0, starved = 0;
    if (ft_free_threaded) {
        bool waited = false;   /* the last restart found the looper waiting */
        long before = 0;       /* its count then (it cannot count while stopped) */
        for (rounds = 0; rounds <= STORM_ROUNDS; rounds++) {
            ft_stop_the_world(interp, PyUnstable_STOP_GC);
            if (waited && atomic_load(&l.attaches) == before) {
                starved++;
            }
            if (rounds == STORM_ROUNDS) {
                ft_start_the_world(interp);
                break;
            }
            /* WAITING, once set, stays until the restart */
            waited = until_waiting(lts);
            waiting_rounds += waited;
            before = atomic_load(&l.attaches);
            ft_start_the_world(interp);
        }
    }
    else {
        int64_t deadline = test_now_ns() + 10 * FT_NS_PER_S * FT_TIMEOUT_SCALE;
        while (atomic_load(&l.attaches) - base < STORM_GIL_ATTACHES && test_now_ns() < deadline) {
            ft_stop_the_world(interp, PyUnstable_STOP_GC);   /* no-ops */
            ft_start_the_world(interp);
            (void)PyErr_CheckSignals();   /* where the looper gets the GIL */
            rounds++;
        }
    }
    long made = atomic_load(&l.attaches) - base;
    me = PyEval_SaveThread();
    atomic_store(&l.stop, 1);
    test_join_thread(t);
    PyEval_RestoreThread(me);
    cr_log_info("storm: %ld rounds, %ld restarts with the looper waiting, %ld of them starved "
                "it; %ld attaches", rounds, waiting_rounds, starved, made);
    cr_assert(atomic_load(&l.done));
    if (ft_free_threaded) {
        cr_assert_eq(waiting_rounds, STORM_ROUNDS, "the looper did not wait to attach in %ld "
                     "of %d rounds", STORM_ROUNDS - waiting_rounds, STORM_ROUNDS);
        cr_assert_eq(starved, 0, "%ld of %ld restarts with the looper waiting were followed by "
                     "a stop before it ran", starved, waiting_rounds);
        cr_assert_geq(made, waiting_rounds);
    }
    else {
        cr_assert_geq(made, STORM_GIL_ATTACHES, "the looper starved: %ld attaches", made);
    }
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(stw, attach_loop_makes_progress_during_a_stop_storm, .timeout = FT_TIMEOUT(60))
{
    stop_storm(LOOP_ALLOW_THREADS);
}

/* The same for PyGILState_Ensure, whose own safe point after a granted
 * attach would otherwise suspend the looper again before its callback ran. */
Test(stw, gilstate_loop_makes_progress_during_a_stop_storm, .timeout = FT_TIMEOUT(60))
{
    stop_storm(LOOP_GILSTATE);
}

/* The mechanism, deterministically: a thread parked in attach while the
 * world is stopped is ATTACHED as soon as ft_start_the_world returns, and it
 * returns from PyEval_RestoreThread before any later stop can complete. */
static void *
restore_then_safe_points(void *arg)
{
    looper *l = arg;
    PyThreadState *ts = atomic_load(&l->ts);
    test_wait_flag(&l->go, 4 * POLL_MS);
    PyEval_RestoreThread(ts);
    atomic_store(&l->returned, 1);
    while (!atomic_load(&l->stop)) {
        (void)PyErr_CheckSignals();
        atomic_fetch_add(&l->attaches, 1);
    }
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    atomic_store(&l->done, 1);
    return NULL;
}

Test(stw, thread_waiting_to_attach_is_attached_by_the_restart, .timeout = FT_TIMEOUT(30))
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: stops are no-ops; nothing waits for a restart");
    }
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    looper l;
    memset(&l, 0, sizeof l);
    PyThreadState *ts = PyThreadState_New(interp);
    cr_assert_not_null(ts);
    atomic_store(&l.ts, ts);
    pthread_t t = test_start_thread(restore_then_safe_points, &l);

    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    uint64_t seq = stw_seq(interp);
    cr_assert_eq(word_of(ts), FT_TS_SUSPENDED_BY(seq), "detached state not stamped");
    atomic_store(&l.go, 1);
    /* it marks its suspension waiting, then parks */
    cr_assert(TEST_POLL_UNTIL(word_of(ts) == (FT_TS_SUSPENDED_BY(seq) | FT_TS_WAITING), POLL_MS),
              "the attacher never waited (word %#llx)", (unsigned long long)word_of(ts));
    ft_start_the_world(interp);
    uint64_t after = word_of(ts);
    cr_assert_eq(FT_TS_KIND(after), FT_TS_ATTACHED,
                 "the restart left the waiting state %s, not ATTACHED", kind_name(FT_TS_KIND(after)));
    cr_assert(after == FT_TS_GRANTED_BY(seq) || after == FT_TS_ATTACHED,
              "word %#llx: neither the grant of the restart nor claimed",
              (unsigned long long)after);

    /* stop again at once: the stop waits for the thread's next safe point,
     * which comes after PyEval_RestoreThread returned */
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    int returned = atomic_load(&l.returned);
    uint64_t w2 = word_of(ts);
    seq = stw_seq(interp);
    ft_start_the_world(interp);
    cr_assert_eq(returned, 1, "a later stop suspended the granted thread before it ran");
    cr_assert_eq(w2, FT_TS_SUSPENDED_BY(seq) | FT_TS_WAITING, "word %#llx during the second stop",
                 (unsigned long long)w2);
    long c = atomic_load(&l.attaches);
    PyThreadState *me = PyEval_SaveThread();
    cr_assert(TEST_POLL_UNTIL(atomic_load(&l.attaches) > c, POLL_MS), "did not resume");
    atomic_store(&l.stop, 1);
    test_join_thread(t);
    cr_assert(atomic_load(&l.done));
    PyEval_RestoreThread(me);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* A granted state whose owner only claims it once finalization has begun:
 * the owner gives it back and hangs, and finalization completes (it does
 * not wait for a thread that will never reach a safe point).  The grant is
 * set by hand, white-box: a real one is claimed too fast to race. */
static void *
claim_grant_while_finalizing(void *arg)
{
    looper *l = arg;
    PyThreadState *ts = atomic_load(&l->ts);
    PyInterpreterState *interp = ts->interp;
    TEST_HELPER_WAIT(atomic_load(&interp->finalizing) != NULL, 4 * POLL_MS);
    atomic_store(&l->go, 1);
    PyEval_RestoreThread(ts);   /* must hang */
    atomic_store(&l->returned, 1);
    return NULL;
}

Test(stw, granted_thread_hangs_once_finalization_began, .timeout = FT_TIMEOUT(30))
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: no grants");
    }
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    static looper l;   /* the hung thread keeps a pointer */
    memset(&l, 0, sizeof l);
    PyThreadState *ts = PyThreadState_New(interp);
    cr_assert_not_null(ts);
    atomic_store(&l.ts, ts);
    atomic_store(&ft_ts(ts)->state, FT_TS_GRANTED_BY(stw_seq(interp) + 1));
    pthread_t t = test_start_thread(claim_grant_while_finalizing, &l);
    cr_assert_eq(Py_FinalizeEx(), 0);   /* its stop waits for the grant's owner */
    cr_assert(atomic_load(&l.go), "the owner never tried to claim the grant");
    test_sleep_ns(QUIET_NS);
    cr_assert_eq(atomic_load(&l.returned), 0, "attached after finalization");
    cr_assert_eq(pthread_detach(t), 0);
}

/* ---- every interpreter ------------------------------------------------------------ */

Test(stw, stop_the_world_all_stops_the_main_interpreter, .timeout = FT_TIMEOUT(30))
{
    enum { K = 2 };
    spinner s[K];
    pthread_t t[K];
    PyThreadState *me = init_with_spinners(s, t, K, true);
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyEval_RestoreThread(me);
    PyUnstable_StopTheWorld_ResetStats(interp);
    for (int round = 0; round < 2; round++) {
        if (ft_free_threaded) {
            for (int j = 0; j < K; j++) {
                cr_assert(TEST_POLL_UNTIL(kind_of(atomic_load(&s[j].ts)) == FT_TS_ATTACHED,
                                          POLL_MS));
            }
        }
        ft_stop_the_world_all(PyUnstable_STOP_GC);
        uint64_t seq = stw_seq(interp);
        uint64_t words[K];
        for (int i = 0; i < K; i++) {
            words[i] = word_of(atomic_load(&s[i].ts));
        }
        long c1[K], c2[K];
        watch_counters(s, K, c1, c2);
        int attached = attached_others(interp, me);
        ft_start_the_world_all();
        cr_assert_eq(attached, 0);
        for (int i = 0; i < K; i++) {
            if (ft_free_threaded) {
                cr_assert_eq(unwaited(words[i]), FT_TS_SUSPENDED_BY(seq), "round %d: spinner %d is %s",
                             round, i, kind_name(FT_TS_KIND(words[i])));
            }
            else {
                cr_assert_neq(FT_TS_KIND(words[i]), FT_TS_ATTACHED);
            }
            cr_assert_eq(c1[i], c2[i], "round %d: spinner %d ran while stopped", round, i);
        }
        cr_assert_eq(stw_seq(interp) & 1, 0, "the world did not restart");
    }
    PyUnstable_StopTheWorldStats st = get_stats(interp);
    if (ft_free_threaded) {
        cr_assert_eq(st.stops, 2);
        cr_assert_eq(st.by_reason[PyUnstable_STOP_GC].stops, 2);
        cr_assert_eq(st.last_threads, K);
        cr_assert_eq(st.last_reason, PyUnstable_STOP_GC);
    }
    else {
        cr_assert(stats_all_zero(&st));
    }
    me = PyEval_SaveThread();
    for (int i = 0; i < K; i++) {
        long c = atomic_load(&s[i].counter);
        cr_assert(TEST_POLL_UNTIL(atomic_load(&s[i].counter) > c, POLL_MS),
                  "spinner %d did not resume", i);
    }
    end_with_spinners(s, t, K, me);
}

/* Global and per-interpreter requesters exclude each other. */
Test(stw, global_and_interpreter_stops_exclude_each_other, .timeout = FT_TIMEOUT(60))
{
    run_duel((const bool[]){ true, true, false }, 3);
}
