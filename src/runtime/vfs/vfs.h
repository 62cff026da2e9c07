/* Storage backends of the runtime's file layer: the same operations served in-process (direct) or by libretto-fsd (indirect). */
#ifndef LIBRETTO_VFS_H
#define LIBRETTO_VFS_H

/*
 * The interposed file calls (ipx_file.c) resolve a path under a volume's
 * mount point, then call one of these.  Every operation has exactly the
 * meaning, arguments and return convention of the vol.h function of the
 * same name, with the backend b in place of the struct vol *: the direct
 * backend (vfs_direct.c) is vol.h itself; the indirect one (vfs_fsd.c)
 * ships each call to libretto-fsd over the volume session's rings and
 * returns fsd's answer (retrying it across an fsd restart).
 *
 * Who calls: only the file layer, never with a runtime lock held (an
 * indirect call sleeps until fsd answers).
 */

#include "vol/vol.h"

struct vfs_ops {
	const char *name;	/* "direct" or "indirect", for messages */
	int (*sync)(void *b, bool durable);
	int (*lookup)(void *b, vol_ino_t dir, const char *path, int flags, vol_ino_t *ino);
	int (*open)(void *b, vol_ino_t dir, const char *path, int oflags, mode_t mode,
		    const struct vol_cred *cred, vol_ino_t *ino);
	int (*hold)(void *b, vol_ino_t ino);
	int (*release)(void *b, vol_ino_t ino);
	ssize_t (*pread)(void *b, vol_ino_t ino, void *buf, size_t n, uint64_t off);
	ssize_t (*pwrite)(void *b, vol_ino_t ino, const void *buf, size_t n, uint64_t off,
			  unsigned flags, uint64_t *end);
	int (*getattr)(void *b, vol_ino_t ino, struct stat *st);
	int (*setattr)(void *b, vol_ino_t ino, const struct vol_setattr *sa, const struct vol_cred *cred);
	int (*access)(void *b, vol_ino_t ino, int mask, const struct vol_cred *cred);
	int (*fsync)(void *b, vol_ino_t ino, bool datasync);
	ssize_t (*readdir)(void *b, vol_ino_t dir, uint64_t *cookie, void *buf, size_t n);
	int (*mkdir)(void *b, vol_ino_t dir, const char *path, mode_t mode, const struct vol_cred *cred);
	int (*unlink)(void *b, vol_ino_t dir, const char *path, int flags, const struct vol_cred *cred);
	int (*rename)(void *b, vol_ino_t odir, const char *opath, vol_ino_t ndir, const char *npath,
		      unsigned flags, const struct vol_cred *cred);
	int (*link)(void *b, vol_ino_t ino, vol_ino_t ndir, const char *npath, const struct vol_cred *cred);
	int (*symlink)(void *b, const char *target, vol_ino_t dir, const char *path, const struct vol_cred *cred);
	ssize_t (*readlink)(void *b, vol_ino_t ino, char *buf, size_t n);
	int (*statfs)(void *b, struct statfs *st);
	int (*fallocate)(void *b, vol_ino_t ino, int mode, uint64_t off, uint64_t len);
	int64_t (*seek_data)(void *b, vol_ino_t ino, uint64_t off, int whence);
	int (*lock)(void *b, vol_ino_t ino, uint64_t owner, int cmd, struct flock *fl);
	int (*unlock_owner)(void *b, vol_ino_t ino, uint64_t owner);
	/* The process is about to exec or exit: commit (direct) / nothing pending (indirect), then let go of the volume. */
	int (*detach)(void *b);
};

/* In-process ext4 (vfs_direct.c).  attach: b is the struct vol * mounted on the image descriptor. */
extern const struct vfs_ops vfs_direct_ops;
int vfs_direct_attach(int image_fd, const char *mountpoint, void **b);

/*
 * libretto-fsd (vfs_fsd.c).  attach: entry is the volume's record from
 * LIBRETTO_VOLUMES (docs/storage.md "Environment"), its storage=indirect
 * keys naming the session's descriptors; returns -errno with a message on
 * stderr when they are unusable.
 */
extern const struct vfs_ops vfs_fsd_ops;
int vfs_fsd_attach(const char *entry, void **b);

#endif
