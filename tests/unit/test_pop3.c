/* Unit tests for fetch/pop3.c's parsers: the UIDL and LIST listings (RFC
 * 1939 section 7 and 5), the STAT answer, and the multi-line reader's
 * dot-unstuffing (section 3), fed byte-exact server answers, whole and in
 * every split. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <cmocka.h>

#include "../../fetch/pop3.h"

#define MAXE 6

static void test_uidl_accepts(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		size_t n;
		struct { uint32_t num; const char *uidl; } want[MAXE];
		size_t n_dup;
	} cases[] = {
		{ "", 0, { { 0, NULL } }, 0 },
		{ "\r\n", 0, { { 0, NULL } }, 0 },
		{ "1 abc\r\n2 def\r\n", 2, { { 1, "abc" }, { 2, "def" } }, 0 },
		/* LF only, and no line end on the last line */
		{ "1 abc\n2 def", 2, { { 1, "abc" }, { 2, "def" } }, 0 },
		/* odd whitespace: leading, several, tabs, trailing; blank lines */
		{ "  1   abc  \r\n\t2\tdef\t\r\n\r\n   \r\n3 g\r\n", 3,
		  { { 1, "abc" }, { 2, "def" }, { 3, "g" } }, 0 },
		/* the server's order is kept, not sorted */
		{ "3 c\r\n1 a\r\n2 b\r\n", 3, { { 3, "c" }, { 1, "a" }, { 2, "b" } }, 0 },
		/* every printable byte is allowed in a UIDL */
		{ "1 !~\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}\r\n", 1,
		  { { 1, "!~\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}" } }, 0 },
		/* Dovecot's default format */
		{ "1 00000001608d5e29\r\n2 00000002608d5e29\r\n", 2,
		  { { 1, "00000001608d5e29" }, { 2, "00000002608d5e29" } }, 0 },
		{ "4294967295 max\r\n", 1, { { 4294967295u, "max" } }, 0 },
		/* a repeated UIDL: the first is kept, the rest counted */
		{ "1 a\r\n2 b\r\n3 a\r\n4 c\r\n5 a\r\n6 b\r\n", 3,
		  { { 1, "a" }, { 2, "b" }, { 4, "c" } }, 3 },
		/* UIDLs are case-sensitive */
		{ "1 a\r\n2 A\r\n", 2, { { 1, "a" }, { 2, "A" } }, 0 },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct pop3_listing l;
		char why[200];

		assert_int_equal(pop3_uidl_parse(cases[c].in, strlen(cases[c].in), &l, why,
						 sizeof(why)), 0);
		assert_int_equal(l.n, cases[c].n);
		assert_int_equal(l.n_dup, cases[c].n_dup);
		for (size_t i = 0; i < l.n; i++) {
			assert_int_equal(l.v[i].msgnum, cases[c].want[i].num);
			assert_string_equal(l.v[i].uidl, cases[c].want[i].uidl);
		}
		pop3_listing_release(&l);
		assert_null(l.v);
		assert_int_equal(l.n, 0);
	}
}

static void test_uidl_rejects(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		size_t len;          /* 0: strlen */
		const char *why;     /* a substring of the reason */
	} cases[] = {
		{ "abc\r\n", 0, "line 1" },
		{ "1\r\n", 0, "line 1" },
		{ "1 \r\n", 0, "no uidl" },
		{ "1 abc def\r\n", 0, "after the uidl" },
		{ "1abc\r\n", 0, "line 1" },
		{ "0 abc\r\n", 0, "message number 0" },
		{ "-1 abc\r\n", 0, "line 1" },
		{ "+1 abc\r\n", 0, "line 1" },
		{ "4294967296 abc\r\n", 0, "too large" },
		{ "99999999999999999999999 abc\r\n", 0, "too large" },
		{ "1 a\r\n.\r\n", 0, "line 2" },
		{ "1 a\r\n2 b\r\ngarbage\r\n", 0, "line 3" },
		{ "1 a\x01" "b\r\n", 0, "line 1" },
		{ "1 ab\x80\r\n", 0, "line 1" },
		{ "1 \xc3\xa4\r\n", 0, "no uidl" },
		{ "1 a\rb\r\n", 0, "line 1" },
		{ "1 a\0b\r\n", 7, "line 1" },
		{ "1 a\r\n2 b\r\n1 c\r\n", 0, "message number 1 listed twice" },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct pop3_listing l;
		char why[200];
		size_t len = cases[c].len ? cases[c].len : strlen(cases[c].in);

		assert_int_equal(pop3_uidl_parse(cases[c].in, len, &l, why, sizeof(why)), -EINVAL);
		assert_null(l.v);
		assert_int_equal(l.n, 0);
		if (!strstr(why, cases[c].why))
			fail_msg("case %zu: reason \"%s\" lacks \"%s\"", c, why, cases[c].why);
		pop3_listing_release(&l);
	}
	/* why may be NULL */
	struct pop3_listing l;
	assert_int_equal(pop3_uidl_parse("x", 1, &l, NULL, 0), -EINVAL);
}

static void test_uidl_length_limit(void **state)
{
	(void)state;
	char line[POP3_UIDL_MAX + 16];
	struct pop3_listing l;
	char why[200];

	/* 70 (RFC 1939) and POP3_UIDL_MAX are accepted, one more is not */
	static const size_t lens[] = { 70, POP3_UIDL_MAX, POP3_UIDL_MAX + 1 };
	for (size_t c = 0; c < 3; c++) {
		int n = snprintf(line, sizeof(line), "7 ");
		memset(line + n, 'x', lens[c]);
		memcpy(line + n + lens[c], "\r\n", 3);
		int rc = pop3_uidl_parse(line, strlen(line), &l, why, sizeof(why));
		if (lens[c] <= POP3_UIDL_MAX) {
			assert_int_equal(rc, 0);
			assert_int_equal(l.n, 1);
			assert_int_equal(strlen(l.v[0].uidl), lens[c]);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_non_null(strstr(why, "longer than"));
		}
		pop3_listing_release(&l);
	}
}

static void test_uidl_large(void **state)
{
	(void)state;
	/* 20,000 lines, every third UIDL a repeat of an earlier one */
	size_t n = 20000, cap = n * 32, len = 0;
	char *p = malloc(cap);
	struct pop3_listing l;

	assert_non_null(p);
	for (size_t i = 1; i <= n; i++)
		len += (size_t)snprintf(p + len, cap - len, "%zu uid-%zu\r\n", i,
					i % 3 == 0 ? i / 3 : i);
	assert_int_equal(pop3_uidl_parse(p, len, &l, NULL, 0), 0);
	/* the expected repeats, counted the slow way */
	size_t dups = 0;
	char *seen = calloc(n + 1, 1);
	assert_non_null(seen);
	for (size_t i = 1; i <= n; i++) {
		size_t k = i % 3 == 0 ? i / 3 : i;
		dups += seen[k];
		seen[k] = 1;
	}
	free(seen);
	assert_int_equal(l.n + l.n_dup, n);
	assert_int_equal(l.n_dup, dups);
	for (size_t i = 1; i < l.n; i++)
		assert_true(l.v[i].msgnum > l.v[i - 1].msgnum);
	pop3_listing_release(&l);
	free(p);
}

static void test_stat(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int rc;
		uint32_t count;
		uint64_t size;
	} cases[] = {
		{ "+OK 3 1234", 0, 3, 1234 },
		{ "+OK 0 0", 0, 0, 0 },
		{ "+OK 14 983560\r\n", 0, 14, 983560 },
		{ "+OK  2\t10 extra words", 0, 2, 10 },
		{ "+OK 4294967295 1", 0, 4294967295u, 1 },
		{ "-ERR no", -EINVAL, 0, 0 },
		{ "+OK", -EINVAL, 0, 0 },
		{ "+OK ", -EINVAL, 0, 0 },
		{ "+OK x 1", -EINVAL, 0, 0 },
		{ "+OK 3", -EINVAL, 0, 0 },
		{ "+OK 3x 4", -EINVAL, 0, 0 },
		{ "+OK 3 4x", -EINVAL, 0, 0 },
		{ "+OK -3 4", -EINVAL, 0, 0 },
		{ "+OK 4294967296 1", -EINVAL, 0, 0 },
		{ "+OKAY 3 4", -EINVAL, 0, 0 },
		{ "", -EINVAL, 0, 0 },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint32_t count = 99;
		uint64_t size = 99;

		assert_int_equal(pop3_stat_parse(cases[c].in, &count, &size), cases[c].rc);
		if (cases[c].rc == 0) {
			assert_int_equal(count, cases[c].count);
			assert_int_equal(size, cases[c].size);
		}
	}
}

static void test_list(void **state)
{
	(void)state;
	static const struct {
		const char *list;
		int rc;
		uint64_t want[3];       /* sizes of messages 1, 2, 3 after it */
	} cases[] = {
		{ "1 100\r\n2 200\r\n3 300\r\n", 0, { 100, 200, 300 } },
		/* another order, a message LIST does not name, one it has extra */
		{ "3 30\r\n1 10\r\n9 90\r\n", 0, { 10, POP3_SIZE_UNKNOWN, 30 } },
		{ "", 0, { POP3_SIZE_UNKNOWN, POP3_SIZE_UNKNOWN, POP3_SIZE_UNKNOWN } },
		{ "1 18446744073709551614\r\n", 0, { 18446744073709551614u, POP3_SIZE_UNKNOWN,
						     POP3_SIZE_UNKNOWN } },
		{ "1 18446744073709551615\r\n", -EINVAL, { 0 } },
		{ "1 99999999999999999999\r\n", -EINVAL, { 0 } },
		{ "1 10\r\n1 20\r\n", -EINVAL, { 0 } },
		{ "1 ten\r\n", -EINVAL, { 0 } },
		{ "1 -1\r\n", -EINVAL, { 0 } },
		{ "1\r\n", -EINVAL, { 0 } },
		{ "1 10 extra\r\n", -EINVAL, { 0 } },
		{ "0 10\r\n", -EINVAL, { 0 } },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		static const char uidl[] = "1 a\r\n2 b\r\n3 c\r\n";
		struct pop3_listing l;
		char why[200];

		assert_int_equal(pop3_uidl_parse(uidl, strlen(uidl), &l, why, sizeof(why)), 0);
		for (size_t i = 0; i < l.n; i++)
			assert_true(l.v[i].size == POP3_SIZE_UNKNOWN);
		assert_int_equal(pop3_list_parse(cases[c].list, strlen(cases[c].list), &l, why,
						 sizeof(why)), cases[c].rc);
		for (size_t i = 0; i < l.n; i++)
			assert_true(l.v[i].size == (cases[c].rc == 0 ? cases[c].want[i]
								   : POP3_SIZE_UNKNOWN));
		if (cases[c].rc < 0)
			assert_true(why[0] != '\0');
		pop3_listing_release(&l);
	}
}

struct sinkbuf {
	char data[256];
	size_t len;
	int fail_after;     /* calls before write fails; -1 never */
};

static int sink(void *ctx, const void *p, size_t n)
{
	struct sinkbuf *b = ctx;

	if (b->fail_after == 0)
		return -1;
	if (b->fail_after > 0)
		b->fail_after--;
	assert_true(b->len + n <= sizeof(b->data));
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

/* Feeds in pieces of at most step bytes (0: whole); returns where the
 * answer ended, -1 if it did not. */
static ssize_t undot(const char *in, size_t len, size_t step, struct sinkbuf *out)
{
	struct pop3_undot u;
	size_t pos = 0;

	pop3_undot_init(&u);
	out->len = 0;
	out->fail_after = -1;
	while (pos < len && !u.done) {
		size_t n = step && len - pos > step ? step : len - pos;
		ssize_t used = pop3_undot_feed(&u, in + pos, n, sink, out);

		assert_true(used >= 0 && (size_t)used <= n);
		if ((size_t)used < n)
			assert_true(u.done);
		pos += (size_t)used;
	}
	return u.done ? (ssize_t)pos : -1;
}

static void test_undot(void **state)
{
	(void)state;
	static const struct {
		const char *in;         /* a RETR body after "+OK ...\r\n", and what follows */
		const char *want;       /* the message; NULL: the answer does not end */
		const char *rest;       /* what is left for the next answer */
	} cases[] = {
		{ ".\r\n", "", "" },
		{ "a\r\n.\r\n", "a\r\n", "" },
		{ "a\r\n.\r\n+OK 1 u\r\n", "a\r\n", "+OK 1 u\r\n" },
		/* stuffed lines: one dot goes */
		{ "..\r\n...x\r\n.y\r\n.\r\n", ".\r\n..x\r\ny\r\n", "" },
		{ "..\r\n.\r\n", ".\r\n", "" },
		/* a dot within a line, or after a bare LF or CR, stays */
		{ "a.b\r\nc\n.d\r\ne\r.f\r\n.\r\n", "a.b\r\nc\n.d\r\ne\r.f\r\n", "" },
		/* ".\r" not followed by LF: the dot goes, the CR stays */
		{ ".\rx\r\n.\r\n", "\rx\r\n", "" },
		{ ".\r\rx\r\n.\r\n", "\r\rx\r\n", "" },
		/* CR CR LF, and a line of its own */
		{ "a\r\r\n\r\n.\r\n", "a\r\r\n\r\n", "" },
		/* ".\n" does not end it (lines end in CRLF) */
		{ ".\na\r\n.\r\n", "\na\r\n", "" },
		/* no terminating line: never done */
		{ "a\r\n", NULL, NULL },
		{ "a\r\n.", NULL, NULL },
		{ "a\r\n.\r", NULL, NULL },
		{ "a\r\n..\r\n", NULL, NULL },
		{ "", NULL, NULL },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t len = strlen(cases[c].in);

		for (size_t step = 0; step <= len; step++) {
			struct sinkbuf out;
			ssize_t end = undot(cases[c].in, len, step, &out);

			if (!cases[c].want) {
				assert_int_equal(end, -1);
				continue;
			}
			assert_int_equal(end, (ssize_t)(len - strlen(cases[c].rest)));
			assert_int_equal(out.len, strlen(cases[c].want));
			assert_memory_equal(out.data, cases[c].want, out.len);
		}
	}
}

/* A write that fails stops the reader at once. */
static void test_undot_write_fails(void **state)
{
	(void)state;
	static const char in[] = "ab\r\n.cd\r\n.\r\n";
	struct pop3_undot u;
	struct sinkbuf out = { .fail_after = 1 };

	pop3_undot_init(&u);
	assert_int_equal(pop3_undot_feed(&u, in, strlen(in), sink, &out), -1);
	assert_false(u.done);
	assert_int_equal(out.len, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uidl_accepts),
		cmocka_unit_test(test_uidl_rejects),
		cmocka_unit_test(test_uidl_length_limit),
		cmocka_unit_test(test_uidl_large),
		cmocka_unit_test(test_stat),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_undot),
		cmocka_unit_test(test_undot_write_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
