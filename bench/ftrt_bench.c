/* ftrt-bench: measures ftrt's free-threaded build against its GIL build.
 *
 *     ftrt-bench --quick              about 75 seconds (.ci/bench, the README's command)
 *     ftrt-bench [--full]             the full run (about 10 minutes)
 *     ftrt-bench --smoke              tiny sizes, one round: the CI test
 *     ftrt-bench --rounds 7 --threads 1,2,4 --workload mutex
 *     ftrt-bench --workload attach,gilstate,tstate,tss,churn   the thread states
 *     ftrt-bench --workload refcount,refshared,critsec,alloc    the object core
 *     ftrt-bench --workload listbuild,listshared,dictmix        the containers
 *     ftrt-bench --workload pipeline,dictmap    end to end
 *     ftrt-bench --workload gc,stw              the collector and stop-the-world
 *     ftrt-bench --quick --json run.json --chart run.svg --wait-quiet=120
 *
 * The two builds export the same symbols, so they cannot share a process.
 * This driver contains no ftrt code: it runs ftrt-bench-worker-ft and
 * ftrt-bench-worker-gil alternately (FT, GIL, FT, GIL, ...), one measurement
 * per worker run, for a number of rounds, pools the samples the workers
 * print (see bench.h) and prints one table per measurement:
 *
 *   measurement, T      the subject (PyMutex, ...) and the thread count
 *   median [min-max]    over every sample of every round, per build
 *   FT/GIL              the free-threaded median over the GIL median
 *   vs T=1 FT, GIL      (thread-scaling measures) the median at T over the
 *                       median at T=1
 *   vs <baseline> FT, GIL  the subject over the workload's in-process
 *                       baseline (pthread_mutex_t, PyMem_RawCalloc, ...): the
 *                       median of per-sample ratios, each from two samples
 *                       taken back to back in one worker (so < 1 is faster
 *                       for ns/op and slower for ops/s)
 *   CPython 3.13        the reference figure for the same measurement, where
 *                       one exists (anchors.tsv: CPython 3.13.15 measured on
 *                       a 2-vCPU machine, cpython-anchor.md)
 *
 * then whether this run met the targets set in the issues (targets.tsv;
 * information, not a test), and how much CPU other processes took during
 * the worker runs: a warning line means the figures are suspect and the run
 * worth repeating (--wait-quiet waits, before each round, until other
 * processes use under 10% of the CPU).
 *
 * --json FILE writes one document (schema "ftrt-bench/1"): the environment
 * (CPU, kernel, OS, build options, library versions, the run's options),
 * the busy-machine figures, every raw sample of every measurement and
 * per-sample ratio with its median, min and max, the stop-the-world
 * histograms ("hist" lines of the stw workload), the anchors, and each
 * target with its verdict.  --chart FILE.svg draws the speed-up over one
 * thread of every thread-scaling measure (both builds, the ideal line) and
 * the stop-the-world pause histograms (chart.h).
 *
 * Progress goes to stderr ("[i/N, elapsed 12 s, ETA 40 s] ..."), the report
 * to stdout.  Workers are looked up in $FTRT_BENCH_WORKER_DIR, else next to
 * this executable (the build tree), else in the install's libexec directory;
 * the data files in $FTRT_BENCH_DATA_DIR, else next to this executable, else
 * in ../share/ftrt relative to it, else in the install's datadir (a missing
 * file is a note on stderr: the report goes without its figures).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "chart.h"

#ifndef FTRT_BENCH_LIBEXECDIR
#  define FTRT_BENCH_LIBEXECDIR "/usr/local/libexec/ftrt"
#endif
#ifndef FTRT_BENCH_DATADIR
#  define FTRT_BENCH_DATADIR "/usr/local/share/ftrt"
#endif
#ifndef FTRT_BENCH_DATADIR_FROM_BINDIR   /* "" when bindir or datadir is absolute */
#  define FTRT_BENCH_DATADIR_FROM_BINDIR "../share/ftrt"
#endif
#ifndef FTRT_BENCH_VERSION
#  define FTRT_BENCH_VERSION "?"
#endif
/* the build, for --json (bench/meson.build) */
#ifndef FTRT_BENCH_BUILDTYPE
#  define FTRT_BENCH_BUILDTYPE "unknown"
#endif
#ifndef FTRT_BENCH_SANITIZE
#  define FTRT_BENCH_SANITIZE "unknown"
#endif
#ifndef FTRT_BENCH_COMPILER
#  define FTRT_BENCH_COMPILER "unknown"
#endif
#ifndef FTRT_BENCH_URCU_VERSION
#  define FTRT_BENCH_URCU_VERSION "unknown"
#endif
#ifndef FTRT_BENCH_ALLOCATOR_VERSION
#  define FTRT_BENCH_ALLOCATOR_VERSION "unknown"
#endif

#define ARRAY_LEN(a) (sizeof (a) / sizeof (a)[0])

/* =========================================================================
 * The workload catalogue: what each workload measures and how to show it.
 * A workload's code lives in its own file, run by the workers (worker.c).
 * ========================================================================= */

typedef enum sampling {
    SAMPLE_CALIBRATED,   /* iterations chosen so that a sample lasts sample_ms */
    SAMPLE_FIXED_WALL,   /* threads run for sample_ms of wall time */
} sampling;

typedef struct measure_desc {
    const char *name;
    const char *title;
    const char *unit;
    bool higher_is_better;
    bool per_thread_count;   /* one worker run per --threads entry */
    sampling sampling;
    bool show_scaling;       /* per_thread_count: columns "vs T=1" (median at T
                                over the median at T=1, per build) */
} measure_desc;

typedef struct subject_desc {
    const char *name;
    const char *label;
    /* a reference figure printed by one measure only, with no ratio to the
     * baseline (e.g. the hardware floor); NULL for a compared subject */
    const char *reference_in;
} subject_desc;

typedef struct workload_desc {
    const char *name;
    const measure_desc *measures;
    size_t n_measures;
    const subject_desc *subjects;
    size_t n_subjects;
    const char *baseline;   /* the workers print "<subject>/<baseline>" ratios */
} workload_desc;

static const measure_desc mutex_measures[] = {
    {"uncontended", "uncontended lock+unlock, one thread", "ns/op", false, false,
     SAMPLE_CALIBRATED, false},
    {"contended", "contended: lock, work, unlock, work; total over all threads", "ops/s",
     true, true, SAMPLE_FIXED_WALL, false},
};

static const subject_desc mutex_subjects[] = {
    {"pymutex", "PyMutex", NULL},
    {"pthread", "pthread_mutex_t", NULL},
    {"legacy", "legacy lock", NULL},
    {"floor", "2 locked CAS (floor)", "uncontended"},
};

/* Thread states (tstate.c).  One workload per baseline, so that each table
 * compares its subjects with one thing measured beside them. */
static const measure_desc attach_measures[] = {
    {"roundtrip", "detach+attach round trip on the main thread", "ns/op", false, false,
     SAMPLE_CALIBRATED, false},
};

static const subject_desc attach_subjects[] = {
    {"allow_threads", "Py_BEGIN/END_ALLOW_THREADS", NULL},
    {"pthread", "pthread_mutex lock+unlock", NULL},
};

static const measure_desc gilstate_measures[] = {
    {"ensure_release", "PyGILState_Ensure+Release", "ns/op", false, false,
     SAMPLE_CALIBRATED, false},
};

static const subject_desc gilstate_subjects[] = {
    {"nested", "nested: thread attached", NULL},
    {"detached", "own state, detached", NULL},
    {"fresh", "fresh thread: new state each", NULL},
    {"pthread", "pthread_mutex lock+unlock", NULL},
};

static const measure_desc tstate_measures[] = {
    {"create_destroy", "create and destroy a thread state", "ns/op", false, false,
     SAMPLE_CALIBRATED, false},
};

static const subject_desc tstate_subjects[] = {
    {"new_clear_delete", "New+Clear+Delete, attached", NULL},
    {"new_attach_delete", "New+Restore+Clear+DeleteCurrent", NULL},
    {"raw_alloc", "PyMem_RawCalloc+Free, 128 B", NULL},
};

static const measure_desc tss_measures[] = {
    {"set_get", "thread-specific storage set+get", "ns/op", false, false,
     SAMPLE_CALIBRATED, false},
};

static const subject_desc tss_subjects[] = {
    {"tss", "PyThread_tss_set+get", NULL},
    {"pthread", "pthread_setspecific+getspecific", NULL},
};

static const measure_desc churn_measures[] = {
    {"threads", "every thread creates and destroys states; total over all threads",
     "ops/s", true, true, SAMPLE_FIXED_WALL, true},
};

static const subject_desc churn_subjects[] = {
    {"new_clear_delete", "New+Clear+Delete, unattached", NULL},
    {"ensure_fresh", "GILState Ensure+Release, fresh", NULL},
    {"raw_alloc", "PyMem_RawCalloc+Free, 128 B", NULL},
};

/* The object core (object.c). */
static const measure_desc refcount_measures[] = {
    {"incdec", "Py_INCREF+Py_DECREF, one thread", "ns/op", false, false,
     SAMPLE_CALIBRATED, false},
};

static const subject_desc refcount_subjects[] = {
    {"owner", "owner thread", NULL},
    {"nonowner", "non-owner thread", NULL},
    {"atomic", "atomic add+sub pair", NULL},
};

static const measure_desc refshared_measures[] = {
    {"threads", "Py_INCREF+Py_DECREF on one object from every thread; total over all threads",
     "ops/s", true, true, SAMPLE_FIXED_WALL, true},
};

static const subject_desc refshared_subjects[] = {
    {"shared", "T non-owner threads, one object", NULL},
    {"atomic", "atomic add+sub pair, one counter", NULL},
};

static const measure_desc critsec_measures[] = {
    {"uncontended", "critical section begin+end, uncontended", "ns/op", false, false,
     SAMPLE_CALIBRATED, false},
};

static const subject_desc critsec_subjects[] = {
    {"one", "Py_BEGIN/END_CRITICAL_SECTION", NULL},
    {"two", "Py_BEGIN/END_CRITICAL_SECTION2", NULL},
    {"pthread", "pthread_mutex lock+unlock", NULL},
};

static const measure_desc alloc_measures[] = {
    {"small", "create and destroy a small object (16-byte body)", "ns/op", false, false,
     SAMPLE_CALIBRATED, false},
};

static const subject_desc alloc_subjects[] = {
    {"plain", "PyObject_New+Py_DECREF", NULL},
    {"gc", "PyObject_GC_New+Track+Py_DECREF", NULL},
    {"raw", "PyMem_RawMalloc+Free, same size", NULL},
};

/* The containers (containers.c): multi-core scaling. */
static const measure_desc listbuild_measures[] = {
    {"threads", "each thread builds a private list of 1e6 ints and drops it; total appends",
     "ops/s", true, true, SAMPLE_FIXED_WALL, true},
};

static const subject_desc listbuild_subjects[] = {
    {"private", "PyLong_FromLong+PyList_Append", NULL},
    {"raw", "PyMem_RawMalloc, 32 B, then free", NULL},
};

static const measure_desc listshared_measures[] = {
    {"threads", "T threads append 1e6 ints in all to one list", "ops/s", true, true,
     SAMPLE_FIXED_WALL, true},
};

static const subject_desc listshared_subjects[] = {
    {"shared", "PyList_Append to one list", NULL},
    {"raw", "PyMem_RawMalloc into one array", NULL},
};

static const measure_desc dictmix_measures[] = {
    {"threads", "1 set + 3 gets per step, 1024 int keys; total operations", "ops/s", true,
     true, SAMPLE_FIXED_WALL, true},
};

static const subject_desc dictmix_subjects[] = {
    {"private", "a dict per thread", NULL},
    {"shared", "one dict for all threads", NULL},
    {"raw", "PyMem_RawMalloc, 32 B, then free", NULL},
};

/* The collector and stop-the-world (gc.c).  These measures choose their own
 * thread counts (the T column, explained in each title), whatever --threads. */
static const measure_desc gc_measures[] = {
    {"alone", "PyGC_Collect, the collector alone (T=1); N lists (row 'lists'): 1e6, "
     "--quick 2e5", "ms", false, false, SAMPLE_FIXED_WALL, false},
    {"busy", "PyGC_Collect while 3 attached threads allocate (T=4); N as above", "ms",
     false, false, SAMPLE_FIXED_WALL, false},
};

static const subject_desc gc_subjects[] = {
    {"empty", "nothing to collect", NULL},
    {"cycles", "N self-referencing lists", NULL},
    {"pause", "  of which world stopped", NULL},
    {"acyclic", "create+free N lists, no cycle", NULL},
    {"lists", "N (lists, not ms)", "alone"},
};

static const measure_desc stw_measures[] = {
    {"busy", "time to stop the world (PyGC_Collect) with T busy attached threads; "
     "p50/p99 within 2x", "us", false, false, SAMPLE_FIXED_WALL, false},
    {"detached", "time to stop the world with T threads detached (waiting)", "us", false,
     false, SAMPLE_FIXED_WALL, false},
};

static const subject_desc stw_subjects[] = {
    {"p50", "time to stop, p50", NULL},
    {"p99", "time to stop, p99", NULL},
    {"max", "time to stop, max", NULL},
    {"alone", "no other thread, p50", NULL},
    {"per_thread", "per detached thread", "detached"},
};

/* End to end (pipeline.c): a producer/consumer queue, a read-mostly dict. */
static const measure_desc pipeline_measures[] = {
    {"threads", "T/2 producers, T/2 consumers (T=1: one does both) through one list "
     "bounded at 1024; items passed", "ops/s", true, true, SAMPLE_FIXED_WALL, true},
};

static const subject_desc pipeline_subjects[] = {
    {"list", "int objects, list in critical sections", NULL},
    {"pthread", "longs, C array under pthread_mutex", NULL},
};

static const measure_desc dictmap_measures[] = {
    {"threads", "every thread looks up all keys of one read-only dict, 1e4 str->int "
     "(--smoke 256); total lookups", "ops/s", true, true, SAMPLE_FIXED_WALL, true},
};

static const subject_desc dictmap_subjects[] = {
    {"shared", "one dict for all threads", NULL},
    {"copy", "PyDict_Copy per thread (same objects)", NULL},
    {"private", "own dict, own keys and values", NULL},
};

/* Measures with nothing to measure in the GIL build (it has no stops): its
 * figures are 0 and it prints no ratios.  Only --smoke runs their GIL worker
 * (and checks for that); the other modes leave the GIL column "-" and save
 * the run (its 16 busy threads take turns at the GIL: ~1.7 s a round). */
static const struct {
    const char *workload, *measure;
} zero_in_gil[] = {
    {"stw", "busy"},
    {"stw", "detached"},
};

static const workload_desc workloads[] = {
    {"mutex", mutex_measures, ARRAY_LEN(mutex_measures),
     mutex_subjects, ARRAY_LEN(mutex_subjects), "pthread"},
    {"attach", attach_measures, ARRAY_LEN(attach_measures),
     attach_subjects, ARRAY_LEN(attach_subjects), "pthread"},
    {"gilstate", gilstate_measures, ARRAY_LEN(gilstate_measures),
     gilstate_subjects, ARRAY_LEN(gilstate_subjects), "pthread"},
    {"tstate", tstate_measures, ARRAY_LEN(tstate_measures),
     tstate_subjects, ARRAY_LEN(tstate_subjects), "raw_alloc"},
    {"tss", tss_measures, ARRAY_LEN(tss_measures),
     tss_subjects, ARRAY_LEN(tss_subjects), "pthread"},
    {"churn", churn_measures, ARRAY_LEN(churn_measures),
     churn_subjects, ARRAY_LEN(churn_subjects), "raw_alloc"},
    {"refcount", refcount_measures, ARRAY_LEN(refcount_measures),
     refcount_subjects, ARRAY_LEN(refcount_subjects), "atomic"},
    {"refshared", refshared_measures, ARRAY_LEN(refshared_measures),
     refshared_subjects, ARRAY_LEN(refshared_subjects), "atomic"},
    {"critsec", critsec_measures, ARRAY_LEN(critsec_measures),
     critsec_subjects, ARRAY_LEN(critsec_subjects), "pthread"},
    {"alloc", alloc_measures, ARRAY_LEN(alloc_measures),
     alloc_subjects, ARRAY_LEN(alloc_subjects), "raw"},
    {"listbuild", listbuild_measures, ARRAY_LEN(listbuild_measures),
     listbuild_subjects, ARRAY_LEN(listbuild_subjects), "raw"},
    {"listshared", listshared_measures, ARRAY_LEN(listshared_measures),
     listshared_subjects, ARRAY_LEN(listshared_subjects), "raw"},
    {"dictmix", dictmix_measures, ARRAY_LEN(dictmix_measures),
     dictmix_subjects, ARRAY_LEN(dictmix_subjects), "raw"},
    {"gc", gc_measures, ARRAY_LEN(gc_measures),
     gc_subjects, ARRAY_LEN(gc_subjects), "acyclic"},
    {"stw", stw_measures, ARRAY_LEN(stw_measures),
     stw_subjects, ARRAY_LEN(stw_subjects), "alone"},
    {"pipeline", pipeline_measures, ARRAY_LEN(pipeline_measures),
     pipeline_subjects, ARRAY_LEN(pipeline_subjects), "pthread"},
    {"dictmap", dictmap_measures, ARRAY_LEN(dictmap_measures),
     dictmap_subjects, ARRAY_LEN(dictmap_subjects), "private"},
};
#define N_WORKLOADS ARRAY_LEN(workloads)

/* Reference figures (CPython 3.13.15, cpython-anchor.md) and the issues'
 * targets, read from anchors.tsv and targets.tsv (bench.h describes them;
 * find_data_dir says where they are).  A missing file leaves its table
 * empty: the report then has no "CPython 3.13" figures, or no targets. */
#define MAX_ANCHORS 256
#define MAX_TARGETS 256

static bench_anchor anchors[MAX_ANCHORS];
static size_t n_anchors;
static bench_target targets[MAX_TARGETS];
static size_t n_targets;
static char anchors_path[PATH_MAX + 32], targets_path[PATH_MAX + 32];   /* "" if not found */

/* =========================================================================
 * Run modes and options
 * ========================================================================= */

typedef struct run_mode {
    const char *name;
    int rounds;
    int calibrated_samples;   /* per worker run */
    double calibrated_ms;
    int wall_samples;
    double wall_ms;
    int n_threads;            /* default thread counts: the first n of 1,2,4,8 */
} run_mode;

/* The wall-time samples of the thread-scaling measures dominate: per round,
 * (their subjects, 18 with pipeline and dictmap) x thread counts x 2 builds
 * x samples x ms, plus a worker start (~0.1 s) per run; 2 CPUs.  --quick
 * leaves T=8 (oversubscribed 4x on 2 CPUs) to --full and takes 2 samples a
 * run instead of 3, 6 per figure over its 3 rounds: 204 s -> 105 s.  Samples
 * of 60 ms instead of 100 (and no GIL run of the stop-the-world measures):
 * 74 s.  On this noisy 2-CPU machine the run-to-run difference of the
 * medians was the same at 60 ms as at 100 (median 5%, p90 20-28%, over 90
 * figures, two runs each): the machine's noise dominates, not the length. */
static const run_mode mode_full = {"full", 5, 7, 20, 3, 200, 4};    /* ~10 min */
static const run_mode mode_quick = {"quick", 3, 5, 10, 2, 60, 3};  /* ~75 s */
static const run_mode mode_smoke = {"smoke", 1, 1, 1, 1, 5, 4};     /* ~5 s */

enum { VARIANT_FT, VARIANT_GIL, N_VARIANTS };
static const char *const variant_worker[N_VARIANTS] = {
    "ftrt-bench-worker-ft", "ftrt-bench-worker-gil",
};
static const char *const variant_label[N_VARIANTS] = {"free-threaded", "GIL"};

#define MAX_THREAD_COUNTS 16

typedef struct options {
    run_mode mode;
    bool smoke;
    int threads[MAX_THREAD_COUNTS];
    int n_threads;
    bool skip[N_WORKLOADS];      /* --workload: those not named */
    const char *json_path;       /* --json FILE, or NULL */
    const char *chart_path;      /* --chart FILE.svg, or NULL */
    double wait_quiet_s;         /* --wait-quiet[=S]: how long to wait; < 0: off */
} options;

/* --wait-quiet: the machine counts as quiet when other processes use less
 * than this share of its CPU time over one QUIET_PROBE_NS probe. */
#define QUIET_SHARE 0.10
#define QUIET_PROBE_NS 1000000000LL
#define WAIT_QUIET_DEFAULT_S 60

static bool
workload_selected(const options *o, const char *name)
{
    for (size_t w = 0; w < N_WORKLOADS; w++) {
        if (strcmp(workloads[w].name, name) == 0) {
            return !o->skip[w];
        }
    }
    return false;
}

static void
usage(FILE *f)
{
    fprintf(f,
        "usage: ftrt-bench [--full | --quick | --smoke] [--rounds N]\n"
        "                  [--threads 1,2,4,8] [--workload LIST]\n"
        "                  [--json FILE] [--chart FILE.svg] [--wait-quiet[=SECONDS]]\n"
        "  --full        the default: 5 rounds, 3 samples of 200 ms a multi-thread\n"
        "                run, threads 1,2,4,8 (about 10 minutes)\n"
        "  --quick       3 rounds, 2 samples of 60 ms, threads 1,2,4 (about 75 s)\n"
        "  --smoke       tiny sizes and one round; checks that every measurement\n"
        "                produced a positive number (for CI; no timing asserted)\n"
        "  --rounds N    FT,GIL worker pairs per measurement (default 5, quick 3)\n"
        "  --threads L   thread counts for multi-thread measures (default 1,2,4,8;\n"
        "                --quick 1,2,4)\n"
        "  --json FILE   write every raw sample, the medians, the targets and the\n"
        "                machine to FILE (schema ftrt-bench/1)\n"
        "  --chart FILE  write an SVG chart: speed-up against threads for both\n"
        "                builds, and the stop-the-world pause histogram\n"
        "  --wait-quiet[=S]  before each round, wait (up to S seconds, default %d)\n"
        "                until other processes use under %.0f%% of the CPU\n"
        "  --workload L  run only these workloads (comma-separated):\n"
        "               ",
        WAIT_QUIET_DEFAULT_S, 100 * QUIET_SHARE);
    int col = 15;
    for (size_t i = 0; i < N_WORKLOADS; i++) {
        int len = (int)strlen(workloads[i].name) + 1;
        if (col + len > 78) {
            fprintf(f, "\n               ");
            col = 15;
        }
        fprintf(f, " %s", workloads[i].name);
        col += len;
    }
    fprintf(f, "\n"
        "Progress goes to stderr, the report to stdout.  Reference figures and\n"
        "targets come from anchors.tsv and targets.tsv in $FTRT_BENCH_DATA_DIR,\n"
        "beside ftrt-bench, or in %s.\n", FTRT_BENCH_DATADIR);
}

static void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ftrt-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static int
parse_positive(const char *s, int max, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < 1 || v > max) {
        die("bad %s '%s' (expected 1..%d)", what, s, max);
    }
    return (int)v;
}

static options
parse_options(int argc, char **argv)
{
    options o = {.mode = mode_full, .threads = {1, 2, 4, 8}, .n_threads = 0,
                 .wait_quiet_s = -1};
    int rounds = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--full") == 0) {
            o.mode = mode_full;
            o.smoke = false;
        }
        else if (strcmp(a, "--quick") == 0) {
            o.mode = mode_quick;
            o.smoke = false;
        }
        else if (strcmp(a, "--smoke") == 0) {
            o.mode = mode_smoke;
            o.smoke = true;
        }
        else if (strcmp(a, "--rounds") == 0 && next) {
            rounds = parse_positive(next, 1000, "round count");
            i++;
        }
        else if (strcmp(a, "--threads") == 0 && next) {
            char list[256];
            snprintf(list, sizeof list, "%s", next);
            o.n_threads = 0;
            for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
                if (o.n_threads == MAX_THREAD_COUNTS) {
                    die("at most %d thread counts", MAX_THREAD_COUNTS);
                }
                o.threads[o.n_threads++] = parse_positive(tok, 1024, "thread count");
            }
            if (o.n_threads == 0) {
                die("empty thread list");
            }
            i++;
        }
        else if (strcmp(a, "--workload") == 0 && next) {
            char list[256];
            snprintf(list, sizeof list, "%s", next);
            for (size_t w = 0; w < N_WORKLOADS; w++) {
                o.skip[w] = true;
            }
            for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
                size_t w = 0;
                while (w < N_WORKLOADS && strcmp(tok, workloads[w].name) != 0) {
                    w++;
                }
                if (w == N_WORKLOADS) {
                    die("unknown workload '%s'", tok);
                }
                o.skip[w] = false;
            }
            i++;
        }
        else if (strcmp(a, "--json") == 0 && next) {
            o.json_path = next;
            i++;
        }
        else if (strcmp(a, "--chart") == 0 && next) {
            o.chart_path = next;
            i++;
        }
        else if (strcmp(a, "--wait-quiet") == 0) {
            o.wait_quiet_s = WAIT_QUIET_DEFAULT_S;
        }
        else if (strncmp(a, "--wait-quiet=", 13) == 0) {
            o.wait_quiet_s = parse_positive(a + 13, 86400, "--wait-quiet time");
        }
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        else {
            usage(stderr);
            exit(2);
        }
    }
    if (rounds) {
        o.mode.rounds = rounds;
    }
    if (o.n_threads == 0) {   /* no --threads: the mode's */
        o.n_threads = o.mode.n_threads;
    }
    return o;
}

/* =========================================================================
 * Collected samples: one row per (workload, measure, subject, threads)
 * ========================================================================= */

#define MAX_ROWS 512   /* gc and stw print ~60 of a default run's ~200 */

typedef struct row {
    char workload[32];
    char measure[32];
    char subject[48];
    char unit[16];
    int threads;
    double *samples[N_VARIANTS];
    size_t n[N_VARIANTS];
    size_t cap[N_VARIANTS];
} row;

static row rows[MAX_ROWS];
static size_t n_rows;

static row *
find_row(const char *workload, const char *measure, const char *subject, int threads)
{
    for (size_t i = 0; i < n_rows; i++) {
        row *r = &rows[i];
        if (r->threads == threads && strcmp(r->workload, workload) == 0
            && strcmp(r->measure, measure) == 0 && strcmp(r->subject, subject) == 0) {
            return r;
        }
    }
    return NULL;
}

static row *
get_row(const char *workload, const char *measure, const char *subject, int threads)
{
    row *r = find_row(workload, measure, subject, threads);
    if (r) {
        return r;
    }
    if (n_rows == MAX_ROWS) {
        die("too many result rows");
    }
    r = &rows[n_rows++];
    snprintf(r->workload, sizeof r->workload, "%s", workload);
    snprintf(r->measure, sizeof r->measure, "%s", measure);
    snprintf(r->subject, sizeof r->subject, "%s", subject);
    r->threads = threads;
    return r;
}

static void
row_add(row *r, int v, double sample)
{
    if (r->n[v] == r->cap[v]) {
        r->cap[v] = r->cap[v] ? 2 * r->cap[v] : 16;
        r->samples[v] = realloc(r->samples[v], r->cap[v] * sizeof(double));
        if (r->samples[v] == NULL) {
            die("out of memory");
        }
    }
    r->samples[v][r->n[v]++] = sample;
}

static double
row_median(const char *workload, const char *measure, const char *subject, int threads, int v)
{
    row *r = find_row(workload, measure, subject, threads);
    if (r == NULL || r->n[v] == 0) {
        return NAN;
    }
    return bench_stats_of(r->samples[v], r->n[v]).median;
}

/* Histograms ("hist" lines, bench.h): the counts of every run of a build
 * summed, per (workload, measure, subject, threads). */
#define MAX_HISTS 64

typedef struct hist {
    char workload[32], measure[32], subject[48], unit[16];
    int threads;
    size_t n;
    double lower[BENCH_MAX_BUCKETS];
    double count[N_VARIANTS][BENCH_MAX_BUCKETS];
    int runs[N_VARIANTS];   /* worker runs summed */
} hist;

static hist hists[MAX_HISTS];
static size_t n_hists;

static const hist *
find_hist(const char *workload, const char *measure, const char *subject, int threads)
{
    for (size_t i = 0; i < n_hists; i++) {
        const hist *h = &hists[i];
        if (h->threads == threads && strcmp(h->workload, workload) == 0
            && strcmp(h->measure, measure) == 0 && strcmp(h->subject, subject) == 0) {
            return h;
        }
    }
    return NULL;
}

/* =========================================================================
 * Running the workers
 * ========================================================================= */

static char worker_dir[PATH_MAX];
static char allocator[N_VARIANTS][64];       /* the workers' "info" line */
static char worker_version[N_VARIANTS][64];

static bool
worker_exists(const char *dir)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, variant_worker[VARIANT_FT]);
    return access(path, X_OK) == 0;
}

static void
find_workers(void)
{
    const char *env = getenv("FTRT_BENCH_WORKER_DIR");
    if (env && *env) {
        snprintf(worker_dir, sizeof worker_dir, "%s", env);
        if (!worker_exists(worker_dir)) {
            die("no %s in FTRT_BENCH_WORKER_DIR=%s", variant_worker[VARIANT_FT], env);
        }
        return;
    }
    /* the build tree: bench/ftrt-bench sits beside the workers */
    ssize_t len = readlink("/proc/self/exe", worker_dir, sizeof worker_dir - 1);
    if (len > 0) {
        worker_dir[len] = '\0';
        char *slash = strrchr(worker_dir, '/');
        if (slash) {
            *slash = '\0';
            if (worker_exists(worker_dir)) {
                return;
            }
        }
    }
    snprintf(worker_dir, sizeof worker_dir, "%s", FTRT_BENCH_LIBEXECDIR);
    if (!worker_exists(worker_dir)) {
        die("cannot find %s next to ftrt-bench nor in %s", variant_worker[VARIANT_FT],
            FTRT_BENCH_LIBEXECDIR);
    }
}

/* Run one worker; returns its stdout (caller frees), or dies. */
static char *
run_worker(int v, char *const args[])
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", worker_dir, variant_worker[v]);
    int fds[2];
    if (pipe(fds) != 0) {
        die("pipe: %s", strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        if (dup2(fds[1], STDOUT_FILENO) < 0) {
            _exit(127);
        }
        close(fds[1]);
        char *argv[16];
        int n = 0;
        argv[n++] = path;
        for (int i = 0; args[i] && n < 15; i++) {
            argv[n++] = args[i];
        }
        argv[n] = NULL;
        execv(path, argv);
        fprintf(stderr, "ftrt-bench: exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    for (;;) {
        if (text == NULL) {
            die("out of memory");
        }
        if (len + 1 == cap) {
            cap *= 2;
            text = realloc(text, cap);
            continue;
        }
        ssize_t got = read(fds[0], text + len, cap - 1 - len);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            break;
        }
        len += (size_t)got;
    }
    text[len] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            die("waitpid: %s", strerror(errno));
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "\nftrt-bench: %s", variant_worker[v]);
        for (int i = 0; args[i]; i++) {
            fprintf(stderr, " %s", args[i]);
        }
        if (WIFSIGNALED(status)) {
            die(": killed by signal %d", WTERMSIG(status));
        }
        die(": exit status %d", WEXITSTATUS(status));
    }
    return text;
}

/* Add a worker's "hist" line to its histogram. */
static void
absorb_hist(int v, const char *line)
{
    char workload[32], measure[32], subject[48], unit[16], threads[16];
    static char lower_text[BENCH_MAX_BUCKETS * 24], counts_text[BENCH_MAX_BUCKETS * 24];
    double lower[BENCH_MAX_BUCKETS], counts[BENCH_MAX_BUCKETS];
    int n = -1, nc = -1;
    if (bench_kv_get(line, "workload", workload, sizeof workload)
        && bench_kv_get(line, "measure", measure, sizeof measure)
        && bench_kv_get(line, "subject", subject, sizeof subject)
        && bench_kv_get(line, "unit", unit, sizeof unit)
        && bench_kv_get(line, "threads", threads, sizeof threads)
        && bench_kv_get(line, "lower", lower_text, sizeof lower_text)
        && bench_kv_get(line, "counts", counts_text, sizeof counts_text)) {
        n = bench_parse_doubles(lower_text, lower, BENCH_MAX_BUCKETS);
        nc = bench_parse_doubles(counts_text, counts, BENCH_MAX_BUCKETS);
    }
    if (n <= 0 || nc != n) {
        die("malformed histogram from %s: %s", variant_worker[v], line);
    }
    hist *h = (hist *)find_hist(workload, measure, subject, atoi(threads));
    if (h == NULL) {
        if (n_hists == MAX_HISTS) {
            die("too many histograms");
        }
        h = &hists[n_hists++];
        snprintf(h->workload, sizeof h->workload, "%s", workload);
        snprintf(h->measure, sizeof h->measure, "%s", measure);
        snprintf(h->subject, sizeof h->subject, "%s", subject);
        snprintf(h->unit, sizeof h->unit, "%s", unit);
        h->threads = atoi(threads);
        h->n = (size_t)n;
        memcpy(h->lower, lower, sizeof lower[0] * (size_t)n);
    }
    if (h->n != (size_t)n || memcmp(h->lower, lower, sizeof lower[0] * (size_t)n) != 0) {
        die("%s: histogram %s %s %s T=%s changed its buckets", variant_worker[v], workload,
            measure, subject, threads);
    }
    for (int i = 0; i < n; i++) {
        h->count[v][i] += counts[i];
    }
    h->runs[v]++;
}

/* Fold a worker's output into the rows; returns the number of results. */
static int
absorb_output(int v, char *text)
{
    int results = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char buf[64];
        if (strncmp(line, "info ", 5) == 0) {
            if (bench_kv_get(line, "free_threaded", buf, sizeof buf)
                && atoi(buf) != (v == VARIANT_FT)) {
                die("%s reports free_threaded=%s: built against the wrong library",
                    variant_worker[v], buf);
            }
            if (bench_kv_get(line, "allocator", buf, sizeof buf)) {
                snprintf(allocator[v], sizeof allocator[v], "%s", buf);
            }
            if (bench_kv_get(line, "version", buf, sizeof buf)) {
                snprintf(worker_version[v], sizeof worker_version[v], "%s", buf);
            }
            continue;
        }
        if (strncmp(line, "hist ", 5) == 0) {
            absorb_hist(v, line);
            continue;
        }
        if (strncmp(line, "result ", 7) != 0) {
            continue;
        }
        char workload[32], measure[32], subject[48], unit[16], threads[16];
        static char samples_text[BENCH_MAX_SAMPLES * 24];
        if (!bench_kv_get(line, "workload", workload, sizeof workload)
            || !bench_kv_get(line, "measure", measure, sizeof measure)
            || !bench_kv_get(line, "subject", subject, sizeof subject)
            || !bench_kv_get(line, "unit", unit, sizeof unit)
            || !bench_kv_get(line, "threads", threads, sizeof threads)
            || !bench_kv_get(line, "samples", samples_text, sizeof samples_text)) {
            die("malformed line from %s: %s", variant_worker[v], line);
        }
        double samples[BENCH_MAX_SAMPLES];
        int n = bench_parse_doubles(samples_text, samples, BENCH_MAX_SAMPLES);
        if (n < 0) {
            die("malformed samples from %s: %s", variant_worker[v], line);
        }
        row *r = get_row(workload, measure, subject, atoi(threads));
        snprintf(r->unit, sizeof r->unit, "%s", unit);
        for (int i = 0; i < n; i++) {
            row_add(r, v, samples[i]);
        }
        results++;
    }
    return results;
}

/* One worker run planned: which measurement at which thread count. */
typedef struct job {
    const workload_desc *w;
    const measure_desc *m;
    int threads;
} job;

#define MAX_JOBS 256

static size_t
plan_jobs(const options *o, job *jobs)
{
    size_t n = 0;
    for (size_t wi = 0; wi < N_WORKLOADS; wi++) {
        const workload_desc *w = &workloads[wi];
        if (o->skip[wi]) {
            continue;
        }
        for (size_t mi = 0; mi < w->n_measures; mi++) {
            const measure_desc *m = &w->measures[mi];
            int counts = m->per_thread_count ? o->n_threads : 1;
            for (int t = 0; t < counts && n < MAX_JOBS; t++) {
                jobs[n++] = (job){w, m, m->per_thread_count ? o->threads[t] : 1};
            }
        }
    }
    return n;
}

/* Progress on stderr, "[i/N, elapsed 12 s, ETA 40 s] what": rewritten in
 * place on a terminal, a line each in logs.  The ETA sums, over the runs
 * left, what each took in the previous round (the first round: the mean of
 * the runs done of the same kind of measurement), see bench_eta_ns. */
static void
progress(size_t done, size_t total, int64_t start_ns, double eta_ns, const char *what)
{
    char line[256];
    bench_format_progress(line, sizeof line, done, total,
                          (double)(bench_now_ns() - start_ns) / 1e9, eta_ns / 1e9, what);
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r\033[K%s", line);
    }
    else {
        fprintf(stderr, "%s\n", line);
    }
}

/* =========================================================================
 * A quiet machine (--wait-quiet)
 * ========================================================================= */

/* Other processes' share of the CPU over one probe (this process sleeps). */
static bench_cpu_usage
probe_usage(void)
{
    bench_cpu_snapshot before = bench_cpu_snapshot_take();
    bench_sleep_until_ns(bench_now_ns() + QUIET_PROBE_NS);
    bench_cpu_snapshot after = bench_cpu_snapshot_take();
    return bench_cpu_usage_between(&before, &after, 0);
}

typedef struct quiet_log {
    int waits;            /* probes that found the machine busy */
    int timeouts;         /* waits that gave up */
    double waited_s;
    double last_foreign;  /* the last probe's share, NaN if none */
} quiet_log;

/* Wait until other processes use under QUIET_SHARE of the CPU, or for at
 * most limit_s; says on stderr what it waits for.  Costs one probe when the
 * machine is quiet. */
static void
wait_quiet(double limit_s, const char *when, quiet_log *log)
{
    int64_t start = bench_now_ns();
    bool waited = false;
    for (;;) {
        bench_cpu_usage u = probe_usage();
        double so_far = (double)(bench_now_ns() - start) / 1e9;
        if (!u.valid) {
            fprintf(stderr, "ftrt-bench: /proc/stat unreadable, cannot wait for a quiet "
                            "machine\n");
            log->last_foreign = NAN;
            break;
        }
        log->last_foreign = u.foreign;
        if (u.foreign < QUIET_SHARE) {
            if (waited) {
                fprintf(stderr, "ftrt-bench: the machine is quiet (other processes: %.0f%%) "
                                "after %.0f s\n", 100 * u.foreign, so_far);
            }
            break;
        }
        if (!waited) {
            waited = true;
            log->waits++;
        }
        if (so_far >= limit_s) {
            log->timeouts++;
            fprintf(stderr, "ftrt-bench: warning: the machine did not become quiet in %.0f s "
                            "(other processes use %.0f%% of the CPU, steal %.0f%%); "
                            "running anyway\n", limit_s, 100 * u.foreign, 100 * u.steal);
            break;
        }
        fprintf(stderr, "ftrt-bench: %s: waiting for a quiet machine: other processes use "
                        "%.0f%% of the CPU (steal %.0f%%), want under %.0f%%; %.0f of %.0f s\n",
                when, 100 * u.foreign, 100 * u.steal, 100 * QUIET_SHARE, so_far, limit_s);
    }
    if (waited) {
        log->waited_s += (double)(bench_now_ns() - start) / 1e9;
    }
}

/* =========================================================================
 * Tables
 * ========================================================================= */

#define TBL_COLS 14
#define TBL_ROWS 64
#define TBL_CELL 112   /* a target's text (96) and ", T=1024" */

typedef struct table {
    int ncols, nrows;
    const char *group[TBL_COLS];   /* upper header: a label starts a group, NULL continues */
    const char *head[TBL_COLS];
    bool right[TBL_COLS];
    int gap[TBL_COLS];             /* blanks before the column */
    char cell[TBL_ROWS][TBL_COLS][TBL_CELL];
} table;

static table tbl;

static void
table_reset(int ncols)
{
    memset(&tbl, 0, sizeof tbl);
    tbl.ncols = ncols;
    for (int c = 0; c < ncols; c++) {
        tbl.gap[c] = 2;   /* before the first column: the indent */
    }
}

static char *
table_cell(int r, int c)
{
    return tbl.cell[r][c];
}

static void
table_print(FILE *out)
{
    int width[TBL_COLS];
    for (int c = 0; c < tbl.ncols; c++) {
        width[c] = (int)strlen(tbl.head[c] ? tbl.head[c] : "");
        for (int r = 0; r < tbl.nrows; r++) {
            int w = (int)strlen(tbl.cell[r][c]);
            width[c] = w > width[c] ? w : width[c];
        }
    }
    /* widen the last column of a group whose label is longer than the group */
    bool any_group = false;
    for (int c = 0; c < tbl.ncols; c++) {
        if (!tbl.group[c]) {
            continue;
        }
        any_group |= tbl.group[c][0] != '\0';
        int end = c + 1;
        while (end < tbl.ncols && !tbl.group[end]) {
            end++;
        }
        int span = 0;
        for (int k = c; k < end; k++) {
            span += width[k] + (k > c ? tbl.gap[k] : 0);
        }
        int need = (int)strlen(tbl.group[c]);
        if (need > span) {
            width[end - 1] += need - span;
        }
    }
    if (any_group) {
        char line[512];
        int pos = 0;
        memset(line, ' ', sizeof line);
        for (int c = 0; c < tbl.ncols; c++) {
            pos += tbl.gap[c];
            if (tbl.group[c] && pos + (int)strlen(tbl.group[c]) < (int)sizeof line) {
                memcpy(line + pos, tbl.group[c], strlen(tbl.group[c]));
            }
            pos += width[c];
        }
        while (pos > 0 && line[pos - 1] == ' ') {
            pos--;
        }
        fprintf(out, "%.*s\n", pos, line);
    }
    for (int r = -1; r < tbl.nrows; r++) {
        char line[512];
        int pos = 0;
        for (int c = 0; c < tbl.ncols && pos < (int)sizeof line; c++) {
            const char *text = r < 0 ? (tbl.head[c] ? tbl.head[c] : "") : tbl.cell[r][c];
            pos += snprintf(line + pos, sizeof line - (size_t)pos, "%*s%*s", tbl.gap[c], "",
                            tbl.right[c] ? width[c] : -width[c], text);
        }
        if (pos > (int)sizeof line - 1) {
            pos = (int)sizeof line - 1;
        }
        while (pos > 0 && line[pos - 1] == ' ') {
            pos--;
        }
        fprintf(out, "%.*s\n", pos, line);
    }
}

static const char *
subject_label(const workload_desc *w, const char *name)
{
    for (size_t i = 0; i < w->n_subjects; i++) {
        if (strcmp(w->subjects[i].name, name) == 0) {
            return w->subjects[i].label;
        }
    }
    return name;
}

static const bench_anchor *
find_anchor(const char *workload, const char *measure, const char *subject, int threads)
{
    for (size_t i = 0; i < n_anchors; i++) {
        const bench_anchor *a = &anchors[i];
        if (a->threads == threads && strcmp(a->workload, workload) == 0
            && strcmp(a->measure, measure) == 0 && strcmp(a->subject, subject) == 0) {
            return a;
        }
    }
    return NULL;
}

static void
format_stats(const row *r, int v, char *median, char *range)
{
    bench_stats st = bench_stats_of(r->samples[v], r->n[v]);
    if (st.n == 0) {
        snprintf(median, TBL_CELL, "-");
        range[0] = '\0';
        return;
    }
    char lo[20], hi[20];
    bench_format_value(st.median, median, TBL_CELL);
    bench_format_value(st.min, lo, sizeof lo);
    bench_format_value(st.max, hi, sizeof hi);
    snprintf(range, TBL_CELL, "[%s-%s]", lo, hi);
}

enum {
    COL_WHAT, COL_T, COL_FT, COL_FT_RANGE, COL_GIL, COL_GIL_RANGE, COL_RATIO,
    COL_SCALE_FT, COL_SCALE_GIL, COL_BASE_FT, COL_BASE_GIL, COL_CPY_FT, COL_CPY_GIL, N_COLS
};

static void
print_measure_table(FILE *out, const workload_desc *w, const measure_desc *m)
{
    static char base_group[48];
    snprintf(base_group, sizeof base_group, "vs %s", w->baseline);
    table_reset(N_COLS);
    const char *group[N_COLS] = {"", NULL, "free-threaded", NULL, "GIL", NULL, "",
                                 "vs T=1", NULL, base_group, NULL, "CPython 3.13", NULL};
    const char *head[N_COLS] = {"measurement", "T", "median", "[min-max]", "median",
                                "[min-max]", "FT/GIL", "FT", "GIL", "FT", "GIL", "FT",
                                "GIL"};
    bool scaling = m->per_thread_count && m->show_scaling;
    for (int c = 0; c < N_COLS; c++) {
        tbl.group[c] = group[c];
        tbl.head[c] = head[c];
        tbl.right[c] = c != COL_WHAT && c != COL_FT_RANGE && c != COL_GIL_RANGE;
    }
    tbl.gap[COL_FT_RANGE] = tbl.gap[COL_GIL_RANGE] = 1;
    if (!scaling) {
        /* empty and zero-width: the table prints as if they were not there */
        tbl.group[COL_SCALE_FT] = tbl.group[COL_SCALE_GIL] = NULL;
        tbl.head[COL_SCALE_FT] = tbl.head[COL_SCALE_GIL] = NULL;
        tbl.gap[COL_SCALE_FT] = tbl.gap[COL_SCALE_GIL] = 0;
    }

    for (size_t i = 0; i < n_rows && tbl.nrows < TBL_ROWS; i++) {
        const row *r = &rows[i];
        if (strcmp(r->workload, w->name) != 0 || strcmp(r->measure, m->name) != 0
            || strchr(r->subject, '/')) {
            continue;
        }
        int t = tbl.nrows++;
        snprintf(table_cell(t, COL_WHAT), TBL_CELL, "%s", subject_label(w, r->subject));
        snprintf(table_cell(t, COL_T), TBL_CELL, "%d", r->threads);
        format_stats(r, VARIANT_FT, table_cell(t, COL_FT), table_cell(t, COL_FT_RANGE));
        format_stats(r, VARIANT_GIL, table_cell(t, COL_GIL), table_cell(t, COL_GIL_RANGE));
        double ft = row_median(r->workload, r->measure, r->subject, r->threads, VARIANT_FT);
        double gil = row_median(r->workload, r->measure, r->subject, r->threads, VARIANT_GIL);
        bench_format_ratio(gil != 0 ? ft / gil : NAN, table_cell(t, COL_RATIO), TBL_CELL);
        if (scaling) {
            for (int v = 0; v < N_VARIANTS; v++) {
                double at_t = v == VARIANT_FT ? ft : gil;
                double at_1 = row_median(r->workload, r->measure, r->subject, 1, v);
                bench_format_ratio(at_t / at_1,
                                   table_cell(t, v == VARIANT_FT ? COL_SCALE_FT : COL_SCALE_GIL),
                                   TBL_CELL);
            }
        }
        if (strcmp(r->subject, w->baseline) != 0) {
            char ratio_subject[64];
            snprintf(ratio_subject, sizeof ratio_subject, "%s/%s", r->subject, w->baseline);
            for (int v = 0; v < N_VARIANTS; v++) {
                bench_format_ratio(row_median(r->workload, r->measure, ratio_subject,
                                              r->threads, v),
                                   table_cell(t, v == VARIANT_FT ? COL_BASE_FT : COL_BASE_GIL),
                                   TBL_CELL);
            }
        }
        const bench_anchor *a = find_anchor(r->workload, r->measure, r->subject, r->threads);
        if (a) {
            bench_format_value(a->ft, table_cell(t, COL_CPY_FT), TBL_CELL);
            bench_format_value(a->gil, table_cell(t, COL_CPY_GIL), TBL_CELL);
        }
    }
    fprintf(out, "\n%s: %s, %s (%s is better)\n", w->name, m->title, m->unit,
            m->higher_is_better ? "higher" : "lower");
    table_print(out);
}

/* A target judged on build v at thread count `threads`. */
typedef struct target_eval {
    bool shown;           /* false: the build has no figure (time_ft_over_gil, GIL) */
    double value;         /* NaN: not run */
    bool ratio;           /* printed as a ratio */
    int met;              /* 1 met, 0 missed, -1 not judged (other build, not run) */
    const char *status;   /* "met", "MISSED", "not run", "(FT target)", "(GIL target)" */
} target_eval;

static target_eval
eval_target(const bench_target *tg, int threads, int v)
{
    target_eval e = {true, NAN, false, -1, ""};
    double x = row_median(tg->workload, tg->measure, tg->subject, threads, v);
    e.ratio = strchr(tg->subject, '/') != NULL || tg->kind != BENCH_TARGET_VALUE;
    if (tg->kind == BENCH_TARGET_SCALING) {
        x /= row_median(tg->workload, tg->measure, tg->subject, 1, v);
    }
    else if (tg->kind == BENCH_TARGET_TIME_FT_GIL) {
        if (v != VARIANT_FT) {
            e.shown = false;
            return e;
        }
        x = row_median(tg->workload, tg->measure, tg->subject, threads, VARIANT_GIL) / x;
    }
    e.value = x;
    bool judged_here = tg->judged == BENCH_JUDGED_BOTH
                       || (tg->judged == BENCH_JUDGED_FT && v == VARIANT_FT)
                       || (tg->judged == BENCH_JUDGED_GIL && v == VARIANT_GIL);
    if (isnan(x)) {
        e.status = "not run";
    }
    else if (!judged_here) {
        e.status = tg->judged == BENCH_JUDGED_FT ? "(FT target)" : "(GIL target)";
    }
    else {
        e.met = tg->at_most ? x <= tg->limit : x >= tg->limit;
        e.status = e.met ? "met" : "MISSED";
    }
    return e;
}

/* The thread counts a target is judged at: its own, or every one run. */
static int
target_counts(const bench_target *tg, const options *o, const int **counts)
{
    *counts = tg->threads ? &tg->threads : o->threads;
    return tg->threads ? 1 : o->n_threads;
}

static void
print_targets(FILE *out, const options *o)
{
    table_reset(5);
    const char *head[5] = {"target (information, not a test)", "free-threaded", "", "GIL", ""};
    for (int c = 0; c < 5; c++) {
        tbl.head[c] = head[c];
        tbl.right[c] = c == 1 || c == 3;
    }
    tbl.gap[2] = tbl.gap[4] = 1;
    for (size_t i = 0; i < n_targets; i++) {
        const bench_target *tg = &targets[i];
        if (!workload_selected(o, tg->workload)) {
            continue;
        }
        const int *counts;
        int n_counts = target_counts(tg, o, &counts);
        for (int k = 0; k < n_counts && tbl.nrows < TBL_ROWS; k++) {
            int t = tbl.nrows++;
            if (tg->threads) {
                snprintf(table_cell(t, 0), TBL_CELL, "%s", tg->text);
            }
            else {
                snprintf(table_cell(t, 0), TBL_CELL, "%s, T=%d", tg->text, counts[k]);
            }
            for (int v = 0; v < N_VARIANTS; v++) {
                target_eval e = eval_target(tg, counts[k], v);
                if (!e.shown) {
                    snprintf(table_cell(t, 1 + 2 * v), TBL_CELL, "-");
                    continue;
                }
                if (e.ratio) {
                    bench_format_ratio(e.value, table_cell(t, 1 + 2 * v), TBL_CELL);
                }
                else {
                    bench_format_value(e.value, table_cell(t, 1 + 2 * v), TBL_CELL);
                }
                snprintf(table_cell(t, 2 + 2 * v), TBL_CELL, "%s", e.status);
            }
        }
    }
    if (tbl.nrows > 0) {
        fputc('\n', out);
        table_print(out);
    }
}

/* =========================================================================
 * The machine
 * ========================================================================= */

typedef struct machine {
    long cores;             /* online CPUs */
    char cpu_model[128];    /* /proc/cpuinfo "model name" */
    char kernel[128];       /* uname -r */
    char os[128];           /* /etc/os-release PRETTY_NAME */
    double load;            /* 1-minute load average at the start */
    char date[32];          /* the start, UTC, ISO 8601 */
} machine;

static machine
machine_probe(void)
{
    machine m = {.cores = sysconf(_SC_NPROCESSORS_ONLN), .cpu_model = "unknown CPU",
                 .kernel = "unknown", .os = "unknown", .load = NAN};
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && colon) {
                snprintf(m.cpu_model, sizeof m.cpu_model, "%s", colon + 1 + (colon[1] == ' '));
                m.cpu_model[strcspn(m.cpu_model, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &m.load) != 1) {
            m.load = NAN;
        }
        fclose(f);
    }
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(m.kernel, sizeof m.kernel, "%s", u.release);
    }
    f = fopen("/etc/os-release", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "PRETTY_NAME=", 12) == 0) {
                char *v = line + 12;
                v[strcspn(v, "\n")] = '\0';
                size_t len = strlen(v);
                if (len >= 2 && (v[0] == '"' || v[0] == '\'') && v[len - 1] == v[0]) {
                    v[len - 1] = '\0';
                    v++;
                }
                snprintf(m.os, sizeof m.os, "%.*s", (int)sizeof m.os - 1, v);
                break;
            }
        }
        fclose(f);
    }
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) {
        strftime(m.date, sizeof m.date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    return m;
}

static void
describe_machine(FILE *out, const machine *m)
{
    fprintf(out, "machine: %ld CPUs (%s), load average %.2f at the start\n", m->cores,
            m->cpu_model, m->load);
}

/* =========================================================================
 * Reference data: anchors.tsv, targets.tsv
 * ========================================================================= */

/* The directory this executable is in ("" if unknown). */
static const char *
exe_dir(void)
{
    static char dir[PATH_MAX];
    if (dir[0] == '\0') {
        ssize_t len = readlink("/proc/self/exe", dir, sizeof dir - 1);
        dir[len > 0 ? len : 0] = '\0';
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
        }
        else {
            dir[0] = '\0';
        }
    }
    return dir;
}

/* Where `name` is: $FTRT_BENCH_DATA_DIR (only there, if set), else beside
 * this executable (the build tree), else bindir/../share/ftrt relative to it
 * (an installed tree, also under a DESTDIR), else the configured datadir.
 * Returns false, with the places looked at in `looked`, if it is nowhere. */
static bool
find_data_file(const char *name, char *path, size_t size, char *looked, size_t looked_size)
{
    static char dirs[3][PATH_MAX + 64];
    int n = 0;
    const char *env = getenv("FTRT_BENCH_DATA_DIR");
    if (env && *env) {
        snprintf(dirs[n++], sizeof dirs[0], "%s", env);
    }
    else {
        if (exe_dir()[0]) {
            snprintf(dirs[n++], sizeof dirs[0], "%s", exe_dir());
            if (FTRT_BENCH_DATADIR_FROM_BINDIR[0]) {
                snprintf(dirs[n++], sizeof dirs[0], "%s/%s", exe_dir(),
                         FTRT_BENCH_DATADIR_FROM_BINDIR);
            }
        }
        snprintf(dirs[n++], sizeof dirs[0], "%s", FTRT_BENCH_DATADIR);
    }
    size_t used = 0;
    looked[0] = '\0';
    for (int i = 0; i < n; i++) {
        int len = snprintf(path, size, "%s/%s", dirs[i], name);
        if (len > 0 && (size_t)len < size && access(path, R_OK) == 0) {
            char real[PATH_MAX];
            if (realpath(path, real) && strlen(real) < size) {
                memcpy(path, real, strlen(real) + 1);   /* no "bin/../share" */
            }
            return true;
        }
        if (used < looked_size) {
            used += (size_t)snprintf(looked + used, looked_size - used, "%s%s", i ? ", " : "",
                                     dirs[i]);
        }
    }
    path[0] = '\0';
    return false;
}

/* The whole file as a string (caller frees), or NULL. */
static char *
read_text_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *text = malloc(cap);
    while (text) {
        len += fread(text + len, 1, cap - 1 - len, f);
        if (len < cap - 1) {
            break;
        }
        cap *= 2;
        char *bigger = realloc(text, cap);
        if (bigger == NULL) {
            free(text);
        }
        text = bigger;
    }
    bool failed = ferror(f);
    fclose(f);
    if (text == NULL || failed) {
        free(text);
        return NULL;
    }
    text[len] = '\0';
    return text;
}

/* Load one data file into items; a missing or unreadable file is a note on
 * stderr and no items. */
static size_t
load_data_file(const char *name, const char *without, char *path, size_t path_size,
               bench_record_parse_fn *parse, void *items, size_t item_size, size_t max)
{
    char looked[3 * PATH_MAX];
    if (!find_data_file(name, path, path_size, looked, sizeof looked)) {
        fprintf(stderr, "ftrt-bench: note: no %s (looked in %s): running without %s\n",
                name, looked, without);
        return 0;
    }
    char *text = read_text_file(path);
    if (text == NULL) {
        fprintf(stderr, "ftrt-bench: note: cannot read %s: %s; running without %s\n", path,
                strerror(errno), without);
        path[0] = '\0';
        return 0;
    }
    size_t n = bench_records_parse(text, path, parse, items, item_size, max, stderr);
    free(text);
    return n;
}

static void
load_reference_data(void)
{
    n_anchors = load_data_file("anchors.tsv", "CPython 3.13 figures", anchors_path,
                               sizeof anchors_path, bench_anchor_parse, anchors,
                               sizeof anchors[0], MAX_ANCHORS);
    n_targets = load_data_file("targets.tsv", "targets", targets_path, sizeof targets_path,
                               bench_target_parse, targets, sizeof targets[0], MAX_TARGETS);
}

/* =========================================================================
 * The catalogue, looked up by name (for the JSON and the chart)
 * ========================================================================= */

static const workload_desc *
find_workload(const char *name)
{
    for (size_t i = 0; i < N_WORKLOADS; i++) {
        if (strcmp(workloads[i].name, name) == 0) {
            return &workloads[i];
        }
    }
    return NULL;
}

static const measure_desc *
find_measure(const workload_desc *w, const char *name)
{
    for (size_t i = 0; w && i < w->n_measures; i++) {
        if (strcmp(w->measures[i].name, name) == 0) {
            return &w->measures[i];
        }
    }
    return NULL;
}

/* =========================================================================
 * --json FILE: schema "ftrt-bench/1"
 * ========================================================================= */

/* What the report knows beyond the rows: the run's own figures. */
typedef struct run_summary {
    const options *o;
    int argc;
    char **argv;
    machine mach;
    double duration_s;
    int worker_runs;
    bench_cpu_usage usage;   /* over the worker runs */
    bool busy_warning;
    int busy_runs, judged_runs;
    double worst_foreign;
    quiet_log quiet;
} run_summary;

static void
json_kv_string(bench_json *j, const char *key, const char *value)
{
    bench_json_key(j, key);
    bench_json_string(j, value);
}

static void
json_kv_number(bench_json *j, const char *key, double value)
{
    bench_json_key(j, key);
    bench_json_number(j, value);
}

static void
json_kv_int(bench_json *j, const char *key, long long value)
{
    bench_json_key(j, key);
    bench_json_int(j, value);
}

static void
json_kv_bool(bench_json *j, const char *key, bool value)
{
    bench_json_key(j, key);
    bench_json_bool(j, value);
}

static const char *const variant_key[N_VARIANTS] = {"ft", "gil"};

static void
json_environment(bench_json *j, const run_summary *rs)
{
    const options *o = rs->o;
    bench_json_key(j, "environment");
    bench_json_object_begin(j);
    json_kv_string(j, "date", rs->mach.date);
    json_kv_int(j, "cores", rs->mach.cores);
    json_kv_string(j, "cpu_model", rs->mach.cpu_model);
    json_kv_string(j, "kernel", rs->mach.kernel);
    json_kv_string(j, "os", rs->mach.os);
    json_kv_number(j, "load_average", rs->mach.load);
    json_kv_string(j, "ftrt_version", FTRT_BENCH_VERSION);
    bench_json_key(j, "worker_version");
    bench_json_object_begin(j);
    for (int v = 0; v < N_VARIANTS; v++) {
        json_kv_string(j, variant_key[v], worker_version[v][0] ? worker_version[v] : NULL);
    }
    bench_json_object_end(j);
    bench_json_key(j, "allocator");
    bench_json_object_begin(j);
    for (int v = 0; v < N_VARIANTS; v++) {
        json_kv_string(j, variant_key[v], allocator[v][0] ? allocator[v] : NULL);
    }
    bench_json_object_end(j);
    bench_json_key(j, "build");
    bench_json_object_begin(j);
    json_kv_string(j, "buildtype", FTRT_BENCH_BUILDTYPE);
    json_kv_string(j, "sanitize", FTRT_BENCH_SANITIZE);
    json_kv_string(j, "compiler", FTRT_BENCH_COMPILER);
    json_kv_string(j, "liburcu", FTRT_BENCH_URCU_VERSION);
    json_kv_string(j, "allocator", FTRT_BENCH_ALLOCATOR_VERSION);
    bench_json_object_end(j);
    bench_json_key(j, "command");
    bench_json_array_begin(j);
    for (int i = 0; i < rs->argc; i++) {
        bench_json_string(j, rs->argv[i]);
    }
    bench_json_array_end(j);
    json_kv_string(j, "mode", o->mode.name);
    json_kv_int(j, "rounds", o->mode.rounds);
    bench_json_key(j, "threads");
    bench_json_array_begin(j);
    for (int i = 0; i < o->n_threads; i++) {
        bench_json_int(j, o->threads[i]);
    }
    bench_json_array_end(j);
    bench_json_key(j, "workloads");
    bench_json_array_begin(j);
    for (size_t i = 0; i < N_WORKLOADS; i++) {
        if (!o->skip[i]) {
            bench_json_string(j, workloads[i].name);
        }
    }
    bench_json_array_end(j);
    bench_json_key(j, "sampling");
    bench_json_object_begin(j);
    json_kv_int(j, "calibrated_samples", o->mode.calibrated_samples);
    json_kv_number(j, "calibrated_ms", o->mode.calibrated_ms);
    json_kv_int(j, "wall_samples", o->mode.wall_samples);
    json_kv_number(j, "wall_ms", o->mode.wall_ms);
    bench_json_object_end(j);
    json_kv_int(j, "worker_runs", rs->worker_runs);
    json_kv_number(j, "duration_s", rs->duration_s);
    bench_json_key(j, "reference_data");
    bench_json_object_begin(j);
    json_kv_string(j, "anchors", anchors_path[0] ? anchors_path : NULL);
    json_kv_string(j, "targets", targets_path[0] ? targets_path : NULL);
    bench_json_object_end(j);
    bench_json_object_end(j);
}

static void
json_busy(bench_json *j, const run_summary *rs)
{
    bench_json_key(j, "busy");
    bench_json_object_begin(j);
    bool valid = rs->usage.valid;
    json_kv_number(j, "other_cpu_share", valid ? rs->usage.foreign : NAN);
    json_kv_number(j, "steal_share", valid ? rs->usage.steal : NAN);
    json_kv_number(j, "own_cpu_share", valid ? rs->usage.own : NAN);
    json_kv_number(j, "warn_above", BENCH_BUSY_WARN_SHARE);
    json_kv_bool(j, "warning", rs->busy_warning);
    json_kv_int(j, "runs_judged", rs->judged_runs);
    json_kv_int(j, "runs_busy", rs->busy_runs);
    json_kv_number(j, "worst_run_other_cpu_share", rs->judged_runs ? rs->worst_foreign : NAN);
    bench_json_key(j, "wait_quiet");
    if (rs->o->wait_quiet_s < 0) {
        bench_json_null(j);
    }
    else {
        bench_json_object_begin(j);
        json_kv_number(j, "limit_s", rs->o->wait_quiet_s);
        json_kv_number(j, "quiet_below", QUIET_SHARE);
        json_kv_int(j, "waits", rs->quiet.waits);
        json_kv_int(j, "timeouts", rs->quiet.timeouts);
        json_kv_number(j, "waited_s", rs->quiet.waited_s);
        json_kv_number(j, "last_other_cpu_share", rs->quiet.last_foreign);
        bench_json_object_end(j);
    }
    bench_json_object_end(j);
}

/* The samples of one row and build, with their statistics. */
static void
json_samples(bench_json *j, const row *r, int v)
{
    bench_json_key(j, "samples");
    bench_json_array_begin(j);
    for (size_t k = 0; k < r->n[v]; k++) {
        bench_json_number(j, r->samples[v][k]);
    }
    bench_json_array_end(j);
    bench_stats st = bench_stats_of(r->samples[v], r->n[v]);
    json_kv_number(j, "median", st.n ? st.median : NAN);
    json_kv_number(j, "min", st.n ? st.min : NAN);
    json_kv_number(j, "max", st.n ? st.max : NAN);
}

static void
json_rows(bench_json *j, bool ratios)
{
    bench_json_key(j, ratios ? "ratios" : "measurements");
    bench_json_array_begin(j);
    for (size_t i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        const char *slash = strchr(r->subject, '/');
        if ((slash != NULL) != ratios) {
            continue;
        }
        const workload_desc *w = find_workload(r->workload);
        const measure_desc *m = find_measure(w, r->measure);
        for (int v = 0; v < N_VARIANTS; v++) {
            if (r->n[v] == 0) {
                continue;
            }
            bench_json_object_begin(j);
            json_kv_string(j, "workload", r->workload);
            json_kv_string(j, "measure", r->measure);
            if (ratios) {
                char subject[48];
                snprintf(subject, sizeof subject, "%.*s", (int)(slash - r->subject), r->subject);
                json_kv_string(j, "subject", subject);
                json_kv_string(j, "baseline", slash + 1);
            }
            else {
                json_kv_string(j, "subject", r->subject);
                json_kv_string(j, "label", w ? subject_label(w, r->subject) : r->subject);
            }
            json_kv_string(j, "unit", r->unit);
            if (!ratios) {
                bench_json_key(j, "higher_is_better");
                if (m && strcmp(r->unit, m->unit) == 0) {
                    bench_json_bool(j, m->higher_is_better);
                }
                else {
                    bench_json_null(j);   /* a parameter (gc's "lists"), not a time */
                }
            }
            json_kv_int(j, "threads", r->threads);
            json_kv_string(j, "build", variant_key[v]);
            json_samples(j, r, v);
            bench_json_object_end(j);
        }
    }
    bench_json_array_end(j);
}

static void
json_histograms(bench_json *j)
{
    bench_json_key(j, "histograms");
    bench_json_array_begin(j);
    for (size_t i = 0; i < n_hists; i++) {
        const hist *h = &hists[i];
        for (int v = 0; v < N_VARIANTS; v++) {
            if (h->runs[v] == 0) {
                continue;
            }
            bench_json_object_begin(j);
            json_kv_string(j, "workload", h->workload);
            json_kv_string(j, "measure", h->measure);
            json_kv_string(j, "subject", h->subject);
            json_kv_int(j, "threads", h->threads);
            json_kv_string(j, "build", variant_key[v]);
            json_kv_string(j, "unit", h->unit);
            json_kv_int(j, "runs", h->runs[v]);
            bench_json_key(j, "lower");
            bench_json_array_begin(j);
            for (size_t k = 0; k < h->n; k++) {
                bench_json_number(j, h->lower[k]);
            }
            bench_json_array_end(j);
            bench_json_key(j, "counts");
            bench_json_array_begin(j);
            for (size_t k = 0; k < h->n; k++) {
                bench_json_number(j, h->count[v][k]);
            }
            bench_json_array_end(j);
            bench_json_object_end(j);
        }
    }
    bench_json_array_end(j);
}

static void
json_anchors(bench_json *j, const options *o)
{
    bench_json_key(j, "anchors");
    bench_json_array_begin(j);
    for (size_t i = 0; i < n_anchors; i++) {
        const bench_anchor *a = &anchors[i];
        if (!workload_selected(o, a->workload)) {
            continue;
        }
        for (int v = 0; v < N_VARIANTS; v++) {
            double value = v == VARIANT_FT ? a->ft : a->gil;
            if (isnan(value)) {
                continue;
            }
            bench_json_object_begin(j);
            json_kv_string(j, "workload", a->workload);
            json_kv_string(j, "measure", a->measure);
            json_kv_string(j, "subject", a->subject);
            json_kv_int(j, "threads", a->threads);
            json_kv_string(j, "build", variant_key[v]);
            json_kv_number(j, "value", value);
            json_kv_string(j, "unit", a->unit);
            json_kv_string(j, "source", a->source);
            bench_json_object_end(j);
        }
    }
    bench_json_array_end(j);
}

static void
json_targets(bench_json *j, const options *o)
{
    static const char *const kind_name[] = {"value", "scaling", "time_ft_over_gil"};
    static const char *const judged_name[] = {"both", "ft", "gil"};
    bench_json_key(j, "targets");
    bench_json_array_begin(j);
    for (size_t i = 0; i < n_targets; i++) {
        const bench_target *tg = &targets[i];
        if (!workload_selected(o, tg->workload)) {
            continue;
        }
        const int *counts;
        int n_counts = target_counts(tg, o, &counts);
        for (int k = 0; k < n_counts; k++) {
            for (int v = 0; v < N_VARIANTS; v++) {
                target_eval e = eval_target(tg, counts[k], v);
                if (!e.shown) {
                    continue;
                }
                bench_json_object_begin(j);
                json_kv_string(j, "text", tg->text);
                json_kv_string(j, "workload", tg->workload);
                json_kv_string(j, "measure", tg->measure);
                json_kv_string(j, "subject", tg->subject);
                json_kv_int(j, "threads", counts[k]);
                json_kv_string(j, "kind", kind_name[tg->kind]);
                json_kv_string(j, "bound", tg->at_most ? "<=" : ">=");
                json_kv_number(j, "limit", tg->limit);
                json_kv_string(j, "judged_build", judged_name[tg->judged]);
                json_kv_string(j, "build", variant_key[v]);
                json_kv_number(j, "value", e.value);
                bench_json_key(j, "met");
                if (e.met < 0) {
                    bench_json_null(j);
                }
                else {
                    bench_json_bool(j, e.met == 1);
                }
                json_kv_string(j, "status", e.status);
                bench_json_object_end(j);
            }
        }
    }
    bench_json_array_end(j);
}

static int
write_json(const char *path, const run_summary *rs)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "ftrt-bench: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    bench_json j;
    bench_json_init(&j, f);
    bench_json_object_begin(&j);
    json_kv_string(&j, "schema", "ftrt-bench/1");
    json_environment(&j, rs);
    json_busy(&j, rs);
    json_rows(&j, false);
    json_rows(&j, true);
    json_histograms(&j);
    json_anchors(&j, rs->o);
    json_targets(&j, rs->o);
    bench_json_object_end(&j);
    int rc = bench_json_finish(&j);
    if (fclose(f) != 0) {
        rc = -1;
    }
    if (rc != 0) {
        fprintf(stderr, "ftrt-bench: writing %s failed\n", path);
        return 1;
    }
    return 0;
}

/* =========================================================================
 * --chart FILE.svg (bench/chart.h)
 * ========================================================================= */

#define MAX_PANELS 16

/* The stop-the-world histograms drawn: stw busy at these thread counts. */
static const int chart_stw_threads[] = {3, 16};

static int
compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int
write_chart(const char *path, const run_summary *rs)
{
    const options *o = rs->o;
    static bench_chart_panel panels[MAX_PANELS];
    static double xs[MAX_PANELS][N_VARIANTS][MAX_THREAD_COUNTS];
    static double ys[MAX_PANELS][N_VARIANTS][MAX_THREAD_COUNTS];
    static double lo[MAX_PANELS][N_VARIANTS][MAX_THREAD_COUNTS];
    static double hi[MAX_PANELS][N_VARIANTS][MAX_THREAD_COUNTS];
    static char titles[MAX_PANELS][128];
    size_t n_panels = 0;

    int counts[MAX_THREAD_COUNTS];
    memcpy(counts, o->threads, sizeof counts[0] * (size_t)o->n_threads);
    qsort(counts, (size_t)o->n_threads, sizeof counts[0], compare_ints);

    /* one panel per thread-scaling measure: its first subject that is not
     * the baseline, speed-up = median at T over median at T=1 (inverted
     * for lower-is-better units), band = that sample's min and max */
    for (size_t wi = 0; wi < N_WORKLOADS && n_panels < MAX_PANELS; wi++) {
        const workload_desc *w = &workloads[wi];
        if (o->skip[wi]) {
            continue;
        }
        for (size_t mi = 0; mi < w->n_measures && n_panels < MAX_PANELS; mi++) {
            const measure_desc *m = &w->measures[mi];
            if (!m->per_thread_count || !m->show_scaling) {
                continue;
            }
            const subject_desc *sd = NULL;
            for (size_t si = 0; si < w->n_subjects && !sd; si++) {
                if (strcmp(w->subjects[si].name, w->baseline) != 0
                    && !w->subjects[si].reference_in) {
                    sd = &w->subjects[si];
                }
            }
            if (sd == NULL) {
                continue;
            }
            bench_chart_panel *p = &panels[n_panels];
            memset(p, 0, sizeof *p);
            for (int v = 0; v < N_VARIANTS; v++) {
                double base = row_median(w->name, m->name, sd->name, 1, v);
                if (!(base > 0)) {
                    continue;
                }
                size_t n = 0;
                for (int k = 0; k < o->n_threads; k++) {
                    if (k > 0 && counts[k] == counts[k - 1]) {
                        continue;
                    }
                    const row *r = find_row(w->name, m->name, sd->name, counts[k]);
                    if (r == NULL || r->n[v] == 0) {
                        continue;
                    }
                    bench_stats st = bench_stats_of(r->samples[v], r->n[v]);
                    if (st.n == 0 || !(st.min > 0)) {
                        continue;
                    }
                    xs[n_panels][v][n] = counts[k];
                    if (m->higher_is_better) {
                        ys[n_panels][v][n] = st.median / base;
                        lo[n_panels][v][n] = st.min / base;
                        hi[n_panels][v][n] = st.max / base;
                    }
                    else {
                        ys[n_panels][v][n] = base / st.median;
                        lo[n_panels][v][n] = base / st.max;
                        hi[n_panels][v][n] = base / st.min;
                    }
                    n++;
                }
                if (n < 2) {
                    continue;
                }
                p->curves[p->n_curves++] = (bench_chart_curve){
                    .build = v == VARIANT_FT ? BENCH_CHART_FT : BENCH_CHART_GIL,
                    .n = n,
                    .threads = xs[n_panels][v],
                    .value = ys[n_panels][v],
                    .lo = lo[n_panels][v],
                    .hi = hi[n_panels][v],
                };
            }
            if (p->n_curves == 0) {
                continue;
            }
            snprintf(titles[n_panels], sizeof titles[0], "%s: %s", w->name, sd->label);
            p->title = titles[n_panels];
            p->cores = (double)rs->mach.cores;
            n_panels++;
        }
    }

    /* the stop-the-world pauses: time to stop, busy threads, free-threaded
     * (the GIL build has no stops); the buckets from the first to the last
     * non-empty one, and one more to close the last */
    static bench_chart_hist charts_h[ARRAY_LEN(chart_stw_threads)];
    static char hist_titles[ARRAY_LEN(chart_stw_threads)][128];
    size_t n_h = 0;
    for (size_t i = 0; i < ARRAY_LEN(chart_stw_threads); i++) {
        const hist *h = find_hist("stw", "busy", "to_stop", chart_stw_threads[i]);
        if (h == NULL) {
            continue;
        }
        size_t first = h->n, last = 0;
        double stops = 0;
        for (size_t k = 0; k < h->n; k++) {
            if (h->count[VARIANT_FT][k] > 0) {
                first = k < first ? k : first;
                last = k;
                stops += h->count[VARIANT_FT][k];
            }
        }
        if (first == h->n) {
            continue;
        }
        if (last + 1 < h->n) {
            last++;
        }
        snprintf(hist_titles[n_h], sizeof hist_titles[0],
                 "time to stop the world, %d busy threads (free-threaded, %.0f stops)",
                 h->threads, stops);
        charts_h[n_h] = (bench_chart_hist){
            .title = hist_titles[n_h],
            .n = last - first + 1,
            .lower_ns = &h->lower[first],
            .count = &h->count[VARIANT_FT][first],
        };
        n_h++;
    }

    char subtitle[512];
    snprintf(subtitle, sizeof subtitle, "%ld CPUs (%s), %s, %s; %s run, %d round%s; "
             "other processes used %.0f%% of the CPU", rs->mach.cores, rs->mach.cpu_model,
             rs->mach.kernel, rs->mach.date, o->mode.name, o->mode.rounds,
             o->mode.rounds == 1 ? "" : "s",
             rs->usage.valid ? 100 * rs->usage.foreign : NAN);
    bench_chart chart = {
        .title = "ftrt-bench: free-threaded vs GIL",
        .subtitle = subtitle,
        .n_panels = n_panels,
        .panels = panels,
        .n_hists = n_h,
        .hists = charts_h,
    };
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "ftrt-bench: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    int rc = bench_chart_svg(f, &chart);
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "ftrt-bench: writing %s failed\n", path);
        return 1;
    }
    return 0;
}

/* =========================================================================
 * main
 * ========================================================================= */

static bool
zero_in_gil_build(const workload_desc *w, const measure_desc *m)
{
    for (size_t z = 0; z < ARRAY_LEN(zero_in_gil); z++) {
        if (strcmp(zero_in_gil[z].workload, w->name) == 0 &&
            strcmp(zero_in_gil[z].measure, m->name) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether a round runs this job's worker of build v. */
static bool
job_runs(const options *o, const job *jb, int v)
{
    return v != VARIANT_GIL || o->smoke || !zero_in_gil_build(jb->w, jb->m);
}

/* --smoke: every expected measurement has a positive sample from both builds
 * (a measure that chooses its own thread counts: at each count it printed;
 * zero_in_gil: the GIL build's figures are 0 and it has no ratios). */
static int
smoke_check(FILE *out, const job *jobs, size_t n_jobs)
{
    int checked = 0, bad = 0;
    for (size_t j = 0; j < n_jobs; j++) {
        const workload_desc *w = jobs[j].w;
        const measure_desc *m = jobs[j].m;
        bool gil_zero = zero_in_gil_build(w, m);
        for (size_t s = 0; s < 2 * w->n_subjects; s++) {
            char subject[64];
            const subject_desc *sd = &w->subjects[s % w->n_subjects];
            const char *name = sd->name;
            if (sd->reference_in && (s >= w->n_subjects ||
                                     strcmp(sd->reference_in, m->name) != 0)) {
                continue;
            }
            if (s < w->n_subjects) {
                snprintf(subject, sizeof subject, "%s", name);
            }
            else if (strcmp(name, w->baseline) != 0) {
                snprintf(subject, sizeof subject, "%s/%s", name, w->baseline);
            }
            else {
                continue;
            }
            bool ratio = s >= w->n_subjects;
            int found = 0;
            for (size_t i = 0; i <= n_rows; i++) {
                const row *r = NULL;
                if (i < n_rows) {
                    r = &rows[i];
                    if (strcmp(r->workload, w->name) != 0 || strcmp(r->measure, m->name) != 0
                        || strcmp(r->subject, subject) != 0
                        || (m->per_thread_count && r->threads != jobs[j].threads)) {
                        continue;
                    }
                    found++;
                }
                else if (found > 0) {
                    break;
                }
                int threads = r ? r->threads : jobs[j].threads;
                for (int v = 0; v < N_VARIANTS; v++) {
                    bool zero = gil_zero && v == VARIANT_GIL;
                    if (zero && ratio) {
                        continue;
                    }
                    checked++;
                    bool ok = r && r->n[v] > 0;
                    for (size_t k = 0; ok && k < r->n[v]; k++) {
                        ok = zero ? r->samples[v][k] == 0
                                  : isfinite(r->samples[v][k]) && r->samples[v][k] > 0;
                    }
                    if (!ok) {
                        bad++;
                        fprintf(out, "smoke: %s %s %s T=%d (%s): no %s result\n",
                                w->name, m->name, subject, threads, variant_label[v],
                                zero ? "zero" : "positive");
                    }
                }
            }
        }
    }
    fprintf(out, "smoke: %d of %d measurements produced positive numbers\n",
            checked - bad, checked);
    return bad ? 1 : 0;
}

int
main(int argc, char **argv)
{
    options o = parse_options(argc, argv);
    find_workers();
    load_reference_data();

    job jobs[MAX_JOBS];
    size_t n_jobs = plan_jobs(&o, jobs);
    size_t per_round = n_jobs * N_VARIANTS;   /* slots; skipped ones cost 0 */
    size_t runs_per_round = 0;
    for (size_t k = 0; k < per_round; k++) {
        runs_per_round += job_runs(&o, &jobs[k / N_VARIANTS], (int)(k % N_VARIANTS));
    }

    run_summary rs = {.o = &o, .argc = argc, .argv = argv, .mach = machine_probe(),
                      .worker_runs = (int)(runs_per_round * (size_t)o.mode.rounds),
                      .quiet = {.last_foreign = NAN}};
    printf("ftrt-bench %s, %s run: %d round%s of FT and GIL workers alternating, threads",
           FTRT_BENCH_VERSION, o.mode.name, o.mode.rounds, o.mode.rounds == 1 ? "" : "s");
    for (int i = 0; i < o.n_threads; i++) {
        printf("%s%d", i ? "," : " ", o.threads[i]);
    }
    printf("\n");
    describe_machine(stdout, &rs.mach);
    printf("reference data: %s (%zu CPython 3.13 figures), %s (%zu targets)\n",
           anchors_path[0] ? anchors_path : "no anchors.tsv", n_anchors,
           targets_path[0] ? targets_path : "no targets.tsv", n_targets);
    fflush(stdout);

    /* per slot of a round (job, build): how long it took last, its kind */
    int64_t *cost = malloc(sizeof *cost * (per_round ? per_round : 1));
    int *kind = malloc(sizeof *kind * (per_round ? per_round : 1));
    if (cost == NULL || kind == NULL) {
        die("out of memory");
    }
    for (size_t k = 0; k < per_round; k++) {
        const job *jb = &jobs[k / N_VARIANTS];
        cost[k] = job_runs(&o, jb, (int)(k % N_VARIANTS)) ? -1 : 0;
        /* the kind of measurement: workload and measure (thread counts of
         * one measure cost alike: fixed wall time) */
        kind[k] = (int)((jb->w - workloads) * 16 + (jb->m - jb->w->measures));
    }

    /* the busy-machine figures add up the worker runs only (not the waits) */
    bench_cpu_snapshot run_zero = {.valid = true}, run_sum = {.valid = true};
    int64_t start = bench_now_ns();
    size_t done = 0, run_no = 0;   /* slots passed, worker runs started */
    for (int round = 0; round < o.mode.rounds; round++) {
        if (o.wait_quiet_s >= 0) {
            char when[32];
            snprintf(when, sizeof when, "before round %d", round + 1);
            wait_quiet(o.wait_quiet_s, when, &rs.quiet);
        }
        for (size_t j = 0; j < n_jobs; j++) {
            const job *jb = &jobs[j];
            bool wall = jb->m->sampling == SAMPLE_FIXED_WALL;
            char threads_arg[32], samples_arg[32], ms_arg[32];
            snprintf(threads_arg, sizeof threads_arg, "threads=%d", jb->threads);
            snprintf(samples_arg, sizeof samples_arg, "samples=%d",
                     wall ? o.mode.wall_samples : o.mode.calibrated_samples);
            snprintf(ms_arg, sizeof ms_arg, "sample_ms=%g",
                     wall ? o.mode.wall_ms : o.mode.calibrated_ms);
            char *args[] = {(char *)jb->w->name, (char *)jb->m->name, threads_arg,
                            samples_arg, ms_arg, NULL};
            for (int v = 0; v < N_VARIANTS; v++, done++) {
                if (!job_runs(&o, jb, v)) {
                    continue;
                }
                char what[128];
                snprintf(what, sizeof what, "round %d: %s %s T=%d, %s", round + 1,
                         jb->w->name, jb->m->name, jb->threads, variant_label[v]);
                progress(run_no++, (size_t)rs.worker_runs, start,
                         bench_eta_ns(cost, kind, per_round, o.mode.rounds, done), what);
                int64_t t0 = bench_now_ns();
                bench_cpu_snapshot before = bench_cpu_snapshot_take();
                char *text = run_worker(v, args);
                bench_cpu_snapshot after = bench_cpu_snapshot_take();
                cost[done % per_round] = bench_now_ns() - t0;
                bench_cpu_usage u = bench_cpu_usage_between(&before, &after, 0);
                if (before.valid && after.valid) {
                    run_sum.busy_ticks += after.busy_ticks - before.busy_ticks;
                    run_sum.total_ticks += after.total_ticks - before.total_ticks;
                    run_sum.steal_ticks += after.steal_ticks - before.steal_ticks;
                    run_sum.own_cpu_ns += after.own_cpu_ns - before.own_cpu_ns;
                }
                else {
                    run_sum.valid = false;
                }
                /* a short run spans few clock ticks: judge only runs of
                 * 50 ms or more, and only a clear excess */
                if (u.valid && after.total_ticks - before.total_ticks >= 10) {
                    rs.judged_runs++;
                    rs.worst_foreign = u.foreign > rs.worst_foreign ? u.foreign
                                                                    : rs.worst_foreign;
                    rs.busy_runs += u.foreign > 0.25;
                }
                int results = absorb_output(v, text);
                free(text);
                if (results == 0) {
                    die("%s %s %s printed no result", variant_worker[v], jb->w->name,
                        jb->m->name);
                }
            }
        }
    }
    free(cost);
    free(kind);
    rs.duration_s = (double)(bench_now_ns() - start) / 1e9;
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r\033[K");
    }
    fprintf(stderr, "ftrt-bench: %zu worker runs in %.1f s\n", run_no, rs.duration_s);

    printf("allocator: %s (FT), %s (GIL); figures: median [min-max] of all samples "
           "of all rounds\n", allocator[VARIANT_FT], allocator[VARIANT_GIL]);
    for (size_t wi = 0; wi < N_WORKLOADS; wi++) {
        const workload_desc *w = &workloads[wi];
        if (o.skip[wi]) {
            continue;
        }
        for (size_t mi = 0; mi < w->n_measures; mi++) {
            print_measure_table(stdout, w, &w->measures[mi]);
        }
    }
    printf("\nFT/GIL: ratio of the medians.  vs <baseline>: the subject over the table's "
           "baseline row, the median\nof per-sample ratios taken in one worker.  "
           "vs T=1: the median at T over the median at T=1.\n"
           "CPython 3.13: upstream 3.13.15 on this machine kind (cpython-anchor.md).\n");
    print_targets(stdout, &o);

    rs.usage = bench_cpu_usage_between(&run_zero, &run_sum, 0);
    rs.busy_warning = (rs.usage.valid && rs.usage.foreign > BENCH_BUSY_WARN_SHARE)
                      || rs.busy_runs > 0;
    printf("\n");
    if (rs.usage.valid) {
        printf("machine: other processes used %.0f%% of the CPU time during the run "
               "(hypervisor steal %.0f%%); this run used %.0f%%\n",
               100 * rs.usage.foreign, 100 * rs.usage.steal, 100 * rs.usage.own);
        if (rs.busy_warning) {
            printf("warning: the machine was busy (other processes took %.0f%% of the "
                   "CPU time", 100 * rs.usage.foreign);
            if (rs.judged_runs > 0) {
                printf("; %d of %d worker runs long enough to judge saw more than 25%%, "
                       "worst %.0f%%", rs.busy_runs, rs.judged_runs, 100 * rs.worst_foreign);
            }
            printf("): the figures may be off, run again on a quiet machine%s\n",
                   o.wait_quiet_s < 0 ? " (--wait-quiet waits for one)" : "");
        }
    }
    else {
        printf("machine: /proc/stat unreadable, cannot tell whether the machine was busy\n");
    }
    if (o.wait_quiet_s >= 0 && rs.quiet.waits > 0) {
        printf("machine: waited %.0f s for a quiet machine before %d of %d rounds%s\n",
               rs.quiet.waited_s, rs.quiet.waits, o.mode.rounds,
               rs.quiet.timeouts ? ", and gave up waiting at least once" : "");
    }

    int rc = 0;
    if (o.smoke) {
        rc = smoke_check(stdout, jobs, n_jobs);
    }
    if (o.json_path) {
        if (write_json(o.json_path, &rs) != 0) {
            rc = 1;
        }
        else {
            printf("json: %s\n", o.json_path);
        }
    }
    if (o.chart_path) {
        if (write_chart(o.chart_path, &rs) != 0) {
            rc = 1;
        }
        else {
            printf("chart: %s\n", o.chart_path);
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ftrt-bench: writing the report failed\n");
        rc = 1;
    }
    return rc;
}
