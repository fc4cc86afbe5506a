/* The per-thread error indicator (core/errors.c), white-box.
 *
 * Covers: SetString / SetNone / SetObject (every kind of value) / Occurred /
 * ExceptionMatches / GivenExceptionMatches / Clear / GetRaisedException /
 * SetRaisedException (references stolen and dropped exactly once);
 * NoMemory with the heap exhausted; BadInternalCall / BadArgument;
 * PyErr_Format's conversions, flags, widths and precisions checked against
 * the C library's printf, its errors and out of memory at every
 * allocation; Print / PrintEx / WriteUnraisable output; per-thread
 * isolation (three threads, three errors); PyThreadState_Clear and
 * finalization dropping a pending error; every function fatal without an
 * attached thread state, naming itself.
 *
 * Helper threads only record into atomics; the test's main thread asserts.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_types.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(errors, .init = test_runtime_setup, .fini = test_runtime_teardown,
          .timeout = FT_TIMEOUT(30));

/* ---- helpers ------------------------------------------------------------ */

/* An exception class whose instances count their frees. */
static atomic_long exc_frees;

static void
counting_free(void *p)
{
    atomic_fetch_add(&exc_frees, 1);
    PyObject_Free(p);
}

static PyObject *
counting_exception_type(void)
{
    PyType_Slot slots[] = { { Py_tp_base, PyExc_RuntimeError },
                            { Py_tp_free, TEST_FP(counting_free) }, { 0, NULL } };
    PyType_Spec spec = { "testmod.CountedError", 0, 0, Py_TPFLAGS_DEFAULT, slots };
    PyObject *t = PyType_FromSpec(&spec);
    cr_assert_not_null(t);
    return t;
}

/* Run fn with stderr sent to a temporary file; returns what it wrote. */
static char captured[4096];

static const char *
capture_stderr(void (*fn)(void))
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    int saved = dup(STDERR_FILENO);
    cr_assert_geq(saved, 0);
    cr_assert_geq(dup2(fileno(tmp), STDERR_FILENO), 0);
    fn();
    fflush(stderr);
    cr_assert_geq(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(captured, 1, sizeof captured - 1, tmp);
    captured[n] = '\0';
    fclose(tmp);
    return captured;
}

/* ---- setting, matching, clearing ------------------------------------------------ */

Test(errors, set_string_occurred_matches_clear)
{
    cr_assert_null(PyErr_Occurred());
    cr_assert_not(PyErr_ExceptionMatches(PyExc_Exception));
    PyErr_SetString(PyExc_KeyError, "no such key");
    cr_assert_eq(PyErr_Occurred(), PyExc_KeyError);
    cr_assert(PyErr_ExceptionMatches(PyExc_KeyError));
    cr_assert(PyErr_ExceptionMatches(PyExc_LookupError));
    cr_assert(PyErr_ExceptionMatches(PyExc_Exception));
    cr_assert(PyErr_ExceptionMatches(PyExc_BaseException));
    cr_assert_not(PyErr_ExceptionMatches(PyExc_IndexError));
    cr_assert_not(PyErr_ExceptionMatches(PyExc_TypeError));
    PyErr_Clear();
    cr_assert_null(PyErr_Occurred());
    PyErr_Clear();   /* clearing nothing is fine */
    cr_assert_null(PyErr_Occurred());

    PyErr_SetString(PyExc_ValueError, "first");
    PyErr_SetString(PyExc_TypeError, "second");   /* replaces */
    test_expect_error_is(PyExc_TypeError, "second");
    PyErr_SetString(PyExc_ValueError, NULL);
    test_expect_error_is(PyExc_ValueError, "");
    PyErr_SetNone(PyExc_StopIteration);
    cr_assert_eq(PyErr_Occurred(), PyExc_StopIteration);
    test_expect_error_is(PyExc_StopIteration, "");
}

Test(errors, replaced_and_cleared_exceptions_are_freed_once)
{
    PyObject *t = counting_exception_type();
    atomic_store(&exc_frees, 0);
    PyErr_SetString(t, "one");
    PyErr_SetString(t, "two");
    cr_assert_eq(atomic_load(&exc_frees), 1, "the replaced exception is dropped");
    cr_assert(PyErr_ExceptionMatches(PyExc_RuntimeError));
    PyErr_Clear();
    cr_assert_eq(atomic_load(&exc_frees), 2);
    /* GetRaisedException hands over the reference; SetRaisedException steals it */
    PyErr_SetString(t, "three");
    PyObject *e = PyErr_GetRaisedException();
    cr_assert_not_null(e);
    cr_assert_null(PyErr_Occurred());
    cr_assert_eq(Py_REFCNT(e), 1);
    cr_assert_str_eq(PyException_GetMessageUTF8(e), "three");
    PyErr_SetRaisedException(e);
    cr_assert_eq(PyErr_Occurred(), t);
    PyObject *again = PyErr_GetRaisedException();
    cr_assert_eq(again, e, "the same object comes back");
    cr_assert_eq(atomic_load(&exc_frees), 2);
    PyErr_SetRaisedException(again);
    PyErr_SetRaisedException(NULL);   /* clears, dropping it */
    cr_assert_null(PyErr_Occurred());
    cr_assert_eq(atomic_load(&exc_frees), 3);
}

Test(errors, set_object_with_each_kind_of_value)
{
    /* an instance of the class (or a subclass) is raised as it is */
    PyErr_SetString(PyExc_KeyError, "k");
    PyObject *inst = PyErr_GetRaisedException();
    PyErr_SetObject(PyExc_LookupError, inst);
    PyObject *got = PyErr_GetRaisedException();
    cr_assert_eq(got, inst);
    Py_DECREF(got);
    cr_assert_eq(Py_REFCNT(inst), 1, "SetObject took its own reference");
    /* an instance of another class: a new exception with its message */
    PyErr_SetObject(PyExc_ValueError, inst);
    got = PyErr_GetRaisedException();
    cr_assert_neq(got, inst);
    cr_assert_eq(Py_TYPE(got), (PyTypeObject *)PyExc_ValueError);
    cr_assert_str_eq(PyException_GetMessageUTF8(got), "k");
    Py_DECREF(got);
    Py_DECREF(inst);
    /* None or NULL: no message */
    PyErr_SetObject(PyExc_IndexError, Py_None);
    test_expect_error_is(PyExc_IndexError, "");
    PyErr_SetObject(PyExc_IndexError, NULL);
    test_expect_error_is(PyExc_IndexError, "");
    /* any other value: the message is str(value), repr(value) for KeyError */
    PyErr_SetObject(PyExc_IndexError, Py_True);
    test_expect_error_is(PyExc_IndexError, "True");
    PyObject *key = PyUnicode_FromString("k");
    PyErr_SetObject(PyExc_ValueError, key);
    test_expect_error_is(PyExc_ValueError, "k");
    PyErr_SetObject(PyExc_KeyError, key);
    test_expect_error_is(PyExc_KeyError, "'k'");
    Py_DECREF(key);
    /* not an exception class */
    PyErr_SetObject((PyObject *)&PyBool_Type, NULL);
    test_expect_error_is(PyExc_SystemError, "exception bool is not a BaseException subclass");
    PyErr_SetString(Py_None, "x");
    test_expect_error_is(PyExc_SystemError, "exception NoneType is not a BaseException subclass");
    PyErr_SetString(NULL, "x");
    test_expect_error_is(PyExc_SystemError, "an exception was raised with a NULL type");
}

Test(errors, given_exception_matches)
{
    cr_assert(PyErr_GivenExceptionMatches(PyExc_KeyError, PyExc_LookupError));
    cr_assert(PyErr_GivenExceptionMatches(PyExc_KeyError, PyExc_KeyError));
    cr_assert_not(PyErr_GivenExceptionMatches(PyExc_LookupError, PyExc_KeyError));
    cr_assert(PyErr_GivenExceptionMatches(PyExc_ZeroDivisionError, PyExc_ArithmeticError));
    cr_assert_not(PyErr_GivenExceptionMatches(PyExc_ZeroDivisionError, PyExc_ValueError));
    cr_assert_not(PyErr_GivenExceptionMatches(NULL, PyExc_KeyError));
    cr_assert_not(PyErr_GivenExceptionMatches(PyExc_KeyError, NULL));
    /* an instance matches through its class */
    PyErr_SetString(PyExc_OverflowError, "big");
    PyObject *e = PyErr_GetRaisedException();
    cr_assert(PyErr_GivenExceptionMatches(e, PyExc_ArithmeticError));
    cr_assert_not(PyErr_GivenExceptionMatches(e, PyExc_TypeError));
    Py_DECREF(e);
    /* anything else: identity */
    cr_assert(PyErr_GivenExceptionMatches(Py_None, Py_None));
    cr_assert_not(PyErr_GivenExceptionMatches(Py_None, Py_True));
}

Test(errors, no_memory_allocates_nothing)
{
    PyErr_SetString(PyExc_ValueError, "replaced");
    ft_alloc_fail_after(1);   /* the next allocation would fail */
    cr_assert_null(PyErr_NoMemory());
    ft_alloc_fail_after(0);
    cr_assert_eq(PyErr_Occurred(), PyExc_MemoryError);
    PyObject *e = PyErr_GetRaisedException();
    cr_assert_eq(e, (PyObject *)&ft_memory_error_instance);
    cr_assert_eq(Py_REFCNT(e), _Py_IMMORTAL_REFCNT);
    cr_assert_str_eq(PyException_GetMessageUTF8(e), "");
    Py_DECREF(e);
    /* raising anything else with the heap exhausted gives MemoryError */
    for (long n = 1; n <= 2; n++) {
        ft_alloc_fail_after(n);
        PyErr_SetString(PyExc_TypeError, "cannot be allocated");
        ft_alloc_fail_after(0);
        test_expect_error_is(PyExc_MemoryError, "");
    }
}

Test(errors, bad_internal_call_and_bad_argument)
{
    PyErr_BadInternalCall();
    int line = __LINE__ - 1;
    char want[512];
    snprintf(want, sizeof want, "%s:%d: bad argument to internal function", __FILE__, line);
    test_expect_error_is(PyExc_SystemError, want);
    cr_assert_eq(PyErr_BadArgument(), 0);
    test_expect_error_is(PyExc_TypeError, "bad argument type for built-in operation");
}

/* ---- PyErr_Format ------------------------------------------------------------------- */

/* PyErr_Format(ValueError, ...) must give exactly what snprintf gives. */
#define CHECK_FORMAT(...)                                                   \
    do {                                                                    \
        char want_[1024];                                                   \
        snprintf(want_, sizeof want_, __VA_ARGS__);                         \
        cr_assert_null(PyErr_Format(PyExc_ValueError, __VA_ARGS__));        \
        test_expect_error_is(PyExc_ValueError, want_);                      \
    } while (0)

Test(errors, format_matches_printf)
{
    CHECK_FORMAT("plain text, no conversions");
    CHECK_FORMAT("%s and %s", "one", "two");
    CHECK_FORMAT("%d %i %u", -42, 17, 4000000000u);
    CHECK_FORMAT("%d %d", INT_MIN, INT_MAX);
    CHECK_FORMAT("%ld %lu", LONG_MIN, ULONG_MAX);
    CHECK_FORMAT("%lld %llu", LLONG_MIN, ULLONG_MAX);
    CHECK_FORMAT("%zd %zu", (Py_ssize_t)-123456789, (size_t)SIZE_MAX);
    CHECK_FORMAT("%x %X %o", 0xdeadbeefu, 0xabcdefu, 0755u);
    CHECK_FORMAT("%lx %llx %zx", 0x1234567890UL, 0xfedcba9876543210ULL, (size_t)0xffff);
    CHECK_FORMAT("%td %jd", (ptrdiff_t)-5, (intmax_t)INTMAX_MIN);
    CHECK_FORMAT("%c%c%c", 'a', 'B', '7');
    CHECK_FORMAT("100%% sure");
    CHECK_FORMAT("[%5d] [%-5d] [%05d] [%.3d] [%-6s] [%6s]", 42, 42, -42, 7, "ab", "cd");
    CHECK_FORMAT("[%*d] [%-*d] [%.*s]", 6, 1, 4, 2, 3, "abcdef");
    CHECK_FORMAT("[%.5s] [%.0s] [%.10s]", "truncated", "gone", "short");
    CHECK_FORMAT("%d", 0);
    CHECK_FORMAT("%s", "");
}

Test(errors, format_specials)
{
    /* %p: always 0x and lower-case hex */
    void *p = (void *)(uintptr_t)0xABC123;
    cr_assert_null(PyErr_Format(PyExc_ValueError, "at %p", p));
    test_expect_error_is(PyExc_ValueError, "at 0xabc123");
    cr_assert_null(PyErr_Format(PyExc_ValueError, "%p", NULL));
    test_expect_error_is(PyExc_ValueError, "0x0");
    /* %c is a code point, encoded as UTF-8 */
    cr_assert_null(PyErr_Format(PyExc_ValueError, "%c|%c|%c", 0xE9, 0x20AC, 0x1F600));
    test_expect_error_is(PyExc_ValueError, "\xc3\xa9|\xe2\x82\xac|\xf0\x9f\x98\x80");
    cr_assert_null(PyErr_Format(PyExc_ValueError, "%c", 0x110000));
    test_expect_error_is(PyExc_OverflowError, "character argument not in range(0x110000)");
    cr_assert_null(PyErr_Format(PyExc_ValueError, "%c", -1));
    test_expect_error_is(PyExc_OverflowError, "character argument not in range(0x110000)");
    /* %s precision never splits a UTF-8 character; widths count characters */
    cr_assert_null(PyErr_Format(PyExc_ValueError, "[%.2s]", "\xc3\xa9t\xc3\xa9"));
    test_expect_error_is(PyExc_ValueError, "[\xc3\xa9]");
    cr_assert_null(PyErr_Format(PyExc_ValueError, "[%.1s]", "\xc3\xa9"));
    test_expect_error_is(PyExc_ValueError, "[]");
    cr_assert_null(PyErr_Format(PyExc_ValueError, "[%4s]", "\xc3\xa9t\xc3\xa9"));
    test_expect_error_is(PyExc_ValueError, "[ \xc3\xa9t\xc3\xa9]");
    cr_assert_null(PyErr_Format(PyExc_ValueError, "%s", (char *)NULL));
    test_expect_error_is(PyExc_ValueError, "(null)");
    /* %T: an object's type name; %N: a type's name */
    cr_assert_null(PyErr_Format(PyExc_TypeError, "got %T, want %N", Py_None,
                                (PyObject *)&PyBool_Type));
    test_expect_error_is(PyExc_TypeError, "got NoneType, want bool");
    cr_assert_null(PyErr_Format(PyExc_TypeError, "%#T", Py_True));
    test_expect_error_is(PyExc_TypeError, "bool");
    /* the object conversions (tested in depth in test_unicodeobject.c):
     * str(), repr(), ascii() of any object; %U and %V need a str */
    PyErr_SetString(PyExc_KeyError, "cleared first");
    cr_assert_null(PyErr_Format(PyExc_ValueError, "%R|%S|%A", Py_None, Py_True, Py_None));
    test_expect_error_is(PyExc_ValueError, "None|True|None");
    const char *needs_str[] = { "%U", "%V" };
    for (size_t i = 0; i < 2; i++) {
        PyErr_SetString(PyExc_KeyError, "cleared first");
        cr_assert_null(PyErr_Format(PyExc_ValueError, needs_str[i], Py_None, "unused"));
        char want[100];
        snprintf(want, sizeof want, "PyUnicode_FromFormat: %s needs a str argument",
                 needs_str[i]);
        test_expect_error_is(PyExc_SystemError, want);
    }
    cr_assert_null(PyErr_Format(PyExc_ValueError, "%y"));
    test_expect_error_is(PyExc_SystemError,
                         "PyErr_Format: unsupported conversion '%y' in the format string");
    cr_assert_null(PyErr_Format(PyExc_ValueError, "ends with %"));
    test_expect_error(PyExc_SystemError, "the format string ends inside");
    cr_assert_null(PyErr_Format(PyExc_ValueError, "%-5"));
    test_expect_error(PyExc_SystemError, "the format string ends inside '%-5'");
    /* a non-exception class gives SystemError, like SetString */
    cr_assert_null(PyErr_Format(Py_None, "x"));
    test_expect_error_is(PyExc_SystemError, "exception NoneType is not a BaseException subclass");
}

Test(errors, format_long_messages)
{
    enum { LONG = 10000 };
    char *big = malloc(LONG + 1);
    cr_assert_not_null(big);
    for (int i = 0; i < LONG; i++) {
        big[i] = (char)('a' + i % 26);
    }
    big[LONG] = '\0';
    char *want = malloc(2 * LONG + 100);
    cr_assert_not_null(want);
    snprintf(want, 2 * LONG + 100, "<%s|%d|%s>", big, 12345, big);
    cr_assert_null(PyErr_Format(PyExc_RuntimeError, "<%s|%d|%s>", big, 12345, big));
    test_expect_error_is(PyExc_RuntimeError, want);
    /* out of memory at each allocation in turn: the buffer, its growth, the
     * message copy, the instance */
    int failures = 0;
    bool done = false;
    for (long n = 1; n < 40 && !done; n++) {
        ft_alloc_fail_after(n);
        cr_assert_null(PyErr_Format(PyExc_RuntimeError, "<%s|%d|%s>", big, 12345, big));
        ft_alloc_fail_after(0);
        PyObject *e = PyErr_GetRaisedException();
        cr_assert_not_null(e);
        if (Py_TYPE(e) == (PyTypeObject *)PyExc_MemoryError) {
            failures++;
        }
        else {
            cr_assert_eq(Py_TYPE(e), (PyTypeObject *)PyExc_RuntimeError);
            cr_assert_str_eq(PyException_GetMessageUTF8(e), want);
            done = true;
        }
        Py_DECREF(e);
    }
    cr_assert(done, "PyErr_Format kept failing");
    cr_assert_geq(failures, 3, "only %d allocations could fail", failures);
    /* a short message needs no buffer: only the copy and the instance */
    failures = 0;
    done = false;
    for (long n = 1; n < 10 && !done; n++) {
        ft_alloc_fail_after(n);
        PyErr_Format(PyExc_IndexError, "index %d out of range", 7);
        ft_alloc_fail_after(0);
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
            failures++;
            PyErr_Clear();
        }
        else {
            test_expect_error_is(PyExc_IndexError, "index 7 out of range");
            done = true;
        }
    }
    cr_assert(done);
    cr_assert_geq(failures, 2);
    free(big);
    free(want);
}

/* ---- printing -------------------------------------------------------------------------- */

static void
print_value_error(void)
{
    PyErr_SetString(PyExc_ValueError, "bad value");
    PyErr_Print();
}

static void
print_ex_key_error(void)
{
    PyErr_SetNone(PyExc_KeyError);
    PyErr_PrintEx(0);
}

static void
print_nothing(void)
{
    PyErr_Print();
}

static PyObject *heap_error;

static void
print_heap_error(void)
{
    PyErr_Format(heap_error, "%d things went wrong", 3);
    PyErr_Print();
}

Test(errors, print_writes_type_and_message_and_clears)
{
    cr_assert_str_eq(capture_stderr(print_value_error), "ValueError: bad value\n");
    cr_assert_null(PyErr_Occurred());
    cr_assert_str_eq(capture_stderr(print_ex_key_error), "KeyError\n");
    cr_assert_null(PyErr_Occurred());
    cr_assert_str_eq(capture_stderr(print_nothing), "");
    heap_error = counting_exception_type();
    atomic_store(&exc_frees, 0);
    cr_assert_str_eq(capture_stderr(print_heap_error),
                     "testmod.CountedError: 3 things went wrong\n");
    cr_assert_null(PyErr_Occurred());
    cr_assert_eq(atomic_load(&exc_frees), 1, "the printed exception is dropped");
}

static PyObject *unraisable_obj;

static void
write_unraisable(void)
{
    PyErr_SetString(PyExc_RuntimeError, "oops");
    PyErr_WriteUnraisable(unraisable_obj);
}

static void
write_unraisable_nothing_set(void)
{
    PyErr_WriteUnraisable(Py_None);
}

Test(errors, write_unraisable)
{
    unraisable_obj = Py_None;   /* repr(obj) */
    cr_assert_str_eq(capture_stderr(write_unraisable),
                     "Exception ignored in: None\nRuntimeError: oops\n");
    cr_assert_null(PyErr_Occurred());
    unraisable_obj = PyBaseObject_Type.tp_alloc(&PyBaseObject_Type, 0);   /* the default repr */
    char want[200];
    snprintf(want, sizeof want, "Exception ignored in: <object object at %p>\nRuntimeError: "
             "oops\n", (void *)unraisable_obj);
    cr_assert_str_eq(capture_stderr(write_unraisable), want);
    Py_DECREF(unraisable_obj);
    cr_assert_null(PyErr_Occurred());
    unraisable_obj = NULL;
    cr_assert_str_eq(capture_stderr(write_unraisable), "RuntimeError: oops\n");
    cr_assert_null(PyErr_Occurred());
    cr_assert_str_eq(capture_stderr(write_unraisable_nothing_set), "");
}

/* ---- per-thread isolation ----------------------------------------------------------- */

enum { ISO_THREADS = 2 };
static atomic_int iso_set, iso_ok[ISO_THREADS], iso_bad;

static void *
isolation_worker(void *arg)
{
    int i = (int)(intptr_t)arg;
    PyObject *type = i == 0 ? PyExc_TypeError : PyExc_ValueError;
    char msg[32];
    snprintf(msg, sizeof msg, "from thread %d", i);
    PyGILState_STATE g = PyGILState_Ensure();
    if (PyErr_Occurred() != NULL) {
        atomic_fetch_add(&iso_bad, 1);   /* a new thread starts with no error */
    }
    PyErr_SetString(type, msg);
    atomic_fetch_add(&iso_set, 1);
    /* everyone (main thread included) has set its own before anyone looks */
    Py_BEGIN_ALLOW_THREADS
    TEST_HELPER_WAIT(atomic_load(&iso_set) == ISO_THREADS + 1, 10000);
    Py_END_ALLOW_THREADS
    PyObject *e = PyErr_GetRaisedException();
    if (e != NULL && (PyObject *)Py_TYPE(e) == type &&
        strcmp(PyException_GetMessageUTF8(e), msg) == 0 && PyErr_Occurred() == NULL) {
        atomic_store(&iso_ok[i], 1);
    }
    Py_XDECREF(e);
    PyGILState_Release(g);
    return NULL;
}

Test(errors, each_thread_sees_only_its_own_error)
{
    PyErr_SetString(PyExc_KeyError, "from the main thread");
    PyThreadState *me = PyEval_SaveThread();
    pthread_t t[ISO_THREADS];
    for (int i = 0; i < ISO_THREADS; i++) {
        t[i] = test_start_thread(isolation_worker, (void *)(intptr_t)i);
    }
    bool both_set = TEST_POLL_UNTIL(atomic_load(&iso_set) == ISO_THREADS, 5000);
    PyEval_RestoreThread(me);
    /* the main thread's error survived the others' */
    cr_assert_eq(PyErr_Occurred(), PyExc_KeyError);
    atomic_fetch_add(&iso_set, 1);
    me = PyEval_SaveThread();
    for (int i = 0; i < ISO_THREADS; i++) {
        test_join_thread(t[i]);
    }
    PyEval_RestoreThread(me);
    cr_assert(both_set, "the helpers did not set their errors");
    cr_assert_eq(atomic_load(&iso_bad), 0);
    for (int i = 0; i < ISO_THREADS; i++) {
        cr_assert(atomic_load(&iso_ok[i]), "thread %d lost its error", i);
    }
    test_expect_error_is(PyExc_KeyError, "from the main thread");
}

/* ---- thread-state clear and finalization drop the error ----------------------------------- */

Test(errors, thread_state_clear_drops_the_error)
{
    PyObject *t = counting_exception_type();
    atomic_store(&exc_frees, 0);
    PyThreadState *other = PyThreadState_New(PyInterpreterState_Get());
    cr_assert_not_null(other);
    PyThreadState *me = PyThreadState_Swap(other);
    PyErr_SetString(t, "pending in the other state");
    PyThreadState_Swap(me);
    cr_assert_null(PyErr_Occurred(), "states do not share the indicator");
    cr_assert_eq(atomic_load(&exc_frees), 0);
    PyThreadState_Clear(other);
    cr_assert_eq(atomic_load(&exc_frees), 1);
    PyThreadState_Delete(other);
    cr_assert_eq(atomic_load(&exc_frees), 1);
}

Test(errors, finalize_drops_a_pending_error)
{
    PyObject *t = counting_exception_type();
    atomic_store(&exc_frees, 0);
    PyErr_SetString(t, "never handled");
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(atomic_load(&exc_frees), 1);
    Py_InitializeEx(0);
    cr_assert_null(PyErr_Occurred(), "a new runtime starts clean");
}

/* ---- misuse: no attached thread state --------------------------------------------------- */

static void detach(void) { (void)PyEval_SaveThread(); }
static void no_ts_set_string(void) { detach(); PyErr_SetString(PyExc_ValueError, "x"); }
static void no_ts_set_none(void) { detach(); PyErr_SetNone(PyExc_ValueError); }
static void no_ts_set_object(void) { detach(); PyErr_SetObject(PyExc_ValueError, NULL); }
static void no_ts_format(void) { detach(); PyErr_Format(PyExc_ValueError, "%d", 1); }
static void no_ts_occurred(void) { detach(); (void)PyErr_Occurred(); }
static void no_ts_clear(void) { detach(); PyErr_Clear(); }
static void no_ts_no_memory(void) { detach(); PyErr_NoMemory(); }
static void no_ts_bad_internal(void) { detach(); PyErr_BadInternalCall(); }
static void no_ts_bad_argument(void) { detach(); PyErr_BadArgument(); }
static void no_ts_matches(void) { detach(); PyErr_ExceptionMatches(PyExc_ValueError); }
static void no_ts_get_raised(void) { detach(); (void)PyErr_GetRaisedException(); }
static void no_ts_set_raised(void) { detach(); PyErr_SetRaisedException(NULL); }
static void no_ts_print(void) { detach(); PyErr_Print(); }
static void no_ts_print_ex(void) { detach(); PyErr_PrintEx(0); }
static void no_ts_unraisable(void) { detach(); PyErr_WriteUnraisable(NULL); }

static void
no_runtime(void)
{
    Py_FinalizeEx();
    PyErr_SetString(PyExc_ValueError, "after finalization");
}

Test(errors, without_thread_state_every_function_is_fatal, .timeout = FT_TIMEOUT(60))
{
    static const struct { void (*fn)(void); const char *name; } cases[] = {
        { no_ts_set_string, "PyErr_SetString" }, { no_ts_set_none, "PyErr_SetNone" },
        { no_ts_set_object, "PyErr_SetObject" }, { no_ts_format, "PyErr_Format" },
        { no_ts_occurred, "PyErr_Occurred" }, { no_ts_clear, "PyErr_Clear" },
        { no_ts_no_memory, "PyErr_NoMemory" }, { no_ts_bad_internal, "PyErr_BadInternalCall" },
        { no_ts_bad_argument, "PyErr_BadArgument" },
        { no_ts_matches, "PyErr_ExceptionMatches" },
        { no_ts_get_raised, "PyErr_GetRaisedException" },
        { no_ts_set_raised, "PyErr_SetRaisedException" }, { no_ts_print, "PyErr_Print" },
        { no_ts_print_ex, "PyErr_PrintEx" }, { no_ts_unraisable, "PyErr_WriteUnraisable" },
        { no_runtime, "PyErr_SetString" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char want[200];
        snprintf(want, sizeof want, "Fatal Python error: %s: called without an attached thread "
                 "state", cases[i].name);
        test_expect_fatal(cases[i].fn, want);
    }
}

Test(errors, without_thread_state_aborts, .signal = SIGABRT)
{
    no_ts_occurred();
}
