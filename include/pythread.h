/* OS threads, legacy locks and thread-specific storage (CPython's pythread.h).
 *
 * None of these functions needs a thread state or an initialized runtime.
 * They report failure through their return values and never set an exception.
 */
#ifndef Py_PYTHREAD_H
#define Py_PYTHREAD_H

#include <limits.h>
#include <pthread.h>
#include "pyport.h"

/* ---- OS threads -------------------------------------------------------- */

#define PYTHREAD_INVALID_THREAD_ID ((unsigned long)-1)

PyAPI_FUNC(void) PyThread_init_thread(void);

/* Start func(arg) on a new detached OS thread, with no thread state.
 * Returns the new thread's ident, or PYTHREAD_INVALID_THREAD_ID. */
PyAPI_FUNC(unsigned long) PyThread_start_new_thread(void (*func)(void *), void *arg);

/* End the calling thread (deprecated in CPython 3.14: frames above it are
 * not unwound by C code). */
PyAPI_FUNC(void) _Py_NO_RETURN PyThread_exit_thread(void);

/* The calling thread's ident: never 0, never PYTHREAD_INVALID_THREAD_ID. */
PyAPI_FUNC(unsigned long) PyThread_get_thread_ident(void);

#define PY_HAVE_THREAD_NATIVE_ID
/* The kernel's id for the calling thread (gettid on Linux). */
PyAPI_FUNC(unsigned long) PyThread_get_thread_native_id(void);

/* Stack size for threads started from now on; 0 means the system default.
 * set returns 0, or -1 for a size below 32 KiB (nothing changes). */
PyAPI_FUNC(size_t) PyThread_get_stacksize(void);
PyAPI_FUNC(int) PyThread_set_stacksize(size_t size);

/* ---- legacy locks (thin wrappers over PyMutex, as in CPython 3.15) ------ */

typedef void *PyThread_type_lock;

typedef enum PyLockStatus {
    PY_LOCK_FAILURE = 0,
    PY_LOCK_ACQUIRED = 1,
    PY_LOCK_INTR
} PyLockStatus;

#define WAIT_LOCK   1
#define NOWAIT_LOCK 0

/* Timeouts are in microseconds: -1 waits forever, 0 does not wait; larger
 * values are clamped to PY_TIMEOUT_MAX. */
#define PY_TIMEOUT_T long long
#define PY_TIMEOUT_MAX (LLONG_MAX / 1000)

/* NULL when out of memory. */
PyAPI_FUNC(PyThread_type_lock) PyThread_allocate_lock(void);
/* The lock must not be held, nor waited for. */
PyAPI_FUNC(void) PyThread_free_lock(PyThread_type_lock lock);
/* waitflag 1 blocks until acquired and returns 1; waitflag 0 returns 1 or 0
 * at once.  Signals never interrupt it. */
PyAPI_FUNC(int) PyThread_acquire_lock(PyThread_type_lock lock, int waitflag);
/* With intr_flag, a signal handler that runs during the wait ends it with
 * PY_LOCK_INTR (handlers installed without SA_RESTART, as Python's are). */
PyAPI_FUNC(PyLockStatus) PyThread_acquire_lock_timed(PyThread_type_lock lock,
                                                     PY_TIMEOUT_T microseconds,
                                                     int intr_flag);
/* Any thread may release; releasing an unlocked lock is fatal. */
PyAPI_FUNC(void) PyThread_release_lock(PyThread_type_lock lock);

/* ---- thread-specific storage (PEP 539) --------------------------------- */

typedef struct {
    int _is_initialized;    /* (private) */
    pthread_key_t _key;     /* (private) */
} Py_tss_t;

#define Py_tss_NEEDS_INIT {0}

PyAPI_FUNC(Py_tss_t *) PyThread_tss_alloc(void);
PyAPI_FUNC(void) PyThread_tss_free(Py_tss_t *key);
PyAPI_FUNC(int) PyThread_tss_is_created(Py_tss_t *key);
PyAPI_FUNC(int) PyThread_tss_create(Py_tss_t *key);
PyAPI_FUNC(void) PyThread_tss_delete(Py_tss_t *key);
PyAPI_FUNC(int) PyThread_tss_set(Py_tss_t *key, void *value);
PyAPI_FUNC(void *) PyThread_tss_get(Py_tss_t *key);

/* ---- legacy int-keyed TLS (deprecated since 3.7) ----------------------- */

Py_DEPRECATED(3.7) PyAPI_FUNC(int) PyThread_create_key(void);
Py_DEPRECATED(3.7) PyAPI_FUNC(void) PyThread_delete_key(int key);
Py_DEPRECATED(3.7) PyAPI_FUNC(int) PyThread_set_key_value(int key, void *value);
Py_DEPRECATED(3.7) PyAPI_FUNC(void *) PyThread_get_key_value(int key);
Py_DEPRECATED(3.7) PyAPI_FUNC(void) PyThread_delete_key_value(int key);
Py_DEPRECATED(3.7) PyAPI_FUNC(void) PyThread_ReInitTLS(void);

#endif /* Py_PYTHREAD_H */
