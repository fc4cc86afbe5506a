/* Stop-the-world statistics (ftrt extension; no CPython counterpart).
 *
 * Every stop of an interpreter's world records why it happened and how long
 * it took, in two phases:
 *
 *     request ----------> all stopped ----------> world restarted
 *            time to stop             time stopped
 *
 * "time to stop" is how long the requester waited for every other attached
 * thread to reach a safe point (and for detached ones to be parked); "time
 * stopped" is how long no other thread of the interpreter could run.  The
 * pause another thread sees is at most their sum.
 *
 *     PyUnstable_StopTheWorldStats st;
 *     PyUnstable_StopTheWorld_GetStats(PyInterpreterState_Get(), &st);
 *     printf("%llu stops, p99 of time to stop <= %llu ns\n", ...);
 *
 * Histograms use power-of-two buckets of nanoseconds: bucket 0 counts
 * [0, 2) ns, bucket k (k >= 1) counts [2^k, 2^(k+1)) ns, the last bucket
 * also everything above.  PyUnstable_StopTheWorld_Percentile reads a
 * percentile off a histogram (the bucket's upper bound).
 *
 * A stop is counted when the world restarts (a fork child does not count
 * the stop PyOS_BeforeFork made; the parent does).  The counters belong to
 * the interpreter and survive Py_FinalizeEx / Py_Initialize cycles of the
 * main interpreter; ResetStats zeroes them.
 *
 * The GIL build has no stops (the GIL already excludes other threads):
 * its counters stay 0.  Reading is safe from any thread with or without a
 * thread state, and never blocks; a snapshot taken while a stop completes
 * may mix that stop's counters with the previous ones, never tear a single
 * counter.
 */
#ifndef Py_CPYTHON_STOPTHEWORLD_H
#define Py_CPYTHON_STOPTHEWORLD_H

#include <stdint.h>

typedef enum PyUnstable_StopReason {
    PyUnstable_STOP_OTHER = 0,      /* internal uses without a reason of their own */
    PyUnstable_STOP_GC,             /* a cycle collection (two stops per collection
                                       that runs finalizers, one otherwise) */
    PyUnstable_STOP_FORK,           /* PyOS_BeforeFork */
    PyUnstable_STOP_FINALIZE,       /* Py_FinalizeEx shutting down other threads */
    PyUnstable_STOP_REFCOUNT,       /* a refcount merge that could not allocate */
    PyUnstable_STOP_NREASONS
} PyUnstable_StopReason;

#define PyUnstable_STOP_HIST_BUCKETS 40

typedef struct PyUnstable_StopReasonStats {
    uint64_t stops;
    uint64_t to_stop_ns_total, to_stop_ns_max;
    uint64_t stopped_ns_total, stopped_ns_max;
} PyUnstable_StopReasonStats;

typedef struct PyUnstable_StopTheWorldStats {
    uint64_t stops;                               /* completed stops, all reasons */
    PyUnstable_StopReasonStats by_reason[PyUnstable_STOP_NREASONS];
    uint64_t to_stop_hist[PyUnstable_STOP_HIST_BUCKETS];
    uint64_t stopped_hist[PyUnstable_STOP_HIST_BUCKETS];
    /* The most recent completed stop. */
    PyUnstable_StopReason last_reason;
    uint64_t last_to_stop_ns, last_stopped_ns;
    uint32_t last_threads;                        /* other thread states it stopped
                                                     (a requester without an attached
                                                     state stops its own too) */
} PyUnstable_StopTheWorldStats;

/* Copy interp's counters into *out.  Returns 0, or -1 with ValueError set
 * (when a thread state is attached) if interp or out is NULL. */
PyAPI_FUNC(int) PyUnstable_StopTheWorld_GetStats(PyInterpreterState *interp,
                                                 PyUnstable_StopTheWorldStats *out);
/* Zero interp's counters.  Waits for a stop in progress to finish (so that
 * stop is counted whole, before or after the reset), detached if the caller
 * is attached; the requester may call it during its own stop.  No-op for
 * NULL. */
PyAPI_FUNC(void) PyUnstable_StopTheWorld_ResetStats(PyInterpreterState *interp);
/* "gc", "fork", ...; NULL for a value outside the enum. */
PyAPI_FUNC(const char *) PyUnstable_StopTheWorld_ReasonName(int reason);
/* The upper bound, in ns, of the bucket holding percentile p (0 < p <= 100)
 * of hist's samples (PyUnstable_STOP_HIST_BUCKETS counters): 2^(k+1) for
 * bucket k, UINT64_MAX for the last; the sample of rank ceil(p% of the
 * total), at least the first.  p <= 0 acts as the smallest sample, p > 100
 * as 100.  0 for an empty histogram or NULL. */
PyAPI_FUNC(uint64_t) PyUnstable_StopTheWorld_Percentile(const uint64_t *hist, double p);

#endif /* Py_CPYTHON_STOPTHEWORLD_H */
