/* Base of every internal header: the inclusion guard, the build switches as
 * constants, and small helpers every layer uses.
 *
 * Internal headers are for ftrt's own sources (and its white-box tests and
 * benchmarks), which are compiled with -DFT_BUILD_CORE.  Extension code must
 * use <Python.h> only.
 */
#ifndef FT_CORE_H
#define FT_CORE_H

#ifndef FT_BUILD_CORE
#  error "ftrt internal header: only ftrt's own sources may include it (use <Python.h>)"
#endif

#include <pyconfig.h>
#include <stdbool.h>
#include <stdint.h>

#include "Python.h"

/* Build switches, as constants: code says `if (ft_free_threaded)` and both
 * branches are compiled in both variants.  The #ifdefs stop here. */
#ifdef Py_GIL_DISABLED
#  define FT_FREE_THREADED 1
#else
#  define FT_FREE_THREADED 0
#endif
static const bool ft_free_threaded = FT_FREE_THREADED;

#ifdef FT_SANITIZE_THREAD
static const bool ft_sanitize_thread = true;
#else
static const bool ft_sanitize_thread = false;
#endif

/* Symbols shared between ftrt's own files; hidden from the shared library's
 * dynamic symbol table by -fvisibility=hidden (this is just documentation). */
#define FT_INTERNAL

#define ft_likely(x)   __builtin_expect(!!(x), 1)
#define ft_unlikely(x) __builtin_expect(!!(x), 0)
/* Keeps a slow path out of its caller's fast path (no spills there). */
#define FT_NOINLINE __attribute__((noinline))

#define FT_NS_PER_US 1000LL
#define FT_NS_PER_MS 1000000LL
#define FT_NS_PER_S  1000000000LL

/* CLOCK_MONOTONIC in nanoseconds.  Cannot fail on Linux; fatal if it does. */
FT_INTERNAL int64_t ft_monotonic_ns(void);

/* Absolute CLOCK_MONOTONIC deadline for a relative timeout in ns: -1 (no
 * deadline) for a negative timeout or one so large the sum would overflow. */
static inline int64_t
ft_deadline_after(int64_t timeout_ns)
{
    if (timeout_ns < 0) {
        return -1;
    }
    int64_t now = ft_monotonic_ns();
    return timeout_ns <= INT64_MAX - now ? now + timeout_ns : -1;
}

/* Time left until a deadline from ft_deadline_after: -1 for none, else >= 0. */
static inline int64_t
ft_deadline_remaining(int64_t deadline)
{
    if (deadline < 0) {
        return -1;
    }
    int64_t left = deadline - ft_monotonic_ns();
    return left > 0 ? left : 0;
}

/* Fatal error naming a failing system call and its errno value. */
FT_INTERNAL void _Py_NO_RETURN ft_fatal_errno(const char *func, const char *call, int err);

#endif /* FT_CORE_H */
