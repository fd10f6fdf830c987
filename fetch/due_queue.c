/* due_queue: due and pushed accounts, each in a heap (minheap.h). */
#include "due_queue.h"

#include <errno.h>
#include <stddef.h>

static bool due_before(const void *a, const void *b)
{
	const struct dueq_item *x = a, *y = b;

	return x->due < y->due || (x->due == y->due && x < y);
}

static bool woken_before(const void *a, const void *b)
{
	return ((const struct dueq_item *)a)->order < ((const struct dueq_item *)b)->order;
}

int dueq_init(struct dueq *q, size_t cap)
{
	*q = (struct dueq){ 0 };
	if (minheap_init(&q->due, cap, offsetof(struct dueq_item, pos), due_before) < 0 ||
	    minheap_init(&q->pushed, cap, offsetof(struct dueq_item, pos), woken_before) < 0) {
		dueq_release(q);
		return -ENOMEM;
	}
	return 0;
}

void dueq_release(struct dueq *q)
{
	minheap_release(&q->due);
	minheap_release(&q->pushed);
}

void dueq_add(struct dueq *q, struct dueq_item *it, time_t due)
{
	it->due = due;
	it->where = DUEQ_DUE;
	minheap_push(&q->due, it);
}

void dueq_wake(struct dueq *q, struct dueq_item *it)
{
	if (it->where == DUEQ_PUSHED)
		return;
	if (it->where == DUEQ_DUE)
		minheap_remove(&q->due, it);
	it->order = ++q->n_wakes;
	it->where = DUEQ_PUSHED;
	minheap_push(&q->pushed, it);
}

void dueq_all_now(struct dueq *q)
{
	for (size_t i = 0; i < q->due.n; i++)
		((struct dueq_item *)q->due.v[i])->due = 0;
	/* all due at 0: memory order is the heap's order */
	minheap_heapify(&q->due);
}

/* Why the due ones cannot starve: a pushed item is picked ahead of a due
 * one at most DUEQ_PUSH_BURST times in a row, then the earliest due one
 * goes; so a due item waits at most (its rank among the due) x
 * (DUEQ_PUSH_BURST + 1) picks, however much mail arrives. Nor can a pushed
 * one: the pushed are served in the order of their wakes, and an item
 * woken again while it waits keeps its place rather than going last. */
struct dueq_item *dueq_pick(struct dueq *q, time_t now, time_t *next_r)
{
	struct dueq_item *d = minheap_top(&q->due), *it;
	bool due_waits = d && d->due <= now;

	*next_r = d ? d->due : 0;
	if (q->pushed.n && (!due_waits || q->streak < DUEQ_PUSH_BURST)) {
		q->streak = due_waits ? q->streak + 1 : 0;
		it = minheap_pop(&q->pushed);
	} else if (due_waits) {
		q->streak = 0;
		it = minheap_pop(&q->due);
	} else {
		return NULL;
	}
	it->where = DUEQ_OUT;
	return it;
}
