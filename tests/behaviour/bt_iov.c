/* Behaviour: readv/writev and sendmsg/recvmsg (scatter-gather, flags, msg_flags) on TCP. */
#include "bt.h"

#include <sys/uio.h>

int main(int argc, char **argv)
{
	char a[5] = "hello", b[1] = { ' ' }, c[6] = "world!", r1[3], r2[4], r3[100];
	uint8_t big[200000], back[200000];
	struct iovec wv[3] = { { a, 5 }, { b, 1 }, { c, 6 } };
	struct iovec rv[3] = { { r1, 3 }, { r2, 4 }, { r3, sizeof(r3) } };
	struct msghdr m;
	int fd;

	bt_init(argc, argv, 30);
	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect", fd);

	bt_val("writev 3 iov", writev(fd, wv, 3));
	bt_wait(fd, POLLIN, 5000);
	/* Wait until all 12 bytes are back, so readv sees them at once. */
	for (int i = 0; i < 100 && bt_wait(fd, POLLIN, 0) > 0; i++) {
		if (recv(fd, r3, sizeof(r3), MSG_PEEK | MSG_DONTWAIT) >= 12)
			break;
		usleep(10000);
	}
	bt_val("readv 3 iov", readv(fd, rv, 3));
	bt_say("readv pieces: %.3s|%.4s|%.5s", r1, r2, r3);

	/* writev with an empty and a zero-length vector. */
	bt_val("writev empty", writev(fd, wv, 0));
	wv[1].iov_len = 0;
	bt_val("writev with zero-length element", writev(fd, wv, 3));
	wv[1].iov_len = 1;
	bt_wait(fd, POLLIN, 5000);
	usleep(50000);

	/* recvmsg with MSG_PEEK, then for real. */
	memset(&m, 0, sizeof(m));
	rv[0].iov_len = 3;
	m.msg_iov = rv;
	m.msg_iovlen = 3;
	bt_val("recvmsg MSG_PEEK", recvmsg(fd, &m, MSG_PEEK));
	bt_say("msg_flags: %d", m.msg_flags);
	bt_val("recvmsg", recvmsg(fd, &m, 0));
	bt_say("recvmsg pieces: %.3s|%.4s|%.4s", r1, r2, r3);

	/* sendmsg without a name, as on any connected stream socket. */
	memset(&m, 0, sizeof(m));
	m.msg_iov = wv;
	m.msg_iovlen = 3;
	bt_val("sendmsg", sendmsg(fd, &m, MSG_NOSIGNAL));
	bt_wait(fd, POLLIN, 5000);
	usleep(50000);
	memset(&m, 0, sizeof(m));
	rv[2].iov_len = sizeof(r3);
	m.msg_iov = rv;
	m.msg_iovlen = 3;
	bt_val("recvmsg MSG_WAITALL", recvmsg(fd, &m, MSG_WAITALL | MSG_DONTWAIT));

	/* A large writev of two halves comes back intact. */
	bt_pattern(big, sizeof(big), 99);
	{
		struct iovec hv[2] = { { big, 70001 }, { big + 70001, sizeof(big) - 70001 } };
		ssize_t w = 0, got;
		while (w < (ssize_t)sizeof(big)) {
			/* Loop on a short writev as careful programs do; the
			 * total, not the split, is what is compared. */
			ssize_t r = writev(fd, hv, 2);
			if (r <= 0)
				break;
			w += r;
			if (w < (ssize_t)sizeof(big)) {
				size_t off = (size_t)w;
				hv[0].iov_base = big + off;
				hv[0].iov_len = sizeof(big) - off;
				hv[1].iov_len = 0;
			}
		}
		bt_say("large writev total: %zd", w);
		got = bt_read_full(fd, back, sizeof(back));
		bt_val("large read back", got);
		bt_say("large fnv equal: %d", !memcmp(big, back, sizeof(big)));
	}
	bt_ok("readv on closed fd", readv(-1, rv, 1));
	close(fd);
	return 0;
}
