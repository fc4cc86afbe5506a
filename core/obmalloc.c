/* Object memory: PyMem_*, PyObject_Malloc & co., object creation, and the
 * GC object heaps the collector walks instead of walking jemalloc.
 *
 * DOMAINS
 *   PyMem_* and PyObject_Malloc/Calloc/Realloc/Free are the raw heap
 *   (sync/pymem_raw.c: jemalloc, or the C library under sanitizers) with
 *   CPython's rules: 0 bytes gives a unique pointer, failure gives NULL and
 *   sets no exception, a size above PY_SSIZE_T_MAX fails.  Object creators
 *   (PyObject_New*, PyObject_GC_New*) set MemoryError on any failure,
 *   including a size computation that would overflow.  Creating an object is
 *   a safe point (docs/threads.md).
 *
 * GC OBJECTS: THE PRE-HEADER AND THE PER-STATE HEAPS
 *   jemalloc cannot enumerate its blocks, so every GC object carries a
 *   16-byte pre-header (ft_gc_prehdr: heap, index, bits) in front of
 *   PyObject: the GC object costs exactly 16 bytes more than in CPython's
 *   free-threaded layout, which has none.  A heap (ft_gc_heap) is a dense
 *   array of the objects it lists; an object's index is its position, so
 *   removal is "move the last element into the hole and fix its index".
 *
 *   Each THREAD STATE owns one heap, created on its first GC allocation.
 *   Why the thread state and not the OS thread: a heap must belong to one
 *   interpreter (a stop-the-world stops one interpreter, and an OS thread
 *   may run a state of another one while it is stopped), and "no owner is
 *   running" is exactly "the state is not attached", which a stopped world
 *   guarantees.  The owner is the thread the state is attached to: it
 *   inserts and removes without atomics or locks.
 *
 *   A free by any other thread (or by a thread with no state attached) does
 *   not touch the array: it pushes the dead object on the heap's REMOTE-FREE
 *   STACK, a Treiber stack whose link is the pre-header's heap field (the
 *   object is dead, only its index is still needed).  The owner drains the
 *   stack on its next GC allocation (one relaxed load when it is empty).
 *
 *   heap->remote     who writes it                   ordering
 *   EMPTY -> obj     a remote freer (CAS)            release: the link and
 *   obj -> obj'        (another push)                  flags before the head
 *   obj -> EMPTY     the owner, or the visitor with  acquire exchange: sees
 *                      the world stopped               every pushed link
 *   any -> CLOSED    release (orphaning), under the  acquire exchange
 *                      interpreter's heap lock
 *   CLOSED -> EMPTY  adoption, under the heap lock   relaxed: freers that
 *                                                      saw CLOSED re-read it
 *                                                      under the lock
 *
 *   ORPHANS.  When its state is cleared (PyThreadState_Clear, finalization)
 *   or freed, a heap is released: under the heap lock its stack is drained
 *   and CLOSED, and it moves from interp->gc_live to interp->gc_orphans (or
 *   is freed at once if it lists nothing).  A free into a CLOSED heap takes
 *   the heap lock and removes the object itself; the one that empties an
 *   orphan frees it.  A state's first GC allocation ADOPTS an orphan if there
 *   is one (re-opening its stack) before it creates a heap, so a thread that
 *   creates and deletes states in a loop (PyGILState_Ensure/Release) reuses
 *   one heap.  A heap is freed only when orphaned and empty: an object's
 *   heap pointer therefore stays valid for as long as the object lives.
 *
 *   THE HEAP LOCK (interp->gc_heaps_lock, an ft_raw_mutex: it never detaches
 *   and is held only for list surgery, one drain, or one visit) guards both
 *   lists and the arrays of orphaned heaps.  ft_gc_heaps_visit holds
 *   it for the whole walk with the world stopped, so the heaps nobody may
 *   touch without it (orphans) are stable, and live heaps are stable because
 *   their owners are not attached.  It is held across fork() (taken after
 *   liburcu's worker is quiesced: the worker releases heaps of freed states).
 *
 * TYPE-STABLE FREES (free-threaded build)
 *   Lock-free readers (the containers) may try to incref an object they loaded
 *   before it died; its memory must not become a different kind of memory
 *   before they are done.  An object that other threads could have seen is
 *   freed after an RCU grace period: "could have seen" is read from the
 *   header at free time, ob_ref_shared != 0 or FT_GC_SHARED.  (A publisher
 *   sets _Py_REF_MAYBE_WEAKREF, which forces the owner's final decref through
 *   the merge, leaving ob_ref_shared == _Py_REF_MERGED; an object whose
 *   shared word is still 0 never had a reference outside its owner thread.)
 *   Before it is queued, the object gets the dead header (ob_tid 0,
 *   ob_ref_local 0, ob_ref_shared _Py_REF_MERGED, relaxed atomic stores)
 *   so a stale try-incref fails without writing.  Frees are batched: the
 *   owner appends them to its heap's chunk (509 pointers, 4 KiB) and hands a
 *   full chunk to ft_rcu_call (remote frees are deferred by the owner when
 *   it drains them); when no chunk can be allocated, or the heap is an
 *   orphan (no owner to batch for), the dead pre-header itself becomes the
 *   rcu_head of a one-object callback, so deferring cannot fail.
 *   With the world stopped by the freeing thread nobody reads, so the memory
 *   is freed at once (CPython's rule).  So is an object the collector found
 *   unreachable (FT_GC_UNREACHABLE, set in its first pause, cleared again if
 *   a finalizer resurrects it): a reader can only have loaded it from a slot
 *   of a reachable object, before that pause, and every attached thread
 *   passed a safe point (a quiescent state, with no lock-free read in
 *   progress) in the pause.  Everything else is freed at once.
 *   ft_rcu_call needs a registered thread: attached states are; a detached
 *   caller registers itself first; liburcu's worker (freeing a state) is.
 *   Non-GC objects: PyObject_Free cannot tell an object from a buffer, so
 *   _Py_Dealloc (core/object.c) tells it: for an object whose shared word is
 *   not 0 (published with _Py_REF_MAYBE_WEAKREF, merged, or queued), it
 *   stores the object's address in the thread-local ft_dying_shared around
 *   tp_dealloc, and PyObject_Free of exactly that address writes the dead
 *   header and batches the block like a GC object's (ts's heap batch).  No
 *   pre-header to fall back on: without a batch the block is leaked
 *   (ft_nongc_leaked), never freed early.
 *
 * GC BITS AND TRACKING
 *   FT_GC_TRACKED / FT_GC_FINALIZED live in ob_gc_bits in the free-threaded
 *   build (CPython's field and values) and in the pre-header's bits word in
 *   the GIL build (whose header has no such field); ft_gc_bits() hides the
 *   difference.  As in CPython: tracking a tracked object is fatal,
 *   untracking an untracked one does nothing, PyObject_GC_Del untracks.
 *
 * GIL BUILD
 *   The same code: the owner is the state holding the GIL, a remote free is
 *   a free by a state that does not own the heap (or by a thread without the
 *   GIL, which CPython forbids but which stays memory-safe here), and
 *   "world stopped" means holding the GIL.  No grace periods (no lock-free
 *   readers).
 */
#include <stddef.h>
#include <string.h>

#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"

#define FT_REMOTE_EMPTY  ((uintptr_t)0)
#define FT_REMOTE_CLOSED ((uintptr_t)1)   /* pre-headers are 16-aligned: never 1 */

/* A fresh heap's array: 64 pointers = 512 bytes; it doubles when full and
 * halves when a quarter full (the gap stops a boundary from thrashing). */
#define FT_HEAP_MIN_CAP 64u
/* (4096 - 24) / 8: a chunk (rcu_head, count, pointers) fills 4 KiB. */
#define FT_DEFER_CHUNK 509


typedef struct ft_defer_chunk {
    ft_rcu_head rcu;
    uint32_t n;
    void *mem[FT_DEFER_CHUNK];
} ft_defer_chunk;

struct ft_gc_heap {
    /* The collector's numbering: first, where ft_gc_number (ft_alloc.h)
     * reads it; written by ft_gc_heaps_snapshot with the world stopped. */
    size_t gc_base;
    /* First cache line: what other threads read or write. */
    uintptr_t _Atomic remote;           /* remote-free stack (file header) */
    PyInterpreterState *interp;
    ft_gc_heap *prev, *next;            /* gc_live or gc_orphans (heap lock) */
    char pad_[24];
    /* The owner's (or, once orphaned, the heap lock's): */
    PyObject **objs;
    uint32_t n, cap;
    ft_defer_chunk *defer;              /* frees waiting for a full batch */
};

_Static_assert(sizeof(ft_gc_prehdr) == 16, "the GC pre-header is 16 bytes (issue #4)");
_Static_assert(offsetof(struct ft_gc_heap, gc_base) == 0, "ft_gc_number reads the base first");
_Static_assert(sizeof(ft_rcu_head) <= sizeof(ft_gc_prehdr),
               "a dead object's pre-header doubles as its rcu_head");
_Static_assert(offsetof(struct ft_gc_heap, objs) >= 64,
               "remote freers and the owner use different cache lines");
_Static_assert(sizeof(ft_defer_chunk) <= 4096, "a defer chunk fits 4 KiB");

/* Objects freed after a grace period that has not ended yet (statistics
 * and tests). */
static int64_t _Atomic deferred_outstanding;

static void _Py_NO_RETURN
fatal(const char *func, const char *msg)
{
    _Py_FatalErrorFunc(func, msg);
}

/* ---- PyMem_* and PyObject_Malloc: the raw heap under CPython's names ------- */

void *
PyMem_Malloc(size_t size)
{
    return PyMem_RawMalloc(size);
}

void *
PyMem_Calloc(size_t nelem, size_t elsize)
{
    return PyMem_RawCalloc(nelem, elsize);
}

void *
PyMem_Realloc(void *ptr, size_t new_size)
{
    return PyMem_RawRealloc(ptr, new_size);
}

void
PyMem_Free(void *ptr)
{
    PyMem_RawFree(ptr);
}

void *
PyObject_Malloc(size_t size)
{
    return PyMem_RawMalloc(size);
}

void *
PyObject_Calloc(size_t nelem, size_t elsize)
{
    return PyMem_RawCalloc(nelem, elsize);
}

void *
PyObject_Realloc(void *ptr, size_t new_size)
{
    return PyMem_RawRealloc(ptr, new_size);
}

/* Non-GC objects (TYPE-STABLE FREES in the file header): _Py_Dealloc names
 * here the object it destroys when other threads may have seen it, and
 * PyObject_Free defers exactly that block.  One initial-exec TLS load per
 * free; nested deallocations save and restore it (core/object.c). */
_Thread_local void *ft_dying_shared __attribute__((tls_model("initial-exec")));

static FT_NOINLINE void free_nongc_deferred(void *ptr);

void
PyObject_Free(void *ptr)
{
    if (ft_free_threaded && ft_unlikely(ptr != NULL && ptr == ft_dying_shared)) {
        free_nongc_deferred(ptr);
        return;
    }
    PyMem_RawFree(ptr);
}

/* ---- headers and sizes ------------------------------------------------------- */

/* The header of a new object; instances hold a reference to their type
 * (CPython's _PyObject_Init since 3.8; a load and a branch on an immortal
 * type). */
static inline void
init_header(PyObject *op, PyTypeObject *type)
{
    Py_INCREF((PyObject *)type);
    ft_object_init(op, type);
}

PyObject *
PyObject_Init(PyObject *op, PyTypeObject *type)
{
    if (op == NULL) {
        return PyErr_NoMemory();   /* CPython: Init(Malloc(n), t) reports the failure */
    }
    init_header(op, type);
    return op;
}

PyVarObject *
PyObject_InitVar(PyVarObject *op, PyTypeObject *type, Py_ssize_t size)
{
    if (op == NULL) {
        return (PyVarObject *)PyErr_NoMemory();
    }
    op->ob_size = size;
    init_header(&op->ob_base, type);
    return op;
}

/* _PyObject_VAR_SIZE without the wrap: basicsize + nitems * itemsize rounded
 * up to 8, or 0 if that exceeds PY_SSIZE_T_MAX - extra (extra: a pre-header
 * still to be added). */
static size_t
object_size(PyTypeObject *type, Py_ssize_t nitems, size_t extra)
{
    size_t limit = (size_t)PY_SSIZE_T_MAX - extra - 7;   /* 7: the rounding */
    size_t basic = (size_t)type->tp_basicsize;
    size_t item = (size_t)type->tp_itemsize;
    size_t n = (size_t)nitems;
    if (basic > limit || (item != 0 && n > (limit - basic) / item)) {
        return 0;
    }
    return (basic + n * item + 7) & ~(size_t)7;
}

static inline void
alloc_safe_point(ft_tstate *ts)
{
    if (ts != NULL) {
        ft_safe_point(ts);
    }
}

PyObject *
_PyObject_New(PyTypeObject *type)
{
    alloc_safe_point(ft_current());
    size_t size = object_size(type, 0, 0);
    PyObject *op = size ? ft_raw_alloc(size) : NULL;
    if (op == NULL) {
        return PyErr_NoMemory();
    }
    init_header(op, type);
    return op;
}

PyVarObject *
_PyObject_NewVar(PyTypeObject *type, Py_ssize_t nitems)
{
    if (nitems < 0) {
        PyErr_BadInternalCall();
        return NULL;
    }
    alloc_safe_point(ft_current());
    size_t size = object_size(type, nitems, 0);
    PyVarObject *op = size ? ft_raw_alloc(size) : NULL;
    if (op == NULL) {
        return (PyVarObject *)PyErr_NoMemory();
    }
    op->ob_size = nitems;
    init_header(&op->ob_base, type);
    return op;
}

/* ---- heap lists (heap lock held) --------------------------------------------- */

static inline void
heaps_lock(PyInterpreterState *interp)
{
    ft_raw_mutex_lock(&interp->gc_heaps_lock);
}

static inline void
heaps_unlock(PyInterpreterState *interp)
{
    ft_raw_mutex_unlock(&interp->gc_heaps_lock);
}

static void
list_add(ft_gc_heap **head, ft_gc_heap *h)
{
    h->prev = NULL;
    h->next = *head;
    if (*head) {
        (*head)->prev = h;
    }
    *head = h;
}

static void
list_del(ft_gc_heap **head, ft_gc_heap *h)
{
    if (h->prev) {
        h->prev->next = h->next;
    }
    else {
        *head = h->next;
    }
    if (h->next) {
        h->next->prev = h->prev;
    }
    h->prev = h->next = NULL;
}

/* ---- deferred (type-stable) frees -------------------------------------------- */

/* Free a GC object's block.  Unsized: jemalloc's sized free takes a slow
 * path for page-aligned blocks (its profiling check), which a loop reusing
 * one such block hits every time; the unsized one has no such cliff. */
static inline void
block_free(ft_gc_prehdr *pre)
{
    PyMem_RawFree(pre);
}

/* ft_rcu_call needs a registered thread: an attached state's thread and
 * liburcu's worker are online; anyone else registers (and stays offline,
 * as core/tstate.c's deferred state frees do). */
static void
rcu_call_any_thread(ft_rcu_head *head, void (*fn)(ft_rcu_head *))
{
    if (!ft_rcu_is_online()) {
        ft_rcu_ensure_registered();
    }
    ft_rcu_call(head, fn);
}

static void
chunk_free_cb(ft_rcu_head *head)
{
    FT_RCU_CALLBACK_BEGIN();
    ft_defer_chunk *c = caa_container_of(head, ft_defer_chunk, rcu);
    uint32_t n = c->n;
    for (uint32_t i = 0; i < n; i++) {
        block_free(c->mem[i]);
    }
    ft_raw_free(c, sizeof *c);
    atomic_fetch_sub_explicit(&deferred_outstanding, n, memory_order_relaxed);
}

static void
one_free_cb(ft_rcu_head *head)
{
    FT_RCU_CALLBACK_BEGIN();
    PyMem_RawFree(head);   /* the dead object's pre-header: its block's start */
    atomic_fetch_sub_explicit(&deferred_outstanding, 1, memory_order_relaxed);
}

static void
chunk_submit(ft_defer_chunk *c)
{
    atomic_fetch_add_explicit(&deferred_outstanding, c->n, memory_order_relaxed);
    rcu_call_any_thread(&c->rcu, chunk_free_cb);
}

static void
defer_one(ft_gc_prehdr *pre)
{
    atomic_fetch_add_explicit(&deferred_outstanding, 1, memory_order_relaxed);
    rcu_call_any_thread((ft_rcu_head *)(void *)pre, one_free_cb);
}

/* Free a dead GC object's block (its pre-header), now or after a grace
 * period.  batch: the caller's batch (its own heap's), or NULL.  Never
 * with the heap lock held: handing memory to RCU may register the thread
 * with liburcu, which waits for a fork in progress, and the forking thread
 * takes the heap lock. */
static void
release_block(ft_defer_chunk **batch, ft_gc_prehdr *pre, bool defer)
{
    if (!defer) {
        block_free(pre);
        return;
    }
    if (batch == NULL) {
        defer_one(pre);
        return;
    }
    ft_defer_chunk *c = *batch;
    if (c == NULL) {
        c = ft_raw_alloc(sizeof *c);
        if (c == NULL) {
            defer_one(pre);   /* out of memory: the pre-header is the rcu_head */
            return;
        }
        c->n = 0;
        *batch = c;
    }
    c->mem[c->n++] = pre;
    if (c->n == FT_DEFER_CHUNK) {
        *batch = NULL;
        chunk_submit(c);
    }
}

static void
batch_flush(ft_defer_chunk **batch)
{
    ft_defer_chunk *c = *batch;
    if (c != NULL) {
        *batch = NULL;
        chunk_submit(c);
    }
}

void
ft_gc_defer_flush(ft_tstate *ts)
{
    if (ts->gc_heap != NULL) {
        batch_flush(&ts->gc_heap->defer);
    }
}

int64_t
ft_gc_deferred_outstanding(void)
{
    return atomic_load_explicit(&deferred_outstanding, memory_order_relaxed);
}

/* Could another thread still read op lock-free (file header)?  The two
 * headers differ: only the free-threaded one has the shared count. */
static inline bool
maybe_seen_by_others(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    uint32_t bits = ft_gc_bits(op);
    if (bits & FT_GC_UNREACHABLE) {
        return false;   /* the collector's garbage (file header) */
    }
    return __atomic_load_n(&op->ob_ref_shared, __ATOMIC_RELAXED) != 0 ||
           (bits & FT_GC_SHARED) != 0;
#else
    (void)op;
    return false;
#endif
}

/* The header a stale try-incref must fail on (CPython's dead state). */
static inline void
write_dead_header(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    __atomic_store_n(&op->ob_tid, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&op->ob_ref_local, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&op->ob_ref_shared, _Py_REF_MERGED, __ATOMIC_RELAXED);
#else
    (void)op;
#endif
}

/* Has ts stopped its interpreter's world (or, GIL build, does it hold the
 * GIL)?  Then no other thread of the interpreter runs attached. */
static bool
world_stopped_by(ft_tstate *ts, PyInterpreterState *interp)
{
    if (ts == NULL) {
        return false;
    }
    if (!ft_free_threaded) {
        return true;
    }
    return ts->base.interp == interp &&
           (atomic_load_explicit(&interp->stw.seq, memory_order_acquire) & 1) &&
           atomic_load_explicit(&interp->stw.requester, memory_order_relaxed) == ts;
}

/* ---- heap arrays (owner, or heap lock for orphans) ------------------------------ */

static ft_gc_heap *
heap_new(PyInterpreterState *interp)
{
    ft_gc_heap *heap = ft_raw_calloc(sizeof *heap);
    if (heap == NULL) {
        return NULL;
    }
    heap->objs = ft_raw_alloc(FT_HEAP_MIN_CAP * sizeof(PyObject *));
    if (heap->objs == NULL) {
        ft_raw_free(heap, sizeof *heap);
        return NULL;
    }
    heap->cap = FT_HEAP_MIN_CAP;
    heap->interp = interp;
    atomic_init(&heap->remote, FT_REMOTE_EMPTY);
    return heap;
}

/* An empty heap nobody can reach any more. */
static void
heap_free(ft_gc_heap *heap)
{
    batch_flush(&heap->defer);
    ft_raw_free(heap->objs, heap->cap * sizeof(PyObject *));
    ft_raw_free(heap, sizeof *heap);
}

static FT_NOINLINE bool
heap_grow(ft_gc_heap *heap)
{
    if (heap->cap > UINT32_MAX / 2) {
        return false;   /* indexes are 32-bit */
    }
    uint32_t cap = heap->cap * 2;
    PyObject **objs = PyMem_RawRealloc(heap->objs, (size_t)cap * sizeof(PyObject *));
    if (objs == NULL) {
        return false;
    }
    heap->objs = objs;
    heap->cap = cap;
    return true;
}

static FT_NOINLINE void
heap_shrink(ft_gc_heap *heap)
{
    uint32_t cap = heap->cap / 2;
    PyObject **objs = PyMem_RawRealloc(heap->objs, (size_t)cap * sizeof(PyObject *));
    if (objs != NULL) {   /* failing to shrink costs only memory */
        heap->objs = objs;
        heap->cap = cap;
    }
}

static inline void
heap_remove(ft_gc_heap *heap, ft_gc_prehdr *pre)
{
    uint32_t i = pre->index;
    PyObject *last = heap->objs[--heap->n];
    heap->objs[i] = last;
    ft_gc_prehdr_of(last)->index = i;
    if (ft_unlikely(heap->n < heap->cap / 4 && heap->cap > FT_HEAP_MIN_CAP)) {
        heap_shrink(heap);
    }
}

/* Unlist every object of a remote-free list taken from heap (the links
 * stay intact: heap_remove does not touch them). */
static void
unlist_all(ft_gc_heap *heap, uintptr_t list)
{
    for (; list != FT_REMOTE_EMPTY; list = (uintptr_t)((ft_gc_prehdr *)list)->heap) {
        heap_remove(heap, (ft_gc_prehdr *)list);
    }
}

/* Free the blocks of an unlisted remote-free list. */
static void
free_all(uintptr_t list, ft_defer_chunk **batch, bool stopped)
{
    while (list != FT_REMOTE_EMPTY) {
        ft_gc_prehdr *pre = (ft_gc_prehdr *)list;
        list = (uintptr_t)pre->heap;
        release_block(batch, pre, (pre->bits & FT_PRE_DEFER) && !stopped);
    }
}

/* Owner: take whatever other threads freed. */
static FT_NOINLINE void
drain_remote(ft_tstate *ts, ft_gc_heap *heap)
{
    uintptr_t list = atomic_exchange_explicit(&heap->remote, FT_REMOTE_EMPTY,
                                              memory_order_acquire);
    unlist_all(heap, list);
    free_all(list, &heap->defer, world_stopped_by(ts, heap->interp));
}

/* ---- owning, releasing, adopting --------------------------------------------- */

/* ts's first GC allocation (or the first since its heap was released):
 * adopt an orphan of its interpreter, or create a heap. */
static FT_NOINLINE ft_gc_heap *
heap_acquire(ft_tstate *ts)
{
    PyInterpreterState *interp = ts->base.interp;
    heaps_lock(interp);
    ft_gc_heap *heap = interp->gc_orphans;
    if (heap != NULL) {
        list_del(&interp->gc_orphans, heap);
        atomic_store_explicit(&heap->remote, FT_REMOTE_EMPTY, memory_order_relaxed);
        list_add(&interp->gc_live, heap);
        heaps_unlock(interp);
    }
    else {
        heaps_unlock(interp);
        heap = heap_new(interp);   /* outside the lock: may take a while */
        if (heap == NULL) {
            return NULL;
        }
        heaps_lock(interp);
        list_add(&interp->gc_live, heap);
        heaps_unlock(interp);
    }
    ts->gc_heap = heap;
    return heap;
}

void
ft_gc_heap_release(ft_tstate *ts)
{
    ft_gc_heap *heap = ts->gc_heap;
    if (heap == NULL) {
        return;
    }
    ts->gc_heap = NULL;
    PyInterpreterState *interp = heap->interp;
    heaps_lock(interp);
    uintptr_t list = atomic_exchange_explicit(&heap->remote, FT_REMOTE_CLOSED,
                                              memory_order_acquire);
    unlist_all(heap, list);
    ft_defer_chunk *batch = heap->defer;   /* an orphan has no batch: its frees go one by one */
    heap->defer = NULL;
    list_del(&interp->gc_live, heap);
    bool empty = heap->n == 0;
    if (!empty) {
        list_add(&interp->gc_orphans, heap);
    }
    heaps_unlock(interp);
    /* Unlocked (release_block): the blocks are ours alone now. */
    free_all(list, &batch, world_stopped_by(ft_current(), interp));
    batch_flush(&batch);
    if (empty) {
        heap_free(heap);
    }
}

ft_gc_heap *
ft_gc_heap_of(PyObject *op)
{
    return ft_gc_prehdr_of(op)->heap;
}

/* ---- non-GC objects other threads may read ------------------------------------ */

static int64_t _Atomic nongc_leaked;

/* The block of a dying non-GC object another thread may still read (see
 * PyObject_Free): the dead header, then into the caller's batch (its heap's,
 * made ready if need be), freed after a grace period.  With the world
 * stopped by the caller nobody reads: freed at once.  When no batch can be
 * had (out of memory, or no attached state to own one) the block is leaked:
 * it cannot double as an rcu_head (a stale reader may still read its
 * header, and a 32-byte object has nothing else), and blocking in a grace
 * period inside a destructor could wait for a thread that waits for us.
 * ft_nongc_leaked counts such blocks. */
static FT_NOINLINE void
free_nongc_deferred(void *ptr)
{
    ft_dying_shared = NULL;   /* one block per dealloc */
    write_dead_header(ptr);
    ft_tstate *ts = ft_current();
    if (ts == NULL) {
        atomic_fetch_add_explicit(&nongc_leaked, 1, memory_order_relaxed);
        return;
    }
    if (world_stopped_by(ts, ts->base.interp)) {
        PyMem_RawFree(ptr);
        return;
    }
    ft_gc_heap *heap = ts->gc_heap;
    if (heap == NULL && (heap = heap_acquire(ts)) == NULL) {
        atomic_fetch_add_explicit(&nongc_leaked, 1, memory_order_relaxed);
        return;
    }
    ft_defer_chunk *c = heap->defer;
    if (c == NULL) {
        c = ft_raw_alloc(sizeof *c);
        if (c == NULL) {
            atomic_fetch_add_explicit(&nongc_leaked, 1, memory_order_relaxed);
            return;
        }
        c->n = 0;
        heap->defer = c;
    }
    /* a chunk frees block starts: a non-GC object's block starts at the object */
    c->mem[c->n++] = ptr;
    if (c->n == FT_DEFER_CHUNK) {
        heap->defer = NULL;
        chunk_submit(c);
    }
}

int64_t
ft_nongc_leaked(void)
{
    return atomic_load_explicit(&nongc_leaked, memory_order_relaxed);
}

/* ---- GC object allocation and free ------------------------------------------- */

/* Make ts's heap ready for one more object: acquire it, drain remote frees,
 * grow the array.  NULL when out of memory. */
static FT_NOINLINE ft_gc_heap *
heap_prepare(ft_tstate *ts)
{
    ft_gc_heap *heap = ts->gc_heap;
    if (heap == NULL && (heap = heap_acquire(ts)) == NULL) {
        return NULL;
    }
    if (atomic_load_explicit(&heap->remote, memory_order_relaxed) != FT_REMOTE_EMPTY) {
        drain_remote(ts, heap);
    }
    if (heap->n == heap->cap && !heap_grow(heap)) {
        return NULL;
    }
    return heap;
}

/* The collector's trigger (gc/gc.c decides; this file only counts).  Each
 * state counts GC objects it creates minus those it frees in its own heap
 * (owner only, no atomics) and adds the count to interp->gc.young every
 * FT_GC_COUNT_FLUSH either way.  A flush from an allocation that takes young
 * past gc.trigger calls the registered hook, at the allocation's safe point,
 * before the new object exists. */
#define FT_GC_COUNT_FLUSH 512

void (*_Atomic ft_gc_auto_hook)(ft_tstate *ts);
void (*_Atomic ft_gc_fini_hook)(ft_tstate *ts);

static FT_NOINLINE void
count_flush(ft_tstate *ts, bool allocating)
{
    PyInterpreterState *interp = ts->base.interp;
    int64_t delta = ts->gc_alloc_delta;
    ts->gc_alloc_delta = 0;
    int64_t young = atomic_fetch_add_explicit(&interp->gc.young, delta,
                                              memory_order_relaxed) + delta;
    if (allocating && young > atomic_load_explicit(&interp->gc.trigger, memory_order_relaxed)) {
        void (*hook)(ft_tstate *) = atomic_load_explicit(&ft_gc_auto_hook, memory_order_acquire);
        if (hook != NULL) {
            hook(ts);
        }
    }
}

/* A GC object's memory (pre-header filled in, listed in the caller's heap),
 * header not initialised; NULL + MemoryError on failure.  size: the
 * object's, without the pre-header; 0 means it overflowed. */
static PyObject *
gc_alloc(size_t size, const char *func)
{
    ft_tstate *ts = ft_current();
    if (ft_unlikely(ts == NULL)) {
        fatal(func, "no thread state is attached (a GC object belongs to the "
                    "allocating thread state's heap)");
    }
    ft_safe_point(ts);
    if (ft_unlikely(++ts->gc_alloc_delta >= FT_GC_COUNT_FLUSH)) {
        count_flush(ts, true);   /* may collect: before we look at the heap */
    }
    if (size == 0) {
        return PyErr_NoMemory();
    }
    ft_gc_heap *heap = ts->gc_heap;
    if (ft_unlikely(heap == NULL || heap->n == heap->cap ||
                    atomic_load_explicit(&heap->remote, memory_order_relaxed) != FT_REMOTE_EMPTY)) {
        heap = heap_prepare(ts);
        if (heap == NULL) {
            return PyErr_NoMemory();
        }
    }
    ft_gc_prehdr *pre = ft_raw_alloc(sizeof(ft_gc_prehdr) + size);
    if (pre == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *op = (PyObject *)(pre + 1);
    pre->heap = heap;
    pre->index = heap->n;
    pre->bits = 0;
    heap->objs[heap->n++] = op;
    return op;
}

PyObject *
_PyObject_GC_New(PyTypeObject *type)
{
    PyObject *op = gc_alloc(object_size(type, 0, sizeof(ft_gc_prehdr)), "PyObject_GC_New");
    if (op != NULL) {
        init_header(op, type);
    }
    return op;
}

PyVarObject *
_PyObject_GC_NewVar(PyTypeObject *type, Py_ssize_t nitems)
{
    if (nitems < 0) {
        PyErr_BadInternalCall();
        return NULL;
    }
    PyVarObject *op = (PyVarObject *)gc_alloc(object_size(type, nitems, sizeof(ft_gc_prehdr)),
                                              "PyObject_GC_NewVar");
    if (op != NULL) {
        op->ob_size = nitems;
        init_header(&op->ob_base, type);
    }
    return op;
}

/* A free by a thread that does not own heap. */
static FT_NOINLINE void
remote_free(ft_gc_heap *heap, ft_gc_prehdr *pre, bool defer)
{
    pre->bits = (pre->bits & ~FT_PRE_DEFER) | (defer ? FT_PRE_DEFER : 0);
    uintptr_t head = atomic_load_explicit(&heap->remote, memory_order_acquire);
    for (;;) {
        if (head != FT_REMOTE_CLOSED) {
            pre->heap = (ft_gc_heap *)head;
            if (atomic_compare_exchange_weak_explicit(&heap->remote, &head, (uintptr_t)pre,
                                                      memory_order_release,
                                                      memory_order_acquire)) {
                return;
            }
            continue;
        }
        /* Orphaned: remove it ourselves, under the lock (unless the heap was
         * adopted meanwhile: then push after all). */
        PyInterpreterState *interp = heap->interp;
        heaps_lock(interp);
        if (atomic_load_explicit(&heap->remote, memory_order_relaxed) != FT_REMOTE_CLOSED) {
            heaps_unlock(interp);
            head = atomic_load_explicit(&heap->remote, memory_order_acquire);
            continue;
        }
        heap_remove(heap, pre);
        bool empty = heap->n == 0;
        if (empty) {
            list_del(&interp->gc_orphans, heap);
        }
        heaps_unlock(interp);
        if (defer && world_stopped_by(ft_current(), interp)) {
            defer = false;
        }
        release_block(NULL, pre, defer);
        if (empty) {
            heap_free(heap);
        }
        return;
    }
}

void
PyObject_GC_Del(void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    PyObject *op = ptr;
    if (ft_unlikely(!PyObject_IS_GC(op))) {
        fatal("PyObject_GC_Del", "the object's type is not a GC type (no "
                                 "Py_TPFLAGS_HAVE_GC): free it with PyObject_Free");
    }
    ft_gc_prehdr *pre = ft_gc_prehdr_of(op);
    ft_gc_heap *heap = pre->heap;
    bool defer = maybe_seen_by_others(op);
    if (defer) {
        write_dead_header(op);
    }
    ft_tstate *ts = ft_current();
    if (ft_likely(ts != NULL && ts->gc_heap == heap)) {
        heap_remove(heap, pre);
        if (ft_unlikely(--ts->gc_alloc_delta <= -FT_GC_COUNT_FLUSH)) {
            count_flush(ts, false);
        }
        if (ft_unlikely(defer) && world_stopped_by(ts, heap->interp)) {
            defer = false;
        }
        release_block(&heap->defer, pre, defer);
        return;
    }
    remote_free(heap, pre, defer);
}

PyVarObject *
_PyObject_GC_Resize(PyVarObject *op, Py_ssize_t nitems)
{
    PyObject *o = (PyObject *)op;
    if (ft_gc_bits(o) & FT_GC_TRACKED) {
        fatal("_PyObject_GC_Resize", "the object is tracked by the garbage collector "
                                     "(untrack it before resizing)");
    }
    if (nitems < 0) {
        PyErr_BadInternalCall();
        return NULL;
    }
    size_t size = object_size(Py_TYPE(o), nitems, sizeof(ft_gc_prehdr));
    if (size == 0) {
        return (PyVarObject *)PyErr_NoMemory();
    }
    ft_gc_prehdr *pre = ft_gc_prehdr_of(o);
    ft_gc_heap *heap = pre->heap;
    ft_tstate *ts = ft_current();
    if (ts != NULL && ts->gc_heap == heap) {
        /* Ours: resize in place and re-point the heap's entry. */
        ft_gc_prehdr *moved = PyMem_RawRealloc(pre, sizeof(ft_gc_prehdr) + size);
        if (moved == NULL) {
            return (PyVarObject *)PyErr_NoMemory();
        }
        op = (PyVarObject *)(moved + 1);
        heap->objs[moved->index] = (PyObject *)op;
        Py_SET_SIZE(op, nitems);
        return op;
    }
    /* Another state's heap, which only its owner may change: move the
     * object into ours and free the old block as a remote free. */
    size_t old_size = object_size(Py_TYPE(o), Py_SIZE(o), sizeof(ft_gc_prehdr));
    PyVarObject *copy = (PyVarObject *)gc_alloc(size, "PyObject_GC_Resize");
    if (copy == NULL) {
        return NULL;
    }
    memcpy(copy, op, old_size < size ? old_size : size);
    ft_gc_prehdr *cpre = ft_gc_prehdr_of((PyObject *)copy);
    cpre->bits = (cpre->bits & ~FT_PRE_GC_BITS) | (pre->bits & FT_PRE_GC_BITS);   /* GIL build */
    remote_free(heap, pre, false);
    Py_SET_SIZE(copy, nitems);
    return copy;
}

/* ---- tracking ------------------------------------------------------------------ */

static inline void
check_gc(PyObject *op, const char *func)
{
    if (ft_unlikely(!PyObject_IS_GC(op))) {
        fatal(func, "the object's type is not a GC type (no Py_TPFLAGS_HAVE_GC)");
    }
}

void
PyObject_GC_Track(void *ptr)
{
    PyObject *op = ptr;
    check_gc(op, "PyObject_GC_Track");
    if (ft_gc_bits(op) & FT_GC_TRACKED) {
        fatal("PyObject_GC_Track", "object already tracked by the garbage collector");
    }
    ft_gc_bits_set(op, FT_GC_TRACKED);
}

void
PyObject_GC_UnTrack(void *ptr)
{
    PyObject *op = ptr;
    check_gc(op, "PyObject_GC_UnTrack");
    if (ft_gc_bits(op) & FT_GC_TRACKED) {
        ft_gc_bits_clear(op, FT_GC_TRACKED);
    }
}

int
PyObject_GC_IsTracked(PyObject *op)
{
    return PyObject_IS_GC(op) && (ft_gc_bits(op) & FT_GC_TRACKED) != 0;
}

int
PyObject_GC_IsFinalized(PyObject *op)
{
    return PyObject_IS_GC(op) && (ft_gc_bits(op) & FT_GC_FINALIZED) != 0;
}

/* ---- the collector's view ------------------------------------------------------- */

/* The start of a walk over every heap, for `func`: the world must be
 * stopped by the caller; takes the heap lock (the caller drops it) and the
 * stopped owners' remote frees, so every listed object is alive.  Nobody
 * reads lock-free now: they are freed at once, never through RCU. */
static void
walk_begin(PyInterpreterState *interp, const char *func)
{
    if (!world_stopped_by(ft_current(), interp)) {
        fatal(func, ft_free_threaded ? "the world is not stopped by the calling thread state"
                                     : "the calling thread does not hold the GIL");
    }
    heaps_lock(interp);
    for (ft_gc_heap *h = interp->gc_live; h; h = h->next) {
        uintptr_t list = atomic_exchange_explicit(&h->remote, FT_REMOTE_EMPTY,
                                                  memory_order_acquire);
        unlist_all(h, list);
        free_all(list, NULL, true);
    }
}

int
ft_gc_heaps_visit(PyInterpreterState *interp, ft_gc_visit_fn fn, void *arg)
{
    walk_begin(interp, "ft_gc_heaps_visit");
    int rc = 0;
    ft_gc_heap *lists[2] = { interp->gc_live, interp->gc_orphans };
    for (int l = 0; l < 2 && rc == 0; l++) {
        for (ft_gc_heap *h = lists[l]; h && rc == 0; h = h->next) {
            for (uint32_t i = 0; i < h->n && rc == 0; i++) {
                rc = fn(h->objs[i], arg);
            }
        }
    }
    heaps_unlock(interp);
    return rc;
}

int
ft_gc_heaps_snapshot(PyInterpreterState *interp, PyObject ***objs_out, size_t *n_out)
{
    walk_begin(interp, "ft_gc_heaps_snapshot");
    size_t total = 0;
    ft_gc_heap *lists[2] = { interp->gc_live, interp->gc_orphans };
    for (int l = 0; l < 2; l++) {
        for (ft_gc_heap *h = lists[l]; h; h = h->next) {
            h->gc_base = total;
            total += h->n;
        }
    }
    PyObject **objs = PyMem_RawMalloc(total ? total * sizeof *objs : 1);
    if (objs != NULL) {
        for (int l = 0; l < 2; l++) {
            for (ft_gc_heap *h = lists[l]; h; h = h->next) {
                memcpy(objs + h->gc_base, h->objs, h->n * sizeof *objs);
            }
        }
    }
    heaps_unlock(interp);
    *objs_out = objs;
    *n_out = objs ? total : 0;
    return objs ? 0 : -1;
}

void
ft_gc_heaps_stats(PyInterpreterState *interp, ft_gc_heap_stats *out)
{
    memset(out, 0, sizeof *out);
    heaps_lock(interp);
    for (ft_gc_heap *h = interp->gc_live; h; h = h->next) {
        out->live_heaps++;
        out->objects += h->n;
    }
    for (ft_gc_heap *h = interp->gc_orphans; h; h = h->next) {
        out->orphan_heaps++;
        out->objects += h->n;
    }
    heaps_unlock(interp);
}

/* ---- fork ------------------------------------------------------------------------ */

static PyInterpreterState *
main_interp(void)
{
    return atomic_load_explicit(&ft_rt.main, memory_order_acquire);
}

/* The main interpreter only: it is the one whose states survive in the
 * child (sub-interpreters do not exist yet). */
static _Thread_local PyInterpreterState *fork_interp;

void
ft_gc_heaps_before_fork(void)
{
    fork_interp = main_interp();
    if (fork_interp != NULL) {
        heaps_lock(fork_interp);
    }
}

void
ft_gc_heaps_after_fork_parent(void)
{
    if (fork_interp != NULL) {
        heaps_unlock(fork_interp);
    }
}

void
ft_gc_heaps_after_fork_child(void)
{
    if (fork_interp != NULL) {
        ft_raw_mutex_after_fork(&fork_interp->gc_heaps_lock);
    }
}
