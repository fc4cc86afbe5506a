/* Helpers shared by the test files: deadlines, polling, thread start/join.
 *
 * Tests never sleep to synchronise; they poll a condition until a deadline
 * and then assert on it, in the test's main thread. */
#ifndef FT_TEST_UTIL_H
#define FT_TEST_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

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

#endif /* FT_TEST_UTIL_H */
