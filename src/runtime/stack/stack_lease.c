/* The lease: read it from the environment, clean the environment, take the descriptors. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <arpa/inet.h>

#include "common/kv.h"
#include "libretto/ctl.h"
#include "ipx/real.h"
#include "stack/stack.h"
#include "stack/stack_int.h"

/* Descriptors the runtime owns; the application must not close or replace
 * them.  Filled at start-up, before any other thread exists; a mode switch
 * later adds the new path's descriptors and forgets the old path's (slots
 * set to -1), so readers load the slots atomically.  Only the thread
 * carrying out a switch (the progress thread) writes after start-up. */
#define STACK_MAX_PRIVATE (4 * CTL_MAX_FDS)
static int stack_private[STACK_MAX_PRIVATE];
static int stack_nprivate;
static int stack_private_min = INT_MAX;

/* Received descriptors go at or above this number, out of the way of the
 * small numbers programs (and shells) expect to be free. */
#define STACK_FD_BASE 900

/* What an exec hands on while the lease is pending (stack_lease_env,
 * stack_runtime_path): built at start-up, read-only afterwards. */
static char *stack_exec_env;
static char stack_self_path[PATH_MAX];

int stack_private_fds(int *fds, int max)
{
	int n = 0, total = __atomic_load_n(&stack_nprivate, __ATOMIC_ACQUIRE);

	for (int i = 0; i < total && n < max; i++) {
		int fd = __atomic_load_n(&stack_private[i], __ATOMIC_RELAXED);

		if (fd >= 0)
			fds[n++] = fd;
	}
	return n;
}

/* Record fd as the runtime's: a free slot, else a new one. */
static int stack_private_add(int fd)
{
	for (int i = 0; i < stack_nprivate; i++) {
		if (stack_private[i] < 0) {
			__atomic_store_n(&stack_private[i], fd, __ATOMIC_RELEASE);
			goto added;
		}
	}
	if (stack_nprivate == STACK_MAX_PRIVATE)
		return -EMFILE;
	stack_private[stack_nprivate] = fd;
	__atomic_store_n(&stack_nprivate, stack_nprivate + 1, __ATOMIC_RELEASE);
added:
	if (fd < stack_private_min)
		__atomic_store_n(&stack_private_min, fd, __ATOMIC_RELAXED);
	return 0;
}

void stack_private_forget(int fd)
{
	for (int i = 0; i < stack_nprivate; i++)
		if (stack_private[i] == fd)
			__atomic_store_n(&stack_private[i], -1, __ATOMIC_RELEASE);
}

const char *stack_lease_env(void)
{
	return stack_exec_env;
}

const char *stack_runtime_path(void)
{
	return stack_self_path[0] ? stack_self_path : NULL;
}

bool stack_fd_is_private(int fd)
{
	int n;

	if (fd < 0 || fd < __atomic_load_n(&stack_private_min, __ATOMIC_RELAXED))
		return false;
	n = __atomic_load_n(&stack_nprivate, __ATOMIC_ACQUIRE);
	for (int i = 0; i < n; i++)
		if (__atomic_load_n(&stack_private[i], __ATOMIC_RELAXED) == fd)
			return true;
	return false;
}

static void lease_complain(const char *what, const char *key, const char *value)
{
	if (value)
		fprintf(stderr, "libretto: bad lease in " LIBRETTO_LEASE_ENV ": %s=%s %s\n",
			key, value, what);
	else
		fprintf(stderr, "libretto: bad lease in " LIBRETTO_LEASE_ENV ": %s %s\n", key, what);
}

/* True when the LD_PRELOAD entry names the object this code lives in. */
static bool preload_entry_is_us(const char *entry, const char *self)
{
	char a[PATH_MAX], b[PATH_MAX];
	const char *base_e, *base_s;

	if (strcmp(entry, self) == 0)
		return true;
	if (realpath(entry, a) && realpath(self, b) && strcmp(a, b) == 0)
		return true;
	/* A bare name is found through the library path: compare file names. */
	if (!strchr(entry, '/')) {
		base_s = strrchr(self, '/');
		base_s = base_s ? base_s + 1 : self;
		base_e = entry;
		return strcmp(base_e, base_s) == 0;
	}
	return false;
}

/*
 * Remove our runtime from LD_PRELOAD (entries are separated by spaces or
 * colons, as ld.so reads them) so programs the application execs run on the
 * kernel stack; other preloaded libraries stay.
 */
static void preload_remove_self(void)
{
	const char *old = getenv("LD_PRELOAD");
	char *copy, *out, *tok, *save = NULL;
	Dl_info di;
	size_t len;

	if (!dladdr((void *)preload_remove_self, &di) || !di.dli_fname)
		return;
	/* An exec that hands the lease on puts this path back: absolute, so a
	 * program that changed directory still finds it. */
	if (!realpath(di.dli_fname, stack_self_path))
		snprintf(stack_self_path, sizeof(stack_self_path), "%s", di.dli_fname);
	if (!old)
		return;
	len = strlen(old);
	copy = strdup(old);
	out = malloc(len + 1);
	if (!copy || !out) {
		free(copy);
		free(out);
		return;
	}
	out[0] = '\0';
	for (char *p = copy; (tok = strtok_r(p, " :", &save)); p = NULL) {
		if (preload_entry_is_us(tok, di.dli_fname))
			continue;
		if (out[0])
			strcat(out, " ");
		strcat(out, tok);
	}
	if (out[0])
		setenv("LD_PRELOAD", out, 1);
	else
		unsetenv("LD_PRELOAD");
	free(copy);
	free(out);
}

int stack_lease_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;

	if (!s || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
			 &v[4], &v[5], &end) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	/* A group address cannot be a station's source address. */
	if (mac[0] & 1)
		return -EINVAL;
	return 0;
}

static int lease_fd(const struct kv *kv, const char *key, bool required, int *out)
{
	unsigned long v;
	int err = kv_get_ulong(kv, key, &v);

	*out = -1;
	if (err == -ENOENT && !required)
		return 0;
	if (err == -ENOENT) {
		lease_complain("is missing", key, NULL);
		return -EINVAL;
	}
	if (err || v > INT_MAX) {
		lease_complain("is not a descriptor number", key, kv_get(kv, key));
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int lease_validate(struct stack_lease *l)
{
	const struct kv *kv = &l->kv;
	const char *s;
	unsigned long prefix;
	int fd;

	s = kv_get(kv, "ip");
	if (!s || inet_pton(AF_INET, s, &l->ip) != 1 || l->ip.s_addr == 0) {
		lease_complain(s ? "is not an IPv4 address" : "is missing", "ip", s);
		return -EINVAL;
	}
	if (kv_get_ulong(kv, "prefix", &prefix) < 0 || prefix < 1 || prefix > 32) {
		lease_complain("must be 1..32", "prefix", kv_get(kv, "prefix"));
		return -EINVAL;
	}
	l->prefix = (unsigned)prefix;
	l->netmask.s_addr = htonl(prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> prefix));

	/* The testbed has no gateway: the register reply may say so in any of
	 * these ways. */
	s = kv_get(kv, "gateway");
	l->gw.s_addr = 0;
	if (s && *s && strcmp(s, "none") != 0 && strcmp(s, "0.0.0.0") != 0) {
		if (inet_pton(AF_INET, s, &l->gw) != 1) {
			lease_complain("is not an IPv4 address", "gateway", s);
			return -EINVAL;
		}
		if ((l->gw.s_addr & l->netmask.s_addr) != (l->ip.s_addr & l->netmask.s_addr)) {
			lease_complain("is not on the interface's subnet", "gateway", s);
			return -EINVAL;
		}
	}
	s = kv_get(kv, "mac");
	if (stack_lease_mac(s, l->mac) < 0) {
		lease_complain(s ? "is not a unicast MAC address" : "is missing", "mac", s);
		return -EINVAL;
	}
	s = kv_get(kv, "backend");
	l->ops = s ? nic_ops_by_name(s) : NULL;
	if (!l->ops) {
		lease_complain(s ? "is not a backend this runtime has" : "is missing", "backend", s);
		return -EINVAL;
	}
	if (lease_fd(kv, "region_fd", true, &l->region_fd) < 0 ||
	    lease_fd(kv, "ctl_fd", false, &l->ctl_fd) < 0)
		return -EINVAL;
	/* The backend's own descriptors are checked by its open(); name the
	 * missing one here already, so the message is about the lease. */
	if (strcmp(l->ops->name, "afxdp") == 0 &&
	    (lease_fd(kv, "xsk_fd", true, &fd) < 0 || lease_fd(kv, "umem_fd", true, &fd) < 0))
		return -EINVAL;
	if (strcmp(l->ops->name, "afpacket") == 0 && lease_fd(kv, "packet_fd", true, &fd) < 0)
		return -EINVAL;
	if (strcmp(l->ops->name, "shm") == 0 &&
	    (lease_fd(kv, "ring_fd", true, &fd) < 0 || lease_fd(kv, "efd_netd_fd", true, &fd) < 0 ||
	     lease_fd(kv, "efd_app_fd", true, &fd) < 0))
		return -EINVAL;
	return 0;
}

/* The control socket of the librettod that gave the lease (tag l), taken
 * before the program can change its environment (nginx clears it). */
static char stack_ctl_sock[108];

const char *stack_lease_ctl_path(void)
{
	return stack_ctl_sock[0] ? stack_ctl_sock : ctl_path();
}

int stack_lease_read(struct stack_lease *l)
{
	const char *env = getenv(LIBRETTO_LEASE_ENV);
	char *text;
	int err;

	memset(l, 0, sizeof(*l));
	l->region_fd = l->ctl_fd = -1;
	if (!env)
		return -ENOENT;
	snprintf(stack_ctl_sock, sizeof(stack_ctl_sock), "%s", ctl_path());
	text = strdup(env);
	/* Whatever happens next, children of this program must not inherit
	 * the lease or the runtime. */
	unsetenv(LIBRETTO_LEASE_ENV);
	preload_remove_self();
	if (!text) {
		fprintf(stderr, "libretto: out of memory reading the lease\n");
		return -EINVAL;
	}
	err = kv_parse(&l->kv, text, strlen(text));
	free(text);
	if (err < 0) {
		fprintf(stderr, "libretto: bad lease in " LIBRETTO_LEASE_ENV
			": not a record of at most %d key=value pairs\n", KV_MAX);
		return -EINVAL;
	}
	err = lease_validate(l);
	if (err < 0)
		kv_free(&l->kv);
	return err;
}

static bool key_is_fd(const char *key)
{
	size_t n = strlen(key);

	return n > 3 && strcmp(key + n - 3, "_fd") == 0;
}

/* Where received descriptors go: STACK_FD_BASE, or with a low descriptor
 * limit just under it rather than fail. */
static int stack_fd_base(void)
{
	struct rlimit rl;
	int base = STACK_FD_BASE;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)base + 2 * CTL_MAX_FDS)
		base = rl.rlim_cur > 3 * CTL_MAX_FDS ? (int)rl.rlim_cur - 2 * CTL_MAX_FDS : 3;
	return base;
}

/* Move fd to a private high number; the new number or -errno. */
static int stack_fd_take(int fd, int base)
{
	int nfd = real.fcntl(fd, F_DUPFD_CLOEXEC, (long)base), err;

	if (nfd < 0)
		return -errno;
	err = stack_private_add(nfd);
	if (err < 0) {
		real.close(nfd);
		return err;
	}
	real.close(fd);
	return nfd;
}

int stack_lease_adopt(const char *text, const int *fds, int nfds, struct kv *out, int *taken)
{
	struct kv in;
	struct kv_buf b;
	char buf[4096], names[256], *save = NULL;
	const char *list;
	int base = stack_fd_base(), n = 0, err;

	err = kv_parse(&in, text, strlen(text));
	if (err < 0)
		return err;
	list = kv_get(&in, "fds");
	snprintf(names, sizeof(names), "%s", list ? list : "");
	kv_buf_init(&b, buf, sizeof(buf));
	for (int i = 0; i < in.n; i++)
		if (strcmp(in.pair[i].key, "fds") != 0 && !key_is_fd(in.pair[i].key))
			kv_buf_add(&b, '\n', in.pair[i].key, "%s", in.pair[i].value);
	for (char *tok = strtok_r(names, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char key[64];
		int nfd;

		if (n == nfds) {
			err = -EPROTO;	/* fewer descriptors than names */
			goto fail;
		}
		nfd = stack_fd_take(fds[n], base);
		if (nfd < 0) {
			err = nfd;
			goto fail;
		}
		taken[n++] = nfd;
		snprintf(key, sizeof(key), "%.59s_fd", tok);
		kv_buf_add(&b, '\n', key, "%d", nfd);
	}
	if (n != nfds || !kv_buf_ok(&b)) {
		err = -EPROTO;
		goto fail;
	}
	err = kv_parse(out, b.p, b.len);
	if (err == 0) {
		kv_free(&in);
		return n;
	}
fail:
	/* The ones not moved yet are still the caller's numbers: close them too. */
	for (int i = 0; i < n; i++) {
		stack_private_forget(taken[i]);
		real.close(taken[i]);
	}
	for (int i = n; i < nfds; i++)
		real.close(fds[i]);
	kv_free(&in);
	return err;
}

int stack_lease_move_fds(struct stack_lease *l)
{
	struct kv *kv = &l->kv;
	struct kv_buf b;
	char text[4096];
	int base = stack_fd_base(), err;

	kv_buf_init(&b, text, sizeof(text));
	for (int i = 0; i < kv->n; i++) {
		const char *key = kv->pair[i].key;
		unsigned long v;
		int fd, nfd;

		if (!key_is_fd(key)) {
			kv_buf_add(&b, ' ', key, "%s", kv->pair[i].value);
			continue;
		}
		if (kv_get_ulong(kv, key, &v) < 0 || v > INT_MAX) {
			lease_complain("is not a descriptor number", key, kv->pair[i].value);
			return -EINVAL;
		}
		fd = (int)v;
		nfd = stack_fd_take(fd, base);
		if (nfd < 0) {
			fprintf(stderr, "libretto: lease descriptor %s=%d: %s\n", key, fd,
				nfd == -EMFILE ? "too many descriptors in the lease" : strerror(-nfd));
			return nfd == -EBADF || nfd == -EMFILE ? -EINVAL : nfd;
		}
		kv_buf_add(&b, ' ', key, "%d", nfd);
		if (strcmp(key, "region_fd") == 0)
			l->region_fd = nfd;
		else if (strcmp(key, "ctl_fd") == 0)
			l->ctl_fd = nfd;
	}
	if (!kv_buf_ok(&b)) {
		fprintf(stderr, "libretto: bad lease: longer than %zu bytes\n", sizeof(text));
		return -EINVAL;
	}
	/* The lease as an exec hands it on: same record, the new numbers. */
	free(stack_exec_env);
	stack_exec_env = malloc(sizeof(LIBRETTO_LEASE_ENV "=") + b.len);
	if (!stack_exec_env) {
		fprintf(stderr, "libretto: out of memory rewriting the lease\n");
		return -ENOMEM;
	}
	memcpy(stack_exec_env, LIBRETTO_LEASE_ENV "=", sizeof(LIBRETTO_LEASE_ENV "=") - 1);
	memcpy(stack_exec_env + sizeof(LIBRETTO_LEASE_ENV "=") - 1, b.p, b.len);
	stack_exec_env[sizeof(LIBRETTO_LEASE_ENV "=") - 1 + b.len] = '\0';
	kv_free(kv);
	err = kv_parse(kv, b.p, b.len);
	if (err < 0) {
		fprintf(stderr, "libretto: out of memory rewriting the lease\n");
		return err;
	}
	return 0;
}

void stack_lease_free(struct stack_lease *l)
{
	kv_free(&l->kv);
}
