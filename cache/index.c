/* index: the message-identifier store and catalog in SQLite (see index.h).
 *
 * Durability: WAL with synchronous=FULL, so a COMMIT that returned is on
 * disk. The store's write order (files made durable and renamed before the row
 * commits) only holds if a committed row survives a power cut; NORMAL would
 * let the last transactions vanish after their files were already adopted
 * or trashed, and the cost is one fsync per (batched) commit.
 *
 * Message ids use AUTOINCREMENT: a row id is the inode number in the mount,
 * and an id must never come back for another message after a purge.
 *
 * The rest of the index is one file per table: index_folder.c,
 * index_msg.c, index_sync.c, index_parts.c; index_int.h is what they share.
 *
 * Statements are prepared once per connection (SQLITE_PREPARE_PERSISTENT)
 * and reset after each use; bound strings are SQLITE_STATIC because every
 * statement is stepped and reset before the caller's strings can go. */
#include "index.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "buf.h"
#include "log.h"
#include "index_int.h"

#define SCHEMA_VERSION 3
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

/* Version 3 adds each message's part records (cache/parts.h) and
 * messages.n_parts: NULL until the message is analysed (every message of
 * an upgraded index, which the backfill then analyses), else how many
 * records it has. The records go with their row (ON DELETE CASCADE: a
 * purge or a dropped row takes them); trash and restore keep the row, so
 * they keep its parts. marks: the resume marks as (enc_off, dec_off)
 * deltas from the previous mark (the first from 0, 0), each an unsigned
 * LEB128 varint (index_parts.c); NULL when there are none. A reader of a
 * version 1 or 2 index (one no writer of this version has opened yet)
 * reads every message as not analysed. */
static const char schema_v3[] =
	"CREATE TABLE parts ("
	" msg_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
	" n INTEGER NOT NULL,"
	" parent INTEGER NOT NULL,"
	" kind INTEGER NOT NULL,"
	" name TEXT NOT NULL,"
	" content_type TEXT,"
	" enc INTEGER NOT NULL,"
	" charset TEXT,"
	" off INTEGER NOT NULL,"
	" len INTEGER NOT NULL,"
	" size INTEGER NOT NULL,"
	" marks BLOB,"
	" PRIMARY KEY (msg_id, n)) WITHOUT ROWID;"
	"ALTER TABLE messages ADD COLUMN n_parts INTEGER;"
	/* What the backfill still has to analyse: empty once it is done. */
	"CREATE INDEX messages_unanalysed ON messages (folder_id, id)"
	" WHERE n_parts IS NULL AND state IN (0, 2);"
	"PRAGMA user_version = 3;";

#define FOLDER_COLS \
	"f.id, f.user, f.account, f.name, f.path, f.uidvalidity, f.uidnext, " \
	"f.highestmodseq, f.synced_at, f.changed_at, f.last_error, f.held, " \
	"(SELECT count(*) FROM messages m WHERE m.folder_id = f.id AND m.state IN (0, 2)), " \
	"(SELECT count(*) FROM messages m WHERE m.folder_id = f.id AND m.state = 1)"

#define MSG_COLS \
	"m.id, m.folder_id, m.remote_id, m.message_id, m.size, m.internal_date, " \
	"m.date, m.sender, m.recipients, m.subject, m.flags, m.store_file, " \
	"m.view_name, m.state, m.trashed_at, m.trash_sync, m.trash_reason, m.n_parts"
/* The same for a reader of a version 1 or 2 index (see schema_v3). */
#define MSG_COLS_V2 \
	"m.id, m.folder_id, m.remote_id, m.message_id, m.size, m.internal_date, " \
	"m.date, m.sender, m.recipients, m.subject, m.flags, m.store_file, " \
	"m.view_name, m.state, m.trashed_at, m.trash_sync, m.trash_reason, NULL"

/* The statements that read message rows, for either column list. */
#define SQL_MSG_GET(C) "SELECT " C " FROM messages m WHERE m.id = ?1"
/* "state IN (0, 2)" verbatim, so the partial index messages_view serves it. */
#define SQL_MSG_LOOKUP(C) "SELECT " C " FROM messages m" \
	" WHERE m.folder_id = ?1 AND m.view_name = ?2 AND m.state IN (0, 2)"
#define SQL_MSG_EACH_VISIBLE(C) "SELECT " C " FROM messages m" \
	" WHERE m.folder_id = ?1 AND m.state IN (0, 2) ORDER BY m.view_name"
#define SQL_MSG_EACH_MASK(C) "SELECT " C " FROM messages m" \
	" WHERE m.folder_id = ?1 AND ((1 << m.state) & ?2) != 0 ORDER BY m.view_name"
#define SQL_TRASH_LIST(C) "SELECT " C " FROM messages m JOIN folders f ON f.id = m.folder_id" \
	" WHERE m.state = 1 AND (?1 IS NULL OR f.user = ?1) ORDER BY m.trashed_at, m.id"

#define PART_COLS "n, parent, kind, name, content_type, enc, charset, off, len, size, marks"

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
	[ST_MSG_GET] = SQL_MSG_GET(MSG_COLS),
	[ST_MSG_LOOKUP] = SQL_MSG_LOOKUP(MSG_COLS),
	[ST_MSG_EACH_VISIBLE] = SQL_MSG_EACH_VISIBLE(MSG_COLS),
	[ST_MSG_EACH_MASK] = SQL_MSG_EACH_MASK(MSG_COLS),
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
	[ST_TRASH_LIST] = SQL_TRASH_LIST(MSG_COLS),
	[ST_SYNC_START] = "INSERT INTO syncs (user, account, started_at) VALUES (?1, ?2, ?3)",
	[ST_SYNC_FINISH] =
		"UPDATE syncs SET finished_at = ?2, n_new = ?3, n_trashed = ?4, error = ?5 WHERE id = ?1",
	[ST_SYNC_LAST] = "SELECT started_at, finished_at, error, id FROM syncs"
		" WHERE user = ?1 AND account = ?2 ORDER BY id DESC LIMIT 1",
	[ST_PARTS_DELETE] = "DELETE FROM parts WHERE msg_id = ?1",
	[ST_PARTS_INSERT] = "INSERT INTO parts (msg_id, " PART_COLS ")"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
	[ST_PARTS_SET_N] = "UPDATE messages SET n_parts = ?2 WHERE id = ?1",
	[ST_PARTS_N] = "SELECT n_parts FROM messages WHERE id = ?1 AND n_parts IS NOT NULL",
	[ST_PARTS_GET] = "SELECT " PART_COLS " FROM parts WHERE msg_id = ?1 ORDER BY n",
	/* The WHERE of messages_unanalysed verbatim, so that index serves it. */
	[ST_PARTS_PENDING] = "SELECT id FROM messages"
		" WHERE n_parts IS NULL AND state IN (0, 2) AND id > ?1 ORDER BY id LIMIT ?2",
	[ST_PARTS_PENDING_IN] = "SELECT id FROM messages WHERE n_parts IS NULL AND"
		" state IN (0, 2) AND folder_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
};

/* What a reader of a version 1 or 2 index prepares instead (schema_v3). */
static const char *const stmt_sql_v2[ST_COUNT] = {
	[ST_MSG_GET] = SQL_MSG_GET(MSG_COLS_V2),
	[ST_MSG_LOOKUP] = SQL_MSG_LOOKUP(MSG_COLS_V2),
	[ST_MSG_EACH_VISIBLE] = SQL_MSG_EACH_VISIBLE(MSG_COLS_V2),
	[ST_MSG_EACH_MASK] = SQL_MSG_EACH_MASK(MSG_COLS_V2),
	[ST_TRASH_LIST] = SQL_TRASH_LIST(MSG_COLS_V2),
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
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB: return -EUCLEAN;
	}
	return -EIO;
}

/* Set when SQLite first finds the file damaged; never cleared: see ix_stmt. */
static atomic_bool index_damaged;

/* Logs that what (a statement, a pragma) failed on path with SQLite's rc
 * and msg, and returns the errno for it. A damaged file is said once per
 * process, in words a user can act on, rather than as a statement per
 * thread and request; the statement goes to the debug log. */
static int ix_error(const char *path, int rc, const char *what, const char *msg)
{
	int err = sqlite_errno(rc);

	if (err == -EUCLEAN) {
		if (!atomic_exchange(&index_damaged, true))
			log_error("%s is damaged (%s). The mail files are not affected; maildisk "
				  "stops using the index, so nothing more is synced or deleted: stop "
				  "maildisk and rebuild the index from a dump, as \"If the index is "
				  "damaged\" in the README says", path, msg);
		log_debug("%s: %s: %s", path, what, msg);
	} else if (err == -EEXIST) {
		log_debug("%s: %s: %s", path, what, msg);
	} else {
		log_error("%s: %s: %s", path, what, msg);
	}
	return err;
}

const char *index_strerror(int err)
{
	return err == -EUCLEAN ? "the index is damaged (see the README: If the index is damaged)"
			       : strerror(-err);
}

/* Logs a failed step of st (before it is reset, which keeps the message). */
int ix_fail(struct index *ix, sqlite3_stmt *st, int rc)
{
	return ix_error(ix->path, rc, sqlite3_sql(st), sqlite3_errmsg(ix->db));
}

int ix_prepare(struct index *ix, enum stmt_id id, sqlite3_stmt **st_r, unsigned flags)
{
	if (atomic_load(&index_damaged) && id != ST_ROLLBACK) {
		*st_r = NULL;
		return -EUCLEAN;
	}
	const char *sql = ix->version < 3 && stmt_sql_v2[id] ? stmt_sql_v2[id] : stmt_sql[id];
	int rc = sqlite3_prepare_v3(ix->db, sql, -1, flags, st_r, NULL);

	if (rc != SQLITE_OK) {
		*st_r = NULL;
		return ix_error(ix->path, rc, sql, sqlite3_errmsg(ix->db));
	}
	return 0;
}

/* The cached statement id. Inside a transaction that was rolled back at an
 * inner depth (or by SQLite itself after an I/O error) nothing more runs
 * until the outermost end: running it would autocommit on its own. */
int ix_stmt(struct index *ix, enum stmt_id id, sqlite3_stmt **st_r)
{
	/* Once SQLite found the file damaged, this process runs nothing more
	 * on it but rollbacks: writing into a damaged file damages it more. */
	if (atomic_load(&index_damaged) && id != ST_ROLLBACK)
		return -EUCLEAN;
	if (ix->depth > 0 && id != ST_COMMIT && id != ST_ROLLBACK &&
	    (ix->doomed || sqlite3_get_autocommit(ix->db))) {
		ix->doomed = true;
		return -ECANCELED;
	}
	if (!ix->stmts[id]) {
		int rc = ix_prepare(ix, id, &ix->stmts[id], SQLITE_PREPARE_PERSISTENT);

		if (rc)
			return rc;
	}
	*st_r = ix->stmts[id];
	return 0;
}

/* Steps a statement that returns no rows we need, then resets it. *changes_r
 * (if not NULL) gets the number of rows it changed. */
int ix_run(struct index *ix, sqlite3_stmt *st, int bind_rc, int *changes_r)
{
	int rc = bind_rc;

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE || rc == SQLITE_ROW)
			rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK) {
		rc = ix_fail(ix, st, rc);
		ix_reset(st);
		return rc;
	}
	if (changes_r)
		*changes_r = sqlite3_changes(ix->db);
	ix_reset(st);
	return 0;
}

static int ix_exec(struct index *ix, const char *sql)
{
	char *err = NULL;
	int rc;

	if (atomic_load(&index_damaged))
		return -EUCLEAN;
	rc = sqlite3_exec(ix->db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		rc = ix_error(ix->path, rc, sql, err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return rc;
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

	if (rc != SQLITE_OK)
		return ix_error(ix->path, rc, "PRAGMA user_version", sqlite3_errmsg(ix->db));
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
	if (rc == 0 && v < 3)
		rc = ix_exec(ix, schema_v3);
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
		rc = ix_error(db_path, rc, "cannot open",
			      ix->db ? sqlite3_errmsg(ix->db) : sqlite3_errstr(rc));
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
			rc = ix_error(db_path, rc, "PRAGMA journal_mode = WAL",
				      err ? err : sqlite3_errstr(rc));
			sqlite3_free(err);
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
	/* A reader may find version 1 or 2 (see schema_v2, schema_v3). */
	if (v != SCHEMA_VERSION && !(readonly && v >= 1 && v < SCHEMA_VERSION)) {
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
	int rc = ix_stmt(ix, id, &st);

	return rc ? rc : ix_run(ix, st, SQLITE_OK, NULL);
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

char *ix_col_dup(sqlite3_stmt *st, int i, bool *oom)
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

/* Frees each *v[i]: the owned strings of a struct. */
void ix_free_strs(char **const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(*v[i]);
}

/* A copy of the first column, which the statement never yields NULL. */
int ix_text_from_row(sqlite3_stmt *st, void *out)
{
	char **s = out;

	*s = strdup((const char *)sqlite3_column_text(st, 0));
	return *s ? 0 : -ENOMEM;
}

/* Steps st (bound with bind_rc) for at most one row and fills out from it;
 * -ENOENT if there is none. Resets st. */
int ix_one_row(struct index *ix, sqlite3_stmt *st, int bind_rc, ix_fill_fn fill, void *out)
{
	int rc = bind_rc;

	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = fill(st, out);
	else if (rc == SQLITE_DONE)
		rc = -ENOENT;
	else
		rc = ix_fail(ix, st, rc);
	ix_reset(st);
	return rc;
}

int ix_get_by_id(struct index *ix, enum stmt_id which, int64_t id, ix_fill_fn fill, void *out,
		 size_t size)
{
	sqlite3_stmt *st;
	int rc;

	memset(out, 0, size);
	rc = ix_stmt(ix, which, &st);
	return rc ? rc : ix_one_row(ix, st, bind_i64(st, 1, id), fill, out);
}

/* Steps st (bound with bind_rc) through all its rows, filling one element
 * per row of the growing array *vp (a T **, elements of elem_size bytes).
 * *n_r: the elements filled, also on failure (the caller frees them).
 * Resets st. */
int ix_all_rows(struct index *ix, sqlite3_stmt *st, int bind_rc, ix_fill_fn fill,
		void *vp, size_t elem_size, size_t *n_r)
{
	size_t cap = 0;
	int rc = bind_rc;

	*n_r = 0;
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		char *v;

		rc = buf_array_grow(vp, &cap, *n_r, elem_size, 16);
		if (rc)
			break;
		memcpy(&v, vp, sizeof v);
		rc = fill(st, v + *n_r * elem_size);
		if (rc)
			break;
		(*n_r)++;
	}
	if (rc == SQLITE_DONE)
		rc = 0;
	else if (rc > 0)
		rc = ix_fail(ix, st, rc);
	ix_reset(st);
	return rc;
}

/* Runs an UPDATE/DELETE keyed by row id; -ENOENT when it matched nothing. */
int ix_update_one(struct index *ix, sqlite3_stmt *st, int bind_rc)
{
	int changes = 0;
	int rc = ix_run(ix, st, bind_rc, &changes);

	if (rc == 0 && changes == 0)
		rc = -ENOENT;
	return rc;
}
