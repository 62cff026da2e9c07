/* Read the links and IPv4 addresses of the current network namespace over rtnetlink. */
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Send one dump request and hand every answer message to cb until
 * NLMSG_DONE.  The socket is created here, so it belongs to the namespace the
 * caller is in right now.
 */
static int netinfo_dump(int type, unsigned char family,
			void (*cb)(struct nlmsghdr *h, void *arg), void *arg)
{
	struct {
		struct nlmsghdr h;
		union {
			struct ifinfomsg ifi;
			struct ifaddrmsg ifa;
		} u;
	} req;
	static char buf[32768] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int fd, err = 0;
	bool done = false;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	memset(&req, 0, sizeof(req));
	req.h.nlmsg_type = (unsigned short)type;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.h.nlmsg_seq = 1;
	if (type == RTM_GETLINK) {
		req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
		req.u.ifi.ifi_family = family;
	} else {
		req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
		req.u.ifa.ifa_family = family;
	}
	if (sendto(fd, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		goto out;
	}
	/* A dump is finite; the bound only protects against a misbehaving kernel. */
	for (int rounds = 0; !done && rounds < 10000; rounds++) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto out;
		}
		if (n == 0)
			break;
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				done = true;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);

				err = e->error ? e->error : -EPROTO;
				goto out;
			}
			cb(h, arg);
		}
	}
out:
	close(fd);
	return err;
}

struct netinfo_acc {
	struct cli_link *links;
	int n, max;
};

static void netinfo_link_cb(struct nlmsghdr *h, void *arg)
{
	struct netinfo_acc *acc = arg;
	struct ifinfomsg *ifi = NLMSG_DATA(h);
	int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifi));
	struct cli_link *l;

	if (h->nlmsg_type != RTM_NEWLINK || len < 0 || acc->n == acc->max)
		return;
	l = &acc->links[acc->n++];
	memset(l, 0, sizeof(*l));
	l->index = ifi->ifi_index;
	l->flags = ifi->ifi_flags;
	for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		switch (a->rta_type) {
		case IFLA_IFNAME:
			snprintf(l->name, sizeof(l->name), "%.*s", (int)RTA_PAYLOAD(a),
				 (char *)RTA_DATA(a));
			break;
		case IFLA_ADDRESS:
			if (RTA_PAYLOAD(a) == 6) {
				memcpy(l->mac, RTA_DATA(a), 6);
				l->has_mac = true;
			}
			break;
		case IFLA_MASTER:
			if (RTA_PAYLOAD(a) >= sizeof(int))
				memcpy(&l->master, RTA_DATA(a), sizeof(int));
			break;
		case IFLA_MTU:
			if (RTA_PAYLOAD(a) >= sizeof(unsigned int))
				memcpy(&l->mtu, RTA_DATA(a), sizeof(unsigned int));
			break;
		case IFLA_OPERSTATE:
			if (RTA_PAYLOAD(a) >= 1)
				l->operstate = *(unsigned char *)RTA_DATA(a);
			break;
		case IFLA_LINKINFO: {
			int ilen = (int)RTA_PAYLOAD(a);

			for (struct rtattr *b = RTA_DATA(a); RTA_OK(b, ilen); b = RTA_NEXT(b, ilen))
				if (b->rta_type == IFLA_INFO_KIND)
					snprintf(l->kind, sizeof(l->kind), "%.*s",
						 (int)RTA_PAYLOAD(b), (char *)RTA_DATA(b));
			break;
		}
		default:
			break;
		}
	}
}

static void netinfo_addr_cb(struct nlmsghdr *h, void *arg)
{
	struct netinfo_acc *acc = arg;
	struct ifaddrmsg *ifa = NLMSG_DATA(h);
	int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifa));
	const void *local = NULL, *address = NULL;
	char ip[INET_ADDRSTRLEN];

	if (h->nlmsg_type != RTM_NEWADDR || len < 0 || ifa->ifa_family != AF_INET)
		return;
	for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (RTA_PAYLOAD(a) != 4)
			continue;
		if (a->rta_type == IFA_LOCAL)
			local = RTA_DATA(a);
		else if (a->rta_type == IFA_ADDRESS)
			address = RTA_DATA(a);
	}
	if (!local)
		local = address;
	if (!local || !inet_ntop(AF_INET, local, ip, sizeof(ip)))
		return;
	for (int i = 0; i < acc->n; i++) {
		struct cli_link *l = &acc->links[i];

		if (l->index != (int)ifa->ifa_index || l->naddr == 4)
			continue;
		snprintf(l->addr[l->naddr++], sizeof(l->addr[0]), "%s/%u", ip, ifa->ifa_prefixlen);
	}
}

int netinfo_links(struct cli_link *out, int max)
{
	struct netinfo_acc acc = { .links = out, .n = 0, .max = max };
	int err;

	err = netinfo_dump(RTM_GETLINK, AF_UNSPEC, netinfo_link_cb, &acc);
	if (err < 0)
		return err;
	err = netinfo_dump(RTM_GETADDR, AF_INET, netinfo_addr_cb, &acc);
	if (err < 0)
		return err;
	return acc.n;
}

const char *netinfo_operstate(unsigned char op)
{
	/* IF_OPER_* (RFC 2863 order); linux/if.h cannot be included beside net/if.h. */
	static const char *const names[] = {
		"unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up",
	};

	return op < sizeof(names) / sizeof(names[0]) ? names[op] : "unknown";
}
