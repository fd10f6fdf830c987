/* Unit tests for cache/store.c: batches and the write order, trash,
 * restore, purge, crash recovery (each crash point made by hand), and the
 * one-writer lock across processes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../cache/log.h"
#include "../../cache/store.h"
#include "store_fixture.h"

#define TRASH_DIR "trash/alice/work/INBOX"

static void abs_path(struct fixture *fx, const char *rel, char *out, size_t n)
{
	assert_int_equal(store_path(fx->s, rel, out, n), 0);
}

/* Regular files in a store-relative directory. */
static int count_files(struct fixture *fx, const char *rel)
{
	char path[512];
	struct dirent *de;
	DIR *d;
	int n = 0;

	abs_path(fx, rel, path, sizeof path);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static bool exists_rel(struct fixture *fx, const char *rel)
{
	char path[512];

	abs_path(fx, rel, path, sizeof path);
	return access(path, F_OK) == 0;
}

static void make_file(struct fixture *fx, const char *rel, const char *content)
{
	char path[512];
	FILE *f;

	abs_path(fx, rel, path, sizeof path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

/* Writes content in small pieces and finishes the message. */
static void add_msg(struct store_batch *b, const char *remote_id, const char *view,
		    const char *flags, const char *content)
{
	struct store_msg *m;
	struct index_msg meta = { 0 };
	size_t len = strlen(content);

	assert_int_equal(store_msg_begin(b, &m), 0);
	for (size_t off = 0; off < len; off += 7)
		assert_int_equal(store_msg_write(m, content + off, len - off < 7 ? len - off : 7), 0);
	meta.remote_id = remote_id ? strdup(remote_id) : NULL;
	meta.view_name = strdup(view);
	meta.subject = strdup("subject");
	meta.flags = flags ? strdup(flags) : NULL;
	meta.date = 1700000000;
	meta.state = MSG_ACTIVE;
	assert_int_equal(store_msg_finish(m, &meta), 0);
	/* The strings were taken. */
	assert_null(meta.view_name);
	assert_null(meta.remote_id);
	assert_null(meta.subject);
}

/* Commits messages "1".."n" of folder f named "m<i>.eml" with content
 * "message <i>\n" (in folders other than INBOX "message <i> of <name>\n"). */
static void commit_in(struct fixture *fx, const struct index_folder *f, int n, int64_t *ids)
{
	struct store_batch *b;
	int64_t *got;
	size_t ngot;

	assert_int_equal(store_batch_create(fx->s, f, &b), 0);
	for (int i = 1; i <= n; i++) {
		char rid[16], view[32], body[128];

		snprintf(rid, sizeof rid, "%d", i);
		snprintf(view, sizeof view, "m%d.eml", i);
		if (strcmp(f->name, "INBOX") == 0)
			snprintf(body, sizeof body, "message %d\n", i);
		else
			snprintf(body, sizeof body, "message %d of %s\n", i, f->name);
		add_msg(b, rid, view, "\\Seen", body);
	}
	assert_int_equal(store_batch_count(b), (size_t)n);
	assert_int_equal(store_batch_commit(b, fx->ix, 1000, &got, &ngot), 0);
	assert_int_equal(ngot, (size_t)n);
	assert_int_equal(store_batch_count(b), 0);
	for (int i = 0; i < n; i++)
		ids[i] = got[i];
	free(got);
	store_batch_destroy(&b);
	assert_null(b);
}

static void commit_n(struct fixture *fx, int n, int64_t *ids)
{
	commit_in(fx, &fx->f, n, ids);
}

static void get_msg(struct fixture *fx, int64_t id, struct index_msg *m)
{
	assert_int_equal(index_msg_get(fx->ix, id, m), 0);
}

static void test_open(void **state)
{
	struct fixture *fx = *state;
	struct store *s2;
	struct stat st;
	char path[512];

	assert_int_equal(stat(fx->root, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_true(exists_rel(fx, "mail"));
	assert_true(exists_rel(fx, "trash"));
	assert_true(exists_rel(fx, "index.db"));
	assert_string_equal(store_root(fx->s), fx->root);

	/* A store left open to others is closed up again. */
	assert_int_equal(chmod(fx->root, 0755), 0);
	assert_int_equal(store_open(fx->root, &s2), 0);
	store_close(&s2);
	assert_null(s2);
	assert_int_equal(stat(fx->root, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	/* Paths never leave the root. */
	assert_int_equal(store_path(fx->s, "../x", path, sizeof path), -EINVAL);
	assert_int_equal(store_path(fx->s, "mail/../../x", path, sizeof path), -EINVAL);
	assert_int_equal(store_path(fx->s, "/etc/passwd", path, sizeof path), -EINVAL);
	assert_int_equal(store_path(fx->s, "mail/./x", path, sizeof path), -EINVAL);
	assert_int_equal(store_path(fx->s, "", path, sizeof path), -EINVAL);
	assert_int_equal(store_path(fx->s, "mail/x", path, 8), -ENAMETOOLONG);
	assert_int_equal(store_open_file(fx->s, "../index.db"), -EINVAL);
	assert_int_equal(store_open_file(fx->s, "mail/none"), -ENOENT);
}

static void test_open_foreign_owner(void **state)
{
	struct fixture *fx = *state;
	struct store *s2 = NULL;
	char other[160];

	/* A root that belongs to someone else is refused. As root, make one;
	 * otherwise "/" (owned by root) serves. */
	if (geteuid() == 0) {
		snprintf(other, sizeof other, "%s/foreign", fx->dir);
		assert_int_equal(mkdir(other, 0700), 0);
		assert_int_equal(chown(other, 12345, 12345), 0);
	} else {
		strcpy(other, "/");
	}
	assert_int_equal(store_open(other, &s2), -EPERM);
	assert_null(s2);
	assert_int_equal(store_open("", &s2), -EINVAL);

	/* A missing root is created, parents included, 0700. */
	snprintf(other, sizeof other, "%s/a/b/store", fx->dir);
	assert_int_equal(store_open(other, &s2), 0);
	store_close(&s2);
	{
		struct stat st;

		assert_int_equal(stat(other, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0700);
	}
}

static void test_batch_commit(void **state)
{
	struct fixture *fx = *state;
	struct store_batch *b;
	struct index_msg m;
	struct index_folder f;
	int64_t *ids;
	size_t n;
	regex_t re;
	char path[512], buf[64];
	struct stat st;
	int fd;

	assert_int_equal(store_batch_create(fx->s, &fx->f, &b), 0);
	assert_true(exists_rel(fx, FOLDER_PATH "/tmp"));
	assert_true(exists_rel(fx, FOLDER_PATH "/new"));
	assert_true(exists_rel(fx, FOLDER_PATH "/cur"));
	add_msg(b, "1", "one.eml", "\\Seen \\Flagged", "From: a\r\n\r\nbody one\r\n");
	add_msg(b, "2", "two.eml", NULL, "From: b\r\n\r\nbody two, longer\r\n");
	add_msg(b, "3", "three.eml", "\\Answered", "x");
	assert_int_equal(store_batch_count(b), 3);
	assert_int_equal(store_batch_bytes(b), 21 + 29 + 1);
	/* Written, not yet visible. */
	assert_int_equal(count_files(fx, FOLDER_PATH "/tmp"), 3);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 0);
	assert_int_equal(index_msg_lookup(fx->ix, fx->f.id, "one.eml", &m), -ENOENT);

	assert_int_equal(store_batch_commit(b, fx->ix, 4242, &ids, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(store_batch_count(b), 0);
	assert_int_equal(store_batch_bytes(b), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/tmp"), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 3);

	assert_int_equal(regcomp(&re, "^" FOLDER_PATH "/cur/[0-9]+\\.M[0-9]+P[0-9]+Q[0-9]+\\.maildisk:2,FS$",
				 REG_EXTENDED | REG_NOSUB), 0);
	get_msg(fx, ids[0], &m);
	assert_int_equal(m.folder_id, fx->f.id);
	assert_string_equal(m.remote_id, "1");
	assert_string_equal(m.view_name, "one.eml");
	assert_string_equal(m.subject, "subject");
	assert_int_equal(m.size, 21);
	assert_int_equal(m.state, MSG_ACTIVE);
	assert_int_equal(regexec(&re, m.store_file, 0, NULL, 0), 0);
	/* The file is the bytes written, 0600. */
	abs_path(fx, m.store_file, path, sizeof path);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 21);
	fd = store_open_file(fx->s, m.store_file);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof buf), 21);
	assert_memory_equal(buf, "From: a\r\n\r\nbody one\r\n", 21);
	close(fd);
	index_msg_release(&m);
	regfree(&re);

	get_msg(fx, ids[1], &m);
	assert_true(strlen(m.store_file) > 3 && strcmp(m.store_file + strlen(m.store_file) - 3, ":2,") == 0);
	index_msg_release(&m);
	get_msg(fx, ids[2], &m);
	assert_true(strcmp(m.store_file + strlen(m.store_file) - 4, ":2,R") == 0);
	index_msg_release(&m);

	/* The folder's content changed at "now". */
	assert_int_equal(index_folder_get(fx->ix, fx->f.id, &f), 0);
	assert_int_equal(f.changed_at, 4242);
	assert_int_equal(f.n_active, 3);
	index_folder_release(&f);
	free(ids);

	/* The batch is reusable; an empty commit is a no-op. */
	assert_int_equal(store_batch_commit(b, fx->ix, 1, &ids, &n), 0);
	assert_int_equal(n, 0);
	assert_null(ids);
	add_msg(b, "4", "four.eml", NULL, "four");
	assert_int_equal(store_batch_commit(b, fx->ix, 1, NULL, NULL), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 4);
	store_batch_destroy(&b);
}

static void test_batch_large_message(void **state)
{
	struct fixture *fx = *state;
	struct store_batch *b;
	struct store_msg *m;
	struct index_msg meta = { 0 }, got;
	static char chunk[65536];
	int64_t *ids;
	size_t n;

	for (size_t i = 0; i < sizeof chunk; i++)
		chunk[i] = (char)('a' + i % 26);
	assert_int_equal(store_batch_create(fx->s, &fx->f, &b), 0);
	assert_int_equal(store_msg_begin(b, &m), 0);
	for (int i = 0; i < 80; i++)
		assert_int_equal(store_msg_write(m, chunk, sizeof chunk), 0);
	meta.remote_id = strdup("big");
	meta.view_name = strdup("big.eml");
	assert_int_equal(store_msg_finish(m, &meta), 0);
	assert_int_equal(store_batch_bytes(b), 80 * sizeof chunk);
	assert_int_equal(store_batch_commit(b, fx->ix, 1, &ids, &n), 0);
	get_msg(fx, ids[0], &got);
	assert_int_equal(got.size, 80 * (int64_t)sizeof chunk);
	index_msg_release(&got);
	free(ids);
	store_batch_destroy(&b);
}

static void test_batch_discard(void **state)
{
	struct fixture *fx = *state;
	struct store_batch *b;
	struct store_msg *m;
	struct index_msg meta = { 0 };
	struct index_folder f;

	assert_int_equal(store_batch_create(fx->s, &fx->f, &b), 0);
	/* An aborted message leaves nothing. */
	assert_int_equal(store_msg_begin(b, &m), 0);
	assert_int_equal(store_msg_write(m, "partial", 7), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/tmp"), 1);
	store_msg_abort(m);
	assert_int_equal(count_files(fx, FOLDER_PATH "/tmp"), 0);
	assert_int_equal(store_batch_count(b), 0);

	/* A view name that could escape the folder is refused. */
	assert_int_equal(store_msg_begin(b, &m), 0);
	meta.view_name = strdup("../evil.eml");
	assert_int_equal(store_msg_finish(m, &meta), -EINVAL);
	store_msg_abort(m);
	free(meta.view_name);

	/* Finished and unfinished messages, never committed: destroy removes
	 * them all and the index never hears of them. */
	add_msg(b, "1", "one.eml", NULL, "one");
	add_msg(b, "2", "two.eml", NULL, "two");
	assert_int_equal(store_msg_begin(b, &m), 0);
	assert_int_equal(store_msg_write(m, "half", 4), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/tmp"), 3);
	store_batch_destroy(&b);
	assert_null(b);
	store_batch_destroy(&b);      /* safe on NULL */
	assert_int_equal(count_files(fx, FOLDER_PATH "/tmp"), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 0);
	assert_int_equal(index_folder_get(fx->ix, fx->f.id, &f), 0);
	assert_int_equal(f.n_active, 0);
	index_folder_release(&f);
}

static void test_batch_conflicts(void **state)
{
	struct fixture *fx = *state;
	struct store_batch *b;
	struct index_msg m;
	int64_t ids[2], *got;
	size_t n;

	commit_n(fx, 2, ids);
	/* The same remote id again: the new copy is dropped, not indexed twice. */
	assert_int_equal(store_batch_create(fx->s, &fx->f, &b), 0);
	add_msg(b, "1", "dup.eml", NULL, "dup");
	add_msg(b, "3", "m3.eml", NULL, "three");
	assert_int_equal(store_batch_commit(b, fx->ix, 1, &got, &n), 0);
	assert_int_equal(n, 1);
	get_msg(fx, got[0], &m);
	assert_string_equal(m.remote_id, "3");
	index_msg_release(&m);
	free(got);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 3);
	assert_int_equal(index_msg_lookup(fx->ix, fx->f.id, "dup.eml", &m), -ENOENT);

	/* A taken view name (say a restored copy) gets " (2)". */
	add_msg(b, "4", "m1.eml", NULL, "four");
	assert_int_equal(store_batch_commit(b, fx->ix, 1, &got, &n), 0);
	assert_int_equal(n, 1);
	get_msg(fx, got[0], &m);
	assert_string_equal(m.view_name, "m1 (2).eml");
	index_msg_release(&m);
	free(got);
	store_batch_destroy(&b);
}

static void test_batch_commit_fails(void **state)
{
	struct fixture *fx = *state;
	struct store_batch *b;
	struct index *ro;
	int64_t *ids = NULL;
	size_t n = 99;

	/* The rows cannot be written (read-only connection): the files that
	 * were renamed into cur/ are taken back. */
	assert_int_equal(store_index_open(fx->s, true, &ro), 0);
	assert_int_equal(store_batch_create(fx->s, &fx->f, &b), 0);
	add_msg(b, "1", "one.eml", NULL, "one");
	add_msg(b, "2", "two.eml", NULL, "two");
	assert_int_equal(store_batch_commit(b, ro, 1, &ids, &n), -EROFS);
	assert_null(ids);
	assert_int_equal(n, 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/tmp"), 0);
	assert_int_equal(store_batch_count(b), 0);
	store_batch_destroy(&b);
	index_close(&ro);
}

static void test_trash_restore_purge(void **state)
{
	struct fixture *fx = *state;
	int64_t ids[4], sync_id;
	struct index_msg m;
	struct index_folder f;
	struct store_batch *b;
	char trash_file[512], *base;
	size_t n;

	commit_n(fx, 4, ids);
	assert_int_equal(index_sync_start(fx->ix, "alice", "work", 2000, &sync_id), 0);
	assert_int_equal(store_trash(fx->s, fx->ix, ids, 2, sync_id, "vanished upstream", 2000), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 2);
	assert_int_equal(count_files(fx, TRASH_DIR), 2);
	get_msg(fx, ids[0], &m);
	assert_int_equal(m.state, MSG_TRASHED);
	assert_int_equal(m.trash_sync, sync_id);
	assert_int_equal(m.trashed_at, 2000);
	assert_string_equal(m.trash_reason, "vanished upstream");
	assert_memory_equal(m.store_file, TRASH_DIR "/", strlen(TRASH_DIR) + 1);
	assert_true(exists_rel(fx, m.store_file));
	snprintf(trash_file, sizeof trash_file, "%s", m.store_file);
	index_msg_release(&m);
	assert_int_equal(index_folder_get(fx->ix, fx->f.id, &f), 0);
	assert_int_equal(f.n_active, 2);
	assert_int_equal(f.n_trashed, 2);
	assert_int_equal(f.changed_at, 2000);
	index_folder_release(&f);

	/* Only active messages are trashed; nothing moves when one is not. */
	{
		int64_t mixed[2] = { ids[2], ids[0] };

		assert_int_equal(store_trash(fx->s, fx->ix, mixed, 2, sync_id, "x", 1), -EINVAL);
		assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 2);
	}
	assert_int_equal(store_trash(fx->s, fx->ix, NULL, 0, 0, "x", 1), 0);
	{
		int64_t twice[2] = { ids[2], ids[2] };

		assert_int_equal(store_trash(fx->s, fx->ix, twice, 2, sync_id, "x", 1), -EINVAL);
		assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 2);
	}

	/* Restore: back into cur/, visible, local only. */
	assert_int_equal(store_restore(fx->s, fx->ix, ids[0]), 0);
	assert_false(exists_rel(fx, trash_file));
	get_msg(fx, ids[0], &m);
	assert_int_equal(m.state, MSG_RESTORED);
	assert_null(m.remote_id);
	assert_string_equal(m.view_name, "m1.eml");
	assert_memory_equal(m.store_file, FOLDER_PATH "/cur/", strlen(FOLDER_PATH) + 5);
	base = strrchr(trash_file, '/') + 1;
	assert_string_equal(strrchr(m.store_file, '/') + 1, base);
	assert_true(exists_rel(fx, m.store_file));
	index_msg_release(&m);
	assert_int_equal(store_restore(fx->s, fx->ix, ids[0]), -EINVAL);   /* not in the trash */

	/* Restoring under a name a new message took meanwhile. */
	assert_int_equal(store_batch_create(fx->s, &fx->f, &b), 0);
	add_msg(b, "22", "m2.eml", NULL, "new two");
	assert_int_equal(store_batch_commit(b, fx->ix, 1, NULL, NULL), 0);
	store_batch_destroy(&b);
	assert_int_equal(store_restore(fx->s, fx->ix, ids[1]), 0);
	get_msg(fx, ids[1], &m);
	assert_string_equal(m.view_name, "m2 (restored 1).eml");
	assert_int_equal(m.state, MSG_RESTORED);
	index_msg_release(&m);

	/* Purge: only what was trashed before the cutoff. */
	assert_int_equal(store_trash(fx->s, fx->ix, &ids[2], 1, sync_id, "old", 100), 0);
	assert_int_equal(store_trash(fx->s, fx->ix, &ids[3], 1, sync_id, "new", 5000), 0);
	get_msg(fx, ids[2], &m);
	snprintf(trash_file, sizeof trash_file, "%s", m.store_file);
	index_msg_release(&m);
	assert_int_equal(store_purge(fx->s, fx->ix, 1000, &n), 0);
	assert_int_equal(n, 1);
	assert_false(exists_rel(fx, trash_file));
	assert_int_equal(index_msg_get(fx->ix, ids[2], &m), -ENOENT);
	get_msg(fx, ids[3], &m);
	assert_int_equal(m.state, MSG_TRASHED);
	index_msg_release(&m);
	assert_int_equal(store_purge(fx->s, fx->ix, 1000, &n), 0);
	assert_int_equal(n, 0);
	/* A trashed row whose file is already gone is purged too. */
	get_msg(fx, ids[3], &m);
	abs_path(fx, m.store_file, trash_file, sizeof trash_file);
	index_msg_release(&m);
	assert_int_equal(unlink(trash_file), 0);
	assert_int_equal(store_purge(fx->s, fx->ix, 10000, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(count_files(fx, TRASH_DIR), 0);
}

static void report_eq(const struct store_report *r, size_t tmp, size_t orphans, size_t trash,
		      size_t missing, size_t size)
{
	assert_int_equal(r->tmp_removed, tmp);
	assert_int_equal(r->orphans_removed, orphans);
	assert_int_equal(r->trash_completed, trash);
	assert_int_equal(r->rows_missing_file, missing);
	assert_int_equal(r->size_mismatch, size);
}

static void test_recover(void **state)
{
	struct fixture *fx = *state;
	struct store_report r;
	struct index_msg m;
	int64_t ids[6];
	char files[6][512], from[512], to[512], *renamed_rel;

	commit_n(fx, 6, ids);
	for (int i = 0; i < 6; i++) {
		get_msg(fx, ids[i], &m);
		snprintf(files[i], sizeof files[i], "%s", m.store_file);
		index_msg_release(&m);
	}
	/* A clean store needs nothing. */
	assert_int_equal(store_recover(fx->s, fx->ix, true, &r), 0);
	report_eq(&r, 0, 0, 0, 0, 0);

	/* Crash while writing: a half file in tmp/. */
	make_file(fx, FOLDER_PATH "/tmp/1.M1P1Q1.maildisk", "half");
	/* Crash between rename and commit: a file in cur/ without a row. */
	make_file(fx, FOLDER_PATH "/cur/2.M2P2Q2.maildisk:2,S", "orphan");
	/* Crash inside store_trash: an active row whose file is in trash/. */
	abs_path(fx, files[2], from, sizeof from);
	abs_path(fx, "trash/alice", to, sizeof to);
	assert_int_equal(mkdir(to, 0700), 0);
	abs_path(fx, "trash/alice/work", to, sizeof to);
	assert_int_equal(mkdir(to, 0700), 0);
	abs_path(fx, TRASH_DIR, to, sizeof to);
	assert_int_equal(mkdir(to, 0700), 0);
	snprintf(to + strlen(to), sizeof to - strlen(to), "/%s", strrchr(files[2], '/') + 1);
	assert_int_equal(rename(from, to), 0);
	/* A row whose file is gone everywhere. */
	abs_path(fx, files[3], from, sizeof from);
	assert_int_equal(unlink(from), 0);
	/* A file whose size no longer matches its row. */
	{
		FILE *f;

		abs_path(fx, files[1], from, sizeof from);
		f = fopen(from, "a");
		assert_non_null(f);
		fputs("more", f);
		fclose(f);
	}
	/* Crash inside store_restore: a trashed row whose file is back in cur/. */
	assert_int_equal(store_trash(fx->s, fx->ix, &ids[4], 1, 0, "gone", 10), 0);
	get_msg(fx, ids[4], &m);
	abs_path(fx, m.store_file, from, sizeof from);
	abs_path(fx, files[4], to, sizeof to);
	index_msg_release(&m);
	assert_int_equal(rename(from, to), 0);
	/* Another Maildir reader marked message 6 flagged: new name, same file. */
	abs_path(fx, files[5], from, sizeof from);
	assert_int_equal(asprintf(&renamed_rel, "%sF", files[5]) > 0, 1);
	abs_path(fx, renamed_rel, to, sizeof to);
	assert_int_equal(rename(from, to), 0);

	/* Counting only changes nothing. */
	assert_int_equal(store_recover(fx->s, fx->ix, false, &r), 0);
	report_eq(&r, 1, 1, 2, 1, 1);
	assert_int_equal(count_files(fx, FOLDER_PATH "/tmp"), 1);
	assert_true(exists_rel(fx, FOLDER_PATH "/cur/2.M2P2Q2.maildisk:2,S"));
	get_msg(fx, ids[3], &m);
	index_msg_release(&m);
	get_msg(fx, ids[2], &m);
	assert_int_equal(m.state, MSG_ACTIVE);
	index_msg_release(&m);

	/* Repair. */
	assert_int_equal(store_recover(fx->s, fx->ix, true, &r), 0);
	report_eq(&r, 1, 1, 2, 1, 1);
	assert_int_equal(count_files(fx, FOLDER_PATH "/tmp"), 0);
	assert_false(exists_rel(fx, FOLDER_PATH "/cur/2.M2P2Q2.maildisk:2,S"));
	get_msg(fx, ids[2], &m);
	assert_int_equal(m.state, MSG_TRASHED);
	assert_string_equal(m.trash_reason, "recovered after crash");
	assert_true(m.trashed_at > 0);
	assert_memory_equal(m.store_file, TRASH_DIR "/", strlen(TRASH_DIR) + 1);
	assert_true(exists_rel(fx, m.store_file));
	index_msg_release(&m);
	assert_int_equal(index_msg_get(fx->ix, ids[3], &m), -ENOENT);
	get_msg(fx, ids[4], &m);
	assert_int_equal(m.state, MSG_RESTORED);
	assert_string_equal(m.store_file, files[4]);
	index_msg_release(&m);
	get_msg(fx, ids[5], &m);
	assert_string_equal(m.store_file, renamed_rel);
	assert_int_equal(m.state, MSG_ACTIVE);
	index_msg_release(&m);
	get_msg(fx, ids[0], &m);
	assert_string_equal(m.store_file, files[0]);
	index_msg_release(&m);

	/* Repaired: only the size mismatch (counted, never "fixed") is left. */
	assert_int_equal(store_recover(fx->s, fx->ix, true, &r), 0);
	report_eq(&r, 0, 0, 0, 0, 1);
	free(renamed_rel);
}

static void test_recover_readonly(void **state)
{
	struct fixture *fx = *state;
	struct store_report r;
	struct index *ro;
	int64_t ids[1];

	/* maildisk check --store: a read-only index beside the writer. */
	commit_n(fx, 1, ids);
	make_file(fx, FOLDER_PATH "/cur/9.M9P9Q9.maildisk:2,", "orphan");
	assert_int_equal(store_index_open(fx->s, true, &ro), 0);
	assert_int_equal(store_recover(fx->s, ro, false, &r), 0);
	report_eq(&r, 0, 1, 0, 0, 0);
	assert_true(exists_rel(fx, FOLDER_PATH "/cur/9.M9P9Q9.maildisk:2,"));
	index_close(&ro);
}

/* Child side of the lock test: exit code says what went wrong. */
static int child_lock(const char *root, pid_t parent, bool expect_locked)
{
	struct store *s;
	pid_t holder = -1;
	int rc;

	if (store_open(root, &s) != 0)
		return 10;
	rc = store_lock(s, &holder);
	if (expect_locked) {
		if (rc != -EWOULDBLOCK)
			return 11;
		if (holder != parent)
			return 12;
		if (store_lock_holder(s) != parent)
			return 13;
	} else {
		if (rc != 0)
			return 14;
		if (store_lock_holder(s) != getpid())
			return 15;
	}
	store_close(&s);
	return 0;
}

static int run_child(const char *root, bool expect_locked)
{
	pid_t parent = getpid(), pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_lock(root, parent, expect_locked));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Folders "INBOX.tmp", "INBOX.new", "INBOX.new.cur" and "INBOX.tmp.x" as
 * the layout before names.c escaped "cur", "new" and "tmp" stored them:
 * inside INBOX's Maildir (and INBOX.new.cur inside INBOX.new's cur/). */
#define OLD_LAYOUT_N 4
static const char *const old_layout[OLD_LAYOUT_N][3] = {
	/* name, old path, new path */
	{ "INBOX.new", FOLDER_PATH "/new", FOLDER_PATH "/%6Eew" },
	{ "INBOX.new.cur", FOLDER_PATH "/new/cur", FOLDER_PATH "/%6Eew/%63ur" },
	{ "INBOX.tmp", FOLDER_PATH "/tmp", FOLDER_PATH "/%74mp" },
	{ "INBOX.tmp.x", FOLDER_PATH "/tmp/x", FOLDER_PATH "/%74mp/x" },
};

/* Every visible row of the folder is under its path's cur/ and holds
 * "message <i> of <name>" (or INBOX's text). */
static void assert_folder_files(struct fixture *fx, const char *name, const char *path, int n)
{
	struct index_folder f;
	char want[128];
	int seen = 0;

	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", name, "unused", &f), 0);
	assert_string_equal(f.path, path);
	for (int i = 1; i <= n; i++) {
		struct index_msg m;
		char rid[16], abs[512], got[128] = "";
		int64_t id;
		FILE *fp;

		snprintf(rid, sizeof rid, "%d", i);
		if (index_msg_find(fx->ix, f.id, rid, &id) != 0)
			continue;   /* trashed */
		get_msg(fx, id, &m);
		assert_memory_equal(m.store_file, path, strlen(path));
		assert_memory_equal(m.store_file + strlen(path), "/cur/", 5);
		abs_path(fx, m.store_file, abs, sizeof abs);
		fp = fopen(abs, "r");
		assert_non_null(fp);
		assert_non_null(fgets(got, sizeof got, fp));
		fclose(fp);
		if (strcmp(name, "INBOX") == 0)
			snprintf(want, sizeof want, "message %d\n", i);
		else
			snprintf(want, sizeof want, "message %d of %s\n", i, name);
		assert_string_equal(got, want);
		index_msg_release(&m);
		seen++;
	}
	assert_true(seen > 0);
	index_folder_release(&f);
}

static void test_layout_migration(void **state)
{
	struct fixture *fx = *state;
	struct index_folder f[OLD_LAYOUT_N];
	struct store_report r;
	struct index_msg m;
	int64_t ids[3], trashed;
	char from[512], to[512];
	size_t n;

	commit_n(fx, 2, ids);
	for (int i = 0; i < OLD_LAYOUT_N; i++) {
		assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", old_layout[i][0],
						     old_layout[i][1], &f[i]), 0);
		commit_in(fx, &f[i], 3, ids);
	}
	/* INBOX.tmp's message 3 went to the trash, and a sync of INBOX.tmp
	 * died while writing. */
	assert_int_equal(index_msg_find(fx->ix, f[2].id, "3", &trashed), 0);
	assert_int_equal(store_trash(fx->s, fx->ix, &trashed, 1, 0, "gone", 10), 0);
	make_file(fx, FOLDER_PATH "/tmp/tmp/1.M9P9Q9.maildisk", "half");
	/* An earlier move of INBOX.tmp.x was killed after linking one file. */
	assert_int_equal(index_msg_find(fx->ix, f[3].id, "1", &ids[0]), 0);
	get_msg(fx, ids[0], &m);
	abs_path(fx, FOLDER_PATH "/%74mp", to, sizeof to);
	assert_int_equal(mkdir(to, 0700), 0);
	abs_path(fx, FOLDER_PATH "/%74mp/x", to, sizeof to);
	assert_int_equal(mkdir(to, 0700), 0);
	abs_path(fx, FOLDER_PATH "/%74mp/x/cur", to, sizeof to);
	assert_int_equal(mkdir(to, 0700), 0);
	snprintf(to + strlen(to), sizeof to - strlen(to), "/%s", strrchr(m.store_file, '/') + 1);
	abs_path(fx, m.store_file, from, sizeof from);
	assert_int_equal(link(from, to), 0);
	index_msg_release(&m);

	/* Counting changes nothing. */
	assert_int_equal(store_migrate_layout(fx->s, fx->ix, false, &n), 0);
	assert_int_equal(n, OLD_LAYOUT_N);
	assert_true(exists_rel(fx, FOLDER_PATH "/new/cur/cur"));

	assert_int_equal(store_migrate_layout(fx->s, fx->ix, true, &n), 0);
	assert_int_equal(n, OLD_LAYOUT_N);
	assert_folder_files(fx, "INBOX", FOLDER_PATH, 2);
	for (int i = 0; i < OLD_LAYOUT_N; i++)
		assert_folder_files(fx, old_layout[i][0], old_layout[i][2], 3);
	/* INBOX's own Maildir is a Maildir again: files only. */
	assert_int_equal(count_files(fx, FOLDER_PATH "/tmp"), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/new"), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 2);
	assert_int_equal(count_files(fx, FOLDER_PATH "/%74mp/cur"), 2);
	assert_int_equal(count_files(fx, FOLDER_PATH "/%6Eew/cur"), 3);
	/* The half-written file went as recovery would have removed it. */
	assert_int_equal(count_files(fx, FOLDER_PATH "/%74mp/tmp"), 0);
	assert_int_equal(store_recover(fx->s, fx->ix, false, &r), 0);
	report_eq(&r, 0, 0, 0, 0, 0);
	assert_int_equal(store_migrate_layout(fx->s, fx->ix, false, &n), 0);
	assert_int_equal(n, 0);

	/* The trashed message keeps its file in the trash and comes back into
	 * the folder's new place. */
	assert_int_equal(store_restore(fx->s, fx->ix, trashed), 0);
	get_msg(fx, trashed, &m);
	assert_int_equal(m.state, MSG_RESTORED);
	assert_memory_equal(m.store_file, FOLDER_PATH "/%74mp/cur/", strlen(FOLDER_PATH) + 11);
	assert_true(exists_rel(fx, m.store_file));
	index_msg_release(&m);
	for (int i = 0; i < OLD_LAYOUT_N; i++)
		index_folder_release(&f[i]);
}

/* A move killed after its index commit: the old names are still there
 * beside the new ones; the next call removes them and nothing else. A file
 * in the old place with no name in the new one is linked over first. */
static void test_layout_migration_finish(void **state)
{
	struct fixture *fx = *state;
	struct index_folder f;
	struct store_report r;
	int64_t ids[3];
	char from[512], to[512];
	size_t n;

	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "INBOX.cur",
					     FOLDER_PATH "/cur", &f), 0);
	commit_in(fx, &f, 3, ids);
	assert_int_equal(store_migrate_layout(fx->s, fx->ix, true, &n), 0);
	assert_int_equal(n, 1);
	/* Put back the old names, as a kill right after the commit leaves them. */
	abs_path(fx, FOLDER_PATH "/cur/cur", to, sizeof to);
	assert_int_equal(mkdir(to, 0700), 0);
	for (int i = 0; i < 3; i++) {
		struct index_msg m;
		char *old;

		get_msg(fx, ids[i], &m);
		abs_path(fx, m.store_file, from, sizeof from);
		assert_int_equal(asprintf(&old, "%s/cur/%s", FOLDER_PATH "/cur",
					  strrchr(m.store_file, '/') + 1) > 0, 1);
		abs_path(fx, old, to, sizeof to);
		assert_int_equal(link(from, to), 0);
		if (i == 2)
			assert_int_equal(unlink(from), 0);   /* only the old name left */
		free(old);
		index_msg_release(&m);
	}
	assert_int_equal(store_migrate_layout(fx->s, fx->ix, false, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_migrate_layout(fx->s, fx->ix, true, &n), 0);
	assert_false(exists_rel(fx, FOLDER_PATH "/cur/cur"));
	assert_true(exists_rel(fx, FOLDER_PATH "/cur"));
	assert_folder_files(fx, "INBOX.cur", FOLDER_PATH "/%63ur", 3);
	assert_int_equal(count_files(fx, FOLDER_PATH "/%63ur/cur"), 3);
	assert_int_equal(store_recover(fx->s, fx->ix, false, &r), 0);
	report_eq(&r, 0, 0, 0, 0, 0);
	assert_int_equal(store_migrate_layout(fx->s, fx->ix, false, &n), 0);
	assert_int_equal(n, 0);
	index_folder_release(&f);
}

/* A file in the way in the new place that is not the message: that folder
 * stays where it is, usable, and the others move. */
static void test_layout_migration_conflict(void **state)
{
	struct fixture *fx = *state;
	struct index_folder a, b;
	struct store_report r;
	struct index_msg m;
	int64_t ids[3];
	char path[512];
	size_t n;

	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "INBOX.new",
					     FOLDER_PATH "/new", &a), 0);
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "INBOX.tmp",
					     FOLDER_PATH "/tmp", &b), 0);
	commit_in(fx, &a, 1, ids);
	commit_in(fx, &b, 1, ids);
	get_msg(fx, ids[0], &m);
	abs_path(fx, FOLDER_PATH "/%74mp", path, sizeof path);
	assert_int_equal(mkdir(path, 0700), 0);
	abs_path(fx, FOLDER_PATH "/%74mp/cur", path, sizeof path);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof path, "%s/%s/%s", fx->root, FOLDER_PATH "/%74mp/cur",
		 strrchr(m.store_file, '/') + 1);
	index_msg_release(&m);
	make_file(fx, path + strlen(fx->root) + 1, "something else");

	assert_int_equal(store_migrate_layout(fx->s, fx->ix, true, &n), -EEXIST);
	assert_folder_files(fx, "INBOX.new", FOLDER_PATH "/%6Eew", 1);
	assert_folder_files(fx, "INBOX.tmp", FOLDER_PATH "/tmp", 1);
	assert_int_equal(store_recover(fx->s, fx->ix, false, &r), 0);
	report_eq(&r, 0, 0, 0, 0, 0);
	index_folder_release(&a);
	index_folder_release(&b);
}

/* Two folders that share one Maildir, as index_folder_ensure allowed
 * before paths were unique ("a.b" with '.' and "a/b" with '/'): the one
 * created first keeps the path, the other moves to "<path> (2)" with
 * exactly its own files, under the same inodes, and gets a note. */
static void test_split_shared(void **state)
{
	struct fixture *fx = *state;
	struct index_folder b;
	struct store_report r;
	struct index_msg m;
	int64_t ids_a[2], ids_b[3];
	ino_t ino_b[3];
	char from[512], to[512], *note = NULL;
	size_t n;

	commit_n(fx, 2, ids_a);
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "INBOX/b", FOLDER_PATH "-b", &b), 0);
	commit_in(fx, &b, 3, ids_b);
	/* Make them share INBOX's Maildir. */
	for (int i = 0; i < 3; i++) {
		struct stat st;

		get_msg(fx, ids_b[i], &m);
		abs_path(fx, m.store_file, from, sizeof from);
		snprintf(to, sizeof to, "%s/%s/cur/%s", fx->root, FOLDER_PATH, strrchr(m.store_file, '/') + 1);
		assert_int_equal(rename(from, to), 0);
		assert_int_equal(stat(to, &st), 0);
		ino_b[i] = st.st_ino;
		index_msg_release(&m);
	}
	assert_int_equal(index_folder_move(fx->ix, b.id, FOLDER_PATH "-b", FOLDER_PATH, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 5);

	assert_int_equal(store_migrate_layout(fx->s, fx->ix, false, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_migrate_layout(fx->s, fx->ix, true, &n), 0);
	assert_folder_files(fx, "INBOX", FOLDER_PATH, 2);
	assert_folder_files(fx, "INBOX/b", FOLDER_PATH " (2)", 3);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 2);
	assert_int_equal(count_files(fx, FOLDER_PATH " (2)/cur"), 3);
	for (int i = 0; i < 3; i++) {
		struct stat st;

		get_msg(fx, ids_b[i], &m);
		abs_path(fx, m.store_file, from, sizeof from);
		assert_int_equal(stat(from, &st), 0);
		assert_int_equal(st.st_ino, ino_b[i]);
		/* As a kill after the commit leaves it: the old name is back. */
		if (i < 2) {
			snprintf(to, sizeof to, "%s/%s/cur/%s", fx->root, FOLDER_PATH,
				 strrchr(m.store_file, '/') + 1);
			assert_int_equal(link(from, to), 0);
		}
		index_msg_release(&m);
	}
	assert_int_equal(index_folder_note(fx->ix, b.id, &note), 0);
	assert_non_null(note);
	assert_non_null(strstr(note, FOLDER_PATH " (2)"));
	free(note);
	assert_int_equal(store_migrate_layout(fx->s, fx->ix, false, &n), 0);
	assert_int_equal(n, 0);
	/* The old names are orphans of INBOX now: recovery removes them, and
	 * every message keeps a file. */
	assert_int_equal(store_recover(fx->s, fx->ix, true, &r), 0);
	report_eq(&r, 0, 2, 0, 0, 0);
	assert_folder_files(fx, "INBOX", FOLDER_PATH, 2);
	assert_folder_files(fx, "INBOX/b", FOLDER_PATH " (2)", 3);
	assert_int_equal(store_recover(fx->s, fx->ix, false, &r), 0);
	report_eq(&r, 0, 0, 0, 0, 0);
	index_folder_release(&b);
}

static void test_lock(void **state)
{
	struct fixture *fx = *state;
	pid_t holder = -1;
	char lockfile[512], buf[32] = "";
	int fd;

	assert_int_equal(store_lock_holder(fx->s), 0);
	assert_int_equal(store_lock(fx->s, &holder), 0);
	assert_int_equal(holder, 0);
	assert_int_equal(store_lock(fx->s, &holder), 0);      /* already ours */
	assert_int_equal(store_lock_holder(fx->s), getpid());
	abs_path(fx, "lock", lockfile, sizeof lockfile);
	fd = open(lockfile, O_RDONLY);
	assert_true(fd >= 0);
	assert_true(read(fd, buf, sizeof buf - 1) > 0);
	close(fd);
	assert_int_equal(atol(buf), getpid());

	/* Another process is refused and told who holds the store. */
	assert_int_equal(run_child(fx->root, true), 0);

	/* Released with store_close: the next one gets it. */
	store_close(&fx->s);
	assert_int_equal(run_child(fx->root, false), 0);
	assert_int_equal(store_open(fx->root, &fx->s), 0);
	assert_int_equal(store_lock_holder(fx->s), 0);
}

static void test_maildir_flags(void **state)
{
	static const struct {
		const char *imap;
		const char *out;
	} cases[] = {
		{ NULL, "" },
		{ "", "" },
		{ "\\Seen", "S" },
		{ "\\Seen \\Flagged", "FS" },
		{ "(\\Flagged \\Seen \\Answered)", "FRS" },
		{ "\\Deleted \\Draft $Forwarded", "DPT" },
		{ "\\seen \\SEEN", "S" },
		{ "\\Recent $Junk \\Seenx Seen", "" },
		{ "  \\Answered   ", "R" },
	};
	char out[16];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		store_maildir_flags(cases[i].imap, out, sizeof out);
		assert_string_equal(out, cases[i].out);
	}
	store_maildir_flags("\\Seen \\Flagged", out, 2);
	assert_string_equal(out, "F");
}

/* The store file of row id, and the inode it has. */
static ino_t row_file(struct fixture *fx, int64_t id, char *rel, size_t n)
{
	struct index_msg m;
	char path[512];
	struct stat st;

	get_msg(fx, id, &m);
	snprintf(rel, n, "%s", m.store_file);
	index_msg_release(&m);
	abs_path(fx, rel, path, sizeof path);
	return stat(path, &st) == 0 ? st.st_ino : 0;
}

static void assert_flags(struct fixture *fx, int64_t id, const char *flags)
{
	struct index_msg m;

	get_msg(fx, id, &m);
	if (flags)
		assert_string_equal(m.flags, flags);
	else
		assert_null(m.flags);
	index_msg_release(&m);
}

static bool ends_with(const char *s, const char *tail)
{
	size_t a = strlen(s), b = strlen(tail);

	return a >= b && strcmp(s + a - b, tail) == 0;
}

static void test_set_flags(void **state)
{
	struct fixture *fx = *state;
	char before[4][512], after[512], from[512], to[512];
	ino_t ino[4];
	int64_t ids[4];

	commit_n(fx, 4, ids);
	for (int i = 0; i < 4; i++) {
		ino[i] = row_file(fx, ids[i], before[i], sizeof before[i]);
		assert_true(ino[i] != 0 && ends_with(before[i], ":2,S"));
	}
	/* Another Maildir reader renamed message 4's file. */
	abs_path(fx, before[3], from, sizeof from);
	snprintf(to, sizeof to, "%.*sT", (int)strlen(from), from);
	assert_int_equal(rename(from, to), 0);

	const struct store_flag_change v[] = {
		{ ids[0], "\\Seen \\Flagged" },   /* S -> FS: renamed */
		{ ids[1], "\\Seen $Label" },      /* still S: the name stays */
		{ ids[2], NULL },                 /* none: ":2," */
		{ ids[3], "\\Flagged" },          /* its file is gone: flags only */
	};
	assert_int_equal(store_set_flags(fx->s, fx->ix, v, 4), 0);

	assert_int_equal(row_file(fx, ids[0], after, sizeof after), ino[0]);
	assert_true(ends_with(after, ":2,FS"));
	assert_int_equal(strncmp(after, before[0], strlen(before[0]) - 1), 0);
	assert_false(exists_rel(fx, before[0]));
	assert_flags(fx, ids[0], "\\Seen \\Flagged");

	assert_int_equal(row_file(fx, ids[1], after, sizeof after), ino[1]);
	assert_string_equal(after, before[1]);
	assert_flags(fx, ids[1], "\\Seen $Label");

	assert_int_equal(row_file(fx, ids[2], after, sizeof after), ino[2]);
	assert_true(ends_with(after, ":2,"));
	assert_false(exists_rel(fx, before[2]));
	assert_flags(fx, ids[2], NULL);

	assert_int_equal(row_file(fx, ids[3], after, sizeof after), 0);
	assert_string_equal(after, before[3]);
	assert_flags(fx, ids[3], "\\Flagged");
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 4);

	/* A trashed row refuses, and nothing of the call happens. */
	assert_int_equal(store_trash(fx->s, fx->ix, &ids[1], 1, 0, "gone", 10), 0);
	const struct store_flag_change w[] = { { ids[0], "\\Draft" }, { ids[1], "\\Flagged" } };
	assert_int_equal(store_set_flags(fx->s, fx->ix, w, 2), -EINVAL);
	assert_int_equal(row_file(fx, ids[0], after, sizeof after), ino[0]);
	assert_true(ends_with(after, ":2,FS"));
	assert_flags(fx, ids[0], "\\Seen \\Flagged");
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 3);
	assert_int_equal(store_set_flags(fx->s, fx->ix, NULL, 0), 0);
}

/* The two crash points of store_set_flags, made by hand, and the repair. */
static void test_set_flags_crash(void **state)
{
	struct fixture *fx = *state;
	struct store_report r;
	char rel[2][512], extra[512], from[512], to[512];
	ino_t ino[2];
	int64_t ids[2];

	commit_n(fx, 2, ids);
	for (int i = 0; i < 2; i++)
		ino[i] = row_file(fx, ids[i], rel[i], sizeof rel[i]);

	/* Crash after the link, before the commit: the new name is extra. */
	abs_path(fx, rel[0], from, sizeof from);
	snprintf(extra, sizeof extra, "%.*sFS", (int)strlen(rel[0]) - 1, rel[0]);
	abs_path(fx, extra, to, sizeof to);
	assert_int_equal(link(from, to), 0);
	/* Crash after the commit, before the old name went: the old is extra. */
	const struct store_flag_change v = { ids[1], "\\Seen \\Flagged" };
	assert_int_equal(store_set_flags(fx->s, fx->ix, &v, 1), 0);
	row_file(fx, ids[1], extra, sizeof extra);
	abs_path(fx, extra, from, sizeof from);
	abs_path(fx, rel[1], to, sizeof to);
	assert_int_equal(link(from, to), 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 4);

	assert_int_equal(store_recover(fx->s, fx->ix, true, &r), 0);
	report_eq(&r, 0, 2, 0, 0, 0);
	assert_int_equal(count_files(fx, FOLDER_PATH "/cur"), 2);
	assert_int_equal(row_file(fx, ids[0], extra, sizeof extra), ino[0]);
	assert_string_equal(extra, rel[0]);
	assert_flags(fx, ids[0], "\\Seen");
	assert_int_equal(row_file(fx, ids[1], extra, sizeof extra), ino[1]);
	assert_true(ends_with(extra, ":2,FS"));
	assert_false(exists_rel(fx, rel[1]));
	assert_flags(fx, ids[1], "\\Seen \\Flagged");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		FIXTURE_TEST(test_open),
		FIXTURE_TEST(test_open_foreign_owner),
		FIXTURE_TEST(test_batch_commit),
		FIXTURE_TEST(test_batch_large_message),
		FIXTURE_TEST(test_batch_discard),
		FIXTURE_TEST(test_batch_conflicts),
		FIXTURE_TEST(test_batch_commit_fails),
		FIXTURE_TEST(test_trash_restore_purge),
		FIXTURE_TEST(test_recover),
		FIXTURE_TEST(test_recover_readonly),
		FIXTURE_TEST(test_set_flags),
		FIXTURE_TEST(test_set_flags_crash),
		FIXTURE_TEST(test_layout_migration),
		FIXTURE_TEST(test_layout_migration_finish),
		FIXTURE_TEST(test_layout_migration_conflict),
		FIXTURE_TEST(test_split_shared),
		FIXTURE_TEST(test_lock),
		cmocka_unit_test(test_maildir_flags),
	};

	return FIXTURE_RUN("test_store", tests);
}
