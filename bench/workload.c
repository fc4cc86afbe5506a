/* Helpers shared by the workload files (workload.h). */
#include "workload.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

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

void
bench_sample_rotating(const bench_params *p, size_t n, bench_sample_fn *sample, void *ctx,
                      double values[][BENCH_MAX_SAMPLES])
{
    for (int s = 0; s < p->samples; s++) {
        size_t order[BENCH_MAX_SUBJECTS];
        bench_rotation((size_t)s, n, order);
        for (size_t i = 0; i < n; i++) {
            values[order[i]][s] = sample(ctx, order[i]);
        }
    }
}

typedef struct calibrated {
    const bench_subject *subs;
    uint64_t iters[BENCH_MAX_SUBJECTS];
} calibrated;

static double
calibrated_sample(void *ctx, size_t k)
{
    calibrated *c = ctx;
    return (double)c->subs[k].fn(c->subs[k].ctx, c->iters[k]) / (double)c->iters[k];
}

int
bench_measure_calibrated(const bench_params *p, FILE *out, const char *workload,
                         const bench_subject *subs, size_t n, size_t baseline)
{
    calibrated c = {.subs = subs};
    for (size_t k = 0; k < n; k++) {
        c.iters[k] = bench_calibrate(subs[k].fn, subs[k].ctx, p->sample_ns);
    }
    double ns[BENCH_MAX_SUBJECTS][BENCH_MAX_SAMPLES];
    bench_sample_rotating(p, n, calibrated_sample, &c, ns);
    const char *names[BENCH_MAX_SUBJECTS];
    for (size_t k = 0; k < n; k++) {
        names[k] = subs[k].name;
    }
    bench_print_results(out, workload, p, "ns/op", names, n, baseline, ns);
    return 0;
}

/* ---- teams -------------------------------------------------------------------- */

void
bench_team_wait_go(bench_member *m, bool attached)
{
    bench_team *team = m->team;
    atomic_fetch_add_explicit(&team->ready, 1, memory_order_relaxed);
    while (!atomic_load_explicit(&team->go, memory_order_acquire)) {
        if (attached) {
            (void)PyErr_CheckSignals();
        }
        sched_yield();
    }
}

static void *
member_main(void *arg)
{
    bench_member *m = arg;
    m->team->body(m, m->team->arg);
    m->end_ns = bench_now_ns();
    return NULL;
}

double
bench_team_run(int threads, int64_t duration_ns, bool fixed_work, bench_member_fn *body,
               void *arg, bool *failed)
{
    bench_team team = {.body = body, .arg = arg};
    atomic_init(&team.ready, 0);
    atomic_init(&team.go, 0);
    atomic_init(&team.stop, 0);
    bench_member *members = aligned_alloc(64, sizeof *members * (size_t)threads);
    if (members == NULL) {
        bench_fail("team", "out of memory");
    }
    int started = 0;
    int64_t t0 = 0, end = 0;
    uint64_t total = 0;
    *failed = false;
    Py_BEGIN_ALLOW_THREADS
    for (; started < threads; started++) {
        memset(&members[started], 0, sizeof members[started]);
        members[started].team = &team;
        if (pthread_create(&members[started].thread, NULL, member_main,
                           &members[started]) != 0) {
            break;
        }
    }
    while (atomic_load_explicit(&team.ready, memory_order_relaxed) < started) {
        sched_yield();
    }
    t0 = bench_now_ns();
    atomic_store_explicit(&team.go, 1, memory_order_release);
    if (started == threads && !fixed_work) {
        bench_sleep_until_ns(t0 + duration_ns);
    }
    atomic_store_explicit(&team.stop, 1, memory_order_relaxed);
    end = t0;
    for (int i = 0; i < started; i++) {
        pthread_join(members[i].thread, NULL);
        total += members[i].ops;
        *failed |= members[i].failed;
        if (members[i].end_ns > end) {
            end = members[i].end_ns;
        }
    }
    Py_END_ALLOW_THREADS
    free(members);
    if (started != threads) {
        bench_fail("team", "pthread_create failed");
    }
    return (double)total * 1e9 / (double)(end - t0);
}
