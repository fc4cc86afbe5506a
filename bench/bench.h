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
 *   - number formatting for the table,
 *   - for the driver: histogram lines, the progress line and its ETA, the
 *     reference data files (anchors.tsv, targets.tsv) and a JSON writer.
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
 * (unit "x").  Other lines carry facts about the worker ("info ...") or
 * histograms ("hist ...", below). */
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
bench_workload_fn bench_gc_run;        /* gc.c: gc, stw */
bench_workload_fn bench_stw_run;
bench_workload_fn bench_pipeline_run;   /* pipeline.c: pipeline, dictmap */
bench_workload_fn bench_dictmap_run;

/* ---- formatting ---------------------------------------------------------- */

/* Three significant digits, as in cpython-anchor.md: 5.42, 11.1, 2824, 1.79e8.
 * NaN prints as "-". */
void bench_format_value(double v, char *buf, size_t size);

/* A ratio: 0.55, 1.02, 16.5. */
void bench_format_ratio(double v, char *buf, size_t size);

/* ---- histogram lines (worker side, parsed by the driver) ------------------
 *
 *   hist workload=stw measure=busy subject=to_stop threads=3 unit=ns
 *        lower=0,2,4,8,16 counts=0,0,0,12,3
 *
 * (one line): counts per bucket, bucket i covering [lower[i], lower[i + 1]),
 * summed over the worker's samples.  Not a "result" line: the driver keeps
 * histograms apart from the measurements (the report's chart and JSON). */
#define BENCH_MAX_BUCKETS 64

void bench_hist_print(FILE *out, const char *workload, const char *measure,
                      const char *subject, int threads, const char *unit,
                      const double *lower, const double *counts, size_t n);

/* ---- progress (driver side) ----------------------------------------------- */

/* Estimated time left, in ns, when `done` of rounds x per_round worker runs
 * are done (run k of a round is slot k).  cost_ns[slot]: how long that slot
 * took the last time it ran, < 0 if it has not run yet; an unrun slot is
 * estimated as the mean of the known slots of the same class[slot] (the
 * kind of measurement), else of all known slots.  NaN if nothing is known. */
double bench_eta_ns(const int64_t *cost_ns, const int *class_of, size_t per_round,
                    int rounds, size_t done);

/* "12 s", "3 min 05 s", "1 h 02 min"; "?" for NaN or a negative time. */
void bench_format_duration(double seconds, char *buf, size_t size);

/* "[3/40, elapsed 12 s, ETA 40 s] what": run done + 1 of total starts. */
void bench_format_progress(char *buf, size_t size, size_t done, size_t total,
                           double elapsed_s, double eta_s, const char *what);

/* ---- reference data files (driver side) -------------------------------------
 *
 * anchors.tsv and targets.tsv (installed to datadir/ftrt): one record a
 * line, fields separated by tabs (a run of tabs is one separator, so that
 * columns can be aligned; "-" is an empty field); '#' starts a comment line.
 *
 * anchors.tsv: CPython 3.13.15's figure for one of ftrt's measurements,
 *     workload  measure  subject  threads  ft  gil  unit  source
 *   ft, gil: the free-threaded and the GIL build's figure, "-" for none.
 * targets.tsv: a goal from the issues, checked against a run's medians,
 *     workload  measure  subject  threads  kind  bound  limit  judged  text
 *   threads: "*" for every thread count run; kind: value (the median),
 *   scaling (median at T over median at T=1) or time_ft_over_gil (GIL
 *   ops/s over FT ops/s); bound: "<=" or ">="; judged: both, ft or gil (the
 *   other build's figure is shown, not judged). */
typedef struct bench_anchor {
    char workload[32], measure[32], subject[48];
    int threads;
    double ft, gil;   /* NaN: no figure */
    char unit[16];
    char source[96];
} bench_anchor;

typedef enum bench_target_kind {
    BENCH_TARGET_VALUE,
    BENCH_TARGET_SCALING,
    BENCH_TARGET_TIME_FT_GIL,
} bench_target_kind;

typedef enum bench_judged { BENCH_JUDGED_BOTH, BENCH_JUDGED_FT, BENCH_JUDGED_GIL } bench_judged;

typedef struct bench_target {
    char workload[32], measure[32], subject[48];   /* subject "a/b": a ratio */
    int threads;                                   /* 0: every thread count run */
    bench_target_kind kind;
    bool at_most;                                  /* value <= limit, else >= */
    double limit;
    bench_judged judged;
    char text[96];
} bench_target;

/* Parse one line into *out.  Returns 1, 0 for a blank or comment line, or
 * -1 for a malformed one (why in err). */
typedef int bench_record_parse_fn(const char *line, void *out, char *err, size_t errsize);
int bench_anchor_parse(const char *line, void *out /* bench_anchor */, char *err,
                       size_t errsize);
int bench_target_parse(const char *line, void *out /* bench_target */, char *err,
                       size_t errsize);

/* Parse the lines of text into items (item_size bytes each, at most max).
 * A malformed line is skipped with "NAME:LINE: why; line skipped" on diag
 * (if not NULL); so are lines beyond max.  Returns the number parsed. */
size_t bench_records_parse(const char *text, const char *name, bench_record_parse_fn *parse,
                           void *items, size_t item_size, size_t max, FILE *diag);

/* ---- JSON output (ftrt-bench --json) --------------------------------------- *
 *
 * A streaming writer: members of an object one per line, scalar array
 * elements on one line.  Strings are escaped (quote, backslash, control
 * characters; invalid UTF-8 becomes U+FFFD); NaN and infinities, which JSON
 * lacks, are written as null; numbers round-trip (%.15g, or %.17g when
 * that is needed to read the same double back). */
#define BENCH_JSON_MAX_DEPTH 16

typedef struct bench_json {
    FILE *out;
    int depth;                              /* open containers */
    bool object[BENCH_JSON_MAX_DEPTH];      /* container is an object */
    size_t count[BENCH_JSON_MAX_DEPTH];     /* members or elements written */
    bool multiline[BENCH_JSON_MAX_DEPTH];   /* an element was a container */
    bool key_pending;                       /* a key was written, its value not yet */
    bool misused;                           /* unbalanced, too deep, key outside object */
} bench_json;

void bench_json_init(bench_json *j, FILE *out);
void bench_json_object_begin(bench_json *j);
void bench_json_object_end(bench_json *j);
void bench_json_array_begin(bench_json *j);
void bench_json_array_end(bench_json *j);
void bench_json_key(bench_json *j, const char *key);   /* in an object, before each value */
void bench_json_string(bench_json *j, const char *s);  /* NULL: null */
void bench_json_number(bench_json *j, double v);
void bench_json_int(bench_json *j, long long v);
void bench_json_bool(bench_json *j, bool v);
void bench_json_null(bench_json *j);
/* Ends the document with a newline.  Returns 0, or -1 if the document is
 * unbalanced, the writer was misused or a write failed. */
int bench_json_finish(bench_json *j);

/* s as a JSON string literal, quotes included. */
void bench_json_write_string(FILE *out, const char *s);

#endif /* FTRT_BENCH_H */
