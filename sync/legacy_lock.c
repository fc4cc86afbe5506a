/* Legacy locks: PyThread_allocate_lock and friends as thin wrappers over a
 * heap-allocated PyMutex, as in CPython 3.15.
 *
 * A PyThread_type_lock is a binary semaphore rather than a mutex: it has no
 * owner, so any thread may release it (CPython's threading.Lock relies on
 * that).  Releasing one that is not locked is a fatal error.
 *
 * Timeouts arrive in microseconds and go to ft_mutex_lock_timed in ns:
 *     < 0   wait forever (-1 is the documented value; any negative one
 *           means the same, as in CPython)
 *     0     try once, do not wait
 *     > 0   clamped to PY_TIMEOUT_MAX, so the conversion cannot overflow
 * Blocking waits detach the thread state (FT_LOCK_DETACH); with intr_flag a
 * signal handler that runs during the wait ends it with PY_LOCK_INTR.
 */
#include "ft_alloc.h"
#include "ft_lock.h"

PyThread_type_lock
PyThread_allocate_lock(void)
{
    PyMutex *m = ft_raw_alloc(sizeof(PyMutex));
    if (m == NULL) {
        return NULL;
    }
    __atomic_store_n(&m->_bits, _Py_UNLOCKED, __ATOMIC_RELAXED);
    return (PyThread_type_lock)m;
}

void
PyThread_free_lock(PyThread_type_lock lock)
{
    ft_raw_free(lock, sizeof(PyMutex));
}

PyLockStatus
PyThread_acquire_lock_timed(PyThread_type_lock lock, PY_TIMEOUT_T microseconds,
                            int intr_flag)
{
    PyMutex *m = (PyMutex *)lock;

    if (ft_mutex_lock_fast(m)) {   /* uncontended, whatever the timeout */
        return PY_LOCK_ACQUIRED;
    }

    int64_t timeout_ns;
    if (microseconds < 0) {
        timeout_ns = -1;
    }
    else {
        if (microseconds > PY_TIMEOUT_MAX) {
            microseconds = PY_TIMEOUT_MAX;
        }
        timeout_ns = (int64_t)microseconds * FT_NS_PER_US;
    }
    int flags = FT_LOCK_DETACH;
    if (intr_flag) {
        flags |= FT_LOCK_FAIL_IF_INTERRUPTED;
    }
    return ft_mutex_lock_timed(m, timeout_ns, (ft_lock_flags)flags);
}

int
PyThread_acquire_lock(PyThread_type_lock lock, int waitflag)
{
    PyLockStatus st = PyThread_acquire_lock_timed(lock, waitflag ? -1 : 0, 0);
    return st == PY_LOCK_ACQUIRED;
}

void
PyThread_release_lock(PyThread_type_lock lock)
{
    PyMutex *m = (PyMutex *)lock;
    if (ft_mutex_unlock_fast(m)) {
        return;
    }
    /* Waiters to wake, or not locked at all. */
    if (ft_mutex_try_unlock(m) < 0) {
        Py_FatalError("releasing a lock that is not locked");
    }
}
