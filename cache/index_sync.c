/* index_sync: the audit of sync runs, the syncs table (see index.h). */
#include "index.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"
#include "index_int.h"

/* ---- sync audit ---- */

int index_sync_start(struct index *ix, const char *user, const char *account,
		     int64_t now, int64_t *sync_id_r)
{
	sqlite3_stmt *st;
	int rc = ix_stmt(ix, ST_SYNC_START, &st);

	if (rc == 0)
		rc = ix_run(ix, st, bind_text(st, 1, user) || bind_text(st, 2, account) ||
			    bind_i64(st, 3, now), NULL);
	if (rc == 0)
		*sync_id_r = sqlite3_last_insert_rowid(ix->db);
	return rc;
}

int index_sync_finish(struct index *ix, int64_t sync_id, int64_t now,
		      int64_t n_new, int64_t n_trashed, const char *error)
{
	sqlite3_stmt *st;
	int rc = ix_stmt(ix, ST_SYNC_FINISH, &st);

	return rc ? rc : ix_update_one(ix, st,
				       bind_i64(st, 1, sync_id) || bind_i64(st, 2, now) ||
				       bind_i64(st, 3, n_new) || bind_i64(st, 4, n_trashed) ||
				       bind_text(st, 5, error));
}

struct sync_row {
	int64_t *id_r, *started_r, *finished_r;   /* id_r may be NULL */
	char **error_r;
};

static int sync_from_row(sqlite3_stmt *st, void *out)
{
	struct sync_row *r = out;
	bool oom = false;

	*r->started_r = sqlite3_column_int64(st, 0);
	*r->finished_r = sqlite3_column_int64(st, 1);
	*r->error_r = ix_col_dup(st, 2, &oom);
	if (r->id_r)
		*r->id_r = sqlite3_column_int64(st, 3);
	return oom ? -ENOMEM : 0;
}

int index_sync_last(struct index *ix, const char *user, const char *account,
		    int64_t *id_r, int64_t *started_r, int64_t *finished_r, char **error_r)
{
	struct sync_row row = { id_r, started_r, finished_r, error_r };
	sqlite3_stmt *st;
	int rc = ix_stmt(ix, ST_SYNC_LAST, &st);

	*started_r = *finished_r = 0;
	*error_r = NULL;
	if (id_r)
		*id_r = 0;
	return rc ? rc : ix_one_row(ix, st, bind_text(st, 1, user) || bind_text(st, 2, account),
				    sync_from_row, &row);
}
