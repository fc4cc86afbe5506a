/* Object memory (core/obmalloc.c), white-box, in both builds.
 *
 * Covers: PyMem_* / PyObject_Malloc zero-size, calloc, realloc and overflow
 * semantics; every allocating function under the failure hook (NULL, plus
 * MemoryError for object creators, nothing listed or leaked: ASan/LSan);
 * size overflow and negative sizes; the header of new objects; tracking and
 * its misuse (fatal, with the function's name); the heap visitor finding
 * every GC object exactly once -- after random-order frees, after remote
 * frees (forced: the pushing path is observed before the owner drains),
 * after 8 threads exit (their heaps are orphaned), after frees into orphans
 * (the last one frees the heap), after adoption by a new thread state;
 * _PyObject_GC_Resize on the owner's and on another state's object; a
 * concurrent alloc / remote-free stress with exact counts while threads are
 * paused and visits while they run; type-stable frees (free-threaded: a
 * published object's block is not handed out again before a grace period,
 * and a stale reader finds the dead header); fork.
 *
 * Helper threads only record into atomics; the test's main thread asserts.
 * In the GIL build the main thread detaches while helper threads run.
 */
#include "harness.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define POLL_MS 5000
#define MAGIC 0x6f626d616c6c6f63ULL

TestSuite(obmalloc, .timeout = FT_TIMEOUT(60));

/* ---- test types ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    uint64_t magic;   /* MAGIC while alive, 0 once freed */
    uint64_t id;
} GcObj;

typedef struct {
    PyObject_VAR_HEAD
    uint64_t items[1];
} VarObj;

typedef struct {
    PyObject_HEAD
    uint64_t body[4];   /* a 32-byte body */
} PlainObj;

static void
gc_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    ((GcObj *)op)->magic = 0;
    PyObject_GC_Del(op);
}

static PyTypeObject GcType = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test_obmalloc.Gc",
    .tp_basicsize = sizeof(GcObj),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = gc_dealloc,
    .tp_free = PyObject_GC_Del,
};

static PyTypeObject VarType = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test_obmalloc.Var",
    .tp_basicsize = offsetof(VarObj, items),
    .tp_itemsize = sizeof(uint64_t),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_free = PyObject_GC_Del,
};

static PyTypeObject PlainVarType = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test_obmalloc.PlainVar",
    .tp_basicsize = offsetof(VarObj, items),
    .tp_itemsize = sizeof(uint64_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_free = PyObject_Free,
};

static PyTypeObject PlainType = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test_obmalloc.Plain",
    .tp_basicsize = sizeof(PlainObj),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_free = PyObject_Free,
};

static GcObj *
new_gc(uint64_t id)
{
    GcObj *o = PyObject_GC_New(GcObj, &GcType);
    if (o) {
        o->magic = MAGIC;
        o->id = id;
    }
    return o;
}

static void
free_gc(GcObj *o)
{
    gc_dealloc((PyObject *)o);
}

static PyInterpreterState *
interp(void)
{
    return PyInterpreterState_Main();
}

static ft_gc_heap_stats
stats(void)
{
    ft_gc_heap_stats s;
    ft_gc_heaps_stats(interp(), &s);
    return s;
}

static void
expect_memory_error(const char *what)
{
    cr_assert_not_null(PyErr_Occurred(), "%s: no exception set", what);
    cr_assert(PyErr_ExceptionMatches(PyExc_MemoryError), "%s: not a MemoryError", what);
    PyErr_Clear();
}

/* ---- the visitor, collecting test objects ------------------------------------- */

typedef struct {
    PyObject **seen;
    size_t n, cap;
    size_t dead;      /* visited objects whose magic says they were freed */
    size_t overflow;
} visit_acc;

static int
collect(PyObject *op, void *arg)
{
    visit_acc *acc = arg;
    if (Py_TYPE(op) != &GcType) {
        return 0;   /* the runtime's own GC objects */
    }
    if (((GcObj *)op)->magic != MAGIC) {
        acc->dead++;
    }
    if (acc->n < acc->cap) {
        acc->seen[acc->n++] = op;
    }
    else {
        acc->overflow++;
    }
    return 0;
}

/* Visit with the world stopped (the caller is attached), collecting every
 * GcType object; the caller frees acc.seen. */
static visit_acc
visit_gc_objects(size_t cap)
{
    visit_acc acc = { .seen = malloc((cap ? cap : 1) * sizeof(PyObject *)), .cap = cap };
    cr_assert_not_null(acc.seen);
    ft_stop_the_world(interp(), PyUnstable_STOP_OTHER);
    int rc = ft_gc_heaps_visit(interp(), collect, &acc);
    ft_start_the_world(interp());
    cr_assert_eq(rc, 0);
    return acc;
}

static int
cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(PyObject *const *)a, y = (uintptr_t)*(PyObject *const *)b;
    return x < y ? -1 : x > y;
}

/* The visitor sees exactly `expected` (n objects, each once) among GcType. */
static void
assert_visit_exactly(PyObject **expected, size_t n)
{
    visit_acc acc = visit_gc_objects(n + 16);
    cr_assert_eq(acc.overflow, 0, "the visitor found more than %zu objects", n + 16);
    cr_assert_eq(acc.dead, 0, "the visitor found %zu freed objects", acc.dead);
    cr_assert_eq(acc.n, n, "the visitor found %zu objects, expected %zu", acc.n, n);
    PyObject **want = malloc((n ? n : 1) * sizeof(PyObject *));
    cr_assert_not_null(want);
    if (n > 0) {
        memcpy(want, expected, n * sizeof(PyObject *));
    }
    qsort(want, n, sizeof(PyObject *), cmp_ptr);
    qsort(acc.seen, acc.n, sizeof(PyObject *), cmp_ptr);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(acc.seen[i], want[i], "visited set differs at %zu", i);
    }
    free(want);
    free(acc.seen);
}

/* ---- PyMem_* and PyObject_Malloc ------------------------------------------------ */

typedef struct {
    const char *name;
    void *(*malloc_)(size_t);
    void *(*calloc_)(size_t, size_t);
    void *(*realloc_)(void *, size_t);
    void (*free_)(void *);
} domain;

static const domain domains[] = {
    { "PyMem", PyMem_Malloc, PyMem_Calloc, PyMem_Realloc, PyMem_Free },
    { "PyObject", PyObject_Malloc, PyObject_Calloc, PyObject_Realloc, PyObject_Free },
};

Test(obmalloc, domains_zero_size_calloc_realloc_overflow)
{
    Py_Initialize();
    for (size_t d = 0; d < sizeof domains / sizeof domains[0]; d++) {
        const domain *m = &domains[d];
        /* 0 bytes: unique, non-NULL */
        void *a = m->malloc_(0), *b = m->malloc_(0);
        cr_assert_not_null(a, "%s_Malloc(0)", m->name);
        cr_assert_not_null(b);
        cr_assert_neq(a, b, "%s_Malloc(0) twice gave one pointer", m->name);
        void *c = m->calloc_(0, 8);
        cr_assert_not_null(c, "%s_Calloc(0, 8)", m->name);
        m->free_(c);
        c = m->calloc_(8, 0);
        cr_assert_not_null(c, "%s_Calloc(8, 0)", m->name);
        m->free_(c);
        /* realloc to 0: a valid unique block, not a free */
        void *z = m->realloc_(a, 0);
        cr_assert_not_null(z, "%s_Realloc(p, 0)", m->name);
        m->free_(z);
        m->free_(b);
        m->free_(NULL);

        /* calloc zeroes, realloc keeps the prefix, realloc(NULL) allocates */
        unsigned char *p = m->calloc_(100, 3);
        cr_assert_not_null(p);
        for (int i = 0; i < 300; i++) {
            cr_assert_eq(p[i], 0, "%s_Calloc byte %d", m->name, i);
            p[i] = (unsigned char)i;
        }
        p = m->realloc_(p, 5000);
        cr_assert_not_null(p);
        for (int i = 0; i < 300; i++) {
            cr_assert_eq(p[i], (unsigned char)i, "%s_Realloc lost byte %d", m->name, i);
        }
        p = m->realloc_(p, 10);
        cr_assert_not_null(p);
        cr_assert_eq(p[9], 9);
        m->free_(p);
        p = m->realloc_(NULL, 16);
        cr_assert_not_null(p, "%s_Realloc(NULL, 16)", m->name);
        m->free_(p);

        /* sizes past PY_SSIZE_T_MAX and products that wrap: NULL, nothing set */
        cr_assert_null(m->malloc_((size_t)PY_SSIZE_T_MAX + 1));
        cr_assert_null(m->calloc_(SIZE_MAX / 2, 4), "%s_Calloc product wrapped", m->name);
        p = m->malloc_(8);
        cr_assert_not_null(p);
        cr_assert_null(m->realloc_(p, (size_t)PY_SSIZE_T_MAX + 1));
        m->free_(p);   /* a failed realloc leaves the block */
        cr_assert_null(PyErr_Occurred(), "%s_* set an exception", m->name);
    }
    /* the typed macros refuse counts whose byte size overflows */
    uint64_t *arr = PyMem_New(uint64_t, (size_t)PY_SSIZE_T_MAX / 4);
    cr_assert_null(arr);
    arr = PyMem_New(uint64_t, 4);
    cr_assert_not_null(arr);
    uint64_t *keep = arr;
    PyMem_Resize(arr, uint64_t, (size_t)PY_SSIZE_T_MAX / 2);
    cr_assert_null(arr);   /* CPython's macro: the caller keeps the old block */
    PyMem_Free(keep);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(obmalloc, domains_fail_under_injection)
{
    Py_Initialize();
    for (size_t d = 0; d < sizeof domains / sizeof domains[0]; d++) {
        const domain *m = &domains[d];
        ft_alloc_fail_after(1);
        cr_assert_null(m->malloc_(24), "%s_Malloc", m->name);
        ft_alloc_fail_after(1);
        cr_assert_null(m->calloc_(3, 8), "%s_Calloc", m->name);
        ft_alloc_fail_after(1);
        cr_assert_null(m->realloc_(NULL, 24), "%s_Realloc(NULL)", m->name);
        char *p = m->malloc_(24);
        cr_assert_not_null(p);
        memset(p, 'x', 24);
        ft_alloc_fail_after(1);
        char *q = m->realloc_(p, 4096);
        ft_alloc_fail_after(0);
        cr_assert_null(q, "%s_Realloc under injection", m->name);
        cr_assert_eq(p[23], 'x', "a failed %s_Realloc damaged the block", m->name);
        m->free_(p);
        cr_assert_null(PyErr_Occurred());
    }
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- object creation --------------------------------------------------------------- */

static void
assert_new_header(PyObject *op, PyTypeObject *type)
{
    cr_assert_eq(Py_TYPE(op), type);
    cr_assert_eq(Py_REFCNT(op), 1);
#ifdef Py_GIL_DISABLED
    cr_assert_eq(op->ob_tid, _Py_ThreadId(), "a new object is owned by its creator");
    cr_assert_eq(op->ob_ref_local, 1);
    cr_assert_eq(op->ob_ref_shared, 0);
    cr_assert_eq(op->ob_gc_bits, 0);
#endif
}


Test(obmalloc, new_objects_have_fresh_headers)
{
    Py_Initialize();
    PlainObj *p = PyObject_New(PlainObj, &PlainType);
    cr_assert_not_null(p);
    assert_new_header((PyObject *)p, &PlainType);
    memset(p->body, 0xab, sizeof p->body);   /* the whole body is there (ASan) */
    PyObject_Del(p);

    VarObj *v = PyObject_NewVar(VarObj, &PlainVarType, 37);
    cr_assert_not_null(v);
    assert_new_header((PyObject *)v, &PlainVarType);
    cr_assert_eq(Py_SIZE(v), 37);
    for (int i = 0; i < 37; i++) {
        v->items[i] = (uint64_t)i;
    }
    PyObject_Free(v);

    GcObj *g = new_gc(1);
    cr_assert_not_null(g);
    assert_new_header((PyObject *)g, &GcType);
    cr_assert_not(PyObject_GC_IsTracked((PyObject *)g), "new GC objects are not tracked");
    cr_assert_not(PyObject_GC_IsFinalized((PyObject *)g));
    free_gc(g);

    VarObj *gv = PyObject_GC_NewVar(VarObj, &VarType, 100);
    cr_assert_not_null(gv);
    assert_new_header((PyObject *)gv, &VarType);
    cr_assert_eq(Py_SIZE(gv), 100);
    for (int i = 0; i < 100; i++) {
        gv->items[i] = (uint64_t)i;
    }
    PyObject_GC_Del(gv);

    /* PyObject_Init / InitVar on caller memory; NULL memory -> MemoryError */
    PlainObj *raw = PyObject_Malloc(sizeof(PlainObj));
    cr_assert_not_null(raw);
    cr_assert_eq(PyObject_Init((PyObject *)raw, &PlainType), (PyObject *)raw);
    assert_new_header((PyObject *)raw, &PlainType);
    PyObject_Free(raw);
    VarObj *rawv = PyObject_Malloc(offsetof(VarObj, items) + 3 * sizeof(uint64_t));
    cr_assert_not_null(rawv);
    cr_assert_eq(PyObject_InitVar((PyVarObject *)rawv, &PlainVarType, 3), (PyVarObject *)rawv);
    assert_new_header((PyObject *)rawv, &PlainVarType);
    cr_assert_eq(Py_SIZE(rawv), 3);
    PyObject_Free(rawv);
    cr_assert_null(PyObject_Init(NULL, &PlainType));
    expect_memory_error("PyObject_Init(NULL)");
    cr_assert_null(PyObject_InitVar(NULL, &PlainVarType, 3));
    expect_memory_error("PyObject_InitVar(NULL)");
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(obmalloc, sizes_that_overflow_or_are_negative)
{
    Py_Initialize();
    /* nitems * itemsize would wrap: MemoryError, not a short block */
    cr_assert_null(PyObject_NewVar(VarObj, &PlainVarType, PY_SSIZE_T_MAX));
    expect_memory_error("PyObject_NewVar(huge)");
    cr_assert_null(PyObject_NewVar(VarObj, &PlainVarType, PY_SSIZE_T_MAX / 8));
    expect_memory_error("PyObject_NewVar(just past the limit)");
    cr_assert_null(PyObject_GC_NewVar(VarObj, &VarType, PY_SSIZE_T_MAX));
    expect_memory_error("PyObject_GC_NewVar(huge)");
    cr_assert_null(PyObject_GC_NewVar(VarObj, &VarType, PY_SSIZE_T_MAX / 8 - 2));
    expect_memory_error("PyObject_GC_NewVar(the pre-header pushes it over)");
    /* negative counts are the caller's bug: SystemError */
    cr_assert_null(PyObject_NewVar(VarObj, &PlainVarType, -1));
    cr_assert(PyErr_ExceptionMatches(PyExc_SystemError));
    PyErr_Clear();
    cr_assert_null(PyObject_GC_NewVar(VarObj, &VarType, -1));
    cr_assert(PyErr_ExceptionMatches(PyExc_SystemError));
    PyErr_Clear();

    VarObj *v = PyObject_GC_NewVar(VarObj, &VarType, 4);
    cr_assert_not_null(v);
    v->items[3] = 77;
    cr_assert_null(PyObject_GC_Resize(VarObj, v, PY_SSIZE_T_MAX));
    expect_memory_error("PyObject_GC_Resize(huge)");
    cr_assert_eq(Py_SIZE(v), 4, "a failed resize changed the object");
    cr_assert_eq(v->items[3], 77);
    cr_assert_null(PyObject_GC_Resize(VarObj, v, -5));
    cr_assert(PyErr_ExceptionMatches(PyExc_SystemError));
    PyErr_Clear();
    PyObject_GC_Del(v);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- out of memory: every allocating function ------------------------------------ */

/* Fail the 1st, 2nd, ... allocation of `call` until it succeeds: every
 * failure must be NULL + MemoryError and leave the heaps as they were. */
#define FAIL_EACH_UNTIL_SUCCESS(result, call, what)                                  \
    do {                                                                            \
        int tries_ = 0;                                                             \
        for (long n_ = 1;; n_++) {                                                  \
            size_t before_ = stats().objects;                                       \
            ft_alloc_fail_after(n_);                                                \
            (result) = (call);                                                      \
            ft_alloc_fail_after(0);                                                 \
            if ((result) != NULL) {                                                 \
                cr_assert_null(PyErr_Occurred(), "%s succeeded with an error set", what); \
                break;                                                              \
            }                                                                       \
            expect_memory_error(what);                                              \
            cr_assert_eq(stats().objects, before_, "%s: a failure listed an object", what); \
            cr_assert_lt(++tries_, 10, "%s keeps failing", what);                  \
        }                                                                           \
        cr_assert_geq(tries_, 1, "%s: the first allocation was not failed", what);  \
    } while (0)

Test(obmalloc, every_creator_fails_cleanly)
{
    Py_Initialize();
    /* A fresh state: its first GC allocation also creates its heap. */
    PyThreadState *ts = PyThreadState_New(interp());
    cr_assert_not_null(ts);
    PyThreadState *main_ts = PyThreadState_Swap(ts);
    ft_gc_heap_stats s0 = stats();

    PyObject *o;
    FAIL_EACH_UNTIL_SUCCESS(o, _PyObject_GC_New(&GcType), "PyObject_GC_New (fresh heap)");
    ft_gc_heap_stats s1 = stats();
    cr_assert_eq(s1.live_heaps, s0.live_heaps + 1, "the heap was not created once");
    PyObject_GC_Del(o);

    PyVarObject *v;
    FAIL_EACH_UNTIL_SUCCESS(v, _PyObject_GC_NewVar(&VarType, 9), "PyObject_GC_NewVar");
    cr_assert_eq(Py_SIZE(v), 9);
    PyVarObject *r;
    ((VarObj *)v)->items[8] = 42;
    FAIL_EACH_UNTIL_SUCCESS(r, _PyObject_GC_Resize(v, 5000), "PyObject_GC_Resize");
    cr_assert_eq(((VarObj *)r)->items[8], 42, "resize lost the contents");
    cr_assert_eq(Py_SIZE(r), 5000);
    PyObject_GC_Del(r);

    FAIL_EACH_UNTIL_SUCCESS(o, _PyObject_New(&PlainType), "PyObject_New");
    PyObject_Free(o);
    FAIL_EACH_UNTIL_SUCCESS(v, _PyObject_NewVar(&PlainVarType, 9), "PyObject_NewVar");
    PyObject_Free(v);

    /* 200 objects, each first tried with its next allocation failing: the
     * heap array grows twice on the way (64 -> 128 -> 256), and a failed
     * growth is as clean as a failed object. */
    enum { N = 200 };
    PyObject *objs[N];
    for (int i = 0; i < N; i++) {
        ft_alloc_fail_after(1);
        PyObject *x = (PyObject *)new_gc((uint64_t)i);
        ft_alloc_fail_after(0);
        cr_assert_null(x, "allocation %d ignored the injected failure", i);
        expect_memory_error("PyObject_GC_New under injection");
        objs[i] = (PyObject *)new_gc((uint64_t)i);
        cr_assert_not_null(objs[i]);
    }
    assert_visit_exactly(objs, N);
    for (int i = 0; i < N; i++) {
        free_gc((GcObj *)objs[i]);
    }
    assert_visit_exactly(NULL, 0);

    PyThreadState_Swap(main_ts);
    PyThreadState_Clear(ts);
    PyThreadState_Delete(ts);
    cr_assert_eq(stats().live_heaps, s0.live_heaps, "the empty heap was not freed");
    cr_assert_eq(stats().orphan_heaps, s0.orphan_heaps);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- tracking ------------------------------------------------------------------------ */

Test(obmalloc, track_untrack_finalized_bits)
{
    Py_Initialize();
    GcObj *g = new_gc(1);
    cr_assert_not_null(g);
    PyObject *op = (PyObject *)g;
    cr_assert_eq(PyObject_GC_IsTracked(op), 0);
    PyObject_GC_Track(op);
    cr_assert_eq(PyObject_GC_IsTracked(op), 1);
    cr_assert(ft_gc_bits(op) & FT_GC_TRACKED);
#ifdef Py_GIL_DISABLED
    cr_assert(op->ob_gc_bits & FT_GC_TRACKED, "free-threaded: CPython's ob_gc_bits holds it");
#endif
    PyObject_GC_UnTrack(op);
    cr_assert_eq(PyObject_GC_IsTracked(op), 0);
    PyObject_GC_UnTrack(op);   /* untracking an untracked object: nothing */
    cr_assert_eq(PyObject_GC_IsTracked(op), 0);
    cr_assert_eq(PyObject_GC_IsFinalized(op), 0);
    ft_gc_bits_set(op, FT_GC_FINALIZED);
    cr_assert_eq(PyObject_GC_IsFinalized(op), 1);
    cr_assert_eq(PyObject_GC_IsTracked(op), 0, "the bits are independent");
    /* the GC object header is not disturbed by the bits */
    cr_assert_eq(g->magic, MAGIC);
    cr_assert_eq(Py_REFCNT(op), 1);
    PyObject_GC_Track(op);
    PyObject_GC_Del(op);   /* a tracked object is untracked by the free, as in CPython */

    PlainObj *p = PyObject_New(PlainObj, &PlainType);
    cr_assert_not_null(p);
    cr_assert_eq(PyObject_GC_IsTracked((PyObject *)p), 0, "non-GC objects are never tracked");
    cr_assert_eq(PyObject_GC_IsFinalized((PyObject *)p), 0);
    PyObject_Free(p);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static void
child_track_twice(void)
{
    Py_Initialize();
    GcObj *g = new_gc(1);
    PyObject_GC_Track(g);
    PyObject_GC_Track(g);
}

static void
child_track_non_gc(void)
{
    Py_Initialize();
    PlainObj *p = PyObject_New(PlainObj, &PlainType);
    PyObject_GC_Track(p);
}

static void
child_gc_del_non_gc(void)
{
    Py_Initialize();
    PlainObj *p = PyObject_New(PlainObj, &PlainType);
    PyObject_GC_Del(p);
}

static void
child_gc_new_detached(void)
{
    Py_Initialize();
    (void)PyEval_SaveThread();
    (void)new_gc(1);
}

static void
child_visit_world_running(void)
{
    Py_Initialize();
    visit_acc acc = { 0 };
    (void)ft_gc_heaps_visit(interp(), collect, &acc);
}

static void
child_resize_tracked(void)
{
    Py_Initialize();
    VarObj *v = PyObject_GC_NewVar(VarObj, &VarType, 2);
    PyObject_GC_Track(v);
    (void)PyObject_GC_Resize(VarObj, v, 10);
}

Test(obmalloc, fatal_misuse, .timeout = FT_TIMEOUT(60))
{
    test_expect_fatal(child_track_twice,
                      "PyObject_GC_Track: object already tracked by the garbage collector");
    test_expect_fatal(child_track_non_gc, "PyObject_GC_Track: ");
    test_expect_fatal(child_gc_del_non_gc, "PyObject_GC_Del: ");
    test_expect_fatal(child_gc_new_detached, "PyObject_GC_New: no thread state is attached");
    test_expect_fatal(child_resize_tracked, "_PyObject_GC_Resize: ");
    if (ft_free_threaded) {
        test_expect_fatal(child_visit_world_running, "ft_gc_heaps_visit: the world is not stopped");
    }
}

/* ---- the visitor ----------------------------------------------------------------------- */

Test(obmalloc, visitor_sees_each_object_once_after_random_frees)
{
    Py_Initialize();
    enum { N = 1000 };
    PyObject **objs = malloc(N * sizeof(PyObject *));
    cr_assert_not_null(objs);
    for (int i = 0; i < N; i++) {
        objs[i] = (PyObject *)new_gc((uint64_t)i);
        cr_assert_not_null(objs[i]);
    }
    assert_visit_exactly(objs, N);
    /* free in a scrambled order, checking the set at each step: every free
     * moves the heap's last entry into the hole */
    unsigned seed = 12345;
    size_t left = N;
    while (left > 0) {
        size_t batch = left > 97 ? 97 : left;
        for (size_t k = 0; k < batch; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t i = (seed >> 8) % left;
            free_gc((GcObj *)objs[i]);
            objs[i] = objs[--left];
        }
        assert_visit_exactly(objs, left);
    }
    free(objs);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static int
stop_at_third(PyObject *op, void *arg)
{
    int *n = arg;
    if (Py_TYPE(op) != &GcType) {
        return 0;
    }
    return ++*n == 3 ? 99 : 0;
}

Test(obmalloc, visitor_stops_at_nonzero)
{
    Py_Initialize();
    GcObj *g[5];
    for (int i = 0; i < 5; i++) {
        g[i] = new_gc((uint64_t)i);
        cr_assert_not_null(g[i]);
    }
    int n = 0;
    ft_stop_the_world(interp(), PyUnstable_STOP_OTHER);
    int rc = ft_gc_heaps_visit(interp(), stop_at_third, &n);
    ft_start_the_world(interp());
    cr_assert_eq(rc, 99);
    cr_assert_eq(n, 3, "the visit went on after a non-zero result");
    for (int i = 0; i < 5; i++) {
        free_gc(g[i]);
    }
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- threads that exit: orphans, frees into them, adoption ------------------------------------ */

enum { NTHREADS = 8, PER_THREAD = 300 };

static PyObject *thread_objs[NTHREADS * PER_THREAD];
static _Atomic int threads_failed;

static void *
alloc_and_exit(void *arg)
{
    int t = (int)(intptr_t)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    for (int i = 0; i < PER_THREAD; i++) {
        GcObj *o = new_gc((uint64_t)(t * PER_THREAD + i));
        if (!o) {
            atomic_fetch_add(&threads_failed, 1);
            break;
        }
        thread_objs[t * PER_THREAD + i] = (PyObject *)o;
    }
    PyGILState_Release(g);   /* deletes the state: its heap is orphaned */
    return NULL;
}

Test(obmalloc, objects_of_exited_threads_are_found_and_freed, .timeout = FT_TIMEOUT(60))
{
    Py_Initialize();
    ft_gc_heap_stats s0 = stats();
    atomic_store(&threads_failed, 0);
    PyThreadState *me = PyEval_SaveThread();
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        th[t] = test_start_thread(alloc_and_exit, (void *)(intptr_t)t);
    }
    for (int t = 0; t < NTHREADS; t++) {
        test_join_thread(th[t]);
    }
    PyEval_RestoreThread(me);
    cr_assert_eq(atomic_load(&threads_failed), 0);
    enum { N = NTHREADS * PER_THREAD };
    ft_gc_heap_stats s1 = stats();
    cr_assert_eq(s1.live_heaps, s0.live_heaps, "a dead thread's heap is still live");
    cr_assert_geq(s1.orphan_heaps, s0.orphan_heaps + 1);
    cr_assert_leq(s1.orphan_heaps, s0.orphan_heaps + NTHREADS);
    cr_assert_eq(s1.objects, s0.objects + N);
    assert_visit_exactly(thread_objs, N);

    /* free from here, into the orphans, in two halves */
    for (int i = 0; i < N; i += 2) {
        free_gc((GcObj *)thread_objs[i]);
    }
    PyObject *odd[N / 2];
    for (int i = 1; i < N; i += 2) {
        odd[i / 2] = thread_objs[i];
    }
    assert_visit_exactly(odd, N / 2);
    cr_assert_eq(stats().objects, s0.objects + N / 2);
    for (int i = 1; i < N; i += 2) {
        free_gc((GcObj *)thread_objs[i]);
    }
    assert_visit_exactly(NULL, 0);
    ft_gc_heap_stats s2 = stats();
    cr_assert_eq(s2.orphan_heaps, s0.orphan_heaps, "emptied orphans were not freed");
    cr_assert_eq(s2.objects, s0.objects);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static GcObj *adopt_obj;
static ft_gc_heap *_Atomic adopt_heap;

static void *
alloc_one_and_exit(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    adopt_obj = new_gc(7);
    if (adopt_obj) {
        atomic_store(&adopt_heap, ft_gc_heap_of((PyObject *)adopt_obj));
    }
    PyGILState_Release(g);
    return NULL;
}

Test(obmalloc, free_into_orphan_and_adoption, .timeout = FT_TIMEOUT(30))
{
    Py_Initialize();
    ft_gc_heap_stats s0 = stats();
    cr_assert_eq(s0.orphan_heaps, 0);
    PyThreadState *me = PyEval_SaveThread();
    atomic_store(&threads_failed, 0);
    pthread_t t = test_start_thread(alloc_and_exit, (void *)(intptr_t)0);
    test_join_thread(t);
    PyEval_RestoreThread(me);
    cr_assert_eq(atomic_load(&threads_failed), 0);
    cr_assert_eq(stats().orphan_heaps, 1);
    ft_gc_heap *orphan = ft_gc_heap_of(thread_objs[0]);
    for (int i = 1; i < PER_THREAD; i++) {
        cr_assert_eq(ft_gc_heap_of(thread_objs[i]), orphan);
    }
    /* a free into the orphan: direct removal, the heap stays (not empty) */
    free_gc((GcObj *)thread_objs[0]);
    cr_assert_eq(stats().objects, s0.objects + PER_THREAD - 1);
    assert_visit_exactly(thread_objs + 1, PER_THREAD - 1);

    /* a new state's first GC allocation adopts the orphan */
    me = PyEval_SaveThread();
    atomic_store(&adopt_heap, NULL);
    t = test_start_thread(alloc_one_and_exit, NULL);
    test_join_thread(t);
    PyEval_RestoreThread(me);
    cr_assert_not_null(adopt_obj);
    cr_assert_eq(atomic_load(&adopt_heap), orphan, "the new state made a heap instead of adopting");
    ft_gc_heap_stats s1 = stats();
    cr_assert_eq(s1.orphan_heaps, 1, "orphaned again when the adopter's state was deleted");
    cr_assert_eq(s1.live_heaps, s0.live_heaps);
    cr_assert_eq(s1.objects, s0.objects + PER_THREAD);
    PyObject *all[PER_THREAD];
    memcpy(all, thread_objs + 1, (PER_THREAD - 1) * sizeof(PyObject *));
    all[PER_THREAD - 1] = (PyObject *)adopt_obj;
    assert_visit_exactly(all, PER_THREAD);
    for (int i = 0; i < PER_THREAD; i++) {
        free_gc((GcObj *)all[i]);
    }
    cr_assert_eq(stats().orphan_heaps, 0, "the last free did not free the orphan");
    cr_assert_eq(stats().objects, s0.objects);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- remote frees: the pushing path, observed before the owner drains --------------------- */

enum { REMOTE_N = 50 };
static PyObject *remote_objs[REMOTE_N];
static _Atomic int remote_stage;       /* 1 allocated, 2 freed by main, 3 owner allocated again, 4 done */
static _Atomic size_t remote_objects_after_drain;
static GcObj *remote_last;

static void *
remote_owner(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    for (int i = 0; i < REMOTE_N; i++) {
        remote_objs[i] = (PyObject *)new_gc((uint64_t)i);
    }
    atomic_store(&remote_stage, 1);
    Py_BEGIN_ALLOW_THREADS
    TEST_HELPER_WAIT(atomic_load(&remote_stage) == 2, 4 * POLL_MS);
    Py_END_ALLOW_THREADS
    remote_last = new_gc(999);   /* the owner's next allocation drains */
    atomic_store(&remote_objects_after_drain, stats().objects);
    atomic_store(&remote_stage, 3);
    Py_BEGIN_ALLOW_THREADS
    TEST_HELPER_WAIT(atomic_load(&remote_stage) == 4, 4 * POLL_MS);
    Py_END_ALLOW_THREADS
    free_gc(remote_last);
    PyGILState_Release(g);
    return NULL;
}

Test(obmalloc, remote_frees_wait_for_the_owner, .timeout = FT_TIMEOUT(30))
{
    Py_Initialize();
    ft_gc_heap_stats s0 = stats();
    atomic_store(&remote_stage, 0);
    PyThreadState *me = PyEval_SaveThread();
    pthread_t t = test_start_thread(remote_owner, NULL);
    bool ok = TEST_POLL_UNTIL(atomic_load(&remote_stage) == 1, POLL_MS);
    PyEval_RestoreThread(me);
    cr_assert(ok, "the owner did not allocate");
    for (int i = 0; i < REMOTE_N; i++) {
        cr_assert_not_null(remote_objs[i]);
        cr_assert_neq(ft_gc_heap_of(remote_objs[i]), ft_ts(PyThreadState_Get())->gc_heap);
    }
    for (int i = 0; i < REMOTE_N; i++) {
        free_gc((GcObj *)remote_objs[i]);   /* not ours: pushed, not removed */
    }
    cr_assert_eq(stats().objects, s0.objects + REMOTE_N,
                 "a remote free touched the owner's array");
    atomic_store(&remote_stage, 2);
    me = PyEval_SaveThread();
    ok = TEST_POLL_UNTIL(atomic_load(&remote_stage) == 3, POLL_MS);
    PyEval_RestoreThread(me);
    cr_assert(ok, "the owner did not allocate again");
    cr_assert_eq(atomic_load(&remote_objects_after_drain), s0.objects + 1,
                 "the owner's allocation did not drain the remote frees");
    PyObject *live[1] = { (PyObject *)remote_last };
    assert_visit_exactly(live, 1);
    atomic_store(&remote_stage, 4);
    me = PyEval_SaveThread();
    test_join_thread(t);
    PyEval_RestoreThread(me);
    cr_assert_eq(stats().objects, s0.objects);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* The visitor drains remote frees of owners that are not running. */
Test(obmalloc, visitor_drains_remote_frees, .timeout = FT_TIMEOUT(30))
{
    Py_Initialize();
    ft_gc_heap_stats s0 = stats();
    atomic_store(&remote_stage, 0);
    PyThreadState *me = PyEval_SaveThread();
    pthread_t t = test_start_thread(remote_owner, NULL);
    bool ok = TEST_POLL_UNTIL(atomic_load(&remote_stage) == 1, POLL_MS);
    PyEval_RestoreThread(me);
    cr_assert(ok, "the owner did not allocate");
    for (int i = 0; i < REMOTE_N; i += 2) {
        free_gc((GcObj *)remote_objs[i]);
    }
    cr_assert_eq(stats().objects, s0.objects + REMOTE_N);
    PyObject *odd[REMOTE_N / 2];
    for (int i = 1; i < REMOTE_N; i += 2) {
        odd[i / 2] = remote_objs[i];
    }
    assert_visit_exactly(odd, REMOTE_N / 2);   /* no dead object among them */
    cr_assert_eq(stats().objects, s0.objects + REMOTE_N / 2, "the visit did not drain");
    for (int i = 1; i < REMOTE_N; i += 2) {
        free_gc((GcObj *)remote_objs[i]);
    }
    atomic_store(&remote_stage, 2);
    me = PyEval_SaveThread();
    ok = TEST_POLL_UNTIL(atomic_load(&remote_stage) == 3, POLL_MS);
    atomic_store(&remote_stage, 4);
    test_join_thread(t);
    PyEval_RestoreThread(me);
    cr_assert(ok);
    cr_assert_eq(stats().objects, s0.objects);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- resize ----------------------------------------------------------------------------- */

static VarObj *_Atomic foreign_var;
static _Atomic int foreign_stage;

static void *
foreign_allocator(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    VarObj *v = PyObject_GC_NewVar(VarObj, &VarType, 8);
    if (v) {
        for (int i = 0; i < 8; i++) {
            v->items[i] = 100u + (uint64_t)i;
        }
    }
    atomic_store(&foreign_var, v);
    Py_BEGIN_ALLOW_THREADS
    test_wait_flag(&foreign_stage, 4 * POLL_MS);
    Py_END_ALLOW_THREADS
    PyGILState_Release(g);
    return NULL;
}

static int
find_var(PyObject *op, void *arg)
{
    PyObject **want = arg;
    if (op == want[0]) {
        want[1] = op;
    }
    if (op == want[2]) {
        want[3] = op;
    }
    return 0;
}

Test(obmalloc, gc_resize_own_and_foreign, .timeout = FT_TIMEOUT(30))
{
    Py_Initialize();
    ft_gc_heap_stats s0 = stats();
    /* own object: in place, and the heap entry follows the block */
    VarObj *v = PyObject_GC_NewVar(VarObj, &VarType, 4);
    cr_assert_not_null(v);
    for (int i = 0; i < 4; i++) {
        v->items[i] = (uint64_t)i + 1;
    }
    PyObject *old = (PyObject *)v;
    v = PyObject_GC_Resize(VarObj, v, 100000);   /* large: the block moves */
    cr_assert_not_null(v);
    cr_assert_eq(Py_SIZE(v), 100000);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(v->items[i], (uint64_t)i + 1);
    }
    v->items[99999] = 5;
    PyObject *want[4] = { (PyObject *)v, NULL, old != (PyObject *)v ? old : NULL, NULL };
    ft_stop_the_world(interp(), PyUnstable_STOP_OTHER);
    ft_gc_heaps_visit(interp(), find_var, want);
    ft_start_the_world(interp());
    cr_assert_eq(want[1], (PyObject *)v, "the resized object is not listed");
    cr_assert_null(want[3], "the old address is still listed");
    cr_assert_eq(stats().objects, s0.objects + 1);
    v = PyObject_GC_Resize(VarObj, v, 2);
    cr_assert_not_null(v);
    cr_assert_eq(v->items[1], 2);
    PyObject_GC_Del(v);
    cr_assert_eq(stats().objects, s0.objects);

    /* another state's object: moved into ours */
    atomic_store(&foreign_stage, 0);
    atomic_store(&foreign_var, NULL);
    PyThreadState *me = PyEval_SaveThread();
    pthread_t t = test_start_thread(foreign_allocator, NULL);
    bool ok = TEST_POLL_UNTIL(atomic_load(&foreign_var) != NULL, POLL_MS);
    PyEval_RestoreThread(me);
    cr_assert(ok);
    VarObj *f = atomic_load(&foreign_var);
    ft_gc_heap *theirs = ft_gc_heap_of((PyObject *)f);
    VarObj *g = PyObject_GC_Resize(VarObj, f, 16);
    cr_assert_not_null(g);
    cr_assert_neq(ft_gc_heap_of((PyObject *)g), theirs, "resized in the other state's heap");
    cr_assert_eq(ft_gc_heap_of((PyObject *)g), ft_ts(PyThreadState_Get())->gc_heap);
    cr_assert_eq(Py_SIZE(g), 16);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(g->items[i], 100u + (uint64_t)i);
    }
    assert_visit_exactly(NULL, 0);   /* GcType only: none */
    PyObject *want2[4] = { (PyObject *)g, NULL, (PyObject *)f, NULL };
    ft_stop_the_world(interp(), PyUnstable_STOP_OTHER);
    ft_gc_heaps_visit(interp(), find_var, want2);
    ft_start_the_world(interp());
    cr_assert_eq(want2[1], (PyObject *)g);
    cr_assert_null(want2[3], "the old block is still listed");
    PyObject_GC_Del(g);
    atomic_store(&foreign_stage, 1);
    me = PyEval_SaveThread();
    test_join_thread(t);
    PyEval_RestoreThread(me);
    cr_assert_eq(stats().objects, s0.objects);
    cr_assert_eq(stats().orphan_heaps, 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- stress: concurrent allocation and remote frees ---------------------------------------- */

/* Each worker runs at least STRESS_ITERS rounds and until the main thread
 * has visited STRESS_VISITS times while they run (free-threaded build). */
enum { STRESS_THREADS = 8, STRESS_ITERS = 5000, STRESS_VISITS = 20, INBOX_CAP = 64 };

typedef struct {
    pthread_mutex_t lock;
    GcObj *slot[INBOX_CAP];
    int n;
} inbox;

static inbox inboxes[STRESS_THREADS];
static _Atomic long stress_allocated, stress_freed;
static _Atomic int stress_paused, stress_resume, stress_failed, stress_visits;

static void
drain_inbox(int me, long *freed)
{
    GcObj *mine[INBOX_CAP];
    pthread_mutex_lock(&inboxes[me].lock);
    int n = inboxes[me].n;
    memcpy(mine, inboxes[me].slot, (size_t)n * sizeof(GcObj *));
    inboxes[me].n = 0;
    pthread_mutex_unlock(&inboxes[me].lock);
    for (int i = 0; i < n; i++) {
        if (mine[i]->magic != MAGIC) {
            atomic_fetch_add(&stress_failed, 1);
        }
        free_gc(mine[i]);   /* allocated by another thread: a remote free */
        (*freed)++;
    }
}

static void *
stress_worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    int next = (me + 1) % STRESS_THREADS;
    long allocated = 0, freed = 0;
    PyGILState_STATE g = PyGILState_Ensure();
    /* GIL build: the workers hand the GIL to each other and could starve
     * the main thread, so they do not wait for its visits. */
    int visits_needed = ft_free_threaded ? STRESS_VISITS : 0;
    int64_t deadline = test_now_ns() + (int64_t)POLL_MS * 4 * 1000000LL * FT_TIMEOUT_SCALE;
    for (int i = 0; i < STRESS_ITERS || atomic_load(&stress_visits) < visits_needed; i++) {
        if (i % 1024 == 0 && test_now_ns() > deadline) {
            atomic_fetch_add(&stress_failed, 10000);   /* the main thread stopped visiting */
            break;
        }
        GcObj *o = new_gc((uint64_t)me << 32 | (uint64_t)i);
        if (!o) {
            atomic_fetch_add(&stress_failed, 100);
            break;
        }
        allocated++;
        pthread_mutex_lock(&inboxes[next].lock);
        bool handed = inboxes[next].n < INBOX_CAP;
        if (handed) {
            inboxes[next].slot[inboxes[next].n++] = o;
        }
        pthread_mutex_unlock(&inboxes[next].lock);
        if (!handed) {
            free_gc(o);   /* the owner's own free */
            freed++;
        }
        if (i % 8 == 0) {
            drain_inbox(me, &freed);
        }
    }
    atomic_fetch_add(&stress_allocated, allocated);
    atomic_fetch_add(&stress_freed, freed);
    /* pause (detached) so the main thread can count exactly */
    atomic_fetch_add(&stress_paused, 1);
    Py_BEGIN_ALLOW_THREADS
    test_wait_flag(&stress_resume, 8 * POLL_MS);   /* the main thread's visits: 4 * POLL_MS */
    Py_END_ALLOW_THREADS
    PyGILState_Release(g);
    return NULL;
}

Test(obmalloc, stress_alloc_and_remote_free_counts_exact, .timeout = FT_TIMEOUT(120))
{
    Py_Initialize();
    ft_gc_heap_stats s0 = stats();
    for (int i = 0; i < STRESS_THREADS; i++) {
        pthread_mutex_init(&inboxes[i].lock, NULL);
        inboxes[i].n = 0;
    }
    atomic_store(&stress_allocated, 0);
    atomic_store(&stress_freed, 0);
    atomic_store(&stress_paused, 0);
    atomic_store(&stress_resume, 0);
    atomic_store(&stress_failed, 0);
    atomic_store(&stress_visits, 0);
    PyThreadState *me = PyEval_SaveThread();
    pthread_t th[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++) {
        th[i] = test_start_thread(stress_worker, (void *)(intptr_t)i);
    }
    /* visits while they run: never a freed object, never one twice */
    int visits = 0;
    size_t dead_seen = 0, overflow = 0;
    int64_t deadline = test_now_ns() + (int64_t)POLL_MS * 4 * 1000000LL * FT_TIMEOUT_SCALE;
    while (visits < STRESS_VISITS && test_now_ns() < deadline) {
        PyEval_RestoreThread(me);
        visit_acc acc = visit_gc_objects(STRESS_THREADS * (INBOX_CAP + 8));
        dead_seen += acc.dead;
        overflow += acc.overflow;
        qsort(acc.seen, acc.n, sizeof(PyObject *), cmp_ptr);
        for (size_t i = 1; i < acc.n; i++) {
            if (acc.seen[i] == acc.seen[i - 1]) {
                dead_seen++;   /* counted as a failure below */
            }
        }
        free(acc.seen);
        visits++;
        me = PyEval_SaveThread();
        atomic_store(&stress_visits, visits);
        test_sleep_ns(1000000);   /* the workers run between visits: not a wait */
    }
    bool paused = TEST_POLL_UNTIL(atomic_load(&stress_paused) == STRESS_THREADS, POLL_MS * 4);
    PyEval_RestoreThread(me);
    cr_assert(paused, "the workers did not finish");
    cr_assert_eq(atomic_load(&stress_failed), 0, "a worker failed or freed a dead object (%d)", atomic_load(&stress_failed));
    cr_assert_eq(dead_seen, 0, "a visit met a freed object or one object twice");
    cr_assert_eq(overflow, 0);
    cr_assert_eq(visits, STRESS_VISITS);
    /* every worker is paused (detached): the listed count is exact, with
     * remote frees still waiting in stacks */
    long live = atomic_load(&stress_allocated) - atomic_load(&stress_freed);
    cr_assert_geq(atomic_load(&stress_allocated), (long)STRESS_THREADS * STRESS_ITERS);
    visit_acc acc = visit_gc_objects((size_t)live + 16);
    cr_assert_eq(acc.n, (size_t)live, "listed %zu, live %ld", acc.n, live);
    cr_assert_eq(acc.dead, 0);
    free(acc.seen);
    size_t in_inboxes = 0;
    for (int i = 0; i < STRESS_THREADS; i++) {
        in_inboxes += (size_t)inboxes[i].n;
    }
    cr_assert_eq(in_inboxes, (size_t)live, "objects lost between inboxes and heaps");
    cr_assert_eq(stats().objects, s0.objects + (size_t)live, "listed %zu before, %zu now, %ld live", s0.objects, stats().objects, live);

    atomic_store(&stress_resume, 1);
    me = PyEval_SaveThread();
    for (int i = 0; i < STRESS_THREADS; i++) {
        test_join_thread(th[i]);
    }
    PyEval_RestoreThread(me);
    /* the workers' states are gone: what is left sits in orphans */
    for (int i = 0; i < STRESS_THREADS; i++) {
        for (int k = 0; k < inboxes[i].n; k++) {
            free_gc(inboxes[i].slot[k]);
        }
        inboxes[i].n = 0;
        pthread_mutex_destroy(&inboxes[i].lock);
    }
    assert_visit_exactly(NULL, 0);
    ft_gc_heap_stats s1 = stats();
    cr_assert_eq(s1.objects, s0.objects);
    cr_assert_eq(s1.orphan_heaps, 0);
    cr_assert_eq(s1.live_heaps, s0.live_heaps);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

/* ---- type-stable frees -------------------------------------------------------------------- */

#ifdef Py_GIL_DISABLED
static void
publish(PyObject *op)
{
    /* what a writer publishing op for lock-free readers does */
    __atomic_fetch_or(&op->ob_ref_shared, _Py_REF_MAYBE_WEAKREF, __ATOMIC_RELAXED);
}
#endif

/* Wait until every deferred free has run (detached: a grace period needs
 * this thread quiescent). */
static void
wait_grace_period(void)
{
    PyThreadState *me = PyEval_SaveThread();
    ft_rcu_barrier();
    PyEval_RestoreThread(me);
}

Test(obmalloc, published_objects_outlive_a_grace_period, .timeout = FT_TIMEOUT(30))
{
    Py_Initialize();
    ft_tstate *ts = ft_ts(PyThreadState_Get());
    wait_grace_period();
    cr_assert_eq(ft_gc_deferred_outstanding(), 0);

    /* unpublished: freed at once, nothing outstanding */
    GcObj *a = new_gc(1);
    cr_assert_not_null(a);
    free_gc(a);
    ft_gc_defer_flush(ts);
    cr_assert_eq(ft_gc_deferred_outstanding(), 0, "a private object's free was deferred");

    if (!ft_free_threaded) {
        /* GIL build: no lock-free readers, nothing is ever deferred */
        cr_assert_eq(Py_FinalizeEx(), 0);
        return;
    }
#ifdef Py_GIL_DISABLED
    GcObj *p = new_gc(2);
    cr_assert_not_null(p);
    PyObject *op = (PyObject *)p;
    publish(op);
    PyObject_GC_UnTrack(op);
    PyObject_GC_Del(op);
    /* a stale reader still finds the dead header: a try-incref fails */
    cr_assert_eq(__atomic_load_n(&op->ob_ref_shared, __ATOMIC_RELAXED), _Py_REF_MERGED);
    cr_assert_eq(__atomic_load_n(&op->ob_ref_local, __ATOMIC_RELAXED), 0);
    cr_assert_eq(__atomic_load_n(&op->ob_tid, __ATOMIC_RELAXED), 0);
    cr_assert_eq(Py_TYPE(op), &GcType, "the type word is left for stale readers");
    /* its block is not handed out again: not to GC objects of its size,
     * nor to raw blocks of its size */
    enum { M = 200 };
    GcObj *others[M];
    void *raws[M];
    for (int i = 0; i < M; i++) {
        others[i] = new_gc(3);
        cr_assert_not_null(others[i]);
        cr_assert_neq((PyObject *)others[i], op, "a published object's block was reused");
        raws[i] = PyMem_Malloc(sizeof(ft_gc_prehdr) + sizeof(GcObj));
        cr_assert_not_null(raws[i]);
        cr_assert_neq(raws[i], (void *)ft_gc_prehdr_of(op), "reused as raw memory");
    }
    for (int i = 0; i < M; i++) {
        free_gc(others[i]);
        PyMem_Free(raws[i]);
    }
    cr_assert_eq(ft_gc_deferred_outstanding(), 0, "still batched, not yet handed to RCU");
    ft_gc_defer_flush(ts);
    cr_assert_eq(ft_gc_deferred_outstanding(), 1);
    wait_grace_period();
    cr_assert_eq(ft_gc_deferred_outstanding(), 0, "not freed after the grace period");

    /* FT_GC_SHARED marks it as well */
    GcObj *q = new_gc(4);
    cr_assert_not_null(q);
    ft_gc_bits_set((PyObject *)q, FT_GC_SHARED);
    free_gc(q);
    ft_gc_defer_flush(ts);
    cr_assert_eq(ft_gc_deferred_outstanding(), 1);

    /* no batch can be allocated: the dead pre-header carries the callback */
    GcObj *r = new_gc(5);
    cr_assert_not_null(r);
    publish((PyObject *)r);
    ft_alloc_fail_after(1);
    free_gc(r);
    ft_alloc_fail_after(0);
    cr_assert_eq(ft_gc_deferred_outstanding(), 2, "the fallback did not hand it to RCU at once");
    wait_grace_period();
    cr_assert_eq(ft_gc_deferred_outstanding(), 0);

    /* with the world stopped by us nobody reads: freed at once */
    GcObj *w = new_gc(6);
    cr_assert_not_null(w);
    publish((PyObject *)w);
    ft_stop_the_world(interp(), PyUnstable_STOP_OTHER);
    free_gc(w);
    ft_start_the_world(interp());
    ft_gc_defer_flush(ts);
    cr_assert_eq(ft_gc_deferred_outstanding(), 0);

    /* a full batch goes to RCU by itself */
    enum { B = 600 };
    for (int i = 0; i < B; i++) {
        GcObj *x = new_gc(7);
        cr_assert_not_null(x);
        publish((PyObject *)x);
        free_gc(x);
    }
    int64_t handed = ft_gc_deferred_outstanding();
    cr_assert(handed > 0 && handed < B, "a full batch was not handed over alone (%lld)",
              (long long)handed);
    ft_gc_defer_flush(ts);
    cr_assert_eq(ft_gc_deferred_outstanding(), B);
    wait_grace_period();
    cr_assert_eq(ft_gc_deferred_outstanding(), 0);
#endif
    cr_assert_eq(Py_FinalizeEx(), 0);
}

#ifdef Py_GIL_DISABLED
static PyObject *_Atomic published_obj;
static _Atomic int published_stage;

static void *
publishing_owner(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    GcObj *o = new_gc(1);
    if (o) {
        publish((PyObject *)o);
    }
    atomic_store(&published_obj, (PyObject *)o);
    Py_BEGIN_ALLOW_THREADS
    test_wait_flag(&published_stage, 4 * POLL_MS);
    Py_END_ALLOW_THREADS
    GcObj *drainer = new_gc(2);   /* drains the remote free, which it defers */
    ft_gc_defer_flush(ft_ts(PyThreadState_Get()));
    free_gc(drainer);
    atomic_store(&published_stage, 2);
    PyGILState_Release(g);
    return NULL;
}
#endif

/* Non-GC objects: _Py_Dealloc and PyObject_Free defer the block of a
 * published object exactly as PyObject_GC_Del does; without a batch the
 * block is leaked, never freed early. */
static void *plain_leaked_block __attribute__((unused));   /* keeps LSan quiet about the leak */

Test(obmalloc, published_plain_objects_outlive_a_grace_period, .timeout = FT_TIMEOUT(30))
{
    Py_Initialize();
    cr_assert_eq(PyType_Ready(&PlainType), 0);
    ft_tstate *ts = ft_ts(PyThreadState_Get());
    wait_grace_period();
    cr_assert_eq(ft_gc_deferred_outstanding(), 0);

    PlainObj *a = PyObject_New(PlainObj, &PlainType);
    cr_assert_not_null(a);
    Py_DECREF(a);
    ft_gc_defer_flush(ts);
    cr_assert_eq(ft_gc_deferred_outstanding(), 0, "a private object's free was deferred");
    cr_assert_null(ft_dying_shared, "left set after a dealloc");

    if (!ft_free_threaded) {
        cr_assert_eq(Py_FinalizeEx(), 0);
        return;
    }
#ifdef Py_GIL_DISABLED
    PlainObj *p = PyObject_New(PlainObj, &PlainType);
    cr_assert_not_null(p);
    PyObject *op = (PyObject *)p;
    publish(op);
    Py_DECREF(op);
    cr_assert_null(ft_dying_shared, "left set after a dealloc");
    cr_assert_eq(__atomic_load_n(&op->ob_ref_shared, __ATOMIC_RELAXED), _Py_REF_MERGED);
    cr_assert_eq(__atomic_load_n(&op->ob_ref_local, __ATOMIC_RELAXED), 0);
    cr_assert_eq(__atomic_load_n(&op->ob_tid, __ATOMIC_RELAXED), 0);
    cr_assert_eq(Py_TYPE(op), &PlainType, "the type word is left for stale readers");
    enum { M = 200 };
    void *others[M];
    for (int i = 0; i < M; i++) {
        others[i] = i % 2 ? (void *)PyObject_New(PlainObj, &PlainType)
                          : PyMem_Malloc(sizeof(PlainObj));
        cr_assert_not_null(others[i]);
        cr_assert_neq(others[i], (void *)op, "a published object's block was reused");
    }
    for (int i = 0; i < M; i++) {
        if (i % 2) {
            Py_DECREF((PyObject *)others[i]);
        }
        else {
            PyMem_Free(others[i]);
        }
    }
    cr_assert_eq(ft_gc_deferred_outstanding(), 0, "still batched, not yet handed to RCU");
    ft_gc_defer_flush(ts);
    cr_assert_eq(ft_gc_deferred_outstanding(), 1);
    wait_grace_period();
    cr_assert_eq(ft_gc_deferred_outstanding(), 0, "not freed after the grace period");

    /* the buffers a dealloc frees are not deferred, only the object itself */
    void *buf = PyObject_Malloc(64);
    cr_assert_not_null(buf);
    PyObject_Free(buf);
    ft_gc_defer_flush(ts);
    cr_assert_eq(ft_gc_deferred_outstanding(), 0);

    /* no batch can be allocated: leaked, counted, not reused */
    int64_t leaked = ft_nongc_leaked();
    PlainObj *r = PyObject_New(PlainObj, &PlainType);
    cr_assert_not_null(r);
    publish((PyObject *)r);
    plain_leaked_block = r;
    ft_alloc_fail_after(1);
    Py_DECREF(r);
    ft_alloc_fail_after(0);
    cr_assert_eq(ft_nongc_leaked(), leaked + 1);
    cr_assert_eq(ft_gc_deferred_outstanding(), 0);
    cr_assert_eq(__atomic_load_n(&((PyObject *)r)->ob_ref_shared, __ATOMIC_RELAXED),
                 _Py_REF_MERGED, "the leaked block keeps the dead header");
#endif
    cr_assert_eq(Py_FinalizeEx(), 0);
}

Test(obmalloc, published_remote_free_is_deferred_by_the_owner, .timeout = FT_TIMEOUT(30))
{
#ifndef Py_GIL_DISABLED
    cr_skip_test("free-threaded only: no lock-free readers with the GIL");
#else
    Py_Initialize();
    wait_grace_period();
    cr_assert_eq(ft_gc_deferred_outstanding(), 0);
    atomic_store(&published_stage, 0);
    atomic_store(&published_obj, NULL);
    pthread_t t = test_start_thread(publishing_owner, NULL);
    PyThreadState *me = PyEval_SaveThread();
    bool ok = TEST_POLL_UNTIL(atomic_load(&published_obj) != NULL, POLL_MS);
    PyEval_RestoreThread(me);
    cr_assert(ok);
    PyObject *op = atomic_load(&published_obj);
    free_gc((GcObj *)op);   /* remote, flagged for a grace period */
    cr_assert_eq(__atomic_load_n(&op->ob_ref_shared, __ATOMIC_RELAXED), _Py_REF_MERGED);
    cr_assert_eq(ft_gc_deferred_outstanding(), 0);
    atomic_store(&published_stage, 1);
    me = PyEval_SaveThread();
    ok = TEST_POLL_UNTIL(atomic_load(&published_stage) == 2, POLL_MS);
    test_join_thread(t);
    PyEval_RestoreThread(me);
    cr_assert(ok);
    cr_assert_geq(ft_gc_deferred_outstanding(), 0);
    wait_grace_period();
    cr_assert_eq(ft_gc_deferred_outstanding(), 0);
    cr_assert_eq(stats().objects, 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
#endif
}

/* ---- objects across Py_Finalize, fork ------------------------------------------------------- */

Test(obmalloc, leaked_objects_survive_a_cycle_in_an_orphan, .timeout = FT_TIMEOUT(30))
{
    Py_Initialize();
    GcObj *g = new_gc(1);
    cr_assert_not_null(g);
    cr_assert_eq(Py_FinalizeEx(), 0);   /* g leaks, as in CPython */
    Py_Initialize();
    ft_gc_heap_stats s = stats();
    cr_assert_eq(s.orphan_heaps, 1, "the finalized state's heap was not orphaned");
    cr_assert_eq(s.objects, 1);
    PyObject *want[1] = { (PyObject *)g };
    assert_visit_exactly(want, 1);
    free_gc(g);
    cr_assert_eq(stats().orphan_heaps, 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
}

static _Atomic int fork_helper_stage;
static GcObj *fork_helper_objs[3];

static void *
fork_helper(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    for (int i = 0; i < 3; i++) {
        fork_helper_objs[i] = new_gc((uint64_t)i);
    }
    atomic_store(&fork_helper_stage, 1);
    Py_BEGIN_ALLOW_THREADS
    TEST_HELPER_WAIT(atomic_load(&fork_helper_stage) == 2, 4 * POLL_MS);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < 3; i++) {
        free_gc(fork_helper_objs[i]);
    }
    PyGILState_Release(g);
    return NULL;
}

/* In the child: the helper's state is dropped, its heap orphaned once
 * liburcu frees the state, the heap lock works, and its objects can be
 * freed.  One exit code per check. */
static int
fork_child_checks(void)
{
    alarm((unsigned)FT_TIMEOUT(20));
    PyOS_AfterFork_Child();
    PyThreadState *me = PyEval_SaveThread();
    bool orphaned = TEST_POLL_UNTIL(stats().orphan_heaps == 1, POLL_MS);
    PyEval_RestoreThread(me);
    if (!orphaned) {
        return 10;
    }
    GcObj *mine = new_gc(9);
    if (!mine) {
        return 11;
    }
    PyObject *want[4] = { (PyObject *)fork_helper_objs[0], (PyObject *)fork_helper_objs[1],
                          (PyObject *)fork_helper_objs[2], (PyObject *)mine };
    visit_acc acc = visit_gc_objects(8);
    if (acc.n != 4 || acc.dead != 0) {
        return 12;
    }
    qsort(acc.seen, 4, sizeof(PyObject *), cmp_ptr);
    qsort(want, 4, sizeof(PyObject *), cmp_ptr);
    if (memcmp(acc.seen, want, sizeof want) != 0) {
        return 13;
    }
    free(acc.seen);
    for (int i = 0; i < 3; i++) {
        free_gc(fork_helper_objs[i]);
    }
    free_gc(mine);
    if (stats().orphan_heaps != 0 || stats().objects != 0) {
        return 14;
    }
    return Py_FinalizeEx() == 0 ? 0 : 15;
}

Test(obmalloc, fork_child_orphans_dead_threads_heaps, .timeout = FT_TIMEOUT(60))
{
    Py_Initialize();
    atomic_store(&fork_helper_stage, 0);
    PyThreadState *me = PyEval_SaveThread();
    pthread_t t = test_start_thread(fork_helper, NULL);
    bool ok = TEST_POLL_UNTIL(atomic_load(&fork_helper_stage) == 1, POLL_MS);
    PyEval_RestoreThread(me);
    cr_assert(ok);
    PyOS_BeforeFork();
    pid_t pid = fork();
    if (pid == 0) {
        _exit(fork_child_checks());
    }
    PyOS_AfterFork_Parent();
    cr_assert_geq(pid, 0);
    int status;
    bool exited = test_wait_child(pid, POLL_MS * 4, &status);
    atomic_store(&fork_helper_stage, 2);
    me = PyEval_SaveThread();
    test_join_thread(t);
    PyEval_RestoreThread(me);
    cr_assert(exited, "the child hung");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child status %#x (exit %d)", status, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    cr_assert_eq(stats().objects, 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
}
