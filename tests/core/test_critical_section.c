/* Critical sections (core/critical_section.c), white-box.
 *
 * Scenarios of cpython-ft-internals.md §14 B:
 *   B16 one object, B17 two objects (and the same object twice), B18 nesting
 *   one object 10 deep, B19 two-object nesting with swapped arguments, B20
 *   suspension by an allow-threads block, B21 the 4-thread stress (with
 *   counters that only mutual exclusion keeps exact), B22 a stop-the-world
 *   inside a section while two threads contend for it (ft_stop_the_world
 *   stands in for the GC), B23/B24 re-acquisition no-ops, B25 (gh-144513) a
 *   section begun while the world is stopped takes no lock, B26-B28
 *   (gh-158195, all three modes: one mutex, two mutexes, nested) with the
 *   interpreter's stop mutex held by the test, B29 lower address first
 *   (observed while the section waits), B30 a blocking inner section
 *   releases the outer ones and ending it re-locks them (the forced slow
 *   path: a begin that parks).
 * Also: re-entering an object an outer section holds, the requester
 * detaching during its own stop (resumption deferred), misuse that is
 * fatal naming the function, and the GIL build's no-ops.
 *
 * Objects are zeroed static PyObject headers: only ob_mutex is used.
 * Helper threads only record into atomics; the test's main thread asserts.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_critical_section.h"
#include "ft_lock.h"
#include "ft_parking_lot.h"
#include "ft_pystate.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#define POLL_MS 5000

TestSuite(critical_section, .timeout = FT_TIMEOUT(30));

/* ---- objects and helpers ---------------------------------------------------- */

typedef struct {
    PyObject_HEAD
} tobj;

static tobj objs[4];   /* zeroed: every ob_mutex unlocked; objs[i] < objs[i+1] */
#define OA ((PyObject *)&objs[0])
#define OB ((PyObject *)&objs[1])
#define OC ((PyObject *)&objs[2])
#define OD ((PyObject *)&objs[3])

static void
setup(void)
{
    memset(objs, 0, sizeof objs);
    Py_InitializeEx(0);
}

static void
teardown(void)
{
    ft_mutex_set_fairness_ns(-1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static PyMutex *
mx(PyObject *op)
{
    return ft_object_mutex(op);
}

/* Whether op's lock is held (always false in the GIL build: no lock). */
static bool
locked(PyObject *op)
{
    return ft_free_threaded && PyMutex_IsLocked(mx(op));
}

static uintptr_t
top(void)
{
    return ft_current()->critical_section;
}

static uintptr_t
link_to(const void *c, uintptr_t tags)
{
    return (uintptr_t)c | tags;
}

/* ---- B16, B17: one and two objects -------------------------------------------- */

Test(critical_section, one_object_locks_and_pushes, .init = setup, .fini = teardown)
{
    cr_assert_eq(top(), 0);
    PyCriticalSection cs;
    PyCriticalSection_Begin(&cs, OA);
    if (ft_free_threaded) {
        cr_assert(locked(OA), "the section did not lock the object");
        cr_assert_eq(top(), link_to(&cs, 0), "the section is not the thread's top");
        cr_assert_eq(cs._cs_prev, 0);
    }
    else {
        cr_assert_eq(top(), 0, "GIL build: a section must push nothing");
    }
    PyCriticalSection_End(&cs);
    cr_assert_not(locked(OA));
    cr_assert_eq(top(), 0);

    /* the macros (their section variable is private) */
    Py_BEGIN_CRITICAL_SECTION(OA);
    cr_assert_eq(locked(OA), ft_free_threaded);
    cr_assert_eq(top() != 0, ft_free_threaded);
    Py_END_CRITICAL_SECTION();
    cr_assert_not(locked(OA));
    cr_assert_eq(top(), 0);

    /* the mutex form, on a PyMutex that is not an object's */
    PyMutex m = { 0 };
    Py_BEGIN_CRITICAL_SECTION_MUTEX(&m);
    cr_assert_eq(PyMutex_IsLocked(&m) != 0, ft_free_threaded,
                 "free-threaded: locked; GIL build: untouched");
    cr_assert_eq(top() != 0, ft_free_threaded);
    Py_END_CRITICAL_SECTION();
    cr_assert_not(PyMutex_IsLocked(&m));
    cr_assert_eq(top(), 0);
    PyCriticalSection_BeginMutex(&cs, &m);
    cr_assert_eq(PyMutex_IsLocked(&m) != 0, ft_free_threaded);
    cr_assert_eq(top(), ft_free_threaded ? link_to(&cs, 0) : 0);
    PyCriticalSection_End(&cs);
    cr_assert_not(PyMutex_IsLocked(&m));
}

Test(critical_section, two_objects_lock_both, .init = setup, .fini = teardown)
{
    PyCriticalSection2 cs2;
    PyCriticalSection2_Begin(&cs2, OA, OB);
    cr_assert_eq(locked(OA), ft_free_threaded);
    cr_assert_eq(locked(OB), ft_free_threaded);
    cr_assert_eq(top(), ft_free_threaded ? link_to(&cs2, FT_CS_TWO_MUTEXES) : 0);
    PyCriticalSection2_End(&cs2);
    cr_assert_not(locked(OA));
    cr_assert_not(locked(OB));
    cr_assert_eq(top(), 0);

    Py_BEGIN_CRITICAL_SECTION2(OA, OB);
    cr_assert_eq(locked(OA), ft_free_threaded);
    cr_assert_eq(locked(OB), ft_free_threaded);
    cr_assert_eq(top() != 0, ft_free_threaded);
    Py_END_CRITICAL_SECTION2();
    cr_assert_not(locked(OA));
    cr_assert_not(locked(OB));
    cr_assert_eq(top(), 0);

    /* the same object twice: locked once (a second lock would deadlock) */
    PyCriticalSection2_Begin(&cs2, OC, OC);
    cr_assert_eq(locked(OC), ft_free_threaded);
    cr_assert_eq(top(), ft_free_threaded ? link_to(&cs2, FT_CS_TWO_MUTEXES) : 0);
    PyCriticalSection2_End(&cs2);
    cr_assert_not(locked(OC));
    cr_assert_eq(top(), 0);
    Py_BEGIN_CRITICAL_SECTION2(OC, OC);
    cr_assert_eq(locked(OC), ft_free_threaded);
    Py_END_CRITICAL_SECTION2();
    cr_assert_not(locked(OC));

    PyMutex m1 = { 0 }, m2 = { 0 };
    Py_BEGIN_CRITICAL_SECTION2_MUTEX(&m1, &m2);
    cr_assert_eq(PyMutex_IsLocked(&m1) != 0, ft_free_threaded);
    cr_assert_eq(PyMutex_IsLocked(&m2) != 0, ft_free_threaded);
    Py_END_CRITICAL_SECTION2();
    cr_assert_not(PyMutex_IsLocked(&m1));
    cr_assert_not(PyMutex_IsLocked(&m2));
}

/* ---- B18, B19: nesting ---------------------------------------------------------- */

static void
nest_one(int depth, uintptr_t outer)
{
    if (depth == 0) {
        return;
    }
    PyCriticalSection cs;
    PyCriticalSection_Begin(&cs, OA);
    /* re-entry is a no-op: the outer section stays the top */
    cr_assert_eq(top(), outer, "depth %d: the top moved", depth);
    if (ft_free_threaded) {
        cr_assert_null(cs._cs_mutex);
    }
    nest_one(depth - 1, outer);
    cr_assert_eq(locked(OA), ft_free_threaded);
    PyCriticalSection_End(&cs);
    cr_assert_eq(locked(OA), ft_free_threaded, "depth %d: an inner end unlocked", depth);
    cr_assert_eq(top(), outer);
}

Test(critical_section, nesting_one_object_ten_deep, .init = setup, .fini = teardown)
{
    PyCriticalSection cs;
    PyCriticalSection_Begin(&cs, OA);
    nest_one(10, ft_free_threaded ? link_to(&cs, 0) : 0);
    cr_assert_eq(locked(OA), ft_free_threaded);
    PyCriticalSection_End(&cs);
    /* and through the macros */
    Py_BEGIN_CRITICAL_SECTION(OA);
    Py_BEGIN_CRITICAL_SECTION(OA);
    Py_BEGIN_CRITICAL_SECTION(OA);
    cr_assert_eq(locked(OA), ft_free_threaded);
    Py_END_CRITICAL_SECTION();
    Py_END_CRITICAL_SECTION();
    cr_assert_eq(locked(OA), ft_free_threaded);
    Py_END_CRITICAL_SECTION();
    cr_assert_not(locked(OA));
    cr_assert_eq(top(), 0);
}

static void
nest_two(int depth)
{
    if (depth == 0) {
        return;
    }
    Py_BEGIN_CRITICAL_SECTION2(OA, OB);
    cr_assert_eq(locked(OA), ft_free_threaded);
    cr_assert_eq(locked(OB), ft_free_threaded);
    nest_two(depth - 1);
    Py_END_CRITICAL_SECTION2();
    cr_assert_eq(locked(OA), ft_free_threaded, "depth %d: an inner end unlocked a", depth);
    cr_assert_eq(locked(OB), ft_free_threaded, "depth %d: an inner end unlocked b", depth);
}

Test(critical_section, nesting_two_objects_swapped, .init = setup, .fini = teardown)
{
    Py_BEGIN_CRITICAL_SECTION2(OB, OA);
    uintptr_t outer = top();
    nest_two(10);
    cr_assert_eq(top(), outer);
    cr_assert_eq(locked(OA), ft_free_threaded);
    cr_assert_eq(locked(OB), ft_free_threaded);
    Py_END_CRITICAL_SECTION2();
    cr_assert_not(locked(OA));
    cr_assert_not(locked(OB));
    cr_assert_eq(top(), 0);
}

/* ---- B20: an allow-threads block suspends, the end of it resumes ----------------- */

Test(critical_section, allow_threads_suspends_and_resumes, .init = setup, .fini = teardown)
{
    ft_tstate *me = ft_current();
    PyCriticalSection cs;
    PyCriticalSection_Begin(&cs, OA);
    uintptr_t self = link_to(&cs, 0);
    Py_BEGIN_ALLOW_THREADS
    cr_assert_not(locked(OA), "detached, yet the object is still locked");
    cr_assert_eq(me->critical_section, ft_free_threaded ? (self | FT_CS_INACTIVE) : 0);
    Py_END_ALLOW_THREADS
    cr_assert_eq(locked(OA), ft_free_threaded, "re-attached, yet the object is unlocked");
    cr_assert_eq(top(), ft_free_threaded ? self : 0);
    PyCriticalSection_End(&cs);
    cr_assert_not(locked(OA));
}

Test(critical_section, allow_threads_suspends_every_level, .init = setup, .fini = teardown)
{
    PyCriticalSection cs;
    PyCriticalSection2 cs2;
    PyCriticalSection_Begin(&cs, OA);
    uintptr_t outer = link_to(&cs, 0);
    PyCriticalSection2_Begin(&cs2, OB, OC);
    Py_BEGIN_ALLOW_THREADS
    cr_assert_not(locked(OA));
    cr_assert_not(locked(OB));
    cr_assert_not(locked(OC));
    Py_END_ALLOW_THREADS
    /* only the innermost section is re-locked */
    cr_assert_eq(locked(OB), ft_free_threaded);
    cr_assert_eq(locked(OC), ft_free_threaded);
    cr_assert_not(locked(OA), "an outer section was resumed on attach");
    if (ft_free_threaded) {
        cr_assert_eq(cs2._cs_base._cs_prev, outer | FT_CS_INACTIVE);
        ft_tstate *me = ft_current();
        cr_assert(ft_critical_section_top_holds(me, mx(OB)));
        cr_assert(ft_critical_section_top_holds(me, mx(OC)));
        cr_assert_not(ft_critical_section_top_holds(me, mx(OA)));
    }
    PyCriticalSection2_End(&cs2);
    /* ending the inner one re-locks the outer one */
    cr_assert_eq(locked(OA), ft_free_threaded);
    cr_assert_eq(top(), ft_free_threaded ? outer : 0);
    cr_assert_not(locked(OB));
    if (ft_free_threaded) {
        cr_assert(ft_critical_section_top_holds(ft_current(), mx(OA)));
        cr_assert_not(ft_critical_section_top_holds(ft_current(), mx(OB)));
    }
    PyCriticalSection_End(&cs);
    cr_assert_not(locked(OA));
    cr_assert_eq(top(), 0);
}

/* ---- B23, B24: re-acquisition is a no-op -------------------------------------------- */

Test(critical_section, reacquire_one_is_noop, .init = setup, .fini = teardown)
{
    PyCriticalSection cs1, cs2;
    PyCriticalSection_Begin(&cs1, OA);
    cr_assert_eq(top(), ft_free_threaded ? link_to(&cs1, 0) : 0);
    PyCriticalSection_Begin(&cs2, OA);
    cr_assert_eq(top(), ft_free_threaded ? link_to(&cs1, 0) : 0, "re-entry pushed a section");
    if (ft_free_threaded) {
        cr_assert_null(cs2._cs_mutex);
    }
    PyCriticalSection_End(&cs2);
    cr_assert_eq(top(), ft_free_threaded ? link_to(&cs1, 0) : 0);
    cr_assert_eq(locked(OA), ft_free_threaded, "ending the no-op section unlocked");
    PyCriticalSection_End(&cs1);
    cr_assert_not(locked(OA));
    cr_assert_eq(top(), 0);
}

Test(critical_section, reacquire_under_two_is_noop, .init = setup, .fini = teardown)
{
    PyCriticalSection2 outer;
    PyCriticalSection ca, cb;
    PyCriticalSection2 cab;
    PyCriticalSection2_Begin(&outer, OB, OA);
    uintptr_t t = ft_free_threaded ? link_to(&outer, FT_CS_TWO_MUTEXES) : 0;
    cr_assert_eq(top(), t);
    PyCriticalSection_Begin(&ca, OA);
    cr_assert_eq(top(), t);
    PyCriticalSection_Begin(&cb, OB);
    cr_assert_eq(top(), t);
    PyCriticalSection2_Begin(&cab, OA, OB);
    cr_assert_eq(top(), t, "a two-object re-entry pushed a section");
    PyCriticalSection2_End(&cab);
    PyCriticalSection_End(&cb);
    PyCriticalSection_End(&ca);
    cr_assert_eq(top(), t);
    cr_assert_eq(locked(OA), ft_free_threaded);
    cr_assert_eq(locked(OB), ft_free_threaded);
    PyCriticalSection2_End(&outer);
    cr_assert_not(locked(OA));
    cr_assert_not(locked(OB));
    cr_assert_eq(top(), 0);
}

/* An outer (not innermost) section holds the object: beginning on it again
 * suspends the outer sections instead of waiting on itself. */
Test(critical_section, reenter_object_of_outer_section, .init = setup, .fini = teardown)
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: sections lock nothing");
    }
    PyCriticalSection ca, cb, ca2;
    PyCriticalSection_Begin(&ca, OA);
    PyCriticalSection_Begin(&cb, OB);
    PyCriticalSection_Begin(&ca2, OA);
    cr_assert_eq(top(), link_to(&ca2, 0));
    cr_assert(locked(OA));
    cr_assert_not(locked(OB), "the outer sections were not suspended");
    cr_assert_eq(ca2._cs_prev, link_to(&cb, FT_CS_INACTIVE));
    cr_assert_eq(cb._cs_prev, link_to(&ca, FT_CS_INACTIVE));
    PyCriticalSection_End(&ca2);
    cr_assert_eq(top(), link_to(&cb, 0));
    cr_assert(locked(OB));
    cr_assert_not(locked(OA), "only the new top is resumed");
    PyCriticalSection_End(&cb);
    cr_assert_eq(top(), link_to(&ca, 0));
    cr_assert(locked(OA));
    PyCriticalSection_End(&ca);
    cr_assert_eq(top(), 0);
    cr_assert_not(locked(OA));

    /* two objects, one of them held by the top */
    PyCriticalSection2 cab;
    PyCriticalSection_Begin(&ca, OA);
    PyCriticalSection2_Begin(&cab, OB, OA);
    cr_assert_eq(top(), link_to(&cab, FT_CS_TWO_MUTEXES));
    cr_assert(locked(OA));
    cr_assert(locked(OB));
    cr_assert_eq(cab._cs_base._cs_prev, link_to(&ca, FT_CS_INACTIVE));
    PyCriticalSection2_End(&cab);
    cr_assert(locked(OA));
    cr_assert_not(locked(OB));
    cr_assert_eq(top(), link_to(&ca, 0));
    PyCriticalSection_End(&ca);
    cr_assert_not(locked(OA));
}

/* ---- B21: stress ------------------------------------------------------------------- */

#define STRESS_THREADS 4
#define STRESS_ITERS 200

static struct {
    long n1, n2, n3;          /* changed only under the matching object's lock */
    atomic_int done;
} st;

static void
bump(long *n)
{
    /* a read and a later write: a lost update if two threads overlap */
    long v = *(volatile long *)n;
    __asm__ __volatile__("" ::: "memory");
    *(volatile long *)n = v + 1;
}

static void *
stress_worker(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    for (int i = 0; i < STRESS_ITERS; i++) {
        Py_BEGIN_CRITICAL_SECTION(OA);
        bump(&st.n1);
        Py_END_CRITICAL_SECTION();

        Py_BEGIN_CRITICAL_SECTION(OB);
        bump(&st.n2);
        Py_BEGIN_CRITICAL_SECTION(OA);
        bump(&st.n1);
        Py_END_CRITICAL_SECTION();
        bump(&st.n2);
        Py_END_CRITICAL_SECTION();

        Py_BEGIN_CRITICAL_SECTION2(OC, OA);
        bump(&st.n3);
        bump(&st.n1);
        Py_BEGIN_CRITICAL_SECTION(OB);
        Py_BEGIN_CRITICAL_SECTION(OB);
        bump(&st.n2);
        Py_END_CRITICAL_SECTION();
        Py_END_CRITICAL_SECTION();
        bump(&st.n3);
        Py_END_CRITICAL_SECTION2();

        Py_BEGIN_CRITICAL_SECTION(OC);
        bump(&st.n3);
        Py_BEGIN_ALLOW_THREADS
        Py_END_ALLOW_THREADS
        bump(&st.n3);
        Py_END_CRITICAL_SECTION();
    }
    PyGILState_Release(g);
    atomic_fetch_add(&st.done, 1);
    return NULL;
}

Test(critical_section, stress_four_threads, .init = setup, .fini = teardown,
     .timeout = FT_TIMEOUT(60))
{
    pthread_t th[STRESS_THREADS];
    bool finished;
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < STRESS_THREADS; i++) {
        th[i] = test_start_thread(stress_worker, NULL);
    }
    finished = TEST_POLL_UNTIL(atomic_load(&st.done) == STRESS_THREADS, 20000);
    if (finished) {
        for (int i = 0; i < STRESS_THREADS; i++) {
            test_join_thread(th[i]);
        }
    }
    Py_END_ALLOW_THREADS
    cr_assert(finished, "only %d of %d threads finished (deadlock?)", atomic_load(&st.done),
              STRESS_THREADS);
    long per = (long)STRESS_THREADS * STRESS_ITERS;
    cr_assert_eq(st.n1, 3 * per, "n1 = %ld: lost updates under a's lock", st.n1);
    cr_assert_eq(st.n2, 3 * per, "n2 = %ld: lost updates under b's lock", st.n2);
    cr_assert_eq(st.n3, 4 * per, "n3 = %ld: lost updates under c's lock", st.n3);
    cr_assert_not(locked(OA));
    cr_assert_not(locked(OB));
    cr_assert_not(locked(OC));
}

/* ---- B30 (and the forced slow path): a blocking inner begin releases the outer -- */

static struct {
    PyThreadState *_Atomic ts;
    atomic_int holding_a;      /* the outer section on a is active */
    atomic_int inner_a_locked; /* a's lock while the inner section was active */
    atomic_int inner_link_ok;  /* the inner section's link marks the outer suspended */
    atomic_int after_a_locked; /* a's lock after the inner section ended */
    atomic_int after_top_ok;
    atomic_int done;
} b30;

static void *
b30_worker(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&b30.ts, PyThreadState_Get());
    PyCriticalSection outer, inner;
    PyCriticalSection_Begin(&outer, OA);
    atomic_store(&b30.holding_a, 1);
    PyCriticalSection_Begin(&inner, OB);   /* the test holds b: this parks */
    atomic_store(&b30.inner_a_locked, locked(OA));
    atomic_store(&b30.inner_link_ok, inner._cs_prev == link_to(&outer, FT_CS_INACTIVE));
    PyCriticalSection_End(&inner);
    atomic_store(&b30.after_a_locked, locked(OA));
    atomic_store(&b30.after_top_ok, top() == link_to(&outer, 0));
    PyCriticalSection_End(&outer);
    PyGILState_Release(g);
    atomic_store(&b30.done, 1);
    return NULL;
}

Test(critical_section, blocking_inner_releases_outer, .init = setup, .fini = teardown)
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: sections lock nothing, nothing blocks");
    }
    PyMutex_Lock(mx(OB));   /* held directly: the worker's inner section must wait */
    pthread_t t = test_start_thread(b30_worker, NULL);
    bool parked = TEST_POLL_UNTIL(atomic_load(&b30.holding_a) &&
                                  kind_of(atomic_load(&b30.ts)) == FT_TS_DETACHED &&
                                  (ft_mutex_bits(mx(OB)) & _Py_HAS_PARKED), POLL_MS);
    bool a_released = !locked(OA);
    PyMutex_Unlock(mx(OB));
    bool done = TEST_POLL_UNTIL(atomic_load(&b30.done), POLL_MS);
    if (done) {
        test_join_thread(t);
    }
    cr_assert(parked, "the worker never waited for b");
    cr_assert(a_released, "waiting for the inner lock, the worker kept the outer one");
    cr_assert(done, "the worker did not finish");
    cr_assert_not(atomic_load(&b30.inner_a_locked), "the outer section came back early");
    cr_assert(atomic_load(&b30.inner_link_ok));
    cr_assert(atomic_load(&b30.after_a_locked), "ending the inner section did not re-lock a");
    cr_assert(atomic_load(&b30.after_top_ok));
    cr_assert_not(locked(OA));
    cr_assert_not(locked(OB));
}

/* ---- B29: a two-object section locks the lower address first ----------------------- */

static struct {
    PyThreadState *_Atomic ts;
    atomic_int swap;          /* begin with (hi, lo) instead of (lo, hi) */
    atomic_int started;
    atomic_int both_locked;
    atomic_int done;
} b29;

static void *
b29_worker(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&b29.ts, PyThreadState_Get());
    atomic_store(&b29.started, 1);
    if (atomic_load(&b29.swap)) {
        Py_BEGIN_CRITICAL_SECTION2(OB, OA);
        atomic_store(&b29.both_locked, locked(OA) && locked(OB));
        Py_END_CRITICAL_SECTION2();
    }
    else {
        Py_BEGIN_CRITICAL_SECTION2(OA, OB);
        atomic_store(&b29.both_locked, locked(OA) && locked(OB));
        Py_END_CRITICAL_SECTION2();
    }
    PyGILState_Release(g);
    atomic_store(&b29.done, 1);
    return NULL;
}

/* The test holds `held` (a or b); while the worker waits, `other` must be
 * locked iff it is the lower one (taken first). */
static void
b29_case(PyObject *held, PyObject *other, bool swap)
{
    memset(&b29, 0, sizeof b29);
    atomic_store(&b29.swap, swap);
    PyMutex_Lock(mx(held));
    pthread_t t = test_start_thread(b29_worker, NULL);
    bool waiting = TEST_POLL_UNTIL(atomic_load(&b29.started) &&
                                   kind_of(atomic_load(&b29.ts)) == FT_TS_DETACHED &&
                                   (ft_mutex_bits(mx(held)) & _Py_HAS_PARKED), POLL_MS);
    bool other_locked = locked(other);
    PyMutex_Unlock(mx(held));
    bool done = TEST_POLL_UNTIL(atomic_load(&b29.done), POLL_MS);
    if (done) {
        test_join_thread(t);
    }
    cr_assert(waiting, "the worker never waited (held %s, swap %d)", held == OA ? "a" : "b", swap);
    bool other_is_lower = (uintptr_t)other < (uintptr_t)held;
    cr_assert_eq(other_locked, other_is_lower,
                 "held %s, swap %d: while waiting, the other object was %s",
                 held == OA ? "a" : "b", swap, other_locked ? "locked" : "unlocked");
    cr_assert(done);
    cr_assert(atomic_load(&b29.both_locked));
    cr_assert_not(locked(OA));
    cr_assert_not(locked(OB));
}

Test(critical_section, two_objects_lower_address_first, .init = setup, .fini = teardown)
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: sections lock nothing");
    }
    cr_assert_lt((uintptr_t)OA, (uintptr_t)OB);
    b29_case(OA, OB, false);   /* lower held: the higher must not be taken first */
    b29_case(OA, OB, true);
    b29_case(OB, OA, false);   /* higher held: the lower is taken, then it waits */
    b29_case(OB, OA, true);
}

/* ---- B22: a stop-the-world inside a section, two threads contending ------------------ */

static struct {
    PyThreadState *_Atomic ts[3];
    atomic_int holding;          /* T0 holds the section */
    atomic_int trying[3];
    atomic_int pause_kept;       /* during T0's own stop: its section active, a locked */
    long n;                      /* under a's lock */
    atomic_int done;
} b22;

static void *
b22_holder(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyInterpreterState *interp = PyInterpreterState_Get();
    PyCriticalSection cs;
    PyCriticalSection_Begin(&cs, OA);
    atomic_store(&b22.holding, 1);
    /* both contenders parked on a (polling attached: nobody else stops) */
    TEST_POLL_UNTIL(atomic_load(&b22.trying[1]) && atomic_load(&b22.trying[2]) &&
                    kind_of(atomic_load(&b22.ts[1])) == FT_TS_DETACHED &&
                    kind_of(atomic_load(&b22.ts[2])) == FT_TS_DETACHED, POLL_MS);
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
    atomic_store(&b22.pause_kept, top() == link_to(&cs, 0) && locked(OA));
    bump(&b22.n);
    ft_start_the_world(interp);
    PyCriticalSection_End(&cs);
    PyGILState_Release(g);
    atomic_fetch_add(&b22.done, 1);
    return NULL;
}

static void *
b22_contender(void *arg)
{
    int i = (int)(intptr_t)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&b22.ts[i], PyThreadState_Get());
    TEST_POLL_UNTIL(atomic_load(&b22.holding), POLL_MS);
    atomic_store(&b22.trying[i], 1);
    Py_BEGIN_CRITICAL_SECTION(OA);
    bump(&b22.n);
    Py_END_CRITICAL_SECTION();
    PyGILState_Release(g);
    atomic_fetch_add(&b22.done, 1);
    return NULL;
}

Test(critical_section, stop_the_world_inside_section, .init = setup, .fini = teardown)
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: stop-the-world is a no-op and sections lock nothing");
    }
    ft_mutex_set_fairness_ns(0);   /* every unlock hands a over to a waiter */
    pthread_t t[3];
    bool done;
    Py_BEGIN_ALLOW_THREADS
    t[0] = test_start_thread(b22_holder, NULL);
    t[1] = test_start_thread(b22_contender, (void *)(intptr_t)1);
    t[2] = test_start_thread(b22_contender, (void *)(intptr_t)2);
    done = TEST_POLL_UNTIL(atomic_load(&b22.done) == 3, POLL_MS);
    if (done) {
        for (int i = 0; i < 3; i++) {
            test_join_thread(t[i]);
        }
    }
    Py_END_ALLOW_THREADS
    cr_assert(done, "%d of 3 threads finished (deadlock?)", atomic_load(&b22.done));
    cr_assert(atomic_load(&b22.pause_kept),
              "a requester that did not wait for the stop mutex lost its section");
    cr_assert_eq(b22.n, 3);
    cr_assert_not(locked(OA));
}

/* ---- B25 (gh-144513): a section begun with the world stopped takes no lock ------------- */

static struct {
    PyThreadState *_Atomic t2;
    atomic_int t1_holding, t2_trying, release;
    atomic_int done;
} b25;

static void *
b25_holder(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    Py_BEGIN_CRITICAL_SECTION(OA);
    atomic_store(&b25.t1_holding, 1);
    /* safe points until released: the stop suspends us at one */
    TEST_HELPER_WAIT(((void)PyErr_CheckSignals(), atomic_load(&b25.release)), 4 * POLL_MS);
    Py_END_CRITICAL_SECTION();
    PyGILState_Release(g);
    atomic_fetch_add(&b25.done, 1);
    return NULL;
}

static void *
b25_waiter(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&b25.t2, PyThreadState_Get());
    TEST_POLL_UNTIL(atomic_load(&b25.t1_holding), POLL_MS);
    atomic_store(&b25.t2_trying, 1);
    Py_BEGIN_CRITICAL_SECTION(OA);
    Py_END_CRITICAL_SECTION();
    PyGILState_Release(g);
    atomic_fetch_add(&b25.done, 1);
    return NULL;
}

Test(critical_section, begin_with_world_stopped_takes_no_lock, .init = setup, .fini = teardown)
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: stop-the-world is a no-op and sections lock nothing");
    }
    ft_mutex_set_fairness_ns(0);   /* T1's suspension hands a to the suspended T2 */
    PyInterpreterState *interp = PyInterpreterState_Get();
    pthread_t t1 = test_start_thread(b25_holder, NULL);
    pthread_t t2 = test_start_thread(b25_waiter, NULL);
    /* T2 is parked on a (it detaches only once queued) */
    bool parked = TEST_POLL_UNTIL(atomic_load(&b25.t2_trying) &&
                                  kind_of(atomic_load(&b25.t2)) == FT_TS_DETACHED &&
                                  (ft_mutex_bits(mx(OA)) & _Py_HAS_PARKED), POLL_MS);
    bool locked_in_pause = false, noop = false;
    if (parked) {
        ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
        locked_in_pause = locked(OA);   /* handed to T2, which cannot run */
        PyCriticalSection cs;
        PyCriticalSection_Begin(&cs, OA);   /* would wait forever if it locked */
        noop = cs._cs_mutex == NULL && top() == 0;
        PyCriticalSection_End(&cs);
        ft_start_the_world(interp);
    }
    atomic_store(&b25.release, 1);
    bool done;
    Py_BEGIN_ALLOW_THREADS
    done = TEST_POLL_UNTIL(atomic_load(&b25.done) == 2, POLL_MS);
    if (done) {
        test_join_thread(t1);
        test_join_thread(t2);
    }
    Py_END_ALLOW_THREADS
    cr_assert(parked, "T2 never parked on the object");
    cr_assert(locked_in_pause, "the stop did not leave the object handed to a suspended thread");
    cr_assert(noop, "a section begun with the world stopped was pushed");
    cr_assert(done, "%d of 2 threads finished", atomic_load(&b25.done));
    cr_assert_not(locked(OA));
}

/* ---- the requester detaching during its own stop ------------------------------------------ */

static struct {
    PyThreadState *_Atomic ts;
    atomic_int trying, got;
    atomic_int done;
} rq;

static void *
rq_worker(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&rq.ts, PyThreadState_Get());
    atomic_store(&rq.trying, 1);
    Py_BEGIN_CRITICAL_SECTION(OA);
    atomic_store(&rq.got, 1);
    Py_END_CRITICAL_SECTION();
    PyGILState_Release(g);
    atomic_store(&rq.done, 1);
    return NULL;
}

Test(critical_section, requester_detaching_during_stop, .init = setup, .fini = teardown)
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: stop-the-world is a no-op and sections lock nothing");
    }
    ft_mutex_set_fairness_ns(0);
    PyInterpreterState *interp = PyInterpreterState_Get();
    ft_tstate *me = ft_current();
    pthread_t t;
    bool parked, in_pause_handed, in_pause_deferred, third_ok, after_ok, got_first;
    PyCriticalSection cs, cs_b;
    PyCriticalSection_Begin(&cs, OA);
    uintptr_t self = link_to(&cs, 0);
    t = test_start_thread(rq_worker, NULL);
    parked = TEST_POLL_UNTIL(atomic_load(&rq.trying) &&
                             kind_of(atomic_load(&rq.ts)) == FT_TS_DETACHED &&
                             (ft_mutex_bits(mx(OA)) & _Py_HAS_PARKED), POLL_MS);
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);   /* the worker is suspended, waiting for a */
    /* Detaching suspends our section and hands a to the suspended worker;
     * re-attaching must not wait for it (nobody would ever restart). */
    Py_BEGIN_ALLOW_THREADS
    Py_END_ALLOW_THREADS
    in_pause_handed = locked(OA) && !atomic_load(&rq.got);
    in_pause_deferred = me->critical_section == (self | FT_CS_INACTIVE);
    /* a section begun in the pause and suspended in it: its end pops it */
    PyCriticalSection_Begin(&cs_b, OB);
    Py_BEGIN_ALLOW_THREADS
    Py_END_ALLOW_THREADS
    third_ok = me->critical_section == (link_to(&cs_b, 0) | FT_CS_INACTIVE) && !locked(OB);
    PyCriticalSection_End(&cs_b);
    third_ok = third_ok && me->critical_section == (self | FT_CS_INACTIVE) && !locked(OB);
    ft_start_the_world(interp);  /* resumes: waits for the worker's section */
    after_ok = me->critical_section == self && locked(OA);
    got_first = atomic_load(&rq.got);
    PyCriticalSection_End(&cs);
    bool done;
    Py_BEGIN_ALLOW_THREADS
    done = TEST_POLL_UNTIL(atomic_load(&rq.done), POLL_MS);
    if (done) {
        test_join_thread(t);
    }
    Py_END_ALLOW_THREADS
    cr_assert(parked);
    cr_assert(in_pause_handed, "the worker was not handed the lock during the stop");
    cr_assert(in_pause_deferred, "the requester's section was resumed during its stop");
    cr_assert(third_ok, "a section suspended during the stop did not end cleanly");
    cr_assert(after_ok, "start-the-world did not resume the section");
    cr_assert(got_first, "the section came back before the worker had its turn");
    cr_assert(done);
    cr_assert_not(locked(OA));
}

/* ---- B26-B28 (gh-158195): waiting for the stop mutex with sections ------------------------- */

enum { HO_ONE = 1, HO_TWO = 2, HO_NESTED = 3 };

static struct {
    int mode;
    PyThreadState *_Atomic w_ts, *_Atomic p_ts;
    atomic_int w_holding, p_locked;
    atomic_int pause_obj_locked;     /* P's direct lock was in force during W's stop */
    atomic_int pause_deferred;       /* W's section stayed suspended during its stop */
    atomic_int pause_third_ok;       /* a section begun and ended in the pause resumed nothing */
    atomic_int after_ok;             /* when start returned: the section active, locks held */
    atomic_int after_inner_end_ok;   /* nested: the outer section came back */
    atomic_int done;
} ho;

#define HO_OBJ OA
#define HO_OTHER OB
#define HO_THIRD OC

static void
ho_pause(ft_tstate *me, uintptr_t self)
{
    atomic_store(&ho.pause_obj_locked, locked(HO_OBJ));
    atomic_store(&ho.pause_deferred, me->critical_section == (self | FT_CS_INACTIVE));
    PyCriticalSection cs;
    PyCriticalSection_Begin(&cs, HO_THIRD);
    bool pushed = me->critical_section == link_to(&cs, 0) && locked(HO_THIRD);
    PyCriticalSection_End(&cs);
    atomic_store(&ho.pause_third_ok, pushed && me->critical_section == (self | FT_CS_INACTIVE) &&
                                         !locked(HO_OTHER) && !locked(HO_THIRD));
}

static void *
ho_waiter(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    ft_tstate *me = ft_current();
    PyInterpreterState *interp = me->base.interp;
    atomic_store(&ho.w_ts, &me->base);
    PyCriticalSection cs, cs_outer;
    PyCriticalSection2 cs2;
    if (ho.mode == HO_ONE) {
        PyCriticalSection_Begin(&cs, HO_OBJ);
        uintptr_t self = link_to(&cs, 0);
        atomic_store(&ho.w_holding, 1);
        ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
        ho_pause(me, self);
        ft_start_the_world(interp);
        atomic_store(&ho.after_ok, me->critical_section == self && locked(HO_OBJ));
        PyCriticalSection_End(&cs);
    }
    else if (ho.mode == HO_TWO) {
        PyCriticalSection2_Begin(&cs2, HO_OBJ, HO_OTHER);
        uintptr_t self = link_to(&cs2, FT_CS_TWO_MUTEXES);
        atomic_store(&ho.w_holding, 1);
        ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
        ho_pause(me, self);
        ft_start_the_world(interp);
        atomic_store(&ho.after_ok, me->critical_section == self && locked(HO_OBJ) &&
                                       locked(HO_OTHER));
        PyCriticalSection2_End(&cs2);
    }
    else {
        PyCriticalSection_Begin(&cs_outer, HO_OTHER);
        uintptr_t outer = link_to(&cs_outer, 0);
        PyCriticalSection_Begin(&cs, HO_OBJ);
        uintptr_t self = link_to(&cs, 0);
        atomic_store(&ho.w_holding, 1);
        ft_stop_the_world(interp, PyUnstable_STOP_OTHER);
        ho_pause(me, self);
        ft_start_the_world(interp);
        atomic_store(&ho.after_ok, me->critical_section == self && locked(HO_OBJ) &&
                                       !locked(HO_OTHER));
        PyCriticalSection_End(&cs);
        atomic_store(&ho.after_inner_end_ok, me->critical_section == outer &&
                                                 locked(HO_OTHER));
        PyCriticalSection_End(&cs_outer);
    }
    PyGILState_Release(g);
    atomic_fetch_add(&ho.done, 1);
    return NULL;
}

static void *
ho_pinned(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyInterpreterState *interp = PyInterpreterState_Get();
    atomic_store(&ho.p_ts, PyThreadState_Get());
    /* the waiter is queued on the stop mutex (and has let its sections go);
     * queued, not merely announced by HAS_PARKED: an unlock in between would
     * wake nobody and let us barge in ahead of it */
    TEST_POLL_UNTIL(atomic_load(&ho.w_holding) &&
                    ft_parking_lot_waiters(&interp->stw.mutex) == 1, POLL_MS);
    PyMutex_Lock(mx(HO_OBJ));   /* pinned: a lock that detaching does not release */
    atomic_store(&ho.p_locked, 1);
    ft_stop_the_world(interp, PyUnstable_STOP_OTHER);  /* queued behind the waiter */
    ft_start_the_world(interp);
    PyMutex_Unlock(mx(HO_OBJ));
    PyGILState_Release(g);
    atomic_fetch_add(&ho.done, 1);
    return NULL;
}

static void
ho_run(int mode)
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: stop-the-world is a no-op and sections lock nothing");
    }
    memset(&ho, 0, sizeof ho);
    ho.mode = mode;
    /* Hand-offs only: once released, the stop mutex goes to the waiter (queued
     * first), never to the pinned thread barging in. */
    ft_mutex_set_fairness_ns(0);
    PyInterpreterState *interp = PyInterpreterState_Get();
    PyMutex_Lock(&interp->stw.mutex);
    pthread_t w = test_start_thread(ho_waiter, NULL);
    pthread_t p = test_start_thread(ho_pinned, NULL);
    bool queued, done;
    Py_BEGIN_ALLOW_THREADS
    queued = TEST_POLL_UNTIL(atomic_load(&ho.p_locked) &&
                             kind_of(atomic_load(&ho.p_ts)) == FT_TS_DETACHED &&
                             ft_parking_lot_waiters(&interp->stw.mutex) == 2, POLL_MS);
    PyMutex_Unlock(&interp->stw.mutex);
    done = TEST_POLL_UNTIL(atomic_load(&ho.done) == 2, POLL_MS);
    if (done) {
        test_join_thread(w);
        test_join_thread(p);
    }
    Py_END_ALLOW_THREADS
    cr_assert(queued, "the pinned thread never queued for the stop");
    cr_assert(done, "%d of 2 threads finished (deadlock?)", atomic_load(&ho.done));
    cr_assert(atomic_load(&ho.pause_obj_locked),
              "the pinned thread's lock was not in force during the waiter's stop");
    cr_assert(atomic_load(&ho.pause_deferred),
              "the waiter's sections were resumed while it owned the stop mutex");
    cr_assert(atomic_load(&ho.pause_third_ok),
              "a section begun and ended in the pause resumed the suspended ones");
    cr_assert(atomic_load(&ho.after_ok), "the section was not active when start returned");
    if (mode == HO_NESTED) {
        cr_assert(atomic_load(&ho.after_inner_end_ok),
                  "ending the inner section did not re-lock the outer one");
    }
    cr_assert_not(locked(HO_OBJ));
    cr_assert_not(locked(HO_OTHER));
}

Test(critical_section, stw_handoff_one, .init = setup, .fini = teardown)
{
    ho_run(HO_ONE);
}

Test(critical_section, stw_handoff_two, .init = setup, .fini = teardown)
{
    ho_run(HO_TWO);
}

Test(critical_section, stw_handoff_nested, .init = setup, .fini = teardown)
{
    ho_run(HO_NESTED);
}

/* ---- a stop-mutex waiter must not block finalization ------------------------------------------ */

/* ft_stop_the_world re-attaches by itself after waiting for the stop mutex
 * (above).  If the interpreter began finalizing meanwhile, that attach hangs
 * forever: it must not hang holding the mutex, or the finalizer's own stop
 * waits for it forever. */
static struct {
    PyInterpreterState *interp;
    PyThreadState *_Atomic main_ts, *_Atomic t_ts;
    atomic_int h_locked, h_done, t_returned;
} fz;

static void *
fz_holder(void *arg)
{
    (void)arg;   /* no thread state: holds the stop mutex as a plain lock */
    PyMutex_Lock(&fz.interp->stw.mutex);
    atomic_store(&fz.h_locked, 1);
    /* the finalizer has started and is waiting for the mutex too */
    TEST_POLL_UNTIL(atomic_load(&fz.interp->finalizing) != NULL &&
                    kind_of(atomic_load(&fz.main_ts)) == FT_TS_DETACHED, POLL_MS);
    PyMutex_Unlock(&fz.interp->stw.mutex);
    atomic_store(&fz.h_done, 1);
    return NULL;
}

static void *
fz_requester(void *arg)
{
    (void)arg;
    (void)PyGILState_Ensure();
    atomic_store(&fz.t_ts, PyThreadState_Get());
    ft_stop_the_world(fz.interp, PyUnstable_STOP_OTHER);   /* waits for the holder; then hangs for good */
    atomic_store(&fz.t_returned, 1);
    ft_start_the_world(fz.interp);
    return NULL;
}

Test(critical_section, stop_waiter_does_not_block_finalization)
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: stop-the-world is a no-op");
    }
    Py_InitializeEx(0);
    ft_mutex_set_fairness_ns(0);   /* the mutex goes to its waiters in order */
    fz.interp = PyInterpreterState_Get();
    atomic_store(&fz.main_ts, PyThreadState_Get());
    pthread_t h = test_start_thread(fz_holder, NULL);
    bool held = TEST_POLL_UNTIL(atomic_load(&fz.h_locked), POLL_MS);
    (void)test_start_thread(fz_requester, NULL);   /* never joined: it hangs */
    bool queued = held && TEST_POLL_UNTIL(kind_of(atomic_load(&fz.t_ts)) == FT_TS_DETACHED &&
                                          (ft_mutex_bits(&fz.interp->stw.mutex) &
                                           _Py_HAS_PARKED), POLL_MS);
    cr_assert(held && queued, "setup: held %d, queued %d", held, queued);
    cr_assert_eq(Py_FinalizeEx(), 0);   /* times out if the waiter kept the mutex */
    test_join_thread(h);
    cr_assert(atomic_load(&fz.h_done));
    cr_assert_not(atomic_load(&fz.t_returned), "a thread attached during finalization");
    ft_mutex_set_fairness_ns(-1);
}

/* ---- misuse ---------------------------------------------------------------------------------- */

static void
end_out_of_order(void)
{
    Py_InitializeEx(0);
    PyCriticalSection ca, cb;
    PyCriticalSection_Begin(&ca, OA);
    PyCriticalSection_Begin(&cb, OB);
    PyCriticalSection_End(&ca);
}

/* Aborts in the free-threaded build; a no-op in the GIL build (checked). */
Test(critical_section, end_out_of_order_aborts, .signal = FT_FREE_THREADED ? SIGABRT : 0)
{
    end_out_of_order();
    cr_assert_not(ft_free_threaded, "ending sections out of order did not abort");
    cr_assert_eq(top(), 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static void
end_twice(void)
{
    Py_InitializeEx(0);
    PyCriticalSection ca;
    PyCriticalSection_Begin(&ca, OA);
    PyCriticalSection_End(&ca);
    PyCriticalSection_End(&ca);
}

static void
end_wrong_kind(void)
{
    Py_InitializeEx(0);
    PyCriticalSection2 c;
    PyCriticalSection2_Begin(&c, OA, OB);
    PyCriticalSection_End(&c._cs_base);
}

static void
end2_wrong_kind(void)
{
    Py_InitializeEx(0);
    PyCriticalSection2 c;
    PyCriticalSection_Begin(&c._cs_base, OA);
    PyCriticalSection2_End(&c);
}

static void
end2_out_of_order(void)
{
    Py_InitializeEx(0);
    PyCriticalSection2 c1;
    PyCriticalSection c2;
    PyCriticalSection2_Begin(&c1, OA, OB);
    PyCriticalSection_Begin(&c2, OC);
    PyCriticalSection2_End(&c1);
}

static void
end_detached(void)
{
    Py_InitializeEx(0);
    PyCriticalSection ca;
    PyCriticalSection_Begin(&ca, OA);
    (void)PyEval_SaveThread();
    PyCriticalSection_End(&ca);
}

static void
begin_null_object(void)
{
    Py_InitializeEx(0);
    PyCriticalSection c;
    PyCriticalSection_Begin(&c, NULL);
}

static void
begin2_null_object(void)
{
    Py_InitializeEx(0);
    PyCriticalSection2 c;
    PyCriticalSection2_Begin(&c, OA, NULL);
}

static void
begin_null_mutex(void)
{
    Py_InitializeEx(0);
    PyCriticalSection c;
    PyCriticalSection_BeginMutex(&c, NULL);
}

static void
begin_detached(void)
{
    Py_InitializeEx(0);
    (void)PyEval_SaveThread();
    PyCriticalSection c;
    PyCriticalSection_Begin(&c, OA);
}

static void
begin2_detached(void)
{
    Py_InitializeEx(0);
    (void)PyEval_SaveThread();
    PyCriticalSection2 c;
    PyCriticalSection2_Begin(&c, OA, OB);
}

static void
unlocked_behind_its_back(void)
{
    Py_InitializeEx(0);
    PyCriticalSection c;
    PyCriticalSection_Begin(&c, OA);
    PyMutex_Unlock(mx(OA));   /* ob_mutex is reserved for critical sections */
    PyCriticalSection_End(&c);
}

static void
clear_with_section_open(void)
{
    Py_InitializeEx(0);
    PyCriticalSection c;
    PyCriticalSection_Begin(&c, OA);
    PyThreadState_Clear(PyThreadState_Get());
}

Test(critical_section, misuse_is_fatal_naming_the_function, .timeout = FT_TIMEOUT(60))
{
    if (!ft_free_threaded) {
        cr_skip_test("GIL build: the functions do nothing, misuse included");
    }
    test_expect_fatal(end_out_of_order,
                      "Fatal Python error: PyCriticalSection_End: "
                      "critical sections ended out of order");
    test_expect_fatal(end2_out_of_order,
                      "Fatal Python error: PyCriticalSection2_End: "
                      "critical sections ended out of order");
    test_expect_fatal(end_twice,
                      "Fatal Python error: PyCriticalSection_End: no critical section is active");
    test_expect_fatal(end_wrong_kind,
                      "Fatal Python error: PyCriticalSection_End: "
                      "the section was begun as a two-object section");
    test_expect_fatal(end2_wrong_kind,
                      "Fatal Python error: PyCriticalSection2_End: "
                      "the section was begun as a one-object section");
    test_expect_fatal(end_detached,
                      "Fatal Python error: PyCriticalSection_End: no thread state is attached");
    test_expect_fatal(begin_null_object,
                      "Fatal Python error: PyCriticalSection_Begin: the object is NULL");
    test_expect_fatal(begin2_null_object,
                      "Fatal Python error: PyCriticalSection2_Begin: an object is NULL");
    test_expect_fatal(begin_null_mutex,
                      "Fatal Python error: PyCriticalSection_BeginMutex: "
                      "the object or mutex is NULL");
    test_expect_fatal(begin_detached,
                      "Fatal Python error: PyCriticalSection_Begin: no thread state is attached");
    test_expect_fatal(begin2_detached,
                      "Fatal Python error: PyCriticalSection2_Begin: no thread state is attached");
    test_expect_fatal(unlocked_behind_its_back,
                      "Fatal Python error: PyCriticalSection_End: "
                      "the section's mutex is not locked");
    test_expect_fatal(clear_with_section_open,
                      "Fatal Python error: PyThreadState_Clear: "
                      "the thread state has critical sections open");
}

/* ---- the GIL build: everything is a no-op ------------------------------------------------------ */

Test(critical_section, gil_build_functions_do_nothing, .init = setup, .fini = teardown)
{
    if (ft_free_threaded) {
        cr_skip_test("free-threaded build: sections lock (the tests above)");
    }
    PyMutex m = { 0 };
    PyMutex_Lock(&m);   /* held: a section that locked it would deadlock */
    Py_BEGIN_CRITICAL_SECTION_MUTEX(&m);
    cr_assert_eq(top(), 0);
    Py_END_CRITICAL_SECTION();

    PyCriticalSection c;
    PyCriticalSection2 c2;
    memset(&c, 0xA5, sizeof c);
    memset(&c2, 0xA5, sizeof c2);
    unsigned char want[sizeof c2];
    memset(want, 0xA5, sizeof want);
    PyCriticalSection_BeginMutex(&c, &m);
    PyCriticalSection2_BeginMutex(&c2, &m, &m);
    PyCriticalSection_Begin(&c, OA);
    PyCriticalSection2_Begin(&c2, OA, OB);
    cr_assert_eq(memcmp(&c, want, sizeof c), 0, "the section was written to");
    cr_assert_eq(memcmp(&c2, want, sizeof c2), 0, "the section was written to");
    cr_assert_eq(top(), 0);
    PyCriticalSection2_End(&c2);
    PyCriticalSection_End(&c);
    PyCriticalSection2_End(&c2);   /* out of order / twice: nothing to check */
    PyCriticalSection_End(&c);
    cr_assert_eq(top(), 0);
    cr_assert(PyMutex_IsLocked(&m));
    PyMutex_Unlock(&m);
}
