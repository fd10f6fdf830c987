/* store_trash: moving messages to the trash, back, and out for good (see
 * store.h). Files move first and rows last; the comments at each step say
 * what a crash in between leaves and who finishes it. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "store_int.h"

struct move {
	int64_t id;
	int64_t folder_id;
	char *from;   /* owned: store-relative */
	char *to;     /* owned: store-relative */
	bool moved;
};

static void moves_free(struct move *mv, size_t n)
{
	for (size_t i = 0; mv && i < n; i++) {
		free(mv[i].from);
		free(mv[i].to);
	}
	free(mv);
}

/* Best effort after a failed transaction: files go back where the rows say
 * they are. What this cannot undo, store_recover repairs. */
static void moves_undo(struct store *s, struct move *mv, size_t n)
{
	char from[PATH_MAX], to[PATH_MAX];

	for (size_t i = 0; i < n; i++) {
		if (!mv[i].moved || store_path(s, mv[i].to, from, sizeof from) ||
		    store_path(s, mv[i].from, to, sizeof to))
			continue;
		int rc = store_rename_noreplace(from, to);

		if (rc && rc != -ENOENT) {
			errno = -rc;
			log_warn("rename(%s, %s): %m", from, to);
		}
	}
}

/* Renames each mv[i].from to mv[i].to, creating directories; then fsyncs
 * the directories on both sides. */
static int moves_do(struct store *s, struct move *mv, size_t n)
{
	char from[PATH_MAX], to[PATH_MAX];
	struct store_dirset dirs = { 0 };
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = store_path(s, mv[i].from, from, sizeof from);
		if (rc == 0)
			rc = store_path(s, mv[i].to, to, sizeof to);
		if (rc == 0)
			rc = store_mkdirs_parent(to);
		if (rc)
			break;
		rc = store_rename_noreplace(from, to);
		if (rc == -ENOENT && access(to, F_OK) == 0) {
			rc = 0;         /* moved by an earlier attempt */
		} else if (rc == -ENOENT) {
			log_warn("%s: file missing, recording the move anyway", from);
			rc = 0;
		} else if (rc) {
			errno = -rc;
			log_error("rename(%s, %s): %m", from, to);
			break;
		}
		mv[i].moved = true;
		rc = store_dirset_add_parent(&dirs, from);
		if (rc == 0)
			rc = store_dirset_add_parent(&dirs, to);
	}
	if (rc == 0)
		rc = store_dirset_sync(&dirs);
	store_dirset_free(&dirs);
	return rc;
}

/* Bumps changed_at of each distinct folder among the moved. */
static int moves_touch(struct index *ix, const struct move *mv, size_t n, int64_t now)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = mv[j].moved && mv[j].folder_id == mv[i].folder_id;
		if (mv[i].moved && !seen)
			rc = index_folder_touch(ix, mv[i].folder_id, now);
	}
	return rc;
}

static int id_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The same id twice would be moved once and marked twice, failing all. */
static int ids_distinct(const int64_t *ids, size_t n)
{
	int64_t *sorted = malloc(n * sizeof *sorted);
	int rc = 0;

	if (!sorted)
		return -ENOMEM;
	memcpy(sorted, ids, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, id_cmp);
	for (size_t i = 1; i < n && rc == 0; i++) {
		if (sorted[i] == sorted[i - 1]) {
			log_error("message %lld is listed twice for the trash", (long long)sorted[i]);
			rc = -EINVAL;
		}
	}
	free(sorted);
	return rc;
}

int store_trash(struct store *s, struct index *ix, const int64_t *ids, size_t n,
		int64_t sync_id, const char *reason, int64_t now)
{
	struct index_folder f = { 0 };
	struct move *mv;
	int rc, rc2;

	if (n == 0)
		return 0;
	rc = ids_distinct(ids, n);
	if (rc)
		return rc;
	mv = calloc(n, sizeof *mv);
	if (!mv)
		return -ENOMEM;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct index_msg m;

		rc = index_msg_get(ix, ids[i], &m);
		if (rc == 0 && m.state != MSG_ACTIVE) {
			/* Restored messages are local only; no sync trashes them. */
			log_error("message %lld is not active (state %d), not trashing it",
				  (long long)ids[i], (int)m.state);
			rc = -EINVAL;
		}
		if (rc == 0 && f.id != m.folder_id) {
			index_folder_release(&f);
			rc = index_folder_get(ix, m.folder_id, &f);
		}
		if (rc == 0) {
			mv[i].id = m.id;
			mv[i].folder_id = m.folder_id;
			mv[i].from = strdup(m.store_file);
			mv[i].to = store_trash_rel(f.path, store_base_name(m.store_file));
			if (!mv[i].from || !mv[i].to)
				rc = -ENOMEM;
		}
		index_msg_release(&m);
	}
	index_folder_release(&f);
	if (rc) {
		moves_free(mv, n);
		return rc;
	}

	/* Files first, their directories fsync'd, then the rows: a crash in
	 * between leaves active rows whose files are in trash/, which
	 * store_recover marks trashed. The other order could leave trashed
	 * rows whose files still show in cur/ with no visible row. */
	rc = moves_do(s, mv, n);
	rc2 = index_begin(ix);
	if (rc2)
		goto undo;
	for (size_t i = 0; i < n && rc2 == 0; i++)
		if (mv[i].moved)
			rc2 = index_msg_mark_trashed(ix, mv[i].id, mv[i].to, sync_id, reason, now);
	if (rc2 == 0)
		rc2 = moves_touch(ix, mv, n, now);
	rc2 = index_end(ix, rc2);
undo:
	if (rc2) {
		moves_undo(s, mv, n);
		if (!rc)
			rc = rc2;
	}
	moves_free(mv, n);
	return rc;
}

int store_restore(struct store *s, struct index *ix, int64_t id)
{
	struct index_folder f = { 0 };
	struct index_msg m;
	struct move mv = { 0 };
	char *view = NULL;
	int rc;

	rc = index_msg_get(ix, id, &m);
	if (rc)
		return rc;
	if (m.state != MSG_TRASHED) {
		log_error("message %lld is not in the trash", (long long)id);
		rc = -EINVAL;
		goto out;
	}
	rc = index_folder_get(ix, m.folder_id, &f);
	if (rc == 0)
		rc = store_maildir_create(s, f.path);
	if (rc == 0)
		rc = store_free_view_name(ix, m.folder_id, m.view_name, &view);
	if (rc)
		goto out;
	mv.id = id;
	mv.folder_id = m.folder_id;
	mv.from = strdup(m.store_file);
	if (!mv.from || asprintf(&mv.to, "%s/cur/%s", f.path, store_base_name(m.store_file)) < 0) {
		mv.to = NULL;
		rc = -ENOMEM;
		goto out;
	}
	/* Files first again: a crash before the commit leaves a trashed row
	 * whose file is back in cur/, which store_recover finishes restoring. */
	rc = moves_do(s, &mv, 1);
	if (rc == 0)
		rc = index_begin(ix);
	if (rc == 0) {
		if (view)
			rc = index_msg_set_view_name(ix, id, view);
		if (rc == 0)
			rc = index_msg_mark_restored(ix, id, mv.to);
		if (rc == 0)
			rc = index_folder_touch(ix, m.folder_id, (int64_t)time(NULL));
		rc = index_end(ix, rc);
	}
	if (rc)
		moves_undo(s, &mv, 1);
	if (rc == 0)
		log_info("restored message %lld as %s/%s", (long long)id, f.path,
			 view ? view : m.view_name);
out:
	free(mv.from);
	free(mv.to);
	free(view);
	index_folder_release(&f);
	index_msg_release(&m);
	return rc;
}

struct purge_item {
	int64_t id;
	char *file;   /* owned: store-relative */
	bool gone;
};

struct purge_list {
	int64_t cutoff;
	struct purge_item *v;   /* owned */
	size_t n, cap;
};

static int purge_collect(void *ctx, const struct index_msg *m)
{
	struct purge_list *l = ctx;

	if (m->trashed_at >= l->cutoff)
		return 1;   /* oldest first: the rest are younger */
	if (buf_array_grow(&l->v, &l->cap, l->n, sizeof *l->v, 64))
		return -ENOMEM;
	l->v[l->n].id = m->id;
	l->v[l->n].gone = false;
	l->v[l->n].file = strdup(m->store_file);
	if (!l->v[l->n].file)
		return -ENOMEM;
	l->n++;
	return 0;
}

int store_purge(struct store *s, struct index *ix, int64_t cutoff, size_t *n_r)
{
	struct purge_list l = { .cutoff = cutoff };
	struct store_dirset dirs = { 0 };
	char path[PATH_MAX];
	size_t n = 0;
	int rc;

	*n_r = 0;
	rc = index_trash_foreach(ix, NULL, purge_collect, &l);
	if (rc > 0)
		rc = 0;
	/* Files first, then rows: a crash in between leaves trashed rows
	 * without files, which the next purge deletes. The directories are
	 * fsync'd first so no file can come back without its row. */
	for (size_t i = 0; i < l.n && rc == 0; i++) {
		if (store_path(s, l.v[i].file, path, sizeof path))
			continue;
		if (unlink(path) < 0 && errno != ENOENT) {
			log_error("unlink(%s): %m", path);
			continue;
		}
		l.v[i].gone = true;
		rc = store_dirset_add_parent(&dirs, path);
	}
	if (rc == 0)
		rc = store_dirset_sync(&dirs);
	if (rc == 0)
		rc = index_begin(ix);
	if (rc == 0) {
		for (size_t i = 0; i < l.n && rc == 0; i++) {
			if (!l.v[i].gone)
				continue;
			rc = index_msg_delete(ix, l.v[i].id);
			if (rc == -ENOENT)
				rc = 0;     /* someone else purged it */
			else if (rc == 0)
				n++;
		}
		rc = index_end(ix, rc);
	}
	if (rc == 0)
		*n_r = n;
	store_dirset_free(&dirs);
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].file);
	free(l.v);
	return rc;
}
