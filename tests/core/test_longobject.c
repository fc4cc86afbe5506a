/* int and bool (core/longobject.c): creation from every C type, the small
 * ints (identity, no allocation, immortal: never written, on read-only
 * pages), conversions to C with their TypeError / OverflowError /
 * SystemError cases, __index__, PyLong_FromString, the int() and bool()
 * constructors (subclass instances too), hash (CPython's values, consistent
 * with float and bool), comparison, arithmetic, power, bitwise operators
 * with their 64-bit OverflowError, repr, bool as an int subclass, out of
 * memory, and 8 threads creating and dropping ints (also each other's).
 *
 * Worker threads only record into atomics; the main thread asserts.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_number.h"
#include "ft_object.h"
#include "ft_types.h"

#include <math.h>
#include <sys/mman.h>

TestSuite(longobject, .init = test_runtime_setup, .fini = test_runtime_teardown,
          .timeout = FT_TIMEOUT(60));

static int64_t
val(PyObject *o)
{
    cr_assert_not_null(o);
    cr_assert(PyLong_Check(o));
    long v = PyLong_AsLong(o);
    cr_assert_not_null(o);
    cr_assert_null(PyErr_Occurred());
    return v;
}

/* val(o), then drop o */
static int64_t
take(PyObject *o)
{
    int64_t v = val(o);
    Py_DECREF(o);
    return v;
}

/* ---- creation -------------------------------------------------------------- */

Test(longobject, from_every_c_type)
{
    PyObject *o;
    o = PyLong_FromLong(LONG_MIN);
    cr_assert(PyLong_CheckExact(o));
    cr_assert_eq(val(o), LONG_MIN);
    Py_DECREF(o);
    o = PyLong_FromLong(LONG_MAX);
    cr_assert_eq(val(o), LONG_MAX);
    Py_DECREF(o);
    o = PyLong_FromLongLong(-123456789012345LL);
    cr_assert_eq(PyLong_AsLongLong(o), -123456789012345LL);
    Py_DECREF(o);
    o = PyLong_FromSsize_t(PY_SSIZE_T_MIN);
    cr_assert_eq(PyLong_AsSsize_t(o), PY_SSIZE_T_MIN);
    Py_DECREF(o);
    o = PyLong_FromSize_t((size_t)INT64_MAX);
    cr_assert_eq(PyLong_AsSize_t(o), (size_t)INT64_MAX);
    Py_DECREF(o);
    o = PyLong_FromUnsignedLong(1000);
    cr_assert_eq(PyLong_AsUnsignedLong(o), 1000UL);
    Py_DECREF(o);
    o = PyLong_FromUnsignedLongLong(4000000000ULL);
    cr_assert_eq(PyLong_AsUnsignedLongLong(o), 4000000000ULL);
    Py_DECREF(o);
}

Test(longobject, from_unsigned_above_int64_overflows)
{
    cr_assert_null(PyLong_FromUnsignedLong(ULONG_MAX));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(PyLong_FromUnsignedLongLong((unsigned long long)INT64_MAX + 1));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(PyLong_FromSize_t(SIZE_MAX));
    test_expect_error(PyExc_OverflowError, "64-bit");
    PyObject *o = PyLong_FromUnsignedLongLong((unsigned long long)INT64_MAX);
    cr_assert_eq(val(o), INT64_MAX);
    Py_DECREF(o);
}

Test(longobject, from_double)
{
    PyObject *o = PyLong_FromDouble(3.99);
    cr_assert_eq(val(o), 3, "truncates toward zero");
    o = PyLong_FromDouble(-3.99);
    cr_assert_eq(val(o), -3);
    o = PyLong_FromDouble(-0.0);
    cr_assert_eq(val(o), 0);
    o = PyLong_FromDouble(1e18);
    cr_assert_eq(val(o), 1000000000000000000LL);
    Py_DECREF(o);
    o = PyLong_FromDouble(-9223372036854775808.0);
    cr_assert_eq(val(o), INT64_MIN, "-2**63 is representable");
    Py_DECREF(o);
    cr_assert_null(PyLong_FromDouble(9223372036854775808.0));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(PyLong_FromDouble(-1e30));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(PyLong_FromDouble(INFINITY));
    test_expect_error(PyExc_OverflowError, "cannot convert float infinity to integer");
    cr_assert_null(PyLong_FromDouble(-INFINITY));
    test_expect_error(PyExc_OverflowError, "infinity");
    cr_assert_null(PyLong_FromDouble(NAN));
    test_expect_error(PyExc_ValueError, "cannot convert float NaN to integer");
}

/* ---- small ints -------------------------------------------------------------- */

Test(longobject, small_ints_are_shared_and_immortal)
{
    for (long v = -5; v <= 256; v++) {
        PyObject *a = PyLong_FromLong(v);
        PyObject *b = PyLong_FromLongLong(v);
        cr_assert_eq(a, b, "%ld: one object", v);
        cr_assert(_Py_IsImmortal(a), "%ld", v);
        cr_assert_eq(val(a), v);
        if (v >= 0) {
            cr_assert_eq(PyLong_FromSize_t((size_t)v), a);
            cr_assert_eq(PyLong_FromUnsignedLong((unsigned long)v), a);
        }
        cr_assert_eq(PyLong_FromSsize_t(v), a);
        cr_assert_eq(PyLong_FromDouble((double)v), a);
    }
    PyObject *x = PyLong_FromLong(257), *y = PyLong_FromLong(257);
    cr_assert_neq(x, y, "257 is not small");
    cr_assert_not(_Py_IsImmortal(x));
    cr_assert_eq(Py_REFCNT(x), 1);
    Py_DECREF(x);
    Py_DECREF(y);
    x = PyLong_FromLong(-6);
    cr_assert_not(_Py_IsImmortal(x), "-6 is not small");
    Py_DECREF(x);
}

Test(longobject, small_ints_need_no_memory)
{
    ft_alloc_fail_after(1);
    cr_assert_not_null(PyLong_FromLong(7));
    cr_assert_not_null(PyLong_FromLong(-5));
    cr_assert_not_null(PyLong_FromLong(256));
    cr_assert_null(PyErr_Occurred());
    cr_assert_null(PyLong_FromLong(1000), "the armed failure hits the first real allocation");
    test_expect_error(PyExc_MemoryError, "");
    ft_alloc_fail_after(0);
}

/* Everything that touches a small int: references, creation from every C
 * type, arithmetic with small results, hash, comparison, conversion. */
static long hammer_bad;   /* written by one thread at a time (joined) */

static void
hammer_small(void *arg)
{
    (void)arg;
    PyObject *nb_one = PyLong_FromLong(1);
    for (int i = 0; i < 200; i++) {
        for (long v = -5; v <= 256; v++) {
            PyObject *o = PyLong_FromLong(v);
            Py_INCREF(o);
            PyObject *again = PyLong_FromSsize_t(v);
            PyObject *sum = v < 256 ? PyLong_Type.tp_as_number->nb_add(o, nb_one) : NULL;
            if (again != o || PyLong_AsLong(o) != v || PyObject_Hash(o) != (v == -1 ? -2 : v) ||
                PyObject_RichCompareBool(o, again, Py_EQ) != 1 ||
                (v < 256 && (sum == NULL || PyLong_AsLong(sum) != v + 1))) {
                hammer_bad++;
            }
            Py_XDECREF(sum);
            Py_DECREF(again);
            Py_DECREF(o);
            Py_DECREF(o);
        }
    }
}

Test(longobject, small_ints_are_never_written)
{
    /* The small ints sit alone in whole pages: make them read-only, so that
     * any write to one of them (a refcount, an owner id) is a SIGSEGV,
     * then use them from this thread and another one. */
    void *start;
    size_t size;
    ft_small_ints_region(&start, &size);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    cr_assert_eq((uintptr_t)start % page, 0);
    cr_assert_eq(size % page, 0);
    PyObject *o = PyLong_FromLong(-5), *last = PyLong_FromLong(256);
    cr_assert((char *)o >= (char *)start && (char *)last + sizeof(PyLongObject) <= (char *)start + size);
    cr_assert_eq(mprotect(start, size, PROT_READ), 0);
    hammer_bad = 0;
    hammer_small(NULL);
    test_run_on_thread(hammer_small, NULL);
    cr_assert_eq(mprotect(start, size, PROT_READ | PROT_WRITE), 0);
    cr_assert_eq(hammer_bad, 0);
    cr_assert_eq(Py_REFCNT(o), _Py_IMMORTAL_REFCNT);
    if (ft_free_threaded) {
        uintptr_t tid;
        memcpy(&tid, o, sizeof tid);   /* ob_tid: the first word */
        cr_assert_eq(tid, 0, "no owner");
    }
}

/* ---- conversions to C ---------------------------------------------------------- */

/* A type with __index__ (nb_index) returning `index_result`. */
static PyObject *index_result;

static PyObject *
idx_index(PyObject *self)
{
    (void)self;
    if (index_result == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "index failed");
        return NULL;
    }
    return Py_NewRef(index_result);
}

static PyNumberMethods idx_number = { .nb_index = idx_index };

static PyTypeObject idx_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.Idx",
    .tp_basicsize = sizeof(PyObject),
    .tp_as_number = &idx_number,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

static PyObject idx_obj = _PyObject_HEAD_INIT(&idx_type);

Test(longobject, as_long_uses_index)
{
    cr_assert_eq(PyType_Ready(&idx_type), 0);
    index_result = PyLong_FromLong(1234567);
    cr_assert_eq(PyLong_AsLong(&idx_obj), 1234567);
    cr_assert_eq(PyLong_AsLongLong(&idx_obj), 1234567);
    int ovf = 5;
    cr_assert_eq(PyLong_AsLongAndOverflow(&idx_obj, &ovf), 1234567);
    cr_assert_eq(ovf, 0);
    ovf = 5;
    cr_assert_eq(PyLong_AsLongLongAndOverflow(&idx_obj, &ovf), 1234567);
    cr_assert_eq(ovf, 0);
    cr_assert_eq(Py_REFCNT(index_result), 1, "the __index__ result was released");
    cr_assert_null(PyErr_Occurred());
    /* the functions that want a real int do not call __index__ */
    cr_assert_eq(PyLong_AsSsize_t(&idx_obj), -1);
    test_expect_error(PyExc_TypeError, "an integer is required");
    cr_assert_eq(PyLong_AsSize_t(&idx_obj), (size_t)-1);
    test_expect_error(PyExc_TypeError, "an integer is required");
    cr_assert_eq(PyLong_AsUnsignedLong(&idx_obj), (unsigned long)-1);
    test_expect_error(PyExc_TypeError, "an integer is required");
    cr_assert_eq(PyLong_AsUnsignedLongLong(&idx_obj), (unsigned long long)-1);
    test_expect_error(PyExc_TypeError, "an integer is required");
    cr_assert_eq(PyLong_AsDouble(&idx_obj), -1.0);
    test_expect_error(PyExc_TypeError, "an integer is required");
    Py_DECREF(index_result);

    /* __index__ returning a non-int, or failing */
    index_result = PyFloat_FromDouble(1.5);
    cr_assert_eq(PyLong_AsLong(&idx_obj), -1);
    test_expect_error(PyExc_TypeError, "__index__ returned non-int (type float)");
    cr_assert_eq(Py_REFCNT(index_result), 1);
    Py_DECREF(index_result);
    index_result = NULL;
    cr_assert_eq(PyLong_AsLongLong(&idx_obj), -1);
    test_expect_error(PyExc_RuntimeError, "index failed");
}

Test(longobject, as_long_errors)
{
    /* no __index__ */
    cr_assert_eq(PyLong_AsLong(Py_None), -1);
    test_expect_error(PyExc_TypeError, "'NoneType' object cannot be interpreted as an integer");
    PyObject *f = PyFloat_FromDouble(2.0);
    cr_assert_eq(PyLong_AsLongLong(f), -1, "float has no __index__");
    test_expect_error(PyExc_TypeError, "'float' object cannot be interpreted as an integer");
    int ovf = 3;
    cr_assert_eq(PyLong_AsLongAndOverflow(f, &ovf), -1);
    cr_assert_eq(ovf, 0);
    test_expect_error(PyExc_TypeError, "cannot be interpreted as an integer");
    cr_assert_eq(PyLong_AsSsize_t(f), -1);
    test_expect_error(PyExc_TypeError, "an integer is required");
    Py_DECREF(f);
    /* NULL: a bad internal call */
    cr_assert_eq(PyLong_AsLong(NULL), -1);
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    cr_assert_eq(PyLong_AsSsize_t(NULL), -1);
    test_expect_error(PyExc_SystemError, "bad argument");
    cr_assert_eq(PyLong_AsDouble(NULL), -1.0);
    test_expect_error(PyExc_SystemError, "bad argument");
    /* -1 is also a valid value: no error set */
    PyObject *m = PyLong_FromLong(-1);
    cr_assert_eq(PyLong_AsLong(m), -1);
    cr_assert_null(PyErr_Occurred());
}

Test(longobject, unsigned_of_negative_overflows)
{
    PyObject *m = PyLong_FromLong(-1);
    cr_assert_eq(PyLong_AsUnsignedLong(m), (unsigned long)-1);
    test_expect_error(PyExc_OverflowError, "can't convert negative value to unsigned int");
    cr_assert_eq(PyLong_AsUnsignedLongLong(m), (unsigned long long)-1);
    test_expect_error(PyExc_OverflowError, "negative");
    cr_assert_eq(PyLong_AsSize_t(m), (size_t)-1);
    test_expect_error(PyExc_OverflowError, "can't convert negative value to size_t");
    PyObject *z = PyLong_FromLong(0);
    cr_assert_eq(PyLong_AsSize_t(z), 0);
    cr_assert_null(PyErr_Occurred());
}

Test(longobject, as_int_masks_and_pointers)
{
    PyObject *o = PyLong_FromLong(INT_MAX);
    cr_assert_eq(PyLong_AsInt(o), INT_MAX);
    Py_DECREF(o);
    o = PyLong_FromLong(INT_MIN);
    cr_assert_eq(PyLong_AsInt(o), INT_MIN);
    Py_DECREF(o);
    o = PyLong_FromLong((long)INT_MAX + 1);
    cr_assert_eq(PyLong_AsInt(o), -1);
    test_expect_error(PyExc_OverflowError, "Python int too large to convert to C int");
    Py_DECREF(o);
    o = PyLong_FromLong((long)INT_MIN - 1);
    cr_assert_eq(PyLong_AsInt(o), -1);
    test_expect_error(PyExc_OverflowError, "C int");
    cr_assert_eq(PyLong_AsInt(Py_None), -1);
    test_expect_error(PyExc_TypeError, "cannot be interpreted as an integer");
    cr_assert_eq(PyLong_AsUnsignedLongLongMask(o), (unsigned long long)((long long)INT_MIN - 1));
    Py_DECREF(o);
    PyObject *m = PyLong_FromLong(-1);
    cr_assert_eq(PyLong_AsUnsignedLongMask(m), ULONG_MAX, "-1 mod 2**64");
    cr_assert_eq(PyLong_AsUnsignedLongLongMask(Py_True), 1ULL);
    cr_assert_eq(PyLong_AsUnsignedLongMask(Py_None), (unsigned long)-1);
    test_expect_error(PyExc_TypeError, "cannot be interpreted as an integer");
    cr_assert_null(PyErr_Occurred());
    int local;
    PyObject *p = PyLong_FromVoidPtr(&local);
    cr_assert_not_null(p);
    cr_assert_eq(PyLong_AsVoidPtr(p), (void *)&local);
    Py_DECREF(p);
    cr_assert_eq(PyLong_AsVoidPtr(PyLong_FromVoidPtr(NULL)), NULL);
    cr_assert_null(PyErr_Occurred());
    cr_assert_eq(PyLong_AsVoidPtr(m), (void *)UINTPTR_MAX);
    cr_assert_null(PyLong_AsVoidPtr(Py_None));
    test_expect_error(PyExc_TypeError, "an integer is required");
}

Test(longobject, as_double)
{
    PyObject *o = PyLong_FromLong(-12345);
    cr_assert_eq(PyLong_AsDouble(o), -12345.0);
    Py_DECREF(o);
    o = PyLong_FromLongLong((1LL << 53) + 1);
    cr_assert_eq(PyLong_AsDouble(o), 9007199254740992.0, "rounds to nearest even");
    Py_DECREF(o);
    o = PyLong_FromLongLong(INT64_MAX);
    cr_assert_eq(PyLong_AsDouble(o), 9223372036854775808.0);
    Py_DECREF(o);
}

/* ---- parsing and int() ------------------------------------------------------ */

Test(longobject, from_string)
{
    /* accepted (values printed by CPython 3.13) */
    struct { const char *s; int base; int64_t v; } ok[] = {
        { "  -0x_ff  ", 0, -255 }, { "0b101", 0, 5 }, { "0o17", 8, 15 }, { "z", 36, 35 },
        { "Z1", 36, 1261 }, { "1_000", 10, 1000 }, { "00", 0, 0 }, { "0_0", 0, 0 },
        { "-9223372036854775808", 10, INT64_MIN }, { "9223372036854775807", 0, INT64_MAX },
        { "0b1", 16, 177 }, { "+42\n", 10, 42 }, { "0X7fffffffffffffff", 0, INT64_MAX },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *end = NULL;
        PyObject *o = PyLong_FromString(ok[i].s, &end, ok[i].base);
        cr_assert_not_null(o, "'%s' base %d", ok[i].s, ok[i].base);
        cr_assert_eq(val(o), ok[i].v, "'%s'", ok[i].s);
        cr_assert_eq(end, ok[i].s + strlen(ok[i].s), "pend at the end");
        Py_DECREF(o);
    }
    /* rejected, with CPython's messages */
    struct { const char *s; int base; const char *msg; } bad[] = {
        { "01", 0, "invalid literal for int() with base 0: '01'" },
        { "1__0", 10, "invalid literal for int() with base 10: '1__0'" },
        { "_1", 10, "with base 10: '_1'" }, { "1_", 10, "with base 10: '1_'" },
        { "0x", 16, "with base 16: '0x'" }, { "", 10, "with base 10: ''" },
        { "12a", 10, "'12a'" }, { "0x1", 10, "'0x1'" }, { "9", 8, "with base 8: '9'" },
        { "- 1", 10, "'- 1'" }, { "1 2", 10, "'1 2'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_null(PyLong_FromString(bad[i].s, NULL, bad[i].base), "'%s'", bad[i].s);
        test_expect_error(PyExc_ValueError, bad[i].msg);
    }
    char *end = NULL;
    const char *s = "12a";
    cr_assert_null(PyLong_FromString(s, &end, 10));
    test_expect_error(PyExc_ValueError, "invalid literal");
    cr_assert_eq(end, s + 2, "pend at the offending character");
    cr_assert_null(PyLong_FromString("9223372036854775808", NULL, 10));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(PyLong_FromString("-9223372036854775809", NULL, 10));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(PyLong_FromString("99999999999999999999999999", NULL, 10));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(PyLong_FromString("1", NULL, 1));
    test_expect_error(PyExc_ValueError, "int() arg 2 must be >= 2 and <= 36");
    cr_assert_null(PyLong_FromString("1", NULL, 37));
    test_expect_error(PyExc_ValueError, ">= 2 and <= 36");
    cr_assert_null(PyLong_FromString(NULL, NULL, 10));
    test_expect_error(PyExc_SystemError, "bad argument");
    ft_alloc_fail_after(1);
    cr_assert_null(PyLong_FromString("1000", NULL, 10));
    test_expect_error(PyExc_MemoryError, "");
}

static PyObject *
str(const char *s)
{
    PyObject *u = PyUnicode_FromString(s);
    cr_assert_not_null(u);
    return u;
}

Test(longobject, int_constructor)
{
    PyTypeObject *t = &PyLong_Type;
    cr_assert_eq(test_call_new(t, PyTuple_New(0), NULL), PyLong_FromLong(0), "int()");
    PyObject *big = PyLong_FromLong(123456);
    PyObject *same = test_call_new(t, PyTuple_Pack(1, big), NULL);
    cr_assert_eq(same, big, "int(int) is the int");
    cr_assert_eq(Py_REFCNT(big), 2, "a new reference");
    Py_DECREF(same);
    Py_DECREF(big);
    PyObject *f = PyFloat_FromDouble(-7.9), *u = str(" 1_234 "), *u16 = str("ff");
    PyObject *b16 = PyLong_FromLong(16), *b0 = PyLong_FromLong(0), *b1 = PyLong_FromLong(1);
    cr_assert_eq(take(test_call_new(t, PyTuple_Pack(1, f), NULL)), -7, "int(float) truncates");
    cr_assert_eq(take(test_call_new(t, PyTuple_Pack(1, u), NULL)), 1234);
    cr_assert_eq(take(test_call_new(t, PyTuple_Pack(2, u16, b16), NULL)), 255);
    PyObject *x = test_call_new(t, PyTuple_Pack(1, Py_True), NULL);
    cr_assert(PyLong_CheckExact(x), "int(True) is a plain int");
    cr_assert_eq(take(x), 1);
    /* base= by keyword */
    PyObject *kw = PyDict_New();
    cr_assert_eq(PyDict_SetItemString(kw, "base", b16), 0);
    cr_assert_eq(take(test_call_new(t, PyTuple_Pack(1, u16), kw)), 255);
    cr_assert_null(test_call_new(t, PyTuple_Pack(2, u16, b16), kw));
    test_expect_error(PyExc_TypeError,
                      "argument for int() given by name ('base') and position (2)");
    cr_assert_null(test_call_new(t, PyTuple_New(0), kw));
    test_expect_error(PyExc_TypeError, "int() missing string argument");
    Py_DECREF(kw);
    kw = PyDict_New();
    cr_assert_eq(PyDict_SetItemString(kw, "bas", b16), 0);
    cr_assert_null(test_call_new(t, PyTuple_Pack(1, u16), kw));
    test_expect_error(PyExc_TypeError, "'bas' is an invalid keyword argument for int()");
    Py_DECREF(kw);
    /* errors */
    cr_assert_null(test_call_new(t, PyTuple_Pack(1, Py_None), NULL));
    test_expect_error(PyExc_TypeError,
                      "int() argument must be a string, a bytes-like object or a real number, not 'NoneType'");
    cr_assert_null(test_call_new(t, PyTuple_Pack(2, f, b16), NULL));
    test_expect_error(PyExc_TypeError, "int() can't convert non-string with explicit base");
    cr_assert_null(test_call_new(t, PyTuple_Pack(2, u16, b1), NULL));
    test_expect_error(PyExc_ValueError, "int() arg 2 must be >= 2 and <= 36");
    cr_assert_null(test_call_new(t, PyTuple_Pack(2, u16, b0), NULL));
    test_expect_error(PyExc_ValueError, "invalid literal for int() with base 0: 'ff'");
    cr_assert_null(test_call_new(t, PyTuple_Pack(3, u16, b16, b16), NULL));
    test_expect_error(PyExc_TypeError, "int() takes at most 2 arguments (3 given)");
    PyObject *nul = PyUnicode_FromStringAndSize("1\0", 2);
    cr_assert_null(test_call_new(t, PyTuple_Pack(1, nul), NULL));
    test_expect_error(PyExc_ValueError, "int(): string contains a null character");
    Py_DECREF(nul);
    PyObject *nan = PyFloat_FromDouble(NAN);
    cr_assert_null(test_call_new(t, PyTuple_Pack(1, nan), NULL));
    test_expect_error(PyExc_ValueError, "cannot convert float NaN to integer");
    Py_DECREF(nan);
    /* __index__ only */
    cr_assert_eq(PyType_Ready(&idx_type), 0);
    index_result = PyLong_FromLong(99);
    cr_assert_eq(take(test_call_new(t, PyTuple_Pack(1, &idx_obj), NULL)), 99);
    Py_DECREF(index_result);
    index_result = NULL;
    Py_DECREF(f); Py_DECREF(u); Py_DECREF(u16);
}

Test(longobject, int_subclass_instances)
{
    PyType_Slot slots[] = { { Py_tp_base, &PyLong_Type }, { 0, NULL } };
    PyType_Spec spec = { "test.MyInt", 0, 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots };
    PyTypeObject *t = (PyTypeObject *)PyType_FromSpec(&spec);
    cr_assert_not_null(t);
    cr_assert_eq(t->tp_basicsize, (Py_ssize_t)sizeof(PyLongObject));
    cr_assert(PyType_HasFeature(t, Py_TPFLAGS_LONG_SUBCLASS));
    PyObject *s = str("-77");
    PyObject *o = test_call_new(t, PyTuple_Pack(1, s), NULL);
    Py_DECREF(s);
    cr_assert_not_null(o);
    cr_assert_eq(Py_TYPE(o), t);
    cr_assert(PyLong_Check(o));
    cr_assert_not(PyLong_CheckExact(o));
    cr_assert_eq(PyLong_AsLong(o), -77);
    cr_assert_eq(PyObject_Hash(o), -77);
    PyObject *plain = PyLong_Type.tp_as_number->nb_index(o);
    cr_assert(PyLong_CheckExact(plain), "__index__ of a subclass is a plain int");
    cr_assert_eq(take(plain), -77);
    Py_DECREF(o);
    o = test_call_new(t, PyTuple_New(0), NULL);
    cr_assert_eq(Py_TYPE(o), t);
    cr_assert_eq(PyLong_AsLong(o), 0);
    Py_DECREF(o);
}

Test(longobject, bool_constructor)
{
    PyTypeObject *t = &PyBool_Type;
    cr_assert_eq(test_call_new(t, PyTuple_New(0), NULL), Py_False);
    PyObject *z = PyFloat_FromDouble(0.0), *big = PyLong_FromLong(1000), *e = str("");
    cr_assert_eq(test_call_new(t, PyTuple_Pack(1, z), NULL), Py_False);
    cr_assert_eq(test_call_new(t, PyTuple_Pack(1, big), NULL), Py_True);
    cr_assert_eq(test_call_new(t, PyTuple_Pack(1, Py_None), NULL), Py_False);
    cr_assert_eq(test_call_new(t, PyTuple_Pack(1, e), NULL), Py_False, "len('') == 0");
    cr_assert_null(test_call_new(t, PyTuple_Pack(2, z, z), NULL));
    test_expect_error(PyExc_TypeError, "bool expected at most 1 argument, got 2");
    PyObject *kw = PyDict_New();
    cr_assert_eq(PyDict_SetItemString(kw, "x", z), 0);
    cr_assert_null(test_call_new(t, PyTuple_New(0), kw));
    test_expect_error(PyExc_TypeError, "bool() takes no keyword arguments");
    Py_DECREF(kw);
    Py_DECREF(z); Py_DECREF(big); Py_DECREF(e);
}

/* ---- hash ------------------------------------------------------------------- */

Test(longobject, hash_matches_cpython)
{
    struct { int64_t v; Py_hash_t h; } cases[] = {
        { 0, 0 }, { 1, 1 }, { -1, -2 }, { -2, -2 }, { 12345, 12345 },
        { 2305843009213693950LL, 2305843009213693950LL },   /* P - 1 */
        { 2305843009213693951LL, 0 },                       /* P */
        { 2305843009213693952LL, 1 },                       /* P + 1 */
        { -2305843009213693952LL, -2 },                     /* -(P+1): -1 -> -2 */
        { INT64_MAX, 3 }, { INT64_MIN, -4 },                /* CPython's values */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        PyObject *o = PyLong_FromLongLong(cases[i].v);
        cr_assert_eq(PyObject_Hash(o), cases[i].h, "hash(%lld)", (long long)cases[i].v);
        Py_DECREF(o);
    }
}

Test(longobject, hash_consistent_with_float_and_bool)
{
    PyObject *one = PyLong_FromLong(1), *onef = PyFloat_FromDouble(1.0);
    cr_assert_eq(PyObject_Hash(one), PyObject_Hash(onef));
    cr_assert_eq(PyObject_Hash(one), PyObject_Hash(Py_True));
    cr_assert_eq(PyObject_Hash(PyLong_FromLong(0)), PyObject_Hash(Py_False));
    Py_DECREF(onef);
    int64_t vals[] = { -1, 2, 1000, -99999, 1LL << 40, -(1LL << 52), 1LL << 62, INT64_MIN,
                       3LL << 61, 2305843009213693951LL };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        PyObject *i_ = PyLong_FromLongLong(vals[i]);
        PyObject *f_ = PyFloat_FromDouble((double)vals[i]);
        if (PyObject_RichCompareBool(i_, f_, Py_EQ) == 1) {   /* large values may round */
            cr_assert_eq(PyObject_Hash(i_), PyObject_Hash(f_), "%lld", (long long)vals[i]);
        }
        Py_DECREF(i_);
        Py_DECREF(f_);
    }
}

/* ---- comparison -------------------------------------------------------------- */

Test(longobject, compare)
{
    PyObject *a = PyLong_FromLong(1000), *b = PyLong_FromLong(1001), *c = PyLong_FromLong(1000);
    cr_assert_eq(PyObject_RichCompareBool(a, b, Py_LT), 1);
    cr_assert_eq(PyObject_RichCompareBool(a, b, Py_LE), 1);
    cr_assert_eq(PyObject_RichCompareBool(a, b, Py_GT), 0);
    cr_assert_eq(PyObject_RichCompareBool(a, b, Py_GE), 0);
    cr_assert_eq(PyObject_RichCompareBool(a, b, Py_EQ), 0);
    cr_assert_eq(PyObject_RichCompareBool(a, b, Py_NE), 1);
    cr_assert_eq(PyObject_RichCompareBool(a, c, Py_EQ), 1, "equal values, distinct objects");
    cr_assert_eq(PyObject_RichCompareBool(a, c, Py_LE), 1);
    cr_assert_eq(PyObject_RichCompareBool(a, c, Py_GE), 1);
    PyObject *r = PyObject_RichCompare(a, c, Py_EQ);
    cr_assert_eq(r, Py_True);
    /* int vs None: == is identity, < is a TypeError */
    cr_assert_eq(PyObject_RichCompareBool(a, Py_None, Py_EQ), 0);
    cr_assert_eq(PyObject_RichCompareBool(a, Py_None, Py_LT), -1);
    test_expect_error(PyExc_TypeError,
                      "'<' not supported between instances of 'int' and 'NoneType'");
    Py_DECREF(a);
    Py_DECREF(b);
    Py_DECREF(c);
}

Test(longobject, compare_with_float_is_exact)
{
    PyObject *big = PyLong_FromLongLong((1LL << 53) + 1);
    PyObject *f = PyFloat_FromDouble(9007199254740992.0);   /* 2**53 */
    cr_assert_eq(PyObject_RichCompareBool(big, f, Py_EQ), 0, "2**53+1 != 2.0**53");
    cr_assert_eq(PyObject_RichCompareBool(big, f, Py_GT), 1);
    cr_assert_eq(PyObject_RichCompareBool(f, big, Py_LT), 1);
    Py_DECREF(big);
    Py_DECREF(f);
    PyObject *two = PyLong_FromLong(2);
    PyObject *h = PyFloat_FromDouble(2.5), *m = PyFloat_FromDouble(-2.5), *t = PyFloat_FromDouble(2.0);
    cr_assert_eq(PyObject_RichCompareBool(two, h, Py_LT), 1);
    cr_assert_eq(PyObject_RichCompareBool(two, m, Py_GT), 1);
    cr_assert_eq(PyObject_RichCompareBool(two, t, Py_EQ), 1);
    cr_assert_eq(PyObject_RichCompareBool(t, two, Py_EQ), 1);
    cr_assert_eq(PyObject_RichCompareBool(two, t, Py_NE), 0);
    PyObject *nan = PyFloat_FromDouble(NAN), *inf = PyFloat_FromDouble(INFINITY);
    cr_assert_eq(PyObject_RichCompareBool(two, nan, Py_EQ), 0);
    cr_assert_eq(PyObject_RichCompareBool(two, nan, Py_LT), 0);
    cr_assert_eq(PyObject_RichCompareBool(two, nan, Py_GE), 0);
    cr_assert_eq(PyObject_RichCompareBool(two, nan, Py_NE), 1);
    PyObject *maxi = PyLong_FromLongLong(INT64_MAX);
    cr_assert_eq(PyObject_RichCompareBool(maxi, inf, Py_LT), 1);
    PyObject *p63 = PyFloat_FromDouble(9223372036854775808.0);
    cr_assert_eq(PyObject_RichCompareBool(maxi, p63, Py_LT), 1, "2**63-1 < 2.0**63");
    PyObject *mini = PyLong_FromLongLong(INT64_MIN), *m63 = PyFloat_FromDouble(-9223372036854775808.0);
    cr_assert_eq(PyObject_RichCompareBool(mini, m63, Py_EQ), 1);
    Py_DECREF(h); Py_DECREF(m); Py_DECREF(t); Py_DECREF(nan); Py_DECREF(inf);
    Py_DECREF(maxi); Py_DECREF(p63); Py_DECREF(mini); Py_DECREF(m63);
}

Test(longobject, ft_compare_int_double)
{
    cr_assert_eq(ft_compare_int_double(0, -0.0), 0);
    cr_assert_eq(ft_compare_int_double(-1, -0.5), -1);
    cr_assert_eq(ft_compare_int_double(-1, -1.5), 1);
    cr_assert_eq(ft_compare_int_double(INT64_MIN, -INFINITY), 1);
    cr_assert_eq(ft_compare_int_double(INT64_MIN, -9223372036854777856.0), 1, "next double below -2**63");
    cr_assert_eq(ft_compare_int_double(5, NAN), 2);
}

/* ---- arithmetic --------------------------------------------------------------- */

static PyObject *
binop(binaryfunc f, int64_t a, int64_t b)
{
    PyObject *x = PyLong_FromLongLong(a), *y = PyLong_FromLongLong(b);
    PyObject *r = f(x, y);
    Py_DECREF(x);
    Py_DECREF(y);
    return r;
}

#define NB PyLong_Type.tp_as_number

Test(longobject, arithmetic)
{
    PyObject *r;
    r = binop(NB->nb_add, 1000, -3000);
    cr_assert_eq(val(r), -2000);
    Py_DECREF(r);
    r = binop(NB->nb_subtract, INT64_MIN + 5, 5);
    cr_assert_eq(val(r), INT64_MIN);
    Py_DECREF(r);
    r = binop(NB->nb_multiply, -4000000000LL, 2000000000LL);
    cr_assert_eq(val(r), -8000000000000000000LL);
    Py_DECREF(r);
    r = binop(NB->nb_add, 100, 100);
    cr_assert_eq(r, PyLong_FromLong(200), "small results are the small ints");
    /* floor division and modulo round toward -inf */
    struct { int64_t a, b, q, m; } dm[] = {
        { 7, 2, 3, 1 }, { -7, 2, -4, 1 }, { 7, -2, -4, -1 }, { -7, -2, 3, -1 },
        { 6, 3, 2, 0 }, { INT64_MIN, 1, INT64_MIN, 0 },
    };
    for (size_t i = 0; i < sizeof dm / sizeof dm[0]; i++) {
        r = binop(NB->nb_floor_divide, dm[i].a, dm[i].b);
        cr_assert_eq(val(r), dm[i].q, "%lld // %lld", (long long)dm[i].a, (long long)dm[i].b);
        Py_DECREF(r);
        r = binop(NB->nb_remainder, dm[i].a, dm[i].b);
        cr_assert_eq(val(r), dm[i].m, "%lld %% %lld", (long long)dm[i].a, (long long)dm[i].b);
        Py_DECREF(r);
    }
    r = binop(NB->nb_remainder, INT64_MIN, -1);
    cr_assert_eq(val(r), 0);
    r = binop(NB->nb_true_divide, 7, 2);
    cr_assert(PyFloat_CheckExact(r));
    cr_assert_eq(PyFloat_AS_DOUBLE(r), 3.5);
    Py_DECREF(r);
    PyObject *x = PyLong_FromLong(-77777);
    r = NB->nb_negative(x);
    cr_assert_eq(val(r), 77777);
    PyObject *r2 = NB->nb_absolute(x);
    cr_assert_eq(val(r2), 77777);
    Py_DECREF(r2);
    r2 = NB->nb_invert(x);
    cr_assert_eq(val(r2), 77776);
    Py_DECREF(r2);
    cr_assert_eq(NB->nb_positive(x), x, "+int is the int itself");
    Py_DECREF(x);
    cr_assert_eq(NB->nb_index(x), x);
    Py_DECREF(x);
    r2 = NB->nb_float(x);
    cr_assert(PyFloat_CheckExact(r2));
    cr_assert_eq(PyFloat_AS_DOUBLE(r2), -77777.0);
    Py_DECREF(r2);
    cr_assert_eq(NB->nb_bool(x), 1);
    cr_assert_eq(NB->nb_bool(PyLong_FromLong(0)), 0);
    Py_DECREF(r);
    Py_DECREF(x);
}

Test(longobject, true_divide_rounds_once)
{
    /* CPython's results (the exact quotient rounded once), where dividing
     * the operands rounded to doubles would be one ulp off */
    struct { int64_t x, y; double q; } cases[] = {
        { 9007199254740993LL, 3, 3002399751580331.0 },
        { 5466147605252358141LL, 1706117042398258025LL, 3.203852648683875 },
        { 1470204903839522129LL, 2778703717387745490LL, 0.5290973969767669 },
        { 286032898139822041LL, 171424877096867222LL, 1.6685611970903917 },
        { -330995808318178332LL, 15635555688689140LL, -21.169430425656238 },
        { INT64_MIN, 7, -1.3176245766935393e+18 }, { INT64_MIN, INT64_MIN, 1.0 },
        { 0, -(1LL << 60), -0.0 }, { 7, 2, 3.5 }, { -1, 3, -1.0 / 3 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        PyObject *r = binop(NB->nb_true_divide, cases[i].x, cases[i].y);
        cr_assert_not_null(r);
        cr_assert(PyFloat_CheckExact(r));
        double q = PyFloat_AS_DOUBLE(r);
        cr_assert(q == cases[i].q && signbit(q) == signbit(cases[i].q), "%lld / %lld = %.17g",
                  (long long)cases[i].x, (long long)cases[i].y, q);
        Py_DECREF(r);
    }
    cr_assert_neq((double)5466147605252358141LL / (double)1706117042398258025LL, 3.203852648683875,
                  "the naive division really differs here");
}

Test(longobject, arithmetic_errors)
{
    cr_assert_null(binop(NB->nb_add, INT64_MAX, 1));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(binop(NB->nb_subtract, INT64_MIN, 1));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(binop(NB->nb_multiply, 1LL << 32, 1LL << 31));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(binop(NB->nb_floor_divide, INT64_MIN, -1));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(binop(NB->nb_floor_divide, 5, 0));
    test_expect_error(PyExc_ZeroDivisionError, "integer division or modulo by zero");
    cr_assert_null(binop(NB->nb_remainder, 5, 0));
    test_expect_error(PyExc_ZeroDivisionError, "integer division or modulo by zero");
    cr_assert_null(binop(NB->nb_true_divide, 5, 0));
    test_expect_error(PyExc_ZeroDivisionError, "division by zero");
    PyObject *mn = PyLong_FromLongLong(INT64_MIN);
    cr_assert_null(NB->nb_negative(mn));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(NB->nb_absolute(mn));
    test_expect_error(PyExc_OverflowError, "64-bit");
    Py_DECREF(mn);
    /* a foreign operand: NotImplemented (the other side may know) */
    PyObject *one = PyLong_FromLong(1);
    PyObject *r = NB->nb_add(one, Py_None);
    cr_assert_eq(r, Py_NotImplemented);
    r = NB->nb_multiply(Py_None, one);
    cr_assert_eq(r, Py_NotImplemented);
    cr_assert_null(PyErr_Occurred());
}

static PyObject *
pow3(int64_t a, int64_t b, PyObject *m)
{
    PyObject *x = PyLong_FromLongLong(a), *y = PyLong_FromLongLong(b);
    PyObject *r = NB->nb_power(x, y, m);
    Py_DECREF(x);
    Py_DECREF(y);
    return r;
}

Test(longobject, power)
{
    cr_assert_eq(take(pow3(2, 10, Py_None)), 1024);
    cr_assert_eq(take(pow3(-3, 3, Py_None)), -27);
    cr_assert_eq(take(pow3(7, 0, Py_None)), 1);
    cr_assert_eq(take(pow3(0, 0, Py_None)), 1);
    cr_assert_eq(take(pow3(2, 62, Py_None)), 1LL << 62);
    cr_assert_eq(take(pow3(-2, 63, Py_None)), INT64_MIN);
    cr_assert_eq(take(pow3(1, INT64_MAX, Py_None)), 1);
    cr_assert_eq(take(pow3(-1, INT64_MAX, Py_None)), -1);
    cr_assert_null(pow3(2, 63, Py_None));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(pow3(3, 40, Py_None));
    test_expect_error(PyExc_OverflowError, "64-bit");
    PyObject *r = pow3(3, -2, Py_None);   /* a float, as CPython */
    cr_assert(PyFloat_CheckExact(r));
    cr_assert_eq(PyFloat_AS_DOUBLE(r), pow(3.0, -2.0));
    Py_DECREF(r);
    cr_assert_null(pow3(0, -1, Py_None));
    test_expect_error(PyExc_ZeroDivisionError, "0.0 cannot be raised to a negative power");
    /* three arguments (values printed by CPython) */
    PyObject *seven = PyLong_FromLong(7), *mseven = PyLong_FromLong(-7), *zero = PyLong_FromLong(0);
    PyObject *big = PyLong_FromLongLong(INT64_MAX);   /* 2**63-1 = 7**2 * 73 * 127 * 337 * 92737 * 649657 */
    cr_assert_eq(take(pow3(3, -1, seven)), 5);
    cr_assert_eq(take(pow3(-3, -1, seven)), 2);
    cr_assert_eq(take(pow3(5, 3, mseven)), -1);
    cr_assert_eq(take(pow3(3, 200, seven)), 2);
    cr_assert_eq(take(pow3(2, 1000, big)), 1LL << 55, "2**63 == 1 mod 2**63-1");
    cr_assert_eq(take(pow3(3, -1, big)), 6148914691236517205LL);
    cr_assert_eq(take(pow3(5, -1, PyLong_FromLong(1))), 0);
    cr_assert_null(pow3(7, -1, seven));
    test_expect_error(PyExc_ValueError, "base is not invertible for the given modulus");
    cr_assert_null(pow3(2, 2, zero));
    test_expect_error(PyExc_ValueError, "pow() 3rd argument cannot be 0");
    cr_assert_eq(pow3(2, 2, Py_True), PyLong_FromLong(0), "a bool modulus is the int 1");
    cr_assert_eq(NB->nb_power(seven, seven, Py_False), NULL);
    test_expect_error(PyExc_ValueError, "cannot be 0");
    r = NB->nb_power(seven, Py_None, Py_None);
    cr_assert_eq(r, Py_NotImplemented);
    Py_DECREF(seven);
    Py_DECREF(mseven);
    Py_DECREF(big);
}

Test(longobject, divmod)
{
    PyObject *r = binop(NB->nb_divmod, -7000, 3);
    cr_assert_not_null(r);
    cr_assert(PyTuple_CheckExact(r));
    cr_assert_eq(PyTuple_GET_SIZE(r), 2);
    cr_assert_eq(val(PyTuple_GET_ITEM(r, 0)), -2334);
    cr_assert_eq(val(PyTuple_GET_ITEM(r, 1)), 2);
    Py_DECREF(r);
    cr_assert_null(binop(NB->nb_divmod, 1, 0));
    test_expect_error(PyExc_ZeroDivisionError, "integer division or modulo by zero");
    cr_assert_null(binop(NB->nb_divmod, INT64_MIN, -1));
    test_expect_error(PyExc_OverflowError, "64-bit");
    /* out of memory for the quotient (3333), then for the tuple */
    PyObject *a = PyLong_FromLong(10000), *b = PyLong_FromLong(3);
    for (int n = 1; n <= 2; n++) {
        ft_alloc_fail_after(n);
        cr_assert_null(NB->nb_divmod(a, b), "allocation %d fails", n);
        test_expect_error(PyExc_MemoryError, "");
    }
    ft_alloc_fail_after(0);
    r = NB->nb_divmod(a, b);
    cr_assert_not_null(r);
    Py_DECREF(r);
    Py_DECREF(a);
}

Test(longobject, bitwise_and_shifts)
{
    cr_assert_eq(take(binop(NB->nb_and, 0xff00ff, -256)), 0xff0000 | 0x00);
    cr_assert_eq(take(binop(NB->nb_and, 12, 10)), 8);
    cr_assert_eq(take(binop(NB->nb_or, 12, 10)), 14);
    cr_assert_eq(take(binop(NB->nb_xor, 12, 10)), 6);
    cr_assert_eq(take(binop(NB->nb_xor, -1, 5)), -6);
    cr_assert_eq(take(binop(NB->nb_lshift, 1, 62)), 1LL << 62);
    cr_assert_eq(take(binop(NB->nb_lshift, -1, 63)), INT64_MIN);
    cr_assert_eq(take(binop(NB->nb_lshift, 0, 1000)), 0);
    cr_assert_eq(take(binop(NB->nb_lshift, -3, 4)), -48);
    cr_assert_null(binop(NB->nb_lshift, 1, 63));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(binop(NB->nb_lshift, 3, 62));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_null(binop(NB->nb_lshift, 1, 64));
    test_expect_error(PyExc_OverflowError, "64-bit");
    cr_assert_eq(take(binop(NB->nb_rshift, -5, 1)), -3, "floors");
    cr_assert_eq(take(binop(NB->nb_rshift, 5, 70)), 0);
    cr_assert_eq(take(binop(NB->nb_rshift, -5, 70)), -1);
    cr_assert_eq(take(binop(NB->nb_rshift, INT64_MIN, 63)), -1);
    cr_assert_null(binop(NB->nb_rshift, 5, -1));
    test_expect_error(PyExc_ValueError, "negative shift count");
    cr_assert_null(binop(NB->nb_lshift, 5, -1));
    test_expect_error(PyExc_ValueError, "negative shift count");
    /* bool op bool stays a bool; bool op int is an int */
    PyNumberMethods *bn = PyBool_Type.tp_as_number;
    cr_assert_eq(bn->nb_and(Py_True, Py_True), Py_True);
    cr_assert_eq(bn->nb_and(Py_True, Py_False), Py_False);
    cr_assert_eq(bn->nb_or(Py_False, Py_True), Py_True);
    cr_assert_eq(bn->nb_or(Py_False, Py_False), Py_False);
    cr_assert_eq(bn->nb_xor(Py_True, Py_True), Py_False);
    cr_assert_eq(bn->nb_xor(Py_True, Py_False), Py_True);
    PyObject *r = bn->nb_or(Py_True, PyLong_FromLong(0));
    cr_assert(PyLong_CheckExact(r));
    cr_assert_eq(val(r), 1);
    r = bn->nb_and(PyLong_FromLong(3), Py_True);
    cr_assert(PyLong_CheckExact(r));
    cr_assert_eq(val(r), 1);
    cr_assert_eq(bn->nb_and(Py_True, Py_None), Py_NotImplemented);
    cr_assert_eq(bn->nb_add, NB->nb_add, "the rest is int's");
}

Test(longobject, out_of_memory)
{
    ft_alloc_fail_after(1);
    cr_assert_null(PyLong_FromLong(123456));
    test_expect_error(PyExc_MemoryError, "");
    ft_alloc_fail_after(1);
    cr_assert_null(PyLong_FromDouble(1e10));
    test_expect_error(PyExc_MemoryError, "");
    PyObject *a = PyLong_FromLong(1 << 20);
    ft_alloc_fail_after(1);
    cr_assert_null(NB->nb_add(a, a));
    test_expect_error(PyExc_MemoryError, "");
    ft_alloc_fail_after(0);
    Py_DECREF(a);
}

/* ---- repr ----------------------------------------------------------------------- */

static void
expect_repr(PyObject *o, const char *want)
{
    PyObject *s = PyObject_Repr(o);
    cr_assert_not_null(s, "repr failed for %s", want);
    cr_assert_str_eq(PyUnicode_AsUTF8(s), want);
    Py_DECREF(s);
    s = PyObject_Str(o);
    cr_assert_not_null(s);
    cr_assert_str_eq(PyUnicode_AsUTF8(s), want, "str is repr");
    Py_DECREF(s);
}

Test(longobject, repr)
{
    PyObject *o = PyLong_FromLongLong(INT64_MIN);
    expect_repr(o, "-9223372036854775808");
    Py_DECREF(o);
    expect_repr(PyLong_FromLong(0), "0");
    expect_repr(PyLong_FromLong(256), "256");
    expect_repr(Py_True, "True");
    expect_repr(Py_False, "False");
    o = PyLong_FromLong(1000);
    ft_alloc_fail_after(1);
    cr_assert_null(PyObject_Repr(o));
    test_expect_error(PyExc_MemoryError, "");
    ft_alloc_fail_after(0);
    Py_DECREF(o);
}

/* ---- bool ------------------------------------------------------------------------ */

Test(longobject, bool_is_an_int_subclass)
{
    cr_assert_eq(PyBool_Type.tp_base, &PyLong_Type);
    cr_assert(PyType_IsSubtype(&PyBool_Type, &PyLong_Type));
    cr_assert(PyType_HasFeature(&PyBool_Type, Py_TPFLAGS_LONG_SUBCLASS));
    cr_assert_not(PyType_HasFeature(&PyBool_Type, Py_TPFLAGS_BASETYPE));
    cr_assert(PyLong_Check(Py_True));
    cr_assert(PyLong_Check(Py_False));
    cr_assert_not(PyLong_CheckExact(Py_True));
    cr_assert(PyBool_Check(Py_True));
    cr_assert_not(PyBool_Check(PyLong_FromLong(1)));
    cr_assert_eq(PyLong_AsLong(Py_True), 1);
    cr_assert_eq(PyLong_AsLong(Py_False), 0);
    cr_assert_eq(PyLong_AsSsize_t(Py_True), 1);
    cr_assert_eq(PyLong_AsDouble(Py_True), 1.0);
    cr_assert(_Py_IsImmortal(Py_True));
    cr_assert(_Py_IsImmortal(Py_False));
    /* True == 1, False < 1, True + True == 2 (an int) */
    PyObject *one = PyLong_FromLong(1);
    cr_assert_eq(PyObject_RichCompareBool(Py_True, one, Py_EQ), 1);
    cr_assert_eq(PyObject_RichCompareBool(one, Py_True, Py_EQ), 1);
    cr_assert_eq(PyObject_RichCompareBool(Py_False, one, Py_LT), 1);
    cr_assert_eq(PyObject_RichCompareBool(Py_True, Py_False, Py_GT), 1);
    PyObject *two = PyBool_Type.tp_as_number->nb_add(Py_True, Py_True);
    cr_assert(PyLong_CheckExact(two));
    cr_assert_eq(val(two), 2);
    /* int(True) and True.__index__() are the plain int 1 */
    cr_assert_eq(PyBool_Type.tp_as_number->nb_int(Py_True), one);
    cr_assert_eq(PyBool_Type.tp_as_number->nb_index(Py_False), PyLong_FromLong(0));
    cr_assert_eq(ft_object_is_true(Py_True), 1);
    cr_assert_eq(PyBool_FromLong(1000), Py_True);
    cr_assert_eq(PyBool_FromLong(0), Py_False);
}

/* ---- threads ---------------------------------------------------------------------- */

/* Thread t's item i (distinct across threads; none of them small). */
static int64_t
int_value(int t, int i)
{
    return (int64_t)t * 1000000007LL + i * 3 - 5;
}

/* Phase 1: an int to hand over, and a float made and dropped privately. */
static PyObject *
int_make(int t, int i, bool *ok)
{
    int64_t v = int_value(t, i);
    PyObject *a = PyLong_FromLongLong(v);
    PyObject *f = PyFloat_FromDouble((double)v * 0.5);
    *ok = a != NULL && PyLong_AsLongLong(a) == v && f != NULL &&
          PyFloat_AsDouble(f) == (double)v * 0.5;
    Py_XDECREF(f);
    return a;
}

/* Phase 2, on the neighbour: the value and its hash (an int's is itself). */
static bool
int_check(PyObject *a, int t, int i)
{
    int64_t v = int_value(t, i);
    return PyLong_AsLongLong(a) == v && PyObject_Hash(a) == (Py_hash_t)v;
}

Test(longobject, eight_threads_create_and_drop, .timeout = FT_TIMEOUT(120))
{
    static const test_handoff_ops ops = { int_make, int_check, 1 };
    test_handoff_run(&ops);
}
