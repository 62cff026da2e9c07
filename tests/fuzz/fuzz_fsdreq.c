/* libFuzzer harness: libretto-fsd's decoding and handle checks of requests an application writes into its shared slots. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fsd/req.h"

/*
 * Input layout: the first sizeof(struct fsd_slot) bytes are the slot as the
 * application wrote it (zero-padded when the input is shorter), the rest is
 * the start of the slot's data area (paths, payloads); the remainder of the
 * FSD_SLOT_DATA-byte area is 0xff, so a path whose terminator the decoder
 * looks for beyond the input finds garbage, not a convenient NUL.  A valid
 * request then goes through the handle checks against a session that holds
 * a few inodes, as fsd does before it runs anything.
 */
static uint8_t data[FSD_SLOT_DATA];
static struct fsd_state *st;

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	struct fsd_slot slot;
	struct fsd_req *r;
	const char *why = NULL;
	size_t rest;

	if (!st) {
		st = calloc(1, sizeof(*st));
		if (!st)
			abort();
		/* Inodes 11 (open), 12 (looked up) and 13 (open, another generation). */
		fsd_handle_get(st, 11, 1)->refs = 1;
		fsd_handle_get(st, 12, 7);
		fsd_handle_get(st, 13, 3)->refs = 2;
	}
	r = malloc(sizeof(*r));
	if (!r)
		abort();
	memset(&slot, 0, sizeof(slot));
	memcpy(&slot, in, n < sizeof(slot) ? n : sizeof(slot));
	rest = n > sizeof(slot) ? n - sizeof(slot) : 0;
	if (rest > sizeof(data))
		rest = sizeof(data);
	memset(data, 0xff, sizeof(data));
	memcpy(data, in + sizeof(slot), rest);
	if (fsd_req_decode(&slot, data, r, &why) == 0) {
		(void)fsd_req_modifies(r);
		(void)fsd_req_check_handles(st, r);
	} else if (!why) {
		abort();	/* every refusal names the check that failed */
	}
	free(r);
	return 0;
}
