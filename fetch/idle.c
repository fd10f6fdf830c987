/* idle: an IMAP IDLE watcher per account (RFC 2177), on its own connection
 * (a CONNECT_ONLY session like the sync's: docs/design.md, Transport). */
#include "idle.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../cache/log.h"
#include "imap.h"
#include "secret.h"

#define BACKOFF_MIN 5
#define BACKOFF_MAX 600

struct idle {
	const struct account_settings *a;   /* borrowed */
	int cancel_fd;                      /* borrowed */
	void (*wake)(void *ctx);
	void *ctx;
	pthread_t thread;
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

/* Sleeps up to seconds; true when cancelled. */
static bool cancelled_within(const struct idle *w, int seconds)
{
	struct pollfd p = { .fd = w->cancel_fd, .events = POLLIN };
	int n;

	do
		n = poll(&p, 1, seconds * 1000);
	while (n < 0 && errno == EINTR);
	return n > 0;
}

static void *idle_main(void *arg)
{
	struct idle *w = arg;
	char label[160];
	int backoff = BACKOFF_MIN;
	bool reported = false;

	snprintf(label, sizeof(label), "%s/%s", w->a->user, w->a->name);
	while (!cancelled_within(w, 0)) {
		struct buf err = BUF_INIT(1024);
		struct imap *s = NULL;
		char *secret = NULL;
		enum fetch_retry retry;
		enum fetch_status st = FETCH_ACCOUNT_BAD;

		if (secret_get(w->a, &secret, &err) == 0) {
			buf_reset(&err);
			st = imap_open(w->a, secret, secret_is_token(w->a), w->cancel_fd, &s, &retry,
				       &err);
			explicit_bzero(secret, strlen(secret));
			free(secret);
		}
		if (st != FETCH_OK) {
			/* The sync reports the same failure; say it here once. */
			if (!reported)
				log_warn("%s: IDLE: %s; retrying in %d s", label,
					 err.data ? err.data : "cannot connect", backoff);
			reported = true;
			buf_release(&err);
			if (cancelled_within(w, backoff))
				break;
			backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
			continue;
		}
		buf_release(&err);
		if (!imap_has_cap(s, "IDLE")) {
			log_info("%s: the server has no IDLE; syncing every %d s", label,
				 w->a->interval);
			imap_close(&s);
			break;
		}
		imap_set_cancel(s, w->cancel_fd);
		struct imap_folder_state fs;
		st = imap_examine(s, "INBOX", 0, 0, 0, &fs, NULL);
		if (st == FETCH_OK) {
			reported = false;
			backoff = BACKOFF_MIN;
			log_debug("%s: IDLE on INBOX", label);
		}
		while (st == FETCH_OK && imap_usable(s)) {
			bool changed;

			st = imap_idle(s, IDLE_PERIOD, &changed);
			if (st == FETCH_OK && changed) {
				log_debug("%s: IDLE: INBOX changed", label);
				w->wake(w->ctx);
			}
		}
		if (st != FETCH_OK && st != FETCH_STOPPED && !reported) {
			log_warn("%s: %s; reconnecting in %d s", label, imap_error(s), backoff);
			reported = true;
		}
		imap_close(&s);
		if (st == FETCH_STOPPED)
			break;
		if (st != FETCH_OK) {
			if (cancelled_within(w, backoff))
				break;
			backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
		}
	}
	return NULL;
}

int idle_start(const struct account_settings *a, int cancel_fd,
	       void (*wake)(void *ctx), void *ctx, struct idle **r)
{
	struct idle *w = calloc(1, sizeof(*w));
	int rc;

	*r = NULL;
	if (!w)
		return -ENOMEM;
	*w = (struct idle){ .a = a, .cancel_fd = cancel_fd, .wake = wake, .ctx = ctx };
	rc = pthread_create(&w->thread, NULL, idle_main, w);
	if (rc) {
		free(w);
		return -rc;
	}
	*r = w;
	return 0;
}

void idle_stop(struct idle **ip)
{
	struct idle *w = *ip;

	if (!w)
		return;
	pthread_join(w->thread, NULL);
	free(w);
	*ip = NULL;
}
