/* ft_rcu: the one place that includes liburcu (QSBR flavour).
 *
 * Why QSBR: a thread state maps onto it directly (attach = online, detach =
 * offline, a safe point = a quiescent state), and its read side costs
 * nothing.  The price is the rule below: a registered thread that blocks
 * while online stalls every grace period.
 *
 *   ft_rcu_register_thread()     before a thread's first read section
 *   ft_rcu_unregister_thread()   before it exits
 *   ft_rcu_read_lock/unlock()    mark a read section (no-ops for QSBR, kept
 *                                for clarity and for TSan, see below)
 *   ft_rcu_quiescent()           "I hold no RCU-protected pointer now"
 *   ft_rcu_offline/online()      around anything that may block
 *   ft_rcu_synchronize()         wait for a grace period (goes offline itself)
 *   ft_rcu_call(head, fn)        run fn(head) after a grace period, on
 *                                liburcu's worker thread
 *   ft_rcu_barrier()             wait until every queued ft_rcu_call ran
 *   ft_rcu_load(p) / ft_rcu_store(p, v)   read / publish a protected pointer
 *
 * ThreadSanitizer and liburcu 0.13.  liburcu publishes pointers with
 * volatile stores plus asm barriers and ends grace periods inside its own
 * uninstrumented library (futex, membarrier), so TSan sees no ordering
 * between a reader's last access and the writer's free, and reports races
 * that cannot happen.  Two measures keep the TSan tier meaningful:
 *   1. Protected pointers are read and published with real acquire/release
 *      atomics (ft_rcu_load / ft_rcu_store), in every build: on x86-64 these
 *      are plain moves, so they cost nothing there.
 *   2. The grace period is told to TSan as a release/acquire pair on one
 *      token: every point where a reader promises to hold no pointer
 *      (read_unlock, quiescent, offline, unregister, and call_rcu on the
 *      caller's side) releases the token; returning from synchronize and
 *      barrier, and entering a call_rcu callback (FT_RCU_CALLBACK_BEGIN)
 *      acquire it.  This is coarser than the real rule (it orders against
 *      any reader, not just the ones the grace period waited for), so it can
 *      hide a bug only where a free happens without any grace period at all
 *      after a reader's quiescent point, which the tests look for directly.
 * Code must use liburcu only through this header; if a liburcu data
 * structure (rculist, rculfhash) is used later, its internal
 * rcu_dereference / rcu_set_pointer must be redirected here first.
 */
#ifndef FT_RCU_H
#define FT_RCU_H

#include <errno.h>

#include "ft_core.h"

#define _LGPL_SOURCE 1
/* liburcu's full barrier on x86-64 is `mfence` (about 19 ns on the EPYC we
 * measure on); a locked read-modify-write of the stack top is an equally
 * full barrier for ordinary (write-back) memory and costs about 5 ns.  This
 * is how Linux implements smp_mb() on x86-64.  It changes only the inline
 * read-side code compiled into ftrt (online, offline, quiescent state), which
 * attach/detach pay on every round trip; liburcu's own library code keeps
 * its mfence, and the two are interchangeable as full barriers. */
#include <urcu/arch.h>
#if defined(__x86_64__)
#  undef cmm_mb
#  define cmm_mb() __asm__ __volatile__ ("lock; addl $0,0(%%rsp)" ::: "memory", "cc")
#endif
#include <urcu/urcu-qsbr.h>
#include <urcu/rculfhash.h>

#ifdef FT_SANITIZE_THREAD
#include <sanitizer/tsan_interface.h>
FT_INTERNAL extern char ft_rcu_gp_token;
#define FT_RCU_TSAN_RELEASE() __tsan_release(&ft_rcu_gp_token)
#define FT_RCU_TSAN_ACQUIRE() __tsan_acquire(&ft_rcu_gp_token)
#else
#define FT_RCU_TSAN_RELEASE() ((void)0)
#define FT_RCU_TSAN_ACQUIRE() ((void)0)
#endif

typedef struct rcu_head ft_rcu_head;

#define ft_rcu_load(p)     __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define ft_rcu_store(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)

/* Entered around every call into liburcu's registry or grace-period code,
 * which hold liburcu's own mutexes; ft_rcu_before_fork waits them out. */
FT_INTERNAL void ft_rcu_fork_enter(void);
FT_INTERNAL void ft_rcu_fork_exit(void);

/* Register / unregister the calling thread as a reader (sync/rcu.c keeps
 * its own list of them too, for the fork child: see there). */
FT_INTERNAL void ft_rcu_register_thread(void);
FT_INTERNAL void ft_rcu_unregister_thread(void);

static inline void ft_rcu_read_lock(void) { urcu_qsbr_read_lock(); }

static inline void
ft_rcu_read_unlock(void)
{
    FT_RCU_TSAN_RELEASE();
    urcu_qsbr_read_unlock();
}

static inline void
ft_rcu_quiescent(void)
{
    FT_RCU_TSAN_RELEASE();
    urcu_qsbr_quiescent_state();
}

static inline void
ft_rcu_offline(void)
{
    FT_RCU_TSAN_RELEASE();
    urcu_qsbr_thread_offline();
}

static inline void ft_rcu_online(void) { urcu_qsbr_thread_online(); }

/* Attach and detach (core/tstate.c) go online and offline on every round
 * trip, and each of them already needs one full barrier of its own (the
 * state word's publish-then-check).  liburcu's online/offline add three
 * more (mfence-class: offline has one before and one after its store,
 * online one after).  These split versions leave the barriers to the
 * caller, which shares one between both protocols:
 *
 *   ft_rcu_offline_store()  the reader counter := 0, a release store: the
 *                           read side's accesses happen before a grace
 *                           period sees the thread offline (all a leading
 *                           barrier gives; on x86 it is a plain move).
 *                           Then the caller's FULL BARRIER (store->load:
 *                           the counter before the `waiting` flag), then
 *   ft_rcu_offline_wake()   liburcu's wake-up of a waiting grace period.
 *
 *   ft_rcu_online_store()   the reader counter := the grace-period counter;
 *                           the caller's FULL BARRIER must follow before any
 *                           read of an RCU-protected pointer.
 *
 * ft_rcu_self caches the address of liburcu's per-thread reader record
 * (global-dynamic TLS in liburcu-qsbr.so, a __tls_get_addr call per use)
 * in ftrt's own initial-exec TLS; it is set while the thread is
 * registered. */
FT_INTERNAL extern _Thread_local struct urcu_qsbr_reader *ft_rcu_self
    __attribute__((tls_model("initial-exec")));

/* A locked read-modify-write is a full barrier on x86 (liburcu relies on the
 * same); elsewhere a caller that wants one after an RMW issues cmm_smp_mb. */
#if defined(__x86_64__) || defined(__i386__)
#  define FT_RMW_IS_FULL_BARRIER 1
#else
#  define FT_RMW_IS_FULL_BARRIER 0
#endif
static const bool ft_rmw_is_full_barrier = FT_RMW_IS_FULL_BARRIER;

static inline void
ft_rcu_offline_store(void)
{
    FT_RCU_TSAN_RELEASE();
    __atomic_store_n(&ft_rcu_self->ctr, 0, __ATOMIC_RELEASE);
}

static inline void
ft_rcu_offline_wake(void)
{
    if (ft_unlikely(CMM_LOAD_SHARED(ft_rcu_self->waiting))) {
        int saved_errno = errno;   /* detach keeps errno, as attach does */
        urcu_qsbr_wake_up_gp();
        errno = saved_errno;
    }
    cmm_barrier();
}

static inline void
ft_rcu_online_store(void)
{
    cmm_barrier();
    __atomic_store_n(&ft_rcu_self->ctr, CMM_LOAD_SHARED(urcu_qsbr_gp.ctr), __ATOMIC_RELAXED);
}

static inline void
ft_rcu_synchronize(void)
{
    ft_rcu_fork_enter();
    urcu_qsbr_synchronize_rcu();
    ft_rcu_fork_exit();
    FT_RCU_TSAN_ACQUIRE();
}

static inline void
ft_rcu_call(ft_rcu_head *head, void (*fn)(ft_rcu_head *))
{
    FT_RCU_TSAN_RELEASE();
    urcu_qsbr_call_rcu(head, fn);
}

/* First statement of every ft_rcu_call callback. */
#define FT_RCU_CALLBACK_BEGIN() FT_RCU_TSAN_ACQUIRE()

/* Must be called offline (a QSBR reader that is online would wait for
 * itself). */
static inline void
ft_rcu_barrier(void)
{
    ft_rcu_fork_enter();
    urcu_qsbr_barrier();
    ft_rcu_fork_exit();
    FT_RCU_TSAN_ACQUIRE();
}

/* Whether the calling thread is registered and online (a QSBR reader). */
static inline bool ft_rcu_is_online(void) { return urcu_qsbr_read_ongoing(); }

/* Payload handed between threads through a liburcu data structure
 * (rculfhash nodes): liburcu-cds.so is not instrumented, so TSan must be
 * told that the writer's initialisation happens before the reader's use. */
#ifdef FT_SANITIZE_THREAD
#define ft_rcu_publish(p)  __tsan_release(p)
#define ft_rcu_received(p) __tsan_acquire(p)
#else
#define ft_rcu_publish(p)  ((void)(p))
#define ft_rcu_received(p) ((void)(p))
#endif

/* The lock-free hash table, QSBR flavour: a table of `buckets` buckets that
 * never resizes (so it starts no worker thread, which keeps fork simple). */
static inline struct cds_lfht *
ft_lfht_new(unsigned long buckets)
{
    return cds_lfht_new_flavor(buckets, buckets, buckets, 0, &urcu_qsbr_flavor, NULL);
}

/* fork(): quiesce liburcu's call_rcu worker and keep every thread out of
 * liburcu's registry and grace-period code, which hold mutexes of their
 * own, while the process forks (sync/rcu.c). */
FT_INTERNAL void ft_rcu_before_fork(void);
FT_INTERNAL void ft_rcu_after_fork_parent(void);
FT_INTERNAL void ft_rcu_after_fork_child(void);

#endif /* FT_RCU_H */
