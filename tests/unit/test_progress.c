/* Unit tests for fetch/progress.c: the progress line, its rates and ETA. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../fetch/progress.h"

static const struct {
	size_t done, total;
	uint64_t bytes;
	double elapsed;
	const char *out;
} cases[] = {
	/* Nothing to go by yet: no rates, no ETA. */
	{ 0, 5210, 0, 10.0, "alice/work INBOX: 0/5210 messages, 0.0 MB" },
	{ 12, 5210, 900000, 0.2, "alice/work INBOX: 12/5210 messages, 0.9 MB" },
	{ 12, 5210, 900000, NAN, "alice/work INBOX: 12/5210 messages, 0.9 MB" },
	{ 12, 5210, 900000, -1.0, "alice/work INBOX: 12/5210 messages, 0.9 MB" },
	/* 40 msg/s: 5010 left take 125.25 s. */
	{ 200, 5210, 10500000, 5.0,
	  "alice/work INBOX: 200/5210 messages, 10.5 MB, 2.1 MB/s, 40 msg/s, ETA 2:05" },
	/* Under a minute; over an hour. */
	{ 90, 100, 1000000, 9.0, "alice/work INBOX: 90/100 messages, 1.0 MB, 0.1 MB/s, 10 msg/s, ETA 1 s" },
	{ 10, 100000, 2000000, 10.0,
	  "alice/work INBOX: 10/100000 messages, 2.0 MB, 0.2 MB/s, 1 msg/s, ETA 27:46:30" },
	/* Done: no ETA. */
	{ 100, 100, 5000000, 2.0, "alice/work INBOX: 100/100 messages, 5.0 MB, 2.5 MB/s, 50 msg/s" },
	/* More than announced (the server added some): no ETA either. */
	{ 120, 100, 5000000, 2.0, "alice/work INBOX: 120/100 messages, 5.0 MB, 2.5 MB/s, 60 msg/s" },
	/* An ETA beyond reason is capped, not wrapped. */
	{ 1, SIZE_MAX, 1, 1e9,
	  "alice/work INBOX: 1/18446744073709551615 messages, 0.0 MB, 0.0 MB/s, 0 msg/s, ETA 99999:59:59" },
};

static void test_lines(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf b = BUF_INIT(512);

		assert_int_equal(progress_format(&b, "alice/work", "INBOX", cases[i].done, cases[i].total,
						 cases[i].bytes, cases[i].elapsed), 0);
		assert_string_equal(b.data, cases[i].out);
		buf_release(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
