/* The per-thread error indicator: PyErr_*.
 *
 * STATE
 *   Each thread state has one slot, ts->current_exception: NULL (no error)
 *   or a strong reference to an exception instance (CPython 3.12's single
 *   "raised exception"; type and message come from the instance).  Only the
 *   thread the state is attached to reads or writes it, so there are no
 *   atomics and no ordering to explain: a thread can see only its own
 *   error.  The one exception is ft_errors_clear_tstate, which
 *   PyThreadState_Clear and finalization may call for a state that is not
 *   the caller's; that state is then attached nowhere (PyThreadState_Clear
 *   refuses a state attached to another thread; finalization has the world
 *   stopped), and the release/acquire on the state word in core/tstate.c
 *   orders its last owner's writes before the clear.
 *
 *   Every function here except PyErr_GivenExceptionMatches needs the
 *   calling thread's state attached; without one it is a fatal error naming
 *   the function (CPython's debug builds do the same; its release builds
 *   crash).
 *
 *   Replacing the indicator stores the new value before dropping the old
 *   one, so a destructor run by that drop sees a consistent state.
 *
 * OUT OF MEMORY
 *   PyErr_NoMemory raises a static immortal MemoryError instance
 *   (core/exceptions.c): it allocates nothing and cannot fail.  Every other
 *   raise allocates the exception instance and its message; if that fails,
 *   the thread ends up with that MemoryError instead of the exception it
 *   asked for, as in CPython.
 *
 * FORMATTING
 *   PyErr_Format's formatter is our own (below), shared with
 *   PyUnicode_FromFormatV (core/unicodeobject.c, through ft_format_v).  It
 *   writes into a 256-byte stack buffer and moves to a growing heap buffer
 *   only for longer messages.  %S %R %A call PyObject_Str / Repr / ASCII;
 *   if one raises, that exception is what the caller ends up with.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_types.h"

static void _Py_NO_RETURN FT_NOINLINE
no_tstate(const char *func)
{
    _Py_FatalErrorFunc(func, "called without an attached thread state (the GIL released, "
                             "or Python not initialized)");
}

static inline ft_tstate *
need_tstate(const char *func)
{
    ft_tstate *ts = ft_current();
    if (ft_unlikely(ts == NULL)) {
        no_tstate(func);
    }
    return ts;
}

/* Install exc (a stolen reference, or NULL) as ts's error. */
static void
restore(ft_tstate *ts, PyObject *exc)
{
    PyObject *old = ts->current_exception;
    ts->current_exception = exc;
    Py_XDECREF(old);
}

static PyObject *
take(ft_tstate *ts)
{
    PyObject *exc = ts->current_exception;
    ts->current_exception = NULL;
    return exc;
}

void
ft_errors_clear_tstate(ft_tstate *ts)
{
    Py_XDECREF(take(ts));
}

/* Raise a new instance of `type` with message msg[0..len) (msg NULL: no
 * message).  A type that is not an exception class raises SystemError. */
static void
raise_message(ft_tstate *ts, PyObject *type, const char *msg, size_t len)
{
    if (type == NULL || !PyExceptionClass_Check(type)) {
        char buf[200];
        int n;
        if (type == NULL) {
            n = snprintf(buf, sizeof buf, "an exception was raised with a NULL type");
        }
        else {
            n = snprintf(buf, sizeof buf, "exception %.100s is not a BaseException subclass",
                         PyType_Check(type) ? ((PyTypeObject *)type)->tp_name
                                            : Py_TYPE(type)->tp_name);
        }
        type = PyExc_SystemError;
        msg = buf;
        len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
        PyObject *exc = ft_exception_new((PyTypeObject *)type, msg, len);
        if (exc != NULL) {
            restore(ts, exc);
        }
        return;
    }
    PyObject *exc = ft_exception_new((PyTypeObject *)type, msg, len);
    if (exc != NULL) {
        restore(ts, exc);
    }
    /* else: ft_exception_new raised MemoryError */
}

void
PyErr_SetString(PyObject *exception, const char *message)
{
    ft_tstate *ts = need_tstate(__func__);
    raise_message(ts, exception, message, message ? strlen(message) : 0);
}

void
PyErr_SetNone(PyObject *exception)
{
    ft_tstate *ts = need_tstate(__func__);
    raise_message(ts, exception, NULL, 0);
}

void
PyErr_SetObject(PyObject *exception, PyObject *value)
{
    ft_tstate *ts = need_tstate(__func__);
    if (value == NULL || value == Py_None || exception == NULL ||
        !PyExceptionClass_Check(exception)) {
        raise_message(ts, exception, NULL, 0);
        return;
    }
    if (PyExceptionInstance_Check(value)) {
        if (PyObject_TypeCheck(value, (PyTypeObject *)exception)) {
            restore(ts, Py_NewRef(value));
            return;
        }
        /* CPython would call exception(value): the new exception's message
         * is str(value), which for an exception is its message. */
        const char *msg = ((PyBaseExceptionObject *)value)->msg;
        raise_message(ts, exception, msg, msg ? strlen(msg) : 0);
        return;
    }
    /* CPython would call exception(value); the message of the result,
     * str(exc), is str(value), or repr(value) for a KeyError (whose str
     * shows the key's repr).  (A tuple value would be unpacked into
     * several arguments by CPython; here it is one value.)  If the
     * conversion fails, its exception is the one left set. */
    bool key_error = PyType_IsSubtype((PyTypeObject *)exception,
                                      (PyTypeObject *)PyExc_KeyError);
    PyObject *text = key_error ? PyObject_Repr(value) : PyObject_Str(value);
    if (text == NULL) {
        return;
    }
    Py_ssize_t n;
    const char *msg = PyUnicode_AsUTF8AndSize(text, &n);
    raise_message(ts, exception, msg, (size_t)n);
    Py_DECREF(text);
}

PyObject *
PyErr_Occurred(void)
{
    ft_tstate *ts = need_tstate(__func__);
    PyObject *exc = ts->current_exception;
    return exc != NULL ? (PyObject *)Py_TYPE(exc) : NULL;
}

void
PyErr_Clear(void)
{
    ft_tstate *ts = need_tstate(__func__);
    restore(ts, NULL);
}

PyObject *
PyErr_NoMemory(void)
{
    ft_tstate *ts = need_tstate(__func__);
    /* Static and immortal: the new reference is free and cannot fail. */
    restore(ts, Py_NewRef((PyObject *)&ft_memory_error_instance));
    return NULL;
}

void
_PyErr_BadInternalCall(const char *filename, int lineno)
{
    ft_tstate *ts = need_tstate("PyErr_BadInternalCall");
    char buf[300];
    int n = snprintf(buf, sizeof buf, "%.200s:%d: bad argument to internal function",
                     filename ? filename : "?", lineno);
    raise_message(ts, PyExc_SystemError, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

int
PyErr_BadArgument(void)
{
    ft_tstate *ts = need_tstate(__func__);
    static const char msg[] = "bad argument type for built-in operation";
    raise_message(ts, PyExc_TypeError, msg, sizeof msg - 1);
    return 0;
}

int
PyErr_GivenExceptionMatches(PyObject *given, PyObject *exc)
{
    if (given == NULL || exc == NULL) {
        return 0;
    }
    if (PyExceptionInstance_Check(given)) {
        given = (PyObject *)Py_TYPE(given);
    }
    if (PyExceptionClass_Check(given) && PyExceptionClass_Check(exc)) {
        return PyType_IsSubtype((PyTypeObject *)given, (PyTypeObject *)exc);
    }
    return given == exc;
}

int
PyErr_ExceptionMatches(PyObject *exc)
{
    ft_tstate *ts = need_tstate(__func__);
    PyObject *cur = ts->current_exception;
    return cur != NULL && PyErr_GivenExceptionMatches(cur, exc);
}

PyObject *
PyErr_GetRaisedException(void)
{
    ft_tstate *ts = need_tstate(__func__);
    return take(ts);
}

void
PyErr_SetRaisedException(PyObject *exc)
{
    ft_tstate *ts = need_tstate(__func__);
    restore(ts, exc);
}

/* "TypeName: message" (or "TypeName" without a message), one line; the
 * caller holds stderr's lock. */
static void
print_exception_line(PyObject *exc)
{
    const char *name = Py_TYPE(exc)->tp_name;
    const char *msg = PyExceptionInstance_Check(exc) ? ((PyBaseExceptionObject *)exc)->msg : NULL;
    if (msg != NULL && msg[0] != '\0') {
        fprintf(stderr, "%s: %s\n", name, msg);
    }
    else {
        fprintf(stderr, "%s\n", name);
    }
}

void
PyErr_PrintEx(int set_sys_last_vars)
{
    (void)set_sys_last_vars;   /* there is no sys module */
    ft_tstate *ts = need_tstate(__func__);
    PyObject *exc = take(ts);
    if (exc == NULL) {
        return;
    }
    flockfile(stderr);   /* one thread's report stays together */
    print_exception_line(exc);
    fflush(stderr);
    funlockfile(stderr);
    Py_DECREF(exc);
}

void
PyErr_Print(void)
{
    (void)need_tstate(__func__);
    PyErr_PrintEx(1);
}

void
PyErr_WriteUnraisable(PyObject *obj)
{
    ft_tstate *ts = need_tstate(__func__);
    PyObject *exc = take(ts);
    if (exc == NULL) {
        return;
    }
    /* repr(obj), computed before taking stderr's lock (a repr may print);
     * if it fails, object's default repr, which cannot. */
    PyObject *repr = obj != NULL ? PyObject_Repr(obj) : NULL;
    if (obj != NULL && repr == NULL) {
        PyObject *failed = take(ts);
        Py_XDECREF(failed);
    }
    flockfile(stderr);
    if (repr != NULL) {
        fprintf(stderr, "Exception ignored in: %s\n", PyUnicode_AsUTF8(repr));
    }
    else if (obj != NULL) {
        fprintf(stderr, "Exception ignored in: <%s object at %p>\n", Py_TYPE(obj)->tp_name,
                (void *)obj);
    }
    print_exception_line(exc);
    fflush(stderr);
    funlockfile(stderr);
    Py_XDECREF(repr);
    Py_DECREF(exc);
}

/* ---- PyErr_Format ------------------------------------------------------------ */

typedef struct fmt_buf {
    char *p;            /* stack or heap[0..cap) */
    size_t len, cap;
    bool on_heap;
    bool oom;
    char stack[256];
} fmt_buf;

static bool
buf_reserve(fmt_buf *b, size_t extra)
{
    if (b->oom) {
        return false;
    }
    if (extra < b->cap - b->len) {   /* one byte stays free for the NUL */
        return true;
    }
    if (extra > PY_SSIZE_T_MAX / 2 - b->len) {
        b->oom = true;
        return false;
    }
    size_t want = b->len + extra + 1;
    size_t cap = b->cap * 2 > want ? b->cap * 2 : want;
    char *p;
    if (b->on_heap) {
        p = PyMem_RawRealloc(b->p, cap);
    }
    else {
        p = PyMem_RawMalloc(cap);
        if (p != NULL) {
            memcpy(p, b->p, b->len);
        }
    }
    if (p == NULL) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    b->on_heap = true;
    return true;
}

static void
buf_put(fmt_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void
buf_fill(fmt_buf *b, char c, size_t n)
{
    if (buf_reserve(b, n)) {
        memset(b->p + b->len, c, n);
        b->len += n;
    }
}

/* Code points in s[0..n) (bytes that do not continue a UTF-8 sequence). */
static size_t
count_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    }
    return k;
}

/* s padded to `width` characters (right-aligned unless left). */
static void
put_padded(fmt_buf *b, const char *s, size_t n, size_t width, bool left)
{
    size_t chars = count_chars(s, n);
    size_t pad = width > chars ? width - chars : 0;
    if (!left) {
        buf_fill(b, ' ', pad);
    }
    buf_put(b, s, n);
    if (left) {
        buf_fill(b, ' ', pad);
    }
}

/* A C string with %s's precision: at most `prec` bytes (-1: all), never
 * cutting a UTF-8 sequence in two (a cut character is dropped; CPython
 * would decode it to U+FFFD). */
static void
put_cstring(fmt_buf *b, const char *s, long prec, size_t width, bool left)
{
    if (s == NULL) {
        s = "(null)";
    }
    size_t n;
    if (prec < 0) {
        n = strlen(s);
    }
    else {
        n = 0;
        while (n < (size_t)prec && s[n] != '\0') {   /* s need not be terminated within prec */
            n++;
        }
        if (n == (size_t)prec && n > 0) {
            /* Was the last character cut?  Look only inside s[0..n). */
            size_t i = n, cont = 0;
            while (i > 0 && cont < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
                i--;
                cont++;
            }
            if (i > 0) {
                unsigned char lead = (unsigned char)s[i - 1];
                size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
                if (need > cont + 1) {
                    n = i - 1;
                }
            }
        }
    }
    put_padded(b, s, n, width, left);
}

/* An integer: sign, at least `prec` digits, padded to `width` with spaces
 * (or zeros after the sign with the 0 flag). */
static void
put_integer(fmt_buf *b, unsigned long long mag, bool negative, unsigned base, bool upper,
            long prec, size_t width, bool left, bool zero)
{
    char digits[64];
    size_t nd = 0;
    const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        digits[sizeof digits - 1 - nd++] = set[mag % base];
        mag /= base;
    } while (mag != 0);
    size_t min_digits = prec > 0 ? (size_t)prec : 0;
    size_t zeros = min_digits > nd ? min_digits - nd : 0;
    size_t total = (negative ? 1 : 0) + zeros + nd;
    size_t pad = width > total ? width - total : 0;
    if (zero && !left && prec < 0) {
        zeros += pad;   /* the 0 flag pads with zeros, between sign and digits */
        pad = 0;
    }
    if (!left) {
        buf_fill(b, ' ', pad);
    }
    if (negative) {
        buf_put(b, "-", 1);
    }
    buf_fill(b, '0', zeros);
    buf_put(b, digits + sizeof digits - nd, nd);
    if (left) {
        buf_fill(b, ' ', pad);
    }
}

/* UTF-8 of code point c (c < 0x110000); returns the length. */
static size_t
encode_utf8(unsigned long c, char out[4])
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

enum { LEN_INT, LEN_LONG, LEN_LLONG, LEN_SIZE, LEN_PTRDIFF, LEN_INTMAX };

/* format_v's result when a conversion failed with an exception already set
 * (a __repr__ / __str__ that raised): any non-NULL marker that is not an
 * exception type; None is one. */
#define FMT_RAISED Py_None

/* The text of str object o (%S %R %A %U %V): precision and width count
 * code points, as CPython's do. */
static void
put_str_object(fmt_buf *b, PyObject *o, long prec, size_t width, bool left)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (prec >= 0) {
        /* Keep the first prec code points: stop at the lead byte of the
         * (prec+1)th. */
        Py_ssize_t i = 0;
        long chars = 0;
        while (i < n) {
            if (((unsigned char)s[i] & 0xC0) != 0x80) {
                if (chars == prec) {
                    break;
                }
                chars++;
            }
            i++;
        }
        n = i;
    }
    put_padded(b, s, (size_t)n, width, left);
}

/* Format into b.  Returns NULL on success, else the exception type to
 * raise, with its message in err[0..errcap). */
static PyObject *
format_v(fmt_buf *b, const char *f, va_list va, char *err, size_t errcap)
{
    while (*f) {
        if (*f != '%') {
            const char *lit = f;
            while (*f && *f != '%') {
                f++;
            }
            buf_put(b, lit, (size_t)(f - lit));
            continue;
        }
        const char *spec = f++;
        bool left = false, zero = false;
        for (;; f++) {
            if (*f == '-') {
                left = true;
            }
            else if (*f == '0') {
                zero = true;
            }
            else if (*f != '#') {   /* '#' (alternate %T/%N form) changes nothing here */
                break;
            }
        }
        size_t width = 0;
        if (*f == '*') {
            int w = va_arg(va, int);
            if (w < 0) {
                left = true;
                w = -w;
            }
            width = (size_t)w;
            f++;
        }
        else {
            while (*f >= '0' && *f <= '9') {
                width = width * 10 + (size_t)(*f++ - '0');
            }
        }
        long prec = -1;
        if (*f == '.') {
            f++;
            prec = 0;
            if (*f == '*') {
                int p = va_arg(va, int);
                prec = p < 0 ? -1 : p;
                f++;
            }
            else {
                while (*f >= '0' && *f <= '9') {
                    prec = prec * 10 + (*f++ - '0');
                }
            }
        }
        int len = LEN_INT;
        if (*f == 'l') {
            len = f[1] == 'l' ? LEN_LLONG : LEN_LONG;
            f += len == LEN_LLONG ? 2 : 1;
        }
        else if (*f == 'z') {
            len = LEN_SIZE;
            f++;
        }
        else if (*f == 't') {
            len = LEN_PTRDIFF;
            f++;
        }
        else if (*f == 'j') {
            len = LEN_INTMAX;
            f++;
        }
        char conv = *f;
        if (conv == '\0') {
            snprintf(err, errcap, "PyErr_Format: the format string ends inside '%s'", spec);
            return PyExc_SystemError;
        }
        f++;
        switch (conv) {
        case '%':
            buf_put(b, "%", 1);
            break;
        case 'c': {
            int c = va_arg(va, int);
            if (c < 0 || c > 0x10FFFF) {
                snprintf(err, errcap, "character argument not in range(0x110000)");
                return PyExc_OverflowError;
            }
            char u[4];
            put_padded(b, u, encode_utf8((unsigned long)c, u), width, left);
            break;
        }
        case 'd':
        case 'i': {
            long long v;
            switch (len) {
            case LEN_LONG: v = va_arg(va, long); break;
            case LEN_LLONG: v = va_arg(va, long long); break;
            case LEN_SIZE: v = va_arg(va, Py_ssize_t); break;
            case LEN_PTRDIFF: v = va_arg(va, ptrdiff_t); break;
            case LEN_INTMAX: v = (long long)va_arg(va, intmax_t); break;
            default: v = va_arg(va, int); break;
            }
            /* the magnitude of LLONG_MIN does not fit a long long */
            unsigned long long mag = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
            put_integer(b, mag, v < 0, 10, false, prec, width, left, zero);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'o': {
            unsigned long long v;
            switch (len) {
            case LEN_LONG: v = va_arg(va, unsigned long); break;
            case LEN_LLONG: v = va_arg(va, unsigned long long); break;
            case LEN_SIZE: v = va_arg(va, size_t); break;
            case LEN_PTRDIFF: v = (unsigned long long)va_arg(va, ptrdiff_t); break;
            case LEN_INTMAX: v = (unsigned long long)va_arg(va, uintmax_t); break;
            default: v = va_arg(va, unsigned int); break;
            }
            unsigned base = conv == 'u' ? 10 : conv == 'o' ? 8 : 16;
            put_integer(b, v, false, base, conv == 'X', prec, width, left, zero);
            break;
        }
        case 'p': {
            /* CPython's %p: always 0x and lower-case hex, on every platform */
            uintptr_t v = (uintptr_t)va_arg(va, void *);
            char tmp[2 + 2 * sizeof v];
            size_t n = 0;
            tmp[n++] = '0';
            tmp[n++] = 'x';
            bool started = false;
            for (int shift = (int)(8 * sizeof v) - 4; shift >= 0; shift -= 4) {
                unsigned d = (unsigned)(v >> shift) & 0xF;
                if (d != 0 || started || shift == 0) {
                    tmp[n++] = "0123456789abcdef"[d];
                    started = true;
                }
            }
            put_padded(b, tmp, n, width, left);
            break;
        }
        case 's':
            put_cstring(b, va_arg(va, const char *), prec, width, left);
            break;
        case 'T': {   /* the type name of an object */
            PyObject *o = va_arg(va, PyObject *);
            put_cstring(b, o ? Py_TYPE(o)->tp_name : NULL, prec, width, left);
            break;
        }
        case 'N': {   /* the name of a type object */
            PyObject *o = va_arg(va, PyObject *);
            put_cstring(b, o ? ((PyTypeObject *)o)->tp_name : NULL, prec, width, left);
            break;
        }
        case 'A':
        case 'R':
        case 'S':
        case 'U':
        case 'V': {
            PyObject *o = va_arg(va, PyObject *);
            const char *fallback = conv == 'V' ? va_arg(va, const char *) : NULL;
            if (conv == 'V' && o == NULL) {   /* %V: the C string when the object is NULL */
                put_cstring(b, fallback, prec, width, left);
                break;
            }
            PyObject *text;
            if (conv == 'U' || conv == 'V') {
                if (o == NULL || !PyUnicode_Check(o)) {
                    snprintf(err, errcap, "PyUnicode_FromFormat: %%%c needs a str argument",
                             conv);
                    return PyExc_SystemError;
                }
                text = Py_NewRef(o);
            }
            else {
                text = conv == 'S' ? PyObject_Str(o)
                       : conv == 'R' ? PyObject_Repr(o) : PyObject_ASCII(o);
                if (text == NULL) {
                    return FMT_RAISED;
                }
            }
            put_str_object(b, text, prec, width, left);
            Py_DECREF(text);
            break;
        }
        default:
            snprintf(err, errcap, "PyErr_Format: unsupported conversion '%%%c' in the format "
                     "string", conv);
            return PyExc_SystemError;
        }
    }
    return NULL;
}

PyObject *
PyErr_Format(PyObject *exception, const char *format, ...)
{
    ft_tstate *ts = need_tstate(__func__);
    /* CPython clears the indicator first: the old error must not survive a
     * failure to raise the new one (other than MemoryError). */
    restore(ts, NULL);
    if (format == NULL) {
        PyErr_BadInternalCall();
        return NULL;
    }
    fmt_buf b;
    b.p = b.stack;
    b.len = 0;
    b.cap = sizeof b.stack;
    b.on_heap = false;
    b.oom = false;
    char err[160];
    va_list va;
    va_start(va, format);
    PyObject *failed = format_v(&b, format, va, err, sizeof err);
    va_end(va);
    if (failed == FMT_RAISED) {
        /* a conversion raised: that exception stays set, as in CPython */
    }
    else if (failed != NULL) {
        raise_message(ts, failed, err, strlen(err));
    }
    else if (b.oom) {
        PyErr_NoMemory();
    }
    else {
        raise_message(ts, exception, b.p, b.len);
    }
    if (b.on_heap) {
        PyMem_RawFree(b.p);
    }
    return NULL;
}

char *
ft_format_v(const char *format, va_list va, size_t *len)
{
    fmt_buf b;
    b.p = b.stack;
    b.len = 0;
    b.cap = sizeof b.stack;
    b.on_heap = false;
    b.oom = false;
    char err[160];
    va_list copy;
    va_copy(copy, va);
    PyObject *failed = format_v(&b, format, copy, err, sizeof err);
    va_end(copy);
    char *out = NULL;
    if (failed == FMT_RAISED) {
        /* the exception is set */
    }
    else if (failed != NULL) {
        PyErr_SetString(failed, err);
    }
    else if (b.oom) {
        PyErr_NoMemory();
    }
    else if (b.on_heap) {
        out = b.p;   /* handed to the caller; buf_reserve left room for the NUL */
        b.on_heap = false;
    }
    else {
        out = PyMem_RawMalloc(b.len + 1);
        if (out == NULL) {
            PyErr_NoMemory();
        }
        else {
            memcpy(out, b.p, b.len);
        }
    }
    if (out != NULL) {
        out[b.len] = '\0';
        *len = b.len;
    }
    if (b.on_heap) {
        PyMem_RawFree(b.p);
    }
    return out;
}
