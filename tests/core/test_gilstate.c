/* core/gilstate.c: PyGILState_* and PEP 788 (interpreter guards, views,
 * PyThreadState_Ensure / EnsureFromView / Release).
 *
 * Scenario H82 (a raw thread's PyGILState_Ensure after init), nesting, which
 * states Ensure reuses and which Release deletes (checked by walking the
 * interpreter's registry by thread-state id, and by
 * PyGILState_GetThisThreadState), misuse that must be fatal, a state deleted
 * from another thread, and for PEP 788: fresh threads, reuse, nesting,
 * restoring the previous state, views that outlive a finalize/re-init cycle,
 * guards that hold finalization back, and allocation failures.
 *
 * Helper threads record into atomics; only the test's main thread asserts.
 * In the GIL build a helper cannot attach while the main thread is
 * attached, so the main thread detaches (PyEval_SaveThread) around them.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_pystate.h"

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_MS 5000

TestSuite(gilstate, .timeout = FT_TIMEOUT(30));
TestSuite(pep788, .timeout = FT_TIMEOUT(30));

/* ---- helpers ------------------------------------------------------------- */

/* The caller must be attached for the whole walk. */
static bool
registered(PyInterpreterState *interp, uint64_t id)
{
    for (PyThreadState *t = PyInterpreterState_ThreadHead(interp); t; t = PyThreadState_Next(t)) {
        if (PyThreadState_GetID(t) == id) {
            return true;
        }
    }
    return false;
}

static int64_t
open_guards(PyInterpreterState *interp)
{
    return atomic_load(&interp->guards);
}

/* ---- H82: a raw thread after init ------------------------------------------ */

static struct {
    atomic_int done;
    atomic_int ret;            /* PyGILState_STATE */
    atomic_int check;          /* PyGILState_Check() inside */
    atomic_int this_is_get;    /* GetThisThreadState() == PyThreadState_Get() */
    atomic_int right_interp;
    atomic_int after_attached; /* GetUnchecked() != NULL after Release */
    atomic_int after_check;
} h82;

static void *
h82_thread(void *arg)
{
    PyInterpreterState *interp = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&h82.ret, (int)g);
    atomic_store(&h82.check, PyGILState_Check());
    atomic_store(&h82.this_is_get, PyGILState_GetThisThreadState() == PyThreadState_Get());
    atomic_store(&h82.right_interp, PyThreadState_Get()->interp == interp);
    PyGILState_Release(g);
    atomic_store(&h82.after_attached, PyThreadState_GetUnchecked() != NULL);
    atomic_store(&h82.after_check, PyGILState_Check());
    atomic_store(&h82.done, 1);
    return NULL;
}

Test(gilstate, raw_thread_ensure_after_init, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *save = PyEval_SaveThread();
    atomic_store(&h82.ret, -1);
    atomic_store(&h82.after_attached, -1);
    atomic_store(&h82.after_check, -1);
    pthread_t t = test_start_thread(h82_thread, interp);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&h82.done), POLL_MS));
    test_join_thread(t);
    cr_assert_eq(atomic_load(&h82.ret), PyGILState_UNLOCKED);
    cr_assert_eq(atomic_load(&h82.check), 1);
    cr_assert_eq(atomic_load(&h82.this_is_get), 1);
    cr_assert_eq(atomic_load(&h82.right_interp), 1, "foreign threads get the main interpreter");
    cr_assert_eq(atomic_load(&h82.after_attached), 0);
    cr_assert_eq(atomic_load(&h82.after_check), 0);
    PyEval_RestoreThread(save);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- attached / nested ------------------------------------------------------ */

Test(gilstate, ensure_while_attached_is_locked, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyThreadState *ts = PyThreadState_Get();
    PyGILState_STATE g = PyGILState_Ensure();
    cr_assert_eq(g, PyGILState_LOCKED);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts, "the attached state is kept");
    cr_assert_eq(PyGILState_Check(), 1);
    PyGILState_STATE g2 = PyGILState_Ensure();
    cr_assert_eq(g2, PyGILState_LOCKED);
    PyGILState_Release(g2);
    PyGILState_Release(g);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts, "Release of LOCKED leaves it attached");
    cr_assert_eq(test_count_states(PyInterpreterState_Main()), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* The initializing thread, detached, ensures: it gets its own state back. */
Test(gilstate, ensure_reuses_main_thread_state, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyThreadState *ts = PyThreadState_Get();
    PyThreadState *save = PyEval_SaveThread();
    cr_assert_eq(PyGILState_Check(), 0);
    cr_assert_eq(PyGILState_GetThisThreadState(), ts, "detached, but still this thread's");
    PyGILState_STATE g = PyGILState_Ensure();
    cr_assert_eq(g, PyGILState_UNLOCKED);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    PyGILState_Release(g);
    cr_assert_null(PyThreadState_GetUnchecked());
    cr_assert_eq(PyGILState_GetThisThreadState(), ts, "not deleted: Ensure did not create it");
    PyEval_RestoreThread(save);
    cr_assert_eq(test_count_states(PyInterpreterState_Main()), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static struct {
    atomic_int done;
    PyThreadState *_Atomic ts[3];
    atomic_int ret[3];
    PyThreadState *_Atomic after[3];   /* GetUnchecked() after each Release */
    PyThreadState *_Atomic this_after;
} nest;

static void *
nested_thread(void *arg)
{
    (void)arg;
    PyGILState_STATE g[3];
    for (int i = 0; i < 3; i++) {
        g[i] = PyGILState_Ensure();
        atomic_store(&nest.ret[i], (int)g[i]);
        atomic_store(&nest.ts[i], PyThreadState_GetUnchecked());
    }
    for (int i = 2; i >= 0; i--) {
        PyGILState_Release(g[i]);
        atomic_store(&nest.after[i], PyThreadState_GetUnchecked());
    }
    atomic_store(&nest.this_after, PyGILState_GetThisThreadState());
    atomic_store(&nest.done, 1);
    return NULL;
}

Test(gilstate, nested_ensure_on_foreign_thread, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(nested_thread, NULL);
    test_join_thread(t);
    cr_assert_eq(atomic_load(&nest.done), 1);
    cr_assert_eq(atomic_load(&nest.ret[0]), PyGILState_UNLOCKED);
    cr_assert_eq(atomic_load(&nest.ret[1]), PyGILState_LOCKED);
    cr_assert_eq(atomic_load(&nest.ret[2]), PyGILState_LOCKED);
    PyThreadState *ts = atomic_load(&nest.ts[0]);
    cr_assert_not_null(ts);
    cr_assert_eq(atomic_load(&nest.ts[1]), ts);
    cr_assert_eq(atomic_load(&nest.ts[2]), ts);
    cr_assert_eq(atomic_load(&nest.after[2]), ts, "inner Release keeps the state attached");
    cr_assert_eq(atomic_load(&nest.after[1]), ts);
    cr_assert_null(atomic_load(&nest.after[0]), "the outermost Release detaches");
    cr_assert_null(atomic_load(&nest.this_after), "and deletes the state Ensure created");
    PyEval_RestoreThread(save);
    cr_assert_eq(test_count_states(PyInterpreterState_Main()), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* A state PyGILState_Ensure created is gone from the registry after the
 * last Release; while the Ensure is open it is there. */
static struct {
    atomic_int ensured, go, released;
    _Atomic uint64_t id;
    PyThreadState *_Atomic this_before, *_Atomic this_after;
    atomic_int check_in_block, unchecked_in_block_null;
} del;

static void *
deleted_thread(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyThreadState *ts = PyThreadState_Get();
    atomic_store(&del.id, PyThreadState_GetID(ts));
    atomic_store(&del.this_before, PyGILState_GetThisThreadState());
    Py_BEGIN_ALLOW_THREADS
    atomic_store(&del.check_in_block, PyGILState_Check());
    atomic_store(&del.unchecked_in_block_null, PyThreadState_GetUnchecked() == NULL);
    atomic_store(&del.ensured, 1);
    test_wait_flag(&del.go, 4 * POLL_MS);
    Py_END_ALLOW_THREADS
    PyGILState_Release(g);
    atomic_store(&del.this_after, PyGILState_GetThisThreadState());
    atomic_store(&del.released, 1);
    return NULL;
}

Test(gilstate, last_release_deletes_gilstate_state, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *save = PyEval_SaveThread();
    atomic_store(&del.check_in_block, -1);
    pthread_t t = test_start_thread(deleted_thread, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&del.ensured), POLL_MS));
    PyEval_RestoreThread(save);   /* GIL build: possible only if the block detached */
    uint64_t id = atomic_load(&del.id);
    cr_assert(registered(interp, id), "the ensured state is registered while in use");
    cr_assert_eq(test_count_states(interp), 2);
    cr_assert_eq(atomic_load(&del.check_in_block), 0, "detached inside ALLOW_THREADS");
    cr_assert_eq(atomic_load(&del.unchecked_in_block_null), 1);
    save = PyEval_SaveThread();
    atomic_store(&del.go, 1);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&del.released), POLL_MS));
    test_join_thread(t);
    PyEval_RestoreThread(save);
    cr_assert_not(registered(interp, id), "the GILState-created state is still registered");
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_not_null(atomic_load(&del.this_before));
    cr_assert_null(atomic_load(&del.this_after));
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* A user state, attached once on its thread, is what Ensure reuses, and
 * Release does not delete it. */
static struct {
    PyInterpreterState *interp;
    atomic_int done;
    PyThreadState *_Atomic user, *_Atomic ensured, *_Atomic after, *_Atomic this_after;
    PyThreadState *_Atomic this_after_delete;
    atomic_int ret;
} usr;

static void *
user_state_thread(void *arg)
{
    (void)arg;
    PyThreadState *ts = PyThreadState_New(usr.interp);
    atomic_store(&usr.user, ts);
    PyEval_RestoreThread(ts);
    PyEval_SaveThread();
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&usr.ret, (int)g);
    atomic_store(&usr.ensured, PyThreadState_GetUnchecked());
    PyGILState_Release(g);
    atomic_store(&usr.after, PyThreadState_GetUnchecked());
    atomic_store(&usr.this_after, PyGILState_GetThisThreadState());
    /* still usable: attach, clear, delete */
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    atomic_store(&usr.this_after_delete, PyGILState_GetThisThreadState());
    atomic_store(&usr.done, 1);
    return NULL;
}

Test(gilstate, user_state_is_reused_and_kept, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    usr.interp = PyInterpreterState_Main();
    PyThreadState *save = PyEval_SaveThread();
    atomic_store(&usr.ret, -1);
    pthread_t t = test_start_thread(user_state_thread, NULL);
    test_join_thread(t);
    cr_assert_eq(atomic_load(&usr.done), 1);
    PyThreadState *user = atomic_load(&usr.user);
    cr_assert_not_null(user);
    cr_assert_eq(atomic_load(&usr.ret), PyGILState_UNLOCKED);
    cr_assert_eq(atomic_load(&usr.ensured), user, "Ensure reuses the thread's user state");
    cr_assert_null(atomic_load(&usr.after), "Release detaches it");
    cr_assert_eq(atomic_load(&usr.this_after), user, "Release does not delete a user state");
    cr_assert_null(atomic_load(&usr.this_after_delete));
    PyEval_RestoreThread(save);
    cr_assert_eq(test_count_states(usr.interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(gilstate, check_without_attached_state, .timeout = FT_TIMEOUT(10))
{
    cr_assert_eq(PyGILState_Check(), 0, "before initialization");
    cr_assert_null(PyGILState_GetThisThreadState());
    Py_Initialize();
    PyThreadState *ts = PyThreadState_Get();
    cr_assert_eq(PyGILState_Check(), 1);
    PyThreadState *save = PyEval_SaveThread();
    cr_assert_eq(PyGILState_Check(), 0, "detached");
    PyEval_RestoreThread(save);
    /* another state of this thread attached: GetThisThreadState follows it */
    PyThreadState *other = PyThreadState_New(PyInterpreterState_Main());
    cr_assert_eq(PyThreadState_Swap(other), ts);
    cr_assert_eq(PyGILState_Check(), 1);
    cr_assert_eq(PyGILState_GetThisThreadState(), other);
    cr_assert_eq(PyThreadState_Swap(ts), other);
    cr_assert_eq(PyGILState_GetThisThreadState(), ts);
    PyThreadState_Clear(other);
    PyThreadState_Delete(other);
    cr_assert_eq(PyGILState_GetThisThreadState(), ts);
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(PyGILState_Check(), 0, "after finalization");
}

/* Py_BEGIN_ALLOW_THREADS inside an Ensure region really detaches: in the
 * GIL build the main thread can attach meanwhile. */
static struct {
    atomic_int in_block, go, done;
    PyThreadState *_Atomic ts, *_Atomic in_this, *_Atomic after;
    atomic_int in_check;
} allow;

static void *
allow_thread(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&allow.ts, PyThreadState_Get());
    Py_BEGIN_ALLOW_THREADS
    atomic_store(&allow.in_check, PyGILState_Check());
    atomic_store(&allow.in_this, PyGILState_GetThisThreadState());
    atomic_store(&allow.in_block, 1);
    test_wait_flag(&allow.go, 4 * POLL_MS);
    Py_END_ALLOW_THREADS
    atomic_store(&allow.after, PyThreadState_GetUnchecked());
    PyGILState_Release(g);
    atomic_store(&allow.done, 1);
    return NULL;
}

Test(gilstate, allow_threads_inside_ensure, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyThreadState *save = PyEval_SaveThread();
    atomic_store(&allow.in_check, -1);
    pthread_t t = test_start_thread(allow_thread, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&allow.in_block), POLL_MS));
    PyEval_RestoreThread(save);   /* blocks forever in the GIL build if not detached */
    cr_assert_eq(Py_MakePendingCalls(), 0);
    save = PyEval_SaveThread();
    atomic_store(&allow.go, 1);
    test_join_thread(t);
    cr_assert_eq(atomic_load(&allow.done), 1);
    PyThreadState *ts = atomic_load(&allow.ts);
    cr_assert_eq(atomic_load(&allow.in_check), 0);
    cr_assert_eq(atomic_load(&allow.in_this), ts, "the detached state is still this thread's");
    cr_assert_eq(atomic_load(&allow.after), ts, "END_ALLOW_THREADS re-attached the same state");
    PyEval_RestoreThread(save);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* A state deleted by another thread: its owner's GetThisThreadState must
 * not return it (a dangling pointer there would be reused by Ensure). */
static struct {
    PyInterpreterState *interp;
    atomic_int bound, go, done, ensure_ok;
    PyThreadState *_Atomic ts, *_Atomic this_before, *_Atomic this_after;
    PyThreadState *_Atomic ensured;
} rdel;

static void *
remote_delete_owner(void *arg)
{
    (void)arg;
    PyThreadState *ts = PyThreadState_New(rdel.interp);
    atomic_store(&rdel.ts, ts);
    PyThreadState_Swap(ts);     /* the documented New + Swap pattern, from no state */
    PyThreadState_Swap(NULL);
    atomic_store(&rdel.this_before, PyGILState_GetThisThreadState());
    atomic_store(&rdel.bound, 1);
    test_wait_flag(&rdel.go, 4 * POLL_MS);
    atomic_store(&rdel.this_after, PyGILState_GetThisThreadState());
    PyGILState_STATE g = PyGILState_Ensure();   /* must create a new state */
    PyThreadState *now = PyThreadState_Get();
    atomic_store(&rdel.ensured, now);
    atomic_store(&rdel.ensure_ok, now->interp == rdel.interp && PyGILState_Check() == 1);
    PyGILState_Release(g);
    atomic_store(&rdel.done, 1);
    return NULL;
}

Test(gilstate, state_deleted_by_another_thread_is_forgotten, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    rdel.interp = PyInterpreterState_Main();
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(remote_delete_owner, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&rdel.bound), POLL_MS));
    PyThreadState *ts = atomic_load(&rdel.ts);
    cr_assert_eq(atomic_load(&rdel.this_before), ts);
    PyEval_RestoreThread(save);
    PyThreadState_Clear(ts);
    PyThreadState_Delete(ts);
    cr_assert_eq(test_count_states(rdel.interp), 1);
    save = PyEval_SaveThread();
    atomic_store(&rdel.go, 1);
    test_join_thread(t);
    cr_assert_eq(atomic_load(&rdel.done), 1);
    cr_assert_null(atomic_load(&rdel.this_after),
                   "GetThisThreadState returned a state deleted by another thread");
    cr_assert_eq(atomic_load(&rdel.ensure_ok), 1);
    PyEval_RestoreThread(save);
    cr_assert_eq(test_count_states(rdel.interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* A thread whose last state was shut down by finalization (a zombie) gets
 * a fresh state from Ensure after re-initialization: the zombie must not be
 * reused (attaching it would hang). */
static struct {
    PyInterpreterState *interp;
    PyInterpreterGuard *guard;
    atomic_int bound, go, done, gil_ok, pep_ok;
    PyThreadState *_Atomic user, *_Atomic gil_ts, *_Atomic pep_ts, *_Atomic this_after;
} zr;

static void *
zombie_owner(void *arg)
{
    (void)arg;
    PyThreadState *ts = PyThreadState_New(zr.interp);
    atomic_store(&zr.user, ts);
    PyEval_RestoreThread(ts);
    PyEval_SaveThread();
    atomic_store(&zr.bound, 1);
    test_wait_flag(&zr.go, 4 * POLL_MS);   /* meanwhile: finalize, re-initialize */
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_store(&zr.gil_ts, PyThreadState_Get());
    atomic_store(&zr.gil_ok, g == PyGILState_UNLOCKED && PyGILState_Check() == 1);
    PyGILState_Release(g);
    PyThreadStateToken *tok = PyThreadState_Ensure(zr.guard);
    if (tok) {
        atomic_store(&zr.pep_ts, PyThreadState_Get());
        atomic_store(&zr.pep_ok, 1);
        PyThreadState_Release(tok);
    }
    atomic_store(&zr.this_after, PyGILState_GetThisThreadState());
    PyThreadState_Delete(ts);   /* the zombie: frees it */
    atomic_store(&zr.done, 1);
    return NULL;
}

Test(gilstate, shut_down_state_not_reused_after_reinit, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    zr.interp = PyInterpreterState_Main();
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(zombie_owner, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&zr.bound), POLL_MS));
    PyEval_RestoreThread(save);
    cr_assert_eq(test_count_states(zr.interp), 2);
    cr_assert_eq(Py_FinalizeEx(), 0);
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    zr.guard = PyInterpreterGuard_FromCurrent();
    cr_assert_eq(test_count_states(interp), 1, "the zombie is still registered");
    save = PyEval_SaveThread();
    atomic_store(&zr.go, 1);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&zr.done), POLL_MS),
              "the thread hung: Ensure re-attached its shut-down state");
    test_join_thread(t);
    PyThreadState *user = atomic_load(&zr.user);
    cr_assert_eq(atomic_load(&zr.gil_ok), 1);
    cr_assert_neq(atomic_load(&zr.gil_ts), user);
    cr_assert_eq(atomic_load(&zr.pep_ok), 1);
    cr_assert_neq(atomic_load(&zr.pep_ts), user);
    cr_assert_null(atomic_load(&zr.this_after));
    PyEval_RestoreThread(save);
    cr_assert_eq(test_count_states(interp), 1);
    PyInterpreterGuard_Close(zr.guard);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* Many threads ensure and release at once (the registry, the slots). */
#define STRESS_THREADS 4
#define STRESS_ITERS 300

static struct {
    PyInterpreterView *view;
    atomic_int bad;
} stress;

static void *
stress_thread(void *arg)
{
    int kind = (int)(intptr_t)arg;
    for (int i = 0; i < STRESS_ITERS; i++) {
        if (kind % 2 == 0) {
            PyGILState_STATE g = PyGILState_Ensure();
            PyGILState_STATE g2 = PyGILState_Ensure();
            if (g != PyGILState_UNLOCKED || g2 != PyGILState_LOCKED || !PyGILState_Check()) {
                atomic_store(&stress.bad, 1);
            }
            PyGILState_Release(g2);
            if (i % 16 == 0) {
                PyErr_CheckSignals();
            }
            PyGILState_Release(g);
        }
        else {
            PyThreadStateToken *tok = PyThreadState_EnsureFromView(stress.view);
            if (!tok || !PyThreadState_GetUnchecked()) {
                atomic_store(&stress.bad, 2);
                continue;
            }
            PyThreadState_Release(tok);
        }
        if (PyThreadState_GetUnchecked() != NULL) {
            atomic_store(&stress.bad, 3);
        }
    }
    return NULL;
}

Test(gilstate, concurrent_ensure_release, .timeout = FT_TIMEOUT(30))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    stress.view = PyInterpreterView_FromMain();
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++) {
        t[i] = test_start_thread(stress_thread, (void *)(intptr_t)i);
    }
    for (int i = 0; i < STRESS_THREADS; i++) {
        test_join_thread(t[i]);
    }
    cr_assert_eq(atomic_load(&stress.bad), 0, "step %d failed", atomic_load(&stress.bad));
    PyEval_RestoreThread(save);
    cr_assert_eq(test_count_states(interp), 1, "states left behind");
    cr_assert_eq(open_guards(interp), 0);
    PyInterpreterView_Close(stress.view);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- GILState misuse ----------------------------------------------------------- */

static void
release_detached(void)
{
    Py_Initialize();
    (void)PyEval_SaveThread();
    PyGILState_Release(PyGILState_UNLOCKED);
}

Test(gilstate, release_without_ensure_no_state_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(release_detached, "Fatal Python error: PyGILState_Release: ");
}

static void
release_user_state(void)
{
    Py_Initialize();
    PyThreadState *user = PyThreadState_New(PyInterpreterState_Main());
    (void)PyThreadState_Swap(user);
    PyGILState_Release(PyGILState_LOCKED);
}

Test(gilstate, release_without_ensure_user_state_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(release_user_state, "Fatal Python error: PyGILState_Release: ");
}

static void
release_main_state(void)
{
    Py_Initialize();
    PyGILState_Release(PyGILState_LOCKED);
}

Test(gilstate, release_without_ensure_main_state_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(release_main_state, "Fatal Python error: PyGILState_Release: ");
}

static void *
extra_release_thread(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyGILState_Release(g);
    PyGILState_Release(g);
    return NULL;
}

static void
extra_release(void)
{
    Py_Initialize();
    (void)PyEval_SaveThread();
    pthread_t t;
    pthread_create(&t, NULL, extra_release_thread, NULL);
    pthread_join(t, NULL);
}

Test(gilstate, extra_release_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(extra_release, "Fatal Python error: PyGILState_Release: ");
}

static void
extra_release_nested(void)
{
    Py_Initialize();
    (void)PyEval_SaveThread();
    PyGILState_STATE g = PyGILState_Ensure();   /* reuses the main state */
    PyGILState_STATE g2 = PyGILState_Ensure();
    PyGILState_Release(g2);
    PyGILState_Release(g);
    PyGILState_Release(g);   /* nothing attached any more */
}

Test(gilstate, extra_release_of_reused_state_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(extra_release_nested, "Fatal Python error: PyGILState_Release: ");
}

static void
release_bad_value(void)
{
    Py_Initialize();
    (void)PyGILState_Ensure();
    PyGILState_Release((PyGILState_STATE)7);
}

Test(gilstate, release_invalid_value_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(release_bad_value, "Fatal Python error: PyGILState_Release: ");
}

static void *
ensure_oom_thread(void *arg)
{
    (void)arg;
    (void)PyGILState_GetThisThreadState();   /* the thread's slot exists */
    ft_alloc_fail_after(1);                  /* so this is the state itself */
    (void)PyGILState_Ensure();
    return NULL;
}

static void
ensure_oom(void)
{
    Py_Initialize();
    (void)PyEval_SaveThread();
    pthread_t t;
    pthread_create(&t, NULL, ensure_oom_thread, NULL);
    pthread_join(t, NULL);
}

Test(gilstate, ensure_out_of_memory_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(ensure_oom, "Fatal Python error: PyGILState_Ensure: ");
}

/* ==== PEP 788 ==================================================================== */

static void
noop_close_null(void)
{
    PyInterpreterGuard_Close(NULL);
    PyInterpreterView_Close(NULL);
}

Test(pep788, null_arguments, .timeout = FT_TIMEOUT(10))
{
    noop_close_null();
    cr_assert_null(PyInterpreterGuard_FromView(NULL));
    cr_assert_null(PyThreadState_EnsureFromView(NULL));
    Py_Initialize();
    noop_close_null();
    cr_assert_null(PyInterpreterGuard_FromView(NULL));
    cr_assert_null(PyThreadState_EnsureFromView(NULL));
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(pep788, main_view_needs_no_state, .timeout = FT_TIMEOUT(10))
{
    PyInterpreterView *before = PyInterpreterView_FromMain();
    cr_assert_not_null(before, "a main view can be made before initialization");
    cr_assert_null(PyInterpreterGuard_FromView(before), "no main interpreter yet");
    cr_assert_null(PyThreadState_EnsureFromView(before));
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *save = PyEval_SaveThread();
    PyInterpreterGuard *g = PyInterpreterGuard_FromView(before);
    cr_assert_not_null(g, "the view made before initialization follows the main interpreter");
    cr_assert_eq(open_guards(interp), 1);
    PyInterpreterGuard_Close(g);
    cr_assert_eq(open_guards(interp), 0);
    PyEval_RestoreThread(save);
    PyInterpreterView_Close(before);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* From a fresh thread: Ensure attaches a state of the guarded interpreter,
 * Release deletes it and leaves nothing attached. */
static struct {
    PyInterpreterGuard *guard;
    PyInterpreterView *view;
    PyInterpreterState *interp;
    atomic_int use_view, done, token_ok, right_interp, check;
    _Atomic uint64_t id;
    PyThreadState *_Atomic after, *_Atomic this_after;
} fr;

static void *
fresh_ensure_thread(void *arg)
{
    (void)arg;
    PyThreadStateToken *tok = atomic_load(&fr.use_view) ? PyThreadState_EnsureFromView(fr.view)
                                                        : PyThreadState_Ensure(fr.guard);
    atomic_store(&fr.token_ok, tok != NULL);
    if (tok) {
        PyThreadState *ts = PyThreadState_GetUnchecked();
        atomic_store(&fr.right_interp, ts && ts->interp == fr.interp);
        atomic_store(&fr.check, PyGILState_Check());
        atomic_store(&fr.id, ts ? PyThreadState_GetID(ts) : 0);
        PyThreadState_Release(tok);
    }
    atomic_store(&fr.after, PyThreadState_GetUnchecked());
    atomic_store(&fr.this_after, PyGILState_GetThisThreadState());
    atomic_store(&fr.done, 1);
    return NULL;
}

static void
run_fresh_ensure(bool use_view)
{
    Py_Initialize();
    fr.interp = PyInterpreterState_Main();
    fr.guard = PyInterpreterGuard_FromCurrent();
    cr_assert_not_null(fr.guard);
    fr.view = PyInterpreterView_FromCurrent();
    cr_assert_not_null(fr.view);
    cr_assert_eq(open_guards(fr.interp), 1);
    atomic_store(&fr.use_view, use_view);
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(fresh_ensure_thread, NULL);
    test_join_thread(t);
    PyEval_RestoreThread(save);
    cr_assert_eq(atomic_load(&fr.done), 1);
    cr_assert_eq(atomic_load(&fr.token_ok), 1, "Ensure failed");
    cr_assert_eq(atomic_load(&fr.right_interp), 1);
    cr_assert_eq(atomic_load(&fr.check), 1);
    cr_assert_null(atomic_load(&fr.after), "Release left a state attached");
    cr_assert_null(atomic_load(&fr.this_after), "the thread still has a state");
    cr_assert_not(registered(fr.interp, atomic_load(&fr.id)),
                  "the state Ensure created was not deleted");
    cr_assert_eq(test_count_states(fr.interp), 1);
    cr_assert_eq(open_guards(fr.interp), 1, "EnsureFromView's implicit guard was not released");
    PyInterpreterGuard_Close(fr.guard);
    cr_assert_eq(open_guards(fr.interp), 0);
    PyInterpreterView_Close(fr.view);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(pep788, ensure_from_fresh_thread, .timeout = FT_TIMEOUT(10))
{
    run_fresh_ensure(false);
}

Test(pep788, ensure_from_view_from_fresh_thread, .timeout = FT_TIMEOUT(10))
{
    run_fresh_ensure(true);
}

Test(pep788, ensure_reuses_attached_state, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    PyThreadState *ts = PyThreadState_Get();
    PyInterpreterGuard *g = PyInterpreterGuard_FromCurrent();
    PyInterpreterView *v = PyInterpreterView_FromCurrent();
    cr_assert_not_null(g);
    cr_assert_not_null(v);
    PyThreadStateToken *t1 = PyThreadState_Ensure(g);
    cr_assert_not_null(t1);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    PyThreadStateToken *t2 = PyThreadState_EnsureFromView(v);
    cr_assert_not_null(t2);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    cr_assert_eq(open_guards(interp), 2, "the explicit guard and EnsureFromView's");
    PyThreadStateToken *t3 = PyThreadState_Ensure(g);
    cr_assert_not_null(t3);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    PyThreadState_Release(t3);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    PyThreadState_Release(t2);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts);
    cr_assert_eq(open_guards(interp), 1);
    PyThreadState_Release(t1);
    cr_assert_eq(PyThreadState_GetUnchecked(), ts, "the state that was attached stays attached");
    cr_assert(registered(interp, PyThreadState_GetID(ts)));
    cr_assert_eq(test_count_states(interp), 1);
    PyInterpreterGuard_Close(g);
    PyInterpreterView_Close(v);
    cr_assert_eq(open_guards(interp), 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* Nesting on a foreign thread: the first Ensure creates, the inner ones
 * reuse, the last Release deletes. */
static struct {
    PyInterpreterGuard *guard;
    PyInterpreterView *view;
    atomic_int done, toks_ok;
    PyThreadState *_Atomic ts[3];
    PyThreadState *_Atomic after[3];
    PyThreadState *_Atomic this_after;
} pn;

static void *
pep_nested_thread(void *arg)
{
    (void)arg;
    PyThreadStateToken *t[3];
    t[0] = PyThreadState_Ensure(pn.guard);
    atomic_store(&pn.ts[0], PyThreadState_GetUnchecked());
    t[1] = PyThreadState_EnsureFromView(pn.view);
    atomic_store(&pn.ts[1], PyThreadState_GetUnchecked());
    t[2] = PyThreadState_Ensure(pn.guard);
    atomic_store(&pn.ts[2], PyThreadState_GetUnchecked());
    atomic_store(&pn.toks_ok, t[0] && t[1] && t[2]);
    if (t[0] && t[1] && t[2]) {
        for (int i = 2; i >= 0; i--) {
            PyThreadState_Release(t[i]);
            atomic_store(&pn.after[i], PyThreadState_GetUnchecked());
        }
    }
    atomic_store(&pn.this_after, PyGILState_GetThisThreadState());
    atomic_store(&pn.done, 1);
    return NULL;
}

Test(pep788, nested_ensure_on_foreign_thread, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    pn.guard = PyInterpreterGuard_FromCurrent();
    pn.view = PyInterpreterView_FromMain();
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(pep_nested_thread, NULL);
    test_join_thread(t);
    PyEval_RestoreThread(save);
    cr_assert_eq(atomic_load(&pn.done), 1);
    cr_assert_eq(atomic_load(&pn.toks_ok), 1);
    PyThreadState *ts = atomic_load(&pn.ts[0]);
    cr_assert_not_null(ts);
    cr_assert_neq(ts, save);
    cr_assert_eq(atomic_load(&pn.ts[1]), ts);
    cr_assert_eq(atomic_load(&pn.ts[2]), ts);
    cr_assert_eq(atomic_load(&pn.after[2]), ts);
    cr_assert_eq(atomic_load(&pn.after[1]), ts);
    cr_assert_null(atomic_load(&pn.after[0]));
    cr_assert_null(atomic_load(&pn.this_after));
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(open_guards(interp), 1);
    PyInterpreterGuard_Close(pn.guard);
    PyInterpreterView_Close(pn.view);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* A detached user state, attached once on this thread, is reused and not
 * deleted by Release. */
static struct {
    PyInterpreterGuard *guard;
    PyInterpreterState *interp;
    atomic_int done;
    PyThreadState *_Atomic user, *_Atomic ensured, *_Atomic after, *_Atomic this_after;
} pu;

static void *
pep_user_thread(void *arg)
{
    (void)arg;
    PyThreadState *ts = PyThreadState_New(pu.interp);
    atomic_store(&pu.user, ts);
    PyEval_RestoreThread(ts);
    PyEval_SaveThread();
    PyThreadStateToken *tok = PyThreadState_Ensure(pu.guard);
    atomic_store(&pu.ensured, PyThreadState_GetUnchecked());
    if (tok) {
        PyThreadState_Release(tok);
    }
    atomic_store(&pu.after, PyThreadState_GetUnchecked());
    atomic_store(&pu.this_after, PyGILState_GetThisThreadState());
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    atomic_store(&pu.done, 1);
    return NULL;
}

Test(pep788, ensure_reuses_detached_user_state, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    pu.interp = PyInterpreterState_Main();
    pu.guard = PyInterpreterGuard_FromCurrent();
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(pep_user_thread, NULL);
    test_join_thread(t);
    PyEval_RestoreThread(save);
    cr_assert_eq(atomic_load(&pu.done), 1);
    PyThreadState *user = atomic_load(&pu.user);
    cr_assert_eq(atomic_load(&pu.ensured), user);
    cr_assert_null(atomic_load(&pu.after));
    cr_assert_eq(atomic_load(&pu.this_after), user, "Release deleted a user-created state");
    cr_assert_eq(test_count_states(pu.interp), 1);
    PyInterpreterGuard_Close(pu.guard);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* Release re-attaches whatever was attached before the Ensure, here a state
 * of another interpreter.  ftrt has no public way to make a second
 * interpreter, so the test builds one from the internal initializer; a
 * guard on it comes from PyInterpreterGuard_FromCurrent with one of its
 * states attached. */
static PyInterpreterState second_interp;

Test(pep788, release_restores_previous_state, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterState *main_interp = PyInterpreterState_Main();
    PyThreadState *main_ts = PyThreadState_Get();
    ft_interp_init(&second_interp, 1);

    PyThreadState *other = PyThreadState_New(&second_interp);
    cr_assert_not_null(other);
    cr_assert_eq(PyThreadState_Swap(other), main_ts);
    PyInterpreterGuard *og = PyInterpreterGuard_FromCurrent();
    cr_assert_not_null(og);
    cr_assert_eq(open_guards(&second_interp), 1);
    cr_assert_eq(PyThreadState_Swap(main_ts), other);

    PyThreadStateToken *tok = PyThreadState_Ensure(og);
    cr_assert_not_null(tok);
    PyThreadState *ensured = PyThreadState_GetUnchecked();
    cr_assert_not_null(ensured);
    cr_assert_eq(ensured->interp, &second_interp, "Ensure attached a state of the guarded one");
    cr_assert_neq(ensured, main_ts);
    /* nesting inside the switched region */
    PyThreadStateToken *inner = PyThreadState_Ensure(og);
    cr_assert_not_null(inner);
    cr_assert_eq(PyThreadState_GetUnchecked(), ensured);
    PyThreadState_Release(inner);
    cr_assert_eq(PyThreadState_GetUnchecked(), ensured);
    PyThreadState_Release(tok);
    cr_assert_eq(PyThreadState_GetUnchecked(), main_ts, "Release re-attaches the previous state");
    cr_assert_eq(main_ts->interp, main_interp);
    cr_assert_eq(test_count_states(&second_interp), 1, "only `other` is left in the second one");
    cr_assert_eq(test_count_states(main_interp), 1);

    /* the other way round: a guard on the main interpreter, ensured with a
     * state of the second one attached.  The thread's last state is
     * `other` (wrong interpreter), so Ensure makes a new one. */
    PyInterpreterGuard *mg = PyInterpreterGuard_FromCurrent();
    cr_assert_not_null(mg);
    cr_assert_eq(PyThreadState_Swap(other), main_ts);
    cr_assert_eq(PyGILState_GetThisThreadState(), other);
    tok = PyThreadState_Ensure(mg);
    cr_assert_not_null(tok);
    ensured = PyThreadState_GetUnchecked();
    cr_assert_not_null(ensured);
    cr_assert_eq(ensured->interp, main_interp);
    cr_assert_neq(ensured, other);
    cr_assert_eq(test_count_states(main_interp), 2);
    PyThreadState_Release(tok);
    cr_assert_eq(PyThreadState_GetUnchecked(), other, "Release re-attaches the previous state");
    cr_assert_eq(test_count_states(main_interp), 1, "the state Ensure made was not deleted");
    cr_assert_eq(PyThreadState_Swap(main_ts), other);

    PyInterpreterGuard_Close(mg);
    PyInterpreterGuard_Close(og);
    cr_assert_eq(open_guards(&second_interp), 0);
    PyThreadState_Clear(other);
    PyThreadState_Delete(other);
    cr_assert_eq(test_count_states(&second_interp), 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* Views across a finalize / re-initialize cycle: one made by FromCurrent
 * names that interpreter and fails afterwards; FromMain follows the new main
 * interpreter. */
static struct {
    PyInterpreterView *view;
    atomic_int done, ok, right_interp;
    PyInterpreterState *_Atomic expect;
} rv;

static void *
reinit_view_thread(void *arg)
{
    (void)arg;
    PyThreadStateToken *tok = PyThreadState_EnsureFromView(rv.view);
    atomic_store(&rv.ok, tok != NULL);
    if (tok) {
        atomic_store(&rv.right_interp, PyThreadState_Get()->interp == atomic_load(&rv.expect));
        PyThreadState_Release(tok);
    }
    atomic_store(&rv.done, 1);
    return NULL;
}

Test(pep788, views_across_reinitialization, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterView *cur = PyInterpreterView_FromCurrent();
    PyInterpreterView *main_view = PyInterpreterView_FromMain();
    cr_assert_not_null(cur);
    cr_assert_not_null(main_view);
    cr_assert_eq(Py_FinalizeEx(), 0);

    /* between cycles: nothing to guard, no crash, no hang */
    cr_assert_null(PyThreadState_EnsureFromView(cur));
    cr_assert_null(PyThreadState_EnsureFromView(main_view));
    cr_assert_null(PyInterpreterGuard_FromView(cur));
    cr_assert_null(PyInterpreterGuard_FromView(main_view));
    cr_assert_null(PyThreadState_GetUnchecked());

    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    cr_assert_null(PyThreadState_EnsureFromView(cur),
                   "a FromCurrent view must not name the re-initialized interpreter");
    cr_assert_null(PyInterpreterGuard_FromView(cur));
    cr_assert_eq(open_guards(interp), 0);
    PyInterpreterGuard *g = PyInterpreterGuard_FromView(main_view);
    cr_assert_not_null(g, "the main view follows re-initialization");
    PyInterpreterGuard_Close(g);

    rv.view = main_view;
    atomic_store(&rv.expect, interp);
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(reinit_view_thread, NULL);
    test_join_thread(t);
    PyEval_RestoreThread(save);
    cr_assert_eq(atomic_load(&rv.done), 1);
    cr_assert_eq(atomic_load(&rv.ok), 1);
    cr_assert_eq(atomic_load(&rv.right_interp), 1);

    PyInterpreterView *cur2 = PyInterpreterView_FromCurrent();
    PyThreadStateToken *tok = PyThreadState_EnsureFromView(cur2);
    cr_assert_not_null(tok, "a view of the current interpreter works");
    PyThreadState_Release(tok);
    cr_assert_eq(open_guards(interp), 0);
    cr_assert_eq(test_count_states(interp), 1);
    cr_assert_eq(Py_FinalizeEx(), 0);
    /* views outlive interpreters and the runtime */
    PyInterpreterView_Close(cur);
    PyInterpreterView_Close(cur2);
    PyInterpreterView_Close(main_view);
}

/* A guard held elsewhere holds Py_FinalizeEx back.  The finalizing thread
 * is a helper so the test thread can watch it.  While it waits, no new guard
 * can be had, but the holder can still attach to finish its work. */
static struct {
    PyInterpreterGuard *guard;
    PyInterpreterView *view;
    atomic_int ready, go, fin_done, fin_rc;
} gd;

static void *
guarded_finalizer(void *arg)
{
    (void)arg;
    Py_Initialize();
    gd.guard = PyInterpreterGuard_FromCurrent();
    gd.view = PyInterpreterView_FromMain();
    PyThreadState *save = PyEval_SaveThread();
    atomic_store(&gd.ready, 1);
    test_wait_flag(&gd.go, 4 * POLL_MS);
    PyEval_RestoreThread(save);
    atomic_store(&gd.fin_rc, Py_FinalizeEx());
    atomic_store(&gd.fin_done, 1);
    return NULL;
}

static bool
new_guard_refused(PyInterpreterView *v)
{
    PyInterpreterGuard *g = PyInterpreterGuard_FromView(v);
    if (g) {
        PyInterpreterGuard_Close(g);
        return false;
    }
    return true;
}

Test(pep788, guard_delays_finalization, .timeout = FT_TIMEOUT(20))
{
    atomic_store(&gd.fin_rc, -7);
    pthread_t f = test_start_thread(guarded_finalizer, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&gd.ready), POLL_MS));
    cr_assert_not_null(gd.guard);
    cr_assert_not_null(gd.view);
    atomic_store(&gd.go, 1);
    /* finalization has begun once new guards are refused */
    cr_assert(TEST_POLL_UNTIL(new_guard_refused(gd.view), POLL_MS));
    cr_assert_not(TEST_POLL_UNTIL(atomic_load(&gd.fin_done), 200),
                  "Py_FinalizeEx returned with a guard open");
    cr_assert_eq(Py_IsInitialized(), 1);
    cr_assert_eq(Py_IsFinalizing(), 0, "not marked finalizing while it waits for guards");
    cr_assert_null(PyThreadState_EnsureFromView(gd.view), "no implicit guard either");

    /* the holder can still attach (PyEval_RestoreThread would hang if
     * finalizing were marked) */
    PyThreadStateToken *tok = PyThreadState_Ensure(gd.guard);
    cr_assert_not_null(tok);
    cr_assert_not_null(PyThreadState_GetUnchecked());
    cr_assert_eq(PyGILState_Check(), 1);
    /* attached, but finalization has begun: FromCurrent fails with an
     * exception (a view is still fine: it guards nothing) */
    cr_assert_null(PyErr_Occurred());
    cr_assert_null(PyInterpreterGuard_FromCurrent());
    cr_assert(PyErr_ExceptionMatches(PyExc_RuntimeError), "FromCurrent failed without RuntimeError");
    PyErr_Clear();
    PyInterpreterView *v = PyInterpreterView_FromCurrent();
    cr_assert_not_null(v);
    PyInterpreterView_Close(v);
    PyThreadState_Release(tok);
    cr_assert_null(PyThreadState_GetUnchecked());
    cr_assert_eq(atomic_load(&gd.fin_done), 0);

    PyInterpreterGuard_Close(gd.guard);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&gd.fin_done), POLL_MS),
              "Py_FinalizeEx still waits after the last guard closed");
    cr_assert_eq(atomic_load(&gd.fin_rc), 0);
    test_join_thread(f);
    cr_assert_eq(Py_IsInitialized(), 0);
    /* after finalization */
    cr_assert_null(PyInterpreterGuard_FromView(gd.view));
    cr_assert_null(PyThreadState_EnsureFromView(gd.view));
    PyInterpreterView_Close(gd.view);
}

/* The implicit guard of EnsureFromView holds finalization back too, and the
 * holder may detach and re-attach while the finalizer waits. */
static struct {
    PyInterpreterView *view;
    atomic_int ensured, go_finalize, in_block, go_release, released, reattached_ok;
    atomic_int f_ready, fin_done, fin_rc;
} iv;

static void *
implicit_finalizer(void *arg)
{
    (void)arg;
    Py_Initialize();
    iv.view = PyInterpreterView_FromCurrent();
    PyThreadState *save = PyEval_SaveThread();
    atomic_store(&iv.f_ready, 1);
    test_wait_flag(&iv.go_finalize, 4 * POLL_MS);
    PyEval_RestoreThread(save);
    atomic_store(&iv.fin_rc, Py_FinalizeEx());
    atomic_store(&iv.fin_done, 1);
    return NULL;
}

static void *
implicit_holder(void *arg)
{
    (void)arg;
    PyThreadStateToken *tok = PyThreadState_EnsureFromView(iv.view);
    if (!tok) {
        atomic_store(&iv.ensured, -1);
        return NULL;
    }
    PyThreadState *ts = PyThreadState_Get();
    atomic_store(&iv.ensured, 1);
    Py_BEGIN_ALLOW_THREADS
    atomic_store(&iv.in_block, 1);
    test_wait_flag(&iv.go_release, 4 * POLL_MS);
    Py_END_ALLOW_THREADS
    atomic_store(&iv.reattached_ok, PyThreadState_GetUnchecked() == ts);
    PyThreadState_Release(tok);
    atomic_store(&iv.released, 1);
    return NULL;
}

Test(pep788, ensure_from_view_delays_finalization, .timeout = FT_TIMEOUT(20))
{
    atomic_store(&iv.fin_rc, -7);
    pthread_t f = test_start_thread(implicit_finalizer, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&iv.f_ready), POLL_MS));
    pthread_t h = test_start_thread(implicit_holder, NULL);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&iv.in_block), POLL_MS));
    cr_assert_eq(atomic_load(&iv.ensured), 1);
    atomic_store(&iv.go_finalize, 1);
    cr_assert(TEST_POLL_UNTIL(new_guard_refused(iv.view), POLL_MS));
    cr_assert_not(TEST_POLL_UNTIL(atomic_load(&iv.fin_done), 200),
                  "Py_FinalizeEx returned while an EnsureFromView was open");
    atomic_store(&iv.go_release, 1);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&iv.released), POLL_MS),
              "the guard holder could not re-attach while finalization waited");
    test_join_thread(h);
    cr_assert_eq(atomic_load(&iv.reattached_ok), 1);
    cr_assert(TEST_POLL_UNTIL(atomic_load(&iv.fin_done), POLL_MS));
    cr_assert_eq(atomic_load(&iv.fin_rc), 0);
    test_join_thread(f);
    cr_assert_null(PyThreadState_EnsureFromView(iv.view));
    PyInterpreterView_Close(iv.view);
}

/* ---- out of memory ---------------------------------------------------------------- */

Test(pep788, out_of_memory_guard_and_views, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();

    ft_alloc_fail_after(1);
    cr_assert_null(PyInterpreterGuard_FromCurrent());
    cr_assert_eq(open_guards(interp), 0);

    ft_alloc_fail_after(1);
    cr_assert_null(PyInterpreterView_FromCurrent());
    ft_alloc_fail_after(1);
    cr_assert_null(PyInterpreterView_FromMain());

    PyInterpreterView *v = PyInterpreterView_FromMain();
    cr_assert_not_null(v);
    ft_alloc_fail_after(1);
    cr_assert_null(PyInterpreterGuard_FromView(v));
    cr_assert_eq(open_guards(interp), 0);
    ft_alloc_fail_after(0);

    /* everything works again */
    PyInterpreterGuard *g = PyInterpreterGuard_FromView(v);
    cr_assert_not_null(g);
    PyInterpreterGuard_Close(g);
    cr_assert_eq(open_guards(interp), 0);
    PyInterpreterView_Close(v);
    cr_assert_eq(Py_FinalizeEx(), 0, "a guard leaked by a failure would hang here");
}

static struct {
    PyInterpreterGuard *guard;
    PyInterpreterView *view;
    atomic_int done, ensure_null, from_view_null, after_null, retry_ok;
    PyThreadState *_Atomic this_state;
} oom;

static void *
oom_ensure_thread(void *arg)
{
    (void)arg;
    (void)PyGILState_GetThisThreadState();   /* the thread's slot is allocated now */
    ft_alloc_fail_after(1);                  /* the next allocation: the thread state */
    PyThreadStateToken *tok = PyThreadState_Ensure(oom.guard);
    atomic_store(&oom.ensure_null, tok == NULL);
    ft_alloc_fail_after(1);
    PyThreadStateToken *tok2 = PyThreadState_EnsureFromView(oom.view);
    atomic_store(&oom.from_view_null, tok2 == NULL);
    ft_alloc_fail_after(0);
    atomic_store(&oom.after_null, PyThreadState_GetUnchecked() == NULL);
    atomic_store(&oom.this_state, PyGILState_GetThisThreadState());
    PyThreadStateToken *tok3 = PyThreadState_EnsureFromView(oom.view);
    atomic_store(&oom.retry_ok, tok3 != NULL);
    if (tok3) {
        PyThreadState_Release(tok3);
    }
    if (tok) {
        PyThreadState_Release(tok);   /* only if it wrongly succeeded */
    }
    if (tok2) {
        PyThreadState_Release(tok2);
    }
    atomic_store(&oom.done, 1);
    return NULL;
}

Test(pep788, out_of_memory_ensure, .timeout = FT_TIMEOUT(10))
{
    Py_Initialize();
    PyInterpreterState *interp = PyInterpreterState_Main();
    oom.guard = PyInterpreterGuard_FromCurrent();
    oom.view = PyInterpreterView_FromMain();
    PyThreadState *save = PyEval_SaveThread();
    pthread_t t = test_start_thread(oom_ensure_thread, NULL);
    test_join_thread(t);
    PyEval_RestoreThread(save);
    cr_assert_eq(atomic_load(&oom.done), 1);
    cr_assert_eq(atomic_load(&oom.ensure_null), 1, "Ensure must return NULL when out of memory");
    cr_assert_eq(atomic_load(&oom.from_view_null), 1);
    cr_assert_eq(atomic_load(&oom.after_null), 1, "a failed Ensure left a state attached");
    cr_assert_null(atomic_load(&oom.this_state));
    cr_assert_eq(atomic_load(&oom.retry_ok), 1);
    cr_assert_eq(open_guards(interp), 1, "a failed EnsureFromView kept its implicit guard");
    cr_assert_eq(test_count_states(interp), 1);
    PyInterpreterGuard_Close(oom.guard);
    PyInterpreterView_Close(oom.view);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- PEP 788 misuse ------------------------------------------------------------------ */

static void
guard_from_current_detached(void)
{
    Py_Initialize();
    (void)PyEval_SaveThread();
    (void)PyInterpreterGuard_FromCurrent();
}

Test(pep788, guard_from_current_without_state_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(guard_from_current_detached,
                      "Fatal Python error: PyInterpreterGuard_FromCurrent: ");
}

static void
view_from_current_detached(void)
{
    Py_Initialize();
    (void)PyEval_SaveThread();
    (void)PyInterpreterView_FromCurrent();
}

Test(pep788, view_from_current_without_state_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(view_from_current_detached,
                      "Fatal Python error: PyInterpreterView_FromCurrent: ");
}

static void
release_twice(void)
{
    Py_Initialize();
    PyInterpreterGuard *g = PyInterpreterGuard_FromCurrent();
    PyThreadStateToken *tok = PyThreadState_Ensure(g);
    PyThreadState_Release(tok);
    PyThreadState_Release(tok);
}

Test(pep788, more_releases_than_ensures_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(release_twice, "Fatal Python error: PyThreadState_Release: ");
}

static void
ensure_null_guard(void)
{
    Py_Initialize();
    (void)PyThreadState_Ensure(NULL);
}

Test(pep788, ensure_with_null_guard_is_fatal, .timeout = FT_TIMEOUT(20))
{
    test_expect_fatal(ensure_null_guard, "Fatal Python error: PyThreadState_Ensure: ");
}
