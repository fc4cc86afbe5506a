/* str objects (core/unicodeobject.c), plus the pieces of other files that
 * needed str: PyObject_Repr / Str defaults and PyObject_Print
 * (core/typeobject.c), the object conversions of PyErr_Format
 * (core/errors.c) and UnicodeDecodeError (core/exceptions.c).
 *
 * Covers: creation from UTF-8 (multi-byte, embedded NUL, every kind of
 * invalid UTF-8 with CPython's messages, NULL and negative sizes); access
 * (AsUTF8AndSize, GetLength, the checks) and their type errors; Concat,
 * Compare, CompareWithASCIIString, EqualToUTF8(AndSize), Contains,
 * FromOrdinal, Substring, ReadChar, Find, FindChar, Tailmatch, Join; the
 * slots (hash: equal strings created independently hash equal, cached,
 * never -1; rich comparison; repr escaping and quote choice; ascii; str; length, item, contains,
 * subscript, iteration); PyUnicode_FromFormat with each conversion and its
 * errors (including a __repr__ that raises); out of memory at every
 * allocation of every constructor; the hash-cache race (8 threads hashing
 * one fresh string at once); interning (shared immortal objects, table
 * growth, out of memory, 8 threads interning the same texts); a timing of
 * FromString + DECREF.
 *
 * Helper threads only record into atomics; the test's main thread asserts.
 */
#include "harness.h"
#include "test_util.h"
#include "test_objects.h"

#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_types.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(unicode, .init = test_runtime_setup, .fini = test_runtime_teardown,
          .timeout = FT_TIMEOUT(60));

/* ---- helpers ------------------------------------------------------------ */


/* s must be a str holding exactly want[0..n) (UTF-8) of `chars` code
 * points; steals s. */
static void
expect_str_n(PyObject *s, const char *want, Py_ssize_t n, Py_ssize_t chars)
{
    cr_assert_not_null(s, "NULL (exception %s)",
                       PyErr_Occurred() ? ((PyTypeObject *)PyErr_Occurred())->tp_name : "-");
    cr_assert(PyUnicode_CheckExact(s));
    Py_ssize_t size = -7;
    const char *u = PyUnicode_AsUTF8AndSize(s, &size);
    cr_assert_eq(size, n, "size %zd, expected %zd (\"%s\" vs \"%s\")", size, n, u, want);
    cr_assert(memcmp(u, want, (size_t)n) == 0, "got \"%s\", expected \"%s\"", u, want);
    cr_assert_eq(u[n], '\0', "not NUL-terminated");
    cr_assert_eq(PyUnicode_GetLength(s), chars, "\"%s\": %zd code points, expected %zd", u,
                 PyUnicode_GetLength(s), chars);
    Py_DECREF(s);
}

static void
expect_str(PyObject *s, const char *want, Py_ssize_t chars)
{
    expect_str_n(s, want, (Py_ssize_t)strlen(want), chars);
}

static PyObject *
S(const char *u)
{
    PyObject *s = PyUnicode_FromString(u);
    cr_assert_not_null(s);
    return s;
}

/* ---- creation ------------------------------------------------------------ */

Test(unicode, from_string_ascii_and_multibyte)
{
    expect_str(PyUnicode_FromString("hello"), "hello", 5);
    expect_str(PyUnicode_FromString(""), "", 0);
    /* h, e-acute (2 bytes), euro (3 bytes), G clef (4 bytes) */
    expect_str(PyUnicode_FromString("h\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e"),
               "h\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e", 4);
    /* the extremes of each sequence length */
    expect_str(PyUnicode_FromString("\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf"
                                    "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"),
               "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 7);
    /* ASCII runs longer than 8 bytes around multi-byte characters */
    expect_str(PyUnicode_FromString("0123456789\xc3\xa9" "0123456789abcdefXYZ\xe2\x82\xac"),
               "0123456789\xc3\xa9" "0123456789abcdefXYZ\xe2\x82\xac", 31);
    PyObject *s = S("x");
    cr_assert(PyUnicode_Check(s));
    cr_assert_eq(Py_TYPE(s), &PyUnicode_Type);
    cr_assert_str_eq(Py_TYPE(s)->tp_name, "str");
    cr_assert_eq(Py_REFCNT(s), 1);
    Py_DECREF(s);
    cr_assert_not(PyUnicode_Check(Py_None));
    cr_assert_not(PyUnicode_CheckExact(Py_None));
}

Test(unicode, from_string_and_size)
{
    expect_str_n(PyUnicode_FromStringAndSize("a\0b", 3), "a\0b", 3, 3);
    expect_str(PyUnicode_FromStringAndSize("abcdef", 2), "ab", 2);
    expect_str(PyUnicode_FromStringAndSize(NULL, 0), "", 0);
    cr_assert_null(PyUnicode_FromStringAndSize("abc", -1));
    test_expect_error(PyExc_SystemError, "Negative size");
    cr_assert_null(PyUnicode_FromStringAndSize(NULL, 3));
    test_expect_error(PyExc_SystemError, "NULL data");
    cr_assert_null(PyUnicode_FromString(NULL));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
}

typedef struct {
    const char *bytes;
    Py_ssize_t n;
    const char *message;
} bad_utf8;

Test(unicode, invalid_utf8_raises_unicode_decode_error)
{
    static const bad_utf8 cases[] = {
        { "\xff", 1, "can't decode byte 0xff in position 0: invalid start byte" },
        { "ab\x80", 3, "can't decode byte 0x80 in position 2: invalid start byte" },
        { "\xc0\x80", 2, "byte 0xc0 in position 0: invalid start byte" },        /* overlong NUL */
        { "\xc1\xbf", 2, "byte 0xc1 in position 0: invalid start byte" },
        { "\xf5\x80\x80\x80", 4, "byte 0xf5 in position 0: invalid start byte" },
        { "\xc3x", 2, "byte 0xc3 in position 0: invalid continuation byte" },
        { "\xe0\x80\x80", 3, "byte 0xe0 in position 0: invalid continuation byte" }, /* overlong */
        { "\xed\xa0\x80", 3, "byte 0xed in position 0: invalid continuation byte" }, /* surrogate */
        { "\xf0\x80\x80\x80", 4, "byte 0xf0 in position 0: invalid continuation byte" },
        { "\xf4\x90\x80\x80", 4, "byte 0xf4 in position 0: invalid continuation byte" }, /* > max */
        { "x\xe2\x82y", 4, "bytes in position 1-2: invalid continuation byte" },
        { "\xe2\x82", 2, "bytes in position 0-1: unexpected end of data" },
        { "ab\xf0\x9d\x84", 5, "bytes in position 2-4: unexpected end of data" },
        { "\xc3", 1, "byte 0xc3 in position 0: unexpected end of data" },
        /* after ASCII runs the validator skips 8 bytes at a time */
        { "0123456789abcdef\xff", 17, "byte 0xff in position 16: invalid start byte" },
        { "01234567\xe2\x82", 10, "bytes in position 8-9: unexpected end of data" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_null(PyUnicode_FromStringAndSize(cases[i].bytes, cases[i].n), "case %zu", i);
        cr_assert(PyErr_ExceptionMatches(PyExc_ValueError), "case %zu: not a ValueError", i);
        cr_assert(PyErr_ExceptionMatches(PyExc_UnicodeError), "case %zu", i);
        test_expect_error(PyExc_UnicodeDecodeError, cases[i].message);
    }
    /* the new exception classes sit where CPython has them */
    cr_assert(PyErr_GivenExceptionMatches(PyExc_UnicodeDecodeError, PyExc_UnicodeError));
    cr_assert(PyErr_GivenExceptionMatches(PyExc_UnicodeError, PyExc_ValueError));
    cr_assert(PyErr_GivenExceptionMatches(PyExc_OSError, PyExc_Exception));
    cr_assert_not(PyErr_GivenExceptionMatches(PyExc_OSError, PyExc_ValueError));
    cr_assert_str_eq(((PyTypeObject *)PyExc_UnicodeDecodeError)->tp_name, "UnicodeDecodeError");
    cr_assert_null(PyUnicode_FromString("ok\xff"));
    test_expect_error(PyExc_UnicodeDecodeError,
                 "'utf-8' codec can't decode byte 0xff in position 2: invalid start byte");
}

/* ---- access -------------------------------------------------------------- */

Test(unicode, as_utf8_and_length)
{
    PyObject *s = S("\xc3\xa9t\xc3\xa9");   /* ete with accents: 3 code points, 5 bytes */
    Py_ssize_t n = 0;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    cr_assert_eq(n, 5);
    cr_assert_str_eq(u, "\xc3\xa9t\xc3\xa9");
    cr_assert_eq(PyUnicode_AsUTF8AndSize(s, NULL), u, "the same stored bytes every time");
    cr_assert_eq(PyUnicode_AsUTF8(s), u);
    cr_assert_eq(PyUnicode_GetLength(s), 3);
    cr_assert_null(PyErr_Occurred());
    Py_DECREF(s);
}

Test(unicode, access_with_wrong_types)
{
    Py_ssize_t n = 5;
    cr_assert_null(PyUnicode_AsUTF8AndSize(Py_None, &n));
    cr_assert_eq(n, -1);
    test_expect_error(PyExc_TypeError, "bad argument type");
    cr_assert_null(PyUnicode_AsUTF8(Py_True));
    test_expect_error(PyExc_TypeError, "bad argument type");
    cr_assert_null(PyUnicode_AsUTF8(NULL));
    test_expect_error(PyExc_TypeError, "bad argument type");
    cr_assert_eq(PyUnicode_GetLength(Py_None), -1);
    test_expect_error(PyExc_TypeError, "bad argument type");
    cr_assert_eq(PyUnicode_GetLength(NULL), -1);
    test_expect_error(PyExc_TypeError, "bad argument type");
}

/* ---- operations ---------------------------------------------------------- */

Test(unicode, concat)
{
    PyObject *a = S("ab\xc3\xa9"), *b = S("\xe2\x82\xac!"), *e = S("");
    expect_str(PyUnicode_Concat(a, b), "ab\xc3\xa9\xe2\x82\xac!", 5);
    expect_str(PyUnicode_Concat(e, a), "ab\xc3\xa9", 3);
    expect_str(PyUnicode_Concat(e, e), "", 0);
    cr_assert_eq(Py_REFCNT(a), 1, "operands untouched");
    cr_assert_null(PyUnicode_Concat(a, Py_None));
    test_expect_error(PyExc_TypeError, "can only concatenate str (not \"NoneType\") to str");
    cr_assert_null(PyUnicode_Concat(Py_None, a));
    test_expect_error(PyExc_TypeError, "must be str, not NoneType");
    cr_assert_null(PyUnicode_Concat(a, NULL));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    /* the sequence slot is the same operation */
    expect_str(PyUnicode_Type.tp_as_sequence->sq_concat(b, a), "\xe2\x82\xac!ab\xc3\xa9", 5);
    Py_DECREF(a);
    Py_DECREF(b);
    Py_DECREF(e);
}

Test(unicode, compare_orders_by_code_point)
{
    const char *ordered[] = {
        "", "A", "AB", "Z", "a", "ab", "\x7f", "\xc3\xbf" /* U+00FF */,
        "\xe2\x82\xac" /* U+20AC */, "\xef\xbf\xbd" /* U+FFFD */,
        "\xf0\x9f\x98\x80" /* U+1F600 */,
    };
    size_t n = sizeof ordered / sizeof ordered[0];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            PyObject *a = S(ordered[i]), *b = S(ordered[j]);
            int want = i < j ? -1 : i > j;
            cr_assert_eq(PyUnicode_Compare(a, b), want, "%zu vs %zu", i, j);
            int ops[] = { Py_LT, Py_LE, Py_EQ, Py_NE, Py_GT, Py_GE };
            int expect[] = { want < 0, want <= 0, want == 0, want != 0, want > 0, want >= 0 };
            for (int k = 0; k < 6; k++) {
                cr_assert_eq(PyObject_RichCompareBool(a, b, ops[k]), expect[k],
                             "%zu vs %zu op %d", i, j, ops[k]);
            }
            Py_DECREF(a);
            Py_DECREF(b);
        }
    }
    /* a NUL inside sorts before any other character */
    PyObject *x = PyUnicode_FromStringAndSize("a\0b", 3), *y = S("a");
    cr_assert_eq(PyUnicode_Compare(x, y), 1);
    cr_assert_eq(PyUnicode_Compare(y, x), -1);
    Py_DECREF(x);
    Py_DECREF(y);
    cr_assert_null(PyErr_Occurred());
}

Test(unicode, compare_errors_and_mixed_types)
{
    PyObject *a = S("a");
    cr_assert_eq(PyUnicode_Compare(a, Py_None), -1);
    test_expect_error(PyExc_TypeError, "Can't compare str and NoneType");
    cr_assert_eq(PyUnicode_Compare(Py_True, a), -1);
    test_expect_error(PyExc_TypeError, "Can't compare bool and str");
    /* str == other type: False (NotImplemented both ways), < : TypeError */
    cr_assert_eq(PyObject_RichCompareBool(a, Py_None, Py_EQ), 0);
    cr_assert_eq(PyObject_RichCompareBool(a, Py_None, Py_NE), 1);
    cr_assert_eq(PyObject_RichCompareBool(a, Py_None, Py_LT), -1);
    test_expect_error(PyExc_TypeError, "'<' not supported between instances of 'str' and 'NoneType'");
    PyObject *r = PyUnicode_Type.tp_richcompare(a, Py_None, Py_EQ);
    cr_assert_eq(r, Py_NotImplemented);
    Py_DECREF(r);
    Py_DECREF(a);
}

Test(unicode, compare_with_ascii_string)
{
    PyObject *s = S("abc");
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, "abc"), 0);
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, "abd"), -1);
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, "abb"), 1);
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, "ab"), 1);
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, "abcd"), -1);
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, ""), 1);
    Py_DECREF(s);
    /* right is Latin-1: byte 0xE9 is U+00E9, the str's e-acute */
    s = S("\xc3\xa9");
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, "\xe9"), 0);
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, "z"), 1);
    Py_DECREF(s);
    s = S("");
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, ""), 0);
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, "a"), -1);
    Py_DECREF(s);
    /* a str with a NUL is longer than the C string that stops there */
    s = PyUnicode_FromStringAndSize("a\0", 2);
    cr_assert_eq(PyUnicode_CompareWithASCIIString(s, "a"), 1);
    Py_DECREF(s);
    cr_assert_eq(PyUnicode_CompareWithASCIIString(Py_None, "None"), -1);
    cr_assert_null(PyErr_Occurred(), "never raises");
}

Test(unicode, equal_to_utf8)
{
    PyObject *s = S("h\xc3\xa9");
    cr_assert_eq(PyUnicode_EqualToUTF8(s, "h\xc3\xa9"), 1);
    cr_assert_eq(PyUnicode_EqualToUTF8(s, "h"), 0);
    cr_assert_eq(PyUnicode_EqualToUTF8(s, "h\xc3\xa9x"), 0);
    cr_assert_eq(PyUnicode_EqualToUTF8(s, "h\xe9"), 0, "Latin-1 is not UTF-8");
    cr_assert_eq(PyUnicode_EqualToUTF8AndSize(s, "h\xc3\xa9zzz", 3), 1);
    cr_assert_eq(PyUnicode_EqualToUTF8AndSize(s, "h\xc3\xa9", 2), 0);
    cr_assert_eq(PyUnicode_EqualToUTF8(s, NULL), 0);
    cr_assert_eq(PyUnicode_EqualToUTF8(Py_None, "None"), 0);
    cr_assert_eq(PyUnicode_EqualToUTF8(NULL, ""), 0);
    Py_DECREF(s);
    s = PyUnicode_FromStringAndSize("a\0b", 3);
    cr_assert_eq(PyUnicode_EqualToUTF8(s, "a"), 0);
    cr_assert_eq(PyUnicode_EqualToUTF8AndSize(s, "a\0b", 3), 1);
    Py_DECREF(s);
    cr_assert_null(PyErr_Occurred(), "never raises");
}

Test(unicode, contains)
{
    PyObject *hay = S("na\xc3\xafve caf\xc3\xa9");
    PyObject *yes[] = { S("na"), S("\xc3\xaf"), S("caf\xc3\xa9"), S(""), S("ve c") };
    PyObject *no[] = { S("x"), S("\xc3\xa9\xc3\xa9"), S("na\xc3\xafve caf\xc3\xa9!"), S("ec") };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        cr_assert_eq(PyUnicode_Contains(hay, yes[i]), 1, "yes %zu", i);
        cr_assert_eq(PyUnicode_Type.tp_as_sequence->sq_contains(hay, yes[i]), 1);
        Py_DECREF(yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        cr_assert_eq(PyUnicode_Contains(hay, no[i]), 0, "no %zu", i);
        Py_DECREF(no[i]);
    }
    cr_assert_eq(PyUnicode_Contains(hay, Py_None), -1);
    test_expect_error(PyExc_TypeError, "'in <string>' requires string as left operand, not NoneType");
    cr_assert_eq(PyUnicode_Contains(Py_None, hay), -1);
    test_expect_error(PyExc_TypeError, "must be str, not NoneType");
    cr_assert_eq(PyUnicode_Contains(hay, NULL), -1);
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    Py_DECREF(hay);
}

Test(unicode, from_ordinal)
{
    expect_str(PyUnicode_FromOrdinal('A'), "A", 1);
    expect_str_n(PyUnicode_FromOrdinal(0), "\0", 1, 1);   /* a NUL character */
    expect_str(PyUnicode_FromOrdinal(0xE9), "\xc3\xa9", 1);
    expect_str(PyUnicode_FromOrdinal(0x20AC), "\xe2\x82\xac", 1);
    expect_str(PyUnicode_FromOrdinal(0x10FFFF), "\xf4\x8f\xbf\xbf", 1);
    cr_assert_null(PyUnicode_FromOrdinal(0x110000));
    test_expect_error(PyExc_ValueError, "chr() arg not in range(0x110000)");
    cr_assert_null(PyUnicode_FromOrdinal(-1));
    test_expect_error(PyExc_ValueError, "chr() arg not in range(0x110000)");
    cr_assert_null(PyUnicode_FromOrdinal(0xD800));
    test_expect_error(PyExc_ValueError, "surrogate");
}

Test(unicode, substring_and_read_char)
{
    PyObject *s = S("a\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e" "z");   /* 5 code points */
    expect_str(PyUnicode_Substring(s, 1, 3), "\xc3\xa9\xe2\x82\xac", 2);
    expect_str(PyUnicode_Substring(s, 3, 100), "\xf0\x9d\x84\x9e" "z", 2);
    expect_str(PyUnicode_Substring(s, 4, 2), "", 0);
    expect_str(PyUnicode_Substring(s, 9, 12), "", 0);
    PyObject *whole = PyUnicode_Substring(s, 0, 5);
    cr_assert_eq(whole, s, "the whole str is the str itself");
    Py_DECREF(whole);
    cr_assert_null(PyUnicode_Substring(s, -1, 2));
    test_expect_error(PyExc_IndexError, "string index out of range");
    cr_assert_null(PyUnicode_Substring(s, 0, -2));
    test_expect_error(PyExc_IndexError, "string index out of range");
    cr_assert_null(PyUnicode_Substring(Py_None, 0, 1));
    test_expect_error(PyExc_TypeError, "bad argument type");
    cr_assert_eq(PyUnicode_ReadChar(s, 0), 'a');
    cr_assert_eq(PyUnicode_ReadChar(s, 1), 0xE9u);
    cr_assert_eq(PyUnicode_ReadChar(s, 2), 0x20ACu);
    cr_assert_eq(PyUnicode_ReadChar(s, 3), 0x1D11Eu);
    cr_assert_eq(PyUnicode_ReadChar(s, 4), 'z');
    cr_assert_eq(PyUnicode_ReadChar(s, 5), (Py_UCS4)-1);
    test_expect_error(PyExc_IndexError, "string index out of range");
    cr_assert_eq(PyUnicode_ReadChar(s, -1), (Py_UCS4)-1);
    test_expect_error(PyExc_IndexError, "string index out of range");
    cr_assert_eq(PyUnicode_ReadChar(Py_None, 0), (Py_UCS4)-1);
    test_expect_error(PyExc_TypeError, "bad argument type");
    Py_DECREF(s);
}

Test(unicode, find_find_char_tailmatch)
{
    /* "a\u00e9b\u00e9b\u20ac": indices 0..5 */
    PyObject *s = S("a\xc3\xa9" "b\xc3\xa9" "b\xe2\x82\xac");
    PyObject *eb = S("\xc3\xa9" "b"), *none = S("zz"), *empty = S("");
    cr_assert_eq(PyUnicode_Find(s, eb, 0, 6, 1), 1);
    cr_assert_eq(PyUnicode_Find(s, eb, 0, 6, -1), 3);
    cr_assert_eq(PyUnicode_Find(s, eb, 2, 6, 1), 3);
    cr_assert_eq(PyUnicode_Find(s, eb, 0, 4, -1), 1, "the second match ends past end");
    cr_assert_eq(PyUnicode_Find(s, eb, -4, 100, 1), 3, "negative start counts from the end");
    cr_assert_eq(PyUnicode_Find(s, eb, 0, -2, -1), 1, "negative end too");
    cr_assert_eq(PyUnicode_Find(s, none, 0, 6, 1), -1);
    cr_assert_eq(PyUnicode_Find(s, empty, 2, 4, 1), 2);
    cr_assert_eq(PyUnicode_Find(s, empty, 2, 4, -1), 4);
    cr_assert_eq(PyUnicode_Find(s, empty, 7, 9, 1), -1, "start past the end");
    cr_assert_eq(PyUnicode_Find(s, Py_None, 0, 6, 1), -2);
    test_expect_error(PyExc_TypeError, "must be str, not NoneType");
    cr_assert_eq(PyUnicode_Find(Py_None, s, 0, 6, 1), -2);
    test_expect_error(PyExc_TypeError, "must be str, not NoneType");
    cr_assert_eq(PyUnicode_FindChar(s, 0xE9, 0, 6, 1), 1);
    cr_assert_eq(PyUnicode_FindChar(s, 0xE9, 0, 6, -1), 3);
    cr_assert_eq(PyUnicode_FindChar(s, 0x20AC, 0, 6, 1), 5);
    cr_assert_eq(PyUnicode_FindChar(s, 0x20AC, 0, 5, 1), -1);
    cr_assert_eq(PyUnicode_FindChar(s, 'q', 0, 6, 1), -1);
    cr_assert_eq(PyUnicode_FindChar(s, 0x110000, 0, 6, 1), -1);
    cr_assert_eq(PyUnicode_FindChar(Py_None, 'a', 0, 6, 1), -2);
    test_expect_error(PyExc_TypeError, "bad argument type");
    PyObject *a = S("a\xc3\xa9"), *tail = S("b\xe2\x82\xac");
    cr_assert_eq(PyUnicode_Tailmatch(s, a, 0, 6, -1), 1, "prefix");
    cr_assert_eq(PyUnicode_Tailmatch(s, a, 1, 6, -1), 0);
    cr_assert_eq(PyUnicode_Tailmatch(s, tail, 0, 6, 1), 1, "suffix");
    cr_assert_eq(PyUnicode_Tailmatch(s, tail, 0, 5, 1), 0);
    cr_assert_eq(PyUnicode_Tailmatch(s, eb, 0, 3, 1), 1, "suffix of s[0:3]");
    cr_assert_eq(PyUnicode_Tailmatch(s, eb, 3, 6, -1), 1, "prefix of s[3:6]");
    cr_assert_eq(PyUnicode_Tailmatch(s, empty, 2, 2, 1), 1);
    cr_assert_eq(PyUnicode_Tailmatch(s, a, 5, 100, -1), 0);
    cr_assert_eq(PyUnicode_Tailmatch(s, Py_None, 0, 6, 1), -1);
    test_expect_error(PyExc_TypeError, "must be str, not NoneType");
    Py_DECREF(a);
    Py_DECREF(tail);
    Py_DECREF(eb);
    Py_DECREF(none);
    Py_DECREF(empty);
    Py_DECREF(s);
    cr_assert_null(PyErr_Occurred());
}

Test(unicode, join)
{
    PyObject *sep = S(", "), *a = S("a"), *b = S("\xc3\xa9"), *c = S("");
    PyObject *list = PyList_New(0);
    cr_assert_eq(PyList_Append(list, a), 0);
    cr_assert_eq(PyList_Append(list, b), 0);
    cr_assert_eq(PyList_Append(list, c), 0);
    expect_str(PyUnicode_Join(sep, list), "a, \xc3\xa9, ", 6);
    expect_str(PyUnicode_Join(NULL, list), "a \xc3\xa9 ", 4);   /* NULL: a space */
    PyObject *tuple = PyTuple_Pack(2, b, a);
    expect_str(PyUnicode_Join(sep, tuple), "\xc3\xa9, a", 4);
    Py_DECREF(tuple);
    tuple = PyTuple_Pack(1, b);
    PyObject *one = PyUnicode_Join(sep, tuple);
    cr_assert_eq(one, b, "one item: the item itself");
    Py_DECREF(one);
    Py_DECREF(tuple);
    tuple = PyTuple_New(0);
    expect_str(PyUnicode_Join(sep, tuple), "", 0);
    Py_DECREF(tuple);
    PyObject *word = S("xyz");   /* any iterable: a str iterates its characters */
    expect_str(PyUnicode_Join(sep, word), "x, y, z", 7);
    Py_DECREF(word);
    cr_assert_eq(PyList_Append(list, Py_None), 0);
    cr_assert_null(PyUnicode_Join(sep, list));
    test_expect_error(PyExc_TypeError, "sequence item 3: expected str instance, NoneType found");
    cr_assert_null(PyUnicode_Join(Py_None, list));
    test_expect_error(PyExc_TypeError, "separator: expected str instance, NoneType found");
    cr_assert_null(PyUnicode_Join(sep, Py_None));
    test_expect_error(PyExc_TypeError, "can only join an iterable");
    cr_assert_null(PyUnicode_Join(sep, NULL));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    cr_assert_eq(Py_REFCNT(a), 2, "held by the list only (and the test)");
    Py_DECREF(list);
    Py_DECREF(sep);
    Py_DECREF(a);
    Py_DECREF(b);
    Py_DECREF(c);
}

/* ---- slots --------------------------------------------------------------- */

Test(unicode, hash_equal_strings_hash_equal)
{
    char buf[] = "the same text, \xc3\xa9";
    PyObject *a = S(buf);
    PyObject *b = PyUnicode_FromStringAndSize(buf, (Py_ssize_t)strlen(buf));
    PyObject *p1 = S("the same"), *p2 = S(" text, \xc3\xa9");
    PyObject *c = PyUnicode_Concat(p1, p2);
    cr_assert(a != b && b != c);
    Py_hash_t h = PyObject_Hash(a);
    cr_assert_neq(h, -1);
    cr_assert_eq(PyObject_Hash(b), h);
    cr_assert_eq(PyObject_Hash(c), h);
    cr_assert_eq(PyObject_Hash(a), h, "cached value is the same");
    PyObject *d = S("the same text, \xc3\xa8");   /* one byte differs */
    cr_assert_neq(PyObject_Hash(d), h);
    PyObject *e = S("");
    cr_assert_neq(PyObject_Hash(e), -1);
    cr_assert_eq(PyObject_RichCompareBool(a, c, Py_EQ), 1);
    Py_DECREF(a);
    Py_DECREF(b);
    Py_DECREF(c);
    Py_DECREF(d);
    Py_DECREF(e);
    Py_DECREF(p1);
    Py_DECREF(p2);
}

Test(unicode, hash_spreads_over_many_strings)
{
    /* 4096 distinct short strings: no hash is -1, and the low 12 bits (a
     * 4096-slot table's index) take many values. */
    enum { N = 4096 };
    static bool seen[N];
    memset(seen, 0, sizeof seen);
    int distinct = 0;
    for (int i = 0; i < N; i++) {
        char t[16];
        snprintf(t, sizeof t, "k%d", i);
        PyObject *s = S(t);
        Py_hash_t h = PyObject_Hash(s);
        cr_assert_neq(h, -1);
        size_t slot = (size_t)h & (N - 1);
        distinct += !seen[slot];
        seen[slot] = true;
        Py_DECREF(s);
    }
    /* random hashing fills about 1 - 1/e = 63% of the slots */
    cr_assert_gt(distinct, N / 2, "only %d distinct low-bit patterns", distinct);
}

typedef struct {
    const char *in;
    const char *repr;
} repr_case;

Test(unicode, repr_escapes_as_cpython)
{
    static const repr_case cases[] = {
        { "abc", "'abc'" },
        { "", "''" },
        { "it's", "\"it's\"" },
        { "say \"hi\"", "'say \"hi\"'" },
        { "both ' and \"", "'both \\' and \"'" },
        { "a\\b", "'a\\\\b'" },
        { "\t\n\r", "'\\t\\n\\r'" },
        { "\x01\x1f\x7f", "'\\x01\\x1f\\x7f'" },
        { "\xc2\x80\xc2\xa0\xc2\xad", "'\\x80\\xa0\\xad'" },     /* C1 control, NBSP, soft hyphen */
        { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",            /* printable: kept */
          "'caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80'" },
        { "\xe2\x80\xa8\xef\xbb\xbf", "'\\u2028\\ufeff'" },       /* line separator, BOM */
        { "\xee\x80\x80\xf3\xb0\x80\x80", "'\\ue000\\U000f0000'" }, /* private use */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        PyObject *s = S(cases[i].in);
        PyObject *r = PyObject_Repr(s);
        cr_assert_not_null(r, "case %zu", i);
        cr_assert_str_eq(PyUnicode_AsUTF8(r), cases[i].repr, "case %zu", i);
        Py_ssize_t chars = 0;   /* code points of the expected text */
        for (const char *c = cases[i].repr; *c; c++) {
            chars += ((unsigned char)*c & 0xC0) != 0x80;
        }
        cr_assert_eq(PyUnicode_GetLength(r), chars, "case %zu", i);
        Py_DECREF(r);
        Py_DECREF(s);
    }
    /* embedded NUL */
    PyObject *s = PyUnicode_FromStringAndSize("a\0b", 3);
    PyObject *r = PyObject_Repr(s);
    cr_assert_str_eq(PyUnicode_AsUTF8(r), "'a\\x00b'");
    cr_assert_eq(PyUnicode_GetLength(r), 8);
    Py_DECREF(r);
    Py_DECREF(s);
    /* code point count of a repr with kept multi-byte characters */
    s = S("\xc3\xa9\n");
    r = PyObject_Repr(s);
    cr_assert_eq(PyUnicode_GetLength(r), 5);   /* ' e-acute \ n ' */
    Py_DECREF(r);
    Py_DECREF(s);
}

Test(unicode, ascii_escapes_non_ascii)
{
    PyObject *s = S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e\n'");
    PyObject *a = PyObject_ASCII(s);
    cr_assert_not_null(a);
    cr_assert_str_eq(PyUnicode_AsUTF8(a), "\"caf\\xe9 \\u20ac \\U0001d11e\\n'\"");
    cr_assert_eq(PyUnicode_GetLength(a), (Py_ssize_t)strlen(PyUnicode_AsUTF8(a)));
    Py_DECREF(a);
    Py_DECREF(s);
    a = PyObject_ASCII(Py_None);
    cr_assert_str_eq(PyUnicode_AsUTF8(a), "None");
    Py_DECREF(a);
    a = PyObject_ASCII(NULL);
    cr_assert_str_eq(PyUnicode_AsUTF8(a), "<NULL>");
    Py_DECREF(a);
}

Test(unicode, str_length_item)
{
    PyObject *s = S("a\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e");
    PyObject *t = PyObject_Str(s);
    cr_assert_eq(t, s, "str(str) is the same object");
    cr_assert_eq(Py_REFCNT(s), 2);
    Py_DECREF(t);
    t = PyUnicode_Type.tp_str(s);
    cr_assert_eq(t, s);
    Py_DECREF(t);
    PySequenceMethods *sq = PyUnicode_Type.tp_as_sequence;
    cr_assert_eq(sq->sq_length(s), 4);
    expect_str(sq->sq_item(s, 0), "a", 1);
    expect_str(sq->sq_item(s, 1), "\xc3\xa9", 1);
    expect_str(sq->sq_item(s, 2), "\xe2\x82\xac", 1);
    expect_str(sq->sq_item(s, 3), "\xf0\x9d\x84\x9e", 1);
    cr_assert_null(sq->sq_item(s, 4));
    test_expect_error(PyExc_IndexError, "string index out of range");
    cr_assert_null(sq->sq_item(s, -1));
    test_expect_error(PyExc_IndexError, "string index out of range");
    Py_DECREF(s);
    s = S("xyz");   /* all ASCII: indexed directly */
    expect_str(sq->sq_item(s, 2), "z", 1);
    Py_DECREF(s);
}

Test(unicode, subscript_size_contains_through_the_abstract_api)
{
    PyObject *s = S("a\xc3\xa9\xe2\x82\xac");   /* a, e-acute, euro */
    cr_assert_eq(PyObject_Size(s), 3);
    cr_assert_eq(PySequence_Size(s), 3);
    PyObject *i1 = PyLong_FromLong(1), *im1 = PyLong_FromLong(-1), *i3 = PyLong_FromLong(3);
    PyObject *im4 = PyLong_FromLong(-4);
    expect_str(PyObject_GetItem(s, i1), "\xc3\xa9", 1);
    expect_str(PyObject_GetItem(s, im1), "\xe2\x82\xac", 1);
    expect_str(PySequence_GetItem(s, -3), "a", 1);
    cr_assert_null(PyObject_GetItem(s, i3));
    test_expect_error(PyExc_IndexError, "string index out of range");
    cr_assert_null(PyObject_GetItem(s, im4));
    test_expect_error(PyExc_IndexError, "string index out of range");
    cr_assert_null(PyObject_GetItem(s, s));
    test_expect_error(PyExc_TypeError, "string indices must be integers, not 'str'");
    PyObject *sub = S("\xc3\xa9\xe2\x82\xac"), *other = S("b");
    cr_assert_eq(PySequence_Contains(s, sub), 1);
    cr_assert_eq(PySequence_Contains(s, other), 0);
    cr_assert_eq(PyObject_IsTrue(s), 1);
    PyObject *e = S("");
    cr_assert_eq(PyObject_IsTrue(e), 0, "the empty str is false");
    Py_DECREF(e);
    Py_DECREF(sub);
    Py_DECREF(other);
    Py_DECREF(i1);
    Py_DECREF(im1);
    Py_DECREF(i3);
    Py_DECREF(im4);
    Py_DECREF(s);
}

Test(unicode, iterates_code_points)
{
    PyObject *s = S("x\xc3\xa9\xf0\x9d\x84\x9e");
    PyObject *it = PyObject_GetIter(s);
    cr_assert_not_null(it);
    cr_assert(PyIter_Check(it));
    cr_assert_eq(Py_REFCNT(s), 2, "the iterator holds the str");
    expect_str(PyIter_Next(it), "x", 1);
    expect_str(PyIter_Next(it), "\xc3\xa9", 1);
    expect_str(PyIter_Next(it), "\xf0\x9d\x84\x9e", 1);
    cr_assert_null(PyIter_Next(it));
    cr_assert_null(PyErr_Occurred(), "exhaustion sets no exception");
    cr_assert_eq(Py_REFCNT(s), 1, "released once exhausted");
    cr_assert_null(PyIter_Next(it));
    Py_DECREF(it);
    /* an iterator dropped early releases the str too (ASan: no leak) */
    it = PyObject_GetIter(s);
    expect_str(PyIter_Next(it), "x", 1);
    Py_DECREF(it);
    cr_assert_eq(Py_REFCNT(s), 1);
    Py_DECREF(s);
    s = S("");
    it = PyObject_GetIter(s);
    cr_assert_null(PyIter_Next(it));
    cr_assert_null(PyErr_Occurred());
    Py_DECREF(it);
    Py_DECREF(s);
}

/* ---- FromFormat ---------------------------------------------------------- */

/* A function as a slot's void * (ISO C has no cast between the two). */
static PyObject *
raising_repr(PyObject *self)
{
    (void)self;
    PyErr_SetString(PyExc_RuntimeError, "repr failed on purpose");
    return NULL;
}

static PyObject *
non_str_repr(PyObject *self)
{
    (void)self;
    return Py_NewRef(Py_None);
}

static PyObject *
new_instance(PyType_Slot *slots, const char *name)
{
    PyType_Spec spec = { name, sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT, slots };
    PyObject *type = PyType_FromSpec(&spec);
    cr_assert_not_null(type);
    PyObject *o = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);
    cr_assert_not_null(o);
    return o;
}

Test(unicode, from_format_each_conversion)
{
    expect_str(PyUnicode_FromFormat("plain"), "plain", 5);
    expect_str(PyUnicode_FromFormat(""), "", 0);
    expect_str(PyUnicode_FromFormat("%s|%s", "caf\xc3\xa9", "x"), "caf\xc3\xa9|x", 6);
    expect_str(PyUnicode_FromFormat("%d %i %u", -12, 34, 56u), "-12 34 56", 9);
    expect_str(PyUnicode_FromFormat("%ld %lu", -1234567890L, 4000000000UL),
               "-1234567890 4000000000", 22);
    expect_str(PyUnicode_FromFormat("%lld %llu", -9223372036854775807LL - 1,
                                    18446744073709551615ULL),
               "-9223372036854775808 18446744073709551615", 41);
    expect_str(PyUnicode_FromFormat("%zd %zu", (Py_ssize_t)-5, (size_t)7), "-5 7", 4);
    expect_str(PyUnicode_FromFormat("%x %X", 255u, 255u), "ff FF", 5);
    expect_str(PyUnicode_FromFormat("%c%c%c", 'a', 0xe9, 0x1f600),
               "a\xc3\xa9\xf0\x9f\x98\x80", 3);
    expect_str(PyUnicode_FromFormat("100%%"), "100%", 4);
    expect_str(PyUnicode_FromFormat("[%5d|%-4s|%03d|%.2s]", 42, "ab", 7, "xyz"),
               "[   42|ab  |007|xy]", 19);
    char want[64];
    void *p = (void *)(uintptr_t)0xdeadbeef;
    snprintf(want, sizeof want, "at 0x%lx", (unsigned long)(uintptr_t)p);
    expect_str(PyUnicode_FromFormat("at %p", p), want, (Py_ssize_t)strlen(want));

    PyObject *s = S("h\xc3\xa9'");
    expect_str(PyUnicode_FromFormat("<%S>", s), "<h\xc3\xa9'>", 5);
    expect_str(PyUnicode_FromFormat("<%R>", s), "<\"h\xc3\xa9'\">", 7);
    expect_str(PyUnicode_FromFormat("<%A>", s), "<\"h\\xe9'\">", 10);
    expect_str(PyUnicode_FromFormat("<%U>", s), "<h\xc3\xa9'>", 5);
    expect_str(PyUnicode_FromFormat("<%V|%V>", s, "unused", NULL, "fallback"),
               "<h\xc3\xa9'|fallback>", 14);
    /* precision and width count code points for objects */
    expect_str(PyUnicode_FromFormat("<%.2U>", s), "<h\xc3\xa9>", 4);
    expect_str(PyUnicode_FromFormat("<%5U>", s), "<  h\xc3\xa9'>", 7);
    expect_str(PyUnicode_FromFormat("%S %R %S", Py_None, Py_None, NULL),
               "None None <NULL>", 16);
    expect_str(PyUnicode_FromFormat("%T %N", s, (PyObject *)&PyUnicode_Type), "str str", 7);
    /* invalid UTF-8 from %s or the format itself: one U+FFFD per invalid
     * sequence, as CPython's "replace" decoding */
    expect_str(PyUnicode_FromFormat("%s", "bad \xff"), "bad \xef\xbf\xbd", 5);
    expect_str(PyUnicode_FromFormat("%s|%s", "a\xe2\x82" "b\xff\xfe", "\xf0\x9f\x98"),
               "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd", 7);
    expect_str(PyUnicode_FromFormat("\xc3\xa9\xc3%d", 5), "\xc3\xa9\xef\xbf\xbd" "5", 3);
    cr_assert_eq(Py_REFCNT(s), 1, "no reference leaked");
    Py_DECREF(s);
}

Test(unicode, from_format_errors)
{
    cr_assert_null(PyUnicode_FromFormat("%U", Py_None));
    test_expect_error(PyExc_SystemError, "%U needs a str argument");
    cr_assert_null(PyUnicode_FromFormat("%c", 0x110000));
    test_expect_error(PyExc_OverflowError, "character argument not in range(0x110000)");
    cr_assert_null(PyUnicode_FromFormat("%q"));
    test_expect_error(PyExc_SystemError, "unsupported conversion '%q'");
    cr_assert_null(PyUnicode_FromFormat("ends %"));
    test_expect_error(PyExc_SystemError, "ends inside");
    cr_assert_null(PyUnicode_FromFormat(NULL));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    PyType_Slot slots[] = { { Py_tp_repr, TEST_FP(raising_repr) }, { 0, NULL } };
    PyObject *o = new_instance(slots, "test.RaisingRepr");
    cr_assert_null(PyUnicode_FromFormat("x %R y", o));
    test_expect_error(PyExc_RuntimeError, "repr failed on purpose");
    cr_assert_null(PyUnicode_FromFormat("x %A y", o));
    test_expect_error(PyExc_RuntimeError, "repr failed on purpose");
    /* PyErr_Format ends up with the conversion's exception */
    cr_assert_null(PyErr_Format(PyExc_ValueError, "bad %R", o));
    test_expect_error(PyExc_RuntimeError, "repr failed on purpose");
    Py_DECREF(o);
}

Test(unicode, err_format_object_conversions)
{
    PyObject *s = S("k\xc3\xa9y");
    cr_assert_null(PyErr_Format(PyExc_KeyError, "missing %R (%S, %A, %U)", s, s, s, s));
    test_expect_error(PyExc_KeyError, "missing 'k\xc3\xa9y' (k\xc3\xa9y, 'k\\xe9y', k\xc3\xa9y)");
    cr_assert_eq(Py_REFCNT(s), 1);
    Py_DECREF(s);
}

/* ---- PyObject_Repr / Str defaults, PyObject_Print --------------------------- */

Test(unicode, object_repr_and_str_defaults)
{
    PyObject *r = PyObject_Repr(Py_None);
    cr_assert_str_eq(PyUnicode_AsUTF8(r), "None");
    Py_DECREF(r);
    r = PyObject_Str(Py_None);
    cr_assert_str_eq(PyUnicode_AsUTF8(r), "None");
    Py_DECREF(r);
    r = PyObject_Repr(Py_NotImplemented);
    cr_assert_str_eq(PyUnicode_AsUTF8(r), "NotImplemented");
    Py_DECREF(r);
    r = PyObject_Repr(Py_True);
    cr_assert_str_eq(PyUnicode_AsUTF8(r), "True");
    Py_DECREF(r);
    r = PyObject_Str(Py_False);
    cr_assert_str_eq(PyUnicode_AsUTF8(r), "False");
    Py_DECREF(r);
    r = PyObject_Repr(NULL);
    cr_assert_str_eq(PyUnicode_AsUTF8(r), "<NULL>");
    Py_DECREF(r);
    r = PyObject_Str(NULL);
    cr_assert_str_eq(PyUnicode_AsUTF8(r), "<NULL>");
    Py_DECREF(r);

    PyObject *o = PyBaseObject_Type.tp_alloc(&PyBaseObject_Type, 0);
    char want[80];
    snprintf(want, sizeof want, "<object object at %p>", (void *)o);
    r = PyObject_Repr(o);
    cr_assert_str_eq(PyUnicode_AsUTF8(r), want);
    Py_DECREF(r);
    r = PyObject_Str(o);   /* str falls back to repr */
    cr_assert_str_eq(PyUnicode_AsUTF8(r), want);
    Py_DECREF(r);
    Py_DECREF(o);

    PyType_Slot none[] = { { 0, NULL } };
    o = new_instance(none, "test.Plain");
    snprintf(want, sizeof want, "<test.Plain object at %p>", (void *)o);
    r = PyObject_Repr(o);
    cr_assert_str_eq(PyUnicode_AsUTF8(r), want);
    Py_DECREF(r);
    Py_DECREF(o);

    PyType_Slot bad[] = { { Py_tp_repr, TEST_FP(non_str_repr) },
                          { Py_tp_str, TEST_FP(non_str_repr) }, { 0, NULL } };
    o = new_instance(bad, "test.BadRepr");
    cr_assert_null(PyObject_Repr(o));
    test_expect_error(PyExc_TypeError, "__repr__ returned non-string (type NoneType)");
    cr_assert_null(PyObject_Str(o));
    test_expect_error(PyExc_TypeError, "__str__ returned non-string (type NoneType)");
    Py_DECREF(o);
}

/* What PyObject_Print(op, f, flags) wrote. */
static void
expect_printed(PyObject *op, int flags, const char *want)
{
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    cr_assert_eq(PyObject_Print(op, f, flags), 0);
    rewind(f);
    char got[128] = { 0 };
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    cr_assert_eq(n, strlen(want), "wrote \"%s\", expected \"%s\"", got, want);
    cr_assert_str_eq(got, want);
}

Test(unicode, object_print)
{
    PyObject *s = S("it's \xc3\xa9");
    expect_printed(s, 0, "\"it's \xc3\xa9\"");
    expect_printed(s, Py_PRINT_RAW, "it's \xc3\xa9");
    expect_printed(Py_None, Py_PRINT_RAW, "None");
    expect_printed(NULL, 0, "<nil>");
    Py_DECREF(s);
    cr_assert_eq(PyObject_Print(Py_None, NULL, 0), -1);
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    /* a stream open for reading only: the write fails */
    FILE *ro = fopen("/dev/null", "r");
    cr_assert_not_null(ro);
    cr_assert_eq(PyObject_Print(Py_None, ro, 0), -1);
    test_expect_error(PyExc_OSError, "write error");
    fclose(ro);
    /* a repr that raises */
    PyType_Slot slots[] = { { Py_tp_repr, TEST_FP(raising_repr) }, { 0, NULL } };
    PyObject *o = new_instance(slots, "test.RaisingRepr2");
    FILE *f = tmpfile();
    cr_assert_eq(PyObject_Print(o, f, 0), -1);
    test_expect_error(PyExc_RuntimeError, "repr failed on purpose");
    fclose(f);
    Py_DECREF(o);
}

/* ---- out of memory ------------------------------------------------------- */

/* Run op with the nth allocation failing, n = 1, 2, ... until op succeeds
 * without a failure left pending; every failure must be NULL + MemoryError.
 * Returns how many failures were injected. */
typedef PyObject *(*oom_op)(void *arg);

static int
fail_each_allocation(oom_op op, void *arg)
{
    for (int n = 1; n < 100; n++) {
        ft_alloc_fail_after(n);
        PyObject *r = op(arg);
        ft_alloc_fail_after(0);
        if (r != NULL) {
            cr_assert_null(PyErr_Occurred(), "success with an exception set (n=%d)", n);
            Py_DECREF(r);
            return n - 1;
        }
        cr_assert(PyErr_ExceptionMatches(PyExc_MemoryError), "n=%d: %s", n,
                  PyErr_Occurred() ? ((PyTypeObject *)PyErr_Occurred())->tp_name : "nothing");
        PyErr_Clear();
    }
    cr_assert_fail("still failing after 99 injected failures");
    return -1;
}

static PyObject *op_from_string(void *a) { (void)a; return PyUnicode_FromString("h\xc3\xa9llo"); }
static PyObject *op_from_size(void *a) { (void)a; return PyUnicode_FromStringAndSize("ab", 2); }
static PyObject *op_concat(void *a) { return PyUnicode_Concat(a, a); }
static PyObject *op_repr(void *a) { return PyObject_Repr(a); }
static PyObject *op_ascii(void *a) { return PyObject_ASCII(a); }
static PyObject *op_item(void *a) { return PyUnicode_Type.tp_as_sequence->sq_item(a, 1); }
static PyObject *op_repr_none(void *a) { (void)a; return PyObject_Repr(Py_None); }
static PyObject *
op_format(void *a)
{
    return PyUnicode_FromFormat("%s %d %R %A %S %U %300s", "x", 5, a, a, a, a, "long");
}
static PyObject *op_iter(void *a) { return PyObject_GetIter(a); }
static PyObject *op_substring(void *a) { return PyUnicode_Substring(a, 1, 3); }
static PyObject *op_ordinal(void *a) { (void)a; return PyUnicode_FromOrdinal(0x20AC); }
static PyObject *
op_join(void *a)
{
    PyObject *t = PyTuple_Pack(3, (PyObject *)a, (PyObject *)a, (PyObject *)a);
    if (t == NULL) {
        return NULL;
    }
    PyObject *r = PyUnicode_Join(a, t);
    Py_DECREF(t);
    return r;
}
static PyObject *op_format_replace(void *a) { (void)a; return PyUnicode_FromFormat("%s", "x\xff"); }
static PyObject *
op_repr_object(void *a)
{
    (void)a;
    PyObject *o = PyBaseObject_Type.tp_alloc(&PyBaseObject_Type, 0);
    if (o == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_Repr(o);
    Py_DECREF(o);
    return r;
}

Test(unicode, out_of_memory_everywhere)
{
    PyObject *s = S("\xc3\xa9t\xc3\xa9 'x'");
    cr_assert_geq(fail_each_allocation(op_from_string, NULL), 1);
    cr_assert_geq(fail_each_allocation(op_from_size, NULL), 1);
    cr_assert_geq(fail_each_allocation(op_concat, s), 1);
    cr_assert_geq(fail_each_allocation(op_repr, s), 2, "a buffer and the result");
    cr_assert_geq(fail_each_allocation(op_ascii, s), 3);
    cr_assert_geq(fail_each_allocation(op_item, s), 1);
    cr_assert_geq(fail_each_allocation(op_repr_none, NULL), 1);
    cr_assert_geq(fail_each_allocation(op_format, s), 5);
    cr_assert_geq(fail_each_allocation(op_repr_object, NULL), 2);
    cr_assert_geq(fail_each_allocation(op_format_replace, NULL), 3, "format, replace, str");
    cr_assert_geq(fail_each_allocation(op_iter, s), 1);
    cr_assert_geq(fail_each_allocation(op_substring, s), 1);
    cr_assert_geq(fail_each_allocation(op_ordinal, NULL), 1);
    cr_assert_geq(fail_each_allocation(op_join, s), 3, "tuple, items array, result");
    cr_assert_eq(Py_REFCNT(s), 1);
    Py_DECREF(s);
    /* PyErr_Format whose %R runs out of memory still leaves MemoryError */
    PyObject *t = S("v");
    for (int n = 1; n < 6; n++) {
        ft_alloc_fail_after(n);
        cr_assert_null(PyErr_Format(PyExc_ValueError, "bad %R", t));
        ft_alloc_fail_after(0);
        PyObject *exc = PyErr_GetRaisedException();
        cr_assert_not_null(exc);
        cr_assert(Py_TYPE(exc) == (PyTypeObject *)PyExc_MemoryError ||
                  Py_TYPE(exc) == (PyTypeObject *)PyExc_ValueError, "n=%d: %s", n,
                  Py_TYPE(exc)->tp_name);
        if (Py_TYPE(exc) == (PyTypeObject *)PyExc_ValueError) {
            cr_assert_str_eq(PyException_GetMessageUTF8(exc), "bad 'v'");
        }
        Py_DECREF(exc);
    }
    Py_DECREF(t);
}

/* ---- the hash-cache race ------------------------------------------------- */

enum { HASH_THREADS = 8, HASH_ROUNDS = 50 };
static PyObject *_Atomic hash_target;
static atomic_int hash_round, hash_arrived, hash_done;
static _Atomic Py_hash_t hash_seen[HASH_THREADS];
static atomic_int hash_failed;

static void *
hash_worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    int64_t deadline = test_now_ns() + 20 * 1000000000LL * FT_TIMEOUT_SCALE;
    for (int round = 1; round <= HASH_ROUNDS; round++) {
        /* wait (detached, so a stop-the-world is never held up) until the
         * main thread publishes this round's fresh string */
        bool ok;
        Py_BEGIN_ALLOW_THREADS
        while (!(ok = atomic_load(&hash_round) >= round) && test_now_ns() < deadline) {
        }
        Py_END_ALLOW_THREADS
        if (!ok) {
            atomic_fetch_add(&hash_failed, 1);
            break;
        }
        /* all threads line up, then hash at once: every one finds the cache
         * empty (-1) and computes, the slow path */
        atomic_fetch_add(&hash_arrived, 1);
        while (atomic_load(&hash_arrived) < round * HASH_THREADS && test_now_ns() < deadline) {
        }
        PyObject *s = atomic_load(&hash_target);
        atomic_store(&hash_seen[me], PyObject_Hash(s));
        atomic_fetch_add(&hash_done, 1);
    }
    PyGILState_Release(g);
    return NULL;
}

Test(unicode, hash_cache_race_all_threads_agree)
{
    if (!ft_free_threaded) {
        /* The GIL build serialises the hashing threads (the spin above
         * would only burn the GIL holder's slice), so the race cannot
         * happen there; it runs the same code, checked by the other hash
         * tests. */
        PyObject *s = S("gil build");
        cr_assert_eq(PyObject_Hash(s), PyObject_Hash(s));
        Py_DECREF(s);
        return;
    }
    PyThreadState *me = PyEval_SaveThread();
    pthread_t t[HASH_THREADS];
    for (int i = 0; i < HASH_THREADS; i++) {
        t[i] = test_start_thread(hash_worker, (void *)(intptr_t)i);
    }
    int bad_rounds = 0;
    for (int round = 1; round <= HASH_ROUNDS; round++) {
        PyEval_RestoreThread(me);
        char text[32];
        snprintf(text, sizeof text, "race round %d", round);
        PyObject *s = PyUnicode_FromString(text);
        PyObject *twin = PyUnicode_FromString(text);   /* the reference value */
        Py_hash_t want = PyObject_Hash(twin);
        Py_DECREF(twin);
        me = PyEval_SaveThread();
        for (int i = 0; i < HASH_THREADS; i++) {
            atomic_store(&hash_seen[i], -1);
        }
        atomic_store(&hash_target, s);
        atomic_store(&hash_round, round);
        bool all = TEST_POLL_UNTIL(atomic_load(&hash_done) >= round * HASH_THREADS ||
                                   atomic_load(&hash_failed) > 0, 20000);
        for (int i = 0; i < HASH_THREADS; i++) {
            bad_rounds += atomic_load(&hash_seen[i]) != want;
        }
        PyEval_RestoreThread(me);
        Py_hash_t cached = PyObject_Hash(s);
        Py_DECREF(s);
        me = PyEval_SaveThread();
        if (!all || cached != want) {
            bad_rounds++;
            break;
        }
    }
    for (int i = 0; i < HASH_THREADS; i++) {
        test_join_thread(t[i]);
    }
    PyEval_RestoreThread(me);
    cr_assert_eq(atomic_load(&hash_failed), 0, "a worker timed out");
    cr_assert_eq(bad_rounds, 0, "%d thread-rounds saw a different hash", bad_rounds);
    cr_assert_eq(atomic_load(&hash_done), HASH_ROUNDS * HASH_THREADS);
}

/* ---- interning ----------------------------------------------------------- */

Test(unicode, intern_in_place_shares_one_immortal_object)
{
    Py_ssize_t before = ft_unicode_interned_count();
    PyObject *a = S("interned \xc3\xa9");
    PyObject *b = S("interned \xc3\xa9");
    PyObject *keep_b = Py_NewRef(b);   /* b's old object must survive its swap */
    cr_assert_neq(a, b);
    PyObject *a0 = a;
    PyUnicode_InternInPlace(&a);
    cr_assert_eq(a, a0, "the first string of a text is interned itself");
    cr_assert(_Py_IsImmortal(a));
    cr_assert_eq(ft_unicode_interned_count(), before + 1);
    PyUnicode_InternInPlace(&b);
    cr_assert_eq(b, a, "an equal string is replaced by the interned one");
    cr_assert_eq(Py_REFCNT(keep_b), 1, "the replaced reference was released");
    cr_assert_not(_Py_IsImmortal(keep_b));
    Py_DECREF(keep_b);
    PyUnicode_InternInPlace(&a);   /* already interned: unchanged */
    cr_assert_eq(a, a0);
    PyObject *c = PyUnicode_InternFromString("interned \xc3\xa9");
    cr_assert_eq(c, a0);
    PyObject *d = PyUnicode_InternFromString("another");
    cr_assert_neq(d, a0);
    cr_assert(PyUnicode_EqualToUTF8(d, "another"));
    cr_assert_eq(ft_unicode_interned_count(), before + 2);
    /* immortal: decrefs do not free (ASan would see a use after free) */
    for (int i = 0; i < 5; i++) {
        Py_DECREF(a0);
    }
    cr_assert(PyUnicode_EqualToUTF8(a0, "interned \xc3\xa9"));
    /* ignored: NULL, a non-str */
    PyUnicode_InternInPlace(NULL);
    PyObject *none = Py_None;
    PyUnicode_InternInPlace(&none);
    cr_assert_eq(none, Py_None);
    cr_assert_null(PyUnicode_InternFromString("bad \xff"));
    test_expect_error(PyExc_UnicodeDecodeError, "invalid start byte");
    cr_assert_null(PyErr_Occurred());
}

Test(unicode, intern_many_grows_the_table)
{
    enum { N = 1000 };   /* several growths from 64 slots */
    static PyObject *first[N];
    Py_ssize_t before = ft_unicode_interned_count();
    for (int i = 0; i < N; i++) {
        char t[32];
        snprintf(t, sizeof t, "intern-%d", i);
        first[i] = PyUnicode_InternFromString(t);
        cr_assert_not_null(first[i]);
    }
    cr_assert_eq(ft_unicode_interned_count(), before + N);
    for (int i = 0; i < N; i++) {
        char t[32];
        snprintf(t, sizeof t, "intern-%d", i);
        PyObject *again = PyUnicode_InternFromString(t);
        cr_assert_eq(again, first[i], "%d", i);
    }
    cr_assert_eq(ft_unicode_interned_count(), before + N);
}

Test(unicode, intern_out_of_memory_leaves_the_string_alone)
{
    /* intern 42 strings so the table (64 slots, at most 2/3 used) is full
     * and the next new text needs a growth */
    Py_ssize_t n0 = ft_unicode_interned_count();
    cr_assert_eq(n0, 0, "a fresh runtime has an empty table");
    for (int i = 0; i < 42; i++) {
        char t[32];
        snprintf(t, sizeof t, "fill-%d", i);
        cr_assert_not_null(PyUnicode_InternFromString(t));
    }
    PyObject *s = S("needs a growth");
    PyObject *orig = s;
    ft_alloc_fail_after(1);   /* the table's growth */
    PyUnicode_InternInPlace(&s);
    ft_alloc_fail_after(0);
    cr_assert_null(PyErr_Occurred(), "raises nothing");
    cr_assert_eq(s, orig);
    cr_assert_not(_Py_IsImmortal(s), "not interned");
    cr_assert_eq(ft_unicode_interned_count(), 42);
    /* an existing entry is still found without room to grow */
    PyObject *t = S("fill-7");
    PyObject *want = PyUnicode_InternFromString("fill-7");
    ft_alloc_fail_after(1);
    PyUnicode_InternInPlace(&t);
    ft_alloc_fail_after(0);
    cr_assert_eq(t, want);
    /* and with memory back, s is interned */
    PyUnicode_InternInPlace(&s);
    cr_assert_eq(s, orig);
    cr_assert(_Py_IsImmortal(s));
    cr_assert_eq(ft_unicode_interned_count(), 43);
}

enum { INTERN_THREADS = 8, INTERN_TEXTS = 64 };
static atomic_int intern_go;
static PyObject *_Atomic intern_got[INTERN_THREADS][INTERN_TEXTS];

static void *
intern_worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    Py_BEGIN_ALLOW_THREADS
    int64_t deadline = test_now_ns() + 10 * 1000000000LL * FT_TIMEOUT_SCALE;
    while (!atomic_load(&intern_go) && test_now_ns() < deadline) {
    }
    Py_END_ALLOW_THREADS
    for (int k = 0; k < INTERN_TEXTS; k++) {
        char t[32];
        snprintf(t, sizeof t, "shared-%d", (k + me) % INTERN_TEXTS);   /* different orders */
        PyObject *s = PyUnicode_FromString(t);
        if (s != NULL) {
            PyUnicode_InternInPlace(&s);
        }
        atomic_store(&intern_got[me][(k + me) % INTERN_TEXTS], s);
    }
    PyGILState_Release(g);
    return NULL;
}

Test(unicode, intern_from_many_threads_at_once)
{
    PyThreadState *me = PyEval_SaveThread();
    pthread_t t[INTERN_THREADS];
    for (int i = 0; i < INTERN_THREADS; i++) {
        t[i] = test_start_thread(intern_worker, (void *)(intptr_t)i);
    }
    atomic_store(&intern_go, 1);
    for (int i = 0; i < INTERN_THREADS; i++) {
        test_join_thread(t[i]);
    }
    PyEval_RestoreThread(me);
    for (int k = 0; k < INTERN_TEXTS; k++) {
        PyObject *first = atomic_load(&intern_got[0][k]);
        cr_assert_not_null(first);
        char want[32];
        snprintf(want, sizeof want, "shared-%d", k);
        cr_assert(PyUnicode_EqualToUTF8(first, want));
        cr_assert(_Py_IsImmortal(first));
        for (int i = 1; i < INTERN_THREADS; i++) {
            cr_assert_eq(atomic_load(&intern_got[i][k]), first, "thread %d text %d", i, k);
        }
    }
    cr_assert_eq(ft_unicode_interned_count(), INTERN_TEXTS);
}

/* ---- timing -------------------------------------------------------------- */

Test(unicode, timing_from_string_and_decref)
{
    enum { N = 200000 };
    int64_t t0 = test_now_ns();
    for (int i = 0; i < N; i++) {
        PyObject *s = PyUnicode_FromString("hello world");
        cr_assert_not_null(s);
        Py_DECREF(s);
    }
    int64_t t1 = test_now_ns();
    PyObject *s = S("hello world");
    int64_t t2 = test_now_ns();
    Py_hash_t acc = 0;
    for (int i = 0; i < N; i++) {
        acc ^= PyObject_Hash(s);   /* cached after the first */
    }
    int64_t t3 = test_now_ns();
    Py_DECREF(s);
    cr_assert_neq(acc, -1);
    fprintf(stderr, "[unicode %s] FromString(11 chars)+DECREF: %.1f ns/op; "
            "cached hash: %.1f ns/op\n", ft_free_threaded ? "ft" : "gil",
            (double)(t1 - t0) / N, (double)(t3 - t2) / N);
}
