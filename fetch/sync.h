/* sync: the sync engine. For one account: connect as the user, and for each
 * folder learn the remote identifier set, fetch what is new into the store,
 * and move to trash what a complete listing proves gone (docs/design.md,
 * The sync and Deletion rules).
 *
 * Threads: sync_account runs on a sync worker; it opens its own index
 * connection and owns its network connection. Two calls for the same
 * account must not run at once (the scheduler guarantees it). */
#ifndef MAILDISK_SYNC_H
#define MAILDISK_SYNC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../cache/settings.h"
#include "../cache/store.h"
#include "fetch_status.h"

/* How the mount learns of changes. Called on the sync worker after the
 * index transaction committed, with no lock held (so a FUSE notify call
 * made from here cannot deadlock against a FUSE op). Any member may be NULL. */
struct sync_observer {
	/* msg_ids became visible in folder_id */
	void (*added)(void *ctx, int64_t folder_id, const int64_t *msg_ids, size_t n);
	/* msg_ids left folder_id; view_names[i] is the name msg_ids[i] had */
	void (*removed)(void *ctx, int64_t folder_id, const int64_t *msg_ids,
			char *const *view_names, size_t n);
	/* a folder row was created (first sync of a folder) */
	void (*folder_added)(void *ctx, int64_t folder_id);
	/* msg_ids of folder_id got their part records (the backfill,
	 * fetch/parts_backfill.c); may be NULL */
	void (*analysed)(void *ctx, int64_t folder_id, const int64_t *msg_ids, size_t n);
	/* a sync of user's accounts ended having changed something */
	void (*user_changed)(void *ctx, const char *user);
	void *ctx;
};

struct sync_opts {
	bool allow_mass_delete;        /* maildisk sync --allow-mass-delete */
	bool progress;                 /* print progress to stderr (a terminal) */
	const struct sync_observer *obs;   /* borrowed, may be NULL */
	const atomic_bool *stop;       /* borrowed, may be NULL: once true, stop at a message boundary
					* (lock-free, so a signal handler may set it) */
	int cancel_fd;                 /* -1, or readable once stop is set: ends every network wait at once */
};

struct sync_result {
	enum fetch_status status;      /* worst status of the run */
	enum fetch_retry retry;
	int64_t n_new;                 /* messages added */
	int64_t n_trashed;             /* messages moved to trash */
	int64_t n_held;                /* deletions held back (mass-delete guard, unconvincing re-match) */
	int64_t n_rekeyed;             /* rows re-keyed after a UIDVALIDITY change */
	uint64_t bytes;                /* message bytes stored */
	char error[512];               /* first account-level error, "" if none */
};

/* Process-wide set-up of the libraries the sync uses (libcurl, GMime):
 * call once from the main thread before any other thread starts. 0 or -1. */
int sync_global_init(void);
void sync_global_cleanup(void);

/* Syncs one account once. 0 when every folder synced; otherwise r->status
 * says how far the failure went (errors are logged and recorded in the
 * index, where status and .status read them). */
int sync_account(struct store *st, const struct settings *cfg,
		 const struct account_settings *a, const struct sync_opts *o,
		 struct sync_result *r);

#endif
