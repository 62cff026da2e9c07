/* Internal state of a mounted volume, shared by vol.c (operations), vol_io.c (block cache) and vol_jnl.c (journal). */
#ifndef LIBRETTO_VOL_INT_H
#define LIBRETTO_VOL_INT_H

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vol/vol.h"

#define VOL_BS 4096u

/*
 * One 4096-byte block of the image held in memory.  Dirty entries are
 * metadata written by libext2fs since the last commit: they reach their
 * home block only through the journal.  Clean entries are a bounded read
 * cache (LRU), dropped first under pressure.
 */
struct vol_blk {
	uint64_t nr;
	struct vol_blk *hnext;			/* hash chain */
	struct vol_blk *prev, *next;		/* LRU list (clean) or dirty list */
	bool dirty;
	unsigned char data[VOL_BS];
};

/* The io_channel's private data: the image descriptor and the cache. */
struct vol_cache {
	int fd;
	struct vol_blk **hash;
	size_t nhash;
	struct vol_blk clean;			/* list heads (sentinels) */
	struct vol_blk dirty;
	size_t nclean, ndirty, max_clean;
	int read_only;
};

/* An open reference on an inode (vol_open/vol_hold), kept in a small hash table. */
struct vol_ref {
	vol_ino_t ino;
	uint32_t count;
	struct vol_ref *next;
};

/* One record lock (fcntl), a range [start, end] inclusive (end UINT64_MAX: to EOF and beyond). */
struct vol_lockrec {
	vol_ino_t ino;
	uint64_t owner;
	short type;
	pid_t pid;
	uint64_t start, end;
	struct vol_lockrec *next;
};

/* The last extent found by the data path's map lookup (one per volume: cheap sequential access). */
struct vol_ext_cache {
	vol_ino_t ino;
	bool valid, uninit;
	uint64_t lblk, len, pblk;
};

struct vol {
	pthread_mutex_t mu;
	ext2_filsys fs;
	struct vol_cache *cache;
	int fd;					/* the image (the cache's descriptor) */
	unsigned flags;
	char *mountpoint;
	dev_t dev;

	/* journal (vol_jnl.c) */
	uint64_t *jmap;				/* journal block -> image block */
	uint32_t jfirst, jlast;			/* usable journal blocks [jfirst, jlast) */
	uint32_t jseq;				/* sequence of the next transaction */
	uint32_t jtagsz;			/* 8 or 12 bytes */
	bool j64;
	bool ckpt_unsynced;			/* home writes of the last commit not yet fdatasync'ed */
	bool jsb_unsynced;			/* the last commit's journal superblock and commit block neither */
	bool jhalf;				/* the next transaction goes to the second half of the log */
	bool force_txn;				/* vol_sync: commit a transaction even when nothing changed */
	uint32_t committed;			/* sequence of the last committed transaction (vol_committed_seq) */
	bool data_unsynced;			/* direct data writes since the last fdatasync */
	bool meta_dirty;			/* an operation changed metadata since the last commit */
	uint64_t nfreed;			/* blocks freed in the running transaction */
	struct timespec txn_start;

	struct vol_ext_cache ec;
	struct vol_ref *refs[64];
	struct vol_lockrec *locks;

	struct vol_dcache *dc;			/* names of large directories (vol_dcache.c) */

	pthread_t tick_thread;
	bool tick_running, tick_stop;
	pthread_cond_t tick_cv;
	pid_t owner_pid;
};

/* vol_io.c */
extern struct struct_io_manager vol_io_manager;
int vol_cache_drop(struct vol_cache *c, uint64_t blk, uint64_t n);
size_t vol_cache_ndirty(const struct vol_cache *c);
/* Collect the dirty blocks sorted by block number; *out is malloc'ed. */
int vol_cache_dirty_list(struct vol_cache *c, struct vol_blk ***out, size_t *n);
void vol_cache_mark_clean(struct vol_cache *c, struct vol_blk *b);
void vol_cache_invalidate(struct vol_cache *c, uint64_t blk, uint64_t n);
/* Mark block nr dirty as it is (a transaction that must exist even with nothing changed). */
int vol_cache_touch(struct vol_cache *c, uint64_t nr);

/* vol_jnl.c */
int vol_jnl_load(struct vol *v, uint32_t *last);
int vol_jnl_replay_raw(ext2_filsys fs, int fd, bool *replayed, uint32_t *last);
int vol_jnl_commit(struct vol *v, bool durable);
int vol_jnl_close(struct vol *v);
uint32_t vol_jnl_capacity(const struct vol *v);

/* vol.c */
int vol_err(errcode_t e);
int vol_pwrite_full(int fd, const void *buf, size_t n, uint64_t off);
int vol_pread_full(int fd, void *buf, size_t n, uint64_t off);

#endif
