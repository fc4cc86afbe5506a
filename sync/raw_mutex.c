/* ft_raw_mutex slow paths: a three-state futex lock (after Drepper,
 * "Futexes Are Tricky", the third mutex there).
 *
 *     0  unlocked
 *     1  locked, no thread asleep on the word
 *     2  locked, a thread may be asleep on the word
 *
 *     lock:   0 -> 1 (CAS, inline fast path); when that fails, spin briefly,
 *             then exchange to 2 and sleep on 2 until an exchange returns 0.
 *             A thread that went through the slow path always leaves 2 behind,
 *             so its unlock wakes the next sleeper (at worst one spare wake).
 *     unlock: 1 -> 0 (CAS, inline); from 2: exchange to 0 and wake one.
 *
 * Acquire on every transition that takes the lock, release on unlock.
 * This lock is what the parking-lot buckets use, so it cannot itself park
 * through the parking lot; it never detaches a thread state and is not fair.
 * Hold it only for a few instructions.
 */
#include "ft_raw_mutex.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { RAW_SPIN_COUNT = 100 };

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void
ft_raw_mutex_lock_slow(ft_raw_mutex *m)
{
    /* Bucket sections are a few instructions long: a short spin usually
     * outlasts them and saves two system calls. */
    for (int i = 0; i < RAW_SPIN_COUNT; i++) {
        uint32_t expected = 0;
        if (atomic_load_explicit(&m->word, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&m->word, &expected, 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
            return;
        }
        cpu_relax();
    }
    /* 1 or 2 -> 2: from now on the holder's unlock will wake someone */
    while (atomic_exchange_explicit(&m->word, 2, memory_order_acquire) != 0) {
        long r = syscall(SYS_futex, (uint32_t *)&m->word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG,
                         2, NULL, NULL, 0);
        if (r != 0 && errno != EAGAIN && errno != EINTR) {
            ft_fatal_errno(__func__, "futex(FUTEX_WAIT)", errno);
        }
    }
}

void
ft_raw_mutex_unlock_slow(ft_raw_mutex *m)
{
    uint32_t old = atomic_exchange_explicit(&m->word, 0, memory_order_release);
    if (old == 0) {
        _Py_FatalErrorFunc("ft_raw_mutex_unlock", "unlocking a raw mutex that is not locked");
    }
    if (old == 2) {
        long r = syscall(SYS_futex, (uint32_t *)&m->word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG,
                         1, NULL, NULL, 0);
        if (r < 0) {
            ft_fatal_errno(__func__, "futex(FUTEX_WAKE)", errno);
        }
    }
}
