/* fork(): PyOS_BeforeFork, PyOS_AfterFork_Parent, PyOS_AfterFork_Child.
 *
 * Only the forking thread exists in the child, so nothing another thread
 * held at the moment of fork() may be needed there.  The protocol:
 *
 *   BeforeFork (parent, forking thread)
 *     1. stop the world (free-threaded): every other thread state is
 *        SUSPENDED or DETACHED, so no other thread is inside the runtime
 *        attached, and every other liburcu reader is offline (a thread that
 *        is online at the fork would stall every grace period in the child);
 *     2. take the runtime's internal locks (interpreter list, pending calls);
 *     3. go offline and quiesce liburcu (ft_rcu_before_fork: the call_rcu
 *        worker pauses, and no thread is inside liburcu's registry code).
 *   AfterFork_Parent: undo 3, 2, 1 in reverse.
 *   AfterFork_Child:
 *     1. reset sync/ first, since every lock above it parks there: the
 *        parking lot, then each runtime lock, then the TSS-key lock;
 *     2. liburcu's child hook (restarts call_rcu);
 *     3. the GIL: held by the forking thread if it is attached, else free;
 *     4. every other thread state is unlinked and freed (their threads do not
 *        exist here), the stop-the-world ends, and the forking thread becomes
 *        the main thread (it may finalize: its state becomes the initial one).
 *   A thread forked without BeforeFork (raw fork()) may inherit locks held by
 *   threads that no longer exist; as in CPython, that is not supported.
 */
#include "ft_alloc.h"
#include "ft_parking_lot.h"
#include "ft_pystate.h"

/* Per forking thread: two threads may fork at once (BeforeFork serialises
 * them on the stop-the-world and runtime locks), and the child inherits the
 * forking thread's copy. */
static _Thread_local struct {
    bool stopped;      /* BeforeFork stopped the main interpreter's world */
    bool was_online;   /* the forking thread was an online liburcu reader */
} fork_state;

void
PyOS_BeforeFork(void)
{
    fork_state.stopped = false;
    if (atomic_load_explicit(&ft_rt.initialized, memory_order_acquire)) {
        ft_stop_the_world(atomic_load_explicit(&ft_rt.main, memory_order_acquire),
                          PyUnstable_STOP_FORK);
        fork_state.stopped = true;
    }
    ft_mutex_lock_flags(&ft_rt.interp_lock, FT_LOCK_DONT_DETACH);
    ft_mutex_lock_flags(&ft_rt.pending_lock, FT_LOCK_DONT_DETACH);
    fork_state.was_online = ft_rcu_is_online();
    if (fork_state.was_online) {
        ft_rcu_offline();
    }
    ft_thread_slots_before_fork();
    ft_rcu_before_fork();
    ft_gc_heaps_before_fork();   /* after liburcu: its worker may need the lock */
}

void
PyOS_AfterFork_Parent(void)
{
    ft_gc_heaps_after_fork_parent();
    ft_rcu_after_fork_parent();
    ft_thread_slots_after_fork_parent();
    if (fork_state.was_online) {
        ft_rcu_online();
    }
    PyMutex_Unlock(&ft_rt.pending_lock);
    PyMutex_Unlock(&ft_rt.interp_lock);
    if (fork_state.stopped) {
        ft_start_the_world(atomic_load_explicit(&ft_rt.main, memory_order_acquire));
    }
}

/* Free a dead thread's state outright: no other thread exists to walk the
 * list, and the thread it belonged to is gone. */
static void
drop_dead_state(ft_tstate *ts)
{
    ft_tstate_unregister(ts);
    ft_tstate_unbind(ts);
    ft_tstate_free_later(ts);
}

void
PyOS_AfterFork_Child(void)
{
    ft_parking_lot_after_fork();
    ft_mutex_after_fork(&ft_rt.interp_lock);
    ft_mutex_after_fork(&ft_rt.pending_lock);
    ft_gc_heaps_after_fork_child();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    PyThread_ReInitTLS();   /* deprecated for users, still the TSS reset */
#pragma GCC diagnostic pop
    ft_rcu_after_fork_child();
    ft_thread_slots_after_fork_child();
    atomic_store_explicit(&ft_rt.pending_busy, 0, memory_order_relaxed);

    ft_tstate *me = ft_current();
    if (!ft_free_threaded) {
        ft_gil_after_fork(&ft_rt.gil, me);
    }
    if (!atomic_load_explicit(&ft_rt.initialized, memory_order_acquire)) {
        if (fork_state.was_online) {
            ft_rcu_online();
        }
        return;
    }
    PyInterpreterState *interp = atomic_load_explicit(&ft_rt.main, memory_order_acquire);
    ft_mutex_after_fork(&interp->atexit_lock);
    ft_mutex_after_fork(&interp->stw.mutex);

    ft_rcu_ensure_registered();   /* a forking thread may never have been */
    ft_rcu_online();
    for (ft_tstate *ts = ft_tstate_first(interp); ts; ts = ft_tstate_next(ts)) {
        if (ts != me) {
            drop_dead_state(ts);
        }
    }
    if (!fork_state.was_online) {
        ft_rcu_offline();
    }
    if (fork_state.stopped) {
        /* End the stop: only our own state is left, and it is attached. */
        atomic_fetch_add_explicit(&interp->stw.seq, 1, memory_order_relaxed);
        atomic_store_explicit(&interp->stw.requester, NULL, memory_order_relaxed);
    }
    ft_rt.main_thread = PyThread_get_thread_ident();
    interp->initial = me;
    ft_rt.pending_tstate = me;
}
