/* ft_semaphore (include/internal/ft_semaphore.h, sync/semaphore.c).
 *
 * The wake-up flag under every parked thread (part of scenario A12's
 * machinery): a post before the wait is kept and consumed at once; a wait
 * with a past or near deadline returns TIMEOUT, no earlier than the
 * deadline; a post from another thread wakes a sleeper; with interruptible a
 * signal ends the wait with INTR, without it the wait goes on until posted;
 * after a TIMEOUT the next post is consumed by the next wait, and only once;
 * and a ping-pong between two threads loses no post.  The futex word is read
 * directly (0 empty, 1 posted, 2 a waiter is going to sleep) to know, without
 * sleeping, that a waiter is about to block.
 */
#include "harness.h"
#include "test_util.h"

#include "ft_semaphore.h"

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#define POLL_MS 2000
#define PENDING 100            /* not an ft_sema_result: still waiting */

enum { WORD_EMPTY = 0, WORD_POSTED = 1, WORD_SLEEPING = 2 };

/* A bug that blocks a single-threaded test fails it instead of hanging. */
TestSuite(semaphore, .timeout = FT_TIMEOUT(30));

static uint32_t
word(ft_semaphore *s)
{
    return atomic_load(&s->posted);
}

/* ---- single thread ------------------------------------------------------- */

Test(semaphore, post_before_wait_is_consumed_at_once, .timeout = FT_TIMEOUT(10))
{
    ft_semaphore s;
    ft_semaphore_init(&s);
    cr_assert_eq(word(&s), WORD_EMPTY);

    ft_semaphore_post(&s);
    cr_assert_eq(word(&s), WORD_POSTED);
    cr_assert_eq(ft_semaphore_wait(&s, -1, false), FT_SEMA_OK);
    cr_assert_eq(word(&s), WORD_EMPTY);

    /* a pending post wins even over a deadline that has already passed */
    ft_semaphore_post(&s);
    cr_assert_eq(ft_semaphore_wait(&s, 0, false), FT_SEMA_OK);
    ft_semaphore_post(&s);
    cr_assert_eq(ft_semaphore_wait(&s, ft_monotonic_ns() - FT_NS_PER_S, true), FT_SEMA_OK);
    cr_assert_eq(word(&s), WORD_EMPTY);
}

Test(semaphore, two_posts_before_a_wait_count_as_one, .timeout = FT_TIMEOUT(10))
{
    ft_semaphore s;
    ft_semaphore_init(&s);
    ft_semaphore_post(&s);
    ft_semaphore_post(&s);
    cr_assert_eq(ft_semaphore_wait(&s, -1, false), FT_SEMA_OK);
    cr_assert_eq(ft_semaphore_wait(&s, ft_monotonic_ns(), false), FT_SEMA_TIMEOUT,
                 "the flag is binary: the second post is not kept");
}

Test(semaphore, wait_with_a_past_deadline_times_out, .timeout = FT_TIMEOUT(10))
{
    ft_semaphore s;
    ft_semaphore_init(&s);
    cr_assert_eq(ft_semaphore_wait(&s, 0, false), FT_SEMA_TIMEOUT);
    cr_assert_eq(ft_semaphore_wait(&s, ft_monotonic_ns() - FT_NS_PER_MS, true),
                 FT_SEMA_TIMEOUT);
    cr_assert_eq(ft_semaphore_wait(&s, ft_monotonic_ns(), false), FT_SEMA_TIMEOUT);
    cr_assert_eq(word(&s), WORD_EMPTY, "a timed-out wait must leave the word empty");
}

Test(semaphore, wait_with_a_near_deadline_times_out_no_earlier, .timeout = FT_TIMEOUT(10))
{
    const int64_t delays[] = { 1 * FT_NS_PER_MS, 20 * FT_NS_PER_MS };
    ft_semaphore s;
    ft_semaphore_init(&s);
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        int64_t deadline = ft_monotonic_ns() + delays[i];
        ft_sema_result r = ft_semaphore_wait(&s, deadline, false);
        int64_t now = ft_monotonic_ns();
        cr_assert_eq(r, FT_SEMA_TIMEOUT);
        cr_assert_geq(now, deadline, "returned %" PRId64 " ns early", deadline - now);
        cr_assert_eq(word(&s), WORD_EMPTY);
    }
}

Test(semaphore, after_a_timeout_the_next_post_is_consumed_by_the_next_wait,
     .timeout = FT_TIMEOUT(10))
{
    ft_semaphore s;
    ft_semaphore_init(&s);
    cr_assert_eq(ft_semaphore_wait(&s, ft_monotonic_ns() + 5 * FT_NS_PER_MS, false),
                 FT_SEMA_TIMEOUT);
    ft_semaphore_post(&s);
    cr_assert_eq(word(&s), WORD_POSTED);
    cr_assert_eq(ft_semaphore_wait(&s, ft_monotonic_ns() + FT_NS_PER_S, false), FT_SEMA_OK);
    cr_assert_eq(word(&s), WORD_EMPTY);
    cr_assert_eq(ft_semaphore_wait(&s, ft_monotonic_ns() + 5 * FT_NS_PER_MS, false),
                 FT_SEMA_TIMEOUT, "the post was consumed twice");
}

/* ---- two threads ---------------------------------------------------------- */

struct waiter {
    ft_semaphore *s;
    int64_t deadline_ns;
    bool interruptible;
    atomic_int result;
};

static void *
wait_once(void *arg)
{
    struct waiter *w = arg;
    atomic_store(&w->result, (int)ft_semaphore_wait(w->s, w->deadline_ns, w->interruptible));
    return NULL;
}

static pthread_t
start_sleeping_waiter(struct waiter *w, ft_semaphore *s, bool interruptible)
{
    w->s = s;
    w->deadline_ns = -1;
    w->interruptible = interruptible;
    atomic_store(&w->result, PENDING);
    pthread_t t = test_start_thread(wait_once, w);
    bool sleeping = TEST_POLL_UNTIL(word(s) == WORD_SLEEPING, POLL_MS);
    cr_assert(sleeping, "the waiter never announced its sleep (word %u)", word(s));
    return t;
}

Test(semaphore, post_from_another_thread_wakes_the_waiter, .timeout = FT_TIMEOUT(20))
{
    ft_semaphore s;
    ft_semaphore_init(&s);
    struct waiter w;
    pthread_t t = start_sleeping_waiter(&w, &s, false);
    bool still_waiting = atomic_load(&w.result) == PENDING;
    ft_semaphore_post(&s);
    bool woke = TEST_POLL_UNTIL(atomic_load(&w.result) != PENDING, POLL_MS);
    test_join_thread(t);

    cr_assert(still_waiting, "the wait returned with nothing posted");
    cr_assert(woke);
    cr_assert_eq(atomic_load(&w.result), FT_SEMA_OK);
    cr_assert_eq(word(&s), WORD_EMPTY);
}

Test(semaphore, timed_waiter_is_woken_by_a_post_before_its_deadline,
     .timeout = FT_TIMEOUT(20))
{
    ft_semaphore s;
    ft_semaphore_init(&s);
    struct waiter w = { .s = &s, .interruptible = false };
    w.deadline_ns = ft_monotonic_ns() + 60 * FT_NS_PER_S;
    atomic_store(&w.result, PENDING);
    pthread_t t = test_start_thread(wait_once, &w);
    bool sleeping = TEST_POLL_UNTIL(word(&s) == WORD_SLEEPING, POLL_MS);
    ft_semaphore_post(&s);
    bool woke = TEST_POLL_UNTIL(atomic_load(&w.result) != PENDING, POLL_MS);
    test_join_thread(t);

    cr_assert(sleeping);
    cr_assert(woke, "the post did not wake a waiter with a deadline");
    cr_assert_eq(atomic_load(&w.result), FT_SEMA_OK);
}

/* Sends SIGUSR1 until the waiter returns: a signal that lands between the
 * announcement and the futex call interrupts nothing. */
static bool
signal_and_check(pthread_t t, struct waiter *w)
{
    if (atomic_load(&w->result) != PENDING) {
        return true;
    }
    pthread_kill(t, SIGUSR1);
    return false;
}

Test(semaphore, interruptible_wait_returns_intr_on_a_signal, .timeout = FT_TIMEOUT(20))
{
    ft_semaphore s;
    ft_semaphore_init(&s);
    test_install_sigusr1_without_restart(NULL);
    struct waiter w;
    pthread_t t = start_sleeping_waiter(&w, &s, true);
    bool returned = TEST_POLL_UNTIL(signal_and_check(t, &w), POLL_MS);
    test_join_thread(t);

    cr_assert(returned, "signals did not end the interruptible wait");
    cr_assert_eq(atomic_load(&w.result), FT_SEMA_INTR);
    cr_assert_eq(word(&s), WORD_EMPTY, "an interrupted wait must leave the word empty");

    /* still usable: a later post is consumed by the next wait */
    ft_semaphore_post(&s);
    cr_assert_eq(ft_semaphore_wait(&s, -1, true), FT_SEMA_OK);
}

Test(semaphore, uninterruptible_wait_sleeps_through_signals, .timeout = FT_TIMEOUT(20))
{
    ft_semaphore s;
    ft_semaphore_init(&s);
    test_install_sigusr1_without_restart(NULL);
    struct waiter w;
    pthread_t t = start_sleeping_waiter(&w, &s, false);
    bool returned_early = false;
    for (int i = 0; i < 5 && !returned_early; i++) {
        pthread_kill(t, SIGUSR1);
        returned_early = TEST_POLL_UNTIL(atomic_load(&w.result) != PENDING, 2);
    }
    uint32_t word_after_signals = word(&s);
    ft_semaphore_post(&s);
    bool woke = TEST_POLL_UNTIL(atomic_load(&w.result) != PENDING, POLL_MS);
    test_join_thread(t);

    cr_assert_not(returned_early, "a signal ended an uninterruptible wait (result %d)",
                  atomic_load(&w.result));
    cr_assert_eq(word_after_signals, WORD_SLEEPING);
    cr_assert(woke);
    cr_assert_eq(atomic_load(&w.result), FT_SEMA_OK);
    cr_log_info("signal handler ran %d times", atomic_load(&test_sigusr1_count));
}

struct ping_pong {
    ft_semaphore ping, pong;
    int rounds;
    long seen;                 /* written by the ponger, read after the join */
    atomic_int failures;
};

static void *
pong(void *arg)
{
    struct ping_pong *pp = arg;
    for (int i = 0; i < pp->rounds; i++) {
        if (ft_semaphore_wait(&pp->ping, -1, false) != FT_SEMA_OK) {
            atomic_fetch_add(&pp->failures, 1);
        }
        pp->seen++;
        ft_semaphore_post(&pp->pong);
    }
    return NULL;
}

Test(semaphore, ping_pong_between_two_threads_loses_no_post, .timeout = FT_TIMEOUT(60))
{
    struct ping_pong pp = { .rounds = 20000 / FT_TIMEOUT_SCALE };
    ft_semaphore_init(&pp.ping);
    ft_semaphore_init(&pp.pong);
    pthread_t t = test_start_thread(pong, &pp);
    int failures = 0;
    for (int i = 0; i < pp.rounds; i++) {
        ft_semaphore_post(&pp.ping);
        if (ft_semaphore_wait(&pp.pong, -1, false) != FT_SEMA_OK) {
            failures++;
        }
    }
    test_join_thread(t);
    cr_assert_eq(failures, 0);
    cr_assert_eq(atomic_load(&pp.failures), 0);
    cr_assert_eq(pp.seen, pp.rounds);
    cr_assert_eq(word(&pp.ping), WORD_EMPTY);
    cr_assert_eq(word(&pp.pong), WORD_EMPTY);
}
