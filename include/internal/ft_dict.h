/* Dict internals (core/dictobject.c). */
#ifndef FT_DICT_H
#define FT_DICT_H

#include "ft_core.h"

/* How many lookups took the locked path in the free-threaded build (tests:
 * proves a slow path was taken). */
FT_INTERNAL int64_t ft_dict_locked_lookups(void);

#endif /* FT_DICT_H */
