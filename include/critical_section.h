/* Critical sections (CPython 3.13 API; the protocol is in
 * core/critical_section.c, the contract for extension authors in
 * docs/critical-sections.md).
 *
 *     Py_BEGIN_CRITICAL_SECTION(obj);
 *     ... obj's mutex is held, unless this thread detaches ...
 *     Py_END_CRITICAL_SECTION();
 *
 * Free-threaded build: the section locks the object's ob_mutex and is kept
 * on a per-thread stack; whenever the thread detaches (explicitly, or while
 * it blocks on a lock) every section on its stack is suspended (unlocked)
 * and the top one is re-locked when it attaches again.  GIL build: the
 * macros are bare braces and the functions do nothing.
 */
#ifndef Py_CRITICAL_SECTION_H
#define Py_CRITICAL_SECTION_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

/* Private fields; on the C stack, between a BEGIN and its END. */
typedef struct PyCriticalSection {
    uintptr_t _cs_prev;      /* the section below, tagged */
    PyMutex *_cs_mutex;      /* NULL: a section that locked nothing */
} PyCriticalSection;

typedef struct PyCriticalSection2 {
    PyCriticalSection _cs_base;
    PyMutex *_cs_mutex2;
} PyCriticalSection2;

PyAPI_FUNC(void) PyCriticalSection_Begin(PyCriticalSection *c, PyObject *op);
PyAPI_FUNC(void) PyCriticalSection_BeginMutex(PyCriticalSection *c, PyMutex *m);
PyAPI_FUNC(void) PyCriticalSection_End(PyCriticalSection *c);
PyAPI_FUNC(void) PyCriticalSection2_Begin(PyCriticalSection2 *c, PyObject *a, PyObject *b);
PyAPI_FUNC(void) PyCriticalSection2_BeginMutex(PyCriticalSection2 *c, PyMutex *m1, PyMutex *m2);
PyAPI_FUNC(void) PyCriticalSection2_End(PyCriticalSection2 *c);

#ifdef Py_GIL_DISABLED
#  define Py_BEGIN_CRITICAL_SECTION(op)                                     \
    {                                                                       \
        PyCriticalSection py_cs_;                                           \
        PyCriticalSection_Begin(&py_cs_, _PyObject_CAST(op))
#  define Py_BEGIN_CRITICAL_SECTION_MUTEX(mutex)                            \
    {                                                                       \
        PyCriticalSection py_cs_;                                           \
        PyCriticalSection_BeginMutex(&py_cs_, (mutex))
#  define Py_END_CRITICAL_SECTION()                                         \
        PyCriticalSection_End(&py_cs_);                                     \
    }
#  define Py_BEGIN_CRITICAL_SECTION2(a, b)                                  \
    {                                                                       \
        PyCriticalSection2 py_cs2_;                                         \
        PyCriticalSection2_Begin(&py_cs2_, _PyObject_CAST(a), _PyObject_CAST(b))
#  define Py_BEGIN_CRITICAL_SECTION2_MUTEX(m1, m2)                          \
    {                                                                       \
        PyCriticalSection2 py_cs2_;                                         \
        PyCriticalSection2_BeginMutex(&py_cs2_, (m1), (m2))
#  define Py_END_CRITICAL_SECTION2()                                        \
        PyCriticalSection2_End(&py_cs2_);                                   \
    }
#else
#  define Py_BEGIN_CRITICAL_SECTION(op) {
#  define Py_BEGIN_CRITICAL_SECTION_MUTEX(mutex) {
#  define Py_END_CRITICAL_SECTION() }
#  define Py_BEGIN_CRITICAL_SECTION2(a, b) {
#  define Py_BEGIN_CRITICAL_SECTION2_MUTEX(m1, m2) {
#  define Py_END_CRITICAL_SECTION2() }
#endif

#endif /* Py_CRITICAL_SECTION_H */
