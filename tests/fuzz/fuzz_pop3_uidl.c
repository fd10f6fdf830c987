/* libFuzzer target for the POP3 parsers in fetch/pop3.c
 * (pop3_uidl_parse, pop3_list_parse, pop3_stat_parse, pop3_undot_feed).
 *
 * The input is the body of a UIDL answer. An accepted listing must be one
 * a sync can trust: message numbers non-zero and distinct, UIDLs of 1 to
 * POP3_UIDL_MAX bytes in 0x21-0x7E and distinct, in listing order, and as
 * many entries plus dropped repeats as the input has non-blank lines.
 * Written out again as "n uidl\r\n" lines it must parse to the same
 * listing with nothing dropped. A refused one must leave the listing empty
 * and say why in a NUL-terminated reason, however short the buffer. The
 * same bytes as a STAT line must parse only when they start "+OK ". As a
 * LIST answer applied to that listing, a refusal changes no size. As a
 * multi-line answer, unstuffing gives the same bytes and the same end
 * however the input is split, never more bytes than came in, and the end
 * only just after a line "." that follows a CRLF or starts the input.
 *
 * Build: meson setup -Dfuzz=true (CC=clang), or clang -g -O1
 *        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
 *        -D_GNU_SOURCE fetch/pop3.c fetch/conn.c cache/child.c cache/log.c cache/buf.c
 *        tests/fuzz/fuzz_pop3_uidl.c -lcurl -o fuzz_pop3_uidl
 * Run:   ./fuzz_pop3_uidl -max_total_time=60 tests/fuzz/corpus/pop3_uidl */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../fetch/pop3.h"

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

/* Non-blank lines of the input, as the parser splits them. */
static size_t count_lines(const uint8_t *p, size_t len)
{
	size_t n = 0, pos = 0;

	while (pos < len) {
		const uint8_t *nl = memchr(p + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - p) : len;
		int blank = 1;

		for (size_t i = pos; i < end; i++)
			if (p[i] != ' ' && p[i] != '\t' && !(p[i] == '\r' && i + 1 == end))
				blank = 0;
		n += !blank;
		pos = nl ? end + 1 : len;
	}
	return n;
}

static void check_listing(const struct pop3_listing *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const char *u = l->v[i].uidl;
		size_t ul;

		CHECK(l->v[i].msgnum > 0);
		CHECK(u);
		ul = strlen(u);
		CHECK(ul >= 1 && ul <= POP3_UIDL_MAX);
		for (size_t k = 0; k < ul; k++)
			CHECK((unsigned char)u[k] >= 0x21 && (unsigned char)u[k] <= 0x7e);
		/* quadratic, but inputs are small */
		for (size_t j = 0; j < i; j++) {
			CHECK(l->v[j].msgnum != l->v[i].msgnum);
			CHECK(strcmp(l->v[j].uidl, u) != 0);
		}
	}
}

/* The listing written out canonically parses to itself. */
static void check_roundtrip(const struct pop3_listing *l)
{
	size_t cap = 1, len = 0;
	char *out;
	struct pop3_listing again;
	char why[64];

	for (size_t i = 0; i < l->n; i++)
		cap += 12 + strlen(l->v[i].uidl) + 2;
	out = malloc(cap);
	CHECK(out);
	for (size_t i = 0; i < l->n; i++)
		len += (size_t)snprintf(out + len, cap - len, "%u %s\r\n", l->v[i].msgnum, l->v[i].uidl);
	CHECK(pop3_uidl_parse(out, len, &again, why, sizeof(why)) == 0);
	CHECK(again.n == l->n && again.n_dup == 0);
	for (size_t i = 0; i < l->n; i++) {
		CHECK(again.v[i].msgnum == l->v[i].msgnum);
		CHECK(strcmp(again.v[i].uidl, l->v[i].uidl) == 0);
	}
	pop3_listing_release(&again);
	free(out);
}

struct out {
	char *p;
	size_t len, cap;
};

static int out_write(void *ctx, const void *p, size_t n)
{
	struct out *o = ctx;

	CHECK(o->len + n <= o->cap);
	memcpy(o->p + o->len, p, n);
	o->len += n;
	return 0;
}

/* Unstuffs p in pieces of step bytes (0: whole); returns the bytes used
 * up to the end of the answer, or size when it did not end. */
static size_t undot(const char *p, size_t size, size_t step, struct out *o, int *done_r)
{
	struct pop3_undot u;
	size_t pos = 0;

	pop3_undot_init(&u);
	o->len = 0;
	while (pos < size && !u.done) {
		size_t n = step && size - pos > step ? step : size - pos;
		ssize_t used = pop3_undot_feed(&u, p + pos, n, out_write, o);

		CHECK(used >= 0 && (size_t)used <= n);
		CHECK((size_t)used == n || u.done);
		pos += (size_t)used;
	}
	*done_r = u.done;
	return pos;
}

static void check_undot(const char *p, size_t size)
{
	struct out a = { malloc(size + 1), 0, size }, b = { malloc(size + 1), 0, size };
	int done_a, done_b;
	size_t end_a, end_b;

	CHECK(a.p && b.p);
	end_a = undot(p, size, 0, &a, &done_a);
	CHECK(a.len <= end_a);
	if (done_a) {
		CHECK(end_a >= 3 && memcmp(p + end_a - 3, ".\r\n", 3) == 0);
		CHECK(end_a == 3 || (end_a >= 5 && p[end_a - 5] == '\r' && p[end_a - 4] == '\n'));
	}
	for (size_t step = 1; step <= 7 && step < size; step += 3) {
		end_b = undot(p, size, step, &b, &done_b);
		CHECK(done_a == done_b && end_a == end_b && a.len == b.len);
		CHECK(a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
	}
	free(a.p);
	free(b.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy, so ASan sees any read past the end. */
	char *p = malloc(size ? size : 1);
	struct pop3_listing l;
	char why[200], tiny[6];
	int rc, rc2;

	CHECK(p);
	memcpy(p, data, size);
	rc = pop3_uidl_parse(p, size, &l, why, sizeof(why));
	CHECK(rc == 0 || rc == -EINVAL);
	CHECK(memchr(why, '\0', sizeof(why)));
	if (rc == 0) {
		check_listing(&l);
		CHECK(l.n + l.n_dup == count_lines(data, size));
		check_roundtrip(&l);
	} else {
		CHECK(l.v == NULL && l.n == 0 && l.n_dup == 0);
		CHECK(why[0] != '\0');
	}

	/* The same verdict without a reason buffer, or with a tiny one. */
	struct pop3_listing l2;
	rc2 = pop3_uidl_parse(p, size, &l2, NULL, 0);
	CHECK(rc2 == rc && l2.n == l.n && l2.n_dup == l.n_dup);
	pop3_listing_release(&l2);
	rc2 = pop3_uidl_parse(p, size, &l2, tiny, sizeof(tiny));
	CHECK(rc2 == rc && memchr(tiny, '\0', sizeof(tiny)));
	pop3_listing_release(&l2);

	/* As a LIST answer for that listing. */
	if (rc == 0) {
		rc2 = pop3_list_parse(p, size, &l, why, sizeof(why));
		CHECK(rc2 == 0 || rc2 == -EINVAL);
		for (size_t i = 0; rc2 < 0 && i < l.n; i++)
			CHECK(l.v[i].size == POP3_SIZE_UNKNOWN);
	}
	pop3_listing_release(&l);
	CHECK(l.v == NULL && l.n == 0);
	check_undot(p, size);

	/* As a STAT answer (a C string: the line ends at the first NUL). */
	char *line = malloc(size + 1);
	uint32_t count = 0;
	uint64_t bytes = 0;

	CHECK(line);
	memcpy(line, data, size);
	line[size] = '\0';
	if (pop3_stat_parse(line, &count, &bytes) == 0)
		CHECK(strncmp(line, "+OK", 3) == 0 && (line[3] == ' ' || line[3] == '\t'));
	free(line);
	free(p);
	return 0;
}
