/* PyMutex (include/cpython/lock.h, sync/mutex.c), white-box.
 *
 * Covers scenarios A1 (byte values 0 -> 1 -> 0, inline and exported
 * functions), A2 (contended bits only ever 1 or 3), A3 (5 x 10,000 counter),
 * A4 (long holds force hand-offs), A9 (unlocking an unlocked mutex is fatal,
 * with CPython's message), A10 (timed lock: 0, 50 ms, forever), A11 (direct
 * hand-off after 1 ms of waiting, barging before that) and, at the sync level,
 * A14 (a thread blocked in PyMutex_Lock calls the detach hook once before
 * sleeping and the reattach hook once after; FT_LOCK_DONT_DETACH calls
 * neither).  Also: sizeof(PyMutex), PyMutex_IsLocked, ft_mutex_trylock,
 * ft_mutex_try_unlock, ft_mutex_after_fork, an explicit slow-path pile-up and
 * a seeded random stress over four mutexes (separate buckets, and all in one
 * bucket).  Parking is observed without sleeping: through the detach hook
 * (called after the waiter is queued) or through an unpark whose callback
 * leaves the byte alone, so the waiter simply parks again.  Workers only
 * record; the main thread asserts.
 */
#include "harness.h"
#include "test_util.h"

#include "ft_lock.h"
#include "ft_parking_lot.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_MS 2000

/* A bug that blocks a single-threaded test fails it instead of hanging. */
TestSuite(mutex, .timeout = FT_TIMEOUT(30));

/* The exported (non-inline) functions.  PyMutex_Lock and friends are
 * object-like macros naming the inline versions, so `(PyMutex_Lock)(m)`
 * would still expand to the inline one: take the addresses with the macros
 * switched off instead. */
#pragma push_macro("PyMutex_Lock")
#pragma push_macro("PyMutex_Unlock")
#pragma push_macro("PyMutex_IsLocked")
#undef PyMutex_Lock
#undef PyMutex_Unlock
#undef PyMutex_IsLocked
static void (*const exported_lock)(PyMutex *) = PyMutex_Lock;
static void (*const exported_unlock)(PyMutex *) = PyMutex_Unlock;
static int (*const exported_is_locked)(PyMutex *) = PyMutex_IsLocked;
#pragma pop_macro("PyMutex_IsLocked")
#pragma pop_macro("PyMutex_Unlock")
#pragma pop_macro("PyMutex_Lock")

static uint8_t
bits(PyMutex *m)
{
    return ft_mutex_bits(m);
}

static void
set_bits(PyMutex *m, uint8_t v)
{
    __atomic_store_n(&m->_bits, v, __ATOMIC_RELAXED);
}

/* ---- detach hooks that count, and record who called them ---------------- */

#define MAX_HOOK_CALLS 64

static atomic_int detach_calls;
static atomic_int reattach_calls;
static atomic_int bad_tokens;
static pthread_t detach_thread[MAX_HOOK_CALLS];    /* slot i: i-th detach */
static pthread_t reattach_thread[MAX_HOOK_CALLS];  /* slot i: reattach of token i */
static int tokens[MAX_HOOK_CALLS + 1];             /* the last: calls beyond that */

static void *
count_detach(void)
{
    int i = atomic_fetch_add(&detach_calls, 1);
    if (i >= MAX_HOOK_CALLS) {
        return &tokens[MAX_HOOK_CALLS];   /* counted, not recorded */
    }
    detach_thread[i] = pthread_self();
    return &tokens[i];
}

static void
count_reattach(void *token)
{
    int *t = token;
    if (t < tokens || t > tokens + MAX_HOOK_CALLS) {
        atomic_fetch_add(&bad_tokens, 1);
        return;
    }
    if (t < tokens + MAX_HOOK_CALLS) {
        reattach_thread[t - tokens] = pthread_self();
    }
    atomic_fetch_add(&reattach_calls, 1);
}

static const ft_detach_hooks counting_hooks = { count_detach, count_reattach };

static void
install_counting_hooks(void)
{
    ft_parking_lot_set_detach_hooks(&counting_hooks);
}

static void
remove_hooks(void)
{
    ft_parking_lot_set_detach_hooks(NULL);
}

/* An unpark callback that only notes whether a waiter was found.  It leaves
 * the byte as it is (locked, parked bit set), so the woken waiter, which was
 * not handed the lock, sees it still held and parks again. */
static void
note_waiter_found(void *arg, void *park_arg, bool has_more_waiters)
{
    (void)has_more_waiters;
    if (park_arg) {
        atomic_fetch_add((atomic_int *)arg, 1);
    }
}

/* True once a waiter parked on m has been found (and put back to sleep). */
static bool
probe_parked_waiter(PyMutex *m)
{
    atomic_int found = 0;
    ft_parking_lot_unpark(&m->_bits, note_waiter_found, &found);
    return atomic_load(&found) > 0;
}

/* ---- single thread -------------------------------------------------------- */

Test(mutex, is_one_byte_and_zero_is_unlocked)
{
    cr_assert_eq(sizeof(PyMutex), 1);
    cr_assert_eq(_Alignof(PyMutex), 1);
    PyMutex m = {0};
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
    cr_assert_not(PyMutex_IsLocked(&m));
}

Test(mutex, lock_sets_byte_to_1_and_unlock_clears_it)
{
    PyMutex m = {0};
    PyMutex_Lock(&m);
    cr_assert_eq(bits(&m), _Py_LOCKED);
    cr_assert(PyMutex_IsLocked(&m));
    PyMutex_Unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
    cr_assert_not(PyMutex_IsLocked(&m));

    for (int i = 0; i < 1000; i++) {   /* no state left behind */
        PyMutex_Lock(&m);
        PyMutex_Unlock(&m);
    }
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, exported_functions_behave_like_the_inline_ones)
{
    PyMutex m = {0};
    exported_lock(&m);
    cr_assert_eq(bits(&m), _Py_LOCKED);
    cr_assert_neq(exported_is_locked(&m), 0);
    exported_unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
    cr_assert_eq(exported_is_locked(&m), 0);

    /* mixed: lock inline, unlock exported, and the other way round */
    PyMutex_Lock(&m);
    exported_unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
    exported_lock(&m);
    PyMutex_Unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, is_locked_reads_only_the_locked_bit)
{
    PyMutex m = {0};
    const struct { uint8_t v; bool locked; } cases[] = {
        { 0, false }, { 1, true }, { 2, false }, { 3, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        set_bits(&m, cases[i].v);
        cr_assert_eq(PyMutex_IsLocked(&m) != 0, cases[i].locked, "byte %u", cases[i].v);
        cr_assert_eq(exported_is_locked(&m) != 0, cases[i].locked, "byte %u", cases[i].v);
    }
}

Test(mutex, trylock_takes_a_free_mutex_and_fails_on_a_held_one)
{
    PyMutex m = {0};
    cr_assert(ft_mutex_trylock(&m));
    cr_assert_eq(bits(&m), _Py_LOCKED);
    cr_assert_not(ft_mutex_trylock(&m));
    cr_assert_eq(bits(&m), _Py_LOCKED, "a failed trylock must not set the parked bit");
    PyMutex_Unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, trylock_barges_past_the_parked_bit_and_unlock_clears_it)
{
    /* Byte 2: free, but a thread may be parked (here: a stale bit, nobody is).
     * A locker may take it (2 -> 3); the unlock then looks in the parking
     * lot, finds nobody and leaves the byte 0. */
    PyMutex m = {0};
    set_bits(&m, _Py_HAS_PARKED);
    cr_assert(ft_mutex_trylock(&m));
    cr_assert_eq(bits(&m), _Py_LOCKED | _Py_HAS_PARKED);
    PyMutex_Unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);

    set_bits(&m, _Py_HAS_PARKED);
    PyMutex_Lock(&m);
    cr_assert_eq(bits(&m), _Py_LOCKED | _Py_HAS_PARKED);
    PyMutex_Unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, try_unlock_returns_minus_1_and_changes_nothing_when_unlocked)
{
    PyMutex m = {0};
    cr_assert_eq(ft_mutex_try_unlock(&m), -1);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);

    set_bits(&m, _Py_HAS_PARKED);
    cr_assert_eq(ft_mutex_try_unlock(&m), -1);
    cr_assert_eq(bits(&m), _Py_HAS_PARKED);

    set_bits(&m, _Py_UNLOCKED);
    PyMutex_Lock(&m);
    cr_assert_eq(ft_mutex_try_unlock(&m), 0);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);

    set_bits(&m, _Py_LOCKED | _Py_HAS_PARKED);   /* stale parked bit */
    cr_assert_eq(ft_mutex_try_unlock(&m), 0);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, after_fork_forgets_the_holder_and_the_parked_bit)
{
    PyMutex m = {0};
    set_bits(&m, _Py_LOCKED | _Py_HAS_PARKED);
    ft_mutex_after_fork(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
    cr_assert(ft_mutex_trylock(&m));
    PyMutex_Unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

/* ---- fatal misuse (A9) ---------------------------------------------------- */

Test(mutex, unlocking_an_unlocked_mutex_aborts, .signal = SIGABRT)
{
    PyMutex m = {0};
    PyMutex_Unlock(&m);
}

Test(mutex, unlocking_twice_aborts, .signal = SIGABRT)
{
    PyMutex m = {0};
    PyMutex_Lock(&m);
    PyMutex_Unlock(&m);
    exported_unlock(&m);
}

static void
unlock_unlocked_inline(void)
{
    PyMutex m = {0};
    PyMutex_Unlock(&m);
}

static void
unlock_unlocked_exported(void)
{
    PyMutex m = {0};
    exported_unlock(&m);
}

Test(mutex, unlocking_an_unlocked_mutex_names_the_function, .timeout = FT_TIMEOUT(30))
{
    static const char expected[] =
        "Fatal Python error: PyMutex_Unlock: unlocking mutex that is not locked";
    void (*const cases[])(void) = { unlock_unlocked_inline, unlock_unlocked_exported };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[4096];
        int status = test_run_in_child(cases[i], out, sizeof out);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
                  "case %zu: the child must die of SIGABRT (status %#x)", i, status);
        cr_assert_not_null(strstr(out, expected), "case %zu: stderr was: %s", i, out);
    }
}

/* ---- two threads: bits, timed lock, fairness ----------------------------- */

struct locker {
    PyMutex *m;
    PyMutex *gate;              /* if set: locked after acquiring m, before unlocking */
    int64_t timeout_ns;         /* for ft_mutex_lock_timed; unused by plain lockers */
    ft_lock_flags flags;
    atomic_llong start_ns;      /* when it began to wait */
    atomic_int result;          /* -1 until it returns, then the PyLockStatus */
    atomic_int bits_held;       /* the byte right after acquiring */
    atomic_int bits_released;   /* the byte right after its own unlock */
};

static void
locker_init(struct locker *l, PyMutex *m)
{
    memset(l, 0, sizeof *l);
    l->m = m;
    l->timeout_ns = -1;
    l->flags = FT_LOCK_DETACH;
    atomic_store(&l->result, -1);
    atomic_store(&l->bits_held, -1);
    atomic_store(&l->bits_released, -1);
}

static void
locker_finish(struct locker *l, PyLockStatus r)
{
    if (r == PY_LOCK_ACQUIRED) {
        atomic_store(&l->bits_held, bits(l->m));
        if (l->gate) {
            /* not through the hooks: the tests count only waits for m */
            ft_mutex_lock_flags(l->gate, FT_LOCK_DONT_DETACH);
            PyMutex_Unlock(l->gate);
        }
    }
    atomic_store(&l->result, (int)r);
    if (r == PY_LOCK_ACQUIRED) {
        PyMutex_Unlock(l->m);
        atomic_store(&l->bits_released, bits(l->m));
    }
}

/* PyMutex_Lock, then unlock. */
static void *
plain_locker(void *arg)
{
    struct locker *l = arg;
    atomic_store(&l->start_ns, test_now_ns());
    PyMutex_Lock(l->m);
    locker_finish(l, PY_LOCK_ACQUIRED);
    return NULL;
}

/* ft_mutex_lock_timed with l->timeout_ns and l->flags, then unlock if taken. */
static void *
timed_locker(void *arg)
{
    struct locker *l = arg;
    atomic_store(&l->start_ns, test_now_ns());
    PyLockStatus r = ft_mutex_lock_timed(l->m, l->timeout_ns, l->flags);
    locker_finish(l, r);
    return NULL;
}

/* ft_mutex_lock_flags with l->flags, then unlock. */
static void *
flags_locker(void *arg)
{
    struct locker *l = arg;
    atomic_store(&l->start_ns, test_now_ns());
    ft_mutex_lock_flags(l->m, l->flags);
    locker_finish(l, PY_LOCK_ACQUIRED);
    return NULL;
}

/* Reads the byte for the A2 poll; counts any value other than 1 or 3. */
static uint8_t
held_bits_checked(PyMutex *m, int *bad, uint8_t *bad_value)
{
    uint8_t v = bits(m);
    if (v != _Py_LOCKED && v != (_Py_LOCKED | _Py_HAS_PARKED)) {
        (*bad)++;
        *bad_value = v;
    }
    return v;
}

Test(mutex, contended_byte_is_1_or_3_and_the_waiter_gets_the_lock, .timeout = FT_TIMEOUT(20))
{
    PyMutex m = {0};
    struct locker l;
    locker_init(&l, &m);

    PyMutex_Lock(&m);
    pthread_t t = test_start_thread(plain_locker, &l);
    int bad = 0;
    uint8_t bad_value = 0;
    bool parked = TEST_POLL_UNTIL(held_bits_checked(&m, &bad, &bad_value) ==
                                  (_Py_LOCKED | _Py_HAS_PARKED), POLL_MS);
    bool still_waiting = atomic_load(&l.result) == -1;
    PyMutex_Unlock(&m);
    test_join_thread(t);

    cr_assert_eq(bad, 0, "while held, the byte was %u (only 1 or 3 allowed)", bad_value);
    cr_assert(parked, "the waiter never set the parked bit (byte %u)", bits(&m));
    cr_assert(still_waiting, "the waiter got the lock while the main thread held it");
    cr_assert_eq(atomic_load(&l.result), PY_LOCK_ACQUIRED);
    int held = atomic_load(&l.bits_held);
    cr_assert(held == 1 || held == 3, "byte after the waiter acquired: %d", held);
    cr_assert_eq(atomic_load(&l.bits_released), 0);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, timed_lock_with_zero_timeout_fails_at_once_without_parking,
     .timeout = FT_TIMEOUT(10))
{
    PyMutex m = {0};
    cr_assert_eq(ft_mutex_lock_timed(&m, 0, FT_LOCK_DONT_DETACH), PY_LOCK_ACQUIRED);
    cr_assert_eq(bits(&m), _Py_LOCKED);

    install_counting_hooks();
    int64_t t0 = test_now_ns();
    PyLockStatus r = ft_mutex_lock_timed(&m, 0, FT_LOCK_DETACH);
    int64_t elapsed = test_now_ns() - t0;
    remove_hooks();

    cr_assert_eq(r, PY_LOCK_FAILURE);
    cr_assert_eq(bits(&m), _Py_LOCKED, "no parked bit may be set by a zero timeout");
    cr_assert_eq(atomic_load(&detach_calls), 0, "a zero timeout must never park");
    cr_assert_lt(elapsed, 100 * FT_NS_PER_MS * FT_TIMEOUT_SCALE,
                 "took %" PRId64 " ns", elapsed);
    PyMutex_Unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, timed_lock_fails_after_the_timeout_and_leaves_no_waiter,
     .timeout = FT_TIMEOUT(10))
{
    /* The main thread holds the mutex and waits on it itself: nobody else
     * can take it, so the only way out is the timeout. */
    const int64_t timeout = 50 * FT_NS_PER_MS;
    PyMutex m = {0};
    PyMutex_Lock(&m);

    int64_t t0 = test_now_ns();
    PyLockStatus r = ft_mutex_lock_timed(&m, timeout, FT_LOCK_DONT_DETACH);
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, PY_LOCK_FAILURE);
    cr_assert_geq(elapsed, timeout, "gave up after %" PRId64 " ns", elapsed);

    /* The waiter announced itself (1 -> 3) and nobody cleared the bit: the
     * mutex stays held, the bit is merely stale.  What must hold is that no
     * entry is left in the parking lot, and that the next unlock, which
     * looks there, finds nobody and leaves the mutex free. */
    cr_assert(bits(&m) & _Py_LOCKED, "still held by the main thread: byte %u", bits(&m));
    cr_assert_eq(ft_parking_lot_unpark_all(&m._bits), 0, "the timed-out waiter is still queued");
    PyMutex_Unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
    PyMutex_Lock(&m);
    cr_assert_eq(bits(&m), _Py_LOCKED);
    PyMutex_Unlock(&m);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, timed_lock_fails_after_the_timeout_while_another_thread_holds,
     .timeout = FT_TIMEOUT(10))
{
    const int64_t timeout = 50 * FT_NS_PER_MS;
    PyMutex m = {0};
    struct locker l;
    locker_init(&l, &m);
    l.timeout_ns = timeout;

    PyMutex_Lock(&m);
    pthread_t t = test_start_thread(timed_locker, &l);
    bool done = TEST_POLL_UNTIL(atomic_load(&l.result) != -1, POLL_MS);
    int64_t finished = test_now_ns();
    uint8_t after = bits(&m);
    int queued = ft_parking_lot_unpark_all(&m._bits);
    PyMutex_Unlock(&m);
    test_join_thread(t);

    cr_assert(done, "the timed lock never returned");
    cr_assert_eq(atomic_load(&l.result), PY_LOCK_FAILURE);
    cr_assert_geq(finished - atomic_load(&l.start_ns), timeout);
    cr_assert(after & _Py_LOCKED, "byte %u", after);
    cr_assert_eq(queued, 0, "the timed-out waiter is still queued");
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, timed_lock_without_timeout_waits_until_unlocked, .timeout = FT_TIMEOUT(20))
{
    PyMutex m = {0};
    struct locker l;
    locker_init(&l, &m);
    l.timeout_ns = -1;

    PyMutex_Lock(&m);
    pthread_t t = test_start_thread(timed_locker, &l);
    bool parked = TEST_POLL_UNTIL(bits(&m) == (_Py_LOCKED | _Py_HAS_PARKED), POLL_MS);
    bool found = parked && TEST_POLL_UNTIL(probe_parked_waiter(&m), POLL_MS);
    bool still_waiting = atomic_load(&l.result) == -1;
    PyMutex_Unlock(&m);
    bool done = TEST_POLL_UNTIL(atomic_load(&l.result) != -1, POLL_MS);
    test_join_thread(t);

    cr_assert(parked, "the waiter never set the parked bit");
    cr_assert(found, "the waiter never showed up in the parking lot");
    cr_assert(still_waiting, "the waiter returned while the mutex was held");
    cr_assert(done);
    cr_assert_eq(atomic_load(&l.result), PY_LOCK_ACQUIRED);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, waiter_for_more_than_1ms_is_handed_the_lock, .timeout = FT_TIMEOUT(20))
{
    /* A (main) holds; B waits.  Once B is in the parking lot and has waited
     * well over TIME_TO_BE_FAIR (1 ms), A's unlock must pass the lock to B
     * directly: the byte keeps its locked bit and A's immediate trylock
     * fails.  B holds on (blocked on `gate`) until A has looked. */
    PyMutex m = {0}, gate = {0};
    struct locker b;
    locker_init(&b, &m);
    b.gate = &gate;

    install_counting_hooks();
    PyMutex_Lock(&m);
    PyMutex_Lock(&gate);
    pthread_t t = test_start_thread(plain_locker, &b);
    /* the detach hook runs after B's entry is queued */
    bool parked = TEST_POLL_UNTIL(atomic_load(&detach_calls) == 1, POLL_MS);
    int64_t seen = test_now_ns();
    (void)TEST_POLL_UNTIL(test_now_ns() - seen > 5 * FT_NS_PER_MS &&
                          test_now_ns() - atomic_load(&b.start_ns) > 5 * FT_NS_PER_MS,
                          POLL_MS);
    uint8_t before = bits(&m);
    PyMutex_Unlock(&m);
    uint8_t after_unlock = bits(&m);
    bool barged = ft_mutex_trylock(&m);
    if (barged) {
        PyMutex_Unlock(&m);   /* keep the test able to finish */
    }
    /* bits_held is recorded before B blocks on the gate */
    bool b_acquired = TEST_POLL_UNTIL(atomic_load(&b.bits_held) != -1, POLL_MS);
    int held = atomic_load(&b.bits_held);
    PyMutex_Unlock(&gate);
    test_join_thread(t);
    remove_hooks();

    cr_assert(parked, "B never parked");
    cr_assert_eq(before, _Py_LOCKED | _Py_HAS_PARKED);
    cr_assert(after_unlock & _Py_LOCKED,
              "the unlock freed the mutex (byte %u) instead of handing it to B", after_unlock);
    cr_assert_not(barged, "A re-took the lock although B had waited > 1 ms");
    cr_assert(b_acquired, "B never got the lock");
    cr_assert_eq(atomic_load(&b.result), PY_LOCK_ACQUIRED);
    cr_assert(held == 1 || held == 3, "byte while B held it: %d", held);
    cr_assert_eq(atomic_load(&detach_calls), 1);
    cr_assert_eq(atomic_load(&reattach_calls), 1);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
    cr_assert_eq(bits(&gate), _Py_UNLOCKED);
}

Test(mutex, unlocking_thread_may_barge_past_a_fresh_waiter, .timeout = FT_TIMEOUT(60))
{
    /* Same set-up, but A unlocks and re-takes the lock the moment B is
     * parked, long before B has waited long enough to be owed a hand-off:
     * B was only woken to compete, so A's immediate trylock may win.  The
     * fairness delay is raised to 60 s for this test, so that a slow run
     * (valgrind, sanitizers) cannot pass it and turn the unlock into a
     * hand-off.  B, once it has the lock, keeps it (blocked on `gate`), so
     * A's trylock cannot succeed merely because B was handed the lock and
     * already let go.  A need not win every time (B may wake and take the
     * lock first); it must win at least once in many tries: at least
     * MIN_ATTEMPTS, and on until the deadline (a loaded machine may run the
     * woken B first many times in a row). */
    if (getenv("FT_UNDER_VALGRIND") != NULL) {
        /* valgrind --fair-sched hands the CPU to the woken thread at the
         * unlock's futex call, so the unlocking thread rarely gets to try */
        cr_skip_test("barging cannot be observed under valgrind's fair scheduling");
    }
    enum { MIN_ATTEMPTS = 200 };
    ft_mutex_set_fairness_ns(60 * FT_NS_PER_S);
    install_counting_hooks();
    int wins = 0, attempts = 0, never_parked = 0, bad_end = 0;
    int64_t give_up = test_now_ns() + 10 * FT_NS_PER_S * FT_TIMEOUT_SCALE;
    for (; wins == 0 && (attempts < MIN_ATTEMPTS || test_now_ns() < give_up); attempts++) {
        PyMutex m = {0}, gate = {0};
        struct locker b;
        locker_init(&b, &m);
        b.gate = &gate;
        int parks_before = atomic_load(&detach_calls);

        PyMutex_Lock(&m);
        PyMutex_Lock(&gate);
        pthread_t t = test_start_thread(plain_locker, &b);
        int64_t deadline = test_now_ns() + POLL_MS * FT_NS_PER_MS * FT_TIMEOUT_SCALE;
        while (atomic_load(&detach_calls) == parks_before && test_now_ns() < deadline) {
            sched_yield();   /* no sleep: every microsecond counts here */
        }
        if (atomic_load(&detach_calls) == parks_before) {
            never_parked++;
        }
        PyMutex_Unlock(&m);
        if (ft_mutex_trylock(&m)) {
            wins++;
            PyMutex_Unlock(&m);
        }
        PyMutex_Unlock(&gate);
        test_join_thread(t);
        if (atomic_load(&b.result) != PY_LOCK_ACQUIRED || bits(&m) != _Py_UNLOCKED) {
            bad_end++;
            break;
        }
    }
    remove_hooks();
    ft_mutex_set_fairness_ns(-1);
    cr_log_info("barging: won on attempt %d", attempts);
    cr_assert_eq(bad_end, 0, "B did not get the lock, or the mutex was left held");
    cr_assert_eq(never_parked, 0, "B did not park within the poll time");
    cr_assert_gt(wins, 0, "the unlocking thread never re-took the lock in %d tries", attempts);
}

/* ---- the detach hook (A14 at the sync level) ---------------------------- */

Test(mutex, blocked_lock_detaches_once_and_reattaches_once, .timeout = FT_TIMEOUT(20))
{
    PyMutex m = {0};
    struct locker l;
    locker_init(&l, &m);

    install_counting_hooks();
    PyMutex_Lock(&m);
    pthread_t t = test_start_thread(plain_locker, &l);
    bool detached = TEST_POLL_UNTIL(atomic_load(&detach_calls) >= 1, POLL_MS);
    int reattached_while_held = atomic_load(&reattach_calls);
    bool still_waiting = atomic_load(&l.result) == -1;
    PyMutex_Unlock(&m);
    test_join_thread(t);
    remove_hooks();

    cr_assert(detached, "the blocked thread never called the detach hook");
    cr_assert_eq(reattached_while_held, 0, "reattached while still waiting");
    cr_assert(still_waiting);
    cr_assert_eq(atomic_load(&detach_calls), 1);
    cr_assert_eq(atomic_load(&reattach_calls), 1);
    cr_assert_eq(atomic_load(&bad_tokens), 0, "reattach got a token detach never returned");
    cr_assert(pthread_equal(detach_thread[0], t), "detach ran on the wrong thread");
    cr_assert(pthread_equal(reattach_thread[0], t), "reattach ran on the wrong thread");
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

Test(mutex, uncontended_lock_never_calls_the_hooks)
{
    PyMutex m = {0};
    install_counting_hooks();
    PyMutex_Lock(&m);
    PyMutex_Unlock(&m);
    exported_lock(&m);
    exported_unlock(&m);
    cr_assert_eq(ft_mutex_lock_timed(&m, -1, FT_LOCK_DETACH), PY_LOCK_ACQUIRED);
    PyMutex_Unlock(&m);
    remove_hooks();
    cr_assert_eq(atomic_load(&detach_calls), 0);
    cr_assert_eq(atomic_load(&reattach_calls), 0);
}

/* ---- the GIL probe: who may spin ----------------------------------------- */

static atomic_int probe_calls;
static atomic_ulong probe_last_thread;   /* pthread_self() of the last caller */

static bool
probe_holds_gil(void)
{
    atomic_fetch_add(&probe_calls, 1);
    atomic_store(&probe_last_thread, (unsigned long)pthread_self());
    return true;
}

/* In the GIL build a blocked locker asks whether it holds the GIL (and then
 * parks at once); the free-threaded build never asks. */
Test(mutex, only_the_gil_build_asks_the_gil_probe, .timeout = FT_TIMEOUT(20))
{
    PyMutex m = {0};
    struct locker l;
    locker_init(&l, &m);

    ft_mutex_set_gil_probe(probe_holds_gil);
    PyMutex_Lock(&m);
    pthread_t t = test_start_thread(plain_locker, &l);
    bool parked = TEST_POLL_UNTIL(bits(&m) == (_Py_LOCKED | _Py_HAS_PARKED), POLL_MS);
    PyMutex_Unlock(&m);
    test_join_thread(t);
    ft_mutex_set_gil_probe(NULL);

    cr_assert(parked);
    cr_assert_eq(atomic_load(&l.result), PY_LOCK_ACQUIRED);
    if (ft_free_threaded) {
        cr_assert_eq(atomic_load(&probe_calls), 0);
    }
    else {
        cr_assert_geq(atomic_load(&probe_calls), 1);
        cr_assert_eq(atomic_load(&probe_last_thread), (unsigned long)t,
                     "the probe was not asked on the blocked thread");
    }
}

Test(mutex, dont_detach_lock_parks_without_calling_the_hooks, .timeout = FT_TIMEOUT(20))
{
    PyMutex m = {0};
    struct locker l;
    locker_init(&l, &m);
    l.flags = FT_LOCK_DONT_DETACH;

    install_counting_hooks();
    PyMutex_Lock(&m);
    pthread_t t = test_start_thread(flags_locker, &l);
    bool parked = TEST_POLL_UNTIL(bits(&m) == (_Py_LOCKED | _Py_HAS_PARKED), POLL_MS);
    /* proof that it really sleeps in the parking lot (it parks again) */
    bool found = parked && TEST_POLL_UNTIL(probe_parked_waiter(&m), POLL_MS);
    bool still_waiting = atomic_load(&l.result) == -1;
    PyMutex_Unlock(&m);
    test_join_thread(t);
    remove_hooks();

    cr_assert(parked);
    cr_assert(found, "the waiter never showed up in the parking lot");
    cr_assert(still_waiting);
    cr_assert_eq(atomic_load(&l.result), PY_LOCK_ACQUIRED);
    cr_assert_eq(atomic_load(&detach_calls), 0, "FT_LOCK_DONT_DETACH called the detach hook");
    cr_assert_eq(atomic_load(&reattach_calls), 0);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

/* ---- many threads ---------------------------------------------------------- */

struct counter_job {
    PyMutex *m;
    long *counter;              /* protected by m */
    int iterations;
    int slow_every;             /* 0: never; else hold 2 ms every n-th time */
    pthread_barrier_t start;    /* all begin together: real contention */
};

static void *
count_under_lock(void *arg)
{
    struct counter_job *job = arg;
    pthread_barrier_wait(&job->start);
    for (int i = 1; i <= job->iterations; i++) {
        PyMutex_Lock(job->m);
        ++*job->counter;
        if (job->slow_every && i % job->slow_every == 0) {
            test_sleep_ns(2 * FT_NS_PER_MS);   /* a long hold, inside the lock */
        }
        PyMutex_Unlock(job->m);
    }
    return NULL;
}

static void
run_counter(int nthreads, int iterations, int slow_every)
{
    PyMutex m = {0};
    long counter = 0;
    struct counter_job job = { .m = &m, .counter = &counter, .iterations = iterations,
                               .slow_every = slow_every };
    pthread_t t[16];
    cr_assert_eq(pthread_barrier_init(&job.start, NULL, (unsigned)nthreads), 0);
    install_counting_hooks();   /* counts the waits that parked */
    for (int i = 0; i < nthreads; i++) {
        t[i] = test_start_thread(count_under_lock, &job);
    }
    for (int i = 0; i < nthreads; i++) {
        test_join_thread(t[i]);
    }
    remove_hooks();
    pthread_barrier_destroy(&job.start);
    cr_log_info("%d x %d: %d waits parked", nthreads, iterations, atomic_load(&detach_calls));
    cr_assert_eq(counter, (long)nthreads * iterations);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
    cr_assert_eq(atomic_load(&reattach_calls), atomic_load(&detach_calls));
}

Test(mutex, five_threads_count_to_50000, .timeout = FT_TIMEOUT(60))
{
    run_counter(5, 10000, 0);
}

Test(mutex, long_holds_force_hand_offs_and_count_to_500, .timeout = FT_TIMEOUT(60))
{
    run_counter(5, 100, 7);
}

struct piler {
    PyMutex *m;
    long *counter;
    atomic_int *done;
};

static void *
pile_up(void *arg)
{
    struct piler *p = arg;
    PyMutex_Lock(p->m);
    ++*p->counter;
    PyMutex_Unlock(p->m);
    atomic_fetch_add(p->done, 1);
    return NULL;
}

Test(mutex, parked_waiters_all_get_the_lock_after_release, .timeout = FT_TIMEOUT(30))
{
    /* The slow path on purpose: the main thread holds the mutex while every
     * worker queues in the parking lot (each detach-hook call is one parked
     * waiter), then releases it once; the waiters must drain one by one. */
    enum { N = 6 };
    PyMutex m = {0};
    long counter = 0;
    atomic_int done = 0;
    struct piler p = { &m, &counter, &done };
    pthread_t t[N];

    install_counting_hooks();
    PyMutex_Lock(&m);
    for (int i = 0; i < N; i++) {
        t[i] = test_start_thread(pile_up, &p);
    }
    bool all_parked = TEST_POLL_UNTIL(atomic_load(&detach_calls) == N, POLL_MS);
    uint8_t held = bits(&m);
    int done_while_held = atomic_load(&done);
    PyMutex_Unlock(&m);
    for (int i = 0; i < N; i++) {
        test_join_thread(t[i]);
    }
    remove_hooks();

    cr_assert(all_parked, "only %d of %d waiters parked", atomic_load(&detach_calls), N);
    cr_assert_eq(held, _Py_LOCKED | _Py_HAS_PARKED);
    cr_assert_eq(done_while_held, 0);
    cr_assert_eq(counter, N);
    cr_assert_eq(atomic_load(&done), N);
    cr_assert_eq(atomic_load(&reattach_calls), atomic_load(&detach_calls));
    cr_assert_eq(atomic_load(&bad_tokens), 0);
    cr_assert_eq(bits(&m), _Py_UNLOCKED);
}

/* ---- random stress over four mutexes ------------------------------------- */

enum { STRESS_THREADS = 8, STRESS_MUTEXES = 4 };

struct stress {
    PyMutex *m[STRESS_MUTEXES];
    long counter[STRESS_MUTEXES];            /* counter[i] protected by m[i] */
    uint64_t seed;
    int iterations;
    pthread_barrier_t start;
};

struct stress_worker {
    struct stress *s;
    int index;
    long picks[STRESS_MUTEXES];              /* how often each mutex was taken */
};

static uint64_t
xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static void *
stress_worker(void *arg)
{
    struct stress_worker *w = arg;
    struct stress *s = w->s;
    uint64_t rng = s->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(w->index + 1));
    if (rng == 0) {
        rng = 1;
    }
    pthread_barrier_wait(&s->start);
    for (int i = 0; i < s->iterations; i++) {
        int k = (int)(xorshift64(&rng) % STRESS_MUTEXES);
        PyMutex_Lock(s->m[k]);
        s->counter[k]++;
        uint64_t r = xorshift64(&rng) % 64;
        if (r == 0) {
            test_sleep_ns(50 * FT_NS_PER_US);   /* a long hold: waiters park */
        }
        else if (r == 1) {
            sched_yield();
        }
        PyMutex_Unlock(s->m[k]);
        w->picks[k]++;
    }
    return NULL;
}

static uint64_t
stress_seed(void)
{
    const char *env = getenv("FT_TEST_SEED");
    if (env && *env) {
        return strtoull(env, NULL, 0);
    }
    return (uint64_t)test_now_ns();
}

static void
run_stress(PyMutex *mutexes[STRESS_MUTEXES])
{
    struct stress s = { .seed = stress_seed(),
                        .iterations = 20000 / FT_TIMEOUT_SCALE };
    for (int k = 0; k < STRESS_MUTEXES; k++) {
        s.m[k] = mutexes[k];
    }
    cr_log_info("stress seed %" PRIu64 " (set FT_TEST_SEED to repeat)", s.seed);
    cr_assert_eq(pthread_barrier_init(&s.start, NULL, STRESS_THREADS), 0);

    struct stress_worker w[STRESS_THREADS];
    pthread_t t[STRESS_THREADS];
    install_counting_hooks();   /* counts the waits that parked */
    for (int i = 0; i < STRESS_THREADS; i++) {
        w[i] = (struct stress_worker){ .s = &s, .index = i };
        t[i] = test_start_thread(stress_worker, &w[i]);
    }
    for (int i = 0; i < STRESS_THREADS; i++) {
        test_join_thread(t[i]);
    }
    remove_hooks();
    pthread_barrier_destroy(&s.start);
    cr_log_info("%d x %d: %d waits parked", STRESS_THREADS, s.iterations,
                atomic_load(&detach_calls));
    cr_assert_eq(atomic_load(&reattach_calls), atomic_load(&detach_calls));
    long total = 0;
    for (int k = 0; k < STRESS_MUTEXES; k++) {
        long expected = 0;
        for (int i = 0; i < STRESS_THREADS; i++) {
            expected += w[i].picks[k];
        }
        cr_assert_eq(s.counter[k], expected, "mutex %d: counter %ld, taken %ld times (seed %"
                     PRIu64 ")", k, s.counter[k], expected, s.seed);
        cr_assert_eq(bits(s.m[k]), _Py_UNLOCKED, "mutex %d left with byte %u", k,
                     bits(s.m[k]));
        total += expected;
    }
    cr_assert_eq(total, (long)STRESS_THREADS * s.iterations);
}

Test(mutex, random_stress_over_four_mutexes, .timeout = FT_TIMEOUT(120))
{
    PyMutex m[STRESS_MUTEXES] = {{0}};
    PyMutex *p[STRESS_MUTEXES];
    for (int k = 0; k < STRESS_MUTEXES; k++) {
        p[k] = &m[k];
    }
    run_stress(p);
}

Test(mutex, random_stress_over_four_mutexes_in_one_bucket, .timeout = FT_TIMEOUT(120))
{
    /* Addresses 257 bytes apart share a parking-lot bucket: each unlock must
     * wake a waiter of its own mutex, never a neighbour's. */
    static PyMutex area[257 * STRESS_MUTEXES];
    PyMutex *p[STRESS_MUTEXES];
    for (int k = 0; k < STRESS_MUTEXES; k++) {
        p[k] = &area[257 * k];
    }
    run_stress(p);
}
