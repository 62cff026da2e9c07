/* Volume files: the calls that name a path (stat, access, mkdir, unlink, rename, links, chmod, cwd, realpath, mkstemp). */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include "ipx/ipx_file.h"

void ipx_statfs_to_statvfs(const struct statfs *s, struct statvfs *v);
extern void __chk_fail(void) __attribute__((noreturn));

/*
 * The backend's lookup takes no credentials, so for a caller without
 * CAP_DAC_OVERRIDE (not root) the search permission of every directory on
 * the way is checked here, as the kernel's path walk does (access("closed/
 * inner") is EACCES when "closed" is 0700 and not ours).
 */
static int vp_search_ok(struct ipx_vloc *vl)
{
	char pre[PATH_MAX];
	struct vol_cred cred;
	const char *rel = vl->loc.rel, *p;
	vol_ino_t d;
	int err;

	vfs_cred(&cred);
	if (cred.uid == 0)
		return 0;
	err = vl->ops->access(vl->b, vl->loc.dir, X_OK, &cred);
	for (p = rel; err == 0 && (p = strchr(p + 1, '/')) != NULL;) {
		if ((size_t)(p - rel) >= sizeof(pre))
			return -ENAMETOOLONG;
		memcpy(pre, rel, (size_t)(p - rel));
		pre[p - rel] = '\0';
		if (pre[0] == '\0')
			continue;
		err = vl->ops->lookup(vl->b, vl->loc.dir, pre, 0, &d);
		if (err == 0)
			err = vl->ops->access(vl->b, d, X_OK, &cred);
	}
	return err;
}

/*
 * The location names a directory itself (the mount point, or a last
 * component "." or ".."), not an entry of its parent: nothing can be made,
 * renamed or linked there.
 */
static bool vp_is_dir_itself(const struct vfs_loc *loc)
{
	return loc->last_dot || strcmp(loc->rel, "/") == 0;
}

/* The inode at a resolved location (flags: AT_SYMLINK_NOFOLLOW), checked for a wanted directory. */
static int vp_lookup(struct ipx_vloc *vl, int flags, vol_ino_t *ino)
{
	struct stat st;
	int err = vp_search_ok(vl);

	if (err == 0)
		err = vl->ops->lookup(vl->b, vl->loc.dir, vl->loc.rel, flags, ino);

	if (err == 0 && vl->loc.want_dir) {
		err = vl->ops->getattr(vl->b, *ino, &st);
		if (err == 0 && !S_ISDIR(st.st_mode))
			err = -ENOTDIR;
	}
	return err;
}

/* ------------------------------------------------------------------ */
/* stat family */

/*
 * fstatat: 1 when the volume answered (*res: 0 or -errno), 0 when it is
 * the kernel's (vl->loc.kdirfd and kpath to use; they are dirfd and path
 * when vfs_resolve had nothing to rewrite).
 */
static int vp_fstatat(int dirfd, const char *path, struct stat *st, int flags, struct ipx_vloc *vl,
		      int *res)
{
	vol_ino_t ino;
	int r;

	real_init();
	vl->loc.kdirfd = dirfd;
	vl->loc.kpath = path;
	if ((flags & AT_EMPTY_PATH) && path != NULL && path[0] == '\0') {
		struct ipx_file *f = ipx_vfile_app(dirfd);

		if (f == NULL)
			return 0;
		if (f == IPX_VF_PRIVATE) {
			*res = -EBADF;
			return 1;
		}
		*res = ipx_vfile_stat(f->vf, st);
		ipx_put(f);
		return 1;
	}
	r = ipx_vlocate(dirfd, path, vl, false);
	if (r == 0)
		return 0;
	if (r == 1 && (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT |
				  AT_STATX_SYNC_TYPE)))
		r = -EINVAL;
	if (r == 1) {
		r = vp_lookup(vl, flags & AT_SYMLINK_NOFOLLOW, &ino);
		if (r == 0)
			r = vl->ops->getattr(vl->b, ino, st);
	}
	*res = r;
	return 1;
}

static int ipx_statat(int dirfd, const char *path, struct stat *st, int flags)
{
	struct ipx_vloc vl;
	int res;

	if (vp_fstatat(dirfd, path, st, flags, &vl, &res))
		return (int)ipx_ret(res);
	return real.fstatat(vl.loc.kdirfd, vl.loc.kpath, st, flags);
}

IPX_EXPORT int stat(const char *path, struct stat *st)
{
	return ipx_statat(AT_FDCWD, path, (struct stat *)st, 0);
}

IPX_EXPORT int stat64(const char *path, struct stat64 *st)
{
	return ipx_statat(AT_FDCWD, path, (struct stat *)st, 0);
}

IPX_EXPORT int lstat(const char *path, struct stat *st)
{
	return ipx_statat(AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
}

IPX_EXPORT int lstat64(const char *path, struct stat64 *st)
{
	return ipx_statat(AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
}

IPX_EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	return ipx_statat(dirfd, path, (struct stat *)st, flags);
}

IPX_EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	return ipx_statat(dirfd, path, (struct stat *)st, flags);
}

/* The pre-2.33 entry points of binaries built against an older glibc. */
IPX_EXPORT int __xstat(int ver, const char *path, struct stat *st)
{
	(void)ver;
	return ipx_statat(AT_FDCWD, path, (struct stat *)st, 0);
}

IPX_EXPORT int __xstat64(int ver, const char *path, struct stat64 *st)
{
	(void)ver;
	return ipx_statat(AT_FDCWD, path, (struct stat *)st, 0);
}

IPX_EXPORT int __lxstat(int ver, const char *path, struct stat *st)
{
	(void)ver;
	return ipx_statat(AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
}

IPX_EXPORT int __lxstat64(int ver, const char *path, struct stat64 *st)
{
	(void)ver;
	return ipx_statat(AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
}

IPX_EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
	(void)ver;
	return ipx_statat(dirfd, path, (struct stat *)st, flags);
}

IPX_EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
	(void)ver;
	return ipx_statat(dirfd, path, (struct stat *)st, flags);
}

void ipx_stat_to_statx(const struct stat *st, struct statx *stx)
{
	memset(stx, 0, sizeof(*stx));
	stx->stx_mask = STATX_BASIC_STATS;
	stx->stx_blksize = (uint32_t)st->st_blksize;
	stx->stx_nlink = (uint32_t)st->st_nlink;
	stx->stx_uid = st->st_uid;
	stx->stx_gid = st->st_gid;
	stx->stx_mode = (uint16_t)st->st_mode;
	stx->stx_ino = st->st_ino;
	stx->stx_size = (uint64_t)st->st_size;
	stx->stx_blocks = (uint64_t)st->st_blocks;
	stx->stx_atime.tv_sec = st->st_atim.tv_sec;
	stx->stx_atime.tv_nsec = (uint32_t)st->st_atim.tv_nsec;
	stx->stx_mtime.tv_sec = st->st_mtim.tv_sec;
	stx->stx_mtime.tv_nsec = (uint32_t)st->st_mtim.tv_nsec;
	stx->stx_ctime.tv_sec = st->st_ctim.tv_sec;
	stx->stx_ctime.tv_nsec = (uint32_t)st->st_ctim.tv_nsec;
	stx->stx_rdev_major = major(st->st_rdev);
	stx->stx_rdev_minor = minor(st->st_rdev);
	stx->stx_dev_major = major(st->st_dev);
	stx->stx_dev_minor = minor(st->st_dev);
}

IPX_EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
	struct ipx_vloc vl;
	struct stat st;
	int res;

	if (vp_fstatat(dirfd, path, &st, flags & (AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH), &vl, &res)) {
		if (res == 0)
			ipx_stat_to_statx(&st, stx);
		return (int)ipx_ret(res);
	}
	return real.statx(vl.loc.kdirfd, vl.loc.kpath, flags, mask, stx);
}

/* ------------------------------------------------------------------ */
/* access */

static int ipx_accessat(int dirfd, const char *path, int mode, int flags)
{
	struct vol_cred cred;
	struct ipx_vloc vl;
	vol_ino_t ino;
	int r;

	r = ipx_vlocate(dirfd, path, &vl, false);
	if (r == 0)
		return real.faccessat(vl.loc.kdirfd, vl.loc.kpath, mode, flags);
	if (r < 0)
		return (int)ipx_ret(r);
	if (mode & ~(R_OK | W_OK | X_OK))
		return (int)ipx_ret(-EINVAL);
	r = vp_lookup(&vl, flags & AT_SYMLINK_NOFOLLOW, &ino);
	if (r == 0) {
		vfs_cred(&cred);
		if (!(flags & AT_EACCESS)) {
			/* access(2) checks the real ids. */
			cred.uid = getuid();
			cred.gid = getgid();
		}
		r = vl.ops->access(vl.b, ino, mode, &cred);
	}
	return (int)ipx_ret(r);
}

IPX_EXPORT int access(const char *path, int mode)
{
	return ipx_accessat(AT_FDCWD, path, mode, 0);
}

IPX_EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	return ipx_accessat(dirfd, path, mode, flags);
}

IPX_EXPORT int euidaccess(const char *path, int mode)
{
	return ipx_accessat(AT_FDCWD, path, mode, AT_EACCESS);
}

IPX_EXPORT int eaccess(const char *path, int mode)
{
	return ipx_accessat(AT_FDCWD, path, mode, AT_EACCESS);
}

/* ------------------------------------------------------------------ */
/* Names: mkdir, unlink, rmdir, rename, link, symlink, readlink */

static int ipx_mkdirat(int dirfd, const char *path, mode_t mode)
{
	struct vol_cred cred;
	struct ipx_vloc vl;
	int r;

	r = ipx_vlocate(dirfd, path, &vl, false);
	if (r == 0)
		return real.mkdirat(vl.loc.kdirfd, vl.loc.kpath, mode);
	if (r == 1 && vp_is_dir_itself(&vl.loc))
		r = -EEXIST;
	if (r == 1) {
		vfs_cred(&cred);
		r = vl.ops->mkdir(vl.b, vl.loc.dir, vl.loc.rel, mode & ~vfs_umask() & 07777, &cred);
	}
	return (int)ipx_ret(r);
}

IPX_EXPORT int mkdir(const char *path, mode_t mode)
{
	return ipx_mkdirat(AT_FDCWD, path, mode);
}

IPX_EXPORT int mkdirat(int dirfd, const char *path, mode_t mode)
{
	return ipx_mkdirat(dirfd, path, mode);
}

static int ipx_unlinkat(int dirfd, const char *path, int flags)
{
	struct vol_cred cred;
	struct ipx_vloc vl;
	int r;

	r = ipx_vlocate(dirfd, path, &vl, false);
	if (r == 0)
		return real.unlinkat(vl.loc.kdirfd, vl.loc.kpath, flags);
	if (r == 1) {
		if (flags & ~AT_REMOVEDIR)
			r = -EINVAL;
		else if (vl.loc.last_dot)
			/* As Linux: rmdir "x/." EINVAL, "x/.." ENOTEMPTY; unlink EISDIR. */
			r = !(flags & AT_REMOVEDIR) ? -EISDIR : vl.loc.last_dot == 1 ? -EINVAL : -ENOTEMPTY;
		else if (strcmp(vl.loc.rel, "/") == 0)
			r = (flags & AT_REMOVEDIR) ? -EBUSY : -EISDIR;	/* the mount point */
		else if (vl.loc.want_dir && !(flags & AT_REMOVEDIR)) {
			/* unlink "f/": ENOTDIR for a file, EISDIR for a directory. */
			struct stat st;
			vol_ino_t ino;

			r = vl.ops->lookup(vl.b, vl.loc.dir, vl.loc.rel, AT_SYMLINK_NOFOLLOW, &ino);
			if (r == 0)
				r = vl.ops->getattr(vl.b, ino, &st);
			if (r == 0)
				r = S_ISDIR(st.st_mode) ? -EISDIR : -ENOTDIR;
		} else {
			vfs_cred(&cred);
			r = vl.ops->unlink(vl.b, vl.loc.dir, vl.loc.rel, flags, &cred);
		}
	}
	return (int)ipx_ret(r);
}

IPX_EXPORT int unlink(const char *path)
{
	return ipx_unlinkat(AT_FDCWD, path, 0);
}

IPX_EXPORT int rmdir(const char *path)
{
	return ipx_unlinkat(AT_FDCWD, path, AT_REMOVEDIR);
}

IPX_EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
	return ipx_unlinkat(dirfd, path, flags);
}

static int ipx_sys_renameat2(int ofd, const char *from, int nfd, const char *to, unsigned int flags)
{
	if (flags == 0)
		return real.renameat(ofd, from, nfd, to);
	if (real.renameat2 != NULL)
		return real.renameat2(ofd, from, nfd, to, flags);
	return (int)syscall(SYS_renameat2, ofd, from, nfd, to, flags);
}

static int ipx_renameat2(int ofd, const char *from, int nfd, const char *to, unsigned int flags)
{
	struct ipx_vloc a, b;
	struct vol_cred cred;
	int ra, rb;

	real_init();
	if (!vfs_active())
		return ipx_sys_renameat2(ofd, from, nfd, to, flags);
	ra = ipx_vpath(ofd, from, &a, false);
	if (ra < 0)
		return (int)ipx_ret(ra);
	rb = ipx_vpath(nfd, to, &b, false);
	if (rb < 0)
		return (int)ipx_ret(rb);
	if (ra == 0 && rb == 0)
		return ipx_sys_renameat2(a.loc.kdirfd, a.loc.kpath, b.loc.kdirfd, b.loc.kpath, flags);
	/* Across the mount point (either way) or between two volumes: as
	 * Linux across file systems. */
	if (ra != rb || a.loc.m != b.loc.m)
		return (int)ipx_ret(-EXDEV);
	if (vp_is_dir_itself(&a.loc) || vp_is_dir_itself(&b.loc))
		return (int)ipx_ret(-EBUSY);
	if (a.loc.want_dir || b.loc.want_dir) {
		/* A trailing slash on either name: the source must be a directory. */
		struct stat st;
		vol_ino_t ino;
		int r = a.ops->lookup(a.b, a.loc.dir, a.loc.rel, AT_SYMLINK_NOFOLLOW, &ino);

		if (r == 0)
			r = a.ops->getattr(a.b, ino, &st);
		if (r == 0 && !S_ISDIR(st.st_mode))
			r = -ENOTDIR;
		if (r < 0)
			return (int)ipx_ret(r);
	}
	vfs_cred(&cred);
	return (int)ipx_ret(a.ops->rename(a.b, a.loc.dir, a.loc.rel, b.loc.dir, b.loc.rel, flags, &cred));
}

IPX_EXPORT int rename(const char *from, const char *to)
{
	return ipx_renameat2(AT_FDCWD, from, AT_FDCWD, to, 0);
}

IPX_EXPORT int renameat(int ofd, const char *from, int nfd, const char *to)
{
	return ipx_renameat2(ofd, from, nfd, to, 0);
}

IPX_EXPORT int renameat2(int ofd, const char *from, int nfd, const char *to, unsigned int flags)
{
	return ipx_renameat2(ofd, from, nfd, to, flags);
}

static int ipx_linkat(int ofd, const char *from, int nfd, const char *to, int flags)
{
	struct ipx_vloc a, b;
	struct vol_cred cred;
	vol_ino_t ino;
	int ra, rb, r;

	real_init();
	if (!vfs_active())
		return real.linkat(ofd, from, nfd, to, flags);
	if ((flags & AT_EMPTY_PATH) && from != NULL && from[0] == '\0') {
		struct ipx_file *f = ipx_vfile_app(ofd);

		if (f == NULL)
			return real.linkat(ofd, from, nfd, to, flags);
		if (f == IPX_VF_PRIVATE)
			return (int)ipx_ret(-EBADF);
		rb = ipx_vpath(nfd, to, &b, false);
		if (rb == 1 && b.loc.m != f->vf->m)
			rb = 0;
		r = rb < 0 ? rb : rb == 0 ? -EXDEV : ipx_vfile_check(f->vf);
		if (r == 0) {
			vfs_cred(&cred);
			r = b.ops->link(b.b, f->vf->ino, b.loc.dir, b.loc.rel, &cred);
		}
		ipx_put(f);
		return (int)ipx_ret(r);
	}
	ra = ipx_vpath(ofd, from, &a, false);
	if (ra < 0)
		return (int)ipx_ret(ra);
	rb = ipx_vpath(nfd, to, &b, false);
	if (rb < 0)
		return (int)ipx_ret(rb);
	if (ra == 0 && rb == 0)
		return real.linkat(a.loc.kdirfd, a.loc.kpath, b.loc.kdirfd, b.loc.kpath, flags);
	if (ra != rb || a.loc.m != b.loc.m)
		return (int)ipx_ret(-EXDEV);
	if (vp_is_dir_itself(&b.loc))
		return (int)ipx_ret(-EEXIST);
	r = vp_lookup(&a, (flags & AT_SYMLINK_FOLLOW) ? 0 : AT_SYMLINK_NOFOLLOW, &ino);
	if (r == 0) {
		vfs_cred(&cred);
		r = a.ops->link(a.b, ino, b.loc.dir, b.loc.rel, &cred);
	}
	return (int)ipx_ret(r);
}

IPX_EXPORT int link(const char *from, const char *to)
{
	return ipx_linkat(AT_FDCWD, from, AT_FDCWD, to, 0);
}

IPX_EXPORT int linkat(int ofd, const char *from, int nfd, const char *to, int flags)
{
	return ipx_linkat(ofd, from, nfd, to, flags);
}

static int ipx_symlinkat(const char *target, int dirfd, const char *path)
{
	struct vol_cred cred;
	struct ipx_vloc vl;
	int r;

	r = ipx_vlocate(dirfd, path, &vl, false);
	if (r == 0)
		return real.symlinkat(target, vl.loc.kdirfd, vl.loc.kpath);
	if (r == 1 && vp_is_dir_itself(&vl.loc))
		r = -EEXIST;
	if (r == 1) {
		vfs_cred(&cred);
		r = target == NULL ? -EFAULT : target[0] == '\0' ? -ENOENT :
		    vl.ops->symlink(vl.b, target, vl.loc.dir, vl.loc.rel, &cred);
	}
	return (int)ipx_ret(r);
}

IPX_EXPORT int symlink(const char *target, const char *path)
{
	return ipx_symlinkat(target, AT_FDCWD, path);
}

IPX_EXPORT int symlinkat(const char *target, int dirfd, const char *path)
{
	return ipx_symlinkat(target, dirfd, path);
}

static ssize_t ipx_readlinkat(int dirfd, const char *path, char *buf, size_t n)
{
	struct ipx_vloc vl;
	vol_ino_t ino;
	ssize_t r;

	r = ipx_vlocate(dirfd, path, &vl, false);
	if (r == 0)
		return real.readlinkat(vl.loc.kdirfd, vl.loc.kpath, buf, n);
	if (r == 1) {
		if (n == 0)
			return ipx_ret(-EINVAL);
		r = vl.ops->lookup(vl.b, vl.loc.dir, vl.loc.rel, AT_SYMLINK_NOFOLLOW, &ino);
		if (r == 0)
			r = vl.ops->readlink(vl.b, ino, buf, n);
	}
	return ipx_ret(r);
}

IPX_EXPORT ssize_t readlink(const char *path, char *buf, size_t n)
{
	return ipx_readlinkat(AT_FDCWD, path, buf, n);
}

IPX_EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t n)
{
	return ipx_readlinkat(dirfd, path, buf, n);
}

IPX_EXPORT ssize_t __readlink_chk(const char *path, char *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return ipx_readlinkat(AT_FDCWD, path, buf, n);
}

IPX_EXPORT ssize_t __readlinkat_chk(int dirfd, const char *path, char *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return ipx_readlinkat(dirfd, path, buf, n);
}

/* mknod: regular files only (vol.h: FIFOs, sockets and devices are EPERM for now). */
static int ipx_mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
{
	struct ipx_vloc vl;
	int r;

	r = ipx_vlocate(dirfd, path, &vl, false);
	if (r == 0)
		return real.mknodat(vl.loc.kdirfd, vl.loc.kpath, mode, dev);
	if (r == 1) {
		if (S_ISREG(mode) || (mode & S_IFMT) == 0) {
			r = ipx_vfile_open(&vl, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
			if (r >= 0)
				close(r), r = 0;
		} else {
			r = -EPERM;
		}
	}
	return (int)ipx_ret(r);
}

IPX_EXPORT int mknod(const char *path, mode_t mode, dev_t dev)
{
	return ipx_mknodat(AT_FDCWD, path, mode, dev);
}

IPX_EXPORT int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
{
	return ipx_mknodat(dirfd, path, mode, dev);
}

IPX_EXPORT int mkfifo(const char *path, mode_t mode)
{
	return ipx_mknodat(AT_FDCWD, path, (mode & 07777) | S_IFIFO, 0);
}

IPX_EXPORT int mkfifoat(int dirfd, const char *path, mode_t mode)
{
	return ipx_mknodat(dirfd, path, (mode & 07777) | S_IFIFO, 0);
}

/* ------------------------------------------------------------------ */
/* Attributes by path: truncate, chmod, chown, times, statfs */

static int vp_setattr(struct ipx_vloc *vl, int lflags, struct vol_setattr *sa)
{
	struct vol_cred cred;
	vol_ino_t ino;
	int r = vp_lookup(vl, lflags, &ino);

	if (r < 0)
		return r;
	vfs_cred(&cred);
	return vl->ops->setattr(vl->b, ino, sa, &cred);
}

static int ipx_truncate(const char *path, off_t len)
{
	struct vol_setattr sa = { .valid = VOL_SET_SIZE };
	struct vol_cred cred;
	struct ipx_vloc vl;
	struct stat st;
	vol_ino_t ino;
	int r;

	r = ipx_vlocate(AT_FDCWD, path, &vl, false);
	if (r == 0)
		return real.truncate(vl.loc.kpath, len);
	if (r == 1 && len < 0)
		r = -EINVAL;
	if (r == 1) {
		r = vp_lookup(&vl, 0, &ino);
		if (r == 0)
			r = vl.ops->getattr(vl.b, ino, &st);
		if (r == 0 && S_ISDIR(st.st_mode))
			r = -EISDIR;
		vfs_cred(&cred);
		if (r == 0)
			r = vl.ops->access(vl.b, ino, W_OK, &cred);
		sa.size = (uint64_t)len;
		if (r == 0)
			r = vl.ops->setattr(vl.b, ino, &sa, &cred);
	}
	return (int)ipx_ret(r);
}

IPX_EXPORT int truncate(const char *path, off_t len)
{
	return ipx_truncate(path, len);
}

IPX_EXPORT int truncate64(const char *path, off_t len)
{
	return ipx_truncate(path, len);
}

static int ipx_fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
	struct vol_setattr sa = { .valid = VOL_SET_MODE, .mode = mode & 07777 };
	struct ipx_vloc vl;
	int r;

	r = ipx_vlocate(dirfd, path, &vl, false);
	if (r == 0)
		return real.fchmodat(vl.loc.kdirfd, vl.loc.kpath, mode, flags);
	if (r == 1) {
		struct stat st;
		vol_ino_t ino;

		/* Linux cannot change a symbolic link's mode. */
		r = vp_lookup(&vl, flags & AT_SYMLINK_NOFOLLOW, &ino);
		if (r == 0 && (flags & AT_SYMLINK_NOFOLLOW) && vl.ops->getattr(vl.b, ino, &st) == 0 &&
		    S_ISLNK(st.st_mode))
			r = -EOPNOTSUPP;
		if (r == 0)
			r = vp_setattr(&vl, flags & AT_SYMLINK_NOFOLLOW, &sa);
	}
	return (int)ipx_ret(r);
}

IPX_EXPORT int chmod(const char *path, mode_t mode)
{
	return ipx_fchmodat(AT_FDCWD, path, mode, 0);
}

IPX_EXPORT int lchmod(const char *path, mode_t mode)
{
	return ipx_fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW);
}

IPX_EXPORT int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
	return ipx_fchmodat(dirfd, path, mode, flags);
}

static int ipx_fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags)
{
	struct vol_setattr sa = { .uid = uid, .gid = gid };
	struct ipx_vloc vl;
	int r;

	real_init();
	if ((flags & AT_EMPTY_PATH) && path != NULL && path[0] == '\0' && fdtab_peek(dirfd) != NULL)
		return fchown(dirfd, uid, gid);
	r = ipx_vlocate(dirfd, path, &vl, false);
	if (r == 0)
		return real.fchownat(vl.loc.kdirfd, vl.loc.kpath, uid, gid, flags);
	if (r == 1) {
		sa.valid = (uid != (uid_t)-1 ? VOL_SET_UID : 0) | (gid != (gid_t)-1 ? VOL_SET_GID : 0);
		r = vp_setattr(&vl, flags & AT_SYMLINK_NOFOLLOW, &sa);
	}
	return (int)ipx_ret(r);
}

IPX_EXPORT int chown(const char *path, uid_t uid, gid_t gid)
{
	return ipx_fchownat(AT_FDCWD, path, uid, gid, 0);
}

IPX_EXPORT int lchown(const char *path, uid_t uid, gid_t gid)
{
	return ipx_fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW);
}

IPX_EXPORT int fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags)
{
	return ipx_fchownat(dirfd, path, uid, gid, flags);
}

static int ipx_utimensat(int dirfd, const char *path, const struct timespec ts[2], int flags)
{
	struct vol_setattr sa;
	struct ipx_vloc vl;
	int r;

	real_init();
	/* utimensat(fd, NULL, ...) is futimens (glibc forwards it to the kernel as such). */
	if (path == NULL && fdtab_peek(dirfd) != NULL)
		return futimens(dirfd, ts);
	if (!vfs_active() || path == NULL)
		return real.utimensat(dirfd, path, ts, flags);
	r = ipx_vpath(dirfd, path, &vl, false);
	if (r == 0)
		return real.utimensat(vl.loc.kdirfd, vl.loc.kpath, ts, flags);
	if (r == 1) {
		ipx_times_to_setattr(ts, &sa);
		for (int i = 0; ts != NULL && i < 2; i++)
			if (ts[i].tv_nsec != UTIME_NOW && ts[i].tv_nsec != UTIME_OMIT &&
			    (ts[i].tv_nsec < 0 || ts[i].tv_nsec >= 1000000000))
				r = -EINVAL;
		if (r == 1) {
			vol_ino_t ino;

			r = sa.valid ? vp_setattr(&vl, flags & AT_SYMLINK_NOFOLLOW, &sa) :
				       vp_lookup(&vl, flags & AT_SYMLINK_NOFOLLOW, &ino);
		}
	}
	return (int)ipx_ret(r);
}

IPX_EXPORT int utimensat(int dirfd, const char *path, const struct timespec ts[2], int flags)
{
	return ipx_utimensat(dirfd, path, ts, flags);
}

static int ipx_utimes_at(const char *path, const struct timeval tv[2], int flags)
{
	struct timespec ts[2];

	if (tv != NULL) {
		for (int i = 0; i < 2; i++) {
			if (tv[i].tv_usec < 0 || tv[i].tv_usec >= 1000000)
				return (int)ipx_ret(-EINVAL);
			ts[i].tv_sec = tv[i].tv_sec;
			ts[i].tv_nsec = tv[i].tv_usec * 1000;
		}
	}
	return ipx_utimensat(AT_FDCWD, path, tv ? ts : NULL, flags);
}

IPX_EXPORT int utimes(const char *path, const struct timeval tv[2])
{
	return ipx_utimes_at(path, tv, 0);
}

IPX_EXPORT int lutimes(const char *path, const struct timeval tv[2])
{
	return ipx_utimes_at(path, tv, AT_SYMLINK_NOFOLLOW);
}

IPX_EXPORT int utime(const char *path, const struct utimbuf *t)
{
	struct timespec ts[2];

	if (t != NULL) {
		ts[0].tv_sec = t->actime;
		ts[0].tv_nsec = 0;
		ts[1].tv_sec = t->modtime;
		ts[1].tv_nsec = 0;
	}
	return ipx_utimensat(AT_FDCWD, path, t ? ts : NULL, 0);
}

/* For the calls that take a path relative to the cwd and need no inode:
 * 1: a volume path that exists (the caller answers from vl), 0: the kernel's
 * (at *kpath, which lives in vl), -errno. */
static int vp_resolve(const char *path, bool follow, struct ipx_vloc *vl, const char **kpath)
{
	vol_ino_t ino;
	int r;

	r = ipx_vlocate(AT_FDCWD, path, vl, false);
	if (r == 0)
		*kpath = vl->loc.kpath;
	if (r <= 0)
		return r;
	r = vp_lookup(vl, follow ? 0 : AT_SYMLINK_NOFOLLOW, &ino);
	return r < 0 ? r : 1;
}

static int ipx_statfs_path(const char *path, struct statfs *st)
{
	struct ipx_vloc vl;
	const char *kp;
	int r = vp_resolve(path, true, &vl, &kp);

	if (r == 0)
		return real.statfs(kp, st);
	if (r == 1)
		r = vl.ops->statfs(vl.b, st);
	return (int)ipx_ret(r);
}

IPX_EXPORT int statfs(const char *path, struct statfs *st)
{
	return ipx_statfs_path(path, st);
}

IPX_EXPORT int statfs64(const char *path, struct statfs64 *st)
{
	return ipx_statfs_path(path, (struct statfs *)st);
}

static int ipx_statvfs_path(const char *path, struct statvfs *st)
{
	struct ipx_vloc vl;
	struct statfs s;
	const char *kp;
	int r = vp_resolve(path, true, &vl, &kp);

	if (r == 0)
		return real.statvfs(kp, st);
	if (r == 1)
		r = vl.ops->statfs(vl.b, &s);
	if (r == 0)
		ipx_statfs_to_statvfs(&s, st);
	return (int)ipx_ret(r);
}

IPX_EXPORT int statvfs(const char *path, struct statvfs *st)
{
	return ipx_statvfs_path(path, st);
}

IPX_EXPORT int statvfs64(const char *path, struct statvfs64 *st)
{
	return ipx_statvfs_path(path, (struct statvfs *)st);
}

/* ------------------------------------------------------------------ */
/* Extended attributes by path: none on a volume. */

IPX_EXPORT ssize_t getxattr(const char *path, const char *name, void *val, size_t n)
{
	struct ipx_vloc vl;
	const char *kp;
	int r = vp_resolve(path, true, &vl, &kp);

	return r == 0 ? real.getxattr(kp, name, val, n) : ipx_ret(r < 0 ? r : -ENOTSUP);
}

IPX_EXPORT ssize_t lgetxattr(const char *path, const char *name, void *val, size_t n)
{
	struct ipx_vloc vl;
	const char *kp;
	int r = vp_resolve(path, false, &vl, &kp);

	return r == 0 ? real.lgetxattr(kp, name, val, n) : ipx_ret(r < 0 ? r : -ENOTSUP);
}

IPX_EXPORT int setxattr(const char *path, const char *name, const void *val, size_t n, int flags)
{
	struct ipx_vloc vl;
	const char *kp;
	int r = vp_resolve(path, true, &vl, &kp);

	return r == 0 ? real.setxattr(kp, name, val, n, flags) : (int)ipx_ret(r < 0 ? r : -ENOTSUP);
}

IPX_EXPORT int lsetxattr(const char *path, const char *name, const void *val, size_t n, int flags)
{
	struct ipx_vloc vl;
	const char *kp;
	int r = vp_resolve(path, false, &vl, &kp);

	return r == 0 ? real.lsetxattr(kp, name, val, n, flags) : (int)ipx_ret(r < 0 ? r : -ENOTSUP);
}

/* A volume file has an empty list. */
IPX_EXPORT ssize_t listxattr(const char *path, char *list, size_t n)
{
	struct ipx_vloc vl;
	const char *kp;
	int r = vp_resolve(path, true, &vl, &kp);

	return r == 0 ? real.listxattr(kp, list, n) : ipx_ret(r < 0 ? r : 0);
}

IPX_EXPORT ssize_t llistxattr(const char *path, char *list, size_t n)
{
	struct ipx_vloc vl;
	const char *kp;
	int r = vp_resolve(path, false, &vl, &kp);

	return r == 0 ? real.llistxattr(kp, list, n) : ipx_ret(r < 0 ? r : 0);
}

/* ------------------------------------------------------------------ */
/* The cwd */

/*
 * The physical path of a volume path (abs: normalized, under m's mount
 * point): symbolic links followed component by component, as the kernel's
 * getcwd and realpath show it.  out: PATH_MAX bytes.  Returns 0, -errno, or
 * -EXDEV when a link or ".." leads out of the volume (the caller then uses
 * the lexical path).
 */
static int vp_physical(const struct vfs_ops *ops, void *b, struct vfs_mount *m, const char *abs,
		       char *out)
{
	char rest[PATH_MAX], tmp[PATH_MAX], target[PATH_MAX];
	size_t clen = m->mlen;
	vol_ino_t dir = VOL_ROOT_INO, ino;
	struct stat st;
	int links = 0, err;
	ssize_t tl;

	memcpy(out, m->e.mount, clen + 1);
	snprintf(rest, sizeof(rest), "%s", abs + m->mlen);
	while (rest[0] != '\0') {
		char *p = rest, *c;
		size_t n;

		while (*p == '/')
			p++;
		c = p;
		while (*p != '\0' && *p != '/')
			p++;
		n = (size_t)(p - c);
		if (n == 0) {
			rest[0] = '\0';
			break;
		}
		snprintf(tmp, sizeof(tmp), "%.*s", (int)n, c);
		memmove(rest, p, strlen(p) + 1);
		if (strcmp(tmp, ".") == 0)
			continue;
		if (strcmp(tmp, "..") == 0) {
			if (clen == m->mlen)
				return -EXDEV;
			while (clen > m->mlen && out[clen - 1] != '/')
				clen--;
			clen--;
			out[clen] = '\0';
			err = ops->lookup(b, VOL_ROOT_INO, clen == m->mlen ? "/" : out + m->mlen, 0, &dir);
			if (err < 0)
				return err;
			continue;
		}
		err = ops->lookup(b, dir, tmp, AT_SYMLINK_NOFOLLOW, &ino);
		if (err == 0)
			err = ops->getattr(b, ino, &st);
		if (err < 0)
			return err;
		if (S_ISLNK(st.st_mode)) {
			if (++links > 40)
				return -ELOOP;
			tl = ops->readlink(b, ino, target, sizeof(target) - 1);
			if (tl < 0)
				return (int)tl;
			target[tl] = '\0';
			if (strlen(target) + strlen(rest) + 2 > sizeof(tmp))
				return -ENAMETOOLONG;
			if (target[0] == '/') {
				const char *in;

				if (vfs_path_normalize(NULL, target, tmp, sizeof(tmp)) < 0)
					return -ENAMETOOLONG;
				in = vfs_path_under(tmp, m->e.mount, m->mlen);
				if (in == NULL)
					return -EXDEV;
				/* rest = the target's part inside the volume + rest */
				n = strlen(in);
				memmove(rest + n, rest, strlen(rest) + 1);
				memcpy(rest, in, n);
				clen = m->mlen;
				out[clen] = '\0';
				dir = VOL_ROOT_INO;
			} else {
				/* rest = "/" + target + rest, relative to out */
				n = strlen(target);
				memmove(rest + n + 1, rest, strlen(rest) + 1);
				rest[0] = '/';
				memcpy(rest + 1, target, n);
			}
			continue;
		}
		if (clen + 1 + n + 1 > PATH_MAX)
			return -ENAMETOOLONG;
		out[clen++] = '/';
		memcpy(out + clen, tmp, n);
		clen += n;
		out[clen] = '\0';
		dir = ino;
	}
	return 0;
}

IPX_EXPORT int chdir(const char *path)
{
	struct ipx_vloc vl;
	struct vol_cred cred;
	vol_ino_t ino;
	int r;

	real_init();
	if (!vfs_active())
		return real.chdir(path);
	r = ipx_vpath(AT_FDCWD, path, &vl, true);
	if (r == 0) {
		r = real.chdir(vl.loc.kpath);
		if (r == 0)
			vfs_cwd_clear();
		return r;
	}
	if (r < 0)
		return (int)ipx_ret(r);
	if (!vl.loc.abs_ok)
		return (int)ipx_ret(-ENAMETOOLONG);
	vfs_cred(&cred);
	r = vl.ops->open(vl.b, vl.loc.dir, vl.loc.rel, O_RDONLY | O_DIRECTORY, 0, &cred, &ino);
	if (r < 0)
		return (int)ipx_ret(r);
	r = vl.ops->access(vl.b, ino, X_OK, &cred);
	if (r < 0) {
		(void)vl.ops->release(vl.b, ino);
		return (int)ipx_ret(r);
	}
	{
		char phys[PATH_MAX];

		/* getcwd shows the directory's physical path, as Linux. */
		if (vp_physical(vl.ops, vl.b, vl.loc.m, vl.loc.buf, phys) == 0)
			vfs_cwd_set(vl.loc.m, vl.gen, ino, phys);
		else
			vfs_cwd_set(vl.loc.m, vl.gen, ino, vl.loc.buf);
	}
	return 0;
}

IPX_EXPORT int fchdir(int fd)
{
	struct ipx_file *f;
	struct ipx_vfile *vf;
	int r;

	real_init();
	f = ipx_vfile_app(fd);
	if (f == IPX_VF_PRIVATE)
		return (int)ipx_ret(-EBADF);
	if (f == NULL) {
		r = real.fchdir(fd);
		if (r == 0)
			vfs_cwd_clear();
		return r;
	}
	vf = f->vf;
	r = ipx_vfile_check(vf);
	if (r == 0 && !vf->dir)
		r = -ENOTDIR;
	if (r == 0 && vf->path == NULL)
		r = -ENAMETOOLONG;
	if (r == 0)
		r = vf->ops->hold(vf->b, vf->ino);
	if (r == 0) {
		char phys[PATH_MAX];

		if (vp_physical(vf->ops, vf->b, vf->m, vf->path, phys) == 0)
			vfs_cwd_set(vf->m, vf->gen, vf->ino, phys);
		else
			vfs_cwd_set(vf->m, vf->gen, vf->ino, vf->path);
	}
	ipx_put(f);
	return (int)ipx_ret(r);
}

IPX_EXPORT char *getcwd(char *buf, size_t n)
{
	char tmp[PATH_MAX];
	int r;

	real_init();
	r = vfs_cwd_get(tmp, sizeof(tmp));
	if (r == 0)
		return real.getcwd(buf, n);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	if (buf == NULL) {
		size_t len = strlen(tmp) + 1;

		if (n != 0 && n < len) {
			errno = ERANGE;
			return NULL;
		}
		return strdup(tmp);
	}
	if (n == 0) {
		errno = EINVAL;
		return NULL;
	}
	if (strlen(tmp) + 1 > n) {
		errno = ERANGE;
		return NULL;
	}
	memcpy(buf, tmp, strlen(tmp) + 1);
	return buf;
}

IPX_EXPORT char *__getcwd_chk(char *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return getcwd(buf, n);
}

IPX_EXPORT char *get_current_dir_name(void)
{
	char tmp[PATH_MAX];

	real_init();
	if (vfs_cwd_get(tmp, sizeof(tmp)) == 1)
		return strdup(tmp);
	return real.get_current_dir_name();
}

/*
 * realpath of a volume path: symbolic links inside the volume followed
 * (vp_physical); one that leads out of the volume leaves the lexical path.
 */
IPX_EXPORT char *realpath(const char *path, char *out)
{
	struct ipx_vloc vl;
	vol_ino_t ino;
	const char *abs = NULL;
	int r;

	real_init();
	if (!vfs_active())
		return real.realpath(path, out);
	if (path == NULL) {
		errno = EINVAL;
		return NULL;
	}
	r = ipx_vpath(AT_FDCWD, path, &vl, true);
	if (r == 0)
		return real.realpath(vl.loc.kpath, out);
	char phys[PATH_MAX];

	if (r == 1) {
		r = vp_lookup(&vl, 0, &ino);
		abs = vl.loc.abs_ok ? vl.loc.buf : NULL;
		if (r == 0 && abs == NULL)
			r = -ENAMETOOLONG;
		if (r == 0) {
			int pr = vp_physical(vl.ops, vl.b, vl.loc.m, abs, phys);

			if (pr == 0)
				abs = phys;
			else if (pr != -EXDEV)
				r = pr;
		}
	}
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	if (out == NULL)
		return strdup(abs);
	snprintf(out, PATH_MAX, "%s", abs);
	return out;
}

IPX_EXPORT char *__realpath_chk(const char *path, char *out, size_t outlen)
{
	if (outlen < PATH_MAX)
		__chk_fail();
	return realpath(path, out);
}

IPX_EXPORT char *canonicalize_file_name(const char *path)
{
	return realpath(path, NULL);
}

IPX_EXPORT mode_t umask(mode_t mask)
{
	mode_t old;

	real_init();
	old = real.umask(mask);
	vfs_umask_set(mask);
	return old;
}

/* ------------------------------------------------------------------ */
/* mkstemp and friends: glibc's use its internal open, so they are redone
 * here for a template inside a volume. */

static void vp_fill_x(char *x, size_t n)
{
	static const char set[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	unsigned char rnd[16];

	if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
		struct timespec t;

		clock_gettime(CLOCK_MONOTONIC, &t);
		for (size_t i = 0; i < sizeof(rnd); i++)
			rnd[i] = (unsigned char)((t.tv_nsec >> (i % 8)) ^ (getpid() << i) ^ i * 131);
	}
	for (size_t i = 0; i < n; i++)
		x[i] = set[rnd[i % sizeof(rnd)] % (sizeof(set) - 1)];
}

/* The template's place: 1 a volume, 0 the kernel's, -errno. */
static int vp_tmpl(const char *tmpl, int slen, char **x)
{
	struct ipx_vloc vl;
	size_t len;
	int r;

	if (!vfs_active())
		return 0;
	len = strlen(tmpl);
	if (slen < 0 || len < (size_t)slen + 6 || memcmp(tmpl + len - slen - 6, "XXXXXX", 6) != 0)
		return -EINVAL;
	*x = (char *)tmpl + len - slen - 6;
	r = ipx_vpath(AT_FDCWD, tmpl, &vl, false);
	return r;
}

static int ipx_mkostemps(char *tmpl, int slen, int flags, bool is64)
{
	char *x = NULL;
	int r;

	real_init();
	r = vp_tmpl(tmpl, slen, &x);
	if (r == 0) {
		if (is64)
			return slen ? real.mkostemps64(tmpl, slen, flags) : real.mkostemp64(tmpl, flags);
		return slen ? real.mkostemps(tmpl, slen, flags) : real.mkostemp(tmpl, flags);
	}
	if (r < 0)
		return (int)ipx_ret(r);
	if (flags & ~(O_APPEND | O_CLOEXEC | O_SYNC | O_DSYNC | O_NOATIME | O_LARGEFILE | O_DIRECT))
		return (int)ipx_ret(-EINVAL);
	for (int tries = 0; tries < 100; tries++) {
		vp_fill_x(x, 6);
		r = ipx_open_any(AT_FDCWD, tmpl, O_RDWR | O_CREAT | O_EXCL | flags, 0600);
		if (r >= 0 || errno != EEXIST)
			return r;
	}
	errno = EEXIST;
	return -1;
}

IPX_EXPORT int mkstemp(char *tmpl)
{
	return ipx_mkostemps(tmpl, 0, 0, false);
}

IPX_EXPORT int mkstemp64(char *tmpl)
{
	return ipx_mkostemps(tmpl, 0, 0, true);
}

IPX_EXPORT int mkostemp(char *tmpl, int flags)
{
	return ipx_mkostemps(tmpl, 0, flags, false);
}

IPX_EXPORT int mkostemp64(char *tmpl, int flags)
{
	return ipx_mkostemps(tmpl, 0, flags, true);
}

IPX_EXPORT int mkstemps(char *tmpl, int slen)
{
	return ipx_mkostemps(tmpl, slen, 0, false);
}

IPX_EXPORT int mkstemps64(char *tmpl, int slen)
{
	return ipx_mkostemps(tmpl, slen, 0, true);
}

IPX_EXPORT int mkostemps(char *tmpl, int slen, int flags)
{
	return ipx_mkostemps(tmpl, slen, flags, false);
}

IPX_EXPORT int mkostemps64(char *tmpl, int slen, int flags)
{
	return ipx_mkostemps(tmpl, slen, flags, true);
}

IPX_EXPORT char *mkdtemp(char *tmpl)
{
	char *x = NULL;
	int r;

	real_init();
	r = vp_tmpl(tmpl, 0, &x);
	if (r == 0)
		return real.mkdtemp(tmpl);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	for (int tries = 0; tries < 100; tries++) {
		vp_fill_x(x, 6);
		if (mkdir(tmpl, 0700) == 0)
			return tmpl;
		if (errno != EEXIST)
			return NULL;
	}
	errno = EEXIST;
	return NULL;
}
