/* Unit tests for fetch/due_queue.c and fetch/minheap.c: which account a
 * sync worker takes next. An account woken by IDLE goes before accounts
 * merely due (even thousands waiting for a first sync), yet the due ones
 * keep a share of the picks however many wakes come. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../fetch/due_queue.h"

#define N 1000

static size_t idx(const struct dueq_item *it, const struct dueq_item *items)
{
	return (size_t)(it - items);
}

/* All due now, in order; a later due time waits; next_r says when. */
static void test_due_order(void **state)
{
	static struct dueq_item it[8];
	static const time_t due[8] = { 0, 50, 0, 10, 200, 0, 10, 100 };
	static const size_t want[] = { 0, 2, 5, 3, 6, 1 };
	struct dueq q;
	time_t next;

	(void)state;
	assert_int_equal(dueq_init(&q, 8), 0);
	for (size_t i = 0; i < 8; i++)
		dueq_add(&q, &it[i], due[i]);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct dueq_item *p = dueq_pick(&q, 60, &next);

		assert_non_null(p);
		assert_int_equal(idx(p, it), want[i]);
		assert_int_equal(p->where, DUEQ_OUT);
	}
	assert_null(dueq_pick(&q, 60, &next));
	assert_int_equal(next, 100);
	dueq_all_now(&q);
	assert_int_equal(idx(dueq_pick(&q, 60, &next), it), 4);
	assert_int_equal(idx(dueq_pick(&q, 60, &next), it), 7);
	assert_null(dueq_pick(&q, 60, &next));
	assert_int_equal(next, 0);
	dueq_release(&q);
}

/* N accounts waiting for their first sync, then three wakes: the woken go
 * first, in the order of their wakes; a second wake keeps the place. */
static void test_pushed_first(void **state)
{
	static struct dueq_item it[N];
	struct dueq q;
	time_t next;

	(void)state;
	assert_int_equal(dueq_init(&q, N), 0);
	for (size_t i = 0; i < N; i++)
		dueq_add(&q, &it[i], 0);
	assert_int_equal(idx(dueq_pick(&q, 1, &next), it), 0);
	dueq_wake(&q, &it[N - 1]);
	dueq_wake(&q, &it[500]);
	dueq_wake(&q, &it[N - 1]);
	dueq_wake(&q, &it[7]);
	assert_int_equal(idx(dueq_pick(&q, 1, &next), it), N - 1);
	assert_int_equal(idx(dueq_pick(&q, 1, &next), it), 500);
	assert_int_equal(idx(dueq_pick(&q, 1, &next), it), 7);
	/* then the due ones, without those taken out of their heap */
	for (size_t i = 1; i < N - 1; i++) {
		if (i == 7 || i == 500)
			continue;
		assert_int_equal(idx(dueq_pick(&q, 1, &next), it), i);
	}
	assert_null(dueq_pick(&q, 1, &next));
	/* one picked (running) and woken goes back pushed; not due later */
	dueq_wake(&q, &it[3]);
	assert_int_equal(idx(dueq_pick(&q, 1, &next), it), 3);
	assert_null(dueq_pick(&q, 1, &next));
	dueq_release(&q);
}

/* A flood of wakes: every pick but the due ones' share goes to a woken
 * account, and each due account still comes within its rank x
 * (DUEQ_PUSH_BURST + 1) picks. Without due ones waiting, the pushed take
 * every pick. */
static void test_no_starvation(void **state)
{
	static struct dueq_item it[N];
	const size_t n_due = 10, pushers = N - n_due;
	struct dueq q;
	time_t next;
	size_t due_seen = 0, picks = 0, w = 0;

	(void)state;
	assert_int_equal(dueq_init(&q, N), 0);
	for (size_t i = 0; i < n_due; i++)
		dueq_add(&q, &it[i], 0);
	for (size_t i = n_due; i < N; i++)
		dueq_wake(&q, &it[i]);
	while (due_seen < n_due) {
		struct dueq_item *p = dueq_pick(&q, 5, &next);
		size_t k;

		assert_non_null(p);
		picks++;
		k = idx(p, it);
		if (k < n_due) {
			assert_int_equal(k, due_seen);
			due_seen++;
			assert_true(picks <= due_seen * (DUEQ_PUSH_BURST + 1));
			continue;
		}
		/* new mail again at once: the woken one is back in the queue */
		dueq_wake(&q, p);
		w++;
	}
	assert_int_equal(w, n_due * DUEQ_PUSH_BURST);
	for (size_t i = 0; i < 3 * pushers; i++) {
		struct dueq_item *p = dueq_pick(&q, 5, &next);

		assert_non_null(p);
		assert_true(idx(p, it) >= n_due);
		dueq_wake(&q, p);
	}
	/* a due item that comes later gets its pick within the burst */
	dueq_add(&q, &it[0], 5);
	for (size_t i = 0; i <= DUEQ_PUSH_BURST; i++) {
		struct dueq_item *p = dueq_pick(&q, 5, &next);

		if (p == &it[0])
			break;
		assert_true(i < DUEQ_PUSH_BURST);
		dueq_wake(&q, p);
	}
	assert_int_equal(it[0].where, DUEQ_OUT);
	dueq_release(&q);
}

/* minheap_remove and minheap_fix keep the order, from anywhere in the heap. */
struct elem {
	int key;
	size_t pos;
};

static bool elem_before(const void *a, const void *b)
{
	const struct elem *x = a, *y = b;

	return x->key < y->key || (x->key == y->key && x < y);
}

static void test_minheap_fix_remove(void **state)
{
	static struct elem e[N];
	struct minheap h;
	int last = -1;

	(void)state;
	srand(11);
	assert_int_equal(minheap_init(&h, N, offsetof(struct elem, pos), elem_before), 0);
	for (size_t i = 0; i < N; i++) {
		e[i].key = rand() % 5000;
		minheap_push(&h, &e[i]);
	}
	for (size_t i = 0; i < N; i += 3) {
		e[i].key = rand() % 5000;
		minheap_fix(&h, &e[i]);
	}
	for (size_t i = 1; i < N; i += 7)
		minheap_remove(&h, &e[i]);
	assert_int_equal(h.n, N - (N + 5) / 7);
	while (h.n) {
		struct elem *p = minheap_pop(&h);

		assert_true(p->key >= last);
		assert_true((size_t)(p - e) % 7 != 1);
		last = p->key;
	}
	assert_null(minheap_pop(&h));
	minheap_release(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_due_order),
		cmocka_unit_test(test_pushed_first),
		cmocka_unit_test(test_no_starvation),
		cmocka_unit_test(test_minheap_fix_remove),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
