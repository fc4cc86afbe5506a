/* Internal locking primitives built on the parking lot:
 *   - PyMutex internals: timed and non-detaching lock, try-unlock (sync/mutex.c)
 *   - ft_event: one-shot event (sync/event.c)
 *   - ft_once_flag: call-once with retry after failure (sync/event.c)
 *   - ft_recursive_mutex (sync/recursive_mutex.c)
 */
#ifndef FT_LOCK_H
#define FT_LOCK_H

#include "ft_core.h"
#include "ft_parking_lot.h"

/* ---- PyMutex internals -------------------------------------------------- */

typedef enum ft_lock_flags {
    FT_LOCK_DONT_DETACH = 0,          /* stay attached while waiting */
    FT_LOCK_DETACH = 1,               /* detach the thread state while parked */
    FT_LOCK_FAIL_IF_INTERRUPTED = 2,  /* a signal during the wait -> PY_LOCK_INTR */
} ft_lock_flags;

/* Lock with a relative timeout in ns (-1 = forever, 0 = try once).
 * Returns PY_LOCK_ACQUIRED, PY_LOCK_FAILURE (timed out) or PY_LOCK_INTR. */
FT_INTERNAL PyLockStatus ft_mutex_lock_timed(PyMutex *m, int64_t timeout_ns,
                                             ft_lock_flags flags);

/* The inline fast paths of PyMutex_Lock / PyMutex_Unlock as predicates:
 * 0 -> 1 with acquire, 1 -> 0 with release.  False means "take a slow path". */
static inline bool
ft_mutex_lock_fast(PyMutex *m)
{
    uint8_t expected = _Py_UNLOCKED;
    return __atomic_compare_exchange_n(&m->_bits, &expected, _Py_LOCKED, 0,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static inline bool
ft_mutex_unlock_fast(PyMutex *m)
{
    uint8_t expected = _Py_LOCKED;
    return __atomic_compare_exchange_n(&m->_bits, &expected, _Py_UNLOCKED, 0,
                                       __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

/* Lock with explicit flags; FT_LOCK_DONT_DETACH is for runtime-internal
 * locks that must never let a stop-the-world in while they are waited for. */
static inline void
ft_mutex_lock_flags(PyMutex *m, ft_lock_flags flags)
{
    if (!ft_mutex_lock_fast(m)) {
        (void)ft_mutex_lock_timed(m, -1, flags);
    }
}

static inline bool
ft_mutex_trylock(PyMutex *m)
{
    return ft_mutex_lock_fast(m) ||
           ft_mutex_lock_timed(m, 0, FT_LOCK_DONT_DETACH) == PY_LOCK_ACQUIRED;
}

/* Test-only: how long a waiter waits before the next unlock hands the lock
 * to it (default 1 ms; a negative value restores the default).  Lets tests
 * of barging and hand-off be exact instead of racing the clock. */
FT_INTERNAL void ft_mutex_set_fairness_ns(int64_t ns);

/* GIL build only: the runtime registers a probe that says whether the
 * calling thread holds the GIL.  A waiter that holds it parks at once, since
 * the mutex holder cannot run until the waiter lets the GIL go; any other
 * waiter (free-threaded build, or a thread without the GIL) spins briefly
 * first.  Until a probe is registered nobody holds a GIL. */
typedef bool ft_gil_probe(void);
FT_INTERNAL void ft_mutex_set_gil_probe(ft_gil_probe *holds_gil);

/* Unlock; returns -1 (changing nothing) if m was not locked, so callers can
 * name themselves in the fatal error. */
FT_INTERNAL int ft_mutex_try_unlock(PyMutex *m);

/* The raw byte, for white-box tests and debugging. */
static inline uint8_t
ft_mutex_bits(const PyMutex *m)
{
    return __atomic_load_n(&m->_bits, __ATOMIC_RELAXED);
}

/* After fork(): whoever held it does not exist in the child. */
static inline void ft_mutex_after_fork(PyMutex *m) { __atomic_store_n(&m->_bits, 0, __ATOMIC_RELAXED); }

/* ---- one-shot event ----------------------------------------------------- */

/* 0 = not set, 1 = set, 2 = not set and threads may be parked.  Zero-init. */
typedef struct ft_event {
    uint8_t v;
} ft_event;

FT_INTERNAL void ft_event_set(ft_event *e);
FT_INTERNAL bool ft_event_is_set(ft_event *e);
/* Wait until set.  Detaches the thread state while parked. */
FT_INTERNAL void ft_event_wait(ft_event *e);
/* Wait at most timeout_ns (-1 = forever); true if the event is set. */
FT_INTERNAL bool ft_event_wait_timed(ft_event *e, int64_t timeout_ns, ft_lock_flags flags);

/* ---- once flag ---------------------------------------------------------- */

/* 0 = not done (or the last attempt failed), 1 = running, 2 = parked bit,
 * 4 = done.  Zero-init. */
typedef struct ft_once_flag {
    uint8_t v;
} ft_once_flag;

#define FT_ONCE_DONE 4

typedef int ft_once_fn(void *arg);

FT_INTERNAL int ft_once_call_slow(ft_once_flag *o, ft_once_fn *fn, void *arg);

/* Run fn(arg) unless a previous call succeeded.  fn returns 0 on success and
 * -1 on failure; after a failure the next caller tries again.  Concurrent
 * callers wait for the running one.  Returns 0 once done, -1 if this call's
 * attempt failed. */
static inline int
ft_once_call(ft_once_flag *o, ft_once_fn *fn, void *arg)
{
    if (__atomic_load_n(&o->v, __ATOMIC_ACQUIRE) == FT_ONCE_DONE) {
        return 0;
    }
    return ft_once_call_slow(o, fn, arg);
}

/* ---- recursive mutex ---------------------------------------------------- */

typedef struct ft_recursive_mutex {
    PyMutex mutex;
    unsigned long long owner;   /* ft_thread_self_id() of the holder, 0 if none */
    size_t level;               /* extra acquisitions beyond the first */
} ft_recursive_mutex;

FT_INTERNAL void ft_recursive_mutex_lock(ft_recursive_mutex *m);
FT_INTERNAL PyLockStatus ft_recursive_mutex_lock_timed(ft_recursive_mutex *m,
                                                       int64_t timeout_ns,
                                                       ft_lock_flags flags);
/* Fatal if the calling thread does not hold it. */
FT_INTERNAL void ft_recursive_mutex_unlock(ft_recursive_mutex *m);
FT_INTERNAL bool ft_recursive_mutex_is_owned_by_me(ft_recursive_mutex *m);

/* A process-unique id of the calling thread, never 0 (cheap: thread-local). */
FT_INTERNAL unsigned long long ft_thread_self_id(void);

#endif /* FT_LOCK_H */
