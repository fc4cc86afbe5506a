/* Tuples (core/tupleobject.c): creation, items, slices, packing, hashing,
 * comparison, iteration, the sequence/mapping slots, the repr, every error
 * case and out-of-memory (of the repr: in test_listobject.c).  Items are ints of 1000 and up (heap objects: their counts
 * are observable; small ints are immortal). */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"

TestSuite(tupleobject, .init = test_runtime_setup, .fini = test_runtime_teardown,
          .timeout = FT_TIMEOUT(30));

static PyObject *
num(long v)
{
    PyObject *o = PyLong_FromLong(v);
    cr_assert_not_null(o);
    return o;
}

static long
val(PyObject *o)
{
    return PyLong_AsLong(o);
}

Test(tupleobject, new_fills_null_and_sizes)
{
    PyObject *t = PyTuple_New(3);
    cr_assert_not_null(t);
    cr_assert(PyTuple_Check(t) && PyTuple_CheckExact(t));
    cr_assert_eq(PyTuple_Size(t), 3);
    cr_assert_eq(PyTuple_GET_SIZE(t), 3);
    for (Py_ssize_t i = 0; i < 3; i++) {
        cr_assert_null(PyTuple_GET_ITEM(t, i));
    }
    cr_assert(PyObject_GC_IsTracked(t));
    Py_DECREF(t);   /* NULL items are fine to drop */
}

Test(tupleobject, empty_is_an_immortal_singleton)
{
    PyObject *a = PyTuple_New(0), *b = PyTuple_New(0);
    cr_assert_eq(a, b);
    cr_assert_eq(PyTuple_Size(a), 0);
    cr_assert_eq(Py_REFCNT(a), Py_REFCNT(b));
    cr_assert_geq(Py_REFCNT(a), (Py_ssize_t)1 << 29, "not immortal");
    cr_assert_eq(PyTuple_Pack(0), a);
    Py_DECREF(a);
    Py_DECREF(b);
}

Test(tupleobject, new_negative_is_system_error)
{
    cr_assert_null(PyTuple_New(-1));
    test_expect_error_is(PyExc_SystemError, NULL);
}

Test(tupleobject, new_out_of_memory)
{
    ft_alloc_fail_after(1);
    PyObject *t = PyTuple_New(4);
    ft_alloc_fail_after(0);
    cr_assert_null(t);
    test_expect_error_is(PyExc_MemoryError, NULL);
    /* Absurd sizes fail cleanly, without allocating. */
    cr_assert_null(PyTuple_New(PY_SSIZE_T_MAX / 2));
    test_expect_error_is(PyExc_MemoryError, NULL);
}

Test(tupleobject, setitem_steals_and_getitem_borrows)
{
    PyObject *t = PyTuple_New(2);
    PyObject *a = num(1001), *b = num(1002);
    Py_INCREF(a);
    Py_INCREF(b);
    cr_assert_eq(PyTuple_SetItem(t, 0, a), 0);
    cr_assert_eq(PyTuple_SetItem(t, 1, b), 0);
    cr_assert_eq(Py_REFCNT(a), 2);
    cr_assert_eq(PyTuple_GetItem(t, 0), a);
    cr_assert_eq(PyTuple_GetItem(t, 1), b);
    cr_assert_eq(Py_REFCNT(a), 2, "GetItem must not take a reference");
    /* Replacing drops the old item. */
    Py_INCREF(b);
    cr_assert_eq(PyTuple_SetItem(t, 0, b), 0);
    cr_assert_eq(Py_REFCNT(a), 1);
    cr_assert_eq(Py_REFCNT(b), 3);
    Py_DECREF(t);
    cr_assert_eq(Py_REFCNT(b), 1);
    Py_DECREF(a);
    Py_DECREF(b);
}

Test(tupleobject, getitem_errors)
{
    PyObject *t = PyTuple_Pack(1, Py_None);
    cr_assert_null(PyTuple_GetItem(t, 1));
    test_expect_error_is(PyExc_IndexError, "tuple index out of range");
    cr_assert_null(PyTuple_GetItem(t, -1));
    test_expect_error_is(PyExc_IndexError, "tuple index out of range");
    PyObject *l = PyList_New(0);
    cr_assert_null(PyTuple_GetItem(l, 0));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_null(PyTuple_GetItem(NULL, 0));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyTuple_Size(l), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyTuple_Size(NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    Py_DECREF(l);
    Py_DECREF(t);
}

Test(tupleobject, setitem_errors_drop_the_item)
{
    PyObject *t = PyTuple_New(1);
    PyObject *a = num(1003);
    Py_INCREF(a);
    cr_assert_eq(PyTuple_SetItem(t, 1, a), -1);
    test_expect_error_is(PyExc_IndexError, "tuple assignment index out of range");
    cr_assert_eq(Py_REFCNT(a), 1, "the stolen reference must be dropped");
    /* A shared tuple (refcount 2) is immutable. */
    Py_INCREF(t);
    Py_INCREF(a);
    cr_assert_eq(PyTuple_SetItem(t, 0, a), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(Py_REFCNT(a), 1);
    cr_assert_null(PyTuple_GET_ITEM(t, 0));
    Py_DECREF(t);
    /* Not a tuple. */
    PyObject *l = PyList_New(1);
    Py_INCREF(a);
    cr_assert_eq(PyTuple_SetItem(l, 0, a), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(Py_REFCNT(a), 1);
    Py_DECREF(l);
    Py_DECREF(t);
    Py_DECREF(a);
}

Test(tupleobject, pack_and_getslice)
{
    PyObject *a = num(2000), *b = num(2001), *c = num(2002);
    PyObject *t = PyTuple_Pack(3, a, b, c);
    cr_assert_not_null(t);
    cr_assert_eq(Py_REFCNT(a), 2);
    PyObject *s = PyTuple_GetSlice(t, 1, 3);
    cr_assert_eq(PyTuple_GET_SIZE(s), 2);
    cr_assert_eq(PyTuple_GET_ITEM(s, 0), b);
    cr_assert_eq(PyTuple_GET_ITEM(s, 1), c);
    Py_DECREF(s);
    /* The whole tuple is the tuple itself. */
    s = PyTuple_GetSlice(t, -5, 99);
    cr_assert_eq(s, t);
    Py_DECREF(s);
    /* Empty and inverted ranges: the empty tuple. */
    s = PyTuple_GetSlice(t, 2, 1);
    cr_assert_eq(s, PyTuple_New(0));
    s = PyTuple_GetSlice(t, 7, 9);
    cr_assert_eq(PyTuple_GET_SIZE(s), 0);
    cr_assert_null(PyTuple_GetSlice(Py_None, 0, 1));
    test_expect_error_is(PyExc_SystemError, NULL);
    Py_DECREF(t);
    cr_assert_eq(Py_REFCNT(a), 1);
    Py_DECREF(a);
    Py_DECREF(b);
    Py_DECREF(c);
}

Test(tupleobject, getslice_and_pack_out_of_memory)
{
    PyObject *a = num(2010);
    PyObject *t = PyTuple_Pack(3, a, a, a);
    ft_alloc_fail_after(1);
    PyObject *s = PyTuple_GetSlice(t, 0, 2);
    ft_alloc_fail_after(0);
    cr_assert_null(s);
    test_expect_error_is(PyExc_MemoryError, NULL);
    ft_alloc_fail_after(1);
    s = PyTuple_Pack(2, a, a);
    ft_alloc_fail_after(0);
    cr_assert_null(s);
    test_expect_error_is(PyExc_MemoryError, NULL);
    cr_assert_eq(Py_REFCNT(a), 4);
    Py_DECREF(t);
    Py_DECREF(a);
}

Test(tupleobject, hash_combines_items)
{
    PyObject *a = num(3000), *b = num(3001);
    PyObject *t1 = PyTuple_Pack(2, a, b);
    PyObject *t2 = PyTuple_Pack(2, num(3000), num(3001));
    Py_DECREF(PyTuple_GET_ITEM(t2, 0));   /* Pack took its own references */
    Py_DECREF(PyTuple_GET_ITEM(t2, 1));
    PyObject *t3 = PyTuple_Pack(2, b, a);
    Py_hash_t h1 = PyObject_Hash(t1), h2 = PyObject_Hash(t2), h3 = PyObject_Hash(t3);
    cr_assert_neq(h1, -1);
    cr_assert_eq(h1, h2, "equal tuples, equal hashes");
    cr_assert_neq(h1, h3, "order matters");
    cr_assert_neq(PyObject_Hash(PyTuple_New(0)), -1);
    PyObject *one = PyTuple_Pack(1, PyTuple_New(0));
    cr_assert_neq(PyObject_Hash(one), PyObject_Hash(PyTuple_New(0)));
    /* An unhashable item makes the tuple unhashable. */
    PyObject *l = PyList_New(0);
    PyObject *t4 = PyTuple_Pack(2, a, l);
    cr_assert_eq(PyObject_Hash(t4), -1);
    test_expect_error_is(PyExc_TypeError, "unhashable type: 'list'");
    Py_DECREF(t4);
    Py_DECREF(l);
    Py_DECREF(one);
    Py_DECREF(t1);
    Py_DECREF(t2);
    Py_DECREF(t3);
    Py_DECREF(a);
    Py_DECREF(b);
}

static PyObject *
tup2(long x, long y)
{
    PyObject *a = num(x), *b = num(y);
    PyObject *t = PyTuple_Pack(2, a, b);
    Py_DECREF(a);
    Py_DECREF(b);
    return t;
}

static int
cmp(PyObject *a, PyObject *b, int op)
{
    int r = PyObject_RichCompareBool(a, b, op);
    cr_assert_neq(r, -1);
    return r;
}

Test(tupleobject, richcompare_is_elementwise)
{
    PyObject *t12 = tup2(1, 2), *t13 = tup2(1, 3), *t12b = tup2(1, 2);
    PyObject *a = num(1);
    PyObject *t1 = PyTuple_Pack(1, a);
    Py_DECREF(a);
    cr_assert(cmp(t12, t12b, Py_EQ));
    cr_assert(!cmp(t12, t12b, Py_NE));
    cr_assert(cmp(t12, t13, Py_LT));
    cr_assert(cmp(t13, t12, Py_GT));
    cr_assert(cmp(t12, t13, Py_LE));
    cr_assert(!cmp(t12, t13, Py_GE));
    cr_assert(cmp(t1, t12, Py_LT), "a prefix is smaller");
    cr_assert(!cmp(t1, t12, Py_EQ));
    cr_assert(cmp(PyTuple_New(0), t1, Py_LT));
    /* A tuple and a list are never equal; ordering them is a TypeError. */
    PyObject *l = PyList_New(0);
    cr_assert_eq(PyObject_RichCompareBool(PyTuple_New(0), l, Py_EQ), 0);
    cr_assert_eq(PyObject_RichCompareBool(PyTuple_New(0), l, Py_LT), -1);
    test_expect_error_is(PyExc_TypeError, NULL);
    /* An item comparison error propagates. */
    PyObject *tn = PyTuple_Pack(1, Py_None), *tl = PyTuple_Pack(1, l);
    cr_assert_eq(PyObject_RichCompareBool(tn, tl, Py_LT), -1);
    test_expect_error_is(PyExc_TypeError, NULL);
    Py_DECREF(tn);
    Py_DECREF(tl);
    Py_DECREF(l);
    Py_DECREF(t12);
    Py_DECREF(t13);
    Py_DECREF(t12b);
    Py_DECREF(t1);
}

Test(tupleobject, iteration)
{
    PyObject *t = tup2(4000, 4001);
    PyObject *it = PyObject_GetIter(t);
    cr_assert_not_null(it);
    cr_assert(PyIter_Check(it));
    cr_assert_eq(Py_TYPE(it), &PyTupleIter_Type);
    PyObject *again = PyObject_GetIter(it);
    cr_assert_eq(again, it, "an iterator is its own iterator");
    Py_DECREF(again);
    PyObject *x = PyIter_Next(it);
    cr_assert_eq(val(x), 4000);
    Py_DECREF(x);
    x = PyIter_Next(it);
    cr_assert_eq(val(x), 4001);
    Py_DECREF(x);
    cr_assert_null(PyIter_Next(it));
    cr_assert_null(PyErr_Occurred(), "the end is not an error");
    cr_assert_null(PyIter_Next(it));
    cr_assert_null(PyErr_Occurred());
    Py_DECREF(it);
    /* The iterator keeps the tuple alive. */
    it = PyObject_GetIter(t);
    cr_assert_eq(Py_REFCNT(t), 2);
    Py_DECREF(it);
    cr_assert_eq(Py_REFCNT(t), 1);
    Py_DECREF(t);
}

/* t holds exactly the ints vals[0..n). */
static void
expect_tuple(PyObject *t, const long *vals, Py_ssize_t n)
{
    cr_assert(PyTuple_Check(t));
    cr_assert_eq(PyTuple_GET_SIZE(t), n);
    for (Py_ssize_t i = 0; i < n; i++) {
        cr_assert_eq(val(PyTuple_GET_ITEM(t, i)), vals[i], "index %zd", i);
    }
}

Test(tupleobject, concat_and_repeat)
{
    PyObject *a = tup2(1000, 1001), *b = tup2(2000, 2001), *empty = PyTuple_New(0);
    PyObject *r = PySequence_Concat(a, b);
    static const long ab[] = { 1000, 1001, 2000, 2001 };
    expect_tuple(r, ab, 4);
    cr_assert_eq(PyTuple_GET_ITEM(r, 2), PyTuple_GET_ITEM(b, 0), "the same items");
    Py_DECREF(r);
    /* CPython's shortcuts: an exact tuple plus (), (), once, is itself. */
    r = PySequence_Concat(a, empty);
    cr_assert_eq(r, a);
    Py_DECREF(r);
    r = PySequence_Concat(empty, b);
    cr_assert_eq(r, b);
    Py_DECREF(r);
    cr_assert_eq(PySequence_Concat(empty, empty), empty);
    r = PySequence_Repeat(a, 1);
    cr_assert_eq(r, a);
    Py_DECREF(r);
    r = PySequence_Repeat(a, 3);
    static const long aaa[] = { 1000, 1001, 1000, 1001, 1000, 1001 };
    expect_tuple(r, aaa, 6);
    Py_DECREF(r);
    cr_assert_eq(PySequence_Repeat(a, 0), empty);
    cr_assert_eq(PySequence_Repeat(a, -5), empty);
    cr_assert_eq(PySequence_Repeat(empty, 7), empty);
    /* In place: a tuple has no in-place slots, so a new tuple. */
    r = PySequence_InPlaceConcat(a, b);
    cr_assert(r != a);
    expect_tuple(r, ab, 4);
    Py_DECREF(r);
    r = PySequence_InPlaceRepeat(a, 3);
    cr_assert(r != a);
    expect_tuple(r, aaa, 6);
    Py_DECREF(r);
    static const long two[] = { 1000, 1001 };
    expect_tuple(a, two, 2);
    /* Errors. */
    PyObject *l = PyList_New(0);
    cr_assert_null(PySequence_Concat(a, l));
    test_expect_error_is(PyExc_TypeError, "can only concatenate tuple (not \"list\") to tuple");
    cr_assert_null(PySequence_Repeat(a, PY_SSIZE_T_MAX / 2 + 1));
    test_expect_error_is(PyExc_MemoryError, NULL);
    cr_assert_null(PySequence_Repeat(a, PY_SSIZE_T_MAX / 4));
    test_expect_error_is(PyExc_MemoryError, NULL);
    ft_alloc_fail_after(1);
    cr_assert_null(PySequence_Concat(a, b));
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    ft_alloc_fail_after(1);
    cr_assert_null(PySequence_Repeat(a, 2));
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    cr_assert_eq(Py_REFCNT(PyTuple_GET_ITEM(a, 0)), 1, "no reference leaked");
    Py_DECREF(l);
    Py_DECREF(a);
    Py_DECREF(b);
}

Test(tupleobject, sequence_and_mapping_slots)
{
    PyObject *t = tup2(5000, 5001);
    cr_assert_eq(PyObject_Size(t), 2);
    cr_assert_eq(PySequence_Size(t), 2);
    cr_assert(PySequence_Check(t));
    cr_assert_eq(PyObject_IsTrue(t), 1);
    cr_assert_eq(PyObject_IsTrue(PyTuple_New(0)), 0);
    PyObject *x = PySequence_GetItem(t, -1);
    cr_assert_eq(val(x), 5001);
    Py_DECREF(x);
    cr_assert_null(PySequence_GetItem(t, 2));
    test_expect_error_is(PyExc_IndexError, "tuple index out of range");
    PyObject *k = num(-2);
    x = PyObject_GetItem(t, k);
    cr_assert_eq(val(x), 5000);
    Py_DECREF(x);
    Py_DECREF(k);
    cr_assert_null(PyObject_GetItem(t, Py_None));
    test_expect_error_is(PyExc_TypeError, "tuple indices must be integers or slices, not NoneType");
    PyObject *v = num(5001), *w = num(5002);
    cr_assert_eq(PySequence_Contains(t, v), 1);
    cr_assert_eq(PySequence_Contains(t, w), 0);
    Py_DECREF(v);
    Py_DECREF(w);
    /* Tuples are immutable. */
    k = num(0);
    cr_assert_eq(PyObject_SetItem(t, k, Py_None), -1);
    test_expect_error_is(PyExc_TypeError, "'tuple' object does not support item assignment");
    Py_DECREF(k);
    Py_DECREF(t);
}

static int
count_visit(PyObject *op, void *arg)
{
    (void)op;
    ++*(int *)arg;
    return 0;
}

Test(tupleobject, traverse_visits_every_item)
{
    PyObject *t = PyTuple_New(3);
    PyTuple_SET_ITEM(t, 0, num(6000));
    PyTuple_SET_ITEM(t, 2, num(6001));   /* slot 1 stays NULL: skipped */
    int n = 0;
    cr_assert_eq(PyTuple_Type.tp_traverse(t, count_visit, &n), 0);
    cr_assert_eq(n, 2);
    Py_DECREF(t);
}

/* ---- repr ------------------------------------------------------------------------------ */

Test(tupleobject, repr_formats_nested_and_empty)
{
    test_expect_repr(PyTuple_New(0), "()");
    PyObject *a = num(1000), *b = PyUnicode_FromString("b");
    PyObject *one = PyTuple_Pack(1, a);
    test_expect_repr(one, "(1000,)");
    PyObject *two = PyTuple_Pack(2, a, b);
    test_expect_repr(two, "(1000, 'b')");
    PyObject *l = PyList_New(0);
    PyObject *nested = PyTuple_Pack(4, one, PyTuple_New(0), two, l);
    test_expect_repr(nested, "((1000,), (), (1000, 'b'), [])");
    PyObject *s = PyObject_Str(one);   /* str falls back to repr */
    cr_assert_str_eq(PyUnicode_AsUTF8(s), "(1000,)");
    Py_DECREF(s);
    Py_DECREF(nested);
    Py_DECREF(l);
    Py_DECREF(two);
    Py_DECREF(one);
    Py_DECREF(b);
    Py_DECREF(a);
}

Test(tupleobject, repr_of_a_tuple_inside_its_own_list_is_elided)
{
    PyObject *l = PyList_New(0);
    PyObject *t = PyTuple_Pack(1, l);
    cr_assert_eq(PyList_Append(l, t), 0);   /* t = ([t],) */
    test_expect_repr(t, "([(...)],)");
    test_expect_repr(l, "[([...],)]");
    PyObject *pair = PyTuple_Pack(2, t, t);
    test_expect_repr(pair, "(([(...)],), ([(...)],))");   /* siblings are not recursion */
    cr_assert_eq(Py_ReprEnter(t), 0, "no guard left behind");
    Py_ReprLeave(t);
    Py_DECREF(pair);
    cr_assert_eq(PyList_Clear(l), 0);   /* break the cycle: no cycle GC yet */
    Py_DECREF(t);
    Py_DECREF(l);
}

/* An object whose tp_repr returns an int: PyObject_Repr raises TypeError. */
static PyObject *
int_repr(PyObject *self)
{
    (void)self;
    return PyLong_FromLong(7);
}

static PyTypeObject int_repr_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.int_repr",
    .tp_basicsize = sizeof(PyObject),
    .tp_dealloc = (destructor)PyObject_Free,
    .tp_repr = int_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

Test(tupleobject, repr_error_from_an_item_propagates)
{
    cr_assert_eq(PyType_Ready(&int_repr_type), 0);
    PyObject *bad = PyType_GenericNew(&int_repr_type, NULL, NULL);
    PyObject *a = num(1000);
    PyObject *t = PyTuple_Pack(2, a, bad);
    PyObject *outer = PyTuple_Pack(1, t);
    cr_assert_null(PyObject_Repr(outer));
    test_expect_error_is(PyExc_TypeError, "__repr__ returned non-string (type int)");
    cr_assert_eq(Py_ReprEnter(outer), 0, "both guards were left");
    cr_assert_eq(Py_ReprEnter(t), 0);
    Py_ReprLeave(t);
    Py_ReprLeave(outer);
    Py_DECREF(outer);
    Py_DECREF(t);
    Py_DECREF(a);
    Py_DECREF(bad);
}
