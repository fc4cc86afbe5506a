/* The abstract object protocol (core/abstract.c): size, truth,
 * subscription, iteration, the sequence functions and index conversion,
 * with each error case (types and messages as CPython's).  A sequence type
 * of the tests' own, whose slots record their arguments, shows how an
 * index reaches sq_item / sq_ass_item (negative ones adjusted by
 * sq_length, or passed on without it). */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"

TestSuite(abstract, .init = test_runtime_setup, .fini = test_runtime_teardown,
          .timeout = FT_TIMEOUT(30));


static PyObject *
num(long v)
{
    PyObject *o = PyLong_FromLong(v);
    cr_assert_not_null(o);
    return o;
}

static PyObject *
list3(void)
{
    PyObject *l = PyList_New(3);
    for (int i = 0; i < 3; i++) {
        PyList_SET_ITEM(l, i, num(100 + i));
    }
    return l;
}

/* Assigning and deleting o's items, through PyObject_* and PySequence_*,
 * fails with CPython's TypeErrors for a type with neither slot (whose
 * PySequence_DelItem words it "doesn't"); nothing changes. */
static void
expect_no_item_assignment(PyObject *o)
{
    const char *tn = Py_TYPE(o)->tp_name;
    PyObject *k = num(0), *v = num(7);
    char want[128];
    snprintf(want, sizeof want, "'%s' object does not support item assignment", tn);
    cr_assert_eq(PyObject_SetItem(o, k, v), -1);
    test_expect_error_is(PyExc_TypeError, want);
    cr_assert_eq(PySequence_SetItem(o, 0, v), -1);
    test_expect_error_is(PyExc_TypeError, want);
    snprintf(want, sizeof want, "'%s' object does not support item deletion", tn);
    cr_assert_eq(PyObject_DelItem(o, k), -1);
    test_expect_error_is(PyExc_TypeError, want);
    snprintf(want, sizeof want, "'%s' object doesn't support item deletion", tn);
    cr_assert_eq(PySequence_DelItem(o, 0), -1);
    test_expect_error_is(PyExc_TypeError, want);
    Py_DECREF(v);
    Py_DECREF(k);
}

Test(abstract, size_and_length)
{
    PyObject *l = list3();
    cr_assert_eq(PyObject_Size(l), 3);
    cr_assert_eq(PyObject_Length(l), 3);
    cr_assert_eq(PySequence_Size(l), 3);
    cr_assert_eq(PySequence_Length(l), 3);
    cr_assert_eq(PyObject_Size(Py_None), -1);
    test_expect_error_is(PyExc_TypeError, "object of type 'NoneType' has no len()");
    cr_assert_eq(PySequence_Size(Py_None), -1);
    test_expect_error_is(PyExc_TypeError, "object of type 'NoneType' has no len()");
    cr_assert_eq(PyObject_Size(NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PySequence_Size(NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    Py_DECREF(l);
}

Test(abstract, truth)
{
    PyObject *l = PyList_New(0);
    cr_assert_eq(PyObject_IsTrue(l), 0);
    cr_assert_eq(PyObject_Not(l), 1);
    PyList_Append(l, Py_None);
    cr_assert_eq(PyObject_IsTrue(l), 1);
    cr_assert_eq(PyObject_Not(l), 0);
    cr_assert_eq(PyObject_IsTrue(Py_None), 0);
    cr_assert_eq(PyObject_Not(Py_None), 1);
    cr_assert_eq(PyObject_IsTrue(Py_True), 1);
    PyObject *z = num(0), *o = num(7);
    cr_assert_eq(PyObject_IsTrue(z), 0);
    cr_assert_eq(PyObject_IsTrue(o), 1);
    Py_DECREF(z);
    Py_DECREF(o);
    Py_DECREF(l);
}

Test(abstract, getitem_setitem_delitem)
{
    PyObject *l = list3();
    PyObject *k = num(1);
    PyObject *x = PyObject_GetItem(l, k);
    cr_assert_eq(PyLong_AsLong(x), 101);
    Py_DECREF(x);
    PyObject *v = num(555);
    cr_assert_eq(PyObject_SetItem(l, k, v), 0);
    cr_assert_eq(PyList_GET_ITEM(l, 1), v);
    cr_assert_eq(PyObject_DelItem(l, k), 0);
    cr_assert_eq(PyList_Size(l), 2);
    Py_DECREF(v);
    /* Not subscriptable / assignable. */
    cr_assert_null(PyObject_GetItem(Py_None, k));
    test_expect_error_is(PyExc_TypeError, "'NoneType' object is not subscriptable");
    expect_no_item_assignment(Py_None);
    /* NULL arguments. */
    cr_assert_null(PyObject_GetItem(NULL, k));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_null(PyObject_GetItem(l, NULL));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyObject_SetItem(l, k, NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyObject_DelItem(l, NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    /* A huge index: IndexError from the conversion. */
    PyObject *huge = PyLong_FromUnsignedLongLong(~0ULL);
    if (huge == NULL) {
        /* ints are limited to 64 bits for now (core/longobject.c): no int
         * outside Py_ssize_t's range exists yet. */
        test_expect_error_is(PyExc_OverflowError, NULL);
    }
    else {
        cr_assert_null(PyObject_GetItem(l, huge));
        test_expect_error_is(PyExc_IndexError, "cannot fit 'int' into an index-sized integer");
        Py_DECREF(huge);
    }
    Py_DECREF(k);
    Py_DECREF(l);
}

Test(abstract, iteration)
{
    PyObject *l = list3();
    PyObject *it = PyObject_GetIter(l);
    cr_assert_not_null(it);
    cr_assert(PyIter_Check(it));
    cr_assert(!PyIter_Check(l), "a list is iterable, not an iterator");
    long want = 100;
    PyObject *x;
    while ((x = PyIter_Next(it)) != NULL) {
        cr_assert_eq(PyLong_AsLong(x), want++);
        Py_DECREF(x);
    }
    cr_assert_null(PyErr_Occurred(), "the end is NULL without an exception");
    cr_assert_eq(want, 103);
    Py_DECREF(it);
    cr_assert_null(PyObject_GetIter(Py_None));
    test_expect_error_is(PyExc_TypeError, "'NoneType' object is not iterable");
    cr_assert_null(PyObject_GetIter(NULL));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_null(PyIter_Next(l));
    test_expect_error_is(PyExc_TypeError, "'list' object is not an iterator");
    cr_assert_eq(PyObject_SelfIter(l), l);
    Py_DECREF(l);
    Py_DECREF(l);
}

Test(abstract, sequence_functions)
{
    PyObject *l = list3();
    cr_assert(PySequence_Check(l));
    cr_assert(!PySequence_Check(Py_None));
    PyObject *x = PySequence_GetItem(l, -3);
    cr_assert_eq(PyLong_AsLong(x), 100);
    Py_DECREF(x);
    cr_assert_null(PySequence_GetItem(l, 3));
    test_expect_error_is(PyExc_IndexError, "list index out of range");
    cr_assert_null(PySequence_GetItem(Py_None, 0));
    test_expect_error_is(PyExc_TypeError, "'NoneType' object does not support indexing");
    PyObject *v = num(999);
    cr_assert_eq(PySequence_SetItem(l, -1, v), 0);
    cr_assert_eq(PySequence_Contains(l, v), 1);
    cr_assert_eq(PySequence_DelItem(l, 0), 0);
    cr_assert_eq(PySequence_Contains(Py_None, v), -1);
    test_expect_error_is(PyExc_TypeError, "argument of type 'NoneType' is not iterable");
    /* Contains through iteration (an iterator has no sq_contains). */
    PyObject *it = PyObject_GetIter(l);
    cr_assert_eq(PySequence_Contains(it, v), 1);
    Py_DECREF(it);
    Py_DECREF(v);
    /* Tuple / List / Fast. */
    PyObject *t = PySequence_Tuple(l);
    cr_assert(PyTuple_CheckExact(t));
    cr_assert_eq(PyTuple_GET_SIZE(t), 2);
    cr_assert_eq(PySequence_Tuple(t), t);
    Py_DECREF(t);
    PyObject *l2 = PySequence_List(t);
    cr_assert(PyList_CheckExact(l2));
    cr_assert_eq(PyObject_RichCompareBool(l, l2, Py_EQ), 1);
    PyObject *f = PySequence_Fast(l, "need a sequence");
    cr_assert_eq(f, l);
    cr_assert_eq(PySequence_Fast_GET_SIZE(f), 2);
    cr_assert_eq(PySequence_Fast_GET_ITEM(f, 0), PyList_GET_ITEM(l, 0));
    Py_DECREF(f);
    it = PyObject_GetIter(t);
    f = PySequence_Fast(it, "need a sequence");
    cr_assert(PyList_CheckExact(f));
    cr_assert_eq(PySequence_Fast_ITEMS(f)[1], PyTuple_GET_ITEM(t, 1));
    Py_DECREF(f);
    Py_DECREF(it);
    cr_assert_null(PySequence_Fast(Py_None, "need a sequence"));
    test_expect_error_is(PyExc_TypeError, "need a sequence");
    cr_assert_null(PySequence_List(Py_None));
    test_expect_error_is(PyExc_TypeError, NULL);
    cr_assert_null(PySequence_Tuple(NULL));
    test_expect_error_is(PyExc_SystemError, NULL);
    ft_alloc_fail_after(1);
    cr_assert_null(PySequence_List(t));
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    Py_DECREF(l2);
    Py_DECREF(t);
    Py_DECREF(l);
}

/* An object whose __index__ returns what `index_result` says. */
static PyObject *index_result;

static PyObject *
idx_index(PyObject *self)
{
    (void)self;
    return index_result == NULL ? NULL : Py_NewRef(index_result);
}

Test(abstract, number_index)
{
    PyType_Slot slots[] = { { Py_nb_index, TEST_FP(idx_index) }, { 0, NULL } };
    PyType_Spec spec = { "test.idx", sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT, slots };
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(tp);
    PyObject *o = PyType_GenericAlloc(tp, 0);
    cr_assert(PyIndex_Check(o));
    cr_assert(!PyIndex_Check(Py_None));
    index_result = num(2);
    PyObject *r = PyNumber_Index(o);
    cr_assert_eq(r, index_result);
    Py_DECREF(r);
    cr_assert_eq(PyNumber_AsSsize_t(o, NULL), 2);
    /* o as a list index. */
    PyObject *l = list3();
    PyObject *x = PyObject_GetItem(l, o);
    cr_assert_eq(PyLong_AsLong(x), 102);
    Py_DECREF(x);
    Py_DECREF(l);
    Py_DECREF(index_result);
    /* __index__ returning a non-int. */
    index_result = Py_None;
    cr_assert_null(PyNumber_Index(o));
    test_expect_error_is(PyExc_TypeError, "__index__ returned non-int (type NoneType)");
    index_result = NULL;
    PyErr_SetString(PyExc_ValueError, "boom");
    cr_assert_null(PyNumber_Index(o));
    test_expect_error_is(PyExc_ValueError, "boom");
    cr_assert_null(PyNumber_Index(Py_None));
    test_expect_error_is(PyExc_TypeError, "'NoneType' object cannot be interpreted as an integer");
    cr_assert_null(PyNumber_Index(NULL));
    test_expect_error_is(PyExc_SystemError, NULL);
    /* An int is its own index; clamping. */
    PyObject *big = PyLong_FromUnsignedLongLong(~0ULL);
    if (big == NULL) {   /* 64-bit ints only for now, as above */
        test_expect_error_is(PyExc_OverflowError, NULL);
    }
    else {
        cr_assert_eq(PyNumber_AsSsize_t(big, NULL), PY_SSIZE_T_MAX);
        cr_assert_eq(PyNumber_AsSsize_t(big, PyExc_OverflowError), -1);
        test_expect_error_is(PyExc_OverflowError, "cannot fit 'int' into an index-sized integer");
        Py_DECREF(big);
    }
    big = PyLong_FromLongLong(PY_SSIZE_T_MAX);
    cr_assert_eq(PyNumber_AsSsize_t(big, PyExc_IndexError), PY_SSIZE_T_MAX);
    Py_DECREF(big);
    PyObject *neg = PyLong_FromLong(-5);
    r = PyNumber_Index(neg);
    cr_assert_eq(r, neg);
    Py_DECREF(r);
    cr_assert_eq(PyNumber_AsSsize_t(neg, PyExc_IndexError), -5);
    Py_DECREF(neg);
    /* an int subclass gives an exact int of the same value (CPython's rule) */
    r = PyNumber_Index(Py_True);
    cr_assert_not_null(r);
    cr_assert(PyLong_CheckExact(r), "PyNumber_Index(True) is not an exact int");
    cr_assert_eq(PyLong_AsLong(r), 1);
    Py_DECREF(r);
    cr_assert_eq(PyNumber_AsSsize_t(Py_True, NULL), 1);
    Py_DECREF(o);
}

/* ---- how an index reaches the sequence slots ------------------------------------------- */

/* A sequence with the sequence slots only (no mapping): they record their
 * arguments; its length is seq_len, or a ValueError when seq_len < 0. */
static Py_ssize_t seq_len;
static int seq_length_calls, seq_item_calls, seq_ass_calls;
static Py_ssize_t seq_index_seen;
static PyObject *seq_value_seen;   /* borrowed; NULL: a deletion */

static Py_ssize_t
seq_length(PyObject *self)
{
    (void)self;
    seq_length_calls++;
    if (seq_len < 0) {
        PyErr_SetString(PyExc_ValueError, "no length");
        return -1;
    }
    return seq_len;
}

static PyObject *
seq_item(PyObject *self, Py_ssize_t i)
{
    (void)self;
    seq_item_calls++;
    seq_index_seen = i;
    return PyLong_FromSsize_t(i);
}

static int
seq_ass_item(PyObject *self, Py_ssize_t i, PyObject *v)
{
    (void)self;
    seq_ass_calls++;
    seq_index_seen = i;
    seq_value_seen = v;
    return 0;
}

/* An instance of the sequence type, with or without sq_length; *tp gets
 * the type (the caller drops both). */
static PyObject *
new_seq(bool with_length, PyTypeObject **tp)
{
    PyType_Slot slots[] = {
        { Py_sq_item, TEST_FP(seq_item) },
        { Py_sq_ass_item, TEST_FP(seq_ass_item) },
        { with_length ? Py_sq_length : 0, TEST_FP(seq_length) },
        { 0, NULL },
    };
    PyType_Spec spec = { with_length ? "test.seq" : "test.seq_without_len", sizeof(PyObject), 0,
                         Py_TPFLAGS_DEFAULT, slots };
    *tp = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(*tp);
    PyObject *o = PyType_GenericAlloc(*tp, 0);
    cr_assert_not_null(o);
    seq_len = 5;
    seq_length_calls = seq_item_calls = seq_ass_calls = 0;
    return o;
}

/* The slot saw index i and (for the assignment slot) value v. */
static void
expect_ass(Py_ssize_t i, PyObject *v)
{
    cr_assert_eq(seq_index_seen, i, "index %zd reached the slot, not %zd", seq_index_seen, i);
    cr_assert_eq(seq_value_seen, v);
}

Test(abstract, negative_index_is_adjusted_by_sq_length)
{
    PyTypeObject *tp;
    PyObject *o = new_seq(true, &tp);
    PyObject *v = num(7);
    /* A non-negative index goes as it is: no length asked. */
    cr_assert_eq(PySequence_SetItem(o, 2, v), 0);
    expect_ass(2, v);
    cr_assert_eq(seq_length_calls, 0);
    /* A negative one counts from the end (length 5). */
    cr_assert_eq(PySequence_SetItem(o, -1, v), 0);
    expect_ass(4, v);
    cr_assert_eq(seq_length_calls, 1);
    cr_assert_eq(PySequence_DelItem(o, -2), 0);
    expect_ass(3, NULL);
    PyObject *x = PySequence_GetItem(o, -5);
    cr_assert_eq(PyLong_AsLong(x), 0);
    Py_DECREF(x);
    /* Still negative after adjusting: passed on, the slot decides. */
    cr_assert_eq(PySequence_SetItem(o, -7, v), 0);
    expect_ass(-2, v);
    /* PyObject_* with an int key take the same path. */
    PyObject *k = num(-1);
    cr_assert_eq(PyObject_SetItem(o, k, v), 0);
    expect_ass(4, v);
    cr_assert_eq(PyObject_DelItem(o, k), 0);
    expect_ass(4, NULL);
    x = PyObject_GetItem(o, k);
    cr_assert_eq(PyLong_AsLong(x), 4);
    Py_DECREF(x);
    cr_assert_eq(PyObject_SetItem(o, Py_True, v), 0, "bool is an index");
    expect_ass(1, v);
    cr_assert_eq(seq_ass_calls, 7);
    cr_assert_eq(seq_item_calls, 2);
    /* sq_length fails: its error stands and the slot is not called. */
    seq_len = -1;
    cr_assert_eq(PySequence_SetItem(o, -1, v), -1);
    test_expect_error_is(PyExc_ValueError, "no length");
    cr_assert_eq(PySequence_DelItem(o, -1), -1);
    test_expect_error_is(PyExc_ValueError, "no length");
    cr_assert_null(PySequence_GetItem(o, -1));
    test_expect_error_is(PyExc_ValueError, "no length");
    cr_assert_eq(PyObject_SetItem(o, k, v), -1);
    test_expect_error_is(PyExc_ValueError, "no length");
    cr_assert_eq(PyObject_DelItem(o, k), -1);
    test_expect_error_is(PyExc_ValueError, "no length");
    cr_assert_null(PyObject_GetItem(o, k));
    test_expect_error_is(PyExc_ValueError, "no length");
    cr_assert_eq(seq_ass_calls, 7);
    cr_assert_eq(seq_item_calls, 2);
    /* ... and is not asked for a non-negative index. */
    cr_assert_eq(PySequence_DelItem(o, 0), 0);
    expect_ass(0, NULL);
    Py_DECREF(k);
    Py_DECREF(v);
    Py_DECREF(o);
    Py_DECREF(tp);
}

Test(abstract, negative_index_without_sq_length_is_passed_on)
{
    PyTypeObject *tp;
    PyObject *o = new_seq(false, &tp);
    PyObject *v = num(7);
    cr_assert_eq(PySequence_SetItem(o, -1, v), 0);
    expect_ass(-1, v);
    cr_assert_eq(PySequence_DelItem(o, -3), 0);
    expect_ass(-3, NULL);
    PyObject *x = PySequence_GetItem(o, -2);
    cr_assert_eq(PyLong_AsLong(x), -2);
    Py_DECREF(x);
    cr_assert_eq(seq_length_calls, 0);
    Py_DECREF(v);
    Py_DECREF(o);
    Py_DECREF(tp);
}

Test(abstract, sequence_subscript_must_be_an_index)
{
    PyTypeObject *tp;
    PyObject *o = new_seq(true, &tp);
    PyObject *key = PyUnicode_FromString("a");
    PyObject *v = num(7);
    cr_assert_null(PyObject_GetItem(o, key));
    test_expect_error_is(PyExc_TypeError, "sequence index must be integer, not 'str'");
    cr_assert_eq(PyObject_SetItem(o, key, v), -1);
    test_expect_error_is(PyExc_TypeError, "sequence index must be integer, not 'str'");
    cr_assert_eq(PyObject_DelItem(o, key), -1);
    test_expect_error_is(PyExc_TypeError, "sequence index must be integer, not 'str'");
    cr_assert_eq(seq_item_calls + seq_ass_calls + seq_length_calls, 0);
    /* NULL arguments. */
    cr_assert_eq(PyObject_SetItem(NULL, key, v), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyObject_SetItem(o, NULL, v), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyObject_DelItem(NULL, key), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(seq_item_calls + seq_ass_calls + seq_length_calls, 0);
    Py_DECREF(v);
    Py_DECREF(key);
    Py_DECREF(o);
    Py_DECREF(tp);
}

Test(abstract, sequence_functions_on_non_sequences)
{
    PyObject *v = num(7);
    /* A mapping: "is not a sequence". */
    PyObject *d = PyDict_New();
    cr_assert_null(PySequence_GetItem(d, 0));
    test_expect_error_is(PyExc_TypeError, "dict is not a sequence");
    cr_assert_eq(PySequence_SetItem(d, 0, v), -1);
    test_expect_error_is(PyExc_TypeError, "dict is not a sequence");
    cr_assert_eq(PySequence_DelItem(d, 0), -1);
    test_expect_error_is(PyExc_TypeError, "dict is not a sequence");
    cr_assert_eq(PySequence_Size(d), -1);
    test_expect_error_is(PyExc_TypeError, "dict is not a sequence");
    cr_assert_eq(PyDict_Size(d), 0, "nothing was stored");
    /* A sequence without the assignment slot. */
    PyObject *t = PyTuple_Pack(1, v);
    expect_no_item_assignment(t);
    /* NULL. */
    cr_assert_null(PySequence_GetItem(NULL, 0));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PySequence_SetItem(NULL, 0, v), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PySequence_DelItem(NULL, 0), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    Py_DECREF(t);
    Py_DECREF(d);
    Py_DECREF(v);
}

Test(abstract, list_index_adjusted_and_out_of_range)
{
    PyObject *l = list3();
    PyObject *v = num(999);
    cr_assert_eq(PySequence_SetItem(l, -4, v), -1, "-4 + 3 is still negative");
    test_expect_error_is(PyExc_IndexError, "list assignment index out of range");
    cr_assert_eq(PySequence_DelItem(l, 3), -1);
    test_expect_error_is(PyExc_IndexError, "list assignment index out of range");
    cr_assert_eq(PySequence_DelItem(l, -4), -1);
    test_expect_error_is(PyExc_IndexError, "list assignment index out of range");
    cr_assert_eq(PySequence_SetItem(l, -3, v), 0);
    cr_assert_eq(PyList_GET_ITEM(l, 0), v);
    cr_assert_eq(PySequence_DelItem(l, -1), 0);
    cr_assert_eq(PyList_GET_SIZE(l), 2);
    cr_assert_eq(PyList_GET_ITEM(l, 0), v);
    cr_assert_eq(PyLong_AsLong(PyList_GET_ITEM(l, 1)), 101);
    Py_DECREF(v);
    Py_DECREF(l);
}

/* ---- concatenation, repetition, search, slices ------------------------------------------ */

/* seq holds exactly the ints vals[0..n), read through PySequence_GetItem. */
static void
expect_items(PyObject *seq, const long *vals, Py_ssize_t n)
{
    cr_assert_eq(PySequence_Size(seq), n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PySequence_GetItem(seq, i);
        cr_assert_not_null(x);
        cr_assert_eq(PyLong_AsLong(x), vals[i], "index %zd", i);
        Py_DECREF(x);
    }
}

Test(abstract, concat_and_repeat_errors)
{
    PyObject *l = list3(), *v = num(7);
    cr_assert_null(PySequence_Concat(Py_None, l));
    test_expect_error_is(PyExc_TypeError, "'NoneType' object can't be concatenated");
    cr_assert_null(PySequence_Concat(v, l));
    test_expect_error_is(PyExc_TypeError, "'int' object can't be concatenated");
    cr_assert_null(PySequence_InPlaceConcat(Py_None, l));
    test_expect_error_is(PyExc_TypeError, "'NoneType' object can't be concatenated");
    cr_assert_null(PySequence_Repeat(Py_None, 2));
    test_expect_error_is(PyExc_TypeError, "'NoneType' object can't be repeated");
    cr_assert_null(PySequence_Repeat(v, 2));
    test_expect_error_is(PyExc_TypeError, "'int' object can't be repeated");
    cr_assert_null(PySequence_InPlaceRepeat(Py_None, 2));
    test_expect_error_is(PyExc_TypeError, "'NoneType' object can't be repeated");
    PyObject *d = PyDict_New();
    cr_assert_null(PySequence_Concat(d, d));
    test_expect_error_is(PyExc_TypeError, "'dict' object can't be concatenated");
    /* A sequence with neither a sequence nor a number slot for it. */
    PyTypeObject *tp;
    PyObject *s = new_seq(true, &tp);
    cr_assert_null(PySequence_Concat(s, s));
    test_expect_error_is(PyExc_TypeError, "'test.seq' object can't be concatenated");
    cr_assert_null(PySequence_InPlaceRepeat(s, 2));
    test_expect_error_is(PyExc_TypeError, "'test.seq' object can't be repeated");
    /* NULL. */
    cr_assert_null(PySequence_Concat(NULL, l));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_null(PySequence_Concat(l, NULL));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_null(PySequence_InPlaceConcat(l, NULL));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_null(PySequence_Repeat(NULL, 1));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_null(PySequence_InPlaceRepeat(NULL, 1));
    test_expect_error_is(PyExc_SystemError, NULL);
    static const long items[] = { 100, 101, 102 };
    expect_items(l, items, 3);
    Py_DECREF(s);
    Py_DECREF(tp);
    Py_DECREF(d);
    Py_DECREF(v);
    Py_DECREF(l);
}

/* A sequence whose + and * are number slots only (CPython: a class with
 * __add__ / __mul__): they record their operands and return a marker. */
static PyObject *nb_left, *nb_right;
static int nb_add_calls, nb_mul_calls, nb_iadd_calls;

static PyObject *
nbseq_record(PyObject *a, PyObject *b, int *calls)
{
    ++*calls;
    nb_left = a;
    nb_right = b;
    return PyUnicode_FromString("ok");
}

static PyObject *nbseq_add(PyObject *a, PyObject *b) { return nbseq_record(a, b, &nb_add_calls); }
static PyObject *nbseq_mul(PyObject *a, PyObject *b) { return nbseq_record(a, b, &nb_mul_calls); }
static PyObject *nbseq_iadd(PyObject *a, PyObject *b) { return nbseq_record(a, b, &nb_iadd_calls); }

Test(abstract, number_slots_are_the_fallback)
{
    PyType_Slot slots[] = {
        { Py_sq_item, TEST_FP(seq_item) },
        { Py_nb_add, TEST_FP(nbseq_add) },
        { Py_nb_multiply, TEST_FP(nbseq_mul) },
        { Py_nb_inplace_add, TEST_FP(nbseq_iadd) },
        { 0, NULL },
    };
    PyType_Spec spec = { "test.nbseq", sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT, slots };
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(tp);
    PyObject *o = PyType_GenericAlloc(tp, 0);
    PyObject *t = PyTuple_New(0);
    PyObject *r = PySequence_Concat(o, t);
    cr_assert_not_null(r);
    cr_assert_eq(nb_add_calls, 1);
    cr_assert(nb_left == o && nb_right == t);
    Py_DECREF(r);
    r = PySequence_InPlaceConcat(o, t);
    cr_assert_not_null(r);
    cr_assert_eq(nb_iadd_calls, 1, "the in-place slot first");
    cr_assert_eq(nb_add_calls, 1);
    Py_DECREF(r);
    r = PySequence_Repeat(o, 5);
    cr_assert_not_null(r);
    cr_assert_eq(nb_mul_calls, 1);
    cr_assert_eq(nb_left, o);
    cr_assert_eq(PyLong_AsLong(nb_right), 5, "the count as an int");
    Py_DECREF(r);
    r = PySequence_InPlaceRepeat(o, 2);   /* no nb_inplace_multiply: nb_multiply */
    cr_assert_not_null(r);
    cr_assert_eq(nb_mul_calls, 2);
    Py_DECREF(r);
    /* Not both sequences: no fallback. */
    cr_assert_null(PySequence_Concat(o, Py_None));
    test_expect_error_is(PyExc_TypeError, "'test.nbseq' object can't be concatenated");
    cr_assert_eq(nb_add_calls, 1);
    Py_DECREF(t);
    Py_DECREF(o);
    Py_DECREF(tp);
}

/* An object equal to nothing, whose comparison raises once `cmp_raise`. */
static bool cmp_raise;

static PyObject *
raising_richcompare(PyObject *a, PyObject *b, int op)
{
    (void)a;
    (void)b;
    (void)op;
    if (cmp_raise) {
        PyErr_SetString(PyExc_ValueError, "no comparing");
        return NULL;
    }
    Py_RETURN_FALSE;
}

Test(abstract, count_and_index)
{
    PyObject *x = num(1000), *y = num(1001), *z = num(1002);
    PyObject *l = PyList_New(0);
    PyObject *items[] = { x, y, x, y, x };
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(PyList_Append(l, items[i]), 0);
    }
    PyObject *t = PySequence_Tuple(l);
    PyObject *seqs[] = { l, t };
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(PySequence_Count(seqs[i], x), 3);
        cr_assert_eq(PySequence_Count(seqs[i], y), 2);
        cr_assert_eq(PySequence_Count(seqs[i], z), 0);
        cr_assert_eq(PySequence_Index(seqs[i], x), 0);
        cr_assert_eq(PySequence_Index(seqs[i], y), 1);
        cr_assert_eq(PySequence_Contains(seqs[i], y), 1);
        cr_assert_eq(PySequence_Contains(seqs[i], z), 0);
        cr_assert_eq(PySequence_Index(seqs[i], z), -1);
        test_expect_error_is(PyExc_ValueError, "sequence.index(x): x not in sequence");
    }
    /* Equal, not identical. */
    PyObject *y2 = num(1001);
    cr_assert_eq(PySequence_Index(l, y2), 1);
    cr_assert_eq(PySequence_Count(t, y2), 2);
    Py_DECREF(y2);
    /* Not iterable, NULL. */
    cr_assert_eq(PySequence_Count(Py_None, x), -1);
    test_expect_error_is(PyExc_TypeError, "argument of type 'NoneType' is not iterable");
    cr_assert_eq(PySequence_Index(Py_None, x), -1);
    test_expect_error_is(PyExc_TypeError, "argument of type 'NoneType' is not iterable");
    cr_assert_eq(PySequence_Count(NULL, x), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PySequence_Index(l, NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    /* A comparison's error stops the search. */
    PyType_Slot slots[] = { { Py_tp_richcompare, TEST_FP(raising_richcompare) }, { 0, NULL } };
    PyType_Spec spec = { "test.raiser", sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT, slots };
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(tp);
    PyObject *r = PyType_GenericAlloc(tp, 0);
    cr_assert_eq(PyList_Append(l, r), 0);
    cr_assert_eq(PySequence_Count(l, z), 0, "z == r is False");
    cmp_raise = true;
    cr_assert_eq(PySequence_Count(l, r), -1);
    test_expect_error_is(PyExc_ValueError, "no comparing");
    cr_assert_eq(PySequence_Index(l, r), -1);
    test_expect_error_is(PyExc_ValueError, "no comparing");
    cmp_raise = false;
    Py_DECREF(r);
    Py_DECREF(tp);
    Py_DECREF(t);
    Py_DECREF(l);
    Py_DECREF(x);
    Py_DECREF(y);
    Py_DECREF(z);
}

Test(abstract, getslice)
{
    PyObject *l = list3();
    PyObject *t = PySequence_Tuple(l);
    PyObject *seqs[] = { l, t };
    static const long all[] = { 100, 101, 102 };
    for (int i = 0; i < 2; i++) {
        PyObject *s = PySequence_GetSlice(seqs[i], 1, 3);
        cr_assert(Py_IS_TYPE(s, Py_TYPE(seqs[i])), "a slice of the same type");
        expect_items(s, all + 1, 2);
        Py_DECREF(s);
        /* Negative bounds count from the end, as a slice's. */
        s = PySequence_GetSlice(seqs[i], -2, PY_SSIZE_T_MAX);
        cr_assert(Py_IS_TYPE(s, Py_TYPE(seqs[i])));
        expect_items(s, all + 1, 2);
        Py_DECREF(s);
        s = PySequence_GetSlice(seqs[i], -100, -1);
        expect_items(s, all, 2);
        Py_DECREF(s);
        s = PySequence_GetSlice(seqs[i], 2, 1);
        expect_items(s, NULL, 0);
        Py_DECREF(s);
        s = PySequence_GetSlice(seqs[i], 0, 100);
        expect_items(s, all, 3);
        Py_DECREF(s);
    }
    PyObject *s = PySequence_GetSlice(l, 0, 3);
    cr_assert(s != l, "a list's slice is a new list");
    Py_DECREF(s);
    /* No slice objects: nothing else can be sliced. */
    PyObject *d = PyDict_New();
    cr_assert_null(PySequence_GetSlice(d, 0, 1));
    test_expect_error_is(PyExc_TypeError, "'dict' object is unsliceable");
    cr_assert_null(PySequence_GetSlice(Py_None, 0, 1));
    test_expect_error_is(PyExc_TypeError, "'NoneType' object is unsliceable");
    cr_assert_null(PySequence_GetSlice(NULL, 0, 1));
    test_expect_error_is(PyExc_SystemError, NULL);
    ft_alloc_fail_after(1);
    cr_assert_null(PySequence_GetSlice(l, -2, 3));
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    expect_items(l, all, 3);
    Py_DECREF(d);
    Py_DECREF(t);
    Py_DECREF(l);
}
