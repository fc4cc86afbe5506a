/* Type objects: PyType_Ready, heap types from a spec, the generic slots, the
 * object protocol the core provides (hash, rich comparison, callable), and
 * the runtime's singletons None and NotImplemented with their types (True
 * and False are ints: core/longobject.c).
 *
 * TYPES ARE IMMORTAL (both builds, one behaviour)
 *   Every instance holds a reference to its type, so a type's count is the
 *   most contended word of a program that allocates one kind of object from
 *   many threads.  ftrt therefore never counts references to types:
 *   - static types are immortal from their static initialiser
 *     (PyObject_HEAD_INIT); PyType_Ready makes a static type immortal if
 *     it was declared without one;
 *   - heap types (PyType_FromSpec*) are made immortal when created and put
 *     on their interpreter's heap_types list; Py_FinalizeEx frees them all
 *     (ft_types_fini), after everything that could still use them.
 *   Instances keep CPython's convention (initialising an instance's header
 *   increfs its type, the default heap-type dealloc decrefs it) so extension
 *   code stays unchanged; on an immortal type both are a load and a branch,
 *   no write.
 *   The GIL build does the same so both builds behave alike; the cost is
 *   that a heap type lives until finalization even if nothing uses it.
 *
 * CONCURRENCY
 *   type_lock (a PyMutex, one for the runtime) serialises PyType_Ready:
 *   only the holder writes a type that is not READY (its slots, flags,
 *   base, header); READYING is set while it works so a tp_base cycle is
 *   detected.  Readers use a type only after PyType_Ready returned, i.e.
 *   after the holder's unlock (release) and their own lock (acquire), or
 *   after a happens-before edge that published the type to them.  Once
 *   READY a type is read-only, so the slots are read with plain loads.
 *   Nothing under the lock allocates or reaches a safe point (errors are
 *   raised after the unlock), so a holder with an attached state runs until
 *   it unlocks: a stop-the-world or a fork (PyOS_BeforeFork stops the world;
 *   in the GIL build the forking thread holds the GIL) never catches a
 *   holder inside, and the lock needs no fork hook.  A waiter parks
 *   detached (PyMutex_Lock).
 *
 *   interp->heap_types is a push-only list: PyType_FromSpec links a fully
 *   built type with a release CAS on the head; nobody reads the list until
 *   ft_types_fini, which runs when every other thread is shut down
 *   (finalization) and takes the head with an acquire exchange.  (The
 *   tests' ft_heap_types_count walks it from an acquire load of the head:
 *   each node's next was written before the release that published it.)
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ft_alloc.h"
#include "ft_object.h"
#include "ft_pystate.h"
#include "ft_types.h"

static PyMutex type_lock;

/* CPython's largest slot id in 3.13 (Py_am_send). */
#define FT_MAX_SLOT_ID 81

/* Where each slot id of a PyType_Spec lands: a member of the type object
 * or of one of its method suites (CPython's typeslots.h numbering).  Slots
 * with no entry are CPython slots ftrt's types cannot take (buffer,
 * async, methods/members/getset descriptors, ...). */
typedef enum { SLOT_NONE, SLOT_TYPE, SLOT_NB, SLOT_SQ, SLOT_MP } slot_where;
typedef struct { uint8_t where; uint16_t offset; } slot_place;

#define TP(m) { SLOT_TYPE, offsetof(PyTypeObject, m) }
#define NB(m) { SLOT_NB, offsetof(PyNumberMethods, m) }
#define SQ(m) { SLOT_SQ, offsetof(PySequenceMethods, m) }
#define MP(m) { SLOT_MP, offsetof(PyMappingMethods, m) }
static const slot_place slot_places[FT_MAX_SLOT_ID + 1] = {
    [Py_mp_ass_subscript] = MP(mp_ass_subscript), [Py_mp_length] = MP(mp_length),
    [Py_mp_subscript] = MP(mp_subscript),
    [Py_nb_absolute] = NB(nb_absolute), [Py_nb_add] = NB(nb_add), [Py_nb_and] = NB(nb_and),
    [Py_nb_bool] = NB(nb_bool), [Py_nb_divmod] = NB(nb_divmod), [Py_nb_float] = NB(nb_float),
    [Py_nb_floor_divide] = NB(nb_floor_divide), [Py_nb_index] = NB(nb_index),
    [Py_nb_inplace_add] = NB(nb_inplace_add), [Py_nb_inplace_and] = NB(nb_inplace_and),
    [Py_nb_inplace_floor_divide] = NB(nb_inplace_floor_divide),
    [Py_nb_inplace_lshift] = NB(nb_inplace_lshift),
    [Py_nb_inplace_multiply] = NB(nb_inplace_multiply), [Py_nb_inplace_or] = NB(nb_inplace_or),
    [Py_nb_inplace_power] = NB(nb_inplace_power),
    [Py_nb_inplace_remainder] = NB(nb_inplace_remainder),
    [Py_nb_inplace_rshift] = NB(nb_inplace_rshift),
    [Py_nb_inplace_subtract] = NB(nb_inplace_subtract),
    [Py_nb_inplace_true_divide] = NB(nb_inplace_true_divide),
    [Py_nb_inplace_xor] = NB(nb_inplace_xor), [Py_nb_int] = NB(nb_int),
    [Py_nb_invert] = NB(nb_invert), [Py_nb_lshift] = NB(nb_lshift),
    [Py_nb_multiply] = NB(nb_multiply), [Py_nb_negative] = NB(nb_negative),
    [Py_nb_or] = NB(nb_or), [Py_nb_positive] = NB(nb_positive), [Py_nb_power] = NB(nb_power),
    [Py_nb_remainder] = NB(nb_remainder), [Py_nb_rshift] = NB(nb_rshift),
    [Py_nb_subtract] = NB(nb_subtract), [Py_nb_true_divide] = NB(nb_true_divide),
    [Py_nb_xor] = NB(nb_xor),
    [Py_nb_matrix_multiply] = NB(nb_matrix_multiply),
    [Py_nb_inplace_matrix_multiply] = NB(nb_inplace_matrix_multiply),
    [Py_sq_ass_item] = SQ(sq_ass_item), [Py_sq_concat] = SQ(sq_concat),
    [Py_sq_contains] = SQ(sq_contains), [Py_sq_inplace_concat] = SQ(sq_inplace_concat),
    [Py_sq_inplace_repeat] = SQ(sq_inplace_repeat), [Py_sq_item] = SQ(sq_item),
    [Py_sq_length] = SQ(sq_length), [Py_sq_repeat] = SQ(sq_repeat),
    [Py_tp_alloc] = TP(tp_alloc), [Py_tp_base] = TP(tp_base), [Py_tp_call] = TP(tp_call),
    [Py_tp_clear] = TP(tp_clear), [Py_tp_dealloc] = TP(tp_dealloc), [Py_tp_doc] = TP(tp_doc),
    [Py_tp_getattro] = TP(tp_getattro), [Py_tp_hash] = TP(tp_hash), [Py_tp_init] = TP(tp_init),
    [Py_tp_is_gc] = TP(tp_is_gc), [Py_tp_iter] = TP(tp_iter),
    [Py_tp_iternext] = TP(tp_iternext), [Py_tp_new] = TP(tp_new), [Py_tp_repr] = TP(tp_repr),
    [Py_tp_richcompare] = TP(tp_richcompare), [Py_tp_setattro] = TP(tp_setattro),
    [Py_tp_str] = TP(tp_str), [Py_tp_traverse] = TP(tp_traverse), [Py_tp_free] = TP(tp_free),
    [Py_tp_finalize] = TP(tp_finalize), [Py_tp_del] = TP(tp_del),
};
#undef TP
#undef NB
#undef SQ
#undef MP

/* The address of the member slot `id` names in type, or NULL if the type
 * has no such suite (or ftrt no such slot).  Every member is pointer-sized
 * (a function pointer, or tp_base / tp_doc). */
static void *
slot_address(PyTypeObject *type, int id)
{
    const slot_place *pl = &slot_places[id];
    char *base = NULL;
    switch (pl->where) {
    case SLOT_TYPE: base = (char *)type; break;
    case SLOT_NB: base = (char *)type->tp_as_number; break;
    case SLOT_SQ: base = (char *)type->tp_as_sequence; break;
    case SLOT_MP: base = (char *)type->tp_as_mapping; break;
    default: return NULL;
    }
    return base ? base + pl->offset : NULL;
}

/* ---- the generic object protocol ----------------------------------------- */

/* Identity hash.  Heap objects are 16-byte aligned (the allocator's
 * alignment), so their low 4 bits carry nothing: rotate them to the top so
 * neighbouring objects differ in the low bits a hash table indexes by (a
 * rotation keeps distinct addresses distinct).  -1 means "error". */
static Py_hash_t
hash_pointer(const void *p)
{
    size_t y = (size_t)p;
    y = (y >> 4) | (y << (8 * sizeof(size_t) - 4));
    Py_hash_t h = (Py_hash_t)y;
    return h == -1 ? -2 : h;
}

static Py_hash_t
object_hash(PyObject *o)
{
    return hash_pointer(o);
}

Py_hash_t
PyObject_HashNotImplemented(PyObject *o)
{
    PyErr_Format(PyExc_TypeError, "unhashable type: '%s'", Py_TYPE(o)->tp_name);
    return -1;
}

Py_hash_t
PyObject_Hash(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    if (tp->tp_hash != NULL) {
        return tp->tp_hash(o);
    }
    /* A static type nobody readied yet has not inherited tp_hash. */
    if (!(tp->tp_flags & Py_TPFLAGS_READY)) {
        if (PyType_Ready(tp) < 0) {
            return -1;
        }
        if (tp->tp_hash != NULL) {
            return tp->tp_hash(o);
        }
    }
    return PyObject_HashNotImplemented(o);
}

int
ft_object_is_true(PyObject *v)
{
    if (v == Py_True) {
        return 1;
    }
    if (v == Py_False || v == Py_None) {
        return 0;
    }
    PyTypeObject *tp = Py_TYPE(v);
    if (tp->tp_as_number != NULL && tp->tp_as_number->nb_bool != NULL) {
        int r = tp->tp_as_number->nb_bool(v);
        return r < 0 ? -1 : r > 0;
    }
    lenfunc len = NULL;
    if (tp->tp_as_mapping != NULL && tp->tp_as_mapping->mp_length != NULL) {
        len = tp->tp_as_mapping->mp_length;
    }
    else if (tp->tp_as_sequence != NULL && tp->tp_as_sequence->sq_length != NULL) {
        len = tp->tp_as_sequence->sq_length;
    }
    if (len != NULL) {
        Py_ssize_t n = len(v);
        return n < 0 ? -1 : n > 0;
    }
    return 1;
}

/* The operation with its operands swapped: a < b is b > a. */
static const int swapped_op[] = { Py_GT, Py_GE, Py_EQ, Py_NE, Py_LT, Py_LE };
static const char *const op_symbol[] = { "<", "<=", "==", "!=", ">", ">=" };

PyObject *
PyObject_RichCompare(PyObject *v, PyObject *w, int op)
{
    if (v == NULL || w == NULL || op < Py_LT || op > Py_GE) {
        if (op < Py_LT || op > Py_GE || !PyErr_Occurred()) {
            PyErr_BadInternalCall();
        }
        return NULL;
    }
    PyTypeObject *vt = Py_TYPE(v), *wt = Py_TYPE(w);
    richcmpfunc f;
    PyObject *res;
    bool reflected_tried = false;
    /* A subclass of v's type gets the first word (it may override). */
    if (vt != wt && PyType_IsSubtype(wt, vt) && (f = wt->tp_richcompare) != NULL) {
        reflected_tried = true;
        res = f(w, v, swapped_op[op]);
        if (res != Py_NotImplemented) {
            return res;
        }
        Py_DECREF(res);
    }
    if ((f = vt->tp_richcompare) != NULL) {
        res = f(v, w, op);
        if (res != Py_NotImplemented) {
            return res;
        }
        Py_DECREF(res);
    }
    if (!reflected_tried && (f = wt->tp_richcompare) != NULL) {
        res = f(w, v, swapped_op[op]);
        if (res != Py_NotImplemented) {
            return res;
        }
        Py_DECREF(res);
    }
    /* Neither side knows: identity for == and !=, an error otherwise. */
    switch (op) {
    case Py_EQ:
        return PyBool_FromLong(v == w);
    case Py_NE:
        return PyBool_FromLong(v != w);
    default:
        PyErr_Format(PyExc_TypeError, "'%s' not supported between instances of '%.100s' and '%.100s'",
                     op_symbol[op], vt->tp_name, wt->tp_name);
        return NULL;
    }
}

int
PyObject_RichCompareBool(PyObject *v, PyObject *w, int op)
{
    /* Identity implies equality (CPython's shortcut, also for containers). */
    if (v == w && v != NULL) {
        if (op == Py_EQ) {
            return 1;
        }
        if (op == Py_NE) {
            return 0;
        }
    }
    PyObject *res = PyObject_RichCompare(v, w, op);
    if (res == NULL) {
        return -1;
    }
    int ok = ft_object_is_true(res);
    Py_DECREF(res);
    return ok;
}

int
PyCallable_Check(PyObject *o)
{
    return o != NULL && Py_TYPE(o)->tp_call != NULL;
}

PyObject *
PyObject_Repr(PyObject *o)
{
    if (o == NULL) {
        return PyUnicode_FromString("<NULL>");   /* as CPython */
    }
    reprfunc f = Py_TYPE(o)->tp_repr;
    if (f == NULL) {
        /* object.__repr__ (CPython names the module too, for types outside
         * builtins; ftrt's types carry no module yet) */
        return PyUnicode_FromFormat("<%s object at %p>", Py_TYPE(o)->tp_name, (void *)o);
    }
    PyObject *r = f(o);
    if (r != NULL && !PyUnicode_Check(r)) {
        PyErr_Format(PyExc_TypeError, "__repr__ returned non-string (type %.200s)",
                     Py_TYPE(r)->tp_name);
        Py_DECREF(r);
        return NULL;
    }
    return r;
}

PyObject *
PyObject_Str(PyObject *o)
{
    if (o == NULL) {
        return PyUnicode_FromString("<NULL>");
    }
    if (PyUnicode_CheckExact(o)) {
        return Py_NewRef(o);
    }
    reprfunc f = Py_TYPE(o)->tp_str;
    if (f == NULL) {
        return PyObject_Repr(o);   /* CPython's fallback for a type without tp_str */
    }
    PyObject *r = f(o);
    if (r != NULL && !PyUnicode_Check(r)) {
        PyErr_Format(PyExc_TypeError, "__str__ returned non-string (type %.200s)",
                     Py_TYPE(r)->tp_name);
        Py_DECREF(r);
        return NULL;
    }
    return r;
}

/* Write repr(op), or str(op) with Py_PRINT_RAW, to fp as UTF-8.  A write
 * error raises OSError (CPython sets it from errno). */
int
PyObject_Print(PyObject *op, FILE *fp, int flags)
{
    if (fp == NULL) {
        PyErr_BadInternalCall();
        return -1;
    }
    clearerr(fp);
    if (op == NULL) {
        fputs("<nil>", fp);   /* CPython prints this for NULL */
    }
    else {
        PyObject *s = (flags & Py_PRINT_RAW) ? PyObject_Str(op) : PyObject_Repr(op);
        if (s == NULL) {
            return -1;
        }
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(s, &n);
        (void)fwrite(u, 1, (size_t)n, fp);
        Py_DECREF(s);
    }
    if (ferror(fp)) {
        clearerr(fp);
        PyErr_SetString(PyExc_OSError, "PyObject_Print: write error");
        return -1;
    }
    return 0;
}

/* ---- object: the root type ------------------------------------------------ */

static void
object_dealloc(PyObject *self)
{
    Py_TYPE(self)->tp_free(self);
}

static PyObject *
object_richcompare(PyObject *self, PyObject *other, int op)
{
    switch (op) {
    case Py_EQ:
        return Py_NewRef(self == other ? Py_True : Py_NotImplemented);
    case Py_NE: {
        /* != is the negation of whatever == of self's type says. */
        PyObject *eq = Py_TYPE(self)->tp_richcompare(self, other, Py_EQ);
        if (eq == NULL || eq == Py_NotImplemented) {
            return eq;
        }
        int t = ft_object_is_true(eq);
        Py_DECREF(eq);
        return t < 0 ? NULL : PyBool_FromLong(!t);
    }
    default:
        return Py_NewRef(Py_NotImplemented);
    }
}

static PyObject *
object_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    return type->tp_alloc(type, 0);
}

static int
object_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    (void)self;
    (void)args;
    (void)kwds;
    return 0;
}

PyTypeObject PyBaseObject_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "object",
    .tp_basicsize = sizeof(PyObject),
    .tp_dealloc = object_dealloc,
    .tp_hash = object_hash,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE |
                Py_TPFLAGS_STATIC_BUILTIN,
    .tp_doc = "The base class of the class hierarchy.",
    .tp_richcompare = object_richcompare,
    .tp_init = object_init,
    .tp_alloc = PyType_GenericAlloc,
    .tp_new = object_new,
    .tp_free = PyObject_Free,
};

/* ---- type: the type of types ------------------------------------------------ */

static void
type_dealloc(PyObject *self)
{
    /* Unreachable: static and heap types are immortal (file header). */
    char msg[200];
    snprintf(msg, sizeof msg, "type '%.100s' deallocated: type objects are immortal",
             ((PyTypeObject *)self)->tp_name);
    _Py_FatalErrorFunc("_Py_Dealloc", msg);
}

/* Calling a type creates an instance: tp_new, then tp_init if tp_new made
 * an instance of the type.  (Nothing calls through tp_call until argument
 * tuples exist; it is here so PyCallable_Check(type) is true, as in
 * CPython.) */
static PyObject *
type_call(PyObject *callable, PyObject *args, PyObject *kwds)
{
    PyTypeObject *type = (PyTypeObject *)callable;
    if (type->tp_new == NULL) {
        PyErr_Format(PyExc_TypeError, "cannot create '%.100s' instances", type->tp_name);
        return NULL;
    }
    PyObject *obj = type->tp_new(type, args, kwds);
    if (obj == NULL || !PyObject_TypeCheck(obj, type)) {
        return obj;
    }
    initproc init = Py_TYPE(obj)->tp_init;
    if (init != NULL && init(obj, args, kwds) < 0) {
        Py_DECREF(obj);
        return NULL;
    }
    return obj;
}

PyTypeObject PyType_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "type",
    .tp_basicsize = sizeof(PyTypeObject),
    .tp_dealloc = type_dealloc,
    .tp_call = type_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN |
                Py_TPFLAGS_TYPE_SUBCLASS,
    .tp_doc = "The type of type objects.",
    .tp_base = &PyBaseObject_Type,
};

/* ---- None, NotImplemented ------------------------------------------------------ */

static void
singleton_dealloc(PyObject *self)
{
    /* Unreachable: the singletons are immortal. */
    char msg[200];
    snprintf(msg, sizeof msg, "deallocating the %.100s singleton", Py_TYPE(self)->tp_name);
    _Py_FatalErrorFunc("_Py_Dealloc", msg);
}

/* CPython 3.12's constant hash of None (so it is the same in every run). */
static Py_hash_t
none_hash(PyObject *self)
{
    (void)self;
    return (Py_hash_t)0xFCA86420;
}

static PyObject *
none_repr(PyObject *self)
{
    (void)self;
    return PyUnicode_FromString("None");
}

static PyObject *
none_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type;
    (void)args;
    (void)kwds;
    Py_RETURN_NONE;
}

static PyTypeObject none_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "NoneType",
    .tp_basicsize = sizeof(PyObject),
    .tp_dealloc = singleton_dealloc,
    .tp_repr = none_repr,
    .tp_hash = none_hash,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN,
    .tp_new = none_new,
};

PyObject _Py_NoneStruct = _PyObject_HEAD_INIT(&none_type);

static PyObject *
notimplemented_repr(PyObject *self)
{
    (void)self;
    return PyUnicode_FromString("NotImplemented");
}

static PyObject *
notimplemented_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type;
    (void)args;
    (void)kwds;
    return Py_NotImplemented;
}

static PyTypeObject notimplemented_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "NotImplementedType",
    .tp_basicsize = sizeof(PyObject),
    .tp_dealloc = singleton_dealloc,
    .tp_repr = notimplemented_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN,
    .tp_new = notimplemented_new,
};

PyObject _Py_NotImplementedStruct = _PyObject_HEAD_INIT(&notimplemented_type);

/* bool, True and False live in core/longobject.c (bool derives from int). */

/* ---- PyType_Ready ---------------------------------------------------------------- */

/* Py_TPFLAGS_*_SUBCLASS: bits 24-31, inherited from the base. */
#define SUBCLASS_FLAGS (0xffUL << 24)

static bool
is_gc(PyTypeObject *t)
{
    return (t->tp_flags & Py_TPFLAGS_HAVE_GC) != 0;
}

/* An error found under type_lock, raised once the lock is released: raising
 * allocates, and nothing under the lock may (file header). */
typedef struct ready_error {
    PyObject *type;      /* NULL: no error */
    char msg[320];
} ready_error;

static int __attribute__((format(printf, 3, 4)))
ready_fail(ready_error *err, PyObject *type, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, va);
    va_end(va);
    err->type = type;
    return -1;
}

/* Fill what type leaves NULL from its (ready) base.  CPython's rules. */
static int
inherit(PyTypeObject *type, PyTypeObject *base, ready_error *err)
{
    if (type->tp_basicsize == 0) {
        type->tp_basicsize = base->tp_basicsize;
    }
    else if (type->tp_basicsize < base->tp_basicsize) {
        return ready_fail(err, PyExc_TypeError,
                          "type '%.100s': tp_basicsize %zd is smaller than that of its base "
                          "'%.100s' (%zd)", type->tp_name, type->tp_basicsize, base->tp_name,
                          base->tp_basicsize);
    }
    if (type->tp_itemsize == 0) {
        type->tp_itemsize = base->tp_itemsize;
    }
    type->tp_flags |= base->tp_flags & SUBCLASS_FLAGS;

    /* A subtype of a GC type that defines no traversal of its own is a GC
     * type traversed by the base's functions. */
    if (!is_gc(type) && is_gc(base) && !type->tp_traverse && !type->tp_clear) {
        type->tp_flags |= Py_TPFLAGS_HAVE_GC;
    }
    if (is_gc(type) == is_gc(base)) {
        if (!type->tp_traverse) {
            type->tp_traverse = base->tp_traverse;
        }
        if (!type->tp_clear) {
            type->tp_clear = base->tp_clear;
        }
    }

#define INHERIT(slot)                                                       \
    do {                                                                    \
        if (type->slot == NULL) {                                           \
            type->slot = base->slot;                                        \
        }                                                                   \
    } while (0)
    INHERIT(tp_dealloc);
    INHERIT(tp_repr);
    INHERIT(tp_str);
    INHERIT(tp_call);
    INHERIT(tp_getattro);
    INHERIT(tp_setattro);
    INHERIT(tp_iter);
    INHERIT(tp_iternext);
    INHERIT(tp_init);
    INHERIT(tp_alloc);
    INHERIT(tp_finalize);
    INHERIT(tp_is_gc);
#undef INHERIT
    /* Method suites: a type without one uses its base's; a type with one
     * takes the base's slots it leaves empty (CPython's two steps). */
#define INHERIT_SUITE(suite, type_t)                                        \
    do {                                                                    \
        if (type->suite == NULL) {                                          \
            type->suite = base->suite;                                      \
        }                                                                   \
        else if (base->suite != NULL && type->suite != base->suite) {       \
            void **dst = (void **)type->suite;                              \
            void *const *src = (void *const *)base->suite;                  \
            for (size_t i = 0; i < sizeof(type_t) / sizeof(void *); i++) {  \
                if (dst[i] == NULL) {                                       \
                    dst[i] = src[i];                                        \
                }                                                           \
            }                                                               \
        }                                                                   \
    } while (0)
    INHERIT_SUITE(tp_as_number, PyNumberMethods);
    INHERIT_SUITE(tp_as_sequence, PySequenceMethods);
    INHERIT_SUITE(tp_as_mapping, PyMappingMethods);
#undef INHERIT_SUITE
    /* Equality and hash go together: a type that defines one of them does
     * not get the other from its base (x == y must imply equal hashes). */
    if (type->tp_richcompare == NULL && type->tp_hash == NULL) {
        type->tp_richcompare = base->tp_richcompare;
        type->tp_hash = base->tp_hash;
    }
    /* A static type straight under object without tp_new cannot be
     * instantiated (CPython 3.10's rule); other types inherit tp_new. */
    if (type->tp_new == NULL && !(type->tp_flags & Py_TPFLAGS_DISALLOW_INSTANTIATION)) {
        if (base == &PyBaseObject_Type && !(type->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
            type->tp_flags |= Py_TPFLAGS_DISALLOW_INSTANTIATION;
        }
        else {
            type->tp_new = base->tp_new;
        }
    }
    if (type->tp_free == NULL) {
        if (is_gc(type) == is_gc(base)) {
            type->tp_free = base->tp_free;
        }
        else if (is_gc(type) && base->tp_free == PyObject_Free) {
            type->tp_free = PyObject_GC_Del;
        }
    }
    if (is_gc(base) && !is_gc(type)) {
        return ready_fail(err, PyExc_SystemError,
                          "type '%.100s' defines tp_traverse or tp_clear without "
                          "Py_TPFLAGS_HAVE_GC, but its base '%.100s' is a GC type",
                          type->tp_name, base->tp_name);
    }
    return 0;
}

static int ready_locked(PyTypeObject *type, ready_error *err);

static int
ready_work(PyTypeObject *type, ready_error *err)
{
    PyTypeObject *base = type->tp_base;
    if (base == NULL && type != &PyBaseObject_Type) {
        base = type->tp_base = &PyBaseObject_Type;
    }
    if (base != NULL) {
        if (ready_locked(base, err) < 0) {
            return -1;
        }
        if (Py_TYPE(type) == NULL) {
            Py_SET_TYPE(type, Py_TYPE(base));   /* PyVarObject_HEAD_INIT(NULL, 0) */
        }
        if (inherit(type, base, err) < 0) {
            return -1;
        }
    }
    else if (Py_TYPE(type) == NULL) {
        Py_SET_TYPE(type, &PyType_Type);
    }
    /* Static types are immortal even if declared without PyObject_HEAD_INIT
     * (heap types were made immortal by PyType_FromSpec). */
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) && !_Py_IsImmortal((PyObject *)type)) {
        _Py_SetImmortal((PyObject *)type);
    }
    if (type->tp_basicsize < (Py_ssize_t)sizeof(PyObject) || type->tp_itemsize < 0) {
        return ready_fail(err, PyExc_SystemError, "type '%.100s' has an invalid size "
                          "(tp_basicsize %zd, tp_itemsize %zd)", type->tp_name,
                          type->tp_basicsize, type->tp_itemsize);
    }
    if (type->tp_alloc == NULL) {
        type->tp_alloc = PyType_GenericAlloc;
    }
    if (type->tp_free == NULL) {
        type->tp_free = is_gc(type) ? PyObject_GC_Del : PyObject_Free;
    }
    if (type->tp_hash == NULL) {
        type->tp_hash = PyObject_HashNotImplemented;   /* defines == but not hash */
    }
    if (is_gc(type) && type->tp_traverse == NULL) {
        return ready_fail(err, PyExc_SystemError,
                          "type '%.100s' has Py_TPFLAGS_HAVE_GC but no tp_traverse",
                          type->tp_name);
    }
    return 0;
}

/* Under type_lock.  Readies the base chain first (recursion depth = the
 * chain's length). */
static int
ready_locked(PyTypeObject *type, ready_error *err)
{
    if (type->tp_flags & Py_TPFLAGS_READY) {
        return 0;
    }
    if (type->tp_name == NULL) {
        return ready_fail(err, PyExc_SystemError,
                          "PyType_Ready: the type does not define tp_name");
    }
    if (type->tp_flags & Py_TPFLAGS_READYING) {
        return ready_fail(err, PyExc_SystemError,
                          "PyType_Ready: type '%.100s' is its own base (a tp_base cycle)",
                          type->tp_name);
    }
    type->tp_flags |= Py_TPFLAGS_READYING;
    int rc = ready_work(type, err);
    type->tp_flags &= ~Py_TPFLAGS_READYING;
    if (rc == 0) {
        type->tp_flags |= Py_TPFLAGS_READY;
    }
    return rc;
}

int
PyType_Ready(PyTypeObject *type)
{
    if (type == NULL) {
        PyErr_BadInternalCall();
        return -1;
    }
    ready_error err = { NULL, "" };
    PyMutex_Lock(&type_lock);
    int rc = ready_locked(type, &err);
    PyMutex_Unlock(&type_lock);
    if (err.type != NULL) {
        PyErr_SetString(err.type, err.msg);
    }
    return rc;
}

/* ---- type queries ---------------------------------------------------------------- */

int
PyType_IsSubtype(PyTypeObject *a, PyTypeObject *b)
{
    for (PyTypeObject *t = a; t != NULL; t = t->tp_base) {
        if (t == b) {
            return 1;
        }
    }
    /* A type not readied yet has no tp_base but derives from object. */
    return b == &PyBaseObject_Type;
}

unsigned long
PyType_GetFlags(PyTypeObject *type)
{
    return type->tp_flags;
}

/* A function pointer stored in or read from a slot's void * (ISO C has no
 * cast between the two; the representations are the same on every target
 * ftrt supports). */
#define FN_TO_PTR(fn)                                                       \
    __extension__({                                                         \
        void *p_;                                                           \
        _Static_assert(sizeof(fn) == sizeof p_, "function pointer size");   \
        memcpy(&p_, &(fn), sizeof p_);                                      \
        p_;                                                                 \
    })
#define PTR_TO_FN(field, ptr)                                               \
    do {                                                                    \
        void *p_ = (ptr);                                                   \
        _Static_assert(sizeof(field) == sizeof p_, "function pointer size");\
        memcpy(&(field), &p_, sizeof p_);                                   \
    } while (0)

void *
PyType_GetSlot(PyTypeObject *type, int slot)
{
    if (type == NULL || slot <= 0 || slot > FT_MAX_SLOT_ID) {
        PyErr_BadInternalCall();
        return NULL;
    }
    void *addr = slot_address(type, slot);
    if (addr == NULL) {
        return NULL;   /* no such suite, or a CPython slot ftrt's types do not have */
    }
    void *value;
    memcpy(&value, addr, sizeof value);   /* a function pointer read as void * (POSIX) */
    return value;
}

/* ---- instances ---------------------------------------------------------------------- */

PyObject *
PyType_GenericAlloc(PyTypeObject *type, Py_ssize_t nitems)
{
    if (nitems < 0) {
        PyErr_BadInternalCall();
        return NULL;
    }
    PyObject *obj;
    if (type->tp_itemsize == 0) {
        obj = is_gc(type) ? _PyObject_GC_New(type) : _PyObject_New(type);
    }
    else {
        /* One item more than asked for, as in CPython: some variable-size
         * objects keep a sentinel after their last item. */
        if (nitems == PY_SSIZE_T_MAX) {
            return PyErr_NoMemory();
        }
        obj = is_gc(type) ? (PyObject *)_PyObject_GC_NewVar(type, nitems + 1)
                          : (PyObject *)_PyObject_NewVar(type, nitems + 1);
    }
    if (obj == NULL) {
        return NULL;   /* MemoryError is set (also when the size overflows) */
    }
    /* The allocator checked that this size does not overflow. */
    size_t size = type->tp_itemsize == 0 ? (size_t)type->tp_basicsize
                                         : _PyObject_VAR_SIZE(type, nitems + 1);
    memset((char *)obj + sizeof(PyObject), 0, size - sizeof(PyObject));
    if (type->tp_itemsize != 0) {
        Py_SET_SIZE(obj, nitems);
    }
    /* The instance's reference to its type was taken by the header's
     * initialisation (core/obmalloc.c); on an immortal type it writes
     * nothing. */
    if (is_gc(type)) {
        PyObject_GC_Track(obj);
    }
    return obj;
}

PyObject *
PyType_GenericNew(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    return type->tp_alloc(type, 0);
}

/* ---- finalizers (PEP 442) -------------------------------------------------------------- */

void
PyObject_CallFinalizer(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (tp->tp_finalize == NULL) {
        return;
    }
    /* A GC object is finalized at most once (the collector may have done
     * it already); a non-GC object on every dealloc, as in CPython. */
    if (is_gc(tp) && PyObject_GC_IsFinalized(self)) {
        return;
    }
    tp->tp_finalize(self);
    if (is_gc(tp)) {
        ft_gc_bits_set(self, FT_GC_FINALIZED);
    }
}

int
PyObject_CallFinalizerFromDealloc(PyObject *self)
{
    if (Py_REFCNT(self) != 0) {
        _Py_FatalErrorFunc(__func__, "called on an object with a non-zero reference count");
    }
    ft_object_resurrect_start(self);
    PyObject_CallFinalizer(self);
    if (ft_object_resurrect_end(self)) {
        return -1;   /* resurrected: self may already belong to another thread */
    }
    return 0;
}

/* ---- heap types ------------------------------------------------------------------------ */

/* The default tp_dealloc of heap types (CPython's subtype_dealloc, without
 * the parts for __dict__, __slots__ and weak references ftrt has no yet):
 * finalize once, untrack, run the nearest base's own dealloc (which frees
 * through tp_free), then drop the instance's reference to its type. */
static void
subtype_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    if (type->tp_finalize != NULL) {
        if (PyObject_CallFinalizerFromDealloc(self) < 0) {
            return;   /* resurrected */
        }
    }
    if (is_gc(type)) {
        PyObject_GC_UnTrack(self);
    }
    PyTypeObject *base = type;
    while (base->tp_dealloc == subtype_dealloc) {
        base = base->tp_base;
    }
    bool type_needs_decref = !(base->tp_flags & Py_TPFLAGS_HEAPTYPE);
    base->tp_dealloc(self);
    if (type_needs_decref) {
        Py_DECREF(type);
    }
}

/* What PyType_FromSpec does with a slot id: 1 = a slot it applies, 0 = a
 * CPython slot ftrt lacks, -1 = not a slot id at all. */
static int
slot_kind(int id)
{
    if (id <= 0 || id > FT_MAX_SLOT_ID) {
        return -1;
    }
    return slot_places[id].where != SLOT_NONE;
}

/* Store a spec's slot (the heap type's suites are in place already). */
static void
apply_slot(PyTypeObject *t, int id, void *p)
{
    if (id == Py_tp_base || id == Py_tp_doc) {
        return;   /* taken before */
    }
    void *addr = slot_address(t, id);
    if (addr != NULL) {
        memcpy(addr, &p, sizeof p);
    }
}

static void
heaptype_free(ft_heaptype *h)
{
    PyMem_RawFree(h->doc);
    PyMem_RawFree(h);
}

static PyObject *
from_spec(PyType_Spec *spec, PyObject *bases, const char *func)
{
    ft_tstate *ts = ft_current();
    if (ts == NULL) {
        _Py_FatalErrorFunc(func, "called without an attached thread state");
    }
    if (spec == NULL || spec->name == NULL) {
        PyErr_BadInternalCall();
        return NULL;
    }
    /* The base: the bases argument, else Py_tp_base, else object. */
    PyTypeObject *base = NULL;
    if (bases != NULL && PyTuple_Check(bases)) {
        /* single inheritance only: one type in the tuple */
        if (PyTuple_GET_SIZE(bases) != 1 || !PyType_Check(PyTuple_GET_ITEM(bases, 0))) {
            PyErr_SetString(PyExc_SystemError,
                            "PyType_FromSpecWithBases: bases must be a type or a tuple of "
                            "exactly one type (ftrt has no multiple inheritance)");
            return NULL;
        }
        base = (PyTypeObject *)PyTuple_GET_ITEM(bases, 0);
    }
    else if (bases != NULL) {
        if (!PyType_Check(bases)) {
            PyErr_SetString(PyExc_SystemError,
                            "PyType_FromSpecWithBases: bases must be a type or a tuple of "
                            "exactly one type");
            return NULL;
        }
        base = (PyTypeObject *)bases;
    }
    const char *doc = NULL;
    for (PyType_Slot *s = spec->slots; s != NULL && s->slot != 0; s++) {
        int kind = slot_kind(s->slot);
        if (kind < 0) {
            PyErr_SetString(PyExc_RuntimeError, "invalid slot offset");
            return NULL;
        }
        if (kind == 0) {
            PyErr_Format(PyExc_SystemError,
                         "PyType_FromSpec: type '%.100s': slot %d is not supported by ftrt yet",
                         spec->name, s->slot);
            return NULL;
        }
        if (s->slot == Py_tp_base && bases == NULL) {
            base = s->pfunc;
        }
        else if (s->slot == Py_tp_doc) {
            doc = s->pfunc;
        }
    }
    if (base == NULL) {
        base = &PyBaseObject_Type;
    }
    if (!(base->tp_flags & Py_TPFLAGS_BASETYPE)) {
        PyErr_Format(PyExc_TypeError, "type '%.100s' is not an acceptable base type",
                     base->tp_name);
        return NULL;
    }
    if (spec->basicsize < 0 || spec->itemsize < 0) {
        PyErr_Format(PyExc_SystemError,
                     "PyType_FromSpec: type '%.100s': negative sizes (relative to the base) "
                     "are not supported yet", spec->name);
        return NULL;
    }

    size_t name_len = strlen(spec->name);
    size_t size = sizeof(ft_heaptype) + name_len + 1;
    ft_heaptype *h = PyMem_RawCalloc(1, size);
    if (h == NULL) {
        return PyErr_NoMemory();
    }
    h->size = size;
    memcpy(h->name, spec->name, name_len + 1);
    if (doc != NULL) {
        size_t doc_len = strlen(doc);
        h->doc = PyMem_RawMalloc(doc_len + 1);
        if (h->doc == NULL) {
            heaptype_free(h);
            return PyErr_NoMemory();
        }
        memcpy(h->doc, doc, doc_len + 1);
    }
    PyTypeObject *type = &h->type;
    type->tp_as_number = &h->as_number;      /* a heap type always has its suites */
    type->tp_as_sequence = &h->as_sequence;
    type->tp_as_mapping = &h->as_mapping;
    type->tp_name = h->name;
    type->tp_doc = h->doc;
    type->tp_basicsize = spec->basicsize;
    type->tp_itemsize = spec->itemsize;
    type->tp_flags = spec->flags | Py_TPFLAGS_HEAPTYPE;
    type->tp_flags &= ~(Py_TPFLAGS_READY | Py_TPFLAGS_READYING | Py_TPFLAGS_STATIC_BUILTIN);
    type->tp_base = base;
    for (PyType_Slot *s = spec->slots; s != NULL && s->slot != 0; s++) {
        apply_slot(type, s->slot, s->pfunc);
    }
    if (type->tp_dealloc == NULL) {
        type->tp_dealloc = subtype_dealloc;
    }
    /* The header stays zero until the type is complete: PyType_Ready sets
     * ob_type, and the tracer sees only types that were created. */
    if (PyType_Ready(type) < 0) {
        heaptype_free(h);
        return NULL;
    }
    ft_object_init((PyObject *)type, Py_TYPE(type));
    _Py_SetImmortal((PyObject *)type);

    PyInterpreterState *interp = ts->base.interp;
    ft_heaptype *head = atomic_load_explicit(&interp->heap_types, memory_order_relaxed);
    do {
        h->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&interp->heap_types, &head, h,
                                                    memory_order_release,
                                                    memory_order_relaxed));
    return (PyObject *)type;
}

PyObject *
PyType_FromSpecWithBases(PyType_Spec *spec, PyObject *bases)
{
    return from_spec(spec, bases, __func__);
}

PyObject *
PyType_FromSpec(PyType_Spec *spec)
{
    return from_spec(spec, NULL, __func__);
}

/* ---- init / finalize ---------------------------------------------------------------------- */

void
ft_types_init(void)
{
    PyTypeObject *statics[] = {
        &PyBaseObject_Type, &PyType_Type, &none_type, &notimplemented_type,
        &PyLong_Type, &PyBool_Type, &PyFloat_Type, &PyUnicode_Type,
        &PyDict_Type, &PyDictIterKey_Type,
        &PyTuple_Type, &PyTupleIter_Type, &PyList_Type, &PyListIter_Type,
    };
    for (size_t i = 0; i < sizeof statics / sizeof statics[0]; i++) {
        if (PyType_Ready(statics[i]) < 0) {
            _Py_FatalErrorFunc("Py_Initialize", "cannot ready a built-in type");
        }
    }
    if (ft_unicode_init() < 0) {   /* str (also in the list above) and its iterator */
        _Py_FatalErrorFunc("Py_Initialize", "cannot ready the str types");
    }
    if (ft_exceptions_init() < 0) {
        _Py_FatalErrorFunc("Py_Initialize", "cannot ready the exception types");
    }
}

void
ft_types_fini(PyInterpreterState *interp)
{
    ft_unicode_fini();   /* interned strings: immortal until now */
    ft_heaptype *h = atomic_exchange_explicit(&interp->heap_types, NULL, memory_order_acquire);
    while (h != NULL) {
        ft_heaptype *next = h->next;
        if (atomic_load_explicit(&ft_reftracer_state.fn, memory_order_relaxed) != NULL) {
            ft_reftracer_call((PyObject *)&h->type, PyRefTracer_DESTROY);
        }
        heaptype_free(h);
        h = next;
    }
}

Py_ssize_t
ft_heap_types_count(PyInterpreterState *interp)
{
    Py_ssize_t n = 0;
    for (ft_heaptype *h = atomic_load_explicit(&interp->heap_types, memory_order_acquire);
         h != NULL; h = h->next) {
        n++;
    }
    return n;
}
