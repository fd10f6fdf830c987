/* Unit tests for cache/index.c: schema, folders, messages, uniqueness,
 * state transitions, nested transactions, and a reader beside a writer. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "../../cache/index.h"
#include "../../cache/log.h"
#include "../../cache/parts.h"
#include "fixture.h"

struct fixture {
	char dir[64];
	char db[128];
	struct index *ix;   /* the writer */
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);

	assert_true(fixture_mkdtemp(fx->dir, sizeof fx->dir, "test_index"));
	snprintf(fx->db, sizeof fx->db, "%s/index.db", fx->dir);
	assert_int_equal(index_open(fx->db, false, &fx->ix), 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	index_close(&fx->ix);
	fixture_rmtree(fx->dir);
	free(fx);
	return 0;
}

/* One integer from the database through a separate, plain connection. */
static int64_t sql_int(const char *db, const char *sql)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

static int64_t add_folder(struct index *ix, const char *user, const char *account, const char *name)
{
	struct index_folder f;
	char path[256];
	int64_t id;

	snprintf(path, sizeof path, "mail/%s/%s/%s", user, account, name);
	assert_int_equal(index_folder_ensure(ix, user, account, name, path, &f), 0);
	id = f.id;
	index_folder_release(&f);
	return id;
}

static int add_msg(struct index *ix, int64_t folder, const char *remote_id, const char *view,
		   int64_t *id_r)
{
	struct index_msg m = { 0 };
	char file[256];
	int rc;

	snprintf(file, sizeof file, "mail/f%lld/cur/%s:2,S", (long long)folder,
		 remote_id ? remote_id : "x");
	m.folder_id = folder;
	m.remote_id = (char *)remote_id;
	m.message_id = (char *)"abc@example.com";
	m.size = 1234;
	m.internal_date = 1700000000;
	m.date = 1700000001;
	m.sender = (char *)"Alice <alice@example.com>";
	m.recipients = (char *)"bob@example.com";
	m.subject = (char *)"Hello";
	m.flags = (char *)"\\Seen";
	m.store_file = file;
	m.view_name = (char *)view;
	m.state = MSG_ACTIVE;
	rc = index_msg_insert(ix, &m);
	if (rc == 0) {
		assert_true(m.id > 0);
		if (id_r)
			*id_r = m.id;
	}
	return rc;
}

static void test_schema(void **state)
{
	struct fixture *fx = *state;
	struct stat st;

	assert_int_equal(sql_int(fx->db, "PRAGMA user_version"), 3);
	assert_int_equal(sql_int(fx->db,
		"SELECT count(*) FROM pragma_table_info('parts') WHERE name IN ('msg_id', 'n', 'parent',"
		" 'kind', 'name', 'content_type', 'enc', 'charset', 'off', 'len', 'size', 'marks')"), 12);
	assert_int_equal(sql_int(fx->db,
		"SELECT count(*) FROM pragma_table_info('folder_notes') WHERE name IN ('folder_id',"
		" 'note')"), 2);
	assert_int_equal(sql_int(fx->db,
				 "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);
	/* The names the integration tests query. */
	assert_int_equal(sql_int(fx->db,
		"SELECT count(*) FROM pragma_table_info('folders') WHERE name IN ('id', 'user',"
		" 'account', 'name', 'path', 'uidvalidity', 'uidnext', 'highestmodseq', 'synced_at',"
		" 'changed_at', 'last_error', 'held')"), 12);
	assert_int_equal(sql_int(fx->db,
		"SELECT count(*) FROM pragma_table_info('messages') WHERE name IN ('id', 'folder_id',"
		" 'remote_id', 'message_id', 'size', 'internal_date', 'date', 'sender', 'recipients',"
		" 'subject', 'flags', 'store_file', 'view_name', 'state', 'trashed_at', 'trash_sync',"
		" 'trash_reason', 'n_parts')"), 18);
	assert_int_equal(sql_int(fx->db,
		"SELECT count(*) FROM pragma_table_info('syncs') WHERE name IN ('id', 'user', 'account',"
		" 'started_at', 'finished_at', 'n_new', 'n_trashed', 'error')"), 8);
	assert_int_equal(stat(fx->db, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* Reopening keeps the schema and the data. */
	add_folder(fx->ix, "alice", "work", "INBOX");
	index_close(&fx->ix);
	assert_null(fx->ix);
	assert_int_equal(index_open(fx->db, false, &fx->ix), 0);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM folders"), 1);
}

/* Runs sql on the database through a separate, plain connection. */
static void sql_exec(const char *db, const char *sql)
{
	sqlite3 *h;

	assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
}

/* A version 1 index (before folder notes): readers read it as one without
 * notes; the first writer upgrades it, keeping every row. */
static void test_schema_upgrade(void **state)
{
	struct fixture *fx = *state;
	struct index *ro;
	char *note = (char *)"x";
	int64_t id = add_folder(fx->ix, "alice", "work", "INBOX");

	index_close(&fx->ix);
	sql_exec(fx->db, "DROP TABLE folder_notes; DROP TABLE parts; DROP INDEX messages_unanalysed;"
		 " ALTER TABLE messages DROP COLUMN n_parts; PRAGMA user_version = 1;");
	assert_int_equal(index_open(fx->db, true, &ro), 0);
	assert_int_equal(index_folder_note(ro, id, &note), 0);
	assert_null(note);
	index_close(&ro);
	assert_int_equal(sql_int(fx->db, "PRAGMA user_version"), 1);
	assert_int_equal(index_open(fx->db, false, &fx->ix), 0);
	assert_int_equal(sql_int(fx->db, "PRAGMA user_version"), 3);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM folders"), 1);
	assert_int_equal(index_folder_set_note(fx->ix, id, "n"), 0);
	assert_int_equal(index_folder_note(fx->ix, id, &note), 0);
	assert_string_equal(note, "n");
	free(note);
	/* A newer version than this one knows is refused. */
	index_close(&fx->ix);
	sql_exec(fx->db, "PRAGMA user_version = 4;");
	assert_int_equal(index_open(fx->db, true, &ro), -EPROTO);
	assert_int_equal(index_open(fx->db, false, &fx->ix), -EPROTO);
}

/* Two server folders that map to one local path ("a.b" with delimiter '.'
 * and "a/b" with '/') never share it: the second gets " (2)", and a folder
 * whose plain path that is gets " (2) (2)", each with a note; a folder that
 * exists already keeps its path. */
static void test_folder_path_unique(void **state)
{
	struct fixture *fx = *state;
	struct index_folder a, b, c, again, *fs;
	char *note = NULL, longpath[400];
	size_t n;

	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "a.b", "mail/alice/work/a/b", &a), 0);
	assert_int_equal(index_folder_note(fx->ix, a.id, &note), 0);
	assert_null(note);
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "a/b", "mail/alice/work/a/b", &b), 0);
	assert_string_equal(b.path, "mail/alice/work/a/b (2)");
	assert_int_equal(index_folder_note(fx->ix, b.id, &note), 0);
	assert_non_null(note);
	assert_non_null(strstr(note, "a/b (2)"));
	assert_non_null(strstr(note, "\"a.b\""));
	free(note);
	/* A folder truly named "a.b (2)" finds its path taken, and moves on too. */
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "a.b (2)", "mail/alice/work/a/b (2)",
					     &c), 0);
	assert_string_equal(c.path, "mail/alice/work/a/b (2) (2)");
	/* Get-or-create still finds each by its name, path unchanged. */
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "a/b", "mail/alice/work/a/b", &again), 0);
	assert_int_equal(again.id, b.id);
	assert_string_equal(again.path, "mail/alice/work/a/b (2)");
	index_folder_release(&again);
	assert_int_equal(index_folder_list(fx->ix, NULL, NULL, &fs, &n), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			assert_string_not_equal(fs[i].path, fs[j].path);
	index_folder_array_free(&fs, n);
	/* No room for the suffix in a 255-byte component. */
	memcpy(longpath, "mail/alice/work/", 16);
	memset(longpath + 16, 'x', 253);
	longpath[16 + 253] = '\0';
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "long1", longpath, &again), 0);
	index_folder_release(&again);
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "long2", longpath, &again),
			 -ENAMETOOLONG);
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "long2", "mail/alice/work/y", &again), 0);
	index_folder_release(&again);
	index_folder_release(&a);
	index_folder_release(&b);
	index_folder_release(&c);
}

static void test_folders(void **state)
{
	struct fixture *fx = *state;
	struct index_folder f, *fs;
	size_t n;
	int64_t inbox, archive, other, m1, m2;

	inbox = add_folder(fx->ix, "alice", "work", "INBOX");
	/* Get-or-create: the second call finds the first row, path unchanged. */
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "INBOX", "elsewhere", &f), 0);
	assert_int_equal(f.id, inbox);
	assert_string_equal(f.path, "mail/alice/work/INBOX");
	assert_string_equal(f.user, "alice");
	assert_string_equal(f.account, "work");
	assert_string_equal(f.name, "INBOX");
	assert_int_equal(f.uidvalidity, 0);
	assert_int_equal(f.synced_at, 0);
	assert_null(f.last_error);
	assert_null(f.held);
	index_folder_release(&f);
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", NULL, "p", &f), -EINVAL);

	archive = add_folder(fx->ix, "alice", "work", "Archive");
	other = add_folder(fx->ix, "bob", "home", "INBOX");
	add_folder(fx->ix, "alice", "isp", "INBOX");
	assert_true(archive != inbox && other != inbox);

	/* Ordered by user, account, name; filtered by user and account. */
	assert_int_equal(index_folder_list(fx->ix, NULL, NULL, &fs, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(fs[0].account, "isp");
	assert_string_equal(fs[1].name, "Archive");
	assert_string_equal(fs[2].name, "INBOX");
	assert_string_equal(fs[3].user, "bob");
	index_folder_array_free(&fs, n);
	assert_null(fs);
	assert_int_equal(index_folder_list(fx->ix, "alice", NULL, &fs, &n), 0);
	assert_int_equal(n, 3);
	index_folder_array_free(&fs, n);
	assert_int_equal(index_folder_list(fx->ix, "alice", "work", &fs, &n), 0);
	assert_int_equal(n, 2);
	index_folder_array_free(&fs, n);
	assert_int_equal(index_folder_list(fx->ix, "carol", NULL, &fs, &n), 0);
	assert_int_equal(n, 0);
	index_folder_array_free(&fs, n);

	/* Server state, sync result, changed_at. */
	assert_int_equal(index_folder_set_state(fx->ix, inbox, 1700, 55, 9000000000ULL), 0);
	assert_int_equal(index_folder_set_result(fx->ix, inbox, 1000, NULL, NULL), 0);
	assert_int_equal(index_folder_set_result(fx->ix, inbox, 2000, "connection reset", "empty listing"), 0);
	assert_int_equal(index_folder_touch(fx->ix, inbox, 3000), 0);
	assert_int_equal(index_folder_get(fx->ix, inbox, &f), 0);
	assert_int_equal(f.uidvalidity, 1700);
	assert_int_equal(f.uidnext, 55);
	assert_true(f.highestmodseq == 9000000000ULL);
	assert_int_equal(f.synced_at, 1000);     /* not moved by the failed sync */
	assert_int_equal(f.changed_at, 3000);
	assert_string_equal(f.last_error, "connection reset");
	assert_string_equal(f.held, "empty listing");
	index_folder_release(&f);
	assert_int_equal(index_folder_set_result(fx->ix, inbox, 4000, NULL, NULL), 0);
	assert_int_equal(index_folder_get(fx->ix, inbox, &f), 0);
	assert_int_equal(f.synced_at, 4000);
	assert_null(f.last_error);
	assert_null(f.held);
	index_folder_release(&f);

	assert_int_equal(index_folder_get(fx->ix, 999, &f), -ENOENT);
	assert_int_equal(index_folder_set_state(fx->ix, 999, 1, 1, 1), -ENOENT);
	assert_int_equal(index_folder_touch(fx->ix, 999, 1), -ENOENT);

	/* Counts: visible (active + restored) and trashed, in get and list. */
	assert_int_equal(add_msg(fx->ix, inbox, "1", "a.eml", &m1), 0);
	assert_int_equal(add_msg(fx->ix, inbox, "2", "b.eml", &m2), 0);
	assert_int_equal(add_msg(fx->ix, inbox, "3", "c.eml", NULL), 0);
	assert_int_equal(add_msg(fx->ix, archive, "1", "a.eml", NULL), 0);
	assert_int_equal(index_msg_mark_trashed(fx->ix, m1, "trash/x", 0, "gone", 10), 0);
	assert_int_equal(index_msg_mark_trashed(fx->ix, m2, "trash/y", 0, "gone", 10), 0);
	assert_int_equal(index_msg_mark_restored(fx->ix, m2, "mail/y"), 0);
	assert_int_equal(index_folder_get(fx->ix, inbox, &f), 0);
	assert_int_equal(f.n_active, 2);
	assert_int_equal(f.n_trashed, 1);
	index_folder_release(&f);
	assert_int_equal(index_folder_list(fx->ix, "alice", "work", &fs, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(fs[0].id, archive);
	assert_int_equal(fs[0].n_active, 1);
	assert_int_equal(fs[0].n_trashed, 0);
	assert_int_equal(fs[1].n_active, 2);
	assert_int_equal(fs[1].n_trashed, 1);
	index_folder_array_free(&fs, n);
}

struct seen {
	int n;
	char names[16][64];
	int stop_at;       /* stop (return 7) at this call, 0 never */
	struct index *ix;  /* for the nested loop */
	int64_t folder;
	int nested;
};

static int collect(void *ctx, const struct index_msg *m)
{
	struct seen *s = ctx;

	snprintf(s->names[s->n++], sizeof s->names[0], "%s", m->view_name);
	assert_int_equal(m->size, 1234);
	assert_string_equal(m->subject, "Hello");
	return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

static int count_cb(void *ctx, const struct index_msg *m)
{
	(void)m;
	(*(int *)ctx)++;
	return 0;
}

static int nested_cb(void *ctx, const struct index_msg *m)
{
	struct seen *s = ctx;
	int inner = 0;

	(void)m;
	assert_int_equal(index_msg_foreach(s->ix, s->folder, MSG_VISIBLE_MASK, count_cb, &inner), 0);
	s->nested += inner;
	s->n++;
	return 0;
}

static void test_messages(void **state)
{
	struct fixture *fx = *state;
	struct index_msg m, bad = { 0 };
	struct seen s = { 0 };
	int64_t folder = add_folder(fx->ix, "alice", "work", "INBOX");
	int64_t id, id2, id3, found;

	assert_int_equal(add_msg(fx->ix, folder, "10", "2025 b ~x.eml", &id), 0);
	assert_int_equal(add_msg(fx->ix, folder, "11", "2025 a ~y.eml", &id2), 0);
	assert_int_equal(add_msg(fx->ix, folder, "12", "2025 c ~z.eml", &id3), 0);
	assert_true(id < id2 && id2 < id3);

	assert_int_equal(index_msg_get(fx->ix, id, &m), 0);
	assert_int_equal(m.id, id);
	assert_int_equal(m.folder_id, folder);
	assert_string_equal(m.remote_id, "10");
	assert_string_equal(m.message_id, "abc@example.com");
	assert_int_equal(m.size, 1234);
	assert_int_equal(m.internal_date, 1700000000);
	assert_int_equal(m.date, 1700000001);
	assert_string_equal(m.sender, "Alice <alice@example.com>");
	assert_string_equal(m.recipients, "bob@example.com");
	assert_string_equal(m.flags, "\\Seen");
	assert_string_equal(m.view_name, "2025 b ~x.eml");
	assert_int_equal(m.state, MSG_ACTIVE);
	assert_int_equal(m.trashed_at, 0);
	assert_int_equal(m.trash_sync, 0);
	assert_null(m.trash_reason);
	index_msg_release(&m);
	assert_null(m.view_name);
	assert_int_equal(index_msg_get(fx->ix, 424242, &m), -ENOENT);

	assert_int_equal(index_msg_lookup(fx->ix, folder, "2025 a ~y.eml", &m), 0);
	assert_int_equal(m.id, id2);
	index_msg_release(&m);
	assert_int_equal(index_msg_lookup(fx->ix, folder, "nope.eml", &m), -ENOENT);
	assert_int_equal(index_msg_lookup(fx->ix, folder + 1, "2025 a ~y.eml", &m), -ENOENT);

	/* Ordered by view name; a callback's non-zero value stops and returns. */
	assert_int_equal(index_msg_foreach(fx->ix, folder, MSG_VISIBLE_MASK, collect, &s), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.names[0], "2025 a ~y.eml");
	assert_string_equal(s.names[1], "2025 b ~x.eml");
	assert_string_equal(s.names[2], "2025 c ~z.eml");
	memset(&s, 0, sizeof s);
	s.stop_at = 2;
	assert_int_equal(index_msg_foreach(fx->ix, folder, MSG_VISIBLE_MASK, collect, &s), 7);
	assert_int_equal(s.n, 2);
	/* The stopped loop left the statement reusable. */
	memset(&s, 0, sizeof s);
	assert_int_equal(index_msg_foreach(fx->ix, folder, MSG_VISIBLE_MASK, collect, &s), 0);
	assert_int_equal(s.n, 3);

	/* Masks select states. */
	assert_int_equal(index_msg_mark_trashed(fx->ix, id3, "trash/z", 5, "vanished", 100), 0);
	memset(&s, 0, sizeof s);
	assert_int_equal(index_msg_foreach(fx->ix, folder, 1u << MSG_TRASHED, collect, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.names[0], "2025 c ~z.eml");
	memset(&s, 0, sizeof s);
	assert_int_equal(index_msg_foreach(fx->ix, folder, 7u, collect, &s), 0);
	assert_int_equal(s.n, 3);
	memset(&s, 0, sizeof s);
	assert_int_equal(index_msg_foreach(fx->ix, folder, MSG_VISIBLE_MASK, collect, &s), 0);
	assert_int_equal(s.n, 2);
	memset(&s, 0, sizeof s);
	assert_int_equal(index_msg_foreach(fx->ix, folder, 0, collect, &s), 0);
	assert_int_equal(s.n, 0);

	/* A loop inside a loop on the same connection. */
	memset(&s, 0, sizeof s);
	s.ix = fx->ix;
	s.folder = folder;
	assert_int_equal(index_msg_foreach(fx->ix, folder, MSG_VISIBLE_MASK, nested_cb, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.nested, 4);

	assert_int_equal(index_msg_find(fx->ix, folder, "11", &found), 0);
	assert_int_equal(found, id2);
	assert_int_equal(index_msg_find(fx->ix, folder, "12", &found), -ENOENT);  /* trashed */
	assert_int_equal(index_msg_find(fx->ix, folder, "99", &found), -ENOENT);

	assert_int_equal(index_msg_set_flags(fx->ix, id, "\\Seen \\Flagged"), 0);
	assert_int_equal(index_msg_get(fx->ix, id, &m), 0);
	assert_string_equal(m.flags, "\\Seen \\Flagged");
	index_msg_release(&m);

	/* Missing required fields, unknown folder. */
	assert_int_equal(index_msg_insert(fx->ix, &bad), -EINVAL);
	assert_int_equal(add_msg(fx->ix, 777, "1", "x.eml", NULL), -ENOENT);
}

static void test_unique_conflicts(void **state)
{
	struct fixture *fx = *state;
	int64_t folder = add_folder(fx->ix, "alice", "work", "INBOX");
	int64_t other = add_folder(fx->ix, "alice", "work", "Archive");
	int64_t id, id2;

	assert_int_equal(add_msg(fx->ix, folder, "1", "one.eml", &id), 0);
	assert_int_equal(add_msg(fx->ix, folder, "1", "other.eml", NULL), -EEXIST);
	assert_int_equal(add_msg(fx->ix, folder, "2", "one.eml", NULL), -EEXIST);
	/* Other folders are other namespaces. */
	assert_int_equal(add_msg(fx->ix, other, "1", "one.eml", NULL), 0);
	/* Rows without a remote id (restored) never collide on it. */
	assert_int_equal(add_msg(fx->ix, folder, NULL, "n1.eml", NULL), 0);
	assert_int_equal(add_msg(fx->ix, folder, NULL, "n2.eml", NULL), 0);

	/* Once trashed, the remote id and the name are free again. */
	assert_int_equal(index_msg_mark_trashed(fx->ix, id, "trash/one", 0, "gone", 5), 0);
	assert_int_equal(add_msg(fx->ix, folder, "1", "one.eml", &id2), 0);
	/* ...so restoring the old row under the same name conflicts. */
	assert_int_equal(index_msg_mark_restored(fx->ix, id, "mail/one"), -EEXIST);
	assert_int_equal(index_msg_set_view_name(fx->ix, id, "one (restored 1).eml"), 0);
	assert_int_equal(index_msg_mark_restored(fx->ix, id, "mail/one"), 0);
	/* The view name of a visible row does not change. */
	assert_int_equal(index_msg_set_view_name(fx->ix, id2, "zzz.eml"), -ENOENT);

	/* Rekey onto a taken id. */
	assert_int_equal(add_msg(fx->ix, folder, "3", "three.eml", &id), 0);
	assert_int_equal(index_msg_rekey(fx->ix, id, "1"), -EEXIST);
}

static void test_known_ids_rekey(void **state)
{
	struct fixture *fx = *state;
	int64_t folder = add_folder(fx->ix, "alice", "work", "INBOX");
	int64_t ids[5], found;
	char **known;
	size_t n;
	char rid[8], view[16];

	assert_int_equal(index_known_ids(fx->ix, folder, &known, &n), 0);
	assert_int_equal(n, 0);
	index_ids_free(known, n);
	for (int i = 0; i < 5; i++) {
		snprintf(rid, sizeof rid, "%d", i + 1);
		snprintf(view, sizeof view, "m%d.eml", i);
		assert_int_equal(add_msg(fx->ix, folder, rid, view, &ids[i]), 0);
	}
	assert_int_equal(index_msg_mark_trashed(fx->ix, ids[1], "trash/2", 0, "gone", 5), 0);
	assert_int_equal(index_msg_mark_trashed(fx->ix, ids[2], "trash/3", 0, "gone", 5), 0);
	assert_int_equal(index_msg_mark_restored(fx->ix, ids[2], "mail/3"), 0);

	assert_int_equal(index_known_ids(fx->ix, folder, &known, &n), 0);
	assert_int_equal(n, 3);
	{
		int have = 0;

		for (size_t i = 0; i < n; i++)
			have |= 1 << atoi(known[i]);
		assert_int_equal(have, (1 << 1) | (1 << 4) | (1 << 5));
	}
	index_ids_free(known, n);

	/* UIDVALIDITY change: new ids, same rows. */
	assert_int_equal(index_msg_rekey(fx->ix, ids[0], "101"), 0);
	assert_int_equal(index_msg_find(fx->ix, folder, "101", &found), 0);
	assert_int_equal(found, ids[0]);
	assert_int_equal(index_msg_find(fx->ix, folder, "1", &found), -ENOENT);
	/* Only active rows are rekeyed. */
	assert_int_equal(index_msg_rekey(fx->ix, ids[1], "102"), -ENOENT);
	assert_int_equal(index_msg_rekey(fx->ix, ids[2], "103"), -ENOENT);
	assert_int_equal(index_msg_rekey(fx->ix, 9999, "104"), -ENOENT);
}

struct trash_seen {
	int n;
	int64_t ids[8];
};

static int trash_cb(void *ctx, const struct index_msg *m)
{
	struct trash_seen *t = ctx;

	assert_int_equal(m->state, MSG_TRASHED);
	t->ids[t->n++] = m->id;
	return 0;
}

static void test_trash_transitions(void **state)
{
	struct fixture *fx = *state;
	int64_t fa = add_folder(fx->ix, "alice", "work", "INBOX");
	int64_t fb = add_folder(fx->ix, "bob", "home", "INBOX");
	int64_t a1, a2, b1, sync_id;
	struct index_msg m;
	struct trash_seen t = { 0 };

	assert_int_equal(index_sync_start(fx->ix, "alice", "work", 50, &sync_id), 0);
	assert_true(sync_id > 0);
	assert_int_equal(add_msg(fx->ix, fa, "1", "a1.eml", &a1), 0);
	assert_int_equal(add_msg(fx->ix, fa, "2", "a2.eml", &a2), 0);
	assert_int_equal(add_msg(fx->ix, fb, "1", "b1.eml", &b1), 0);

	assert_int_equal(index_msg_mark_trashed(fx->ix, a2, "trash/alice/a2", sync_id, "vanished upstream", 300), 0);
	assert_int_equal(index_msg_mark_trashed(fx->ix, a1, "trash/alice/a1", sync_id, "vanished upstream", 200), 0);
	assert_int_equal(index_msg_mark_trashed(fx->ix, b1, "trash/bob/b1", 0, "folder deleted", 100), 0);
	assert_int_equal(index_msg_mark_trashed(fx->ix, a1, "trash/again", 0, "x", 1), -ENOENT);
	assert_int_equal(index_msg_mark_trashed(fx->ix, 9999, "trash/none", 0, "x", 1), -ENOENT);

	assert_int_equal(index_msg_get(fx->ix, a1, &m), 0);
	assert_int_equal(m.state, MSG_TRASHED);
	assert_string_equal(m.store_file, "trash/alice/a1");
	assert_int_equal(m.trashed_at, 200);
	assert_int_equal(m.trash_sync, sync_id);
	assert_string_equal(m.trash_reason, "vanished upstream");
	assert_string_equal(m.remote_id, "1");      /* kept for the audit trail */
	index_msg_release(&m);

	/* Oldest first; per user. */
	assert_int_equal(index_trash_foreach(fx->ix, NULL, trash_cb, &t), 0);
	assert_int_equal(t.n, 3);
	assert_int_equal(t.ids[0], b1);
	assert_int_equal(t.ids[1], a1);
	assert_int_equal(t.ids[2], a2);
	memset(&t, 0, sizeof t);
	assert_int_equal(index_trash_foreach(fx->ix, "alice", trash_cb, &t), 0);
	assert_int_equal(t.n, 2);
	assert_int_equal(t.ids[0], a1);

	/* Restore: visible again, local only. */
	assert_int_equal(index_msg_mark_restored(fx->ix, a1, "mail/alice/work/INBOX/cur/a1"), 0);
	assert_int_equal(index_msg_get(fx->ix, a1, &m), 0);
	assert_int_equal(m.state, MSG_RESTORED);
	assert_null(m.remote_id);
	assert_string_equal(m.store_file, "mail/alice/work/INBOX/cur/a1");
	index_msg_release(&m);
	assert_int_equal(index_msg_mark_restored(fx->ix, a1, "x"), -ENOENT);   /* not trashed */
	assert_int_equal(index_msg_lookup(fx->ix, fa, "a1.eml", &m), 0);
	index_msg_release(&m);

	/* Purge removes rows. */
	assert_int_equal(index_msg_delete(fx->ix, b1), 0);
	assert_int_equal(index_msg_delete(fx->ix, b1), -ENOENT);
	assert_int_equal(index_msg_get(fx->ix, b1, &m), -ENOENT);

	/* The audit row. */
	assert_int_equal(index_sync_finish(fx->ix, sync_id, 60, 3, 2, NULL), 0);
	assert_int_equal(sql_int(fx->db, "SELECT n_trashed FROM syncs WHERE finished_at = 60"), 2);
	assert_int_equal(index_sync_finish(fx->ix, 9999, 60, 0, 0, "x"), -ENOENT);

	/* Row ids are never reused: ids are inode numbers. */
	{
		int64_t last;

		assert_int_equal(index_msg_delete(fx->ix, a2), 0);
		assert_int_equal(add_msg(fx->ix, fa, "9", "new.eml", &last), 0);
		assert_true(last > b1 && last > a2);
	}
}

static void test_transactions(void **state)
{
	struct fixture *fx = *state;
	int64_t folder = add_folder(fx->ix, "alice", "work", "INBOX");
	struct index_msg m;

	assert_int_equal(index_commit(fx->ix), -EINVAL);
	index_rollback(fx->ix);            /* harmless outside a transaction */

	/* Nested commits: only the outermost commits. */
	assert_int_equal(index_begin(fx->ix), 0);
	assert_int_equal(add_msg(fx->ix, folder, "1", "one.eml", NULL), 0);
	assert_int_equal(index_begin(fx->ix), 0);
	assert_int_equal(add_msg(fx->ix, folder, "2", "two.eml", NULL), 0);
	assert_int_equal(index_commit(fx->ix), 0);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM messages"), 0);
	assert_int_equal(index_commit(fx->ix), 0);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM messages"), 2);

	/* A rollback inside rolls back everything; nothing runs until the
	 * outermost end, which reports the cancellation. */
	assert_int_equal(index_begin(fx->ix), 0);
	assert_int_equal(add_msg(fx->ix, folder, "3", "three.eml", NULL), 0);
	assert_int_equal(index_begin(fx->ix), 0);
	assert_int_equal(add_msg(fx->ix, folder, "4", "four.eml", NULL), 0);
	index_rollback(fx->ix);
	assert_int_equal(add_msg(fx->ix, folder, "5", "five.eml", NULL), -ECANCELED);
	assert_int_equal(index_commit(fx->ix), -ECANCELED);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM messages"), 2);
	assert_int_equal(index_msg_lookup(fx->ix, folder, "three.eml", &m), -ENOENT);

	/* Back to normal afterwards; an outer rollback also works. */
	assert_int_equal(index_begin(fx->ix), 0);
	assert_int_equal(add_msg(fx->ix, folder, "6", "six.eml", NULL), 0);
	index_rollback(fx->ix);
	assert_int_equal(add_msg(fx->ix, folder, "7", "seven.eml", NULL), 0);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM messages"), 3);

	/* A failed statement inside a transaction does not end it. */
	assert_int_equal(index_begin(fx->ix), 0);
	assert_int_equal(add_msg(fx->ix, folder, "8", "eight.eml", NULL), 0);
	assert_int_equal(add_msg(fx->ix, folder, "8", "dup.eml", NULL), -EEXIST);
	assert_int_equal(index_commit(fx->ix), 0);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM messages"), 4);
}

static void test_two_connections(void **state)
{
	struct fixture *fx = *state;
	struct index *rd = NULL;
	struct index_folder *fs, f;
	struct index_msg m;
	size_t n;
	int64_t folder = add_folder(fx->ix, "alice", "work", "INBOX");

	assert_int_equal(index_open(fx->db, true, &rd), 0);
	assert_int_equal(index_folder_get(rd, folder, &f), 0);
	index_folder_release(&f);

	/* Uncommitted rows are invisible to the reader, and it is not blocked. */
	assert_int_equal(index_begin(fx->ix), 0);
	assert_int_equal(add_msg(fx->ix, folder, "1", "one.eml", NULL), 0);
	assert_int_equal(index_msg_lookup(rd, folder, "one.eml", &m), -ENOENT);
	assert_int_equal(index_commit(fx->ix), 0);
	assert_int_equal(index_msg_lookup(rd, folder, "one.eml", &m), 0);
	assert_string_equal(m.remote_id, "1");
	index_msg_release(&m);
	assert_int_equal(index_folder_list(rd, NULL, NULL, &fs, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(fs[0].n_active, 1);
	index_folder_array_free(&fs, n);

	/* A reader's transaction is a snapshot. */
	assert_int_equal(index_begin(rd), 0);
	assert_int_equal(index_msg_lookup(rd, folder, "one.eml", &m), 0);
	index_msg_release(&m);
	assert_int_equal(add_msg(fx->ix, folder, "2", "two.eml", NULL), 0);
	assert_int_equal(index_msg_lookup(rd, folder, "two.eml", &m), -ENOENT);
	assert_int_equal(index_commit(rd), 0);
	assert_int_equal(index_msg_lookup(rd, folder, "two.eml", &m), 0);
	index_msg_release(&m);

	/* The reader cannot write. */
	assert_int_equal(index_folder_touch(rd, folder, 5), -EROFS);
	index_close(&rd);

	/* Read-only open with no writer open, and of a missing file. */
	index_close(&fx->ix);
	assert_int_equal(index_open(fx->db, true, &rd), 0);
	assert_int_equal(index_folder_get(rd, folder, &f), 0);
	assert_int_equal(f.n_active, 2);
	index_folder_release(&f);
	index_close(&rd);
	{
		char missing[160];

		snprintf(missing, sizeof missing, "%s/none.db", fx->dir);
		assert_int_equal(index_open(missing, true, &rd), -ENOENT);
		assert_null(rd);
	}
	assert_int_equal(index_open(fx->db, false, &fx->ix), 0);
}

/* ---- parts ---- */

/* Three records: a nested message's directory, an attachment with marks
 * (deltas of every size a varint can take), a body with a charset. */
static void parts_sample(struct parts_list *l, struct part_mark *marks, size_t n_marks)
{
	static struct part_rec v[3];

	v[0] = (struct part_rec){ .n = 1, .parent = 0, .kind = PART_DIR, .name = (char *)"fwd",
				  .content_type = (char *)"message/rfc822", .off = 10, .len = 500 };
	v[1] = (struct part_rec){ .n = 2, .parent = 1, .kind = PART_FILE, .name = (char *)"a b.pdf",
				  .content_type = (char *)"application/pdf", .enc = PART_ENC_BASE64,
				  .off = 100, .len = 400, .size = 300, .marks = marks,
				  .n_marks = n_marks };
	v[2] = (struct part_rec){ .n = 3, .parent = 0, .kind = PART_FILE, .name = (char *)"body.txt",
				  .content_type = (char *)"text/plain", .enc = PART_ENC_QP,
				  .charset = (char *)"iso-8859-1", .off = (int64_t)1 << 40, .len = 7,
				  .size = 5 };
	l->v = v;
	l->n = 3;
}

static void assert_parts_equal(const struct parts_list *a, const struct parts_list *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const struct part_rec *x = &a->v[i], *y = &b->v[i];

		assert_int_equal(x->n, y->n);
		assert_int_equal(x->parent, y->parent);
		assert_int_equal(x->kind, y->kind);
		assert_string_equal(x->name, y->name);
		assert_string_equal(x->content_type, y->content_type);
		assert_int_equal(x->enc, y->enc);
		assert_true(x->charset ? y->charset && strcmp(x->charset, y->charset) == 0 : !y->charset);
		assert_int_equal(x->off, y->off);
		assert_int_equal(x->len, y->len);
		assert_int_equal(x->size, y->size);
		assert_int_equal(x->n_marks, y->n_marks);
		if (x->n_marks)
			assert_memory_equal(x->marks, y->marks, x->n_marks * sizeof *x->marks);
	}
}

/* Put and get round-trip every field, a put replaces, n_parts follows; an
 * unanalysed or missing message is -ENOENT, and a put for a missing one
 * leaves the caller's transaction usable; a deleted row takes its records. */
static void test_parts_roundtrip(void **state)
{
	struct fixture *fx = *state;
	struct part_mark marks[] = { { 0, 0 }, { 87382, 65536 }, { 174764, 131072 },
				     { INT64_MAX / 2, INT64_MAX / 2 }, { INT64_MAX, INT64_MAX } };
	struct parts_list in, out, none = { 0 };
	struct index_msg m;
	int64_t folder = add_folder(fx->ix, "alice", "work", "INBOX"), id, id2;

	assert_int_equal(add_msg(fx->ix, folder, "1", "one.eml", &id), 0);
	assert_int_equal(add_msg(fx->ix, folder, "2", "two.eml", &id2), 0);
	assert_int_equal(index_msg_get(fx->ix, id, &m), 0);
	assert_int_equal(m.n_parts, -1);
	index_msg_release(&m);
	assert_int_equal(index_parts_get(fx->ix, id, &out), -ENOENT);
	assert_null(out.v);

	parts_sample(&in, marks, sizeof marks / sizeof marks[0]);
	assert_int_equal(index_parts_put(fx->ix, id, &in), 0);
	assert_int_equal(index_parts_get(fx->ix, id, &out), 0);
	assert_parts_equal(&in, &out);
	parts_list_release(&out);
	assert_int_equal(index_msg_get(fx->ix, id, &m), 0);
	assert_int_equal(m.n_parts, 3);
	index_msg_release(&m);
	/* Five marks in a few bytes each, not 16. */
	assert_true(sql_int(fx->db, "SELECT length(marks) FROM parts WHERE n = 2") < 5 * 12);

	/* A put replaces; none at all is analysed with nothing to show. */
	in.n = 1;
	assert_int_equal(index_parts_put(fx->ix, id, &in), 0);
	assert_int_equal(index_parts_get(fx->ix, id, &out), 0);
	assert_parts_equal(&in, &out);
	parts_list_release(&out);
	assert_int_equal(index_parts_put(fx->ix, id2, &none), 0);
	assert_int_equal(index_parts_get(fx->ix, id2, &out), 0);
	assert_int_equal(out.n, 0);
	assert_int_equal(index_msg_get(fx->ix, id2, &m), 0);
	assert_int_equal(m.n_parts, 0);
	index_msg_release(&m);

	/* Marks that go backwards are refused, and nothing of the put stays. */
	marks[1].dec_off = -1;
	parts_sample(&in, marks, 2);
	assert_int_equal(index_parts_put(fx->ix, id2, &in), -EINVAL);
	assert_int_equal(sql_int(fx->db, "SELECT n_parts FROM messages WHERE id = 2"), 0);

	/* A missing message, inside a transaction that still commits. */
	assert_int_equal(index_begin(fx->ix), 0);
	assert_int_equal(index_parts_put(fx->ix, 999, &none), -ENOENT);
	assert_int_equal(index_parts_get(fx->ix, 999, &out), -ENOENT);
	assert_int_equal(add_msg(fx->ix, folder, "3", "three.eml", NULL), 0);
	assert_int_equal(index_commit(fx->ix), 0);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM messages"), 3);

	/* A corrupt marks blob is an -EIO, not a crash. */
	sql_exec(fx->db, "UPDATE parts SET marks = x'ff' WHERE msg_id = 1");
	assert_int_equal(index_parts_get(fx->ix, id, &out), -EIO);
	assert_null(out.v);

	/* The row's end is its records' end (a purge, a row store_recover drops). */
	assert_int_equal(index_msg_delete(fx->ix, id), 0);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM parts"), 0);
}

static void assert_ids(const int64_t *ids, size_t n, const int64_t *want, size_t n_want)
{
	assert_int_equal(n, n_want);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ids[i], want[i]);
}

/* Pending: visible, never analysed, ascending, after and max honoured, by
 * folder; trash and restore keep a message's records. */
static void test_parts_pending(void **state)
{
	struct fixture *fx = *state;
	struct parts_list none = { 0 }, out;
	int64_t a = add_folder(fx->ix, "alice", "work", "INBOX");
	int64_t b = add_folder(fx->ix, "alice", "work", "Archive");
	int64_t id[5], ids[8];
	size_t n;

	for (int i = 0; i < 5; i++) {
		char rid[8], view[16];

		snprintf(rid, sizeof rid, "%d", i);
		snprintf(view, sizeof view, "m%d.eml", i);
		assert_int_equal(add_msg(fx->ix, i < 3 ? a : b, rid, view, &id[i]), 0);
	}
	assert_int_equal(index_parts_pending(fx->ix, 0, ids, 8, &n), 0);
	assert_ids(ids, n, id, 5);
	assert_int_equal(index_parts_put(fx->ix, id[1], &none), 0);
	assert_int_equal(index_msg_mark_trashed(fx->ix, id[2], "trash/x", 0, "gone", 5), 0);
	assert_int_equal(index_parts_pending(fx->ix, 0, ids, 8, &n), 0);
	assert_ids(ids, n, (int64_t[]){ id[0], id[3], id[4] }, 3);
	assert_int_equal(index_parts_pending(fx->ix, id[0], ids, 1, &n), 0);
	assert_ids(ids, n, &id[3], 1);
	assert_int_equal(index_parts_pending_in(fx->ix, a, 0, ids, 8, &n), 0);
	assert_ids(ids, n, id, 1);
	assert_int_equal(index_parts_pending_in(fx->ix, b, id[3], ids, 8, &n), 0);
	assert_ids(ids, n, &id[4], 1);
	assert_int_equal(index_parts_pending(fx->ix, 0, ids, 0, &n), 0);
	assert_int_equal(n, 0);

	/* Trash and restore keep the row, so its records. */
	assert_int_equal(index_msg_mark_trashed(fx->ix, id[1], "trash/y", 0, "gone", 5), 0);
	assert_int_equal(index_parts_get(fx->ix, id[1], &out), 0);
	assert_int_equal(index_msg_mark_restored(fx->ix, id[1], "mail/y"), 0);
	assert_int_equal(index_parts_get(fx->ix, id[1], &out), 0);
	assert_int_equal(out.n, 0);
	/* Restoring a never analysed message makes it pending again. */
	assert_int_equal(index_msg_mark_restored(fx->ix, id[2], "mail/x"), 0);
	assert_int_equal(index_parts_pending_in(fx->ix, a, 0, ids, 8, &n), 0);
	assert_ids(ids, n, (int64_t[]){ id[0], id[2] }, 2);
}

static int count_unanalysed(void *ctx, const struct index_msg *m)
{
	*(int *)ctx += m->n_parts == -1;
	return 0;
}

/* A version 2 index (before parts): a reader reads every message as not
 * analysed; the first writer upgrades it, keeping every row, and every
 * visible message is then pending. */
static void test_parts_upgrade(void **state)
{
	struct fixture *fx = *state;
	struct parts_list none = { 0 }, out;
	struct index_msg m;
	struct index *ro;
	int64_t folder = add_folder(fx->ix, "alice", "work", "INBOX"), id[3], ids[4];
	size_t n;

	for (int i = 0; i < 3; i++) {
		char rid[8], view[16];

		snprintf(rid, sizeof rid, "%d", i);
		snprintf(view, sizeof view, "m%d.eml", i);
		assert_int_equal(add_msg(fx->ix, folder, rid, view, &id[i]), 0);
	}
	assert_int_equal(index_msg_mark_trashed(fx->ix, id[2], "trash/x", 0, "gone", 5), 0);
	index_close(&fx->ix);
	sql_exec(fx->db, "DROP TABLE parts; DROP INDEX messages_unanalysed;"
		 " ALTER TABLE messages DROP COLUMN n_parts; PRAGMA user_version = 2;");

	assert_int_equal(index_open(fx->db, true, &ro), 0);
	assert_int_equal(index_msg_get(ro, id[0], &m), 0);
	assert_int_equal(m.n_parts, -1);
	assert_string_equal(m.view_name, "m0.eml");
	index_msg_release(&m);
	assert_int_equal(index_parts_get(ro, id[0], &out), -ENOENT);
	/* Every statement that reads message rows (maildisk check --store). */
	int unanalysed = 0;
	assert_int_equal(index_msg_foreach(ro, folder, MSG_VISIBLE_MASK, count_unanalysed,
					   &unanalysed), 0);
	assert_int_equal(index_msg_foreach(ro, folder, 1u << MSG_TRASHED, count_unanalysed,
					   &unanalysed), 0);
	assert_int_equal(index_trash_foreach(ro, NULL, count_unanalysed, &unanalysed), 0);
	assert_int_equal(index_msg_lookup(ro, folder, "m1.eml", &m), 0);
	index_msg_release(&m);
	assert_int_equal(unanalysed, 4);
	assert_int_equal(index_parts_pending(ro, 0, ids, 4, &n), 0);
	assert_int_equal(n, 0);
	index_close(&ro);
	assert_int_equal(sql_int(fx->db, "PRAGMA user_version"), 2);

	assert_int_equal(index_open(fx->db, false, &fx->ix), 0);
	assert_int_equal(sql_int(fx->db, "PRAGMA user_version"), 3);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM messages"), 3);
	assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM messages WHERE n_parts IS NULL"), 3);
	assert_int_equal(index_parts_pending(fx->ix, 0, ids, 4, &n), 0);
	assert_ids(ids, n, id, 2);
	assert_int_equal(index_msg_get(fx->ix, id[2], &m), 0);
	assert_int_equal(m.state, MSG_TRASHED);
	assert_string_equal(m.store_file, "trash/x");
	index_msg_release(&m);
	assert_int_equal(index_parts_put(fx->ix, id[0], &none), 0);
	assert_int_equal(index_parts_pending(fx->ix, 0, ids, 4, &n), 0);
	assert_ids(ids, n, &id[1], 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		FIXTURE_TEST(test_schema),
		FIXTURE_TEST(test_schema_upgrade),
		FIXTURE_TEST(test_folder_path_unique),
		FIXTURE_TEST(test_folders),
		FIXTURE_TEST(test_messages),
		FIXTURE_TEST(test_unique_conflicts),
		FIXTURE_TEST(test_known_ids_rekey),
		FIXTURE_TEST(test_trash_transitions),
		FIXTURE_TEST(test_transactions),
		FIXTURE_TEST(test_two_connections),
		FIXTURE_TEST(test_parts_roundtrip),
		FIXTURE_TEST(test_parts_pending),
		FIXTURE_TEST(test_parts_upgrade),
	};

	return FIXTURE_RUN("test_index", tests);
}
