/* idle: push for one IMAP account. A thread keeps its own connection in
 * IDLE (RFC 2177) on INBOX and calls wake() when the server reports new
 * mail or an expunge, so the scheduler syncs that account at once instead
 * of at the next interval. Reconnects with back-off after a drop, starts
 * over every IDLE_PERIOD seconds (under the 29 minutes of RFC 2177), and
 * ends quietly for servers without IDLE.
 *
 * Threads: idle_start/idle_stop from the scheduler's thread; wake() is
 * called on the idle thread and must be thread-safe. */
#ifndef MAILDISK_IDLE_H
#define MAILDISK_IDLE_H

#include <stdbool.h>
#include "../cache/settings.h"

#define IDLE_PERIOD (25 * 60)

struct idle;

/* Whether the account is one idle watches (IMAP, and INBOX is synced). */
bool idle_wanted(const struct account_settings *a);
/* cancel_fd: borrowed; once readable, the thread stops within a moment
 * (the scheduler makes it readable at shutdown). */
int idle_start(const struct account_settings *a, int cancel_fd,
	       void (*wake)(void *ctx), void *ctx, struct idle **r);
/* Joins the thread (make cancel_fd readable first); sets *i to NULL. */
void idle_stop(struct idle **i);

#endif
