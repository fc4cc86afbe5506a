/* Tuples: PyTuple_Type, its iterator, and the PyTuple_* API.
 *
 * Thread safety.  A tuple's items are written only while it is new (its
 * creator holds the only reference: PyTuple_SetItem checks a refcount of 1,
 * PyTuple_SET_ITEM is the caller's promise); the creator then publishes the
 * tuple through something that orders (a list's release store, a lock), so
 * readers read the items with plain loads and no lock.  The empty tuple is
 * one static immortal object, like CPython's.
 *
 * The tuple iterator may be advanced by two threads at once without a
 * memory error (its index is a relaxed atomic and the tuple stays
 * referenced until the iterator dies), but, as in CPython, both may get
 * the same item: each thread should take its own iterator.
 */
#include "Python.h"

#include "ft_alloc.h"
#include "ft_object.h"

#include <stdarg.h>

/* The empty tuple.  PyTuple_Type is a GC type and the GIL build keeps GC
 * bits in the 16-byte pre-header in front of a GC object, so the static
 * singleton carries one too (zeroed: no heap, not tracked). */
static struct {
    ft_gc_prehdr pre;
    PyTupleObject tuple;
} empty_tuple = {
    { NULL, 0, 0 },
    { PyVarObject_HEAD_INIT(&PyTuple_Type, 0) { NULL } },
};
#define EMPTY_TUPLE ((PyObject *)&empty_tuple.tuple)

static PyTupleObject *
tuple_alloc(Py_ssize_t size)
{
    /* Overflow: the item array must fit in a Py_ssize_t byte count. */
    if ((size_t)size > ((size_t)PY_SSIZE_T_MAX - sizeof(PyTupleObject)) / sizeof(PyObject *)) {
        PyErr_NoMemory();
        return NULL;
    }
    PyTupleObject *op = PyObject_GC_NewVar(PyTupleObject, &PyTuple_Type, size);
    if (op == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        op->ob_item[i] = NULL;
    }
    return op;
}

PyObject *
PyTuple_New(Py_ssize_t size)
{
    if (size < 0) {
        PyErr_BadInternalCall();
        return NULL;
    }
    if (size == 0) {
        return EMPTY_TUPLE;   /* immortal: no count to take */
    }
    PyTupleObject *op = tuple_alloc(size);
    if (op == NULL) {
        return NULL;
    }
    PyObject_GC_Track(op);
    return (PyObject *)op;
}

Py_ssize_t
PyTuple_Size(PyObject *p)
{
    if (p == NULL || !PyTuple_Check(p)) {
        PyErr_BadInternalCall();
        return -1;
    }
    return Py_SIZE(p);
}

PyObject *
PyTuple_GetItem(PyObject *p, Py_ssize_t pos)
{
    if (p == NULL || !PyTuple_Check(p)) {
        PyErr_BadInternalCall();
        return NULL;
    }
    if ((size_t)pos >= (size_t)Py_SIZE(p)) {
        PyErr_SetString(PyExc_IndexError, "tuple index out of range");
        return NULL;
    }
    return PyTuple_GET_ITEM(p, pos);
}

int
PyTuple_SetItem(PyObject *p, Py_ssize_t pos, PyObject *o)
{
    if (p == NULL || !PyTuple_Check(p) || Py_REFCNT(p) != 1) {
        Py_XDECREF(o);
        PyErr_BadInternalCall();
        return -1;
    }
    if ((size_t)pos >= (size_t)Py_SIZE(p)) {
        Py_XDECREF(o);
        PyErr_SetString(PyExc_IndexError, "tuple assignment index out of range");
        return -1;
    }
    Py_XSETREF(_PyTuple_CAST(p)->ob_item[pos], o);
    return 0;
}

/* A new tuple holding new references to src[0..n). */
static PyObject *
tuple_from_array(PyObject *const *src, Py_ssize_t n)
{
    if (n == 0) {
        return EMPTY_TUPLE;
    }
    PyTupleObject *op = tuple_alloc(n);
    if (op == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        op->ob_item[i] = Py_NewRef(src[i]);
    }
    PyObject_GC_Track(op);
    return (PyObject *)op;
}

PyObject *
PyTuple_GetSlice(PyObject *p, Py_ssize_t low, Py_ssize_t high)
{
    if (p == NULL || !PyTuple_Check(p)) {
        PyErr_BadInternalCall();
        return NULL;
    }
    Py_ssize_t n = Py_SIZE(p);
    /* CPython's clamping: negative bounds are 0, past the end is the end. */
    if (low < 0) {
        low = 0;
    }
    if (high > n) {
        high = n;
    }
    if (high < low) {
        high = low;
    }
    if (low == 0 && high == n && PyTuple_CheckExact(p)) {
        return Py_NewRef(p);
    }
    return tuple_from_array(_PyTuple_CAST(p)->ob_item + low, high - low);
}

PyObject *
PyTuple_Pack(Py_ssize_t n, ...)
{
    if (n == 0) {
        return EMPTY_TUPLE;
    }
    PyObject *t = PyTuple_New(n);
    if (t == NULL) {
        return NULL;
    }
    va_list ap;
    va_start(ap, n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(t, i, Py_NewRef(va_arg(ap, PyObject *)));
    }
    va_end(ap);
    return t;
}

/* ---- slots ------------------------------------------------------------------ */

static void
tuple_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    for (Py_ssize_t i = Py_SIZE(self); --i >= 0;) {
        Py_XDECREF(PyTuple_GET_ITEM(self, i));
    }
    Py_TYPE(self)->tp_free(self);
}

static int
tuple_traverse(PyObject *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = Py_SIZE(self); --i >= 0;) {
        Py_VISIT(PyTuple_GET_ITEM(self, i));
    }
    return 0;
}

/* The xxHash-style combination CPython uses for tuples (xxHash's 64-bit
 * primes and 31-bit rotation; 32-bit hosts use the 32-bit ones): each
 * item's hash is mixed in with a multiply-rotate-multiply round, then the
 * length is added so that () and (x,) with x hashing to 0 differ. */
#if SIZE_MAX > 0xFFFFFFFFu
#define XXPRIME_1 ((Py_uhash_t)11400714785074694791ULL)
#define XXPRIME_2 ((Py_uhash_t)14029467366897019727ULL)
#define XXPRIME_5 ((Py_uhash_t)2870177450012600261ULL)
#define XXROTATE(x) (((x) << 31) | ((x) >> 33))
#else
#define XXPRIME_1 ((Py_uhash_t)2654435761UL)
#define XXPRIME_2 ((Py_uhash_t)2246822519UL)
#define XXPRIME_5 ((Py_uhash_t)374761393UL)
#define XXROTATE(x) (((x) << 13) | ((x) >> 19))
#endif

static Py_hash_t
tuple_hash(PyObject *self)
{
    Py_ssize_t n = Py_SIZE(self);
    Py_uhash_t acc = XXPRIME_5;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_hash_t h = PyObject_Hash(PyTuple_GET_ITEM(self, i));
        if (h == -1) {
            return -1;
        }
        acc += (Py_uhash_t)h * XXPRIME_2;
        acc = XXROTATE(acc);
        acc *= XXPRIME_1;
    }
    /* The constant keeps the hash of () away from small values. */
    acc += (Py_uhash_t)n ^ (XXPRIME_5 ^ 3527539UL);
    if (acc == (Py_uhash_t)-1) {
        return 1546275796;   /* -1 means "error": any other fixed value will do */
    }
    return (Py_hash_t)acc;
}

static Py_ssize_t
tuple_length(PyObject *self)
{
    return Py_SIZE(self);
}

static PyObject *
tuple_item(PyObject *self, Py_ssize_t i)
{
    if ((size_t)i >= (size_t)Py_SIZE(self)) {
        PyErr_SetString(PyExc_IndexError, "tuple index out of range");
        return NULL;
    }
    return Py_NewRef(PyTuple_GET_ITEM(self, i));
}

static int
tuple_contains(PyObject *self, PyObject *el)
{
    int cmp = 0;
    for (Py_ssize_t i = 0; cmp == 0 && i < Py_SIZE(self); i++) {
        cmp = PyObject_RichCompareBool(PyTuple_GET_ITEM(self, i), el, Py_EQ);
    }
    return cmp;
}

/* Element-wise comparison, shared with lists' logic: find the first index
 * where the items differ; if there is none, compare the lengths, else
 * compare those two items with op. */
static PyObject *
tuple_richcompare(PyObject *v, PyObject *w, int op)
{
    if (!PyTuple_Check(v) || !PyTuple_Check(w)) {
        return Py_NewRef(Py_NotImplemented);
    }
    Py_ssize_t vlen = Py_SIZE(v), wlen = Py_SIZE(w);
    Py_ssize_t i;
    for (i = 0; i < vlen && i < wlen; i++) {
        int k = PyObject_RichCompareBool(PyTuple_GET_ITEM(v, i), PyTuple_GET_ITEM(w, i), Py_EQ);
        if (k < 0) {
            return NULL;
        }
        if (!k) {
            break;
        }
    }
    if (i >= vlen || i >= wlen) {
        int r;
        switch (op) {
        case Py_LT: r = vlen < wlen; break;
        case Py_LE: r = vlen <= wlen; break;
        case Py_EQ: r = vlen == wlen; break;
        case Py_NE: r = vlen != wlen; break;
        case Py_GT: r = vlen > wlen; break;
        default: r = vlen >= wlen; break;
        }
        return PyBool_FromLong(r);
    }
    if (op == Py_EQ) {
        return Py_NewRef(Py_False);
    }
    if (op == Py_NE) {
        return Py_NewRef(Py_True);
    }
    return PyObject_RichCompare(PyTuple_GET_ITEM(v, i), PyTuple_GET_ITEM(w, i), op);
}

static PyObject *tuple_iter(PyObject *seq);

/* (1, 2), (1,), ().  A tuple cannot contain itself, but a subclass's or a
 * list's repr may come back to it: "(...)" then. */
static PyObject *
tuple_repr(PyObject *self)
{
    return ft_sequence_repr(self, tuple_iter, "(", Py_SIZE(self) == 1 ? ",)" : ")");
}

/* ---- the iterator ------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_ssize_t it_index;   /* -1 once exhausted; a relaxed atomic */
    PyObject *it_seq;      /* GIL build: NULL once exhausted */
} tupleiterobject;

static PyObject *
tuple_iter(PyObject *seq)
{
    tupleiterobject *it = PyObject_GC_New(tupleiterobject, &PyTupleIter_Type);
    if (it == NULL) {
        return NULL;
    }
    it->it_index = 0;
    it->it_seq = Py_NewRef(seq);
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PyObject *
tupleiter_next(PyObject *self)
{
    tupleiterobject *it = (tupleiterobject *)self;
    PyObject *seq = it->it_seq;
    Py_ssize_t i = __atomic_load_n(&it->it_index, __ATOMIC_RELAXED);
    if (seq == NULL || i < 0) {
        return NULL;
    }
    if (i < Py_SIZE(seq)) {
        __atomic_store_n(&it->it_index, i + 1, __ATOMIC_RELAXED);
        return Py_NewRef(PyTuple_GET_ITEM(seq, i));
    }
    /* Exhausted: NULL without an exception.  The GIL build drops the tuple
     * now; free-threaded, another thread sharing the iterator may still be
     * reading it_seq, so it is dropped by the dealloc. */
    __atomic_store_n(&it->it_index, -1, __ATOMIC_RELAXED);
    if (!ft_free_threaded) {
        it->it_seq = NULL;
        Py_DECREF(seq);
    }
    return NULL;
}

static void
tupleiter_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_XDECREF(((tupleiterobject *)self)->it_seq);
    PyObject_GC_Del(self);
}

static int
tupleiter_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((tupleiterobject *)self)->it_seq);
    return 0;
}

/* a + b, CPython's: an exact tuple plus an empty one is itself. */
static PyObject *
tuple_concat(PyObject *a, PyObject *b)
{
    if (!PyTuple_Check(b)) {
        PyErr_Format(PyExc_TypeError, "can only concatenate tuple (not \"%.200s\") to tuple",
                     Py_TYPE(b)->tp_name);
        return NULL;
    }
    Py_ssize_t na = Py_SIZE(a), nb = Py_SIZE(b);
    if (nb == 0 && PyTuple_CheckExact(a)) {
        return Py_NewRef(a);
    }
    if (na == 0 && PyTuple_CheckExact(b)) {
        return Py_NewRef(b);
    }
    if (na > PY_SSIZE_T_MAX - nb) {
        return PyErr_NoMemory();
    }
    if (na + nb == 0) {
        return EMPTY_TUPLE;
    }
    PyTupleObject *op = tuple_alloc(na + nb);
    if (op == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < na; i++) {
        op->ob_item[i] = Py_XNewRef(PyTuple_GET_ITEM(a, i));
    }
    for (Py_ssize_t i = 0; i < nb; i++) {
        op->ob_item[na + i] = Py_XNewRef(PyTuple_GET_ITEM(b, i));
    }
    PyObject_GC_Track(op);
    return (PyObject *)op;
}

/* a * n, CPython's: n <= 0 is (), an exact tuple once (or an empty one)
 * is itself, too many items a MemoryError. */
static PyObject *
tuple_repeat(PyObject *a, Py_ssize_t n)
{
    Py_ssize_t size = Py_SIZE(a);
    if ((size == 0 || n == 1) && PyTuple_CheckExact(a)) {
        return Py_NewRef(a);
    }
    if (size == 0 || n <= 0) {
        return EMPTY_TUPLE;
    }
    if (size > PY_SSIZE_T_MAX / n) {
        return PyErr_NoMemory();
    }
    PyTupleObject *op = tuple_alloc(size * n);
    if (op == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < size * n; i++) {
        op->ob_item[i] = Py_XNewRef(PyTuple_GET_ITEM(a, i % size));
    }
    PyObject_GC_Track(op);
    return (PyObject *)op;
}

static PySequenceMethods tuple_as_sequence = {
    .sq_length = tuple_length,
    .sq_concat = tuple_concat,
    .sq_repeat = tuple_repeat,
    .sq_item = tuple_item,
    .sq_contains = tuple_contains,
};

/* t[key] with an int key (slices need slice objects, not in ftrt yet). */
static PyObject *
tuple_subscript(PyObject *self, PyObject *key)
{
    Py_ssize_t i;
    if (ft_subscript_index(key, "tuple indices must be integers or slices, not %.200s", &i) < 0) {
        return NULL;
    }
    if (i < 0) {
        i += Py_SIZE(self);
    }
    return tuple_item(self, i);
}

static PyMappingMethods tuple_as_mapping = {
    .mp_length = tuple_length,
    .mp_subscript = tuple_subscript,
};

PyTypeObject PyTuple_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "tuple",
    .tp_basicsize = sizeof(PyTupleObject) - sizeof(PyObject *),
    .tp_itemsize = sizeof(PyObject *),
    .tp_dealloc = tuple_dealloc,
    .tp_repr = tuple_repr,
    .tp_as_sequence = &tuple_as_sequence,
    .tp_as_mapping = &tuple_as_mapping,
    .tp_hash = tuple_hash,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE |
                Py_TPFLAGS_TUPLE_SUBCLASS | Py_TPFLAGS_IMMUTABLETYPE,
    .tp_traverse = tuple_traverse,
    .tp_richcompare = tuple_richcompare,
    .tp_iter = tuple_iter,
    .tp_free = PyObject_GC_Del,
};

PyTypeObject PyTupleIter_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "tuple_iterator",
    .tp_basicsize = sizeof(tupleiterobject),
    .tp_dealloc = tupleiter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
                Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .tp_traverse = tupleiter_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = tupleiter_next,
    .tp_free = PyObject_GC_Del,
};
