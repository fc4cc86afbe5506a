/* Lists (core/listobject.c).
 *
 * Single-threaded: every PyList_* function, each error case (messages and
 * types as CPython), out-of-memory via ft_alloc_fail_after, sort
 * (stability, errors, mutation during the sort), iteration, the slots.
 *
 * Concurrent (cpython-ft-internals.md §14 G61-G64 and the stress):
 *   g61  10 readers iterate while 1 writer appends 5000..9999: the item at
 *        index i is always i + 5000;
 *   g62  10 threads x 100 swaps l[0] = l[1]; l[1] = l[0]: only the two
 *        original objects are ever seen, counts balance;
 *   g63  10 pushers/poppers use the list as a min-heap while 10 readers
 *        read l[0] lock-free, catching IndexError;
 *   g64  5 iterating threads vs 2 mutators: never an object that was never
 *        in the list;
 *   stress 8 threads doing random append/pop/set/get; exact invariants.
 * A non-owner's first read of an unshared list takes the locked path and
 * marks the list SHARED (slow_path_marks_shared checks the bit;
 * shared_reads_do_not_take_the_lock shows that read waiting for a lock the
 * main thread holds, and a read of the SHARED list not waiting);
 * sort_with_concurrent_readers sorts a SHARED list under lock-free reads.
 * Workers record into atomics; only the test's main thread asserts.  The
 * main thread detaches while workers run (GIL build: they need the GIL;
 * free-threaded: grace periods need its quiescent state).
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_object.h"

#include <stdlib.h>

TestSuite(listobject, .init = test_runtime_setup, .fini = test_runtime_teardown,
          .timeout = FT_TIMEOUT(60));

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

/* A list of the ints vals[0..n). */
static PyObject *
mklist(const long *vals, Py_ssize_t n)
{
    PyObject *l = PyList_New(0);
    cr_assert_not_null(l);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = num(vals[i]);
        cr_assert_eq(PyList_Append(l, o), 0);
        Py_DECREF(o);
    }
    return l;
}

/* The list holds exactly the ints vals[0..n), in order. */
static void
expect_list(PyObject *l, const long *vals, Py_ssize_t n)
{
    cr_assert_eq(PyList_Size(l), n);
    for (Py_ssize_t i = 0; i < n; i++) {
        cr_assert_eq(val(PyList_GET_ITEM(l, i)), vals[i], "index %zd", i);
    }
}

/* ---- creation, items -------------------------------------------------------------- */

Test(listobject, new_and_size)
{
    PyObject *l = PyList_New(3);
    cr_assert(PyList_Check(l) && PyList_CheckExact(l));
    cr_assert_eq(PyList_Size(l), 3);
    cr_assert_eq(PyList_GET_SIZE(l), 3);
    cr_assert_geq(((PyListObject *)l)->allocated, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_null(PyList_GET_ITEM(l, i));
    }
    cr_assert(PyObject_GC_IsTracked(l));
    Py_DECREF(l);
    l = PyList_New(0);
    cr_assert_eq(PyList_Size(l), 0);
    cr_assert_null(((PyListObject *)l)->ob_item);
    Py_DECREF(l);
}

Test(listobject, new_errors)
{
    cr_assert_null(PyList_New(-1));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_null(PyList_New(PY_SSIZE_T_MAX));
    test_expect_error_is(PyExc_MemoryError, NULL);
    ft_alloc_fail_after(1);   /* the object */
    cr_assert_null(PyList_New(4));
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    /* The array (the object is the first allocation, unless a new GC
     * heap block is needed first: try both positions). */
    for (int nth = 2; nth <= 3; nth++) {
        ft_alloc_fail_after(nth);
        PyObject *l = PyList_New(4);
        ft_alloc_fail_after(0);
        if (l == NULL) {
            test_expect_error_is(PyExc_MemoryError, NULL);
        }
        else {
            Py_DECREF(l);
        }
    }
    cr_assert_eq(PyList_Size(Py_None), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyList_Size(NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
}

Test(listobject, append_insert_get)
{
    static const long init[] = { 1010, 1020, 1030 };
    PyObject *l = mklist(init, 3);
    PyObject *x = num(1000);
    cr_assert_eq(PyList_Insert(l, 0, x), 0);      /* front */
    cr_assert_eq(PyList_Insert(l, -1, x), 0);     /* before the last */
    cr_assert_eq(PyList_Insert(l, -100, x), 0);   /* clamped to the front */
    cr_assert_eq(PyList_Insert(l, 100, x), 0);    /* clamped to the end */
    cr_assert_eq(Py_REFCNT(x), 5, "Insert takes its own reference");
    Py_DECREF(x);
    static const long want[] = { 1000, 1000, 1010, 1020, 1000, 1030, 1000 };
    expect_list(l, want, 7);
    cr_assert_eq(val(PyList_GetItem(l, 2)), 1010);
    PyObject *r = PyList_GetItemRef(l, 3);
    cr_assert_eq(val(r), 1020);
    cr_assert_eq(Py_REFCNT(r), 2, "GetItemRef returns a new reference");
    Py_DECREF(r);
    Py_DECREF(l);
}

Test(listobject, item_errors)
{
    static const long init[] = { 1 };
    PyObject *l = mklist(init, 1);
    cr_assert_null(PyList_GetItem(l, 1));
    test_expect_error_is(PyExc_IndexError, "list index out of range");
    cr_assert_null(PyList_GetItem(l, -1));
    test_expect_error_is(PyExc_IndexError, "list index out of range");
    cr_assert_null(PyList_GetItemRef(l, 5));
    test_expect_error_is(PyExc_IndexError, "list index out of range");
    cr_assert_null(PyList_GetItemRef(Py_None, 0));
    test_expect_error_is(PyExc_TypeError, "expected a list");
    cr_assert_null(PyList_GetItem(Py_None, 0));
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyList_Append(Py_None, Py_None), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyList_Append(l, NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyList_Insert(Py_None, 0, Py_None), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyList_Insert(l, 0, NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    Py_DECREF(l);
}

Test(listobject, setitem_steals)
{
    static const long init[] = { 1, 2 };
    PyObject *l = mklist(init, 2);
    PyObject *a = num(7000);
    Py_INCREF(a);
    cr_assert_eq(PyList_SetItem(l, 1, a), 0);
    cr_assert_eq(Py_REFCNT(a), 2);
    cr_assert_eq(PyList_GET_ITEM(l, 1), a);
    /* Errors drop the stolen reference. */
    Py_INCREF(a);
    cr_assert_eq(PyList_SetItem(l, 2, a), -1);
    test_expect_error_is(PyExc_IndexError, "list assignment index out of range");
    cr_assert_eq(Py_REFCNT(a), 2);
    Py_INCREF(a);
    cr_assert_eq(PyList_SetItem(l, -1, a), -1);
    test_expect_error_is(PyExc_IndexError, "list assignment index out of range");
    cr_assert_eq(Py_REFCNT(a), 2);
    Py_INCREF(a);
    cr_assert_eq(PyList_SetItem(Py_None, 0, a), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(Py_REFCNT(a), 2);
    /* Replacing drops the old item. */
    cr_assert_eq(PyList_SetItem(l, 1, num(7001)), 0);
    cr_assert_eq(Py_REFCNT(a), 1);
    Py_DECREF(a);
    /* SET_ITEM into a new list's NULL slots. */
    PyObject *m = PyList_New(1);
    PyList_SET_ITEM(m, 0, num(7002));
    cr_assert_eq(val(PyList_GET_ITEM(m, 0)), 7002);
    Py_DECREF(m);
    Py_DECREF(l);
}

Test(listobject, append_grows_and_keeps_items)
{
    PyObject *l = PyList_New(0);
    for (long i = 0; i < 1000; i++) {
        PyObject *o = num(i + 10000);
        cr_assert_eq(PyList_Append(l, o), 0);
        Py_DECREF(o);
        cr_assert_geq(((PyListObject *)l)->allocated, i + 1);
    }
    for (long i = 0; i < 1000; i++) {
        cr_assert_eq(val(PyList_GET_ITEM(l, i)), i + 10000);
    }
    /* Over-allocation is bounded (about 1/8 plus a few). */
    cr_assert_leq(((PyListObject *)l)->allocated, 1000 + 1000 / 8 + 8);
    Py_DECREF(l);
}

Test(listobject, append_insert_out_of_memory)
{
    static const long init[] = { 1, 2, 3, 4 };
    PyObject *l = mklist(init, 4);
    /* Fill the spare capacity so that the next append must resize. */
    while (PyList_GET_SIZE(l) < ((PyListObject *)l)->allocated) {
        PyObject *o = num(5);
        PyList_Append(l, o);
        Py_DECREF(o);
    }
    Py_ssize_t n = PyList_GET_SIZE(l);
    PyObject *x = num(8000);
    ft_alloc_fail_after(1);
    cr_assert_eq(PyList_Append(l, x), -1);
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    ft_alloc_fail_after(1);
    cr_assert_eq(PyList_Insert(l, 0, x), -1);
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    cr_assert_eq(PyList_GET_SIZE(l), n, "the list is unchanged");
    cr_assert_eq(val(PyList_GET_ITEM(l, 0)), 1);
    cr_assert_eq(Py_REFCNT(x), 1, "no reference leaked");
    Py_DECREF(x);
    Py_DECREF(l);
}

/* ---- slices ----------------------------------------------------------------------- */

Test(listobject, getslice)
{
    static const long init[] = { 0, 1, 2, 3, 4 };
    PyObject *l = mklist(init, 5);
    PyObject *s = PyList_GetSlice(l, 1, 3);
    static const long w1[] = { 1, 2 };
    expect_list(s, w1, 2);
    Py_DECREF(s);
    s = PyList_GetSlice(l, -10, 100);
    expect_list(s, init, 5);
    cr_assert_neq(s, l, "a copy");
    Py_DECREF(s);
    s = PyList_GetSlice(l, 4, 2);
    cr_assert_eq(PyList_Size(s), 0);
    Py_DECREF(s);
    cr_assert_null(PyList_GetSlice(Py_None, 0, 1));
    test_expect_error_is(PyExc_SystemError, NULL);
    ft_alloc_fail_after(1);
    s = PyList_GetSlice(l, 0, 3);
    ft_alloc_fail_after(0);
    cr_assert_null(s);
    test_expect_error_is(PyExc_MemoryError, NULL);
    Py_DECREF(l);
}

Test(listobject, setslice_replace_insert_delete)
{
    static const long init[] = { 0, 1, 2, 3, 4 };
    PyObject *l = mklist(init, 5);
    static const long v1[] = { 10, 11, 12 };
    PyObject *src = mklist(v1, 3);
    cr_assert_eq(PyList_SetSlice(l, 1, 2, src), 0);        /* grow */
    static const long w1[] = { 0, 10, 11, 12, 2, 3, 4 };
    expect_list(l, w1, 7);
    cr_assert_eq(PyList_SetSlice(l, 1, 4, NULL), 0);       /* delete */
    static const long w1b[] = { 0, 2, 3, 4 };
    expect_list(l, w1b, 4);
    PyObject *t = PyList_AsTuple(src);
    cr_assert_eq(PyList_SetSlice(l, 0, 0, t), 0);          /* insert a tuple's items */
    static const long w2[] = { 10, 11, 12, 0, 2, 3, 4 };
    expect_list(l, w2, 7);
    cr_assert_eq(PyList_SetSlice(l, -5, 2, src), 0);       /* clamped: l[0:2] */
    static const long w3[] = { 10, 11, 12, 12, 0, 2, 3, 4 };
    expect_list(l, w3, 8);
    cr_assert_eq(PyList_SetSlice(l, 2, 8, NULL), 0);       /* shrink a lot */
    expect_list(l, w3, 2);
    cr_assert_eq(PyList_SetSlice(l, 0, 1, l), 0);          /* from itself */
    static const long w4[] = { 10, 11, 11 };
    expect_list(l, w4, 3);
    cr_assert_eq(PyList_SetSlice(l, 1, 1, Py_None), -1);
    test_expect_error_is(PyExc_TypeError, "can only assign an iterable");
    cr_assert_eq(PyList_SetSlice(Py_None, 0, 0, NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    expect_list(l, w4, 3);
    Py_DECREF(t);
    Py_DECREF(src);
    Py_DECREF(l);
}

Test(listobject, setslice_out_of_memory)
{
    static const long init[] = { 0, 1, 2, 3 };
    PyObject *l = mklist(init, 4);
    PyObject *big = PyList_New(0);
    for (int i = 0; i < 64; i++) {
        PyObject *o = num(20000 + i);
        PyList_Append(big, o);
        Py_DECREF(o);
    }
    int failures = 0;
    for (int nth = 1; nth <= 3; nth++) {
        ft_alloc_fail_after(nth);
        int rc = PyList_SetSlice(l, 1, 2, big);
        ft_alloc_fail_after(0);
        if (rc < 0) {
            failures++;
            test_expect_error_is(PyExc_MemoryError, NULL);
            expect_list(l, init, 4);
        }
        else {
            cr_assert_eq(PyList_Size(l), 67);
            cr_assert_eq(PyList_SetSlice(l, 1, 65, NULL), 0);   /* [0, 2, 3] */
            PyObject *one = num(1);
            PyList_Insert(l, 1, one);
            Py_DECREF(one);
            expect_list(l, init, 4);
        }
    }
    cr_assert_geq(failures, 1);
    /* Deleting many items with the shrinking resize failing still works. */
    cr_assert_eq(PyList_SetSlice(l, 4, 4, big), 0);
    ft_alloc_fail_after(2);
    cr_assert_eq(PyList_SetSlice(l, 2, 68, NULL), 0);
    ft_alloc_fail_after(0);
    cr_assert_null(PyErr_Occurred());
    expect_list(l, init, 2);
    Py_DECREF(big);
    Py_DECREF(l);
}

Test(listobject, extend_clear_astuple)
{
    static const long a[] = { 1001, 1002 };
    PyObject *l = mklist(a, 2);
    PyObject *t = PyList_AsTuple(l);
    cr_assert(PyTuple_CheckExact(t));
    cr_assert_eq(PyTuple_GET_SIZE(t), 2);
    cr_assert_eq(PyTuple_GET_ITEM(t, 1), PyList_GET_ITEM(l, 1));
    cr_assert_eq(PyList_Extend(l, t), 0);             /* a tuple */
    cr_assert_eq(PyList_Extend(l, l), 0);             /* itself */
    static const long w[] = { 1001, 1002, 1001, 1002, 1001, 1002, 1001, 1002 };
    expect_list(l, w, 8);
    PyObject *it = PyObject_GetIter(t);
    cr_assert_eq(PyList_Extend(l, it), 0);            /* any iterable */
    Py_DECREF(it);
    cr_assert_eq(PyList_Size(l), 10);
    cr_assert_eq(PyList_Extend(l, Py_None), -1);
    test_expect_error_is(PyExc_TypeError, "'NoneType' object is not iterable");
    cr_assert_eq(PyList_Extend(Py_None, t), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    cr_assert_eq(PyList_Extend(l, NULL), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    PyObject *x = PyList_GET_ITEM(l, 0);
    Py_ssize_t before = Py_REFCNT(x);
    cr_assert_eq(PyList_Clear(l), 0);
    cr_assert_eq(PyList_Size(l), 0);
    cr_assert_eq(Py_REFCNT(x), before - 5, "Clear drops the references");
    cr_assert_eq(PyList_Clear(Py_None), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    PyObject *e = PyList_AsTuple(l);
    cr_assert_eq(e, PyTuple_New(0));
    cr_assert_null(PyList_AsTuple(t));
    test_expect_error_is(PyExc_SystemError, NULL);
    /* Out of memory (a 40-item tuple: the extension must resize). */
    cr_assert_eq(PyList_Extend(l, t), 0);
    ft_alloc_fail_after(1);
    cr_assert_null(PyList_AsTuple(l));
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    PyObject *t40 = PyTuple_New(40);
    for (int i = 0; i < 40; i++) {
        PyTuple_SET_ITEM(t40, i, Py_NewRef(Py_None));
    }
    ft_alloc_fail_after(1);
    int rc40 = PyList_Extend(l, t40);
    ft_alloc_fail_after(0);
    Py_DECREF(t40);
    cr_assert_eq(rc40, -1);
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    expect_list(l, a, 2);
    Py_DECREF(t);
    Py_DECREF(l);
}

Test(listobject, reverse)
{
    static const long a[] = { 1, 2, 3, 4, 5 };
    static const long r[] = { 5, 4, 3, 2, 1 };
    PyObject *l = mklist(a, 5);
    cr_assert_eq(PyList_Reverse(l), 0);
    expect_list(l, r, 5);
    PyObject *e = PyList_New(0);
    cr_assert_eq(PyList_Reverse(e), 0);
    cr_assert_eq(PyList_Reverse(Py_None), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    Py_DECREF(e);
    Py_DECREF(l);
}

/* ---- sort --------------------------------------------------------------------------- */

Test(listobject, sort_ints)
{
    srand(12345);
    long vals[3000];
    for (int i = 0; i < 3000; i++) {
        vals[i] = rand() % 500 + 1000;   /* many duplicates */
    }
    PyObject *l = mklist(vals, 3000);
    cr_assert_eq(PyList_Sort(l), 0);
    cr_assert_eq(PyList_Size(l), 3000);
    long sum = 0, want = 0;
    for (int i = 0; i < 3000; i++) {
        want += vals[i];
        sum += val(PyList_GET_ITEM(l, i));
        if (i > 0) {
            cr_assert_leq(val(PyList_GET_ITEM(l, i - 1)), val(PyList_GET_ITEM(l, i)));
        }
    }
    cr_assert_eq(sum, want);
    cr_assert_eq(PyList_Sort(Py_None), -1);
    test_expect_error_is(PyExc_SystemError, NULL);
    Py_DECREF(l);
}

/* Keyed objects: compare by key only, so equal keys tell whether the sort
 * kept their order.  mutate_list, if set, is appended to by comparisons. */
typedef struct {
    PyObject_HEAD
    long key, seq;
} keyed;

static PyObject *mutate_list;
static int compare_calls_before_error = -1;
static PyTypeObject *keyed_type;

static PyObject *
keyed_richcompare(PyObject *a, PyObject *b, int op)
{
    if (Py_TYPE(b) != keyed_type || op != Py_LT) {
        return Py_NewRef(Py_NotImplemented);
    }
    if (mutate_list != NULL) {
        PyList_Append(mutate_list, Py_None);
    }
    if (compare_calls_before_error == 0) {
        PyErr_SetString(PyExc_RuntimeError, "comparison failed");
        return NULL;
    }
    if (compare_calls_before_error > 0) {
        compare_calls_before_error--;
    }
    return PyBool_FromLong(((keyed *)a)->key < ((keyed *)b)->key);
}

static void
make_keyed_type(void)
{
    PyType_Slot slots[] = {
        { Py_tp_richcompare, TEST_FP(keyed_richcompare) }, { 0, NULL } };
    PyType_Spec spec = { "test.keyed", sizeof(keyed), 0, Py_TPFLAGS_DEFAULT, slots };
    keyed_type = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(keyed_type);
    mutate_list = NULL;
    compare_calls_before_error = -1;
}

static PyObject *
keyed_list(int n, int nkeys)
{
    PyObject *l = PyList_New(n);
    for (int i = 0; i < n; i++) {
        keyed *k = PyObject_New(keyed, keyed_type);
        k->key = (i * 7919) % nkeys;
        k->seq = i;
        PyList_SET_ITEM(l, i, (PyObject *)k);
    }
    return l;
}

/* Every seq 0..n-1 appears exactly once. */
static void
expect_permutation(PyObject *l, int n)
{
    cr_assert_eq(PyList_Size(l), n);
    char *seen = calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) {
        keyed *k = (keyed *)PyList_GET_ITEM(l, i);
        cr_assert_eq(Py_TYPE(k), keyed_type);
        cr_assert(k->seq >= 0 && k->seq < n && !seen[k->seq]);
        seen[k->seq] = 1;
    }
    free(seen);
}

Test(listobject, sort_is_stable)
{
    make_keyed_type();
    PyObject *l = keyed_list(1000, 10);
    cr_assert_eq(PyList_Sort(l), 0);
    expect_permutation(l, 1000);
    for (int i = 1; i < 1000; i++) {
        keyed *a = (keyed *)PyList_GET_ITEM(l, i - 1), *b = (keyed *)PyList_GET_ITEM(l, i);
        cr_assert(a->key < b->key || (a->key == b->key && a->seq < b->seq),
                  "order or stability broken at %d", i);
    }
    Py_DECREF(l);
}

Test(listobject, sort_error_propagates_and_keeps_items)
{
    make_keyed_type();
    for (int after = 0; after < 2000; after += 97) {
        PyObject *l = keyed_list(300, 50);
        compare_calls_before_error = after;
        int rc = PyList_Sort(l);
        int left = compare_calls_before_error;
        compare_calls_before_error = -1;
        if (left == 0) {
            cr_assert_eq(rc, -1);
            test_expect_error_is(PyExc_RuntimeError, "comparison failed");
        }
        else {
            cr_assert_eq(rc, 0);
        }
        expect_permutation(l, 300);
        Py_DECREF(l);
    }
    /* Items that cannot be ordered: TypeError. */
    PyObject *l = PyList_New(2);
    PyList_SET_ITEM(l, 0, num(1));
    PyList_SET_ITEM(l, 1, Py_NewRef(Py_None));
    cr_assert_eq(PyList_Sort(l), -1);
    test_expect_error_is(PyExc_TypeError, NULL);
    cr_assert_eq(PyList_Size(l), 2);
    Py_DECREF(l);
}

Test(listobject, sort_detects_modification)
{
    make_keyed_type();
    PyObject *l = keyed_list(100, 100);
    mutate_list = l;   /* every comparison appends None to the list being sorted */
    cr_assert_eq(PyList_Sort(l), -1);
    mutate_list = NULL;
    test_expect_error_is(PyExc_ValueError, "list modified during sort");
    expect_permutation(l, 100);   /* the appended Nones are discarded */
    for (int i = 1; i < 100; i++) {
        cr_assert_lt(((keyed *)PyList_GET_ITEM(l, i - 1))->key,
                     ((keyed *)PyList_GET_ITEM(l, i))->key, "still sorted");
    }
    Py_DECREF(l);
}

Test(listobject, sort_out_of_memory)
{
    static const long a[] = { 3, 1, 2 };
    static const long s[] = { 1, 2, 3 };
    PyObject *l = mklist(a, 3);
    ft_alloc_fail_after(1);
    cr_assert_eq(PyList_Sort(l), -1);
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    expect_list(l, a, 3);
    cr_assert_eq(PyList_Sort(l), 0);
    expect_list(l, s, 3);
    Py_DECREF(l);
}

/* ---- comparison, iteration, slots ---------------------------------------------------------- */

Test(listobject, richcompare)
{
    static const long a[] = { 1, 2, 3 }, b[] = { 1, 2, 4 };
    PyObject *la = mklist(a, 3), *la2 = mklist(a, 3), *lb = mklist(b, 3), *lp = mklist(a, 2);
    cr_assert_eq(PyObject_RichCompareBool(la, la2, Py_EQ), 1);
    cr_assert_eq(PyObject_RichCompareBool(la, lb, Py_EQ), 0);
    cr_assert_eq(PyObject_RichCompareBool(la, lb, Py_NE), 1);
    cr_assert_eq(PyObject_RichCompareBool(la, lb, Py_LT), 1);
    cr_assert_eq(PyObject_RichCompareBool(lb, la, Py_GE), 1);
    cr_assert_eq(PyObject_RichCompareBool(lp, la, Py_LT), 1, "a prefix is smaller");
    cr_assert_eq(PyObject_RichCompareBool(lp, la, Py_EQ), 0);
    cr_assert_eq(PyObject_RichCompareBool(la, lp, Py_GT), 1);
    PyObject *t = PyList_AsTuple(la);
    cr_assert_eq(PyObject_RichCompareBool(la, t, Py_EQ), 0, "a list is never a tuple");
    PyObject *ln = PyList_New(1);
    PyList_SET_ITEM(ln, 0, Py_NewRef(Py_None));
    cr_assert_eq(PyObject_RichCompareBool(ln, lp, Py_LT), -1);
    test_expect_error_is(PyExc_TypeError, NULL);
    cr_assert_eq(PyObject_Hash(la), -1);
    test_expect_error_is(PyExc_TypeError, "unhashable type: 'list'");
    Py_DECREF(ln);
    Py_DECREF(t);
    Py_DECREF(la);
    Py_DECREF(la2);
    Py_DECREF(lb);
    Py_DECREF(lp);
}

Test(listobject, iteration_sees_changes)
{
    static const long a[] = { 1, 2, 3 };
    PyObject *l = mklist(a, 3);
    PyObject *it = PyObject_GetIter(l);
    cr_assert_eq(Py_TYPE(it), &PyListIter_Type);
    PyObject *x = PyIter_Next(it);
    cr_assert_eq(val(x), 1);
    Py_DECREF(x);
    PyObject *four = num(4);
    PyList_Append(l, four);   /* seen: iteration is by index */
    Py_DECREF(four);
    long want[] = { 2, 3, 4 };
    for (int i = 0; i < 3; i++) {
        x = PyIter_Next(it);
        cr_assert_not_null(x);
        cr_assert_eq(val(x), want[i]);
        Py_DECREF(x);
    }
    cr_assert_null(PyIter_Next(it));
    cr_assert_null(PyErr_Occurred());
    /* Exhausted stays exhausted, even if the list grows. */
    PyList_Append(l, Py_None);
    cr_assert_null(PyIter_Next(it));
    cr_assert_null(PyErr_Occurred());
    Py_DECREF(it);
    /* Shrinking ends the iteration early. */
    it = PyObject_GetIter(l);
    x = PyIter_Next(it);
    Py_DECREF(x);
    PyList_SetSlice(l, 0, 100, NULL);
    cr_assert_null(PyIter_Next(it));
    cr_assert_null(PyErr_Occurred());
    Py_DECREF(it);
    Py_DECREF(l);
}

Test(listobject, sequence_and_mapping_slots)
{
    static const long a[] = { 10, 20, 30 };
    PyObject *l = mklist(a, 3);
    cr_assert_eq(PyObject_Size(l), 3);
    cr_assert(PySequence_Check(l));
    cr_assert_eq(PyObject_IsTrue(l), 1);
    cr_assert_eq(PyObject_Not(l), 0);
    PyObject *k = num(-1);
    PyObject *x = PyObject_GetItem(l, k);
    cr_assert_eq(val(x), 30);
    Py_DECREF(x);
    PyObject *v = num(31);
    cr_assert_eq(PyObject_SetItem(l, k, v), 0);
    cr_assert_eq(PySequence_Contains(l, v), 1);
    cr_assert_eq(PyObject_DelItem(l, k), 0);
    cr_assert_eq(PySequence_Contains(l, v), 0);
    Py_DECREF(v);
    Py_DECREF(k);
    cr_assert_eq(PyList_Size(l), 2);
    k = num(2);
    cr_assert_null(PyObject_GetItem(l, k));
    test_expect_error_is(PyExc_IndexError, "list index out of range");
    cr_assert_eq(PyObject_SetItem(l, k, Py_None), -1);
    test_expect_error_is(PyExc_IndexError, "list assignment index out of range");
    cr_assert_eq(PyObject_DelItem(l, k), -1);
    test_expect_error_is(PyExc_IndexError, "list assignment index out of range");
    Py_DECREF(k);
    cr_assert_null(PyObject_GetItem(l, Py_None));
    test_expect_error_is(PyExc_TypeError, "list indices must be integers or slices, not NoneType");
    cr_assert_eq(PySequence_DelItem(l, -2), 0);
    static const long w[] = { 20 };
    expect_list(l, w, 1);
    PyList_Clear(l);
    cr_assert_eq(PyObject_IsTrue(l), 0);
    Py_DECREF(l);
}

Test(listobject, concat_and_repeat)
{
    static const long a[] = { 1000, 1001 }, b[] = { 2000 };
    PyObject *la = mklist(a, 2), *lb = mklist(b, 1);
    PyObject *r = PySequence_Concat(la, lb);
    static const long ab[] = { 1000, 1001, 2000 };
    expect_list(r, ab, 3);
    cr_assert(r != la && PyList_CheckExact(r));
    cr_assert_eq(PyList_GET_ITEM(r, 0), PyList_GET_ITEM(la, 0), "the same items");
    Py_DECREF(r);
    r = PySequence_Concat(la, la);   /* both locks are one */
    static const long aa[] = { 1000, 1001, 1000, 1001 };
    expect_list(r, aa, 4);
    Py_DECREF(r);
    r = PySequence_Repeat(la, 2);
    expect_list(r, aa, 4);
    Py_DECREF(r);
    for (Py_ssize_t n = 0; n >= -1; n--) {
        r = PySequence_Repeat(la, n);
        cr_assert(PyList_CheckExact(r) && r != la);
        expect_list(r, NULL, 0);
        Py_DECREF(r);
    }
    expect_list(la, a, 2);
    /* Errors: CPython's messages. */
    PyObject *t = PyTuple_New(0);
    cr_assert_null(PySequence_Concat(la, t));
    test_expect_error_is(PyExc_TypeError, "can only concatenate list (not \"tuple\") to list");
    cr_assert_null(PySequence_Repeat(la, PY_SSIZE_T_MAX / 2 + 1));
    test_expect_error_is(PyExc_MemoryError, NULL);
    /* Out of memory: the new list. */
    ft_alloc_fail_after(1);
    cr_assert_null(PySequence_Concat(la, lb));
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    ft_alloc_fail_after(1);
    cr_assert_null(PySequence_Repeat(la, 3));
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    expect_list(la, a, 2);
    cr_assert_eq(Py_REFCNT(PyList_GET_ITEM(la, 0)), 1, "no reference leaked");
    Py_DECREF(t);
    Py_DECREF(lb);
    Py_DECREF(la);
}

Test(listobject, inplace_concat_and_repeat)
{
    static const long a[] = { 1000, 1001 }, b[] = { 2000 };
    PyObject *l = mklist(a, 2), *lb = mklist(b, 1);
    PyObject *r = PySequence_InPlaceConcat(l, lb);
    cr_assert_eq(r, l, "changed in place");
    Py_DECREF(r);
    static const long ab[] = { 1000, 1001, 2000 };
    expect_list(l, ab, 3);
    PyObject *t = PyTuple_Pack(1, PyList_GET_ITEM(lb, 0));   /* any iterable */
    r = PySequence_InPlaceConcat(l, t);
    cr_assert_eq(r, l);
    Py_DECREF(r);
    static const long abb[] = { 1000, 1001, 2000, 2000 };
    expect_list(l, abb, 4);
    cr_assert_null(PySequence_InPlaceConcat(l, Py_None));
    test_expect_error_is(PyExc_TypeError, "'NoneType' object is not iterable");
    r = PySequence_InPlaceConcat(l, l);
    Py_DECREF(r);
    cr_assert_eq(PyList_Size(l), 8, "l += l doubles l");
    r = PySequence_InPlaceRepeat(lb, 3);
    cr_assert_eq(r, lb);
    Py_DECREF(r);
    static const long bbb[] = { 2000, 2000, 2000 };
    expect_list(lb, bbb, 3);
    r = PySequence_InPlaceRepeat(lb, 1);
    Py_DECREF(r);
    expect_list(lb, bbb, 3);
    /* Too many, and out of memory for the bigger array: lb unchanged. */
    cr_assert_null(PySequence_InPlaceRepeat(lb, PY_SSIZE_T_MAX / 2));
    test_expect_error_is(PyExc_MemoryError, NULL);
    ft_alloc_fail_after(1);
    cr_assert_null(PySequence_InPlaceRepeat(lb, 100));
    ft_alloc_fail_after(0);
    test_expect_error_is(PyExc_MemoryError, NULL);
    expect_list(lb, bbb, 3);
    for (Py_ssize_t n = 0; n >= -1; n--) {
        r = PySequence_InPlaceRepeat(l, n);
        cr_assert_eq(r, l);
        Py_DECREF(r);
        expect_list(l, NULL, 0);
    }
    cr_assert_eq(Py_REFCNT(PyList_GET_ITEM(lb, 0)), 4, "lb's three, t's one");
    Py_DECREF(t);
    Py_DECREF(lb);
    Py_DECREF(l);
}

static int
count_visit(PyObject *op, void *arg)
{
    (void)op;
    ++*(int *)arg;
    return 0;
}

Test(listobject, traverse_clear_dealloc)
{
    PyObject *x = num(9000);
    PyObject *l = PyList_New(3);
    PyList_SET_ITEM(l, 0, Py_NewRef(x));
    PyList_SET_ITEM(l, 2, Py_NewRef(x));
    int n = 0;
    cr_assert_eq(PyList_Type.tp_traverse(l, count_visit, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(Py_REFCNT(x), 3);
    cr_assert_eq(PyList_Type.tp_clear(l), 0);
    cr_assert_eq(PyList_Size(l), 0);
    cr_assert_eq(Py_REFCNT(x), 1);
    PyList_Append(l, x);
    Py_DECREF(l);
    cr_assert_eq(Py_REFCNT(x), 1, "dealloc drops the items");
    Py_DECREF(x);
}

/* ---- concurrency ------------------------------------------------------------------------ */

#define NTHREADS_MAX 16

typedef struct {
    PyObject *_Atomic list;        /* published by whoever creates it */
    atomic_int go;                 /* workers start together */
    atomic_int writer_done;
    atomic_int started;
    atomic_long errors;            /* invariant violations seen by workers */
    atomic_long reads;             /* successful lock-free reads */
    atomic_long index_errors;
    atomic_long seen_full;         /* g61: passes that saw all 5000 items */
    long n;                        /* per-test parameter */
    PyObject **universe;           /* g62/g64: the only objects allowed */
    long nuniverse;
} shared_t;

static shared_t S;

typedef struct {
    void *(*fn)(void *);
    long id;
} worker_arg;

static void
reset_shared(void)
{
    memset(&S, 0, sizeof S);
}

/* Run nthreads workers fn(id) with the main thread detached; each attaches
 * with PyGILState_Ensure. */
typedef struct {
    void (*fn)(long);
    long id;
} job_t;

static void *
job_main(void *p)
{
    job_t *j = p;
    PyGILState_STATE g = PyGILState_Ensure();
    atomic_fetch_add(&S.started, 1);
    j->fn(j->id);
    PyGILState_Release(g);
    return NULL;
}

static void
run_threads(int n, void (*fn)(long), void (*fn2)(long), int n2)
{
    pthread_t t[NTHREADS_MAX * 2];
    job_t jobs[NTHREADS_MAX * 2];
    PyThreadState *save = PyEval_SaveThread();
    for (int i = 0; i < n + n2; i++) {
        jobs[i].fn = i < n ? fn : fn2;
        jobs[i].id = i < n ? i : i - n;
        t[i] = test_start_thread(job_main, &jobs[i]);
    }
    bool all = TEST_POLL_UNTIL(atomic_load(&S.started) == n + n2, 20000);
    atomic_store(&S.go, 1);
    for (int i = 0; i < n + n2; i++) {
        test_join_thread(t[i]);
    }
    PyEval_RestoreThread(save);
    cr_assert(all, "workers did not start");
}

/* Spin until the main thread says go (bounded: the main thread sets it
 * right after all workers started). */
static void
wait_go(void)
{
    PyThreadState *ts = PyEval_SaveThread();
    int64_t deadline = test_now_ns() + 30000000000LL * FT_TIMEOUT_SCALE;
    while (!atomic_load(&S.go) && test_now_ns() < deadline) {
        sched_yield();
    }
    PyEval_RestoreThread(ts);
}

/* Be a good QSBR citizen / GIL sharer between iterations. */
static void
breathe(void)
{
    PyThreadState *ts = PyEval_SaveThread();
    PyEval_RestoreThread(ts);
}

/* g61 ---------------------------------------------------------------------------------- */

#define G61_N 5000

static void
g61_writer(long id)
{
    (void)id;
    /* The writer creates the list: it is its owner, so the readers' first
     * reads take the locked path that marks it SHARED. */
    PyObject *l = PyList_New(0);
    atomic_store(&S.list, l);
    wait_go();
    for (long i = 0; i < G61_N; i++) {
        PyObject *o = PyLong_FromLong(i + G61_N);
        if (PyList_Append(l, o) < 0) {
            atomic_fetch_add(&S.errors, 1);
        }
        Py_DECREF(o);
        if (i % 64 == 0) {
            breathe();
        }
    }
    atomic_store(&S.writer_done, 1);
}

static void
g61_reader(long id)
{
    (void)id;
    wait_go();
    PyObject *l;
    while ((l = atomic_load(&S.list)) == NULL) {
        breathe();
    }
    int64_t deadline = test_now_ns() + 30000000000LL * FT_TIMEOUT_SCALE;
    for (;;) {
        int done = atomic_load(&S.writer_done);
        PyObject *it = PyObject_GetIter(l);
        if (it == NULL) {
            atomic_fetch_add(&S.errors, 1);
            PyErr_Clear();
            return;
        }
        long i = 0;
        PyObject *x;
        while ((x = PyIter_Next(it)) != NULL) {
            if (PyLong_AsLong(x) != i + G61_N) {
                atomic_fetch_add(&S.errors, 1);
            }
            Py_DECREF(x);
            i++;
        }
        if (PyErr_Occurred()) {
            atomic_fetch_add(&S.errors, 1);
            PyErr_Clear();
        }
        Py_DECREF(it);
        atomic_fetch_add(&S.reads, i);
        if (done) {
            if (i == G61_N) {
                atomic_fetch_add(&S.seen_full, 1);
            }
            return;
        }
        if (test_now_ns() > deadline) {
            atomic_fetch_add(&S.errors, 1000000);
            return;
        }
        breathe();
    }
}

Test(listobject, g61_readers_iterate_while_writer_appends)
{
    reset_shared();
    run_threads(1, g61_writer, g61_reader, 10);
    cr_assert_eq(atomic_load(&S.errors), 0, "%ld bad reads", atomic_load(&S.errors));
    cr_assert_eq(atomic_load(&S.seen_full), 10, "every reader's last pass sees all items");
    PyObject *l = atomic_load(&S.list);
    cr_assert_eq(PyList_Size(l), G61_N);
    if (ft_free_threaded) {
        cr_assert(ft_gc_bits(l) & FT_GC_SHARED, "non-owner readers mark the list SHARED");
    }
    Py_DECREF(l);
}

/* concat/repeat snapshots ------------------------------------------------------------------ */

/* The writer fills the shared list with 1000, 1001, ... (S.n items),
 * waits until the reader has completed a pass that began after the
 * appends, and clears it; SNAP_ROUNDS times.  The reader concatenates and
 * repeats the list meanwhile: every result must be k copies of one prefix
 * of 1000, 1001, ... (a snapshot), and the pass the writer waits for sees
 * the whole list. */
#define SNAP_ROUNDS 50
#define SNAP_ITEMS 300

static void
snap_writer(long id)
{
    (void)id;
    wait_go();
    PyObject *l = atomic_load(&S.list);
    for (int round = 0; round < SNAP_ROUNDS; round++) {
        for (long i = 0; i < S.n; i++) {
            PyObject *o = PyLong_FromLong(1000 + i);
            if (o == NULL || PyList_Append(l, o) < 0) {
                atomic_fetch_add(&S.errors, 1);
                PyErr_Clear();
            }
            Py_XDECREF(o);
        }
        long base = atomic_load(&S.reads);
        bool seen;
        Py_BEGIN_ALLOW_THREADS
        seen = TEST_POLL_UNTIL(atomic_load(&S.reads) >= base + 2, 20000);
        Py_END_ALLOW_THREADS
        if (!seen) {
            atomic_fetch_add(&S.errors, 1000);
        }
        PyList_Clear(l);
    }
    atomic_store(&S.writer_done, 1);
}

/* r's length if r is k copies of 1000, 1001, ... m - 1 (m may be 0), else
 * -1 (an exception cleared). */
static long
snap_prefix(PyObject *r, long k)
{
    if (r == NULL) {
        PyErr_Clear();
        return -1;
    }
    if (!PyList_CheckExact(r) || PyList_GET_SIZE(r) % k != 0) {
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(r);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyLong_AsLong(PyList_GET_ITEM(r, i)) != 1000 + i % (n / k)) {
            return -1;
        }
    }
    return n / k;
}

static void
snap_reader(long id)
{
    (void)id;
    wait_go();
    PyObject *l = atomic_load(&S.list);
    int64_t deadline = test_now_ns() + 30000000000LL * FT_TIMEOUT_SCALE;
    while (!atomic_load(&S.writer_done)) {
        PyObject *fresh = PyList_New(0);
        PyObject *res[3] = { PySequence_Concat(l, l), PySequence_Repeat(l, 3),
                             fresh != NULL ? PySequence_InPlaceConcat(fresh, l) : NULL };
        static const long copies[3] = { 2, 3, 1 };
        for (int j = 0; j < 3; j++) {
            long m = snap_prefix(res[j], copies[j]);
            if (m < 0) {
                atomic_fetch_add(&S.errors, 1);
            }
            else if (m == S.n) {
                atomic_fetch_add(&S.seen_full, 1);
            }
            Py_XDECREF(res[j]);
        }
        Py_XDECREF(fresh);
        atomic_fetch_add(&S.reads, 1);
        if (test_now_ns() > deadline) {
            atomic_fetch_add(&S.errors, 1000000);
            return;
        }
        breathe();
    }
}

Test(listobject, concat_and_repeat_are_snapshots_while_appending_and_clearing)
{
    reset_shared();
    S.n = SNAP_ITEMS;
    PyObject *l = PyList_New(0);
    atomic_store(&S.list, l);
    run_threads(1, snap_writer, snap_reader, 1);
    cr_assert_eq(atomic_load(&S.errors), 0, "%ld bad results", atomic_load(&S.errors));
    cr_assert_geq(atomic_load(&S.seen_full), 3 * SNAP_ROUNDS,
                  "each round, one pass's three results hold the whole list");
    cr_assert_eq(PyList_Size(l), 0);
    Py_DECREF(l);
}

/* g62 ---------------------------------------------------------------------------------- */

static bool
in_universe(PyObject *x)
{
    for (long k = 0; k < S.nuniverse; k++) {
        if (S.universe[k] == x) {
            return true;
        }
    }
    return false;
}

static void
g62_swapper(long id)
{
    (void)id;
    PyObject *l = atomic_load(&S.list);
    wait_go();
    for (int r = 0; r < 100; r++) {
        PyObject *x = PyList_GetItemRef(l, 1);
        if (x == NULL || !in_universe(x)) {
            atomic_fetch_add(&S.errors, 1);
            PyErr_Clear();
            continue;
        }
        PyList_SetItem(l, 0, x);   /* steals */
        PyObject *y = PyList_GetItemRef(l, 0);
        if (y == NULL || !in_universe(y)) {
            atomic_fetch_add(&S.errors, 1);
            PyErr_Clear();
            continue;
        }
        PyList_SetItem(l, 1, y);
        atomic_fetch_add(&S.reads, 2);
    }
}

Test(listobject, g62_concurrent_swaps)
{
    reset_shared();
    PyObject *u[2] = { num(62000), num(62001) };
    S.universe = u;
    S.nuniverse = 2;
    PyObject *l = PyList_New(0);
    PyList_Append(l, u[0]);
    PyList_Append(l, u[1]);
    atomic_store(&S.list, l);
    run_threads(10, g62_swapper, NULL, 0);
    cr_assert_eq(atomic_load(&S.errors), 0);
    cr_assert_eq(atomic_load(&S.reads), 2000);
    cr_assert(in_universe(PyList_GET_ITEM(l, 0)) && in_universe(PyList_GET_ITEM(l, 1)));
    Py_ssize_t total = Py_REFCNT(u[0]) + Py_REFCNT(u[1]);
    cr_assert_eq(total, 4, "the list's two references plus ours (got %zd)", total);
    Py_DECREF(l);
    cr_assert_eq(Py_REFCNT(u[0]) + Py_REFCNT(u[1]), 2);
    Py_DECREF(u[0]);
    Py_DECREF(u[1]);
}

/* g63 ---------------------------------------------------------------------------------- */

#define G63_OPS 300

/* Push v keeping l sorted (l[0] is the minimum), atomically. */
static void
heap_push(PyObject *l, PyObject *v)
{
    Py_BEGIN_CRITICAL_SECTION(l);
    Py_ssize_t n = PyList_GET_SIZE(l), i = 0;
    long x = PyLong_AsLong(v);
    while (i < n && PyLong_AsLong(PyList_GET_ITEM(l, i)) < x) {
        i++;
    }
    if (PyList_Insert(l, i, v) < 0) {
        atomic_fetch_add(&S.errors, 1);
    }
    Py_END_CRITICAL_SECTION();
}

/* Pop the minimum; NULL if empty. */
static PyObject *
heap_pop(PyObject *l)
{
    PyObject *r = NULL;
    Py_BEGIN_CRITICAL_SECTION(l);
    if (PyList_GET_SIZE(l) > 0) {
        r = Py_NewRef(PyList_GET_ITEM(l, 0));
        if (PyList_SetSlice(l, 0, 1, NULL) < 0) {
            atomic_fetch_add(&S.errors, 1);
        }
    }
    Py_END_CRITICAL_SECTION();
    return r;
}

static atomic_long g63_pushed, g63_popped;

static void
g63_pusher(long id)
{
    PyObject *l = atomic_load(&S.list);
    wait_go();
    for (long k = 0; k < G63_OPS; k++) {
        PyObject *v = PyLong_FromLong(100000 + id * G63_OPS + k);
        heap_push(l, v);
        Py_DECREF(v);
        atomic_fetch_add(&g63_pushed, 1);
        if (k % 3 == 2) {   /* pop two of every three */
            for (int p = 0; p < 2; p++) {
                PyObject *r = heap_pop(l);
                if (r != NULL) {
                    atomic_fetch_add(&g63_popped, 1);
                    Py_DECREF(r);
                }
            }
        }
    }
    atomic_fetch_add(&S.writer_done, 1);
}

static void
g63_reader(long id)
{
    (void)id;
    PyObject *l = atomic_load(&S.list);
    wait_go();
    /* At least 200 reads, even if the pushers finish first (GIL build). */
    for (long i = 0; i < 200 || atomic_load(&S.writer_done) < 10;) {
        PyObject *x = PyList_GetItemRef(l, 0);
        if (x == NULL) {
            if (PyErr_ExceptionMatches(PyExc_IndexError)) {
                atomic_fetch_add(&S.index_errors, 1);
            }
            else {
                atomic_fetch_add(&S.errors, 1);
            }
            PyErr_Clear();
        }
        else {
            long v = PyLong_AsLong(x);
            if (v < 100000 || v >= 100000 + 10 * G63_OPS) {
                atomic_fetch_add(&S.errors, 1);
            }
            Py_DECREF(x);
            atomic_fetch_add(&S.reads, 1);
        }
        if (++i % 32 == 0) {
            breathe();
        }
    }
}

Test(listobject, g63_heap_with_lock_free_peeks)
{
    reset_shared();
    atomic_store(&g63_pushed, 0);
    atomic_store(&g63_popped, 0);
    PyObject *l = PyList_New(0);
    atomic_store(&S.list, l);
    run_threads(10, g63_pusher, g63_reader, 10);
    cr_assert_eq(atomic_load(&S.errors), 0);
    cr_assert_gt(atomic_load(&S.reads) + atomic_load(&S.index_errors), 0);
    long left = atomic_load(&g63_pushed) - atomic_load(&g63_popped);
    cr_assert_eq(PyList_Size(l), left);
    for (Py_ssize_t i = 1; i < left; i++) {
        cr_assert_leq(val(PyList_GET_ITEM(l, i - 1)), val(PyList_GET_ITEM(l, i)));
    }
    Py_DECREF(l);
}

/* g64 ---------------------------------------------------------------------------------- */

#define G64_UNIVERSE 64

static void
g64_mutator(long id)
{
    PyObject *l = atomic_load(&S.list);
    unsigned seed = (unsigned)id * 7 + 1;
    wait_go();
    for (int k = 0; k < 3000; k++) {
        PyObject *u = S.universe[rand_r(&seed) % G64_UNIVERSE];
        int op = rand_r(&seed) % 3;
        Py_ssize_t n = PyList_Size(l);
        if (op == 0 || n < 4) {
            PyList_Append(l, u);
        }
        else if (op == 1) {
            PyList_SetItem(l, rand_r(&seed) % n, Py_NewRef(u));
        }
        else {
            PyList_SetSlice(l, 0, rand_r(&seed) % 3 + 1, NULL);
        }
        PyErr_Clear();   /* an index may be stale: IndexError is fine here */
        if (k % 16 == 0) {
            breathe();
        }
    }
    atomic_fetch_add(&S.writer_done, 1);
}

static void
g64_iterator(long id)
{
    (void)id;
    PyObject *l = atomic_load(&S.list);
    wait_go();
    for (int pass = 0; pass < 50 || atomic_load(&S.writer_done) < 2; pass++) {
        PyObject *it = PyObject_GetIter(l);
        PyObject *x;
        while ((x = PyIter_Next(it)) != NULL) {
            if (!in_universe(x)) {
                atomic_fetch_add(&S.errors, 1);
            }
            atomic_fetch_add(&S.reads, 1);
            Py_DECREF(x);
        }
        if (PyErr_Occurred()) {
            atomic_fetch_add(&S.errors, 1);
            PyErr_Clear();
        }
        Py_DECREF(it);
        breathe();
    }
}

Test(listobject, g64_iterators_never_see_foreign_objects)
{
    reset_shared();
    PyObject *u[G64_UNIVERSE];
    for (int i = 0; i < G64_UNIVERSE; i++) {
        u[i] = num(64000 + i);
    }
    S.universe = u;
    S.nuniverse = G64_UNIVERSE;
    PyObject *l = PyList_New(0);
    for (int i = 0; i < G64_UNIVERSE; i += 2) {
        PyList_Append(l, u[i]);   /* the iterators start on a non-empty list */
    }
    atomic_store(&S.list, l);
    run_threads(2, g64_mutator, g64_iterator, 5);
    cr_assert_eq(atomic_load(&S.errors), 0);
    cr_assert_gt(atomic_load(&S.reads), 0);
    Py_ssize_t n = PyList_Size(l), refs = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        cr_assert(in_universe(PyList_GET_ITEM(l, i)));
    }
    for (int i = 0; i < G64_UNIVERSE; i++) {
        refs += Py_REFCNT(u[i]) - 1;
    }
    cr_assert_eq(refs, n, "the list holds exactly one reference per item");
    Py_DECREF(l);
    for (int i = 0; i < G64_UNIVERSE; i++) {
        cr_assert_eq(Py_REFCNT(u[i]), 1);
        Py_DECREF(u[i]);
    }
}

/* stress --------------------------------------------------------------------------------- */

#define ST_THREADS 8
#define ST_OPS 4000
/* Object ids: thread t creates ids t * ST_OPS + k, each once. */
static atomic_int st_seen[ST_THREADS * ST_OPS];
static atomic_long st_created, st_removed;

static void
st_remove(PyObject *x)
{
    long id = PyLong_AsLong(x) - 1000000;
    if (id < 0 || id >= ST_THREADS * ST_OPS) {
        atomic_fetch_add(&S.errors, 1);
    }
    else {
        atomic_fetch_add(&st_seen[id], 1);
    }
    atomic_fetch_add(&st_removed, 1);
    Py_DECREF(x);
}

static void
st_worker(long id)
{
    PyObject *l = atomic_load(&S.list);
    unsigned seed = (unsigned)id * 31 + 5;
    long next = 0;
    wait_go();
    for (int k = 0; k < ST_OPS; k++) {
        int op = rand_r(&seed) % 4;
        if (op == 0 || next == 0) {   /* append a fresh object */
            PyObject *o = PyLong_FromLong(1000000 + id * ST_OPS + next++);
            if (PyList_Append(l, o) < 0) {
                atomic_fetch_add(&S.errors, 1);
            }
            Py_DECREF(o);
            atomic_fetch_add(&st_created, 1);
        }
        else if (op == 1) {           /* pop the last item, atomically */
            PyObject *r = NULL;
            Py_BEGIN_CRITICAL_SECTION(l);
            Py_ssize_t n = PyList_GET_SIZE(l);
            if (n > 0) {
                r = Py_NewRef(PyList_GET_ITEM(l, n - 1));
                PyList_SetSlice(l, n - 1, n, NULL);
            }
            Py_END_CRITICAL_SECTION();
            if (r != NULL) {
                st_remove(r);
            }
        }
        else if (op == 2 && next < ST_OPS) {   /* replace a random item */
            PyObject *o = PyLong_FromLong(1000000 + id * ST_OPS + next++);
            atomic_fetch_add(&st_created, 1);
            PyObject *old = NULL;
            Py_BEGIN_CRITICAL_SECTION(l);
            Py_ssize_t n = PyList_GET_SIZE(l);
            if (n > 0) {
                Py_ssize_t i = rand_r(&seed) % n;
                old = PyList_GetItemRef(l, i);
                PyList_SetItem(l, i, Py_NewRef(o));
            }
            else {
                PyList_Append(l, o);
            }
            Py_END_CRITICAL_SECTION();
            Py_DECREF(o);
            if (old != NULL) {
                st_remove(old);
            }
        }
        else {                        /* lock-free read */
            Py_ssize_t n = PyList_Size(l);
            PyObject *x = PyList_GetItemRef(l, n > 0 ? rand_r(&seed) % n : 0);
            if (x == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_IndexError)) {
                    atomic_fetch_add(&S.errors, 1);
                }
                PyErr_Clear();
            }
            else {
                long v = PyLong_AsLong(x) - 1000000;
                if (v < 0 || v >= ST_THREADS * ST_OPS) {
                    atomic_fetch_add(&S.errors, 1);
                }
                Py_DECREF(x);
            }
        }
        if (k % 32 == 0) {
            breathe();
        }
    }
}

Test(listobject, stress_random_ops_exact_invariants)
{
    reset_shared();
    for (int i = 0; i < ST_THREADS * ST_OPS; i++) {
        atomic_store(&st_seen[i], 0);
    }
    atomic_store(&st_created, 0);
    atomic_store(&st_removed, 0);
    PyObject *l = PyList_New(0);
    atomic_store(&S.list, l);
    run_threads(ST_THREADS, st_worker, NULL, 0);
    cr_assert_eq(atomic_load(&S.errors), 0);
    Py_ssize_t n = PyList_Size(l);
    cr_assert_eq(n + atomic_load(&st_removed), atomic_load(&st_created),
                 "every created object is in the list or was removed exactly once");
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyList_GET_ITEM(l, i);
        long id = val(x) - 1000000;
        cr_assert(id >= 0 && id < ST_THREADS * ST_OPS);
        cr_assert_eq(Py_REFCNT(x), 1, "exactly the list's reference");
        atomic_fetch_add(&st_seen[id], 1);
    }
    long created = 0;
    for (int t = 0; t < ST_THREADS * ST_OPS; t++) {
        int s = atomic_load(&st_seen[t]);
        cr_assert_leq(s, 1, "object %d seen %d times", t, s);
        created += s;
    }
    cr_assert_eq(created, atomic_load(&st_created));
    Py_DECREF(l);
}

/* The forced slow path: a non-owner's read of an unshared list. */
static PyObject *slow_item;

static void
slow_reader(long id)
{
    (void)id;
    slow_item = PyList_GetItemRef(atomic_load(&S.list), 0);
}

Test(listobject, slow_path_marks_shared)
{
    reset_shared();
    PyObject *x = num(77777);
    PyObject *l = PyList_New(0);
    PyList_Append(l, x);
    if (ft_free_threaded) {
        cr_assert_eq(ft_gc_bits(l) & FT_GC_SHARED, 0, "the owner's own use does not share");
    }
    atomic_store(&S.list, l);
    slow_item = NULL;
    run_threads(1, slow_reader, NULL, 0);
    cr_assert_eq(slow_item, x);
    if (ft_free_threaded) {
        cr_assert(ft_gc_bits(l) & FT_GC_SHARED);
        /* The item may now be read lock-free: marked for deferred free. */
#ifdef Py_GIL_DISABLED
        cr_assert(x->ob_ref_shared & _Py_REF_SHARED_FLAG_MASK);
#endif
    }
    Py_DECREF(slow_item);
    Py_DECREF(l);
    Py_DECREF(x);
}

/* Lock-free means lock-free: with the list's lock held by the main thread,
 * a reader of a SHARED list still gets its item; a reader of an unshared
 * list it does not own waits for the lock (the slow path). */
static atomic_int lf_done;
static PyObject *lf_item;

static void
lf_reader(long id)
{
    (void)id;
    lf_item = PyList_GetItemRef(atomic_load(&S.list), 0);
    atomic_store(&lf_done, 1);
}

static void *
lf_thread(void *p)
{
    (void)p;
    PyGILState_STATE g = PyGILState_Ensure();
    lf_reader(0);
    PyGILState_Release(g);
    return NULL;
}

static void
read_while_locked(PyObject *l, bool *finished_while_locked)
{
    atomic_store(&lf_done, 0);
    lf_item = NULL;
    atomic_store(&S.list, l);
    pthread_t t;
    Py_BEGIN_CRITICAL_SECTION(l);
    /* Attached, holding the lock (taken before the reader starts): the
     * reader either finishes (lock-free) or waits for us.  200 ms is ample
     * for a lock-free read and a bound for the locked one. */
    t = test_start_thread(lf_thread, NULL);
    *finished_while_locked = TEST_POLL_UNTIL(atomic_load(&lf_done), 200);
    Py_END_CRITICAL_SECTION();
    PyThreadState *save = PyEval_SaveThread();
    test_join_thread(t);
    PyEval_RestoreThread(save);
}

Test(listobject, shared_reads_do_not_take_the_lock)
{
    if (!ft_free_threaded) {
        cr_skip_test("the GIL build has no lock-free reads (the GIL excludes writers)");
    }
    reset_shared();
    PyObject *x = num(88888);
    PyObject *l = PyList_New(0);
    PyList_Append(l, x);
    bool finished;
    /* Unshared, owned by the main thread: the reader must wait. */
    read_while_locked(l, &finished);
    cr_assert(!finished, "a non-owner read of an unshared list takes the lock");
    cr_assert_eq(lf_item, x);
    Py_DECREF(lf_item);
    cr_assert(ft_gc_bits(l) & FT_GC_SHARED);
    /* Now SHARED: the reader does not wait. */
    read_while_locked(l, &finished);
    cr_assert(finished, "a read of a SHARED list is lock-free");
    cr_assert_eq(lf_item, x);
    Py_DECREF(lf_item);
    Py_DECREF(l);
    Py_DECREF(x);
}

/* Sorting a SHARED list while readers read it lock-free: readers see
 * only the list's own objects (or nothing while it is empty). */
#define SORT_N 200

static void
sorter(long id)
{
    (void)id;
    PyObject *l = atomic_load(&S.list);
    wait_go();
    /* At least 40 rounds, and on until the readers have read between
     * sorts (a serialising scheduler such as valgrind's may otherwise run
     * every reader only while the list is emptied for a sort). */
    int64_t deadline = test_now_ns() + 20000000000LL * FT_TIMEOUT_SCALE;
    for (int r = 0; r < 40 || (atomic_load(&S.reads) < 50 && test_now_ns() < deadline);
         r++) {
        if (PyList_Reverse(l) < 0 || PyList_Sort(l) < 0) {
            atomic_fetch_add(&S.errors, 1);
            PyErr_Clear();
        }
        breathe();
    }
    atomic_fetch_add(&S.writer_done, 1);
}

static void
sort_reader(long id)
{
    PyObject *l = atomic_load(&S.list);
    unsigned seed = (unsigned)id + 99;
    wait_go();
    for (long i = 0; i < 300 || atomic_load(&S.writer_done) < 1; i++) {
        PyObject *x = PyList_GetItemRef(l, rand_r(&seed) % SORT_N);
        if (x == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_IndexError)) {
                atomic_fetch_add(&S.errors, 1);
            }
            atomic_fetch_add(&S.index_errors, 1);
            PyErr_Clear();
        }
        else {
            if (!in_universe(x)) {
                atomic_fetch_add(&S.errors, 1);
            }
            atomic_fetch_add(&S.reads, 1);
            Py_DECREF(x);
        }
        if (i % 16 == 0) {
            breathe();
        }
    }
}

Test(listobject, sort_with_concurrent_readers)
{
    reset_shared();
    PyObject *u[SORT_N];
    PyObject *l = PyList_New(SORT_N);
    for (int i = 0; i < SORT_N; i++) {
        u[i] = num(50000 + (i * 37) % SORT_N);
        PyList_SET_ITEM(l, i, Py_NewRef(u[i]));
    }
    S.universe = u;
    S.nuniverse = SORT_N;
    atomic_store(&S.list, l);
    run_threads(1, sorter, sort_reader, 4);
    cr_assert_eq(atomic_load(&S.errors), 0);
    cr_assert_gt(atomic_load(&S.reads), 0);
    cr_assert_eq(PyList_Size(l), SORT_N);
    for (int i = 0; i < SORT_N; i++) {
        cr_assert_eq(val(PyList_GET_ITEM(l, i)), 50000 + i, "sorted");
    }
    Py_DECREF(l);
    for (int i = 0; i < SORT_N; i++) {
        cr_assert_eq(Py_REFCNT(u[i]), 1);
        Py_DECREF(u[i]);
    }
}

/* ---- repr ------------------------------------------------------------------------------ */

/* Append o to l and drop the caller's reference. */
static void
append_new(PyObject *l, PyObject *o)
{
    cr_assert_not_null(o);
    cr_assert_eq(PyList_Append(l, o), 0);
    Py_DECREF(o);
}

Test(listobject, repr_formats_nested_and_empty)
{
    PyObject *l = PyList_New(0);
    test_expect_repr(l, "[]");
    append_new(l, num(1));
    test_expect_repr(l, "[1]");
    append_new(l, PyUnicode_FromString("a"));
    append_new(l, PyUnicode_FromString("it's"));
    PyObject *inner = PyList_New(0);
    append_new(inner, num(2));
    append_new(inner, PyList_New(0));
    append_new(l, inner);
    append_new(l, PyTuple_Pack(1, Py_None));
    PyObject *d = PyDict_New();
    cr_assert_eq(PyDict_SetItemString(d, "k", Py_True), 0);
    append_new(l, d);
    append_new(l, PyFloat_FromDouble(2.5));
    test_expect_repr(l, "[1, 'a', \"it's\", [2, []], (None,), {'k': True}, 2.5]");
    /* str falls back to repr */
    PyObject *s = PyObject_Str(l);
    cr_assert_str_eq(PyUnicode_AsUTF8(s), "[1, 'a', \"it's\", [2, []], (None,), {'k': True}, 2.5]");
    Py_DECREF(s);
    Py_DECREF(l);
}

Test(listobject, repr_print_to_a_file)
{
    PyObject *l = PyList_New(0);
    append_new(l, num(1));
    append_new(l, PyUnicode_FromString("b"));
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    cr_assert_eq(PyObject_Print(l, f, 0), 0);
    cr_assert_eq(PyObject_Print(l, f, Py_PRINT_RAW), 0);   /* str(): the same */
    char buf[64] = { 0 };
    rewind(f);
    cr_assert_eq(fread(buf, 1, sizeof buf - 1, f), strlen("[1, 'b'][1, 'b']"));
    cr_assert_str_eq(buf, "[1, 'b'][1, 'b']");
    fclose(f);
    Py_DECREF(l);
}

Test(listobject, repr_of_a_list_inside_itself_is_elided)
{
    PyObject *l = PyList_New(0);
    append_new(l, num(1));
    cr_assert_eq(PyList_Append(l, l), 0);
    test_expect_repr(l, "[1, [...]]");
    test_expect_repr(l, "[1, [...]]");   /* the guard was left: the same again */
    PyObject *outer = PyList_New(0);
    cr_assert_eq(PyList_Append(outer, l), 0);
    cr_assert_eq(PyList_Append(outer, l), 0);
    test_expect_repr(outer, "[[1, [...]], [1, [...]]]");   /* siblings are not recursion */
    cr_assert_eq(Py_ReprEnter(l), 0, "no guard left behind");
    Py_ReprLeave(l);
    cr_assert_eq(PyList_Clear(l), 0);   /* break the cycle: no cycle GC yet */
    Py_DECREF(outer);
    Py_DECREF(l);
}

/* An item whose repr raises ValueError, or, while repr_clears is set,
 * clears that list (dropping every item, itself included) and returns
 * "<cleared>". */
static PyObject *repr_clears;

static PyObject *
reprer_repr(PyObject *self)
{
    (void)self;
    if (repr_clears == NULL) {
        PyErr_SetString(PyExc_ValueError, "no repr for you");
        return NULL;
    }
    if (PyList_Clear(repr_clears) < 0) {
        return NULL;
    }
    return PyUnicode_FromString("<cleared>");
}

static PyObject *
reprer_new(void)
{
    PyType_Slot slots[] = { { Py_tp_repr, TEST_FP(reprer_repr) }, { 0, NULL } };
    PyType_Spec spec = { "test.reprer", sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT, slots };
    PyTypeObject *type = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(type);
    repr_clears = NULL;
    return PyType_GenericNew(type, NULL, NULL);
}

Test(listobject, repr_error_from_an_item_propagates)
{
    PyObject *l = PyList_New(0);
    append_new(l, num(1));
    append_new(l, reprer_new());
    append_new(l, num(3));
    cr_assert_null(PyObject_Repr(l));
    test_expect_error_is(PyExc_ValueError, "no repr for you");
    PyObject *outer = PyList_New(0);
    cr_assert_eq(PyList_Append(outer, l), 0);
    cr_assert_null(PyObject_Repr(outer), "from a nested list too");
    test_expect_error_is(PyExc_ValueError, "no repr for you");
    cr_assert_eq(Py_ReprEnter(outer), 0, "both guards were left");
    cr_assert_eq(Py_ReprEnter(l), 0);
    Py_ReprLeave(l);
    Py_ReprLeave(outer);
    cr_assert_eq(PyList_SetItem(l, 1, num(2)), 0);
    test_expect_repr(outer, "[[1, 2, 3]]");
    Py_DECREF(outer);
    Py_DECREF(l);
}

Test(listobject, repr_survives_an_item_that_empties_the_list)
{
    /* The list holds the only reference to the clearing item and to the
     * ints after it: the clear frees them while the repr runs (ASan would
     * see a borrowed item used after that). */
    PyObject *l = PyList_New(0);
    append_new(l, reprer_new());
    append_new(l, num(1002));
    append_new(l, num(1003));
    repr_clears = l;
    test_expect_repr(l, "[<cleared>]");
    repr_clears = NULL;
    cr_assert_eq(PyList_Size(l), 0);
    test_expect_repr(l, "[]");
    Py_DECREF(l);
}

Test(listobject, repr_out_of_memory_is_a_memory_error)
{
    /* A list holding a list, a tuple and a dict: the loop below reaches
     * every allocation of all three reprs (the tuple's and the dict's are
     * not tested again in their own files). */
    PyObject *l = PyList_New(0);
    append_new(l, num(1001));
    append_new(l, PyUnicode_FromString("x"));
    PyObject *inner = PyList_New(0);
    append_new(inner, num(2002));
    append_new(l, inner);
    PyObject *t = PyTuple_Pack(1, inner);
    append_new(l, t);
    PyObject *d = PyDict_New();
    PyObject *v = num(4004);
    cr_assert_eq(PyDict_SetItemString(d, "k", v), 0);
    Py_DECREF(v);
    append_new(l, d);
    PyObject *containers[] = { l, inner, t, d };
    /* Fail the 1st, 2nd, ... allocation until the repr succeeds: every
     * failure is a clean MemoryError with no guard left behind. */
    int failures = 0;
    for (long nth = 1; nth < 400; nth++) {
        ft_alloc_fail_after(nth);
        PyObject *r = PyObject_Repr(l);
        ft_alloc_fail_after(0);
        if (r != NULL) {
            cr_assert_str_eq(PyUnicode_AsUTF8(r), "[1001, 'x', [2002], ([2002],), {'k': 4004}]");
            Py_DECREF(r);
            break;
        }
        test_expect_error_is(PyExc_MemoryError, NULL);
        failures++;
        for (int i = 0; i < 4; i++) {
            cr_assert_eq(Py_ReprEnter(containers[i]), 0, "container %d still guarded", i);
            Py_ReprLeave(containers[i]);
        }
    }
    cr_assert_geq(failures, 10, "guards, buffers, the items' strs and the results");
    cr_assert_eq(PyList_Size(l), 5);
    cr_assert_eq(PyDict_Size(d), 1);
    Py_DECREF(l);
}

/* One thread reprs a shared list while another empties it and appends
 * 1000..1000+REPR_N-1 again, one at a time.  Whatever the interleaving,
 * the item at index i is always 1000 + i, and the repr reads index after
 * index until one is out of range, so every result must be a prefix of
 * the full list cut at an item boundary ("[]" included). */
enum { REPR_N = 16, REPR_ROUNDS = 1000 };
static atomic_long repr_full, repr_empty, repr_partial;
static atomic_bool repr_reader_done;
static atomic_long repr_refills;
static char repr_expected[REPR_N * 6 + 4];   /* "[1000, 1001, ...]" */

static void
repr_refiller(long id)
{
    (void)id;
    PyObject *l = atomic_load(&S.list);
    wait_go();
    int64_t deadline = test_now_ns() + 60000000000LL * FT_TIMEOUT_SCALE;
    while (!atomic_load(&repr_reader_done) && test_now_ns() < deadline) {
        if (PyList_Clear(l) < 0) {
            atomic_fetch_add(&S.errors, 1);
        }
        for (long i = 0; i < REPR_N; i++) {
            PyObject *o = PyLong_FromLong(1000 + i);
            if (PyList_Append(l, o) < 0) {
                atomic_fetch_add(&S.errors, 1);
            }
            Py_DECREF(o);
            if (i % 4 == 0) {
                breathe();   /* GIL build: a reader may see this partial state */
            }
        }
        atomic_fetch_add(&repr_refills, 1);
        breathe();
    }
}

static void
repr_reader(long id)
{
    (void)id;
    PyObject *l = atomic_load(&S.list);
    const char *full = repr_expected;
    size_t full_len = strlen(full);
    wait_go();
    /* At least REPR_ROUNDS, and on until the refiller has run a few times
     * (the GIL build hands the GIL over only every few milliseconds). */
    int64_t deadline = test_now_ns() + 30000000000LL * FT_TIMEOUT_SCALE;
    for (long round = 0; round < REPR_ROUNDS ||
                         (atomic_load(&repr_refills) < 20 && test_now_ns() < deadline);
         round++) {
        PyObject *r = PyObject_Repr(l);
        Py_ssize_t n = 0;
        const char *u = r != NULL ? PyUnicode_AsUTF8AndSize(r, &n) : NULL;
        size_t len = (size_t)n;
        if (u != NULL && strcmp(u, "[]") == 0) {
            atomic_fetch_add(&repr_empty, 1);
        }
        else if (u != NULL && len == full_len && strcmp(u, full) == 0) {
            atomic_fetch_add(&repr_full, 1);
        }
        else if (u != NULL && len > 2 && len < full_len && u[len - 1] == ']' &&
                 memcmp(u, full, len - 1) == 0 && full[len - 1] == ',') {
            atomic_fetch_add(&repr_partial, 1);
        }
        else {
            atomic_fetch_add(&S.errors, 1);
            PyErr_Clear();
        }
        Py_XDECREF(r);
        atomic_fetch_add(&S.reads, 1);
        breathe();
    }
    atomic_store(&repr_reader_done, true);
}

Test(listobject, repr_while_another_thread_clears_and_refills)
{
    reset_shared();
    atomic_store(&repr_full, 0);
    atomic_store(&repr_empty, 0);
    atomic_store(&repr_partial, 0);
    atomic_store(&repr_reader_done, false);
    atomic_store(&repr_refills, 0);
    PyObject *l = PyList_New(0);
    for (long i = 0; i < REPR_N; i++) {
        append_new(l, num(1000 + i));
    }
    PyObject *r = PyObject_Repr(l);
    snprintf(repr_expected, sizeof repr_expected, "%s", PyUnicode_AsUTF8(r));
    Py_DECREF(r);
    cr_assert_eq(strncmp(repr_expected, "[1000, 1001, ", 13), 0);
    atomic_store(&S.list, l);
    run_threads(1, repr_refiller, repr_reader, 1);
    cr_assert_eq(atomic_load(&S.errors), 0, "a repr that is no prefix of the list, or an error");
    cr_assert_geq(atomic_load(&S.reads), REPR_ROUNDS);
    cr_assert_geq(atomic_load(&repr_refills), 20, "the refiller ran while the reader did");
    cr_assert_eq(atomic_load(&repr_full) + atomic_load(&repr_empty) +
                     atomic_load(&repr_partial), atomic_load(&S.reads));
    cr_log_info("list repr under clear/refill: %ld full, %ld empty, %ld partial, %ld refills",
                atomic_load(&repr_full), atomic_load(&repr_empty), atomic_load(&repr_partial),
                atomic_load(&repr_refills));
    Py_DECREF(l);
}
