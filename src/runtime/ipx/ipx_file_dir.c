/* Volume directories as DIR streams: opendir/readdir/closedir and friends for volume directories, glibc's for the rest. */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipx/ipx_file.h"

/*
 * glibc's opendir/readdir read the directory through internal calls we
 * cannot see, so a volume directory gets a DIR of our own.  Both kinds go
 * through the same names: ours is told apart by its first int, a magic
 * value that is negative, where glibc's struct __dirstream keeps its
 * descriptor (never negative).  The stream owns its descriptor, as
 * glibc's does (closedir closes it; dirfd returns it).
 */
#define IPX_DIR_MAGIC ((int)0xd1ee7a5e)

struct ipx_dir {
	int magic;		/* first: see above */
	int fd;
	pthread_mutex_t lock;	/* readdir may be called from several threads on one stream */
	size_t pos, len;	/* the unread records in buf */
	long loc;		/* telldir: the cookie after the last entry returned */
	struct dirent64 ent;	/* readdir's answer (same layout as struct dirent on LP64) */
	char name_room[256];	/* ent.d_name is 256 bytes already; room for safety */
	char buf[32768] __attribute__((aligned(8)));
};

_Static_assert(sizeof(struct dirent) == sizeof(struct dirent64), "LP64: one dirent layout");

/* The getdents64 record, as vol_readdir writes it. */
struct ipx_ldirent {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static struct ipx_dir *ipx_dir_of(DIR *d)
{
	struct ipx_dir *o = (struct ipx_dir *)d;

	return d != NULL && o->magic == IPX_DIR_MAGIC ? o : NULL;
}

/* A stream on fd, a volume directory descriptor the stream now owns. */
static DIR *ipx_dir_new(int fd)
{
	struct ipx_dir *o = malloc(sizeof(*o));

	if (o == NULL)
		return NULL;
	memset(o, 0, offsetof(struct ipx_dir, buf));
	o->magic = IPX_DIR_MAGIC;
	o->fd = fd;
	pthread_mutex_init(&o->lock, NULL);
	return (DIR *)o;
}

IPX_EXPORT DIR *opendir(const char *path)
{
	struct ipx_vloc vl;
	DIR *d;
	int r, fd;

	r = ipx_vlocate(AT_FDCWD, path, &vl, true);
	if (r == 0)
		return real.opendir(vl.loc.kpath);
	if (r == 1)
		r = ipx_vfile_open(&vl, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	fd = r;
	d = ipx_dir_new(fd);
	if (d == NULL) {
		close(fd);
		errno = ENOMEM;
	}
	return d;
}

IPX_EXPORT DIR *fdopendir(int fd)
{
	struct ipx_file *f;
	int err = 0;
	DIR *d;

	real_init();
	f = ipx_vfile_app(fd);
	if (f == IPX_VF_PRIVATE) {
		errno = EBADF;
		return NULL;
	}
	if (f == NULL)
		return real.fdopendir(fd);
	err = ipx_vfile_check(f->vf);
	if (err == 0 && !f->vf->dir)
		err = -ENOTDIR;
	if (err == 0 && (f->vf->flags & O_PATH))
		err = -EBADF;
	ipx_put(f);
	if (err < 0) {
		errno = -err;
		return NULL;
	}
	d = ipx_dir_new(fd);
	if (d == NULL)
		errno = ENOMEM;
	return d;
}

/* The next entry into o->ent, or NULL at the end (errno unchanged) or on an error (errno set). */
static struct dirent64 *ipx_dir_next(struct ipx_dir *o)
{
	struct ipx_ldirent *e;
	size_t nl;

	if (o->pos >= o->len) {
		int saved = errno;
		ssize_t r = getdents64(o->fd, o->buf, sizeof(o->buf));

		/* The end must leave errno as it was: readdir's callers (gnulib's
		 * savedir in cp -r) set it to 0 and take any change for an error,
		 * and the volume layer may pass through calls that set it. */
		if (r == 0)
			errno = saved;
		if (r <= 0)
			return NULL;
		o->pos = 0;
		o->len = (size_t)r;
	}
	e = (struct ipx_ldirent *)(o->buf + o->pos);
	o->pos += e->d_reclen;
	nl = strnlen(e->d_name, sizeof(o->ent.d_name) - 1);
	o->ent.d_ino = e->d_ino;
	o->ent.d_off = e->d_off;
	o->ent.d_reclen = (unsigned short)(offsetof(struct dirent64, d_name) + nl + 1);
	o->ent.d_type = e->d_type;
	memcpy(o->ent.d_name, e->d_name, nl);
	o->ent.d_name[nl] = '\0';
	o->loc = (long)e->d_off;
	return &o->ent;
}

IPX_EXPORT struct dirent *readdir(DIR *d)
{
	struct ipx_dir *o = ipx_dir_of(d);
	struct dirent64 *e;

	if (o == NULL) {
		real_init();
		return real.readdir(d);
	}
	pthread_mutex_lock(&o->lock);
	e = ipx_dir_next(o);
	pthread_mutex_unlock(&o->lock);
	return (struct dirent *)e;
}

IPX_EXPORT struct dirent64 *readdir64(DIR *d)
{
	struct ipx_dir *o = ipx_dir_of(d);

	if (o == NULL) {
		real_init();
		return real.readdir64(d);
	}
	return (struct dirent64 *)readdir(d);
}

IPX_EXPORT int readdir_r(DIR *d, struct dirent *ent, struct dirent **res)
{
	struct ipx_dir *o = ipx_dir_of(d);
	struct dirent64 *e;
	int saved = errno, err = 0;

	if (o == NULL) {
		real_init();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
		return real.readdir_r(d, ent, res);
#pragma GCC diagnostic pop
	}
	pthread_mutex_lock(&o->lock);
	errno = 0;
	e = ipx_dir_next(o);
	if (e != NULL) {
		memcpy(ent, e, e->d_reclen);
		*res = ent;
	} else {
		err = errno;
		*res = NULL;
	}
	pthread_mutex_unlock(&o->lock);
	errno = saved;
	return err;
}

IPX_EXPORT int readdir64_r(DIR *d, struct dirent64 *ent, struct dirent64 **res)
{
	if (ipx_dir_of(d) == NULL) {
		real_init();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
		return real.readdir64_r(d, ent, res);
#pragma GCC diagnostic pop
	}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	return readdir_r(d, (struct dirent *)ent, (struct dirent **)res);
#pragma GCC diagnostic pop
}

IPX_EXPORT int closedir(DIR *d)
{
	struct ipx_dir *o = ipx_dir_of(d);
	int r;

	if (o == NULL) {
		real_init();
		return real.closedir(d);
	}
	r = close(o->fd);
	o->magic = 0;
	pthread_mutex_destroy(&o->lock);
	free(o);
	return r;
}

IPX_EXPORT void rewinddir(DIR *d)
{
	struct ipx_dir *o = ipx_dir_of(d);

	if (o == NULL) {
		real_init();
		real.rewinddir(d);
		return;
	}
	pthread_mutex_lock(&o->lock);
	(void)lseek(o->fd, 0, SEEK_SET);
	o->pos = o->len = 0;
	o->loc = 0;
	pthread_mutex_unlock(&o->lock);
}

IPX_EXPORT long telldir(DIR *d)
{
	struct ipx_dir *o = ipx_dir_of(d);
	long r;

	if (o == NULL) {
		real_init();
		return real.telldir(d);
	}
	pthread_mutex_lock(&o->lock);
	r = o->loc;
	pthread_mutex_unlock(&o->lock);
	return r;
}

IPX_EXPORT void seekdir(DIR *d, long pos)
{
	struct ipx_dir *o = ipx_dir_of(d);

	if (o == NULL) {
		real_init();
		real.seekdir(d, pos);
		return;
	}
	pthread_mutex_lock(&o->lock);
	(void)lseek(o->fd, pos, SEEK_SET);
	o->pos = o->len = 0;
	o->loc = pos;
	pthread_mutex_unlock(&o->lock);
}

IPX_EXPORT int dirfd(DIR *d)
{
	struct ipx_dir *o = ipx_dir_of(d);

	if (o == NULL) {
		real_init();
		return real.dirfd(d);
	}
	return o->fd;
}

/* scandir of a volume directory through our own stream. */
static int ipx_scandir(DIR *d, struct dirent ***list, int (*sel)(const struct dirent *),
		       int (*cmp)(const struct dirent **, const struct dirent **))
{
	struct dirent **v = NULL, *e;
	size_t n = 0, cap = 0;

	while ((errno = 0, e = readdir(d)) != NULL) {
		struct dirent *c;

		if (sel != NULL && !sel(e))
			continue;
		if (n == cap) {
			struct dirent **nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));

			if (nv == NULL)
				goto fail;
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		c = malloc(e->d_reclen);
		if (c == NULL)
			goto fail;
		memcpy(c, e, e->d_reclen);
		v[n++] = c;
	}
	if (errno != 0)
		goto fail;
	if (cmp != NULL && n > 1)
		qsort(v, n, sizeof(*v), (int (*)(const void *, const void *))cmp);
	*list = v;
	return (int)n;
fail:
	{
		int err = errno ? errno : ENOMEM;

		while (n > 0)
			free(v[--n]);
		free(v);
		errno = err;
		return -1;
	}
}

IPX_EXPORT int scandir(const char *path, struct dirent ***list, int (*sel)(const struct dirent *),
		       int (*cmp)(const struct dirent **, const struct dirent **))
{
	struct ipx_vloc vl;
	DIR *d;
	int r, saved;

	r = ipx_vlocate(AT_FDCWD, path, &vl, false);
	if (r == 0)
		return real.scandir(vl.loc.kpath, list, sel, cmp);
	if (r < 0)
		return (int)ipx_ret(r);
	d = opendir(path);
	if (d == NULL)
		return -1;
	r = ipx_scandir(d, list, sel, cmp);
	saved = errno;
	closedir(d);
	errno = saved;
	return r;
}

IPX_EXPORT int scandir64(const char *path, struct dirent64 ***list, int (*sel)(const struct dirent64 *),
			 int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
	struct ipx_vloc vl;
	int r;

	r = ipx_vlocate(AT_FDCWD, path, &vl, false);
	if (r == 0)
		return real.scandir64(vl.loc.kpath, list, sel, cmp);
	if (r < 0)
		return (int)ipx_ret(r);
	return scandir(path, (struct dirent ***)list, (int (*)(const struct dirent *))sel,
		       (int (*)(const struct dirent **, const struct dirent **))cmp);
}
