/* libretto-netd's sandbox: no capabilities, and after start-up only the system calls of the loop remain (seccomp). */
#include "netd/sandbox.h"

#include <sys/syscall.h>

#include "common/sandbox.h"

/*
 * What the loop and the control channel need: ring and region mappings
 * (sandbox_filter adds mmap/mprotect, never executable), the XSK kicks, the
 * control socket's SCM_RIGHTS messages, epoll and poll, eventfd writes,
 * descriptor bookkeeping, the eventfd check in /proc (readlink only; open
 * is not allowed, so nothing new can be reached by path), rewriting the
 * --stats-json file opened before the filter, malloc's brk, the clock and
 * exit.
 */
static const int netd_allowed[] = {
	SYS_read, SYS_write, SYS_writev, SYS_close,
	SYS_recvmsg, SYS_sendmsg, SYS_sendto, SYS_recvfrom,
	SYS_epoll_wait, SYS_epoll_pwait, SYS_epoll_ctl,
	SYS_poll, SYS_ppoll,
	SYS_munmap, SYS_mremap, SYS_madvise, SYS_brk,
	SYS_fcntl, SYS_fstat, SYS_newfstatat, SYS_lseek,
	SYS_pwrite64, SYS_ftruncate,
	SYS_getsockopt, SYS_readlink, SYS_readlinkat,
	SYS_clock_gettime, SYS_clock_nanosleep, SYS_nanosleep,
	SYS_gettimeofday, SYS_futex, SYS_rt_sigreturn,
	SYS_rt_sigprocmask, SYS_getpid, SYS_exit, SYS_exit_group,
};

int netd_sandbox(void)
{
	int err = sandbox_drop_caps();

	if (err < 0)
		return err;
	return sandbox_filter(netd_allowed, sizeof(netd_allowed) / sizeof(netd_allowed[0]), false);
}
