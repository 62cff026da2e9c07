/* key=value records and the control socket's message transport. */
#include "kv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "libretto/ctl.h"

int kv_parse(struct kv *kv, const char *text, size_t len)
{
	char *p, *tok, *save = NULL;

	kv->n = 0;
	kv->buf = malloc(len + 1);
	if (!kv->buf)
		return -ENOMEM;
	memcpy(kv->buf, text, len);
	kv->buf[len] = '\0';
	for (p = kv->buf; (tok = strtok_r(p, " \n", &save)); p = NULL) {
		char *eq = strchr(tok, '=');

		if (kv->n == KV_MAX) {
			kv_free(kv);
			return -EINVAL;
		}
		kv->pair[kv->n].key = tok;
		if (eq) {
			*eq = '\0';
			kv->pair[kv->n].value = eq + 1;
		} else {
			kv->pair[kv->n].value = tok + strlen(tok);
		}
		kv->n++;
	}
	return 0;
}

void kv_free(struct kv *kv)
{
	free(kv->buf);
	kv->buf = NULL;
	kv->n = 0;
}

const char *kv_get(const struct kv *kv, const char *key)
{
	for (int i = 0; i < kv->n; i++)
		if (strcmp(kv->pair[i].key, key) == 0)
			return kv->pair[i].value;
	return NULL;
}

int kv_get_ulong(const struct kv *kv, const char *key, unsigned long *out)
{
	const char *v = kv_get(kv, key);
	char *end;

	if (!v)
		return -ENOENT;
	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoul(v, &end, 10);
	if (errno || *end)
		return -EINVAL;
	return 0;
}

void kv_buf_init(struct kv_buf *b, char *mem, size_t cap)
{
	b->p = mem;
	b->len = 0;
	b->cap = cap;
	b->overflow = false;
	if (cap)
		mem[0] = '\0';
}

static void kv_buf_vadd(struct kv_buf *b, const char *fmt, va_list ap)
{
	int n;

	if (b->overflow)
		return;
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	if (n < 0 || (size_t)n >= b->cap - b->len) {
		b->overflow = true;
		b->p[b->len] = '\0';
		return;
	}
	b->len += (size_t)n;
}

static void kv_buf_fmt(struct kv_buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kv_buf_vadd(b, fmt, ap);
	va_end(ap);
}

void kv_buf_add(struct kv_buf *b, char sep, const char *key, const char *fmt, ...)
{
	va_list ap;

	kv_buf_fmt(b, "%s=", key);
	va_start(ap, fmt);
	kv_buf_vadd(b, fmt, ap);
	va_end(ap);
	kv_buf_fmt(b, "%c", sep);
}

void kv_buf_raw(struct kv_buf *b, const char *text)
{
	kv_buf_fmt(b, "%s", text);
}

bool kv_buf_ok(const struct kv_buf *b)
{
	return !b->overflow;
}

int ctl_send(int sock, const char *text, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)text, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds < 0 || nfds > CTL_MAX_FDS)
		return -EINVAL;
	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

int ctl_recv(int sock, char *text, size_t cap, int *fds, int *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = text, .iov_len = cap - 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *c;
	ssize_t n;
	int got = 0;

	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int tmp[CTL_MAX_FDS];

		memcpy(tmp, CMSG_DATA(c), sizeof(int) * (size_t)k);
		for (int i = 0; i < k; i++) {
			if (fds && nfds && got < *nfds)
				fds[got++] = tmp[i];
			else
				close(tmp[i]);
		}
	}
	if (nfds)
		*nfds = got;
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		if (nfds)
			*nfds = 0;
		return -EMSGSIZE;
	}
	text[n] = '\0';
	return (int)n;
}

const char *ctl_path(void)
{
	const char *p = getenv("LIBRETTO_CONTROL");

	return p && *p ? p : LIBRETTO_CONTROL_PATH;
}

int ctl_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = ctl_path();
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}
