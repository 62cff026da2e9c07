/* File behaviour: a large sparse file, pwrite and pread beyond 4 GiB (5 GiB), sizes, seeks and truncation there. */
#include "ft.h"

#define GiB (1024LL * 1024 * 1024)

int main(int argc, char **argv)
{
	uint8_t buf[65536], back[65536];
	struct stat st;
	int fd;

	ft_init(argc, argv, 120);

	fd = open(ft_path("big"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	ft_ok("open big", fd);
	ft_pattern(buf, sizeof(buf), 0, 7);
	ft_val("pwrite 64 KiB at 5 GiB", pwrite(fd, buf, sizeof(buf), 5 * GiB));
	ft_val("pwrite 100 at 4 GiB - 50 (straddles 4 GiB)", pwrite(fd, buf, 100, 4 * GiB - 50));
	ft_ok("fstat", fstat(fd, &st));
	ft_say("size: %lld", (long long)st.st_size);
	ft_say("sparse (allocated < 1 MiB): %s", ft_yn((long long)st.st_blocks * 512 < (1 << 20)));
	ft_val("pread 64 KiB at 5 GiB", pread(fd, back, sizeof(back), 5 * GiB));
	ft_say("5 GiB content equal: %s", ft_yn(!memcmp(buf, back, sizeof(buf))));
	ft_val("pread 100 at 4 GiB - 50", pread(fd, back, 100, 4 * GiB - 50));
	ft_say("4 GiB content equal: %s", ft_yn(!memcmp(buf, back, 100)));
	ft_val("pread 10 at 4 GiB + 50 (a hole)", pread(fd, back, 10, 4 * GiB + 50));
	ft_say("hole is zeros: %s", ft_yn(!back[0] && !back[9]));
	ft_val("lseek SEEK_END", lseek(fd, 0, SEEK_END));
	{
		/* Data starts at the block or page holding 4 GiB - 50. */
		off_t d = lseek(fd, 1 * GiB, SEEK_DATA);
		ft_val("SEEK_DATA from 1 GiB", d < 0 ? d : d / 4096 * 4096);
	}
	ft_val("lseek 5 GiB SEEK_SET", lseek(fd, 5 * GiB, SEEK_SET));
	ft_val("read 16 there", read(fd, back, 16));
	ft_val("lseek SEEK_CUR", lseek(fd, 0, SEEK_CUR));
	ft_val("write 5 at offset 5 GiB + 16", write(fd, "tail!", 5));
	ft_val("pread 5 back", pread(fd, back, 5, 5 * GiB + 16));
	ft_say("content: %.5s", (char *)back);
	ft_ok("ftruncate to 4 GiB + 10", ftruncate(fd, 4 * GiB + 10));
	ft_ok("fstat", fstat(fd, &st));
	ft_say("size after shrink: %lld", (long long)st.st_size);
	ft_val("pread at 5 GiB after shrink", pread(fd, back, 10, 5 * GiB));
	ft_val("pread 100 at 4 GiB - 50 after shrink", pread(fd, back, 100, 4 * GiB - 50));
	ft_say("kept part equal: %s", ft_yn(!memcmp(buf, back, 60)));
	ft_ok("fsync", fsync(fd));
	close(fd);
	ft_show_stat("stat big", ft_path("big"), 0);
	ft_ok("truncate big to 6 GiB by path", truncate(ft_path("big"), 6 * GiB));
	ft_show_stat("stat big", ft_path("big"), 0);
	ft_ok("unlink big", unlink(ft_path("big")));
	return 0;
}
