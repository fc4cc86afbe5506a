/* Dictionaries (core/dictobject.c): every PyDict_* function and its error
 * cases, the type's slots and iterator, out-of-memory on insert, resize,
 * copy and merge, insertion order, and the free-threaded protocol: the
 * lock-free lookup racing inserts, deletions and resizes, a non-owner
 * reader forced onto the locked path (which makes the dict SHARED), and a
 * key whose comparison mutates the dict during a lookup.  Scenarios G66
 * and G67 (both adapted) and G68 of cpython-ft-internals.md §14 and the
 * issue's 8-thread stress.  The repr: formats, recursion, a failing or
 * dict-emptying value repr, and a repr racing a thread that clears and
 * refills the dict (out of memory in the repr: test_listobject.c).
 *
 * Keys are a test type (tkey: a number, a hash that can be made to collide,
 * an equality that can mutate a dict) so the tests control hashing and
 * comparison; one test uses str keys through the *String forms.
 *
 * Other threads only record into atomics; the main thread asserts.  The main
 * thread detaches while workers run (they attach with PyGILState_Ensure), so
 * the same tests run in the GIL build.
 */
#include "harness.h"
#include "test_objects.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_dict.h"
#include "ft_object.h"
#include "ft_pystate.h"

TestSuite(dict, .timeout = FT_TIMEOUT(120));

/* ---- the key type ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    long v;
} tkey;

static atomic_long tkey_live;        /* tkeys not yet destroyed */
static atomic_long hash_mod;         /* hash = v % hash_mod (collisions on demand) */
/* A comparison hook: while armed, a comparison of a tkey inserts
 * `mutate_n` fresh keys into mutate_dict (forcing resizes) once. */
static PyObject *_Atomic mutate_dict;
static atomic_int mutate_n;
static atomic_int mutate_fired;

static void
tkey_dealloc(PyObject *op)
{
    atomic_fetch_sub(&tkey_live, 1);
    PyObject_Free(op);
}

static Py_hash_t
tkey_hash(PyObject *op)
{
    Py_hash_t h = ((tkey *)op)->v % atomic_load(&hash_mod);
    return h == -1 ? -2 : h;
}

static PyTypeObject tkey_type;
static PyObject *tk(long v);

static PyObject *
tkey_richcompare(PyObject *a, PyObject *b, int op)
{
    if (!Py_IS_TYPE(b, &tkey_type) || (op != Py_EQ && op != Py_NE)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    /* Load first: an exchange on every comparison would make the
     * benchmark threads bounce this line. */
    PyObject *d = atomic_load_explicit(&mutate_dict, memory_order_relaxed) != NULL
                      ? atomic_exchange(&mutate_dict, NULL) : NULL;
    if (d != NULL) {
        for (int i = 0; i < atomic_load(&mutate_n); i++) {
            PyObject *k = tk(1000000 + i);
            PyDict_SetItem(d, k, k);
            Py_DECREF(k);
        }
        atomic_fetch_add(&mutate_fired, 1);
    }
    bool eq = ((tkey *)a)->v == ((tkey *)b)->v;
    if (eq == (op == Py_EQ)) {
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyTypeObject tkey_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.tkey",
    .tp_basicsize = sizeof(tkey),
    .tp_dealloc = tkey_dealloc,
    .tp_hash = tkey_hash,
    .tp_richcompare = tkey_richcompare,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

/* Unhashable: CPython's marker slot, PyObject_Hash raises TypeError. */
static PyTypeObject unhashable_type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "test.unhashable",
    .tp_basicsize = sizeof(PyObject),
    .tp_dealloc = (destructor)PyObject_Free,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

static PyObject *
tk(long v)
{
    tkey *op = PyObject_Malloc(sizeof(tkey));
    if (op == NULL) {
        return NULL;
    }
    PyObject_Init((PyObject *)op, &tkey_type);
    op->v = v;
    atomic_fetch_add(&tkey_live, 1);
    return (PyObject *)op;
}

static long tv(PyObject *op) { return ((tkey *)op)->v; }

static PyObject *
unhashable_new(void)
{
    PyObject *op = PyObject_Malloc(sizeof(PyObject));
    cr_assert_not_null(op);
    return PyObject_Init(op, &unhashable_type);
}

static void
setup(void)
{
    atomic_store(&tkey_live, 0);
    atomic_store(&hash_mod, 1L << 40);
    atomic_store(&mutate_dict, NULL);
    atomic_store(&mutate_fired, 0);
    Py_InitializeEx(0);
    cr_assert_eq(PyType_Ready(&tkey_type), 0);
    cr_assert_eq(PyType_Ready(&unhashable_type), 0);
}

static void
teardown(void)
{
    ft_alloc_fail_after(0);
    if (PyThreadState_GetUnchecked() != NULL) {
        cr_assert_eq(Py_FinalizeEx(), 0);
    }
}

/* d[k] = v with tkeys made from numbers. */
static void
set_kv(PyObject *d, long k, long v)
{
    PyObject *key = tk(k), *value = tk(v);
    cr_assert_eq(PyDict_SetItem(d, key, value), 0);
    Py_DECREF(key);
    Py_DECREF(value);
}

/* d[k] as a number, -1 if absent (asserts no error). */
static long
get_k(PyObject *d, long k)
{
    PyObject *key = tk(k), *value;
    int r = PyDict_GetItemRef(d, key, &value);
    Py_DECREF(key);
    cr_assert_geq(r, 0);
    if (r == 0) {
        cr_assert_null(value);
        return -1;
    }
    long out = tv(value);
    Py_DECREF(value);
    return out;
}

static void
assert_error(PyObject *type)
{
    cr_assert_not_null(PyErr_Occurred());
    cr_assert(PyErr_ExceptionMatches(type));
    PyErr_Clear();
}

/* ---- basics ------------------------------------------------------------------------ */

Test(dict, new_is_an_empty_tracked_dict, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    cr_assert_not_null(d);
    cr_assert(PyDict_CheckExact(d));
    cr_assert(PyDict_Check(d));
    cr_assert_eq(Py_TYPE(d), &PyDict_Type);
    cr_assert(PyObject_GC_IsTracked(d));
    cr_assert_eq(PyDict_Size(d), 0);
    cr_assert_eq(Py_TYPE(d)->tp_as_mapping->mp_length(d), 0);
    PyObject *k = tk(1);
    cr_assert_not(PyDict_Check(k));
    cr_assert_eq(PyObject_Hash(d), -1, "dicts are unhashable");
    assert_error(PyExc_TypeError);
    Py_DECREF(k);
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

Test(dict, set_and_get_references, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    PyObject *k = tk(7), *v = tk(70);
    cr_assert_eq(PyDict_SetItem(d, k, v), 0);
    cr_assert_eq(Py_REFCNT(k), 2, "the dict holds the key");
    cr_assert_eq(Py_REFCNT(v), 2, "the dict holds the value");
    cr_assert_eq(PyDict_Size(d), 1);

    PyObject *out = NULL;
    cr_assert_eq(PyDict_GetItemRef(d, k, &out), 1);
    cr_assert_eq(out, v);
    cr_assert_eq(Py_REFCNT(v), 3, "GetItemRef returns a new reference");
    Py_DECREF(out);

    PyObject *k2 = tk(7);   /* equal, not identical */
    cr_assert_eq(PyDict_GetItemRef(d, k2, &out), 1);
    cr_assert_eq(out, v);
    Py_DECREF(out);
    cr_assert_eq(PyDict_GetItemWithError(d, k2), v);
    cr_assert_eq(Py_REFCNT(v), 2, "GetItemWithError is borrowed");
    cr_assert_eq(PyDict_GetItem(d, k2), v);
    cr_assert_eq(PyDict_Contains(d, k2), 1);

    PyObject *missing = tk(8);
    out = v;
    cr_assert_eq(PyDict_GetItemRef(d, missing, &out), 0);
    cr_assert_null(out);
    cr_assert_null(PyErr_Occurred());
    cr_assert_null(PyDict_GetItemWithError(d, missing));
    cr_assert_null(PyErr_Occurred(), "absent is not an error");
    cr_assert_null(PyDict_GetItem(d, missing));
    cr_assert_eq(PyDict_Contains(d, missing), 0);

    Py_DECREF(missing);
    Py_DECREF(k2);
    Py_DECREF(d);
    cr_assert_eq(Py_REFCNT(k), 1);
    cr_assert_eq(Py_REFCNT(v), 1, "the destructor dropped the dict's references");
    Py_DECREF(k);
    Py_DECREF(v);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

Test(dict, replace_keeps_first_key_and_drops_old_value, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    PyObject *k1 = tk(1), *k1b = tk(1), *v1 = tk(10), *v2 = tk(20);
    cr_assert_eq(PyDict_SetItem(d, k1, v1), 0);
    cr_assert_eq(PyDict_SetItem(d, k1b, v2), 0);
    cr_assert_eq(PyDict_Size(d), 1);
    cr_assert_eq(Py_REFCNT(v1), 1, "old value released");
    cr_assert_eq(Py_REFCNT(k1b), 1, "the stored key stays the first one (CPython)");
    cr_assert_eq(Py_REFCNT(k1), 2);
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    cr_assert(PyDict_Next(d, &pos, &key, &value));
    cr_assert_eq(key, k1);
    cr_assert_eq(value, v2);
    cr_assert_not(PyDict_Next(d, &pos, &key, &value));
    Py_DECREF(d);
    Py_DECREF(k1);
    Py_DECREF(k1b);
    Py_DECREF(v1);
    Py_DECREF(v2);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

Test(dict, delitem_and_keyerror, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    set_kv(d, 1, 10);
    set_kv(d, 2, 20);
    PyObject *k1 = tk(1);
    cr_assert_eq(PyDict_DelItem(d, k1), 0);
    cr_assert_eq(PyDict_Size(d), 1);
    cr_assert_eq(get_k(d, 1), -1);
    cr_assert_eq(get_k(d, 2), 20);
    cr_assert_eq(PyDict_DelItem(d, k1), -1);
    cr_assert(PyErr_ExceptionMatches(PyExc_KeyError));
    PyErr_Clear();
    /* Delete everything, then re-insert: slots are DUMMY, not reused. */
    PyObject *k2 = tk(2);
    cr_assert_eq(PyDict_DelItem(d, k2), 0);
    cr_assert_eq(PyDict_Size(d), 0);
    set_kv(d, 1, 11);
    cr_assert_eq(get_k(d, 1), 11);
    cr_assert_eq(PyDict_Size(d), 1);
    Py_DECREF(k1);
    Py_DECREF(k2);
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

Test(dict, unhashable_keys_raise_typeerror, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    set_kv(d, 1, 1);
    PyObject *u = unhashable_new(), *v = tk(0), *out = v;
    cr_assert_eq(PyDict_SetItem(d, u, v), -1);
    assert_error(PyExc_TypeError);
    cr_assert_eq(PyDict_GetItemRef(d, u, &out), -1);
    cr_assert_null(out);
    assert_error(PyExc_TypeError);
    cr_assert_null(PyDict_GetItemWithError(d, u));
    assert_error(PyExc_TypeError);
    cr_assert_eq(PyDict_DelItem(d, u), -1);
    assert_error(PyExc_TypeError);
    cr_assert_eq(PyDict_Contains(d, u), -1);
    assert_error(PyExc_TypeError);
    out = v;
    cr_assert_eq(PyDict_Pop(d, u, &out), -1);
    cr_assert_null(out);
    assert_error(PyExc_TypeError);
    out = v;
    cr_assert_eq(PyDict_SetDefaultRef(d, u, v, &out), -1);
    cr_assert_null(out);
    assert_error(PyExc_TypeError);
    cr_assert_eq(Py_TYPE(d)->tp_as_mapping->mp_subscript(d, u), NULL);
    assert_error(PyExc_TypeError);
    /* PyDict_GetItem suppresses the error and keeps a pending one. */
    cr_assert_null(PyDict_GetItem(d, u));
    cr_assert_null(PyErr_Occurred());
    PyErr_SetString(PyExc_ValueError, "pending");
    cr_assert_null(PyDict_GetItem(d, u));
    assert_error(PyExc_ValueError);
    PyErr_SetString(PyExc_ValueError, "pending");
    PyObject *k1 = tk(1);
    cr_assert_not_null(PyDict_GetItem(d, k1), "a lookup works with an exception pending");
    assert_error(PyExc_ValueError);
    cr_assert_eq(PyDict_Size(d), 1);
    Py_DECREF(k1);
    Py_DECREF(u);
    Py_DECREF(v);
    Py_DECREF(d);
}

Test(dict, bad_internal_calls_raise_systemerror, .init = setup, .fini = teardown)
{
    PyObject *k = tk(1), *out = k;
    cr_assert_eq(PyDict_SetItem(k, k, k), -1);
    assert_error(PyExc_SystemError);
    cr_assert_eq(PyDict_GetItemRef(k, k, &out), -1);
    cr_assert_null(out);
    assert_error(PyExc_SystemError);
    cr_assert_null(PyDict_GetItemWithError(k, k));
    assert_error(PyExc_SystemError);
    cr_assert_null(PyDict_GetItem(k, k));
    cr_assert_null(PyErr_Occurred(), "GetItem: no exception");
    cr_assert_eq(PyDict_DelItem(k, k), -1);
    assert_error(PyExc_SystemError);
    cr_assert_eq(PyDict_Contains(k, k), -1);
    assert_error(PyExc_SystemError);
    cr_assert_eq(PyDict_Size(k), -1);
    assert_error(PyExc_SystemError);
    cr_assert_null(PyDict_Copy(k));
    assert_error(PyExc_SystemError);
    out = k;
    cr_assert_eq(PyDict_Pop(k, k, &out), -1);
    cr_assert_null(out);
    assert_error(PyExc_SystemError);
    out = k;
    cr_assert_eq(PyDict_SetDefaultRef(k, k, k, &out), -1);
    cr_assert_null(out);
    assert_error(PyExc_SystemError);
    cr_assert_eq(PyDict_Merge(k, k, 1), -1);
    assert_error(PyExc_SystemError);
    cr_assert_eq(PyDict_Update(k, k), -1);
    assert_error(PyExc_SystemError);
    Py_ssize_t pos = 0;
    PyObject *a, *b;
    cr_assert_eq(PyDict_Next(k, &pos, &a, &b), 0);
    PyDict_Clear(k);   /* ignored, as in CPython */
    cr_assert_null(PyErr_Occurred());
    PyObject *d = PyDict_New();
    cr_assert_eq(PyDict_SetItem(d, k, NULL), -1);
    assert_error(PyExc_SystemError);
    cr_assert_eq(PyDict_SetItem(d, NULL, k), -1);
    assert_error(PyExc_SystemError);
    cr_assert_eq(PyDict_Size(d), 0);
    Py_DECREF(d);
    Py_DECREF(k);
}

/* ---- order, resize, iteration ------------------------------------------------------ */

/* Keys of d in PyDict_Next order into out (at most cap); returns the count. */
static Py_ssize_t
keys_in_order(PyObject *d, long *out, Py_ssize_t cap)
{
    Py_ssize_t pos = 0, n = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &pos, &k, &v)) {
        cr_assert_lt(n, cap);
        cr_assert_eq(tv(v), tv(k) * 10, "value belongs to its key");
        out[n++] = tv(k);
    }
    return n;
}

static void
order_and_resize(long mod)
{
    atomic_store(&hash_mod, mod);
    enum { N = 5000 };
    PyObject *d = PyDict_New();
    /* Insert in a scrambled order: 7919 is prime to N, so i*7919 % N visits
     * every number once. */
    static long inserted[N];
    for (long i = 0; i < N; i++) {
        inserted[i] = (i * 7919) % N;
        set_kv(d, inserted[i], inserted[i] * 10);
    }
    cr_assert_eq(PyDict_Size(d), N);
    /* Delete the even positions, then re-insert the first 100 of them: they
     * go to the end. */
    for (long i = 0; i < N; i += 2) {
        PyObject *k = tk(inserted[i]);
        cr_assert_eq(PyDict_DelItem(d, k), 0);
        Py_DECREF(k);
    }
    cr_assert_eq(PyDict_Size(d), N / 2);
    for (long i = 0; i < 200; i += 2) {
        set_kv(d, inserted[i], inserted[i] * 10);
    }
    static long got[N];
    Py_ssize_t n = keys_in_order(d, got, N);
    cr_assert_eq(n, N / 2 + 100);
    Py_ssize_t j = 0;
    for (long i = 1; i < N; i += 2) {
        cr_assert_eq(got[j++], inserted[i], "surviving keys keep their order");
    }
    for (long i = 0; i < 200; i += 2) {
        cr_assert_eq(got[j++], inserted[i], "re-inserted keys go last");
    }
    for (long i = 0; i < N; i++) {
        bool present = (i % 2 == 1) || i < 200;
        cr_assert_eq(get_k(d, inserted[i]), present ? inserted[i] * 10 : -1);
    }
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

Test(dict, insertion_order_survives_deletes_and_resizes, .init = setup, .fini = teardown)
{
    order_and_resize(1L << 40);
}

Test(dict, colliding_hashes_still_work, .init = setup, .fini = teardown)
{
    order_and_resize(7);   /* every key in one of 7 probe chains */
}

Test(dict, next_walks_items_by_position, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    cr_assert_eq(PyDict_Next(d, &pos, &k, &v), 0, "empty");
    for (long i = 0; i < 3; i++) {
        set_kv(d, i, i * 10);
    }
    pos = 0;
    cr_assert(PyDict_Next(d, &pos, &k, NULL));
    cr_assert_eq(tv(k), 0);
    cr_assert(PyDict_Next(d, &pos, NULL, &v));
    cr_assert_eq(tv(v), 10);
    cr_assert(PyDict_Next(d, &pos, &k, &v));
    cr_assert_eq(tv(k), 2);
    cr_assert_not(PyDict_Next(d, &pos, &k, &v));
    pos = -1;
    cr_assert_not(PyDict_Next(d, &pos, &k, &v), "a negative position ends");
    Py_DECREF(d);
}

Test(dict, iterator_yields_keys_and_detects_size_changes, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    for (long i = 0; i < 4; i++) {
        set_kv(d, i, i * 10);
    }
    PyObject *it = Py_TYPE(d)->tp_iter(d);
    cr_assert_not_null(it);
    cr_assert_eq(Py_TYPE(it), &PyDictIterKey_Type);
    cr_assert_eq(Py_TYPE(it)->tp_iter(it), it);
    Py_DECREF(it);   /* the tp_iter reference */
    for (long i = 0; i < 4; i++) {
        PyObject *k = Py_TYPE(it)->tp_iternext(it);
        cr_assert_not_null(k);
        cr_assert_eq(tv(k), i);
        Py_DECREF(k);
    }
    cr_assert_null(Py_TYPE(it)->tp_iternext(it));
    cr_assert_null(PyErr_Occurred(), "exhaustion is not an error");
    cr_assert_null(Py_TYPE(it)->tp_iternext(it));
    Py_DECREF(it);

    it = Py_TYPE(d)->tp_iter(d);
    PyObject *k = Py_TYPE(it)->tp_iternext(it);
    Py_DECREF(k);
    set_kv(d, 99, 990);
    cr_assert_null(Py_TYPE(it)->tp_iternext(it));
    cr_assert_not_null(PyErr_Occurred());
    cr_assert(PyErr_ExceptionMatches(PyExc_RuntimeError));
    PyErr_Clear();
    PyObject *k99 = tk(99);
    cr_assert_eq(PyDict_DelItem(d, k99), 0);   /* size back to 4: still an error */
    Py_DECREF(k99);
    cr_assert_null(Py_TYPE(it)->tp_iternext(it));
    assert_error(PyExc_RuntimeError);
    Py_DECREF(it);
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* ---- whole-dict operations ---------------------------------------------------------- */

Test(dict, clear_copy_merge_update, .init = setup, .fini = teardown)
{
    PyObject *a = PyDict_New();
    for (long i = 0; i < 20; i++) {
        set_kv(a, i, i * 10);
    }
    PyObject *c = PyDict_Copy(a);
    cr_assert_not_null(c);
    cr_assert_eq(PyDict_Size(c), 20);
    long order[40];
    cr_assert_eq(keys_in_order(c, order, 40), 20);
    for (long i = 0; i < 20; i++) {
        cr_assert_eq(order[i], i, "a copy keeps the order");
    }
    PyDict_Clear(a);
    cr_assert_eq(PyDict_Size(a), 0);
    cr_assert_eq(get_k(a, 3), -1);
    cr_assert_eq(get_k(c, 3), 30, "the copy is independent");
    PyDict_Clear(a);   /* clearing an empty dict */
    set_kv(a, 3, 30);
    cr_assert_eq(get_k(a, 3), 30, "usable after a clear");

    /* Merge: override 0 keeps a's values, 1 takes b's. */
    PyObject *b = PyDict_New();
    set_kv(b, 3, 333);   /* value != key*10 on purpose */
    set_kv(b, 100, 1000);
    cr_assert_eq(PyDict_Merge(a, b, 0), 0);
    cr_assert_eq(get_k(a, 3), 30);
    cr_assert_eq(get_k(a, 100), 1000);
    cr_assert_eq(PyDict_Merge(a, b, 1), 0);
    cr_assert_eq(get_k(a, 3), 333);
    cr_assert_eq(PyDict_Size(a), 2);
    cr_assert_eq(PyDict_Update(c, b), 0);
    cr_assert_eq(PyDict_Size(c), 21);
    cr_assert_eq(get_k(c, 3), 333);
    cr_assert_eq(PyDict_Merge(a, a, 1), 0, "merging into itself changes nothing");
    cr_assert_eq(PyDict_Size(a), 2);
    PyObject *e = PyDict_New();
    cr_assert_eq(PyDict_Merge(a, e, 1), 0);
    cr_assert_eq(PyDict_Size(a), 2);
    PyObject *k = tk(1);
    cr_assert_eq(PyDict_Merge(a, k, 1), -1, "generic mappings: not supported");
    assert_error(PyExc_TypeError);
    cr_assert_eq(PyDict_Merge(a, NULL, 1), -1);
    assert_error(PyExc_SystemError);
    Py_DECREF(k);
    Py_DECREF(e);
    Py_DECREF(a);
    Py_DECREF(b);
    Py_DECREF(c);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

Test(dict, setdefaultref, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    PyObject *k = tk(5), *def = tk(50), *def2 = tk(51), *out = NULL;
    cr_assert_eq(PyDict_SetDefaultRef(d, k, def, &out), 0, "inserted");
    cr_assert_eq(out, def);
    cr_assert_eq(Py_REFCNT(def), 3, "caller, dict, result");
    Py_DECREF(out);
    cr_assert_eq(PyDict_SetDefaultRef(d, k, def2, &out), 1, "present");
    cr_assert_eq(out, def);
    Py_DECREF(out);
    cr_assert_eq(Py_REFCNT(def2), 1, "the default was not stored");
    cr_assert_eq(PyDict_SetDefaultRef(d, k, def2, NULL), 1, "result may be NULL");
    PyObject *k6 = tk(6);
    cr_assert_eq(PyDict_SetDefaultRef(d, k6, def2, NULL), 0);
    cr_assert_eq(get_k(d, 6), 51);
    cr_assert_eq(PyDict_SetDefaultRef(d, k6, NULL, &out), -1);
    assert_error(PyExc_SystemError);
    Py_DECREF(k6);
    Py_DECREF(k);
    Py_DECREF(def);
    Py_DECREF(def2);
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

Test(dict, pop, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    PyObject *u = unhashable_new(), *out = u;
    cr_assert_eq(PyDict_Pop(d, u, &out), 0, "an empty dict does not hash the key");
    cr_assert_null(out);
    cr_assert_null(PyErr_Occurred());
    set_kv(d, 1, 10);
    set_kv(d, 2, 20);
    PyObject *k1 = tk(1), *k3 = tk(3);
    cr_assert_eq(PyDict_Pop(d, k1, &out), 1);
    cr_assert_eq(tv(out), 10);
    cr_assert_eq(Py_REFCNT(out), 1, "the only reference is the caller's");
    Py_DECREF(out);
    cr_assert_eq(PyDict_Size(d), 1);
    out = k1;
    cr_assert_eq(PyDict_Pop(d, k1, &out), 0, "absent: no KeyError");
    cr_assert_null(out);
    cr_assert_null(PyErr_Occurred());
    cr_assert_eq(PyDict_Pop(d, k3, NULL), 0);
    PyObject *k2 = tk(2);
    cr_assert_eq(PyDict_Pop(d, k2, NULL), 1, "result may be NULL");
    cr_assert_eq(PyDict_Size(d), 0);
    Py_DECREF(k1);
    Py_DECREF(k2);
    Py_DECREF(k3);
    Py_DECREF(u);
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

Test(dict, richcompare_eq_ne_only, .init = setup, .fini = teardown)
{
    PyObject *a = PyDict_New(), *b = PyDict_New();
    richcmpfunc cmp = PyDict_Type.tp_richcompare;
    cr_assert_eq(cmp(a, b, Py_EQ), Py_True, "two empty dicts");
    for (long i = 0; i < 10; i++) {
        set_kv(a, i, i * 10);
        set_kv(b, 9 - i, (9 - i) * 10);   /* other order: still equal */
    }
    cr_assert_eq(cmp(a, b, Py_EQ), Py_True);
    cr_assert_eq(cmp(a, b, Py_NE), Py_False);
    cr_assert_eq(cmp(a, a, Py_EQ), Py_True);
    set_kv(b, 4, 41);
    cr_assert_eq(cmp(a, b, Py_EQ), Py_False, "one value differs");
    cr_assert_eq(cmp(a, b, Py_NE), Py_True);
    set_kv(b, 4, 40);
    set_kv(b, 11, 110);
    cr_assert_eq(cmp(a, b, Py_EQ), Py_False, "sizes differ");
    set_kv(a, 12, 110);
    cr_assert_eq(cmp(a, b, Py_EQ), Py_False, "same size, one key differs");
    cr_assert_eq(cmp(a, b, Py_LT), Py_NotImplemented);
    PyObject *k = tk(1);
    cr_assert_eq(cmp(a, k, Py_EQ), Py_NotImplemented);
    cr_assert_eq(PyObject_RichCompareBool(a, b, Py_NE), 1);
    Py_DECREF(k);
    Py_DECREF(a);
    Py_DECREF(b);
}

Test(dict, mapping_and_sequence_slots, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    PyMappingMethods *mp = PyDict_Type.tp_as_mapping;
    PyObject *k = tk(1), *v = tk(10);
    cr_assert_eq(mp->mp_ass_subscript(d, k, v), 0);
    cr_assert_eq(mp->mp_length(d), 1);
    PyObject *got = mp->mp_subscript(d, k);
    cr_assert_eq(got, v);
    Py_DECREF(got);
    cr_assert_eq(PyDict_Type.tp_as_sequence->sq_contains(d, k), 1);
    cr_assert_eq(mp->mp_ass_subscript(d, k, NULL), 0);
    cr_assert_eq(PyDict_Type.tp_as_sequence->sq_contains(d, k), 0);
    cr_assert_null(mp->mp_subscript(d, k));
    assert_error(PyExc_KeyError);
    cr_assert_eq(mp->mp_ass_subscript(d, k, NULL), -1);
    assert_error(PyExc_KeyError);
    Py_DECREF(k);
    Py_DECREF(v);
    Py_DECREF(d);
}

Test(dict, string_key_forms, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    PyObject *v = tk(1), *out = NULL;
    cr_assert_eq(PyDict_SetItemString(d, "alpha", v), 0);
    cr_assert_eq(PyDict_GetItemStringRef(d, "alpha", &out), 1);
    cr_assert_eq(out, v);
    Py_DECREF(out);
    PyObject *s = PyUnicode_FromString("alpha");
    cr_assert_not_null(s);
    cr_assert_eq(PyDict_GetItemWithError(d, s), v, "a str key from elsewhere finds it");
    cr_assert_eq(PyDict_GetItemStringRef(d, "beta", &out), 0);
    cr_assert_null(out);
    /* The borrowed form and the 3.13 membership test. */
    cr_assert_eq(PyDict_GetItemString(d, "alpha"), v);
    cr_assert_null(PyDict_GetItemString(d, "beta"));
    cr_assert_null(PyErr_Occurred(), "a miss sets nothing");
    cr_assert_eq(PyDict_ContainsString(d, "alpha"), 1);
    cr_assert_eq(PyDict_ContainsString(d, "beta"), 0);
    cr_assert_eq(PyDict_ContainsString(d, "\xff"), -1, "not UTF-8");
    assert_error(PyExc_UnicodeDecodeError);
    PyErr_SetString(PyExc_RuntimeError, "pending");
    cr_assert_null(PyDict_GetItemString(d, "\xff"), "a bad key is a miss");
    assert_error(PyExc_RuntimeError);   /* the pending exception survives */
    cr_assert_null(PyDict_GetItemString(s, "alpha"), "not a dict: NULL, no exception");
    cr_assert_null(PyErr_Occurred());
    cr_assert_eq(PyDict_DelItemString(d, "alpha"), 0);
    cr_assert_eq(PyDict_DelItemString(d, "alpha"), -1);
    assert_error(PyExc_KeyError);
    cr_assert_eq(PyDict_Size(d), 0);
    /* Mixed key types in one dict. */
    PyObject *i = PyLong_FromLong(42);
    cr_assert_eq(PyDict_SetItem(d, i, v), 0);
    cr_assert_eq(PyDict_SetItem(d, s, v), 0);
    cr_assert_eq(PyDict_Size(d), 2);
    PyObject *i2 = PyLong_FromLong(42);
    cr_assert_eq(PyDict_Contains(d, i2), 1);
    Py_DECREF(i2);
    Py_DECREF(i);
    Py_DECREF(s);
    Py_DECREF(d);
    cr_assert_eq(Py_REFCNT(v), 1);
    Py_DECREF(v);
}

/* ---- out of memory ------------------------------------------------------------------ */

Test(dict, oom_on_first_insert_and_on_resize, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    PyObject *k = tk(0), *v = tk(0);
    ft_alloc_fail_after(1);   /* the first table */
    cr_assert_eq(PyDict_SetItem(d, k, v), -1);
    ft_alloc_fail_after(0);
    assert_error(PyExc_MemoryError);
    cr_assert_eq(PyDict_Size(d), 0);
    cr_assert_eq(Py_REFCNT(k), 1, "no reference kept on failure");
    cr_assert_eq(Py_REFCNT(v), 1);
    /* A table of 8 slots holds 5 entries: the 6th insert resizes. */
    for (long i = 0; i < 5; i++) {
        set_kv(d, i, i * 10);
    }
    PyObject *k5 = tk(5);
    ft_alloc_fail_after(1);
    cr_assert_eq(PyDict_SetItem(d, k5, v), -1);
    ft_alloc_fail_after(0);
    assert_error(PyExc_MemoryError);
    cr_assert_eq(PyDict_Size(d), 5);
    for (long i = 0; i < 5; i++) {
        cr_assert_eq(get_k(d, i), i * 10, "unchanged after a failed resize");
    }
    cr_assert_eq(Py_REFCNT(k5), 1);
    /* Replacing a value never allocates. */
    PyObject *k0 = tk(0);
    ft_alloc_fail_after(1);
    cr_assert_eq(PyDict_SetItem(d, k0, v), 0);
    ft_alloc_fail_after(0);
    cr_assert_eq(PyDict_SetItem(d, k5, v), 0, "works once memory is back");
    cr_assert_eq(PyDict_Size(d), 6);
    Py_DECREF(k0);
    Py_DECREF(k5);
    Py_DECREF(k);
    Py_DECREF(v);
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

Test(dict, oom_in_copy_and_merge_at_every_allocation, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    for (long i = 0; i < 50; i++) {
        set_kv(d, i, i * 10);
    }
    /* Fail the 1st, 2nd, ... allocation of a copy until one succeeds: each
     * failure is a clean MemoryError. */
    int failures = 0;
    for (long nth = 1; nth < 100; nth++) {
        ft_alloc_fail_after(nth);
        PyObject *c = PyDict_Copy(d);
        ft_alloc_fail_after(0);
        if (c != NULL) {
            cr_assert_null(PyErr_Occurred());
            cr_assert_eq(PyDict_Size(c), 50);
            cr_assert_eq(get_k(c, 49), 490);
            Py_DECREF(c);
            break;
        }
        assert_error(PyExc_MemoryError);
        failures++;
    }
    cr_assert_geq(failures, 2, "the dict object and its table (and the snapshot)");
    PyObject *target = PyDict_New();
    set_kv(target, 1000, 10000);
    ft_alloc_fail_after(1);   /* the snapshot of d */
    cr_assert_eq(PyDict_Merge(target, d, 1), -1);
    ft_alloc_fail_after(0);
    assert_error(PyExc_MemoryError);
    cr_assert_eq(PyDict_Size(target), 1);
    ft_alloc_fail_after(2);   /* target's resize */
    cr_assert_eq(PyDict_Merge(target, d, 1), -1);
    ft_alloc_fail_after(0);
    assert_error(PyExc_MemoryError);
    cr_assert_eq(PyDict_Size(target), 1);
    cr_assert_eq(get_k(target, 1000), 10000);
    Py_DECREF(target);
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* ---- a comparison that mutates the dict --------------------------------------------- */

Test(dict, lookup_survives_a_comparison_that_resizes_the_dict, .init = setup,
     .fini = teardown)
{
    atomic_store(&hash_mod, 1);   /* every key collides: every probe compares */
    PyObject *d = PyDict_New();
    for (long i = 0; i < 4; i++) {
        set_kv(d, i, i * 10);
    }
    /* Owner's lookup (the lock-free path in the free-threaded build). */
    atomic_store(&mutate_n, 50);
    atomic_store(&mutate_dict, d);
    cr_assert_eq(get_k(d, 3), 30);
    cr_assert_eq(atomic_load(&mutate_fired), 1);
    cr_assert_eq(PyDict_Size(d), 54);
    /* A locked path: an insert whose lookup compares and resizes. */
    atomic_store(&mutate_n, 60);
    atomic_store(&mutate_dict, d);
    set_kv(d, 2, 20);
    cr_assert_eq(atomic_load(&mutate_fired), 2);
    cr_assert_eq(PyDict_Size(d), 64, "50 + 10 new mutation keys, key 2 replaced");
    cr_assert_eq(get_k(d, 2), 20);
    /* And a delete. */
    atomic_store(&mutate_n, 100);
    atomic_store(&mutate_dict, d);
    PyObject *k1 = tk(1);
    cr_assert_eq(PyDict_DelItem(d, k1), 0);
    Py_DECREF(k1);
    cr_assert_eq(atomic_load(&mutate_fired), 3);
    cr_assert_eq(get_k(d, 1), -1);
    cr_assert_eq(PyDict_Size(d), 103);
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* ---- threads --------------------------------------------------------------------------- */

typedef struct worker worker;
struct worker {
    void (*fn)(worker *);
    int id;
    PyObject *d;
    PyObject **dicts;
    atomic_long errors;     /* unexpected results seen */
    long count;
    atomic_bool *go;
    pthread_t thread;
};

static void *
worker_main(void *p)
{
    worker *w = p;
    TEST_HELPER_WAIT(atomic_load(w->go), 10000);   /* detached meanwhile: no GIL held */
    PyGILState_STATE g = PyGILState_Ensure();
    w->fn(w);
    PyGILState_Release(g);
    return NULL;
}

/* Run n workers on fn, the main thread detached meanwhile. */
static void
run_workers(worker *ws, int n, void (*fn)(worker *), PyObject *d, PyObject **dicts)
{
    atomic_bool go = false;
    PyThreadState *save = PyEval_SaveThread();
    for (int i = 0; i < n; i++) {
        ws[i].fn = fn;
        ws[i].id = i;
        ws[i].d = d;
        ws[i].dicts = dicts;
        atomic_store(&ws[i].errors, 0);
        ws[i].go = &go;
        ws[i].thread = test_start_thread(worker_main, &ws[i]);
    }
    atomic_store(&go, true);
    for (int i = 0; i < n; i++) {
        test_join_thread(ws[i].thread);
    }
    PyEval_RestoreThread(save);
}

static long
total_errors(worker *ws, int n)
{
    long e = 0;
    for (int i = 0; i < n; i++) {
        e += atomic_load(&ws[i].errors);
    }
    return e;
}

/* A non-owner's lookup on a dict that is not SHARED takes the lock and
 * makes it SHARED; later lookups go lock-free. */
static void
nonowner_reads(worker *w)
{
    for (int i = 0; i < 3; i++) {
        PyObject *k = tk(1), *v = NULL;
        if (PyDict_GetItemRef(w->d, k, &v) != 1 || tv(v) != 10) {
            atomic_fetch_add(&w->errors, 1);
        }
        Py_XDECREF(v);
        Py_DECREF(k);
    }
}

Test(dict, nonowner_read_takes_the_lock_and_shares_the_dict, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    PyObject *k = tk(1), *v = tk(10);
    cr_assert_eq(PyDict_SetItem(d, k, v), 0);
    if (ft_free_threaded) {
        cr_assert_eq(ft_gc_bits(d) & FT_GC_SHARED, 0, "private until another thread reads");
    }
    int64_t locked_before = ft_dict_locked_lookups();
    worker w[1];
    run_workers(w, 1, nonowner_reads, d, NULL);
    cr_assert_eq(total_errors(w, 1), 0);
    if (ft_free_threaded) {
        cr_assert_eq(ft_dict_locked_lookups() - locked_before, 1,
                     "the first read locked, the next two did not");
        cr_assert_neq(ft_gc_bits(d) & FT_GC_SHARED, 0);
#ifdef Py_GIL_DISABLED
        cr_assert_neq(__atomic_load_n(&k->ob_ref_shared, __ATOMIC_RELAXED) & _Py_REF_SHARED_FLAG_MASK,
                      0, "the key was marked for try-incref readers");
        cr_assert_neq(__atomic_load_n(&v->ob_ref_shared, __ATOMIC_RELAXED) & _Py_REF_SHARED_FLAG_MASK,
                      0, "the value was marked");
#endif
    }
    Py_DECREF(k);
    Py_DECREF(v);
    Py_DECREF(d);
}

/* G66 adapted: 100 dicts, 10 threads, thread i sets key a0i on every dict. */
enum { G66_DICTS = 100, G66_THREADS = 10 };

static void
g66_worker(worker *w)
{
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < G66_DICTS; i++) {
            char name[8];
            snprintf(name, sizeof name, "a%02d", w->id);
            PyObject *v = tk(w->id);
            if (PyDict_SetItemString(w->dicts[i], name, v) != 0) {
                atomic_fetch_add(&w->errors, 1);
            }
            Py_DECREF(v);
        }
    }
}

Test(dict, g66_hundred_dicts_ten_threads_distinct_keys, .init = setup, .fini = teardown)
{
    PyObject *dicts[G66_DICTS];
    for (int i = 0; i < G66_DICTS; i++) {
        dicts[i] = PyDict_New();
    }
    worker w[G66_THREADS];
    run_workers(w, G66_THREADS, g66_worker, NULL, dicts);
    cr_assert_eq(total_errors(w, G66_THREADS), 0);
    for (int i = 0; i < G66_DICTS; i++) {
        cr_assert_eq(PyDict_Size(dicts[i]), G66_THREADS, "dict %d", i);
        for (int t = 0; t < G66_THREADS; t++) {
            char name[8];
            snprintf(name, sizeof name, "a%02d", t);
            PyObject *v;
            cr_assert_eq(PyDict_GetItemStringRef(dicts[i], name, &v), 1);
            cr_assert_eq(tv(v), t);
            Py_DECREF(v);
        }
        Py_DECREF(dicts[i]);
    }
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* G68: 10 threads x 1000 of d[10] = 0; d[10]; del d[10]. */
static void
g68_worker(worker *w)
{
    PyObject *k = tk(10), *zero = tk(0);
    for (int i = 0; i < 1000; i++) {
        if (PyDict_SetItem(w->d, k, zero) != 0) {
            atomic_fetch_add(&w->errors, 1);
        }
        PyObject *v;
        int r = PyDict_GetItemRef(w->d, k, &v);
        if (r < 0 || (r == 1 && tv(v) != 0)) {   /* any thread's 0 */
            atomic_fetch_add(&w->errors, 1);
        }
        Py_XDECREF(v);
        if (PyDict_DelItem(w->d, k) != 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                atomic_fetch_add(&w->errors, 1);
            }
            PyErr_Clear();
        }
    }
    Py_DECREF(k);
    Py_DECREF(zero);
}

Test(dict, g68_set_get_del_one_key_from_ten_threads, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    worker w[10];
    run_workers(w, 10, g68_worker, d, NULL);
    cr_assert_eq(total_errors(w, 10), 0);
    cr_assert_eq(PyDict_Size(d), 0, "every set is followed by its thread's delete");
    cr_assert_eq(get_k(d, 10), -1);
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* The stress: 8 threads, random set/get/del on one dict.  Thread t
 * owns keys t*64 .. t*64+63 and keeps a model of them (value = key*1000 +
 * version); it also reads other threads' keys, whose value must belong to
 * the key.  At the end the dict holds exactly the union of the models. */
enum { ST_THREADS = 8, ST_KEYS = 64, ST_OPS = 20000 };
static long st_model[ST_THREADS][ST_KEYS];   /* -1 absent; written by its thread only */

static void
stress_worker(worker *w)
{
    uint64_t rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(w->id + 1);
    long *model = st_model[w->id];
    for (int i = 0; i < ST_KEYS; i++) {
        model[i] = -1;
    }
    for (long op = 0; op < ST_OPS; op++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        int slot = (int)(rng % ST_KEYS);
        long key = (long)w->id * ST_KEYS + slot;
        int what = (int)((rng >> 20) % 4);
        if (what == 0) {
            long v = key * 1000 + op % 1000;
            PyObject *k = tk(key), *vv = tk(v);
            if (PyDict_SetItem(w->d, k, vv) != 0) {
                atomic_fetch_add(&w->errors, 1);
            }
            model[slot] = v;
            Py_DECREF(k);
            Py_DECREF(vv);
        }
        else if (what == 1) {
            PyObject *k = tk(key);
            int r = PyDict_Pop(w->d, k, NULL);
            if (r != (model[slot] >= 0)) {
                atomic_fetch_add(&w->errors, 1);
            }
            model[slot] = -1;
            Py_DECREF(k);
        }
        else {
            /* Own key: exact; another thread's key: consistent. */
            bool own = what == 2;
            long rkey = own ? key : (long)((rng >> 32) % (ST_THREADS * ST_KEYS));
            PyObject *k = tk(rkey), *v = NULL;
            int r = PyDict_GetItemRef(w->d, k, &v);
            if (r < 0 || (r == 1 && tv(v) / 1000 != rkey)) {
                atomic_fetch_add(&w->errors, 1);
            }
            if (own && (r == 1 ? tv(v) : -1) != model[slot]) {
                atomic_fetch_add(&w->errors, 1);
            }
            Py_XDECREF(v);
            Py_DECREF(k);
        }
    }
}

Test(dict, stress_eight_threads_random_set_get_del, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    worker w[ST_THREADS];
    run_workers(w, ST_THREADS, stress_worker, d, NULL);
    cr_assert_eq(total_errors(w, ST_THREADS), 0);
    Py_ssize_t expected = 0;
    for (int t = 0; t < ST_THREADS; t++) {
        for (int i = 0; i < ST_KEYS; i++) {
            long key = (long)t * ST_KEYS + i;
            cr_assert_eq(get_k(d, key), st_model[t][i], "key %ld", key);
            expected += st_model[t][i] >= 0;
        }
    }
    cr_assert_eq(PyDict_Size(d), expected);
    Py_ssize_t pos = 0, n = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &pos, &k, &v)) {
        n++;
    }
    cr_assert_eq(n, expected, "no stray entries");
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* Lock-free readers racing a writer that inserts and deletes (resizing
 * again and again): the 16 stable keys, never deleted, are always found
 * with their values; in the free-threaded build the readers go lock-free. */
enum { RACE_STABLE = 16 };
static atomic_bool race_stop;

static void
race_writer(worker *w)
{
    for (long round = 0; round < 300; round++) {
        for (long i = 0; i < 200; i++) {
            set_kv(w->d, 1000 + i, (1000 + i) * 10);
        }
        for (long i = 0; i < 200; i++) {
            PyObject *k = tk(1000 + i);
            if (PyDict_DelItem(w->d, k) != 0) {
                atomic_fetch_add(&w->errors, 1);
                PyErr_Clear();
            }
            Py_DECREF(k);
        }
        if (round % 50 == 0) {
            /* Replace the stable values too: readers must see old or new. */
            for (long i = 0; i < RACE_STABLE; i++) {
                set_kv(w->d, i, i * 10);
            }
        }
    }
    atomic_store(&race_stop, true);
}

static void
race_reader(worker *w)
{
    long n = 0;
    while (!atomic_load(&race_stop) || n < 1000) {
        long i = n % RACE_STABLE;
        PyObject *k = tk(i), *v = NULL;
        int r = PyDict_GetItemRef(w->d, k, &v);
        if (r != 1 || tv(v) != i * 10) {
            atomic_fetch_add(&w->errors, 1);
        }
        Py_XDECREF(v);
        Py_DECREF(k);
        n++;
        if (!ft_free_threaded && n % 64 == 0) {
            /* GIL build: let the writer run. */
            PyThreadState *s = PyEval_SaveThread();
            PyEval_RestoreThread(s);
        }
    }
    w->count = n;
}

static void
race_dispatch(worker *w)
{
    if (w->id == 0) {
        race_writer(w);
    }
    else {
        race_reader(w);
    }
}

Test(dict, lockfree_reads_race_deletions_and_resizes, .init = setup, .fini = teardown)
{
    atomic_store(&race_stop, false);
    PyObject *d = PyDict_New();
    for (long i = 0; i < RACE_STABLE; i++) {
        set_kv(d, i, i * 10);
    }
    worker w[4];
    run_workers(w, 4, race_dispatch, d, NULL);
    cr_assert_eq(total_errors(w, 4), 0);
    for (int i = 1; i < 4; i++) {
        cr_assert_geq(w[i].count, 1000);
    }
    cr_assert_eq(PyDict_Size(d), RACE_STABLE);
    if (ft_free_threaded) {
        cr_assert_neq(ft_gc_bits(d) & FT_GC_SHARED, 0);
    }
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* ---- figures ------------------------------------------------------------------------- */

static double
mix_ns_per_op_ratio(PyObject *d, long base, long ops, long set_every)
{
    enum { NK = 256 };
    PyObject *keys[NK];
    for (long i = 0; i < NK; i++) {
        keys[i] = tk(base + i);
    }
    int64_t t0 = test_now_ns();
    long found = 0;
    for (long op = 0; op < ops; op++) {
        if (op % set_every == 0) {
            PyObject *k = keys[(op / set_every) % NK];   /* every key gets set */
            PyDict_SetItem(d, k, k);
        }
        else {
            PyObject *v;
            found += PyDict_GetItemRef(d, keys[op % NK], &v);
            Py_XDECREF(v);
        }
    }
    int64_t t1 = test_now_ns();
    for (long i = 0; i < NK; i++) {
        Py_DECREF(keys[i]);
    }
    (void)found;
    return (double)(t1 - t0) / (double)ops;
}

/* 1 set : 3 gets. */
static double
mix_ns_per_op(PyObject *d, long base, long ops)
{
    return mix_ns_per_op_ratio(d, base, ops, 4);
}

static double shared_ns[2];
static double readonly_ns[2];

static void
bench_worker(worker *w)
{
    shared_ns[w->id] = mix_ns_per_op(w->d, 0, 400000);
}

/* Reads only (after the first NK ops, which set every key once). */
static void
bench_reader(worker *w)
{
    readonly_ns[w->id] = mix_ns_per_op_ratio(w->d, 0, 400000, 400000 / 256 + 1);
}

Test(dict, figures_set_get_mix, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    double priv = mix_ns_per_op(d, 0, 400000);
    cr_assert_eq(PyDict_Size(d), 256);
    PyObject *s = PyDict_New();
    worker w[2];
    run_workers(w, 2, bench_worker, s, NULL);
    cr_assert_eq(PyDict_Size(s), 256);
    PyObject *r = PyDict_New();
    run_workers(w, 2, bench_reader, r, NULL);
    cr_assert_eq(PyDict_Size(r), 256);
    cr_log_info("dict 1 set : 3 get mix: private %.1f ns/op; shared by 2 threads %.1f / %.1f ns/op",
                priv, shared_ns[0], shared_ns[1]);
    cr_log_info("dict gets (+ rare sets) shared by 2 threads: %.1f / %.1f ns/op",
                readonly_ns[0], readonly_ns[1]);
    Py_DECREF(r);
    Py_DECREF(d);
    Py_DECREF(s);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* ---- PyThreadState_GetDict, PyInterpreterState_GetDict --------------------------------- */

static void
tsdict_worker(worker *w)
{
    PyObject *d = PyThreadState_GetDict();
    if (d == NULL || !PyDict_CheckExact(d) || PyThreadState_GetDict() != d ||
        PyDict_Size(d) != 0) {
        atomic_fetch_add(&w->errors, 1);
    }
    /* Stored objects die with the thread state. */
    PyObject *v = tk(w->id);
    if (PyDict_SetItemString(d, "mine", v) != 0) {
        atomic_fetch_add(&w->errors, 1);
    }
    Py_DECREF(v);
    w->count = (long)(uintptr_t)d;
    if (PyInterpreterState_GetDict(PyInterpreterState_Get()) != (PyObject *)w->d) {
        atomic_fetch_add(&w->errors, 1);
    }
}

Test(dict, thread_state_dict_is_per_thread_and_cleared, .init = setup, .fini = teardown)
{
    PyObject *d = PyThreadState_GetDict();
    cr_assert_not_null(d);
    cr_assert(PyDict_CheckExact(d));
    cr_assert_eq(PyThreadState_GetDict(), d, "the same dict every time (borrowed)");
    PyObject *v = tk(-1);
    cr_assert_eq(PyDict_SetItemString(d, "main", v), 0);
    Py_DECREF(v);
    PyObject *idict = PyInterpreterState_GetDict(PyInterpreterState_Get());
    cr_assert_not_null(idict);
    cr_assert(PyDict_CheckExact(idict));
    cr_assert_eq(PyInterpreterState_GetDict(PyInterpreterState_Get()), idict);
    cr_assert_null(PyInterpreterState_GetDict(NULL));
    cr_assert_null(PyErr_Occurred());
    PyObject *iv = tk(-2);
    cr_assert_eq(PyDict_SetItemString(idict, "interp", iv), 0);
    Py_DECREF(iv);

    worker w[2];
    run_workers(w, 2, tsdict_worker, idict, NULL);
    cr_assert_eq(total_errors(w, 2), 0);
    /* Each worker found a fresh, empty dict (checked in the worker), not the
     * main thread's, which is alive throughout (addresses of the two
     * workers' dicts may coincide: the first may be freed before the second
     * is made). */
    cr_assert_neq(w[0].count, (long)(uintptr_t)d);
    cr_assert_neq(w[1].count, (long)(uintptr_t)d);
    cr_assert_eq(atomic_load(&tkey_live), 2, "the workers' states were cleared with their dicts");
    cr_assert_eq(PyDict_Size(d), 1);

    /* Finalization clears the main state's dict and the interpreter's. */
    cr_assert_eq(Py_FinalizeEx(), 0);
    cr_assert_eq(atomic_load(&tkey_live), 0);
    cr_assert_null(PyThreadState_GetDict(), "no thread state: NULL");
    Py_InitializeEx(0);
    PyObject *again = PyInterpreterState_GetDict(PyInterpreterState_Get());
    cr_assert_not_null(again);
    cr_assert_eq(PyDict_Size(again), 0, "a new interpreter dict after re-initialisation");
}

Test(dict, thread_state_dict_out_of_memory_is_null_without_exception, .init = setup,
     .fini = teardown)
{
    ft_alloc_fail_after(1);
    PyObject *d = PyThreadState_GetDict();
    ft_alloc_fail_after(0);
    cr_assert_null(d);
    cr_assert_null(PyErr_Occurred());
    cr_assert_not_null(PyThreadState_GetDict(), "created once memory is back");
    ft_alloc_fail_after(1);
    PyObject *i = PyInterpreterState_GetDict(PyInterpreterState_Get());
    ft_alloc_fail_after(0);
    cr_assert_null(i);
    cr_assert_null(PyErr_Occurred());
}

/* ---- PyDict_Keys, PyDict_Values, PyDict_Items ------------------------------------------- */

Test(dict, keys_values_items_are_ordered_lists, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    PyObject *empty = PyDict_Keys(d);
    cr_assert_not_null(empty);
    cr_assert_eq(PyList_Size(empty), 0);
    Py_DECREF(empty);
    for (long i = 0; i < 10; i++) {
        set_kv(d, 9 - i, (9 - i) * 10);
    }
    PyObject *k3 = tk(3);
    cr_assert_eq(PyDict_DelItem(d, k3), 0);
    Py_DECREF(k3);
    PyObject *keys = PyDict_Keys(d), *values = PyDict_Values(d), *items = PyDict_Items(d);
    cr_assert_not_null(keys);
    cr_assert_not_null(values);
    cr_assert_not_null(items);
    cr_assert_eq(PyList_Size(keys), 9);
    cr_assert_eq(PyList_Size(values), 9);
    cr_assert_eq(PyList_Size(items), 9);
    Py_ssize_t j = 0;
    for (long i = 0; i < 10; i++) {
        long key = 9 - i;
        if (key == 3) {
            continue;
        }
        cr_assert_eq(tv(PyList_GET_ITEM(keys, j)), key, "insertion order");
        cr_assert_eq(tv(PyList_GET_ITEM(values, j)), key * 10);
        PyObject *t = PyList_GET_ITEM(items, j);
        cr_assert_eq(PyTuple_Size(t), 2);
        cr_assert_eq(PyTuple_GET_ITEM(t, 0), PyList_GET_ITEM(keys, j), "the same key object");
        cr_assert_eq(PyTuple_GET_ITEM(t, 1), PyList_GET_ITEM(values, j));
        j++;
    }
    Py_DECREF(keys);
    Py_DECREF(values);
    Py_DECREF(items);
    /* Errors: not a dict; out of memory (the list, then a tuple). */
    PyObject *k = tk(0);
    cr_assert_null(PyDict_Keys(k));
    assert_error(PyExc_SystemError);
    cr_assert_null(PyDict_Values(k));
    assert_error(PyExc_SystemError);
    cr_assert_null(PyDict_Items(k));
    assert_error(PyExc_SystemError);
    Py_DECREF(k);
    int failures = 0;
    for (long nth = 1; nth < 100; nth++) {
        ft_alloc_fail_after(nth);
        PyObject *it = PyDict_Items(d);
        ft_alloc_fail_after(0);
        if (it != NULL) {
            cr_assert_eq(PyList_Size(it), 9);
            Py_DECREF(it);
            break;
        }
        assert_error(PyExc_MemoryError);
        failures++;
    }
    cr_assert_geq(failures, 2, "the list and at least one tuple");
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* A thread that does not own the dict and writes to it makes it SHARED
 * (the owner may be reading lock-free). */
static void
nonowner_writes(worker *w)
{
    set_kv(w->d, 2, 20);
}

static int
count_visit(PyObject *op, void *arg)
{
    (void)op;
    (*(int *)arg)++;
    return 0;
}

Test(dict, nonowner_write_shares_the_dict_and_traverse_visits_items, .init = setup,
     .fini = teardown)
{
    PyObject *d = PyDict_New();
    set_kv(d, 1, 10);
    worker w[1];
    run_workers(w, 1, nonowner_writes, d, NULL);
    if (ft_free_threaded) {
        cr_assert_neq(ft_gc_bits(d) & FT_GC_SHARED, 0);
    }
    cr_assert_eq(get_k(d, 2), 20);
    int visited = 0;
    cr_assert_eq(PyDict_Type.tp_traverse(d, count_visit, &visited), 0);
    cr_assert_eq(visited, 4, "two keys and two values");
    cr_assert_eq(PyDict_Type.tp_clear(d), 0);
    cr_assert_eq(PyDict_Size(d), 0);
    visited = 0;
    cr_assert_eq(PyDict_Type.tp_traverse(d, count_visit, &visited), 0);
    cr_assert_eq(visited, 0);
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* The same on a SHARED dict: the lock-free lookup notices that its
 * comparison replaced the table and redoes the lookup under the lock. */
Test(dict, shared_lookup_retries_locked_after_a_mutating_comparison, .init = setup,
     .fini = teardown)
{
    atomic_store(&hash_mod, 1);
    PyObject *d = PyDict_New();
    for (long i = 0; i < 4; i++) {
        set_kv(d, i, i * 10);
    }
    worker w[1];
    run_workers(w, 1, nonowner_reads, d, NULL);   /* reads key 1: makes d SHARED */
    cr_assert_eq(total_errors(w, 1), 0);
    int64_t before = ft_dict_locked_lookups();
    cr_assert_eq(get_k(d, 2), 20, "no mutation armed");
    if (ft_free_threaded) {
        cr_assert_eq(ft_dict_locked_lookups(), before, "a plain lookup stays lock-free");
    }
    atomic_store(&mutate_n, 50);
    atomic_store(&mutate_dict, d);
    cr_assert_eq(get_k(d, 3), 30);
    cr_assert_eq(atomic_load(&mutate_fired), 1);
    cr_assert_eq(PyDict_Size(d), 54);
    if (ft_free_threaded) {
        cr_assert_eq(ft_dict_locked_lookups(), before + 1, "the stale result was redone locked");
    }
    Py_DECREF(d);
    cr_assert_eq(atomic_load(&tkey_live), 0);
}

/* ---- repr ------------------------------------------------------------------------------ */

/* A function as a slot's void * (ISO C has no cast between the two). */
static void *
slot_fn(void (*f)(void))
{
    void *p;
    memcpy(&p, &f, sizeof p);
    return p;
}

/* d[key] = value (a str key); the caller's reference to value is dropped. */
static void
set_str(PyObject *d, const char *key, PyObject *value)
{
    cr_assert_not_null(value);
    cr_assert_eq(PyDict_SetItemString(d, key, value), 0);
    Py_DECREF(value);
}

Test(dict, repr_formats_nested_and_empty, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    test_expect_repr(d, "{}");
    set_str(d, "a", PyLong_FromLong(1));
    test_expect_repr(d, "{'a': 1}");
    PyObject *two = PyLong_FromLong(2), *l = PyList_New(0), *three = PyLong_FromLong(3);
    cr_assert_eq(PyList_Append(l, three), 0);
    cr_assert_eq(PyDict_SetItem(d, two, l), 0);
    PyObject *inner = PyDict_New();
    set_str(inner, "x", Py_NewRef(Py_None));
    PyObject *t = PyTuple_Pack(1, three);
    cr_assert_eq(PyDict_SetItem(d, t, inner), 0);
    set_str(d, "e", PyDict_New());
    test_expect_repr(d, "{'a': 1, 2: [3], (3,): {'x': None}, 'e': {}}");
    PyObject *s = PyObject_Str(d);   /* str falls back to repr */
    cr_assert_str_eq(PyUnicode_AsUTF8(s), "{'a': 1, 2: [3], (3,): {'x': None}, 'e': {}}");
    Py_DECREF(s);
    /* Deleted entries leave no trace; insertion order is kept. */
    cr_assert_eq(PyDict_DelItem(d, two), 0);
    set_str(d, "a", PyLong_FromLong(10));
    test_expect_repr(d, "{'a': 10, (3,): {'x': None}, 'e': {}}");
    Py_DECREF(t);
    Py_DECREF(inner);
    Py_DECREF(three);
    Py_DECREF(l);
    Py_DECREF(two);
    Py_DECREF(d);
}

Test(dict, repr_of_a_dict_inside_itself_is_elided, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    cr_assert_eq(PyDict_SetItemString(d, "self", d), 0);
    test_expect_repr(d, "{'self': {...}}");
    PyObject *l = PyList_New(0);
    cr_assert_eq(PyList_Append(l, d), 0);
    cr_assert_eq(PyDict_SetItemString(d, "l", l), 0);
    test_expect_repr(d, "{'self': {...}, 'l': [{...}]}");
    test_expect_repr(l, "[{'self': {...}, 'l': [...]}]");
    cr_assert_eq(Py_ReprEnter(d), 0, "no guard left behind");
    Py_ReprLeave(d);
    PyDict_Clear(d);   /* break the cycles: no cycle GC yet */
    Py_DECREF(l);
    Py_DECREF(d);
}

/* A value whose repr raises RuntimeError, or, while repr_clear_dict is
 * set, empties that dict (the walk must stop cleanly, holding its own
 * references to the key and value being printed). */
static PyObject *repr_clear_dict;

static PyObject *
raising_repr(PyObject *self)
{
    (void)self;
    if (repr_clear_dict != NULL) {
        PyDict_Clear(repr_clear_dict);
        return PyUnicode_FromString("<emptied>");
    }
    PyErr_SetString(PyExc_RuntimeError, "repr failed");
    return NULL;
}

static PyObject *
raising_repr_new(void)
{
    PyType_Slot slots[] = { { Py_tp_repr, slot_fn((void (*)(void))raising_repr) }, { 0, NULL } };
    PyType_Spec spec = { "test.raising_repr", 0, 0, Py_TPFLAGS_DEFAULT, slots };
    PyObject *type = PyType_FromSpec(&spec);
    cr_assert_not_null(type);
    repr_clear_dict = NULL;
    return PyType_GenericNew((PyTypeObject *)type, NULL, NULL);
}

Test(dict, repr_error_from_a_value_propagates, .init = setup, .fini = teardown)
{
    PyObject *d = PyDict_New();
    set_str(d, "ok", PyLong_FromLong(1));
    set_str(d, "bad", raising_repr_new());
    PyObject *outer = PyDict_New();
    cr_assert_eq(PyDict_SetItemString(outer, "inner", d), 0);
    cr_assert_null(PyObject_Repr(outer));
    assert_error(PyExc_RuntimeError);
    cr_assert_eq(Py_ReprEnter(outer), 0, "both guards were left");
    cr_assert_eq(Py_ReprEnter(d), 0);
    Py_ReprLeave(d);
    Py_ReprLeave(outer);
    /* The walk dropped its references: the dict is intact and usable. */
    cr_assert_eq(PyDict_Size(d), 2);
    cr_assert_eq(PyDict_DelItemString(d, "bad"), 0);
    test_expect_repr(outer, "{'inner': {'ok': 1}}");
    Py_DECREF(outer);
    Py_DECREF(d);
}

Test(dict, repr_survives_a_value_that_empties_the_dict, .init = setup, .fini = teardown)
{
    /* The dict holds the only references to its keys and values: the
     * clear frees them while the value's repr runs. */
    PyObject *d = PyDict_New();
    set_str(d, "first", raising_repr_new());
    set_str(d, "second", PyLong_FromLong(100002));
    repr_clear_dict = d;
    test_expect_repr(d, "{'first': <emptied>}");
    repr_clear_dict = NULL;
    cr_assert_eq(PyDict_Size(d), 0);
    Py_DECREF(d);
}

/* One thread reprs a shared dict while another empties it and sets
 * 0: 1000, 1: 1001, ... again, one key at a time.  Entry i of every table
 * the dict has is key i (a clear starts a new table; nothing is deleted
 * otherwise), and the walk goes by entry position, so every result must be
 * the full text cut after some item ("{}" included). */
enum { DREPR_N = 12, DREPR_ROUNDS = 1000 };
static atomic_bool drepr_reader_done;
static atomic_long drepr_refills;
static char drepr_full[DREPR_N * 12 + 4];

/* Let the other thread run (GIL build) and pass a quiescent state. */
static void
let_others_run(void)
{
    PyThreadState *s = PyEval_SaveThread();
    PyEval_RestoreThread(s);
}

/* r is drepr_full cut after an item: "{}", the whole, or "{...: v}"
 * whose text before '}' is followed by ',' in the whole. */
static bool
is_cut_of_full(const char *r)
{
    size_t n = strlen(r);
    if (strcmp(r, "{}") == 0 || strcmp(r, drepr_full) == 0) {
        return true;
    }
    return n > 2 && n < strlen(drepr_full) && r[n - 1] == '}' &&
           strncmp(r, drepr_full, n - 1) == 0 && drepr_full[n - 1] == ',';
}

static void
drepr_refiller(worker *w)
{
    int64_t deadline = test_now_ns() + 60000000000LL * FT_TIMEOUT_SCALE;
    while (!atomic_load(&drepr_reader_done) && test_now_ns() < deadline) {
        PyDict_Clear(w->d);
        for (long i = 0; i < DREPR_N; i++) {
            PyObject *k = PyLong_FromLong(i), *v = PyLong_FromLong(1000 + i);
            if (PyDict_SetItem(w->d, k, v) < 0) {
                atomic_fetch_add(&w->errors, 1);
            }
            Py_DECREF(k);
            Py_DECREF(v);
            if (i % 4 == 0) {
                let_others_run();
            }
        }
        atomic_fetch_add(&drepr_refills, 1);
        let_others_run();
    }
}

static void
drepr_reader(worker *w)
{
    int64_t deadline = test_now_ns() + 30000000000LL * FT_TIMEOUT_SCALE;
    long n = 0;
    while (n < DREPR_ROUNDS || (atomic_load(&drepr_refills) < 20 && test_now_ns() < deadline)) {
        PyObject *r = PyObject_Repr(w->d);
        if (r == NULL || !is_cut_of_full(PyUnicode_AsUTF8(r))) {
            atomic_fetch_add(&w->errors, 1);
            PyErr_Clear();
        }
        Py_XDECREF(r);
        n++;
        let_others_run();
    }
    w->count = n;
    atomic_store(&drepr_reader_done, true);
}

static void
drepr_dispatch(worker *w)
{
    (w->id == 0 ? drepr_refiller : drepr_reader)(w);
}

Test(dict, repr_while_another_thread_clears_and_refills, .init = setup, .fini = teardown)
{
    atomic_store(&drepr_reader_done, false);
    atomic_store(&drepr_refills, 0);
    PyObject *d = PyDict_New();
    for (long i = 0; i < DREPR_N; i++) {
        PyObject *k = PyLong_FromLong(i), *v = PyLong_FromLong(1000 + i);
        cr_assert_eq(PyDict_SetItem(d, k, v), 0);
        Py_DECREF(k);
        Py_DECREF(v);
    }
    PyObject *r = PyObject_Repr(d);
    snprintf(drepr_full, sizeof drepr_full, "%s", PyUnicode_AsUTF8(r));
    Py_DECREF(r);
    cr_assert_eq(strncmp(drepr_full, "{0: 1000, 1: 1001, ", 19), 0);
    worker w[2];
    run_workers(w, 2, drepr_dispatch, d, NULL);
    cr_assert_eq(total_errors(w, 2), 0, "a repr that is no cut of the dict, or an error");
    cr_assert_geq(w[1].count, DREPR_ROUNDS);
    cr_assert_geq(atomic_load(&drepr_refills), 20, "the refiller ran while the reader did");
    Py_DECREF(d);
}

/* ---- G67 ------------------------------------------------------------------------------
 *
 * cpython-ft-internals.md §14 item 67, adapted.  CPython: 10 threads x
 * 1,000 assign a fresh dict-subclass instance to f.__dict__; after the
 * threads end, a reset and a collection, weakrefs show that none of those
 * dicts survives.  ftrt has no instance __dict__ and no weakrefs yet: the
 * "attribute" is one key of a shared dict, and the subclass's dealloc keeps
 * a live count in place of the weakrefs.  Readers fetch the current dict
 * meanwhile and read its "foo" (CPython's object variant reads f.foo).
 * CPython's cyclic variant (each dict refers to itself; freed by two
 * collections) needs the cycle GC: issue #6. */
enum { G67_WRITERS = 10, G67_ROUNDS = 1000, G67_READERS = 4 };
static PyTypeObject *g67_type;
static atomic_long g67_live;
static atomic_long g67_created;
static atomic_int g67_writers_done;

static void
g67_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyDict_Type.tp_dealloc(op);   /* untracks, drops the items, tp_free */
    Py_DECREF(type);
    atomic_fetch_sub(&g67_live, 1);
}

static void
g67_writer(worker *w)
{
    for (long i = 0; i < G67_ROUNDS; i++) {
        PyObject *d = PyType_GenericNew(g67_type, NULL, NULL);
        if (d == NULL) {
            atomic_fetch_add(&w->errors, 1);
            PyErr_Clear();
            continue;
        }
        atomic_fetch_add(&g67_live, 1);
        atomic_fetch_add(&g67_created, 1);
        PyObject *foo = tk(w->id * G67_ROUNDS + i);
        if (PyDict_SetItemString(d, "foo", foo) < 0 ||
            PyDict_SetItemString(w->d, "__dict__", d) < 0) {
            atomic_fetch_add(&w->errors, 1);
            PyErr_Clear();
        }
        Py_DECREF(foo);
        Py_DECREF(d);
        if (!ft_free_threaded && i % 64 == 0) {
            let_others_run();
        }
    }
    atomic_fetch_add(&g67_writers_done, 1);
}

static void
g67_reader(worker *w)
{
    long n = 0;
    while (atomic_load(&g67_writers_done) < G67_WRITERS || n < 100) {
        PyObject *cur, *foo = NULL;
        int r = PyDict_GetItemStringRef(w->d, "__dict__", &cur);
        if (r == 1 && (!Py_IS_TYPE(cur, g67_type) ||
                       PyDict_GetItemStringRef(cur, "foo", &foo) != 1 ||
                       !Py_IS_TYPE(foo, &tkey_type))) {
            atomic_fetch_add(&w->errors, 1);
        }
        if (r < 0) {
            atomic_fetch_add(&w->errors, 1);
            PyErr_Clear();
        }
        Py_XDECREF(foo);
        Py_XDECREF(cur);
        n++;
        if (!ft_free_threaded && n % 64 == 0) {
            let_others_run();
        }
    }
    w->count = n;
}

static void
g67_dispatch(worker *w)
{
    (w->id < G67_WRITERS ? g67_writer : g67_reader)(w);
}

Test(dict, g67_fresh_dict_subclasses_assigned_from_ten_threads_all_freed, .init = setup,
     .fini = teardown)
{
    PyType_Slot slots[] = { { Py_tp_dealloc, slot_fn((void (*)(void))g67_dealloc) }, { 0, NULL } };
    PyType_Spec spec = { "test.g67dict", 0, 0, Py_TPFLAGS_DEFAULT, slots };
    g67_type = (PyTypeObject *)PyType_FromSpecWithBases(&spec, (PyObject *)&PyDict_Type);
    cr_assert_not_null(g67_type);
    cr_assert(PyType_HasFeature(g67_type, Py_TPFLAGS_HAVE_GC), "inherited from dict");
    atomic_store(&g67_live, 0);
    atomic_store(&g67_created, 0);
    atomic_store(&g67_writers_done, 0);

    /* A subclass instance is a dict, repr included. */
    PyObject *probe = PyType_GenericNew(g67_type, NULL, NULL);
    atomic_fetch_add(&g67_live, 1);
    cr_assert(PyDict_Check(probe) && !PyDict_CheckExact(probe));
    set_str(probe, "foo", PyLong_FromLong(1));
    test_expect_repr(probe, "{'foo': 1}");
    Py_DECREF(probe);
    cr_assert_eq(atomic_load(&g67_live), 0);

    PyObject *shared = PyDict_New();
    worker w[G67_WRITERS + G67_READERS];
    run_workers(w, G67_WRITERS + G67_READERS, g67_dispatch, shared, NULL);
    cr_assert_eq(total_errors(w, G67_WRITERS + G67_READERS), 0);
    cr_assert_eq(atomic_load(&g67_created), G67_WRITERS * G67_ROUNDS);
    for (int i = G67_WRITERS; i < G67_WRITERS + G67_READERS; i++) {
        cr_assert_geq(w[i].count, 100);
    }
    /* The exited threads drained their merge queues; PyErr_CheckSignals
     * (a safe point) drains this thread's, should anything be queued to
     * it.  Only the dict still assigned is alive. */
    bool one_left = TEST_POLL_UNTIL(
        (PyErr_CheckSignals(), atomic_load(&g67_live) == 1), 5000);
    cr_assert(one_left, "%ld assigned dicts alive, want 1", atomic_load(&g67_live));
    cr_assert_eq(PyDict_DelItemString(shared, "__dict__"), 0);   /* "del f.__dict__" */
    bool none_left = TEST_POLL_UNTIL(
        (PyErr_CheckSignals(), atomic_load(&g67_live) == 0), 5000);
    cr_assert(none_left, "%ld assigned dicts alive after the reset", atomic_load(&g67_live));
    Py_DECREF(shared);
    cr_assert_eq(atomic_load(&tkey_live), 0, "every dict's \"foo\" died with it");
}
