/* Helpers shared by the object-level test files (tests/core/test_*object.c,
 * test_exceptions.c): checking the exception a call left set. */
#ifndef FT_TEST_OBJECTS_H
#define FT_TEST_OBJECTS_H

#include <Python.h>
#include <string.h>

#include "harness.h"

/* The exception set now is exactly of `type` and its message contains
 * `needle`; it is cleared (taken). */
static inline void
test_expect_error(PyObject *type, const char *needle)
{
    PyObject *exc = PyErr_GetRaisedException();
    cr_assert_not_null(exc, "no exception set (expected %s)", ((PyTypeObject *)type)->tp_name);
    const char *msg = PyException_GetMessageUTF8(exc);
    cr_assert_eq((PyObject *)Py_TYPE(exc), type, "got %s (\"%s\"), expected %s",
                 Py_TYPE(exc)->tp_name, msg, ((PyTypeObject *)type)->tp_name);
    cr_assert(strstr(msg, needle) != NULL, "message \"%s\" lacks \"%s\"", msg, needle);
    Py_DECREF(exc);
}

#endif /* FT_TEST_OBJECTS_H */
