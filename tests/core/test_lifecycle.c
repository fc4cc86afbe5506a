/* core/lifecycle.c: Py_Initialize / Py_FinalizeEx, PyConfig and PyStatus,
 * exit callbacks, pending calls, version strings, and what happens to other
 * threads at finalization.
 *
 * Scenarios (cpython-ft-internals.md §14 H):
 *   H79  1000 init/finalize cycles in one process, heap flat
 *   H83  a second Py_Initialize is a no-op
 *   H85  init and finalize on a non-main thread
 *   H86  PyGILState_Ensure after finalization (and before init) hangs
 *   H87  threads attached, detached or blocked at finalization: finalize does
 *        not wait for them; any later attach hangs, never crashes; and a
 *        stress round of finalization racing threads that keep attaching,
 *        detaching, creating and deleting states
 * Also: concurrent first Py_Initialize calls, PyConfig/PyStatus, exit
 * callbacks (order, context, limits), pending calls (thread, order, errors,
 * bounds, re-entry, at finalization), version strings.
 *
 * "Hangs" is observed, not inferred: the runtime parks a hung thread in
 * pause() forever, so the test reads /proc/self/task/<tid>/syscall until the
 * helper's first field is the pause syscall, then lets the process exit with
 * the thread still there.  Helpers only record into atomics; the test's main
 * thread asserts.  Misuse that must be fatal runs in a forked child
 * (test_run_in_child) and the message must name the function.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_pystate.h"

#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(FT_SANITIZE_ADDRESS) || defined(FT_SANITIZE_THREAD)
/* from <sanitizer/allocator_interface.h>, which gcc does not install */
size_t __sanitizer_get_current_allocated_bytes(void);
#  define HEAP_COUNTER "sanitizer allocator"
#elif defined(FT_USE_JEMALLOC)
#  include <jemalloc/jemalloc.h>
#  define HEAP_COUNTER "jemalloc stats.allocated"
/* Thread caches hold freed blocks that the arena statistics still count as
 * allocated (tens of KB, depending on which thread freed what); without them
 * stats.allocated is exact.  This binary only: it replaces the library's
 * weak malloc_conf (sync/pymem_raw.c), whose setting it repeats. */
const char *malloc_conf = "tcache:false,slab_sizes:1-256:1";
#else
#  define HEAP_COUNTER "mallinfo2"
#endif

#define POLL_MS 5000

TestSuite(lifecycle, .timeout = FT_TIMEOUT(30));

/* ---- helpers ------------------------------------------------------------- */

#ifdef SYS_pause
#  define PAUSE_NR SYS_pause
#else
#  define PAUSE_NR SYS_ppoll   /* glibc's pause() where there is no pause syscall */
#endif

static pid_t
my_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* The syscall number thread tid is blocked in; -1 if it is running or gone. */
static long
blocked_syscall(pid_t tid)
{
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    char *end;
    long nr = strtol(buf, &end, 10);
    return end == buf ? -1 : nr;   /* "running" parses as nothing */
}

static bool
hung_in_pause(atomic_int *tid)
{
    pid_t t = (pid_t)atomic_load(tid);
    return t != 0 && blocked_syscall(t) == PAUSE_NR;
}

/* Bytes the allocator has handed out and not got back. */
static long long
heap_in_use(void)
{
#if defined(FT_SANITIZE_ADDRESS) || defined(FT_SANITIZE_THREAD)
    return (long long)__sanitizer_get_current_allocated_bytes();
#elif defined(FT_USE_JEMALLOC)
    uint64_t epoch = 1;
    size_t sz = sizeof epoch;
    cr_assert_eq(mallctl("epoch", &epoch, &sz, &epoch, sz), 0);
    size_t allocated = 0;
    sz = sizeof allocated;
    cr_assert_eq(mallctl("stats.allocated", &allocated, &sz, NULL, 0), 0);
    return (long long)allocated;
#else
    struct mallinfo2 mi = mallinfo2();
    return (long long)mi.uordblks;
#endif
}

/* ---- initialization -------------------------------------------------------- */

Test(lifecycle, nothing_before_initialize, .timeout = FT_TIMEOUT(10))
{
    cr_assert_eq(Py_IsInitialized(), 0);
    cr_assert_eq(Py_IsFinalizing(), 0);
    cr_assert_null(PyInterpreterState_Main());
    cr_assert_null(PyInterpreterState_Head());
    cr_assert_null(PyThreadState_GetUnchecked());
    cr_assert_eq(PyErr_CheckSignals(), 0, "no state: nothing to do");
    cr_assert_eq(Py_FinalizeEx(), 0, "finalizing an uninitialized runtime is a no-op");
    Py_Finalize();
    cr_assert_eq(Py_IsInitialized(), 0);
    cr_assert_null(PyThreadState_GetUnchecked());
}

Test(lifecycle, initialize_then_finalize, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    cr_assert_eq(Py_IsInitialized(), 1);
    cr_assert_eq(Py_IsFinalizing(), 0);
    PyThreadState *ts = PyThreadState_GetUnchecked();
    cr_assert_not_null(ts, "Py_Initialize leaves the caller with an attached state");
    cr_assert_eq(PyThreadState_Get(), ts);
    PyInterpreterState *interp = PyInterpreterState_Main();
    cr_assert_not_null(interp);
    cr_assert_eq(ts->interp, interp);
    cr_assert_eq(PyThreadState_GetInterpreter(ts), interp);
    cr_assert_eq(PyInterpreterState_Get(), interp);
    cr_assert_eq(PyInterpreterState_Head(), interp);
    cr_assert_null(PyInterpreterState_Next(interp));
    cr_assert_eq(PyInterpreterState_GetID(interp), 0);
    cr_assert_eq(PyInterpreterState_GetID(NULL), -1);
    cr_assert(PyErr_ExceptionMatches(PyExc_RuntimeError), "GetID(NULL): -1 with RuntimeError");
    PyErr_Clear();
    cr_assert_eq(PyGILState_Check(), 1);
    cr_assert_eq(PyGILState_GetThisThreadState(), ts);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(PyErr_CheckSignals(), 0);
    cr_assert_eq(Py_MakePendingCalls(), 0);

    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(Py_IsInitialized(), 0);
    cr_assert_eq(Py_IsFinalizing(), 0, "finalizing is over once Py_FinalizeEx returns");
    cr_assert_null(PyThreadState_GetUnchecked());
    cr_assert_null(PyInterpreterState_Main());
    cr_assert_null(PyInterpreterState_Head());
    cr_assert_null(PyGILState_GetThisThreadState(), "the main state was deleted");

    cr_assert_eq(Py_FinalizeEx(), 0, "a second Py_FinalizeEx is a no-op");
    Py_Finalize();
    cr_assert_eq(Py_IsInitialized(), 0);
    cr_assert_null(PyThreadState_GetUnchecked());
}

/* H83 */
Test(lifecycle, initialize_twice_is_noop, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyThreadState *ts = PyThreadState_Get();
    PyInterpreterState *interp = PyInterpreterState_Main();
    uint64_t id = PyThreadState_GetID(ts);

    Py_Initialize();
    cr_assert_eq(PyThreadState_GetUnchecked(), ts, "same attached state");
    cr_assert_eq(PyInterpreterState_Main(), interp, "same main interpreter");
    cr_assert_eq(PyThreadState_GetID(ts), id);
    Py_InitializeEx(0);
    Py_InitializeEx(1);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    cr_assert_eq(PyInterpreterState_Main(), interp);
    cr_assert_eq(test_count_states(interp), 1, "no second thread state");
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(Py_IsInitialized(), 0);
}

static struct {
    atomic_int done;
    atomic_int had_state;
    atomic_int saw_initialized;
} second_init;

static void *
second_init_thread(void *arg)
{
    (void)arg;
    Py_Initialize();
    atomic_store(&second_init.had_state, PyThreadState_GetUnchecked() != NULL);
    atomic_store(&second_init.saw_initialized, Py_IsInitialized());
    atomic_store(&second_init.done, 1);
    return NULL;
}

Test(lifecycle, initialize_on_other_thread_while_initialized_is_noop, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(second_init_thread, NULL);
    test_join_thread(t);
    cr_assert_eq(atomic_load(&second_init.done), 1);
    cr_assert_eq(atomic_load(&second_init.had_state), 0,
                 "a no-op Py_Initialize must not give the caller a thread state");
    cr_assert_eq(atomic_load(&second_init.saw_initialized), 1);
    PyEval_RestoreThread(save);
    cr_assert_eq(PyInterpreterState_Main(), interp);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* Two threads race Py_Initialize: exactly one initializes (and gets a
 * state); the other's call is a no-op.  Repeated, because the window is
 * short. */
#define RACE_ROUNDS 300

static struct {
    pthread_barrier_t start;
    pthread_barrier_t recorded;
    atomic_int states;            /* threads that came back with a state */
    atomic_int main_seen_early;   /* saw Py_IsInitialized() but no main interpreter */
    atomic_int finalized;
    atomic_int fin_rc;
} race;

static void *
race_init_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&race.start);
    Py_Initialize();
    PyThreadState *mine = PyThreadState_GetUnchecked();
    if (Py_IsInitialized() && PyInterpreterState_Main() == NULL) {
        atomic_store(&race.main_seen_early, 1);
    }
    PyThreadState *save = NULL;
    if (mine) {
        atomic_fetch_add(&race.states, 1);
        save = PyEval_SaveThread();   /* GIL build: let the loser in */
    }
    pthread_barrier_wait(&race.recorded);
    if (mine && atomic_load(&race.states) == 1) {
        PyEval_RestoreThread(save);
        atomic_store(&race.fin_rc, Py_FinalizeEx());
        atomic_store(&race.finalized, 1);
    }
    return NULL;
}

Test(lifecycle, concurrent_initialize_initializes_once, .timeout = FT_TIMEOUT(60))
{
    for (int round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_init(&race.start, NULL, 2);
        pthread_barrier_init(&race.recorded, NULL, 2);
        atomic_store(&race.states, 0);
        atomic_store(&race.finalized, 0);
        atomic_store(&race.fin_rc, -7);
        pthread_t a = test_start_thread(race_init_thread, NULL);
        pthread_t b = test_start_thread(race_init_thread, NULL);
        test_join_thread(a);
        test_join_thread(b);
        pthread_barrier_destroy(&race.start);
        pthread_barrier_destroy(&race.recorded);
        cr_assert_eq(atomic_load(&race.states), 1,
                     "round %d: %d threads came back from a concurrent Py_Initialize with "
                     "a thread state (the runtime was initialized twice)",
                     round, atomic_load(&race.states));
        cr_assert_eq(atomic_load(&race.main_seen_early), 0,
                     "Py_IsInitialized() was true before the main interpreter was published");
        cr_assert_eq(atomic_load(&race.finalized), 1);
        cr_assert_eq(atomic_load(&race.fin_rc), 0);
        cr_assert_eq(Py_IsInitialized(), 0);
    }
}

Test(lifecycle, initialize_ex_without_signals, .timeout = FT_TIMEOUT(10))
{
    Py_InitializeEx(0);
    cr_assert_eq(Py_IsInitialized(), 1);
    cr_assert_not_null(PyThreadState_GetUnchecked());
    cr_assert_eq(Py_FinalizeEx(), 0);
    Py_InitializeEx(1);
    cr_assert_eq(Py_IsInitialized(), 1);
    cr_assert_not_null(PyThreadState_GetUnchecked());
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- PyConfig / PyStatus ------------------------------------------------------ */

static void
check_initialized_by_config(void)
{
    cr_assert_eq(Py_IsInitialized(), 1);
    PyThreadState *ts = PyThreadState_GetUnchecked();
    cr_assert_not_null(ts);
    cr_assert_eq(ts->interp, PyInterpreterState_Main());
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(Py_IsInitialized(), 0);
}

static void
check_not_initialized(void)
{
    cr_assert_eq(Py_IsInitialized(), 0);
    cr_assert_null(PyThreadState_GetUnchecked());
    cr_assert_null(PyInterpreterState_Main());
    cr_assert_null(PyInterpreterState_Head());
}

Test(lifecycle, from_python_config, .timeout = FT_TIMEOUT(10))
{
    PyConfig config;
    memset(&config, 0xA5, sizeof config);
    PyConfig_InitPythonConfig(&config);
    PyStatus st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    cr_assert_eq(PyStatus_Exception(st), 0, "err_msg: %s", st.err_msg ? st.err_msg : "(null)");
    cr_assert_eq(PyStatus_IsError(st), 0);
    cr_assert_eq(PyStatus_IsExit(st), 0);
    check_initialized_by_config();
}

Test(lifecycle, from_isolated_config, .timeout = FT_TIMEOUT(10))
{
    PyConfig config;
    memset(&config, 0x5A, sizeof config);
    PyConfig_InitIsolatedConfig(&config);
    cr_assert_eq(config.isolated, 1);
    PyStatus st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    cr_assert_eq(PyStatus_Exception(st), 0, "err_msg: %s", st.err_msg ? st.err_msg : "(null)");
    check_initialized_by_config();
}

Test(lifecycle, from_config_switch_interval, .timeout = FT_TIMEOUT(10))
{
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.switch_interval_us = 1234;
    PyStatus st = Py_InitializeFromConfig(&config);
    cr_assert_eq(PyStatus_Exception(st), 0);
    cr_assert_eq(_PyEval_GetSwitchInterval(), 1234ul);
    check_initialized_by_config();
}

Test(lifecycle, from_config_when_initialized_is_noop, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyThreadState *ts = PyThreadState_Get();
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    PyStatus st = Py_InitializeFromConfig(&config);
    cr_assert_eq(PyStatus_Exception(st), 0);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    cr_assert_eq(test_count_states(PyInterpreterState_Main()), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(lifecycle, from_null_config_is_an_error, .timeout = FT_TIMEOUT(10))
{
    PyStatus st = Py_InitializeFromConfig(NULL);
    cr_assert_eq(PyStatus_Exception(st), 1);
    cr_assert_eq(PyStatus_IsError(st), 1);
    cr_assert_eq(PyStatus_IsExit(st), 0);
    cr_assert_not_null(st.err_msg);
    cr_assert_gt(strlen(st.err_msg), 0);
    check_not_initialized();
}

Test(lifecycle, from_uninitialised_config_is_an_error, .timeout = FT_TIMEOUT(10))
{
    static const unsigned char fill[] = { 0x00, 0xA5, 0xFF, 0x03 };
    for (size_t i = 0; i < sizeof fill; i++) {
        PyConfig config;
        memset(&config, fill[i], sizeof config);
        PyStatus st = Py_InitializeFromConfig(&config);
        cr_assert_eq(PyStatus_IsError(st), 1, "fill %#x", fill[i]);
        cr_assert_eq(PyStatus_Exception(st), 1);
        cr_assert_not_null(st.err_msg);
        cr_assert_gt(strlen(st.err_msg), 0);
        check_not_initialized();
    }
    /* nothing half-done is left behind: a proper config still works */
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    cr_assert_eq(PyStatus_Exception(Py_InitializeFromConfig(&config)), 0);
    check_initialized_by_config();
}

Test(lifecycle, status_helpers, .timeout = FT_TIMEOUT(10))
{
    PyStatus ok = PyStatus_Ok();
    cr_assert_eq(PyStatus_Exception(ok), 0);
    cr_assert_eq(PyStatus_IsError(ok), 0);
    cr_assert_eq(PyStatus_IsExit(ok), 0);

    PyStatus err = PyStatus_Error("it broke");
    cr_assert_eq(PyStatus_Exception(err), 1);
    cr_assert_eq(PyStatus_IsError(err), 1);
    cr_assert_eq(PyStatus_IsExit(err), 0);
    cr_assert_str_eq(err.err_msg, "it broke");

    PyStatus nomem = PyStatus_NoMemory();
    cr_assert_eq(PyStatus_Exception(nomem), 1);
    cr_assert_eq(PyStatus_IsError(nomem), 1);
    cr_assert_eq(PyStatus_IsExit(nomem), 0);
    cr_assert_not_null(nomem.err_msg);

    PyStatus ex = PyStatus_Exit(3);
    cr_assert_eq(PyStatus_Exception(ex), 1);
    cr_assert_eq(PyStatus_IsExit(ex), 1);
    cr_assert_eq(PyStatus_IsError(ex), 0);
    cr_assert_eq(ex.exitcode, 3);

    PyStatus ex0 = PyStatus_Exit(0);
    cr_assert_eq(PyStatus_Exception(ex0), 1, "an exit status is an exception even with code 0");
    cr_assert_eq(PyStatus_IsExit(ex0), 1);
}

static void
exit_status_7(void)
{
    Py_ExitStatusException(PyStatus_Exit(7));
}

static void
exit_status_error(void)
{
    Py_ExitStatusException(PyStatus_Error("the frobnicator failed"));
}

static void
exit_status_from_config(void)
{
    Py_ExitStatusException(Py_InitializeFromConfig(NULL));
}

static void
exit_status_ok(void)
{
    Py_ExitStatusException(PyStatus_Ok());
}

Test(lifecycle, exit_status_exception_exits_with_code, .timeout = FT_TIMEOUT(20))
{
    char err[2048];
    int st = test_run_in_child(exit_status_7, err, sizeof err);
    cr_assert(WIFEXITED(st), "child status %#x, stderr: %s", st, err);
    cr_assert_eq(WEXITSTATUS(st), 7);
}

Test(lifecycle, exit_status_exception_error_is_fatal, .timeout = FT_TIMEOUT(20))
{
    char err[2048];
    int st = test_run_in_child(exit_status_error, err, sizeof err);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "child status %#x, stderr: %s", st, err);
    cr_assert(strstr(err, "Fatal Python error: ") != NULL, "stderr: %s", err);
    cr_assert(strstr(err, "the frobnicator failed") != NULL, "stderr: %s", err);
}

Test(lifecycle, exit_status_exception_names_failing_function, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(exit_status_from_config, "Fatal Python error: Py_InitializeFromConfig: ");
}

Test(lifecycle, exit_status_exception_on_ok_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(exit_status_ok, "Fatal Python error: Py_ExitStatusException: ");
}

/* ---- H79: repeated initialization ------------------------------------------------ */

static void
init_finalize_cycles(int n, uint64_t *last_id)
{
    for (int i = 0; i < n; i++) {
        Py_Initialize();
        PyThreadState *ts = PyThreadState_GetUnchecked();
        if (!ts || Py_IsInitialized() != 1) {
            cr_assert_fail("cycle %d: Py_Initialize left no attached state", i);
        }
        uint64_t id = PyThreadState_GetID(ts);
        if (id <= *last_id) {
            cr_assert_fail("cycle %d: thread-state id %" PRIu64 " not above %" PRIu64, i, id,
                           *last_id);
        }
        *last_id = id;
        if (PyInterpreterState_GetID(PyInterpreterState_Main()) != 0) {
            cr_assert_fail("cycle %d: the main interpreter's id is not 0", i);
        }
        if (i % 97 == 0 && test_count_states(PyInterpreterState_Main()) != 1) {
            cr_assert_fail("cycle %d: %d thread states registered", i,
                           test_count_states(PyInterpreterState_Main()));
        }
        if (Py_FinalizeEx() != 0 || Py_IsInitialized() != 0 || PyThreadState_GetUnchecked()) {
            cr_assert_fail("cycle %d: Py_FinalizeEx", i);
        }
    }
}

/* 1000 cycles: 100 to warm up, then 900 measured.  A leak of one thread
 * state (or anything of 10 bytes and up) per cycle shows up as more than
 * 8 KB over 900 cycles; the measured cycles must move the counter by less.
 * (Each Py_FinalizeEx waits for an RCU barrier, about 10 ms with liburcu's
 * call_rcu thread, so this test takes ~10 s of mostly idle time.) */
#define LEAK_SLACK 8192

Test(lifecycle, reinit_1000_cycles_heap_flat, .timeout = FT_TIMEOUT(60))
{
    uint64_t last_id = 0;
    init_finalize_cycles(100, &last_id);
    long long before = heap_in_use();
    init_finalize_cycles(900, &last_id);
    long long after = heap_in_use();
    cr_log_info("%s: %lld -> %lld bytes over 900 cycles", HEAP_COUNTER, before, after);
    cr_assert_lt(after - before, LEAK_SLACK,
                 "%s grew by %lld bytes over 900 init/finalize cycles", HEAP_COUNTER,
                 after - before);
}

/* The same with the foreign-thread machinery in every cycle: a new native
 * thread uses PyGILState_Ensure, a guard, PyThreadState_EnsureFromView and
 * PyThreadState_Ensure; 200 measured cycles, so 4 KB is 20 bytes a cycle. */
static struct {
    PyInterpreterView *view;
    PyInterpreterState *interp;
    atomic_int bad;
} busy;

static void *
busy_cycle_thread(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyInterpreterGuard *guard = PyInterpreterGuard_FromCurrent();
    if (!guard || PyGILState_Check() != 1) {
        atomic_store(&busy.bad, 1);
    }
    PyGILState_Release(g);
    PyThreadStateToken *tok = PyThreadState_EnsureFromView(busy.view);
    if (!tok) {
        atomic_store(&busy.bad, 2);
    }
    else {
        PyThreadState_Release(tok);
    }
    if (guard) {
        tok = PyThreadState_Ensure(guard);
        if (!tok) {
            atomic_store(&busy.bad, 3);
        }
        else {
            PyThreadState_Release(tok);
        }
        PyInterpreterGuard_Close(guard);
    }
    if (PyThreadState_GetUnchecked() != NULL) {
        atomic_store(&busy.bad, 4);
    }
    return NULL;
}

static void
busy_cycles(int n)
{
    for (int i = 0; i < n; i++) {
        Py_Initialize();
        busy.interp = PyInterpreterState_Main();
        PyThreadState *save = PyEval_SaveThread();
        pthread_t t = test_start_thread(busy_cycle_thread, NULL);
        test_join_thread(t);
        PyEval_RestoreThread(save);
        if (atomic_load(&busy.bad)) {
            cr_assert_fail("cycle %d: foreign thread step %d failed", i, atomic_load(&busy.bad));
        }
        if (test_count_states(busy.interp) != 1) {
            cr_assert_fail("cycle %d: %d states left after the foreign thread finished", i,
                           test_count_states(busy.interp));
        }
        if (Py_FinalizeEx() != 0) {
            cr_assert_fail("cycle %d: Py_FinalizeEx", i);
        }
    }
}

Test(lifecycle, reinit_cycles_with_foreign_threads_heap_flat, .timeout = FT_TIMEOUT(60))
{
    busy.view = PyInterpreterView_FromMain();
    cr_assert_not_null(busy.view);
    busy_cycles(30);
    long long before = heap_in_use();
    busy_cycles(200);
    long long after = heap_in_use();
    cr_log_info("%s: %lld -> %lld bytes over 200 cycles", HEAP_COUNTER, before, after);
    cr_assert_lt(after - before, LEAK_SLACK / 2,
                 "%s grew by %lld bytes over 200 cycles with a foreign thread each",
                 HEAP_COUNTER, after - before);
    PyInterpreterView_Close(busy.view);
}

/* A state nobody deleted is shut down by finalization; deleting it later
 * frees it (LSan would report it otherwise). */
Test(lifecycle, delete_state_after_finalization, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyThreadState *orphan = PyThreadState_New(PyInterpreterState_Main());
    cr_assert_not_null(orphan);
    cr_assert_eq(test_count_states(PyInterpreterState_Main()), 2);
    cr_assert_eq(Py_FinalizeEx(), 0);
    PyThreadState_Delete(orphan);
    Py_Initialize();
    cr_assert_eq(test_count_states(PyInterpreterState_Main()), 1,
                 "a state of the previous cycle is still registered");
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- H85: a non-main thread initializes and finalizes ------------------------------ */

static struct {
    atomic_int tid;
    atomic_int had_state, initialized, pending_tid, pending_rc, fin_rc, after_init;
} h85;

static int
record_pending_tid(void *arg)
{
    (void)arg;
    atomic_store(&h85.pending_tid, my_tid());
    return 0;
}

static void *
h85_thread(void *arg)
{
    (void)arg;
    atomic_store(&h85.tid, my_tid());
    Py_Initialize();
    atomic_store(&h85.had_state, PyThreadState_GetUnchecked() != NULL);
    atomic_store(&h85.initialized, Py_IsInitialized());
    /* this thread is now "the main thread" for pending calls */
    if (Py_AddPendingCall(record_pending_tid, NULL) == 0) {
        atomic_store(&h85.pending_rc, Py_MakePendingCalls());
    }
    atomic_store(&h85.fin_rc, Py_FinalizeEx());
    atomic_store(&h85.after_init, Py_IsInitialized());
    return NULL;
}

Test(lifecycle, init_and_finalize_on_non_main_thread, .timeout = FT_TIMEOUT(10))
{
    atomic_store(&h85.fin_rc, -7);
    atomic_store(&h85.pending_rc, -7);
    atomic_store(&h85.after_init, -1);
    pthread_t t = test_start_thread(h85_thread, NULL);
    test_join_thread(t);
    cr_assert_eq(atomic_load(&h85.had_state), 1);
    cr_assert_eq(atomic_load(&h85.initialized), 1);
    cr_assert_eq(atomic_load(&h85.pending_rc), 0);
    cr_assert_eq(atomic_load(&h85.pending_tid), atomic_load(&h85.tid),
                 "the pending call must run on the thread that initialized");
    cr_assert_eq(atomic_load(&h85.fin_rc), 0);
    cr_assert_eq(atomic_load(&h85.after_init), 0);
    cr_assert_eq(Py_IsInitialized(), 0);
    cr_assert_null(PyThreadState_GetUnchecked());
    /* and the process's main thread can take over afterwards */
    Py_Initialize();
    cr_assert_not_null(PyThreadState_GetUnchecked());
    cr_assert_eq(test_count_states(PyInterpreterState_Main()), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- exit callbacks ----------------------------------------------------------------- */

#define MAX_EVENTS 80

static struct {
    atomic_int n;
    int who[MAX_EVENTS];            /* callback identity, in call order */
    int initialized[MAX_EVENTS];    /* Py_IsInitialized() inside */
    int finalizing[MAX_EVENTS];     /* Py_IsFinalizing() inside */
    int attached[MAX_EVENTS];       /* PyThreadState_GetUnchecked() == the main state */
    int has_state[MAX_EVENTS];      /* PyThreadState_GetUnchecked() != NULL */
    int main_interp[MAX_EVENTS];    /* PyInterpreterState_Main() != NULL */
    PyThreadState *main_ts;
} ev;

static void
record_event(int who)
{
    int i = atomic_fetch_add(&ev.n, 1);
    if (i >= MAX_EVENTS) {
        return;
    }
    ev.who[i] = who;
    ev.initialized[i] = Py_IsInitialized();
    ev.finalizing[i] = Py_IsFinalizing();
    ev.has_state[i] = PyThreadState_GetUnchecked() != NULL;
    ev.attached[i] = PyThreadState_GetUnchecked() == ev.main_ts;
    ev.main_interp[i] = PyInterpreterState_Main() != NULL;
}

static void at_exit_1(void) { record_event(1); }
static void at_exit_2(void) { record_event(2); }
static void at_exit_3(void) { record_event(3); }
static void at_exit_any(void) { record_event(0); }

static void
unstable_at_exit(void *data)
{
    record_event((int)(intptr_t)data);
}

Test(lifecycle, exit_callbacks_order_and_context, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    ev.main_ts = PyThreadState_Get();
    PyInterpreterState *interp = PyInterpreterState_Main();
    cr_assert_eq(Py_AtExit(at_exit_1), 0);
    cr_assert_eq(PyUnstable_AtExit(interp, unstable_at_exit, (void *)(intptr_t)101), 0);
    cr_assert_eq(Py_AtExit(at_exit_2), 0);
    cr_assert_eq(PyUnstable_AtExit(interp, unstable_at_exit, (void *)(intptr_t)102), 0);
    cr_assert_eq(Py_AtExit(at_exit_3), 0);
    cr_assert_eq(PyUnstable_AtExit(interp, unstable_at_exit, (void *)(intptr_t)103), 0);
    cr_assert_eq(atomic_load(&ev.n), 0, "nothing runs before Py_FinalizeEx");

    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(atomic_load(&ev.n), 6);
    static const int order[] = { 103, 102, 101, 3, 2, 1 };
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(ev.who[i], order[i], "call %d was %d, expected %d", i, ev.who[i], order[i]);
    }
    for (int i = 0; i < 3; i++) {   /* PyUnstable_AtExit: first, with the runtime alive */
        cr_assert_eq(ev.initialized[i], 1, "call %d", i);
        cr_assert_eq(ev.finalizing[i], 0, "call %d: not yet marked finalizing", i);
        cr_assert_eq(ev.attached[i], 1, "call %d: the finalizing state is attached", i);
        cr_assert_eq(ev.main_interp[i], 1, "call %d", i);
    }
    for (int i = 3; i < 6; i++) {   /* Py_AtExit: last, with the runtime gone */
        cr_assert_eq(ev.initialized[i], 0, "call %d", i);
        cr_assert_eq(ev.finalizing[i], 0, "call %d", i);
        cr_assert_eq(ev.has_state[i], 0, "call %d: no state may be attached", i);
        cr_assert_eq(ev.main_interp[i], 0, "call %d", i);
    }
    /* they ran once: a later cycle does not call them again */
    Py_Initialize();
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(atomic_load(&ev.n), 6);
}

Test(lifecycle, exit_callback_limits, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    cr_assert_eq(Py_AtExit(NULL), -1);
    cr_assert_eq(PyUnstable_AtExit(interp, NULL, NULL), -1);
    for (int i = 0; i < 32; i++) {
        cr_assert_eq(Py_AtExit(at_exit_any), 0, "Py_AtExit #%d", i + 1);
        cr_assert_eq(PyUnstable_AtExit(interp, unstable_at_exit, (void *)(intptr_t)(200 + i)), 0,
                     "PyUnstable_AtExit #%d", i + 1);
    }
    cr_assert_eq(Py_AtExit(at_exit_any), -1, "the 33rd Py_AtExit must fail");
    cr_assert_eq(PyUnstable_AtExit(interp, unstable_at_exit, (void *)(intptr_t)999), -1,
                 "the 33rd PyUnstable_AtExit must fail");
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(atomic_load(&ev.n), 64);
    for (int i = 0; i < 32; i++) {
        cr_assert_eq(ev.who[i], 231 - i);
        cr_assert_eq(ev.who[32 + i], 0);
    }
    /* the table is free again */
    Py_Initialize();
    cr_assert_eq(Py_AtExit(at_exit_any), 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(atomic_load(&ev.n), 65);
}

/* An exit callback that registers another one: it runs too (CPython's
 * atexit drains the list). */
static void
unstable_registers_more(void *data)
{
    (void)data;
    record_event(301);
    PyUnstable_AtExit(PyInterpreterState_Get(), unstable_at_exit, (void *)(intptr_t)302);
}

Test(lifecycle, exit_callback_registered_during_exit_runs, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    cr_assert_eq(PyUnstable_AtExit(PyInterpreterState_Main(), unstable_registers_more, NULL), 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(atomic_load(&ev.n), 2);
    cr_assert_eq(ev.who[0], 301);
    cr_assert_eq(ev.who[1], 302);
}

/* ---- version strings --------------------------------------------------------------- */

static void
check_version_strings(void)
{
    const char *v = Py_GetVersion();
    cr_assert_not_null(v);
    cr_assert(v[0] >= '1' && v[0] <= '9', "version starts with a number: \"%s\"", v);
    const char *p = v;
    while (*p >= '0' && *p <= '9') {
        p++;
    }
    cr_assert(p[0] == '.' && p[1] >= '0' && p[1] <= '9', "\"%s\" starts with N.M", v);
    if (ft_free_threaded) {
        cr_assert_not_null(strstr(v, "free-threaded"), "\"%s\"", v);
    }
    else {
        cr_assert_not_null(strstr(v, "GIL"), "\"%s\"", v);
        cr_assert_null(strstr(v, "free-threaded"), "\"%s\"", v);
    }
    const char *c = Py_GetCompiler();
    cr_assert_not_null(c);
    size_t cl = strlen(c);
    cr_assert(cl >= 3 && c[0] == '[' && c[cl - 1] == ']', "compiler in brackets: \"%s\"", c);
    cr_assert_not_null(strstr(v, c), "the version contains the compiler: \"%s\"", v);
    cr_assert_not_null(Py_GetPlatform());
    cr_assert_eq(strncmp(Py_GetPlatform(), "linux", 5), 0, "\"%s\"", Py_GetPlatform());
    cr_assert_not_null(Py_GetCopyright());
    cr_assert_not_null(strstr(Py_GetCopyright(), "Copyright"));
    const char *b = Py_GetBuildInfo();
    cr_assert_not_null(b);
    cr_assert_gt(strlen(b), 0);
    /* static: the same pointer every time */
    cr_assert_eq(Py_GetVersion(), v);
    cr_assert_eq(Py_GetCompiler(), c);
    cr_assert_eq(Py_GetBuildInfo(), b);
}

Test(lifecycle, version_strings, .timeout = FT_TIMEOUT(10))
{
    const char *before = Py_GetVersion();
    check_version_strings();   /* safe before initialization */
    Py_Initialize();
    check_version_strings();
    cr_assert_eq(Py_GetVersion(), before);
    cr_assert_eq(Py_FinalizeEx(), 0);
    check_version_strings();
}

/* ---- pending calls -------------------------------------------------------------------- */

#define MAX_CALLS 1100

static struct {
    atomic_int n;
    int arg[MAX_CALLS];
    pid_t tid[MAX_CALLS];
    atomic_int fail_on;        /* this arg returns -1 */
    atomic_int added, add_rc_bad;
    atomic_int inner_rc, inner_seen, inner_ran;
    atomic_int requeue_left;
} pc;

static int
pc_record(void *arg)
{
    int i = atomic_fetch_add(&pc.n, 1);
    if (i < MAX_CALLS) {
        pc.arg[i] = (int)(intptr_t)arg;
        pc.tid[i] = my_tid();
    }
    return (int)(intptr_t)arg == atomic_load(&pc.fail_on) ? -1 : 0;
}

static void *
pc_adder(void *arg)
{
    int count = (int)(intptr_t)arg;
    for (int i = 1; i <= count; i++) {
        if (Py_AddPendingCall(pc_record, (void *)(intptr_t)i) != 0) {
            atomic_store(&pc.add_rc_bad, i);
        }
    }
    atomic_store(&pc.added, 1);
    return NULL;
}

static void
add_from_other_thread(int count)
{
    atomic_store(&pc.added, 0);
    pthread_t t = test_start_thread(pc_adder, (void *)(intptr_t)count);
    test_join_thread(t);
    cr_assert_eq(atomic_load(&pc.added), 1);
    cr_assert_eq(atomic_load(&pc.add_rc_bad), 0, "Py_AddPendingCall #%d failed",
                 atomic_load(&pc.add_rc_bad));
}

static void
check_ran_in_order(int from, int to, pid_t tid)
{
    for (int i = from; i < to; i++) {
        cr_assert_eq(pc.arg[i], i - from + 1, "call %d ran with arg %d", i, pc.arg[i]);
        cr_assert_eq(pc.tid[i], tid, "call %d ran on thread %d, not %d", i, (int)pc.tid[i],
                     (int)tid);
    }
}

Test(lifecycle, pending_calls_run_in_main_thread_fifo, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    atomic_store(&pc.fail_on, -1);
    add_from_other_thread(3);
    cr_assert_eq(atomic_load(&pc.n), 0, "pending calls run only at a safe point");
    cr_assert_eq(Py_MakePendingCalls(), 0);
    cr_assert_eq(atomic_load(&pc.n), 3);
    check_ran_in_order(0, 3, my_tid());
    cr_assert_eq(Py_MakePendingCalls(), 0);
    cr_assert_eq(atomic_load(&pc.n), 3, "each call runs once");
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(lifecycle, pending_calls_run_at_check_signals, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    atomic_store(&pc.fail_on, -1);
    add_from_other_thread(4);
    cr_assert_eq(PyErr_CheckSignals(), 0);
    cr_assert_eq(atomic_load(&pc.n), 4);
    check_ran_in_order(0, 4, my_tid());
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static struct {
    atomic_int done, make_rc, check_rc, ran_before, ran_after;
} pc_other;

static void *
pc_other_thread(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&pc_other.ran_before, atomic_load(&pc.n));
    atomic_store(&pc_other.make_rc, Py_MakePendingCalls());
    atomic_store(&pc_other.check_rc, PyErr_CheckSignals());
    atomic_store(&pc_other.ran_after, atomic_load(&pc.n));
    PyGILState_Release(g);
    atomic_store(&pc_other.done, 1);
    return NULL;
}

Test(lifecycle, pending_calls_never_run_on_other_threads, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    atomic_store(&pc.fail_on, -1);
    cr_assert_eq(Py_AddPendingCall(pc_record, (void *)(intptr_t)1), 0);
    PyThreadState *save = PyEval_SaveThread();
    atomic_store(&pc_other.make_rc, -7);
    atomic_store(&pc_other.check_rc, -7);
    pthread_t t = test_start_thread(pc_other_thread, NULL);
    test_join_thread(t);
    cr_assert_eq(atomic_load(&pc_other.done), 1);
    cr_assert_eq(atomic_load(&pc_other.make_rc), 0);
    cr_assert_eq(atomic_load(&pc_other.check_rc), 0);
    cr_assert_eq(atomic_load(&pc_other.ran_before), 0);
    cr_assert_eq(atomic_load(&pc_other.ran_after), 0,
                 "a non-main thread's Py_MakePendingCalls ran a pending call");
    PyEval_RestoreThread(save);
    cr_assert_eq(Py_MakePendingCalls(), 0);
    cr_assert_eq(atomic_load(&pc.n), 1);
    check_ran_in_order(0, 1, my_tid());
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(lifecycle, pending_call_failure_leaves_the_rest_queued, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    atomic_store(&pc.fail_on, 2);
    add_from_other_thread(3);
    cr_assert_eq(Py_MakePendingCalls(), -1);
    cr_assert_eq(atomic_load(&pc.n), 2, "calls 1 and 2 ran, 3 waits");
    atomic_store(&pc.fail_on, -1);
    cr_assert_eq(Py_MakePendingCalls(), 0);
    cr_assert_eq(atomic_load(&pc.n), 3);
    check_ran_in_order(0, 3, my_tid());
    cr_assert_eq(Py_MakePendingCalls(), 0);
    cr_assert_eq(atomic_load(&pc.n), 3);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(lifecycle, pending_queue_is_bounded, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    atomic_store(&pc.fail_on, -1);
    cr_assert_eq(Py_AddPendingCall(NULL, NULL), -1);
    add_from_other_thread(FT_PENDING_MAX);
    cr_assert_eq(Py_AddPendingCall(pc_record, (void *)(intptr_t)99), -1,
                 "the queue holds %d calls", FT_PENDING_MAX);
    cr_assert_eq(Py_MakePendingCalls(), 0);
    cr_assert_eq(atomic_load(&pc.n), FT_PENDING_MAX);
    check_ran_in_order(0, FT_PENDING_MAX, my_tid());
    /* room again */
    cr_assert_eq(Py_AddPendingCall(pc_record, (void *)(intptr_t)1), 0);
    cr_assert_eq(Py_MakePendingCalls(), 0);
    cr_assert_eq(atomic_load(&pc.n), FT_PENDING_MAX + 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static int
pc_reentrant(void *arg)
{
    (void)arg;
    atomic_store(&pc.inner_rc, Py_MakePendingCalls());
    atomic_store(&pc.inner_seen, atomic_load(&pc.n));
    atomic_fetch_add(&pc.inner_ran, 1);
    return 0;
}

Test(lifecycle, pending_call_is_not_reentered, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    atomic_store(&pc.fail_on, -1);
    atomic_store(&pc.inner_rc, -7);
    cr_assert_eq(Py_AddPendingCall(pc_reentrant, NULL), 0);
    cr_assert_eq(Py_AddPendingCall(pc_record, (void *)(intptr_t)1), 0);
    cr_assert_eq(Py_MakePendingCalls(), 0);
    cr_assert_eq(atomic_load(&pc.inner_ran), 1);
    cr_assert_eq(atomic_load(&pc.inner_rc), 0);
    cr_assert_eq(atomic_load(&pc.inner_seen), 0,
                 "the nested Py_MakePendingCalls ran the next call");
    cr_assert_eq(atomic_load(&pc.n), 1, "the outer one ran it afterwards");
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* CPython's Py_MakePendingCalls runs the queue on the main thread of the
 * main interpreter whichever of its thread states is attached there. */
Test(lifecycle, pending_calls_run_under_another_main_thread_state, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    atomic_store(&pc.fail_on, -1);
    PyThreadState *main_ts = PyThreadState_Get();
    PyThreadState *other = PyThreadState_New(PyInterpreterState_Main());
    cr_assert_eq(PyThreadState_Swap(other), main_ts);
    cr_assert_eq(Py_AddPendingCall(pc_record, (void *)(intptr_t)1), 0);
    cr_assert_eq(Py_MakePendingCalls(), 0);
    cr_assert_eq(atomic_load(&pc.n), 1,
                 "Py_MakePendingCalls on the main thread with a second state of the main "
                 "interpreter attached did not run the queued call");
    cr_assert_eq(PyThreadState_Swap(main_ts), other);
    cr_assert_eq(Py_MakePendingCalls(), 0);
    cr_assert_eq(atomic_load(&pc.n), 1, "each call runs once");
    PyThreadState_Clear(other);
    PyThreadState_Delete(other);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* CPython's finalization makes the remaining pending calls
 * (_Py_FinishPendingCalls) before the exit callbacks, with the runtime
 * intact; they are not silently dropped. */
static int
pc_record_context(void *arg)
{
    record_event((int)(intptr_t)arg);
    return 0;
}

Test(lifecycle, pending_calls_left_at_finalize_are_run, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    ev.main_ts = PyThreadState_Get();
    cr_assert_eq(PyUnstable_AtExit(PyInterpreterState_Main(), unstable_at_exit,
                                   (void *)(intptr_t)2), 0);
    cr_assert_eq(Py_AddPendingCall(pc_record_context, (void *)(intptr_t)1), 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(atomic_load(&ev.n), 2,
                 "%d callbacks ran: a pending call queued at Py_FinalizeEx was dropped",
                 atomic_load(&ev.n));
    cr_assert_eq(ev.who[0], 1, "the pending call runs first");
    cr_assert_eq(ev.who[1], 2);
    cr_assert_eq(ev.initialized[0], 1);
    cr_assert_eq(ev.attached[0], 1, "on the finalizing thread, attached");
}

/* A call that queues itself again: one Py_MakePendingCalls must come back
 * after a bounded number of calls (CPython runs at most a queue's worth per
 * pass, "in case of recursion"), not run until the callback stops. */
#define REQUEUE_TOTAL 1000

static int
pc_requeue(void *arg)
{
    (void)arg;
    atomic_fetch_add(&pc.n, 1);
    if (atomic_fetch_sub(&pc.requeue_left, 1) > 1) {
        Py_AddPendingCall(pc_requeue, NULL);
    }
    return 0;
}

Test(lifecycle, self_requeuing_pending_call_is_bounded, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    atomic_store(&pc.requeue_left, REQUEUE_TOTAL);
    cr_assert_eq(Py_AddPendingCall(pc_requeue, NULL), 0);
    cr_assert_eq(Py_MakePendingCalls(), 0);
    int first = atomic_load(&pc.n);
    cr_assert_geq(first, 1);
    cr_assert_leq(first, FT_PENDING_MAX,
                  "one Py_MakePendingCalls ran %d calls of a self-requeuing pending call",
                  first);
    for (int i = 0; i < 2 * REQUEUE_TOTAL && atomic_load(&pc.n) < REQUEUE_TOTAL; i++) {
        cr_assert_eq(Py_MakePendingCalls(), 0);
    }
    cr_assert_eq(atomic_load(&pc.n), REQUEUE_TOTAL);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- H87: finalization with live threads ------------------------------------------------ */

enum late_kind {
    LATE_END_ALLOW_THREADS,      /* GILState state, detached in Py_BEGIN_ALLOW_THREADS */
    LATE_RESTORE_THREAD,         /* user state, PyEval_RestoreThread */
    LATE_ACQUIRE_THREAD,         /* user state, PyEval_AcquireThread */
    LATE_SWAP,                   /* user state, PyThreadState_Swap */
    LATE_GILSTATE_AFTER_USE,     /* used GILState before, PyGILState_Ensure after */
    LATE_GILSTATE_WITH_USER,     /* a detached user state, PyGILState_Ensure after */
};

static struct {
    enum late_kind kind;
    PyInterpreterState *interp;
    atomic_int ready, go, tid, escaped;
} late;

static void *
late_attacher(void *arg)
{
    (void)arg;
    PyThreadState *ts = NULL;
    switch (late.kind) {
    case LATE_END_ALLOW_THREADS: {
        PyGILState_STATE g = PyGILState_Ensure();
        Py_BEGIN_ALLOW_THREADS
        atomic_store(&late.ready, 1);
        test_wait_flag(&late.go, 4 * POLL_MS);
        atomic_store(&late.tid, my_tid());
        Py_END_ALLOW_THREADS
        atomic_store(&late.escaped, 1);
        PyGILState_Release(g);
        return NULL;
    }
    case LATE_GILSTATE_AFTER_USE: {
        PyGILState_STATE g = PyGILState_Ensure();
        PyGILState_Release(g);
        atomic_store(&late.ready, 1);
        test_wait_flag(&late.go, 4 * POLL_MS);
        atomic_store(&late.tid, my_tid());
        g = PyGILState_Ensure();
        atomic_store(&late.escaped, 1);
        return NULL;
    }
    default:
        break;
    }
    ts = PyThreadState_New(late.interp);
    PyEval_RestoreThread(ts);   /* attached once on this thread */
    PyEval_SaveThread();
    atomic_store(&late.ready, 1);
    test_wait_flag(&late.go, 4 * POLL_MS);
    atomic_store(&late.tid, my_tid());
    switch (late.kind) {
    case LATE_RESTORE_THREAD:
        PyEval_RestoreThread(ts);
        break;
    case LATE_ACQUIRE_THREAD:
        PyEval_AcquireThread(ts);
        break;
    case LATE_SWAP:
        PyThreadState_Swap(ts);
        break;
    case LATE_GILSTATE_WITH_USER:
        (void)PyGILState_Ensure();
        break;
    default:
        break;
    }
    atomic_store(&late.escaped, 1);
    return NULL;
}

/* Finalize while the helper holds a detached state; then let it attach. */
static void
run_attach_after_finalize(enum late_kind kind)
{
    late.kind = kind;
    Py_Initialize();
    late.interp = PyInterpreterState_Main();
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(late_attacher, NULL);
    pthread_detach(t);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&late.ready), POLL_MS));
    PyEval_RestoreThread(save);
    cr_assert_eq(Py_FinalizeEx(), 0, "finalize does not wait for detached threads");
    cr_assert_eq(Py_IsInitialized(), 0);
    atomic_store(&late.go, 1);
    cr_assert(TEST_POLL_UNTIL(hung_in_pause(&late.tid), POLL_MS),
              "the helper did not hang in pause() (blocked in syscall %ld, escaped %d)",
              atomic_load(&late.tid) ? blocked_syscall(atomic_load(&late.tid)) : -2,
              atomic_load(&late.escaped));
    cr_assert_eq(atomic_load(&late.escaped), 0, "an attach after finalization returned");
    /* the process exits with the helper still hung */
}

Test(lifecycle, end_allow_threads_after_finalize_hangs, .timeout = FT_TIMEOUT(20))
{
    run_attach_after_finalize(LATE_END_ALLOW_THREADS);
}

Test(lifecycle, restore_thread_after_finalize_hangs, .timeout = FT_TIMEOUT(20))
{
    run_attach_after_finalize(LATE_RESTORE_THREAD);
}

Test(lifecycle, acquire_thread_after_finalize_hangs, .timeout = FT_TIMEOUT(20))
{
    run_attach_after_finalize(LATE_ACQUIRE_THREAD);
}

Test(lifecycle, swap_after_finalize_hangs, .timeout = FT_TIMEOUT(20))
{
    run_attach_after_finalize(LATE_SWAP);
}

Test(lifecycle, gilstate_ensure_after_finalize_hangs_on_used_thread, .timeout = FT_TIMEOUT(20))
{
    run_attach_after_finalize(LATE_GILSTATE_AFTER_USE);
}

Test(lifecycle, gilstate_ensure_after_finalize_hangs_with_user_state, .timeout = FT_TIMEOUT(20))
{
    run_attach_after_finalize(LATE_GILSTATE_WITH_USER);
}

/* H86: a brand-new native thread calls PyGILState_Ensure after finalization
 * (or before any initialization): it hangs; nothing crashes. */
static struct {
    atomic_int tid, escaped;
} fresh;

static void *
fresh_ensure_thread(void *arg)
{
    (void)arg;
    atomic_store(&fresh.tid, my_tid());
    (void)PyGILState_Ensure();
    atomic_store(&fresh.escaped, 1);
    return NULL;
}

static void
check_fresh_thread_hangs(void)
{
    pthread_t t = test_start_thread(fresh_ensure_thread, NULL);
    pthread_detach(t);
    cr_assert(TEST_POLL_UNTIL(hung_in_pause(&fresh.tid), POLL_MS),
              "PyGILState_Ensure did not hang (escaped %d)", atomic_load(&fresh.escaped));
    cr_assert_eq(atomic_load(&fresh.escaped), 0);
}

Test(lifecycle, gilstate_ensure_after_finalize_hangs, .timeout = FT_TIMEOUT(20))
{
    Py_Initialize();
    cr_assert_eq(Py_FinalizeEx(), 0);
    check_fresh_thread_hangs();
    /* the process can still re-initialize and finalize around the hung thread */
    Py_Initialize();
    cr_assert_eq(test_count_states(PyInterpreterState_Main()), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(lifecycle, gilstate_ensure_before_initialize_hangs, .timeout = FT_TIMEOUT(20))
{
    check_fresh_thread_hangs();
}

/* Finalize while a helper is blocked in PyMutex_Lock (detached by the
 * parking hook); when it finally gets the mutex, re-attaching hangs. */
static struct {
    PyMutex m;
    atomic_int tid, attached, escaped;
} mx;

static void *
mutex_waiter(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&mx.attached, 1);
    atomic_store(&mx.tid, my_tid());
    PyMutex_Lock(&mx.m);
    atomic_store(&mx.escaped, 1);
    PyMutex_Unlock(&mx.m);
    PyGILState_Release(g);
    return NULL;
}

Test(lifecycle, thread_blocked_on_mutex_at_finalize_hangs, .timeout = FT_TIMEOUT(20))
{
    Py_Initialize();
    PyMutex_Lock(&mx.m);
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(mutex_waiter, NULL);
    pthread_detach(t);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&mx.attached) &&
                              (ft_mutex_bits(&mx.m) & _Py_HAS_PARKED), POLL_MS));
    PyEval_RestoreThread(save);   /* GIL build: the waiter detached to park */
    cr_assert_eq(Py_FinalizeEx(), 0);
    PyMutex_Unlock(&mx.m);        /* hands the mutex to the waiter, which re-attaches */
    cr_assert(TEST_POLL_UNTIL(hung_in_pause(&mx.tid), POLL_MS),
              "the waiter did not hang after finalization (escaped %d)",
              atomic_load(&mx.escaped));
    cr_assert_eq(atomic_load(&mx.escaped), 0);
}

/* GIL build: a thread waiting for the GIL when Py_FinalizeEx runs. */
static struct {
    atomic_int tid, escaped;
} gilw;

static void *
gil_waiter(void *arg)
{
    (void)arg;
    atomic_store(&gilw.tid, my_tid());
    (void)PyGILState_Ensure();
    atomic_store(&gilw.escaped, 1);
    return NULL;
}

Test(lifecycle, thread_waiting_for_gil_at_finalize_hangs, .timeout = FT_TIMEOUT(20))
{
    if (ft_free_threaded) {
        cr_skip_test("free-threaded build: there is no GIL to wait for");
    }
    Py_Initialize();
    ft_tstate *me = ft_current();
    pthread_t t = test_start_thread(gil_waiter, NULL);
    pthread_detach(t);
    /* a waiter that has waited a whole switch interval asks us to drop it */
    cr_assert(TEST_POLL_UNTIL(atomic_load(&me->breaker) & FT_BREAK_GIL_DROP, POLL_MS),
              "no thread is waiting for the GIL");
    cr_assert_eq(Py_FinalizeEx(), 0, "finalize does not wait for a thread blocked on the GIL");
    cr_assert(TEST_POLL_UNTIL(hung_in_pause(&gilw.tid), POLL_MS),
              "the GIL waiter did not hang (escaped %d)", atomic_load(&gilw.escaped));
    cr_assert_eq(atomic_load(&gilw.escaped), 0);
}

/* An attached thread delays finalization until its next safe point (the
 * free-threaded build stops the world; the GIL build needs the GIL), then
 * hangs there.  The finalizing thread is a helper too, so the test thread
 * can watch it. */
static struct {
    atomic_int f_ready, go_finalize, fin_done, fin_rc;
    atomic_int h_attached, allow_safe_point, h_saw_finalizing, h_tid, h_escaped;
    ft_tstate *_Atomic h_ts;
} sp;

static void *
sp_finalizer(void *arg)
{
    (void)arg;
    Py_Initialize();
    PyThreadState *save = PyEval_SaveThread();
    atomic_store(&sp.f_ready, 1);
    test_wait_flag(&sp.go_finalize, 4 * POLL_MS);
    PyEval_RestoreThread(save);
    atomic_store(&sp.fin_rc, Py_FinalizeEx());
    atomic_store(&sp.fin_done, 1);
    return NULL;
}

/* Whether the helper may reach its safe point; notes whether finalization
 * has begun meanwhile. */
static bool
sp_allowed_noting_finalizing(void)
{
    if (Py_IsFinalizing()) {
        atomic_store(&sp.h_saw_finalizing, 1);
    }
    return atomic_load(&sp.allow_safe_point);
}

static void *
sp_attached_helper(void *arg)
{
    (void)arg;
    atomic_store(&sp.h_tid, my_tid());
    (void)PyGILState_Ensure();
    atomic_store(&sp.h_ts, ft_current());
    atomic_store(&sp.h_attached, 1);
    /* attached, in C, no safe point, until allowed */
    TEST_HELPER_WAIT(sp_allowed_noting_finalizing(), 4 * POLL_MS);
    for (;;) {
        PyErr_CheckSignals();
        if (atomic_load(&sp.fin_done)) {
            atomic_store(&sp.h_escaped, 1);   /* attached after finalization */
            return NULL;
        }
    }
}

Test(lifecycle, finalize_waits_for_attached_thread_safe_point, .timeout = FT_TIMEOUT(30))
{
    atomic_store(&sp.fin_rc, -7);
    pthread_t f = test_start_thread(sp_finalizer, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&sp.f_ready), POLL_MS));
    pthread_t h = test_start_thread(sp_attached_helper, NULL);
    pthread_detach(h);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&sp.h_attached), POLL_MS));
    atomic_store(&sp.go_finalize, 1);
    if (ft_free_threaded) {
        /* finalizing is marked, then the stop waits for the helper */
        cr_assert(TEST_POLL_UNTIL(Py_IsFinalizing() == 1, POLL_MS));
        cr_assert(TEST_POLL_UNTIL(atomic_load(&sp.h_saw_finalizing), POLL_MS));
    }
    else {
        /* the finalizer waits for the GIL the helper holds */
        ft_tstate *hts = atomic_load(&sp.h_ts);
        cr_assert(TEST_POLL_UNTIL(atomic_load(&hts->breaker) & FT_BREAK_GIL_DROP, POLL_MS));
    }
    cr_assert_not(TEST_POLL_UNTIL(atomic_load(&sp.fin_done), 200),
                  "Py_FinalizeEx returned while a thread was attached");
    cr_assert_eq(Py_IsInitialized(), 1);
    atomic_store(&sp.allow_safe_point, 1);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&sp.fin_done), POLL_MS),
              "Py_FinalizeEx did not finish once the attached thread reached a safe point");
    cr_assert_eq(atomic_load(&sp.fin_rc), 0);
    test_join_thread(f);
    cr_assert_eq(Py_IsInitialized(), 0);
    cr_assert_eq(Py_IsFinalizing(), 0);
    if (!ft_free_threaded) {
        cr_assert_eq(atomic_load(&sp.h_saw_finalizing), 0,
                     "GIL build: finalizing was marked while another thread held the GIL");
    }
    cr_assert(TEST_POLL_UNTIL(hung_in_pause(&sp.h_tid), POLL_MS),
              "the helper did not hang at its safe point (escaped %d)",
              atomic_load(&sp.h_escaped));
    cr_assert_eq(atomic_load(&sp.h_escaped), 0);
}

/* Finalization racing with threads that keep creating, attaching, detaching
 * and deleting states (PyGILState_Ensure/Release, PyThreadState_EnsureFromView
 * /Release, PyThreadState_New/RestoreThread/DeleteCurrent): every round
 * finalize returns 0, every helper ends hung in pause(), nothing crashes
 * (ASan/TSan builds check memory and ordering), and the next cycle starts
 * with only its own state. */
#define RACE_FIN_ROUNDS 60
#define RACE_FIN_HELPERS 3

static struct {
    PyInterpreterView *view;
    PyInterpreterState *interp;
    atomic_int tid[RACE_FIN_HELPERS];
    atomic_int loops[RACE_FIN_HELPERS];
} rf;

static void *
race_fin_helper(void *arg)
{
    int k = (int)(intptr_t)arg;
    atomic_store(&rf.tid[k], my_tid());
    for (;;) {
        switch (k % 3) {
        case 0: {
            PyGILState_STATE g = PyGILState_Ensure();
            PyGILState_Release(g);
            break;
        }
        case 1: {
            PyThreadStateToken *tok = PyThreadState_EnsureFromView(rf.view);
            if (!tok) {   /* finalization has begun: attach and detach (hangs once it
                           * is marked finalizing) */
                PyGILState_STATE g = PyGILState_Ensure();
                PyGILState_Release(g);
            }
            else {
                PyThreadState_Release(tok);
            }
            break;
        }
        default: {   /* the state is created while attached: no late registration */
            PyGILState_STATE g = PyGILState_Ensure();
            PyThreadState *ts = PyThreadState_New(PyInterpreterState_Get());
            PyGILState_Release(g);
            PyEval_RestoreThread(ts);
            PyThreadState_Clear(ts);
            PyThreadState_DeleteCurrent();
            break;
        }
        }
        atomic_fetch_add(&rf.loops[k], 1);
    }
    return NULL;
}

static bool
all_hung(void)
{
    for (int k = 0; k < RACE_FIN_HELPERS; k++) {
        if (!hung_in_pause(&rf.tid[k])) {
            return false;
        }
    }
    return true;
}

static bool
all_looping(int at_least)
{
    for (int k = 0; k < RACE_FIN_HELPERS; k++) {
        if (atomic_load(&rf.loops[k]) < at_least) {
            return false;
        }
    }
    return true;
}

Test(lifecycle, finalize_races_with_attaching_threads, .timeout = FT_TIMEOUT(60))
{
    rf.view = PyInterpreterView_FromMain();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int round = 0; round < RACE_FIN_ROUNDS; round++) {
        Py_Initialize();
        rf.interp = PyInterpreterState_Main();
        if (test_count_states(rf.interp) != 1) {
            ft_tstate *stale = NULL;
            for (PyThreadState *t = PyInterpreterState_ThreadHead(rf.interp); t;
                 t = PyThreadState_Next(t)) {
                if (t != PyThreadState_Get()) {
                    stale = ft_ts(t);
                    break;
                }
            }
            cr_assert_fail("round %d: a state from an earlier cycle is registered "
                           "(whence %d, state kind %d, cleared %d)", round,
                           stale ? stale->whence : -1,
                           stale ? FT_TS_KIND(atomic_load(&stale->state)) : -1,
                           stale ? stale->cleared : -1);
        }
        for (int k = 0; k < RACE_FIN_HELPERS; k++) {
            atomic_store(&rf.tid[k], 0);
            atomic_store(&rf.loops[k], 0);
            pthread_t t;
            cr_assert_eq(pthread_create(&t, &attr, race_fin_helper, (void *)(intptr_t)k), 0);
        }
        PyThreadState *save = PyEval_SaveThread();
        cr_assert(TEST_POLL_UNTIL(all_looping(1 + round % 7), POLL_MS),
                  "round %d: helpers stuck before finalization: loops %d %d %d, "
                  "syscalls %ld %ld %ld", round, atomic_load(&rf.loops[0]),
                  atomic_load(&rf.loops[1]), atomic_load(&rf.loops[2]),
                  blocked_syscall(atomic_load(&rf.tid[0])),
                  blocked_syscall(atomic_load(&rf.tid[1])),
                  blocked_syscall(atomic_load(&rf.tid[2])));
        PyEval_RestoreThread(save);
        cr_assert_eq(Py_FinalizeEx(), 0, "round %d", round);
        cr_assert(TEST_POLL_UNTIL(all_hung(), POLL_MS), "round %d: a helper did not hang",
                  round);
    }
    pthread_attr_destroy(&attr);
    PyInterpreterView_Close(rf.view);
}

/* ---- misuse: fatal errors ---------------------------------------------------------------- */

static void
finalize_detached(void)
{
    Py_Initialize();
    (void)PyEval_SaveThread();
    (void)Py_FinalizeEx();
}

Test(lifecycle, finalize_without_attached_state_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(finalize_detached, "Fatal Python error: Py_FinalizeEx: ");
}

static void
finalize_with_other_state(void)
{
    Py_Initialize();
    PyThreadState *other = PyThreadState_New(PyInterpreterState_Main());
    (void)PyThreadState_Swap(other);
    (void)Py_FinalizeEx();
}

Test(lifecycle, finalize_with_another_state_attached_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(finalize_with_other_state, "Fatal Python error: Py_FinalizeEx: ");
}

static void *
finalize_from_foreign(void *arg)
{
    (void)arg;
    (void)PyGILState_Ensure();
    (void)Py_FinalizeEx();
    return NULL;
}

static void
finalize_from_other_thread(void)
{
    Py_Initialize();
    (void)PyEval_SaveThread();
    pthread_t t;
    pthread_create(&t, NULL, finalize_from_foreign, NULL);
    pthread_join(t, NULL);
}

Test(lifecycle, finalize_from_non_initializing_thread_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(finalize_from_other_thread, "Fatal Python error: Py_FinalizeEx: ");
}

static void
finalize_in_exit_callback(void *data)
{
    (void)data;
    (void)Py_FinalizeEx();
}

static void
finalize_recursively(void)
{
    Py_Initialize();
    PyUnstable_AtExit(PyInterpreterState_Main(), finalize_in_exit_callback, NULL);
    (void)Py_FinalizeEx();
}

Test(lifecycle, finalize_from_exit_callback_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(finalize_recursively, "Fatal Python error: Py_FinalizeEx: ");
}

static void
make_pending_detached(void)
{
    Py_Initialize();
    (void)PyEval_SaveThread();
    (void)Py_MakePendingCalls();
}

Test(lifecycle, make_pending_calls_without_state_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(make_pending_detached, "Fatal Python error: Py_MakePendingCalls: ");
}

static void
unstable_at_exit_detached(void)
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    (void)PyEval_SaveThread();
    (void)PyUnstable_AtExit(interp, unstable_at_exit, NULL);
}

Test(lifecycle, unstable_at_exit_without_state_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(unstable_at_exit_detached, "Fatal Python error: PyUnstable_AtExit: ");
}
