/* Thread states: the state machine, attach/detach, the lock-free registry,
 * safe points and stop-the-world.
 *
 * THE STATE WORD (ft_tstate.state, 64 bits: kind | tag << 2, bit 63 WAITING)
 *
 *                 attach (owner thread, CAS)
 *     DETACHED  ------------------------------------->  ATTACHED
 *        ^  ^   <----------------------------------      |   ^
 *        |  |        detach (owner, store)               |   | claim (owner, CAS)
 *        |  |                                            |   |
 *        |  |                                            |  ATTACHED(tag): granted
 *        |  |  the owner when the   safe point / attach  |   ^
 *        |  |  tag is stale (CAS)   that sees a stop     |   | start-the-world (requester,
 *        |  |                       (owner, store)       v   | CAS): the grant
 *        |  +----------------------------------------  SUSPENDED|WAITING
 *        |  |                                            ^
 *        |  |  start-the-world (requester, CAS),         |     attach about to park
 *        |  |  or the owner when the tag is stale        |     (owner, CAS)
 *        |  +----------------------------------------  SUSPENDED(tag = stop seq)
 *        |     stop-the-world (requester, CAS) --------------^
 *        |     registration during a stop (creator, CAS)
 *        v
 *     SHUTTING_DOWN   finalization (finalizing thread, CAS from DETACHED or
 *                     SUSPENDED, world stopped), or deletion (the deleting
 *                     thread, same CAS); never left: an attach that meets it
 *                     hangs forever.  Whoever's CAS entered it unlinks the
 *                     state, so a finalizer and a detached owner deleting its
 *                     state concurrently never both unlink it.
 *
 *   - Only the thread the state is attached to leaves ATTACHED, and only it
 *     enters ATTACHED from DETACHED (by CAS, so two threads cannot attach
 *     one state).  The one other way in is the grant below: the restart
 *     hands a SUSPENDED|WAITING state, whose owner is parked in attach for
 *     it, to that owner, tagged (ATTACHED with tag != 0) until the owner
 *     claims it by CAS to plain ATTACHED (of two threads misusing one state,
 *     one claims and the other meets plain ATTACHED: the usual fatal error).
 *     Everyone else changes the word by CAS from DETACHED or SUSPENDED,
 *     never from ATTACHED: an attached thread is never disturbed, it is
 *     asked (ft_tstate.breaker) and answers at its next safe point.
 *   - SUSPENDED carries the sequence number of the stop that put it there
 *     (interp->stw.seq is odd while a stop is requested or in force).  A
 *     suspension whose tag is not the current seq is stale: the stop ended
 *     after it was stamped (e.g. a thread suspended itself just as the world
 *     restarted).  The owner clears a stale suspension itself, so no
 *     interleaving can leave a thread suspended after its stop ended.  A
 *     stop that re-stamps a stale suspension keeps its WAITING bit.
 *   - WAITING (SUSPENDED only) says the owner is in attach and will not
 *     leave it before the word leaves SUSPENDED: set by CAS when attach
 *     finds a live suspension (it then parks on the word), or stored with
 *     the suspension by a thread suspending itself (at a safe point, or an
 *     attach that saw a stop), which goes straight on to attach.
 *   - Start-the-world CASes a SUSPENDED state to DETACHED, or a WAITING one
 *     to ATTACHED(tag = the stop's seq), and unparks it.
 *
 * FORWARD PROGRESS (gh-151518)
 *   Guarantee: a thread waiting to attach when a stop ends is attached by
 *   the restart itself, so it runs until its next safe point before any
 *   later stop can suspend it.  "Waiting to attach" means its state is
 *   SUSPENDED|WAITING when the restart's walk reaches it (it is parked in
 *   attach, or suspended itself at a safe point or in attach).  "Runs until
 *   its next safe point": the attach returns to its caller without looking
 *   at stw.seq; a stop requested meanwhile sees the state ATTACHED, asks it,
 *   and waits for its answer, like any attached thread.  PyEval_RestoreThread
 *   and PyEval_AcquireThread also skip the safe point they make right after
 *   attaching when the attach was granted, so Py_END_ALLOW_THREADS returns
 *   to the caller's code; so do PyGILState_Ensure and PyThreadState_Ensure*
 *   (core/gilstate.c), so a callback from a foreign thread gets to run.
 *   Without the grant a restart only detached the parked thread, and a
 *   requester stopping again at once (a thread looping on gc.collect())
 *   re-suspended it before it was scheduled, forever.  The cost: the next
 *   stop waits for the granted thread to wake up and reach a safe point.
 *   Why this is sound:
 *   - QSBR: a granted thread is ATTACHED but offline until it claims the
 *     state.  Harmless: it went offline before parking and holds no pointer
 *     from before; it goes online (counter store, then the claim's CAS as the
 *     barrier, exactly as attach) before it touches anything shared, so a
 *     grace period that does not wait for it meanwhile loses nothing.  What
 *     ATTACHED promises others (the thread answers at a safe point; the next
 *     stop waits for it) holds from the grant on.
 *   - Stale tags: WAITING is set only by CAS against a suspension whose tag
 *     was the current seq; if the restart gets there first the CAS fails and
 *     attach starts over (DETACHED).  A WAITING suspension stored by a
 *     thread suspending itself as the world restarts is stale and cleared by
 *     its owner, or re-stamped, still WAITING, by the next stop (whose
 *     restart grants it).  Grants are never stale: they are ATTACHED.
 *   - Finalization: an owner that finds a grant while its interpreter
 *     finalizes (must_hang) gives it back (CAS to DETACHED, then wakes the
 *     stop, which may be the finalizer's, waiting for it) and goes the
 *     DETACHED way, which hangs.  Finalization moves SUSPENDED|WAITING
 *     states to SHUTTING_DOWN like any suspension; their owners wake and hang.
 *   - The requester: it runs from stop to start, so it is never the waiting
 *     thread; its own state is skipped (attached) or stamped without WAITING
 *     (a requester without a thread state) and detached by the restart.
 *   - Critical sections: a granted attach resumes the innermost section like
 *     any attach.  If that has to wait for the lock, the thread detaches
 *     (core/critical_section.c): the grant is over, and the guarantee then
 *     covers its next attach.
 *   - The GIL build: stops are no-ops and nothing is ever SUSPENDED.
 *
 * MEMORY ORDERING
 *   - Detach stores DETACHED with release: everything the thread did while
 *     attached happens-before a requester that reads DETACHED (acquire) and
 *     then treats the thread as stopped.  Attach's CAS is acquire (and
 *     seq_cst, below), so a thread resuming after a stop sees what the
 *     stopped world's owner wrote.
 *   - Publish-then-check, both sides seq_cst (the store-buffer pattern, where
 *     one side always sees the other):
 *       attach:    CAS DETACHED->ATTACHED ; load stw.seq   (odd -> step aside)
 *       requester: stw.seq += 1 (odd)     ; load each state (DETACHED ->
 *                                           suspend it, ATTACHED -> ask it)
 *       register:  lfht add (full barrier) ; load stw.seq  (odd -> suspend self)
 *       requester: stw.seq += 1 (odd)      ; walk the list
 *     So a thread either is seen by the requester's walk, or sees the request
 *     and suspends itself before it runs any code attached.
 *   - QSBR shares those barriers.  Attach stores its reader counter (goes
 *     online) just before the CAS, whose lock prefix is the barrier QSBR
 *     wants after that store; detach stores the counter (release), then
 *     DETACHED, then issues one barrier that serves both store->load pairs
 *     (counter -> liburcu's `waiting` flag, DETACHED -> breaker).  A round
 *     trip thus costs two barriers, not four (ft_rcu.h).  A thread whose
 *     attach CAS fails is online for a moment while detached; it goes
 *     offline before it parks or hangs, which is all QSBR asks.
 *
 * THE REGISTRY (interp->threads)
 *   liburcu's lock-free hash table (rculfhash), QSBR flavour, keyed by the
 *   state's id.  Registering and unregistering are lock-free (cds_lfht_add /
 *   cds_lfht_del: CAS on the split-ordered list); walkers (PyThreadState_Next,
 *   stop-the-world, finalization) run on the RCU read side and never block.
 *   Why QSBR: it maps onto thread states directly, attach = online, detach =
 *   offline, a safe point = a quiescent state, so readers cost nothing; an
 *   attached thread is inside one long read-side section between safe points.
 *   Why rculfhash and not rculist: rculist needs writers serialised by a lock;
 *   rculfhash does not, and its O(1) lookup by id serves later issues (the
 *   refcount merge queues find an owner by thread).  The table does not
 *   resize (no worker thread, which keeps fork simple); 64 buckets keep
 *   registration O(1) up to a few hundred threads.
 *   A removed state is freed with call_rcu, after every thread that was
 *   online when it was removed has passed a quiescent state.
 *
 *   What a walker may do with a state it reaches: read its id, interp,
 *   thread ident and state word, set breaker bits, exchange its pending
 *   asynchronous exception (PyThreadState_SetAsyncExc), and CAS the state
 *   word from DETACHED or SUSPENDED (the stop-the-world requester and the
 *   finalizer).  It may not
 *   keep the pointer past its next quiescent state (a safe point, a detach),
 *   and must not attach, clear or free it.
 *
 * THREAD SLOTS
 *   Each OS thread that binds a state gets a refcounted ft_thread_slot whose
 *   `last` field is the state most recently attached there (PyGILState reuses
 *   it).  A state holds a reference to the slot it is bound to, and deleting
 *   the state CASes `last` back to NULL, from whichever thread deletes it.  A
 *   thread-exit key destructor detaches a state the thread left attached (a
 *   thread that exits attached would otherwise block every stop and, in the
 *   GIL build, hold the GIL forever), unregisters the thread from liburcu and
 *   drops the thread's slot reference.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft_alloc.h"
#include "ft_parking_lot.h"
#include "ft_pystate.h"

_Thread_local ft_tstate *ft_tls_current __attribute__((tls_model("initial-exec")));
static _Thread_local ft_thread_slot *tls_slot __attribute__((tls_model("initial-exec")));
static _Thread_local bool tls_rcu_registered __attribute__((tls_model("initial-exec")));

static pthread_key_t thread_exit_key;
static pthread_once_t thread_exit_once = PTHREAD_ONCE_INIT;


static void _Py_NO_RETURN
fatal(const char *func, const char *msg)
{
    _Py_FatalErrorFunc(func, msg);
}

/* ---- thread exit, slots, liburcu registration ------------------------------- */

/* Every live slot, so that a fork child can release those of threads that
 * did not survive (their TLS, the only other pointer to them, is gone). */
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static ft_thread_slot slots = { .prev = &slots, .next = &slots };

static void
slot_decref(ft_thread_slot *slot)
{
    if (atomic_fetch_sub_explicit(&slot->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_lock(&slots_lock);
        slot->prev->next = slot->next;
        slot->next->prev = slot->prev;
        pthread_mutex_unlock(&slots_lock);
        ft_raw_free(slot, sizeof *slot);
    }
}

void
ft_thread_slots_before_fork(void)
{
    pthread_mutex_lock(&slots_lock);
}

void
ft_thread_slots_after_fork_parent(void)
{
    pthread_mutex_unlock(&slots_lock);
}

void
ft_thread_slots_after_fork_child(void)
{
    /* BeforeFork locked it on this very thread: a default mutex unlocks
     * fine in the child (and TSan sees a matching unlock). */
    pthread_mutex_unlock(&slots_lock);
    if (ft_free_threaded) {
        ft_brc_after_fork_child();   /* before dead threads' slots are released */
    }
    ft_thread_slot *next;
    for (ft_thread_slot *slot = slots.next; slot != &slots; slot = next) {
        next = slot->next;
        if (slot != tls_slot) {
            atomic_store_explicit(&slot->last, NULL, memory_order_relaxed);
            slot_decref(slot);   /* its thread's reference: the thread is gone */
        }
    }
}

static void
thread_exit(void *value)
{
    (void)value;
    if (ft_free_threaded) {
        ft_brc_thread_exit();   /* drains the merge queue, attached, then closes it */
    }
    ft_tstate *ts = ft_tls_current;
    if (ts) {
        ft_tstate_detach(ts);
    }
    if (tls_rcu_registered) {
        tls_rcu_registered = false;
        ft_rcu_unregister_thread();
    }
    ft_thread_slot *slot = tls_slot;
    if (slot) {
        tls_slot = NULL;
        slot_decref(slot);
    }
}

static void
thread_exit_key_create(void)
{
    int err = pthread_key_create(&thread_exit_key, thread_exit);
    if (err) {
        ft_fatal_errno("ft_tstate", "pthread_key_create", err);
    }
}

/* Arrange for thread_exit to run when the calling thread exits. */
static void
arm_thread_exit(void)
{
    (void)pthread_once(&thread_exit_once, thread_exit_key_create);
    if (!pthread_getspecific(thread_exit_key)) {
        int err = pthread_setspecific(thread_exit_key, (void *)1);
        if (err) {
            ft_fatal_errno("ft_tstate", "pthread_setspecific", err);
        }
    }
}

void
ft_rcu_ensure_registered(void)
{
    if (ft_likely(tls_rcu_registered)) {
        return;
    }
    arm_thread_exit();
    ft_rcu_register_thread();   /* leaves the thread online */
    ft_rcu_offline();
    tls_rcu_registered = true;
}

ft_thread_slot *
ft_thread_slot_get(void)
{
    ft_thread_slot *slot = tls_slot;
    if (ft_likely(slot)) {
        return slot;
    }
    slot = ft_raw_calloc(sizeof *slot);
    if (!slot) {
        return NULL;
    }
    atomic_init(&slot->refs, 1);
    arm_thread_exit();
    pthread_mutex_lock(&slots_lock);
    slot->prev = &slots;
    slot->next = slots.next;
    slots.next->prev = slot;
    slots.next = slot;
    pthread_mutex_unlock(&slots_lock);
    tls_slot = slot;
    return slot;
}

/* Bind ts to the calling thread (first attach) and make it the thread's
 * `last` state.  Out of memory only means GILState will not reuse it. */
static void
bind_to_thread(ft_tstate *ts)
{
    ft_thread_slot *slot = atomic_load_explicit(&ts->slot, memory_order_relaxed);
    if (!slot) {
        slot = ft_thread_slot_get();
        if (slot) {
            atomic_fetch_add_explicit(&slot->refs, 1, memory_order_relaxed);
            atomic_store_explicit(&ts->slot, slot, memory_order_relaxed);
        }
        atomic_store_explicit(&ts->thread_ident, PyThread_get_thread_ident(),
                              memory_order_relaxed);
    }
    if (slot && slot == tls_slot) {
        atomic_store_explicit(&slot->last, ts, memory_order_relaxed);
    }
    if (ft_free_threaded) {
        ft_brc_attach(ts);   /* after `last` is ts (core/brc.c) */
    }
}

void
ft_tstate_unbind(ft_tstate *ts)
{
    ft_thread_slot *slot = atomic_exchange_explicit(&ts->slot, NULL, memory_order_relaxed);
    if (slot) {
        ft_tstate *expected = ts;
        atomic_compare_exchange_strong_explicit(&slot->last, &expected, NULL,
                                                memory_order_relaxed, memory_order_relaxed);
        slot_decref(slot);
    }
}

/* ---- the registry ------------------------------------------------------------ */

static unsigned long
id_hash(uint64_t id)
{
    id *= 0x9E3779B97F4A7C15ULL;
    return (unsigned long)(id ^ (id >> 31));
}

/* Run with the calling thread online (a QSBR reader), restoring its state.
 * A detached thread that goes online here also holds the fork lock (read
 * side): stop-the-world does not stop detached threads, and a thread that
 * is online at fork() would stall every grace period in the child. */
#define WITH_RCU_ONLINE(body)                       \
    do {                                            \
        bool was_online_ = ft_rcu_is_online();      \
        if (!was_online_) {                         \
            ft_rcu_ensure_registered();             \
            ft_rcu_fork_enter();                    \
            ft_rcu_online();                        \
        }                                           \
        body;                                       \
        if (!was_online_) {                         \
            ft_rcu_offline();                       \
            ft_rcu_fork_exit();                     \
        }                                           \
    } while (0)

static void
registry_add(ft_tstate *ts)
{
    ts->registered = true;   /* before the add: a walker may unlink it at once */
    ft_rcu_publish(ts);
    WITH_RCU_ONLINE(cds_lfht_add(ts->base.interp->threads, id_hash(ts->id), &ts->node));
    /* The add is a full barrier in liburcu; say so in C11 terms too, for the
     * publish-then-check against stop-the-world. */
    atomic_thread_fence(memory_order_seq_cst);
}

void
ft_tstate_unregister(ft_tstate *ts)
{
    if (!ts->registered) {
        return;
    }
    int rc;
    WITH_RCU_ONLINE(rc = cds_lfht_del(ts->base.interp->threads, &ts->node));
    if (rc != 0) {
        fatal("ft_tstate_delete", "thread state missing from its interpreter's list");
    }
    ts->registered = false;
}

static ft_tstate *
from_node(struct cds_lfht_node *node)
{
    if (!node) {
        return NULL;
    }
    ft_tstate *ts = caa_container_of(node, ft_tstate, node);
    ft_rcu_received(ts);
    return ts;
}

ft_tstate *
ft_tstate_first(PyInterpreterState *interp)
{
    struct cds_lfht_iter it;
    cds_lfht_first(interp->threads, &it);
    return from_node(cds_lfht_iter_get_node(&it));
}

ft_tstate *
ft_tstate_next(ft_tstate *ts)
{
    /* Resume the table's own iteration at ts: an iterator is (node, the
     * node's next pointer).  If ts was removed meanwhile, its next pointer
     * carries the removed flag and still leads on into the list, and the
     * nodes it leads to stay allocated until we pass a quiescent state. */
    struct cds_lfht_iter it;
    it.node = &ts->node;
    it.next = __atomic_load_n(&ts->node.next, __ATOMIC_ACQUIRE);
    cds_lfht_next(ts->base.interp->threads, &it);
    return from_node(cds_lfht_iter_get_node(&it));
}

/* ---- stop-the-world ------------------------------------------------------------ */

/* A grant: ATTACHED with the tag of the restart that handed it over (see
 * THE STATE WORD at the top; the bits are in ft_pystate.h). */
#define TS_IS_GRANT(w) (FT_TS_KIND(w) == FT_TS_ATTACHED && FT_TS_TAG(w) != 0)

static void
stw_notify(PyInterpreterState *interp)
{
    atomic_fetch_add_explicit(&interp->stw.wake, 1, memory_order_release);
    ft_parking_lot_unpark_all(&interp->stw.wake);
}

/* ---- statistics (include/cpython/stoptheworld.h) ---- */

/* Single writer (the requester, under the stop mutex): a relaxed load and
 * store per counter, no read-modify-write; readers load each counter
 * relaxed. */
static inline void
stat_add(uint64_t _Atomic *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline void
stat_max(uint64_t _Atomic *c, uint64_t v)
{
    if (v > atomic_load_explicit(c, memory_order_relaxed)) {
        atomic_store_explicit(c, v, memory_order_relaxed);
    }
}

/* Bucket 0: [0, 2) ns; bucket k: [2^k, 2^(k+1)); the last also above. */
static int
hist_bucket(uint64_t ns)
{
    if (ns < 2) {
        return 0;
    }
    int k = 63 - __builtin_clzll(ns);
    return k < PyUnstable_STOP_HIST_BUCKETS - 1 ? k : PyUnstable_STOP_HIST_BUCKETS - 1;
}

static uint64_t
elapsed_ns(int64_t from, int64_t to)
{
    return to > from ? (uint64_t)(to - from) : 0;
}

/* The stop in force ends at `end_ns` (ft_start_the_world, mutex held). */
static void
record_stop(ft_stw *stw, int64_t end_ns)
{
    ft_stw_stats *st = &stw->stats;
    uint64_t to_stop = elapsed_ns(stw->requested_ns, stw->stopped_ns);
    uint64_t stopped = elapsed_ns(stw->stopped_ns, end_ns);
    ft_stw_reason_stats *r = &st->by_reason[stw->reason];
    stat_add(&r->stops, 1);
    stat_add(&r->to_stop_ns_total, to_stop);
    stat_max(&r->to_stop_ns_max, to_stop);
    stat_add(&r->stopped_ns_total, stopped);
    stat_max(&r->stopped_ns_max, stopped);
    stat_add(&st->to_stop_hist[hist_bucket(to_stop)], 1);
    stat_add(&st->stopped_hist[hist_bucket(stopped)], 1);
    atomic_store_explicit(&st->last_reason, stw->reason, memory_order_relaxed);
    atomic_store_explicit(&st->last_to_stop_ns, to_stop, memory_order_relaxed);
    atomic_store_explicit(&st->last_stopped_ns, stopped, memory_order_relaxed);
    atomic_store_explicit(&st->last_threads, stw->threads, memory_order_relaxed);
    stat_add(&st->stops, 1);
}

static void
zero_stats(ft_stw_stats *st)
{
    atomic_store_explicit(&st->stops, 0, memory_order_relaxed);
    for (int i = 0; i < PyUnstable_STOP_NREASONS; i++) {
        ft_stw_reason_stats *r = &st->by_reason[i];
        atomic_store_explicit(&r->stops, 0, memory_order_relaxed);
        atomic_store_explicit(&r->to_stop_ns_total, 0, memory_order_relaxed);
        atomic_store_explicit(&r->to_stop_ns_max, 0, memory_order_relaxed);
        atomic_store_explicit(&r->stopped_ns_total, 0, memory_order_relaxed);
        atomic_store_explicit(&r->stopped_ns_max, 0, memory_order_relaxed);
    }
    for (int i = 0; i < PyUnstable_STOP_HIST_BUCKETS; i++) {
        atomic_store_explicit(&st->to_stop_hist[i], 0, memory_order_relaxed);
        atomic_store_explicit(&st->stopped_hist[i], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&st->last_reason, PyUnstable_STOP_OTHER, memory_order_relaxed);
    atomic_store_explicit(&st->last_to_stop_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&st->last_stopped_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&st->last_threads, 0, memory_order_relaxed);
}

/* ---- stop and start ---- */

static bool must_hang(PyInterpreterState *interp, ft_tstate *ts);

void
ft_stop_the_world(PyInterpreterState *interp, PyUnstable_StopReason reason)
{
    if (!ft_free_threaded) {
        return;   /* the caller holds the GIL: nobody else is attached */
    }
    ft_stw *stw = &interp->stw;
    ft_tstate *me = ft_tls_current;
    if (!ft_mutex_lock_fast(&stw->mutex)) {
        /* Another requester is at work and may be stopping us: wait detached
         * (which suspends our critical sections).  gh-158195: say we are the
         * requester before re-attaching, so that the attach leaves our
         * sections suspended; one of their locks may be held by a thread that
         * is queued behind us on this mutex.  ft_start_the_world resumes
         * them once the mutex is released. */
        if (me != NULL) {
            ft_tstate_detach(me);
        }
        ft_mutex_lock_flags(&stw->mutex, FT_LOCK_DETACH);
        if (me != NULL) {
            if (must_hang(interp, me)) {
                /* Finalizing: the attach below hangs; do not take the
                 * finalizer's own stop down with us. */
                PyMutex_Unlock(&stw->mutex);
                ft_tstate_attach(me, "ft_stop_the_world");
            }
            atomic_store_explicit(&stw->requester, me, memory_order_seq_cst);
            ft_tstate_attach(me, "ft_stop_the_world");
        }
    }
    atomic_store_explicit(&stw->holder, PyThread_get_thread_ident(), memory_order_relaxed);
    stw->reason = (unsigned)reason < PyUnstable_STOP_NREASONS ? (int)reason
                                                              : PyUnstable_STOP_OTHER;
    stw->requested_ns = ft_monotonic_ns();
    uint64_t seq = atomic_fetch_add_explicit(&stw->seq, 1, memory_order_seq_cst) + 1;
    atomic_store_explicit(&stw->requester, me, memory_order_seq_cst);

    bool was_online = ft_rcu_is_online();
    if (!was_online) {
        ft_rcu_ensure_registered();
        ft_rcu_fork_enter();
        ft_rcu_online();
    }
    for (;;) {
        uint32_t wake = atomic_load_explicit(&stw->wake, memory_order_acquire);
        int running = 0;
        uint32_t stopped = 0;
        for (ft_tstate *ts = ft_tstate_first(interp); ts; ts = ft_tstate_next(ts)) {
            if (ts == me) {
                continue;
            }
            uint64_t w = atomic_load_explicit(&ts->state, memory_order_seq_cst);
            for (;;) {
                int kind = FT_TS_KIND(w);
                if (kind == FT_TS_ATTACHED) {   /* granted ones too: their owner runs */
                    atomic_fetch_or_explicit(&ts->breaker, FT_BREAK_PLEASE_STOP,
                                             memory_order_seq_cst);
                    running++;
                    break;
                }
                if (kind == FT_TS_SHUTTING_DOWN) {
                    break;
                }
                if (kind == FT_TS_SUSPENDED && FT_TS_TAG(w) == seq) {
                    stopped++;
                    break;
                }
                /* DETACHED, or a stale suspension: stamp it with this stop
                 * (an owner waiting in attach stays marked waiting). */
                uint64_t to = FT_TS_SUSPENDED_BY(seq) |
                              (kind == FT_TS_SUSPENDED ? (w & FT_TS_WAITING) : 0);
                if (atomic_compare_exchange_weak_explicit(&ts->state, &w, to,
                                                          memory_order_seq_cst,
                                                          memory_order_seq_cst)) {
                    stopped++;
                    break;
                }
            }
        }
        if (running == 0) {
            stw->threads = stopped;
            break;
        }
        /* Those still running answer at their next safe point and wake us;
         * threads that detach on their own do not, hence the 1 ms rescan.
         * Offline while parked: we hold no pointer into the list across
         * rounds. */
        ft_rcu_offline();
        (void)ft_parking_lot_park(&stw->wake, &wake, sizeof wake, FT_NS_PER_MS, NULL, 0);
        ft_rcu_online();
    }
    if (!was_online) {
        ft_rcu_offline();
        ft_rcu_fork_exit();
    }
    stw->stopped_ns = ft_monotonic_ns();
}

void
ft_start_the_world(PyInterpreterState *interp)
{
    if (!ft_free_threaded) {
        return;
    }
    ft_stw *stw = &interp->stw;
    record_stop(stw, ft_monotonic_ns());
    uint64_t seq = atomic_fetch_add_explicit(&stw->seq, 1, memory_order_seq_cst);   /* even: over */
    bool was_online = ft_rcu_is_online();
    if (!was_online) {
        ft_rcu_ensure_registered();
        ft_rcu_fork_enter();
        ft_rcu_online();
    }
    for (ft_tstate *ts = ft_tstate_first(interp); ts; ts = ft_tstate_next(ts)) {
        atomic_fetch_and_explicit(&ts->breaker, ~(uint32_t)FT_BREAK_PLEASE_STOP,
                                  memory_order_relaxed);
        uint64_t w = atomic_load_explicit(&ts->state, memory_order_acquire);
        while (FT_TS_KIND(w) == FT_TS_SUSPENDED) {
            /* The forward-progress guarantee: an owner waiting in attach is
             * handed the state ATTACHED (granted), so no later stop can
             * suspend it before it has run to its next safe point. */
            uint64_t to = (w & FT_TS_WAITING) ? FT_TS_GRANTED_BY(seq) : FT_TS_DETACHED;
            if (atomic_compare_exchange_weak_explicit(&ts->state, &w, to,
                                                      memory_order_release,
                                                      memory_order_acquire)) {
                ft_parking_lot_unpark_all(&ts->state);
                break;
            }
        }
    }
    if (!was_online) {
        ft_rcu_offline();
        ft_rcu_fork_exit();
    }
    atomic_store_explicit(&stw->requester, NULL, memory_order_release);
    atomic_store_explicit(&stw->holder, 0, memory_order_relaxed);
    PyMutex_Unlock(&stw->mutex);
    /* Sections suspended while we were the requester (waiting for the stop
     * mutex in ft_stop_the_world, or detaching during the stop) were left
     * suspended (core/critical_section.c): re-lock the innermost now that
     * other threads run again (may wait, detached). */
    ft_tstate *me = ft_tls_current;
    if (me != NULL && me->critical_section != 0) {
        ft_critical_section_resume(me);
    }
}

/* ---- every interpreter at once ---- */

/* Global stops are serialised by all_mutex, taken before any interpreter's
 * stop mutex, never the other way round (PyOS_BeforeFork takes only the main
 * interpreter's).  The list is followed under ft_rt.interp_lock, taken for a
 * moment after the previous interpreter's stop mutex: the same order as
 * PyOS_BeforeFork's.  all_stopped chains the interpreters the global stop in
 * force stopped (stw.all_next), so that the start restarts exactly those
 * even if the list changed meanwhile.  (With sub-interpreters, deleting one
 * will have to stop its world first, or this walk may follow a freed one.) */
static PyMutex all_mutex;
static unsigned long _Atomic all_holder;
static PyInterpreterState *all_stopped;
static pthread_once_t all_atfork_once = PTHREAD_ONCE_INIT;

/* A fork child whose parent had a global stop waiting (its requester held
 * all_mutex, queued behind PyOS_BeforeFork's stop): that thread does not
 * exist in the child, so the mutex is free there. */
static void
all_after_fork_child(void)
{
    if (atomic_load_explicit(&all_holder, memory_order_relaxed) != PyThread_get_thread_ident()) {
        ft_mutex_after_fork(&all_mutex);
        atomic_store_explicit(&all_holder, 0, memory_order_relaxed);
        all_stopped = NULL;
    }
}

static void
all_atfork_init(void)
{
    int err = pthread_atfork(NULL, NULL, all_after_fork_child);
    if (err) {
        ft_fatal_errno("ft_stop_the_world_all", "pthread_atfork", err);
    }
}

static PyInterpreterState *
interp_after(PyInterpreterState *prev)
{
    ft_mutex_lock_flags(&ft_rt.interp_lock, FT_LOCK_DONT_DETACH);   /* held briefly */
    PyInterpreterState *next = prev == NULL
        ? atomic_load_explicit(&ft_rt.interp_head, memory_order_acquire)
        : prev->next;
    PyMutex_Unlock(&ft_rt.interp_lock);
    return next;
}

void
ft_stop_the_world_all(PyUnstable_StopReason reason)
{
    if (!ft_free_threaded) {
        return;
    }
    (void)pthread_once(&all_atfork_once, all_atfork_init);
    PyMutex_Lock(&all_mutex);   /* detaches if it has to wait: other stops may need us */
    atomic_store_explicit(&all_holder, PyThread_get_thread_ident(), memory_order_relaxed);
    PyInterpreterState **tail = &all_stopped;
    for (PyInterpreterState *interp = interp_after(NULL); interp; interp = interp_after(interp)) {
        ft_stop_the_world(interp, reason);
        interp->stw.all_next = NULL;
        *tail = interp;
        tail = &interp->stw.all_next;
    }
}

void
ft_start_the_world_all(void)
{
    if (!ft_free_threaded) {
        return;
    }
    PyInterpreterState *interp = all_stopped;
    all_stopped = NULL;
    while (interp) {
        PyInterpreterState *next = interp->stw.all_next;
        ft_start_the_world(interp);
        interp = next;
    }
    atomic_store_explicit(&all_holder, 0, memory_order_relaxed);
    PyMutex_Unlock(&all_mutex);
}

/* ---- attach / detach ---------------------------------------------------------- */

/* The attached thread ts sees stop `seq` requested: step aside.  Every
 * caller goes straight on to attach ts again, so the suspension is marked
 * WAITING at once: the restart then hands the state back ATTACHED. */
static void
suspend_self(ft_tstate *ts, uint64_t seq)
{
    PyInterpreterState *interp = ts->base.interp;
    atomic_store_explicit(&ts->state, FT_TS_SUSPENDED_BY(seq) | FT_TS_WAITING,
                          memory_order_release);
    stw_notify(interp);
}

static bool
must_hang(PyInterpreterState *interp, ft_tstate *ts)
{
    ft_tstate *fin = atomic_load_explicit(&interp->finalizing, memory_order_acquire);
    return fin != NULL && fin != ts;
}

/* attach_slow's way into ATTACHED from the word *w (DETACHED, or a
 * grant): online first, because the CAS is the barrier QSBR needs after
 * the counter store (ft_rcu.h), so the round trip pays for one barrier
 * instead of two.  False (offline again, *w reloaded) if the word moved. */
static bool
online_and_take(ft_tstate *ts, uint64_t *w)
{
    ft_rcu_online_store();
    if (ft_unlikely(!atomic_compare_exchange_strong_explicit(&ts->state, w, FT_TS_ATTACHED,
                                                             memory_order_seq_cst,
                                                             memory_order_relaxed))) {
        ft_rcu_offline();
        return false;
    }
    if (!ft_rmw_is_full_barrier) {
        cmm_smp_mb();
    }
    return true;
}

/* Everything but the common case of attach().  errno is kept: a caller
 * reads it after Py_END_ALLOW_THREADS, and parking, the GIL and liburcu's
 * wake-ups make system calls.  True if a restart granted the state (see the
 * forward-progress guarantee at the top). */
static FT_NOINLINE bool
attach_slow(ft_tstate *ts, const char *func)
{
    if (ft_unlikely(ft_tls_current != NULL)) {
        fatal(func, ft_tls_current == ts ? "the thread state is already attached"
                                         : "this thread already has an attached thread state");
    }
    PyInterpreterState *interp = ts->base.interp;
    int saved_errno = errno;
    ft_rcu_ensure_registered();
    if (!ft_free_threaded) {
        ft_gil_take(&ft_rt.gil, ts);
    }
    bool granted = false;
    for (;;) {
        uint64_t w = atomic_load_explicit(&ts->state, memory_order_acquire);
        switch (FT_TS_KIND(w)) {
        case FT_TS_DETACHED:
            if (ft_unlikely(must_hang(interp, ts))) {
                /* Finalizing: shut the state down ourselves (the finalizer's
                 * walk may not reach it); whoever's CAS wins unlinks it, and
                 * the SHUTTING_DOWN branch then hangs and frees it. */
                if (atomic_compare_exchange_strong_explicit(&ts->state, &w,
                                                            FT_TS_SHUTTING_DOWN,
                                                            memory_order_acq_rel,
                                                            memory_order_relaxed)) {
                    ft_tstate_unregister(ts);
                    ts->cleared = true;
                }
                continue;
            }
            if (!online_and_take(ts, &w)) {
                continue;
            }
            if (ft_free_threaded) {
                uint64_t seq = atomic_load_explicit(&interp->stw.seq, memory_order_seq_cst);
                if (ft_unlikely(seq & 1) &&
                    atomic_load_explicit(&interp->stw.requester, memory_order_relaxed) != ts) {
                    ft_rcu_offline();
                    suspend_self(ts, seq);
                    continue;
                }
            }
            break;
        case FT_TS_ATTACHED:
            if (!TS_IS_GRANT(w)) {
                fatal(func, "the thread state is attached to another thread");
            }
            /* A restart handed us the state while we waited (the tag is
             * its stop).  Finalizing: give it back and go the DETACHED way,
             * which hangs; a stop waiting for us is told. */
            if (ft_unlikely(must_hang(interp, ts))) {
                if (atomic_compare_exchange_strong_explicit(&ts->state, &w, FT_TS_DETACHED,
                                                            memory_order_seq_cst,
                                                            memory_order_relaxed)) {
                    stw_notify(interp);
                }
                continue;
            }
            /* Claim it: online, then normalise the word by CAS (of two
             * threads misusing one state, only one wins).  No stw.seq
             * check: a stop requested since the restart saw us ATTACHED
             * and waits for our next safe point. */
            if (!online_and_take(ts, &w)) {
                continue;
            }
            granted = true;
            break;
        case FT_TS_SUSPENDED:
            if (atomic_load_explicit(&interp->stw.seq, memory_order_seq_cst) ==
                FT_TS_TAG(w)) {
                /* Mark the suspension waiting, then wait for the restart,
                 * which hands the state over instead of detaching it. */
                if (!(w & FT_TS_WAITING)) {
                    uint64_t marked = w | FT_TS_WAITING;
                    if (!atomic_compare_exchange_strong_explicit(&ts->state, &w, marked,
                                                                 memory_order_relaxed,
                                                                 memory_order_relaxed)) {
                        continue;
                    }
                    w = marked;
                }
                (void)ft_parking_lot_park(&ts->state, &w, sizeof w, -1, NULL, 0);
            }
            else {
                /* Stale: its stop is over.  Clear it ourselves. */
                atomic_compare_exchange_strong_explicit(&ts->state, &w, FT_TS_DETACHED,
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed);
            }
            continue;
        default:   /* SHUTTING_DOWN: removed by finalization */
            if (!ft_free_threaded) {
                ft_gil_drop(&ft_rt.gil, NULL);
            }
            ft_hang_thread(ts);
        }
        break;   /* attached */
    }
    ft_tls_current = ts;
    bind_to_thread(ts);
    if (ft_free_threaded && ts->critical_section != 0) {
        ft_critical_section_resume(ts);   /* if it has to wait it detaches: no longer granted */
    }
    errno = saved_errno;
    return granted;
}

/* The common case: free-threaded, the thread registered with liburcu, the
 * state DETACHED, no finalization and no stop requested.  One barrier (the
 * CAS) and no system call; anything else goes to attach_slow, which starts
 * over from the state word.  True if a restart granted the state. */
static inline bool
attach(ft_tstate *ts, const char *func)
{
    PyInterpreterState *interp = ts->base.interp;
    if (ft_free_threaded && ft_likely(ft_tls_current == NULL && tls_rcu_registered &&
                                      atomic_load_explicit(&interp->finalizing,
                                                           memory_order_relaxed) == NULL)) {
        uint64_t w = FT_TS_DETACHED;
        ft_rcu_online_store();   /* the CAS is the barrier after it (ft_rcu.h) */
        if (ft_likely(atomic_compare_exchange_strong_explicit(&ts->state, &w, FT_TS_ATTACHED,
                                                              memory_order_seq_cst,
                                                              memory_order_relaxed))) {
            if (!ft_rmw_is_full_barrier) {
                cmm_smp_mb();
            }
            uint64_t seq = atomic_load_explicit(&interp->stw.seq, memory_order_seq_cst);
            if (ft_likely(!(seq & 1)) ||
                atomic_load_explicit(&interp->stw.requester, memory_order_relaxed) == ts) {
                ft_tls_current = ts;
                bind_to_thread(ts);
                if (ts->critical_section != 0) {
                    ft_critical_section_resume(ts);
                }
                return false;
            }
            /* A stop is requested: step aside, then wait in the slow path. */
            int saved_errno = errno;
            ft_rcu_offline();
            suspend_self(ts, seq);
            errno = saved_errno;
        }
        else {
            int saved_errno = errno;
            ft_rcu_offline();
            errno = saved_errno;
        }
    }
    return attach_slow(ts, func);
}

bool
ft_tstate_attach(ft_tstate *ts, const char *func)
{
    return attach(ts, func);
}

void
ft_tstate_detach(ft_tstate *ts)
{
    if (ft_free_threaded && ts->critical_section != 0) {
        ft_critical_section_suspend_all(ts);
    }
    ft_rcu_offline_store();
    ft_tls_current = NULL;
    atomic_store_explicit(&ts->state, FT_TS_DETACHED, memory_order_release);
    /* One full barrier for two store->load pairs: the reader counter before
     * liburcu's `waiting` flag, and DETACHED before the breaker (a requester
     * sets PLEASE_STOP, then reads the state word). */
    cmm_smp_mb();
    ft_rcu_offline_wake();
    if (ft_free_threaded) {
        if (atomic_load_explicit(&ts->breaker, memory_order_relaxed) & FT_BREAK_PLEASE_STOP) {
            stw_notify(ts->base.interp);
        }
    }
    else {
        ft_gil_drop(&ft_rt.gil, ts);
    }
}

void
ft_safe_point_slow(ft_tstate *ts)
{
    uint32_t bits = atomic_load_explicit(&ts->breaker, memory_order_acquire);
    if (!(bits & FT_BREAK_REQUESTS)) {
        return;
    }
    if (ft_free_threaded && (bits & FT_BREAK_MERGE)) {
        atomic_fetch_and_explicit(&ts->breaker, ~(uint32_t)FT_BREAK_MERGE,
                                  memory_order_acq_rel);
        ft_brc_merge_queued(ts);   /* may run destructors */
        bits = atomic_load_explicit(&ts->breaker, memory_order_acquire);
        if (!(bits & FT_BREAK_REQUESTS)) {
            return;
        }
    }
    if (ft_free_threaded) {
        atomic_fetch_and_explicit(&ts->breaker, ~(uint32_t)FT_BREAK_PLEASE_STOP,
                                  memory_order_relaxed);
        PyInterpreterState *interp = ts->base.interp;
        uint64_t seq = atomic_load_explicit(&interp->stw.seq, memory_order_seq_cst);
        if (!(seq & 1)) {
            return;   /* the stop already ended (it cleared our bit too) */
        }
        if (ts->critical_section != 0) {
            ft_critical_section_suspend_all(ts);
        }
        ft_rcu_offline();
        ft_tls_current = NULL;
        suspend_self(ts, seq);
    }
    else {
        /* GIL drop request: detach (ft_gil_drop waits for the hand-off). */
        ft_tstate_detach(ts);
    }
    ft_tstate_attach(ts, "safe point");
}

void
ft_hang_thread(ft_tstate *ts)
{
    if (ft_rcu_is_online()) {
        ft_rcu_offline();
    }
    if (ts) {
        ft_tstate_unbind(ts);
        if (atomic_fetch_sub_explicit(&ts->refs, 1, memory_order_acq_rel) == 1) {
            ft_tstate_free_later(ts);
        }
    }
    for (;;) {
        pause();
    }
}

/* ---- creation and deletion ------------------------------------------------------ */

static void
tstate_free_cb(ft_rcu_head *head)
{
    FT_RCU_CALLBACK_BEGIN();
    ft_tstate *ts = caa_container_of(head, ft_tstate, rcu);
    ft_gc_heap_release(ts);   /* states freed without a clear (fork child) */
    ft_raw_free(ts, sizeof *ts);
}

void
ft_tstate_free_later(ft_tstate *ts)
{
    ft_rcu_ensure_registered();
    ft_rcu_call(&ts->rcu, tstate_free_cb);
}

ft_tstate *
ft_tstate_new(PyInterpreterState *interp, ft_whence whence)
{
    ft_tstate *ts = ft_raw_calloc(sizeof *ts);
    if (!ts) {
        return NULL;
    }
    ts->base.interp = interp;
    ts->id = atomic_fetch_add_explicit(&ft_rt.next_tstate_id, 1, memory_order_relaxed) + 1;
    ts->whence = (uint8_t)whence;
    ts->gilstate_counter = whence == FT_WHENCE_GILSTATE ? 0 : 1;
    atomic_init(&ts->state, FT_TS_DETACHED);
    atomic_init(&ts->refs, 1);
    cds_lfht_node_init(&ts->node);
    registry_add(ts);
    /* Registering while the interpreter finalizes: the finalizer's walk may
     * have missed us (publish-then-check: it marks `finalizing` before it
     * walks), so shut ourselves down; if its walk saw us, the CAS decides
     * who unlinks.  Attaching the state then hangs, as it must. */
    if (ft_unlikely(must_hang(interp, NULL))) {
        uint64_t w = FT_TS_DETACHED;
        if (atomic_compare_exchange_strong_explicit(&ts->state, &w, FT_TS_SHUTTING_DOWN,
                                                    memory_order_seq_cst,
                                                    memory_order_relaxed)) {
            ft_tstate_unregister(ts);
            ts->cleared = true;
        }
        return ts;
    }
    if (ft_free_threaded) {
        /* Registering during a stop: suspend ourselves (the requester's walk
         * may have missed us).  If the stop ended meanwhile, undo it; a newer
         * stop's walk re-stamps the tag and our undo then fails, rightly. */
        uint64_t seq = atomic_load_explicit(&interp->stw.seq, memory_order_seq_cst);
        if (seq & 1) {
            uint64_t w = FT_TS_DETACHED;
            if (atomic_compare_exchange_strong_explicit(&ts->state, &w, FT_TS_SUSPENDED_BY(seq),
                                                        memory_order_seq_cst,
                                                        memory_order_relaxed) &&
                atomic_load_explicit(&interp->stw.seq, memory_order_seq_cst) != seq) {
                w = FT_TS_SUSPENDED_BY(seq);
                atomic_compare_exchange_strong_explicit(&ts->state, &w, FT_TS_DETACHED,
                                                        memory_order_seq_cst,
                                                        memory_order_relaxed);
            }
        }
    }
    return ts;
}

void
ft_tstate_clear(ft_tstate *ts)
{
    ts->cleared = true;
    ts->ensure_counter = 0;
    Py_CLEAR(ts->dict);   /* may run destructors: before the error indicator goes */
    ft_errors_clear_tstate(ts);
    Py_XDECREF(atomic_exchange_explicit(&ts->async_exc, NULL, memory_order_acq_rel));
    ft_gc_heap_release(ts);   /* last: the lines above may free GC objects */
}

void
ft_tstate_delete(ft_tstate *ts, const char *func)
{
    /* Claim the state by moving it to SHUTTING_DOWN: the finalizer may be
     * shutting down this very state while its (detached) owner deletes it,
     * and only the one whose CAS moved it there unlinks it.  A state that is
     * already SHUTTING_DOWN was unlinked by finalization. */
    uint64_t w = atomic_load_explicit(&ts->state, memory_order_acquire);
    bool claimed = false;
    while (FT_TS_KIND(w) != FT_TS_SHUTTING_DOWN) {
        if (FT_TS_KIND(w) == FT_TS_ATTACHED) {
            fatal(func, ts == ft_tls_current ? "the thread state is still attached (current)"
                                             : "the thread state is attached to another thread");
        }
        if (atomic_compare_exchange_weak_explicit(&ts->state, &w, FT_TS_SHUTTING_DOWN,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire)) {
            claimed = true;
            break;
        }
    }
    if (claimed) {
        if (!ts->cleared) {
            ft_tstate_clear(ts);
        }
        ft_tstate_unregister(ts);
    }
    ft_tstate_unbind(ts);
    if (atomic_fetch_sub_explicit(&ts->refs, 1, memory_order_acq_rel) == 1) {
        ft_tstate_free_later(ts);
    }
}

/* ---- hooks for sync/ ------------------------------------------------------------- */

static void *
park_detach(void)
{
    ft_tstate *ts = ft_tls_current;
    if (ts) {
        ft_tstate_detach(ts);
    }
    return ts;
}

static void
park_reattach(void *token)
{
    ft_tstate_attach(token, "PyMutex_Lock");
}

static const ft_detach_hooks park_hooks = { park_detach, park_reattach };

static bool
holds_gil(void)
{
    return ft_tls_current != NULL;
}

void
ft_tstate_runtime_init(void)
{
    ft_parking_lot_set_detach_hooks(&park_hooks);
    if (!ft_free_threaded) {
        ft_mutex_set_gil_probe(holds_gil);
    }
}

/* ---- public API -------------------------------------------------------------------- */

PyThreadState *
PyThreadState_New(PyInterpreterState *interp)
{
    if (!interp) {
        fatal("PyThreadState_New", "interp is NULL");
    }
    return (PyThreadState *)ft_tstate_new(interp, FT_WHENCE_USER);
}

void
PyThreadState_Clear(PyThreadState *tstate)
{
    if (!tstate) {
        fatal("PyThreadState_Clear", "tstate is NULL");
    }
    ft_tstate *ts = ft_ts(tstate);
    uint64_t w = atomic_load_explicit(&ts->state, memory_order_acquire);
    if (FT_TS_KIND(w) == FT_TS_ATTACHED && ts != ft_tls_current) {
        fatal("PyThreadState_Clear", "the thread state is attached to another thread");
    }
    if (ft_free_threaded && ts->critical_section != 0) {
        /* the sections live in frames of the state's thread: end them first */
        fatal("PyThreadState_Clear", "the thread state has critical sections open");
    }
    ft_tstate_clear(ts);
}

void
PyThreadState_Delete(PyThreadState *tstate)
{
    if (!tstate) {
        fatal("PyThreadState_Delete", "tstate is NULL");
    }
    ft_tstate_delete(ft_ts(tstate), "PyThreadState_Delete");
}

void
PyThreadState_DeleteCurrent(void)
{
    ft_tstate *ts = ft_tls_current;
    if (!ts) {
        fatal("PyThreadState_DeleteCurrent", "no thread state is attached");
    }
    if (!ts->cleared) {
        ft_tstate_clear(ts);
    }
    ft_tstate_detach(ts);
    ft_tstate_delete(ts, "PyThreadState_DeleteCurrent");
}

PyThreadState *
PyThreadState_Get(void)
{
    ft_tstate *ts = ft_tls_current;
    if (!ts) {
        fatal("PyThreadState_Get", "the function must be called with an attached thread "
                                   "state, but none is attached");
    }
    return &ts->base;
}

PyThreadState *
PyThreadState_GetUnchecked(void)
{
    return (PyThreadState *)ft_tls_current;
}

PyObject *
PyThreadState_GetDict(void)
{
    ft_tstate *ts = ft_tls_current;
    if (!ts) {
        return NULL;
    }
    if (!ts->dict) {
        ts->dict = PyDict_New();   /* only the owner thread touches ts->dict */
        if (!ts->dict) {
            PyErr_Clear();   /* CPython: NULL without an exception */
        }
    }
    return ts->dict;
}

PyThreadState *
PyThreadState_Swap(PyThreadState *tstate)
{
    ft_tstate *old = ft_tls_current;
    if (old && &old->base == tstate) {
        return tstate;
    }
    if (old) {
        ft_tstate_detach(old);
    }
    if (tstate) {
        ft_tstate_attach(ft_ts(tstate), "PyThreadState_Swap");
    }
    return (PyThreadState *)old;
}

PyInterpreterState *
PyThreadState_GetInterpreter(PyThreadState *tstate)
{
    if (!tstate) {
        fatal("PyThreadState_GetInterpreter", "tstate is NULL");
    }
    return tstate->interp;
}

uint64_t
PyThreadState_GetID(PyThreadState *tstate)
{
    if (!tstate) {
        fatal("PyThreadState_GetID", "tstate is NULL");
    }
    return ft_ts(tstate)->id;
}

PyThreadState *
PyInterpreterState_ThreadHead(PyInterpreterState *interp)
{
    if (!interp) {
        fatal("PyInterpreterState_ThreadHead", "interp is NULL");
    }
    if (!interp->threads) {
        return NULL;
    }
    ft_tstate *ts;
    WITH_RCU_ONLINE(ts = ft_tstate_first(interp));
    return (PyThreadState *)ts;
}

PyThreadState *
PyThreadState_Next(PyThreadState *tstate)
{
    if (!tstate) {
        return NULL;
    }
    ft_tstate *ts;
    WITH_RCU_ONLINE(ts = ft_tstate_next(ft_ts(tstate)));
    return (PyThreadState *)ts;
}

/* Any attached thread, on every state of its interpreter whose OS thread
 * is `id`: the exchange of async_exc is the only write a walker makes
 * besides breaker bits and state CASes (see "What a walker may do" at the
 * top).  A state deleted while this runs may keep `exc` alive (it is
 * dropped by ft_tstate_clear, which may already have run). */
int
PyThreadState_SetAsyncExc(unsigned long id, PyObject *exc)
{
    ft_tstate *me = ft_tls_current;
    if (!me) {
        fatal("PyThreadState_SetAsyncExc", "the function must be called with an attached "
                                           "thread state, but none is attached");
    }
    int count = 0;
    for (ft_tstate *ts = ft_tstate_first(me->base.interp); ts; ts = ft_tstate_next(ts)) {
        if (atomic_load_explicit(&ts->thread_ident, memory_order_relaxed) != id) {
            continue;
        }
        PyObject *old = atomic_exchange_explicit(&ts->async_exc, Py_XNewRef(exc),
                                                 memory_order_acq_rel);
        Py_XDECREF(old);
        count++;
    }
    return count;
}

struct _frame *
PyThreadState_GetFrame(PyThreadState *tstate)
{
    if (!tstate) {
        fatal("PyThreadState_GetFrame", "tstate is NULL");
    }
    return NULL;   /* no evaluator: no Python frame is ever executing */
}

PyThreadState *
PyEval_SaveThread(void)
{
    ft_tstate *ts = ft_tls_current;
    if (!ts) {
        fatal("PyEval_SaveThread", "the function must be called with an attached thread "
                                   "state, but none is attached");
    }
    ft_tstate_detach(ts);
    return &ts->base;
}

void
PyEval_RestoreThread(PyThreadState *tstate)
{
    if (!tstate) {
        fatal("PyEval_RestoreThread", "tstate is NULL");
    }
    ft_tstate *ts = ft_ts(tstate);
    /* Granted by a restart: the caller's code runs before any safe point
     * (the forward-progress guarantee; requests wait for the next one). */
    if (!attach(ts, "PyEval_RestoreThread")) {
        ft_safe_point(ts);
    }
}

void
PyEval_AcquireThread(PyThreadState *tstate)
{
    if (!tstate) {
        fatal("PyEval_AcquireThread", "tstate is NULL");
    }
    ft_tstate *ts = ft_ts(tstate);
    if (!attach(ts, "PyEval_AcquireThread")) {   /* as PyEval_RestoreThread */
        ft_safe_point(ts);
    }
}

void
PyEval_ReleaseThread(PyThreadState *tstate)
{
    if (!tstate) {
        fatal("PyEval_ReleaseThread", "tstate is NULL");
    }
    if (ft_ts(tstate) != ft_tls_current) {
        fatal("PyEval_ReleaseThread", "tstate is not the attached thread state");
    }
    ft_tstate_detach(ft_ts(tstate));
}

/* ---- stop-the-world statistics (include/cpython/stoptheworld.h) --------------------- */

int
PyUnstable_StopTheWorld_GetStats(PyInterpreterState *interp, PyUnstable_StopTheWorldStats *out)
{
    if (interp == NULL || out == NULL) {
        if (ft_tls_current != NULL) {
            PyErr_SetString(PyExc_ValueError,
                            interp == NULL ? "PyUnstable_StopTheWorld_GetStats: interp is NULL"
                                           : "PyUnstable_StopTheWorld_GetStats: out is NULL");
        }
        return -1;
    }
    const ft_stw_stats *st = &interp->stw.stats;
    memset(out, 0, sizeof *out);
    out->stops = atomic_load_explicit(&st->stops, memory_order_relaxed);
    for (int i = 0; i < PyUnstable_STOP_NREASONS; i++) {
        const ft_stw_reason_stats *r = &st->by_reason[i];
        PyUnstable_StopReasonStats *o = &out->by_reason[i];
        o->stops = atomic_load_explicit(&r->stops, memory_order_relaxed);
        o->to_stop_ns_total = atomic_load_explicit(&r->to_stop_ns_total, memory_order_relaxed);
        o->to_stop_ns_max = atomic_load_explicit(&r->to_stop_ns_max, memory_order_relaxed);
        o->stopped_ns_total = atomic_load_explicit(&r->stopped_ns_total, memory_order_relaxed);
        o->stopped_ns_max = atomic_load_explicit(&r->stopped_ns_max, memory_order_relaxed);
    }
    for (int i = 0; i < PyUnstable_STOP_HIST_BUCKETS; i++) {
        out->to_stop_hist[i] = atomic_load_explicit(&st->to_stop_hist[i], memory_order_relaxed);
        out->stopped_hist[i] = atomic_load_explicit(&st->stopped_hist[i], memory_order_relaxed);
    }
    out->last_reason =
        (PyUnstable_StopReason)atomic_load_explicit(&st->last_reason, memory_order_relaxed);
    out->last_to_stop_ns = atomic_load_explicit(&st->last_to_stop_ns, memory_order_relaxed);
    out->last_stopped_ns = atomic_load_explicit(&st->last_stopped_ns, memory_order_relaxed);
    out->last_threads = atomic_load_explicit(&st->last_threads, memory_order_relaxed);
    return 0;
}

/* Under the stop mutex, so that a stop in progress is recorded whole, either
 * before the reset or after it.  The caller may be the requester of the stop
 * in force (it holds the mutex already), or attached: then it waits for the
 * mutex detached, as ft_stop_the_world does, since the holder may be
 * stopping it, and it re-attaches only after letting the mutex go. */
void
PyUnstable_StopTheWorld_ResetStats(PyInterpreterState *interp)
{
    if (interp == NULL) {
        return;
    }
    ft_stw *stw = &interp->stw;
    if (!ft_free_threaded) {
        zero_stats(&stw->stats);   /* nobody writes them: stops are no-ops */
        return;
    }
    if ((atomic_load_explicit(&stw->seq, memory_order_acquire) & 1) &&
        atomic_load_explicit(&stw->holder, memory_order_relaxed) == PyThread_get_thread_ident()) {
        zero_stats(&stw->stats);   /* our own stop: we hold the mutex */
        return;
    }
    ft_tstate *me = NULL;
    if (!ft_mutex_lock_fast(&stw->mutex)) {
        me = ft_tls_current;
        if (me != NULL) {
            ft_tstate_detach(me);
        }
        ft_mutex_lock_flags(&stw->mutex, FT_LOCK_DONT_DETACH);
    }
    zero_stats(&stw->stats);
    PyMutex_Unlock(&stw->mutex);
    if (me != NULL) {
        ft_tstate_attach(me, "PyUnstable_StopTheWorld_ResetStats");
    }
}

const char *
PyUnstable_StopTheWorld_ReasonName(int reason)
{
    static const char *const names[PyUnstable_STOP_NREASONS] = {
        [PyUnstable_STOP_OTHER] = "other",
        [PyUnstable_STOP_GC] = "gc",
        [PyUnstable_STOP_FORK] = "fork",
        [PyUnstable_STOP_FINALIZE] = "finalize",
        [PyUnstable_STOP_REFCOUNT] = "refcount",
    };
    return reason >= 0 && reason < PyUnstable_STOP_NREASONS ? names[reason] : NULL;
}

/* The smallest bucket whose cumulative count reaches ceil(p% of the total)
 * (at least 1 sample); its exclusive upper bound 2^(k+1) ns, or UINT64_MAX
 * for the last bucket, which has none.  p is clamped to (0, 100]: p <= 0
 * (or NaN) gives the lowest non-empty bucket. */
uint64_t
PyUnstable_StopTheWorld_Percentile(const uint64_t *hist, double p)
{
    if (hist == NULL) {
        return 0;
    }
    uint64_t total = 0;
    for (int k = 0; k < PyUnstable_STOP_HIST_BUCKETS; k++) {
        total += hist[k];
    }
    if (total == 0) {
        return 0;
    }
    if (!(p > 0)) {
        p = 0;
    }
    if (p > 100) {
        p = 100;
    }
    double want = p * (double)total / 100.0;   /* exact for integral p and total < 2^53 / 100 */
    uint64_t rank = want >= (double)total ? total : (uint64_t)want;
    if ((double)rank < want) {
        rank++;   /* ceil */
    }
    if (rank == 0) {
        rank = 1;
    }
    uint64_t seen = 0;
    for (int k = 0; k < PyUnstable_STOP_HIST_BUCKETS; k++) {
        seen += hist[k];
        if (seen >= rank) {
            return k == PyUnstable_STOP_HIST_BUCKETS - 1 ? UINT64_MAX : (uint64_t)2 << k;
        }
    }
    return UINT64_MAX;   /* not reached */
}
