/* int and bool: PyLong_Type, PyBool_Type, the small ints, True and False.
 *
 * REPRESENTATION
 *   A PyLongObject is the object header plus one int64_t (ftrt's int is
 *   64-bit; CPython's is arbitrary precision).  Where CPython would return
 *   a bigger number ftrt raises OverflowError: arithmetic that leaves
 *   [-2**63, 2**63), PyLong_FromUnsignedLong(Long) above INT64_MAX,
 *   PyLong_FromDouble or PyLong_FromString of a value outside that range
 *   (docs/containers.md, "Numbers", lists the differences).  The As* functions
 *   therefore never see a value that does not fit a C long / long long.
 *
 * SMALL INTS, TRUE AND FALSE
 *   -5..256 (CPython's _PY_NSMALLNEGINTS / _PY_NSMALLPOSINTS range) are the
 *   static array small.ints (alone in its pages), initialised by the
 *   compiler with the immortal static header (_PyObject_HEAD_INIT) and
 *   their value: PyLong_From* of
 *   such a value returns the same object from every thread, allocates
 *   nothing and writes no refcount field (Py_INCREF/Py_DECREF of an
 *   immortal object only load).  True and False are int objects of the
 *   subclass PyBool_Type with the values 1 and 0, static and immortal too.
 *
 * CONCURRENCY
 *   ints are immutable: the value is written once, by the creating thread,
 *   before the object is published (publication is the caller's business
 *   and carries its own release/acquire or lock), so every read is a plain
 *   load and nothing here takes a lock or uses an atomic.  Creation is a
 *   PyObject_Malloc plus the header (the creator owns the local refcount,
 *   no atomic writes; PyLong_Type is immortal so the type reference costs
 *   nothing); other threads' references go to the shared count as for any
 *   object (core/object.c).
 */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_number.h"
#include "ft_types.h"

/* 128-bit unsigned arithmetic (a GCC/Clang type; __extension__ keeps
 * -Wpedantic quiet): modular products in pow(), int / int. */
__extension__ typedef unsigned __int128 u128;

/* ---- small ints ------------------------------------------------------------ */

#define SMALL_MIN (-5)
#define SMALL_MAX 256

/* One immortal static int with the value n; S10/S100 expand to 10/100
 * consecutive values (the initialiser must list each element). */
#define S1(n) { _PyObject_HEAD_INIT(&PyLong_Type), (n) }
#define S10(n) S1(n), S1((n) + 1), S1((n) + 2), S1((n) + 3), S1((n) + 4), \
    S1((n) + 5), S1((n) + 6), S1((n) + 7), S1((n) + 8), S1((n) + 9)
#define S100(n) S10(n), S10((n) + 10), S10((n) + 20), S10((n) + 30), S10((n) + 40), \
    S10((n) + 50), S10((n) + 60), S10((n) + 70), S10((n) + 80), S10((n) + 90)

/* The array sits alone in whole pages (aligned to 4096 and, being the only
 * member of an aligned struct, padded to a multiple of it): nothing else
 * shares those pages, so a test can make them read-only and prove that no
 * path writes a small int (ft_small_ints_region). */
#define SMALL_PAGE 4096
static struct {
    PyLongObject ints[SMALL_MAX - SMALL_MIN + 1];
} __attribute__((aligned(SMALL_PAGE))) small = { {
    /* -5..94, 95..194, 195..254, 255, 256 */
    S100(SMALL_MIN), S100(SMALL_MIN + 100),
    S10(195), S10(205), S10(215), S10(225), S10(235), S10(245), S1(255), S1(256),
} };
_Static_assert(sizeof small.ints / sizeof small.ints[0] == 262, "-5..256");
_Static_assert(sizeof small % SMALL_PAGE == 0, "whole pages");

static inline PyObject *
small_int(int64_t v)
{
    return (PyObject *)&small.ints[v - SMALL_MIN];
}

void
ft_small_ints_region(void **start, size_t *size)
{
    *start = &small;
    *size = sizeof small;
}

/* ---- creation -------------------------------------------------------------- */

/* A new int with value v: a small int (no allocation) or a fresh object;
 * NULL with MemoryError set. */
static PyObject *
long_from_int64(int64_t v)
{
    if (v >= SMALL_MIN && v <= SMALL_MAX) {
        return small_int(v);   /* immortal: a new reference costs nothing */
    }
    ft_alloc_safe_point();   /* as every object creation (docs/threads.md) */
    PyLongObject *op = PyObject_Malloc(sizeof(PyLongObject));
    if (op == NULL) {
        return PyErr_NoMemory();
    }
    /* No Py_INCREF of the type: PyLong_Type is static, hence immortal
     * (long_dealloc does not decref it either). */
    ft_object_init((PyObject *)op, &PyLong_Type);
    op->long_value = v;
    return (PyObject *)op;
}

static PyObject *
overflow_unsigned(void)
{
    PyErr_SetString(PyExc_OverflowError, "int too large: ftrt's int is limited to 64-bit signed values");
    return NULL;
}

PyObject *
PyLong_FromLong(long v)
{
    return long_from_int64(v);
}

PyObject *
PyLong_FromLongLong(long long v)
{
    return long_from_int64(v);
}

PyObject *
PyLong_FromSsize_t(Py_ssize_t v)
{
    return long_from_int64(v);
}

PyObject *
PyLong_FromUnsignedLongLong(unsigned long long v)
{
    if (v > INT64_MAX) {
        return overflow_unsigned();
    }
    return long_from_int64((int64_t)v);
}

PyObject *
PyLong_FromUnsignedLong(unsigned long v)
{
    return PyLong_FromUnsignedLongLong(v);
}

PyObject *
PyLong_FromSize_t(size_t v)
{
    return PyLong_FromUnsignedLongLong(v);
}

/* 2**63 as a double (exact). */
#define TWO_POW_63 9223372036854775808.0

PyObject *
PyLong_FromDouble(double v)
{
    if (isnan(v)) {
        PyErr_SetString(PyExc_ValueError, "cannot convert float NaN to integer");
        return NULL;
    }
    if (isinf(v)) {
        PyErr_SetString(PyExc_OverflowError, "cannot convert float infinity to integer");
        return NULL;
    }
    double t = trunc(v);   /* int(x) rounds toward zero */
    /* [-2**63, 2**63): both bounds are exact doubles, so the test is exact. */
    if (!(t >= -TWO_POW_63 && t < TWO_POW_63)) {
        PyErr_SetString(PyExc_OverflowError,
                        "int too large: ftrt's int is limited to 64-bit signed values");
        return NULL;
    }
    return long_from_int64((int64_t)t);
}

/* ---- parsing ----------------------------------------------------------------- */

static bool
is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');   /* \t \n \v \f \r */
}

/* A digit's value in bases up to 36, or 99 for a non-digit. */
static int
digit_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'Z') {
        return c - 'A' + 10;
    }
    return 99;
}

PyObject *
PyLong_FromString(const char *str, char **pend, int base)
{
    if (str == NULL) {
        PyErr_BadInternalCall();
        return NULL;
    }
    if (base != 0 && (base < 2 || base > 36)) {
        PyErr_SetString(PyExc_ValueError, "int() arg 2 must be >= 2 and <= 36");
        return NULL;
    }
    const char *p = str;
    while (is_space(*p)) {
        p++;
    }
    bool neg = false;
    if (*p == '+' || *p == '-') {
        neg = *p == '-';
        p++;
    }
    int b = base;
    bool prefixed = false;   /* an underscore may follow the prefix */
    if (p[0] == '0') {
        char c = p[1];
        int pb = c == 'x' || c == 'X' ? 16 : c == 'o' || c == 'O' ? 8 : c == 'b' || c == 'B' ? 2 : 0;
        if (pb != 0 && (b == 0 || b == pb)) {
            b = pb;
            p += 2;
            prefixed = true;
        }
    }
    /* Base 0 without a prefix is decimal, where a leading zero is only
     * allowed for zero itself ("00" and "0_0" are fine, "01" is not). */
    bool zeros_only = b == 0 && p[0] == '0';
    if (b == 0) {
        b = 10;
    }
    uint64_t mag = 0;
    bool too_big = false, any = false, need_digit = false;
    if (prefixed && *p == '_') {
        p++;
        need_digit = true;
    }
    for (;; p++) {
        if (*p == '_') {
            if (!any || need_digit) {
                goto invalid;   /* a leading or doubled underscore */
            }
            need_digit = true;
            continue;
        }
        int d = digit_value(*p);
        if (d >= b) {
            break;
        }
        if (zeros_only && d != 0) {
            goto invalid;
        }
        any = true;
        need_digit = false;
        /* 2**63 is the largest magnitude any result can have */
        if (!too_big && (__builtin_mul_overflow(mag, (uint64_t)b, &mag) ||
                         __builtin_add_overflow(mag, (uint64_t)d, &mag) ||
                         mag > (uint64_t)1 << 63)) {
            too_big = true;
        }
    }
    if (!any || need_digit) {
        goto invalid;   /* no digits, or a trailing underscore */
    }
    while (is_space(*p)) {
        p++;
    }
    if (*p != '\0') {
        goto invalid;
    }
    if (too_big || (!neg && mag > (uint64_t)INT64_MAX)) {
        if (pend != NULL) {
            *pend = (char *)p;
        }
        return overflow_unsigned();
    }
    if (pend != NULL) {
        *pend = (char *)p;
    }
    /* -2**63 converts through uint64: its magnitude is not an int64 */
    return long_from_int64(neg ? (int64_t)(0 - mag) : (int64_t)mag);

invalid:
    if (pend != NULL) {
        *pend = (char *)p;
    }
    PyErr_Format(PyExc_ValueError, "invalid literal for int() with base %d: '%.200s'", base, str);
    return NULL;
}

/* ---- conversion to C ------------------------------------------------------- */

/* CPython's _PyNumber_Index for the As* functions that accept __index__:
 * a new reference to an int (op itself if it is one), or NULL with
 * TypeError (SystemError for NULL). */
static PyObject *
number_index(PyObject *op)
{
    if (op == NULL) {
        PyErr_BadInternalCall();
        return NULL;
    }
    if (PyLong_Check(op)) {
        return Py_NewRef(op);
    }
    PyNumberMethods *nb = Py_TYPE(op)->tp_as_number;
    if (nb == NULL || nb->nb_index == NULL) {
        PyErr_Format(PyExc_TypeError, "'%.200s' object cannot be interpreted as an integer",
                     Py_TYPE(op)->tp_name);
        return NULL;
    }
    PyObject *res = nb->nb_index(op);
    if (res == NULL) {
        return NULL;
    }
    if (!PyLong_Check(res)) {
        PyErr_Format(PyExc_TypeError, "__index__ returned non-int (type %.200s)",
                     Py_TYPE(res)->tp_name);
        Py_DECREF(res);
        return NULL;
    }
    return res;
}

/* The value of op via number_index; false with an exception set. */
static bool
index_value(PyObject *op, int64_t *out)
{
    if (op != NULL && PyLong_Check(op)) {   /* the common case: no reference taken */
        *out = ft_long_value(op);
        return true;
    }
    PyObject *i = number_index(op);
    if (i == NULL) {
        return false;
    }
    *out = ft_long_value(i);
    Py_DECREF(i);
    return true;
}

/* The value of an object that must be an int (no __index__): CPython's
 * "an integer is required" functions; SystemError for NULL. */
static bool
exact_value(PyObject *op, int64_t *out)
{
    if (op == NULL) {
        PyErr_BadInternalCall();
        return false;
    }
    if (!PyLong_Check(op)) {
        PyErr_SetString(PyExc_TypeError, "an integer is required");
        return false;
    }
    *out = ft_long_value(op);
    return true;
}

/* long and long long are 64-bit on every platform ftrt supports (LP64),
 * the same as the stored value, so no conversion below can overflow. */
_Static_assert(sizeof(long) == 8 && sizeof(long long) == 8, "LP64");

long
PyLong_AsLong(PyObject *obj)
{
    int64_t v;
    return index_value(obj, &v) ? (long)v : -1;
}

long
PyLong_AsLongAndOverflow(PyObject *obj, int *overflow)
{
    *overflow = 0;   /* every ftrt int fits a long */
    return PyLong_AsLong(obj);
}

long long
PyLong_AsLongLong(PyObject *obj)
{
    int64_t v;
    return index_value(obj, &v) ? (long long)v : -1;
}

long long
PyLong_AsLongLongAndOverflow(PyObject *obj, int *overflow)
{
    *overflow = 0;
    return PyLong_AsLongLong(obj);
}

Py_ssize_t
PyLong_AsSsize_t(PyObject *pylong)
{
    int64_t v;
    return exact_value(pylong, &v) ? (Py_ssize_t)v : -1;
}

/* The unsigned conversions: OverflowError for a negative value. */
static unsigned long long
as_unsigned(PyObject *pylong, const char *what)
{
    int64_t v;
    if (!exact_value(pylong, &v)) {
        return (unsigned long long)-1;
    }
    if (v < 0) {
        PyErr_Format(PyExc_OverflowError, "can't convert negative value to %s", what);
        return (unsigned long long)-1;
    }
    return (unsigned long long)v;
}

size_t
PyLong_AsSize_t(PyObject *pylong)
{
    return (size_t)as_unsigned(pylong, "size_t");
}

unsigned long
PyLong_AsUnsignedLong(PyObject *pylong)
{
    return (unsigned long)as_unsigned(pylong, "unsigned int");
}

unsigned long long
PyLong_AsUnsignedLongLong(PyObject *pylong)
{
    return as_unsigned(pylong, "unsigned int");
}

double
PyLong_AsDouble(PyObject *pylong)
{
    int64_t v;
    /* Rounds to nearest (ties to even) above 2**53, as CPython does. */
    return exact_value(pylong, &v) ? (double)v : -1.0;
}

int
PyLong_AsInt(PyObject *obj)
{
    int64_t v;
    if (!index_value(obj, &v)) {
        return -1;
    }
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
        return -1;
    }
    return (int)v;
}

unsigned long long
PyLong_AsUnsignedLongLongMask(PyObject *obj)
{
    int64_t v;
    /* two's complement: the value modulo 2**64, as CPython's mask */
    return index_value(obj, &v) ? (unsigned long long)v : (unsigned long long)-1;
}

unsigned long
PyLong_AsUnsignedLongMask(PyObject *obj)
{
    return (unsigned long)PyLong_AsUnsignedLongLongMask(obj);
}

PyObject *
PyLong_FromVoidPtr(void *p)
{
    return PyLong_FromUnsignedLongLong((uintptr_t)p);
}

void *
PyLong_AsVoidPtr(PyObject *pylong)
{
    int64_t v;
    if (!exact_value(pylong, &v)) {   /* an int, not __index__ (CPython) */
        return NULL;
    }
    /* CPython accepts negative values too (as the unsigned pattern) */
    return (void *)(uintptr_t)v;
}

/* ---- comparison and hash shared with float ---------------------------------- */

int
ft_compare_int_double(int64_t a, double b)
{
    if (isnan(b)) {
        return 2;
    }
    /* Outside [-2**63, 2**63) (infinities included) b is beyond every
     * int64; inside it, its integral part converts exactly. */
    if (b >= TWO_POW_63) {
        return -1;
    }
    if (b < -TWO_POW_63) {
        return 1;
    }
    double t = trunc(b);
    int64_t bi = (int64_t)t;
    if (a != bi) {
        return a < bi ? -1 : 1;
    }
    /* Same integral part: the fraction decides (b - t is exact). */
    double frac = b - t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static Py_hash_t
long_hash(PyObject *self)
{
    /* CPython's numeric hash: |v| mod 2**61-1 with v's sign, so that equal
     * ints, floats and bools hash alike; -1 is the error value, hence -2. */
    int64_t v = ft_long_value(self);
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;   /* no overflow at INT64_MIN */
    int64_t h = (int64_t)(mag % FT_HASH_MODULUS);
    if (v < 0) {
        h = -h;
    }
    return h == -1 ? -2 : (Py_hash_t)h;
}

static PyObject *
long_richcompare(PyObject *self, PyObject *other, int op)
{
    if (!PyLong_Check(self) || !PyLong_Check(other)) {
        return Py_NewRef(Py_NotImplemented);   /* int vs float: float's slot decides */
    }
    int64_t a = ft_long_value(self), b = ft_long_value(other);
    bool r;
    switch (op) {
    case Py_LT: r = a < b; break;
    case Py_LE: r = a <= b; break;
    case Py_EQ: r = a == b; break;
    case Py_NE: r = a != b; break;
    case Py_GT: r = a > b; break;
    default: r = a >= b; break;
    }
    return PyBool_FromLong(r);
}

/* ---- number slots ---------------------------------------------------------- */

static PyObject *
int_overflow(void)
{
    PyErr_SetString(PyExc_OverflowError,
                    "int result out of range: ftrt's int is limited to 64-bit signed values");
    return NULL;
}

/* Binary slots get the operands in source order; either may be foreign. */
#define BOTH_INTS(a, b) (PyLong_Check(a) && PyLong_Check(b))

static PyObject *
long_add(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    int64_t r;
    if (__builtin_add_overflow(ft_long_value(a), ft_long_value(b), &r)) {
        return int_overflow();
    }
    return long_from_int64(r);
}

static PyObject *
long_sub(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    int64_t r;
    if (__builtin_sub_overflow(ft_long_value(a), ft_long_value(b), &r)) {
        return int_overflow();
    }
    return long_from_int64(r);
}

static PyObject *
long_mul(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    int64_t r;
    if (__builtin_mul_overflow(ft_long_value(a), ft_long_value(b), &r)) {
        return int_overflow();
    }
    return long_from_int64(r);
}

/* Python's floor division and modulo (the remainder takes the divisor's
 * sign); false with ZeroDivisionError / OverflowError set. */
static bool
long_divmod_values(PyObject *a, PyObject *b, int64_t *q, int64_t *m)
{
    int64_t x = ft_long_value(a), y = ft_long_value(b);
    if (y == 0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "integer division or modulo by zero");
        return false;
    }
    if (x == INT64_MIN && y == -1) {   /* the one quotient that does not fit */
        if (q != NULL) {
            int_overflow();
            return false;
        }
        *m = 0;
        return true;
    }
    int64_t qq = x / y, mm = x % y;   /* C truncates toward zero */
    if (mm != 0 && ((mm < 0) != (y < 0))) {
        qq -= 1;
        mm += y;
    }
    if (q != NULL) {
        *q = qq;
    }
    *m = mm;
    return true;
}

static PyObject *
long_floor_div(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    int64_t q, m;
    return long_divmod_values(a, b, &q, &m) ? long_from_int64(q) : NULL;
}

static PyObject *
long_remainder(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    int64_t m;
    return long_divmod_values(a, b, NULL, &m) ? long_from_int64(m) : NULL;
}

double
ft_int_true_divide(int64_t x, int64_t y)
{
    /* Operands that are exact doubles (|v| <= 2**53): one IEEE division,
     * correctly rounded (CPython's fast path, signed zeros included). */
    const int64_t exact = (int64_t)1 << 53;
    if (x >= -exact && x <= exact && y >= -exact && y <= exact) {
        return (double)x / (double)y;
    }
    /* Otherwise round the exact quotient once, as CPython does: with
     * a = |x|, b = |y| and k chosen so that Q = floor(a * 2**k / b) lies in
     * [2**54, 2**56), Q has at least two bits below a double's 53, so
     * OR-ing "remainder != 0" into its last bit (a sticky bit) makes the
     * uint64 -> double conversion round exactly as the real quotient
     * would; the scaling by 2**-k is then exact. */
    bool neg = (x < 0) != (y < 0);
    uint64_t a = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    uint64_t b = y < 0 ? (uint64_t)0 - (uint64_t)y : (uint64_t)y;
    if (a == 0) {
        return neg ? -0.0 : 0.0;
    }
    int la = 63 - __builtin_clzll(a), lb = 63 - __builtin_clzll(b);   /* floor(log2) */
    /* 2**(la-lb-1) < a/b < 2**(la-lb+1), so Q in [2**54, 2**56) */
    int k = 55 + lb - la;
    u128 q, r;
    if (k >= 0) {   /* a << k < 2**(56+lb) <= 2**119: fits */
        u128 num = (u128)a << k;
        q = num / b;
        r = num % b;
    }
    else {
        u128 den = (u128)b << -k;
        q = a / den;
        r = a % den;
    }
    uint64_t q64 = (uint64_t)q | (r != 0);
    double d = ldexp((double)q64, -k);
    return neg ? -d : d;
}

static PyObject *
long_true_divide(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    int64_t x = ft_long_value(a), y = ft_long_value(b);
    if (y == 0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "division by zero");
        return NULL;
    }
    return PyFloat_FromDouble(ft_int_true_divide(x, y));
}

static PyObject *
long_divmod(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    int64_t q, m;
    if (!long_divmod_values(a, b, &q, &m)) {
        return NULL;
    }
    PyObject *qo = long_from_int64(q);
    PyObject *mo = qo == NULL ? NULL : long_from_int64(m);
    PyObject *res = mo == NULL ? NULL : PyTuple_Pack(2, qo, mo);
    Py_XDECREF(qo);
    Py_XDECREF(mo);
    return res;
}

/* (a * b) mod m for 0 <= a, b < m: the product needs 128 bits. */

static int64_t
mulmod(int64_t a, int64_t b, int64_t m)
{
    return (int64_t)((u128)(uint64_t)a * (uint64_t)b % (uint64_t)m);
}

/* pow(a, b) and pow(a, b, m) as CPython: a negative exponent gives a float
 * (two arguments) or uses the inverse of a modulo m (three). */
static PyObject *
long_pow(PyObject *a, PyObject *b, PyObject *c)
{
    if (!BOTH_INTS(a, b) || (c != Py_None && !PyLong_Check(c))) {
        return Py_NewRef(Py_NotImplemented);
    }
    int64_t base = ft_long_value(a), exp = ft_long_value(b);
    if (c == Py_None) {
        if (exp < 0) {
            if (base == 0) {
                PyErr_SetString(PyExc_ZeroDivisionError, "0.0 cannot be raised to a negative power");
                return NULL;
            }
            return PyFloat_FromDouble(pow((double)base, (double)exp));
        }
        int64_t r = 1;
        /* square and multiply; every intermediate square that is still
         * needed must fit, so overflow is checked on each operation */
        while (exp > 0) {
            if ((exp & 1) && __builtin_mul_overflow(r, base, &r)) {
                return int_overflow();
            }
            exp >>= 1;
            if (exp > 0 && __builtin_mul_overflow(base, base, &base)) {
                return int_overflow();
            }
        }
        return long_from_int64(r);
    }
    int64_t mod = ft_long_value(c);
    if (mod == 0) {
        PyErr_SetString(PyExc_ValueError, "pow() 3rd argument cannot be 0");
        return NULL;
    }
    if (mod == INT64_MIN) {
        return int_overflow();   /* |mod| does not fit */
    }
    int64_t m = mod < 0 ? -mod : mod;
    int64_t x = base % m;
    if (x < 0) {
        x += m;
    }
    if (exp < 0) {
        /* x's inverse modulo m by the extended Euclidean algorithm:
         * invariant r0 == s0 * x (mod m), r1 == s1 * x (mod m). */
        /* The s are kept in [0, m) (m - p instead of -p), so nothing
         * overflows even for m near 2**63. */
        int64_t r0 = m, r1 = x, s0 = 0, s1 = 1 % m;
        while (r1 != 0) {
            int64_t q = r0 / r1;
            int64_t t = r0 - q * r1;   /* r0 % r1 */
            r0 = r1;
            r1 = t;
            int64_t p = mulmod(q % m, s1, m);
            t = s0 >= p ? s0 - p : s0 + (m - p);
            s0 = s1;
            s1 = t;
        }
        if (r0 != 1) {
            PyErr_SetString(PyExc_ValueError, "base is not invertible for the given modulus");
            return NULL;
        }
        x = s0;
        if (exp == INT64_MIN) {
            return int_overflow();
        }
        exp = -exp;
    }
    int64_t r = 1 % m;
    while (exp > 0) {
        if (exp & 1) {
            r = mulmod(r, x, m);
        }
        x = mulmod(x, x, m);
        exp >>= 1;
    }
    if (mod < 0 && r != 0) {
        r -= m;   /* the result takes the modulus' sign */
    }
    return long_from_int64(r);
}

/* & | ^ of ints; bool overrides them so that bool op bool stays a bool. */
static PyObject *
long_and(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    return long_from_int64(ft_long_value(a) & ft_long_value(b));
}

static PyObject *
long_or(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    return long_from_int64(ft_long_value(a) | ft_long_value(b));
}

static PyObject *
long_xor(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    return long_from_int64(ft_long_value(a) ^ ft_long_value(b));
}

/* The shift count: ValueError if negative. */
static bool
shift_count(PyObject *b, int64_t *n)
{
    *n = ft_long_value(b);
    if (*n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative shift count");
        return false;
    }
    return true;
}

static PyObject *
long_lshift(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    int64_t n, v = ft_long_value(a);
    if (!shift_count(b, &n)) {
        return NULL;
    }
    if (v == 0) {
        return long_from_int64(0);
    }
    /* v << n fits iff n <= 63 and shifting back gives v (an arithmetic
     * shift; the left shift is done on uint64 to avoid UB).  -1 << 63 is
     * INT64_MIN, every other v overflows at 63. */
    if (n > 63) {
        return int_overflow();
    }
    int64_t r = (int64_t)((uint64_t)v << n);
    if (r >> n != v) {
        return int_overflow();
    }
    return long_from_int64(r);
}

static PyObject *
long_rshift(PyObject *a, PyObject *b)
{
    if (!BOTH_INTS(a, b)) {
        return Py_NewRef(Py_NotImplemented);
    }
    int64_t n, v = ft_long_value(a);
    if (!shift_count(b, &n)) {
        return NULL;
    }
    /* Python's >> floors (an arithmetic shift, which GCC's >> of a signed
     * value is); beyond 63 bits only the sign is left. */
    return long_from_int64(n >= 63 ? (v < 0 ? -1 : 0) : v >> n);
}

static PyObject *
long_neg(PyObject *a)
{
    int64_t v = ft_long_value(a);
    if (v == INT64_MIN) {
        return int_overflow();
    }
    return long_from_int64(-v);
}

static PyObject *
long_abs(PyObject *a)
{
    int64_t v = ft_long_value(a);
    if (v == INT64_MIN) {
        return int_overflow();
    }
    return long_from_int64(v < 0 ? -v : v);
}

/* +x, int(x), x.__index__(): x itself if exactly an int, else (a bool, a
 * subclass instance) a plain int with the same value, as CPython. */
static PyObject *
long_long(PyObject *a)
{
    if (PyLong_CheckExact(a)) {
        return Py_NewRef(a);
    }
    return long_from_int64(ft_long_value(a));
}

static PyObject *
long_invert(PyObject *a)
{
    return long_from_int64(~ft_long_value(a));   /* -(v+1): never overflows */
}

static int
long_bool(PyObject *a)
{
    return ft_long_value(a) != 0;
}

static PyObject *
long_float(PyObject *a)
{
    return PyFloat_FromDouble((double)ft_long_value(a));
}

static PyObject *
long_repr(PyObject *self)
{
    char buf[24];   /* "-9223372036854775808" is 20 characters */
    snprintf(buf, sizeof buf, "%" PRId64, ft_long_value(self));
    return PyUnicode_FromString(buf);
}

/* ---- int(x=0, /, base=10) ------------------------------------------------------ */

/* A str's UTF-8 text for parsing; NULL with ValueError if it holds a NUL
 * (CPython: the text is invalid), or the error of the conversion. */
static const char *
text_of(PyObject *str, const char *what)
{
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(str, &len);
    if (text != NULL && (Py_ssize_t)strlen(text) != len) {
        PyErr_Format(PyExc_ValueError, "%s: string contains a null character", what);
        return NULL;
    }
    return text;
}

/* int(x): x's __int__, else __index__, else a str parsed in base 10. */
static PyObject *
number_long(PyObject *x)
{
    if (PyLong_CheckExact(x)) {
        return Py_NewRef(x);
    }
    PyNumberMethods *nb = Py_TYPE(x)->tp_as_number;
    if (nb != NULL && nb->nb_int != NULL) {
        PyObject *r = nb->nb_int(x);
        if (r != NULL && !PyLong_Check(r)) {
            PyErr_Format(PyExc_TypeError, "__int__ returned non-int (type %.200s)",
                         Py_TYPE(r)->tp_name);
            Py_DECREF(r);
            return NULL;
        }
        return r;
    }
    if (nb != NULL && nb->nb_index != NULL) {
        return number_index(x);
    }
    if (PyUnicode_Check(x)) {
        const char *text = text_of(x, "int()");
        return text == NULL ? NULL : PyLong_FromString(text, NULL, 10);
    }
    PyErr_Format(PyExc_TypeError,
                 "int() argument must be a string, a bytes-like object or a real number, "
                 "not '%.200s'", Py_TYPE(x)->tp_name);
    return NULL;
}

static PyObject *
long_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (args == NULL || !PyTuple_Check(args) || (kwds != NULL && !PyDict_Check(kwds))) {
        PyErr_BadInternalCall();
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n > 2) {
        PyErr_Format(PyExc_TypeError, "int() takes at most 2 arguments (%zd given)", n);
        return NULL;
    }
    PyObject *x = n > 0 ? PyTuple_GET_ITEM(args, 0) : NULL;
    PyObject *obase = n > 1 ? PyTuple_GET_ITEM(args, 1) : NULL;
    if (kwds != NULL) {   /* only base= (a fresh dict: no other thread sees it) */
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(kwds, &pos, &key, &value)) {
            if (!PyUnicode_Check(key)) {
                PyErr_SetString(PyExc_TypeError, "keywords must be strings");
                return NULL;
            }
            if (PyUnicode_EqualToUTF8(key, "base") != 1) {
                PyErr_Format(PyExc_TypeError, "'%U' is an invalid keyword argument for int()", key);
                return NULL;
            }
            if (obase != NULL) {
                PyErr_SetString(PyExc_TypeError,
                                "argument for int() given by name ('base') and position (2)");
                return NULL;
            }
            obase = value;
        }
    }
    PyObject *r;
    if (x == NULL) {
        if (obase != NULL) {
            PyErr_SetString(PyExc_TypeError, "int() missing string argument");
            return NULL;
        }
        r = long_from_int64(0);
    }
    else if (obase == NULL) {
        r = number_long(x);
    }
    else {
        int64_t base;
        if (!index_value(obase, &base)) {
            return NULL;
        }
        if (!PyUnicode_Check(x)) {
            PyErr_SetString(PyExc_TypeError, "int() can't convert non-string with explicit base");
            return NULL;
        }
        if (base != 0 && (base < 2 || base > 36)) {
            PyErr_SetString(PyExc_ValueError, "int() arg 2 must be >= 2 and <= 36");
            return NULL;
        }
        const char *text = text_of(x, "int()");
        r = text == NULL ? NULL : PyLong_FromString(text, NULL, (int)base);
    }
    if (r == NULL || type == &PyLong_Type) {
        return r;
    }
    /* A subclass: an instance of `type` with r's value. */
    PyObject *o = type->tp_alloc(type, 0);
    if (o != NULL) {
        ((PyLongObject *)o)->long_value = ft_long_value(r);
    }
    Py_DECREF(r);
    return o;
}

static void
long_dealloc(PyObject *self)
{
    /* Never reached for a small int, True or False (immortal).  A heap
     * subclass's subtype_dealloc drops the type reference. */
    Py_TYPE(self)->tp_free(self);
}

static PyNumberMethods long_as_number = {
    .nb_add = long_add,
    .nb_subtract = long_sub,
    .nb_multiply = long_mul,
    .nb_remainder = long_remainder,
    .nb_divmod = long_divmod,
    .nb_power = long_pow,
    .nb_negative = long_neg,
    .nb_positive = long_long,
    .nb_absolute = long_abs,
    .nb_bool = long_bool,
    .nb_invert = long_invert,
    .nb_lshift = long_lshift,
    .nb_rshift = long_rshift,
    .nb_and = long_and,
    .nb_xor = long_xor,
    .nb_or = long_or,
    .nb_int = long_long,
    .nb_float = long_float,
    .nb_floor_divide = long_floor_div,
    .nb_true_divide = long_true_divide,
    .nb_index = long_long,
};

PyTypeObject PyLong_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "int",
    .tp_basicsize = sizeof(PyLongObject),
    .tp_dealloc = long_dealloc,
    .tp_repr = long_repr,
    .tp_as_number = &long_as_number,
    .tp_hash = long_hash,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_LONG_SUBCLASS |
                Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN,
    .tp_richcompare = long_richcompare,
    .tp_new = long_new,
    .tp_free = PyObject_Free,
};

/* ---- bool ------------------------------------------------------------------ */

static void
bool_dealloc(PyObject *self)
{
    (void)self;
    /* Unreachable: True and False are immortal and the only bools. */
    _Py_FatalErrorFunc("_Py_Dealloc", "deallocating True or False");
}

static PyObject *
bool_repr(PyObject *self)
{
    return PyUnicode_FromString(self == Py_True ? "True" : "False");
}

/* bool & | ^ bool is a bool; with any other int, int's result. */
static PyObject *
bool_and(PyObject *a, PyObject *b)
{
    if (!PyBool_Check(a) || !PyBool_Check(b)) {
        return long_and(a, b);
    }
    return PyBool_FromLong(a == Py_True && b == Py_True);
}

static PyObject *
bool_or(PyObject *a, PyObject *b)
{
    if (!PyBool_Check(a) || !PyBool_Check(b)) {
        return long_or(a, b);
    }
    return PyBool_FromLong(a == Py_True || b == Py_True);
}

static PyObject *
bool_xor(PyObject *a, PyObject *b)
{
    if (!PyBool_Check(a) || !PyBool_Check(b)) {
        return long_xor(a, b);
    }
    return PyBool_FromLong(a != b);
}

/* The other slots are filled from int's by PyType_Ready. */
static PyNumberMethods bool_as_number = {
    .nb_and = bool_and,
    .nb_xor = bool_xor,
    .nb_or = bool_or,
};

/* bool(x=False, /): x's truth value. */
static PyObject *
bool_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type;
    if (args == NULL || !PyTuple_Check(args)) {
        PyErr_BadInternalCall();
        return NULL;
    }
    if (kwds != NULL && PyDict_Size(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "bool() takes no keyword arguments");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n > 1) {
        PyErr_Format(PyExc_TypeError, "bool expected at most 1 argument, got %zd", n);
        return NULL;
    }
    if (n == 0) {
        Py_RETURN_FALSE;
    }
    int t = ft_object_is_true(PyTuple_GET_ITEM(args, 0));
    return t < 0 ? NULL : PyBool_FromLong(t);
}

/* Everything else (hash, comparison, arithmetic) is int's: True + 1 == 2. */
PyTypeObject PyBool_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "bool",
    .tp_basicsize = sizeof(PyLongObject),
    .tp_dealloc = bool_dealloc,
    .tp_repr = bool_repr,
    .tp_as_number = &bool_as_number,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN,
    .tp_base = &PyLong_Type,
    .tp_new = bool_new,
};

struct _longobject _Py_FalseStruct = { _PyObject_HEAD_INIT(&PyBool_Type), 0 };
struct _longobject _Py_TrueStruct = { _PyObject_HEAD_INIT(&PyBool_Type), 1 };

PyObject *
PyBool_FromLong(long v)
{
    return v ? Py_True : Py_False;   /* immortal: a new reference costs nothing */
}
