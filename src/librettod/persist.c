/* librettod's state record (supervisor restart): the file that lets a new
 * librettod find the netd and the applications an earlier one left running. */
#include "librettod/librettod.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "common/kv.h"
#include "librettod/pool.h"

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static struct {
	char path[PATH_MAX];       /* "" until persist_init() */
	char tmp[PATH_MAX];
	struct persist_rec rec;    /* what persist_load() found */
	bool loaded;
} P;

void persist_init(const char *control)
{
	const char *slash = strrchr(control, '/');
	int dirlen = slash ? (int)(slash - control) : 1;

	if (!slash)
		control = ".";
	snprintf(P.path, sizeof(P.path), "%.*s/state", dirlen, control);
	snprintf(P.tmp, sizeof(P.tmp), "%.*s/.state.tmp", dirlen, control);
}

const char *persist_path(void)
{
	return P.path;
}

int persist_write(const char *text, size_t len)
{
	int fd, err = 0;

	if (!P.path[0])
		return -EINVAL;
	/* Readable by root only: the record holds every lease's secret. */
	fd = open(P.tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	while (len > 0) {
		ssize_t n = write(fd, text, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			break;
		}
		text += n;
		len -= (size_t)n;
	}
	if (close(fd) < 0 && !err)
		err = -errno;
	/* rename() replaces the record atomically: a reader never sees half. */
	if (!err && rename(P.tmp, P.path) < 0)
		err = -errno;
	if (err)
		unlink(P.tmp);
	return err;
}

void persist_remove(void)
{
	if (P.path[0])
		unlink(P.path);
}

unsigned long long proc_start_time(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long t = 0;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: count from the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* Field 22 (starttime); p is at the end of field 2. */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (p)
		t = strtoull(p + 1, NULL, 10);
	return t;
}

bool proc_same(pid_t pid, unsigned long long start)
{
	unsigned long long t = proc_start_time(pid);

	/* A zombie still has its stat file: it counts as gone. */
	if (t == 0 || t != start)
		return false;
	{
		char path[64], buf[256];
		ssize_t n;
		int fd;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return false;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n > 0) {
			char *p;

			buf[n] = '\0';
			p = strrchr(buf, ')');
			if (p && (p[2] == 'Z' || p[2] == 'X'))
				return false;
		}
	}
	return true;
}

int persist_secret(char out[PERSIST_SECRET_LEN + 1])
{
	unsigned char raw[PERSIST_SECRET_LEN / 2];
	ssize_t n = getrandom(raw, sizeof(raw), 0);

	if (n != (ssize_t)sizeof(raw))
		return n < 0 ? -errno : -EIO;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

bool persist_secret_eq(const char *a, const char *b)
{
	unsigned char d = 0;

	if (!a || !b || strlen(a) != PERSIST_SECRET_LEN || strlen(b) != PERSIST_SECRET_LEN)
		return false;
	/* Every byte is compared whatever the first difference: no timing hint. */
	for (int i = 0; i < PERSIST_SECRET_LEN; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

int persist_getfd(int pidfd, int fd)
{
	long r = syscall(SYS_pidfd_getfd, pidfd, fd, 0);

	return r < 0 ? -errno : (int)r;
}

/* One "app=" line of the record. */
static int parse_app(const struct kv *kv, struct persist_app *a)
{
	unsigned long v;
	const char *s;

	memset(a, 0, sizeof(*a));
	if (kv_get_ulong(kv, "app", &v) < 0 || v == 0 || v > UINT32_MAX)
		return -EINVAL;
	a->id = (unsigned)v;
	if (kv_get_ulong(kv, "pid", &v) < 0 || v == 0 || v > INT32_MAX)
		return -EINVAL;
	a->pid = (pid_t)v;
	s = kv_get(kv, "start");
	a->start = s ? strtoull(s, NULL, 10) : 0;
	if (kv_get_ulong(kv, "uid", &v) < 0)
		return -EINVAL;
	a->uid = (uid_t)v;
	s = kv_get(kv, "ip");
	if (!s || ip_parse(s, &a->ip) < 0)
		return -EINVAL;
	s = kv_get(kv, "name");
	snprintf(a->name, sizeof(a->name), "%s", s ? s : "app");
	s = kv_get(kv, "vf");
	snprintf(a->vf, sizeof(a->vf), "%s", s && strcmp(s, "-") ? s : "");
	s = kv_get(kv, "backend");
	snprintf(a->backend, sizeof(a->backend), "%s", s ? s : "afxdp");
	s = kv_get(kv, "secret");
	if (!s || strlen(s) != PERSIST_SECRET_LEN)
		return -EINVAL;
	memcpy(a->secret, s, PERSIST_SECRET_LEN + 1);
	a->shared_ip = kv_get(kv, "shared") && !strcmp(kv_get(kv, "shared"), "1");
	a->indirect = kv_get(kv, "mode") && !strcmp(kv_get(kv, "mode"), "indirect");
	a->switchable = kv_get(kv, "switchable") && !strcmp(kv_get(kv, "switchable"), "1");
	a->auto_mode = kv_get(kv, "auto") && !strcmp(kv_get(kv, "auto"), "1");
	if (kv_get_ulong(kv, "auto_high", &v) == 0)
		a->auto_high = (unsigned)v;
	if (kv_get_ulong(kv, "auto_low", &v) == 0)
		a->auto_low = (unsigned)v;
	if (kv_get_ulong(kv, "auto_dwell_ms", &v) == 0)
		a->auto_dwell_ms = (unsigned)v;
	return 0;
}

int persist_load(void)
{
	char *text, *line, *save = NULL;
	struct persist_rec *r = &P.rec;
	struct stat st;
	ssize_t n;
	int fd;

	memset(r, 0, sizeof(*r));
	P.loaded = false;
	if (!P.path[0])
		return -EINVAL;
	fd = open(P.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	/* Only a record root wrote is believed: it names processes to adopt. */
	if (fstat(fd, &st) < 0 || st.st_uid != 0 || (st.st_mode & 022) ||
	    st.st_size > 1 << 20) {
		close(fd);
		return -EPERM;
	}
	text = calloc(1, (size_t)st.st_size + 1);
	if (!text) {
		close(fd);
		return -ENOMEM;
	}
	n = read(fd, text, (size_t)st.st_size);
	close(fd);
	if (n < 0) {
		free(text);
		return -EIO;
	}
	text[n] = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct kv kv;
		unsigned long v;

		if (kv_parse(&kv, line, strlen(line)) < 0)
			continue;
		if (kv_get(&kv, "netd_pid")) {
			if (kv_get_ulong(&kv, "netd_pid", &v) == 0 && v <= INT32_MAX)
				r->netd_pid = (pid_t)v;
			if (kv_get(&kv, "netd_start"))
				r->netd_start = strtoull(kv_get(&kv, "netd_start"), NULL, 10);
			if (kv_get_ulong(&kv, "next_id", &v) == 0 && v <= UINT32_MAX)
				r->next_id = (unsigned)v;
			if (kv_get(&kv, "librettod_pid") &&
			    kv_get_ulong(&kv, "librettod_pid", &v) == 0 && v <= INT32_MAX)
				r->librettod_pid = (pid_t)v;
		} else if (kv_get(&kv, "app") && r->napps < PERSIST_MAX_APPS) {
			if (parse_app(&kv, &r->apps[r->napps]) == 0)
				r->napps++;
			else
				ld_log("recover: ignoring a malformed app line of %s", P.path);
		}
		kv_free(&kv);
	}
	free(text);
	P.loaded = true;
	return 0;
}

const struct persist_rec *persist_loaded(void)
{
	return P.loaded ? &P.rec : NULL;
}
