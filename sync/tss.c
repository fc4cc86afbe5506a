/* Thread-specific storage: PEP 539's Py_tss_t API and the deprecated
 * int-keyed TLS API, both on pthread keys.
 *
 * Creating a key races when several threads call PyThread_tss_create on the
 * same (typically static, Py_tss_NEEDS_INIT) Py_tss_t at once; exactly one
 * pthread key must result.  The protocol:
 *   - _is_initialized is the publication flag.  Only create and delete write
 *     it, and only while holding tss_lock, so at most one thread at a time
 *     creates or deletes any key.
 *   - create stores _key first and then _is_initialized = 1 with a release
 *     store; a thread that sees 1 with an acquire load (create's fast path,
 *     is_created) also sees _key.  Under the lock a relaxed load suffices:
 *     the lock orders it after any earlier create or delete.
 *   - delete clears the flag (again under the lock), so the key can be
 *     created afresh later.  Deleting a key while other threads still use
 *     it is the caller's bug, as in CPython.
 *   - after fork(), PyThread_ReInitTLS resets tss_lock in the child.
 * tss_lock is taken without detaching the thread state: runtime start-up
 * and thread-state code create keys at points where detaching (and so
 * letting a stop-the-world proceed) is not allowed, and the critical section
 * is a single system call.
 */
#include "ft_alloc.h"
#include "ft_lock.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>

static PyMutex tss_lock;

Py_tss_t *
PyThread_tss_alloc(void)
{
    /* All zeroes is Py_tss_NEEDS_INIT. */
    return ft_raw_calloc(sizeof(Py_tss_t));
}

void
PyThread_tss_free(Py_tss_t *key)
{
    if (key == NULL) {
        return;
    }
    PyThread_tss_delete(key);
    ft_raw_free(key, sizeof(Py_tss_t));
}

int
PyThread_tss_is_created(Py_tss_t *key)
{
    assert(key != NULL);
    return __atomic_load_n(&key->_is_initialized, __ATOMIC_ACQUIRE) != 0;
}

int
PyThread_tss_create(Py_tss_t *key)
{
    assert(key != NULL);
    if (__atomic_load_n(&key->_is_initialized, __ATOMIC_ACQUIRE)) {
        return 0;
    }
    int rc = 0;
    ft_mutex_lock_flags(&tss_lock, FT_LOCK_DONT_DETACH);
    if (!__atomic_load_n(&key->_is_initialized, __ATOMIC_RELAXED)) {
        pthread_key_t k;
        if (pthread_key_create(&k, NULL) != 0) {
            rc = -1;
        }
        else {
            key->_key = k;
            __atomic_store_n(&key->_is_initialized, 1, __ATOMIC_RELEASE);
        }
    }
    PyMutex_Unlock(&tss_lock);
    return rc;
}

void
PyThread_tss_delete(Py_tss_t *key)
{
    assert(key != NULL);
    ft_mutex_lock_flags(&tss_lock, FT_LOCK_DONT_DETACH);
    if (__atomic_load_n(&key->_is_initialized, __ATOMIC_RELAXED)) {
        pthread_key_delete(key->_key);
        __atomic_store_n(&key->_is_initialized, 0, __ATOMIC_RELEASE);
    }
    PyMutex_Unlock(&tss_lock);
}

int
PyThread_tss_set(Py_tss_t *key, void *value)
{
    assert(key != NULL && PyThread_tss_is_created(key));
    return pthread_setspecific(key->_key, value) == 0 ? 0 : -1;
}

void *
PyThread_tss_get(Py_tss_t *key)
{
    assert(key != NULL && PyThread_tss_is_created(key));
    return pthread_getspecific(key->_key);
}

/* ---- legacy int-keyed TLS ----------------------------------------------- */

/* The definitions of the deprecated functions must not warn (-Werror). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

int
PyThread_create_key(void)
{
    pthread_key_t k;
    if (pthread_key_create(&k, NULL) != 0) {
        return -1;
    }
    if ((unsigned long long)k > (unsigned long long)INT_MAX) {
        pthread_key_delete(k);
        return -1;
    }
    return (int)k;
}

void
PyThread_delete_key(int key)
{
    pthread_key_delete((pthread_key_t)key);
}

int
PyThread_set_key_value(int key, void *value)
{
    return pthread_setspecific((pthread_key_t)key, value) == 0 ? 0 : -1;
}

void *
PyThread_get_key_value(int key)
{
    return pthread_getspecific((pthread_key_t)key);
}

void
PyThread_delete_key_value(int key)
{
    (void)pthread_setspecific((pthread_key_t)key, NULL);
}

void
PyThread_ReInitTLS(void)
{
    /* Called in the child after fork().  The keys need nothing: pthread
     * keys survive fork(), the forking thread (now the child's only thread)
     * keeps its values, and the values of the threads that did not survive
     * are just unreachable (their destructors never run; the keys have
     * none).  The one thing to repair is ours: a thread that was inside
     * PyThread_tss_create or _delete when another one forked left tss_lock
     * locked, and no thread in the child will ever unlock it. */
    ft_mutex_after_fork(&tss_lock);
}

#pragma GCC diagnostic pop
