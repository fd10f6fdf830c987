/* index_int: what the cache/index*.c files share and nothing else includes:
 * the connection, its cached statements and the helpers that run them.
 * Helpers that step a statement log a SQLite failure (with the statement)
 * and return a negative errno, as index.h says. */
#ifndef MAILDISK_INDEX_INT_H
#define MAILDISK_INDEX_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "index.h"

enum stmt_id {
	ST_BEGIN, ST_BEGIN_RO, ST_COMMIT, ST_ROLLBACK,
	ST_FOLDER_INSERT, ST_FOLDER_BY_KEY, ST_FOLDER_BY_ID, ST_FOLDER_LIST,
	ST_FOLDER_SET_STATE, ST_FOLDER_SET_RESULT, ST_FOLDER_TOUCH, ST_FOLDER_MOVE, ST_MSG_MOVE,
	ST_FOLDER_BY_PATH, ST_NOTE_GET, ST_NOTE_SET,
	ST_MSG_INSERT, ST_MSG_GET, ST_MSG_LOOKUP, ST_MSG_EACH_VISIBLE, ST_MSG_EACH_MASK,
	ST_KNOWN_IDS, ST_MSG_FIND, ST_MSG_REKEY, ST_MSG_SET_FLAGS, ST_MSG_TRASH,
	ST_MSG_RESTORE, ST_MSG_SET_VIEW, ST_MSG_SET_FILE, ST_MSG_DELETE, ST_TRASH_LIST,
	ST_SYNC_START, ST_SYNC_FINISH, ST_SYNC_LAST,
	ST_PARTS_DELETE, ST_PARTS_INSERT, ST_PARTS_SET_N, ST_PARTS_N, ST_PARTS_GET,
	ST_PARTS_PENDING, ST_PARTS_PENDING_IN,
	ST_COUNT
};

struct index {
	sqlite3 *db;                    /* owned */
	char *path;                     /* owned: for log lines */
	bool readonly;
	int depth;                      /* index_begin nesting */
	bool doomed;                    /* rolled back at an inner depth: the outermost end rolls back */
	int version;                    /* schema version (a reader may see 1 or 2) */
	sqlite3_stmt *stmts[ST_COUNT];  /* owned, prepared on first use */
};

/* Logs a failed step of st (before it is reset, which keeps the message)
 * and returns rc as a negative errno. */
int ix_fail(struct index *ix, sqlite3_stmt *st, int rc);
/* Prepares a statement of its own (flags for sqlite3_prepare_v3). */
int ix_prepare(struct index *ix, enum stmt_id id, sqlite3_stmt **st_r, unsigned flags);
/* The cached statement id, prepared on first use. -ECANCELED inside a
 * transaction that was rolled back at an inner depth (see index.c). */
int ix_stmt(struct index *ix, enum stmt_id id, sqlite3_stmt **st_r);
/* Steps a statement that returns no rows we need, then resets it. bind_rc:
 * the result of binding its parameters. *changes_r (if not NULL) gets the
 * number of rows it changed. */
int ix_run(struct index *ix, sqlite3_stmt *st, int bind_rc, int *changes_r);
/* ix_run of an UPDATE/DELETE keyed by row id; -ENOENT when it matched nothing. */
int ix_update_one(struct index *ix, sqlite3_stmt *st, int bind_rc);

/* Fills out from the current row of a statement: 0 or -ENOMEM. */
typedef int (*ix_fill_fn)(sqlite3_stmt *st, void *out);
/* Steps st (bound with bind_rc) for at most one row and fills out from it;
 * -ENOENT if there is none. Resets st. */
int ix_one_row(struct index *ix, sqlite3_stmt *st, int bind_rc, ix_fill_fn fill, void *out);
/* ix_one_row of statement which with its one parameter bound to id; out
 * (size bytes) is zeroed first. */
int ix_get_by_id(struct index *ix, enum stmt_id which, int64_t id, ix_fill_fn fill, void *out,
		 size_t size);
/* Steps st (bound with bind_rc) through all its rows, filling one element
 * per row of the growing array *vp (a T **, elements of elem_size bytes).
 * *n_r: the elements filled, also on failure (the caller frees them).
 * Resets st. */
int ix_all_rows(struct index *ix, sqlite3_stmt *st, int bind_rc, ix_fill_fn fill, void *vp,
		size_t elem_size, size_t *n_r);
/* ix_fill_fn: a malloc'd copy of column 0 into *(char **)out, which the
 * statement never yields NULL. */
int ix_text_from_row(sqlite3_stmt *st, void *out);
/* A malloc'd copy of column i, NULL for NULL; *oom set when it fails. */
char *ix_col_dup(sqlite3_stmt *st, int i, bool *oom);
/* Frees each *v[i]: the owned strings of a struct. */
void ix_free_strs(char **const *v, size_t n);

static inline void ix_reset(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static inline int bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static inline int bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
	return sqlite3_bind_int64(st, i, v);
}

/* 0 means "none" for these columns, stored as NULL. */
static inline int bind_opt(sqlite3_stmt *st, int i, int64_t v)
{
	return v ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
}

#endif
