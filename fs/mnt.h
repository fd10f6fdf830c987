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
 * held.
 *
 * What the mount shows (fs/mnt_tree.h has the layout and inode numbers):
 *   - /<user> for every [user] of the config, synced or not; /<user>/<account>
 *     for every account; folder paths as nested directories named by the
 *     store's escaped components (cache/names.h).
 *   - owner: as root, everything under /<user> belongs to that user's uid and
 *     gid and / is root's with mode 0711 (users pass through to their own
 *     directory but cannot list the others); unprivileged, everything
 *     belongs to the running user and / is 0500. Directories 0500, files
 *     0400.
 *   - message mtime: the Date header, else INTERNALDATE; directory mtime: the
 *     latest changed_at of the folders at or below it (the mount's start
 *     time when there is none yet).
 *   - /<user>/.status: generated text, per account its latest sync run and
 *     per folder "messages", "in trash", "last sync", "last error" and "held
 *     deletions"; its attributes are never cached, and a read(2) sees the
 *     text as the stat before it found it (fs/mnt_status.c, struct
 *     status_snap).
 *   - extended attributes of a message, listed only when not empty:
 *     user.mail.from, user.mail.to, user.mail.subject (decoded UTF-8),
 *     user.mail.date (RFC 3339 in UTC, "2026-11-27T13:32:05Z", from the same
 *     time as the mtime), user.mail.message_id (without <>), user.mail.flags
 *     (IMAP flags, space separated), user.mail.account, user.mail.folder (the
 *     folder name as the user knows it, "Work/Ärchiv"). Directories have none.
 *     Any name outside user.mail.* (security.selinux, system.posix_acl_*,
 *     ...) on anything: ENOTSUP; POSIX ACLs are not supported.
 *   - every write (open for writing, create, mkdir, unlink, rmdir, rename,
 *     link, symlink, mknod, setattr, setxattr, removexattr, fallocate):
 *     EROFS. The mount is also "ro" to the kernel.
 * FUSE options always given: fsname=maildisk, subtype=maildisk, ro,
 * default_permissions, and allow_other when running as root. */
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
 * reason is logged).
 *
 * Signals while it runs: SIGINT, SIGTERM and SIGHUP stop it; the scheduler
 * is stopped while the mount still answers (a sync worker may be inside a
 * notify call waiting for the kernel, which may wait for a FUSE reply), and
 * only then does the session loop end. After an external `fusermount3 -u`
 * the loop ends first and the scheduler after it. The previous handlers
 * are restored on return. When it daemonises, the store's lock file is
 * rewritten with the daemon's PID (`maildisk sync` signals that PID).
 * A relative store path is refused unless foreground (the daemon moves to
 * /). Must be called from the main thread before any other thread exists. */
int mnt_run(struct store *st, const struct settings *cfg, const struct mnt_opts *o);

#endif
