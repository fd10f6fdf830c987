/* store_recover: the start-up pass that compares each folder's files with
 * its rows and finishes or undoes what a crash left (the states are listed
 * in store.c). */
#include "store.h"

#include <dirent.h>
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

#define RECOVERED_REASON "recovered after crash"

struct rec_row {
	int64_t id;
	enum msg_state state;
	int64_t size;
	char *file;         /* owned: store_file */
	char *view;         /* owned: view_name */
	const char *key;    /* into file: the unique part of the base name, before ':' */
	size_t keylen;
	bool seen;          /* its file was found */
};

struct rec_rows {
	struct rec_row *v;  /* owned */
	size_t n, cap;
};

static int rec_collect(void *ctx, const struct index_msg *m)
{
	struct rec_rows *l = ctx;
	struct rec_row *r;

	if (buf_array_grow(&l->v, &l->cap, l->n, sizeof *l->v, 256))
		return -ENOMEM;
	r = &l->v[l->n];
	memset(r, 0, sizeof *r);
	r->id = m->id;
	r->state = m->state;
	r->size = m->size;
	r->file = strdup(m->store_file);
	r->view = strdup(m->view_name);
	if (!r->file || !r->view) {
		free(r->file);
		free(r->view);
		return -ENOMEM;
	}
	r->key = store_base_name(r->file);
	r->keylen = strcspn(r->key, ":");
	l->n++;
	return 0;
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

static int rec_sort_cmp(const void *pa, const void *pb)
{
	const struct rec_row *a = *(struct rec_row *const *)pa, *b = *(struct rec_row *const *)pb;

	return key_cmp(a->key, a->keylen, b->key, b->keylen);
}

static struct rec_row *rec_find(struct rec_row **v, size_t n, const char *key, size_t keylen)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(key, keylen, v[mid]->key, v[mid]->keylen);

		if (c == 0)
			return v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static bool exists(const char *path, struct stat *st)
{
	struct stat tmp;

	return lstat(path, st ? st : &tmp) == 0;
}

struct rec_folder {
	struct store *s;
	struct index *ix;
	const struct index_folder *f;
	bool repair;
	int64_t now;
	struct store_report *r;
	bool changed;
	char label[512];
	struct rec_row **vis;   /* owned array: the visible rows, by key */
	size_t nvis;
	struct rec_row **tr;    /* owned array: the trashed rows, by key */
	size_t ntr;
};

static void check_size(struct rec_folder *c, const struct rec_row *row, const struct stat *st)
{
	if (st->st_size != row->size) {
		c->r->size_mismatch++;
		log_warn("%s: %s has %lld bytes, the index says %lld", c->label, row->file,
			 (long long)st->st_size, (long long)row->size);
	}
}

static int rec_tmp(struct rec_folder *c)
{
	char dir[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (snprintf(dir, sizeof dir, "%s/%s/tmp", c->s->root, c->f->path) >= (int)sizeof dir)
		return -ENAMETOOLONG;
	rc = store_opendir(dir, &d);
	if (rc || !d)
		return rc;
	while ((de = readdir(d))) {
		struct stat st;

		/* Only files are half-written messages; a directory here is
		 * none of ours to remove (a store not yet moved out of the old
		 * layout had folders inside tmp/: store_layout.c). */
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
			continue;
		c->r->tmp_removed++;
		if (!c->repair)
			continue;
		log_debug("%s: removing half-written tmp/%s", c->label, de->d_name);
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			rc = -errno;
			log_error("unlink(%s/%s): %m", dir, de->d_name);
		}
	}
	closedir(d);
	return rc;
}

/* A file in cur/ that no visible row names. */
static int rec_cur_file(struct rec_folder *c, DIR *dir, const char *name, const struct stat *st)
{
	size_t keylen = strcspn(name, ":");
	struct rec_row *row = rec_find(c->vis, c->nvis, name, keylen);
	char path[PATH_MAX], *rel = NULL, *view = NULL;
	int rc = 0;

	if (asprintf(&rel, "%s/cur/%s", c->f->path, name) < 0)
		return -ENOMEM;
	if (row && !row->seen && store_path(c->s, row->file, path, sizeof path) == 0 &&
	    !exists(path, NULL)) {
		/* Same message, new flags: another Maildir reader renamed it. */
		row->seen = true;
		check_size(c, row, st);
		log_info("%s: %s was renamed to %s, following it", c->label, row->file, rel);
		if (c->repair)
			rc = index_msg_set_store_file(c->ix, row->id, rel);
		goto out;
	}
	row = row ? NULL : rec_find(c->tr, c->ntr, name, keylen);
	if (row && store_path(c->s, row->file, path, sizeof path) == 0 && !exists(path, NULL)) {
		/* Crash inside store_restore: the file is back, the row is not. */
		c->r->trash_completed++;
		log_warn("%s: finishing the restore of %s", c->label, rel);
		if (c->repair) {
			rc = store_free_view_name(c->ix, c->f->id, row->view, &view);
			if (rc == 0 && view)
				rc = index_msg_set_view_name(c->ix, row->id, view);
			if (rc == 0)
				rc = index_msg_mark_restored(c->ix, row->id, rel);
			c->changed = true;
		}
		goto out;
	}
	/* Crash between rename and commit in store_batch_commit (or a
	 * duplicate copy): the server still has the message. */
	c->r->orphans_removed++;
	log_debug("%s: %s has no row%s", c->label, rel, c->repair ? ", removing it" : "");
	if (c->repair && unlinkat(dirfd(dir), name, 0) < 0 && errno != ENOENT) {
		rc = -errno;
		log_error("unlink(%s/%s): %m", c->s->root, rel);
	}
out:
	free(view);
	free(rel);
	return rc;
}

/* c->vis and c->tr: the folder's rows, sorted by key for rec_find. */
static int rec_sort_rows(struct rec_folder *c, struct rec_rows *rows)
{
	c->vis = malloc((rows->n + 1) * sizeof *c->vis);
	c->tr = malloc((rows->n + 1) * sizeof *c->tr);
	if (!c->vis || !c->tr)
		return -ENOMEM;
	for (size_t i = 0; i < rows->n; i++) {
		if (rows->v[i].state == MSG_TRASHED)
			c->tr[c->ntr++] = &rows->v[i];
		else
			c->vis[c->nvis++] = &rows->v[i];
	}
	qsort(c->vis, c->nvis, sizeof *c->vis, rec_sort_cmp);
	qsort(c->tr, c->ntr, sizeof *c->tr, rec_sort_cmp);
	return 0;
}

/* The files in cur/ against the rows. */
static int rec_cur(struct rec_folder *c)
{
	char dir[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc;

	if (snprintf(dir, sizeof dir, "%s/%s/cur", c->s->root, c->f->path) >= (int)sizeof dir)
		return -ENAMETOOLONG;
	rc = store_opendir(dir, &d);
	if (rc || !d)
		return rc;
	while (rc == 0 && (de = readdir(d))) {
		struct rec_row *row;
		struct stat st;

		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		row = rec_find(c->vis, c->nvis, de->d_name, strcspn(de->d_name, ":"));
		if (row && !row->seen && strcmp(store_base_name(row->file), de->d_name) == 0) {
			row->seen = true;
			check_size(c, row, &st);
			continue;
		}
		rc = rec_cur_file(c, d, de->d_name, &st);
	}
	closedir(d);
	return rc;
}

/* A visible row whose file was not in cur/ under its name. */
static int rec_missing(struct rec_folder *c, struct rec_row *row)
{
	char path[PATH_MAX], *trash;
	struct stat st;
	int rc = store_path(c->s, row->file, path, sizeof path);

	if (rc)
		return rc;
	if (exists(path, &st)) {
		check_size(c, row, &st);
		return 0;
	}
	trash = store_trash_rel(c->f->path, store_base_name(row->file));
	if (!trash)
		return -ENOMEM;
	if (row->state == MSG_ACTIVE && store_path(c->s, trash, path, sizeof path) == 0 &&
	    exists(path, NULL)) {
		/* Crash inside store_trash: the file moved, the row did not. */
		c->r->trash_completed++;
		log_warn("%s: %s was moved to the trash, marking it trashed", c->label, row->view);
		if (c->repair)
			rc = index_msg_mark_trashed(c->ix, row->id, trash, 0, RECOVERED_REASON,
						    c->now);
	} else {
		c->r->rows_missing_file++;
		log_warn("%s: %s (%s) is missing%s", c->label, row->view, row->file,
			 c->repair ? ", dropping its row so the next sync fetches it again" : "");
		if (c->repair)
			rc = index_msg_delete(c->ix, row->id);
	}
	c->changed = true;
	free(trash);
	return rc;
}

static int rec_folder(struct rec_folder *c)
{
	struct rec_rows rows = { 0 };
	int rc;

	rc = rec_tmp(c);
	if (rc == 0)
		rc = index_msg_foreach(c->ix, c->f->id, 7u, rec_collect, &rows);
	if (rc == 0)
		rc = rec_sort_rows(c, &rows);
	if (rc == 0 && c->repair)
		rc = index_begin(c->ix);
	if (rc == 0) {
		rc = rec_cur(c);
		for (size_t i = 0; i < c->nvis && rc == 0; i++)
			if (!c->vis[i]->seen)
				rc = rec_missing(c, c->vis[i]);
		if (c->repair) {
			if (rc == 0 && c->changed)
				rc = index_folder_touch(c->ix, c->f->id, c->now);
			rc = index_end(c->ix, rc);
		}
	}
	free(c->vis);
	free(c->tr);
	for (size_t i = 0; i < rows.n; i++) {
		free(rows.v[i].file);
		free(rows.v[i].view);
	}
	free(rows.v);
	return rc;
}

int store_recover(struct store *s, struct index *ix, bool repair, struct store_report *r)
{
	struct index_folder *fs = NULL;
	size_t n = 0;
	int rc, first = 0;

	memset(r, 0, sizeof *r);
	rc = index_folder_list(ix, NULL, NULL, &fs, &n);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct rec_folder c = {
			.s = s, .ix = ix, .f = &fs[i], .repair = repair,
			.now = (int64_t)time(NULL), .r = r,
		};

		snprintf(c.label, sizeof c.label, "%s/%s %s", fs[i].user, fs[i].account, fs[i].name);
		if (!store_rel_ok(fs[i].path)) {
			log_error("%s: bad folder path \"%s\" in the index", c.label, fs[i].path);
			rc = -EINVAL;
		} else {
			rc = rec_folder(&c);
		}
		/* One broken folder does not stop the others from being repaired. */
		if (rc && !first)
			first = rc;
	}
	index_folder_array_free(&fs, n);
	if (repair && (r->tmp_removed || r->orphans_removed || r->trash_completed ||
		       r->rows_missing_file))
		log_info("store %s recovered: %zu tmp files removed, %zu orphans removed, "
			 "%zu trash moves completed, %zu rows without file dropped",
			 s->root, r->tmp_removed, r->orphans_removed, r->trash_completed,
			 r->rows_missing_file);
	/* Repaired: the mark of the writer that died may go now. */
	if (repair && first == 0)
		s->unclean = false;
	return first;
}
