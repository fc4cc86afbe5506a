/* The parking lot: threads wait on addresses, not on lock-owned queues.
 *
 * Layout.  A fixed table of NUM_BUCKETS buckets; an address belongs to bucket
 * (address mod NUM_BUCKETS).  A bucket is a raw mutex and a FIFO list of
 * wait entries, one per parked thread, each on that thread's own stack:
 *
 *     bucket[i]: mutex | first -> entry <-> entry <-> entry <- last
 *     entry:     addr, park_arg, semaphore, is_unparking
 *
 * Protocol (who changes what, under which lock):
 *   park (the waiting thread):
 *     1. lock bucket; if *addr != *expected: unlock, return AGAIN.
 *     2. append own entry; unlock.       -- from here an unparker can find it
 *     3. [detach the thread state via the registered hook]
 *     4. sleep on the entry's semaphore until posted, the deadline, or (if
 *        interruptible) a signal.
 *     5. if woken by a post: return OK.
 *        Otherwise lock bucket and look at is_unparking:
 *          false: remove own entry, unlock, return TIMEOUT / INTR;
 *          true:  an unparker already removed the entry and will post; the
 *                 post must land before this stack frame is left, so unlock
 *                 and wait for it without deadline; return OK.
 *     6. [re-attach]
 *   unpark (any thread):
 *     lock bucket; remove the first entry with this addr and set its
 *     is_unparking; call the caller's callback (still under the lock, so it
 *     can update the lock word atomically with respect to new parkers);
 *     unlock; post the entry's semaphore (outside the lock: shorter holds).
 *   unpark_all: the same for every entry with this addr, posting each after
 *     unlocking; an entry's next pointer is read before it is posted, since
 *     the woken thread may return and reuse that stack at once.
 *
 * Why no wake-up is lost: step 1 compares the lock word under the bucket
 * lock, and a releaser changes the word before (or, in the callback, while)
 * holding the same bucket lock.  Either the parker sees the new value and
 * returns AGAIN, or its entry is already listed when the releaser looks.
 *
 * Orderings: the bucket mutex orders everything inside a bucket (entries,
 * is_unparking, callback stores).  The semaphore post is a release and the
 * wait an acquire, so what the unparker did before posting (e.g. the mutex
 * hand-off flag set in the callback) is visible to the woken thread.
 *
 * has_more_waiters in the unpark callback is exact for the address: the
 * bucket is scanned past the woken entry for another one with the same
 * address, so a mutex whose neighbour in the table has waiters is not told
 * to keep its has-parked bit.  Buckets hold few entries; the scan is short.
 */
#include "ft_parking_lot.h"
#include "ft_raw_mutex.h"
#include "ft_semaphore.h"

#include <stdatomic.h>
#include <string.h>

/* A prime, so that addresses with a common stride spread over the buckets;
 * far more buckets than cores, so bucket locks rarely meet. */
#define NUM_BUCKETS 257

struct wait_entry {
    struct wait_entry *prev, *next;
    const void *addr;
    void *park_arg;
    bool is_unparking;      /* set by the unparker under the bucket lock */
    ft_semaphore sema;
};

struct bucket {
    ft_raw_mutex mutex;
    struct wait_entry *first, *last;
} __attribute__((aligned(64)));    /* one cache line each: no false sharing */

static struct bucket buckets[NUM_BUCKETS];

static const ft_detach_hooks *_Atomic detach_hooks;

void
ft_parking_lot_set_detach_hooks(const ft_detach_hooks *hooks)
{
    /* release: the hook's code and data are ready before anyone calls it */
    atomic_store_explicit(&detach_hooks, hooks, memory_order_release);
}

static inline struct bucket *
bucket_of(const void *addr)
{
    return &buckets[(uintptr_t)addr % NUM_BUCKETS];
}

static void
enqueue(struct bucket *b, struct wait_entry *e)
{
    e->next = NULL;
    e->prev = b->last;
    if (b->last) {
        b->last->next = e;
    }
    else {
        b->first = e;
    }
    b->last = e;
}

static void
dequeue(struct bucket *b, struct wait_entry *e)
{
    if (e->prev) {
        e->prev->next = e->next;
    }
    else {
        b->first = e->next;
    }
    if (e->next) {
        e->next->prev = e->prev;
    }
    else {
        b->last = e->prev;
    }
    e->prev = e->next = NULL;
}

static struct wait_entry *
find_from(struct wait_entry *e, const void *addr)
{
    while (e && e->addr != addr) {
        e = e->next;
    }
    return e;
}

/* The lock word is read atomically: other threads change it without the
 * bucket lock (only the transition to "parked" is ordered by the lock). */
static bool
value_matches(const void *addr, const void *expected, size_t size)
{
    switch (size) {
    case 1:
        return __atomic_load_n((const uint8_t *)addr, __ATOMIC_RELAXED) ==
               *(const uint8_t *)expected;
    case 2:
        return __atomic_load_n((const uint16_t *)addr, __ATOMIC_RELAXED) ==
               *(const uint16_t *)expected;
    case 4:
        return __atomic_load_n((const uint32_t *)addr, __ATOMIC_RELAXED) ==
               *(const uint32_t *)expected;
    case 8:
        return __atomic_load_n((const uint64_t *)addr, __ATOMIC_RELAXED) ==
               *(const uint64_t *)expected;
    default:
        _Py_FatalErrorFunc("ft_parking_lot_park", "size must be 1, 2, 4 or 8");
    }
}

ft_park_result
ft_parking_lot_park(const void *addr, const void *expected, size_t size,
                    int64_t timeout_ns, void *park_arg, int flags)
{
    struct bucket *b = bucket_of(addr);
    struct wait_entry entry = { .addr = addr, .park_arg = park_arg };
    ft_semaphore_init(&entry.sema);
    int64_t deadline = ft_deadline_after(timeout_ns);

    ft_raw_mutex_lock(&b->mutex);
    if (!value_matches(addr, expected, size)) {
        ft_raw_mutex_unlock(&b->mutex);
        return FT_PARK_AGAIN;
    }
    if (timeout_ns == 0) {
        ft_raw_mutex_unlock(&b->mutex);
        return FT_PARK_TIMEOUT;
    }
    enqueue(b, &entry);
    ft_raw_mutex_unlock(&b->mutex);

    const ft_detach_hooks *hooks = NULL;
    void *token = NULL;
    if (flags & FT_PARK_DETACH) {
        hooks = atomic_load_explicit(&detach_hooks, memory_order_acquire);
        if (hooks) {
            token = hooks->detach();
        }
    }

    ft_sema_result r = ft_semaphore_wait(&entry.sema, deadline,
                                         (flags & FT_PARK_INTERRUPTIBLE) != 0);
    if (r != FT_SEMA_OK) {
        ft_raw_mutex_lock(&b->mutex);
        bool committed = entry.is_unparking;
        if (!committed) {
            dequeue(b, &entry);
        }
        ft_raw_mutex_unlock(&b->mutex);
        if (committed) {
            /* The unparker owns our entry until it posts: wait for that. */
            (void)ft_semaphore_wait(&entry.sema, -1, false);
            r = FT_SEMA_OK;
        }
    }

    if (token) {
        hooks->reattach(token);
    }
    switch (r) {
    case FT_SEMA_OK:
        return FT_PARK_OK;
    case FT_SEMA_TIMEOUT:
        return FT_PARK_TIMEOUT;
    default:
        return FT_PARK_INTR;
    }
}

void
ft_parking_lot_unpark(const void *addr, ft_unpark_fn *fn, void *arg)
{
    struct bucket *b = bucket_of(addr);
    ft_raw_mutex_lock(&b->mutex);
    struct wait_entry *e = find_from(b->first, addr);
    bool more = false;
    if (e) {
        more = find_from(e->next, addr) != NULL;
        dequeue(b, e);
        e->is_unparking = true;
    }
    if (fn) {
        fn(arg, e ? e->park_arg : NULL, more);
    }
    ft_raw_mutex_unlock(&b->mutex);
    if (e) {
        ft_semaphore_post(&e->sema);
    }
}

int
ft_parking_lot_unpark_all(const void *addr)
{
    struct bucket *b = bucket_of(addr);
    struct wait_entry *woken = NULL, **tail = &woken;
    int n = 0;

    ft_raw_mutex_lock(&b->mutex);
    struct wait_entry *e = find_from(b->first, addr);
    while (e) {
        struct wait_entry *next = find_from(e->next, addr);
        dequeue(b, e);
        e->is_unparking = true;
        *tail = e;          /* reuse the list link: e->next is NULL now */
        tail = &e->next;
        n++;
        e = next;
    }
    ft_raw_mutex_unlock(&b->mutex);

    while (woken) {
        struct wait_entry *next = woken->next;   /* read before the post */
        ft_semaphore_post(&woken->sema);
        woken = next;
    }
    return n;
}

int
ft_parking_lot_waiters(const void *addr)
{
    struct bucket *b = bucket_of(addr);
    int n = 0;
    ft_raw_mutex_lock(&b->mutex);
    for (struct wait_entry *e = find_from(b->first, addr); e; e = find_from(e->next, addr)) {
        n++;
    }
    ft_raw_mutex_unlock(&b->mutex);
    return n;
}

void
ft_parking_lot_after_fork(void)
{
    /* The child has only the forking thread; no one it could wake exists, and
     * a bucket lock held by another thread at fork time must not stay held. */
    memset(buckets, 0, sizeof buckets);
}
