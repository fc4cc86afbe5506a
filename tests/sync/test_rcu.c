/* ft_rcu.h: the QSBR read side, grace periods and deferred frees, as the
 * thread-state registry and the containers will use them.
 *
 * Readers follow a published pointer while a writer replaces it and frees
 * the old node after a grace period (synchronize or call_rcu).  A node is
 * poisoned before it is freed, so a reader that could still reach freed
 * memory would see the poison (and ASan would report the use after free);
 * under TSan these tests also check that the grace-period annotations
 * remove liburcu's false positives without hiding real orderings.
 * Finally, the QSBR rule the runtime relies on: a thread that is offline
 * does not hold up a grace period, and an online one does.
 */
#include "harness.h"
#include "test_util.h"

#include "ft_lock.h"
#include "ft_rcu.h"

#include <stdlib.h>

#define NODE_LIVE 0x5AFEu
#define NODE_DEAD 0xDEADu
#define READERS 3
#define POLL_MS 5000

typedef struct node {
    ft_rcu_head rcu;
    unsigned magic;
    long value;
    long check;      /* always ~value in a live node */
} node;

typedef struct shared {
    node *cur;                  /* published with ft_rcu_store */
    atomic_int stop;
    atomic_int registered;
    atomic_long reads;
    atomic_long bad;            /* a reader saw a poisoned or torn node */
    atomic_long freed_by_callback;
} shared;

static node *
node_new(long value)
{
    node *n = malloc(sizeof *n);
    cr_assert_not_null(n);
    n->magic = NODE_LIVE;
    n->value = value;
    n->check = ~value;
    return n;
}

static void
node_poison_and_free(node *n)
{
    n->magic = NODE_DEAD;
    n->value = 0;
    n->check = 0;
    free(n);
}

static void *
reader(void *arg)
{
    shared *s = arg;
    ft_rcu_register_thread();
    atomic_fetch_add(&s->registered, 1);
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        ft_rcu_read_lock();
        node *n = ft_rcu_load(s->cur);
        if (n->magic != NODE_LIVE || n->check != ~n->value) {
            atomic_fetch_add(&s->bad, 1);
        }
        ft_rcu_read_unlock();
        /* Counted before the quiescent point: a grace period ends only
         * after each reader's next one, so every synchronize() the writer
         * returns from has seen this count grow, however the threads are
         * scheduled (valgrind runs one at a time). */
        atomic_fetch_add_explicit(&s->reads, 1, memory_order_relaxed);
        ft_rcu_quiescent();   /* a safe point: no pointer held past here */
    }
    ft_rcu_unregister_thread();
    return NULL;
}

static void
start_readers(shared *s, pthread_t *t)
{
    s->cur = node_new(0);
    for (int i = 0; i < READERS; i++) {
        t[i] = test_start_thread(reader, s);
    }
    cr_assert(TEST_POLL_UNTIL(atomic_load(&s->registered) == READERS, POLL_MS));
}

static void
stop_readers(shared *s, pthread_t *t)
{
    atomic_store(&s->stop, 1);
    for (int i = 0; i < READERS; i++) {
        test_join_thread(t[i]);
    }
    node_poison_and_free(s->cur);
}

Test(rcu, synchronize_then_free_never_frees_under_a_reader, .timeout = FT_TIMEOUT(60))
{
    static shared s;
    pthread_t t[READERS];
    start_readers(&s, t);

    enum { UPDATES = 300 };
    for (long i = 1; i <= UPDATES; i++) {
        node *old = s.cur;
        ft_rcu_store(s.cur, node_new(i));
        ft_rcu_synchronize();          /* every reader passed a quiescent point */
        node_poison_and_free(old);
    }
    long reads = atomic_load(&s.reads);
    stop_readers(&s, t);

    cr_log_info("%ld reads during %d updates", reads, UPDATES);
    cr_assert_eq(atomic_load(&s.bad), 0, "a reader saw a freed node");
    cr_assert_gt(reads, 0);
    /* Each grace period waited for a fresh quiescent point of every reader,
     * and a read was counted before each. */
    cr_assert_geq(reads, (long)READERS * UPDATES, "a grace period did not wait for every reader");
}

static shared *callback_shared;

static void
free_node_cb(ft_rcu_head *head)
{
    FT_RCU_CALLBACK_BEGIN();
    node *n = (node *)head;    /* rcu is the first member */
    node_poison_and_free(n);
    atomic_fetch_add(&callback_shared->freed_by_callback, 1);
}

Test(rcu, call_rcu_frees_after_a_grace_period_and_barrier_waits_for_all,
     .timeout = FT_TIMEOUT(60))
{
    static shared s;
    callback_shared = &s;
    pthread_t t[READERS];
    start_readers(&s, t);

    enum { UPDATES = 2000 };
    for (long i = 1; i <= UPDATES; i++) {
        node *old = s.cur;
        ft_rcu_store(s.cur, node_new(i));
        ft_rcu_call(&old->rcu, free_node_cb);
    }
    ft_rcu_barrier();
    long freed = atomic_load(&s.freed_by_callback);
    stop_readers(&s, t);

    cr_assert_eq(freed, UPDATES, "ft_rcu_barrier returned with callbacks pending");
    cr_assert_eq(atomic_load(&s.bad), 0, "a reader saw a freed node");
}

/* ---- the QSBR rule: offline threads do not hold up grace periods --------- */

struct sleeper {
    ft_event go_offline_done;
    ft_event release;
    bool offline;
};

static void *
registered_sleeper(void *arg)
{
    struct sleeper *z = arg;
    ft_rcu_register_thread();
    if (z->offline) {
        ft_rcu_offline();
    }
    ft_event_set(&z->go_offline_done);
    ft_event_wait(&z->release);      /* blocked: online or offline as told */
    if (z->offline) {
        ft_rcu_online();
    }
    ft_rcu_unregister_thread();
    return NULL;
}

struct syncer {
    atomic_int done;
};

static void *
run_synchronize(void *arg)
{
    struct syncer *y = arg;
    ft_rcu_synchronize();
    atomic_store(&y->done, 1);
    return NULL;
}

Test(rcu, offline_thread_does_not_delay_a_grace_period_but_online_one_does,
     .timeout = FT_TIMEOUT(60))
{
    /* offline: synchronize completes while the thread is still blocked */
    struct sleeper off = { .offline = true };
    pthread_t t1 = test_start_thread(registered_sleeper, &off);
    ft_event_wait(&off.go_offline_done);
    struct syncer y1 = {0};
    pthread_t s1 = test_start_thread(run_synchronize, &y1);
    bool completed_while_blocked = TEST_POLL_UNTIL(atomic_load(&y1.done), POLL_MS);
    ft_event_set(&off.release);
    test_join_thread(s1);
    test_join_thread(t1);

    /* online: synchronize waits until the blocked thread moves on */
    struct sleeper on = { .offline = false };
    pthread_t t2 = test_start_thread(registered_sleeper, &on);
    ft_event_wait(&on.go_offline_done);
    struct syncer y2 = {0};
    pthread_t s2 = test_start_thread(run_synchronize, &y2);
    bool completed_early = TEST_POLL_UNTIL(atomic_load(&y2.done), 100);
    ft_event_set(&on.release);      /* it unregisters: a quiescent state */
    bool completed_after = TEST_POLL_UNTIL(atomic_load(&y2.done), POLL_MS);
    test_join_thread(s2);
    test_join_thread(t2);

    cr_assert(completed_while_blocked, "an offline thread held up the grace period");
    cr_assert_not(completed_early, "the grace period ignored a thread that was online");
    cr_assert(completed_after);
}
