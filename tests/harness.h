/* Test harness: tests include this instead of <criterion/criterion.h>.
 *
 * Plain builds run the tests under Criterion.  Sanitizer and valgrind builds
 * (meson: test_harness=shim, the default under any b_sanitize) compile the
 * same files against the shim below, because
 *   - Criterion's BoxFort runner cannot start under ThreadSanitizer
 *     (Criterion #274: its arena lands in TSan's shadow range);
 *   - under ASan, a leak reported at worker exit does not fail a Criterion
 *     test, and under valgrind an error in a worker fails nothing.
 * The shim runs each test in a forked child (the parent never starts a
 * thread, so forking is safe under TSan), so a crash, a sanitizer report, a
 * leak or valgrind's error exit code fails exactly that test.  It supports the
 * subset of Criterion the suite uses: Test / TestSuite with .init .fini
 * .timeout .signal .exit_code .disabled .description, the cr_assert* family
 * below, cr_skip_test and cr_log_*.  It prints
 *     <exe>: N passed, N failed, N skipped
 * which .ci/test_summary.py adds up.
 *
 * Every test binary is compiled with FT_TIMEOUT_SCALE (1, or more under
 * sanitizers and valgrind); write timeouts as .timeout = FT_TIMEOUT(seconds).
 */
#ifndef FT_TEST_HARNESS_H
#define FT_TEST_HARNESS_H

#ifndef FT_TIMEOUT_SCALE
#  define FT_TIMEOUT_SCALE 1
#endif
#define FT_TIMEOUT(seconds) ((double)(seconds) * FT_TIMEOUT_SCALE)

#ifndef FT_TEST_SHIM
/* ------------------------------------------------------------------------ */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#else  /* FT_TEST_SHIM -------------------------------------------------------- */

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct ft_shim_extra {
    int pad_;
    void (*init)(void);
    void (*fini)(void);
    double timeout;
    int signal;
    int exit_code;
    bool disabled;
    const char *description;
};

struct ft_shim_test {
    const char *suite, *name;
    void (*fn)(void);
    struct ft_shim_extra extra;
    struct ft_shim_test *next;
};

struct ft_shim_suite {
    const char *name;
    struct ft_shim_extra extra;
    struct ft_shim_suite *next;
};

/* One definition across the test files linked into a binary. */
__attribute__((weak)) struct ft_shim_test *ft_shim_tests;
__attribute__((weak)) struct ft_shim_suite *ft_shim_suites;
__attribute__((weak)) jmp_buf ft_shim_jmp;

enum { FT_SHIM_PASS = 0, FT_SHIM_FAIL = 1, FT_SHIM_SKIP = 77 };

static inline void
ft_shim_register(struct ft_shim_test *t)
{
    /* constructors run in file order; append to keep declaration order */
    struct ft_shim_test **p = &ft_shim_tests;
    while (*p) {
        p = &(*p)->next;
    }
    *p = t;
}

__attribute__((weak, noreturn)) void
ft_shim_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    fprintf(stderr, "[----] %s:%d: Assertion failed: %s\n", file, line, expr);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs("[----]   ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    fflush(stderr);
    _exit(FT_SHIM_FAIL);   /* in the forked child: no atexit, no leak check */
}

__attribute__((weak, noreturn)) void
ft_shim_skip(const char *fmt, ...)
{
    fprintf(stderr, "[SKIP] ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(FT_SHIM_SKIP);
}

__attribute__((weak)) void
ft_shim_log(const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%s] ", tag);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

#define TestSuite(...) FT_SHIM_SUITE_(__VA_ARGS__, .pad_ = 0)
#define FT_SHIM_SUITE_(s, ...)                                                     \
    static struct ft_shim_suite ft_shim_s_##s = { #s, { __VA_ARGS__ }, NULL };     \
    __attribute__((constructor)) static void ft_shim_sreg_##s(void)                \
    {                                                                              \
        ft_shim_s_##s.next = ft_shim_suites;                                       \
        ft_shim_suites = &ft_shim_s_##s;                                           \
    }                                                                              \
    struct ft_shim_swallow_semicolon_##s

#define Test(...) FT_SHIM_TEST_(__VA_ARGS__, .pad_ = 0)
#define FT_SHIM_TEST_(s, n, ...)                                                   \
    static void ft_shim_fn_##s##_##n(void);                                        \
    static struct ft_shim_test ft_shim_t_##s##_##n =                               \
        { #s, #n, ft_shim_fn_##s##_##n, { __VA_ARGS__ }, NULL };                   \
    __attribute__((constructor)) static void ft_shim_reg_##s##_##n(void)           \
    {                                                                              \
        ft_shim_register(&ft_shim_t_##s##_##n);                                    \
    }                                                                              \
    static void ft_shim_fn_##s##_##n(void)

#define FT_SHIM_CHECK_(cond, text, ...) \
    do { if (!(cond)) ft_shim_fail(__FILE__, __LINE__, text, __VA_ARGS__); } while (0)

/* Each public macro appends "" so that a call without a message still passes
 * an argument to the inner variadic macro (ISO C forbids an empty one). */
#define cr_assert(...)              FT_SHIM_A1_(__VA_ARGS__, "")
#define cr_expect(...)              FT_SHIM_A1_(__VA_ARGS__, "")
#define cr_assert_not(...)          FT_SHIM_NOT_(__VA_ARGS__, "")
#define cr_assert_eq(...)           FT_SHIM_EQ_(__VA_ARGS__, "")
#define cr_assert_neq(...)          FT_SHIM_NEQ_(__VA_ARGS__, "")
#define cr_assert_lt(...)           FT_SHIM_LT_(__VA_ARGS__, "")
#define cr_assert_leq(...)          FT_SHIM_LEQ_(__VA_ARGS__, "")
#define cr_assert_gt(...)           FT_SHIM_GT_(__VA_ARGS__, "")
#define cr_assert_geq(...)          FT_SHIM_GEQ_(__VA_ARGS__, "")
#define cr_assert_null(...)         FT_SHIM_NULL_(__VA_ARGS__, "")
#define cr_assert_not_null(...)     FT_SHIM_NNULL_(__VA_ARGS__, "")
#define cr_assert_str_eq(...)       FT_SHIM_STREQ_(__VA_ARGS__, "")
#define FT_SHIM_A1_(c, ...)         FT_SHIM_CHECK_((c), #c, __VA_ARGS__)
#define FT_SHIM_NOT_(c, ...)        FT_SHIM_CHECK_(!(c), "!(" #c ")", __VA_ARGS__)
#define FT_SHIM_EQ_(a, b, ...)      FT_SHIM_CHECK_((a) == (b), #a " == " #b, __VA_ARGS__)
#define FT_SHIM_NEQ_(a, b, ...)     FT_SHIM_CHECK_((a) != (b), #a " != " #b, __VA_ARGS__)
#define FT_SHIM_LT_(a, b, ...)      FT_SHIM_CHECK_((a) < (b), #a " < " #b, __VA_ARGS__)
#define FT_SHIM_LEQ_(a, b, ...)     FT_SHIM_CHECK_((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define FT_SHIM_GT_(a, b, ...)      FT_SHIM_CHECK_((a) > (b), #a " > " #b, __VA_ARGS__)
#define FT_SHIM_GEQ_(a, b, ...)     FT_SHIM_CHECK_((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define FT_SHIM_NULL_(p, ...)       FT_SHIM_CHECK_((p) == NULL, #p " == NULL", __VA_ARGS__)
#define FT_SHIM_NNULL_(p, ...)      FT_SHIM_CHECK_((p) != NULL, #p " != NULL", __VA_ARGS__)
#define FT_SHIM_STREQ_(a, b, ...)   FT_SHIM_CHECK_(strcmp((a), (b)) == 0, #a " == " #b, __VA_ARGS__)
#define cr_assert_fail(...)         ft_shim_fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_skip_test(...)           ft_shim_skip("" __VA_ARGS__)
#define cr_log_info(...)            ft_shim_log("LOG ", __VA_ARGS__)
#define cr_log_warn(...)            ft_shim_log("WARN", __VA_ARGS__)
#define cr_log_error(...)           ft_shim_log("ERR ", __VA_ARGS__)

static inline double
ft_shim_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs one test in a child; returns FT_SHIM_PASS / FAIL / SKIP. */
static inline int
ft_shim_run_one(const struct ft_shim_test *t, const char *full)
{
    const struct ft_shim_suite *su = ft_shim_suites;
    while (su && strcmp(su->name, t->suite) != 0) {
        su = su->next;
    }
    void (*init)(void) = t->extra.init ? t->extra.init : (su ? su->extra.init : NULL);
    void (*fini)(void) = t->extra.fini ? t->extra.fini : (su ? su->extra.fini : NULL);
    double timeout = t->extra.timeout > 0 ? t->extra.timeout
                   : (su && su->extra.timeout > 0 ? su->extra.timeout : 0);
    if (timeout <= 0) {
        timeout = FT_TIMEOUT(120);   /* nothing may hang CI forever */
    }
    int want_signal = t->extra.signal ? t->extra.signal : (su ? su->extra.signal : 0);
    int want_exit = t->extra.exit_code ? t->extra.exit_code : (su ? su->extra.exit_code : 0);

    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return FT_SHIM_FAIL;
    }
    if (pid == 0) {
        if (init) {
            init();
        }
        t->fn();
        if (fini) {
            fini();
        }
        exit(FT_SHIM_PASS);   /* exit, not _exit: LSan and valgrind check here */
    }
    double deadline = ft_shim_now() + timeout;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            break;
        }
        if (r < 0 && errno != EINTR) {
            perror("waitpid");
            return FT_SHIM_FAIL;
        }
        if (ft_shim_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "[----] %s: timed out after %.1f s\n", full, timeout);
            return FT_SHIM_FAIL;
        }
        struct timespec nap = {0, 2 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    if (want_signal) {
        if (WIFSIGNALED(status) && WTERMSIG(status) == want_signal) {
            return FT_SHIM_PASS;
        }
        fprintf(stderr, "[----] %s: expected signal %d, got %s %d\n", full, want_signal,
                WIFSIGNALED(status) ? "signal" : "exit code",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        return FT_SHIM_FAIL;
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "[----] %s: crashed with signal %d\n", full, WTERMSIG(status));
        return FT_SHIM_FAIL;
    }
    int code = WEXITSTATUS(status);
    if (code == FT_SHIM_SKIP) {
        return FT_SHIM_SKIP;
    }
    if (code == want_exit) {
        return FT_SHIM_PASS;
    }
    if (code != FT_SHIM_FAIL) {
        fprintf(stderr, "[----] %s: exit code %d (sanitizer or valgrind report above?)\n",
                full, code);
    }
    return FT_SHIM_FAIL;
}

/* usage: <exe> [substring]   runs the tests whose "suite::name" contains it */
__attribute__((weak)) int
main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    int pass = 0, fail = 0, skip = 0;
    for (const struct ft_shim_test *t = ft_shim_tests; t; t = t->next) {
        char full[256];
        snprintf(full, sizeof full, "%s::%s", t->suite, t->name);
        if (filter && !strstr(full, filter)) {
            continue;
        }
        if (t->extra.disabled) {
            skip++;
            fprintf(stderr, "[SKIP] %s (disabled)\n", full);
            continue;
        }
        fprintf(stderr, "[RUN ] %s\n", full);
        double t0 = ft_shim_now();
        int r = ft_shim_run_one(t, full);
        const char *word = r == FT_SHIM_PASS ? "PASS" : r == FT_SHIM_SKIP ? "SKIP" : "FAIL";
        fprintf(stderr, "[%s] %s (%.2fs)\n", word, full, ft_shim_now() - t0);
        pass += r == FT_SHIM_PASS;
        fail += r == FT_SHIM_FAIL;
        skip += r == FT_SHIM_SKIP;
    }
    printf("%s: %d passed, %d failed, %d skipped\n", argv[0], pass, fail, skip);
    return fail ? 1 : 0;
}

#endif /* FT_TEST_SHIM */
#endif /* FT_TEST_HARNESS_H */
