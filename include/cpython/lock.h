/* PyMutex: a one-byte lock (CPython 3.13 API).
 *
 * The byte, for reading and debugging (the field itself is private):
 *
 *     bits  value  meaning
 *     0b00    0    unlocked, nobody parked
 *     0b01    1    locked, nobody parked
 *     0b10    2    unlocked, a thread may be parked on this address
 *     0b11    3    locked, a thread may be parked on this address
 *
 * Bit 0 (_Py_LOCKED) is the lock.  Bit 1 (_Py_HAS_PARKED) says "unlock must
 * take the slow path and look in the parking lot"; it may stay set after the
 * last waiter left (a timed lock that gave up), which costs the next unlock
 * one look-up in the parking lot and nothing else.
 *
 * Lock and unlock are one compare-and-swap inline (0 -> 1, 1 -> 0); anything
 * else goes to ft_mutex_lock_slow / ft_mutex_unlock_slow in sync/mutex.c,
 * where the protocol (spinning, parking, hand-off) is described.
 *
 *     PyMutex m = {0};         // zero is unlocked; no init call, no destroy
 *     PyMutex_Lock(&m);        // detaches the thread state while it blocks
 *     ...
 *     PyMutex_Unlock(&m);      // unlocking an unlocked mutex is fatal
 *
 * Never copy or move a mutex: waiters are keyed by its address.  Both calls
 * are safe before Py_Initialize and from threads with no thread state.
 */
#ifndef Py_CPYTHON_LOCK_H_ALLOWED
#  error "include <Python.h> (or lock.h), not cpython/lock.h directly"
#endif
#ifndef Py_CPYTHON_LOCK_H
#define Py_CPYTHON_LOCK_H

#include "pyport.h"

#define _Py_UNLOCKED    0
#define _Py_LOCKED      1
#define _Py_HAS_PARKED  2

typedef struct PyMutex {
    uint8_t _bits;   /* (private) see the table above */
} PyMutex;

/* Exported functions, for callers that cannot use the inline versions. */
PyAPI_FUNC(void) PyMutex_Lock(PyMutex *m);
PyAPI_FUNC(void) PyMutex_Unlock(PyMutex *m);

/* Non-zero if locked.  For assertions only: the answer may be stale at once. */
PyAPI_FUNC(int) PyMutex_IsLocked(PyMutex *m);

/* Out-of-line slow paths behind the inline fast paths below (not API). */
PyAPI_FUNC(void) ft_mutex_lock_slow(PyMutex *m);
PyAPI_FUNC(void) ft_mutex_unlock_slow(PyMutex *m);

/* The byte is accessed with the compiler's __atomic builtins rather than
 * <stdatomic.h>, so that this header stays valid C++ for extension authors
 * and the struct keeps CPython's plain uint8_t field. */
static inline Py_ALWAYS_INLINE void
_PyMutex_Lock(PyMutex *m)
{
    uint8_t expected = _Py_UNLOCKED;
    /* acquire: the critical section may not float above the lock */
    if (!__atomic_compare_exchange_n(&m->_bits, &expected, _Py_LOCKED, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        ft_mutex_lock_slow(m);
    }
}
#define PyMutex_Lock _PyMutex_Lock

static inline Py_ALWAYS_INLINE void
_PyMutex_Unlock(PyMutex *m)
{
    uint8_t expected = _Py_LOCKED;
    /* release: the critical section may not sink below the unlock */
    if (!__atomic_compare_exchange_n(&m->_bits, &expected, _Py_UNLOCKED, 0,
                                     __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
        ft_mutex_unlock_slow(m);
    }
}
#define PyMutex_Unlock _PyMutex_Unlock

static inline int
_PyMutex_IsLocked(PyMutex *m)
{
    return (__atomic_load_n(&m->_bits, __ATOMIC_RELAXED) & _Py_LOCKED) != 0;
}
#define PyMutex_IsLocked _PyMutex_IsLocked

#endif /* Py_CPYTHON_LOCK_H */
