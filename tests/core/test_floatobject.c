/* float (core/floatobject.c): creation, PyFloat_AsDouble through
 * __float__ / __index__ and its TypeErrors, hash (CPython's values,
 * consistent with int and bool; infinities; NaN), comparison with floats
 * and ints (NaN, exactness), the number slots (floor division, modulo,
 * divmod, power), PyFloat_FromString and the float() constructor (subclass
 * instances too), repr (shortest round trip,
 * CPython's notation switches), out of memory, and 8 threads creating and
 * dropping floats, also each other's.
 *
 * Worker threads only record into atomics; the main thread asserts.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_number.h"
#include "ft_types.h"

#include <float.h>
#include <math.h>

TestSuite(floatobject, .init = test_runtime_setup, .fini = test_runtime_teardown,
          .timeout = FT_TIMEOUT(60));

#define NB PyFloat_Type.tp_as_number

static double
fval(PyObject *o)
{
    cr_assert_not_null(o);
    cr_assert(PyFloat_CheckExact(o));
    double v = PyFloat_AS_DOUBLE(o);
    Py_DECREF(o);
    return v;
}

/* Same value and same sign (for zeros). */
static bool
same(double a, double b)
{
    return a == b && signbit(a) == signbit(b);
}

Test(floatobject, from_and_as_double)
{
    double vals[] = { 0.0, -0.0, 1.5, -1e300, DBL_MIN, DBL_MAX, 5e-324, INFINITY };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        PyObject *f = PyFloat_FromDouble(vals[i]);
        cr_assert_not_null(f);
        cr_assert(PyFloat_CheckExact(f));
        cr_assert(PyFloat_Check(f));
        cr_assert_not(PyLong_Check(f));
        cr_assert_eq(Py_REFCNT(f), 1);
        cr_assert_eq(PyFloat_AS_DOUBLE(f), vals[i]);
        cr_assert_eq(PyFloat_AsDouble(f), vals[i]);
        cr_assert_eq(signbit(PyFloat_AS_DOUBLE(f)), signbit(vals[i]));
        Py_DECREF(f);
    }
    PyObject *n = PyFloat_FromDouble(NAN);
    cr_assert(isnan(PyFloat_AsDouble(n)));
    Py_DECREF(n);
    cr_assert_null(PyErr_Occurred());
    cr_assert_not(PyFloat_Check(Py_None));
    cr_assert_not(PyFloat_Check(Py_True));
}

Test(floatobject, as_double_of_ints)
{
    PyObject *i = PyLong_FromLong(-42);
    cr_assert_eq(PyFloat_AsDouble(i), -42.0, "int has __index__ (and __float__)");
    Py_DECREF(i);
    cr_assert_eq(PyFloat_AsDouble(Py_True), 1.0);
    cr_assert_null(PyErr_Occurred());
}

/* A type with only __index__, and one whose __float__ returns a non-float. */
static PyObject *
idx_index(PyObject *self)
{
    (void)self;
    return PyLong_FromLong(7);
}

static PyObject *
badf_float(PyObject *self)
{
    (void)self;
    return PyLong_FromLong(3);
}

static PyObject *
failf_float(PyObject *self)
{
    (void)self;
    PyErr_SetString(PyExc_RuntimeError, "float failed");
    return NULL;
}

static PyNumberMethods idx_number = { .nb_index = idx_index };
static PyNumberMethods badf_number = { .nb_float = badf_float };
static PyNumberMethods failf_number = { .nb_float = failf_float };

static PyTypeObject idx_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.Idx", .tp_basicsize = sizeof(PyObject),
    .tp_as_number = &idx_number, .tp_flags = Py_TPFLAGS_DEFAULT,
};
static PyTypeObject badf_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.BadF", .tp_basicsize = sizeof(PyObject),
    .tp_as_number = &badf_number, .tp_flags = Py_TPFLAGS_DEFAULT,
};
static PyTypeObject failf_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.FailF", .tp_basicsize = sizeof(PyObject),
    .tp_as_number = &failf_number, .tp_flags = Py_TPFLAGS_DEFAULT,
};
static PyObject idx_obj = _PyObject_HEAD_INIT(&idx_type);
static PyObject badf_obj = _PyObject_HEAD_INIT(&badf_type);
static PyObject failf_obj = _PyObject_HEAD_INIT(&failf_type);

Test(floatobject, as_double_protocols_and_errors)
{
    cr_assert_eq(PyType_Ready(&idx_type), 0);
    cr_assert_eq(PyType_Ready(&badf_type), 0);
    cr_assert_eq(PyType_Ready(&failf_type), 0);
    cr_assert_eq(PyFloat_AsDouble(&idx_obj), 7.0, "via __index__");
    cr_assert_null(PyErr_Occurred());
    cr_assert_eq(PyFloat_AsDouble(&badf_obj), -1.0);
    test_expect_error(PyExc_TypeError, "test.BadF.__float__ returned non-float (type int)");
    cr_assert_eq(PyFloat_AsDouble(&failf_obj), -1.0);
    test_expect_error(PyExc_RuntimeError, "float failed");
    cr_assert_eq(PyFloat_AsDouble(Py_None), -1.0);
    test_expect_error(PyExc_TypeError, "must be real number, not NoneType");
    cr_assert_eq(PyFloat_AsDouble(NULL), -1.0);
    test_expect_error(PyExc_TypeError, "bad argument type");
}

/* ---- float(x) ---------------------------------------------------------------- */

static PyObject *
str(const char *s)
{
    PyObject *u = PyUnicode_FromString(s);
    cr_assert_not_null(u);
    return u;
}

Test(floatobject, from_string)
{
    /* accepted (values printed by CPython 3.13) */
    struct { const char *s; double v; } ok[] = {
        { "1_000.5", 1000.5 }, { "  -1.5e3 ", -1500.0 }, { ".5", 0.5 }, { "1.", 1.0 },
        { "inf", INFINITY }, { "-Infinity", -INFINITY }, { "+INF", INFINITY }, { "1e999", INFINITY },
        { "0.1", 0.1 }, { "-0", -0.0 }, { "1E-3", 0.001 }, { "1e+1_0", 1e10 }, { "\t7\n", 7.0 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        PyObject *u = str(ok[i].s);
        PyObject *f = PyFloat_FromString(u);
        cr_assert_not_null(f, "'%s'", ok[i].s);
        cr_assert(same(PyFloat_AS_DOUBLE(f), ok[i].v), "'%s' -> %.17g", ok[i].s, PyFloat_AS_DOUBLE(f));
        Py_DECREF(f);
        Py_DECREF(u);
    }
    PyObject *u = str(" -nAn ");
    PyObject *f = PyFloat_FromString(u);
    cr_assert(isnan(PyFloat_AS_DOUBLE(f)));
    Py_DECREF(f);
    Py_DECREF(u);
    const char *bad[] = { "1_e5", ".", "0x1p3", "nan(1)", "1e", "1e_5", "1__0", "-_1", "", "  ",
                          "1.2.3", "infinit", "e5", "1e5_", "_1", "1 2", "+-1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        u = str(bad[i]);
        cr_assert_null(PyFloat_FromString(u), "'%s'", bad[i]);
        char msg[64];
        snprintf(msg, sizeof msg, "could not convert string to float: '%s'", bad[i]);
        test_expect_error(PyExc_ValueError, msg);
        Py_DECREF(u);
    }
    u = PyUnicode_FromStringAndSize("1\0", 2);
    cr_assert_null(PyFloat_FromString(u));
    test_expect_error(PyExc_ValueError, "could not convert string to float");
    Py_DECREF(u);
    cr_assert_null(PyFloat_FromString(Py_None));
    test_expect_error(PyExc_TypeError, "not 'NoneType'");
    u = str("2.5");
    ft_alloc_fail_after(1);
    cr_assert_null(PyFloat_FromString(u));
    test_expect_error(PyExc_MemoryError, "");
    ft_alloc_fail_after(0);
    Py_DECREF(u);
}

Test(floatobject, float_constructor)
{
    PyTypeObject *t = &PyFloat_Type;
    cr_assert(same(fval(test_call_new(t, PyTuple_New(0), NULL)), 0.0), "float()");
    PyObject *f = PyFloat_FromDouble(2.5);
    PyObject *again = test_call_new(t, PyTuple_Pack(1, f), NULL);
    cr_assert_eq(again, f, "float(float) is the float");
    cr_assert_eq(Py_REFCNT(f), 2, "a new reference");
    Py_DECREF(again);
    Py_DECREF(f);
    PyObject *i = PyLong_FromLong(-3), *u = str(" 1e3 ");
    cr_assert_eq(fval(test_call_new(t, PyTuple_Pack(1, i), NULL)), -3.0);
    cr_assert_eq(fval(test_call_new(t, PyTuple_Pack(1, u), NULL)), 1000.0);
    cr_assert_eq(fval(test_call_new(t, PyTuple_Pack(1, Py_True), NULL)), 1.0);
    cr_assert_eq(PyType_Ready(&idx_type), 0);
    cr_assert_eq(fval(test_call_new(t, PyTuple_Pack(1, &idx_obj), NULL)), 7.0, "__index__");
    cr_assert_null(test_call_new(t, PyTuple_Pack(1, Py_None), NULL));
    test_expect_error(PyExc_TypeError,
                      "float() argument must be a string or a real number, not 'NoneType'");
    cr_assert_null(test_call_new(t, PyTuple_Pack(2, i, i), NULL));
    test_expect_error(PyExc_TypeError, "float expected at most 1 argument, got 2");
    PyObject *kw = PyDict_New();
    cr_assert_eq(PyDict_SetItemString(kw, "x", i), 0);
    cr_assert_null(test_call_new(t, PyTuple_New(0), kw));
    test_expect_error(PyExc_TypeError, "float() takes no keyword arguments");
    Py_DECREF(kw);
    cr_assert_eq(PyType_Ready(&badf_type), 0);
    cr_assert_null(test_call_new(t, PyTuple_Pack(1, &badf_obj), NULL));
    test_expect_error(PyExc_TypeError, "__float__ returned non-float");
    Py_DECREF(i);
    Py_DECREF(u);
    /* a subclass */
    PyType_Slot slots[] = { { Py_tp_base, &PyFloat_Type }, { 0, NULL } };
    PyType_Spec spec = { "test.MyFloat", 0, 0, Py_TPFLAGS_DEFAULT, slots };
    PyTypeObject *sub = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(sub);
    u = str("-0.5");
    PyObject *o = test_call_new(sub, PyTuple_Pack(1, u), NULL);
    Py_DECREF(u);
    cr_assert_not_null(o);
    cr_assert_eq(Py_TYPE(o), sub);
    cr_assert(PyFloat_Check(o));
    cr_assert_not(PyFloat_CheckExact(o));
    cr_assert_eq(PyFloat_AsDouble(o), -0.5);
    PyObject *plain = NB->nb_float(o);
    cr_assert(PyFloat_CheckExact(plain), "float(subclass instance) is a plain float");
    cr_assert_eq(fval(plain), -0.5);
    f = test_call_new(sub, PyTuple_Pack(1, o), NULL);
    cr_assert_eq(Py_TYPE(f), sub);
    cr_assert_eq(PyFloat_AS_DOUBLE(f), -0.5);
    Py_DECREF(f);
    Py_DECREF(o);
}

/* ---- hash ---------------------------------------------------------------------- */

Test(floatobject, hash_matches_cpython)
{
    /* values printed by CPython 3.13 (64-bit) */
    struct { double v; Py_hash_t h; } cases[] = {
        { 0.0, 0 }, { -0.0, 0 }, { 1.0, 1 }, { -1.0, -2 }, { 0.5, 1152921504606846976LL },
        { 1.5, 1152921504606846977LL }, { -2.25, -576460752303423490LL },
        { 1e100, 1822893315824342674LL }, { 1e-300, 482449582752280463LL },
        { 3.14, 322818021289917443LL }, { -0.1, -230584300921369408LL },
        { 4611686018427387904.0, 2 }, { 1e16, 10000000000000000LL },
        { INFINITY, 314159 }, { -INFINITY, -314159 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        PyObject *f = PyFloat_FromDouble(cases[i].v);
        cr_assert_eq(PyObject_Hash(f), cases[i].h, "hash(%.17g)", cases[i].v);
        Py_DECREF(f);
    }
}

Test(floatobject, hash_of_integral_floats_is_the_ints)
{
    for (int64_t v = -300; v <= 300; v += 7) {
        PyObject *i = PyLong_FromLongLong(v * 1000003), *f = PyFloat_FromDouble((double)(v * 1000003));
        cr_assert_eq(PyObject_Hash(i), PyObject_Hash(f), "%lld", (long long)(v * 1000003));
        Py_DECREF(i);
        Py_DECREF(f);
    }
    PyObject *one = PyFloat_FromDouble(1.0), *zero = PyFloat_FromDouble(0.0);
    cr_assert_eq(PyObject_Hash(one), PyObject_Hash(Py_True), "hash(1.0) == hash(True)");
    cr_assert_eq(PyObject_Hash(zero), PyObject_Hash(Py_False));
    Py_DECREF(one);
    Py_DECREF(zero);
}

Test(floatobject, hash_of_nan_is_per_object)
{
    PyObject *a = PyFloat_FromDouble(NAN), *b = PyFloat_FromDouble(NAN);
    Py_hash_t ha = PyObject_Hash(a);
    cr_assert_neq(ha, -1);
    cr_assert_eq(PyObject_Hash(a), ha, "stable");
    cr_assert_neq(PyObject_Hash(b), ha, "distinct NaN objects hash apart");
    Py_DECREF(a);
    Py_DECREF(b);
}

/* ---- comparison ---------------------------------------------------------------- */

Test(floatobject, compare)
{
    PyObject *a = PyFloat_FromDouble(1.25), *b = PyFloat_FromDouble(2.5), *c = PyFloat_FromDouble(1.25);
    PyObject *nan = PyFloat_FromDouble(NAN), *z = PyFloat_FromDouble(0.0), *nz = PyFloat_FromDouble(-0.0);
    cr_assert_eq(PyObject_RichCompareBool(a, b, Py_LT), 1);
    cr_assert_eq(PyObject_RichCompareBool(a, b, Py_GE), 0);
    cr_assert_eq(PyObject_RichCompareBool(a, c, Py_EQ), 1);
    cr_assert_eq(PyObject_RichCompareBool(a, c, Py_NE), 0);
    cr_assert_eq(PyObject_RichCompareBool(b, a, Py_GT), 1);
    cr_assert_eq(PyObject_RichCompareBool(a, c, Py_LE), 1);
    cr_assert_eq(PyObject_RichCompareBool(z, nz, Py_EQ), 1, "0.0 == -0.0");
    cr_assert_eq(PyObject_RichCompareBool(nan, a, Py_EQ), 0);
    cr_assert_eq(PyObject_RichCompareBool(nan, a, Py_LT), 0);
    cr_assert_eq(PyObject_RichCompareBool(nan, a, Py_GT), 0);
    cr_assert_eq(PyObject_RichCompareBool(nan, a, Py_NE), 1);
    PyObject *r = PyObject_RichCompare(nan, nan, Py_EQ);
    cr_assert_eq(r, Py_False, "NaN != NaN by value");
    cr_assert_eq(PyObject_RichCompareBool(nan, nan, Py_EQ), 1, "identity shortcut (CPython's)");
    /* with ints and bools, either side */
    PyObject *one = PyLong_FromLong(1);
    cr_assert_eq(PyObject_RichCompareBool(a, one, Py_GT), 1);
    cr_assert_eq(PyObject_RichCompareBool(one, a, Py_LT), 1);
    cr_assert_eq(PyObject_RichCompareBool(a, Py_True, Py_GT), 1);
    cr_assert_eq(PyObject_RichCompareBool(z, Py_False, Py_EQ), 1);
    cr_assert_eq(PyObject_RichCompareBool(nz, PyLong_FromLong(0), Py_EQ), 1);
    /* foreign types: identity / TypeError */
    cr_assert_eq(PyObject_RichCompareBool(a, Py_None, Py_EQ), 0);
    cr_assert_eq(PyObject_RichCompareBool(a, Py_None, Py_GE), -1);
    test_expect_error(PyExc_TypeError,
                      "'>=' not supported between instances of 'float' and 'NoneType'");
    Py_DECREF(a); Py_DECREF(b); Py_DECREF(c); Py_DECREF(nan); Py_DECREF(z); Py_DECREF(nz);
}

/* ---- number slots ------------------------------------------------------------- */

Test(floatobject, arithmetic)
{
    PyObject *a = PyFloat_FromDouble(1.5), *b = PyFloat_FromDouble(-0.25);
    PyObject *i = PyLong_FromLong(3);
    cr_assert_eq(fval(NB->nb_add(a, b)), 1.25);
    cr_assert_eq(fval(NB->nb_subtract(a, b)), 1.75);
    cr_assert_eq(fval(NB->nb_multiply(a, b)), -0.375);
    cr_assert_eq(fval(NB->nb_true_divide(a, b)), -6.0);
    cr_assert_eq(fval(NB->nb_add(a, i)), 4.5, "float + int");
    cr_assert_eq(fval(NB->nb_subtract(i, a)), 1.5, "int - float (reflected slot)");
    cr_assert_eq(fval(NB->nb_true_divide(i, a)), 2.0);
    cr_assert_eq(fval(NB->nb_multiply(Py_True, a)), 1.5);
    cr_assert_eq(fval(NB->nb_negative(b)), 0.25);
    cr_assert_eq(fval(NB->nb_absolute(b)), 0.25);
    cr_assert_eq(NB->nb_positive(a), a, "+float is the float itself");
    Py_DECREF(a);
    cr_assert_eq(NB->nb_float(a), a);
    Py_DECREF(a);
    cr_assert_eq(NB->nb_bool(a), 1);
    PyObject *z = PyFloat_FromDouble(-0.0), *nan = PyFloat_FromDouble(NAN);
    cr_assert_eq(NB->nb_bool(z), 0);
    cr_assert_eq(NB->nb_bool(nan), 1);
    cr_assert_eq(ft_object_is_true(z), 0);
    PyObject *t = NB->nb_int(b);
    cr_assert_eq(PyLong_AsLong(t), 0, "int(-0.25) == 0");
    PyObject *big = PyFloat_FromDouble(-1e15 - 0.5);
    t = NB->nb_int(big);
    cr_assert_eq(PyLong_AsLongLong(t), -1000000000000000LL);
    Py_DECREF(t);
    cr_assert_null(NB->nb_int(nan));
    test_expect_error(PyExc_ValueError, "NaN");
    PyObject *r = NB->nb_add(a, Py_None);
    cr_assert_eq(r, Py_NotImplemented);
    r = NB->nb_true_divide(Py_None, a);
    cr_assert_eq(r, Py_NotImplemented);
    cr_assert_null(NB->nb_true_divide(a, z));
    test_expect_error(PyExc_ZeroDivisionError, "float division by zero");
    cr_assert_null(NB->nb_true_divide(a, PyLong_FromLong(0)));
    test_expect_error(PyExc_ZeroDivisionError, "float division by zero");
    Py_DECREF(a); Py_DECREF(b); Py_DECREF(z); Py_DECREF(nan); Py_DECREF(big);
}

static PyObject *
fop(binaryfunc f, double a, double b)
{
    PyObject *x = PyFloat_FromDouble(a), *y = PyFloat_FromDouble(b);
    PyObject *r = f(x, y);
    Py_DECREF(x);
    Py_DECREF(y);
    return r;
}

Test(floatobject, floor_division_modulo_divmod)
{
    /* values printed by CPython 3.13 */
    struct { double x, y, q, m; } cases[] = {
        { 7.5, 2, 3.0, 1.5 }, { -7.5, 2, -4.0, 0.5 }, { 7.5, -2, -4.0, -0.5 },
        { -7.5, -2, 3.0, -1.5 }, { -0.0, 3, -0.0, 0.0 }, { 0.0, -3, -0.0, -0.0 },
        { 1e300, 1e-300, INFINITY, 4.891554850853602e-301 },
        { 5, INFINITY, 0.0, 5.0 }, { -5, INFINITY, -1.0, INFINITY },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double x = cases[i].x, y = cases[i].y;
        double q = fval(fop(NB->nb_floor_divide, x, y));
        double m = fval(fop(NB->nb_remainder, x, y));
        cr_assert(same(q, cases[i].q), "%g // %g = %.17g", x, y, q);
        cr_assert(same(m, cases[i].m), "%g %% %g = %.17g", x, y, m);
        PyObject *t = fop(NB->nb_divmod, x, y);
        cr_assert_not_null(t);
        cr_assert(PyTuple_CheckExact(t));
        cr_assert(same(PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(t, 0)), cases[i].q));
        cr_assert(same(PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(t, 1)), cases[i].m));
        Py_DECREF(t);
    }
    PyObject *i7 = PyLong_FromLong(7), *f2 = PyFloat_FromDouble(2.0);
    cr_assert_eq(fval(NB->nb_floor_divide(i7, f2)), 3.0, "int // float");
    cr_assert_eq(fval(NB->nb_remainder(f2, i7)), 2.0, "float % int");
    cr_assert_null(fop(NB->nb_floor_divide, 1, 0));
    test_expect_error(PyExc_ZeroDivisionError, "float floor division by zero");
    cr_assert_null(fop(NB->nb_remainder, 1, -0.0));
    test_expect_error(PyExc_ZeroDivisionError, "float modulo by zero");
    cr_assert_null(fop(NB->nb_divmod, 1, 0));
    test_expect_error(PyExc_ZeroDivisionError, "float divmod()");
    cr_assert_eq(NB->nb_remainder(f2, Py_None), Py_NotImplemented);
    /* out of memory: the quotient, the remainder, the tuple */
    for (int n = 1; n <= 3; n++) {
        ft_alloc_fail_after(n);
        cr_assert_null(NB->nb_divmod(i7, f2), "allocation %d fails", n);
        test_expect_error(PyExc_MemoryError, "");
    }
    ft_alloc_fail_after(0);
    Py_DECREF(i7);
    Py_DECREF(f2);
}

static PyObject *
fpow(double a, double b)
{
    PyObject *x = PyFloat_FromDouble(a), *y = PyFloat_FromDouble(b);
    PyObject *r = NB->nb_power(x, y, Py_None);
    Py_DECREF(x);
    Py_DECREF(y);
    return r;
}

Test(floatobject, power)
{
    cr_assert_eq(fval(fpow(2.0, 0.5)), 1.4142135623730951);
    cr_assert_eq(fval(fpow(-8.0, 3.0)), -512.0);
    cr_assert_eq(fval(fpow(0.0, 0.0)), 1.0);
    cr_assert(same(fval(fpow(INFINITY, -1.0)), 0.0));
    cr_assert_eq(fval(fpow(1.0, NAN)), 1.0);
    PyObject *f = PyFloat_FromDouble(1.5), *two = PyLong_FromLong(2);
    cr_assert_eq(fval(NB->nb_power(f, two, Py_None)), 2.25, "float ** int");
    cr_assert_eq(fval(NB->nb_power(two, f, Py_None)), pow(2.0, 1.5), "int ** float");
    cr_assert_null(NB->nb_power(f, two, two));
    test_expect_error(PyExc_TypeError,
                      "pow() 3rd argument not allowed unless all arguments are integers");
    cr_assert_null(fpow(0.0, -1.0));
    test_expect_error(PyExc_ZeroDivisionError, "0.0 cannot be raised to a negative power");
    cr_assert_null(fpow(-8.0, 0.5));
    test_expect_error(PyExc_ValueError, "fractional power");
    cr_assert_null(fpow(10.0, 400.0));
    test_expect_error(PyExc_OverflowError, "Numerical result out of range");
    cr_assert_eq(NB->nb_power(f, Py_None, Py_None), Py_NotImplemented);
    Py_DECREF(f);
    Py_DECREF(two);
}

Test(floatobject, out_of_memory)
{
    ft_alloc_fail_after(1);
    cr_assert_null(PyFloat_FromDouble(1.0));
    test_expect_error(PyExc_MemoryError, "");
    PyObject *a = PyFloat_FromDouble(2.0);
    ft_alloc_fail_after(1);
    cr_assert_null(NB->nb_add(a, a));
    test_expect_error(PyExc_MemoryError, "");
    ft_alloc_fail_after(1);
    cr_assert_null(PyLong_Type.tp_as_number->nb_float(PyLong_FromLong(5)));
    test_expect_error(PyExc_MemoryError, "");
    ft_alloc_fail_after(0);
    Py_DECREF(a);
}

/* ---- repr ---------------------------------------------------------------------- */

Test(floatobject, repr_is_cpythons)
{
    /* expected strings printed by CPython 3.13 */
    struct { double v; const char *s; } cases[] = {
        { 0.1, "0.1" }, { 1.0 / 3, "0.3333333333333333" }, { 1e22, "1e+22" }, { 1e16, "1e+16" },
        { 123456789012345678.0, "1.2345678901234568e+17" }, { 1e-5, "1e-05" },
        { 0.0001, "0.0001" }, { 5e-324, "5e-324" }, { DBL_MAX, "1.7976931348623157e+308" },
        { -0.0, "-0.0" }, { 0.0, "0.0" }, { 100.0, "100.0" }, { 1.5e300, "1.5e+300" },
        { 2.5e-7, "2.5e-07" }, { 0.3, "0.3" }, { 12345.678, "12345.678" },
        { 1e15, "1000000000000000.0" }, { -123.0, "-123.0" }, { 0.00012, "0.00012" },
        { INFINITY, "inf" }, { -INFINITY, "-inf" }, { NAN, "nan" },
        /* powers of two, where the nearest 16-digit decimal does not read
         * back but its upper neighbour does */
        { 0x1p-1017, "7.120236347223045e-307" }, { 0x1p-957, "8.209073602596753e-289" },
        { 0x1p1023, "8.98846567431158e+307" }, { 0x1p60, "1.152921504606847e+18" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        ft_double_repr(cases[i].v, buf, sizeof buf);
        cr_assert_str_eq(buf, cases[i].s);
        PyObject *f = PyFloat_FromDouble(cases[i].v);
        PyObject *s = PyObject_Repr(f);
        cr_assert_not_null(s);
        cr_assert_str_eq(PyUnicode_AsUTF8(s), cases[i].s);
        Py_DECREF(s);
        s = PyObject_Str(f);
        cr_assert_str_eq(PyUnicode_AsUTF8(s), cases[i].s);
        Py_DECREF(s);
        Py_DECREF(f);
    }
    char small[5];
    ft_double_repr(1.2345678, small, sizeof small);
    cr_assert_str_eq(small, "1.23", "truncated to the buffer");
}

Test(floatobject, repr_round_trips)
{
    /* pseudo-random bit patterns (a fixed LCG), finite ones only */
    uint64_t x = 88172645463325252ULL;
    int tested = 0;
    for (int i = 0; i < 20000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        double d;
        memcpy(&d, &x, sizeof d);
        if (!isfinite(d)) {
            continue;
        }
        char buf[32];
        ft_double_repr(d, buf, sizeof buf);
        cr_assert_eq(strtod(buf, NULL), d, "%s", buf);
        cr_assert_leq(strlen(buf), 24);
        tested++;
    }
    cr_assert_gt(tested, 19000);
}

/* ---- threads -------------------------------------------------------------------- */

/* Thread t's item i (distinct across threads, exact in a double). */
static double
float_value(int t, int i)
{
    return t * 1e6 + i + 0.25;
}

/* Phase 1: a float to hand over, and its negation made and dropped
 * privately. */
static PyObject *
float_make(int t, int i, bool *ok)
{
    PyObject *tmp = PyFloat_FromDouble(-float_value(t, i));
    PyObject *f = PyFloat_FromDouble(float_value(t, i));
    *ok = tmp != NULL && PyFloat_AS_DOUBLE(tmp) == -float_value(t, i);
    Py_XDECREF(tmp);
    return f;
}

/* Phase 2, on another thread: the value and its hash. */
static bool
float_check(PyObject *f, int t, int i)
{
    return PyFloat_AsDouble(f) == float_value(t, i) &&
           PyObject_Hash(f) == ft_hash_double(float_value(t, i));
}

Test(floatobject, eight_threads_create_and_drop, .timeout = FT_TIMEOUT(120))
{
    static const test_handoff_ops ops = { float_make, float_check, 3 };
    test_handoff_run(&ops);
}
