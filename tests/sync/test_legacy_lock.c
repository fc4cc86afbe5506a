/* Tests for sync/legacy_lock.c: PyThread_allocate_lock and friends. */
#include "harness.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_lock.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#define PENDING (-1)

static bool
has_parked(PyThread_type_lock lock)
{
    return (ft_mutex_bits((PyMutex *)lock) & _Py_HAS_PARKED) != 0;
}

Test(legacy_lock, allocate_and_free)
{
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    cr_assert_eq(ft_mutex_bits((PyMutex *)lock), _Py_UNLOCKED);
    PyThread_type_lock other = PyThread_allocate_lock();
    cr_assert_not_null(other);
    cr_assert_neq(lock, other);
    PyThread_free_lock(other);
    PyThread_free_lock(lock);
}

Test(legacy_lock, allocate_out_of_memory)
{
    ft_alloc_fail_after(1);
    PyThread_type_lock lock = PyThread_allocate_lock();
    ft_alloc_fail_after(0);
    cr_assert_null(lock);
    lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    PyThread_free_lock(lock);
}

Test(legacy_lock, acquire_wait_and_nowait)
{
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);

    cr_assert_eq(PyThread_acquire_lock(lock, WAIT_LOCK), 1);
    cr_assert_eq(ft_mutex_bits((PyMutex *)lock) & _Py_LOCKED, _Py_LOCKED);
    /* Not reentrant: a held lock cannot be taken again without waiting. */
    cr_assert_eq(PyThread_acquire_lock(lock, NOWAIT_LOCK), 0);
    PyThread_release_lock(lock);
    cr_assert_eq(ft_mutex_bits((PyMutex *)lock), _Py_UNLOCKED);

    cr_assert_eq(PyThread_acquire_lock(lock, NOWAIT_LOCK), 1);
    cr_assert_eq(PyThread_acquire_lock(lock, NOWAIT_LOCK), 0);
    PyThread_release_lock(lock);
    PyThread_free_lock(lock);
}

Test(legacy_lock, timed_zero_does_not_wait)
{
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    cr_assert_eq(PyThread_acquire_lock_timed(lock, 0, 0), PY_LOCK_ACQUIRED);
    int64_t t0 = test_now_ns();
    cr_assert_eq(PyThread_acquire_lock_timed(lock, 0, 0), PY_LOCK_FAILURE);
    cr_assert_eq(PyThread_acquire_lock_timed(lock, 0, 1), PY_LOCK_FAILURE);
    /* "at once": far below any timeout a caller could mean */
    cr_assert_lt(test_now_ns() - t0, 1000LL * 1000 * 1000 * FT_TIMEOUT_SCALE);
    PyThread_release_lock(lock);
    PyThread_free_lock(lock);
}

Test(legacy_lock, timed_times_out, .timeout = FT_TIMEOUT(10))
{
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    cr_assert_eq(PyThread_acquire_lock(lock, WAIT_LOCK), 1);

    int64_t t0 = test_now_ns();
    PyLockStatus st = PyThread_acquire_lock_timed(lock, 50 * 1000, 0);
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(st, PY_LOCK_FAILURE);
    cr_assert_geq(elapsed, 50LL * 1000 * 1000, "returned after %lld ns", (long long)elapsed);

    /* still held by us, still releasable */
    cr_assert_eq(PyThread_acquire_lock(lock, NOWAIT_LOCK), 0);
    PyThread_release_lock(lock);
    PyThread_free_lock(lock);
}

Test(legacy_lock, timed_positive_on_free_lock)
{
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    cr_assert_eq(PyThread_acquire_lock_timed(lock, 1000, 0), PY_LOCK_ACQUIRED);
    PyThread_release_lock(lock);
    cr_assert_eq(PyThread_acquire_lock_timed(lock, LLONG_MAX, 1), PY_LOCK_ACQUIRED);
    PyThread_release_lock(lock);
    PyThread_free_lock(lock);
}

/* ---- a waiter blocked on a lock the main thread holds ------------------- */

typedef struct waiter {
    PyThread_type_lock lock;
    PY_TIMEOUT_T timeout_us;
    int intr_flag;
    bool release_after;          /* release the lock once acquired */
    bool use_waitflag;           /* PyThread_acquire_lock(lock, WAIT_LOCK) */
    _Atomic int result;          /* PENDING until the call returns */
} waiter;

static void *
waiter_main(void *p)
{
    waiter *w = p;
    PyLockStatus st;
    if (w->use_waitflag) {
        st = PyThread_acquire_lock(w->lock, WAIT_LOCK) ? PY_LOCK_ACQUIRED : PY_LOCK_FAILURE;
    }
    else {
        st = PyThread_acquire_lock_timed(w->lock, w->timeout_us, w->intr_flag);
    }
    if (st == PY_LOCK_ACQUIRED && w->release_after) {
        PyThread_release_lock(w->lock);
    }
    atomic_store(&w->result, (int)st);
    return NULL;
}

/* Start a waiter with the given timeout on a lock held by the caller, wait
 * until it is parked, release, and return what its acquire returned. */
static int
wait_then_release_ex(PY_TIMEOUT_T timeout_us, bool use_waitflag, int *pending_at_release)
{
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    cr_assert_eq(PyThread_acquire_lock(lock, WAIT_LOCK), 1);

    waiter w = { .lock = lock, .timeout_us = timeout_us, .release_after = true,
                 .use_waitflag = use_waitflag };
    atomic_init(&w.result, PENDING);
    pthread_t t = test_start_thread(waiter_main, &w);

    bool parked = TEST_POLL_UNTIL(has_parked(lock) || atomic_load(&w.result) != PENDING,
                                  5000);
    *pending_at_release = atomic_load(&w.result) == PENDING;
    PyThread_release_lock(lock);
    test_join_thread(t);
    cr_assert(parked, "the waiter never parked");

    /* the waiter released it again */
    cr_assert_eq(PyThread_acquire_lock(lock, NOWAIT_LOCK), 1);
    PyThread_release_lock(lock);
    PyThread_free_lock(lock);
    return atomic_load(&w.result);
}

static int
wait_then_release(PY_TIMEOUT_T timeout_us, int *pending_at_release)
{
    return wait_then_release_ex(timeout_us, false, pending_at_release);
}

Test(legacy_lock, timed_forever_waits_for_release, .timeout = FT_TIMEOUT(10))
{
    int pending;
    int st = wait_then_release(-1, &pending);
    cr_assert(pending, "acquire(-1) returned before the lock was released");
    cr_assert_eq(st, PY_LOCK_ACQUIRED);
}

Test(legacy_lock, any_negative_timeout_waits_forever, .timeout = FT_TIMEOUT(10))
{
    int pending;
    int st = wait_then_release(-5, &pending);
    cr_assert(pending, "acquire(-5) returned before the lock was released");
    cr_assert_eq(st, PY_LOCK_ACQUIRED);

    st = wait_then_release(LLONG_MIN, &pending);
    cr_assert(pending, "acquire(LLONG_MIN) returned before the lock was released");
    cr_assert_eq(st, PY_LOCK_ACQUIRED);
}

Test(legacy_lock, huge_timeout_is_clamped, .timeout = FT_TIMEOUT(10))
{
    /* LLONG_MAX us would overflow when converted to ns (UBSan would say so;
     * a wrapped value would be negative or tiny). */
    int pending;
    int st = wait_then_release(LLONG_MAX, &pending);
    cr_assert(pending, "acquire(LLONG_MAX) returned before the lock was released");
    cr_assert_eq(st, PY_LOCK_ACQUIRED);

    st = wait_then_release(PY_TIMEOUT_MAX, &pending);
    cr_assert(pending, "acquire(PY_TIMEOUT_MAX) returned before the lock was released");
    cr_assert_eq(st, PY_LOCK_ACQUIRED);
}

Test(legacy_lock, blocking_acquire_waits_for_release, .timeout = FT_TIMEOUT(10))
{
    int pending;
    int st = wait_then_release_ex(0, true, &pending);
    cr_assert(pending, "acquire(WAIT_LOCK) returned before the lock was released");
    cr_assert_eq(st, PY_LOCK_ACQUIRED);
}

/* ---- release from another thread ---------------------------------------- */

typedef struct releaser {
    PyThread_type_lock lock;
    _Atomic int done;
    int payload;                 /* written before the release */
} releaser;

static void *
releaser_main(void *p)
{
    releaser *r = p;
    r->payload = 42;
    PyThread_release_lock(r->lock);
    atomic_store(&r->done, 1);
    return NULL;
}

Test(legacy_lock, release_from_other_thread, .timeout = FT_TIMEOUT(10))
{
    releaser r = { .lock = PyThread_allocate_lock() };
    cr_assert_not_null(r.lock);
    cr_assert_eq(PyThread_acquire_lock(r.lock, WAIT_LOCK), 1);

    pthread_t t = test_start_thread(releaser_main, &r);
    /* Blocks until the other thread releases what this one acquired: the
     * lock works as a binary semaphore.  The acquire orders the payload. */
    int got = PyThread_acquire_lock(r.lock, WAIT_LOCK);
    int payload = r.payload;
    test_join_thread(t);
    cr_assert_eq(got, 1);
    cr_assert_eq(payload, 42);
    cr_assert_eq(atomic_load(&r.done), 1);

    PyThread_release_lock(r.lock);
    PyThread_free_lock(r.lock);
}

typedef struct ping_pong {
    PyThread_type_lock ping, pong;
    int rounds;
    int count;                   /* touched alternately, ordered by the locks */
} ping_pong;

static void *
pong_main(void *p)
{
    ping_pong *s = p;
    for (int i = 0; i < s->rounds; i++) {
        PyThread_acquire_lock(s->ping, WAIT_LOCK);   /* released by main */
        s->count++;
        PyThread_release_lock(s->pong);             /* acquired by main */
    }
    return NULL;
}

Test(legacy_lock, ping_pong_between_threads, .timeout = FT_TIMEOUT(30))
{
    /* Two locks used as semaphores: each side releases the lock the other
     * one waits for, so every acquire is paired with a release made by the
     * other thread. */
    ping_pong s = { PyThread_allocate_lock(), PyThread_allocate_lock(), 2000, 0 };
    cr_assert_not_null(s.ping);
    cr_assert_not_null(s.pong);
    cr_assert_eq(PyThread_acquire_lock(s.ping, WAIT_LOCK), 1);
    cr_assert_eq(PyThread_acquire_lock(s.pong, WAIT_LOCK), 1);

    pthread_t t = test_start_thread(pong_main, &s);
    int mismatches = 0;
    for (int i = 0; i < s.rounds; i++) {
        if (s.count != 2 * i) {
            mismatches++;
        }
        s.count++;
        PyThread_release_lock(s.ping);
        PyThread_acquire_lock(s.pong, WAIT_LOCK);
    }
    test_join_thread(t);
    cr_assert_eq(mismatches, 0);
    cr_assert_eq(s.count, 2 * s.rounds);
    /* both end up held by main; nobody else waits */
    cr_assert_eq(PyThread_acquire_lock(s.ping, NOWAIT_LOCK), 0);
    cr_assert_eq(PyThread_acquire_lock(s.pong, NOWAIT_LOCK), 0);
    PyThread_release_lock(s.ping);
    PyThread_release_lock(s.pong);
    PyThread_free_lock(s.ping);
    PyThread_free_lock(s.pong);
}

/* ---- signals ------------------------------------------------------------ */

/* Signal the waiter (parked on a lock the caller holds) until it returns,
 * the handler has run min_runs times (0: no such limit), max_sends signals
 * went out (0: no limit) or the deadline passes; returns whether the waiter
 * returned. */
static bool
signal_waiter(pthread_t t, waiter *w, int min_runs, int max_sends)
{
    int64_t deadline = test_now_ns() + 10LL * 1000 * 1000 * 1000 * FT_TIMEOUT_SCALE;
    for (int sent = 0; test_now_ns() < deadline; ) {
        pthread_kill(t, SIGUSR1);
        sent++;
        if (TEST_POLL_UNTIL(atomic_load(&w->result) != PENDING, 5)) {
            return true;
        }
        if (min_runs > 0 && atomic_load(&test_sigusr1_count) >= min_runs) {
            break;
        }
        if (max_sends > 0 && sent >= max_sends) {
            break;
        }
    }
    return atomic_load(&w->result) != PENDING;
}

Test(legacy_lock, interrupted_by_signal, .timeout = FT_TIMEOUT(30))
{
    struct sigaction old;
    test_install_sigusr1_without_restart(&old);
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    cr_assert_eq(PyThread_acquire_lock(lock, WAIT_LOCK), 1);

    waiter w = { .lock = lock, .timeout_us = -1, .intr_flag = 1, .release_after = true };
    atomic_init(&w.result, PENDING);
    pthread_t t = test_start_thread(waiter_main, &w);

    bool parked = TEST_POLL_UNTIL(has_parked(lock) || atomic_load(&w.result) != PENDING,
                                  5000);
    int before = atomic_load(&w.result);
    bool returned = parked && before == PENDING && signal_waiter(t, &w, 0, 0);
    if (!returned) {
        PyThread_release_lock(lock);   /* let the waiter finish either way */
    }
    test_join_thread(t);
    cr_assert(parked, "the waiter never parked");
    cr_assert_eq(before, PENDING, "the waiter returned before any signal");
    cr_assert(returned, "the signals did not end the wait");
    cr_assert_eq(atomic_load(&w.result), PY_LOCK_INTR);

    /* the lock is still held by main, not by the interrupted waiter */
    cr_assert_eq(PyThread_acquire_lock(lock, NOWAIT_LOCK), 0);
    PyThread_release_lock(lock);
    PyThread_free_lock(lock);
    sigaction(SIGUSR1, &old, NULL);
}

Test(legacy_lock, not_interrupted_without_intr_flag, .timeout = FT_TIMEOUT(30))
{
    struct sigaction old;
    test_install_sigusr1_without_restart(&old);
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    cr_assert_eq(PyThread_acquire_lock(lock, WAIT_LOCK), 1);

    waiter w = { .lock = lock, .timeout_us = -1, .intr_flag = 0, .release_after = true };
    atomic_init(&w.result, PENDING);
    pthread_t t = test_start_thread(waiter_main, &w);

    bool parked = TEST_POLL_UNTIL(has_parked(lock) || atomic_load(&w.result) != PENDING,
                                  5000);
    int before = atomic_load(&w.result);
    /* Several handler runs during the wait; none may end it. */
    bool returned = parked && before == PENDING && signal_waiter(t, &w, 5, 200);
    int runs = atomic_load(&test_sigusr1_count);
    int pending_at_release = atomic_load(&w.result) == PENDING;
    PyThread_release_lock(lock);
    test_join_thread(t);
    cr_assert(parked, "the waiter never parked");
    cr_assert_eq(before, PENDING);
    cr_assert_not(returned, "the wait ended with %d", atomic_load(&w.result));
    cr_assert_geq(runs, 5);
    cr_assert(pending_at_release);
    cr_assert_eq(atomic_load(&w.result), PY_LOCK_ACQUIRED);

    cr_assert_eq(PyThread_acquire_lock(lock, NOWAIT_LOCK), 1);
    PyThread_release_lock(lock);
    PyThread_free_lock(lock);
    sigaction(SIGUSR1, &old, NULL);
}

/* ---- mutual exclusion --------------------------------------------------- */

enum { COUNTER_THREADS = 4, COUNTER_ITERS = 20000 };

typedef struct counter {
    PyThread_type_lock lock;
    long value;                  /* only under lock */
    _Atomic int failures;
} counter;

static void *
counter_main(void *p)
{
    counter *c = p;
    for (int i = 0; i < COUNTER_ITERS; i++) {
        if (PyThread_acquire_lock(c->lock, WAIT_LOCK) != 1) {
            atomic_fetch_add(&c->failures, 1);
            continue;
        }
        long v = c->value;
        c->value = v + 1;
        PyThread_release_lock(c->lock);
    }
    return NULL;
}

Test(legacy_lock, counter_four_threads, .timeout = FT_TIMEOUT(60))
{
    counter c = { .lock = PyThread_allocate_lock() };
    cr_assert_not_null(c.lock);
    pthread_t t[COUNTER_THREADS];
    for (int i = 0; i < COUNTER_THREADS; i++) {
        t[i] = test_start_thread(counter_main, &c);
    }
    for (int i = 0; i < COUNTER_THREADS; i++) {
        test_join_thread(t[i]);
    }
    cr_assert_eq(atomic_load(&c.failures), 0);
    cr_assert_eq(c.value, (long)COUNTER_THREADS * COUNTER_ITERS);
    cr_assert_eq(ft_mutex_bits((PyMutex *)c.lock) & _Py_LOCKED, 0);
    PyThread_free_lock(c.lock);
}

/* ---- misuse ------------------------------------------------------------- */

Test(legacy_lock, release_unlocked_is_fatal, .signal = SIGABRT)
{
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    PyThread_release_lock(lock);
}

Test(legacy_lock, double_release_is_fatal, .signal = SIGABRT)
{
    PyThread_type_lock lock = PyThread_allocate_lock();
    cr_assert_not_null(lock);
    cr_assert_eq(PyThread_acquire_lock(lock, WAIT_LOCK), 1);
    PyThread_release_lock(lock);
    PyThread_release_lock(lock);
}
