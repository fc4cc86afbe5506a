/* ft_raw_mutex: the lock under the parking lot (sync/raw_mutex.c).
 *
 * A futex word, never parked through the parking lot (which it protects),
 * never detaching a thread state, not fair.  For short internal sections
 * only: parking-lot buckets, registries.  Zero-initialised is unlocked.
 */
#ifndef FT_RAW_MUTEX_H
#define FT_RAW_MUTEX_H

#include "ft_core.h"
#include <stdatomic.h>

typedef struct ft_raw_mutex {
    _Atomic uint32_t word;   /* 0 unlocked, 1 locked, 2 locked with sleepers */
} ft_raw_mutex;

#define FT_RAW_MUTEX_INIT {0}

FT_INTERNAL void ft_raw_mutex_lock_slow(ft_raw_mutex *m);
FT_INTERNAL void ft_raw_mutex_unlock_slow(ft_raw_mutex *m);

static inline void
ft_raw_mutex_lock(ft_raw_mutex *m)
{
    uint32_t expected = 0;
    if (!atomic_compare_exchange_strong_explicit(&m->word, &expected, 1,
                                                 memory_order_acquire,
                                                 memory_order_relaxed)) {
        ft_raw_mutex_lock_slow(m);
    }
}

static inline bool
ft_raw_mutex_trylock(ft_raw_mutex *m)
{
    uint32_t expected = 0;
    return atomic_compare_exchange_strong_explicit(&m->word, &expected, 1,
                                                   memory_order_acquire,
                                                   memory_order_relaxed);
}

static inline void
ft_raw_mutex_unlock(ft_raw_mutex *m)
{
    uint32_t expected = 1;
    if (!atomic_compare_exchange_strong_explicit(&m->word, &expected, 0,
                                                 memory_order_release,
                                                 memory_order_relaxed)) {
        ft_raw_mutex_unlock_slow(m);   /* sleepers to wake, or a fatal misuse */
    }
}

static inline bool
ft_raw_mutex_is_locked(ft_raw_mutex *m)
{
    return atomic_load_explicit(&m->word, memory_order_relaxed) != 0;
}

/* After fork(): the child has one thread; forget whoever held it. */
static inline void ft_raw_mutex_after_fork(ft_raw_mutex *m) { atomic_store(&m->word, 0); }

#endif /* FT_RAW_MUTEX_H */
