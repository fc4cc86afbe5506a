/* Workloads "attach", "gilstate", "tstate", "tss" and "churn": thread states,
 * attach/detach, the GIL-state API and thread-specific storage.
 *
 * Each measure runs its subjects in one worker process, in rotating order
 * from one sample to the next, beside a baseline measured the same way; the
 * worker prints one result line per subject and the per-sample ratio of each
 * subject to the baseline ("<subject>/<baseline>", unit "x").  Calibrated
 * measures report ns per operation, loop overhead included (under 1 ns).
 * The runtime is initialized (Py_InitializeEx(0)) by the workloads that need
 * it and finalized before the worker exits; the calling thread is then the
 * main thread, attached, as in an embedding application.
 *
 * attach roundtrip          ns/op
 *     allow_threads  Py_BEGIN_ALLOW_THREADS; Py_END_ALLOW_THREADS on the
 *                    main thread (detach + attach; the GIL build drops and
 *                    takes the GIL).  CPython 3.13 figure f.
 *     pthread        pthread_mutex_lock + unlock: the baseline.
 *
 * gilstate ensure_release   ns/op
 *     nested     PyGILState_Ensure + Release on the attached main thread:
 *                a counter increment (CPython figure e, nested).
 *     detached   the same with the main thread's own state detached
 *                (Ensure re-attaches slot->last, the state most recently
 *                attached on the thread; Release detaches it again).
 *     fresh      on a new pthread that has no state: every Ensure creates a
 *                state (PyGILState's own, whence GILSTATE) and every Release
 *                clears and deletes it.  The main thread is detached while
 *                the helper thread runs.
 *     pthread    pthread_mutex_lock + unlock: the baseline.
 *     Before measuring, the worker checks that each case takes the path it
 *     is named for (LOCKED vs UNLOCKED, the state reused, a new state
 *     created and deleted each time); a mismatch fails the worker.
 *
 * tstate create_destroy     ns/op
 *     new_clear_delete   PyThreadState_New + Clear + Delete of a state that
 *                        is never attached, from the attached main thread
 *                        (CPython figure g).  The state's memory is freed
 *                        after an RCU grace period, on liburcu's call_rcu
 *                        thread: that part of the cost is not in the loop's
 *                        time (it runs on the other CPU), as it is in
 *                        CPython, which frees at once.  The main thread
 *                        detaches for a moment after each timed run so
 *                        the grace period can end.
 *     new_attach_delete  New + PyEval_RestoreThread + Clear +
 *                        PyThreadState_DeleteCurrent on a pthread without a
 *                        state of its own (CPython figure g, second row).
 *     raw_alloc          PyMem_RawCalloc(1, 128) + PyMem_RawFree: the
 *                        library's allocator on a block about the size of a
 *                        thread state; the baseline (the allocation floor).
 *
 * tss set_get               ns/op
 *     tss        PyThread_tss_set + PyThread_tss_get (CPython figure h).
 *     pthread    pthread_setspecific + pthread_getspecific: the baseline.
 *
 * churn threads T           total ops/s over T threads, fixed wall time
 *     T pthreads without thread states, released together, each looping:
 *     new_clear_delete   PyThreadState_New + Clear + Delete (no thread is
 *                        attached: in both builds this is the lock-free
 *                        registry under concurrent registration)
 *     ensure_fresh       PyGILState_Ensure + Release, each pair creating
 *                        and deleting a state (in the GIL build the threads
 *                        take turns at the GIL)
 *     raw_alloc          PyMem_RawCalloc(1, 128) + PyMem_RawFree: the
 *                        baseline, the allocator's own scaling.
 *     The main thread is detached during a sample.  ftrt-bench prints the
 *     scaling against T=1 beside the table.
 */
#include <Python.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "workload.h"

/* About sizeof(ft_tstate) (core/, ~112 bytes): the raw_alloc baseline's
 * block.  Only the order of magnitude matters: one size class. */
#define TSTATE_SIZE 128

static PyInterpreterState *interp;

static void
runtime_up(void)
{
    interp = bench_runtime_up();
}

static void
fail(const char *what)
{
    bench_fail("tstate", what);
}

/* ---- running a timed loop on a thread of its own ------------------------------ */

typedef struct on_thread {
    bench_timed_fn *fn;
    void *ctx;
    uint64_t iters;
    int64_t elapsed;
} on_thread;

static void *
on_thread_main(void *arg)
{
    on_thread *t = arg;
    t->elapsed = t->fn(t->ctx, t->iters);
    return NULL;
}

/* Run fn(ctx, iters) on a new pthread (no thread state of its own) while
 * the calling thread, attached, detaches: the helper must be able to attach
 * (the GIL), and a QSBR grace period must not wait for us. */
static int64_t
time_on_new_thread(bench_timed_fn *fn, void *ctx, uint64_t iters)
{
    on_thread t = {.fn = fn, .ctx = ctx, .iters = iters, .elapsed = -1};
    pthread_t thread;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_create(&thread, NULL, on_thread_main, &t);
    if (rc == 0) {
        pthread_join(thread, NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        fail("pthread_create failed");
    }
    return t.elapsed;
}

/* ---- the pthread_mutex baseline ----------------------------------------------- */

static pthread_mutex_t baseline_mutex = PTHREAD_MUTEX_INITIALIZER;

static int64_t
timed_pthread_mutex(void *ctx, uint64_t iters)
{
    (void)ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        pthread_mutex_lock(&baseline_mutex);
        bench_compiler_barrier();
        pthread_mutex_unlock(&baseline_mutex);
    }
    return bench_now_ns() - t0;
}

/* ---- attach ----------------------------------------------------------------------- */

static int64_t
timed_allow_threads(void *ctx, uint64_t iters)
{
    (void)ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        Py_BEGIN_ALLOW_THREADS
        bench_compiler_barrier();
        Py_END_ALLOW_THREADS
    }
    return bench_now_ns() - t0;
}

int
bench_attach_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "roundtrip") != 0) {
        return 2;
    }
    runtime_up();
    const bench_subject subs[] = {
        {"allow_threads", timed_allow_threads, NULL},
        {"pthread", timed_pthread_mutex, NULL},
    };
    int rc = bench_measure_calibrated(p, out, "attach", subs, 2, 1);
    return bench_runtime_down(rc);
}

/* ---- gilstate ------------------------------------------------------------------- */

static inline __attribute__((always_inline)) void
ensure_release(void)
{
    PyGILState_STATE s = PyGILState_Ensure();
    bench_compiler_barrier();
    PyGILState_Release(s);
}

static int64_t
timed_ensure_loop(void *ctx, uint64_t iters)
{
    (void)ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        ensure_release();
    }
    return bench_now_ns() - t0;
}

/* (a) the main thread, attached */
static int64_t
timed_gilstate_nested(void *ctx, uint64_t iters)
{
    return timed_ensure_loop(ctx, iters);
}

/* (b) the main thread with its own state detached */
static int64_t
timed_gilstate_detached(void *ctx, uint64_t iters)
{
    int64_t elapsed;
    Py_BEGIN_ALLOW_THREADS
    elapsed = timed_ensure_loop(ctx, iters);
    Py_END_ALLOW_THREADS
    return elapsed;
}

/* (c) a new pthread without a state */
static int64_t
timed_gilstate_fresh(void *ctx, uint64_t iters)
{
    return time_on_new_thread(timed_ensure_loop, ctx, iters);
}

/* The checks, on the thread of case (c): no state before, a new state
 * attached inside, none left after. */
static void *
check_fresh_thread(void *arg)
{
    const char **err = arg;
    *err = NULL;
    if (PyGILState_GetThisThreadState() != NULL || PyGILState_Check()) {
        *err = "fresh: a new thread already has a thread state";
        return NULL;
    }
    uint64_t ids[2];
    for (int i = 0; i < 2; i++) {
        PyGILState_STATE s = PyGILState_Ensure();
        PyThreadState *ts = PyThreadState_GetUnchecked();
        if (s != PyGILState_UNLOCKED || ts == NULL || !PyGILState_Check()) {
            *err = "fresh: Ensure did not attach a state of its own (UNLOCKED)";
        }
        ids[i] = ts ? PyThreadState_GetID(ts) : 0;
        PyGILState_Release(s);
        if (PyThreadState_GetUnchecked() != NULL || PyGILState_GetThisThreadState() != NULL) {
            *err = "fresh: Release left a state behind (not deleted)";
        }
    }
    if (*err == NULL && ids[0] == ids[1]) {
        *err = "fresh: the second Ensure reused the first one's state";
    }
    return NULL;
}

static void
check_gilstate_paths(void)
{
    PyThreadState *main_ts = PyThreadState_Get();
    /* (a) nested: LOCKED, the same state stays attached */
    PyGILState_STATE s = PyGILState_Ensure();
    if (s != PyGILState_LOCKED || PyThreadState_GetUnchecked() != main_ts) {
        fail("nested: Ensure on an attached thread did not return LOCKED");
    }
    PyGILState_Release(s);
    if (PyThreadState_GetUnchecked() != main_ts) {
        fail("nested: Release detached the main thread state");
    }
    /* (b) detached: UNLOCKED, the main thread's own state re-attached */
    bool ok = true;
    Py_BEGIN_ALLOW_THREADS
    s = PyGILState_Ensure();
    ok = s == PyGILState_UNLOCKED && PyThreadState_GetUnchecked() == main_ts;
    PyGILState_Release(s);
    ok = ok && PyThreadState_GetUnchecked() == NULL
            && PyGILState_GetThisThreadState() == main_ts;
    Py_END_ALLOW_THREADS
    if (!ok) {
        fail("detached: Ensure did not re-attach the thread's own state (UNLOCKED), "
             "or Release did not detach it");
    }
    /* (c) fresh */
    const char *err = NULL;
    pthread_t thread;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_create(&thread, NULL, check_fresh_thread, &err);
    if (rc == 0) {
        pthread_join(thread, NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        fail("pthread_create failed");
    }
    if (err) {
        fail(err);
    }
}

int
bench_gilstate_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "ensure_release") != 0) {
        return 2;
    }
    runtime_up();
    check_gilstate_paths();
    const bench_subject subs[] = {
        {"nested", timed_gilstate_nested, NULL},
        {"detached", timed_gilstate_detached, NULL},
        {"fresh", timed_gilstate_fresh, NULL},
        {"pthread", timed_pthread_mutex, NULL},
    };
    int rc = bench_measure_calibrated(p, out, "gilstate", subs, 4, 3);
    return bench_runtime_down(rc);
}

/* ---- tstate ----------------------------------------------------------------------- */

static inline __attribute__((always_inline)) void
new_clear_delete(void)
{
    PyThreadState *ts = PyThreadState_New(interp);
    if (ts == NULL) {
        fail("PyThreadState_New: out of memory");
    }
    PyThreadState_Clear(ts);
    PyThreadState_Delete(ts);
}

static inline __attribute__((always_inline)) void
raw_alloc_free(void)
{
    void *block = PyMem_RawCalloc(1, TSTATE_SIZE);
    if (block == NULL) {
        fail("PyMem_RawCalloc: out of memory");
    }
    bench_keep_u64((uint64_t)(uintptr_t)block);
    PyMem_RawFree(block);
}

static int64_t
timed_new_clear_delete(void *ctx, uint64_t iters)
{
    (void)ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        new_clear_delete();
    }
    int64_t elapsed = bench_now_ns() - t0;
    /* A quiescent point, so the deleted states can be freed: an attached
     * thread holds off RCU grace periods. */
    Py_BEGIN_ALLOW_THREADS
    Py_END_ALLOW_THREADS
    return elapsed;
}

static int64_t
new_attach_delete_loop(void *ctx, uint64_t iters)
{
    (void)ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        PyThreadState *ts = PyThreadState_New(interp);
        if (ts == NULL) {
            fail("PyThreadState_New: out of memory");
        }
        PyEval_RestoreThread(ts);
        PyThreadState_Clear(ts);
        PyThreadState_DeleteCurrent();
    }
    return bench_now_ns() - t0;
}

static int64_t
timed_new_attach_delete(void *ctx, uint64_t iters)
{
    return time_on_new_thread(new_attach_delete_loop, ctx, iters);
}

static int64_t
timed_raw_alloc(void *ctx, uint64_t iters)
{
    (void)ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        raw_alloc_free();
    }
    return bench_now_ns() - t0;
}

int
bench_tstate_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "create_destroy") != 0) {
        return 2;
    }
    runtime_up();
    const bench_subject subs[] = {
        {"new_clear_delete", timed_new_clear_delete, NULL},
        {"new_attach_delete", timed_new_attach_delete, NULL},
        {"raw_alloc", timed_raw_alloc, NULL},
    };
    int rc = bench_measure_calibrated(p, out, "tstate", subs, 3, 2);
    return bench_runtime_down(rc);
}

/* ---- tss -------------------------------------------------------------------------- */

static Py_tss_t tss_key = Py_tss_NEEDS_INIT;
static pthread_key_t pthread_key;

static int64_t
timed_tss(void *ctx, uint64_t iters)
{
    (void)ctx;
    uint64_t acc = 0;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        acc += (uint64_t)PyThread_tss_set(&tss_key, (void *)(uintptr_t)(i | 1));
        acc += (uint64_t)(uintptr_t)PyThread_tss_get(&tss_key);
    }
    int64_t elapsed = bench_now_ns() - t0;
    bench_keep_u64(acc);
    return elapsed;
}

static int64_t
timed_pthread_specific(void *ctx, uint64_t iters)
{
    (void)ctx;
    uint64_t acc = 0;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        acc += (uint64_t)pthread_setspecific(pthread_key, (void *)(uintptr_t)(i | 1));
        acc += (uint64_t)(uintptr_t)pthread_getspecific(pthread_key);
    }
    int64_t elapsed = bench_now_ns() - t0;
    bench_keep_u64(acc);
    return elapsed;
}

int
bench_tss_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "set_get") != 0) {
        return 2;
    }
    /* no runtime: TSS works without one */
    if (PyThread_tss_create(&tss_key) != 0 || pthread_key_create(&pthread_key, NULL) != 0) {
        fail("cannot create a TSS key");
    }
    if (PyThread_tss_set(&tss_key, &tss_key) != 0 || PyThread_tss_get(&tss_key) != &tss_key) {
        fail("PyThread_tss_get does not return what PyThread_tss_set stored");
    }
    const bench_subject subs[] = {
        {"tss", timed_tss, NULL},
        {"pthread", timed_pthread_specific, NULL},
    };
    int rc = bench_measure_calibrated(p, out, "tss", subs, 2, 1);
    PyThread_tss_delete(&tss_key);
    pthread_key_delete(pthread_key);
    return rc;
}

/* ---- churn ----------------------------------------------------------------------- */

typedef enum churn_kind {
    CHURN_NEW_CLEAR_DELETE,
    CHURN_ENSURE_FRESH,
    CHURN_RAW_ALLOC,
    N_CHURN
} churn_kind;

static const char *const churn_names[N_CHURN] = {"new_clear_delete", "ensure_fresh",
                                                  "raw_alloc"};

/* One member of a churn team: it must have no thread state before or after
 * its loop (a failure otherwise). */
static inline __attribute__((always_inline)) void
churn_loop(bench_member *m, churn_kind kind)
{
    bool bad = PyGILState_GetThisThreadState() != NULL;
    bench_team_wait_go(m, false);
    /* At least one operation per thread, even when the thread is not
     * scheduled before stop is set (a loaded machine, tiny --smoke samples):
     * a sample is never zero, and every thread has created a state. */
    uint64_t ops = 0;
    do {
        switch (kind) {
        case CHURN_NEW_CLEAR_DELETE:
            new_clear_delete();
            break;
        case CHURN_ENSURE_FRESH:
            ensure_release();
            break;
        case CHURN_RAW_ALLOC:
            raw_alloc_free();
            break;
        case N_CHURN:
            break;
        }
        ops++;
    } while (!bench_team_stopped(m));
    m->ops = ops;
    m->failed = bad || PyGILState_GetThisThreadState() != NULL;
}

static void
churn_new_clear_delete(bench_member *m, void *arg)
{
    (void)arg;
    churn_loop(m, CHURN_NEW_CLEAR_DELETE);
}

static void
churn_ensure_fresh(bench_member *m, void *arg)
{
    (void)arg;
    churn_loop(m, CHURN_ENSURE_FRESH);
}

static void
churn_raw_alloc(bench_member *m, void *arg)
{
    (void)arg;
    churn_loop(m, CHURN_RAW_ALLOC);
}

static bench_member_fn *const churn_fns[N_CHURN] = {
    churn_new_clear_delete, churn_ensure_fresh, churn_raw_alloc,
};

/* Total ops/s of one sample; the caller is the attached main thread. */
static double
churn_sample(churn_kind kind, int threads, int64_t duration_ns)
{
    bool bad;
    double rate = bench_team_run(threads, duration_ns, false, churn_fns[kind], NULL, &bad);
    if (bad) {
        fail("churn: a new thread had a thread state, or kept one after the loop");
    }
    return rate;
}

static double
churn_subject(void *ctx, size_t k)
{
    const bench_params *p = ctx;
    return churn_sample((churn_kind)k, p->threads, p->sample_ns);
}

int
bench_churn_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "threads") != 0) {
        return 2;
    }
    if (p->threads < 1) {
        fprintf(stderr, "churn: needs threads >= 1\n");
        return 1;
    }
    runtime_up();
    double ops[N_CHURN][BENCH_MAX_SAMPLES];
    bench_sample_rotating(p, N_CHURN, churn_subject, (void *)p, ops);
    bench_print_results(out, "churn", p, "ops/s", churn_names, N_CHURN, CHURN_RAW_ALLOC, ops);
    return bench_runtime_down(0);
}
