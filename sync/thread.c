/* OS threads: PyThread_start_new_thread and friends, on POSIX threads.
 *
 * A new thread is detached (nobody joins it; CPython's threading module
 * waits on its own lock instead) and gets the stack size configured with
 * PyThread_set_stacksize, or the system default when that is 0.
 *
 * Start-up protocol: the creator packs func and arg into a small heap
 * record and hands it to pthread_create; the new thread copies the two
 * fields out, frees the record and only then calls func, so nothing leaks
 * even if func ends the thread with PyThread_exit_thread.  If
 * pthread_create fails, the record was never seen by another thread and
 * the creator frees it.
 *
 * Also here: ft_thread_self_id(), a process-unique 64-bit id of the calling
 * thread for lock-owner fields.  Unlike pthread_t values, these ids are never
 * reused after a thread ends, so a stale owner can never match a new thread.
 */
#include "ft_alloc.h"
#include "ft_lock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

/* The smallest stack PyThread_set_stacksize accepts, as in CPython. */
#define FT_THREAD_STACK_MIN 0x8000

/* 0 = the system default.  Read by every thread start, written by any
 * thread calling PyThread_set_stacksize: relaxed is enough, it is one
 * independent value with no data behind it. */
static _Atomic size_t thread_stacksize;

typedef struct ft_thread_boot {
    void (*func)(void *);
    void *arg;
} ft_thread_boot;

void
PyThread_init_thread(void)
{
    /* Nothing to set up: POSIX threads need no process-wide initialisation,
     * and every piece of state in this file is statically initialised.  The
     * function exists for API compatibility; calling it any number of times
     * from any number of threads is harmless. */
}

static void *
ft_thread_bootstrap(void *raw)
{
    ft_thread_boot *boot = raw;
    void (*func)(void *) = boot->func;
    void *arg = boot->arg;
    ft_raw_free(boot, sizeof(*boot));
    func(arg);
    return NULL;
}

unsigned long
PyThread_start_new_thread(void (*func)(void *), void *arg)
{
    if (func == NULL) {
        return PYTHREAD_INVALID_THREAD_ID;
    }
    ft_thread_boot *boot = ft_raw_alloc(sizeof(*boot));
    if (boot == NULL) {
        return PYTHREAD_INVALID_THREAD_ID;
    }
    boot->func = func;
    boot->arg = arg;

    pthread_attr_t attrs;
    if (pthread_attr_init(&attrs) != 0) {
        ft_raw_free(boot, sizeof(*boot));
        return PYTHREAD_INVALID_THREAD_ID;
    }
    int rc = 0;
    size_t stacksize = atomic_load_explicit(&thread_stacksize, memory_order_relaxed);
    if (stacksize != 0) {
        rc = pthread_attr_setstacksize(&attrs, stacksize);
    }
    if (rc == 0) {
        rc = pthread_attr_setdetachstate(&attrs, PTHREAD_CREATE_DETACHED);
    }
    pthread_t th;
    if (rc == 0) {
        rc = pthread_create(&th, &attrs, ft_thread_bootstrap, boot);
    }
    pthread_attr_destroy(&attrs);
    if (rc != 0) {
        ft_raw_free(boot, sizeof(*boot));
        return PYTHREAD_INVALID_THREAD_ID;
    }
    /* The thread may already have finished; th is still the value it saw
     * as pthread_self(), which is all the ident promises. */
    return (unsigned long)th;
}

void
PyThread_exit_thread(void)
{
    pthread_exit(NULL);
}

unsigned long
PyThread_get_thread_ident(void)
{
    /* glibc's pthread_t is the address of the thread descriptor: never 0
     * and never (unsigned long)-1. */
    return (unsigned long)pthread_self();
}

unsigned long
PyThread_get_thread_native_id(void)
{
    return (unsigned long)gettid();
}

size_t
PyThread_get_stacksize(void)
{
    return atomic_load_explicit(&thread_stacksize, memory_order_relaxed);
}

int
PyThread_set_stacksize(size_t size)
{
    if (size == 0) {
        atomic_store_explicit(&thread_stacksize, 0, memory_order_relaxed);
        return 0;
    }
    if (size < FT_THREAD_STACK_MIN) {
        return -1;
    }
    /* Ask pthreads now rather than failing every later thread start. */
    pthread_attr_t attrs;
    if (pthread_attr_init(&attrs) != 0) {
        return -1;
    }
    int rc = pthread_attr_setstacksize(&attrs, size);
    pthread_attr_destroy(&attrs);
    if (rc != 0) {
        return -1;
    }
    atomic_store_explicit(&thread_stacksize, size, memory_order_relaxed);
    return 0;
}

/* ---- ft_thread_self_id -------------------------------------------------- */

/* The last id handed out; the first thread to ask gets 1.  Relaxed: the
 * counter only has to hand out distinct values. */
static _Atomic unsigned long long last_thread_id;

/* 0 until the thread first asks.  The default TLS model, so the library
 * may also be dlopen'ed; the access is still a few instructions. */
static _Thread_local unsigned long long self_thread_id;

unsigned long long
ft_thread_self_id(void)
{
    unsigned long long id = self_thread_id;
    if (ft_unlikely(id == 0)) {
        id = atomic_fetch_add_explicit(&last_thread_id, 1, memory_order_relaxed) + 1;
        self_thread_id = id;
    }
    return id;
}
