/* Biased reference counting: the merge queues (free-threaded build).
 *
 * When a thread that does not own an object drops a reference and finds the
 * object's shared count exactly 0, it cannot subtract (the true count lives
 * partly in the owner's ob_ref_local, which only the owner may touch), so it
 * sets the shared word to QUEUED, keeps its reference, and hands the object
 * to the owner through the owner's merge queue (core/object.c explains the
 * counts and flags).  The owner later merges it: local and shared become one
 * MERGED count minus the queue's reference, and the object is freed if that
 * is 0.
 *
 * THE TABLE
 *   Each OS thread has one record (ft_brc_thread), in its own TLS, keyed by
 *   its thread id (the thread pointer, which ob_tid holds).  Records sit in
 *   256 buckets, each a raw mutex plus a singly linked chain; a bucket's
 *   lock guards its chain and, for every record in it, the queue, the slot
 *   pointer and the writes of `pending`.
 *   Why a bucket table and not liburcu's lock-free hash table: every
 *   operation that finds a record also takes a lock anyway (the queue push,
 *   the "owner has exited" merge, which must exclude the owner's record
 *   being added), so a lock-free lookup would save nothing; a bucket lock
 *   needs no RCU read side, so a thread with no attached state (a thread
 *   exiting, a destructor running in PyGILState_Release's clear) can enqueue
 *   without going online; and records live in TLS, freed with the thread,
 *   with no grace period to wait for.  The lock is a raw mutex (never
 *   detaches, never parks through the parking lot): it is held for a few
 *   instructions and nobody blocks while holding it, so a Py_DECREF never
 *   suspends the caller's critical sections.  256 buckets: with the
 *   thread-pointer hash below, a few hundred threads rarely share one.
 *
 * LIFE OF A RECORD (who does what)
 *   - Linked by its own thread at the thread's first attach (ft_brc_attach,
 *     called from attach once the thread's slot `last` is the attaching
 *     state): before the thread can own any object.
 *   - Pushed to by any thread, under the bucket lock: the enqueuer sets
 *     `pending`, then asks the owner's most recently attached state
 *     (slot->last) to merge at its next safe point (FT_BREAK_MERGE).
 *   - Drained by its own thread (ft_brc_merge_queued, from the safe point):
 *     take the whole queue and clear `pending` under the lock; merge and
 *     free without it (destructors run, and may queue more).
 *   - Or drained by the cycle collector with the world stopped
 *     (ft_brc_merge_all_stopped): every record's queue, taken the same way.
 *     Merging on the owner's behalf is safe then for the reason the
 *     out-of-memory fallback below gives; a FT_BREAK_MERGE request left on
 *     the owner's state then finds an empty queue.  Objects that only the
 *     queue still holds cannot be freed while the world is stopped (their
 *     destructors would run): they keep that reference, in chunks handed
 *     back to the collector, which drops it once the world runs
 *     (ft_brc_release).
 *   - Closed by its own thread at exit (ft_brc_thread_exit): drain, lock,
 *     and if the queue is still empty unlink under that same lock, else
 *     drain again.  Once unlinked the thread is "exited": an enqueuer that
 *     does not find the owner merges the object itself, under the bucket
 *     lock, and frees it if the count is 0.  That is safe because the owner
 *     never touches its objects again, and because a new thread whose
 *     thread pointer reuses the dead one's (so it "owns" the dead thread's
 *     unmerged objects, which CPython tolerates too) links its record under
 *     the same bucket lock before it can touch any object: the direct merge
 *     and the new owner's first local write are ordered by that lock.
 *
 * NOTIFYING AN OWNER THAT IS DETACHED OR SWITCHES STATES
 *   The queue belongs to the OS thread; the safe-point request to a thread
 *   state.  The enqueuer flags slot->last, the state most recently attached
 *   on the owner thread.  If the owner is detached, the flag waits in that
 *   state's breaker.  If the owner attaches a different state B while an
 *   enqueuer flags the old one, the attach hook covers it: attach stores
 *   slot->last = B, then (full fence when the state changed) reads
 *   `pending` and flags B itself if set; the enqueuer sets `pending`, full
 *   fence, then reads slot->last.  One of the two sees the other's store
 *   (store->load on both sides, each behind a seq_cst fence), so B is
 *   flagged.  When the owner re-attaches the same state it fenced for last
 *   time, slot->last has held B since that fence, so the enqueuer sees B.
 *   The flagged state may be deleted concurrently: it is read only online
 *   (RCU), and states are freed after a grace period.
 *
 * OUT OF MEMORY
 *   The queue is a chain of fixed-size chunks; a push that needs a chunk and
 *   cannot get one falls back to CPython's remedy: stop the world, merge
 *   the object explicitly (no thread can be running as its owner while
 *   every other thread is stopped: owners write ob_ref_local only while
 *   attached), start the world, free if 0.  An intrusive link cannot
 *   replace the chunks: a queued object has no free header word (ob_tid
 *   still identifies the owner, the shared word still counts, and the GC
 *   pre-header exists only for GC objects).
 *
 * THREAD EXIT
 *   A thread's queue is drained completely before its record leaves the
 *   table, with a thread state attached so destructors run as usual: the
 *   state the thread is exiting with, or, if it has none, a temporary one
 *   for the main interpreter (PyThreadState_EnsureFromView, which fails
 *   rather than hangs once finalization has begun).  If no state can be
 *   had (finalizing, out of memory), or the interpreter of the state it
 *   exits with is finalizing (a destructor's safe point would then hang
 *   the exiting thread forever), the objects are still merged, and those
 *   whose count reaches 0 are leaked rather than destroyed.
 *
 * FORK
 *   In the child every bucket lock is reset (its holder may not exist);
 *   records of threads that did not survive are unlinked and their queues
 *   appended to the forking thread's, which merges them at its next safe
 *   point (their owners are gone, so merging on another thread is safe).
 *
 * MEMORY ORDERINGS
 *   The bucket lock orders pushes before drains (its release/acquire).  The
 *   two seq_cst fences of the notification protocol are explained above.
 *   ft_object_owner loads ob_tid with acquire: a 0 read means the owner
 *   merged (or is merging) and the enqueuer decrefs normally; the shared
 *   word's CAS orders the rest.  Merges themselves are ordered by their
 *   CAS (core/object.c).
 */
#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_raw_mutex.h"

#define BRC_BUCKETS 256
/* 62 pointers + link + count = 512 bytes per chunk. */
#define BRC_CHUNK_CAP 62

struct ft_brc_chunk {
    ft_brc_chunk *next;
    size_t n;
    PyObject *objs[BRC_CHUNK_CAP];
};

typedef struct brc_bucket {
    ft_raw_mutex lock;
    ft_brc_thread *head;
} __attribute__((aligned(64))) brc_bucket;   /* one cache line each */

static brc_bucket buckets[BRC_BUCKETS];

/* Pushes ever made (relaxed: a hint), and their number when the collector
 * last began to drain every queue: equal means nothing was queued since, so
 * ft_brc_merge_all_stopped need not take 256 locks.  A push that happens
 * before a stop is seen by the stopping thread (the pusher's park releases,
 * the requester acquires); one racing the drain changes the count after it
 * was read, so the next drain looks. */
static uint64_t _Atomic pushes;
static uint64_t _Atomic pushes_drained;

_Thread_local ft_brc_thread ft_brc_self __attribute__((tls_model("initial-exec")));

static brc_bucket *
bucket_of(uintptr_t tid)
{
    /* Thread pointers of different threads differ by a stack's size, a
     * multiple of the page size: multiply and keep the top 8 bits. */
    return &buckets[((uint64_t)tid * 0x9E3779B97F4A7C15ULL) >> 56];
}

static ft_brc_thread *
find_locked(brc_bucket *b, uintptr_t tid)
{
    for (ft_brc_thread *r = b->head; r; r = r->next) {
        if (r->tid == tid) {
            return r;
        }
    }
    return NULL;
}

static void
unlink_locked(brc_bucket *b, ft_brc_thread *rec)
{
    for (ft_brc_thread **p = &b->head; *p; p = &(*p)->next) {
        if (*p == rec) {
            *p = rec->next;
            rec->next = NULL;
            return;
        }
    }
}

/* false if a chunk was needed and could not be allocated. */
static bool
push_locked(ft_brc_thread *rec, PyObject *op)
{
    ft_brc_chunk *c = rec->queue;
    if (c == NULL || c->n == BRC_CHUNK_CAP) {
        ft_brc_chunk *fresh = ft_raw_alloc(sizeof *fresh);
        if (fresh == NULL) {
            return false;
        }
        fresh->next = c;
        fresh->n = 0;
        rec->queue = c = fresh;
    }
    c->objs[c->n++] = op;
    atomic_fetch_add_explicit(&pushes, 1, memory_order_relaxed);
    return true;
}

/* Merge every queued object, dropping the queue's reference, and free the
 * chunks.  Objects whose count reaches 0 are freed if `dealloc`, else
 * leaked (no thread state to run their destructors with). */
static void
merge_chunks(ft_brc_chunk *c, bool dealloc)
{
    while (c != NULL) {
        for (size_t i = 0; i < c->n; i++) {
            PyObject *op = c->objs[i];
            if (_Py_IsImmortal(op)) {
                continue;   /* made immortal while queued: counts no longer matter */
            }
            if (ft_object_explicit_merge(op, -1) == 0 && dealloc) {
                _Py_Dealloc(op);
            }
        }
        ft_brc_chunk *next = c->next;
        ft_raw_free(c, sizeof *c);
        c = next;
    }
}

/* Take the calling thread's whole queue (NULL if empty). */
static ft_brc_chunk *
take_own_queue(void)
{
    ft_brc_thread *self = &ft_brc_self;
    brc_bucket *b = bucket_of(self->tid);
    ft_raw_mutex_lock(&b->lock);
    ft_brc_chunk *c = self->queue;
    self->queue = NULL;
    atomic_store_explicit(&self->pending, 0, memory_order_relaxed);
    ft_raw_mutex_unlock(&b->lock);
    return c;
}

/* ---- the owner's side ---------------------------------------------------------- */

void
ft_brc_attach_slow(ft_tstate *ts)
{
    ft_brc_thread *self = &ft_brc_self;
    if (self->tid == 0 || self->slot == NULL) {
        ft_thread_slot *slot = ft_thread_slot_get();   /* NULL if out of memory */
        uintptr_t tid = _Py_ThreadId();
        brc_bucket *b = bucket_of(tid);
        ft_raw_mutex_lock(&b->lock);
        if (self->tid == 0) {
            self->tid = tid;
            self->next = b->head;
            b->head = self;
        }
        self->slot = slot;
        ft_raw_mutex_unlock(&b->lock);
    }
    self->seen_id = ts->id;
    /* slot->last = ts (stored by the caller) before reading `pending`;
     * pairs with the enqueuer's fence (file header). */
    atomic_thread_fence(memory_order_seq_cst);
}

void
ft_brc_merge_queued(ft_tstate *ts)
{
    (void)ts;   /* the queue is the calling OS thread's, whatever state it runs */
    if (ft_brc_self.tid == 0) {
        return;
    }
    merge_chunks(take_own_queue(), true);
}

void
ft_brc_thread_exit(void)
{
    ft_brc_thread *self = &ft_brc_self;
    if (self->tid == 0) {
        return;
    }
    PyInterpreterView *view = NULL;
    PyThreadStateToken *token = NULL;
    ft_tstate *cur = ft_current();
    /* During finalization a destructor's next safe point would hang this
     * thread for good: merge only (the leak is the finalizing runtime's). */
    bool attached = cur != NULL && !ft_interp_is_finalizing(cur->base.interp, cur);
    bool tried = cur != NULL;
    brc_bucket *b = bucket_of(self->tid);
    for (;;) {
        ft_raw_mutex_lock(&b->lock);
        ft_brc_chunk *c = self->queue;
        self->queue = NULL;
        atomic_store_explicit(&self->pending, 0, memory_order_relaxed);
        if (c == NULL) {
            /* Empty under the lock: leave the table (closed). */
            unlink_locked(b, self);
            self->tid = 0;
            self->slot = NULL;
            ft_raw_mutex_unlock(&b->lock);
            break;
        }
        ft_raw_mutex_unlock(&b->lock);
        if (!tried) {
            /* Destructors need a thread state: borrow one for the drain
             * (NULL if the runtime is finalizing or out of memory). */
            tried = true;
            view = PyInterpreterView_FromMain();
            token = view ? PyThreadState_EnsureFromView(view) : NULL;
            attached = token != NULL;
        }
        merge_chunks(c, attached);
    }
    self->seen_id = 0;
    if (token != NULL) {
        PyThreadState_Release(token);
    }
    if (view != NULL) {
        PyInterpreterView_Close(view);
    }
}

void
ft_brc_after_fork_child(void)
{
    ft_brc_thread *self = &ft_brc_self;
    ft_brc_chunk *orphans = NULL;
    for (size_t i = 0; i < BRC_BUCKETS; i++) {
        brc_bucket *b = &buckets[i];
        ft_raw_mutex_after_fork(&b->lock);
        ft_brc_thread **p = &b->head;
        while (*p != NULL) {
            ft_brc_thread *rec = *p;
            if (rec == self) {
                p = &rec->next;
                continue;
            }
            /* A thread that did not survive: its TLS is still mapped in the
             * child, but nobody will drain it. */
            *p = rec->next;
            ft_brc_chunk *c = rec->queue;
            while (c != NULL) {
                ft_brc_chunk *next = c->next;
                c->next = orphans;
                orphans = c;
                c = next;
            }
        }
    }
    if (orphans == NULL) {
        return;
    }
    if (self->tid == 0) {
        merge_chunks(orphans, false);   /* no record, no state to free with */
        return;
    }
    ft_brc_chunk **tail = &self->queue;
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    *tail = orphans;
    atomic_fetch_add_explicit(&pushes, 1, memory_order_relaxed);
    atomic_store_explicit(&self->pending, 1, memory_order_relaxed);
    ft_tstate *cur = ft_current();
    if (cur != NULL) {
        atomic_fetch_or_explicit(&cur->breaker, FT_BREAK_MERGE, memory_order_relaxed);
    }
}

/* ---- the collector's side ------------------------------------------------------ */

ft_brc_chunk *
ft_brc_merge_all_stopped(void)
{
    uint64_t now = atomic_load_explicit(&pushes, memory_order_relaxed);
    if (now == atomic_load_explicit(&pushes_drained, memory_order_relaxed)) {
        return NULL;   /* nothing queued since the last drain */
    }
    atomic_store_explicit(&pushes_drained, now, memory_order_relaxed);
    ft_brc_chunk *held = NULL;   /* chunks reused for the objects still held */
    for (size_t i = 0; i < BRC_BUCKETS; i++) {
        brc_bucket *b = &buckets[i];
        ft_brc_chunk *taken = NULL;
        ft_raw_mutex_lock(&b->lock);
        for (ft_brc_thread *r = b->head; r != NULL; r = r->next) {
            while (r->queue != NULL) {
                ft_brc_chunk *c = r->queue;
                r->queue = c->next;
                c->next = taken;
                taken = c;
            }
            atomic_store_explicit(&r->pending, 0, memory_order_relaxed);
        }
        ft_raw_mutex_unlock(&b->lock);
        while (taken != NULL) {
            ft_brc_chunk *c = taken;
            taken = c->next;
            size_t kept = 0;
            for (size_t k = 0; k < c->n; k++) {
                PyObject *op = c->objs[k];
                if (_Py_IsImmortal(op)) {
                    continue;   /* made immortal while queued (merge_chunks) */
                }
                /* Merge with the queue's reference still in; drop it unless
                 * it is the last one (nobody else can decref meanwhile: the
                 * world is stopped). */
                if (ft_object_explicit_merge(op, 0) == 1) {
                    c->objs[kept++] = op;
                }
                else {
                    (void)ft_object_explicit_merge(op, -1);
                }
            }
            c->n = kept;
            if (kept == 0) {
                ft_raw_free(c, sizeof *c);
            }
            else {
                c->next = held;
                held = c;
            }
        }
    }
    return held;
}

void
ft_brc_release(ft_brc_chunk *held)
{
    merge_chunks(held, true);   /* merged already: each drops to 0 and is freed */
}

/* ---- the enqueuer's side ------------------------------------------------------- */

/* The out-of-memory fallback (file header). */
static void
merge_with_world_stopped(PyObject *op)
{
    ft_tstate *cur = ft_current();
    PyInterpreterState *interp = cur ? cur->base.interp
                                     : atomic_load_explicit(&ft_rt.main, memory_order_acquire);
    /* A thread that already stopped the world (a collector dropping a
     * reference) must not stop it again. */
    bool stop = interp != NULL &&
                !(cur != NULL &&
                  atomic_load_explicit(&interp->stw.requester, memory_order_relaxed) == cur);
    if (stop) {
        ft_stop_the_world(interp, PyUnstable_STOP_REFCOUNT);
    }
    Py_ssize_t total = ft_object_explicit_merge(op, -1);
    if (stop) {
        ft_start_the_world(interp);
    }
    if (total == 0) {
        _Py_Dealloc(op);
    }
}

void
ft_brc_queue_object(PyObject *op)
{
    uintptr_t tid = ft_object_owner(op);
    if (tid == 0) {
        /* The owner merged concurrently: its CAS kept our reference in the
         * merged count, so drop it the ordinary way. */
        Py_DECREF(op);
        return;
    }
    /* Reading slot->last's breaker needs the RCU read side. */
    bool was_online = ft_rcu_is_online();
    if (!was_online) {
        ft_rcu_ensure_registered();
        ft_rcu_fork_enter();
        ft_rcu_online();
    }
    brc_bucket *b = bucket_of(tid);
    ft_raw_mutex_lock(&b->lock);
    ft_brc_thread *owner = find_locked(b, tid);
    Py_ssize_t total = -1;
    bool pushed = false;
    if (owner == NULL) {
        /* The owner has exited (file header: why under the lock). */
        total = ft_object_explicit_merge(op, -1);
    }
    else if (push_locked(owner, op)) {
        pushed = true;
        atomic_store_explicit(&owner->pending, 1, memory_order_relaxed);
        /* `pending` before reading slot->last; pairs with the attach
         * hook's fence (file header). */
        atomic_thread_fence(memory_order_seq_cst);
        ft_thread_slot *slot = owner->slot;
        ft_tstate *last = slot ? atomic_load_explicit(&slot->last, memory_order_acquire) : NULL;
        if (last != NULL) {
            ft_rcu_received(last);
            atomic_fetch_or_explicit(&last->breaker, FT_BREAK_MERGE, memory_order_relaxed);
        }
    }
    ft_raw_mutex_unlock(&b->lock);
    if (!was_online) {
        ft_rcu_offline();
        ft_rcu_fork_exit();
    }
    if (owner == NULL) {
        if (total == 0) {
            _Py_Dealloc(op);
        }
    }
    else if (!pushed) {
        merge_with_world_stopped(op);
    }
}
