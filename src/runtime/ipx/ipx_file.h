/* Volume files inside the interposition layer: the IPX_VFILE open file description and the helpers its wrappers share. */
#ifndef LIBRETTO_IPX_FILE_H
#define LIBRETTO_IPX_FILE_H

/*
 * A volume file or directory is named by a real descriptor number: a
 * dup of an O_PATH descriptor of the image (of "/" for an indirect volume
 * without an image path), with the program's O_CLOEXEC.  A call that
 * escapes interposition therefore fails with EBADF instead of touching
 * another file.  Its fd table slot names an ipx_file of kind IPX_VFILE
 * whose vf is the open file description below, shared by dup()s.
 *
 * Backend calls are made with no runtime lock held (an indirect backend
 * sleeps until libretto-fsd answers), except vf->lock, which serializes
 * the users of one file offset, as Linux's f_pos lock does.
 */

#include <stdint.h>

#include "ipx/ipx.h"
#include "vfs/vfs_mount.h"

/* A file offset shared by the processes and images that share one
 * description (fork, exec): ipx_file.c "Shared offsets". */
struct ipx_vpos;

struct ipx_vfile {
	struct vfs_mount *m;
	const struct vfs_ops *ops;
	void *b;
	unsigned gen;		/* the mount generation the file was opened in */
	vol_ino_t ino;		/* holds an open reference (released at free) */
	bool dir;
	pthread_mutex_t lock;	/* off, cookie, flags */
	uint64_t off;		/* the offset when pos is NULL (use vf_off_get/vf_off_set) */
	struct ipx_vpos *pos;	/* indirect storage: the shared offset, or NULL */
	uint64_t cookie;	/* directories: the readdir position */
	int flags;		/* O_ACCMODE, O_APPEND, O_NONBLOCK, O_PATH, O_DIRECT, O_NOATIME */
	char *path;		/* absolute path at open (dirfd "..", fchdir), or NULL */
	atomic_bool ofd_locked;	/* OFD or flock locks were taken through it */
	/* Its OFD lock owner (flock's: | 1): unique among the processes that
	 * share an indirect session, and kept by a forked child, which shares
	 * the description (see vf_owner_new). */
	uint64_t lk_owner;
	/* Every live description, for fork and exit (ipx_file.c vf_all). */
	struct ipx_vfile *all_next, *all_prev;
	/* fork: prepare took the child's open reference (indirect storage). */
	bool fork_held;
	/* Exit or exec gave its open reference back already (under vf_all's lock). */
	bool given_back;
};

/* A volume location resolved for a call: the backend to use. */
struct ipx_vloc {
	struct vfs_loc loc;
	const struct vfs_ops *ops;
	void *b;
	unsigned gen;
};

/*
 * Resolve (dirfd, path) for a path call.  Returns 1 (a volume: vl ready,
 * its backend attached), 0 (the kernel's: call it with vl->loc.kdirfd and
 * vl->loc.kpath), or -errno.  want_abs: also compute the absolute path
 * into vl->loc.buf (open, chdir).
 */
int ipx_vpath(int dirfd, const char *path, struct ipx_vloc *vl, bool want_abs);

/*
 * ipx_vpath() for the wrappers that go straight to the kernel while no
 * volume is mounted: then 0, with vl->loc.kdirfd and kpath set to dirfd and
 * path.  Also initialises the real-function table.
 */
int ipx_vlocate(int dirfd, const char *path, struct ipx_vloc *vl, bool want_abs);

/* The volume file at fd, pinned, or NULL (a kernel descriptor, or one of
 * the runtime's private descriptors). */
struct ipx_file *ipx_vfile_get(int fd);

/*
 * For the wrappers of the program's calls: ipx_vfile_get(), except that a
 * runtime-private descriptor gives IPX_VF_PRIVATE (not pinned) unless the
 * runtime itself is calling (ipx_rt_enter): the wrapper then fails with
 * EBADF, as if the number were closed.
 */
#define IPX_VF_PRIVATE (&ipx_private)
struct ipx_file *ipx_vfile_app(int fd);

/* The backend may still be used by this file: 0, else -EIO. */
int ipx_vfile_check(struct ipx_vfile *vf);

/*
 * open(2) of a volume location: the descriptor number or -errno.  The
 * open family, opendir, fopen and mkstemp all come here.
 */
int ipx_vfile_open(struct ipx_vloc *vl, int flags, mode_t mode);

/* Open (dirfd, path): the kernel's or a volume's; fd or -1 with errno. */
int ipx_open_any(int dirfd, const char *path, int flags, mode_t mode);

/* pread/pwrite on a volume file at off (-1: at the file offset, updated). */
ssize_t ipx_vfile_prw(struct ipx_vfile *vf, const struct iovec *iov, int cnt, int64_t off, bool wr);

/* The file's attributes. */
int ipx_vfile_stat(struct ipx_vfile *vf, struct stat *st);

/* struct stat -> struct statx (mask: the basic stats). */
void ipx_stat_to_statx(const struct stat *st, struct statx *stx);

/* utimensat's times -> a setattr (UTIME_NOW/OMIT resolved). */
void ipx_times_to_setattr(const struct timespec ts[2], struct vol_setattr *sa);

/* Our FILE streams (ipx_file_stdio.c): flushed at exit and before exec. */
void ipx_vfile_flush_all(void);
/* exec hand-over: a standard descriptor adopted as a volume file gets a stream of ours (ipx_file_stdio.c). */
void ipx_vfile_std_stream(int fd, int flags);
/* fork(): the child's copy of the stream list lock is made usable (ipx_file_stdio.c). */
void ipx_vfile_stdio_fork_child(void);

#endif
