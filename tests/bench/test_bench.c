/* Unit test of the benchmark harness (bench/bench.c): statistics, the
 * rotating order, calibration, the result and histogram line formats, the
 * busy-machine arithmetic, number formatting, the progress line and its ETA,
 * the reference data files' parser and the JSON writer.  Nothing here is
 * timed except one loose check that calibration of a real loop lands near
 * its target.  (ftrt-bench's --json and --chart end to end:
 * tests/bench/check_json_chart.py, the bench-json-chart-smoke test.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "harness.h"

static bool
near(double x, double want, double tolerance)
{
    return fabs(x - want) <= tolerance;
}

/* ---- statistics ----------------------------------------------------------- */

Test(stats, odd_count_takes_the_middle_sample)
{
    double s[] = {9.0, 1.0, 5.0, 7.0, 3.0};
    bench_stats st = bench_stats_of(s, 5);
    cr_assert_eq(st.n, 5);
    cr_assert(near(st.median, 5.0, 1e-12), "median %g", st.median);
    cr_assert(near(st.min, 1.0, 1e-12) && near(st.max, 9.0, 1e-12));
}

Test(stats, even_count_averages_the_middle_two)
{
    double s[] = {4.0, 1.0, 3.0, 10.0};
    bench_stats st = bench_stats_of(s, 4);
    cr_assert(near(st.median, 3.5, 1e-12), "median %g", st.median);
    cr_assert(near(st.min, 1.0, 1e-12) && near(st.max, 10.0, 1e-12));
}

Test(stats, one_sample_is_median_min_and_max)
{
    double s[] = {2.5};
    bench_stats st = bench_stats_of(s, 1);
    cr_assert_eq(st.n, 1);
    cr_assert(st.median == 2.5 && st.min == 2.5 && st.max == 2.5);
}

Test(stats, empty_and_nan_samples)
{
    bench_stats st = bench_stats_of(NULL, 0);
    cr_assert_eq(st.n, 0);
    double s[] = {NAN, 2.0, NAN, 4.0, 6.0};
    st = bench_stats_of(s, 5);
    cr_assert_eq(st.n, 3, "NaNs are skipped");
    cr_assert(near(st.median, 4.0, 1e-12));
}

Test(stats, input_is_not_reordered)
{
    double s[] = {3.0, 1.0, 2.0};
    (void)bench_stats_of(s, 3);
    cr_assert(s[0] == 3.0 && s[1] == 1.0 && s[2] == 2.0);
}

Test(stats, median_resists_one_outlier)
{
    double s[] = {5.4, 5.5, 5.3, 90.0, 5.4};
    bench_stats st = bench_stats_of(s, 5);
    cr_assert(near(st.median, 5.4, 1e-12));
    cr_assert(near(st.max, 90.0, 1e-12));
}

/* ---- rotation ---------------------------------------------------------------- */

Test(rotation, two_subjects_alternate_which_goes_first)
{
    size_t o[2];
    bench_rotation(0, 2, o);
    cr_assert(o[0] == 0 && o[1] == 1);
    bench_rotation(1, 2, o);
    cr_assert(o[0] == 1 && o[1] == 0);
    bench_rotation(2, 2, o);
    cr_assert(o[0] == 0 && o[1] == 1);
}

Test(rotation, each_subject_takes_each_position_once_per_cycle)
{
    int seen[3][3] = {{0}};
    for (size_t round = 0; round < 3; round++) {
        size_t o[3];
        bench_rotation(round, 3, o);
        int used[3] = {0};
        for (size_t pos = 0; pos < 3; pos++) {
            cr_assert_lt(o[pos], 3);
            used[o[pos]]++;
            seen[o[pos]][pos]++;
        }
        cr_assert(used[0] == 1 && used[1] == 1 && used[2] == 1, "a permutation");
    }
    for (int s = 0; s < 3; s++) {
        for (int pos = 0; pos < 3; pos++) {
            cr_assert_eq(seen[s][pos], 1);
        }
    }
}

/* ---- calibration --------------------------------------------------------------- */

typedef struct fake_clock {
    double ns_per_iter;
    int64_t overhead_ns;
    int calls;
} fake_clock;

static int64_t
fake_timed(void *ctx, uint64_t iters)
{
    fake_clock *f = ctx;
    f->calls++;
    return f->overhead_ns + (int64_t)(f->ns_per_iter * (double)iters);
}

Test(calibrate, linear_cost_hits_the_target)
{
    fake_clock f = {7.0, 0, 0};
    uint64_t iters = bench_calibrate(fake_timed, &f, 10 * 1000 * 1000);
    double sample = 7.0 * (double)iters;
    cr_assert(near(sample, 1e7, 1e7 * 0.01), "iters %llu -> %g ns",
              (unsigned long long)iters, sample);
    cr_assert_lt(f.calls, 12, "a handful of runs, not a search");
}

Test(calibrate, fixed_overhead_is_scaled_out)
{
    /* 20 us of call overhead and 0.5 ns per iteration: the result must
     * still give samples close to the 5 ms target */
    fake_clock f = {0.5, 20000, 0};
    uint64_t iters = bench_calibrate(fake_timed, &f, 5 * 1000 * 1000);
    double sample = 20000 + 0.5 * (double)iters;
    cr_assert(sample > 5e6 * 0.9 && sample < 5e6 * 1.1, "sample %g ns", sample);
}

Test(calibrate, slow_operation_gets_few_iterations)
{
    fake_clock f = {4e6, 0, 0};   /* 4 ms per operation, 10 ms target */
    uint64_t iters = bench_calibrate(fake_timed, &f, 10 * 1000 * 1000);
    cr_assert(iters >= 2 && iters <= 3, "iters %llu", (unsigned long long)iters);
    f.ns_per_iter = 1e9;          /* slower than the target: one iteration */
    cr_assert_eq(bench_calibrate(fake_timed, &f, 10 * 1000 * 1000), 1);
}

Test(calibrate, a_clock_that_never_moves_terminates)
{
    fake_clock f = {0.0, 0, 0};
    uint64_t iters = bench_calibrate(fake_timed, &f, 1000 * 1000);
    cr_assert_geq(iters, 1);
    cr_assert_lt(f.calls, 40);
}

Test(calibrate, scale_iters)
{
    cr_assert_eq(bench_scale_iters(1000, 1000000, 2000000), 2000);
    cr_assert_eq(bench_scale_iters(1000, 4000000, 2000000), 500);
    cr_assert_eq(bench_scale_iters(1, 1000000, 10), 1, "never below one");
    cr_assert_geq(bench_scale_iters(10, 0, 1000), 1, "zero elapsed does not divide by 0");
}

/* A fake clock that loses 50 ms once, at call number `spike_at`, as if the
 * thread had been preempted: wherever that lands, the count stays right. */
typedef struct spiky_clock {
    fake_clock base;
    int spike_at;
} spiky_clock;

static int64_t
spiky_timed(void *ctx, uint64_t iters)
{
    spiky_clock *f = ctx;
    int64_t t = fake_timed(&f->base, iters);
    return f->base.calls == f->spike_at ? t + 50 * 1000 * 1000 : t;
}

Test(calibrate, one_preempted_run_does_not_skew_the_count)
{
    fake_clock probe = {3.0, 0, 0};
    (void)bench_calibrate(fake_timed, &probe, 10 * 1000 * 1000);
    for (int k = 1; k <= probe.calls; k++) {
        spiky_clock f = {{3.0, 0, 0}, k};
        uint64_t iters = bench_calibrate(spiky_timed, &f, 10 * 1000 * 1000);
        double sample = 3.0 * (double)iters;
        cr_assert(near(sample, 1e7, 1e7 * 0.01), "spike at run %d: sample %g ns", k, sample);
    }
}

static int64_t
real_timed(void *ctx, uint64_t iters)
{
    uint64_t *x = ctx;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        *x = *x * 6364136223846793005u + 1;
        bench_compiler_barrier();
    }
    return bench_now_ns() - t0;
}

Test(calibrate, real_loop_runs_many_iterations)
{
    /* No timing is asserted (the machine may be busy, the build slow): a
     * nanosecond-scale operation and a 1 ms target give many iterations. */
    uint64_t x = 1;
    uint64_t iters = bench_calibrate(real_timed, &x, 1000 * 1000);
    cr_assert_geq(iters, 10, "iters %llu", (unsigned long long)iters);
    bench_keep_u64(x);
}

/* ---- result lines ---------------------------------------------------------- */

Test(result_line, round_trip)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    double samples[] = {5.41, 5.38, 1.79e8};
    bench_result r = {"mutex", "contended", "pymutex/pthread", 4, "x", samples, 3};
    bench_result_print(f, &r);
    fclose(f);

    cr_assert(strncmp(text, "result ", 7) == 0, "%s", text);
    cr_assert_not_null(strchr(text, '\n'));
    char buf[256];
    cr_assert(bench_kv_get(text, "workload", buf, sizeof buf));
    cr_assert_str_eq(buf, "mutex");
    cr_assert(bench_kv_get(text, "subject", buf, sizeof buf));
    cr_assert_str_eq(buf, "pymutex/pthread");
    cr_assert(bench_kv_get(text, "threads", buf, sizeof buf));
    cr_assert_str_eq(buf, "4");
    cr_assert(bench_kv_get(text, "median", buf, sizeof buf));
    cr_assert(near(strtod(buf, NULL), 5.41, 1e-9), "median %s", buf);
    cr_assert(bench_kv_get(text, "samples", buf, sizeof buf));
    double back[8];
    cr_assert_eq(bench_parse_doubles(buf, back, 8), 3);
    for (int i = 0; i < 3; i++) {
        cr_assert(near(back[i], samples[i], fabs(samples[i]) * 1e-5), "sample %d", i);
    }
    free(text);
}

Test(result_line, keys_match_whole_words_only)
{
    const char *line = "result minimum=1 min=2 xmax=3 max=4\n";
    char buf[16];
    cr_assert(bench_kv_get(line, "min", buf, sizeof buf));
    cr_assert_str_eq(buf, "2");
    cr_assert(bench_kv_get(line, "max", buf, sizeof buf));
    cr_assert_str_eq(buf, "4");
    cr_assert_not(bench_kv_get(line, "median", buf, sizeof buf));
    cr_assert_not(bench_kv_get(line, "result", buf, sizeof buf), "a word without '='");
}

Test(result_line, long_values_are_cut_to_the_buffer)
{
    char buf[4];
    cr_assert(bench_kv_get("result subject=abcdefgh", "subject", buf, sizeof buf));
    cr_assert_str_eq(buf, "abc");
}

Test(result_line, parse_doubles_rejects_malformed_lists)
{
    double v[2];
    cr_assert_eq(bench_parse_doubles("", v, 2), 0);
    cr_assert_eq(bench_parse_doubles("1.5", v, 2), 1);
    cr_assert_eq(bench_parse_doubles("1,x", v, 2), -1);
    cr_assert_eq(bench_parse_doubles("1;2", v, 2), -1);
    cr_assert_eq(bench_parse_doubles("1,2,3", v, 2), -1, "more than max");
    cr_assert_eq(bench_parse_doubles("1,", v, 2), -1);
}

/* ---- busy machine ------------------------------------------------------------ */

Test(busy, proc_stat_fields)
{
    const char *text = "cpu  100 10 50 800 20 5 5 10 0 0\n"
                       "cpu0 50 5 25 400 10 2 3 5 0 0\n";
    bench_cpu_snapshot s = {0};
    cr_assert(bench_parse_proc_stat(text, &s));
    cr_assert_eq(s.busy_ticks, 100 + 10 + 50 + 5 + 5 + 10);
    cr_assert_eq(s.total_ticks, 180 + 800 + 20);
    cr_assert_eq(s.steal_ticks, 10);
    bench_cpu_snapshot t = {0};
    cr_assert_not(bench_parse_proc_stat("intr 1 2 3\n", &t));
}

Test(busy, foreign_share_is_busy_time_not_ours)
{
    double ns_per_tick = 1e9 / (double)sysconf(_SC_CLK_TCK);
    bench_cpu_snapshot a = {true, 1000, 5000, 0, 0};
    /* 200 ticks passed on the machine, 150 busy, 100 of them ours, 10 steal */
    bench_cpu_snapshot b = {true, 1150, 5200, 10, (int64_t)(100 * ns_per_tick)};
    bench_cpu_usage u = bench_cpu_usage_between(&a, &b, 0);
    cr_assert(u.valid);
    cr_assert(near(u.own, 0.5, 1e-9), "own %g", u.own);
    cr_assert(near(u.foreign, 0.25, 1e-9), "foreign %g", u.foreign);
    cr_assert(near(u.steal, 0.05, 1e-9), "steal %g", u.steal);
    /* own time counted beyond the busy ticks (tick sampling) clamps at 0 */
    b.own_cpu_ns = (int64_t)(180 * ns_per_tick);
    u = bench_cpu_usage_between(&a, &b, 0);
    cr_assert(near(u.foreign, 0.0, 1e-12));
    /* no time passed: no verdict */
    u = bench_cpu_usage_between(&a, &a, 0);
    cr_assert_not(u.valid);
}

Test(busy, snapshot_of_this_machine)
{
    bench_cpu_snapshot s = bench_cpu_snapshot_take();
    if (access("/proc/stat", R_OK) != 0) {
        cr_skip_test("no /proc/stat");
    }
    cr_assert(s.valid);
    cr_assert_geq(s.total_ticks, s.busy_ticks);
}

/* ---- formatting ------------------------------------------------------------------ */

static void
expect_value(double v, const char *want)
{
    char buf[32];
    bench_format_value(v, buf, sizeof buf);
    cr_assert_str_eq(buf, want, "%g printed as '%s', want '%s'", v, buf, want);
}

Test(format, three_significant_digits_like_the_anchor_table)
{
    expect_value(5.42, "5.42");
    expect_value(11.14, "11.1");
    expect_value(139.2, "139");
    expect_value(2824.0, "2824");
    expect_value(0.412, "0.412");
    expect_value(1.79e8, "1.79e8");
    expect_value(8.97e7, "8.97e7");
    expect_value(9.996e7, "1.00e8");
    expect_value(NAN, "-");
}

Test(format, ratios)
{
    char buf[16];
    bench_format_ratio(0.554, buf, sizeof buf);
    cr_assert_str_eq(buf, "0.55");
    bench_format_ratio(16.49, buf, sizeof buf);
    cr_assert_str_eq(buf, "16.5");
    bench_format_ratio(NAN, buf, sizeof buf);
    cr_assert_str_eq(buf, "-");
}

/* ---- histogram lines ----------------------------------------------------------- */

Test(hist_line, round_trip_through_the_driver_keys)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    double lower[] = {0, 2, 4, 549755813888.0};
    double counts[] = {0, 12, 3, 1};
    bench_hist_print(f, "stw", "busy", "to_stop", 3, "ns", lower, counts, 4);
    fclose(f);
    cr_assert(strncmp(text, "hist ", 5) == 0, "%s", text);
    char buf[256];
    cr_assert(bench_kv_get(text, "threads", buf, sizeof buf));
    cr_assert_str_eq(buf, "3");
    cr_assert(bench_kv_get(text, "lower", buf, sizeof buf));
    double back[8];
    cr_assert_eq(bench_parse_doubles(buf, back, 8), 4);
    cr_assert(back[3] == 549755813888.0, "2^39 exact, got %.17g", back[3]);
    cr_assert(bench_kv_get(text, "counts", buf, sizeof buf));
    cr_assert_str_eq(buf, "0,12,3,1");
    free(text);
}

/* ---- progress -------------------------------------------------------------------- */

static void
expect_duration(double s, const char *want)
{
    char buf[32];
    bench_format_duration(s, buf, sizeof buf);
    cr_assert_str_eq(buf, want, "%g s printed as '%s', want '%s'", s, buf, want);
}

Test(progress, durations)
{
    expect_duration(0, "0 s");
    expect_duration(12.4, "12 s");
    expect_duration(59.4, "59 s");
    expect_duration(59.6, "1 min 00 s");
    expect_duration(185, "3 min 05 s");
    expect_duration(3725, "1 h 02 min");
    expect_duration(NAN, "?");
    expect_duration(-1, "?");
    expect_duration(INFINITY, "?");
}

Test(progress, line_format)
{
    char buf[128];
    bench_format_progress(buf, sizeof buf, 2, 40, 12.2, 40.0, "round 1: mutex");
    cr_assert_str_eq(buf, "[3/40, elapsed 12 s, ETA 40 s] round 1: mutex");
    bench_format_progress(buf, sizeof buf, 0, 40, 0, NAN, "x");
    cr_assert_str_eq(buf, "[1/40, elapsed 0 s, ETA ?] x");
}

Test(progress, eta_from_the_previous_round)
{
    /* 3 slots a round, 2 rounds; round 1 done: round 2 costs the same */
    int64_t cost[] = {100, 200, 300};
    int kind[] = {0, 1, 1};
    cr_assert(near(bench_eta_ns(cost, kind, 3, 2, 3), 600, 1e-9));
    cr_assert(near(bench_eta_ns(cost, kind, 3, 2, 4), 500, 1e-9), "slot 0 done");
    cr_assert(near(bench_eta_ns(cost, kind, 3, 2, 6), 0, 1e-9), "all done");
}

Test(progress, eta_in_the_first_round_uses_the_same_kind)
{
    int64_t cost[] = {100, 200, -1, -1};
    int kind[] = {0, 1, 1, 2};
    /* 2 slots done of 4, one round: slot 2 (kind 1) ~ 200, slot 3 (kind 2,
     * none known) ~ the mean of all, 150 */
    cr_assert(near(bench_eta_ns(cost, kind, 4, 1, 2), 350, 1e-9));
    /* two rounds: the second round's slots 0 and 1 as measured */
    cr_assert(near(bench_eta_ns(cost, kind, 4, 2, 2), 350 + 650, 1e-9));
    int64_t none[] = {-1, -1};
    cr_assert(isnan(bench_eta_ns(none, kind, 2, 1, 0)), "nothing known: NaN");
}

/* ---- reference data files --------------------------------------------------------- */

static const char anchors_fixture[] =
    "# source: measured on CPython 3.13.15 (free-threaded and GIL builds) on a\n"
    "# 2-vCPU machine\n"
    "\n"
    "mutex\t\tuncontended\tpymutex\t\t1\t5.42\t5.46\tns/op\tcpython-anchor.md a\n"
    "   # an indented comment\n"
    "gc\talone\tcycles\t1\t92\t-\tms\tcpython-anchor.md k; 3.13t only\r\n"
    "mutex\tcontended\tpymutex\tfour\t1.7e8\t4.9e7\tops/s\tb\n"     /* bad threads */
    "mutex\tcontended\tpymutex\t2\t1.79e8\n"                       /* too few fields */
    "tss\tset_get\ttss\t1\t-\t-\tns/op\th\n"                       /* no figure */
    "refshared\tthreads\tshared\t2\t3.02e7\t1.48e8\tops/s\t-";     /* no final newline */

Test(data_files, anchors_fixture)
{
    char *diag = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&diag, &len);
    cr_assert_not_null(f);
    bench_anchor a[8];
    size_t n = bench_records_parse(anchors_fixture, "anchors.tsv", bench_anchor_parse, a,
                                   sizeof a[0], 8, f);
    fclose(f);
    cr_assert_eq(n, 3, "%zu records; diagnostics:\n%s", n, diag);
    cr_assert_str_eq(a[0].workload, "mutex");
    cr_assert_str_eq(a[0].measure, "uncontended");
    cr_assert_str_eq(a[0].subject, "pymutex");
    cr_assert_eq(a[0].threads, 1);
    cr_assert(near(a[0].ft, 5.42, 1e-12) && near(a[0].gil, 5.46, 1e-12));
    cr_assert_str_eq(a[0].unit, "ns/op");
    cr_assert_str_eq(a[0].source, "cpython-anchor.md a");
    cr_assert(near(a[1].ft, 92, 1e-12) && isnan(a[1].gil), "'-' is no figure");
    cr_assert_str_eq(a[1].source, "cpython-anchor.md k; 3.13t only", "CR and blanks go");
    cr_assert_str_eq(a[2].workload, "refshared");
    cr_assert_str_eq(a[2].source, "", "'-' source is empty");
    /* each malformed line is reported with its line number, and skipped */
    cr_assert_not_null(strstr(diag, "anchors.tsv:7: bad thread count 'four'; line skipped"),
                       "%s", diag);
    cr_assert_not_null(strstr(diag, "anchors.tsv:8: expected 8 tab-separated fields, found 5"),
                       "%s", diag);
    cr_assert_not_null(strstr(diag, "anchors.tsv:9: no figure for either build"), "%s", diag);
    cr_assert_null(strstr(diag, "anchors.tsv:5:"), "comments are not errors: %s", diag);
    free(diag);
}

Test(data_files, records_beyond_max_are_reported)
{
    char *diag = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&diag, &len);
    bench_anchor a[1];
    size_t n = bench_records_parse(anchors_fixture, "x", bench_anchor_parse, a, sizeof a[0],
                                   1, f);
    fclose(f);
    cr_assert_eq(n, 1);
    cr_assert_not_null(strstr(diag, "x:6: more than 1 records"), "%s", diag);
    free(diag);
}

Test(data_files, targets)
{
    const char *text =
        "# workload measure subject threads kind bound limit judged text\n"
        "mutex\tuncontended\tpymutex/pthread\t1\tvalue\t<=\t0.6\tboth\tPyMutex/pthread <= 0.60x\n"
        "mutex\tcontended\tpymutex/pthread\t*\tvalue\t>=\t1.0\tboth\tcontended >= 1.00x\n"
        "listbuild\tthreads\tprivate\t2\tscaling\t<=\t1.05\tgil\tspeed-up (GIL)\n"
        "listshared\tthreads\tshared\t1\ttime_ft_over_gil\t<=\t1.2\tft\tFT/GIL time\n"
        "mutex\tcontended\tpymutex\t1\tspeed\t<=\t1\tft\tbad kind\n"
        "mutex\tcontended\tpymutex\t1\tvalue\t<\t1\tft\tbad bound\n"
        "mutex\tcontended\tpymutex\t1\tvalue\t<=\tx\tft\tbad limit\n"
        "mutex\tcontended\tpymutex\t1\tvalue\t<=\t1\tnone\tbad judged\n";
    char *diag = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&diag, &len);
    bench_target t[8];
    size_t n = bench_records_parse(text, "targets.tsv", bench_target_parse, t, sizeof t[0],
                                   8, f);
    fclose(f);
    cr_assert_eq(n, 4, "%zu; %s", n, diag);
    cr_assert_str_eq(t[0].subject, "pymutex/pthread");
    cr_assert(t[0].at_most && near(t[0].limit, 0.6, 1e-12));
    cr_assert_eq(t[0].kind, BENCH_TARGET_VALUE);
    cr_assert_eq(t[0].judged, BENCH_JUDGED_BOTH);
    cr_assert_str_eq(t[0].text, "PyMutex/pthread <= 0.60x", "the text keeps its blanks");
    cr_assert_eq(t[1].threads, 0, "'*': every thread count");
    cr_assert_not(t[1].at_most);
    cr_assert_eq(t[2].kind, BENCH_TARGET_SCALING);
    cr_assert_eq(t[2].judged, BENCH_JUDGED_GIL);
    cr_assert_eq(t[3].kind, BENCH_TARGET_TIME_FT_GIL);
    cr_assert_eq(t[3].judged, BENCH_JUDGED_FT);
    cr_assert_not_null(strstr(diag, "targets.tsv:6: bad kind 'speed'"), "%s", diag);
    cr_assert_not_null(strstr(diag, "targets.tsv:7: bad bound '<'"), "%s", diag);
    cr_assert_not_null(strstr(diag, "targets.tsv:8: bad limit 'x'"), "%s", diag);
    cr_assert_not_null(strstr(diag, "targets.tsv:9: bad judged build 'none'"), "%s", diag);
    free(diag);
}

/* ---- JSON -------------------------------------------------------------------------- */

/* What bench_json wrote, as a string (caller frees). */
static char *
json_text(void (*write)(bench_json *j), int *rc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    bench_json j;
    bench_json_init(&j, f);
    write(&j);
    *rc = bench_json_finish(&j);
    fclose(f);
    return text;
}

static char *
string_literal(const char *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    bench_json_write_string(f, s);
    fclose(f);
    return text;
}

static void
expect_literal(const char *s, const char *want)
{
    char *got = string_literal(s);
    cr_assert_str_eq(got, want, "'%s' written as %s, want %s", s, got, want);
    free(got);
}

Test(json, string_escapes)
{
    expect_literal("plain", "\"plain\"");
    expect_literal("say \"hi\"", "\"say \\\"hi\\\"\"");
    expect_literal("C:\\dir", "\"C:\\\\dir\"");
    expect_literal("a\nb\tc\rd", "\"a\\nb\\tc\\rd\"");
    expect_literal("\b\f", "\"\\b\\f\"");
    expect_literal("\x01\x1f", "\"\\u0001\\u001f\"");
    expect_literal("/ and \x7f pass", "\"/ and \x7f pass\"");
    expect_literal("", "\"\"");
}

Test(json, utf8_passes_and_garbage_is_replaced)
{
    expect_literal("\xc2\xb5s and \xe2\x80\x93", "\"\xc2\xb5s and \xe2\x80\x93\"");
    expect_literal("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"");
    expect_literal("x\xffy", "\"x\\ufffdy\"");                 /* never valid */
    expect_literal("\xc3(", "\"\\ufffd(\"");                   /* truncated sequence */
    expect_literal("\xc0\xaf", "\"\\ufffd\\ufffd\"");          /* overlong '/' */
    expect_literal("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");  /* a surrogate */
    expect_literal("end\xe2\x80", "\"end\\ufffd\\ufffd\"");    /* cut at the end */
}

static void
write_numbers(bench_json *j)
{
    bench_json_array_begin(j);
    bench_json_number(j, 5.42);
    bench_json_number(j, NAN);
    bench_json_number(j, INFINITY);
    bench_json_number(j, -INFINITY);
    bench_json_number(j, 1.79e8);
    bench_json_number(j, 0.1 + 0.2);
    bench_json_int(j, -3);
    bench_json_bool(j, true);
    bench_json_null(j);
    bench_json_string(j, NULL);
    bench_json_array_end(j);
}

Test(json, numbers_round_trip_and_nan_is_null)
{
    int rc;
    char *text = json_text(write_numbers, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(text, "[5.42, null, null, null, 179000000, 0.30000000000000004, -3, true, "
                           "null, null]\n");
    free(text);
}

static void
write_document(bench_json *j)
{
    bench_json_object_begin(j);
    bench_json_key(j, "schema");
    bench_json_string(j, "ftrt-bench/1");
    bench_json_key(j, "empty");
    bench_json_object_begin(j);
    bench_json_object_end(j);
    bench_json_key(j, "measurements");
    bench_json_array_begin(j);
    for (int i = 0; i < 2; i++) {
        bench_json_object_begin(j);
        bench_json_key(j, "samples");
        bench_json_array_begin(j);
        bench_json_number(j, 1.5);
        bench_json_number(j, 2);
        bench_json_array_end(j);
        bench_json_object_end(j);
    }
    bench_json_array_end(j);
    bench_json_key(j, "none");
    bench_json_array_begin(j);
    bench_json_array_end(j);
    bench_json_object_end(j);
}

Test(json, document_layout)
{
    int rc;
    char *text = json_text(write_document, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(text,
                     "{\n"
                     "  \"schema\": \"ftrt-bench/1\",\n"
                     "  \"empty\": {},\n"
                     "  \"measurements\": [\n"
                     "    {\n"
                     "      \"samples\": [1.5, 2]\n"
                     "    },\n"
                     "    {\n"
                     "      \"samples\": [1.5, 2]\n"
                     "    }\n"
                     "  ],\n"
                     "  \"none\": []\n"
                     "}\n");
    free(text);
}

static void
write_unbalanced(bench_json *j)
{
    bench_json_object_begin(j);
    bench_json_array_begin(j);   /* no key: misuse */
    bench_json_array_end(j);
}

static void
write_mismatched(bench_json *j)
{
    bench_json_array_begin(j);
    bench_json_object_end(j);
}

Test(json, misuse_is_reported)
{
    int rc;
    free(json_text(write_unbalanced, &rc));
    cr_assert_eq(rc, -1, "open object, value without a key");
    free(json_text(write_mismatched, &rc));
    cr_assert_eq(rc, -1, "] closed by }");
}
