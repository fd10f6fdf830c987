/* index: the message-identifier store and catalog in SQLite (see index.h).
 *
 * Durability: WAL with synchronous=FULL, so a COMMIT that returned is on
 * disk. The store's write order (files fsync'd and renamed before the row
 * commits) only holds if a committed row survives a power cut; NORMAL would
 * let the last transactions vanish after their files were already adopted
 * or trashed, and the cost is one fsync per (batched) commit.
 *
 * Message ids use AUTOINCREMENT: a row id is the inode number in the mount,
 * and an id must never come back for another message after a purge.
 *
 * Statements are prepared once per connection (SQLITE_PREPARE_PERSISTENT)
 * and reset after each use; bound strings are SQLITE_STATIC because every
 * statement is stepped and reset before the caller's strings can go. */
#include "index.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "buf.h"
#include "log.h"

#define SCHEMA_VERSION 2
#define BUSY_TIMEOUT_MS 10000

static const char schema_v1[] =
	"CREATE TABLE folders ("
	" id INTEGER PRIMARY KEY,"
	" user TEXT NOT NULL,"
	" account TEXT NOT NULL,"
	" name TEXT NOT NULL,"
	" path TEXT NOT NULL,"
	" uidvalidity INTEGER NOT NULL DEFAULT 0,"
	" uidnext INTEGER NOT NULL DEFAULT 0,"
	" highestmodseq INTEGER NOT NULL DEFAULT 0,"
	" synced_at INTEGER NOT NULL DEFAULT 0,"
	" changed_at INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT,"
	" held TEXT,"
	" UNIQUE (user, account, name));"
	"CREATE TABLE syncs ("
	" id INTEGER PRIMARY KEY,"
	" user TEXT,"
	" account TEXT,"
	" started_at INTEGER,"
	" finished_at INTEGER,"
	" n_new INTEGER,"
	" n_trashed INTEGER,"
	" error TEXT);"
	"CREATE INDEX syncs_account ON syncs (user, account, id);"
	"CREATE TABLE messages ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" folder_id INTEGER NOT NULL REFERENCES folders(id),"
	" remote_id TEXT,"
	" message_id TEXT,"
	" size INTEGER NOT NULL,"
	" internal_date INTEGER,"
	" date INTEGER,"
	" sender TEXT,"
	" recipients TEXT,"
	" subject TEXT,"
	" flags TEXT,"
	" store_file TEXT NOT NULL,"
	" view_name TEXT NOT NULL,"
	" state INTEGER NOT NULL CHECK (state IN (0, 1, 2)),"
	" trashed_at INTEGER,"
	" trash_sync INTEGER,"
	" trash_reason TEXT);"
	/* Identity of what is on the server, and names in the mount. */
	"CREATE UNIQUE INDEX messages_remote ON messages (folder_id, remote_id) WHERE state = 0;"
	"CREATE UNIQUE INDEX messages_view ON messages (folder_id, view_name) WHERE state IN (0, 2);"
	/* Per-folder counts and state scans; the trash listing by age. */
	"CREATE INDEX messages_folder_state ON messages (folder_id, state);"
	"CREATE INDEX messages_trash ON messages (trashed_at) WHERE state = 1;"
	"PRAGMA user_version = 1;";

/* Version 2 only adds: a reader of a version 1 index (one no writer of this
 * version has opened yet) reads it as one without notes. */
static const char schema_v2[] =
	/* Why a folder's local path or name is not the plain one (two server
	 * folders that would have shared a Maildir). */
	"CREATE TABLE folder_notes ("
	" folder_id INTEGER PRIMARY KEY REFERENCES folders(id),"
	" note TEXT NOT NULL);"
	"PRAGMA user_version = 2;";

enum stmt_id {
	ST_BEGIN, ST_BEGIN_RO, ST_COMMIT, ST_ROLLBACK,
	ST_FOLDER_INSERT, ST_FOLDER_BY_KEY, ST_FOLDER_BY_ID, ST_FOLDER_LIST,
	ST_FOLDER_SET_STATE, ST_FOLDER_SET_RESULT, ST_FOLDER_TOUCH, ST_FOLDER_MOVE, ST_MSG_MOVE,
	ST_FOLDER_BY_PATH, ST_NOTE_GET, ST_NOTE_SET,
	ST_MSG_INSERT, ST_MSG_GET, ST_MSG_LOOKUP, ST_MSG_EACH_VISIBLE, ST_MSG_EACH_MASK,
	ST_KNOWN_IDS, ST_MSG_FIND, ST_MSG_REKEY, ST_MSG_SET_FLAGS, ST_MSG_TRASH,
	ST_MSG_RESTORE, ST_MSG_SET_VIEW, ST_MSG_SET_FILE, ST_MSG_DELETE, ST_TRASH_LIST,
	ST_SYNC_START, ST_SYNC_FINISH, ST_SYNC_LAST,
	ST_COUNT
};

#define FOLDER_COLS \
	"f.id, f.user, f.account, f.name, f.path, f.uidvalidity, f.uidnext, " \
	"f.highestmodseq, f.synced_at, f.changed_at, f.last_error, f.held, " \
	"(SELECT count(*) FROM messages m WHERE m.folder_id = f.id AND m.state IN (0, 2)), " \
	"(SELECT count(*) FROM messages m WHERE m.folder_id = f.id AND m.state = 1)"

#define MSG_COLS \
	"m.id, m.folder_id, m.remote_id, m.message_id, m.size, m.internal_date, " \
	"m.date, m.sender, m.recipients, m.subject, m.flags, m.store_file, " \
	"m.view_name, m.state, m.trashed_at, m.trash_sync, m.trash_reason"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_BEGIN_RO] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_FOLDER_INSERT] =
		"INSERT INTO folders (user, account, name, path) VALUES (?1, ?2, ?3, ?4)"
		" ON CONFLICT (user, account, name) DO NOTHING",
	[ST_FOLDER_BY_KEY] = "SELECT " FOLDER_COLS " FROM folders f"
		" WHERE f.user = ?1 AND f.account = ?2 AND f.name = ?3",
	[ST_FOLDER_BY_ID] = "SELECT " FOLDER_COLS " FROM folders f WHERE f.id = ?1",
	/* One statement for the whole list: the counts are correlated
	 * subqueries answered from messages_folder_state. */
	[ST_FOLDER_LIST] = "SELECT " FOLDER_COLS " FROM folders f"
		" WHERE (?1 IS NULL OR f.user = ?1) AND (?2 IS NULL OR f.account = ?2)"
		" ORDER BY f.user, f.account, f.name",
	[ST_FOLDER_SET_STATE] =
		"UPDATE folders SET uidvalidity = ?2, uidnext = ?3, highestmodseq = ?4 WHERE id = ?1",
	[ST_FOLDER_SET_RESULT] =
		"UPDATE folders SET synced_at = CASE WHEN ?3 IS NULL THEN ?2 ELSE synced_at END,"
		" last_error = ?3, held = ?4 WHERE id = ?1",
	[ST_FOLDER_TOUCH] = "UPDATE folders SET changed_at = ?2 WHERE id = ?1",
	[ST_FOLDER_MOVE] = "UPDATE folders SET path = ?3 WHERE id = ?1 AND path = ?2",
	[ST_FOLDER_BY_PATH] = "SELECT " FOLDER_COLS " FROM folders f WHERE f.path = ?1 LIMIT 1",
	[ST_NOTE_GET] = "SELECT note FROM folder_notes WHERE folder_id = ?1",
	[ST_NOTE_SET] = "INSERT INTO folder_notes (folder_id, note) VALUES (?1, ?2)"
		" ON CONFLICT (folder_id) DO UPDATE SET note = excluded.note",
	/* Byte-wise (blobs), so the prefix test does not depend on how SQLite
	 * counts characters. */
	[ST_MSG_MOVE] =
		"UPDATE messages SET store_file = CAST(CAST(?3 AS BLOB) || '/' ||"
		" substr(CAST(store_file AS BLOB), length(CAST(?2 AS BLOB)) + 2) AS TEXT)"
		" WHERE folder_id = ?1 AND state IN (0, 2) AND"
		" substr(CAST(store_file AS BLOB), 1, length(CAST(?2 AS BLOB)) + 1) ="
		" CAST(?2 || '/' AS BLOB)",
	[ST_MSG_INSERT] =
		"INSERT INTO messages (folder_id, remote_id, message_id, size, internal_date,"
		" date, sender, recipients, subject, flags, store_file, view_name, state,"
		" trashed_at, trash_sync, trash_reason)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
	[ST_MSG_GET] = "SELECT " MSG_COLS " FROM messages m WHERE m.id = ?1",
	/* "state IN (0, 2)" verbatim, so the partial index messages_view serves it. */
	[ST_MSG_LOOKUP] = "SELECT " MSG_COLS " FROM messages m"
		" WHERE m.folder_id = ?1 AND m.view_name = ?2 AND m.state IN (0, 2)",
	[ST_MSG_EACH_VISIBLE] = "SELECT " MSG_COLS " FROM messages m"
		" WHERE m.folder_id = ?1 AND m.state IN (0, 2) ORDER BY m.view_name",
	[ST_MSG_EACH_MASK] = "SELECT " MSG_COLS " FROM messages m"
		" WHERE m.folder_id = ?1 AND ((1 << m.state) & ?2) != 0 ORDER BY m.view_name",
	[ST_KNOWN_IDS] = "SELECT m.remote_id FROM messages m"
		" WHERE m.folder_id = ?1 AND m.state = 0 AND m.remote_id IS NOT NULL",
	[ST_MSG_FIND] = "SELECT m.id FROM messages m"
		" WHERE m.folder_id = ?1 AND m.remote_id = ?2 AND m.state = 0",
	[ST_MSG_REKEY] = "UPDATE messages SET remote_id = ?2 WHERE id = ?1 AND state = 0",
	[ST_MSG_SET_FLAGS] = "UPDATE messages SET flags = ?2 WHERE id = ?1",
	[ST_MSG_TRASH] =
		"UPDATE messages SET state = 1, store_file = ?2, trash_sync = ?3,"
		" trash_reason = ?4, trashed_at = ?5 WHERE id = ?1 AND state IN (0, 2)",
	[ST_MSG_RESTORE] =
		"UPDATE messages SET state = 2, store_file = ?2, remote_id = NULL"
		" WHERE id = ?1 AND state = 1",
	[ST_MSG_SET_VIEW] = "UPDATE messages SET view_name = ?2 WHERE id = ?1 AND state = 1",
	[ST_MSG_SET_FILE] = "UPDATE messages SET store_file = ?2 WHERE id = ?1",
	[ST_MSG_DELETE] = "DELETE FROM messages WHERE id = ?1",
	[ST_TRASH_LIST] = "SELECT " MSG_COLS " FROM messages m JOIN folders f ON f.id = m.folder_id"
		" WHERE m.state = 1 AND (?1 IS NULL OR f.user = ?1) ORDER BY m.trashed_at, m.id",
	[ST_SYNC_START] = "INSERT INTO syncs (user, account, started_at) VALUES (?1, ?2, ?3)",
	[ST_SYNC_FINISH] =
		"UPDATE syncs SET finished_at = ?2, n_new = ?3, n_trashed = ?4, error = ?5 WHERE id = ?1",
	[ST_SYNC_LAST] = "SELECT started_at, finished_at, error, id FROM syncs"
		" WHERE user = ?1 AND account = ?2 ORDER BY id DESC LIMIT 1",
};

struct index {
	sqlite3 *db;                    /* owned */
	char *path;                     /* owned: for log lines */
	bool readonly;
	int depth;                      /* index_begin nesting */
	bool doomed;                    /* rolled back at an inner depth: the outermost end rolls back */
	int version;                    /* schema version (a reader may see 1) */
	sqlite3_stmt *stmts[ST_COUNT];  /* owned, prepared on first use */
};

static int sqlite_errno(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return -EEXIST;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return -ENOENT;
	}
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT: return -EINVAL;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_READONLY: return -EROFS;
	case SQLITE_FULL: return -ENOSPC;
	}
	return -EIO;
}

/* Logs a failed step of st (before it is reset, which keeps the message). */
static int ix_fail(struct index *ix, sqlite3_stmt *st, int rc)
{
	int err = sqlite_errno(rc);

	if (err == -EEXIST)
		log_debug("%s: %s: %s", ix->path, sqlite3_sql(st), sqlite3_errmsg(ix->db));
	else
		log_error("%s: %s: %s", ix->path, sqlite3_sql(st), sqlite3_errmsg(ix->db));
	return err;
}

static void st_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static int st_prepare(struct index *ix, enum stmt_id id, sqlite3_stmt **st_r, unsigned flags)
{
	int rc = sqlite3_prepare_v3(ix->db, stmt_sql[id], -1, flags, st_r, NULL);

	if (rc != SQLITE_OK) {
		log_error("%s: preparing %s: %s", ix->path, stmt_sql[id], sqlite3_errmsg(ix->db));
		*st_r = NULL;
		return sqlite_errno(rc);
	}
	return 0;
}

/* The cached statement id. Inside a transaction that was rolled back at an
 * inner depth (or by SQLite itself after an I/O error) nothing more runs
 * until the outermost end: running it would autocommit on its own. */
static int st_get(struct index *ix, enum stmt_id id, sqlite3_stmt **st_r)
{
	if (ix->depth > 0 && id != ST_COMMIT && id != ST_ROLLBACK &&
	    (ix->doomed || sqlite3_get_autocommit(ix->db))) {
		ix->doomed = true;
		return -ECANCELED;
	}
	if (!ix->stmts[id]) {
		int rc = st_prepare(ix, id, &ix->stmts[id], SQLITE_PREPARE_PERSISTENT);

		if (rc)
			return rc;
	}
	*st_r = ix->stmts[id];
	return 0;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
	return sqlite3_bind_int64(st, i, v);
}

/* 0 means "none" for these columns, stored as NULL. */
static int bind_opt(sqlite3_stmt *st, int i, int64_t v)
{
	return v ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
}

/* Steps a statement that returns no rows we need, then resets it. *changes_r
 * (if not NULL) gets the number of rows it changed. */
static int st_run(struct index *ix, sqlite3_stmt *st, int bind_rc, int *changes_r)
{
	int rc = bind_rc;

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE || rc == SQLITE_ROW)
			rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK) {
		rc = ix_fail(ix, st, rc);
		st_done(st);
		return rc;
	}
	if (changes_r)
		*changes_r = sqlite3_changes(ix->db);
	st_done(st);
	return 0;
}

static int ix_exec(struct index *ix, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(ix->db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		log_error("%s: %s: %s", ix->path, sql, err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return sqlite_errno(rc);
	}
	return 0;
}

/* WAL is what lets FUSE readers run beside the sync writer; a file system
 * that cannot share memory maps refuses it and SQLite falls back quietly. */
static int check_wal(void *ctx, int n, char **vals, char **cols)
{
	struct index *ix = ctx;

	(void)cols;
	if (n < 1 || !vals[0] || strcmp(vals[0], "wal") != 0)
		log_warn("%s: journal mode is %s, not wal: readers will block the writer",
			 ix->path, n > 0 && vals[0] ? vals[0] : "unknown");
	return 0;
}

static int user_version(struct index *ix, int *v_r)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(ix->db, "PRAGMA user_version", -1, &st, NULL);

	if (rc != SQLITE_OK) {
		log_error("%s: PRAGMA user_version: %s", ix->path, sqlite3_errmsg(ix->db));
		return sqlite_errno(rc);
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*v_r = sqlite3_column_int(st, 0);
		rc = 0;
	} else {
		rc = ix_fail(ix, st, rc);
	}
	sqlite3_finalize(st);
	return rc;
}

static int migrate(struct index *ix)
{
	int v = 0, rc;

	/* IMMEDIATE: two writers opening a new store create the schema once. */
	rc = ix_exec(ix, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	rc = user_version(ix, &v);
	if (rc == 0 && v == 0)
		rc = ix_exec(ix, schema_v1);
	if (rc == 0 && v < 2)
		rc = ix_exec(ix, schema_v2);
	if (rc == 0 && v > SCHEMA_VERSION) {
		log_error("%s: schema version %d is newer than this maildisk knows (%d)",
			  ix->path, v, SCHEMA_VERSION);
		rc = -EPROTO;
	}
	if (rc == 0)
		rc = ix_exec(ix, "COMMIT");
	if (rc)
		sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int index_open(const char *db_path, bool readonly, struct index **r)
{
	struct index *ix;
	int rc, v = 0;

	*r = NULL;
	ix = calloc(1, sizeof *ix);
	if (!ix)
		return -ENOMEM;
	ix->readonly = readonly;
	ix->path = strdup(db_path);
	if (!ix->path) {
		free(ix);
		return -ENOMEM;
	}
	if (!readonly) {
		/* SQLite would create it 0644; its -wal and -shm copy this mode. */
		int fd = open(db_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

		if (fd < 0) {
			rc = -errno;
			log_error("open(%s): %m", db_path);
			goto fail;
		}
		close(fd);
	} else if (access(db_path, F_OK) != 0) {
		rc = -errno;
		log_error("%s: %m", db_path);
		goto fail;
	}
	rc = sqlite3_open_v2(db_path, &ix->db,
			     (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) |
			     SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		log_error("%s: cannot open: %s", db_path,
			  ix->db ? sqlite3_errmsg(ix->db) : sqlite3_errstr(rc));
		rc = sqlite_errno(rc);
		goto fail;
	}
	sqlite3_extended_result_codes(ix->db, 1);
	sqlite3_busy_timeout(ix->db, BUSY_TIMEOUT_MS);
	rc = ix_exec(ix, "PRAGMA foreign_keys = ON");
	if (rc)
		goto fail;
	if (!readonly) {
		char *err = NULL;

		rc = sqlite3_exec(ix->db, "PRAGMA journal_mode = WAL", check_wal, ix, &err);
		if (rc != SQLITE_OK) {
			log_error("%s: PRAGMA journal_mode = WAL: %s", db_path,
				  err ? err : sqlite3_errstr(rc));
			sqlite3_free(err);
			rc = sqlite_errno(rc);
		}
		if (rc == 0)
			rc = ix_exec(ix, "PRAGMA synchronous = FULL");
		if (rc == 0)
			rc = migrate(ix);
		if (rc)
			goto fail;
	}
	rc = user_version(ix, &v);
	if (rc)
		goto fail;
	/* A reader may find version 1 (see schema_v2). */
	if (v != SCHEMA_VERSION && !(readonly && v == 1)) {
		log_error("%s: schema version %d, this maildisk reads version %d", db_path, v,
			  SCHEMA_VERSION);
		rc = -EPROTO;
		goto fail;
	}
	ix->version = v;
	*r = ix;
	return 0;
fail:
	index_close(&ix);
	return rc;
}

void index_close(struct index **ixp)
{
	struct index *ix = ixp ? *ixp : NULL;

	if (!ix)
		return;
	if (ix->depth > 0 && ix->db) {
		log_warn("%s: closing inside a transaction, rolling it back", ix->path);
		sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
	}
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(ix->stmts[i]);
	if (ix->db && sqlite3_close(ix->db) != SQLITE_OK)
		log_error("%s: close: %s", ix->path, sqlite3_errmsg(ix->db));
	free(ix->path);
	free(ix);
	*ixp = NULL;
}

/* ---- transactions ---- */

static int run_simple(struct index *ix, enum stmt_id id)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, id, &st);

	return rc ? rc : st_run(ix, st, SQLITE_OK, NULL);
}

int index_begin(struct index *ix)
{
	int rc;

	if (ix->depth > 0) {
		ix->depth++;
		return 0;
	}
	rc = run_simple(ix, ix->readonly ? ST_BEGIN_RO : ST_BEGIN);
	if (rc == 0) {
		ix->depth = 1;
		ix->doomed = false;
	}
	return rc;
}

static void rollback_now(struct index *ix)
{
	ix->depth = 0;
	ix->doomed = false;
	if (!sqlite3_get_autocommit(ix->db))
		run_simple(ix, ST_ROLLBACK);
}

int index_commit(struct index *ix)
{
	int rc;

	if (ix->depth == 0) {
		log_error("%s: commit without a transaction", ix->path);
		return -EINVAL;
	}
	if (ix->depth > 1) {
		ix->depth--;
		return ix->doomed ? -ECANCELED : 0;
	}
	if (ix->doomed) {
		rollback_now(ix);
		return -ECANCELED;
	}
	if (sqlite3_get_autocommit(ix->db)) {
		/* SQLite already rolled back (I/O error, disk full); logged there. */
		rollback_now(ix);
		return -EIO;
	}
	rc = run_simple(ix, ST_COMMIT);
	if (rc)
		rollback_now(ix);
	ix->depth = 0;
	return rc;
}

void index_rollback(struct index *ix)
{
	if (ix->depth == 0)
		return;
	if (ix->depth > 1) {
		ix->depth--;
		ix->doomed = true;
		return;
	}
	rollback_now(ix);
}

int index_end(struct index *ix, int rc)
{
	if (rc == 0)
		return index_commit(ix);
	index_rollback(ix);
	return rc;
}

/* ---- rows to structs ---- */

static char *col_dup(sqlite3_stmt *st, int i, bool *oom)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	char *s;

	if (!t)
		return NULL;
	s = strdup((const char *)t);
	if (!s)
		*oom = true;
	return s;
}

void index_folder_release(struct index_folder *f)
{
	if (!f)
		return;
	free(f->user);
	free(f->account);
	free(f->name);
	free(f->path);
	free(f->last_error);
	free(f->held);
	memset(f, 0, sizeof *f);
}

void index_folder_array_free(struct index_folder **fs, size_t n)
{
	if (!fs || !*fs)
		return;
	for (size_t i = 0; i < n; i++)
		index_folder_release(&(*fs)[i]);
	free(*fs);
	*fs = NULL;
}

static int folder_from_row(sqlite3_stmt *st, struct index_folder *f)
{
	bool oom = false;

	memset(f, 0, sizeof *f);
	f->id = sqlite3_column_int64(st, 0);
	f->user = col_dup(st, 1, &oom);
	f->account = col_dup(st, 2, &oom);
	f->name = col_dup(st, 3, &oom);
	f->path = col_dup(st, 4, &oom);
	f->uidvalidity = (uint32_t)sqlite3_column_int64(st, 5);
	f->uidnext = (uint32_t)sqlite3_column_int64(st, 6);
	f->highestmodseq = (uint64_t)sqlite3_column_int64(st, 7);
	f->synced_at = sqlite3_column_int64(st, 8);
	f->changed_at = sqlite3_column_int64(st, 9);
	f->last_error = col_dup(st, 10, &oom);
	f->held = col_dup(st, 11, &oom);
	f->n_active = sqlite3_column_int64(st, 12);
	f->n_trashed = sqlite3_column_int64(st, 13);
	if (oom) {
		index_folder_release(f);
		return -ENOMEM;
	}
	return 0;
}

void index_msg_release(struct index_msg *m)
{
	if (!m)
		return;
	free(m->remote_id);
	free(m->message_id);
	free(m->sender);
	free(m->recipients);
	free(m->subject);
	free(m->flags);
	free(m->store_file);
	free(m->view_name);
	free(m->trash_reason);
	memset(m, 0, sizeof *m);
}

/* copy false: the strings point into the statement's row, valid until the
 * next step (index_msg_foreach's callbacks). */
static int msg_from_row(sqlite3_stmt *st, struct index_msg *m, bool copy)
{
	bool oom = false;
	char **strs[] = { &m->remote_id, &m->message_id, NULL, NULL, NULL, &m->sender,
			  &m->recipients, &m->subject, &m->flags, &m->store_file, &m->view_name };

	memset(m, 0, sizeof *m);
	m->id = sqlite3_column_int64(st, 0);
	m->folder_id = sqlite3_column_int64(st, 1);
	for (int i = 0; i < (int)(sizeof strs / sizeof strs[0]); i++) {
		if (!strs[i])
			continue;
		*strs[i] = copy ? col_dup(st, i + 2, &oom)
				: (char *)sqlite3_column_text(st, i + 2);
	}
	m->size = sqlite3_column_int64(st, 4);
	m->internal_date = sqlite3_column_int64(st, 5);
	m->date = sqlite3_column_int64(st, 6);
	m->state = (enum msg_state)sqlite3_column_int(st, 13);
	m->trashed_at = sqlite3_column_int64(st, 14);
	m->trash_sync = sqlite3_column_int64(st, 15);
	m->trash_reason = copy ? col_dup(st, 16, &oom) : (char *)sqlite3_column_text(st, 16);
	if (oom) {
		index_msg_release(m);
		return -ENOMEM;
	}
	return 0;
}

/* Steps st for at most one row; fills *f or *m from it. -ENOENT if none. */
static int one_row(struct index *ix, sqlite3_stmt *st, int bind_rc,
		   struct index_folder *f, struct index_msg *m)
{
	int rc = bind_rc;

	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = f ? folder_from_row(st, f) : msg_from_row(st, m, true);
	else if (rc == SQLITE_DONE)
		rc = -ENOENT;
	else
		rc = ix_fail(ix, st, rc);
	st_done(st);
	return rc;
}

/* ---- folders ---- */

static int folder_by_key(struct index *ix, const char *user, const char *account,
			 const char *name, struct index_folder *r)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, ST_FOLDER_BY_KEY, &st);

	return rc ? rc : one_row(ix, st, bind_text(st, 1, user) || bind_text(st, 2, account) ||
						 bind_text(st, 3, name), r, NULL);
}

/* The folder stored at path, or -ENOENT. */
static int folder_by_path(struct index *ix, const char *path, struct index_folder *r)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, ST_FOLDER_BY_PATH, &st);

	memset(r, 0, sizeof *r);
	return rc ? rc : one_row(ix, st, bind_text(st, 1, path), r, NULL);
}

int index_folder_unique_path(struct index *ix, const char *path, char **r)
{
	const char *slash = strrchr(path, '/');
	size_t last = strlen(slash ? slash + 1 : path);

	*r = NULL;
	for (int n = 2; n < 10000; n++) {
		struct index_folder other;
		char *p;
		int rc;

		if (asprintf(&p, "%s (%d)", path, n) < 0)
			return -ENOMEM;
		if (last + strlen(p) - strlen(path) > 255) {
			free(p);
			return -ENAMETOOLONG;
		}
		rc = folder_by_path(ix, p, &other);
		index_folder_release(&other);
		if (rc == -ENOENT) {
			*r = p;
			return 0;
		}
		free(p);
		if (rc)
			return rc;
	}
	return -EEXIST;
}

/* Inserts the folder at path, or, when another folder has that path, at a
 * unique variant of it, with a note saying why. */
static int folder_insert(struct index *ix, const char *user, const char *account,
			 const char *name, const char *path)
{
	struct index_folder other, f = { 0 };
	char *alt = NULL, *note = NULL;
	sqlite3_stmt *st;
	int rc = folder_by_path(ix, path, &other);

	if (rc == 0) {
		rc = index_folder_unique_path(ix, path, &alt);
		if (rc == 0 && asprintf(&note, "stored as %s: its own path %s is folder \"%s\"'s",
					alt, path, other.name) < 0)
			rc = -ENOMEM;
		if (rc == 0)
			log_warn("%s/%s %s: the local path %s is folder \"%s\"'s; storing it at %s",
				 user, account, name, path, other.name, alt);
	} else if (rc == -ENOENT) {
		rc = 0;
	}
	index_folder_release(&other);
	if (rc == 0)
		rc = st_get(ix, ST_FOLDER_INSERT, &st);
	if (rc == 0)
		rc = st_run(ix, st,
			    bind_text(st, 1, user) || bind_text(st, 2, account) ||
			    bind_text(st, 3, name) || bind_text(st, 4, alt ? alt : path), NULL);
	if (rc == 0 && note) {
		rc = folder_by_key(ix, user, account, name, &f);
		if (rc == 0)
			rc = index_folder_set_note(ix, f.id, note);
		index_folder_release(&f);
	}
	free(alt);
	free(note);
	return rc;
}

int index_folder_ensure(struct index *ix, const char *user, const char *account,
			const char *name, const char *path, struct index_folder *r)
{
	int rc;

	memset(r, 0, sizeof *r);
	if (!user || !account || !name || !path)
		return -EINVAL;
	rc = folder_by_key(ix, user, account, name, r);
	if (rc != -ENOENT)
		return rc;
	/* One transaction: the path test and the insert see the same folders. */
	rc = index_begin(ix);
	if (rc == 0)
		rc = folder_insert(ix, user, account, name, path);
	rc = index_end(ix, rc);
	return rc ? rc : folder_by_key(ix, user, account, name, r);
}

int index_folder_note(struct index *ix, int64_t id, char **note_r)
{
	sqlite3_stmt *st;
	int rc;

	*note_r = NULL;
	if (ix->version < 2)
		return 0;
	rc = st_get(ix, ST_NOTE_GET, &st);
	if (rc)
		return rc;
	rc = bind_i64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);

		rc = 0;
		if (t && !(*note_r = strdup((const char *)t)))
			rc = -ENOMEM;
	} else if (rc == SQLITE_DONE) {
		rc = 0;
	} else {
		rc = ix_fail(ix, st, rc);
	}
	st_done(st);
	return rc;
}

int index_folder_set_note(struct index *ix, int64_t id, const char *note)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, ST_NOTE_SET, &st);

	return rc ? rc : st_run(ix, st, bind_i64(st, 1, id) || bind_text(st, 2, note), NULL);
}

int index_folder_get(struct index *ix, int64_t id, struct index_folder *r)
{
	sqlite3_stmt *st;
	int rc;

	memset(r, 0, sizeof *r);
	rc = st_get(ix, ST_FOLDER_BY_ID, &st);
	return rc ? rc : one_row(ix, st, bind_i64(st, 1, id), r, NULL);
}

int index_folder_list(struct index *ix, const char *user, const char *account,
		      struct index_folder **r, size_t *n_r)
{
	struct index_folder *fs = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st;
	int rc;

	*r = NULL;
	*n_r = 0;
	rc = st_get(ix, ST_FOLDER_LIST, &st);
	if (rc)
		return rc;
	rc = bind_text(st, 1, user) || bind_text(st, 2, account);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = buf_array_grow(&fs, &cap, n, sizeof *fs, 8);
		if (rc)
			break;
		rc = folder_from_row(st, &fs[n]);
		if (rc)
			break;
		n++;
	}
	if (rc == SQLITE_DONE)
		rc = 0;
	else if (rc > 0)
		rc = ix_fail(ix, st, rc);
	st_done(st);
	if (rc) {
		index_folder_array_free(&fs, n);
		return rc;
	}
	*r = fs;
	*n_r = n;
	return 0;
}

/* Runs an UPDATE/DELETE keyed by row id; -ENOENT when it matched nothing. */
static int update_one(struct index *ix, sqlite3_stmt *st, int bind_rc)
{
	int changes = 0;
	int rc = st_run(ix, st, bind_rc, &changes);

	if (rc == 0 && changes == 0)
		rc = -ENOENT;
	return rc;
}

int index_folder_set_state(struct index *ix, int64_t id, uint32_t uidvalidity,
			   uint32_t uidnext, uint64_t highestmodseq)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, ST_FOLDER_SET_STATE, &st);

	return rc ? rc : update_one(ix, st,
				    bind_i64(st, 1, id) || bind_i64(st, 2, uidvalidity) ||
				    bind_i64(st, 3, uidnext) ||
				    bind_i64(st, 4, (int64_t)highestmodseq));
}

int index_folder_set_result(struct index *ix, int64_t id, int64_t now,
			    const char *error, const char *held)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, ST_FOLDER_SET_RESULT, &st);

	return rc ? rc : update_one(ix, st,
				    bind_i64(st, 1, id) || bind_i64(st, 2, now) ||
				    bind_text(st, 3, error) || bind_text(st, 4, held));
}

int index_folder_touch(struct index *ix, int64_t id, int64_t now)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, ST_FOLDER_TOUCH, &st);

	return rc ? rc : update_one(ix, st, bind_i64(st, 1, id) || bind_i64(st, 2, now));
}

int index_folder_move(struct index *ix, int64_t id, const char *old_path, const char *new_path,
		      size_t *n_r)
{
	sqlite3_stmt *st;
	int changes = 0, rc;

	if (!old_path || !new_path)
		return -EINVAL;
	rc = index_begin(ix);
	if (rc)
		return rc;
	rc = st_get(ix, ST_FOLDER_MOVE, &st);
	if (rc == 0)
		rc = update_one(ix, st, bind_i64(st, 1, id) || bind_text(st, 2, old_path) ||
					bind_text(st, 3, new_path));
	if (rc == 0)
		rc = st_get(ix, ST_MSG_MOVE, &st);
	if (rc == 0)
		rc = st_run(ix, st, bind_i64(st, 1, id) || bind_text(st, 2, old_path) ||
				    bind_text(st, 3, new_path), &changes);
	if (rc) {
		index_rollback(ix);
		return rc;
	}
	if (n_r)
		*n_r = (size_t)changes;
	return index_commit(ix);
}

/* ---- messages ---- */

int index_msg_insert(struct index *ix, struct index_msg *m)
{
	sqlite3_stmt *st;
	int rc;

	if (!m->store_file || !m->view_name)
		return -EINVAL;
	rc = st_get(ix, ST_MSG_INSERT, &st);
	if (rc)
		return rc;
	rc = st_run(ix, st,
		    bind_i64(st, 1, m->folder_id) || bind_text(st, 2, m->remote_id) ||
		    bind_text(st, 3, m->message_id) || bind_i64(st, 4, m->size) ||
		    bind_i64(st, 5, m->internal_date) || bind_i64(st, 6, m->date) ||
		    bind_text(st, 7, m->sender) || bind_text(st, 8, m->recipients) ||
		    bind_text(st, 9, m->subject) || bind_text(st, 10, m->flags) ||
		    bind_text(st, 11, m->store_file) || bind_text(st, 12, m->view_name) ||
		    bind_i64(st, 13, m->state) || bind_opt(st, 14, m->trashed_at) ||
		    bind_opt(st, 15, m->trash_sync) || bind_text(st, 16, m->trash_reason),
		    NULL);
	if (rc == 0)
		m->id = sqlite3_last_insert_rowid(ix->db);
	return rc;
}

int index_msg_get(struct index *ix, int64_t id, struct index_msg *r)
{
	sqlite3_stmt *st;
	int rc;

	memset(r, 0, sizeof *r);
	rc = st_get(ix, ST_MSG_GET, &st);
	return rc ? rc : one_row(ix, st, bind_i64(st, 1, id), NULL, r);
}

int index_msg_lookup(struct index *ix, int64_t folder_id, const char *view_name,
		     struct index_msg *r)
{
	sqlite3_stmt *st;
	int rc;

	memset(r, 0, sizeof *r);
	if (!view_name)
		return -EINVAL;
	rc = st_get(ix, ST_MSG_LOOKUP, &st);
	return rc ? rc : one_row(ix, st, bind_i64(st, 1, folder_id) ||
				 bind_text(st, 2, view_name), NULL, r);
}

/* A statement for a row loop. A callback may start another loop on the same
 * connection (nested foreach); the cached statement is then still running,
 * so that loop gets its own, finalized by loop_end. */
static int loop_begin(struct index *ix, enum stmt_id id, sqlite3_stmt **st_r, bool *own_r)
{
	int rc = st_get(ix, id, st_r);

	*own_r = false;
	if (rc == 0 && sqlite3_stmt_busy(*st_r)) {
		*own_r = true;
		rc = st_prepare(ix, id, st_r, 0);
	}
	return rc;
}

static void loop_end(sqlite3_stmt *st, bool own)
{
	if (own)
		sqlite3_finalize(st);
	else
		st_done(st);
}

static int each_row(struct index *ix, sqlite3_stmt *st, int bind_rc, index_msg_cb cb, void *ctx)
{
	int rc = bind_rc, r = 0;

	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct index_msg m;

		rc = SQLITE_OK;
		msg_from_row(st, &m, false);
		r = cb(ctx, &m);
		if (r)
			return r;
	}
	if (rc != SQLITE_DONE)
		return ix_fail(ix, st, rc);
	return 0;
}

int index_msg_foreach(struct index *ix, int64_t folder_id, unsigned state_mask,
		      index_msg_cb cb, void *ctx)
{
	bool visible = (state_mask & 7u) == MSG_VISIBLE_MASK, own;
	sqlite3_stmt *st;
	int rc;

	if ((state_mask & 7u) == 0)
		return 0;
	rc = loop_begin(ix, visible ? ST_MSG_EACH_VISIBLE : ST_MSG_EACH_MASK, &st, &own);
	if (rc)
		return rc;
	rc = each_row(ix, st,
		      bind_i64(st, 1, folder_id) ||
		      (visible ? SQLITE_OK : bind_i64(st, 2, state_mask & 7u)), cb, ctx);
	loop_end(st, own);
	return rc;
}

int index_trash_foreach(struct index *ix, const char *user, index_msg_cb cb, void *ctx)
{
	sqlite3_stmt *st;
	bool own;
	int rc = loop_begin(ix, ST_TRASH_LIST, &st, &own);

	if (rc)
		return rc;
	rc = each_row(ix, st, bind_text(st, 1, user), cb, ctx);
	loop_end(st, own);
	return rc;
}

void index_ids_free(char **ids, size_t n)
{
	if (!ids)
		return;
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

int index_known_ids(struct index *ix, int64_t folder_id, char ***ids_r, size_t *n_r)
{
	char **ids = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st;
	int rc;

	*ids_r = NULL;
	*n_r = 0;
	rc = st_get(ix, ST_KNOWN_IDS, &st);
	if (rc)
		return rc;
	rc = bind_i64(st, 1, folder_id);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = buf_array_grow(&ids, &cap, n, sizeof *ids, 64);
		if (rc)
			break;
		ids[n] = strdup((const char *)sqlite3_column_text(st, 0));
		if (!ids[n]) {
			rc = -ENOMEM;
			break;
		}
		n++;
		rc = SQLITE_OK;
	}
	if (rc == SQLITE_DONE)
		rc = 0;
	else if (rc > 0)
		rc = ix_fail(ix, st, rc);
	st_done(st);
	if (rc) {
		index_ids_free(ids, n);
		return rc;
	}
	*ids_r = ids;
	*n_r = n;
	return 0;
}

int index_msg_find(struct index *ix, int64_t folder_id, const char *remote_id, int64_t *id_r)
{
	sqlite3_stmt *st;
	int rc;

	if (!remote_id)
		return -EINVAL;
	rc = st_get(ix, ST_MSG_FIND, &st);
	if (rc)
		return rc;
	rc = bind_i64(st, 1, folder_id) || bind_text(st, 2, remote_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id_r = sqlite3_column_int64(st, 0);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		rc = ix_fail(ix, st, rc);
	}
	st_done(st);
	return rc;
}

int index_msg_rekey(struct index *ix, int64_t id, const char *new_remote_id)
{
	sqlite3_stmt *st;
	int rc;

	if (!new_remote_id)
		return -EINVAL;
	rc = st_get(ix, ST_MSG_REKEY, &st);
	return rc ? rc : update_one(ix, st, bind_i64(st, 1, id) || bind_text(st, 2, new_remote_id));
}

int index_msg_set_flags(struct index *ix, int64_t id, const char *flags)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, ST_MSG_SET_FLAGS, &st);

	return rc ? rc : update_one(ix, st, bind_i64(st, 1, id) || bind_text(st, 2, flags));
}

int index_msg_mark_trashed(struct index *ix, int64_t id, const char *trash_file,
			   int64_t sync_id, const char *reason, int64_t now)
{
	sqlite3_stmt *st;
	int rc;

	if (!trash_file)
		return -EINVAL;
	rc = st_get(ix, ST_MSG_TRASH, &st);
	return rc ? rc : update_one(ix, st,
				    bind_i64(st, 1, id) || bind_text(st, 2, trash_file) ||
				    bind_opt(st, 3, sync_id) || bind_text(st, 4, reason) ||
				    bind_i64(st, 5, now));
}

/* UPDATE messages SET <column> = ?2 WHERE id = ?1 for a required text. */
static int update_text(struct index *ix, enum stmt_id which, int64_t id, const char *v)
{
	sqlite3_stmt *st;
	int rc;

	if (!v)
		return -EINVAL;
	rc = st_get(ix, which, &st);
	return rc ? rc : update_one(ix, st, bind_i64(st, 1, id) || bind_text(st, 2, v));
}

int index_msg_mark_restored(struct index *ix, int64_t id, const char *store_file)
{
	return update_text(ix, ST_MSG_RESTORE, id, store_file);
}

int index_msg_set_view_name(struct index *ix, int64_t id, const char *view_name)
{
	return update_text(ix, ST_MSG_SET_VIEW, id, view_name);
}

int index_msg_set_store_file(struct index *ix, int64_t id, const char *store_file)
{
	return update_text(ix, ST_MSG_SET_FILE, id, store_file);
}

int index_msg_delete(struct index *ix, int64_t id)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, ST_MSG_DELETE, &st);

	return rc ? rc : update_one(ix, st, bind_i64(st, 1, id));
}

/* ---- sync audit ---- */

int index_sync_start(struct index *ix, const char *user, const char *account,
		     int64_t now, int64_t *sync_id_r)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, ST_SYNC_START, &st);

	if (rc == 0)
		rc = st_run(ix, st, bind_text(st, 1, user) || bind_text(st, 2, account) ||
			    bind_i64(st, 3, now), NULL);
	if (rc == 0)
		*sync_id_r = sqlite3_last_insert_rowid(ix->db);
	return rc;
}

int index_sync_finish(struct index *ix, int64_t sync_id, int64_t now,
		      int64_t n_new, int64_t n_trashed, const char *error)
{
	sqlite3_stmt *st;
	int rc = st_get(ix, ST_SYNC_FINISH, &st);

	return rc ? rc : update_one(ix, st,
				    bind_i64(st, 1, sync_id) || bind_i64(st, 2, now) ||
				    bind_i64(st, 3, n_new) || bind_i64(st, 4, n_trashed) ||
				    bind_text(st, 5, error));
}

int index_sync_last(struct index *ix, const char *user, const char *account,
		    int64_t *id_r, int64_t *started_r, int64_t *finished_r, char **error_r)
{
	sqlite3_stmt *st;
	bool oom = false;
	int rc = st_get(ix, ST_SYNC_LAST, &st);

	*started_r = *finished_r = 0;
	*error_r = NULL;
	if (id_r)
		*id_r = 0;
	if (rc)
		return rc;
	rc = bind_text(st, 1, user) || bind_text(st, 2, account);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*started_r = sqlite3_column_int64(st, 0);
		*finished_r = sqlite3_column_int64(st, 1);
		*error_r = col_dup(st, 2, &oom);
		if (id_r)
			*id_r = sqlite3_column_int64(st, 3);
		rc = oom ? -ENOMEM : 0;
	} else if (rc == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		rc = ix_fail(ix, st, rc);
	}
	st_done(st);
	return rc;
}
