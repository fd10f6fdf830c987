/* Unit tests for fs/json.c: every byte string becomes one valid JSON
 * string (RFC 8259), well-formed UTF-8 kept, everything else escaped. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../fs/json.h"
#include "fixture.h"

static const struct fixture_case cases[] = {
	{ S(""), "\"\"" },
	{ S("INBOX"), "\"INBOX\"" },
	{ S("say \"hi\" \\ bye"), "\"say \\\"hi\\\" \\\\ bye\"" },
	{ S("tab\tnl\ncr\r"), "\"tab\\u0009nl\\u000acr\\u000d\"" },
	{ S("nul\0x"), "\"nul\\u0000x\"" },
	{ S("del\x7f esc\x1b"), "\"del\\u007f esc\\u001b\"" },
	{ S("/ is fine, </script> too"), "\"/ is fine, </script> too\"" },
	/* Well-formed UTF-8 of each length is copied. */
	{ S("\xc3\x84rchiv \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x93\xa7"),
	  "\"\xc3\x84rchiv \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x93\xa7\"" },
	{ S("\xf4\x8f\xbf\xbf"), "\"\xf4\x8f\xbf\xbf\"" },            /* U+10FFFF */
	{ S("\xed\x9f\xbf"), "\"\xed\x9f\xbf\"" },                    /* U+D7FF */
	/* Everything else: one U+FFFD per byte. */
	{ S("\xff"), "\"\\ufffd\"" },
	{ S("a\x80z"), "\"a\\ufffdz\"" },                             /* lone continuation */
	{ S("\xc0\xaf"), "\"\\ufffd\\ufffd\"" },                      /* overlong '/' */
	{ S("\xe0\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\"" },           /* overlong, 3 bytes */
	{ S("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"" },           /* surrogate U+D800 */
	{ S("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" }, /* past U+10FFFF */
	{ S("\xf5\x80"), "\"\\ufffd\\ufffd\"" },
	{ S("\xe6\x97"), "\"\\ufffd\\ufffd\"" },                      /* truncated at the end */
	{ S("\xe6\x97x"), "\"\\ufffd\\ufffdx\"" },                    /* truncated inside */
	{ S("\xc3\"") , "\"\\ufffd\\\"\"" },                          /* a quote is never swallowed */
};

static void test_strings(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b = BUF_INIT(1024);

		assert_int_equal(json_append_string(&b, cases[i].in, cases[i].len), 0);
		assert_string_equal(b.data, cases[i].out);
		buf_release(&b);
	}
}

static void test_null_and_times(void **state)
{
	struct buf b = BUF_INIT(1024);

	(void)state;
	assert_int_equal(json_append_cstr(&b, NULL), 0);
	assert_int_equal(buf_appendc(&b, ','), 0);
	assert_int_equal(json_append_cstr(&b, "x\"y"), 0);
	assert_int_equal(buf_appendc(&b, ','), 0);
	assert_int_equal(json_append_time(&b, 0), 0);
	assert_int_equal(buf_appendc(&b, ','), 0);
	assert_int_equal(json_append_time(&b, -5), 0);
	assert_int_equal(buf_appendc(&b, ','), 0);
	assert_int_equal(json_append_time(&b, 1796164634), 0);
	assert_string_equal(b.data, "null,\"x\\\"y\",null,null,1796164634");
	buf_release(&b);
}

/* The buffer's maximum holds: an error, never an overrun. */
static void test_limit(void **state)
{
	struct buf b = BUF_INIT(8);

	(void)state;
	assert_int_equal(json_append_string(&b, S("\xff\xff\xff")), -E2BIG);
	assert_true(b.len <= 8);
	buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_null_and_times),
		cmocka_unit_test(test_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
