/* mnt: the FUSE mount (libfuse3 low-level API) of the consolidated store as
 * a per-user tree, with the sync scheduler running in the same process.
 *
 *   /<user>/<account>/<folder path>/<name>.eml
 *   /<user>/.status
 *
 * Read-only; answered from the index (lookup, getattr, readdir) and the
 * backing files (read). FUSE worker threads each use their own read-only
 * index connection and never touch the network; the sync workers tell the
 * mount of changes through a struct sync_observer (fetch/sync.h), from
 * which kernel caches are invalidated after the index commit, with no lock
 * held. */
#ifndef MAILDISK_MNT_H
#define MAILDISK_MNT_H

#include <stdbool.h>
#include "../cache/settings.h"
#include "../cache/store.h"

struct mnt_opts {
	const char *mountpoint;   /* borrowed */
	bool foreground;          /* -f: stay in the foreground, log to stderr */
	const char *fuse_opts;    /* borrowed, may be NULL: extra -o options */
	bool sync;                /* run the sync scheduler (false: serve the store as it is) */
};

/* Mounts, daemonises unless foreground, serves until unmounted or
 * SIGINT/SIGTERM, then stops the scheduler (a sync in flight ends at a
 * message boundary) and returns. SIGUSR1 syncs every account now. The
 * caller holds the store lock. Returns 0, or 1 when the mount failed (the
 * reason is logged). */
int mnt_run(struct store *st, const struct settings *cfg, const struct mnt_opts *o);

#endif
