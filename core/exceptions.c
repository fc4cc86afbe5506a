/* Exception types and objects.
 *
 * The built-in exception types are static, immortal PyTypeObjects with
 * CPython's names and hierarchy (the part of it ftrt has):
 *
 *   BaseException
 *    +-- Exception
 *         +-- ArithmeticError
 *         |    +-- OverflowError
 *         |    +-- ZeroDivisionError
 *         +-- AttributeError
 *         +-- LookupError
 *         |    +-- IndexError
 *         |    +-- KeyError
 *         +-- MemoryError
 *         +-- OSError
 *         +-- RuntimeError
 *         +-- StopIteration
 *         +-- SystemError
 *         +-- TypeError
 *         +-- ValueError
 *              +-- UnicodeError
 *                   +-- UnicodeDecodeError  (a message only: no encoding,
 *                                            object, start, end attributes)
 *
 * An instance is a PyBaseExceptionObject: the header and an owned UTF-8
 * message (a PyMem_Raw block, so an exception may be dropped by a thread
 * with no attached state).  args and context stay NULL until tuples and
 * exception chaining exist; for the same reason the types are not GC types
 * (an exception references nothing that could form a cycle).  A heap type
 * created by PyType_FromSpec with an exception base is an exception class
 * like any other; if it asks for Py_TPFLAGS_HAVE_GC (with a tp_traverse),
 * its instances are GC objects and the shared dealloc untracks them.
 *
 * PyErr_NoMemory must work with the heap exhausted, so MemoryError has one
 * static, immortal instance (ft_memory_error_instance) that is raised
 * without allocating.
 *
 * Concurrency: the types are read-only once readied (Py_Initialize readies
 * them before any other thread can run); an instance is private to the
 * thread that raised it until it hands it on, like any other object.
 */
#include <string.h>

#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_types.h"

static void
BaseException_dealloc(PyObject *self)
{
    PyBaseExceptionObject *e = (PyBaseExceptionObject *)self;
    if (PyObject_IS_GC(self)) {
        PyObject_GC_UnTrack(self);
    }
    PyMem_RawFree(e->msg);
    e->msg = NULL;
    Py_CLEAR(e->args);
    Py_CLEAR(e->context);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *
BaseException_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;   /* ignored until argument tuples exist */
    (void)kwds;
    return type->tp_alloc(type, 0);
}

/* Every static exception type: the same layout and slots, a name, a base. */
#define EXCEPTION_TYPE(NAME, BASE, DOC)                                     \
    static PyTypeObject exc_##NAME = {                                      \
        PyVarObject_HEAD_INIT(&PyType_Type, 0)                              \
        .tp_name = #NAME,                                                   \
        .tp_basicsize = sizeof(PyBaseExceptionObject),                      \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE |              \
                    Py_TPFLAGS_BASE_EXC_SUBCLASS | Py_TPFLAGS_STATIC_BUILTIN, \
        .tp_doc = DOC,                                                      \
        .tp_base = BASE,                                                    \
    };                                                                      \
    PyObject *PyExc_##NAME = (PyObject *)&exc_##NAME

static PyTypeObject exc_BaseException = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "BaseException",
    .tp_basicsize = sizeof(PyBaseExceptionObject),
    .tp_dealloc = BaseException_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_BASE_EXC_SUBCLASS |
                Py_TPFLAGS_STATIC_BUILTIN,
    .tp_doc = "Common base class for all exceptions",
    .tp_base = &PyBaseObject_Type,
    .tp_new = BaseException_new,
};
PyObject *PyExc_BaseException = (PyObject *)&exc_BaseException;

EXCEPTION_TYPE(Exception, &exc_BaseException,
               "Common base class for all non-exit exceptions.");
EXCEPTION_TYPE(ArithmeticError, &exc_Exception, "Base class for arithmetic errors.");
EXCEPTION_TYPE(OverflowError, &exc_ArithmeticError, "Result too large to be represented.");
EXCEPTION_TYPE(ZeroDivisionError, &exc_ArithmeticError,
               "Second argument to a division or modulo operation was zero.");
EXCEPTION_TYPE(AttributeError, &exc_Exception, "Attribute not found.");
EXCEPTION_TYPE(LookupError, &exc_Exception, "Base class for lookup errors.");
EXCEPTION_TYPE(IndexError, &exc_LookupError, "Sequence index out of range.");
EXCEPTION_TYPE(KeyError, &exc_LookupError, "Mapping key not found.");
EXCEPTION_TYPE(MemoryError, &exc_Exception, "Out of memory.");
EXCEPTION_TYPE(OSError, &exc_Exception, "Base class for I/O related errors.");
EXCEPTION_TYPE(RuntimeError, &exc_Exception, "Unspecified run-time error.");
EXCEPTION_TYPE(StopIteration, &exc_Exception, "Signal the end from iterator.__next__().");
EXCEPTION_TYPE(SystemError, &exc_Exception,
               "Internal error in the Python interpreter.");
EXCEPTION_TYPE(TypeError, &exc_Exception, "Inappropriate argument type.");
EXCEPTION_TYPE(ValueError, &exc_Exception, "Inappropriate argument value (of correct type).");
EXCEPTION_TYPE(UnicodeError, &exc_ValueError, "Unicode related error.");
EXCEPTION_TYPE(UnicodeDecodeError, &exc_UnicodeError, "Unicode decoding error.");

PyBaseExceptionObject ft_memory_error_instance = {
    PyObject_HEAD_INIT(&exc_MemoryError)
    .msg = NULL,
};

int
ft_exceptions_init(void)
{
    /* Bases before subclasses, though PyType_Ready would ready them anyway. */
    PyTypeObject *types[] = {
        &exc_BaseException, &exc_Exception, &exc_ArithmeticError, &exc_OverflowError,
        &exc_ZeroDivisionError, &exc_AttributeError, &exc_LookupError, &exc_IndexError,
        &exc_KeyError, &exc_MemoryError, &exc_RuntimeError, &exc_StopIteration,
        &exc_SystemError, &exc_TypeError, &exc_ValueError, &exc_UnicodeError,
        &exc_UnicodeDecodeError, &exc_OSError,
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (PyType_Ready(types[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

PyObject *
ft_exception_new(PyTypeObject *type, const char *msg, size_t len)
{
    char *copy = NULL;
    if (msg != NULL) {
        copy = PyMem_RawMalloc(len + 1);
        if (copy == NULL) {
            return PyErr_NoMemory();
        }
        memcpy(copy, msg, len);
        copy[len] = '\0';
    }
    PyObject *exc = type->tp_alloc(type, 0);
    if (exc == NULL) {
        PyMem_RawFree(copy);
        return NULL;
    }
    ((PyBaseExceptionObject *)exc)->msg = copy;
    return exc;
}

const char *
PyException_GetMessageUTF8(PyObject *exc)
{
    if (exc == NULL || !PyExceptionInstance_Check(exc)) {
        PyErr_BadInternalCall();
        return NULL;
    }
    const char *msg = ((PyBaseExceptionObject *)exc)->msg;
    return msg != NULL ? msg : "";
}
