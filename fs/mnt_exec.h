/* mnt_exec: runs a user's on_change command (for example `notmuch new`)
 * after a sync changed that user's mail, since a FUSE file system cannot
 * raise inotify events for changes the daemon makes itself.
 *
 * The command is split into words without a shell (secret_split_argv) and
 * run as the user (child_spawn in cache/child.h: its uid, gid and
 * supplementary groups when the daemon runs as root, its home as the
 * working directory, only descriptors 0, 1 and 2), in its own process
 * session, with stdin from /dev/null, stdout and stderr the daemon's, and
 * child.h's small environment plus MAILDISK_USER (the [user] name) and
 * MAILDISK_MOUNT (the user's directory in the mount).
 * One run per user at a time: a change while the command runs makes it run
 * once more afterwards. Each run is waited for by a thread of its own, so
 * the sync worker that reported the change never waits.
 *
 * An unprivileged daemon runs the command only for users whose uid is its
 * own (it cannot become anyone else), and says so once at start-up.
 *
 * Threads: mnt_exec_user_changed from any thread; create and destroy from
 * the main thread. */
#ifndef MAILDISK_MNT_EXEC_H
#define MAILDISK_MNT_EXEC_H

#include "../cache/settings.h"

struct mnt_exec;

/* Prepares every user's command (argv, environment, groups). mountpoint is
 * absolute. A user whose command cannot be prepared is logged and left
 * without one. 0 or -ENOMEM. */
int mnt_exec_create(const struct settings *cfg, const char *mountpoint, struct mnt_exec **r);

/* user's mail changed: start the command, or note a rerun when it is running. */
void mnt_exec_user_changed(struct mnt_exec *x, const char *user);

/* Starts no more runs, waits for running commands (at most a few seconds,
 * then they get SIGTERM, then SIGKILL), and frees everything. NULL-safe. */
void mnt_exec_destroy(struct mnt_exec **x);

#endif
