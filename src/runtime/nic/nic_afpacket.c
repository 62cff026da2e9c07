/* The AF_PACKET backend: the fallback when AF_XDP cannot be set up; one raw packet socket. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>

#include "ipx/real.h"
#include "nic/nic.h"

#define AFPACKET_BATCH 64
/* Room for any frame of a 1500-byte MTU link with a VLAN tag, rounded. */
#define AFPACKET_BUF 2048

struct afpacket {
	int fd;
	int ifindex;             /* 0: the socket is bound, send without an address */
	bool quiesced;
	struct mmsghdr msgs[AFPACKET_BATCH];
	struct iovec iovs[AFPACKET_BATCH];
	struct sockaddr_ll from[AFPACKET_BATCH];
	unsigned char bufs[AFPACKET_BATCH][AFPACKET_BUF];
};

static int afpacket_open(struct nic *nic, const struct kv *lease)
{
	unsigned long fd, ifindex = 0;
	struct afpacket *a;
	int domain = 0, one = 1;
	socklen_t len = sizeof(domain);

	if (kv_get_ulong(lease, "packet_fd", &fd) < 0 || fd > 0x7fffffff) {
		fprintf(stderr, "libretto: afpacket: lease key packet_fd is missing or bad\n");
		return -EINVAL;
	}
	if (real.getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
	    domain != AF_PACKET) {
		fprintf(stderr, "libretto: afpacket: packet_fd=%lu is not an AF_PACKET socket\n", fd);
		return -EINVAL;
	}
	/* Optional: a socket the supervisor bound needs no address per frame. */
	if (kv_get_ulong(lease, "ifindex", &ifindex) < 0 || ifindex > 0x7fffffff)
		ifindex = 0;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->fd = (int)fd;
	a->ifindex = (int)ifindex;
	/* Our own transmissions would otherwise come back to us as copies;
	 * rx() also drops PACKET_OUTGOING for kernels without the option. */
	real.setsockopt(a->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
	for (int i = 0; i < AFPACKET_BATCH; i++) {
		a->iovs[i].iov_base = a->bufs[i];
		a->iovs[i].iov_len = AFPACKET_BUF;
		a->msgs[i].msg_hdr.msg_iov = &a->iovs[i];
		a->msgs[i].msg_hdr.msg_iovlen = 1;
		a->msgs[i].msg_hdr.msg_name = &a->from[i];
	}
	nic->priv = a;
	return 0;
}

static void afpacket_quiesce(struct nic *nic)
{
	struct afpacket *a = nic->priv;

	a->quiesced = true;
}

static void afpacket_close(struct nic *nic)
{
	struct afpacket *a = nic->priv;

	if (!a)
		return;
	real.close(a->fd);
	free(a);
	nic->priv = NULL;
}

static int afpacket_rx(struct nic *nic, int budget, nic_rx_fn fn, void *arg)
{
	struct afpacket *a = nic->priv;
	int n;

	if (budget > AFPACKET_BATCH)
		budget = AFPACKET_BATCH;
	for (int i = 0; i < budget; i++) {
		a->msgs[i].msg_hdr.msg_namelen = sizeof(a->from[i]);
		a->msgs[i].msg_hdr.msg_flags = 0;
		a->msgs[i].msg_len = 0;
	}
	n = real.recvmmsg(a->fd, a->msgs, (unsigned)budget, MSG_DONTWAIT, NULL);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		/* ENETDOWN while the link is down is not fatal. */
		return errno == ENETDOWN ? 0 : -errno;
	}
	for (int i = 0; i < n; i++) {
		const struct sockaddr_ll *sll = &a->from[i];

		if (a->msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
			continue;
		if (sll->sll_pkttype == PACKET_OUTGOING || sll->sll_pkttype == PACKET_OTHERHOST)
			continue;
		fn(arg, a->bufs[i], a->msgs[i].msg_len);
	}
	return n;
}

static int afpacket_tx(struct nic *nic, const struct iovec *iov, int iovcnt)
{
	struct afpacket *a = nic->priv;
	struct sockaddr_ll to = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(ETH_P_ALL),
		.sll_ifindex = a->ifindex,
		.sll_halen = 6,
	};
	struct msghdr msg = {
		.msg_iov = (struct iovec *)iov,
		.msg_iovlen = (size_t)iovcnt,
	};

	if (a->quiesced)
		return -ENETDOWN;
	if (a->ifindex) {
		const unsigned char *eth = iov[0].iov_base;

		if (iov[0].iov_len >= 6)
			memcpy(to.sll_addr, eth, 6);
		msg.msg_name = &to;
		msg.msg_namelen = sizeof(to);
	}
	if (real.sendmsg(a->fd, &msg, MSG_DONTWAIT) < 0) {
		int e = errno;

		if (e == EAGAIN || e == ENOBUFS || e == EINTR)
			return -EAGAIN;
		return -e;
	}
	return 0;
}

static int afpacket_wait_fd(struct nic *nic)
{
	struct afpacket *a = nic->priv;

	return a->fd;
}

/* Every sendmsg() already went out: nothing is ever queued. */
static int afpacket_kick(struct nic *nic)
{
	return 0;
}

const struct nic_ops nic_afpacket_ops = {
	.name = "afpacket",
	.open = afpacket_open,
	.quiesce = afpacket_quiesce,
	.close = afpacket_close,
	.rx = afpacket_rx,
	.tx = afpacket_tx,
	.wait_fd = afpacket_wait_fd,
	.kick = afpacket_kick,
};
