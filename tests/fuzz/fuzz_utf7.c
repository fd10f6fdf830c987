/* libFuzzer target for fetch/utf7.c.
 *
 * The input is tried both as a modified UTF-7 name and as a UTF-8 name.
 * Whatever decodes must re-encode to exactly the input (only canonical
 * forms are accepted); whatever encodes must be printable ASCII and decode
 * back to exactly the input. A failed call must leave the output as it was.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined
 *        -fno-sanitize-recover=all fetch/utf7.c cache/buf.c
 *        tests/fuzz/fuzz_utf7.c -o fuzz_utf7
 * Run:   ./fuzz_utf7 -max_total_time=60 tests/fuzz/corpus/utf7 */

#include <stdint.h>
#include <string.h>
#include "../../fetch/utf7.h"

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

static const char *data_of(const struct buf *b)
{
	return b->data ? b->data : "";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct buf a = BUF_INIT(1 << 20), b = BUF_INIT(1 << 20);

	/* Start both with a prefix, to check appending and restoring. */
	CHECK(buf_appends(&a, "p.") == 0 && buf_appends(&b, "p.") == 0);

	if (utf7_decode(in, size, &a) == 0) {
		CHECK(memchr(data_of(&a) + 2, '\0', a.len - 2) == NULL);
		CHECK(utf7_encode(data_of(&a) + 2, a.len - 2, &b) == 0);
		CHECK(b.len - 2 == size && memcmp(data_of(&b) + 2, in, size) == 0);
	} else {
		CHECK(a.len == 2 && strcmp(data_of(&a), "p.") == 0);
	}

	buf_reset(&a);
	buf_reset(&b);
	CHECK(buf_appends(&a, "p.") == 0 && buf_appends(&b, "p.") == 0);
	if (utf7_encode(in, size, &a) == 0) {
		for (size_t i = 2; i < a.len; i++)
			CHECK(a.data[i] >= 0x20 && a.data[i] <= 0x7e);
		CHECK(utf7_decode(data_of(&a) + 2, a.len - 2, &b) == 0);
		CHECK(b.len - 2 == size && memcmp(data_of(&b) + 2, in, size) == 0);
	} else {
		CHECK(a.len == 2 && strcmp(data_of(&a), "p.") == 0);
	}

	buf_release(&a);
	buf_release(&b);
	return 0;
}
