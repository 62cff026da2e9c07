/* Volume operations on names, attributes, directories and record locks (vol.h), with Linux ext4's errno values. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "vol/vol_int.h"
#include "vol/vol_ops.h"

#define VOL_LINK_MAX 65000
#define VOL_SYMLOOP_MAX 40

static uint32_t i_uid(const struct ext2_inode_large *in)
{
	return in->i_uid | (uint32_t)in->osd2.linux2.l_i_uid_high << 16;
}

static uint32_t i_gid(const struct ext2_inode_large *in)
{
	return in->i_gid | (uint32_t)in->osd2.linux2.l_i_gid_high << 16;
}

static void set_uid(struct ext2_inode_large *in, uint32_t uid)
{
	in->i_uid = (uint16_t)uid;
	in->osd2.linux2.l_i_uid_high = (uint16_t)(uid >> 16);
}

static void set_gid(struct ext2_inode_large *in, uint32_t gid)
{
	in->i_gid = (uint16_t)gid;
	in->osd2.linux2.l_i_gid_high = (uint16_t)(gid >> 16);
}

static bool is_root(const struct vol_cred *c)
{
	return !c || c->uid == 0;
}

static bool in_group(const struct vol_cred *c, uint32_t gid)
{
	if (c->gid == gid)
		return true;
	for (uint32_t i = 0; i < c->ngroups && i < 16; i++)
		if (c->groups[i] == gid)
			return true;
	return false;
}

/* Permission check as generic_permission: root passes except X on a file nobody may execute. */
static int perm(const struct ext2_inode_large *in, int mask, const struct vol_cred *c)
{
	unsigned mode = in->i_mode, bits;

	mask &= 7;
	if (is_root(c)) {
		if ((mask & X_OK) && !LINUX_S_ISDIR(mode) && !(mode & 0111))
			return -EACCES;
		return 0;
	}
	if (i_uid(in) == c->uid)
		bits = mode >> 6;
	else if (in_group(c, i_gid(in)))
		bits = mode >> 3;
	else
		bits = mode;
	return ((int)bits & mask) == mask ? 0 : -EACCES;
}

static int iperm(struct vol *v, vol_ino_t ino, int mask, const struct vol_cred *c)
{
	struct ext2_inode_large in;
	int err = vol_iread(v, ino, &in);

	return err ? err : perm(&in, mask, c);
}

/* The sticky bit: only the file's owner, the directory's owner or root may remove or rename. */
static int sticky_ok(const struct ext2_inode_large *dir, const struct ext2_inode_large *in, const struct vol_cred *c)
{
	if (!(dir->i_mode & LINUX_S_ISVTX) || is_root(c))
		return 0;
	if (i_uid(in) == c->uid || i_uid(dir) == c->uid)
		return 0;
	return -EPERM;
}

static int ftype(unsigned mode)
{
	switch (mode & LINUX_S_IFMT) {
	case LINUX_S_IFREG: return EXT2_FT_REG_FILE;
	case LINUX_S_IFDIR: return EXT2_FT_DIR;
	case LINUX_S_IFCHR: return EXT2_FT_CHRDEV;
	case LINUX_S_IFBLK: return EXT2_FT_BLKDEV;
	case LINUX_S_IFIFO: return EXT2_FT_FIFO;
	case LINUX_S_IFSOCK: return EXT2_FT_SOCK;
	case LINUX_S_IFLNK: return EXT2_FT_SYMLINK;
	}
	return EXT2_FT_UNKNOWN;
}

static int read_link(struct vol *v, struct ext2_inode_large *in, char *buf, size_t n, size_t *len)
{
	uint64_t size = EXT2_I_SIZE(in);
	blk64_t p = 0;
	errcode_t e;
	int err;

	if (size > VOL_BS - 1)
		return -EIO;
	if (ext2fs_is_fast_symlink((struct ext2_inode *)in)) {
		if (size > sizeof(in->i_block))
			return -EIO;
		memcpy(buf, in->i_block, size < n ? size : n);
	} else {
		char blk[VOL_BS];

		e = ext2fs_bmap2(v->fs, 0, (struct ext2_inode *)in, NULL, 0, 0, NULL, &p);
		if (e || !p)
			return e ? vol_err(e) : -EIO;
		err = vol_err(io_channel_read_blk64(v->fs->io, p, 1, blk));
		if (err)
			return err;
		memcpy(buf, blk, size < n ? size : n);
	}
	*len = size < n ? size : n;
	return 0;
}

/* ---- path resolution ---- */

/* One name in one directory: the name cache first, else libext2fs' scan. */
static int dir_lookup(struct vol *v, vol_ino_t dir, const char *name, size_t len, vol_ino_t *ino)
{
	ext2_ino_t i = 0;
	errcode_t e;
	int rc = vol_dc_lookup(v, dir, name, len, ino);

	if (rc <= 0)
		return rc;
	e = ext2fs_lookup(v->fs, dir, name, (int)len, NULL, &i);
	if (e == EXT2_ET_FILE_NOT_FOUND)
		return -ENOENT;
	if (e)
		return vol_err(e);
	*ino = i;
	return 0;
}

struct vol_path {
	vol_ino_t dir;			/* directory holding the last component */
	vol_ino_t ino;			/* the last component's inode, 0 when it does not exist */
	char name[EXT2_NAME_LEN + 1];
	bool slash;			/* the path ended with '/' */
};

static int resolve(struct vol *v, vol_ino_t start, const char *path, bool follow, const struct vol_cred *c,
		   struct vol_path *out, int *depth)
{
	struct ext2_inode_large in;
	vol_ino_t cur;
	const char *p = path;
	int err;

	if (!path)
		return -EFAULT;
	if (!*path)
		return -ENOENT;
	if (strnlen(path, PATH_MAX) >= PATH_MAX)
		return -ENAMETOOLONG;
	cur = *p == '/' ? VOL_ROOT_INO : start;
	out->dir = cur;
	out->ino = cur;
	strcpy(out->name, ".");
	out->slash = false;
	for (;;) {
		const char *comp, *rest;
		size_t clen;
		bool last;
		vol_ino_t ino = 0;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		comp = p;
		while (*p && *p != '/')
			p++;
		clen = (size_t)(p - comp);
		rest = p;
		while (*rest == '/')
			rest++;
		last = *rest == '\0';
		if (clen > EXT2_NAME_LEN)
			return -ENAMETOOLONG;
		err = vol_iread(v, cur, &in);
		if (err)
			return err;
		if (!LINUX_S_ISDIR(in.i_mode))
			return -ENOTDIR;
		err = perm(&in, X_OK, c);
		if (err)
			return err;
		if (clen == 2 && comp[0] == '.' && comp[1] == '.' && cur == VOL_ROOT_INO) {
			ino = VOL_ROOT_INO;
		} else {
			err = dir_lookup(v, cur, comp, clen, &ino);
			if (err == -ENOENT) {
				if (!last)
					return -ENOENT;
				out->dir = cur;
				out->ino = 0;
				memcpy(out->name, comp, clen);
				out->name[clen] = '\0';
				out->slash = *p == '/';
				return 0;
			}
			if (err)
				return err;
		}
		err = vol_iread(v, ino, &in);
		if (err)
			return err;
		if (LINUX_S_ISLNK(in.i_mode) && (!last || follow || *p == '/')) {
			char target[VOL_BS];
			size_t tlen, mlen = strlen(v->mountpoint), rlen = strlen(rest);
			vol_ino_t base = cur;
			char *np;
			const char *t;

			if (++*depth > VOL_SYMLOOP_MAX)
				return -ELOOP;
			err = read_link(v, &in, target, sizeof(target) - 1, &tlen);
			if (err)
				return err;
			target[tlen] = '\0';
			t = target;
			if (tlen == 0)
				return -ENOENT;
			if (target[0] == '/') {
				if (mlen == 1)
					mlen = 0;	/* mounted at "/": every absolute target is inside */
				if (strncmp(target, v->mountpoint, mlen) != 0 || (target[mlen] != '/' && target[mlen] != '\0'))
					return -EXDEV;
				t = target + mlen;
				base = VOL_ROOT_INO;
				if (!*t)
					t = "/";
			}
			np = malloc(strlen(t) + rlen + 3);
			if (!np)
				return -ENOMEM;
			strcpy(np, t);
			if (rlen) {
				strcat(np, "/");
				strcat(np, rest);
			} else if (*p == '/') {
				strcat(np, "/");
			}
			err = resolve(v, base, np, follow, c, out, depth);
			free(np);
			return err;
		}
		if (!last) {
			cur = ino;
			continue;
		}
		out->dir = cur;
		out->ino = ino;
		memcpy(out->name, comp, clen);
		out->name[clen] = '\0';
		out->slash = *p == '/';
		return 0;
	}
	/* The path was "/" or ended in slashes after a directory already reached: it names cur. */
	out->ino = cur;
	out->dir = cur;
	strcpy(out->name, ".");
	out->slash = true;
	return 0;
}

static int walk(struct vol *v, vol_ino_t start, const char *path, bool follow, const struct vol_cred *c,
		struct vol_path *out)
{
	int depth = 0;

	return resolve(v, start, path, follow, c, out, &depth);
}

int vol_lookup(struct vol *v, vol_ino_t dir, const char *path, int flags, vol_ino_t *ino)
{
	struct ext2_inode_large in;
	struct vol_path vp;
	int err;

	pthread_mutex_lock(&v->mu);
	if ((flags & AT_EMPTY_PATH) && path && !*path) {
		err = vol_iread(v, dir, &in);
		if (!err)
			*ino = dir;
		goto out;
	}
	err = walk(v, dir, path, !(flags & AT_SYMLINK_NOFOLLOW), NULL, &vp);
	if (err)
		goto out;
	if (!vp.ino) {
		err = -ENOENT;
		goto out;
	}
	err = vol_iread(v, vp.ino, &in);
	if (!err && vp.slash && !LINUX_S_ISDIR(in.i_mode))
		err = -ENOTDIR;
	if (!err)
		*ino = vp.ino;
out:
	pthread_mutex_unlock(&v->mu);
	return err;
}

/* ---- creating inodes ---- */

/*
 * Put a new entry into the last block of a linear directory (the block a
 * growing directory fills): 0 done, 1 no room there, <0 error.
 * ext2fs_link instead scans every block for room, which makes creating
 * files in a large directory quadratic.
 */
static int dir_add_last(struct vol *v, vol_ino_t dir, const char *name, vol_ino_t ino, int ft)
{
	struct ext2_inode_large in;
	unsigned char *buf;
	size_t len = strlen(name);
	unsigned need = (unsigned)(8 + len + 3) & ~3u, off = 0, end = VOL_BS;
	blk64_t p = 0;
	uint64_t nblk;
	errcode_t e;
	int err, rc = 1;

	err = vol_iread(v, dir, &in);
	if (err)
		return err;
	nblk = EXT2_I_SIZE(&in) / VOL_BS;
	if ((in.i_flags & EXT2_INDEX_FL) || nblk < 2)
		return 1;
	e = ext2fs_bmap2(v->fs, dir, (struct ext2_inode *)&in, NULL, 0, nblk - 1, NULL, &p);
	if (e || !p)
		return 1;
	buf = malloc(VOL_BS);
	if (!buf)
		return -ENOMEM;
	e = ext2fs_read_dir_block4(v->fs, p, buf, 0, dir);
	if (e) {
		free(buf);
		return 1;
	}
	if (ext2fs_has_feature_metadata_csum(v->fs->super))
		end = VOL_BS - sizeof(struct ext2_dir_entry_tail);
	while (off + 8 <= end) {
		struct ext2_dir_entry *de = (struct ext2_dir_entry *)(buf + off);
		unsigned int rl = 0, used;

		if (ext2fs_get_rec_len(v->fs, de, &rl) || rl < 8 || off + rl > end)
			break;
		used = de->inode ? (unsigned)(8 + ext2fs_dirent_name_len(de) + 3) & ~3u : 0;
		if (rl >= used + need) {
			struct ext2_dir_entry *ne = de;

			if (used) {
				ext2fs_set_rec_len(v->fs, used, de);
				ne = (struct ext2_dir_entry *)(buf + off + used);
			}
			ne->inode = ino;
			ext2fs_set_rec_len(v->fs, rl - used, ne);
			ext2fs_dirent_set_name_len(ne, (int)len);
			ext2fs_dirent_set_file_type(ne, ext2fs_has_feature_filetype(v->fs->super) ? ft : 0);
			memcpy(ne->name, name, len);
			v->meta_dirty = true;
			e = ext2fs_write_dir_block4(v->fs, p, buf, 0, dir);
			rc = e ? vol_err(e) : 0;
			break;
		}
		off += rl;
	}
	free(buf);
	return rc;
}

static int dir_add(struct vol *v, vol_ino_t dir, const char *name, vol_ino_t ino, int ft)
{
	errcode_t e;
	int rc;

	v->meta_dirty = true;
	rc = dir_add_last(v, dir, name, ino, ft);
	if (rc == 0)
		vol_dc_add(v, dir, name, ino);
	if (rc <= 0)
		return rc;
	/* The last block is full: a gap elsewhere (unlinks leave them), found by libext2fs' scan. */
	e = ext2fs_link(v->fs, dir, name, ino, ft);
	if (e == EXT2_ET_DIR_NO_SPACE) {
		/* expand_dir leaks its new block when the extent tree then needs one and none is left. */
		if (ext2fs_free_blocks_count(v->fs->super) < VOL_META_ROOM)
			return -ENOSPC;
		e = ext2fs_expand_dir(v->fs, dir);
		if (!e) {
			rc = dir_add_last(v, dir, name, ino, ft);
			if (rc < 0)
				return rc;
			if (rc == 1)
				e = ext2fs_link(v->fs, dir, name, ino, ft);
		}
	}
	if (!e)
		vol_dc_add(v, dir, name, ino);
	return vol_err(e);
}

static int adj_links(struct vol *v, vol_ino_t ino, int delta, int touch)
{
	struct ext2_inode_large in;
	int err = vol_iread(v, ino, &in);

	if (err)
		return err;
	if (delta > 0) {
		if (in.i_links_count >= VOL_LINK_MAX - 1 || in.i_links_count == 1)
			in.i_links_count = 1;	/* dir_nlink: too many subdirectories to count */
		else
			in.i_links_count++;
	} else if (delta < 0 && in.i_links_count > 2) {
		/* 1 stays 1: the count overflowed once and is not kept any more (dir_nlink). */
		in.i_links_count--;
	}
	if (touch)
		vol_touch(&in, touch);
	return vol_iwrite(v, ino, &in);
}

static uint32_t next_generation(void)
{
	static uint32_t seed;
	struct timespec ts;

	if (!seed) {
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec ^ (uint32_t)getpid() << 16;
	}
	seed = seed * 1103515245u + 12345u;
	return seed;
}

/* Write a new inode in full (the in-inode extended attribute space too: it may hold an old inode's). */
static int iwrite_new(struct vol *v, vol_ino_t ino, struct ext2_inode_large *in)
{
	int isz = EXT2_INODE_SIZE(v->fs->super);
	char *buf = calloc(1, (size_t)isz > sizeof(*in) ? (size_t)isz : sizeof(*in));
	errcode_t e;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, in, isz < (int)sizeof(*in) ? (size_t)isz : sizeof(*in));
	v->meta_dirty = true;
	e = ext2fs_write_inode_full(v->fs, ino, (struct ext2_inode *)buf, isz);
	free(buf);
	return vol_err(e);
}

static void init_inode(struct vol *v, struct ext2_inode_large *in, unsigned mode, const struct ext2_inode_large *parent,
		       const struct vol_cred *c)
{
	struct timespec now;
	uint32_t gid = c ? c->gid : 0;

	memset(in, 0, sizeof(*in));
	if (parent->i_mode & LINUX_S_ISGID) {
		gid = i_gid(parent);
		if (LINUX_S_ISDIR(mode))
			mode |= LINUX_S_ISGID;
	}
	in->i_mode = (uint16_t)mode;
	set_uid(in, c ? c->uid : 0);
	set_gid(in, gid);
	in->i_links_count = 1;
	if (EXT2_INODE_SIZE(v->fs->super) > EXT2_GOOD_OLD_INODE_SIZE)
		in->i_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
	in->i_generation = next_generation();
	clock_gettime(CLOCK_REALTIME, &now);
	vol_ts_set(&in->i_atime, in->i_extra_isize ? &in->i_atime_extra : NULL, &now);
	vol_ts_set(&in->i_mtime, in->i_extra_isize ? &in->i_mtime_extra : NULL, &now);
	vol_ts_set(&in->i_ctime, in->i_extra_isize ? &in->i_ctime_extra : NULL, &now);
	if (in->i_extra_isize)
		vol_ts_set(&in->i_crtime, &in->i_crtime_extra, &now);
	if (ext2fs_has_feature_extents(v->fs->super) && (LINUX_S_ISREG(mode) || LINUX_S_ISDIR(mode))) {
		struct ext3_extent_header *eh = (struct ext3_extent_header *)in->i_block;

		in->i_flags |= EXT4_EXTENTS_FL;
		eh->eh_magic = ext2fs_cpu_to_le16(EXT3_EXT_MAGIC);
		eh->eh_max = ext2fs_cpu_to_le16((sizeof(in->i_block) - sizeof(*eh)) / sizeof(struct ext3_extent));
	}
}

/* Create a regular file or directory named name in dir (which the caller checked). */
static int create(struct vol *v, vol_ino_t dir, const char *name, unsigned mode, const struct vol_cred *c,
		  vol_ino_t *out)
{
	struct ext2_inode_large parent, in;
	ext2_ino_t ino = 0;
	bool isdir = LINUX_S_ISDIR(mode);
	errcode_t e;
	int err;

	err = vol_iread(v, dir, &parent);
	if (err)
		return err;
	if (parent.i_links_count == 0)
		return -ENOENT;
	if (isdir && parent.i_links_count >= VOL_LINK_MAX && !ext2fs_has_feature_dir_nlink(v->fs->super))
		return -EMLINK;
	if (isdir && ext2fs_free_blocks_count(v->fs->super) < VOL_META_ROOM + 1)
		return -ENOSPC;
	v->meta_dirty = true;
	e = ext2fs_new_inode(v->fs, dir, (int)mode, NULL, &ino);
	if (e)
		return vol_err(e);
	init_inode(v, &in, mode, &parent, c);
	if (isdir) {
		blk64_t blk = 0;
		char *block = NULL;

		in.i_links_count = 2;
		e = ext2fs_new_block2(v->fs, ext2fs_find_inode_goal(v->fs, ino, (struct ext2_inode *)&in, 0), NULL, &blk);
		if (!e)
			e = ext2fs_new_dir_block(v->fs, ino, dir, &block);
		if (e) {
			if (block)
				ext2fs_free_mem(&block);
			return vol_err(e);
		}
		ext2fs_iblk_set(v->fs, (struct ext2_inode *)&in, 1);
		in.i_size = VOL_BS;
		/* The inode first: the directory block's checksum covers its generation. */
		err = iwrite_new(v, ino, &in);
		if (!err)
			err = vol_err(ext2fs_write_dir_block4(v->fs, blk, block, 0, ino));
		ext2fs_free_mem(&block);
		if (err)
			return err;
		e = ext2fs_bmap2(v->fs, ino, (struct ext2_inode *)&in, NULL, BMAP_SET, 0, NULL, &blk);
		if (e)
			return vol_err(e);
		ext2fs_block_alloc_stats2(v->fs, blk, +1);
	} else {
		err = iwrite_new(v, ino, &in);
		if (err)
			return err;
	}
	ext2fs_inode_alloc_stats2(v->fs, ino, +1, isdir);
	err = dir_add(v, dir, name, ino, ftype(mode));
	if (err) {
		vol_ifree(v, ino);
		return err;
	}
	err = adj_links(v, dir, isdir ? 1 : 0, VOL_T_M | VOL_T_C);
	if (err)
		return err;
	*out = ino;
	return 0;
}

static bool is_dot(const char *n)
{
	return n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'));
}

/*
 * A new inode of mode (type and permission bits) as vp->name in vp->dir,
 * which the caller checked does not exist: -EROFS on a read-only volume
 * first, then the caller must be able to write and search the directory.
 */
static int create_new(struct vol *v, const struct vol_path *vp, unsigned mode,
		      const struct vol_cred *cred, vol_ino_t *ino)
{
	int err;

	if (v->flags & VOL_RDONLY)
		return -EROFS;
	err = iperm(v, vp->dir, W_OK | X_OK, cred);
	if (err)
		return err;
	return create(v, vp->dir, vp->name, mode, cred, ino);
}

int vol_open(struct vol *v, vol_ino_t dir, const char *path, int oflags, mode_t mode, const struct vol_cred *cred,
	     vol_ino_t *ino)
{
	struct ext2_inode_large in;
	struct vol_path vp;
	int acc = oflags & O_ACCMODE, err, mask = 0;
	bool follow;

	if ((oflags & O_TMPFILE) == O_TMPFILE)
		return -EOPNOTSUPP;
	follow = !(oflags & O_NOFOLLOW) && !((oflags & O_CREAT) && (oflags & O_EXCL));
	pthread_mutex_lock(&v->mu);
	err = walk(v, dir, path, follow, cred, &vp);
	if (err)
		goto out;
	if (!vp.ino) {
		if (!(oflags & O_CREAT) || (oflags & O_PATH)) {
			err = -ENOENT;
			goto out;
		}
		if (vp.slash) {
			err = -EISDIR;
			goto out;
		}
		err = create_new(v, &vp, LINUX_S_IFREG | (mode & 07777), cred, &vp.ino);
		if (err)
			goto out;
		goto ref;
	}
	if ((oflags & O_CREAT) && (oflags & O_EXCL)) {
		err = -EEXIST;
		goto out;
	}
	err = vol_iread(v, vp.ino, &in);
	if (err)
		goto out;
	if (LINUX_S_ISLNK(in.i_mode) && !(oflags & O_PATH)) {
		err = -ELOOP;
		goto out;
	}
	if ((vp.slash || (oflags & O_DIRECTORY)) && !LINUX_S_ISDIR(in.i_mode)) {
		err = -ENOTDIR;
		goto out;
	}
	if (oflags & O_PATH)
		goto ref;
	if (LINUX_S_ISDIR(in.i_mode) && (acc != O_RDONLY || (oflags & (O_TRUNC | O_CREAT)))) {
		err = -EISDIR;
		goto out;
	}
	if (acc == O_RDONLY || acc == O_RDWR)
		mask |= R_OK;
	if (acc == O_WRONLY || acc == O_RDWR || (oflags & O_TRUNC))
		mask |= W_OK;
	err = perm(&in, mask, cred);
	if (err)
		goto out;
	if ((mask & W_OK) && (v->flags & VOL_RDONLY)) {
		err = -EROFS;
		goto out;
	}
	if ((oflags & O_TRUNC) && LINUX_S_ISREG(in.i_mode) && EXT2_I_SIZE(&in) > 0) {
		err = vol_itrunc(v, vp.ino, &in, 0);
		if (err)
			goto out;
	}
ref:
	err = vol_ref_get(v, vp.ino);
	if (!err)
		*ino = vp.ino;
out:
	vol_maybe_commit(v);
	pthread_mutex_unlock(&v->mu);
	return err;
}

/* ---- attributes ---- */

int vol_getattr(struct vol *v, vol_ino_t ino, struct stat *st)
{
	struct ext2_inode_large in;
	int err;

	pthread_mutex_lock(&v->mu);
	err = vol_iread(v, ino, &in);
	if (err)
		goto out;
	if (in.i_mode == 0 || (in.i_links_count == 0 && vol_refcount(v, ino) == 0)) {
		err = -ESTALE;
		goto out;
	}
	memset(st, 0, sizeof(*st));
	st->st_dev = v->dev;
	st->st_ino = ino;
	st->st_mode = in.i_mode;
	st->st_nlink = in.i_links_count;
	if (LINUX_S_ISDIR(in.i_mode) && in.i_links_count == 1)
		st->st_nlink = 1;
	st->st_uid = i_uid(&in);
	st->st_gid = i_gid(&in);
	st->st_size = (off_t)EXT2_I_SIZE(&in);
	st->st_blksize = VOL_BS;
	st->st_blocks = (blkcnt_t)ext2fs_get_stat_i_blocks(v->fs, (struct ext2_inode *)&in);
	if (LINUX_S_ISCHR(in.i_mode) || LINUX_S_ISBLK(in.i_mode)) {
		uint32_t d = in.i_block[0] ? in.i_block[0] : in.i_block[1];

		st->st_rdev = makedev((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00));
	}
	vol_ts_get(in.i_atime, vol_has_extra(&in, offsetof(struct ext2_inode_large, i_atime_extra)) ? &in.i_atime_extra : NULL, &st->st_atim);
	vol_ts_get(in.i_mtime, vol_has_extra(&in, offsetof(struct ext2_inode_large, i_mtime_extra)) ? &in.i_mtime_extra : NULL, &st->st_mtim);
	vol_ts_get(in.i_ctime, vol_has_extra(&in, offsetof(struct ext2_inode_large, i_ctime_extra)) ? &in.i_ctime_extra : NULL, &st->st_ctim);
out:
	pthread_mutex_unlock(&v->mu);
	return err;
}

int vol_setattr(struct vol *v, vol_ino_t ino, const struct vol_setattr *sa, const struct vol_cred *c)
{
	struct ext2_inode_large in;
	bool owner;
	int err;

	pthread_mutex_lock(&v->mu);
	err = vol_iread(v, ino, &in);
	if (err)
		goto out;
	if (v->flags & VOL_RDONLY) {
		err = -EROFS;
		goto out;
	}
	owner = is_root(c) || i_uid(&in) == c->uid;
	if ((sa->valid & VOL_SET_MODE) && !owner) {
		err = -EPERM;
		goto out;
	}
	if ((sa->valid & VOL_SET_UID) && sa->uid != i_uid(&in) && !is_root(c)) {
		err = -EPERM;
		goto out;
	}
	if ((sa->valid & VOL_SET_GID) && sa->gid != i_gid(&in) && !is_root(c) && (!owner || !in_group(c, sa->gid))) {
		err = -EPERM;
		goto out;
	}
	if ((sa->valid & (VOL_SET_ATIME | VOL_SET_MTIME)) && !owner && perm(&in, W_OK, c)) {
		err = -EPERM;
		goto out;
	}
	if (sa->valid & VOL_SET_SIZE) {
		if (LINUX_S_ISDIR(in.i_mode)) {
			err = -EISDIR;
			goto out;
		}
		if (!LINUX_S_ISREG(in.i_mode)) {
			err = -EINVAL;
			goto out;
		}
		if (sa->size > VOL_MAX_FILE) {
			err = -EFBIG;
			goto out;
		}
		if (!(sa->valid & VOL_SET_FD)) {
			err = perm(&in, W_OK, c);
			if (err)
				goto out;
		}
		err = vol_itrunc(v, ino, &in, sa->size);
		if (err)
			goto out;
	}
	if (sa->valid & VOL_SET_MODE) {
		unsigned m = sa->mode & 07777;

		if (!is_root(c) && !in_group(c, i_gid(&in)))
			m &= ~(unsigned)LINUX_S_ISGID;
		in.i_mode = (uint16_t)((in.i_mode & LINUX_S_IFMT) | m);
	}
	if (sa->valid & (VOL_SET_UID | VOL_SET_GID)) {
		if (sa->valid & VOL_SET_UID)
			set_uid(&in, sa->uid);
		if (sa->valid & VOL_SET_GID)
			set_gid(&in, sa->gid);
		/* chown clears set-user-ID, and set-group-ID when group-executable, as Linux does. */
		if (!LINUX_S_ISDIR(in.i_mode)) {
			in.i_mode &= (uint16_t)~LINUX_S_ISUID;
			if (in.i_mode & 0010)
				in.i_mode &= (uint16_t)~LINUX_S_ISGID;
		}
	}
	if (sa->valid & VOL_SET_ATIME)
		vol_ts_set(&in.i_atime, in.i_extra_isize ? &in.i_atime_extra : NULL, &sa->atime);
	if (sa->valid & VOL_SET_MTIME)
		vol_ts_set(&in.i_mtime, in.i_extra_isize ? &in.i_mtime_extra : NULL, &sa->mtime);
	vol_touch(&in, VOL_T_C);
	err = vol_iwrite(v, ino, &in);
out:
	vol_maybe_commit(v);
	pthread_mutex_unlock(&v->mu);
	return err;
}

int vol_access(struct vol *v, vol_ino_t ino, int mask, const struct vol_cred *c)
{
	struct ext2_inode_large in;
	int err;

	pthread_mutex_lock(&v->mu);
	err = vol_iread(v, ino, &in);
	if (!err && mask)
		err = perm(&in, mask, c);
	if (!err && (mask & W_OK) && (v->flags & VOL_RDONLY))
		err = -EROFS;
	pthread_mutex_unlock(&v->mu);
	return err;
}

/* ---- directories ---- */

struct linux_dirent64_hdr {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static unsigned char dtype(int ft)
{
	static const unsigned char map[] = { 0, 8, 4, 2, 6, 1, 12, 10 };

	return ft >= 0 && ft < 8 ? map[ft] : 0;
}

/*
 * The cookie is the byte position in the directory of the next entry to
 * consider: unlinking merges an entry into its neighbour but moves no
 * other entry, so a listing resumes right across concurrent unlinks.
 */
ssize_t vol_readdir(struct vol *v, vol_ino_t dir, uint64_t *cookie, void *buf, size_t n)
{
	struct ext2_inode_large in;
	unsigned char *blk = malloc(VOL_BS);
	size_t filled = 0;
	uint64_t pos = *cookie, size;
	int err;

	if (!blk)
		return -ENOMEM;
	pthread_mutex_lock(&v->mu);
	err = vol_iread(v, dir, &in);
	if (err)
		goto out;
	if (!LINUX_S_ISDIR(in.i_mode)) {
		err = -ENOTDIR;
		goto out;
	}
	size = EXT2_I_SIZE(&in);
	while (pos < size) {
		uint64_t lblk = pos / VOL_BS, base = lblk * VOL_BS;
		blk64_t p = 0;
		unsigned off = 0;
		errcode_t e;

		e = ext2fs_bmap2(v->fs, dir, (struct ext2_inode *)&in, NULL, 0, lblk, NULL, &p);
		if (e) {
			err = vol_err(e);
			goto out;
		}
		if (!p) {
			pos = base + VOL_BS;
			continue;
		}
		e = io_channel_read_blk64(v->fs->io, p, 1, blk);
		if (e) {
			err = vol_err(e);
			goto out;
		}
		while (off + 8 <= VOL_BS) {
			struct ext2_dir_entry *de = (struct ext2_dir_entry *)(blk + off);
			unsigned int rl = 0;
			int nl;

			if (ext2fs_get_rec_len(v->fs, de, &rl) || rl < 8 || off + rl > VOL_BS)
				break;
			nl = ext2fs_dirent_name_len(de);
			if (base + off >= pos && de->inode && nl > 0 && off + 8 + (unsigned)nl <= VOL_BS) {
				size_t rec = (offsetof(struct linux_dirent64_hdr, d_name) + (size_t)nl + 1 + 7) & ~(size_t)7;
				struct linux_dirent64_hdr *d = (struct linux_dirent64_hdr *)((char *)buf + filled);

				if (filled + rec > n) {
					if (filled == 0)
						err = -EINVAL;
					*cookie = base + off;
					goto out;
				}
				d->d_ino = de->inode;
				d->d_off = (int64_t)(base + off + 1);
				d->d_reclen = (unsigned short)rec;
				d->d_type = ext2fs_has_feature_filetype(v->fs->super) ? dtype(ext2fs_dirent_file_type(de)) : 0;
				memcpy(d->d_name, de->name, (size_t)nl);
				memset(d->d_name + nl, 0, rec - offsetof(struct linux_dirent64_hdr, d_name) - (size_t)nl);
				filled += rec;
				pos = base + off + 1;
			}
			off += rl;
		}
		pos = base + VOL_BS;
	}
	*cookie = pos > size ? pos : size;
out:
	pthread_mutex_unlock(&v->mu);
	free(blk);
	if (err)
		return err;
	return (ssize_t)filled;
}

struct empty_ctx {
	int others;
};

static int empty_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset, int blocksize, char *buf,
		    void *priv)
{
	struct empty_ctx *c = priv;
	int nl = ext2fs_dirent_name_len(de);

	if (de->inode == 0 || (nl == 1 && de->name[0] == '.') || (nl == 2 && de->name[0] == '.' && de->name[1] == '.'))
		return 0;
	c->others++;
	return DIRENT_ABORT;
}

static int dir_empty(struct vol *v, vol_ino_t ino)
{
	struct empty_ctx c = { 0 };
	errcode_t e = ext2fs_dir_iterate2(v->fs, ino, 0, NULL, empty_cb, &c);

	if (e)
		return vol_err(e);
	return c.others ? -ENOTEMPTY : 0;
}

struct setent_ctx {
	const char *name;
	size_t len;
	vol_ino_t ino;
	int ft;
	bool done;
};

static int setent_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset, int blocksize, char *buf,
		     void *priv)
{
	struct setent_ctx *c = priv;

	if (!de->inode || (size_t)ext2fs_dirent_name_len(de) != c->len || memcmp(de->name, c->name, c->len) != 0)
		return 0;
	de->inode = c->ino;
	ext2fs_dirent_set_file_type(de, c->ft);
	c->done = true;
	return DIRENT_CHANGED | DIRENT_ABORT;
}

/* Point the existing entry name of dir at ino (rename over an existing name, "..": no allocation). */
static int dirent_set(struct vol *v, vol_ino_t dir, const char *name, vol_ino_t ino, int ft)
{
	struct setent_ctx c = { name, strlen(name), ino, ft, false };
	errcode_t e;

	v->meta_dirty = true;
	e = ext2fs_dir_iterate2(v->fs, dir, 0, NULL, setent_cb, &c);
	if (e)
		return vol_err(e);
	if (c.done)
		vol_dc_add(v, dir, name, ino);
	return c.done ? 0 : -ENOENT;
}

int vol_mkdir(struct vol *v, vol_ino_t dir, const char *path, mode_t mode, const struct vol_cred *cred)
{
	struct vol_path vp;
	vol_ino_t ino;
	int err;

	pthread_mutex_lock(&v->mu);
	err = walk(v, dir, path, false, cred, &vp);
	if (err)
		goto out;
	if (vp.ino) {
		err = -EEXIST;
		goto out;
	}
	err = create_new(v, &vp, LINUX_S_IFDIR | (mode & 07777), cred, &ino);
out:
	vol_maybe_commit(v);
	pthread_mutex_unlock(&v->mu);
	return err;
}

/* Drop one link of ino (its name already gone from parent). */
static int drop_link(struct vol *v, vol_ino_t parent, vol_ino_t ino)
{
	struct ext2_inode_large in;
	int err = vol_iread(v, ino, &in);

	if (err)
		return err;
	if (LINUX_S_ISDIR(in.i_mode)) {
		in.i_links_count = 0;
		err = adj_links(v, parent, -1, 0);
		if (err)
			return err;
	} else if (in.i_links_count > 0) {
		in.i_links_count--;
	}
	vol_touch(&in, VOL_T_C);
	err = vol_iwrite(v, ino, &in);
	if (err)
		return err;
	if (in.i_links_count == 0)
		return vol_ilast_link(v, ino, &in);
	return 0;
}

int vol_unlink(struct vol *v, vol_ino_t dir, const char *path, int flags, const struct vol_cred *cred)
{
	struct ext2_inode_large in, din;
	struct vol_path vp;
	bool rmdir = flags & AT_REMOVEDIR;
	int err;

	if (flags & ~AT_REMOVEDIR)
		return -EINVAL;
	pthread_mutex_lock(&v->mu);
	err = walk(v, dir, path, false, cred, &vp);
	if (err)
		goto out;
	if (!vp.ino) {
		err = -ENOENT;
		goto out;
	}
	if (rmdir && strcmp(vp.name, ".") == 0) {
		err = vp.ino == VOL_ROOT_INO ? -EBUSY : -EINVAL;
		goto out;
	}
	if (rmdir && strcmp(vp.name, "..") == 0) {
		err = -ENOTEMPTY;
		goto out;
	}
	err = vol_iread(v, vp.ino, &in);
	if (err)
		goto out;
	if (!rmdir && LINUX_S_ISDIR(in.i_mode)) {
		err = -EISDIR;
		goto out;
	}
	if (rmdir && !LINUX_S_ISDIR(in.i_mode)) {
		err = -ENOTDIR;
		goto out;
	}
	if (vp.slash && !LINUX_S_ISDIR(in.i_mode)) {
		err = -ENOTDIR;
		goto out;
	}
	if (vp.ino == VOL_ROOT_INO) {
		err = -EBUSY;
		goto out;
	}
	err = vol_iread(v, vp.dir, &din);
	if (!err)
		err = perm(&din, W_OK | X_OK, cred);
	if (!err)
		err = sticky_ok(&din, &in, cred);
	if (err)
		goto out;
	if (v->flags & VOL_RDONLY) {
		err = -EROFS;
		goto out;
	}
	if (rmdir) {
		err = dir_empty(v, vp.ino);
		if (err)
			goto out;
	}
	v->meta_dirty = true;
	err = vol_err(ext2fs_unlink(v->fs, vp.dir, vp.name, vp.ino, 0));
	if (!err)
		vol_dc_del(v, vp.dir, vp.name);
	if (!err)
		err = adj_links(v, vp.dir, 0, VOL_T_M | VOL_T_C);
	if (!err)
		err = drop_link(v, vp.dir, vp.ino);
out:
	vol_maybe_commit(v);
	pthread_mutex_unlock(&v->mu);
	return err;
}

/* Is dir (or one of its ancestors) anc?  Walks "..", bounded. */
static int is_under(struct vol *v, vol_ino_t dir, vol_ino_t anc)
{
	vol_ino_t cur = dir;

	for (int i = 0; i < 4096; i++) {
		ext2_ino_t up = 0;
		errcode_t e;

		if (cur == anc)
			return 1;
		if (cur == VOL_ROOT_INO)
			return 0;
		e = ext2fs_lookup(v->fs, cur, "..", 2, NULL, &up);
		if (e)
			return vol_err(e);
		cur = up;
	}
	return -ELOOP;
}

int vol_rename(struct vol *v, vol_ino_t odir, const char *opath, vol_ino_t ndir, const char *npath, unsigned flags,
	       const struct vol_cred *cred)
{
	struct ext2_inode_large oi, ni, od, nd;
	struct vol_path o, n;
	bool odirp, ndirp = false, exch = flags & RENAME_EXCHANGE;
	int err;

	if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) || (flags & RENAME_NOREPLACE && exch))
		return -EINVAL;
	pthread_mutex_lock(&v->mu);
	err = walk(v, odir, opath, false, cred, &o);
	if (err)
		goto out;
	err = walk(v, ndir, npath, false, cred, &n);
	if (err)
		goto out;
	if (!o.ino) {
		err = -ENOENT;
		goto out;
	}
	if (is_dot(o.name) || is_dot(n.name) || o.ino == VOL_ROOT_INO) {
		err = -EBUSY;
		goto out;
	}
	if (exch && !n.ino) {
		err = -ENOENT;
		goto out;
	}
	if (n.ino && (flags & RENAME_NOREPLACE)) {
		err = -EEXIST;
		goto out;
	}
	err = vol_iread(v, o.ino, &oi);
	if (!err)
		err = vol_iread(v, o.dir, &od);
	if (!err)
		err = vol_iread(v, n.dir, &nd);
	if (err)
		goto out;
	odirp = LINUX_S_ISDIR(oi.i_mode);
	if (n.ino) {
		err = vol_iread(v, n.ino, &ni);
		if (err)
			goto out;
		ndirp = LINUX_S_ISDIR(ni.i_mode);
	}
	if ((o.slash && !odirp) || (n.slash && !(exch ? ndirp : odirp))) {
		err = -ENOTDIR;
		goto out;
	}
	err = perm(&od, W_OK | X_OK, cred);
	if (!err)
		err = perm(&nd, W_OK | X_OK, cred);
	if (!err)
		err = sticky_ok(&od, &oi, cred);
	if (!err && n.ino)
		err = sticky_ok(&nd, &ni, cred);
	if (err)
		goto out;
	if (n.ino == o.ino) {
		err = 0;	/* two names of one inode: rename does nothing */
		goto out;
	}
	if (n.ino && !exch) {
		if (odirp && !ndirp) {
			err = -ENOTDIR;
			goto out;
		}
		if (!odirp && ndirp) {
			err = -EISDIR;
			goto out;
		}
		if (ndirp) {
			err = dir_empty(v, n.ino);
			if (err)
				goto out;
		}
	}
	/* A directory that changes parent rewrites its "..": that needs write permission on it. */
	if (odirp && o.dir != n.dir) {
		err = perm(&oi, W_OK, cred);
		if (!err && exch && ndirp)
			err = perm(&ni, W_OK, cred);
		if (err)
			goto out;
	}
	/* A directory cannot move below itself. */
	if (odirp && o.dir != n.dir) {
		err = is_under(v, n.dir, o.ino);
		if (err) {
			err = err > 0 ? -EINVAL : err;
			goto out;
		}
	}
	if (exch && ndirp && o.dir != n.dir) {
		err = is_under(v, o.dir, n.ino);
		if (err) {
			err = err > 0 ? -EINVAL : err;
			goto out;
		}
	}
	if (v->flags & VOL_RDONLY) {
		err = -EROFS;
		goto out;
	}
	v->meta_dirty = true;
	/* Everything below happens in one transaction: commits only happen between operations. */
	if (exch) {
		err = dirent_set(v, o.dir, o.name, n.ino, ftype(ni.i_mode));
		if (!err)
			err = dirent_set(v, n.dir, n.name, o.ino, ftype(oi.i_mode));
		if (!err && o.dir != n.dir) {
			if (odirp) {
				err = dirent_set(v, o.ino, "..", n.dir, EXT2_FT_DIR);
				if (!err)
					err = adj_links(v, o.dir, -1, 0);
				if (!err)
					err = adj_links(v, n.dir, 1, 0);
			}
			if (!err && ndirp) {
				err = dirent_set(v, n.ino, "..", o.dir, EXT2_FT_DIR);
				if (!err)
					err = adj_links(v, n.dir, -1, 0);
				if (!err)
					err = adj_links(v, o.dir, 1, 0);
			}
		}
		if (!err)
			err = adj_links(v, n.ino, 0, VOL_T_C);
	} else {
		if (n.ino)
			err = dirent_set(v, n.dir, n.name, o.ino, ftype(oi.i_mode));
		else
			err = dir_add(v, n.dir, n.name, o.ino, ftype(oi.i_mode));
		if (err)
			goto out;
		err = vol_err(ext2fs_unlink(v->fs, o.dir, o.name, o.ino, 0));
		if (!err)
			vol_dc_del(v, o.dir, o.name);
		if (!err && n.ino)
			err = drop_link(v, n.dir, n.ino);
		if (!err && odirp && o.dir != n.dir) {
			err = dirent_set(v, o.ino, "..", n.dir, EXT2_FT_DIR);
			if (!err)
				err = adj_links(v, o.dir, -1, 0);
			if (!err)
				err = adj_links(v, n.dir, 1, 0);
		}
	}
	if (!err)
		err = adj_links(v, o.ino, 0, VOL_T_C);
	if (!err)
		err = adj_links(v, o.dir, 0, VOL_T_M | VOL_T_C);
	if (!err && n.dir != o.dir)
		err = adj_links(v, n.dir, 0, VOL_T_M | VOL_T_C);
out:
	vol_maybe_commit(v);
	pthread_mutex_unlock(&v->mu);
	return err;
}

int vol_link(struct vol *v, vol_ino_t ino, vol_ino_t ndir, const char *npath, const struct vol_cred *cred)
{
	struct ext2_inode_large in;
	struct vol_path n;
	int err;

	pthread_mutex_lock(&v->mu);
	err = walk(v, ndir, npath, false, cred, &n);
	if (err)
		goto out;
	if (n.ino) {
		err = -EEXIST;
		goto out;
	}
	err = vol_iread(v, ino, &in);
	if (err)
		goto out;
	if (LINUX_S_ISDIR(in.i_mode)) {
		err = -EPERM;
		goto out;
	}
	if (in.i_links_count == 0) {
		err = -ENOENT;
		goto out;
	}
	if (in.i_links_count >= VOL_LINK_MAX) {
		err = -EMLINK;
		goto out;
	}
	if (n.slash) {
		err = -ENOENT;
		goto out;
	}
	err = iperm(v, n.dir, W_OK | X_OK, cred);
	if (err)
		goto out;
	if (v->flags & VOL_RDONLY) {
		err = -EROFS;
		goto out;
	}
	err = dir_add(v, n.dir, n.name, ino, ftype(in.i_mode));
	if (err)
		goto out;
	err = vol_iread(v, ino, &in);
	if (err)
		goto out;
	in.i_links_count++;
	vol_touch(&in, VOL_T_C);
	err = vol_iwrite(v, ino, &in);
	if (!err)
		err = adj_links(v, n.dir, 0, VOL_T_M | VOL_T_C);
out:
	vol_maybe_commit(v);
	pthread_mutex_unlock(&v->mu);
	return err;
}

int vol_symlink(struct vol *v, const char *target, vol_ino_t dir, const char *path, const struct vol_cred *cred)
{
	struct ext2_inode_large in, parent;
	struct vol_path vp;
	ext2_ino_t ino = 0;
	size_t tlen;
	errcode_t e;
	int err;

	if (!target)
		return -EFAULT;
	tlen = strlen(target);
	if (tlen == 0)
		return -ENOENT;
	if (tlen >= VOL_BS)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&v->mu);
	err = walk(v, dir, path, false, cred, &vp);
	if (err)
		goto out;
	if (vp.ino) {
		err = -EEXIST;
		goto out;
	}
	if (vp.slash) {
		err = -ENOENT;
		goto out;
	}
	err = vol_iread(v, vp.dir, &parent);
	if (!err)
		err = perm(&parent, W_OK | X_OK, cred);
	if (err)
		goto out;
	if (v->flags & VOL_RDONLY) {
		err = -EROFS;
		goto out;
	}
	v->meta_dirty = true;
	e = ext2fs_new_inode(v->fs, vp.dir, LINUX_S_IFLNK | 0777, NULL, &ino);
	if (!e)
		e = ext2fs_symlink(v->fs, vp.dir, ino, NULL, target);
	if (e) {
		err = vol_err(e);
		goto out;
	}
	err = vol_iread(v, ino, &in);
	if (err)
		goto out;
	{
		struct ext2_inode_large t;

		/* Owner, group and time stamps as a new inode of ours gets them. */
		init_inode(v, &t, LINUX_S_IFLNK | 0777, &parent, cred);
		in.i_uid = t.i_uid;
		in.i_gid = t.i_gid;
		in.osd2.linux2.l_i_uid_high = t.osd2.linux2.l_i_uid_high;
		in.osd2.linux2.l_i_gid_high = t.osd2.linux2.l_i_gid_high;
		in.i_atime = t.i_atime;
		in.i_mtime = t.i_mtime;
		in.i_ctime = t.i_ctime;
		if (in.i_extra_isize >= t.i_extra_isize && t.i_extra_isize) {
			in.i_atime_extra = t.i_atime_extra;
			in.i_mtime_extra = t.i_mtime_extra;
			in.i_ctime_extra = t.i_ctime_extra;
			in.i_crtime = t.i_crtime;
			in.i_crtime_extra = t.i_crtime_extra;
		}
		err = vol_iwrite(v, ino, &in);
		if (err)
			goto out;
	}
	err = dir_add(v, vp.dir, vp.name, ino, EXT2_FT_SYMLINK);
	if (err) {
		vol_ifree(v, ino);
		goto out;
	}
	err = adj_links(v, vp.dir, 0, VOL_T_M | VOL_T_C);
out:
	vol_maybe_commit(v);
	pthread_mutex_unlock(&v->mu);
	return err;
}

ssize_t vol_readlink(struct vol *v, vol_ino_t ino, char *buf, size_t n)
{
	struct ext2_inode_large in;
	size_t len = 0;
	int err;

	pthread_mutex_lock(&v->mu);
	err = vol_iread(v, ino, &in);
	if (!err && !LINUX_S_ISLNK(in.i_mode))
		err = -EINVAL;
	if (!err)
		err = read_link(v, &in, buf, n, &len);
	pthread_mutex_unlock(&v->mu);
	return err ? err : (ssize_t)len;
}

int vol_statfs(struct vol *v, struct statfs *st)
{
	struct ext2_super_block *sb;
	uint64_t bfree, resv;

	pthread_mutex_lock(&v->mu);
	sb = v->fs->super;
	memset(st, 0, sizeof(*st));
	st->f_type = EXT2_SUPER_MAGIC;
	st->f_bsize = VOL_BS;
	st->f_frsize = VOL_BS;
	st->f_blocks = ext2fs_blocks_count(sb) - sb->s_first_data_block;
	bfree = ext2fs_free_blocks_count(sb);
	resv = ext2fs_r_blocks_count(sb);
	st->f_bfree = bfree;
	st->f_bavail = bfree > resv ? bfree - resv : 0;
	st->f_files = sb->s_inodes_count;
	st->f_ffree = sb->s_free_inodes_count;
	st->f_namelen = EXT2_NAME_LEN;
	memcpy(&st->f_fsid, sb->s_uuid, sizeof(st->f_fsid));
	if (v->flags & VOL_RDONLY)
		st->f_flags = ST_RDONLY;
	pthread_mutex_unlock(&v->mu);
	return 0;
}

/* ---- record locks: per inode, per owner ranges, in memory ---- */

static bool lk_overlap(const struct vol_lockrec *l, uint64_t s, uint64_t e)
{
	return l->start <= e && s <= l->end;
}

/* Remove owner's locks on [s, e] of ino, splitting the ones that stick out. */
static int lk_remove(struct vol *v, vol_ino_t ino, uint64_t owner, uint64_t s, uint64_t e)
{
	struct vol_lockrec **pp = &v->locks;

	while (*pp) {
		struct vol_lockrec *l = *pp;

		if (l->ino != ino || l->owner != owner || !lk_overlap(l, s, e)) {
			pp = &l->next;
			continue;
		}
		if (l->start < s && l->end > e) {
			struct vol_lockrec *r = malloc(sizeof(*r));

			if (!r)
				return -ENOLCK;
			*r = *l;
			r->start = e + 1;
			l->end = s - 1;
			r->next = l->next;
			l->next = r;
			pp = &r->next;
		} else if (l->start < s) {
			l->end = s - 1;
			pp = &l->next;
		} else if (l->end > e) {
			l->start = e + 1;
			pp = &l->next;
		} else {
			*pp = l->next;
			free(l);
		}
	}
	return 0;
}

int vol_lock(struct vol *v, vol_ino_t ino, uint64_t owner, int cmd, struct flock *fl)
{
	struct ext2_inode_large in;
	struct vol_lockrec *l;
	int64_t start;
	uint64_t s, e;
	int err;

	if (cmd != F_SETLK && cmd != F_GETLK && cmd != F_OFD_SETLK && cmd != F_OFD_GETLK)
		return -EINVAL;
	if (fl->l_type != F_RDLCK && fl->l_type != F_WRLCK && fl->l_type != F_UNLCK)
		return -EINVAL;
	pthread_mutex_lock(&v->mu);
	err = vol_iread(v, ino, &in);
	if (err)
		goto out;
	switch (fl->l_whence) {
	case SEEK_SET:
		start = fl->l_start;
		break;
	case SEEK_END:
		start = (int64_t)EXT2_I_SIZE(&in) + fl->l_start;
		break;
	default:
		err = -EINVAL;	/* SEEK_CUR: the caller knows the offset and passes SEEK_SET */
		goto out;
	}
	if (fl->l_len < 0) {
		start += fl->l_len;
		if (start < 0) {
			err = -EINVAL;
			goto out;
		}
		s = (uint64_t)start;
		e = (uint64_t)(start - fl->l_len) - 1;
	} else {
		if (start < 0) {
			err = -EINVAL;
			goto out;
		}
		s = (uint64_t)start;
		e = fl->l_len == 0 ? UINT64_MAX : s + (uint64_t)fl->l_len - 1;
	}
	for (l = v->locks; l; l = l->next) {
		if (l->ino != ino || l->owner == owner || !lk_overlap(l, s, e))
			continue;
		if (fl->l_type == F_UNLCK || (l->type == F_RDLCK && fl->l_type == F_RDLCK))
			continue;
		break;
	}
	if (cmd == F_GETLK || cmd == F_OFD_GETLK) {
		if (l && fl->l_type != F_UNLCK) {
			fl->l_type = l->type;
			fl->l_whence = SEEK_SET;
			fl->l_start = (off_t)l->start;
			fl->l_len = l->end == UINT64_MAX ? 0 : (off_t)(l->end - l->start + 1);
			fl->l_pid = cmd == F_OFD_GETLK ? -1 : l->pid;
		} else {
			fl->l_type = F_UNLCK;
		}
		goto out;
	}
	if (l && fl->l_type != F_UNLCK) {
		err = -EAGAIN;
		goto out;
	}
	err = lk_remove(v, ino, owner, s, e);
	if (err || fl->l_type == F_UNLCK)
		goto out;
	l = malloc(sizeof(*l));
	if (!l) {
		err = -ENOLCK;
		goto out;
	}
	l->ino = ino;
	l->owner = owner;
	l->type = fl->l_type;
	l->pid = fl->l_pid;
	l->start = s;
	l->end = e;
	l->next = v->locks;
	v->locks = l;
out:
	pthread_mutex_unlock(&v->mu);
	return err;
}

int vol_unlock_owner(struct vol *v, vol_ino_t ino, uint64_t owner)
{
	struct vol_lockrec **pp;

	pthread_mutex_lock(&v->mu);
	pp = &v->locks;
	while (*pp) {
		struct vol_lockrec *l = *pp;

		if (l->owner == owner && (ino == 0 || l->ino == ino)) {
			*pp = l->next;
			free(l);
		} else {
			pp = &l->next;
		}
	}
	pthread_mutex_unlock(&v->mu);
	return 0;
}
