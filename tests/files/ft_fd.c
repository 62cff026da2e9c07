/* File behaviour: dup/dup2/dup3/F_DUPFD share offsets and flags, F_GETFL/F_SETFL/F_GETFD, O_APPEND from two descriptors, fsync/fdatasync, EBADF. */
#include "ft.h"

static const char *acc(int fl)
{
	switch (fl & O_ACCMODE) {
	case O_RDONLY: return "O_RDONLY";
	case O_WRONLY: return "O_WRONLY";
	case O_RDWR: return "O_RDWR";
	}
	return "?";
}

static void show_fl(const char *step, int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		ft_say("%s: -1 %s", step, ft_errname(errno));
	else
		ft_say("%s: %s%s%s", step, acc(fl), fl & O_APPEND ? "|O_APPEND" : "",
		       fl & O_NONBLOCK ? "|O_NONBLOCK" : "");
}

int main(int argc, char **argv)
{
	char buf[64];
	int fd, d1, d2, a, b;

	ft_init(argc, argv, 60);

	ft_make_file(ft_path("f"), 100, 1);
	fd = open(ft_path("f"), O_RDWR);
	show_fl("F_GETFL O_RDWR", fd);
	ft_val("F_GETFD", fcntl(fd, F_GETFD));
	d1 = dup(fd);
	ft_ok("dup", d1);
	ft_say("dup is a new number: %s", ft_yn(d1 != fd));
	ft_val("read 10 on fd", read(fd, buf, 10));
	ft_val("offset on the dup (shared)", lseek(d1, 0, SEEK_CUR));
	ft_val("lseek 50 on the dup", lseek(d1, 50, SEEK_SET));
	ft_val("offset on fd", lseek(fd, 0, SEEK_CUR));
	ft_ok("F_SETFL O_APPEND on the dup", fcntl(d1, F_SETFL, O_APPEND));
	show_fl("F_GETFL on fd (shared status flags)", fd);
	ft_val("write 2 on fd (appends)", write(fd, "AB", 2));
	ft_val("offset", lseek(fd, 0, SEEK_CUR));
	ft_ok("F_SETFL 0", fcntl(fd, F_SETFL, 0));
	show_fl("F_GETFL on the dup", d1);
	ft_ok("F_SETFL O_RDONLY (access mode ignored)", fcntl(fd, F_SETFL, O_RDONLY));
	show_fl("F_GETFL", fd);
	ft_ok("F_SETFD FD_CLOEXEC on the dup", fcntl(d1, F_SETFD, FD_CLOEXEC));
	ft_val("F_GETFD on the dup", fcntl(d1, F_GETFD));
	ft_val("F_GETFD on fd (per descriptor)", fcntl(fd, F_GETFD));
	d2 = fcntl(fd, F_DUPFD, 100);
	ft_say("F_DUPFD 100: at least 100: %s", ft_yn(d2 >= 100));
	ft_val("F_GETFD of F_DUPFD", fcntl(d2, F_GETFD));
	close(d2);
	d2 = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	ft_val("F_GETFD of F_DUPFD_CLOEXEC", fcntl(d2, F_GETFD));
	close(d2);
	ft_val("dup2 fd -> 200", dup2(fd, 200));
	ft_val("offset on 200", lseek(200, 0, SEEK_CUR));
	ft_val("dup2 onto itself", dup2(fd, fd) == fd);
	ft_val("dup3 fd -> 201 O_CLOEXEC", dup3(fd, 201, O_CLOEXEC));
	ft_val("F_GETFD 201", fcntl(201, F_GETFD));
	ft_val("dup3 onto itself", dup3(fd, fd, 0));
	ft_ok("close 200", close(200));
	ft_ok("close 200 again", close(200));
	ft_val("read 200", read(200, buf, 1));
	ft_ok("close 201", close(201));
	ft_ok("close the dup", close(d1));
	ft_val("read on fd after the dup's close", pread(fd, buf, 2, 0));
	ft_val("F_GETFL closed", fcntl(d1, F_GETFL));
	ft_val("dup closed", dup(d1));
	close(fd);
	ft_show_file("f", ft_path("f"));

	/* Two O_APPEND descriptors (two open file descriptions) interleave whole writes at the end. */
	a = open(ft_path("log"), O_WRONLY | O_CREAT | O_APPEND, 0644);
	b = open(ft_path("log"), O_WRONLY | O_APPEND);
	for (int i = 0; i < 50; i++) {
		char line[32];
		int n = snprintf(line, sizeof(line), "%c%02d\n", i % 2 ? 'b' : 'a', i);

		if (write(i % 2 ? b : a, line, (size_t)n) != n)
			ft_say("append %d failed: %s", i, ft_errname(errno));
	}
	ft_val("offset of a", lseek(a, 0, SEEK_CUR));
	ft_val("offset of b", lseek(b, 0, SEEK_CUR));
	close(a);
	close(b);
	ft_show_file("log", ft_path("log"));
	/* One appending and one positional writer. */
	a = open(ft_path("log"), O_WRONLY | O_APPEND);
	b = open(ft_path("log"), O_WRONLY);
	ft_val("write 4 at 0 without O_APPEND", write(b, "HEAD", 4));
	ft_val("write 4 with O_APPEND", write(a, "TAIL", 4));
	ft_val("pwrite 2 at 0 with O_APPEND (Linux appends)", pwrite(a, "PW", 2, 0));
	close(a);
	close(b);
	ft_show_file("log", ft_path("log"));

	/* fsync and fdatasync on every kind of descriptor. */
	fd = open(ft_path("f"), O_RDWR);
	ft_ok("fsync rw", fsync(fd));
	ft_ok("fdatasync rw", fdatasync(fd));
	close(fd);
	fd = open(ft_path("f"), O_RDONLY);
	ft_ok("fsync read-only", fsync(fd));
	close(fd);
	fd = open(ft_dir, O_RDONLY | O_DIRECTORY);
	ft_ok("fsync dir", fsync(fd));
	ft_ok("fdatasync dir", fdatasync(fd));
	close(fd);
	ft_ok("fsync closed", fsync(fd));
	return 0;
}
