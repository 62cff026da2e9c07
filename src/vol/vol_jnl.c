/* The volume's journal: jbd2 transactions written by us (so e2fsck and the kernel can replay them) and replay at mount. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "vol/vol_int.h"

/*
 * On-disk jbd2 format (big endian), as Linux's include/linux/jbd2.h and
 * e2fsprogs' kernel-jbd.h define it; only the fields we use.
 */
#define JBD_MAGIC		0xc03b3998u
#define JBD_DESC		1
#define JBD_COMMIT		2
#define JBD_SB_V1		3
#define JBD_SB_V2		4
#define JBD_REVOKE		5

#define JSB_BLOCKSIZE		12
#define JSB_MAXLEN		16
#define JSB_FIRST		20
#define JSB_SEQUENCE		24
#define JSB_START		28
#define JSB_COMPAT		36
#define JSB_INCOMPAT		40
#define JSB_ROCOMPAT		44
#define JSB_UUID		48
#define JSB_NUM_FC		84
#define JSB_SIZE		1024

#define JCOMPAT_CHECKSUM	0x1
#define JINCOMPAT_REVOKE	0x1
#define JINCOMPAT_64BIT		0x2
#define JINCOMPAT_ASYNC_COMMIT	0x4
#define JINCOMPAT_CSUM_V2	0x8
#define JINCOMPAT_CSUM_V3	0x10
#define JINCOMPAT_FAST_COMMIT	0x20
#define JINCOMPAT_KNOWN		0x3f

#define JTAG_ESCAPE		1
#define JTAG_SAME_UUID		2
#define JTAG_LAST		8

#define JCOMMIT_SEC		48
#define JCOMMIT_NSEC		56

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put32(unsigned char *p, uint32_t x)
{
	p[0] = (unsigned char)(x >> 24);
	p[1] = (unsigned char)(x >> 16);
	p[2] = (unsigned char)(x >> 8);
	p[3] = (unsigned char)x;
}

static void put16(unsigned char *p, uint16_t x)
{
	p[0] = (unsigned char)(x >> 8);
	p[1] = (unsigned char)x;
}

static void put64(unsigned char *p, uint64_t x)
{
	put32(p, (uint32_t)(x >> 32));
	put32(p + 4, (uint32_t)x);
}

/* The journal's geometry and where each of its blocks lives in the image. */
struct jgeom {
	uint64_t *map;
	uint32_t maxlen, first, last;	/* log area [first, last) */
	uint32_t incompat;
	uint32_t tagsz;
	bool csum, is64;
};

/* True when the 16 bytes are all zero (an internal journal). */
static int uuid_is_null_bytes(const unsigned char *u)
{
	for (int i = 0; i < 16; i++)
		if (u[i])
			return 0;
	return 1;
}

static int jnl_map(ext2_filsys fs, struct jgeom *g, unsigned char *jsb, int fd)
{
	ext2_ino_t jino = fs->super->s_journal_inum;
	struct ext2_inode inode;
	uint64_t size;
	uint32_t i, nfc;
	errcode_t e;
	int err;

	if (!ext2fs_has_feature_journal(fs->super) || jino == 0) {
		vol_log("the file system has no journal (make it with mke2fs -t ext4)");
		return -EINVAL;
	}
	if (ext2fs_has_feature_journal_dev(fs->super) || !uuid_is_null_bytes(fs->super->s_journal_uuid)) {
		vol_log("external journals are not supported");
		return -EINVAL;
	}
	e = ext2fs_read_inode(fs, jino, &inode);
	if (e)
		return vol_err(e);
	size = EXT2_I_SIZE(&inode);
	if (size < 16 * VOL_BS)
		return -EINVAL;
	memset(g, 0, sizeof(*g));
	g->maxlen = (uint32_t)(size / VOL_BS);
	g->map = malloc(sizeof(uint64_t) * g->maxlen);
	if (!g->map)
		return -ENOMEM;
	for (i = 0; i < g->maxlen; i++) {
		blk64_t p = 0;

		e = ext2fs_bmap2(fs, jino, &inode, NULL, 0, i, NULL, &p);
		if (e || p == 0) {
			vol_log("journal block %u is not mapped", i);
			free(g->map);
			g->map = NULL;
			return -EINVAL;
		}
		g->map[i] = p;
	}
	err = vol_pread_full(fd, jsb, VOL_BS, g->map[0] * VOL_BS);
	if (err)
		goto fail;
	if (get32(jsb) != JBD_MAGIC || (get32(jsb + 4) != JBD_SB_V2 && get32(jsb + 4) != JBD_SB_V1) ||
	    get32(jsb + JSB_BLOCKSIZE) != VOL_BS) {
		vol_log("bad journal superblock");
		err = -EINVAL;
		goto fail;
	}
	if (get32(jsb + JSB_MAXLEN) < g->maxlen)
		g->maxlen = get32(jsb + JSB_MAXLEN);
	g->first = get32(jsb + JSB_FIRST);
	g->incompat = get32(jsb + 4) == JBD_SB_V2 ? get32(jsb + JSB_INCOMPAT) : 0;
	if (g->incompat & ~JINCOMPAT_KNOWN) {
		vol_log("journal has unknown features 0x%x", g->incompat);
		err = -EINVAL;
		goto fail;
	}
	g->last = g->maxlen;
	if (g->incompat & JINCOMPAT_FAST_COMMIT) {
		nfc = get32(jsb + JSB_NUM_FC);
		g->last -= nfc ? nfc : 256;
	}
	if (g->first < 1 || g->first + 8 > g->last) {
		err = -EINVAL;
		goto fail;
	}
	g->is64 = g->incompat & JINCOMPAT_64BIT;
	g->csum = g->incompat & (JINCOMPAT_CSUM_V2 | JINCOMPAT_CSUM_V3);
	if (g->incompat & JINCOMPAT_CSUM_V3) {
		g->tagsz = 16;
	} else {
		g->tagsz = 12;
		if (g->incompat & JINCOMPAT_CSUM_V2)
			g->tagsz += 2;
		if (!g->is64)
			g->tagsz -= 4;
	}
	return 0;
fail:
	free(g->map);
	g->map = NULL;
	return err;
}


static uint32_t jnext(const struct jgeom *g, uint32_t j)
{
	return j + 1 >= g->last ? g->first : j + 1;
}

/* A revoked block and the newest transaction that revoked it. */
struct jrevoke {
	uint64_t blk;
	uint32_t seq;
};

struct jwalk {
	struct jrevoke *rv;
	size_t nrv, cap;
	uint32_t end_seq;
};

static int rv_find(const struct jwalk *w, uint64_t blk)
{
	for (size_t i = 0; i < w->nrv; i++)
		if (w->rv[i].blk == blk)
			return (int)i;
	return -1;
}

/* Sequence numbers wrap: a is before b. */
static bool seq_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

/*
 * One pass over the log from s_start, as jbd2 recovery does: pass 0 finds
 * the end (the first transaction without its commit block), pass 1
 * collects revoke records, pass 2 writes the logged blocks home.
 */
static int jnl_pass(const struct jgeom *g, int fd, const unsigned char *jsb, int pass, struct jwalk *w)
{
	unsigned char *blk = malloc(VOL_BS), *copy = malloc(VOL_BS);
	uint32_t seq = get32(jsb + JSB_SEQUENCE), j = get32(jsb + JSB_START);
	uint64_t steps = 0, limit = 2ull * g->maxlen;
	int err = 0;

	if (!blk || !copy) {
		err = -ENOMEM;
		goto out;
	}
	while (steps++ < limit) {
		uint32_t type;

		if (pass > 0 && !seq_before(seq, w->end_seq))
			break;
		if (j < g->first || j >= g->last)
			break;
		err = vol_pread_full(fd, blk, VOL_BS, g->map[j] * VOL_BS);
		if (err)
			goto out;
		if (get32(blk) != JBD_MAGIC || get32(blk + 8) != seq)
			break;
		type = get32(blk + 4);
		if (type == JBD_DESC) {
			uint32_t space = VOL_BS - (g->csum ? 4 : 0), p = 12;

			while (p + g->tagsz <= space) {
				uint32_t flags;
				uint64_t home = get32(blk + p);

				if (g->tagsz == 16) {
					flags = get32(blk + p + 4);
					if (g->is64)
						home |= (uint64_t)get32(blk + p + 8) << 32;
				} else {
					flags = get16(blk + p + 6);
					if (g->is64)
						home |= (uint64_t)get32(blk + p + 8) << 32;
				}
				p += g->tagsz;
				if (!(flags & JTAG_SAME_UUID))
					p += 16;
				j = jnext(g, j);
				if (pass == 2) {
					int r = rv_find(w, home);

					if (r < 0 || seq_before(w->rv[r].seq, seq)) {
						err = vol_pread_full(fd, copy, VOL_BS, g->map[j] * VOL_BS);
						if (err)
							goto out;
						if (flags & JTAG_ESCAPE)
							put32(copy, JBD_MAGIC);
						err = vol_pwrite_full(fd, copy, VOL_BS, home * VOL_BS);
						if (err)
							goto out;
					}
				}
				if (flags & JTAG_LAST)
					break;
			}
			j = jnext(g, j);
		} else if (type == JBD_COMMIT) {
			seq++;
			j = jnext(g, j);
			if (pass == 0)
				w->end_seq = seq;
		} else if (type == JBD_REVOKE) {
			uint32_t cnt = get32(blk + 12), rsz = g->is64 ? 8 : 4, p = 16;

			if (cnt > VOL_BS)
				cnt = VOL_BS;
			while (pass == 1 && p + rsz <= cnt) {
				uint64_t b = g->is64 ? ((uint64_t)get32(blk + p) << 32 | get32(blk + p + 4)) : get32(blk + p);
				int r = rv_find(w, b);

				if (r >= 0) {
					if (seq_before(w->rv[r].seq, seq))
						w->rv[r].seq = seq;
				} else {
					if (w->nrv == w->cap) {
						size_t nc = w->cap ? w->cap * 2 : 64;
						struct jrevoke *n = realloc(w->rv, nc * sizeof(*n));

						if (!n) {
							err = -ENOMEM;
							goto out;
						}
						w->rv = n;
						w->cap = nc;
					}
					w->rv[w->nrv].blk = b;
					w->rv[w->nrv].seq = seq;
					w->nrv++;
				}
				p += rsz;
			}
			j = jnext(g, j);
		} else {
			break;
		}
	}
out:
	free(blk);
	free(copy);
	return err;
}

int vol_jnl_replay_raw(ext2_filsys fs, int fd, bool *replayed, uint32_t *last)
{
	unsigned char *jsb = malloc(VOL_BS);
	struct jwalk w = { 0 };
	struct jgeom g;
	int err;

	*replayed = false;
	if (!jsb)
		return -ENOMEM;
	err = jnl_map(fs, &g, jsb, fd);
	if (err) {
		free(jsb);
		return err;
	}
	if (get32(jsb + JSB_START) == 0)
		goto out;
	w.end_seq = get32(jsb + JSB_SEQUENCE);
	err = jnl_pass(&g, fd, jsb, 0, &w);
	if (!err)
		err = jnl_pass(&g, fd, jsb, 1, &w);
	if (!err)
		err = jnl_pass(&g, fd, jsb, 2, &w);
	if (!err && fdatasync(fd) < 0)
		err = -errno;
	if (err)
		goto out;
	/* The log is spent: mark the journal empty, the next transaction gets a fresh sequence. */
	put32(jsb + JSB_START, 0);
	put32(jsb + JSB_SEQUENCE, w.end_seq + 1);
	err = vol_pwrite_full(fd, jsb, JSB_SIZE, g.map[0] * VOL_BS);
	if (!err && fdatasync(fd) < 0)
		err = -errno;
	*replayed = !err;
	*last = w.end_seq - 1;
out:
	free(w.rv);
	free(g.map);
	free(jsb);
	return err;
}

uint32_t vol_jnl_capacity(const struct vol *v)
{
	uint32_t n = (v->jlast - v->jfirst) / 2, per = (VOL_BS - 12 - 16) / v->jtagsz;

	/* Room in half the log for the copies, one descriptor per `per` of them and the commit block. */
	return n > 2 ? (uint32_t)((uint64_t)(n - 2) * per / (per + 1)) : 0;
}

int vol_jnl_load(struct vol *v, uint32_t *last)
{
	unsigned char *jsb = malloc(VOL_BS);
	uint32_t incompat, compat;
	struct jgeom g;
	int err;

	if (!jsb)
		return -ENOMEM;
	err = jnl_map(v->fs, &g, jsb, v->fd);
	if (err)
		goto out;
	if (get32(jsb + JSB_START) != 0) {
		/* Only a read-only mount gets here with a full journal: it may not replay. */
		err = -EROFS;
		free(g.map);
		goto out;
	}
	v->jmap = g.map;
	v->jfirst = g.first;
	v->jlast = g.last;
	v->jseq = get32(jsb + JSB_SEQUENCE);
	/* An empty log's s_sequence is the next transaction's (ours and the kernel's alike). */
	*last = v->jseq - 1;
	v->j64 = g.is64;
	v->jtagsz = g.is64 ? 12 : 8;
	/*
	 * The journal is empty now, so its checksum features can go: we write
	 * transactions without checksums (the kernel turns csum v3 back on
	 * when it mounts the image, and empties the journal before it ends).
	 */
	incompat = get32(jsb + JSB_INCOMPAT);
	compat = get32(jsb + JSB_COMPAT);
	if (get32(jsb + 4) == JBD_SB_V2 &&
	    ((incompat & (JINCOMPAT_CSUM_V2 | JINCOMPAT_CSUM_V3 | JINCOMPAT_ASYNC_COMMIT)) || (compat & JCOMPAT_CHECKSUM)) &&
	    !(v->flags & VOL_RDONLY)) {
		put32(jsb + JSB_INCOMPAT, incompat & ~(JINCOMPAT_CSUM_V2 | JINCOMPAT_CSUM_V3 | JINCOMPAT_ASYNC_COMMIT));
		put32(jsb + JSB_COMPAT, compat & ~JCOMPAT_CHECKSUM);
		jsb[80] = 0;		/* s_checksum_type */
		put32(jsb + 0xfc, 0);	/* s_checksum */
		err = vol_pwrite_full(v->fd, jsb, JSB_SIZE, v->jmap[0] * VOL_BS);
		if (!err && fdatasync(v->fd) < 0)
			err = -errno;
	}
out:
	free(jsb);
	return err;
}

/* Write the journal superblock with s_start (0: empty) and the next sequence. */
static int jsb_write(struct vol *v, uint32_t start, uint32_t seq)
{
	unsigned char jsb[JSB_SIZE];
	int err = vol_pread_full(v->fd, jsb, JSB_SIZE, v->jmap[0] * VOL_BS);

	if (err)
		return err;
	put32(jsb + JSB_START, start);
	put32(jsb + JSB_SEQUENCE, seq);
	return vol_pwrite_full(v->fd, jsb, JSB_SIZE, v->jmap[0] * VOL_BS);
}

/* pwritev in runs of physically contiguous blocks: blocks[i] goes to image block phys[i]. */
static int write_runs(int fd, uint64_t *phys, unsigned char **blocks, size_t n)
{
	struct iovec iov[256];
	size_t i = 0;

	while (i < n) {
		size_t k = 0;
		uint64_t start = phys[i];
		ssize_t r;
		size_t want;

		while (i + k < n && k < 256 && phys[i + k] == start + k) {
			iov[k].iov_base = blocks[i + k];
			iov[k].iov_len = VOL_BS;
			k++;
		}
		want = k * VOL_BS;
		r = pwritev(fd, iov, (int)k, (off_t)(start * VOL_BS));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if ((size_t)r != want) {
			/* Short vector write: finish block by block. */
			for (size_t x = 0; x < k; x++) {
				int err = vol_pwrite_full(fd, blocks[i + x], VOL_BS, (start + x) * VOL_BS);

				if (err)
					return err;
			}
		}
		i += k;
	}
	return 0;
}

/*
 * Commit: ext2fs_flush moves the superblock, group descriptors and
 * bitmaps into the cache, then the dirty blocks go to the journal as one
 * transaction, then home.
 *
 * Transactions alternate between the two halves of the log, each written
 * from the start of its half.  A durable commit is: descriptors and copies
 * into this half; fdatasync (now the previous transaction's home writes
 * are durable too); the journal superblock names this transaction
 * (s_start = its first block, s_sequence = its sequence) and the commit
 * block; fdatasync; home writes.  Two syncs per fsync; the log the
 * superblock names on disk is never overwritten before the home writes it
 * protects are durable.  A commit that is not durable (fsd's group commits,
 * early commits) syncs nothing: it is safe against a crash of the process,
 * not of the machine, until the next durable commit (the 5 s timer's are).
 *
 * A replay therefore only ever starts at the latest transaction (older
 * ones are elsewhere or fail the sequence check).  That is why we need no
 * revoke records: a block freed and reused for file data can only be
 * overwritten by the replay of a transaction that logged it, and the
 * latest transaction never logs a block freed in it (vol.c drops freed
 * blocks from the cache) while blocks freed in the running transaction
 * get no file data before it commits (vol_data.c commits first).
 */
int vol_jnl_commit(struct vol *v, bool durable)
{
	struct vol_blk **dirty = NULL;
	unsigned char **jblocks = NULL, *descs = NULL, *escaped = NULL, *commit = NULL;
	uint64_t *jphys = NULL, *hphys = NULL;
	size_t n = 0, i, nj = 0, ndesc, nesc = 0, per;
	uint32_t j, jstart;
	errcode_t e;
	int err = 0;

	if (v->flags & VOL_RDONLY)
		return 0;
	if (v->meta_dirty) {
		v->fs->flags |= EXT2_FLAG_MASTER_SB_ONLY | EXT2_FLAG_DIRTY | EXT2_FLAG_CHANGED;
		e = ext2fs_flush2(v->fs, EXT2_FLAG_FLUSH_NO_SYNC);
		if (e)
			return vol_err(e);
	}
	err = vol_cache_dirty_list(v->cache, &dirty, &n);
	if (err)
		return err;
	if (n == 0 && v->force_txn) {
		/*
		 * vol_sync promises vol_committed_seq() >= the running sequence:
		 * a transaction of the unchanged superblock block makes it so.
		 */
		err = vol_cache_touch(v->cache, 0);
		if (!err)
			err = vol_cache_dirty_list(v->cache, &dirty, &n);
		if (err)
			return err;
	}
	if (n == 0) {
		v->meta_dirty = false;
		v->nfreed = 0;
		clock_gettime(CLOCK_MONOTONIC, &v->txn_start);
		if (durable && (v->data_unsynced || v->ckpt_unsynced)) {
			if (fdatasync(v->fd) < 0)
				return -errno;
			v->data_unsynced = v->ckpt_unsynced = v->jsb_unsynced = false;
		}
		return 0;
	}
	per = (VOL_BS - 12 - 16) / v->jtagsz;
	ndesc = (n + per - 1) / per;
	if (n > vol_jnl_capacity(v)) {
		/* Too big for the log (an operation between two checks did that much): write home unjournaled. */
		vol_log("transaction of %zu blocks exceeds the journal (%u): written without journal", n,
			vol_jnl_capacity(v));
		goto home;
	}
	jblocks = malloc((n + ndesc) * sizeof(*jblocks));
	jphys = malloc((n + ndesc) * sizeof(*jphys));
	descs = calloc(ndesc, VOL_BS);
	for (i = 0; i < n; i++)
		if (get32(dirty[i]->data) == JBD_MAGIC)
			nesc++;
	escaped = malloc(VOL_BS * (nesc ? nesc : 1));
	nesc = 0;
	commit = calloc(1, VOL_BS);
	if (!jblocks || !jphys || !descs || !escaped || !commit) {
		err = -ENOMEM;
		goto out;
	}
	jstart = v->jfirst + (v->jhalf ? (v->jlast - v->jfirst) / 2 : 0);
	j = jstart;
	for (i = 0; i < n; i += per) {
		unsigned char *d = descs + (i / per) * VOL_BS;
		size_t k, p = 12;

		put32(d, JBD_MAGIC);
		put32(d + 4, JBD_DESC);
		put32(d + 8, v->jseq);
		jblocks[nj] = d;
		jphys[nj++] = v->jmap[j++];
		for (k = i; k < n && k < i + per; k++) {
			uint16_t flags = 0;
			unsigned char *data = dirty[k]->data;

			if (get32(data) == JBD_MAGIC) {
				unsigned char *c = escaped + nesc++ * VOL_BS;

				memcpy(c, data, VOL_BS);
				put32(c, 0);
				data = c;
				flags |= JTAG_ESCAPE;
			}
			if (k > i)
				flags |= JTAG_SAME_UUID;
			if (k + 1 == n || k + 1 == i + per)
				flags |= JTAG_LAST;
			put32(d + p, (uint32_t)dirty[k]->nr);
			put16(d + p + 4, 0);
			put16(d + p + 6, flags);
			if (v->j64)
				put32(d + p + 8, (uint32_t)(dirty[k]->nr >> 32));
			p += v->jtagsz;
			if (k == i) {
				memcpy(d + p, v->fs->super->s_uuid, 16);
				p += 16;
			}
			jblocks[nj] = data;
			jphys[nj++] = v->jmap[j++];
		}
	}
	err = write_runs(v->fd, jphys, jblocks, nj);
	if (err)
		goto out;
	if (durable && fdatasync(v->fd) < 0) {
		err = -errno;
		goto out;
	}
	/* Only now, with the previous checkpoint durable too, may the superblock name this transaction. */
	err = jsb_write(v, jstart, v->jseq);
	if (err)
		goto out;
	{
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		put32(commit, JBD_MAGIC);
		put32(commit + 4, JBD_COMMIT);
		put32(commit + 8, v->jseq);
		put64(commit + JCOMMIT_SEC, (uint64_t)now.tv_sec);
		put32(commit + JCOMMIT_NSEC, (uint32_t)now.tv_nsec);
		err = vol_pwrite_full(v->fd, commit, VOL_BS, v->jmap[j] * VOL_BS);
		if (err)
			goto out;
	}
	if (durable && fdatasync(v->fd) < 0) {
		err = -errno;
		goto out;
	}
home:
	/* Checkpoint: the blocks go home (sorted, so contiguous runs become one pwritev). */
	free(jblocks);
	free(jphys);
	jblocks = malloc(n * sizeof(*jblocks));
	hphys = malloc(n * sizeof(*hphys));
	jphys = NULL;
	if (!jblocks || !hphys) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		jblocks[i] = dirty[i]->data;
		hphys[i] = dirty[i]->nr;
	}
	err = write_runs(v->fd, hphys, jblocks, n);
	if (err)
		goto out;
	if (durable && n > vol_jnl_capacity(v) && fdatasync(v->fd) < 0) {
		/* Written home without the journal: no sync above covered the data or these blocks. */
		err = -errno;
		goto out;
	}
	for (i = 0; i < n; i++)
		vol_cache_mark_clean(v->cache, dirty[i]);
	v->ckpt_unsynced = true;
	v->jsb_unsynced = !durable;
	if (durable)
		v->data_unsynced = false;
	v->jhalf = !v->jhalf;
	v->committed = v->jseq;
	v->jseq++;
	v->meta_dirty = false;
	v->nfreed = 0;
	clock_gettime(CLOCK_MONOTONIC, &v->txn_start);
out:
	if (err)
		vol_log("commit failed: %s", strerror(-err));
	free(dirty);
	free(jblocks);
	free(jphys);
	free(hphys);
	free(descs);
	free(escaped);
	free(commit);
	return err;
}

/* After the last commit: make the home blocks durable, then mark the journal empty. */
int vol_jnl_close(struct vol *v)
{
	int err;

	if (v->flags & VOL_RDONLY)
		return 0;
	if (fdatasync(v->fd) < 0)
		return -errno;
	err = jsb_write(v, 0, v->jseq);
	if (!err && fdatasync(v->fd) < 0)
		err = -errno;
	v->ckpt_unsynced = v->jsb_unsynced = false;
	return err;
}
