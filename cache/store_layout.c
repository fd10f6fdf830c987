/* store_layout: moves folders out of the store layout in which a folder
 * component named "cur", "new" or "tmp" was written as is (see names.h and
 * store.h).
 *
 * In that layout a server folder "INBOX.tmp" had its Maildir at
 * mail/<user>/<account>/INBOX/tmp/, inside INBOX's own tmp/. names.c now
 * writes such a component as "%74mp" ("%63ur", "%6Eew"), so the folder
 * belongs at .../INBOX/%74mp/. A path in the old layout maps to exactly one
 * path in the new one (each raw reserved component below the account is
 * replaced), and back, so the index's folder path alone says which state a
 * folder is in; no other record is needed.
 *
 * Moving one folder from old to new (order is important):
 *   1. create new/{tmp,new,cur} (each directory fsync'd into its parent);
 *   2. hard-link every regular file of old/cur and old/new to the same name
 *      in new/cur and new/new, then fsync those directories: every message
 *      now has two names, and both survive a power cut;
 *   3. one index transaction: the folder's path and its visible rows'
 *      store_file now say new;
 *   4. unlink the old names (old/tmp holds only half-written files, which
 *      go as store_recover would remove them), then remove the emptied old
 *      directories.
 * A kill before 3 commits leaves the index at old with every file still
 * there: the next start does 1-2 again (a link that exists already and is
 * the same inode counts as done). A kill after 3 leaves the index at new
 * with every file linked there: the next start sees old directories beside
 * a folder whose path is new and finishes 4, linking again first any file
 * not yet in new. No step removes the last name of a message, so nothing is
 * lost at any instant; links never cross file systems (both names are in
 * the store).
 *
 * Deeper folders are finished first: "INBOX.new.cur" lived in
 * INBOX/new/cur/, which was also "INBOX.new"'s cur/. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "names.h"
#include "store_int.h"

/* Components of "mail/<user>/<account>/" before the folder's own. */
#define ACCOUNT_DEPTH 3

struct layout_move {
	const struct index_folder *f; /* borrowed */
	char *old;                    /* owned: store-relative, the old layout */
	char *new;                    /* owned: store-relative, the new layout */
	bool in_index_old;            /* the index still says old */
	int depth;                    /* components in old */
};

/* The other layout's form of path: to_new replaces each raw "cur", "new"
 * or "tmp" below the account directory with its escaped form, !to_new the
 * reverse. *r is NULL when the path has no such component. */
static int layout_map(const char *path, bool to_new, char **r, int *depth_r)
{
	struct buf out = BUF_INIT(PATH_MAX);
	const char *p = path;
	bool changed = false;
	int depth = 0, rc = 0;

	*r = NULL;
	while (rc == 0 && *p) {
		size_t len = strcspn(p, "/");
		struct buf one = BUF_INIT(16);
		const char *put = p;
		size_t put_len = len;

		if (depth >= ACCOUNT_DEPTH) {
			if (to_new && names_is_maildir_sub(p, len)) {
				/* names_folder_path of the raw name is its escaped form */
				char raw[4];

				memcpy(raw, p, 3);
				raw[3] = '\0';
				rc = names_folder_path(raw, 0, &one);
			} else if (!to_new && len == 5 && p[0] == '%') {
				char comp[6];

				memcpy(comp, p, 5);
				comp[5] = '\0';
				if (names_folder_view(comp) != comp)
					rc = buf_appends(&one, names_folder_view(comp));
			}
			if (rc == 0 && one.len) {
				put = one.data;
				put_len = one.len;
				changed = true;
			}
		}
		if (rc == 0 && depth > 0)
			rc = buf_appendc(&out, '/');
		if (rc == 0)
			rc = buf_append(&out, put, put_len);
		buf_release(&one);
		depth++;
		p += len;
		if (*p == '/')
			p++;
	}
	if (rc == 0 && changed)
		*r = buf_detach(&out);
	buf_release(&out);
	if (depth_r)
		*depth_r = depth;
	return rc;
}

static int abs_path(const struct store *s, const char *rel, const char *sub, char *out,
		    size_t outlen)
{
	int n = snprintf(out, outlen, "%s/%s%s%s", store_root(s), rel, sub ? "/" : "",
			 sub ? sub : "");

	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Gives every regular file of from/ a second name in to/ (same base name);
 * with unlink_old, then removes its name in from/. A name that exists in
 * to/ already must be the same file. *n_r counts the files seen. */
static int link_files(const char *from, const char *to, bool unlink_old, size_t *n_r)
{
	bool linked = false, unlinked = false;
	struct dirent *de;
	DIR *d;
	int to_fd = -1, rc = store_opendir(from, &d);

	if (rc || !d)
		return rc;
	to_fd = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (to_fd < 0) {
		rc = -errno;
		log_error("open(%s): %m", to);
		closedir(d);
		return rc;
	}
	while (rc == 0 && (de = readdir(d))) {
		struct stat a, b;

		if (fstatat(dirfd(d), de->d_name, &a, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(a.st_mode))
			continue;
		(*n_r)++;
		if (linkat(dirfd(d), de->d_name, to_fd, de->d_name, 0) == 0) {
			linked = true;
		} else if (errno != EEXIST) {
			rc = -errno;
			log_error("link(%s/%s, %s/%s): %m", from, de->d_name, to, de->d_name);
			break;
		} else if (fstatat(to_fd, de->d_name, &b, AT_SYMLINK_NOFOLLOW) < 0 ||
			   b.st_dev != a.st_dev || b.st_ino != a.st_ino) {
			/* Not ours to decide which one is the message. */
			log_error("%s/%s and %s/%s are different files; leaving both", from,
				  de->d_name, to, de->d_name);
			rc = -EEXIST;
			break;
		}
		if (!unlink_old)
			continue;
		/* The new name must be durable before the old one goes. */
		if (linked) {
			rc = fsync(to_fd) < 0 ? -errno : 0;
			if (rc)
				log_error("fsync(%s): %m", to);
			linked = false;
		}
		if (rc == 0 && unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			rc = -errno;
			log_error("unlink(%s/%s): %m", from, de->d_name);
		}
		unlinked = true;
	}
	if (rc == 0 && linked && fsync(to_fd) < 0) {
		rc = -errno;
		log_error("fsync(%s): %m", to);
	}
	if (rc == 0 && unlinked)
		rc = store_fsync_dir(from);
	close(to_fd);
	closedir(d);
	return rc;
}

/* Removes the regular files of dir (half-written messages of old/tmp). */
static int drop_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		struct stat st;

		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			rc = -errno;
			log_error("unlink(%s/%s): %m", dir, de->d_name);
		}
	}
	closedir(d);
	return rc;
}

static bool is_folder_path(const struct index_folder *fs, size_t n, const char *path, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(fs[i].path) == len && memcmp(fs[i].path, path, len) == 0)
			return true;
	return false;
}

/* Removes the old Maildir's empty directories, then the emptied
 * directories above it, stopping at the account directory, at any folder's
 * Maildir or its cur/, new/ or tmp/, and at the first that is not empty. */
static void remove_old_dirs(const struct store *s, const struct layout_move *m,
			    const struct index_folder *fs, size_t n)
{
	static const char *const subs[] = { "cur", "new", "tmp" };
	char path[PATH_MAX], rel[PATH_MAX];
	size_t len;

	for (int i = 0; i < 3; i++)
		if (abs_path(s, m->old, subs[i], path, sizeof path) == 0 && rmdir(path) < 0 &&
		    errno != ENOENT)
			return;       /* not empty: a deeper folder is not finished */
	snprintf(rel, sizeof rel, "%s", m->old);
	for (int depth = m->depth; depth > ACCOUNT_DEPTH; depth--) {
		char *slash = strrchr(rel, '/');

		len = strlen(rel);
		if (!slash || is_folder_path(fs, n, rel, len) ||
		    (names_is_maildir_sub(slash + 1, strlen(slash + 1)) &&
		     is_folder_path(fs, n, rel, (size_t)(slash - rel))))
			break;
		if (abs_path(s, rel, NULL, path, sizeof path) || (rmdir(path) < 0 && errno != ENOENT))
			break;
		*slash = '\0';
	}
}

/* Step 4, and the end of a move a kill interrupted after step 3. */
static int finish_move(const struct store *s, const struct layout_move *m)
{
	static const char *const keep[] = { "cur", "new" };
	char from[PATH_MAX], to[PATH_MAX];
	size_t n = 0;
	int rc = 0;

	for (int i = 0; rc == 0 && i < 2; i++) {
		rc = abs_path(s, m->old, keep[i], from, sizeof from);
		if (rc == 0)
			rc = abs_path(s, m->new, keep[i], to, sizeof to);
		if (rc == 0 && is_dir(from))
			rc = link_files(from, to, true, &n);
	}
	if (rc == 0)
		rc = abs_path(s, m->old, "tmp", from, sizeof from);
	if (rc == 0)
		rc = drop_files(from);
	return rc;
}

/* Steps 1 to 3. */
static int move_folder(const struct store *s, struct index *ix, struct layout_move *m)
{
	static const char *const keep[] = { "cur", "new" };
	char from[PATH_MAX], to[PATH_MAX];
	size_t files = 0, rows = 0;
	int rc = store_maildir_create(s, m->new);

	for (int i = 0; rc == 0 && i < 2; i++) {
		rc = abs_path(s, m->old, keep[i], from, sizeof from);
		if (rc == 0)
			rc = abs_path(s, m->new, keep[i], to, sizeof to);
		if (rc == 0)
			rc = link_files(from, to, false, &files);
	}
	if (rc == 0)
		rc = index_folder_move(ix, m->f->id, m->old, m->new, &rows);
	if (rc == 0)
		log_info("%s/%s %s: moved from %s to %s (%zu files, %zu messages)", m->f->user,
			 m->f->account, m->f->name, m->old, m->new, files, rows);
	return rc;
}

/* ---- folders that share one path ----
 *
 * Before index_folder_ensure made local paths unique, two server folders
 * could get one path ("a.b" with '.' and "a/b" with '/') and so one
 * Maildir, where recovery took each one's files for the other's orphans.
 * The folder created first keeps the path; each other one moves to a
 * unique one with only the files its own rows name, in the same order as a
 * layout move: link into the new Maildir and fsync, one transaction (path,
 * rows, note), unlink the old names. Killed before the commit: the index
 * still says the shared path with every file there, and the next start
 * does it again (existing links that are the same file count as done).
 * Killed after it: the old names are files no row of the folder that
 * stays names; the kill left the start unclean, so recovery removes them
 * as the orphans they now are. */

struct split_ctx {
	const char *old_cur;   /* "<old path>/cur/", store-relative */
	char **files;          /* owned: base names of the folder's visible files there */
	size_t n, cap;
	int rc;
};

static int split_collect(void *ctx, const struct index_msg *m)
{
	struct split_ctx *c = ctx;
	size_t len = strlen(c->old_cur);

	if (strncmp(m->store_file, c->old_cur, len) != 0 || strchr(m->store_file + len, '/'))
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		char **v = realloc(c->files, cap * sizeof *v);

		if (!v)
			return c->rc = -ENOMEM;
		c->files = v;
		c->cap = cap;
	}
	if (!(c->files[c->n] = strdup(m->store_file + len)))
		return c->rc = -ENOMEM;
	c->n++;
	return 0;
}

/* Links (or with unlink_old, unlinks after linking) each named file of
 * from/ into to/. A file already gone from from/ is skipped: recovery
 * drops its row and the next sync fetches it again. */
static int link_named(const char *from, const char *to, char **files, size_t n, bool unlink_old)
{
	int from_fd = open(from, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int to_fd = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (from_fd < 0 || to_fd < 0) {
		rc = -errno;
		log_error("open(%s): %m", from_fd < 0 ? from : to);
		goto out;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct stat a, b;

		if (unlink_old) {
			if (fstatat(to_fd, files[i], &b, AT_SYMLINK_NOFOLLOW) == 0 &&
			    unlinkat(from_fd, files[i], 0) < 0 && errno != ENOENT) {
				rc = -errno;
				log_error("unlink(%s/%s): %m", from, files[i]);
			}
			continue;
		}
		if (fstatat(from_fd, files[i], &a, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (linkat(from_fd, files[i], to_fd, files[i], 0) == 0)
			continue;
		if (errno != EEXIST || fstatat(to_fd, files[i], &b, AT_SYMLINK_NOFOLLOW) < 0 ||
		    a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
			rc = errno == EEXIST ? -EEXIST : -errno;
			log_error("link(%s/%s, %s/%s): %s", from, files[i], to, files[i], strerror(-rc));
		}
	}
	if (rc == 0 && fsync(unlink_old ? from_fd : to_fd) < 0) {
		rc = -errno;
		log_error("fsync(%s): %m", unlink_old ? from : to);
	}
out:
	if (from_fd >= 0)
		close(from_fd);
	if (to_fd >= 0)
		close(to_fd);
	return rc;
}

static int split_folder(struct store *s, struct index *ix, const struct index_folder *f,
			const struct index_folder *keeper)
{
	struct split_ctx c = { 0 };
	char *to = NULL, *note = NULL, *old_cur = NULL, from_abs[PATH_MAX], to_abs[PATH_MAX];
	size_t rows = 0;
	int rc = index_folder_unique_path(ix, f->path, &to);

	if (rc == 0 && (asprintf(&old_cur, "%s/cur/", f->path) < 0 ||
			asprintf(&note, "stored as %s: its own path %s is folder \"%s\"'s", to,
				 f->path, keeper->name) < 0))
		rc = -ENOMEM;
	c.old_cur = old_cur;
	if (rc == 0)
		rc = index_msg_foreach(ix, f->id, MSG_VISIBLE_MASK, split_collect, &c);
	if (rc == 0)
		rc = c.rc;
	if (rc == 0)
		rc = store_maildir_create(s, to);
	if (rc == 0)
		rc = abs_path(s, f->path, "cur", from_abs, sizeof from_abs);
	if (rc == 0)
		rc = abs_path(s, to, "cur", to_abs, sizeof to_abs);
	if (rc == 0)
		rc = link_named(from_abs, to_abs, c.files, c.n, false);
	if (rc == 0)
		rc = index_begin(ix);
	if (rc == 0) {
		rc = index_folder_move(ix, f->id, f->path, to, &rows);
		if (rc == 0)
			rc = index_folder_set_note(ix, f->id, note);
		rc = index_end(ix, rc);
	}
	if (rc == 0)
		rc = link_named(from_abs, to_abs, c.files, c.n, true);
	if (rc == 0)
		log_warn("%s/%s %s: shared %s with folder \"%s\"; moved to %s (%zu messages)", f->user,
			 f->account, f->name, f->path, keeper->name, to, rows);
	else
		log_error("%s/%s %s: shares %s with folder \"%s\" and cannot move: %s", f->user,
			  f->account, f->name, f->path, keeper->name, strerror(-rc));
	for (size_t i = 0; i < c.n; i++)
		free(c.files[i]);
	free(c.files);
	free(to);
	free(note);
	free(old_cur);
	return rc;
}

/* Each folder whose path a folder with a lower id has too: *n_r counts
 * them; with repair, each moves (split_folder). */
static int split_shared(struct store *s, struct index *ix, bool repair, size_t *n_r)
{
	struct index_folder *fs = NULL;
	size_t n = 0;
	int rc = index_folder_list(ix, NULL, NULL, &fs, &n), first = 0;

	*n_r = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct index_folder *keeper = NULL;

		for (size_t j = 0; j < n; j++)
			if (j != i && fs[j].id < fs[i].id && strcmp(fs[j].path, fs[i].path) == 0 &&
			    (!keeper || fs[j].id < keeper->id))
				keeper = &fs[j];
		if (!keeper)
			continue;
		(*n_r)++;
		if (repair && split_folder(s, ix, &fs[i], keeper) < 0 && !first)
			first = -EEXIST;
	}
	index_folder_array_free(&fs, n);
	return rc ? rc : first;
}

static int by_depth_desc(const void *a, const void *b)
{
	const struct layout_move *x = a, *y = b;

	return y->depth - x->depth;
}

/* Whether folder f has a move to do (its path is in the old layout) or to
 * finish (old directories beside it): *due_r, with m filled in. m is left
 * zeroed when not due. */
static int plan_move(const struct store *s, const struct index_folder *f, struct layout_move *m,
		     bool *due_r)
{
	char dir[PATH_MAX];
	bool left = false;
	int rc;

	m->f = f;
	rc = layout_map(f->path, true, &m->new, &m->depth);
	if (rc == 0 && m->new) {
		m->old = strdup(f->path);
		m->in_index_old = true;
		rc = m->old ? 0 : -ENOMEM;
	} else if (rc == 0) {
		rc = layout_map(f->path, false, &m->old, &m->depth);
		if (rc == 0 && m->old)
			m->new = strdup(f->path);
		if (rc == 0 && m->old && !m->new)
			rc = -ENOMEM;
	}
	/* Old directories beside a moved folder: a move to finish. */
	for (int k = 0; rc == 0 && m->old && !m->in_index_old && k < 3 && !left; k++)
		left = abs_path(s, m->old, k == 0 ? "cur" : k == 1 ? "new" : "tmp", dir,
				sizeof dir) == 0 && is_dir(dir);
	*due_r = rc == 0 && (m->in_index_old || left);
	if (!*due_r) {
		free(m->old);
		free(m->new);
		memset(m, 0, sizeof *m);
	}
	return rc;
}

int store_migrate_layout(struct store *s, struct index *ix, bool repair, size_t *n_r)
{
	struct index_folder *fs = NULL;
	struct layout_move *mv = NULL;
	size_t n = 0, nmv = 0;
	int rc, first = 0;

	*n_r = 0;
	/* First, so that two folders sharing an old-layout path do not both
	 * move to one new path. */
	rc = split_shared(s, ix, repair, &nmv);
	if (rc && rc != -EEXIST)
		return rc;
	first = rc;
	*n_r = nmv;
	nmv = 0;
	rc = index_folder_list(ix, NULL, NULL, &fs, &n);
	if (rc)
		return rc;
	mv = calloc(n ? n : 1, sizeof *mv);
	if (!mv) {
		index_folder_array_free(&fs, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		bool due = false;

		if (!store_rel_ok(fs[i].path))
			continue;     /* store_recover reports it */
		rc = plan_move(s, &fs[i], &mv[nmv], &due);
		if (due)
			nmv++;
	}
	*n_r += nmv;
	if (rc || !repair || nmv == 0)
		goto out;

	for (size_t i = 0; i < nmv; i++) {
		if (!mv[i].in_index_old)
			continue;
		rc = move_folder(s, ix, &mv[i]);
		if (rc) {
			log_error("%s/%s %s: cannot move from %s to %s: %s; the folder stays where it is",
				  mv[i].f->user, mv[i].f->account, mv[i].f->name, mv[i].old,
				  mv[i].new, strerror(-rc));
			if (!first)
				first = rc;
			mv[i].in_index_old = true;
			mv[i].depth = -1;      /* nothing of it to finish */
			continue;
		}
		mv[i].in_index_old = false;
	}
	/* The index is final: refresh the list the directory walk stops at. */
	index_folder_array_free(&fs, n);
	for (size_t i = 0; i < nmv; i++)
		mv[i].f = NULL;
	rc = index_folder_list(ix, NULL, NULL, &fs, &n);
	if (rc)
		goto out;
	qsort(mv, nmv, sizeof *mv, by_depth_desc);
	for (size_t i = 0; i < nmv; i++) {
		if (mv[i].in_index_old)
			continue;
		rc = finish_move(s, &mv[i]);
		if (rc == 0)
			remove_old_dirs(s, &mv[i], fs, n);
		else if (!first)
			first = rc;
	}
out:
	if (rc == 0)
		rc = first;
	for (size_t i = 0; i < nmv; i++) {
		free(mv[i].old);
		free(mv[i].new);
	}
	free(mv);
	index_folder_array_free(&fs, n);
	return rc;
}
