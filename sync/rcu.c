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
 * Other registered threads do not survive the fork, but their entries stay
 * in liburcu's reader list.  That is harmless only if they were offline at
 * the fork, which is why PyOS_BeforeFork stops the world first: every thread
 * that is not attached is offline (attach = online, detach = offline).
 */
#include <pthread.h>

#include "ft_rcu.h"

#ifdef FT_SANITIZE_THREAD
char ft_rcu_gp_token;
#endif

static pthread_rwlock_t fork_lock = PTHREAD_RWLOCK_INITIALIZER;

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
