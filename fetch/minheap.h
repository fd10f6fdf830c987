/* minheap: a binary min-heap of borrowed elements that know their own
 * place in it, so that an element whose key changed is moved, or taken
 * out, in O(log n) without a search. The scheduler's queue of accounts
 * (due_queue.h) and the IDLE loop's timers (idle.c) use it.
 *
 * Each element keeps a size_t at pos_off, written by the heap while the
 * element is in it. The capacity is fixed at init: both users know their
 * element count.
 *
 * Threads: none here; the owner locks. */
#ifndef MAILDISK_MINHEAP_H
#define MAILDISK_MINHEAP_H

#include <stdbool.h>
#include <stddef.h>

struct minheap {
	void **v;                                   /* owned array of borrowed elements */
	size_t n, cap;
	size_t pos_off;                             /* offsetof the element's position */
	bool (*before)(const void *a, const void *b);   /* a strict order: ties broken */
};

/* Room for cap elements. 0 or -ENOMEM. */
int minheap_init(struct minheap *h, size_t cap, size_t pos_off,
		 bool (*before)(const void *a, const void *b));
void minheap_release(struct minheap *h);

static inline void *minheap_top(const struct minheap *h)
{
	return h->n ? h->v[0] : NULL;
}

/* e must not be in the heap, and n < cap. */
void minheap_push(struct minheap *h, void *e);
/* The first element, taken out; NULL when empty. */
void *minheap_pop(struct minheap *h);
/* e (in the heap) changed its key, either way. */
void minheap_fix(struct minheap *h, void *e);
/* Takes e (in the heap) out. */
void minheap_remove(struct minheap *h, void *e);
/* After the keys of many elements changed: O(n). */
void minheap_heapify(struct minheap *h);

#endif
