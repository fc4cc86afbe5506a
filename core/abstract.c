/* The abstract object protocol: operations that dispatch on type slots
 * (CPython 3.13's names, messages and error conventions).  Nothing here
 * keeps state, so there is no concurrency protocol of its own: each call
 * inherits the thread safety of the slots it calls.
 *
 */
#include "Python.h"

#include "ft_object.h"
#include "ft_types.h"

static PyObject *
null_error(void)
{
    if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_SystemError, "null argument to internal routine");
    }
    return NULL;
}

static PyObject *
type_error(const char *msg, PyObject *o)
{
    PyErr_Format(PyExc_TypeError, msg, Py_TYPE(o)->tp_name);
    return NULL;
}

/* ---- size, truth --------------------------------------------------------------------- */

Py_ssize_t
PyObject_Size(PyObject *o)
{
    if (o == NULL) {
        null_error();
        return -1;
    }
    PySequenceMethods *sq = Py_TYPE(o)->tp_as_sequence;
    if (sq != NULL && sq->sq_length != NULL) {
        return sq->sq_length(o);
    }
    PyMappingMethods *mp = Py_TYPE(o)->tp_as_mapping;
    if (mp != NULL && mp->mp_length != NULL) {
        return mp->mp_length(o);
    }
    type_error("object of type '%.200s' has no len()", o);
    return -1;
}

Py_ssize_t
PyObject_Length(PyObject *o)
{
    return PyObject_Size(o);
}

int
PyObject_IsTrue(PyObject *o)
{
    return ft_object_is_true(o);
}

int
PyObject_Not(PyObject *o)
{
    int t = ft_object_is_true(o);
    return t < 0 ? t : !t;
}

/* ---- indexes: shared by subscription and the sequence functions --------------------------- */

/* A negative index counts from the end (sq_length), as CPython's
 * PySequence_* do. */
static int
adjust_index(PyObject *o, PySequenceMethods *sq, Py_ssize_t *i)
{
    if (*i < 0 && sq->sq_length != NULL) {
        Py_ssize_t n = sq->sq_length(o);
        if (n < 0) {
            return -1;
        }
        *i += n;
    }
    return 0;
}

/* o[i] = v through sq_ass_item (a NULL v deletes), i adjusted as above;
 * `unsupported` is the TypeError for a type without the slot that is no
 * mapping either.  PySequence_SetItem, PySequence_DelItem and the sequence
 * case of PyObject_SetItem / PyObject_DelItem. */
static int
sequence_ass_item(PyObject *o, Py_ssize_t i, PyObject *v, const char *unsupported)
{
    PySequenceMethods *sq = Py_TYPE(o)->tp_as_sequence;
    if (sq != NULL && sq->sq_ass_item != NULL) {
        if (adjust_index(o, sq, &i) < 0) {
            return -1;
        }
        return sq->sq_ass_item(o, i, v);
    }
    PyMappingMethods *mp = Py_TYPE(o)->tp_as_mapping;
    if (mp != NULL && mp->mp_ass_subscript != NULL) {
        type_error("%.200s is not a sequence", o);
        return -1;
    }
    type_error(unsupported, o);
    return -1;
}

/* A subscript used as a sequence index: *i is its __index__ value; -1 with
 * TypeError (not an index) or IndexError (out of Py_ssize_t's range). */
static int
sequence_index(PyObject *key, Py_ssize_t *i)
{
    if (!PyIndex_Check(key)) {
        PyErr_Format(PyExc_TypeError, "sequence index must be integer, not '%.200s'",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    *i = PyNumber_AsSsize_t(key, PyExc_IndexError);
    return *i == -1 && PyErr_Occurred() ? -1 : 0;
}

/* ---- subscription ------------------------------------------------------------------------- */

PyObject *
PyObject_GetItem(PyObject *o, PyObject *key)
{
    if (o == NULL || key == NULL) {
        return null_error();
    }
    PyMappingMethods *mp = Py_TYPE(o)->tp_as_mapping;
    if (mp != NULL && mp->mp_subscript != NULL) {
        return mp->mp_subscript(o, key);
    }
    PySequenceMethods *sq = Py_TYPE(o)->tp_as_sequence;
    if (sq != NULL && sq->sq_item != NULL) {
        Py_ssize_t i;
        if (sequence_index(key, &i) < 0) {
            return NULL;
        }
        return PySequence_GetItem(o, i);
    }
    return type_error("'%.200s' object is not subscriptable", o);
}

/* o[key] = v, or del o[key] when v is NULL: the mapping slot, else the
 * sequence slot with key as an index; `unsupported` is the TypeError for a
 * type with neither. */
static int
object_ass_item(PyObject *o, PyObject *key, PyObject *v, const char *unsupported)
{
    PyMappingMethods *mp = Py_TYPE(o)->tp_as_mapping;
    if (mp != NULL && mp->mp_ass_subscript != NULL) {
        return mp->mp_ass_subscript(o, key, v);
    }
    PySequenceMethods *sq = Py_TYPE(o)->tp_as_sequence;
    if (sq != NULL && sq->sq_ass_item != NULL) {
        Py_ssize_t i;
        if (sequence_index(key, &i) < 0) {
            return -1;
        }
        return sequence_ass_item(o, i, v, unsupported);   /* has the slot: never unsupported */
    }
    type_error(unsupported, o);
    return -1;
}

int
PyObject_SetItem(PyObject *o, PyObject *key, PyObject *v)
{
    if (o == NULL || key == NULL || v == NULL) {
        null_error();
        return -1;
    }
    return object_ass_item(o, key, v, "'%.200s' object does not support item assignment");
}

int
PyObject_DelItem(PyObject *o, PyObject *key)
{
    if (o == NULL || key == NULL) {
        null_error();
        return -1;
    }
    return object_ass_item(o, key, NULL, "'%.200s' object does not support item deletion");
}

/* ---- iteration ------------------------------------------------------------------------- */

PyObject *
PyObject_SelfIter(PyObject *o)
{
    return Py_NewRef(o);
}

int
PyIter_Check(PyObject *o)
{
    iternextfunc f = Py_TYPE(o)->tp_iternext;
    return f != NULL;
}

PyObject *
PyObject_GetIter(PyObject *o)
{
    if (o == NULL) {
        return null_error();
    }
    getiterfunc f = Py_TYPE(o)->tp_iter;
    if (f == NULL) {
        /* CPython falls back to a sequence iterator over sq_item; ftrt
         * has none yet. */
        return type_error("'%.200s' object is not iterable", o);
    }
    PyObject *res = f(o);
    if (res != NULL && !PyIter_Check(res)) {
        PyErr_Format(PyExc_TypeError, "iter() returned non-iterator of type '%.100s'",
                     Py_TYPE(res)->tp_name);
        Py_DECREF(res);
        return NULL;
    }
    return res;
}

PyObject *
PyIter_Next(PyObject *iter)
{
    iternextfunc f = Py_TYPE(iter)->tp_iternext;
    if (f == NULL) {
        return type_error("'%.200s' object is not an iterator", iter);
    }
    PyObject *res = f(iter);
    if (res == NULL && PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyErr_Clear();
    }
    return res;
}

/* ---- sequences --------------------------------------------------------------------------- */

/* CPython's _PySequence_IterSearch: walk seq's iterator comparing each
 * item with ob (item == ob, by PyObject_RichCompareBool).  The iterator
 * hands out a new reference per index (a list's reads the list one index
 * at a time), so a comparison, which may run arbitrary code, never holds a
 * borrowed item or a lock.  Contains: 1 or 0; count: the matches; index:
 * the first match's index, else ValueError.  -1 with an exception. */
typedef enum { SEARCH_CONTAINS, SEARCH_COUNT, SEARCH_INDEX } search_op;

static Py_ssize_t
iter_search(PyObject *seq, PyObject *ob, search_op op)
{
    PyObject *it = PyObject_GetIter(seq);
    if (it == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            type_error("argument of type '%.200s' is not iterable", seq);
        }
        return -1;
    }
    Py_ssize_t n = 0;   /* matches (count), or the index of item (index) */
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        int cmp = PyObject_RichCompareBool(item, ob, Py_EQ);
        Py_DECREF(item);
        if (cmp < 0) {
            goto fail;
        }
        if (cmp > 0 && op != SEARCH_COUNT) {
            Py_DECREF(it);
            return op == SEARCH_INDEX ? n : 1;
        }
        if (n == PY_SSIZE_T_MAX && (cmp > 0 || op == SEARCH_INDEX)) {
            PyErr_SetString(PyExc_OverflowError, op == SEARCH_COUNT
                                                     ? "count exceeds C integer size"
                                                     : "index exceeds C integer size");
            goto fail;
        }
        if (cmp > 0 || op == SEARCH_INDEX) {
            n++;
        }
    }
    if (PyErr_Occurred()) {
        goto fail;
    }
    Py_DECREF(it);
    if (op == SEARCH_INDEX) {
        PyErr_SetString(PyExc_ValueError, "sequence.index(x): x not in sequence");
        return -1;
    }
    return op == SEARCH_COUNT ? n : 0;
fail:
    Py_DECREF(it);
    return -1;
}

/* CPython's binary_op1 for one number slot (offset into PyNumberMethods):
 * v's slot, w's first if w's type is a subtype of v's with a different
 * slot, then w's; a new reference to Py_NotImplemented if neither takes
 * the operands.  The sequence functions fall back to it for types that
 * define nb_add / nb_multiply but no sequence slot (CPython: classes with
 * __add__ / __mul__ only). */
static binaryfunc
nb_slot(PyObject *o, size_t slot)
{
    PyNumberMethods *nb = Py_TYPE(o)->tp_as_number;
    return nb != NULL ? *(binaryfunc *)((char *)nb + slot) : NULL;
}

static PyObject *
binary_op1(PyObject *v, PyObject *w, size_t slot)
{
    binaryfunc slotv = nb_slot(v, slot);
    binaryfunc slotw = Py_IS_TYPE(w, Py_TYPE(v)) ? NULL : nb_slot(w, slot);
    if (slotw == slotv) {
        slotw = NULL;
    }
    if (slotv != NULL) {
        PyObject *x;
        if (slotw != NULL && PyType_IsSubtype(Py_TYPE(w), Py_TYPE(v))) {
            x = slotw(v, w);
            if (x != Py_NotImplemented) {
                return x;
            }
            Py_DECREF(x);
            slotw = NULL;
        }
        x = slotv(v, w);
        if (x != Py_NotImplemented) {
            return x;
        }
        Py_DECREF(x);
    }
    if (slotw != NULL) {
        return slotw(v, w);
    }
    return Py_NewRef(Py_NotImplemented);
}

/* The fallback of the four functions below: v's in-place slot first
 * (iop, 0 for none), then binary_op1 on op; a new reference to
 * Py_NotImplemented if nothing takes the operands. */
static PyObject *
number_fallback(PyObject *v, PyObject *w, size_t iop, size_t op)
{
    binaryfunc f = iop != 0 ? nb_slot(v, iop) : NULL;
    if (f != NULL) {
        PyObject *x = f(v, w);
        if (x != Py_NotImplemented) {
            return x;
        }
        Py_DECREF(x);
    }
    return binary_op1(v, w, op);
}

#define CANT_CONCAT "'%.200s' object can't be concatenated"
#define CANT_REPEAT "'%.200s' object can't be repeated"

/* s + o by the number slots, for two sequences only. */
static PyObject *
number_concat(PyObject *s, PyObject *o, size_t iop, size_t op)
{
    if (PySequence_Check(s) && PySequence_Check(o)) {
        PyObject *x = number_fallback(s, o, iop, op);
        if (x != Py_NotImplemented) {
            return x;
        }
        Py_DECREF(x);
    }
    return type_error(CANT_CONCAT, s);
}

/* o * count by the number slots (count passed as an int), for a
 * sequence only. */
static PyObject *
number_repeat(PyObject *o, Py_ssize_t count, size_t iop, size_t op)
{
    if (PySequence_Check(o)) {
        PyObject *n = PyLong_FromSsize_t(count);
        if (n == NULL) {
            return NULL;
        }
        PyObject *x = number_fallback(o, n, iop, op);
        Py_DECREF(n);
        if (x != Py_NotImplemented) {
            return x;
        }
        Py_DECREF(x);
    }
    return type_error(CANT_REPEAT, o);
}

int
PySequence_Check(PyObject *o)
{
    /* CPython: anything with sq_item that is not a dict. */
    if (PyType_HasFeature(Py_TYPE(o), Py_TPFLAGS_DICT_SUBCLASS)) {
        return 0;
    }
    PySequenceMethods *sq = Py_TYPE(o)->tp_as_sequence;
    return sq != NULL && sq->sq_item != NULL;
}

Py_ssize_t
PySequence_Size(PyObject *o)
{
    /* PyObject_Size's, but a mapping's length is no sequence's. */
    if (o != NULL) {
        PySequenceMethods *sq = Py_TYPE(o)->tp_as_sequence;
        PyMappingMethods *mp = Py_TYPE(o)->tp_as_mapping;
        if ((sq == NULL || sq->sq_length == NULL) && mp != NULL && mp->mp_length != NULL) {
            type_error("%.200s is not a sequence", o);
            return -1;
        }
    }
    return PyObject_Size(o);
}

Py_ssize_t
PySequence_Length(PyObject *o)
{
    return PySequence_Size(o);
}

PyObject *
PySequence_GetItem(PyObject *o, Py_ssize_t i)
{
    if (o == NULL) {
        return null_error();
    }
    PySequenceMethods *sq = Py_TYPE(o)->tp_as_sequence;
    if (sq != NULL && sq->sq_item != NULL) {
        if (adjust_index(o, sq, &i) < 0) {
            return NULL;
        }
        return sq->sq_item(o, i);
    }
    PyMappingMethods *mp = Py_TYPE(o)->tp_as_mapping;
    if (mp != NULL && mp->mp_subscript != NULL) {
        return type_error("%.200s is not a sequence", o);
    }
    return type_error("'%.200s' object does not support indexing", o);
}

int
PySequence_SetItem(PyObject *o, Py_ssize_t i, PyObject *v)
{
    if (o == NULL) {
        null_error();
        return -1;
    }
    return sequence_ass_item(o, i, v, "'%.200s' object does not support item assignment");
}

int
PySequence_DelItem(PyObject *o, Py_ssize_t i)
{
    if (o == NULL) {
        null_error();
        return -1;
    }
    /* CPython's wording differs from PyObject_DelItem's. */
    return sequence_ass_item(o, i, NULL, "'%.200s' object doesn't support item deletion");
}

int
PySequence_Contains(PyObject *seq, PyObject *ob)
{
    if (seq == NULL || ob == NULL) {
        null_error();
        return -1;
    }
    PySequenceMethods *sq = Py_TYPE(seq)->tp_as_sequence;
    if (sq != NULL && sq->sq_contains != NULL) {
        return sq->sq_contains(seq, ob);
    }
    return (int)iter_search(seq, ob, SEARCH_CONTAINS);   /* as CPython does */
}

Py_ssize_t
PySequence_Count(PyObject *seq, PyObject *ob)
{
    if (seq == NULL || ob == NULL) {
        null_error();
        return -1;
    }
    return iter_search(seq, ob, SEARCH_COUNT);
}

Py_ssize_t
PySequence_Index(PyObject *seq, PyObject *ob)
{
    if (seq == NULL || ob == NULL) {
        null_error();
        return -1;
    }
    return iter_search(seq, ob, SEARCH_INDEX);
}

#define NB(slot) offsetof(PyNumberMethods, slot)

PyObject *
PySequence_Concat(PyObject *s, PyObject *o)
{
    if (s == NULL || o == NULL) {
        return null_error();
    }
    PySequenceMethods *sq = Py_TYPE(s)->tp_as_sequence;
    if (sq != NULL && sq->sq_concat != NULL) {
        return sq->sq_concat(s, o);
    }
    return number_concat(s, o, 0, NB(nb_add));
}

PyObject *
PySequence_Repeat(PyObject *o, Py_ssize_t count)
{
    if (o == NULL) {
        return null_error();
    }
    PySequenceMethods *sq = Py_TYPE(o)->tp_as_sequence;
    if (sq != NULL && sq->sq_repeat != NULL) {
        return sq->sq_repeat(o, count);
    }
    return number_repeat(o, count, 0, NB(nb_multiply));
}

PyObject *
PySequence_InPlaceConcat(PyObject *s, PyObject *o)
{
    if (s == NULL || o == NULL) {
        return null_error();
    }
    PySequenceMethods *sq = Py_TYPE(s)->tp_as_sequence;
    if (sq != NULL && sq->sq_inplace_concat != NULL) {
        return sq->sq_inplace_concat(s, o);
    }
    if (sq != NULL && sq->sq_concat != NULL) {
        return sq->sq_concat(s, o);
    }
    return number_concat(s, o, NB(nb_inplace_add), NB(nb_add));
}

PyObject *
PySequence_InPlaceRepeat(PyObject *o, Py_ssize_t count)
{
    if (o == NULL) {
        return null_error();
    }
    PySequenceMethods *sq = Py_TYPE(o)->tp_as_sequence;
    if (sq != NULL && sq->sq_inplace_repeat != NULL) {
        return sq->sq_inplace_repeat(o, count);
    }
    if (sq != NULL && sq->sq_repeat != NULL) {
        return sq->sq_repeat(o, count);
    }
    return number_repeat(o, count, NB(nb_inplace_multiply), NB(nb_multiply));
}

/* s[i1:i2].  CPython builds a slice object and calls mp_subscript; ftrt
 * has no slice objects yet, so only exact lists and tuples are sliced
 * (negative bounds count from the end, as a slice's do), and any other
 * type is "unsliceable". */
PyObject *
PySequence_GetSlice(PyObject *s, Py_ssize_t i1, Py_ssize_t i2)
{
    if (s == NULL) {
        return null_error();
    }
    if (PyList_CheckExact(s) && i1 >= 0 && i2 >= 0) {
        return PyList_GetSlice(s, i1, i2);   /* one copy under the list's lock */
    }
    if (!PyList_CheckExact(s) && !PyTuple_CheckExact(s)) {
        return type_error("'%.200s' object is unsliceable", s);
    }
    /* A negative bound needs the length the items are copied at: slice a
     * snapshot (a list's is taken under its lock). */
    PyObject *t = PySequence_Tuple(s);
    if (t == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    PyObject *res = PyTuple_GetSlice(t, i1 < 0 ? i1 + n : i1, i2 < 0 ? i2 + n : i2);
    Py_DECREF(t);
    if (res != NULL && PyList_CheckExact(s)) {
        Py_SETREF(res, PySequence_List(res));
    }
    return res;
}

PyObject *
PySequence_List(PyObject *o)
{
    if (o == NULL) {
        return null_error();
    }
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    if (PyList_Extend(list, o) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

PyObject *
PySequence_Tuple(PyObject *o)
{
    if (o == NULL) {
        return null_error();
    }
    if (PyTuple_CheckExact(o)) {
        return Py_NewRef(o);
    }
    if (PyList_Check(o)) {
        return PyList_AsTuple(o);
    }
    PyObject *list = PySequence_List(o);
    if (list == NULL) {
        return NULL;
    }
    PyObject *t = PyList_AsTuple(list);
    Py_DECREF(list);
    return t;
}

PyObject *
PySequence_Fast(PyObject *o, const char *m)
{
    if (o == NULL) {
        return null_error();
    }
    if (PyList_CheckExact(o) || PyTuple_CheckExact(o)) {
        return Py_NewRef(o);
    }
    PyObject *it = PyObject_GetIter(o);
    if (it == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_SetString(PyExc_TypeError, m);
        }
        return NULL;
    }
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        Py_DECREF(it);
        return NULL;
    }
    int rc = PyList_Extend(list, it);
    Py_DECREF(it);
    if (rc < 0) {
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

/* ---- numbers ---------------------------------------------------------------------------- */

int
PyIndex_Check(PyObject *o)
{
    PyNumberMethods *nb = Py_TYPE(o)->tp_as_number;
    return nb != NULL && nb->nb_index != NULL;
}

static PyObject *
number_index(PyObject *o)
{
    if (o == NULL) {
        return null_error();
    }
    if (PyType_HasFeature(Py_TYPE(o), Py_TPFLAGS_LONG_SUBCLASS)) {
        return Py_NewRef(o);
    }
    if (!PyIndex_Check(o)) {
        return type_error("'%.200s' object cannot be interpreted as an integer", o);
    }
    PyObject *res = Py_TYPE(o)->tp_as_number->nb_index(o);
    if (res == NULL) {
        return NULL;
    }
    if (!PyType_HasFeature(Py_TYPE(res), Py_TPFLAGS_LONG_SUBCLASS)) {
        PyErr_Format(PyExc_TypeError, "__index__ returned non-int (type %.200s)",
                     Py_TYPE(res)->tp_name);
        Py_DECREF(res);
        return NULL;
    }
    return res;
}

/* The public one returns an exact int (CPython copies an int subclass's
 * value; bool gives 0 or 1 as an int). */
static PyObject *
exact_int(PyObject *res)
{
    if (res == NULL || PyLong_CheckExact(res)) {
        return res;
    }
    long long v = PyLong_AsLongLong(res);   /* 64-bit ints: a subclass fits too */
    Py_DECREF(res);
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyLong_FromLongLong(v);
}

int
ft_subscript_index(PyObject *key, const char *bad_key_fmt, Py_ssize_t *index)
{
    if (!PyIndex_Check(key)) {
        PyErr_Format(PyExc_TypeError, bad_key_fmt, Py_TYPE(key)->tp_name);
        return -1;
    }
    *index = PyNumber_AsSsize_t(key, PyExc_IndexError);
    return *index == -1 && PyErr_Occurred() ? -1 : 0;
}

PyObject *
PyNumber_Index(PyObject *o)
{
    return exact_int(number_index(o));
}

Py_ssize_t
PyNumber_AsSsize_t(PyObject *o, PyObject *exc)
{
    PyObject *idx = number_index(o);
    if (idx == NULL) {
        return -1;
    }
    Py_ssize_t v = PyLong_AsSsize_t(idx);
    if (v != -1 || !PyErr_Occurred()) {
        Py_DECREF(idx);
        return v;
    }
    if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
        Py_DECREF(idx);
        return -1;
    }
    PyErr_Clear();
    if (exc != NULL) {
        Py_DECREF(idx);
        PyErr_Format(exc, "cannot fit '%.200s' into an index-sized integer",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    /* Clamp by the sign. */
    PyObject *zero = PyLong_FromLong(0);
    int neg = zero == NULL ? -1 : PyObject_RichCompareBool(idx, zero, Py_LT);
    Py_XDECREF(zero);
    Py_DECREF(idx);
    if (neg < 0) {
        return -1;
    }
    return neg ? PY_SSIZE_T_MIN : PY_SSIZE_T_MAX;
}
