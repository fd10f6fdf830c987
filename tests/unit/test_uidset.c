/* Unit tests for fetch/uidset.c: IMAP UID sets parsed as ranges, in time
 * and memory proportional to their text however much they span, and only
 * expanded or intersected on request. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../fetch/uidset.h"

static void test_parse(void **state)
{
	static const struct {
		const char *set;
		int ret;
		size_t n;              /* distinct UIDs */
		uint32_t want[8];      /* ascending, after normalize */
	} t[] = {
		{ "1", 0, 1, { 1 } },
		{ "1:3,5", 0, 4, { 1, 2, 3, 5 } },
		{ "1:5,7", 0, 6, { 1, 2, 3, 4, 5, 7 } },
		{ "9:8", 0, 2, { 8, 9 } },
		{ "1:3,7,9:8", 0, 6, { 1, 2, 3, 7, 8, 9 } },
		{ "5,3,4", 0, 3, { 3, 4, 5 } },
		{ "4:4", 0, 1, { 4 } },
		{ "3,3,2:4", 0, 3, { 2, 3, 4 } },
		{ "4294967295", 0, 1, { 4294967295u } },
		{ "4294967294:4294967295", 0, 2, { 4294967294u, 4294967295u } },
		{ "4294967295:4294967293", 0, 3, { 4294967293u, 4294967294u, 4294967295u } },
		{ "", -EINVAL, 0, { 0 } },
		{ ",", -EINVAL, 0, { 0 } },
		{ "1,", -EINVAL, 0, { 0 } },
		{ ",1", -EINVAL, 0, { 0 } },
		{ "1,,2", -EINVAL, 0, { 0 } },
		{ "1::3", -EINVAL, 0, { 0 } },
		{ "1:", -EINVAL, 0, { 0 } },
		{ ":3", -EINVAL, 0, { 0 } },
		{ "1:2:3", -EINVAL, 0, { 0 } },
		{ "0", -EINVAL, 0, { 0 } },
		{ "0:3", -EINVAL, 0, { 0 } },
		{ "01", -EINVAL, 0, { 0 } },
		{ "*", -EINVAL, 0, { 0 } },
		{ "1:*", -EINVAL, 0, { 0 } },
		{ "4294967296", -EINVAL, 0, { 0 } },
		{ "99999999999999999999", -EINVAL, 0, { 0 } },
		{ "1 2", -EINVAL, 0, { 0 } },
		{ " 1", -EINVAL, 0, { 0 } },
		{ "a", -EINVAL, 0, { 0 } },
		{ "-1", -EINVAL, 0, { 0 } },
		{ "+1", -EINVAL, 0, { 0 } },
		{ "1:3,5,x", -EINVAL, 0, { 0 } },  /* nothing added before the error */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct uidset s = UIDSET_INIT;
		uint32_t *v;
		size_t n;

		if (uidset_parse(&s, t[i].set) != t[i].ret)
			fail_msg("uidset \"%s\"", t[i].set);
		if (t[i].ret) {
			assert_int_equal(s.n, 0);
			assert_true(s.added == 0);
			continue;
		}
		assert_true(uidset_normalize(&s) == t[i].n);
		assert_int_equal(uidset_expand(&s, 1, &v, &n), 0);
		assert_int_equal(n, t[i].n);
		assert_memory_equal(v, t[i].want, n * sizeof(uint32_t));
		free(v);
		uidset_release(&s);
	}
	assert_int_equal(uidset_parse(&(struct uidset)UIDSET_INIT, NULL), -EINVAL);
}

/* "1:4294967295" is one range: counting, counting from a UID, and
 * intersecting with what the index knows cost nothing per UID. */
static void test_huge_set_stays_a_range(void **state)
{
	struct uidset s = UIDSET_INIT;
	static const uint32_t known[] = { 3, 9, 10, 4000000000u };
	uint32_t out[4];

	(void)state;
	assert_int_equal(uidset_parse(&s, "1:4294967295"), 0);
	assert_int_equal(s.n, 1);
	assert_true(s.added == 4294967295ull);
	assert_true(uidset_normalize(&s) == 4294967295ull);
	assert_true(uidset_count_from(&s, 101) == 4294967295ull - 100);
	assert_int_equal(uidset_intersect(&s, known, 4, out), 4);
	assert_memory_equal(out, known, sizeof(known));
	uidset_release(&s);

	assert_int_equal(uidset_parse(&s, "5:8,20:4294967295,12"), 0);
	assert_true(uidset_normalize(&s) == 4 + 1 + (4294967295ull - 20 + 1));
	assert_int_equal(uidset_intersect(&s, known, 4, out), 1);
	assert_int_equal(out[0], 4000000000u);
	assert_true(uidset_count_from(&s, 4294967295u) == 1);
	uidset_release(&s);
}

/* Ascending additions, as a SEARCH answer brings them, merge into one
 * range per gap; the claim (added) counts duplicates. */
static void test_add_merges(void **state)
{
	struct uidset s = UIDSET_INIT;
	uint32_t *v;
	size_t n;

	(void)state;
	for (uint32_t u = 1; u <= 100000; u++)
		assert_int_equal(uidset_add(&s, u, u), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(uidset_add(&s, 100002, 100002), 0);
	assert_int_equal(uidset_add(&s, 7, 7), 0);
	assert_int_equal(s.n, 3);
	assert_true(s.added == 100002);
	assert_true(uidset_normalize(&s) == 100001);
	assert_int_equal(s.n, 2);
	assert_int_equal(uidset_add(&s, 4294967295u, 4294967295u), 0);
	assert_int_equal(uidset_add(&s, 4294967295u, 4294967295u), 0);  /* no wrap-around merge */
	assert_true(uidset_normalize(&s) == 100002);
	assert_int_equal(uidset_expand(&s, 100000, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0], 100000);
	assert_int_equal(v[1], 100002);
	assert_int_equal(v[2], 4294967295u);
	free(v);
	assert_int_equal(uidset_expand(&s, 4294967295u, &v, &n), 0);
	assert_int_equal(n, 1);
	free(v);
	uidset_release(&s);
	assert_int_equal(uidset_expand(&s, 1, &v, &n), 0);
	assert_null(v);
	assert_int_equal(n, 0);
}

static void test_intersect(void **state)
{
	struct uidset s = UIDSET_INIT;
	static const uint32_t known[] = { 1, 2, 4, 6, 7, 8, 15, 16, 30 };
	static const uint32_t want[] = { 2, 6, 7, 15, 16 };
	uint32_t out[9];

	(void)state;
	assert_int_equal(uidset_parse(&s, "15:17,2,5:7,9:12"), 0);
	uidset_normalize(&s);
	assert_int_equal(uidset_intersect(&s, known, 9, out), 5);
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(uidset_intersect(&s, known, 0, out), 0);
	uidset_release(&s);
	assert_int_equal(uidset_intersect(&s, known, 9, out), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_huge_set_stays_a_range),
		cmocka_unit_test(test_add_merges),
		cmocka_unit_test(test_intersect),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
