/* Lists: PyList_Type, its iterator, and the PyList_* API.
 *
 * Thread safety (free-threaded build; CPython 3.13's design, see
 * cpython-ft-internals.md §12 "List").
 *
 * Writers.  Every mutation runs inside the list's critical section
 * (Py_BEGIN_CRITICAL_SECTION(list)); writers never hold it across a call
 * that may detach with the list half-changed, and they drop the references
 * they removed after the list is consistent again (a destructor may come
 * back to this list).
 *
 * The item array.  ob_item points at the items of an ft_list_array, whose
 * header holds the capacity (and an RCU head): a reader that loaded an
 * ob_item finds that array's capacity without reading `allocated`, which
 * belongs to another array by then.  A SHARED list grows its array in
 * place when the allocator can extend the block without moving it
 * (ft_raw_grow_in_place: jemalloc's xallocx): the new slots are zeroed,
 * then the array's capacity is raised with a release store (a reader loads
 * it with acquire, so it never reads a slot before its zeroing), then
 * ob_size is stored; readers keep using the same array, nothing is freed.
 * Otherwise a resize of a SHARED list never reallocates: it allocates a
 * new array, copies, zeroes the rest, then publishes it with a release
 * store of ob_item (the header and the copied items happen before it),
 * then stores ob_size (relaxed).  A list
 * that is not SHARED has no lock-free readers but its owner (who is the
 * one resizing), so it is resized in place with realloc and only the new
 * tail zeroed: no copy when the allocator can extend the block.  The old array is freed at once if no
 * other thread can be reading it, else after an RCU grace period
 * (ft_rcu_call): see "SHARED" below.  Item stores into a published array
 * are release stores (the item's initialisation happens before a reader's
 * acquire load of the slot); slots past ob_size are set to NULL when the
 * list shrinks in place, so a stale size makes a reader find NULL.
 *
 * Readers.  PyList_GetItemRef, sq_item, contains, comparison and the
 * iterator read without the lock (list_get_item_ref):
 *   1. if the list is neither owned by this thread nor marked SHARED, take
 *      the locked path (below), which marks it SHARED;
 *   2. load ob_size (relaxed) and bounds-check: out of range is the answer
 *      (the index was out of range at that moment);
 *   3. load ob_item (acquire, pairs with the resize's release store); check
 *      the index against that array's capacity (header, written before the
 *      publication);
 *   4. load the slot (acquire) and ft_try_incref_compare it: the item may
 *      be dying, and the slot may have been changed since; on any failure
 *      (NULL array or slot, index beyond this array, failed try-incref)
 *      take the locked path, which gives the exact answer.
 *   The array a reader loaded stays allocated until the reader's next
 *   quiescent state (an attached thread is an online QSBR reader; a safe
 *   point or a detach is a quiescent state), because a SHARED list's old
 *   arrays are freed through ft_rcu_call.
 *
 * SHARED (FT_GC_SHARED in ob_gc_bits, set under the list's lock, read
 * relaxed).  A list that only its owner thread reads and writes frees its
 * old arrays at once.  The first access by another thread (a locked read,
 * or any write) sets SHARED under the lock before it reads or changes
 * anything; from then on old arrays are freed after a grace period.  A
 * reader that sees SHARED (relaxed) saw the store another thread made
 * under the lock, so every later writer (who takes that lock) sees it too
 * and defers its frees.  Because each such free waits for a grace period
 * and the regrow then needs fresh memory, a SHARED list shrinks less
 * eagerly: it keeps its array down to a quarter full (not half), and keeps
 * an array of up to SHARED_KEEP slots even when emptied, so a list used as
 * a queue between threads does not swap arrays on every fill and drain.
 * Items: setting SHARED marks every item with
 * ft_object_set_maybe_weakref, and every item stored into a SHARED list is
 * marked, so that when an item dies its memory outlives the grace period
 * too (core/object.c / core/obmalloc.c do that deferred free) and a
 * reader's try-incref of a dying item fails cleanly.
 *
 * Sorting empties the list for its duration (ob_item NULL, ob_size 0,
 * allocated -1), as CPython does: comparisons run arbitrary code, which
 * may change the list; such a change is detected afterwards, discarded, and
 * reported as ValueError("list modified during sort").
 *
 * The GIL build runs the same code: the critical sections are empty, the
 * GIL excludes writers from readers, and readers use the plain path.
 */
#include "Python.h"

#include "ft_alloc.h"
#include "ft_critical_section.h"
#include "ft_object.h"
#include "ft_rcu.h"

#include <string.h>

/* ---- the item array ---------------------------------------------------------- */

typedef struct {
    ft_rcu_head rcu;          /* the deferred free */
    Py_ssize_t allocated;     /* capacity: only grows (in place), see the header */
    PyObject *items[];
} ft_list_array;

#define ARRAY_OF(item_ptr) \
    ((ft_list_array *)((char *)(item_ptr) - offsetof(ft_list_array, items)))

/* The largest capacity whose array size fits in a Py_ssize_t. */
#define MAX_CAPACITY \
    ((Py_ssize_t)(((size_t)PY_SSIZE_T_MAX - sizeof(ft_list_array)) / sizeof(PyObject *)))

static size_t
array_bytes(Py_ssize_t cap)
{
    return sizeof(ft_list_array) + (size_t)cap * sizeof(PyObject *);
}

/* A new array of capacity cap whose slots [filled, cap) are NULL (the
 * caller fills the first ones before publishing it); NULL (no exception)
 * if memory runs out. */
static PyObject **
array_new(Py_ssize_t cap, Py_ssize_t filled)
{
    ft_list_array *a = ft_raw_alloc(array_bytes(cap));
    if (a == NULL) {
        return NULL;
    }
    a->allocated = cap;
    memset(&a->items[filled], 0, (size_t)(cap - filled) * sizeof(PyObject *));
    return a->items;
}

/* Raise the capacity of a published array to cap without moving it, if
 * the allocator can extend the block; under the lock.  The new slots are
 * zeroed before the release store of the capacity that exposes them to
 * readers (see the header). */
static bool
array_grow_in_place(PyObject **items, Py_ssize_t cap)
{
    ft_list_array *a = ARRAY_OF(items);
    Py_ssize_t old_cap = a->allocated;
    if (cap <= old_cap || !ft_raw_grow_in_place(a, array_bytes(cap))) {
        return false;
    }
    memset(&a->items[old_cap], 0, (size_t)(cap - old_cap) * sizeof(PyObject *));
    __atomic_store_n(&a->allocated, cap, __ATOMIC_RELEASE);
    return true;
}

static void
array_free_now(PyObject **items)
{
    if (items != NULL) {
        ft_list_array *a = ARRAY_OF(items);
        ft_raw_free(a, array_bytes(a->allocated));
    }
}

static void
array_free_cb(ft_rcu_head *head)
{
    FT_RCU_CALLBACK_BEGIN();
    ft_list_array *a = (ft_list_array *)((char *)head - offsetof(ft_list_array, rcu));
    ft_raw_free(a, array_bytes(a->allocated));
}

static bool
list_is_shared(PyListObject *self)
{
    return ft_free_threaded &&
           (ft_gc_bits((PyObject *)self) & (FT_GC_SHARED | FT_GC_UNREACHABLE)) == FT_GC_SHARED;
}

/* Free an array that was just unpublished from self.  Lock-free readers
 * of a SHARED list may still be reading it: free after a grace period,
 * one ft_rcu_call per array (not batched: a list that keeps growing
 * resizes O(log n) times, so the rate stays low).  ft_rcu_call needs an
 * online caller, which every attached thread is (with the world stopped
 * too: the stopper stays attached, the others are parked offline).  A
 * caller that is not online has no attached thread state, which the API
 * allows only while no other thread runs Python code (finalization), and
 * the GIL build has no lock-free readers: both free at once. */
static void
array_retire(PyListObject *self, PyObject **items, bool shared)
{
    (void)self;
    if (items == NULL) {
        return;
    }
    if (shared && ft_rcu_is_online()) {
        ft_rcu_call(&ARRAY_OF(items)->rcu, array_free_cb);
    }
    else {
        array_free_now(items);
    }
}

/* ---- atomic accessors (the fields lock-free readers read) ----------------------- */

static inline Py_ssize_t
load_size(PyListObject *self)
{
    return __atomic_load_n(&self->ob_base.ob_size, __ATOMIC_RELAXED);
}

static inline void
store_size(PyListObject *self, Py_ssize_t n)
{
    __atomic_store_n(&self->ob_base.ob_size, n, __ATOMIC_RELAXED);
}

static inline PyObject **
load_items(PyListObject *self)
{
    return __atomic_load_n(&self->ob_item, __ATOMIC_ACQUIRE);
}

static inline void
store_items(PyListObject *self, PyObject **items, Py_ssize_t allocated)
{
    __atomic_store_n(&self->ob_item, items, __ATOMIC_RELEASE);
    __atomic_store_n(&self->allocated, allocated, __ATOMIC_RELAXED);
}

static inline PyObject *
load_item(PyObject **items, Py_ssize_t i)
{
    return __atomic_load_n(&items[i], __ATOMIC_ACQUIRE);
}

static inline void
store_item_raw(PyObject **items, Py_ssize_t i, PyObject *v)
{
    __atomic_store_n(&items[i], v, __ATOMIC_RELEASE);
}

static inline bool
list_owned(PyListObject *self)
{
#ifdef Py_GIL_DISABLED
    return _Py_IsOwnedByCurrentThread((PyObject *)self) || ft_gc_is_garbage((PyObject *)self);
#else
    (void)self;
    return true;
#endif
}

/* Under the lock, before any access by a thread that does not own self:
 * mark self SHARED and its items MAYBE_WEAKREF (see the header). */
static void
list_note_access(PyListObject *self)
{
    if (!ft_free_threaded || list_owned(self) || list_is_shared(self)) {
        return;
    }
    ft_gc_bits_set((PyObject *)self, FT_GC_SHARED);
    PyObject **items = self->ob_item;
    for (Py_ssize_t i = 0, n = load_size(self); i < n; i++) {
        if (items[i] != NULL) {
            ft_object_set_maybe_weakref(items[i]);
        }
    }
}

/* Store v (a reference the list now owns, or NULL) into slot i, under the
 * lock. */
static inline void
list_store(PyListObject *self, PyObject **items, Py_ssize_t i, PyObject *v)
{
    if (v != NULL && list_is_shared(self)) {
        ft_object_set_maybe_weakref(v);
    }
    store_item_raw(items, i, v);
}

/* Make room for newsize items, under the lock: ob_size becomes newsize;
 * slots between the old and the new size are NULL (new array) or whatever
 * the caller put there.  -1 with MemoryError, the list unchanged.  Growth
 * is CPython's (about 1/8 over, rounded to 4), and an array less than half
 * full is shrunk. */
/* A SHARED list keeps an array this small however few items it holds (see
 * SHARED in the header): 512 bytes. */
#define SHARED_KEEP 64

static int
list_resize(PyListObject *self, Py_ssize_t newsize)
{
    Py_ssize_t allocated = self->allocated;   /* -1 while sorting */
    Py_ssize_t size = load_size(self);
    if (allocated >= newsize &&
        (newsize >= (allocated >> 1) ||
         (list_is_shared(self) && (newsize >= (allocated >> 2) || allocated <= SHARED_KEEP)))) {
        store_size(self, newsize);
        for (Py_ssize_t i = newsize; i < size; i++) {
            store_item_raw(self->ob_item, i, NULL);   /* stale sizes find NULL */
        }
        return 0;
    }
    PyObject **old = self->ob_item;
    bool shared = list_is_shared(self);
    if (newsize == 0) {
        store_items(self, NULL, 0);
        store_size(self, 0);
        array_retire(self, old, shared);
        return 0;
    }
    if (newsize > MAX_CAPACITY) {
        PyErr_NoMemory();
        return -1;
    }
    size_t cap = ((size_t)newsize + ((size_t)newsize >> 3) + 6) & ~(size_t)3;
    /* A big jump (extend by many) gets no over-allocation. */
    if (newsize - size > (Py_ssize_t)(cap - (size_t)newsize)) {
        cap = ((size_t)newsize + 3) & ~(size_t)3;
    }
    if (cap > (size_t)MAX_CAPACITY) {
        cap = (size_t)newsize;
    }
    if (!shared && old != NULL) {
        /* Nobody else can be reading this array: other threads take the
         * lock (which we hold) until the list is SHARED.  Resize it in
         * place: no copy when jemalloc can extend the block, and only the
         * new tail is zeroed (growing a list of n items this way writes
         * O(n) bytes, not O(n) per resize). */
        ft_list_array *a = ARRAY_OF(old);
        Py_ssize_t old_cap = a->allocated;
        for (Py_ssize_t i = newsize; i < size && i < (Py_ssize_t)cap; i++) {
            old[i] = NULL;   /* shrinking: slots past the new size are NULL */
        }
        ft_list_array *na = PyMem_RawRealloc(a, array_bytes((Py_ssize_t)cap));
        if (na == NULL) {
            PyErr_NoMemory();   /* the old array is intact */
            return -1;
        }
        if ((Py_ssize_t)cap > old_cap) {
            memset(&na->items[old_cap], 0, ((size_t)cap - (size_t)old_cap) * sizeof(PyObject *));
        }
        na->allocated = (Py_ssize_t)cap;
        store_items(self, na->items, (Py_ssize_t)cap);
        store_size(self, newsize);
        return 0;
    }
    if (old != NULL && newsize > size && array_grow_in_place(old, (Py_ssize_t)cap)) {
        store_items(self, old, (Py_ssize_t)cap);
        store_size(self, newsize);
        return 0;
    }
    Py_ssize_t keep = size < newsize ? size : newsize;
    PyObject **items = array_new((Py_ssize_t)cap, old != NULL ? keep : 0);
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (keep > 0 && old != NULL) {   /* (size > 0 implies an array) */
        memcpy(items, old, (size_t)keep * sizeof(PyObject *));
    }
    store_items(self, items, (Py_ssize_t)cap);
    store_size(self, newsize);
    array_retire(self, old, shared);
    return 0;
}

/* ---- creation and reads ------------------------------------------------------------ */

PyObject *
PyList_New(Py_ssize_t size)
{
    if (size < 0) {
        PyErr_BadInternalCall();
        return NULL;
    }
    if (size > MAX_CAPACITY) {
        return PyErr_NoMemory();
    }
    PyListObject *op = PyObject_GC_New(PyListObject, &PyList_Type);
    if (op == NULL) {
        return NULL;
    }
    op->ob_item = NULL;
    op->allocated = 0;
    op->ob_base.ob_size = 0;
    if (size > 0) {
        op->ob_item = array_new(size, 0);
        if (op->ob_item == NULL) {
            PyObject_GC_Del(op);
            return PyErr_NoMemory();
        }
        op->allocated = size;
        op->ob_base.ob_size = size;
    }
    PyObject_GC_Track(op);
    return (PyObject *)op;
}

Py_ssize_t
PyList_Size(PyObject *op)
{
    if (op == NULL || !PyList_Check(op)) {
        PyErr_BadInternalCall();
        return -1;
    }
    return load_size(_PyList_CAST(op));
}

/* Item i under the lock, or NULL (no exception) if i is out of range. */
static PyObject *
list_item_locked(PyListObject *self, Py_ssize_t i)
{
    PyObject *item = NULL;
    Py_BEGIN_CRITICAL_SECTION(self);
    list_note_access(self);
    if ((size_t)i < (size_t)load_size(self)) {
        item = Py_XNewRef(self->ob_item[i]);
    }
    Py_END_CRITICAL_SECTION();
    return item;
}

/* A new reference to item i, or NULL (no exception) if i is out of range;
 * lock-free when it can be (the protocol is in the header). */
static PyObject *
list_get_item_ref(PyListObject *self, Py_ssize_t i)
{
    if (!ft_free_threaded) {
        if ((size_t)i >= (size_t)Py_SIZE(self)) {
            return NULL;
        }
        return Py_XNewRef(self->ob_item[i]);
    }
    if (!list_owned(self) && !list_is_shared(self)) {
        return list_item_locked(self, i);   /* marks self SHARED */
    }
    if ((size_t)i >= (size_t)load_size(self)) {
        return NULL;
    }
    PyObject **items = load_items(self);
    if (items == NULL || i >= __atomic_load_n(&ARRAY_OF(items)->allocated, __ATOMIC_ACQUIRE)) {
        return list_item_locked(self, i);
    }
    PyObject *item = load_item(items, i);
    if (item == NULL || !ft_try_incref_compare(&items[i], item)) {
        return list_item_locked(self, i);
    }
    return item;
}

PyObject *
PyList_GetItemRef(PyObject *op, Py_ssize_t i)
{
    if (op == NULL || !PyList_Check(op)) {
        PyErr_SetString(PyExc_TypeError, "expected a list");
        return NULL;
    }
    PyObject *item = list_get_item_ref(_PyList_CAST(op), i);
    if (item == NULL) {
        PyErr_SetString(PyExc_IndexError, "list index out of range");
    }
    return item;
}

PyObject *
PyList_GetItem(PyObject *op, Py_ssize_t i)
{
    if (op == NULL || !PyList_Check(op)) {
        PyErr_BadInternalCall();
        return NULL;
    }
    /* Borrowed, unlocked (CPython's contract: the caller keeps the list
     * from changing); atomic loads keep a racing caller memory-safe as far
     * as the list is concerned. */
    PyListObject *self = _PyList_CAST(op);
    if ((size_t)i >= (size_t)load_size(self)) {
        PyErr_SetString(PyExc_IndexError, "list index out of range");
        return NULL;
    }
    return load_item(load_items(self), i);
}

/* ---- mutations ------------------------------------------------------------------ */

int
PyList_SetItem(PyObject *op, Py_ssize_t i, PyObject *newitem)
{
    if (op == NULL || !PyList_Check(op)) {
        Py_XDECREF(newitem);
        PyErr_BadInternalCall();
        return -1;
    }
    PyListObject *self = _PyList_CAST(op);
    PyObject *old = NULL;
    int rc = 0;
    Py_BEGIN_CRITICAL_SECTION(self);
    list_note_access(self);
    if ((size_t)i >= (size_t)load_size(self)) {
        rc = -1;
    }
    else {
        old = self->ob_item[i];
        list_store(self, self->ob_item, i, newitem);
    }
    Py_END_CRITICAL_SECTION();
    if (rc < 0) {
        Py_XDECREF(newitem);
        PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
        return -1;
    }
    Py_XDECREF(old);
    return 0;
}

/* Insert v (a new reference is taken) before index `where` (clamped as
 * list.insert does), under the lock. */
static int
list_insert_locked(PyListObject *self, Py_ssize_t where, PyObject *v)
{
    Py_ssize_t n = load_size(self);
    if (n == PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_OverflowError, "cannot add more objects to list");
        return -1;
    }
    if (where < 0) {
        where += n;
        if (where < 0) {
            where = 0;
        }
    }
    if (where > n) {
        where = n;
    }
    if (where == n && self->allocated > n) {
        /* Append with room: the item before the size, so that a reader
         * that sees the new size finds the item. */
        list_store(self, self->ob_item, n, Py_NewRef(v));
        store_size(self, n + 1);
        return 0;
    }
    if (list_resize(self, n + 1) < 0) {
        return -1;
    }
    PyObject **items = self->ob_item;
    for (Py_ssize_t i = n; i > where; i--) {
        store_item_raw(items, i, items[i - 1]);
    }
    list_store(self, items, where, Py_NewRef(v));
    return 0;
}

int
PyList_Insert(PyObject *op, Py_ssize_t where, PyObject *newitem)
{
    if (op == NULL || !PyList_Check(op) || newitem == NULL) {
        PyErr_BadInternalCall();
        return -1;
    }
    PyListObject *self = _PyList_CAST(op);
    int rc;
    Py_BEGIN_CRITICAL_SECTION(self);
    list_note_access(self);
    rc = list_insert_locked(self, where, newitem);
    Py_END_CRITICAL_SECTION();
    return rc;
}

int
PyList_Append(PyObject *op, PyObject *newitem)
{
    if (op == NULL || !PyList_Check(op) || newitem == NULL) {
        PyErr_BadInternalCall();
        return -1;
    }
    PyListObject *self = _PyList_CAST(op);
    int rc;
    Py_BEGIN_CRITICAL_SECTION(self);
    list_note_access(self);
    rc = list_insert_locked(self, PY_SSIZE_T_MAX, newitem);
    Py_END_CRITICAL_SECTION();
    return rc;
}

/* Slice bounds clamped as CPython clamps them for PyList_GetSlice and
 * PyList_SetSlice. */
static void
clamp_slice(Py_ssize_t n, Py_ssize_t *low, Py_ssize_t *high)
{
    if (*low < 0) {
        *low = 0;
    }
    else if (*low > n) {
        *low = n;
    }
    if (*high < *low) {
        *high = *low;
    }
    else if (*high > n) {
        *high = n;
    }
}

/* References removed from a list, dropped after the lock is released. */
typedef struct {
    PyObject **items;
    Py_ssize_t n;
    PyObject *small[8];   /* most removals are short: no allocation */
} recycle_buf;

static void
recycle_drop(recycle_buf *r)
{
    for (Py_ssize_t i = 0; i < r->n; i++) {
        Py_XDECREF(r->items[i]);
    }
    if (r->items != r->small) {
        PyMem_Free(r->items);
    }
}

/* self[low:high] = src[0..m) (new references taken), under the lock; the
 * removed references go to *r.  -1 with MemoryError, the list unchanged. */
static int
list_ass_slice_locked(PyListObject *self, Py_ssize_t low, Py_ssize_t high,
                      PyObject *const *src, Py_ssize_t m, recycle_buf *r)
{
    Py_ssize_t n = load_size(self);
    clamp_slice(n, &low, &high);
    Py_ssize_t removed = high - low;
    Py_ssize_t d = m - removed;
    r->items = r->small;
    r->n = 0;
    if (removed > (Py_ssize_t)(sizeof r->small / sizeof r->small[0])) {
        r->items = PyMem_Malloc((size_t)removed * sizeof(PyObject *));
        if (r->items == NULL) {
            r->items = r->small;
            PyErr_NoMemory();
            return -1;
        }
    }
    if (d > 0 && n > PY_SSIZE_T_MAX - d) {
        recycle_drop(r);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = self->ob_item;
    if (removed > 0) {
        memcpy(r->items, items + low, (size_t)removed * sizeof(PyObject *));
    }
    if (d < 0) {
        /* Shrink: move the tail down, then let resize cut (and NULL) the
         * end.  A shrinking resize that cannot allocate keeps the bigger
         * array instead of failing. */
        for (Py_ssize_t i = high; i < n; i++) {
            store_item_raw(items, i + d, items[i]);
        }
        if (list_resize(self, n + d) < 0) {
            PyErr_Clear();
            store_size(self, n + d);
            for (Py_ssize_t i = n + d; i < n; i++) {
                store_item_raw(items, i, NULL);
            }
        }
        items = self->ob_item;
    }
    else if (d > 0) {
        if (list_resize(self, n + d) < 0) {
            recycle_drop(r);   /* nothing recorded yet */
            return -1;
        }
        items = self->ob_item;
        for (Py_ssize_t i = n; --i >= high;) {
            store_item_raw(items, i + d, items[i]);
        }
    }
    for (Py_ssize_t k = 0; k < m; k++) {
        list_store(self, items, low + k, Py_XNewRef(src[k]));
    }
    r->n = removed;
    return 0;
}

/* A snapshot of a list or tuple's items as a new tuple (a list is copied
 * under its lock); NULL with an exception set. */
static PyObject *list_as_tuple_impl(PyListObject *self);

int
PyList_SetSlice(PyObject *op, Py_ssize_t low, Py_ssize_t high, PyObject *v)
{
    if (op == NULL || !PyList_Check(op)) {
        PyErr_BadInternalCall();
        return -1;
    }
    PyObject *snap = NULL;
    PyObject *const *src = NULL;
    Py_ssize_t m = 0;
    if (v != NULL) {
        if (PyList_Check(v)) {
            snap = list_as_tuple_impl(_PyList_CAST(v));   /* also covers v == op */
        }
        else if (PyTuple_Check(v)) {
            snap = Py_NewRef(v);
        }
        else {
            snap = PySequence_Tuple(v);
            if (snap == NULL) {
                if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                    PyErr_Format(PyExc_TypeError, "can only assign an iterable");
                }
                return -1;
            }
        }
        if (snap == NULL) {
            return -1;
        }
        src = _PyTuple_CAST(snap)->ob_item;
        m = PyTuple_GET_SIZE(snap);
    }
    PyListObject *self = _PyList_CAST(op);
    recycle_buf r;
    int rc;
    Py_BEGIN_CRITICAL_SECTION(self);
    list_note_access(self);
    rc = list_ass_slice_locked(self, low, high, src, m, &r);
    Py_END_CRITICAL_SECTION();
    if (rc == 0) {
        recycle_drop(&r);
    }
    Py_XDECREF(snap);
    return rc;
}

int
PyList_Clear(PyObject *op)
{
    if (op == NULL || !PyList_Check(op)) {
        PyErr_BadInternalCall();
        return -1;
    }
    PyListObject *self = _PyList_CAST(op);
    PyObject **items;
    Py_ssize_t n;
    bool shared;
    Py_BEGIN_CRITICAL_SECTION(self);
    list_note_access(self);
    items = self->ob_item;
    n = load_size(self);
    shared = list_is_shared(self);
    store_size(self, 0);
    store_items(self, NULL, 0);
    Py_END_CRITICAL_SECTION();
    /* The array is ours now: nobody writes it; readers may still read it. */
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(items[i]);
    }
    array_retire(self, items, shared);
    return 0;
}

int
PyList_Extend(PyObject *op, PyObject *iterable)
{
    if (op == NULL || !PyList_Check(op) || iterable == NULL) {
        PyErr_BadInternalCall();
        return -1;
    }
    PyListObject *self = _PyList_CAST(op);
    if (PyList_Check(iterable) || PyTuple_Check(iterable)) {
        PyObject *snap = PyList_Check(iterable) ? list_as_tuple_impl(_PyList_CAST(iterable))
                                                : Py_NewRef(iterable);
        if (snap == NULL) {
            return -1;
        }
        recycle_buf r;
        int rc;
        Py_BEGIN_CRITICAL_SECTION(self);
        list_note_access(self);
        rc = list_ass_slice_locked(self, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX,
                                   _PyTuple_CAST(snap)->ob_item, PyTuple_GET_SIZE(snap), &r);
        Py_END_CRITICAL_SECTION();
        if (rc == 0) {
            recycle_drop(&r);
        }
        Py_DECREF(snap);
        return rc;
    }
    PyObject *it = PyObject_GetIter(iterable);
    if (it == NULL) {
        return -1;
    }
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        int rc = PyList_Append(op, item);
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *
list_as_tuple_impl(PyListObject *self)
{
    /* Allocate outside the lock (a GC allocation is a safe point, where
     * the section may be suspended), then copy if the size still fits. */
    for (;;) {
        Py_ssize_t n = load_size(self);
        PyObject *t = PyTuple_New(n);
        if (t == NULL) {
            return NULL;
        }
        bool done = false;
        Py_BEGIN_CRITICAL_SECTION(self);
        list_note_access(self);
        if (load_size(self) == n) {
            for (Py_ssize_t i = 0; i < n; i++) {
                PyTuple_SET_ITEM(t, i, Py_XNewRef(self->ob_item[i]));
            }
            done = true;
        }
        Py_END_CRITICAL_SECTION();
        if (done) {
            return t;
        }
        Py_DECREF(t);   /* resized meanwhile: again */
    }
}

PyObject *
PyList_AsTuple(PyObject *op)
{
    if (op == NULL || !PyList_Check(op)) {
        PyErr_BadInternalCall();
        return NULL;
    }
    return list_as_tuple_impl(_PyList_CAST(op));
}

PyObject *
PyList_GetSlice(PyObject *op, Py_ssize_t low, Py_ssize_t high)
{
    if (op == NULL || !PyList_Check(op)) {
        PyErr_BadInternalCall();
        return NULL;
    }
    PyListObject *self = _PyList_CAST(op);
    for (;;) {
        Py_ssize_t lo = low, hi = high;
        Py_ssize_t n = load_size(self);
        clamp_slice(n, &lo, &hi);
        PyObject *res = PyList_New(hi - lo);
        if (res == NULL) {
            return NULL;
        }
        bool done = false;
        Py_BEGIN_CRITICAL_SECTION(self);
        list_note_access(self);
        if (load_size(self) == n) {
            PyObject **dst = _PyList_CAST(res)->ob_item;
            for (Py_ssize_t i = lo; i < hi; i++) {
                dst[i - lo] = Py_XNewRef(self->ob_item[i]);
            }
            done = true;
        }
        Py_END_CRITICAL_SECTION();
        if (done) {
            return res;
        }
        Py_DECREF(res);
    }
}

int
PyList_Reverse(PyObject *op)
{
    if (op == NULL || !PyList_Check(op)) {
        PyErr_BadInternalCall();
        return -1;
    }
    PyListObject *self = _PyList_CAST(op);
    Py_BEGIN_CRITICAL_SECTION(self);
    list_note_access(self);
    PyObject **items = self->ob_item;
    for (Py_ssize_t lo = 0, hi = load_size(self) - 1; lo < hi; lo++, hi--) {
        PyObject *t = items[lo];
        store_item_raw(items, lo, items[hi]);
        store_item_raw(items, hi, t);
    }
    Py_END_CRITICAL_SECTION();
    return 0;
}

/* ---- sort ------------------------------------------------------------------------------ */

/* A stable bottom-up merge sort of a[0..n) by Py_LT, with runs of RUN
 * items sorted by binary insertion first.  a may be read by lock-free
 * readers (the list's old array), so it is written with release stores;
 * tmp is private.  On a comparison error it stops and returns -1 with a
 * still a permutation of its items (each step completes its moves). */
#define RUN 32   /* short runs: insertion's few moves beat merging */

static int
insertion_sort(PyObject **a, Py_ssize_t lo, Py_ssize_t hi)
{
    for (Py_ssize_t i = lo + 1; i < hi; i++) {
        PyObject *pivot = a[i];
        /* The first position whose item is greater than pivot: equal items
         * stay in front (stability). */
        Py_ssize_t l = lo, r = i;
        while (l < r) {
            Py_ssize_t m = l + (r - l) / 2;
            int lt = PyObject_RichCompareBool(pivot, a[m], Py_LT);
            if (lt < 0) {
                return -1;
            }
            if (lt) {
                r = m;
            }
            else {
                l = m + 1;
            }
        }
        for (Py_ssize_t k = i; k > l; k--) {
            store_item_raw(a, k, a[k - 1]);
        }
        store_item_raw(a, l, pivot);
    }
    return 0;
}

static int
merge(PyObject **a, PyObject **tmp, Py_ssize_t lo, Py_ssize_t mid, Py_ssize_t hi)
{
    Py_ssize_t i = lo, j = mid, k = lo;
    int rc = 0;
    while (i < mid && j < hi) {
        /* Take from the right only if strictly less: stability. */
        int lt = PyObject_RichCompareBool(a[j], a[i], Py_LT);
        if (lt < 0) {
            rc = -1;
            break;
        }
        tmp[k++] = lt ? a[j++] : a[i++];
    }
    while (i < mid) {
        tmp[k++] = a[i++];
    }
    while (j < hi) {
        tmp[k++] = a[j++];
    }
    for (k = lo; k < hi; k++) {
        store_item_raw(a, k, tmp[k]);
    }
    return rc;
}

static int
merge_sort(PyObject **a, PyObject **tmp, Py_ssize_t n)
{
    for (Py_ssize_t lo = 0; lo < n; lo += RUN) {
        if (insertion_sort(a, lo, lo + RUN < n ? lo + RUN : n) < 0) {
            return -1;
        }
    }
    for (Py_ssize_t width = RUN; width < n; width *= 2) {
        for (Py_ssize_t lo = 0; lo + width < n; lo += 2 * width) {
            Py_ssize_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            if (merge(a, tmp, lo, lo + width, hi) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

int
PyList_Sort(PyObject *op)
{
    if (op == NULL || !PyList_Check(op)) {
        PyErr_BadInternalCall();
        return -1;
    }
    PyListObject *self = _PyList_CAST(op);
    int rc = 0;
    PyObject **tmp = NULL;
    size_t tmp_bytes = 0;
    PyObject **final_items;
    Py_ssize_t final_n;
    bool modified, shared;
    Py_BEGIN_CRITICAL_SECTION(self);
    list_note_access(self);
    PyObject **saved = self->ob_item;
    Py_ssize_t n = load_size(self);
    Py_ssize_t saved_alloc = self->allocated;
    /* Empty the list while comparisons (arbitrary code) run; allocated -1
     * marks "sorting", which any change to the list overwrites. */
    store_size(self, 0);
    store_items(self, NULL, -1);
    if (n > 1) {
        tmp_bytes = (size_t)n * sizeof(PyObject *);
        tmp = ft_raw_alloc(tmp_bytes);
        if (tmp == NULL) {
            PyErr_NoMemory();
            rc = -1;
        }
        else {
            rc = merge_sort(saved, tmp, n);
        }
    }
    final_items = self->ob_item;
    final_n = load_size(self);
    modified = self->allocated != -1 || final_items != NULL;
    store_items(self, saved, saved_alloc);
    store_size(self, n);
    shared = list_is_shared(self);
    Py_END_CRITICAL_SECTION();
    if (tmp != NULL) {
        ft_raw_free(tmp, tmp_bytes);
    }
    if (modified) {
        /* What the comparisons put into the list is discarded. */
        for (Py_ssize_t i = 0; i < final_n; i++) {
            Py_XDECREF(final_items[i]);
        }
        array_retire(self, final_items, shared);
        if (rc == 0) {
            PyErr_SetString(PyExc_ValueError, "list modified during sort");
            rc = -1;
        }
    }
    return rc;
}

/* ---- type slots ---------------------------------------------------------------------- */

static void
list_dealloc(PyObject *op)
{
    PyListObject *self = _PyList_CAST(op);
    PyObject_GC_UnTrack(op);
    PyObject **items = self->ob_item;
    for (Py_ssize_t i = Py_SIZE(op); --i >= 0;) {
        Py_XDECREF(items[i]);
    }
    /* Nobody else holds a reference, so nobody reads the array. */
    array_free_now(items);
    Py_TYPE(op)->tp_free(op);
}

static int
list_traverse(PyObject *op, visitproc visit, void *arg)
{
    for (Py_ssize_t i = Py_SIZE(op); --i >= 0;) {
        Py_VISIT(PyList_GET_ITEM(op, i));
    }
    return 0;
}

static int
list_tp_clear(PyObject *op)
{
    (void)PyList_Clear(op);
    return 0;
}

static Py_ssize_t
list_length(PyObject *op)
{
    return load_size(_PyList_CAST(op));
}

static PyObject *
list_item(PyObject *op, Py_ssize_t i)
{
    PyObject *item = list_get_item_ref(_PyList_CAST(op), i);
    if (item == NULL) {
        PyErr_SetString(PyExc_IndexError, "list index out of range");
    }
    return item;
}

static int
list_ass_item(PyObject *op, Py_ssize_t i, PyObject *v)
{
    PyListObject *self = _PyList_CAST(op);
    if (v != NULL) {
        return PyList_SetItem(op, i, Py_NewRef(v));
    }
    recycle_buf r;
    int rc = 0;
    Py_BEGIN_CRITICAL_SECTION(self);
    list_note_access(self);
    if ((size_t)i >= (size_t)load_size(self)) {
        rc = 1;
    }
    else {
        rc = list_ass_slice_locked(self, i, i + 1, NULL, 0, &r);
    }
    Py_END_CRITICAL_SECTION();
    if (rc > 0) {
        PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
        return -1;
    }
    if (rc == 0) {
        recycle_drop(&r);
    }
    return rc;
}

static int
list_contains(PyObject *op, PyObject *el)
{
    PyListObject *self = _PyList_CAST(op);
    PyObject *item;
    for (Py_ssize_t i = 0; (item = list_get_item_ref(self, i)) != NULL; i++) {
        int cmp = PyObject_RichCompareBool(item, el, Py_EQ);
        Py_DECREF(item);
        if (cmp != 0) {
            return cmp;
        }
    }
    return 0;
}

/* Element-wise, as tuples compare; each item is read with a reference
 * held (a comparison may change either list). */
static PyObject *
list_richcompare(PyObject *v, PyObject *w, int op)
{
    if (!PyList_Check(v) || !PyList_Check(w)) {
        return Py_NewRef(Py_NotImplemented);
    }
    PyListObject *vl = _PyList_CAST(v), *wl = _PyList_CAST(w);
    if (load_size(vl) != load_size(wl) && (op == Py_EQ || op == Py_NE)) {
        return Py_NewRef(op == Py_EQ ? Py_False : Py_True);
    }
    PyObject *vi = NULL, *wi = NULL;
    for (Py_ssize_t i = 0;; i++) {
        vi = list_get_item_ref(vl, i);
        wi = list_get_item_ref(wl, i);
        if (vi == NULL || wi == NULL) {
            break;
        }
        int k = PyObject_RichCompareBool(vi, wi, Py_EQ);
        if (k < 0) {
            Py_DECREF(vi);
            Py_DECREF(wi);
            return NULL;
        }
        if (!k) {
            break;
        }
        Py_DECREF(vi);
        Py_DECREF(wi);
    }
    if (vi == NULL || wi == NULL) {
        /* One ran out: compare the lengths. */
        Py_XDECREF(vi);
        Py_XDECREF(wi);
        Py_ssize_t vlen = load_size(vl), wlen = load_size(wl);
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
    PyObject *res;
    if (op == Py_EQ) {
        res = Py_NewRef(Py_False);
    }
    else if (op == Py_NE) {
        res = Py_NewRef(Py_True);
    }
    else {
        res = PyObject_RichCompare(vi, wi, op);
    }
    Py_DECREF(vi);
    Py_DECREF(wi);
    return res;
}

/* ---- the iterator ------------------------------------------------------------------ */

/* Advancing one iterator from two threads is memory-safe (the index is a
 * relaxed atomic; each next reads the list as list_get_item_ref does) but,
 * as in CPython, two threads may get the same item. */
typedef struct {
    PyObject_HEAD
    Py_ssize_t it_index;     /* -1 once exhausted */
    PyListObject *it_seq;    /* GIL build: NULL once exhausted */
} listiterobject;

static PyObject *
list_iter(PyObject *seq)
{
    listiterobject *it = PyObject_GC_New(listiterobject, &PyListIter_Type);
    if (it == NULL) {
        return NULL;
    }
    it->it_index = 0;
    it->it_seq = (PyListObject *)Py_NewRef(seq);
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PyObject *
listiter_next(PyObject *op)
{
    listiterobject *it = (listiterobject *)op;
    Py_ssize_t i = __atomic_load_n(&it->it_index, __ATOMIC_RELAXED);
    PyListObject *seq = it->it_seq;
    if (i < 0 || seq == NULL) {
        return NULL;
    }
    PyObject *item = list_get_item_ref(seq, i);
    if (item == NULL) {
        __atomic_store_n(&it->it_index, -1, __ATOMIC_RELAXED);
        if (!ft_free_threaded) {
            /* Free-threaded, another thread may be reading it_seq. */
            it->it_seq = NULL;
            Py_DECREF(seq);
        }
        return NULL;   /* the end: no exception */
    }
    __atomic_store_n(&it->it_index, i + 1, __ATOMIC_RELAXED);
    return item;
}

static void
listiter_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    Py_XDECREF(((listiterobject *)op)->it_seq);
    PyObject_GC_Del(op);
}

static int
listiter_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(((listiterobject *)op)->it_seq);
    return 0;
}

/* [1, 'a', [...]]: the iterator fetches one index at a time with a new
 * reference, the bounds checked each time, so while an item's repr or
 * another thread changes the list, each item printed was at its index at
 * some moment and none is freed under the repr. */
static PyObject *
list_repr(PyObject *op)
{
    return ft_sequence_repr(op, list_iter, "[", "]");
}

/* o[key] with an int key (slices need slice objects, not in ftrt yet). */
static PyObject *
list_subscript(PyObject *op, PyObject *key)
{
    Py_ssize_t i;
    if (ft_subscript_index(key, "list indices must be integers or slices, not %.200s", &i) < 0) {
        return NULL;
    }
    if (i < 0) {
        i += load_size(_PyList_CAST(op));
    }
    return list_item(op, i);
}

static int
list_ass_subscript(PyObject *op, PyObject *key, PyObject *v)
{
    Py_ssize_t i;
    if (ft_subscript_index(key, "list indices must be integers or slices, not %.200s", &i) < 0) {
        return -1;
    }
    if (i < 0) {
        i += load_size(_PyList_CAST(op));
    }
    return list_ass_item(op, i, v);
}

/* ---- concatenation and repetition ------------------------------------------------------- */

/* New references to src[0..n) into dst (a new list's array). */
static void
copy_refs(PyObject **dst, PyObject *const *src, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        dst[i] = Py_XNewRef(src[i]);
    }
}

/* A new list of a's items then b's (b NULL: none), all of it `times`
 * times over: the sizes read, the list allocated outside the locks, then
 * the items copied under both lists' critical section (one snapshot of the
 * two together), again if a size changed meanwhile, as PyList_GetSlice
 * does.  times >= 1. */
static PyObject *
list_snapshot(PyListObject *a, PyListObject *b, Py_ssize_t times)
{
    PyListObject *lb = b != NULL ? b : a;   /* one lock twice is one lock */
    for (;;) {
        Py_ssize_t na = load_size(a), nb = b != NULL ? load_size(b) : 0;
        if (na > PY_SSIZE_T_MAX - nb || na + nb > PY_SSIZE_T_MAX / times) {
            return PyErr_NoMemory();
        }
        PyObject *res = PyList_New((na + nb) * times);
        if (res == NULL) {
            return NULL;
        }
        bool done = false;
        Py_BEGIN_CRITICAL_SECTION2(a, lb);
        list_note_access(a);
        list_note_access(lb);
        if (load_size(a) == na && (b == NULL || load_size(b) == nb)) {
            PyObject **dst = _PyList_CAST(res)->ob_item;
            for (Py_ssize_t k = 0; k < times; k++, dst += na + nb) {
                copy_refs(dst, a->ob_item, na);
                copy_refs(dst + na, lb->ob_item, nb);
            }
            done = true;
        }
        Py_END_CRITICAL_SECTION2();
        if (done) {
            return res;
        }
        Py_DECREF(res);
    }
}

/* a + b */
static PyObject *
list_concat(PyObject *aa, PyObject *bb)
{
    if (!PyList_Check(bb)) {
        PyErr_Format(PyExc_TypeError, "can only concatenate list (not \"%.200s\") to list",
                     Py_TYPE(bb)->tp_name);
        return NULL;
    }
    return list_snapshot(_PyList_CAST(aa), _PyList_CAST(bb), 1);
}

/* self * n (n <= 0: empty) */
static PyObject *
list_repeat(PyObject *op, Py_ssize_t n)
{
    if (n <= 0) {
        return PyList_New(0);
    }
    return list_snapshot(_PyList_CAST(op), NULL, n);
}

/* self += iterable: PyList_Extend (a list operand is snapshotted first). */
static PyObject *
list_inplace_concat(PyObject *op, PyObject *other)
{
    if (PyList_Extend(op, other) < 0) {
        return NULL;
    }
    return Py_NewRef(op);
}

/* self *= n: n < 1 clears; otherwise the items are repeated in place, in
 * one critical section (list_resize, then stores of new references to the
 * items already there: nothing is called that could run other code). */
static PyObject *
list_inplace_repeat(PyObject *op, Py_ssize_t n)
{
    if (n < 1) {
        (void)PyList_Clear(op);
        return Py_NewRef(op);
    }
    PyListObject *self = _PyList_CAST(op);
    int rc = 0;
    Py_BEGIN_CRITICAL_SECTION(self);
    list_note_access(self);
    Py_ssize_t size = load_size(self);
    if (n > 1 && size > 0) {
        if (size > PY_SSIZE_T_MAX / n) {
            PyErr_NoMemory();
            rc = -1;
        }
        else {
            rc = list_resize(self, size * n);
        }
        if (rc == 0) {
            PyObject **items = self->ob_item;
            for (Py_ssize_t i = size; i < size * n; i++) {
                list_store(self, items, i, Py_XNewRef(items[i % size]));
            }
        }
    }
    Py_END_CRITICAL_SECTION();
    return rc < 0 ? NULL : Py_NewRef(op);
}

static PySequenceMethods list_as_sequence = {
    .sq_length = list_length,
    .sq_concat = list_concat,
    .sq_repeat = list_repeat,
    .sq_item = list_item,
    .sq_ass_item = list_ass_item,
    .sq_contains = list_contains,
    .sq_inplace_concat = list_inplace_concat,
    .sq_inplace_repeat = list_inplace_repeat,
};

static PyMappingMethods list_as_mapping = {
    .mp_length = list_length,
    .mp_subscript = list_subscript,
    .mp_ass_subscript = list_ass_subscript,
};

PyTypeObject PyList_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "list",
    .tp_basicsize = sizeof(PyListObject),
    .tp_dealloc = list_dealloc,
    .tp_repr = list_repr,
    .tp_as_sequence = &list_as_sequence,
    .tp_as_mapping = &list_as_mapping,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE |
                Py_TPFLAGS_LIST_SUBCLASS,
    .tp_traverse = list_traverse,
    .tp_clear = list_tp_clear,
    .tp_richcompare = list_richcompare,
    .tp_iter = list_iter,
    .tp_free = PyObject_GC_Del,
};

PyTypeObject PyListIter_Type = {
    PyVarObject_HEAD_INIT(&PyType_Type, 0)
    .tp_name = "list_iterator",
    .tp_basicsize = sizeof(listiterobject),
    .tp_dealloc = listiter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
                Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .tp_traverse = listiter_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = listiter_next,
    .tp_free = PyObject_GC_Del,
};
