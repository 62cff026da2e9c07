/* File behaviour: stat/lstat/fstat/fstatat/statx fields, access/faccessat, chmod/fchmod/chown/utimensat with the set values read back. */
#include "ft.h"

#include <sys/time.h>
#include <time.h>

static void show_times(const char *step, const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		ft_say("%s: -1 %s", step, ft_errname(errno));
		return;
	}
	ft_say("%s: atime=%lld.%09ld mtime=%lld.%09ld", step, (long long)st.st_atim.tv_sec,
	       st.st_atim.tv_nsec, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

int main(int argc, char **argv)
{
	struct stat st, st2, lst;
	struct statx sx;
	struct timespec ts[2];
	struct timespec before;
	int fd, dfd;

	ft_init(argc, argv, 60);

	ft_make_file(ft_path("f"), 12345, 8);
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_ok("stat f", stat(ft_path("f"), &st));
	ft_say("st_blocks covers the size: %s", ft_yn((long long)st.st_blocks * 512 >= st.st_size));
	ft_say("st_blksize is a power of two >= 512: %s",
	       ft_yn(st.st_blksize >= 512 && !(st.st_blksize & (st.st_blksize - 1))));
	fd = open(ft_path("f"), O_RDONLY);
	ft_ok("fstat f", fstat(fd, &st2));
	ft_say("fstat and stat: same inode: %s same dev: %s same size: %s",
	       ft_yn(st.st_ino == st2.st_ino), ft_yn(st.st_dev == st2.st_dev),
	       ft_yn(st.st_size == st2.st_size));
	close(fd);
	ft_ok("symlink f -> l", symlink("f", ft_path("l")));
	ft_show_stat("lstat l", ft_path("l"), 1);
	ft_show_stat("stat l", ft_path("l"), 0);
	ft_ok("lstat l", lstat(ft_path("l"), &lst));
	ft_say("link and file: same inode: %s", ft_yn(lst.st_ino == st.st_ino));
	ft_say("lstat l size is the target's length: %s", ft_yn(lst.st_size == 1));
	ft_show_stat("stat missing", ft_path("missing"), 0);
	ft_show_stat("stat f/x", ft_path("f/x"), 0);
	ft_show_stat("stat dir", ft_dir, 0);

	/* fstatat relative to a directory descriptor, with and without following. */
	dfd = open(ft_dir, O_RDONLY | O_DIRECTORY);
	ft_ok("open dir", dfd);
	ft_ok("fstatat dfd f", fstatat(dfd, "f", &st2, 0));
	ft_say("fstatat: same inode as stat: %s", ft_yn(st2.st_ino == st.st_ino));
	ft_ok("fstatat dfd l AT_SYMLINK_NOFOLLOW", fstatat(dfd, "l", &st2, AT_SYMLINK_NOFOLLOW));
	ft_say("fstatat nofollow: a symlink: %s", ft_yn(S_ISLNK(st2.st_mode)));
	ft_ok("fstatat dfd \"\" AT_EMPTY_PATH", fstatat(dfd, "", &st2, AT_EMPTY_PATH));
	ft_say("AT_EMPTY_PATH: a dir: %s", ft_yn(S_ISDIR(st2.st_mode)));
	ft_ok("fstatat dfd \"\" (no AT_EMPTY_PATH)", fstatat(dfd, "", &st2, 0));
	ft_ok("fstatat AT_FDCWD absolute f", fstatat(AT_FDCWD, ft_path("f"), &st2, 0));
	ft_ok("fstatat bad flags", fstatat(dfd, "f", &st2, 0x40000000));

	/* statx. */
	memset(&sx, 0, sizeof(sx));
	ft_ok("statx f BASIC_STATS", statx(dfd, "f", 0, STATX_BASIC_STATS, &sx));
	ft_say("statx: basic mask set: %s mode=%04o type=%s nlink=%u size=%llu uid=%u same inode: %s",
	       ft_yn((sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS),
	       (unsigned)(sx.stx_mode & 07777), ft_type(sx.stx_mode), sx.stx_nlink,
	       (unsigned long long)sx.stx_size, sx.stx_uid, ft_yn(sx.stx_ino == st.st_ino));
	ft_ok("statx l AT_SYMLINK_NOFOLLOW", statx(dfd, "l", AT_SYMLINK_NOFOLLOW, STATX_TYPE, &sx));
	ft_say("statx nofollow: a symlink: %s", ft_yn(S_ISLNK(sx.stx_mode)));
	ft_ok("statx missing", statx(dfd, "missing", 0, STATX_BASIC_STATS, &sx));
	fd = open(ft_path("f"), O_RDONLY);
	ft_ok("statx fd AT_EMPTY_PATH", statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx));
	ft_say("statx fd size: %llu", (unsigned long long)sx.stx_size);
	close(fd);

	/* access. */
	ft_ok("access f F_OK", access(ft_path("f"), F_OK));
	ft_ok("access f R_OK|W_OK", access(ft_path("f"), R_OK | W_OK));
	ft_ok("access f X_OK (0644, root)", access(ft_path("f"), X_OK));
	ft_ok("access missing F_OK", access(ft_path("missing"), F_OK));
	ft_ok("access dir X_OK", access(ft_dir, X_OK));
	ft_ok("access bad mode", access(ft_path("f"), 0100));
	ft_ok("faccessat dfd f R_OK", faccessat(dfd, "f", R_OK, 0));
	ft_ok("faccessat dfd f X_OK AT_EACCESS", faccessat(dfd, "f", X_OK, AT_EACCESS));
	ft_ok("faccessat dfd l R_OK AT_SYMLINK_NOFOLLOW", faccessat(dfd, "l", R_OK, AT_SYMLINK_NOFOLLOW));

	/* chmod, fchmod, fchmodat; chown, fchown, lchown. */
	ft_ok("chmod f 0751", chmod(ft_path("f"), 0751));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_ok("access f X_OK (0751, root)", access(ft_path("f"), X_OK));
	fd = open(ft_path("f"), O_RDONLY);
	ft_ok("fchmod f 04600", fchmod(fd, 04600));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_ok("fchmodat dfd f 0640", fchmodat(dfd, "f", 0640, 0));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_ok("chmod through link 0600", chmod(ft_path("l"), 0600));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_show_stat("lstat l (mode of a link stays 0777)", ft_path("l"), 1);
	ft_ok("chown f 65534:65534", chown(ft_path("f"), 65534, 65534));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_ok("fchown f 1000:-1", fchown(fd, 1000, (gid_t)-1));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_ok("lchown l 1001:1002", lchown(ft_path("l"), 1001, 1002));
	ft_show_stat("lstat l", ft_path("l"), 1);
	ft_show_stat("stat f (unchanged by lchown)", ft_path("f"), 0);
	ft_ok("chmod 06755 then chown clears set-id bits", chmod(ft_path("f"), 06755));
	ft_ok("chown f 0:0", chown(ft_path("f"), 0, 0));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_ok("chmod missing", chmod(ft_path("missing"), 0644));
	ft_ok("chown missing", chown(ft_path("missing"), 0, 0));
	close(fd);

	/* utimensat: set values come back exactly; UTIME_OMIT keeps, UTIME_NOW moves forward. */
	ts[0] = (struct timespec){ .tv_sec = 1000000000, .tv_nsec = 123456789 };
	ts[1] = (struct timespec){ .tv_sec = 1500000000, .tv_nsec = 987654321 };
	ft_ok("utimensat f", utimensat(dfd, "f", ts, 0));
	show_times("times f", ft_path("f"));
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1] = (struct timespec){ .tv_sec = 1600000000, .tv_nsec = 5 };
	ft_ok("utimensat f atime UTIME_OMIT", utimensat(dfd, "f", ts, 0));
	show_times("times f", ft_path("f"));
	ts[0] = (struct timespec){ .tv_sec = 1234567890, .tv_nsec = 0 };
	ts[1] = (struct timespec){ .tv_sec = 1234567891, .tv_nsec = 0 };
	ft_ok("utimensat l AT_SYMLINK_NOFOLLOW", utimensat(dfd, "l", ts, AT_SYMLINK_NOFOLLOW));
	show_times("times l", ft_path("l"));
	show_times("times f (unchanged)", ft_path("f"));
	clock_gettime(CLOCK_REALTIME, &before);
	before.tv_sec -= 2; /* A file system may keep coarser time than the clock. */
	ts[0].tv_nsec = UTIME_NOW;
	ts[1].tv_nsec = UTIME_NOW;
	ft_ok("utimensat f UTIME_NOW", utimensat(dfd, "f", ts, 0));
	ft_ok("stat f", stat(ft_path("f"), &st));
	ft_say("mtime is now: %s", ft_yn(st.st_mtim.tv_sec >= before.tv_sec && st.st_mtim.tv_sec < before.tv_sec + 60));
	ft_ok("utimensat f NULL", utimensat(dfd, "f", NULL, 0));
	ft_ok("utimensat f bad nsec", utimensat(dfd, "f", (struct timespec[2]){ { 0, 1000000000 }, { 0, 0 } }, 0));
	ft_ok("utimensat missing", utimensat(dfd, "missing", NULL, 0));
	fd = open(ft_path("f"), O_WRONLY);
	ft_ok("futimens f", futimens(fd, (struct timespec[2]){ { 42, 0 }, { 43, 1 } }));
	show_times("times f", ft_path("f"));

	/* Writing updates mtime and ctime; a stat before and after shows the relation. */
	ft_ok("stat f", stat(ft_path("f"), &st));
	ft_val("write 1", write(fd, "x", 1));
	ft_ok("stat f", stat(ft_path("f"), &st2));
	ft_say("mtime moved forward by the write: %s", ft_yn(st2.st_mtim.tv_sec > st.st_mtim.tv_sec));
	ft_say("ctime >= mtime: %s", ft_yn(st2.st_ctim.tv_sec > st.st_mtim.tv_sec));
	close(fd);
	close(dfd);
	return 0;
}
