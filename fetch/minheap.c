/* minheap: a binary min-heap with positions kept in the elements. */
#include "minheap.h"

#include <errno.h>
#include <stdlib.h>

static size_t *pos_of(const struct minheap *h, void *e)
{
	return (size_t *)((char *)e + h->pos_off);
}

static void set(struct minheap *h, size_t i, void *e)
{
	h->v[i] = e;
	*pos_of(h, e) = i;
}

static void sift_up(struct minheap *h, size_t i)
{
	void *e = h->v[i];

	for (; i > 0 && h->before(e, h->v[(i - 1) / 2]); i = (i - 1) / 2)
		set(h, i, h->v[(i - 1) / 2]);
	set(h, i, e);
}

static void sift_down(struct minheap *h, size_t i)
{
	void *e = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->before(h->v[c + 1], h->v[c]))
			c++;
		if (!h->before(h->v[c], e))
			break;
		set(h, i, h->v[c]);
		i = c;
	}
	set(h, i, e);
}

int minheap_init(struct minheap *h, size_t cap, size_t pos_off,
		 bool (*before)(const void *a, const void *b))
{
	*h = (struct minheap){ .cap = cap, .pos_off = pos_off, .before = before };
	h->v = calloc(cap ? cap : 1, sizeof(*h->v));
	return h->v ? 0 : -ENOMEM;
}

void minheap_release(struct minheap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

void minheap_push(struct minheap *h, void *e)
{
	set(h, h->n++, e);
	sift_up(h, h->n - 1);
}

void *minheap_pop(struct minheap *h)
{
	void *top = minheap_top(h);

	if (top)
		minheap_remove(h, top);
	return top;
}

void minheap_fix(struct minheap *h, void *e)
{
	size_t i = *pos_of(h, e);

	sift_up(h, i);
	if (h->v[i] == e)
		sift_down(h, i);
}

void minheap_remove(struct minheap *h, void *e)
{
	size_t i = *pos_of(h, e);
	void *last = h->v[--h->n];

	if (last == e)
		return;
	set(h, i, last);
	minheap_fix(h, last);
}

void minheap_heapify(struct minheap *h)
{
	for (size_t i = h->n / 2; i-- > 0;)
		sift_down(h, i);
}
