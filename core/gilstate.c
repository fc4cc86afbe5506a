/* Foreign threads: PyGILState_* and PEP 788 (guards, views,
 * PyThreadState_Ensure/Release).
 *
 * Both families find "this thread's state" through the thread's slot
 * (core/tstate.c): slot->last is the state most recently attached on this
 * OS thread, and deleting that state from any thread resets it, so it never
 * dangles.  Counters on the state record nesting; both are touched only by
 * the thread the state is attached to.
 *
 * PyGILState_Ensure: attached already -> counter++, LOCKED.  Otherwise
 *   reuse slot->last if it belongs to the main interpreter and is usable, or
 *   create a state (whence GILSTATE, counter 0); attach; counter++; UNLOCKED.
 * PyGILState_Release: counter--; at 0 a GILSTATE state is cleared and
 *   deleted; otherwise an UNLOCKED handle detaches.  States not created by
 *   Ensure start with counter 1 and are never deleted here (CPython's rule).
 *
 * Guards: interp->guards counts open guards (objects and the implicit ones
 * of EnsureFromView).  Publish-then-check against Py_FinalizeEx:
 *     guard:     guards += 1 (seq_cst) ; load finalize_pending -> if set, undo, fail
 *     finalizer: finalize_pending = 1 (seq_cst) ; wait until guards == 0
 * so either the guard sees finalization coming, or finalization waits for it.
 * Views name an interpreter by its serial (never reused), so a view may
 * outlive its interpreter: using it then just fails.  The main view names
 * the main interpreter by role: it follows re-initialization.
 *
 * A token (PyThreadStateToken *) is the state that was attached before the
 * Ensure (or NULL), tagged in its low bits: valid | switched (Ensure attached
 * another state, Release must detach it and re-attach the old one) |
 * guarded (EnsureFromView took an implicit guard).  No allocation.
 */
#include "ft_alloc.h"
#include "ft_pystate.h"

struct PyInterpreterGuard {
    PyInterpreterState *interp;
};

#define VIEW_MAIN 0   /* serial 0: "the main interpreter", whichever it is */

struct PyInterpreterView {
    uint64_t serial;
};

static void _Py_NO_RETURN
fatal(const char *func, const char *msg)
{
    _Py_FatalErrorFunc(func, msg);
}

/* ---- GILState ------------------------------------------------------------- */

/* The main interpreter, or NULL if the runtime is down or finalizing. */
static PyInterpreterState *
live_main(void)
{
    if (!atomic_load_explicit(&ft_rt.initialized, memory_order_acquire)) {
        return NULL;
    }
    return atomic_load_explicit(&ft_rt.main, memory_order_acquire);
}

/* slot->last if this thread may re-attach it for interp. */
static ft_tstate *
reusable_state(PyInterpreterState *interp)
{
    ft_thread_slot *slot = ft_thread_slot_get();
    if (!slot) {
        return NULL;
    }
    ft_tstate *last = atomic_load_explicit(&slot->last, memory_order_relaxed);
    if (!last || last->base.interp != interp) {
        return NULL;
    }
    uint64_t w = atomic_load_explicit(&last->state, memory_order_acquire);
    if (FT_TS_KIND(w) == FT_TS_SHUTTING_DOWN || last->cleared) {
        return NULL;
    }
    return last;
}

PyGILState_STATE
PyGILState_Ensure(void)
{
    ft_tstate *cur = ft_current();
    if (cur) {
        cur->gilstate_counter++;
        return PyGILState_LOCKED;
    }
    PyInterpreterState *interp = live_main();
    if (!interp) {
        /* Not initialized, or finalized: CPython 3.14 hangs the thread. */
        ft_hang_thread(NULL);
    }
    ft_tstate *ts = reusable_state(interp);
    if (!ts) {
        ts = ft_tstate_new(interp, FT_WHENCE_GILSTATE);
        if (!ts) {
            fatal("PyGILState_Ensure", "out of memory creating a thread state");
        }
    }
    bool granted = ft_tstate_attach(ts, "PyGILState_Ensure");
    ts->gilstate_counter++;
    if (!granted) {
        ft_safe_point(ts);   /* a granted attach runs the caller first (core/tstate.c) */
    }
    return PyGILState_UNLOCKED;
}

void
PyGILState_Release(PyGILState_STATE oldstate)
{
    ft_tstate *ts = ft_current();
    if (!ts) {
        fatal("PyGILState_Release", "no thread state is attached: "
                                    "Release without a matching Ensure");
    }
    if (ts->gilstate_counter <= 0) {
        fatal("PyGILState_Release", "the attached thread state was not ensured "
                                    "(Release without a matching Ensure)");
    }
    if (oldstate != PyGILState_LOCKED && oldstate != PyGILState_UNLOCKED) {
        fatal("PyGILState_Release", "invalid PyGILState_STATE value");
    }
    ts->gilstate_counter--;
    if (ts->gilstate_counter == 0) {
        if (ts->whence != FT_WHENCE_GILSTATE) {
            fatal("PyGILState_Release", "more Releases than Ensures on this thread state");
        }
        /* Clear while still attached, as CPython does. */
        ft_tstate_clear(ts);
        ft_tstate_detach(ts);
        ft_tstate_delete(ts, "PyGILState_Release");
    }
    else if (oldstate == PyGILState_UNLOCKED) {
        ft_tstate_detach(ts);
    }
}

PyThreadState *
PyGILState_GetThisThreadState(void)
{
    ft_tstate *cur = ft_current();
    if (cur) {
        return &cur->base;
    }
    ft_thread_slot *slot = ft_thread_slot_get();
    if (!slot) {
        return NULL;
    }
    return (PyThreadState *)atomic_load_explicit(&slot->last, memory_order_relaxed);
}

int
PyGILState_Check(void)
{
    ft_tstate *cur = ft_current();
    if (!cur) {
        return 0;
    }
    return (PyThreadState *)cur == PyGILState_GetThisThreadState();
}

/* ---- guards ------------------------------------------------------------------ */

bool
ft_interp_guard_acquire(PyInterpreterState *interp)
{
    atomic_fetch_add_explicit(&interp->guards, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&interp->finalize_pending, memory_order_seq_cst)) {
        ft_interp_guard_release(interp);
        return false;
    }
    return true;
}

void
ft_interp_guard_release(PyInterpreterState *interp)
{
    int64_t left = atomic_fetch_sub_explicit(&interp->guards, 1, memory_order_seq_cst) - 1;
    if (left < 0) {
        fatal("PyInterpreterGuard_Close", "more guards closed than opened");
    }
    if (left == 0 && atomic_load_explicit(&interp->finalize_pending, memory_order_seq_cst)) {
        ft_parking_lot_unpark_all(&interp->guards);
    }
}

/* The interpreter a view names, with a guard taken; NULL if gone or
 * finalizing.  Interpreters are unlinked under ft_rt.interp_lock, so the
 * guard is taken under it too. */
static PyInterpreterState *
view_guard(PyInterpreterView *view)
{
    PyInterpreterState *found = NULL;
    ft_mutex_lock_flags(&ft_rt.interp_lock, FT_LOCK_DONT_DETACH);
    if (atomic_load_explicit(&ft_rt.initialized, memory_order_acquire)) {
        for (PyInterpreterState *i = atomic_load_explicit(&ft_rt.interp_head,
                                                          memory_order_relaxed);
             i; i = i->next) {
            if (view->serial == VIEW_MAIN ? i == ft_rt.main : i->serial == view->serial) {
                found = i;
                break;
            }
        }
    }
    if (found && !ft_interp_guard_acquire(found)) {
        found = NULL;
    }
    PyMutex_Unlock(&ft_rt.interp_lock);
    return found;
}

static ft_tstate *
require_attached(const char *func)
{
    ft_tstate *ts = ft_current();
    if (!ts) {
        fatal(func, "the function must be called with an attached thread state, "
                    "but none is attached");
    }
    return ts;
}

PyInterpreterGuard *
PyInterpreterGuard_FromCurrent(void)
{
    ft_tstate *ts = require_attached("PyInterpreterGuard_FromCurrent");
    PyInterpreterGuard *g = ft_raw_alloc(sizeof *g);
    if (!g) {
        PyErr_NoMemory();
        return NULL;
    }
    if (!ft_interp_guard_acquire(ts->base.interp)) {
        ft_raw_free(g, sizeof *g);
        PyErr_SetString(PyExc_RuntimeError,
                        "PyInterpreterGuard_FromCurrent: the interpreter is finalizing");
        return NULL;
    }
    g->interp = ts->base.interp;
    return g;
}

PyInterpreterGuard *
PyInterpreterGuard_FromView(PyInterpreterView *view)
{
    if (!view) {
        return NULL;
    }
    PyInterpreterGuard *g = ft_raw_alloc(sizeof *g);
    if (!g) {
        return NULL;
    }
    g->interp = view_guard(view);
    if (!g->interp) {
        ft_raw_free(g, sizeof *g);
        return NULL;
    }
    return g;
}

void
PyInterpreterGuard_Close(PyInterpreterGuard *guard)
{
    if (!guard) {
        return;
    }
    ft_interp_guard_release(guard->interp);
    ft_raw_free(guard, sizeof *guard);
}

/* ---- views ------------------------------------------------------------------- */

static PyInterpreterView *
view_new(uint64_t serial)
{
    PyInterpreterView *v = ft_raw_alloc(sizeof *v);
    if (v) {
        v->serial = serial;
    }
    return v;
}

PyInterpreterView *
PyInterpreterView_FromCurrent(void)
{
    ft_tstate *ts = require_attached("PyInterpreterView_FromCurrent");
    PyInterpreterView *view = view_new(ts->base.interp->serial);
    if (!view) {
        PyErr_NoMemory();
    }
    return view;
}

PyInterpreterView *
PyInterpreterView_FromMain(void)
{
    return view_new(VIEW_MAIN);
}

void
PyInterpreterView_Close(PyInterpreterView *view)
{
    if (view) {
        ft_raw_free(view, sizeof *view);
    }
}

/* ---- PyThreadState_Ensure / Release ------------------------------------------ */

enum {
    TOKEN_VALID = 1,
    TOKEN_SWITCHED = 2,
    TOKEN_GUARDED = 4,
    TOKEN_FLAGS = 7,
};

_Static_assert(_Alignof(ft_tstate) >= 8, "thread states must leave 3 tag bits");

static PyThreadStateToken *
make_token(ft_tstate *prev, uintptr_t flags)
{
    return (PyThreadStateToken *)((uintptr_t)prev | flags | TOKEN_VALID);
}

/* Ensure for an interpreter the caller holds a guard on (so it is not
 * finalizing and cannot start to). */
static PyThreadStateToken *
ensure(PyInterpreterState *interp, uintptr_t flags)
{
    ft_tstate *cur = ft_current();
    if (cur && cur->base.interp == interp) {
        cur->ensure_counter++;
        return make_token(cur, flags);
    }
    ft_tstate *ts = reusable_state(interp);
    if (!ts || ts == cur) {
        ts = ft_tstate_new(interp, FT_WHENCE_ENSURE);
        if (!ts) {
            return NULL;
        }
    }
    if (cur) {
        ft_tstate_detach(cur);
    }
    bool granted = ft_tstate_attach(ts, "PyThreadState_Ensure");
    ts->ensure_counter++;
    if (!granted) {
        ft_safe_point(ts);   /* as PyGILState_Ensure */
    }
    return make_token(cur, flags | TOKEN_SWITCHED);
}

PyThreadStateToken *
PyThreadState_Ensure(PyInterpreterGuard *guard)
{
    if (!guard) {
        fatal("PyThreadState_Ensure", "guard is NULL");
    }
    return ensure(guard->interp, 0);
}

PyThreadStateToken *
PyThreadState_EnsureFromView(PyInterpreterView *view)
{
    if (!view) {
        return NULL;
    }
    PyInterpreterState *interp = view_guard(view);
    if (!interp) {
        return NULL;
    }
    PyThreadStateToken *token = ensure(interp, TOKEN_GUARDED);
    if (!token) {
        ft_interp_guard_release(interp);
    }
    return token;
}

void
PyThreadState_Release(PyThreadStateToken *token)
{
    uintptr_t bits = (uintptr_t)token;
    if (!(bits & TOKEN_VALID)) {
        fatal("PyThreadState_Release", "invalid token");
    }
    ft_tstate *prev = (ft_tstate *)(bits & ~(uintptr_t)TOKEN_FLAGS);
    ft_tstate *ts = ft_current();
    if (!ts) {
        fatal("PyThreadState_Release", "no thread state is attached");
    }
    if (ts->ensure_counter <= 0) {
        fatal("PyThreadState_Release", "the attached thread state was not ensured "
                                       "(more Releases than Ensures)");
    }
    PyInterpreterState *interp = ts->base.interp;
    ts->ensure_counter--;
    if (bits & TOKEN_SWITCHED) {
        if (ts->ensure_counter == 0 && ts->whence == FT_WHENCE_ENSURE) {
            ft_tstate_clear(ts);
            ft_tstate_detach(ts);
            ft_tstate_delete(ts, "PyThreadState_Release");
        }
        else {
            ft_tstate_detach(ts);
        }
        if (prev) {
            ft_tstate_attach(prev, "PyThreadState_Release");
        }
    }
    if (bits & TOKEN_GUARDED) {
        ft_interp_guard_release(interp);
    }
}
