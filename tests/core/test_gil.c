/* The GIL (core/gil.c) and the switch interval, white-box, in both builds.
 *
 * GIL build:
 *   - one thread attached at a time: four threads attach and detach in turn
 *     (PyEval_RestoreThread and PyGILState_Ensure); a count of "attached
 *     now", raised after attach and lowered before anything that may detach
 *     (a safe point or the detach itself), never exceeds 1, and while a
 *     thread is attached the GIL's holder is its state;
 *   - interleaving at safe points: two attached threads that call
 *     PyErr_CheckSignals every iteration both make progress, each seeing the
 *     other's counter move (the GIL changed hands) several times before its
 *     own fixed iteration goal, at 1000 us and at the default 5000 us;
 *   - without a safe point the holder keeps the GIL: a waiter stuck in
 *     PyEval_RestoreThread has asked the holder to drop it (FT_BREAK_GIL_DROP
 *     on the holder's breaker, observable) and is still not attached; once
 *     the holder reaches PyErr_CheckSignals / Py_MakePendingCalls, or
 *     detaches, the waiter attaches while the holder is detached;
 *   - forced switching: a holder answering a drop request does not re-take
 *     the GIL before the waiter has had it (the switch interval is raised to
 *     60 s once the request is made, so only the hand-off can explain the
 *     waiter's turn);
 *   - a thread blocked in PyMutex_Lock with the GIL releases it, so the
 *     mutex holder can re-attach and unlock: no deadlock, whichever of the
 *     two blocks first;
 *   - the GIL follows SaveThread / RestoreThread / Swap (holder field).
 * Free-threaded build: several threads are attached at the same time, a
 *   waiter attaches while another thread spins attached without safe points,
 *   nobody is ever asked to drop a GIL, and _PyEval_SetSwitchInterval just
 *   stores its value.
 * Both: _PyEval_SetSwitchInterval / _PyEval_GetSwitchInterval round-trip,
 *   before and after Py_Initialize, and PyConfig.switch_interval_us sets it.
 *
 * Helper threads only record (into atomics); the main thread asserts.  The
 * main thread stays detached while helpers need the GIL.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_lock.h"
#include "ft_pystate.h"

#include <sched.h>
#include <stdatomic.h>

#define POLL_MS 5000
#define BIG_INTERVAL_US 60000000UL   /* 60 s: "never" within a test */

TestSuite(gil, .timeout = FT_TIMEOUT(30));

/* ---- helpers -------------------------------------------------------------- */

static PyThreadState *main_ts;

/* Py_Initialize, then detach the main thread so helpers can have the GIL. */
static void
init_detached(void)
{
    Py_Initialize();
    main_ts = PyEval_SaveThread();
    cr_assert_not_null(main_ts);
}

static void
finalize_from_detached(void)
{
    PyEval_RestoreThread(main_ts);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static ft_tstate *
gil_holder(void)
{
    return atomic_load_explicit(&ft_rt.gil.holder, memory_order_relaxed);
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

static void
record_max(atomic_int *max, int value)
{
    int seen = atomic_load(max);
    while (value > seen && !atomic_compare_exchange_weak(max, &seen, value)) {
    }
}

/* ---- switch interval -------------------------------------------------------- */

Test(gil, switch_interval_round_trips)
{
    cr_assert_eq(_PyEval_GetSwitchInterval(), 5000, "default before Py_Initialize");
    _PyEval_SetSwitchInterval(1000);
    cr_assert_eq(_PyEval_GetSwitchInterval(), 1000);
    _PyEval_SetSwitchInterval(12345);
    cr_assert_eq(_PyEval_GetSwitchInterval(), 12345);

    Py_Initialize();
    cr_assert_eq(_PyEval_GetSwitchInterval(), 12345, "Py_Initialize reset the interval");
    _PyEval_SetSwitchInterval(1);
    cr_assert_eq(_PyEval_GetSwitchInterval(), 1);
    _PyEval_SetSwitchInterval(BIG_INTERVAL_US);
    cr_assert_eq(_PyEval_GetSwitchInterval(), BIG_INTERVAL_US);
    _PyEval_SetSwitchInterval(0);
    cr_assert_gt(_PyEval_GetSwitchInterval(), 0, "an interval of 0 must not stick");
    _PyEval_SetSwitchInterval(5000);
    cr_assert_eq(_PyEval_GetSwitchInterval(), 5000);
    cr_assert_eq(Py_FinalizeEx(), 0);

    _PyEval_SetSwitchInterval(2500);
    cr_assert_eq(_PyEval_GetSwitchInterval(), 2500, "after Py_FinalizeEx");
}

Test(gil, config_sets_switch_interval)
{
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.switch_interval_us = 777;
    PyStatus st = Py_InitializeFromConfig(&config);
    cr_assert_not(PyStatus_Exception(st));
    PyConfig_Clear(&config);
    cr_assert_eq(_PyEval_GetSwitchInterval(), 777);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- the holder field follows attach / detach ------------------------------ */

Test(gil, holder_follows_save_restore_and_swap)
{
    Py_Initialize();
    PyThreadState *a = PyThreadState_Get();
    ft_tstate *want_a = ft_free_threaded ? NULL : ft_ts(a);
    cr_assert_eq(gil_holder(), want_a, "after Py_Initialize");
    cr_assert(PyGILState_Check());

    PyThreadState *saved = PyEval_SaveThread();
    cr_assert_eq(saved, a);
    cr_assert_null(gil_holder(), "after PyEval_SaveThread");
    cr_assert_not(PyGILState_Check());
    cr_assert_null(PyThreadState_GetUnchecked());

    PyEval_RestoreThread(saved);
    cr_assert_eq(gil_holder(), want_a, "after PyEval_RestoreThread");

    PyThreadState *b = PyThreadState_New(PyInterpreterState_Main());
    cr_assert_not_null(b);
    cr_assert_eq(PyThreadState_Swap(b), a);
    cr_assert_eq(gil_holder(), ft_free_threaded ? NULL : ft_ts(b), "after Swap(b)");
    cr_assert_eq(kind_of(a), FT_TS_DETACHED);
    cr_assert_eq(kind_of(b), FT_TS_ATTACHED);
    cr_assert_eq(PyThreadState_Swap(NULL), b);
    cr_assert_null(gil_holder(), "after Swap(NULL)");
    cr_assert_null(PyThreadState_Swap(a));
    cr_assert_eq(gil_holder(), want_a, "after Swap(a)");
    PyThreadState_Clear(b);
    PyThreadState_Delete(b);

    PyGILState_STATE g = PyGILState_Ensure();   /* nested: stays as it is */
    cr_assert_eq(g, PyGILState_LOCKED);
    cr_assert_eq(gil_holder(), want_a);
    PyGILState_Release(g);
    cr_assert_eq(gil_holder(), want_a);
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_null(gil_holder(), "after Py_FinalizeEx");
}

/* ---- one at a time (GIL) / all at once (free-threaded) ---------------------- */

#define EXCL_THREADS 4
#define EXCL_ROUNDS 300

static struct {
    atomic_int now;           /* threads attached right now */
    atomic_int max;
    atomic_int wrong_holder;  /* attached, but the GIL's holder is someone else */
    atomic_int wrong_current;
    atomic_int rounds;
} excl;

static void
excl_enter(PyThreadState *me)
{
    int n = atomic_fetch_add(&excl.now, 1) + 1;
    record_max(&excl.max, n);
    if (PyThreadState_GetUnchecked() != me) {
        atomic_fetch_add(&excl.wrong_current, 1);
    }
    if (!ft_free_threaded && gil_holder() != ft_ts(me)) {
        atomic_fetch_add(&excl.wrong_holder, 1);
    }
}

static void
excl_leave(PyThreadState *me)
{
    if (!ft_free_threaded && gil_holder() != ft_ts(me)) {
        atomic_fetch_add(&excl.wrong_holder, 1);
    }
    atomic_fetch_sub(&excl.now, 1);
}

/* Attached work with no safe point: give other threads every chance to
 * (wrongly) attach meanwhile. */
static void
excl_work(void)
{
    for (int i = 0; i < 20; i++) {
        sched_yield();
    }
}

static void *
excl_thread(void *arg)
{
    intptr_t idx = (intptr_t)arg;
    PyThreadState *own = PyThreadState_New(PyInterpreterState_Main());
    for (int r = 0; r < EXCL_ROUNDS; r++) {
        PyThreadState *me;
        PyGILState_STATE g = PyGILState_UNLOCKED;
        bool via_gilstate = (r + idx) % 2 == 0;
        if (via_gilstate) {
            g = PyGILState_Ensure();
            me = PyThreadState_GetUnchecked();
        }
        else {
            PyEval_RestoreThread(own);
            me = own;
        }
        excl_enter(me);
        excl_work();
        excl_leave(me);
        (void)PyErr_CheckSignals();   /* a safe point: may hand the GIL over */
        excl_enter(me);
        excl_work();
        excl_leave(me);
        if (via_gilstate) {
            PyGILState_Release(g);
        }
        else {
            (void)PyEval_SaveThread();
        }
        atomic_fetch_add(&excl.rounds, 1);
    }
    PyThreadState_Clear(own);
    PyThreadState_Delete(own);
    return NULL;
}

Test(gil, one_thread_attached_at_a_time)
{
    if (ft_free_threaded) {
        cr_skip_test("GIL build only (see attached_threads_run_in_parallel)");
    }
    _PyEval_SetSwitchInterval(1000);
    init_detached();
    pthread_t t[EXCL_THREADS];
    for (intptr_t i = 0; i < EXCL_THREADS; i++) {
        t[i] = test_start_thread(excl_thread, (void *)i);
    }
    for (int i = 0; i < EXCL_THREADS; i++) {
        test_join_thread(t[i]);
    }
    cr_assert_eq(atomic_load(&excl.rounds), EXCL_THREADS * EXCL_ROUNDS);
    cr_assert_eq(atomic_load(&excl.max), 1, "%d threads were attached at once",
                 atomic_load(&excl.max));
    cr_assert_eq(atomic_load(&excl.wrong_holder), 0, "the GIL's holder was not the attached state");
    cr_assert_eq(atomic_load(&excl.wrong_current), 0);
    cr_assert_eq(atomic_load(&excl.now), 0);
    finalize_from_detached();
}

#define PAR_THREADS 4

static struct {
    atomic_int now;
    atomic_int max;
    atomic_int stop;
    atomic_int drop_requests;   /* FT_BREAK_GIL_DROP seen on our own breaker */
    atomic_int gil_used;        /* the GIL's holder was set */
} par;

static void *
par_thread(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyThreadState *me = PyThreadState_GetUnchecked();
    int n = atomic_fetch_add(&par.now, 1) + 1;
    record_max(&par.max, n);
    while (!atomic_load(&par.stop)) {
        if (breaker_of(me) & FT_BREAK_GIL_DROP) {
            atomic_fetch_add(&par.drop_requests, 1);
        }
        if (gil_holder() != NULL) {
            atomic_fetch_add(&par.gil_used, 1);
        }
        /* A safe point never detaches in the free-threaded build unless the
         * world is being stopped, which nobody does here. */
        (void)PyErr_CheckSignals();
    }
    atomic_fetch_sub(&par.now, 1);
    PyGILState_Release(g);
    return NULL;
}

Test(gil, attached_threads_run_in_parallel)
{
    if (!ft_free_threaded) {
        cr_skip_test("free-threaded build only (see one_thread_attached_at_a_time)");
    }
    /* The free-threaded build only stores the interval. */
    _PyEval_SetSwitchInterval(1);
    cr_assert_eq(_PyEval_GetSwitchInterval(), 1);
    Py_Initialize();   /* the main thread stays attached: no GIL to hog */
    pthread_t t[PAR_THREADS];
    for (int i = 0; i < PAR_THREADS; i++) {
        t[i] = test_start_thread(par_thread, NULL);
    }
    bool together = TEST_POLL_UNTIL(atomic_load(&par.max) >= 2, POLL_MS);
    bool all = TEST_POLL_UNTIL(atomic_load(&par.max) == PAR_THREADS, POLL_MS);
    atomic_store(&par.stop, 1);
    for (int i = 0; i < PAR_THREADS; i++) {
        test_join_thread(t[i]);
    }
    cr_assert(together, "never two threads attached at once (max %d)", atomic_load(&par.max));
    cr_assert(all, "only %d of %d threads attached at once", atomic_load(&par.max), PAR_THREADS);
    cr_assert_eq(atomic_load(&par.drop_requests), 0, "a GIL drop was requested");
    cr_assert_eq(atomic_load(&par.gil_used), 0, "the GIL has a holder");
    cr_assert_eq(_PyEval_GetSwitchInterval(), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- interleaving at safe points --------------------------------------------- */

/* Per-thread iteration goal: about 0.1-0.2 s of work per thread in a plain
 * build (sanitized builds run each iteration 10x+ slower, so they do fewer:
 * the GIL's interval is wall-clock time, so hand-offs per iteration only
 * grow when iterations get slower). */
#define INTERLEAVE_ITERATIONS (60000000L / FT_TIMEOUT_SCALE)

static struct {
    atomic_long count[2];
    atomic_long seen_switches[2];   /* the other's counter moved between two of ours */
    atomic_long done_iterations[2];
    atomic_int ready;
} il;

static void *
interleave_thread(void *arg)
{
    int me = (int)(intptr_t)arg, other = 1 - me;
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    atomic_fetch_add(&il.ready, 1);
    while (atomic_load(&il.ready) < 2) {
        sched_yield();   /* detached: both start together */
    }
    PyEval_RestoreThread(ts);
    long seen = 0;
    long last = atomic_load_explicit(&il.count[other], memory_order_relaxed);
    long n;
    for (n = 0; n < INTERLEAVE_ITERATIONS; n++) {
        atomic_store_explicit(&il.count[me], n + 1, memory_order_relaxed);
        (void)PyErr_CheckSignals();
        long now = atomic_load_explicit(&il.count[other], memory_order_relaxed);
        if (now != last) {
            seen++;
            last = now;
        }
    }
    atomic_store(&il.seen_switches[me], seen);
    atomic_store(&il.done_iterations[me], n);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    return NULL;
}

static void
run_interleave(unsigned long interval_us, long min_switches)
{
    _PyEval_SetSwitchInterval(interval_us);
    init_detached();
    cr_assert_eq(_PyEval_GetSwitchInterval(), interval_us);
    pthread_t a = test_start_thread(interleave_thread, (void *)0);
    pthread_t b = test_start_thread(interleave_thread, (void *)1);
    test_join_thread(a);
    test_join_thread(b);
    long s0 = atomic_load(&il.seen_switches[0]), s1 = atomic_load(&il.seen_switches[1]);
    cr_log_info("interval %lu us: %ld iterations each, thread 0 saw %ld switches, thread 1 %ld",
                interval_us, (long)INTERLEAVE_ITERATIONS, s0, s1);
    cr_assert_eq(atomic_load(&il.done_iterations[0]), INTERLEAVE_ITERATIONS);
    cr_assert_eq(atomic_load(&il.done_iterations[1]), INTERLEAVE_ITERATIONS);
    cr_assert_geq(s0, min_switches, "thread 0 saw thread 1 run only %ld times (want %ld)",
                  s0, min_switches);
    cr_assert_geq(s1, min_switches, "thread 1 saw thread 0 run only %ld times (want %ld)",
                  s1, min_switches);
    finalize_from_detached();
}

Test(gil, safe_points_interleave_at_1ms, .timeout = FT_TIMEOUT(60))
{
    run_interleave(1000, 5);
}

Test(gil, safe_points_interleave_at_default_interval, .timeout = FT_TIMEOUT(60))
{
    run_interleave(5000, 3);
}

/* ---- no safe point, no hand-off ---------------------------------------------- */

enum let_go { AT_CHECK_SIGNALS, AT_MAKE_PENDING_CALLS, BY_DETACHING };

static struct {
    enum let_go how;
    PyThreadState *holder_ts, *waiter_ts;
    atomic_int holder_attached;
    atomic_int go;                  /* main -> holder: reach the safe point */
    atomic_int holder_back;         /* the holder is attached again */
    atomic_int waiter_attached_when_holder_back;
    atomic_int finish;              /* main -> holder: clean up */
    atomic_int waiter_calling;
    atomic_int waiter_attached;
    atomic_int waiter_saw_holder_kind;
    atomic_int waiter_saw_gil_holder_ok;
    atomic_int waiter_wait_for_main;   /* stay attached until main says */
    atomic_int waiter_release;
} ng;

static void *
ng_holder(void *arg)
{
    (void)arg;
    PyEval_RestoreThread(ng.holder_ts);
    atomic_store(&ng.holder_attached, 1);
    /* acquire: what main read before `go` happens before everything after */
    while (!atomic_load_explicit(&ng.go, memory_order_acquire)) {
        cpu_relax();   /* attached, and no safe point */
    }
    switch (ng.how) {
    case AT_CHECK_SIGNALS:
        (void)PyErr_CheckSignals();
        break;
    case AT_MAKE_PENDING_CALLS:
        (void)Py_MakePendingCalls();
        break;
    case BY_DETACHING: {
        PyThreadState *saved = PyEval_SaveThread();
        PyEval_RestoreThread(saved);
        break;
    }
    }
    atomic_store(&ng.waiter_attached_when_holder_back, atomic_load(&ng.waiter_attached));
    atomic_store(&ng.holder_back, PyThreadState_GetUnchecked() == ng.holder_ts ? 1 : -1);
    while (!atomic_load(&ng.finish)) {
        sched_yield();
    }
    PyThreadState_Clear(ng.holder_ts);
    PyThreadState_DeleteCurrent();
    return NULL;
}

static void *
ng_waiter(void *arg)
{
    (void)arg;
    atomic_store(&ng.waiter_calling, 1);
    PyEval_RestoreThread(ng.waiter_ts);
    atomic_store(&ng.waiter_saw_holder_kind, kind_of(ng.holder_ts));
    atomic_store(&ng.waiter_saw_gil_holder_ok,
                 ft_free_threaded ? gil_holder() == NULL : gil_holder() == ft_ts(ng.waiter_ts));
    atomic_store(&ng.waiter_attached, 1);
    if (atomic_load(&ng.waiter_wait_for_main)) {
        while (!atomic_load(&ng.waiter_release)) {
            sched_yield();   /* attached, no safe point */
        }
    }
    PyThreadState_Clear(ng.waiter_ts);
    PyThreadState_DeleteCurrent();
    return NULL;
}

static void
run_holder_keeps_gil(enum let_go how)
{
    if (ft_free_threaded) {
        cr_skip_test("GIL build only (see ft_waiter_attaches_while_holder_spins)");
    }
    ng.how = how;
    _PyEval_SetSwitchInterval(1000);
    init_detached();
    ng.holder_ts = PyThreadState_New(PyInterpreterState_Main());
    ng.waiter_ts = PyThreadState_New(PyInterpreterState_Main());
    pthread_t h = test_start_thread(ng_holder, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&ng.holder_attached), POLL_MS));
    pthread_t w = test_start_thread(ng_waiter, NULL);

    /* The waiter asks the holder to drop the GIL after one interval without a
     * switch: that proves it is waiting inside the attach. */
    bool asked = TEST_POLL_UNTIL(breaker_of(ng.holder_ts) & FT_BREAK_GIL_DROP, POLL_MS);
    /* From here on nobody times out: the holder's hand-off at its one safe
     * point waits as long as the waiter needs to wake up (with the 1 ms
     * interval, a waiter the scheduler leaves asleep for 1 ms would let the
     * holder take the GIL back, and the holder spins without safe points
     * afterwards). */
    _PyEval_SetSwitchInterval(BIG_INTERVAL_US);
    int waiter_attached_early = atomic_load(&ng.waiter_attached);
    int holder_kind = kind_of(ng.holder_ts);
    ft_tstate *holder_now = gil_holder();
    cr_assert(asked, "the waiter never requested a GIL drop");
    cr_assert_eq(waiter_attached_early, 0, "the waiter attached while the holder had the GIL "
                                           "and reached no safe point");
    cr_assert_eq(holder_kind, FT_TS_ATTACHED);
    cr_assert_eq(holder_now, ft_ts(ng.holder_ts));
    cr_assert_eq(kind_of(ng.waiter_ts), FT_TS_DETACHED);

    atomic_store(&ng.go, 1);
    bool waiter_in = TEST_POLL_UNTIL(atomic_load(&ng.waiter_attached), POLL_MS);
    bool holder_back = TEST_POLL_UNTIL(atomic_load(&ng.holder_back) != 0, POLL_MS);
    cr_assert(waiter_in, "the waiter never attached after the holder's safe point");
    cr_assert(holder_back, "the holder never re-attached");
    cr_assert_eq(atomic_load(&ng.holder_back), 1, "the holder is not attached after the safe point");
    cr_assert_eq(atomic_load(&ng.waiter_saw_holder_kind), FT_TS_DETACHED,
                 "the waiter ran while the holder's state was still attached (kind %d)",
                 atomic_load(&ng.waiter_saw_holder_kind));
    cr_assert(atomic_load(&ng.waiter_saw_gil_holder_ok), "the GIL's holder was not the waiter");
    atomic_store(&ng.finish, 1);
    test_join_thread(w);
    test_join_thread(h);
    _PyEval_SetSwitchInterval(5000);
    finalize_from_detached();
}

Test(gil, holder_without_safe_point_keeps_gil_until_check_signals)
{
    run_holder_keeps_gil(AT_CHECK_SIGNALS);
}

Test(gil, holder_without_safe_point_keeps_gil_until_make_pending_calls)
{
    run_holder_keeps_gil(AT_MAKE_PENDING_CALLS);
}

Test(gil, holder_without_safe_point_keeps_gil_until_it_detaches)
{
    run_holder_keeps_gil(BY_DETACHING);
}

/* Forced switching: the holder that answers a drop request must not re-take
 * the GIL before the waiter had it.  Once the waiter has made its request,
 * the interval goes up to 60 s, so neither the waiter (asking again) nor the
 * holder (giving up waiting for the switch) can time out in the test: if the
 * holder's safe point returns, the waiter must have attached already.
 * Without the hand-off the holder usually, not always, wins the race for the
 * released GIL, hence several rounds. */
#define FORCED_SWITCH_ROUNDS 5

Test(gil, forced_switch_gives_the_waiter_its_turn)
{
    if (ft_free_threaded) {
        cr_skip_test("GIL build only");
    }
    init_detached();
    for (int round = 0; round < FORCED_SWITCH_ROUNDS; round++) {
        memset(&ng, 0, sizeof ng);
        ng.how = AT_CHECK_SIGNALS;
        _PyEval_SetSwitchInterval(1000);
        ng.holder_ts = PyThreadState_New(PyInterpreterState_Main());
        ng.waiter_ts = PyThreadState_New(PyInterpreterState_Main());
        pthread_t h = test_start_thread(ng_holder, NULL);
        cr_assert(TEST_POLL_UNTIL(atomic_load(&ng.holder_attached), POLL_MS));
        pthread_t w = test_start_thread(ng_waiter, NULL);
        bool asked = TEST_POLL_UNTIL(breaker_of(ng.holder_ts) & FT_BREAK_GIL_DROP, POLL_MS);
        _PyEval_SetSwitchInterval(BIG_INTERVAL_US);
        cr_assert(asked, "round %d: the waiter never requested a GIL drop", round);
        cr_assert_eq(atomic_load(&ng.waiter_attached), 0);

        atomic_store(&ng.go, 1);
        bool holder_back = TEST_POLL_UNTIL(atomic_load(&ng.holder_back) != 0, POLL_MS);
        int waiter_had_it = atomic_load(&ng.waiter_attached_when_holder_back);
        int waiter_attached = atomic_load(&ng.waiter_attached);
        atomic_store(&ng.finish, 1);   /* lets the holder detach: a late waiter gets in */
        cr_assert(holder_back, "round %d: the holder never came back from its safe point", round);
        cr_assert_eq(waiter_had_it, 1, "round %d: the holder re-took the GIL before the waiter "
                                       "had it (waiter attached by then: %d)",
                     round, waiter_attached);
        test_join_thread(h);
        test_join_thread(w);
    }
    _PyEval_SetSwitchInterval(5000);
    finalize_from_detached();
}

Test(gil, ft_waiter_attaches_while_holder_spins)
{
    if (!ft_free_threaded) {
        cr_skip_test("free-threaded build only");
    }
    ng.how = AT_CHECK_SIGNALS;
    _PyEval_SetSwitchInterval(1);
    init_detached();
    ng.holder_ts = PyThreadState_New(PyInterpreterState_Main());
    ng.waiter_ts = PyThreadState_New(PyInterpreterState_Main());
    atomic_store(&ng.waiter_wait_for_main, 1);
    pthread_t h = test_start_thread(ng_holder, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&ng.holder_attached), POLL_MS));
    pthread_t w = test_start_thread(ng_waiter, NULL);
    bool in = TEST_POLL_UNTIL(atomic_load(&ng.waiter_attached), POLL_MS);
    int holder_kind = kind_of(ng.holder_ts);
    int waiter_kind = kind_of(ng.waiter_ts);
    uint32_t holder_breaker = breaker_of(ng.holder_ts);
    atomic_store(&ng.waiter_release, 1);
    atomic_store(&ng.go, 1);
    cr_assert(in, "the waiter could not attach while another thread spun attached");
    cr_assert_eq(holder_kind, FT_TS_ATTACHED);
    cr_assert_eq(waiter_kind, FT_TS_ATTACHED);
    cr_assert_eq(atomic_load(&ng.waiter_saw_holder_kind), FT_TS_ATTACHED);
    cr_assert_eq(holder_breaker & FT_BREAK_GIL_DROP, 0u, "a GIL drop was requested");
    cr_assert(atomic_load(&ng.waiter_saw_gil_holder_ok), "the GIL has a holder");
    cr_assert(TEST_POLL_UNTIL(atomic_load(&ng.holder_back) != 0, POLL_MS));
    cr_assert_eq(atomic_load(&ng.holder_back), 1);
    atomic_store(&ng.finish, 1);
    test_join_thread(h);
    test_join_thread(w);
    finalize_from_detached();
}

/* ---- PyMutex_Lock with the GIL ------------------------------------------------ */

/* A (the mutex holder) locks m attached, detaches, then re-attaches and
 * unlocks it.  B attaches and blocks in PyMutex_Lock(m) while holding the
 * GIL.  waiter_first: A is already waiting for the GIL when B blocks (B
 * waits for A's drop request first); otherwise B parks first and A
 * re-attaches afterwards. */
static struct {
    bool waiter_first;
    PyMutex m;
    atomic_int a_locked;
    atomic_int b_attached;
    atomic_int a_reattaching;
    atomic_int a_back;
    atomic_int a_done;
    atomic_int b_got;
    atomic_int b_attached_after;   /* B holds the GIL again after PyMutex_Lock */
    atomic_int b_saw_a_unlocked;   /* A's unlock happened before B got m */
    long protected_value;
} mx;

static void *
mx_a(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyMutex_Lock(&mx.m);
    mx.protected_value = 42;
    atomic_store(&mx.a_locked, 1);
    Py_BEGIN_ALLOW_THREADS
    while (!atomic_load(&mx.b_attached)) {
        sched_yield();
    }
    if (!mx.waiter_first) {
        /* B parks on m (the parked bit is set just before it sleeps) */
        while (!(ft_mutex_bits(&mx.m) & _Py_HAS_PARKED)) {
            sched_yield();
        }
    }
    atomic_store(&mx.a_reattaching, 1);
    Py_END_ALLOW_THREADS
    atomic_store(&mx.a_back, 1);
    mx.protected_value = 43;
    PyMutex_Unlock(&mx.m);
    PyGILState_Release(g);
    atomic_store(&mx.a_done, 1);
    return NULL;
}

static void *
mx_b(void *arg)
{
    (void)arg;
    while (!atomic_load(&mx.a_locked)) {
        sched_yield();
    }
    PyGILState_STATE g = PyGILState_Ensure();
    PyThreadState *me = PyThreadState_GetUnchecked();
    atomic_store(&mx.b_attached, 1);
    if (mx.waiter_first) {
        if (ft_free_threaded) {
            while (!atomic_load(&mx.a_reattaching)) {
                sched_yield();
            }
        }
        else {
            /* A waits for the GIL once it has asked us to drop it. */
            while (!(breaker_of(me) & FT_BREAK_GIL_DROP)) {
                sched_yield();
            }
        }
    }
    PyMutex_Lock(&mx.m);
    atomic_store(&mx.b_saw_a_unlocked, mx.protected_value == 43);
    atomic_store(&mx.b_attached_after,
                 PyThreadState_GetUnchecked() == me &&
                 (ft_free_threaded || gil_holder() == ft_ts(me)));
    atomic_store(&mx.b_got, 1);
    PyMutex_Unlock(&mx.m);
    PyGILState_Release(g);
    return NULL;
}

static void
run_mutex_with_gil(bool waiter_first)
{
    mx.waiter_first = waiter_first;
    _PyEval_SetSwitchInterval(1000);
    init_detached();
    pthread_t a = test_start_thread(mx_a, NULL);
    pthread_t b = test_start_thread(mx_b, NULL);
    bool got = TEST_POLL_UNTIL(atomic_load(&mx.b_got) && atomic_load(&mx.a_done), POLL_MS);
    cr_assert(got, "deadlock: A back %d, A done %d, B got the mutex %d",
              atomic_load(&mx.a_back), atomic_load(&mx.a_done), atomic_load(&mx.b_got));
    test_join_thread(a);
    test_join_thread(b);
    cr_assert(atomic_load(&mx.b_saw_a_unlocked));
    cr_assert(atomic_load(&mx.b_attached_after), "B is not attached (with the GIL) after "
                                                 "PyMutex_Lock returned");
    cr_assert_not(PyMutex_IsLocked(&mx.m));
    finalize_from_detached();
}

Test(gil, mutex_wait_releases_gil_when_holder_waits_first)
{
    run_mutex_with_gil(true);
}

Test(gil, mutex_wait_releases_gil_when_waiter_parks_first)
{
    run_mutex_with_gil(false);
}
