/* The report's chart (bench/chart.c): ftrt-bench --chart FILE.svg.
 *
 * A standalone SVG document (opens in any browser, no script, no external
 * resource) with a grid of panels:
 *   - scaling panels: speed-up against thread count, one curve per build
 *     (free-threaded, GIL), and the ideal line y = x capped at the number
 *     of cores (the machine cannot do better than its cores);
 *   - histogram panels: counts per power-of-two bucket (the stop-the-world
 *     pause histogram), log-scaled time on the x axis.
 * chart.c only lays out and writes what it is given: the driver
 * (ftrt_bench.c) collects the figures.  Pure apart from the FILE it writes,
 * so the unit test (tests/bench/test_chart.c) checks the SVG text. */
#ifndef FTRT_BENCH_CHART_H
#define FTRT_BENCH_CHART_H

#include <stddef.h>
#include <stdio.h>

typedef enum bench_chart_build {
    BENCH_CHART_FT,    /* free-threaded */
    BENCH_CHART_GIL,
} bench_chart_build;

typedef struct bench_chart_curve {
    bench_chart_build build;
    size_t n;
    const double *threads;    /* x: thread counts, ascending */
    const double *value;      /* y: speed-up over T=1 (median) */
    const double *lo, *hi;    /* optional (NULL): min-max band around value */
} bench_chart_curve;

typedef struct bench_chart_panel {
    const char *title;        /* e.g. "listbuild: private lists" */
    size_t n_curves;          /* 0..2 */
    bench_chart_curve curves[2];
    double cores;             /* the ideal line: y = min(x, cores); 0: y = x */
} bench_chart_panel;

typedef struct bench_chart_hist {
    const char *title;        /* e.g. "time to stop, 3 busy threads (FT)" */
    size_t n;                 /* buckets */
    const double *lower_ns;   /* each bucket's lower bound, ascending (bucket
                                 i covers [lower_ns[i], lower_ns[i + 1])) */
    const double *count;
} bench_chart_hist;

typedef struct bench_chart {
    const char *title;        /* "ftrt-bench: free-threaded vs GIL" */
    const char *subtitle;     /* machine, date, mode (may be NULL) */
    size_t n_panels;
    const bench_chart_panel *panels;
    size_t n_hists;
    const bench_chart_hist *hists;
} bench_chart;

/* Write c as a standalone SVG document.  Returns 0, or -1 if a write
 * failed.  Text is XML-escaped; NaN or missing points are skipped. */
int bench_chart_svg(FILE *out, const bench_chart *c);

#endif /* FTRT_BENCH_CHART_H */
