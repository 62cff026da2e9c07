/* The real-function table: libc's implementations of the interposed calls. */
#include <dlfcn.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "ipx/real.h"

struct real_fns real;

static pthread_once_t real_once = PTHREAD_ONCE_INIT;
/* Set (release) once the table is complete; paired with the acquire load in
 * real_init() so a thread that sees it also sees every pointer. */
static atomic_bool real_ready;

/*
 * stdio's write path uses libc-internal calls, never our exported write(),
 * so fprintf(stderr) is safe here even before the table is complete.
 *
 * Names that may legitimately be missing from the C library: fcntl64,
 * execveat, close_range, closefrom (older glibc) and the _FORTIFY_SOURCE
 * entry points.  Their wrappers fall back to
 * the plain call when the pointer is NULL.
 */
static bool real_optional(const char *name)
{
	return name[0] == '_' || __builtin_strcmp(name, "fcntl64") == 0 ||
	       __builtin_strcmp(name, "sendfile64") == 0 ||
	       /* glibc 2.34 and later: the wrappers fall back to the system call. */
	       __builtin_strcmp(name, "execveat") == 0 ||
	       __builtin_strcmp(name, "close_range") == 0 ||
	       __builtin_strcmp(name, "closefrom") == 0;
}

static void real_load(void)
{
#define IPX(ret, name, params, args)                                          \
	real.name = (ret(*) params)dlsym(RTLD_NEXT, #name);                   \
	if (real.name == NULL && !real_optional(#name))                       \
		fprintf(stderr, "libretto: cannot find the C library's %s\n", \
			#name);
#include "ipx/ipx.def"
#undef IPX
	atomic_store_explicit(&real_ready, true, memory_order_release);
}

void real_init(void)
{
	if (atomic_load_explicit(&real_ready, memory_order_acquire))
		return;
	pthread_once(&real_once, real_load);
}
