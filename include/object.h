/* Objects and types: the header every object starts with, the type object,
 * and the spec API for heap types (CPython 3.13 names and layout rules).
 *
 * The free-threaded header (32 bytes, CPython 3.13t's layout):
 *
 *   ob_tid        uintptr  the owning thread (its thread pointer, see
 *                          _Py_ThreadId), 0 once merged or immortal
 *   ob_flags      uint16   _Py_STATICALLY_ALLOCATED_FLAG, ...
 *   ob_mutex      PyMutex  the object's lock (critical sections)
 *   ob_gc_bits    uint8    _PyGC_BITS_* (internal)
 *   ob_ref_local  uint32   the owner's count, no atomics; UINT32_MAX = immortal
 *   ob_ref_shared ssize    every other thread's count, atomic; the low two
 *                          bits are flags (refcount.h), one reference = 4
 *   ob_type
 *
 * The GIL build's header is CPython's classic one (16 bytes): ob_refcnt,
 * ob_type.  Code that uses the macros below (Py_TYPE, Py_REFCNT, Py_INCREF,
 * PyObject_HEAD) compiles unchanged against both.
 */
#ifndef Py_OBJECT_H
#define Py_OBJECT_H

#include <stdio.h>

#include "pyport.h"
#include "lock.h"

typedef struct _object PyObject;
typedef struct _typeobject PyTypeObject;

#ifdef Py_GIL_DISABLED
struct _object {
    uintptr_t ob_tid;
    uint16_t ob_flags;
    PyMutex ob_mutex;
    uint8_t ob_gc_bits;
    uint32_t ob_ref_local;
    Py_ssize_t ob_ref_shared;
    PyTypeObject *ob_type;
};
#else
struct _object {
    Py_ssize_t ob_refcnt;
    PyTypeObject *ob_type;
};
#endif

typedef struct {
    PyObject ob_base;
    Py_ssize_t ob_size;   /* number of items in the variable part */
} PyVarObject;

#define PyObject_HEAD      PyObject ob_base;
#define PyObject_VAR_HEAD  PyVarObject ob_base;

/* ob_flags */
#define _Py_STATICALLY_ALLOCATED_FLAG 1

/* Statically allocated objects (types, None, True, False) are immortal.
 * _PyObject_HEAD_INIT is the bare initialiser, for a PyObject itself
 * (PyObject _Py_NoneStruct = _PyObject_HEAD_INIT(&_PyNone_Type);). */
#ifdef Py_GIL_DISABLED
#define _PyObject_HEAD_INIT(type)                                           \
    { 0, _Py_STATICALLY_ALLOCATED_FLAG, { 0 }, 0, UINT32_MAX, 0, (type) }
#else
#define _PyObject_HEAD_INIT(type) { _Py_IMMORTAL_INITIAL_REFCNT, (type) }
#endif
#define PyObject_HEAD_INIT(type) _PyObject_HEAD_INIT(type),
#define PyVarObject_HEAD_INIT(type, size) { PyObject_HEAD_INIT(type) (size) },

#define _PyObject_CAST(op)    ((PyObject *)(op))
#define _PyVarObject_CAST(op) ((PyVarObject *)(op))

static inline PyTypeObject *Py_TYPE(PyObject *ob) { return ob->ob_type; }
#define Py_TYPE(ob) Py_TYPE(_PyObject_CAST(ob))
static inline Py_ssize_t Py_SIZE(PyObject *ob) { return _PyVarObject_CAST(ob)->ob_size; }
#define Py_SIZE(ob) Py_SIZE(_PyObject_CAST(ob))
static inline void Py_SET_TYPE(PyObject *ob, PyTypeObject *type) { ob->ob_type = type; }
#define Py_SET_TYPE(ob, type) Py_SET_TYPE(_PyObject_CAST(ob), (type))
static inline void Py_SET_SIZE(PyVarObject *ob, Py_ssize_t size) { ob->ob_size = size; }
#define Py_SET_SIZE(ob, size) Py_SET_SIZE(_PyVarObject_CAST(ob), (size))
static inline int Py_IS_TYPE(PyObject *ob, PyTypeObject *type) { return Py_TYPE(ob) == type; }
#define Py_IS_TYPE(ob, type) Py_IS_TYPE(_PyObject_CAST(ob), (type))

/* ---- the type object ----------------------------------------------------- */

typedef void (*destructor)(PyObject *);
typedef int (*visitproc)(PyObject *, void *);
typedef int (*traverseproc)(PyObject *, visitproc, void *);
typedef int (*inquiry)(PyObject *);
typedef void (*freefunc)(void *);
typedef PyObject *(*unaryfunc)(PyObject *);
typedef PyObject *(*binaryfunc)(PyObject *, PyObject *);
typedef PyObject *(*ternaryfunc)(PyObject *, PyObject *, PyObject *);
typedef Py_ssize_t (*lenfunc)(PyObject *);
typedef PyObject *(*ssizeargfunc)(PyObject *, Py_ssize_t);
typedef PyObject *(*ssizessizeargfunc)(PyObject *, Py_ssize_t, Py_ssize_t);
typedef int (*ssizeobjargproc)(PyObject *, Py_ssize_t, PyObject *);
typedef int (*ssizessizeobjargproc)(PyObject *, Py_ssize_t, Py_ssize_t, PyObject *);
typedef int (*objobjargproc)(PyObject *, PyObject *, PyObject *);
typedef int (*objobjproc)(PyObject *, PyObject *);
typedef PyObject *(*reprfunc)(PyObject *);
typedef Py_ssize_t Py_hash_t;
typedef size_t Py_uhash_t;
typedef Py_hash_t (*hashfunc)(PyObject *);
typedef PyObject *(*richcmpfunc)(PyObject *, PyObject *, int);
typedef PyObject *(*getattrfunc)(PyObject *, char *);
typedef int (*setattrfunc)(PyObject *, char *, PyObject *);
typedef PyObject *(*getattrofunc)(PyObject *, PyObject *);
typedef int (*setattrofunc)(PyObject *, PyObject *, PyObject *);
typedef PyObject *(*getiterfunc)(PyObject *);
typedef PyObject *(*iternextfunc)(PyObject *);
typedef PyObject *(*descrgetfunc)(PyObject *, PyObject *, PyObject *);
typedef int (*descrsetfunc)(PyObject *, PyObject *, PyObject *);
typedef int (*initproc)(PyObject *, PyObject *, PyObject *);
typedef PyObject *(*newfunc)(PyTypeObject *, PyObject *, PyObject *);
typedef PyObject *(*allocfunc)(PyTypeObject *, Py_ssize_t);
typedef PyObject *(*vectorcallfunc)(PyObject *callable, PyObject *const *args,
                                    size_t nargsf, PyObject *kwnames);

/* The method suites, CPython's members in CPython's order (positional
 * initialisers written for CPython fill the same slots here).  A slot ftrt
 * does not call yet is kept so that such code compiles; docs/objects.md
 * lists which ones the runtime uses. */
typedef struct {
    binaryfunc nb_add;
    binaryfunc nb_subtract;
    binaryfunc nb_multiply;
    binaryfunc nb_remainder;
    binaryfunc nb_divmod;
    ternaryfunc nb_power;
    unaryfunc nb_negative;
    unaryfunc nb_positive;
    unaryfunc nb_absolute;
    inquiry nb_bool;
    unaryfunc nb_invert;
    binaryfunc nb_lshift;
    binaryfunc nb_rshift;
    binaryfunc nb_and;
    binaryfunc nb_xor;
    binaryfunc nb_or;
    unaryfunc nb_int;
    void *nb_reserved;
    unaryfunc nb_float;
    binaryfunc nb_inplace_add;
    binaryfunc nb_inplace_subtract;
    binaryfunc nb_inplace_multiply;
    binaryfunc nb_inplace_remainder;
    ternaryfunc nb_inplace_power;
    binaryfunc nb_inplace_lshift;
    binaryfunc nb_inplace_rshift;
    binaryfunc nb_inplace_and;
    binaryfunc nb_inplace_xor;
    binaryfunc nb_inplace_or;
    binaryfunc nb_floor_divide;
    binaryfunc nb_true_divide;
    binaryfunc nb_inplace_floor_divide;
    binaryfunc nb_inplace_true_divide;
    unaryfunc nb_index;
    binaryfunc nb_matrix_multiply;
    binaryfunc nb_inplace_matrix_multiply;
} PyNumberMethods;

typedef struct {
    lenfunc sq_length;
    binaryfunc sq_concat;
    ssizeargfunc sq_repeat;
    ssizeargfunc sq_item;
    void *was_sq_slice;
    ssizeobjargproc sq_ass_item;
    void *was_sq_ass_slice;
    objobjproc sq_contains;
    binaryfunc sq_inplace_concat;
    ssizeargfunc sq_inplace_repeat;
} PySequenceMethods;

typedef struct {
    lenfunc mp_length;
    binaryfunc mp_subscript;
    objobjargproc mp_ass_subscript;
} PyMappingMethods;

typedef struct {
    unaryfunc am_await;
    unaryfunc am_aiter;
    unaryfunc am_anext;
    void *am_send;
} PyAsyncMethods;

/* Not provided by ftrt (no buffer protocol, no method/member/getset
 * descriptors yet): pointers to them may be declared and left NULL. */
typedef struct PyBufferProcs PyBufferProcs;
typedef struct PyMethodDef PyMethodDef;
typedef struct PyMemberDef PyMemberDef;
typedef struct PyGetSetDef PyGetSetDef;

/* CPython 3.13's type object, member for member and in the same order, so
 * both designated and positional initialisers written for CPython compile
 * and fill the same slots.  Members marked "unused" are accepted and
 * ignored for now. */
struct _typeobject {
    PyObject_VAR_HEAD
    const char *tp_name;
    Py_ssize_t tp_basicsize, tp_itemsize;
    destructor tp_dealloc;
    Py_ssize_t tp_vectorcall_offset;     /* unused */
    getattrfunc tp_getattr;              /* unused */
    setattrfunc tp_setattr;              /* unused */
    PyAsyncMethods *tp_as_async;         /* unused */
    reprfunc tp_repr;
    PyNumberMethods *tp_as_number;
    PySequenceMethods *tp_as_sequence;
    PyMappingMethods *tp_as_mapping;
    hashfunc tp_hash;
    ternaryfunc tp_call;
    reprfunc tp_str;
    getattrofunc tp_getattro;
    setattrofunc tp_setattro;
    PyBufferProcs *tp_as_buffer;         /* unused */
    unsigned long tp_flags;
    const char *tp_doc;
    traverseproc tp_traverse;
    inquiry tp_clear;
    richcmpfunc tp_richcompare;
    Py_ssize_t tp_weaklistoffset;        /* unused (no weak references yet) */
    getiterfunc tp_iter;
    iternextfunc tp_iternext;
    PyMethodDef *tp_methods;
    PyMemberDef *tp_members;
    PyGetSetDef *tp_getset;
    PyTypeObject *tp_base;
    PyObject *tp_dict;
    descrgetfunc tp_descr_get;           /* unused */
    descrsetfunc tp_descr_set;           /* unused */
    Py_ssize_t tp_dictoffset;            /* unused */
    initproc tp_init;
    allocfunc tp_alloc;
    newfunc tp_new;
    freefunc tp_free;
    inquiry tp_is_gc;
    PyObject *tp_bases;
    PyObject *tp_mro;
    PyObject *tp_cache;
    void *tp_subclasses;
    PyObject *tp_weaklist;
    destructor tp_del;
    unsigned int tp_version_tag;
    destructor tp_finalize;
    vectorcallfunc tp_vectorcall;        /* unused */
    unsigned char tp_watched;
    uint16_t tp_versions_used;
};

/* tp_flags (CPython's bit numbers) */
#define Py_TPFLAGS_HAVE_FINALIZE    (1UL << 0)   /* ignored, as in CPython 3.8+ */
#define Py_TPFLAGS_STATIC_BUILTIN   (1UL << 1)   /* ftrt: a runtime-owned static type */
#define Py_TPFLAGS_MANAGED_DICT     (1UL << 4)
#define Py_TPFLAGS_DISALLOW_INSTANTIATION (1UL << 7)   /* tp_new stays NULL */
#define Py_TPFLAGS_IMMUTABLETYPE    (1UL << 8)
#define Py_TPFLAGS_HEAPTYPE         (1UL << 9)
#define Py_TPFLAGS_BASETYPE         (1UL << 10)
#define Py_TPFLAGS_READY            (1UL << 12)
#define Py_TPFLAGS_READYING         (1UL << 13)
#define Py_TPFLAGS_HAVE_GC          (1UL << 14)
#define Py_TPFLAGS_HAVE_VERSION_TAG (1UL << 18)
#define Py_TPFLAGS_LONG_SUBCLASS      (1UL << 24)
#define Py_TPFLAGS_LIST_SUBCLASS      (1UL << 25)
#define Py_TPFLAGS_TUPLE_SUBCLASS     (1UL << 26)
#define Py_TPFLAGS_BYTES_SUBCLASS     (1UL << 27)
#define Py_TPFLAGS_UNICODE_SUBCLASS   (1UL << 28)
#define Py_TPFLAGS_DICT_SUBCLASS      (1UL << 29)
#define Py_TPFLAGS_BASE_EXC_SUBCLASS  (1UL << 30)
#define Py_TPFLAGS_TYPE_SUBCLASS      (1UL << 31)
#define Py_TPFLAGS_DEFAULT Py_TPFLAGS_HAVE_VERSION_TAG

static inline int PyType_HasFeature(PyTypeObject *type, unsigned long feature)
{
    return (type->tp_flags & feature) != 0;
}
#define PyType_FastSubclass(type, flag) PyType_HasFeature((type), (flag))

/* Rich comparison opcodes */
#define Py_LT 0
#define Py_LE 1
#define Py_EQ 2
#define Py_NE 3
#define Py_GT 4
#define Py_GE 5

/* Heap types from a spec (PEP 384). */
typedef struct {
    int slot;      /* Py_tp_* below */
    void *pfunc;
} PyType_Slot;

typedef struct {
    const char *name;
    int basicsize;
    int itemsize;
    unsigned int flags;
    PyType_Slot *slots;   /* terminated by {0, NULL} */
} PyType_Spec;

/* Slot ids: CPython's typeslots.h numbers, all of them (specs written for
 * CPython compile).  PyType_FromSpec raises SystemError for a slot ftrt's
 * types cannot take (buffer, async, methods/members/getset, tp_getattr,
 * ...) and RuntimeError for an id CPython does not know either, as CPython
 * does. */
#define Py_bf_getbuffer                  1
#define Py_bf_releasebuffer              2
#define Py_mp_ass_subscript              3
#define Py_mp_length                     4
#define Py_mp_subscript                  5
#define Py_nb_absolute                   6
#define Py_nb_add                        7
#define Py_nb_and                        8
#define Py_nb_bool                       9
#define Py_nb_divmod                     10
#define Py_nb_float                      11
#define Py_nb_floor_divide               12
#define Py_nb_index                      13
#define Py_nb_inplace_add                14
#define Py_nb_inplace_and                15
#define Py_nb_inplace_floor_divide       16
#define Py_nb_inplace_lshift             17
#define Py_nb_inplace_multiply           18
#define Py_nb_inplace_or                 19
#define Py_nb_inplace_power              20
#define Py_nb_inplace_remainder          21
#define Py_nb_inplace_rshift             22
#define Py_nb_inplace_subtract           23
#define Py_nb_inplace_true_divide        24
#define Py_nb_inplace_xor                25
#define Py_nb_int                        26
#define Py_nb_invert                     27
#define Py_nb_lshift                     28
#define Py_nb_multiply                   29
#define Py_nb_negative                   30
#define Py_nb_or                         31
#define Py_nb_positive                   32
#define Py_nb_power                      33
#define Py_nb_remainder                  34
#define Py_nb_rshift                     35
#define Py_nb_subtract                   36
#define Py_nb_true_divide                37
#define Py_nb_xor                        38
#define Py_sq_ass_item                   39
#define Py_sq_concat                     40
#define Py_sq_contains                   41
#define Py_sq_inplace_concat             42
#define Py_sq_inplace_repeat             43
#define Py_sq_item                       44
#define Py_sq_length                     45
#define Py_sq_repeat                     46
#define Py_tp_alloc                      47
#define Py_tp_base                       48
#define Py_tp_bases                      49
#define Py_tp_call                       50
#define Py_tp_clear                      51
#define Py_tp_dealloc                    52
#define Py_tp_del                        53
#define Py_tp_descr_get                  54
#define Py_tp_descr_set                  55
#define Py_tp_doc                        56
#define Py_tp_getattr                    57
#define Py_tp_getattro                   58
#define Py_tp_hash                       59
#define Py_tp_init                       60
#define Py_tp_is_gc                      61
#define Py_tp_iter                       62
#define Py_tp_iternext                   63
#define Py_tp_methods                    64
#define Py_tp_new                        65
#define Py_tp_repr                       66
#define Py_tp_richcompare                67
#define Py_tp_setattr                    68
#define Py_tp_setattro                   69
#define Py_tp_str                        70
#define Py_tp_traverse                   71
#define Py_tp_members                    72
#define Py_tp_getset                     73
#define Py_tp_free                       74
#define Py_nb_matrix_multiply            75
#define Py_nb_inplace_matrix_multiply    76
#define Py_am_await                      77
#define Py_am_aiter                      78
#define Py_am_anext                      79
#define Py_tp_finalize                   80
#define Py_am_send                       81

PyAPI_DATA(PyTypeObject) PyType_Type;
PyAPI_DATA(PyTypeObject) PyBaseObject_Type;

PyAPI_FUNC(int) PyType_Ready(PyTypeObject *type);
PyAPI_FUNC(PyObject *) PyType_FromSpec(PyType_Spec *spec);
PyAPI_FUNC(PyObject *) PyType_FromSpecWithBases(PyType_Spec *spec, PyObject *bases);
PyAPI_FUNC(void *) PyType_GetSlot(PyTypeObject *type, int slot);
PyAPI_FUNC(int) PyType_IsSubtype(PyTypeObject *a, PyTypeObject *b);
PyAPI_FUNC(unsigned long) PyType_GetFlags(PyTypeObject *type);
PyAPI_FUNC(PyObject *) PyType_GenericAlloc(PyTypeObject *type, Py_ssize_t nitems);
PyAPI_FUNC(PyObject *) PyType_GenericNew(PyTypeObject *type, PyObject *args, PyObject *kwds);

static inline int
PyObject_TypeCheck(PyObject *ob, PyTypeObject *type)
{
    return Py_IS_TYPE(ob, type) || PyType_IsSubtype(Py_TYPE(ob), type);
}
#define PyObject_TypeCheck(ob, type) PyObject_TypeCheck(_PyObject_CAST(ob), (type))
#define PyType_Check(op) PyType_FastSubclass(Py_TYPE(op), Py_TPFLAGS_TYPE_SUBCLASS)
#define PyType_CheckExact(op) Py_IS_TYPE((op), &PyType_Type)

/* Generic object protocol (what the object core provides). */
PyAPI_FUNC(PyObject *) PyObject_Repr(PyObject *o);
PyAPI_FUNC(PyObject *) PyObject_Str(PyObject *o);
/* The recursion guard of container reprs (core/object.c).  Py_ReprEnter:
 * 0 and obj recorded as being repr'd on this thread, 1 if it already is
 * (print "[...]" and do not call Py_ReprLeave), -1 with an exception
 * (MemoryError).  Py_ReprLeave removes obj; it never fails and keeps the
 * pending exception.  Without a thread state both do nothing (Enter: 0). */
PyAPI_FUNC(int) Py_ReprEnter(PyObject *obj);
PyAPI_FUNC(void) Py_ReprLeave(PyObject *obj);
/* Write repr(o) (str(o) with Py_PRINT_RAW) to fp; 0, or -1 with an
 * exception set (OSError for a write error). */
#define Py_PRINT_RAW 1
PyAPI_FUNC(int) PyObject_Print(PyObject *o, FILE *fp, int flags);
PyAPI_FUNC(Py_hash_t) PyObject_Hash(PyObject *o);
PyAPI_FUNC(Py_hash_t) PyObject_HashNotImplemented(PyObject *o);
PyAPI_FUNC(PyObject *) PyObject_RichCompare(PyObject *a, PyObject *b, int op);
PyAPI_FUNC(int) PyObject_RichCompareBool(PyObject *a, PyObject *b, int op);
PyAPI_FUNC(int) PyCallable_Check(PyObject *o);

/* tp_finalize callers (PEP 442).  PyObject_CallFinalizer runs tp_finalize
 * once per object (GC objects are marked finalized); FromDealloc is for a
 * tp_dealloc: it resurrects the object around the call and returns -1 if
 * the finalizer kept it alive (the dealloc must then return at once), 0
 * otherwise. */
PyAPI_FUNC(void) PyObject_CallFinalizer(PyObject *self);
PyAPI_FUNC(int) PyObject_CallFinalizerFromDealloc(PyObject *self);

/* ---- singletons ------------------------------------------------------- */

PyAPI_DATA(PyObject) _Py_NoneStruct;
PyAPI_DATA(PyObject) _Py_NotImplementedStruct;
#define Py_None (&_Py_NoneStruct)
#define Py_NotImplemented (&_Py_NotImplementedStruct)

static inline int Py_Is(PyObject *x, PyObject *y) { return x == y; }
#define Py_Is(x, y) Py_Is(_PyObject_CAST(x), _PyObject_CAST(y))
#define Py_IsNone(x) Py_Is((x), Py_None)

/* ---- GC support: traversal ------------------------------------------------ */

#define Py_VISIT(op)                                                        \
    do {                                                                    \
        if (op) {                                                           \
            int vret_ = visit(_PyObject_CAST(op), arg);                     \
            if (vret_) {                                                    \
                return vret_;                                               \
            }                                                               \
        }                                                                   \
    } while (0)

#include "refcount.h"

#define Py_RETURN_NONE return Py_None
#define Py_RETURN_NOTIMPLEMENTED return Py_NotImplemented

#endif /* Py_OBJECT_H */
