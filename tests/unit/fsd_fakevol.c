/* A tiny in-memory stand-in for vol.h (one flat directory), so that libretto-fsd's protocol can be tested without an ext4 image. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "vol/vol.h"

#define FAKE_INODES 256

struct fake_inode {
	int used;
	mode_t mode;
	uint32_t gen;
	char name[64];
	char *data;
	size_t size;
	unsigned refs;
	uint32_t uid, gid;	/* the credentials that made it */
};

/* Byte-range locks, enough for the protocol tests (len 0: to the end). */
#define FAKE_LOCKS 64

struct fake_lock {
	bool used;
	vol_ino_t ino;
	uint64_t owner;
	short type;
	int64_t start, len;
	pid_t pid;
};

struct vol {
	struct fake_inode ino[FAKE_INODES];
	struct fake_lock lk[FAKE_LOCKS];
	uint64_t running, committed;
	uint32_t next_gen;
};

void vol_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "libretto: vol(fake): ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int vol_mount(int image_fd, const char *mountpoint, unsigned flags, struct vol **out)
{
	struct vol *v = calloc(1, sizeof(*v));

	(void)image_fd;
	(void)mountpoint;
	(void)flags;
	if (!v)
		return -ENOMEM;
	/* Generations start from the clock, so a remount gives every inode a new one. */
	v->next_gen = (uint32_t)time(NULL) ^ (uint32_t)(uintptr_t)v;
	v->ino[VOL_ROOT_INO].used = 1;
	v->ino[VOL_ROOT_INO].mode = S_IFDIR | 0755;
	v->ino[VOL_ROOT_INO].gen = 1;
	v->running = 1;
	*out = v;
	return 0;
}

int vol_unmount(struct vol *v)
{
	for (unsigned i = 0; i < FAKE_INODES; i++)
		free(v->ino[i].data);
	free(v);
	return 0;
}

uint64_t vol_running_seq(struct vol *v)
{
	return v->running;
}

uint64_t vol_committed_seq(struct vol *v)
{
	return v->committed;
}

int vol_sync(struct vol *v, bool durable)
{
	(void)durable;
	v->committed = v->running++;
	return 0;
}

int vol_tick(struct vol *v)
{
	(void)v;
	return 0;
}

static struct fake_inode *get(struct vol *v, vol_ino_t ino)
{
	if (ino >= FAKE_INODES || !v->ino[ino].used)
		return NULL;
	return &v->ino[ino];
}

int vol_generation(struct vol *v, vol_ino_t ino, uint32_t *gen)
{
	struct fake_inode *i = get(v, ino);

	if (!i)
		return -ESTALE;
	*gen = i->gen;
	return 0;
}

static const char *base(const char *path)
{
	while (*path == '/')
		path++;
	return path;
}

int vol_lookup(struct vol *v, vol_ino_t dir, const char *path, int flags, vol_ino_t *ino)
{
	const char *n = base(path);

	(void)flags;
	if (dir != VOL_ROOT_INO)
		return -ENOTDIR;
	if (!*n) {
		*ino = VOL_ROOT_INO;
		return 0;
	}
	for (unsigned i = 3; i < FAKE_INODES; i++)
		if (v->ino[i].used && !strcmp(v->ino[i].name, n)) {
			*ino = i;
			return 0;
		}
	return -ENOENT;
}

static int make(struct vol *v, const char *name, mode_t mode, vol_ino_t *out)
{
	if (strlen(name) >= 64 || !*name || strchr(name, '/'))
		return -EINVAL;
	for (unsigned i = 3; i < FAKE_INODES; i++)
		if (!v->ino[i].used) {
			memset(&v->ino[i], 0, sizeof(v->ino[i]));
			v->ino[i].used = 1;
			v->ino[i].mode = mode;
			v->ino[i].gen = ++v->next_gen;
			snprintf(v->ino[i].name, sizeof(v->ino[i].name), "%s", name);
			*out = i;
			return 0;
		}
	return -ENOSPC;
}

int vol_open(struct vol *v, vol_ino_t dir, const char *path, int oflags, mode_t mode,
	     const struct vol_cred *cred, vol_ino_t *ino)
{
	int err = vol_lookup(v, dir, path, 0, ino);

	if (err == -ENOENT && (oflags & O_CREAT)) {
		err = make(v, base(path), S_IFREG | mode, ino);
		if (!err && cred) {
			v->ino[*ino].uid = cred->uid;
			v->ino[*ino].gid = cred->gid;
		}
	}
	else if (!err && (oflags & O_CREAT) && (oflags & O_EXCL))
		err = -EEXIST;
	if (err)
		return err;
	if ((oflags & O_TRUNC) && S_ISREG(v->ino[*ino].mode))
		v->ino[*ino].size = 0;
	v->ino[*ino].refs++;
	return 0;
}

int vol_hold(struct vol *v, vol_ino_t ino)
{
	struct fake_inode *i = get(v, ino);

	if (!i)
		return -ESTALE;
	i->refs++;
	return 0;
}

int vol_release(struct vol *v, vol_ino_t ino)
{
	struct fake_inode *i = get(v, ino);

	if (!i || i->refs == 0)
		return -EINVAL;
	i->refs--;
	return 0;
}

ssize_t vol_pread(struct vol *v, vol_ino_t ino, void *buf, size_t n, uint64_t off)
{
	struct fake_inode *i = get(v, ino);

	if (!i)
		return -EBADF;
	if (S_ISDIR(i->mode))
		return -EISDIR;
	if (off >= i->size)
		return 0;
	if (n > i->size - off)
		n = i->size - off;
	memcpy(buf, i->data + off, n);
	return (ssize_t)n;
}

ssize_t vol_pwrite(struct vol *v, vol_ino_t ino, const void *buf, size_t n, uint64_t off,
		   unsigned flags, uint64_t *end)
{
	struct fake_inode *i = get(v, ino);

	if (!i)
		return -EBADF;
	if (flags & VOL_APPEND)
		off = i->size;
	if (off + n > (64u << 20))
		return -EFBIG;
	if (off + n > i->size) {
		char *d = realloc(i->data, off + n);

		if (!d)
			return -ENOMEM;
		memset(d + i->size, 0, off + n - i->size);
		i->data = d;
		i->size = off + n;
	}
	memcpy(i->data + off, buf, n);
	if (end)
		*end = off + n;
	return (ssize_t)n;
}

int vol_getattr(struct vol *v, vol_ino_t ino, struct stat *st)
{
	struct fake_inode *i = get(v, ino);

	if (!i)
		return -EBADF;
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = i->mode;
	st->st_size = (off_t)i->size;
	st->st_nlink = 1;
	st->st_uid = i->uid;
	st->st_gid = i->gid;
	return 0;
}

int vol_setattr(struct vol *v, vol_ino_t ino, const struct vol_setattr *sa, const struct vol_cred *cred)
{
	struct fake_inode *i = get(v, ino);

	(void)cred;
	if (!i)
		return -EBADF;
	if (sa->valid & VOL_SET_SIZE)
		i->size = sa->size < i->size ? sa->size : i->size;
	return 0;
}

int vol_access(struct vol *v, vol_ino_t ino, int mask, const struct vol_cred *cred)
{
	(void)mask;
	(void)cred;
	return get(v, ino) ? 0 : -EBADF;
}

int vol_fsync(struct vol *v, vol_ino_t ino, bool datasync)
{
	(void)ino;
	(void)datasync;
	return vol_sync(v, true);
}

ssize_t vol_readdir(struct vol *v, vol_ino_t dir, uint64_t *cookie, void *buf, size_t n)
{
	(void)v; (void)dir; (void)cookie; (void)buf; (void)n;
	return 0;
}

int vol_mkdir(struct vol *v, vol_ino_t dir, const char *path, mode_t mode, const struct vol_cred *cred)
{
	vol_ino_t ino;

	(void)cred;
	if (dir != VOL_ROOT_INO)
		return -ENOTDIR;
	if (vol_lookup(v, dir, path, 0, &ino) == 0)
		return -EEXIST;
	return make(v, base(path), S_IFDIR | mode, &ino);
}

int vol_unlink(struct vol *v, vol_ino_t dir, const char *path, int flags, const struct vol_cred *cred)
{
	vol_ino_t ino;
	int err = vol_lookup(v, dir, path, 0, &ino);

	(void)flags;
	(void)cred;
	if (err)
		return err;
	if (ino == VOL_ROOT_INO)
		return -EBUSY;
	free(v->ino[ino].data);
	memset(&v->ino[ino], 0, sizeof(v->ino[ino]));
	return 0;
}

int vol_rename(struct vol *v, vol_ino_t odir, const char *opath, vol_ino_t ndir, const char *npath,
	       unsigned flags, const struct vol_cred *cred)
{
	(void)v; (void)odir; (void)opath; (void)ndir; (void)npath; (void)flags; (void)cred;
	return -EOPNOTSUPP;
}

int vol_link(struct vol *v, vol_ino_t ino, vol_ino_t ndir, const char *npath, const struct vol_cred *cred)
{
	(void)v; (void)ino; (void)ndir; (void)npath; (void)cred;
	return -EOPNOTSUPP;
}

int vol_symlink(struct vol *v, const char *target, vol_ino_t dir, const char *path,
		const struct vol_cred *cred)
{
	(void)v; (void)target; (void)dir; (void)path; (void)cred;
	return -EOPNOTSUPP;
}

ssize_t vol_readlink(struct vol *v, vol_ino_t ino, char *buf, size_t n)
{
	(void)v; (void)ino; (void)buf; (void)n;
	return -EINVAL;
}

int vol_statfs(struct vol *v, struct statfs *st)
{
	(void)v;
	memset(st, 0, sizeof(*st));
	st->f_bsize = 4096;
	st->f_type = 0xEF53;
	return 0;
}

int vol_fallocate(struct vol *v, vol_ino_t ino, int mode, uint64_t off, uint64_t len)
{
	(void)v; (void)ino; (void)mode; (void)off; (void)len;
	return -EOPNOTSUPP;
}

int64_t vol_seek_data(struct vol *v, vol_ino_t ino, uint64_t off, int whence)
{
	(void)v; (void)ino; (void)whence;
	return (int64_t)off;
}

static bool overlap(const struct fake_lock *l, int64_t start, int64_t len)
{
	int64_t e1 = l->len ? l->start + l->len : INT64_MAX, e2 = len ? start + len : INT64_MAX;

	return l->start < e2 && start < e1;
}

/* SEEK_SET ranges only (fsd's clients make them absolute); an unlock drops the owner's locks on ino. */
int vol_lock(struct vol *v, vol_ino_t ino, uint64_t owner, int cmd, struct flock *fl)
{
	struct fake_lock *free_lk = NULL;

	for (unsigned i = 0; i < FAKE_LOCKS; i++) {
		struct fake_lock *l = &v->lk[i];

		if (!l->used) {
			if (!free_lk)
				free_lk = l;
			continue;
		}
		if (l->ino != ino || l->owner == owner || !overlap(l, fl->l_start, fl->l_len))
			continue;
		if (fl->l_type == F_UNLCK || (l->type == F_RDLCK && fl->l_type == F_RDLCK))
			continue;
		if (cmd == F_GETLK) {
			fl->l_type = l->type;
			fl->l_start = l->start;
			fl->l_len = l->len;
			fl->l_pid = l->pid;
			return 0;
		}
		return -EAGAIN;
	}
	if (cmd == F_GETLK) {
		fl->l_type = F_UNLCK;
		return 0;
	}
	vol_unlock_owner(v, ino, owner);
	if (fl->l_type == F_UNLCK)
		return 0;
	if (!free_lk)
		return -ENOLCK;
	*free_lk = (struct fake_lock){ .used = true, .ino = ino, .owner = owner, .type = fl->l_type,
				       .start = fl->l_start, .len = fl->l_len, .pid = fl->l_pid };
	return 0;
}

int vol_unlock_owner(struct vol *v, vol_ino_t ino, uint64_t owner)
{
	for (unsigned i = 0; i < FAKE_LOCKS; i++)
		if (v->lk[i].used && v->lk[i].owner == owner && (ino == 0 || v->lk[i].ino == ino))
			v->lk[i].used = false;
	return 0;
}
