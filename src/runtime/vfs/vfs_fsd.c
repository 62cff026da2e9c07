/* The indirect storage backend: each file operation is a request to libretto-fsd in a slot of the session's shared region (include/libretto/fsd.h). */
#include "runtime/vfs/vfs.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "libretto/fsd.h"

/*
 * How long a call waits for an answer before it gives up with -EIO.  While
 * fsd is replaced after a crash the request simply waits in its slot (the
 * new fsd answers it); this bound is for an fsd that never comes back.  A
 * slot given up on is reclaimed by a later call once fsd answers it.
 */
#define FSD_CALL_GIVEUP_S 120
/* The client rings the doorbell again at every wait timeout (lost ring, new fsd). */
#define FSD_CALL_WAIT_MS 1000
/* Warn once per process when a call has waited this long. */
#define FSD_CALL_WARN_S 5

struct vfs_fsd {
	void *rg;
	int bell_fd;
	uint64_t session;
	char mount[256];
	_Atomic uint64_t next_id;
	uint32_t token;          /* per process image: tells an exec'd image's stale slots apart */
	atomic_bool warned;
};

/* The runtime's own descriptors are used with raw system calls, never through the wrappers. */
static void ring(struct vfs_fsd *f)
{
	uint64_t one = 1;

	(void)syscall(SYS_write, f->bell_fd, &one, sizeof(one));
}

static uint64_t my_tag(struct vfs_fsd *f)
{
	return ((uint64_t)(uint32_t)getpid() << 32) | f->token;
}

static bool tag_is_stale(struct vfs_fsd *f, uint64_t tag)
{
	pid_t pid = (pid_t)(tag >> 32);
	int saved = errno;
	bool gone;

	if (pid == getpid())
		return (uint32_t)tag != f->token;   /* posted by the image before an exec */
	gone = pid > 0 && kill(pid, 0) < 0 && errno == ESRCH;
	errno = saved;
	return gone;
}

/*
 * Claim a free slot.  When all are busy, a DONE slot whose poster is gone
 * (a dead process, or this process before exec) is taken back; else wait
 * for one, briefly sleeping (every slot busy means 32 calls in flight).
 */
static int claim(struct vfs_fsd *f, unsigned *out)
{
	struct timespec nap = { 0, 100000 };
	time_t start = time(NULL);

	for (;;) {
		for (unsigned i = 0; i < FSD_SLOTS; i++) {
			struct fsd_slot *s = fsd_slot_at(f->rg, i);
			uint32_t want = FSD_SLOT_FREE;

			if (__atomic_compare_exchange_n(&s->state, &want, FSD_SLOT_CLAIMED, false,
							__ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
				*out = i;
				return 0;
			}
		}
		for (unsigned i = 0; i < FSD_SLOTS; i++) {
			struct fsd_slot *s = fsd_slot_at(f->rg, i);
			uint32_t want = FSD_SLOT_DONE;

			if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == FSD_SLOT_DONE &&
			    tag_is_stale(f, __atomic_load_n(&s->owner_tag, __ATOMIC_RELAXED)) &&
			    __atomic_compare_exchange_n(&s->state, &want, FSD_SLOT_CLAIMED, false,
							__ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
				*out = i;
				return 0;
			}
		}
		if (time(NULL) - start > FSD_CALL_GIVEUP_S)
			return -EIO;
		nanosleep(&nap, NULL);
	}
}

static void release_slot(struct fsd_slot *s)
{
	__atomic_store_n(&s->state, FSD_SLOT_FREE, __ATOMIC_RELEASE);
}

/*
 * Post the filled slot i, ring, and wait for fsd's answer.  Returns the
 * slot's ret (its results stay in the slot for the caller, who then calls
 * release_slot()), or -EIO when no fsd answered for FSD_CALL_GIVEUP_S (the
 * slot then stays with fsd and is reclaimed later; the caller must not
 * release it: call() returns with *abandoned set).
 */
static int64_t call(struct vfs_fsd *f, unsigned i, bool *abandoned)
{
	struct fsd_slot *s = fsd_slot_at(f->rg, i);
	struct timespec to = { FSD_CALL_WAIT_MS / 1000, (FSD_CALL_WAIT_MS % 1000) * 1000000L };
	time_t start = 0;
	int saved_errno = errno;

	*abandoned = false;
	/* Unique within the session even across fork: the pid above a counter. */
	s->id = ((uint64_t)(uint32_t)getpid() << 40) |
		(atomic_fetch_add(&f->next_id, 1) & ((1ull << 40) - 1));
	s->owner_tag = my_tag(f);
	/* Pairs with fsd's acquire load of state: the request before POSTED. */
	__atomic_store_n(&s->state, FSD_SLOT_POSTED, __ATOMIC_RELEASE);
	ring(f);
	for (;;) {
		uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);

		if (st == FSD_SLOT_DONE)
			break;
		if (st != FSD_SLOT_POSTED) {
			/* Somebody rewrote our slot (a bug of the program, or of ours). */
			*abandoned = true;
			return -EIO;
		}
		/* Shared futex (no FUTEX_PRIVATE_FLAG): fsd, another process, wakes us. */
		if (syscall(SYS_futex, &s->state, FUTEX_WAIT, FSD_SLOT_POSTED, &to, NULL, 0) < 0 &&
		    errno == ETIMEDOUT) {
			if (start == 0)
				start = time(NULL);
			if (time(NULL) - start >= FSD_CALL_WARN_S && !atomic_exchange(&f->warned, true))
				fprintf(stderr, "libretto: volume %s: libretto-fsd has not answered for "
					"%d s (restarting?); waiting up to %d s\n", f->mount,
					FSD_CALL_WARN_S, FSD_CALL_GIVEUP_S);
			if (time(NULL) - start > FSD_CALL_GIVEUP_S) {
				fprintf(stderr, "libretto: volume %s: libretto-fsd did not answer for "
					"%d s: I/O error\n", f->mount, FSD_CALL_GIVEUP_S);
				*abandoned = true;
				return -EIO;
			}
			/* A new fsd scans every slot when it adopts; ringing again is cheap. */
			ring(f);
		}
	}
	/* FUTEX_WAIT fails with EAGAIN when fsd answered first: no trace of it
	 * may reach the program (a successful call leaves errno alone). */
	errno = saved_errno;
	return s->ret;
}

/* A slot for one request: claimed, zeroed, op set.  NULL with *err on failure. */
static struct fsd_slot *begin(struct vfs_fsd *f, uint32_t op, unsigned *i, int *err)
{
	struct fsd_slot *s;

	*err = claim(f, i);
	if (*err)
		return NULL;
	s = fsd_slot_at(f->rg, *i);
	memset((char *)s + sizeof(s->state), 0, sizeof(*s) - sizeof(s->state));
	s->op = op;
	return s;
}

/* Run the request in slot i; results stay readable until end(). */
static int64_t run(struct vfs_fsd *f, unsigned i, bool *abandoned)
{
	return call(f, i, abandoned);
}

static void end(struct vfs_fsd *f, unsigned i, bool abandoned)
{
	if (!abandoned)
		release_slot(fsd_slot_at(f->rg, i));
}

/* Place the path(s) in the slot's data area.  -ENAMETOOLONG past FSD_PATH_MAX. */
static int put_paths(struct vfs_fsd *f, unsigned i, const char *p1, const char *p2)
{
	struct fsd_slot *s = fsd_slot_at(f->rg, i);
	uint8_t *d = fsd_data_at(f->rg, i);
	size_t l1 = strlen(p1), l2 = p2 ? strlen(p2) : 0;

	if (l1 >= FSD_PATH_MAX || l2 >= FSD_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(d, p1, l1 + 1);
	s->path_len = (uint32_t)l1;
	if (p2) {
		memcpy(d + l1 + 1, p2, l2 + 1);
		s->path2_len = (uint32_t)l2;
	}
	return 0;
}

/*
 * The caller's credentials go with every request that takes them: fsd
 * checks them against what the session's process could become (a server
 * that drops root gets the rights of the user it became, and its new files
 * are that user's).  NULL: fsd uses the session's.
 */
static void put_cred(struct vfs_fsd *f, unsigned i, const struct vol_cred *cred)
{
	struct fsd_slot *s = fsd_slot_at(f->rg, i);
	struct fsd_wire_cred w = { 0 };

	if (!cred)
		return;
	w.uid = cred->uid;
	w.gid = cred->gid;
	w.ngroups = cred->ngroups < 16 ? cred->ngroups : 16;
	memcpy(w.groups, cred->groups, w.ngroups * sizeof(w.groups[0]));
	memcpy(fsd_data_at(f->rg, i) + FSD_CRED_OFF, &w, sizeof(w));
	s->xflags |= FSD_XF_CRED;
}

/* The common shape: claim, fill (fill may fail), run, copy results out, release. */
#define CALL_BEGIN(op)                                                     \
	struct vfs_fsd *f = b;                                             \
	unsigned i;                                                        \
	int err_;                                                          \
	bool ab_;                                                          \
	int64_t ret_;                                                      \
	struct fsd_slot *s = begin(f, (op), &i, &err_);                    \
	if (!s)                                                            \
		return err_;

#define CALL_RUN() (ret_ = run(f, i, &ab_))
#define CALL_END() end(f, i, ab_)

static int fsd_sync(void *b, bool durable)
{
	CALL_BEGIN(FSD_OP_SYNC);
	s->flags = durable;
	CALL_RUN();
	CALL_END();
	return (int)ret_;
}

/*
 * What a request that names paths carries.  The slot starts zeroed, so a
 * field an op does not use stays 0 as it would when filled by hand.
 */
struct path_req {
	uint32_t op;
	vol_ino_t ino, ino2;
	int32_t flags;
	uint32_t mode;
	const char *p1, *p2;
	const struct vol_cred *cred;	/* NULL: fsd uses the session's */
};

/* The ops that name paths: fill, run, and return r0 in *ino when asked. */
static int path_call(void *b, const struct path_req *rq, vol_ino_t *ino)
{
	CALL_BEGIN(rq->op);
	put_cred(f, i, rq->cred);
	s->ino = rq->ino;
	s->ino2 = rq->ino2;
	s->flags = rq->flags;
	s->mode = rq->mode;
	if ((err_ = put_paths(f, i, rq->p1, rq->p2))) {
		release_slot(s);
		return err_;
	}
	CALL_RUN();
	if (ret_ == 0 && ino)
		*ino = (vol_ino_t)s->r0;
	CALL_END();
	return (int)ret_;
}

static int fsd_lookup(void *b, vol_ino_t dir, const char *path, int flags, vol_ino_t *ino)
{
	struct path_req rq = { .op = FSD_OP_LOOKUP, .ino = dir, .flags = flags, .p1 = path };

	return path_call(b, &rq, ino);
}

static int fsd_open(void *b, vol_ino_t dir, const char *path, int oflags, mode_t mode,
		    const struct vol_cred *cred, vol_ino_t *ino)
{
	struct path_req rq = { .op = FSD_OP_OPEN, .ino = dir, .flags = oflags, .mode = mode,
			       .p1 = path, .cred = cred };

	return path_call(b, &rq, ino);
}

static int fsd_ino_op(void *b, uint32_t op, vol_ino_t ino)
{
	CALL_BEGIN(op);
	s->ino = ino;
	CALL_RUN();
	CALL_END();
	return (int)ret_;
}

static int fsd_hold(void *b, vol_ino_t ino)
{
	return fsd_ino_op(b, FSD_OP_HOLD, ino);
}

static int fsd_release(void *b, vol_ino_t ino)
{
	return fsd_ino_op(b, FSD_OP_RELEASE, ino);
}

/* One piece of a read, at most FSD_SLOT_DATA bytes. */
static ssize_t pread_piece(void *b, vol_ino_t ino, void *buf, size_t n, uint64_t off)
{
	CALL_BEGIN(FSD_OP_PREAD);
	s->ino = ino;
	s->off = off;
	s->len = n;
	CALL_RUN();
	if (ret_ > 0) {
		if ((uint64_t)ret_ > n)
			ret_ = (int64_t)n;   /* never trust a length further than our buffer */
		memcpy(buf, fsd_data_at(f->rg, i), (size_t)ret_);
	}
	CALL_END();
	return (ssize_t)ret_;
}

static ssize_t fsd_pread(void *b, vol_ino_t ino, void *buf, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		size_t piece = n - done < FSD_SLOT_DATA ? n - done : FSD_SLOT_DATA;
		ssize_t r = pread_piece(b, ino, (char *)buf + done, piece, off + done);

		if (r < 0)
			return done ? (ssize_t)done : r;
		done += (size_t)r;
		if ((size_t)r < piece)
			break;
	}
	return (ssize_t)done;
}

static ssize_t pwrite_piece(void *b, vol_ino_t ino, const void *buf, size_t n,
			    uint64_t off, unsigned flags, uint64_t *end_out)
{
	CALL_BEGIN(FSD_OP_PWRITE);
	s->ino = ino;
	s->off = off;
	s->len = n;
	s->flags = (int32_t)flags;
	memcpy(fsd_data_at(f->rg, i), buf, n);
	CALL_RUN();
	if (ret_ > (int64_t)n)
		ret_ = (int64_t)n;
	if (ret_ >= 0 && end_out)
		*end_out = s->r0;
	CALL_END();
	return (ssize_t)ret_;
}

/*
 * Writes larger than a slot's data area go in pieces, each atomic on its
 * own.  An append (VOL_APPEND) is one piece at most: a longer one returns
 * a short count (FSD_SLOT_DATA bytes), because pieces of an append could
 * otherwise interleave with another writer's appends; callers that loop
 * on short writes (stdio, most programs) append the rest.
 */
static ssize_t fsd_pwrite(void *b, vol_ino_t ino, const void *buf, size_t n, uint64_t off,
			  unsigned flags, uint64_t *end_out)
{
	size_t done = 0;
	uint64_t e = off;

	if (flags & VOL_APPEND) {
		size_t piece = n < FSD_SLOT_DATA ? n : FSD_SLOT_DATA;

		return pwrite_piece(b, ino, buf, piece, off, flags, end_out);
	}
	do {
		size_t piece = n - done < FSD_SLOT_DATA ? n - done : FSD_SLOT_DATA;
		ssize_t r = pwrite_piece(b, ino, (const char *)buf + done, piece, off + done, 0, &e);

		if (r < 0) {
			if (done == 0)
				return r;
			break;
		}
		done += (size_t)r;
		if ((size_t)r < piece)
			break;
	} while (done < n);
	if (end_out)
		*end_out = off + done;
	return (ssize_t)done;
}

static int fsd_getattr(void *b, vol_ino_t ino, struct stat *st)
{
	CALL_BEGIN(FSD_OP_GETATTR);
	s->ino = ino;
	CALL_RUN();
	if (ret_ == 0)
		memcpy(st, fsd_data_at(f->rg, i), sizeof(*st));
	CALL_END();
	return (int)ret_;
}

static int fsd_setattr(void *b, vol_ino_t ino, const struct vol_setattr *sa,
		       const struct vol_cred *cred)
{
	CALL_BEGIN(FSD_OP_SETATTR);
	put_cred(f, i, cred);
	s->ino = ino;
	s->attr.valid = sa->valid;
	s->attr.mode = sa->mode & 07777;
	s->attr.uid = sa->uid;
	s->attr.gid = sa->gid;
	s->attr.size = sa->size;
	s->attr.atime_sec = sa->atime.tv_sec;
	s->attr.atime_nsec = sa->atime.tv_nsec;
	s->attr.mtime_sec = sa->mtime.tv_sec;
	s->attr.mtime_nsec = sa->mtime.tv_nsec;
	CALL_RUN();
	CALL_END();
	return (int)ret_;
}

static int fsd_access(void *b, vol_ino_t ino, int mask, const struct vol_cred *cred)
{
	CALL_BEGIN(FSD_OP_ACCESS);
	put_cred(f, i, cred);
	s->ino = ino;
	s->flags = mask;
	CALL_RUN();
	CALL_END();
	return (int)ret_;
}

static int fsd_fsync(void *b, vol_ino_t ino, bool datasync)
{
	CALL_BEGIN(FSD_OP_FSYNC);
	s->ino = ino;
	s->flags = datasync;
	CALL_RUN();
	CALL_END();
	return (int)ret_;
}

static ssize_t fsd_readdir(void *b, vol_ino_t dir, uint64_t *cookie, void *buf, size_t n)
{
	CALL_BEGIN(FSD_OP_READDIR);
	s->ino = dir;
	s->off = *cookie;
	s->len = n < FSD_SLOT_DATA ? n : FSD_SLOT_DATA;
	CALL_RUN();
	if (ret_ > 0) {
		if ((uint64_t)ret_ > s->len)
			ret_ = -EIO;
		else
			memcpy(buf, fsd_data_at(f->rg, i), (size_t)ret_);
	}
	if (ret_ >= 0)
		*cookie = s->r0;
	CALL_END();
	return (ssize_t)ret_;
}

static int fsd_mkdir(void *b, vol_ino_t dir, const char *path, mode_t mode,
		     const struct vol_cred *cred)
{
	struct path_req rq = { .op = FSD_OP_MKDIR, .ino = dir, .mode = mode & 07777,
			       .p1 = path, .cred = cred };

	return path_call(b, &rq, NULL);
}

static int fsd_unlink(void *b, vol_ino_t dir, const char *path, int flags,
		      const struct vol_cred *cred)
{
	struct path_req rq = { .op = FSD_OP_UNLINK, .ino = dir, .flags = flags,
			       .p1 = path, .cred = cred };

	return path_call(b, &rq, NULL);
}

static int fsd_rename(void *b, vol_ino_t odir, const char *opath, vol_ino_t ndir,
		      const char *npath, unsigned flags, const struct vol_cred *cred)
{
	struct path_req rq = { .op = FSD_OP_RENAME, .ino = odir, .ino2 = ndir,
			       .flags = (int32_t)flags, .p1 = opath, .p2 = npath, .cred = cred };

	return path_call(b, &rq, NULL);
}

static int fsd_link(void *b, vol_ino_t ino, vol_ino_t ndir, const char *npath,
		    const struct vol_cred *cred)
{
	struct path_req rq = { .op = FSD_OP_LINK, .ino = ino, .ino2 = ndir,
			       .p1 = npath, .cred = cred };

	return path_call(b, &rq, NULL);
}

static int fsd_symlink(void *b, const char *target, vol_ino_t dir, const char *path,
		       const struct vol_cred *cred)
{
	struct path_req rq = { .op = FSD_OP_SYMLINK, .ino = dir, .p1 = target, .p2 = path,
			       .cred = cred };

	return path_call(b, &rq, NULL);
}

static ssize_t fsd_readlink(void *b, vol_ino_t ino, char *buf, size_t n)
{
	CALL_BEGIN(FSD_OP_READLINK);
	s->ino = ino;
	s->len = n < FSD_SLOT_DATA ? n : FSD_SLOT_DATA;
	CALL_RUN();
	if (ret_ > 0) {
		if ((uint64_t)ret_ > s->len)
			ret_ = (int64_t)s->len;
		memcpy(buf, fsd_data_at(f->rg, i), (size_t)ret_);
	}
	CALL_END();
	return (ssize_t)ret_;
}

static int fsd_statfs(void *b, struct statfs *st)
{
	CALL_BEGIN(FSD_OP_STATFS);
	CALL_RUN();
	if (ret_ == 0)
		memcpy(st, fsd_data_at(f->rg, i), sizeof(*st));
	CALL_END();
	return (int)ret_;
}

static int fsd_fallocate(void *b, vol_ino_t ino, int mode, uint64_t off, uint64_t len)
{
	CALL_BEGIN(FSD_OP_FALLOCATE);
	s->ino = ino;
	s->flags = mode;
	s->off = off;
	s->len = len;
	CALL_RUN();
	CALL_END();
	return (int)ret_;
}

static int64_t fsd_seek_data(void *b, vol_ino_t ino, uint64_t off, int whence)
{
	CALL_BEGIN(FSD_OP_SEEK_DATA);
	s->ino = ino;
	s->off = off;
	s->flags = whence;
	CALL_RUN();
	CALL_END();
	return ret_;
}

static int fsd_lock(void *b, vol_ino_t ino, uint64_t owner, int cmd, struct flock *fl)
{
	CALL_BEGIN(FSD_OP_LOCK);
	s->ino = ino;
	s->owner = owner;
	s->flags = cmd;
	s->lk.type = fl->l_type;
	s->lk.whence = fl->l_whence;
	s->lk.start = fl->l_start;
	s->lk.len = fl->l_len;
	s->lk.pid = fl->l_pid;
	CALL_RUN();
	if (ret_ == 0 && cmd == F_GETLK) {
		fl->l_type = s->rlk.type;
		fl->l_whence = s->rlk.whence;
		fl->l_start = s->rlk.start;
		fl->l_len = s->rlk.len;
		fl->l_pid = s->rlk.pid;
	}
	CALL_END();
	return (int)ret_;
}

static int fsd_unlock_owner(void *b, vol_ino_t ino, uint64_t owner)
{
	CALL_BEGIN(FSD_OP_UNLOCK_OWNER);
	s->ino = ino;
	s->owner = owner;
	CALL_RUN();
	CALL_END();
	return (int)ret_;
}

/*
 * Nothing is pending between calls (every call waits for its answer, and
 * fsd answers a change only once it is committed), so there is nothing to
 * flush.  The mapping and the descriptors stay: an exec'd image attaches
 * again from LIBRETTO_VOLUMES with the same descriptors.
 */
static int fsd_detach(void *b)
{
	(void)b;
	return 0;
}

const struct vfs_ops vfs_fsd_ops = {
	.name = "indirect",
	.sync = fsd_sync,
	.lookup = fsd_lookup,
	.open = fsd_open,
	.hold = fsd_hold,
	.release = fsd_release,
	.pread = fsd_pread,
	.pwrite = fsd_pwrite,
	.getattr = fsd_getattr,
	.setattr = fsd_setattr,
	.access = fsd_access,
	.fsync = fsd_fsync,
	.readdir = fsd_readdir,
	.mkdir = fsd_mkdir,
	.unlink = fsd_unlink,
	.rename = fsd_rename,
	.link = fsd_link,
	.symlink = fsd_symlink,
	.readlink = fsd_readlink,
	.statfs = fsd_statfs,
	.fallocate = fsd_fallocate,
	.seek_data = fsd_seek_data,
	.lock = fsd_lock,
	.unlock_owner = fsd_unlock_owner,
	.detach = fsd_detach,
};

/* The value of key in a comma separated entry, copied into out; -ENOENT if absent. */
static int entry_get(const char *entry, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	const char *p = entry;

	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len > kl && !strncmp(p, key, kl) && p[kl] == '=') {
			len -= kl + 1;
			if (len >= cap)
				return -ENAMETOOLONG;
			memcpy(out, p + kl + 1, len);
			out[len] = '\0';
			return 0;
		}
		p = end ? end + 1 : NULL;
	}
	return -ENOENT;
}

static int parse_fd(const char *s, char **end)
{
	long v;

	errno = 0;
	v = strtol(s, end, 10);
	if (errno || *end == s || v < 0 || v > INT_MAX)
		return -1;
	return (int)v;
}

int vfs_fsd_attach(const char *entry, void **b)
{
	char fds[64], mount[256] = "?", sess[32] = "0";
	struct fsd_region *hdr;
	struct vfs_fsd *f;
	struct stat st;
	char *end;
	int region_fd, bell_fd;
	void *rg;

	(void)entry_get(entry, "mount", mount, sizeof(mount));
	(void)entry_get(entry, "session", sess, sizeof(sess));
	if (entry_get(entry, "fds", fds, sizeof(fds)) < 0) {
		fprintf(stderr, "libretto: volume %s: storage=indirect without fds=region.doorbell\n",
			mount);
		return -EINVAL;
	}
	region_fd = parse_fd(fds, &end);
	bell_fd = region_fd >= 0 && *end == '.' ? parse_fd(end + 1, &end) : -1;
	if (region_fd < 0 || bell_fd < 0 || *end) {
		fprintf(stderr, "libretto: volume %s: bad fds=%s (want region.doorbell)\n", mount, fds);
		return -EINVAL;
	}
	if (syscall(SYS_fstat, region_fd, &st) < 0 || (size_t)st.st_size < fsd_region_size()) {
		fprintf(stderr, "libretto: volume %s: descriptor %d is not an fsd session region "
			"(not inherited across exec? size %lld)\n", mount, region_fd,
			(long long)(errno ? -1 : st.st_size));
		return -EINVAL;
	}
	rg = mmap(NULL, fsd_region_size(), PROT_READ | PROT_WRITE, MAP_SHARED, region_fd, 0);
	if (rg == MAP_FAILED) {
		int err = -errno;

		fprintf(stderr, "libretto: volume %s: cannot map the fsd session: %s\n", mount,
			strerror(-err));
		return err;
	}
	hdr = rg;
	if (hdr->magic != FSD_REGION_MAGIC || hdr->version != FSD_REGION_VERSION ||
	    hdr->nslots != FSD_SLOTS || hdr->slot_data != FSD_SLOT_DATA) {
		fprintf(stderr, "libretto: volume %s: the fsd session region has another layout "
			"(magic %#x version %u): librettod and libretto.so differ\n", mount,
			hdr->magic, hdr->version);
		munmap(rg, fsd_region_size());
		return -EPROTO;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		munmap(rg, fsd_region_size());
		return -ENOMEM;
	}
	f->rg = rg;
	f->bell_fd = bell_fd;
	f->session = strtoull(sess, NULL, 10);
	snprintf(f->mount, sizeof(f->mount), "%s", mount);
	/* The token tells this process image's slots from those of the image before an exec. */
	if (getrandom(&f->token, sizeof(f->token), GRND_NONBLOCK) != sizeof(f->token))
		f->token = (uint32_t)time(NULL) ^ (uint32_t)(uintptr_t)f;
	atomic_init(&f->next_id, 1);
	*b = f;
	return 0;
}
