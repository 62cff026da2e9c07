/* libretto-fsd's sandbox: no capabilities, no new privileges, and only the system calls of the serving loop (seccomp). */
#include "fsd/sandbox.h"

#include <sys/syscall.h>

#include "common/sandbox.h"

/*
 * The loop: epoll on the control socket, the doorbells and the tick; the
 * control socket's SCM_RIGHTS messages; the volume's I/O on descriptors it
 * was given (pread/pwrite and their vector forms, fdatasync, fallocate,
 * fstat); futex wakes of the clients; mappings (sandbox_filter adds them,
 * never executable); the eventfd check through /proc (readlink only: open
 * is not allowed, so fsd reaches no file by name); kill with signal 0 (is a
 * lock owner alive; sandbox_filter's kill0).  A call missing here fails
 * with EPERM: the volume reports an I/O error, no application loses its
 * storage server.
 */
static const int fsd_allowed[] = {
	SYS_read, SYS_write, SYS_writev, SYS_readv, SYS_close,
	SYS_pread64, SYS_pwrite64, SYS_preadv, SYS_pwritev,
	SYS_preadv2, SYS_pwritev2, SYS_fdatasync, SYS_fsync,
	SYS_fallocate, SYS_ftruncate, SYS_lseek, SYS_dup, SYS_dup3,
	SYS_recvmsg, SYS_sendmsg, SYS_sendto, SYS_recvfrom,
	SYS_epoll_wait, SYS_epoll_pwait, SYS_epoll_ctl, SYS_poll,
	SYS_ppoll, SYS_munmap, SYS_mremap, SYS_madvise, SYS_brk,
	SYS_fcntl, SYS_fstat, SYS_newfstatat, SYS_statx, SYS_ioctl,
	SYS_getsockopt, SYS_readlink, SYS_readlinkat,
	SYS_clock_gettime, SYS_clock_nanosleep, SYS_nanosleep,
	SYS_gettimeofday, SYS_time, SYS_getrandom, SYS_futex,
	SYS_timerfd_settime, SYS_timerfd_gettime, SYS_rt_sigreturn,
	SYS_rt_sigprocmask, SYS_getpid, SYS_gettid, SYS_getuid,
	SYS_geteuid, SYS_getgid, SYS_getegid, SYS_exit,
	SYS_exit_group,
};

int fsd_sandbox(void)
{
	int err = sandbox_drop_caps();

	if (err < 0)
		return err;
	return sandbox_filter(fsd_allowed, sizeof(fsd_allowed) / sizeof(fsd_allowed[0]), true);
}
