/* libFuzzer harness: the key=value parser that reads every control message. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kv kv;
	unsigned long v;

	if (kv_parse(&kv, (const char *)data, size) < 0)
		return 0;
	/* Every pair must point inside the copy and be NUL-terminated there. */
	for (int i = 0; i < kv.n; i++) {
		size_t klen = strlen(kv.pair[i].key);

		if (kv.pair[i].key < kv.buf || kv.pair[i].key + klen > kv.buf + size)
			__builtin_trap();
		if (kv_get(&kv, kv.pair[i].key) == NULL)
			__builtin_trap();
	}
	(void)kv_get_ulong(&kv, "id", &v);
	kv_free(&kv);

	/* The output side: whatever goes in must fit or report overflow. */
	char out[64];
	struct kv_buf b;

	kv_buf_init(&b, out, sizeof(out));
	kv_buf_add(&b, ' ', "k", "%.*s", (int)(size > 200 ? 200 : size), (const char *)data);
	if (strlen(out) >= sizeof(out))
		__builtin_trap();
	return 0;
}
