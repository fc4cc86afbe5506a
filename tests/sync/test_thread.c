/* Tests for sync/thread.c: OS threads, stack size, thread ids. */
#include "harness.h"
#include "test_util.h"

#include "ft_alloc.h"
#include "ft_lock.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long
kernel_tid(void)
{
    return (unsigned long)syscall(SYS_gettid);
}

/* Nobody can join a detached thread, so a test that started one waits until
 * the kernel no longer knows its tid: by then glibc has torn it down, and
 * valgrind's leak check at exit cannot catch its TLS half-freed. */
static bool
thread_gone(unsigned long tid)
{
    return syscall(SYS_tgkill, (long)getpid(), (long)tid, 0L) != 0 && errno == ESRCH;
}

#define ASSERT_THREAD_GONE(tid) \
    cr_assert(TEST_POLL_UNTIL(thread_gone(tid), 5000), "thread %lu never ended", (tid))

Test(thread, init_thread_is_idempotent, .timeout = FT_TIMEOUT(10))
{
    PyThread_init_thread();
    PyThread_init_thread();
    /* threads still start afterwards */
    cr_assert_eq(PyThread_get_stacksize(), 0);
    cr_assert_neq(PyThread_get_thread_ident(), 0);
}

/* ---- start_new_thread --------------------------------------------------- */

typedef struct seen {
    void *arg;                   /* what func received */
    unsigned long ident;
    unsigned long native_id;
    unsigned long kernel_tid;
    unsigned long long self_id;
    _Atomic int done;            /* release: the fields above are written */
} seen;

static void
record_self(void *p)
{
    seen *s = p;
    s->arg = p;
    s->ident = PyThread_get_thread_ident();
    s->native_id = PyThread_get_thread_native_id();
    s->kernel_tid = kernel_tid();
    s->self_id = ft_thread_self_id();
    atomic_store_explicit(&s->done, 1, memory_order_release);
}

static bool
is_done(seen *s)
{
    return atomic_load_explicit(&s->done, memory_order_acquire) != 0;
}

Test(thread, start_new_thread_runs_func, .timeout = FT_TIMEOUT(10))
{
    seen s = { 0 };
    unsigned long ident = PyThread_start_new_thread(record_self, &s);
    cr_assert_neq(ident, PYTHREAD_INVALID_THREAD_ID);
    cr_assert_neq(ident, 0);
    cr_assert(TEST_POLL_UNTIL(is_done(&s), 5000), "the new thread never ran");

    cr_assert_eq(s.arg, &s);
    cr_assert_eq(s.ident, ident, "start returned %lu, the thread saw %lu", ident, s.ident);
    cr_assert_neq(s.ident, PyThread_get_thread_ident());
    cr_assert_neq(s.ident, 0);
    cr_assert_neq(s.ident, PYTHREAD_INVALID_THREAD_ID);
    ASSERT_THREAD_GONE(s.kernel_tid);
}

Test(thread, get_thread_ident_is_pthread_self)
{
    unsigned long ident = PyThread_get_thread_ident();
    cr_assert_eq(ident, (unsigned long)pthread_self());
    cr_assert_eq(ident, PyThread_get_thread_ident());
    cr_assert_neq(ident, 0);
    cr_assert_neq(ident, PYTHREAD_INVALID_THREAD_ID);
}

Test(thread, native_id_is_gettid, .timeout = FT_TIMEOUT(10))
{
    unsigned long mine = PyThread_get_thread_native_id();
    cr_assert_eq(mine, kernel_tid());
    cr_assert_neq(mine, 0);

    seen s = { 0 };
    cr_assert_neq(PyThread_start_new_thread(record_self, &s), PYTHREAD_INVALID_THREAD_ID);
    cr_assert(TEST_POLL_UNTIL(is_done(&s), 5000));
    cr_assert_eq(s.native_id, s.kernel_tid);
    cr_assert_neq(s.native_id, mine);
    ASSERT_THREAD_GONE(s.kernel_tid);
}

Test(thread, null_func_is_rejected)
{
    cr_assert_eq(PyThread_start_new_thread(NULL, NULL), PYTHREAD_INVALID_THREAD_ID);
}

Test(thread, start_out_of_memory, .timeout = FT_TIMEOUT(10))
{
    seen failed = { 0 };
    ft_alloc_fail_after(1);
    unsigned long ident = PyThread_start_new_thread(record_self, &failed);
    ft_alloc_fail_after(0);
    cr_assert_eq(ident, PYTHREAD_INVALID_THREAD_ID);

    /* the next start works; the failed one never ran (a leaked bootstrap
     * record would fail this test under ASan and valgrind) */
    seen ok = { 0 };
    cr_assert_neq(PyThread_start_new_thread(record_self, &ok), PYTHREAD_INVALID_THREAD_ID);
    cr_assert(TEST_POLL_UNTIL(is_done(&ok), 5000));
    cr_assert_not(is_done(&failed));
    ASSERT_THREAD_GONE(ok.kernel_tid);
}

/* ---- PyThread_exit_thread ----------------------------------------------- */

typedef struct exiter {
    pthread_key_t key;           /* its destructor reports the thread's end */
    unsigned long tid;
    _Atomic int before;
    _Atomic int after;           /* must stay 0 */
    _Atomic int ended;
} exiter;

static void
exiter_destructor(void *p)
{
    exiter *e = p;
    atomic_store(&e->ended, 1);
}

static void
exiter_func(void *p)
{
    exiter *e = p;
    pthread_setspecific(e->key, e);
    e->tid = kernel_tid();
    atomic_store(&e->before, 1);
    PyThread_exit_thread();
    atomic_store(&e->after, 1);   /* unreachable */
}

Test(thread, exit_thread_ends_thread, .timeout = FT_TIMEOUT(10))
{
    exiter e = { 0 };
    cr_assert_eq(pthread_key_create(&e.key, exiter_destructor), 0);
    cr_assert_neq(PyThread_start_new_thread(exiter_func, &e), PYTHREAD_INVALID_THREAD_ID);
    bool ended = TEST_POLL_UNTIL(atomic_load(&e.ended), 5000);
    cr_assert(ended, "the thread did not end");
    cr_assert_eq(atomic_load(&e.before), 1);
    cr_assert_eq(atomic_load(&e.after), 0);
    ASSERT_THREAD_GONE(e.tid);
    pthread_key_delete(e.key);
}

static void *
joinable_exiter(void *p)
{
    exiter_func(p);
    return p;
}

Test(thread, exit_thread_in_joinable_thread, .timeout = FT_TIMEOUT(10))
{
    exiter e = { 0 };
    cr_assert_eq(pthread_key_create(&e.key, exiter_destructor), 0);
    pthread_t t = test_start_thread(joinable_exiter, &e);
    void *ret = &e;
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_null(ret, "the thread returned instead of exiting");
    cr_assert_eq(atomic_load(&e.before), 1);
    cr_assert_eq(atomic_load(&e.after), 0);
    cr_assert_eq(atomic_load(&e.ended), 1);
    pthread_key_delete(e.key);
}

/* ---- stack size --------------------------------------------------------- */

Test(thread, stacksize_default_is_zero)
{
    cr_assert_eq(PyThread_get_stacksize(), 0);
    cr_assert_eq(PyThread_set_stacksize(0), 0);
    cr_assert_eq(PyThread_get_stacksize(), 0);
}

Test(thread, stacksize_too_small_is_rejected)
{
    cr_assert_eq(PyThread_set_stacksize(0x7fff), -1);
    cr_assert_eq(PyThread_get_stacksize(), 0);
    cr_assert_eq(PyThread_set_stacksize(1), -1);
    cr_assert_eq(PyThread_get_stacksize(), 0);

    cr_assert_eq(PyThread_set_stacksize(1 << 20), 0);
    cr_assert_eq(PyThread_set_stacksize(0x7fff), -1);
    cr_assert_eq(PyThread_get_stacksize(), 1 << 20, "a rejected size changed the setting");

    /* 32 KiB itself is accepted if pthreads accepts it */
    pthread_attr_t attr;
    cr_assert_eq(pthread_attr_init(&attr), 0);
    int expect = pthread_attr_setstacksize(&attr, 0x8000) == 0 ? 0 : -1;
    pthread_attr_destroy(&attr);
    cr_assert_eq(PyThread_set_stacksize(0x8000), expect);
    cr_assert_eq(PyThread_get_stacksize(), expect == 0 ? 0x8000 : 1 << 20);

    cr_assert_eq(PyThread_set_stacksize(0), 0);
    cr_assert_eq(PyThread_get_stacksize(), 0);
}

typedef struct stack_probe {
    int rc;
    size_t size;
    unsigned long tid;
    _Atomic int done;
} stack_probe;

static void
probe_stack(void *p)
{
    stack_probe *sp = p;
    pthread_attr_t attr;
    sp->tid = kernel_tid();
    sp->rc = pthread_getattr_np(pthread_self(), &attr);
    if (sp->rc == 0) {
        sp->rc = pthread_attr_getstacksize(&attr, &sp->size);
        pthread_attr_destroy(&attr);
    }
    atomic_store_explicit(&sp->done, 1, memory_order_release);
}

Test(thread, stacksize_applies_to_new_threads, .timeout = FT_TIMEOUT(10))
{
    const size_t want = (size_t)1 << 20;
    cr_assert_eq(PyThread_set_stacksize(want), 0);
    cr_assert_eq(PyThread_get_stacksize(), want);

    stack_probe sp = { 0 };
    cr_assert_neq(PyThread_start_new_thread(probe_stack, &sp), PYTHREAD_INVALID_THREAD_ID);
    cr_assert(TEST_POLL_UNTIL(atomic_load_explicit(&sp.done, memory_order_acquire), 5000));
    cr_assert_eq(sp.rc, 0);
    /* glibc may hand out a cached stack of up to four times the request;
     * the default (8 MiB with the usual ulimit) is well above that. */
    cr_assert_geq(sp.size, want, "stack of %zu bytes", sp.size);
    cr_assert_leq(sp.size, 4 * want + 65536, "stack of %zu bytes", sp.size);
    cr_assert_eq(PyThread_set_stacksize(0), 0);
    ASSERT_THREAD_GONE(sp.tid);
}

/* ---- many threads ------------------------------------------------------- */

enum { STARTERS = 4, PER_STARTER = 16 };

typedef struct crowd {
    _Atomic int go;
    _Atomic int started;         /* successful starts */
    _Atomic int failed;          /* INVALID returned */
    _Atomic int ran;             /* functions that ran */
    unsigned long idents[STARTERS * PER_STARTER];
    unsigned long tids[STARTERS * PER_STARTER];
    _Atomic int next_slot;
} crowd;

static void
crowd_member(void *p)
{
    crowd *c = p;
    int slot = atomic_fetch_add(&c->next_slot, 1);
    c->idents[slot] = PyThread_get_thread_ident();
    c->tids[slot] = kernel_tid();
    atomic_fetch_add_explicit(&c->ran, 1, memory_order_release);
}

static void *
crowd_starter(void *p)
{
    crowd *c = p;
    while (!atomic_load(&c->go)) {
        /* spin: all starters begin together */
    }
    for (int i = 0; i < PER_STARTER; i++) {
        if (PyThread_start_new_thread(crowd_member, c) == PYTHREAD_INVALID_THREAD_ID) {
            atomic_fetch_add(&c->failed, 1);
        }
        else {
            atomic_fetch_add(&c->started, 1);
        }
    }
    return NULL;
}

Test(thread, many_threads_start_concurrently, .timeout = FT_TIMEOUT(30))
{
    static crowd c;
    pthread_t t[STARTERS];
    for (int i = 0; i < STARTERS; i++) {
        t[i] = test_start_thread(crowd_starter, &c);
    }
    atomic_store(&c.go, 1);
    for (int i = 0; i < STARTERS; i++) {
        test_join_thread(t[i]);
    }
    cr_assert_eq(atomic_load(&c.failed), 0);
    cr_assert_eq(atomic_load(&c.started), STARTERS * PER_STARTER);
    bool all = TEST_POLL_UNTIL(atomic_load_explicit(&c.ran, memory_order_acquire)
                               == STARTERS * PER_STARTER, 10000);
    cr_assert(all, "only %d of %d threads ran", atomic_load(&c.ran), STARTERS * PER_STARTER);
    for (int i = 0; i < STARTERS * PER_STARTER; i++) {
        cr_assert_neq(c.idents[i], 0);
        cr_assert_neq(c.idents[i], PYTHREAD_INVALID_THREAD_ID);
    }
    for (int i = 0; i < STARTERS * PER_STARTER; i++) {
        ASSERT_THREAD_GONE(c.tids[i]);
    }
}

/* ---- ft_thread_self_id -------------------------------------------------- */

enum { ID_THREADS = 8 };

static void *
record_self_id(void *p)
{
    unsigned long long *out = p;
    unsigned long long first = ft_thread_self_id();
    out[0] = first;
    out[1] = ft_thread_self_id();
    return NULL;
}

Test(thread, self_id_is_unique_and_stable, .timeout = FT_TIMEOUT(10))
{
    unsigned long long mine = ft_thread_self_id();
    cr_assert_neq(mine, 0);
    cr_assert_eq(ft_thread_self_id(), mine);

    unsigned long long ids[ID_THREADS][2];
    pthread_t t[ID_THREADS];
    for (int i = 0; i < ID_THREADS; i++) {
        t[i] = test_start_thread(record_self_id, ids[i]);
    }
    for (int i = 0; i < ID_THREADS; i++) {
        test_join_thread(t[i]);
    }
    for (int i = 0; i < ID_THREADS; i++) {
        cr_assert_neq(ids[i][0], 0);
        cr_assert_eq(ids[i][0], ids[i][1], "thread %d: id changed", i);
        cr_assert_neq(ids[i][0], mine);
        for (int j = 0; j < i; j++) {
            cr_assert_neq(ids[i][0], ids[j][0], "threads %d and %d share an id", i, j);
        }
    }
    cr_assert_eq(ft_thread_self_id(), mine);
}

Test(thread, self_id_not_reused_after_thread_ends, .timeout = FT_TIMEOUT(10))
{
    /* Run threads one after another: pthread_t values are often recycled,
     * ft_thread_self_id values must not be. */
    unsigned long long ids[ID_THREADS][2];
    for (int i = 0; i < ID_THREADS; i++) {
        test_join_thread(test_start_thread(record_self_id, ids[i]));
    }
    for (int i = 0; i < ID_THREADS; i++) {
        for (int j = 0; j < i; j++) {
            cr_assert_neq(ids[i][0], ids[j][0]);
        }
    }
}

Test(thread, self_id_in_new_thread, .timeout = FT_TIMEOUT(10))
{
    seen s = { 0 };
    cr_assert_neq(PyThread_start_new_thread(record_self, &s), PYTHREAD_INVALID_THREAD_ID);
    cr_assert(TEST_POLL_UNTIL(is_done(&s), 5000));
    cr_assert_neq(s.self_id, 0);
    cr_assert_neq(s.self_id, ft_thread_self_id());
    ASSERT_THREAD_GONE(s.kernel_tid);
}
