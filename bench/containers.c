/* Workloads "listbuild", "listshared" and "dictmix": the built-in containers
 * under threads, the reason ftrt exists (issue #5's scaling measures).
 *
 * Every measure starts T attached threads (PyGILState_Ensure) together; the
 * main thread is detached while they run.  In the GIL build the threads
 * take turns at the GIL: each loop reaches a safe point (PyErr_CheckSignals)
 * every CHUNK operations, as Python code would at its bytecode boundaries,
 * so the GIL is handed around at the switch interval.
 *
 * listbuild threads T       total ints appended per second, fixed wall time
 *     private    each thread builds its own list of LIST_ITEMS fresh ints
 *                (PyLong_FromLong + PyList_Append), drops it, and starts
 *                again.  CPython 3.13 figure (i): the speed-up at T=2 and 4.
 *     raw        each thread fills an array with LIST_ITEMS blocks from
 *                PyMem_RawMalloc (the size of an int object) and frees
 *                them: the baseline, the allocator's own scaling.
 *
 * listshared threads T      appends per second to one list, LIST_ITEMS in all
 *                           (SMOKE_ITEMS when the samples are shorter than
 *                           50 ms: --smoke, which CI runs under sanitizers)
 *     shared     T threads append fresh ints to one list until it holds
 *                LIST_ITEMS items (each appends its share).  CPython figure
 *                (ii): free-threaded over GIL time at T=1.
 *     raw        the same number of PyMem_RawMalloc blocks stored into one
 *                array by T threads (an atomic index): the baseline.
 *
 * dictmix threads T         total dictionary operations per second
 *     private    each thread: one set (PyDict_SetItem) and three gets
 *                (PyDict_GetItemRef) per step on its own dict of DICT_KEYS
 *                int keys.
 *     shared     the same mix on one dict shared by all T threads.
 *     raw        the allocator baseline as in listbuild, one block per op.
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

#define LIST_ITEMS 1000000
#define DICT_KEYS 1024
#define CHUNK 1024          /* operations between safe points */
#define INT_BLOCK 32        /* PyMem_RawMalloc size standing in for an int */
#define SMOKE_ITEMS 10000

static void
fail(const char *what)
{
    bench_fail("containers", what);
}

typedef enum kind {
    LISTBUILD_PRIVATE,
    LISTBUILD_RAW,
    LISTSHARED_SHARED,
    LISTSHARED_RAW,
    DICTMIX_PRIVATE,
    DICTMIX_SHARED,
    DICTMIX_RAW,
} kind;

typedef struct run {
    _Alignas(64) atomic_long shared_count;   /* listshared: items claimed */
    kind what;
    int threads;
    long items;              /* listshared: how many in all */
    PyObject *shared;        /* the shared list or dict */
    void **raw_array;        /* listshared raw */
} run;

/* ---- the loops -------------------------------------------------------------------- */

static uint64_t
listbuild_private(bench_member *m, bool *failed)
{
    uint64_t ops = 0;
    do {   /* at least one chunk, even when stop came first (a busy machine, --smoke) */
        PyObject *list = PyList_New(0);
        if (list == NULL) {
            *failed = true;
            return ops;
        }
        for (long i = 0; i < LIST_ITEMS && !(i % CHUNK == 0 && i > 0 && bench_team_stopped(m)); i++) {
            PyObject *v = PyLong_FromLong(i + 1000);
            if (v == NULL || PyList_Append(list, v) < 0) {
                Py_XDECREF(v);
                *failed = true;
                break;
            }
            Py_DECREF(v);
            ops++;
            if (i % CHUNK == 0) {
                (void)PyErr_CheckSignals();
            }
        }
        Py_DECREF(list);
        if (*failed) {
            break;
        }
    } while (!bench_team_stopped(m));
    return ops;
}

static uint64_t
raw_blocks(bench_member *m, bool *failed)
{
    void **blocks = malloc(sizeof(void *) * LIST_ITEMS);
    if (blocks == NULL) {
        *failed = true;
        return 0;
    }
    uint64_t ops = 0;
    do {
        long n = 0;
        for (; n < LIST_ITEMS && !(n % CHUNK == 0 && n > 0 && bench_team_stopped(m)); n++) {
            blocks[n] = PyMem_RawMalloc(INT_BLOCK);
            if (blocks[n] == NULL) {
                *failed = true;
                break;
            }
            ops++;
            if (n % CHUNK == 0) {
                (void)PyErr_CheckSignals();
            }
        }
        for (long i = 0; i < n; i++) {
            PyMem_RawFree(blocks[i]);
        }
        if (*failed) {
            break;
        }
    } while (!bench_team_stopped(m));
    free(blocks);
    return ops;
}

static uint64_t
listshared_shared(run *r, bool *failed)
{
    uint64_t ops = 0;
    for (;;) {
        long claim = atomic_fetch_add_explicit(&r->shared_count, CHUNK, memory_order_relaxed);
        if (claim >= r->items) {
            break;
        }
        long n = r->items - claim < CHUNK ? r->items - claim : CHUNK;
        for (long i = 0; i < n; i++) {
            PyObject *v = PyLong_FromLong(claim + i + 1000);
            if (v == NULL || PyList_Append(r->shared, v) < 0) {
                Py_XDECREF(v);
                *failed = true;
                return ops;
            }
            Py_DECREF(v);
            ops++;
        }
        (void)PyErr_CheckSignals();
    }
    return ops;
}

static uint64_t
listshared_raw(run *r, bool *failed)
{
    uint64_t ops = 0;
    for (;;) {
        long claim = atomic_fetch_add_explicit(&r->shared_count, CHUNK, memory_order_relaxed);
        if (claim >= r->items) {
            break;
        }
        long n = r->items - claim < CHUNK ? r->items - claim : CHUNK;
        for (long i = 0; i < n; i++) {
            void *b = PyMem_RawMalloc(INT_BLOCK);
            if (b == NULL) {
                *failed = true;
                return ops;
            }
            __atomic_store_n(&r->raw_array[claim + i], b, __ATOMIC_RELEASE);
            ops++;
        }
        (void)PyErr_CheckSignals();
    }
    return ops;
}

static uint64_t
dictmix(bench_member *m, PyObject *dict, bool *failed)
{
    uint64_t ops = 0;
    uint32_t x = (uint32_t)(uintptr_t)&ops | 1;   /* per-thread xorshift seed */
    do {
        for (int i = 0; i < CHUNK; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            PyObject *k = PyLong_FromLong((long)(x % DICT_KEYS));
            PyObject *v = PyLong_FromLong((long)x);
            if (k == NULL || v == NULL || PyDict_SetItem(dict, k, v) < 0) {
                Py_XDECREF(k);
                Py_XDECREF(v);
                *failed = true;
                return ops;
            }
            Py_DECREF(v);
            Py_DECREF(k);
            for (int g = 0; g < 3; g++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                PyObject *key = PyLong_FromLong((long)(x % DICT_KEYS));
                PyObject *got = NULL;
                if (key == NULL || PyDict_GetItemRef(dict, key, &got) < 0) {
                    Py_XDECREF(key);
                    *failed = true;
                    return ops;
                }
                Py_XDECREF(got);
                Py_DECREF(key);
            }
            ops += 4;
        }
        (void)PyErr_CheckSignals();
    } while (!bench_team_stopped(m));
    return ops;
}

static void
member_body(bench_member *m, void *arg)
{
    run *r = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *own = NULL;
    bool failed = false;
    if (r->what == DICTMIX_PRIVATE) {
        own = PyDict_New();
        failed = own == NULL;
    }
    bench_team_wait_go(m, true);
    uint64_t ops = 0;
    if (!failed) {
        switch (r->what) {
        case LISTBUILD_PRIVATE: ops = listbuild_private(m, &failed); break;
        case LISTBUILD_RAW: case DICTMIX_RAW: ops = raw_blocks(m, &failed); break;
        case LISTSHARED_SHARED: ops = listshared_shared(r, &failed); break;
        case LISTSHARED_RAW: ops = listshared_raw(r, &failed); break;
        case DICTMIX_PRIVATE: ops = dictmix(m, own, &failed); break;
        case DICTMIX_SHARED: ops = dictmix(m, r->shared, &failed); break;
        }
    }
    m->ops = ops;
    m->failed = failed;
    Py_XDECREF(own);
    PyGILState_Release(g);
}

/* One sample: total ops/s over the threads (fixed wall time, or until the
 * shared work is done for listshared). */
static double
sample(kind what, int threads, int64_t duration_ns)
{
    run r = {.what = what, .threads = threads,
             .items = duration_ns >= 50 * 1000000LL ? LIST_ITEMS : SMOKE_ITEMS};
    atomic_init(&r.shared_count, 0);
    if (what == LISTSHARED_SHARED) {
        r.shared = PyList_New(0);
    }
    else if (what == DICTMIX_SHARED) {
        r.shared = PyDict_New();
    }
    else if (what == LISTSHARED_RAW) {
        r.raw_array = calloc((size_t)r.items, sizeof(void *));
        if (r.raw_array == NULL) {
            fail("out of memory");
        }
    }
    if ((what == LISTSHARED_SHARED || what == DICTMIX_SHARED) && r.shared == NULL) {
        fail("out of memory");
    }
    bool fixed_work = what == LISTSHARED_SHARED || what == LISTSHARED_RAW;
    bool failed;
    double rate = bench_team_run(threads, duration_ns, fixed_work, member_body, &r, &failed);
    if (failed) {
        fail("an operation failed (out of memory?)");
    }
    if (what == LISTSHARED_SHARED && PyList_Size(r.shared) != r.items) {
        fail("listshared: the list does not hold every appended item");
    }
    Py_XDECREF(r.shared);
    if (r.raw_array != NULL) {
        for (long i = 0; i < r.items; i++) {
            PyMem_RawFree(r.raw_array[i]);
        }
        free(r.raw_array);
    }
    return rate;
}

typedef struct subjects {
    const kind *kinds;
    const bench_params *p;
} subjects;

static double
subject_sample(void *ctx, size_t k)
{
    subjects *c = ctx;
    return sample(c->kinds[k], c->p->threads, c->p->sample_ns);
}

static int
measure(const bench_params *p, FILE *out, const char *workload, const kind *kinds,
        const char *const *names, size_t n, size_t baseline)
{
    if (p->threads < 1) {
        fprintf(stderr, "%s: needs threads >= 1\n", workload);
        return 1;
    }
    (void)bench_runtime_up();
    double ops[BENCH_MAX_SUBJECTS][BENCH_MAX_SAMPLES];
    bench_sample_rotating(p, n, subject_sample, &(subjects){kinds, p}, ops);
    bench_print_results(out, workload, p, "ops/s", names, n, baseline, ops);
    return bench_runtime_down(0);
}

int
bench_listbuild_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "threads") != 0) {
        return 2;
    }
    static const kind kinds[] = {LISTBUILD_PRIVATE, LISTBUILD_RAW};
    static const char *const names[] = {"private", "raw"};
    return measure(p, out, "listbuild", kinds, names, 2, 1);
}

int
bench_listshared_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "threads") != 0) {
        return 2;
    }
    static const kind kinds[] = {LISTSHARED_SHARED, LISTSHARED_RAW};
    static const char *const names[] = {"shared", "raw"};
    return measure(p, out, "listshared", kinds, names, 2, 1);
}

int
bench_dictmix_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "threads") != 0) {
        return 2;
    }
    static const kind kinds[] = {DICTMIX_PRIVATE, DICTMIX_SHARED, DICTMIX_RAW};
    static const char *const names[] = {"private", "shared", "raw"};
    return measure(p, out, "dictmix", kinds, names, 3, 2);
}
