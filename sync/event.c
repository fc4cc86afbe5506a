/* One-byte synchronisation objects on the parking lot: ft_event and
 * ft_once_flag.
 *
 * ---- ft_event ---------------------------------------------------------------
 *
 *     value  meaning                          written by
 *       0    not set, nobody parked           zero-initialisation
 *       2    not set, threads may be parked   a waiter, CAS 0 -> 2, before parking
 *       1    set (final)                      ft_event_set, exchange from 0 or 2
 *
 * The byte only moves 0 -> 2, 0 -> 1 and 2 -> 1; nothing ever leaves 1.
 * ft_event_set exchanges the byte with 1 and, if it took 2 out, calls
 * ft_parking_lot_unpark_all; with 0 nobody can be parked (a waiter parks
 * only while the byte is 2), so no parking-lot look-up is needed.
 *
 * No lost wake-up: a waiter parks expecting 2, and the parking lot compares
 * the byte under the bucket lock that unpark_all also takes.  If the
 * waiter's compare comes first it is queued before the setter looks;
 * otherwise the setter's exchange (sequenced before its bucket lock) is
 * visible to the compare, which sees 1 and returns FT_PARK_AGAIN.
 *
 * Orderings: the exchange in set is a release (acq_rel, as it also reads),
 * and every load that may observe 1 in the wait paths is an acquire, so
 * whatever the setter wrote before setting is visible to a thread that has
 * seen the event set.  The CAS 0 -> 2 publishes nothing and is relaxed.
 *
 * ---- ft_once_flag -----------------------------------------------------------
 *
 *     value  meaning                          written by
 *       0    not done (or last run failed)    zero-init; the runner after a failure
 *       1    running                          the caller whose CAS 0 -> 1 won
 *     1|2    running, waiters may be parked   a waiter, CAS 1 -> 3, before parking
 *       4    done (final)                     the runner after fn succeeded
 *
 * The runner leaves "running" with one exchange (to 4 or to 0) so that it
 * learns atomically whether the parked bit was set and must unpark all.
 * After a failure the woken waiters race to CAS 0 -> 1 again: one becomes
 * the next runner, the rest park again.
 *
 * Orderings: the exchange to DONE is a release; it pairs with the acquire
 * load of ft_once_call's fast path (and the acquire loads here), so a caller
 * that sees DONE sees everything fn did.  The exchange to 0 after a failure
 * is a release too and the CAS 0 -> 1 an acquire, so the next runner sees
 * whatever the failed attempt left behind.  Setting the parked bit publishes
 * nothing, but its CAS is an acquire because a failed CAS may read DONE.
 */
#include "ft_lock.h"

/* ---- ft_event ----------------------------------------------------------- */

enum {
    FT_EVENT_UNSET = 0,
    FT_EVENT_SET = 1,
    FT_EVENT_HAS_PARKED = 2,
};

void
ft_event_set(ft_event *e)
{
    /* release: publishes the setter's writes to waiters' acquire loads */
    uint8_t old = __atomic_exchange_n(&e->v, FT_EVENT_SET, __ATOMIC_ACQ_REL);
    if (old == FT_EVENT_HAS_PARKED) {
        ft_parking_lot_unpark_all(&e->v);
    }
}

bool
ft_event_is_set(ft_event *e)
{
    /* acquire: "set" means the setter's writes are visible to the caller */
    return __atomic_load_n(&e->v, __ATOMIC_ACQUIRE) == FT_EVENT_SET;
}

void
ft_event_wait(ft_event *e)
{
    (void)ft_event_wait_timed(e, -1, FT_LOCK_DETACH);
}

bool
ft_event_wait_timed(ft_event *e, int64_t timeout_ns, ft_lock_flags flags)
{
    int park_flags = 0;
    if (flags & FT_LOCK_DETACH) {
        park_flags |= FT_PARK_DETACH;
    }
    if (flags & FT_LOCK_FAIL_IF_INTERRUPTED) {
        park_flags |= FT_PARK_INTERRUPTIBLE;
    }

    /* One absolute deadline; each park gets what is left of it.  A negative
     * timeout, or one so large that the deadline would overflow, is
     * "forever". */
    int64_t deadline = ft_deadline_after(timeout_ns);

    for (;;) {
        /* acquire: pairs with the release exchange in ft_event_set */
        uint8_t v = __atomic_load_n(&e->v, __ATOMIC_ACQUIRE);
        if (v == FT_EVENT_SET) {
            return true;
        }

        int64_t remaining = ft_deadline_remaining(deadline);
        if (remaining == 0) {
            return false;   /* (the byte may stay 2: harmless) */
        }

        if (v == FT_EVENT_UNSET) {
            uint8_t expected = FT_EVENT_UNSET;
            /* relaxed: announcing a waiter publishes nothing; on failure the
             * loop re-reads the byte with acquire */
            if (!__atomic_compare_exchange_n(&e->v, &expected, FT_EVENT_HAS_PARKED,
                                             0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                continue;
            }
        }

        uint8_t park_on = FT_EVENT_HAS_PARKED;
        ft_park_result r = ft_parking_lot_park(&e->v, &park_on, sizeof park_on,
                                               remaining, NULL, park_flags);
        if (r == FT_PARK_INTR) {
            return ft_event_is_set(e);
        }
        /* OK, AGAIN or TIMEOUT: the loop re-checks the byte, then the clock */
    }
}

/* ---- ft_once_flag ------------------------------------------------------- */

enum {
    FT_ONCE_NOT_DONE = 0,
    FT_ONCE_RUNNING = 1,
    FT_ONCE_PARKED = 2,
};

int
ft_once_call_slow(ft_once_flag *o, ft_once_fn *fn, void *arg)
{
    /* acquire: a DONE seen here must show fn's writes (see the top comment) */
    uint8_t v = __atomic_load_n(&o->v, __ATOMIC_ACQUIRE);
    for (;;) {
        if (v == FT_ONCE_DONE) {
            return 0;
        }

        if (v == FT_ONCE_NOT_DONE) {
            /* acquire on success: see what a failed earlier attempt left
             * behind (its store of 0 was a release).  On failure v is
             * reloaded with acquire, as it may now read DONE. */
            if (!__atomic_compare_exchange_n(&o->v, &v, FT_ONCE_RUNNING, 0,
                                             __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)) {
                continue;
            }
            int res = fn(arg);   /* any negative result is a failure */
            uint8_t next = res < 0 ? FT_ONCE_NOT_DONE : FT_ONCE_DONE;
            /* release: publishes fn's effects together with DONE (or with
             * 0, to the next runner).  An exchange, not a store, because
             * waiters may have set the parked bit meanwhile. */
            uint8_t old = __atomic_exchange_n(&o->v, next, __ATOMIC_RELEASE);
            if (old & FT_ONCE_PARKED) {
                ft_parking_lot_unpark_all(&o->v);
            }
            return res < 0 ? -1 : 0;
        }

        /* Someone else is running fn: make sure the runner will look in the
         * parking lot, then sleep until it is done. */
        if (!(v & FT_ONCE_PARKED)) {
            uint8_t with_parked = (uint8_t)(v | FT_ONCE_PARKED);
            /* The bit itself publishes nothing, but on failure v is
             * reloaded and may read DONE, which needs acquire; the success
             * order may not be weaker than the failure order. */
            if (!__atomic_compare_exchange_n(&o->v, &v, with_parked, 0,
                                             __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)) {
                continue;
            }
            v = with_parked;
        }
        /* FT_PARK_AGAIN means the byte already changed; every outcome
         * re-reads it below. */
        (void)ft_parking_lot_park(&o->v, &v, sizeof v, -1, NULL, FT_PARK_DETACH);
        /* acquire: pairs with the runner's release exchange */
        v = __atomic_load_n(&o->v, __ATOMIC_ACQUIRE);
    }
}
