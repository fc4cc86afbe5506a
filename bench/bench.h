/* The benchmark harness shared by ftrt-bench (the driver), the workers and
 * every workload file.
 *
 * How a benchmark run is put together:
 *
 *     ftrt-bench (driver, no ftrt code in it)
 *       round 1:  worker-ft  mutex uncontended      -> "result ..." lines
 *                 worker-gil mutex uncontended
 *                 worker-ft  mutex contended threads=1
 *                 worker-gil mutex contended threads=1
 *                 ...
 *       round 2:  the same again, ...
 *
 * The free-threaded and the GIL library export the same symbols, so one
 * process can hold only one of them: each variant gets its own worker
 * executable (ftrt-bench-worker-ft, ftrt-bench-worker-gil).  A worker runs one
 * measurement and prints one "result" line per subject on stdout; the driver
 * runs the two workers alternately, pools their samples and prints the table.
 * Inside one worker the things compared (PyMutex and pthread_mutex_t, say)
 * are measured in rotating order, sample by sample, so that drift in the
 * machine hits all of them.
 *
 * The harness provides
 *   - a clock and compiler barriers (bench_now_ns, bench_compiler_barrier),
 *   - calibration: how many iterations make one sample last a target time,
 *   - statistics: median and min-max of repeated samples,
 *   - the rotating order of the subjects within a worker,
 *   - the result line format, written by workers and parsed by the driver,
 *   - the busy-machine check (/proc/stat against the run's own CPU time),
 *   - number formatting for the table.
 * None of it depends on ftrt: the driver and the unit test link it alone.
 */
#ifndef FTRT_BENCH_H
#define FTRT_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- time and the optimizer ------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* Sleep until bench_now_ns() >= deadline_ns. */
void bench_sleep_until_ns(int64_t deadline_ns);

/* The compiler may not move memory accesses across this, nor assume memory
 * unchanged after it: a loop around it cannot be folded away. */
#define bench_compiler_barrier() __asm__ __volatile__("" ::: "memory")

/* Make the compiler believe v is used, so its computation stays. */
static inline void
bench_keep_u64(uint64_t v)
{
    __asm__ __volatile__("" : : "r"(v) : "memory");
}

/* glibc (2.34 and later) makes pthread_mutex_lock/unlock skip their atomic
 * instructions while the process has never started a second thread, which
 * would make a single-threaded pthread baseline three times too fast.  A
 * runtime always has threads; workers call this first: it starts one thread
 * and joins it, after which glibc takes the multi-threaded paths for good.
 * Returns false if the thread could not be started. */
bool bench_leave_single_threaded_mode(void);

/* ---- calibration -------------------------------------------------------- */

/* Runs the measured operation iters times and returns the elapsed time in
 * nanoseconds (the callee reads the clock, around its loop only). */
typedef int64_t bench_timed_fn(void *ctx, uint64_t iters);

/* The iteration count at which one call of fn takes about target_ns.
 * Starts at one iteration and grows tenfold until a run lasts at least an
 * eighth of the target (long enough that clock resolution and call overhead
 * no longer matter), scales linearly to the target, then runs that count
 * twice and scales again from the faster run (preemption only ever makes a
 * run slower).  Costs about 2.2 target times, which also warm up caches and
 * the CPU clock.  Never returns 0. */
uint64_t bench_calibrate(bench_timed_fn *fn, void *ctx, int64_t target_ns);

/* The linear step of the calibration, on its own for tests: iters scaled so
 * that a run that took elapsed_ns would take target_ns (at least 1). */
uint64_t bench_scale_iters(uint64_t iters, int64_t elapsed_ns, int64_t target_ns);

/* ---- statistics --------------------------------------------------------- */

typedef struct bench_stats {
    double median;   /* the middle sample; the mean of the middle two if n is even */
    double min;
    double max;
    size_t n;
} bench_stats;

/* Statistics of n samples (NaNs are skipped; all zero when n == 0).
 * The samples are not reordered. */
bench_stats bench_stats_of(const double *samples, size_t n);

/* The order in which a worker measures its n subjects in sample number
 * `round`: a rotation by `round`, so each subject takes each position equally
 * often (for two subjects: A B, B A, A B, ...).  order gets n indexes. */
void bench_rotation(size_t round, size_t n, size_t *order);

/* ---- result lines -------------------------------------------------------- */

/* One result line, written by a worker on stdout:
 *
 *   result workload=mutex measure=uncontended subject=pymutex threads=1
 *          unit=ns/op median=5.41 min=5.38 max=5.60 samples=5.41,5.38,5.60
 *
 * (all on one line).  Keys are fixed words, values contain no blanks.  A
 * subject "a/b" is the per-sample ratio a/b measured in the same process
 * (unit "x").  Other lines ("info ...") carry facts about the worker. */
#define BENCH_MAX_SAMPLES 64

typedef struct bench_result {
    const char *workload;
    const char *measure;
    const char *subject;
    int threads;
    const char *unit;
    const double *samples;
    size_t n_samples;
} bench_result;

void bench_result_print(FILE *out, const bench_result *r);

/* Copy the value of `key` in a "word key=value key=value" line into buf
 * (NUL-terminated, cut to bufsize).  Returns false if the key is absent. */
bool bench_kv_get(const char *line, const char *key, char *buf, size_t bufsize);

/* Parse a comma-separated list of numbers into out (at most max).  Returns
 * how many were read, or -1 on a malformed list. */
int bench_parse_doubles(const char *text, double *out, size_t max);

/* ---- is the machine busy? ------------------------------------------------ */

/* A reading of the machine's CPU time (/proc/stat, in clock ticks) and of this
 * process's own CPU time, including that of the children it has waited for
 * (the workers). */
typedef struct bench_cpu_snapshot {
    bool valid;
    uint64_t busy_ticks;    /* user+nice+system+irq+softirq+steal, every CPU */
    uint64_t total_ticks;   /* busy + idle + iowait */
    uint64_t steal_ticks;   /* taken by the hypervisor for other guests */
    int64_t own_cpu_ns;     /* getrusage(SELF) + getrusage(CHILDREN) */
} bench_cpu_snapshot;

bench_cpu_snapshot bench_cpu_snapshot_take(void);

/* Parse the "cpu " line of /proc/stat text into s (own_cpu_ns untouched). */
bool bench_parse_proc_stat(const char *text, bench_cpu_snapshot *s);

/* Shares of the machine's CPU capacity between two snapshots, in [0, 1]. */
typedef struct bench_cpu_usage {
    bool valid;
    double own;       /* this process and its workers */
    double foreign;   /* everything else that ran, steal included */
    double steal;
} bench_cpu_usage;

/* own_extra_ns: CPU time of this run not in the snapshots' own_cpu_ns (for a
 * child measured with wait4 between them; 0 otherwise). */
bench_cpu_usage bench_cpu_usage_between(const bench_cpu_snapshot *before,
                                        const bench_cpu_snapshot *after,
                                        int64_t own_extra_ns);

/* Above this foreign share the driver prints a warning. */
#define BENCH_BUSY_WARN_SHARE 0.05

/* ---- workloads (worker side) --------------------------------------------- */

/* What the driver asks a worker for: one measurement of one workload. */
typedef struct bench_params {
    const char *measure;   /* e.g. "uncontended", "contended" */
    int threads;           /* for measures that run at several thread counts */
    int samples;           /* samples per subject, at most BENCH_MAX_SAMPLES */
    int64_t sample_ns;     /* calibrated measures: target length of a sample;
                              fixed-duration measures: the wall time of one */
} bench_params;

/* A workload prints result lines on out.  Returns 0, or 2 for a measure it
 * does not know, or 1 when the measurement failed (reason on stderr). */
typedef int bench_workload_fn(const bench_params *p, FILE *out);

bench_workload_fn bench_mutex_run;   /* mutex.c */
bench_workload_fn bench_attach_run;  /* tstate.c: attach, gilstate, tstate, tss, churn */
bench_workload_fn bench_gilstate_run;
bench_workload_fn bench_tstate_run;
bench_workload_fn bench_tss_run;
bench_workload_fn bench_churn_run;
bench_workload_fn bench_refcount_run;   /* object.c: refcount, refshared, critsec, alloc */
bench_workload_fn bench_refshared_run;
bench_workload_fn bench_critsec_run;
bench_workload_fn bench_alloc_run;
bench_workload_fn bench_listbuild_run;  /* containers.c: listbuild, listshared, dictmix */
bench_workload_fn bench_listshared_run;
bench_workload_fn bench_dictmix_run;

/* ---- formatting ---------------------------------------------------------- */

/* Three significant digits, as in cpython-anchor.md: 5.42, 11.1, 2824, 1.79e8.
 * NaN prints as "-". */
void bench_format_value(double v, char *buf, size_t size);

/* A ratio: 0.55, 1.02, 16.5. */
void bench_format_ratio(double v, char *buf, size_t size);

#endif /* FTRT_BENCH_H */
