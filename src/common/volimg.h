/* Facts about a volume image that librettod and the libretto command both check: its ext4 superblock and whether the kernel has it on a loop device. */
#ifndef LIBRETTO_VOLIMG_H
#define LIBRETTO_VOLIMG_H

/*
 * Header-only (static inline) so that librettod and the CLI share it
 * without a library of their own.  Both functions are read-only: they
 * never change the image.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

/* The ext4 superblock: 1024 bytes at offset 1024, fields little-endian. */
#define VOLIMG_SB_OFF 1024
#define VOLIMG_SB_LOG_BLOCK 24        /* le32: block size = 1024 << it */
#define VOLIMG_SB_MAGIC 56            /* le16 0xEF53: offset 1080 in the image */
#define VOLIMG_SB_INCOMPAT 96         /* le32 feature_incompat */
#define VOLIMG_MAGIC 0xEF53
#define VOLIMG_INCOMPAT_RECOVER 0x4   /* the journal holds transactions to replay */
#define VOLIMG_BLOCK_SIZE 4096

static inline uint32_t volimg_le32(const unsigned char *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * Check that fd holds an ext4 superblock (the ext2/3/4 magic) with
 * 4096-byte blocks.  0, -EINVAL with the reason (a sentence naming image)
 * in why, or -errno of the read.  *recover (may be NULL) tells whether
 * the journal needs replaying.
 */
static inline int volimg_check(int fd, const char *image, bool *recover, char *why, size_t len)
{
	unsigned char sb[128];
	ssize_t n = pread(fd, sb, sizeof(sb), VOLIMG_SB_OFF);
	uint32_t logb;
	int err;

	if (n < 0) {
		err = errno;
		snprintf(why, len, "cannot read %s: %s", image, strerror(err));
		return -err;
	}
	if (n < (ssize_t)sizeof(sb)) {
		snprintf(why, len, "%s is not an ext4 image: it is too small to hold a superblock "
			 "(make one with `libretto volume create`)", image);
		return -EINVAL;
	}
	if ((sb[VOLIMG_SB_MAGIC] | (unsigned)sb[VOLIMG_SB_MAGIC + 1] << 8) != VOLIMG_MAGIC) {
		snprintf(why, len, "%s is not an ext4 image: no ext4 superblock magic at offset 1080 "
			 "(make one with `libretto volume create`)", image);
		return -EINVAL;
	}
	logb = volimg_le32(sb + VOLIMG_SB_LOG_BLOCK);
	if (logb != 2) {
		if (logb <= 6)
			snprintf(why, len, "%s has %u-byte blocks; volumes need 4096-byte blocks "
				 "(mke2fs -b 4096, as `libretto volume create` makes them)", image,
				 1024u << logb);
		else
			snprintf(why, len, "%s has an invalid block size in its superblock", image);
		return -EINVAL;
	}
	if (recover)
		*recover = volimg_le32(sb + VOLIMG_SB_INCOMPAT) & VOLIMG_INCOMPAT_RECOVER;
	return 0;
}

/*
 * Whether the kernel has the file (dev, ino) attached to a loop device
 * (`mount -o loop`, `losetup`): handing it to a program as well would
 * corrupt it.  The loop devices name their backing files in sysfs; they
 * are compared by (st_dev, st_ino), so any path to the same file matches.
 * The device's name ("/dev/loopN") goes to loopdev.
 */
static inline bool volimg_on_loop(dev_t dev, ino_t ino, char *loopdev, size_t len)
{
	struct dirent *e;
	bool yes = false;
	DIR *d = opendir("/sys/block");

	if (!d)
		return false;
	while (!yes && (e = readdir(d))) {
		char path[PATH_MAX], back[PATH_MAX];
		struct stat st;
		ssize_t n;
		int f;

		if (strncmp(e->d_name, "loop", 4) != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/block/%.64s/loop/backing_file", e->d_name);
		f = open(path, O_RDONLY | O_CLOEXEC);
		if (f < 0)
			continue;
		n = read(f, back, sizeof(back) - 1);
		close(f);
		if (n <= 0)
			continue;
		back[n] = '\0';
		back[strcspn(back, "\n")] = '\0';
		if (stat(back, &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
			snprintf(loopdev, len, "/dev/%.40s", e->d_name);
			yes = true;
		}
	}
	closedir(d);
	return yes;
}

#endif
