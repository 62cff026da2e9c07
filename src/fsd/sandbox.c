/* libretto-fsd's sandbox: no capabilities, no new privileges, and only the system calls of the serving loop (seccomp). */
#include "fsd/sandbox.h"

#include <errno.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

/*
 * Every capability goes: the images and the session memfds arrive already
 * open from the supervisor, and reading, writing and mapping them needs
 * none.  Bounding and ambient sets first, so nothing comes back by exec.
 */
static int fsd_drop_caps(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = { { 0 } };

	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	for (int c = 0; c <= 63; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno == EINVAL)
			break;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (syscall(SYS_capset, &h, d) < 0)
		return -errno;
	return 0;
}

#ifdef FSD_HAVE_SECCOMP
#include <seccomp.h>
#include <sys/mman.h>

/*
 * The loop: epoll on the control socket, the doorbells and the tick; the
 * control socket's SCM_RIGHTS messages; the volume's I/O on descriptors it
 * was given (pread/pwrite and their vector forms, fdatasync, fallocate,
 * fstat); futex wakes of the clients; mappings (never executable); the
 * eventfd check through /proc (readlink only: open is not allowed, so fsd
 * reaches no file by name); kill with signal 0 (is a lock owner alive).  A call missing here fails with EPERM rather
 * than killing fsd: the volume reports an I/O error, no application loses
 * its storage server.
 */
static const int fsd_allowed[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(writev), SCMP_SYS(readv), SCMP_SYS(close),
	SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev),
	SCMP_SYS(preadv2), SCMP_SYS(pwritev2), SCMP_SYS(fdatasync), SCMP_SYS(fsync),
	SCMP_SYS(fallocate), SCMP_SYS(ftruncate), SCMP_SYS(lseek), SCMP_SYS(dup), SCMP_SYS(dup3),
	SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(sendto), SCMP_SYS(recvfrom),
	SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl), SCMP_SYS(poll),
	SCMP_SYS(ppoll), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk),
	SCMP_SYS(fcntl), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(ioctl),
	SCMP_SYS(getsockopt), SCMP_SYS(readlink), SCMP_SYS(readlinkat),
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
	SCMP_SYS(gettimeofday), SCMP_SYS(time), SCMP_SYS(getrandom), SCMP_SYS(futex),
	SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(rt_sigprocmask), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getuid),
	SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(exit),
	SCMP_SYS(exit_group),
};

int fsd_sandbox(void)
{
	scmp_filter_ctx ctx;
	unsigned i;
	int err = fsd_drop_caps();

	if (err < 0)
		return err;
	ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	if (ctx == NULL)
		return -ENOMEM;
	for (i = 0; i < sizeof(fsd_allowed) / sizeof(fsd_allowed[0]) && !err; i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, fsd_allowed[i], 0);
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	/* kill(pid, 0) only: whether a lock owner's process still exists, never a signal. */
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
				       SCMP_A1(SCMP_CMP_EQ, 0));
	if (!err)
		err = seccomp_load(ctx);
	seccomp_release(ctx);
	return err < 0 ? err : 0;
}

#else

int fsd_sandbox(void)
{
	int err = fsd_drop_caps();

	return err < 0 ? err : -ENOSYS;
}

#endif
