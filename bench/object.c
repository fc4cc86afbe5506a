/* Workloads "refcount", "refshared", "critsec" and "alloc": the object core.
 *
 * Objects are instances of two static types defined here, as an extension
 * would define them: a plain one (16-byte body) and a GC one (Py_TPFLAGS_HAVE_GC,
 * same body).  The runtime is initialized and the main thread attached.
 *
 * refcount incdec           ns/op
 *     owner      Py_INCREF + Py_DECREF on an object the thread created
 *                (free-threaded: the owner's non-atomic local count;
 *                CPython figure d, owner).
 *     nonowner   the same on an object another thread created (free-threaded:
 *                an atomic add, then _Py_DecRefShared's compare-and-swap;
 *                CPython figure d, non-owner).
 *     atomic     __atomic_fetch_add + __atomic_fetch_sub on one counter: the
 *                baseline, two locked instructions (the non-owner path's floor).
 *     The GIL build has one plain count: all three subjects but the baseline
 *     are the same code there.
 *
 * refshared threads T      total ops/s over T threads, fixed wall time
 *     shared     T threads do Py_INCREF + Py_DECREF on one object that none
 *                of them owns (the main thread created it and is detached);
 *                the GIL build: the threads take turns at the GIL (each one
 *                attaches for the whole sample, and the switch interval
 *                hands the GIL around).  CPython figure d, 2 threads.
 *     atomic     T threads do the atomic pair on one shared counter: the
 *                baseline (the cache line bouncing between the CPUs).
 *
 * critsec uncontended       ns/op
 *     one        Py_BEGIN_CRITICAL_SECTION(o) ... END on an object no other
 *                thread touches (CPython figure c, one list).
 *     two        Py_BEGIN_CRITICAL_SECTION2(a, b) ... END2 (figure c, two).
 *     pthread    pthread_mutex_lock + unlock: the baseline.
 *     The GIL build's macros are bare braces: what remains is the loop.
 *
 * alloc small               ns/op
 *     plain      PyObject_New + Py_DECREF (-> tp_dealloc -> PyObject_Free)
 *     gc         PyObject_GC_New + PyObject_GC_Track + Py_DECREF (-> tp_dealloc:
 *                PyObject_GC_UnTrack + PyObject_GC_Del)
 *     raw        PyMem_RawMalloc + PyMem_RawFree of the plain object's size:
 *                the baseline (the allocator floor).  No CPython figure.
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

typedef struct {
    PyObject_HEAD
    uint64_t payload[2];
} bench_obj;

static void
plain_dealloc(PyObject *op)
{
    PyObject_Free(op);
}

static void
gc_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    PyObject_GC_Del(op);
}

static int
gc_traverse(PyObject *op, visitproc visit, void *arg)
{
    (void)op;
    (void)visit;
    (void)arg;
    return 0;
}

static PyTypeObject plain_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "bench.plain",
    .tp_basicsize = sizeof(bench_obj),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = plain_dealloc,
};

static PyTypeObject gc_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "bench.gc",
    .tp_basicsize = sizeof(bench_obj),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = gc_dealloc,
    .tp_traverse = gc_traverse,
};

static void
fail(const char *what)
{
    bench_fail("object", what);
}

static void
objects_up(void)
{
    (void)bench_runtime_up();
    if (PyType_Ready(&plain_type) < 0 || PyType_Ready(&gc_type) < 0) {
        fail("PyType_Ready failed");
    }
}

static PyObject *
new_plain(void)
{
    PyObject *o = (PyObject *)PyObject_New(bench_obj, &plain_type);
    if (o == NULL) {
        fail("PyObject_New: out of memory");
    }
    return o;
}

/* ---- refcount incdec ------------------------------------------------------------ */

static inline __attribute__((always_inline)) int64_t
incdec_loop(PyObject *o, uint64_t iters)
{
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        Py_INCREF(o);
        bench_compiler_barrier();
        Py_DECREF(o);
    }
    return bench_now_ns() - t0;
}

static int64_t
timed_incdec(void *ctx, uint64_t iters)
{
    return incdec_loop(ctx, iters);
}

static int64_t
timed_atomic_pair(void *ctx, uint64_t iters)
{
    int64_t *counter = ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
        bench_compiler_barrier();
        __atomic_fetch_sub(counter, 1, __ATOMIC_RELEASE);
    }
    return bench_now_ns() - t0;
}

/* An object created (and kept referenced) by a thread that then exits: the
 * main thread is not its owner. */
static void *
create_foreign(void *arg)
{
    PyGILState_STATE s = PyGILState_Ensure();
    *(PyObject **)arg = (PyObject *)PyObject_New(bench_obj, &plain_type);
    PyGILState_Release(s);
    return NULL;
}

static PyObject *
new_foreign(void)
{
    PyObject *o = NULL;
    pthread_t t;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_create(&t, NULL, create_foreign, &o);
    if (rc == 0) {
        pthread_join(t, NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0 || o == NULL) {
        fail("could not create an object on another thread");
    }
    return o;
}

static int
refcount_incdec(const bench_params *p, FILE *out)
{
    objects_up();
    PyObject *mine = new_plain();
    PyObject *theirs = new_foreign();
    static int64_t counter;
    const bench_subject subs[] = {
        {"owner", timed_incdec, mine},
        {"nonowner", timed_incdec, theirs},
        {"atomic", timed_atomic_pair, &counter},
    };
    int rc = bench_measure_calibrated(p, out, "refcount", subs, 3, 2);
    if (Py_REFCNT(mine) != 1 || Py_REFCNT(theirs) != 1) {
        fail("incdec: the counts did not come back to 1");
    }
    Py_DECREF(mine);
    Py_DECREF(theirs);
    return bench_runtime_down(rc);
}

/* ---- refcount shared: T threads, fixed wall time ------------------------------------ */

typedef struct shared_work {
    PyObject *obj;        /* use_obj: the object every member increfs */
    int64_t *counter;     /* else: the counter of the atomic baseline */
    bool use_obj;
} shared_work;

static void
shared_member(bench_member *m, void *arg)
{
    shared_work *w = arg;
    PyGILState_STATE s = PyGILState_Ensure();
    bench_team_wait_go(m, true);
    uint64_t ops = 0;
    do {
        for (int i = 0; i < 64; i++) {
            if (w->use_obj) {
                Py_INCREF(w->obj);
                bench_compiler_barrier();
                Py_DECREF(w->obj);
            }
            else {
                __atomic_fetch_add(w->counter, 1, __ATOMIC_RELAXED);
                bench_compiler_barrier();
                __atomic_fetch_sub(w->counter, 1, __ATOMIC_RELEASE);
            }
        }
        ops += 64;
        (void)PyErr_CheckSignals();   /* C code reaching a safe point (GIL hand-off) */
    } while (!bench_team_stopped(m));
    m->ops = ops;
    PyGILState_Release(s);
}

static double
shared_sample(bool use_obj, PyObject *obj, int threads, int64_t duration_ns)
{
    static int64_t counter;
    shared_work w = {.obj = obj, .counter = &counter, .use_obj = use_obj};
    bool failed;
    return bench_team_run(threads, duration_ns, false, shared_member, &w, &failed);
}

typedef struct shared_ctx {
    PyObject *obj;
    const bench_params *p;
} shared_ctx;

/* subject 0: the shared object; 1: the atomic baseline */
static double
shared_subject(void *ctx, size_t k)
{
    shared_ctx *c = ctx;
    return shared_sample(k == 0, c->obj, c->p->threads, c->p->sample_ns);
}

static int
refcount_shared(const bench_params *p, FILE *out)
{
    if (p->threads < 1) {
        fprintf(stderr, "refcount shared: needs threads >= 1\n");
        return 1;
    }
    objects_up();
    PyObject *obj = new_plain();
    static const char *const names[] = {"shared", "atomic"};
    double ops[2][BENCH_MAX_SAMPLES];
    bench_sample_rotating(p, 2, shared_subject, &(shared_ctx){obj, p}, ops);
    bench_print_results(out, "refshared", p, "ops/s", names, 2, 1, ops);
    if (Py_REFCNT(obj) != 1) {
        fail("shared: the count did not come back to 1");
    }
    Py_DECREF(obj);
    return bench_runtime_down(0);
}

int
bench_refcount_run(const bench_params *p, FILE *out)
{
    return strcmp(p->measure, "incdec") == 0 ? refcount_incdec(p, out) : 2;
}

int
bench_refshared_run(const bench_params *p, FILE *out)
{
    return strcmp(p->measure, "threads") == 0 ? refcount_shared(p, out) : 2;
}

/* ---- critsec -------------------------------------------------------------------- */

typedef struct pair {
    PyObject *a, *b;
} pair;

static int64_t
timed_cs_one(void *ctx, uint64_t iters)
{
    pair *o = ctx;
    (void)o;   /* the GIL build's macros do not use it */
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        Py_BEGIN_CRITICAL_SECTION(o->a);
        bench_compiler_barrier();
        Py_END_CRITICAL_SECTION();
    }
    return bench_now_ns() - t0;
}

static int64_t
timed_cs_two(void *ctx, uint64_t iters)
{
    pair *o = ctx;
    (void)o;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        Py_BEGIN_CRITICAL_SECTION2(o->a, o->b);
        bench_compiler_barrier();
        Py_END_CRITICAL_SECTION2();
    }
    return bench_now_ns() - t0;
}

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

int
bench_critsec_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "uncontended") != 0) {
        return 2;
    }
    objects_up();
    pair o = {new_plain(), new_plain()};
    const bench_subject subs[] = {
        {"one", timed_cs_one, &o},
        {"two", timed_cs_two, &o},
        {"pthread", timed_pthread_mutex, NULL},
    };
    int rc = bench_measure_calibrated(p, out, "critsec", subs, 3, 2);
    Py_DECREF(o.a);
    Py_DECREF(o.b);
    return bench_runtime_down(rc);
}

/* ---- alloc ------------------------------------------------------------------------ */

static int64_t
timed_alloc_plain(void *ctx, uint64_t iters)
{
    (void)ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        PyObject *o = (PyObject *)PyObject_New(bench_obj, &plain_type);
        if (o == NULL) {
            fail("PyObject_New: out of memory");
        }
        bench_compiler_barrier();
        Py_DECREF(o);
    }
    return bench_now_ns() - t0;
}

static int64_t
timed_alloc_gc(void *ctx, uint64_t iters)
{
    (void)ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        PyObject *o = (PyObject *)PyObject_GC_New(bench_obj, &gc_type);
        if (o == NULL) {
            fail("PyObject_GC_New: out of memory");
        }
        PyObject_GC_Track(o);
        bench_compiler_barrier();
        Py_DECREF(o);
    }
    return bench_now_ns() - t0;
}

static int64_t
timed_alloc_raw(void *ctx, uint64_t iters)
{
    (void)ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        void *m = PyMem_RawMalloc(sizeof(bench_obj));
        if (m == NULL) {
            fail("PyMem_RawMalloc: out of memory");
        }
        bench_compiler_barrier();
        PyMem_RawFree(m);
    }
    return bench_now_ns() - t0;
}

int
bench_alloc_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "small") != 0) {
        return 2;
    }
    objects_up();
    const bench_subject subs[] = {
        {"plain", timed_alloc_plain, NULL},
        {"gc", timed_alloc_gc, NULL},
        {"raw", timed_alloc_raw, NULL},
    };
    int rc = bench_measure_calibrated(p, out, "alloc", subs, 3, 2);
    return bench_runtime_down(rc);
}
