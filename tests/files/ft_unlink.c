/* File behaviour: unlink (ENOENT EISDIR), an unlinked open file stays readable and writable with st_nlink 0, its space is freed at the last close. */
#include "ft.h"

#include <sys/statvfs.h>

#define SIZE (8 << 20)

/* Free bytes of the file system holding the test directory, or -1. */
static long long free_bytes(void)
{
	struct statvfs sv;

	if (statvfs(ft_dir, &sv) < 0)
		return -1;
	return (long long)sv.f_bfree * (long long)sv.f_frsize;
}

int main(int argc, char **argv)
{
	long long before, open_unlinked, after;
	struct stat st;
	uint8_t buf[100];
	int fd, fd2;

	ft_init(argc, argv, 60);

	ft_ok("unlink missing", unlink(ft_path("missing")));
	ft_ok("mkdir d", mkdir(ft_path("d"), 0755));
	ft_ok("unlink d (a dir)", unlink(ft_path("d")));
	ft_ok("unlink d/ (trailing slash)", unlink(ft_path("d/")));
	ft_make_file(ft_path("f"), 10, 1);
	ft_ok("unlink f/ (a file with trailing slash)", unlink(ft_path("f/")));
	ft_ok("unlink f", unlink(ft_path("f")));
	ft_ok("unlink f again", unlink(ft_path("f")));
	ft_ok("symlink f -> l (dangling)", symlink("f", ft_path("l")));
	ft_ok("unlink l (removes the link only)", unlink(ft_path("l")));
	ft_make_file(ft_path("t"), 10, 1);
	ft_ok("symlink t -> lt", symlink("t", ft_path("lt")));
	ft_ok("unlink lt", unlink(ft_path("lt")));
	ft_show_stat("stat t (the target stays)", ft_path("t"), 0);

	/* The space of an unlinked file comes back at its last close. */
	ft_ok("sync the free count: fsync dir",
	      (fd = open(ft_dir, O_RDONLY | O_DIRECTORY)) >= 0 ? fsync(fd) : -1);
	if (fd >= 0)
		close(fd);
	ft_make_file(ft_path("big"), SIZE, 2);
	fd = open(ft_path("big"), O_RDWR);
	ft_ok("open big", fd);
	fd2 = dup(fd);
	before = free_bytes();
	ft_say("statvfs works: %s", ft_yn(before >= 0));
	ft_ok("unlink big while open", unlink(ft_path("big")));
	ft_show_stat("stat big after unlink", ft_path("big"), 0);
	ft_ok("fstat open fd", fstat(fd, &st));
	ft_say("fstat: nlink=%lu size=%lld", (unsigned long)st.st_nlink, (long long)st.st_size);
	ft_val("pread 100 at 1 MiB", pread(fd, buf, sizeof(buf), 1 << 20));
	{
		uint8_t want[100];
		ft_pattern(want, sizeof(want), 1 << 20, 2);
		ft_say("content still there: %s", ft_yn(!memcmp(buf, want, sizeof(buf))));
	}
	ft_val("pwrite 5 at 0 (still writable)", pwrite(fd, "after", 5, 0));
	ft_val("pread 5 at 0", pread(fd, buf, 5, 0));
	ft_say("read back: %.5s", (char *)buf);
	open_unlinked = free_bytes();
	ft_say("space still held while open: %s", ft_yn(open_unlinked < before + SIZE / 2));
	ft_ok("close first fd", close(fd));
	ft_say("space still held while a dup is open: %s", ft_yn(free_bytes() < before + SIZE / 2));
	ft_ok("fstat the dup", fstat(fd2, &st));
	ft_say("dup: nlink=%lu size=%lld", (unsigned long)st.st_nlink, (long long)st.st_size);
	ft_ok("close the dup", close(fd2));
	after = free_bytes();
	ft_say("space freed after the last close: %s", ft_yn(after >= before + SIZE * 9LL / 10));
	ft_show_dir("list dir", ft_dir);

	/* A new file with the old name is a new file. */
	ft_make_file(ft_path("re"), 100, 3);
	fd = open(ft_path("re"), O_RDONLY);
	fstat(fd, &st);
	ft_ok("unlink re", unlink(ft_path("re")));
	ft_make_file(ft_path("re"), 50, 4);
	ft_show_fd("old fd reads the old file", fd);
	ft_show_file("new name reads the new file", ft_path("re"));
	close(fd);

	/* unlinkat on a directory descriptor. */
	fd = open(ft_path("d"), O_RDONLY | O_DIRECTORY);
	ft_make_file(ft_path("d/in"), 1, 1);
	ft_ok("unlinkat dfd in", unlinkat(fd, "in", 0));
	ft_ok("unlinkat dfd in again", unlinkat(fd, "in", 0));
	close(fd);
	ft_ok("rmdir d", rmdir(ft_path("d")));
	return 0;
}
