/* What the workload files share (worker side, linked with a variant's
 * library): bringing the runtime up and down, failing, and measuring
 * calibrated subjects beside a baseline.  See bench.h for the harness. */
#ifndef FTRT_BENCH_WORKLOAD_H
#define FTRT_BENCH_WORKLOAD_H

#include <Python.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
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

/* One sample of subject k (0 <= k < n) of bench_sample_rotating. */
typedef double bench_sample_fn(void *ctx, size_t k);

/* Take p->samples samples of each of n subjects into values[k][s], the
 * order of the subjects rotating from one sample to the next
 * (bench_rotation), so that no subject always runs first. */
void bench_sample_rotating(const bench_params *p, size_t n, bench_sample_fn *sample, void *ctx,
                           double values[][BENCH_MAX_SAMPLES]);

/* Calibrate every subject, then take p->samples samples of each in rotating
 * order and print them (ns per operation).  Returns 0. */
int bench_measure_calibrated(const bench_params *p, FILE *out, const char *workload,
                             const bench_subject *subs, size_t n, size_t baseline);

/* ---- a team of threads for the multi-thread measures ------------------------
 *
 * bench_team_run starts T threads that each run body(member, arg), releases
 * them together once all are at the start line, and (unless the work is
 * fixed) tells them to stop after the sample's wall time.  The calling
 * thread is the attached main thread; it detaches while the team runs.
 * A body calls bench_team_wait_go first, then loops until
 * bench_team_stopped (or its work runs out), counting m->ops and setting
 * m->failed on an error.  It attaches itself if it needs to
 * (PyGILState_Ensure), and says so to bench_team_wait_go. */
typedef struct bench_team bench_team;

typedef struct bench_member {
    _Alignas(64) bench_team *team;
    pthread_t thread;
    uint64_t ops;        /* the body's count */
    int64_t end_ns;      /* when the body returned */
    bool failed;         /* the body's verdict */
} bench_member;

typedef void bench_member_fn(bench_member *m, void *arg);

struct bench_team {
    _Alignas(64) atomic_int ready;
    atomic_int go;
    _Alignas(64) atomic_int stop;
    bench_member_fn *body;
    void *arg;
};

/* Wait at the start line.  attached: the member holds a thread state and
 * reaches a safe point while it waits (in the GIL build the others must get
 * the GIL to reach the line too). */
void bench_team_wait_go(bench_member *m, bool attached);

static inline bool
bench_team_stopped(const bench_member *m)
{
    return atomic_load_explicit(&m->team->stop, memory_order_relaxed) != 0;
}

/* Total ops per second of one run, from the release to the last member's
 * end (a member may be waiting for the GIL, or descheduled, when stop is
 * set).  fixed_work: the members stop by themselves; duration_ns is not
 * waited.  *failed: some member failed.  Exits (bench_fail) if a thread
 * cannot be started. */
double bench_team_run(int threads, int64_t duration_ns, bool fixed_work,
                      bench_member_fn *body, void *arg, bool *failed);

#endif /* FTRT_BENCH_WORKLOAD_H */
