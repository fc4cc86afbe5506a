/* Unit test of the report's chart (bench/chart.c): the SVG it writes for a
 * fixture (two scaling panels with both builds, one histogram) and for the
 * awkward cases (NaN points, empty panels, hostile titles, a failing
 * stream).  Only what chart.c defines as observable is checked: the
 * document's shape, its well-formedness, the escaping, and the elements
 * counted by their class (curve, pt, ideal, bar, nodata, ptitle); never
 * coordinates. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chart.h"
#include "harness.h"

#define MICRO "\xC2\xB5"
#define ELLIPSIS "\xE2\x80\xA6"

/* ---- the fixture ---------------------------------------------------------------- */

static const double threads4[] = {1, 2, 4, 8};
static const double ft_list[] = {1.0, 2.03, 1.69, 1.7};
static const double ft_list_lo[] = {1.0, 1.9, 1.5, 1.55};
static const double ft_list_hi[] = {1.0, 2.1, 1.8, 1.8};
static const double gil_list[] = {1.0, 0.70, 0.71, 0.70};
static const double ft_dict[] = {1.0, 1.8, 1.9, 1.85};
static const double gil_dict[] = {1.0, 0.8, 0.75, 0.74};

/* power-of-two buckets from 1024 ns; non-empty: 4096 .. 524288 ns, with an
 * empty bucket inside (131072), so 7 bars */
static const double lower_ns[] = {1024, 2048, 4096, 8192, 16384, 32768,
                                  65536, 131072, 262144, 524288, 1048576, 2097152};
static const double counts[] = {0, 0, 35, 2, 1937, 21, 2, 0, 1, 2, 0, 0};
enum { FIXTURE_BARS = 7 };

#define DICT_TITLE "dictmix <&> \"quoted\" 'single'"

static bench_chart_panel fixture_panels[2];
static bench_chart_hist fixture_hist;

static bench_chart
fixture(void)
{
    fixture_panels[0] = (bench_chart_panel){
        .title = "listbuild: private lists",
        .n_curves = 2,
        .curves = {
            {BENCH_CHART_FT, 4, threads4, ft_list, ft_list_lo, ft_list_hi},
            {BENCH_CHART_GIL, 4, threads4, gil_list, NULL, NULL},
        },
        .cores = 2,
    };
    fixture_panels[1] = (bench_chart_panel){
        .title = DICT_TITLE,
        .n_curves = 2,
        .curves = {
            {BENCH_CHART_FT, 4, threads4, ft_dict, NULL, NULL},
            {BENCH_CHART_GIL, 4, threads4, gil_dict, NULL, NULL},
        },
        .cores = 0,
    };
    fixture_hist = (bench_chart_hist){
        .title = "time to stop, 3 busy threads (FT)",
        .n = sizeof counts / sizeof counts[0],
        .lower_ns = lower_ns,
        .count = counts,
    };
    return (bench_chart){
        .title = "ftrt-bench: free-threaded vs GIL",
        .subtitle = "2 cores, test machine, --quick",
        .n_panels = 2,
        .panels = fixture_panels,
        .n_hists = 1,
        .hists = &fixture_hist,
    };
}

/* ---- helpers ----------------------------------------------------------------------- */

/* The chart as a string (free it); *rc: what bench_chart_svg returned. */
static char *
render(const bench_chart *c, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    *rc = bench_chart_svg(f, c);
    cr_assert_eq(fclose(f), 0);
    cr_assert_not_null(buf);
    cr_assert_eq(strlen(buf), len, "no NUL byte inside the document");
    return buf;
}

static char *
render_ok(const bench_chart *c)
{
    int rc = -2;
    char *svg = render(c, &rc);
    cr_assert_eq(rc, 0, "bench_chart_svg returned %d", rc);
    return svg;
}

static size_t
count(const char *s, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (const char *p = strstr(s, needle); p; p = strstr(p + len, needle)) {
        n++;
    }
    return n;
}

static bool
name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == ':' || c == '.';
}

/* A small well-formedness check: tags balance (a stack of names), one root
 * element, attribute values quoted, every '&' starts an entity, no '<' in
 * text.  Skips the XML declaration, comments and CDATA.  On failure, *why
 * says what and where. */
static bool
well_formed(const char *s, char *why, size_t why_size)
{
    enum { DEPTH = 64, NAME = 64 };
    char stack[DEPTH][NAME];
    int depth = 0, roots = 0;
    const char *p = s;
#define FAIL(...) do { snprintf(why, why_size, __VA_ARGS__); return false; } while (0)
    while (*p) {
        if (*p == '&') {
            const char *q = p + 1;
            if (*q == '#') {
                q++;
            }
            const char *start = q;
            while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                   (*q >= '0' && *q <= '9')) {
                q++;
            }
            if (q == start || *q != ';') {
                FAIL("bare '&' at offset %td", p - s);
            }
            p = q + 1;
            continue;
        }
        if (*p == '>') {
            FAIL("bare '>' at offset %td", p - s);
        }
        if (*p != '<') {
            if (depth == 0 && *p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
                FAIL("text outside the root element at offset %td", p - s);
            }
            p++;
            continue;
        }
        if (strncmp(p, "<?", 2) == 0) {
            const char *e = strstr(p, "?>");
            if (!e || roots) {
                FAIL("bad processing instruction at offset %td", p - s);
            }
            p = e + 2;
            continue;
        }
        if (strncmp(p, "<!--", 4) == 0 || strncmp(p, "<![CDATA[", 9) == 0) {
            const char *e = strstr(p, p[2] == '-' ? "-->" : "]]>");
            if (!e) {
                FAIL("unterminated comment or CDATA at offset %td", p - s);
            }
            p = e + 3;
            continue;
        }
        bool closing = p[1] == '/';
        const char *n = p + 1 + closing;
        size_t len = 0;
        while (name_char(n[len])) {
            len++;
        }
        if (len == 0 || len >= NAME) {
            FAIL("bad tag name at offset %td", p - s);
        }
        /* to the end of the tag, over quoted attribute values */
        const char *q = n + len;
        char quote = 0;
        while (*q && (quote || *q != '>')) {
            if (quote && *q == quote) {
                quote = 0;
            } else if (!quote && (*q == '"' || *q == '\'')) {
                quote = *q;
            } else if (quote && *q == '<') {
                FAIL("'<' in an attribute value at offset %td", q - s);
            } else if (!quote && *q == '=' && q[1] != '"' && q[1] != '\'') {
                FAIL("unquoted attribute value at offset %td", q - s);
            }
            q++;
        }
        if (!*q) {
            FAIL("unterminated tag at offset %td", p - s);
        }
        if (closing) {
            if (depth == 0 || strlen(stack[depth - 1]) != len ||
                strncmp(stack[depth - 1], n, len) != 0) {
                FAIL("</%.*s> at offset %td closes <%s>", (int)len, n, p - s,
                     depth ? stack[depth - 1] : "(nothing)");
            }
            depth--;
        } else if (q[-1] != '/') {
            if (depth == DEPTH) {
                FAIL("nesting deeper than %d", DEPTH);
            }
            if (depth == 0 && roots++) {
                FAIL("a second root element at offset %td", p - s);
            }
            memcpy(stack[depth], n, len);
            stack[depth][len] = 0;
            depth++;
        } else if (depth == 0) {
            FAIL("an empty root element at offset %td", p - s);
        }
        p = q + 1;
    }
    if (depth) {
        FAIL("<%s> is never closed", stack[depth - 1]);
    }
    if (roots != 1) {
        FAIL("%d root elements", roots);
    }
#undef FAIL
    return true;
}

static void
assert_well_formed(const char *svg)
{
    char why[160] = "";
    cr_assert(well_formed(svg, why, sizeof why), "not well-formed: %s", why);
}

/* The text of the first element carrying class="cls", at most size-1 bytes. */
static bool
text_of(const char *svg, const char *cls, char *buf, size_t size)
{
    char attr[64];
    snprintf(attr, sizeof attr, "class=\"%s\"", cls);
    const char *a = strstr(svg, attr);
    if (!a) {
        return false;
    }
    const char *start = strchr(a, '>');
    const char *end = start ? strchr(start, '<') : NULL;
    if (!end) {
        return false;
    }
    size_t len = (size_t)(end - start - 1);
    if (len >= size) {
        len = size - 1;
    }
    memcpy(buf, start + 1, len);
    buf[len] = 0;
    return true;
}

/* ---- the document -------------------------------------------------------------------- */

Test(chart, is_one_svg_document)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    const char *root = svg;
    if (strncmp(root, "<?xml", 5) == 0) {
        root = strstr(root, "?>");
        cr_assert_not_null(root);
        root += 2;
        while (*root == '\n' || *root == ' ') {
            root++;
        }
    }
    cr_assert(strncmp(root, "<svg", 4) == 0, "starts with: %.20s", root);
    size_t len = strlen(svg);
    while (len && (svg[len - 1] == '\n' || svg[len - 1] == ' ')) {
        len--;
    }
    cr_assert(len >= 6 && strncmp(svg + len - 6, "</svg>", 6) == 0, "ends badly");
    cr_assert(strstr(svg, "xmlns=\"http://www.w3.org/2000/svg\""));
    cr_assert(strstr(svg, "viewBox=\"0 0 "));
    cr_assert(strstr(svg, " width=\"") && strstr(svg, " height=\""));
    cr_assert_eq(count(svg, "<svg"), 1);
    free(svg);
}

Test(chart, is_well_formed)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    assert_well_formed(svg);
    free(svg);
}

Test(chart, checker_rejects_broken_documents)
{
    char why[160];
    cr_assert(well_formed("<?xml version=\"1.0\"?>\n<svg a=\"1\"><g><x/></g></svg>\n",
                          why, sizeof why), "%s", why);
    cr_assert_not(well_formed("<svg><g></svg>", why, sizeof why));
    cr_assert_not(well_formed("<svg><g></g>", why, sizeof why));
    cr_assert_not(well_formed("<svg>a & b</svg>", why, sizeof why));
    cr_assert_not(well_formed("<svg>a < b</svg>", why, sizeof why));
    cr_assert_not(well_formed("<svg x=1></svg>", why, sizeof why));
    cr_assert_not(well_formed("<svg></svg><svg></svg>", why, sizeof why));
}

Test(chart, title_and_subtitle_at_the_top)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    char buf[256];
    cr_assert(text_of(svg, "title", buf, sizeof buf));
    cr_assert_str_eq(buf, "ftrt-bench: free-threaded vs GIL");
    cr_assert(text_of(svg, "subtitle", buf, sizeof buf));
    cr_assert_str_eq(buf, "2 cores, test machine, --quick");
    cr_assert_lt(strstr(svg, "class=\"title\""), strstr(svg, "class=\"panel\""));
    cr_assert_eq(count(svg, "class=\"ptitle\""), 3, "one title per panel");
    free(svg);
}

Test(chart, text_is_escaped)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    cr_assert(strstr(svg, "dictmix &lt;&amp;&gt;"), "escaped title missing");
    cr_assert_null(strstr(svg, "<&>"), "raw title in the document");
    cr_assert_null(strstr(svg, "\"quoted\""));
    cr_assert_null(strstr(svg, "'single'"));
    char buf[256];
    cr_assert(strstr(svg, "&quot;quoted&quot;"));
    cr_assert(text_of(svg, "ptitle", buf, sizeof buf));
    assert_well_formed(svg);
    free(svg);
}

Test(chart, odd_bytes_in_titles_stay_well_formed)
{
    bench_chart_panel pn = {.title = "bad \xFF byte, \x01 control, \xC3 cut", .n_curves = 0};
    bench_chart c = {.title = "t\xE2\x82", .n_panels = 1, .panels = &pn};
    char *svg = render_ok(&c);
    cr_assert_null(strchr(svg, '\xFF'));
    cr_assert_null(strchr(svg, '\x01'));
    assert_well_formed(svg);
    free(svg);
}

Test(chart, long_titles_end_in_an_ellipsis)
{
    char title[301];
    for (int i = 0; i < 300; i++) {
        title[i] = (char)('a' + i % 26);
    }
    title[300] = 0;
    bench_chart c = fixture();
    fixture_panels[0].title = title;
    c.title = title;
    char *svg = render_ok(&c);
    char buf[512];
    cr_assert(text_of(svg, "ptitle", buf, sizeof buf));
    size_t len = strlen(buf);
    cr_assert_gt(len, 20, "keeps most of it: %s", buf);
    cr_assert_lt(len, 100, "shortened: %zu bytes", len);
    cr_assert(strcmp(buf + len - 3, ELLIPSIS) == 0, "ends in an ellipsis: %s", buf);
    cr_assert(strncmp(buf, title, len - 3) == 0, "the start of the title");
    cr_assert(text_of(svg, "title", buf, sizeof buf));
    cr_assert_lt(strlen(buf), 150);

    /* a title of about 60 characters, words and figures, fits a panel whole */
    const char *sixty = "dictmix: shared dict, 90% reads and 10% writes, 2 to 8 threads";
    fixture_panels[0].title = sixty;
    free(svg);
    svg = render_ok(&c);
    cr_assert(text_of(svg, "ptitle", buf, sizeof buf));
    cr_assert_str_eq(buf, sixty);
    free(svg);
}

Test(chart, fonts_are_readable)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    cr_assert(strstr(svg, "font-family=\"sans-serif\""));
    size_t n = 0;
    for (const char *p = strstr(svg, "font-size=\""); p; p = strstr(p + 1, "font-size=\"")) {
        double px = strtod(p + 11, NULL);
        cr_assert_geq(px, 11.0, "font-size %g", px);
        n++;
    }
    cr_assert_gt(n, 10);
    cr_assert_eq(n, count(svg, "<text"), "every text has its size");
    free(svg);
}

Test(chart, numbers_are_finite)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    cr_assert_null(strstr(svg, "nan"));
    cr_assert_null(strstr(svg, "inf"));
    cr_assert_null(strstr(svg, "NAN"));
    cr_assert_null(strstr(svg, "INF"));
    free(svg);
}

/* ---- scaling panels ------------------------------------------------------------------------ */

Test(scaling, one_path_per_curve)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, "class=\"curve "), 4);
    cr_assert_eq(count(svg, "class=\"curve ft\""), 2);
    cr_assert_eq(count(svg, "class=\"curve gil\""), 2);
    free(svg);
}

Test(scaling, one_marker_per_point)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, "class=\"pt ft\""), 8);
    cr_assert_eq(count(svg, "class=\"pt gil\""), 8);
    free(svg);
}

Test(scaling, one_ideal_line_per_panel)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, "class=\"ideal\""), 2);
    cr_assert_eq(count(svg, "class=\"panel\""), 2);
    free(svg);
}

Test(scaling, band_only_where_lo_and_hi_are_given)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, "class=\"band "), 1);
    cr_assert_eq(count(svg, "class=\"band ft\""), 1);
    free(svg);
}

Test(scaling, legend_names_the_builds_and_the_ideal)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, ">free-threaded</text>"), 2);
    cr_assert_eq(count(svg, ">GIL</text>"), 2);
    cr_assert_eq(count(svg, ">ideal"), 2);
    cr_assert(strstr(svg, ">ideal (2 cores)</text>"), "the cap is named");
    free(svg);
}

Test(scaling, axes_are_labelled_at_the_thread_counts)
{
    bench_chart c = fixture();
    c.n_panels = 1;
    c.n_hists = 0;
    char *svg = render_ok(&c);
    cr_assert(strstr(svg, ">threads</text>"));
    cr_assert(strstr(svg, ">speed-up"));
    cr_assert(strstr(svg, "text-anchor=\"middle\">1</text>"));
    cr_assert(strstr(svg, "text-anchor=\"middle\">8</text>"));
    cr_assert(strstr(svg, "text-anchor=\"end\">0</text>"), "y starts at 0");
    free(svg);
}

Test(scaling, nan_and_inf_points_are_skipped)
{
    double v[] = {1.0, NAN, 1.69, 1.7};
    double t[] = {1, 2, INFINITY, 8};
    bench_chart_panel pn = {
        .title = "gaps",
        .n_curves = 2,
        .curves = {
            {BENCH_CHART_FT, 4, threads4, v, NULL, NULL},
            {BENCH_CHART_GIL, 4, t, gil_list, NULL, NULL},
        },
        .cores = 4,
    };
    bench_chart c = {.title = "nan", .n_panels = 1, .panels = &pn};
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, "class=\"pt ft\""), 3);
    cr_assert_eq(count(svg, "class=\"pt gil\""), 3);
    cr_assert_eq(count(svg, "class=\"curve "), 2);
    cr_assert_null(strstr(svg, "nan\""));
    cr_assert_null(strstr(svg, "inf"));
    assert_well_formed(svg);
    free(svg);
}

Test(scaling, empty_panels_say_no_data)
{
    double nan4[] = {NAN, NAN, NAN, NAN};
    bench_chart_panel pn[3] = {
        {.title = "no curves", .n_curves = 0},
        {.title = "empty curve", .n_curves = 1,
         .curves = {{BENCH_CHART_FT, 0, NULL, NULL, NULL, NULL}}},
        {.title = "all NaN", .n_curves = 1,
         .curves = {{BENCH_CHART_GIL, 4, threads4, nan4, NULL, NULL}}, .cores = 2},
    };
    bench_chart c = {.title = "empty", .n_panels = 3, .panels = pn};
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, ">no data</text>"), 3);
    cr_assert_eq(count(svg, "class=\"curve "), 0);
    cr_assert_eq(count(svg, "class=\"ideal\""), 0);
    assert_well_formed(svg);
    free(svg);
}

/* ---- histograms ------------------------------------------------------------------------------ */

Test(histogram, one_bar_per_non_empty_bucket)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, "class=\"bar\""), FIXTURE_BARS);
    cr_assert_eq(count(svg, "class=\"hist\""), 1);
    free(svg);
}

Test(histogram, time_axis_in_units_from_the_first_to_the_last_bucket)
{
    bench_chart c = fixture();
    char *svg = render_ok(&c);
    cr_assert(strstr(svg, ">10 " MICRO "s</text>"));
    cr_assert(strstr(svg, ">100 " MICRO "s</text>"));
    cr_assert(strstr(svg, ">1 ms</text>"));
    /* the empty buckets from 1024 ns are left out, and so is their range */
    cr_assert_null(strstr(svg, ">1 " MICRO "s</text>"));
    cr_assert_null(strstr(svg, ">10 ms</text>"));
    cr_assert(strstr(svg, ">count</text>"), "the y axis is labelled");
    free(svg);
}

Test(histogram, short_ranges_get_more_ticks)
{
    double lo[] = {200, 400, 800};
    double n[] = {5, 10, 3};
    bench_chart_hist h = {.title = "short", .n = 3, .lower_ns = lo, .count = n};
    bench_chart c = {.title = "ns", .n_hists = 1, .hists = &h};
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, "class=\"bar\""), 3);
    cr_assert(strstr(svg, ">500 ns</text>"));
    cr_assert(strstr(svg, ">1 " MICRO "s</text>"));
    assert_well_formed(svg);
    free(svg);
}

Test(histogram, empty_and_odd_buckets)
{
    double lo[] = {0, 1000, 2000, 4000};
    double zero[] = {0, 0, 0, 0};
    double odd[] = {3, NAN, -1, 7};
    bench_chart_hist h[3] = {
        {.title = "all zero", .n = 4, .lower_ns = lo, .count = zero},
        {.title = "nothing", .n = 0, .lower_ns = NULL, .count = NULL},
        {.title = "odd", .n = 4, .lower_ns = lo, .count = odd},
    };
    bench_chart c = {.title = "hists", .n_hists = 3, .hists = h};
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, ">no data</text>"), 2);
    cr_assert_eq(count(svg, "class=\"bar\""), 2, "NaN and negative counts are skipped");
    cr_assert_null(strstr(svg, "nan"));
    cr_assert_null(strstr(svg, "inf"));
    assert_well_formed(svg);
    free(svg);
}

/* ---- odd charts and failures ---------------------------------------------------------------------- */

Test(chart, nothing_to_draw)
{
    bench_chart c = {.title = NULL, .subtitle = NULL};
    char *svg = render_ok(&c);
    cr_assert(strstr(svg, ">no data</text>"));
    assert_well_formed(svg);
    free(svg);
}

Test(chart, many_panels_are_well_formed)
{
    bench_chart_panel pn[7];
    bench_chart c = fixture();
    for (int i = 0; i < 7; i++) {
        pn[i] = fixture_panels[i % 2];
    }
    c.n_panels = 7;
    c.panels = pn;
    char *svg = render_ok(&c);
    cr_assert_eq(count(svg, "class=\"ideal\""), 7);
    cr_assert_eq(count(svg, "class=\"curve "), 14);
    assert_well_formed(svg);
    free(svg);
}

Test(chart, a_failing_stream_returns_minus_one)
{
    FILE *f = fopen("/dev/full", "w");
    if (!f) {
        cr_skip_test("no /dev/full");
    }
    setvbuf(f, NULL, _IONBF, 0);
    bench_chart c = fixture();
    cr_assert_eq(bench_chart_svg(f, &c), -1);
    fclose(f);

    f = fopen("/dev/full", "w");   /* buffered: the error shows at the flush */
    cr_assert_not_null(f);
    cr_assert_eq(bench_chart_svg(f, &c), -1);
    fclose(f);
}

Test(chart, null_arguments_return_minus_one)
{
    bench_chart c = fixture();
    cr_assert_eq(bench_chart_svg(NULL, &c), -1);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(bench_chart_svg(f, NULL), -1);
    fclose(f);
    free(buf);
}
