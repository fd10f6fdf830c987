/* sync_pop3: the sync of a POP3 account (RFC 1939, UIDL; RFC 2449; STLS per
 * RFC 2595), called by sync_account. One folder, "INBOX"; the remote id is
 * the UIDL; messages are left on the server. The safety rules are those of
 * the IMAP path: deletion only after a complete UIDL listing, the
 * mass-delete guard, and nothing at all when mirror_deletions is off. */
#ifndef MAILDISK_SYNC_POP3_H
#define MAILDISK_SYNC_POP3_H

#include <stdbool.h>
#include <stdint.h>
#include "ingest.h"

/* Syncs run->a with the given secret (a bearer token when token). Fills
 * run->r (n_new, n_trashed, n_held, bytes, error, retry) through ingest and
 * returns the worst status; the mount hears of changes as from sync.c. */
enum fetch_status sync_pop3(struct ingest_run *run, const char *secret, bool token);

#endif
