/* index: the message-identifier store and catalog, in SQLite (WAL).
 *
 * <store>/index.db holds one row per synced folder and one per message ever
 * stored. A message's identity is (folder, remote_id): remote_id is the IMAP
 * UID in decimal (valid within the folder's UIDVALIDITY) or the POP3 UIDL.
 * Message-ID is evidence for re-matching after a UIDVALIDITY change, never a
 * key. The message row id is stable for the row's life and is what the mount
 * uses as the inode number.
 *
 * Threads: one struct index (one SQLite connection) per thread; never share
 * one. WAL mode and busy_timeout let the sync worker write while FUSE
 * threads read. Every function returns 0 or a negative errno (-EIO for a
 * SQLite failure, which is also logged with the statement that failed,
 * -ENOENT when a row is absent, -EEXIST for a uniqueness conflict).
 * Strings in returned structs are owned by the struct; free them with the
 * matching _release. */
#ifndef MAILDISK_INDEX_H
#define MAILDISK_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct index;

/* Opens (creating and migrating the schema if needed) db_path. readonly opens
 * with SQLITE_OPEN_READONLY (status, trash list, the mount's readers). */
int index_open(const char *db_path, bool readonly, struct index **r);
void index_close(struct index **ix);

/* The words for an index call's negative errno: -EUCLEAN is SQLite finding
 * the file damaged (SQLITE_CORRUPT, SQLITE_NOTADB), said once in the log
 * with what to do; the rest are strerror's. */
const char *index_strerror(int err);

/* Explicit transactions (BEGIN IMMEDIATE for writers). Calls nest by count:
 * only the outermost commit commits; a rollback at any depth rolls back all. */
int index_begin(struct index *ix);
int index_commit(struct index *ix);
void index_rollback(struct index *ix);
/* Ends what index_begin began: index_commit when rc is 0, else
 * index_rollback. Returns rc, or the commit's error. */
int index_end(struct index *ix, int rc);

/* ---- folders ---- */
struct index_folder {
	int64_t id;
	char *user;          /* owned */
	char *account;       /* owned */
	char *name;          /* owned: folder name, UTF-8, as the user knows it ("INBOX", "Work/Ärchiv") */
	char *path;          /* owned: Maildir dir relative to the store root, "mail/<user>/<account>/<escaped folder path>" */
	uint32_t uidvalidity;   /* 0: never synced */
	uint32_t uidnext;
	uint64_t highestmodseq; /* 0: server has no CONDSTORE, or never synced */
	int64_t synced_at;   /* unix time of the last successful sync, 0 never */
	int64_t changed_at;  /* unix time content last changed (the mount's directory mtime) */
	char *last_error;    /* owned, NULL when the last sync succeeded */
	char *held;          /* owned, NULL unless deletions are held back: why */
	int64_t n_active;    /* messages visible (active + restored); filled by get/list */
	int64_t n_trashed;
};
void index_folder_release(struct index_folder *f);
void index_folder_array_free(struct index_folder **fs, size_t n);

/* Get-or-create by (user, account, name); path is used only when creating.
 * Local paths are unique: when another folder has path already (two server
 * names that map to one path, "a.b" with delimiter '.' and "a/b" with '/'),
 * the new folder is stored at path + " (2)" (or the next free number) and
 * gets a note saying so (index_folder_note); -ENAMETOOLONG when that would
 * make the last component longer than 255 bytes. */
int index_folder_ensure(struct index *ix, const char *user, const char *account,
			const char *name, const char *path, struct index_folder *r);
/* path with " (N)" after its last component (*r malloc'd), for the
 * smallest N from 2 on that no folder has; -ENAMETOOLONG when that
 * component would pass 255 bytes. */
int index_folder_unique_path(struct index *ix, const char *path, char **r);
/* The folder's note (*note_r malloc'd, NULL when it has none): why its local
 * path or name is not the plain one. */
int index_folder_note(struct index *ix, int64_t id, char **note_r);
/* Sets or replaces the folder's note. */
int index_folder_set_note(struct index *ix, int64_t id, const char *note);
int index_folder_get(struct index *ix, int64_t id, struct index_folder *r);
/* All folders, or those of user (and account) when non-NULL, ordered by
 * user, account, name. *r is a malloc'd array (index_folder_array_free). */
int index_folder_list(struct index *ix, const char *user, const char *account,
		      struct index_folder **r, size_t *n_r);
/* Records the server state after a successful sync of the folder. */
int index_folder_set_state(struct index *ix, int64_t id, uint32_t uidvalidity,
			   uint32_t uidnext, uint64_t highestmodseq);
/* Records the outcome of a sync attempt: synced_at is updated only when
 * error is NULL; error and held replace the stored values (NULL clears). */
int index_folder_set_result(struct index *ix, int64_t id, int64_t now,
			    const char *error, const char *held);
/* Bumps changed_at (call in the transaction that adds or removes rows). */
int index_folder_touch(struct index *ix, int64_t id, int64_t now);
/* The folder's Maildir moves from old_path to new_path, in one transaction:
 * its path, and the store_file of each of its visible rows under
 * old_path/ (trashed rows keep theirs: their files stay in trash/).
 * -ENOENT unless the folder's path is old_path. *n_r (may be NULL): the
 * rows re-pointed. */
int index_folder_move(struct index *ix, int64_t id, const char *old_path, const char *new_path,
		      size_t *n_r);

/* ---- messages ---- */
enum msg_state {
	MSG_ACTIVE = 0,    /* on the server, visible */
	MSG_TRASHED = 1,   /* vanished upstream, file in trash/ */
	MSG_RESTORED = 2,  /* restored from trash: visible, local only, never trashed by a sync again */
};
#define MSG_VISIBLE_MASK ((1u << MSG_ACTIVE) | (1u << MSG_RESTORED))

struct index_msg {
	int64_t id;          /* row id; set by index_msg_insert */
	int64_t folder_id;
	char *remote_id;     /* owned: IMAP UID in decimal, or POP3 UIDL; NULL once restored */
	char *message_id;    /* owned, may be NULL: Message-ID header without <> */
	int64_t size;        /* exact bytes of the stored file */
	int64_t internal_date;  /* unix time; 0 unknown */
	int64_t date;        /* unix time from the Date header; 0 unknown */
	char *sender;        /* owned, may be NULL: From, decoded, UTF-8 */
	char *recipients;    /* owned, may be NULL: To, decoded, UTF-8 */
	char *subject;       /* owned, may be NULL: decoded, UTF-8 */
	char *flags;         /* owned, may be NULL: IMAP flags, space separated ("\\Seen \\Flagged") */
	char *store_file;    /* owned: file path relative to the store root */
	char *view_name;     /* owned: file name in the mount; never changes */
	enum msg_state state;
	int64_t trashed_at;  /* unix time, 0 if never trashed */
	int64_t trash_sync;  /* syncs.id of the sync that trashed it */
	char *trash_reason;  /* owned, may be NULL */
	int n_parts;         /* part records (cache/parts.h); -1: not analysed yet */
};
void index_msg_release(struct index_msg *m);

/* Inserts m (state, paths and metadata as given) and sets m->id. -EEXIST if
 * (folder, remote_id) is already active, or view_name is taken among the
 * folder's visible messages. Call inside a transaction for batches. */
int index_msg_insert(struct index *ix, struct index_msg *m);
int index_msg_get(struct index *ix, int64_t id, struct index_msg *r);
/* Visible message (active or restored) of folder_id named view_name. */
int index_msg_lookup(struct index *ix, int64_t folder_id, const char *view_name,
		     struct index_msg *r);
/* Calls cb for each message of folder_id whose state is in state_mask (bit
 * 1 << state), ordered by view_name. cb returns 0 to go on, non-zero to stop
 * (that value is returned). The struct passed is valid only during the call. */
typedef int (*index_msg_cb)(void *ctx, const struct index_msg *m);
int index_msg_foreach(struct index *ix, int64_t folder_id, unsigned state_mask,
		      index_msg_cb cb, void *ctx);

/* The remote ids of the folder's MSG_ACTIVE messages: *ids_r is a malloc'd
 * array of malloc'd strings (index_ids_free). */
int index_known_ids(struct index *ix, int64_t folder_id, char ***ids_r, size_t *n_r);
void index_ids_free(char **ids, size_t n);

/* Row id of the active message with remote_id, or -ENOENT. */
int index_msg_find(struct index *ix, int64_t folder_id, const char *remote_id, int64_t *id_r);
/* UIDVALIDITY change: the active row gets a new remote_id, nothing else. */
int index_msg_rekey(struct index *ix, int64_t id, const char *new_remote_id);
int index_msg_set_flags(struct index *ix, int64_t id, const char *flags);
/* Moves the row to MSG_TRASHED with its new store_file (in trash/). */
int index_msg_mark_trashed(struct index *ix, int64_t id, const char *trash_file,
			   int64_t sync_id, const char *reason, int64_t now);
/* Moves a trashed row to MSG_RESTORED with its new store_file; remote_id is
 * cleared so no sync ever trashes it again. */
int index_msg_mark_restored(struct index *ix, int64_t id, const char *store_file);
/* Renames a trashed row, so store_restore can bring it back under a name no
 * visible message of its folder uses (the view name of a visible message
 * never changes). -ENOENT unless the row exists and is MSG_TRASHED. */
int index_msg_set_view_name(struct index *ix, int64_t id, const char *view_name);
/* Re-points a row at the file that now holds it (store_recover, after
 * another Maildir reader renamed the file to change its flags). */
int index_msg_set_store_file(struct index *ix, int64_t id, const char *store_file);
/* Removes a row (purge of an expired trashed message). */
int index_msg_delete(struct index *ix, int64_t id);
/* Trashed messages of user (all users if NULL), oldest first. */
int index_trash_foreach(struct index *ix, const char *user, index_msg_cb cb, void *ctx);

/* ---- sync audit ---- */
/* A row per sync run of an account; trashed rows point at it. */
int index_sync_start(struct index *ix, const char *user, const char *account,
		     int64_t now, int64_t *sync_id_r);
int index_sync_finish(struct index *ix, int64_t sync_id, int64_t now,
		      int64_t n_new, int64_t n_trashed, const char *error);
/* The latest sync run of user/account: its id (may be NULL), when it
 * started and finished (finished 0 while it runs) and its error (*error_r
 * malloc'd, NULL when it succeeded). -ENOENT when the account never synced. */
int index_sync_last(struct index *ix, const char *user, const char *account,
		    int64_t *id_r, int64_t *started_r, int64_t *finished_r, char **error_r);

/* ---- parts (index_parts.c): the records of cache/parts.h ---- */
struct parts_list;
/* Replaces the part records of message msg_id and sets its n_parts to
 * l->n (0: analysed, nothing to show). Call inside the caller's
 * transaction when it is part of a batch. */
int index_parts_put(struct index *ix, int64_t msg_id, const struct parts_list *l);
/* The same for a row inserted in the caller's transaction (no records yet). */
int index_parts_put_new(struct index *ix, int64_t msg_id, const struct parts_list *l);
/* The records of msg_id in n order (out->n may be 0); -ENOENT when the
 * message was never analysed. */
int index_parts_get(struct index *ix, int64_t msg_id, struct parts_list *out);
/* Up to max ids (ascending, > after) of visible messages never analysed. */
int index_parts_pending(struct index *ix, int64_t after, int64_t *ids, size_t max,
			size_t *n_r);
/* The same among the messages of folder folder_id. */
int index_parts_pending_in(struct index *ix, int64_t folder_id, int64_t after, int64_t *ids,
			   size_t max, size_t *n_r);

#endif
