/* fork(): the process that runs the stack serves the sockets its forked children inherited. */
#ifndef LIBRETTO_IPX_RELAY_H
#define LIBRETTO_IPX_RELAY_H

#include <stdbool.h>
#include <sys/socket.h>

struct ipx_file;

/*
 * The model (docs/runtime.md, "Fork"):
 *  - One process runs the stack and drives the NIC: the owner (the process
 *    that started it).  fork() in the owner goes through our wrapper, which
 *    gives the child a remote reference (lsock_remote_get) on every libOS
 *    socket it inherits and records the child (pid, pidfd).
 *  - A forked child has no stack of its own (ipx_relay_child).  The first
 *    time it uses an inherited libOS socket, it asks the owner's relay
 *    thread (a SOCK_SEQPACKET socket in the abstract namespace, same uid
 *    only) to attach it, and the descriptor number is re-pointed (dup3) at
 *    a kernel socket the owner serves:
 *      listener   a SOCK_SEQPACKET channel on which the owner hands over
 *                 connections it accepted for this child (accept() reads
 *                 one; epoll/poll see it readable), at most RELAY_UNACKED
 *                 unaccepted at a time per child, round robin among the
 *                 children that listen; a connection the child never
 *                 accepted (it closed the listener, or died) goes to
 *                 another child;
 *      connection a SOCK_STREAM socketpair end; the owner copies bytes
 *                 between it and the TCP connection both ways.
 *      UDP socket a SOCK_SEQPACKET channel carrying each datagram with its
 *                 address (struct rl_dgram); the data calls are ours.
 *    For TCP, reads, writes, sendfile, poll, epoll, shutdown, FIONREAD are
 *    then the kernel's; names and options are answered here
 *    (ipx_relay_getname, ipx_relay_getsockopt/setsockopt).
 *  - A socket stays open while any process holds it: closing it in the
 *    owner while a child still holds it (fork-per-connection servers) only
 *    drops a descriptor; the child's close (RELEASE), exit (pidfd) or its
 *    end of the relay being closed drops the child's reference.
 *  - Sockets a child makes are the owner's too: bind, listen and connect
 *    are done by the owner's stack and the descriptor re-pointed as above.
 *  - A child's own fork() asks the owner for a record first, so
 *    grandchildren are served the same way.
 *  - When the owner exits while children still use its sockets, a keeper
 *    (a fork of it taken at exit) goes on serving them (docs/runtime.md).
 * Not yet: a TCP reset reaches a child as end of file; a child's connect()
 * waits for the outcome even when the socket is non-blocking; errors the
 * stack reports for a child's datagram (EMSGSIZE aside) are not seen by it.
 */

/* True in a process forked from the owner (it has no stack). */
extern bool ipx_relay_child;

/* fork() in the owner: defined in ipx_relay.c (the X-macro list has it). */

/*
 * The functions below are weak: the unit tests link the interposition
 * layer without them (ipx_relay_child is never true there).
 */
#define IPX_RELAY_WEAK __attribute__((weak))

/* Child: f (pinned, an inherited IPX_SOCK at fd) is used for the first
 * time: attach it.  Returns the file now at fd, pinned (an IPX_RELAY
 * file), or NULL when fd is now a plain kernel descriptor (the owner
 * could not serve it; a line on stderr says why).  Consumes f's pin. */
IPX_RELAY_WEAK struct ipx_file *ipx_relay_adopt(int fd, struct ipx_file *f);
/* Child: the last descriptor of an inherited socket it never used went
 * away: drop its reference in the owner. */
IPX_RELAY_WEAK void ipx_relay_release(struct ipx_file *f);

/* Child, IPX_RELAY files. */
IPX_RELAY_WEAK int ipx_relay_accept(struct ipx_file *f, int fd, struct sockaddr *sa, socklen_t *len, int flags);
IPX_RELAY_WEAK int ipx_relay_getname(struct ipx_file *f, bool peer, struct sockaddr *sa, socklen_t *len);
IPX_RELAY_WEAK int ipx_relay_getsockopt(struct ipx_file *f, int fd, int level, int name, void *val,
			 socklen_t *len);
IPX_RELAY_WEAK int ipx_relay_setsockopt(struct ipx_file *f, int fd, int level, int name, const void *val,
			 socklen_t len);
IPX_RELAY_WEAK void ipx_relay_info_free(struct ipx_file *f);
/* Child, TCP sockets it makes: socket() attaches kfd as a new relayed
 * socket; bind/listen/connect make the owner's socket and, for listen and
 * connect, re-point the descriptor as for inherited ones.  Loopback and
 * IPv6 binds and connects leave the descriptor a plain kernel socket. */
IPX_RELAY_WEAK int ipx_relay_socket(int domain, int type, int kfd);
/* Child, UDP sockets (inherited or made): datagrams travel with their
 * address over a SOCK_SEQPACKET channel, so the data calls go through
 * these (the socket calls' wrappers dispatch when ipx_relay_is_dgram). */
IPX_RELAY_WEAK bool ipx_relay_is_dgram(const struct ipx_file *f);
IPX_RELAY_WEAK ssize_t ipx_relay_udp_recvmsg(struct ipx_file *f, int fd, struct msghdr *msg,
					     int flags);
IPX_RELAY_WEAK ssize_t ipx_relay_udp_sendmsg(struct ipx_file *f, int fd,
					     const struct msghdr *msg, int flags);
IPX_RELAY_WEAK int ipx_relay_bind(struct ipx_file *f, int fd, const struct sockaddr *sa,
				  socklen_t len);
IPX_RELAY_WEAK int ipx_relay_listen(struct ipx_file *f, int fd, int backlog);
IPX_RELAY_WEAK int ipx_relay_connect(struct ipx_file *f, int fd, const struct sockaddr *sa,
				     socklen_t len);
/* Owner, at exit (lsock.c): hand the sockets children still use to a
 * keeper; true if it did (this process must leave them alone). */
bool ipx_relay_exit_hook(void);

#endif
