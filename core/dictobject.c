/* Dictionaries: PyDict_Type, its key iterator, and CPython 3.13's PyDict_*
 * API.
 *
 * ---- layout ------------------------------------------------------------------
 *
 * A dict owns one keys table (struct _dictkeysobject) or none (ma_keys NULL:
 * empty, nothing allocated yet).  The table is CPython's "combined" design:
 *
 *   indices[size]     int32 slots of an open-addressing hash table (size a
 *                     power of two, at least 8): an entry number, EMPTY
 *                     (never used) or DUMMY (its entry was deleted)
 *   entries[usable]   dense array of {hash, key, value} in insertion order;
 *                     `usable` is 2/3 of size (the load-factor bound), so a
 *                     probe always ends at an EMPTY slot
 *
 * Probing is CPython's: i = hash & mask, then i = 5*i + perturb + 1 with
 * perturb shifted right by 5 each step, which visits every slot.  Entries
 * are only ever appended: a deletion turns the slot DUMMY and clears the
 * entry's key and value; neither the slot nor the entry is reused while the
 * table lives (inserts take only EMPTY slots).  When `usable` runs out the
 * dict is resized into a new table holding only the live entries, in order.
 *
 * ---- thread safety (free-threaded build; cpython-ft-internals.md §12) -------
 *
 * Writers: every mutation (insert, replace, delete, resize, clear) runs in
 * the dict's critical section.  Anything a lock-free reader may read is
 * written with a release store: ma_keys (a new table is filled in
 * completely, then published), an entry's key and value, an index slot (an
 * appended entry's hash, key and value are stored before the slot that
 * names it).  ma_used is stored relaxed (PyDict_Size is only a snapshot).
 *
 * Readers (PyDict_GetItemRef and the functions built on it, Contains): a
 * thread may read without the lock if it owns the dict (ob_tid) or the dict
 * is SHARED (FT_GC_SHARED in ob_gc_bits).  Otherwise it takes the lock once
 * and marks the dict SHARED.  A writer that does not own the dict marks it
 * SHARED too, before it changes anything, because the owner may be reading
 * lock-free at that moment.  Marking SHARED first sets MAYBE_WEAKREF on every
 * key and value the dict holds; while it is SHARED every key and value
 * stored is marked before it is published.  The mark lets readers' try-incref
 * CASes race with the owner's final merge (ft_object.h), and the object
 * core keeps such objects' memory type-stable for a grace period.
 *
 * The lock-free lookup: load ma_keys (acquire); probe, loading each slot and
 * the entry's key with acquire (pairs with the writer's release stores).
 * A key that is the same pointer matches.  A key with the same hash is
 * compared: take a reference with ft_try_incref_compare (fails if the key
 * died or left the slot), call PyObject_RichCompareBool (arbitrary code,
 * which may even mutate this dict), then check that ma_keys is still the
 * table we probe and the entry still holds that key; if not, the result is
 * stale and the lookup is redone under the lock.  A match then takes a
 * reference to the value with ft_try_incref_compare and re-checks ma_keys.
 * Any failure (a try-incref losing to a concurrent writer, a cleared entry,
 * a replaced table) falls back to the locked lookup, which cannot fail that
 * way.  Because slots and entries are never reused in a live table, a probe
 * racing with inserts and deletes only sees states that existed.
 *
 * Freeing tables: a table replaced (resize, clear) in a SHARED dict may still
 * be probed by readers, so it is freed after an RCU grace period
 * (ft_rcu_call; readers are attached threads, i.e. QSBR readers that hold no
 * table across a quiescent state).  If the freeing thread is not an online
 * QSBR reader (detached, e.g. finalization) it frees at once: no attached
 * reader can hold the table then.  A table of a dict that is not SHARED is
 * only ever probed by its owner, who is the one replacing it, so it is freed
 * at once.  A dict's final table is freed by its destructor at once: a
 * reader holds a reference to the dict.
 *
 * Known limit (as in CPython): after a comparison ran arbitrary code, the
 * re-check compares table pointers, so a table freed and another one
 * allocated at the same address during the comparison is not detected.
 *
 * GIL build: the critical sections are no-ops and every lookup takes the
 * plain (locked) path; nothing is SHARED and tables are freed at once.
 */
#include "Python.h"

#include <string.h>

#include "ft_alloc.h"
#include "ft_critical_section.h"
#include "ft_dict.h"
#include "ft_object.h"
#include "ft_rcu.h"

/* ---- keys tables ----------------------------------------------------------- */

#define DKIX_EMPTY (-1)
#define DKIX_DUMMY (-2)
#define DKIX_ERROR (-3)
#define DICT_MINSIZE 8          /* smallest table: 8 slots, 5 entries */
#define PERTURB_SHIFT 5

typedef struct {
    Py_hash_t hash;
    PyObject *key;              /* NULL: deleted */
    PyObject *value;            /* NULL: deleted */
} ft_dict_entry;

struct _dictkeysobject {
    ft_rcu_head rcu;
    size_t alloc_size;          /* bytes, for ft_raw_free */
    uint8_t log2_size;
    Py_ssize_t usable;          /* entries still free to append */
    Py_ssize_t nentries;        /* entries appended (live or deleted) */
    int32_t indices[];          /* 1 << log2_size slots, then the entries */
};
typedef struct _dictkeysobject ft_dict_keys;

static inline Py_ssize_t dk_size(ft_dict_keys *dk) { return (Py_ssize_t)1 << dk->log2_size; }

/* The load-factor bound: 2/3 of the slots may hold entries. */
static inline Py_ssize_t usable_for(Py_ssize_t size) { return (size << 1) / 3; }

static inline ft_dict_entry *
dk_entries(ft_dict_keys *dk)
{
    return (ft_dict_entry *)&dk->indices[dk_size(dk)];
}

static inline int32_t
dk_get_index(ft_dict_keys *dk, Py_ssize_t i)
{
    return __atomic_load_n(&dk->indices[i], __ATOMIC_ACQUIRE);
}

static inline void
dk_set_index(ft_dict_keys *dk, Py_ssize_t i, int32_t ix)
{
    __atomic_store_n(&dk->indices[i], ix, __ATOMIC_RELEASE);
}

static inline PyObject *load_ptr(PyObject **p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void store_ptr(PyObject **p, PyObject *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static ft_dict_keys *
keys_new(uint8_t log2_size)
{
    Py_ssize_t size = (Py_ssize_t)1 << log2_size;
    Py_ssize_t usable = usable_for(size);
    if (log2_size > 30) {   /* int32 slots name at most 2^31 - 1 entries */
        PyErr_NoMemory();
        return NULL;
    }
    size_t bytes = sizeof(ft_dict_keys) + (size_t)size * sizeof(int32_t) +
                   (size_t)usable * sizeof(ft_dict_entry);
    ft_dict_keys *dk = ft_raw_alloc(bytes);
    if (dk == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    dk->alloc_size = bytes;
    dk->log2_size = log2_size;
    dk->usable = usable;
    dk->nentries = 0;
    memset(dk->indices, 0xff, (size_t)size * sizeof(int32_t));   /* all DKIX_EMPTY (-1) */
    return dk;
}

static void
keys_free_rcu(ft_rcu_head *head)
{
    FT_RCU_CALLBACK_BEGIN();
    ft_dict_keys *dk = (ft_dict_keys *)((char *)head - offsetof(ft_dict_keys, rcu));
    ft_raw_free(dk, dk->alloc_size);
}

/* Free a table that is no longer reachable from its dict (file header). */
static void
keys_free(ft_dict_keys *dk, bool shared)
{
    if (dk == NULL) {
        return;
    }
    if (ft_free_threaded && shared && ft_rcu_is_online()) {
        ft_rcu_call(&dk->rcu, keys_free_rcu);
    }
    else {
        ft_raw_free(dk, dk->alloc_size);
    }
}

/* Smallest log2 of a table size >= minsize (and >= DICT_MINSIZE). */
static uint8_t
log2_for(Py_ssize_t minsize)
{
    uint8_t log2 = 3;
    while (((Py_ssize_t)1 << log2) < minsize && log2 < 62) {
        log2++;
    }
    return log2;
}

/* An EMPTY slot for hash (the table has one: the load-factor bound). */
static Py_ssize_t
find_empty_slot(ft_dict_keys *dk, Py_hash_t hash)
{
    size_t mask = (size_t)dk_size(dk) - 1;
    size_t perturb = (size_t)hash;
    size_t i = (size_t)hash & mask;
    while (__atomic_load_n(&dk->indices[i], __ATOMIC_RELAXED) != DKIX_EMPTY) {
        perturb >>= PERTURB_SHIFT;
        i = (i * 5 + perturb + 1) & mask;
    }
    return (Py_ssize_t)i;
}

/* ---- SHARED -------------------------------------------------------------------- */

/* Whether the calling thread owns mp (the GIL build has no owners: the
 * answer is never used there, every path is the locked one). */
static inline bool
dict_owned(PyDictObject *mp)
{
#ifdef Py_GIL_DISABLED
    return _Py_IsOwnedByCurrentThread((PyObject *)mp) || ft_gc_is_garbage((PyObject *)mp);
#else
    (void)mp;
    return true;
#endif
}

static inline bool
dict_is_shared(PyDictObject *mp)
{
    return ft_free_threaded &&
           (ft_gc_bits((PyObject *)mp) & (FT_GC_SHARED | FT_GC_UNREACHABLE)) == FT_GC_SHARED;
}

/* In the critical section: mark every key and value, then the dict. */
static void
dict_set_shared(PyDictObject *mp)
{
    ft_dict_keys *dk = mp->ma_keys;
    if (dk != NULL) {
        ft_dict_entry *ep = dk_entries(dk);
        for (Py_ssize_t i = 0; i < dk->nentries; i++) {
            if (ep[i].key != NULL) {
                ft_object_set_maybe_weakref(ep[i].key);
                ft_object_set_maybe_weakref(ep[i].value);
            }
        }
    }
    ft_gc_bits_set((PyObject *)mp, FT_GC_SHARED);
}

/* In the critical section, before a mutation or a locked read: a thread
 * that does not own the dict makes it SHARED (file header). */
static inline void
dict_ensure_shared(PyDictObject *mp)
{
    if (ft_free_threaded && !dict_owned(mp) &&
        !dict_is_shared(mp)) {
        dict_set_shared(mp);
    }
}

/* ---- locked operations (caller holds the critical section) ------------------- */

/* Find key: the entry number (>= 0), DKIX_EMPTY if absent, DKIX_ERROR with
 * an exception set if a comparison failed.  *slot_out: the index slot. */
static Py_ssize_t
lookup_locked(PyDictObject *mp, PyObject *key, Py_hash_t hash, Py_ssize_t *slot_out)
{
restart:;
    ft_dict_keys *dk = mp->ma_keys;
    if (dk == NULL) {
        return DKIX_EMPTY;
    }
    ft_dict_entry *entries = dk_entries(dk);
    size_t mask = (size_t)dk_size(dk) - 1;
    size_t perturb = (size_t)hash;
    size_t i = (size_t)hash & mask;
    for (;;) {
        int32_t ix = __atomic_load_n(&dk->indices[i], __ATOMIC_RELAXED);
        if (ix == DKIX_EMPTY) {
            return DKIX_EMPTY;
        }
        if (ix >= 0) {
            ft_dict_entry *ep = &entries[ix];
            PyObject *k = ep->key;
            if (k == key) {
                *slot_out = (Py_ssize_t)i;
                return ix;
            }
            if (k != NULL && ep->hash == hash) {
                Py_INCREF(k);
                int cmp = PyObject_RichCompareBool(k, key, Py_EQ);
                Py_DECREF(k);
                if (cmp < 0) {
                    return DKIX_ERROR;
                }
                /* The comparison may have changed the dict. */
                if (dk != mp->ma_keys || ep->key != k) {
                    goto restart;
                }
                if (cmp > 0) {
                    *slot_out = (Py_ssize_t)i;
                    return ix;
                }
            }
        }
        perturb >>= PERTURB_SHIFT;
        i = (i * 5 + perturb + 1) & mask;
    }
}

/* Replace the table by one of at least `minsize` slots holding the live
 * entries in order.  -1 with MemoryError (the dict is unchanged). */
static int
dict_resize(PyDictObject *mp, Py_ssize_t minsize)
{
    ft_dict_keys *old = mp->ma_keys;
    ft_dict_keys *dk = keys_new(log2_for(minsize));
    if (dk == NULL) {
        return -1;
    }
    ft_dict_entry *dst = dk_entries(dk);
    Py_ssize_t n = 0;
    if (old != NULL) {
        ft_dict_entry *src = dk_entries(old);
        for (Py_ssize_t i = 0; i < old->nentries; i++) {
            if (src[i].key != NULL) {
                dst[n] = src[i];   /* the references move to the new table */
                dk->indices[find_empty_slot(dk, src[i].hash)] = (int32_t)n;
                n++;
            }
        }
    }
    dk->nentries = n;
    dk->usable -= n;
    ft_rcu_store(mp->ma_keys, dk);   /* release: readers see a complete table */
    keys_free(old, dict_is_shared(mp));
    return 0;
}

/* Insert or replace; steals the references to key and value.  -1 with an
 * exception on failure (both references dropped). */
static int
insert_locked(PyDictObject *mp, PyObject *key, Py_hash_t hash, PyObject *value)
{
    dict_ensure_shared(mp);
    Py_ssize_t slot;
    Py_ssize_t ix = lookup_locked(mp, key, hash, &slot);
    if (ix == DKIX_ERROR) {
        goto fail;
    }
    bool shared = dict_is_shared(mp);
    if (shared) {
        ft_object_set_maybe_weakref(value);
    }
    if (ix >= 0) {
        ft_dict_entry *ep = &dk_entries(mp->ma_keys)[ix];
        PyObject *old = ep->value;
        store_ptr(&ep->value, value);
        Py_DECREF(old);
        Py_DECREF(key);
        return 0;
    }
    if (mp->ma_keys == NULL || mp->ma_keys->usable <= 0) {
        /* CPython's growth rate: room for 3x the live items. */
        if (dict_resize(mp, mp->ma_used * 3) < 0) {
            goto fail;
        }
    }
    if (shared) {
        ft_object_set_maybe_weakref(key);
    }
    ft_dict_keys *dk = mp->ma_keys;
    Py_ssize_t n = dk->nentries;
    ft_dict_entry *ep = &dk_entries(dk)[n];
    ep->hash = hash;
    store_ptr(&ep->key, key);
    store_ptr(&ep->value, value);
    dk_set_index(dk, find_empty_slot(dk, hash), (int32_t)n);   /* publishes the entry */
    dk->nentries = n + 1;
    dk->usable--;
    __atomic_store_n(&mp->ma_used, mp->ma_used + 1, __ATOMIC_RELAXED);
    return 0;
fail:
    Py_DECREF(key);
    Py_DECREF(value);
    return -1;
}

/* Remove entry ix found at slot; returns the entry's key and value
 * references to the caller (to drop after the dict is consistent). */
static void
delete_locked(PyDictObject *mp, Py_ssize_t slot, Py_ssize_t ix, PyObject **key,
              PyObject **value)
{
    ft_dict_keys *dk = mp->ma_keys;
    ft_dict_entry *ep = &dk_entries(dk)[ix];
    dk_set_index(dk, slot, DKIX_DUMMY);
    *key = ep->key;
    *value = ep->value;
    store_ptr(&ep->key, NULL);
    store_ptr(&ep->value, NULL);
    __atomic_store_n(&mp->ma_used, mp->ma_used - 1, __ATOMIC_RELAXED);
}

/* Locked lookup returning a new reference: 1 found, 0 absent, -1 error. */
static int
get_ref_locked(PyDictObject *mp, PyObject *key, Py_hash_t hash, PyObject **result)
{
    int ret;
    Py_BEGIN_CRITICAL_SECTION(mp);
    dict_ensure_shared(mp);
    Py_ssize_t slot;
    Py_ssize_t ix = lookup_locked(mp, key, hash, &slot);
    if (ix >= 0) {
        *result = Py_NewRef(dk_entries(mp->ma_keys)[ix].value);
        ret = 1;
    }
    else {
        *result = NULL;
        ret = ix == DKIX_ERROR ? -1 : 0;
    }
    Py_END_CRITICAL_SECTION();
    return ret;
}

/* ---- the lock-free lookup (file header) ------------------------------------- */

#define LOOKUP_RETRY_LOCKED 2

static int
get_ref_lockfree(PyDictObject *mp, PyObject *key, Py_hash_t hash, PyObject **result)
{
    ft_dict_keys *dk = ft_rcu_load(mp->ma_keys);
    if (dk == NULL) {
        return 0;
    }
    ft_dict_entry *entries = dk_entries(dk);
    size_t mask = (size_t)dk_size(dk) - 1;
    size_t perturb = (size_t)hash;
    size_t i = (size_t)hash & mask;
    for (;;) {
        int32_t ix = dk_get_index(dk, (Py_ssize_t)i);
        if (ix == DKIX_EMPTY) {
            break;
        }
        if (ix >= 0) {
            ft_dict_entry *ep = &entries[ix];
            PyObject *k = load_ptr(&ep->key);
            bool match = k == key;
            if (!match && k != NULL && ep->hash == hash) {
                if (!ft_try_incref_compare(&ep->key, k)) {
                    return LOOKUP_RETRY_LOCKED;
                }
                int cmp = PyObject_RichCompareBool(k, key, Py_EQ);
                Py_DECREF(k);
                if (cmp < 0) {
                    return -1;
                }
                /* Table first: if it was replaced, ep may be freed memory. */
                if (dk != ft_rcu_load(mp->ma_keys) || load_ptr(&ep->key) != k) {
                    return LOOKUP_RETRY_LOCKED;
                }
                match = cmp > 0;
            }
            if (match) {
                PyObject *v = load_ptr(&ep->value);
                if (v == NULL || !ft_try_incref_compare(&ep->value, v)) {
                    return LOOKUP_RETRY_LOCKED;
                }
                if (dk != ft_rcu_load(mp->ma_keys)) {
                    Py_DECREF(v);
                    return LOOKUP_RETRY_LOCKED;
                }
                *result = v;
                return 1;
            }
        }
        perturb >>= PERTURB_SHIFT;
        i = (i * 5 + perturb + 1) & mask;
    }
    return dk == ft_rcu_load(mp->ma_keys) ? 0 : LOOKUP_RETRY_LOCKED;
}

/* Lookups that fell back to the lock (tests). */
static int64_t _Atomic locked_lookups;
int64_t ft_dict_locked_lookups(void) { return atomic_load(&locked_lookups); }

static int
dict_get_ref(PyDictObject *mp, PyObject *key, Py_hash_t hash, PyObject **result)
{
    *result = NULL;
    if (ft_free_threaded &&
        (dict_owned(mp) || dict_is_shared(mp))) {
        int r = get_ref_lockfree(mp, key, hash, result);
        if (r != LOOKUP_RETRY_LOCKED) {
            return r;
        }
        *result = NULL;
    }
    if (ft_free_threaded) {
        atomic_fetch_add_explicit(&locked_lookups, 1, memory_order_relaxed);
    }
    return get_ref_locked(mp, key, hash, result);
}

/* ---- the public API ------------------------------------------------------------ */

/* KeyError(key), as CPython raises it (core/errors.c turns the key into
 * the message, repr(key)). */
static void
set_key_error(PyObject *key)
{
    PyErr_SetObject(PyExc_KeyError, key);
}

PyObject *
PyDict_New(void)
{
    PyDictObject *mp = PyObject_GC_New(PyDictObject, &PyDict_Type);
    if (mp == NULL) {
        return NULL;
    }
    mp->ma_used = 0;
    mp->_ma_watcher_tag = 0;
    mp->ma_keys = NULL;
    mp->ma_values = NULL;
    PyObject_GC_Track(mp);
    return (PyObject *)mp;
}

int
PyDict_GetItemRef(PyObject *op, PyObject *key, PyObject **result)
{
    if (op == NULL || !PyDict_Check(op) || key == NULL) {
        PyErr_BadInternalCall();
        *result = NULL;
        return -1;
    }
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) {
        *result = NULL;
        return -1;
    }
    return dict_get_ref((PyDictObject *)op, key, hash, result);
}

PyObject *
PyDict_GetItemWithError(PyObject *op, PyObject *key)
{
    if (op == NULL || !PyDict_Check(op) || key == NULL) {
        PyErr_BadInternalCall();
        return NULL;
    }
    PyObject *value;
    if (PyDict_GetItemRef(op, key, &value) <= 0) {
        return NULL;
    }
    /* Borrowed, as CPython 3.13t returns it: the dict keeps it alive until
     * the item is replaced or deleted. */
    Py_DECREF(value);
    return value;
}

PyObject *
PyDict_GetItem(PyObject *op, PyObject *key)
{
    if (op == NULL || !PyDict_Check(op) || key == NULL) {
        return NULL;
    }
    /* CPython: errors are suppressed and a pending exception is kept. */
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *value = PyDict_GetItemWithError(op, key);
    PyErr_SetRaisedException(exc);   /* replaces (drops) a lookup error */
    return value;
}

int
PyDict_Contains(PyObject *op, PyObject *key)
{
    PyObject *value;
    int r = PyDict_GetItemRef(op, key, &value);
    Py_XDECREF(value);
    return r;
}

int
PyDict_SetItem(PyObject *op, PyObject *key, PyObject *value)
{
    if (op == NULL || !PyDict_Check(op) || key == NULL || value == NULL) {
        PyErr_BadInternalCall();
        return -1;
    }
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) {
        return -1;
    }
    int r;
    PyDictObject *mp = (PyDictObject *)op;
    Py_BEGIN_CRITICAL_SECTION(mp);
    r = insert_locked(mp, Py_NewRef(key), hash, Py_NewRef(value));
    Py_END_CRITICAL_SECTION();
    return r;
}

/* Remove key: 1 removed (*value_out a new reference, or dropped if NULL),
 * 0 absent, -1 error. */
static int
dict_pop(PyDictObject *mp, PyObject *key, Py_hash_t hash, PyObject **value_out)
{
    int r;
    PyObject *old_key = NULL, *old_value = NULL;
    Py_BEGIN_CRITICAL_SECTION(mp);
    dict_ensure_shared(mp);
    Py_ssize_t slot;
    Py_ssize_t ix = lookup_locked(mp, key, hash, &slot);
    if (ix >= 0) {
        delete_locked(mp, slot, ix, &old_key, &old_value);
        r = 1;
    }
    else {
        r = ix == DKIX_ERROR ? -1 : 0;
    }
    Py_END_CRITICAL_SECTION();
    Py_XDECREF(old_key);
    if (value_out != NULL) {
        *value_out = old_value;
    }
    else {
        Py_XDECREF(old_value);
    }
    return r;
}

int
PyDict_DelItem(PyObject *op, PyObject *key)
{
    if (op == NULL || !PyDict_Check(op) || key == NULL) {
        PyErr_BadInternalCall();
        return -1;
    }
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) {
        return -1;
    }
    int r = dict_pop((PyDictObject *)op, key, hash, NULL);
    if (r == 0) {
        set_key_error(key);
        return -1;
    }
    return r < 0 ? -1 : 0;
}

int
PyDict_Pop(PyObject *op, PyObject *key, PyObject **result)
{
    if (op == NULL || !PyDict_Check(op) || key == NULL) {
        if (result != NULL) {
            *result = NULL;
        }
        PyErr_BadInternalCall();
        return -1;
    }
    PyDictObject *mp = (PyDictObject *)op;
    if (__atomic_load_n(&mp->ma_used, __ATOMIC_RELAXED) == 0) {
        /* CPython: an empty dict answers without hashing the key. */
        if (result != NULL) {
            *result = NULL;
        }
        return 0;
    }
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) {
        if (result != NULL) {
            *result = NULL;
        }
        return -1;
    }
    PyObject *value = NULL;
    int r = dict_pop(mp, key, hash, &value);
    if (result != NULL) {
        *result = value;
    }
    else {
        Py_XDECREF(value);
    }
    return r;
}

int
PyDict_SetDefaultRef(PyObject *op, PyObject *key, PyObject *default_value, PyObject **result)
{
    if (op == NULL || !PyDict_Check(op) || key == NULL || default_value == NULL) {
        PyErr_BadInternalCall();
        if (result != NULL) {
            *result = NULL;
        }
        return -1;
    }
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) {
        if (result != NULL) {
            *result = NULL;
        }
        return -1;
    }
    PyDictObject *mp = (PyDictObject *)op;
    int r;
    PyObject *out = NULL;
    Py_BEGIN_CRITICAL_SECTION(mp);
    dict_ensure_shared(mp);
    Py_ssize_t slot;
    Py_ssize_t ix = lookup_locked(mp, key, hash, &slot);
    if (ix >= 0) {
        out = Py_NewRef(dk_entries(mp->ma_keys)[ix].value);
        r = 1;
    }
    else if (ix == DKIX_ERROR) {
        r = -1;
    }
    else if (insert_locked(mp, Py_NewRef(key), hash, Py_NewRef(default_value)) < 0) {
        r = -1;
    }
    else {
        out = Py_NewRef(default_value);
        r = 0;
    }
    Py_END_CRITICAL_SECTION();
    if (result != NULL) {
        *result = out;
    }
    else {
        Py_XDECREF(out);
    }
    return r;
}

Py_ssize_t
PyDict_Size(PyObject *op)
{
    if (op == NULL || !PyDict_Check(op)) {
        PyErr_BadInternalCall();
        return -1;
    }
    return __atomic_load_n(&((PyDictObject *)op)->ma_used, __ATOMIC_RELAXED);
}

int
PyDict_Next(PyObject *op, Py_ssize_t *ppos, PyObject **pkey, PyObject **pvalue)
{
    if (op == NULL || !PyDict_Check(op)) {
        return 0;
    }
    ft_dict_keys *dk = ((PyDictObject *)op)->ma_keys;
    Py_ssize_t i = *ppos;
    if (dk == NULL || i < 0) {
        return 0;
    }
    ft_dict_entry *entries = dk_entries(dk);
    while (i < dk->nentries && entries[i].key == NULL) {
        i++;
    }
    if (i >= dk->nentries) {
        return 0;
    }
    *ppos = i + 1;
    if (pkey != NULL) {
        *pkey = entries[i].key;
    }
    if (pvalue != NULL) {
        *pvalue = entries[i].value;
    }
    return 1;
}

/* In the critical section: detach the table and drop every reference. */
static void
clear_locked(PyDictObject *mp)
{
    dict_ensure_shared(mp);
    ft_dict_keys *dk = mp->ma_keys;
    if (dk == NULL) {
        return;
    }
    ft_rcu_store(mp->ma_keys, NULL);
    __atomic_store_n(&mp->ma_used, 0, __ATOMIC_RELAXED);
    /* The dict is consistent (empty) before any destructor runs.  Readers
     * still probing dk see the slots emptied and fall back to the lock. */
    ft_dict_entry *entries = dk_entries(dk);
    for (Py_ssize_t i = 0; i < dk->nentries; i++) {
        PyObject *k = entries[i].key;
        PyObject *v = entries[i].value;
        if (k != NULL) {
            store_ptr(&entries[i].key, NULL);
            store_ptr(&entries[i].value, NULL);
            Py_DECREF(k);
            Py_DECREF(v);
        }
    }
    keys_free(dk, dict_is_shared(mp));
}

void
PyDict_Clear(PyObject *op)
{
    if (op == NULL || !PyDict_Check(op)) {
        return;
    }
    Py_BEGIN_CRITICAL_SECTION(op);
    clear_locked((PyDictObject *)op);
    Py_END_CRITICAL_SECTION();
}

/* Snapshot of a dict's items (new references), taken under its lock. */
typedef struct {
    Py_ssize_t n;
    ft_dict_entry *items;
    size_t bytes;
} items_snapshot;

static int
snapshot_items(PyDictObject *mp, items_snapshot *snap)
{
    int r = 0;
    snap->n = 0;
    snap->items = NULL;
    snap->bytes = 0;
    Py_BEGIN_CRITICAL_SECTION(mp);
    ft_dict_keys *dk = mp->ma_keys;
    if (mp->ma_used > 0) {
        snap->bytes = (size_t)mp->ma_used * sizeof(ft_dict_entry);
        snap->items = ft_raw_alloc(snap->bytes);
        if (snap->items == NULL) {
            PyErr_NoMemory();
            r = -1;
        }
        else {
            ft_dict_entry *entries = dk_entries(dk);
            for (Py_ssize_t i = 0; i < dk->nentries; i++) {
                if (entries[i].key != NULL) {
                    snap->items[snap->n].hash = entries[i].hash;
                    snap->items[snap->n].key = Py_NewRef(entries[i].key);
                    snap->items[snap->n].value = Py_NewRef(entries[i].value);
                    snap->n++;
                }
            }
        }
    }
    Py_END_CRITICAL_SECTION();
    return r;
}

static void
snapshot_release(items_snapshot *snap)
{
    for (Py_ssize_t i = 0; i < snap->n; i++) {
        Py_XDECREF(snap->items[i].key);
        Py_XDECREF(snap->items[i].value);
    }
    ft_raw_free(snap->items, snap->bytes);
}

PyObject *
PyDict_Copy(PyObject *op)
{
    if (op == NULL || !PyDict_Check(op)) {
        PyErr_BadInternalCall();
        return NULL;
    }
    PyObject *copy = PyDict_New();
    if (copy == NULL) {
        return NULL;
    }
    if (PyDict_Merge(copy, op, 1) < 0) {
        Py_DECREF(copy);
        return NULL;
    }
    return copy;
}

int
PyDict_Merge(PyObject *a, PyObject *b, int override)
{
    if (a == NULL || !PyDict_Check(a) || b == NULL) {
        PyErr_BadInternalCall();
        return -1;
    }
    if (!PyDict_Check(b)) {
        /* CPython falls back to b.keys() and b[key]: not available yet. */
        PyErr_SetString(PyExc_TypeError, "PyDict_Merge: the other object must be a dict");
        return -1;
    }
    if (a == b) {
        return 0;
    }
    /* Copy b's items first, then insert them holding only a's lock: the
     * inserts run comparisons (arbitrary code) that must not find b locked
     * by us. */
    items_snapshot snap;
    if (snapshot_items((PyDictObject *)b, &snap) < 0) {
        return -1;
    }
    if (snap.n == 0) {
        return 0;
    }
    int r = 0;
    PyDictObject *mp = (PyDictObject *)a;
    Py_BEGIN_CRITICAL_SECTION(mp);
    /* One resize up front for the combined size (CPython does the same). */
    Py_ssize_t need = mp->ma_used + snap.n;
    if (mp->ma_keys == NULL || mp->ma_keys->usable < snap.n) {
        dict_ensure_shared(mp);
        r = dict_resize(mp, (need * 3 + 1) / 2);
    }
    for (Py_ssize_t i = 0; r == 0 && i < snap.n; i++) {
        ft_dict_entry *it = &snap.items[i];
        if (!override) {
            Py_ssize_t slot;
            Py_ssize_t ix = lookup_locked(mp, it->key, it->hash, &slot);
            if (ix == DKIX_ERROR) {
                r = -1;
                break;
            }
            if (ix >= 0) {
                continue;
            }
        }
        r = insert_locked(mp, it->key, it->hash, it->value);   /* steals both */
        it->key = NULL;
        it->value = NULL;
    }
    Py_END_CRITICAL_SECTION();
    snapshot_release(&snap);
    return r;
}

int
PyDict_Update(PyObject *a, PyObject *b)
{
    return PyDict_Merge(a, b, 1);
}

/* ---- the type ----------------------------------------------------------------- */

static void
dict_dealloc(PyObject *op)
{
    PyDictObject *mp = (PyDictObject *)op;
    PyObject_GC_UnTrack(op);
    ft_dict_keys *dk = mp->ma_keys;
    mp->ma_keys = NULL;
    if (dk != NULL) {
        ft_dict_entry *entries = dk_entries(dk);
        for (Py_ssize_t i = 0; i < dk->nentries; i++) {
            Py_XDECREF(entries[i].key);
            Py_XDECREF(entries[i].value);
        }
        /* Readers hold a reference to the dict: nobody probes dk now. */
        ft_raw_free(dk, dk->alloc_size);
    }
    Py_TYPE(op)->tp_free(op);
}

static int
dict_traverse(PyObject *op, visitproc visit, void *arg)
{
    ft_dict_keys *dk = ((PyDictObject *)op)->ma_keys;
    if (dk != NULL) {
        ft_dict_entry *entries = dk_entries(dk);
        for (Py_ssize_t i = 0; i < dk->nentries; i++) {
            Py_VISIT(entries[i].key);
            Py_VISIT(entries[i].value);
        }
    }
    return 0;
}

static int
dict_tp_clear(PyObject *op)
{
    PyDict_Clear(op);
    return 0;
}

static Py_ssize_t
dict_length(PyObject *op)
{
    return __atomic_load_n(&((PyDictObject *)op)->ma_used, __ATOMIC_RELAXED);
}

static PyObject *
dict_subscript(PyObject *op, PyObject *key)
{
    PyObject *value;
    int r = PyDict_GetItemRef(op, key, &value);
    if (r == 0) {
        set_key_error(key);
    }
    return value;
}

static int
dict_ass_subscript(PyObject *op, PyObject *key, PyObject *value)
{
    return value == NULL ? PyDict_DelItem(op, key) : PyDict_SetItem(op, key, value);
}

/* In both dicts' critical sections: 1 equal, 0 not, -1 error. */
static int
dict_equal(PyDictObject *a, PyDictObject *b)
{
    if (a->ma_used != b->ma_used) {
        return 0;
    }
    for (Py_ssize_t i = 0;; i++) {
        ft_dict_keys *dk = a->ma_keys;   /* re-read: comparisons run code */
        if (dk == NULL || i >= dk->nentries) {
            return 1;
        }
        ft_dict_entry *ep = &dk_entries(dk)[i];
        if (ep->key == NULL) {
            continue;
        }
        PyObject *key = Py_NewRef(ep->key);
        PyObject *aval = Py_NewRef(ep->value);
        Py_hash_t hash = ep->hash;
        Py_ssize_t slot;
        Py_ssize_t ix = lookup_locked(b, key, hash, &slot);
        int cmp;
        if (ix < 0) {
            cmp = ix == DKIX_ERROR ? -1 : 0;
        }
        else {
            PyObject *bval = Py_NewRef(dk_entries(b->ma_keys)[ix].value);
            cmp = PyObject_RichCompareBool(aval, bval, Py_EQ);
            Py_DECREF(bval);
        }
        Py_DECREF(key);
        Py_DECREF(aval);
        if (cmp <= 0) {
            return cmp;
        }
    }
}

static PyObject *
dict_richcompare(PyObject *v, PyObject *w, int op)
{
    if (!PyDict_Check(v) || !PyDict_Check(w) || (op != Py_EQ && op != Py_NE)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    int cmp;
    Py_BEGIN_CRITICAL_SECTION2(v, w);
    cmp = v == w ? 1 : dict_equal((PyDictObject *)v, (PyDictObject *)w);
    Py_END_CRITICAL_SECTION2();
    if (cmp < 0) {
        return NULL;
    }
    if ((cmp > 0) == (op == Py_EQ)) {
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static int
dict_contains(PyObject *op, PyObject *key)
{
    return PyDict_Contains(op, key);
}

/* {'a': 1, 2: [3]}.  As CPython 3.13: the walk holds the dict's critical
 * section and takes new references to the key and value before their
 * reprs run (arbitrary code, which may suspend the section and let the
 * dict change: PyDict_Next then goes on by position in whatever table the
 * dict has, never through a freed one). */
static PyObject *
dict_repr(PyObject *op)
{
    ft_repr_writer w;
    PyObject *result;
    if (ft_repr_begin(&w, op, dict_length(op), "{", "}", &result)) {
        return result;
    }
    int status = 0;
    Py_BEGIN_CRITICAL_SECTION(op);
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (status == 0 && PyDict_Next(op, &pos, &key, &value)) {
        Py_INCREF(key);
        Py_INCREF(value);
        status = ft_repr_item(&w, key);
        if (status == 0) {
            status = ft_repr_write(&w, ": ", 2);
        }
        if (status == 0) {
            status = ft_repr_write_repr(&w, value);
        }
        Py_DECREF(key);
        Py_DECREF(value);
    }
    Py_END_CRITICAL_SECTION();
    return ft_repr_end(&w, status);
}

static PyObject *dict_iter(PyObject *op);

static PyMappingMethods dict_as_mapping = {
    .mp_length = dict_length,
    .mp_subscript = dict_subscript,
    .mp_ass_subscript = dict_ass_subscript,
};

static PySequenceMethods dict_as_sequence = {
    .sq_contains = dict_contains,
};

PyTypeObject PyDict_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "dict",
    .tp_basicsize = sizeof(PyDictObject),
    .tp_dealloc = dict_dealloc,
    .tp_repr = dict_repr,
    .tp_as_sequence = &dict_as_sequence,
    .tp_as_mapping = &dict_as_mapping,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE |
                Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_STATIC_BUILTIN |
                Py_TPFLAGS_DICT_SUBCLASS,
    .tp_doc = "dict() -> new empty dictionary",
    .tp_traverse = dict_traverse,
    .tp_clear = dict_tp_clear,
    .tp_richcompare = dict_richcompare,
    .tp_iter = dict_iter,
    .tp_free = PyObject_GC_Del,
};

/* ---- the key iterator ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyDictObject *di_dict;      /* NULL once exhausted */
    Py_ssize_t di_used;         /* ma_used when created; -1 after a size change */
    Py_ssize_t di_pos;          /* next entry number */
} dictiterobject;

static PyObject *
dict_iter(PyObject *op)
{
    dictiterobject *di = PyObject_GC_New(dictiterobject, &PyDictIterKey_Type);
    if (di == NULL) {
        return NULL;
    }
    di->di_dict = (PyDictObject *)Py_NewRef(op);
    di->di_used = PyDict_Size(op);
    di->di_pos = 0;
    PyObject_GC_Track(di);
    return (PyObject *)di;
}

static void
dictiter_dealloc(PyObject *op)
{
    dictiterobject *di = (dictiterobject *)op;
    PyObject_GC_UnTrack(op);
    Py_XDECREF(di->di_dict);
    PyObject_GC_Del(op);
}

static int
dictiter_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(((dictiterobject *)op)->di_dict);
    return 0;
}

static PyObject *
dictiter_self(PyObject *op)
{
    return Py_NewRef(op);
}

static PyObject *
dictiter_next(PyObject *op)
{
    dictiterobject *di = (dictiterobject *)op;
    PyDictObject *mp = di->di_dict;
    if (mp == NULL) {
        return NULL;
    }
    PyObject *key = NULL;
    bool done = false;
    Py_BEGIN_CRITICAL_SECTION(mp);
    if (di->di_used != mp->ma_used) {
        PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
        di->di_used = -1;   /* sticky, as in CPython */
    }
    else {
        Py_ssize_t pos = di->di_pos;
        PyObject *value;
        if (PyDict_Next((PyObject *)mp, &pos, &key, &value)) {
            Py_INCREF(key);
            di->di_pos = pos;
        }
        else {
            done = true;
        }
    }
    Py_END_CRITICAL_SECTION();
    if (done) {
        di->di_dict = NULL;
        Py_DECREF(mp);
    }
    return key;
}

PyTypeObject PyDictIterKey_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "dict_keyiterator",
    .tp_basicsize = sizeof(dictiterobject),
    .tp_dealloc = dictiter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
                Py_TPFLAGS_STATIC_BUILTIN,
    .tp_traverse = dictiter_traverse,
    .tp_iter = dictiter_self,
    .tp_iternext = dictiter_next,
    .tp_free = PyObject_GC_Del,
};

/* ---- the string-key forms -------------------------------------------------------- */

int
PyDict_SetItemString(PyObject *op, const char *key, PyObject *item)
{
    PyObject *k = PyUnicode_FromString(key);
    if (k == NULL) {
        return -1;
    }
    int r = PyDict_SetItem(op, k, item);
    Py_DECREF(k);
    return r;
}

int
PyDict_DelItemString(PyObject *op, const char *key)
{
    PyObject *k = PyUnicode_FromString(key);
    if (k == NULL) {
        return -1;
    }
    int r = PyDict_DelItem(op, k);
    Py_DECREF(k);
    return r;
}

int
PyDict_GetItemStringRef(PyObject *op, const char *key, PyObject **result)
{
    PyObject *k = PyUnicode_FromString(key);
    if (k == NULL) {
        *result = NULL;
        return -1;
    }
    int r = PyDict_GetItemRef(op, k, result);
    Py_DECREF(k);
    return r;
}

/* Borrowed, and every error suppressed (a pending exception is kept), as
 * CPython's: see docs/containers.md for why PyDict_GetItemStringRef is the
 * safe replacement. */
PyObject *
PyDict_GetItemString(PyObject *op, const char *key)
{
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *k = PyUnicode_FromString(key);
    PyObject *value = k != NULL ? PyDict_GetItem(op, k) : NULL;
    Py_XDECREF(k);
    PyErr_SetRaisedException(exc);   /* drops a failed conversion's error */
    return value;
}

int
PyDict_ContainsString(PyObject *op, const char *key)
{
    PyObject *k = PyUnicode_FromString(key);
    if (k == NULL) {
        return -1;
    }
    int r = PyDict_Contains(op, k);
    Py_DECREF(k);
    return r;
}

/* ---- keys, values, items as lists ------------------------------------------------------ */

enum { WANT_KEYS, WANT_VALUES, WANT_ITEMS };

/* A new list of the dict's keys, values or (key, value) tuples, in order,
 * built in the dict's critical section (one consistent snapshot). */
static PyObject *
dict_as_list(PyObject *op, int want)
{
    if (op == NULL || !PyDict_Check(op)) {
        PyErr_BadInternalCall();
        return NULL;
    }
    PyDictObject *mp = (PyDictObject *)op;
    PyObject *list;
    Py_BEGIN_CRITICAL_SECTION(mp);
    list = PyList_New(mp->ma_used);
    ft_dict_keys *dk = mp->ma_keys;
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; list != NULL && dk != NULL && i < dk->nentries; i++) {
        ft_dict_entry *ep = &dk_entries(dk)[i];
        if (ep->key == NULL) {
            continue;
        }
        PyObject *item;
        if (want == WANT_KEYS) {
            item = Py_NewRef(ep->key);
        }
        else if (want == WANT_VALUES) {
            item = Py_NewRef(ep->value);
        }
        else {
            item = PyTuple_Pack(2, ep->key, ep->value);
            if (item == NULL) {
                Py_CLEAR(list);
                break;
            }
        }
        PyList_SET_ITEM(list, n, item);
        n++;
    }
    Py_END_CRITICAL_SECTION();
    return list;
}

PyObject *
PyDict_Keys(PyObject *op)
{
    return dict_as_list(op, WANT_KEYS);
}

PyObject *
PyDict_Values(PyObject *op)
{
    return dict_as_list(op, WANT_VALUES);
}

PyObject *
PyDict_Items(PyObject *op)
{
    return dict_as_list(op, WANT_ITEMS);
}
