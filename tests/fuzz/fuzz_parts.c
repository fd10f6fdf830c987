/* libFuzzer target for cache/parts*.c: a message's MIME structure read by
 * GMime into part records, and every part read back by offset.
 *
 * The input is the message file (through a memfd). Invariants: analysis
 * succeeds (a malformed message only has fewer parts); records number
 * 1..n in order, at most PARTS_MAX, each inside the file; names obey
 * parts.h (1 to 255 bytes of UTF-8, no '/' or control byte, no leading '.',
 * unique in their directory); and each part reads back, whole and in
 * pieces, exactly as GMime decodes it (tests/unit/parts_check.h).
 *
 * Build: meson setup -Dfuzz=true (CC=clang)
 * Run:   ./fuzz_parts -max_total_time=60 tests/fuzz/corpus/parts */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "../../cache/parts.h"
#include "../unit/parts_check.h"

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

static void check_names(const struct parts_list *l, int64_t size)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct part_rec *r = &l->v[i];
		size_t n = strlen(r->name);

		CHECK(r->n == (int)i + 1);
		CHECK(r->parent >= 0 && r->parent < r->n);
		CHECK(r->parent == 0 || l->v[r->parent - 1].kind == PART_DIR);
		CHECK(r->off >= 0 && r->len >= 0 && r->off + r->len <= size);
		CHECK(n > 0 && n <= PARTS_NAME_MAX && r->name[0] != '.');
		CHECK(g_utf8_validate(r->name, -1, NULL));
		for (size_t k = 0; k < n; k++)
			CHECK((unsigned char)r->name[k] >= 0x20 && r->name[k] != 0x7f &&
			      r->name[k] != '/');
		for (size_t j = 0; j < i; j++)
			CHECK(!(l->v[j].parent == r->parent && !strcmp(l->v[j].name, r->name)));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct parts_list l;
	const char *why;
	int fd = parts_check_file(data, size);

	CHECK(parts_analyse(fd, size, &l) == 0);
	CHECK(l.n <= PARTS_MAX);
	check_names(&l, size);
	CHECK(parts_check_all(fd, size, &l, 2, (unsigned)size, &why));
	parts_list_release(&l);
	close(fd);
	return 0;
}
