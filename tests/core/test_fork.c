/* fork(): PyOS_BeforeFork / PyOS_AfterFork_Parent / PyOS_AfterFork_Child
 * (core/fork.c), white-box, in both builds.
 *
 * Every test forks the way os.fork does: PyOS_BeforeFork(); fork(); the
 * child calls PyOS_AfterFork_Child() and the parent PyOS_AfterFork_Parent().
 * The child reports through its exit status, one code per check (the child
 * also prints which check failed), and can never hang: it arms alarm() the
 * moment it exists, so a hang shows up as SIGALRM in the parent, which
 * asserts the status in the test's main thread.
 *
 * What the child checks (child_standard):
 *   - only the forking thread's state is left (PyInterpreterState_ThreadHead
 *     / PyThreadState_Next: exactly one state, the current one), it is the
 *     interpreter's initial state, this thread is the main thread (pending
 *     calls run here), PyGILState knows it;
 *   - the runtime's own PyMutexes are unlocked and usable, the parking lot
 *     forgot the parent's parked threads, fresh PyMutexes work, contended;
 *   - GIL build: the forking thread holds the GIL; free-threaded: the stop
 *     the world begun by BeforeFork is over;
 *   - four new threads attach (PyGILState_Ensure, or their own
 *     PyThreadState_New + PyEval_RestoreThread) and detach in a loop around
 *     a shared PyMutex; PyUnstable_AtExit callbacks run; Py_FinalizeEx()
 *     == 0; then Py_Initialize, threads again, Py_FinalizeEx() == 0.
 * The parent forks while other threads
 *   - hold PyMutexes (locked before the fork, released after it),
 *   - are parked on a PyMutex (the parking lot has waiters at fork time),
 *   - are attached and spinning with safe points (free-threaded: BeforeFork
 *     stops the world, so they must be suspended; GIL: the forking thread
 *     holds the GIL) -- between BeforeFork and AfterFork_Parent none of them
 *     is attached and none makes progress,
 *   - are detached in Py_BEGIN_ALLOW_THREADS, or create and delete thread
 *     states in a loop, or (held there by a signal handler) are inside
 *     PyThreadState_New, linking a state into the registry as liburcu
 *     readers,
 * and checks that they all carry on after AfterFork_Parent and that the
 * parent finalizes cleanly.  Also: fork from a non-main thread with an
 * attached state (PyThreadState_New + PyEval_RestoreThread, and
 * PyGILState_Ensure); fork from a thread with no thread state; fork before
 * Py_Initialize and after Py_FinalizeEx; liburcu in the child (grace periods
 * and call_rcu callbacks queued before and after the fork, thousands of
 * thread states freed through call_rcu, finalization's rcu_barrier); two
 * threads forking at the same time; 20 forks in a row with workers running.
 *
 * ThreadSanitizer ignores everything in the child of a multi-threaded
 * process (and dies if a thread there reuses a dead thread's pthread_t, so
 * the children's threads get odd-sized stacks under TSan); it still checks
 * the parents and the children of single-threaded ones.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_lock.h"
#include "ft_parking_lot.h"
#include "ft_pystate.h"

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_MS 5000
/* A child needs well under a second (a few under sanitizers); a hung one
 * costs this much, so it is not scaled all the way. */
#define CHILD_ALARM_S (FT_TIMEOUT_SCALE > 1 ? 30 : 10)
/* test_wait_child scales this; the child's alarm fires well before. */
#define CHILD_WAIT_MS 20000

/* GCC 12's AddressSanitizer does not lock its allocator around fork(): a
 * thread in malloc or free at that moment leaves an allocator lock held in
 * the child, whose next malloc of that size hangs.  Under ASan the tests keep
 * their own threads out of the allocator while they fork (workers that
 * create thread states pause; threads exit only after the forks). */
#ifdef FT_SANITIZE_ADDRESS
static const bool asan_build = true;
#else
static const bool asan_build = false;
#endif

/* The child's last stage, in memory shared with the parent, so that a child
 * that hangs (SIGALRM) or crashes says where it was. */
#define TRACE_SLOTS 4

struct child_trace {
    char stage[TRACE_SLOTS][96];
};
static struct child_trace *trace;
/* Threads that fork at the same time use different slots. */
static _Thread_local int trace_slot;

static void
trace_init(void)
{
    void *p = mmap(NULL, sizeof *trace, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    trace = p == MAP_FAILED ? NULL : p;
}

static void
set_stage(const char *stage)
{
    if (trace) {
        char *dst = trace->stage[trace_slot];
        size_t n = strlen(stage);
        n = n < sizeof trace->stage[0] - 1 ? n : sizeof trace->stage[0] - 1;
        memcpy(dst, stage, n);
        dst[n] = '\0';
    }
}

TestSuite(fork, .init = trace_init, .timeout = FT_TIMEOUT(40));

/* ---- the child's side ---------------------------------------------------------- */

/* Exit codes of a child; 0 is success.  Each check has its own. */
enum child_code {
    C_OK = 0,
    C_CURRENT = 10,        /* the forking thread's state is not the current one */
    C_INTERP,
    C_STATE_COUNT,         /* other thread states survived */
    C_STATE_MISSING,       /* the current state is not in the list */
    C_KIND,
    C_GILSTATE,
    C_INITIAL,             /* the forking thread's state is not the initial one */
    C_MAIN_THREAD,
    C_STW,                 /* free-threaded: the stop-the-world did not end */
    C_GIL_HOLDER,          /* GIL build: the forking thread does not hold the GIL */
    C_RUNTIME_LOCK,        /* a runtime PyMutex is still locked */
    C_PARKING_LOT,         /* the parent's parked threads are still queued */
    C_FRESH_MUTEX,
    C_PENDING_ADD,
    C_PENDING_RUN,
    C_PENDING_COUNT,
    C_ATEXIT_ADD,
    C_THREAD_CREATE,
    C_THREADS_COUNT,       /* the shared counter lost updates */
    C_THREADS_BAD,         /* a thread found itself not attached after Ensure */
    C_FINALIZE,
    C_STILL_INITIALIZED,
    C_STILL_ATTACHED,
    C_ATEXIT_RAN,
    C_REINIT,
    C_REINIT_STATE_COUNT,
    C_REFINALIZE,
    C_RCU_COUNT_BEFORE,    /* callbacks queued before the fork did not all run */
    C_RCU_COUNT_AFTER,     /* callbacks queued in the child did not all run */
    C_NEW_STATE,
    C_NO_STATE,            /* the forking thread had no state: none expected */
    C_ENSURE,
};

static void
child_fail(int code, int line, const char *what)
{
    char buf[300];
    int n = snprintf(buf, sizeof buf, "fork child %d: check %d failed (test_fork.c:%d): %s\n",
                     (int)getpid(), code, line, what);
    if (n > 0) {
        (void)!write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    }
    _exit(code);
}

#define CHILD_CHECK(cond, code)                  \
    do {                                         \
        if (!(cond)) {                           \
            child_fail((code), __LINE__, #cond); \
        }                                        \
    } while (0)

/* Number of states in interp's list; *found says whether `want` is one. */
static int
count_states(PyInterpreterState *interp, PyThreadState *want, bool *found)
{
    int n = 0;
    *found = false;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts; ts = PyThreadState_Next(ts)) {
        n++;
        if (ts == want) {
            *found = true;
        }
    }
    return n;
}

/* Each runtime lock is unlocked, and can be taken and given back. */
static bool
runtime_locks_usable(PyInterpreterState *interp)
{
    PyMutex *locks[] = { &ft_rt.interp_lock, &ft_rt.pending_lock, &interp->atexit_lock,
                         &interp->stw.mutex };
    for (size_t i = 0; i < sizeof locks / sizeof locks[0]; i++) {
        if (ft_mutex_bits(locks[i]) != 0 || !ft_mutex_trylock(locks[i])) {
            return false;
        }
        PyMutex_Unlock(locks[i]);
    }
    return true;
}

static atomic_int pending_ran;

static int
pending_cb(void *arg)
{
    (void)arg;
    atomic_fetch_add(&pending_ran, 1);
    return 0;
}

static atomic_int atexit_ran;

static void
atexit_cb(void *data)
{
    (void)data;
    atomic_fetch_add(&atexit_ran, 1);
}

/* Threads the child starts: Ensure / Release around a shared PyMutex. */
#define CHILD_THREADS 4
#define CHILD_ROUNDS 200

static PyMutex child_mutex;
static long child_counter;          /* under child_mutex */
static atomic_int child_bad;

/* Even-numbered threads attach with PyGILState_Ensure / Release, odd ones
 * with their own PyThreadState_New + PyEval_RestoreThread / SaveThread. */
static void *
child_worker(void *arg)
{
    int rounds = (int)((intptr_t)arg >> 1);
    bool own_state = ((intptr_t)arg & 1) != 0;
    PyThreadState *own = NULL;
    if (own_state) {
        own = PyThreadState_New(PyInterpreterState_Main());
        if (!own) {
            atomic_fetch_add(&child_bad, 1);
            return NULL;
        }
    }
    for (int i = 0; i < rounds; i++) {
        PyGILState_STATE g = PyGILState_UNLOCKED;
        if (own_state) {
            PyEval_RestoreThread(own);
        }
        else {
            g = PyGILState_Ensure();
        }
        if (PyThreadState_GetUnchecked() == NULL || !PyGILState_Check() ||
            (own_state && PyThreadState_GetUnchecked() != own)) {
            atomic_fetch_add(&child_bad, 1);
        }
        PyMutex_Lock(&child_mutex);
        long v = child_counter;
        if (i % 16 == 0) {
            (void)PyErr_CheckSignals();   /* may switch the GIL: the mutex still excludes */
        }
        child_counter = v + 1;
        PyMutex_Unlock(&child_mutex);
        if (own_state) {
            (void)PyEval_SaveThread();
        }
        else {
            PyGILState_Release(g);
        }
    }
    if (own_state) {
        PyEval_RestoreThread(own);
        PyThreadState_Clear(own);
        PyThreadState_DeleteCurrent();
    }
    return NULL;
}

/* Called attached; starts and joins `n` threads of `rounds` rounds: 0 if
 * they all ran correctly, else the failed check's code. */
static int
run_threads(int n, int rounds)
{
    pthread_t t[CHILD_THREADS];
    int started = 0;
    set_stage(n == CHILD_THREADS ? "threads: 4 x attach / PyMutex / detach"
                                 : "threads: 2 x attach / PyMutex / detach");
    child_counter = 0;
    atomic_store(&child_bad, 0);
    /* ThreadSanitizer (GCC 12's) dies ("dup thread with used id") when a
     * thread created after fork() gets the pthread_t of a parent thread that
     * did not survive it, which glibc arranges by reusing the dead threads'
     * cached stacks.  Under TSan only, ask for a stack no cached one fits. */
    pthread_attr_t attr, *attrp = NULL;
    if (ft_sanitize_thread && pthread_attr_init(&attr) == 0) {
        size_t size = 0;
        if (pthread_attr_getstacksize(&attr, &size) == 0 &&
            pthread_attr_setstacksize(&attr, 2 * size + 65536) == 0) {
            attrp = &attr;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < n && i < CHILD_THREADS; i++) {
        intptr_t how = ((intptr_t)rounds << 1) | (i & 1);
        if (pthread_create(&t[i], attrp, child_worker, (void *)how) == 0) {
            started++;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
    }
    Py_END_ALLOW_THREADS
    if (attrp) {
        pthread_attr_destroy(attrp);
    }
    if (started != n) {
        return C_THREAD_CREATE;
    }
    if (child_counter != (long)n * rounds) {
        return C_THREADS_COUNT;
    }
    if (atomic_load(&child_bad) != 0) {
        return C_THREADS_BAD;
    }
    return 0;
}

/* In a child: run_threads, exiting on failure. */
static void
child_run_threads(int n, int rounds)
{
    int code = run_threads(n, rounds);
    if (code) {
        child_fail(code, __LINE__, "run_threads");
    }
}

/* In the parent (main thread). */
#define parent_run_threads(n, rounds) \
    cr_assert_eq(run_threads((n), (rounds)), 0, "threads in the parent failed")

/* The current state is the only one, and everything around it is sane. */
static void
child_check_alone(PyThreadState *me)
{
    CHILD_CHECK(me != NULL && PyThreadState_GetUnchecked() == me, C_CURRENT);
    PyInterpreterState *interp = PyInterpreterState_Main();
    CHILD_CHECK(interp != NULL && me->interp == interp, C_INTERP);
    bool found;
    if (count_states(interp, me, &found) != 1) {
        /* say what survived */
        for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts;
             ts = PyThreadState_Next(ts)) {
            char buf[160];
            int len = snprintf(buf, sizeof buf, "fork child: state %p id %llu kind %d whence %d%s\n",
                               (void *)ts, (unsigned long long)ft_ts(ts)->id, kind_of(ts),
                               (int)ft_ts(ts)->whence, ts == me ? " (current)" : "");
            if (len > 0) {
                (void)!write(STDERR_FILENO, buf, (size_t)len < sizeof buf ? (size_t)len : sizeof buf - 1);
            }
        }
        child_fail(C_STATE_COUNT, __LINE__, "count_states(interp, me, &found) == 1");
    }
    CHILD_CHECK(found, C_STATE_MISSING);
    CHILD_CHECK(kind_of(me) == FT_TS_ATTACHED, C_KIND);
    CHILD_CHECK(PyGILState_Check() && PyGILState_GetThisThreadState() == me, C_GILSTATE);
}

/* Finalize, re-initialize, run threads, finalize again. */
static void
child_finalize_and_cycle(void)
{
    set_stage("Py_FinalizeEx");
    CHILD_CHECK(Py_FinalizeEx() == 0, C_FINALIZE);
    CHILD_CHECK(!Py_IsInitialized(), C_STILL_INITIALIZED);
    CHILD_CHECK(PyThreadState_GetUnchecked() == NULL, C_STILL_ATTACHED);
    set_stage("Py_Initialize after Py_FinalizeEx");
    Py_Initialize();
    PyThreadState *ts = PyThreadState_GetUnchecked();
    CHILD_CHECK(ts != NULL && Py_IsInitialized(), C_REINIT);
    bool found;
    CHILD_CHECK(count_states(PyInterpreterState_Main(), ts, &found) == 1 && found,
                C_REINIT_STATE_COUNT);
    child_run_threads(2, 50);
    set_stage("second Py_FinalizeEx");
    CHILD_CHECK(Py_FinalizeEx() == 0, C_REFINALIZE);
    set_stage("done");
}

struct child_args {
    PyThreadState *me;     /* the forking thread's state */
    PyMutex *parked_on;    /* the parent had threads parked on it at fork time */
};

static int
child_standard(void *argp)
{
    struct child_args *a = argp;
    PyThreadState *me = a->me;
    set_stage("checks after PyOS_AfterFork_Child");
    child_check_alone(me);
    PyInterpreterState *interp = me->interp;
    CHILD_CHECK(interp->initial == ft_ts(me), C_INITIAL);
    CHILD_CHECK(ft_rt.main_thread == PyThread_get_thread_ident(), C_MAIN_THREAD);
    if (ft_free_threaded) {
        uint64_t seq = atomic_load(&interp->stw.seq);
        CHILD_CHECK((seq & 1) == 0 && atomic_load(&interp->stw.requester) == NULL, C_STW);
    }
    else {
        CHILD_CHECK(atomic_load(&ft_rt.gil.holder) == ft_ts(me), C_GIL_HOLDER);
    }
    CHILD_CHECK(runtime_locks_usable(interp), C_RUNTIME_LOCK);
    if (a->parked_on) {
        CHILD_CHECK(ft_parking_lot_unpark_all(&a->parked_on->_bits) == 0, C_PARKING_LOT);
    }
    set_stage("fresh PyMutexes, pending calls, atexit");
    static PyMutex fresh[64];
    for (int i = 0; i < 64; i++) {
        PyMutex_Lock(&fresh[i]);
    }
    for (int i = 0; i < 64; i++) {
        CHILD_CHECK(PyMutex_IsLocked(&fresh[i]), C_FRESH_MUTEX);
        PyMutex_Unlock(&fresh[i]);
        CHILD_CHECK(!PyMutex_IsLocked(&fresh[i]), C_FRESH_MUTEX);
    }
    int ran = atomic_load(&pending_ran);
    CHILD_CHECK(Py_AddPendingCall(pending_cb, NULL) == 0, C_PENDING_ADD);
    CHILD_CHECK(Py_MakePendingCalls() == 0, C_PENDING_RUN);
    CHILD_CHECK(atomic_load(&pending_ran) == ran + 1, C_PENDING_COUNT);
    atomic_store(&atexit_ran, 0);
    CHILD_CHECK(PyUnstable_AtExit(interp, atexit_cb, NULL) == 0, C_ATEXIT_ADD);

    child_run_threads(CHILD_THREADS, CHILD_ROUNDS);
    child_check_alone(me);

    set_stage("Py_FinalizeEx");
    CHILD_CHECK(Py_FinalizeEx() == 0, C_FINALIZE);
    CHILD_CHECK(atomic_load(&atexit_ran) == 1, C_ATEXIT_RAN);
    CHILD_CHECK(!Py_IsInitialized(), C_STILL_INITIALIZED);
    set_stage("Py_Initialize after Py_FinalizeEx");
    Py_Initialize();
    CHILD_CHECK(PyThreadState_GetUnchecked() != NULL, C_REINIT);
    child_finalize_and_cycle();
    return C_OK;
}

/* A lighter child for the repeated and concurrent forks. */
static int
child_light(void *argp)
{
    struct child_args *a = argp;
    set_stage("checks after PyOS_AfterFork_Child");
    child_check_alone(a->me);
    CHILD_CHECK(runtime_locks_usable(a->me->interp), C_RUNTIME_LOCK);
    child_run_threads(2, 50);
    set_stage("Py_FinalizeEx");
    CHILD_CHECK(Py_FinalizeEx() == 0, C_FINALIZE);
    set_stage("done");
    return C_OK;
}

/* ---- forking ---------------------------------------------------------------------- */

typedef int child_fn(void *arg);

/* BeforeFork, fork, AfterFork_*; the child runs fn and exits with its
 * value.  In the parent, `before` (if not NULL) runs between BeforeFork and
 * fork(), `between` between fork() and AfterFork_Parent, both with
 * hook_arg.  Any thread may call it.  Returns the child's pid (or -1). */
static pid_t
fork_with(child_fn *fn, void *arg, void (*before)(void *), void (*between)(void *),
          void *hook_arg)
{
    fflush(NULL);
    set_stage("(the child never started)");
    PyOS_BeforeFork();
    if (before) {
        before(hook_arg);
    }
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(SIGALRM, &sa, NULL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGALRM);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        alarm(CHILD_ALARM_S);   /* a hang becomes SIGALRM */
        set_stage("PyOS_AfterFork_Child");
        PyOS_AfterFork_Child();
        set_stage("the child's first step");
        _exit(fn(arg));
    }
    if (between) {
        between(hook_arg);
    }
    PyOS_AfterFork_Parent();
    return pid;
}

static pid_t
fork_simple(child_fn *fn, void *arg)
{
    return fork_with(fn, arg, NULL, NULL, NULL);
}

/* Wait for the child, detached if the caller is attached (so that, in the
 * GIL build, the parent's other threads keep running).  Returns its wait
 * status; a child that had to be killed is reported as killed. */
static int
wait_child(pid_t pid)
{
    if (pid <= 0) {
        return -1;
    }
    PyThreadState *ts = PyThreadState_GetUnchecked();
    if (ts) {
        (void)PyEval_SaveThread();
    }
    int status = 0;
    (void)test_wait_child(pid, CHILD_WAIT_MS, &status);
    if (ts) {
        PyEval_RestoreThread(ts);
    }
    return status;
}

static const char *
describe(int status, char *buf, size_t cap)
{
    if (status == -1) {
        snprintf(buf, cap, "fork() failed");
    }
    else if (WIFEXITED(status)) {
        snprintf(buf, cap, "exit code %d", WEXITSTATUS(status));
    }
    else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        snprintf(buf, cap, "signal %d (%s)%s", sig, strsignal(sig),
                 sig == SIGALRM ? ": the child hung" :
                 sig == SIGKILL ? ": killed after waiting too long" : "");
    }
    else {
        snprintf(buf, cap, "wait status %#x", status);
    }
    if (trace && status != -1 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, "; the child's last stage: %s", trace->stage[trace_slot]);
    }
    return buf;
}

#define assert_child_ok(status, what)                                                  \
    do {                                                                               \
        int st_ = (status);                                                            \
        char buf_[256];                                                                \
        cr_assert(st_ != -1 && WIFEXITED(st_) && WEXITSTATUS(st_) == 0,                \
                  "%s: the child failed: %s", (what), describe(st_, buf_, sizeof buf_)); \
    } while (0)

/* ---- the parent's other threads ------------------------------------------------------ */

enum worker_kind {
    W_HOLD,          /* locks its mutex attached, waits detached for `release` */
    W_PARK,          /* blocks in PyMutex_Lock on a mutex a W_HOLD holds */
    W_SPIN,          /* attached, spinning with PyErr_CheckSignals */
    W_DETACHED,      /* inside Py_BEGIN_ALLOW_THREADS */
    W_CYCLE,         /* PyGILState_Ensure / Release in a loop (states come and go) */
    W_MUTEX_LOOP,    /* Ensure, then lock / unlock a shared mutex in a loop */
    W_STW,           /* free-threaded: stop and start the world in a loop */
};

struct worker {
    enum worker_kind kind;
    PyMutex *target;
    pthread_t thread;
    PyThreadState *_Atomic ts;     /* its state (not for W_CYCLE) */
    atomic_int ready;
    atomic_long progress;
    atomic_int bad;
    atomic_int quiet;              /* W_CYCLE paused for wk_quiesce (ASan) */
};

static atomic_int wk_stop;
static atomic_int wk_release;
static atomic_int wk_quiesce;      /* ASan: W_CYCLE, stay out of malloc */
static PyMutex wk_loop_mutex;

static void
worker_after_release(struct worker *w)
{
    /* carry on: lock and unlock the target until told to stop */
    while (!atomic_load(&wk_stop)) {
        PyMutex_Lock(w->target);
        atomic_fetch_add(&w->progress, 1);
        PyMutex_Unlock(w->target);
        (void)PyErr_CheckSignals();
        sched_yield();
    }
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    PyGILState_STATE g;
    switch (w->kind) {
    case W_HOLD:
        g = PyGILState_Ensure();
        atomic_store(&w->ts, PyThreadState_GetUnchecked());
        PyMutex_Lock(w->target);
        atomic_store(&w->ready, 1);
        Py_BEGIN_ALLOW_THREADS
        while (!atomic_load(&wk_release)) {
            sched_yield();
        }
        Py_END_ALLOW_THREADS
        PyMutex_Unlock(w->target);
        atomic_fetch_add(&w->progress, 1);
        worker_after_release(w);
        PyGILState_Release(g);
        break;
    case W_PARK:
        g = PyGILState_Ensure();
        atomic_store(&w->ts, PyThreadState_GetUnchecked());
        atomic_store(&w->ready, 1);   /* nothing detaches us now but parking */
        PyMutex_Lock(w->target);
        if (!atomic_load(&wk_release) || PyThreadState_GetUnchecked() != atomic_load(&w->ts)) {
            atomic_fetch_add(&w->bad, 1);
        }
        atomic_fetch_add(&w->progress, 1);
        PyMutex_Unlock(w->target);
        worker_after_release(w);
        PyGILState_Release(g);
        break;
    case W_SPIN:
        g = PyGILState_Ensure();
        atomic_store(&w->ts, PyThreadState_GetUnchecked());
        atomic_store(&w->ready, 1);
        while (!atomic_load_explicit(&wk_stop, memory_order_relaxed)) {
            atomic_fetch_add_explicit(&w->progress, 1, memory_order_relaxed);
            (void)PyErr_CheckSignals();
        }
        PyGILState_Release(g);
        break;
    case W_DETACHED:
        g = PyGILState_Ensure();
        atomic_store(&w->ts, PyThreadState_GetUnchecked());
        Py_BEGIN_ALLOW_THREADS
        atomic_store(&w->ready, 1);
        while (!atomic_load(&wk_stop)) {
            atomic_fetch_add(&w->progress, 1);
            sched_yield();
        }
        Py_END_ALLOW_THREADS
        PyGILState_Release(g);
        break;
    case W_CYCLE:
        while (!atomic_load(&wk_stop)) {
            if (atomic_load(&wk_quiesce)) {
                atomic_store(&w->quiet, 1);
                while (atomic_load(&wk_quiesce) && !atomic_load(&wk_stop)) {
                    sched_yield();
                }
                atomic_store(&w->quiet, 0);
                continue;
            }
            g = PyGILState_Ensure();
            if (PyThreadState_GetUnchecked() == NULL) {
                atomic_fetch_add(&w->bad, 1);
            }
            atomic_fetch_add(&w->progress, 1);
            PyGILState_Release(g);
            atomic_store(&w->ready, 1);
        }
        break;
    case W_MUTEX_LOOP:
        g = PyGILState_Ensure();
        atomic_store(&w->ts, PyThreadState_GetUnchecked());
        atomic_store(&w->ready, 1);
        for (long i = 0; !atomic_load(&wk_stop); i++) {
            PyMutex_Lock(w->target);
            atomic_fetch_add(&w->progress, 1);
            if (i % 8 == 0) {
                (void)PyErr_CheckSignals();   /* may be stopped holding it */
            }
            PyMutex_Unlock(w->target);
            if (i % 4 == 0) {
                Py_BEGIN_ALLOW_THREADS
                sched_yield();
                Py_END_ALLOW_THREADS
            }
        }
        PyGILState_Release(g);
        break;
    case W_STW:
        g = PyGILState_Ensure();
        atomic_store(&w->ts, PyThreadState_GetUnchecked());
        atomic_store(&w->ready, 1);
        while (!atomic_load(&wk_stop)) {
            ft_stop_the_world(PyInterpreterState_Main(), PyUnstable_STOP_OTHER);
            atomic_fetch_add(&w->progress, 1);
            ft_start_the_world(PyInterpreterState_Main());
            (void)PyErr_CheckSignals();
            sched_yield();
        }
        PyGILState_Release(g);
        break;
    }
    return NULL;
}

/* ASan only: the workers that allocate (W_CYCLE) pause before a fork. */
static void
quiesce_allocating_workers(struct worker *w, int n)
{
    if (!asan_build) {
        return;
    }
    atomic_store(&wk_quiesce, 1);
    /* detached meanwhile: they may need the GIL, or a stop may need us */
    PyThreadState *ts = PyThreadState_GetUnchecked();
    if (ts) {
        (void)PyEval_SaveThread();
    }
    bool quiet = true;
    for (int i = 0; i < n; i++) {
        if (w[i].kind == W_CYCLE) {
            quiet = quiet && TEST_POLL_UNTIL(atomic_load(&w[i].quiet), POLL_MS);
        }
    }
    if (ts) {
        PyEval_RestoreThread(ts);
    }
    cr_assert(quiet, "a worker never paused");
}

static void
resume_allocating_workers(void)
{
    atomic_store(&wk_quiesce, 0);
}

/* Called detached (main thread).  One at a time, in order: a W_PARK must
 * find its mutex held by the W_HOLD started before it. */
static void
start_workers(struct worker *w, int n)
{
    for (int i = 0; i < n; i++) {
        w[i].thread = test_start_thread(worker_main, &w[i]);
        cr_assert(TEST_POLL_UNTIL(atomic_load(&w[i].ready), POLL_MS),
                  "worker %d (kind %d) never got ready", i, (int)w[i].kind);
    }
}

/* Parked: it said it was about to lock, and the park hook detached it. */
static bool
all_parked(struct worker *w, int n)
{
    for (int i = 0; i < n; i++) {
        if (w[i].kind == W_PARK &&
            (!atomic_load(&w[i].ready) || kind_of(atomic_load(&w[i].ts)) != FT_TS_DETACHED)) {
            return false;
        }
    }
    return true;
}

static bool
all_progressed(struct worker *w, int n, const long *since)
{
    for (int i = 0; i < n; i++) {
        if (atomic_load(&w[i].progress) <= since[i]) {
            return false;
        }
    }
    return true;
}

static void
stop_workers(struct worker *w, int n)
{
    atomic_store(&wk_release, 1);
    atomic_store(&wk_stop, 1);
    for (int i = 0; i < n; i++) {
        test_join_thread(w[i].thread);
    }
    for (int i = 0; i < n; i++) {
        cr_assert_eq(atomic_load(&w[i].bad), 0, "worker %d (kind %d) saw something wrong", i,
                     (int)w[i].kind);
    }
}

/* What the parent sees between BeforeFork and AfterFork_Parent. */
#define MAX_WORKERS 8

struct freeze_probe {
    struct worker *w;
    int n;
    long progress_before[MAX_WORKERS];
    long progress_after[MAX_WORKERS];
    int kind_before[MAX_WORKERS];
};

/* Workers whose progress happens attached: frozen while the world is
 * stopped (free-threaded) or while the forking thread holds the GIL. */
static bool
attached_progress(enum worker_kind k)
{
    return k == W_SPIN || k == W_CYCLE || k == W_MUTEX_LOOP || k == W_PARK || k == W_STW;
}

static void
probe_before(void *arg)
{
    struct freeze_probe *p = arg;
    for (int i = 0; i < p->n; i++) {
        p->progress_before[i] = atomic_load(&p->w[i].progress);
        PyThreadState *ts = atomic_load(&p->w[i].ts);
        p->kind_before[i] = p->w[i].kind == W_CYCLE || !ts ? -1 : kind_of(ts);
    }
}

static void
probe_between(void *arg)
{
    struct freeze_probe *p = arg;
    sched_yield();   /* not synchronisation: give a wrongly running thread a chance */
    for (int i = 0; i < p->n; i++) {
        p->progress_after[i] = atomic_load(&p->w[i].progress);
    }
}

static void
assert_frozen(struct freeze_probe *p)
{
    /* Free-threaded: every other state was stamped SUSPENDED by the stop;
     * GIL: nobody else can be attached while we hold the GIL. */
    int want = ft_free_threaded ? FT_TS_SUSPENDED : FT_TS_DETACHED;
    for (int i = 0; i < p->n; i++) {
        if (p->kind_before[i] >= 0) {
            cr_assert_eq(p->kind_before[i], want,
                         "worker %d (kind %d): state kind %d during the fork, want %d", i,
                         (int)p->w[i].kind, p->kind_before[i], want);
        }
        if (attached_progress(p->w[i].kind)) {
            cr_assert_eq(p->progress_before[i], p->progress_after[i],
                         "worker %d (kind %d) ran attached during the fork", i,
                         (int)p->w[i].kind);
        }
    }
}

/* The common scenario: workers of the given kinds, a fork from the
 * (attached) main thread with child_standard, then the workers must carry
 * on and the parent finalize. */
static void
run_scenario(struct worker *w, int n, PyMutex *parked_on)
{
    cr_assert_leq(n, MAX_WORKERS);
    Py_Initialize();
    PyThreadState *main_ts = PyEval_SaveThread();
    start_workers(w, n);
    if (parked_on) {
        cr_assert(TEST_POLL_UNTIL(all_parked(w, n), POLL_MS), "the waiters never parked");
        cr_assert(ft_mutex_bits(parked_on) & _Py_HAS_PARKED);
    }
    PyEval_RestoreThread(main_ts);

    struct child_args ca = { .me = main_ts, .parked_on = parked_on };
    struct freeze_probe probe = { .w = w, .n = n };
    quiesce_allocating_workers(w, n);
    pid_t pid = fork_with(child_standard, &ca, probe_before, probe_between, &probe);
    resume_allocating_workers();
    cr_assert_gt(pid, 0, "fork failed");
    int status = wait_child(pid);
    assert_child_ok(status, "fork from the main thread");
    assert_frozen(&probe);

    /* The parent's threads carry on. */
    long since[MAX_WORKERS];
    for (int i = 0; i < n; i++) {
        since[i] = atomic_load(&w[i].progress);
    }
    (void)PyEval_SaveThread();
    atomic_store(&wk_release, 1);
    bool carried_on = TEST_POLL_UNTIL(all_progressed(w, n, since), POLL_MS);
    cr_assert(carried_on, "a worker made no progress after AfterFork_Parent");
    stop_workers(w, n);
    PyEval_RestoreThread(main_ts);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- the tests ------------------------------------------------------------------------- */


Test(fork, main_thread_only)
{
    Py_Initialize();
    PyThreadState *me = PyThreadState_Get();
    struct child_args ca = { .me = me };
    pid_t pid = fork_simple(child_standard, &ca);
    cr_assert_gt(pid, 0);
    assert_child_ok(wait_child(pid), "plain fork");
    cr_assert_eq(PyThreadState_GetUnchecked(), me);
    bool found;
    cr_assert_eq(count_states(PyInterpreterState_Main(), me, &found), 1);
    cr_assert(found);
    /* the parent's runtime is intact: threads, then a clean finalize */
    parent_run_threads(CHILD_THREADS, 50);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(fork, while_threads_hold_mutexes)
{
    static PyMutex held[3];
    static struct worker w[3];
    for (int i = 0; i < 3; i++) {
        w[i].kind = W_HOLD;
        w[i].target = &held[i];
    }
    run_scenario(w, 3, NULL);
    for (int i = 0; i < 3; i++) {
        cr_assert_not(PyMutex_IsLocked(&held[i]));
    }
}

Test(fork, while_threads_are_parked_on_a_mutex)
{
    static PyMutex contended;
    static struct worker w[4];
    w[0].kind = W_HOLD;
    w[0].target = &contended;
    for (int i = 1; i < 4; i++) {
        w[i].kind = W_PARK;
        w[i].target = &contended;
    }
    run_scenario(w, 4, &contended);
    cr_assert_not(PyMutex_IsLocked(&contended));
}

Test(fork, while_threads_spin_attached)
{
    static struct worker w[3];
    for (int i = 0; i < 3; i++) {
        w[i].kind = W_SPIN;
    }
    run_scenario(w, 3, NULL);
}

Test(fork, while_threads_are_detached)
{
    static struct worker w[4];
    w[0].kind = W_DETACHED;
    w[1].kind = W_DETACHED;
    w[2].kind = W_CYCLE;
    w[3].kind = W_CYCLE;
    run_scenario(w, 4, NULL);
}

/* ---- fork from another thread --------------------------------------------------------- */

static struct {
    bool via_gilstate;
    atomic_int status;
    atomic_int done;
    atomic_int bad;
} nm;

static void *
non_main_forker(void *arg)
{
    (void)arg;
    PyThreadState *ts;
    PyGILState_STATE g = PyGILState_UNLOCKED;
    if (nm.via_gilstate) {
        g = PyGILState_Ensure();
        ts = PyThreadState_GetUnchecked();
    }
    else {
        ts = PyThreadState_New(PyInterpreterState_Main());
        PyEval_RestoreThread(ts);
    }
    struct child_args ca = { .me = ts };
    pid_t pid = fork_simple(child_standard, &ca);
    atomic_store(&nm.status, wait_child(pid));
    if (PyThreadState_GetUnchecked() != ts) {
        atomic_fetch_add(&nm.bad, 1);
    }
    if (nm.via_gilstate) {
        PyGILState_Release(g);
    }
    else {
        PyThreadState_Clear(ts);
        PyThreadState_DeleteCurrent();
    }
    atomic_store(&nm.done, 1);
    return NULL;
}

static void
run_non_main_fork(bool via_gilstate)
{
    nm.via_gilstate = via_gilstate;
    static struct worker w[1];
    w[0].kind = W_SPIN;
    Py_Initialize();
    PyThreadState *main_ts = PyEval_SaveThread();
    start_workers(w, 1);
    pthread_t t = test_start_thread(non_main_forker, NULL);
    test_join_thread(t);
    stop_workers(w, 1);
    PyEval_RestoreThread(main_ts);
    cr_assert(atomic_load(&nm.done));
    assert_child_ok(atomic_load(&nm.status), via_gilstate ? "fork from a PyGILState_Ensure thread"
                                                          : "fork from a PyThreadState_New thread");
    cr_assert_eq(atomic_load(&nm.bad), 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(fork, from_a_non_main_thread_with_its_own_state)
{
    run_non_main_fork(false);
}

Test(fork, from_a_non_main_thread_with_a_gilstate_state)
{
    run_non_main_fork(true);
}

/* A thread that has no thread state forks.  In the child, nobody is
 * attached; the thread can PyGILState_Ensure and finalize. */
static int
child_without_state(void *arg)
{
    (void)arg;
    set_stage("checks after PyOS_AfterFork_Child");
    CHILD_CHECK(PyThreadState_GetUnchecked() == NULL, C_NO_STATE);
    PyInterpreterState *interp = PyInterpreterState_Main();
    CHILD_CHECK(interp != NULL, C_INTERP);
    bool found;
    CHILD_CHECK(count_states(interp, NULL, &found) == 0, C_STATE_COUNT);
    CHILD_CHECK(runtime_locks_usable(interp), C_RUNTIME_LOCK);
    set_stage("PyGILState_Ensure");
    PyGILState_STATE g = PyGILState_Ensure();
    CHILD_CHECK(g == PyGILState_UNLOCKED, C_ENSURE);
    PyThreadState *me = PyThreadState_GetUnchecked();
    child_check_alone(me);
    child_run_threads(CHILD_THREADS, 50);
    child_finalize_and_cycle();
    return C_OK;
}

static struct {
    bool register_first;     /* attach once before forking (a registered liburcu reader) */
    atomic_int status;
    atomic_int done;
} ns;

static void *
stateless_forker(void *arg)
{
    (void)arg;
    if (ns.register_first) {
        PyGILState_STATE g = PyGILState_Ensure();
        PyGILState_Release(g);
    }
    pid_t pid = fork_simple(child_without_state, NULL);
    atomic_store(&ns.status, wait_child(pid));
    atomic_store(&ns.done, 1);
    return NULL;
}

/* The main thread is detached while a thread that never used the runtime
 * forks. */
Test(fork, from_a_thread_that_never_had_a_state)
{
    Py_Initialize();
    PyThreadState *main_ts = PyEval_SaveThread();
    pthread_t t = test_start_thread(stateless_forker, NULL);
    test_join_thread(t);
    PyEval_RestoreThread(main_ts);
    assert_child_ok(atomic_load(&ns.status), "fork from a thread without a state");
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* The main thread stays attached, spinning with safe points, while a thread
 * with no state (it had one before) forks. */
Test(fork, from_a_detached_thread_while_another_is_attached)
{
    ns.register_first = true;
    Py_Initialize();
    PyThreadState *main_ts = PyThreadState_Get();
    pthread_t t = test_start_thread(stateless_forker, NULL);
    int64_t deadline = test_now_ns() + (int64_t)(CHILD_WAIT_MS + 10000) * 1000000LL * FT_TIMEOUT_SCALE;
    while (!atomic_load(&ns.done) && test_now_ns() < deadline) {
        (void)PyErr_CheckSignals();   /* attached, reaching safe points */
    }
    cr_assert(atomic_load(&ns.done), "the forking thread never finished");
    Py_BEGIN_ALLOW_THREADS
    pthread_join(t, NULL);
    Py_END_ALLOW_THREADS
    cr_assert_eq(PyThreadState_GetUnchecked(), main_ts);
    assert_child_ok(atomic_load(&ns.status), "fork from a detached thread");
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- before Py_Initialize, after Py_FinalizeEx -------------------------------------------- */

static int
child_initializes(void *arg)
{
    CHILD_CHECK(!Py_IsInitialized() && PyThreadState_GetUnchecked() == NULL, C_STILL_INITIALIZED);
    set_stage("Py_Initialize");
    Py_Initialize();
    PyThreadState *me = PyThreadState_GetUnchecked();
    CHILD_CHECK(me != NULL, C_REINIT);
    struct child_args ca = { .me = me, .parked_on = arg };
    return child_standard(&ca);
}

/* Plain threads (no runtime) hold and wait for a PyMutex across the fork. */
static PyMutex pre_mutex;
static atomic_int pre_locked, pre_release, pre_waiting, pre_got;

static void *
pre_holder(void *arg)
{
    (void)arg;
    PyMutex_Lock(&pre_mutex);
    atomic_store(&pre_locked, 1);
    while (!atomic_load(&pre_release)) {
        sched_yield();
    }
    PyMutex_Unlock(&pre_mutex);
    return NULL;
}

static void *
pre_waiter(void *arg)
{
    (void)arg;
    atomic_store(&pre_waiting, 1);
    PyMutex_Lock(&pre_mutex);
    atomic_fetch_add(&pre_got, 1);
    PyMutex_Unlock(&pre_mutex);
    return NULL;
}

Test(fork, before_initialize)
{
    cr_assert_not(Py_IsInitialized());
    pthread_t h = test_start_thread(pre_holder, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&pre_locked), POLL_MS));
    pthread_t w = test_start_thread(pre_waiter, NULL);
    cr_assert(TEST_POLL_UNTIL(ft_mutex_bits(&pre_mutex) == (_Py_LOCKED | _Py_HAS_PARKED), POLL_MS),
              "the waiter never parked");

    pid_t pid = fork_simple(child_initializes, &pre_mutex);
    cr_assert_gt(pid, 0);
    int status = wait_child(pid);
    atomic_store(&pre_release, 1);
    test_join_thread(h);
    test_join_thread(w);
    assert_child_ok(status, "fork before Py_Initialize");
    cr_assert_eq(atomic_load(&pre_got), 1);

    /* and the parent can still initialize */
    Py_Initialize();
    parent_run_threads(CHILD_THREADS, 50);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(fork, after_finalize)
{
    Py_Initialize();
    parent_run_threads(CHILD_THREADS, 50);
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_not(Py_IsInitialized());

    pid_t pid = fork_simple(child_initializes, NULL);
    cr_assert_gt(pid, 0);
    assert_child_ok(wait_child(pid), "fork after Py_FinalizeEx");

    Py_Initialize();
    parent_run_threads(CHILD_THREADS, 50);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- liburcu ------------------------------------------------------------------------------ */

#define RCU_CALLBACKS 256
#define RCU_STATES 2000

static ft_rcu_head rcu_heads_parent[RCU_CALLBACKS];
static ft_rcu_head rcu_heads_child[RCU_CALLBACKS];
static atomic_int rcu_ran;

static void
rcu_count_cb(ft_rcu_head *head)
{
    FT_RCU_CALLBACK_BEGIN();
    (void)head;
    atomic_fetch_add(&rcu_ran, 1);
}

static int
child_rcu(void *argp)
{
    struct child_args *a = argp;
    set_stage("checks after PyOS_AfterFork_Child");
    child_check_alone(a->me);
    set_stage("ft_rcu_synchronize, ft_rcu_barrier");
    /* callbacks queued in the parent just before the fork all run here
     * (those that had run already are counted in our copy) */
    Py_BEGIN_ALLOW_THREADS
    ft_rcu_synchronize();
    ft_rcu_barrier();
    Py_END_ALLOW_THREADS
    CHILD_CHECK(atomic_load(&rcu_ran) == RCU_CALLBACKS, C_RCU_COUNT_BEFORE);

    /* thread states freed through call_rcu */
    set_stage("creating and deleting thread states");
    PyInterpreterState *interp = PyInterpreterState_Main();
    for (int i = 0; i < RCU_STATES; i++) {
        PyThreadState *ts = PyThreadState_New(interp);
        CHILD_CHECK(ts != NULL, C_NEW_STATE);
        PyThreadState_Clear(ts);
        PyThreadState_Delete(ts);
    }
    child_run_threads(CHILD_THREADS, CHILD_ROUNDS);
    set_stage("ft_rcu_call, ft_rcu_barrier");
    for (int i = 0; i < RCU_CALLBACKS; i++) {
        ft_rcu_call(&rcu_heads_child[i], rcu_count_cb);
    }
    Py_BEGIN_ALLOW_THREADS
    ft_rcu_barrier();
    Py_END_ALLOW_THREADS
    CHILD_CHECK(atomic_load(&rcu_ran) == 2 * RCU_CALLBACKS, C_RCU_COUNT_AFTER);
    child_check_alone(a->me);
    child_finalize_and_cycle();   /* Py_FinalizeEx calls rcu_barrier */
    return C_OK;
}

Test(fork, liburcu_works_in_the_child)
{
    Py_Initialize();
    PyThreadState *me = PyThreadState_Get();
    PyInterpreterState *interp = PyInterpreterState_Main();
    for (int i = 0; i < 200; i++) {   /* the call_rcu worker is up and busy */
        PyThreadState *ts = PyThreadState_New(interp);
        PyThreadState_Delete(ts);
    }
    for (int i = 0; i < RCU_CALLBACKS; i++) {
        ft_rcu_call(&rcu_heads_parent[i], rcu_count_cb);
    }
    struct child_args ca = { .me = me };
    pid_t pid = fork_simple(child_rcu, &ca);
    cr_assert_gt(pid, 0);
    int status = wait_child(pid);
    Py_BEGIN_ALLOW_THREADS
    ft_rcu_barrier();
    Py_END_ALLOW_THREADS
    assert_child_ok(status, "liburcu in the child");
    cr_assert_eq(atomic_load(&rcu_ran), RCU_CALLBACKS);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- a thread inside the registry at the moment of fork ------------------------------------ */

/* A detached thread creating thread states goes online (a liburcu reader)
 * inside PyThreadState_New while it links the new state into the registry
 * (WITH_RCU_ONLINE in core/tstate.c); the stop-the-world does not wait for
 * it, it is not attached.  If the fork landed there, the child would inherit
 * a dead reader that is online -- every grace period there would wait for
 * it -- and maybe a half-linked state.  So BeforeFork must not return while
 * a thread is in there.  A thread can be pre-empted at that point for as
 * long as you like; the test does it on purpose: a signal handler that finds
 * its thread online and detached holds it there.  The main thread then
 * forks; a releaser thread lets the caught thread go only once the main
 * thread has been inside PyOS_BeforeFork for a while (a correct BeforeFork
 * waits for it), and the main thread notes, between BeforeFork and fork(),
 * whether the caught thread was still held: it must not be. */
#define WINDOW_MAX_STATES 200000
#define WINDOW_HOLD_MS 300

static PyThreadState **window_states;
static atomic_int window_count;
static atomic_int window_stop;
static atomic_int window_caught;
static atomic_int window_release;
static atomic_long window_signals;
static atomic_int window_forking;          /* the main thread is about to call BeforeFork */
static atomic_int window_before_returned;  /* ... and BeforeFork returned */
static atomic_int window_held_at_fork;     /* the caught thread was still held then */
static atomic_int window_forked;           /* fork_with returned in the parent */
static _Thread_local bool window_tls_creator;

static void
window_handler(int sig)
{
    (void)sig;
    atomic_fetch_add(&window_signals, 1);
    if (window_tls_creator && atomic_load(&window_count) > 0 && ft_rcu_is_online() &&
        PyThreadState_GetUnchecked() == NULL && !atomic_load(&window_caught)) {
        atomic_store(&window_caught, 1);
        while (!atomic_load(&window_release)) {
            sched_yield();
        }
    }
}

static void *
window_creator(void *arg)
{
    PyInterpreterState *interp = arg;
    window_tls_creator = true;
    while (!atomic_load(&window_stop) && atomic_load(&window_count) < WINDOW_MAX_STATES) {
        if (atomic_load(&window_release)) {
            /* out of the allocator while the main thread forks (ASan) */
            while (!atomic_load(&window_stop)) {
                sched_yield();
            }
            break;
        }
        PyThreadState *ts = PyThreadState_New(interp);
        if (!ts) {
            break;
        }
        window_states[atomic_load(&window_count)] = ts;
        atomic_fetch_add(&window_count, 1);   /* after the first: registered with liburcu */
    }
    return NULL;
}

/* Holds the caught thread until BeforeFork returned (the bug) or the main
 * thread has waited in it for WINDOW_HOLD_MS, then lets it go. */
static void *
window_releaser(void *arg)
{
    (void)arg;
    (void)TEST_POLL_UNTIL(atomic_load(&window_forking), POLL_MS);
    (void)TEST_POLL_UNTIL(atomic_load(&window_before_returned), WINDOW_HOLD_MS);
    atomic_store(&window_release, 1);
    /* exiting frees memory: not before the fork (ASan) */
    (void)TEST_POLL_UNTIL(atomic_load(&window_forked), 4 * POLL_MS);
    return NULL;
}

static void
window_before_fork_returned(void *arg)
{
    (void)arg;
    atomic_store(&window_held_at_fork, !atomic_load(&window_release));
    atomic_store(&window_before_returned, 1);
}

Test(fork, while_a_detached_thread_is_inside_PyThreadState_New)
{
    if (ft_sanitize_thread) {
        /* TSan delivers a signal only at one of its interceptors, never
         * inside liburcu's uninstrumented code: the window cannot be hit. */
        cr_skip_test("cannot stop a thread inside liburcu under ThreadSanitizer");
    }
    window_states = calloc(WINDOW_MAX_STATES, sizeof *window_states);
    cr_assert_not_null(window_states);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = window_handler;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR2, &sa, &old), 0);

    Py_Initialize();
    PyThreadState *me = PyThreadState_Get();
    PyInterpreterState *interp = PyInterpreterState_Main();
    /* No callback pending: the call_rcu worker is idle, so BeforeFork does
     * not wait for a grace period that the caught thread holds up. */
    Py_BEGIN_ALLOW_THREADS
    ft_rcu_barrier();
    Py_END_ALLOW_THREADS

    pthread_t t = test_start_thread(window_creator, interp);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&window_count) > 0, POLL_MS));
    int64_t deadline = test_now_ns() + (int64_t)POLL_MS * 1000000LL * FT_TIMEOUT_SCALE;
    while (!atomic_load(&window_caught) && atomic_load(&window_count) < WINDOW_MAX_STATES &&
           test_now_ns() < deadline) {
        long before = atomic_load(&window_signals);
        pthread_kill(t, SIGUSR2);
        (void)TEST_POLL_UNTIL(atomic_load(&window_signals) != before, 100);
    }
    bool caught = atomic_load(&window_caught);
    pid_t pid = -1;
    int status = 0;
    if (caught) {
        pthread_t r = test_start_thread(window_releaser, NULL);
        struct child_args ca = { .me = me };
        atomic_store(&window_forking, 1);
        pid = fork_with(child_standard, &ca, window_before_fork_returned, NULL, NULL);
        atomic_store(&window_forked, 1);
        status = wait_child(pid);
        test_join_thread(r);
    }
    atomic_store(&window_release, 1);
    atomic_store(&window_stop, 1);
    test_join_thread(t);
    sigaction(SIGUSR2, &old, NULL);
    cr_assert(caught, "never caught the thread inside the registry (%ld signals, %d states)",
              atomic_load(&window_signals), atomic_load(&window_count));
    cr_assert_not(atomic_load(&window_held_at_fork),
                  "PyOS_BeforeFork returned while a detached thread was online inside "
                  "PyThreadState_New");
    cr_assert_gt(pid, 0);
    assert_child_ok(status, "fork while a thread is inside PyThreadState_New");

    int n = atomic_load(&window_count);
    for (int i = 0; i < n; i++) {
        PyThreadState_Delete(window_states[i]);
    }
    free(window_states);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- repeated and concurrent forks ---------------------------------------------------------- */

#define REPEATS 20

Test(fork, twenty_forks_with_workers_running, .timeout = FT_TIMEOUT(60))
{
    static struct worker w[6];
    w[0].kind = W_SPIN;
    w[1].kind = W_SPIN;
    w[2].kind = W_CYCLE;
    w[3].kind = W_MUTEX_LOOP;
    w[3].target = &wk_loop_mutex;
    w[4].kind = W_MUTEX_LOOP;
    w[4].target = &wk_loop_mutex;
    w[5].kind = W_STW;   /* a no-op loop in the GIL build */
    int n = 6;

    Py_Initialize();
    PyThreadState *main_ts = PyEval_SaveThread();
    start_workers(w, n);
    PyEval_RestoreThread(main_ts);
    for (int r = 0; r < REPEATS; r++) {
        struct child_args ca = { .me = main_ts };
        struct freeze_probe probe = { .w = w, .n = n };
        quiesce_allocating_workers(w, n);
        pid_t pid = fork_with(child_light, &ca, probe_before, probe_between, &probe);
        resume_allocating_workers();
        cr_assert_gt(pid, 0, "fork %d failed", r);
        int status = wait_child(pid);
        char what[32];
        snprintf(what, sizeof what, "fork %d of %d", r + 1, REPEATS);
        assert_child_ok(status, what);
        assert_frozen(&probe);
        long since[MAX_WORKERS];
        for (int i = 0; i < n; i++) {
            since[i] = atomic_load(&w[i].progress);
        }
        (void)PyEval_SaveThread();
        bool carried_on = TEST_POLL_UNTIL(all_progressed(w, n, since), POLL_MS);
        PyEval_RestoreThread(main_ts);
        cr_assert(carried_on, "after fork %d a worker made no progress", r + 1);
    }
    (void)PyEval_SaveThread();
    stop_workers(w, n);
    PyEval_RestoreThread(main_ts);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

#define CONCURRENT_FORKERS 2
#define CONCURRENT_FORKS 5

static atomic_int concurrent_bad_status[CONCURRENT_FORKERS];
static atomic_int concurrent_forks_done[CONCURRENT_FORKERS];
static atomic_int concurrent_finished;
static atomic_int concurrent_ready;
static char concurrent_what[CONCURRENT_FORKERS][256];

static void *
concurrent_forker(void *arg)
{
    int idx = (int)(intptr_t)arg;
    trace_slot = idx + 1;
    PyGILState_STATE g = PyGILState_Ensure();
    PyThreadState *me = PyThreadState_GetUnchecked();
    /* Ensure allocates: nobody forks before both are done with it (ASan) */
    atomic_fetch_add(&concurrent_ready, 1);
    Py_BEGIN_ALLOW_THREADS
    while (atomic_load(&concurrent_ready) < CONCURRENT_FORKERS) {
        sched_yield();
    }
    Py_END_ALLOW_THREADS
    for (int i = 0; i < CONCURRENT_FORKS; i++) {
        struct child_args ca = { .me = me };
        pid_t pid = fork_simple(child_light, &ca);
        int status = wait_child(pid);
        atomic_fetch_add(&concurrent_forks_done[idx], 1);
        if (status != 0) {   /* 0: exited with code 0 */
            describe(status, concurrent_what[idx], sizeof concurrent_what[idx]);
            atomic_store(&concurrent_bad_status[idx], status);
            break;
        }
        (void)PyErr_CheckSignals();
    }
    /* A thread that exits frees memory: not while the other one forks. */
    atomic_fetch_add(&concurrent_finished, 1);
    Py_BEGIN_ALLOW_THREADS
    while (atomic_load(&concurrent_finished) < CONCURRENT_FORKERS) {
        sched_yield();
    }
    Py_END_ALLOW_THREADS
    PyGILState_Release(g);
    return NULL;
}

Test(fork, two_threads_fork_at_the_same_time, .timeout = FT_TIMEOUT(60))
{
    static struct worker w[1];
    w[0].kind = W_SPIN;
    Py_Initialize();
    PyThreadState *main_ts = PyEval_SaveThread();
    start_workers(w, 1);
    pthread_t t[CONCURRENT_FORKERS];
    for (intptr_t i = 0; i < CONCURRENT_FORKERS; i++) {
        t[i] = test_start_thread(concurrent_forker, (void *)i);
    }
    for (int i = 0; i < CONCURRENT_FORKERS; i++) {
        test_join_thread(t[i]);
    }
    stop_workers(w, 1);
    PyEval_RestoreThread(main_ts);
    for (int i = 0; i < CONCURRENT_FORKERS; i++) {
        cr_assert_eq(atomic_load(&concurrent_bad_status[i]), 0,
                     "forker %d, fork %d: the child failed: %s", i,
                     atomic_load(&concurrent_forks_done[i]), concurrent_what[i]);
        cr_assert_eq(atomic_load(&concurrent_forks_done[i]), CONCURRENT_FORKS);
    }
    cr_assert_eq(Py_FinalizeEx(), 0);
}
