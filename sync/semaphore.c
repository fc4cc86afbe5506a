/* ft_semaphore: the wake-up flag a parked thread sleeps on.
 *
 * Each parking-lot entry carries one, on the parked thread's stack.  It is
 * used for one hand-off at a time: the parked thread waits, one unparker
 * posts.  A 32-bit futex word:
 *
 *     0  EMPTY     initial; nobody asleep, no post
 *     1  POSTED    a post arrived (maybe before the wait)
 *     2  SLEEPING  the waiter announced it will sleep in futex_wait
 *
 *     waiter: EMPTY -> SLEEPING (CAS; fails only if POSTED: done)
 *             SLEEPING -> EMPTY (CAS, when giving up on timeout or signal;
 *                                fails only if POSTED: the post wins)
 *     poster: any -> POSTED (exchange); calls futex_wake only if the old
 *             value was SLEEPING, so a post to a thread that has not gone to
 *             sleep yet costs no system call.
 *
 * Ordering: the poster's exchange is a release and every waiter-side
 * observation of POSTED is an acquire, so whatever the poster wrote before
 * posting (e.g. "the lock is yours") is visible after the wait returns.
 *
 * After the exchange the waiter may return and its stack frame be reused;
 * the poster then only passes the address to FUTEX_WAKE, which reads no
 * memory (private futexes are keyed by address).  At worst some other futex
 * sleeper at that address sees a spurious wake-up, which every futex loop
 * here tolerates.
 */
#include "ft_semaphore.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { SEMA_EMPTY = 0, SEMA_POSTED = 1, SEMA_SLEEPING = 2 };

static long
futex_wait_until(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns >= 0) {
        ts.tv_sec = (time_t)(deadline_ns / FT_NS_PER_S);
        ts.tv_nsec = (long)(deadline_ns % FT_NS_PER_S);
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so
     * repeated waits do not drift. */
    return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG,
                   expected, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
}

ft_sema_result
ft_semaphore_wait(ft_semaphore *s, int64_t deadline_ns, bool interruptible)
{
    uint32_t v = SEMA_EMPTY;
    if (!atomic_compare_exchange_strong_explicit(&s->posted, &v, SEMA_SLEEPING,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire)) {
        /* v == POSTED (a waiter never sees its own SLEEPING here) */
        atomic_store_explicit(&s->posted, SEMA_EMPTY, memory_order_relaxed);
        return FT_SEMA_OK;
    }
    for (;;) {
        ft_sema_result give_up = FT_SEMA_OK;
        if (futex_wait_until(&s->posted, SEMA_SLEEPING, deadline_ns) != 0) {
            int err = errno;
            if (err == ETIMEDOUT) {
                give_up = FT_SEMA_TIMEOUT;
            }
            else if (err == EINTR) {
                give_up = interruptible ? FT_SEMA_INTR : FT_SEMA_OK;
            }
            else if (err != EAGAIN) {   /* EAGAIN: the word was no longer SLEEPING */
                ft_fatal_errno(__func__, "futex(FUTEX_WAIT_BITSET)", err);
            }
        }
        if (atomic_load_explicit(&s->posted, memory_order_acquire) == SEMA_POSTED) {
            atomic_store_explicit(&s->posted, SEMA_EMPTY, memory_order_relaxed);
            return FT_SEMA_OK;
        }
        if (give_up != FT_SEMA_OK) {
            v = SEMA_SLEEPING;
            if (atomic_compare_exchange_strong_explicit(&s->posted, &v, SEMA_EMPTY,
                                                        memory_order_acquire,
                                                        memory_order_acquire)) {
                return give_up;
            }
            /* a post arrived just now: it wins over the timeout or signal */
            atomic_store_explicit(&s->posted, SEMA_EMPTY, memory_order_relaxed);
            return FT_SEMA_OK;
        }
        /* spurious wake-up: sleep again */
    }
}

void
ft_semaphore_post(ft_semaphore *s)
{
    uint32_t old = atomic_exchange_explicit(&s->posted, SEMA_POSTED, memory_order_release);
    if (old == SEMA_SLEEPING) {
        /* s may already be gone (see the top comment); only its address is used */
        long r = syscall(SYS_futex, (uint32_t *)&s->posted, FUTEX_WAKE | FUTEX_PRIVATE_FLAG,
                         1, NULL, NULL, 0);
        if (r < 0 && errno != EFAULT) {
            ft_fatal_errno(__func__, "futex(FUTEX_WAKE)", errno);
        }
    }
}
