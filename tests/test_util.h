/* Helpers shared by the test files: deadlines, polling, thread start/join,
 * forked children and fatal-error checks.
 *
 * Tests never sleep to synchronise; they poll a condition until a deadline
 * and then assert on it, in the test's main thread (helper threads waiting
 * for the main thread use TEST_HELPER_WAIT).  A sleep is only ever a window
 * for a wrong outcome or a race to show, and says so where it stands. */
#ifndef FT_TEST_UTIL_H
#define FT_TEST_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static inline int64_t
test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void
test_sleep_ns(int64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL) };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Evaluate cond every ~1 ms until it holds or timeout_ms (scaled for slow
 * builds) passes; the value is whether it held. */
#define TEST_POLL_UNTIL(cond, timeout_ms)                                          \
    __extension__({                                                                \
        int64_t test_deadline_ =                                                   \
            test_now_ns() + (int64_t)(timeout_ms) * 1000000LL * FT_TIMEOUT_SCALE;  \
        bool test_ok_;                                                             \
        while (!(test_ok_ = (cond)) && test_now_ns() < test_deadline_) {           \
            test_sleep_ns(1000000);                                                \
        }                                                                          \
        test_ok_;                                                                  \
    })

/* A helper thread that waits for the main thread's go-ahead has nothing
 * to record if it never comes (the main thread hung or failed), and
 * helpers do not assert; so it waits like TEST_POLL_UNTIL and, if the
 * deadline passes, ends the test: the process aborts naming the condition. */
#define TEST_HELPER_WAIT(cond, timeout_ms)                                         \
    do {                                                                           \
        if (!TEST_POLL_UNTIL(cond, timeout_ms)) {                                  \
            test_helper_gave_up(#cond, __FILE__, __LINE__);                        \
        }                                                                          \
    } while (0)

static inline void
test_helper_gave_up(const char *cond, const char *file, int line)
{
    fprintf(stderr, "%s:%d: a helper thread gave up waiting for %s\n", file, line, cond);
    abort();
}

/* The same for the common case: a flag the main thread sets. */
static inline void
test_wait_flag(atomic_int *flag, int timeout_ms)
{
    TEST_HELPER_WAIT(atomic_load(flag) != 0, timeout_ms);
}

static inline pthread_t
test_start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    int rc = pthread_create(&t, NULL, fn, arg);
    cr_assert_eq(rc, 0, "pthread_create failed: %d", rc);
    return t;
}

static inline void
test_join_thread(pthread_t t)
{
    int rc = pthread_join(t, NULL);
    cr_assert_eq(rc, 0, "pthread_join failed: %d", rc);
}

/* Run fn in a forked child whose stderr goes into buf (NUL-terminated,
 * truncated to cap - 1 bytes); returns the child's wait status.  If fn
 * returns, the child exits with status 0.  For checking fatal-error
 * messages: the child aborts, the test process does not. */
static inline int
test_run_in_child(void (*fn)(void), char *buf, size_t cap)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        if (dup2(fds[1], STDERR_FILENO) < 0) {
            _exit(100);
        }
        close(fds[1]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    for (;;) {
        char scratch[256];   /* past cap: keep draining so the child never blocks */
        char *dst = len + 1 < cap ? buf + len : scratch;
        size_t room = len + 1 < cap ? cap - 1 - len : sizeof scratch;
        ssize_t n = read(fds[0], dst, room);
        if (n > 0) {
            if (dst != scratch) {
                len += (size_t)n;
            }
        }
        else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    buf[len] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

/* Fatal-error checks: fn runs in a forked child, which must die of SIGABRT
 * with `needle` in its stderr.  A child that hangs instead dies of SIGALRM
 * (and fails the check) rather than outliving the test. */
static void (*test_fatal_child_fn)(void);

static inline void
test_fatal_child_with_alarm(void)
{
    alarm((unsigned)FT_TIMEOUT(10));
    test_fatal_child_fn();
}

static inline void
test_expect_fatal(void (*fn)(void), const char *needle)
{
    char buf[8192];
    test_fatal_child_fn = fn;
    int st = test_run_in_child(test_fatal_child_with_alarm, buf, sizeof buf);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
              "expected SIGABRT; child status %#x (exit %d), stderr: %s", st,
              WIFEXITED(st) ? WEXITSTATUS(st) : -1, buf);
    cr_assert(strstr(buf, needle) != NULL, "stderr lacks \"%s\": %s", needle, buf);
}

/* Wait (polling, at most timeout_ms scaled) for a forked child to exit;
 * a child still running then is killed.  True if it exited by itself;
 * *status is its wait status either way. */
static inline bool
test_wait_child(pid_t pid, int timeout_ms, int *status)
{
    *status = 0;
    bool exited = TEST_POLL_UNTIL(waitpid(pid, status, WNOHANG) == pid, timeout_ms);
    if (!exited) {
        kill(pid, SIGKILL);
        while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
        }
    }
    return exited;
}

/* SIGUSR1 with a handler that only counts, installed without SA_RESTART (as
 * Python installs its handlers), so a thread sleeping in futex_wait sees
 * EINTR.  Tests send it with pthread_kill, repeatedly until the target
 * reacts, because a signal that lands just before the target goes to sleep
 * interrupts nothing. */
static atomic_int test_sigusr1_count;

static inline void
test_count_sigusr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&test_sigusr1_count, 1);
}

static inline void
test_install_sigusr1_without_restart(struct sigaction *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = test_count_sigusr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    cr_assert_eq(sigaction(SIGUSR1, &sa, old), 0);
}

#endif /* FT_TEST_UTIL_H */
