/* The runtime's volume mount points: LIBRETTO_VOLUMES, path resolution, lazy attach, the virtual cwd. */
#ifndef LIBRETTO_VFS_MOUNT_H
#define LIBRETTO_VFS_MOUNT_H

/*
 * A program started with LIBRETTO_VOLUMES sees each volume at its mount
 * point.  The file layer (ipx/ipx_file*.c) asks vfs_resolve() where a path
 * goes: the kernel (unchanged, or rewritten to an absolute path when it was
 * relative to a directory inside a volume), or a volume (a mount, a base
 * directory inode and a path relative to it).
 *
 * Paths are resolved lexically up to the mount point: ".", ".." and "//"
 * are folded on the string, so "/data/../etc" is the kernel's /etc, and
 * "/data/a/../b" is the volume's /b even when "a" is a symbolic link (a
 * kernel symbolic link that points into the mount point is not followed
 * into the volume: docs/storage.md "Limitations (file layer)").  Relative
 * paths without ".." under a volume directory (the virtual cwd, or a dirfd)
 * are resolved by the volume from that directory's inode, so they stay
 * right after the directory was renamed.
 *
 * Thread safety: every function may be called from any thread.  The mount
 * table is written once, before any wrapper can see it (vfs_init), except
 * the per-mount attach state (its own mutex).
 */

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "vfs/vfs.h"

#define VFS_MAX_MOUNTS 8
#define VFS_ENV "LIBRETTO_VOLUMES"

/* --- pure helpers (vfs_path.c; no state, unit tested by test_vfs_path) --- */

/*
 * Join base (an absolute, normalized directory; ignored when path is
 * absolute) and path, and fold ".", ".." (".." at "/" stays at "/") and
 * repeated slashes.  out receives an absolute path without a trailing
 * slash (except "/" itself).  Returns its length, -ENAMETOOLONG when it
 * does not fit in n bytes, -ENOENT for an empty path, -EINVAL for a
 * relative path without a base.
 */
int vfs_path_normalize(const char *base, const char *path, char *out, size_t n);

/*
 * If the normalized absolute path abs is the mount point mnt (mlen bytes,
 * normalized) or below it, returns the part inside the volume: "" for the
 * mount point itself, else "/x/y" (pointing into abs).  Otherwise NULL.
 */
const char *vfs_path_under(const char *abs, const char *mnt, size_t mlen);

/* Does path have a ".." component? */
bool vfs_path_has_dotdot(const char *path);

/* Does path end with a slash after a non-slash component ("a/", "a/.")? */
bool vfs_path_wants_dir(const char *path);

/* path's last component: 0 a name (or none: "/"), 1 ".", 2 "..". */
int vfs_path_last_dot(const char *path);

/* One entry of LIBRETTO_VOLUMES (see /work/notes/storage-contract.md). */
enum vfs_storage { VFS_DIRECT = 1, VFS_INDIRECT };
struct vfs_entry {
	char mount[PATH_MAX];	/* normalized, absolute, not "/" */
	char image[PATH_MAX];	/* may be empty (indirect) */
	enum vfs_storage storage;
	int fd;			/* direct: the image descriptor; else -1 */
};

/*
 * Parse one entry (len bytes of text, not NUL terminated: the entries are
 * ';' separated in the variable).  Returns 0, or -EINVAL with a reason in
 * why (static text).  Unknown keys are allowed (indirect entries carry
 * fsd's keys).
 */
int vfs_entry_parse(const char *text, size_t len, struct vfs_entry *e, const char **why);

/* --- the mount table (vfs_mount.c) --- */

enum vfs_mstate {
	VFS_M_IDLE,		/* not attached yet (or detached before an exec that failed) */
	VFS_M_ATTACHED,		/* ops/b usable by this process */
	VFS_M_INHERITED,	/* fork()ed child: the parent's volume, never touched here */
};

struct vfs_mount {
	struct vfs_entry e;
	size_t mlen;			/* strlen(e.mount) */
	char *entry;			/* the entry's text (for vfs_fsd_attach) */
	pthread_mutex_t lock;		/* attach/detach */
	_Atomic int state;		/* enum vfs_mstate */
	const struct vfs_ops *ops;	/* valid while ATTACHED */
	void *b;
	/* Bumped at every attach; an open file remembers the generation it
	 * was opened in, and a different one means its backend is gone. */
	atomic_uint gen;
	pid_t pid;			/* the process that attached */
	atomic_bool inherit_warned;	/* the fork message was printed */
	/* Open volume files of this attach (the file layer counts them):
	 * with none, fork() lets go of the volume (see vfs_mount.c). */
	atomic_int nfiles;
};

extern struct vfs_mount vfs_mounts[VFS_MAX_MOUNTS];
/* Number of usable entries; 0 makes every path call the kernel's at the
 * cost of one load (the check is inlined in the wrappers). */
extern int vfs_nmounts;

/* Parse LIBRETTO_VOLUMES once (idempotent, thread safe; the runtime's
 * constructor calls it).  Never fails the program: a bad entry is a
 * "libretto: " line and is left out. */
void vfs_init(void);

static inline bool vfs_active(void)
{
	extern atomic_bool vfs_inited;

	/*
	 * Before the constructor (another library's constructor, or an
	 * allocator initializing itself) and during the load: no volumes.
	 * Loading here instead would allocate inside the allocator's own
	 * initialization (jemalloc reads /etc/malloc.conf through readlink).
	 */
	if (__builtin_expect(!atomic_load_explicit(&vfs_inited, memory_order_acquire), 0))
		return false;
	return vfs_nmounts != 0;
}

/*
 * The mount's backend for a call now: attaches it at the first call
 * (lazily, so a program that never touches the volume never mounts it).
 * Returns 0 with *ops, *b and *gen set, -EIO in a fork()ed child (with a
 * one-time message), -EBUSY or another -errno when the attach failed (it
 * is retried at the next call).
 */
int vfs_mount_get(struct vfs_mount *m, const struct vfs_ops **ops, void **b, unsigned *gen);

/* Whether an open file of generation gen may still use m's backend; prints
 * the fork message once when not and the mount was inherited. */
bool vfs_mount_valid(struct vfs_mount *m, unsigned gen);

/* The caller's identity for the backend: the filesystem ids (setfsuid(-1), setfsgid(-1): the effective ids unless set apart) and getgroups. */
void vfs_cred(struct vol_cred *c);

/* The process umask (tracked through the umask() wrapper). */
mode_t vfs_umask(void);
void vfs_umask_set(mode_t m);

/* --- resolution --- */

/*
 * The base directory of a relative path, as a volume directory: the
 * virtual cwd or an open directory's file.  The file layer fills it for a
 * dirfd that is one of its directories (ipx_file.c).
 */
struct vfs_dir {
	struct vfs_mount *m;
	unsigned gen;
	vol_ino_t ino;
	const char *path;	/* its absolute path at open (for "..") */
};

struct vfs_loc {
	/* Volume: */
	struct vfs_mount *m;
	vol_ino_t dir;		/* base directory inode */
	const char *rel;	/* path relative to dir (into buf or the caller's string) */
	bool want_dir;		/* the path had a trailing slash */
	/* Kernel: the dirfd and path to pass on (possibly rewritten). */
	int kdirfd;
	const char *kpath;
	char buf[PATH_MAX];	/* the normalized absolute path (also for the volume) */
	char relbuf[PATH_MAX];	/* rel without its trailing slashes (inode shortcut) */
	char abs_ok;		/* buf holds the absolute path */
	/* The original path's last component: 0 a name, 1 ".", 2 ".." (the
	 * calls that create or remove a name refuse the last two). */
	char last_dot;
};

/*
 * Where does (dirfd, path) go?  dir: dirfd's volume directory (NULL when
 * dirfd is AT_FDCWD or a kernel descriptor).  Returns 0 for the kernel
 * (kdirfd, kpath set), 1 for a volume (m, dir, rel set), or -errno
 * (ENOENT empty path, ENAMETOOLONG also for a path of PATH_MAX bytes or
 * more, EFAULT NULL path).  rel never ends with a slash (want_dir says
 * it did).
 */
int vfs_resolve(int dirfd, const struct vfs_dir *dir, const char *path, struct vfs_loc *loc);

/* The absolute path of a volume location (builds it when vfs_resolve took
 * the inode shortcut); NULL when it cannot be known. */
const char *vfs_loc_abs(struct vfs_loc *loc, const struct vfs_dir *dir);

/* --- the virtual cwd --- */

/* chdir into a volume directory: takes over the open reference on ino. */
void vfs_cwd_set(struct vfs_mount *m, unsigned gen, vol_ino_t ino, const char *abs);
/* chdir to a kernel directory: drops the virtual cwd. */
void vfs_cwd_clear(void);
/* The virtual cwd's path into buf (size n); 1 when set, 0 when the kernel
 * cwd applies, -ERANGE when it does not fit. */
int vfs_cwd_get(char *buf, size_t n);

/* --- process events --- */

/* Before exec: commit and detach every volume this process attached. */
void vfs_before_exec(void);
/*
 * The environment entry that hands the virtual cwd to an exec'd image
 * ("LIBRETTO_CWD=/data/x", a static buffer; the new image's runtime takes
 * it out of its environment and starts there), or NULL without one.
 */
#define VFS_CWD_ENV "LIBRETTO_CWD"
const char *vfs_exec_cwd_env(void);
/* At exit (the destructor): flush, commit, detach.  vfs_exit_now: the
 * same without the stdio flush (_exit). */
void vfs_exit(void);
void vfs_exit_now(void);

/*
 * Terminating signals (docs/storage.md "fork, exec, exit"): once a direct
 * volume is attached, ipx_sig_exit_arm(vfs_exit_signal) puts a handler of
 * ours on SIGTERM, SIGINT, SIGHUP and SIGQUIT where their action is the
 * default (the program still sees SIG_DFL; its own handler replaces ours).
 * It calls vfs_exit_signal (commit and unmount what can be without
 * waiting), restores SIG_DFL and raises the signal again, so the process
 * ends as it would have.  Weak: ipx_signal.c.
 */
void vfs_exit_signal(void);
void ipx_sig_exit_arm(void (*fn)(void)) __attribute__((weak));
/*
 * vfs_direct.c, for vfs_exit_signal: quiesce makes new calls into the
 * volume wait and says whether it is idle now (0) or in use on this thread
 * or, after up to 200 ms, on another (-EBUSY); detach_dying commits and
 * unmounts it without stopping the timer thread or freeing b (the process
 * is about to end).
 */
int vfs_direct_quiesce(void *b);
int vfs_direct_detach_dying(void *b);
/* The file layer's stdio streams to flush at exit before the detach
 * (ipx_file_stdio.c); weak. */
void ipx_vfile_flush_all(void) __attribute__((weak));
/* vfork is fork while volumes are configured (ipx_file_stdio.c); weak. */
void ipx_vfork_setup(void) __attribute__((weak));

/*
 * Indirect storage and fork (ipx_file.c; weak, so the mount table links
 * without the interposition layer).  libretto-fsd counts open references
 * per session, and a forked child shares its parent's session: every
 * process holds one reference per open file description it has, so a
 * close in one never drops another's.
 *   prepare: in the parent, before the fork, one more reference of every
 *            live indirect description for the child (taken here, not in
 *            the child, so the parent cannot drop the last one first);
 *            the description list stays locked until parent/child.
 *   child:   the copies are the child's own descriptions.
 *   release_mount: exit of this process: its descriptions on m give
 *            their references (and OFD locks; at_exit also its POSIX
 *            locks) back.  An exec instead hands them to the new image
 *            (below).
 */
void ipx_vfile_fork_prepare(void) __attribute__((weak));
void ipx_vfile_fork_parent(void) __attribute__((weak));
void ipx_vfile_fork_child(void) __attribute__((weak));
void ipx_vfile_release_mount(struct vfs_mount *m, bool at_exit) __attribute__((weak));

/*
 * exec hands the descriptors of indirect volume files without FD_CLOEXEC
 * to the new image: ipx_vfile_exec_env (in vfs_before_exec) builds the
 * "LIBRETTO_VFDS=..." entry (static), one record per indirect description
 * with its reference; the new image's vfs_load calls ipx_vfile_adopt for
 * each record (ent: one entry of the list, see ipx_file.c), which adopts
 * the surviving descriptors or gives the reference back, and takes the
 * variable out of its environment.  The old image changes nothing, so a
 * failed exec leaves its files usable.  vfs_exec_fds_env: the entry built
 * by the last vfs_before_exec, or NULL.
 */
#define VFS_FDS_ENV "LIBRETTO_VFDS"
const char *ipx_vfile_exec_env(void) __attribute__((weak));
void ipx_vfile_adopt(struct vfs_mount *m, const struct vfs_ops *ops, void *b, unsigned gen,
		     const char *ent) __attribute__((weak));
const char *vfs_exec_fds_env(void);

#endif
