/* ft_recursive_mutex (sync/recursive_mutex.c).
 *
 * Scenario A8 of the internals notes (state after each lock and unlock),
 * exclusion against other threads, the fatal misuses (A9) and a nested-
 * locking counter.  Worker threads only record; the main thread asserts. */
#include "harness.h"
#include "test_util.h"

#include <signal.h>

#include "ft_lock.h"

#define POLL_MS 2000

static unsigned long long
owner_of(ft_recursive_mutex *m)
{
    return __atomic_load_n(&m->owner, __ATOMIC_RELAXED);
}

/* ---- single thread (A8) ---------------------------------------------------- */

Test(recursive_mutex, lock_unlock_state_sequence)
{
    ft_recursive_mutex m = {0};
    cr_assert_not(ft_recursive_mutex_is_owned_by_me(&m));
    cr_assert_eq(owner_of(&m), 0);

    ft_recursive_mutex_lock(&m);
    cr_assert(ft_recursive_mutex_is_owned_by_me(&m));
    cr_assert_eq(owner_of(&m), ft_thread_self_id());
    cr_assert(PyMutex_IsLocked(&m.mutex));
    cr_assert_eq(m.level, 0);

    ft_recursive_mutex_lock(&m);
    cr_assert(ft_recursive_mutex_is_owned_by_me(&m));
    cr_assert(PyMutex_IsLocked(&m.mutex));
    cr_assert_eq(m.level, 1);

    ft_recursive_mutex_unlock(&m);
    cr_assert(ft_recursive_mutex_is_owned_by_me(&m));
    cr_assert(PyMutex_IsLocked(&m.mutex));
    cr_assert_eq(m.level, 0);

    ft_recursive_mutex_unlock(&m);
    cr_assert_not(ft_recursive_mutex_is_owned_by_me(&m));
    cr_assert_eq(owner_of(&m), 0);
    cr_assert_not(PyMutex_IsLocked(&m.mutex));
    cr_assert_eq(ft_mutex_bits(&m.mutex), 0);
    cr_assert_eq(m.level, 0);
}

Test(recursive_mutex, lock_timed_state_sequence)
{
    ft_recursive_mutex m = {0};
    cr_assert_eq(ft_recursive_mutex_lock_timed(&m, 0, FT_LOCK_DONT_DETACH), PY_LOCK_ACQUIRED);
    cr_assert(ft_recursive_mutex_is_owned_by_me(&m));
    cr_assert_eq(m.level, 0);
    /* re-entry succeeds whatever the timeout */
    cr_assert_eq(ft_recursive_mutex_lock_timed(&m, 0, FT_LOCK_DONT_DETACH), PY_LOCK_ACQUIRED);
    cr_assert_eq(ft_recursive_mutex_lock_timed(&m, -1, FT_LOCK_DETACH), PY_LOCK_ACQUIRED);
    cr_assert_eq(ft_recursive_mutex_lock_timed(&m, 10 * FT_NS_PER_MS, FT_LOCK_DETACH),
                 PY_LOCK_ACQUIRED);
    ft_recursive_mutex_lock(&m);
    cr_assert_eq(m.level, 4);
    for (int i = 0; i < 5; i++) {
        cr_assert(ft_recursive_mutex_is_owned_by_me(&m));
        ft_recursive_mutex_unlock(&m);
    }
    cr_assert_not(ft_recursive_mutex_is_owned_by_me(&m));
    cr_assert_eq(owner_of(&m), 0);
    cr_assert_eq(ft_mutex_bits(&m.mutex), 0);
}

/* ---- other threads --------------------------------------------------------- */

struct probe {
    ft_recursive_mutex *m;
    bool owned_before;
    PyLockStatus try_now;      /* lock_timed(0) */
    PyLockStatus try_20ms;     /* lock_timed(20 ms) */
    int64_t waited_ns;
    bool owned_after;
};

static void *
probe_held(void *p)
{
    struct probe *pr = p;
    pr->owned_before = ft_recursive_mutex_is_owned_by_me(pr->m);
    pr->try_now = ft_recursive_mutex_lock_timed(pr->m, 0, FT_LOCK_DONT_DETACH);
    int64_t t0 = test_now_ns();
    pr->try_20ms = ft_recursive_mutex_lock_timed(pr->m, 20 * FT_NS_PER_MS, FT_LOCK_DETACH);
    pr->waited_ns = test_now_ns() - t0;
    pr->owned_after = ft_recursive_mutex_is_owned_by_me(pr->m);
    /* never unlock here: if a lock attempt wrongly succeeded, the main
     * thread reports it */
    return NULL;
}

static void *
probe_free(void *p)
{
    struct probe *pr = p;
    pr->try_now = ft_recursive_mutex_lock_timed(pr->m, 0, FT_LOCK_DONT_DETACH);
    if (pr->try_now == PY_LOCK_ACQUIRED) {
        pr->owned_after = ft_recursive_mutex_is_owned_by_me(pr->m);
        ft_recursive_mutex_unlock(pr->m);
    }
    return NULL;
}

Test(recursive_mutex, other_thread_cannot_acquire_while_held, .timeout = FT_TIMEOUT(20))
{
    ft_recursive_mutex m = {0};
    ft_recursive_mutex_lock(&m);
    ft_recursive_mutex_lock(&m);   /* level 1: still one holder */

    struct probe held = { .m = &m };
    pthread_t t = test_start_thread(probe_held, &held);
    test_join_thread(t);
    cr_assert_not(held.owned_before);
    cr_assert_eq(held.try_now, PY_LOCK_FAILURE);
    cr_assert_eq(held.try_20ms, PY_LOCK_FAILURE);
    cr_assert_geq(held.waited_ns, 20 * FT_NS_PER_MS, "gave up after %lld ns",
                  (long long)held.waited_ns);
    cr_assert_not(held.owned_after);

    /* the failed attempts changed nothing for the holder */
    cr_assert(ft_recursive_mutex_is_owned_by_me(&m));
    cr_assert_eq(m.level, 1);
    ft_recursive_mutex_unlock(&m);
    ft_recursive_mutex_unlock(&m);
    cr_assert_eq(owner_of(&m), 0);

    struct probe after = { .m = &m };
    t = test_start_thread(probe_free, &after);
    test_join_thread(t);
    cr_assert_eq(after.try_now, PY_LOCK_ACQUIRED);
    cr_assert(after.owned_after);
    cr_assert_eq(owner_of(&m), 0);
    cr_assert_not(ft_recursive_mutex_is_owned_by_me(&m));
    cr_assert_eq(ft_mutex_bits(&m.mutex), 0);
}

struct blocked {
    ft_recursive_mutex *m;
    int acquired;       /* atomic */
    bool owned;
    size_t inner_level;
    bool owned_after;
};

static void *
blocked_locker(void *p)
{
    struct blocked *b = p;
    ft_recursive_mutex_lock(b->m);            /* blocks until main unlocks */
    __atomic_store_n(&b->acquired, 1, __ATOMIC_RELAXED);
    b->owned = ft_recursive_mutex_is_owned_by_me(b->m);
    ft_recursive_mutex_lock(b->m);
    b->inner_level = b->m->level;
    ft_recursive_mutex_unlock(b->m);
    ft_recursive_mutex_unlock(b->m);
    b->owned_after = ft_recursive_mutex_is_owned_by_me(b->m);
    return NULL;
}

Test(recursive_mutex, blocked_thread_acquires_after_release, .timeout = FT_TIMEOUT(20))
{
    ft_recursive_mutex m = {0};
    ft_recursive_mutex_lock(&m);
    struct blocked b = { .m = &m };
    pthread_t t = test_start_thread(blocked_locker, &b);

    /* the other thread is parked on the inner mutex: locked + parked bit */
    cr_assert(TEST_POLL_UNTIL(ft_mutex_bits(&m.mutex) == (_Py_LOCKED | _Py_HAS_PARKED),
                              POLL_MS), "mutex byte %d", ft_mutex_bits(&m.mutex));
    cr_assert_eq(__atomic_load_n(&b.acquired, __ATOMIC_RELAXED), 0);
    cr_assert(ft_recursive_mutex_is_owned_by_me(&m));

    ft_recursive_mutex_unlock(&m);
    test_join_thread(t);
    cr_assert_eq(__atomic_load_n(&b.acquired, __ATOMIC_RELAXED), 1);
    cr_assert(b.owned);
    cr_assert_eq(b.inner_level, 1);
    cr_assert_not(b.owned_after);
    cr_assert_eq(owner_of(&m), 0);
    cr_assert_eq(ft_mutex_bits(&m.mutex), 0);
}

/* ---- fatal misuse (A9) ------------------------------------------------------ */

static void *
unlock_foreign(void *p)
{
    ft_recursive_mutex_unlock(p);   /* not ours: aborts the process */
    return NULL;
}

Test(recursive_mutex, unlock_by_non_owner_is_fatal, .signal = SIGABRT,
     .timeout = FT_TIMEOUT(20))
{
    static ft_recursive_mutex m;   /* static: still valid while the worker aborts */
    ft_recursive_mutex_lock(&m);
    pthread_t t = test_start_thread(unlock_foreign, &m);
    test_join_thread(t);
    /* not reached: the worker's abort ended the process */
}

Test(recursive_mutex, unlock_unowned_is_fatal, .signal = SIGABRT)
{
    ft_recursive_mutex m = {0};
    ft_recursive_mutex_unlock(&m);
}

Test(recursive_mutex, unlock_once_too_often_is_fatal, .signal = SIGABRT)
{
    ft_recursive_mutex m = {0};
    ft_recursive_mutex_lock(&m);
    ft_recursive_mutex_lock(&m);
    ft_recursive_mutex_unlock(&m);
    ft_recursive_mutex_unlock(&m);
    ft_recursive_mutex_unlock(&m);
}

/* ---- contention -------------------------------------------------------------- */

#define N_THREADS 4
#define ITERS 5000

struct counter_ctx {
    ft_recursive_mutex m;
    long counter;   /* plain: protected by m (TSan checks it) */
    int errors;     /* atomic: nested-state violations seen by workers */
};

static void *
counter_worker(void *p)
{
    struct counter_ctx *ctx = p;
    for (int i = 0; i < ITERS; i++) {
        if (i % 2) {
            ft_recursive_mutex_lock(&ctx->m);
        }
        else if (ft_recursive_mutex_lock_timed(&ctx->m, -1, FT_LOCK_DETACH)
                 != PY_LOCK_ACQUIRED) {
            __atomic_fetch_add(&ctx->errors, 1, __ATOMIC_RELAXED);
            continue;
        }
        ft_recursive_mutex_lock(&ctx->m);
        if (!ft_recursive_mutex_is_owned_by_me(&ctx->m) || ctx->m.level != 1) {
            __atomic_fetch_add(&ctx->errors, 1, __ATOMIC_RELAXED);
        }
        ctx->counter++;
        ft_recursive_mutex_unlock(&ctx->m);
        ctx->counter++;
        ft_recursive_mutex_unlock(&ctx->m);
        if (ft_recursive_mutex_is_owned_by_me(&ctx->m)) {
            __atomic_fetch_add(&ctx->errors, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

Test(recursive_mutex, nested_counter_is_exact, .timeout = FT_TIMEOUT(60))
{
    static struct counter_ctx ctx;
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        th[i] = test_start_thread(counter_worker, &ctx);
    }
    for (int i = 0; i < N_THREADS; i++) {
        test_join_thread(th[i]);
    }
    cr_assert_eq(__atomic_load_n(&ctx.errors, __ATOMIC_RELAXED), 0);
    cr_assert_eq(ctx.counter, 2L * N_THREADS * ITERS, "counter %ld", ctx.counter);
    cr_assert_eq(owner_of(&ctx.m), 0);
    cr_assert_eq(ft_mutex_bits(&ctx.m.mutex), 0);
}
