/* store_analyse: the parts of a batch's finished messages (cache/parts.h),
 * analysed on a thread of the batch's own while the sync thread goes on
 * receiving the next messages and syncing the batch's files; the batch's
 * commit waits for them before it writes any row (store_int.h).
 *
 * Why a thread: analysing a message (GMime's parse) costs about as much
 * CPU as receiving it over TLS and storing it (some 100 us each for a
 * 15 KB message), and the sync thread is the one busy core of a first
 * sync; done inline, the analysis would add its whole cost to the sync's
 * time, where beside it, it uses a core that is otherwise mostly idle.
 *
 * Bounded: at most ANALYSE_QUEUE files wait (each an open descriptor);
 * store_analyse_add blocks while the queue is full. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "parts.h"
#include "store_int.h"

#define ANALYSE_QUEUE 64

struct job {
	int fd;                    /* owned: closed once analysed */
	int64_t size;
	struct parts_list *out;    /* borrowed from the store_msg */
	int *rc;                   /* borrowed: -EINPROGRESS until done */
};

struct store_analyser {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* any change of head, n or stop */
	struct job q[ANALYSE_QUEUE];
	size_t head, n;            /* ring: n waiting from head on */
	bool busy;                 /* the thread works on one taken out of q */
	bool stop;
};

static void *analyser_main(void *arg)
{
	struct store_analyser *a = arg;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		while (a->n == 0 && !a->stop)
			pthread_cond_wait(&a->cond, &a->lock);
		if (a->n == 0)
			break;
		struct job j = a->q[a->head];

		a->head = (a->head + 1) % ANALYSE_QUEUE;
		a->n--;
		a->busy = true;
		pthread_cond_broadcast(&a->cond);
		pthread_mutex_unlock(&a->lock);
		int rc = parts_analyse(j.fd, j.size, j.out);

		close(j.fd);
		pthread_mutex_lock(&a->lock);
		*j.rc = rc;
		a->busy = false;
		pthread_cond_broadcast(&a->cond);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int store_analyse_start(struct store_analyser **r)
{
	struct store_analyser *a = calloc(1, sizeof *a);
	int rc;

	*r = NULL;
	if (!a)
		return -ENOMEM;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	rc = pthread_create(&a->thread, NULL, analyser_main, a);
	if (rc) {
		log_warn("cannot start a thread to analyse message parts (%s): analysing inline",
			 strerror(rc));
		pthread_cond_destroy(&a->cond);
		pthread_mutex_destroy(&a->lock);
		free(a);
		return -rc;
	}
	*r = a;
	return 0;
}

int store_analyse_add(struct store_analyser *a, int fd, int64_t size, struct parts_list *out,
		      int *rc_out)
{
	int dfd = dup(fd);

	if (dfd < 0)
		return -errno;
	*rc_out = -EINPROGRESS;
	pthread_mutex_lock(&a->lock);
	while (a->n == ANALYSE_QUEUE)
		pthread_cond_wait(&a->cond, &a->lock);
	a->q[(a->head + a->n) % ANALYSE_QUEUE] = (struct job){ dfd, size, out, rc_out };
	a->n++;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

void store_analyse_wait(struct store_analyser *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	while (a->n > 0 || a->busy)
		pthread_cond_wait(&a->cond, &a->lock);
	pthread_mutex_unlock(&a->lock);
}

void store_analyse_stop(struct store_analyser **ap)
{
	struct store_analyser *a = ap ? *ap : NULL;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;    /* the thread still finishes what is queued */
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
	*ap = NULL;
}
