/* Unit tests for fetch/msgmeta.c: header fields as the index records them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>

#include "../../fetch/msgmeta.h"

static void test_fields(void **state)
{
	(void)state;
	static const struct {
		const char *hdr;
		const char *message_id, *subject, *from_has, *to_has;
		int64_t date;
	} cases[] = {
		{ "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
		  "Subject: Quarterly report\r\nDate: Fri, 27 Nov 2026 14:32:00 +0000\r\n"
		  "Message-ID: <abc@example.com>\r\n\r\n",
		  "abc@example.com", "Quarterly report", "alice@example.com", "bob@example.org",
		  1795789920 },
		/* RFC 2047 subject and display name */
		{ "From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.de>\r\n"
		  "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus =?UTF-8?B?S8O2bG4=?=\r\n\r\n",
		  NULL, "Grüße aus Köln", "Jürgen", NULL, 0 },
		/* folded subject, bare LF line ends, timezone offset */
		{ "Subject: a long\n subject line\nDate: Mon, 2 Jan 2006 15:04:05 -0700\n\n",
		  NULL, "a long subject line", NULL, NULL, 1136239445 },
		/* nothing useful at all */
		{ "X-Nothing: here\r\n\r\n", NULL, NULL, NULL, NULL, 0 },
		/* unparsable date */
		{ "Date: yesterday-ish\r\nSubject: x\r\n\r\n", NULL, "x", NULL, NULL, 0 },
		/* 8-bit header bytes that are not UTF-8 must come out as valid UTF-8 */
		{ "Subject: caf\xe9 cr\xe8me\r\n\r\n", NULL, NULL, NULL, NULL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct msgmeta m;

		assert_int_equal(msgmeta_parse(cases[i].hdr, strlen(cases[i].hdr), &m), 0);
		if (cases[i].message_id)
			assert_string_equal(m.message_id, cases[i].message_id);
		else
			assert_null(m.message_id);
		if (cases[i].subject)
			assert_string_equal(m.subject, cases[i].subject);
		if (i == 5) {
			assert_non_null(m.subject);
			assert_true(g_utf8_validate(m.subject, -1, NULL));
			assert_non_null(strstr(m.subject, "caf"));
		}
		if (cases[i].from_has)
			assert_non_null(strstr(m.from, cases[i].from_has));
		if (cases[i].to_has)
			assert_non_null(strstr(m.to, cases[i].to_has));
		assert_int_equal(m.date, cases[i].date);
		msgmeta_release(&m);
	}
}

static void test_empty_and_header_len(void **state)
{
	(void)state;
	struct msgmeta m;

	assert_int_equal(msgmeta_parse("", 0, &m), 0);
	assert_null(m.subject);
	msgmeta_release(&m);

	assert_int_equal(msgmeta_header_len("A: b\r\n\r\nbody", 12), 8);
	assert_int_equal(msgmeta_header_len("A: b\n\nbody", 10), 6);
	assert_int_equal(msgmeta_header_len("\r\nbody", 6), 2);
	assert_int_equal(msgmeta_header_len("\nbody", 5), 1);
	assert_int_equal(msgmeta_header_len("A: b\r\nC: d", 10), 0);   /* not complete */
}

int main(void)
{
	msgmeta_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_empty_and_header_len),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
