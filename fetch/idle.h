/* idle: push for IMAP accounts. Each account keeps a connection in IDLE
 * (RFC 2177) on INBOX, and wake() is called when the server reports new
 * mail or an expunge, so the scheduler syncs that account at once instead
 * of at the next interval.
 *
 * All the accounts' idle connections are watched by one event-loop thread
 * (epoll over their sockets and the cancel descriptor); a few connector
 * threads do the blocking part (login, EXAMINE, IDLE) and hand each ready
 * connection to the loop. The loop only reads what has arrived, keeps a few
 * dozen bytes of state per connection, and drops a connection that sends
 * what IDLE never sends, too long a line or too much (reconnected with
 * back-off and jitter). Every IDLE_PERIOD seconds (under the 29 minutes of
 * RFC 2177) it ends the IDLE with DONE and starts another on the same
 * connection; an answer that does not come within a minute drops it.
 * Servers without IDLE are left to the interval.
 *
 * Threads: idle_start/idle_stop from the scheduler's thread; wake() is
 * called on the loop's thread and must be thread-safe and quick. */
#ifndef MAILDISK_IDLE_H
#define MAILDISK_IDLE_H

#include <stdbool.h>
#include <stddef.h>
#include "../cache/settings.h"

#define IDLE_PERIOD (25 * 60)
/* Threads that log in and start IDLE, whatever the number of accounts. */
#define IDLE_CONNECTORS 4

struct idle;

struct idle_account {
	const struct account_settings *a;   /* borrowed */
	void *ctx;                          /* borrowed: passed to wake() */
};

/* Whether the account is one idle watches (IMAP, and INBOX is synced). */
bool idle_wanted(const struct account_settings *a);
/* Starts watching the n accounts (copied; their settings stay borrowed).
 * cancel_fd: borrowed; once readable, every thread stops within a moment
 * (the scheduler makes it readable at shutdown). 0 or a negative errno. */
int idle_start(const struct idle_account *accts, size_t n, int cancel_fd,
	       void (*wake)(void *ctx), struct idle **r);
/* Joins the threads (make cancel_fd readable first), closes every
 * connection; sets *i to NULL. Safe on NULL. */
void idle_stop(struct idle **i);

#endif
