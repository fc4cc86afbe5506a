/* Thread states, interpreters and the runtime (core/).
 *
 *   core/tstate.c     the thread-state machine, attach/detach, the registry,
 *                     safe points, stop-the-world
 *   core/gil.c        the GIL (GIL build)
 *   core/gilstate.c   PyGILState_*, PEP 788 guards, views and Ensure
 *   core/lifecycle.c  Py_Initialize / Py_FinalizeEx, atexit, pending calls
 *   core/fork.c       PyOS_BeforeFork / AfterFork_*
 *
 * The state machine and its memory orderings are described at the top of
 * core/tstate.c; this header only declares.
 */
#ifndef FT_PYSTATE_H
#define FT_PYSTATE_H

#include <pthread.h>
#include <stdatomic.h>

#include "ft_core.h"
#include "ft_lock.h"
#include "ft_raw_mutex.h"
#include "ft_rcu.h"

/* ---- thread-state word --------------------------------------------------- */

/* ft_tstate.state = kind | tag << 2, plus the WAITING flag in bit 63
 * (core/tstate.c, THE STATE WORD, has the machine).  The tag is the (odd)
 * stop-the-world sequence number of the stop that suspended the state
 * (SUSPENDED), or of the restart that handed it over attached (ATTACHED
 * with a tag: a grant, claimed by its owner, which stores plain ATTACHED).
 * WAITING marks a SUSPENDED state whose owner is parked in attach. */
enum {
    FT_TS_DETACHED = 0,
    FT_TS_ATTACHED = 1,
    FT_TS_SUSPENDED = 2,
    FT_TS_SHUTTING_DOWN = 3,
};
#define FT_TS_WAITING        ((uint64_t)1 << 63)
#define FT_TS_KIND(w)        ((int)((w) & 3))
#define FT_TS_TAG(w)         (((w) & ~FT_TS_WAITING) >> 2)
#define FT_TS_SUSPENDED_BY(seq) (((uint64_t)(seq) << 2) | FT_TS_SUSPENDED)
#define FT_TS_GRANTED_BY(seq)   (((uint64_t)(seq) << 2) | FT_TS_ATTACHED)

/* ft_tstate.breaker: requests an attached thread answers at its next safe
 * point (CPython's eval breaker). */
enum {
    FT_BREAK_GIL_DROP = 1u << 0,      /* GIL build: another thread waits for the GIL */
    FT_BREAK_PLEASE_STOP = 1u << 1,   /* a stop-the-world is waiting for this thread */
    FT_BREAK_CALLS = 1u << 2,         /* pending calls to run (main thread) */
    FT_BREAK_MERGE = 1u << 3,         /* objects queued for a refcount merge (core/brc.c) */
};

/* Who created a thread state (decides who deletes it). */
typedef enum ft_whence {
    FT_WHENCE_USER = 0,       /* PyThreadState_New */
    FT_WHENCE_INIT = 1,       /* Py_Initialize's main thread state */
    FT_WHENCE_GILSTATE = 2,   /* PyGILState_Ensure: its last Release deletes it */
    FT_WHENCE_ENSURE = 3,     /* PyThreadState_Ensure: its last Release deletes it */
} ft_whence;

/* Per OS thread, refcounted: the thread's own reference plus one per thread
 * state bound to it.  `last` is the state most recently attached on the
 * thread (the one PyGILState_Ensure reuses); deleting a state from any
 * thread clears it by compare-and-swap, so it never dangles. */
typedef struct ft_thread_slot {
    struct ft_tstate *_Atomic last;
    int _Atomic refs;
    struct ft_thread_slot *prev, *next;   /* every live slot (for fork) */
} ft_thread_slot;

typedef struct ft_tstate {
    PyThreadState base;              /* .interp: public, must come first */
    uint64_t _Atomic state;          /* FT_TS_* | tag << 2 (+ flag bits: core/tstate.c) */
    uint32_t _Atomic breaker;        /* FT_BREAK_* */
    uint64_t id;                     /* unique in the process, > 0 */
    ft_thread_slot *_Atomic slot;    /* the OS thread it is bound to, or NULL */
    int gilstate_counter;            /* PyGILState_Ensure nesting (owner thread only) */
    int ensure_counter;              /* PyThreadState_Ensure nesting (owner thread only) */
    uint8_t whence;                  /* ft_whence */
    bool cleared;
    bool registered;                 /* in interp->threads */
    int _Atomic refs;                /* 1 = the owner; 0 -> freed after a grace period */
    /* Object core (owner thread only): */
    uintptr_t critical_section;      /* top section, tagged (core/critical_section.c) */
    PyObject *current_exception;     /* the error indicator (core/errors.c) */
    struct ft_gc_heap *gc_heap;      /* its GC objects (core/obmalloc.c); NULL until the first */
    int32_t gc_alloc_delta;          /* GC objects created - freed here since the last flush
                                        to interp->gc.young (owner thread only) */
    PyObject *dict;                  /* PyThreadState_GetDict (owner thread; cleared by ft_tstate_clear) */
    unsigned long _Atomic thread_ident;  /* PyThread_get_thread_ident of its OS thread, 0 unbound */
    PyObject *_Atomic async_exc;     /* PyThreadState_SetAsyncExc: raised at the owner's next
                                        explicit safe point (any thread exchanges it) */
    struct cds_lfht_node node;       /* interp->threads, keyed by id */
    ft_rcu_head rcu;
} ft_tstate;

static inline ft_tstate *ft_ts(PyThreadState *ts) { return (ft_tstate *)ts; }

/* ---- stop-the-world ------------------------------------------------------- */

/* Statistics (include/cpython/stoptheworld.h): written only by the
 * requester, under ft_stw.mutex, with relaxed atomic stores; read by anyone
 * with relaxed atomic loads (no single counter tears). */
typedef struct ft_stw_reason_stats {
    uint64_t _Atomic stops;
    uint64_t _Atomic to_stop_ns_total, to_stop_ns_max;
    uint64_t _Atomic stopped_ns_total, stopped_ns_max;
} ft_stw_reason_stats;

typedef struct ft_stw_stats {
    uint64_t _Atomic stops;          /* completed stops (counted by ft_start_the_world) */
    ft_stw_reason_stats by_reason[PyUnstable_STOP_NREASONS];
    uint64_t _Atomic to_stop_hist[PyUnstable_STOP_HIST_BUCKETS];
    uint64_t _Atomic stopped_hist[PyUnstable_STOP_HIST_BUCKETS];
    int _Atomic last_reason;
    uint64_t _Atomic last_to_stop_ns, last_stopped_ns;
    uint32_t _Atomic last_threads;
} ft_stw_stats;

typedef struct ft_stw {
    PyMutex mutex;                   /* one requester at a time, from stop to start */
    uint64_t _Atomic seq;            /* odd while a stop is requested or in force */
    ft_tstate *_Atomic requester;
    uint32_t _Atomic wake;           /* the requester parks here; bumped by stoppers */
    /* The stop in progress (under mutex): */
    unsigned long _Atomic holder;    /* PyThread_get_thread_ident of the requester, 0: none */
    int reason;                      /* PyUnstable_StopReason */
    int64_t requested_ns, stopped_ns;   /* CLOCK_MONOTONIC: request, all stopped */
    uint32_t threads;                /* other states the stop suspended */
    PyInterpreterState *all_next;    /* ft_stop_the_world_all's chain (under its mutex) */
    ft_stw_stats stats;
} ft_stw;

/* ---- interpreters ------------------------------------------------------- */

#define FT_ATEXIT_MAX 32

typedef struct ft_pending_call {
    int (*func)(void *);
    void *arg;
} ft_pending_call;

#define FT_PENDING_MAX 32

struct _is {
    PyInterpreterState *next;        /* runtime list (under ft_rt.interp_lock) */
    int64_t id;                      /* 0 for the main interpreter */
    uint64_t serial;                 /* process-unique, never reused (views) */
    struct cds_lfht *threads;        /* ft_tstate.node, keyed by id */
    ft_stw stw;
    int64_t _Atomic guards;          /* open PyInterpreterGuards (+ implicit ones) */
    int _Atomic finalize_pending;    /* Py_FinalizeEx waits for guards: no new ones */
    /* NULL, or the finalizing thread state; FT_FINALIZED once done. */
    ft_tstate *_Atomic finalizing;
    ft_tstate *initial;              /* the state Py_Initialize attached */
    PyMutex atexit_lock;
    int atexit_n;
    struct { void (*func)(void *); void *data; } atexit[FT_ATEXIT_MAX];
    /* core/typeobject.c: every heap type, pushed by CAS, freed at finalization */
    struct ft_heaptype *_Atomic heap_types;
    /* core/obmalloc.c: every GC object heap of the interpreter, live (owned
     * by a thread state) and orphaned; zero-initialised, kept across
     * Py_Initialize cycles. */
    ft_raw_mutex gc_heaps_lock;
    struct ft_gc_heap *gc_live, *gc_orphans;
    /* gc/: the collector's state.  `young` is the net count of GC objects
     * created since the last collection, flushed from each thread state's
     * gc_alloc_delta (core/obmalloc.c); an allocation that pushes it past
     * `trigger` calls ft_gc_auto_hook. */
    struct {
        int64_t _Atomic young;
        int64_t _Atomic trigger;       /* set by gc/: max(threshold, live / 4) */
        int64_t _Atomic threshold;     /* PyUnstable_GC_SetThreshold; 0: never automatic */
        int _Atomic enabled;           /* PyGC_Enable / PyGC_Disable */
        int _Atomic collecting;        /* one collection at a time (CAS 0 -> 1) */
        PyObject *_Atomic garbage;     /* PyUnstable_GC_GetGarbage: created on first use */
        ft_raw_mutex stats_lock;       /* guards stats (the collector writes, readers copy) */
        PyUnstable_GCStats stats;
    } gc;
    /* PyInterpreterState_GetDict: created on first use (CAS), cleared by
     * Py_FinalizeEx while types are alive. */
    PyObject *_Atomic dict;
};

#define FT_FINALIZED ((ft_tstate *)(uintptr_t)1)

/* ---- the GIL (core/gil.c) ----------------------------------------------- */

typedef struct ft_gil {
    pthread_mutex_t mutex;
    pthread_cond_t cond;             /* signalled when the GIL is released */
    pthread_cond_t switch_cond;      /* signalled when a different thread takes it */
    int locked;                      /* under mutex */
    ft_tstate *_Atomic holder;       /* NULL when not locked */
    ft_tstate *last_holder;          /* under mutex */
    uint64_t switch_number;          /* under mutex: takes by a new holder */
    unsigned long _Atomic interval_us;
} ft_gil;

FT_INTERNAL void ft_gil_init(ft_gil *gil);
/* Block until the calling thread holds the GIL for ts. */
FT_INTERNAL void ft_gil_take(ft_gil *gil, ft_tstate *ts);
/* Release it.  If ts was asked to drop it (FT_BREAK_GIL_DROP), wait until
 * another thread has taken it, so the requester really gets a turn. */
FT_INTERNAL void ft_gil_drop(ft_gil *gil, ft_tstate *ts);
/* In the child after fork: held by ts if not NULL, else free. */
FT_INTERNAL void ft_gil_after_fork(ft_gil *gil, ft_tstate *ts);

/* ---- the runtime -------------------------------------------------------- */

typedef struct ft_runtime {
    int _Atomic initialized;
    int finalize_started;            /* Py_FinalizeEx has begun (finalizing thread) */
    ft_tstate *_Atomic finalizing;   /* Py_IsFinalizing: the finalizing state */
    PyMutex interp_lock;             /* interpreter list, ids, init/finalize */
    PyInterpreterState *_Atomic interp_head;
    PyInterpreterState *_Atomic main;
    int64_t next_interp_id;
    uint64_t _Atomic next_serial;
    uint64_t _Atomic next_tstate_id;
    unsigned long main_thread;       /* PyThread_get_thread_ident of the initializer */
    ft_gil gil;
    PyMutex pending_lock;
    int pending_first, pending_n;
    ft_pending_call pending[FT_PENDING_MAX];
    int _Atomic pending_busy;        /* a thread is running pending calls */
    ft_tstate *pending_tstate;       /* main thread's state (under pending_lock) */
    int atexit_n;                    /* Py_AtExit table (under interp_lock) */
    void (*atexit[FT_ATEXIT_MAX])(void);
} ft_runtime;

FT_INTERNAL extern ft_runtime ft_rt;

/* ---- current thread state ---------------------------------------------- */

FT_INTERNAL extern _Thread_local ft_tstate *ft_tls_current
    __attribute__((tls_model("initial-exec")));

static inline ft_tstate *ft_current(void) { return ft_tls_current; }

/* ---- core/tstate.c ------------------------------------------------------- */

/* Attach ts to the calling thread (fatal, naming `func`, if the thread has
 * an attached state already).  May block: GIL, stop-the-world; forever if
 * the interpreter is finalizing and ts is not the finalizing state.  True
 * if a restart of the world granted the attach (core/tstate.c, FORWARD
 * PROGRESS): a caller that makes a safe point right after attaching skips
 * it then, so that its caller's code runs before the next stop. */
FT_INTERNAL bool ft_tstate_attach(ft_tstate *ts, const char *func);
/* Detach the calling thread's attached state ts. */
FT_INTERNAL void ft_tstate_detach(ft_tstate *ts);
/* Create a registered, detached state; NULL if out of memory. */
FT_INTERNAL ft_tstate *ft_tstate_new(PyInterpreterState *interp, ft_whence whence);
/* Clear, unregister and free (after a grace period) a state that is not
 * attached.  `func` names the public caller in fatal errors. */
FT_INTERNAL void ft_tstate_delete(ft_tstate *ts, const char *func);
FT_INTERNAL void ft_tstate_clear(ft_tstate *ts);
/* Free ts after a grace period (its last reference is gone). */
FT_INTERNAL void ft_tstate_free_later(ft_tstate *ts);
/* Unlink ts from its interpreter's list (finalization, fork). */
FT_INTERNAL void ft_tstate_unregister(ft_tstate *ts);
/* The calling thread's slot (created on first use; NULL if out of memory). */
FT_INTERNAL ft_thread_slot *ft_thread_slot_get(void);
/* Give up ts's binding to its OS thread (clears the slot's `last`). */
FT_INTERNAL void ft_tstate_unbind(ft_tstate *ts);
/* fork(): the slot list's lock is held across fork(); in the child the
 * slots of threads that did not survive lose their thread's reference. */
FT_INTERNAL void ft_thread_slots_before_fork(void);
FT_INTERNAL void ft_thread_slots_after_fork_parent(void);
FT_INTERNAL void ft_thread_slots_after_fork_child(void);
/* Make sure the calling thread is a registered QSBR reader. */
FT_INTERNAL void ft_rcu_ensure_registered(void);
/* Never returns: the calling thread (not attached, offline) sleeps until the
 * process exits.  ts, if not NULL, is the state it tried to attach, whose
 * owner reference it gives up. */
FT_INTERNAL void _Py_NO_RETURN ft_hang_thread(ft_tstate *ts);

/* Safe points: where an attached thread answers stop and GIL-drop requests
 * (pending calls run only at the explicit ones, PyErr_CheckSignals and
 * Py_MakePendingCalls, which can report their failure). */
#define FT_BREAK_REQUESTS (FT_BREAK_PLEASE_STOP | FT_BREAK_GIL_DROP | FT_BREAK_MERGE)
FT_INTERNAL void ft_safe_point_slow(ft_tstate *ts);
static inline void
ft_safe_point(ft_tstate *ts)
{
    if (ft_unlikely(atomic_load_explicit(&ts->breaker, memory_order_relaxed) &
                    FT_BREAK_REQUESTS)) {
        ft_safe_point_slow(ts);
    }
}

/* The safe point of an object creation (docs/threads.md): the calling
 * thread's attached state, if any, answers requests.  For creators that
 * bypass PyObject_New (ints and floats allocate with PyObject_Malloc). */
static inline void
ft_alloc_safe_point(void)
{
    ft_tstate *ts = ft_current();
    if (ts != NULL) {
        ft_safe_point(ts);
    }
}

/* Walk the registered states of interp: the caller must be online (attached,
 * or between ft_rcu_online/offline) for the whole walk. */
FT_INTERNAL ft_tstate *ft_tstate_first(PyInterpreterState *interp);
FT_INTERNAL ft_tstate *ft_tstate_next(ft_tstate *ts);

/* Stop every other thread of interp (free-threaded build; a no-op with the
 * GIL, which already excludes them).  On return no other thread state of
 * interp is ATTACHED and none can attach until ft_start_the_world.  The
 * reason (include/cpython/stoptheworld.h) goes into the statistics. */
FT_INTERNAL void ft_stop_the_world(PyInterpreterState *interp, PyUnstable_StopReason reason);
FT_INTERNAL void ft_start_the_world(PyInterpreterState *interp);
/* The same for every interpreter of the runtime (ft_rt's list): global stops
 * are serialised by a runtime-level mutex, and each interpreter is stopped
 * in list order (and gets a stop with `reason` in its statistics). */
FT_INTERNAL void ft_stop_the_world_all(PyUnstable_StopReason reason);
FT_INTERNAL void ft_start_the_world_all(void);

/* Hooks for sync/ (parking-lot detach, GIL probe) and the thread-exit key. */
FT_INTERNAL void ft_tstate_runtime_init(void);

/* ---- the object core's hooks into attach/detach ------------------------- */

/* core/critical_section.c (free-threaded build): detach suspends every
 * section of the thread (unlocks them); attach re-locks the top one, except
 * while ts is its interpreter's stop-the-world requester (then
 * ft_start_the_world does it).  Both are called only when
 * ts->critical_section != 0. */
FT_INTERNAL void ft_critical_section_suspend_all(ft_tstate *ts);
FT_INTERNAL void ft_critical_section_resume(ft_tstate *ts);

/* core/brc.c: run the calling thread's queued refcount merges (the
 * FT_BREAK_MERGE safe-point request; ts is attached). */
FT_INTERNAL void ft_brc_merge_queued(ft_tstate *ts);

/* core/brc.c, for the cycle collector: with the world stopped by the
 * caller, merge every thread's queued objects on their owners' behalf.
 * Returns the chunks (NULL if none) of the objects whose only reference was
 * the queue's: they keep it until ft_brc_release, which the caller must
 * call attached, with the world running, to free them.  Assumes one
 * interpreter, as the out-of-memory fallback of core/brc.c does. */
typedef struct ft_brc_chunk ft_brc_chunk;
FT_INTERNAL ft_brc_chunk *ft_brc_merge_all_stopped(void);
FT_INTERNAL void ft_brc_release(ft_brc_chunk *held);

/* core/brc.c: each OS thread's merge-queue record, in its own TLS (no
 * allocation, so a thread can always be found by its owner id).  The
 * protocol is at the top of core/brc.c. */
typedef struct ft_brc_thread {
    uintptr_t tid;                   /* the thread's _Py_ThreadId(); 0: not in the table */
    struct ft_brc_thread *next;      /* bucket chain (bucket lock) */
    ft_brc_chunk *queue;             /* objects to merge (bucket lock) */
    ft_thread_slot *slot;            /* whose `last` state is notified (bucket lock) */
    uint32_t _Atomic pending;        /* queue not empty (written under the bucket lock) */
    uint64_t seen_id;                /* owner only: id of the state last attached here */
} ft_brc_thread;
FT_INTERNAL extern _Thread_local ft_brc_thread ft_brc_self
    __attribute__((tls_model("initial-exec")));
FT_INTERNAL void ft_brc_attach_slow(ft_tstate *ts);
/* Thread exit: drain the queue completely, then leave the table. */
FT_INTERNAL void ft_brc_thread_exit(void);
/* Fork child: reset the bucket locks; queues of threads that did not
 * survive go to the forking thread. */
FT_INTERNAL void ft_brc_after_fork_child(void);

/* Attach (free-threaded build), once the thread's slot `last` is ts: link
 * the thread's record on first use, and ask ts to merge at its next safe
 * point if objects are already waiting (queued while the thread was
 * detached or attached to another state). */
static inline void
ft_brc_attach(ft_tstate *ts)
{
    if (ft_unlikely(ft_brc_self.seen_id != ts->id)) {
        ft_brc_attach_slow(ts);
    }
    if (ft_unlikely(atomic_load_explicit(&ft_brc_self.pending, memory_order_relaxed))) {
        atomic_fetch_or_explicit(&ts->breaker, FT_BREAK_MERGE, memory_order_relaxed);
    }
}

/* core/errors.c: drop ts's error indicator (PyThreadState_Clear). */
FT_INTERNAL void ft_errors_clear_tstate(ft_tstate *ts);

/* ---- core/lifecycle.c ---------------------------------------------------- */

FT_INTERNAL bool ft_pending_calls_run_if_main(ft_tstate *ts, int *result);
FT_INTERNAL void ft_interp_init(PyInterpreterState *interp, int64_t id);
/* Take / give back an implicit guard (no allocation): false if interp is
 * finalizing or gone. */
FT_INTERNAL bool ft_interp_guard_acquire(PyInterpreterState *interp);
FT_INTERNAL void ft_interp_guard_release(PyInterpreterState *interp);
FT_INTERNAL bool ft_interp_is_finalizing(PyInterpreterState *interp, ft_tstate *ts);

#endif /* FT_PYSTATE_H */
