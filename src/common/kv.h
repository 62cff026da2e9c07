/* key=value text records: the control protocol's and the lease's format. */
#ifndef LIBRETTO_KV_H
#define LIBRETTO_KV_H

#include <stddef.h>
#include <stdbool.h>

#define KV_MAX 64

struct kv_pair {
	char *key;
	char *value;
};

/*
 * A parsed record.  kv_parse() copies the text and splits it in place at
 * '\n' and ' ' separators, so values cannot contain spaces or newlines; a
 * token without '=' is stored with an empty value (the command line of a
 * request).  Returns 0 or -errno (-EINVAL for more than KV_MAX pairs,
 * -ENOMEM).  kv_free() releases the copy.
 */
struct kv {
	char *buf;
	int n;
	struct kv_pair pair[KV_MAX];
};

int kv_parse(struct kv *kv, const char *text, size_t len);
void kv_free(struct kv *kv);
/* The value of the first pair named key, or NULL. */
const char *kv_get(const struct kv *kv, const char *key);
/* kv_get() parsed as an unsigned decimal; -ENOENT if absent, -EINVAL if bad. */
int kv_get_ulong(const struct kv *kv, const char *key, unsigned long *out);

/*
 * An output buffer that appends "key=value" followed by sep.  Overflow is
 * sticky: kv_buf_ok() tells whether everything fitted.
 */
struct kv_buf {
	char *p;
	size_t len, cap;
	bool overflow;
};

void kv_buf_init(struct kv_buf *b, char *mem, size_t cap);
void kv_buf_add(struct kv_buf *b, char sep, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void kv_buf_raw(struct kv_buf *b, const char *text);
bool kv_buf_ok(const struct kv_buf *b);

/*
 * One control message over a SOCK_SEQPACKET socket, with up to CTL_MAX_FDS
 * descriptors.  ctl_recv() NUL-terminates the text (cap includes the NUL),
 * returns its length, 0 on EOF, or -errno; received descriptors are
 * O_CLOEXEC.  Both retry on EINTR.
 */
int ctl_send(int sock, const char *text, size_t len, const int *fds, int nfds);
int ctl_recv(int sock, char *text, size_t cap, int *fds, int *nfds);

/* Connect to librettod's control socket (LIBRETTO_CONTROL or the default). */
int ctl_connect(void);
const char *ctl_path(void);

#endif
