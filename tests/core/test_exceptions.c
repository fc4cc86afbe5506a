/* Exception types and objects (core/exceptions.c), white-box.
 *
 * Covers: the static exception types (names, CPython's hierarchy, flags,
 * immortal, ready after Py_Initialize); instances and their messages
 * (PyException_GetMessageUTF8, also on misuse); the static MemoryError
 * instance; user exception classes from PyType_FromSpec, plain and GC, with
 * extra fields, raised and matched and freed through the shared dealloc;
 * out of memory while creating an exception; an exception raised in one
 * thread and dropped in another.
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
#include <string.h>

TestSuite(exceptions, .init = test_runtime_setup, .fini = test_runtime_teardown,
          .timeout = FT_TIMEOUT(30));


/* ---- the built-in classes ------------------------------------------------------ */

Test(exceptions, builtin_hierarchy)
{
    static const struct { PyObject **exc; const char *name; PyObject **base; } table[] = {
        { &PyExc_BaseException, "BaseException", NULL },
        { &PyExc_Exception, "Exception", &PyExc_BaseException },
        { &PyExc_ArithmeticError, "ArithmeticError", &PyExc_Exception },
        { &PyExc_OverflowError, "OverflowError", &PyExc_ArithmeticError },
        { &PyExc_ZeroDivisionError, "ZeroDivisionError", &PyExc_ArithmeticError },
        { &PyExc_AttributeError, "AttributeError", &PyExc_Exception },
        { &PyExc_LookupError, "LookupError", &PyExc_Exception },
        { &PyExc_IndexError, "IndexError", &PyExc_LookupError },
        { &PyExc_KeyError, "KeyError", &PyExc_LookupError },
        { &PyExc_MemoryError, "MemoryError", &PyExc_Exception },
        { &PyExc_RuntimeError, "RuntimeError", &PyExc_Exception },
        { &PyExc_StopIteration, "StopIteration", &PyExc_Exception },
        { &PyExc_SystemError, "SystemError", &PyExc_Exception },
        { &PyExc_TypeError, "TypeError", &PyExc_Exception },
        { &PyExc_ValueError, "ValueError", &PyExc_Exception },
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        PyObject *e = *table[i].exc;
        PyTypeObject *t = (PyTypeObject *)e;
        cr_assert_not_null(e);
        cr_assert(PyExceptionClass_Check(e), "%s", table[i].name);
        cr_assert_str_eq(t->tp_name, table[i].name);
        PyTypeObject *want_base = table[i].base ? (PyTypeObject *)*table[i].base
                                                : &PyBaseObject_Type;
        cr_assert_eq(t->tp_base, want_base, "%s's base is %s", table[i].name,
                     t->tp_base ? t->tp_base->tp_name : "NULL");
        cr_assert(t->tp_flags & Py_TPFLAGS_READY);
        cr_assert(t->tp_flags & Py_TPFLAGS_BASETYPE);
        cr_assert(t->tp_flags & Py_TPFLAGS_BASE_EXC_SUBCLASS);
        cr_assert_eq(t->tp_basicsize, (Py_ssize_t)sizeof(PyBaseExceptionObject));
        cr_assert_eq(Py_REFCNT(e), _Py_IMMORTAL_REFCNT);
        cr_assert(PyType_IsSubtype(t, (PyTypeObject *)PyExc_BaseException));
        cr_assert_eq(PyType_IsSubtype(t, (PyTypeObject *)PyExc_Exception),
                     e != PyExc_BaseException);
        /* distinct classes */
        for (size_t j = 0; j < i; j++) {
            cr_assert_neq(*table[j].exc, e);
        }
    }
    /* through a volatile: GCC 12's -Warray-bounds otherwise trips over the
     * guarded (PyTypeObject *) cast of a PyObject it can see the size of */
    PyObject *volatile none = Py_None;
    cr_assert_not(PyExceptionClass_Check(none));
    cr_assert_not(PyExceptionClass_Check((PyObject *)&PyBool_Type));
}

Test(exceptions, instances_and_messages)
{
    PyErr_SetString(PyExc_ZeroDivisionError, "division by zero");
    PyObject *e = PyErr_GetRaisedException();
    cr_assert_not_null(e);
    cr_assert(PyExceptionInstance_Check(e));
    cr_assert_not(PyExceptionClass_Check(e));
    cr_assert_str_eq(PyException_GetMessageUTF8(e), "division by zero");
    PyBaseExceptionObject *be = (PyBaseExceptionObject *)e;
    cr_assert_null(be->args);
    cr_assert_null(be->context);
    cr_assert_eq(Py_REFCNT(e), 1);
    Py_DECREF(e);

    PyObject *n = ft_exception_new((PyTypeObject *)PyExc_KeyError, NULL, 0);
    cr_assert_not_null(n);
    cr_assert_str_eq(PyException_GetMessageUTF8(n), "", "no message reads as empty");
    Py_DECREF(n);
    /* an embedded length, not a C string: only len bytes are kept */
    n = ft_exception_new((PyTypeObject *)PyExc_KeyError, "abcdef", 3);
    cr_assert_str_eq(PyException_GetMessageUTF8(n), "abc");
    Py_DECREF(n);

    cr_assert_null(PyException_GetMessageUTF8(Py_None));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    cr_assert_null(PyException_GetMessageUTF8(NULL));
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
    cr_assert_null(PyException_GetMessageUTF8(PyExc_KeyError), "a class is not an instance");
    test_expect_error(PyExc_SystemError, "bad argument to internal function");
}

Test(exceptions, static_memory_error_instance)
{
    PyObject *m = (PyObject *)&ft_memory_error_instance;
    cr_assert_eq(Py_TYPE(m), (PyTypeObject *)PyExc_MemoryError);
    cr_assert_eq(Py_REFCNT(m), _Py_IMMORTAL_REFCNT);
    cr_assert_str_eq(PyException_GetMessageUTF8(m), "");
    PyErr_NoMemory();
    cr_assert(PyErr_ExceptionMatches(PyExc_Exception));
    PyObject *got = PyErr_GetRaisedException();
    cr_assert_eq(got, m);
    Py_DECREF(got);
    cr_assert_eq(Py_REFCNT(m), _Py_IMMORTAL_REFCNT);
}

/* ---- user exception classes --------------------------------------------------------- */

typedef struct {
    PyBaseExceptionObject base;
    long code;
    PyObject *extra;
} my_error_object;

static atomic_long my_frees;

static void
counting_free(void *p)
{
    atomic_fetch_add(&my_frees, 1);
    PyObject_Free(p);
}

static void
counting_gc_free(void *p)
{
    atomic_fetch_add(&my_frees, 1);
    PyObject_GC_Del(p);
}

static int
my_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((my_error_object *)self)->extra);
    return 0;
}

Test(exceptions, user_exception_from_spec)
{
    PyType_Slot slots[] = { { Py_tp_free, TEST_FP(counting_free) }, { 0, NULL } };
    PyType_Spec spec = { "mymod.MyError", sizeof(my_error_object), 0,
                         Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots };
    PyObject *my = PyType_FromSpecWithBases(&spec, PyExc_ValueError);
    cr_assert_not_null(my);
    cr_assert(PyExceptionClass_Check(my));
    cr_assert(PyErr_GivenExceptionMatches(my, PyExc_ValueError));
    cr_assert(PyErr_GivenExceptionMatches(my, PyExc_Exception));
    cr_assert_not(PyErr_GivenExceptionMatches(my, PyExc_TypeError));
    atomic_store(&my_frees, 0);
    for (int i = 0; i < 20; i++) {
        PyErr_Format(my, "failure number %d", i);
        cr_assert_eq(PyErr_Occurred(), my);
        cr_assert(PyErr_ExceptionMatches(PyExc_ValueError));
        PyObject *e = PyErr_GetRaisedException();
        char want[64];
        snprintf(want, sizeof want, "failure number %d", i);
        cr_assert_str_eq(PyException_GetMessageUTF8(e), want);
        my_error_object *me = (my_error_object *)e;
        cr_assert_eq(me->code, 0, "the extra fields start zeroed");
        cr_assert_null(me->extra);
        me->code = 0x7777;   /* dirty the memory for reuse */
        Py_DECREF(e);
    }
    cr_assert_eq(atomic_load(&my_frees), 20, "every instance freed through the shared dealloc");

    /* basicsize 0: the base's; a subclass of the user class */
    PyType_Slot sub_slots[] = { { Py_tp_base, my }, { 0, NULL } };
    PyType_Spec sub_spec = { "mymod.SubError", 0, 0, Py_TPFLAGS_DEFAULT, sub_slots };
    PyObject *sub = PyType_FromSpec(&sub_spec);
    cr_assert_not_null(sub);
    cr_assert_eq(((PyTypeObject *)sub)->tp_basicsize, (Py_ssize_t)sizeof(my_error_object));
    PyErr_SetString(sub, "deep");
    cr_assert(PyErr_ExceptionMatches(my));
    cr_assert(PyErr_ExceptionMatches(PyExc_ValueError));
    test_expect_error(sub, "deep");
    cr_assert_eq(atomic_load(&my_frees), 21);

    /* smaller than an exception object: refused */
    PyType_Slot none[] = { { 0, NULL } };
    PyType_Spec small = { "mymod.Small", sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT, none };
    cr_assert_null(PyType_FromSpecWithBases(&small, PyExc_Exception));
    test_expect_error(PyExc_TypeError, "is smaller than that of its base 'Exception'");
}

Test(exceptions, user_gc_exception)
{
    PyType_Slot slots[] = { { Py_tp_traverse, TEST_FP(my_traverse) },
                            { Py_tp_free, TEST_FP(counting_gc_free) }, { 0, NULL } };
    PyType_Spec spec = { "mymod.GCError", sizeof(my_error_object), 0,
                         Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, slots };
    PyObject *t = PyType_FromSpecWithBases(&spec, PyExc_RuntimeError);
    cr_assert_not_null(t);
    cr_assert(PyType_HasFeature((PyTypeObject *)t, Py_TPFLAGS_HAVE_GC));
    atomic_store(&my_frees, 0);
    PyErr_SetString(t, "collectable");
    PyObject *e = PyErr_GetRaisedException();
    cr_assert(PyObject_GC_IsTracked(e), "a GC exception is tracked from creation");
    ((my_error_object *)e)->extra = Py_NewRef(Py_True);
    PyErr_SetRaisedException(e);
    PyErr_Clear();
    cr_assert_eq(atomic_load(&my_frees), 1);
}

Test(exceptions, creation_out_of_memory)
{
    /* the message copy or the instance fails: MemoryError, nothing leaks */
    int failures = 0;
    bool done = false;
    for (long n = 1; n < 10 && !done; n++) {
        ft_alloc_fail_after(n);
        PyObject *e = ft_exception_new((PyTypeObject *)PyExc_ValueError, "message", 7);
        ft_alloc_fail_after(0);
        if (e == NULL) {
            cr_assert_eq(PyErr_Occurred(), PyExc_MemoryError);
            PyErr_Clear();
            failures++;
            continue;
        }
        cr_assert_str_eq(PyException_GetMessageUTF8(e), "message");
        Py_DECREF(e);
        done = true;
    }
    cr_assert(done);
    cr_assert_eq(failures, 2, "the copy and the instance");
}

/* ---- an exception handed to another thread --------------------------------------------- */

static PyObject *handoff;          /* written before `handed` is set */
static atomic_int handed, received_ok;

static void *
receiver(void *arg)
{
    (void)arg;
    test_wait_flag(&handed, 10000);
    PyGILState_STATE g = PyGILState_Ensure();
    PyErr_SetRaisedException(handoff);   /* steals the main thread's reference */
    if (PyErr_ExceptionMatches(PyExc_KeyError) &&
        strcmp(PyException_GetMessageUTF8(handoff), "made elsewhere") == 0) {
        atomic_store(&received_ok, 1);
    }
    PyErr_Clear();   /* the last reference, dropped by a thread that does not own it */
    PyGILState_Release(g);
    return NULL;
}

Test(exceptions, raised_in_one_thread_dropped_in_another)
{
    PyType_Slot slots[] = { { Py_tp_free, TEST_FP(counting_free) }, { 0, NULL } };
    PyType_Spec spec = { "mymod.Traveller", 0, 0, Py_TPFLAGS_DEFAULT, slots };
    PyObject *t = PyType_FromSpecWithBases(&spec, PyExc_KeyError);
    cr_assert_not_null(t);
    atomic_store(&my_frees, 0);
    PyErr_SetString(t, "made elsewhere");
    handoff = PyErr_GetRaisedException();
    cr_assert_not_null(handoff);
    pthread_t th = test_start_thread(receiver, NULL);
    atomic_store(&handed, 1);
    PyThreadState *me = PyEval_SaveThread();
    test_join_thread(th);
    PyEval_RestoreThread(me);
    cr_assert(atomic_load(&received_ok));
    /* a non-owner's last decref may be merged at the owner's next safe point */
    bool freed = TEST_POLL_UNTIL((PyErr_CheckSignals(), atomic_load(&my_frees) == 1), 5000);
    cr_assert(freed, "frees: %ld", atomic_load(&my_frees));
}
