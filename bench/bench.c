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

/* ---- histogram lines -------------------------------------------------------- */

void
bench_hist_print(FILE *out, const char *workload, const char *measure, const char *subject,
                 int threads, const char *unit, const double *lower, const double *counts,
                 size_t n)
{
    fprintf(out, "hist workload=%s measure=%s subject=%s threads=%d unit=%s lower=",
            workload, measure, subject, threads, unit);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%s%.15g", i ? "," : "", lower[i]);   /* exact below 2^53 */
    }
    fputs(" counts=", out);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%s%.15g", i ? "," : "", counts[i]);
    }
    fputc('\n', out);
    fflush(out);
}

/* ---- progress ------------------------------------------------------------------ */

double
bench_eta_ns(const int64_t *cost_ns, const int *class_of, size_t per_round, int rounds,
             size_t done)
{
    size_t total = per_round * (size_t)(rounds > 0 ? rounds : 0);
    if (done >= total) {
        return 0.0;
    }
    /* the mean known cost, overall and of each class that occurs */
    double all_sum = 0.0;
    size_t all_n = 0;
    for (size_t s = 0; s < per_round; s++) {
        if (cost_ns[s] >= 0) {
            all_sum += (double)cost_ns[s];
            all_n++;
        }
    }
    if (all_n == 0) {
        return NAN;
    }
    double eta = 0.0;
    for (size_t k = done; k < total; k++) {
        size_t s = k % per_round;
        if (cost_ns[s] >= 0) {
            eta += (double)cost_ns[s];
            continue;
        }
        double sum = 0.0;
        size_t n = 0;
        for (size_t o = 0; o < per_round; o++) {
            if (cost_ns[o] >= 0 && class_of[o] == class_of[s]) {
                sum += (double)cost_ns[o];
                n++;
            }
        }
        eta += n ? sum / (double)n : all_sum / (double)all_n;
    }
    return eta;
}

void
bench_format_duration(double seconds, char *buf, size_t size)
{
    if (!(seconds >= 0.0) || isinf(seconds)) {
        snprintf(buf, size, "?");
        return;
    }
    long long s = llround(seconds);
    if (s < 60) {
        snprintf(buf, size, "%lld s", s);
    }
    else if (s < 3600) {
        snprintf(buf, size, "%lld min %02lld s", s / 60, s % 60);
    }
    else {
        snprintf(buf, size, "%lld h %02lld min", s / 3600, s / 60 % 60);
    }
}

void
bench_format_progress(char *buf, size_t size, size_t done, size_t total, double elapsed_s,
                      double eta_s, const char *what)
{
    char elapsed[32], eta[32];
    bench_format_duration(elapsed_s, elapsed, sizeof elapsed);
    bench_format_duration(eta_s, eta, sizeof eta);
    snprintf(buf, size, "[%zu/%zu, elapsed %s, ETA %s] %s", done + 1, total, elapsed, eta, what);
}

/* ---- reference data files ------------------------------------------------------- */

#define MAX_FIELDS 12

/* Split line (up to its newline) at runs of tabs into NUL-terminated copies
 * in store; trailing blanks and '\r' go.  Returns the number of fields, 0 for
 * a blank or comment line, -1 if there are more than max. */
static int
split_tabs(const char *line, char *store, size_t store_size, char *fields[], int max)
{
    size_t len = strcspn(line, "\n");
    if (len >= store_size) {
        len = store_size - 1;
    }
    memcpy(store, line, len);
    store[len] = '\0';
    while (len > 0 && (store[len - 1] == ' ' || store[len - 1] == '\r'
                       || store[len - 1] == '\t')) {
        store[--len] = '\0';
    }
    char *p = store;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p == '\0' || *p == '#') {
        return 0;
    }
    int n = 0;
    while (*p) {
        if (n == max) {
            return -1;
        }
        fields[n++] = p;
        p += strcspn(p, "\t");
        if (*p) {
            *p++ = '\0';
            while (*p == '\t') {
                p++;
            }
        }
    }
    /* fields keep inner blanks (a target's text), lose the outer ones */
    for (int i = 0; i < n; i++) {
        size_t l = strlen(fields[i]);
        while (l > 0 && fields[i][l - 1] == ' ') {
            fields[i][--l] = '\0';
        }
        while (*fields[i] == ' ') {
            fields[i]++;
        }
    }
    return n;
}

static bool
copy_field(char *dst, size_t size, const char *src, const char *what, char *err,
           size_t errsize)
{
    if (*src == '\0' || strlen(src) >= size || strpbrk(src, " ") != NULL) {
        snprintf(err, errsize, "bad %s '%s'", what, src);
        return false;
    }
    memcpy(dst, src, strlen(src) + 1);
    return true;
}

/* A number, or "-" (NaN) if dash_ok. */
static bool
number_field(const char *s, bool dash_ok, double *out, const char *what, char *err,
             size_t errsize)
{
    if (dash_ok && strcmp(s, "-") == 0) {
        *out = NAN;
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v)) {
        snprintf(err, errsize, "bad %s '%s'", what, s);
        return false;
    }
    *out = v;
    return true;
}

static bool
threads_field(const char *s, bool star_ok, int *out, char *err, size_t errsize)
{
    if (star_ok && strcmp(s, "*") == 0) {
        *out = 0;
        return true;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < 0 || v > 100000) {
        snprintf(err, errsize, "bad thread count '%s'", s);
        return false;
    }
    *out = (int)v;
    return true;
}

int
bench_anchor_parse(const char *line, void *out, char *err, size_t errsize)
{
    bench_anchor *a = out;
    char store[512];
    char *f[MAX_FIELDS];
    int n = split_tabs(line, store, sizeof store, f, MAX_FIELDS);
    if (n == 0) {
        return 0;
    }
    if (n != 8) {
        snprintf(err, errsize, "expected 8 tab-separated fields, found %d", n < 0 ? MAX_FIELDS + 1 : n);
        return -1;
    }
    memset(a, 0, sizeof *a);
    if (!copy_field(a->workload, sizeof a->workload, f[0], "workload", err, errsize)
        || !copy_field(a->measure, sizeof a->measure, f[1], "measure", err, errsize)
        || !copy_field(a->subject, sizeof a->subject, f[2], "subject", err, errsize)
        || !threads_field(f[3], false, &a->threads, err, errsize)
        || !number_field(f[4], true, &a->ft, "free-threaded figure", err, errsize)
        || !number_field(f[5], true, &a->gil, "GIL figure", err, errsize)
        || !copy_field(a->unit, sizeof a->unit, f[6], "unit", err, errsize)) {
        return -1;
    }
    if (isnan(a->ft) && isnan(a->gil)) {
        snprintf(err, errsize, "no figure for either build");
        return -1;
    }
    snprintf(a->source, sizeof a->source, "%s", strcmp(f[7], "-") == 0 ? "" : f[7]);
    return 1;
}

int
bench_target_parse(const char *line, void *out, char *err, size_t errsize)
{
    bench_target *t = out;
    char store[512];
    char *f[MAX_FIELDS];
    int n = split_tabs(line, store, sizeof store, f, MAX_FIELDS);
    if (n == 0) {
        return 0;
    }
    if (n != 9) {
        snprintf(err, errsize, "expected 9 tab-separated fields, found %d", n < 0 ? MAX_FIELDS + 1 : n);
        return -1;
    }
    memset(t, 0, sizeof *t);
    if (!copy_field(t->workload, sizeof t->workload, f[0], "workload", err, errsize)
        || !copy_field(t->measure, sizeof t->measure, f[1], "measure", err, errsize)
        || !copy_field(t->subject, sizeof t->subject, f[2], "subject", err, errsize)
        || !threads_field(f[3], true, &t->threads, err, errsize)) {
        return -1;
    }
    if (strcmp(f[4], "value") == 0) {
        t->kind = BENCH_TARGET_VALUE;
    }
    else if (strcmp(f[4], "scaling") == 0) {
        t->kind = BENCH_TARGET_SCALING;
    }
    else if (strcmp(f[4], "time_ft_over_gil") == 0) {
        t->kind = BENCH_TARGET_TIME_FT_GIL;
    }
    else {
        snprintf(err, errsize, "bad kind '%s' (value, scaling or time_ft_over_gil)", f[4]);
        return -1;
    }
    if (strcmp(f[5], "<=") != 0 && strcmp(f[5], ">=") != 0) {
        snprintf(err, errsize, "bad bound '%s' (<= or >=)", f[5]);
        return -1;
    }
    t->at_most = f[5][0] == '<';
    if (!number_field(f[6], false, &t->limit, "limit", err, errsize)) {
        return -1;
    }
    if (strcmp(f[7], "both") == 0) {
        t->judged = BENCH_JUDGED_BOTH;
    }
    else if (strcmp(f[7], "ft") == 0) {
        t->judged = BENCH_JUDGED_FT;
    }
    else if (strcmp(f[7], "gil") == 0) {
        t->judged = BENCH_JUDGED_GIL;
    }
    else {
        snprintf(err, errsize, "bad judged build '%s' (both, ft or gil)", f[7]);
        return -1;
    }
    if (strlen(f[8]) >= sizeof t->text) {
        snprintf(err, errsize, "text longer than %zu characters", sizeof t->text - 1);
        return -1;
    }
    snprintf(t->text, sizeof t->text, "%s", f[8]);
    return 1;
}

size_t
bench_records_parse(const char *text, const char *name, bench_record_parse_fn *parse,
                    void *items, size_t item_size, size_t max, FILE *diag)
{
    size_t n = 0;
    int lineno = 0;
    for (const char *line = text; line && *line; ) {
        lineno++;
        char err[128] = "";
        /* when items is full, a record is parsed into scratch only to be
         * reported (a comment line is not) */
        _Alignas(max_align_t) char scratch[512];
        void *slot = n < max ? (char *)items + n * item_size
                   : item_size <= sizeof scratch ? scratch : NULL;
        int rc = slot ? parse(line, slot, err, sizeof err) : -1;
        if (slot == NULL) {
            snprintf(err, sizeof err, "more than %zu records", max);
        }
        else if (rc == 1 && n >= max) {
            rc = -1;
            snprintf(err, sizeof err, "more than %zu records", max);
        }
        if (rc == 1) {
            n++;
        }
        else if (rc < 0 && diag) {
            fprintf(diag, "%s:%d: %s; line skipped\n", name, lineno, err);
        }
        line = strchr(line, '\n');
        if (line) {
            line++;
        }
    }
    return n;
}

/* ---- JSON ------------------------------------------------------------------------- */

void
bench_json_write_string(FILE *out, const char *s)
{
    fputc('"', out);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
            p++;
        }
        else if (c < 0x20) {
            switch (c) {
            case '\b': fputs("\\b", out); break;
            case '\f': fputs("\\f", out); break;
            case '\n': fputs("\\n", out); break;
            case '\r': fputs("\\r", out); break;
            case '\t': fputs("\\t", out); break;
            default: fprintf(out, "\\u%04x", c); break;
            }
            p++;
        }
        else if (c < 0x80) {
            fputc(c, out);
            p++;
        }
        else {
            /* a well-formed UTF-8 sequence passes, anything else is U+FFFD */
            size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                       : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
            bool ok = len > 0;
            for (size_t k = 1; ok && k < len; k++) {
                ok = (p[k] & 0xc0) == 0x80;
            }
            if (ok && len == 3) {   /* overlong, or a surrogate */
                ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
            }
            if (ok && len == 4) {   /* overlong, or beyond U+10FFFF */
                ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
            }
            if (ok) {
                fwrite(p, 1, len, out);
                p += len;
            }
            else {
                fputs("\\ufffd", out);
                p++;
            }
        }
    }
    fputc('"', out);
}

void
bench_json_init(bench_json *j, FILE *out)
{
    memset(j, 0, sizeof *j);
    j->out = out;
}

static void
json_indent(bench_json *j, int depth)
{
    fputc('\n', j->out);
    for (int i = 0; i < depth; i++) {
        fputs("  ", j->out);
    }
}

/* Before a value: the separator and layout its container asks for. */
static void
json_value_prefix(bench_json *j, bool container)
{
    if (j->depth == 0) {
        return;
    }
    int d = j->depth - 1;
    if (j->object[d]) {
        /* bench_json_key wrote "key": */
        j->misused |= !j->key_pending;
        j->key_pending = false;
        return;
    }
    if (j->count[d] > 0) {
        fputc(',', j->out);
    }
    if (container) {
        j->multiline[d] = true;
        json_indent(j, j->depth);
    }
    else if (j->count[d] > 0) {
        fputc(' ', j->out);
    }
    j->count[d]++;
}

static void
json_begin(bench_json *j, bool object)
{
    json_value_prefix(j, true);
    if (j->depth == BENCH_JSON_MAX_DEPTH) {
        j->misused = true;
        fputs(object ? "{}" : "[]", j->out);   /* keeps the text balanced */
        return;
    }
    fputc(object ? '{' : '[', j->out);
    j->object[j->depth] = object;
    j->count[j->depth] = 0;
    j->multiline[j->depth] = false;
    j->depth++;
}

static void
json_end(bench_json *j, bool object)
{
    if (j->depth == 0 || j->object[j->depth - 1] != object || j->key_pending) {
        j->misused = true;
        return;
    }
    int d = j->depth - 1;
    if (object ? j->count[d] > 0 : j->multiline[d]) {
        json_indent(j, d);
    }
    fputc(object ? '}' : ']', j->out);
    j->depth--;
}

void bench_json_object_begin(bench_json *j) { json_begin(j, true); }
void bench_json_object_end(bench_json *j) { json_end(j, true); }
void bench_json_array_begin(bench_json *j) { json_begin(j, false); }
void bench_json_array_end(bench_json *j) { json_end(j, false); }

void
bench_json_key(bench_json *j, const char *key)
{
    if (j->depth == 0 || !j->object[j->depth - 1] || j->key_pending) {
        j->misused = true;
        return;
    }
    int d = j->depth - 1;
    j->key_pending = true;
    if (j->count[d] > 0) {
        fputc(',', j->out);
    }
    json_indent(j, j->depth);
    bench_json_write_string(j->out, key);
    fputs(": ", j->out);
    j->count[d]++;
}

void
bench_json_string(bench_json *j, const char *s)
{
    json_value_prefix(j, false);
    if (s == NULL) {
        fputs("null", j->out);
    }
    else {
        bench_json_write_string(j->out, s);
    }
}

void
bench_json_number(bench_json *j, double v)
{
    json_value_prefix(j, false);
    if (!isfinite(v)) {
        fputs("null", j->out);
        return;
    }
    char buf[40];
    snprintf(buf, sizeof buf, "%.15g", v);
    if (strtod(buf, NULL) != v) {
        snprintf(buf, sizeof buf, "%.17g", v);
    }
    fputs(buf, j->out);
}

void
bench_json_int(bench_json *j, long long v)
{
    json_value_prefix(j, false);
    fprintf(j->out, "%lld", v);
}

void
bench_json_bool(bench_json *j, bool v)
{
    json_value_prefix(j, false);
    fputs(v ? "true" : "false", j->out);
}

void
bench_json_null(bench_json *j)
{
    json_value_prefix(j, false);
    fputs("null", j->out);
}

int
bench_json_finish(bench_json *j)
{
    fputc('\n', j->out);
    bool bad = j->misused || j->depth != 0;
    if (fflush(j->out) != 0 || ferror(j->out)) {
        bad = true;
    }
    return bad ? -1 : 0;
}
