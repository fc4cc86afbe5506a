/* The parking lot: waiting on an address (sync/parking_lot.c).
 *
 * Locks and events built on it keep no wait queue of their own; a thread
 * that must wait "parks" on the lock's address in a process-wide hash table,
 * and the releasing thread "unparks" it.  Park compares the value at the
 * address with the expected one under the bucket lock that unpark also
 * takes, so a wake-up between "I saw it locked" and "I am asleep" cannot be
 * lost.  The design follows WebKit's WTF::ParkingLot and CPython's
 * Python/parking_lot.c.
 *
 *     // waiter                                // waker
 *     while (load(&word) == BUSY)              store(&word, FREE);
 *         ft_parking_lot_park(&word, &BUSY,    ft_parking_lot_unpark_all(&word);
 *                             sizeof word, -1, NULL, 0);
 */
#ifndef FT_PARKING_LOT_H
#define FT_PARKING_LOT_H

#include "ft_core.h"

typedef enum ft_park_result {
    FT_PARK_OK = 0,          /* unparked by ft_parking_lot_unpark[_all] */
    FT_PARK_AGAIN = -1,      /* the value at addr was not the expected one */
    FT_PARK_TIMEOUT = -2,    /* the timeout passed first */
    FT_PARK_INTR = -3,       /* a signal handler ran (FT_PARK_INTERRUPTIBLE) */
} ft_park_result;

enum {
    /* Detach the calling thread's thread state while asleep (through the
     * registered hook), so stop-the-world and the GIL can proceed. */
    FT_PARK_DETACH = 1,
    /* Return FT_PARK_INTR when a signal handler runs during the sleep. */
    FT_PARK_INTERRUPTIBLE = 2,
};

/* Park the calling thread on addr if *addr (size 1, 2, 4 or 8 bytes) equals
 * *expected.  timeout_ns: relative, -1 = forever, 0 = give up at once (after
 * the compare).  park_arg is handed to the unparker's callback. */
FT_INTERNAL ft_park_result ft_parking_lot_park(const void *addr, const void *expected,
                                               size_t size, int64_t timeout_ns,
                                               void *park_arg, int flags);

/* Called by ft_parking_lot_unpark with the bucket lock held, whether or not a
 * thread was found: park_arg is the woken thread's (NULL if none), and
 * has_more_waiters says whether other threads are still parked on this very
 * address (exact: waiters on other addresses in the same bucket do not
 * count, unlike CPython's bucket-wide answer).  The callback must not park,
 * unpark or take a lock that is held while parking. */
typedef void ft_unpark_fn(void *arg, void *park_arg, bool has_more_waiters);

/* Wake the longest-parked thread on addr (FIFO), after calling fn. */
FT_INTERNAL void ft_parking_lot_unpark(const void *addr, ft_unpark_fn *fn, void *arg);

/* Wake every thread parked on addr; returns how many were woken. */
FT_INTERNAL int ft_parking_lot_unpark_all(const void *addr);

/* How many threads are parked on addr right now (enqueued, not merely
 * announced through a lock bit): for tests and diagnostics that must know a
 * waiter is really queued, e.g. before relying on FIFO hand-off order. */
FT_INTERNAL int ft_parking_lot_waiters(const void *addr);

/* In the child after fork(): every parked thread is gone. */
FT_INTERNAL void ft_parking_lot_after_fork(void);

/* The detach hook.  sync/ knows nothing of thread states; the runtime layer
 * (core/) registers these once it exists.  detach() returns a token (NULL if
 * the calling thread had nothing attached) and reattach(token) undoes it.
 * Until registered, parking with FT_PARK_DETACH detaches nothing. */
typedef struct ft_detach_hooks {
    void *(*detach)(void);
    void (*reattach)(void *token);
} ft_detach_hooks;
FT_INTERNAL void ft_parking_lot_set_detach_hooks(const ft_detach_hooks *hooks);

#endif /* FT_PARKING_LOT_H */
