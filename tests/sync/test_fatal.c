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

/* Run fn in a forked child with stderr going to a pipe; collect everything
 * it writes and how it ended. */
static child_result
run_in_child(void (*fn)(void))
{
    child_result r;
    memset(&r, 0, sizeof r);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        if (dup2(fds[1], STDERR_FILENO) < 0) {
            _exit(100);
        }
        close(fds[1]);
        fn();
        _exit(101);   /* fn returned: not fatal at all */
    }
    close(fds[1]);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fds[0], r.text + len, sizeof r.text - 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        if (len == sizeof r.text - 1) {
            break;
        }
    }
    r.text[len] = '\0';
    close(fds[0]);
    pid_t w;
    while ((w = waitpid(pid, &r.status, 0)) < 0 && errno == EINTR) {
    }
    cr_assert_eq(w, pid);
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
