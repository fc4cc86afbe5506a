/* ft_recursive_mutex: a PyMutex that its holder may lock again.
 *
 *     mutex  the lock itself; held from the first lock to the last unlock
 *     owner  ft_thread_self_id() of the holder, 0 while nobody holds it
 *     level  acquisitions beyond the first (0 while held once)
 *
 * Only the holder writes owner and level, but any thread reads owner to ask
 * "is it me?", so owner is accessed with relaxed atomics.  Relaxed is
 * enough: the only value a thread must never misread is its own id, and
 *   - a thread sees its own last store to owner (coherence), so after its
 *     final unlock (which cleared owner before releasing the mutex) it reads
 *     0 or another holder's id, never its own;
 *   - no other thread ever stores this thread's id.
 * level is touched only by the holder, and the mutex's acquire/release
 * orders it between successive holders: plain accesses.
 */
#include "ft_lock.h"

static inline unsigned long long
ft_rmutex_owner(ft_recursive_mutex *m)
{
    return __atomic_load_n(&m->owner, __ATOMIC_RELAXED);
}

bool
ft_recursive_mutex_is_owned_by_me(ft_recursive_mutex *m)
{
    return ft_rmutex_owner(m) == ft_thread_self_id();
}

void
ft_recursive_mutex_lock(ft_recursive_mutex *m)
{
    unsigned long long me = ft_thread_self_id();
    if (ft_rmutex_owner(m) == me) {
        m->level++;   /* re-entry: we hold the mutex, so level is ours */
        return;
    }
    PyMutex_Lock(&m->mutex);
    /* relaxed: the mutex's acquire already orders the critical section;
     * the store only has to be atomic for concurrent "is it me?" readers */
    __atomic_store_n(&m->owner, me, __ATOMIC_RELAXED);
}

PyLockStatus
ft_recursive_mutex_lock_timed(ft_recursive_mutex *m, int64_t timeout_ns,
                              ft_lock_flags flags)
{
    unsigned long long me = ft_thread_self_id();
    if (ft_rmutex_owner(m) == me) {
        m->level++;
        return PY_LOCK_ACQUIRED;
    }
    PyLockStatus st = ft_mutex_lock_timed(&m->mutex, timeout_ns, flags);
    if (st == PY_LOCK_ACQUIRED) {
        __atomic_store_n(&m->owner, me, __ATOMIC_RELAXED);   /* as in lock */
    }
    return st;
}

void
ft_recursive_mutex_unlock(ft_recursive_mutex *m)
{
    if (ft_unlikely(!ft_recursive_mutex_is_owned_by_me(m))) {
        Py_FatalError("unlocking a recursive mutex that is not held by the "
                      "calling thread");
    }
    if (m->level > 0) {
        m->level--;
        return;
    }
    /* Clear owner while still holding the mutex: once PyMutex_Unlock
     * releases it, the next holder stores its own id, and our stale id must
     * not overwrite it.  Relaxed: the unlock's release orders it. */
    __atomic_store_n(&m->owner, 0ULL, __ATOMIC_RELAXED);
    PyMutex_Unlock(&m->mutex);
}
