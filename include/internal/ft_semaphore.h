/* ft_semaphore: a binary wake-up flag one thread sleeps on (sync/semaphore.c).
 *
 * Each parked thread owns one (on its stack, inside its parking-lot entry);
 * exactly one other thread posts it.  A post may come before the wait.
 */
#ifndef FT_SEMAPHORE_H
#define FT_SEMAPHORE_H

#include "ft_core.h"
#include <stdatomic.h>

typedef struct ft_semaphore {
    _Atomic uint32_t posted;   /* futex word: 0 = not posted, 1 = posted */
} ft_semaphore;

typedef enum ft_sema_result {
    FT_SEMA_OK = 0,          /* a post was consumed */
    FT_SEMA_TIMEOUT = -2,    /* deadline passed with no post */
    FT_SEMA_INTR = -3,       /* a signal handler ran (only if interruptible) */
} ft_sema_result;

static inline void ft_semaphore_init(ft_semaphore *s) { atomic_init(&s->posted, 0); }

/* Wait until posted or until the absolute CLOCK_MONOTONIC deadline_ns
 * (-1 = no deadline).  With interruptible, a signal handler that runs while
 * sleeping ends the wait with FT_SEMA_INTR; otherwise the wait goes on. */
FT_INTERNAL ft_sema_result ft_semaphore_wait(ft_semaphore *s, int64_t deadline_ns,
                                             bool interruptible);
FT_INTERNAL void ft_semaphore_post(ft_semaphore *s);

#endif /* FT_SEMAPHORE_H */
