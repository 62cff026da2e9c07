/* netd's TX validator: descriptor bounds, then the rules of validate.h on netd's own copy. */
#include "netd/validate.h"

#include <string.h>

#include "netd/classify.h"

#define ETH_HLEN 14
#define ETH_MIN_FRAME 60      /* without FCS: shorter frames are padded to this */
#define DEFAULT_MTU 1500

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}

static bool app_has_ip(const struct validate_app *app, uint32_t ip)
{
	unsigned n = app->n_ips < VALIDATE_MAX_IPS ? app->n_ips : VALIDATE_MAX_IPS;

	/* 0.0.0.0 is nobody's address, whatever the table says. */
	if (ip == 0)
		return false;
	for (unsigned i = 0; i < n; i++)
		if (app->ips[i] == ip)
			return true;
	return false;
}

static bool app_owns(const struct validate_app *app, uint32_t ip, uint8_t proto, uint16_t port)
{
	if (port == 0 || app->owns_port == NULL)
		return false;
	return app->owns_port(app->owns_port_ctx, app->id, ip, proto, port);
}

/* The classifier already proved the headers sane; this maps why it did not. */
static enum validate_reason from_classify(unsigned reason)
{
	switch (reason) {
	case CLASSIFY_R_RUNT:
	case CLASSIFY_R_ARP_SHORT:
	case CLASSIFY_R_IP_SHORT:
		return VALIDATE_TOO_SHORT;
	case CLASSIFY_R_SRC_MAC:
		return VALIDATE_SRC_MAC;
	case CLASSIFY_R_ARP_FORMAT:
		return VALIDATE_ARP_FORMAT;
	case CLASSIFY_R_IP_CHECKSUM:
		return VALIDATE_IP_CHECKSUM;
	case CLASSIFY_R_IP_FRAG:
		return VALIDATE_FRAG;
	case CLASSIFY_R_L4_TRUNC:
	case CLASSIFY_R_TCP_DOFF:
	case CLASSIFY_R_UDP_LEN:
		return VALIDATE_L4_HEADER;
	default:
		return VALIDATE_IP_HEADER;
	}
}

static enum validate_reason check_arp(const struct validate_app *app, const uint8_t *buf,
				      size_t len, const struct classify_verdict *v)
{
	if (v->kind == CLASSIFY_ARP_OTHER)
		return VALIDATE_ARP_FORMAT;
	if (len > ETH_MIN_FRAME)
		return VALIDATE_TOO_LONG;
	if (memcmp(v->arp_sha, app->mac, 6) != 0 || memcmp(buf + 6, v->arp_sha, 6) != 0)
		return VALIDATE_ARP_SENDER_MAC;
	if (app_has_ip(app, v->arp_spa))
		return VALIDATE_OK;
	/* An address-conflict probe has no sender IP yet. */
	if (v->arp_spa == 0 && v->kind == CLASSIFY_ARP_REQUEST && app_has_ip(app, v->arp_tpa))
		return VALIDATE_OK;
	return VALIDATE_ARP_SENDER_IP;
}

/*
 * An ICMP error quotes the IP header and first 8 bytes of the datagram that
 * caused it.  That datagram was sent to the application, so the quoted
 * destination must be the application's address and port.
 */
static enum validate_reason check_icmp_quote(const struct validate_app *app,
					     const uint8_t *icmp, size_t icmp_len)
{
	if (icmp_len < 8 + 20)
		return VALIDATE_ICMP;
	const uint8_t *q = icmp + 8;
	size_t qlen = icmp_len - 8;
	size_t qhlen = (size_t)(q[0] & 0x0f) * 4;

	if ((q[0] >> 4) != 4 || qhlen < 20 || qhlen > qlen)
		return VALIDATE_ICMP;
	uint32_t qdst = rd32(q + 16);
	uint8_t qproto = q[9];

	if (!app_has_ip(app, qdst))
		return VALIDATE_ICMP;
	if (qproto == 6 || qproto == 17) {
		if (qlen - qhlen < 4)
			return VALIDATE_ICMP;
		if (!app_owns(app, qdst, qproto, rd16(q + qhlen + 2)))
			return VALIDATE_ICMP;
	}
	return VALIDATE_OK;
}

static enum validate_reason check_icmp(const struct validate_app *app, const uint8_t *buf,
				       const struct classify_verdict *v)
{
	switch (v->icmp_type) {
	case 0:  /* echo reply */
	case 8:  /* echo request */
		return VALIDATE_OK;
	case 3:  /* destination unreachable */
	case 11: /* time exceeded */
	case 12: /* parameter problem */
		if (v->flags & CLASSIFY_F_FRAGMENT)
			return VALIDATE_ICMP;
		return check_icmp_quote(app, buf + v->l4_off, v->l4_len);
	default:
		return VALIDATE_ICMP;
	}
}

static enum validate_reason check_ipv4(const struct validate_app *app, const uint8_t *buf,
				       size_t len, uint64_t now_ms,
				       const struct classify_verdict *v)
{
	/*
	 * The datagram fills the frame, except that a frame padded to the
	 * Ethernet minimum may carry a shorter datagram.
	 */
	size_t dgram_end = ETH_HLEN + (size_t)v->ip_total_len;

	if (dgram_end != len && !(len == ETH_MIN_FRAME && dgram_end < len))
		return VALIDATE_IP_HEADER;
	if (!app_has_ip(app, v->src_ip))
		return VALIDATE_SRC_IP;

	struct frag_key key = {
		.src_ip = v->src_ip, .dst_ip = v->dst_ip, .ip_id = v->ip_id, .proto = v->proto,
	};
	enum validate_reason r;

	switch (v->kind) {
	case CLASSIFY_IPV4_FRAGMENT: {
		uint32_t owner;
		uint16_t first_end;

		if (app->frags == NULL ||
		    frag_lookup(app->frags, &key, now_ms, &owner, &first_end) != FRAG_HIT ||
		    owner != app->id || v->frag_off < first_end)
			return VALIDATE_FRAG;
		return VALIDATE_OK;
	}
	case CLASSIFY_IPV4_TCP:
	case CLASSIFY_IPV4_UDP:
		r = app_owns(app, v->src_ip, v->proto, v->src_port) ? VALIDATE_OK
								     : VALIDATE_SRC_PORT;
		break;
	case CLASSIFY_IPV4_ICMP_ECHO:
	case CLASSIFY_IPV4_ICMP_OTHER:
		r = check_icmp(app, buf, v);
		break;
	default:
		return VALIDATE_PROTO;
	}
	if (r != VALIDATE_OK)
		return r;
	/* Only now, accepted, may a first fragment open the way for the rest. */
	if (v->flags & CLASSIFY_F_FIRST) {
		uint32_t owner;

		if (app->frags == NULL)
			return VALIDATE_FRAG;
		/*
		 * Two applications behind the shared IP may pick the same IP id
		 * for the same peer; the peer would then reassemble pieces of
		 * both into one datagram.  While the first owner's entry lives,
		 * the second application's datagram is refused.
		 */
		if (frag_lookup(app->frags, &key, now_ms, &owner, NULL) == FRAG_HIT &&
		    owner != app->id)
			return VALIDATE_FRAG;
		frag_remember(app->frags, &key, app->id, v->l4_len, now_ms);
	}
	return VALIDATE_OK;
}

enum validate_reason validate_desc(uint64_t offset, uint64_t len, uint64_t area_size,
				   size_t buf_size)
{
	/* Written so that no sum can wrap: offset <= area_size first. */
	if (offset > area_size || len > area_size - offset)
		return VALIDATE_DESC_BOUNDS;
	if (len > buf_size)
		return VALIDATE_TOO_LONG;
	if (len < ETH_HLEN)
		return VALIDATE_TOO_SHORT;
	return VALIDATE_OK;
}

enum validate_reason validate_frame(const struct validate_app *app, const uint8_t *buf,
				    size_t len, uint64_t now_ms, struct validate_info *info)
{
	struct validate_info dummy;
	struct classify_verdict v;
	size_t mtu = app->mtu ? app->mtu : DEFAULT_MTU;

	if (info == NULL)
		info = &dummy;
	memset(info, 0, sizeof(*info));
	if (buf == NULL || len < ETH_HLEN)
		return VALIDATE_TOO_SHORT;
	if (len > ETH_HLEN + mtu)
		return VALIDATE_TOO_LONG;
	if (memcmp(buf + 6, app->mac, 6) != 0)
		return VALIDATE_SRC_MAC;
	info->ethertype = rd16(buf + 12);
	if (info->ethertype != 0x0800 && info->ethertype != 0x0806)
		return VALIDATE_ETHERTYPE;

	classify_frame(buf, len, &v);
	if (v.kind == CLASSIFY_MALFORMED)
		return from_classify(v.reason);
	if (info->ethertype == 0x0806)
		return check_arp(app, buf, len, &v);

	info->proto = v.proto;
	info->is_fragment = (v.flags & CLASSIFY_F_FRAGMENT) != 0;
	info->src_ip = v.src_ip;
	info->dst_ip = v.dst_ip;
	info->src_port = v.src_port;
	info->dst_port = v.dst_port;
	return check_ipv4(app, buf, len, now_ms, &v);
}

enum validate_reason validate_tx(const struct validate_app *app, const uint8_t *area,
				 uint64_t area_size, uint64_t offset, uint64_t len,
				 uint8_t *buf, size_t buf_size, uint64_t now_ms,
				 struct validate_info *info)
{
	enum validate_reason r = validate_desc(offset, len, area_size, buf_size);

	if (info != NULL)
		memset(info, 0, sizeof(*info));
	if (r != VALIDATE_OK)
		return r;
	/*
	 * From here on only buf is read: the application may rewrite its area
	 * at any moment, and what was checked must be what is sent.
	 */
	memcpy(buf, area + offset, (size_t)len);
	return validate_frame(app, buf, (size_t)len, now_ms, info);
}

const char *validate_reason_str(unsigned reason)
{
	static const char *const names[VALIDATE_REASON_COUNT] = {
		[VALIDATE_OK] = "ok",
		[VALIDATE_DESC_BOUNDS] = "desc_bounds",
		[VALIDATE_TOO_SHORT] = "too_short",
		[VALIDATE_TOO_LONG] = "too_long",
		[VALIDATE_SRC_MAC] = "src_mac",
		[VALIDATE_ETHERTYPE] = "ethertype",
		[VALIDATE_ARP_FORMAT] = "arp_format",
		[VALIDATE_ARP_SENDER_MAC] = "arp_sender_mac",
		[VALIDATE_ARP_SENDER_IP] = "arp_sender_ip",
		[VALIDATE_IP_HEADER] = "ip_header",
		[VALIDATE_IP_CHECKSUM] = "ip_checksum",
		[VALIDATE_SRC_IP] = "src_ip",
		[VALIDATE_PROTO] = "proto",
		[VALIDATE_L4_HEADER] = "l4_header",
		[VALIDATE_SRC_PORT] = "src_port",
		[VALIDATE_ICMP] = "icmp",
		[VALIDATE_FRAG] = "frag",
	};

	return reason < VALIDATE_REASON_COUNT ? names[reason] : "?";
}
