/* ft_event and ft_once_flag (sync/event.c).
 *
 * Scenarios A13 (event) and A6 (once flag) of the internals notes, plus
 * concurrent once calls, interruptible waits, and the release/acquire
 * pairs (checked by TSan through plain payloads read by threads that never
 * park).  Worker threads only record; the main thread asserts after joining
 * or polling. */
#include "harness.h"
#include "test_util.h"

#include <sched.h>
#include <signal.h>
#include <string.h>

#include "ft_lock.h"

#define POLL_MS 2000

static uint8_t
event_byte(ft_event *e)
{
    return __atomic_load_n(&e->v, __ATOMIC_RELAXED);
}

static uint8_t
once_byte(ft_once_flag *o)
{
    return __atomic_load_n(&o->v, __ATOMIC_RELAXED);
}

/* ---- event: single thread ---------------------------------------------- */

Test(event, zero_initialised_is_unset)
{
    ft_event e = {0};
    cr_assert_not(ft_event_is_set(&e));
    cr_assert_eq(event_byte(&e), 0);
}

Test(event, set_is_set_and_wait_returns_at_once, .timeout = FT_TIMEOUT(10))
{
    ft_event e = {0};
    ft_event_set(&e);
    cr_assert(ft_event_is_set(&e));
    cr_assert_eq(event_byte(&e), 1);

    ft_event_wait(&e);   /* must not block */
    cr_assert(ft_event_wait_timed(&e, 0, FT_LOCK_DONT_DETACH));
    cr_assert(ft_event_wait_timed(&e, -1, FT_LOCK_DETACH));
    cr_assert(ft_event_wait_timed(&e, 50 * FT_NS_PER_MS, FT_LOCK_DONT_DETACH));

    ft_event_set(&e);    /* setting twice is harmless */
    cr_assert(ft_event_is_set(&e));
    cr_assert_eq(event_byte(&e), 1);
}

Test(event, wait_timed_zero_on_unset_returns_false_without_parking)
{
    ft_event e = {0};
    cr_assert_not(ft_event_wait_timed(&e, 0, FT_LOCK_DONT_DETACH));
    cr_assert_eq(event_byte(&e), 0, "a zero timeout must not announce a waiter");
}

Test(event, wait_timed_times_out_if_never_set, .timeout = FT_TIMEOUT(10))
{
    const int64_t timeouts[] = { 1 * FT_NS_PER_MS, 20 * FT_NS_PER_MS, 50 * FT_NS_PER_MS };
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        ft_event e = {0};
        int64_t t0 = test_now_ns();
        bool r = ft_event_wait_timed(&e, timeouts[i], i % 2 ? FT_LOCK_DETACH
                                                            : FT_LOCK_DONT_DETACH);
        int64_t elapsed = test_now_ns() - t0;
        cr_assert_not(r);
        cr_assert_geq(elapsed, timeouts[i], "returned after %lld ns, timeout %lld ns",
                      (long long)elapsed, (long long)timeouts[i]);
        cr_assert_neq(event_byte(&e), 1);
        cr_assert_not(ft_event_is_set(&e));

        /* a timed-out waiter leaves nothing behind: the event still works */
        ft_event_set(&e);
        cr_assert(ft_event_is_set(&e));
    }
}

/* ---- event: N waiters ----------------------------------------------------- */

#define N_WAITERS 4

struct waiters_ctx {
    ft_event ev;
    int payload;                  /* plain: written before set, read after wait */
    int started;                  /* atomic */
    int woken;                    /* atomic */
    int seen[N_WAITERS];          /* payload each waiter read, checked after join */
};

struct waiter_arg {
    struct waiters_ctx *ctx;
    int index;
};

static void *
event_waiter(void *p)
{
    struct waiter_arg *a = p;
    struct waiters_ctx *ctx = a->ctx;
    __atomic_fetch_add(&ctx->started, 1, __ATOMIC_RELAXED);
    ft_event_wait(&ctx->ev);
    /* the event's release/acquire makes the plain payload visible (TSan
     * would report a race otherwise) */
    ctx->seen[a->index] = ctx->payload;
    __atomic_fetch_add(&ctx->woken, 1, __ATOMIC_RELAXED);
    return NULL;
}

Test(event, set_wakes_all_parked_waiters, .timeout = FT_TIMEOUT(20))
{
    struct waiters_ctx ctx = {0};
    struct waiter_arg args[N_WAITERS];
    pthread_t th[N_WAITERS];
    for (int i = 0; i < N_WAITERS; i++) {
        args[i] = (struct waiter_arg){ &ctx, i };
        th[i] = test_start_thread(event_waiter, &args[i]);
    }

    /* every waiter is in ft_event_wait and at least one has announced
     * itself (byte 2); nobody can have passed the wait yet */
    cr_assert(TEST_POLL_UNTIL(__atomic_load_n(&ctx.started, __ATOMIC_RELAXED) == N_WAITERS
                              && event_byte(&ctx.ev) == 2, POLL_MS),
              "byte %d, started %d", event_byte(&ctx.ev),
              __atomic_load_n(&ctx.started, __ATOMIC_RELAXED));
    cr_assert_eq(__atomic_load_n(&ctx.woken, __ATOMIC_RELAXED), 0);

    ctx.payload = 42;
    ft_event_set(&ctx.ev);
    for (int i = 0; i < N_WAITERS; i++) {
        test_join_thread(th[i]);
    }
    cr_assert_eq(__atomic_load_n(&ctx.woken, __ATOMIC_RELAXED), N_WAITERS);
    for (int i = 0; i < N_WAITERS; i++) {
        cr_assert_eq(ctx.seen[i], 42, "waiter %d read %d", i, ctx.seen[i]);
    }
    cr_assert_eq(event_byte(&ctx.ev), 1);
}

/* Threads that see the event set without ever parking get no ordering
 * from the parking lot; only the event's own release/acquire makes the
 * plain payload visible to them (TSan reports a race otherwise). */
struct poll_ctx {
    ft_event ev;
    /* keep the payload out of the event's 8-byte TSan shadow granule: the
     * pollers' atomic loads of the byte would evict the record of the
     * main thread's write and hide a missing release/acquire */
    _Alignas(64) int payload;
    int seen_by_is_set;
    int seen_by_wait0;
};

static void *
poll_is_set(void *p)
{
    struct poll_ctx *ctx = p;
    while (!ft_event_is_set(&ctx->ev)) {
        sched_yield();
    }
    ctx->seen_by_is_set = ctx->payload;
    return NULL;
}

static void *
poll_wait_zero(void *p)
{
    struct poll_ctx *ctx = p;
    while (!ft_event_wait_timed(&ctx->ev, 0, FT_LOCK_DONT_DETACH)) {
        sched_yield();
    }
    ctx->seen_by_wait0 = ctx->payload;
    return NULL;
}

Test(event, set_publishes_writes_to_pollers, .timeout = FT_TIMEOUT(20))
{
    struct poll_ctx ctx = {0};
    pthread_t a = test_start_thread(poll_is_set, &ctx);
    pthread_t b = test_start_thread(poll_wait_zero, &ctx);
    ctx.payload = 7;
    ft_event_set(&ctx.ev);
    test_join_thread(a);
    test_join_thread(b);
    cr_assert_eq(ctx.seen_by_is_set, 7);
    cr_assert_eq(ctx.seen_by_wait0, 7);
    cr_assert_eq(event_byte(&ctx.ev), 1, "pollers never announce themselves");
}

struct timed_ctx {
    ft_event ev;
    int64_t timeout_ns;
    ft_lock_flags flags;
    bool result;       /* read after join */
};

static void *
event_timed_waiter(void *p)
{
    struct timed_ctx *ctx = p;
    ctx->result = ft_event_wait_timed(&ctx->ev, ctx->timeout_ns, ctx->flags);
    return NULL;
}

static void
check_timed_wait_sees_set(ft_lock_flags flags)
{
    struct timed_ctx ctx = {
        .timeout_ns = 60 * FT_NS_PER_S,   /* far longer than the test takes */
        .flags = flags,
    };
    pthread_t t = test_start_thread(event_timed_waiter, &ctx);
    cr_assert(TEST_POLL_UNTIL(event_byte(&ctx.ev) == 2, POLL_MS),
              "the waiter never announced itself (byte %d)", event_byte(&ctx.ev));
    ft_event_set(&ctx.ev);
    test_join_thread(t);
    cr_assert(ctx.result, "wait_timed returned false although the event was set");
}

Test(event, wait_timed_returns_true_when_set_meanwhile, .timeout = FT_TIMEOUT(20))
{
    check_timed_wait_sees_set(FT_LOCK_DONT_DETACH);
    check_timed_wait_sees_set(FT_LOCK_DETACH);
}

Test(event, wait_forever_timed_returns_true_when_set, .timeout = FT_TIMEOUT(20))
{
    struct timed_ctx ctx = { .timeout_ns = -1, .flags = FT_LOCK_DETACH };
    pthread_t t = test_start_thread(event_timed_waiter, &ctx);
    cr_assert(TEST_POLL_UNTIL(event_byte(&ctx.ev) == 2, POLL_MS));
    ft_event_set(&ctx.ev);
    test_join_thread(t);
    cr_assert(ctx.result);
}

/* ---- event: signals ------------------------------------------------------- */

struct intr_ctx {
    ft_event ev;
    ft_lock_flags flags;
    int done;       /* atomic */
    bool result;    /* read after join */
};

static void *
intr_waiter(void *p)
{
    struct intr_ctx *ctx = p;
    ctx->result = ft_event_wait_timed(&ctx->ev, -1, ctx->flags);
    __atomic_store_n(&ctx->done, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* Signal the waiter until it returns; a signal that lands before it is
 * asleep is simply missed, so keep sending. */
static bool
signal_until_done(pthread_t t, struct intr_ctx *ctx)
{
    for (int i = 0; i < 500; i++) {
        pthread_kill(t, SIGUSR1);
        if (TEST_POLL_UNTIL(__atomic_load_n(&ctx->done, __ATOMIC_RELAXED), 10)) {
            return true;
        }
    }
    return false;
}

Test(event, interruptible_wait_ends_on_signal, .timeout = FT_TIMEOUT(30))
{
    test_install_sigusr1_without_restart(NULL);
    struct intr_ctx ctx = { .flags = FT_LOCK_FAIL_IF_INTERRUPTED };
    pthread_t t = test_start_thread(intr_waiter, &ctx);
    cr_assert(TEST_POLL_UNTIL(event_byte(&ctx.ev) == 2, POLL_MS));
    cr_assert(signal_until_done(t, &ctx), "the wait never ended");
    test_join_thread(t);
    cr_assert_not(ctx.result, "interrupted wait reported the event set");
    cr_assert_not(ft_event_is_set(&ctx.ev));
}

Test(event, plain_wait_ignores_signals, .timeout = FT_TIMEOUT(30))
{
    test_install_sigusr1_without_restart(NULL);
    struct intr_ctx ctx = { .flags = FT_LOCK_DONT_DETACH };
    pthread_t t = test_start_thread(intr_waiter, &ctx);
    cr_assert(TEST_POLL_UNTIL(event_byte(&ctx.ev) == 2, POLL_MS));
    for (int i = 0; i < 5; i++) {
        pthread_kill(t, SIGUSR1);
        /* a negative check: the wait must still be going on */
        cr_assert_not(TEST_POLL_UNTIL(__atomic_load_n(&ctx.done, __ATOMIC_RELAXED), 5),
                      "the wait ended on signal %d", i + 1);
    }
    ft_event_set(&ctx.ev);
    test_join_thread(t);
    cr_assert(ctx.result);
}

/* ---- once: single thread (A6) -------------------------------------------- */

struct flaky {
    int calls;
    int fail_first;
};

static int
flaky_init(void *arg)
{
    struct flaky *f = arg;
    f->calls++;
    return f->calls <= f->fail_first ? -1 : 0;
}

Test(once, retries_after_failure_until_success)
{
    ft_once_flag once = {0};
    struct flaky f = { .calls = 0, .fail_first = 4 };
    const int want[10] = { -1, -1, -1, -1, 0, 0, 0, 0, 0, 0 };
    for (int i = 0; i < 10; i++) {
        int r = ft_once_call(&once, flaky_init, &f);
        cr_assert_eq(r, want[i], "call %d returned %d", i + 1, r);
        cr_assert_eq(once_byte(&once), i < 4 ? 0 : FT_ONCE_DONE);
    }
    cr_assert_eq(f.calls, 5, "fn ran %d times", f.calls);
}

static int
succeed(void *arg)
{
    (*(int *)arg)++;
    return 0;
}

Test(once, first_success_is_final)
{
    ft_once_flag once = {0};
    int runs = 0;
    cr_assert_eq(ft_once_call(&once, succeed, &runs), 0);
    cr_assert_eq(ft_once_call(&once, succeed, &runs), 0);
    cr_assert_eq(ft_once_call_slow(&once, succeed, &runs), 0);
    cr_assert_eq(runs, 1);
    cr_assert_eq(once_byte(&once), FT_ONCE_DONE);
}

/* A caller that finds the flag DONE on the inline fast path never touches
 * the parking lot; only DONE's release and the fast path's acquire make fn's
 * writes visible to it (TSan reports a race otherwise). */
struct fast_ctx {
    ft_once_flag once;
    _Alignas(64) int value;   /* out of the flag's TSan shadow granule */
    int runs;                 /* atomic */
    int runner_done;          /* atomic, relaxed: carries no ordering */
    int late_result;
    int late_seen;
};

static int
publish_value(void *arg)
{
    struct fast_ctx *ctx = arg;
    __atomic_fetch_add(&ctx->runs, 1, __ATOMIC_RELAXED);
    ctx->value = 99;
    return 0;
}

static void *
early_caller(void *p)
{
    struct fast_ctx *ctx = p;
    (void)ft_once_call(&ctx->once, publish_value, ctx);
    __atomic_store_n(&ctx->runner_done, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void *
late_caller(void *p)
{
    struct fast_ctx *ctx = p;
    while (!__atomic_load_n(&ctx->runner_done, __ATOMIC_RELAXED)) {
        sched_yield();
    }
    ctx->late_result = ft_once_call(&ctx->once, publish_value, ctx);
    ctx->late_seen = ctx->value;
    return NULL;
}

Test(once, fast_path_sees_fn_writes, .timeout = FT_TIMEOUT(20))
{
    struct fast_ctx ctx = {0};
    pthread_t late = test_start_thread(late_caller, &ctx);
    pthread_t early = test_start_thread(early_caller, &ctx);
    test_join_thread(early);
    test_join_thread(late);
    cr_assert_eq(ctx.late_result, 0);
    cr_assert_eq(ctx.late_seen, 99);
    cr_assert_eq(__atomic_load_n(&ctx.runs, __ATOMIC_RELAXED), 1);
}

/* ---- once: concurrent callers -------------------------------------------- */

#define N_CALLERS 8

struct once_ctx {
    ft_once_flag once;
    ft_event release;        /* fn blocks on it until the main thread sets it */
    int runs;                /* atomic: how many times fn started */
    int fail_runs;           /* fn fails on this many first runs */
    int value;               /* plain: written by fn, read by callers after 0 */
    int entered;             /* atomic: callers that reached ft_once_call */
    int results[N_CALLERS];  /* per caller, read after join */
    int seen[N_CALLERS];
};

struct caller_arg {
    struct once_ctx *ctx;
    int index;
};

static int
blocking_init(void *arg)
{
    struct once_ctx *ctx = arg;
    int run = __atomic_add_fetch(&ctx->runs, 1, __ATOMIC_RELAXED);
    if (run == 1) {
        ft_event_wait(&ctx->release);   /* keep "running" until released */
    }
    if (run <= ctx->fail_runs) {
        return -1;
    }
    ctx->value = 1234;   /* published by the DONE release */
    return 0;
}

static void *
once_caller(void *p)
{
    struct caller_arg *a = p;
    struct once_ctx *ctx = a->ctx;
    __atomic_fetch_add(&ctx->entered, 1, __ATOMIC_RELAXED);
    int r = ft_once_call(&ctx->once, blocking_init, ctx);
    ctx->results[a->index] = r;
    ctx->seen[a->index] = r == 0 ? ctx->value : -1;
    return NULL;
}

static void
run_concurrent_once(struct once_ctx *ctx, int n)
{
    struct caller_arg args[N_CALLERS];
    pthread_t th[N_CALLERS];
    for (int i = 0; i < n; i++) {
        args[i] = (struct caller_arg){ ctx, i };
        th[i] = test_start_thread(once_caller, &args[i]);
    }
    /* fn is running and blocked, all callers have arrived, and at least one
     * waiter has set the parked bit (byte 1|2) */
    cr_assert(TEST_POLL_UNTIL(__atomic_load_n(&ctx->entered, __ATOMIC_RELAXED) == n
                              && once_byte(&ctx->once) == 3, POLL_MS),
              "byte %d, entered %d, runs %d", once_byte(&ctx->once),
              __atomic_load_n(&ctx->entered, __ATOMIC_RELAXED),
              __atomic_load_n(&ctx->runs, __ATOMIC_RELAXED));
    cr_assert_eq(__atomic_load_n(&ctx->runs, __ATOMIC_RELAXED), 1);

    ft_event_set(&ctx->release);
    for (int i = 0; i < n; i++) {
        test_join_thread(th[i]);
    }
}

Test(once, concurrent_callers_run_fn_exactly_once, .timeout = FT_TIMEOUT(20))
{
    struct once_ctx ctx = { .fail_runs = 0 };
    run_concurrent_once(&ctx, N_CALLERS);
    cr_assert_eq(__atomic_load_n(&ctx.runs, __ATOMIC_RELAXED), 1);
    for (int i = 0; i < N_CALLERS; i++) {
        cr_assert_eq(ctx.results[i], 0, "caller %d returned %d", i, ctx.results[i]);
        cr_assert_eq(ctx.seen[i], 1234, "caller %d saw %d", i, ctx.seen[i]);
    }
    cr_assert_eq(once_byte(&ctx.once), FT_ONCE_DONE);
}

Test(once, waiter_retries_after_runner_fails, .timeout = FT_TIMEOUT(20))
{
    /* the first run blocks, then fails; a parked caller must take over */
    enum { N = 4 };
    struct once_ctx ctx = { .fail_runs = 1 };
    run_concurrent_once(&ctx, N);
    cr_assert_eq(__atomic_load_n(&ctx.runs, __ATOMIC_RELAXED), 2,
                 "fn ran %d times", __atomic_load_n(&ctx.runs, __ATOMIC_RELAXED));
    int failed = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(ctx.results[i] == 0 || ctx.results[i] == -1);
        if (ctx.results[i] == -1) {
            failed++;
        }
        else {
            cr_assert_eq(ctx.seen[i], 1234, "caller %d saw %d", i, ctx.seen[i]);
        }
    }
    cr_assert_eq(failed, 1, "%d callers saw the failure", failed);
    cr_assert_eq(once_byte(&ctx.once), FT_ONCE_DONE);
}
