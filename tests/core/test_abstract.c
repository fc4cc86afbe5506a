/* The abstract object protocol (core/abstract.c): size, truth,
 * subscription, iteration, the sequence functions and index conversion,
 * with each error case (types and messages as CPython's). */
#include "harness.h"
#include "test_util.h"

#include "ft_alloc.h"

TestSuite(abstract, .timeout = FT_TIMEOUT(30));

static void setup(void) { Py_InitializeEx(0); }
static void teardown(void) { cr_assert_eq(Py_FinalizeEx(), 0); }

static void
expect_exc(PyObject *type, const char *msg)
{
    cr_assert_not_null(PyErr_Occurred(), "no exception set");
    PyObject *e = PyErr_GetRaisedException();
    cr_assert(PyErr_GivenExceptionMatches(e, type), "wrong exception type %s",
              Py_TYPE(e)->tp_name);
    if (msg != NULL) {
        cr_assert_str_eq(PyException_GetMessageUTF8(e), msg);
    }
    Py_DECREF(e);
}

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

Test(abstract, size_and_length, .init = setup, .fini = teardown)
{
    PyObject *l = list3();
    cr_assert_eq(PyObject_Size(l), 3);
    cr_assert_eq(PyObject_Length(l), 3);
    cr_assert_eq(PySequence_Size(l), 3);
    cr_assert_eq(PySequence_Length(l), 3);
    cr_assert_eq(PyObject_Size(Py_None), -1);
    expect_exc(PyExc_TypeError, "object of type 'NoneType' has no len()");
    cr_assert_eq(PySequence_Size(Py_None), -1);
    expect_exc(PyExc_TypeError, "object of type 'NoneType' has no len()");
    cr_assert_eq(PyObject_Size(NULL), -1);
    expect_exc(PyExc_SystemError, NULL);
    cr_assert_eq(PySequence_Size(NULL), -1);
    expect_exc(PyExc_SystemError, NULL);
    Py_DECREF(l);
}

Test(abstract, truth, .init = setup, .fini = teardown)
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

Test(abstract, getitem_setitem_delitem, .init = setup, .fini = teardown)
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
    expect_exc(PyExc_TypeError, "'NoneType' object is not subscriptable");
    cr_assert_eq(PyObject_SetItem(Py_None, k, k), -1);
    expect_exc(PyExc_TypeError, "'NoneType' object does not support item assignment");
    cr_assert_eq(PyObject_DelItem(Py_None, k), -1);
    expect_exc(PyExc_TypeError, "'NoneType' object does not support item deletion");
    /* NULL arguments. */
    cr_assert_null(PyObject_GetItem(NULL, k));
    expect_exc(PyExc_SystemError, NULL);
    cr_assert_null(PyObject_GetItem(l, NULL));
    expect_exc(PyExc_SystemError, NULL);
    cr_assert_eq(PyObject_SetItem(l, k, NULL), -1);
    expect_exc(PyExc_SystemError, NULL);
    cr_assert_eq(PyObject_DelItem(l, NULL), -1);
    expect_exc(PyExc_SystemError, NULL);
    /* A huge index: IndexError from the conversion. */
    PyObject *huge = PyLong_FromUnsignedLongLong(~0ULL);
    if (huge == NULL) {
        /* ints are limited to 64 bits for now (core/longobject.c): no int
         * outside Py_ssize_t's range exists yet. */
        expect_exc(PyExc_OverflowError, NULL);
    }
    else {
        cr_assert_null(PyObject_GetItem(l, huge));
        expect_exc(PyExc_IndexError, "cannot fit 'int' into an index-sized integer");
        Py_DECREF(huge);
    }
    Py_DECREF(k);
    Py_DECREF(l);
}

Test(abstract, iteration, .init = setup, .fini = teardown)
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
    expect_exc(PyExc_TypeError, "'NoneType' object is not iterable");
    cr_assert_null(PyObject_GetIter(NULL));
    expect_exc(PyExc_SystemError, NULL);
    cr_assert_null(PyIter_Next(l));
    expect_exc(PyExc_TypeError, "'list' object is not an iterator");
    cr_assert_eq(PyObject_SelfIter(l), l);
    Py_DECREF(l);
    Py_DECREF(l);
}

Test(abstract, sequence_functions, .init = setup, .fini = teardown)
{
    PyObject *l = list3();
    cr_assert(PySequence_Check(l));
    cr_assert(!PySequence_Check(Py_None));
    PyObject *x = PySequence_GetItem(l, -3);
    cr_assert_eq(PyLong_AsLong(x), 100);
    Py_DECREF(x);
    cr_assert_null(PySequence_GetItem(l, 3));
    expect_exc(PyExc_IndexError, "list index out of range");
    cr_assert_null(PySequence_GetItem(Py_None, 0));
    expect_exc(PyExc_TypeError, "'NoneType' object does not support indexing");
    PyObject *v = num(999);
    cr_assert_eq(PySequence_SetItem(l, -1, v), 0);
    cr_assert_eq(PySequence_Contains(l, v), 1);
    cr_assert_eq(PySequence_SetItem(Py_None, 0, v), -1);
    expect_exc(PyExc_TypeError, "'NoneType' object does not support item assignment");
    cr_assert_eq(PySequence_DelItem(l, 0), 0);
    cr_assert_eq(PySequence_DelItem(Py_None, 0), -1);
    expect_exc(PyExc_TypeError, "'NoneType' object doesn't support item deletion");
    cr_assert_eq(PySequence_Contains(Py_None, v), -1);
    expect_exc(PyExc_TypeError, "argument of type 'NoneType' is not iterable");
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
    expect_exc(PyExc_TypeError, "need a sequence");
    cr_assert_null(PySequence_List(Py_None));
    expect_exc(PyExc_TypeError, NULL);
    cr_assert_null(PySequence_Tuple(NULL));
    expect_exc(PyExc_SystemError, NULL);
    ft_alloc_fail_after(1);
    cr_assert_null(PySequence_List(t));
    ft_alloc_fail_after(0);
    expect_exc(PyExc_MemoryError, NULL);
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

static void *
fn_ptr(void (*f)(void))
{
    void *p;
    memcpy(&p, &f, sizeof p);
    return p;
}

Test(abstract, number_index, .init = setup, .fini = teardown)
{
    PyType_Slot slots[] = { { Py_nb_index, fn_ptr((void (*)(void))idx_index) }, { 0, NULL } };
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
    expect_exc(PyExc_TypeError, "__index__ returned non-int (type NoneType)");
    index_result = NULL;
    PyErr_SetString(PyExc_ValueError, "boom");
    cr_assert_null(PyNumber_Index(o));
    expect_exc(PyExc_ValueError, "boom");
    cr_assert_null(PyNumber_Index(Py_None));
    expect_exc(PyExc_TypeError, "'NoneType' object cannot be interpreted as an integer");
    cr_assert_null(PyNumber_Index(NULL));
    expect_exc(PyExc_SystemError, NULL);
    /* An int is its own index; clamping. */
    PyObject *big = PyLong_FromUnsignedLongLong(~0ULL);
    if (big == NULL) {   /* 64-bit ints only for now, as above */
        expect_exc(PyExc_OverflowError, NULL);
    }
    else {
        cr_assert_eq(PyNumber_AsSsize_t(big, NULL), PY_SSIZE_T_MAX);
        cr_assert_eq(PyNumber_AsSsize_t(big, PyExc_OverflowError), -1);
        expect_exc(PyExc_OverflowError, "cannot fit 'int' into an index-sized integer");
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
