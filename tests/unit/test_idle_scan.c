/* Unit tests for fetch/idle_scan.c: what a server sends during IDLE,
 * scanned line by line: changes counted, keep-alives ignored, literals
 * skipped by count, the answers to DONE and the next IDLE accepted in
 * either order, and anything else (BYE, a stray tagged line or "+", too
 * long a line, too large a literal, too many bytes) ends the scan. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../fetch/idle_scan.h"

/* Feeds text in pieces of step bytes (0: at once); returns the feed's
 * result and the changes counted in all. */
static int feed(struct idle_scan *sc, const char *text, size_t len, size_t step, unsigned *changes,
		const char **why)
{
	*changes = 0;
	for (size_t at = 0; at < len;) {
		size_t k = step && len - at > step ? step : len - at;
		unsigned c;

		if (idle_scan_feed(sc, text + at, k, &c, why) < 0)
			return -1;
		*changes += c;
		at += k;
	}
	return 0;
}

static void test_table(void **state)
{
	static const struct {
		const char *old_tag;   /* NULL: no DONE sent */
		const char *text;
		int ret;
		unsigned changes;
		bool waiting;          /* answers still due after */
	} t[] = {
		{ NULL, "* 4 EXISTS\r\n", 0, 1, false },
		{ NULL, "* 3 EXPUNGE\r\n* 1 RECENT\r\n", 0, 1, false },
		{ NULL, "* 2 FETCH (FLAGS (\\Seen))\r\n", 0, 1, false },
		{ NULL, "* VANISHED 3:5\r\n", 0, 1, false },
		{ NULL, "* OK Still here\r\n* FLAGS (\\Seen)\r\n", 0, 0, false },
		{ NULL, "* 12 exists\n", 0, 1, false },              /* case, bare LF */
		{ NULL, "* 4 EXISTSX\r\n* EXISTS\r\n", 0, 0, false },  /* not the word; no number */
		/* a literal whose text looks like lines is skipped by count */
		{ NULL, "* 5 FETCH (BODY[HEADER] {21}\r\n* BYE x\r\nA1 OK done\r\n)\r\n* OK\r\n", 0, 1, false },
		{ NULL, "* 5 FETCH (X {3+}\r\n\r\n\n)\r\n", 0, 1, false },
		{ NULL, "* BYE shutting down\r\n", -1, 0, false },
		{ NULL, "+ idling\r\n", -1, 0, false },
		{ NULL, "M1 OK IDLE terminated\r\n", -1, 0, false },
		{ NULL, "\x01\x02garbage\r\n", -1, 0, false },
		{ "M1", "M1 OK Idle completed\r\n+ idling\r\n", 0, 0, false },
		{ "M1", "+ idling\r\nM1 OK done\r\n", 0, 0, false },
		{ "M1", "M1 OK done\r\n", 0, 0, true },
		{ "M1", "* 7 EXISTS\r\nM1 OK done\r\n+ idling\r\n* 8 EXISTS\r\n", 0, 2, false },
		{ "M1", "M1 NO what\r\n", -1, 0, true },
		{ "M1", "M12 OK done\r\n", -1, 0, true },
		{ "M1", "N1 OK done\r\n", -1, 0, true },
		{ "N4", "N4 OK\r\n+\r\n+ again\r\n", -1, 0, false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		for (size_t step = 0; step <= 3; step++) {
			struct idle_scan sc = { 0 };
			unsigned changes;
			const char *why = NULL;

			if (t[i].old_tag)
				idle_scan_expect(&sc, t[i].old_tag);
			int ret = feed(&sc, t[i].text, strlen(t[i].text), step, &changes, &why);
			if (ret != t[i].ret)
				fail_msg("case %zu (%s), pieces of %zu: returned %d", i, t[i].text, step, ret);
			if (ret == 0) {
				assert_int_equal(changes, t[i].changes);
				assert_int_equal(idle_scan_waiting(&sc), t[i].waiting);
			} else {
				assert_non_null(why);
			}
		}
	}
}

static void test_bounds(void **state)
{
	struct idle_scan sc = { 0 };
	unsigned changes;
	const char *why = NULL;
	char *big = malloc(IDLE_SCAN_TOTAL_MAX);

	(void)state;
	assert_non_null(big);
	/* a line one byte short of the cap passes; one past it does not */
	memset(big, 'x', IDLE_SCAN_LINE_MAX);
	memcpy(big, "* OK ", 5);
	memcpy(big + IDLE_SCAN_LINE_MAX - 2, "\r\n", 2);
	assert_int_equal(idle_scan_feed(&sc, big, IDLE_SCAN_LINE_MAX, &changes, &why), 0);
	memset(big, 'x', IDLE_SCAN_LINE_MAX + 1);
	assert_int_equal(idle_scan_feed(&sc, big, IDLE_SCAN_LINE_MAX + 1, &changes, &why), -1);
	assert_string_equal(why, "the server sent too long a line");

	memset(&sc, 0, sizeof(sc));
	const char *lit = "* 1 FETCH (X {65537}\r\n";
	assert_int_equal(idle_scan_feed(&sc, lit, strlen(lit), &changes, &why), -1);
	assert_string_equal(why, "the server sent too large a literal");
	memset(&sc, 0, sizeof(sc));
	lit = "* 1 FETCH (X {65536}\r\n";
	assert_int_equal(idle_scan_feed(&sc, lit, strlen(lit), &changes, &why), 0);

	/* keep-alives add up to the total, which a renewal restarts */
	memset(&sc, 0, sizeof(sc));
	for (size_t i = 0; i + 10 <= IDLE_SCAN_TOTAL_MAX; i += 10)
		memcpy(big + i, "* OK ping\n", 10);
	size_t n = IDLE_SCAN_TOTAL_MAX / 10 * 10;
	assert_int_equal(idle_scan_feed(&sc, big, n, &changes, &why), 0);
	assert_int_equal(idle_scan_feed(&sc, big, 10, &changes, &why), -1);
	assert_string_equal(why, "the server sent too much while idling");
	memset(&sc, 0, sizeof(sc));
	assert_int_equal(idle_scan_feed(&sc, big, n, &changes, &why), 0);
	idle_scan_expect(&sc, "M1");
	assert_int_equal(idle_scan_feed(&sc, big, 10, &changes, &why), 0);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
