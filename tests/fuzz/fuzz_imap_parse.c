/* libFuzzer target for fetch/imap_parse.c.
 *
 * The input is a server transcript. It is read to the end three ways (no
 * sink, a streaming sink, a sink that refuses or fails now and then), each
 * way twice: whole and in small uneven pieces. Everything the reader
 * reports is hashed, and the two hashes of each way must agree: how the
 * bytes arrive must never change what is parsed. The sink checks the
 * begin/write/end/abort protocol, and each response its own invariants.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined
 *        -fno-sanitize-recover=all fetch/imap_parse.c cache/buf.c
 *        tests/fuzz/fuzz_imap_parse.c -o fuzz_imap_parse
 * Run:   ./fuzz_imap_parse -max_total_time=60 tests/fuzz/corpus/imap_parse */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../fetch/imap_parse.h"
#include "../../fetch/uidset.h"

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

struct fz_src {
	const uint8_t *p;
	size_t len, pos;
	bool pieces;
	uint32_t rng;
};

static ssize_t fz_read(void *ctx, void *p, size_t n)
{
	struct fz_src *s = ctx;
	size_t k = s->len - s->pos;

	if (k == 0)
		return 0;
	if (s->pieces) {
		s->rng = s->rng * 1103515245u + 12345u;
		if (k > 1 + (s->rng >> 16) % 13)
			k = 1 + (s->rng >> 16) % 13;
	}
	if (k > n)
		k = n;
	memcpy(p, s->p + s->pos, k);
	s->pos += k;
	return (ssize_t)k;
}

static void mix(uint64_t *h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		*h = (*h ^ b[i]) * 1099511628211ull;
}

static void mix_u(uint64_t *h, uint64_t v)
{
	mix(h, &v, sizeof(v));
}

static void mix_s(uint64_t *h, const char *s)
{
	CHECK(s);
	mix(h, s, strlen(s) + 1);
}

enum fz_mode { FZ_NONE, FZ_STREAM, FZ_HOSTILE };

struct fz_sink {
	enum fz_mode mode;
	uint64_t *h;
	bool active;
	bool fail_writes;
	uint64_t want, got;
	unsigned n_begin;
};

static int fz_begin(void *ctx, const char *key, uint64_t n)
{
	struct fz_sink *s = ctx;

	CHECK(!s->active);
	mix_s(s->h, key ? key : "(null)");
	mix_u(s->h, n);
	s->n_begin++;
	if (s->mode == FZ_HOSTILE) {
		if (s->n_begin % 3 == 0)
			return -1;
		if (!key)
			return 0;
	}
	s->active = true;
	s->fail_writes = s->mode == FZ_HOSTILE && s->n_begin % 3 == 2;
	s->want = n;
	s->got = 0;
	return 1;
}

static int fz_write(void *ctx, const void *p, size_t n)
{
	struct fz_sink *s = ctx;

	CHECK(s->active);
	CHECK(n > 0 && n <= s->want - s->got);
	if (s->fail_writes)
		return -1;
	mix(s->h, p, n);
	s->got += n;
	return 0;
}

static int fz_end(void *ctx)
{
	struct fz_sink *s = ctx;

	CHECK(s->active && s->got == s->want);
	s->active = false;
	mix_s(s->h, "end");
	return s->mode == FZ_HOSTILE && s->n_begin % 4 == 1 ? -1 : 0;
}

static void fz_abort(void *ctx)
{
	struct fz_sink *s = ctx;

	CHECK(s->active && s->got <= s->want);
	s->active = false;
	mix_s(s->h, "abort");
	mix_u(s->h, s->got);
}

static int fz_number(void *ctx, uint64_t n)
{
	struct fz_sink *s = ctx;

	mix_u(s->h, n);
	return 0;
}

/* Any atom may be a UID set: parsed as ranges, whatever it spans, in time
 * proportional to its text. */
static void check_uidset(const char *text)
{
	struct uidset set = UIDSET_INIT;
	static const uint32_t probe[] = { 1, 2, 7, 1000, 4294967295u };
	uint32_t in[5];

	if (uidset_parse(&set, text) == 0) {
		uint64_t n = uidset_normalize(&set);

		CHECK(n > 0 && n <= set.added && set.n > 0);
		CHECK(uidset_count_from(&set, 1) == n);
		CHECK(uidset_intersect(&set, probe, 5, in) <= 5);
		for (size_t i = 1; i < set.n; i++)
			CHECK(set.v[i - 1].hi < set.v[i].lo && set.v[i].lo - set.v[i - 1].hi > 1);
	} else {
		CHECK(set.n == 0 && set.added == 0);
	}
	uidset_release(&set);
}

static void check_resp(uint64_t *h, const struct imap_resp *r)
{
	size_t stack[4096], depth = 0;

	mix_u(h, r->kind);
	mix_s(h, r->tag);
	mix_u(h, r->has_num ? r->num + 1ull : 0);
	mix_s(h, r->name);
	mix_u(h, r->status);
	mix_s(h, r->code ? r->code : "(null)");
	mix_s(h, r->text);
	CHECK(r->kind == IMAP_TAGGED ? r->tag[0] != '\0' : r->tag[0] == '\0');
	CHECK((r->kind == IMAP_CONTINUATION) == (r->name[0] == '\0'));
	CHECK(r->n_toks == 0 || r->status == IMAP_ST_NONE);
	CHECK(r->kind != IMAP_TAGGED || r->status != IMAP_ST_NONE);
	for (size_t i = 0; i < r->n_toks; i++) {
		const struct imap_tok *t = &r->toks[i];
		CHECK(t->s && t->s[t->len] == '\0');
		mix_u(h, t->type);
		mix(h, t->s, t->len);
		mix_u(h, t->len);
		switch (t->type) {
		case IMAP_ATOM:
		case IMAP_NUMBER:
			CHECK(strlen(t->s) == t->len && t->len > 0);
			if (t->type == IMAP_NUMBER)
				mix_u(h, t->num);
			check_uidset(t->s);
			break;
		case IMAP_STRING:
			break;
		case IMAP_NIL:
			CHECK(t->len == 0);
			break;
		case IMAP_LIST_BEGIN:
			CHECK(depth < sizeof(stack) / sizeof(stack[0]));
			stack[depth++] = i;
			break;
		case IMAP_LIST_END:
			CHECK(depth > 0 && r->toks[stack[--depth]].end == i);
			break;
		case IMAP_STREAMED:
			mix_u(h, t->num);
			break;
		}
	}
	CHECK(depth == 0);
}

static uint64_t read_all(const uint8_t *data, size_t size, enum fz_mode mode,
			 size_t max_line, bool pieces)
{
	struct fz_src fs = { data, size, 0, pieces, (uint32_t)size };
	struct imap_src src = { fz_read, &fs };
	uint64_t h = 14695981039346656037ull;
	struct fz_sink fk = { mode, &h, false, false, 0, 0, 0 };
	struct imap_sink sink = { fz_begin, fz_write, fz_end, fz_abort, fz_number, &fk };
	struct imap_reader *rd;

	if (imap_reader_create(&src, max_line, &rd) != 0)
		return 0;
	for (size_t i = 0; i <= size + 1; i++) {
		struct imap_resp r;
		int e = imap_read_response(rd, &r, mode == FZ_NONE ? NULL : &sink);

		CHECK(!fk.active);
		mix_u(&h, (uint64_t)(int64_t)e);
		if (e == 0)
			check_resp(&h, &r);
		else if (e != IMAP_ERR_ABORT)
			break;
		CHECK(i < size + 1);  /* every response consumes input */
	}
	CHECK(fs.pos <= fs.len);
	imap_reader_destroy(&rd);
	CHECK(!rd);
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct { enum fz_mode mode; size_t max_line; } ways[] = {
		{ FZ_NONE, 1 << 16 },
		{ FZ_STREAM, 256 },
		{ FZ_HOSTILE, 4096 },
	};

	for (size_t w = 0; w < sizeof(ways) / sizeof(ways[0]); w++) {
		uint64_t whole = read_all(data, size, ways[w].mode, ways[w].max_line, false);
		uint64_t split = read_all(data, size, ways[w].mode, ways[w].max_line, true);

		CHECK(whole == split);
	}
	return 0;
}
