/* The volume: an ext4 file system on an image, run in-process over libext2fs with a jbd2 journal of our own. */
#ifndef LIBRETTO_VOL_H
#define LIBRETTO_VOL_H

/*
 * One implementation serves both storage modes: the runtime links it into
 * the application (direct mode, docs/storage.md) and libretto-fsd links it
 * into the storage server (indirect mode).  Nothing here knows about
 * descriptors, offsets of open files, the mount point's place in the
 * caller's name space or processes: the caller keeps those.
 *
 * Contract shared by every function:
 *   - returns 0 (or a byte count) on success, -errno on failure, with the
 *     errno Linux's ext4 would give for the same call;
 *   - thread safe: one mutex per volume serializes the operations;
 *   - never prints except through vol_log (stderr, "libretto: " prefix);
 *   - never exits or aborts.
 *
 * Inodes are named by their number (vol_ino_t).  A name-based call takes a
 * directory inode and a path relative to it (like openat): an absolute
 * path starts at the volume's root.  Paths are resolved inside the volume:
 * ".." at the root stays at the root (the caller maps paths that leave the
 * mount point before calling), symbolic links with relative targets are
 * followed inside the volume, and a symbolic link whose absolute target
 * starts with the mount point given to vol_mount continues at the root;
 * any other absolute target gives -EXDEV (the caller may then hand the
 * rest of the path to the kernel; docs/storage.md "Limitations").
 *
 * Durability (docs/storage.md "Journal"): metadata changes are collected
 * in memory and written as one jbd2 transaction to the ext4 journal at a
 * commit, then checkpointed to their home blocks.  File data is written to
 * its home blocks before the commit that makes it reachable (ext4's
 * data=ordered).  A commit happens at vol_fsync/vol_sync, every 5 s
 * (vol_tick), when the running transaction grows too big, and at
 * vol_unmount.  After a crash, e2fsck (or the next vol_mount) replays the
 * last committed transaction: every operation that completed before the
 * last commit is there, file system metadata is consistent.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <fcntl.h>

struct vol;
typedef uint32_t vol_ino_t;

#define VOL_ROOT_INO 2

/* vol_mount flags */
#define VOL_RDONLY	0x1	/* no writes to the image at all (no replay either: -EROFS if it needs one) */
#define VOL_NO_TICK	0x2	/* no 5 s commit timer thread: the caller calls vol_tick itself (fsd) */

/* The caller's identity for permission checks and new inodes' owners. */
struct vol_cred {
	uint32_t uid, gid;
	uint32_t ngroups;
	uint32_t groups[16];
};

/*
 * Open the ext4 file system on image_fd (read-write unless VOL_RDONLY; the
 * volume dups the descriptor, the caller may close its own).  Replays the
 * journal first when it holds a committed transaction, releases the orphan
 * inodes of a crashed run, and marks the file system in use (needs_recovery)
 * until vol_unmount.  mountpoint is the absolute path the caller shows the
 * volume at (for absolute symbolic links, and the superblock's "last mounted
 * on").  Errors: -EINVAL not an ext4 image we support (block size other than
 * 4096, inline_data, a journal we cannot write; error text through vol_log),
 * -EUCLEAN the file system has errors (run e2fsck), -EIO, -ENOMEM.
 */
int vol_mount(int image_fd, const char *mountpoint, unsigned flags, struct vol **out);

/* Commit, checkpoint, mark the file system clean (e2fsck -fn finds nothing), free. */
int vol_unmount(struct vol *v);

/* Commit the running transaction; durable: and fdatasync the image. */
int vol_sync(struct vol *v, bool durable);

/* Commit when the running transaction is older than 5 s.  Cheap otherwise. */
int vol_tick(struct vol *v);

/*
 * Journal sequence numbers, for libretto-fsd's exactly-once answers across
 * its own crash (include/libretto/fsd.h).  vol_running_seq(): the sequence
 * (jbd2 tid) of the transaction that collects changes now: every change of
 * an operation that has returned is in a transaction with a sequence <= it
 * (while that transaction holds no change yet, the committed sequence: all
 * is committed; vol_sync then commits nothing).
 * vol_committed_seq(): the sequence of the last transaction known committed
 * to the journal, including, right after vol_mount, the last one found in
 * (or replayed from) the journal; after vol_sync returns 0 it is >= the
 * running sequence read before that call.  Sequences only grow across
 * mounts of the same image.  0 from both: the volume cannot tell (fsd then
 * runs an unanswered request again).  (Added by H3 for fsd; tag v3.)
 */
uint64_t vol_running_seq(struct vol *v);
uint64_t vol_committed_seq(struct vol *v);

/* Generation of an inode (for handles that must outlive a server restart: -ESTALE when it changed). */
int vol_generation(struct vol *v, vol_ino_t ino, uint32_t *gen);

/* Resolve path (flags: AT_SYMLINK_NOFOLLOW for the last component, AT_EMPTY_PATH). */
int vol_lookup(struct vol *v, vol_ino_t dir, const char *path, int flags, vol_ino_t *ino);

/*
 * open(2) inside the volume: oflags as open(2) (O_CREAT, O_EXCL, O_TRUNC,
 * O_DIRECTORY, O_NOFOLLOW, O_PATH, access mode; O_APPEND, O_NONBLOCK,
 * O_CLOEXEC are the caller's and ignored here; O_TMPFILE: -EOPNOTSUPP).
 * mode: for a new file, already masked by the caller's umask.  On success
 * *ino holds an open reference, dropped by vol_release: an inode unlinked
 * while referenced lives (on the orphan list, as ext4 does) until its last
 * release.
 */
int vol_open(struct vol *v, vol_ino_t dir, const char *path, int oflags, mode_t mode,
	     const struct vol_cred *cred, vol_ino_t *ino);

/* Take one more open reference on ino (dup across processes, fsd handle re-adoption). */
int vol_hold(struct vol *v, vol_ino_t ino);

/* Drop an open reference; frees an unlinked inode with its last one. */
int vol_release(struct vol *v, vol_ino_t ino);

/* Read at off; short only at end of file.  Directories: -EISDIR. */
ssize_t vol_pread(struct vol *v, vol_ino_t ino, void *buf, size_t n, uint64_t off);

/*
 * Write at off, or at the end of file when flags has VOL_APPEND (atomic
 * with respect to every other call on the volume).  *end (may be NULL)
 * receives the offset after the last byte written.  Files grow to 16 TiB
 * (-EFBIG beyond), -ENOSPC when blocks run out (bytes written before that
 * are kept and counted, as Linux does).
 */
#define VOL_APPEND 0x1
ssize_t vol_pwrite(struct vol *v, vol_ino_t ino, const void *buf, size_t n, uint64_t off,
		   unsigned flags, uint64_t *end);

/* stat: st_dev is the volume's (a stable made-up device number), st_blocks in 512 B units. */
int vol_getattr(struct vol *v, vol_ino_t ino, struct stat *st);

/* chmod/chown/truncate/utimens in one call; fields used as valid says. */
#define VOL_SET_MODE	0x01
#define VOL_SET_UID	0x02
#define VOL_SET_GID	0x04
#define VOL_SET_SIZE	0x08
#define VOL_SET_ATIME	0x10	/* atime as given (UTIME_NOW resolved by the caller) */
#define VOL_SET_MTIME	0x20
#define VOL_SET_FD	0x40	/* ftruncate: the caller checked the open file's write mode; no W check on the inode */
struct vol_setattr {
	unsigned valid;
	mode_t mode;		/* permission bits only */
	uint32_t uid, gid;
	uint64_t size;
	struct timespec atime, mtime;
};
int vol_setattr(struct vol *v, vol_ino_t ino, const struct vol_setattr *sa, const struct vol_cred *cred);

/* Permission check, access(2) style (mask of R_OK W_OK X_OK, F_OK = 0). */
int vol_access(struct vol *v, vol_ino_t ino, int mask, const struct vol_cred *cred);

/* fsync/fdatasync: commits the running transaction and makes it and ino's data durable. */
int vol_fsync(struct vol *v, vol_ino_t ino, bool datasync);

/*
 * getdents64: fill buf with struct linux_dirent64 records (d_off is the
 * cookie to continue after that entry) starting at *cookie (0: the start;
 * "." and ".." come first), and advance *cookie.  Returns the bytes
 * filled, 0 at the end, -EINVAL when buf cannot hold the next record,
 * -ENOTDIR.
 */
ssize_t vol_readdir(struct vol *v, vol_ino_t dir, uint64_t *cookie, void *buf, size_t n);

int vol_mkdir(struct vol *v, vol_ino_t dir, const char *path, mode_t mode, const struct vol_cred *cred);
/* unlinkat: flags 0 or AT_REMOVEDIR */
int vol_unlink(struct vol *v, vol_ino_t dir, const char *path, int flags, const struct vol_cred *cred);
/* renameat2: flags 0, RENAME_NOREPLACE or RENAME_EXCHANGE; atomic: a crash leaves the old or the new state */
int vol_rename(struct vol *v, vol_ino_t odir, const char *opath, vol_ino_t ndir, const char *npath,
	       unsigned flags, const struct vol_cred *cred);
/* link(2): a new name for ino (not a directory: -EPERM) */
int vol_link(struct vol *v, vol_ino_t ino, vol_ino_t ndir, const char *npath, const struct vol_cred *cred);
int vol_symlink(struct vol *v, const char *target, vol_ino_t dir, const char *path, const struct vol_cred *cred);
/* readlink of ino (a symbolic link, else -EINVAL); not NUL terminated, truncated to n */
ssize_t vol_readlink(struct vol *v, vol_ino_t ino, char *buf, size_t n);
/* mknod for FIFOs and sockets is -EPERM for now; regular files go through vol_open */
int vol_statfs(struct vol *v, struct statfs *st);
/*
 * fallocate(2) with ext4's semantics and errnos: mode 0 and
 * FALLOC_FL_KEEP_SIZE allocate unwritten blocks (read as zeros);
 * FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE frees the whole blocks of the
 * range and zeroes the parts of partial blocks (nothing at or past the end
 * of file; the size never changes); FALLOC_FL_ZERO_RANGE (with or without
 * KEEP_SIZE) makes the range read as zeros with all its blocks allocated,
 * growing the file unless KEEP_SIZE.  -EINVAL len 0; -EOPNOTSUPP
 * PUNCH_HOLE without KEEP_SIZE, PUNCH_HOLE with ZERO_RANGE, any other mode
 * bit (COLLAPSE_RANGE, INSERT_RANGE, UNSHARE_RANGE are not implemented);
 * -EFBIG past 16 TiB; -EISDIR; -ENODEV not a regular file; -ENOSPC.
 */
int vol_fallocate(struct vol *v, vol_ino_t ino, int mode, uint64_t off, uint64_t len);
/* lseek SEEK_DATA / SEEK_HOLE from off (whence one of those); -ENXIO past the end */
int64_t vol_seek_data(struct vol *v, vol_ino_t ino, uint64_t off, int whence);

/*
 * fcntl record locks, never blocking: cmd F_SETLK (F_SETLKW is the
 * caller's retry loop), F_GETLK; owner names the lock owner (a process for
 * POSIX locks, an open file description for OFD locks) and is opaque here.
 * Conflicts: -EAGAIN.  vol_unlock_owner drops every lock of owner on ino
 * (ino 0: on every inode).
 */
int vol_lock(struct vol *v, vol_ino_t ino, uint64_t owner, int cmd, struct flock *fl);
int vol_unlock_owner(struct vol *v, vol_ino_t ino, uint64_t owner);

/* Diagnostics: "libretto: vol: " + text on stderr. */
void vol_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
