/* File data on a volume: block mapping, direct reads and writes of data blocks (data=ordered), truncate, fallocate, SEEK_DATA. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vol/vol_int.h"
#include "vol/vol_ops.h"

enum { RUN_HOLE, RUN_DATA, RUN_UNINIT };

/* A run of logical blocks starting at the asked one, all of one kind (len >= 1). */
struct vol_run {
	int kind;
	uint64_t pblk, len;
};

#define RUN_FOREVER ((uint64_t)1 << 40)

/*
 * Look lblk up in the extent tree ourselves, by binary search in each
 * node: ext2fs_extent_goto walks the siblings one by one, which costs
 * tens of microseconds in a full leaf (340 extents).  Returns 1 when
 * found (r filled), 0 to fall back to libext2fs (anything unexpected).
 */
static int map_fast(struct vol *v, struct ext2_inode_large *in, uint64_t lblk, struct vol_run *r)
{
	unsigned char buf[VOL_BS];
	const unsigned char *node = (const unsigned char *)in->i_block;
	uint64_t bound = UINT64_MAX;
	size_t room = sizeof(in->i_block);

	for (int level = 0; level < 6; level++) {
		const struct ext3_extent_header *eh = (const struct ext3_extent_header *)node;
		unsigned n = ext2fs_le16_to_cpu(eh->eh_entries), depth = ext2fs_le16_to_cpu(eh->eh_depth);
		unsigned lo = 0, hi;

		if (ext2fs_le16_to_cpu(eh->eh_magic) != EXT3_EXT_MAGIC ||
		    sizeof(*eh) + (size_t)n * sizeof(struct ext3_extent) > room)
			return 0;
		if (depth == 0) {
			const struct ext3_extent *x = (const struct ext3_extent *)(eh + 1);
			uint64_t start, len, next;

			/* The last extent starting at or before lblk. */
			hi = n;
			while (lo < hi) {
				unsigned mid = (lo + hi) / 2;

				if (ext2fs_le32_to_cpu(x[mid].ee_block) <= lblk)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo > 0) {
				const struct ext3_extent *f = &x[lo - 1];
				unsigned l = ext2fs_le16_to_cpu(f->ee_len);
				bool uninit = l > EXT_INIT_MAX_LEN;

				start = ext2fs_le32_to_cpu(f->ee_block);
				len = uninit ? l - EXT_INIT_MAX_LEN : l;
				if (lblk < start + len) {
					uint64_t p = ext2fs_le32_to_cpu(f->ee_start) |
						     (uint64_t)ext2fs_le16_to_cpu(f->ee_start_hi) << 32;

					v->ec.ino = 0;	/* set by the caller */
					v->ec.lblk = start;
					v->ec.len = len;
					v->ec.pblk = p;
					v->ec.uninit = uninit;
					r->kind = uninit ? RUN_UNINIT : RUN_DATA;
					r->pblk = p + (lblk - start);
					r->len = start + len - lblk;
					return 1;
				}
			}
			next = lo < n ? ext2fs_le32_to_cpu(x[lo].ee_block) : bound;
			r->kind = RUN_HOLE;
			r->pblk = 0;
			r->len = next == UINT64_MAX || next - lblk > RUN_FOREVER ? RUN_FOREVER : next - lblk;
			return next > lblk ? 1 : 0;
		} else {
			const struct ext3_extent_idx *x = (const struct ext3_extent_idx *)(eh + 1);
			uint64_t child;

			if (n == 0)
				return 0;
			hi = n;
			while (lo < hi) {
				unsigned mid = (lo + hi) / 2;

				if (ext2fs_le32_to_cpu(x[mid].ei_block) <= lblk)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo == 0) {
				/* Before the first subtree: a hole up to it. */
				r->kind = RUN_HOLE;
				r->pblk = 0;
				r->len = ext2fs_le32_to_cpu(x[0].ei_block) - lblk;
				return r->len > 0;
			}
			if (lo < n)
				bound = ext2fs_le32_to_cpu(x[lo].ei_block);
			child = ext2fs_le32_to_cpu(x[lo - 1].ei_leaf) | (uint64_t)ext2fs_le16_to_cpu(x[lo - 1].ei_leaf_hi) << 32;
			if (io_channel_read_blk64(v->fs->io, child, 1, buf))
				return 0;
			node = buf;
			room = VOL_BS;
		}
	}
	return 0;
}

static int map_run(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t lblk, struct vol_run *r)
{
	struct vol_ext_cache *ec = &v->ec;
	ext2_extent_handle_t h;
	struct ext2fs_extent e;
	errcode_t err;

	if (!(in->i_flags & EXT4_EXTENTS_FL)) {
		blk64_t p = 0;
		int rf = 0;

		err = ext2fs_bmap2(v->fs, ino, (struct ext2_inode *)in, NULL, 0, lblk, &rf, &p);
		if (err)
			return vol_err(err);
		r->kind = p ? RUN_DATA : RUN_HOLE;
		r->pblk = p;
		r->len = 1;
		return 0;
	}
	if (ec->valid && ec->ino == ino && lblk >= ec->lblk && lblk < ec->lblk + ec->len) {
		r->kind = ec->uninit ? RUN_UNINIT : RUN_DATA;
		r->pblk = ec->pblk + (lblk - ec->lblk);
		r->len = ec->lblk + ec->len - lblk;
		return 0;
	}
	if (map_fast(v, in, lblk, r)) {
		if (r->kind != RUN_HOLE) {
			ec->ino = ino;
			ec->valid = true;
		}
		return 0;
	}
	err = ext2fs_extent_open2(v->fs, ino, (struct ext2_inode *)in, &h);
	if (err)
		return vol_err(err);
	err = ext2fs_extent_goto2(h, 0, lblk);
	if (!err) {
		err = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &e);
		if (!err && lblk >= e.e_lblk && lblk < e.e_lblk + e.e_len) {
			ec->ino = ino;
			ec->lblk = e.e_lblk;
			ec->len = e.e_len;
			ec->pblk = e.e_pblk;
			ec->uninit = e.e_flags & EXT2_EXTENT_FLAGS_UNINIT;
			ec->valid = true;
			r->kind = ec->uninit ? RUN_UNINIT : RUN_DATA;
			r->pblk = e.e_pblk + (lblk - e.e_lblk);
			r->len = e.e_lblk + e.e_len - lblk;
			ext2fs_extent_free(h);
			return 0;
		}
	}
	/* A hole: it lasts until the next extent, found from where goto stopped. */
	r->kind = RUN_HOLE;
	r->pblk = 0;
	r->len = RUN_FOREVER;
	if (ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &e) == 0 && e.e_lblk > lblk) {
		r->len = e.e_lblk - lblk;
	} else {
		int guard = 0;

		while (guard++ < 4 && ext2fs_extent_get(h, EXT2_EXTENT_NEXT_LEAF, &e) == 0) {
			if (e.e_lblk > lblk) {
				r->len = e.e_lblk - lblk;
				break;
			}
			if (lblk < e.e_lblk + e.e_len) {
				/* goto missed an extent that covers lblk: take it. */
				r->kind = e.e_flags & EXT2_EXTENT_FLAGS_UNINIT ? RUN_UNINIT : RUN_DATA;
				r->pblk = e.e_pblk + (lblk - e.e_lblk);
				r->len = e.e_lblk + e.e_len - lblk;
				break;
			}
		}
	}
	ext2fs_extent_free(h);
	return 0;
}

static const unsigned char zeros[VOL_BS];

/*
 * Write len bytes at byte inoff of physical block pblk onwards.  Blocks
 * new to the file (fresh) get zeros around the data so nothing stale
 * shows; blocks already holding file data are written in place.
 */
static int write_phys(struct vol *v, uint64_t pblk, uint64_t inoff, const void *src, size_t len, bool fresh)
{
	struct iovec iov[3];
	uint64_t start = pblk * VOL_BS + inoff, tail;
	int n = 0;
	ssize_t want = 0, r;

	vol_cache_invalidate(v->cache, pblk, (inoff + len + VOL_BS - 1) / VOL_BS);
	if (fresh && inoff) {
		iov[n].iov_base = (void *)zeros;
		iov[n++].iov_len = inoff;
		start -= inoff;
		want += (ssize_t)inoff;
	}
	iov[n].iov_base = (void *)src;
	iov[n++].iov_len = len;
	want += (ssize_t)len;
	tail = (inoff + len) % VOL_BS;
	if (fresh && tail) {
		iov[n].iov_base = (void *)zeros;
		iov[n++].iov_len = VOL_BS - tail;
		want += (ssize_t)(VOL_BS - tail);
	}
	do
		r = pwritev(v->fd, iov, n, (off_t)start);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r != want) {
		/* A short write on a regular file: finish it piece by piece. */
		uint64_t o = start;

		for (int i = 0; i < n; i++) {
			int err = vol_pwrite_full(v->fd, iov[i].iov_base, iov[i].iov_len, o);

			if (err)
				return err;
			o += iov[i].iov_len;
		}
	}
	v->data_unsynced = true;
	return 0;
}

/*
 * Blocks kept back from file data so the extent tree can still grow:
 * ext2fs_fallocate leaks the blocks it took when it then fails to get a
 * block for a new extent node (libext2fs 1.47.0).
 */
#define VOL_RESERVE 16

/* Cap n to what file data may still take; 0: none (-ENOSPC). */
static uint64_t room_for(struct vol *v, uint64_t n)
{
	uint64_t free = ext2fs_free_blocks_count(v->fs->super);

	if (free <= VOL_RESERVE)
		return 0;
	return n < free - VOL_RESERVE ? n : free - VOL_RESERVE;
}

/* Allocation for block-mapped (ext2/ext3 style) inodes only; extent inodes use fill_hole. */
static int alloc_range(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t lblk, uint64_t n, int mode)
{
	blk64_t goal = ext2fs_find_inode_goal(v->fs, ino, (struct ext2_inode *)in, lblk);
	errcode_t e;
	int err;

	n = room_for(v, n);
	if (n == 0)
		return -ENOSPC;
	v->ec.valid = false;
	v->meta_dirty = true;
	e = ext2fs_fallocate(v->fs, mode, ino, (struct ext2_inode *)in, goal, lblk, n);
	/* ext2fs_fallocate counts the new blocks in *in (i_blocks) without writing it, even when it fails half way. */
	err = vol_iwrite(v, ino, in);
	return e ? vol_err(e) : err;
}

ssize_t vol_pread(struct vol *v, vol_ino_t ino, void *buf, size_t n, uint64_t off)
{
	struct ext2_inode_large in;
	unsigned char *dst = buf;
	uint64_t size, done = 0;
	int err;

	pthread_mutex_lock(&v->mu);
	err = vol_iread(v, ino, &in);
	if (err)
		goto out;
	if (LINUX_S_ISDIR(in.i_mode)) {
		err = -EISDIR;
		goto out;
	}
	size = EXT2_I_SIZE(&in);
	if (off >= size || n == 0)
		goto out;
	if (n > size - off)
		n = (size_t)(size - off);
	if (LINUX_S_ISLNK(in.i_mode) && ext2fs_is_fast_symlink((struct ext2_inode *)&in)) {
		memcpy(dst, (char *)in.i_block + off, n);
		done = n;
		goto out;
	}
	while (done < n) {
		uint64_t pos = off + done, lblk = pos / VOL_BS, len;
		struct vol_run r;

		err = map_run(v, ino, &in, lblk, &r);
		if (err)
			break;
		len = (lblk + r.len) * VOL_BS - pos;
		if (len > n - done)
			len = n - done;
		if (r.kind == RUN_DATA)
			err = vol_pread_full(v->fd, dst + done, len, r.pblk * VOL_BS + pos % VOL_BS);
		else
			memset(dst + done, 0, len);
		if (err)
			break;
		done += len;
	}
out:
	pthread_mutex_unlock(&v->mu);
	if (err && done == 0)
		return err;
	return (ssize_t)done;
}

/*
 * The blocks [a, a + nb) of an unwritten extent now hold data: split the
 * extent in up to three (unwritten, written, unwritten) in one pass.
 * (ext2fs_bmap2(BMAP_SET) block by block left bad extent trees behind.)
 */
static int convert_uninit(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t a, uint64_t nb)
{
	struct ext2fs_extent e, left, mid, right;
	ext2_extent_handle_t h;
	uint64_t b = a + nb;
	errcode_t err;

	v->ec.valid = false;
	v->meta_dirty = true;
	err = ext2fs_extent_open2(v->fs, ino, (struct ext2_inode *)in, &h);
	if (err)
		return vol_err(err);
	err = ext2fs_extent_goto(h, a);
	if (!err)
		err = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &e);
	if (err)
		goto out;
	if (!(e.e_flags & EXT2_EXTENT_FLAGS_UNINIT) || a < e.e_lblk || b > e.e_lblk + (uint64_t)e.e_len) {
		err = EXT2_ET_EXTENT_NOT_FOUND;
		goto out;
	}
	if (a == e.e_lblk) {
		/*
		 * Writing the start of an unwritten extent right after a written
		 * one that ends at the same place on disk (a sequential writer
		 * on a fallocated file): grow that one and shrink this one, so
		 * the tree does not gain an extent per write.
		 */
		struct ext2fs_extent prev;

		if (ext2fs_extent_get(h, EXT2_EXTENT_PREV_LEAF, &prev) == 0 &&
		    !(prev.e_flags & EXT2_EXTENT_FLAGS_UNINIT) && prev.e_lblk + (uint64_t)prev.e_len == a &&
		    prev.e_pblk + prev.e_len == e.e_pblk && prev.e_len + nb <= EXT_INIT_MAX_LEN) {
			prev.e_len += (uint32_t)nb;
			err = ext2fs_extent_replace(h, 0, &prev);
			if (!err)
				err = ext2fs_extent_get(h, EXT2_EXTENT_NEXT_LEAF, &right);
			if (!err && (right.e_lblk != e.e_lblk || right.e_pblk != e.e_pblk))
				err = EXT2_ET_EXTENT_NOT_FOUND;
			if (!err && b == e.e_lblk + (uint64_t)e.e_len) {
				/*
				 * If e led its leaf, the index above must now start at its
				 * successor (delete does not fix that; no successor: the
				 * leaf went away with it).
				 */
				err = ext2fs_extent_delete(h, 0);
				if (!err && ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &right) == 0 && right.e_lblk > a)
					err = ext2fs_extent_fix_parents(h);
			} else if (!err) {
				right.e_lblk = b;
				right.e_pblk = e.e_pblk + nb;
				right.e_len = (uint32_t)(e.e_len - nb);
				err = ext2fs_extent_replace(h, 0, &right);
				if (!err)
					err = ext2fs_extent_fix_parents(h);
			}
			goto out;
		}
		/* Back to e (PREV_LEAF moved the handle or failed at the first extent). */
		err = ext2fs_extent_goto(h, a);
		if (err)
			goto out;
	}
	left = e;
	left.e_len = (uint32_t)(a - e.e_lblk);
	mid = e;
	mid.e_lblk = a;
	mid.e_pblk = e.e_pblk + (a - e.e_lblk);
	mid.e_len = (uint32_t)nb;
	mid.e_flags &= ~EXT2_EXTENT_FLAGS_UNINIT;
	right = e;
	right.e_lblk = b;
	right.e_pblk = e.e_pblk + (b - e.e_lblk);
	right.e_len = (uint32_t)(e.e_lblk + e.e_len - b);
	if (left.e_len) {
		err = ext2fs_extent_replace(h, 0, &left);
		if (!err)
			err = ext2fs_extent_insert(h, EXT2_EXTENT_INSERT_AFTER, &mid);
	} else {
		err = ext2fs_extent_replace(h, 0, &mid);
	}
	if (!err && right.e_len)
		err = ext2fs_extent_insert(h, EXT2_EXTENT_INSERT_AFTER, &right);
	if (!err)
		err = ext2fs_extent_fix_parents(h);
out:
	ext2fs_extent_free(h);
	if (err)
		return vol_err(err);
	return vol_iwrite(v, ino, in);
}

/* Free blocks [b, b + n) (n >= 1). */
static void free_blocks(struct vol *v, uint64_t b, uint64_t n)
{
	/*
	 * libext2fs 1.47.0's range call refuses a range that ends at the last
	 * block of the file system: the last block goes on its own.
	 */
	if (n > 1)
		ext2fs_block_alloc_stats_range(v->fs, b, (blk_t)(n - 1), -1);
	ext2fs_block_alloc_stats2(v->fs, b + n - 1, -1);
}

/* Allocate blocks [b, b + n) (n >= 1); the last one alone (see free_blocks). */
static void take_blocks(struct vol *v, uint64_t b, uint64_t n)
{
	if (n > 1)
		ext2fs_block_alloc_stats_range(v->fs, b, (blk_t)(n - 1), +1);
	ext2fs_block_alloc_stats2(v->fs, b + n - 1, +1);
}

/*
 * Map the hole [lblk, lblk + n) (the caller knows it is all hole) to new
 * blocks: one extent, as long as the free run found near the goal allows,
 * unwritten when uninit, merged into the extent just before when that one
 * ends at lblk on disk too.  *got receives the blocks mapped from lblk on
 * (>= 1).  Our own instead of ext2fs_fallocate: libext2fs 1.47.0 fills the
 * whole gap up to the next extent when no extent lies before lblk (100
 * bytes written at 1 MiB into a file with data at 5 GiB took 5 GiB of
 * blocks), and leaks what it took when it fails half way.
 */
static int fill_hole(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t lblk, uint64_t n, bool uninit,
		     uint64_t *got)
{
	const struct ext3_extent_header *eh = (const struct ext3_extent_header *)in->i_block;
	uint64_t max = uninit ? EXT_UNINIT_MAX_LEN : EXT_INIT_MAX_LEN;
	struct ext2fs_extent e, ne;
	ext2_extent_handle_t h;
	blk64_t goal, pblk, plen;
	bool done = false;
	errcode_t err;

	n = room_for(v, n);
	if (n == 0 || ext2fs_free_blocks_count(v->fs->super) < VOL_META_ROOM + n)
		return -ENOSPC;
	if (n > max)
		n = max;
	v->ec.valid = false;
	v->meta_dirty = true;
	goal = ext2fs_find_inode_goal(v->fs, ino, (struct ext2_inode *)in, lblk);
	err = ext2fs_new_range(v->fs, 0, goal, n, NULL, &pblk, &plen);
	if (err)
		return err == EXT2_ET_BLOCK_ALLOC_FAIL ? -ENOSPC : vol_err(err);
	if (plen == 0 || plen > n)
		return -EIO;
	err = ext2fs_extent_open2(v->fs, ino, (struct ext2_inode *)in, &h);
	if (err)
		return vol_err(err);
	take_blocks(v, pblk, plen);
	ext2fs_iblk_add_blocks(v->fs, (struct ext2_inode *)in, plen);
	if (lblk > 0 && ext2fs_le16_to_cpu(eh->eh_entries) > 0 && ext2fs_extent_goto(h, lblk - 1) == 0 &&
	    ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &e) == 0 && e.e_lblk + (uint64_t)e.e_len == lblk &&
	    e.e_pblk + e.e_len == pblk && !(e.e_flags & EXT2_EXTENT_FLAGS_UNINIT) == !uninit && e.e_len + plen <= max) {
		e.e_len += (uint32_t)plen;
		err = ext2fs_extent_replace(h, 0, &e);
		done = err == 0;
	}
	if (!done) {
		int op = EXT2_EXTENT_INSERT_AFTER;

		memset(&ne, 0, sizeof(ne));
		ne.e_lblk = lblk;
		ne.e_pblk = pblk;
		ne.e_len = (uint32_t)plen;
		ne.e_flags = uninit ? EXT2_EXTENT_FLAGS_UNINIT : 0;
		err = 0;
		if (ext2fs_le16_to_cpu(eh->eh_entries) > 0) {
			/* goto leaves the handle on the extent before lblk, or the first one after when none is before. */
			ext2fs_extent_goto(h, lblk);
			err = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &e);
			if (!err && e.e_lblk > lblk)
				op = 0;
		}
		if (!err)
			err = ext2fs_extent_insert(h, op, &ne);
		if (!err)
			err = ext2fs_extent_fix_parents(h);
	}
	ext2fs_extent_free(h);
	if (err) {
		free_blocks(v, pblk, plen);
		ext2fs_iblk_sub_blocks(v->fs, (struct ext2_inode *)in, plen);
		vol_iwrite(v, ino, in);
		return vol_err(err);
	}
	*got = plen;
	return vol_iwrite(v, ino, in);
}

/*
 * Remove the blocks [a, b) of ino (both written and unwritten; holes
 * stay holes), one extent at a time, splitting an extent that reaches
 * past both ends.  Our own loop: ext2fs_punch of libext2fs 1.47.0 fails
 * and leaks blocks when the file holds the file system's last block.
 */
static int punch_range(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t a, uint64_t b)
{
	const struct ext3_extent_header *eh = (const struct ext3_extent_header *)in->i_block;
	ext2_extent_handle_t h;
	struct ext2fs_extent e, r;
	uint64_t freed = 0;
	errcode_t err = 0;
	int guard = 0;

	if (a >= b)
		return 0;
	v->ec.valid = false;
	v->meta_dirty = true;
	err = ext2fs_extent_open2(v->fs, ino, (struct ext2_inode *)in, &h);
	if (err)
		return vol_err(err);
	while (guard++ < 10000000 && ext2fs_le16_to_cpu(eh->eh_entries) > 0) {
		uint64_t s, t;

		/* The first extent that ends after a: found afresh each time, the tree changes under us. */
		ext2fs_extent_goto(h, a);
		err = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &e);
		if (err == EXT2_ET_NO_CURRENT_NODE) {
			err = 0;
			break;
		}
		if (err)
			break;
		if (!(e.e_flags & EXT2_EXTENT_FLAGS_LEAF)) {
			err = EXT2_ET_EXTENT_NOT_FOUND;
			break;
		}
		if (e.e_lblk + (uint64_t)e.e_len <= a) {
			err = ext2fs_extent_get(h, EXT2_EXTENT_NEXT_LEAF, &e);
			if (err == EXT2_ET_EXTENT_NO_NEXT) {
				err = 0;
				break;
			}
			if (err)
				break;
			if (e.e_lblk + (uint64_t)e.e_len <= a) {
				/* NEXT_LEAF wrapped around to the start: nothing after a. */
				break;
			}
		}
		if (e.e_lblk >= b || e.e_len == 0)
			break;
		s = e.e_lblk > a ? e.e_lblk : a;
		t = e.e_lblk + (uint64_t)e.e_len < b ? e.e_lblk + (uint64_t)e.e_len : b;
		if (s == e.e_lblk && t == e.e_lblk + e.e_len) {
			err = ext2fs_extent_delete(h, 0);
			/* If e led its leaf, the index above must now start at its successor. */
			if (!err && ext2fs_le16_to_cpu(eh->eh_entries) > 0 &&
			    ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &r) == 0)
				err = ext2fs_extent_fix_parents(h);
		} else if (s == e.e_lblk) {
			r = e;
			r.e_lblk = t;
			r.e_pblk = e.e_pblk + (t - e.e_lblk);
			r.e_len = (uint32_t)(e.e_lblk + e.e_len - t);
			err = ext2fs_extent_replace(h, 0, &r);
			if (!err)
				err = ext2fs_extent_fix_parents(h);
		} else if (t == e.e_lblk + e.e_len) {
			r = e;
			r.e_len = (uint32_t)(s - e.e_lblk);
			err = ext2fs_extent_replace(h, 0, &r);
		} else {
			/* The middle goes: the right part becomes an extent of its own (a leaf split may need a block). */
			if (ext2fs_free_blocks_count(v->fs->super) < VOL_META_ROOM) {
				ext2fs_extent_free(h);
				if (freed)
					ext2fs_iblk_sub_blocks(v->fs, (struct ext2_inode *)in, freed);
				vol_iwrite(v, ino, in);
				return -ENOSPC;
			}
			r = e;
			r.e_len = (uint32_t)(s - e.e_lblk);
			err = ext2fs_extent_replace(h, 0, &r);
			if (!err) {
				r = e;
				r.e_lblk = t;
				r.e_pblk = e.e_pblk + (t - e.e_lblk);
				r.e_len = (uint32_t)(e.e_lblk + e.e_len - t);
				err = ext2fs_extent_insert(h, EXT2_EXTENT_INSERT_AFTER, &r);
			}
			if (!err)
				err = ext2fs_extent_fix_parents(h);
		}
		if (err)
			break;
		free_blocks(v, e.e_pblk + (s - e.e_lblk), t - s);
		freed += t - s;
	}
	ext2fs_extent_free(h);
	if (freed)
		ext2fs_iblk_sub_blocks(v->fs, (struct ext2_inode *)in, freed);
	if (err) {
		vol_iwrite(v, ino, in);
		return vol_err(err);
	}
	return vol_iwrite(v, ino, in);
}

/*
 * The common case of a growing file: the hole at lblk starts right after
 * the file's last extent and the blocks after that extent are free.  Then
 * the extent just gets longer: much cheaper than ext2fs_fallocate, which
 * costs tens of microseconds per call.  Returns the blocks added (0: not
 * this case, the caller allocates the general way).
 */
static uint64_t extend_tail(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t lblk, uint64_t want)
{
	const struct ext3_extent_header *eh = (const struct ext3_extent_header *)in->i_block;
	uint64_t p, n, k = 0, total = ext2fs_blocks_count(v->fs->super);
	ext2_extent_handle_t h;
	struct ext2fs_extent e;

	if (!(in->i_flags & EXT4_EXTENTS_FL) || ext2fs_le16_to_cpu(eh->eh_entries) == 0)
		return 0;
	if (ext2fs_extent_open2(v->fs, ino, (struct ext2_inode *)in, &h))
		return 0;
	if (ext2fs_extent_get(h, EXT2_EXTENT_LAST_LEAF, &e) || (e.e_flags & EXT2_EXTENT_FLAGS_UNINIT) ||
	    e.e_lblk + (uint64_t)e.e_len != lblk || e.e_len >= EXT_INIT_MAX_LEN)
		goto out;
	p = e.e_pblk + e.e_len;
	n = room_for(v, want < EXT_INIT_MAX_LEN - e.e_len ? want : EXT_INIT_MAX_LEN - e.e_len);
	if (p >= total)
		goto out;
	if (n > total - p)
		n = total - p;
	while (k < n && !ext2fs_test_block_bitmap2(v->fs->block_map, p + k))
		k++;
	if (k == 0)
		goto out;
	take_blocks(v, p, k);
	e.e_len += (uint32_t)k;
	if (ext2fs_extent_replace(h, 0, &e)) {
		free_blocks(v, p, k);
		k = 0;
		goto out;
	}
	ext2fs_iblk_add_blocks(v->fs, (struct ext2_inode *)in, k);
	v->ec.valid = false;
	v->meta_dirty = true;
out:
	ext2fs_extent_free(h);
	if (k && vol_iwrite(v, ino, in))
		return 0;
	return k;
}

/*
 * Under v->mu, before data is written to ino: the volume is writable,
 * blocks freed in the running transaction are committed (they must not
 * receive data before it commits, vol_jnl.c), and ino, read into *in, is
 * a regular file.  A directory: -EISDIR; any other type: notreg (the
 * callers' system calls answer differently).
 */
static int data_write_target(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, int notreg)
{
	int err;

	if (v->flags & VOL_RDONLY)
		return -EROFS;
	if (v->nfreed) {
		err = vol_jnl_commit(v, false);
		if (err)
			return err;
	}
	err = vol_iread(v, ino, in);
	if (err)
		return err;
	if (LINUX_S_ISDIR(in->i_mode))
		return -EISDIR;
	if (!LINUX_S_ISREG(in->i_mode))
		return notreg;
	return 0;
}

ssize_t vol_pwrite(struct vol *v, vol_ino_t ino, const void *buf, size_t n, uint64_t off, unsigned flags,
		   uint64_t *end)
{
	struct ext2_inode_large in;
	const unsigned char *src = buf;
	uint64_t size, done = 0, fresh_lo = 0, fresh_hi = 0;
	int err;

	pthread_mutex_lock(&v->mu);
	err = data_write_target(v, ino, &in, -EINVAL);
	if (err)
		goto out;
	size = EXT2_I_SIZE(&in);
	if (flags & VOL_APPEND)
		off = size;
	if (n == 0) {
		if (end)
			*end = off;
		goto out;
	}
	if (off >= VOL_MAX_FILE) {
		err = -EFBIG;
		goto out;
	}
	if (n > VOL_MAX_FILE - off)
		n = (size_t)(VOL_MAX_FILE - off);
	while (done < n) {
		uint64_t pos = off + done, lblk = pos / VOL_BS, len, nb;
		struct vol_run r;

		err = map_run(v, ino, &in, lblk, &r);
		if (err)
			break;
		if (r.kind == RUN_HOLE) {
			uint64_t want = (off + n + VOL_BS - 1) / VOL_BS - lblk;

			if (want > r.len)
				want = r.len;
			{
				uint64_t k = extend_tail(v, ino, &in, lblk, want);

				if (k) {
					fresh_lo = lblk;
					fresh_hi = lblk + k;
					continue;
				}
			}
			if (in.i_flags & EXT4_EXTENTS_FL) {
				err = fill_hole(v, ino, &in, lblk, want, false, &want);
			} else {
				err = alloc_range(v, ino, &in, lblk, want, EXT2_FALLOCATE_FORCE_INIT);
				if (err == -ENOSPC && want > 1) {
					/* Nearly full: take what is left block by block, so the count written is exact. */
					want = 1;
					err = alloc_range(v, ino, &in, lblk, want, EXT2_FALLOCATE_FORCE_INIT);
				}
			}
			if (err)
				break;
			fresh_lo = lblk;
			fresh_hi = lblk + want;
			continue;
		}
		len = (lblk + r.len) * VOL_BS - pos;
		if (len > n - done)
			len = n - done;
		if (r.kind == RUN_UNINIT && ext2fs_free_blocks_count(v->fs->super) < VOL_META_ROOM) {
			/* Splitting the extent may need a block: refuse before writing anything. */
			err = -ENOSPC;
			break;
		}
		/* Only the first and last block of a piece can be partial: freshness of those matters. */
		{
			uint64_t last = (pos + len - 1) / VOL_BS;
			bool fresh_first = r.kind == RUN_UNINIT || (lblk >= fresh_lo && lblk < fresh_hi);
			bool fresh_last = r.kind == RUN_UNINIT || (last >= fresh_lo && last < fresh_hi);

			if (fresh_first == fresh_last || last == lblk) {
				err = write_phys(v, r.pblk, pos % VOL_BS, src + done, len, fresh_first);
			} else {
				/* Rare: split so each end gets its own treatment. */
				uint64_t l1 = VOL_BS - pos % VOL_BS;

				err = write_phys(v, r.pblk, pos % VOL_BS, src + done, l1, fresh_first);
				if (!err)
					err = write_phys(v, r.pblk + 1, 0, src + done + l1, len - l1, fresh_last);
			}
			if (err)
				break;
		}
		if (r.kind == RUN_UNINIT) {
			nb = (pos + len + VOL_BS - 1) / VOL_BS - lblk;
			err = convert_uninit(v, ino, &in, lblk, nb);
			if (err)
				break;
		}
		done += len;
	}
	if (done > 0) {
		bool grow = off + done > EXT2_I_SIZE(&in);
		int e2 = 0;

		if (grow)
			ext2fs_inode_size_set(v->fs, (struct ext2_inode *)&in, off + done);
		if (vol_touch(&in, VOL_T_M | VOL_T_C) || grow)
			e2 = vol_iwrite(v, ino, &in);
		/* Bytes written before an error count, as Linux does. */
		err = e2;
	}
	if (end)
		*end = off + done;
out:
	vol_maybe_commit(v);
	pthread_mutex_unlock(&v->mu);
	if (err)
		return err;
	return (ssize_t)done;
}

/*
 * Remove every block of ino from logical block start on (truncate), and
 * write the inode.  Our own loop over the extent tree from its end:
 * ext2fs_punch of libext2fs 1.47.0 fails ("Illegal block number") and
 * leaks the blocks when the file holds the file system's last block.
 */
int vol_punch_tail(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t start)
{
	ext2_extent_handle_t h;
	struct ext2fs_extent e;
	uint64_t freed = 0;
	errcode_t err;
	int guard = 0;

	v->ec.valid = false;
	v->meta_dirty = true;
	if (!(in->i_flags & EXT4_EXTENTS_FL)) {
		err = ext2fs_punch(v->fs, ino, (struct ext2_inode *)in, NULL, start, ~0ULL);
		return err ? vol_err(err) : vol_iread(v, ino, in);
	}
	err = ext2fs_extent_open2(v->fs, ino, (struct ext2_inode *)in, &h);
	if (err)
		return vol_err(err);
	while (guard++ < 100000000) {
		const struct ext3_extent_header *eh = (const struct ext3_extent_header *)in->i_block;

		/* The handle edits *in's root in place; an empty tree has nothing to walk (and get would crash). */
		if (ext2fs_le16_to_cpu(eh->eh_entries) == 0)
			break;
		err = ext2fs_extent_get(h, EXT2_EXTENT_LAST_LEAF, &e);
		if (err == EXT2_ET_EXTENT_NO_NEXT || err == EXT2_ET_NO_CURRENT_NODE || err == EXT2_ET_EXTENT_NO_PREV) {
			err = 0;
			break;
		}
		if (err)
			break;
		if (e.e_len == 0 || e.e_lblk + (uint64_t)e.e_len <= start)
			break;
		if (e.e_lblk >= start) {
			err = ext2fs_extent_delete(h, 0);
			if (err)
				break;
			free_blocks(v, e.e_pblk, e.e_len);
			freed += e.e_len;
		} else {
			uint32_t keep = (uint32_t)(start - e.e_lblk);

			free_blocks(v, e.e_pblk + keep, e.e_len - keep);
			freed += e.e_len - keep;
			e.e_len = keep;
			err = ext2fs_extent_replace(h, 0, &e);
			break;
		}
	}
	ext2fs_extent_free(h);
	/* The handle worked on *in (tree root, node blocks freed); the data blocks still count in i_blocks. */
	if (freed)
		ext2fs_iblk_sub_blocks(v->fs, (struct ext2_inode *)in, freed);
	if (!err)
		return vol_iwrite(v, ino, in);
	vol_iwrite(v, ino, in);
	return vol_err(err);
}

int vol_itrunc(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t size)
{
	uint64_t old = EXT2_I_SIZE(in);
	int err;

	if (size > VOL_MAX_FILE)
		return -EFBIG;
	if (size < old && ext2fs_inode_has_valid_blocks2(v->fs, (struct ext2_inode *)in)) {
		uint64_t first = (size + VOL_BS - 1) / VOL_BS;

		v->ec.valid = false;
		v->meta_dirty = true;
		err = vol_punch_tail(v, ino, in, first);
		if (err)
			return err;
		if (size % VOL_BS) {
			/* The tail of the last block past the new end must read as zeros if the file grows again. */
			struct vol_run r;

			err = map_run(v, ino, in, size / VOL_BS, &r);
			if (err)
				return err;
			if (r.kind == RUN_DATA) {
				err = vol_pwrite_full(v->fd, zeros, VOL_BS - size % VOL_BS, r.pblk * VOL_BS + size % VOL_BS);
				if (err)
					return err;
				v->data_unsynced = true;
			}
		}
	}
	ext2fs_inode_size_set(v->fs, (struct ext2_inode *)in, size);
	vol_touch(in, VOL_T_M | VOL_T_C);
	return vol_iwrite(v, ino, in);
}

/* Map every hole of the blocks [first, last) to unwritten blocks. */
static int falloc_blocks(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t first, uint64_t last)
{
	uint64_t lblk = first;
	int err = 0;

	if (!(in->i_flags & EXT4_EXTENTS_FL))
		return alloc_range(v, ino, in, first, last - first, EXT2_FALLOCATE_FORCE_UNINIT);
	while (lblk < last) {
		struct vol_run r;
		uint64_t n;

		err = map_run(v, ino, in, lblk, &r);
		if (err)
			break;
		n = r.len < last - lblk ? r.len : last - lblk;
		if (r.kind == RUN_HOLE) {
			err = fill_hole(v, ino, in, lblk, n, true, &n);
			if (err)
				break;
		}
		lblk += n;
	}
	return err;
}

/* Zero the bytes [off, off + len) inside one block (len < VOL_BS) when it holds written data. */
static int zero_partial(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t off, uint64_t len)
{
	struct vol_run r;
	int err;

	if (len == 0)
		return 0;
	err = map_run(v, ino, in, off / VOL_BS, &r);
	if (err || r.kind != RUN_DATA)
		return err;
	err = vol_pwrite_full(v->fd, zeros, len, r.pblk * VOL_BS + off % VOL_BS);
	if (!err)
		v->data_unsynced = true;
	return err;
}

/*
 * Zero the bytes [off, end): the parts of the edge blocks in the range
 * are written as zeros (where they hold data), the whole blocks between
 * are removed.  Shared by PUNCH_HOLE and ZERO_RANGE.
 */
static int zero_bytes(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t off, uint64_t end)
{
	uint64_t a = (off + VOL_BS - 1) / VOL_BS, b = end / VOL_BS;
	int err;

	if (off / VOL_BS == (end - 1) / VOL_BS && (off % VOL_BS || end % VOL_BS))
		return zero_partial(v, ino, in, off, end - off);	/* inside one block, not all of it */
	err = zero_partial(v, ino, in, off, off % VOL_BS ? VOL_BS - off % VOL_BS : 0);
	if (!err)
		err = zero_partial(v, ino, in, end - end % VOL_BS, end % VOL_BS);
	if (!err && (in->i_flags & EXT4_EXTENTS_FL))
		err = punch_range(v, ino, in, a, b);
	else if (!err && a < b) {
		errcode_t e = ext2fs_punch(v->fs, ino, (struct ext2_inode *)in, NULL, a, b - 1);

		v->ec.valid = false;
		v->meta_dirty = true;
		err = e ? vol_err(e) : vol_iread(v, ino, in);
	}
	return err;
}

int vol_fallocate(struct vol *v, vol_ino_t ino, int mode, uint64_t off, uint64_t len)
{
	struct ext2_inode_large in;
	uint64_t first, last, size, end;
	int err;

	/* The checks and their order of vfs_fallocate and ext4_fallocate. */
	if (len == 0)
		return -EINVAL;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;	/* also COLLAPSE_RANGE, INSERT_RANGE, UNSHARE_RANGE: not done here */
	if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
		return -EOPNOTSUPP;
	if (off + len < off || off + len > VOL_MAX_FILE)
		return -EFBIG;
	pthread_mutex_lock(&v->mu);
	err = data_write_target(v, ino, &in, -ENODEV);
	if (err)
		goto out;
	size = EXT2_I_SIZE(&in);
	end = off + len;
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		/*
		 * As ext4: nothing at or past the end of file; a range past it
		 * stops at the end of the block holding the last byte (blocks
		 * fallocated further out with KEEP_SIZE stay).
		 */
		if (off >= size)
			goto out;
		if (end > (size + VOL_BS - 1) / VOL_BS * VOL_BS)
			end = (size + VOL_BS - 1) / VOL_BS * VOL_BS;
		err = zero_bytes(v, ino, &in, off, end);
		if (!err) {
			vol_touch(&in, VOL_T_M | VOL_T_C);
			err = vol_iwrite(v, ino, &in);
		}
		goto out;
	}
	first = off / VOL_BS;
	last = (end + VOL_BS - 1) / VOL_BS;
	if (mode & FALLOC_FL_ZERO_RANGE) {
		/*
		 * As ext4: the range reads as zeros and all its blocks are
		 * allocated afterwards (whole blocks unwritten).  The whole
		 * blocks are removed and mapped again unwritten: simpler than
		 * converting written extents in place, and as cheap.
		 */
		err = zero_bytes(v, ino, &in, off, end);
		if (!err)
			err = falloc_blocks(v, ino, &in, first, last);
	} else {
		/* Roughly what ext4 does: refuse up front rather than stop half way (blocks already there count as needed). */
		if (room_for(v, last - first) < last - first) {
			err = -ENOSPC;
			goto out;
		}
		err = falloc_blocks(v, ino, &in, first, last);
	}
	if (err)
		goto out;
	if (!(mode & FALLOC_FL_KEEP_SIZE) && end > size) {
		ext2fs_inode_size_set(v->fs, (struct ext2_inode *)&in, end);
		vol_touch(&in, VOL_T_M);
	}
	vol_touch(&in, (mode & FALLOC_FL_ZERO_RANGE) ? VOL_T_M | VOL_T_C : VOL_T_C);
	err = vol_iwrite(v, ino, &in);
out:
	vol_maybe_commit(v);
	pthread_mutex_unlock(&v->mu);
	return err;
}

int64_t vol_seek_data(struct vol *v, vol_ino_t ino, uint64_t off, int whence)
{
	struct ext2_inode_large in;
	uint64_t size, lblk;
	int64_t res = -ENXIO;
	int err, guard = 0;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	pthread_mutex_lock(&v->mu);
	err = vol_iread(v, ino, &in);
	if (err) {
		res = err;
		goto out;
	}
	size = EXT2_I_SIZE(&in);
	if (off >= size)
		goto out;
	lblk = off / VOL_BS;
	while (lblk * VOL_BS < size && guard++ < 1000000) {
		struct vol_run r;
		bool data;

		err = map_run(v, ino, &in, lblk, &r);
		if (err) {
			res = err;
			goto out;
		}
		/* Unwritten extents read as zeros: SEEK_DATA skips them as ext4 does with no cached pages. */
		data = r.kind == RUN_DATA;
		if (data == (whence == SEEK_DATA)) {
			uint64_t at = lblk * VOL_BS > off ? lblk * VOL_BS : off;

			res = at < size ? (int64_t)at : (whence == SEEK_HOLE ? (int64_t)size : -ENXIO);
			goto out;
		}
		if (r.len > (size / VOL_BS) + 1 - lblk)
			break;
		lblk += r.len;
	}
	res = whence == SEEK_HOLE ? (int64_t)size : -ENXIO;
out:
	pthread_mutex_unlock(&v->mu);
	return res;
}
