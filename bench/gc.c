/* Workloads "gc" and "stw": the cycle collector (gc/gc.c) and the
 * stop-the-world it needs (core/tstate.c, include/cpython/stoptheworld.h).
 *
 * The runtime is initialized (Py_InitializeEx(0)) and the main thread, the
 * collector, stays attached.  "Busy" threads are attached (PyGILState_Ensure)
 * and loop over a tiny allocation, PyLong_FromLong of a value outside the
 * small-int cache + Py_DECREF, and PyErr_CheckSignals: every iteration
 * reaches a safe point, so they are stoppable (free-threaded) and hand the
 * GIL around (GIL build) as Python code would.  The subjects of a measure are taken in rotating order, sample
 * by sample, each beside its baseline; the driver prints FT/GIL ratios.
 *
 * gc alone (T=1: the collector only)      ms
 * gc busy  (T=4: the collector and 3 busy threads)
 *     empty      PyGC_Collect with nothing to collect (the runtime's own
 *                objects only): the mean over the collections of about a
 *                quarter of a sample's wall time, each timed alone, with a
 *                safe point between them (PyErr_CheckSignals, untimed).
 *     cycles     PyGC_Collect of N self-referencing lists (each list appends
 *                itself, then its creator drops it; built with automatic
 *                collection off, PyGC_Disable, so that this collection finds
 *                all N: the worker checks it freed at least N).
 *     pause      the stop-the-world part of that collection
 *                (PyUnstable_GCStats.last_pause1_ns + last_pause2_ns): how
 *                long the other threads were stopped.
 *     acyclic    the baseline: create the same N lists without cycles (each
 *                holds None) and free them by reference counting.
 *                cycles/acyclic is the collector's cost over the allocation's.
 *     lists      N itself, a parameter, not a time: 1e6 (the default and
 *                --full run), 2e5 when samples are shorter than 150 ms
 *                (--quick), 1e3 below 50 ms (--smoke).
 *
 * stw busy (T busy threads besides the collector: 1, 2, 3, 4, 8, 16)    us
 *     Repeated PyGC_Collect with nothing to collect (one stop of the world
 *     each), 1 ms apart (the collector detached, asleep, between them so that
 *     the busy threads run again), for about a sample's wall time (a quarter
 *     of it in the GIL build); the statistics are reset before and read after
 *     (PyUnstable_StopTheWorld_*).
 *     p50, p99   of the time to stop (request -> every other thread parked),
 *                PyUnstable_StopTheWorld_Percentile of to_stop_hist: the
 *                upper bound of a power-of-two bucket, so within 2x.
 *     max        by_reason[PyUnstable_STOP_GC].to_stop_ns_max (exact).
 *     alone      the baseline (its row is T=0): p50 of the time to stop with
 *                no other thread state, measured the same way in the same
 *                worker.
 *     to_stop    a "hist" line per configuration (T=0: alone), not a result:
 *                the to_stop_hist counts summed over the samples, for the
 *                report's chart (it draws T=3 and T=16) and --json.
 * stw detached (T=100 threads detached, waiting on a pthread condition
 *               inside Py_BEGIN_ALLOW_THREADS)
 *     p50, p99, max, alone, to_stop   as above (to_stop: T=0 and T=100)
 *     per_thread  (median time to stop with the 100 detached threads - the
 *                same median with none) / 100, the medians taken over each
 *                stop's exact last_to_stop_ns: what a detached thread state
 *                adds to a stop.
 *     The GIL build has no stops (the GIL excludes the other threads): its
 *     figures are 0, printed so that the table shows it.  The worker checks
 *     that the free-threaded build made one GC stop per collection and that
 *     each stopped exactly the threads the measure started.
 *
 * CPython 3.13t figures (issue's measurements, 2 vCPU) and the targets:
 *     PyGC_Collect, nothing to collect           0.51 ms
 *     PyGC_Collect, 1e6 cycles                   92 ms
 *     nothing to collect, 3 busy threads         0.88 ms (one run in three 8 ms)
 *     1e6 cycles, 3 busy threads                 112 ms
 *     targets: 1e6 cycles <= 92 ms (stretch 65 ms); with 3 busy threads the
 *     time to stop p50 <= 0.2 ms and p99 <= 2 ms; a detached thread adds
 *     <= 1 us to a stop.
 */
#include <Python.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "workload.h"

#define FULL_LISTS 1000000
#define QUICK_LISTS 200000
#define SMOKE_LISTS 1000
#define BUSY_VALUE (1L << 40)       /* not a cached small int: each one allocates */
#define STOP_GAP_NS 1000000         /* between two stops, the collector asleep */
#define N_DETACHED 100
#define N_BUSY_COUNTS 6

static const int busy_counts[N_BUSY_COUNTS] = {1, 2, 3, 4, 8, 16};

static PyInterpreterState *interp;

#ifdef Py_GIL_DISABLED
static const bool free_threaded = true;
#else
static const bool free_threaded = false;
#endif

static void
fail(const char *what)
{
    bench_fail("gc", what);
}

/* ---- a crew of other threads: busy (attached) or parked (detached) ------------
 *
 * Every member attaches (PyGILState_Ensure), then waits detached at the gate
 * until all have attached once, so that none waits for the GIL behind a busy
 * one (a switch interval each).  Busy members then loop; the free-threaded
 * build waits until each has looped once (attached and running).  The GIL
 * build does not: they take their turns at the GIL, which is its "busy". */

typedef struct crew {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int at_gate;          /* attached once, now detached at the gate (parked: for good) */
    int looping;          /* busy: attached and looping */
    bool go;              /* busy: leave the gate */
    bool release;         /* leave the gate, or the parked wait */
    atomic_int stop;      /* busy: leave the loop */
    atomic_bool failed;
    int n;
    pthread_t *threads;
} crew;

static void
crew_count(crew *c, int *counter)
{
    pthread_mutex_lock(&c->mu);
    (*counter)++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Wait, detached, for *flag; the caller holds no lock. */
static void
crew_wait_detached(crew *c, const bool *flag)
{
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&c->mu);
    c->at_gate++;
    pthread_cond_broadcast(&c->cv);
    while (!*flag && !c->release) {
        pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    Py_END_ALLOW_THREADS
}

static void *
busy_main(void *arg)
{
    crew *c = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    crew_wait_detached(c, &c->go);
    bool counted = false;
    long i = 0;
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        PyObject *v = PyLong_FromLong(BUSY_VALUE + (i++ & 1023));
        if (v == NULL) {
            PyErr_Clear();
            atomic_store(&c->failed, true);
            break;
        }
        Py_DECREF(v);
        /* the safe point: an int is not allocated by PyObject_New here (no
         * safe point of its own), so without this the loop never stops */
        (void)PyErr_CheckSignals();
        if (!counted) {
            crew_count(c, &c->looping);
            counted = true;
        }
    }
    if (!counted) {
        crew_count(c, &c->looping);
    }
    PyGILState_Release(g);
    return NULL;
}

static void *
parked_main(void *arg)
{
    crew *c = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    crew_wait_detached(c, &c->release);
    PyGILState_Release(g);
    return NULL;
}

static void crew_stop(crew *c);

/* Start n threads and wait until each is busy (or parked).  The caller is
 * the attached main thread; it detaches meanwhile (the GIL build: the new
 * threads need the GIL to attach). */
static void
crew_start(crew *c, int n, bool parked)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    atomic_init(&c->stop, 0);
    atomic_init(&c->failed, false);
    c->threads = calloc((size_t)(n ? n : 1), sizeof *c->threads);
    if (c->threads == NULL) {
        fail("out of memory");
    }
    bool created = true;
    Py_BEGIN_ALLOW_THREADS
    for (; c->n < n; c->n++) {
        if (pthread_create(&c->threads[c->n], NULL, parked ? parked_main : busy_main, c) != 0) {
            created = false;
            break;
        }
    }
    pthread_mutex_lock(&c->mu);
    while (c->at_gate < c->n) {
        pthread_cond_wait(&c->cv, &c->mu);
    }
    if (created && !parked) {
        c->go = true;
        pthread_cond_broadcast(&c->cv);
        while (free_threaded && c->looping < c->n) {
            pthread_cond_wait(&c->cv, &c->mu);
        }
    }
    pthread_mutex_unlock(&c->mu);
    Py_END_ALLOW_THREADS
    if (!created) {
        crew_stop(c);
        fail("pthread_create failed");
    }
}

static void
crew_stop(crew *c)
{
    Py_BEGIN_ALLOW_THREADS
    atomic_store(&c->stop, 1);
    pthread_mutex_lock(&c->mu);
    c->release = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < c->n; i++) {
        pthread_join(c->threads[i], NULL);
    }
    Py_END_ALLOW_THREADS
    free(c->threads);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    if (atomic_load(&c->failed)) {
        fail("a busy thread's allocation failed");
    }
}

/* ---- printing: result lines, and ratios where the baseline is positive --------- */

static void
print_line(FILE *out, const char *workload, const char *measure, const char *subject,
           int threads, const char *unit, const double *samples, int n)
{
    bench_result r = {
        .workload = workload,
        .measure = measure,
        .subject = subject,
        .threads = threads,
        .unit = unit,
        .samples = samples,
        .n_samples = (size_t)n,
    };
    bench_result_print(out, &r);
}

/* "<subject>/<baseline>" sample by sample; not printed when a baseline sample
 * is 0 (the GIL build's stops): the driver shows "-". */
static void
print_ratio(FILE *out, const char *workload, const char *measure, const char *subject,
            const char *baseline, int threads, const double *values, const double *base,
            int n)
{
    double ratio[BENCH_MAX_SAMPLES];
    for (int s = 0; s < n; s++) {
        if (!(base[s] > 0)) {
            return;
        }
        ratio[s] = values[s] / base[s];
    }
    char name[64];
    snprintf(name, sizeof name, "%s/%s", subject, baseline);
    print_line(out, workload, measure, name, threads, "x", ratio, n);
}

/* ---- gc ------------------------------------------------------------------------- */

static long
gc_lists(const bench_params *p)
{
    if (p->sample_ns >= 150 * 1000000LL) {
        return FULL_LISTS;
    }
    return p->sample_ns >= 50 * 1000000LL ? QUICK_LISTS : SMOKE_LISTS;
}

static void
collect_checked(Py_ssize_t at_least)
{
    Py_ssize_t got = PyGC_Collect();
    if (PyErr_Occurred()) {
        PyErr_Print();
        fail("PyGC_Collect raised");
    }
    if (got < at_least) {
        char msg[128];
        snprintf(msg, sizeof msg, "PyGC_Collect found %zd unreachable objects, expected %zd",
                 got, at_least);
        fail(msg);
    }
}

/* Mean ms per collection with nothing to collect, over about budget_ns.
 * Between two collections (untimed) the collector reaches a safe point, as
 * Python code calling gc.collect() in a loop would: in the GIL build the
 * busy threads get the GIL there, else they would never run. */
static double
gc_empty(int64_t budget_ns)
{
    collect_checked(0);   /* anything a previous subject left behind */
    int64_t start = bench_now_ns(), total = 0;
    long n = 0;
    do {
        int64_t t0 = bench_now_ns();
        collect_checked(0);
        total += bench_now_ns() - t0;
        n++;
        (void)PyErr_CheckSignals();
    } while (bench_now_ns() - start < budget_ns || n < 3);
    return (double)total / 1e6 / (double)n;
}

/* ms for one PyGC_Collect of n self-referencing lists; *pause_ms: its stops. */
static double
gc_cycles(long n, double *pause_ms)
{
    int was_enabled = PyGC_Disable();
    for (long i = 0; i < n; i++) {
        PyObject *list = PyList_New(0);
        if (list == NULL || PyList_Append(list, list) < 0) {
            fail("cannot build a self-referencing list (out of memory?)");
        }
        Py_DECREF(list);
    }
    int64_t t0 = bench_now_ns();
    collect_checked((Py_ssize_t)n);
    int64_t elapsed = bench_now_ns() - t0;
    if (was_enabled) {
        PyGC_Enable();
    }
    PyUnstable_GCStats st;
    if (PyUnstable_GC_GetStats(&st) < 0) {
        fail("PyUnstable_GC_GetStats failed");
    }
    if (st.last_collected < (uint64_t)n) {
        fail("the collection did not free every self-referencing list");
    }
    *pause_ms = (double)(st.last_pause1_ns + st.last_pause2_ns) / 1e6;
    return (double)elapsed / 1e6;
}

/* ms to create n lists holding None and free them by reference counting. */
static double
gc_acyclic(long n)
{
    PyObject **lists = malloc(sizeof(PyObject *) * (size_t)n);
    if (lists == NULL) {
        fail("out of memory");
    }
    int was_enabled = PyGC_Disable();
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        lists[i] = PyList_New(0);
        if (lists[i] == NULL || PyList_Append(lists[i], Py_None) < 0) {
            fail("cannot build a list (out of memory?)");
        }
    }
    for (long i = 0; i < n; i++) {
        Py_DECREF(lists[i]);
    }
    int64_t elapsed = bench_now_ns() - t0;
    if (was_enabled) {
        PyGC_Enable();
    }
    free(lists);
    return (double)elapsed / 1e6;
}

enum { GC_EMPTY, GC_CYCLES, GC_PAUSE, GC_ACYCLIC, GC_LISTS, N_GC };
static const char *const gc_names[N_GC] = {"empty", "cycles", "pause", "acyclic", "lists"};

static int
gc_measure(const bench_params *p, FILE *out, int busy)
{
    interp = bench_runtime_up();
    long n = gc_lists(p);
    fprintf(out, "info workload=gc measure=%s lists=%ld busy_threads=%d\n", p->measure, n, busy);
    crew c;
    if (busy > 0) {
        crew_start(&c, busy, false);
    }
    double v[N_GC][BENCH_MAX_SAMPLES];
    for (int s = 0; s < p->samples; s++) {
        size_t order[3];
        bench_rotation((size_t)s, 3, order);
        for (int i = 0; i < 3; i++) {
            switch (order[i]) {
            case 0:
                v[GC_EMPTY][s] = gc_empty(p->sample_ns / 4);
                break;
            case 1:
                v[GC_CYCLES][s] = gc_cycles(n, &v[GC_PAUSE][s]);
                break;
            default:
                v[GC_ACYCLIC][s] = gc_acyclic(n);
                break;
            }
        }
        v[GC_LISTS][s] = (double)n;
    }
    if (busy > 0) {
        crew_stop(&c);
    }
    int threads = 1 + busy;
    for (int k = 0; k < N_GC; k++) {
        print_line(out, "gc", p->measure, gc_names[k], threads, k == GC_LISTS ? "lists" : "ms",
                   v[k], p->samples);
    }
    for (int k = GC_EMPTY; k <= GC_PAUSE; k++) {
        print_ratio(out, "gc", p->measure, gc_names[k], "acyclic", threads, v[k],
                    v[GC_ACYCLIC], p->samples);
    }
    return bench_runtime_down(0);
}

int
bench_gc_run(const bench_params *p, FILE *out)
{
    if (strcmp(p->measure, "alone") == 0) {
        return gc_measure(p, out, 0);
    }
    if (strcmp(p->measure, "busy") == 0) {
        return gc_measure(p, out, 3);
    }
    return 2;
}

/* ---- stw ------------------------------------------------------------------------ */

typedef struct stop_figures {
    double p50_us, p99_us, max_us;
    double median_us;   /* of each stop's exact last_to_stop_ns */
    uint64_t hist[PyUnstable_STOP_HIST_BUCKETS];   /* to_stop_hist */
} stop_figures;

static int
compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Stop the world (PyGC_Collect, nothing to collect) every STOP_GAP_NS for
 * about duration_ns (the GIL build, which has no stops to time, a quarter of
 * it), with `others` other thread states in the interpreter. */
static stop_figures
stops(int64_t duration_ns, int others)
{
    size_t cap = 64, n = 0;
    uint64_t *each = malloc(cap * sizeof *each);
    if (each == NULL) {
        fail("out of memory");
    }
    collect_checked(0);   /* garbage of the crew's start, outside the figures */
    PyUnstable_StopTheWorld_ResetStats(interp);
    PyUnstable_StopTheWorldStats st;
    int64_t end = bench_now_ns() + (free_threaded ? duration_ns : duration_ns / 4);
    do {
        collect_checked(0);
        if (PyUnstable_StopTheWorld_GetStats(interp, &st) < 0) {
            fail("PyUnstable_StopTheWorld_GetStats failed");
        }
        if (free_threaded && st.last_threads != (uint32_t)others) {
            char msg[128];
            snprintf(msg, sizeof msg, "a stop stopped %u other threads, expected %d",
                     (unsigned)st.last_threads, others);
            fail(msg);
        }
        if (n == cap) {
            cap *= 2;
            each = realloc(each, cap * sizeof *each);
            if (each == NULL) {
                fail("out of memory");
            }
        }
        each[n++] = st.last_to_stop_ns;
        int64_t wake = bench_now_ns() + STOP_GAP_NS;
        Py_BEGIN_ALLOW_THREADS
        bench_sleep_until_ns(wake);
        Py_END_ALLOW_THREADS
    } while (bench_now_ns() < end);
    if (PyUnstable_StopTheWorld_GetStats(interp, &st) < 0) {
        fail("PyUnstable_StopTheWorld_GetStats failed");
    }
    const PyUnstable_StopReasonStats *gc = &st.by_reason[PyUnstable_STOP_GC];
    if (free_threaded ? gc->stops != n || st.stops != n : st.stops != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "%zu collections made %llu stops (%llu for the GC), "
                 "expected %zu", n, (unsigned long long)st.stops,
                 (unsigned long long)gc->stops, free_threaded ? n : (size_t)0);
        fail(msg);
    }
    qsort(each, n, sizeof *each, compare_u64);
    stop_figures f = {
        .p50_us = (double)PyUnstable_StopTheWorld_Percentile(st.to_stop_hist, 50) / 1e3,
        .p99_us = (double)PyUnstable_StopTheWorld_Percentile(st.to_stop_hist, 99) / 1e3,
        .max_us = (double)gc->to_stop_ns_max / 1e3,
        .median_us = (double)(n % 2 ? each[n / 2] : (each[n / 2 - 1] + each[n / 2]) / 2) / 1e3,
    };
    memcpy(f.hist, st.to_stop_hist, sizeof f.hist);
    free(each);
    return f;
}

/* One configuration's figures: `others` threads, busy or parked. */
static stop_figures
stops_with(int64_t duration_ns, int others, bool parked)
{
    crew c;
    if (others > 0) {
        crew_start(&c, others, parked);
    }
    stop_figures f = stops(duration_ns, others);
    if (others > 0) {
        crew_stop(&c);
    }
    return f;
}

/* The histogram of the time to stop, summed over a configuration's samples
 * ("hist" line, bench.h): the report's chart draws it.  Bucket k >= 1 covers
 * [2^k, 2^(k+1)) ns, bucket 0 [0, 2) ns (stoptheworld.h). */
typedef struct stop_hist {
    double counts[PyUnstable_STOP_HIST_BUCKETS];
} stop_hist;

static void
stop_hist_add(stop_hist *h, const stop_figures *f)
{
    for (int k = 0; k < PyUnstable_STOP_HIST_BUCKETS; k++) {
        h->counts[k] += (double)f->hist[k];
    }
}

static void
print_stop_hist(FILE *out, const char *measure, int threads, const stop_hist *h)
{
    double lower[PyUnstable_STOP_HIST_BUCKETS];
    for (int k = 0; k < PyUnstable_STOP_HIST_BUCKETS; k++) {
        lower[k] = k == 0 ? 0.0 : (double)((uint64_t)1 << k);
    }
    bench_hist_print(out, "stw", measure, "to_stop", threads, "ns", lower, h->counts,
                     PyUnstable_STOP_HIST_BUCKETS);
}

static void
print_stop_rows(FILE *out, const char *measure, int threads, int n,
                double p50[], double p99[], double max[], const double *alone)
{
    print_line(out, "stw", measure, "p50", threads, "us", p50, n);
    print_line(out, "stw", measure, "p99", threads, "us", p99, n);
    print_line(out, "stw", measure, "max", threads, "us", max, n);
    print_ratio(out, "stw", measure, "p50", "alone", threads, p50, alone, n);
    print_ratio(out, "stw", measure, "p99", "alone", threads, p99, alone, n);
    print_ratio(out, "stw", measure, "max", "alone", threads, max, alone, n);
}

static int
stw_busy(const bench_params *p, FILE *out)
{
    /* configuration 0: alone; k >= 1: busy_counts[k - 1] busy threads */
    enum { N_CONF = 1 + N_BUSY_COUNTS };
    double p50[N_CONF][BENCH_MAX_SAMPLES], p99[N_CONF][BENCH_MAX_SAMPLES],
           max[N_CONF][BENCH_MAX_SAMPLES];
    static stop_hist hist[N_CONF];
    memset(hist, 0, sizeof hist);
    for (int s = 0; s < p->samples; s++) {
        size_t order[N_CONF];
        bench_rotation((size_t)s, N_CONF, order);
        for (int i = 0; i < N_CONF; i++) {
            size_t k = order[i];
            stop_figures f = stops_with(p->sample_ns, k ? busy_counts[k - 1] : 0, false);
            stop_hist_add(&hist[k], &f);
            p50[k][s] = f.p50_us;
            p99[k][s] = f.p99_us;
            max[k][s] = f.max_us;
        }
    }
    print_line(out, "stw", "busy", "alone", 0, "us", p50[0], p->samples);
    for (int k = 1; k < N_CONF; k++) {
        print_stop_rows(out, "busy", busy_counts[k - 1], p->samples, p50[k], p99[k], max[k],
                        p50[0]);
    }
    for (int k = 0; k < N_CONF; k++) {
        print_stop_hist(out, "busy", k ? busy_counts[k - 1] : 0, &hist[k]);
    }
    return 0;
}

static int
stw_detached(const bench_params *p, FILE *out)
{
    double p50[2][BENCH_MAX_SAMPLES], p99[2][BENCH_MAX_SAMPLES], max[2][BENCH_MAX_SAMPLES];
    double per_thread[BENCH_MAX_SAMPLES], median[2];
    stop_hist hist[2];
    memset(hist, 0, sizeof hist);
    for (int s = 0; s < p->samples; s++) {
        size_t order[2];
        bench_rotation((size_t)s, 2, order);
        for (int i = 0; i < 2; i++) {
            size_t k = order[i];
            stop_figures f = stops_with(p->sample_ns, k ? N_DETACHED : 0, true);
            stop_hist_add(&hist[k], &f);
            p50[k][s] = f.p50_us;
            p99[k][s] = f.p99_us;
            max[k][s] = f.max_us;
            median[k] = f.median_us;
        }
        per_thread[s] = (median[1] - median[0]) / N_DETACHED;
    }
    print_line(out, "stw", "detached", "alone", 0, "us", p50[0], p->samples);
    print_stop_rows(out, "detached", N_DETACHED, p->samples, p50[1], p99[1], max[1], p50[0]);
    print_line(out, "stw", "detached", "per_thread", N_DETACHED, "us", per_thread, p->samples);
    print_stop_hist(out, "detached", 0, &hist[0]);
    print_stop_hist(out, "detached", N_DETACHED, &hist[1]);
    return 0;
}

int
bench_stw_run(const bench_params *p, FILE *out)
{
    int (*run)(const bench_params *, FILE *) =
        strcmp(p->measure, "busy") == 0       ? stw_busy
        : strcmp(p->measure, "detached") == 0 ? stw_detached
                                              : NULL;
    if (run == NULL) {
        return 2;
    }
    interp = bench_runtime_up();
    return bench_runtime_down(run(p, out));
}
