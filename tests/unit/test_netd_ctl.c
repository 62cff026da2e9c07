/* Unit test: libretto-netd's control protocol, without a NIC (no root needed). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/kv.h"
#include "common/porttab.h"

#include "check.h"

static char reply[65536];

/* Start netd on a socketpair; *ctl is our end.  extra_arg replaces the fd. */
static pid_t start(const char *netd, int *ctl, const char *fd_arg)
{
	int sp[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		exit(99);
	pid = fork();
	if (pid == 0) {
		if (sp[1] == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(sp[1], 3) < 0)
			_exit(127);
		execl(netd, "libretto-netd", "--control-fd", fd_arg ? fd_arg : "3", (char *)NULL);
		_exit(127);
	}
	close(sp[1]);
	*ctl = sp[0];
	return pid;
}

/* As start(), with --stats-json json_path. */
static pid_t start_args(const char *netd, int *ctl, const char *json_path)
{
	int sp[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		exit(99);
	pid = fork();
	if (pid == 0) {
		if (sp[1] == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(sp[1], 3) < 0)
			_exit(127);
		execl(netd, "libretto-netd", "--control-fd", "3", "--stats-json", json_path,
		      (char *)NULL);
		_exit(127);
	}
	close(sp[1]);
	*ctl = sp[0];
	return pid;
}

/* One request; the reply's errno value, or -1 if netd did not answer. */
static int req(int ctl, const char *text, const int *fds, int nfds)
{
	const char *e;

	if (ctl_send(ctl, text, strlen(text), fds, nfds) < 0)
		return -1;
	if (ctl_recv(ctl, reply, sizeof(reply), NULL, NULL) <= 0)
		return -1;
	e = strstr(reply, "errno=");
	return e ? atoi(e + 6) : -1;
}

/* Exit status of pid within ~3 s, or -1. */
static int reap(pid_t pid)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	int st, i;

	for (i = 0; i < 60; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* The "Seccomp:" line of /proc/PID/status: 0 off, 2 filtered; -1 unknown. */
static int seccomp_mode(pid_t pid)
{
	char path[64], line[256];
	int mode = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Seccomp:", 8))
			mode = atoi(line + 8);
	fclose(f);
	return mode;
}

/* The "CapEff:" line of /proc/PID/status as a number; -1 unknown. */
static long long cap_eff(pid_t pid)
{
	char path[64], line[256];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "CapEff:", 7))
			v = strtoll(line + 7, NULL, 16);
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	size_t pt_size = porttab_size(64);
	int ctl, pfd[2], pt_fd, fds[3];
	char c;
	void *m;
	pid_t pid;

	if (argc != 2) {
		fprintf(stderr, "usage: test_netd_ctl PATH-TO-libretto-netd\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	pid = start(argv[1], &ctl, NULL);
	CHECK(req(ctl, "stats\n", NULL, 0) == 0);
	CHECK(seccomp_mode(pid) == 2); /* the filter is on once netd answers */
	CHECK(cap_eff(pid) == 0);	/* and no capability is left */
	CHECK(strstr(reply, "apps=0\n") != NULL);
	CHECK(strstr(reply, "rx_frames=0\n") != NULL);
	CHECK(req(ctl, "bogus\n", NULL, 0) == EINVAL);
	CHECK(strstr(reply, "error=unknown_command\n") != NULL);
	CHECK(req(ctl, "ip\naddr=not-an-ip\n", NULL, 0) == EINVAL);
	CHECK(req(ctl, "ip\naddr=10.42.0.2\n", NULL, 0) == 0);
	CHECK(req(ctl, "ip\naddr=10.42.0.2\n", NULL, 0) == 0); /* idempotent */

	/* A failed request closes what came with it: the pipe's only other
	 * write end was netd's, so our read end sees EOF. */
	if (pipe(pfd) < 0)
		return 99;
	fds[0] = pfd[1];
	fds[1] = memfd_create("umem", MFD_CLOEXEC);
	if (fds[1] < 0 || ftruncate(fds[1], 8388608) < 0)
		return 99;
	CHECK(req(ctl, "nic\nifname=pf0\nmac=02:4c:00:00:01:00\numem_size=8388608\n"
		  "frame_size=2048\nring_size=2048\n", fds, 2) == ENOTSOCK);
	CHECK(strstr(reply, "error=not_an_xsk") != NULL);
	close(pfd[1]);
	close(fds[1]);
	CHECK(read(pfd[0], &c, 1) == 0);
	close(pfd[0]);
	CHECK(req(ctl, "nic\nifname=pf0\n", NULL, 0) == EINVAL);

	/* app_add needs a NIC first. */
	fds[0] = fds[1] = fds[2] = 0;
	CHECK(req(ctl, "app_add\nid=1\nips=10.42.0.2\n", fds, 3) == ENODEV);
	CHECK(req(ctl, "app_del\nid=1\n", NULL, 0) == ENOENT);

	/* The port table: once, read-only, formatted. */
	pt_fd = memfd_create("pt", MFD_CLOEXEC);
	if (pt_fd < 0 || ftruncate(pt_fd, (off_t)pt_size) < 0)
		return 99;
	{
		char text[64];

		snprintf(text, sizeof(text), "porttab\nsize=%zu\n", pt_size);
		CHECK(req(ctl, text, &pt_fd, 1) == EPROTO); /* not formatted */
	}
	m = mmap(NULL, pt_size, PROT_READ | PROT_WRITE, MAP_SHARED, pt_fd, 0);
	CHECK(m != MAP_FAILED && porttab_init(m, pt_size) == 0);
	CHECK(req(ctl, "porttab\nsize=99999999\n", &pt_fd, 1) == EINVAL); /* beyond the memfd */
	{
		char text[64];

		snprintf(text, sizeof(text), "porttab\nsize=%zu\n", pt_size);
		CHECK(req(ctl, text, &pt_fd, 1) == 0);
		CHECK(req(ctl, text, &pt_fd, 1) == EEXIST);
	}

	CHECK(req(ctl, "quit\n", NULL, 0) == 0);
	CHECK(reap(pid) == 0);
	close(ctl);

	/* EOF on the control socket: netd exits 0 too. */
	pid = start(argv[1], &ctl, NULL);
	close(ctl);
	CHECK(reap(pid) == 0);

	/* --stats-json: the file holds the counters after a stats request. */
	{
		char path[] = "/tmp/test_netd_ctl.XXXXXX", buf[4096];
		int tfd = mkstemp(path);
		ssize_t k;

		CHECK(tfd >= 0);
		pid = start_args(argv[1], &ctl, path);
		CHECK(req(ctl, "ip\naddr=10.42.0.2\n", NULL, 0) == 0);
		CHECK(req(ctl, "stats\n", NULL, 0) == 0);
		k = pread(tfd, buf, sizeof(buf) - 1, 0);
		buf[k > 0 ? k : 0] = 0;
		CHECK(strncmp(buf, "{\"rx_frames\":0,", 15) == 0);
		CHECK(strstr(buf, "\"apps\":[]}\n") != NULL);
		CHECK(req(ctl, "quit\n", NULL, 0) == 0);
		CHECK(reap(pid) == 0);
		close(ctl);
		close(tfd);
		unlink(path);
	}

	/* A control fd that is not a SOCK_SEQPACKET socket: usage error. */
	pid = start(argv[1], &ctl, "0");
	CHECK(reap(pid) == 2);
	close(ctl);

	if (failures)
		fprintf(stderr, "test_netd_ctl: %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
