/* str objects: CPython 3.13's str API over a UTF-8 representation.
 *
 * REPRESENTATION
 *   One allocation per string (a plain, non-GC object: a str references
 *   nothing):
 *
 *     PyObject_VAR_HEAD   ob_size = the UTF-8 length in bytes
 *     length              the length in code points
 *     hash                -1 until first computed (see below)
 *     data[ob_size + 1]   validated UTF-8, NUL-terminated
 *
 *   Every constructor validates its input as strict UTF-8 (no overlong
 *   forms, no surrogates, nothing above U+10FFFF), so the rest of the file
 *   may assume well-formed UTF-8: byte order is code point order (compare
 *   with memcmp), a byte-level substring search finds exactly the code
 *   point substrings (UTF-8 is self-synchronising), and decoding needs no
 *   error checks.  Strings are immutable from the moment a constructor
 *   returns; CPython's "fill it in afterwards" style (FromStringAndSize with
 *   NULL data) is refused.
 *
 * CONCURRENCY: THE HASH CACHE
 *   The only word of a str that changes after creation is `hash`.  Several
 *   threads may hash one string at once: each computes the hash from the
 *   same immutable bytes, so each gets the same value, and each stores it
 *   with a relaxed atomic store.  Whichever store lands last writes what
 *   was already there (or -1 -> h, the same h as every other writer).  A
 *   reader does a relaxed atomic load: it sees -1 (and computes the hash
 *   itself, the same value) or the final value; a Py_hash_t is one aligned
 *   word, so no torn value can be seen.  Nothing else is published through
 *   the store, so no acquire/release ordering is needed: the bytes it is
 *   computed from were published with the string itself (whatever handed
 *   the str to the other thread ordered its creation before the hand-off).
 *   The atomics keep the race defined (and TSan quiet); on x86-64 and
 *   AArch64 they are plain loads and stores.  The GIL build runs the same
 *   code.
 *
 * CONCURRENCY: THE INTERN TABLE
 *   PyUnicode_InternInPlace keeps one immortal str per distinct text in a
 *   runtime-wide open-addressing table (intern_lock, a PyMutex, guards
 *   every read and write of it).  Interning s: compute s's hash outside the
 *   lock (lock-free, above), lock, look the text up; found t: unlock, hand
 *   out t (immortal, so the new reference writes nothing); not found: make
 *   s immortal, set its `interned` flag, insert it (growing the table with
 *   the raw allocator if needed), unlock.  The flag is an atomic byte,
 *   stored with release after s was made immortal and read with acquire
 *   without the lock as a fast path: a reader that sees 1 therefore also
 *   sees s's immortal reference count (its own later Py_DECREF must not
 *   touch the count), and knows s is in the table; one that sees 0 takes
 *   the lock and finds the truth there.  Nothing under the lock
 *   reaches a safe point (the raw allocator has none, no object is created
 *   or freed), so, as with type_lock in core/typeobject.c, a stop-the-world
 *   or fork never catches a holder inside and the lock needs no fork hook;
 *   a waiter parks detached.  Interned strings live until Py_FinalizeEx
 *   (ft_unicode_fini, called from ft_types_fini when no other thread runs),
 *   which frees them and the table.
 *
 * OUT OF MEMORY
 *   Every constructor returns NULL with MemoryError set; temporary buffers
 *   (repr, ascii, formatting) are freed on every path.  Interning that
 *   cannot grow the table leaves the string as it is, not interned, and
 *   raises nothing (CPython does the same).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ft_alloc.h"
#include "ft_critical_section.h"
#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_types.h"

typedef struct {
    PyObject_VAR_HEAD            /* ob_size: bytes of UTF-8, NUL excluded */
    Py_ssize_t length;           /* code points */
    Py_hash_t hash;              /* -1: not computed yet (atomic, relaxed) */
    uint8_t interned;            /* 1: in the intern table, immortal (atomic) */
    char data[];                 /* ob_size bytes of UTF-8, then a NUL */
} ft_str;

#define STR(op) ((ft_str *)(op))

/* ---- UTF-8 --------------------------------------------------------------- */

/* Validate s[0..n) as strict UTF-8 (RFC 3629).  Returns the number of code
 * points, or -1 after filling *bad_start / *bad_end (the offending bytes,
 * inclusive) and *reason with CPython's decoder's wording. */
static Py_ssize_t
utf8_validate(const unsigned char *s, Py_ssize_t n, Py_ssize_t *bad_start,
              Py_ssize_t *bad_end, const char **reason)
{
    Py_ssize_t i = 0, chars = 0;
    while (i < n) {
        /* ASCII runs 8 bytes at a time: no byte has its top bit set */
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) {
                break;
            }
            i += 8;
            chars += 8;
        }
        if (i >= n) {
            break;
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            chars++;
            continue;
        }
        /* Sequence length and the range the first continuation byte must
         * fall in: E0 and F0 exclude overlong forms, ED the surrogates
         * U+D800..U+DFFF, F4 everything above U+10FFFF.  C0, C1 (always
         * overlong) and F5..FF (beyond U+10FFFF) never start a sequence. */
        Py_ssize_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 2;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 3;
            if (c == 0xE0) {
                lo = 0xA0;
            }
            else if (c == 0xED) {
                hi = 0x9F;
            }
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            need = 4;
            if (c == 0xF0) {
                lo = 0x90;
            }
            else if (c == 0xF4) {
                hi = 0x8F;
            }
        }
        else {
            *bad_start = *bad_end = i;
            *reason = "invalid start byte";
            return -1;
        }
        for (Py_ssize_t k = 1; k < need; k++) {
            if (i + k >= n) {
                *bad_start = i;
                *bad_end = n - 1;
                *reason = "unexpected end of data";
                return -1;
            }
            unsigned char d = s[i + k];
            if (d < lo || d > hi) {
                *bad_start = i;
                *bad_end = i + k - 1;
                *reason = "invalid continuation byte";
                return -1;
            }
            lo = 0x80;
            hi = 0xBF;
        }
        i += need;
        chars++;
    }
    return chars;
}

/* The code point starting at s[*i] (valid UTF-8); advances *i past it. */
static uint32_t
utf8_next(const unsigned char *s, Py_ssize_t *i)
{
    unsigned char c = s[*i];
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    if (c < 0xE0) {
        uint32_t cp = ((uint32_t)(c & 0x1F) << 6) | (s[*i + 1] & 0x3F);
        *i += 2;
        return cp;
    }
    if (c < 0xF0) {
        uint32_t cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[*i + 1] & 0x3F) << 6) |
                      (s[*i + 2] & 0x3F);
        *i += 3;
        return cp;
    }
    uint32_t cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[*i + 1] & 0x3F) << 12) |
                  ((uint32_t)(s[*i + 2] & 0x3F) << 6) | (s[*i + 3] & 0x3F);
    *i += 4;
    return cp;
}

/* Code points in valid UTF-8 s[0..n): the bytes that are not continuation
 * bytes (10xxxxxx). */
static Py_ssize_t
utf8_count(const char *s, Py_ssize_t n)
{
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    }
    return k;
}

/* ---- construction ------------------------------------------------------- */

/* A new, uninitialised str of nbytes bytes (NUL and hash set, length not);
 * NULL + MemoryError on failure (also if nbytes is too large). */
static ft_str *
str_alloc(Py_ssize_t nbytes)
{
    ft_str *s = (ft_str *)_PyObject_NewVar(&PyUnicode_Type, nbytes);
    if (s == NULL) {
        return NULL;
    }
    s->data[nbytes] = '\0';
    s->hash = -1;
    s->interned = 0;
    return s;
}

/* A new str holding a copy of valid UTF-8 s[0..n) of `chars` code points. */
static PyObject *
str_from_valid(const char *s, Py_ssize_t n, Py_ssize_t chars)
{
    ft_str *r = str_alloc(n);
    if (r == NULL) {
        return NULL;
    }
    if (n > 0) {
        memcpy(r->data, s, (size_t)n);
    }
    r->length = chars;
    return (PyObject *)r;
}

/* A new str from s[0..n), every invalid UTF-8 sequence replaced by U+FFFD
 * (3 bytes: EF BF BD).  One pass to validate; only text with errors gets a
 * second, into a buffer of at most 3 bytes per input byte. */
static PyObject *
str_from_utf8_replace(const char *s, Py_ssize_t n)
{
    Py_ssize_t bad_start, bad_end;
    const char *reason;
    const unsigned char *u = (const unsigned char *)s;
    Py_ssize_t chars = utf8_validate(u, n, &bad_start, &bad_end, &reason);
    if (chars >= 0) {
        return str_from_valid(s, n, chars);
    }
    if (n > PY_SSIZE_T_MAX / 3) {
        return PyErr_NoMemory();
    }
    char *out = PyMem_RawMalloc((size_t)(3 * n));
    if (out == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t o = 0, i = 0, total = 0;
    while (i < n) {
        chars = utf8_validate(u + i, n - i, &bad_start, &bad_end, &reason);
        if (chars >= 0) {
            memcpy(out + o, s + i, (size_t)(n - i));
            o += n - i;
            total += chars;
            break;
        }
        /* the valid prefix, then one replacement character */
        memcpy(out + o, s + i, (size_t)bad_start);
        o += bad_start;
        total += utf8_count(s + i, bad_start);
        memcpy(out + o, "\xef\xbf\xbd", 3);
        o += 3;
        total++;
        i += bad_end + 1;
    }
    PyObject *r = str_from_valid(out, o, total);
    PyMem_RawFree(out);
    return r;
}

/* Raise UnicodeDecodeError with CPython's message for bytes s[start..end]. */
static void
raise_decode_error(const unsigned char *s, Py_ssize_t start, Py_ssize_t end, const char *reason)
{
    if (start == end) {
        PyErr_Format(PyExc_UnicodeDecodeError,
                     "'utf-8' codec can't decode byte 0x%02x in position %zd: %s",
                     (unsigned)s[start], start, reason);
    }
    else {
        PyErr_Format(PyExc_UnicodeDecodeError,
                     "'utf-8' codec can't decode bytes in position %zd-%zd: %s",
                     start, end, reason);
    }
}

PyObject *
PyUnicode_FromStringAndSize(const char *u, Py_ssize_t size)
{
    if (size < 0) {
        PyErr_SetString(PyExc_SystemError,
                        "Negative size passed to PyUnicode_FromStringAndSize");
        return NULL;
    }
    if (u == NULL) {
        if (size == 0) {
            return str_from_valid("", 0, 0);
        }
        PyErr_SetString(PyExc_SystemError,
                        "PyUnicode_FromStringAndSize: NULL data with a non-zero size is not "
                        "supported (ftrt's str objects are immutable from creation)");
        return NULL;
    }
    Py_ssize_t bad_start, bad_end;
    const char *reason;
    Py_ssize_t chars = utf8_validate((const unsigned char *)u, size, &bad_start, &bad_end,
                                     &reason);
    if (chars < 0) {
        raise_decode_error((const unsigned char *)u, bad_start, bad_end, reason);
        return NULL;
    }
    return str_from_valid(u, size, chars);
}

PyObject *
PyUnicode_FromString(const char *u)
{
    if (u == NULL) {
        PyErr_BadInternalCall();
        return NULL;
    }
    size_t n = strlen(u);
    if (n > (size_t)PY_SSIZE_T_MAX) {
        return PyErr_NoMemory();
    }
    return PyUnicode_FromStringAndSize(u, (Py_ssize_t)n);
}

PyObject *
PyUnicode_FromFormatV(const char *format, va_list vargs)
{
    if (format == NULL) {
        PyErr_BadInternalCall();
        return NULL;
    }
    size_t len;
    char *buf = ft_format_v(format, vargs, &len);
    if (buf == NULL) {
        return NULL;
    }
    /* The formatter writes UTF-8 except where the caller's bytes go in
     * unchanged: the format's literal text and %s / %V strings.  CPython
     * decodes those with the "replace" error handler: each invalid
     * sequence (as the strict decoder delimits it) becomes one U+FFFD. */
    PyObject *r = str_from_utf8_replace(buf, (Py_ssize_t)len);
    PyMem_RawFree(buf);
    return r;
}

PyObject *
PyUnicode_FromFormat(const char *format, ...)
{
    va_list va;
    va_start(va, format);
    PyObject *r = PyUnicode_FromFormatV(format, va);
    va_end(va);
    return r;
}

/* ---- access -------------------------------------------------------------- */

const char *
PyUnicode_AsUTF8AndSize(PyObject *unicode, Py_ssize_t *size)
{
    if (unicode == NULL || !PyUnicode_Check(unicode)) {
        PyErr_BadArgument();   /* TypeError "bad argument type for built-in operation" */
        if (size != NULL) {
            *size = -1;
        }
        return NULL;
    }
    if (size != NULL) {
        *size = Py_SIZE(unicode);
    }
    return STR(unicode)->data;
}

const char *
PyUnicode_AsUTF8(PyObject *unicode)
{
    return PyUnicode_AsUTF8AndSize(unicode, NULL);
}

Py_ssize_t
PyUnicode_GetLength(PyObject *unicode)
{
    if (unicode == NULL || !PyUnicode_Check(unicode)) {
        PyErr_BadArgument();
        return -1;
    }
    return STR(unicode)->length;
}

/* ---- operations ---------------------------------------------------------- */

PyObject *
PyUnicode_Concat(PyObject *left, PyObject *right)
{
    if (left == NULL || right == NULL) {
        PyErr_BadInternalCall();
        return NULL;
    }
    if (!PyUnicode_Check(left)) {
        PyErr_Format(PyExc_TypeError, "must be str, not %.100s", Py_TYPE(left)->tp_name);
        return NULL;
    }
    if (!PyUnicode_Check(right)) {
        PyErr_Format(PyExc_TypeError, "can only concatenate str (not \"%.200s\") to str",
                     Py_TYPE(right)->tp_name);
        return NULL;
    }
    Py_ssize_t a = Py_SIZE(left), b = Py_SIZE(right);
    if (a > PY_SSIZE_T_MAX - b) {
        PyErr_SetString(PyExc_OverflowError, "strings are too large to concat");
        return NULL;
    }
    ft_str *r = str_alloc(a + b);
    if (r == NULL) {
        return NULL;
    }
    memcpy(r->data, STR(left)->data, (size_t)a);
    memcpy(r->data + a, STR(right)->data, (size_t)b);
    r->length = STR(left)->length + STR(right)->length;
    return (PyObject *)r;
}

/* memcmp order over the UTF-8 bytes, which is code point order. */
static int
str_cmp(PyObject *a, PyObject *b)
{
    Py_ssize_t na = Py_SIZE(a), nb = Py_SIZE(b);
    int c = memcmp(STR(a)->data, STR(b)->data, (size_t)(na < nb ? na : nb));
    if (c != 0) {
        return c < 0 ? -1 : 1;
    }
    return na < nb ? -1 : na > nb;
}

int
PyUnicode_Compare(PyObject *left, PyObject *right)
{
    if (left == NULL || right == NULL || !PyUnicode_Check(left) || !PyUnicode_Check(right)) {
        PyErr_Format(PyExc_TypeError, "Can't compare %.100s and %.100s",
                     left ? Py_TYPE(left)->tp_name : "NULL",
                     right ? Py_TYPE(right)->tp_name : "NULL");
        return -1;
    }
    return str_cmp(left, right);
}

int
PyUnicode_CompareWithASCIIString(PyObject *left, const char *right)
{
    /* CPython treats right as Latin-1 (one code point per byte) and only
     * asserts that left is a str; a non-str here returns -1, raising
     * nothing. */
    if (left == NULL || right == NULL || !PyUnicode_Check(left)) {
        return -1;
    }
    const unsigned char *s = (const unsigned char *)STR(left)->data;
    Py_ssize_t n = Py_SIZE(left), i = 0;
    const unsigned char *r = (const unsigned char *)right;
    while (i < n && *r != '\0') {
        uint32_t cp = utf8_next(s, &i);
        if (cp != *r) {
            return cp < *r ? -1 : 1;
        }
        r++;
    }
    if (i < n) {
        return 1;    /* left is longer */
    }
    return *r != '\0' ? -1 : 0;
}

int
PyUnicode_EqualToUTF8AndSize(PyObject *unicode, const char *string, Py_ssize_t size)
{
    if (unicode == NULL || string == NULL || size < 0 || !PyUnicode_Check(unicode)) {
        return 0;
    }
    return Py_SIZE(unicode) == size && memcmp(STR(unicode)->data, string, (size_t)size) == 0;
}

int
PyUnicode_EqualToUTF8(PyObject *unicode, const char *string)
{
    if (string == NULL) {
        return 0;
    }
    return PyUnicode_EqualToUTF8AndSize(unicode, string, (Py_ssize_t)strlen(string));
}

int
PyUnicode_Contains(PyObject *container, PyObject *element)
{
    if (container == NULL || element == NULL) {
        PyErr_BadInternalCall();
        return -1;
    }
    if (!PyUnicode_Check(element)) {
        PyErr_Format(PyExc_TypeError, "'in <string>' requires string as left operand, not %.100s",
                     Py_TYPE(element)->tp_name);
        return -1;
    }
    if (!PyUnicode_Check(container)) {
        PyErr_Format(PyExc_TypeError, "must be str, not %.100s", Py_TYPE(container)->tp_name);
        return -1;
    }
    Py_ssize_t n = Py_SIZE(container), m = Py_SIZE(element);
    if (m == 0) {
        return 1;
    }
    if (m > n) {
        return 0;
    }
    return memmem(STR(container)->data, (size_t)n, STR(element)->data, (size_t)m) != NULL;
}

/* Byte offset of code point i (0 <= i <= length) in s. */
static Py_ssize_t
str_offset(PyObject *s, Py_ssize_t i)
{
    if (STR(s)->length == Py_SIZE(s)) {
        return i;   /* all ASCII */
    }
    const unsigned char *d = (const unsigned char *)STR(s)->data;
    Py_ssize_t pos = 0;
    for (Py_ssize_t k = 0; k < i; k++) {
        (void)utf8_next(d, &pos);
    }
    return pos;
}

PyObject *
PyUnicode_FromOrdinal(int ordinal)
{
    if (ordinal < 0 || ordinal > Py_UNICODE_MAX) {
        PyErr_SetString(PyExc_ValueError, "chr() arg not in range(0x110000)");
        return NULL;
    }
    if (ordinal >= 0xD800 && ordinal <= 0xDFFF) {
        PyErr_SetString(PyExc_ValueError,
                        "chr() arg is a surrogate: ftrt's str objects cannot hold lone "
                        "surrogates");
        return NULL;
    }
    /* UTF-8 of the code point: 1 to 4 bytes */
    char u[4];
    Py_ssize_t n;
    uint32_t c = (uint32_t)ordinal;
    if (c < 0x80) {
        u[0] = (char)c;
        n = 1;
    }
    else if (c < 0x800) {
        u[0] = (char)(0xC0 | (c >> 6));
        u[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    }
    else if (c < 0x10000) {
        u[0] = (char)(0xE0 | (c >> 12));
        u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    }
    else {
        u[0] = (char)(0xF0 | (c >> 18));
        u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    return str_from_valid(u, n, 1);
}

PyObject *
PyUnicode_Substring(PyObject *str, Py_ssize_t start, Py_ssize_t end)
{
    if (str == NULL || !PyUnicode_Check(str)) {
        PyErr_BadArgument();
        return NULL;
    }
    if (start < 0 || end < 0) {
        PyErr_SetString(PyExc_IndexError, "string index out of range");
        return NULL;
    }
    Py_ssize_t len = STR(str)->length;
    if (end > len) {
        end = len;
    }
    if (start == 0 && end == len && PyUnicode_CheckExact(str)) {
        return Py_NewRef(str);
    }
    if (start >= end) {
        return str_from_valid("", 0, 0);
    }
    Py_ssize_t b0 = str_offset(str, start);
    Py_ssize_t b1 = b0;
    const unsigned char *d = (const unsigned char *)STR(str)->data;
    for (Py_ssize_t k = start; k < end; k++) {
        (void)utf8_next(d, &b1);
    }
    return str_from_valid((const char *)d + b0, b1 - b0, end - start);
}

Py_UCS4
PyUnicode_ReadChar(PyObject *unicode, Py_ssize_t index)
{
    if (unicode == NULL || !PyUnicode_Check(unicode)) {
        PyErr_BadArgument();
        return (Py_UCS4)-1;
    }
    if (index < 0 || index >= STR(unicode)->length) {
        PyErr_SetString(PyExc_IndexError, "string index out of range");
        return (Py_UCS4)-1;
    }
    Py_ssize_t pos = str_offset(unicode, index);
    return utf8_next((const unsigned char *)STR(unicode)->data, &pos);
}

/* Slice-style bounds: negative indices count from the end, then both are
 * clipped to [0, len] (CPython's ADJUST_INDICES). */
static void
adjust_bounds(Py_ssize_t len, Py_ssize_t *start, Py_ssize_t *end)
{
    if (*end > len) {
        *end = len;
    }
    else if (*end < 0) {
        *end += len;
        if (*end < 0) {
            *end = 0;
        }
    }
    if (*start < 0) {
        *start += len;
        if (*start < 0) {
            *start = 0;
        }
    }
}

/* Byte position of the first (direction > 0) or last occurrence of
 * needle[0..m) in hay[b0..b1), or -1.  Every match starts on a character
 * boundary: a valid needle starts with a lead byte, which never equals a
 * continuation byte. */
static Py_ssize_t
bytes_find(const char *hay, Py_ssize_t b0, Py_ssize_t b1, const char *needle, Py_ssize_t m,
           int direction)
{
    if (b1 - b0 < m) {
        return -1;
    }
    if (m == 0) {
        return direction > 0 ? b0 : b1;
    }
    if (direction > 0) {
        const char *p = memmem(hay + b0, (size_t)(b1 - b0), needle, (size_t)m);
        return p ? p - hay : -1;
    }
    for (Py_ssize_t p = b1 - m; p >= b0; p--) {
        if (hay[p] == needle[0] && memcmp(hay + p, needle, (size_t)m) == 0) {
            return p;
        }
    }
    return -1;
}

/* Code point index of byte position pos, counting from code point start at
 * byte b0. */
static Py_ssize_t
index_of(PyObject *s, Py_ssize_t start, Py_ssize_t b0, Py_ssize_t pos)
{
    return start + utf8_count(STR(s)->data + b0, pos - b0);
}

/* The checks shared by Find and Tailmatch: 0, or -1 with TypeError. */
static int
check_two_strs(PyObject *str, PyObject *substr)
{
    PyObject *args[2] = { str, substr };
    for (int i = 0; i < 2; i++) {
        if (args[i] == NULL || !PyUnicode_Check(args[i])) {
            PyErr_Format(PyExc_TypeError, "must be str, not %.100s",
                         args[i] ? Py_TYPE(args[i])->tp_name : "NULL");
            return -1;
        }
    }
    return 0;
}

Py_ssize_t
PyUnicode_Find(PyObject *str, PyObject *substr, Py_ssize_t start, Py_ssize_t end,
               int direction)
{
    if (check_two_strs(str, substr) < 0) {
        return -2;
    }
    adjust_bounds(STR(str)->length, &start, &end);
    if (end - start < STR(substr)->length) {
        return -1;
    }
    Py_ssize_t b0 = str_offset(str, start), b1 = str_offset(str, end);
    Py_ssize_t pos = bytes_find(STR(str)->data, b0, b1, STR(substr)->data, Py_SIZE(substr),
                                direction);
    return pos < 0 ? -1 : index_of(str, start, b0, pos);
}

Py_ssize_t
PyUnicode_FindChar(PyObject *str, Py_UCS4 ch, Py_ssize_t start, Py_ssize_t end, int direction)
{
    if (str == NULL || !PyUnicode_Check(str)) {
        PyErr_BadArgument();
        return -2;
    }
    if (ch > Py_UNICODE_MAX || (ch >= 0xD800 && ch <= 0xDFFF)) {
        return -1;   /* no str holds it */
    }
    PyObject *needle = PyUnicode_FromOrdinal((int)ch);
    if (needle == NULL) {
        return -2;
    }
    Py_ssize_t r = PyUnicode_Find(str, needle, start, end, direction);
    Py_DECREF(needle);
    return r;
}

Py_ssize_t
PyUnicode_Tailmatch(PyObject *str, PyObject *substr, Py_ssize_t start, Py_ssize_t end,
                    int direction)
{
    if (check_two_strs(str, substr) < 0) {
        return -1;
    }
    adjust_bounds(STR(str)->length, &start, &end);
    Py_ssize_t m = STR(substr)->length;
    if (end - start < m || start > STR(str)->length) {
        return 0;
    }
    /* direction < 0: substr is a prefix of str[start:end], else a suffix */
    Py_ssize_t at = direction < 0 ? start : end - m;
    Py_ssize_t b = str_offset(str, at);
    return Py_SIZE(str) - b >= Py_SIZE(substr) &&
           memcmp(STR(str)->data + b, STR(substr)->data, (size_t)Py_SIZE(substr)) == 0;
}

/* The items of a list are copied (new references) inside a critical
 * section on the list, so that another thread changing the list cannot
 * free an item or the item array while they are joined; a tuple is
 * immutable and read directly. */
PyObject *
PyUnicode_Join(PyObject *separator, PyObject *seq)
{
    if (seq == NULL) {
        PyErr_BadInternalCall();
        return NULL;
    }
    if (separator != NULL && !PyUnicode_Check(separator)) {
        PyErr_Format(PyExc_TypeError, "separator: expected str instance, %.80s found",
                     Py_TYPE(separator)->tp_name);
        return NULL;
    }
    PyObject *fseq = PySequence_Fast(seq, "can only join an iterable");
    if (fseq == NULL) {
        return NULL;
    }
    Py_ssize_t n = 0;
    PyObject **items = NULL;
    bool oom = false;
    Py_BEGIN_CRITICAL_SECTION(fseq);
    n = PySequence_Fast_GET_SIZE(fseq);
    items = n > 0 ? PyMem_RawMalloc((size_t)n * sizeof *items) : NULL;
    if (n > 0 && items == NULL) {
        oom = true;
    }
    else {
        PyObject **src = PySequence_Fast_ITEMS(fseq);
        for (Py_ssize_t i = 0; i < n; i++) {
            items[i] = Py_NewRef(src[i]);
        }
    }
    Py_END_CRITICAL_SECTION();
    Py_DECREF(fseq);
    if (oom) {
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    Py_ssize_t sep_bytes = separator ? Py_SIZE(separator) : 1;
    Py_ssize_t sep_chars = separator ? STR(separator)->length : 1;
    const char *sep = separator ? STR(separator)->data : " ";
    Py_ssize_t bytes = 0, chars = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "sequence item %zd: expected str instance, %.80s found",
                         i, Py_TYPE(items[i])->tp_name);
            goto done;
        }
        Py_ssize_t add = Py_SIZE(items[i]) + (i > 0 ? sep_bytes : 0);
        if (bytes > PY_SSIZE_T_MAX - add) {
            PyErr_SetString(PyExc_OverflowError, "join() result is too long for a Python string");
            goto done;
        }
        bytes += add;
        chars += STR(items[i])->length + (i > 0 ? sep_chars : 0);
    }
    if (n == 1 && PyUnicode_CheckExact(items[0])) {
        result = Py_NewRef(items[0]);
        goto done;
    }
    ft_str *r = str_alloc(bytes);
    if (r == NULL) {
        goto done;
    }
    char *o = r->data;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i > 0) {
            memcpy(o, sep, (size_t)sep_bytes);
            o += sep_bytes;
        }
        memcpy(o, STR(items[i])->data, (size_t)Py_SIZE(items[i]));
        o += Py_SIZE(items[i]);
    }
    r->length = chars;
    result = (PyObject *)r;
done:
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(items[i]);
    }
    PyMem_RawFree(items);
    return result;
}

/* ---- repr and ascii ------------------------------------------------------ */

/* Is cp printable as CPython's str.isprintable() decides, approximately:
 * without the Unicode database, ftrt treats as unprintable the controls
 * (Cc), the separators other than ' ' (Zs, Zl, Zp), the common format
 * characters (Cf), the private-use areas (Co) and the noncharacters; every
 * other code point counts as printable (CPython would also escape the
 * unassigned ones). */
static bool
is_printable(uint32_t cp)
{
    if (cp < 0x20 || cp == 0x7F) {
        return false;
    }
    if (cp < 0x7F) {
        return true;
    }
    if (cp <= 0xA0 || cp == 0xAD) {                      /* C1 controls, NBSP, soft hyphen */
        return false;
    }
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || /* spaces, ZW*, LRM/RLM */
        (cp >= 0x2028 && cp <= 0x202F) ||                 /* LS, PS, bidi, NNBSP */
        (cp >= 0x205F && cp <= 0x206F) ||                 /* MMSP, invisible operators */
        cp == 0x3000 || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) ||
        cp == 0x061C || cp == 0x180E) {
        return false;
    }
    if ((cp >= 0xE000 && cp <= 0xF8FF) || cp >= 0xF0000) {   /* private use */
        return false;
    }
    if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) {   /* noncharacters */
        return false;
    }
    return true;
}

static char *
put_hex(char *o, char prefix, uint32_t v, int digits)
{
    *o++ = '\\';
    *o++ = prefix;
    for (int sh = 4 * (digits - 1); sh >= 0; sh -= 4) {
        *o++ = "0123456789abcdef"[(v >> sh) & 0xF];
    }
    return o;
}

/* The escape of cp as repr() writes it (\xhh, \uhhhh or \Uhhhhhhhh). */
static char *
put_escape(char *o, uint32_t cp)
{
    if (cp <= 0xFF) {
        return put_hex(o, 'x', cp, 2);
    }
    if (cp <= 0xFFFF) {
        return put_hex(o, 'u', cp, 4);
    }
    return put_hex(o, 'U', cp, 8);
}

/* repr() of s (ascii_only: ascii()).  Quotes as CPython chooses them: ' unless
 * the text holds ' and no ", then ".  Worst case 4 output bytes per input
 * byte (an ASCII control becomes \xhh; a 4-byte sequence at most the 10
 * bytes of \Uhhhhhhhh), plus the quotes. */
static PyObject *
str_repr_impl(PyObject *self, bool ascii_only)
{
    const unsigned char *s = (const unsigned char *)STR(self)->data;
    Py_ssize_t n = Py_SIZE(self);
    if (n > (PY_SSIZE_T_MAX - 3) / 4) {
        return PyErr_NoMemory();
    }
    bool has_sq = memchr(s, '\'', (size_t)n) != NULL;
    bool has_dq = memchr(s, '"', (size_t)n) != NULL;
    char quote = has_sq && !has_dq ? '"' : '\'';
    char *buf = PyMem_RawMalloc((size_t)(4 * n + 3));
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    char *o = buf;
    *o++ = quote;
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t start = i;
        uint32_t cp = utf8_next(s, &i);
        if (cp == (uint32_t)quote || cp == '\\') {
            *o++ = '\\';
            *o++ = (char)cp;
        }
        else if (cp == '\t') {
            *o++ = '\\';
            *o++ = 't';
        }
        else if (cp == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        }
        else if (cp == '\r') {
            *o++ = '\\';
            *o++ = 'r';
        }
        else if (!is_printable(cp) || (ascii_only && cp >= 0x80)) {
            o = put_escape(o, cp);
        }
        else {
            memcpy(o, s + start, (size_t)(i - start));
            o += i - start;
        }
    }
    *o++ = quote;
    Py_ssize_t len = o - buf;
    /* Only ASCII was added, so the code points are the kept characters plus
     * one per ASCII byte written; counting is simpler than tracking. */
    PyObject *r = str_from_valid(buf, len, utf8_count(buf, len));
    PyMem_RawFree(buf);
    return r;
}

static PyObject *
str_repr(PyObject *self)
{
    return str_repr_impl(self, false);
}

PyObject *
PyObject_ASCII(PyObject *o)
{
    PyObject *repr = PyObject_Repr(o);
    if (repr == NULL) {
        return NULL;
    }
    /* Escape the non-ASCII code points of the repr (a str repr is escaped
     * the same way, so re-escaping it gives ascii(str)). */
    const unsigned char *s = (const unsigned char *)STR(repr)->data;
    Py_ssize_t n = Py_SIZE(repr);
    bool all_ascii = true;
    for (Py_ssize_t i = 0; i < n && all_ascii; i++) {
        all_ascii = s[i] < 0x80;
    }
    if (all_ascii) {
        return repr;
    }
    /* Worst case 4 output bytes per input byte (a 2-byte sequence becomes
     * \xhh or \uhhhh). */
    if (n > PY_SSIZE_T_MAX / 4) {
        Py_DECREF(repr);
        return PyErr_NoMemory();
    }
    char *buf = PyMem_RawMalloc((size_t)(4 * n + 1));
    if (buf == NULL) {
        Py_DECREF(repr);
        return PyErr_NoMemory();
    }
    char *out = buf;
    Py_ssize_t i = 0;
    while (i < n) {
        uint32_t cp = utf8_next(s, &i);
        if (cp < 0x80) {
            *out++ = (char)cp;
        }
        else {
            out = put_escape(out, cp);
        }
    }
    Py_ssize_t len = out - buf;
    PyObject *r = str_from_valid(buf, len, len);
    PyMem_RawFree(buf);
    Py_DECREF(repr);
    return r;
}

/* ---- slots --------------------------------------------------------------- */

/* FNV-1a (64-bit) over the UTF-8 bytes, then a MurmurHash3-style finaliser
 * (xor-shift, multiply) so that short strings that differ in one byte
 * differ in every bit of the result.  Deterministic across runs (ftrt has
 * no hash randomisation yet). */
static Py_hash_t
str_hash(PyObject *self)
{
    Py_hash_t h = __atomic_load_n(&STR(self)->hash, __ATOMIC_RELAXED);
    if (h != -1) {
        return h;
    }
    const unsigned char *s = (const unsigned char *)STR(self)->data;
    Py_ssize_t n = Py_SIZE(self);
    uint64_t x = 0xcbf29ce484222325ULL;   /* FNV-1a 64-bit offset basis */
    for (Py_ssize_t i = 0; i < n; i++) {
        x ^= s[i];
        x *= 0x100000001b3ULL;             /* FNV-1a 64-bit prime */
    }
    x ^= x >> 33;                          /* MurmurHash3's fmix64 constants */
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    h = (Py_hash_t)x;
    if (h == -1) {
        h = -2;   /* -1 means "error" for tp_hash and "not computed" here */
    }
    /* The same value whichever thread stores it (file header). */
    __atomic_store_n(&STR(self)->hash, h, __ATOMIC_RELAXED);
    return h;
}

static PyObject *
str_richcompare(PyObject *a, PyObject *b, int op)
{
    if (!PyUnicode_Check(a) || !PyUnicode_Check(b)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (op == Py_EQ || op == Py_NE) {
        bool eq = a == b || (Py_SIZE(a) == Py_SIZE(b) &&
                             memcmp(STR(a)->data, STR(b)->data, (size_t)Py_SIZE(a)) == 0);
        return PyBool_FromLong(op == Py_EQ ? eq : !eq);
    }
    int c = str_cmp(a, b);
    bool r;
    switch (op) {
    case Py_LT: r = c < 0; break;
    case Py_LE: r = c <= 0; break;
    case Py_GT: r = c > 0; break;
    default: r = c >= 0; break;
    }
    return PyBool_FromLong(r);
}

static PyObject *
str_str(PyObject *self)
{
    if (PyUnicode_CheckExact(self)) {
        return Py_NewRef(self);
    }
    return str_from_valid(STR(self)->data, Py_SIZE(self), STR(self)->length);
}

static Py_ssize_t
str_length(PyObject *self)
{
    return STR(self)->length;
}

static int
str_contains(PyObject *self, PyObject *element)
{
    return PyUnicode_Contains(self, element);
}

/* s[i]: the code point at index i (0 <= i < len) as a new one-character
 * str.  Walks the UTF-8 (O(i)); an all-ASCII string (length == bytes) is
 * indexed directly. */
static PyObject *
str_item(PyObject *self, Py_ssize_t i)
{
    if (i < 0 || i >= STR(self)->length) {
        PyErr_SetString(PyExc_IndexError, "string index out of range");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)STR(self)->data;
    Py_ssize_t pos = str_offset(self, i);
    Py_ssize_t end = pos;
    (void)utf8_next(s, &end);
    return str_from_valid((const char *)s + pos, end - pos, 1);
}

/* s[key] for an integer key (negative counts from the end); slices are
 * not supported yet (ftrt has no slice objects). */
static PyObject *
str_subscript(PyObject *self, PyObject *key)
{
    Py_ssize_t i;
    if (ft_subscript_index(key, "string indices must be integers, not '%.200s'", &i) < 0) {
        return NULL;
    }
    if (i < 0) {
        i += STR(self)->length;
    }
    return str_item(self, i);
}

/* ---- the iterator ----------------------------------------------------------
 *
 * iter(s) yields the code points of s as one-character strs.  An iterator
 * is used by one thread at a time (CPython makes no promise for a shared
 * iterator either): its position is plain data.  It holds a reference to
 * the str (cleared when exhausted), which references nothing, so no cycle
 * can form and the iterator is not a GC object. */
typedef struct {
    PyObject_HEAD
    PyObject *str;       /* NULL once exhausted */
    Py_ssize_t pos;      /* byte offset of the next code point */
} str_iterator;

static void
str_iter_dealloc(PyObject *self)
{
    Py_XDECREF(((str_iterator *)self)->str);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *
str_iter_next(PyObject *self)
{
    str_iterator *it = (str_iterator *)self;
    PyObject *s = it->str;
    if (s == NULL) {
        return NULL;
    }
    if (it->pos >= Py_SIZE(s)) {
        it->str = NULL;
        Py_DECREF(s);
        return NULL;   /* exhausted: NULL without an exception */
    }
    const unsigned char *d = (const unsigned char *)STR(s)->data;
    Py_ssize_t start = it->pos;
    (void)utf8_next(d, &it->pos);
    return str_from_valid((const char *)d + start, it->pos - start, 1);
}

static PyTypeObject str_iterator_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "str_ascii_iterator",   /* CPython's name for the common case */
    .tp_basicsize = sizeof(str_iterator),
    .tp_dealloc = str_iter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN |
                Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = str_iter_next,
    .tp_free = PyObject_Free,
};

static PyObject *
str_iter(PyObject *self)
{
    str_iterator *it = PyObject_New(str_iterator, &str_iterator_type);
    if (it == NULL) {
        return NULL;
    }
    it->str = Py_NewRef(self);
    it->pos = 0;
    return (PyObject *)it;
}

static void
str_dealloc(PyObject *self)
{
    Py_TYPE(self)->tp_free(self);
}

static PySequenceMethods str_as_sequence = {
    .sq_length = str_length,
    .sq_concat = PyUnicode_Concat,
    .sq_item = str_item,
    .sq_contains = str_contains,
};

static PyMappingMethods str_as_mapping = {
    .mp_length = str_length,
    .mp_subscript = str_subscript,
};

PyTypeObject PyUnicode_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "str",
    .tp_basicsize = offsetof(ft_str, data) + 1,   /* + 1: the NUL after the bytes */
    .tp_itemsize = 1,
    .tp_dealloc = str_dealloc,
    .tp_repr = str_repr,
    .tp_as_sequence = &str_as_sequence,
    .tp_as_mapping = &str_as_mapping,
    .tp_hash = str_hash,
    .tp_str = str_str,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN |
                Py_TPFLAGS_UNICODE_SUBCLASS,
    .tp_doc = "str(object='') -> str",
    .tp_richcompare = str_richcompare,
    .tp_iter = str_iter,
    .tp_free = PyObject_Free,
};

int
ft_unicode_init(void)
{
    if (PyType_Ready(&PyUnicode_Type) < 0 || PyType_Ready(&str_iterator_type) < 0) {
        return -1;
    }
    return 0;
}

/* ---- interning ------------------------------------------------------------- */

static PyMutex intern_lock;
static ft_str **intern_slots;   /* capacity entries, NULL = free; under intern_lock */
static size_t intern_cap, intern_used;

/* The slot holding text equal to s, or the free slot where it belongs
 * (linear probing from the hash; the table is never full: at most 2/3
 * used). */
static size_t
intern_find(ft_str **slots, size_t cap, const ft_str *s, Py_hash_t h)
{
    size_t mask = cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        ft_str *t = slots[i];
        if (t == NULL) {
            return i;
        }
        if (__atomic_load_n(&t->hash, __ATOMIC_RELAXED) == h && Py_SIZE(t) == Py_SIZE(s) &&
            memcmp(t->data, s->data, (size_t)Py_SIZE(s)) == 0) {
            return i;
        }
    }
}

/* Make room for one more entry; false if the allocation failed.  Under
 * intern_lock; the hashes of the entries are final (interned strings were
 * hashed before insertion). */
static bool
intern_reserve(void)
{
    if ((intern_used + 1) * 3 <= intern_cap * 2) {
        return true;
    }
    /* 64 slots first (42 strings before the first growth), then double */
    size_t cap = intern_cap ? intern_cap * 2 : 64;
    ft_str **slots = PyMem_RawCalloc(cap, sizeof *slots);
    if (slots == NULL) {
        return false;
    }
    for (size_t i = 0; i < intern_cap; i++) {
        ft_str *t = intern_slots[i];
        if (t != NULL) {
            slots[intern_find(slots, cap, t, __atomic_load_n(&t->hash, __ATOMIC_RELAXED))] = t;
        }
    }
    PyMem_RawFree(intern_slots);
    intern_slots = slots;
    intern_cap = cap;
    return true;
}

void
PyUnicode_InternInPlace(PyObject **p)
{
    if (p == NULL || *p == NULL || !PyUnicode_CheckExact(*p)) {
        return;   /* CPython ignores subclasses and non-strs */
    }
    ft_str *s = STR(*p);
    if (__atomic_load_n(&s->interned, __ATOMIC_ACQUIRE)) {   /* pairs with the release below */
        return;
    }
    Py_hash_t h = str_hash(*p);   /* outside the lock; the value is final */
    PyMutex_Lock(&intern_lock);
    ft_str *found = NULL;
    if (intern_reserve()) {
        size_t i = intern_find(intern_slots, intern_cap, s, h);
        found = intern_slots[i];
        if (found == NULL) {
            _Py_SetImmortal(*p);
            __atomic_store_n(&s->interned, 1, __ATOMIC_RELEASE);   /* after the immortal count */
            intern_slots[i] = s;
            intern_used++;
            found = s;
        }
    }
    else if (intern_cap > 0) {
        /* No room for a new entry, but an existing one can still be used. */
        size_t i = intern_find(intern_slots, intern_cap, s, h);
        found = intern_slots[i];
    }
    PyMutex_Unlock(&intern_lock);
    if (found != NULL && found != s) {
        /* found is immortal: the new reference costs nothing */
        PyObject *old = *p;
        *p = Py_NewRef((PyObject *)found);
        Py_DECREF(old);
    }
}

PyObject *
PyUnicode_InternFromString(const char *v)
{
    PyObject *s = PyUnicode_FromString(v);
    if (s != NULL) {
        PyUnicode_InternInPlace(&s);
    }
    return s;
}

Py_ssize_t
ft_unicode_interned_count(void)
{
    PyMutex_Lock(&intern_lock);
    Py_ssize_t n = (Py_ssize_t)intern_used;
    PyMutex_Unlock(&intern_lock);
    return n;
}

void
ft_unicode_fini(void)
{
    /* Finalization: no other thread runs, nothing may use an interned str
     * any more (the same rule as for heap types). */
    for (size_t i = 0; i < intern_cap; i++) {
        ft_str *t = intern_slots[i];
        if (t != NULL) {
            if (atomic_load_explicit(&ft_reftracer_state.fn, memory_order_relaxed) != NULL) {
                ft_reftracer_call((PyObject *)t, PyRefTracer_DESTROY);
            }
            PyObject_Free(t);
        }
    }
    PyMem_RawFree(intern_slots);
    intern_slots = NULL;
    intern_cap = intern_used = 0;
}
