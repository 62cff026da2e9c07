/* libretto-netd's sandbox: no capabilities, and after start-up only the system calls of the loop remain (seccomp). */
#include "netd/sandbox.h"

#include <errno.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

/*
 * Give up every capability, for good: the AF_XDP socket and the memfds
 * arrive already made (the supervisor has the privileges), and mapping,
 * kicking and reading them needs none.  The bounding and ambient sets are
 * emptied first so nothing can come back through an exec (which the filter
 * forbids anyway).  Returns 0 or -errno.
 */
static int netd_drop_caps(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = { { 0 } };

	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	for (int c = 0; c <= 63; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno == EINVAL)
			break;
	if (syscall(SYS_capset, &h, d) < 0)
		return -errno;
	return 0;
}

#ifdef NETD_HAVE_SECCOMP
#include <seccomp.h>
#include <sys/mman.h>

/*
 * What the loop and the control channel need: ring and region mappings
 * (never executable), the XSK kicks, the control socket's SCM_RIGHTS
 * messages, epoll and poll, eventfd writes, descriptor bookkeeping, the
 * eventfd check in /proc (readlink only; open is not allowed, so nothing
 * new can be reached by path), rewriting the --stats-json file opened
 * before the filter, malloc's brk/mmap, the clock and exit.
 * Everything else fails with EPERM rather than killing netd: a call
 * forgotten here must not take every application's network down, and a
 * refused call executes nothing either way.
 */
static const int netd_allowed[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(writev), SCMP_SYS(close),
	SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(sendto), SCMP_SYS(recvfrom),
	SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
	SCMP_SYS(poll), SCMP_SYS(ppoll),
	SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk),
	SCMP_SYS(fcntl), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(lseek),
	SCMP_SYS(pwrite64), SCMP_SYS(ftruncate),
	SCMP_SYS(getsockopt), SCMP_SYS(readlink), SCMP_SYS(readlinkat),
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
	SCMP_SYS(gettimeofday), SCMP_SYS(futex), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(rt_sigprocmask), SCMP_SYS(getpid), SCMP_SYS(exit), SCMP_SYS(exit_group),
};

int netd_sandbox(void)
{
	scmp_filter_ctx ctx;
	unsigned i;
	int err = netd_drop_caps();

	if (err < 0)
		return err;
	ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	if (ctx == NULL)
		return -ENOMEM;
	for (i = 0; i < sizeof(netd_allowed) / sizeof(netd_allowed[0]) && !err; i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, netd_allowed[i], 0);
	/* Mappings and protections, but never executable ones. */
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (!err)
		err = seccomp_load(ctx);
	seccomp_release(ctx);
	return err < 0 ? err : 0;
}

#else

int netd_sandbox(void)
{
	int err = netd_drop_caps();

	return err < 0 ? err : -ENOSYS;
}

#endif
