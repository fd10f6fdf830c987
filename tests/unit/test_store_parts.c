/* Unit tests for the part records of stored messages: a committed batch
 * has its records (what parts_analyse gives for the stored file), in the
 * transaction of its rows; trash and restore keep them, a purge takes
 * them; the backfill (fetch/parts_backfill.c) records those that have none,
 * within its time and its stop flag. (test_store.c holds the rest of the
 * store; this is apart to keep each file readable.) */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../cache/log.h"
#include "../../cache/parts.h"
#include "../../cache/store.h"
#include "../../fetch/parts_backfill.h"
#include "store_fixture.h"

static const char mime_msg[] =
	"From: a@example.com\r\n"
	"Subject: parts\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	"\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"the body\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; name=\"note.txt\"\r\n"
	"Content-Disposition: attachment; filename=\"note.txt\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"YSB3b3JkIGluIGFuIGF0dGFjaG1lbnQK\r\n"
	"--b1--\r\n";

/* Commits n copies of mime_msg (remote ids from first on), analysed or
 * not; ids gets the rows. */
static void commit(struct fixture *fx, int first, int n, bool analyse, int64_t *ids)
{
	struct store_batch *b;
	int64_t *got;
	size_t ngot;

	assert_int_equal(store_batch_create(fx->s, &fx->f, &b), 0);
	store_batch_set_parts(b, analyse);
	for (int i = first; i < first + n; i++) {
		struct index_msg meta = { .state = MSG_ACTIVE };
		struct store_msg *m;
		char rid[16], view[32];

		snprintf(rid, sizeof rid, "%d", i);
		snprintf(view, sizeof view, "m%d.eml", i);
		meta.remote_id = strdup(rid);
		meta.view_name = strdup(view);
		assert_int_equal(store_msg_begin(b, &m), 0);
		assert_int_equal(store_msg_write(m, mime_msg, sizeof mime_msg - 1), 0);
		assert_int_equal(store_msg_finish(m, &meta), 0);
	}
	assert_int_equal(store_batch_commit(b, fx->ix, 1000, &got, &ngot), 0);
	assert_int_equal(ngot, (size_t)n);
	memcpy(ids, got, ngot * sizeof *got);
	free(got);
	store_batch_destroy(&b);
}

/* The index's records of id are what parts_analyse gives for its file now. */
static void assert_records_of_file(struct fixture *fx, int64_t id)
{
	struct parts_list want, got;
	struct index_msg m;
	struct stat st;
	int fd;

	assert_int_equal(index_msg_get(fx->ix, id, &m), 0);
	fd = store_open_file(fx->s, m.store_file);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(parts_analyse(fd, (int64_t)st.st_size, &want), 0);
	close(fd);
	assert_true(want.n >= 1);
	assert_int_equal(m.n_parts, (int)want.n);
	assert_int_equal(index_parts_get(fx->ix, id, &got), 0);
	assert_int_equal(got.n, want.n);
	for (size_t i = 0; i < got.n; i++) {
		assert_int_equal(got.v[i].n, want.v[i].n);
		assert_string_equal(got.v[i].name, want.v[i].name);
		assert_int_equal(got.v[i].off, want.v[i].off);
		assert_int_equal(got.v[i].len, want.v[i].len);
		assert_int_equal(got.v[i].size, want.v[i].size);
		assert_int_equal(got.v[i].enc, want.v[i].enc);
		assert_int_equal(got.v[i].n_marks, want.v[i].n_marks);
	}
	parts_list_release(&want);
	parts_list_release(&got);
	index_msg_release(&m);
}

static size_t pending(struct fixture *fx)
{
	int64_t ids[16];
	size_t n;

	assert_int_equal(index_parts_pending(fx->ix, 0, ids, 16, &n), 0);
	return n;
}

/* A committed batch has its records; parts off leaves them for later;
 * trash and restore keep them, a purge takes them. */
static void test_batch_records(void **state)
{
	struct fixture *fx = *state;
	int64_t ids[3], later[1], sync_id;
	struct parts_list l;
	size_t n;

	commit(fx, 1, 3, true, ids);
	for (int i = 0; i < 3; i++)
		assert_records_of_file(fx, ids[i]);
	assert_int_equal(index_parts_get(fx->ix, ids[0], &l), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0].name, "body.txt");
	assert_string_equal(l.v[1].name, "note.txt");
	assert_int_equal(l.v[1].size, 24);  /* "a word in an attachment\n" */
	parts_list_release(&l);
	assert_int_equal(pending(fx), 0);
	/* Stored with parts off: no records, pending. */
	commit(fx, 9, 1, false, later);
	assert_int_equal(index_parts_get(fx->ix, later[0], &l), -ENOENT);
	assert_int_equal(pending(fx), 1);

	/* Trash and restore: the records follow the message. */
	assert_int_equal(index_sync_start(fx->ix, "alice", "work", 2000, &sync_id), 0);
	assert_int_equal(store_trash(fx->s, fx->ix, ids, 2, sync_id, "vanished upstream", 2000), 0);
	assert_records_of_file(fx, ids[0]);
	assert_int_equal(store_restore(fx->s, fx->ix, ids[0]), 0);
	assert_records_of_file(fx, ids[0]);

	/* A purge takes the records of what it deletes, and only those. */
	assert_int_equal(index_parts_get(fx->ix, ids[1], &l), 0);
	parts_list_release(&l);
	assert_int_equal(store_purge(fx->s, fx->ix, 3000, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(index_parts_get(fx->ix, ids[1], &l), -ENOENT);
	assert_records_of_file(fx, ids[0]);
	assert_records_of_file(fx, ids[2]);
}

struct seen {
	size_t calls, ids;
	int64_t folder;
};

static void on_analysed(void *ctx, int64_t folder_id, const int64_t *ids, size_t n)
{
	struct seen *s = ctx;

	(void)ids;
	s->calls++;
	s->ids += n;
	s->folder = folder_id;
}

/* The backfill records what has no records, not past its time or its stop
 * flag, and tells the observer. */
static void test_backfill(void **state)
{
	struct fixture *fx = *state;
	struct seen seen = { 0 };
	struct sync_observer obs = { .analysed = on_analysed, .ctx = &seen };
	atomic_bool stop = false;
	struct sync_opts o = { .obs = &obs, .stop = &stop, .cancel_fd = -1 };
	struct account_settings a = { .user = (char *)"alice", .name = (char *)"work" };
	struct sync_result r = { 0 };
	struct ingest_run run = { .st = fx->s, .ix = fx->ix, .a = &a, .o = &o, .r = &r };
	int64_t ids[250];

	snprintf(run.label, sizeof run.label, "alice/work");
	commit(fx, 1, 250, false, ids);
	assert_int_equal(pending(fx), 16);
	/* No time, or asked to stop: nothing. */
	assert_int_equal(parts_backfill(&run, 0), 0);
	stop = true;
	assert_int_equal(parts_backfill(&run, 10), 0);
	stop = false;
	/* Another account's run leaves these alone. */
	a.name = (char *)"home";
	assert_int_equal(parts_backfill(&run, 10), 0);
	a.name = (char *)"work";

	assert_int_equal(parts_backfill(&run, 10), 250);
	assert_int_equal(pending(fx), 0);
	assert_int_equal(seen.ids, 250);
	assert_int_equal(seen.calls, 2);     /* one per transaction of BACKFILL_BATCH */
	assert_int_equal(seen.folder, fx->f.id);
	assert_records_of_file(fx, ids[0]);
	assert_records_of_file(fx, ids[249]);
	assert_int_equal(parts_backfill(&run, 10), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		FIXTURE_TEST(test_batch_records),
		FIXTURE_TEST(test_backfill),
	};

	return FIXTURE_RUN("test_store_parts", tests);
}
