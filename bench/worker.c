/* The benchmark worker: ftrt-bench-worker-ft and ftrt-bench-worker-gil are
 * this file, linked once with each variant's library.  It runs one
 * measurement and prints machine-readable lines on stdout:
 *
 *     ftrt-bench-worker-ft mutex contended threads=4 samples=3 sample_ms=200
 *
 *     info variant=ftrt free_threaded=1 allocator=jemalloc version=0.1.0
 *     result workload=mutex measure=contended subject=pymutex threads=4 ...
 *     ...
 *
 * (the "result" format is described in bench.h).  People run ftrt-bench,
 * which runs the workers; running a worker by hand is for debugging a
 * workload.  Exit status: 0, 1 if the measurement failed, 2 for bad usage.
 *
 * A new workload is a file like mutex.c (or a function in one: tstate.c
 * holds five) plus one line in the table below and its description in
 * ftrt_bench.c.
 *
 * The workers link the installed shared library and see only <Python.h>, as
 * an extension would: the inline fast paths come from the public headers and
 * the slow paths are calls into libftrt.so / libftrt-gil.so.
 */
#include <Python.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const struct {
    const char *name;
    bench_workload_fn *run;
} workloads[] = {
    {"mutex", bench_mutex_run},
    {"attach", bench_attach_run},
    {"gilstate", bench_gilstate_run},
    {"tstate", bench_tstate_run},
    {"tss", bench_tss_run},
    {"churn", bench_churn_run},
    {"refcount", bench_refcount_run},
    {"refshared", bench_refshared_run},
    {"critsec", bench_critsec_run},
    {"alloc", bench_alloc_run},
    {"listbuild", bench_listbuild_run},
    {"listshared", bench_listshared_run},
    {"dictmix", bench_dictmix_run},
    {"gc", bench_gc_run},
    {"stw", bench_stw_run},
    {"pipeline", bench_pipeline_run},
    {"dictmap", bench_dictmap_run},
};

static void
usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s WORKLOAD MEASURE [threads=N] [samples=N] [sample_ms=MS]\n"
            "  runs one measurement and prints result lines; normally run by ftrt-bench\n",
            argv0);
}

/* "key=value" with value a number in [lo, hi]: true and *out set if the
 * argument is that key, exits on a bad value. */
static bool
numeric_arg(const char *arg, const char *key, double lo, double hi, double *out)
{
    size_t n = strlen(key);
    if (strncmp(arg, key, n) != 0 || arg[n] != '=') {
        return false;
    }
    char *end;
    double v = strtod(arg + n + 1, &end);
    if (end == arg + n + 1 || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "worker: bad value in %s (expected %g..%g)\n", arg, lo, hi);
        exit(2);
    }
    *out = v;
    return true;
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        usage(argv[0]);
        return 2;
    }
    bench_workload_fn *run = NULL;
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++) {
        if (strcmp(argv[1], workloads[i].name) == 0) {
            run = workloads[i].run;
        }
    }
    if (run == NULL) {
        fprintf(stderr, "worker: unknown workload '%s'\n", argv[1]);
        return 2;
    }

    double threads = 1, samples = 5, sample_ms = 20;
    for (int i = 3; i < argc; i++) {
        if (!numeric_arg(argv[i], "threads", 1, 1024, &threads)
            && !numeric_arg(argv[i], "samples", 1, BENCH_MAX_SAMPLES, &samples)
            && !numeric_arg(argv[i], "sample_ms", 0.001, 600000, &sample_ms)) {
            fprintf(stderr, "worker: unknown argument '%s'\n", argv[i]);
            usage(argv[0]);
            return 2;
        }
    }
    bench_params p = {
        .measure = argv[2],
        .threads = (int)threads,
        .samples = (int)samples,
        .sample_ns = (int64_t)(sample_ms * 1e6),
    };

    PyThread_init_thread();
    if (!bench_leave_single_threaded_mode()) {
        fprintf(stderr, "worker: cannot start a thread\n");
        return 1;
    }
#ifdef Py_GIL_DISABLED
    const int free_threaded = 1;
#else
    const int free_threaded = 0;
#endif
    printf("info variant=%s free_threaded=%d allocator=%s version=%s\n",
           FTRT_VARIANT, free_threaded, FTRT_BENCH_ALLOCATOR, FTRT_VERSION);
    fflush(stdout);

    int rc = run(&p, stdout);
    if (rc == 2) {
        fprintf(stderr, "worker: workload '%s' has no measure '%s'\n", argv[1], argv[2]);
    }
    return rc;
}
