/* store: the consolidated store on disk, a Maildir per synced folder.
 *
 *   <root>/index.db                      the index (cache/index.h)
 *   <root>/lock                          flock'd by the one writer, PID inside
 *   <root>/mail/<user>/<account>/<folder path>/{tmp,new,cur}/
 *                                        (<folder path>: names_folder_path,
 *                                        which never yields a component
 *                                        "tmp", "new" or "cur")
 *   <root>/trash/<user>/<account>/<folder path>/<file>
 *
 * Everything created is mode 0700 (dirs) / 0600 (files), owned by the
 * daemon's user. The write order that makes a crash harmless lives in
 * store_batch_commit and store_trash; store_recover repairs what a crash at
 * any instant can leave.
 *
 * Threads: a struct store is immutable after store_open and may be shared;
 * batches belong to one thread. Functions return 0 or a negative errno and
 * log the failing system call with its path. */
#ifndef MAILDISK_STORE_H
#define MAILDISK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "index.h"

struct store;

/* Creates root (0700) with mail/ and trash/ if missing. Does not open the
 * index: each thread opens its own with store_index_open. */
int store_open(const char *root, struct store **r);
void store_close(struct store **s);
const char *store_root(const struct store *s);
/* Bytes an unprivileged writer may still use on the store's filesystem
 * (f_bavail: without the blocks reserved for root, which a daemon running
 * as root would otherwise eat), and the filesystem's size. 0 or -errno. */
int store_free_space(const struct store *s, uint64_t *avail_r, uint64_t *total_r);
int store_index_open(const struct store *s, bool readonly, struct index **r);

/* One writer per store: takes an exclusive flock on <root>/lock and writes
 * our PID into it. -EWOULDBLOCK when another process holds it; *holder_r
 * then has its PID (0 if unknown). The lock lasts until store_close. */
int store_lock(struct store *s, pid_t *holder_r);
/* After store_lock: whether the previous writer ended without store_close
 * (its PID was still in the lock file), so store_recover should run. A
 * clean end leaves nothing for recovery to do, which spares every start a
 * walk over the whole store. */
bool store_needs_recovery(const struct store *s);
/* PID of the process holding the lock, 0 if none. */
pid_t store_lock_holder(const struct store *s);

/* Absolute path of a store-relative path, into out (size outlen). */
int store_path(const struct store *s, const char *rel, char *out, size_t outlen);
/* Opens a store-relative file read-only (O_CLOEXEC), returns the fd or -errno. */
int store_open_file(const struct store *s, const char *rel);

/* Creates the folder's Maildir ({tmp,new,cur}/ at its path) unless its
 * cur/ exists, so a folder shows in the store before it has messages. */
int store_folder_create(struct store *s, const struct index_folder *f);

/* ---- adding messages ---- */
struct store_batch;
struct store_msg;

/* A batch of new messages for one folder (its Maildir is created if needed). */
int store_batch_create(struct store *s, const struct index_folder *f, struct store_batch **r);
/* Whether finished messages have their parts analysed (default true); off
 * for a user whose mount shows no parts ("parts = no"): their rows stay not
 * analysed, for the backfill if the switch is turned on. */
void store_batch_set_parts(struct store_batch *b, bool analyse);
/* Discards files not yet committed. Safe on NULL. */
void store_batch_destroy(struct store_batch **b);

/* Starts a new message: a file in tmp/. The handle is owned by the batch. */
int store_msg_begin(struct store_batch *b, struct store_msg **m_r);
int store_msg_write(struct store_msg *m, const void *p, size_t n);
/* The message is complete: meta (remote_id, dates, headers, flags,
 * view_name) is moved into the batch (its strings are taken and the struct
 * cleared); store_file and size are filled in by the store. Its parts are
 * analysed (cache/parts.h) and their records go into the index with its
 * row, in the same transaction; a message whose analysis fails is stored
 * all the same, not analysed (n_parts NULL), for a later try. */
int store_msg_finish(struct store_msg *m, struct index_msg *meta);
/* The message failed (connection dropped, bad data): its tmp file goes. */
void store_msg_abort(struct store_msg *m);

size_t store_batch_count(const struct store_batch *b);   /* finished messages */
uint64_t store_batch_bytes(const struct store_batch *b);

/* Makes the batch durable and visible, in this order:
 *   1. one syncfs(2) of the store's file system makes every file's data
 *      durable (one journal commit for the whole batch, not an fsync per
 *      message; where syncfs is not supported, each file is fsync'd);
 *   2. rename each file tmp/ -> cur/ under its final name;
 *   3. fsync cur/, so the renames are durable;
 *   4. insert the rows and their part records in one transaction (with
 *      index_folder_touch).
 * Why this order: a name in cur/ must never stand for data a crash can
 * lose (1 before 2), and a committed row must never name a file a crash
 * can take back (3 before 4). A crash before 4 commits leaves files in cur/
 * without rows, which store_recover removes (the server still has the
 * messages). On failure nothing of the batch is in the index and the
 * renamed files are removed again. The batch is empty afterwards and can
 * be reused. On success, ids_r (if not NULL, a malloc'd array of
 * store_batch_count() row ids, caller frees) says which rows were added. */
int store_batch_commit(struct store_batch *b, struct index *ix, int64_t now,
		       int64_t **ids_r, size_t *n_r);

/* ---- removing and restoring ---- */
/* Moves each message's file to trash/ and marks its row trashed with
 * sync_id and reason, in one transaction after the files are moved and
 * their directories fsynced. Files first: a crash in between leaves active
 * rows whose files are in trash/, which store_recover marks trashed; the
 * other order could leave trashed rows whose files still show in cur/. */
int store_trash(struct store *s, struct index *ix, const int64_t *ids, size_t n,
		int64_t sync_id, const char *reason, int64_t now);
/* Moves a trashed message back into its folder's cur/ as MSG_RESTORED. */
int store_restore(struct store *s, struct index *ix, int64_t id);
/* Deletes trashed messages trashed before cutoff (files, then rows).
 * *n_r: how many went. */
int store_purge(struct store *s, struct index *ix, int64_t cutoff, size_t *n_r);

/* ---- flags ---- */
struct store_flag_change {
	int64_t id;          /* an active row */
	const char *flags;   /* borrowed, may be NULL: its IMAP flags now */
};
/* Records new IMAP flags for n active messages and gives each file the
 * Maildir info suffix ":2,<letters>" of its flags (store_maildir_flags), so
 * Maildir readers of the store (mutt, mu, notmuch) see them. Order, so that
 * no name is ever missing and a crash at any point is repaired by
 * store_recover: link each file under its new name, fsync the directories,
 * set flags and store_file in one transaction, then unlink the old names
 * and fsync again. A crash before the commit leaves an extra name (removed
 * by store_recover as a file no row names) and the old flags in the index,
 * which the next sync sets again; after it, the old name is the extra one.
 * A row whose file is gone (another Maildir reader renamed it) keeps its
 * file name and gets only the flags. On a failure before the commit the
 * index is unchanged and the new names are removed; a failure to remove an
 * old name after it is returned too (logged), with the index updated. */
int store_set_flags(struct store *s, struct index *ix, const struct store_flag_change *v, size_t n);

/* ---- crash recovery and checking ---- */
struct store_report {
	size_t tmp_removed;       /* half-written files in tmp/ removed */
	size_t orphans_removed;   /* complete files in cur/ with no row (crash before commit) */
	size_t trash_completed;   /* rows re-pointed at files found in trash/ */
	size_t rows_missing_file; /* visible rows whose file is gone (row removed so the next sync fetches it) */
	size_t size_mismatch;     /* rows whose file size differs from the row */
};
/* Start-up pass (writer only, under store_lock). With repair false it only
 * counts (maildisk check --store). */
int store_recover(struct store *s, struct index *ix, bool repair, struct store_report *r);

/* Moves folders that an earlier maildisk stored where they do not belong,
 * crash-safely: a kill at any instant loses no message and the next call
 * finishes the move (store_layout.c says how):
 *   - a folder that shares its path with an older folder (two server names
 *     that mapped to one path) moves to "<path> (N)" with its own files and
 *     gets a note (index_folder_note);
 *   - a folder in the layout before the "cur"/"new"/"tmp" rule of names.h
 *     ("INBOX.tmp" at .../INBOX/tmp/, inside INBOX's Maildir) moves to
 *     .../INBOX/%74mp/.
 * Writer only, under store_lock, before store_recover. *n_r: the folders
 * found to move or with a move left to finish (with repair false it only
 * counts them, for maildisk check --store). Returns the first error; a
 * folder that cannot move stays usable where it is. */
int store_migrate_layout(struct store *s, struct index *ix, bool repair, size_t *n_r);

/* Maildir info suffix for IMAP flags: "\\Seen \\Flagged" -> "FS" (sorted). */
void store_maildir_flags(const char *imap_flags, char *out, size_t outlen);

#endif
