/* Reference counting: the inline fast paths (the protocol and its slow
 * paths are in core/object.c and core/brc.c).
 *
 * Free-threaded build, biased reference counting:
 *   - the owner thread (ob_tid == _Py_ThreadId()) changes ob_ref_local with
 *     plain (relaxed atomic) loads and stores;
 *   - every other thread adds or subtracts 1 << _Py_REF_SHARED_SHIFT on
 *     ob_ref_shared atomically; the shared count may go negative;
 *   - the low two bits of ob_ref_shared: 0 = default, _Py_REF_MAYBE_WEAKREF
 *     (published for lock-free readers), _Py_REF_QUEUED (in the owner's
 *     merge queue), _Py_REF_MERGED (local and shared merged, ob_tid == 0);
 *   - immortal: ob_ref_local == UINT32_MAX; incref and decref do nothing and
 *     write nothing.  An owner incref that would overflow the local count
 *     therefore makes the object immortal instead.
 *   Py_REFCNT = local + (shared >> 2), or _Py_IMMORTAL_REFCNT.
 *
 * GIL build: one plain ob_refcnt (every thread that touches an object holds
 * the GIL); immortal from _Py_IMMORTAL_MINIMUM_REFCNT up.
 */
#ifndef Py_REFCOUNT_H
#define Py_REFCOUNT_H

#ifndef Py_OBJECT_H
#  error "include Python.h (refcount.h is part of object.h)"
#endif

/* What Py_REFCNT reports for an immortal object. */
#define _Py_IMMORTAL_REFCNT ((Py_ssize_t)UINT32_MAX)
/* GIL build: the count a static object starts with, and the floor above
 * which an object counts as immortal (far from both ends, so neither
 * increments nor stray decrements reach a boundary). */
#define _Py_IMMORTAL_INITIAL_REFCNT ((Py_ssize_t)3 << 60)
#define _Py_IMMORTAL_MINIMUM_REFCNT ((Py_ssize_t)1 << 60)

#define _Py_REF_SHARED_SHIFT 2
#define _Py_REF_SHARED_FLAG_MASK 0x3
#define _Py_REF_SHARED_INIT    0x0
#define _Py_REF_MAYBE_WEAKREF  0x1
#define _Py_REF_QUEUED         0x2
#define _Py_REF_MERGED         0x3
#define _Py_REF_SHARED(refcnt, flags) (((refcnt) << _Py_REF_SHARED_SHIFT) + (flags))

/* Exported slow paths. */
PyAPI_FUNC(void) _Py_Dealloc(PyObject *op);
PyAPI_FUNC(void) _Py_DecRefShared(PyObject *op);
PyAPI_FUNC(void) _Py_MergeZeroLocalRefcount(PyObject *op);
PyAPI_FUNC(void) _Py_SetImmortal(PyObject *op);
PyAPI_FUNC(void) Py_IncRef(PyObject *op);   /* function forms (may be NULL) */
PyAPI_FUNC(void) Py_DecRef(PyObject *op);

/* The calling thread's id as ob_tid records it: the thread pointer (the
 * address of the thread's TLS block), one instruction; unique among live
 * threads and never an object's address. */
static inline uintptr_t
_Py_ThreadId(void)
{
    uintptr_t tid;
#if defined(__x86_64__)
    __asm__("movq %%fs:0, %0" : "=r"(tid));
#elif defined(__aarch64__)
    __asm__("mrs %0, tpidr_el0" : "=r"(tid));
#else
    tid = (uintptr_t)__builtin_thread_pointer();
#endif
    return tid;
}

#ifdef Py_GIL_DISABLED

static inline int
_Py_IsImmortal(PyObject *op)
{
    return __atomic_load_n(&op->ob_ref_local, __ATOMIC_RELAXED) == UINT32_MAX;
}

static inline int
_Py_IsOwnedByCurrentThread(PyObject *op)
{
    return __atomic_load_n(&op->ob_tid, __ATOMIC_RELAXED) == _Py_ThreadId();
}

static inline Py_ssize_t
Py_REFCNT(PyObject *op)
{
    uint32_t local = __atomic_load_n(&op->ob_ref_local, __ATOMIC_RELAXED);
    if (local == UINT32_MAX) {
        return _Py_IMMORTAL_REFCNT;
    }
    Py_ssize_t shared = __atomic_load_n(&op->ob_ref_shared, __ATOMIC_RELAXED);
    return (Py_ssize_t)local + (shared >> _Py_REF_SHARED_SHIFT);
}

static inline Py_ALWAYS_INLINE void
Py_INCREF(PyObject *op)
{
    uint32_t local = __atomic_load_n(&op->ob_ref_local, __ATOMIC_RELAXED);
    uint32_t new_local = local + 1;
    if (new_local == 0) {
        return;   /* immortal */
    }
    if (_Py_IsOwnedByCurrentThread(op)) {
        __atomic_store_n(&op->ob_ref_local, new_local, __ATOMIC_RELAXED);
    }
    else {
        __atomic_fetch_add(&op->ob_ref_shared, (Py_ssize_t)1 << _Py_REF_SHARED_SHIFT,
                           __ATOMIC_RELAXED);
    }
}

static inline Py_ALWAYS_INLINE void
Py_DECREF(PyObject *op)
{
    uint32_t local = __atomic_load_n(&op->ob_ref_local, __ATOMIC_RELAXED);
    if (local == UINT32_MAX) {
        return;   /* immortal */
    }
    if (_Py_IsOwnedByCurrentThread(op)) {
        local--;
        __atomic_store_n(&op->ob_ref_local, local, __ATOMIC_RELAXED);
        if (local == 0) {
            _Py_MergeZeroLocalRefcount(op);
        }
    }
    else {
        _Py_DecRefShared(op);
    }
}

#else /* GIL build */

static inline int
_Py_IsImmortal(PyObject *op)
{
    return op->ob_refcnt >= _Py_IMMORTAL_MINIMUM_REFCNT;
}

static inline Py_ssize_t
Py_REFCNT(PyObject *op)
{
    return _Py_IsImmortal(op) ? _Py_IMMORTAL_REFCNT : op->ob_refcnt;
}

static inline Py_ALWAYS_INLINE void
Py_INCREF(PyObject *op)
{
    if (_Py_IsImmortal(op)) {
        return;
    }
    op->ob_refcnt++;
}

static inline Py_ALWAYS_INLINE void
Py_DECREF(PyObject *op)
{
    if (_Py_IsImmortal(op)) {
        return;
    }
    if (--op->ob_refcnt == 0) {
        _Py_Dealloc(op);
    }
}

#endif /* Py_GIL_DISABLED */

#define Py_REFCNT(op) Py_REFCNT(_PyObject_CAST(op))
#define Py_INCREF(op) Py_INCREF(_PyObject_CAST(op))
#define Py_DECREF(op) Py_DECREF(_PyObject_CAST(op))

/* Set the count (3.13 rules): a count beyond what the header holds makes
 * the object immortal; an immortal object's count is not changed; from a
 * non-owner thread (free-threaded build) the counts are merged first. */
PyAPI_FUNC(void) _Py_SetRefcnt(PyObject *op, Py_ssize_t refcnt);
#define Py_SET_REFCNT(op, refcnt) _Py_SetRefcnt(_PyObject_CAST(op), (refcnt))

static inline void
Py_XINCREF(PyObject *op)
{
    if (op != NULL) {
        Py_INCREF(op);
    }
}
#define Py_XINCREF(op) Py_XINCREF(_PyObject_CAST(op))

static inline void
Py_XDECREF(PyObject *op)
{
    if (op != NULL) {
        Py_DECREF(op);
    }
}
#define Py_XDECREF(op) Py_XDECREF(_PyObject_CAST(op))

static inline PyObject *
Py_NewRef(PyObject *obj)
{
    Py_INCREF(obj);
    return obj;
}
#define Py_NewRef(obj) Py_NewRef(_PyObject_CAST(obj))

static inline PyObject *
Py_XNewRef(PyObject *obj)
{
    Py_XINCREF(obj);
    return obj;
}
#define Py_XNewRef(obj) Py_XNewRef(_PyObject_CAST(obj))

/* The pointer is set to NULL before the reference is dropped, so a
 * destructor that reaches the variable sees NULL (CPython's rule). */
#define Py_CLEAR(op)                                                        \
    do {                                                                    \
        PyObject **clear_ptr_ = (PyObject **)&(op);                         \
        PyObject *clear_tmp_ = *clear_ptr_;                                 \
        if (clear_tmp_ != NULL) {                                           \
            *clear_ptr_ = NULL;                                             \
            Py_DECREF(clear_tmp_);                                          \
        }                                                                   \
    } while (0)

#define Py_SETREF(dst, src)                                                 \
    do {                                                                    \
        PyObject **setref_ptr_ = (PyObject **)&(dst);                       \
        PyObject *setref_old_ = *setref_ptr_;                               \
        *setref_ptr_ = _PyObject_CAST(src);                                 \
        Py_DECREF(setref_old_);                                             \
    } while (0)

#define Py_XSETREF(dst, src)                                                \
    do {                                                                    \
        PyObject **setref_ptr_ = (PyObject **)&(dst);                       \
        PyObject *setref_old_ = *setref_ptr_;                               \
        *setref_ptr_ = _PyObject_CAST(src);                                 \
        Py_XDECREF(setref_old_);                                            \
    } while (0)

/* Reference tracer (3.13): called on every object creation and destruction
 * (free-threaded and GIL builds alike).  Set with the thread attached. */
typedef enum {
    PyRefTracer_CREATE = 0,
    PyRefTracer_DESTROY = 1,
    PyRefTracer_TRACKER_REMOVED = 2,   /* 3.14: the tracer is being replaced (object NULL) */
} PyRefTracerEvent;
typedef int (*PyRefTracer)(PyObject *, PyRefTracerEvent event, void *);
PyAPI_FUNC(int) PyRefTracer_SetTracer(PyRefTracer tracer, void *data);
PyAPI_FUNC(PyRefTracer) PyRefTracer_GetTracer(void **data);

#endif /* Py_REFCOUNT_H */
