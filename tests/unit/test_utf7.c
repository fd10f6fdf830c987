/* Unit tests for fetch/utf7.c: IMAP modified UTF-7 (RFC 3501 section 5.1.3).
 * The valid pairs were checked against Dovecot's "doveadm mailbox mutf7". */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../fetch/utf7.h"

struct pair {
	const char *utf7;
	const char *utf8;
	size_t utf8_len;  /* 0: strlen(utf8) */
};

static const struct pair pairs[] = {
	{ "", "", 0 },
	{ "INBOX", "INBOX", 0 },
	{ "&-", "&", 0 },
	{ "&-&-", "&&", 0 },
	{ "Tom &- Jerry", "Tom & Jerry", 0 },
	{ "&AMQ-rchiv", "\xc3\x84rchiv", 0 },                   /* Ärchiv */
	{ "Entw&APw-rfe", "Entw\xc3\xbcrfe", 0 },               /* Entwürfe */
	{ "&AOQA9gD8-", "\xc3\xa4\xc3\xb6\xc3\xbc", 0 },        /* äöü: one run */
	{ "&AOQ-&-", "\xc3\xa4&", 0 },                          /* ä& */
	{ "&IKw-uro", "\xe2\x82\xacuro", 0 },                   /* €uro */
	{ "&A6k-", "\xce\xa9", 0 },                             /* Ω */
	/* RFC 3501 section 5.1.3 example */
	{ "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
	  "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 0 },
	{ "&2D3eAA-", "\xf0\x9f\x98\x80", 0 },                  /* U+1F600, a surrogate pair */
	{ "&2DTdHg-x&2D3eAA-", "\xf0\x9d\x84\x9ex\xf0\x9f\x98\x80", 0 },
	{ "&2DTdHtg93gA-", "\xf0\x9d\x84\x9e\xf0\x9f\x98\x80", 0 }, /* two pairs, one run */
	{ "&2,,f,w-", "\xf4\x8f\xbf\xbf", 0 },                  /* U+10FFFF */
	{ "&,,8-", "\xef\xbf\xbf", 0 },                         /* U+FFFF */
	{ "a&AAE-b", "a\x01" "b", 0 },                          /* control chars are encoded */
	{ "&AH8-", "\x7f", 0 },
	{ "a-b+c,d", "a-b+c,d", 0 },
	{ "Sent.&BBIEMAQ2BD0EPgQ1-", "Sent.\xd0\x92\xd0\xb0\xd0\xb6\xd0\xbd\xd0\xbe\xd0\xb5", 0 },
};

static void test_decode_pairs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		struct buf b = BUF_INIT(4096);
		size_t n = pairs[i].utf8_len ? pairs[i].utf8_len : strlen(pairs[i].utf8);

		assert_int_equal(utf7_decode(pairs[i].utf7, strlen(pairs[i].utf7), &b), 0);
		assert_int_equal(b.len, n);
		assert_memory_equal(b.len ? b.data : "", pairs[i].utf8, n);
		buf_release(&b);
	}
}

static void test_encode_pairs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		struct buf b = BUF_INIT(4096);
		size_t n = pairs[i].utf8_len ? pairs[i].utf8_len : strlen(pairs[i].utf8);

		assert_int_equal(utf7_encode(pairs[i].utf8, n, &b), 0);
		assert_string_equal(b.len ? b.data : "", pairs[i].utf7);
		buf_release(&b);
	}
}

struct bad {
	const char *in;
	size_t len;  /* 0: strlen(in) */
	const char *why;
};

static const struct bad bad_utf7[] = {
	{ "&", 0, "unterminated shift" },
	{ "abc&", 0, "unterminated shift at the end" },
	{ "&AMQ", 0, "unterminated shift" },
	{ "&AMQrchiv", 0, "no '-' at all" },
	{ "&AMQ/-", 0, "standard base64 '/' instead of ','" },
	{ "&AM=Q-", 0, "padding char" },
	{ "&AM Q-", 0, "space inside base64" },
	{ "&Jjo!-", 0, "bad base64 char" },
	{ "&AMR-", 0, "non-zero leftover bits" },
	{ "&AMQA-", 0, "a whole unused base64 char" },
	{ "&AA-", 0, "too few bits for one unit" },
	{ "&AE4-", 0, "encoded printable ASCII 'N'" },
	{ "&AGE-", 0, "encoded printable ASCII 'a'" },
	{ "&ACY-", 0, "encoded '&' (must be \"&-\")" },
	{ "&ACA-", 0, "encoded space" },
	{ "&AH4-", 0, "encoded '~'" },
	{ "&AAA-", 0, "encoded NUL" },
	{ "a&AOQAAA-", 0, "NUL after a valid unit" },
	{ "&2D0-", 0, "lone high surrogate" },
	{ "&2D0AYQ-", 0, "high surrogate followed by a non-surrogate" },
	{ "&3gA-", 0, "lone low surrogate" },
	{ "&2D3YPQ-", 0, "high surrogate followed by a high surrogate" },
	{ "&AOQ-&APY-", 0, "null shift \"-&\" between two runs" },
	{ "\xc3\x84rchiv", 0, "raw 8-bit" },
	{ "a\tb", 0, "raw control char" },
	{ "a\x7f", 0, "raw DEL" },
	{ "a\0b", 3, "raw NUL" },
	{ "&AOQ-\0", 6, "raw NUL after a run" },
};

/* conv (named what) refuses each of the n inputs of v with -EINVAL and
 * leaves its output buffer as it was. */
static void assert_rejects(int (*conv)(const char *, size_t, struct buf *), const char *what,
			   const struct bad *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct buf b = BUF_INIT(4096);
		size_t len = v[i].len ? v[i].len : strlen(v[i].in);

		assert_int_equal(buf_appends(&b, "keep"), 0);
		if (conv(v[i].in, len, &b) != -EINVAL)
			fail_msg("%s accepted case %zu: %s", what, i, v[i].why);
		assert_int_equal(b.len, 4);
		assert_string_equal(b.data, "keep");
		buf_release(&b);
	}
}

static void test_decode_rejects(void **state)
{
	(void)state;
	assert_rejects(utf7_decode, "decode", bad_utf7, sizeof(bad_utf7) / sizeof(bad_utf7[0]));
}

static const struct bad bad_utf8[] = {
	{ "\xff", 0, "never valid" },
	{ "\x80", 0, "lone continuation" },
	{ "a\xc3", 0, "truncated 2-byte sequence" },
	{ "\xe2\x82", 0, "truncated 3-byte sequence" },
	{ "\xc3\x28", 0, "bad continuation" },
	{ "\xc0\x80", 0, "overlong NUL" },
	{ "\xc1\xbf", 0, "overlong 2-byte" },
	{ "\xe0\x9f\xbf", 0, "overlong 3-byte" },
	{ "\xf0\x8f\xbf\xbf", 0, "overlong 4-byte" },
	{ "\xed\xa0\x80", 0, "UTF-8 encoded high surrogate" },
	{ "\xed\xbf\xbf", 0, "UTF-8 encoded low surrogate" },
	{ "\xf4\x90\x80\x80", 0, "above U+10FFFF" },
	{ "\xf5\x80\x80\x80", 0, "above U+10FFFF" },
	{ "a\0b", 3, "NUL" },
	{ "\xc3\xa4\0", 3, "NUL inside a run" },
};

static void test_encode_rejects(void **state)
{
	(void)state;
	assert_rejects(utf7_encode, "encode", bad_utf8, sizeof(bad_utf8) / sizeof(bad_utf8[0]));
}

/* Both directions append to what is already there. */
static void test_appends(void **state)
{
	struct buf b = BUF_INIT(4096);

	(void)state;
	assert_int_equal(buf_appends(&b, "INBOX."), 0);
	assert_int_equal(utf7_decode("&AMQ-rchiv", 10, &b), 0);
	assert_string_equal(b.data, "INBOX.\xc3\x84rchiv");
	buf_reset(&b);
	assert_int_equal(buf_appends(&b, "INBOX."), 0);
	assert_int_equal(utf7_encode("\xc3\x84rchiv", 7, &b), 0);
	assert_string_equal(b.data, "INBOX.&AMQ-rchiv");
	buf_release(&b);
}

/* A full buffer fails with the buffer's error and leaves out unchanged. */
static void test_buffer_limit(void **state)
{
	struct buf b = BUF_INIT(8);

	(void)state;
	assert_int_equal(buf_appends(&b, "ab"), 0);
	assert_int_equal(utf7_encode("\xc3\xa4\xc3\xb6\xc3\xbc", 6, &b), -E2BIG);
	assert_int_equal(b.len, 2);
	assert_string_equal(b.data, "ab");
	assert_int_equal(utf7_decode("Entw&APw-rfe", 12, &b), -E2BIG);
	assert_int_equal(b.len, 2);
	assert_string_equal(b.data, "ab");
	assert_int_equal(utf7_decode("&APw-", 5, &b), 0);
	assert_string_equal(b.data, "ab\xc3\xbc");
	buf_release(&b);
}

static size_t put_utf8(char *s, uint32_t cp)
{
	if (cp < 0x80) {
		s[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		s[0] = (char)(0xc0 | cp >> 6);
		s[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		s[0] = (char)(0xe0 | cp >> 12);
		s[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		s[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	s[0] = (char)(0xf0 | cp >> 18);
	s[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	s[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	s[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Every code point, alone and between ASCII and '&', survives
 * encode -> decode, and the encoded form decodes back to itself. */
static void test_round_trip_all_code_points(void **state)
{
	struct buf e = BUF_INIT(256), d = BUF_INIT(256), e2 = BUF_INIT(256);

	(void)state;
	for (uint32_t cp = 1; cp <= 0x10ffff; cp++) {
		char s[16];
		size_t n = 0;

		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		s[n++] = 'x';
		n += put_utf8(s + n, cp);
		n += put_utf8(s + n, cp);
		s[n++] = '&';
		n += put_utf8(s + n, cp);
		buf_reset(&e);
		buf_reset(&d);
		buf_reset(&e2);
		if (utf7_encode(s, n, &e) != 0)
			fail_msg("encode U+%04X", cp);
		if (utf7_decode(e.data, e.len, &d) != 0)
			fail_msg("decode of U+%04X: %s", cp, e.data);
		if (d.len != n || memcmp(d.data, s, n) != 0)
			fail_msg("round trip of U+%04X", cp);
		assert_int_equal(utf7_encode(d.data, d.len, &e2), 0);
		assert_string_equal(e2.data, e.data);
	}
	buf_release(&e);
	buf_release(&d);
	buf_release(&e2);
}

static void test_round_trip_names(void **state)
{
	static const char *names[] = {
		"INBOX", "Sent Items", "&", "&&&", "a&b", "[Gmail]/All Mail",
		"\xc3\x84rchiv/2024 & 2025", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e&x",
		"\xf0\x9f\x98\x80\xf0\x9f\x98\x80 \xf0\x9f\x98\x80", "-&-", "\x01\x02\x03",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct buf e = BUF_INIT(1024), d = BUF_INIT(1024);

		assert_int_equal(utf7_encode(names[i], strlen(names[i]), &e), 0);
		for (size_t k = 0; k < e.len; k++)
			assert_true(e.data[k] >= 0x20 && e.data[k] <= 0x7e);
		assert_int_equal(utf7_decode(e.data, e.len, &d), 0);
		assert_string_equal(d.data, names[i]);
		buf_release(&e);
		buf_release(&d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_pairs),
		cmocka_unit_test(test_encode_pairs),
		cmocka_unit_test(test_decode_rejects),
		cmocka_unit_test(test_encode_rejects),
		cmocka_unit_test(test_appends),
		cmocka_unit_test(test_buffer_limit),
		cmocka_unit_test(test_round_trip_all_code_points),
		cmocka_unit_test(test_round_trip_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
