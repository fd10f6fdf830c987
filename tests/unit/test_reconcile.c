/* Unit tests for fetch/reconcile.c: what a sync fetches, trashes or holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../fetch/reconcile.h"

/* The set differences the engine works with: ids are strings (IMAP UIDs
 * in decimal, POP3 UIDLs), in any order; the results come sorted. */
static void test_id_differences(void **state)
{
	(void)state;
	static const struct {
		const char *known[8]; size_t nk;
		const char *remote[8]; size_t nr;
		const char *want_new[8]; size_t n_new;
		const char *want_gone[8]; size_t n_gone;
	} cases[] = {
		{ {0}, 0, {0}, 0, {0}, 0, {0}, 0 },
		{ {0}, 0, {"1", "2", "3"}, 3, {"1", "2", "3"}, 3, {0}, 0 },
		{ {"1", "2", "3"}, 3, {"1", "2", "3"}, 3, {0}, 0, {0}, 0 },
		{ {"1", "2", "3"}, 3, {"2", "3", "4"}, 3, {"4"}, 1, {"1"}, 1 },
		{ {"1", "5", "9"}, 3, {"2", "5", "10"}, 3, {"10", "2"}, 2, {"1", "9"}, 2 },
		{ {"1", "2", "3"}, 3, {0}, 0, {0}, 0, {"1", "2", "3"}, 3 },
		{ {"9", "1"}, 2, {"1", "9", "7"}, 3, {"7"}, 1, {0}, 0 },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		char **nw, **gn;
		size_t nn, ng;

		assert_int_equal(reconcile_ids((char *const *)cases[c].known, cases[c].nk,
					       (char *const *)cases[c].remote, cases[c].nr,
					       &nw, &nn, &gn, &ng), 0);
		assert_int_equal(nn, cases[c].n_new);
		assert_int_equal(ng, cases[c].n_gone);
		for (size_t i = 0; i < nn; i++)
			assert_string_equal(nw[i], cases[c].want_new[i]);
		for (size_t i = 0; i < ng; i++)
			assert_string_equal(gn[i], cases[c].want_gone[i]);
		free(nw);
		free(gn);
	}
}

static void test_string_differences(void **state)
{
	(void)state;
	char *known[] = { "c", "a", "b" };
	char *remote[] = { "d", "b", "c" };
	char **nw, **gn;
	size_t nn, ng;

	assert_int_equal(reconcile_ids(known, 3, remote, 3, &nw, &nn, &gn, &ng), 0);
	assert_int_equal(nn, 1);
	assert_string_equal(nw[0], "d");
	assert_int_equal(ng, 1);
	assert_string_equal(gn[0], "a");
	free(nw);
	free(gn);
}

static void test_guard(void **state)
{
	(void)state;
	static const struct {
		size_t known, gone, remote;
		int complete, allow;
		double limit;
		int want;
		const char *why_has;   /* NULL: allowed, why must be empty */
	} cases[] = {
		{ 10, 0, 10, 1, 0, 0.5, 1, NULL },
		{ 10, 2, 8, 1, 0, 0.5, 1, NULL },
		{ 10, 5, 5, 1, 0, 0.5, 1, NULL },            /* exactly the limit is allowed */
		{ 10, 6, 4, 1, 0, 0.5, 0, "6 of 10 messages (60%) vanished upstream, more than "
					  "mass_delete_limit (50%); nothing trashed" },
		{ 10, 6, 4, 1, 1, 0.5, 1, NULL },            /* confirmed */
		/* empty listing always held */
		{ 10, 10, 0, 1, 0, 1.0, 0, "the server lists no messages in a folder that had 10" },
		{ 10, 10, 0, 1, 1, 0.5, 1, NULL },
		/* never after an incomplete listing */
		{ 10, 1, 9, 0, 1, 0.5, 0, "listing was incomplete; 1 vanished message(s) kept" },
		{ 1, 1, 0, 1, 0, 0.5, 0, "the server lists no messages in a folder that had 1" },
		{ 0, 0, 0, 1, 0, 0.5, 1, NULL },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct reconcile_policy p = { cases[c].complete, cases[c].limit, cases[c].allow };
		char why[512];
		bool ok;

		memset(why, 'x', sizeof why);   /* what is not written shows */
		ok = reconcile_may_delete(cases[c].known, cases[c].gone, cases[c].remote, &p, why,
					  sizeof(why));
		assert_int_equal(ok, cases[c].want);
		if (cases[c].why_has)
			assert_non_null(strstr(why, cases[c].why_has));
		else
			assert_string_equal(why, "");
	}
}

static void test_rematch_convincing(void **state)
{
	(void)state;
	struct rematch_local local[] = {
		{ 100, "a@x", 10, 1000 },
		{ 101, "b@x", 20, 1000 },
		{ 102, NULL, 30, 5000 },        /* no Message-ID: date and size */
		{ 103, "gone@x", 40, 1000 },
		{ 104, "dup@x", 50, 1000 },     /* ambiguous: twice remote */
	};
	struct rematch_remote remote[] = {
		{ 7, "b@x", 20, 1 },
		{ 8, "a@x", 10, 1 },
		{ 9, NULL, 30, 5000 },
		{ 10, "dup@x", 50, 1 },
		{ 11, "dup@x", 50, 1 },
		{ 12, "new@x", 60, 1 },
		{ 13, "a@x", 11, 1 },           /* same id, other size: not a@x */
	};
	struct rematch_result r;

	assert_int_equal(reconcile_rematch(local, 5, remote, 7, &r), 0);
	assert_int_equal(r.n_pairs, 3);
	for (size_t i = 0; i < r.n_pairs; i++) {
		if (r.pairs[i].row_id == 100)
			assert_int_equal(r.pairs[i].uid, 8);
		else if (r.pairs[i].row_id == 101)
			assert_int_equal(r.pairs[i].uid, 7);
		else if (r.pairs[i].row_id == 102)
			assert_int_equal(r.pairs[i].uid, 9);
		else
			fail_msg("unexpected pair for row %lld", (long long)r.pairs[i].row_id);
	}
	assert_int_equal(r.n_lost, 2);     /* 103 and 104 */
	assert_int_equal(r.n_fresh, 4);    /* 10, 11, 12, 13 ascending */
	assert_int_equal(r.fresh_uids[0], 10);
	assert_int_equal(r.fresh_uids[3], 13);
	assert_false(r.convincing);        /* 3 of 5 = 60% < 80%, < 20 pairs */
	reconcile_rematch_release(&r);

	/* 4 of 5 paired: convincing */
	struct rematch_remote remote2[] = {
		{ 1, "a@x", 10, 0 }, { 2, "b@x", 20, 0 }, { 3, NULL, 30, 5000 },
		{ 4, "gone@x", 40, 0 },
	};
	assert_int_equal(reconcile_rematch(local, 5, remote2, 4, &r), 0);
	assert_int_equal(r.n_pairs, 4);
	assert_int_equal(r.n_lost, 1);
	assert_int_equal(r.lost_rows[0], 104);
	assert_true(r.convincing);
	reconcile_rematch_release(&r);
}

static void test_rematch_no_evidence(void **state)
{
	(void)state;
	/* Neither Message-ID nor date: never paired, never convincing. */
	struct rematch_local local[] = { { 1, NULL, 10, 0 } };
	struct rematch_remote remote[] = { { 5, NULL, 10, 0 } };
	struct rematch_result r;

	assert_int_equal(reconcile_rematch(local, 1, remote, 1, &r), 0);
	assert_int_equal(r.n_pairs, 0);
	assert_false(r.convincing);
	reconcile_rematch_release(&r);

	/* Nothing local: trivially convincing, everything fresh. */
	assert_int_equal(reconcile_rematch(NULL, 0, remote, 1, &r), 0);
	assert_true(r.convincing);
	assert_int_equal(r.n_fresh, 1);
	reconcile_rematch_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_differences),
		cmocka_unit_test(test_string_differences),
		cmocka_unit_test(test_guard),
		cmocka_unit_test(test_rematch_convincing),
		cmocka_unit_test(test_rematch_no_evidence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
