/* Type objects and singletons (core/typeobject.c), white-box.
 *
 * Covers: the static types and singletons (readied by Py_Initialize,
 * immortal: incref/decref write nothing); PyBool_FromLong; PyType_Ready's
 * inheritance rules, its errors and its concurrency (8 threads readying one
 * type); PyType_IsSubtype / GetFlags / GetSlot; PyType_GenericAlloc (zeroed,
 * variable size, GC objects tracked) and GenericNew; PyType_FromSpec (name
 * and doc copied, slots applied, default dealloc reaching the base's
 * dealloc, tp_finalize once with resurrection, errors, out of memory at
 * every allocation); heap types stay immortal while 8 threads create and
 * free their instances, including frees by a thread that did not allocate;
 * finalization frees heap types (50 cycles, the tracer sees them go); the
 * object protocol (hash, rich comparison with reflection, callable, repr and
 * str: the type's slots, the default repr); misuse that is fatal.
 *
 * Helper threads only record into atomics; the test's main thread asserts.
 */
#include "harness.h"
#include "test_util.h"
#include "test_objects.h"

#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_types.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(typeobject, .init = test_runtime_setup, .fini = test_runtime_teardown,
          .timeout = FT_TIMEOUT(30));

/* ---- helpers ------------------------------------------------------------ */


/* The reference-count part of an object's header, as bytes. */
typedef struct { unsigned char b[sizeof(PyObject) - sizeof(PyTypeObject *)]; } header_bytes;

static header_bytes
header_of(PyObject *op)
{
    header_bytes h;
    memcpy(h.b, op, sizeof h.b);
    return h;
}

static bool
same_header(header_bytes a, header_bytes b)
{
    return memcmp(a.b, b.b, sizeof a.b) == 0;
}

/* A function as a slot's void * (ISO C has no cast between the two). */
/* A plain object type for tests, with a counting tp_free. */
typedef struct {
    PyObject_HEAD
    long payload[4];
} plain_object;

static atomic_long plain_frees;

static void
counting_free(void *p)
{
    atomic_fetch_add(&plain_frees, 1);
    PyObject_Free(p);
}

static atomic_long gc_frees;

static void
counting_gc_free(void *p)
{
    atomic_fetch_add(&gc_frees, 1);
    PyObject_GC_Del(p);
}

/* ---- static types and singletons -------------------------------------------- */

Test(typeobject, static_types_are_ready_and_immortal)
{
    PyTypeObject *types[] = { &PyType_Type, &PyBaseObject_Type, &PyBool_Type,
                              Py_TYPE(Py_None), Py_TYPE(Py_NotImplemented) };
    const char *names[] = { "type", "object", "bool", "NoneType", "NotImplementedType" };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        cr_assert_str_eq(types[i]->tp_name, names[i]);
        cr_assert(types[i]->tp_flags & Py_TPFLAGS_READY, "%s not ready", names[i]);
        cr_assert_eq(Py_TYPE(types[i]), &PyType_Type);
        cr_assert(PyType_Check(types[i]));
        cr_assert_eq(Py_REFCNT(types[i]), _Py_IMMORTAL_REFCNT);
        cr_assert(_Py_IsImmortal((PyObject *)types[i]));
        if (types[i] != &PyBaseObject_Type) {
            /* bool derives from int (core/longobject.c), the others from object */
            PyTypeObject *base = types[i] == &PyBool_Type ? &PyLong_Type : &PyBaseObject_Type;
            cr_assert_eq(types[i]->tp_base, base, "%s's base", names[i]);
        }
    }
    cr_assert_null(PyBaseObject_Type.tp_base);
    cr_assert_eq(Py_TYPE(Py_True), &PyBool_Type);
    cr_assert_eq(Py_TYPE(Py_False), &PyBool_Type);
    cr_assert(PyBool_Check(Py_True));
    cr_assert_not(PyBool_Check(Py_None));
    /* incref and decref of an immortal object, from its creator or not,
     * change nothing in its header */
    PyObject *singles[] = { Py_None, Py_NotImplemented, Py_True, Py_False,
                            (PyObject *)&PyType_Type, (PyObject *)&PyBaseObject_Type };
    for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++) {
        header_bytes before = header_of(singles[i]);
        for (int k = 0; k < 1000; k++) {
            Py_INCREF(singles[i]);
        }
        for (int k = 0; k < 1000; k++) {
            Py_DECREF(singles[i]);
        }
        cr_assert(same_header(before, header_of(singles[i])), "header of %s changed",
                  Py_TYPE(singles[i])->tp_name);
        cr_assert_eq(Py_REFCNT(singles[i]), _Py_IMMORTAL_REFCNT);
    }
}

Test(typeobject, bool_from_long)
{
    cr_assert_eq(PyBool_FromLong(0), Py_False);
    cr_assert_eq(PyBool_FromLong(1), Py_True);
    cr_assert_eq(PyBool_FromLong(-7), Py_True);
    cr_assert_eq(PyBool_FromLong(LONG_MIN), Py_True);
    cr_assert(Py_IsTrue(PyBool_FromLong(42)));
    cr_assert(Py_IsFalse(PyBool_FromLong(0)));
    cr_assert(Py_IsNone(Py_None));
    cr_assert_not(Py_IsNone(Py_False));
}

static void
dealloc_none(void)
{
    Py_TYPE(Py_None)->tp_dealloc(Py_None);
}

static void
dealloc_type(void)
{
    PyType_Type.tp_dealloc((PyObject *)&PyBaseObject_Type);
}

Test(typeobject, deallocating_a_singleton_or_type_is_fatal)
{
    test_expect_fatal(dealloc_none, "_Py_Dealloc: deallocating the NoneType singleton");
    test_expect_fatal(dealloc_type, "type 'object' deallocated: type objects are immortal");
}

/* ---- PyType_Ready ----------------------------------------------------------- */

static PyTypeObject plain_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.Plain",
    .tp_basicsize = sizeof(plain_object),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
};

/* inherits everything from plain_type, basicsize included */
static PyTypeObject plain_sub_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.PlainSub",
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_base = &plain_type,
};

Test(typeobject, ready_inherits_from_object_and_base)
{
    cr_assert_not(plain_sub_type.tp_flags & Py_TPFLAGS_READY);
    /* readying the subtype readies its base first */
    cr_assert_eq(PyType_Ready(&plain_sub_type), 0);
    cr_assert_null(PyErr_Occurred());
    cr_assert(plain_type.tp_flags & Py_TPFLAGS_READY);
    cr_assert(plain_sub_type.tp_flags & Py_TPFLAGS_READY);
    cr_assert_not(plain_sub_type.tp_flags & Py_TPFLAGS_READYING);
    cr_assert_eq(plain_type.tp_base, &PyBaseObject_Type);
    cr_assert_eq(Py_TYPE(&plain_type), &PyType_Type, "ob_type set from the base's type");
    cr_assert_eq(plain_sub_type.tp_basicsize, (Py_ssize_t)sizeof(plain_object));
    cr_assert_eq(plain_type.tp_dealloc, PyBaseObject_Type.tp_dealloc);
    cr_assert_eq(plain_type.tp_alloc, PyType_GenericAlloc);
    cr_assert_eq(plain_type.tp_free, PyObject_Free);
    cr_assert_eq(plain_type.tp_hash, PyBaseObject_Type.tp_hash);
    cr_assert_eq(plain_type.tp_richcompare, PyBaseObject_Type.tp_richcompare);
    cr_assert_eq(plain_sub_type.tp_new, PyType_GenericNew, "tp_new inherited from the base");
    cr_assert_eq(plain_sub_type.tp_init, PyBaseObject_Type.tp_init);
    /* PyVarObject_HEAD_INIT makes static types immortal */
    cr_assert_eq(Py_REFCNT(&plain_type), _Py_IMMORTAL_REFCNT);
    /* a second call changes nothing */
    unsigned long flags = plain_sub_type.tp_flags;
    cr_assert_eq(PyType_Ready(&plain_sub_type), 0);
    cr_assert_eq(plain_sub_type.tp_flags, flags);
    cr_assert_eq(PyType_GetFlags(&plain_sub_type), flags);
}

/* Declared without any header initialiser (refcount fields zero). */
static PyTypeObject no_header_type;

Test(typeobject, ready_makes_a_static_type_immortal)
{
    no_header_type.tp_name = "test.NoHeader";
    no_header_type.tp_basicsize = sizeof(PyObject);
    cr_assert_neq(Py_REFCNT(&no_header_type), _Py_IMMORTAL_REFCNT);
    cr_assert_eq(PyType_Ready(&no_header_type), 0);
    cr_assert_eq(Py_REFCNT(&no_header_type), _Py_IMMORTAL_REFCNT);
    cr_assert_eq(Py_TYPE(&no_header_type), &PyType_Type);
    /* base object and no tp_new: a static type that cannot be instantiated */
    cr_assert_null(no_header_type.tp_new);
    cr_assert(no_header_type.tp_flags & Py_TPFLAGS_DISALLOW_INSTANTIATION);
    PyObject *r = PyType_Type.tp_call((PyObject *)&no_header_type, NULL, NULL);
    cr_assert_null(r);
    test_expect_error(PyExc_TypeError, "cannot create 'test.NoHeader' instances");
}

typedef struct {
    PyObject_HEAD
    PyObject *ref;
} gc_object;

static int
gc_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((gc_object *)self)->ref);
    return 0;
}

static PyTypeObject gc_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.GC",
    .tp_basicsize = sizeof(gc_object),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_traverse = gc_traverse,
    .tp_new = PyType_GenericNew,
};

static PyTypeObject gc_sub_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.GCSub",
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_base = &gc_type,
};

Test(typeobject, ready_gc_types)
{
    cr_assert_eq(PyType_Ready(&gc_sub_type), 0);
    cr_assert_eq(gc_type.tp_free, PyObject_GC_Del, "a GC type under object frees with GC_Del");
    cr_assert(gc_sub_type.tp_flags & Py_TPFLAGS_HAVE_GC, "HAVE_GC inherited");
    cr_assert_eq(gc_sub_type.tp_traverse, gc_traverse);
    cr_assert_eq(gc_sub_type.tp_free, PyObject_GC_Del);
}

static PyTypeObject small_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.Small",
    .tp_basicsize = sizeof(PyObject) - 8,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};
static PyTypeObject smaller_than_base_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.SmallerThanBase",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_base = &plain_type,
};
static PyTypeObject nameless_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_basicsize = sizeof(PyObject),
};
static PyTypeObject gc_no_traverse_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.GCNoTraverse",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
};
static PyTypeObject cycle_a_type, cycle_b_type;
static PyTypeObject cycle_a_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.CycleA",
    .tp_base = &cycle_b_type,
};
static PyTypeObject cycle_b_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.CycleB",
    .tp_base = &cycle_a_type,
};
static int
nongc_traverse(PyObject *self, visitproc visit, void *arg)
{
    (void)self;
    (void)visit;
    (void)arg;
    return 0;
}
static PyTypeObject nongc_under_gc_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.NonGCUnderGC",
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_traverse = nongc_traverse,
    .tp_base = &gc_type,
};

Test(typeobject, ready_errors)
{
    char want[200];
    cr_assert_eq(PyType_Ready(&small_type), -1);
    snprintf(want, sizeof want, "type 'test.Small': tp_basicsize %zu is smaller than that of "
             "its base 'object' (%zu)", sizeof(PyObject) - 8, sizeof(PyObject));
    test_expect_error(PyExc_TypeError, want);
    cr_assert_eq(PyType_Ready(&smaller_than_base_type), -1);
    snprintf(want, sizeof want, "type 'test.SmallerThanBase': tp_basicsize %zu is smaller "
             "than that of its base 'test.Plain' (%zu)", sizeof(PyObject), sizeof(plain_object));
    test_expect_error(PyExc_TypeError, want);
    cr_assert_not(smaller_than_base_type.tp_flags & (Py_TPFLAGS_READY | Py_TPFLAGS_READYING));
    cr_assert_eq(PyType_Ready(&nameless_type), -1);
    test_expect_error(PyExc_SystemError, "does not define tp_name");
    cr_assert_eq(PyType_Ready(&gc_no_traverse_type), -1);
    test_expect_error(PyExc_SystemError, "type 'test.GCNoTraverse' has Py_TPFLAGS_HAVE_GC but no "
                                    "tp_traverse");
    cr_assert_eq(PyType_Ready(&cycle_a_type), -1);
    test_expect_error(PyExc_SystemError, "(a tp_base cycle)");
    cr_assert_not(cycle_a_type.tp_flags & Py_TPFLAGS_READYING);
    cr_assert_not(cycle_b_type.tp_flags & Py_TPFLAGS_READYING);
    cr_assert_eq(PyType_Ready(&nongc_under_gc_type), -1);
    test_expect_error(PyExc_SystemError, "its base 'test.GC' is a GC type");
    cr_assert_eq(PyType_Ready(NULL), -1);
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
}

/* 8 threads ready one type at once: every call succeeds, the work is done
 * once (a type's flags are written by one thread at a time; TSan checks). */
static PyTypeObject contended_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.Contended",
    .tp_basicsize = sizeof(plain_object),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_base = &plain_type,
};

enum { READY_THREADS = 8 };
static atomic_int ready_go, ready_ok, ready_failed;

static void *
ready_worker(void *arg)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    Py_BEGIN_ALLOW_THREADS
    int64_t deadline = test_now_ns() + 10 * 1000000000LL * FT_TIMEOUT_SCALE;
    while (!atomic_load(&ready_go) && test_now_ns() < deadline) {
    }
    Py_END_ALLOW_THREADS
    if (PyType_Ready(&contended_type) == 0 && (contended_type.tp_flags & Py_TPFLAGS_READY) &&
        contended_type.tp_free == PyObject_Free) {
        atomic_fetch_add(&ready_ok, 1);
    }
    else {
        atomic_fetch_add(&ready_failed, 1);
    }
    PyGILState_Release(g);
    return NULL;
}

Test(typeobject, ready_from_many_threads_at_once)
{
    PyThreadState *me = PyEval_SaveThread();
    pthread_t t[READY_THREADS];
    for (int i = 0; i < READY_THREADS; i++) {
        t[i] = test_start_thread(ready_worker, NULL);
    }
    atomic_store(&ready_go, 1);
    for (int i = 0; i < READY_THREADS; i++) {
        test_join_thread(t[i]);
    }
    PyEval_RestoreThread(me);
    cr_assert_eq(atomic_load(&ready_ok), READY_THREADS, "failed: %d", atomic_load(&ready_failed));
    cr_assert(contended_type.tp_flags & Py_TPFLAGS_READY);
}

/* ---- queries ------------------------------------------------------------------ */

Test(typeobject, is_subtype_walks_the_base_chain)
{
    cr_assert_eq(PyType_Ready(&plain_sub_type), 0);
    cr_assert(PyType_IsSubtype(&plain_sub_type, &plain_sub_type));
    cr_assert(PyType_IsSubtype(&plain_sub_type, &plain_type));
    cr_assert(PyType_IsSubtype(&plain_sub_type, &PyBaseObject_Type));
    cr_assert_not(PyType_IsSubtype(&plain_type, &plain_sub_type));
    cr_assert_not(PyType_IsSubtype(&plain_type, &PyBool_Type));
    cr_assert(PyType_IsSubtype(&PyBool_Type, &PyBaseObject_Type));
    cr_assert(PyType_IsSubtype(&PyType_Type, &PyBaseObject_Type));
    /* a type not readied yet still derives from object */
    static PyTypeObject unready = { PyVarObject_HEAD_INIT(NULL, 0) .tp_name = "test.Unready" };
    cr_assert(PyType_IsSubtype(&unready, &PyBaseObject_Type));
    cr_assert_not(PyType_IsSubtype(&unready, &plain_type));
    PyObject *o = PyType_GenericAlloc(&plain_sub_type, 0);
    cr_assert_not_null(o);
    cr_assert(PyObject_TypeCheck(o, &plain_type));
    cr_assert_not(PyObject_TypeCheck(o, &PyBool_Type));
    Py_DECREF(o);
}

static PyObject *
some_repr(PyObject *self)
{
    (void)self;
    return PyUnicode_FromString("some repr");
}

Test(typeobject, get_slot)
{
    cr_assert_eq(PyType_Ready(&plain_type), 0);
    cr_assert_eq(PyType_GetSlot(&plain_type, Py_tp_alloc), TEST_FP(PyType_GenericAlloc));
    cr_assert_eq(PyType_GetSlot(&plain_type, Py_tp_free), TEST_FP(PyObject_Free));
    cr_assert_eq(PyType_GetSlot(&plain_type, Py_tp_base), (void *)&PyBaseObject_Type);
    cr_assert_eq(PyType_GetSlot(&PyBaseObject_Type, Py_tp_doc),
                 (void *)PyBaseObject_Type.tp_doc);
    cr_assert_null(PyType_GetSlot(&plain_type, Py_tp_repr), "object has no tp_repr yet");
    cr_assert_null(PyErr_Occurred());
    /* Py_tp_methods (64): a CPython slot ftrt's types lack: NULL, no error */
    cr_assert_null(PyType_GetSlot(&plain_type, 64));
    cr_assert_null(PyErr_Occurred());
    cr_assert_null(PyType_GetSlot(&plain_type, 0));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    cr_assert_null(PyType_GetSlot(&plain_type, 1000));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    PyType_Slot slots[] = { { Py_tp_repr, TEST_FP(some_repr) }, { 0, NULL } };
    PyType_Spec spec = { "test.WithRepr", 0, 0, Py_TPFLAGS_DEFAULT, slots };
    PyObject *t = PyType_FromSpec(&spec);
    cr_assert_not_null(t);
    cr_assert_eq(PyType_GetSlot((PyTypeObject *)t, Py_tp_repr), TEST_FP(some_repr));
}

/* ---- method suites and CPython's layout ------------------------------------------- */

static Py_ssize_t seq_len_3(PyObject *self) { (void)self; return 3; }
static Py_ssize_t map_len_0(PyObject *self) { (void)self; return 0; }
static int bool_false(PyObject *self) { (void)self; return 0; }
static PyObject *
item_self(PyObject *self, Py_ssize_t i)
{
    (void)i;
    return Py_NewRef(self);
}

Test(typeobject, from_spec_fills_the_method_suites)
{
    PyType_Slot slots[] = {
        { Py_sq_length, TEST_FP(seq_len_3) },
        { Py_sq_item, TEST_FP(item_self) },
        { Py_nb_bool, TEST_FP(bool_false) },
        { 0, NULL },
    };
    PyType_Spec spec = { "test.Suites", sizeof(plain_object), 0,
                         Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots };
    PyTypeObject *t = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(t);
    cr_assert_not_null(t->tp_as_sequence, "a heap type has its suites");
    cr_assert_eq(TEST_FP(t->tp_as_sequence->sq_length), TEST_FP(seq_len_3));
    cr_assert_eq(TEST_FP(t->tp_as_sequence->sq_item), TEST_FP(item_self));
    cr_assert_eq(TEST_FP(t->tp_as_number->nb_bool), TEST_FP(bool_false));
    cr_assert_null(t->tp_as_mapping->mp_length);
    cr_assert_eq(PyType_GetSlot(t, Py_sq_length), TEST_FP(seq_len_3));
    cr_assert_eq(PyType_GetSlot(t, Py_nb_bool), TEST_FP(bool_false));
    cr_assert_null(PyType_GetSlot(t, Py_mp_subscript));
    cr_assert_null(PyErr_Occurred());

    /* a subtype takes the slots it leaves empty from its base, per slot */
    PyType_Slot sub_slots[] = { { Py_mp_length, TEST_FP(map_len_0) }, { Py_tp_base, t }, { 0, NULL } };
    PyType_Spec sub_spec = { "test.SubSuites", sizeof(plain_object), 0, Py_TPFLAGS_DEFAULT,
                             sub_slots };
    PyTypeObject *sub = (PyTypeObject *)PyType_FromSpec(&sub_spec);
    cr_assert_not_null(sub);
    cr_assert_eq(TEST_FP(sub->tp_as_sequence->sq_item), TEST_FP(item_self), "inherited per slot");
    cr_assert_eq(TEST_FP(sub->tp_as_number->nb_bool), TEST_FP(bool_false));
    cr_assert_eq(TEST_FP(sub->tp_as_mapping->mp_length), TEST_FP(map_len_0));
    cr_assert_null(t->tp_as_mapping->mp_length, "the base's suite is not written");
}

/* A type written the pre-C99 way, positionally, as much extension code is:
 * it compiles only if the members come in CPython's order.  (-Wextra warns
 * about the members left out, exactly as it does against CPython.) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static PySequenceMethods positional_seq = {
    seq_len_3,          /* sq_length */
    0,                  /* sq_concat */
    0,                  /* sq_repeat */
    item_self,          /* sq_item */
};
static PyTypeObject positional_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    "test.Positional",          /* tp_name */
    sizeof(plain_object),       /* tp_basicsize */
    0,                          /* tp_itemsize */
    0,                          /* tp_dealloc */
    0,                          /* tp_vectorcall_offset */
    0,                          /* tp_getattr */
    0,                          /* tp_setattr */
    0,                          /* tp_as_async */
    some_repr,                  /* tp_repr */
    0,                          /* tp_as_number */
    &positional_seq,            /* tp_as_sequence */
    0,                          /* tp_as_mapping */
    0,                          /* tp_hash */
    0,                          /* tp_call */
    0,                          /* tp_str */
    0,                          /* tp_getattro */
    0,                          /* tp_setattro */
    0,                          /* tp_as_buffer */
    Py_TPFLAGS_DEFAULT,         /* tp_flags */
    "positional doc",           /* tp_doc */
};
#pragma GCC diagnostic pop

Test(typeobject, positional_initialiser_fills_cpythons_slots)
{
    cr_assert_eq(PyType_Ready(&positional_type), 0);
    cr_assert_str_eq(positional_type.tp_name, "test.Positional");
    cr_assert_eq(positional_type.tp_basicsize, (Py_ssize_t)sizeof(plain_object));
    cr_assert_eq(TEST_FP(positional_type.tp_repr), TEST_FP(some_repr));
    cr_assert_str_eq(positional_type.tp_doc, "positional doc");
    cr_assert_eq(PyType_GetSlot(&positional_type, Py_sq_item), TEST_FP(item_self));
    cr_assert_eq(PyType_GetSlot(&positional_type, Py_tp_repr), TEST_FP(some_repr));
    PyObject *o = PyType_GenericAlloc(&positional_type, 0);
    cr_assert_not_null(o);
    cr_assert_eq(ft_object_is_true(o), 1, "sq_length 3: true");
    Py_DECREF(o);
}

/* ---- PyType_GenericAlloc / GenericNew -------------------------------------------- */

typedef struct {
    PyObject_VAR_HEAD
    long items[1];
} var_object;

static PyTypeObject var_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "test.Var",
    .tp_basicsize = offsetof(var_object, items),
    .tp_itemsize = sizeof(long),
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

static bool
all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        if (c[i]) {
            return false;
        }
    }
    return true;
}

Test(typeobject, generic_alloc_zeroes_and_initialises)
{
    cr_assert_eq(PyType_Ready(&plain_type), 0);
    cr_assert_eq(PyType_Ready(&var_type), 0);
    cr_assert_eq(PyType_Ready(&gc_type), 0);
    for (int round = 0; round < 50; round++) {
        plain_object *p = (plain_object *)PyType_GenericAlloc(&plain_type, 0);
        cr_assert_not_null(p);
        cr_assert_eq(Py_TYPE(p), &plain_type);
        cr_assert_eq(Py_REFCNT(p), 1);
        cr_assert(all_zero(p->payload, sizeof p->payload));
        p->payload[0] = 0x5555;   /* dirty the memory for the next round's reuse */
        Py_DECREF(p);

        var_object *v = (var_object *)PyType_GenericAlloc(&var_type, 100);
        cr_assert_not_null(v);
        cr_assert_eq(Py_SIZE(v), 100);
        cr_assert(all_zero(v->items, 101 * sizeof(long)), "items (and the spare one) zeroed");
        memset(v->items, 0xAB, 101 * sizeof(long));
        Py_DECREF(v);

        gc_object *g = (gc_object *)PyType_GenericAlloc(&gc_type, 0);
        cr_assert_not_null(g);
        cr_assert_null(g->ref);
        cr_assert(PyObject_GC_IsTracked((PyObject *)g), "GenericAlloc tracks GC objects");
        g->ref = Py_NewRef(Py_None);
        PyObject_GC_UnTrack(g);
        Py_CLEAR(g->ref);
        PyObject_GC_Del(g);
    }
    PyObject *n = PyType_GenericNew(&plain_type, NULL, NULL);
    cr_assert_not_null(n);
    cr_assert_eq(Py_TYPE(n), &plain_type);
    Py_DECREF(n);
    cr_assert_null(PyType_GenericAlloc(&var_type, -1));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    cr_assert_null(PyType_GenericAlloc(&var_type, PY_SSIZE_T_MAX / 4));
    test_expect_error(PyExc_MemoryError, "");
}

Test(typeobject, generic_alloc_out_of_memory)
{
    cr_assert_eq(PyType_Ready(&plain_type), 0);
    cr_assert_eq(PyType_Ready(&gc_type), 0);
    cr_assert_eq(PyType_Ready(&var_type), 0);
    PyTypeObject *types[] = { &plain_type, &gc_type, &var_type };
    for (size_t i = 0; i < 3; i++) {
        /* fail the 1st, 2nd, ... allocation until one call needs no more */
        bool succeeded = false;
        for (long n = 1; n < 20 && !succeeded; n++) {
            ft_alloc_fail_after(n);
            PyObject *o = PyType_GenericAlloc(types[i], 3);
            ft_alloc_fail_after(0);
            if (o == NULL) {
                test_expect_error(PyExc_MemoryError, "");
                continue;
            }
            cr_assert_null(PyErr_Occurred());
            succeeded = true;
            if (PyObject_IS_GC(o)) {
                PyObject_GC_UnTrack(o);
                PyObject_GC_Del(o);
            }
            else {
                Py_DECREF(o);
            }
        }
        cr_assert(succeeded, "%s: still failing", types[i]->tp_name);
    }
}

/* ---- heap types ----------------------------------------------------------------- */

static atomic_int finalized;
static PyObject *resurrected;   /* set by resurrecting_finalize */
static atomic_int resurrect;

static void
counting_finalize(PyObject *self)
{
    atomic_fetch_add(&finalized, 1);
    if (atomic_load(&resurrect)) {
        resurrected = Py_NewRef(self);
    }
}

Test(typeobject, from_spec_builds_an_immortal_heap_type)
{
    char name[] = "testmod.Heap";
    char doc[] = "A heap type.";
    PyType_Slot slots[] = {
        { Py_tp_doc, doc },
        { Py_tp_free, TEST_FP(counting_free) },
        { Py_tp_repr, TEST_FP(some_repr) },
        { 0, NULL },
    };
    PyType_Spec spec = { name, sizeof(plain_object), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
                         slots };
    PyInterpreterState *interp = PyInterpreterState_Get();
    Py_ssize_t before = ft_heap_types_count(interp);
    PyObject *t = PyType_FromSpec(&spec);
    cr_assert_not_null(t);
    cr_assert_null(PyErr_Occurred());
    PyTypeObject *tp = (PyTypeObject *)t;
    memset(name, 'X', sizeof name - 1);   /* the type keeps its own copies */
    memset(doc, 'Y', sizeof doc - 1);
    cr_assert_str_eq(tp->tp_name, "testmod.Heap");
    cr_assert_str_eq(tp->tp_doc, "A heap type.");
    cr_assert(PyType_Check(t));
    cr_assert_eq(Py_TYPE(t), &PyType_Type);
    cr_assert(tp->tp_flags & Py_TPFLAGS_HEAPTYPE);
    cr_assert(tp->tp_flags & Py_TPFLAGS_READY);
    cr_assert_eq(tp->tp_base, &PyBaseObject_Type);
    cr_assert_eq(tp->tp_basicsize, (Py_ssize_t)sizeof(plain_object));
    cr_assert_eq(tp->tp_free, counting_free);
    cr_assert_eq(tp->tp_repr, some_repr);
    cr_assert_eq(tp->tp_new, PyBaseObject_Type.tp_new, "heap types inherit object's tp_new");
    cr_assert_eq(Py_REFCNT(t), _Py_IMMORTAL_REFCNT, "heap types are immortal");
    cr_assert_eq(ft_heap_types_count(interp), before + 1);
    cr_assert(PyCallable_Check(t));

    /* instances: the default dealloc ends in tp_free; the type's header is
     * untouched by every instance's incref and decref of it */
    header_bytes h = header_of(t);
    atomic_store(&plain_frees, 0);
    for (int i = 0; i < 100; i++) {
        PyObject *o = PyType_Type.tp_call(t, NULL, NULL);
        cr_assert_not_null(o);
        cr_assert_eq(Py_TYPE(o), tp);
        Py_DECREF(o);
    }
    cr_assert_eq(atomic_load(&plain_frees), 100);
    cr_assert(same_header(h, header_of(t)));
    Py_DECREF(t);   /* a no-op: immortal until finalization */
    cr_assert_eq(Py_REFCNT(t), _Py_IMMORTAL_REFCNT);

    /* a heap subtype of a heap type, with a zero basicsize: inherits it */
    PyType_Slot sub_slots[] = { { Py_tp_base, t }, { 0, NULL } };
    PyType_Spec sub_spec = { "testmod.HeapSub", 0, 0, Py_TPFLAGS_DEFAULT, sub_slots };
    PyObject *sub = PyType_FromSpec(&sub_spec);
    cr_assert_not_null(sub);
    cr_assert_eq(((PyTypeObject *)sub)->tp_base, tp);
    cr_assert_eq(((PyTypeObject *)sub)->tp_basicsize, (Py_ssize_t)sizeof(plain_object));
    cr_assert(PyType_IsSubtype((PyTypeObject *)sub, tp));
    PyObject *so = PyType_GenericAlloc((PyTypeObject *)sub, 0);
    cr_assert_not_null(so);
    atomic_store(&plain_frees, 0);
    Py_DECREF(so);
    cr_assert_eq(atomic_load(&plain_frees), 1, "sub -> Heap's dealloc -> inherited tp_free");
    /* the same through the bases argument */
    PyObject *sub2 = PyType_FromSpecWithBases(&sub_spec, t);
    cr_assert_not_null(sub2);
    cr_assert_eq(((PyTypeObject *)sub2)->tp_base, tp);
    /* and through a one-element tuple of bases, CPython's usual form */
    PyObject *bases = PyTuple_Pack(1, t);
    cr_assert_not_null(bases);
    PyObject *sub3 = PyType_FromSpecWithBases(&sub_spec, bases);
    Py_DECREF(bases);
    cr_assert_not_null(sub3);
    cr_assert_eq(((PyTypeObject *)sub3)->tp_base, tp);
    cr_assert_eq(ft_heap_types_count(interp), before + 4);
}

Test(typeobject, heap_type_finalizer_runs_once_and_may_resurrect)
{
    PyType_Slot slots[] = {
        { Py_tp_finalize, TEST_FP(counting_finalize) },
        { Py_tp_traverse, TEST_FP(gc_traverse) },
        { Py_tp_free, TEST_FP(counting_gc_free) },
        { 0, NULL },
    };
    PyType_Spec spec = { "testmod.Finalized", sizeof(gc_object), 0,
                         Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, slots };
    PyObject *t = PyType_FromSpec(&spec);
    cr_assert_not_null(t);
    PyTypeObject *tp = (PyTypeObject *)t;

    /* plain death: finalized once, then freed */
    atomic_store(&finalized, 0);
    atomic_store(&gc_frees, 0);
    PyObject *o = tp->tp_alloc(tp, 0);
    cr_assert_not_null(o);
    cr_assert(PyObject_GC_IsTracked(o));
    Py_DECREF(o);
    cr_assert_eq(atomic_load(&finalized), 1);
    cr_assert_eq(atomic_load(&gc_frees), 1);

    /* the finalizer resurrects: not freed; the next death does not run
     * the finalizer again (a GC object is finalized once) */
    atomic_store(&finalized, 0);
    atomic_store(&gc_frees, 0);
    atomic_store(&resurrect, 1);
    o = tp->tp_alloc(tp, 0);
    cr_assert_not_null(o);
    Py_DECREF(o);
    cr_assert_eq(atomic_load(&finalized), 1);
    cr_assert_eq(atomic_load(&gc_frees), 0, "a resurrected object is not freed");
    cr_assert_eq(resurrected, o);
    cr_assert_eq(Py_REFCNT(o), 1);
    cr_assert(PyObject_GC_IsFinalized(o));
    atomic_store(&resurrect, 0);
    Py_CLEAR(resurrected);
    cr_assert_eq(atomic_load(&finalized), 1, "finalized once only");
    cr_assert_eq(atomic_load(&gc_frees), 1);
}

Test(typeobject, non_gc_finalizer_runs_on_each_death)
{
    PyType_Slot slots[] = {
        { Py_tp_finalize, TEST_FP(counting_finalize) },
        { Py_tp_free, TEST_FP(counting_free) },
        { 0, NULL },
    };
    PyType_Spec spec = { "testmod.FinalizedPlain", sizeof(plain_object), 0,
                         Py_TPFLAGS_DEFAULT, slots };
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(tp);
    atomic_store(&finalized, 0);
    atomic_store(&plain_frees, 0);
    atomic_store(&resurrect, 1);
    PyObject *o = tp->tp_alloc(tp, 0);
    cr_assert_not_null(o);
    Py_DECREF(o);
    cr_assert_eq(resurrected, o);
    cr_assert_eq(atomic_load(&plain_frees), 0);
    atomic_store(&resurrect, 0);
    Py_CLEAR(resurrected);
    cr_assert_eq(atomic_load(&finalized), 2, "CPython calls it again for a non-GC object");
    cr_assert_eq(atomic_load(&plain_frees), 1);
}

Test(typeobject, from_spec_errors)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    Py_ssize_t before = ft_heap_types_count(interp);
    PyType_Slot bad_id[] = { { 999, NULL }, { 0, NULL } };
    PyType_Spec spec = { "testmod.Bad", 0, 0, Py_TPFLAGS_DEFAULT, bad_id };
    cr_assert_null(PyType_FromSpec(&spec));
    test_expect_error(PyExc_RuntimeError, "invalid slot offset");
    PyType_Slot neg_id[] = { { -3, NULL }, { 0, NULL } };
    spec.slots = neg_id;
    cr_assert_null(PyType_FromSpec(&spec));
    test_expect_error(PyExc_RuntimeError, "invalid slot offset");
    PyType_Slot unsupported[] = { { 64 /* Py_tp_methods */, NULL }, { 0, NULL } };
    spec.slots = unsupported;
    cr_assert_null(PyType_FromSpec(&spec));
    test_expect_error(PyExc_SystemError, "type 'testmod.Bad': slot 64 is not supported by ftrt yet");
    PyType_Slot bool_base[] = { { Py_tp_base, &PyBool_Type }, { 0, NULL } };
    spec.slots = bool_base;
    cr_assert_null(PyType_FromSpec(&spec));
    test_expect_error(PyExc_TypeError, "type 'bool' is not an acceptable base type");
    cr_assert_null(PyType_FromSpecWithBases(&spec, Py_None));
    test_expect_error(PyExc_SystemError, "bases must be a type or a tuple of exactly one type");
    PyObject *two = PyTuple_Pack(2, (PyObject *)&PyBaseObject_Type, (PyObject *)&PyLong_Type);
    cr_assert_not_null(two);
    cr_assert_null(PyType_FromSpecWithBases(&spec, two));
    test_expect_error(PyExc_SystemError, "no multiple inheritance");
    Py_DECREF(two);
    PyType_Slot none[] = { { 0, NULL } };
    spec.slots = none;
    spec.basicsize = 8;
    cr_assert_null(PyType_FromSpec(&spec));
    test_expect_error(PyExc_TypeError, "type 'testmod.Bad': tp_basicsize 8 is smaller than that of "
                                  "its base 'object'");
    spec.basicsize = -8;
    cr_assert_null(PyType_FromSpec(&spec));
    test_expect_error(PyExc_SystemError, "negative sizes");
    cr_assert_null(PyType_FromSpec(NULL));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    cr_assert_eq(ft_heap_types_count(interp), before, "a failed spec leaves no type behind");
}

Test(typeobject, from_spec_out_of_memory_at_every_allocation)
{
    PyType_Slot slots[] = { { Py_tp_doc, "documented" }, { 0, NULL } };
    PyType_Spec spec = { "testmod.OOM", 0, 0, Py_TPFLAGS_DEFAULT, slots };
    PyInterpreterState *interp = PyInterpreterState_Get();
    Py_ssize_t before = ft_heap_types_count(interp);
    int failures = 0;
    PyObject *t = NULL;
    for (long n = 1; n < 50 && t == NULL; n++) {
        ft_alloc_fail_after(n);
        t = PyType_FromSpec(&spec);
        ft_alloc_fail_after(0);
        if (t == NULL) {
            test_expect_error(PyExc_MemoryError, "");
            cr_assert_eq(ft_heap_types_count(interp), before);
            failures++;
        }
    }
    cr_assert_not_null(t, "PyType_FromSpec kept failing");
    cr_assert_geq(failures, 2, "the type and its doc are two allocations");
    cr_assert_str_eq(((PyTypeObject *)t)->tp_doc, "documented");
    cr_assert_eq(ft_heap_types_count(interp), before + 1);
}

static PyObject *
fatal_from_spec_detached_body(void)
{
    PyType_Slot none[] = { { 0, NULL } };
    PyType_Spec spec = { "testmod.Detached", 0, 0, Py_TPFLAGS_DEFAULT, none };
    return PyType_FromSpec(&spec);
}

static void
from_spec_detached(void)
{
    (void)PyEval_SaveThread();
    (void)fatal_from_spec_detached_body();
}

Test(typeobject, from_spec_without_thread_state_is_fatal)
{
    test_expect_fatal(from_spec_detached,
                      "Fatal Python error: PyType_FromSpec: "
                      "called without an attached thread state");
}

Test(typeobject, from_spec_without_thread_state_aborts, .signal = SIGABRT)
{
    from_spec_detached();
}

/* ---- heap types under 8 threads --------------------------------------------------- */

enum { HT_THREADS = 8, HT_OBJECTS = 2000 };

static PyTypeObject *ht_plain, *ht_gc;
static PyObject *ht_objs[HT_THREADS][2 * HT_OBJECTS];
static atomic_int ht_allocated, ht_bad;

static void *
heap_type_worker(void *arg)
{
    int i = (int)(intptr_t)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    /* phase 1: allocate, and free half again at once */
    for (int k = 0; k < HT_OBJECTS; k++) {
        PyObject *a = ht_plain->tp_alloc(ht_plain, 0);
        PyObject *b = ht_gc->tp_alloc(ht_gc, 0);
        if (a == NULL || b == NULL || Py_TYPE(a) != ht_plain || Py_TYPE(b) != ht_gc) {
            atomic_fetch_add(&ht_bad, 1);
            PyErr_Clear();
            Py_XDECREF(a);
            Py_XDECREF(b);
            ht_objs[i][2 * k] = ht_objs[i][2 * k + 1] = NULL;
            continue;
        }
        ht_objs[i][2 * k] = a;
        ht_objs[i][2 * k + 1] = b;
        PyObject *c = ht_plain->tp_alloc(ht_plain, 0);
        PyObject *d = ht_gc->tp_alloc(ht_gc, 0);
        Py_XDECREF(c);
        Py_XDECREF(d);
        if (c == NULL || d == NULL) {
            atomic_fetch_add(&ht_bad, 1);
        }
    }
    atomic_fetch_add(&ht_allocated, 1);
    /* phase 2: wait (detached) for everyone, then drop the neighbour's */
    bool all;
    Py_BEGIN_ALLOW_THREADS
    all = TEST_POLL_UNTIL(atomic_load(&ht_allocated) == HT_THREADS, 20000);
    Py_END_ALLOW_THREADS
    if (!all) {
        atomic_fetch_add(&ht_bad, 1);
    }
    int from = (i + 1) % HT_THREADS;
    for (int k = 0; k < 2 * HT_OBJECTS; k++) {
        Py_XDECREF(ht_objs[from][k]);
    }
    PyGILState_Release(g);
    return NULL;
}

Test(typeobject, heap_types_do_not_contend_under_8_threads, .timeout = FT_TIMEOUT(60))
{
    PyType_Slot plain_slots[] = { { Py_tp_free, TEST_FP(counting_free) }, { 0, NULL } };
    PyType_Spec plain_spec = { "testmod.MTPlain", sizeof(plain_object), 0, Py_TPFLAGS_DEFAULT,
                               plain_slots };
    PyType_Slot gc_slots[] = { { Py_tp_traverse, TEST_FP(gc_traverse) },
                               { Py_tp_free, TEST_FP(counting_gc_free) }, { 0, NULL } };
    PyType_Spec gc_spec = { "testmod.MTGC", sizeof(gc_object), 0,
                            Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, gc_slots };
    ht_plain = (PyTypeObject *)PyType_FromSpec(&plain_spec);
    ht_gc = (PyTypeObject *)PyType_FromSpec(&gc_spec);
    cr_assert_not_null(ht_plain);
    cr_assert_not_null(ht_gc);
    header_bytes hp = header_of((PyObject *)ht_plain), hg = header_of((PyObject *)ht_gc);
    atomic_store(&plain_frees, 0);
    atomic_store(&gc_frees, 0);

    PyThreadState *me = PyEval_SaveThread();
    pthread_t t[HT_THREADS];
    for (int i = 0; i < HT_THREADS; i++) {
        t[i] = test_start_thread(heap_type_worker, (void *)(intptr_t)i);
    }
    for (int i = 0; i < HT_THREADS; i++) {
        test_join_thread(t[i]);
    }
    PyEval_RestoreThread(me);
    cr_assert_eq(atomic_load(&ht_bad), 0);
    long want = 2L * HT_THREADS * HT_OBJECTS;
    /* frees by a non-owner may complete at the owner's next safe point */
    bool all = TEST_POLL_UNTIL(atomic_load(&plain_frees) == want && atomic_load(&gc_frees) == want,
                               5000);
    cr_assert(all, "frees: plain %ld, gc %ld, expected %ld each", atomic_load(&plain_frees),
              atomic_load(&gc_frees), want);
    /* no instance wrote to its type's reference count */
    cr_assert(same_header(hp, header_of((PyObject *)ht_plain)));
    cr_assert(same_header(hg, header_of((PyObject *)ht_gc)));
    cr_assert_eq(Py_REFCNT(ht_plain), _Py_IMMORTAL_REFCNT);
    cr_assert_eq(Py_REFCNT(ht_gc), _Py_IMMORTAL_REFCNT);
}

/* ---- finalization frees heap types -------------------------------------------------- */

static atomic_int type_creates, type_destroys;
static PyObject *traced_type;

static int
type_tracer(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    if (op != NULL && op == traced_type) {   /* NULL: TRACKER_REMOVED */
        atomic_fetch_add(event == PyRefTracer_CREATE ? &type_creates : &type_destroys, 1);
    }
    return 0;
}

static int
trace_type_creation(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    /* the type is created before FromSpec returns: recognise it by name */
    if (event == PyRefTracer_CREATE && Py_TYPE(op) == &PyType_Type &&
        strcmp(((PyTypeObject *)op)->tp_name, "testmod.Traced") == 0) {
        traced_type = op;
        atomic_fetch_add(&type_creates, 1);
    }
    else if (op != NULL && op == traced_type && event == PyRefTracer_DESTROY) {
        atomic_fetch_add(&type_destroys, 1);
    }
    return 0;
}

Test(typeobject, finalize_frees_heap_types, .timeout = FT_TIMEOUT(120))
{
    PyType_Slot slots[] = { { Py_tp_doc, "freed at finalization" }, { 0, NULL } };
    PyType_Spec spec = { "testmod.Cycle", sizeof(plain_object), 0, Py_TPFLAGS_DEFAULT, slots };
    PyType_Slot gslots[] = { { Py_tp_traverse, TEST_FP(gc_traverse) }, { 0, NULL } };
    PyType_Spec gspec = { "testmod.CycleGC", sizeof(gc_object), 0,
                          Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, gslots };
    Py_FinalizeEx();   /* the suite's set-up initialised once already */
    for (int cycle = 0; cycle < 50; cycle++) {
        Py_InitializeEx(0);
        PyInterpreterState *interp = PyInterpreterState_Get();
        cr_assert_eq(ft_heap_types_count(interp), 0, "cycle %d starts with heap types", cycle);
        for (int k = 0; k < 3; k++) {
            PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(k == 1 ? &gspec : &spec);
            cr_assert_not_null(tp);
            for (int j = 0; j < 10; j++) {
                PyObject *o = tp->tp_alloc(tp, 0);
                cr_assert_not_null(o);
                Py_DECREF(o);
            }
        }
        cr_assert_eq(ft_heap_types_count(interp), 3);
        cr_assert_eq(Py_FinalizeEx(), 0);
        cr_assert_eq(ft_heap_types_count(interp), 0, "Py_FinalizeEx left heap types");
    }
    /* the tracer sees the type created, and destroyed by finalization only */
    Py_InitializeEx(0);
    cr_assert_eq(PyRefTracer_SetTracer(trace_type_creation, NULL), 0);
    PyType_Slot none[] = { { 0, NULL } };
    PyType_Spec tspec = { "testmod.Traced", 0, 0, Py_TPFLAGS_DEFAULT, none };
    PyObject *t = PyType_FromSpec(&tspec);
    cr_assert_not_null(t);
    cr_assert_eq(traced_type, t);
    cr_assert_eq(atomic_load(&type_creates), 1);
    cr_assert_eq(PyRefTracer_SetTracer(type_tracer, NULL), 0);
    Py_DECREF(t);
    cr_assert_eq(atomic_load(&type_destroys), 0);
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(atomic_load(&type_destroys), 1, "finalization destroyed the type once");
    Py_InitializeEx(0);
    cr_assert_eq(PyRefTracer_SetTracer(NULL, NULL), 0);
}

/* ---- object protocol -------------------------------------------------------------- */

Test(typeobject, hash)
{
    cr_assert_eq(PyType_Ready(&plain_type), 0);
    PyObject *a = PyType_GenericAlloc(&plain_type, 0);
    PyObject *b = PyType_GenericAlloc(&plain_type, 0);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    Py_hash_t ha = PyObject_Hash(a);
    cr_assert_neq(ha, -1);
    cr_assert_eq(PyObject_Hash(a), ha, "stable");
    cr_assert_neq(PyObject_Hash(b), ha, "identity hash differs between live objects");
    cr_assert_eq(PyObject_Hash(Py_True), 1);
    cr_assert_eq(PyObject_Hash(Py_False), 0);
    cr_assert_eq(PyObject_Hash(Py_None), (Py_hash_t)0xFCA86420);
    cr_assert_neq(PyObject_Hash((PyObject *)&PyType_Type), -1);
    cr_assert_null(PyErr_Occurred());
    Py_DECREF(a);
    Py_DECREF(b);
}

static PyObject *
always_false_richcompare(PyObject *a, PyObject *b, int op)
{
    (void)a;
    (void)b;
    (void)op;
    return Py_NewRef(Py_False);
}

Test(typeobject, defining_equality_without_hash_makes_unhashable)
{
    PyType_Slot slots[] = { { Py_tp_richcompare, TEST_FP(always_false_richcompare) }, { 0, NULL } };
    PyType_Spec spec = { "testmod.EqOnly", 0, 0, Py_TPFLAGS_DEFAULT, slots };
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(tp);
    cr_assert_eq(tp->tp_hash, PyObject_HashNotImplemented);
    PyObject *o = tp->tp_alloc(tp, 0);
    cr_assert_not_null(o);
    cr_assert_eq(PyObject_Hash(o), -1);
    test_expect_error(PyExc_TypeError, "unhashable type: 'testmod.EqOnly'");
    /* identity beats the type's own == in RichCompareBool */
    cr_assert_eq(PyObject_RichCompareBool(o, o, Py_EQ), 1);
    cr_assert_eq(PyObject_RichCompareBool(o, o, Py_NE), 0);
    PyObject *r = PyObject_RichCompare(o, o, Py_EQ);
    cr_assert_eq(r, Py_False, "RichCompare asks the type");
    Py_DECREF(r);
    Py_DECREF(o);
}

/* A records the order in which the two types were asked. */
static char order[8];
static int order_n;

static PyObject *
base_cmp(PyObject *a, PyObject *b, int op)
{
    (void)a;
    (void)b;
    (void)op;
    order[order_n++] = 'B';
    return Py_NewRef(Py_NotImplemented);
}

static int seen_op;

static PyObject *
sub_cmp(PyObject *a, PyObject *b, int op)
{
    (void)a;
    (void)b;
    order[order_n++] = 'S';
    seen_op = op;
    return Py_NewRef(Py_True);
}

Test(typeobject, rich_compare_reflection_and_defaults)
{
    PyType_Slot bslots[] = { { Py_tp_richcompare, TEST_FP(base_cmp) },
                             { Py_tp_hash, TEST_FP(PyBaseObject_Type.tp_hash) }, { 0, NULL } };
    PyType_Spec bspec = { "testmod.CmpBase", 0, 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
                          bslots };
    PyTypeObject *bt = (PyTypeObject *)PyType_FromSpec(&bspec);
    cr_assert_not_null(bt);
    PyType_Slot sslots[] = { { Py_tp_base, bt }, { Py_tp_richcompare, TEST_FP(sub_cmp) },
                             { 0, NULL } };
    PyType_Spec sspec = { "testmod.CmpSub", 0, 0, Py_TPFLAGS_DEFAULT, sslots };
    PyTypeObject *st = (PyTypeObject *)PyType_FromSpec(&sspec);
    cr_assert_not_null(st);
    PyObject *b = bt->tp_alloc(bt, 0), *s = st->tp_alloc(st, 0);
    cr_assert_not_null(b);
    cr_assert_not_null(s);

    /* the subclass on the right is asked first, with the operation swapped */
    order_n = 0;
    PyObject *r = PyObject_RichCompare(b, s, Py_LT);
    cr_assert_eq(r, Py_True);
    Py_DECREF(r);
    cr_assert_eq(order_n, 1);
    cr_assert_eq(order[0], 'S');
    cr_assert_eq(seen_op, Py_GT);
    /* on the left it is simply asked first */
    order_n = 0;
    r = PyObject_RichCompare(s, b, Py_LE);
    cr_assert_eq(r, Py_True);
    Py_DECREF(r);
    cr_assert_eq(order_n, 1);
    cr_assert_eq(seen_op, Py_LE);
    /* two base instances: both NotImplemented -> identity for ==, error for < */
    PyObject *b2 = bt->tp_alloc(bt, 0);
    order_n = 0;
    r = PyObject_RichCompare(b, b2, Py_EQ);
    cr_assert_eq(r, Py_False);
    Py_DECREF(r);
    cr_assert_eq(order_n, 2, "left, then reflected right");
    r = PyObject_RichCompare(b, b2, Py_NE);
    cr_assert_eq(r, Py_True);
    Py_DECREF(r);
    cr_assert_null(PyObject_RichCompare(b, b2, Py_GE));
    test_expect_error(PyExc_TypeError, "'>=' not supported between instances of 'testmod.CmpBase' "
                                  "and 'testmod.CmpBase'");
    cr_assert_eq(PyObject_RichCompareBool(b, b2, Py_LT), -1);
    test_expect_error(PyExc_TypeError, "'<' not supported");
    Py_DECREF(b2);

    /* object: identity */
    cr_assert_eq(PyType_Ready(&plain_type), 0);
    PyObject *x = PyType_GenericAlloc(&plain_type, 0), *y = PyType_GenericAlloc(&plain_type, 0);
    cr_assert_eq(PyObject_RichCompareBool(x, y, Py_EQ), 0);
    cr_assert_eq(PyObject_RichCompareBool(x, y, Py_NE), 1);
    r = PyObject_RichCompare(x, x, Py_EQ);
    cr_assert_eq(r, Py_True);
    Py_DECREF(r);
    r = PyObject_RichCompare(x, x, Py_NE);
    cr_assert_eq(r, Py_False);
    Py_DECREF(r);
    cr_assert_null(PyObject_RichCompare(x, y, Py_LT));
    test_expect_error(PyExc_TypeError, "'<' not supported between instances of 'test.Plain' and "
                                  "'test.Plain'");
    /* bool orders like 0 and 1 */
    cr_assert_eq(PyObject_RichCompareBool(Py_True, Py_False, Py_GT), 1);
    cr_assert_eq(PyObject_RichCompareBool(Py_False, Py_True, Py_GE), 0);
    cr_assert_eq(PyObject_RichCompareBool(Py_True, Py_True, Py_LE), 1);
    /* bad calls */
    cr_assert_null(PyObject_RichCompare(NULL, x, Py_EQ));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    cr_assert_null(PyObject_RichCompare(x, y, 6));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    Py_DECREF(x);
    Py_DECREF(y);
    Py_DECREF(b);
    Py_DECREF(s);
}

static PyObject *
call_me(PyObject *self, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    return Py_NewRef(self);
}

Test(typeobject, callable_check)
{
    cr_assert(PyCallable_Check((PyObject *)&PyBaseObject_Type));
    cr_assert(PyCallable_Check((PyObject *)&PyType_Type));
    cr_assert_not(PyCallable_Check(Py_None));
    cr_assert_not(PyCallable_Check(NULL));
    PyType_Slot slots[] = { { Py_tp_call, TEST_FP(call_me) }, { 0, NULL } };
    PyType_Spec spec = { "testmod.Callable", 0, 0, Py_TPFLAGS_DEFAULT, slots };
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(tp);
    PyObject *o = tp->tp_alloc(tp, 0);
    cr_assert(PyCallable_Check(o));
    Py_DECREF(o);
    /* calling object creates an object */
    PyObject *inst = PyType_Type.tp_call((PyObject *)&PyBaseObject_Type, NULL, NULL);
    cr_assert_not_null(inst);
    cr_assert_eq(Py_TYPE(inst), &PyBaseObject_Type);
    Py_DECREF(inst);
}

static PyObject *
str_slot(PyObject *self)
{
    (void)self;
    return PyUnicode_FromString("from tp_str");
}

/* The defaults (CPython's object.__repr__ and str's fallback to repr) are
 * tested with str in tests/core/test_unicodeobject.c; here: the type's own
 * slots are used, and str falls back to repr. */
Test(typeobject, repr_and_str_defaults_and_slots)
{
    cr_assert_eq(PyType_Ready(&plain_type), 0);
    PyObject *x = PyType_GenericAlloc(&plain_type, 0);
    char want[80];
    snprintf(want, sizeof want, "<test.Plain object at %p>", (void *)x);
    PyObject *dr = PyObject_Repr(x);
    cr_assert_not_null(dr);
    cr_assert_str_eq(PyUnicode_AsUTF8(dr), want);
    Py_DECREF(dr);
    dr = PyObject_Str(x);
    cr_assert_not_null(dr);
    cr_assert_str_eq(PyUnicode_AsUTF8(dr), want);
    Py_DECREF(dr);
    Py_DECREF(x);
    /* a type's own slots are used */
    PyType_Slot slots[] = { { Py_tp_repr, TEST_FP(some_repr) }, { 0, NULL } };
    PyType_Spec spec = { "testmod.Repr", 0, 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots };
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&spec);
    PyObject *o = tp->tp_alloc(tp, 0);
    PyObject *r = PyObject_Repr(o);
    cr_assert(PyUnicode_EqualToUTF8(r, "some repr"));
    Py_DECREF(r);
    r = PyObject_Str(o);
    cr_assert(PyUnicode_EqualToUTF8(r, "some repr"), "no tp_str: str falls back to repr");
    Py_DECREF(r);
    Py_DECREF(o);
    PyType_Slot sslots[] = { { Py_tp_base, tp }, { Py_tp_str, TEST_FP(str_slot) }, { 0, NULL } };
    PyType_Spec sspec = { "testmod.Str", 0, 0, Py_TPFLAGS_DEFAULT, sslots };
    PyTypeObject *st = (PyTypeObject *)PyType_FromSpec(&sspec);
    o = st->tp_alloc(st, 0);
    r = PyObject_Str(o);
    cr_assert(PyUnicode_EqualToUTF8(r, "from tp_str"));
    Py_DECREF(r);
    Py_DECREF(o);
}
