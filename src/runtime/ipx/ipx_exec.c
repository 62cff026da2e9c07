/* The exec family: a program that has not started the stack hands its lease on to the new image. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libretto/ctl.h"
#include "ipx/ipx.h"
#include "stack/stack.h"
#include "vfs/vfs_mount.h"

extern char **environ;

/*
 * Why: `libretto run -- CMD` often starts a wrapper that only execs the real
 * program (a pyenv shim, `sh -c 'exec prog'`, env, nice, timeout).  The
 * runtime's constructor takes the lease out of the environment in every
 * process, so without this the real program would run on the kernel stack.
 * While this process has not started the stack (stack_lease_pending()), the
 * exec'd image gets LIBRETTO_LEASE (with the descriptors' current numbers),
 * our runtime at the front of LD_PRELOAD, and the lease's descriptors open
 * across the exec.  Once the stack runs here, exec drops the library OS as
 * before: the new image runs on the kernel stack.
 *
 * Nothing here allocates: the wrappers may run in a vfork() child, which
 * shares the parent's heap, or after fork() in a multithreaded program.
 * The new environment lives in variable-length arrays on this stack frame.
 * posix_spawn(), system() and popen() use glibc's internal exec and are not
 * seen here: children spawned that way run on the kernel stack.
 */

enum ipx_exec_kind {
	IPX_EXECVE,	/* path */
	IPX_EXECVPE,	/* file, searched in PATH */
	IPX_FEXECVE,	/* fd */
	IPX_EXECVEAT,	/* dirfd + path + flags */
};

struct ipx_exec_call {
	enum ipx_exec_kind kind;
	int fd;
	const char *path;
	char *const *argv;
	int flags;
};

static int ipx_exec_real(const struct ipx_exec_call *c, char *const envp[])
{
	switch (c->kind) {
	case IPX_EXECVE:
		return real.execve(c->path, c->argv, envp);
	case IPX_EXECVPE:
		return real.execvpe(c->path, c->argv, envp);
	case IPX_FEXECVE:
		return real.fexecve(c->fd, c->argv, envp);
	case IPX_EXECVEAT:
		if (real.execveat != NULL)
			return real.execveat(c->fd, c->path, c->argv, envp, c->flags);
		return (int)syscall(SYS_execveat, c->fd, c->path, c->argv, envp, c->flags);
	}
	errno = EINVAL;
	return -1;
}

static bool env_is(const char *entry, const char *name)
{
	size_t n = strlen(name);

	return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

/* Is path one of the entries (space or colon separated) of list? */
static bool preload_has(const char *list, const char *path)
{
	size_t n = strlen(path);

	for (const char *p = list; (p = strstr(p, path)) != NULL; p += n) {
		bool start = p == list || p[-1] == ' ' || p[-1] == ':';
		bool end = p[n] == '\0' || p[n] == ' ' || p[n] == ':';

		if (start && end)
			return true;
	}
	return false;
}

/*
 * Exec with envp plus the volumes' entries, on this frame: the virtual
 * cwd's (vfs_exec_cwd_env) and the volume descriptors handed over
 * (vfs_exec_fds_env); either may be NULL.
 */
static int ipx_exec_cwd(const struct ipx_exec_call *c, char *const envp[], const char *cwdenv,
			const char *fdsenv)
{
	size_t n = 0, j = 0;

	if (envp != NULL)
		while (envp[n] != NULL)
			n++;

	char *env[n + 3];

	for (size_t i = 0; i < n; i++)
		if (!env_is(envp[i], VFS_CWD_ENV) && !env_is(envp[i], VFS_FDS_ENV))
			env[j++] = envp[i];
	if (cwdenv != NULL)
		env[j++] = (char *)cwdenv;
	if (fdsenv != NULL)
		env[j++] = (char *)fdsenv;
	env[j] = NULL;
	return ipx_exec_real(c, env);
}

static int ipx_exec(const struct ipx_exec_call *c, char *const envp[])
{
	static const char preload_key[] = "LD_PRELOAD=";
	const char *lease, *self, *preload = NULL, *cwdenv, *fdsenv;
	size_t n = 0, plen, j = 0;
	int fds[CTL_MAX_FDS], fdflags[CTL_MAX_FDS], nfds, r, err;

	real_init();
	/* Direct storage cannot pass into the new image: commit and let go,
	 * so that it can mount the volume itself (vfs_mount.h); a cwd in a
	 * volume goes with the environment. */
	vfs_before_exec();
	cwdenv = vfs_exec_cwd_env();
	fdsenv = vfs_exec_fds_env();
	if (!stack_lease_pending())
		return cwdenv || fdsenv ? ipx_exec_cwd(c, envp, cwdenv, fdsenv) : ipx_exec_real(c, envp);
	lease = stack_lease_env();
	self = stack_runtime_path();
	if (lease == NULL)
		return cwdenv || fdsenv ? ipx_exec_cwd(c, envp, cwdenv, fdsenv) : ipx_exec_real(c, envp);
	if (envp != NULL) {
		for (; envp[n] != NULL; n++)
			if (preload == NULL && env_is(envp[n], "LD_PRELOAD"))
				preload = envp[n] + sizeof(preload_key) - 1;
	}
	plen = sizeof(preload_key) + (self ? strlen(self) : 0) + (preload ? strlen(preload) + 1 : 0);

	/* The caller's array stays untouched: the copy drops its lease and
	 * LD_PRELOAD entries and adds ours. */
	char *env[n + 5];
	char pl[plen];

	for (size_t i = 0; i < n; i++) {
		if (env_is(envp[i], LIBRETTO_LEASE_ENV) || env_is(envp[i], "LD_PRELOAD") ||
		    env_is(envp[i], VFS_CWD_ENV) || env_is(envp[i], VFS_FDS_ENV))
			continue;
		env[j++] = envp[i];
	}
	env[j++] = (char *)lease;
	if (cwdenv != NULL)
		env[j++] = (char *)cwdenv;
	if (fdsenv != NULL)
		env[j++] = (char *)fdsenv;
	if (self != NULL && !(preload != NULL && preload_has(preload, self))) {
		/* Ours first, so our wrappers come before other preloaded ones. */
		strcpy(pl, preload_key);
		strcat(pl, self);
		if (preload != NULL && preload[0] != '\0') {
			strcat(pl, " ");
			strcat(pl, preload);
		}
		env[j++] = pl;
	} else if (preload != NULL) {
		env[j++] = (char *)preload - (sizeof(preload_key) - 1);
	}
	env[j] = NULL;

	/* The lease's descriptors must survive this exec; if the exec fails
	 * they are close-on-exec again, as the runtime keeps them. */
	nfds = stack_private_fds(fds, CTL_MAX_FDS);
	for (int i = 0; i < nfds; i++) {
		fdflags[i] = real.fcntl(fds[i], F_GETFD, 0L);
		if (fdflags[i] >= 0)
			real.fcntl(fds[i], F_SETFD, (long)(fdflags[i] & ~FD_CLOEXEC));
	}
	r = ipx_exec_real(c, env);
	err = errno;
	for (int i = 0; i < nfds; i++)
		if (fdflags[i] >= 0)
			real.fcntl(fds[i], F_SETFD, (long)fdflags[i]);
	errno = err;
	return r;
}

IPX_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	struct ipx_exec_call c = { .kind = IPX_EXECVE, .path = path, .argv = argv };

	return ipx_exec(&c, envp);
}

IPX_EXPORT int execv(const char *path, char *const argv[])
{
	struct ipx_exec_call c = { .kind = IPX_EXECVE, .path = path, .argv = argv };

	return ipx_exec(&c, environ);
}

IPX_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	struct ipx_exec_call c = { .kind = IPX_EXECVPE, .path = file, .argv = argv };

	return ipx_exec(&c, envp);
}

IPX_EXPORT int execvp(const char *file, char *const argv[])
{
	struct ipx_exec_call c = { .kind = IPX_EXECVPE, .path = file, .argv = argv };

	return ipx_exec(&c, environ);
}

IPX_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	struct ipx_exec_call c = { .kind = IPX_FEXECVE, .fd = fd, .argv = argv };

	return ipx_exec(&c, envp);
}

IPX_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
			int flags)
{
	struct ipx_exec_call c = {
		.kind = IPX_EXECVEAT, .fd = dirfd, .path = path, .argv = argv, .flags = flags,
	};

	return ipx_exec(&c, envp);
}

/*
 * The list forms: count the arguments, then copy them into an argv on this
 * frame (variadic arguments cannot be forwarded to the C library's own).
 * As glibc does, the count starts at arg and runs to the first NULL after
 * it; execle's environment follows that NULL.
 */
#define IPX_EXECL_ARGV(arg, ap, argv)                                          \
	size_t argc_ = 1;                                                      \
	va_start(ap, arg);                                                     \
	while (va_arg(ap, const char *) != NULL)                               \
		argc_++;                                                       \
	va_end(ap);                                                            \
	const char *argv[argc_ + 1];                                           \
	va_start(ap, arg);                                                     \
	argv[0] = arg;                                                         \
	for (size_t i_ = 1; i_ <= argc_; i_++)                                 \
		argv[i_] = va_arg(ap, const char *)

IPX_EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;

	IPX_EXECL_ARGV(arg, ap, argv);
	va_end(ap);
	struct ipx_exec_call c = { .kind = IPX_EXECVE, .path = path, .argv = (char *const *)argv };

	return ipx_exec(&c, environ);
}

IPX_EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;

	IPX_EXECL_ARGV(arg, ap, argv);
	va_end(ap);
	struct ipx_exec_call c = { .kind = IPX_EXECVPE, .path = file, .argv = (char *const *)argv };

	return ipx_exec(&c, environ);
}

IPX_EXPORT int execle(const char *path, const char *arg, ...)
{
	char *const *envp;
	va_list ap;

	IPX_EXECL_ARGV(arg, ap, argv);
	envp = va_arg(ap, char *const *);
	va_end(ap);
	struct ipx_exec_call c = { .kind = IPX_EXECVE, .path = path, .argv = (char *const *)argv };

	return ipx_exec(&c, envp);
}
