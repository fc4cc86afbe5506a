/* A consumer of the installed library, using only <Python.h>:
 *
 *     cc $(pkg-config --cflags ftrt) counter.c $(pkg-config --libs ftrt)
 *     cc $(pkg-config --cflags ftrt-gil) counter.c $(pkg-config --libs ftrt-gil)
 *
 * Four OS threads started with PyThread_start_new_thread add to one counter
 * under a PyMutex; each keeps its own tally in thread-specific storage; a
 * legacy lock, released by the last worker, tells the main thread they are
 * done (a legacy lock may be released by a thread that did not acquire it).
 * Prints which build it was compiled for and the final count.
 */
#include <Python.h>

#include <stdio.h>

#define THREADS 4
#define ITERATIONS 100000

static PyMutex counter_lock;          /* zero-initialised: unlocked */
static long counter;
static int finished;
static Py_tss_t tally_key = Py_tss_NEEDS_INIT;
static PyThread_type_lock all_done;

static void
worker(void *arg)
{
    (void)arg;
    long mine = 0;
    PyThread_tss_set(&tally_key, &mine);
    for (int i = 0; i < ITERATIONS; i++) {
        PyMutex_Lock(&counter_lock);
        counter++;
        PyMutex_Unlock(&counter_lock);
        (*(long *)PyThread_tss_get(&tally_key))++;
    }
    PyMutex_Lock(&counter_lock);
    int last = ++finished == THREADS && mine == ITERATIONS;
    PyMutex_Unlock(&counter_lock);
    if (last) {
        PyThread_release_lock(all_done);
    }
}

int
main(void)
{
#ifdef Py_GIL_DISABLED
    const char *build = "free-threaded";
#else
    const char *build = "GIL";
#endif
    if (PyThread_tss_create(&tally_key) != 0) {
        fprintf(stderr, "PyThread_tss_create failed\n");
        return 1;
    }
    all_done = PyThread_allocate_lock();
    if (all_done == NULL) {
        fprintf(stderr, "PyThread_allocate_lock failed\n");
        return 1;
    }
    PyThread_acquire_lock(all_done, WAIT_LOCK);
    for (int i = 0; i < THREADS; i++) {
        if (PyThread_start_new_thread(worker, NULL) == PYTHREAD_INVALID_THREAD_ID) {
            fprintf(stderr, "PyThread_start_new_thread failed\n");
            return 1;
        }
    }
    /* wait (at most 60 s) for the last worker to release the lock */
    if (PyThread_acquire_lock_timed(all_done, 60LL * 1000 * 1000, 0) != PY_LOCK_ACQUIRED) {
        fprintf(stderr, "workers did not finish\n");
        return 1;
    }
    PyThread_release_lock(all_done);
    PyThread_free_lock(all_done);
    PyThread_tss_delete(&tally_key);
    printf("%s %s: counter=%ld\n", FTRT_VARIANT, build, counter);
    return counter == (long)THREADS * ITERATIONS ? 0 : 1;
}
