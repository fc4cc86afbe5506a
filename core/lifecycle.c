/* The runtime's life: Py_Initialize, Py_FinalizeEx, exit callbacks, pending
 * calls, interpreter lookup, version strings, PyConfig / PyStatus.
 *
 * INITIALIZATION (any thread; a second call is a no-op)
 *   One-time process set-up (hooks into sync/, the GIL's condition
 *   variables), then the main interpreter: a static struct, re-initialised on
 *   every cycle (so re-initialising allocates nothing new), its thread
 *   registry created once and kept.  A thread state is created and attached
 *   for the caller; `initialized` is set last, with release.
 *
 * FINALIZATION (the thread whose state Py_Initialize attached)
 *   1. PyUnstable_AtExit callbacks (attached).
 *   2. PEP 788: finalize_pending = 1, then wait (detached) until every guard
 *      is closed; no new guard can be taken from here on (gilstate.c).
 *   3. interp->finalizing = our state, ft_rt.finalizing too: Py_IsFinalizing
 *      is true, and any other thread that attaches from now on hangs.
 *   4. Stop the world (free-threaded; with the GIL we already exclude
 *      everyone), then every other state: SHUTTING_DOWN (CAS from DETACHED or
 *      SUSPENDED), unlinked, cleared.  Start the world, wake anyone parked on
 *      those states: they hang (core/tstate.c).  We never wait for them.
 *      A zombie state is freed by whoever gives up the last reference: the
 *      thread that hangs on it, or a later PyThreadState_Delete; a state that
 *      nobody holds stays allocated, as CPython documents ("leaks").
 *   5. Our own state is cleared, detached and deleted; initialized = 0;
 *      pending frees are flushed (rcu_barrier) and the heap types freed
 *      (core/typeobject.c), so a cycle leaves no memory behind; then the
 *      Py_AtExit callbacks, last registered first.
 *   Attached threads answer the stop at their next safe point, so a thread
 *   looping in C without one delays finalization, exactly as it delays a
 *   stop-the-world (docs/threads.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_alloc.h"
#include "ft_parking_lot.h"
#include "ft_pystate.h"
#include "ft_types.h"

ft_runtime ft_rt;
static PyInterpreterState main_interp;

static void _Py_NO_RETURN
fatal(const char *func, const char *msg)
{
    _Py_FatalErrorFunc(func, msg);
}

/* ---- one-time process set-up ------------------------------------------------ */

static pthread_once_t process_once = PTHREAD_ONCE_INIT;

static void
process_init(void)
{
    ft_gil_init(&ft_rt.gil);
    ft_tstate_runtime_init();
}

void
ft_interp_init(PyInterpreterState *interp, int64_t id)
{
    interp->next = NULL;
    interp->id = id;
    interp->serial = atomic_fetch_add_explicit(&ft_rt.next_serial, 1, memory_order_relaxed) + 1;
    if (!interp->threads) {
        interp->threads = ft_lfht_new(64);
        if (!interp->threads) {
            fatal("Py_Initialize", "out of memory creating the thread-state registry");
        }
    }
    atomic_store_explicit(&interp->guards, 0, memory_order_relaxed);
    atomic_store_explicit(&interp->finalize_pending, 0, memory_order_relaxed);
    atomic_store_explicit(&interp->finalizing, NULL, memory_order_relaxed);
    interp->initial = NULL;
    interp->atexit_n = 0;
    /* The collector's defaults (gc/gc.c): enabled, CPython's threshold. */
    atomic_store_explicit(&interp->gc.young, 0, memory_order_relaxed);
    atomic_store_explicit(&interp->gc.threshold, FT_GC_DEFAULT_THRESHOLD, memory_order_relaxed);
    atomic_store_explicit(&interp->gc.trigger, FT_GC_DEFAULT_THRESHOLD, memory_order_relaxed);
    atomic_store_explicit(&interp->gc.enabled, 1, memory_order_relaxed);
    atomic_store_explicit(&interp->gc.collecting, 0, memory_order_relaxed);
    memset(&interp->gc.stats, 0, sizeof interp->gc.stats);
    interp->gc.stats.threshold = FT_GC_DEFAULT_THRESHOLD;
}

bool
ft_interp_is_finalizing(PyInterpreterState *interp, ft_tstate *ts)
{
    ft_tstate *fin = atomic_load_explicit(&interp->finalizing, memory_order_acquire);
    return fin != NULL && fin != ts;
}

/* ---- Py_Initialize ------------------------------------------------------------ */

static void
initialize(const PyConfig *config)
{
    if (atomic_load_explicit(&ft_rt.initialized, memory_order_acquire)) {
        return;
    }
    (void)pthread_once(&process_once, process_init);
    if (config && config->switch_interval_us) {
        _PyEval_SetSwitchInterval(config->switch_interval_us);
    }
    /* The whole set-up runs under interp_lock, so concurrent first calls
     * initialize once: the others wait here and return with no state, as a
     * second call does. */
    ft_mutex_lock_flags(&ft_rt.interp_lock, FT_LOCK_DONT_DETACH);
    if (atomic_load_explicit(&ft_rt.initialized, memory_order_relaxed)) {
        PyMutex_Unlock(&ft_rt.interp_lock);
        return;
    }
    PyInterpreterState *interp = &main_interp;
    ft_interp_init(interp, 0);
    ft_rt.next_interp_id = 1;
    ft_rt.finalize_started = 0;
    atomic_store_explicit(&ft_rt.finalizing, NULL, memory_order_relaxed);
    ft_rt.main_thread = PyThread_get_thread_ident();
    ft_tstate *ts = ft_tstate_new(interp, FT_WHENCE_INIT);
    if (!ts) {
        fatal("Py_Initialize", "out of memory creating the main thread state");
    }
    interp->initial = ts;
    ft_tstate_attach(ts, "Py_Initialize");
    ft_types_init();   /* static types readied (the first cycle does the work) */
    ft_mutex_lock_flags(&ft_rt.pending_lock, FT_LOCK_DONT_DETACH);
    ft_rt.pending_first = 0;
    __atomic_store_n(&ft_rt.pending_n, 0, __ATOMIC_RELAXED);
    ft_rt.pending_tstate = ts;
    PyMutex_Unlock(&ft_rt.pending_lock);
    atomic_store_explicit(&ft_rt.interp_head, interp, memory_order_release);
    atomic_store_explicit(&ft_rt.main, interp, memory_order_release);
    atomic_store_explicit(&ft_rt.initialized, 1, memory_order_release);
    PyMutex_Unlock(&ft_rt.interp_lock);
}

void
Py_InitializeEx(int initsigs)
{
    (void)initsigs;   /* ftrt installs no signal handlers either way */
    initialize(NULL);
}

void
Py_Initialize(void)
{
    initialize(NULL);
}

PyStatus
Py_InitializeFromConfig(const PyConfig *config)
{
    if (!config) {
        return (PyStatus){ ._type = _PyStatus_TYPE_ERROR, .func = "Py_InitializeFromConfig",
                           .err_msg = "config is NULL" };
    }
    if (config->_config_init != 1 && config->_config_init != 2) {
        return (PyStatus){ ._type = _PyStatus_TYPE_ERROR, .func = "Py_InitializeFromConfig",
                           .err_msg = "config not initialized by PyConfig_InitPythonConfig "
                                      "or PyConfig_InitIsolatedConfig" };
    }
    initialize(config);
    return PyStatus_Ok();
}

int
Py_IsInitialized(void)
{
    return atomic_load_explicit(&ft_rt.initialized, memory_order_acquire);
}

int
Py_IsFinalizing(void)
{
    return atomic_load_explicit(&ft_rt.finalizing, memory_order_acquire) != NULL;
}

/* ---- Py_FinalizeEx ------------------------------------------------------------ */

static void
wait_for_guards(PyInterpreterState *interp, ft_tstate *me)
{
    atomic_store_explicit(&interp->finalize_pending, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&interp->guards, memory_order_seq_cst) == 0) {
        return;
    }
    ft_tstate_detach(me);   /* guard holders may need to attach to finish */
    for (;;) {
        int64_t g = atomic_load_explicit(&interp->guards, memory_order_seq_cst);
        if (g == 0) {
            break;
        }
        (void)ft_parking_lot_park(&interp->guards, &g, sizeof g, -1, NULL, 0);
    }
    ft_tstate_attach(me, "Py_FinalizeEx");
}

/* With the world stopped: every other state of interp becomes a zombie
 * (SHUTTING_DOWN, unlinked, cleared).  Unlinking during the walk is safe:
 * a removed node still leads on into the list.  Anyone parked on a zombie is
 * woken and hangs; nothing here allocates or waits. */
static void
shut_down_others(PyInterpreterState *interp, ft_tstate *me)
{
    for (ft_tstate *ts = ft_tstate_first(interp); ts; ts = ft_tstate_next(ts)) {
        if (ts == me) {
            continue;
        }
        uint64_t w = atomic_load_explicit(&ts->state, memory_order_acquire);
        bool claimed = false;
        while (FT_TS_KIND(w) != FT_TS_SHUTTING_DOWN) {
            if (FT_TS_KIND(w) == FT_TS_ATTACHED) {
                fatal("Py_FinalizeEx", "a thread state is attached with the world stopped");
            }
            if (atomic_compare_exchange_weak_explicit(&ts->state, &w, FT_TS_SHUTTING_DOWN,
                                                      memory_order_acq_rel,
                                                      memory_order_acquire)) {
                claimed = true;
                break;
            }
        }
        if (!claimed) {
            continue;   /* its (detached) owner is deleting it right now */
        }
        ft_tstate_unregister(ts);
        ft_tstate_clear(ts);
        ft_parking_lot_unpark_all(&ts->state);
    }
}

int
Py_FinalizeEx(void)
{
    if (!atomic_load_explicit(&ft_rt.initialized, memory_order_acquire)) {
        return 0;
    }
    PyInterpreterState *interp = atomic_load_explicit(&ft_rt.main, memory_order_acquire);
    ft_tstate *me = ft_current();
    if (!me) {
        fatal("Py_FinalizeEx", "no thread state is attached: call it with the thread "
                               "state Py_Initialize attached");
    }
    if (!interp->initial) {
        interp->initial = me;   /* after a fork from a thread with no state */
    }
    if (me != interp->initial) {
        fatal("Py_FinalizeEx", "another thread state of this thread is attached: call it "
                               "with the thread state Py_Initialize attached");
    }
    if (ft_rt.finalize_started) {
        fatal("Py_FinalizeEx", "called recursively (from an exit callback or a "
                               "pending call run by finalization)");
    }
    ft_rt.finalize_started = 1;

    /* 0. pending calls still queued run now, as in CPython */
    for (int rounds = 0; rounds < 1000; rounds++) {
        int rc;
        if (!ft_pending_calls_run_if_main(me, &rc)) {
            break;
        }
    }

    /* 1. per-interpreter exit callbacks, last registered first */
    for (;;) {
        ft_mutex_lock_flags(&interp->atexit_lock, FT_LOCK_DONT_DETACH);
        if (interp->atexit_n == 0) {
            PyMutex_Unlock(&interp->atexit_lock);
            break;
        }
        int i = --interp->atexit_n;
        void (*func)(void *) = interp->atexit[i].func;
        void *data = interp->atexit[i].data;
        PyMutex_Unlock(&interp->atexit_lock);
        func(data);
    }

    /* 2. guards */
    wait_for_guards(interp, me);

    /* 3. finalizing */
    atomic_store_explicit(&interp->finalizing, me, memory_order_seq_cst);
    atomic_store_explicit(&ft_rt.finalizing, me, memory_order_seq_cst);

    /* 4. the other threads */
    ft_stop_the_world(interp, PyUnstable_STOP_FINALIZE);
    shut_down_others(interp, me);
    ft_start_the_world(interp);

    /* 5. ourselves */
    ft_mutex_lock_flags(&ft_rt.pending_lock, FT_LOCK_DONT_DETACH);
    ft_rt.pending_tstate = NULL;
    ft_rt.pending_first = 0;
    __atomic_store_n(&ft_rt.pending_n, 0, __ATOMIC_RELAXED);
    PyMutex_Unlock(&ft_rt.pending_lock);

    /* The interpreter's dict: its contents may need an attached state and
     * live types. */
    Py_XDECREF(atomic_exchange_explicit(&interp->dict, NULL, memory_order_acq_rel));
    if (ft_free_threaded) {
        ft_brc_merge_queued(me);   /* objects others dropped to us: destroyed while types live */
    }
    /* A last collection (CPython's too): cycles die, and their finalizers
     * run, while types and this state still live. */
    void (*fini)(ft_tstate *) = atomic_load_explicit(&ft_gc_fini_hook, memory_order_acquire);
    if (fini != NULL) {
        fini(me);
    }
    ft_tstate_clear(me);
    ft_tstate_detach(me);
    ft_mutex_lock_flags(&ft_rt.interp_lock, FT_LOCK_DONT_DETACH);
    atomic_store_explicit(&ft_rt.initialized, 0, memory_order_release);
    atomic_store_explicit(&interp->finalizing, FT_FINALIZED, memory_order_release);
    atomic_store_explicit(&ft_rt.interp_head, NULL, memory_order_release);
    atomic_store_explicit(&ft_rt.main, NULL, memory_order_release);
    PyMutex_Unlock(&ft_rt.interp_lock);
    ft_tstate_delete(me, "Py_FinalizeEx");
    interp->initial = NULL;
    atomic_store_explicit(&ft_rt.finalizing, NULL, memory_order_release);

    ft_rcu_barrier();   /* every deferred free has run: cycles leave nothing */
    ft_types_fini(interp);   /* heap types last: nothing can reach them now */

    /* Py_AtExit callbacks: the runtime is gone, no API may be used. */
    for (;;) {
        ft_mutex_lock_flags(&ft_rt.interp_lock, FT_LOCK_DONT_DETACH);
        if (ft_rt.atexit_n == 0) {
            PyMutex_Unlock(&ft_rt.interp_lock);
            break;
        }
        void (*func)(void) = ft_rt.atexit[--ft_rt.atexit_n];
        PyMutex_Unlock(&ft_rt.interp_lock);
        func();
    }
    return 0;
}

void
Py_Finalize(void)
{
    (void)Py_FinalizeEx();
}

int
Py_AtExit(void (*func)(void))
{
    if (!func) {
        return -1;
    }
    ft_mutex_lock_flags(&ft_rt.interp_lock, FT_LOCK_DONT_DETACH);
    int rc = -1;
    if (ft_rt.atexit_n < FT_ATEXIT_MAX) {
        ft_rt.atexit[ft_rt.atexit_n++] = func;
        rc = 0;
    }
    PyMutex_Unlock(&ft_rt.interp_lock);
    return rc;
}

int
PyUnstable_AtExit(PyInterpreterState *interp, void (*func)(void *), void *data)
{
    ft_tstate *ts = ft_current();
    if (!ts || ts->base.interp != interp) {
        fatal("PyUnstable_AtExit", "needs an attached thread state of the interpreter");
    }
    if (!func) {
        return -1;
    }
    ft_mutex_lock_flags(&interp->atexit_lock, FT_LOCK_DONT_DETACH);
    int rc = -1;
    if (interp->atexit_n < FT_ATEXIT_MAX) {
        interp->atexit[interp->atexit_n].func = func;
        interp->atexit[interp->atexit_n].data = data;
        interp->atexit_n++;
        rc = 0;
    }
    PyMutex_Unlock(&interp->atexit_lock);
    return rc;
}

/* ---- pending calls and explicit safe points ----------------------------------- */

int
Py_AddPendingCall(int (*func)(void *), void *arg)
{
    if (!func) {
        return -1;
    }
    int rc = -1;
    ft_mutex_lock_flags(&ft_rt.pending_lock, FT_LOCK_DONT_DETACH);
    if (ft_rt.pending_n < FT_PENDING_MAX) {
        int slot = (ft_rt.pending_first + ft_rt.pending_n) % FT_PENDING_MAX;
        ft_rt.pending[slot].func = func;
        ft_rt.pending[slot].arg = arg;
        __atomic_store_n(&ft_rt.pending_n, ft_rt.pending_n + 1, __ATOMIC_RELEASE);
        rc = 0;
        /* The main thread's state lives while pending_lock says it does. */
        if (ft_rt.pending_tstate) {
            atomic_fetch_or_explicit(&ft_rt.pending_tstate->breaker, FT_BREAK_CALLS,
                                     memory_order_release);
        }
    }
    PyMutex_Unlock(&ft_rt.pending_lock);
    return rc;
}

static bool
is_main_thread(ft_tstate *ts)
{
    return ts->base.interp == atomic_load_explicit(&ft_rt.main, memory_order_relaxed) &&
           PyThread_get_thread_ident() == ft_rt.main_thread;
}

/* Run queued calls if ts is the main thread's: at most one queue's worth per
 * call (a call that re-queues itself cannot keep us here); if some remain,
 * the next safe point runs them.  *result = -1 if one failed (the rest stay
 * queued).  Never re-entered.  Returns whether any call ran. */
bool
ft_pending_calls_run_if_main(ft_tstate *ts, int *result)
{
    *result = 0;
    if (!is_main_thread(ts) || __atomic_load_n(&ft_rt.pending_n, __ATOMIC_ACQUIRE) == 0) {
        return false;
    }
    int expected = 0;
    if (!atomic_compare_exchange_strong(&ft_rt.pending_busy, &expected, 1)) {
        return false;   /* a pending call is running on this thread already */
    }
    atomic_fetch_and_explicit(&ts->breaker, ~(uint32_t)FT_BREAK_CALLS, memory_order_acq_rel);
    bool ran = false;
    for (int i = 0; i < FT_PENDING_MAX; i++) {
        ft_mutex_lock_flags(&ft_rt.pending_lock, FT_LOCK_DONT_DETACH);
        if (ft_rt.pending_n == 0) {
            PyMutex_Unlock(&ft_rt.pending_lock);
            break;
        }
        ft_pending_call call = ft_rt.pending[ft_rt.pending_first];
        ft_rt.pending_first = (ft_rt.pending_first + 1) % FT_PENDING_MAX;
        __atomic_store_n(&ft_rt.pending_n, ft_rt.pending_n - 1, __ATOMIC_RELEASE);
        PyMutex_Unlock(&ft_rt.pending_lock);
        ran = true;
        if (call.func(call.arg) != 0) {
            *result = -1;
            break;
        }
    }
    ft_mutex_lock_flags(&ft_rt.pending_lock, FT_LOCK_DONT_DETACH);
    if (ft_rt.pending_n) {
        atomic_fetch_or_explicit(&ts->breaker, FT_BREAK_CALLS, memory_order_relaxed);
    }
    PyMutex_Unlock(&ft_rt.pending_lock);
    atomic_store(&ft_rt.pending_busy, 0);
    return ran;
}

/* An explicit safe point: answer requests, pass a quiescent state, run the
 * pending calls if this is the main thread. */
static int
explicit_safe_point(ft_tstate *ts)
{
    ft_safe_point(ts);
    ft_rcu_quiescent();
    int rc;
    ft_pending_calls_run_if_main(ts, &rc);
    if (rc == 0 && ft_unlikely(atomic_load_explicit(&ts->async_exc, memory_order_relaxed))) {
        /* PyThreadState_SetAsyncExc: a class is raised, an instance set as is */
        PyObject *exc = atomic_exchange_explicit(&ts->async_exc, NULL, memory_order_acq_rel);
        if (exc != NULL) {
            if (PyExceptionInstance_Check(exc)) {
                PyErr_SetRaisedException(Py_NewRef(exc));
            }
            else {
                PyErr_SetNone(exc);
            }
            Py_DECREF(exc);
            rc = -1;
        }
    }
    return rc;
}

int
Py_MakePendingCalls(void)
{
    ft_tstate *ts = ft_current();
    if (!ts) {
        fatal("Py_MakePendingCalls", "the function must be called with an attached "
                                     "thread state, but none is attached");
    }
    return explicit_safe_point(ts);
}

int
PyErr_CheckSignals(void)
{
    ft_tstate *ts = ft_current();
    if (!ts) {
        return 0;
    }
    return explicit_safe_point(ts);
}

/* ---- interpreters ------------------------------------------------------------- */

PyInterpreterState *
PyInterpreterState_Get(void)
{
    ft_tstate *ts = ft_current();
    if (!ts) {
        fatal("PyInterpreterState_Get", "the function must be called with an attached "
                                        "thread state, but none is attached");
    }
    return ts->base.interp;
}

PyObject *
PyInterpreterState_GetDict(PyInterpreterState *interp)
{
    if (!interp) {
        return NULL;
    }
    PyObject *d = atomic_load_explicit(&interp->dict, memory_order_acquire);
    if (d || !PyThreadState_GetUnchecked()) {
        return d;   /* creating one needs an attached thread state */
    }
    PyObject *fresh = PyDict_New();
    if (!fresh) {
        PyErr_Clear();   /* CPython: NULL without an exception */
        return NULL;
    }
    /* Acq_rel: release publishes the new dict; on failure, acquire reads
     * the winner's. */
    if (atomic_compare_exchange_strong_explicit(&interp->dict, &d, fresh,
                                                memory_order_acq_rel, memory_order_acquire)) {
        return fresh;
    }
    Py_DECREF(fresh);
    return d;
}

int64_t
PyInterpreterState_GetID(PyInterpreterState *interp)
{
    if (!interp) {
        if (ft_current()) {   /* the error indicator needs an attached state */
            PyErr_SetString(PyExc_RuntimeError, "PyInterpreterState_GetID: no interpreter provided");
        }
        return -1;
    }
    return interp->id;
}

PyInterpreterState *
PyInterpreterState_Head(void)
{
    return atomic_load_explicit(&ft_rt.interp_head, memory_order_acquire);
}

PyInterpreterState *
PyInterpreterState_Main(void)
{
    return atomic_load_explicit(&ft_rt.main, memory_order_acquire);
}

PyInterpreterState *
PyInterpreterState_Next(PyInterpreterState *interp)
{
    return interp ? interp->next : NULL;
}

/* ---- version strings ----------------------------------------------------------- */

/* The C API level ftrt follows, then ours (FTRT_VERSION comes from meson). */
#define FT_PY_VERSION "3.13.0"
#ifdef __clang__
#  define FT_COMPILER "Clang " __clang_version__
#else
#  define FT_COMPILER "GCC " __VERSION__
#endif
#define FT_KIND_FT  "free-threaded"
#define FT_KIND_GIL "GIL"

const char *
Py_GetVersion(void)
{
    static const char ft[] = FT_PY_VERSION " (ftrt " FTRT_VERSION ", " FT_KIND_FT ") "
                             "[" FT_COMPILER "]";
    static const char gil[] = FT_PY_VERSION " (ftrt " FTRT_VERSION ", " FT_KIND_GIL ") "
                              "[" FT_COMPILER "]";
    return ft_free_threaded ? ft : gil;
}

const char *
Py_GetPlatform(void)
{
    return "linux";
}

const char *
Py_GetCopyright(void)
{
    return "Copyright (c) ftrt authors.\nCPython API names: Copyright (c) 2001 "
           "Python Software Foundation.";
}

const char *
Py_GetCompiler(void)
{
    return "[" FT_COMPILER "]";
}

const char *
Py_GetBuildInfo(void)
{
    return ft_free_threaded ? "ftrt " FTRT_VERSION ", " FT_KIND_FT
                            : "ftrt " FTRT_VERSION ", " FT_KIND_GIL;
}

/* ---- PyStatus / PyConfig --------------------------------------------------------- */

PyStatus
PyStatus_Ok(void)
{
    return (PyStatus){ ._type = _PyStatus_TYPE_OK };
}

PyStatus
PyStatus_Error(const char *err_msg)
{
    return (PyStatus){ ._type = _PyStatus_TYPE_ERROR, .err_msg = err_msg };
}

PyStatus
PyStatus_NoMemory(void)
{
    return PyStatus_Error("memory allocation failed");
}

PyStatus
PyStatus_Exit(int exitcode)
{
    return (PyStatus){ ._type = _PyStatus_TYPE_EXIT, .exitcode = exitcode };
}

int
PyStatus_IsError(PyStatus err)
{
    return err._type == _PyStatus_TYPE_ERROR;
}

int
PyStatus_IsExit(PyStatus err)
{
    return err._type == _PyStatus_TYPE_EXIT;
}

int
PyStatus_Exception(PyStatus err)
{
    return err._type != _PyStatus_TYPE_OK;
}

void
Py_ExitStatusException(PyStatus err)
{
    if (err._type == _PyStatus_TYPE_EXIT) {
        exit(err.exitcode);
    }
    if (err._type == _PyStatus_TYPE_ERROR) {
        _Py_FatalErrorFunc(err.func ? err.func : "Py_ExitStatusException",
                           err.err_msg ? err.err_msg : "unknown error");
    }
    _Py_FatalErrorFunc("Py_ExitStatusException", "called with a status that is not an error");
}

void
PyConfig_InitPythonConfig(PyConfig *config)
{
    memset(config, 0, sizeof *config);
    config->_config_init = 1;
    config->use_environment = 1;
    config->install_signal_handlers = 1;
}

void
PyConfig_InitIsolatedConfig(PyConfig *config)
{
    memset(config, 0, sizeof *config);
    config->_config_init = 2;
    config->isolated = 1;
}

void
PyConfig_Clear(PyConfig *config)
{
    (void)config;   /* nothing allocated */
}
