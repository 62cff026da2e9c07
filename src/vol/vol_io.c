/* The volume's io_manager for libext2fs: a write-back cache that keeps metadata writes in memory until a journal commit. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vol/vol_int.h"

#define VOL_HASH_BITS 16
#define VOL_MAX_CLEAN 8192		/* 32 MiB of clean metadata blocks */
#define VOL_BIG_READ 8			/* reads longer than this bypass cache insertion */

static size_t cache_slot(const struct vol_cache *c, uint64_t nr)
{
	return (size_t)((nr * 0x9E3779B97F4A7C15ull) >> (64 - VOL_HASH_BITS)) & (c->nhash - 1);
}

static void list_del(struct vol_blk *b)
{
	b->prev->next = b->next;
	b->next->prev = b->prev;
	b->prev = b->next = b;
}

static void list_add(struct vol_blk *head, struct vol_blk *b)
{
	b->next = head->next;
	b->prev = head;
	head->next->prev = b;
	head->next = b;
}

static struct vol_blk *cache_find(struct vol_cache *c, uint64_t nr)
{
	struct vol_blk *b;

	for (b = c->hash[cache_slot(c, nr)]; b; b = b->hnext)
		if (b->nr == nr)
			return b;
	return NULL;
}

static void cache_unhash(struct vol_cache *c, struct vol_blk *b)
{
	struct vol_blk **pp = &c->hash[cache_slot(c, b->nr)];

	while (*pp && *pp != b)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = b->hnext;
}

static void cache_remove(struct vol_cache *c, struct vol_blk *b)
{
	cache_unhash(c, b);
	list_del(b);
	if (b->dirty)
		c->ndirty--;
	else
		c->nclean--;
	free(b);
}

/* Keep the clean list bounded: drop the least recently used entries. */
static void cache_trim(struct vol_cache *c)
{
	while (c->nclean > c->max_clean && c->clean.prev != &c->clean)
		cache_remove(c, c->clean.prev);
}

/* A new clean entry for nr holding data (VOL_BS bytes). */
static struct vol_blk *cache_insert(struct vol_cache *c, uint64_t nr, const void *data)
{
	struct vol_blk *b = malloc(sizeof(*b));
	size_t s;

	if (!b)
		return NULL;
	b->nr = nr;
	b->dirty = false;
	memcpy(b->data, data, VOL_BS);
	s = cache_slot(c, nr);
	b->hnext = c->hash[s];
	c->hash[s] = b;
	list_add(&c->clean, b);
	c->nclean++;
	cache_trim(c);
	return b;
}

static void cache_set_dirty(struct vol_cache *c, struct vol_blk *b)
{
	if (b->dirty)
		return;
	list_del(b);
	c->nclean--;
	b->dirty = true;
	list_add(&c->dirty, b);
	c->ndirty++;
}

void vol_cache_mark_clean(struct vol_cache *c, struct vol_blk *b)
{
	if (!b->dirty)
		return;
	list_del(b);
	c->ndirty--;
	b->dirty = false;
	list_add(&c->clean, b);
	c->nclean++;
}

int vol_pread_full(int fd, void *buf, size_t n, uint64_t off)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0) {
			/* Past the end of the image reads as zeros, like a sparse file. */
			memset(p, 0, n);
			return 0;
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int vol_pwrite_full(int fd, const void *buf, size_t n, uint64_t off)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* The cache entry of block nr, read from the image if absent. */
static int cache_get(struct vol_cache *c, uint64_t nr, struct vol_blk **out)
{
	unsigned char tmp[VOL_BS];
	struct vol_blk *b = cache_find(c, nr);
	int err;

	if (b) {
		if (!b->dirty) {
			list_del(b);
			list_add(&c->clean, b);
		}
		*out = b;
		return 0;
	}
	err = vol_pread_full(c->fd, tmp, VOL_BS, nr * VOL_BS);
	if (err)
		return err;
	b = cache_insert(c, nr, tmp);
	if (!b)
		return -ENOMEM;
	*out = b;
	return 0;
}

static errcode_t cache_read_bytes(struct vol_cache *c, uint64_t off, size_t len, unsigned char *dst)
{
	uint64_t first = off / VOL_BS, last = (off + len - 1) / VOL_BS, nr;
	int err;

	if (len == 0)
		return 0;
	if (last - first + 1 > VOL_BIG_READ) {
		/* Inode scans and bitmap loads: read straight, then lay the cached (newer) blocks over. */
		err = vol_pread_full(c->fd, dst, len, off);
		if (err)
			return (errcode_t)-err;
		for (nr = first; nr <= last; nr++) {
			struct vol_blk *b = cache_find(c, nr);
			uint64_t bs = nr * VOL_BS, s = bs > off ? bs : off;
			uint64_t e = bs + VOL_BS < off + len ? bs + VOL_BS : off + len;

			if (b)
				memcpy(dst + (s - off), b->data + (s - bs), e - s);
		}
		return 0;
	}
	for (nr = first; nr <= last; nr++) {
		struct vol_blk *b;
		uint64_t bs = nr * VOL_BS, s = bs > off ? bs : off;
		uint64_t e = bs + VOL_BS < off + len ? bs + VOL_BS : off + len;

		err = cache_get(c, nr, &b);
		if (err)
			return (errcode_t)-err;
		memcpy(dst + (s - off), b->data + (s - bs), e - s);
	}
	return 0;
}

/*
 * A write only marks a block dirty when its content changes: ext2fs_flush
 * rewrites every group descriptor block at each commit, and the journal
 * should carry only what really changed.
 */
static errcode_t cache_write_bytes(struct vol_cache *c, uint64_t off, size_t len, const unsigned char *src)
{
	uint64_t first, last, nr;
	int err;

	if (len == 0)
		return 0;
	if (c->read_only)
		return EXT2_ET_RO_FILSYS;
	first = off / VOL_BS;
	last = (off + len - 1) / VOL_BS;
	for (nr = first; nr <= last; nr++) {
		struct vol_blk *b;
		uint64_t bs = nr * VOL_BS, s = bs > off ? bs : off;
		uint64_t e = bs + VOL_BS < off + len ? bs + VOL_BS : off + len;

		err = cache_get(c, nr, &b);
		if (err)
			return (errcode_t)-err;
		if (memcmp(b->data + (s - bs), src + (s - off), e - s) == 0)
			continue;
		memcpy(b->data + (s - bs), src + (s - off), e - s);
		cache_set_dirty(c, b);
	}
	return 0;
}

static size_t chan_bytes(io_channel ch, int count)
{
	return count < 0 ? (size_t)-(long)count : (size_t)count * (size_t)ch->block_size;
}

static errcode_t vio_open(const char *name, int flags, io_channel *out)
{
	struct vol_cache *c = NULL;
	io_channel ch = NULL;
	char *end;
	long fd;

	if (!name || strncmp(name, "fd:", 3) != 0)
		return EXT2_ET_BAD_DEVICE_NAME;
	fd = strtol(name + 3, &end, 10);
	if (*end || fd < 0)
		return EXT2_ET_BAD_DEVICE_NAME;
	ch = calloc(1, sizeof(*ch));
	c = calloc(1, sizeof(*c));
	if (!ch || !c)
		goto nomem;
	c->nhash = (size_t)1 << VOL_HASH_BITS;
	c->hash = calloc(c->nhash, sizeof(*c->hash));
	ch->name = strdup(name);
	if (!c->hash || !ch->name)
		goto nomem;
	c->fd = (int)fd;
	c->max_clean = VOL_MAX_CLEAN;
	c->clean.prev = c->clean.next = &c->clean;
	c->dirty.prev = c->dirty.next = &c->dirty;
	c->read_only = !(flags & IO_FLAG_RW);
	ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	ch->manager = &vol_io_manager;
	ch->block_size = 1024;
	ch->refcount = 1;
	ch->private_data = c;
	*out = ch;
	return 0;
nomem:
	if (c)
		free(c->hash);
	if (ch)
		free(ch->name);
	free(c);
	free(ch);
	return EXT2_ET_NO_MEMORY;
}

static errcode_t vio_close(io_channel ch)
{
	struct vol_cache *c = ch->private_data;

	if (--ch->refcount > 0)
		return 0;
	/* Dirty blocks left here were never committed: dropping them is what a crash would do. */
	while (c->clean.next != &c->clean)
		cache_remove(c, c->clean.next);
	while (c->dirty.next != &c->dirty)
		cache_remove(c, c->dirty.next);
	free(c->hash);
	free(c);
	free(ch->name);
	free(ch);
	return 0;
}

static errcode_t vio_set_blksize(io_channel ch, int blksize)
{
	ch->block_size = blksize;
	return 0;
}

static errcode_t vio_read_blk64(io_channel ch, unsigned long long block, int count, void *data)
{
	return cache_read_bytes(ch->private_data, block * (uint64_t)ch->block_size, chan_bytes(ch, count), data);
}

static errcode_t vio_write_blk64(io_channel ch, unsigned long long block, int count, const void *data)
{
	return cache_write_bytes(ch->private_data, block * (uint64_t)ch->block_size, chan_bytes(ch, count), data);
}

static errcode_t vio_read_blk(io_channel ch, unsigned long block, int count, void *data)
{
	return vio_read_blk64(ch, block, count, data);
}

static errcode_t vio_write_blk(io_channel ch, unsigned long block, int count, const void *data)
{
	return vio_write_blk64(ch, block, count, data);
}

static errcode_t vio_write_byte(io_channel ch, unsigned long offset, int count, const void *data)
{
	if (count < 0)
		return EXT2_ET_INVALID_ARGUMENT;
	return cache_write_bytes(ch->private_data, offset, (size_t)count, data);
}

static errcode_t vio_flush(io_channel ch)
{
	/* Nothing reaches the image outside a commit (vol_jnl.c). */
	return 0;
}

static errcode_t vio_set_option(io_channel ch, const char *option, const char *arg)
{
	return EXT2_ET_INVALID_ARGUMENT;
}

struct struct_io_manager vol_io_manager = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "libretto volume cache",
	.open = vio_open,
	.close = vio_close,
	.set_blksize = vio_set_blksize,
	.read_blk = vio_read_blk,
	.write_blk = vio_write_blk,
	.flush = vio_flush,
	.write_byte = vio_write_byte,
	.set_option = vio_set_option,
	.read_blk64 = vio_read_blk64,
	.write_blk64 = vio_write_blk64,
};

void vol_cache_invalidate(struct vol_cache *c, uint64_t blk, uint64_t n)
{
	uint64_t i;

	if (c->nclean + c->ndirty == 0)
		return;
	for (i = 0; i < n; i++) {
		struct vol_blk *b = cache_find(c, blk + i);

		if (b)
			cache_remove(c, b);
	}
}

int vol_cache_drop(struct vol_cache *c, uint64_t blk, uint64_t n)
{
	vol_cache_invalidate(c, blk, n);
	return 0;
}

size_t vol_cache_ndirty(const struct vol_cache *c)
{
	return c->ndirty;
}

static int blk_cmp(const void *a, const void *b)
{
	const struct vol_blk *x = *(struct vol_blk *const *)a, *y = *(struct vol_blk *const *)b;

	return x->nr < y->nr ? -1 : x->nr > y->nr;
}

int vol_cache_dirty_list(struct vol_cache *c, struct vol_blk ***out, size_t *n)
{
	struct vol_blk **arr, *b;
	size_t i = 0;

	*out = NULL;
	*n = 0;
	if (c->ndirty == 0)
		return 0;
	arr = malloc(c->ndirty * sizeof(*arr));
	if (!arr)
		return -ENOMEM;
	for (b = c->dirty.next; b != &c->dirty; b = b->next)
		arr[i++] = b;
	qsort(arr, i, sizeof(*arr), blk_cmp);
	*out = arr;
	*n = i;
	return 0;
}

int vol_cache_touch(struct vol_cache *c, uint64_t nr)
{
	struct vol_blk *b;
	int err = cache_get(c, nr, &b);

	if (!err)
		cache_set_dirty(c, b);
	return err;
}
