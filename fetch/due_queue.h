/* due_queue (functions dueq_*): the accounts waiting for a sync worker, and
 * which one goes next. Two kinds wait:
 *   - due: its interval, a back-off or `maildisk sync` says when; earliest
 *     first, ties in the order of the items in memory (the config's);
 *   - pushed: its IDLE connection saw new mail (dueq_wake); first come,
 *     first served, ahead of the due ones, so that new mail is not queued
 *     behind thousands of first syncs.
 * Pushed items take at most DUEQ_PUSH_BURST picks in a row while a due
 * item waits (see dueq_pick).
 *
 * The items are borrowed (embedded in the caller's records). Threads: none
 * here; the scheduler holds its lock. */
#ifndef MAILDISK_DUE_QUEUE_H
#define MAILDISK_DUE_QUEUE_H

#include <stdint.h>
#include <time.h>

#include "minheap.h"

/* Pushed picks in a row while a due item waits: the due ones keep at least
 * one pick in DUEQ_PUSH_BURST + 1. */
#define DUEQ_PUSH_BURST 4

enum dueq_where { DUEQ_OUT, DUEQ_DUE, DUEQ_PUSHED };

struct dueq_item {
	enum dueq_where where;      /* zero: out (picked, running, or never added) */
	time_t due;                 /* DUEQ_DUE: when */
	uint64_t order;             /* DUEQ_PUSHED: the wake's number */
	size_t pos;                 /* the heap's */
};

struct dueq {
	struct minheap due;         /* of DUEQ_DUE items */
	struct minheap pushed;      /* of DUEQ_PUSHED items */
	uint64_t n_wakes;
	unsigned streak;            /* pushed picks in a row while a due item waited */
};

/* Room for cap items. 0 or -ENOMEM. */
int dueq_init(struct dueq *q, size_t cap);
void dueq_release(struct dueq *q);
/* An item that is out waits until due (0: now). */
void dueq_add(struct dueq *q, struct dueq_item *it, time_t due);
/* Push: the item (out or due) goes with the pushed ones; one already
 * pushed keeps its place. */
void dueq_wake(struct dueq *q, struct dueq_item *it);
/* Every due item is due now (`maildisk sync`); pushed ones keep their place. */
void dueq_all_now(struct dueq *q);
/* The next item to sync at time now, taken out; or NULL, with *next_r the
 * time the first due item is due (0: none waits). */
struct dueq_item *dueq_pick(struct dueq *q, time_t now, time_t *next_r);

#endif
