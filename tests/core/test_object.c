/* Reference counting (core/object.c), white-box: the header of a new
 * object, the owner's and other threads' counts, the owner's last decref
 * with and without other holders, immortality (never written: the object
 * sits in a read-only page), Py_SET_REFCNT's rules, the function forms,
 * _Py_Dealloc and the reference tracer (events, pairing of function and
 * data under a concurrent SetTracer), the uniquely-referenced test, the
 * try-incref family and resurrection in a destructor.  Scenarios C31-C34
 * and C38-C41 of cpython-ft-internals.md §14.  The merge queues (C35-C37)
 * are in test_brc.c.
 *
 * Other threads only record into atomics; the main thread asserts.  In
 * the GIL build the main thread detaches while another thread runs.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"

#include <sys/mman.h>

TestSuite(object, .timeout = FT_TIMEOUT(30));

/* ---- a test type ----------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int payload;
} tobj;

static atomic_int destroyed;
static _Atomic uintptr_t dealloc_tid;
/* Set: the destructor records but does not free (type-stable memory kept
 * for the try-incref tests, freed by the test). */
static atomic_bool keep_memory;

static void
tobj_dealloc(PyObject *op)
{
    atomic_store(&dealloc_tid, _Py_ThreadId());
    atomic_fetch_add(&destroyed, 1);
    if (!atomic_load(&keep_memory)) {
        PyObject_Free(op);
    }
}

static PyTypeObject tobj_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.tobj",
    .tp_basicsize = sizeof(tobj),
    .tp_dealloc = tobj_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

static PyObject *
tobj_new(void)
{
    PyObject *op = PyObject_Malloc(sizeof(tobj));
    cr_assert_not_null(op);
    return PyObject_Init(op, &tobj_type);
}

static void
setup(void)
{
    atomic_store(&destroyed, 0);
    atomic_store(&dealloc_tid, 0);
    atomic_store(&keep_memory, false);
    Py_InitializeEx(0);
}

static void
teardown(void)
{
    PyRefTracer_SetTracer(NULL, NULL);
    if (PyThreadState_GetUnchecked() != NULL) {
        cr_assert_eq(Py_FinalizeEx(), 0);
    }
}

/* Header fields: tid_of, local_of, shared_of, gc_bits_of; jobs on another
 * thread: test_run_on_thread (all in test_objects.h). */
static void do_incref(void *op) { Py_INCREF((PyObject *)op); }
static void do_decref(void *op) { Py_DECREF((PyObject *)op); }

/* ---- C31-C34 ----------------------------------------------------------------- */

Test(object, c31_new_object_is_owned_by_its_creator, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    cr_assert_eq(Py_REFCNT(op), 1);
    cr_assert_eq(Py_TYPE(op), &tobj_type);
    cr_assert_not(_Py_IsImmortal(op));
    if (ft_free_threaded) {
        cr_assert_eq(tid_of(op), _Py_ThreadId());
        cr_assert_eq(local_of(op), 1);
        cr_assert_eq(shared_of(op), 0);
    }
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 1);
}

typedef struct {
    PyObject *op;
    Py_ssize_t refcnt_seen;
    uint32_t local_seen;
    Py_ssize_t shared_seen;
} c32_job;

static void
c32_other_incref(void *p)
{
    c32_job *j = p;
    Py_INCREF(j->op);
    j->refcnt_seen = Py_REFCNT(j->op);
    j->local_seen = local_of(j->op);
    j->shared_seen = shared_of(j->op);
}

Test(object, c32_owner_counts_locally_others_on_the_shared_word, .init = setup,
     .fini = teardown)
{
    PyObject *op = tobj_new();
    Py_INCREF(op);
    Py_INCREF(op);
    cr_assert_eq(Py_REFCNT(op), 3);
    if (ft_free_threaded) {
        cr_assert_eq(local_of(op), 3);
        cr_assert_eq(shared_of(op), 0, "the owner never touches the shared word");
    }
    c32_job j = { .op = op };
    test_run_on_thread(c32_other_incref, &j);
    cr_assert_eq(j.refcnt_seen, 4);
    cr_assert_eq(Py_REFCNT(op), 4);
    if (ft_free_threaded) {
        cr_assert_eq(j.local_seen, 3, "another thread's incref left local alone");
        cr_assert_eq(j.shared_seen, _Py_REF_SHARED(1, 0), "one reference = 4");
    }
    test_run_on_thread(do_decref, op);
    cr_assert_eq(Py_REFCNT(op), 3);
    if (ft_free_threaded) {
        cr_assert_eq(shared_of(op), 0, "the foreign pair leaves the word 0");
        cr_assert_eq(local_of(op), 3);
    }
    Py_DECREF(op);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 0);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 1);
}

Test(object, c33_owner_last_decref_frees_at_once, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    Py_INCREF(op);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 0);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 1, "freed by the last decref itself");
    cr_assert_eq(atomic_load(&dealloc_tid), _Py_ThreadId(), "on the owner thread");
}

Test(object, c34_owner_drops_first_other_thread_frees, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    test_run_on_thread(do_incref, op);
    Py_DECREF(op);   /* the owner's last local reference */
    cr_assert_eq(atomic_load(&destroyed), 0, "another thread still holds it");
    cr_assert_eq(Py_REFCNT(op), 1);
    if (ft_free_threaded) {
        cr_assert_eq(tid_of(op), 0, "merged: no owner");
        cr_assert_eq(local_of(op), 0);
        cr_assert_eq(shared_of(op), _Py_REF_SHARED(1, _Py_REF_MERGED));
    }
    uintptr_t other = test_run_on_thread(do_decref, op);
    cr_assert_eq(atomic_load(&destroyed), 1);
    cr_assert_eq(atomic_load(&dealloc_tid), other, "freed by the thread that dropped it last");
}

/* ---- C38: immortality --------------------------------------------------------- */

static void
immortal_hammer(void *p)
{
    PyObject *op = p;
    for (int i = 0; i < 1000; i++) {
        Py_INCREF(op);
        Py_DECREF(op);
        Py_DECREF(op);   /* more decrefs than increfs: still nothing */
    }
    Py_SET_REFCNT(op, 5);
    _Py_SetImmortal(op);
    (void)ft_try_incref_fast(op);
    (void)ft_try_incref_shared(op);
    Py_IncRef(op);
    Py_DecRef(op);
}

Test(object, c38_immortal_objects_are_never_written, .init = setup, .fini = teardown)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *mem = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(mem, MAP_FAILED);
    PyObject *op = PyObject_Init(mem, &tobj_type);
    _Py_SetImmortal(op);
    cr_assert(_Py_IsImmortal(op));
    cr_assert_eq(Py_REFCNT(op), _Py_IMMORTAL_REFCNT);
    if (ft_free_threaded) {
        cr_assert_eq(tid_of(op), 0);
        cr_assert_eq(local_of(op), UINT32_MAX);
        cr_assert_eq(shared_of(op), 0);
    }
    /* Any write from now on is a SIGSEGV. */
    cr_assert_eq(mprotect(mem, page, PROT_READ), 0);
    immortal_hammer(op);
    test_run_on_thread(immortal_hammer, op);
    cr_assert(ft_try_incref_fast(op), "an immortal object can always be referenced");
    cr_assert(ft_try_incref_compare((PyObject **)&op, op));
    cr_assert_eq(Py_REFCNT(op), _Py_IMMORTAL_REFCNT);
    cr_assert_eq(atomic_load(&destroyed), 0);
    cr_assert_eq(munmap(mem, page), 0);
}

Test(object, c38_static_objects_are_immortal, .init = setup, .fini = teardown)
{
    cr_assert(_Py_IsImmortal((PyObject *)&tobj_type), "a static type (PyObject_HEAD_INIT)");
    cr_assert(_Py_IsImmortal(Py_None));
    cr_assert_eq(Py_REFCNT(Py_None), _Py_IMMORTAL_REFCNT);
    Py_INCREF(Py_None);
    Py_DECREF(Py_None);
    Py_DECREF(Py_None);
    cr_assert_eq(Py_REFCNT(Py_None), _Py_IMMORTAL_REFCNT);
    if (ft_free_threaded) {
        cr_assert_eq(tid_of(Py_None), 0);
        cr_assert_eq(shared_of(Py_None), 0);
    }
}

Test(object, c38_local_count_overflow_makes_immortal, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    /* Just below the largest count the header can hold. */
    Py_ssize_t below = ft_free_threaded ? (Py_ssize_t)UINT32_MAX - 2
                                        : _Py_IMMORTAL_MINIMUM_REFCNT - 2;
    Py_SET_REFCNT(op, below);
    cr_assert_eq(Py_REFCNT(op), below);
    Py_INCREF(op);
    cr_assert_not(_Py_IsImmortal(op));
    cr_assert_eq(Py_REFCNT(op), below + 1);
    Py_INCREF(op);   /* one past the largest count: immortal, no wrap */
    cr_assert(_Py_IsImmortal(op));
    cr_assert_eq(Py_REFCNT(op), _Py_IMMORTAL_REFCNT);
    for (int i = 0; i < 10; i++) {
        Py_DECREF(op);
        Py_INCREF(op);
        Py_INCREF(op);
    }
    cr_assert(_Py_IsImmortal(op));
    cr_assert_eq(atomic_load(&destroyed), 0);
    PyObject_Free(op);   /* immortal: nothing else ever frees it */
}

Test(object, c38_set_immortal_on_a_shared_object, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    test_run_on_thread(do_incref, op);
    _Py_SetImmortal(op);
    cr_assert(_Py_IsImmortal(op));
    if (ft_free_threaded) {
        cr_assert_eq(tid_of(op), 0);
        cr_assert_eq(shared_of(op), 0, "the shared count is reset");
        cr_assert(gc_bits_of(op) & FT_GC_DEFERRED);
    }
    test_run_on_thread(do_decref, op);
    Py_DECREF(op);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 0);
    PyObject_Free(op);
}

/* ---- Py_SET_REFCNT ---------------------------------------------------------- */

static void do_new_ref_with_lock(void *op) { (void)ft_new_ref_with_lock((PyObject *)op); }
static void do_set_refcnt_2(void *op) { Py_SET_REFCNT((PyObject *)op, 2); }

Test(object, set_refcnt_owner_keeps_flags, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    test_run_on_thread(do_new_ref_with_lock, op);
    if (ft_free_threaded) {
        cr_assert_eq(shared_of(op), _Py_REF_SHARED(1, _Py_REF_MAYBE_WEAKREF));
    }
    cr_assert_eq(Py_REFCNT(op), 2);
    Py_SET_REFCNT(op, 3);
    cr_assert_eq(Py_REFCNT(op), 3);
    if (ft_free_threaded) {
        cr_assert_eq(local_of(op), 3, "the owner's count takes it all");
        cr_assert_eq(shared_of(op), _Py_REF_MAYBE_WEAKREF, "count cleared, flag kept");
        cr_assert_eq(tid_of(op), _Py_ThreadId());
    }
    Py_DECREF(op);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 0);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 1);
}

Test(object, set_refcnt_non_owner_merges, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    test_run_on_thread(do_set_refcnt_2, op);
    cr_assert_eq(Py_REFCNT(op), 2);
    if (ft_free_threaded) {
        cr_assert_eq(tid_of(op), 0);
        cr_assert_eq(local_of(op), 0);
        cr_assert_eq(shared_of(op), _Py_REF_SHARED(2, _Py_REF_MERGED));
    }
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 0);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 1);
}

Test(object, set_refcnt_too_large_makes_immortal, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    Py_SET_REFCNT(op, ft_free_threaded ? (Py_ssize_t)UINT32_MAX : _Py_IMMORTAL_MINIMUM_REFCNT);
    cr_assert(_Py_IsImmortal(op));
    cr_assert_eq(Py_REFCNT(op), _Py_IMMORTAL_REFCNT);
    Py_SET_REFCNT(op, 1);   /* an immortal object's count does not change */
    cr_assert(_Py_IsImmortal(op));
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 0);
    PyObject_Free(op);
}

Test(object, set_refcnt_negative_is_fatal, .init = setup, .fini = teardown,
     .signal = SIGABRT)
{
    PyObject *op = tobj_new();
    Py_SET_REFCNT(op, -1);
}

/* ---- function forms, _Py_Dealloc ------------------------------------------------ */

Test(object, incref_decref_function_forms, .init = setup, .fini = teardown)
{
    Py_IncRef(NULL);
    Py_DecRef(NULL);
    PyObject *op = tobj_new();
    Py_IncRef(op);
    cr_assert_eq(Py_REFCNT(op), 2);
    Py_DecRef(op);
    cr_assert_eq(Py_REFCNT(op), 1);
    PyObject *r = Py_NewRef(op);
    cr_assert_eq(r, op);
    cr_assert_eq(Py_REFCNT(op), 2);
    cr_assert_null(Py_XNewRef(NULL));
    Py_XINCREF((PyObject *)NULL);
    Py_XDECREF((PyObject *)NULL);
    PyObject *slot = op;
    Py_CLEAR(slot);
    cr_assert_null(slot);
    cr_assert_eq(Py_REFCNT(op), 1);
    cr_assert_eq(atomic_load(&destroyed), 0);
    Py_XDECREF(r);
    cr_assert_eq(atomic_load(&destroyed), 1);
}

static PyTypeObject no_dealloc_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.nodealloc",
    .tp_basicsize = sizeof(tobj),
};

Test(object, dealloc_without_tp_dealloc_is_fatal, .init = setup, .fini = teardown,
     .signal = SIGABRT)
{
    PyObject *op = PyObject_Init(PyObject_Malloc(sizeof(tobj)), &no_dealloc_type);
    Py_DECREF(op);
}

/* ---- the reference tracer -------------------------------------------------------- */

typedef struct {
    atomic_int creates, destroys;
    _Atomic(PyObject *) last_created, last_destroyed;
    atomic_int destroyed_before_event;   /* tp_dealloc ran before DESTROY: wrong */
    atomic_int type_wrong_at_destroy;
    atomic_int bad_data;
    atomic_int removed;                  /* TRACKER_REMOVED events (object NULL) */
    atomic_int removed_with_object;
} trace_rec;

static int
tracer_fn(PyObject *op, PyRefTracerEvent ev, void *data)
{
    trace_rec *r = data;
    if (ev == PyRefTracer_CREATE) {
        atomic_fetch_add(&r->creates, 1);
        atomic_store(&r->last_created, op);
    }
    else if (ev == PyRefTracer_DESTROY) {
        atomic_fetch_add(&r->destroys, 1);
        atomic_store(&r->last_destroyed, op);
        if (atomic_load(&destroyed) != 0) {
            atomic_fetch_add(&r->destroyed_before_event, 1);
        }
        if (Py_TYPE(op) != &tobj_type) {
            atomic_fetch_add(&r->type_wrong_at_destroy, 1);
        }
    }
    else if (ev == PyRefTracer_TRACKER_REMOVED) {
        atomic_fetch_add(&r->removed, 1);
        if (op != NULL) {
            atomic_fetch_add(&r->removed_with_object, 1);
        }
    }
    return 0;
}

Test(object, tracer_set_get_and_events, .init = setup, .fini = teardown)
{
    void *data = (void *)1;
    cr_assert_null(PyRefTracer_GetTracer(&data));
    cr_assert_null(data);
    static trace_rec rec;
    memset(&rec, 0, sizeof rec);
    cr_assert_eq(PyRefTracer_SetTracer(tracer_fn, &rec), 0);
    cr_assert_eq(PyRefTracer_GetTracer(&data), tracer_fn);
    cr_assert_eq(data, &rec);
    cr_assert_eq(PyRefTracer_GetTracer(NULL), tracer_fn);

    PyObject *op = tobj_new();
    cr_assert_eq(atomic_load(&rec.creates), 1);
    cr_assert_eq(atomic_load(&rec.last_created), op);
    Py_INCREF(op);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&rec.destroys), 0);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&rec.destroys), 1);
    cr_assert_eq(atomic_load(&rec.last_destroyed), op);
    cr_assert_eq(atomic_load(&rec.destroyed_before_event), 0,
                 "DESTROY comes before tp_dealloc");
    cr_assert_eq(atomic_load(&rec.type_wrong_at_destroy), 0);

    cr_assert_eq(atomic_load(&rec.removed), 0, "setting the first tracer removes none");
    cr_assert_eq(PyRefTracer_SetTracer(NULL, NULL), 0);
    cr_assert_eq(atomic_load(&rec.removed), 1, "the replaced tracer hears TRACKER_REMOVED once");
    cr_assert_eq(atomic_load(&rec.removed_with_object), 0, "TRACKER_REMOVED carries no object");
    cr_assert_null(PyRefTracer_GetTracer(&data));
    op = tobj_new();
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&rec.creates), 1, "no events once unset");
    cr_assert_eq(atomic_load(&rec.destroys), 1);
    cr_assert_eq(PyRefTracer_SetTracer(NULL, NULL), 0);
    cr_assert_eq(atomic_load(&rec.removed), 1, "no tracer, nothing to tell");
}

/* Two tracers, each with its own data: a creation must never see one
 * tracer with the other's data while a thread keeps switching them. */
static trace_rec pair_a, pair_b;
static atomic_bool pair_stop;
static atomic_int pair_mismatch, pair_calls;

static int
pair_tracer_a(PyObject *op, PyRefTracerEvent ev, void *data)
{
    (void)op;
    if (ev != PyRefTracer_TRACKER_REMOVED) {   /* the switcher's replacements */
        atomic_fetch_add(&pair_calls, 1);
    }
    if (data != &pair_a) {
        atomic_fetch_add(&pair_mismatch, 1);
    }
    return 0;
}

static int
pair_tracer_b(PyObject *op, PyRefTracerEvent ev, void *data)
{
    (void)op;
    if (ev != PyRefTracer_TRACKER_REMOVED) {   /* the switcher's replacements */
        atomic_fetch_add(&pair_calls, 1);
    }
    if (data != &pair_b) {
        atomic_fetch_add(&pair_mismatch, 1);
    }
    return 0;
}

static void *
pair_switcher(void *arg)
{
    (void)arg;
    for (int i = 0; !atomic_load(&pair_stop); i++) {
        if (i & 1) {
            PyRefTracer_SetTracer(pair_tracer_a, &pair_a);
        }
        else {
            PyRefTracer_SetTracer(pair_tracer_b, &pair_b);
        }
    }
    return NULL;
}

static void *
pair_creator(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    for (int i = 0; i < 20000; i++) {
        PyObject *op = tobj_new();
        Py_DECREF(op);
    }
    PyGILState_Release(g);
    return NULL;
}

Test(object, tracer_function_and_data_stay_paired, .init = setup, .fini = teardown)
{
    atomic_store(&pair_stop, false);
    atomic_store(&pair_mismatch, 0);
    atomic_store(&pair_calls, 0);
    PyRefTracer_SetTracer(pair_tracer_a, &pair_a);   /* every creation is traced */
    PyThreadState *save = PyEval_SaveThread();
    pthread_t sw = test_start_thread(pair_switcher, NULL);
    pthread_t c[2];
    for (int i = 0; i < 2; i++) {
        c[i] = test_start_thread(pair_creator, NULL);
    }
    for (int i = 0; i < 2; i++) {
        test_join_thread(c[i]);
    }
    atomic_store(&pair_stop, true);
    test_join_thread(sw);
    PyEval_RestoreThread(save);
    cr_assert_eq(atomic_load(&pair_calls), 80000, "every creation and destruction traced");
    cr_assert_eq(atomic_load(&pair_mismatch), 0, "%d calls saw the other tracer's data",
                 atomic_load(&pair_mismatch));
    cr_assert_eq(atomic_load(&destroyed), 40000);
}

/* ---- C39: uniquely referenced ------------------------------------------------------ */

typedef struct {
    PyObject *op;
    bool unique_seen;
} c39_job;

static void
c39_check_elsewhere(void *p)
{
    c39_job *j = p;
    j->unique_seen = ft_object_is_uniquely_referenced(j->op);
}

Test(object, c39_uniquely_referenced, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    cr_assert(ft_object_is_uniquely_referenced(op), "a fresh object on its owner");
    Py_INCREF(op);
    cr_assert_not(ft_object_is_uniquely_referenced(op), "two references");
    Py_DECREF(op);
    cr_assert(ft_object_is_uniquely_referenced(op));
    if (ft_free_threaded) {
        c39_job j = { op, true };
        test_run_on_thread(c39_check_elsewhere, &j);
        cr_assert_not(j.unique_seen, "never from a non-owner thread");
    }
    test_run_on_thread(do_incref, op);
    cr_assert_not(ft_object_is_uniquely_referenced(op), "another thread holds a reference");
    test_run_on_thread(do_decref, op);
    cr_assert(ft_object_is_uniquely_referenced(op),
              "a foreign incref/decref pair that leaves the shared word 0");
    if (ft_free_threaded) {
        ft_object_set_maybe_weakref(op);
        cr_assert_eq(shared_of(op), _Py_REF_MAYBE_WEAKREF);
        cr_assert_not(ft_object_is_uniquely_referenced(op),
                      "published: a reader may be taking a reference");
    }
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 1);
}

/* ---- C40: try-incref ------------------------------------------------------------------ */

typedef struct {
    PyObject *op;
    PyObject **slot;
    bool fast, shared, compare;
    Py_ssize_t shared_after;
} c40_job;

static void
c40_try_fast_and_shared(void *p)
{
    c40_job *j = p;
    j->fast = ft_try_incref_fast(j->op);
    j->shared = ft_try_incref_shared(j->op);
    j->shared_after = shared_of(j->op);
}

static void
c40_try_compare(void *p)
{
    c40_job *j = p;
    j->compare = ft_try_incref_compare(j->slot, j->op);
    j->shared_after = shared_of(j->op);
}

Test(object, c40_try_incref_on_live_and_unpublished_objects, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    cr_assert(ft_try_incref_fast(op), "owner: always");
    cr_assert_eq(Py_REFCNT(op), 2);
    Py_DECREF(op);
    c40_job j = { .op = op };
    test_run_on_thread(c40_try_fast_and_shared, &j);
    if (ft_free_threaded) {
        cr_assert_not(j.fast, "not the owner");
        cr_assert_not(j.shared, "shared word exactly 0: not published");
        cr_assert_eq(j.shared_after, 0, "a failed try leaves the counts alone");
        cr_assert_eq(Py_REFCNT(op), 1);
        /* Published: the shared try succeeds. */
        ft_object_set_maybe_weakref(op);
        test_run_on_thread(c40_try_fast_and_shared, &j);
        cr_assert_not(j.fast);
        cr_assert(j.shared);
        cr_assert_eq(j.shared_after, _Py_REF_SHARED(1, _Py_REF_MAYBE_WEAKREF));
        cr_assert_eq(Py_REFCNT(op), 2);
    }
    else {
        cr_assert(j.fast && j.shared, "GIL build: a live object");
        cr_assert_eq(Py_REFCNT(op), 3);
        Py_DECREF(op);
    }
    Py_DECREF(op);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 1);
}

Test(object, c40_try_incref_fails_on_a_dead_merged_object, .init = setup, .fini = teardown)
{
    atomic_store(&keep_memory, true);   /* memory stays for the stale reader */
    PyObject *op = tobj_new();
    test_run_on_thread(do_incref, op);
    Py_DECREF(op);   /* merged, the other thread's reference left */
    test_run_on_thread(do_decref, op);
    cr_assert_eq(atomic_load(&destroyed), 1);
    if (ft_free_threaded) {
        cr_assert_eq(shared_of(op), _Py_REF_MERGED, "dead: merged with count 0");
    }
    c40_job j = { .op = op };
    test_run_on_thread(c40_try_fast_and_shared, &j);
    cr_assert_not(j.fast);
    cr_assert_not(j.shared);
    if (ft_free_threaded) {
        cr_assert_eq(j.shared_after, _Py_REF_MERGED, "left unchanged");
    }
    cr_assert_eq(atomic_load(&destroyed), 1);
    PyObject_Free(op);
}

Test(object, c40_try_incref_compare_undoes_on_a_changed_slot, .init = setup, .fini = teardown)
{
    PyObject *op = tobj_new();
    PyObject *other = tobj_new();
    ft_object_set_maybe_weakref(op);
    PyObject *slot = other;   /* the slot no longer holds op */
    c40_job j = { .op = op, .slot = &slot };
    test_run_on_thread(c40_try_compare, &j);
    cr_assert_not(j.compare);
    cr_assert_eq(Py_REFCNT(op), 1, "the increment was undone");
    if (ft_free_threaded) {
        cr_assert_eq(j.shared_after, _Py_REF_MAYBE_WEAKREF);
    }
    slot = op;
    test_run_on_thread(c40_try_compare, &j);
    cr_assert(j.compare);
    cr_assert_eq(Py_REFCNT(op), 2);
    if (ft_free_threaded) {
        cr_assert_eq(j.shared_after, _Py_REF_SHARED(1, _Py_REF_MAYBE_WEAKREF));
    }
    /* The owner's compare takes the fast path. */
    cr_assert(ft_try_incref_compare(&slot, op));
    cr_assert_eq(Py_REFCNT(op), 3);
    Py_DECREF(op);
    Py_DECREF(op);
    Py_DECREF(op);
    Py_DECREF(other);
    cr_assert_eq(atomic_load(&destroyed), 2);
}

/* ---- C41: resurrection ------------------------------------------------------------------ */

static _Atomic(PyObject *) resurrect_into;   /* where the finalizer stores self */
static atomic_int finalizer_calls;

static void
rtype_dealloc(PyObject *op)
{
    ft_object_resurrect_start(op);
    atomic_fetch_add(&finalizer_calls, 1);
    PyObject *expected = NULL;
    /* The "finalizer": stores self once (a new reference). */
    if (atomic_load(&resurrect_into) == NULL &&
        atomic_compare_exchange_strong(&resurrect_into, &expected, op)) {
        Py_INCREF(op);
    }
    if (ft_object_resurrect_end(op)) {
        return;   /* alive again: do not touch op */
    }
    atomic_fetch_add(&destroyed, 1);
    atomic_store(&dealloc_tid, _Py_ThreadId());
    PyObject_Free(op);
}

static PyTypeObject rtype = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.resurrecting",
    .tp_basicsize = sizeof(tobj),
    .tp_dealloc = rtype_dealloc,
};

static void
resurrect_setup(void)
{
    setup();
    atomic_store(&resurrect_into, NULL);
    atomic_store(&finalizer_calls, 0);
}

Test(object, c41_finalizer_without_resurrection, .init = resurrect_setup, .fini = teardown)
{
    PyObject *sentinel = tobj_new();
    atomic_store(&resurrect_into, sentinel);   /* the finalizer will not store */
    PyObject *op = PyObject_Init(PyObject_Malloc(sizeof(tobj)), &rtype);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&finalizer_calls), 1);
    cr_assert_eq(atomic_load(&destroyed), 1, "freed after its finalizer");
    atomic_store(&resurrect_into, NULL);
    Py_DECREF(sentinel);
}

Test(object, c41_resurrected_object_has_a_consistent_count, .init = resurrect_setup,
     .fini = teardown)
{
    PyObject *op = PyObject_Init(PyObject_Malloc(sizeof(tobj)), &rtype);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&finalizer_calls), 1);
    cr_assert_eq(atomic_load(&destroyed), 0, "resurrected");
    cr_assert_eq(atomic_load(&resurrect_into), op);
    cr_assert_eq(Py_REFCNT(op), 1, "exactly the finalizer's reference");
    if (ft_free_threaded) {
        cr_assert_eq(shared_of(op), _Py_REF_SHARED(1, _Py_REF_MERGED));
        cr_assert_eq(local_of(op), 0);
    }
    Py_INCREF(op);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 0);
    /* The finalizer stores only once: this time it dies. */
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&finalizer_calls), 2);
    cr_assert_eq(atomic_load(&destroyed), 1);
}

static void
drop_resurrected(void *arg)
{
    (void)arg;
    PyObject *op = atomic_load(&resurrect_into);
    Py_DECREF(op);
}

Test(object, c41_resurrected_object_dies_on_another_thread, .init = resurrect_setup,
     .fini = teardown)
{
    PyObject *op = PyObject_Init(PyObject_Malloc(sizeof(tobj)), &rtype);
    Py_DECREF(op);
    cr_assert_eq(atomic_load(&destroyed), 0);
    uintptr_t other = test_run_on_thread(drop_resurrected, NULL);
    cr_assert_eq(atomic_load(&finalizer_calls), 2);
    cr_assert_eq(atomic_load(&destroyed), 1);
    cr_assert_eq(atomic_load(&dealloc_tid), other);
}

/* ---- Py_ReprEnter / Py_ReprLeave -------------------------------------------------------- */

Test(object, repr_enter_nests_and_leave_undoes, .init = setup, .fini = teardown)
{
    PyObject *a = tobj_new(), *b = tobj_new();
    cr_assert_eq(Py_ReprEnter(a), 0, "first time: recorded");
    cr_assert_eq(Py_REFCNT(a), 2, "the record holds a reference");
    cr_assert_eq(Py_ReprEnter(a), 1, "already being repr'd");
    cr_assert_eq(Py_ReprEnter(b), 0);
    cr_assert_eq(Py_ReprEnter(b), 1);
    Py_ReprLeave(b);
    cr_assert_eq(Py_REFCNT(b), 1);
    cr_assert_eq(Py_ReprEnter(a), 1, "a is still recorded");
    cr_assert_eq(Py_ReprEnter(b), 0, "b was left");
    /* Out of order (misuse, but harmless), and twice. */
    Py_ReprLeave(a);
    Py_ReprLeave(a);
    cr_assert_eq(Py_ReprEnter(b), 1);
    Py_ReprLeave(b);
    cr_assert_eq(Py_REFCNT(a), 1);
    cr_assert_eq(Py_REFCNT(b), 1);
    Py_DECREF(a);
    Py_DECREF(b);
    cr_assert_eq(atomic_load(&destroyed), 2);
}

Test(object, repr_leave_keeps_the_pending_exception, .init = setup, .fini = teardown)
{
    PyObject *a = tobj_new();
    cr_assert_eq(Py_ReprEnter(a), 0);
    PyErr_SetString(PyExc_ValueError, "pending");
    Py_ReprLeave(a);
    cr_assert(PyErr_ExceptionMatches(PyExc_ValueError));
    PyErr_Clear();
    cr_assert_eq(Py_ReprEnter(a), 0, "left despite the exception");
    Py_ReprLeave(a);
    Py_DECREF(a);
}

/* What Py_ReprEnter returned on another thread. */
typedef struct {
    PyObject *obj;
    int first;
    int again;
    int after_leave;
} repr_job;

static void
enter_twice_and_leave(void *arg)
{
    repr_job *job = arg;
    job->first = Py_ReprEnter(job->obj);
    job->again = Py_ReprEnter(job->obj);
    Py_ReprLeave(job->obj);
    job->after_leave = Py_ReprEnter(job->obj);
    /* No Leave: the thread state's clear drops the record. */
}

Test(object, repr_guards_of_different_threads_are_independent, .init = setup, .fini = teardown)
{
    PyObject *a = tobj_new();
    cr_assert_eq(Py_ReprEnter(a), 0);
    repr_job job = { a, -9, -9, -9 };
    test_run_on_thread(enter_twice_and_leave, &job);
    cr_assert_eq(job.first, 0, "main's record does not show on the other thread");
    cr_assert_eq(job.again, 1);
    cr_assert_eq(job.after_leave, 0);
    cr_assert_eq(Py_REFCNT(a), 2, "the other thread's record died with its state");
    cr_assert_eq(Py_ReprEnter(a), 1, "main's record is untouched");
    Py_ReprLeave(a);
    cr_assert_eq(Py_REFCNT(a), 1);
    Py_DECREF(a);
}

static void *
enter_without_a_thread_state(void *arg)
{
    repr_job *job = arg;
    job->first = Py_ReprEnter(job->obj);
    Py_ReprLeave(job->obj);
    return NULL;
}

Test(object, repr_enter_without_a_thread_state_records_nothing, .init = setup,
     .fini = teardown)
{
    PyObject *a = tobj_new();
    repr_job job = { a, -9, -9, -9 };
    PyThreadState *save = PyEval_SaveThread();
    test_join_thread(test_start_thread(enter_without_a_thread_state, &job));
    PyEval_RestoreThread(save);
    cr_assert_eq(job.first, 0, "as CPython: 0, nothing to record in");
    cr_assert_eq(Py_REFCNT(a), 1);
    Py_DECREF(a);
}

Test(object, repr_enter_out_of_memory_is_a_memory_error, .init = setup, .fini = teardown)
{
    PyObject *objs[9];
    for (int i = 0; i < 9; i++) {
        objs[i] = tobj_new();
    }
    /* The first Enter creates the thread's dict and the record. */
    int failures = 0;
    int r;
    for (long nth = 1; nth < 20; nth++) {
        ft_alloc_fail_after(nth);
        r = Py_ReprEnter(objs[0]);
        ft_alloc_fail_after(0);
        if (r == 0) {
            break;
        }
        cr_assert_eq(r, -1);
        cr_assert(PyErr_ExceptionMatches(PyExc_MemoryError));
        PyErr_Clear();
        failures++;
    }
    cr_assert_eq(r, 0);
    cr_assert_geq(failures, 2, "the dict and the record at least");
    /* The record grows past its first 8 entries: that growth fails
     * cleanly and records nothing. */
    for (int i = 1; i < 8; i++) {
        cr_assert_eq(Py_ReprEnter(objs[i]), 0);
    }
    ft_alloc_fail_after(1);
    cr_assert_eq(Py_ReprEnter(objs[8]), -1);
    ft_alloc_fail_after(0);
    cr_assert(PyErr_ExceptionMatches(PyExc_MemoryError));
    PyErr_Clear();
    cr_assert_eq(Py_REFCNT(objs[8]), 1, "not recorded");
    cr_assert_eq(Py_ReprEnter(objs[8]), 0, "recorded once memory is back");
    for (int i = 8; i >= 0; i--) {
        Py_ReprLeave(objs[i]);
        cr_assert_eq(Py_REFCNT(objs[i]), 1);
        Py_DECREF(objs[i]);
    }
}
