/* str objects (core/unicodeobject.c): CPython 3.13's str API, with a simpler
 * representation than CPython's PEP 393 one.  A str holds its text as
 * validated UTF-8 (NUL-terminated; embedded NULs allowed) plus its length in
 * code points and a lazily computed hash; it is immutable.
 * PyUnicode_AsUTF8AndSize therefore costs nothing: it returns the stored
 * bytes, valid while the object lives.  docs/containers.md ("str") lists
 * the differences from CPython.
 *
 * Lone surrogates (U+D800..U+DFFF) cannot be stored: the UTF-8 decoder
 * rejects them, as CPython's strict UTF-8 codec does. */
#ifndef PY_UNICODEOBJECT_H
#define PY_UNICODEOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

#include <stdarg.h>

PyAPI_DATA(PyTypeObject) PyUnicode_Type;

#define PyUnicode_Check(op) PyType_FastSubclass(Py_TYPE(op), Py_TPFLAGS_UNICODE_SUBCLASS)
#define PyUnicode_CheckExact(op) Py_IS_TYPE((op), &PyUnicode_Type)

/* A code point, and the largest one (CPython's names). */
typedef uint32_t Py_UCS4;
#define Py_UNICODE_MAX 0x10ffff

/* ---- creation ------------------------------------------------------------ */

/* A new str from NUL-terminated UTF-8.  UnicodeDecodeError for invalid
 * UTF-8, SystemError for NULL (CPython 3.13 crashes on NULL; ftrt checks). */
PyAPI_FUNC(PyObject *) PyUnicode_FromString(const char *u);
/* A new str from u[0..size) (UTF-8, may contain NULs).  SystemError for a
 * negative size; u == NULL with size > 0 (CPython's "to be filled in"
 * string) is not supported: SystemError, because ftrt's str is immutable
 * from creation (docs/containers.md); u == NULL with size 0 is "". */
PyAPI_FUNC(PyObject *) PyUnicode_FromStringAndSize(const char *u, Py_ssize_t size);
/* printf-like formatting into a new str: %% %c %d %i %u %x %X %o %p %s %ld
 * %lu %lld %llu %zd %zu (and t, j sizes), widths, precisions, the - and 0
 * flags, %T %N (type names), and the object conversions %S (str()), %R
 * (repr()), %A (ascii()), %U (a str), %V (a str, or UTF-8 if NULL).
 * Invalid UTF-8 in the format or a %s / %V string is decoded with
 * CPython's "replace" handler (U+FFFD per invalid sequence). */
PyAPI_FUNC(PyObject *) PyUnicode_FromFormat(const char *format, ...);
PyAPI_FUNC(PyObject *) PyUnicode_FromFormatV(const char *format, va_list vargs);

/* ---- access -------------------------------------------------------------- */

/* The UTF-8 bytes (borrowed, NUL-terminated, valid while unicode lives);
 * *size (if size is not NULL) gets the length in bytes.  TypeError (3.13:
 * "bad argument type") if unicode is not a str. */
PyAPI_FUNC(const char *) PyUnicode_AsUTF8AndSize(PyObject *unicode, Py_ssize_t *size);
PyAPI_FUNC(const char *) PyUnicode_AsUTF8(PyObject *unicode);
/* Length in code points; -1 and TypeError if not a str. */
PyAPI_FUNC(Py_ssize_t) PyUnicode_GetLength(PyObject *unicode);

/* ---- operations ---------------------------------------------------------- */

/* left + right, a new str; TypeError unless both are str. */
PyAPI_FUNC(PyObject *) PyUnicode_Concat(PyObject *left, PyObject *right);
/* -1, 0, 1 (code point order); -1 with TypeError if either is not a str
 * (test with PyErr_Occurred). */
PyAPI_FUNC(int) PyUnicode_Compare(PyObject *left, PyObject *right);
/* Compare with a NUL-terminated Latin-1 string (one code point per byte;
 * ASCII in practice), as CPython: -1, 0, 1.  Never raises; a non-str (or
 * NULL) argument, which CPython only asserts against, returns -1. */
PyAPI_FUNC(int) PyUnicode_CompareWithASCIIString(PyObject *left, const char *right);
/* 1 if unicode is a str equal to the UTF-8 string, else 0; never raises
 * (3.13). */
PyAPI_FUNC(int) PyUnicode_EqualToUTF8(PyObject *unicode, const char *string);
PyAPI_FUNC(int) PyUnicode_EqualToUTF8AndSize(PyObject *unicode, const char *string,
                                             Py_ssize_t size);
/* 1 if substr occurs in container, 0 if not, -1 with TypeError if either is
 * not a str. */
PyAPI_FUNC(int) PyUnicode_Contains(PyObject *container, PyObject *element);

/* ---- interning ------------------------------------------------------------ */

/* Replace *p (an exact str) by the interned str of equal text, interning
 * *p itself if there is none: the reference *p held is released and a
 * reference to the interned str stored.  Interned strings are immortal
 * until Py_FinalizeEx.  Does nothing for NULL, a non-str or a str
 * subclass; raises nothing (if the table cannot grow, *p stays as it
 * is). */
PyAPI_FUNC(void) PyUnicode_InternInPlace(PyObject **p);
/* PyUnicode_FromString, then InternInPlace: a new (immortal) reference. */
PyAPI_FUNC(PyObject *) PyUnicode_InternFromString(const char *v);

/* chr(ordinal), a new one-character str.  ValueError outside
 * range(0x110000), and for a surrogate (U+D800..U+DFFF: CPython creates a
 * lone surrogate, ftrt's str cannot hold one). */
PyAPI_FUNC(PyObject *) PyUnicode_FromOrdinal(int ordinal);
/* str[start:end] (code point indices, end clipped to the length; an empty
 * str if start >= end); IndexError if start or end is negative, TypeError
 * if str is not a str. */
PyAPI_FUNC(PyObject *) PyUnicode_Substring(PyObject *str, Py_ssize_t start, Py_ssize_t end);
/* The code point at index; (Py_UCS4)-1 with IndexError / TypeError. */
PyAPI_FUNC(Py_UCS4) PyUnicode_ReadChar(PyObject *unicode, Py_ssize_t index);
/* The index of the first (direction > 0) or last (direction < 0)
 * occurrence of substr in str[start:end] (slice rules for the bounds), -1
 * if none, -2 with TypeError if either is not a str. */
PyAPI_FUNC(Py_ssize_t) PyUnicode_Find(PyObject *str, PyObject *substr, Py_ssize_t start,
                                      Py_ssize_t end, int direction);
PyAPI_FUNC(Py_ssize_t) PyUnicode_FindChar(PyObject *str, Py_UCS4 ch, Py_ssize_t start,
                                          Py_ssize_t end, int direction);
/* 1 if substr is a prefix (direction < 0) or suffix (direction > 0) of
 * str[start:end], else 0; -1 with TypeError if either is not a str. */
PyAPI_FUNC(Py_ssize_t) PyUnicode_Tailmatch(PyObject *str, PyObject *substr, Py_ssize_t start,
                                           Py_ssize_t end, int direction);
/* separator.join(seq) (separator NULL: a space); seq is any iterable of
 * strs (TypeError for another item or a non-str separator). */
PyAPI_FUNC(PyObject *) PyUnicode_Join(PyObject *separator, PyObject *seq);

/* ascii(o): repr(o) with every non-ASCII code point escaped (\xhh, \uhhhh,
 * \Uhhhhhhhh).  Declared here rather than in object.h (it needs str). */
PyAPI_FUNC(PyObject *) PyObject_ASCII(PyObject *o);

#endif /* PY_UNICODEOBJECT_H */
