/* scheduler (functions sched_*): the background syncing inside the daemon. A small pool of sync
 * workers ([sync] workers, default 4); each account is synced every
 * `interval` seconds, never by two workers at once; failures back off;
 * sched_sync_now (SIGUSR1, `maildisk sync`) makes every account due now;
 * an account whose IDLE saw new mail goes before the due ones
 * (due_queue.h).
 *
 * Threads: sched_start/sched_stop from the main thread; sched_sync_now from
 * any thread or a signal handler (async-signal-safe: it writes to a pipe). */
#ifndef MAILDISK_SCHEDULER_H
#define MAILDISK_SCHEDULER_H

#include "../cache/settings.h"
#include "../cache/store.h"
#include "sync.h"

struct sched;

/* Starts the workers; the first sync of every account begins at once.
 * cfg, st and obs are borrowed and must outlive the scheduler. */
int sched_start(struct store *st, const struct settings *cfg,
		const struct sync_observer *obs, struct sched **r);
void sched_sync_now(struct sched *s);
/* Stops: a sync in flight ends at a message boundary with its last batch
 * committed or discarded whole; joins the workers; sets *s to NULL. */
void sched_stop(struct sched **s);

/* One pass over the accounts matching user (NULL: all) and account (NULL:
 * all of user's), cfg->workers at a time, each with o; results[i] is
 * filled for cfg->accounts[i] (results has cfg->n_accounts entries; those
 * not selected get status FETCH_OK and ran_r[i] false). Returns how many
 * accounts ran. Called from the main thread of `maildisk sync`. */
size_t sched_run_once(struct store *st, const struct settings *cfg, const char *user,
		      const char *account, const struct sync_opts *o,
		      struct sync_result *results, bool *ran_r);

#endif
