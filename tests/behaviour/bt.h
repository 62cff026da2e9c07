/* Shared helpers of the socket behaviour suite: deterministic observation lines, peer services, checksums. */
#ifndef BT_H
#define BT_H

/* The headers nearly every behaviour program needs, so each program lists only its extras. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/*
 * Every subject program prints one line per step on stdout, built only from
 * values that are the same on every correct stack and every run: return value
 * classes, errno names, byte counts and checksums.  Addresses, ports, fd
 * numbers and timings are never printed; they are reduced to classes
 * ("self", "peer", "nonzero").  The runner compares the output of a run on
 * the Linux kernel stack with the output of a run under libretto.
 */

/* The peer agent's fixed services (TCP unless noted), all on the peer's IP. */
#define BT_PORT_ECHO 7001     /* echoes until EOF, then closes */
#define BT_PORT_SEND 7002     /* reads "N\n", sends N pattern bytes, closes */
#define BT_PORT_RESET 7003    /* reads once, then closes with SO_LINGER 0 (RST) */
#define BT_PORT_UDP_ECHO 7004 /* UDP: echoes each datagram to its sender */
#define BT_PORT_SINK 7005     /* reads until EOF, replies "bytes=N fnv=X\n", closes */
#define BT_PORT_OBSERVE 7006  /* reads "TOKEN\n", sends 4096 bytes, records how its read ends */
#define BT_PORT_RESULT 7007   /* reads "TOKEN\n", replies "result=... \n" for BT_PORT_OBSERVE */
#define BT_PORT_CALLBACK 7008 /* reads "IP PORT COUNT BYTES DELAY_MS\n", connects back to the subject */
#define BT_PORT_CLOSED 7009   /* nothing ever listens here */
#define BT_PORT_HOLD 7010     /* small receive buffer, never reads; closes when the client does */

#define BT_FNV_INIT 0xcbf29ce484222325ULL

extern struct in_addr bt_self; /* the subject's own IP (argv[1] or BT_SELF) */
extern struct in_addr bt_peer; /* the peer agent's IP (argv[2], BT_PEER, default 10.42.0.1) */

/*
 * Parse the addresses, make stdout line buffered, ignore SIGPIPE and arm an
 * alarm of `seconds` so that a hung step kills the program (the runner then
 * sees the missing lines and the signal).
 */
void bt_init(int argc, char **argv, unsigned seconds);

/* Print one observation line (a newline is appended). */
void bt_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The symbolic name of an errno value ("ECONNRESET"), or "E<number>". */
const char *bt_errname(int e);

/* "step: ok" when r >= 0, "step: -1 ENAME" (from errno) otherwise; returns r. */
long bt_ok(const char *step, long r);
/* "step: <r>" when r >= 0, "step: -1 ENAME" otherwise; returns r. */
long bt_val(const char *step, long r);

/* Event and revents masks as names ("IN|OUT|RDHUP"); the string is static. */
const char *bt_epoll_events(uint32_t ev);
const char *bt_poll_events(short ev);

/* Classify an IPv4 sockaddr: "self", "peer", "any" or "other". */
const char *bt_addr_class(const struct sockaddr_in *sa);

uint64_t bt_fnv(uint64_t h, const void *buf, size_t n);
/* The deterministic byte stream the peer's services send. */
void bt_pattern(uint8_t *buf, size_t n, uint64_t off);

/* Small socket helpers; they print nothing and return an fd or -errno. */
int bt_tcp_socket(int nonblock);
int bt_connect_peer(uint16_t port);
int bt_listen_self(uint16_t port, int backlog);
uint16_t bt_local_port(int fd);
int bt_write_all(int fd, const void *buf, size_t n);
/* Read until n bytes or EOF; returns the count or -errno. */
ssize_t bt_read_full(int fd, void *buf, size_t n);
/* Read one line (without the newline) byte by byte; returns its length or -errno. */
ssize_t bt_read_line(int fd, char *buf, size_t n);
/* Read until EOF, accumulating a count and a checksum; returns the count or -errno. */
ssize_t bt_drain(int fd, uint64_t *fnv);
/* poll() one fd for `events` up to ms; returns revents, 0 on timeout or -errno. */
int bt_wait(int fd, short events, int ms);

/*
 * Ask the peer agent to connect back to us: it opens `count` connections to
 * bt_self:port one after the other (after delay_ms), sends `bytes` pattern
 * bytes on each, shuts down its write side and reads until EOF.  Returns the
 * control connection; its reply (one line per connection, then "done") is
 * read with bt_callback_report() once the subject has served the connections.
 */
int bt_callback(uint16_t port, int count, size_t bytes, int delay_ms);
/* Print the peer's report lines prefixed by `step`; closes ctl. Returns 0 or -errno. */
int bt_callback_report(const char *step, int ctl);

#endif
