/* Tests for sync/tss.c: Py_tss_t (PEP 539) and the legacy int-keyed TLS. */
#include "harness.h"
#include "test_util.h"

#include "ft_alloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

Test(tss, needs_init_is_not_created)
{
    Py_tss_t key = Py_tss_NEEDS_INIT;
    cr_assert_eq(PyThread_tss_is_created(&key), 0);
}

Test(tss, create_set_get_delete)
{
    static Py_tss_t key = Py_tss_NEEDS_INIT;
    int a = 1, b = 2;

    cr_assert_eq(PyThread_tss_create(&key), 0);
    cr_assert_neq(PyThread_tss_is_created(&key), 0);
    cr_assert_null(PyThread_tss_get(&key));

    cr_assert_eq(PyThread_tss_set(&key, &a), 0);
    cr_assert_eq(PyThread_tss_get(&key), &a);
    cr_assert_eq(PyThread_tss_set(&key, &b), 0);
    cr_assert_eq(PyThread_tss_get(&key), &b);
    cr_assert_eq(PyThread_tss_set(&key, NULL), 0);
    cr_assert_null(PyThread_tss_get(&key));

    PyThread_tss_delete(&key);
    cr_assert_eq(PyThread_tss_is_created(&key), 0);
}

Test(tss, create_twice_keeps_the_key)
{
    Py_tss_t key = Py_tss_NEEDS_INIT;
    int a = 1;
    cr_assert_eq(PyThread_tss_create(&key), 0);
    pthread_key_t first = key._key;
    cr_assert_eq(PyThread_tss_set(&key, &a), 0);

    cr_assert_eq(PyThread_tss_create(&key), 0);
    cr_assert_neq(PyThread_tss_is_created(&key), 0);
    cr_assert_eq(key._key, first, "a second create made a new key");
    cr_assert_eq(PyThread_tss_get(&key), &a, "a second create lost the value");
    PyThread_tss_delete(&key);
}

Test(tss, delete_twice_and_recreate)
{
    Py_tss_t key = Py_tss_NEEDS_INIT;
    int a = 1;
    PyThread_tss_delete(&key);   /* never created: nothing happens */
    cr_assert_eq(PyThread_tss_is_created(&key), 0);

    cr_assert_eq(PyThread_tss_create(&key), 0);
    cr_assert_eq(PyThread_tss_set(&key, &a), 0);
    PyThread_tss_delete(&key);
    cr_assert_eq(PyThread_tss_is_created(&key), 0);
    PyThread_tss_delete(&key);
    cr_assert_eq(PyThread_tss_is_created(&key), 0);

    cr_assert_eq(PyThread_tss_create(&key), 0);
    cr_assert_neq(PyThread_tss_is_created(&key), 0);
    /* a fresh key: the value set through the deleted one is not visible */
    cr_assert_null(PyThread_tss_get(&key));
    cr_assert_eq(PyThread_tss_set(&key, &a), 0);
    cr_assert_eq(PyThread_tss_get(&key), &a);
    PyThread_tss_delete(&key);
}

Test(tss, many_keys_are_independent)
{
    enum { N = 16 };
    Py_tss_t keys[N];
    int vals[N];
    for (int i = 0; i < N; i++) {
        keys[i] = (Py_tss_t)Py_tss_NEEDS_INIT;
        cr_assert_eq(PyThread_tss_create(&keys[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(PyThread_tss_set(&keys[i], &vals[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(PyThread_tss_get(&keys[i]), &vals[i]);
    }
    for (int i = 0; i < N; i++) {
        PyThread_tss_delete(&keys[i]);
    }
}

Test(tss, alloc_and_free)
{
    Py_tss_t *key = PyThread_tss_alloc();
    cr_assert_not_null(key);
    cr_assert_eq(PyThread_tss_is_created(key), 0);
    cr_assert_eq(PyThread_tss_create(key), 0);
    int a = 1;
    cr_assert_eq(PyThread_tss_set(key, &a), 0);
    cr_assert_eq(PyThread_tss_get(key), &a);
    PyThread_tss_free(key);   /* deletes, then frees: ASan/valgrind see leaks */

    key = PyThread_tss_alloc();   /* freed without ever being created */
    cr_assert_not_null(key);
    PyThread_tss_free(key);

    PyThread_tss_free(NULL);
}

Test(tss, alloc_out_of_memory)
{
    ft_alloc_fail_after(1);
    Py_tss_t *key = PyThread_tss_alloc();
    ft_alloc_fail_after(0);
    cr_assert_null(key);
    key = PyThread_tss_alloc();
    cr_assert_not_null(key);
    PyThread_tss_free(key);
}

/* ---- per-thread values -------------------------------------------------- */

typedef struct per_thread {
    Py_tss_t *key;
    void *initial;               /* what the thread saw first */
    void *after_set;
    int set_rc;
} per_thread;

static void *
per_thread_main(void *p)
{
    per_thread *pt = p;
    int local = 0;
    pt->initial = PyThread_tss_get(pt->key);
    pt->set_rc = PyThread_tss_set(pt->key, &local);
    pt->after_set = PyThread_tss_get(pt->key) == &local ? pt : NULL;
    return NULL;
}

Test(tss, values_are_per_thread, .timeout = FT_TIMEOUT(10))
{
    static Py_tss_t key = Py_tss_NEEDS_INIT;
    int mine = 7;
    cr_assert_eq(PyThread_tss_create(&key), 0);
    cr_assert_eq(PyThread_tss_set(&key, &mine), 0);

    per_thread pt = { .key = &key };
    test_join_thread(test_start_thread(per_thread_main, &pt));
    cr_assert_null(pt.initial, "the new thread saw the main thread's value");
    cr_assert_eq(pt.set_rc, 0);
    cr_assert_eq(pt.after_set, &pt);
    cr_assert_eq(PyThread_tss_get(&key), &mine, "the thread's set changed ours");
    PyThread_tss_delete(&key);
}

/* ---- racing creators ---------------------------------------------------- */

enum { RACERS = 8, RACE_ROUNDS = 20 };

typedef struct racer {
    Py_tss_t *key;
    pthread_barrier_t *barrier;
    int create_rc;
    int created;                 /* is_created right after create */
    pthread_key_t seen_key;
    int own_value_ok;
} racer;

static void *
racer_main(void *p)
{
    racer *r = p;
    int local = 0;
    pthread_barrier_wait(r->barrier);
    r->create_rc = PyThread_tss_create(r->key);
    r->created = PyThread_tss_is_created(r->key);
    r->seen_key = r->key->_key;
    bool ok = PyThread_tss_get(r->key) == NULL
              && PyThread_tss_set(r->key, &local) == 0;
    pthread_barrier_wait(r->barrier);   /* everyone has set a value */
    r->own_value_ok = ok && PyThread_tss_get(r->key) == &local;
    return NULL;
}

Test(tss, concurrent_create_makes_one_key, .timeout = FT_TIMEOUT(60))
{
    static Py_tss_t key = Py_tss_NEEDS_INIT;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_t barrier;
        cr_assert_eq(pthread_barrier_init(&barrier, NULL, RACERS), 0);
        racer r[RACERS];
        pthread_t t[RACERS];
        for (int i = 0; i < RACERS; i++) {
            r[i] = (racer){ .key = &key, .barrier = &barrier };
            t[i] = test_start_thread(racer_main, &r[i]);
        }
        for (int i = 0; i < RACERS; i++) {
            test_join_thread(t[i]);
        }
        pthread_barrier_destroy(&barrier);

        cr_assert_neq(PyThread_tss_is_created(&key), 0);
        for (int i = 0; i < RACERS; i++) {
            cr_assert_eq(r[i].create_rc, 0, "round %d thread %d", round, i);
            cr_assert_neq(r[i].created, 0, "round %d thread %d", round, i);
            cr_assert_eq(r[i].seen_key, key._key,
                         "round %d: thread %d used another key", round, i);
            cr_assert(r[i].own_value_ok, "round %d thread %d", round, i);
        }
        PyThread_tss_delete(&key);
        cr_assert_eq(PyThread_tss_is_created(&key), 0);
    }
}

/* ---- legacy int-keyed TLS ----------------------------------------------- */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

typedef struct legacy_peer {
    int key;
    void *initial;
    int set_rc;
    void *after_set;
} legacy_peer;

static void *
legacy_peer_main(void *p)
{
    legacy_peer *lp = p;
    lp->initial = PyThread_get_key_value(lp->key);
    lp->set_rc = PyThread_set_key_value(lp->key, lp);
    lp->after_set = PyThread_get_key_value(lp->key);
    return NULL;
}

Test(tss, legacy_tls, .timeout = FT_TIMEOUT(10))
{
    int a = 1;
    int key = PyThread_create_key();
    cr_assert_geq(key, 0);
    int other = PyThread_create_key();
    cr_assert_geq(other, 0);
    cr_assert_neq(key, other);

    cr_assert_null(PyThread_get_key_value(key));
    cr_assert_eq(PyThread_set_key_value(key, &a), 0);
    cr_assert_eq(PyThread_get_key_value(key), &a);
    cr_assert_null(PyThread_get_key_value(other));

    legacy_peer lp = { .key = key };
    test_join_thread(test_start_thread(legacy_peer_main, &lp));
    cr_assert_null(lp.initial);
    cr_assert_eq(lp.set_rc, 0);
    cr_assert_eq(lp.after_set, &lp);
    cr_assert_eq(PyThread_get_key_value(key), &a);

    PyThread_ReInitTLS();   /* nothing to do outside a fork child */
    cr_assert_eq(PyThread_get_key_value(key), &a);

    PyThread_delete_key_value(key);
    cr_assert_null(PyThread_get_key_value(key));
    cr_assert_eq(PyThread_set_key_value(key, &a), 0);
    cr_assert_eq(PyThread_get_key_value(key), &a);

    PyThread_delete_key(key);
    PyThread_delete_key(other);
}

Test(tss, fork_child_keeps_values, .timeout = FT_TIMEOUT(10))
{
    static Py_tss_t key = Py_tss_NEEDS_INIT;
    int a = 1;
    cr_assert_eq(PyThread_tss_create(&key), 0);
    cr_assert_eq(PyThread_tss_set(&key, &a), 0);
    int legacy = PyThread_create_key();
    cr_assert_geq(legacy, 0);
    cr_assert_eq(PyThread_set_key_value(legacy, &a), 0);

    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* the child's only thread is a copy of this one */
        PyThread_ReInitTLS();
        int bad = 0;
        bad |= (PyThread_tss_get(&key) != &a) << 0;
        bad |= (PyThread_get_key_value(legacy) != &a) << 1;
        Py_tss_t fresh = Py_tss_NEEDS_INIT;
        bad |= (PyThread_tss_create(&fresh) != 0) << 2;
        bad |= (PyThread_tss_set(&fresh, &a) != 0) << 3;
        PyThread_tss_delete(&fresh);
        _exit(bad);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "child status %#x", status);
    cr_assert_eq(WEXITSTATUS(status), 0, "child failed checks %#x", WEXITSTATUS(status));

    PyThread_delete_key(legacy);
    PyThread_tss_delete(&key);
}

#pragma GCC diagnostic pop
