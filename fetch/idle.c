/* idle: IMAP IDLE (RFC 2177) for many accounts from one event loop.
 *
 * Why not a thread per account: a thousand accounts made a thousand
 * threads, each with a 64 KiB IMAP reader that IDLE never needs. Here the
 * connections are made as the sync's are (CONNECT_ONLY sessions through
 * imap.c) by IDLE_CONNECTORS threads, which may block (DNS, TLS, login),
 * and then only watched: the loop reads with conn_read_nowait until
 * CONN_AGAIN (TLS may hold decrypted bytes the socket no longer shows), so
 * one server that stalls or sends half a line delays nobody. The bytes are
 * not parsed into responses, only scanned line by line (idle_scan.h). */
#include "idle.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../cache/log.h"
#include "conn.h"
#include "idle_scan.h"
#include "imap.h"
#include "minheap.h"
#include "secret.h"

#define BACKOFF_MIN 5
#define BACKOFF_MAX 600
/* Seconds for the answers to DONE and the next IDLE. */
#define ANSWER_TIMEOUT 60

enum watch_state {
	W_WAIT,        /* loop: connect again at due_ms */
	W_QUEUED,      /* in the connectors' queue */
	W_CONNECTING,  /* a connector has it */
	W_IDLE,        /* loop: in IDLE, its socket in the epoll set */
	W_OFF,         /* no IDLE on this server, or stopping */
};

/* Owned by whichever thread its state says (the hand-over goes through
 * the hub's lock): the loop, or one connector. */
struct watch {
	const struct account_settings *a;   /* borrowed */
	void *ctx;                          /* borrowed */
	enum watch_state state;
	struct imap *s;                     /* owned, NULL but in W_IDLE and hand-over */
	struct watch *next;                 /* in the hub's ready list */
	char *rest;                         /* owned: bytes that came behind the "+", for the loop */
	size_t rest_len;
	int64_t due_ms;                     /* W_WAIT: reconnect; W_IDLE: renew the IDLE */
	int64_t answer_by_ms;               /* W_IDLE: 0, or when a DONE's answers are late */
	int backoff;                        /* seconds */
	bool reported;                      /* a failure was logged; quiet until a success */
	bool changed;                       /* the connector saw a change on the way */
	enum fetch_status result;           /* the connector's */
	int64_t deadline;                   /* loop only: its key in the timers (INT64_MAX: none) */
	size_t timer_pos;                   /* loop only: in the timers */
	uint32_t n_tags;                    /* renewals so far: their tags */
	char tag[16];                       /* of the IDLE running */
	struct idle_scan sc;
};

struct idle {
	struct watch *w;                    /* owned, n of them */
	size_t n;
	int cancel_fd;                      /* borrowed */
	void (*wake)(void *ctx);
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct watch **queue;               /* owned ring of n; protected by lock */
	size_t q_head, q_len;               /* protected by lock */
	struct watch *ready;                /* protected by lock: connectors' results */
	bool stop;                          /* protected by lock */
	int notify[2];                      /* a byte when ready gets one */
	int ep;
	uint64_t rnd;                       /* loop only: jitter */
	/* loop only: every watch by deadline, so that a wake-up of the loop
	 * finds what is due without a scan of 10,000 watches */
	struct minheap timers;
	pthread_t loop;
	bool loop_started;
	pthread_t conn[IDLE_CONNECTORS];
	size_t n_conn;
};

bool idle_wanted(const struct account_settings *a)
{
	if (a->proto != PROTO_IMAP && a->proto != PROTO_IMAPS)
		return false;
	for (size_t i = 0; i < a->n_folders; i++)
		if (strcmp(a->folders[i], "*") == 0 || strcasecmp(a->folders[i], "INBOX") == 0)
			return true;
	return false;
}

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* seconds * 1000, give or take a quarter: a thousand accounts cut off
 * together do not come back together. */
static int64_t jittered_ms(struct idle *h, int seconds)
{
	h->rnd ^= h->rnd << 13;
	h->rnd ^= h->rnd >> 7;
	h->rnd ^= h->rnd << 17;
	return (int64_t)seconds * 750 + (int64_t)(h->rnd % ((uint64_t)seconds * 500 + 1));
}

static void label_of(const struct watch *w, char *b, size_t n)
{
	snprintf(b, n, "%s/%s", w->a->user, w->a->name);
}

static bool deadline_before(const void *a, const void *b)
{
	const struct watch *x = a, *y = b;

	return x->deadline < y->deadline || (x->deadline == y->deadline && x < y);
}

/* w's state or times changed: its place in the timers follows. Loop only
 * (the connectors never change a deadline: W_QUEUED and W_CONNECTING have
 * none). */
static void rekey(struct idle *h, struct watch *w)
{
	int64_t d = INT64_MAX;

	if (w->state == W_WAIT)
		d = w->due_ms;
	else if (w->state == W_IDLE)
		d = w->answer_by_ms ? w->answer_by_ms : w->due_ms;
	if (d != w->deadline) {
		w->deadline = d;
		minheap_fix(&h->timers, w);
	}
}

/* ---- connectors ---- */

/* Logs in, EXAMINEs INBOX and enters IDLE; sets w->s and w->result. */
static void connect_one(struct idle *h, struct watch *w)
{
	struct buf err = BUF_INIT(1024);
	enum fetch_status st = FETCH_ACCOUNT_BAD;
	enum fetch_retry retry;
	struct imap_folder_state fs;
	char *secret = NULL, label[160];
	struct imap *s = NULL;

	label_of(w, label, sizeof(label));
	w->changed = false;
	if (secret_get(w->a, &secret, &err) == 0) {
		buf_reset(&err);
		st = imap_open(w->a, secret, secret_is_token(w->a), h->cancel_fd, &s, &retry, &err);
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	if (st != FETCH_OK) {
		/* The sync reports the same failure; say it here once. */
		if (!w->reported && !conn_fd_fired(h->cancel_fd))
			log_warn("%s: IDLE: %s; retrying later", label,
				 err.data ? err.data : "cannot connect");
		w->reported = true;
		buf_release(&err);
		w->result = conn_fd_fired(h->cancel_fd) ? FETCH_STOPPED : st;
		return;
	}
	buf_release(&err);
	if (!imap_has_cap(s, "IDLE")) {
		log_info("%s: the server has no IDLE; syncing every %d s", label, w->a->interval);
		imap_close(&s);
		w->result = FETCH_STOPPED;
		return;
	}
	imap_set_cancel(s, h->cancel_fd);
	st = imap_examine(s, "INBOX", 0, 0, 0, NULL, &fs, NULL);
	if (st == FETCH_OK)
		st = imap_idle_enter(s, w->tag, &w->changed, &w->rest, &w->rest_len);
	if (st != FETCH_OK) {
		if (st != FETCH_STOPPED && !conn_fd_fired(h->cancel_fd) && !w->reported)
			log_warn("%s: IDLE: %s; retrying later", label, imap_error(s));
		w->reported = true;
		imap_close(&s);
		w->result = conn_fd_fired(h->cancel_fd) ? FETCH_STOPPED : st;
		return;
	}
	log_debug("%s: IDLE on INBOX", label);
	w->reported = false;
	w->s = s;
	w->result = FETCH_OK;
}

static void *connector_main(void *arg)
{
	struct idle *h = arg;
	char b = 'r';

	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (!h->stop && !h->q_len)
			pthread_cond_wait(&h->cond, &h->lock);
		if (h->stop)
			break;
		struct watch *w = h->queue[h->q_head];

		h->q_head = (h->q_head + 1) % h->n;
		h->q_len--;
		w->state = W_CONNECTING;
		pthread_mutex_unlock(&h->lock);
		connect_one(h, w);
		pthread_mutex_lock(&h->lock);
		w->next = h->ready;
		h->ready = w;
		if (write(h->notify[1], &b, 1) < 0) {
			/* the pipe is full: the loop has a wake-up pending */
		}
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* ---- the loop ---- */

static void queue_connect(struct idle *h, struct watch *w)
{
	pthread_mutex_lock(&h->lock);
	h->queue[(h->q_head + h->q_len) % h->n] = w;
	h->q_len++;
	w->state = W_QUEUED;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	rekey(h, w);
}

static void retry_later(struct idle *h, struct watch *w)
{
	w->state = W_WAIT;
	w->due_ms = now_ms() + jittered_ms(h, w->backoff);
	w->backoff = w->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : w->backoff * 2;
	rekey(h, w);
}

/* Closes w's connection and connects again after the back-off. */
static void drop(struct idle *h, struct watch *w, const char *why)
{
	char label[160];

	if (!w->reported) {
		label_of(w, label, sizeof(label));
		log_warn("%s: IDLE: %s; reconnecting in about %d s", label, why, w->backoff);
		w->reported = true;
	}
	epoll_ctl(h->ep, EPOLL_CTL_DEL, imap_idle_fd(w->s), NULL);
	imap_close(&w->s);
	retry_later(h, w);
}

static int scan(struct idle *h, struct watch *w, const char *p, size_t n);
static void service(struct idle *h, struct watch *w);

/* A connector's result: into the loop, or back to waiting. */
static void take_over(struct idle *h, struct watch *w)
{
	if (w->result == FETCH_STOPPED) {
		w->state = W_OFF;
		rekey(h, w);
		return;
	}
	if (w->result != FETCH_OK) {
		retry_later(h, w);
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };

	memset(&w->sc, 0, sizeof(w->sc));
	w->answer_by_ms = 0;
	w->state = W_IDLE;
	w->backoff = BACKOFF_MIN;
	w->due_ms = now_ms() + (int64_t)IDLE_PERIOD * 1000;
	rekey(h, w);
	if (epoll_ctl(h->ep, EPOLL_CTL_ADD, imap_idle_fd(w->s), &ev) < 0) {
		drop(h, w, strerror(errno));
		return;
	}
	if (w->changed)
		h->wake(w->ctx);
	if (w->rest) {
		int rc = scan(h, w, w->rest, w->rest_len);

		free(w->rest);
		w->rest = NULL;
		if (rc < 0)
			return;
	}
	/* TLS may already hold bytes that the socket will not announce. */
	service(h, w);
}

/* 0, or -1 when w was dropped. */
static int scan(struct idle *h, struct watch *w, const char *p, size_t n)
{
	bool waiting = idle_scan_waiting(&w->sc);
	unsigned changes;
	const char *why;

	if (idle_scan_feed(&w->sc, p, n, &changes, &why) < 0) {
		drop(h, w, why);
		return -1;
	}
	if (changes)
		h->wake(w->ctx);
	if (waiting && !idle_scan_waiting(&w->sc)) {
		w->answer_by_ms = 0;
		w->due_ms = now_ms() + (int64_t)IDLE_PERIOD * 1000;
		rekey(h, w);
	}
	return 0;
}

/* The socket is readable: everything there is, then back to the loop. */
static void service(struct idle *h, struct watch *w)
{
	char b[4096];

	for (;;) {
		ssize_t n = imap_idle_recv(w->s, b, sizeof(b));

		if (n == CONN_AGAIN)
			return;
		if (n <= 0) {
			drop(h, w, n == 0 ? "the server closed the connection" : imap_error(w->s));
			return;
		}
		if (scan(h, w, b, (size_t)n) < 0)
			return;
	}
}

/* DONE, and a new IDLE at once (RFC 2177: at most 29 minutes each). */
static void renew(struct idle *h, struct watch *w)
{
	char line[48], old[16];

	if (idle_scan_waiting(&w->sc))
		return;
	memcpy(old, w->tag, sizeof(old));
	snprintf(w->tag, sizeof(w->tag), "N%u", ++w->n_tags);
	snprintf(line, sizeof(line), "DONE\r\n%s IDLE\r\n", w->tag);
	if (imap_idle_send(w->s, line) < 0) {
		drop(h, w, imap_error(w->s));
		return;
	}
	idle_scan_expect(&w->sc, old);
	w->answer_by_ms = now_ms() + ANSWER_TIMEOUT * 1000;
	rekey(h, w);
}

/* Connections due, renewals due, answers late; returns the next deadline.
 * Each action moves its watch's deadline past now (or to none); the count
 * bounds the round should one not. */
static int64_t timers(struct idle *h)
{
	int64_t now = now_ms();
	struct watch *w;

	for (size_t i = 0; i < h->n && (w = minheap_top(&h->timers)) && w->deadline <= now; i++) {
		if (w->state == W_WAIT)
			queue_connect(h, w);
		else if (w->answer_by_ms)
			drop(h, w, "no answer to DONE");
		else
			renew(h, w);
	}
	w = minheap_top(&h->timers);
	return w && w->deadline != INT64_MAX ? w->deadline : now + 3600 * 1000;
}

static void *loop_main(void *arg)
{
	struct idle *h = arg;
	struct epoll_event evs[64];

	for (;;) {
		int64_t left = timers(h) - now_ms();
		int n = epoll_wait(h->ep, evs, 64, left < 0 ? 0 : left > 60000 ? 60000 : (int)left);

		if (n < 0 && errno != EINTR) {
			log_error("IDLE: epoll_wait: %m");
			break;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &h->cancel_fd)
				return NULL;
			if (evs[i].data.ptr == h->notify) {
				char b[64];
				struct watch *ready;

				while (read(h->notify[0], b, sizeof(b)) > 0)
					;
				pthread_mutex_lock(&h->lock);
				ready = h->ready;
				h->ready = NULL;
				pthread_mutex_unlock(&h->lock);
				while (ready) {
					struct watch *w = ready;

					ready = w->next;
					take_over(h, w);
				}
				continue;
			}
			struct watch *w = evs[i].data.ptr;

			/* An earlier event of this round may have dropped it. */
			if (w->state == W_IDLE)
				service(h, w);
		}
	}
	return NULL;
}

/* Three descriptors per watched account: its socket, and the socketpair
 * libcurl 7.88 gives every handle (to wake its event loop, which a
 * CONNECT_ONLY handle keeps until it is freed); beside them the store's,
 * FUSE's and the syncs' (FD_RESERVE). Returns how many of the n accounts
 * may idle: past the hard limit, the others are left to their interval
 * rather than take the descriptors the syncs need. */
#define FD_RESERVE 256
static size_t raise_fd_limit(size_t n)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)n * 3 + FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return n;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return n;
	if (rl.rlim_cur >= want)
		return n;
	size_t fit = rl.rlim_cur > FD_RESERVE ? (size_t)(rl.rlim_cur - FD_RESERVE) / 3 : 0;

	log_warn("IDLE: %zu accounts need about %llu descriptors, the limit is %llu: the first "
		 "%zu idle, the others are synced at their interval; raise the hard limit "
		 "(LimitNOFILE= in the systemd unit, ulimit -Hn)", n, (unsigned long long)want,
		 (unsigned long long)rl.rlim_cur, fit);
	return fit;
}

int idle_start(const struct idle_account *accts, size_t n, int cancel_fd,
	       void (*wake)(void *ctx), struct idle **r)
{
	struct idle *h = calloc(1, sizeof(*h));
	int rc = -ENOMEM;

	*r = NULL;
	if (!h)
		return -ENOMEM;
	h->notify[0] = h->notify[1] = h->ep = -1;
	h->cancel_fd = cancel_fd;
	h->wake = wake;
	h->rnd = (uint64_t)now_ms() * 2654435761u ^ (uint64_t)getpid() ^ 0x9e3779b97f4a7c15u;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->n = n = raise_fd_limit(n);
	h->w = calloc(n ? n : 1, sizeof(*h->w));
	h->queue = calloc(n ? n : 1, sizeof(*h->queue));
	if (!h->w || !h->queue ||
	    minheap_init(&h->timers, n, offsetof(struct watch, timer_pos), deadline_before) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		/* all due at 0, in order: a heap already */
		h->w[i] = (struct watch){ .a = accts[i].a, .ctx = accts[i].ctx, .state = W_WAIT,
					  .backoff = BACKOFF_MIN };
		minheap_push(&h->timers, &h->w[i]);
	}
	if (pipe2(h->notify, O_CLOEXEC | O_NONBLOCK) < 0 || (h->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		rc = -errno;
		goto fail;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &h->cancel_fd };
	struct epoll_event evn = { .events = EPOLLIN, .data.ptr = h->notify };
	if (epoll_ctl(h->ep, EPOLL_CTL_ADD, cancel_fd, &ev) < 0 ||
	    epoll_ctl(h->ep, EPOLL_CTL_ADD, h->notify[0], &evn) < 0) {
		rc = -errno;
		goto fail;
	}
	for (; h->n_conn < IDLE_CONNECTORS && h->n_conn < n; h->n_conn++)
		if ((rc = -pthread_create(&h->conn[h->n_conn], NULL, connector_main, h)) < 0)
			goto fail;
	if ((rc = -pthread_create(&h->loop, NULL, loop_main, h)) < 0)
		goto fail;
	h->loop_started = true;
	*r = h;
	return 0;
fail:
	/* Nothing was queued: the connectors wait for work or the stop. */
	idle_stop(&h);
	return rc;
}

struct closer {
	struct idle *h;
	size_t from, step;
};

/* Cut, not LOGOUT: a thousand goodbyes are not worth a slow stop. */
static void *close_some(void *arg)
{
	struct closer *c = arg;

	for (size_t i = c->from; i < c->h->n; i += c->step) {
		imap_close(&c->h->w[i].s);
		free(c->h->w[i].rest);
	}
	return NULL;
}

/* Frees every connection, on IDLE_CONNECTORS threads: each costs about
 * 0.3 ms of CPU in libcurl and OpenSSL (a TLS context of its own), so
 * 10,000 of them one after another took 3 s. */
static void close_all(struct idle *h)
{
	struct closer c[IDLE_CONNECTORS];
	pthread_t t[IDLE_CONNECTORS];
	size_t k = 0, want = h->n / 500 + 1;

	if (want > IDLE_CONNECTORS)
		want = IDLE_CONNECTORS;
	for (size_t i = 0; i < want; i++)
		c[i] = (struct closer){ .h = h, .from = i, .step = want };
	for (; k + 1 < want; k++)
		if (pthread_create(&t[k], NULL, close_some, &c[k + 1]) != 0)
			break;
	close_some(&c[0]);
	for (size_t i = 0; i < k; i++)
		pthread_join(t[i], NULL);
	/* slices whose thread did not start */
	for (size_t i = k + 1; i < want; i++)
		close_some(&c[i]);
}

void idle_stop(struct idle **ip)
{
	struct idle *h = *ip;

	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	for (size_t i = 0; i < h->n_conn; i++)
		pthread_join(h->conn[i], NULL);
	if (h->loop_started)
		pthread_join(h->loop, NULL);
	int64_t t0 = now_ms();
	if (h->w)
		close_all(h);
	log_debug("IDLE: %zu accounts' connections closed in %lld ms", h->n,
		  (long long)(now_ms() - t0));
	if (h->ep >= 0)
		close(h->ep);
	for (int i = 0; i < 2; i++)
		if (h->notify[i] >= 0)
			close(h->notify[i]);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	minheap_release(&h->timers);
	free(h->queue);
	free(h->w);
	free(h);
	*ip = NULL;
}
