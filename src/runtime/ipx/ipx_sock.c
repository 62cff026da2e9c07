/* The socket calls: libOS sockets go to the socket layer, the rest to libc. */
/* Our fcntl/sendfile must keep their own names: with 64-bit file offsets
 * requested, glibc's headers would rename the definitions to *64. */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "ipx/ipx.h"
#include "ipx/ipx_relay.h"
#include "stack/stack.h"

/*
 * glibc declares the sockaddr parameters as a transparent union under
 * _GNU_SOURCE; the definitions below must use the same types, so they take
 * the union and unwrap it.
 */
#define SA(a) ((a).__sockaddr__)

extern void __chk_fail(void) __attribute__((noreturn));
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
		       __SOCKADDR_ARG sa, socklen_t *len);

/* Linux raises SIGPIPE on the sending thread when a stream is shut down for
 * writing, unless MSG_NOSIGNAL. */
static ssize_t ipx_sigpipe(ssize_t r, int flags)
{
	if (r == -EPIPE && !(flags & MSG_NOSIGNAL))
		pthread_kill(pthread_self(), SIGPIPE);
	return r;
}

static struct ipx_file *ipx_get_relay(int fd);

/*
 * A lookup found a runtime-private descriptor (pinned as f): NULL (the
 * kernel's) for the runtime's own calls, else &ipx_private unpinned, on
 * which the wrapper fails with EBADF (ipx.h, ipx_rt_enter).
 */
static struct ipx_file *ipx_get_private(struct ipx_file *f)
{
	ipx_put(f);
	return ipx_priv_ok() ? NULL : &ipx_private;
}

/* The file behind fd's data calls: a libOS socket, or (forked child) a
 * relayed UDP socket whose datagrams carry their address; pinned, or NULL
 * for the kernel's. */
static struct ipx_file *ipx_get_io(int fd)
{
	struct ipx_file *f = ipx_get(fd);

	if (f == &ipx_private)
		return ipx_get_private(f);
	if (f != NULL && f->kind != IPX_SOCK &&
	    !(f->kind == IPX_RELAY && ipx_relay_is_dgram(f))) {
		ipx_put(f);
		f = NULL;
	}
	return f;
}

static ssize_t ipx_do_recvmsg(struct ipx_file *f, int fd, struct msghdr *msg, int flags)
{
	if (f->kind == IPX_RELAY)
		return ipx_relay_udp_recvmsg(f, fd, msg, flags);
	return lsock_recvmsg(f->sock, msg, flags);
}

static ssize_t ipx_do_sendmsg(struct ipx_file *f, int fd, const struct msghdr *msg, int flags)
{
	if (f->kind == IPX_RELAY)
		return ipx_relay_udp_sendmsg(f, fd, msg, flags);
	return lsock_sendmsg(f->sock, msg, flags);
}

/*
 * Started by the first socket the libOS would serve (stack.h).  Weak, so
 * the interposition layer also links without the stack (unit tests).
 */
extern int stack_start(void) __attribute__((weak));

/*
 * Is this socket() call one the libOS serves?  AF_INET6 too: the socket
 * layer serves it over IPv4 through v4-mapped addresses, as a dual-stack
 * socket, and keeps pure IPv6 on its kernel socket.  The first such call
 * starts the stack.  Returns 1 (ours), 0 (the kernel's: no lease), or
 * -ENETDOWN (a lease, but the stack cannot run in this process: a silent
 * kernel socket would be the fallback the lease forbids).
 */
static int ipx_socket_ours(int domain, int type, int protocol)
{
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	bool ok;
	int err;

	if (domain != AF_INET && domain != AF_INET6)
		return 0;
	if (base == SOCK_STREAM)
		ok = protocol == 0 || protocol == IPPROTO_TCP;
	else if (base == SOCK_DGRAM)
		ok = protocol == 0 || protocol == IPPROTO_UDP;
	else
		ok = false;
	if (!ok)
		return 0;
	/* The stack is the owner's (ipx_relay.h). */
	if (ipx_relay_child)
		return 2;
	if (stack_start == NULL)
		return stack_active();
	err = stack_start();
	if (err == -ENOENT)
		return 0;
	return err < 0 ? err : 1;
}

IPX_EXPORT int socket(int domain, int type, int protocol)
{
	struct ipx_file *f;
	struct lsock *s;
	int kfd, err, ours;

	real_init();
	ours = ipx_socket_ours(domain, type, protocol);
	if (ours < 0) {
		errno = -ours;
		return -1;
	}
	kfd = real.socket(domain, type, protocol);
	if (kfd < 0 || !ours)
		return kfd;
	if (ours == 2) {
		err = ipx_relay_socket(domain, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), kfd);
		if (err < 0) {
			real.close(kfd);
			errno = -err;
			return -1;
		}
		return kfd;
	}
	err = lsock_create_domain(kfd, domain, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), &s);
	if (err == -EAFNOSUPPORT)
		return kfd;	/* a socket layer without that domain: the kernel's */
	if (err < 0)
		goto fail_close;
	if (type & SOCK_NONBLOCK)
		lsock_set_nonblock(s, true);
	f = ipx_file_new(IPX_SOCK);
	if (f == NULL) {
		err = -ENOMEM;
		goto fail_drop;
	}
	/* The file takes over lsock_create's hold. */
	f->sock = s;
	f->domain = domain;
	err = ipx_attach(f, kfd);
	ipx_put(f);
	if (err < 0)
		goto fail_close;
	return kfd;

fail_drop:
	lsock_fd_get(s);
	lsock_fd_put(s);
	lsock_drop(s);
fail_close:
	real.close(kfd);
	errno = -err;
	return -1;
}

IPX_EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
	real_init();
	return real.socketpair(domain, type, protocol, sv);
}

IPX_EXPORT int bind(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	struct ipx_file *f = ipx_get_relay(fd);
	int r;

	if (f != NULL) {
		r = ipx_relay_bind(f, fd, SA(addr), len);
		ipx_put(f);
		return (int)ipx_ret(r);
	}
	f = ipx_get_sock(fd);
	if (f == NULL)
		return real.bind(fd, SA(addr), len);
	r = lsock_bind(f->sock, SA(addr), len);
	/* A wildcard UDP socket's kernel side (loopback datagrams) too. */
	if (r == 0 && !LIST_EMPTY(&f->members))
		ipx_members_kcheck(f);
	ipx_put(f);
	return (int)ipx_ret(r);
}

IPX_EXPORT int listen(int fd, int backlog)
{
	struct ipx_file *f = ipx_get_relay(fd);
	int r;

	if (f != NULL) {
		r = ipx_relay_listen(f, fd, backlog);
		ipx_put(f);
		return (int)ipx_ret(r);
	}
	f = ipx_get_sock(fd);
	if (f == NULL)
		return real.listen(fd, backlog);
	r = lsock_listen(f->sock, backlog);
	/* A listener's kernel side (loopback clients) now carries events:
	 * the epoll sets that already hold it must watch that too. */
	if (r == 0 && !LIST_EMPTY(&f->members))
		ipx_members_kcheck(f);
	ipx_put(f);
	return (int)ipx_ret(r);
}

static int ipx_accept(int fd, struct sockaddr *sa, socklen_t *len, int flags, bool is4)
{
	struct ipx_file *f = ipx_get(fd), *nf;
	struct lsock *ns = NULL;
	int nkfd = -1, kfd, err, domain;

	if (f != NULL && f->kind == IPX_RELAY) {
		err = ipx_relay_accept(f, fd, sa, len, flags);
		ipx_put(f);
		return (int)ipx_ret(err);
	}
	if (f != NULL && f->kind != IPX_SOCK) {
		ipx_put(f);
		f = NULL;
	}
	if (f == NULL)
		return is4 ? real.accept4(fd, sa, len, flags) : real.accept(fd, sa, len);
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
		ipx_put(f);
		errno = EINVAL;
		return -1;
	}
	domain = f->domain;
	err = lsock_accept(f->sock, &ns, &nkfd, sa, len, flags);
	ipx_put(f);
	if (err < 0)
		return (int)ipx_ret(err);
	/* A kernel connection (a loopback client of the listener's kernel
	 * side) comes from accept4() with the caller's flags. */
	if (ns == NULL)
		return nkfd;
	/* A libOS connection: a kernel socket reserves its number. */
	kfd = real.socket(domain, SOCK_STREAM | (flags & (SOCK_NONBLOCK | SOCK_CLOEXEC)), 0);
	if (kfd < 0) {
		err = -errno;
		goto fail_drop;
	}
	nf = ipx_file_new(IPX_SOCK);
	if (nf == NULL) {
		err = -ENOMEM;
		real.close(kfd);
		goto fail_drop;
	}
	nf->sock = ns;
	nf->domain = domain;
	/* The connection's kernel side: it carries nothing, but the socket
	 * layer may poll or query it like any lsock's kfd. */
	lsock_set_kfd(ns, kfd);
	err = ipx_attach(nf, kfd);
	ipx_put(nf);
	if (err < 0) {
		real.close(kfd);
		errno = -err;
		return -1;
	}
	return kfd;

fail_drop:
	/* We cannot give the connection a descriptor: close it (the peer
	 * sees a reset or FIN, as with a listener that went away). */
	lsock_fd_get(ns);
	lsock_fd_put(ns);
	lsock_drop(ns);
	errno = -err;
	return -1;
}

IPX_EXPORT int accept(int fd, __SOCKADDR_ARG addr, socklen_t *len)
{
	return ipx_accept(fd, SA(addr), len, 0, false);
}

IPX_EXPORT int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *len, int flags)
{
	return ipx_accept(fd, SA(addr), len, flags, true);
}

static void ipx_kernel_nonblock(int fd, bool on)
{
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;
	int fl = rf(fd, F_GETFL, 0L);

	if (fl >= 0 && !!(fl & O_NONBLOCK) != on)
		(void)rf(fd, F_SETFL, (long)(on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK));
}

/*
 * -EXDEV from the socket layer: the destination is the kernel's (loopback,
 * another subnet).  The descriptor becomes a plain kernel socket: its slot
 * is cleared, the lsock (never used on lwIP) released, and the kernel
 * socket behind it connects.  Other descriptors dup'ed from it (rare before
 * connect) keep naming the lsock.  Its epoll registrations move to the
 * kernel sets.
 */
IPX_EXPORT int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	struct ipx_file *f = ipx_get_relay(fd);
	void *old;
	int r;

	if (f != NULL) {
		r = ipx_relay_connect(f, fd, SA(addr), len);
		ipx_put(f);
		return (int)ipx_ret(r);
	}
	f = ipx_get_sock(fd);
	if (f == NULL)
		return real.connect(fd, SA(addr), len);
	r = lsock_connect(f->sock, SA(addr), len);
	if (r == -EXDEV) {
		/* From now on the kernel's O_NONBLOCK is the program's. */
		ipx_kernel_nonblock(fd, lsock_nonblock(f->sock));
		ipx_member_convert_all(f);
		pthread_mutex_lock(&ipx_lock);
		if (fdtab_peek(fd) == f)
			fdtab_swap(fd, NULL, &old);
		else
			old = NULL;
		pthread_mutex_unlock(&ipx_lock);
		ipx_put(f);
		if (old != NULL)
			ipx_detach(old);
		return real.connect(fd, SA(addr), len);
	}
	ipx_put(f);
	return (int)ipx_ret(r);
}

IPX_EXPORT int shutdown(int fd, int how)
{
	struct ipx_file *f = ipx_get_sock(fd);
	int r;

	if (f == NULL)
		return real.shutdown(fd, how);
	r = lsock_shutdown(f->sock, how);
	ipx_put(f);
	return (int)ipx_ret(r);
}

static ssize_t ipx_recv_iov(struct ipx_file *f, int fd, const struct iovec *iov, int cnt,
			    int flags, struct sockaddr *sa, socklen_t *len)
{
	struct msghdr msg = {
		.msg_name = sa,
		.msg_namelen = len ? *len : 0,
		.msg_iov = (struct iovec *)iov,
		.msg_iovlen = (size_t)cnt,
	};
	ssize_t r;

	r = ipx_do_recvmsg(f, fd, &msg, flags);
	if (r >= 0 && len != NULL)
		*len = msg.msg_namelen;
	ipx_put(f);
	return ipx_ret(r);
}

static ssize_t ipx_send_iov(struct ipx_file *f, int fd, const struct iovec *iov, int cnt,
			    int flags, const struct sockaddr *sa, socklen_t len)
{
	struct msghdr msg = {
		.msg_name = (void *)sa,
		.msg_namelen = sa ? len : 0,
		.msg_iov = (struct iovec *)iov,
		.msg_iovlen = (size_t)cnt,
	};
	ssize_t r;

	r = ipx_sigpipe(ipx_do_sendmsg(f, fd, &msg, flags), flags);
	ipx_put(f);
	return ipx_ret(r);
}

/* read/write/readv/writev also serve volume files (ipx_vfile_rw): the
 * file, pinned, when fd is a socket or a volume file, else NULL. */
static struct ipx_file *ipx_get_rw(int fd)
{
	struct ipx_file *f = ipx_get(fd);

	if (f == &ipx_private)
		return ipx_get_private(f);
	if (f != NULL && f->kind != IPX_SOCK && f->kind != IPX_VFILE &&
	    !(f->kind == IPX_RELAY && ipx_relay_is_dgram(f))) {
		ipx_put(f);
		f = NULL;
	}
	return f;
}

IPX_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	struct ipx_file *f = ipx_get_rw(fd);
	struct iovec iov = { buf, n };

	if (f == NULL)
		return real.read(fd, buf, n);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	if (f->kind == IPX_VFILE)
		return ipx_ret(ipx_vfile_rw(f, &iov, 1, false));
	return ipx_recv_iov(f, fd, &iov, 1, 0, NULL, NULL);
}

IPX_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	struct ipx_file *f = ipx_get_rw(fd);
	struct iovec iov = { (void *)buf, n };

	if (f == NULL)
		return real.write(fd, buf, n);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	if (f->kind == IPX_VFILE)
		return ipx_ret(ipx_vfile_rw(f, &iov, 1, true));
	return ipx_send_iov(f, fd, &iov, 1, 0, NULL, 0);
}

IPX_EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	struct ipx_file *f = ipx_get_rw(fd);

	if (f == NULL)
		return real.readv(fd, iov, cnt);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	if (cnt < 0 || cnt > IOV_MAX) {
		ipx_put(f);
		return ipx_ret(-EINVAL);
	}
	if (f->kind == IPX_VFILE)
		return ipx_ret(ipx_vfile_rw(f, iov, cnt, false));
	return ipx_recv_iov(f, fd, iov, cnt, 0, NULL, NULL);
}

IPX_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	struct ipx_file *f = ipx_get_rw(fd);

	if (f == NULL)
		return real.writev(fd, iov, cnt);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	if (cnt < 0 || cnt > IOV_MAX) {
		ipx_put(f);
		return ipx_ret(-EINVAL);
	}
	if (f->kind == IPX_VFILE)
		return ipx_ret(ipx_vfile_rw(f, iov, cnt, true));
	return ipx_send_iov(f, fd, iov, cnt, 0, NULL, 0);
}

IPX_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	struct ipx_file *f = ipx_get_io(fd);
	struct iovec iov = { buf, n };

	if (f == NULL)
		return real.recv(fd, buf, n, flags);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	return ipx_recv_iov(f, fd, &iov, 1, flags, NULL, NULL);
}

IPX_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	struct ipx_file *f = ipx_get_io(fd);
	struct iovec iov = { (void *)buf, n };

	if (f == NULL)
		return real.send(fd, buf, n, flags);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	return ipx_send_iov(f, fd, &iov, 1, flags, NULL, 0);
}

IPX_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags,
			    __SOCKADDR_ARG addr, socklen_t *len)
{
	struct ipx_file *f = ipx_get_io(fd);
	struct iovec iov = { buf, n };

	if (f == NULL)
		return real.recvfrom(fd, buf, n, flags, SA(addr), len);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	return ipx_recv_iov(f, fd, &iov, 1, flags, SA(addr), SA(addr) ? len : NULL);
}

IPX_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags,
			  __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	struct ipx_file *f = ipx_get_io(fd);
	struct iovec iov = { (void *)buf, n };

	if (f == NULL)
		return real.sendto(fd, buf, n, flags, SA(addr), len);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	return ipx_send_iov(f, fd, &iov, 1, flags, SA(addr), len);
}

IPX_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct ipx_file *f = ipx_get_io(fd);
	ssize_t r;

	if (f == NULL)
		return real.recvmsg(fd, msg, flags);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	r = ipx_do_recvmsg(f, fd, msg, flags);
	ipx_put(f);
	return ipx_ret(r);
}

IPX_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct ipx_file *f = ipx_get_io(fd);
	ssize_t r;

	if (f == NULL)
		return real.sendmsg(fd, msg, flags);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	r = ipx_sigpipe(ipx_do_sendmsg(f, fd, msg, flags), flags);
	ipx_put(f);
	return ipx_ret(r);
}

static bool ipx_ts_passed(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > deadline->tv_sec ||
	       (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/*
 * recvmmsg as Linux: MSG_WAITFORONE turns on MSG_DONTWAIT after the first
 * datagram; the timeout is checked after each datagram; an error after at
 * least one datagram ends the batch and is not reported.
 */
IPX_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags,
			struct timespec *t)
{
	struct ipx_file *f = ipx_get_io(fd);
	struct timespec deadline;
	unsigned int i;
	ssize_t r = 0;

	if (f == NULL)
		return real.recvmmsg(fd, v, n, flags, t);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	if (t != NULL) {
		if (t->tv_sec < 0 || t->tv_nsec < 0 || t->tv_nsec >= 1000000000) {
			ipx_put(f);
			return (int)ipx_ret(-EINVAL);
		}
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += t->tv_sec;
		deadline.tv_nsec += t->tv_nsec;
		if (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
	}
	if (n > 1024)
		n = 1024;
	for (i = 0; i < n; i++) {
		r = ipx_do_recvmsg(f, fd, &v[i].msg_hdr, flags & ~MSG_WAITFORONE);
		if (r < 0)
			break;
		v[i].msg_len = (unsigned int)r;
		if (flags & MSG_WAITFORONE)
			flags |= MSG_DONTWAIT;
		if (t != NULL && ipx_ts_passed(&deadline)) {
			i++;
			break;
		}
	}
	ipx_put(f);
	if (i == 0 && r < 0)
		return (int)ipx_ret(r);
	return (int)i;
}

IPX_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
	struct ipx_file *f = ipx_get_io(fd);
	unsigned int i;
	ssize_t r = 0;

	if (f == NULL)
		return real.sendmmsg(fd, v, n, flags);
	if (f == &ipx_private)
		return ipx_ret(-EBADF);
	if (n > 1024)
		n = 1024;
	for (i = 0; i < n; i++) {
		r = ipx_sigpipe(ipx_do_sendmsg(f, fd, &v[i].msg_hdr, flags), flags);
		if (r < 0)
			break;
		v[i].msg_len = (unsigned int)r;
	}
	ipx_put(f);
	if (i == 0 && r < 0)
		return (int)ipx_ret(r);
	return (int)i;
}

/* A forked child's relayed socket (ipx_relay.h), pinned, or NULL. */
static struct ipx_file *ipx_get_relay(int fd)
{
	struct ipx_file *f;

	if (!ipx_relay_child)
		return NULL;
	f = ipx_get(fd);
	if (f != NULL && f->kind != IPX_RELAY) {
		ipx_put(f);
		f = NULL;
	}
	return f;
}

IPX_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct ipx_file *f = ipx_get_relay(fd);
	int r;

	if (f != NULL) {
		r = ipx_relay_getsockopt(f, fd, level, name, val, len);
		ipx_put(f);
		return (int)ipx_ret(r);
	}
	f = ipx_get_sock(fd);
	if (f == NULL)
		return real.getsockopt(fd, level, name, val, len);
	r = lsock_getsockopt(f->sock, level, name, val, len);
	ipx_put(f);
	/* Options the libOS does not model are the kernel socket's. */
	if (r == -ENOPROTOOPT && level == SOL_SOCKET)
		return real.getsockopt(fd, level, name, val, len);
	return (int)ipx_ret(r);
}

IPX_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	struct ipx_file *f = ipx_get_relay(fd);
	int r;

	if (f != NULL) {
		r = ipx_relay_setsockopt(f, fd, level, name, val, len);
		ipx_put(f);
		return (int)ipx_ret(r);
	}
	f = ipx_get_sock(fd);
	if (f == NULL)
		return real.setsockopt(fd, level, name, val, len);
	r = lsock_setsockopt(f->sock, level, name, val, len);
	ipx_put(f);
	/* The socket layer mirrors the options the kernel side needs
	 * (SO_REUSEADDR for its listener...) on kfd itself; what it does not
	 * know at the socket level is the kernel socket's. */
	if (r == -ENOPROTOOPT && level == SOL_SOCKET)
		return real.setsockopt(fd, level, name, val, len);
	return (int)ipx_ret(r);
}

IPX_EXPORT int getsockname(int fd, __SOCKADDR_ARG addr, socklen_t *len)
{
	struct ipx_file *f = ipx_get_relay(fd);
	int r;

	if (f != NULL) {
		r = ipx_relay_getname(f, false, SA(addr), len);
		ipx_put(f);
		return (int)ipx_ret(r);
	}
	f = ipx_get_sock(fd);
	if (f == NULL)
		return real.getsockname(fd, SA(addr), len);
	r = lsock_getsockname(f->sock, SA(addr), len);
	ipx_put(f);
	return (int)ipx_ret(r);
}

IPX_EXPORT int getpeername(int fd, __SOCKADDR_ARG addr, socklen_t *len)
{
	struct ipx_file *f = ipx_get_relay(fd);
	int r;

	if (f != NULL) {
		r = ipx_relay_getname(f, true, SA(addr), len);
		ipx_put(f);
		return (int)ipx_ret(r);
	}
	f = ipx_get_sock(fd);
	if (f == NULL)
		return real.getpeername(fd, SA(addr), len);
	r = lsock_getpeername(f->sock, SA(addr), len);
	ipx_put(f);
	return (int)ipx_ret(r);
}

IPX_EXPORT int ioctl(int fd, unsigned long req, ...)
{
	int (*rf)(int, unsigned long, ...);
	struct ipx_file *f;
	va_list ap;
	void *arg;
	int r;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	rf = (int (*)(int, unsigned long, ...))real.ioctl;
	if (fdtab_peek(fd) == &ipx_private && !ipx_priv_ok())
		return (int)ipx_ret(-EBADF);
	/* Volume files: their ioctls, but the descriptor flag is the kernel's. */
	if (fdtab_peek(fd) != NULL && ipx_vfile_ioctl != NULL && req != FIOCLEX && req != FIONCLEX) {
		f = ipx_get(fd);
		if (f != NULL && f->kind == IPX_VFILE) {
			r = ipx_vfile_ioctl(f, req, arg);
			ipx_put(f);
			return (int)ipx_ret(r);
		}
		if (f != NULL)
			ipx_put(f);
	}
	f = ipx_get_sock(fd);
	if (f == NULL)
		return rf(fd, req, arg);
	switch (req) {
	case FIONBIO:
		/* Set on the kernel fd too, never cleared (see fcntl). */
		r = lsock_ioctl(f->sock, req, arg);
		if (r == 0 && arg != NULL && *(int *)arg != 0)
			(void)rf(fd, req, arg);
		break;
	case FIONREAD:
	case SIOCOUTQ:
		r = lsock_ioctl(f->sock, req, arg);
		break;
	default:
		ipx_put(f);
		return rf(fd, req, arg);
	}
	ipx_put(f);
	return (int)ipx_ret(r);
}

/*
 * sendfile to a libOS socket: read the file into a buffer and send it.  With
 * off, pread from *off and advance it by what was sent; without, read at the
 * file offset and seek back over what could not be sent, as Linux leaves
 * the offset after the bytes actually transferred.
 */
static ssize_t ipx_sendfile(int out, int in, off_t *off, size_t n, bool is64)
{
	enum { CHUNK = 64 * 1024 };
	struct ipx_file *f = ipx_get_sock(out);
	size_t total = 0, want;
	ssize_t got, sent = 0;
	struct iovec iov;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	char *buf;
	off_t pos;
	int more;

	if (f == NULL && fdtab_peek(out) == &ipx_private && !ipx_priv_ok())
		return ipx_ret(-EBADF);
	/* From a volume file: the file layer's loop (to any descriptor). */
	if (fdtab_peek(in) != NULL && ipx_vfile_sendfile != NULL &&
	    ipx_vfile_sendfile(out, in, off, n, &sent)) {
		if (f != NULL)
			ipx_put(f);
		return sent;
	}
	if (f == NULL) {
		if (is64 && real.sendfile64 != NULL)
			return real.sendfile64(out, in, off, n);
		return real.sendfile(out, in, off, n);
	}
	buf = malloc(CHUNK);
	if (buf == NULL) {
		ipx_put(f);
		return ipx_ret(-ENOMEM);
	}
	pos = off ? *off : 0;
	while (total < n) {
		want = n - total < CHUNK ? n - total : CHUNK;
		got = off ? pread(in, buf, want, pos) : real.read(in, buf, want);
		if (got < 0) {
			sent = -errno;
			break;
		}
		if (got == 0)
			break;
		iov.iov_base = buf;
		iov.iov_len = (size_t)got;
		/*
		 * Blocks like write() when the socket is blocking.  Every chunk
		 * but the last goes with MSG_MORE, as Linux's sendfile marks its
		 * pieces, so no short segment is pushed at a chunk boundary.
		 */
		more = total + (size_t)got < n && (size_t)got == want ? MSG_MORE : 0;
		sent = ipx_sigpipe(lsock_sendmsg(f->sock, &msg, more), more);
		if (sent < 0) {
			if (!off)
				lseek(in, -got, SEEK_CUR);
			break;
		}
		if (!off && sent < got)
			lseek(in, -(got - sent), SEEK_CUR);
		total += (size_t)sent;
		pos += sent;
		if (sent < got)
			break;
	}
	if (off)
		*off = pos;
	free(buf);
	ipx_put(f);
	if (total == 0 && sent < 0)
		return ipx_ret(sent);
	return (ssize_t)total;
}

IPX_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
	return ipx_sendfile(out, in, off, n, false);
}

IPX_EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t n)
{
	return ipx_sendfile(out, in, off, n, true);
}

IPX_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return read(fd, buf, n);
}

IPX_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	if (n > buflen)
		__chk_fail();
	return recv(fd, buf, n, flags);
}

IPX_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
				  __SOCKADDR_ARG addr, socklen_t *len)
{
	if (n > buflen)
		__chk_fail();
	return recvfrom(fd, buf, n, flags, addr, len);
}
