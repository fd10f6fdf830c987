/* index_msg: the messages table (see index.h). */
#include "index.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"
#include "index_int.h"

void index_msg_release(struct index_msg *m)
{
	if (!m)
		return;
	ix_free_strs((char **const[]){ &m->remote_id, &m->message_id, &m->sender, &m->recipients,
				       &m->subject, &m->flags, &m->store_file, &m->view_name,
				       &m->trash_reason }, 9);
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
		*strs[i] = copy ? ix_col_dup(st, i + 2, &oom)
				: (char *)sqlite3_column_text(st, i + 2);
	}
	m->size = sqlite3_column_int64(st, 4);
	m->internal_date = sqlite3_column_int64(st, 5);
	m->date = sqlite3_column_int64(st, 6);
	m->state = (enum msg_state)sqlite3_column_int(st, 13);
	m->trashed_at = sqlite3_column_int64(st, 14);
	m->trash_sync = sqlite3_column_int64(st, 15);
	m->trash_reason = copy ? ix_col_dup(st, 16, &oom) : (char *)sqlite3_column_text(st, 16);
	m->n_parts = sqlite3_column_type(st, 17) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 17);
	if (oom) {
		index_msg_release(m);
		return -ENOMEM;
	}
	return 0;
}

static int msg_copy_row(sqlite3_stmt *st, void *out)
{
	return msg_from_row(st, out, true);
}

static int id_from_row(sqlite3_stmt *st, void *out)
{
	*(int64_t *)out = sqlite3_column_int64(st, 0);
	return 0;
}

/* ---- messages ---- */

int index_msg_insert(struct index *ix, struct index_msg *m)
{
	sqlite3_stmt *st;
	int rc;

	if (!m->store_file || !m->view_name)
		return -EINVAL;
	rc = ix_stmt(ix, ST_MSG_INSERT, &st);
	if (rc)
		return rc;
	rc = ix_run(ix, st,
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
	return ix_get_by_id(ix, ST_MSG_GET, id, msg_copy_row, r, sizeof *r);
}

int index_msg_lookup(struct index *ix, int64_t folder_id, const char *view_name,
		     struct index_msg *r)
{
	sqlite3_stmt *st;
	int rc;

	memset(r, 0, sizeof *r);
	if (!view_name)
		return -EINVAL;
	rc = ix_stmt(ix, ST_MSG_LOOKUP, &st);
	return rc ? rc : ix_one_row(ix, st, bind_i64(st, 1, folder_id) ||
				    bind_text(st, 2, view_name), msg_copy_row, r);
}

/* A statement for a row loop. A callback may start another loop on the same
 * connection (nested foreach); the cached statement is then still running,
 * so that loop gets its own, finalized by loop_end. */
static int loop_begin(struct index *ix, enum stmt_id id, sqlite3_stmt **st_r, bool *own_r)
{
	int rc = ix_stmt(ix, id, st_r);

	*own_r = false;
	if (rc == 0 && sqlite3_stmt_busy(*st_r)) {
		*own_r = true;
		rc = ix_prepare(ix, id, st_r, 0);
	}
	return rc;
}

static void loop_end(sqlite3_stmt *st, bool own)
{
	if (own)
		sqlite3_finalize(st);
	else
		ix_reset(st);
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
	sqlite3_stmt *st;
	int rc;

	*ids_r = NULL;
	*n_r = 0;
	rc = ix_stmt(ix, ST_KNOWN_IDS, &st);
	if (rc == 0)
		rc = ix_all_rows(ix, st, bind_i64(st, 1, folder_id), ix_text_from_row, ids_r,
				 sizeof **ids_r, n_r);
	if (rc) {
		index_ids_free(*ids_r, *n_r);
		*ids_r = NULL;
		*n_r = 0;
	}
	return rc;
}

int index_msg_find(struct index *ix, int64_t folder_id, const char *remote_id, int64_t *id_r)
{
	sqlite3_stmt *st;
	int rc;

	if (!remote_id)
		return -EINVAL;
	rc = ix_stmt(ix, ST_MSG_FIND, &st);
	return rc ? rc : ix_one_row(ix, st, bind_i64(st, 1, folder_id) || bind_text(st, 2, remote_id),
				    id_from_row, id_r);
}

/* UPDATE messages SET <column> = ?2 WHERE id = ?1, v may be NULL. */
static int set_text(struct index *ix, enum stmt_id which, int64_t id, const char *v)
{
	sqlite3_stmt *st;
	int rc = ix_stmt(ix, which, &st);

	return rc ? rc : ix_update_one(ix, st, bind_i64(st, 1, id) || bind_text(st, 2, v));
}

/* The same for a column that must not be NULL. */
static int update_text(struct index *ix, enum stmt_id which, int64_t id, const char *v)
{
	return v ? set_text(ix, which, id, v) : -EINVAL;
}

int index_msg_rekey(struct index *ix, int64_t id, const char *new_remote_id)
{
	return update_text(ix, ST_MSG_REKEY, id, new_remote_id);
}

int index_msg_set_flags(struct index *ix, int64_t id, const char *flags)
{
	return set_text(ix, ST_MSG_SET_FLAGS, id, flags);
}

int index_msg_mark_trashed(struct index *ix, int64_t id, const char *trash_file,
			   int64_t sync_id, const char *reason, int64_t now)
{
	sqlite3_stmt *st;
	int rc;

	if (!trash_file)
		return -EINVAL;
	rc = ix_stmt(ix, ST_MSG_TRASH, &st);
	return rc ? rc : ix_update_one(ix, st,
				       bind_i64(st, 1, id) || bind_text(st, 2, trash_file) ||
				       bind_opt(st, 3, sync_id) || bind_text(st, 4, reason) ||
				       bind_i64(st, 5, now));
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
	int rc = ix_stmt(ix, ST_MSG_DELETE, &st);

	return rc ? rc : ix_update_one(ix, st, bind_i64(st, 1, id));
}
