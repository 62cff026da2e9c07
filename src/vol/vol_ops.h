/* Helpers shared by the volume's files (inodes, references, orphans, time stamps). */
#ifndef LIBRETTO_VOL_OPS_H
#define LIBRETTO_VOL_OPS_H

#include "vol/vol_int.h"

#define VOL_T_A 1
#define VOL_T_M 2
#define VOL_T_C 4

void vol_ts_set(uint32_t *sec, uint32_t *extra, const struct timespec *ts);
void vol_ts_get(uint32_t sec, const uint32_t *extra, struct timespec *ts);
bool vol_has_extra(const struct ext2_inode_large *in, size_t off);
bool vol_touch(struct ext2_inode_large *in, int which);
int vol_iread(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in);
int vol_iwrite(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in);
uint32_t vol_refcount(struct vol *v, vol_ino_t ino);
int vol_ref_get(struct vol *v, vol_ino_t ino);
int vol_orphan_add(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in);
int vol_ifree(struct vol *v, vol_ino_t ino);
int vol_ilast_link(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in);
void vol_maybe_commit(struct vol *v);



/* vol_dcache.c: 0 found, -ENOENT not there, 1 unknown (scan the directory) */
int vol_dc_init(struct vol *v);
void vol_dc_free(struct vol *v);
int vol_dc_lookup(struct vol *v, vol_ino_t dir, const char *name, size_t len, vol_ino_t *ino);
void vol_dc_add(struct vol *v, vol_ino_t dir, const char *name, vol_ino_t ino);
void vol_dc_del(struct vol *v, vol_ino_t dir, const char *name);
void vol_dc_forget(struct vol *v, vol_ino_t dir);

/* vol_data.c */
int vol_punch_tail(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t start);
int vol_itrunc(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in, uint64_t size);
/* Free blocks a metadata change that may grow an extent tree wants to see first (libext2fs leaks on ENOSPC half way). */
#define VOL_META_ROOM 4
#define VOL_MAX_FILE ((uint64_t)0xffffffffu * VOL_BS)	/* 2^32 - 1 blocks of 4096: ext4 extents' limit */
#endif
