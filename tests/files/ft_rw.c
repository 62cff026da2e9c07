/* File behaviour: read/write/pread/pwrite/readv/writev, lseek (SEEK_END beyond EOF, SEEK_DATA/SEEK_HOLE on a sparse file). */
#include "ft.h"

#include <sys/uio.h>

int main(int argc, char **argv)
{
	static uint8_t big[300000], back[300000];
	char a[8], b[16], c[32];
	struct iovec iov[3];
	uint8_t buf[4096];
	struct stat st;
	off_t o;
	int fd;

	ft_init(argc, argv, 60);

	fd = open(ft_path("f"), O_RDWR | O_CREAT | O_EXCL, 0644);
	ft_ok("open f", fd);
	ft_val("read empty", read(fd, buf, sizeof(buf)));
	ft_val("write 0 bytes", write(fd, buf, 0));
	ft_pattern(big, sizeof(big), 0, 5);
	ft_val("write 300000", write(fd, big, sizeof(big)));
	ft_val("lseek SEEK_CUR", lseek(fd, 0, SEEK_CUR));
	ft_val("read at EOF", read(fd, buf, sizeof(buf)));
	ft_val("lseek 0 SEEK_SET", lseek(fd, 0, SEEK_SET));
	ft_val("read 300000 (may be short)", read(fd, back, sizeof(back)) > 0);
	ft_val("pread 300000 at 0", pread(fd, back, sizeof(back), 0));
	ft_say("content equal: %s", ft_yn(!memcmp(big, back, sizeof(big))));
	ft_val("pread 4096 at 299000 (short)", pread(fd, buf, 4096, 299000));
	ft_say("tail equal: %s", ft_yn(!memcmp(buf, big + 299000, 1000)));
	ft_val("pread beyond EOF", pread(fd, buf, 10, 400000));
	ft_val("pread negative offset", pread(fd, buf, 10, -1));
	ft_val("pwrite negative offset", pwrite(fd, buf, 10, -1));
	ft_val("lseek SEEK_CUR after preads (unchanged)", lseek(fd, 0, SEEK_CUR));

	/* Unaligned overwrite across a block boundary, checked by pread. */
	ft_val("pwrite 10 at 4090", pwrite(fd, "0123456789", 10, 4090));
	memcpy(big + 4090, "0123456789", 10);
	ft_val("pread 8192 at 0", pread(fd, back, 8192, 0));
	ft_say("overwrite visible: %s", ft_yn(!memcmp(big, back, 8192)));
	ft_val("lseek SEEK_END", lseek(fd, 0, SEEK_END));
	ft_val("lseek -10 SEEK_END", lseek(fd, -10, SEEK_END));
	ft_val("lseek -1 SEEK_SET", lseek(fd, -1, SEEK_SET));
	ft_val("lseek whence 99", lseek(fd, 0, 99));
	ft_val("lseek 1000 past EOF SEEK_END", lseek(fd, 1000, SEEK_END));
	ft_val("write 1 past EOF", write(fd, "E", 1));
	ft_ok("fstat", fstat(fd, &st));
	ft_say("size after write past EOF: %lld", (long long)st.st_size);
	ft_val("pread the gap (zeros)", pread(fd, buf, 1000, 300000));
	{
		int zero = 1;
		for (int i = 0; i < 1000; i++)
			zero &= buf[i] == 0;
		ft_say("gap reads as zeros: %s", ft_yn(zero));
	}
	close(fd);

	/* readv/writev with several buffers, one empty. */
	fd = open(ft_path("v"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	iov[0] = (struct iovec){ .iov_base = "first-", .iov_len = 6 };
	iov[1] = (struct iovec){ .iov_base = "", .iov_len = 0 };
	iov[2] = (struct iovec){ .iov_base = "second-third!", .iov_len = 13 };
	ft_val("writev 3 iovecs", writev(fd, iov, 3));
	ft_val("pwritev at 2", pwritev(fd, iov, 1, 2));
	ft_val("lseek 0", lseek(fd, 0, SEEK_SET));
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	memset(c, 0, sizeof(c));
	iov[0] = (struct iovec){ .iov_base = a, .iov_len = 4 };
	iov[1] = (struct iovec){ .iov_base = b, .iov_len = 8 };
	iov[2] = (struct iovec){ .iov_base = c, .iov_len = 20 };
	ft_val("readv 4+8+20", readv(fd, iov, 3));
	ft_say("readv parts: \"%s\" \"%s\" \"%s\"", a, b, c);
	memset(a, 0, sizeof(a));
	iov[0] = (struct iovec){ .iov_base = a, .iov_len = 5 };
	ft_val("preadv 5 at 10", preadv(fd, iov, 1, 10));
	ft_say("preadv: \"%s\"", a);
	ft_val("writev 0 iovecs", writev(fd, iov, 0));
	{
		/* Through a volatile so the compiler lets the invalid count reach the call. */
		volatile int bad = -1;
		ft_val("writev -1 iovecs", writev(fd, iov, bad));
	}
	close(fd);

	/* Bad descriptors. */
	ft_val("read closed fd", read(fd, buf, 1));
	ft_val("write closed fd", write(fd, buf, 1));
	ft_val("lseek closed fd", lseek(fd, 0, SEEK_SET));

	/* A sparse file: data at [0, 4096) and [1 MiB, 1 MiB + 4096), holes around. */
	fd = open(ft_path("sparse"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	ft_pattern(buf, 4096, 0, 6);
	ft_val("pwrite 4096 at 0", pwrite(fd, buf, 4096, 0));
	ft_val("pwrite 4096 at 1 MiB", pwrite(fd, buf, 4096, 1 << 20));
	ft_ok("ftruncate 2 MiB", ftruncate(fd, 2 << 20));
	ft_val("SEEK_DATA 0", lseek(fd, 0, SEEK_DATA));
	ft_val("SEEK_HOLE 0", lseek(fd, 0, SEEK_HOLE));
	ft_val("SEEK_DATA 4096", lseek(fd, 4096, SEEK_DATA));
	ft_val("SEEK_HOLE 1 MiB", lseek(fd, 1 << 20, SEEK_HOLE));
	ft_val("SEEK_DATA 1 MiB + 8192 (no data after)", lseek(fd, (1 << 20) + 8192, SEEK_DATA));
	ft_val("SEEK_HOLE 1 MiB + 8192", lseek(fd, (1 << 20) + 8192, SEEK_HOLE));
	ft_val("SEEK_DATA at EOF", lseek(fd, 2 << 20, SEEK_DATA));
	ft_val("SEEK_HOLE at EOF", lseek(fd, 2 << 20, SEEK_HOLE));
	ft_val("SEEK_DATA -1", lseek(fd, -1, SEEK_DATA));
	ft_ok("fstat sparse", fstat(fd, &st));
	ft_say("sparse: size=%lld allocated less than size: %s", (long long)st.st_size,
	       ft_yn((long long)st.st_blocks * 512 < st.st_size));
	o = lseek(fd, 0, SEEK_SET);
	(void)o;
	ft_show_fd("sparse content", fd);
	close(fd);
	return 0;
}
