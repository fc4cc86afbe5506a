/* Internal helpers shared by core/longobject.c and core/floatobject.c. */
#ifndef FT_NUMBER_H
#define FT_NUMBER_H

#include "ft_core.h"

/* An int's value (op must pass PyLong_Check). */
static inline int64_t
ft_long_value(PyObject *op)
{
    return ((PyLongObject *)op)->long_value;
}

/* The pages holding the small ints -5..256 and nothing else (tests). */
FT_INTERNAL void ft_small_ints_region(void **start, size_t *size);

/* Exact comparison of an int64 with a double: -1, 0 or 1 as a is less
 * than, equal to or greater than b; 2 if b is a NaN (unordered). */
FT_INTERNAL int ft_compare_int_double(int64_t a, double b);

/* x / y (y != 0) correctly rounded to a double, as CPython's int / int. */
FT_INTERNAL double ft_int_true_divide(int64_t x, int64_t y);

/* CPython's hash of a finite double (integral values hash as the int). */
FT_INTERNAL Py_hash_t ft_hash_double(double v);

/* CPython's repr of v (shortest round-trip digits; "1.0", "1e+16",
 * "1e-05", "inf", "nan") into buf, truncated to size bytes with a NUL;
 * 32 bytes always suffice. */
FT_INTERNAL void ft_double_repr(double v, char *buf, size_t size);

/* The modulus of numeric hashes, 2**61 - 1 (CPython's _PyHASH_MODULUS on
 * 64-bit builds) and the hash of an infinity (_PyHASH_INF). */
#define FT_HASH_BITS 61
#define FT_HASH_MODULUS (((uint64_t)1 << FT_HASH_BITS) - 1)
#define FT_HASH_INF 314159

#endif /* FT_NUMBER_H */
