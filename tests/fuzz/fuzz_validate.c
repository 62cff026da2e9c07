/* libFuzzer harness: netd's TX validator on hostile descriptors and frames. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netd/validate.h"

/*
 * Input layout: byte 0 selects options, bytes 1..8 are the descriptor
 * (offset and length, 32 bits each, optionally pushed near 2^64), the rest is
 * the application's frame area.  The whole area is also validated as one
 * frame, which is where most of the parsing coverage comes from.
 */
#define SHARED 0x0a2a0002u
#define DEDIC 0x0a2a0009u

static const uint8_t netd_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static struct frag_table frags;
static uint64_t clock_ms;

static bool owns(void *ctx, uint32_t app, uint32_t ip, uint8_t proto, uint16_t port)
{
	(void)ctx;
	if (app != 1)
		return false;
	if (ip == SHARED)
		return port % 3 == 0 && proto != 1;
	return ip == DEDIC && proto == 6 && port == 80;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool is_app_ip(uint32_t ip)
{
	return ip == SHARED || ip == DEDIC;
}

/* Re-derive, independently of the validator, what an accepted frame must be. */
static void check_accepted(const struct validate_app *app, const uint8_t *f, size_t len,
			   const struct validate_info *info)
{
	size_t mtu = app->mtu ? app->mtu : 1500;

	if (len < 14 || len > 14 + mtu || memcmp(f + 6, netd_mac, 6) != 0)
		__builtin_trap();
	uint16_t type = rd16(f + 12);

	if (type == 0x0806) {
		if (len < 42 || memcmp(f + 22, netd_mac, 6) != 0)
			__builtin_trap();
		uint32_t spa = rd32(f + 28), tpa = rd32(f + 38);

		if (!is_app_ip(spa) && !(spa == 0 && rd16(f + 20) == 1 && is_app_ip(tpa)))
			__builtin_trap();
		return;
	}
	if (type != 0x0800 || len < 34 || (f[14] >> 4) != 4)
		__builtin_trap();
	size_t hlen = (size_t)(f[14] & 0x0f) * 4;
	uint32_t src = rd32(f + 26);
	uint16_t fo = rd16(f + 20) & 0x1fff;
	uint8_t proto = f[23];

	if (hlen < 20 || 14 + hlen > len || !is_app_ip(src) || info->src_ip != src)
		__builtin_trap();
	if (proto != 6 && proto != 17 && proto != 1)
		__builtin_trap();
	if (fo == 0 && (proto == 6 || proto == 17)) {
		if (14 + hlen + 4 > len)
			__builtin_trap();
		uint16_t sport = rd16(f + 14 + hlen);

		if (!owns(NULL, app->id, src, proto, sport) || info->src_port != sport)
			__builtin_trap();
	}
	if ((fo != 0 || (rd16(f + 20) & 0x2000)) && app->frags == NULL)
		__builtin_trap();
}

/* Random bytes rarely have a right IPv4 header checksum: make it right. */
static void fix_ip_csum(uint8_t *f, size_t size)
{
	if (size < 34 || f[12] != 0x08 || f[13] != 0x00)
		return;
	size_t hlen = (size_t)(f[14] & 0x0f) * 4;
	uint32_t sum = 0;

	if (hlen < 20 || 14 + hlen > size)
		return;
	f[24] = f[25] = 0;
	for (size_t i = 0; i < hlen; i += 2)
		sum += rd16(f + 14 + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	f[24] = (uint8_t)(~sum >> 8);
	f[25] = (uint8_t)~sum;
}

static void run(const struct validate_app *app, const uint8_t *frame, size_t len, int fix)
{
	struct validate_info info;
	/* An exact-size copy: ASan traps on any read past len. */
	uint8_t *c = malloc(len ? len : 1);

	if (c == NULL)
		return;
	memcpy(c, frame, len);
	if (fix)
		fix_ip_csum(c, len);
	enum validate_reason r = validate_frame(app, c, len, clock_ms, &info);

	if (r >= VALIDATE_REASON_COUNT || validate_reason_str(r)[0] == '?')
		__builtin_trap();
	if (r == VALIDATE_OK)
		check_accepted(app, c, len, &info);
	free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 9)
		return 0;
	uint8_t opt = data[0];
	uint64_t off = rd32(data + 1), len = rd32(data + 5);
	const uint8_t *area_in = data + 9;
	size_t area_size = size - 9;

	if (opt & 0x01)
		off |= 0xffffffff00000000ull;
	if (opt & 0x02)
		len |= 0xffffffff00000000ull;
	if (frags.timeout_ms == 0)
		frag_init(&frags, 30000);
	clock_ms += (opt >> 4) * 1000u;

	struct validate_app app = {
		.id = (opt & 0x04) ? 2 : 1,
		.ips = { SHARED, DEDIC },
		.n_ips = 2,
		.mtu = (opt & 0x08) ? 9000 : 0,
		.owns_port = owns,
		.frags = (opt & 0x40) ? NULL : &frags,
	};
	memcpy(app.mac, netd_mac, 6);

	run(&app, area_in, area_size, 0);
	run(&app, area_in, area_size, 1);

	/* The descriptor path: validate_tx copies from the area into netd's buffer. */
	uint8_t *area = malloc(area_size ? area_size : 1);
	static uint8_t buf[9014];
	struct validate_info info;

	if (area == NULL)
		return 0;
	memcpy(area, area_in, area_size);
	if (off < area_size)
		fix_ip_csum(area + off, area_size - off);
	enum validate_reason r = validate_tx(&app, area, area_size, off, len, buf, sizeof(buf),
					     clock_ms, &info);
	if (r == VALIDATE_OK) {
		if (off > area_size || len > area_size - off)
			__builtin_trap();
		check_accepted(&app, buf, (size_t)len, &info);
	}
	free(area);
	return 0;
}
