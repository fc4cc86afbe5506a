/* Workload "mutex": PyMutex against pthread_mutex_t and the legacy lock.
 *
 * Three locks, measured in the same worker process, in rotating order from
 * one sample to the next:
 *
 *   pymutex  the public inline PyMutex_Lock / PyMutex_Unlock of <Python.h>
 *   pthread  a default pthread_mutex_t (glibc), the baseline
 *   legacy   PyThread_acquire_lock(l, WAIT_LOCK) / PyThread_release_lock
 *
 * measure=uncontended   one thread, lock + unlock in a loop with a compiler
 *     barrier between them (as CPython's reference benchmark does).  Unit:
 *     ns per lock+unlock pair, loop overhead included (well under 1 ns).
 *     Each sample runs a calibrated number of iterations lasting about
 *     sample_ns.  A fourth subject, "floor", is the same loop with two bare
 *     locked compare-and-swaps on a byte (0 -> 1, 1 -> 0) and no lock
 *     semantics: what any CAS-based lock must pay on this CPU, since both
 *     PyMutex and pthread need one locked instruction to lock and one to
 *     unlock (the unlock must see the has-waiters bit atomically).
 *
 * measure=contended threads=T   T threads, released together by a start
 *     barrier, loop for a fixed wall time (sample_ns):
 *         lock; increment a shared counter and mix it into a shared word
 *         (dependent arithmetic on the guarded data); unlock;
 *         a few arithmetic steps on thread-local data.
 *     Unit: total lock+unlock pairs per second over all threads (higher is
 *     better).  At T=1 it is the uncontended loop with work added.  The
 *     shared counter must equal the sum of the threads' counts afterwards,
 *     or the worker fails: a lock that loses updates measures nothing.
 *
 * Besides one result line per lock, each measure prints the per-sample
 * ratios pymutex/pthread and legacy/pthread (unit "x"): ns ratios below 1
 * and throughput ratios above 1 favour PyMutex.  Taking each ratio between
 * two samples measured back to back in one process cancels most drift.
 *
 * Reading contended numbers: on this project's 2-CPU machines T=4 and T=8
 * oversubscribe the CPUs, and a lock that lets a running thread take it
 * again (barging, as PyMutex does) keeps throughput near the uncontended
 * rate while the other threads sleep; a lock that hands off to sleepers
 * pays a wake-up per operation.
 */
#include <Python.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef enum lock_kind {
    LOCK_PYMUTEX,
    LOCK_PTHREAD,
    LOCK_LEGACY,
    N_LOCKS
} lock_kind;

static const char *const lock_names[N_LOCKS] = {"pymutex", "pthread", "legacy"};

/* The three locks with the data a contended thread updates under them.
 * PyMutex, the guarded words and the pthread mutex share one cache line,
 * as a lock and the fields it protects usually do; the legacy lock's word
 * lives on the heap, where PyThread_allocate_lock puts it. */
typedef struct guarded {
    _Alignas(64) PyMutex pymutex;
    uint64_t counter;
    uint64_t mix;
    pthread_mutex_t pthread;
    PyThread_type_lock legacy;
} guarded;

static bool
guarded_init(guarded *g)
{
    memset(g, 0, sizeof *g);
    if (pthread_mutex_init(&g->pthread, NULL) != 0) {
        return false;
    }
    g->legacy = PyThread_allocate_lock();
    if (g->legacy == NULL) {
        pthread_mutex_destroy(&g->pthread);
        return false;
    }
    return true;
}

static void
guarded_fini(guarded *g)
{
    pthread_mutex_destroy(&g->pthread);
    PyThread_free_lock(g->legacy);
}

/* Called with a constant kind from always-inlined loops, so each loop is
 * compiled for one lock and the switch disappears. */
static inline __attribute__((always_inline)) void
lock_acquire(guarded *g, lock_kind kind)
{
    switch (kind) {
    case LOCK_PYMUTEX:
        PyMutex_Lock(&g->pymutex);
        break;
    case LOCK_PTHREAD:
        pthread_mutex_lock(&g->pthread);
        break;
    case LOCK_LEGACY:
        PyThread_acquire_lock(g->legacy, WAIT_LOCK);
        break;
    case N_LOCKS:
        break;
    }
}

static inline __attribute__((always_inline)) void
lock_release(guarded *g, lock_kind kind)
{
    switch (kind) {
    case LOCK_PYMUTEX:
        PyMutex_Unlock(&g->pymutex);
        break;
    case LOCK_PTHREAD:
        pthread_mutex_unlock(&g->pthread);
        break;
    case LOCK_LEGACY:
        PyThread_release_lock(g->legacy);
        break;
    case N_LOCKS:
        break;
    }
}

static void
print_pair(FILE *out, const bench_params *p, const char *subject, const char *unit,
           const double *samples)
{
    bench_result r = {
        .workload = "mutex",
        .measure = p->measure,
        .subject = subject,
        .threads = p->threads,
        .unit = unit,
        .samples = samples,
        .n_samples = (size_t)p->samples,
    };
    bench_result_print(out, &r);
}

/* One line per lock, then the ratios to the pthread baseline. */
static void
print_results(FILE *out, const bench_params *p, const char *unit,
              double values[N_LOCKS][BENCH_MAX_SAMPLES])
{
    for (int k = 0; k < N_LOCKS; k++) {
        print_pair(out, p, lock_names[k], unit, values[k]);
    }
    double ratio[BENCH_MAX_SAMPLES];
    for (int k = 0; k < N_LOCKS; k++) {
        if (k == LOCK_PTHREAD) {
            continue;
        }
        for (int s = 0; s < p->samples; s++) {
            ratio[s] = values[k][s] / values[LOCK_PTHREAD][s];
        }
        char subject[32];
        snprintf(subject, sizeof subject, "%s/%s", lock_names[k], lock_names[LOCK_PTHREAD]);
        print_pair(out, p, subject, "x", ratio);
    }
}

/* ---- uncontended ----------------------------------------------------------- */

static inline __attribute__((always_inline)) int64_t
uncontended_loop(guarded *g, lock_kind kind, uint64_t iters)
{
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        lock_acquire(g, kind);
        bench_compiler_barrier();
        lock_release(g, kind);
    }
    return bench_now_ns() - t0;
}

static int64_t
timed_pymutex(void *g, uint64_t iters)
{
    return uncontended_loop(g, LOCK_PYMUTEX, iters);
}

static int64_t
timed_pthread(void *g, uint64_t iters)
{
    return uncontended_loop(g, LOCK_PTHREAD, iters);
}

static int64_t
timed_legacy(void *g, uint64_t iters)
{
    return uncontended_loop(g, LOCK_LEGACY, iters);
}

static bench_timed_fn *const timed_fns[N_LOCKS] = {timed_pymutex, timed_pthread, timed_legacy};

/* The hardware floor: two locked CAS per iteration, nothing else. */
static int64_t
timed_cas_floor(void *arg, uint64_t iters)
{
    guarded *g = arg;
    uint8_t *byte = &g->pymutex._bits;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint8_t expected = 0;
        __atomic_compare_exchange_n(byte, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
        bench_compiler_barrier();
        expected = 1;
        __atomic_compare_exchange_n(byte, &expected, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    }
    return bench_now_ns() - t0;
}

static int
measure_uncontended(const bench_params *p, FILE *out, guarded *g)
{
    uint64_t iters[N_LOCKS];
    for (int k = 0; k < N_LOCKS; k++) {
        iters[k] = bench_calibrate(timed_fns[k], g, p->sample_ns);
    }
    double ns[N_LOCKS][BENCH_MAX_SAMPLES];
    for (int s = 0; s < p->samples; s++) {
        size_t order[N_LOCKS];
        bench_rotation((size_t)s, N_LOCKS, order);
        for (int i = 0; i < N_LOCKS; i++) {
            size_t k = order[i];
            ns[k][s] = (double)timed_fns[k](g, iters[k]) / (double)iters[k];
        }
    }
    print_results(out, p, "ns/op", ns);

    uint64_t floor_iters = bench_calibrate(timed_cas_floor, g, p->sample_ns);
    double floor_ns[BENCH_MAX_SAMPLES];
    for (int s = 0; s < p->samples; s++) {
        floor_ns[s] = (double)timed_cas_floor(g, floor_iters) / (double)floor_iters;
    }
    print_pair(out, p, "floor", "ns/op", floor_ns);
    return 0;
}

/* ---- contended ------------------------------------------------------------- */

typedef struct contended_run {
    guarded *g;
    _Alignas(64) atomic_int ready;   /* threads at the start barrier */
    atomic_int go;                   /* set once: everybody starts */
    _Alignas(64) atomic_int stop;    /* read every iteration; written once */
} contended_run;

typedef struct contended_slot {
    _Alignas(64) contended_run *run;
    pthread_t thread;
    uint64_t seed;
    uint64_t ops;      /* written by the thread before it exits */
    int64_t end_ns;
    uint64_t sink;     /* the thread-local result, kept so it is computed */
} contended_slot;

static inline __attribute__((always_inline)) void *
contended_loop(contended_slot *me, lock_kind kind)
{
    contended_run *run = me->run;
    guarded *g = run->g;
    atomic_fetch_add_explicit(&run->ready, 1, memory_order_relaxed);
    while (!atomic_load_explicit(&run->go, memory_order_acquire)) {
        sched_yield();   /* 2 CPUs, up to 8 threads: let the others arrive */
    }
    uint64_t ops = 0;
    uint64_t local = me->seed;
    while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
        lock_acquire(g, kind);
        uint64_t c = ++g->counter;
        g->mix = (g->mix ^ c) * 0x9E3779B97F4A7C15u + (g->mix >> 29);
        lock_release(g, kind);
        local = local * 6364136223846793005u + 1442695040888963407u;
        local ^= local >> 33;
        ops++;
    }
    me->end_ns = bench_now_ns();
    me->ops = ops;
    me->sink = local;
    return NULL;
}

static void *
contended_pymutex(void *slot)
{
    return contended_loop(slot, LOCK_PYMUTEX);
}

static void *
contended_pthread(void *slot)
{
    return contended_loop(slot, LOCK_PTHREAD);
}

static void *
contended_legacy(void *slot)
{
    return contended_loop(slot, LOCK_LEGACY);
}

static void *(*const contended_fns[N_LOCKS])(void *) = {
    contended_pymutex, contended_pthread, contended_legacy,
};

/* Total ops/s of one sample, or -1 on failure (message printed). */
static double
contended_sample(guarded *g, lock_kind kind, int threads, int64_t duration_ns)
{
    contended_run run = {.g = g};
    atomic_init(&run.ready, 0);
    atomic_init(&run.go, 0);
    atomic_init(&run.stop, 0);
    contended_slot *slots = aligned_alloc(64, sizeof *slots * (size_t)threads);
    if (slots == NULL) {
        fprintf(stderr, "mutex: out of memory\n");
        return -1;
    }
    uint64_t counter_before = g->counter;
    int started = 0;
    for (; started < threads; started++) {
        contended_slot *s = &slots[started];
        memset(s, 0, sizeof *s);
        s->run = &run;
        s->seed = 0x2545F4914F6CDD1Du * (uint64_t)(started + 1);
        int rc = pthread_create(&s->thread, NULL, contended_fns[kind], s);
        if (rc != 0) {
            fprintf(stderr, "mutex: pthread_create: %s\n", strerror(rc));
            break;
        }
    }
    while (atomic_load_explicit(&run.ready, memory_order_relaxed) < started) {
        sched_yield();
    }
    int64_t t0 = bench_now_ns();
    atomic_store_explicit(&run.go, 1, memory_order_release);
    if (started == threads) {
        bench_sleep_until_ns(t0 + duration_ns);
    }
    atomic_store_explicit(&run.stop, 1, memory_order_relaxed);

    uint64_t total = 0;
    int64_t end = t0;
    for (int i = 0; i < started; i++) {
        pthread_join(slots[i].thread, NULL);
        total += slots[i].ops;
        bench_keep_u64(slots[i].sink);
        if (slots[i].end_ns > end) {
            end = slots[i].end_ns;
        }
    }
    free(slots);
    if (started != threads) {
        return -1;
    }
    if (g->counter - counter_before != total) {
        fprintf(stderr, "mutex: %s lost updates at %d threads: counter +%llu, ops %llu\n",
                lock_names[kind], threads,
                (unsigned long long)(g->counter - counter_before),
                (unsigned long long)total);
        return -1;
    }
    /* the last thread to stop ends the interval: it may have been waiting
     * for the lock, or descheduled, when stop was set */
    return (double)total * 1e9 / (double)(end - t0);
}

static int
measure_contended(const bench_params *p, FILE *out, guarded *g)
{
    if (p->threads < 1) {
        fprintf(stderr, "mutex: contended needs threads >= 1\n");
        return 1;
    }
    double ops[N_LOCKS][BENCH_MAX_SAMPLES];
    for (int s = 0; s < p->samples; s++) {
        size_t order[N_LOCKS];
        bench_rotation((size_t)s, N_LOCKS, order);
        for (int i = 0; i < N_LOCKS; i++) {
            size_t k = order[i];
            ops[k][s] = contended_sample(g, (lock_kind)k, p->threads, p->sample_ns);
            if (ops[k][s] < 0) {
                return 1;
            }
        }
    }
    print_results(out, p, "ops/s", ops);
    return 0;
}

/* ---- entry ------------------------------------------------------------------ */

int
bench_mutex_run(const bench_params *p, FILE *out)
{
    bool uncontended = strcmp(p->measure, "uncontended") == 0;
    if (!uncontended && strcmp(p->measure, "contended") != 0) {
        return 2;
    }
    /* static: aligned as declared, and off the stack threads do not share */
    static guarded g;
    if (!guarded_init(&g)) {
        fprintf(stderr, "mutex: cannot create the locks\n");
        return 1;
    }
    int rc = uncontended ? measure_uncontended(p, out, &g) : measure_contended(p, out, &g);
    guarded_fini(&g);
    return rc;
}
