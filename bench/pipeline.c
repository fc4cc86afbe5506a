/* Workloads "pipeline" and "dictmap": two end-to-end patterns of threaded
 * extension code, built from the containers (issue #5's "a producer/consumer
 * pipeline through a shared list with critical sections, and a parallel map
 * over a shared read-only dict").
 *
 * As in containers.c, every sample starts T threads together (bench_team_run)
 * for a fixed wall time while the main thread is detached; the runtime's
 * threads are attached (PyGILState_Ensure) and reach a safe point
 * (PyErr_CheckSignals) at least every CHUNK operations and whenever they wait,
 * so they stay stoppable (docs/threads.md, "Safe points") and, in the GIL
 * build, hand the GIL around.  The subjects are measured in rotating order,
 * sample by sample, in one worker; the driver prints the ratios.
 *
 * pipeline threads T        items passed from producers to consumers per second
 *     list       one list is the queue, bounded at QUEUE_BOUND items.  At T=1
 *                one thread alternates: BATCH items in, BATCH items out.  At
 *                T >= 2 T/2 threads produce and the others consume.  A
 *                producer creates an int (PyLong_FromLong, a value past the
 *                small-int cache, so a real object owned by the producer) and
 *                appends it inside Py_BEGIN_CRITICAL_SECTION(list) if the list
 *                holds fewer than QUEUE_BOUND items; a consumer, inside the
 *                section, takes the last item (PyList_GetItemRef) and deletes
 *                it (PyList_SetSlice(l, n-1, n, NULL)), then adds its value to
 *                a private sum and drops it (a non-owner decref: the runtime
 *                hands the object back to its owner to free).  The queue is
 *                LIFO (list has no pop; popping the front would memmove up to
 *                8 KB per item); order does not matter to the sum.  A side with
 *                nothing to do (queue full or empty) reaches a safe point and
 *                detaches around a sched_yield, which in the GIL build lets
 *                the other side have the GIL.  At the end the worker checks
 *                that the values consumed plus those left in the list add up
 *                to the values produced (count and sum), else fails.
 *     pthread    the baseline, the "no runtime" floor: the same threads and
 *                roles, unattached, passing plain longs through a C array of
 *                the same bound used the same way (LIFO) under one
 *                pthread_mutex_t, sched_yield when waiting; checked the same
 *                way.  list/pthread is the runtime's cost (objects, critical
 *                sections, the GIL in the GIL build).
 *
 * dictmap threads T         dictionary lookups per second, all threads
 *     The main thread builds, once per worker, a dict of DICT_KEYS str keys
 *     ("k0", "k1", ...) -> ints (1000 + 3i) and a list of the same key
 *     objects; after that both are only read.  Every thread maps over all the
 *     keys, starting at its own offset (DICT_KEYS * t / T) and wrapping, for
 *     the sample's wall time: for each key PyDict_GetItemRef(d, key),
 *     PyLong_AsLong of the value, checked against 1000 + 3i (the worker fails
 *     on a missing or wrong value), accumulated, Py_DECREF.  The key list is
 *     read with PyList_GET_ITEM: nobody changes it while the threads run (the
 *     safe case for a borrowed reference), so the subjects differ only in
 *     the dict and the objects it holds.
 *     shared     one dict, its keys and values shared by every thread.
 *     copy       each thread maps over its own PyDict_Copy of that dict
 *                (made before the start): a private table, but the same key
 *                and value objects as "shared".
 *     private    the baseline: each thread builds its own dict of fresh keys
 *                and values and its own key list (before the start), so
 *                nothing is shared.  shared/private is the cost of sharing
 *                read-only data; copy/private the part of it that is the
 *                shared objects (reference counts) rather than the shared
 *                table.  A C array without the runtime would show the cost
 *                of the API instead, which listbuild and dictmix already do.
 *     The private objects are dropped by the main thread after the sample,
 *     so that no thread's teardown is timed.
 *
 * Why dictmap: CPython 3.13t anti-scales on read-mostly sharing.  User ask
 * #24 (/work/shared/reference/user-asks.md, "Refcount contention on shared
 * objects"): a threading.Lock shared by threads is about 8-9x slower
 * (cpython #134761), threading.local reads were 2x slower than serial
 * (#128691), and nested closures (#124218), heap types (#122417), a
 * list-of-lists copy (#120040) and NumPy's unpickled dtypes (numpy #32298)
 * anti-scale; the need: "shared read-mostly objects (locks, types, code,
 * dtypes) must not serialize threads".  Every PyDict_GetItemRef returns a new
 * reference, so T threads reading one dict all write the reference counts of
 * the same values (atomic, non-owner) and the cache lines move between cores.
 * ftrt's dict reads (docs/containers.md, "Thread safety"; core/dictobject.c)
 * take no lock on a SHARED dict: load the table, probe with acquire loads
 * (the same key object matches by identity, no comparison, no reference to
 * the key), take the value's reference with a try-incref CAS and re-check
 * the table; old tables wait an RCU grace period.  So the table is read
 * without writes, but the value's reference count is still written twice
 * per lookup: what remains of the sharing cost is copy/private.
 * In the GIL build the threads take turns (no scaling is expected).
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

#define QUEUE_BOUND 1024
#define BATCH 32             /* pipeline T=1: items in, then out */
#define CHUNK 1024           /* operations between safe points */
#define DICT_KEYS 10000
#define SMOKE_KEYS 256       /* samples shorter than 50 ms: --smoke */
#define VALUE_BASE 1000      /* past the small-int cache */

static void
fail(const char *workload, const char *what)
{
    bench_fail(workload, what);
}

typedef enum kind {
    PIPELINE_LIST,
    PIPELINE_PTHREAD,
    DICTMAP_SHARED,
    DICTMAP_COPY,
    DICTMAP_PRIVATE,
} kind;

typedef struct own_objects {
    PyObject *dict;
    PyObject *keys;
} own_objects;

typedef struct run {
    _Alignas(64) atomic_int next_role;
    _Alignas(64) atomic_ullong produced_n;   /* pipeline: items and value sums */
    atomic_ullong produced_sum;
    atomic_ullong consumed_n;
    atomic_ullong consumed_sum;
    kind what;
    int threads;
    /* pipeline */
    PyObject *list;
    _Alignas(64) pthread_mutex_t mu;
    long stack[QUEUE_BOUND];
    int top;                  /* items in stack, under mu */
    /* dictmap */
    PyObject *dict;           /* the shared dict and key list */
    PyObject *keys;
    long n_keys;
    own_objects *own;         /* copy, private: per role, dropped by main */
} run;

/* ---- pipeline ------------------------------------------------------------------ */

/* Nothing to do: a safe point, and let the other side run (in the GIL build
 * it needs the GIL). */
static void
idle(void)
{
    (void)PyErr_CheckSignals();
    Py_BEGIN_ALLOW_THREADS
    sched_yield();
    Py_END_ALLOW_THREADS
}

/* 1: appended, 0: the queue is full, -1: error. */
static int
put(PyObject *list, PyObject *item)
{
    int rc;
    Py_BEGIN_CRITICAL_SECTION(list);
    if (PyList_GET_SIZE(list) >= QUEUE_BOUND) {
        rc = 0;
    }
    else {
        rc = PyList_Append(list, item) < 0 ? -1 : 1;
    }
    Py_END_CRITICAL_SECTION();
    return rc;
}

/* 1: *item is the last item, removed; 0: the queue is empty; -1: error. */
static int
take(PyObject *list, PyObject **item)
{
    int rc = 0;
    *item = NULL;
    Py_BEGIN_CRITICAL_SECTION(list);
    Py_ssize_t n = PyList_GET_SIZE(list);
    if (n > 0) {
        *item = PyList_GetItemRef(list, n - 1);
        rc = *item != NULL && PyList_SetSlice(list, n - 1, n, NULL) == 0 ? 1 : -1;
    }
    Py_END_CRITICAL_SECTION();
    return rc;
}

/* The value of a producer's seq-th item. */
static long
item_value(int role, uint64_t seq)
{
    return VALUE_BASE + (long)((seq * 7 + (uint64_t)role) % 100000);
}

/* Consume one item: its value into the sums, then drop it.  False on error. */
static bool
consume(PyObject *item, uint64_t *n, uint64_t *sum)
{
    long v = PyLong_AsLong(item);
    Py_DECREF(item);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return false;
    }
    *n += 1;
    *sum += (uint64_t)v;
    return true;
}

typedef struct tally {
    uint64_t produced_n, produced_sum, consumed_n, consumed_sum;
} tally;

/* pipeline_alone's producing step.  False on error (*full: the queue was full). */
static bool
produce_one(PyObject *list, int role, tally *t, bool *full)
{
    long v = item_value(role, t->produced_n);
    PyObject *item = PyLong_FromLong(v);
    if (item == NULL) {
        return false;
    }
    int rc = put(list, item);
    Py_DECREF(item);
    *full = rc == 0;
    if (rc == 1) {
        t->produced_n++;
        t->produced_sum += (uint64_t)v;
    }
    return rc >= 0;
}

static bool
pipeline_alone(bench_member *m, PyObject *list, tally *t)
{
    do {
        for (int c = 0; c < CHUNK / BATCH; c++) {
            for (int i = 0; i < BATCH; i++) {
                bool full;
                if (!produce_one(list, 0, t, &full) || full) {
                    return false;   /* full cannot happen: BATCH < QUEUE_BOUND */
                }
            }
            for (int i = 0; i < BATCH; i++) {
                PyObject *item;
                if (take(list, &item) != 1 || !consume(item, &t->consumed_n, &t->consumed_sum)) {
                    return false;
                }
            }
        }
        (void)PyErr_CheckSignals();
    } while (!bench_team_stopped(m));
    return true;
}

static bool
pipeline_producer(bench_member *m, PyObject *list, int role, tally *t)
{
    PyObject *item = NULL;   /* made, not yet taken by the queue */
    long v = 0;
    uint64_t since_safe = 0;
    bool ok = true;
    while (ok && !bench_team_stopped(m)) {
        if (item == NULL) {
            v = item_value(role, t->produced_n);
            item = PyLong_FromLong(v);
            if (item == NULL) {
                ok = false;
                break;
            }
        }
        int rc = put(list, item);
        if (rc < 0) {
            ok = false;
        }
        else if (rc == 0) {
            idle();
            since_safe = 0;
        }
        else {
            Py_CLEAR(item);
            t->produced_n++;
            t->produced_sum += (uint64_t)v;
            if (++since_safe == CHUNK) {
                (void)PyErr_CheckSignals();
                since_safe = 0;
            }
        }
    }
    Py_XDECREF(item);
    return ok;
}

static bool
pipeline_consumer(bench_member *m, PyObject *list, tally *t)
{
    uint64_t since_safe = 0;
    while (!bench_team_stopped(m)) {
        PyObject *item;
        int rc = take(list, &item);
        if (rc < 0) {
            return false;
        }
        if (rc == 0) {
            idle();
            since_safe = 0;
            continue;
        }
        if (!consume(item, &t->consumed_n, &t->consumed_sum)) {
            return false;
        }
        if (++since_safe == CHUNK) {
            (void)PyErr_CheckSignals();
            since_safe = 0;
        }
    }
    return true;
}

/* The baseline's queue: r->stack under r->mu, the same LIFO use. */
static void
pthread_pipeline(bench_member *m, run *r, int role, tally *t)
{
    bool produce = r->threads == 1 || role < r->threads / 2;
    bool consume_too = r->threads == 1;
    bool consumer = r->threads == 1 || !produce;
    do {
        if (consume_too) {   /* alone: BATCH in, BATCH out, as the list does */
            for (int c = 0; c < CHUNK / BATCH; c++) {
                for (int i = 0; i < BATCH; i++) {
                    long v = item_value(0, t->produced_n);
                    pthread_mutex_lock(&r->mu);
                    r->stack[r->top++] = v;
                    pthread_mutex_unlock(&r->mu);
                    t->produced_n++;
                    t->produced_sum += (uint64_t)v;
                }
                for (int i = 0; i < BATCH; i++) {
                    pthread_mutex_lock(&r->mu);
                    long v = r->stack[--r->top];
                    pthread_mutex_unlock(&r->mu);
                    t->consumed_n++;
                    t->consumed_sum += (uint64_t)v;
                }
            }
            continue;
        }
        if (produce) {
            long v = item_value(role, t->produced_n);
            pthread_mutex_lock(&r->mu);
            bool full = r->top >= QUEUE_BOUND;
            if (!full) {
                r->stack[r->top++] = v;
            }
            pthread_mutex_unlock(&r->mu);
            if (full) {
                sched_yield();
            }
            else {
                t->produced_n++;
                t->produced_sum += (uint64_t)v;
            }
        }
        else if (consumer) {
            long v = 0;
            pthread_mutex_lock(&r->mu);
            bool empty = r->top == 0;
            if (!empty) {
                v = r->stack[--r->top];
            }
            pthread_mutex_unlock(&r->mu);
            if (empty) {
                sched_yield();
            }
            else {
                t->consumed_n++;
                t->consumed_sum += (uint64_t)v;
            }
        }
    } while (!bench_team_stopped(m));
}

static void
pipeline_body(bench_member *m, run *r)
{
    int role = atomic_fetch_add_explicit(&r->next_role, 1, memory_order_relaxed);
    tally t = {0};
    bool ok = true;
    if (r->what == PIPELINE_PTHREAD) {
        bench_team_wait_go(m, false);
        pthread_pipeline(m, r, role, &t);
    }
    else {
        PyGILState_STATE g = PyGILState_Ensure();
        bench_team_wait_go(m, true);
        if (r->threads == 1) {
            ok = pipeline_alone(m, r->list, &t);
        }
        else if (role < r->threads / 2) {
            ok = pipeline_producer(m, r->list, role, &t);
        }
        else {
            ok = pipeline_consumer(m, r->list, &t);
        }
        PyGILState_Release(g);
    }
    atomic_fetch_add_explicit(&r->produced_n, t.produced_n, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->produced_sum, t.produced_sum, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->consumed_n, t.consumed_n, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->consumed_sum, t.consumed_sum, memory_order_relaxed);
    m->ops = t.consumed_n;
    m->failed = !ok;
}

/* After the team: what is left in the queue, then the books must balance. */
static void
pipeline_check(run *r)
{
    uint64_t left_n = 0, left_sum = 0;
    if (r->what == PIPELINE_LIST) {
        PyObject *item;
        int rc;
        while ((rc = take(r->list, &item)) == 1) {
            if (!consume(item, &left_n, &left_sum)) {
                fail("pipeline", "an item left in the list is not an int");
            }
        }
        if (rc < 0) {
            fail("pipeline", "cannot empty the list");
        }
    }
    else {
        for (int i = 0; i < r->top; i++) {
            left_n++;
            left_sum += (uint64_t)r->stack[i];
        }
    }
    uint64_t pn = atomic_load(&r->produced_n), ps = atomic_load(&r->produced_sum);
    uint64_t cn = atomic_load(&r->consumed_n), cs = atomic_load(&r->consumed_sum);
    if (cn + left_n != pn || cs + left_sum != ps) {
        char what[256];
        snprintf(what, sizeof what,
                 "%s: produced %llu items (sum %llu), consumed %llu (sum %llu) "
                 "+ %llu left (sum %llu)",
                 r->what == PIPELINE_LIST ? "list" : "pthread", (unsigned long long)pn,
                 (unsigned long long)ps, (unsigned long long)cn, (unsigned long long)cs,
                 (unsigned long long)left_n, (unsigned long long)left_sum);
        fail("pipeline", what);
    }
    if (cn == 0) {
        fail("pipeline", "no item was passed");
    }
}

/* ---- dictmap ------------------------------------------------------------------- */

/* A dict of n str keys "k<i>" -> ints VALUE_BASE + 3i and the list of its
 * keys, fresh objects owned by the calling thread.  False: out of memory. */
static bool
build_map(long n, own_objects *o)
{
    o->dict = PyDict_New();
    o->keys = PyList_New(n);
    if (o->dict == NULL || o->keys == NULL) {
        return false;
    }
    for (long i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "k%ld", i);
        PyObject *key = PyUnicode_FromString(name);
        PyObject *value = PyLong_FromLong(VALUE_BASE + 3 * i);
        if (key == NULL || value == NULL || PyDict_SetItem(o->dict, key, value) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(value);
            return false;
        }
        Py_DECREF(value);
        PyList_SET_ITEM(o->keys, i, key);   /* steals key */
    }
    return true;
}

static uint64_t
dictmap_loop(bench_member *m, PyObject *dict, PyObject *keys, long n, long start,
             bool *failed)
{
    uint64_t ops = 0, acc = 0;
    long j = start;
    do {
        for (int c = 0; c < CHUNK; c++) {
            PyObject *v;
            if (PyDict_GetItemRef(dict, PyList_GET_ITEM(keys, j), &v) != 1) {
                *failed = true;
                return ops;
            }
            long x = PyLong_AsLong(v);
            Py_DECREF(v);
            if (x != VALUE_BASE + 3 * j) {
                *failed = true;
                return ops;
            }
            acc += (uint64_t)x;
            if (++j == n) {
                j = 0;
            }
        }
        ops += CHUNK;
        (void)PyErr_CheckSignals();
    } while (!bench_team_stopped(m));
    bench_keep_u64(acc);
    return ops;
}

static void
dictmap_body(bench_member *m, run *r)
{
    int role = atomic_fetch_add_explicit(&r->next_role, 1, memory_order_relaxed);
    PyGILState_STATE g = PyGILState_Ensure();
    bool failed = false;
    PyObject *dict = r->dict, *keys = r->keys;
    own_objects *own = &r->own[role];
    if (r->what == DICTMAP_COPY) {
        own->dict = PyDict_Copy(r->dict);
        failed = own->dict == NULL;
        dict = own->dict;
    }
    else if (r->what == DICTMAP_PRIVATE) {
        failed = !build_map(r->n_keys, own);
        dict = own->dict;
        keys = own->keys;
    }
    bench_team_wait_go(m, true);
    uint64_t ops = 0;
    if (!failed) {
        long start = (long)((int64_t)r->n_keys * role / r->threads);
        ops = dictmap_loop(m, dict, keys, r->n_keys, start, &failed);
    }
    if (failed) {
        PyErr_Clear();
    }
    m->ops = ops;
    m->failed = failed;
    PyGILState_Release(g);
}

/* ---- samples and measures -------------------------------------------------------- */

static void
member_body(bench_member *m, void *arg)
{
    run *r = arg;
    if (r->what == PIPELINE_LIST || r->what == PIPELINE_PTHREAD) {
        pipeline_body(m, r);
    }
    else {
        dictmap_body(m, r);
    }
}

/* One sample: total ops/s over the threads for the sample's wall time.
 * shared: the dictmap's shared dict and keys (NULL for the pipeline). */
static double
sample(kind what, int threads, int64_t duration_ns, const own_objects *shared, long n_keys)
{
    const char *workload = shared == NULL ? "pipeline" : "dictmap";
    run *r = aligned_alloc(64, (sizeof(run) + 63) / 64 * 64);
    if (r == NULL) {
        fail(workload, "out of memory");
    }
    memset(r, 0, sizeof *r);
    atomic_init(&r->next_role, 0);
    atomic_init(&r->produced_n, 0);
    atomic_init(&r->produced_sum, 0);
    atomic_init(&r->consumed_n, 0);
    atomic_init(&r->consumed_sum, 0);
    r->what = what;
    r->threads = threads;
    if (what == PIPELINE_LIST) {
        r->list = PyList_New(0);
        if (r->list == NULL) {
            fail(workload, "out of memory");
        }
    }
    else if (what == PIPELINE_PTHREAD) {
        pthread_mutex_init(&r->mu, NULL);
    }
    else {
        r->dict = shared->dict;
        r->keys = shared->keys;
        r->n_keys = n_keys;
        r->own = calloc((size_t)threads, sizeof *r->own);
        if (r->own == NULL) {
            fail(workload, "out of memory");
        }
    }
    bool failed;
    double rate = bench_team_run(threads, duration_ns, false, member_body, r, &failed);
    if (failed) {
        fail(workload, shared == NULL ? "an operation failed (out of memory?)"
                                      : "a lookup failed or returned a wrong value");
    }
    if (what == PIPELINE_LIST || what == PIPELINE_PTHREAD) {
        pipeline_check(r);
    }
    if (what == PIPELINE_PTHREAD) {
        pthread_mutex_destroy(&r->mu);
    }
    Py_XDECREF(r->list);
    if (r->own != NULL) {
        for (int i = 0; i < threads; i++) {
            Py_XDECREF(r->own[i].dict);
            Py_XDECREF(r->own[i].keys);
        }
        free(r->own);
    }
    free(r);
    return rate;
}

typedef struct subjects {
    const kind *kinds;
    const bench_params *p;
    const own_objects *shared;   /* dictmap's dict, NULL for pipeline */
    long n_keys;
} subjects;

static double
subject_sample(void *ctx, size_t k)
{
    subjects *c = ctx;
    return sample(c->kinds[k], c->p->threads, c->p->sample_ns, c->shared, c->n_keys);
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
    own_objects shared = {NULL, NULL};
    long n_keys = p->sample_ns >= 50 * 1000000LL ? DICT_KEYS : SMOKE_KEYS;
    bool dictmap = strcmp(workload, "dictmap") == 0;
    if (dictmap && !build_map(n_keys, &shared)) {
        fail(workload, "out of memory");
    }
    double ops[BENCH_MAX_SUBJECTS][BENCH_MAX_SAMPLES];
    subjects c = {kinds, p, dictmap ? &shared : NULL, n_keys};
    bench_sample_rotating(p, n, subject_sample, &c, ops);
    Py_XDECREF(shared.dict);
    Py_XDECREF(shared.keys);
    bench_print_results(out, workload, p, "ops/s", names, n, baseline, ops);
    return bench_runtime_down(0);
}

int
bench_pipeline_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "threads") != 0) {
        return 2;
    }
    static const kind kinds[] = {PIPELINE_LIST, PIPELINE_PTHREAD};
    static const char *const names[] = {"list", "pthread"};
    return measure(p, out, "pipeline", kinds, names, 2, 1);
}

int
bench_dictmap_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "threads") != 0) {
        return 2;
    }
    static const kind kinds[] = {DICTMAP_SHARED, DICTMAP_COPY, DICTMAP_PRIVATE};
    static const char *const names[] = {"shared", "copy", "private"};
    return measure(p, out, "dictmap", kinds, names, 3, 2);
}
