/* Storage behind ft_rcu.h: the token that stands for "a grace period" in
 * ThreadSanitizer builds (see the header), and the fork lock.
 *
 * The fork lock.  liburcu's QSBR registry and grace-period code take
 * liburcu's own mutexes (rcu_registry_lock, rcu_gp_lock), and its call_rcu
 * worker holds them while it waits for grace periods.  A fork() taken while
 * another thread holds one leaves the child with a mutex nobody can release.
 * So every call into that code is a reader of fork_lock, and
 * ft_rcu_before_fork takes it for writing after pausing the call_rcu worker
 * (liburcu's own call_rcu_before_fork).  The child re-creates the lock
 * instead of unlocking it: POSIX does not allow unlocking a rwlock in the
 * child, and no other thread exists there.
 *
 * Dead readers.  liburcu's QSBR registry links one entry per reader, and
 * the entry lives in the reader thread's own TLS.  Threads other than the
 * forking one do not exist in the child, but their entries stay linked, and
 * glibc hands their stacks (with that TLS) to threads created in the child:
 * re-initialised under liburcu's list, they corrupt it (an assertion in
 * registration, or synchronize_rcu waiting forever).  liburcu 0.13 offers no
 * way to drop them (only the bp flavour prunes after fork), so this file keeps
 * its own list of the readers it registered (`readers`, nodes in each
 * thread's TLS, changed only inside fork-lock read sections) and, in the
 * child, before any thread can be created there, unlinks every entry but the
 * forking thread's from liburcu's list through the reader struct that
 * liburcu's LGPL static API (urcu/static/urcu-qsbr.h) exposes.
 */
#include <pthread.h>

#include "ft_rcu.h"

#ifdef FT_SANITIZE_THREAD
char ft_rcu_gp_token;
#endif

static pthread_rwlock_t fork_lock = PTHREAD_RWLOCK_INITIALIZER;

typedef struct reader_rec {
    struct reader_rec *prev, *next;
    struct urcu_qsbr_reader *reader;
} reader_rec;

static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;
static reader_rec readers = { &readers, &readers, NULL };
static _Thread_local reader_rec tls_rec;

_Thread_local struct urcu_qsbr_reader *ft_rcu_self __attribute__((tls_model("initial-exec")));

void
ft_rcu_register_thread(void)
{
    ft_rcu_fork_enter();
    urcu_qsbr_register_thread();
    ft_rcu_self = &URCU_TLS(urcu_qsbr_reader);
    pthread_mutex_lock(&readers_lock);
    tls_rec.reader = ft_rcu_self;
    tls_rec.prev = &readers;
    tls_rec.next = readers.next;
    readers.next->prev = &tls_rec;
    readers.next = &tls_rec;
    pthread_mutex_unlock(&readers_lock);
    ft_rcu_fork_exit();
}

void
ft_rcu_unregister_thread(void)
{
    FT_RCU_TSAN_RELEASE();
    ft_rcu_fork_enter();
    pthread_mutex_lock(&readers_lock);
    if (tls_rec.next) {
        tls_rec.prev->next = tls_rec.next;
        tls_rec.next->prev = tls_rec.prev;
        tls_rec.prev = tls_rec.next = NULL;
    }
    pthread_mutex_unlock(&readers_lock);
    urcu_qsbr_unregister_thread();
    ft_rcu_self = NULL;
    ft_rcu_fork_exit();
}

/* In the child: forget every reader but ourselves (see the top). */
static void
drop_dead_readers(void)
{
    /* readers_lock is free: it is only taken inside fork-lock read sections,
     * and the forking thread held the fork lock for writing. */
    for (reader_rec *r = readers.next; r != &readers; r = r->next) {
        if (r != &tls_rec) {
            cds_list_del(&r->reader->node);
        }
    }
    bool me = tls_rec.next != NULL;
    readers.next = readers.prev = &readers;
    if (me) {
        tls_rec.prev = tls_rec.next = &readers;
        readers.next = readers.prev = &tls_rec;
    }
}

void
ft_rcu_fork_enter(void)
{
    int err = pthread_rwlock_rdlock(&fork_lock);
    if (err) {
        ft_fatal_errno("ft_rcu_fork_enter", "pthread_rwlock_rdlock", err);
    }
}

void
ft_rcu_fork_exit(void)
{
    (void)pthread_rwlock_unlock(&fork_lock);
}

void
ft_rcu_before_fork(void)
{
    /* fork_lock first, released last: ft_rcu_barrier takes it before
     * liburcu's call_rcu mutex, so this order cannot invert against it. */
    int err = pthread_rwlock_wrlock(&fork_lock);
    if (err) {
        ft_fatal_errno("ft_rcu_before_fork", "pthread_rwlock_wrlock", err);
    }
    urcu_qsbr_call_rcu_before_fork();
}

void
ft_rcu_after_fork_parent(void)
{
    urcu_qsbr_call_rcu_after_fork_parent();
    (void)pthread_rwlock_unlock(&fork_lock);
}

void
ft_rcu_after_fork_child(void)
{
    drop_dead_readers();   /* before call_rcu's child hook registers its worker */
    urcu_qsbr_call_rcu_after_fork_child();
    /* glibc will not let the child unlock a write lock taken before the
     * fork (the owner's thread id changed), so the lock is re-created; TSan
     * is told it was released first, or it still believes it held. */
#ifdef FT_SANITIZE_THREAD
    __tsan_mutex_pre_unlock(&fork_lock, 0);
    __tsan_mutex_post_unlock(&fork_lock, 0);
#endif
    pthread_rwlock_t fresh = PTHREAD_RWLOCK_INITIALIZER;
    fork_lock = fresh;
}
