/* The runtime's entry: set up the library OS when the process starts. */
#include <errno.h>
#include <unistd.h>

#include "ipx/real.h"
#include "stack/stack.h"
#include "vfs/vfs_mount.h"

/*
 * Runs before main().  Without a lease (not started by `libretto run`) the
 * runtime stays passive: every call goes to the kernel.  With a lease that
 * cannot be honoured, stack_init() has said why on stderr and the process
 * exits: running the program on the kernel stack instead would be a silent
 * fallback.
 */
__attribute__((constructor)) static void runtime_start(void)
{
	int err;

	real_init();
	err = stack_init();
	if (err < 0 && err != -ENOENT)
		_exit(127);
	/* Volumes (LIBRETTO_VOLUMES) need no lease: a volume-only program
	 * runs without one.  Never fails: a bad entry is left out. */
	vfs_init();
}

/* At exit: flush our stdio streams, commit and detach the volumes. */
__attribute__((destructor)) static void runtime_stop(void)
{
	vfs_exit();
}
