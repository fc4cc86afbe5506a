/* The report's chart: see chart.h.
 *
 * Layout: a header (title, subtitle) over a grid of equal cells, the scaling
 * panels first, then the histograms, two cells a row up to four cells and
 * three a row beyond.  Each cell holds a plot area framed by tick labels and
 * axis labels; the scaling panels add a legend under the x axis.
 *
 * Numbers are written by emit() below, not by printf's %f, so that the SVG
 * does not depend on the process's locale (a decimal comma would break every
 * coordinate).  Text goes through put_text(), which escapes XML, replaces
 * what XML cannot carry (control characters, invalid UTF-8) and shortens it
 * with an ellipsis to the width it is given.  Widths of text are estimated
 * from the font size (no font metrics here): the estimates are generous, so
 * shortened text errs on the side of fitting. */
#include "chart.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ---- geometry (px) ---------------------------------------------------------- */

enum {
    CELL_W = 500,
    CELL_H = 350,
    CELL_GAP = 16,
    MARGIN = 20,
    HEADER_TITLE_ONLY = 60,
    HEADER_WITH_SUBTITLE = 82,

    /* inside a cell: the plot area's distance to the cell's edges */
    PAD_LEFT = 66,
    PAD_RIGHT = 20,
    PAD_TOP = 42,
    PAD_BOTTOM_LEGEND = 82,    /* tick labels, axis label, legend */
    PAD_BOTTOM = 58,           /* tick labels, axis label */

    FONT_TITLE = 20,
    FONT_SUBTITLE = 13,
    FONT_PANEL_TITLE = 13,
    FONT_AXIS = 12,
    FONT_TICK = 11,
    FONT_LEGEND = 12,
};

#define COLOR_FT "#1f6fb4"
#define COLOR_GIL "#e8710a"
#define COLOR_IDEAL "#8a8a8a"
#define COLOR_BAR "#5b7fa6"
#define COLOR_GRID "#e4e4e4"
#define COLOR_AXIS "#555555"
#define COLOR_TEXT "#222222"
#define COLOR_MUTED "#555555"

typedef struct rect {
    double x, y, w, h;
} rect;

/* ---- output ------------------------------------------------------------------- */

/* One number, at most one decimal, "." as the decimal point whatever the
 * locale.  Coordinates only: callers keep them finite and small. */
static void
put_num(FILE *out, double v)
{
    if (!isfinite(v)) {
        v = 0.0;
    }
    v = fmax(-1e9, fmin(v, 1e9));   /* far off the page either way */
    long long tenths = llround(v * 10.0);
    if (tenths < 0) {
        fputc('-', out);
        tenths = -tenths;
    }
    fprintf(out, "%lld", tenths / 10);
    if (tenths % 10 != 0) {
        fprintf(out, ".%lld", tenths % 10);
    }
}

/* A small printf: %v a double through put_num, %d an int, %s a string
 * written as is (markup or a number label: never user text), %% a '%'. */
static void
emit(FILE *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            fputc(*p, out);
            continue;
        }
        p++;
        switch (*p) {
        case 'v':
            put_num(out, va_arg(ap, double));
            break;
        case 'd':
            fprintf(out, "%d", va_arg(ap, int));
            break;
        case 's':
            fputs(va_arg(ap, const char *), out);
            break;
        case '%':
            fputc('%', out);
            break;
        default:   /* not reached with the formats below */
            p--;
            break;
        }
    }
    va_end(ap);
}

/* Decodes one UTF-8 character at s (s[0] != 0): its length in bytes, and
 * *cp the code point, or U+FFFD for a byte that starts no valid sequence
 * (then the length is 1) or for a character XML 1.0 cannot hold. */
static size_t
utf8_next(const unsigned char *s, uint32_t *cp)
{
    unsigned char b = s[0];
    size_t len;
    uint32_t c, min;
    if (b < 0x80) {
        *cp = b;
        return 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
        len = 2, c = b & 0x1F, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3, c = b & 0x0F, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4, c = b & 0x07, min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {   /* also stops at the terminating 0 */
            *cp = 0xFFFD;
            return 1;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF) || c == 0xFFFE ||
        c == 0xFFFF) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = c;
    return len;
}

/* The width of a character in em, a generous estimate for the common
 * sans-serif fonts (Liberation Sans, Arial, Helvetica, DejaVu Sans): no font
 * metrics here, so text is laid out as if it were a little wider than it
 * will be. */
static double
char_em(uint32_t c)
{
    if (c >= 0x80) {
        return 0.8;
    }
    if (c == 'M' || c == 'W' || c == 'm' || c == 'w' || c == '%' || c == '@') {
        return 0.92;
    }
    if (c >= 'A' && c <= 'Z') {
        return 0.74;
    }
    if (c >= '0' && c <= '9') {
        return 0.64;
    }
    if (strchr("ijl.,:;!|' ", (int)c)) {
        return 0.32;
    }
    if (strchr("frt()[]-/\"", (int)c)) {
        return 0.44;
    }
    return 0.6;   /* the other lower-case letters and punctuation */
}

#define BOLD_WIDER 1.1

/* The estimated width in px of s (NULL: 0) in a font size. */
static double
text_width(const char *s, int font_px, bool bold)
{
    double em = 0;
    uint32_t c;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;) {
        p += utf8_next(p, &c);
        em += char_em(c);
    }
    return em * font_px * (bold ? BOLD_WIDER : 1.0);
}

static void
put_codepoint(FILE *out, uint32_t c)
{
    switch (c) {
    case '&':  fputs("&amp;", out); return;
    case '<':  fputs("&lt;", out); return;
    case '>':  fputs("&gt;", out); return;
    case '"':  fputs("&quot;", out); return;
    case '\'': fputs("&#39;", out); return;
    default:   break;
    }
    if (c < 0x20) {
        fputc(' ', out);   /* XML 1.0 allows only tab, LF, CR: one line anyway */
    } else if (c < 0x80) {
        fputc((int)c, out);
    } else if (c < 0x800) {
        fputc((int)(0xC0 | (c >> 6)), out);
        fputc((int)(0x80 | (c & 0x3F)), out);
    } else if (c < 0x10000) {
        fputc((int)(0xE0 | (c >> 12)), out);
        fputc((int)(0x80 | ((c >> 6) & 0x3F)), out);
        fputc((int)(0x80 | (c & 0x3F)), out);
    } else {
        fputc((int)(0xF0 | (c >> 18)), out);
        fputc((int)(0x80 | ((c >> 12) & 0x3F)), out);
        fputc((int)(0x80 | ((c >> 6) & 0x3F)), out);
        fputc((int)(0x80 | (c & 0x3F)), out);
    }
}

/* Writes s (NULL: nothing) escaped, shortened with a trailing ellipsis to
 * fit max_width px in a font size if it is wider (INFINITY: never). */
static void
put_text(FILE *out, const char *s, double max_width, int font_px, bool bold)
{
    if (!s) {
        return;
    }
    const char *ellipsis = "\xE2\x80\xA6";   /* U+2026 HORIZONTAL ELLIPSIS */
    bool cut = text_width(s, font_px, bold) > max_width;
    double room = cut ? max_width - text_width(ellipsis, font_px, bold) : INFINITY;
    double scale = font_px * (bold ? BOLD_WIDER : 1.0), used = 0;
    uint32_t c;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        p += utf8_next(p, &c);
        used += char_em(c) * scale;
        if (used > room) {
            break;
        }
        put_codepoint(out, c);
    }
    if (cut) {
        fputs(ellipsis, out);
    }
}

/* ---- numbers for labels ----------------------------------------------------------- */

/* snprintf's %g, with "." whatever the locale's decimal point. */
static void
format_g(char *buf, size_t size, double v, int digits)
{
    snprintf(buf, size, "%.*g", digits, v);
    for (char *p = buf; *p; p++) {
        if (*p == ',') {
            *p = '.';
        }
    }
}

/* A count on an axis: 2500, 12.5k, 3M. */
static void
format_count(char *buf, size_t size, double v)
{
    if (fabs(v) >= 1e6) {
        format_g(buf, size, v / 1e6, 4);
        strncat(buf, "M", size - strlen(buf) - 1);
    } else if (fabs(v) >= 1e4) {
        format_g(buf, size, v / 1e3, 4);
        strncat(buf, "k", size - strlen(buf) - 1);
    } else {
        format_g(buf, size, v, 6);
    }
}

/* A duration given in ns, in the unit that suits it: "16.4 µs", "1 ms". */
static void
format_time(char *buf, size_t size, double ns)
{
    static const struct {
        double scale;
        const char *unit;
    } units[] = {
        {1e9, "s"}, {1e6, "ms"}, {1e3, "\xC2\xB5s"}, {1.0, "ns"},
    };
    size_t i = 0;
    while (i + 1 < sizeof units / sizeof units[0] && fabs(ns) < units[i].scale * 0.9995) {
        i++;
    }
    char num[16];
    format_g(num, sizeof num, ns / units[i].scale, 3);
    snprintf(buf, size, "%s %s", num, units[i].unit);
}

/* The step of a linear axis from 0 to about max with four to six steps:
 * 1, 2, 2.5 or 5 times a power of ten.  *top: the axis' end, a multiple of
 * the step at or above max. */
static double
nice_axis(double max, double min_step, double *top)
{
    if (!(max > 0) || !isfinite(max)) {
        max = 1.0;
    }
    double raw = max / 5.0;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    double step = f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 2.5 ? 2.5 : f <= 5.0 ? 5.0 : 10.0;
    step *= mag;
    if (step < min_step) {
        step = min_step;
    }
    double n = ceil(max / step - 1e-9);
    *top = (n < 1 ? 1 : n) * step;
    return step;
}

/* ---- shared pieces of a panel ------------------------------------------------------- */

static double
lerp_map(double v, double d0, double d1, double p0, double p1)
{
    return d1 == d0 ? p0 : p0 + (v - d0) * (p1 - p0) / (d1 - d0);
}

static void
cell_background(FILE *out, double x, double y)
{
    emit(out, "<rect x=\"%v\" y=\"%v\" width=\"%d\" height=\"%d\" rx=\"6\" "
              "fill=\"#ffffff\" stroke=\"#d8d8d8\"/>\n", x, y, CELL_W, CELL_H);
}

static void
panel_title(FILE *out, double x, double y, const char *title)
{
    const char *t = title ? title : "";
    double fit = CELL_W - 24;
    emit(out, "<text class=\"ptitle\" x=\"%v\" y=\"%v\" font-size=\"%d\" "
              "font-weight=\"bold\" fill=\"%s\">", x + 12, y + 26, FONT_PANEL_TITLE,
         COLOR_TEXT);
    put_text(out, t, fit, FONT_PANEL_TITLE, true);
    emit(out, "</text>\n");
    if (text_width(t, FONT_PANEL_TITLE, true) > fit) {   /* the whole title on hover */
        emit(out, "<title>");
        put_text(out, t, INFINITY, 0, false);
        emit(out, "</title>\n");
    }
}

static void
no_data(FILE *out, rect p)
{
    emit(out, "<rect x=\"%v\" y=\"%v\" width=\"%v\" height=\"%v\" fill=\"#fafafa\" "
              "stroke=\"%s\"/>\n", p.x, p.y, p.w, p.h, COLOR_GRID);
    emit(out, "<text class=\"nodata\" x=\"%v\" y=\"%v\" font-size=\"14\" "
              "fill=\"#999999\" text-anchor=\"middle\">no data</text>\n",
         p.x + p.w / 2, p.y + p.h / 2 + 5);
}

/* The y axis from 0 to top: grid lines, tick labels, the axis label. */
static void
y_axis(FILE *out, rect p, double top, double step, bool counts, const char *label)
{
    int n = (int)floor(top / step + 0.5);
    for (int i = 0; i <= n; i++) {
        double v = i * step;
        double y = lerp_map(v, 0, top, p.y + p.h, p.y);
        if (i > 0) {
            emit(out, "<line x1=\"%v\" y1=\"%v\" x2=\"%v\" y2=\"%v\" stroke=\"%s\"/>\n",
                 p.x, y, p.x + p.w, y, COLOR_GRID);
        }
        char buf[32];
        if (counts) {
            format_count(buf, sizeof buf, v);
        } else {
            format_g(buf, sizeof buf, v, 4);
        }
        emit(out, "<text class=\"tick\" x=\"%v\" y=\"%v\" font-size=\"%d\" fill=\"%s\" "
                  "text-anchor=\"end\">%s</text>\n",
             p.x - 7, y + 4, FONT_TICK, COLOR_MUTED, buf);
    }
    double lx = p.x - PAD_LEFT + 18, ly = p.y + p.h / 2;
    emit(out, "<text class=\"axis-label\" x=\"%v\" y=\"%v\" font-size=\"%d\" fill=\"%s\" "
              "text-anchor=\"middle\" transform=\"rotate(-90 %v %v)\">%s</text>\n",
         lx, ly, FONT_AXIS, COLOR_TEXT, lx, ly, label);
}

static void
x_axis_label(FILE *out, rect p, const char *label)
{
    emit(out, "<text class=\"axis-label\" x=\"%v\" y=\"%v\" font-size=\"%d\" fill=\"%s\" "
              "text-anchor=\"middle\">%s</text>\n",
         p.x + p.w / 2, p.y + p.h + 36, FONT_AXIS, COLOR_TEXT, label);
}

static void
axis_lines(FILE *out, rect p)
{
    emit(out, "<path d=\"M%v %vV%vH%v\" fill=\"none\" stroke=\"%s\"/>\n",
         p.x, p.y, p.y + p.h, p.x + p.w, COLOR_AXIS);
}

/* A tick on the x axis, labelled unless the label would overlap the
 * previous one (*last_right: the right end of the last label drawn), with a
 * grid line if asked and labelled. */
static void
x_tick(FILE *out, rect p, double x, const char *label, double *last_right, bool grid)
{
    double half = text_width(label, FONT_TICK, false) / 2;
    bool labelled = x - half >= *last_right + 6;
    if (grid && labelled) {
        emit(out, "<line x1=\"%v\" y1=\"%v\" x2=\"%v\" y2=\"%v\" stroke=\"%s\"/>\n",
             x, p.y, x, p.y + p.h, COLOR_GRID);
    }
    emit(out, "<line x1=\"%v\" y1=\"%v\" x2=\"%v\" y2=\"%v\" stroke=\"%s\"/>\n",
         x, p.y + p.h, x, p.y + p.h + 4, COLOR_AXIS);
    if (labelled) {
        emit(out, "<text class=\"tick\" x=\"%v\" y=\"%v\" font-size=\"%d\" fill=\"%s\" "
                  "text-anchor=\"middle\">%s</text>\n",
             x, p.y + p.h + 17, FONT_TICK, COLOR_MUTED, label);
        *last_right = x + half;
    }
}

/* ---- scaling panels ------------------------------------------------------------------ */

static const char *
build_color(bench_chart_build b)
{
    return b == BENCH_CHART_GIL ? COLOR_GIL : COLOR_FT;
}

static const char *
build_class(bench_chart_build b)
{
    return b == BENCH_CHART_GIL ? "gil" : "ft";
}

static const char *
build_name(bench_chart_build b)
{
    return b == BENCH_CHART_GIL ? "GIL" : "free-threaded";
}

static bool
point_ok(const bench_chart_curve *cv, size_t i)
{
    return isfinite(cv->threads[i]) && isfinite(cv->value[i]);
}

static size_t
curve_count(const bench_chart_panel *pn)
{
    return pn->n_curves > 2 ? 2 : pn->n_curves;
}

static bool
curve_usable(const bench_chart_curve *cv)
{
    return cv->n > 0 && cv->threads && cv->value;
}

/* A marker: a circle for the free-threaded build, a square for the GIL one
 * (told apart without colour), with the figures on hover. */
static void
marker(FILE *out, const bench_chart_curve *cv, size_t i, double x, double y, const char *cls)
{
    const char *color = build_color(cv->build);
    if (cv->build == BENCH_CHART_GIL) {
        emit(out, "<rect class=\"%s\" x=\"%v\" y=\"%v\" width=\"8\" height=\"8\" "
                  "fill=\"%s\" stroke=\"#ffffff\" stroke-width=\"1\">",
             cls, x - 4, y - 4, color);
    } else {
        emit(out, "<circle class=\"%s\" cx=\"%v\" cy=\"%v\" r=\"4.5\" fill=\"%s\" "
                  "stroke=\"#ffffff\" stroke-width=\"1\">", cls, x, y, color);
    }
    char t[32], v[32];
    format_g(t, sizeof t, cv->threads[i], 6);
    format_g(v, sizeof v, cv->value[i], 3);
    emit(out, "<title>%s, %s thread%s: %s\xC3\x97", build_name(cv->build), t,
         cv->threads[i] == 1 ? "" : "s", v);
    if (cv->lo && cv->hi && isfinite(cv->lo[i]) && isfinite(cv->hi[i])) {
        char lo[32], hi[32];
        format_g(lo, sizeof lo, cv->lo[i], 3);
        format_g(hi, sizeof hi, cv->hi[i], 3);
        emit(out, " (%s\xE2\x80\x93%s)", lo, hi);
    }
    emit(out, "</title>%s\n", cv->build == BENCH_CHART_GIL ? "</rect>" : "</circle>");
}

/* The min-max band: a translucent area between lo and hi, or a whisker
 * where only one point has both. */
static void
band(FILE *out, const bench_chart_curve *cv, rect p, double xhi, double ytop)
{
    if (!cv->lo || !cv->hi) {
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < cv->n; i++) {
        n += isfinite(cv->threads[i]) && isfinite(cv->lo[i]) && isfinite(cv->hi[i]);
    }
    if (n == 0) {
        return;
    }
    const char *color = build_color(cv->build);
    if (n == 1) {
        for (size_t i = 0; i < cv->n; i++) {
            if (isfinite(cv->threads[i]) && isfinite(cv->lo[i]) && isfinite(cv->hi[i])) {
                double x = lerp_map(cv->threads[i], 0, xhi, p.x, p.x + p.w);
                double y0 = lerp_map(cv->lo[i], 0, ytop, p.y + p.h, p.y);
                double y1 = lerp_map(cv->hi[i], 0, ytop, p.y + p.h, p.y);
                emit(out, "<path class=\"band %s\" d=\"M%v %vV%vM%v %vH%vM%v %vH%v\" "
                          "stroke=\"%s\" stroke-width=\"1.2\" fill=\"none\"/>\n",
                     build_class(cv->build), x, y0, y1, x - 4, y0, x + 4, x - 4, y1,
                     x + 4, color);
            }
        }
        return;
    }
    emit(out, "<polygon class=\"band %s\" fill=\"%s\" fill-opacity=\"0.15\" "
              "stroke=\"none\" points=\"", build_class(cv->build), color);
    for (size_t i = 0; i < cv->n; i++) {   /* along hi, left to right */
        if (isfinite(cv->threads[i]) && isfinite(cv->lo[i]) && isfinite(cv->hi[i])) {
            emit(out, "%v,%v ", lerp_map(cv->threads[i], 0, xhi, p.x, p.x + p.w),
                 lerp_map(cv->hi[i], 0, ytop, p.y + p.h, p.y));
        }
    }
    for (size_t i = cv->n; i-- > 0;) {     /* back along lo */
        if (isfinite(cv->threads[i]) && isfinite(cv->lo[i]) && isfinite(cv->hi[i])) {
            emit(out, "%v,%v ", lerp_map(cv->threads[i], 0, xhi, p.x, p.x + p.w),
                 lerp_map(cv->lo[i], 0, ytop, p.y + p.h, p.y));
        }
    }
    emit(out, "\"/>\n");
}

/* The curve: one path, broken where a point is missing, then its markers. */
static void
curve(FILE *out, const bench_chart_curve *cv, rect p, double xhi, double ytop)
{
    const char *cls = build_class(cv->build);
    emit(out, "<path class=\"curve %s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.2\" "
              "stroke-linejoin=\"round\" d=\"", cls, build_color(cv->build));
    bool pen_down = false;
    for (size_t i = 0; i < cv->n; i++) {
        if (!point_ok(cv, i)) {
            pen_down = false;
            continue;
        }
        emit(out, "%s%v %v", pen_down ? "L" : "M",
             lerp_map(cv->threads[i], 0, xhi, p.x, p.x + p.w),
             lerp_map(cv->value[i], 0, ytop, p.y + p.h, p.y));
        pen_down = true;
    }
    emit(out, "\"/>\n");
    char mcls[16];
    snprintf(mcls, sizeof mcls, "pt %s", cls);
    for (size_t i = 0; i < cv->n; i++) {
        if (point_ok(cv, i)) {
            marker(out, cv, i, lerp_map(cv->threads[i], 0, xhi, p.x, p.x + p.w),
                   lerp_map(cv->value[i], 0, ytop, p.y + p.h, p.y), mcls);
        }
    }
}

/* One legend entry at x (the baseline at y); returns the next entry's x. */
static double
legend_entry(FILE *out, double x, double y, const char *label, const char *color,
             bool dashed, int shape)
{
    emit(out, "<line class=\"key\" x1=\"%v\" y1=\"%v\" x2=\"%v\" y2=\"%v\" stroke=\"%s\" "
              "stroke-width=\"%s\"%s/>\n", x, y - 4, x + 24, y - 4, color,
         dashed ? "1.5" : "2.2", dashed ? " stroke-dasharray=\"6 4\"" : "");
    if (shape == 1) {
        emit(out, "<circle class=\"key\" cx=\"%v\" cy=\"%v\" r=\"4.5\" fill=\"%s\" "
                  "stroke=\"#ffffff\"/>\n", x + 12, y - 4, color);
    } else if (shape == 2) {
        emit(out, "<rect class=\"key\" x=\"%v\" y=\"%v\" width=\"8\" height=\"8\" "
                  "fill=\"%s\" stroke=\"#ffffff\"/>\n", x + 8, y - 8, color);
    }
    emit(out, "<text class=\"legend\" x=\"%v\" y=\"%v\" font-size=\"%d\" fill=\"%s\">",
         x + 30, y, FONT_LEGEND, COLOR_TEXT);
    put_text(out, label, INFINITY, 0, false);
    emit(out, "</text>\n");
    return x + 30 + text_width(label, FONT_LEGEND, false) + 18;
}

static void
legend(FILE *out, const bench_chart_panel *pn, rect p)
{
    bool has[2] = {false, false};
    for (size_t k = 0; k < curve_count(pn); k++) {
        if (curve_usable(&pn->curves[k])) {
            has[pn->curves[k].build == BENCH_CHART_GIL] = true;
        }
    }
    char ideal[64] = "ideal";
    if (pn->cores > 0 && isfinite(pn->cores)) {
        char c[32];
        format_g(c, sizeof c, pn->cores, 6);
        snprintf(ideal, sizeof ideal, "ideal (%s core%s)", c, pn->cores == 1 ? "" : "s");
    }
    /* centred under the plot: add up the widths first */
    double w = 0;
    if (has[0]) {
        w += 48 + text_width("free-threaded", FONT_LEGEND, false);
    }
    if (has[1]) {
        w += 48 + text_width("GIL", FONT_LEGEND, false);
    }
    w += 30 + text_width(ideal, FONT_LEGEND, false);
    double x = p.x + (p.w - w) / 2;
    if (x < p.x - PAD_LEFT + 12) {
        x = p.x - PAD_LEFT + 12;
    }
    double y = p.y + p.h + 62;
    emit(out, "<g class=\"legend\">\n");
    if (has[0]) {
        x = legend_entry(out, x, y, "free-threaded", COLOR_FT, false, 1);
    }
    if (has[1]) {
        x = legend_entry(out, x, y, "GIL", COLOR_GIL, false, 2);
    }
    legend_entry(out, x, y, ideal, COLOR_IDEAL, true, 0);
    emit(out, "</g>\n");
}

/* The smallest finite thread count above after (-INFINITY: the smallest),
 * over the points of every curve; NAN when there is none. */
static double
next_thread_count(const bench_chart_panel *pn, double after)
{
    double best = NAN;
    for (size_t k = 0; k < curve_count(pn); k++) {
        const bench_chart_curve *cv = &pn->curves[k];
        if (!curve_usable(cv)) {
            continue;
        }
        for (size_t i = 0; i < cv->n; i++) {
            double t = cv->threads[i];
            if (point_ok(cv, i) && t > after && !(t >= best)) {
                best = t;
            }
        }
    }
    return best;
}

static void
scaling_panel(FILE *out, const bench_chart_panel *pn, double cx, double cy)
{
    emit(out, "<g class=\"panel\">\n");
    cell_background(out, cx, cy);
    panel_title(out, cx, cy, pn->title);
    rect p = {cx + PAD_LEFT, cy + PAD_TOP, CELL_W - PAD_LEFT - PAD_RIGHT,
              CELL_H - PAD_TOP - PAD_BOTTOM_LEGEND};

    /* the ranges */
    double xmax = -INFINITY, ymax = 0;
    for (size_t k = 0; k < curve_count(pn); k++) {
        const bench_chart_curve *cv = &pn->curves[k];
        if (!curve_usable(cv)) {
            continue;
        }
        for (size_t i = 0; i < cv->n; i++) {
            if (!point_ok(cv, i)) {
                continue;
            }
            xmax = fmax(xmax, cv->threads[i]);
            ymax = fmax(ymax, cv->value[i]);
            if (cv->hi && isfinite(cv->hi[i])) {
                ymax = fmax(ymax, cv->hi[i]);
            }
        }
    }
    if (xmax == -INFINITY) {
        no_data(out, p);
        emit(out, "</g>\n");
        return;
    }
    if (!(xmax > 0)) {
        xmax = 1;
    }
    bool capped = pn->cores > 0 && isfinite(pn->cores);
    double ideal_top = capped ? fmin(xmax, pn->cores) : xmax;
    double ytop;
    double ystep = nice_axis(fmax(ymax, ideal_top) * 1.04, 0, &ytop);
    double xhi = xmax * 1.05;   /* room for the last marker */

    /* grid and axes */
    y_axis(out, p, ytop, ystep, false, "speed-up over 1 thread (\xC3\x97)");
    double last_right = -INFINITY;
    for (double t = next_thread_count(pn, -INFINITY); !isnan(t);
         t = next_thread_count(pn, t)) {
        if (t < 0) {
            continue;
        }
        char buf[32];
        format_g(buf, sizeof buf, t, 6);
        x_tick(out, p, lerp_map(t, 0, xhi, p.x, p.x + p.w), buf, &last_right, true);
    }
    axis_lines(out, p);
    x_axis_label(out, p, "threads");

    /* the ideal line: y = x up to the cores, flat beyond */
    emit(out, "<polyline class=\"ideal\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
              "stroke-dasharray=\"6 4\" points=\"%v,%v ", COLOR_IDEAL, p.x, p.y + p.h);
    if (capped && pn->cores < xmax) {
        emit(out, "%v,%v ", lerp_map(pn->cores, 0, xhi, p.x, p.x + p.w),
             lerp_map(pn->cores, 0, ytop, p.y + p.h, p.y));
    }
    emit(out, "%v,%v\"/>\n", lerp_map(xmax, 0, xhi, p.x, p.x + p.w),
         lerp_map(ideal_top, 0, ytop, p.y + p.h, p.y));

    /* bands under the curves, the GIL curve under the free-threaded one */
    for (size_t k = 0; k < curve_count(pn); k++) {
        if (curve_usable(&pn->curves[k])) {
            band(out, &pn->curves[k], p, xhi, ytop);
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < curve_count(pn); k++) {
            const bench_chart_curve *cv = &pn->curves[k];
            if (curve_usable(cv) && (cv->build == BENCH_CHART_GIL) == (pass == 0)) {
                curve(out, cv, p, xhi, ytop);
            }
        }
    }
    legend(out, pn, p);
    emit(out, "</g>\n");
}

/* ---- histogram panels -------------------------------------------------------------------- */

/* Bucket i's bounds, or false if it cannot be drawn on a log axis. */
static bool
bucket_bounds(const bench_chart_hist *h, size_t i, double *lo, double *hi)
{
    double a = h->lower_ns[i];
    double b = i + 1 < h->n ? h->lower_ns[i + 1] : a * 2;
    if (!isfinite(b) || b <= 0) {
        return false;
    }
    if (!isfinite(a) || a <= 0) {   /* a first bucket [0, b): draw [b/2, b) */
        a = b / 2;
    }
    if (b <= a) {
        b = a * 2;
    }
    *lo = a;
    *hi = b;
    return true;
}

static bool
bucket_shown(const bench_chart_hist *h, size_t i)
{
    double lo, hi;
    return isfinite(h->count[i]) && h->count[i] > 0 && bucket_bounds(h, i, &lo, &hi);
}

static void
hist_panel(FILE *out, const bench_chart_hist *h, double cx, double cy)
{
    emit(out, "<g class=\"hist\">\n");
    cell_background(out, cx, cy);
    panel_title(out, cx, cy, h->title);
    rect p = {cx + PAD_LEFT, cy + PAD_TOP, CELL_W - PAD_LEFT - PAD_RIGHT,
              CELL_H - PAD_TOP - PAD_BOTTOM};

    size_t first = h->n, last = 0;
    double cmax = 0;
    if (h->lower_ns && h->count) {
        for (size_t i = 0; i < h->n; i++) {
            if (bucket_shown(h, i)) {
                first = i < first ? i : first;
                last = i;
                cmax = fmax(cmax, h->count[i]);
            }
        }
    }
    if (first == h->n) {
        no_data(out, p);
        emit(out, "</g>\n");
        return;
    }
    double lo, hi, unused;
    bucket_bounds(h, first, &lo, &unused);
    bucket_bounds(h, last, &unused, &hi);
    double pad = (log10(hi) - log10(lo)) * 0.03;
    double l0 = log10(lo) - pad, l1 = log10(hi) + pad;
    double ytop;
    double ystep = nice_axis(cmax * 1.12, 1, &ytop);   /* room for the counts */

    y_axis(out, p, ytop, ystep, true, "count");
    /* x ticks: the powers of ten in range (with grid lines), and 2 and 5
     * times them if fewer than four powers of ten fall in range (labelled
     * where there is room) */
    int d0 = (int)floor(l0), d1 = (int)ceil(l1);
    int decades = 0;
    for (int d = d0; d <= d1; d++) {
        double l = (double)d;
        decades += l >= l0 && l <= l1;
    }
    double last_right = -INFINITY;
    for (int d = d0; d <= d1; d++) {
        static const double mult[] = {1, 2, 5};
        for (int m = 0; m < (decades < 4 ? 3 : 1); m++) {
            double v = mult[m] * pow(10.0, d);
            double l = log10(v);
            if (l < l0 || l > l1) {
                continue;
            }
            char buf[32];
            format_time(buf, sizeof buf, v);
            x_tick(out, p, lerp_map(l, l0, l1, p.x, p.x + p.w), buf, &last_right,
                   m == 0 || decades == 0);
        }
    }

    /* the bars, each with its count above it when it fits */
    for (size_t i = first; i <= last; i++) {
        double a, b;
        if (!bucket_shown(h, i) || !bucket_bounds(h, i, &a, &b)) {
            continue;
        }
        double x0 = lerp_map(log10(a), l0, l1, p.x, p.x + p.w) + 1;
        double x1 = lerp_map(log10(b), l0, l1, p.x, p.x + p.w) - 1;
        if (x1 - x0 < 1) {
            x1 = x0 + 1;
        }
        double bh = fmax(2.0, p.h * h->count[i] / ytop);
        char ta[32], tb[32], n[32];
        format_time(ta, sizeof ta, a);
        format_time(tb, sizeof tb, b);
        format_g(n, sizeof n, h->count[i], 10);
        emit(out, "<rect class=\"bar\" x=\"%v\" y=\"%v\" width=\"%v\" height=\"%v\" "
                  "fill=\"%s\"><title>%s \xE2\x80\x93 %s: %s</title></rect>\n",
             x0, p.y + p.h - bh, x1 - x0, bh, COLOR_BAR, ta, tb, n);
        if (text_width(n, FONT_TICK, false) <= x1 - x0 + 8) {
            emit(out, "<text class=\"count\" x=\"%v\" y=\"%v\" font-size=\"%d\" fill=\"%s\" "
                      "text-anchor=\"middle\">%s</text>\n",
                 (x0 + x1) / 2, p.y + p.h - bh - 4, FONT_TICK, COLOR_MUTED, n);
        }
    }
    axis_lines(out, p);
    x_axis_label(out, p, "time (log scale)");
    emit(out, "</g>\n");
}

/* ---- the document ---------------------------------------------------------------------------- */

int
bench_chart_svg(FILE *out, const bench_chart *c)
{
    if (!out || !c) {
        return -1;
    }
    size_t n_panels = c->panels ? c->n_panels : 0;
    size_t n_hists = c->hists ? c->n_hists : 0;
    size_t cells = n_panels + n_hists;
    size_t cols = cells <= 1 ? 1 : cells <= 4 ? 2 : 3;
    size_t rows = cells == 0 ? 1 : (cells + cols - 1) / cols;
    bool has_subtitle = c->subtitle && *c->subtitle;
    double header = has_subtitle ? HEADER_WITH_SUBTITLE : HEADER_TITLE_ONLY;
    double width = 2.0 * MARGIN + (double)cols * CELL_W + (double)(cols - 1) * CELL_GAP;
    double height = header + (double)rows * CELL_H + (double)(rows - 1) * CELL_GAP + MARGIN;

    emit(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    emit(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
              "width=\"%v\" height=\"%v\" viewBox=\"0 0 %v %v\" "
              "font-family=\"sans-serif\">\n", width, height, width, height);
    emit(out, "<title>");
    put_text(out, c->title ? c->title : "ftrt-bench", INFINITY, 0, false);
    emit(out, "</title>\n");
    emit(out, "<rect width=\"100%%\" height=\"100%%\" fill=\"#f6f7f9\"/>\n");

    double tw = width - 2 * MARGIN;
    emit(out, "<text class=\"title\" x=\"%d\" y=\"%d\" font-size=\"%d\" font-weight=\"bold\" "
              "fill=\"%s\">", MARGIN, 36, FONT_TITLE, COLOR_TEXT);
    put_text(out, c->title ? c->title : "ftrt-bench", tw, FONT_TITLE, true);
    emit(out, "</text>\n");
    if (has_subtitle) {
        emit(out, "<text class=\"subtitle\" x=\"%d\" y=\"%d\" font-size=\"%d\" fill=\"%s\">",
             MARGIN, 60, FONT_SUBTITLE, COLOR_MUTED);
        put_text(out, c->subtitle, tw, FONT_SUBTITLE, false);
        emit(out, "</text>\n");
    }

    if (cells == 0) {
        rect p = {MARGIN, header, CELL_W, CELL_H};
        no_data(out, p);
    }
    for (size_t k = 0; k < cells; k++) {
        double x = MARGIN + (double)(k % cols) * (CELL_W + CELL_GAP);
        double y = header + (double)(k / cols) * (CELL_H + CELL_GAP);
        if (k < n_panels) {
            scaling_panel(out, &c->panels[k], x, y);
        } else {
            hist_panel(out, &c->hists[k - n_panels], x, y);
        }
    }
    emit(out, "</svg>\n");
    return fflush(out) != 0 || ferror(out) ? -1 : 0;
}
