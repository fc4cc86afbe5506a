/* Helpers shared by the test files that use the Python-level API
 * (tests/core/): a runtime per test, checking the exception a call left
 * set, type slots, reprs, the object header's fields, running a job on
 * another thread with a thread state, the 8-thread create-then-hand-over
 * stress, and thread states (their words, kinds, breakers, and the
 * registry's length).  The white-box readers (tid_of, kind_of, ...) keep
 * short names: tests use them in nearly every assertion. */
#ifndef FT_TEST_OBJECTS_H
#define FT_TEST_OBJECTS_H

#include <Python.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_core.h"
#include "ft_pystate.h"

/* ---- a runtime per test ----------------------------------------------------------- */

/* .init: the runtime up, this thread attached. */
static inline void
test_runtime_setup(void)
{
    Py_InitializeEx(0);
}

/* .fini: allocations succeed again, and the runtime goes down (an exception
 * a failed test left set dropped first), which must succeed, unless the
 * test finalized it itself or left this thread without an attached state. */
static inline void
test_runtime_teardown(void)
{
    ft_alloc_fail_after(0);
    if (Py_IsInitialized() && PyThreadState_GetUnchecked() != NULL) {
        PyErr_Clear();
        cr_assert_eq(Py_FinalizeEx(), 0);
    }
}

/* ---- the exception a call left set ------------------------------------------------ */

/* Takes the exception set now, which must be exactly of `type`. */
static inline PyObject *
test_take_error(PyObject *type)
{
    PyObject *exc = PyErr_GetRaisedException();
    cr_assert_not_null(exc, "no exception set (expected %s)", ((PyTypeObject *)type)->tp_name);
    cr_assert_eq((PyObject *)Py_TYPE(exc), type, "got %s (\"%s\"), expected %s",
                 Py_TYPE(exc)->tp_name, PyException_GetMessageUTF8(exc),
                 ((PyTypeObject *)type)->tp_name);
    return exc;
}

/* The exception set now is exactly of `type` and its message contains
 * `needle`; it is cleared (taken). */
static inline void
test_expect_error(PyObject *type, const char *needle)
{
    PyObject *exc = test_take_error(type);
    const char *msg = PyException_GetMessageUTF8(exc);
    cr_assert(strstr(msg, needle) != NULL, "message \"%s\" lacks \"%s\"", msg, needle);
    Py_DECREF(exc);
}

/* The same with the whole message: exactly `msg`, or any when msg is NULL. */
static inline void
test_expect_error_is(PyObject *type, const char *msg)
{
    PyObject *exc = test_take_error(type);
    if (msg != NULL) {
        cr_assert_str_eq(PyException_GetMessageUTF8(exc), msg);
    }
    Py_DECREF(exc);
}

/* ---- reprs ----------------------------------------------------------------------------- */

/* repr(o) succeeds and is exactly `want`. */
static inline void
test_expect_repr(PyObject *o, const char *want)
{
    PyObject *r = PyObject_Repr(o);
    cr_assert_not_null(r, "repr raised");
    cr_assert_str_eq(PyUnicode_AsUTF8(r), want);
    Py_DECREF(r);
}

/* ---- types --------------------------------------------------------------------------- */

/* t(*args, **kwds) through t's tp_new; steals args (NULL fails the test). */
static inline PyObject *
test_call_new(PyTypeObject *t, PyObject *args, PyObject *kwds)
{
    cr_assert_not_null(args);
    PyObject *r = t->tp_new(t, args, kwds);
    Py_DECREF(args);
    return r;
}

/* A function as PyType_Slot's `void *pfunc` (ISO C has no direct cast). */
static inline void *
test_fn_ptr(void (*f)(void))
{
    void *p;
    memcpy(&p, &f, sizeof p);
    return p;
}
#define TEST_FP(f) test_fn_ptr((void (*)(void))(f))

/* ---- the object header, white-box --------------------------------------------------- */

/* Its fields, readable in both builds (the GIL build has only a count:
 * no owner, everything local, no shared word or GC bits). */
#ifdef Py_GIL_DISABLED
#define TEST_FIELD(op, field) __atomic_load_n(&(op)->field, __ATOMIC_RELAXED)
static inline uintptr_t tid_of(PyObject *op) { return TEST_FIELD(op, ob_tid); }
static inline uint32_t local_of(PyObject *op) { return TEST_FIELD(op, ob_ref_local); }
static inline Py_ssize_t shared_of(PyObject *op) { return TEST_FIELD(op, ob_ref_shared); }
static inline uint8_t gc_bits_of(PyObject *op) { return TEST_FIELD(op, ob_gc_bits); }
#else
static inline uintptr_t tid_of(PyObject *op) { (void)op; return 0; }
static inline uint32_t local_of(PyObject *op) { return (uint32_t)op->ob_refcnt; }
static inline Py_ssize_t shared_of(PyObject *op) { (void)op; return 0; }
static inline uint8_t gc_bits_of(PyObject *op) { (void)op; return 0; }
#endif

/* ---- a job on another thread ------------------------------------------------------ */

typedef struct {
    void (*fn)(void *);
    void *arg;
    uintptr_t tid;
} test_thread_job;

static inline void *
test_thread_job_main(void *p)
{
    test_thread_job *job = p;
    job->tid = _Py_ThreadId();
    PyGILState_STATE g = PyGILState_Ensure();
    job->fn(job->arg);
    PyGILState_Release(g);   /* deletes the state: the thread exits with none */
    return NULL;
}

static inline uintptr_t
test_run_job(void (*fn)(void *), void *arg, bool detach)
{
    test_thread_job job = { fn, arg, 0 };
    PyThreadState *save = detach && PyThreadState_GetUnchecked() != NULL
                              ? PyEval_SaveThread() : NULL;
    test_join_thread(test_start_thread(test_thread_job_main, &job));
    if (save != NULL) {
        PyEval_RestoreThread(save);
    }
    return job.tid;
}

/* Run fn(arg) on a new thread with a thread state attached (PyGILState)
 * and wait for it; returns that thread's id (_Py_ThreadId).  The caller,
 * if attached, detaches meanwhile: the GIL build's other thread needs the
 * GIL, and a stop-the-world the job starts must be able to stop the
 * caller.  Re-attaching is a safe point (merge queues are merged). */
static inline uintptr_t
test_run_on_thread(void (*fn)(void *), void *arg)
{
    return test_run_job(fn, arg, true);
}

/* The same, but the free-threaded build keeps the caller attached, so that
 * objects the job queues to it stay queued until the caller's next safe
 * point.  (The GIL build detaches: the other thread needs the GIL.) */
static inline uintptr_t
test_run_on_thread_staying_attached(void (*fn)(void *), void *arg)
{
    return test_run_job(fn, arg, !ft_free_threaded);
}

/* ---- the hand-over stress ----------------------------------------------------------- */

/* TEST_HANDOFF_THREADS threads, each with a thread state: in phase 1 each
 * makes TEST_HANDOFF_ITEMS objects (dropping whatever else it creates on
 * the way), with a safe point every 1024; when all have finished phase 1,
 * each checks and drops another thread's objects, so that every object
 * dies by a non-owner's decref.  The caller asserts that every phase ran
 * in full and no check failed. */
enum { TEST_HANDOFF_THREADS = 8, TEST_HANDOFF_ITEMS = 20000 };

typedef struct {
    /* Phase 1, on thread t: item i, or NULL after a failure; *ok false
     * if something made on the way was wrong (either counts as bad, and
     * the item is dropped). */
    PyObject *(*make)(int t, int i, bool *ok);
    /* Phase 2, on another thread: op is what make(t, i) returned; true if
     * it still has the right value (it is dropped afterwards). */
    bool (*check)(PyObject *op, int t, int i);
    int neighbour;   /* thread t checks thread (t + neighbour) % THREADS */
} test_handoff_ops;

typedef struct {
    const test_handoff_ops *ops;
    PyObject **items;            /* [THREADS][ITEMS], published by `created` */
    atomic_int created;          /* threads done with phase 1 */
    atomic_long bad;             /* failures and wrong values seen by workers */
    atomic_long checked;         /* items checked and dropped in phase 2 */
} test_handoff_ctx;

typedef struct {
    test_handoff_ctx *ctx;
    int index;
} test_handoff_worker_arg;

static inline void *
test_handoff_worker(void *p)
{
    test_handoff_worker_arg *a = p;
    test_handoff_ctx *c = a->ctx;
    int me = a->index;
    PyGILState_STATE g = PyGILState_Ensure();
    for (int i = 0; i < TEST_HANDOFF_ITEMS; i++) {
        bool ok = true;
        PyObject *op = c->ops->make(me, i, &ok);
        if (op == NULL || !ok) {
            PyErr_Clear();
            atomic_fetch_add(&c->bad, 1);
            Py_CLEAR(op);
        }
        c->items[me * TEST_HANDOFF_ITEMS + i] = op;
        if (i % 1024 == 0) {
            Py_BEGIN_ALLOW_THREADS   /* a safe point (the GIL build switches) */
            Py_END_ALLOW_THREADS
        }
    }
    atomic_fetch_add_explicit(&c->created, 1, memory_order_release);
    /* Wait, detached, for everyone (bounded: the caller checks `created`). */
    bool all;
    Py_BEGIN_ALLOW_THREADS
    all = TEST_POLL_UNTIL(atomic_load_explicit(&c->created, memory_order_acquire) ==
                              TEST_HANDOFF_THREADS,
                          30000);
    Py_END_ALLOW_THREADS
    if (!all) {
        PyGILState_Release(g);
        return NULL;
    }
    int other = (me + c->ops->neighbour) % TEST_HANDOFF_THREADS;
    for (int i = 0; i < TEST_HANDOFF_ITEMS; i++) {
        PyObject *op = c->items[other * TEST_HANDOFF_ITEMS + i];
        if (op == NULL || !c->ops->check(op, other, i)) {
            PyErr_Clear();
            atomic_fetch_add(&c->bad, 1);
        }
        Py_XDECREF(op);   /* a foreign decref: other made it */
        atomic_fetch_add_explicit(&c->checked, 1, memory_order_relaxed);
    }
    PyGILState_Release(g);
    return NULL;
}

/* Runs the stress from an attached thread and asserts its invariants. */
static inline void
test_handoff_run(const test_handoff_ops *ops)
{
    cr_assert(ops->neighbour % TEST_HANDOFF_THREADS != 0, "a thread would check its own");
    static test_handoff_ctx c;
    c.ops = ops;
    c.items = calloc((size_t)TEST_HANDOFF_THREADS * TEST_HANDOFF_ITEMS, sizeof(PyObject *));
    cr_assert_not_null(c.items);
    atomic_store(&c.created, 0);
    atomic_store(&c.bad, 0);
    atomic_store(&c.checked, 0);
    test_handoff_worker_arg args[TEST_HANDOFF_THREADS];
    pthread_t t[TEST_HANDOFF_THREADS];
    PyThreadState *save = PyEval_SaveThread();
    for (int i = 0; i < TEST_HANDOFF_THREADS; i++) {
        args[i] = (test_handoff_worker_arg){ &c, i };
        t[i] = test_start_thread(test_handoff_worker, &args[i]);
    }
    for (int i = 0; i < TEST_HANDOFF_THREADS; i++) {
        test_join_thread(t[i]);
    }
    PyEval_RestoreThread(save);
    free(c.items);
    cr_assert_eq(atomic_load(&c.created), TEST_HANDOFF_THREADS, "every thread made its items");
    cr_assert_eq(atomic_load(&c.bad), 0, "%ld failed or wrong items", atomic_load(&c.bad));
    cr_assert_eq(atomic_load(&c.checked), (long)TEST_HANDOFF_THREADS * TEST_HANDOFF_ITEMS,
                 "every item checked and dropped by another thread");
}

/* ---- thread states ------------------------------------------------------------------ */

/* A state's word (kind and stop tag), its kind (FT_TS_*; -1 for no state)
 * and the kind's name, and its breaker bits (FT_BREAK_*), white-box. */
static inline uint64_t
word_of(PyThreadState *ts)
{
    return atomic_load(&ft_ts(ts)->state);
}

static inline int
kind_of(PyThreadState *ts)
{
    return ts != NULL ? FT_TS_KIND(word_of(ts)) : -1;
}

static inline const char *
kind_name(int k)
{
    switch (k) {
    case FT_TS_DETACHED: return "DETACHED";
    case FT_TS_ATTACHED: return "ATTACHED";
    case FT_TS_SUSPENDED: return "SUSPENDED";
    case FT_TS_SHUTTING_DOWN: return "SHUTTING_DOWN";
    default: return "(no state)";
    }
}

static inline uint32_t
breaker_of(PyThreadState *ts)
{
    return atomic_load(&ft_ts(ts)->breaker);
}

/* How many states interp's registry lists (the caller keeps the list
 * still: attached, or with no other thread creating or deleting states). */
static inline int
test_count_states(PyInterpreterState *interp)
{
    int n = 0;
    for (PyThreadState *t = PyInterpreterState_ThreadHead(interp); t; t = PyThreadState_Next(t)) {
        n++;
    }
    return n;
}

#endif /* FT_TEST_OBJECTS_H */
