/* scheduler: when each account is synced, and by which worker.
 *
 * Locking: s->lock protects slots[], stop_requested and wake; it is never
 * held across a sync, a network call or a notify (the workers drop it
 * before sync_account). The self-pipe lets a signal handler ask for a sync
 * without touching the lock. */
#include "scheduler.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../cache/log.h"
#include "due_queue.h"
#include "idle.h"

/* Back-off after failures: interval doubled per failure, at most this. */
#define BACKOFF_MAX 3600
/* After a failure only the user can fix (login, certificate): wait long. */
#define AFTER_FIX_DELAY 3600

struct slot {
	const struct account_settings *a;   /* borrowed from cfg */
	struct sched *s;                    /* borrowed: the owner, for idle wake-ups */
	struct dueq_item q;                 /* in s->queue while not running */
	bool running;
	bool again;                         /* asked for while running: due at once after */
	bool again_pushed;                  /* woken by IDLE while running: pushed after */
	unsigned failures;
};

struct sched {
	struct store *st;                   /* borrowed */
	const struct settings *cfg;         /* borrowed */
	const struct sync_observer *obs;    /* borrowed */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct slot *slots;                 /* owned; protected by lock */
	size_t n_slots;
	/* The slots not running: those IDLE woke first, then the earliest due
	 * (ties: config order), so that a worker finds the next sync without a
	 * scan of 10,000 slots. Owned; protected by lock. */
	struct dueq queue;
	pthread_t *workers;                 /* owned */
	size_t n_workers;
	pthread_t waker;
	bool waker_started;
	struct idle *idle;                  /* owned, NULL without IDLE */
	int pipe[2];                        /* [1] written by sched_sync_now */
	int cancel[2];                      /* [1] written once at stop: readable from then on */
	atomic_bool stop;                   /* written under lock; read by the workers' syncs at
					     * message boundaries without it */
};

static time_t next_delay(const struct slot *sl, const struct sync_result *r)
{
	time_t base = sl->a->interval > 0 ? sl->a->interval : 300;

	if (r->status == FETCH_OK)
		return base;
	if (r->retry == RETRY_AFTER_FIX)
		return base > AFTER_FIX_DELAY ? base : AFTER_FIX_DELAY;
	time_t d = base;
	for (unsigned i = 1; i < sl->failures && d < BACKOFF_MAX; i++)
		d *= 2;
	return d < BACKOFF_MAX ? d : (base > BACKOFF_MAX ? base : BACKOFF_MAX);
}

static struct slot *slot_of(struct dueq_item *it)
{
	return (struct slot *)((char *)it - offsetof(struct slot, q));
}

/* An idle watcher saw new mail: that account goes before the due ones. */
static void idle_wake(void *ctx)
{
	struct slot *sl = ctx;

	pthread_mutex_lock(&sl->s->lock);
	if (sl->running)
		sl->again_pushed = true;
	else
		dueq_wake(&sl->s->queue, &sl->q);
	pthread_cond_broadcast(&sl->s->cond);
	pthread_mutex_unlock(&sl->s->lock);
}

static void *worker_main(void *arg)
{
	struct sched *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!atomic_load(&s->stop)) {
		time_t now = time(NULL), next;
		struct dueq_item *it = dueq_pick(&s->queue, now, &next);

		if (!it) {
			struct timespec ts = { .tv_sec = next ? next : now + 3600 };
			pthread_cond_timedwait(&s->cond, &s->lock, &ts);
			continue;
		}
		struct slot *pick = slot_of(it);

		pick->running = true;
		pthread_mutex_unlock(&s->lock);

		struct sync_result r;
		struct sync_opts o = { .obs = s->obs, .stop = &s->stop, .cancel_fd = s->cancel[0] };
		sync_account(s->st, s->cfg, pick->a, &o, &r);
		if (r.status == FETCH_OK && (r.n_new || r.n_trashed))
			log_info("%s/%s: %lld new, %lld moved to trash", pick->a->user,
				 pick->a->name, (long long)r.n_new, (long long)r.n_trashed);

		pthread_mutex_lock(&s->lock);
		pick->running = false;
		pick->failures = r.status == FETCH_OK ? 0 : pick->failures + 1;
		/* A request that came during the sync may have missed its changes. */
		if (pick->again_pushed)
			dueq_wake(&s->queue, &pick->q);
		else
			dueq_add(&s->queue, &pick->q, pick->again ? 0 : time(NULL) + next_delay(pick, &r));
		pick->again = pick->again_pushed = false;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Turns bytes on the self-pipe into "everything is due now". */
static void *waker_main(void *arg)
{
	struct sched *s = arg;
	char b[64];

	for (;;) {
		struct pollfd p = { .fd = s->pipe[0], .events = POLLIN };

		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			break;
		ssize_t n = read(s->pipe[0], b, sizeof(b));
		if (n <= 0 && errno != EAGAIN && errno != EINTR)
			break;
		if (atomic_load(&s->stop))
			break;
		pthread_mutex_lock(&s->lock);
		for (size_t i = 0; i < s->n_slots; i++)
			s->slots[i].again |= s->slots[i].running;
		dueq_all_now(&s->queue);
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

int sched_start(struct store *st, const struct settings *cfg,
		const struct sync_observer *obs, struct sched **r)
{
	struct sched *s = calloc(1, sizeof(*s));
	int rc;

	*r = NULL;
	if (!s)
		return -ENOMEM;
	s->st = st;
	s->cfg = cfg;
	s->obs = obs;
	s->pipe[0] = s->pipe[1] = -1;
	s->cancel[0] = s->cancel[1] = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->n_slots = cfg->n_accounts;
	s->slots = calloc(s->n_slots ? s->n_slots : 1, sizeof(*s->slots));
	s->n_workers = cfg->workers > 0 ? (size_t)cfg->workers : 4;
	if (s->n_workers > s->n_slots)
		s->n_workers = s->n_slots ? s->n_slots : 1;
	s->workers = calloc(s->n_workers, sizeof(*s->workers));
	if (!s->slots || !s->workers || dueq_init(&s->queue, s->n_slots) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	if (pipe2(s->pipe, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(s->cancel, O_CLOEXEC) < 0) {
		rc = -errno;
		goto fail;
	}
	for (size_t i = 0; i < s->n_slots; i++) {
		s->slots[i].a = &cfg->accounts[i];
		s->slots[i].s = s;
		dueq_add(&s->queue, &s->slots[i].q, 0);    /* all due now, in order */
	}
	if ((rc = -pthread_create(&s->waker, NULL, waker_main, s)) < 0)
		goto fail;
	s->waker_started = true;
	for (size_t i = 0; i < s->n_workers; i++) {
		if ((rc = -pthread_create(&s->workers[i], NULL, worker_main, s)) < 0) {
			s->n_workers = i;
			*r = s;
			sched_stop(r);
			return rc;
		}
	}
	/* Push: an IDLE connection per IMAP account, all watched by one
	 * event loop; without it, the interval. */
	struct idle_account *ia = calloc(s->n_slots ? s->n_slots : 1, sizeof(*ia));
	size_t n_idle = 0;

	for (size_t i = 0; ia && i < s->n_slots; i++)
		if (idle_wanted(s->slots[i].a))
			ia[n_idle++] = (struct idle_account){ .a = s->slots[i].a, .ctx = &s->slots[i] };
	if (n_idle && (!ia || (rc = idle_start(ia, n_idle, s->cancel[0], idle_wake, &s->idle)) < 0))
		log_warn("cannot start the IDLE watchers (%s); syncing at each account's interval",
			 strerror(ia ? -rc : ENOMEM));
	free(ia);
	*r = s;
	return 0;
fail:
	*r = s;
	s->n_workers = 0;
	sched_stop(r);
	return rc ? rc : -ENOMEM;
}

void sched_sync_now(struct sched *s)
{
	int saved = errno;

	if (s && s->pipe[1] >= 0 && write(s->pipe[1], "s", 1) < 0) {
		/* pipe full: a wake-up is already pending */
	}
	errno = saved;
}

void sched_stop(struct sched **sp)
{
	struct sched *s = *sp;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	atomic_store(&s->stop, true);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->cancel[1] >= 0 && write(s->cancel[1], "q", 1) < 0)
		log_error("cannot signal the IDLE watchers to stop: %m");
	idle_stop(&s->idle);
	if (s->waker_started) {
		sched_sync_now(s);
		pthread_join(s->waker, NULL);
	}
	for (size_t i = 0; i < s->n_workers; i++)
		pthread_join(s->workers[i], NULL);
	if (s->pipe[0] >= 0)
		close(s->pipe[0]);
	if (s->pipe[1] >= 0)
		close(s->pipe[1]);
	for (int i = 0; i < 2; i++)
		if (s->cancel[i] >= 0)
			close(s->cancel[i]);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->workers);
	dueq_release(&s->queue);
	free(s->slots);
	free(s);
	*sp = NULL;
}

/* ---- one pass, for `maildisk sync` ---- */

struct once {
	struct store *st;
	const struct settings *cfg;
	const struct sync_opts *o;
	struct sync_result *results;
	const bool *selected;
	pthread_mutex_t lock;     /* protects next */
	size_t next;
};

static void *once_main(void *arg)
{
	struct once *w = arg;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&w->lock);
		while (w->next < w->cfg->n_accounts && !w->selected[w->next])
			w->next++;
		i = w->next++;
		pthread_mutex_unlock(&w->lock);
		if (i >= w->cfg->n_accounts)
			return NULL;
		sync_account(w->st, w->cfg, &w->cfg->accounts[i], w->o, &w->results[i]);
	}
}

size_t sched_run_once(struct store *st, const struct settings *cfg, const char *user,
		      const char *account, const struct sync_opts *o,
		      struct sync_result *results, bool *ran_r)
{
	struct once w = { .st = st, .cfg = cfg, .o = o, .results = results, .selected = ran_r };
	size_t n = 0, nw;

	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const struct account_settings *a = &cfg->accounts[i];

		memset(&results[i], 0, sizeof(results[i]));
		ran_r[i] = (!user || strcmp(a->user, user) == 0) &&
			   (!account || strcmp(a->name, account) == 0);
		n += ran_r[i];
	}
	nw = cfg->workers > 0 ? (size_t)cfg->workers : 4;
	if (nw > n)
		nw = n;
	pthread_mutex_init(&w.lock, NULL);
	if (nw <= 1) {
		once_main(&w);
	} else {
		pthread_t *t = calloc(nw, sizeof(*t));
		size_t started = 0;

		for (; t && started < nw; started++)
			if (pthread_create(&t[started], NULL, once_main, &w) != 0)
				break;
		if (started == 0)
			once_main(&w);
		for (size_t i = 0; i < started; i++)
			pthread_join(t[i], NULL);
		free(t);
	}
	pthread_mutex_destroy(&w.lock);
	return n;
}
