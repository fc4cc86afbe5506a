/* Storage behind ft_rcu.h: the token that stands for "a grace period" in
 * ThreadSanitizer builds (see the header).  Everything else is inline. */
#include "ft_rcu.h"

#ifdef FT_SANITIZE_THREAD
char ft_rcu_gp_token;
#endif
