/* The GIL (GIL build only; the free-threaded build never calls this file).
 *
 * STATE (all under gil->mutex, except `holder`, which the GIL probe and
 * drop requests read)
 *   locked        0 or 1
 *   holder        the thread state holding it, NULL when free
 *   last_holder   the last thread state that took it
 *   switch_number bumped whenever a *different* state takes it
 *
 * TAKE (ft_gil_take, called by attach before the state word changes)
 *   While it is locked, wait on `cond` for at most the switch interval.  If a
 *   whole interval passes with no switch (same switch_number, still locked),
 *   set FT_BREAK_GIL_DROP on the holder: it answers at its next safe point
 *   by detaching (PyErr_CheckSignals, Py_MakePendingCalls, re-attach).  The
 *   holder cannot go away while we read it: it still holds the GIL, and it
 *   would need gil->mutex, which we hold, to release it.
 * DROP (ft_gil_drop, called by detach after the state word is DETACHED)
 *   locked = 0, signal `cond`.  If the dropping thread had been asked to
 *   drop (FT_BREAK_GIL_DROP), it then waits on `switch_cond` until another
 *   state has taken the GIL ("forced switching", as CPython's
 *   FORCE_SWITCHING): without it, on a multi-core machine, the dropping
 *   thread usually re-takes the GIL before the woken waiter runs, and the
 *   waiter starves.  The wait is bounded by one interval, in case the
 *   waiter was itself a thread that hangs (finalization).
 * ORDERING: the mutex orders everything; `holder` is an atomic only so that
 *   readers outside the mutex (the GIL probe) are race-free.
 */
#include <errno.h>
#include <time.h>

#include "ft_pystate.h"

#define DEFAULT_INTERVAL_US 5000

static void
check(int err, const char *call)
{
    if (err) {
        ft_fatal_errno("ft_gil", call, err);
    }
}

void
ft_gil_init(ft_gil *gil)
{
    pthread_condattr_t attr;
    check(pthread_mutex_init(&gil->mutex, NULL), "pthread_mutex_init");
    check(pthread_condattr_init(&attr), "pthread_condattr_init");
    check(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC), "pthread_condattr_setclock");
    check(pthread_cond_init(&gil->cond, &attr), "pthread_cond_init");
    check(pthread_cond_init(&gil->switch_cond, &attr), "pthread_cond_init");
    pthread_condattr_destroy(&attr);
    gil->locked = 0;
    atomic_store_explicit(&gil->holder, NULL, memory_order_relaxed);
    gil->last_holder = NULL;
    gil->switch_number = 0;
    if (atomic_load_explicit(&gil->interval_us, memory_order_relaxed) == 0) {
        atomic_store_explicit(&gil->interval_us, DEFAULT_INTERVAL_US, memory_order_relaxed);
    }
}

/* Absolute CLOCK_MONOTONIC time `us` microseconds from now. */
static struct timespec
deadline_us(unsigned long us)
{
    int64_t t = ft_monotonic_ns() + (int64_t)us * FT_NS_PER_US;
    return (struct timespec){ .tv_sec = t / FT_NS_PER_S, .tv_nsec = t % FT_NS_PER_S };
}

void
ft_gil_take(ft_gil *gil, ft_tstate *ts)
{
    check(pthread_mutex_lock(&gil->mutex), "pthread_mutex_lock");
    while (gil->locked) {
        uint64_t saved = gil->switch_number;
        unsigned long interval = atomic_load_explicit(&gil->interval_us, memory_order_relaxed);
        struct timespec until = deadline_us(interval ? interval : 1);
        int err = pthread_cond_timedwait(&gil->cond, &gil->mutex, &until);
        if (err == ETIMEDOUT && gil->locked && gil->switch_number == saved) {
            ft_tstate *holder = atomic_load_explicit(&gil->holder, memory_order_relaxed);
            if (holder) {
                atomic_fetch_or_explicit(&holder->breaker, FT_BREAK_GIL_DROP,
                                         memory_order_relaxed);
            }
        }
        else if (err && err != ETIMEDOUT) {
            ft_fatal_errno("ft_gil_take", "pthread_cond_timedwait", err);
        }
    }
    gil->locked = 1;
    atomic_store_explicit(&gil->holder, ts, memory_order_relaxed);
    if (gil->last_holder != ts) {
        gil->last_holder = ts;
        gil->switch_number++;
        pthread_cond_broadcast(&gil->switch_cond);
    }
    if (ts) {
        atomic_fetch_and_explicit(&ts->breaker, ~(uint32_t)FT_BREAK_GIL_DROP,
                                  memory_order_relaxed);
    }
    pthread_mutex_unlock(&gil->mutex);
}

void
ft_gil_drop(ft_gil *gil, ft_tstate *ts)
{
    check(pthread_mutex_lock(&gil->mutex), "pthread_mutex_lock");
    gil->locked = 0;
    atomic_store_explicit(&gil->holder, NULL, memory_order_relaxed);
    pthread_cond_signal(&gil->cond);
    if (ts && (atomic_load_explicit(&ts->breaker, memory_order_relaxed) & FT_BREAK_GIL_DROP)) {
        atomic_fetch_and_explicit(&ts->breaker, ~(uint32_t)FT_BREAK_GIL_DROP,
                                  memory_order_relaxed);
        if (gil->last_holder == ts) {
            unsigned long interval = atomic_load_explicit(&gil->interval_us,
                                                          memory_order_relaxed);
            struct timespec until = deadline_us(interval ? interval : 1);
            int err = 0;
            while (gil->last_holder == ts && err != ETIMEDOUT) {
                err = pthread_cond_timedwait(&gil->switch_cond, &gil->mutex, &until);
            }
        }
    }
    pthread_mutex_unlock(&gil->mutex);
}

void
ft_gil_after_fork(ft_gil *gil, ft_tstate *ts)
{
    ft_gil_init(gil);
    if (ts) {
        gil->locked = 1;
        atomic_store_explicit(&gil->holder, ts, memory_order_relaxed);
        gil->last_holder = ts;
    }
}

void
_PyEval_SetSwitchInterval(unsigned long microseconds)
{
    atomic_store_explicit(&ft_rt.gil.interval_us, microseconds ? microseconds : 1,
                          memory_order_relaxed);
}

unsigned long
_PyEval_GetSwitchInterval(void)
{
    unsigned long us = atomic_load_explicit(&ft_rt.gil.interval_us, memory_order_relaxed);
    return us ? us : DEFAULT_INTERVAL_US;
}
