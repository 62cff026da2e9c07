/* Behaviour: many concurrent connections (200) to the echo service, driven by one epoll loop. */
#include "bt.h"

#include <sys/epoll.h>
#include <sys/resource.h>

#define MANY 200
#define MSG 100

struct conn {
	int fd;
	size_t sent, got;
	uint8_t in[MSG];
};

int main(int argc, char **argv)
{
	static struct conn c[MANY];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(BT_PORT_ECHO) };
	int ep, opened = 0, inprogress = 0, connected = 0, done = 0, bad = 0, rounds = 0;

	bt_init(argc, argv, 60);
	sa.sin_addr = bt_peer;
	ep = epoll_create1(0);

	/* Non-blocking connects, all in flight at once. */
	for (int i = 0; i < MANY; i++) {
		struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (uint32_t)i };
		c[i].fd = bt_tcp_socket(1);
		if (c[i].fd < 0)
			break;
		opened++;
		if (connect(c[i].fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == EINPROGRESS)
			inprogress++;
		else
			fprintf(stderr, "connect %d: %s\n", i, bt_errname(errno));
		epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
	}
	bt_say("sockets opened: %d", opened);
	bt_say("connects in progress: %d", inprogress);

	while (done + bad < opened && rounds++ < 20000) {
		struct epoll_event ev[64];
		int n = epoll_wait(ep, ev, 64, 5000);
		if (n <= 0) {
			bt_say("epoll_wait: %d %s", n, n < 0 ? bt_errname(errno) : "timeout");
			break;
		}
		for (int k = 0; k < n; k++) {
			struct conn *x = &c[ev[k].data.u32];
			int i = (int)ev[k].data.u32;
			if (ev[k].events & EPOLLOUT && x->sent < MSG) {
				int e = 0;
				socklen_t len = sizeof(e);
				uint8_t msg[MSG];
				getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &e, &len);
				if (e) {
					fprintf(stderr, "conn %d: %s\n", i, bt_errname(e));
					bad++;
					epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
					continue;
				}
				if (x->sent == 0)
					connected++;
				/* Each connection's bytes are distinct. */
				bt_pattern(msg, MSG, (uint64_t)i * MSG);
				ssize_t r = send(x->fd, msg + x->sent, MSG - x->sent, MSG_NOSIGNAL);
				if (r > 0)
					x->sent += (size_t)r;
				if (x->sent == MSG) {
					struct epoll_event m = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
					epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &m);
				}
			}
			if (ev[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				ssize_t r = recv(x->fd, x->in + x->got, MSG - x->got, 0);
				if (r > 0)
					x->got += (size_t)r;
				if (r == 0 || (r < 0 && errno != EAGAIN)) {
					bad++;
					epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
				} else if (x->got == MSG) {
					done++;
					epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
				}
			}
		}
	}
	bt_say("connected: %d", connected);
	bt_say("echoed: %d failed: %d", done, bad);
	{
		int ok = 0;
		for (int i = 0; i < opened; i++) {
			uint8_t want[MSG];
			bt_pattern(want, MSG, (uint64_t)i * MSG);
			ok += c[i].got == MSG && !memcmp(want, c[i].in, MSG);
		}
		bt_say("payloads intact: %d", ok);
	}

	/* All still open: close half with shutdown first, half directly. */
	{
		int closed = 0;
		for (int i = 0; i < opened; i++) {
			if (i % 2)
				shutdown(c[i].fd, SHUT_RDWR);
			closed += close(c[i].fd) == 0;
		}
		bt_say("closed: %d", closed);
	}

	/* The same again with blocking sockets opened one after another. */
	{
		int fds[MANY], okc = 0, oke = 0;
		for (int i = 0; i < MANY; i++) {
			char b[4];
			fds[i] = bt_connect_peer(BT_PORT_ECHO);
			if (fds[i] < 0)
				continue;
			okc++;
			if (send(fds[i], "abcd", 4, 0) == 4 && bt_read_full(fds[i], b, 4) == 4)
				oke++;
		}
		bt_say("blocking connects: %d echoes: %d", okc, oke);
		for (int i = 0; i < MANY; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	}
	close(ep);
	return 0;
}
