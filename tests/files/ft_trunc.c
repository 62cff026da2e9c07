/* File behaviour: truncate/ftruncate growing and shrinking (zeros after regrowth), EINVAL EISDIR EBADF, O_TRUNC on open descriptors. */
#include "ft.h"

int main(int argc, char **argv)
{
	uint8_t buf[10000];
	int fd, ro, zero;

	ft_init(argc, argv, 60);

	ft_make_file(ft_path("f"), 10000, 1);
	fd = open(ft_path("f"), O_RDWR);
	ft_ok("ftruncate 5000 (shrink)", ftruncate(fd, 5000));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_show_file("f", ft_path("f"));
	ft_ok("ftruncate 9000 (grow)", ftruncate(fd, 9000));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_val("pread 4000 at 5000", pread(fd, buf, 4000, 5000));
	zero = 1;
	for (int i = 0; i < 4000; i++)
		zero &= buf[i] == 0;
	ft_say("regrown part is zeros: %s", ft_yn(zero));
	ft_ok("ftruncate 4095 (mid-block)", ftruncate(fd, 4095));
	ft_ok("ftruncate 8192", ftruncate(fd, 8192));
	ft_val("pread 10 at 4090", pread(fd, buf, 10, 4090));
	ft_say("bytes 4095.. are zeros after shrink and regrow: %s", ft_yn(!buf[5] && !buf[9] && buf[4] != 0));
	ft_show_file("f", ft_path("f"));
	ft_ok("ftruncate -1", ftruncate(fd, -1));
	ft_val("lseek SEEK_CUR (unchanged by ftruncate)", lseek(fd, 0, SEEK_CUR));
	ft_val("lseek 100000", lseek(fd, 100000, SEEK_SET));
	ft_ok("ftruncate 10", ftruncate(fd, 10));
	ft_val("write at offset 100000 after truncation to 10", write(fd, "z", 1));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_ok("ftruncate 0", ftruncate(fd, 0));
	ft_show_stat("stat f", ft_path("f"), 0);
	close(fd);

	ro = open(ft_path("f"), O_RDONLY);
	ft_ok("ftruncate on O_RDONLY fd", ftruncate(ro, 1));
	close(ro);
	ft_ok("ftruncate closed fd", ftruncate(ro, 1));
	ft_ok("truncate f 3333 (path)", truncate(ft_path("f"), 3333));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_ok("truncate missing", truncate(ft_path("missing"), 1));
	ft_ok("mkdir d", mkdir(ft_path("d"), 0755));
	ft_ok("truncate d (a dir)", truncate(ft_path("d"), 1));
	ft_ok("symlink f -> l", symlink("f", ft_path("l")));
	ft_ok("truncate l 77 (follows)", truncate(ft_path("l"), 77));
	ft_show_stat("stat f", ft_path("f"), 0);
	ft_show_stat("lstat l", ft_path("l"), 1);

	/* O_TRUNC through a second descriptor: the first sees the new size. */
	ft_make_file(ft_path("g"), 5000, 2);
	fd = open(ft_path("g"), O_RDONLY);
	ft_val("read 100", read(fd, buf, 100));
	ro = open(ft_path("g"), O_WRONLY | O_TRUNC);
	ft_ok("open g O_TRUNC (second fd)", ro);
	ft_val("read on the first fd after O_TRUNC", read(fd, buf, 100));
	ft_val("write 3 on the second", write(ro, "new", 3));
	ft_val("pread on the first at 0", pread(fd, buf, 100, 0));
	close(ro);
	close(fd);
	return 0;
}
