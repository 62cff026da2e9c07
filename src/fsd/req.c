/* libretto-fsd's request validation and handle table: no I/O, so the unit tests feed it hostile requests directly. */
#include "fsd/req.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>

#include "vol/vol.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* open(2) flags a client may pass; vol_open ignores the ones that are the caller's. */
#define FSD_OPEN_FLAGS (O_ACCMODE | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_APPEND | O_NONBLOCK | \
			O_DSYNC | O_SYNC | O_DIRECT | O_LARGEFILE | O_DIRECTORY | O_NOFOLLOW | \
			O_NOATIME | O_CLOEXEC | O_PATH | O_TMPFILE | FASYNC)

/* Which ops carry one path, two, and which name inodes. */
static unsigned op_paths(uint32_t op)
{
	switch (op) {
	case FSD_OP_LOOKUP: case FSD_OP_OPEN: case FSD_OP_MKDIR: case FSD_OP_UNLINK:
	case FSD_OP_LINK:
		return 1;
	case FSD_OP_RENAME: case FSD_OP_SYMLINK:
		return 2;
	default:
		return 0;
	}
}

/*
 * Copy one path of len bytes at data[at]: it must end with a NUL exactly
 * there and hold none before.  The copy is checked, not the shared bytes.
 */
static int copy_path(char *dst, const uint8_t *data, size_t at, uint32_t len)
{
	if (len >= FSD_PATH_MAX || at + (size_t)len + 1 > FSD_SLOT_DATA)
		return -EINVAL;
	memcpy(dst, data + at, (size_t)len + 1);
	if (dst[len] != '\0' || memchr(dst, '\0', len) != NULL)
		return -EINVAL;
	return 0;
}

static bool ts_ok(int64_t sec, int64_t nsec)
{
	(void)sec;
	return nsec >= 0 && nsec < 1000000000;
}

#define REFUSE(token) do { *why = (token); return -EINVAL; } while (0)

int fsd_req_decode(const struct fsd_slot *slot, const uint8_t *data, struct fsd_req *r,
		   const char **why)
{
	struct fsd_slot *s = &r->s;
	unsigned np;

	*why = "";
	/* One copy of the shared slot; from here on only the copy is read. */
	memcpy(s, slot, sizeof(*s));
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (s->op == 0 || s->op >= FSD_OP_MAX)
		REFUSE("bad_op");
	if (s->id == 0)
		REFUSE("bad_id");
	np = op_paths(s->op);
	r->path[0] = r->path2[0] = '\0';
	if (np >= 1 && copy_path(r->path, data, 0, s->path_len))
		REFUSE("bad_path");
	if (np == 2 && copy_path(r->path2, data, (size_t)s->path_len + 1, s->path2_len))
		REFUSE("bad_path2");
	if (s->xflags & ~FSD_XF_CRED)
		REFUSE("bad_xflags");
	r->has_cred = (s->xflags & FSD_XF_CRED) && fsd_op_takes_cred(s->op);
	if (r->has_cred) {
		memcpy(&r->cred, data + FSD_CRED_OFF, sizeof(r->cred));
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		if (r->cred.ngroups > 16)
			REFUSE("bad_cred");
	}
	switch (s->op) {
	case FSD_OP_SYNC:
	case FSD_OP_FSYNC:
		if (s->flags != 0 && s->flags != 1)
			REFUSE("bad_flags");
		break;
	case FSD_OP_LOOKUP:
		if (s->flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
			REFUSE("bad_flags");
		break;
	case FSD_OP_OPEN:
		if ((unsigned)s->flags & ~(unsigned)FSD_OPEN_FLAGS)
			REFUSE("bad_flags");
		if (s->mode & ~07777u)
			REFUSE("bad_mode");
		break;
	case FSD_OP_MKDIR:
		if (s->mode & ~07777u)
			REFUSE("bad_mode");
		break;
	case FSD_OP_PREAD:
	case FSD_OP_READLINK:
		if (s->len > FSD_SLOT_DATA)
			REFUSE("bad_len");
		if (s->off > INT64_MAX)
			REFUSE("bad_off");
		break;
	case FSD_OP_READDIR:
		if (s->len == 0 || s->len > FSD_SLOT_DATA)
			REFUSE("bad_len");
		break;
	case FSD_OP_PWRITE:
		if (s->len > FSD_SLOT_DATA)
			REFUSE("bad_len");
		if (s->off > INT64_MAX || s->off + s->len > INT64_MAX)
			REFUSE("bad_off");
		if (s->flags != 0 && s->flags != VOL_APPEND)
			REFUSE("bad_flags");
		break;
	case FSD_OP_SETATTR:
		if (s->attr.valid & ~0x3fu)
			REFUSE("bad_valid");
		if ((s->attr.valid & VOL_SET_MODE) && (s->attr.mode & ~07777u))
			REFUSE("bad_mode");
		if ((s->attr.valid & VOL_SET_SIZE) && s->attr.size > INT64_MAX)
			REFUSE("bad_size");
		if ((s->attr.valid & VOL_SET_ATIME) && !ts_ok(s->attr.atime_sec, s->attr.atime_nsec))
			REFUSE("bad_time");
		if ((s->attr.valid & VOL_SET_MTIME) && !ts_ok(s->attr.mtime_sec, s->attr.mtime_nsec))
			REFUSE("bad_time");
		break;
	case FSD_OP_ACCESS:
		if (s->flags & ~(R_OK | W_OK | X_OK))
			REFUSE("bad_mask");
		break;
	case FSD_OP_UNLINK:
		if (s->flags != 0 && s->flags != AT_REMOVEDIR)
			REFUSE("bad_flags");
		break;
	case FSD_OP_RENAME:
		if (s->flags != 0 && s->flags != RENAME_NOREPLACE && s->flags != RENAME_EXCHANGE)
			REFUSE("bad_flags");
		break;
	case FSD_OP_FALLOCATE:
		/*
		 * Any of fallocate(2)'s mode bits: vol_fallocate checks the
		 * combination itself and answers as ext4 does (EOPNOTSUPP for
		 * what it does not implement, as the kernel would).
		 */
		if ((unsigned)s->flags & ~0x7fu)
			REFUSE("bad_flags");
		if (s->off > INT64_MAX || s->len > INT64_MAX || s->off + s->len > INT64_MAX)
			REFUSE("bad_off");
		break;
	case FSD_OP_SEEK_DATA:
		if (s->flags != SEEK_DATA && s->flags != SEEK_HOLE)
			REFUSE("bad_whence");
		if (s->off > INT64_MAX)
			REFUSE("bad_off");
		break;
	case FSD_OP_LOCK:
		if (s->flags != F_SETLK && s->flags != F_GETLK)
			REFUSE("bad_cmd");
		if (s->lk.type != F_RDLCK && s->lk.type != F_WRLCK && s->lk.type != F_UNLCK)
			REFUSE("bad_lock_type");
		/* SEEK_CUR needs the file offset, which is the client's: it resolves it first. */
		if (s->lk.whence != SEEK_SET && s->lk.whence != SEEK_END)
			REFUSE("bad_lock_whence");
		break;
	default:
		break;
	}
	return 0;
}

bool fsd_op_takes_cred(uint32_t op)
{
	switch (op) {
	case FSD_OP_OPEN: case FSD_OP_SETATTR: case FSD_OP_ACCESS: case FSD_OP_MKDIR:
	case FSD_OP_UNLINK: case FSD_OP_RENAME: case FSD_OP_LINK: case FSD_OP_SYMLINK:
		return true;
	default:
		return false;
	}
}

static bool id_in(uint32_t id, const uint32_t *set, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (set[i] == id)
			return true;
	return false;
}

int fsd_cred_check(const struct fsd_sess_cred *sc, const struct fsd_wire_cred *claim)
{
	if (id_in(0, sc->uids, 4))
		return 0;
	if (!id_in(claim->uid, sc->uids, 4) || !id_in(claim->gid, sc->gids, 4))
		return -EPERM;
	for (uint32_t i = 0; i < claim->ngroups && i < 16; i++)
		if (!id_in(claim->groups[i], sc->groups, sc->ngroups < 16 ? sc->ngroups : 16))
			return -EPERM;
	return 0;
}

bool fsd_req_modifies(const struct fsd_req *r)
{
	switch (r->s.op) {
	case FSD_OP_OPEN:
		return (r->s.flags & (O_CREAT | O_TRUNC)) != 0;
	case FSD_OP_PWRITE: case FSD_OP_SETATTR: case FSD_OP_MKDIR: case FSD_OP_UNLINK:
	case FSD_OP_RENAME: case FSD_OP_LINK: case FSD_OP_SYMLINK: case FSD_OP_FALLOCATE:
		return true;
	default:
		return false;
	}
}

const struct fsd_handle *fsd_handle_find_const(const struct fsd_state *st, uint32_t ino)
{
	uint32_t n = st->nhandles < FSD_MAX_HANDLES ? st->nhandles : FSD_MAX_HANDLES;

	if (ino == 0)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		if (st->handle[i].ino == ino)
			return &st->handle[i];
	return NULL;
}

struct fsd_handle *fsd_handle_find(struct fsd_state *st, uint32_t ino)
{
	return (struct fsd_handle *)fsd_handle_find_const(st, ino);
}

struct fsd_handle *fsd_handle_get(struct fsd_state *st, uint32_t ino, uint32_t gen)
{
	struct fsd_handle *h = fsd_handle_find(st, ino);
	uint32_t n = st->nhandles < FSD_MAX_HANDLES ? st->nhandles : FSD_MAX_HANDLES;

	if (h)
		return h;
	/* A free entry first, then one that was only looked up. */
	for (uint32_t i = 0; i < n; i++)
		if (st->handle[i].ino == 0) {
			h = &st->handle[i];
			break;
		}
	if (!h && n < FSD_MAX_HANDLES) {
		h = &st->handle[n];
		st->nhandles = n + 1;
	}
	for (uint32_t i = 0; !h && i < n; i++)
		if (st->handle[i].refs == 0)
			h = &st->handle[i];
	if (!h)
		return NULL;
	h->ino = ino;
	h->gen = gen;
	h->refs = 0;
	h->flags = 0;
	return h;
}

/*
 * One inode argument: the root always (unless an open one is needed), else
 * a handle of the session's; need: 0, or FSD_NEED_REF with the access
 * bits (FSD_HANDLE_READ/WRITE) an open of it must have granted.
 */
#define FSD_NEED_REF 0x100u

static int check_ino(const struct fsd_state *st, uint32_t ino, unsigned need)
{
	const struct fsd_handle *h;
	unsigned access = need & (FSD_HANDLE_READ | FSD_HANDLE_WRITE);

	if (ino == VOL_ROOT_INO && !need)
		return 0;
	h = fsd_handle_find_const(st, ino);
	if (!h)
		return -EBADF;
	if (h->flags & FSD_HANDLE_STALE)
		return -ESTALE;
	if (need && h->refs == 0)
		return -EBADF;
	if ((h->flags & access) != access)
		return -EBADF;
	return 0;
}

int fsd_req_check_handles(const struct fsd_state *st, const struct fsd_req *r)
{
	const struct fsd_slot *s = &r->s;

	switch (s->op) {
	case FSD_OP_SYNC: case FSD_OP_STATFS:
		return 0;
	case FSD_OP_UNLOCK_OWNER:
		return s->ino == 0 ? 0 : check_ino(st, s->ino, 0);
	case FSD_OP_HOLD: case FSD_OP_FSYNC:
		return check_ino(st, s->ino, FSD_NEED_REF);
	case FSD_OP_PREAD: case FSD_OP_READDIR:
		return check_ino(st, s->ino, FSD_NEED_REF | FSD_HANDLE_READ);
	case FSD_OP_PWRITE: case FSD_OP_FALLOCATE:
		return check_ino(st, s->ino, FSD_NEED_REF | FSD_HANDLE_WRITE);
	case FSD_OP_LOCK:
		/*
		 * An open reference, of any access: flock(2) locks descriptors
		 * of every mode, and the client (which knows the descriptor's
		 * mode) applies fcntl's rule itself.  A lock is advisory, so a
		 * session that may open the file gains nothing by skipping it.
		 */
		return check_ino(st, s->ino, FSD_NEED_REF);
	case FSD_OP_RELEASE: {
		/* A stale handle may still be released (that is how it goes away). */
		const struct fsd_handle *h = fsd_handle_find_const(st, s->ino);

		return h && h->refs > 0 ? 0 : -EBADF;
	}
	case FSD_OP_RENAME: case FSD_OP_LINK: {
		int err = check_ino(st, s->ino, 0);

		return err ? err : check_ino(st, s->ino2, 0);
	}
	default:
		return check_ino(st, s->ino, 0);
	}
}
