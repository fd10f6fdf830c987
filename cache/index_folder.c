/* index_folder: the folders table (see index.h). */
#include "index.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"
#include "index_int.h"

void index_folder_release(struct index_folder *f)
{
	if (!f)
		return;
	ix_free_strs((char **const[]){ &f->user, &f->account, &f->name, &f->path, &f->last_error,
				       &f->held }, 6);
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

static int folder_from_row(sqlite3_stmt *st, void *out)
{
	struct index_folder *f = out;
	bool oom = false;

	memset(f, 0, sizeof *f);
	f->id = sqlite3_column_int64(st, 0);
	f->user = ix_col_dup(st, 1, &oom);
	f->account = ix_col_dup(st, 2, &oom);
	f->name = ix_col_dup(st, 3, &oom);
	f->path = ix_col_dup(st, 4, &oom);
	f->uidvalidity = (uint32_t)sqlite3_column_int64(st, 5);
	f->uidnext = (uint32_t)sqlite3_column_int64(st, 6);
	f->highestmodseq = (uint64_t)sqlite3_column_int64(st, 7);
	f->synced_at = sqlite3_column_int64(st, 8);
	f->changed_at = sqlite3_column_int64(st, 9);
	f->last_error = ix_col_dup(st, 10, &oom);
	f->held = ix_col_dup(st, 11, &oom);
	f->n_active = sqlite3_column_int64(st, 12);
	f->n_trashed = sqlite3_column_int64(st, 13);
	if (oom) {
		index_folder_release(f);
		return -ENOMEM;
	}
	return 0;
}

/* ---- folders ---- */

static int folder_by_key(struct index *ix, const char *user, const char *account,
			 const char *name, struct index_folder *r)
{
	sqlite3_stmt *st;
	int rc = ix_stmt(ix, ST_FOLDER_BY_KEY, &st);

	return rc ? rc : ix_one_row(ix, st, bind_text(st, 1, user) || bind_text(st, 2, account) ||
				    bind_text(st, 3, name), folder_from_row, r);
}

/* The folder stored at path, or -ENOENT. */
static int folder_by_path(struct index *ix, const char *path, struct index_folder *r)
{
	sqlite3_stmt *st;
	int rc = ix_stmt(ix, ST_FOLDER_BY_PATH, &st);

	memset(r, 0, sizeof *r);
	return rc ? rc : ix_one_row(ix, st, bind_text(st, 1, path), folder_from_row, r);
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
		rc = ix_stmt(ix, ST_FOLDER_INSERT, &st);
	if (rc == 0)
		rc = ix_run(ix, st,
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
	rc = ix_stmt(ix, ST_NOTE_GET, &st);
	if (rc == 0)
		rc = ix_one_row(ix, st, bind_i64(st, 1, id), ix_text_from_row, note_r);
	return rc == -ENOENT ? 0 : rc;
}

int index_folder_set_note(struct index *ix, int64_t id, const char *note)
{
	sqlite3_stmt *st;
	int rc = ix_stmt(ix, ST_NOTE_SET, &st);

	return rc ? rc : ix_run(ix, st, bind_i64(st, 1, id) || bind_text(st, 2, note), NULL);
}

int index_folder_get(struct index *ix, int64_t id, struct index_folder *r)
{
	return ix_get_by_id(ix, ST_FOLDER_BY_ID, id, folder_from_row, r, sizeof *r);
}

int index_folder_list(struct index *ix, const char *user, const char *account,
		      struct index_folder **r, size_t *n_r)
{
	sqlite3_stmt *st;
	int rc;

	*r = NULL;
	*n_r = 0;
	rc = ix_stmt(ix, ST_FOLDER_LIST, &st);
	if (rc == 0)
		rc = ix_all_rows(ix, st, bind_text(st, 1, user) || bind_text(st, 2, account),
				 folder_from_row, r, sizeof **r, n_r);
	if (rc) {
		index_folder_array_free(r, *n_r);
		*n_r = 0;
	}
	return rc;
}

int index_folder_set_state(struct index *ix, int64_t id, uint32_t uidvalidity,
			   uint32_t uidnext, uint64_t highestmodseq)
{
	sqlite3_stmt *st;
	int rc = ix_stmt(ix, ST_FOLDER_SET_STATE, &st);

	return rc ? rc : ix_update_one(ix, st,
				       bind_i64(st, 1, id) || bind_i64(st, 2, uidvalidity) ||
				       bind_i64(st, 3, uidnext) ||
				       bind_i64(st, 4, (int64_t)highestmodseq));
}

int index_folder_set_result(struct index *ix, int64_t id, int64_t now,
			    const char *error, const char *held)
{
	sqlite3_stmt *st;
	int rc = ix_stmt(ix, ST_FOLDER_SET_RESULT, &st);

	return rc ? rc : ix_update_one(ix, st,
				       bind_i64(st, 1, id) || bind_i64(st, 2, now) ||
				       bind_text(st, 3, error) || bind_text(st, 4, held));
}

int index_folder_touch(struct index *ix, int64_t id, int64_t now)
{
	sqlite3_stmt *st;
	int rc = ix_stmt(ix, ST_FOLDER_TOUCH, &st);

	return rc ? rc : ix_update_one(ix, st, bind_i64(st, 1, id) || bind_i64(st, 2, now));
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
	rc = ix_stmt(ix, ST_FOLDER_MOVE, &st);
	if (rc == 0)
		rc = ix_update_one(ix, st, bind_i64(st, 1, id) || bind_text(st, 2, old_path) ||
				   bind_text(st, 3, new_path));
	if (rc == 0)
		rc = ix_stmt(ix, ST_MSG_MOVE, &st);
	if (rc == 0)
		rc = ix_run(ix, st, bind_i64(st, 1, id) || bind_text(st, 2, old_path) ||
			    bind_text(st, 3, new_path), &changes);
	if (rc) {
		index_rollback(ix);
		return rc;
	}
	if (n_r)
		*n_r = (size_t)changes;
	return index_commit(ix);
}
