/* The cycle collector's unstable extras (ftrt extension).  The standard
 * calls (PyGC_Collect, PyGC_Enable, PyGC_Disable, PyGC_IsEnabled,
 * PyObject_GC_IsFinalized) are in objimpl.h; gc/gc.c explains the
 * collector.
 *
 *     PyUnstable_GCStats st;
 *     PyUnstable_GC_GetStats(&st);
 *     printf("%llu collections, last pause %llu ns\n", ...);
 */
#ifndef Py_CPYTHON_GC_H
#define Py_CPYTHON_GC_H

#include <stdint.h>

typedef struct PyUnstable_GCStats {
    uint64_t collections;       /* completed: PyGC_Collect and automatic */
    uint64_t automatic;         /* of which triggered by allocation */
    uint64_t collected;         /* unreachable objects found and freed, all time */
    uint64_t uncollectable;     /* unreachable objects kept (legacy tp_del), all time */
    uint64_t finalized;         /* tp_finalize calls made by the collector */
    uint64_t resurrected;       /* objects a finalizer made reachable again */
    /* The most recent collection. */
    uint64_t last_examined;     /* tracked objects it looked at */
    uint64_t last_collected;
    uint64_t last_pause1_ns;    /* first stop: finding the unreachable set */
    uint64_t last_pause2_ns;    /* second stop: resurrection check (0: not needed) */
    uint64_t last_total_ns;     /* whole collection, finalizers and frees included */
    int64_t live;               /* tracked objects that survived it */
    int64_t threshold;          /* PyUnstable_GC_SetThreshold */
} PyUnstable_GCStats;

/* Counters of the calling thread's interpreter; 0, or -1 with an exception
 * set (no thread state attached is fatal, as for PyGC_Collect). */
PyAPI_FUNC(int) PyUnstable_GC_GetStats(PyUnstable_GCStats *out);
/* Automatic collection runs once the number of GC objects created (net of
 * those freed) since the last collection exceeds both the threshold and a
 * quarter of the objects that survived it.  Default 2000, as CPython's
 * generation-0 threshold; 0 turns automatic collection off.  A negative
 * value: -1 with ValueError. */
PyAPI_FUNC(int) PyUnstable_GC_SetThreshold(int64_t threshold);
PyAPI_FUNC(int64_t) PyUnstable_GC_GetThreshold(void);
/* A new reference to the list of uncollectable objects: CPython's gc.garbage.
 * An unreachable object whose type has a legacy tp_del is appended there
 * (and counted as uncollectable) instead of being collected; what it
 * references stays alive through it. */
PyAPI_FUNC(PyObject *) PyUnstable_GC_GetGarbage(void);

#endif /* Py_CPYTHON_GC_H */
