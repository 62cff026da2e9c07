/* The volume: mount, commit scheduling, inodes, references and orphans (operations on names and data in vol_ops.c). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "vol/vol_int.h"
#include "vol/vol_ops.h"

void vol_log(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "libretto: vol: %s\n", buf);
}

int vol_err(errcode_t e)
{
	if (e == 0)
		return 0;
	if (e > 0 && e < 4096)
		return -(int)e;		/* libext2fs passes errno values through */
	switch (e) {
	case EXT2_ET_NO_MEMORY:
		return -ENOMEM;
	case EXT2_ET_BLOCK_ALLOC_FAIL:
	case EXT2_ET_INODE_ALLOC_FAIL:
	case EXT2_ET_DIR_NO_SPACE:
	case EXT2_ET_DIR_NO_SPACE_FOR_CSUM:
	case EXT2_ET_RES_GDT_BLOCKS:
		return -ENOSPC;
	case EXT2_ET_FILE_NOT_FOUND:
		return -ENOENT;
	case EXT2_ET_DIR_EXISTS:
	case EXT2_ET_FILE_EXISTS:
		return -EEXIST;
	case EXT2_ET_FILE_TOO_BIG:
	case EXT2_ET_EXTENT_NOT_SUPPORTED:
		return -EFBIG;
	case EXT2_ET_RO_FILSYS:
		return -EROFS;
	case EXT2_ET_NO_DIRECTORY:
		return -ENOTDIR;
	case EXT2_ET_SYMLINK_LOOP:
		return -ELOOP;
	case EXT2_ET_TOO_MANY_REFS:
		return -EMLINK;
	default:
		return -EIO;
	}
}

/* ---- time stamps (ext4: 32-bit seconds + 2 epoch bits and nanoseconds in the _extra field) ---- */

void vol_ts_set(uint32_t *sec, uint32_t *extra, const struct timespec *ts)
{
	int64_t s = ts->tv_sec;

	*sec = (uint32_t)s;
	if (extra)
		*extra = (uint32_t)(((s - (int32_t)(uint32_t)s) >> 32) & 3) | ((uint32_t)ts->tv_nsec << 2);
}

void vol_ts_get(uint32_t sec, const uint32_t *extra, struct timespec *ts)
{
	ts->tv_sec = (int32_t)sec;
	ts->tv_nsec = 0;
	if (extra) {
		ts->tv_sec += (int64_t)(*extra & 3) << 32;
		ts->tv_nsec = *extra >> 2;
	}
}

bool vol_has_extra(const struct ext2_inode_large *in, size_t off)
{
	return in->i_extra_isize >= off - EXT2_GOOD_OLD_INODE_SIZE + 4;
}

#define HAS_EXTRA(in, f) vol_has_extra(in, offsetof(struct ext2_inode_large, f))

/*
 * Set time stamps to now; returns whether any changed.  The coarse clock
 * (as Linux's file_update_time uses) lets a burst of writes skip the inode
 * write when its time stamps already say "now".
 */
bool vol_touch(struct ext2_inode_large *in, int which)
{
	struct ext2_inode_large old = *in;
	struct timespec now;

	clock_gettime(CLOCK_REALTIME_COARSE, &now);
	if (which & VOL_T_C)
		vol_ts_set(&in->i_ctime, HAS_EXTRA(in, i_ctime_extra) ? &in->i_ctime_extra : NULL, &now);
	if (which & VOL_T_M)
		vol_ts_set(&in->i_mtime, HAS_EXTRA(in, i_mtime_extra) ? &in->i_mtime_extra : NULL, &now);
	if (which & VOL_T_A)
		vol_ts_set(&in->i_atime, HAS_EXTRA(in, i_atime_extra) ? &in->i_atime_extra : NULL, &now);
	return old.i_ctime != in->i_ctime || old.i_mtime != in->i_mtime || old.i_atime != in->i_atime ||
	       old.i_ctime_extra != in->i_ctime_extra || old.i_mtime_extra != in->i_mtime_extra ||
	       old.i_atime_extra != in->i_atime_extra;
}

/* ---- inodes ---- */

int vol_iread(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in)
{
	errcode_t e;

	if (ino < 1 || ino > v->fs->super->s_inodes_count)
		return -ESTALE;
	memset(in, 0, sizeof(*in));
	e = ext2fs_read_inode_full(v->fs, ino, (struct ext2_inode *)in, sizeof(*in));
	return vol_err(e);
}

int vol_iwrite(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in)
{
	v->meta_dirty = true;
	return vol_err(ext2fs_write_inode_full(v->fs, ino, (struct ext2_inode *)in, sizeof(*in)));
}

/* ---- open references ---- */

static struct vol_ref **ref_slot(struct vol *v, vol_ino_t ino)
{
	struct vol_ref **pp = &v->refs[ino % 64];

	while (*pp && (*pp)->ino != ino)
		pp = &(*pp)->next;
	return pp;
}

uint32_t vol_refcount(struct vol *v, vol_ino_t ino)
{
	struct vol_ref *r = *ref_slot(v, ino);

	return r ? r->count : 0;
}

int vol_ref_get(struct vol *v, vol_ino_t ino)
{
	struct vol_ref **pp = ref_slot(v, ino);

	if (!*pp) {
		*pp = calloc(1, sizeof(**pp));
		if (!*pp)
			return -ENOMEM;
		(*pp)->ino = ino;
	}
	(*pp)->count++;
	return 0;
}

/* ---- orphans: unlinked inodes still open, chained from s_last_orphan through i_dtime as ext4 does ---- */

int vol_orphan_add(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in)
{
	in->i_dtime = v->fs->super->s_last_orphan;
	v->fs->super->s_last_orphan = ino;
	ext2fs_mark_super_dirty(v->fs);
	return vol_iwrite(v, ino, in);
}

static int orphan_remove(struct vol *v, vol_ino_t ino)
{
	struct ext2_inode_large in, prev;
	vol_ino_t cur = v->fs->super->s_last_orphan, pino = 0;
	uint32_t steps = 0;
	int err;

	while (cur && cur != ino && steps++ < v->fs->super->s_inodes_count) {
		err = vol_iread(v, cur, &in);
		if (err)
			return err;
		pino = cur;
		cur = in.i_dtime;
	}
	if (cur != ino)
		return 0;
	err = vol_iread(v, ino, &in);
	if (err)
		return err;
	if (!pino) {
		v->fs->super->s_last_orphan = in.i_dtime;
		ext2fs_mark_super_dirty(v->fs);
	} else {
		err = vol_iread(v, pino, &prev);
		if (err)
			return err;
		prev.i_dtime = in.i_dtime;
		err = vol_iwrite(v, pino, &prev);
		if (err)
			return err;
	}
	in.i_dtime = 0;
	return vol_iwrite(v, ino, &in);
}

/* Free an inode whose last link and reference are gone: its blocks, its xattr block, the inode. */
int vol_ifree(struct vol *v, vol_ino_t ino)
{
	struct ext2_inode_large in;
	blk64_t acl;
	errcode_t e;
	int err, isdir;

	err = vol_iread(v, ino, &in);
	if (err)
		return err;
	isdir = LINUX_S_ISDIR(in.i_mode);
	if (isdir)
		vol_dc_forget(v, ino);
	if (ext2fs_inode_has_valid_blocks2(v->fs, (struct ext2_inode *)&in)) {
		err = vol_punch_tail(v, ino, &in, 0);
		if (err)
			return err;
	}
	acl = ext2fs_file_acl_block(v->fs, (struct ext2_inode *)&in);
	if (acl) {
		__u32 count = 0;

		e = ext2fs_adjust_ea_refcount3(v->fs, acl, NULL, -1, &count, ino);
		if (!e && count == 0)
			ext2fs_block_alloc_stats2(v->fs, acl, -1);
		ext2fs_file_acl_block_set(v->fs, (struct ext2_inode *)&in, 0);
	}
	v->ec.valid = false;
	in.i_links_count = 0;
	in.i_size = 0;
	in.i_size_high = 0;
	in.i_dtime = (uint32_t)time(NULL);
	err = vol_iwrite(v, ino, &in);
	if (err)
		return err;
	ext2fs_inode_alloc_stats2(v->fs, ino, -1, isdir);
	return 0;
}

/* An inode lost its last link: free it now, or put it on the orphan list while it is open. */
int vol_ilast_link(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in)
{
	if (vol_refcount(v, ino) > 0)
		return vol_orphan_add(v, ino, in);
	return vol_ifree(v, ino);
}

/* Free the orphans a crashed run left (or all of them at unmount). */
static int orphans_release(struct vol *v)
{
	vol_ino_t cur = v->fs->super->s_last_orphan;
	uint32_t steps = 0;
	int err;

	while (cur && steps++ < v->fs->super->s_inodes_count) {
		struct ext2_inode_large in;
		vol_ino_t next;

		err = vol_iread(v, cur, &in);
		if (err)
			return err;
		next = in.i_dtime;
		in.i_dtime = 0;
		err = vol_iwrite(v, cur, &in);
		if (err)
			return err;
		if (in.i_links_count == 0) {
			err = vol_ifree(v, cur);
			if (err)
				return err;
		}
		cur = next;
	}
	v->fs->super->s_last_orphan = 0;
	ext2fs_mark_super_dirty(v->fs);
	v->meta_dirty = true;
	return 0;
}

/*
 * Under v->mu: read ino, which must still be alive: an inode with no link
 * left and no reference is free (or about to be), so a handle naming it is
 * stale.
 */
static int live_iread(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in)
{
	int err = vol_iread(v, ino, in);

	if (!err && in->i_links_count == 0 && vol_refcount(v, ino) == 0)
		err = -ESTALE;
	return err;
}

int vol_hold(struct vol *v, vol_ino_t ino)
{
	struct ext2_inode_large in;
	int err;

	pthread_mutex_lock(&v->mu);
	err = live_iread(v, ino, &in);
	if (!err)
		err = vol_ref_get(v, ino);
	pthread_mutex_unlock(&v->mu);
	return err;
}

int vol_release(struct vol *v, vol_ino_t ino)
{
	struct vol_ref **pp, *r;
	struct ext2_inode_large in;
	int err = 0;

	pthread_mutex_lock(&v->mu);
	pp = ref_slot(v, ino);
	r = *pp;
	if (!r) {
		pthread_mutex_unlock(&v->mu);
		return -EINVAL;
	}
	if (--r->count == 0) {
		*pp = r->next;
		free(r);
		err = vol_iread(v, ino, &in);
		if (!err && in.i_links_count == 0 && in.i_mode) {
			err = orphan_remove(v, ino);
			if (!err)
				err = vol_ifree(v, ino);
		}
		vol_maybe_commit(v);
	}
	pthread_mutex_unlock(&v->mu);
	return err;
}

/* ---- block allocation hooks: blocks freed in the running transaction ---- */

static void on_block_stats(ext2_filsys fs, blk64_t blk, int inuse)
{
	struct vol *v = fs->priv_data;

	if (inuse < 0) {
		v->nfreed++;
		vol_cache_drop(v->cache, blk, 1);
	}
	v->meta_dirty = true;
}

static void on_block_stats_range(ext2_filsys fs, blk64_t blk, blk_t num, int inuse)
{
	struct vol *v = fs->priv_data;

	if (inuse < 0) {
		v->nfreed += num;
		vol_cache_drop(v->cache, blk, num);
	}
	v->meta_dirty = true;
}

/* Between operations: commit early when the running transaction nears the journal's capacity. */
void vol_maybe_commit(struct vol *v)
{
	if (vol_cache_ndirty(v->cache) + 64 > vol_jnl_capacity(v) / 2)
		vol_jnl_commit(v, false);
}

/* ---- mount / unmount ---- */

static int fs_open(int fd, unsigned flags, ext2_filsys *out)
{
	char name[32];
	errcode_t e;
	int oflags = EXT2_FLAG_64BITS | EXT2_FLAG_SKIP_MMP;

	if (!(flags & VOL_RDONLY))
		oflags |= EXT2_FLAG_RW;
	snprintf(name, sizeof(name), "fd:%d", fd);
	e = ext2fs_open2(name, NULL, oflags, 0, 0, &vol_io_manager, out);
	if (e) {
		vol_log("cannot open the file system: %s", error_message(e));
		return e == EXT2_ET_BAD_MAGIC || e == EXT2_ET_SB_CSUM_INVALID ? -EINVAL : vol_err(e);
	}
	return 0;
}

static int fs_check(ext2_filsys fs)
{
	struct ext2_super_block *sb = fs->super;

	if (fs->blocksize != VOL_BS) {
		vol_log("block size %u is not supported (4096 only: mke2fs -b 4096)", fs->blocksize);
		return -EINVAL;
	}
	if (ext2fs_has_feature_inline_data(sb) || ext2fs_has_feature_encrypt(sb) ||
	    ext2fs_has_feature_casefold(sb) || ext2fs_has_feature_bigalloc(sb) || ext2fs_has_feature_meta_bg(sb) ||
	    ext2fs_has_feature_orphan_file(sb)) {
		vol_log("unsupported ext4 features (inline_data, encrypt, casefold, bigalloc, meta_bg, orphan_file)");
		return -EINVAL;
	}
	if (sb->s_feature_incompat & ~EXT2_LIB_FEATURE_INCOMPAT_SUPP) {
		vol_log("unknown incompatible features 0x%x", sb->s_feature_incompat);
		return -EINVAL;
	}
	if (sb->s_state & EXT2_ERROR_FS) {
		vol_log("the file system has errors: run e2fsck");
		return -EUCLEAN;
	}
	return 0;
}

static pthread_once_t vol_err_once = PTHREAD_ONCE_INIT;

/* com_err links the table into a global list: twice would make a cycle. */
static void vol_err_init(void)
{
	initialize_ext2_error_table();
}

static void *tick_main(void *arg)
{
	struct vol *v = arg;
	struct timespec ts;

	pthread_mutex_lock(&v->mu);
	while (!v->tick_stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&v->tick_cv, &v->mu, &ts);
		if (v->tick_stop)
			break;
		pthread_mutex_unlock(&v->mu);
		vol_tick(v);
		pthread_mutex_lock(&v->mu);
	}
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

int vol_mount(int image_fd, const char *mountpoint, unsigned flags, struct vol **out)
{
	struct vol *v;
	bool replayed = false;
	uint32_t last = 0, last_replayed = 0;
	pthread_condattr_t ca;
	int err;

	*out = NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->fd = fcntl(image_fd, F_DUPFD_CLOEXEC, 3);
	if (v->fd < 0) {
		err = -errno;
		free(v);
		return err;
	}
	v->flags = flags;
	v->mountpoint = strdup(mountpoint ? mountpoint : "/");
	if (!v->mountpoint) {
		err = -ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&v->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&v->tick_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_once(&vol_err_once, vol_err_init);

	err = vol_dc_init(v);
	if (err)
		goto fail;
	err = fs_open(v->fd, flags, &v->fs);
	if (err)
		goto fail;
	err = fs_check(v->fs);
	if (err)
		goto fail;
	if (!(flags & VOL_RDONLY)) {
		err = vol_jnl_replay_raw(v->fs, v->fd, &replayed, &last_replayed);
		if (err)
			goto fail;
		if (replayed) {
			ext2fs_free(v->fs);
			v->fs = NULL;
			err = fs_open(v->fd, flags, &v->fs);
			if (err)
				goto fail;
			err = fs_check(v->fs);
			if (err)
				goto fail;
		}
	}
	err = vol_jnl_load(v, &last);
	if (replayed)
		last = last_replayed;
	if (err) {
		if (err == -EROFS)
			vol_log("the journal needs recovery and the volume is read-only: run e2fsck");
		goto fail;
	}
	err = vol_err(ext2fs_read_bitmaps(v->fs));
	if (err)
		goto fail;
	v->cache = v->fs->io->private_data;
	/*
	 * Checksums were verified when the superblock, group descriptors and
	 * bitmaps were read.  After that, blocks come from our cache or the
	 * image we alone write: verifying every extent, directory and inode
	 * block on each read costs half the CPU of a metadata operation
	 * (software crc32c over 4 KiB).  Checksums are still computed on
	 * every write, so the image stays valid for e2fsck and the kernel.
	 */
	v->fs->flags |= EXT2_FLAG_IGNORE_CSUM_ERRORS;
	v->fs->priv_data = v;
	ext2fs_set_block_alloc_stats_callback(v->fs, on_block_stats, NULL);
	ext2fs_set_block_alloc_stats_range_callback(v->fs, on_block_stats_range, NULL);
	{
		const unsigned char *u = v->fs->super->s_uuid;
		uint32_t h = 2166136261u;

		for (int i = 0; i < 16; i++)
			h = (h ^ u[i]) * 16777619u;
		v->dev = makedev(0x4c0 + (h & 0xff), (h >> 8) & 0xfffff);
	}
	clock_gettime(CLOCK_MONOTONIC, &v->txn_start);
	v->owner_pid = getpid();
	if (!(flags & VOL_RDONLY)) {
		struct ext2_super_block *sb = v->fs->super;

		err = orphans_release(v);
		if (err)
			goto fail;
		ext2fs_set_feature_journal_needs_recovery(sb);
		sb->s_state &= (uint16_t)~EXT2_VALID_FS;
		sb->s_mnt_count++;
		sb->s_mtime = (uint32_t)time(NULL);
		memset(sb->s_last_mounted, 0, sizeof(sb->s_last_mounted));
		strncpy((char *)sb->s_last_mounted, v->mountpoint, sizeof(sb->s_last_mounted) - 1);
		ext2fs_mark_super_dirty(v->fs);
		v->meta_dirty = true;
		err = vol_jnl_commit(v, true);
		if (err)
			goto fail;
	}
	/*
	 * The mount's own transaction does not count: what a crashed user of
	 * the volume had running (sequence last + 1) must not look committed.
	 */
	v->committed = last;
	if (!(flags & VOL_NO_TICK) && !(flags & VOL_RDONLY)) {
		if (pthread_create(&v->tick_thread, NULL, tick_main, v) == 0)
			v->tick_running = true;
	}
	*out = v;
	return 0;
fail:
	vol_dc_free(v);
	if (v->fs)
		ext2fs_free(v->fs);
	free(v->jmap);
	free(v->mountpoint);
	close(v->fd);
	free(v);
	return err;
}

int vol_unmount(struct vol *v)
{
	int err = 0, e2;

	if (!v)
		return -EINVAL;
	/* A forked child never saw the timer thread: only the process that started it stops it. */
	if (v->tick_running && getpid() == v->owner_pid) {
		pthread_mutex_lock(&v->mu);
		v->tick_stop = true;
		pthread_cond_signal(&v->tick_cv);
		pthread_mutex_unlock(&v->mu);
		pthread_join(v->tick_thread, NULL);
	}
	pthread_mutex_lock(&v->mu);
	if (!(v->flags & VOL_RDONLY)) {
		struct ext2_super_block *sb = v->fs->super;

		err = orphans_release(v);
		ext2fs_clear_feature_journal_needs_recovery(sb);
		sb->s_state |= EXT2_VALID_FS;
		ext2fs_mark_super_dirty(v->fs);
		v->meta_dirty = true;
		e2 = vol_jnl_commit(v, true);
		if (!err)
			err = e2;
		if (!e2) {
			e2 = vol_jnl_close(v);
			if (!err)
				err = e2;
		}
	}
	for (int i = 0; i < 64; i++)
		while (v->refs[i]) {
			struct vol_ref *r = v->refs[i];

			v->refs[i] = r->next;
			free(r);
		}
	while (v->locks) {
		struct vol_lockrec *l = v->locks;

		v->locks = l->next;
		free(l);
	}
	vol_dc_free(v);
	ext2fs_free(v->fs);
	pthread_mutex_unlock(&v->mu);
	pthread_mutex_destroy(&v->mu);
	pthread_cond_destroy(&v->tick_cv);
	free(v->jmap);
	free(v->mountpoint);
	close(v->fd);
	free(v);
	return err;
}

/*
 * Whether the running transaction holds nothing: no metadata changed since
 * the last commit.  Then every change of every operation that returned is
 * in a committed transaction already (file data goes straight to its
 * blocks), so there is nothing for vol_sync to commit.
 */
static bool txn_empty(struct vol *v)
{
	return !v->meta_dirty && v->nfreed == 0 && vol_cache_ndirty(v->cache) == 0;
}

int vol_sync(struct vol *v, bool durable)
{
	int err;

	pthread_mutex_lock(&v->mu);
	/*
	 * A forced transaction (of the unchanged superblock) only when the
	 * running one holds something: libretto-fsd syncs after every batch
	 * that wrote, and a 4 KiB overwrite within the same clock tick changes
	 * no metadata at all; committing nothing costs nothing.
	 * vol_running_seq() answers the committed sequence while the running
	 * transaction is empty, so the promise of vol.h still holds.
	 */
	v->force_txn = !txn_empty(v);
	err = vol_jnl_commit(v, durable);
	v->force_txn = false;
	pthread_mutex_unlock(&v->mu);
	return err;
}

int vol_tick(struct vol *v)
{
	struct timespec now;
	int err = 0;

	pthread_mutex_lock(&v->mu);
	clock_gettime(CLOCK_MONOTONIC, &now);
	/* Durable, as ext4's commit interval: a power loss keeps all but the last 5 s. */
	if ((v->meta_dirty || vol_cache_ndirty(v->cache) || v->jsb_unsynced) && now.tv_sec - v->txn_start.tv_sec >= 5)
		err = vol_jnl_commit(v, true);
	pthread_mutex_unlock(&v->mu);
	return err;
}

int vol_fsync(struct vol *v, vol_ino_t ino, bool datasync)
{
	int err;

	/*
	 * One image holds every file: a durable commit syncs all data written
	 * so far with the metadata (and with nothing to commit it still
	 * fdatasyncs when data was written since the last sync).
	 */
	pthread_mutex_lock(&v->mu);
	err = vol_jnl_commit(v, true);
	pthread_mutex_unlock(&v->mu);
	return err;
}

uint64_t vol_running_seq(struct vol *v)
{
	uint64_t s;

	pthread_mutex_lock(&v->mu);
	/* Empty: what returned so far is all in committed transactions. */
	s = txn_empty(v) ? v->committed : v->jseq;
	pthread_mutex_unlock(&v->mu);
	return s;
}

uint64_t vol_committed_seq(struct vol *v)
{
	uint64_t s;

	pthread_mutex_lock(&v->mu);
	s = v->committed;
	pthread_mutex_unlock(&v->mu);
	return s;
}

int vol_generation(struct vol *v, vol_ino_t ino, uint32_t *gen)
{
	struct ext2_inode_large in;
	int err;

	pthread_mutex_lock(&v->mu);
	err = live_iread(v, ino, &in);
	if (!err)
		*gen = in.i_generation;
	pthread_mutex_unlock(&v->mu);
	return err;
}
