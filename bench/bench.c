/* The benchmark harness: clock, calibration, statistics, result lines, the
 * busy-machine check and number formatting.  See bench.h for how the pieces
 * fit; nothing here knows about ftrt or about any workload.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- time --------------------------------------------------------------- */

int64_t
bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void
bench_sleep_until_ns(int64_t deadline_ns)
{
    struct timespec ts = {
        .tv_sec = (time_t)(deadline_ns / 1000000000LL),
        .tv_nsec = (long)(deadline_ns % 1000000000LL),
    };
    /* absolute deadline: an interrupted sleep just starts again */
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void *
bench_nothing(void *arg)
{
    return arg;
}

bool
bench_leave_single_threaded_mode(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, bench_nothing, NULL) != 0) {
        return false;
    }
    return pthread_join(t, NULL) == 0;
}

/* ---- calibration -------------------------------------------------------- */

#define BENCH_MAX_ITERS (UINT64_MAX / 16)

uint64_t
bench_scale_iters(uint64_t iters, int64_t elapsed_ns, int64_t target_ns)
{
    if (elapsed_ns < 1) {
        elapsed_ns = 1;
    }
    double scaled = (double)iters * (double)target_ns / (double)elapsed_ns;
    if (scaled < 1.0) {
        return 1;
    }
    if (scaled >= (double)BENCH_MAX_ITERS) {
        return BENCH_MAX_ITERS;
    }
    return (uint64_t)(scaled + 0.5);
}

uint64_t
bench_calibrate(bench_timed_fn *fn, void *ctx, int64_t target_ns)
{
    if (target_ns < 1000) {
        target_ns = 1000;
    }
    uint64_t iters = 1;
    int64_t elapsed;
    /* Grow tenfold until a run is long enough to scale from: at an eighth of
     * the target, clock reads and the call cost well under 1% of it. */
    for (;;) {
        elapsed = fn(ctx, iters);
        if (elapsed >= target_ns / 8 || iters >= BENCH_MAX_ITERS / 10) {
            break;
        }
        iters *= 10;
    }
    iters = bench_scale_iters(iters, elapsed, target_ns);
    /* Two runs at about the target length, and the faster one sets the
     * count: a run that was preempted, or cold (caches, the CPU clock still
     * ramping up), can only be slower than the operation really is. */
    int64_t best = fn(ctx, iters);
    int64_t again = fn(ctx, iters);
    if (again < best) {
        best = again;
    }
    return bench_scale_iters(iters, best, target_ns);
}

/* ---- statistics --------------------------------------------------------- */

static int
compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

bench_stats
bench_stats_of(const double *samples, size_t n)
{
    bench_stats st = {0.0, 0.0, 0.0, 0};
    double *sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (sorted == NULL) {
        return st;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isnan(samples[i])) {
            sorted[m++] = samples[i];
        }
    }
    if (m > 0) {
        qsort(sorted, m, sizeof *sorted, compare_doubles);
        st.n = m;
        st.min = sorted[0];
        st.max = sorted[m - 1];
        st.median = (m % 2) ? sorted[m / 2]
                            : (sorted[m / 2 - 1] + sorted[m / 2]) / 2.0;
    }
    free(sorted);
    return st;
}

void
bench_rotation(size_t round, size_t n, size_t *order)
{
    for (size_t k = 0; k < n; k++) {
        order[k] = (round + k) % n;
    }
}

/* ---- result lines -------------------------------------------------------- */

void
bench_result_print(FILE *out, const bench_result *r)
{
    bench_stats st = bench_stats_of(r->samples, r->n_samples);
    fprintf(out, "result workload=%s measure=%s subject=%s threads=%d unit=%s "
                 "median=%.6g min=%.6g max=%.6g samples=",
            r->workload, r->measure, r->subject, r->threads, r->unit,
            st.median, st.min, st.max);
    for (size_t i = 0; i < r->n_samples; i++) {
        fprintf(out, "%s%.6g", i ? "," : "", r->samples[i]);
    }
    fputc('\n', out);
    fflush(out);
}

bool
bench_kv_get(const char *line, const char *key, char *buf, size_t bufsize)
{
    size_t keylen = strlen(key);
    const char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        const char *word = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            p++;
        }
        size_t len = (size_t)(p - word);
        if (len > keylen && word[keylen] == '=' && memcmp(word, key, keylen) == 0) {
            size_t vlen = len - keylen - 1;
            if (bufsize > 0) {
                if (vlen >= bufsize) {
                    vlen = bufsize - 1;
                }
                memcpy(buf, word + keylen + 1, vlen);
                buf[vlen] = '\0';
            }
            return true;
        }
        if (*p == '\n') {
            break;   /* one line only */
        }
    }
    return false;
}

int
bench_parse_doubles(const char *text, double *out, size_t max)
{
    size_t n = 0;
    const char *p = text;
    if (*p == '\0') {
        return 0;
    }
    for (;;) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno != 0 || n >= max) {
            return -1;
        }
        out[n++] = v;
        if (*end == '\0') {
            return (int)n;
        }
        if (*end != ',') {
            return -1;
        }
        p = end + 1;
    }
}

/* ---- is the machine busy? ------------------------------------------------ */

bool
bench_parse_proc_stat(const char *text, bench_cpu_snapshot *s)
{
    /* "cpu  user nice system idle iowait irq softirq steal guest guest_nice";
     * guest time is already inside user, so it is not added again. */
    const char *p = text;
    while (p && strncmp(p, "cpu ", 4) != 0) {
        p = strchr(p, '\n');
        if (p) {
            p++;
        }
    }
    if (p == NULL) {
        return false;
    }
    unsigned long long f[8] = {0};
    int got = sscanf(p + 4, "%llu %llu %llu %llu %llu %llu %llu %llu",
                     &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7]);
    if (got < 4) {
        return false;
    }
    s->busy_ticks = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    s->total_ticks = s->busy_ticks + f[3] + f[4];
    s->steal_ticks = f[7];
    s->valid = true;
    return true;
}

static int64_t
timeval_ns(struct timeval tv)
{
    return (int64_t)tv.tv_sec * 1000000000LL + (int64_t)tv.tv_usec * 1000LL;
}

bench_cpu_snapshot
bench_cpu_snapshot_take(void)
{
    bench_cpu_snapshot s = {0};
    struct rusage self, children;
    if (getrusage(RUSAGE_SELF, &self) == 0 && getrusage(RUSAGE_CHILDREN, &children) == 0) {
        s.own_cpu_ns = timeval_ns(self.ru_utime) + timeval_ns(self.ru_stime)
                     + timeval_ns(children.ru_utime) + timeval_ns(children.ru_stime);
    }
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL) {
        return s;
    }
    char text[1024];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    bench_parse_proc_stat(text, &s);
    return s;
}

static double
clamp01(double x)
{
    return x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x);
}

bench_cpu_usage
bench_cpu_usage_between(const bench_cpu_snapshot *before, const bench_cpu_snapshot *after,
                        int64_t own_extra_ns)
{
    bench_cpu_usage u = {false, 0.0, 0.0, 0.0};
    if (!before->valid || !after->valid || after->total_ticks <= before->total_ticks) {
        return u;
    }
    double ticks_per_ns = (double)sysconf(_SC_CLK_TCK) / 1e9;
    double total = (double)(after->total_ticks - before->total_ticks);
    double busy = (double)(after->busy_ticks - before->busy_ticks);
    double own = (double)(after->own_cpu_ns - before->own_cpu_ns + own_extra_ns) * ticks_per_ns;
    u.valid = true;
    u.own = clamp01(own / total);
    u.foreign = clamp01((busy - own) / total);
    u.steal = clamp01((double)(after->steal_ticks - before->steal_ticks) / total);
    return u;
}

/* ---- formatting ---------------------------------------------------------- */

void
bench_format_value(double v, char *buf, size_t size)
{
    double a = fabs(v);
    if (isnan(v)) {
        snprintf(buf, size, "-");
    }
    else if (a >= 1e5) {
        int e = (int)floor(log10(a));
        double m = v / pow(10.0, e);
        if (fabs(m) >= 9.995) {   /* 9.996e7 would print as 10.00e7 */
            m /= 10.0;
            e++;
        }
        snprintf(buf, size, "%.2fe%d", m, e);
    }
    else if (a >= 1000) {
        snprintf(buf, size, "%.0f", v);
    }
    else if (a >= 1) {
        snprintf(buf, size, "%.*f", a >= 100 ? 0 : a >= 10 ? 1 : 2, v);
    }
    else {
        snprintf(buf, size, "%.3g", v);
    }
}

void
bench_format_ratio(double v, char *buf, size_t size)
{
    double a = fabs(v);
    if (isnan(v)) {
        snprintf(buf, size, "-");
    }
    else {
        snprintf(buf, size, "%.*f", a >= 100 ? 0 : a >= 10 ? 1 : 2, v);
    }
}
