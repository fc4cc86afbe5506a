/* Critical sections, the runtime's view: inline fast paths of begin and end
 * (the exported PyCriticalSection_* functions are these), and the tagged
 * pointers.  The protocol is described at the top of core/critical_section.c.
 *
 * A thread's sections form a stack on its C stack: ts->critical_section
 * points at the innermost one, each section's _cs_prev at the one below it.
 * The low two bits of each of those pointers describe the section it points
 * to (sections are 8-byte aligned):
 *
 *   FT_CS_INACTIVE     the section is suspended: its mutexes are not held
 *   FT_CS_TWO_MUTEXES  the section is a PyCriticalSection2
 *
 * Free-threaded build only; in the GIL build nothing here is ever reached
 * (the public functions return at once).
 */
#ifndef FT_CRITICAL_SECTION_H
#define FT_CRITICAL_SECTION_H

#include "ft_lock.h"
#include "ft_pystate.h"

#define FT_CS_INACTIVE    ((uintptr_t)1)
#define FT_CS_TWO_MUTEXES ((uintptr_t)2)
#define FT_CS_TAG_MASK    ((uintptr_t)3)

_Static_assert(_Alignof(PyCriticalSection) >= 4,
               "the two tag bits need 4-byte aligned sections");

static inline PyCriticalSection *
ft_cs_untag(uintptr_t tagged)
{
    return (PyCriticalSection *)(tagged & ~FT_CS_TAG_MASK);
}

/* The object's lock.  The two object headers differ here: the GIL build has
 * no ob_mutex (and never asks for it). */
static inline PyMutex *
ft_object_mutex(PyObject *op)
{
#ifdef Py_GIL_DISABLED
    return &op->ob_mutex;
#else
    (void)op;
    return NULL;
#endif
}

/* True while ts is its interpreter's stop-the-world requester (from when it
 * owns the stop mutex until ft_start_the_world lets it go): then no other
 * thread of the interpreter runs.  Only ts ever stores ts there, so a relaxed
 * load of our own identity cannot be stale in the way that matters. */
static inline bool
ft_cs_world_stopped_by(ft_tstate *ts)
{
    return atomic_load_explicit(&ts->base.interp->stw.requester, memory_order_relaxed) == ts;
}

/* Out of line (core/critical_section.c). */
FT_INTERNAL void ft_cs_begin_slow(ft_tstate *ts, PyCriticalSection *c, PyMutex *m);
/* m1 < m2, or m2 NULL for the same mutex twice; m1_locked: the fast path
 * already holds m1. */
FT_INTERNAL void ft_cs2_begin_slow(ft_tstate *ts, PyCriticalSection2 *c, PyMutex *m1,
                                   PyMutex *m2, bool m1_locked);
/* End of a section that is not the active innermost one of an attached
 * thread: a suspended innermost section (resumption deferred by a stop of
 * the world), or misuse, which is fatal naming `func`. */
FT_INTERNAL void ft_cs_end_slow(PyCriticalSection *c, bool two, const char *func);
/* Fatal: begin with no attached thread state, or with a NULL mutex/object. */
FT_INTERNAL void _Py_NO_RETURN ft_cs_bad_begin(const char *func, ft_tstate *ts);
/* Unlock a section's mutex, fatal (naming func) if it was not locked. */
FT_INTERNAL void ft_cs_unlock_slow(PyMutex *m, const char *func);

static inline void
ft_cs_unlock(PyMutex *m, const char *func)
{
    if (ft_unlikely(!ft_mutex_unlock_fast(m))) {
        ft_cs_unlock_slow(m, func);
    }
}

/* ---- the fast paths --------------------------------------------------------- */

static inline void
ft_critical_section_begin(PyCriticalSection *c, PyMutex *m, const char *func)
{
    ft_tstate *ts = ft_tls_current;
    if (ft_unlikely(ts == NULL || m == NULL)) {
        ft_cs_bad_begin(func, ts);
    }
    if (ft_likely(ft_mutex_lock_fast(m))) {
        /* The top section is active whenever its thread is attached, so the
         * link keeps only its TWO_MUTEXES tag. */
        c->_cs_mutex = m;
        c->_cs_prev = ts->critical_section;
        ts->critical_section = (uintptr_t)c;
        return;
    }
    ft_cs_begin_slow(ts, c, m);
}

static inline void
ft_critical_section_end(PyCriticalSection *c, const char *func)
{
    PyMutex *m = c->_cs_mutex;
    if (m == NULL) {
        return;   /* a section that locked nothing (re-entry, world stopped) */
    }
    ft_tstate *ts = ft_tls_current;
    if (ft_unlikely(ts == NULL || ts->critical_section != (uintptr_t)c)) {
        ft_cs_end_slow(c, false, func);
        return;
    }
    ft_cs_unlock(m, func);
    uintptr_t prev = c->_cs_prev;
    ts->critical_section = prev;
    if (ft_unlikely(prev & FT_CS_INACTIVE)) {
        ft_critical_section_resume(ts);
    }
}

/* m1 and m2 in any order, possibly equal. */
static inline void
ft_critical_section2_begin(PyCriticalSection2 *c, PyMutex *m1, PyMutex *m2, const char *func)
{
    ft_tstate *ts = ft_tls_current;
    if (ft_unlikely(ts == NULL || m1 == NULL || m2 == NULL)) {
        ft_cs_bad_begin(func, ts);
    }
    if (m1 == m2) {
        m2 = NULL;   /* one lock, still a two-mutex section for End2 */
    }
    else if ((uintptr_t)m2 < (uintptr_t)m1) {
        /* lower address first: one global order, so no two threads can each
         * hold one of the pair and wait for the other */
        PyMutex *t = m1;
        m1 = m2;
        m2 = t;
    }
    if (ft_likely(ft_mutex_lock_fast(m1))) {
        if (ft_likely(m2 == NULL || ft_mutex_lock_fast(m2))) {
            c->_cs_base._cs_mutex = m1;
            c->_cs_mutex2 = m2;
            c->_cs_base._cs_prev = ts->critical_section;
            ts->critical_section = (uintptr_t)c | FT_CS_TWO_MUTEXES;
            return;
        }
        ft_cs2_begin_slow(ts, c, m1, m2, true);
        return;
    }
    ft_cs2_begin_slow(ts, c, m1, m2, false);
}

static inline void
ft_critical_section2_end(PyCriticalSection2 *c, const char *func)
{
    PyMutex *m1 = c->_cs_base._cs_mutex;
    if (m1 == NULL) {
        return;
    }
    ft_tstate *ts = ft_tls_current;
    if (ft_unlikely(ts == NULL ||
                    ts->critical_section != ((uintptr_t)c | FT_CS_TWO_MUTEXES))) {
        ft_cs_end_slow(&c->_cs_base, true, func);
        return;
    }
    PyMutex *m2 = c->_cs_mutex2;
    if (m2 != NULL) {
        ft_cs_unlock(m2, func);
    }
    ft_cs_unlock(m1, func);
    uintptr_t prev = c->_cs_base._cs_prev;
    ts->critical_section = prev;
    if (ft_unlikely(prev & FT_CS_INACTIVE)) {
        ft_critical_section_resume(ts);
    }
}

/* For assertions in the runtime's own code (containers, later): whether
 * the calling thread's innermost section holds m.  Only the innermost one is
 * guaranteed to hold its locks; outer ones may be suspended at any time. */
static inline bool
ft_critical_section_top_holds(ft_tstate *ts, PyMutex *m)
{
    uintptr_t top = ts->critical_section;
    if (top == 0 || (top & FT_CS_INACTIVE)) {
        return false;
    }
    PyCriticalSection *c = ft_cs_untag(top);
    return c->_cs_mutex == m ||
           ((top & FT_CS_TWO_MUTEXES) && ((PyCriticalSection2 *)c)->_cs_mutex2 == m);
}

/* The runtime's own containers enter their sections through the inline
 * fast paths above, not through the exported functions (which are the
 * same code behind a call): the public macros are redefined for every
 * library file that includes this header.  A misuse is reported under the
 * macro's name. */
#ifdef Py_GIL_DISABLED
#undef Py_BEGIN_CRITICAL_SECTION
#undef Py_END_CRITICAL_SECTION
#undef Py_BEGIN_CRITICAL_SECTION2
#undef Py_END_CRITICAL_SECTION2
#define Py_BEGIN_CRITICAL_SECTION(op)                                          \
    {                                                                          \
        PyCriticalSection py_cs_;                                              \
        ft_critical_section_begin(&py_cs_, ft_object_mutex(_PyObject_CAST(op)), \
                                  "Py_BEGIN_CRITICAL_SECTION")
#define Py_END_CRITICAL_SECTION()                                              \
        ft_critical_section_end(&py_cs_, "Py_END_CRITICAL_SECTION");           \
    }
#define Py_BEGIN_CRITICAL_SECTION2(a, b)                                       \
    {                                                                          \
        PyCriticalSection2 py_cs2_;                                            \
        ft_critical_section2_begin(&py_cs2_, ft_object_mutex(_PyObject_CAST(a)), \
                                   ft_object_mutex(_PyObject_CAST(b)),         \
                                   "Py_BEGIN_CRITICAL_SECTION2")
#define Py_END_CRITICAL_SECTION2()                                             \
        ft_critical_section2_end(&py_cs2_, "Py_END_CRITICAL_SECTION2");        \
    }
#endif

#endif /* FT_CRITICAL_SECTION_H */
