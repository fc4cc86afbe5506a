/* ft_raw_mutex (include/internal/ft_raw_mutex.h, sync/raw_mutex.c).
 *
 * The futex lock under the parking-lot buckets: word values 0 / 1 through
 * lock, unlock and trylock, is_locked; mutual exclusion (4 threads x 20,000
 * increments); forced contention, where the main thread holds the lock until
 * the blocked workers have turned the word into 2 and sleep in futex() on it
 * (seen in /proc), and only then releases it (the unlock must wake them one
 * by one); scenario A9 for the raw mutex
 * (unlocking an unlocked one aborts, naming the function); and after_fork,
 * which in a child forked while another thread held the lock lets the child
 * take it.
 */
#include "harness.h"
#include "test_util.h"

#include "ft_raw_mutex.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_MS 2000

/* A bug that blocks a single-threaded test fails it instead of hanging. */
TestSuite(raw_mutex, .timeout = FT_TIMEOUT(30));

static uint32_t
word(ft_raw_mutex *m)
{
    return atomic_load(&m->word);
}

/* ---- single thread ------------------------------------------------------- */

Test(raw_mutex, lock_unlock_and_trylock_move_the_word_between_0_and_1)
{
    ft_raw_mutex m = FT_RAW_MUTEX_INIT;
    cr_assert_eq(word(&m), 0);
    cr_assert_not(ft_raw_mutex_is_locked(&m));

    ft_raw_mutex_lock(&m);
    cr_assert_eq(word(&m), 1);
    cr_assert(ft_raw_mutex_is_locked(&m));
    cr_assert_not(ft_raw_mutex_trylock(&m));
    cr_assert_eq(word(&m), 1, "a failed trylock must not change the word");
    ft_raw_mutex_unlock(&m);
    cr_assert_eq(word(&m), 0);
    cr_assert_not(ft_raw_mutex_is_locked(&m));

    cr_assert(ft_raw_mutex_trylock(&m));
    cr_assert_eq(word(&m), 1);
    ft_raw_mutex_unlock(&m);
    cr_assert_eq(word(&m), 0);
}

Test(raw_mutex, unlock_from_2_with_nobody_asleep_frees_it)
{
    /* 2 = locked, a thread may be asleep: the unlock wakes (nobody) and
     * leaves the word 0 */
    ft_raw_mutex m = FT_RAW_MUTEX_INIT;
    atomic_store(&m.word, 2);
    cr_assert(ft_raw_mutex_is_locked(&m));
    cr_assert_not(ft_raw_mutex_trylock(&m));
    ft_raw_mutex_unlock(&m);
    cr_assert_eq(word(&m), 0);
    ft_raw_mutex_lock(&m);
    cr_assert_eq(word(&m), 1);
    ft_raw_mutex_unlock(&m);
}

Test(raw_mutex, after_fork_forgets_the_holder)
{
    ft_raw_mutex m = FT_RAW_MUTEX_INIT;
    ft_raw_mutex_lock(&m);
    ft_raw_mutex_after_fork(&m);
    cr_assert_eq(word(&m), 0);
    atomic_store(&m.word, 2);
    ft_raw_mutex_after_fork(&m);
    cr_assert_eq(word(&m), 0);
    cr_assert(ft_raw_mutex_trylock(&m));
    ft_raw_mutex_unlock(&m);
}

/* ---- fatal misuse (A9) ------------------------------------------------------ */

Test(raw_mutex, unlocking_an_unlocked_raw_mutex_aborts, .signal = SIGABRT)
{
    ft_raw_mutex m = FT_RAW_MUTEX_INIT;
    ft_raw_mutex_unlock(&m);
}

Test(raw_mutex, unlocking_twice_aborts, .signal = SIGABRT)
{
    ft_raw_mutex m = FT_RAW_MUTEX_INIT;
    ft_raw_mutex_lock(&m);
    ft_raw_mutex_unlock(&m);
    ft_raw_mutex_unlock(&m);
}

static void
unlock_unlocked(void)
{
    ft_raw_mutex m = FT_RAW_MUTEX_INIT;
    ft_raw_mutex_unlock(&m);
}

Test(raw_mutex, unlocking_an_unlocked_raw_mutex_names_the_function,
     .timeout = FT_TIMEOUT(30))
{
    char out[4096];
    int status = test_run_in_child(unlock_unlocked, out, sizeof out);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "the child must die of SIGABRT (status %#x)", status);
    cr_assert_not_null(strstr(out, "Fatal Python error: ft_raw_mutex_unlock: "
                                   "unlocking a raw mutex that is not locked"),
                       "stderr was: %s", out);
}

/* ---- many threads ---------------------------------------------------------- */

struct counter_job {
    ft_raw_mutex *m;
    long *counter;             /* protected by m */
    int iterations;
    atomic_int *done;
    pthread_barrier_t *start;  /* if set: all begin together */
};

static void *
count_under_lock(void *arg)
{
    struct counter_job *job = arg;
    if (job->start) {
        pthread_barrier_wait(job->start);
    }
    for (int i = 0; i < job->iterations; i++) {
        ft_raw_mutex_lock(job->m);
        ++*job->counter;
        ft_raw_mutex_unlock(job->m);
    }
    atomic_fetch_add(job->done, 1);
    return NULL;
}

Test(raw_mutex, four_threads_count_to_80000, .timeout = FT_TIMEOUT(60))
{
    enum { N = 4, ITERATIONS = 20000 };
    ft_raw_mutex m = FT_RAW_MUTEX_INIT;
    long counter = 0;
    atomic_int done = 0;
    pthread_barrier_t start;
    cr_assert_eq(pthread_barrier_init(&start, NULL, N), 0);
    struct counter_job job = { &m, &counter, ITERATIONS, &done, &start };
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        t[i] = test_start_thread(count_under_lock, &job);
    }
    for (int i = 0; i < N; i++) {
        test_join_thread(t[i]);
    }
    pthread_barrier_destroy(&start);
    cr_assert_eq(counter, (long)N * ITERATIONS);
    cr_assert_eq(word(&m), 0);
}

/* Reads the word while the main thread holds the lock; counts any value
 * other than 1 or 2. */
static uint32_t
held_word_checked(ft_raw_mutex *m, int *bad, uint32_t *bad_value)
{
    uint32_t v = word(m);
    if (v != 1 && v != 2) {
        (*bad)++;
        *bad_value = v;
    }
    return v;
}

struct sleeper {
    struct counter_job *job;
    atomic_int tid;            /* kernel thread id, 0 until known */
};

static void *
record_tid_and_count(void *arg)
{
    struct sleeper *s = arg;
    atomic_store(&s->tid, (int)syscall(SYS_gettid));
    return count_under_lock(s->job);
}

/* True if thread tid is blocked in futex() on addr, from
 * /proc/self/task/TID/syscall ("NR arg1 arg2 ..."; "running" if not in a
 * system call). */
static bool
blocked_in_futex_on(int tid, const void *addr)
{
    if (tid == 0) {
        return false;
    }
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return false;
    }
    bool yes = false;
    long nr;
    unsigned long long arg1;
    if (fgets(buf, sizeof buf, f) && sscanf(buf, "%ld %llx", &nr, &arg1) == 2) {
        yes = nr == SYS_futex && arg1 == (unsigned long long)(uintptr_t)addr;
    }
    fclose(f);
    return yes;
}

/* /proc/self/task/TID/syscall may be missing or unreadable (no /proc, a
 * hardened kernel): then the test relies on the word alone. */
static bool
futex_probe_available(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)syscall(SYS_gettid));
    FILE *f = fopen(path, "r");
    if (f) {
        fclose(f);
    }
    return f != NULL;
}

static bool
all_blocked_in_futex_on(struct sleeper *s, int n, const void *addr)
{
    for (int i = 0; i < n; i++) {
        if (!blocked_in_futex_on(atomic_load(&s[i].tid), addr)) {
            return false;
        }
    }
    return true;
}

Test(raw_mutex, blocked_lockers_set_the_word_to_2_and_all_get_in,
     .timeout = FT_TIMEOUT(30))
{
    /* The main thread holds the lock until every worker sleeps in the
     * kernel on the word (not merely spinning or about to sleep): a single
     * unlock must then start a chain of wake-ups that lets all of them in. */
    enum { N = 3 };
    ft_raw_mutex m = FT_RAW_MUTEX_INIT;
    long counter = 0;
    atomic_int done = 0;
    struct counter_job job = { &m, &counter, 1, &done, NULL };
    struct sleeper s[N];
    pthread_t t[N];

    ft_raw_mutex_lock(&m);
    for (int i = 0; i < N; i++) {
        s[i].job = &job;
        atomic_init(&s[i].tid, 0);
        t[i] = test_start_thread(record_tid_and_count, &s[i]);
    }
    int bad = 0;
    uint32_t bad_value = 0;
    bool contended = TEST_POLL_UNTIL(held_word_checked(&m, &bad, &bad_value) == 2, POLL_MS);
    bool probe = futex_probe_available();
    if (!probe) {
        cr_log_warn("no /proc/self/task/TID/syscall: not checking that the workers sleep");
    }
    bool asleep = !probe || TEST_POLL_UNTIL(all_blocked_in_futex_on(s, N, &m.word), POLL_MS);
    uint32_t held = word(&m);
    int done_while_held = atomic_load(&done);
    ft_raw_mutex_unlock(&m);
    bool all_done = TEST_POLL_UNTIL(atomic_load(&done) == N, POLL_MS);
    /* before the joins, which would hang if a sleeper was never woken */
    cr_assert(all_done, "a sleeper was never woken: %d of %d done", atomic_load(&done), N);
    for (int i = 0; i < N; i++) {
        test_join_thread(t[i]);
    }

    cr_assert(contended, "the blocked lockers never set the word to 2");
    cr_assert(asleep, "the workers never all slept in futex() on the word");
    cr_assert_eq(held, 2);
    cr_assert_eq(bad, 0, "while held, the word was %u", bad_value);
    cr_assert_eq(done_while_held, 0, "a worker got in while the main thread held the lock");
    cr_assert_eq(counter, N);
    cr_assert_eq(word(&m), 0);
}

struct holder {
    ft_raw_mutex *m;
    atomic_int holding;
    atomic_int release;
};

static void *
hold_until_released(void *arg)
{
    struct holder *h = arg;
    ft_raw_mutex_lock(h->m);
    atomic_store(&h->holding, 1);
    while (!atomic_load(&h->release)) {
        sched_yield();
    }
    ft_raw_mutex_unlock(h->m);
    return NULL;
}

Test(raw_mutex, after_fork_the_child_can_take_a_lock_held_by_a_parent_thread,
     .timeout = FT_TIMEOUT(30))
{
    ft_raw_mutex m = FT_RAW_MUTEX_INIT;
    struct holder h = { .m = &m };
    pthread_t t = test_start_thread(hold_until_released, &h);
    bool holding = TEST_POLL_UNTIL(atomic_load(&h.holding), POLL_MS);

    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int status = 0;
        if (!ft_raw_mutex_is_locked(&m)) {
            status |= 1;   /* the child should see the copy as held */
        }
        ft_raw_mutex_after_fork(&m);
        if (!ft_raw_mutex_trylock(&m)) {
            status |= 2;
        }
        else {
            ft_raw_mutex_unlock(&m);
            ft_raw_mutex_lock(&m);
            ft_raw_mutex_unlock(&m);
        }
        _exit(status);
    }
    int status = 0;
    bool exited = pid > 0 && test_wait_child(pid, POLL_MS, &status);
    atomic_store(&h.release, 1);
    test_join_thread(t);

    cr_assert(holding);
    cr_assert_gt(pid, 0, "fork: %s", strerror(errno));
    cr_assert(exited, "the child hung");
    cr_assert(WIFEXITED(status), "the child died (status %#x)", status);
    cr_assert_eq(WEXITSTATUS(status), 0, "child failure bits %d: 1 = not seen held, "
                 "2 = trylock failed after the reset", WEXITSTATUS(status));
    cr_assert_eq(word(&m), 0);
}
