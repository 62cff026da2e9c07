/* librettod's supervision of libretto-netd: the PF's AF_XDP socket, the port
 * table, starting, watching, restarting and stopping the network server. */
#include "librettod/librettod.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#include <xdp/xsk.h>

#include "common/kv.h"
#include "common/porttab.h"
#include "libretto/ctl.h"
#include "libretto/netd.h"
#include "librettod/pool.h"

/*
 * Timing.  A request to netd is answered at once by a healthy netd (it
 * handles its control socket in its loop, which never blocks for long), so a
 * reply slower than NETD_REQ_TIMEOUT_MS means something is badly wrong.
 * A netd that dies within NETD_QUICK_MS of its start counts as a quick
 * death; after NETD_QUICK_MAX of them in a row the next start waits
 * NETD_BACKOFF_MS instead of following at once, so a netd that cannot run
 * does not make librettod spin.  At shutdown netd gets NETD_QUIT_WAIT_MS to
 * exit after `quit` before it is killed.
 */
#define NETD_REQ_TIMEOUT_MS 2000
#define NETD_QUICK_MS 5000
#define NETD_QUICK_MAX 5
#define NETD_BACKOFF_MS 1000
/* The kernel may still hold the PF's queue a moment after the old XSK went. */
#define NETD_RETRY_MS 20
#define NETD_BUSY_TRIES 50
#define NETD_QUIT_WAIT_MS 2000
/* Port table slots: far more than NETD_MAX_APPS applications need today. */
#define NETD_PORTTAB_SLOTS 4096

enum netd_state { NETD_STOPPED, NETD_RUNNING, NETD_RESTARTING };

static const char *const netd_state_names[] = {
	[NETD_STOPPED] = "stopped",
	[NETD_RUNNING] = "running",
	[NETD_RESTARTING] = "restarting",
};

/* Tags of the supervisor's own epoll set (netd_sup_fd()). */
enum { TAG_PIDFD = 1, TAG_TIMER = 2 };

static struct {
	const struct ld_config *cfg;
	bool inited;
	enum netd_state state;
	char path[PATH_MAX];     /* the netd binary, "" when none was found */
	int epfd;                /* pidfd + timer, watched by server.c as one fd */
	int timer_fd;            /* armed while a (re)start is due */
	/* The running netd. */
	pid_t pid;
	int pidfd;
	int ctl;                 /* our end of its control socketpair */
	unsigned stale;          /* replies still owed to requests that timed out */
	uint64_t started_ms;
	/* What stays with librettod across netd's deaths. */
	struct ld_dev dev;       /* the PF's XSK and UMEM (recreated per start) */
	bool dev_open;
	int pt_fd;
	void *pt_mem;
	size_t pt_size;
	struct porttab pt;
	/* History, for status and the log. */
	unsigned restarts;       /* netd processes started after the first */
	unsigned quick_deaths;   /* in a row */
	unsigned busy_tries;     /* EBUSY retries of the current start */
	bool ever_started;
	char last_exit[64];      /* "-" until netd has died once */
	char reason[400];        /* why netd is not running, "" when it is */
	char buf[NETD_MSG_MAX];
} N = { .epfd = -1, .timer_fd = -1, .pidfd = -1, .ctl = -1, .pt_fd = -1 };

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void timer_set_ms(unsigned ms)
{
	/* A zero it_value disarms a timerfd: "now" is one nanosecond. */
	struct itimerspec its = {
		.it_value = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L + 1 },
	};

	timerfd_settime(N.timer_fd, 0, &its, NULL);
}

static void timer_off(void)
{
	struct itimerspec its = { 0 };

	timerfd_settime(N.timer_fd, 0, &its, NULL);
}

/*
 * The netd binary: $LIBRETTO_NETD, else libretto-netd next to librettod's
 * own executable (installed), else ../netd/libretto-netd from it (the build
 * tree).  Returns 0, or -ENOENT with what was tried in N.reason.
 */
static int netd_find(void)
{
	const char *env = getenv("LIBRETTO_NETD");
	char self[PATH_MAX - 64], cand[2][PATH_MAX];
	ssize_t n;
	char *slash;

	if (env && *env) {
		if (access(env, X_OK) == 0) {
			snprintf(N.path, sizeof(N.path), "%s", env);
			return 0;
		}
		snprintf(N.reason, sizeof(N.reason), "LIBRETTO_NETD=%.300s is not an executable (%s)",
			 env, strerror(errno));
		return -ENOENT;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		snprintf(N.reason, sizeof(N.reason), "cannot find librettod's own path "
			 "(/proc/self/exe: %s); set LIBRETTO_NETD", strerror(errno));
		return -ENOENT;
	}
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (slash)
		*slash = '\0';
	snprintf(cand[0], sizeof(cand[0]), "%s/libretto-netd", self);
	snprintf(cand[1], sizeof(cand[1]), "%s/../netd/libretto-netd", self);
	for (int i = 0; i < 2; i++)
		if (access(cand[i], X_OK) == 0) {
			snprintf(N.path, sizeof(N.path), "%s", cand[i]);
			return 0;
		}
	snprintf(N.reason, sizeof(N.reason), "libretto-netd not found (looked for %.160s and %.160s; "
		 "set LIBRETTO_NETD)", cand[0], cand[1]);
	return -ENOENT;
}

/* The port table: a sealed memfd librettod writes and netd maps read-only. */
static int porttab_setup(void)
{
	int fd, err;

	N.pt_size = porttab_size(NETD_PORTTAB_SLOTS);
	fd = memfd_create("libretto-porttab", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)N.pt_size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	N.pt_mem = mmap(NULL, N.pt_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (N.pt_mem == MAP_FAILED) {
		err = -errno;
		N.pt_mem = NULL;
		close(fd);
		return err;
	}
	err = porttab_init(N.pt_mem, N.pt_size);
	if (!err)
		err = porttab_attach(&N.pt, N.pt_mem, N.pt_size);
	if (err) {
		munmap(N.pt_mem, N.pt_size);
		N.pt_mem = NULL;
		close(fd);
		return err;
	}
	N.pt_fd = fd;
	return 0;
}

/*
 * One request to netd and its reply in N.buf.  Returns the reply's errno
 * value (0 success, positive failure, with "error=" in N.buf), or -errno
 * when netd did not answer (then the channel is out of step: the reply, if
 * it ever comes, is discarded by the next call).
 */
static int netd_request(const char *text, const int *fds, int nfds)
{
	uint64_t deadline = mono_ms() + NETD_REQ_TIMEOUT_MS;
	const char *e;
	int n, err;

	if (N.ctl < 0)
		return -ENOTCONN;
	err = ctl_send(N.ctl, text, strlen(text), fds, nfds);
	if (err)
		return err;
	for (;;) {
		struct pollfd p = { .fd = N.ctl, .events = POLLIN };
		uint64_t now = mono_ms();
		int got_fds[CTL_MAX_FDS], ngot = CTL_MAX_FDS;

		if (now >= deadline) {
			N.stale++;
			return -ETIMEDOUT;
		}
		n = poll(&p, 1, (int)(deadline - now));
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0)
			continue;
		n = ctl_recv(N.ctl, N.buf, sizeof(N.buf), got_fds, &ngot);
		/* netd sends no descriptors; never keep any it might. */
		for (int i = 0; n >= 0 && i < ngot; i++)
			close(got_fds[i]);
		if (n == -EAGAIN)
			continue;
		if (n < 0)
			return n;
		if (n == 0)
			return -EPIPE;
		if (N.stale) {
			N.stale--;
			continue;
		}
		e = strstr(N.buf, "errno=");
		if (!e || (e != N.buf && e[-1] != '\n'))
			return -EPROTO;
		return atoi(e + 6);
	}
}

/* The error= word of the last reply, for messages. */
static const char *reply_error(void)
{
	static char word[80];
	const char *e = strstr(N.buf, "error=");
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

static void format_status(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exit %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "status 0x%x", (unsigned)st);
}

/* Forget the process (already reaped or never started). */
static void netd_forget(void)
{
	if (N.pidfd >= 0) {
		epoll_ctl(N.epfd, EPOLL_CTL_DEL, N.pidfd, NULL);
		close(N.pidfd);
	}
	N.pidfd = -1;
	if (N.ctl >= 0)
		close(N.ctl);
	N.ctl = -1;
	N.stale = 0;
	N.pid = 0;
}

/* Kill and reap a netd we gave up on (set-up failed).  Bounded: SIGKILL. */
static void netd_kill_reap(int *status)
{
	int st = 0;

	if (N.pid > 0) {
		kill(N.pid, SIGKILL);
		while (waitpid(N.pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	if (status)
		*status = st;
	netd_forget();
}

/* The child side of the fork: only the control socket, as fd 3. */
static void netd_child(int sock) __attribute__((noreturn));

static void netd_child(int sock)
{
	char *const argv[] = { "libretto-netd", "--control-fd", "3", NULL };
	sigset_t none;

	/* librettod blocks SIGTERM/SIGINT for its signalfd; netd must not inherit that. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	if (sock == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(sock, 3) < 0)
		_exit(127);
	/* Nothing else of librettod's (VF sockets, leases) may leak into netd. */
	syscall(SYS_close_range, 4u, ~0u, 0u);
	execv(N.path, argv);
	_exit(127);
}

/*
 * Open the PF's XSK, start netd and hand it the NIC, the port table and the
 * shared IP.  Returns 0 (netd running) or -errno with the cause in N.reason;
 * on failure no netd process is left.
 */
static int netd_try_start(void)
{
	const struct ld_config *cfg = N.cfg;
	char text[512], ipbuf[16], mac[24];
	struct ld_dev_err de;
	int sp[2], fds[2], rofd, err;
	pid_t pid;

	if (!N.dev_open) {
		memset(&de, 0, sizeof(de));
		err = dev_open_afxdp(&N.dev, cfg->nic, &de);
		if (err) {
			snprintf(N.reason, sizeof(N.reason), "AF_XDP on %s: %.360s", cfg->nic, de.msg);
			return err;
		}
		N.dev_open = true;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		err = -errno;
		snprintf(N.reason, sizeof(N.reason), "socketpair: %s", strerror(-err));
		return err;
	}
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(sp[0]);
		close(sp[1]);
		snprintf(N.reason, sizeof(N.reason), "fork: %s", strerror(-err));
		return err;
	}
	if (pid == 0)
		netd_child(sp[1]);
	close(sp[1]);
	N.pid = pid;
	N.ctl = sp[0];
	N.stale = 0;
	N.started_ms = mono_ms();
	fcntl(N.ctl, F_SETFL, fcntl(N.ctl, F_GETFL) | O_NONBLOCK);
	N.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (N.pidfd < 0) {
		err = -errno;
		snprintf(N.reason, sizeof(N.reason), "pidfd_open(%d): %s", (int)pid, strerror(-err));
		netd_kill_reap(NULL);
		return err;
	}
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_PIDFD };

		if (epoll_ctl(N.epfd, EPOLL_CTL_ADD, N.pidfd, &ev) < 0) {
			err = -errno;
			snprintf(N.reason, sizeof(N.reason), "epoll_ctl: %s", strerror(-err));
			netd_kill_reap(NULL);
			return err;
		}
	}

	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", N.dev.mac[0], N.dev.mac[1],
		 N.dev.mac[2], N.dev.mac[3], N.dev.mac[4], N.dev.mac[5]);
	snprintf(text, sizeof(text), "nic\nifname=%s\nmac=%s\numem_size=%zu\nframe_size=%d\n"
		 "ring_size=%d\n", N.dev.ifname, mac, (size_t)LD_UMEM_SIZE, LD_FRAME_SIZE,
		 LD_RING_SIZE);
	fds[0] = xsk_socket__fd(N.dev.xsk);
	fds[1] = N.dev.umem_fd;
	err = netd_request(text, fds, 2);
	if (err) {
		snprintf(N.reason, sizeof(N.reason), "netd refused the NIC %s: %s", cfg->nic,
			 err > 0 ? reply_error() : strerror(-err));
		goto fail;
	}
	/*
	 * A read-only descriptor of the table: netd could not map it writable
	 * even if it tried.  Fall back to ours (netd maps it read-only anyway).
	 */
	snprintf(text, sizeof(text), "/proc/self/fd/%d", N.pt_fd);
	rofd = open(text, O_RDONLY | O_CLOEXEC);
	snprintf(text, sizeof(text), "porttab\nsize=%zu\n", N.pt_size);
	fds[0] = rofd >= 0 ? rofd : N.pt_fd;
	err = netd_request(text, fds, 1);
	if (rofd >= 0)
		close(rofd);
	if (err) {
		snprintf(N.reason, sizeof(N.reason), "netd refused the port table: %s",
			 err > 0 ? reply_error() : strerror(-err));
		goto fail;
	}
	snprintf(text, sizeof(text), "ip\naddr=%s\n", ip_fmt(cfg->shared_ip, ipbuf));
	err = netd_request(text, NULL, 0);
	if (err) {
		snprintf(N.reason, sizeof(N.reason), "netd refused the shared IP %s: %s", ipbuf,
			 err > 0 ? reply_error() : strerror(-err));
		goto fail;
	}
	N.reason[0] = '\0';
	N.state = NETD_RUNNING;
	if (N.ever_started)
		N.restarts++;
	N.ever_started = true;
	ld_log("netd started: pid=%d nic=%s mac=%s shared_ip=%s restarts=%u", (int)N.pid,
	       cfg->nic, mac, ipbuf, N.restarts);
	ind_netd_up();             /* tag p: the indirect leases, after nic/porttab/ip */
	return 0;
fail:
	{
		int st;
		char how[64];

		netd_kill_reap(&st);
		format_status(st, how, sizeof(how));
		/* exec failed in the child: say so rather than "connection reset". */
		if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
			snprintf(N.reason, sizeof(N.reason), "cannot execute %.300s (exit 127)", N.path);
		} else if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
			/* It ended by itself before we killed it: its status says more. */
			size_t l = strlen(N.reason);

			snprintf(N.reason + l, sizeof(N.reason) - l, " (netd %s)", how);
		}
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
			snprintf(N.last_exit, sizeof(N.last_exit), "%s", how);
		/* The rings were touched: a new netd needs a fresh XSK. */
		dev_close(&N.dev);
		N.dev_open = false;
		return err > 0 ? -err : err;
	}
}

/* A start attempt from the timer: on failure, try again later. */
static void netd_attempt(void)
{
	unsigned delay;
	int err;

	if (N.state != NETD_RESTARTING)
		return;
	err = netd_try_start();
	if (!err) {
		N.busy_tries = 0;
		return;
	}
	/*
	 * The PF's queue is often still held for a moment after the old XSK
	 * went (the kernel releases it from deferred work): retry quickly for
	 * about a second before counting it as a failure.
	 */
	if (err == -EBUSY && N.busy_tries < NETD_BUSY_TRIES) {
		N.busy_tries++;
		timer_set_ms(NETD_RETRY_MS);
		return;
	}
	N.busy_tries = 0;
	N.quick_deaths++;
	delay = N.quick_deaths >= NETD_QUICK_MAX ? NETD_BACKOFF_MS : NETD_RETRY_MS;
	/* A netd that cannot start at all logs once a minute, not every second. */
	if (N.quick_deaths <= NETD_QUICK_MAX || N.quick_deaths % 60 == 0)
		ld_log("netd start failed (%u in a row): %s; next try in %u ms", N.quick_deaths,
		       N.reason, delay);
	timer_set_ms(delay);
}

/* netd's process ended: record why and schedule the next one. */
static void netd_died(void)
{
	uint64_t lived = mono_ms() - N.started_ms;
	int st = 0;
	pid_t pid = N.pid, r;
	unsigned delay;

	r = waitpid(pid, &st, WNOHANG);
	if (r == 0)
		return;       /* not yet (a spurious wakeup): wait for the next one */
	format_status(r == pid ? st : 0, N.last_exit, sizeof(N.last_exit));
	if (r < 0)
		snprintf(N.last_exit, sizeof(N.last_exit), "unknown (%s)", strerror(errno));
	netd_forget();
	/*
	 * netd took over the rings of this XSK; a new netd refuses rings that
	 * were used (netd.h "nic"), so the next start gets a fresh XSK and
	 * UMEM.  Frames in flight are lost, as on a NIC reset; TCP resends.
	 */
	dev_close(&N.dev);
	N.dev_open = false;
	ind_netd_down();           /* tag p: the regions say netd is gone */
	N.quick_deaths = lived < NETD_QUICK_MS ? N.quick_deaths + 1 : 0;
	delay = N.quick_deaths >= NETD_QUICK_MAX ? NETD_BACKOFF_MS : 0;
	N.state = NETD_RESTARTING;
	snprintf(N.reason, sizeof(N.reason), "netd pid %d ended (%s) after %llu ms; restarting",
		 (int)pid, N.last_exit, (unsigned long long)lived);
	ld_log("netd pid=%d ended: %s after %llu ms (%u quick in a row); restarting in %u ms",
	       (int)pid, N.last_exit, (unsigned long long)lived, N.quick_deaths, delay);
	timer_set_ms(delay);
}

int netd_sup_start(const struct ld_config *cfg)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int err;

	N.cfg = cfg;
	N.inited = true;
	N.state = NETD_STOPPED;
	snprintf(N.last_exit, sizeof(N.last_exit), "-");
	dev_init(&N.dev);
	N.epfd = epoll_create1(EPOLL_CLOEXEC);
	N.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (N.epfd < 0 || N.timer_fd < 0) {
		err = -errno;
		snprintf(N.reason, sizeof(N.reason), "cannot create the supervision's event "
			 "descriptors: %s", strerror(-err));
		goto out;
	}
	ev.data.u32 = TAG_TIMER;
	if (epoll_ctl(N.epfd, EPOLL_CTL_ADD, N.timer_fd, &ev) < 0) {
		err = -errno;
		snprintf(N.reason, sizeof(N.reason), "epoll_ctl: %s", strerror(-err));
		goto out;
	}
	err = porttab_setup();
	if (err) {
		snprintf(N.reason, sizeof(N.reason), "cannot create the port table: %s",
			 strerror(-err));
		goto out;
	}
	err = netd_find();
	if (err)
		goto out;
	err = netd_try_start();
	if (err) {
		/* Perhaps transient (a previous daemon's XSK still going away): retry. */
		ld_log("netd start failed: %s; retrying", N.reason);
		N.state = NETD_RESTARTING;
		N.quick_deaths = 1;
		timer_set_ms(NETD_RETRY_MS);
		return err;
	}
	return 0;
out:
	ld_log("netd is not running: %s; direct mode (VF leases) works without it", N.reason);
	return err;
}

int netd_sup_fd(void)
{
	return N.epfd;
}

void netd_sup_on_event(void)
{
	struct epoll_event evs[4];
	int n = epoll_wait(N.epfd, evs, 4, 0);

	for (int i = 0; i < n; i++) {
		if (evs[i].data.u32 == TAG_PIDFD && N.pidfd >= 0) {
			netd_died();
		} else if (evs[i].data.u32 == TAG_TIMER) {
			uint64_t ticks;

			if (read(N.timer_fd, &ticks, sizeof(ticks)) == sizeof(ticks))
				netd_attempt();
		}
	}
}

void netd_sup_status(struct kv_buf *b)
{
	char why[sizeof(N.reason)];

	kv_buf_add(b, '\n', "netd", "%s", netd_state_names[N.state]);
	kv_buf_add(b, '\n', "netd_pid", "%d", N.state == NETD_RUNNING ? (int)N.pid : 0);
	kv_buf_add(b, '\n', "netd_restarts", "%u", N.restarts);
	kv_buf_add(b, '\n', "netd_last_exit", "%s", N.last_exit);
	if (N.state != NETD_RUNNING && N.reason[0]) {
		snprintf(why, sizeof(why), "%s", N.reason);
		for (char *p = why; *p; p++)
			if (*p == '\n')
				*p = ' ';
		kv_buf_add(b, '\n', "netd_error", "%s", why);
	}
}

int netd_sup_stats(char *out, size_t cap, char *err, size_t errlen)
{
	struct kv_buf b;
	int e;

	if (N.state != NETD_RUNNING) {
		snprintf(err, errlen, "netd is %s%s%s", netd_state_names[N.state],
			 N.reason[0] ? ": " : "", N.reason);
		return -ESRCH;
	}
	e = netd_request("stats\n", NULL, 0);
	if (e == -ETIMEDOUT) {
		/*
		 * netd reads its control socket on every turn of its loop; one
		 * that has not answered for 2 s is hung, and a hung netd is
		 * worse than a restarted one.  Its death goes the usual way.
		 */
		ld_log("netd pid=%d did not answer stats within %d ms: killing it (it will be "
		       "restarted)", (int)N.pid, NETD_REQ_TIMEOUT_MS);
		kill(N.pid, SIGKILL);
	}
	if (e) {
		snprintf(err, errlen, "netd (pid %d) did not answer `stats`: %s", (int)N.pid,
			 e > 0 ? reply_error() : strerror(-e));
		return e > 0 ? -e : e;
	}
	kv_buf_init(&b, out, cap);
	kv_buf_add(&b, '\n', "netd_pid", "%d", (int)N.pid);
	kv_buf_add(&b, '\n', "netd_restarts", "%u", N.restarts);
	kv_buf_raw(&b, N.buf);
	if (!kv_buf_ok(&b)) {
		snprintf(err, errlen, "netd's stats do not fit in one reply");
		return -EMSGSIZE;
	}
	return (int)b.len;
}

/* ---- begin: indirect mode's needs (tag p) ---- */
bool netd_sup_running(char *why, size_t len)
{
	if (N.state == NETD_RUNNING && N.ctl >= 0)
		return true;
	snprintf(why, len, "netd is %s%s%.300s", netd_state_names[N.state],
		 N.reason[0] ? ": " : "", N.reason);
	return false;
}

int netd_sup_request(const char *text, const int *fds, int nfds, char *err, size_t errlen)
{
	int e;

	if (N.state != NETD_RUNNING || N.ctl < 0) {
		netd_sup_running(err, errlen);
		return -ENETDOWN;
	}
	e = netd_request(text, fds, nfds);
	if (e == 0)
		return 0;
	snprintf(err, errlen, "%s", e > 0 ? reply_error() : strerror(-e));
	return e > 0 ? -e : e;
}

void netd_sup_mac(uint8_t mac[6])
{
	memcpy(mac, N.dev.mac, 6);
}
/* ---- end: indirect mode's needs ---- */

struct porttab *netd_sup_porttab(void)
{
	return N.pt_mem ? &N.pt : NULL;
}

void netd_sup_stop(void)
{
	uint64_t deadline;
	int st = 0, err;

	if (!N.inited)
		return;
	N.inited = false;
	if (N.timer_fd >= 0)
		timer_off();
	if (N.pid > 0) {
		pid_t pid = N.pid;

		err = netd_request("quit\n", NULL, 0);
		if (err)
			ld_log("netd pid=%d did not acknowledge quit: %s", (int)pid,
			       err > 0 ? reply_error() : strerror(-err));
		/* Closing our end is a second way to say it: netd exits on EOF. */
		if (N.ctl >= 0)
			close(N.ctl);
		N.ctl = -1;
		deadline = mono_ms() + NETD_QUIT_WAIT_MS;
		for (;;) {
			struct pollfd p = { .fd = N.pidfd, .events = POLLIN };
			uint64_t now = mono_ms();

			if (N.pidfd < 0 || now >= deadline)
				break;
			if (poll(&p, 1, (int)(deadline - now)) == 1)
				break;
		}
		if (waitpid(pid, &st, WNOHANG) == pid) {
			format_status(st, N.last_exit, sizeof(N.last_exit));
			ld_log("netd pid=%d stopped: %s", (int)pid, N.last_exit);
		} else {
			ld_log("netd pid=%d did not exit within %d ms of quit: killing it", (int)pid,
			       NETD_QUIT_WAIT_MS);
			netd_kill_reap(&st);
		}
		netd_forget();
	}
	N.state = NETD_STOPPED;
	if (N.dev_open)
		dev_close(&N.dev);
	N.dev_open = false;
	if (N.pt_mem)
		munmap(N.pt_mem, N.pt_size);
	N.pt_mem = NULL;
	if (N.pt_fd >= 0)
		close(N.pt_fd);
	N.pt_fd = -1;
	if (N.timer_fd >= 0)
		close(N.timer_fd);
	N.timer_fd = -1;
	if (N.epfd >= 0)
		close(N.epfd);
	N.epfd = -1;
}
