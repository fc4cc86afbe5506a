/* ftrt-bench: measures ftrt's free-threaded build against its GIL build.
 *
 *     ftrt-bench --quick              about 2.5 minutes (.ci/bench, the README's command)
 *     ftrt-bench [--full]             the full run (about six minutes)
 *     ftrt-bench --smoke              tiny sizes, one round: the CI test
 *     ftrt-bench --rounds 7 --threads 1,2,4 --workload mutex
 *     ftrt-bench --workload attach,gilstate,tstate,tss,churn   the thread states
 *     ftrt-bench --workload refcount,refshared,critsec,alloc    the object core
 *     ftrt-bench --workload listbuild,listshared,dictmix        the containers
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
 *                       one exists (cpython-anchor.md)
 *
 * then whether this run met the targets set in the issues (information, not
 * a test), and how much CPU other processes took during the run: a warning
 * line means the figures are suspect and the run worth repeating.
 *
 * Workers are looked up in $FTRT_BENCH_WORKER_DIR, else next to this
 * executable (the build tree), else in the install's libexec directory.
 * Progress goes to stderr, the report to stdout.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#ifndef FTRT_BENCH_LIBEXECDIR
#  define FTRT_BENCH_LIBEXECDIR "/usr/local/libexec/ftrt"
#endif
#ifndef FTRT_BENCH_VERSION
#  define FTRT_BENCH_VERSION "?"
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
};
#define N_WORKLOADS ARRAY_LEN(workloads)

/* Reference figures: CPython 3.13.15, 2 vCPU, cpython-anchor.md.  Upstream's
 * free-threaded and default builds on this project's kind of machine, the
 * same operations through the same C API.  The contended rows are CPython's
 * "raw" case (threads without a thread state); its loop body is not
 * documented, so compare their scale, not the last digit. */
typedef struct anchor {
    const char *workload, *measure, *subject;
    int threads;
    double ft, gil;
} anchor;

static const anchor anchors[] = {
    {"mutex", "uncontended", "pymutex", 1, 5.42, 5.46},
    {"mutex", "contended", "pymutex", 2, 1.79e8, 8.97e7},   /* threads without tstate */
    {"mutex", "contended", "pymutex", 4, 1.71e8, 4.96e7},
    {"attach", "roundtrip", "allow_threads", 1, 18.4, 74.3},             /* f */
    {"gilstate", "ensure_release", "nested", 1, 11.5, 10.1},            /* e */
    {"gilstate", "ensure_release", "detached", 1, 29.8, 64.3},
    {"gilstate", "ensure_release", "fresh", 1, 2824, 419},
    {"tstate", "create_destroy", "new_clear_delete", 1, 2499, 396},     /* g */
    {"tstate", "create_destroy", "new_attach_delete", 1, 2725, 475},
    {"tss", "set_get", "tss", 1, 8.59, 9.40},                           /* h */
    {"critsec", "uncontended", "one", 1, 6.83, 0.41},                  /* c */
    {"critsec", "uncontended", "two", 1, 12.0, 0.45},
    {"refcount", "incdec", "owner", 1, 1.45, 6.71},                    /* d */
    {"refcount", "incdec", "nonowner", 1, 5.35, 6.75},
    /* 2 threads on one object: 33.1 ns per op in total (FT), 6.74 (GIL) */
    {"refshared", "threads", "shared", 2, 3.02e7, 1.48e8},
};
/* Issue #5's CPython figures are ratios (speed-up 1.79x at T=2 and 1.46x at
 * T=4 for private lists, free-threaded/GIL time 2.32x for the shared list):
 * they are in the targets' text, not in the tables. */

/* The issues' targets, checked against this run's medians. */
typedef struct target {
    const char *workload, *measure, *subject;   /* subject "a/b": a ratio */
    int threads;                                /* 0: every thread count run */
    bool at_most;                               /* value <= limit, else >= */
    double limit;
    const char *text;
    bool ft_only;   /* a free-threaded target (a CPython 3.13t figure): the GIL
                       build's value is shown, not judged */
    enum {
        TARGET_VALUE = 0,     /* the subject's median */
        TARGET_SCALING,       /* its median at T over its median at T=1 (speed-up) */
        TARGET_TIME_FT_GIL,   /* free-threaded over GIL time: GIL ops/s over FT
                                 ops/s, one figure shown in the FT column */
    } kind;
} target;

static const target targets[] = {
    {"mutex", "uncontended", "pymutex", 1, true, 5.5,
     "PyMutex uncontended <= 5.5 ns/op", false, TARGET_VALUE},
    {"mutex", "uncontended", "pymutex/pthread", 1, true, 0.6,
     "PyMutex/pthread uncontended <= 0.60x", false, TARGET_VALUE},
    {"mutex", "contended", "pymutex/pthread", 0, false, 1.0,
     "PyMutex/pthread contended ops/s >= 1.00x", false, TARGET_VALUE},
    /* thread states: at most CPython 3.13t's figure (free-threaded build),
     * and at most 700 ns to create and destroy a state (both builds) */
    {"attach", "roundtrip", "allow_threads", 1, true, 18.4,
     "detach+attach <= 18.4 ns (3.13t)", true, TARGET_VALUE},
    {"gilstate", "ensure_release", "nested", 1, true, 11.5,
     "GILState nested <= 11.5 ns (3.13t)", true, TARGET_VALUE},
    {"gilstate", "ensure_release", "detached", 1, true, 29.8,
     "GILState own detached state <= 29.8 ns (3.13t)", true, TARGET_VALUE},
    {"gilstate", "ensure_release", "fresh", 1, true, 2824,
     "GILState fresh thread <= 2824 ns (3.13t)", true, TARGET_VALUE},
    {"gilstate", "ensure_release", "fresh", 1, true, 700,
     "GILState fresh thread <= 700 ns", false, TARGET_VALUE},
    {"tstate", "create_destroy", "new_clear_delete", 1, true, 2499,
     "New+Clear+Delete <= 2499 ns (3.13t)", true, TARGET_VALUE},
    {"tstate", "create_destroy", "new_clear_delete", 1, true, 700,
     "New+Clear+Delete <= 700 ns", false, TARGET_VALUE},
    {"tss", "set_get", "tss", 1, true, 8.59,
     "PyThread_tss_set+get <= 8.59 ns (3.13t)", true, TARGET_VALUE},
    /* the object core: at most CPython 3.13t's times, at least its throughput */
    {"refcount", "incdec", "owner", 1, true, 1.45,
     "INCREF+DECREF owner <= 1.45 ns (3.13t)", true, TARGET_VALUE},
    {"refcount", "incdec", "nonowner", 1, true, 5.35,
     "INCREF+DECREF non-owner <= 5.35 ns (3.13t)", true, TARGET_VALUE},
    {"refshared", "threads", "shared", 2, false, 3.0e7,
     "2 threads, one object >= 3.0e7 ops/s (3.13t)", true, TARGET_VALUE},
    {"critsec", "uncontended", "one", 1, true, 6.83,
     "critical section, one object <= 6.83 ns (3.13t)", true, TARGET_VALUE},
    {"critsec", "uncontended", "two", 1, true, 12.0,
     "critical section, two objects <= 12.0 ns (3.13t)", true, TARGET_VALUE},
    /* the containers (issue #5): multi-core scaling on this 2-core machine */
    {"listbuild", "threads", "private", 2, false, 1.9,
     "private lists speed-up at T=2 >= 1.9x (FT)", true, TARGET_SCALING},
    {"listbuild", "threads", "private", 4, false, 1.8,
     "private lists speed-up at T=4 >= 1.8x (FT)", true, TARGET_SCALING},
    {"listbuild", "threads", "private", 2, true, 1.05,
     "private lists speed-up at T=2 <= 1.05x (GIL)", false, TARGET_SCALING},
    {"listshared", "threads", "shared", 1, true, 1.2,
     "shared list, FT/GIL time at T=1 <= 1.2x", false, TARGET_TIME_FT_GIL},
};

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
} run_mode;

/* Worker runs per round (threads 1,2,4,8): 20 per build, mutex 5, the
 * thread-state workloads 8, the object core 7.  The wall samples dominate:
 * (3 locks + 3 churn + 2 refcount subjects) x 4 thread counts x 2 builds x
 * samples x ms per round. */
static const run_mode mode_full = {"full", 5, 7, 20, 3, 200};    /* ~6 min */
static const run_mode mode_quick = {"quick", 3, 5, 10, 3, 100};  /* ~2.5 min */
static const run_mode mode_smoke = {"smoke", 1, 1, 1, 1, 5};     /* ~1 s */

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
} options;

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
        "  --full        the default: 5 rounds, 200 ms multi-thread samples (~6 min)\n"
        "  --quick       3 rounds, shorter samples (about 2.5 minutes)\n"
        "  --smoke       tiny sizes and one round; checks that every measurement\n"
        "                produced a positive number (for CI; no timing asserted)\n"
        "  --rounds N    FT,GIL worker pairs per measurement (default 5, quick 3)\n"
        "  --threads L   thread counts for multi-thread measures (default 1,2,4,8)\n"
        "  --workload L  run only these workloads (comma-separated):");
    for (size_t i = 0; i < N_WORKLOADS; i++) {
        fprintf(f, " %s", workloads[i].name);
    }
    fprintf(f, "\n");
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
    options o = {.mode = mode_full, .threads = {1, 2, 4, 8}, .n_threads = 4};
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
    return o;
}

/* =========================================================================
 * Collected samples: one row per (workload, measure, subject, threads)
 * ========================================================================= */

#define MAX_ROWS 256

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

/* =========================================================================
 * Running the workers
 * ========================================================================= */

static char worker_dir[PATH_MAX];
static char allocator[N_VARIANTS][64];

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

/* Progress on stderr: rewritten in place on a terminal, a line each in logs. */
static void
progress(int done, int total, int64_t start_ns, const char *what)
{
    double elapsed = (double)(bench_now_ns() - start_ns) / 1e9;
    double eta = done > 0 ? elapsed / done * (total - done) : 0;
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r\033[K[%d/%d, %.0f s, about %.0f s left] %s", done + 1, total,
                elapsed, eta, what);
    }
    else {
        fprintf(stderr, "[%d/%d, %.0f s] %s\n", done + 1, total, elapsed, what);
    }
}

/* =========================================================================
 * Tables
 * ========================================================================= */

#define TBL_COLS 14
#define TBL_ROWS 64
#define TBL_CELL 48

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

static const anchor *
find_anchor(const char *workload, const char *measure, const char *subject, int threads)
{
    for (size_t i = 0; i < ARRAY_LEN(anchors); i++) {
        const anchor *a = &anchors[i];
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
        bench_format_ratio(ft / gil, table_cell(t, COL_RATIO), TBL_CELL);
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
        const anchor *a = find_anchor(r->workload, r->measure, r->subject, r->threads);
        if (a) {
            bench_format_value(a->ft, table_cell(t, COL_CPY_FT), TBL_CELL);
            bench_format_value(a->gil, table_cell(t, COL_CPY_GIL), TBL_CELL);
        }
    }
    fprintf(out, "\n%s: %s, %s (%s is better)\n", w->name, m->title, m->unit,
            m->higher_is_better ? "higher" : "lower");
    table_print(out);
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
    for (size_t i = 0; i < ARRAY_LEN(targets); i++) {
        const target *tg = &targets[i];
        if (!workload_selected(o, tg->workload)) {
            continue;
        }
        const int *counts = tg->threads ? &tg->threads : o->threads;
        int n_counts = tg->threads ? 1 : o->n_threads;
        for (int k = 0; k < n_counts && tbl.nrows < TBL_ROWS; k++) {
            int t = tbl.nrows++;
            if (tg->threads) {
                snprintf(table_cell(t, 0), TBL_CELL, "%s", tg->text);
            }
            else {
                snprintf(table_cell(t, 0), TBL_CELL, "%s, T=%d", tg->text, counts[k]);
            }
            for (int v = 0; v < N_VARIANTS; v++) {
                double x = row_median(tg->workload, tg->measure, tg->subject, counts[k], v);
                bool ratio = strchr(tg->subject, '/') != NULL || tg->kind != TARGET_VALUE;
                if (tg->kind == TARGET_SCALING) {
                    x /= row_median(tg->workload, tg->measure, tg->subject, 1, v);
                }
                else if (tg->kind == TARGET_TIME_FT_GIL) {
                    if (v != VARIANT_FT) {
                        snprintf(table_cell(t, 1 + 2 * v), TBL_CELL, "-");
                        continue;
                    }
                    x = row_median(tg->workload, tg->measure, tg->subject, counts[k],
                                   VARIANT_GIL) / x;
                }
                /* a GIL-build scaling target is judged on the GIL build only */
                if (tg->kind == TARGET_SCALING && !tg->ft_only && strstr(tg->text, "(GIL)")
                    && v == VARIANT_FT) {
                    bench_format_ratio(x, table_cell(t, 1 + 2 * v), TBL_CELL);
                    snprintf(table_cell(t, 2 + 2 * v), TBL_CELL, "(GIL target)");
                    continue;
                }
                bool met = tg->at_most ? x <= tg->limit : x >= tg->limit;
                if (ratio) {
                    bench_format_ratio(x, table_cell(t, 1 + 2 * v), TBL_CELL);
                }
                else {
                    bench_format_value(x, table_cell(t, 1 + 2 * v), TBL_CELL);
                }
                snprintf(table_cell(t, 2 + 2 * v), TBL_CELL, "%s",
                         isnan(x) ? "not run"
                         : tg->ft_only && v != VARIANT_FT ? "(FT target)"
                         : met ? "met" : "MISSED");
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

static void
describe_machine(FILE *out)
{
    char model[128] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && colon) {
                snprintf(model, sizeof model, "%s", colon + 2);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    double load = NAN;
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1) {
            load = NAN;
        }
        fclose(f);
    }
    fprintf(out, "machine: %ld CPUs (%s), load average %.2f at the start\n",
            sysconf(_SC_NPROCESSORS_ONLN), model, load);
}

/* =========================================================================
 * main
 * ========================================================================= */

/* --smoke: every expected measurement has a positive sample from both builds. */
static int
smoke_check(FILE *out, const job *jobs, size_t n_jobs)
{
    int checked = 0, bad = 0;
    for (size_t j = 0; j < n_jobs; j++) {
        const workload_desc *w = jobs[j].w;
        for (size_t s = 0; s < 2 * w->n_subjects; s++) {
            char subject[64];
            const subject_desc *sd = &w->subjects[s % w->n_subjects];
            const char *name = sd->name;
            if (sd->reference_in && (s >= w->n_subjects ||
                                     strcmp(sd->reference_in, jobs[j].m->name) != 0)) {
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
            const row *r = find_row(w->name, jobs[j].m->name, subject, jobs[j].threads);
            for (int v = 0; v < N_VARIANTS; v++) {
                checked++;
                bool ok = r && r->n[v] > 0;
                for (size_t i = 0; ok && i < r->n[v]; i++) {
                    ok = isfinite(r->samples[v][i]) && r->samples[v][i] > 0;
                }
                if (!ok) {
                    bad++;
                    fprintf(out, "smoke: %s %s %s T=%d (%s): no positive result\n",
                            w->name, jobs[j].m->name, subject, jobs[j].threads,
                            variant_label[v]);
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

    job jobs[MAX_JOBS];
    size_t n_jobs = plan_jobs(&o, jobs);
    int total = (int)n_jobs * o.mode.rounds * N_VARIANTS;

    printf("ftrt-bench %s, %s run: %d round%s of FT and GIL workers alternating, threads",
           FTRT_BENCH_VERSION, o.mode.name, o.mode.rounds, o.mode.rounds == 1 ? "" : "s");
    for (int i = 0; i < o.n_threads; i++) {
        printf("%s%d", i ? "," : " ", o.threads[i]);
    }
    printf("\n");
    describe_machine(stdout);
    fflush(stdout);

    bench_cpu_snapshot run_before = bench_cpu_snapshot_take();
    int busy_runs = 0, judged_runs = 0;
    double worst_foreign = 0.0;
    int64_t start = bench_now_ns();
    int done = 0;
    for (int round = 0; round < o.mode.rounds; round++) {
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
                char what[128];
                snprintf(what, sizeof what, "round %d: %s %s T=%d, %s", round + 1,
                         jb->w->name, jb->m->name, jb->threads, variant_label[v]);
                progress(done, total, start, what);
                bench_cpu_snapshot before = bench_cpu_snapshot_take();
                char *text = run_worker(v, args);
                bench_cpu_snapshot after = bench_cpu_snapshot_take();
                bench_cpu_usage u = bench_cpu_usage_between(&before, &after, 0);
                /* a short run spans few clock ticks: judge only runs of
                 * 50 ms or more, and only a clear excess */
                if (u.valid && after.total_ticks - before.total_ticks >= 10) {
                    judged_runs++;
                    worst_foreign = u.foreign > worst_foreign ? u.foreign : worst_foreign;
                    busy_runs += u.foreign > 0.25;
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
    bench_cpu_snapshot run_after = bench_cpu_snapshot_take();
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r\033[K");
    }
    fprintf(stderr, "ftrt-bench: %d worker runs in %.1f s\n", total,
            (double)(bench_now_ns() - start) / 1e9);

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

    bench_cpu_usage u = bench_cpu_usage_between(&run_before, &run_after, 0);
    printf("\n");
    if (u.valid) {
        printf("machine: other processes used %.0f%% of the CPU time during the run "
               "(hypervisor steal %.0f%%); this run used %.0f%%\n",
               100 * u.foreign, 100 * u.steal, 100 * u.own);
        if (u.foreign > BENCH_BUSY_WARN_SHARE || busy_runs > 0) {
            printf("warning: the machine was busy (other processes took %.0f%% of the "
                   "CPU time", 100 * u.foreign);
            if (judged_runs > 0) {
                printf("; %d of %d worker runs long enough to judge saw more than 25%%, "
                       "worst %.0f%%", busy_runs, judged_runs, 100 * worst_foreign);
            }
            printf("): the figures may be off, run again on a quiet machine\n");
        }
    }
    else {
        printf("machine: /proc/stat unreadable, cannot tell whether the machine was busy\n");
    }

    int rc = 0;
    if (o.smoke) {
        rc = smoke_check(stdout, jobs, n_jobs);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ftrt-bench: writing the report failed\n");
        rc = 1;
    }
    return rc;
}
