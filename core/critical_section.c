/* Critical sections: per-object locks that cannot deadlock by lock order.
 *
 * A section locks one mutex (an object's ob_mutex, or any PyMutex) or two,
 * for the extent of a C block.  Sections nest, but a thread holds the locks
 * of its innermost section only for certain: whenever the thread detaches,
 * every section it has is suspended (its locks released), and when it
 * attaches again only the innermost one is re-locked; an outer one is
 * re-locked when the sections above it have ended.  A thread therefore
 * never waits for a lock while holding another one of its sections (with one
 * exception, below), which is what rules out deadlocks between sections.
 *
 * THE STACK (ft_critical_section.h)
 *   ts->critical_section points at the innermost section; each section's
 *   _cs_prev at the next one out; 0 ends the chain.  Sections live in their
 *   callers' stack frames.  Bit 0 of a link (INACTIVE) says the section it
 *   points to is suspended, bit 1 (TWO_MUTEXES) that it is a
 *   PyCriticalSection2.  Every field of the stack is read and written by the
 *   owning thread only (detach, attach, begin and end all run on it), so none
 *   of it is atomic; the mutexes order the data they protect.
 *
 * STATES OF A SECTION
 *
 *     no-op        begun while the innermost section already held the lock
 *                  (re-entry), or while the thread had the world stopped:
 *                  mutex NULL, never pushed, End does nothing
 *     locking      pushed with its mutex field(s) NULL, waiting for the
 *                  lock(s) (begin's slow path, resume)
 *     active       pushed, mutex field(s) set and held
 *     suspended    pushed, INACTIVE on the link to it, mutex field(s) set,
 *                  nothing held
 *
 *     begin:   fast path  -> active (one CAS per mutex)
 *              slow path  -> no-op, or locking -> active
 *     detach:  suspend_all: from the top down, while a link is not INACTIVE:
 *              unlock what the section records (a locking one records
 *              nothing), set INACTIVE on its link; stop at the first
 *              INACTIVE link (everything below was suspended earlier)
 *     attach:  resume: the top section, if suspended -> locking -> active
 *     end:     unlock, pop; if the new top is suspended, resume it
 *
 *   Resume clears the section's mutex fields before it locks (locking) and
 *   restores them after: if it has to wait, it detaches again, and that
 *   suspend_all must not unlock a mutex the thread does not hold yet.  The
 *   same goes for begin's slow path, which pushes the section before it
 *   waits so that the wait's detach suspends the outer sections.
 *
 *   The exception: a two-mutex section that holds its first lock and waits
 *   for its second (in begin or in resume) keeps the first while it waits
 *   (it is not recorded until both are held).  This cannot close a cycle: every two-mutex section
 *   takes the lower address first, and a thread waiting in any other way
 *   holds nothing.
 *
 * RE-ENTRY
 *   Beginning a section on a lock the innermost section already holds is a
 *   no-op.  If an outer (active) section holds it, the thread would wait on
 *   itself: begin suspends its sections first (what the wait's detach would
 *   do a moment later, without spinning on its own lock).
 *
 * ORDERING AGAINST DETACH, ATTACH AND STOP-THE-WORLD
 *   - Detach runs suspend_all before it publishes DETACHED (release), and a
 *     safe point before it publishes SUSPENDED: a thread seen detached or
 *     suspended has released (or handed off) every lock its sections held.
 *     Attach resumes only after its CAS to ATTACHED has succeeded and no
 *     stop is pending, i.e. once the thread is allowed to run; the re-lock
 *     may wait, detached, like any PyMutex_Lock.
 *   - The unlocks and locks are PyMutex operations (acquire on lock,
 *     release on unlock), which is what orders the protected data.
 *   - gh-144513: a lock released by a suspending thread may be handed (the
 *     mutex's fairness hand-off) to a waiter that is itself suspended by the
 *     stop; the requester would then wait forever for it.  So a section the
 *     requester begins while it has the world stopped locks nothing if its
 *     fast path fails (the lock is busy): no other thread of the interpreter
 *     runs, nothing needs excluding.  ("Has the world stopped" is
 *     stw.requester == ts, see ft_cs_world_stopped_by.)
 *   - The same hazard at resume: while a thread is the requester, resuming
 *     its sections is deferred (they stay suspended, INACTIVE) until
 *     ft_start_the_world has let the world go, which resumes the top one.  An
 *     End that meets its own section suspended pops it without unlocking.
 *   - gh-158195: a thread that must wait for another requester to finish
 *     (the stop mutex is busy) detaches for the wait, which suspends its
 *     sections; it must not re-lock them on winning the mutex, because the
 *     lock may be held by a thread that is itself queued on the stop mutex.
 *     ft_stop_the_world therefore records itself as requester before it
 *     re-attaches (core/tstate.c), so the re-attach defers the resumption,
 *     and ft_start_the_world resumes the top section after releasing the
 *     mutex: by the time it returns, the section is active again.
 *
 * GIL BUILD
 *   The macros are bare braces; the functions return at once.
 */
#include "ft_critical_section.h"
#include "ft_object.h"

static void _Py_NO_RETURN
fatal(const char *func, const char *msg)
{
    _Py_FatalErrorFunc(func, msg);
}

/* ---- helpers ---------------------------------------------------------------- */

/* Does the section a link points to record m? */
static inline bool
section_holds(uintptr_t link, PyMutex *m)
{
    PyCriticalSection *c = ft_cs_untag(link);
    return c->_cs_mutex == m ||
           ((link & FT_CS_TWO_MUTEXES) && ((PyCriticalSection2 *)c)->_cs_mutex2 == m);
}

/* Does any active section of the stack record m? */
static bool
stack_holds(uintptr_t link, PyMutex *m)
{
    while (link != 0 && !(link & FT_CS_INACTIVE)) {
        if (section_holds(link, m)) {
            return true;
        }
        link = ft_cs_untag(link)->_cs_prev;
    }
    return false;
}

static inline void
make_noop(PyCriticalSection *c)
{
    c->_cs_mutex = NULL;
    c->_cs_prev = 0;
}

static inline void
lock_detaching(PyMutex *m)
{
    (void)ft_mutex_lock_timed(m, -1, FT_LOCK_DETACH);
}

void
ft_cs_unlock_slow(PyMutex *m, const char *func)
{
    if (ft_mutex_try_unlock(m) < 0) {
        fatal(func, "the section's mutex is not locked (an object's ob_mutex may be "
                    "used through critical sections only)");
    }
}

void
ft_cs_bad_begin(const char *func, ft_tstate *ts)
{
    if (ts == NULL) {
        fatal(func, "no thread state is attached (critical sections need one)");
    }
    fatal(func, "the object or mutex is NULL");
}

/* ---- begin and end -------------------------------------------------------------- */

void
ft_cs_begin_slow(ft_tstate *ts, PyCriticalSection *c, PyMutex *m)
{
    if (ft_critical_section_top_holds(ts, m) || ft_cs_world_stopped_by(ts)) {
        make_noop(c);
        return;
    }
    if (stack_holds(ts->critical_section, m)) {
        ft_critical_section_suspend_all(ts);
    }
    c->_cs_mutex = NULL;                          /* locking */
    c->_cs_prev = ts->critical_section;
    ts->critical_section = (uintptr_t)c;
    lock_detaching(m);
    c->_cs_mutex = m;                             /* active */
}

void
ft_cs2_begin_slow(ft_tstate *ts, PyCriticalSection2 *c, PyMutex *m1, PyMutex *m2,
                  bool m1_locked)
{
    uintptr_t top = ts->critical_section;
    if ((ft_critical_section_top_holds(ts, m1) &&
         (m2 == NULL || ft_critical_section_top_holds(ts, m2))) ||
        ft_cs_world_stopped_by(ts)) {
        if (m1_locked) {
            ft_cs_unlock(m1, "PyCriticalSection2_Begin");
        }
        make_noop(&c->_cs_base);
        c->_cs_mutex2 = NULL;
        return;
    }
    if ((!m1_locked && stack_holds(top, m1)) || (m2 != NULL && stack_holds(top, m2))) {
        ft_critical_section_suspend_all(ts);
    }
    c->_cs_base._cs_mutex = NULL;                 /* locking */
    c->_cs_mutex2 = NULL;
    c->_cs_base._cs_prev = ts->critical_section;
    ts->critical_section = (uintptr_t)c | FT_CS_TWO_MUTEXES;
    if (!m1_locked) {
        lock_detaching(m1);
    }
    if (m2 != NULL) {
        lock_detaching(m2);
    }
    c->_cs_base._cs_mutex = m1;                   /* active */
    c->_cs_mutex2 = m2;
}

void
ft_cs_end_slow(PyCriticalSection *c, bool two, const char *func)
{
    ft_tstate *ts = ft_tls_current;
    if (ts == NULL) {
        fatal(func, "no thread state is attached (a section must end on the thread "
                    "that began it, while attached)");
    }
    uintptr_t self = (uintptr_t)c | (two ? FT_CS_TWO_MUTEXES : 0);
    uintptr_t top = ts->critical_section;
    if (top == (self | FT_CS_INACTIVE)) {
        /* Suspended, and its resumption deferred because this thread has the
         * world stopped (or had: a fork child ends the stop without
         * ft_start_the_world).  It holds nothing: pop it. */
        uintptr_t prev = c->_cs_prev;
        ts->critical_section = prev;
        if (prev & FT_CS_INACTIVE) {
            ft_critical_section_resume(ts);
        }
        return;
    }
    if (top == 0) {
        fatal(func, "no critical section is active (ended twice, or never begun)");
    }
    if (ft_cs_untag(top) == c) {
        fatal(func, two ? "the section was begun as a one-object section "
                          "(end it with PyCriticalSection_End)"
                        : "the section was begun as a two-object section "
                          "(end it with PyCriticalSection2_End)");
    }
    fatal(func, "critical sections ended out of order: this is not the innermost "
                "active section (an inner one was not ended, or this one was ended "
                "already)");
}

/* ---- suspend and resume (detach and attach) --------------------------------------- */

void
ft_critical_section_suspend_all(ft_tstate *ts)
{
    uintptr_t *link = &ts->critical_section;
    uintptr_t tagged = *link;
    while (tagged != 0 && !(tagged & FT_CS_INACTIVE)) {
        PyCriticalSection *c = ft_cs_untag(tagged);
        if (tagged & FT_CS_TWO_MUTEXES) {
            PyMutex *m2 = ((PyCriticalSection2 *)c)->_cs_mutex2;
            if (m2 != NULL) {
                ft_cs_unlock(m2, "critical section suspend (detach)");
            }
        }
        if (c->_cs_mutex != NULL) {
            ft_cs_unlock(c->_cs_mutex, "critical section suspend (detach)");
        }
        *link = tagged | FT_CS_INACTIVE;
        link = &c->_cs_prev;
        tagged = *link;
    }
}

void
ft_critical_section_resume(ft_tstate *ts)
{
    uintptr_t top = ts->critical_section;
    if (!(top & FT_CS_INACTIVE) || ft_cs_world_stopped_by(ts)) {
        return;   /* empty or active; or deferred until the world restarts */
    }
    PyCriticalSection *c = ft_cs_untag(top);
    PyCriticalSection2 *c2 = (PyCriticalSection2 *)c;
    bool two = (top & FT_CS_TWO_MUTEXES) != 0;
    PyMutex *m1 = c->_cs_mutex;
    PyMutex *m2 = two ? c2->_cs_mutex2 : NULL;
    c->_cs_mutex = NULL;                          /* locking */
    if (two) {
        c2->_cs_mutex2 = NULL;
    }
    if (m1 != NULL) {
        lock_detaching(m1);
    }
    if (m2 != NULL) {
        lock_detaching(m2);
    }
    c->_cs_mutex = m1;                            /* active */
    if (two) {
        c2->_cs_mutex2 = m2;
    }
    /* A wait above may have suspended and resumed the (then empty-handed)
     * section again; either way it is the top and is now active. */
    ts->critical_section = (uintptr_t)c | (top & FT_CS_TWO_MUTEXES);
}

/* ---- the exported API ----------------------------------------------------------------- */

void
PyCriticalSection_Begin(PyCriticalSection *c, PyObject *op)
{
    if (!ft_free_threaded) {
        return;
    }
    if (ft_unlikely(op == NULL)) {
        fatal("PyCriticalSection_Begin", "the object is NULL");
    }
    ft_critical_section_begin(c, ft_object_mutex(op), "PyCriticalSection_Begin");
}

void
PyCriticalSection_BeginMutex(PyCriticalSection *c, PyMutex *m)
{
    if (!ft_free_threaded) {
        return;
    }
    ft_critical_section_begin(c, m, "PyCriticalSection_BeginMutex");
}

void
PyCriticalSection_End(PyCriticalSection *c)
{
    if (!ft_free_threaded) {
        return;
    }
    ft_critical_section_end(c, "PyCriticalSection_End");
}

void
PyCriticalSection2_Begin(PyCriticalSection2 *c, PyObject *a, PyObject *b)
{
    if (!ft_free_threaded) {
        return;
    }
    if (ft_unlikely(a == NULL || b == NULL)) {
        fatal("PyCriticalSection2_Begin", "an object is NULL");
    }
    ft_critical_section2_begin(c, ft_object_mutex(a), ft_object_mutex(b),
                               "PyCriticalSection2_Begin");
}

void
PyCriticalSection2_BeginMutex(PyCriticalSection2 *c, PyMutex *m1, PyMutex *m2)
{
    if (!ft_free_threaded) {
        return;
    }
    ft_critical_section2_begin(c, m1, m2, "PyCriticalSection2_BeginMutex");
}

void
PyCriticalSection2_End(PyCriticalSection2 *c)
{
    if (!ft_free_threaded) {
        return;
    }
    ft_critical_section2_end(c, "PyCriticalSection2_End");
}
