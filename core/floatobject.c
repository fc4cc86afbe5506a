/* float: PyFloat_Type, an immutable C double.
 *
 * CONCURRENCY
 *   As for int (core/longobject.c): the value is written once by the
 *   creating thread before the object is published, then only read, with
 *   plain loads; no locks, no atomics.  Creation is PyObject_Malloc plus
 *   the header (no free list: jemalloc's thread cache is the free list, and
 *   a shared one would need synchronisation).
 *
 * HASH
 *   CPython's numeric hash, so that x == y implies hash(x) == hash(y)
 *   across int, float and bool: a finite double is reduced modulo the
 *   prime P = 2**61 - 1 (an integral value gets its int's hash), an
 *   infinity hashes to +-314159, a NaN to its address (CPython 3.10+).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_number.h"
#include "ft_types.h"

PyObject *
PyFloat_FromDouble(double v)
{
    ft_alloc_safe_point();   /* as every object creation (docs/threads.md) */
    PyFloatObject *op = PyObject_Malloc(sizeof(PyFloatObject));
    if (op == NULL) {
        return PyErr_NoMemory();
    }
    /* PyFloat_Type is static, hence immortal: no type reference taken. */
    ft_object_init((PyObject *)op, &PyFloat_Type);
    op->ob_fval = v;
    return (PyObject *)op;
}

double
PyFloat_AsDouble(PyObject *op)
{
    if (op == NULL) {
        PyErr_BadArgument();
        return -1.0;
    }
    if (PyFloat_Check(op)) {
        return PyFloat_AS_DOUBLE(op);
    }
    PyNumberMethods *nb = Py_TYPE(op)->tp_as_number;
    if (nb != NULL && nb->nb_float != NULL) {
        PyObject *res = nb->nb_float(op);
        if (res == NULL) {
            return -1.0;
        }
        if (!PyFloat_Check(res)) {
            PyErr_Format(PyExc_TypeError, "%.50s.__float__ returned non-float (type %.50s)",
                         Py_TYPE(op)->tp_name, Py_TYPE(res)->tp_name);
            Py_DECREF(res);
            return -1.0;
        }
        double v = PyFloat_AS_DOUBLE(res);
        Py_DECREF(res);
        return v;
    }
    if (nb != NULL && nb->nb_index != NULL) {
        PyObject *i = nb->nb_index(op);
        if (i == NULL) {
            return -1.0;
        }
        if (!PyLong_Check(i)) {
            PyErr_Format(PyExc_TypeError, "__index__ returned non-int (type %.200s)",
                         Py_TYPE(i)->tp_name);
            Py_DECREF(i);
            return -1.0;
        }
        double v = PyLong_AsDouble(i);
        Py_DECREF(i);
        return v;
    }
    PyErr_Format(PyExc_TypeError, "must be real number, not %.50s", Py_TYPE(op)->tp_name);
    return -1.0;
}

/* ---- float(x) -------------------------------------------------------------------- */

static bool
is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The value of text[0..len) as float() reads it; false if invalid.  The
 * syntax is checked here (strtod alone would also take hex floats,
 * "nan(...)" and locale forms), underscores are dropped, then strtod
 * converts (correctly rounded in glibc). */
static bool
parse_float(const char *text, size_t len, double *out)
{
    while (len > 0 && is_space(*text)) {
        text++;
        len--;
    }
    while (len > 0 && is_space(text[len - 1])) {
        len--;
    }
    char buf[512];
    if (len == 0 || len >= sizeof buf) {
        return false;   /* no double needs 511 characters; CPython would take them */
    }
    size_t i = 0, n = 0;
    if (text[i] == '+' || text[i] == '-') {
        buf[n++] = text[i++];
    }
    /* inf, infinity, nan in any case */
    const char *words[] = { "inf", "infinity", "nan" };
    for (size_t w = 0; w < 3; w++) {
        if (len - i == strlen(words[w]) && strncasecmp(text + i, words[w], len - i) == 0) {
            double v = w == 2 ? NAN : INFINITY;
            *out = n > 0 && buf[0] == '-' ? -v : v;   /* buf[0]: the sign, if any */
            return true;
        }
    }
    /* digits [. digits] [e [sign] digits], at least one mantissa digit,
     * an underscore only between two digits */
    bool mantissa = false, dot = false;
    for (; i < len; i++) {
        char c = text[i];
        if (is_digit(c)) {
            mantissa = true;
            buf[n++] = c;
        }
        else if (c == '_' && i > 0 && is_digit(text[i - 1]) && i + 1 < len && is_digit(text[i + 1])) {
            continue;
        }
        else if (c == '.' && !dot) {
            dot = true;
            buf[n++] = c;
        }
        else {
            break;
        }
    }
    if (!mantissa) {
        return false;
    }
    if (i < len && (text[i] == 'e' || text[i] == 'E')) {
        buf[n++] = text[i++];
        if (i < len && (text[i] == '+' || text[i] == '-')) {
            buf[n++] = text[i++];
        }
        bool expdigits = false;
        for (; i < len; i++) {
            char c = text[i];
            if (is_digit(c)) {
                expdigits = true;
                buf[n++] = c;
            }
            else if (c == '_' && is_digit(text[i - 1]) && i + 1 < len && is_digit(text[i + 1])) {
                continue;
            }
            else {
                break;
            }
        }
        if (!expdigits) {
            return false;
        }
    }
    if (i != len) {
        return false;
    }
    buf[n] = '\0';
    *out = strtod(buf, NULL);   /* overflow gives +-inf, as float('1e999') */
    return true;
}

PyObject *
PyFloat_FromString(PyObject *str)
{
    if (str == NULL || !PyUnicode_Check(str)) {
        PyErr_Format(PyExc_TypeError, "float() argument must be a string or a real number, not '%.200s'",
                     str == NULL ? "NULL" : Py_TYPE(str)->tp_name);
        return NULL;
    }
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(str, &len);
    if (text == NULL) {
        return NULL;
    }
    double v;
    if ((Py_ssize_t)strlen(text) != len || !parse_float(text, (size_t)len, &v)) {
        PyErr_Format(PyExc_ValueError, "could not convert string to float: '%.200s'", text);
        return NULL;
    }
    return PyFloat_FromDouble(v);
}

/* float(x=0.0, /) */
static PyObject *
float_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (args == NULL || !PyTuple_Check(args)) {
        PyErr_BadInternalCall();
        return NULL;
    }
    if (kwds != NULL && PyDict_Size(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "float() takes no keyword arguments");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n > 1) {
        PyErr_Format(PyExc_TypeError, "float expected at most 1 argument, got %zd", n);
        return NULL;
    }
    PyObject *x = n == 1 ? PyTuple_GET_ITEM(args, 0) : NULL;
    double v = 0.0;
    if (x != NULL && PyFloat_CheckExact(x) && type == &PyFloat_Type) {
        return Py_NewRef(x);
    }
    if (x != NULL && PyUnicode_Check(x)) {
        PyObject *f = PyFloat_FromString(x);
        if (f == NULL || type == &PyFloat_Type) {
            return f;
        }
        v = PyFloat_AS_DOUBLE(f);
        Py_DECREF(f);
    }
    else if (x != NULL) {
        PyNumberMethods *nb = Py_TYPE(x)->tp_as_number;
        if (!PyFloat_Check(x) && (nb == NULL || (nb->nb_float == NULL && nb->nb_index == NULL))) {
            PyErr_Format(PyExc_TypeError,
                         "float() argument must be a string or a real number, not '%.200s'",
                         Py_TYPE(x)->tp_name);
            return NULL;
        }
        v = PyFloat_AsDouble(x);
        if (v == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (type == &PyFloat_Type) {
        return PyFloat_FromDouble(v);
    }
    PyObject *o = type->tp_alloc(type, 0);   /* a subclass */
    if (o != NULL) {
        ((PyFloatObject *)o)->ob_fval = v;
    }
    return o;
}

/* ---- repr ------------------------------------------------------------------ */

void
ft_double_repr(double v, char *buf, size_t size)
{
    if (isnan(v)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, v > 0 ? "inf" : "-inf");
        return;
    }
    /* The shortest digit string that reads back as v (CPython's repr, after
     * David Gay): for q = 1, 2, ... significant digits take the nearest
     * q-digit decimal M * 10**e ("%.*e"); 17 digits always round-trip
     * (DBL_DECIMAL_DIG).  The nearest can miss while its neighbour on the
     * other side of v hits: at a power of two the doubles below are twice
     * as dense as above, so v's rounding interval is lopsided; then M + 1
     * or M - 1 is the answer (only one of them can lie in the interval). */
    bool neg = signbit(v) != 0;
    double a = fabs(v);
    uint64_t m = 0;
    int e = 0;   /* a == m * 10**e, read back */
    for (int q = 1; q <= 17; q++) {
        char sci[40];
        snprintf(sci, sizeof sci, "%.*e", q - 1, a);
        /* sci is d[.ddd]e(+|-)xx: the q digits as an integer, and the
         * exponent of the last one */
        uint64_t mm = 0;
        const char *p = sci;
        for (; *p != 'e'; p++) {
            if (*p != '.') {
                mm = mm * 10 + (uint64_t)(*p - '0');
            }
        }
        int ee = atoi(p + 1) - (q - 1);
        uint64_t cands[3] = { mm, mm + 1, mm - 1 };
        bool found = false;
        for (int c = 0; c < 3 && !found; c++) {
            if (c > 0 && (q == 17 || cands[c] == 0)) {
                break;   /* 17 digits: the nearest always works */
            }
            char t[48];
            snprintf(t, sizeof t, "%" PRIu64 "e%d", cands[c], ee);
            if (strtod(t, NULL) == a) {
                m = cands[c];
                e = ee;
                found = true;
            }
        }
        if (found) {
            break;
        }
    }
    /* the digits of m without trailing zeros, and the decimal exponent of
     * the first one */
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, m);
    int exp10 = e + n - 1;
    while (n > 1 && digits[n - 1] == '0') {   /* 150e-2 -> 1.5 */
        n--;
    }
    digits[n] = '\0';
    char *out = buf;
    size_t left = size;
#define PUT(...)                                                            \
    do {                                                                    \
        int k_ = snprintf(out, left, __VA_ARGS__);                         \
        size_t w_ = k_ < 0 ? 0 : (size_t)k_ < left ? (size_t)k_ : left - 1; \
        out += w_;                                                          \
        left -= w_;                                                         \
    } while (0)
    if (neg) {
        PUT("-");
    }
    /* CPython's repr: positional notation for exponents -4..15, else
     * scientific with a signed exponent of at least two digits. */
    if (exp10 < -4 || exp10 >= 16) {
        PUT("%c", digits[0]);
        if (n > 1) {
            PUT(".%s", digits + 1);
        }
        PUT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    else if (exp10 < 0) {   /* 0.000ddd */
        PUT("0.%.*s%s", -exp10 - 1, "0000", digits);
    }
    else {
        int int_len = exp10 + 1;   /* 1..16 digits before the point */
        if (n <= int_len) {   /* integral: the digits, zeros, ".0" */
            PUT("%s%.*s.0", digits, int_len - n, "0000000000000000");
        }
        else {
            PUT("%.*s.%s", int_len, digits, digits + int_len);
        }
    }
#undef PUT
}

static PyObject *
float_repr(PyObject *self)
{
    char buf[40];
    ft_double_repr(PyFloat_AS_DOUBLE(self), buf, sizeof buf);
    return PyUnicode_FromString(buf);
}

/* ---- hash ------------------------------------------------------------------ */

Py_hash_t
ft_hash_double(double v)
{
    /* v = m * 2**e with 0.5 <= |m| < 1.  Read m 28 bits at a time, most
     * significant first, accumulating x = (x * 2**28 + bits) mod P, where
     * multiplying by 2**k mod P is a rotation of the 61-bit value (2**61 is
     * 1 mod P).  Each step consumes 28 bits of m and lowers e by 28, so at
     * the end |v| = x * 2**e and the remaining power of two is one more
     * rotation by e mod 61 (also for negative e, as 2**-1 is 2**60 mod P). */
    int e;
    double m = frexp(v, &e);
    int sign = 1;
    if (m < 0) {
        sign = -1;
        m = -m;
    }
    uint64_t x = 0;
    while (m != 0) {
        x = ((x << 28) & FT_HASH_MODULUS) | x >> (FT_HASH_BITS - 28);
        m *= 268435456.0;   /* 2**28 */
        e -= 28;
        uint64_t bits = (uint64_t)m;   /* the next 28 bits (m < 2**28) */
        m -= (double)bits;
        x += bits;
        if (x >= FT_HASH_MODULUS) {
            x -= FT_HASH_MODULUS;
        }
    }
    /* e mod 61 in 0..60, also for a negative e. */
    e = e >= 0 ? e % FT_HASH_BITS : FT_HASH_BITS - 1 - ((-1 - e) % FT_HASH_BITS);
    x = ((x << e) & FT_HASH_MODULUS) | x >> (FT_HASH_BITS - e);
    Py_hash_t h = (Py_hash_t)x * sign;
    return h == -1 ? -2 : h;
}

static Py_hash_t
float_hash(PyObject *self)
{
    double v = PyFloat_AS_DOUBLE(self);
    if (isinf(v)) {
        return v > 0 ? FT_HASH_INF : -FT_HASH_INF;
    }
    if (isnan(v)) {
        /* NaN != NaN, so any hash is consistent; CPython hashes the object
         * (its address, rotated as _Py_HashPointer does so the low zero
         * bits of an aligned address do not all collide). */
        uintptr_t p = (uintptr_t)self;
        Py_hash_t h = (Py_hash_t)((p >> 4) | (p << (8 * sizeof(p) - 4)));
        return h == -1 ? -2 : h;
    }
    return ft_hash_double(v);
}

/* ---- comparison ------------------------------------------------------------ */

static PyObject *
float_richcompare(PyObject *self, PyObject *other, int op)
{
    if (!PyFloat_Check(self)) {
        return Py_NewRef(Py_NotImplemented);
    }
    double a = PyFloat_AS_DOUBLE(self);
    int c;   /* -1, 0, 1, or 2 for unordered (a NaN) */
    if (PyFloat_Check(other)) {
        double b = PyFloat_AS_DOUBLE(other);
        c = isnan(a) || isnan(b) ? 2 : a < b ? -1 : a > b ? 1 : 0;
    }
    else if (PyLong_Check(other)) {
        /* Exact, not (double)other == a: 2**53 + 1 != 2.0**53. */
        c = ft_compare_int_double(ft_long_value(other), a);
        c = c == 2 ? 2 : -c;
    }
    else {
        return Py_NewRef(Py_NotImplemented);
    }
    bool r;
    if (c == 2) {
        r = op == Py_NE;   /* every comparison with a NaN is false but != */
    }
    else {
        switch (op) {
        case Py_LT: r = c < 0; break;
        case Py_LE: r = c <= 0; break;
        case Py_EQ: r = c == 0; break;
        case Py_NE: r = c != 0; break;
        case Py_GT: r = c > 0; break;
        default: r = c >= 0; break;
        }
    }
    return PyBool_FromLong(r);
}

/* ---- number slots ---------------------------------------------------------- */

/* An operand as a double: a float, or an int converted (CPython's
 * CONVERT_TO_DOUBLE); false for anything else (the slot then returns
 * NotImplemented). */
static bool
as_double(PyObject *o, double *out)
{
    if (PyFloat_Check(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return true;
    }
    if (PyLong_Check(o)) {
        *out = (double)ft_long_value(o);
        return true;
    }
    return false;
}

#define OPERANDS(a, b, x, y)                                                \
    double x, y;                                                            \
    if (!as_double((a), &x) || !as_double((b), &y)) {                       \
        return Py_NewRef(Py_NotImplemented);                                \
    }

static PyObject *
float_add(PyObject *a, PyObject *b)
{
    OPERANDS(a, b, x, y);
    return PyFloat_FromDouble(x + y);
}

static PyObject *
float_sub(PyObject *a, PyObject *b)
{
    OPERANDS(a, b, x, y);
    return PyFloat_FromDouble(x - y);
}

static PyObject *
float_mul(PyObject *a, PyObject *b)
{
    OPERANDS(a, b, x, y);
    return PyFloat_FromDouble(x * y);
}

static PyObject *
float_div(PyObject *a, PyObject *b)
{
    OPERANDS(a, b, x, y);
    if (y == 0.0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
        return NULL;
    }
    return PyFloat_FromDouble(x / y);
}

/* Python's modulo (the result takes the divisor's sign) and floor
 * division of finite or infinite x, y with y != 0 (CPython's rules,
 * including the signs of zero results). */
static void
float_divmod_values(double x, double y, double *floordiv, double *mod)
{
    double m = fmod(x, y);   /* exact; takes x's sign */
    double div = (x - m) / y;   /* an integral value, up to rounding */
    if (m != 0) {
        if ((y < 0) != (m < 0)) {   /* move the remainder to y's side */
            m += y;
            div -= 1.0;
        }
    }
    else {
        m = copysign(0.0, y);
    }
    double fd;
    if (div != 0) {
        fd = floor(div);
        if (div - fd > 0.5) {   /* (x - m) / y rounded just below an integer */
            fd += 1.0;
        }
    }
    else {
        fd = copysign(0.0, x / y);
    }
    *floordiv = fd;
    *mod = m;
}

static PyObject *
float_floor_div(PyObject *a, PyObject *b)
{
    OPERANDS(a, b, x, y);
    if (y == 0.0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "float floor division by zero");
        return NULL;
    }
    double q, m;
    float_divmod_values(x, y, &q, &m);
    return PyFloat_FromDouble(q);
}

static PyObject *
float_rem(PyObject *a, PyObject *b)
{
    OPERANDS(a, b, x, y);
    if (y == 0.0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "float modulo by zero");
        return NULL;
    }
    double q, m;
    float_divmod_values(x, y, &q, &m);
    return PyFloat_FromDouble(m);
}

static PyObject *
float_divmod(PyObject *a, PyObject *b)
{
    OPERANDS(a, b, x, y);
    if (y == 0.0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "float divmod()");
        return NULL;
    }
    double q, m;
    float_divmod_values(x, y, &q, &m);
    PyObject *qo = PyFloat_FromDouble(q);
    PyObject *mo = qo == NULL ? NULL : PyFloat_FromDouble(m);
    PyObject *res = mo == NULL ? NULL : PyTuple_Pack(2, qo, mo);
    Py_XDECREF(qo);
    Py_XDECREF(mo);
    return res;
}

/* x ** y: C99's pow, which already gives Python's results for infinities,
 * NaNs and signed zeros, plus Python's errors.  A negative base with a
 * non-integral exponent has a complex result in CPython; ftrt has no
 * complex and raises ValueError. */
static PyObject *
float_pow(PyObject *a, PyObject *b, PyObject *c)
{
    if (c != Py_None) {
        PyErr_SetString(PyExc_TypeError,
                        "pow() 3rd argument not allowed unless all arguments are integers");
        return NULL;
    }
    OPERANDS(a, b, x, y);
    if (x == 0.0 && y < 0.0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "0.0 cannot be raised to a negative power");
        return NULL;
    }
    if (x < 0.0 && isfinite(x) && isfinite(y) && y != floor(y)) {
        PyErr_SetString(PyExc_ValueError,
                        "negative number cannot be raised to a fractional power "
                        "(ftrt has no complex numbers)");
        return NULL;
    }
    double r = pow(x, y);
    if (isinf(r) && isfinite(x) && isfinite(y)) {
        PyErr_SetString(PyExc_OverflowError, "(34, 'Numerical result out of range')");
        return NULL;
    }
    return PyFloat_FromDouble(r);
}

static PyObject *
float_neg(PyObject *a)
{
    return PyFloat_FromDouble(-PyFloat_AS_DOUBLE(a));
}

static PyObject *
float_abs(PyObject *a)
{
    return PyFloat_FromDouble(fabs(PyFloat_AS_DOUBLE(a)));
}

/* +x and float(x): x itself if exactly a float, else a plain float. */
static PyObject *
float_float(PyObject *a)
{
    if (PyFloat_CheckExact(a)) {
        return Py_NewRef(a);
    }
    return PyFloat_FromDouble(PyFloat_AS_DOUBLE(a));
}

static int
float_bool(PyObject *a)
{
    return PyFloat_AS_DOUBLE(a) != 0.0;   /* NaN is true, as in CPython */
}

static PyObject *
float_int(PyObject *a)
{
    return PyLong_FromDouble(PyFloat_AS_DOUBLE(a));   /* truncates; NaN/inf raise */
}

static void
float_dealloc(PyObject *self)
{
    Py_TYPE(self)->tp_free(self);
}

static PyNumberMethods float_as_number = {
    .nb_add = float_add,
    .nb_subtract = float_sub,
    .nb_multiply = float_mul,
    .nb_remainder = float_rem,
    .nb_divmod = float_divmod,
    .nb_power = float_pow,
    .nb_negative = float_neg,
    .nb_positive = float_float,
    .nb_absolute = float_abs,
    .nb_bool = float_bool,
    .nb_int = float_int,
    .nb_float = float_float,
    .nb_floor_divide = float_floor_div,
    .nb_true_divide = float_div,
};

PyTypeObject PyFloat_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "float",
    .tp_basicsize = sizeof(PyFloatObject),
    .tp_dealloc = float_dealloc,
    .tp_repr = float_repr,
    .tp_as_number = &float_as_number,
    .tp_hash = float_hash,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE |
                Py_TPFLAGS_STATIC_BUILTIN,
    .tp_richcompare = float_richcompare,
    .tp_new = float_new,
    .tp_free = PyObject_Free,
};
