/* Portability and export macros shared by every public header. */
#ifndef Py_PYPORT_H
#define Py_PYPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef ssize_t Py_ssize_t;
#define PY_SSIZE_T_MAX ((Py_ssize_t)(((size_t)-1) >> 1))
#define PY_SSIZE_T_MIN (-PY_SSIZE_T_MAX - 1)

/* The library is built with -fvisibility=hidden: only what these macros mark
 * is exported from libftrt.so / libftrt-gil.so. */
#if defined(__GNUC__) || defined(__clang__)
#  define Py_EXPORTED_SYMBOL __attribute__((visibility("default")))
#  define Py_ALWAYS_INLINE   __attribute__((always_inline))
#  define _Py_NO_RETURN      __attribute__((__noreturn__))
#else
#  error "ftrt needs GCC or clang (atomic builtins, symbol visibility)"
#endif

#ifdef __cplusplus
#  define PyAPI_FUNC(RTYPE) extern "C" Py_EXPORTED_SYMBOL RTYPE
#  define PyAPI_DATA(RTYPE) extern "C" Py_EXPORTED_SYMBOL RTYPE
#else
#  define PyAPI_FUNC(RTYPE) Py_EXPORTED_SYMBOL RTYPE
#  define PyAPI_DATA(RTYPE) extern Py_EXPORTED_SYMBOL RTYPE
#endif

#define Py_DEPRECATED(VERSION_UNUSED) __attribute__((__deprecated__))

#endif /* Py_PYPORT_H */
