/* librettod's supervision of libretto-netd: the PF's AF_XDP socket, the port
 * table, starting, watching, restarting and stopping the network server. */
#include "librettod/librettod.h"
#include "librettod/srv.h"

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
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
 * death (it is dying at start-up); a death after a longer run is followed by
 * a new netd at once.  After NETD_QUICK_MAX quick deaths in a row the next
 * start waits NETD_BACKOFF_MS, doubling with each further one up to
 * NETD_BACKOFF_MAX_MS, so a netd that cannot run does not make librettod
 * spin.  At shutdown netd gets NETD_QUIT_WAIT_MS to
 * exit after `quit` before it is killed.
 */
#define NETD_REQ_TIMEOUT_MS 2000
#define NETD_QUICK_MS 1000
#define NETD_QUICK_MAX 3
#define NETD_BACKOFF_MS 100
#define NETD_BACKOFF_MAX_MS 10000
/*
 * Hang detection: the heartbeat in the NIC state region (netd.h) is checked
 * every NETD_HB_CHECK_MS; netd beats at least every NETD_HEARTBEAT_MS even
 * when idle, so NETD_HB_HUNG_MS without a beat means hung, not asleep.
 */
#define NETD_HB_CHECK_MS 250
#define NETD_HB_HUNG_MS 1000
/* After this many quick deaths in a row the rings are not adopted any more:
 * the next netd gets a fresh XSK and UMEM (in case the state is to blame). */
#define NETD_FRESH_AFTER NETD_QUICK_MAX
/* The kernel may still hold the PF's queue a moment after the old XSK went. */
#define NETD_RETRY_MS 20
#define NETD_BUSY_TRIES 50
#define NETD_QUIT_WAIT_MS 2000
/* Port table slots (3/4 usable): every application on a dedicated IP
 * claims each ephemeral port of its connections too (mode switching), so a
 * few busy clients need thousands.  32 bytes a slot: 2 MiB. */
#define NETD_PORTTAB_SLOTS 65536

enum netd_state { NETD_STOPPED, NETD_RUNNING, NETD_RESTARTING };

static const char *const netd_state_names[] = {
	[NETD_STOPPED] = "stopped",
	[NETD_RUNNING] = "running",
	[NETD_RESTARTING] = "restarting",
};

/* Tags of the supervisor's own epoll set (netd_sup_fd()). */
enum { TAG_PIDFD = 1, TAG_TIMER = 2, TAG_HB = 3 };

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
	/* The NIC state (netd.h struct netd_shared): frame owners, heartbeat. */
	int sh_fd;
	struct netd_shared *sh;
	size_t sh_len;
	bool fresh_next;         /* the next start gets a fresh XSK and state */
	bool handover_next;      /* the next start follows a clean handover */
	/* Hang detection. */
	int hb_fd;
	uint64_t hb_last, hb_moved_ms;
	char kill_reason[160];   /* why librettod killed netd, "" if it did not */
	/* History, for status and the log. */
	uint64_t down_ms;        /* when the current outage began, 0: none */
	unsigned upgrades;       /* live upgrades and requested restarts */
	char last_event[200];    /* the last restart or upgrade and its reason */
	long last_gap_ms;        /* its outage: death seen (or handover) to running */
	/* Counters of netds that handed over (their final `handover` reply). */
	uint64_t prev_rx_frames, prev_rx_delivered, prev_rx_handled, prev_rx_dropped;
	unsigned restarts;       /* netd processes started after the first */
	unsigned quick_deaths;   /* in a row */
	unsigned busy_tries;     /* EBUSY retries of the current start */
	bool ever_started;
	char last_exit[64];      /* "-" until netd has died once */
	char reason[400];        /* why netd is not running, "" when it is */
	char buf[NETD_MSG_MAX];
} N = { .epfd = -1, .timer_fd = -1, .pidfd = -1, .ctl = -1, .pt_fd = -1, .sh_fd = -1, .hb_fd = -1,
	.last_gap_ms = -1 };

static void timer_off(void)
{
	struct itimerspec its = { 0 };

	timerfd_settime(N.timer_fd, 0, &its, NULL);
}

/* The port table: a sealed memfd librettod writes and netd maps read-only. */
static int porttab_setup(void)
{
	void *mem;
	int fd, err;

	N.pt_size = porttab_size(NETD_PORTTAB_SLOTS);
	err = ld_sealed_map("libretto-porttab", N.pt_size, &fd, &mem);
	if (err)
		return err;
	N.pt_mem = mem;
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

/* The NIC state region: a memfd librettod keeps across netds (netd.h). */
static int state_setup(void)
{
	void *mem;
	int fd, err;

	N.sh_len = netd_shared_size(LD_UMEM_FRAMES);
	err = ld_sealed_map("libretto-netd-state", N.sh_len, &fd, &mem);
	if (err)
		return err;
	N.sh = mem;
	N.sh_fd = fd;
	return 0;
}

/* A fresh XSK needs a fresh state: no frame owner recorded, no magic. */
static void state_reset(void)
{
	if (N.sh)
		memset(N.sh, 0, N.sh_len);
}

static uint64_t state_heartbeat(void)
{
	return N.sh ? __atomic_load_n(&N.sh->heartbeat, __ATOMIC_RELAXED) : 0;
}

/*
 * One request to netd and its reply in N.buf.  Returns the reply's errno
 * value (0 success, positive failure, with "error=" in N.buf), or -errno
 * when netd did not answer (then the channel is out of step: the reply, if
 * it ever comes, is discarded by the next call).
 */
static int netd_request(const char *text, const int *fds, int nfds)
{
	return srv_request(N.ctl, N.buf, sizeof(N.buf), &N.stale, NULL, NETD_REQ_TIMEOUT_MS,
			   text, fds, nfds);
}

/* The value of "key=" in the last reply (up to the end of its line). */
static void kv_reply_word(const char *key, char *out, size_t cap)
{
	char pat[40];
	const char *e;
	size_t len;

	snprintf(pat, sizeof(pat), "%s=", key);
	for (e = strstr(N.buf, pat); e && e != N.buf && e[-1] != '\n'; e = strstr(e + 1, pat))
		;
	if (!e)
		return;
	e += strlen(pat);
	len = strcspn(e, "\n");
	if (len >= cap)
		len = cap - 1;
	memcpy(out, e, len);
	out[len] = '\0';
}

/* A counter of the last reply, 0 when absent. */
static uint64_t reply_u64(const char *key)
{
	char v[32] = "0";

	kv_reply_word(key, v, sizeof(v));
	return strtoull(v, NULL, 10);
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
	int st = srv_kill_reap(N.pid);

	if (status)
		*status = st;
	netd_forget();
}

/* The child side of the fork: only the control socket, as fd 3. */
static void netd_child(int sock, int sup) __attribute__((noreturn));

static void netd_child(int sock, int sup)
{
	char *const argv[] = { "libretto-netd", "--control-fd", "3", NULL };
	int a, b;

	/* librettod blocks SIGTERM/SIGINT for its signalfd; netd must not inherit that. */
	srv_child_reset();
	/*
	 * fd 3: netd's end.  fd NETD_SUP_FD: a copy of the supervisor's end,
	 * which netd never uses: it keeps netd's control socket open when
	 * librettod dies, so netd serves on (no EOF), and a new librettod takes
	 * the channel back from it with pidfd_getfd() (supervisor restart).
	 * Both are moved out of the way first, so neither dup2 clobbers the other.
	 */
	a = fcntl(sock, F_DUPFD, 16);
	b = fcntl(sup, F_DUPFD, 16);
	if (a < 0 || b < 0 || dup2(a, 3) < 0 || dup2(b, NETD_SUP_FD) < 0)
		_exit(127);
	/* Nothing else of librettod's (VF sockets, leases) may leak into netd. */
	syscall(SYS_close_range, (unsigned)NETD_SUP_FD + 1, ~0u, 0u);
	execv(N.path, argv);
	_exit(127);
}

/*
 * Fork and exec netd with its end of a new control socketpair; N.pid,
 * N.ctl and N.pidfd describe it afterwards.  0 or -errno with N.reason.
 */
static int netd_spawn(void)
{
	int sp[2], err;
	pid_t pid;

	pid = srv_fork_ctl(sp, N.reason, sizeof(N.reason));
	if (pid < 0)
		return (int)pid;
	if (pid == 0)
		netd_child(sp[1], sp[0]);
	N.pid = pid;
	N.ctl = sp[0];
	N.stale = 0;
	N.started_ms = srv_mono_ms();
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
	return 0;
}

/*
 * Open the PF's XSK, start netd and hand it the NIC, the port table and the
 * shared IP.  Returns 0 (netd running) or -errno with the cause in N.reason;
 * on failure no netd process is left.
 */
static int netd_try_start(void)
{
	const struct ld_config *cfg = N.cfg;
	char text[512], ipbuf[16], mac[24], adopted[8] = "0", reclaimed[24] = "0";
	struct ld_dev_err de;
	int fds[3], rofd, err;
	bool handover = N.handover_next;
	uint64_t nic_ms = 0;

	N.handover_next = false;
	if (N.fresh_next && N.dev_open) {
		dev_close(&N.dev);
		N.dev_open = false;
	}
	N.fresh_next = false;
	if (!N.dev_open) {
		memset(&de, 0, sizeof(de));
		err = dev_open_afxdp(&N.dev, cfg->nic, &de);
		if (err) {
			snprintf(N.reason, sizeof(N.reason), "AF_XDP on %s: %.360s", cfg->nic, de.msg);
			return err;
		}
		N.dev_open = true;
		/* New rings: no frame has an owner yet. */
		state_reset();
	}
	/* A live upgrade starts the process first (netd_spawn()), outside the gap. */
	if (N.pid <= 0) {
		err = netd_spawn();
		if (err)
			return err;
	}

	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", N.dev.mac[0], N.dev.mac[1],
		 N.dev.mac[2], N.dev.mac[3], N.dev.mac[4], N.dev.mac[5]);
	/*
	 * The same XSK, UMEM and state for every netd: a new one adopts the
	 * rings where its predecessor left them (netd.h "nic"), so the PF's
	 * queue is never unbound and frames arriving meanwhile wait on its
	 * rx ring instead of being dropped.
	 */
	snprintf(text, sizeof(text), "nic\nifname=%s\nmac=%s\numem_size=%zu\nframe_size=%d\n"
		 "ring_size=%d\nhold=1\n%s", N.dev.ifname, mac, (size_t)LD_UMEM_SIZE, LD_FRAME_SIZE,
		 LD_RING_SIZE, handover ? "handover=1\n" : "");
	fds[0] = dev_xsk_fd(&N.dev);
	fds[1] = N.dev.umem_fd;
	fds[2] = N.sh_fd;
	err = netd_request(text, fds, N.sh_fd >= 0 ? 3 : 2);
	if (err) {
		snprintf(N.reason, sizeof(N.reason), "netd refused the NIC %s: %s", cfg->nic,
			 err > 0 ? srv_reply_error(N.buf) : strerror(-err));
		/* A refusal (not a netd that died or never ran): perhaps the rings
		 * it was to adopt are to blame; the next one starts afresh. */
		if (err > 0)
			N.fresh_next = true;
		goto fail;
	}
	kv_reply_word("adopted", adopted, sizeof(adopted));
	kv_reply_word("reclaimed", reclaimed, sizeof(reclaimed));
	nic_ms = srv_mono_ms();
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
			 err > 0 ? srv_reply_error(N.buf) : strerror(-err));
		goto fail;
	}
	snprintf(text, sizeof(text), "ip\naddr=%s\n", ip_fmt(cfg->shared_ip, ipbuf));
	err = netd_request(text, NULL, 0);
	if (err) {
		snprintf(N.reason, sizeof(N.reason), "netd refused the shared IP %s: %s", ipbuf,
			 err > 0 ? srv_reply_error(N.buf) : strerror(-err));
		goto fail;
	}
	N.reason[0] = '\0';
	N.state = NETD_RUNNING;
	if (N.ever_started && !handover)
		N.restarts++;
	N.ever_started = true;
	N.kill_reason[0] = '\0';
	N.hb_last = state_heartbeat();
	N.hb_moved_ms = srv_mono_ms();
	ld_log("netd started: pid=%d nic=%s mac=%s shared_ip=%s restarts=%u adopted=%s "
	       "reclaimed=%s (exec to NIC taken %llu ms)", (int)N.pid, cfg->nic, mac, ipbuf,
	       N.restarts, adopted, reclaimed, (unsigned long long)(nic_ms - N.started_ms));
	ind_netd_up();             /* tag p: the indirect leases, after nic/porttab/ip */
	/*
	 * Only now may netd touch the rings (it was started with hold=1):
	 * earlier, a frame for an application not yet added would be answered
	 * as if its port had no owner (a RST for a SYN).
	 */
	err = netd_request("start\n", NULL, 0);
	if (err) {
		ld_log("netd pid=%d did not start moving frames: %s; killing it", (int)N.pid,
		       err > 0 ? srv_reply_error(N.buf) : strerror(-err));
		snprintf(N.kill_reason, sizeof(N.kill_reason), "refused start");
		kill(N.pid, SIGKILL);
	}
	if (N.down_ms) {
		N.last_gap_ms = (long)(srv_mono_ms() - N.down_ms);
		N.down_ms = 0;
		ld_log("netd pid=%d serves again %ld ms after the outage began (%s)", (int)N.pid,
		       N.last_gap_ms, N.last_event);
	}
	return 0;
fail:
	{
		int st;
		char how[64];

		netd_kill_reap(&st);
		srv_format_status(st, how, sizeof(how));
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
		/* The rings stay: the next netd adopts them (unless fresh_next). */
		return err > 0 ? -err : err;
	}
}

/*
 * The delay before the next start after `quick` quick deaths (or failed
 * starts) in a row: none for the first ones, so a netd that ran well and
 * crashed once is back at once; then exponential, capped, so a netd that
 * cannot run does not make librettod spin.
 */
static unsigned backoff_ms(unsigned quick)
{
	return srv_backoff_ms(quick, NETD_QUICK_MAX, NETD_BACKOFF_MS, NETD_BACKOFF_MAX_MS);
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
		srv_timer_set_ms(N.timer_fd, NETD_RETRY_MS);
		return;
	}
	N.busy_tries = 0;
	N.quick_deaths++;
	if (N.quick_deaths >= NETD_FRESH_AFTER)
		N.fresh_next = true;
	delay = backoff_ms(N.quick_deaths);
	if (delay < NETD_RETRY_MS)
		delay = NETD_RETRY_MS;
	/* A netd that cannot start at all logs once a minute, not every second. */
	if (N.quick_deaths <= NETD_QUICK_MAX + 3 || N.quick_deaths % 60 == 0)
		ld_log("netd start failed (%u in a row): %s; next try in %u ms%s", N.quick_deaths,
		       N.reason, delay, N.quick_deaths >= NETD_QUICK_MAX ? " (exponential back-off)" :
		       "");
	srv_timer_set_ms(N.timer_fd, delay);
}

/* netd's process ended: record why and schedule the next one. */
static void netd_died(void)
{
	uint64_t now = srv_mono_ms(), lived = now - N.started_ms;
	int st = 0;
	pid_t pid = N.pid, r;
	unsigned delay;

	r = waitpid(pid, &st, WNOHANG);
	if (r == 0)
		return;       /* not yet (a spurious wakeup): wait for the next one */
	srv_format_status(r == pid ? st : 0, N.last_exit, sizeof(N.last_exit));
	if (r < 0 && errno == ECHILD)
		/* tag l: a netd adopted from an earlier librettod is not our child. */
		snprintf(N.last_exit, sizeof(N.last_exit), "unknown (adopted, not our child)");
	else if (r < 0)
		snprintf(N.last_exit, sizeof(N.last_exit), "unknown (%s)", strerror(errno));
	netd_forget();
	/*
	 * The XSK, its UMEM and the NIC state stay: the next netd adopts the
	 * rings where this one left them (frames that arrive meanwhile wait on
	 * the rx ring).  Only a netd that keeps dying at start-up gets fresh
	 * ones, in case the rings' state is what kills it.
	 */
	ind_netd_down();           /* tag p: the regions say netd is gone */
	if (!N.down_ms)
		N.down_ms = now;
	N.quick_deaths = lived < NETD_QUICK_MS ? N.quick_deaths + 1 : 0;
	if (N.quick_deaths >= NETD_FRESH_AFTER)
		N.fresh_next = true;
	delay = backoff_ms(N.quick_deaths);
	N.state = NETD_RESTARTING;
	snprintf(N.last_event, sizeof(N.last_event), "%s%.40s",
		 N.kill_reason[0] ? N.kill_reason : "crash: ", N.kill_reason[0] ? "" : N.last_exit);
	snprintf(N.reason, sizeof(N.reason), "netd pid %d ended (%s) after %llu ms; restarting",
		 (int)pid, N.last_exit, (unsigned long long)lived);
	if (delay)
		ld_log("netd pid=%d ended: %s after %llu ms; it keeps dying at start-up (%u times "
		       "in a row within %d ms): next start in %u ms (exponential back-off)%s",
		       (int)pid, N.last_exit, (unsigned long long)lived, N.quick_deaths,
		       NETD_QUICK_MS, delay, N.fresh_next ? ", with a fresh XSK" : "");
	else
		ld_log("netd pid=%d ended: %s after %llu ms (reason: %s); restarting now%s",
		       (int)pid, N.last_exit, (unsigned long long)lived, N.last_event,
		       N.fresh_next ? " with a fresh XSK" : ", adopting its rings");
	N.kill_reason[0] = '\0';
	if (delay == 0) {
		/* At once, not through the timer: every millisecond is outage. */
		netd_attempt();
		return;
	}
	srv_timer_set_ms(N.timer_fd, delay);
}

/* Every NETD_HB_CHECK_MS: a netd whose heartbeat stopped is hung: replace it. */
static void netd_hb_check(void)
{
	uint64_t now = srv_mono_ms(), hb;

	if (N.state != NETD_RUNNING || N.pid <= 0 || N.sh == NULL || N.kill_reason[0])
		return;
	hb = state_heartbeat();
	if (hb != N.hb_last) {
		N.hb_last = hb;
		N.hb_moved_ms = now;
		return;
	}
	if (now - N.hb_moved_ms < NETD_HB_HUNG_MS)
		return;
	snprintf(N.kill_reason, sizeof(N.kill_reason), "hung: no heartbeat for %llu ms",
		 (unsigned long long)(now - N.hb_moved_ms));
	ld_log("netd pid=%d is hung (its heartbeat has not moved for %llu ms, it beats every "
	       "%d ms even idle): killing it, it will be replaced", (int)N.pid,
	       (unsigned long long)(now - N.hb_moved_ms), NETD_HEARTBEAT_MS);
	/* The outage began when it stopped beating. */
	N.down_ms = N.hb_moved_ms;
	kill(N.pid, SIGKILL);
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
	err = state_setup();
	if (err) {
		snprintf(N.reason, sizeof(N.reason), "cannot create netd's state region: %s",
			 strerror(-err));
		goto out;
	}
	N.hb_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (N.hb_fd >= 0) {
		struct itimerspec its = {
			.it_value = { .tv_nsec = NETD_HB_CHECK_MS * 1000000L },
			.it_interval = { .tv_nsec = NETD_HB_CHECK_MS * 1000000L },
		};

		ev.data.u32 = TAG_HB;
		if (epoll_ctl(N.epfd, EPOLL_CTL_ADD, N.hb_fd, &ev) < 0 ||
		    timerfd_settime(N.hb_fd, 0, &its, NULL) < 0)
			ld_log("warning: no hang detection for netd: %s", strerror(errno));
	}
	err = srv_find("netd", N.path, sizeof(N.path), N.reason, sizeof(N.reason));
	if (err)
		goto out;
	err = netd_try_start();
	if (err) {
		/* Perhaps transient (a previous daemon's XSK still going away): retry. */
		ld_log("netd start failed: %s; retrying", N.reason);
		N.state = NETD_RESTARTING;
		N.quick_deaths = 1;
		srv_timer_set_ms(N.timer_fd, NETD_RETRY_MS);
		return err;
	}
	return 0;
out:
	ld_log("netd is not running: %s; direct mode (VF leases) works without it", N.reason);
	return err;
}

/* ---- begin: supervisor restart, adopting a running netd (tag l) ---- */

/* A copy of netd's descriptor fd, or -errno. */
static int adopt_getfd(int pidfd, int fd)
{
	return persist_getfd(pidfd, fd);
}

/* The socket domain of fd (AF_XDP, AF_UNIX, ...), or -1. */
static int sock_domain(int fd)
{
	int d = -1;
	socklen_t l = sizeof(d);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &d, &l) < 0)
		return -1;
	return d;
}

/* A memfd's mapping of len bytes, read-write (MAP_SHARED), or NULL. */
static void *adopt_map(int fd, size_t len)
{
	struct stat st;
	void *m;

	if (fstat(fd, &st) < 0 || (size_t)st.st_size != len)
		return NULL;
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return m == MAP_FAILED ? NULL : m;
}


/* Everything netd_sup_start() or netd_sup_adopt() set up for netds: the
 * PF's device, the port table, the state region, the event descriptors. */
static void netd_sup_free_all(void)
{
	if (N.dev_open)
		dev_close(&N.dev);
	N.dev_open = false;
	if (N.pt_mem)
		munmap(N.pt_mem, N.pt_size);
	N.pt_mem = NULL;
	if (N.pt_fd >= 0)
		close(N.pt_fd);
	N.pt_fd = -1;
	if (N.sh)
		munmap(N.sh, N.sh_len);
	N.sh = NULL;
	if (N.sh_fd >= 0)
		close(N.sh_fd);
	N.sh_fd = -1;
	if (N.epfd >= 0)
		close(N.epfd);
	if (N.timer_fd >= 0)
		close(N.timer_fd);
	if (N.hb_fd >= 0)
		close(N.hb_fd);
	N.epfd = N.timer_fd = N.hb_fd = -1;
}

/*
 * Find netd's descriptors by what they are: its memfds by their names (we
 * made them: libretto-umem, libretto-netd-state, libretto-porttab) and the
 * XSK by its socket domain.  Each is copied with pidfd_getfd(); fds[] gets
 * xsk, umem, state, porttab (-1 when not found).
 */
static int adopt_scan(pid_t pid, int pidfd, int fds[4])
{
	char dir[64], path[96], link[256];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		ssize_t n;
		int slot = -1, c;

		if (*end || fd < 0 || fd == NETD_SUP_FD || fd > INT32_MAX)
			continue;
		snprintf(path, sizeof(path), "%s/%ld", dir, fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (!strncmp(link, "/memfd:libretto-umem ", 21))
			slot = 1;
		else if (!strncmp(link, "/memfd:libretto-netd-state ", 27))
			slot = 2;
		else if (!strncmp(link, "/memfd:libretto-porttab ", 24))
			slot = 3;
		else if (!strncmp(link, "socket:", 7))
			slot = 0;
		if (slot < 0 || fds[slot] >= 0)
			continue;
		c = adopt_getfd(pidfd, (int)fd);
		if (c < 0)
			continue;
		if (slot == 0 && sock_domain(c) != AF_XDP) {
			close(c);
			continue;
		}
		fds[slot] = c;
	}
	closedir(d);
	return 0;
}

int netd_sup_adopt(const struct ld_config *cfg, pid_t pid)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int fds[4] = { -1, -1, -1, -1 }, ctl = -1, pidfd, err, rw, type = 0;
	socklen_t tl = sizeof(type);
	char path[64];

	N.cfg = cfg;
	N.inited = true;
	N.state = NETD_STOPPED;
	snprintf(N.last_exit, sizeof(N.last_exit), "-");
	dev_init(&N.dev);
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		err = -errno;
		ld_log("recover: cannot adopt netd pid=%d: pidfd_open: %s", (int)pid, strerror(-err));
		goto fail;
	}
	ctl = adopt_getfd(pidfd, NETD_SUP_FD);
	if (ctl < 0 || sock_domain(ctl) != AF_UNIX ||
	    getsockopt(ctl, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_SEQPACKET) {
		err = ctl < 0 ? ctl : -EPROTO;
		ld_log("recover: netd pid=%d holds no supervisor end as fd %d (%s): it was not "
		       "started by a restartable librettod", (int)pid, NETD_SUP_FD, strerror(-err));
		goto fail;
	}
	err = adopt_scan(pid, pidfd, fds);
	if (err || fds[0] < 0 || fds[1] < 0 || fds[2] < 0 || fds[3] < 0) {
		ld_log("recover: netd pid=%d: its descriptors were not all found (xsk=%s umem=%s "
		       "state=%s porttab=%s)", (int)pid, fds[0] >= 0 ? "yes" : "no",
		       fds[1] >= 0 ? "yes" : "no", fds[2] >= 0 ? "yes" : "no",
		       fds[3] >= 0 ? "yes" : "no");
		err = err ? err : -ENOENT;
		goto fail;
	}
	/*
	 * netd holds the table read-only; the memfd itself is writable by its
	 * owner (root), so reopening it through /proc gives librettod back a
	 * writable descriptor.
	 */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[3]);
	rw = open(path, O_RDWR | O_CLOEXEC);
	if (rw < 0) {
		err = -errno;
		ld_log("recover: cannot reopen the port table writable: %s", strerror(-err));
		goto fail;
	}
	close(fds[3]);
	fds[3] = -1;
	N.pt_fd = rw;
	N.pt_size = porttab_size(NETD_PORTTAB_SLOTS);
	N.pt_mem = adopt_map(N.pt_fd, N.pt_size);
	if (!N.pt_mem || porttab_attach(&N.pt, N.pt_mem, N.pt_size) < 0) {
		err = -EPROTO;
		ld_log("recover: netd's port table is not ours (size or header)");
		goto fail;
	}
	N.sh_len = netd_shared_size(LD_UMEM_FRAMES);
	N.sh = adopt_map(fds[2], N.sh_len);
	if (!N.sh) {
		err = -EPROTO;
		ld_log("recover: netd's state region is not ours (size)");
		goto fail;
	}
	N.sh_fd = fds[2];
	fds[2] = -1;
	err = dev_adopt(&N.dev, cfg->nic, PROTO_BACKEND_AFXDP, fds[0], fds[1]);
	fds[0] = fds[1] = -1;
	if (err) {
		ld_log("recover: %s: %s", cfg->nic, strerror(-err));
		goto fail;
	}
	N.dev_open = true;
	N.epfd = epoll_create1(EPOLL_CLOEXEC);
	N.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	N.hb_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (N.epfd < 0 || N.timer_fd < 0 || N.hb_fd < 0) {
		err = -errno;
		goto fail;
	}
	ev.data.u32 = TAG_TIMER;
	epoll_ctl(N.epfd, EPOLL_CTL_ADD, N.timer_fd, &ev);
	{
		struct itimerspec its = {
			.it_value = { .tv_nsec = NETD_HB_CHECK_MS * 1000000L },
			.it_interval = { .tv_nsec = NETD_HB_CHECK_MS * 1000000L },
		};

		ev.data.u32 = TAG_HB;
		if (epoll_ctl(N.epfd, EPOLL_CTL_ADD, N.hb_fd, &ev) < 0 ||
		    timerfd_settime(N.hb_fd, 0, &its, NULL) < 0)
			ld_log("warning: no hang detection for netd: %s", strerror(errno));
	}
	ev.data.u32 = TAG_PIDFD;
	if (epoll_ctl(N.epfd, EPOLL_CTL_ADD, pidfd, &ev) < 0) {
		err = -errno;
		goto fail;
	}
	N.pidfd = pidfd;
	pidfd = -1;
	N.pid = pid;
	N.ctl = ctl;
	ctl = -1;
	fcntl(N.ctl, F_SETFL, fcntl(N.ctl, F_GETFL) | O_NONBLOCK);
	/*
	 * The old librettod may have died between a request and its reply:
	 * whatever waits on the channel is stale.
	 */
	for (int i = 0; i < 64; i++) {
		int got[CTL_MAX_FDS], ngot = CTL_MAX_FDS, n;

		n = ctl_recv(N.ctl, N.buf, sizeof(N.buf), got, &ngot);
		if (n <= 0)
			break;
		for (int k = 0; k < ngot; k++)
			close(got[k]);
	}
	N.started_ms = srv_mono_ms();
	N.state = NETD_RUNNING;
	err = netd_request("stats\n", NULL, 0);
	if (err) {
		ld_log("recover: netd pid=%d does not answer stats: %s", (int)pid,
		       err > 0 ? srv_reply_error(N.buf) : strerror(-err));
		err = err > 0 ? -err : err;
		N.state = NETD_STOPPED;
		netd_forget();
		goto fail;
	}
	if (srv_find("netd", N.path, sizeof(N.path), N.reason, sizeof(N.reason)) < 0)
		ld_log("warning: no netd binary to restart it with: %s", N.reason);
	N.ever_started = true;
	N.reason[0] = '\0';
	N.hb_last = state_heartbeat();
	N.hb_moved_ms = srv_mono_ms();
	snprintf(N.last_event, sizeof(N.last_event), "adopted_from_a_previous_librettod");
	ld_log("recover: adopted netd pid=%d (its XSK on %s, UMEM, state region and port table "
	       "taken back; it never stopped serving)", (int)pid, cfg->nic);
	return 0;
fail:
	for (int i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (ctl >= 0)
		close(ctl);
	if (pidfd >= 0)
		close(pidfd);
	/* Leave N as netd_sup_start() expects to find it. */
	netd_sup_free_all();
	N.inited = false;
	return err < 0 ? err : -EPROTO;
}

pid_t netd_sup_pid(void)
{
	return N.state == NETD_RUNNING ? N.pid : 0;
}
/* ---- end: supervisor restart ---- */

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
		} else if (evs[i].data.u32 == TAG_HB) {
			uint64_t ticks;

			if (read(N.hb_fd, &ticks, sizeof(ticks)) == sizeof(ticks))
				netd_hb_check();
		}
	}
}

/* The restart and upgrade history, as status and stats show it. */
static void netd_sup_history(struct kv_buf *b)
{
	char ev[sizeof(N.last_event)];

	snprintf(ev, sizeof(ev), "%s", N.last_event[0] ? N.last_event : "-");
	/* Values cannot hold spaces (kv.h). */
	for (char *p = ev; *p; p++)
		if (*p == ' ' || *p == '\n')
			*p = '_';
	kv_buf_add(b, '\n', "netd_upgrades", "%u", N.upgrades);
	kv_buf_add(b, '\n', "netd_last_event", "%s", ev);
	kv_buf_add(b, '\n', "netd_last_gap_ms", "%ld", N.last_gap_ms);
}

void netd_sup_status(struct kv_buf *b)
{
	char why[sizeof(N.reason)];

	kv_buf_add(b, '\n', "netd", "%s", netd_state_names[N.state]);
	kv_buf_add(b, '\n', "netd_pid", "%d", N.state == NETD_RUNNING ? (int)N.pid : 0);
	kv_buf_add(b, '\n', "netd_restarts", "%u", N.restarts);
	kv_buf_add(b, '\n', "netd_last_exit", "%s", N.last_exit);
	netd_sup_history(b);
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
		snprintf(N.kill_reason, sizeof(N.kill_reason), "hung: no answer to stats in %d ms",
			 NETD_REQ_TIMEOUT_MS);
		kill(N.pid, SIGKILL);
	}
	if (e) {
		snprintf(err, errlen, "netd (pid %d) did not answer `stats`: %s", (int)N.pid,
			 e > 0 ? srv_reply_error(N.buf) : strerror(-e));
		return e > 0 ? -e : e;
	}
	kv_buf_init(&b, out, cap);
	kv_buf_add(&b, '\n', "netd_pid", "%d", (int)N.pid);
	kv_buf_add(&b, '\n', "netd_restarts", "%u", N.restarts);
	netd_sup_history(&b);
	kv_buf_add(&b, '\n', "prev_rx_frames", "%llu", (unsigned long long)N.prev_rx_frames);
	kv_buf_add(&b, '\n', "prev_rx_delivered", "%llu", (unsigned long long)N.prev_rx_delivered);
	kv_buf_add(&b, '\n', "prev_rx_handled", "%llu", (unsigned long long)N.prev_rx_handled);
	kv_buf_add(&b, '\n', "prev_rx_dropped", "%llu", (unsigned long long)N.prev_rx_dropped);
	kv_buf_raw(&b, N.buf);
	if (!kv_buf_ok(&b)) {
		snprintf(err, errlen, "netd's stats do not fit in one reply");
		return -EMSGSIZE;
	}
	return (int)b.len;
}

/* The running netd's process fields, to keep one aside while another is N's. */
struct netd_proc {
	pid_t pid;
	int ctl, pidfd;
	unsigned stale;
	uint64_t started_ms;
};

static void proc_swap(struct netd_proc *p)
{
	struct netd_proc t = { N.pid, N.ctl, N.pidfd, N.stale, N.started_ms };

	N.pid = p->pid;
	N.ctl = p->ctl;
	N.pidfd = p->pidfd;
	N.stale = p->stale;
	N.started_ms = p->started_ms;
	*p = t;
}

/*
 * Live upgrade (path: the new binary) or restart (path NULL: the same one).
 * The new process is started beside the running netd first and must answer
 * `stats` (else it is killed and nothing changed).  Then the running netd is
 * told `handover`: it finishes its round, publishes every ring index and
 * stops touching the rings.  The new one gets the same XSK, UMEM, state
 * region, port table and every application's region, adopts the rings
 * exactly (handover=1: no new generation, nothing to resync) and is told to
 * `start`; then the old one is told to quit.  Nothing is dropped meanwhile:
 * frames wait on the XSK rx ring and on the applications' tx rings.  If the
 * new netd fails after the handover, the old binary is started again (as
 * after a crash).  Blocks librettod for the whole exchange (milliseconds).
 * Returns 0 with a sentence in msg, or -errno.
 */
int netd_sup_upgrade(const char *path, char *msg, size_t len)
{
	struct netd_proc old;
	char oldpath[sizeof(N.path)];
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_PIDFD };
	int err, st = 0;
	uint64_t t0, deadline;

	if (N.state != NETD_RUNNING || N.ctl < 0) {
		netd_sup_running(msg, len);
		return -ENETDOWN;
	}
	if (path && access(path, X_OK) < 0) {
		err = -errno;
		snprintf(msg, len, "%s is not an executable: %s", path, strerror(-err));
		return err;
	}
	if (path && strlen(path) >= sizeof(N.path)) {
		snprintf(msg, len, "the path is too long");
		return -ENAMETOOLONG;
	}
	/*
	 * The old netd aside (its exit will be ours to reap, not a death to
	 * restart from), the new process started while the old one still
	 * moves frames: fork, exec, its start-up and sandbox stay outside the
	 * gap.  A `stats` answer says it is in its loop.
	 */
	old = (struct netd_proc){ 0, -1, -1, 0, 0 };
	proc_swap(&old);
	epoll_ctl(N.epfd, EPOLL_CTL_DEL, old.pidfd, NULL);
	snprintf(oldpath, sizeof(oldpath), "%s", N.path);
	if (path)
		snprintf(N.path, sizeof(N.path), "%s", path);
	err = netd_spawn();
	if (!err) {
		err = netd_request("stats\n", NULL, 0);
		if (err) {
			snprintf(N.reason, sizeof(N.reason), "it did not answer: %s",
				 err > 0 ? srv_reply_error(N.buf) : strerror(-err));
			netd_kill_reap(NULL);
		}
	}
	if (err) {
		snprintf(msg, len, "the new netd (%.200s) did not start: %.300s; the running one "
			 "goes on", N.path, N.reason);
		ld_log("netd upgrade: %s", msg);
		snprintf(N.path, sizeof(N.path), "%s", oldpath);
		proc_swap(&old);
		epoll_ctl(N.epfd, EPOLL_CTL_ADD, N.pidfd, &ev);
		N.reason[0] = '\0';
		return err > 0 ? -err : err;
	}

	/* The gap begins: the old netd stops at a ring boundary. */
	t0 = srv_mono_ms();
	proc_swap(&old);
	err = netd_request("handover\n", NULL, 0);
	proc_swap(&old);
	if (err) {
		snprintf(msg, len, "netd pid %d did not hand over: %s", (int)old.pid,
			 err > 0 ? srv_reply_error(N.buf) : strerror(-err));
		netd_kill_reap(NULL);
		snprintf(N.path, sizeof(N.path), "%s", oldpath);
		proc_swap(&old);
		epoll_ctl(N.epfd, EPOLL_CTL_ADD, N.pidfd, &ev);
		if (err < 0 && N.pid > 0) {
			/*
			 * No answer: it may still hand over later and then move
			 * no frame while alive and beating.  Replace it as a
			 * hung netd (the restart adopts the rings).
			 */
			ld_log("netd pid=%d did not answer handover: killing it (it will be "
			       "restarted)", (int)N.pid);
			snprintf(N.kill_reason, sizeof(N.kill_reason), "hung: no answer to handover");
			kill(N.pid, SIGKILL);
		}
		return err > 0 ? -err : err;
	}
	/* Its final counters: the frame accounting spans every netd (netd.h). */
	N.prev_rx_frames += reply_u64("rx_frames");
	N.prev_rx_delivered += reply_u64("rx_delivered");
	N.prev_rx_handled += reply_u64("rx_handled");
	N.prev_rx_dropped += reply_u64("rx_dropped");
	N.state = NETD_RESTARTING;
	N.down_ms = t0;
	snprintf(N.last_event, sizeof(N.last_event), "%s%.150s (pid %d handed over)",
		 path ? "upgrade to " : "restart requested", path ? path : "", (int)old.pid);
	N.handover_next = true;
	err = netd_try_start();
	if (err) {
		ld_log("netd upgrade: the new netd (%s) failed: %s; starting %s again", N.path,
		       N.reason, oldpath);
		snprintf(msg, len, "the new netd (%.200s) failed: %.300s; the previous binary runs "
			 "again", N.path, N.reason);
		snprintf(N.path, sizeof(N.path), "%s", oldpath);
		/* The failed one may have moved frames: adopt as after a crash. */
		if (netd_try_start() != 0) {
			N.state = NETD_RESTARTING;
			srv_timer_set_ms(N.timer_fd, NETD_RETRY_MS);
		}
	}
	/* The old netd: quit, and EOF on its socket says it twice. */
	(void)ctl_send(old.ctl, "quit\n", 5, NULL, 0);
	close(old.ctl);
	deadline = srv_mono_ms() + NETD_QUIT_WAIT_MS;
	for (;;) {
		struct pollfd p = { .fd = old.pidfd, .events = POLLIN };
		uint64_t now = srv_mono_ms();

		if (old.pidfd < 0 || now >= deadline || poll(&p, 1, (int)(deadline - now)) == 1)
			break;
	}
	if (waitpid(old.pid, &st, WNOHANG) != old.pid) {
		ld_log("netd pid=%d did not exit within %d ms of quit after its handover: killing "
		       "it", (int)old.pid, NETD_QUIT_WAIT_MS);
		kill(old.pid, SIGKILL);
		while (waitpid(old.pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	if (old.pidfd >= 0)
		close(old.pidfd);
	if (err)
		return -EIO;
	N.upgrades++;
	ld_log("netd %s: pid %d handed over to pid %d (%s) in %ld ms", path ? "upgrade" : "restart",
	       (int)old.pid, (int)N.pid, N.path, N.last_gap_ms);
	snprintf(msg, len, "netd pid %d handed over to pid %d in %ld ms", (int)old.pid, (int)N.pid,
		 N.last_gap_ms);
	return 0;
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
	snprintf(err, errlen, "%s", e > 0 ? srv_reply_error(N.buf) : strerror(-e));
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
			       err > 0 ? srv_reply_error(N.buf) : strerror(-err));
		/* netd holds a copy of our end (NETD_SUP_FD), so closing ours
		 * brings no EOF: quit, then the pidfd, then SIGKILL decide. */
		if (N.ctl >= 0)
			close(N.ctl);
		N.ctl = -1;
		deadline = srv_mono_ms() + NETD_QUIT_WAIT_MS;
		for (;;) {
			struct pollfd p = { .fd = N.pidfd, .events = POLLIN };
			uint64_t now = srv_mono_ms();

			if (N.pidfd < 0 || now >= deadline)
				break;
			if (poll(&p, 1, (int)(deadline - now)) == 1)
				break;
		}
		if (waitpid(pid, &st, WNOHANG) == pid) {
			srv_format_status(st, N.last_exit, sizeof(N.last_exit));
			ld_log("netd pid=%d stopped: %s", (int)pid, N.last_exit);
		} else if (N.pidfd >= 0 && poll(&(struct pollfd){ .fd = N.pidfd, .events = POLLIN },
						 1, 0) == 1) {
			/* An adopted netd is not our child: its pidfd says it ended. */
			ld_log("netd pid=%d stopped", (int)pid);
		} else {
			ld_log("netd pid=%d did not exit within %d ms of quit: killing it", (int)pid,
			       NETD_QUIT_WAIT_MS);
			netd_kill_reap(&st);
		}
		netd_forget();
	}
	N.state = NETD_STOPPED;
	netd_sup_free_all();
}
