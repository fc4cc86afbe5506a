/* Types, singletons, exceptions and the error indicator: the internal side
 * of core/typeobject.c, core/exceptions.c and core/errors.c.
 *
 * Lifecycle: Py_Initialize calls ft_types_init (readies every static type);
 * Py_FinalizeEx calls ft_types_fini last, after everything that could still
 * touch an object (it frees the interpreter's heap types).
 */
#ifndef FT_TYPES_H
#define FT_TYPES_H

#include <stdarg.h>
#include <stddef.h>

#include "ft_core.h"

/* ---- core/typeobject.c ------------------------------------------------- */

/* A type created by PyType_FromSpec.  Immortal from creation; on the
 * interpreter's list until Py_FinalizeEx frees it (see the header of
 * core/typeobject.c for why). */
typedef struct ft_heaptype {
    PyTypeObject type;              /* first: a PyTypeObject * points here */
    PyNumberMethods as_number;      /* the type's suites (CPython's heap types have them too) */
    PySequenceMethods as_sequence;
    PyMappingMethods as_mapping;
    struct ft_heaptype *next;       /* the interpreter's heap_types list */
    char *doc;                      /* owned copy of Py_tp_doc, or NULL */
    size_t size;                    /* bytes allocated, name included */
    char name[];                    /* owned copy of spec->name */
} ft_heaptype;

/* Ready every static type of the runtime (object, type, NoneType,
 * NotImplementedType, int, bool, float, str, the containers, the
 * exceptions); fatal on failure, which would be a bug in ftrt. */
FT_INTERNAL void ft_types_init(void);
/* Free interp's heap types.  Nothing may use them afterwards. */
FT_INTERNAL void ft_types_fini(PyInterpreterState *interp);
/* How many heap types interp holds (tests). */
FT_INTERNAL Py_ssize_t ft_heap_types_count(PyInterpreterState *interp);

/* Truth value as CPython's PyObject_IsTrue decides it for the slots ftrt
 * has: True 1, False and None 0, nb_bool, else mp_length / sq_length != 0,
 * anything else 1; -1 with an exception set if a slot fails. */
FT_INTERNAL int ft_object_is_true(PyObject *v);

/* ---- core/exceptions.c ------------------------------------------------- */

/* The MemoryError instance PyErr_NoMemory sets: static and immortal, so
 * raising it allocates nothing. */
FT_INTERNAL extern PyBaseExceptionObject ft_memory_error_instance;

/* Ready the exception types (ft_types_init calls it). */
FT_INTERNAL int ft_exceptions_init(void);

/* A new instance of the exception class `type` whose message is a copy of
 * msg[0..len) (msg may be NULL: no message).  Created with the type's
 * tp_alloc; tp_new and tp_init are not called (they take an argument tuple,
 * which arrives with the containers issue).  NULL with an exception set
 * (MemoryError) on failure. */
FT_INTERNAL PyObject *ft_exception_new(PyTypeObject *type, const char *msg, size_t len);

/* ---- core/unicodeobject.c ---------------------------------------------- */

/* Ready str and its iterator type (ft_types_init calls it). */
FT_INTERNAL int ft_unicode_init(void);
/* Free the interned strings and the intern table (ft_types_fini calls it;
 * no other thread runs). */
FT_INTERNAL void ft_unicode_fini(void);
/* How many strings are interned (tests). */
FT_INTERNAL Py_ssize_t ft_unicode_interned_count(void);

/* ---- core/errors.c: the formatter of PyErr_Format and PyUnicode_FromFormatV ---- */

/* Format like PyUnicode_FromFormatV (va is not consumed: the formatter
 * works on a copy).  Returns a PyMem_Raw block of *len bytes plus a NUL
 * (the caller frees it), or NULL with an exception set: MemoryError, the
 * exception a %S/%R/%A conversion raised, SystemError for a bad format. */
FT_INTERNAL char *ft_format_v(const char *format, va_list va, size_t *len);

#endif /* FT_TYPES_H */
