/* File behaviour: open flags and the errors of open (EEXIST ENOENT ENOTDIR EISDIR ELOOP ENAMETOOLONG EACCES). */
#include "ft.h"

#include <sys/uio.h>

/* open(path, flags, 0644): prints "step: ok" or the errno; returns the fd or -1. */
static int try_open(const char *step, const char *path, int flags)
{
	int fd = open(path, flags, 0644);

	ft_ok(step, fd);
	return fd;
}

static void close_if(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* try_open for a step that only looks at open's answer. */
static void open_close(const char *step, const char *path, int flags)
{
	close_if(try_open(step, path, flags));
}

/*
 * Become uid/gid 65534 for the real and effective ids while the saved ids
 * stay 0, so that the same process can come back (no fork: a forked child
 * may not use its parent's direct volume).  access() checks the real id,
 * open() the effective one: both are switched.
 */
static int drop_privileges(void)
{
	if (setresgid(65534, 65534, 0) < 0 || setresuid(65534, 65534, 0) < 0)
		return -errno;
	return 0;
}

static int regain_privileges(void)
{
	if (setresuid(0, 0, 0) < 0 || setresgid(0, 0, 0) < 0)
		return -errno;
	return 0;
}

int main(int argc, char **argv)
{
	char longname[300];
	char *longpath;
	struct stat st;
	int fd, fd2;
	char buf[64];
	ssize_t n;

	ft_init(argc, argv, 60);

	/* O_CREAT, O_EXCL, mode and umask. */
	open_close("open new O_RDONLY", ft_path("a"), O_RDONLY);
	fd = try_open("open new O_CREAT|O_WRONLY", ft_path("a"), O_CREAT | O_WRONLY);
	ft_val("write 5", write(fd, "hello", 5));
	close_if(fd);
	ft_show_stat("stat a (0644 created, umask 022)", ft_path("a"), 0);
	fd = open(ft_path("b"), O_CREAT | O_WRONLY, 0777);
	close_if(fd);
	ft_show_stat("stat b (0777 created, umask 022)", ft_path("b"), 0);
	open_close("open existing O_CREAT|O_EXCL", ft_path("a"), O_CREAT | O_EXCL | O_WRONLY);
	open_close("open new O_CREAT|O_EXCL", ft_path("c"), O_CREAT | O_EXCL | O_RDWR);
	fd = try_open("open existing O_CREAT (no O_EXCL)", ft_path("a"), O_CREAT | O_RDONLY);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf));
		ft_say("read back: %zd \"%.*s\"", n, n > 0 ? (int)n : 0, buf);
	}
	close_if(fd);

	/* O_TRUNC and O_APPEND. */
	open_close("open O_WRONLY|O_TRUNC", ft_path("a"), O_WRONLY | O_TRUNC);
	ft_show_stat("stat a after O_TRUNC", ft_path("a"), 0);
	ft_make_file(ft_path("a"), 1000, 1);
	open_close("open O_RDONLY|O_TRUNC", ft_path("a"), O_RDONLY | O_TRUNC);
	ft_show_stat("stat a after O_RDONLY|O_TRUNC", ft_path("a"), 0);
	ft_make_file(ft_path("a"), 1000, 1);
	fd = try_open("open O_WRONLY|O_APPEND", ft_path("a"), O_WRONLY | O_APPEND);
	ft_val("lseek SEEK_CUR after open", lseek(fd, 0, SEEK_CUR));
	ft_val("write 3", write(fd, "xyz", 3));
	ft_val("lseek SEEK_CUR after append", lseek(fd, 0, SEEK_CUR));
	ft_val("lseek 0 SEEK_SET", lseek(fd, 0, SEEK_SET));
	ft_val("write 3 after seek to 0", write(fd, "XYZ", 3));
	ft_val("lseek SEEK_CUR", lseek(fd, 0, SEEK_CUR));
	close_if(fd);
	ft_show_file("a after appends", ft_path("a"));
	fd = open(ft_path("a"), O_RDONLY);
	if (fd >= 0) {
		n = pread(fd, buf, 6, 1000);
		ft_say("pread tail: %zd \"%.*s\"", n, n > 0 ? (int)n : 0, buf);
		close(fd);
	}
	fd = try_open("open O_RDONLY write", ft_path("a"), O_RDONLY);
	ft_val("write on O_RDONLY", write(fd, "q", 1));
	close_if(fd);
	fd = try_open("open O_WRONLY read", ft_path("a"), O_WRONLY);
	ft_val("read on O_WRONLY", read(fd, buf, 1));
	close_if(fd);

	/* Directories: O_DIRECTORY, EISDIR, ENOTDIR. */
	ft_ok("mkdir d", mkdir(ft_path("d"), 0755));
	fd = try_open("open dir O_RDONLY", ft_path("d"), O_RDONLY);
	ft_val("read on dir", read(fd, buf, 1));
	close_if(fd);
	fd = try_open("open dir O_RDONLY|O_DIRECTORY", ft_path("d"), O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		ft_ok("fstat dir fd", fstat(fd, &st));
		ft_say("dir fd is a dir: %s", ft_yn(S_ISDIR(st.st_mode)));
	}
	close_if(fd);
	open_close("open dir O_WRONLY", ft_path("d"), O_WRONLY);
	open_close("open dir O_RDWR", ft_path("d"), O_RDWR);
	open_close("open dir O_CREAT", ft_path("d"), O_CREAT | O_RDONLY);
	open_close("open file O_DIRECTORY", ft_path("a"), O_RDONLY | O_DIRECTORY);
	open_close("open file/x", ft_path("a/x"), O_RDONLY);
	open_close("open file/x O_CREAT", ft_path("a/x"), O_CREAT | O_WRONLY);
	open_close("open missing/x O_CREAT", ft_path("missing/x"), O_CREAT | O_WRONLY);
	open_close("open new/ O_CREAT (trailing slash)", ft_path("new/"), O_CREAT | O_WRONLY);
	open_close("open a/ (file with trailing slash)", ft_path("a/"), O_RDONLY);
	open_close("open d/ (dir with trailing slash)", ft_path("d/"), O_RDONLY);
	open_close("open d/../a", ft_path("d/../a"), O_RDONLY);
	open_close("open ./a", ft_path("./a"), O_RDONLY);
	open_close("open dir//a (double slash)", ft_path("/a"), O_RDONLY);

	/* Symbolic links: following, O_NOFOLLOW, loops, dangling links with O_CREAT. */
	ft_ok("symlink a -> la", symlink("a", ft_path("la")));
	fd = try_open("open la (follows)", ft_path("la"), O_RDONLY);
	if (fd >= 0)
		ft_show_fd("  content via la", fd);
	close_if(fd);
	open_close("open la O_NOFOLLOW", ft_path("la"), O_RDONLY | O_NOFOLLOW);
	open_close("open a O_NOFOLLOW (not a link)", ft_path("a"), O_RDONLY | O_NOFOLLOW);
	ft_ok("symlink loop1 -> loop2", symlink("loop2", ft_path("loop1")));
	ft_ok("symlink loop2 -> loop1", symlink("loop1", ft_path("loop2")));
	open_close("open loop1", ft_path("loop1"), O_RDONLY);
	ft_ok("symlink target-new -> dangling", symlink("target-new", ft_path("dangling")));
	open_close("open dangling O_CREAT|O_EXCL", ft_path("dangling"), O_CREAT | O_EXCL | O_WRONLY);
	open_close("open dangling (no O_CREAT)", ft_path("dangling"), O_RDONLY);
	open_close("open dangling O_CREAT", ft_path("dangling"), O_CREAT | O_WRONLY);
	ft_show_stat("stat target-new (made through the link)", ft_path("target-new"), 1);
	ft_ok("symlink d -> ld", symlink("d", ft_path("ld")));
	open_close("open ld/f O_CREAT (through a dir link)", ft_path("ld/f"), O_CREAT | O_WRONLY);
	ft_show_dir("list d", ft_path("d"));
	open_close("open ld O_DIRECTORY|O_NOFOLLOW", ft_path("ld"), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);

	/* Names: empty, too long component, too long path. */
	open_close("open \"\"", "", O_RDONLY);
	memset(longname, 'n', 255);
	longname[255] = 0;
	open_close("open 255-byte name O_CREAT", ft_path(longname), O_CREAT | O_WRONLY);
	ft_show_stat("stat 255-byte name", ft_path(longname), 0);
	memset(longname, 'n', 256);
	longname[256] = 0;
	open_close("open 256-byte name O_CREAT", ft_path(longname), O_CREAT | O_WRONLY);
	open_close("open 256-byte name", ft_path(longname), O_RDONLY);
	longpath = malloc(5000);
	if (longpath) {
		size_t len = (size_t)snprintf(longpath, 5000, "%s", ft_dir);
		while (len < 4200)
			len += (size_t)snprintf(longpath + len, 5000 - len, "/d/..");
		open_close("open path > PATH_MAX", longpath, O_RDONLY);
		free(longpath);
	}

	/* Two descriptors of one file have their own offsets. */
	ft_make_file(ft_path("two"), 100, 2);
	fd = open(ft_path("two"), O_RDWR);
	fd2 = open(ft_path("two"), O_RDWR);
	ft_val("fd1 read 10", read(fd, buf, 10));
	ft_val("fd2 offset", lseek(fd2, 0, SEEK_CUR));
	ft_val("fd2 write 4", write(fd2, "ABCD", 4));
	ft_val("fd1 read 4 (sees fd2's write? no: offset 10)", read(fd, buf, 4));
	ft_val("fd1 pread 4 at 0", pread(fd, buf, 4, 0));
	ft_say("fd1 sees fd2's bytes: %s", ft_yn(!memcmp(buf, "ABCD", 4)));
	close_if(fd);
	close_if(fd2);

	/* Permissions as an unprivileged user (uid 65534): EACCES. */
	ft_make_file(ft_path("private"), 10, 3);
	ft_ok("chmod private 0600", chmod(ft_path("private"), 0600));
	ft_make_file(ft_path("readonly"), 10, 3);
	ft_ok("chmod readonly 0644", chmod(ft_path("readonly"), 0644));
	ft_ok("mkdir closed 0700", mkdir(ft_path("closed"), 0700));
	ft_make_file(ft_path("closed/inner"), 10, 3);
	ft_ok("mkdir open 0777", mkdir(ft_path("open"), 0777));
	ft_ok("chmod open 0777", chmod(ft_path("open"), 0777));
	if (drop_privileges() == 0) {
		ft_say("running as uid 65534: yes");
		open_close("  open private O_RDONLY", ft_path("private"), O_RDONLY);
		open_close("  open readonly O_RDONLY", ft_path("readonly"), O_RDONLY);
		open_close("  open readonly O_WRONLY", ft_path("readonly"), O_WRONLY);
		open_close("  open closed/inner", ft_path("closed/inner"), O_RDONLY);
		open_close("  open closed/new O_CREAT", ft_path("closed/new"), O_CREAT | O_WRONLY);
		open_close("  open new in dir O_CREAT (dir 0755 root)", ft_path("newbyuser"), O_CREAT | O_WRONLY);
		open_close("  open open/mine O_CREAT (dir 0777)", ft_path("open/mine"), O_CREAT | O_WRONLY);
		ft_show_stat("  stat open/mine", ft_path("open/mine"), 0);
		ft_ok("  access private R_OK", access(ft_path("private"), R_OK));
		ft_ok("  access readonly R_OK", access(ft_path("readonly"), R_OK));
		ft_ok("  access readonly W_OK", access(ft_path("readonly"), W_OK));
		ft_ok("  access closed/inner F_OK", access(ft_path("closed/inner"), F_OK));
		ft_ok("  unlink readonly (dir 0755 root)", unlink(ft_path("readonly")));
		ft_ok("  mkdir in closed", mkdir(ft_path("closed/sub"), 0755));
		if (regain_privileges() < 0) {
			ft_say("cannot regain root: %s", ft_errname(errno));
			return 1;
		}
	} else {
		ft_say("running as uid 65534: no (%s)", ft_errname(errno));
	}
	open_close("open private as root again", ft_path("private"), O_RDONLY);
	return 0;
}
