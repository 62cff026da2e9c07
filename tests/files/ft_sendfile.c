/* File behaviour: sendfile from a file to a kernel pipe and socketpair (with and without an offset pointer), to a file, and its errors. */
#include "ft.h"

#include <sys/sendfile.h>
#include <sys/socket.h>

#define SIZE (300000)

/* Send the whole file in chunks, reading each chunk out of the other end so the pipe never fills. */
static void send_all(const char *step, int in, int out, int drain, int use_offset)
{
	static uint8_t buf[65536];
	uint64_t h = FT_FNV_INIT;
	long long total = 0, calls = 0;
	off_t off = 0;

	for (;;) {
		ssize_t s = sendfile(out, in, use_offset ? &off : NULL, 16384);

		if (s < 0) {
			ft_say("%s: sendfile -1 %s after %lld", step, ft_errname(errno), total);
			return;
		}
		if (s == 0)
			break;
		calls++;
		total += s;
		for (ssize_t got = 0; got < s;) {
			ssize_t r = read(drain, buf, (size_t)(s - got));
			if (r <= 0) {
				ft_say("%s: read of the other end failed", step);
				return;
			}
			h = ft_fnv(h, buf, (size_t)r);
			got += r;
		}
	}
	ft_say("%s: sent=%lld fnv=%016llx offset=%lld file offset=%lld", step, total,
	       (unsigned long long)h, use_offset ? (long long)off : -1LL, (long long)lseek(in, 0, SEEK_CUR));
}

int main(int argc, char **argv)
{
	int p[2], sp[2], fd, out;
	off_t off;

	ft_init(argc, argv, 60);
	ft_make_file(ft_path("f"), SIZE, 1);
	ft_show_file("f", ft_path("f"));

	if (pipe(p) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0)
		return 2;
	fd = open(ft_path("f"), O_RDONLY);
	send_all("to a pipe, file offset", fd, p[1], p[0], 0);
	ft_val("sendfile at EOF", sendfile(p[1], fd, NULL, 100));
	lseek(fd, 1000, SEEK_SET);
	send_all("to a pipe, offset pointer", fd, p[1], p[0], 1);
	send_all("to a socketpair, offset pointer", fd, sp[0], sp[1], 1);
	lseek(fd, 0, SEEK_SET);
	send_all("to a socketpair, file offset", fd, sp[0], sp[1], 0);
	off = SIZE - 10;
	ft_val("sendfile 100 from 10 before EOF", sendfile(p[1], fd, &off, 100));
	ft_val("offset after", off);
	off = SIZE + 10;
	ft_val("sendfile from beyond EOF", sendfile(p[1], fd, &off, 100));
	off = -1;
	ft_val("sendfile negative offset", sendfile(p[1], fd, &off, 100));
	ft_val("sendfile count 0", sendfile(p[1], fd, NULL, 0));
	close(fd);

	fd = open(ft_path("f"), O_WRONLY);
	ft_val("sendfile from an O_WRONLY fd", sendfile(p[1], fd, NULL, 100));
	close(fd);
	ft_val("sendfile from a closed fd", sendfile(p[1], fd, NULL, 100));

	/* To another file (Linux allows any out_fd since 2.6.33). */
	fd = open(ft_path("f"), O_RDONLY);
	out = open(ft_path("copy"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	{
		long long total = 0;
		ssize_t s;
		while ((s = sendfile(out, fd, NULL, 65536)) > 0)
			total += s;
		ft_say("to a file: sent=%lld last=%zd%s%s", total, s, s < 0 ? " " : "",
		       s < 0 ? ft_errname(errno) : "");
	}
	close(out);
	close(fd);
	ft_show_file("copy", ft_path("copy"));
	return 0;
}
