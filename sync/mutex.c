/* PyMutex slow paths: spinning, parking, and fair hand-off.
 *
 * The byte (see include/cpython/lock.h for the table):
 *
 *     bit 0  LOCKED      the mutex is held
 *     bit 1  HAS_PARKED  a thread may be parked on this address; unlock must
 *                        go through the parking lot
 *
 * Transitions and who makes them:
 *
 *     0 -> 1          locker, CAS (inline fast path, or barging in the loop)
 *     2 -> 3          locker, CAS: barging past parked threads is allowed
 *     1 -> 3          locker about to park, CAS (it will park expecting 3)
 *     1 -> 0          unlocker, CAS (inline fast path)
 *     3 -> 0 | 2      unlocker, inside the unpark callback under the bucket
 *                     lock: the woken thread must compete for the lock
 *                     (2 if more threads remain parked on this address)
 *     3 -> 1 | 3      unlocker, same place, hand-off: the woken thread has
 *                     waited longer than TIME_TO_BE_FAIR_NS, so the lock is
 *                     passed to it without ever being free; no one can barge
 *
 * A parker re-checks "the byte is still 3" under the bucket lock that the
 * unlocker's callback holds while it rewrites the byte, so it either sees the
 * new value (and retries) or is found by the unlocker (see parking_lot.c).
 *
 * Orderings:
 *   - acquire on every CAS that sets LOCKED, release on every store or CAS
 *     that clears it: the critical sections are ordered.
 *   - Setting HAS_PARKED needs no ordering of its own: it carries no data,
 *     and the bucket lock orders it against the unlocker's callback.
 *   - On hand-off the byte never becomes free; the new owner learns it owns
 *     the lock from entry.handed_off, written in the callback before the
 *     semaphore post (release) and read after the wait (acquire).  That chain
 *     also carries the previous owner's writes.
 *
 * Spinning: a locker that finds the mutex held and nobody parked yields the
 * CPU up to MAX_SPINS times before parking.  In the GIL build a locker that
 * holds the GIL parks at once instead: the holder of the mutex cannot run
 * until the locker releases the GIL (which parking does).  CPython's GIL build
 * never spins; ours still spins for threads without the GIL, which are not
 * serialised by it.  The runtime says who holds the GIL through a probe.
 * Fairness: a waiter records when it started waiting; after 1 ms the next
 * unlock hands the lock to it directly.  Before that, barging keeps the lock
 * with the running thread, which is what makes contended throughput high.
 */
#include "ft_lock.h"

#include <sched.h>
#include <stdatomic.h>

#define MAX_SPINS           40
#define TIME_TO_BE_FAIR_NS  FT_NS_PER_MS

/* TIME_TO_BE_FAIR_NS unless a test changed it (ft_mutex_set_fairness_ns);
 * read once per slow-path lock, relaxed: it is a tuning value, not data. */
static _Atomic int64_t fairness_ns = TIME_TO_BE_FAIR_NS;

void
ft_mutex_set_fairness_ns(int64_t ns)
{
    atomic_store_explicit(&fairness_ns, ns >= 0 ? ns : TIME_TO_BE_FAIR_NS,
                          memory_order_relaxed);
}

/* The waiter's record, on its stack, handed to the unparker as park_arg. */
struct mutex_waiter {
    int64_t time_to_be_fair;   /* written by the waiter before parking */
    bool handed_off;           /* written by the unlocker's callback */
};

static ft_gil_probe *_Atomic gil_probe;

void
ft_mutex_set_gil_probe(ft_gil_probe *holds_gil)
{
    atomic_store_explicit(&gil_probe, holds_gil, memory_order_release);
}

/* How many times a waiter may yield before parking. */
static int
spin_limit(void)
{
    if (ft_free_threaded) {
        return MAX_SPINS;
    }
    ft_gil_probe *holds_gil = atomic_load_explicit(&gil_probe, memory_order_acquire);
    return holds_gil && holds_gil() ? 0 : MAX_SPINS;
}

static inline bool
cas_bits(PyMutex *m, uint8_t *expected, uint8_t desired, int success_order)
{
    return __atomic_compare_exchange_n(&m->_bits, expected, desired, 0,
                                       success_order, __ATOMIC_RELAXED);
}

PyLockStatus
ft_mutex_lock_timed(PyMutex *m, int64_t timeout_ns, ft_lock_flags flags)
{
    uint8_t v = __atomic_load_n(&m->_bits, __ATOMIC_RELAXED);
    if (!(v & _Py_LOCKED)) {
        if (cas_bits(m, &v, v | _Py_LOCKED, __ATOMIC_ACQUIRE)) {
            return PY_LOCK_ACQUIRED;
        }
    }
    else if (timeout_ns == 0) {
        return PY_LOCK_FAILURE;
    }

    /* (timeout_ns 0 never parks: the loop fails before that) */
    int64_t endtime = timeout_ns > 0 ? ft_deadline_after(timeout_ns) : -1;
    struct mutex_waiter waiter = {
        .time_to_be_fair = ft_monotonic_ns() +
                           atomic_load_explicit(&fairness_ns, memory_order_relaxed),
    };
    int park_flags = ((flags & FT_LOCK_DETACH) ? FT_PARK_DETACH : 0) |
                     ((flags & FT_LOCK_FAIL_IF_INTERRUPTED) ? FT_PARK_INTERRUPTIBLE : 0);
    int spins = 0;
    int max_spins = spin_limit();

    for (;;) {
        if (!(v & _Py_LOCKED)) {
            /* 0 -> 1 or 2 -> 3: barge in, even past parked threads */
            if (cas_bits(m, &v, v | _Py_LOCKED, __ATOMIC_ACQUIRE)) {
                return PY_LOCK_ACQUIRED;
            }
            continue;   /* v was reloaded by the failed CAS */
        }
        if (timeout_ns == 0) {
            return PY_LOCK_FAILURE;
        }
        if (!(v & _Py_HAS_PARKED) && spins < max_spins) {
            /* nobody queued yet: let the holder run and finish */
            sched_yield();
            spins++;
            v = __atomic_load_n(&m->_bits, __ATOMIC_RELAXED);
            continue;
        }
        if (!(v & _Py_HAS_PARKED)) {
            /* 1 -> 3: announce a parked thread before parking */
            uint8_t want = v | _Py_HAS_PARKED;
            if (!cas_bits(m, &v, want, __ATOMIC_RELAXED)) {
                continue;
            }
            v = want;
        }

        int64_t remaining = ft_deadline_remaining(endtime);
        ft_park_result r = ft_parking_lot_park(&m->_bits, &v, sizeof v, remaining,
                                               &waiter, park_flags);
        if (r == FT_PARK_OK && __atomic_load_n(&waiter.handed_off, __ATOMIC_RELAXED)) {
            /* the unlocker passed the lock to us; the byte stayed locked */
            return PY_LOCK_ACQUIRED;
        }
        if (r == FT_PARK_INTR && (flags & FT_LOCK_FAIL_IF_INTERRUPTED)) {
            return PY_LOCK_INTR;
        }
        if (ft_deadline_remaining(endtime) == 0) {
            timeout_ns = 0;   /* one last try below, then fail */
        }
        v = __atomic_load_n(&m->_bits, __ATOMIC_RELAXED);
    }
}

/* Runs in ft_parking_lot_unpark with the bucket lock held. */
static void
mutex_unpark(void *arg, void *park_arg, bool more_waiters)
{
    PyMutex *m = arg;
    struct mutex_waiter *w = park_arg;
    uint8_t v = _Py_UNLOCKED;
    if (w) {
        bool fair = ft_monotonic_ns() > w->time_to_be_fair;
        __atomic_store_n(&w->handed_off, fair, __ATOMIC_RELAXED);
        if (fair) {
            v |= _Py_LOCKED;        /* 3 -> 1|3: hand-off, never free */
        }
        if (more_waiters) {
            v |= _Py_HAS_PARKED;
        }
    }
    /* release: the critical section is over (3 -> 0|2) */
    __atomic_store_n(&m->_bits, v, __ATOMIC_RELEASE);
}

int
ft_mutex_try_unlock(PyMutex *m)
{
    uint8_t v = __atomic_load_n(&m->_bits, __ATOMIC_RELAXED);
    for (;;) {
        if (!(v & _Py_LOCKED)) {
            return -1;
        }
        if (v & _Py_HAS_PARKED) {
            ft_parking_lot_unpark(&m->_bits, mutex_unpark, m);
            return 0;
        }
        /* 1 -> 0: the fast path lost a race with a thread that has gone */
        if (cas_bits(m, &v, _Py_UNLOCKED, __ATOMIC_RELEASE)) {
            return 0;
        }
    }
}

void
ft_mutex_lock_slow(PyMutex *m)
{
    (void)ft_mutex_lock_timed(m, -1, FT_LOCK_DETACH);
}

void
ft_mutex_unlock_slow(PyMutex *m)
{
    if (ft_mutex_try_unlock(m) < 0) {
        _Py_FatalErrorFunc("PyMutex_Unlock", "unlocking mutex that is not locked");
    }
}

/* The exported functions, for callers that cannot use the inline ones. */
#undef PyMutex_Lock
#undef PyMutex_Unlock
#undef PyMutex_IsLocked

void
PyMutex_Lock(PyMutex *m)
{
    _PyMutex_Lock(m);
}

void
PyMutex_Unlock(PyMutex *m)
{
    _PyMutex_Unlock(m);
}

int
PyMutex_IsLocked(PyMutex *m)
{
    return _PyMutex_IsLocked(m);
}
