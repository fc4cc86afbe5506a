/* Tests for sync/fatal.c: Py_FatalError, ft_fatal_errno, ft_monotonic_ns. */
#include "harness.h"
#include "test_util.h"

#include "ft_core.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* noinline: the name printed is the caller's __func__, which the macro
 * captures at compile time, but keep real frames for debuggers anyway. */
static __attribute__((noinline, noreturn)) void
some_caller(void)
{
    Py_FatalError("boom");
}

static __attribute__((noinline, noreturn)) void
other_caller(void)
{
    ft_fatal_errno(__func__, "open", ENOENT);
}

static __attribute__((noreturn)) void
call_exported(void)
{
    (Py_FatalError)("no function name");   /* the function, not the macro */
}

typedef struct child_result {
    int status;
    char text[512];
} child_result;

/* fn's fate in a forked child: wait status and everything it wrote to stderr. */
static child_result
run_in_child(void (*fn)(void))
{
    child_result r;
    r.status = test_run_in_child(fn, r.text, sizeof r.text);
    return r;
}

Test(fatal, aborts, .signal = SIGABRT)
{
    some_caller();
}

Test(fatal, message_names_the_function, .timeout = FT_TIMEOUT(20))
{
    child_result r = run_in_child(some_caller);
    cr_assert(WIFSIGNALED(r.status), "child status %#x, stderr: %s", r.status, r.text);
    cr_assert_eq(WTERMSIG(r.status), SIGABRT);
    cr_assert_str_eq(r.text, "Fatal Python error: some_caller: boom\n",
                     "got \"%s\"", r.text);
}

Test(fatal, exported_function_has_no_name, .timeout = FT_TIMEOUT(20))
{
    child_result r = run_in_child(call_exported);
    cr_assert(WIFSIGNALED(r.status), "child status %#x, stderr: %s", r.status, r.text);
    cr_assert_eq(WTERMSIG(r.status), SIGABRT);
    cr_assert_str_eq(r.text, "Fatal Python error: no function name\n", "got \"%s\"", r.text);
}

Test(fatal, errno_message, .timeout = FT_TIMEOUT(20))
{
    child_result r = run_in_child(other_caller);
    cr_assert(WIFSIGNALED(r.status), "child status %#x, stderr: %s", r.status, r.text);
    cr_assert_eq(WTERMSIG(r.status), SIGABRT);
    char want[256];
    snprintf(want, sizeof want, "Fatal Python error: other_caller: open failed: %s (errno %d)\n",
             strerror(ENOENT), ENOENT);
    cr_assert_str_eq(r.text, want, "got \"%s\"", r.text);
}

Test(fatal, monotonic_clock)
{
    int64_t a = ft_monotonic_ns();
    int64_t mine = test_now_ns();
    int64_t b = ft_monotonic_ns();
    cr_assert_gt(a, 0);
    cr_assert_leq(a, mine);
    cr_assert_leq(mine, b);
    test_sleep_ns(2 * FT_NS_PER_MS);   /* not synchronisation: time must pass */
    int64_t c = ft_monotonic_ns();
    cr_assert_geq(c - b, 2 * FT_NS_PER_MS);
}
