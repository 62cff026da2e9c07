/* libretto-netd's seccomp filter: after start-up only the system calls of the loop remain. */
#include "netd/sandbox.h"

#include <errno.h>
#include <stddef.h>

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
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	unsigned i;
	int err = 0;

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
	return -ENOSYS;
}

#endif
