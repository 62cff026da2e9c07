/* What librettod's supervision of netd and fsd has in common (srv.h). */
#include "librettod/srv.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/kv.h"
#include "libretto/ctl.h"

uint64_t srv_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void srv_timer_set_ms(int tfd, unsigned ms)
{
	/* A zero it_value disarms a timerfd: "now" is one nanosecond. */
	struct itimerspec its = {
		.it_value = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L + 1 },
	};

	timerfd_settime(tfd, 0, &its, NULL);
}

int srv_find(const char *name, char *path, size_t plen, char *why, size_t wlen)
{
	char envname[32], self[PATH_MAX - 64], cand[2][PATH_MAX];
	const char *env;
	ssize_t n;
	char *slash;

	snprintf(envname, sizeof(envname), "LIBRETTO_%s", name);
	for (char *p = envname; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	env = getenv(envname);
	if (env && *env) {
		if (access(env, X_OK) == 0) {
			snprintf(path, plen, "%s", env);
			return 0;
		}
		snprintf(why, wlen, "%s=%.300s is not an executable (%s)", envname, env, strerror(errno));
		return -ENOENT;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		snprintf(why, wlen, "cannot find librettod's own path (/proc/self/exe: %s); set %s",
			 strerror(errno), envname);
		return -ENOENT;
	}
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (slash)
		*slash = '\0';
	snprintf(cand[0], sizeof(cand[0]), "%s/libretto-%s", self, name);
	snprintf(cand[1], sizeof(cand[1]), "%s/../%s/libretto-%s", self, name, name);
	for (int i = 0; i < 2; i++)
		if (access(cand[i], X_OK) == 0) {
			snprintf(path, plen, "%s", cand[i]);
			return 0;
		}
	snprintf(why, wlen, "libretto-%s not found (looked for %.160s and %.160s; set %s)", name,
		 cand[0], cand[1], envname);
	return -ENOENT;
}

bool srv_is_pong(const char *reply)
{
	return !strncmp(reply, "pong=", 5) || strstr(reply, "\npong=") != NULL;
}

int srv_request(int ctl, char *buf, size_t cap, unsigned *stale, bool *ping_owed,
		unsigned timeout_ms, const char *text, const int *fds, int nfds)
{
	uint64_t deadline = srv_mono_ms() + timeout_ms;
	const char *e;
	int n, err;

	if (ctl < 0)
		return -ENOTCONN;
	err = ctl_send(ctl, text, strlen(text), fds, nfds);
	if (err)
		return err;
	for (;;) {
		struct pollfd p = { .fd = ctl, .events = POLLIN };
		int got[CTL_MAX_FDS], ngot = CTL_MAX_FDS;
		uint64_t now = srv_mono_ms();

		if (now >= deadline) {
			(*stale)++;
			return -ETIMEDOUT;
		}
		n = poll(&p, 1, (int)(deadline - now));
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0)
			continue;
		n = ctl_recv(ctl, buf, cap, got, &ngot);
		/* The servers send no descriptors; never keep any they might. */
		for (int i = 0; n >= 0 && i < ngot; i++)
			close(got[i]);
		if (n == -EAGAIN)
			continue;
		if (n < 0)
			return n;
		if (n == 0)
			return -EPIPE;
		if (ping_owed && *ping_owed && srv_is_pong(buf)) {
			*ping_owed = false;
			continue;
		}
		if (*stale) {
			(*stale)--;
			continue;
		}
		e = strstr(buf, "errno=");
		if (!e || (e != buf && e[-1] != '\n'))
			return -EPROTO;
		return atoi(e + 6);
	}
}

const char *srv_reply_error(const char *buf)
{
	static char word[80];
	const char *e = strstr(buf, "error=");
	size_t len;

	if (!e)
		return "no reason given";
	e += 6;
	len = strcspn(e, "\n");
	if (len >= sizeof(word))
		len = sizeof(word) - 1;
	memcpy(word, e, len);
	word[len] = '\0';
	return word;
}

void srv_format_status(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exit %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "status 0x%x", (unsigned)st);
}

unsigned srv_backoff_ms(unsigned quick, unsigned quick_max, unsigned base_ms, unsigned max_ms)
{
	unsigned d = base_ms;

	if (quick < quick_max)
		return 0;
	for (unsigned i = quick_max; i < quick && d < max_ms; i++)
		d *= 2;
	return d < max_ms ? d : max_ms;
}

pid_t srv_fork_ctl(int sp[2], char *reason, size_t rlen)
{
	pid_t pid;
	int err;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		err = -errno;
		snprintf(reason, rlen, "socketpair: %s", strerror(-err));
		return err;
	}
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(sp[0]);
		close(sp[1]);
		snprintf(reason, rlen, "fork: %s", strerror(-err));
		return err;
	}
	if (pid == 0)
		return 0;
	close(sp[1]);
	fcntl(sp[0], F_SETFL, fcntl(sp[0], F_GETFL) | O_NONBLOCK);
	return pid;
}

void srv_child_reset(void)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
}

int srv_kill_reap(pid_t pid)
{
	int st = 0;

	if (pid > 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	return st;
}
