/* The parking lot (include/internal/ft_parking_lot.h, sync/parking_lot.c).
 *
 * Covers scenario A12: park compares 1, 2, 4 and 8 bytes and returns AGAIN on
 * a mismatch; a timed park returns TIMEOUT no earlier than its timeout and
 * leaves nothing queued; unpark with nobody parked still calls the callback
 * (NULL park_arg, no more waiters); unpark wakes exactly one waiter, in FIFO
 * order, handing its park_arg to the callback with has_more_waiters true
 * until the last; unpark and unpark_all never touch waiters on another
 * address in the same bucket (addresses 257 bytes apart); a park whose
 * timeout passes after an unparker has dequeued it returns OK (forced by a
 * callback that outlasts the timeout, and raced at random); FT_PARK_INTERRUPTIBLE
 * turns a signal into FT_PARK_INTR, without it the park sleeps on; after
 * fork() the child's parking lot is empty and usable even though a bucket
 * lock was held and a thread was parked at the time of the fork;
 * ft_parking_lot_waiters counts the queued threads of one address only.  Parking is
 * observed through the detach hook, which runs once the entry is queued.
 */
#include "harness.h"
#include "test_util.h"

#include "ft_parking_lot.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_MS 2000
#define PENDING 100          /* not an ft_park_result: the park has not returned */
#define SAME_BUCKET 257      /* addresses this far apart share a bucket */

/* A bug that blocks a single-threaded test fails it instead of hanging. */
TestSuite(parking_lot, .timeout = FT_TIMEOUT(30));

/* ---- a detach hook that counts queued parkers ---------------------------- */

static atomic_int detach_calls;
static atomic_int reattach_calls;
static int token;

static void *
count_detach(void)
{
    atomic_fetch_add(&detach_calls, 1);
    return &token;
}

static void
count_reattach(void *t)
{
    if (t == &token) {
        atomic_fetch_add(&reattach_calls, 1);
    }
}

static const ft_detach_hooks counting_hooks = { count_detach, count_reattach };

/* ---- a parking thread ------------------------------------------------------ */

struct parker {
    const void *addr;
    const void *expected;
    size_t size;
    int64_t timeout_ns;
    int flags;
    atomic_llong start_ns;
    atomic_llong end_ns;
    atomic_int result;       /* PENDING until ft_parking_lot_park returns */
};

static void
parker_init(struct parker *p, const void *addr, const void *expected, size_t size)
{
    memset(p, 0, sizeof *p);
    p->addr = addr;
    p->expected = expected;
    p->size = size;
    p->timeout_ns = -1;
    p->flags = FT_PARK_DETACH;   /* the counting hook tells when it is queued */
    atomic_store(&p->result, PENDING);
}

static void *
park_once(void *arg)
{
    struct parker *p = arg;
    atomic_store(&p->start_ns, test_now_ns());
    ft_park_result r = ft_parking_lot_park(p->addr, p->expected, p->size, p->timeout_ns,
                                           p, p->flags);
    atomic_store(&p->end_ns, test_now_ns());
    atomic_store(&p->result, (int)r);
    return NULL;
}

/* Starts a parker and waits until it is queued (its detach hook has run). */
static pthread_t
start_parked(struct parker *p)
{
    int before = atomic_load(&detach_calls);
    pthread_t t = test_start_thread(park_once, p);
    bool queued = TEST_POLL_UNTIL(atomic_load(&detach_calls) > before, POLL_MS);
    cr_assert(queued, "the parker never got into the parking lot (result %d)",
              atomic_load(&p->result));
    return t;
}

/* ---- what the unpark callback saw ------------------------------------------ */

#define MAX_CALLS 16

struct unpark_log {
    int calls;
    void *arg_seen[MAX_CALLS];
    void *park_arg[MAX_CALLS];
    bool more[MAX_CALLS];
};

static void
log_unpark(void *arg, void *park_arg, bool has_more_waiters)
{
    struct unpark_log *log = arg;
    if (log->calls < MAX_CALLS) {
        log->arg_seen[log->calls] = arg;
        log->park_arg[log->calls] = park_arg;
        log->more[log->calls] = has_more_waiters;
    }
    log->calls++;
}

/* ---- single thread ---------------------------------------------------------- */

Test(parking_lot, park_returns_again_when_the_value_differs)
{
    uint8_t v1 = 1, e1 = 2;
    uint16_t v2 = 0x0100, e2 = 0x0000;                     /* differs in the high byte */
    uint32_t v4 = 0x01000000u, e4 = 0;
    uint64_t v8 = 0x0100000000000000ull, e8 = 0;
    cr_assert_eq(ft_parking_lot_park(&v1, &e1, 1, -1, NULL, 0), FT_PARK_AGAIN);
    cr_assert_eq(ft_parking_lot_park(&v2, &e2, 2, -1, NULL, 0), FT_PARK_AGAIN);
    cr_assert_eq(ft_parking_lot_park(&v4, &e4, 4, -1, NULL, 0), FT_PARK_AGAIN);
    cr_assert_eq(ft_parking_lot_park(&v8, &e8, 8, -1, NULL, 0), FT_PARK_AGAIN);

    /* the low bytes differ, the rest is equal */
    uint64_t w8 = 0xffffffffffffff01ull, f8 = 0xffffffffffffff02ull;
    cr_assert_eq(ft_parking_lot_park(&w8, &f8, 8, -1, NULL, 0), FT_PARK_AGAIN);
    cr_assert_eq(ft_parking_lot_unpark_all(&w8), 0, "an AGAIN left an entry behind");
}

Test(parking_lot, park_with_zero_timeout_compares_and_gives_up)
{
    uint32_t v = 5, same = 5, other = 6;
    cr_assert_eq(ft_parking_lot_park(&v, &same, sizeof v, 0, NULL, 0), FT_PARK_TIMEOUT);
    cr_assert_eq(ft_parking_lot_park(&v, &other, sizeof v, 0, NULL, 0), FT_PARK_AGAIN);
    cr_assert_eq(ft_parking_lot_unpark_all(&v), 0);
}

Test(parking_lot, timed_park_returns_timeout_after_the_timeout_for_every_size,
     .timeout = FT_TIMEOUT(20))
{
    const int64_t timeout = 20 * FT_NS_PER_MS;
    uint8_t v1 = 0xa1;
    uint16_t v2 = 0xa1b2;
    uint32_t v4 = 0xa1b2c3d4u;
    uint64_t v8 = 0xa1b2c3d4e5f60718ull;
    const void *addr[] = { &v1, &v2, &v4, &v8 };
    const size_t size[] = { 1, 2, 4, 8 };

    for (int i = 0; i < 4; i++) {
        uint64_t expected = 0;
        memcpy(&expected, addr[i], size[i]);
        int64_t t0 = test_now_ns();
        ft_park_result r = ft_parking_lot_park(addr[i], &expected, size[i], timeout,
                                               (void *)addr[i], 0);
        int64_t elapsed = test_now_ns() - t0;
        cr_assert_eq(r, FT_PARK_TIMEOUT, "size %zu: result %d", size[i], r);
        cr_assert_geq(elapsed, timeout, "size %zu: returned after %" PRId64 " ns",
                      size[i], elapsed);

        /* nothing is left queued: an unpark finds nobody */
        struct unpark_log log = {0};
        ft_parking_lot_unpark(addr[i], log_unpark, &log);
        cr_assert_eq(log.calls, 1);
        cr_assert_null(log.park_arg[0], "size %zu: the timed-out entry is still queued",
                       size[i]);
        cr_assert_not(log.more[0]);
        cr_assert_eq(ft_parking_lot_unpark_all(addr[i]), 0);
    }
}

Test(parking_lot, unpark_with_nobody_parked_still_calls_back)
{
    int word = 0;
    struct unpark_log log = {0};
    ft_parking_lot_unpark(&word, log_unpark, &log);
    cr_assert_eq(log.calls, 1, "the callback must run exactly once");
    cr_assert_eq(log.arg_seen[0], (void *)&log);
    cr_assert_null(log.park_arg[0]);
    cr_assert_not(log.more[0]);
    cr_assert_eq(ft_parking_lot_unpark_all(&word), 0);
}

/* ---- waking ----------------------------------------------------------------- */

Test(parking_lot, unpark_wakes_one_waiter_in_fifo_order, .timeout = FT_TIMEOUT(30))
{
    enum { N = 4 };
    uint32_t word = 7, expected = 7;
    struct parker p[N];
    pthread_t t[N];

    ft_parking_lot_set_detach_hooks(&counting_hooks);
    for (int i = 0; i < N; i++) {   /* one at a time: the queue order is known */
        parker_init(&p[i], &word, &expected, sizeof word);
        t[i] = start_parked(&p[i]);
    }

    struct unpark_log log = {0};
    int woken_early = -1;
    bool woke[N];
    for (int k = 0; k < N; k++) {
        ft_parking_lot_unpark(&word, log_unpark, &log);
        woke[k] = TEST_POLL_UNTIL(atomic_load(&p[k].result) != PENDING, POLL_MS);
        for (int j = k + 1; j < N; j++) {
            if (woken_early < 0 && atomic_load(&p[j].result) != PENDING) {
                woken_early = j;
            }
        }
    }
    for (int i = 0; i < N; i++) {
        test_join_thread(t[i]);
    }
    ft_parking_lot_set_detach_hooks(NULL);

    cr_assert_eq(log.calls, N);
    for (int k = 0; k < N; k++) {
        cr_assert_eq(log.park_arg[k], (void *)&p[k],
                     "unpark %d woke the waiter parked as #%ld", k,
                     (long)((struct parker *)log.park_arg[k] - p));
        cr_assert_eq(log.more[k], k < N - 1, "unpark %d: has_more_waiters %d", k,
                     log.more[k]);
        cr_assert(woke[k], "waiter %d was dequeued but did not wake", k);
        cr_assert_eq(atomic_load(&p[k].result), FT_PARK_OK);
    }
    cr_assert_eq(woken_early, -1, "waiter %d woke before its turn", woken_early);
    cr_assert_eq(atomic_load(&detach_calls), N);
    cr_assert_eq(atomic_load(&reattach_calls), N);
    cr_assert_eq(ft_parking_lot_unpark_all(&word), 0);
}

Test(parking_lot, unpark_skips_a_waiter_on_another_address_in_the_bucket,
     .timeout = FT_TIMEOUT(30))
{
    static unsigned char area[2 * SAME_BUCKET];
    static const unsigned char zero = 0;
    const void *a = &area[0], *b = &area[SAME_BUCKET];
    struct parker pa, pb;

    ft_parking_lot_set_detach_hooks(&counting_hooks);
    parker_init(&pb, b, &zero, 1);
    pthread_t tb = start_parked(&pb);   /* first in the bucket's queue */
    parker_init(&pa, a, &zero, 1);
    pthread_t ta = start_parked(&pa);

    struct unpark_log log = {0};
    ft_parking_lot_unpark(a, log_unpark, &log);
    bool a_woke = TEST_POLL_UNTIL(atomic_load(&pa.result) != PENDING, POLL_MS);
    int b_while_a = atomic_load(&pb.result);
    ft_parking_lot_unpark(b, log_unpark, &log);
    bool b_woke = TEST_POLL_UNTIL(atomic_load(&pb.result) != PENDING, POLL_MS);
    test_join_thread(ta);
    test_join_thread(tb);
    ft_parking_lot_set_detach_hooks(NULL);

    cr_assert_eq(log.calls, 2);
    cr_assert_eq(log.park_arg[0], (void *)&pa, "unpark(a) picked the neighbour's waiter");
    cr_assert_eq(log.park_arg[1], (void *)&pb);
    /* has_more_waiters is exact per address: the neighbour does not count */
    cr_assert_not(log.more[0], "has_more_waiters counted a waiter on another address");
    cr_assert_not(log.more[1]);
    cr_assert(a_woke);
    cr_assert_eq(b_while_a, PENDING, "the waiter on b woke on unpark(a)");
    cr_assert(b_woke);
    cr_assert_eq(atomic_load(&pa.result), FT_PARK_OK);
    cr_assert_eq(atomic_load(&pb.result), FT_PARK_OK);
}

Test(parking_lot, unpark_all_wakes_every_waiter_on_the_address_and_no_neighbour,
     .timeout = FT_TIMEOUT(30))
{
    enum { N = 5 };
    static unsigned char area[2 * SAME_BUCKET];
    static const unsigned char zero = 0;
    const void *a = &area[0], *b = &area[SAME_BUCKET];
    struct parker p[N];
    pthread_t t[N];

    ft_parking_lot_set_detach_hooks(&counting_hooks);
    for (int i = 0; i < N; i++) {   /* interleaved: a b a b a */
        parker_init(&p[i], i % 2 ? b : a, &zero, 1);
        t[i] = start_parked(&p[i]);
    }

    int woken_a = ft_parking_lot_unpark_all(a);
    bool a_all = TEST_POLL_UNTIL(atomic_load(&p[0].result) != PENDING &&
                                 atomic_load(&p[2].result) != PENDING &&
                                 atomic_load(&p[4].result) != PENDING, POLL_MS);
    /* give a wrongly woken neighbour a moment to show itself */
    bool b_woke_early = TEST_POLL_UNTIL(atomic_load(&p[1].result) != PENDING ||
                                        atomic_load(&p[3].result) != PENDING, 20);
    int woken_a_again = ft_parking_lot_unpark_all(a);
    int woken_b = ft_parking_lot_unpark_all(b);
    bool b_all = TEST_POLL_UNTIL(atomic_load(&p[1].result) != PENDING &&
                                 atomic_load(&p[3].result) != PENDING, POLL_MS);
    for (int i = 0; i < N; i++) {
        test_join_thread(t[i]);
    }
    ft_parking_lot_set_detach_hooks(NULL);

    cr_assert_eq(woken_a, 3);
    cr_assert(a_all, "not every waiter on a woke");
    cr_assert_not(b_woke_early, "a waiter on the neighbouring address woke");
    cr_assert_eq(woken_a_again, 0);
    cr_assert_eq(woken_b, 2);
    cr_assert(b_all);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&p[i].result), FT_PARK_OK, "waiter %d", i);
    }
    cr_assert_eq(ft_parking_lot_unpark_all(b), 0);
}

Test(parking_lot, waiters_counts_the_queued_threads_of_one_address_only,
     .timeout = FT_TIMEOUT(30))
{
    enum { N = 3 };
    static unsigned char area[2 * SAME_BUCKET];
    static const unsigned char zero = 0;
    const void *a = &area[0], *b = &area[SAME_BUCKET];
    struct parker p[N];
    pthread_t t[N];
    int before = ft_parking_lot_waiters(a);

    ft_parking_lot_set_detach_hooks(&counting_hooks);
    parker_init(&p[0], a, &zero, 1);
    t[0] = start_parked(&p[0]);
    int one = ft_parking_lot_waiters(a);
    parker_init(&p[1], b, &zero, 1);   /* same bucket, other address */
    t[1] = start_parked(&p[1]);
    parker_init(&p[2], a, &zero, 1);
    t[2] = start_parked(&p[2]);
    int two = ft_parking_lot_waiters(a), on_b = ft_parking_lot_waiters(b);
    ft_parking_lot_unpark(a, NULL, NULL);
    int after_unpark = ft_parking_lot_waiters(a);
    (void)ft_parking_lot_unpark_all(a);
    (void)ft_parking_lot_unpark_all(b);
    bool all = TEST_POLL_UNTIL(atomic_load(&p[0].result) != PENDING &&
                               atomic_load(&p[1].result) != PENDING &&
                               atomic_load(&p[2].result) != PENDING, POLL_MS);
    for (int i = 0; i < N; i++) {
        test_join_thread(t[i]);
    }
    ft_parking_lot_set_detach_hooks(NULL);

    cr_assert_eq(before, 0);
    cr_assert_eq(one, 1);
    cr_assert_eq(two, 2, "a waiter on the neighbouring address was counted, or one missed");
    cr_assert_eq(on_b, 1);
    cr_assert_eq(after_unpark, 1, "an unparked thread was still counted");
    cr_assert(all);
    cr_assert_eq(ft_parking_lot_waiters(a), 0);
    cr_assert_eq(ft_parking_lot_waiters(b), 0);
}

/* ---- a timeout that loses to an unpark -------------------------------------- */

/* Holds the bucket lock, with the waiter already dequeued, until well after
 * the waiter's own deadline: its timed wait runs out, it finds is_unparking
 * set and must wait for the post instead of leaving. */
static void
outlast_the_timeout(void *arg, void *park_arg, bool has_more_waiters)
{
    (void)has_more_waiters;
    if (!park_arg) {
        return;
    }
    struct parker *p = park_arg;
    int64_t until = atomic_load(&p->start_ns) + p->timeout_ns + 5 * FT_NS_PER_MS;
    while (test_now_ns() < until) {
        sched_yield();
    }
    atomic_fetch_add((atomic_int *)arg, 1);
}

Test(parking_lot, park_dequeued_before_its_timeout_returns_ok, .timeout = FT_TIMEOUT(30))
{
    uint32_t word = 1, expected = 1;
    struct parker p;
    parker_init(&p, &word, &expected, sizeof word);
    p.timeout_ns = 100 * FT_NS_PER_MS * FT_TIMEOUT_SCALE;   /* long enough to be found */

    ft_parking_lot_set_detach_hooks(&counting_hooks);
    pthread_t t = start_parked(&p);
    atomic_int found = 0;
    ft_parking_lot_unpark(&word, outlast_the_timeout, &found);
    test_join_thread(t);
    ft_parking_lot_set_detach_hooks(NULL);

    cr_assert_eq(atomic_load(&found), 1, "the unpark did not find the parked thread");
    cr_assert_eq(atomic_load(&p.result), FT_PARK_OK,
                 "a park dequeued by an unparker returned %d", atomic_load(&p.result));
    cr_assert_geq(atomic_load(&p.end_ns) - atomic_load(&p.start_ns), p.timeout_ns);
    cr_assert_eq(ft_parking_lot_unpark_all(&word), 0);
}

struct race {
    uint32_t word;
    uint32_t expected;
    atomic_int parkers_done;
    atomic_long dequeued;    /* callbacks that got a waiter, plus unpark_all counts */
    int nparkers;
    int iterations;
};

struct race_parker {
    struct race *r;
    int index;
    long ok, timeout, other;
};

static void
count_dequeue(void *arg, void *park_arg, bool has_more_waiters)
{
    (void)has_more_waiters;
    if (park_arg) {
        atomic_fetch_add(&((struct race *)arg)->dequeued, 1);
    }
}

static void *
race_park(void *arg)
{
    struct race_parker *rp = arg;
    struct race *r = rp->r;
    for (int i = 0; i < r->iterations; i++) {
        /* 10 to 160 us: about as long as an unpark round trip */
        int64_t timeout = (10 + 10 * ((i * 7 + rp->index) % 16)) * FT_NS_PER_US;
        ft_park_result res = ft_parking_lot_park(&r->word, &r->expected, sizeof r->word,
                                                 timeout, rp, 0);
        if (res == FT_PARK_OK) {
            rp->ok++;
        }
        else if (res == FT_PARK_TIMEOUT) {
            rp->timeout++;
        }
        else {
            rp->other++;
        }
    }
    atomic_fetch_add(&r->parkers_done, 1);
    return NULL;
}

static void *
race_unpark(void *arg)
{
    struct race *r = arg;
    for (unsigned n = 0; atomic_load(&r->parkers_done) < r->nparkers; n++) {
        if (n % 8 == 7) {
            atomic_fetch_add(&r->dequeued, ft_parking_lot_unpark_all(&r->word));
        }
        else {
            ft_parking_lot_unpark(&r->word, count_dequeue, r);
        }
        if (n % 4 == 0) {
            sched_yield();
        }
    }
    return NULL;
}

Test(parking_lot, timeouts_racing_unparks_agree_on_who_was_woken, .timeout = FT_TIMEOUT(60))
{
    /* Every park that an unparker dequeued must return OK, and every OK must
     * come from a dequeue, however the timeouts and the unparks interleave. */
    enum { PARKERS = 4, UNPARKERS = 2 };
    struct race r = { .word = 3, .expected = 3, .nparkers = PARKERS,
                      .iterations = 4000 / FT_TIMEOUT_SCALE };
    struct race_parker rp[PARKERS];
    pthread_t tp[PARKERS], tu[UNPARKERS];
    for (int i = 0; i < UNPARKERS; i++) {
        tu[i] = test_start_thread(race_unpark, &r);
    }
    for (int i = 0; i < PARKERS; i++) {
        rp[i] = (struct race_parker){ .r = &r, .index = i };
        tp[i] = test_start_thread(race_park, &rp[i]);
    }
    for (int i = 0; i < PARKERS; i++) {
        test_join_thread(tp[i]);
    }
    for (int i = 0; i < UNPARKERS; i++) {
        test_join_thread(tu[i]);
    }

    long ok = 0, timeout = 0, other = 0;
    for (int i = 0; i < PARKERS; i++) {
        ok += rp[i].ok;
        timeout += rp[i].timeout;
        other += rp[i].other;
    }
    cr_log_info("%ld parks: %ld OK, %ld TIMEOUT", ok + timeout + other, ok, timeout);
    cr_assert_eq(other, 0, "%ld parks returned neither OK nor TIMEOUT", other);
    cr_assert_eq(ok + timeout, (long)PARKERS * r.iterations);
    cr_assert_eq(ok, atomic_load(&r.dequeued),
                 "%ld parks returned OK but %ld were dequeued", ok, atomic_load(&r.dequeued));
    cr_assert_eq(ft_parking_lot_unpark_all(&r.word), 0);
}

/* ---- signals ----------------------------------------------------------------- */

/* Sends SIGUSR1; true once the parker has returned.  Repeated because a
 * signal that arrives just before the thread goes to sleep wakes nothing. */
static bool
signal_and_check(pthread_t t, struct parker *p)
{
    if (atomic_load(&p->result) != PENDING) {
        return true;
    }
    pthread_kill(t, SIGUSR1);
    return false;
}

Test(parking_lot, interruptible_park_returns_intr_on_a_signal, .timeout = FT_TIMEOUT(30))
{
    uint32_t word = 9, expected = 9;
    struct parker p;
    parker_init(&p, &word, &expected, sizeof word);
    p.flags = FT_PARK_DETACH | FT_PARK_INTERRUPTIBLE;

    test_install_sigusr1_without_restart(NULL);
    ft_parking_lot_set_detach_hooks(&counting_hooks);
    pthread_t t = start_parked(&p);
    bool returned = TEST_POLL_UNTIL(signal_and_check(t, &p), POLL_MS);
    int left_queued = ft_parking_lot_unpark_all(&word);
    test_join_thread(t);
    ft_parking_lot_set_detach_hooks(NULL);

    cr_assert(returned, "the signal did not end the park");
    cr_assert_eq(atomic_load(&p.result), FT_PARK_INTR);
    cr_assert_eq(left_queued, 0, "the interrupted park left its entry queued");
    cr_assert_eq(atomic_load(&reattach_calls), 1, "reattach must run on the INTR path too");
}

Test(parking_lot, park_without_the_flag_sleeps_through_signals, .timeout = FT_TIMEOUT(30))
{
    uint32_t word = 9, expected = 9;
    struct parker p;
    parker_init(&p, &word, &expected, sizeof word);
    p.flags = FT_PARK_DETACH;

    test_install_sigusr1_without_restart(NULL);
    ft_parking_lot_set_detach_hooks(&counting_hooks);
    pthread_t t = start_parked(&p);
    bool returned_early = false;
    for (int i = 0; i < 5 && !returned_early; i++) {
        pthread_kill(t, SIGUSR1);
        returned_early = TEST_POLL_UNTIL(atomic_load(&p.result) != PENDING, 2);
    }
    int woken = ft_parking_lot_unpark_all(&word);
    bool returned = TEST_POLL_UNTIL(atomic_load(&p.result) != PENDING, POLL_MS);
    test_join_thread(t);
    ft_parking_lot_set_detach_hooks(NULL);

    cr_assert_not(returned_early, "a signal ended a park without FT_PARK_INTERRUPTIBLE "
                  "(result %d)", atomic_load(&p.result));
    cr_assert_eq(woken, 1);
    cr_assert(returned);
    cr_assert_eq(atomic_load(&p.result), FT_PARK_OK);
    cr_log_info("signal handler ran %d times", atomic_load(&test_sigusr1_count));
}

/* ---- fork --------------------------------------------------------------------- */

struct bucket_holder {
    const void *addr;
    atomic_int inside;
    atomic_int release;
};

/* Keeps the bucket lock (held around unpark callbacks) until released. */
static void
hold_bucket(void *arg, void *park_arg, bool has_more_waiters)
{
    (void)park_arg;
    (void)has_more_waiters;
    struct bucket_holder *h = arg;
    atomic_store(&h->inside, 1);
    while (!atomic_load(&h->release)) {
        sched_yield();
    }
}

static void *
unpark_holding_bucket(void *arg)
{
    struct bucket_holder *h = arg;
    ft_parking_lot_unpark(h->addr, hold_bucket, h);
    return NULL;
}

/* In the forked child: exit status 0 if the parking lot works. */
static void
child_after_fork(const void *addr, const void *expected)
{
    ft_parking_lot_after_fork();
    int status = 0;
    if (ft_parking_lot_unpark_all(addr) != 0) {
        status |= 1;   /* the parent's parked thread is still listed */
    }
    if (ft_parking_lot_park(addr, expected, 1, 5 * FT_NS_PER_MS, NULL, 0) != FT_PARK_TIMEOUT) {
        status |= 2;
    }
    if (ft_parking_lot_unpark_all(addr) != 0) {
        status |= 4;   /* the timed-out park left its entry */
    }
    _exit(status);
}

Test(parking_lot, after_fork_the_child_has_an_empty_usable_parking_lot,
     .timeout = FT_TIMEOUT(30))
{
    /* At fork time a thread is parked on a, and another thread holds a's
     * bucket lock (inside an unpark callback on b, same bucket).  Without the
     * reset the child would find a dead waiter, or block on the bucket. */
    static unsigned char area[2 * SAME_BUCKET];
    static const unsigned char zero = 0;
    const void *a = &area[0], *b = &area[SAME_BUCKET];
    struct parker p;
    struct bucket_holder h = { .addr = b };

    ft_parking_lot_set_detach_hooks(&counting_hooks);
    parker_init(&p, a, &zero, 1);
    pthread_t tp = start_parked(&p);
    pthread_t th = test_start_thread(unpark_holding_bucket, &h);
    bool holding = TEST_POLL_UNTIL(atomic_load(&h.inside), POLL_MS);

    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        child_after_fork(a, &zero);
    }
    int status = 0;
    bool exited = pid > 0 && test_wait_child(pid, POLL_MS, &status);

    atomic_store(&h.release, 1);
    test_join_thread(th);
    int woken = ft_parking_lot_unpark_all(a);
    test_join_thread(tp);
    ft_parking_lot_set_detach_hooks(NULL);

    cr_assert(holding);
    cr_assert_gt(pid, 0, "fork: %s", strerror(errno));
    cr_assert(exited, "the child hung (on the bucket lock held at fork time?)");
    cr_assert(WIFEXITED(status), "the child died (status %#x)", status);
    cr_assert_eq(WEXITSTATUS(status), 0, "child failure bits %d: 1 = old waiter listed, "
                 "2 = park did not time out, 4 = entry left", WEXITSTATUS(status));
    cr_assert_eq(woken, 1, "the parent's waiter must still be parked in the parent");
    cr_assert_eq(atomic_load(&p.result), FT_PARK_OK);
}
