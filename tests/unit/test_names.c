/* Unit tests for cache/names.c: the path-component escaping rule, folder
 * paths, message file names and tags. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../../cache/names.h"
#include "fixture.h"

/* Whole string is well-formed UTF-8. */
static bool utf8_valid(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		size_t len;
		unsigned char lo = 0x80, hi = 0xBF;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			len = 2;
		else if (c >= 0xE0 && c <= 0xEF)
			len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
		else if (c >= 0xF0 && c <= 0xF4)
			len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
		else
			return false;
		if (i + len > n || p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (size_t k = 2; k < len; k++)
			if (p[i + k] < 0x80 || p[i + k] > 0xBF)
				return false;
		i += len;
	}
	return true;
}

/* What every escaped component must satisfy. */
static void assert_safe_component(const char *s, size_t n)
{
	assert_true(n > 0);
	assert_true(n <= NAMES_COMPONENT_MAX);
	assert_int_equal(strlen(s), n);          /* no NUL inside */
	assert_null(memchr(s, '/', n));
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		assert_true(c >= 0x20 && c != 0x7F);
	}
	assert_true(s[0] != '.');
	assert_true(strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
	assert_true(utf8_valid((const unsigned char *)s, n));
}

static void roundtrip(const char *in, size_t len)
{
	struct buf esc = BUF_INIT(4096), back = BUF_INIT(4096);

	assert_int_equal(names_escape(in, len, &esc), 0);
	assert_safe_component(esc.data, esc.len);
	assert_int_equal(names_unescape(esc.data, esc.len, &back), 0);
	assert_int_equal(back.len, len);
	assert_memory_equal(back.data, in, len);
	buf_release(&esc);
	buf_release(&back);
}

static const struct fixture_case escape_cases[] = {
	{ S("INBOX"), "INBOX" },
	{ S(""), "%" },
	{ S("."), "%2E" },
	{ S(".."), "%2E." },
	{ S("..."), "%2E.." },
	{ S(".hidden"), "%2Ehidden" },
	{ S("a.b."), "a.b." },
	{ S("a/b"), "a%2Fb" },
	{ S("/"), "%2F" },
	{ S("100%"), "100%25" },
	{ S("%"), "%25" },
	{ S("a\0b"), "a%00b" },
	{ S("tab\there"), "tab%09here" },
	{ S("\n"), "%0A" },
	{ S("\x1b[31m"), "%1B[31m" },
	{ S("del\x7f"), "del%7F" },
	{ S("\xc3\x84rchiv"), "\xc3\x84rchiv" },             /* Ärchiv, valid UTF-8 stays */
	{ S("\xe2\x82\xac \xf0\x9f\x93\xa7"), "\xe2\x82\xac \xf0\x9f\x93\xa7" },
	{ S("\xc2\x85"), "\xc2\x85" },                       /* C1 NEL is valid UTF-8: kept */
	{ S("\xff"), "%FF" },
	{ S("caf\xe9"), "caf%E9" },                          /* Latin-1 byte */
	{ S("\xc0\xaf"), "%C0%AF" },                         /* overlong '/' */
	{ S("\xe0\x80\xaf"), "%E0%80%AF" },                  /* overlong, 3 bytes */
	{ S("\xed\xa0\x80"), "%ED%A0%80" },                  /* surrogate */
	{ S("\xf4\x90\x80\x80"), "%F4%90%80%80" },           /* past U+10FFFF */
	{ S("\xe2\x82"), "%E2%82" },                         /* truncated */
	{ S("\xe2\x82x"), "%E2%82x" },
	{ S("\x80"), "%80" },                                /* lone continuation */
	{ S("Sent Items"), "Sent Items" },
	{ S("~user"), "~user" },
};

static void test_escape_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof escape_cases / sizeof escape_cases[0]; i++) {
		struct buf out = BUF_INIT(1024);

		assert_int_equal(names_escape(escape_cases[i].in, escape_cases[i].len, &out), 0);
		assert_string_equal(out.data, escape_cases[i].out);
		assert_safe_component(out.data, out.len);
		buf_release(&out);
		roundtrip(escape_cases[i].in, escape_cases[i].len);
	}
}

static void test_escape_appends(void **state)
{
	struct buf out = BUF_INIT(1024);

	(void)state;
	assert_int_equal(buf_appends(&out, "mail/"), 0);
	assert_int_equal(names_escape(S(".."), &out), 0);
	assert_string_equal(out.data, "mail/%2E.");
	buf_release(&out);
}

/* Random byte strings, biased towards the interesting bytes. */
static void test_escape_random_roundtrip(void **state)
{
	static const unsigned char alphabet[] = {
		'a', 'Z', '.', '/', '%', 0, 1, 0x1f, 0x7f, 0x80, 0xbf, 0xc2, 0xc3, 0x84,
		0xe2, 0x82, 0xac, 0xed, 0xa0, 0xf0, 0x9f, 0xf4, 0x90, 0xff, ' ', '2', 'E',
	};
	uint32_t seed = 12345;

	(void)state;
	for (int iter = 0; iter < 5000; iter++) {
		char in[60];
		size_t len;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % 40;
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = (char)alphabet[(seed >> 16) % sizeof alphabet];
		}
		roundtrip(in, len);
	}
}

static void test_escape_too_long(void **state)
{
	char in[300];
	struct buf out = BUF_INIT(4096);

	(void)state;
	memset(in, 'a', sizeof in);
	assert_int_equal(names_escape(in, 255, &out), 0);
	assert_int_equal(out.len, 255);
	buf_reset(&out);
	assert_int_equal(names_escape(in, 256, &out), -ENAMETOOLONG);

	/* 85 escaped slashes are 255 bytes; 86 pass the limit. The buffer keeps
	 * what it had before the failed call. */
	memset(in, '/', sizeof in);
	buf_reset(&out);
	assert_int_equal(buf_appends(&out, "keep"), 0);
	assert_int_equal(names_escape(in, 86, &out), -ENAMETOOLONG);
	assert_string_equal(out.data, "keep");
	assert_int_equal(names_escape(in, 85, &out), 0);
	assert_int_equal(out.len, 4 + 255);

	/* A buffer's own maximum is reported as the buffer's error. */
	{
		struct buf small = BUF_INIT(3);

		assert_int_equal(names_escape(S("abcd"), &small), -E2BIG);
		buf_release(&small);
	}
	buf_release(&out);
}

static void test_unescape_rejects(void **state)
{
	static const struct {
		const char *in;
		size_t len;
	} bad[] = {
		{ S("") },            /* the empty name is "%" */
		{ S("%4") },
		{ S("a%") },
		{ S("%G0") },
		{ S("%2e.") },        /* lower-case hex is not canonical */
		{ S("%41") },         /* 'A' needs no escape */
		{ S("%2E%2E") },      /* ".." is "%2E." */
		{ S("a/b") },
		{ S(".") },
		{ S("..") },
		{ S(".x") },
		{ S("a\x01") },
		{ S("a\0b") },
		{ S("\xff") },
		{ S("%%") },
	};
	struct buf out = BUF_INIT(1024);

	(void)state;
	assert_int_equal(buf_appends(&out, "x"), 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(names_unescape(bad[i].in, bad[i].len, &out), -EINVAL);
		assert_string_equal(out.data, "x");
	}
	assert_int_equal(names_unescape(S("%"), &out), 0);
	assert_string_equal(out.data, "x");
	assert_int_equal(names_unescape(S("%2E.%2F%25"), &out), 0);
	assert_string_equal(out.data, "x../%");
	buf_release(&out);
}

static void test_folder_path(void **state)
{
	static const struct {
		const char *folder;
		char delim;
		const char *out;
	} cases[] = {
		{ "INBOX", '/', "INBOX" },
		{ "INBOX", 0, "INBOX" },
		{ "../x", '/', "%2E./x" },
		{ "..", '/', "%2E." },
		{ "a/b", '.', "a%2Fb" },
		{ "INBOX.Sent", '.', "INBOX/Sent" },
		{ "INBOX.Sent", '/', "INBOX.Sent" },
		{ "a/b", 0, "a%2Fb" },
		{ "a//b", '/', "a/%/b" },
		{ "/", '/', "%/%" },
		{ "", '/', "%" },
		{ "./.", '/', "%2E/%2E" },
		{ "Work/\xc3\x84rchiv", '/', "Work/\xc3\x84rchiv" },
		{ "a.b/c", '.', "a/b%2Fc" },
		{ "x\x01/y%", '/', "x%01/y%25" },
		/* A Maildir's own subdirectory names (issue 14). */
		{ "INBOX.tmp", '.', "INBOX/%74mp" },
		{ "INBOX.cur", '.', "INBOX/%63ur" },
		{ "INBOX.new", '.', "INBOX/%6Eew" },
		{ "INBOX.new.cur", '.', "INBOX/%6Eew/%63ur" },
		{ "new/cur/tmp", '/', "%6Eew/%63ur/%74mp" },
		{ "tmp", 0, "%74mp" },
		{ "INBOX.tmp", '/', "INBOX.tmp" },
		{ "INBOX.TMP", '.', "INBOX/TMP" },
		{ "INBOX.tmpx", '.', "INBOX/tmpx" },
		{ "INBOX..tmp", '.', "INBOX/%/%74mp" },
		{ "x/.cur", '/', "x/%2Ecur" },
		{ "%74mp", '/', "%2574mp" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf out = BUF_INIT(4096);
		char *copy, *tok, *save = NULL;

		struct buf back = BUF_INIT(4096);

		assert_int_equal(names_folder_path(cases[i].folder, cases[i].delim, &out), 0);
		assert_string_equal(out.data, cases[i].out);
		/* Each component is safe on its own, is no Maildir subdirectory,
		 * and decodes back: the components joined by the delimiter are
		 * the name. */
		copy = strdup(out.data);
		for (tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
			assert_safe_component(tok, strlen(tok));
			assert_false(names_is_maildir_sub(tok, strlen(tok)));
			if (tok != copy)
				assert_int_equal(buf_appendc(&back, cases[i].delim ? cases[i].delim : '/'), 0);
			assert_int_equal(names_folder_unescape(tok, strlen(tok), &back), 0);
		}
		assert_int_equal(back.len, strlen(cases[i].folder));
		assert_memory_equal(back.data ? back.data : "", cases[i].folder, back.len);
		free(copy);
		buf_release(&back);
		buf_release(&out);
	}
}

static void test_folder_path_too_long(void **state)
{
	char name[600];
	struct buf out = BUF_INIT(4096);

	(void)state;
	memset(name, 'x', sizeof name);
	name[sizeof name - 1] = '\0';
	assert_int_equal(buf_appends(&out, "pre"), 0);
	assert_int_equal(names_folder_path(name, '/', &out), -ENAMETOOLONG);
	assert_string_equal(out.data, "pre");
	name[300] = '/';      /* two components, each short enough */
	assert_int_equal(names_folder_path(name, '/', &out), -ENAMETOOLONG);
	name[200] = '/';
	name[450] = '/';      /* now every component is at most 255 bytes */
	assert_int_equal(names_folder_path(name, '/', &out), 0);
	assert_int_equal(out.len, 3 + 599);
	buf_release(&out);
}

/* The reserved forms decode only through names_folder_unescape, raw
 * "cur", "new" and "tmp" are no folder component, and the mount shows the
 * real names. */
static void test_folder_unescape(void **state)
{
	static const struct {
		const char *in;
		int rc;
		const char *out;
	} cases[] = {
		{ "%74mp", 0, "tmp" }, { "%63ur", 0, "cur" }, { "%6Eew", 0, "new" },
		{ "tmp", -EINVAL, NULL }, { "cur", -EINVAL, NULL }, { "new", -EINVAL, NULL },
		{ "%2574mp", 0, "%74mp" }, { "tmpx", 0, "tmpx" }, { "%2Etmp", 0, ".tmp" },
		{ "%6eew", -EINVAL, NULL }, { "%74", -EINVAL, NULL }, { "%", 0, "" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf out = BUF_INIT(64);

		assert_int_equal(buf_appends(&out, "pre"), 0);
		assert_int_equal(names_folder_unescape(cases[i].in, strlen(cases[i].in), &out),
				 cases[i].rc);
		if (cases[i].out) {
			assert_int_equal(out.len, 3 + strlen(cases[i].out));
			assert_memory_equal(out.data + 3, cases[i].out, out.len - 3);
		} else {
			assert_string_equal(out.data, "pre");
		}
		buf_release(&out);
	}
	assert_string_equal(names_folder_view("%74mp"), "tmp");
	assert_string_equal(names_folder_view("%63ur"), "cur");
	assert_string_equal(names_folder_view("%6Eew"), "new");
	assert_string_equal(names_folder_view("%2574mp"), "%2574mp");
	assert_string_equal(names_folder_view("%2Ehidden"), "%2Ehidden");
	assert_string_equal(names_folder_view("INBOX"), "INBOX");
}

static int set_utc(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	return 0;
}

static void test_message_file_table(void **state)
{
	static const struct {
		int64_t date;
		const char *subject;
		const char *tag;
		const char *out;
	} cases[] = {
		{ 1764253920, "Quarterly report", "3f9a1c", "2025-11-27 1432 Quarterly report ~3f9a1c.eml" },
		{ 0, "x", "a1", "0000-00-00 0000 x ~a1.eml" },
		{ -5, "x", "a1", "0000-00-00 0000 x ~a1.eml" },
		{ 1, NULL, "t", "1970-01-01 0000 (no subject) ~t.eml" },
		{ 86399, "", "t", "1970-01-01 2359 (no subject) ~t.eml" },
		{ 86399, " \t\r\n ", "t", "1970-01-01 2359 (no subject) ~t.eml" },
		{ 1, "  Re:\t\tlunch \r\n tomorrow?  ", "t", "1970-01-01 0000 Re: lunch tomorrow? ~t.eml" },
		{ 1, "Q3/Q4 plan", "t", "1970-01-01 0000 Q3_Q4 plan ~t.eml" },
		{ 1, "../../etc/passwd", "t", "1970-01-01 0000 .._.._etc_passwd ~t.eml" },
		{ 1, "bell\x07 esc\x1b[0m del\x7f", "t", "1970-01-01 0000 bell_ esc_[0m del_ ~t.eml" },
		{ 1, "c1\xc2\x9b" "x", "t", "1970-01-01 0000 c1_x ~t.eml" },
		{ 1, "nel\xc2\x85nbsp\xc2\xa0" "end", "t", "1970-01-01 0000 nel nbsp end ~t.eml" },
		{ 1, "caf\xe9 ok", "t", "1970-01-01 0000 caf\xef\xbf\xbd ok ~t.eml" },
		{ 1, "\xff\xfe", "t", "1970-01-01 0000 \xef\xbf\xbd\xef\xbf\xbd ~t.eml" },
		{ 1, "evil\xe2\x80\xae" "fdp.exe", "t", "1970-01-01 0000 evil_fdp.exe ~t.eml" },
		{ 1, "Gr\xc3\xbc\xc3\x9f" "e \xf0\x9f\x93\xa7", "t", "1970-01-01 0000 Gr\xc3\xbc\xc3\x9f" "e \xf0\x9f\x93\xa7 ~t.eml" },
		{ 1, ".hidden", "t", "1970-01-01 0000 .hidden ~t.eml" },
		{ 253402300799, "y", "t", "9999-12-31 2359 y ~t.eml" },
		{ 253402300800, "y", "t", "0000-00-00 0000 y ~t.eml" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf out = BUF_INIT(1024);

		assert_int_equal(names_message_file(cases[i].date, cases[i].subject, cases[i].tag, &out), 0);
		assert_string_equal(out.data, cases[i].out);
		assert_safe_component(out.data, out.len);
		buf_release(&out);
	}
}

static void test_message_file_bad_tag(void **state)
{
	struct buf out = BUF_INIT(1024);

	(void)state;
	assert_int_equal(names_message_file(1, "x", NULL, &out), -EINVAL);
	assert_int_equal(names_message_file(1, "x", "", &out), -EINVAL);
	assert_int_equal(names_message_file(1, "x", "a/b", &out), -EINVAL);
	assert_int_equal(names_message_file(1, "x", "a.b", &out), -EINVAL);
	assert_int_equal(out.len, 0);
	buf_release(&out);
}

/* Long subjects of 1- to 4-byte characters, behind 0 to 3 ASCII bytes so
 * the cut meets every alignment: the name fits, is whole UTF-8, keeps its
 * tag and ends the subject on a complete character. */
static void test_message_file_long(void **state)
{
	static const char *const chars[] = { "a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x93\xa7" };
	static const char *const tags[] = { "t", "3f9a1c", "0123456789abcdef" };

	(void)state;
	for (size_t c = 0; c < 4; c++) {
		for (size_t pre = 0; pre < 4; pre++) {
			for (size_t t = 0; t < 3; t++) {
				char subject[2000] = "";
				struct buf out = BUF_INIT(1024);
				const char *tail, *subj;
				size_t taillen, subjlen, clen = strlen(chars[c]);

				memcpy(subject, "xyz", pre);
				subject[pre] = '\0';
				while (strlen(subject) + clen < sizeof subject)
					strcat(subject, chars[c]);
				assert_int_equal(names_message_file(1764253920, subject, tags[t], &out), 0);
				assert_safe_component(out.data, out.len);
				/* As long as it can be: less than one character short. */
				assert_true(out.len > NAMES_COMPONENT_MAX - clen);
				assert_memory_equal(out.data, "2025-11-27 1432 ", 16);
				taillen = strlen(tags[t]) + 6;
				tail = out.data + out.len - taillen;
				assert_memory_equal(tail, " ~", 2);
				assert_memory_equal(tail + 2, tags[t], strlen(tags[t]));
				assert_string_equal(tail + 2 + strlen(tags[t]), ".eml");
				subj = out.data + 16;
				subjlen = (size_t)(tail - subj);
				assert_memory_equal(subj, subject, pre);
				assert_int_equal((subjlen - pre) % clen, 0);
				assert_true(utf8_valid((const unsigned char *)subj, subjlen));
				buf_release(&out);
			}
		}
	}
}

/* A cut must not leave a trailing space before " ~tag". */
static void test_message_file_cut_at_space(void **state)
{
	char subject[400];
	struct buf out = BUF_INIT(1024);
	size_t budget = NAMES_COMPONENT_MAX - 16 - 2 - 1 - 4;

	(void)state;
	memset(subject, 'w', sizeof subject);
	subject[sizeof subject - 1] = '\0';
	subject[budget] = ' ';          /* a space exactly where the cut falls */
	assert_int_equal(names_message_file(1, subject, "t", &out), 0);
	assert_int_equal(out.len, NAMES_COMPONENT_MAX);
	assert_null(strstr(out.data, "  "));
	assert_non_null(strstr(out.data, "w ~t.eml"));
	buf_release(&out);
}

static void test_tag(void **state)
{
	char a[17], b[17], c[17];

	(void)state;
	/* Same on every machine: SHA-256 of "work\0INBOX\01700\042\0". */
	names_tag("work", "INBOX", 1700, "42", a, 16);
	assert_string_equal(a, "a23ec89916cfd73e");
	names_tag("work", "INBOX", 1700, "42", b, 6);
	assert_string_equal(b, "a23ec8");
	names_tag("work", "INBOX", 1700, "42", c, 40);   /* clamped to 16 */
	assert_string_equal(c, "a23ec89916cfd73e");
	names_tag(NULL, NULL, 0, NULL, a, 16);
	assert_string_equal(a, "c61a6e3e63c2b329");

	/* Separators: moving a byte between fields changes the tag. */
	names_tag("ab", "c", 1, "1", a, 16);
	names_tag("a", "bc", 1, "1", b, 16);
	assert_string_not_equal(a, b);
	names_tag("w", "INBOX", 1, "23", a, 16);
	names_tag("w", "INBOX", 12, "3", b, 16);
	assert_string_not_equal(a, b);
	names_tag("w", "INBOX", 2, "3", a, 16);
	names_tag("w", "INBOX", 3, "3", b, 16);
	assert_string_not_equal(a, b);

	names_tag("w", "INBOX", 2, "3", a, 0);
	assert_string_equal(a, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_table),
		cmocka_unit_test(test_escape_appends),
		cmocka_unit_test(test_escape_random_roundtrip),
		cmocka_unit_test(test_escape_too_long),
		cmocka_unit_test(test_unescape_rejects),
		cmocka_unit_test(test_folder_path),
		cmocka_unit_test(test_folder_path_too_long),
		cmocka_unit_test(test_folder_unescape),
		cmocka_unit_test_setup(test_message_file_table, set_utc),
		cmocka_unit_test(test_message_file_bad_tag),
		cmocka_unit_test_setup(test_message_file_long, set_utc),
		cmocka_unit_test(test_message_file_cut_at_space),
		cmocka_unit_test(test_tag),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
