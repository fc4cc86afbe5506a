/* Helpers shared by the workload files (workload.h). */
#include "workload.h"

#include <stdlib.h>

void
bench_fail(const char *workload, const char *what)
{
    fprintf(stderr, "%s bench: %s\n", workload, what);
    fflush(stderr);
    exit(1);
}

PyInterpreterState *
bench_runtime_up(void)
{
    Py_InitializeEx(0);
    if (PyThreadState_GetUnchecked() == NULL) {
        bench_fail("runtime", "Py_InitializeEx left no thread state attached");
    }
    PyInterpreterState *interp = PyInterpreterState_Main();
    if (interp == NULL) {
        bench_fail("runtime", "no main interpreter after Py_InitializeEx");
    }
    return interp;
}

int
bench_runtime_down(int rc)
{
    if (Py_FinalizeEx() != 0 && rc == 0) {
        rc = 1;
    }
    return rc;
}

static void
print_line(FILE *out, const char *workload, const bench_params *p, const char *subject,
           const char *unit, const double *samples)
{
    bench_result r = {
        .workload = workload,
        .measure = p->measure,
        .subject = subject,
        .threads = p->threads,
        .unit = unit,
        .samples = samples,
        .n_samples = (size_t)p->samples,
    };
    bench_result_print(out, &r);
}

void
bench_print_results(FILE *out, const char *workload, const bench_params *p, const char *unit,
                    const char *const *names, size_t n, size_t baseline,
                    double values[][BENCH_MAX_SAMPLES])
{
    for (size_t k = 0; k < n; k++) {
        print_line(out, workload, p, names[k], unit, values[k]);
    }
    double ratio[BENCH_MAX_SAMPLES];
    for (size_t k = 0; k < n; k++) {
        if (k == baseline) {
            continue;
        }
        for (int s = 0; s < p->samples; s++) {
            ratio[s] = values[k][s] / values[baseline][s];
        }
        char name[64];
        snprintf(name, sizeof name, "%s/%s", names[k], names[baseline]);
        print_line(out, workload, p, name, "x", ratio);
    }
}

int
bench_measure_calibrated(const bench_params *p, FILE *out, const char *workload,
                         const bench_subject *subs, size_t n, size_t baseline)
{
    uint64_t iters[BENCH_MAX_SUBJECTS];
    for (size_t k = 0; k < n; k++) {
        iters[k] = bench_calibrate(subs[k].fn, subs[k].ctx, p->sample_ns);
    }
    double ns[BENCH_MAX_SUBJECTS][BENCH_MAX_SAMPLES];
    for (int s = 0; s < p->samples; s++) {
        size_t order[BENCH_MAX_SUBJECTS];
        bench_rotation((size_t)s, n, order);
        for (size_t i = 0; i < n; i++) {
            size_t k = order[i];
            ns[k][s] = (double)subs[k].fn(subs[k].ctx, iters[k]) / (double)iters[k];
        }
    }
    const char *names[BENCH_MAX_SUBJECTS];
    for (size_t k = 0; k < n; k++) {
        names[k] = subs[k].name;
    }
    bench_print_results(out, workload, p, "ns/op", names, n, baseline, ns);
    return 0;
}
