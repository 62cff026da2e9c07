/* librettod's supervision of libretto-fsd: starting, watching (pidfd, ping), restarting it, and the volumes and sessions that outlive it. */
#include "librettod/fsd_sup.h"
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
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#include "librettod/librettod.h"
#include "libretto/ctl.h"
#include "libretto/fsd.h"

/*
 * Timing.  fsd answers control requests from its loop between batches, so
 * a healthy fsd answers within a batch's time; vol_add may replay a journal
 * first, hence the generous FSD_REQ_TIMEOUT_MS.  A ping goes out every
 * FSD_PING_MS; an fsd that has not answered one for FSD_HANG_MS is hung
 * and is killed (and replaced).  Deaths within FSD_QUICK_MS of the start
 * count as quick; after FSD_QUICK_MAX of them in a row the next start waits
 * FSD_BACKOFF_MS, doubling up to FSD_BACKOFF_MAX_MS.  At stop, fsd gets
 * FSD_QUIT_WAIT_MS to unmount and exit after `quit`.
 */
#define FSD_REQ_TIMEOUT_MS 10000
#define FSD_PING_MS 1000
#define FSD_HANG_MS 5000
#define FSD_QUICK_MS 1000
#define FSD_QUICK_MAX 3
#define FSD_BACKOFF_MS 100
#define FSD_BACKOFF_MAX_MS 10000
#define FSD_QUIT_WAIT_MS 5000

enum fsup_state { FSUP_STOPPED, FSUP_RUNNING, FSUP_RESTARTING };

static const char *const fsup_state_names[] = {
	[FSUP_STOPPED] = "stopped",
	[FSUP_RUNNING] = "running",
	[FSUP_RESTARTING] = "restarting",
};

enum { TAG_PIDFD = 1, TAG_TIMER = 2, TAG_PING = 3, TAG_CTL = 4 };

/* A volume: the image librettod opened, kept while any session uses it. */
struct fsup_vol {
	bool used;
	uint64_t id;
	int image_fd;
	dev_t dev;
	ino_t ino;
	char image[PATH_MAX];
	char mount[PATH_MAX];
	unsigned nsessions;
	bool mounted;            /* the running fsd has it (vol_add succeeded) */
	unsigned mounts;         /* successful vol_adds so far (one per fsd that mounted it) */
};

/* A session: its region (mapped here too), doorbell and fsd's private state memfd. */
struct fsup_sess {
	bool used;
	uint64_t id;
	struct fsup_vol *vol;
	pid_t pid;
	uint32_t uid, gid;
	uint32_t uids[4], gids[4];	/* real, effective, saved, file system */
	char groups[200];
	int region_fd, bell_fd, state_fd;
	struct fsd_region *rg;
	/*
	 * Exactly once across more than one fsd death: the fsd that last took
	 * the session (mount number `taken` of its volume) wrote the records in
	 * its state; what that fsd committed is the committed= of the next
	 * mount's vol_add reply (`bound`).  A later fsd is told it at adoption,
	 * since its own mount's value may have passed the dead one's lost
	 * transaction when an fsd in between never adopted this session.
	 */
	unsigned taken;
	bool has_bound;
	uint64_t bound;
};

static struct {
	const struct ld_config *cfg;
	bool inited;
	enum fsup_state state;
	char path[PATH_MAX];
	int epfd, timer_fd, ping_fd;
	pid_t pid;
	int pidfd, ctl;
	unsigned stale;          /* replies owed to requests that timed out */
	bool ping_owed;
	uint64_t ping_sent_ms, started_ms;
	unsigned restarts, quick_deaths;
	bool ever_started;
	char last_exit[64];
	char kill_reason[160];
	char reason[400];
	uint64_t next_vol, next_sess;
	struct fsup_vol vols[FSD_MAX_VOLS];
	struct fsup_sess sess[FSD_MAX_SESSIONS];
	char buf[FSD_MSG_MAX];
} S = { .epfd = -1, .timer_fd = -1, .ping_fd = -1, .pidfd = -1, .ctl = -1 };

/*
 * One request and its reply (in S.buf).  Returns the reply's errno value
 * (0, or positive with "error=" in S.buf), or -errno when fsd did not
 * answer.  A ping's answer met on the way is taken as such.
 */
static int fsd_request(const char *text, const int *fds, int nfds)
{
	return srv_request(S.ctl, S.buf, sizeof(S.buf), &S.stale, &S.ping_owed, FSD_REQ_TIMEOUT_MS,
			   text, fds, nfds);
}

static void fsd_forget(void)
{
	if (S.pidfd >= 0) {
		epoll_ctl(S.epfd, EPOLL_CTL_DEL, S.pidfd, NULL);
		close(S.pidfd);
	}
	if (S.ctl >= 0) {
		epoll_ctl(S.epfd, EPOLL_CTL_DEL, S.ctl, NULL);
		close(S.ctl);
	}
	S.pidfd = S.ctl = -1;
	S.pid = 0;
	S.stale = 0;
	S.ping_owed = false;
	for (unsigned i = 0; i < FSD_MAX_VOLS; i++)
		S.vols[i].mounted = false;
	/* The regions say nobody serves them now (clients just wait). */
	for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++)
		if (S.sess[i].used && S.sess[i].rg)
			__atomic_fetch_and(&S.sess[i].rg->flags, ~FSD_REGION_F_UP, __ATOMIC_RELEASE);
}

static void fsd_kill_reap(void)
{
	srv_kill_reap(S.pid);
	fsd_forget();
}

static void fsd_child(int sock) __attribute__((noreturn));
static void fsd_child(int sock)
{
	char *const argv[] = { "libretto-fsd", "--control-fd", "3", NULL };
	int a;

	srv_child_reset();
	a = fcntl(sock, F_DUPFD, 16);
	if (a < 0 || dup2(a, 3) < 0)
		_exit(127);
	/* Nothing else of librettod's (images of direct leases, VF sockets) leaks into fsd. */
	syscall(SYS_close_range, 4u, ~0u, 0u);
	execv(S.path, argv);
	_exit(127);
}

static int fsd_spawn(void)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int sp[2], err;
	pid_t pid;

	pid = srv_fork_ctl(sp, S.reason, sizeof(S.reason));
	if (pid < 0)
		return (int)pid;
	if (pid == 0)
		fsd_child(sp[1]);
	S.pid = pid;
	S.ctl = sp[0];
	S.stale = 0;
	S.ping_owed = false;
	S.started_ms = srv_mono_ms();
	S.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	ev.data.u32 = TAG_PIDFD;
	if (S.pidfd < 0 || epoll_ctl(S.epfd, EPOLL_CTL_ADD, S.pidfd, &ev) < 0) {
		err = -errno;
		snprintf(S.reason, sizeof(S.reason), "pidfd: %s", strerror(-err));
		fsd_kill_reap();
		return err;
	}
	ev.data.u32 = TAG_CTL;
	epoll_ctl(S.epfd, EPOLL_CTL_ADD, S.ctl, &ev);
	return 0;
}

static int send_vol_add(struct fsup_vol *v)
{
	char text[PATH_MAX * 2 + 128];
	int err;

	snprintf(text, sizeof(text), "vol_add\nid=%llu\nmount=%s\nimage=%s\n",
		 (unsigned long long)v->id, v->mount, v->image);
	err = fsd_request(text, &v->image_fd, 1);
	v->mounted = err == 0;
	if (err == 0) {
		const char *c = strstr(S.buf, "committed=");

		v->mounts++;
		if (c && (c == S.buf || c[-1] == '\n')) {
			uint64_t committed = strtoull(c + 10, NULL, 10);

			for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++) {
				struct fsup_sess *s = &S.sess[i];

				if (s->used && s->vol == v && !s->has_bound && s->taken + 1 == v->mounts) {
					s->has_bound = true;
					s->bound = committed;
				}
			}
		}
	} else if (err < 0) {
		/*
		 * No answer: that fsd may have mounted the volume (and committed)
		 * before it died, so no later mount's value is safe for records
		 * still waiting for theirs.  0: the successor runs their requests
		 * again (at worst twice) rather than answer a change that may
		 * be lost.
		 */
		for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++) {
			struct fsup_sess *s = &S.sess[i];

			if (s->used && s->vol == v && !s->has_bound && s->taken == v->mounts) {
				s->has_bound = true;
				s->bound = 0;
			}
		}
	}
	return err;
}

static int send_session_add(struct fsup_sess *s, bool adopt)
{
	char text[700], bound[40] = "";
	int fds[3] = { s->region_fd, s->bell_fd, s->state_fd };
	int err;

	if (adopt && s->has_bound)
		snprintf(bound, sizeof(bound), "committed=%llu\n", (unsigned long long)s->bound);
	snprintf(text, sizeof(text), "session_add\nid=%llu\nvol=%llu\npid=%d\nuid=%u\ngid=%u\n"
		 "uids=%u,%u,%u,%u\ngids=%u,%u,%u,%u\n%s%s%s%sadopt=%d\n",
		 (unsigned long long)s->id, (unsigned long long)s->vol->id, (int)s->pid, s->uid,
		 s->gid, s->uids[0], s->uids[1], s->uids[2], s->uids[3], s->gids[0], s->gids[1],
		 s->gids[2], s->gids[3], s->groups[0] ? "groups=" : "", s->groups,
		 s->groups[0] ? "\n" : "", bound, adopt ? 1 : 0);
	err = fsd_request(text, fds, 3);
	if (err == 0) {
		/* This fsd writes the records from now on. */
		s->taken = s->vol->mounts;
		s->has_bound = false;
	}
	return err;
}

/*
 * Start fsd and give it every volume and session there is (adopt=1: a
 * restart).  0 with fsd running, or -errno with S.reason; a volume or
 * session fsd refuses is logged and left out (its application's calls
 * wait, then fail with EIO), the rest are served.
 */
static int fsd_try_start(void)
{
	unsigned nv = 0, ns = 0;
	int err = fsd_spawn();

	if (err)
		return err;
	for (unsigned i = 0; i < FSD_MAX_VOLS; i++) {
		struct fsup_vol *v = &S.vols[i];

		if (!v->used)
			continue;
		err = send_vol_add(v);
		if (err < 0) {
			snprintf(S.reason, sizeof(S.reason), "fsd pid %d did not take volume %.200s: %s",
				 (int)S.pid, v->image, strerror(-err));
			fsd_kill_reap();
			return err;
		}
		if (err > 0)
			ld_log("fsd: volume %s cannot be mounted again: %s (%s); its sessions stay "
			       "unserved", v->image, srv_reply_error(S.buf), strerror(err));
		else
			nv++;
	}
	for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++) {
		struct fsup_sess *s = &S.sess[i];

		if (!s->used || !s->vol->mounted)
			continue;
		err = send_session_add(s, true);
		if (err < 0) {
			snprintf(S.reason, sizeof(S.reason), "fsd pid %d did not take session %llu: %s",
				 (int)S.pid, (unsigned long long)s->id, strerror(-err));
			fsd_kill_reap();
			return err;
		}
		if (err > 0)
			ld_log("fsd: session %llu (pid %d) refused on adoption: %s", (unsigned long long)s->id,
			       (int)s->pid, srv_reply_error(S.buf));
		else
			ns++;
	}
	if (S.ever_started) {
		S.restarts++;
		ld_log("fsd pid=%d started, adopted %u volume%s and %u session%s", (int)S.pid, nv,
		       nv == 1 ? "" : "s", ns, ns == 1 ? "" : "s");
	} else {
		ld_log("fsd pid=%d started (%s)", (int)S.pid, S.path);
	}
	S.ever_started = true;
	S.state = FSUP_RUNNING;
	S.reason[0] = '\0';
	return 0;
}

static unsigned backoff_ms(unsigned quick)
{
	return srv_backoff_ms(quick, FSD_QUICK_MAX, FSD_BACKOFF_MS, FSD_BACKOFF_MAX_MS);
}

static void fsd_attempt(void)
{
	unsigned delay;

	if (S.state != FSUP_RESTARTING)
		return;
	if (fsd_try_start() == 0)
		return;
	S.quick_deaths++;
	delay = backoff_ms(S.quick_deaths);
	if (delay < 20)
		delay = 20;
	if (S.quick_deaths <= FSD_QUICK_MAX + 3 || S.quick_deaths % 60 == 0)
		ld_log("fsd start failed (%u in a row): %s; next try in %u ms", S.quick_deaths,
		       S.reason, delay);
	srv_timer_set_ms(S.timer_fd, delay);
}

static void fsd_died(void)
{
	uint64_t lived = srv_mono_ms() - S.started_ms;
	int st = 0;
	pid_t pid = S.pid, r;
	unsigned delay;

	r = waitpid(pid, &st, WNOHANG);
	if (r == 0)
		return;
	srv_format_status(r == pid ? st : 0, S.last_exit, sizeof(S.last_exit));
	fsd_forget();
	S.quick_deaths = lived < FSD_QUICK_MS ? S.quick_deaths + 1 : 0;
	delay = backoff_ms(S.quick_deaths);
	S.state = FSUP_RESTARTING;
	snprintf(S.reason, sizeof(S.reason), "fsd pid %d ended (%s%s%s) after %llu ms; restarting",
		 (int)pid, S.last_exit, S.kill_reason[0] ? ": " : "", S.kill_reason,
		 (unsigned long long)lived);
	ld_log("fsd pid=%d ended: %s after %llu ms%s%s; %s", (int)pid, S.last_exit,
	       (unsigned long long)lived, S.kill_reason[0] ? ", " : "", S.kill_reason,
	       delay ? "restarting with back-off" : "restarting now, adopting every session");
	S.kill_reason[0] = '\0';
	if (delay == 0) {
		fsd_attempt();
		return;
	}
	srv_timer_set_ms(S.timer_fd, delay);
}

/* Every FSD_PING_MS: one ping in flight at a time; no answer for FSD_HANG_MS: hung. */
static void fsd_ping_check(void)
{
	uint64_t now = srv_mono_ms();

	if (S.state != FSUP_RUNNING || S.pid <= 0 || S.kill_reason[0])
		return;
	if (S.ping_owed) {
		if (now - S.ping_sent_ms < FSD_HANG_MS)
			return;
		snprintf(S.kill_reason, sizeof(S.kill_reason), "hung: no answer to ping for %llu ms",
			 (unsigned long long)(now - S.ping_sent_ms));
		ld_log("fsd pid=%d is hung (no answer to a ping for %llu ms): killing it, it will be "
		       "replaced", (int)S.pid, (unsigned long long)(now - S.ping_sent_ms));
		kill(S.pid, SIGKILL);
		return;
	}
	if (ctl_send(S.ctl, "ping\n", 5, NULL, 0) == 0) {
		S.ping_owed = true;
		S.ping_sent_ms = now;
	}
}

/* Replies that arrive outside a request: pings' and late ones'. */
static void fsd_ctl_readable(void)
{
	for (int k = 0; k < 16 && S.ctl >= 0; k++) {
		int got[CTL_MAX_FDS], ngot = CTL_MAX_FDS;
		int n = ctl_recv(S.ctl, S.buf, sizeof(S.buf), got, &ngot);

		for (int i = 0; n >= 0 && i < ngot; i++)
			close(got[i]);
		if (n <= 0) {
			/* EOF: fsd is going; its pidfd says when.  Stop watching the socket. */
			if (n == 0) {
				epoll_ctl(S.epfd, EPOLL_CTL_DEL, S.ctl, NULL);
			}
			return;
		}
		if (S.ping_owed && srv_is_pong(S.buf))
			S.ping_owed = false;
		else if (S.stale)
			S.stale--;
	}
}

int fsd_sup_start(const struct ld_config *cfg)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct itimerspec its = {
		.it_value = { .tv_nsec = FSD_PING_MS * 1000000L % 1000000000L, .tv_sec = FSD_PING_MS / 1000 },
		.it_interval = { .tv_nsec = FSD_PING_MS * 1000000L % 1000000000L, .tv_sec = FSD_PING_MS / 1000 },
	};
	int err;

	S.cfg = cfg;
	S.inited = true;
	S.state = FSUP_STOPPED;
	snprintf(S.last_exit, sizeof(S.last_exit), "-");
	for (unsigned i = 0; i < FSD_MAX_VOLS; i++)
		S.vols[i].image_fd = -1;
	S.epfd = epoll_create1(EPOLL_CLOEXEC);
	S.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	S.ping_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (S.epfd < 0 || S.timer_fd < 0 || S.ping_fd < 0) {
		err = -errno;
		snprintf(S.reason, sizeof(S.reason), "cannot create event descriptors: %s",
			 strerror(-err));
		goto out;
	}
	ev.data.u32 = TAG_TIMER;
	epoll_ctl(S.epfd, EPOLL_CTL_ADD, S.timer_fd, &ev);
	ev.data.u32 = TAG_PING;
	epoll_ctl(S.epfd, EPOLL_CTL_ADD, S.ping_fd, &ev);
	timerfd_settime(S.ping_fd, 0, &its, NULL);
	err = srv_find("fsd", S.path, sizeof(S.path), S.reason, sizeof(S.reason));
	if (err)
		goto out;
	err = fsd_try_start();
	if (err) {
		ld_log("fsd start failed: %s; retrying", S.reason);
		S.state = FSUP_RESTARTING;
		S.quick_deaths = 1;
		srv_timer_set_ms(S.timer_fd, 20);
		return err;
	}
	return 0;
out:
	ld_log("fsd is not running: %s; indirect volumes are unavailable (direct ones work)",
	       S.reason);
	return err;
}

int fsd_sup_fd(void)
{
	return S.epfd;
}

void fsd_sup_on_event(void)
{
	struct epoll_event evs[8];
	int n = epoll_wait(S.epfd, evs, 8, 0);
	uint64_t ticks;

	for (int i = 0; i < n; i++) {
		switch (evs[i].data.u32) {
		case TAG_PIDFD:
			if (S.pidfd >= 0)
				fsd_died();
			break;
		case TAG_TIMER:
			if (read(S.timer_fd, &ticks, sizeof(ticks)) == sizeof(ticks))
				fsd_attempt();
			break;
		case TAG_PING:
			if (read(S.ping_fd, &ticks, sizeof(ticks)) == sizeof(ticks))
				fsd_ping_check();
			break;
		case TAG_CTL:
			fsd_ctl_readable();
			break;
		}
	}
}

void fsd_sup_status(struct kv_buf *b)
{
	unsigned nv = 0, ns = 0;

	for (unsigned i = 0; i < FSD_MAX_VOLS; i++)
		nv += S.vols[i].used;
	for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++)
		ns += S.sess[i].used;
	kv_buf_add(b, '\n', "fsd", "%s", fsup_state_names[S.state]);
	kv_buf_add(b, '\n', "fsd_pid", "%d", S.state == FSUP_RUNNING ? (int)S.pid : 0);
	kv_buf_add(b, '\n', "fsd_restarts", "%u", S.restarts);
	kv_buf_add(b, '\n', "fsd_volumes", "%u", nv);
	kv_buf_add(b, '\n', "fsd_sessions", "%u", ns);
	if (S.state != FSUP_RUNNING && S.reason[0]) {
		char why[sizeof(S.reason)];

		snprintf(why, sizeof(why), "%s", S.reason);
		for (char *p = why; *p; p++)
			if (*p == '\n' || *p == ' ')
				*p = '_';
		kv_buf_add(b, '\n', "fsd_error", "%s", why);
	}
}

/*
 * Uid/Gid and Groups of pid: the four ids of each (real, effective, saved,
 * file system) into s->uids/gids, the file-system ones also into s->uid/gid
 * (the rights of a request that names none).  fsd lets the session's
 * requests claim any of these ids later (a program that drops root).
 */
static int read_creds(pid_t pid, struct fsup_sess *ss)
{
	uint32_t *uid = &ss->uid, *gid = &ss->gid;
	char *groups = ss->groups;
	size_t cap = sizeof(ss->groups);
	char path[64], line[512];
	unsigned long r, e, s, fs;
	bool got_u = false, got_g = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	groups[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Uid: %lu %lu %lu %lu", &r, &e, &s, &fs) == 4) {
			*uid = (uint32_t)fs;
			ss->uids[0] = (uint32_t)r;
			ss->uids[1] = (uint32_t)e;
			ss->uids[2] = (uint32_t)s;
			ss->uids[3] = (uint32_t)fs;
			got_u = true;
		} else if (sscanf(line, "Gid: %lu %lu %lu %lu", &r, &e, &s, &fs) == 4) {
			*gid = (uint32_t)fs;
			ss->gids[0] = (uint32_t)r;
			ss->gids[1] = (uint32_t)e;
			ss->gids[2] = (uint32_t)s;
			ss->gids[3] = (uint32_t)fs;
			got_g = true;
		} else if (!strncmp(line, "Groups:", 7)) {
			char *p = line + 7, *end;
			size_t used = 0;
			unsigned n = 0;

			for (;;) {
				unsigned long g = strtoul(p, &end, 10);

				if (end == p || n >= 16)
					break;
				used += (size_t)snprintf(groups + used, cap - used, "%s%lu", n ? "," : "", g);
				if (used >= cap) {
					groups[0] = '\0';
					break;
				}
				n++;
				p = end;
			}
		}
	}
	fclose(f);
	return got_u && got_g ? 0 : -EINVAL;
}

static void sess_free(struct fsup_sess *s)
{
	if (s->rg)
		munmap(s->rg, fsd_region_size());
	if (s->region_fd >= 0)
		close(s->region_fd);
	if (s->bell_fd >= 0)
		close(s->bell_fd);
	if (s->state_fd >= 0)
		close(s->state_fd);
	memset(s, 0, sizeof(*s));
	s->region_fd = s->bell_fd = s->state_fd = -1;
}

static void vol_free_if_unused(struct fsup_vol *v)
{
	char text[64];

	if (!v->used || v->nsessions)
		return;
	if (v->mounted && S.state == FSUP_RUNNING) {
		int err;

		snprintf(text, sizeof(text), "vol_del\nid=%llu\n", (unsigned long long)v->id);
		err = fsd_request(text, NULL, 0);
		if (err)
			ld_log("fsd: vol_del %s: %s", v->image,
			       err > 0 ? srv_reply_error(S.buf) : strerror(-err));
	}
	if (v->image_fd >= 0)
		close(v->image_fd);
	memset(v, 0, sizeof(*v));
	v->image_fd = -1;
}

int fsd_sup_session_open(int image_fd, const char *image, const char *mount, pid_t pid,
			 struct kv_buf *reply, int *fds, int *nfds, uint64_t *session,
			 char *err, size_t errlen)
{
	struct fsup_vol *v = NULL;
	struct fsup_sess *s = NULL;
	struct stat st;
	void *mem;
	int e;

	if (S.state != FSUP_RUNNING) {
		snprintf(err, errlen, "libretto-fsd is not running: %s",
			 S.reason[0] ? S.reason : "not started");
		return -ENODEV;
	}
	if (fstat(image_fd, &st) < 0) {
		e = -errno;
		snprintf(err, errlen, "cannot stat the image %s: %s", image, strerror(-e));
		return e;
	}
	for (unsigned i = 0; i < FSD_MAX_SESSIONS && !s; i++)
		if (!S.sess[i].used)
			s = &S.sess[i];
	if (!s || S.next_sess >= 0xffff) {
		snprintf(err, errlen, "libretto-fsd serves too many sessions");
		return -ENOSPC;
	}
	for (unsigned i = 0; i < FSD_MAX_VOLS && !v; i++)
		if (S.vols[i].used && S.vols[i].dev == st.st_dev && S.vols[i].ino == st.st_ino)
			v = &S.vols[i];
	if (v && strcmp(v->mount, mount) != 0) {
		snprintf(err, errlen, "volume %s is served by libretto-fsd at %s; a second mount "
			 "point (%s) is not supported", image, v->mount, mount);
		return -EBUSY;
	}
	if (!v) {
		for (unsigned i = 0; i < FSD_MAX_VOLS && !v; i++)
			if (!S.vols[i].used)
				v = &S.vols[i];
		if (!v) {
			snprintf(err, errlen, "libretto-fsd serves too many volumes");
			return -ENOSPC;
		}
		memset(v, 0, sizeof(*v));
		v->image_fd = fcntl(image_fd, F_DUPFD_CLOEXEC, 3);
		if (v->image_fd < 0) {
			e = -errno;
			v->image_fd = -1;
			snprintf(err, errlen, "dup: %s", strerror(-e));
			return e;
		}
		v->used = true;
		v->id = ++S.next_vol;
		v->dev = st.st_dev;
		v->ino = st.st_ino;
		snprintf(v->image, sizeof(v->image), "%s", image);
		snprintf(v->mount, sizeof(v->mount), "%s", mount);
		e = send_vol_add(v);
		if (e) {
			snprintf(err, errlen, "libretto-fsd cannot mount %s: %s (%s)", image,
				 e > 0 ? srv_reply_error(S.buf) : "no answer", strerror(e > 0 ? e : -e));
			v->mounted = false;
			vol_free_if_unused(v);
			return e > 0 ? -EINVAL : -ENODEV;
		}
	}
	memset(s, 0, sizeof(*s));
	s->region_fd = s->bell_fd = s->state_fd = -1;
	s->used = true;
	s->id = ++S.next_sess;
	s->vol = v;
	s->pid = pid;
	v->nsessions++;
	e = read_creds(pid, s);
	if (e) {
		snprintf(err, errlen, "cannot read the credentials of pid %d: %s", (int)pid, strerror(-e));
		goto fail;
	}
	e = ld_sealed_map("libretto-fsd-session", fsd_region_size(), &s->region_fd, &mem);
	if (e) {
		snprintf(err, errlen, "cannot create the session region: %s", strerror(-e));
		goto fail;
	}
	s->rg = mem;
	/* Nobody else has the descriptor yet: plain stores. */
	s->rg->magic = FSD_REGION_MAGIC;
	s->rg->version = FSD_REGION_VERSION;
	s->rg->nslots = FSD_SLOTS;
	s->rg->slot_data = FSD_SLOT_DATA;
	s->rg->size = fsd_region_size();
	s->rg->session = s->id;
	e = ld_sealed_map("libretto-fsd-state", fsd_state_size(), &s->state_fd, &mem);
	if (e) {
		snprintf(err, errlen, "cannot create the session state: %s", strerror(-e));
		goto fail;
	}
	munmap(mem, fsd_state_size());
	s->bell_fd = eventfd(0, EFD_CLOEXEC);
	if (s->bell_fd < 0) {
		e = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(-e));
		goto fail;
	}
	e = send_session_add(s, false);
	if (e) {
		snprintf(err, errlen, "libretto-fsd refused the session: %s (%s)",
			 e > 0 ? srv_reply_error(S.buf) : "no answer", strerror(e > 0 ? e : -e));
		e = e > 0 ? -e : -ENODEV;
		goto fail;
	}
	fds[0] = fcntl(s->region_fd, F_DUPFD_CLOEXEC, 3);
	fds[1] = fcntl(s->bell_fd, F_DUPFD_CLOEXEC, 3);
	if (fds[0] < 0 || fds[1] < 0) {
		e = -errno;
		if (fds[0] >= 0)
			close(fds[0]);
		if (fds[1] >= 0)
			close(fds[1]);
		snprintf(err, errlen, "dup: %s", strerror(-e));
		fsd_sup_session_close(s->id);
		return e;
	}
	*nfds = 2;
	*session = s->id;
	kv_buf_add(reply, '\n', "vol", "%llu", (unsigned long long)v->id);
	kv_buf_add(reply, '\n', "session", "%llu", (unsigned long long)s->id);
	kv_buf_add(reply, '\n', "fds", "region,doorbell");
	ld_log("fsd: session %llu for pid %d on %s at %s (volume %llu, %u session%s)",
	       (unsigned long long)s->id, (int)pid, image, mount, (unsigned long long)v->id,
	       v->nsessions, v->nsessions == 1 ? "" : "s");
	return 0;
fail:
	v->nsessions--;
	sess_free(s);
	vol_free_if_unused(v);
	return e;
}

void fsd_sup_session_close(uint64_t session)
{
	struct fsup_sess *s = NULL;
	struct fsup_vol *v;
	char text[64];

	for (unsigned i = 0; i < FSD_MAX_SESSIONS && !s; i++)
		if (S.sess[i].used && S.sess[i].id == session)
			s = &S.sess[i];
	if (!s)
		return;
	v = s->vol;
	if (S.state == FSUP_RUNNING && v->mounted) {
		int err;

		snprintf(text, sizeof(text), "session_del\nid=%llu\n", (unsigned long long)session);
		err = fsd_request(text, NULL, 0);
		if (err)
			ld_log("fsd: session_del %llu: %s", (unsigned long long)session,
			       err > 0 ? srv_reply_error(S.buf) : strerror(-err));
	}
	sess_free(s);
	v->nsessions--;
	vol_free_if_unused(v);
}

bool fsd_sup_serves(dev_t dev, ino_t ino)
{
	for (unsigned i = 0; i < FSD_MAX_VOLS; i++)
		if (S.vols[i].used && S.vols[i].dev == dev && S.vols[i].ino == ino)
			return true;
	return false;
}

/* `quit`, then wait for the exit (pidfd) at most FSD_QUIT_WAIT_MS, then SIGKILL. */
static void fsd_quit_wait(void)
{
	uint64_t deadline;
	pid_t pid = S.pid;
	int st = 0, err;

	err = fsd_request("quit\n", NULL, 0);
	if (err)
		ld_log("fsd pid=%d did not acknowledge quit: %s", (int)pid,
		       err > 0 ? srv_reply_error(S.buf) : strerror(-err));
	deadline = srv_mono_ms() + FSD_QUIT_WAIT_MS;
	for (;;) {
		struct pollfd p = { .fd = S.pidfd, .events = POLLIN };
		uint64_t now = srv_mono_ms();

		if (S.pidfd < 0 || now >= deadline)
			break;
		if (poll(&p, 1, (int)(deadline - now)) == 1)
			break;
	}
	if (waitpid(pid, &st, WNOHANG) == pid) {
		srv_format_status(st, S.last_exit, sizeof(S.last_exit));
		ld_log("fsd pid=%d stopped: %s", (int)pid, S.last_exit);
		fsd_forget();
	} else {
		ld_log("fsd pid=%d did not exit within %d ms of quit: killing it", (int)pid,
		       FSD_QUIT_WAIT_MS);
		fsd_kill_reap();
	}
}

void fsd_sup_stop(void)
{
	if (!S.inited)
		return;
	S.inited = false;
	if (S.pid > 0)
		fsd_quit_wait();
	S.state = FSUP_STOPPED;
	for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++)
		if (S.sess[i].used)
			sess_free(&S.sess[i]);
	for (unsigned i = 0; i < FSD_MAX_VOLS; i++)
		if (S.vols[i].used) {
			S.vols[i].nsessions = 0;
			vol_free_if_unused(&S.vols[i]);
		}
	if (S.timer_fd >= 0)
		close(S.timer_fd);
	if (S.ping_fd >= 0)
		close(S.ping_fd);
	if (S.epfd >= 0)
		close(S.epfd);
	S.timer_fd = S.ping_fd = S.epfd = -1;
}

int fsd_sup_restart(char *msg, size_t len)
{
	pid_t old = S.pid;
	int err;

	if (!S.inited || !S.path[0]) {
		snprintf(msg, len, "libretto-fsd is not supervised: %s", S.reason);
		return -ENODEV;
	}
	/* A clean stop: fsd unmounts every volume; the new one mounts and adopts them. */
	if (S.pid > 0)
		fsd_quit_wait();
	S.state = FSUP_RESTARTING;
	err = fsd_try_start();
	if (err) {
		snprintf(msg, len, "fsd pid %d stopped, but the new one failed: %s", (int)old, S.reason);
		S.quick_deaths = 1;
		srv_timer_set_ms(S.timer_fd, 20);
		return err;
	}
	snprintf(msg, len, "fsd pid %d replaced by pid %d", (int)old, (int)S.pid);
	return 0;
}
