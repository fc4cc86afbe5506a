/* Type objects: PyType_Ready, heap types from a spec, the generic slots, the
 * object protocol the core provides (hash, rich comparison, callable), and
 * the runtime's singletons (None, NotImplemented, True, False) with their
 * types.
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
    lenfunc len = Py_TYPE(v)->tp_len;
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
        PyErr_SetString(PyExc_SystemError,
                        "PyObject_Repr: the repr of NULL needs str objects (not available yet)");
        return NULL;
    }
    reprfunc f = Py_TYPE(o)->tp_repr;
    if (f == NULL) {
        PyErr_Format(PyExc_SystemError,
                     "PyObject_Repr: the default repr of '%.100s' objects needs str objects "
                     "(not available yet)", Py_TYPE(o)->tp_name);
        return NULL;
    }
    return f(o);
}

PyObject *
PyObject_Str(PyObject *o)
{
    if (o != NULL && Py_TYPE(o)->tp_str != NULL) {
        return Py_TYPE(o)->tp_str(o);
    }
    return PyObject_Repr(o);   /* CPython's fallback for a type without tp_str */
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

/* ---- None, NotImplemented, True, False ----------------------------------------- */

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
    .tp_hash = none_hash,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN,
    .tp_new = none_new,
};

PyObject _Py_NoneStruct = _PyObject_HEAD_INIT(&none_type);

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
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN,
    .tp_new = notimplemented_new,
};

PyObject _Py_NotImplementedStruct = _PyObject_HEAD_INIT(&notimplemented_type);

/* bool compares and hashes as the integers 0 and 1, as in CPython (where it
 * derives from int; here from object until int exists). */
static Py_hash_t
bool_hash(PyObject *self)
{
    return self == Py_True;
}

static PyObject *
bool_richcompare(PyObject *self, PyObject *other, int op)
{
    if (!PyBool_Check(self) || !PyBool_Check(other)) {
        return Py_NewRef(Py_NotImplemented);
    }
    int a = self == Py_True, b = other == Py_True;
    int r;
    switch (op) {
    case Py_LT: r = a < b; break;
    case Py_LE: r = a <= b; break;
    case Py_EQ: r = a == b; break;
    case Py_NE: r = a != b; break;
    case Py_GT: r = a > b; break;
    default: r = a >= b; break;
    }
    return PyBool_FromLong(r);
}

static PyObject *
bool_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type;
    (void)args;
    (void)kwds;
    Py_RETURN_FALSE;   /* bool() */
}

PyTypeObject PyBool_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "bool",
    .tp_basicsize = sizeof(PyObject),
    .tp_dealloc = singleton_dealloc,
    .tp_hash = bool_hash,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN,
    .tp_richcompare = bool_richcompare,
    .tp_new = bool_new,
};

PyObject _Py_FalseStruct = _PyObject_HEAD_INIT(&PyBool_Type);
PyObject _Py_TrueStruct = _PyObject_HEAD_INIT(&PyBool_Type);

PyObject *
PyBool_FromLong(long v)
{
    return v ? Py_True : Py_False;   /* immortal: a new reference costs nothing */
}

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
    INHERIT(tp_len);
#undef INHERIT
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
    switch (slot) {
    case Py_mp_length: case Py_sq_length: return FN_TO_PTR(type->tp_len);
    case Py_tp_alloc: return FN_TO_PTR(type->tp_alloc);
    case Py_tp_base: return type->tp_base;
    case Py_tp_call: return FN_TO_PTR(type->tp_call);
    case Py_tp_clear: return FN_TO_PTR(type->tp_clear);
    case Py_tp_dealloc: return FN_TO_PTR(type->tp_dealloc);
    case Py_tp_doc: return (void *)type->tp_doc;
    case Py_tp_getattro: return FN_TO_PTR(type->tp_getattro);
    case Py_tp_hash: return FN_TO_PTR(type->tp_hash);
    case Py_tp_init: return FN_TO_PTR(type->tp_init);
    case Py_tp_iter: return FN_TO_PTR(type->tp_iter);
    case Py_tp_iternext: return FN_TO_PTR(type->tp_iternext);
    case Py_tp_new: return FN_TO_PTR(type->tp_new);
    case Py_tp_repr: return FN_TO_PTR(type->tp_repr);
    case Py_tp_richcompare: return FN_TO_PTR(type->tp_richcompare);
    case Py_tp_setattro: return FN_TO_PTR(type->tp_setattro);
    case Py_tp_str: return FN_TO_PTR(type->tp_str);
    case Py_tp_traverse: return FN_TO_PTR(type->tp_traverse);
    case Py_tp_free: return FN_TO_PTR(type->tp_free);
    case Py_tp_finalize: return FN_TO_PTR(type->tp_finalize);
    default:
        return NULL;   /* a CPython slot this runtime's types do not have */
    }
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
    switch (id) {
    case Py_mp_length: case Py_sq_length: case Py_tp_alloc: case Py_tp_base:
    case Py_tp_call: case Py_tp_clear: case Py_tp_dealloc: case Py_tp_doc:
    case Py_tp_getattro: case Py_tp_hash: case Py_tp_init: case Py_tp_iter:
    case Py_tp_iternext: case Py_tp_new: case Py_tp_repr: case Py_tp_richcompare:
    case Py_tp_setattro: case Py_tp_str: case Py_tp_traverse: case Py_tp_free:
    case Py_tp_finalize:
        return 1;
    default:
        return id > 0 && id <= FT_MAX_SLOT_ID ? 0 : -1;
    }
}

static void
apply_slot(PyTypeObject *t, int id, void *p)
{
    switch (id) {
    case Py_mp_length: case Py_sq_length: PTR_TO_FN(t->tp_len, p); break;
    case Py_tp_alloc: PTR_TO_FN(t->tp_alloc, p); break;
    case Py_tp_call: PTR_TO_FN(t->tp_call, p); break;
    case Py_tp_clear: PTR_TO_FN(t->tp_clear, p); break;
    case Py_tp_dealloc: PTR_TO_FN(t->tp_dealloc, p); break;
    case Py_tp_getattro: PTR_TO_FN(t->tp_getattro, p); break;
    case Py_tp_hash: PTR_TO_FN(t->tp_hash, p); break;
    case Py_tp_init: PTR_TO_FN(t->tp_init, p); break;
    case Py_tp_iter: PTR_TO_FN(t->tp_iter, p); break;
    case Py_tp_iternext: PTR_TO_FN(t->tp_iternext, p); break;
    case Py_tp_new: PTR_TO_FN(t->tp_new, p); break;
    case Py_tp_repr: PTR_TO_FN(t->tp_repr, p); break;
    case Py_tp_richcompare: PTR_TO_FN(t->tp_richcompare, p); break;
    case Py_tp_setattro: PTR_TO_FN(t->tp_setattro, p); break;
    case Py_tp_str: PTR_TO_FN(t->tp_str, p); break;
    case Py_tp_traverse: PTR_TO_FN(t->tp_traverse, p); break;
    case Py_tp_free: PTR_TO_FN(t->tp_free, p); break;
    case Py_tp_finalize: PTR_TO_FN(t->tp_finalize, p); break;
    default: break;   /* Py_tp_base, Py_tp_doc: taken before */
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
    if (bases != NULL) {
        if (!PyType_Check(bases)) {
            PyErr_SetString(PyExc_SystemError,
                            "PyType_FromSpecWithBases: bases must be a type object (a tuple of "
                            "bases needs tuple objects, not available yet)");
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
        &PyBaseObject_Type, &PyType_Type, &none_type, &notimplemented_type, &PyBool_Type,
    };
    for (size_t i = 0; i < sizeof statics / sizeof statics[0]; i++) {
        if (PyType_Ready(statics[i]) < 0) {
            _Py_FatalErrorFunc("Py_Initialize", "cannot ready a built-in type");
        }
    }
    if (ft_exceptions_init() < 0) {
        _Py_FatalErrorFunc("Py_Initialize", "cannot ready the exception types");
    }
}

void
ft_types_fini(PyInterpreterState *interp)
{
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
