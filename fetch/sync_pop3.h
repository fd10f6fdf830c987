/* sync_pop3: the sync of a POP3 account (RFC 1939, UIDL; RFC 2449; STLS per
 * RFC 2595), called by sync_account. One folder, "INBOX"; the remote id is
 * the UIDL; messages are left on the server. The safety rules are those of
 * the IMAP path: deletion only after a complete UIDL listing, the
 * mass-delete guard, and nothing at all when mirror_deletions is off. */
#ifndef MAILDISK_SYNC_POP3_H
#define MAILDISK_SYNC_POP3_H

#include <stdbool.h>
#include <stdint.h>
#include "../cache/index.h"
#include "../cache/store.h"
#include "sync.h"

/* ix is the worker's writer connection, sync_id the audit row of this run.
 * Fills r (n_new, n_trashed, n_held, bytes, error, retry) and returns the
 * worst status; calls o->obs added/removed/folder_added as sync.c does. */
enum fetch_status sync_pop3(struct store *st, struct index *ix,
			    const struct account_settings *a, const struct sync_opts *o,
			    int64_t sync_id, const char *secret, bool token,
			    struct sync_result *r);

#endif
