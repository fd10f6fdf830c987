/* Unit tests for fetch/sync_folder.c, the protocol-neutral folder sync,
 * against a fake driver (no server): a real store and index in a temporary
 * directory, and a scripted folder whose listing, UIDVALIDITY and failures
 * each test sets. What must hold: a complete listing trashes exactly what
 * vanished; an incomplete one, an error or a stop trashes nothing; the
 * mass-delete and empty-listing guards hold; a UIDVALIDITY change re-keys
 * by evidence without fetching again; the outcome is recorded. */

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../cache/store.h"
#include "../../fetch/driver.h"
#include "../../fetch/ingest.h"
#include "../../fetch/msgmeta.h"
#include "../../fetch/sync_folder.h"

#define MAXMSG 64

/* ---- the fake server ---- */

struct fake {
	uint32_t uidvalidity;
	uint32_t uids[MAXMSG];      /* the folder's messages, by UID */
	char msgid_of[MAXMSG][32];  /* their Message-IDs */
	size_t n;
	uint32_t exists;            /* what the server claims (normally n) */
	bool incomplete;            /* the listing does not add up */
	enum fetch_status fail_select, fail_list, fail_fetch;
	size_t fail_fetch_after;    /* messages sent before fail_fetch */
	size_t stop_after;          /* messages sent before the stop flag is raised (0: never) */
	atomic_bool *stop;
	size_t fetched;             /* bodies sent, over the test */
};

static const char *fk_error(void *conn)
{
	(void)conn;
	return "fake: injected failure";
}

static enum fetch_status fk_select(void *conn, const struct drv_folder *f,
				   const struct index_folder *known, struct drv_state *st)
{
	struct fake *k = conn;

	(void)f, (void)known;
	*st = (struct drv_state){ .uidvalidity = k->uidvalidity, .uidnext = 1000,
				  .exists = k->exists };
	return k->fail_select;
}

static enum fetch_status fk_list(void *conn, const struct index_folder *known,
				 char *const *known_ids, size_t n_known, struct drv_listing *r)
{
	struct fake *k = conn;

	(void)known, (void)known_ids, (void)n_known;
	memset(r, 0, sizeof(*r));
	if (k->fail_list)
		return k->fail_list;
	r->ids = calloc(k->n + 1, sizeof(*r->ids));
	for (r->n = 0; r->n < k->n; r->n++)
		assert_true(asprintf(&r->ids[r->n], "%" PRIu32, k->uids[r->n]) > 0);
	r->complete = !k->incomplete && k->n == k->exists;
	if (!r->complete)
		snprintf(r->incomplete, sizeof(r->incomplete), "fake: incomplete");
	return FETCH_OK;
}

static const char *message(struct fake *k, uint32_t uid, char *buf, size_t len)
{
	for (size_t i = 0; i < k->n; i++)
		if (k->uids[i] == uid) {
			snprintf(buf, len, "Message-ID: <%s>\r\nSubject: message %s\r\n\r\nbody of %s\r\n",
				 k->msgid_of[i], k->msgid_of[i], k->msgid_of[i]);
			return buf;
		}
	return NULL;
}

static enum fetch_status fk_fetch(void *conn, char *const *ids, size_t n, struct ingest *in)
{
	struct fake *k = conn;
	char buf[256];

	for (size_t i = 0; i < n; i++) {
		const char *m = message(k, (uint32_t)strtoul(ids[i], NULL, 10), buf, sizeof(buf));

		if (k->fail_fetch && i == k->fail_fetch_after)
			return k->fail_fetch;
		if (!m)
			continue;
		if (ingest_msg_begin(in) < 0 || ingest_msg_write(in, m, strlen(m)) < 0)
			return FETCH_LOCAL_BAD;
		if (ingest_msg_finish(in, ids[i], 1700000000, "\\Seen") < 0)
			return FETCH_LOCAL_BAD;
		k->fetched++;
		if (k->stop_after && k->fetched == k->stop_after)
			atomic_store(k->stop, true);
		if (ingest_stopping(in->run))
			return FETCH_STOPPED;
	}
	return FETCH_OK;
}

static enum fetch_status fk_evidence(void *conn, struct rematch_remote **r, char ***msgids_r,
				     size_t *n_r)
{
	struct fake *k = conn;
	struct rematch_remote *v = calloc(k->n + 1, sizeof(*v));
	char **ids = calloc(k->n + 1, sizeof(*ids));
	char buf[256];

	for (size_t i = 0; i < k->n; i++) {
		ids[i] = strdup(k->msgid_of[i]);
		v[i] = (struct rematch_remote){ k->uids[i], ids[i],
						(int64_t)strlen(message(k, k->uids[i], buf, sizeof(buf))),
						1700000000 };
	}
	*r = v;
	*msgids_r = ids;
	*n_r = k->n;
	return FETCH_OK;
}

static const struct fetch_driver fake_driver = {
	.name = "FAKE", .gone_reason = "expunged on the fake server", .has_folders = true,
	.error = fk_error, .select = fk_select, .list_ids = fk_list, .fetch = fk_fetch,
	.rematch_evidence = fk_evidence,
};

/* ---- the fixture: a store, an index, one account ---- */

struct fixture {
	char dir[64];
	struct store *s;
	struct settings cfg;
	struct account_settings a;
	struct sync_opts o;
	struct sync_result r;
	struct ingest_run run;
	atomic_bool stop;
	struct fake k;
	struct drv_folder df;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char root[96];

	strcpy(fx->dir, "/tmp/test_sync_folder.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(root, sizeof(root), "%s/store", fx->dir);
	assert_int_equal(store_open(root, &fx->s), 0);
	fx->a = (struct account_settings){
		.user = "alice", .name = "fake", .host = "fake.example", .mirror_deletions = true,
		.mass_delete_limit = 0.5, .max_message_size = 1 << 20,
	};
	fx->cfg.min_free_set = true;        /* a floor of 1 MiB: the test's tmp has room */
	fx->cfg.min_free_bytes = 1 << 20;
	fx->o = (struct sync_opts){ .stop = &fx->stop, .cancel_fd = -1 };
	fx->run = (struct ingest_run){ .st = fx->s, .cfg = &fx->cfg, .a = &fx->a, .o = &fx->o,
				       .r = &fx->r, .label = "alice/fake" };
	assert_int_equal(store_index_open(fx->s, false, &fx->run.ix), 0);
	fx->k = (struct fake){ .uidvalidity = 7, .stop = &fx->stop };
	fx->df = (struct drv_folder){ .name = "INBOX", .raw = "INBOX", .delim = '/',
				      .selectable = true };
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	index_close(&fx->run.ix);
	store_close(&fx->s);
	nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static void server_has(struct fixture *fx, size_t n, uint32_t first_uid, const char *tag)
{
	fx->k.n = n;
	for (size_t i = 0; i < n; i++) {
		fx->k.uids[i] = first_uid + (uint32_t)i;
		snprintf(fx->k.msgid_of[i], sizeof(fx->k.msgid_of[i]), "%s-%zu@example", tag, i);
	}
	fx->k.exists = (uint32_t)n;
}

static void server_expunges(struct fixture *fx, size_t i)
{
	memmove(&fx->k.uids[i], &fx->k.uids[i + 1], (fx->k.n - i - 1) * sizeof(fx->k.uids[0]));
	memmove(&fx->k.msgid_of[i], &fx->k.msgid_of[i + 1], (fx->k.n - i - 1) * sizeof(fx->k.msgid_of[0]));
	fx->k.n--;
	fx->k.exists--;
}

static enum fetch_status sync_once(struct fixture *fx)
{
	struct index_folder f = { 0 };
	enum fetch_status st;

	memset(&fx->r, 0, sizeof(fx->r));
	fx->run.local_error[0] = '\0';
	assert_int_equal(sync_folder_row(&fx->run, &fx->df, &f), FETCH_OK);
	st = sync_folder(&fx->run, &fake_driver, &fx->k, &fx->df, &f);
	index_folder_release(&f);
	return st;
}

struct counts {
	size_t active, trashed;
	char reason[128];
};

static int count_row(void *ctx, const struct index_msg *m)
{
	struct counts *c = ctx;

	if (m->state == MSG_TRASHED) {
		c->trashed++;
		snprintf(c->reason, sizeof(c->reason), "%s", m->trash_reason ? m->trash_reason : "");
	} else {
		c->active++;
	}
	return 0;
}

static struct counts rows(struct fixture *fx)
{
	struct counts c = { 0 };
	struct index_folder f = { 0 };

	assert_int_equal(index_folder_ensure(fx->run.ix, "alice", "fake", "INBOX", "x", &f), 0);
	assert_int_equal(index_msg_foreach(fx->run.ix, f.id, ~0u, count_row, &c), 0);
	index_folder_release(&f);
	return c;
}

static struct index_folder folder(struct fixture *fx)
{
	struct index_folder f = { 0 };

	assert_int_equal(index_folder_ensure(fx->run.ix, "alice", "fake", "INBOX", "x", &f), 0);
	return f;
}

/* ---- the tests ---- */

static void test_complete_listing_trashes_what_vanished(void **state)
{
	struct fixture *fx = *state;
	struct counts c;

	server_has(fx, 10, 1, "a");
	assert_int_equal(sync_once(fx), FETCH_OK);
	assert_int_equal(fx->r.n_new, 10);
	server_expunges(fx, 3);
	assert_int_equal(sync_once(fx), FETCH_OK);
	c = rows(fx);
	assert_int_equal(c.active, 9);
	assert_int_equal(c.trashed, 1);
	assert_string_equal(c.reason, "expunged on the fake server");
	assert_int_equal(fx->k.fetched, 10);      /* nothing fetched twice */
	struct index_folder f = folder(fx);
	assert_null(f.last_error);
	assert_null(f.held);
	assert_int_equal(f.uidvalidity, 7);
	index_folder_release(&f);
}

static void test_incomplete_listing_deletes_nothing(void **state)
{
	struct fixture *fx = *state;

	server_has(fx, 10, 1, "a");
	assert_int_equal(sync_once(fx), FETCH_OK);
	server_expunges(fx, 0);
	server_expunges(fx, 0);
	fx->k.exists = 10;                        /* the server still counts them */
	assert_int_equal(sync_once(fx), FETCH_OK);
	assert_int_equal(rows(fx).trashed, 0);
	assert_int_equal(fx->r.n_held, 0);        /* no proof is not a hold */
	fx->k.exists = 8;                         /* now it adds up */
	assert_int_equal(sync_once(fx), FETCH_OK);
	assert_int_equal(rows(fx).trashed, 2);
}

static void test_mass_delete_is_held(void **state)
{
	struct fixture *fx = *state;

	server_has(fx, 10, 1, "a");
	assert_int_equal(sync_once(fx), FETCH_OK);
	server_has(fx, 2, 1, "a");                /* 8 of 10 vanish: past 50% */
	assert_int_equal(sync_once(fx), FETCH_OK);
	assert_int_equal(rows(fx).trashed, 0);
	assert_int_equal(fx->r.n_held, 8);
	struct index_folder f = folder(fx);
	assert_non_null(f.held);
	assert_non_null(strstr(f.held, "8 of 10"));
	index_folder_release(&f);
	fx->o.allow_mass_delete = true;           /* the user confirms */
	assert_int_equal(sync_once(fx), FETCH_OK);
	assert_int_equal(rows(fx).trashed, 8);
}

static void test_empty_listing_is_held(void **state)
{
	struct fixture *fx = *state;

	server_has(fx, 4, 1, "a");
	assert_int_equal(sync_once(fx), FETCH_OK);
	server_has(fx, 0, 1, "a");
	assert_int_equal(sync_once(fx), FETCH_OK);
	assert_int_equal(rows(fx).trashed, 0);
	assert_int_equal(fx->r.n_held, 4);
	struct index_folder f = folder(fx);
	assert_non_null(f.held);
	index_folder_release(&f);
}

static void test_uidvalidity_rematch_rekeys(void **state)
{
	struct fixture *fx = *state;
	struct counts c;

	server_has(fx, 30, 1, "a");
	assert_int_equal(sync_once(fx), FETCH_OK);
	server_has(fx, 30, 500, "a");             /* same mail, new UIDs */
	fx->k.uidvalidity = 8;
	assert_int_equal(sync_once(fx), FETCH_OK);
	assert_int_equal(fx->r.n_rekeyed, 30);
	assert_int_equal(fx->k.fetched, 30);      /* nothing downloaded again */
	c = rows(fx);
	assert_int_equal(c.active, 30);
	assert_int_equal(c.trashed, 0);
	struct index_folder f = folder(fx);
	int64_t id;
	assert_int_equal(f.uidvalidity, 8);
	assert_int_equal(index_msg_find(fx->run.ix, f.id, "500", &id), 0);     /* the new UID */
	assert_int_equal(index_msg_find(fx->run.ix, f.id, "1", &id), -ENOENT); /* not the old */
	index_folder_release(&f);
}

static void test_uidvalidity_other_mail_is_held(void **state)
{
	struct fixture *fx = *state;

	server_has(fx, 30, 1, "a");
	assert_int_equal(sync_once(fx), FETCH_OK);
	server_has(fx, 30, 500, "b");             /* different mail */
	fx->k.uidvalidity = 8;
	assert_int_equal(sync_once(fx), FETCH_OK);
	assert_int_equal(fx->r.n_rekeyed, 0);
	assert_int_equal(fx->r.n_held, 1);
	assert_int_equal(rows(fx).trashed, 0);
	assert_int_equal(fx->k.fetched, 30);
	struct index_folder f = folder(fx);
	assert_int_equal(f.uidvalidity, 7);       /* nothing changed locally */
	assert_non_null(strstr(f.held, "could be matched"));
	index_folder_release(&f);
}

static void test_stop_mid_fetch(void **state)
{
	struct fixture *fx = *state;

	server_has(fx, 6, 1, "a");
	assert_int_equal(sync_once(fx), FETCH_OK);
	server_has(fx, 12, 1, "a");
	server_expunges(fx, 0);                   /* one gone, six new */
	fx->k.stop_after = fx->k.fetched + 2;
	assert_int_equal(sync_once(fx), FETCH_STOPPED);
	struct counts c = rows(fx);
	assert_int_equal(c.trashed, 0);           /* a stopped run proves nothing */
	assert_int_equal(c.active, 6 + 2);        /* what arrived whole is kept */
	struct index_folder f = folder(fx);
	assert_non_null(f.last_error);
	assert_non_null(strstr(f.last_error, "interrupted"));
	index_folder_release(&f);
	atomic_store(&fx->stop, false);
	fx->k.stop_after = 0;
	assert_int_equal(sync_once(fx), FETCH_OK);
	c = rows(fx);
	assert_int_equal(c.active, 11);
	assert_int_equal(c.trashed, 1);
}

static void test_errors_delete_nothing(void **state)
{
	struct fixture *fx = *state;
	static const enum fetch_status fails[] = { FETCH_FOLDER_BAD, FETCH_ACCOUNT_BAD };

	server_has(fx, 10, 1, "a");
	assert_int_equal(sync_once(fx), FETCH_OK);
	server_has(fx, 14, 5, "a");               /* UIDs 1-4 gone, 11-18 new */
	for (size_t i = 0; i < 2; i++) {
		fx->k.fail_select = fails[i];
		assert_int_equal(sync_once(fx), fails[i]);
		fx->k.fail_select = FETCH_OK;
		fx->k.fail_list = fails[i];
		assert_int_equal(sync_once(fx), fails[i]);
		fx->k.fail_list = FETCH_OK;
		fx->k.fail_fetch = fails[i];
		fx->k.fail_fetch_after = 1;
		assert_int_equal(sync_once(fx), fails[i]);
		fx->k.fail_fetch = FETCH_OK;
		assert_int_equal(rows(fx).trashed, 0);
		struct index_folder f = folder(fx);
		assert_string_equal(f.last_error, "fake: injected failure");
		index_folder_release(&f);
	}
	assert_int_equal(sync_once(fx), FETCH_OK);
	struct counts c = rows(fx);
	assert_int_equal(c.trashed, 4);
	assert_int_equal(c.active, 14);
}

static void test_mirror_deletions_off_keeps(void **state)
{
	struct fixture *fx = *state;

	server_has(fx, 10, 1, "a");
	assert_int_equal(sync_once(fx), FETCH_OK);
	server_expunges(fx, 5);
	fx->a.mirror_deletions = false;
	assert_int_equal(sync_once(fx), FETCH_OK);
	assert_int_equal(rows(fx).trashed, 0);
	assert_int_equal(fx->r.n_held, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_complete_listing_trashes_what_vanished, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incomplete_listing_deletes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mass_delete_is_held, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_listing_is_held, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uidvalidity_rematch_rekeys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uidvalidity_other_mail_is_held, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_mid_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_delete_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mirror_deletions_off_keeps, setup, teardown),
	};

	msgmeta_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
