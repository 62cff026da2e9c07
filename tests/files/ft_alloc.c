/* File behaviour: posix_fallocate/fallocate (KEEP_SIZE, PUNCH_HOLE), copy_file_range, statvfs's invariant fields, creat and umask. */
#include "ft.h"

#include <linux/falloc.h>
#include <sys/statvfs.h>

int main(int argc, char **argv)
{
	uint8_t buf[8192];
	struct statvfs sv;
	struct stat st;
	loff_t in_off, out_off;
	int fd, out, zero;

	ft_init(argc, argv, 60);

	fd = open(ft_path("f"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	ft_val("posix_fallocate 0+100000 (returns the error)", -posix_fallocate(fd, 0, 100000));
	fstat(fd, &st);
	ft_say("size=%lld allocated covers it: %s", (long long)st.st_size,
	       ft_yn((long long)st.st_blocks * 512 >= 100000));
	ft_val("pread 10 at 50000 (allocated, reads zeros)", pread(fd, buf, 10, 50000));
	ft_say("zeros: %s", ft_yn(!buf[0] && !buf[9]));
	ft_ok("fallocate KEEP_SIZE 0+200000", fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 200000));
	fstat(fd, &st);
	ft_say("size after KEEP_SIZE: %lld", (long long)st.st_size);
	ft_pattern(buf, sizeof(buf), 0, 9);
	for (int i = 0; i < 10; i++)
		pwrite(fd, buf, sizeof(buf), (off_t)i * 8192);
	ft_ok("fallocate PUNCH_HOLE|KEEP_SIZE 8192+16384", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 16384));
	ft_val("pread 8192 at 8192", pread(fd, buf, 8192, 8192));
	zero = 1;
	for (int i = 0; i < 8192; i++)
		zero &= buf[i] == 0;
	ft_say("punched range reads zeros: %s", ft_yn(zero));
	ft_val("pread 8192 at 24576 (after the hole)", pread(fd, buf, 8192, 24576));
	{
		uint8_t want[8192];
		ft_pattern(want, sizeof(want), 0, 9);
		ft_say("data after the hole intact: %s", ft_yn(!memcmp(buf, want, sizeof(want))));
	}
	ft_val("SEEK_HOLE from 0", lseek(fd, 0, SEEK_HOLE));
	ft_ok("fallocate PUNCH_HOLE without KEEP_SIZE", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096));
	ft_ok("fallocate negative length", fallocate(fd, 0, 0, -1));
	fstat(fd, &st);
	ft_say("size: %lld", (long long)st.st_size);
	lseek(fd, 0, SEEK_SET);
	ft_show_fd("f", fd);

	/* copy_file_range between two files, with explicit offsets and with the file offsets. */
	out = open(ft_path("g"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	in_off = 1000;
	out_off = 10;
	ft_val("copy_file_range 50000 from 1000 to 10", copy_file_range(fd, &in_off, out, &out_off, 50000, 0));
	ft_say("offsets after: in=%lld out=%lld", (long long)in_off, (long long)out_off);
	lseek(fd, 70000, SEEK_SET);
	ft_val("copy_file_range with the file offsets", copy_file_range(fd, NULL, out, NULL, 100000, 0));
	ft_val("file offset of the source", lseek(fd, 0, SEEK_CUR));
	ft_val("file offset of the destination", lseek(out, 0, SEEK_CUR));
	ft_val("copy_file_range bad flags", copy_file_range(fd, NULL, out, NULL, 1, 1));
	lseek(out, 0, SEEK_SET);
	ft_show_fd("g", out);
	close(out);
	close(fd);

	/* statvfs: only what every file system agrees on. */
	ft_ok("statvfs dir", statvfs(ft_dir, &sv));
	ft_say("statvfs: bsize power of two: %s free <= total: %s avail <= free: %s namemax=%lu",
	       ft_yn(sv.f_bsize && !(sv.f_bsize & (sv.f_bsize - 1))), ft_yn(sv.f_bfree <= sv.f_blocks),
	       ft_yn(sv.f_bavail <= sv.f_bfree), (unsigned long)sv.f_namemax);
	fd = open(ft_dir, O_RDONLY | O_DIRECTORY);
	ft_ok("fstatvfs dir fd", fstatvfs(fd, &sv));
	close(fd);
	ft_ok("statvfs missing", statvfs(ft_path("missing"), &sv));

	/* creat and the umask. */
	umask(077);
	fd = creat(ft_path("c"), 0666);
	ft_ok("creat with umask 077", fd);
	ft_val("write on creat's fd", write(fd, "c", 1));
	ft_val("read on creat's fd (write-only)", read(fd, buf, 1));
	close(fd);
	ft_show_stat("stat c", ft_path("c"), 0);
	ft_ok("mkdir with umask 077", mkdir(ft_path("cd"), 0777));
	ft_show_stat("stat cd", ft_path("cd"), 0);
	umask(022);
	/* No mkfifo: volumes hold no FIFOs, sockets or device nodes (EPERM,
	 * docs/storage.md "Limitations"), where tmpfs has them. */
	return 0;
}
