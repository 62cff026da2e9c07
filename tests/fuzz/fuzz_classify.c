/* libFuzzer harness: netd's receive classifier and fragment-steering table on wire bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netd/classify.h"
#include "netd/frag.h"

static struct frag_table frags;
static uint64_t clock_ms;

/*
 * Random bytes almost never carry a valid IPv4 header checksum, which would
 * keep the fuzzer out of everything behind it; so each input is also tried
 * with its checksum made right.
 */
static void fix_ip_csum(uint8_t *f, size_t size)
{
	if (size < 34 || f[12] != 0x08 || f[13] != 0x00)
		return;
	size_t hlen = (size_t)(f[14] & 0x0f) * 4;

	if (hlen < 20 || 14 + hlen > size)
		return;
	f[24] = f[25] = 0;
	uint16_t c = (uint16_t)~classify_csum_fold(f + 14, hlen);

	f[24] = (uint8_t)(c >> 8);
	f[25] = (uint8_t)c;
}

static void one(const uint8_t *data, size_t size, int fix);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one(data, size, 0);
	one(data, size, 1);
	return 0;
}

static void one(const uint8_t *data, size_t size, int fix)
{
	struct classify_verdict v;
	/* An exact-size copy: ASan traps on any read past size. */
	uint8_t *frame = malloc(size ? size : 1);

	if (frame == NULL)
		return;
	memcpy(frame, data, size);
	if (fix)
		fix_ip_csum(frame, size);
	classify_frame(frame, size, &v);

	if (v.kind >= CLASSIFY_KIND_COUNT || v.reason >= CLASSIFY_REASON_COUNT)
		__builtin_trap();
	if ((v.kind == CLASSIFY_MALFORMED) != (v.reason != CLASSIFY_R_NONE))
		__builtin_trap();
	if (classify_kind_str(v.kind)[0] == '?' || classify_reason_str(v.reason)[0] == '?')
		__builtin_trap();

	/* Ports only for TCP and UDP, and only in a first piece. */
	if (v.kind == CLASSIFY_IPV4_TCP || v.kind == CLASSIFY_IPV4_UDP) {
		if (v.frag_off != 0)
			__builtin_trap();
		if ((v.flags & CLASSIFY_F_FRAGMENT) && !(v.flags & CLASSIFY_F_FIRST))
			__builtin_trap();
		if (v.l4_len < (v.kind == CLASSIFY_IPV4_TCP ? 20 : 8))
			__builtin_trap();
	} else if (v.src_port != 0 || v.dst_port != 0 || v.tcp_flags != 0) {
		__builtin_trap();
	}

	/* Every IPv4 kind has a header and payload inside the frame. */
	if (v.kind >= CLASSIFY_IPV4_TCP && v.kind <= CLASSIFY_IPV4_FRAGMENT) {
		if (v.ip_hlen < 20 || v.ip_hlen > 60 || (v.ip_hlen & 3))
			__builtin_trap();
		if ((size_t)14 + v.ip_hlen > size || v.l4_off != 14 + v.ip_hlen)
			__builtin_trap();
		if ((size_t)v.l4_off + v.l4_len > size)
			__builtin_trap();
		if (v.ip_total_len != v.ip_hlen + v.l4_len)
			__builtin_trap();
		if ((uint32_t)v.frag_off + v.ip_total_len > 65535)
			__builtin_trap();
		if (!!(v.flags & CLASSIFY_F_OPTIONS) != (v.ip_hlen > 20))
			__builtin_trap();
		/* The header the verdict describes really verifies. */
		if (classify_csum_fold(frame + 14, v.ip_hlen) != 0xffff)
			__builtin_trap();
		if (((frame[14] & 0x0f) * 4) != v.ip_hlen)
			__builtin_trap();
	}
	if (v.kind == CLASSIFY_IPV4_FRAGMENT && v.frag_off == 0)
		__builtin_trap();
	if ((v.kind == CLASSIFY_ARP_REQUEST || v.kind == CLASSIFY_ARP_REPLY ||
	     v.kind == CLASSIFY_ARP_OTHER) && size < 14 + 28)
		__builtin_trap();
	if (v.kind != CLASSIFY_MALFORMED && size < 14)
		__builtin_trap();

	/* Drive the steering table the way netd will, on a clock that moves. */
	if (frags.timeout_ms == 0)
		frag_init(&frags, 30000);
	clock_ms += size;
	struct frag_key key = {
		.src_ip = v.src_ip, .dst_ip = v.dst_ip, .ip_id = v.ip_id, .proto = v.proto,
	};
	uint32_t app = 0;

	if (v.flags & CLASSIFY_F_FIRST && v.kind != CLASSIFY_MALFORMED) {
		frag_remember(&frags, &key, v.dst_port, v.l4_len, clock_ms);
		if (frag_lookup(&frags, &key, clock_ms, &app, NULL) != FRAG_HIT ||
		    app != v.dst_port)
			__builtin_trap();
	} else if (v.kind == CLASSIFY_IPV4_FRAGMENT) {
		(void)frag_lookup(&frags, &key, clock_ms, &app, NULL);
	}
	if (frag_count(&frags, clock_ms) > FRAG_TABLE_SIZE)
		__builtin_trap();
	free(frame);
}
