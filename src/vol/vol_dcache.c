/* The volume's name cache: the entries of large directories in a hash table, so lookups (hits and misses) skip the linear scan. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vol/vol_int.h"
#include "vol/vol_ops.h"

/*
 * Only directories of at least VOL_DC_MIN_BLOCKS blocks are loaded (a
 * small one is scanned as fast as it is hashed).  A loaded directory is
 * "complete": every name it has is in the table, so a miss means ENOENT.
 * Every change of a loaded directory's entries goes through vol_dc_add /
 * vol_dc_del (vol_ops.c).  Past VOL_DC_MAX_DIRS loaded directories or
 * VOL_DC_MAX_ENTRIES names, everything is dropped and loading starts over.
 */
#define VOL_DC_MIN_BLOCKS 4
#define VOL_DC_MAX_DIRS 32
#define VOL_DC_MAX_ENTRIES 400000
#define VOL_DC_BITS 16

struct vol_dent {
	struct vol_dent *next;
	vol_ino_t dir, ino;
	uint32_t hash;
	uint8_t len;
	char name[];
};

struct vol_dcache {
	struct vol_dent **tab;
	size_t count;
	vol_ino_t dirs[VOL_DC_MAX_DIRS];
	unsigned ndirs;
};

static uint32_t dc_hash(vol_ino_t dir, const char *name, size_t len)
{
	uint32_t h = 2166136261u ^ dir;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 16777619u;
	return h;
}

static bool dc_complete(const struct vol_dcache *dc, vol_ino_t dir)
{
	for (unsigned i = 0; i < dc->ndirs; i++)
		if (dc->dirs[i] == dir)
			return true;
	return false;
}

static void dc_flush(struct vol_dcache *dc)
{
	if (dc->tab) {
		for (size_t b = 0; b < ((size_t)1 << VOL_DC_BITS); b++)
			while (dc->tab[b]) {
				struct vol_dent *d = dc->tab[b];

				dc->tab[b] = d->next;
				free(d);
			}
	}
	dc->count = 0;
	dc->ndirs = 0;
}

static int dc_insert(struct vol_dcache *dc, vol_ino_t dir, const char *name, size_t len, vol_ino_t ino)
{
	struct vol_dent *d = malloc(sizeof(*d) + len);
	uint32_t h = dc_hash(dir, name, len);

	if (!d)
		return -ENOMEM;
	d->dir = dir;
	d->ino = ino;
	d->hash = h;
	d->len = (uint8_t)len;
	memcpy(d->name, name, len);
	d->next = dc->tab[h & ((1u << VOL_DC_BITS) - 1)];
	dc->tab[h & ((1u << VOL_DC_BITS) - 1)] = d;
	dc->count++;
	return 0;
}

static struct vol_dent **dc_find(struct vol_dcache *dc, vol_ino_t dir, const char *name, size_t len)
{
	uint32_t h = dc_hash(dir, name, len);
	struct vol_dent **pp = &dc->tab[h & ((1u << VOL_DC_BITS) - 1)];

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->dir == dir && (*pp)->len == len && memcmp((*pp)->name, name, len) == 0)
			return pp;
	return NULL;
}

struct dc_load {
	struct vol_dcache *dc;
	vol_ino_t dir;
	int err;
};

static int dc_load_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset, int blocksize, char *buf,
		      void *priv)
{
	struct dc_load *l = priv;
	int nl = ext2fs_dirent_name_len(de);

	if (!de->inode || nl == 0)
		return 0;
	if (l->dc->count >= VOL_DC_MAX_ENTRIES) {
		l->err = -ENOSPC;
		return DIRENT_ABORT;
	}
	l->err = dc_insert(l->dc, l->dir, de->name, (size_t)nl, de->inode);
	return l->err ? DIRENT_ABORT : 0;
}

/* Load dir's names; false when it is not worth it or failed (the caller scans). */
static bool dc_load(struct vol *v, vol_ino_t dir)
{
	struct vol_dcache *dc = v->dc;
	struct ext2_inode_large in;
	struct dc_load l = { dc, dir, 0 };
	errcode_t e;

	if (vol_iread(v, dir, &in) || !LINUX_S_ISDIR(in.i_mode) || EXT2_I_SIZE(&in) < VOL_DC_MIN_BLOCKS * VOL_BS)
		return false;
	if (!dc->tab) {
		dc->tab = calloc((size_t)1 << VOL_DC_BITS, sizeof(*dc->tab));
		if (!dc->tab)
			return false;
	}
	if (dc->ndirs == VOL_DC_MAX_DIRS || dc->count + 1000 > VOL_DC_MAX_ENTRIES)
		dc_flush(dc);
	e = ext2fs_dir_iterate2(v->fs, dir, 0, NULL, dc_load_cb, &l);
	if (e || l.err) {
		/* A partial load must not answer misses: drop everything. */
		dc_flush(dc);
		return false;
	}
	dc->dirs[dc->ndirs++] = dir;
	return true;
}

int vol_dc_init(struct vol *v)
{
	v->dc = calloc(1, sizeof(*v->dc));
	return v->dc ? 0 : -ENOMEM;
}

void vol_dc_free(struct vol *v)
{
	if (!v->dc)
		return;
	dc_flush(v->dc);
	free(v->dc->tab);
	free(v->dc);
	v->dc = NULL;
}

int vol_dc_lookup(struct vol *v, vol_ino_t dir, const char *name, size_t len, vol_ino_t *ino)
{
	struct vol_dent **pp;

	if (!v->dc)
		return 1;
	if (!dc_complete(v->dc, dir) && !dc_load(v, dir))
		return 1;
	pp = dc_find(v->dc, dir, name, len);
	if (!pp)
		return -ENOENT;
	*ino = (*pp)->ino;
	return 0;
}

void vol_dc_add(struct vol *v, vol_ino_t dir, const char *name, vol_ino_t ino)
{
	struct vol_dcache *dc = v->dc;
	size_t len = strlen(name);
	struct vol_dent **pp;

	if (!dc || !dc_complete(dc, dir))
		return;
	pp = dc_find(dc, dir, name, len);
	if (pp) {
		(*pp)->ino = ino;
		return;
	}
	if (dc->count >= VOL_DC_MAX_ENTRIES || dc_insert(dc, dir, name, len, ino))
		dc_flush(dc);	/* cannot keep dir complete: forget all */
}

void vol_dc_del(struct vol *v, vol_ino_t dir, const char *name)
{
	struct vol_dcache *dc = v->dc;
	struct vol_dent **pp, *d;

	if (!dc || !dc_complete(dc, dir))
		return;
	pp = dc_find(dc, dir, name, strlen(name));
	if (!pp)
		return;
	d = *pp;
	*pp = d->next;
	free(d);
	dc->count--;
}

void vol_dc_forget(struct vol *v, vol_ino_t dir)
{
	if (v->dc && dc_complete(v->dc, dir))
		dc_flush(v->dc);
}
