/* Fatal errors: the answer to misuse that cannot be reported any other way
 * (unlocking an unlocked mutex, a failing futex call).
 *
 * The message names the function, as CPython's does:
 *     Fatal Python error: PyMutex_Unlock: unlocking mutex that is not locked
 * and the process ends with abort(), so a debugger or core dump shows the
 * caller's stack.
 */
#include "ft_core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#undef Py_FatalError

void
_Py_FatalErrorFunc(const char *func, const char *message)
{
    /* One fprintf each, unbuffered stderr: nothing here may allocate or take
     * a lock that the failing code might hold. */
    if (func) {
        fprintf(stderr, "Fatal Python error: %s: %s\n", func, message ? message : "");
    }
    else {
        fprintf(stderr, "Fatal Python error: %s\n", message ? message : "");
    }
    fflush(stderr);
    abort();
}

void
Py_FatalError(const char *message)
{
    _Py_FatalErrorFunc(NULL, message);
}

void
ft_fatal_errno(const char *func, const char *call, int err)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s failed: %s (errno %d)", call, strerror(err), err);
    _Py_FatalErrorFunc(func, msg);
}

int64_t
ft_monotonic_ns(void)
{
    struct timespec ts;
    if (ft_unlikely(clock_gettime(CLOCK_MONOTONIC, &ts) != 0)) {
        ft_fatal_errno(__func__, "clock_gettime(CLOCK_MONOTONIC)", errno);
    }
    return (int64_t)ts.tv_sec * FT_NS_PER_S + ts.tv_nsec;
}
