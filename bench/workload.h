/* What the workload files share (worker side, linked with a variant's
 * library): bringing the runtime up and down, failing, and measuring
 * calibrated subjects beside a baseline.  See bench.h for the harness. */
#ifndef FTRT_BENCH_WORKLOAD_H
#define FTRT_BENCH_WORKLOAD_H

#include <Python.h>

#include <stdio.h>

#include "bench.h"

#define BENCH_MAX_SUBJECTS 4

/* Print "<workload> bench: <what>" on stderr and exit(1): the measurement
 * failed (the driver reports the worker's failure). */
void bench_fail(const char *workload, const char *what) __attribute__((noreturn));

/* Py_InitializeEx(0): the calling thread becomes the attached main thread,
 * as in an embedding application.  Returns the main interpreter. */
PyInterpreterState *bench_runtime_up(void);

/* Py_FinalizeEx; returns rc, or 1 if finalization failed and rc was 0. */
int bench_runtime_down(int rc);

typedef struct bench_subject {
    const char *name;
    bench_timed_fn *fn;   /* calibrated measures */
    void *ctx;
} bench_subject;

/* One result line per subject, then each subject over the baseline, sample
 * by sample ("<subject>/<baseline>", unit "x"). */
void bench_print_results(FILE *out, const char *workload, const bench_params *p,
                         const char *unit, const char *const *names, size_t n,
                         size_t baseline, double values[][BENCH_MAX_SAMPLES]);

/* Calibrate every subject, then take p->samples samples of each in rotating
 * order and print them (ns per operation).  Returns 0. */
int bench_measure_calibrated(const bench_params *p, FILE *out, const char *workload,
                             const bench_subject *subs, size_t n, size_t baseline);

#endif /* FTRT_BENCH_WORKLOAD_H */
