/* Unit test of the volume (src/vol): every operation and its errno on a fresh ext4 image, then e2fsck must find it clean. */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "vol/vol.h"

#define MKFS "mke2fs -q -F -t ext4 -b 4096 -O ^inline_data,^metadata_csum_seed " \
	     "-E lazy_itable_init=0,lazy_journal_init=0 "

static char img[256];

static int run(const char *cmd)
{
	int st = system(cmd);

	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int make_image(const char *size)
{
	char cmd[512];

	unlink(img);
	snprintf(cmd, sizeof(cmd), MKFS "%s %s >/dev/null 2>&1", img, size);
	return run(cmd);
}

static int fsck(const char *opt)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "e2fsck %s %s >/tmp/vol-fsck.log 2>&1", opt, img);
	return run(cmd);
}

/* e2fsck -fn on the image; its log goes to stderr when it finds anything. */
static int fsck_clean(void)
{
	int st = fsck("-fn");

	if (st)
		system("cat /tmp/vol-fsck.log >&2");
	return st;
}

static struct vol *mount_img(unsigned flags)
{
	struct vol *v = NULL;
	int fd = open(img, O_RDWR);
	int err;

	if (fd < 0)
		return NULL;
	err = vol_mount(fd, "/data", flags, &v);
	close(fd);
	if (err)
		fprintf(stderr, "vol_mount: %s\n", strerror(-err));
	return v;
}

static const struct vol_cred root = { 0, 0, 0, { 0 } };
static const struct vol_cred user = { 1000, 1000, 1, { 1000 } };
static const struct vol_cred other = { 1001, 1001, 0, { 0 } };

static int put(struct vol *v, const char *path, const char *data)
{
	vol_ino_t ino;
	int err = vol_open(v, VOL_ROOT_INO, path, O_CREAT | O_WRONLY | O_TRUNC, 0644, &root, &ino);

	if (err)
		return err;
	if (vol_pwrite(v, ino, data, strlen(data), 0, 0, NULL) != (ssize_t)strlen(data))
		err = -EIO;
	vol_release(v, ino);
	return err;
}

static int get(struct vol *v, const char *path, char *buf, size_t n)
{
	vol_ino_t ino;
	ssize_t r;
	int err = vol_open(v, VOL_ROOT_INO, path, O_RDONLY, 0, &root, &ino);

	if (err)
		return err;
	r = vol_pread(v, ino, buf, n - 1, 0);
	vol_release(v, ino);
	if (r < 0)
		return (int)r;
	buf[r] = '\0';
	return 0;
}

/* Names a directory listing returns, counted: how often name appears. */
static int count_name(struct vol *v, vol_ino_t dir, const char *name, int *total)
{
	char buf[4096];
	uint64_t cookie = 0;
	int hits = 0, guard = 0;
	ssize_t r;

	*total = 0;
	while ((r = vol_readdir(v, dir, &cookie, buf, sizeof(buf))) > 0 && guard++ < 100000) {
		for (ssize_t o = 0; o < r;) {
			struct dirent64 *d = (struct dirent64 *)(buf + o);

			if (strcmp(d->d_name, name) == 0)
				hits++;
			(*total)++;
			o += d->d_reclen;
		}
	}
	CHECK(r == 0);
	return hits;
}

static void test_basic(void)
{
	struct vol *v;
	vol_ino_t ino, ino2, d;
	struct stat st;
	struct statfs sf;
	char buf[8192];
	int total;
	ssize_t r;
	uint64_t end;

	CHECK(make_image("64M") == 0);
	v = mount_img(0);
	CHECK(v != NULL);
	if (!v)
		return;
	/* create, write, read, append */
	CHECK(vol_open(v, VOL_ROOT_INO, "a.txt", O_CREAT | O_RDWR, 0640, &root, &ino) == 0);
	CHECK(vol_pwrite(v, ino, "hello", 5, 0, 0, &end) == 5 && end == 5);
	CHECK(vol_pwrite(v, ino, " world", 6, 0, VOL_APPEND, &end) == 6 && end == 11);
	r = vol_pread(v, ino, buf, sizeof(buf), 0);
	CHECK(r == 11 && memcmp(buf, "hello world", 11) == 0);
	CHECK(vol_pread(v, ino, buf, 10, 11) == 0);
	CHECK(vol_getattr(v, ino, &st) == 0 && st.st_size == 11 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0640);
	CHECK(st.st_nlink == 1 && st.st_blocks == 8);
	/* partial block overwrite keeps the rest */
	CHECK(vol_pwrite(v, ino, "J", 1, 6, 0, NULL) == 1);
	CHECK(vol_pread(v, ino, buf, sizeof(buf), 0) == 11 && memcmp(buf, "hello Jorld", 11) == 0);
	/* O_EXCL, O_DIRECTORY, EISDIR, ENOTDIR */
	CHECK(vol_open(v, VOL_ROOT_INO, "a.txt", O_CREAT | O_EXCL | O_RDWR, 0640, &root, &ino2) == -EEXIST);
	CHECK(vol_open(v, VOL_ROOT_INO, "a.txt", O_RDONLY | O_DIRECTORY, 0, &root, &ino2) == -ENOTDIR);
	CHECK(vol_open(v, VOL_ROOT_INO, "a.txt/", O_RDONLY, 0, &root, &ino2) == -ENOTDIR);
	CHECK(vol_open(v, VOL_ROOT_INO, "nope", O_RDONLY, 0, &root, &ino2) == -ENOENT);
	CHECK(vol_open(v, VOL_ROOT_INO, "nope/x", O_CREAT | O_RDWR, 0600, &root, &ino2) == -ENOENT);
	CHECK(vol_open(v, VOL_ROOT_INO, "a.txt/x", O_RDONLY, 0, &root, &ino2) == -ENOTDIR);
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "dir", 0755, &root) == 0);
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "dir", 0755, &root) == -EEXIST);
	CHECK(vol_open(v, VOL_ROOT_INO, "dir", O_RDWR, 0, &root, &ino2) == -EISDIR);
	CHECK(vol_open(v, VOL_ROOT_INO, "dir", O_RDONLY | O_DIRECTORY, 0, &root, &d) == 0);
	CHECK(vol_pread(v, d, buf, 10, 0) == -EISDIR);
	CHECK(vol_pwrite(v, d, buf, 10, 0, 0, NULL) == -EISDIR);
	CHECK(vol_getattr(v, VOL_ROOT_INO, &st) == 0 && st.st_nlink == 4);	/* ., .., lost+found, dir */
	{
		char name[300];

		memset(name, 'n', 256);
		name[256] = 0;
		CHECK(vol_open(v, VOL_ROOT_INO, name, O_CREAT | O_RDWR, 0600, &root, &ino2) == -ENAMETOOLONG);
	}
	/* O_TRUNC */
	CHECK(vol_open(v, VOL_ROOT_INO, "a.txt", O_WRONLY | O_TRUNC, 0, &root, &ino2) == 0 && ino2 == ino);
	CHECK(vol_getattr(v, ino, &st) == 0 && st.st_size == 0 && st.st_blocks == 0);
	vol_release(v, ino2);
	CHECK(vol_pwrite(v, ino, "0123456789", 10, 0, 0, NULL) == 10);
	/* truncate down and up: the cut bytes read back as zeros */
	{
		struct vol_setattr sa = { .valid = VOL_SET_SIZE, .size = 4 };

		CHECK(vol_setattr(v, ino, &sa, &root) == 0);
		sa.size = 8;
		CHECK(vol_setattr(v, ino, &sa, &root) == 0);
		CHECK(vol_pread(v, ino, buf, sizeof(buf), 0) == 8 && memcmp(buf, "0123\0\0\0\0", 8) == 0);
	}
	/* hard links, unlink of an open file (orphan), link count */
	CHECK(vol_link(v, ino, VOL_ROOT_INO, "dir/b.txt", &root) == 0);
	CHECK(vol_getattr(v, ino, &st) == 0 && st.st_nlink == 2);
	CHECK(vol_link(v, d, VOL_ROOT_INO, "dirlink", &root) == -EPERM);
	CHECK(vol_link(v, ino, VOL_ROOT_INO, "a.txt", &root) == -EEXIST);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "a.txt", 0, &root) == 0);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "a.txt", 0, &root) == -ENOENT);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "dir/b.txt", 0, &root) == 0);
	CHECK(vol_getattr(v, ino, &st) == 0 && st.st_nlink == 0);
	CHECK(vol_pread(v, ino, buf, sizeof(buf), 0) == 8);	/* still readable while open */
	CHECK(vol_sync(v, true) == 0);
	{
		uint32_t g1 = 0, g2 = 0;

		/* A second reference (dup across processes) keeps the orphan alive until both are gone. */
		CHECK(vol_generation(v, ino, &g1) == 0);
		CHECK(vol_hold(v, ino) == 0);
		CHECK(vol_release(v, ino) == 0);
		CHECK(vol_pread(v, ino, buf, sizeof(buf), 0) == 8);
		CHECK(vol_generation(v, ino, &g2) == 0 && g1 == g2);
	}
	CHECK(vol_release(v, ino) == 0);
	CHECK(vol_getattr(v, ino, &st) == -ESTALE);
	CHECK(vol_hold(v, ino) == -ESTALE);
	CHECK(vol_release(v, ino) == -EINVAL);
	{
		uint32_t g;

		CHECK(vol_generation(v, ino, &g) == -ESTALE);
	}
	/* unlink/rmdir errnos */
	CHECK(vol_unlink(v, VOL_ROOT_INO, "dir", 0, &root) == -EISDIR);
	CHECK(put(v, "dir/f", "x") == 0);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "dir", AT_REMOVEDIR, &root) == -ENOTEMPTY);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "dir/f", AT_REMOVEDIR, &root) == -ENOTDIR);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "dir/.", AT_REMOVEDIR, &root) == -EINVAL);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "dir/f", 0, &root) == 0);
	vol_release(v, d);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "dir", AT_REMOVEDIR, &root) == 0);
	CHECK(vol_getattr(v, VOL_ROOT_INO, &st) == 0 && st.st_nlink == 3);
	/* symlinks: fast, slow, relative, absolute into the mount, outside: EXDEV, loops */
	CHECK(put(v, "target", "T") == 0);
	CHECK(vol_symlink(v, "target", VOL_ROOT_INO, "s1", &root) == 0);
	CHECK(vol_symlink(v, "/data/target", VOL_ROOT_INO, "s2", &root) == 0);
	CHECK(vol_symlink(v, "/etc/passwd", VOL_ROOT_INO, "s3", &root) == 0);
	CHECK(vol_symlink(v, "loop", VOL_ROOT_INO, "loop", &root) == 0);
	{
		char longt[200];

		memset(longt, 'x', sizeof(longt) - 1);
		longt[sizeof(longt) - 1] = 0;
		memcpy(longt, "./", 2);
		CHECK(vol_symlink(v, longt, VOL_ROOT_INO, "slong", &root) == 0);
		CHECK(vol_lookup(v, VOL_ROOT_INO, "slong", AT_SYMLINK_NOFOLLOW, &ino2) == 0);
		CHECK(vol_readlink(v, ino2, buf, sizeof(buf)) == (ssize_t)strlen(longt) && memcmp(buf, longt, strlen(longt)) == 0);
	}
	CHECK(get(v, "s1", buf, sizeof(buf)) == 0 && strcmp(buf, "T") == 0);
	CHECK(get(v, "s2", buf, sizeof(buf)) == 0 && strcmp(buf, "T") == 0);
	CHECK(get(v, "s3", buf, sizeof(buf)) == -EXDEV);
	CHECK(get(v, "loop", buf, sizeof(buf)) == -ELOOP);
	CHECK(vol_open(v, VOL_ROOT_INO, "s1", O_RDONLY | O_NOFOLLOW, 0, &root, &ino2) == -ELOOP);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "s1", AT_SYMLINK_NOFOLLOW, &ino2) == 0);
	CHECK(vol_readlink(v, ino2, buf, sizeof(buf)) == 6 && memcmp(buf, "target", 6) == 0);
	CHECK(vol_readlink(v, VOL_ROOT_INO, buf, sizeof(buf)) == -EINVAL);
	CHECK(vol_symlink(v, "x", VOL_ROOT_INO, "s1", &root) == -EEXIST);
	/* rename: replace a file, move a directory, into its own subdir, NOREPLACE, EXCHANGE */
	CHECK(put(v, "r1", "one") == 0);
	CHECK(put(v, "r2", "two") == 0);
	CHECK(vol_rename(v, VOL_ROOT_INO, "r1", VOL_ROOT_INO, "r2", 0, &root) == 0);
	CHECK(get(v, "r2", buf, sizeof(buf)) == 0 && strcmp(buf, "one") == 0);
	CHECK(get(v, "r1", buf, sizeof(buf)) == -ENOENT);
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "m1", 0755, &root) == 0);
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "m1/sub", 0755, &root) == 0);
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "m2", 0755, &root) == 0);
	CHECK(vol_rename(v, VOL_ROOT_INO, "m1", VOL_ROOT_INO, "m1/sub/x", 0, &root) == -EINVAL);
	CHECK(vol_rename(v, VOL_ROOT_INO, "m1/sub", VOL_ROOT_INO, "m2/sub", 0, &root) == 0);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "m2/sub/..", 0, &ino2) == 0);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "m2", 0, &d) == 0 && ino2 == d);
	CHECK(vol_getattr(v, d, &st) == 0 && st.st_nlink == 3);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "m1", 0, &ino2) == 0 && vol_getattr(v, ino2, &st) == 0 && st.st_nlink == 2);
	CHECK(vol_rename(v, VOL_ROOT_INO, "r2", VOL_ROOT_INO, "m2", 0, &root) == -EISDIR);
	CHECK(vol_rename(v, VOL_ROOT_INO, "m1", VOL_ROOT_INO, "r2", 0, &root) == -ENOTDIR);
	CHECK(vol_rename(v, VOL_ROOT_INO, "m1", VOL_ROOT_INO, "m2", 0, &root) == -ENOTEMPTY);
	CHECK(vol_rename(v, VOL_ROOT_INO, "m2/sub", VOL_ROOT_INO, "m1", 0, &root) == 0);	/* over an empty dir */
	CHECK(vol_rename(v, VOL_ROOT_INO, "target", VOL_ROOT_INO, "r2", RENAME_NOREPLACE, &root) == -EEXIST);
	CHECK(vol_rename(v, VOL_ROOT_INO, "target", VOL_ROOT_INO, "r2", RENAME_EXCHANGE, &root) == 0);
	CHECK(get(v, "r2", buf, sizeof(buf)) == 0 && strcmp(buf, "T") == 0);
	CHECK(get(v, "target", buf, sizeof(buf)) == 0 && strcmp(buf, "one") == 0);
	CHECK(vol_rename(v, VOL_ROOT_INO, "nope", VOL_ROOT_INO, "x", 0, &root) == -ENOENT);
	/* exchange a directory and a file across parents; rename onto another name of the same inode */
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "xa", 0755, &root) == 0);
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "xa/dir", 0755, &root) == 0);
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "xb", 0755, &root) == 0);
	CHECK(put(v, "xb/file", "F") == 0);
	CHECK(vol_rename(v, VOL_ROOT_INO, "xa/dir", VOL_ROOT_INO, "xb/file", RENAME_EXCHANGE, &root) == 0);
	CHECK(get(v, "xa/dir", buf, sizeof(buf)) == 0 && strcmp(buf, "F") == 0);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "xb/file/..", 0, &ino2) == 0);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "xb", 0, &d) == 0 && ino2 == d);
	CHECK(vol_getattr(v, d, &st) == 0 && st.st_nlink == 3);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "xa", 0, &d) == 0 && vol_getattr(v, d, &st) == 0 && st.st_nlink == 2);
	CHECK(vol_link(v, 0, VOL_ROOT_INO, "zz", &root) != 0);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "xa/dir", 0, &ino2) == 0);
	CHECK(vol_link(v, ino2, VOL_ROOT_INO, "xa/dir2", &root) == 0);
	CHECK(vol_rename(v, VOL_ROOT_INO, "xa/dir", VOL_ROOT_INO, "xa/dir2", 0, &root) == 0);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "xa/dir", 0, &d) == 0 && d == ino2);
	CHECK(vol_rename(v, VOL_ROOT_INO, "xa", VOL_ROOT_INO, "/", 0, &root) == -EBUSY);
	CHECK(vol_rename(v, VOL_ROOT_INO, "xa/.", VOL_ROOT_INO, "xq", 0, &root) == -EBUSY);
	/* readdir sees each name once, with . and .. */
	CHECK(count_name(v, VOL_ROOT_INO, "r2", &total) == 1);
	CHECK(count_name(v, VOL_ROOT_INO, ".", &total) == 1 && count_name(v, VOL_ROOT_INO, "..", &total) == 1);
	CHECK(vol_readdir(v, ino2, &end, buf, 10) <= 0);
	{
		uint64_t c = 0;

		CHECK(vol_readdir(v, VOL_ROOT_INO, &c, buf, 8) == -EINVAL);
	}
	/* fallocate, SEEK_DATA/HOLE */
	CHECK(vol_open(v, VOL_ROOT_INO, "sparse", O_CREAT | O_RDWR, 0600, &root, &ino) == 0);
	CHECK(vol_pwrite(v, ino, "abc", 3, 1 << 20, 0, NULL) == 3);
	CHECK(vol_seek_data(v, ino, 0, SEEK_DATA) == 1 << 20);
	CHECK(vol_seek_data(v, ino, 0, SEEK_HOLE) == 0);
	CHECK(vol_seek_data(v, ino, 1 << 20, SEEK_HOLE) == (1 << 20) + 3);
	CHECK(vol_seek_data(v, ino, (1 << 20) + 3, SEEK_DATA) == -ENXIO);
	CHECK(vol_pread(v, ino, buf, 4096, 4096) == 4096 && buf[0] == 0 && buf[4095] == 0);
	CHECK(vol_fallocate(v, ino, 0, 2 << 20, 1 << 20) == 0);
	CHECK(vol_getattr(v, ino, &st) == 0 && st.st_size == 3 << 20 && st.st_blocks >= 2048);
	CHECK(vol_pread(v, ino, buf, 100, (2 << 20) + 10) == 100 && buf[0] == 0);
	CHECK(vol_pwrite(v, ino, "zz", 2, (2 << 20) + 100, 0, NULL) == 2);
	CHECK(vol_pread(v, ino, buf, 200, 2 << 20) == 200 && buf[0] == 0 && buf[100] == 'z' && buf[101] == 'z' && buf[102] == 0);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_KEEP_SIZE, 4 << 20, 1 << 20) == 0);
	CHECK(vol_getattr(v, ino, &st) == 0 && st.st_size == 3 << 20);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (2 << 20) + 101, 1) == 0);
	CHECK(vol_pread(v, ino, buf, 200, 2 << 20) == 200 && buf[100] == 'z' && buf[101] == 0);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_PUNCH_HOLE, 0, 4096) == -EOPNOTSUPP);
	vol_release(v, ino);
	/* timestamps with nanoseconds */
	{
		struct vol_setattr sa = { .valid = VOL_SET_MTIME | VOL_SET_ATIME };

		sa.mtime.tv_sec = 5000000000LL;	/* past 2038 */
		sa.mtime.tv_nsec = 123456789;
		sa.atime.tv_sec = 1000;
		sa.atime.tv_nsec = 1;
		CHECK(vol_lookup(v, VOL_ROOT_INO, "r2", 0, &ino) == 0);
		CHECK(vol_setattr(v, ino, &sa, &root) == 0);
		CHECK(vol_getattr(v, ino, &st) == 0 && st.st_mtim.tv_sec == 5000000000LL &&
		      st.st_mtim.tv_nsec == 123456789 && st.st_atim.tv_sec == 1000 && st.st_atim.tv_nsec == 1);
	}
	/* locks */
	{
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100, .l_pid = 11 };

		CHECK(vol_lock(v, ino, 1, F_SETLK, &fl) == 0);
		fl.l_type = F_RDLCK;
		fl.l_start = 50;
		fl.l_len = 10;
		fl.l_pid = 22;
		CHECK(vol_lock(v, ino, 2, F_SETLK, &fl) == -EAGAIN);
		CHECK(vol_lock(v, ino, 2, F_GETLK, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_pid == 11 && fl.l_start == 0 && fl.l_len == 100);
		fl.l_type = F_RDLCK;
		fl.l_start = 100;
		fl.l_len = 0;
		CHECK(vol_lock(v, ino, 2, F_SETLK, &fl) == 0);
		fl.l_type = F_UNLCK;
		fl.l_start = 0;
		fl.l_len = 50;
		CHECK(vol_lock(v, ino, 1, F_SETLK, &fl) == 0);		/* owner 1 keeps [50,99] */
		fl.l_type = F_WRLCK;
		fl.l_start = 0;
		fl.l_len = 50;
		CHECK(vol_lock(v, ino, 2, F_SETLK, &fl) == 0);
		fl.l_start = 60;
		fl.l_len = 1;
		CHECK(vol_lock(v, ino, 2, F_SETLK, &fl) == -EAGAIN);
		CHECK(vol_unlock_owner(v, 0, 1) == 0);
		CHECK(vol_lock(v, ino, 2, F_SETLK, &fl) == 0);
		CHECK(vol_unlock_owner(v, ino, 2) == 0);
	}
	CHECK(vol_statfs(v, &sf) == 0 && sf.f_bsize == 4096 && sf.f_bfree > 0 && sf.f_bfree <= sf.f_blocks);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
	/* Everything is still there after a remount. */
	v = mount_img(0);
	CHECK(v != NULL);
	if (v) {
		CHECK(get(v, "target", buf, sizeof(buf)) == 0 && strcmp(buf, "one") == 0);
		CHECK(vol_unmount(v) == 0);
	}
	CHECK(fsck("-fn") == 0);
}

static void test_perms(void)
{
	struct vol *v = mount_img(0);
	vol_ino_t ino, d;
	struct vol_setattr sa = { .valid = VOL_SET_MODE | VOL_SET_UID | VOL_SET_GID, .mode = 0755, .uid = 1000, .gid = 1000 };

	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "home", 0755, &root) == 0);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "home", 0, &d) == 0);
	CHECK(vol_setattr(v, d, &sa, &root) == 0);
	CHECK(vol_open(v, VOL_ROOT_INO, "home/u", O_CREAT | O_RDWR, 0600, &user, &ino) == 0);
	vol_release(v, ino);
	CHECK(vol_open(v, VOL_ROOT_INO, "home/u", O_RDONLY, 0, &other, &ino) == -EACCES);
	CHECK(vol_open(v, VOL_ROOT_INO, "home/o", O_CREAT | O_RDWR, 0600, &other, &ino) == -EACCES);
	CHECK(vol_open(v, VOL_ROOT_INO, "x", O_CREAT | O_RDWR, 0600, &user, &ino) == -EACCES);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "home/u", 0, &other) == -EACCES);
	CHECK(vol_access(v, d, W_OK, &user) == 0 && vol_access(v, d, W_OK, &other) == -EACCES);
	CHECK(vol_access(v, d, X_OK, &other) == 0);
	sa.valid = VOL_SET_MODE;
	sa.mode = 0700;
	CHECK(vol_setattr(v, d, &sa, &other) == -EPERM);
	CHECK(vol_setattr(v, d, &sa, &user) == 0);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "home/u", 0, &ino) == 0);
	CHECK(vol_open(v, VOL_ROOT_INO, "home/u", O_RDONLY, 0, &other, &ino) == -EACCES);	/* no X on home */
	/* sticky /tmp-like directory: another user may not remove my file */
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "tmp", 01777, &root) == 0);
	CHECK(vol_open(v, VOL_ROOT_INO, "tmp/mine", O_CREAT | O_RDWR, 0666, &user, &ino) == 0);
	vol_release(v, ino);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "tmp/mine", 0, &other) == -EPERM);
	CHECK(vol_rename(v, VOL_ROOT_INO, "tmp/mine", VOL_ROOT_INO, "tmp/theirs", 0, &other) == -EPERM);
	CHECK(vol_unlink(v, VOL_ROOT_INO, "tmp/mine", 0, &user) == 0);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
}

/* A >4 GiB sparse file: 64-bit offsets and sizes, holes read as zeros. */
static void test_large(void)
{
	struct vol *v = mount_img(0);
	vol_ino_t ino;
	uint64_t off = (5ull << 30) + 123;
	char buf[64];
	struct stat st;

	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_open(v, VOL_ROOT_INO, "big", O_CREAT | O_RDWR, 0600, &root, &ino) == 0);
	CHECK(vol_pwrite(v, ino, "far away", 8, off, 0, NULL) == 8);
	CHECK(vol_getattr(v, ino, &st) == 0 && (uint64_t)st.st_size == off + 8 && st.st_blocks == 8);
	CHECK(vol_pread(v, ino, buf, sizeof(buf), off) == 8 && memcmp(buf, "far away", 8) == 0);
	CHECK(vol_pread(v, ino, buf, 16, 4ull << 30) == 16 && buf[0] == 0);
	CHECK(vol_seek_data(v, ino, 0, SEEK_DATA) == (int64_t)(off & ~4095ull));
	CHECK(vol_pwrite(v, ino, "x", 1, 1ull << 44, 0, NULL) == -EFBIG);
	vol_release(v, ino);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
}

/* st_blocks of ino in 4 KiB blocks. */
static long blocks_of(struct vol *v, vol_ino_t ino)
{
	struct stat st;

	if (vol_getattr(v, ino, &st) != 0)
		return -1;
	return (long)(st.st_blocks / 8);
}

/*
 * A sparse file stays sparse in any write order: a write below an
 * existing extent allocates only the blocks it writes, not the gap up to
 * that extent (it once took the whole gap, and a write at 5 GiB then at
 * 1 MiB ran a 64 MiB volume out of blocks).
 */
static void test_sparse_order(void)
{
	static const uint64_t offs[][2] = {
		{ 2u << 20, 1u << 20 },			/* 2 MiB then 1 MiB */
		{ 5ull << 30, 1u << 20 },		/* 5 GiB then 1 MiB */
		{ 5ull << 30, 0 },			/* then block 0, then between */
		{ (1u << 20) + 4000, 3 * 4096 + 5 },	/* straddling block ends */
	};
	struct statfs sf0, sf1;
	struct vol *v;
	vol_ino_t ino;
	char buf[200];

	CHECK(make_image("64M") == 0);
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_statfs(v, &sf0) == 0);
	for (unsigned i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		char name[16];
		long want = 0;

		snprintf(name, sizeof(name), "s%u", i);
		CHECK(vol_open(v, VOL_ROOT_INO, name, O_CREAT | O_RDWR, 0600, &root, &ino) == 0);
		memset(buf, 'a' + (int)i, sizeof(buf));
		for (unsigned k = 0; k < 2; k++) {
			uint64_t o = offs[i][k];

			CHECK(vol_pwrite(v, ino, buf, 100, o, 0, NULL) == 100);
			want += (long)((o + 99) / 4096 - o / 4096 + 1);
		}
		if (i == 2) {
			CHECK(vol_pwrite(v, ino, buf, 100, 3ull << 30, 0, NULL) == 100);
			CHECK(vol_pwrite(v, ino, buf, 100, 1ull << 30, 0, NULL) == 100);
			want += 2;
		}
		CHECK(blocks_of(v, ino) == want);
		/* The gaps read as zeros, the data as written. */
		CHECK(vol_pread(v, ino, buf, 100, offs[i][1]) == 100 && buf[0] == 'a' + (int)i && buf[99] == 'a' + (int)i);
		CHECK(vol_pread(v, ino, buf, 100, offs[i][1] + 100) == 100 && buf[0] == 0 && buf[99] == 0);
		CHECK(vol_seek_data(v, ino, offs[i][1] + 4096 + 4096, SEEK_DATA) ==
		      (int64_t)(i == 2 ? 1ull << 30 : offs[i][0] & ~4095ull));
		vol_release(v, ino);
	}
	CHECK(vol_statfs(v, &sf1) == 0);
	/* Eleven data blocks (and a few extent blocks at most) left the free count. */
	CHECK(sf0.f_bfree - sf1.f_bfree >= 11 && sf0.f_bfree - sf1.f_bfree < 20);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
}

/* 2000 names in one directory (it grows past one block and gets expanded); listing sees each once. */
static void test_many(void)
{
	struct vol *v = mount_img(0);
	char name[64], buf[4096];
	vol_ino_t d, ino;
	uint64_t cookie = 0;
	int i, seen = 0, total;
	ssize_t r;
	static unsigned char hit[2000];

	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "many", 0755, &root) == 0);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "many", 0, &d) == 0);
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "file-with-a-longish-name-%05d", i);
		CHECK(vol_open(v, d, name, O_CREAT | O_EXCL | O_WRONLY, 0644, &root, &ino) == 0);
		vol_release(v, ino);
	}
	/* List in small pieces while unlinking names behind and ahead of the cookie. */
	while ((r = vol_readdir(v, d, &cookie, buf, 512)) > 0) {
		for (ssize_t o = 0; o < r;) {
			struct dirent64 *e = (struct dirent64 *)(buf + o);
			int n;

			if (sscanf(e->d_name, "file-with-a-longish-name-%d", &n) == 1 && n >= 0 && n < 2000) {
				hit[n]++;
				seen++;
				if (n % 7 == 0) {
					snprintf(name, sizeof(name), "file-with-a-longish-name-%05d", n);
					CHECK(vol_unlink(v, d, name, 0, &root) == 0);
				}
			}
			o += e->d_reclen;
		}
	}
	CHECK(r == 0);
	for (i = 0; i < 2000; i++)
		CHECK(hit[i] <= 1);
	CHECK(seen >= 2000 - 2000 / 7 && seen <= 2000);
	CHECK(count_name(v, d, "file-with-a-longish-name-00001", &total) == 1);
	CHECK(total == 2 + 2000 - (2000 + 6) / 7);
	/* Churn: unlink one name, create another, 4000 times: gaps get reused, every name resolves. */
	{
		struct stat st0, st1;
		int live = total - 2;

		CHECK(vol_getattr(v, d, &st0) == 0);
		for (i = 0; i < 4000; i++) {
			int victim = (i * 7 + 1) % 2000;

			if (victim % 7 == 0)
				victim++;
			snprintf(name, sizeof(name), i < 2000 ? "file-with-a-longish-name-%05d" : "churn-%05d",
				 i < 2000 ? victim : i - 2000);
			if (vol_unlink(v, d, name, 0, &root) == 0)
				live--;
			snprintf(name, sizeof(name), "churn-%05d", i);
			CHECK(vol_open(v, d, name, O_CREAT | O_EXCL | O_WRONLY, 0644, &root, &ino) == 0);
			vol_release(v, ino);
			live++;
		}
		CHECK(vol_lookup(v, d, "churn-03999", 0, &ino) == 0);
		CHECK(vol_lookup(v, d, "churn-00000", 0, &ino) == -ENOENT);
		CHECK(count_name(v, d, "churn-03999", &total) == 1 && total == live + 2);
		CHECK(vol_getattr(v, d, &st1) == 0 && st1.st_size <= 2 * st0.st_size);
	}
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
}

/*
 * Crash: a child writes and fsyncs some files, writes more without fsync,
 * and is killed.  Recovery by e2fsck (replay == 0) or by vol_mount.
 */
static void test_crash(int by_vol)
{
	char buf[256], name[64];
	pid_t pid;
	int st, i;
	struct vol *v;

	CHECK(make_image("64M") == 0);
	pid = fork();
	if (pid == 0) {
		struct vol *cv = mount_img(0);
		vol_ino_t ino;

		if (!cv)
			_exit(2);
		for (i = 0; i < 20; i++) {
			snprintf(name, sizeof(name), "synced-%d", i);
			snprintf(buf, sizeof(buf), "durable content %d", i);
			if (put(cv, name, buf))
				_exit(3);
		}
		vol_open(cv, VOL_ROOT_INO, "synced-0", O_RDONLY, 0, &root, &ino);
		vol_fsync(cv, ino, false);
		vol_release(cv, ino);
		for (i = 0; i < 200; i++) {
			snprintf(name, sizeof(name), "later-%d", i);
			put(cv, name, "not synced");
			if (i % 10 == 0)
				vol_unlink(cv, VOL_ROOT_INO, name, 0, &root);
		}
		vol_mkdir(cv, VOL_ROOT_INO, "d1", 0755, &root);
		vol_sync(cv, false);	/* a committed but not durable transaction */
		vol_rename(cv, VOL_ROOT_INO, "later-1", VOL_ROOT_INO, "d1/moved", 0, &root);
		kill(getpid(), SIGKILL);
		_exit(4);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st));
	if (!by_vol) {
		int r = fsck("-fy");

		CHECK(r == 0 || r == 1);
		if (r > 1)
			system("cat /tmp/vol-fsck.log >&2");
	}
	v = mount_img(0);
	CHECK(v != NULL);
	if (!v)
		return;
	for (i = 0; i < 20; i++) {
		char want[64];

		snprintf(name, sizeof(name), "synced-%d", i);
		snprintf(want, sizeof(want), "durable content %d", i);
		CHECK(get(v, name, buf, sizeof(buf)) == 0 && strcmp(buf, want) == 0);
	}
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck_clean() == 0);
}

/* An unlinked file still open at a crash is freed by the next mount (orphan list). */
static void test_orphan_crash(void)
{
	pid_t pid;
	int st;
	struct vol *v;
	struct statfs before, after;

	CHECK(make_image("64M") == 0);
	v = mount_img(0);
	CHECK(v && vol_statfs(v, &before) == 0);
	if (v)
		vol_unmount(v);
	pid = fork();
	if (pid == 0) {
		struct vol *cv = mount_img(0);
		vol_ino_t ino;
		static char data[1 << 20];

		if (!cv)
			_exit(2);
		vol_open(cv, VOL_ROOT_INO, "tmpfile", O_CREAT | O_RDWR, 0600, &root, &ino);
		vol_pwrite(cv, ino, data, sizeof(data), 0, 0, NULL);
		vol_unlink(cv, VOL_ROOT_INO, "tmpfile", 0, &root);
		vol_sync(cv, true);
		kill(getpid(), SIGKILL);
		_exit(4);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st));
	v = mount_img(0);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_statfs(v, &after) == 0 && after.f_bfree == before.f_bfree && after.f_ffree == before.f_ffree);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
}

/* A 4 MiB file written in odd pieces reads back byte for byte, across a remount. */
static void test_data_pattern(void)
{
	struct vol *v = mount_img(0);
	static unsigned char src[4 << 20], dst[4 << 20];
	vol_ino_t ino;
	size_t off = 0, step = 1;
	unsigned x = 12345;

	CHECK(v != NULL);
	if (!v)
		return;
	for (size_t i = 0; i < sizeof(src); i++) {
		x = x * 1103515245u + 12345u;
		src[i] = (unsigned char)(x >> 16);
	}
	CHECK(vol_open(v, VOL_ROOT_INO, "pattern", O_CREAT | O_RDWR, 0600, &root, &ino) == 0);
	while (off < sizeof(src)) {
		size_t n = step < sizeof(src) - off ? step : sizeof(src) - off;

		CHECK(vol_pwrite(v, ino, src + off, n, off, 0, NULL) == (ssize_t)n);
		off += n;
		step = step * 3 + 7;
		if (step > 300000)
			step = 1;
	}
	vol_release(v, ino);
	CHECK(vol_unmount(v) == 0);
	v = mount_img(0);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_lookup(v, VOL_ROOT_INO, "pattern", 0, &ino) == 0);
	CHECK(vol_pread(v, ino, dst, sizeof(dst), 0) == (ssize_t)sizeof(dst));
	CHECK(memcmp(src, dst, sizeof(src)) == 0);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
}

/*
 * Many operations between commits (the running transaction outgrows half
 * the journal and commits early), block reuse right after frees, and a
 * read-only mount.
 */
static void test_stress(void)
{
	struct vol *v;
	char name[64], buf[8192];
	vol_ino_t ino;
	int i;
	struct stat st;

	CHECK(make_image("64M") == 0);
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	memset(buf, 'q', sizeof(buf));
	for (i = 0; i < 6000; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		CHECK(vol_open(v, VOL_ROOT_INO, name, O_CREAT | O_RDWR, 0644, &root, &ino) == 0);
		CHECK(vol_pwrite(v, ino, buf, (size_t)(i % 3) * 3000, 0, 0, NULL) == (i % 3) * 3000);
		vol_release(v, ino);
		if (i % 3 == 2 && i > 100) {
			/* free some blocks, then allocate again at once */
			snprintf(name, sizeof(name), "s%d", i - 100);
			CHECK(vol_unlink(v, VOL_ROOT_INO, name, 0, &root) == 0);
		}
	}
	for (i = 0; i < 6000; i += 5) {
		char to[64];

		snprintf(name, sizeof(name), "s%d", i);
		snprintf(to, sizeof(to), "t%d", i);
		vol_rename(v, VOL_ROOT_INO, name, VOL_ROOT_INO, to, 0, &root);
	}
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck_clean() == 0);
	v = mount_img(VOL_RDONLY);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_lookup(v, VOL_ROOT_INO, "s5999", 0, &ino) == 0);
	CHECK(vol_getattr(v, ino, &st) == 0 && st.st_size == 6000);
	CHECK(vol_open(v, VOL_ROOT_INO, "new", O_CREAT | O_RDWR, 0644, &root, &ino) == -EROFS);
	CHECK(vol_mkdir(v, VOL_ROOT_INO, "newdir", 0755, &root) == -EROFS);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
}

/*
 * A log written by someone else (debugfs writes what the kernel does:
 * checksum v3 tags, two transactions, a revoke record) is replayed by
 * vol_mount exactly as jbd2 would: blocks 10000 and 10002 get the logged
 * content, 10001 was revoked by the later transaction.
 */
static void test_foreign_log(void)
{
	char cmd[1024], blk[4096], data[3 * 4096];
	struct vol *v;
	FILE *f;
	int fd;

	if (run("command -v debugfs >/dev/null") != 0)
		return;
	CHECK(make_image("64M") == 0);
	memset(data, 'Z', sizeof(data));
	f = fopen("/tmp/test_vol-data", "w");
	CHECK(f && fwrite(data, 1, sizeof(data), f) == sizeof(data));
	if (f)
		fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "printf 'jo -c\njw -b 10000,10001,10002 /tmp/test_vol-data\njw -r 10001\njc\n' | "
		 "debugfs -w -f - %s >/dev/null 2>&1", img);
	CHECK(run(cmd) == 0);
	unlink("/tmp/test_vol-data");
	v = mount_img(VOL_RDONLY);
	CHECK(v == NULL);	/* read-only cannot replay */
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (v)
		CHECK(vol_unmount(v) == 0);
	fd = open(img, O_RDONLY);
	CHECK(fd >= 0);
	CHECK(pread(fd, blk, sizeof(blk), 10000 * 4096LL) == 4096 && blk[0] == 'Z' && blk[4095] == 'Z');
	CHECK(pread(fd, blk, sizeof(blk), 10001 * 4096LL) == 4096 && blk[0] == 0);
	CHECK(pread(fd, blk, sizeof(blk), 10002 * 4096LL) == 4096 && blk[0] == 'Z');
	close(fd);
	CHECK(fsck("-fn") == 0);
}

/* A full volume: the write stops short, then -ENOSPC; freeing makes room again; e2fsck stays clean. */
static void test_enospc(void)
{
	static char buf[8 << 20];
	struct vol *v;
	vol_ino_t ino;
	uint64_t off = 0;
	ssize_t r = 0;
	struct statfs empty;
	int i;

	CHECK(make_image("64M") == 0);
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	memset(buf, 'f', sizeof(buf));
	CHECK(vol_statfs(v, &empty) == 0);
	CHECK(vol_open(v, VOL_ROOT_INO, "fill", O_CREAT | O_RDWR, 0600, &root, &ino) == 0);
	for (i = 0; i < 20; i++) {
		r = vol_pwrite(v, ino, buf, sizeof(buf), off, 0, NULL);
		if (r <= 0)
			break;
		off += (uint64_t)r;
	}
	CHECK(r == -ENOSPC);
	CHECK(off > (40u << 20) && off < (64u << 20));
	CHECK(vol_pwrite(v, ino, buf, 4096, off, 0, NULL) == -ENOSPC);
	{
		struct vol_setattr sa = { .valid = VOL_SET_SIZE, .size = off / 2 };

		CHECK(vol_setattr(v, ino, &sa, &root) == 0);
	}
	CHECK(vol_pwrite(v, ino, buf, sizeof(buf), off / 2, 0, NULL) == (ssize_t)sizeof(buf));
	vol_release(v, ino);
	/* Fragment a file across the whole volume (its tree gets depth 1), then free all of it. */
	{
		struct statfs a, b;
		uint64_t o;

		CHECK(vol_statfs(v, &a) == 0);
		CHECK(vol_open(v, VOL_ROOT_INO, "frag", O_CREAT | O_RDWR, 0600, &root, &ino) == 0);
		for (o = 0; o < a.f_bfree / 4; o++)
			vol_pwrite(v, ino, buf, 4096, o * 8192, 0, NULL);
		vol_release(v, ino);
		CHECK(vol_unlink(v, VOL_ROOT_INO, "frag", 0, &root) == 0);
		CHECK(vol_unlink(v, VOL_ROOT_INO, "fill", 0, &root) == 0);
		CHECK(vol_statfs(v, &b) == 0 && b.f_bfree == empty.f_bfree);
	}
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck_clean() == 0);
}

/*
 * Random and sequential 4 KiB writes into a fallocated file (unwritten
 * extents split and merge, the tree grows to several leaves), checked
 * against a copy in memory, then truncated in the middle of it all.
 */
static void test_falloc_random(void)
{
	enum { NB = 4096 };
	static unsigned char shadow[NB * 4096], back[NB * 4096];
	unsigned char blk[4096];
	struct vol *v;
	vol_ino_t ino;
	unsigned x = 7;
	int i;

	CHECK(make_image("64M") == 0);
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	memset(shadow, 0, sizeof(shadow));
	CHECK(vol_open(v, VOL_ROOT_INO, "f", O_CREAT | O_RDWR, 0600, &root, &ino) == 0);
	CHECK(vol_fallocate(v, ino, 0, 0, sizeof(shadow)) == 0);
	for (i = 0; i < 3000; i++) {
		unsigned b, n;

		x = x * 1103515245u + 12345u;
		b = (x >> 8) % NB;
		n = i % 10 == 0 ? 1 + (x >> 4) % 3 : 1;	/* now and then a few adjacent blocks */
		for (unsigned k = 0; k < n && b + k < NB; k++) {
			memset(blk, (int)(x + k) | 1, sizeof(blk));
			/* now and then a partial block: the rest must stay zero */
			size_t len = i % 7 == 0 ? 1000 : sizeof(blk);

			CHECK(vol_pwrite(v, ino, blk, len, (uint64_t)(b + k) * 4096, 0, NULL) == (ssize_t)len);
			/* Unwritten or not, the bytes past len keep what they read as before: zeros or old data. */
			memcpy(shadow + (size_t)(b + k) * 4096, blk, len);
		}
	}
	/* Sequential runs over the rest. */
	for (i = 0; i < 200; i++) {
		memset(blk, 0x5a, sizeof(blk));
		CHECK(vol_pwrite(v, ino, blk, sizeof(blk), (uint64_t)(1000 + i) * 4096, 0, NULL) == 4096);
		memcpy(shadow + (size_t)(1000 + i) * 4096, blk, sizeof(blk));
	}
	CHECK(vol_pread(v, ino, back, sizeof(back), 0) == (ssize_t)sizeof(back));
	CHECK(memcmp(back, shadow, sizeof(back)) == 0);
	{
		struct vol_setattr sa = { .valid = VOL_SET_SIZE, .size = 2222 * 4096 + 17 };

		CHECK(vol_setattr(v, ino, &sa, &root) == 0);
		memset(shadow + sa.size, 0, sizeof(shadow) - sa.size);
		sa.size = sizeof(shadow);
		CHECK(vol_setattr(v, ino, &sa, &root) == 0);
	}
	vol_release(v, ino);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck_clean() == 0);
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_lookup(v, VOL_ROOT_INO, "f", 0, &ino) == 0);
	CHECK(vol_pread(v, ino, back, sizeof(back), 0) == (ssize_t)sizeof(back));
	CHECK(memcmp(back, shadow, sizeof(back)) == 0);
	CHECK(vol_unmount(v) == 0);
}

/*
 * fallocate's other modes against a model in memory: random writes,
 * PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE with and without KEEP_SIZE and plain
 * fallocate, partial blocks included.  Content, size and the blocks
 * allocated (st_blocks, give or take the extent tree's own blocks) must
 * follow ext4's rules after every step; e2fsck finds the image clean and
 * a remount reads the same bytes.  Then the errnos.
 */
static void test_punch_zero(void)
{
	enum { NB = 1536 };
	static unsigned char shadow[NB * 4096 + 65536], back[NB * 4096 + 65536];
	static bool alloc[NB + 16];
	unsigned char data[40000];
	uint64_t size = 0;
	struct vol *v;
	vol_ino_t ino, dir;
	long base = 0;
	uint64_t far;
	unsigned x = 11;
	int bad = 0;

	CHECK(make_image("64M") == 0);
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	memset(shadow, 0, sizeof(shadow));
	CHECK(vol_open(v, VOL_ROOT_INO, "pz", O_CREAT | O_RDWR, 0600, &root, &ino) == 0);
	for (int i = 0; i < 1500 && bad < 5; i++) {
		uint64_t off, len, end, a, b;
		int op, r;

		x = x * 1103515245u + 12345u;
		op = (x >> 24) % 6;
		off = (x >> 2) % (NB * 4096 - sizeof(data));
		if (i % 3 == 0)
			off &= ~4095ull;	/* block aligned now and then */
		x = x * 1103515245u + 12345u;
		len = 1 + (x >> 8) % (i % 5 == 0 ? sizeof(data) : 9000);
		end = off + len;
		switch (op) {
		case 0:
		case 1:	/* write */
			memset(data, (int)(x & 0xff) | 1, len);
			r = (int)vol_pwrite(v, ino, data, len, off, 0, NULL);
			CHECK(r == (int)len);
			memcpy(shadow + off, data, len);
			for (a = off / 4096; a < (end + 4095) / 4096; a++)
				alloc[a] = true;
			if (end > size)
				size = end;
			break;
		case 2:	/* punch */
			r = vol_fallocate(v, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
			CHECK(r == 0);
			if (off < size) {
				uint64_t e = end < (size + 4095) / 4096 * 4096 ? end : (size + 4095) / 4096 * 4096;

				memset(shadow + off, 0, e - off);
				for (a = (off + 4095) / 4096, b = e / 4096; a < b; a++)
					alloc[a] = false;
			}
			break;
		case 3:	/* zero range */
		case 4: /* zero range, keep size */
			r = vol_fallocate(v, ino, FALLOC_FL_ZERO_RANGE | (op == 4 ? FALLOC_FL_KEEP_SIZE : 0), off, len);
			CHECK(r == 0);
			memset(shadow + off, 0, len);
			for (a = off / 4096; a < (end + 4095) / 4096; a++)
				alloc[a] = true;
			if (op == 3 && end > size)
				size = end;
			break;
		default: /* plain fallocate, keep size half the time */
			r = vol_fallocate(v, ino, i % 2 ? FALLOC_FL_KEEP_SIZE : 0, off, len);
			CHECK(r == 0);
			for (a = off / 4096; a < (end + 4095) / 4096; a++)
				alloc[a] = true;
			if (!(i % 2) && end > size)
				size = end;
			break;
		}
		if (i % 50 == 0 || i == 1499) {
			struct stat st;
			long want = 0;

			for (a = 0; a < NB + 16; a++)
				want += alloc[a];
			CHECK(vol_getattr(v, ino, &st) == 0);
			if ((uint64_t)st.st_size != size || st.st_blocks / 8 < want || st.st_blocks / 8 > want + 8) {
				fprintf(stderr, "step %d op %d: size %lld (want %llu) blocks %lld (want %ld)\n", i, op,
					(long long)st.st_size, (unsigned long long)size, (long long)st.st_blocks / 8, want);
				bad++;
			}
			CHECK(vol_pread(v, ino, back, sizeof(back), 0) == (ssize_t)size);
			if (memcmp(back, shadow, size) != 0) {
				fprintf(stderr, "step %d op %d: content differs\n", i, op);
				bad++;
			}
		}
	}
	CHECK(bad == 0);
	vol_release(v, ino);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck_clean() == 0);
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_lookup(v, VOL_ROOT_INO, "pz", 0, &ino) == 0);
	CHECK(vol_pread(v, ino, back, sizeof(back), 0) == (ssize_t)size);
	CHECK(memcmp(back, shadow, size) == 0);

	/*
	 * Punching to the end of the block holding the last byte frees every
	 * block but those fallocated past it; the size stays.  (A punch of
	 * [0, size) would keep the partial last block, zeroed, as ext4 does.)
	 */
	CHECK(vol_fallocate(v, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size + 65536) == 0);
	{
		long beyond = 0;

		for (uint64_t a = (size + 4095) / 4096; a < NB + 16; a++)
			beyond += alloc[a];
		CHECK(blocks_of(v, ino) == beyond);
		CHECK(vol_seek_data(v, ino, 0, SEEK_DATA) == -ENXIO);
		base = beyond;
	}
	{
		struct stat st;

		CHECK(vol_getattr(v, ino, &st) == 0 && (uint64_t)st.st_size == size);
	}
	/* Past the end of file: nothing happens (fallocated blocks beyond it stay). */
	far = (size + 4095) / 4096 * 4096 + 1048576;
	CHECK(vol_fallocate(v, ino, FALLOC_FL_KEEP_SIZE, far, 8192) == 0);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, far, 8192) == 0);
	CHECK(blocks_of(v, ino) == base + 2);
	/* ZERO_RANGE on a hole allocates; with KEEP_SIZE the size stays. */
	CHECK(vol_fallocate(v, ino, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, far + 1048576, 10000) == 0);
	CHECK(blocks_of(v, ino) == base + 5);
	{
		struct stat st;

		CHECK(vol_getattr(v, ino, &st) == 0 && (uint64_t)st.st_size == size);
		CHECK(vol_fallocate(v, ino, FALLOC_FL_ZERO_RANGE, size + 3 * 1048576, 100) == 0);
		CHECK(vol_getattr(v, ino, &st) == 0 && (uint64_t)st.st_size == size + 3 * 1048576 + 100);
	}
	/* The errnos of Linux (vfs_fallocate, ext4_fallocate). */
	CHECK(vol_fallocate(v, ino, FALLOC_FL_PUNCH_HOLE, 0, 4096) == -EOPNOTSUPP);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 4096) ==
	      -EOPNOTSUPP);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_COLLAPSE_RANGE, 0, 4096) == -EOPNOTSUPP);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_INSERT_RANGE, 0, 4096) == -EOPNOTSUPP);
	CHECK(vol_fallocate(v, ino, 0x100, 0, 4096) == -EOPNOTSUPP);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 0) == -EINVAL);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_ZERO_RANGE, 0, 0) == -EINVAL);
	CHECK(vol_fallocate(v, ino, FALLOC_FL_ZERO_RANGE, 1ull << 44, 4096) == -EFBIG);
	CHECK(vol_lookup(v, VOL_ROOT_INO, "lost+found", 0, &dir) == 0);
	CHECK(vol_fallocate(v, dir, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == -EISDIR);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck_clean() == 0);
}

/*
 * Kill a busy writer at random moments (mid-operation, mid-commit), ten
 * times on one image: each time the next mount replays, every file the
 * child reported fsync'ed (through a pipe) has its content, and e2fsck
 * finds the result clean.
 */
static void test_crash_loop(void)
{
	unsigned seed = getenv("TEST_VOL_SEED") ? (unsigned)atoi(getenv("TEST_VOL_SEED")) : 99;
	int round;

	CHECK(make_image("64M") == 0);
	for (round = 0; round < 10; round++) {
		int pfd[2], st, n = 0, synced[4096];
		char name[64], buf[256], want[64];
		struct vol *v;
		pid_t pid;

		CHECK(pipe(pfd) == 0);
		pid = fork();
		if (pid == 0) {
			struct vol *cv = mount_img(0);
			static char big[256 << 10];
			unsigned x = seed;

			close(pfd[0]);
			if (!cv)
				_exit(2);
			for (int i = 0; i < 100000; i++) {
				vol_ino_t ino;

				x = x * 1103515245u + 12345u;
				snprintf(name, sizeof(name), "r%d-%u", round, (x >> 8) % 300);
				switch ((x >> 4) % 6) {
				case 0:
				case 1:
					snprintf(buf, sizeof(buf), "content of %s", name);
					if (vol_open(cv, VOL_ROOT_INO, name, O_CREAT | O_RDWR | O_TRUNC, 0644, &root, &ino) == 0) {
						vol_pwrite(cv, ino, buf, strlen(buf), 0, 0, NULL);
						vol_pwrite(cv, ino, big, (x >> 12) % sizeof(big), 4096, 0, NULL);
						if ((x >> 20) % 4 == 0 && vol_fsync(cv, ino, false) == 0) {
							int id = (int)((x >> 8) % 300);

							if (write(pfd[1], &id, sizeof(id)) != sizeof(id))
								_exit(5);
						}
						vol_release(cv, ino);
					}
					break;
				case 2:
					vol_unlink(cv, VOL_ROOT_INO, name, 0, &root);
					break;
				case 3:
					snprintf(want, sizeof(want), "r%d-%u", round, (x >> 16) % 300);
					vol_rename(cv, VOL_ROOT_INO, name, VOL_ROOT_INO, want, 0, &root);
					break;
				case 4:
					vol_mkdir(cv, VOL_ROOT_INO, name, 0755, &root);
					break;
				default:
					vol_unlink(cv, VOL_ROOT_INO, name, AT_REMOVEDIR, &root);
					break;
				}
			}
			_exit(0);
		}
		close(pfd[1]);
		seed = seed * 69069u + 1;
		usleep(20000 + seed % 200000);
		kill(pid, SIGKILL);
		/* What the child reported synced before it died (a name may be renamed or unlinked later: skip those). */
		while (n < 4096 && read(pfd[0], &synced[n], sizeof(int)) == sizeof(int))
			n++;
		close(pfd[0]);
		CHECK(waitpid(pid, &st, 0) == pid);
		v = mount_img(VOL_NO_TICK);
		CHECK(v != NULL);
		if (!v)
			return;
		/* The last reported fsync of a name is the newest state of that name only if nothing touched it after; so check format only. */
		for (int i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "r%d-%d", round, synced[i]);
			if (get(v, name, buf, sizeof(buf)) == 0 && buf[0])
				CHECK(strncmp(buf, "content of r", 12) == 0 || buf[0] == 0);
		}
		CHECK(vol_unmount(v) == 0);
		st = fsck_clean();
		CHECK(st == 0);
		if (st)
			break;
	}
}

/* The 5 s timer commits on its own: a file created, then 6 s of quiet, then SIGKILL: the file is there. */
static void test_tick(void)
{
	char buf[64];
	struct vol *v;
	pid_t pid;
	int st;

	CHECK(make_image("64M") == 0);
	pid = fork();
	if (pid == 0) {
		struct vol *cv = mount_img(0);

		if (!cv || put(cv, "ticked", "by the timer"))
			_exit(2);
		sleep(7);
		kill(getpid(), SIGKILL);
		_exit(3);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st));
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(get(v, "ticked", buf, sizeof(buf)) == 0 && strcmp(buf, "by the timer") == 0);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
}

/*
 * Journal sequences for fsd (vol_running_seq/vol_committed_seq): an
 * operation's sequence is committed after vol_sync (also with nothing
 * changed), an unsynced one is not after a crash, they grow across mounts.
 */
static void test_seq(void)
{
	int pfd[2], st;
	uint64_t s[2] = { 0, 0 }, r, c;
	struct vol *v;
	pid_t pid;

	CHECK(make_image("64M") == 0);
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	/* Nothing running: every change so far is committed. */
	CHECK(vol_committed_seq(v) == vol_running_seq(v));
	CHECK(put(v, "a", "1") == 0);
	CHECK(vol_committed_seq(v) < vol_running_seq(v));
	r = vol_running_seq(v);
	CHECK(vol_sync(v, false) == 0 && vol_committed_seq(v) >= r);
	r = vol_running_seq(v);
	CHECK(vol_sync(v, false) == 0 && vol_committed_seq(v) >= r);	/* nothing changed */
	c = vol_committed_seq(v);
	CHECK(vol_unmount(v) == 0);
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_committed_seq(v) >= c && vol_running_seq(v) > c);
	CHECK(vol_unmount(v) == 0);

	CHECK(pipe(pfd) == 0);
	pid = fork();
	if (pid == 0) {
		struct vol *cv = mount_img(VOL_NO_TICK);
		uint64_t out[2];

		if (!cv)
			_exit(2);
		put(cv, "synced", "x");
		out[0] = vol_running_seq(cv);
		vol_sync(cv, false);
		put(cv, "lost", "y");
		out[1] = vol_running_seq(cv);
		if (write(pfd[1], out, sizeof(out)) != sizeof(out))
			_exit(3);
		kill(getpid(), SIGKILL);
		_exit(4);
	}
	close(pfd[1]);
	CHECK(read(pfd[0], s, sizeof(s)) == sizeof(s));
	close(pfd[0]);
	CHECK(waitpid(pid, &st, 0) == pid);
	v = mount_img(VOL_NO_TICK);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_committed_seq(v) >= s[0]);
	CHECK(vol_committed_seq(v) < s[1]);
	{
		char buf[8];

		CHECK(get(v, "synced", buf, sizeof(buf)) == 0);
		CHECK(get(v, "lost", buf, sizeof(buf)) == -ENOENT);
	}
	/* The lost transaction's sequence is never used again. */
	CHECK(put(v, "after", "z") == 0);
	CHECK(vol_running_seq(v) > s[1]);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
}

/* Four threads at once, with the 5 s timer running: appends to one file never interleave or get lost. */
struct thr_arg {
	struct vol *v;
	int id;
	vol_ino_t shared;
};

static void *thr_main(void *p)
{
	struct thr_arg *a = p;
	char name[64], rec[100];
	vol_ino_t ino;

	memset(rec, 'a' + a->id, sizeof(rec));
	rec[sizeof(rec) - 1] = '\n';
	for (int i = 0; i < 400; i++) {
		CHECK(vol_pwrite(a->v, a->shared, rec, sizeof(rec), 0, VOL_APPEND, NULL) == (ssize_t)sizeof(rec));
		snprintf(name, sizeof(name), "t%d-%d", a->id, i % 50);
		if (vol_open(a->v, VOL_ROOT_INO, name, O_CREAT | O_RDWR, 0644, &root, &ino) == 0) {
			vol_pwrite(a->v, ino, rec, sizeof(rec), (uint64_t)i * 4096, 0, NULL);
			vol_release(a->v, ino);
		}
		if (i % 3 == 0)
			vol_unlink(a->v, VOL_ROOT_INO, name, 0, &root);
	}
	return NULL;
}

static void test_threads(void)
{
	struct thr_arg a[4];
	pthread_t t[4];
	struct vol *v;
	vol_ino_t shared;
	static char buf[4 * 400 * 100];

	CHECK(make_image("64M") == 0);
	v = mount_img(0);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK(vol_open(v, VOL_ROOT_INO, "log", O_CREAT | O_RDWR, 0644, &root, &shared) == 0);
	for (int i = 0; i < 4; i++) {
		a[i].v = v;
		a[i].id = i;
		a[i].shared = shared;
		CHECK(pthread_create(&t[i], NULL, thr_main, &a[i]) == 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK(vol_pread(v, shared, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf));
	for (size_t r = 0; r < sizeof(buf); r += 100) {
		bool same = true;

		for (int k = 1; k < 99; k++)
			same = same && buf[r + k] == buf[r];
		CHECK(same && buf[r + 99] == '\n');
	}
	vol_release(v, shared);
	CHECK(vol_unmount(v) == 0);
	CHECK(fsck("-fn") == 0);
}

/* With an argument, run only the named test (for debugging): basic perms large sparse many pattern crash stress foreign enospc falloc punch crashloop tick seq threads orphan. */
static bool want(int argc, char **argv, const char *name)
{
	return argc < 2 || strcmp(argv[1], name) == 0;
}

int main(int argc, char **argv)
{
	if (run("command -v mke2fs >/dev/null && command -v e2fsck >/dev/null") != 0) {
		fprintf(stderr, "test_vol: mke2fs/e2fsck not found: skipped\n");
		return 77;
	}
	snprintf(img, sizeof(img), "/tmp/test_vol-%d.img", (int)getpid());
	if (argc >= 2)
		CHECK(make_image("64M") == 0);
	if (want(argc, argv, "basic"))
		test_basic();
	if (want(argc, argv, "perms"))
		test_perms();
	if (want(argc, argv, "large"))
		test_large();
	if (want(argc, argv, "sparse"))
		test_sparse_order();
	if (want(argc, argv, "many"))
		test_many();
	if (want(argc, argv, "pattern"))
		test_data_pattern();
	if (want(argc, argv, "crash")) {
		test_crash(0);
		test_crash(1);
	}
	if (want(argc, argv, "stress"))
		test_stress();
	if (want(argc, argv, "foreign"))
		test_foreign_log();
	if (want(argc, argv, "enospc"))
		test_enospc();
	if (want(argc, argv, "falloc"))
		test_falloc_random();
	if (want(argc, argv, "punch"))
		test_punch_zero();
	if (want(argc, argv, "crashloop"))
		test_crash_loop();
	if (want(argc, argv, "tick"))
		test_tick();
	if (want(argc, argv, "seq"))
		test_seq();
	if (want(argc, argv, "threads"))
		test_threads();
	if (want(argc, argv, "orphan"))
		test_orphan_crash();
	if (!getenv("TEST_VOL_KEEP"))
		unlink(img);
	if (failures)
		fprintf(stderr, "test_vol: %d checks failed\n", failures);
	return failures ? 1 : 0;
}
