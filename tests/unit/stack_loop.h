/* The unit-test stack fixture (stack_loop.c) and helpers for the lsock tests. */
#ifndef LIBRETTO_TEST_STACK_LOOP_H
#define LIBRETTO_TEST_STACK_LOOP_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "ipx/real.h"
#include "sock/lsock.h"
#include "stack/stack.h"

/* The fixture's netif is 10.0.0.1/24 and answers itself. */
#define LOOP_IP "10.0.0.1"

extern unsigned long stack_loop_dropped;
/* The state published for (proto, port) in the region, 0 if none. */
int stack_loop_port_state(uint8_t proto, uint16_t port);

/* Each test is a function returning 0 (pass), 1 (fail) or 77 (skip). */
#define CHECK(cond)                                                           \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: %s: check failed: %s\n",      \
				__FILE__, __LINE__, __func__, #cond);         \
			return 1;                                             \
		}                                                             \
	} while (0)

#define CHECK_EQ(a, b)                                                        \
	do {                                                                  \
		long long _a = (long long)(a), _b = (long long)(b);           \
		if (_a != _b) {                                               \
			fprintf(stderr, "%s:%d: %s: %s == %lld, expected %s == %lld\n", \
				__FILE__, __LINE__, __func__, #a, _a, #b, _b); \
			return 1;                                             \
		}                                                             \
	} while (0)

static inline struct sockaddr_in loop_addr(const char *ip, uint16_t port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static inline ssize_t loop_send(struct lsock *s, const void *buf, size_t n, int flags)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = n };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };

	return lsock_sendmsg(s, &m, flags);
}

static inline ssize_t loop_recv(struct lsock *s, void *buf, size_t n, int flags)
{
	struct iovec v = { .iov_base = buf, .iov_len = n };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };

	return lsock_recvmsg(s, &m, flags);
}

/* A new lsock with a descriptor reference, like a fresh socket(). */
static inline struct lsock *loop_socket(int kfd, int type)
{
	struct lsock *s = NULL;

	if (lsock_create(kfd, type, &s) < 0)
		return NULL;
	lsock_fd_get(s);
	return s;
}

/* close(): the last descriptor goes, then the creator's hold. */
static inline void loop_close(struct lsock *s)
{
	lsock_fd_put(s);
	lsock_drop(s);
}

/* Wait (bounded) until lsock_events(s) has any of mask. */
static inline bool loop_wait_events(struct lsock *s, uint32_t mask, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (lsock_events(s) & mask)
			return true;
		usleep(1000);
	}
	return (lsock_events(s) & mask) != 0;
}

#endif
