/* sync: one account, once, for every protocol: log in through the
 * account's driver (driver.h: IMAP or POP3), choose the folders to sync,
 * sync each (sync_folder.c), and record the run. Folders the server no
 * longer lists, or that the config names and the server does not have, are
 * reported, never emptied. */
#include "sync.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../cache/log.h"
#include "driver.h"
#include "ingest.h"
#include "msgmeta.h"
#include "parts_backfill.h"
#include "secret.h"
#include "sync_folder.h"

void drv_folders_free(struct drv_folder *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].name);
		free(v[i].raw);
		free(v[i].note);
	}
	free(v);
}

void drv_listing_release(struct drv_listing *l)
{
	for (size_t i = 0; l->ids && i < l->n; i++)
		free(l->ids[i]);
	free(l->ids);
	for (size_t i = 0; i < l->n_flags; i++) {
		free(l->flags[i].id);
		free(l->flags[i].flags);
	}
	free(l->flags);
	memset(l, 0, sizeof(*l));
}

/* A configured folder name against a listed one: INBOX case-insensitively
 * (RFC 3501 5.1), everything else exactly. */
static bool folder_is(const char *wanted, const struct drv_folder *df)
{
	if (!df->selectable)
		return false;
	return strcasecmp(wanted, "INBOX") == 0 ? strcasecmp(df->name, "INBOX") == 0
						: strcmp(wanted, df->name) == 0;
}

/* Which of the server's folders to sync: all selectable ones for "*", else
 * the configured names (a protocol without folders: its one folder). */
static bool wanted(const struct fetch_driver *drv, const struct account_settings *a,
		   const struct drv_folder *df)
{
	if (!drv->has_folders)
		return df->selectable;
	for (size_t i = 0; i < a->n_folders; i++)
		if ((strcmp(a->folders[i], "*") == 0 && df->selectable) ||
		    folder_is(a->folders[i], df))
			return true;
	return false;
}

/* Configured folders the server does not list: an error, never a deletion
 * (a typo or a rename must not empty anything). */
static void check_configured(struct ingest_run *run, const struct drv_folder *fs, size_t n)
{
	for (size_t i = 0; i < run->a->n_folders; i++) {
		const char *w = run->a->folders[i];
		bool found = strcmp(w, "*") == 0;

		for (size_t j = 0; !found && j < n; j++)
			found = folder_is(w, &fs[j]);
		if (!found) {
			char msg[512];

			snprintf(msg, sizeof(msg), "%s: folder \"%s\" does not exist on the server "
				 "(check 'folders =' in the config)", run->label, w);
			log_error("%s", msg);
			ingest_note_error(run, msg);
			ingest_note_status(run, FETCH_FOLDER_BAD);
		}
	}
}

/* Folders in the index that the server no longer lists: kept, never
 * trashed (a rename or a server hiccup must not empty anything), and
 * reported in status once. */
static void note_unlisted(struct ingest_run *run, const struct drv_folder *dfs, size_t n_dfs)
{
	struct index_folder *fs = NULL;
	size_t n = 0;

	if (index_folder_list(run->ix, run->a->user, run->a->name, &fs, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		bool listed = false;

		for (size_t j = 0; !listed && j < n_dfs; j++)
			listed = strcmp(fs[i].name, dfs[j].name) == 0 && dfs[j].selectable;
		if (listed)
			continue;
		char msg[512];
		snprintf(msg, sizeof(msg), "the server no longer lists this folder; its %" PRId64
			 " messages are kept here", fs[i].n_active);
		/* recorded already, exactly so: nothing new to say */
		if (fs[i].last_error && strcmp(fs[i].last_error, msg) == 0)
			continue;
		log_warn("%s %s: %s", run->label, fs[i].name, msg);
		index_folder_set_result(run->ix, fs[i].id, time(NULL), msg, fs[i].held);
	}
	index_folder_array_free(&fs, n);
}

/* Notes one folder's outcome for the account; true when the account's
 * run must stop (the connection or the store is gone). */
static bool note_folder(struct ingest_run *run, const struct fetch_driver *drv, void *conn,
			enum fetch_status fs)
{
	ingest_note_status(run, fs);
	if (fs == FETCH_FOLDER_BAD || fs == FETCH_ACCOUNT_BAD)
		ingest_note_error(run, drv->error(conn));
	if (fs == FETCH_LOCAL_BAD && run->local_error[0])
		ingest_note_error(run, run->local_error);
	return fs >= FETCH_ACCOUNT_BAD;
}

/* The wanted folders: rows first, then the driver's probe for all at once,
 * then a full sync of each folder the probe could not prove unchanged. */
static enum fetch_status sync_folders(struct ingest_run *run, const struct fetch_driver *drv,
				      void *conn, const struct drv_folder *dfs, size_t n)
{
	struct drv_folder *sel = calloc(n ? n : 1, sizeof(*sel));
	struct index_folder *rows = calloc(n ? n : 1, sizeof(*rows));
	bool *unchanged = calloc(n ? n : 1, sizeof(*unchanged));
	enum fetch_status st = FETCH_OK;
	size_t k = 0;

	if (!sel || !rows || !unchanged) {
		ingest_local_error(run, "%s: out of memory", run->label);
		st = FETCH_LOCAL_BAD;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!wanted(drv, run->a, &dfs[i]))
			continue;
		enum fetch_status fs = sync_folder_row(run, &dfs[i], &rows[k]);

		if (fs != FETCH_OK) {
			index_folder_release(&rows[k]);
			if (note_folder(run, drv, conn, fs)) {
				st = fs;
				goto out;
			}
			continue;
		}
		sel[k++] = dfs[i];       /* borrowed strings */
	}
	if (drv->probe && k) {
		enum fetch_status ps = drv->probe(conn, sel, rows, k, unchanged);

		if (ps != FETCH_OK && note_folder(run, drv, conn, ps)) {
			st = ps;
			goto out;
		}
	}
	for (size_t j = 0; j < k && !ingest_stopping(run); j++) {
		if (unchanged[j]) {
			sync_folder_unchanged(run, &rows[j]);
			continue;
		}
		for (size_t t = j + 1; drv->hint_next && t < k; t++)
			if (!unchanged[t]) {
				drv->hint_next(conn, &sel[t], &rows[t]);
				break;
			}
		enum fetch_status fs = sync_folder(run, drv, conn, &sel[j], &rows[j]);

		if (note_folder(run, drv, conn, fs)) {
			st = fs;
			break;
		}
	}
out:
	for (size_t j = 0; rows && j < k; j++)
		index_folder_release(&rows[j]);
	free(rows);
	free(sel);
	free(unchanged);
	return st;
}

static enum fetch_status sync_with(struct ingest_run *run, const struct fetch_driver *drv,
				   const char *secret, bool token)
{
	void *conn = NULL;
	struct drv_folder *dfs = NULL;
	size_t n = 0;
	struct buf err = BUF_INIT(1024);
	enum fetch_status st;

	st = drv->open(run, secret, token, &conn, &err);
	if (st != FETCH_OK) {
		log_error("%s", err.data ? err.data : run->label);
		ingest_note_error(run, err.data ? err.data : "connection failed");
		buf_release(&err);
		return st;
	}
	buf_release(&err);
	st = drv->list_folders(conn, &dfs, &n);
	if (st != FETCH_OK) {
		log_error("%s", drv->error(conn));
		ingest_note_error(run, drv->error(conn));
		drv->close(&conn);
		return st;
	}
	if (drv->has_folders)
		check_configured(run, dfs, n);
	note_unlisted(run, dfs, n);
	st = sync_folders(run, drv, conn, dfs, n);
	if (ingest_stopping(run))
		st = FETCH_STOPPED;
	drv_folders_free(dfs, n);
	drv->close(&conn);
	return st;
}

int sync_global_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	msgmeta_init();
	return 0;
}

void sync_global_cleanup(void)
{
	curl_global_cleanup();
}

int sync_account(struct store *st, const struct settings *cfg,
		 const struct account_settings *a, const struct sync_opts *o,
		 struct sync_result *r)
{
	struct ingest_run run = { .st = st, .cfg = cfg, .a = a, .o = o, .r = r };
	struct buf err = BUF_INIT(1024);
	char *secret = NULL;
	enum fetch_status stat;
	int rc;

	memset(r, 0, sizeof(*r));
	snprintf(run.label, sizeof(run.label), "%s/%s", a->user, a->name);
	rc = store_index_open(st, false, &run.ix);
	if (rc < 0) {
		snprintf(r->error, sizeof(r->error), "%s: cannot open the index: %s", run.label,
			 index_strerror(rc));
		r->status = FETCH_LOCAL_BAD;
		return -1;
	}
	index_sync_start(run.ix, a->user, a->name, (int64_t)time(NULL), &run.sync_id);
	if (a->tls_off)
		log_warn("%s: tls = off: the login and all mail cross the network unencrypted",
			 run.label);

	rc = secret_get(a, &secret, &err);
	if (rc < 0) {
		log_error("%s", err.data ? err.data : run.label);
		ingest_note_error(&run, err.data ? err.data : "cannot get the secret");
		r->retry = RETRY_AFTER_FIX;
		stat = FETCH_ACCOUNT_BAD;
	} else {
		bool imap = a->proto == PROTO_IMAP || a->proto == PROTO_IMAPS;

		stat = sync_with(&run, imap ? &drv_imap : &drv_pop3, secret, secret_is_token(a));
	}
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	buf_release(&err);
	/* After the network part, so new mail is not held up, and whether or
	 * not the server answered: it is local work. */
	if (!ingest_stopping(&run))
		parts_backfill(&run, BACKFILL_SECONDS);
	ingest_note_status(&run, stat);
	index_sync_finish(run.ix, run.sync_id, (int64_t)time(NULL), r->n_new, r->n_trashed,
			  r->status == FETCH_OK ? NULL : r->error[0] ? r->error
								  : fetch_status_str(r->status));
	index_close(&run.ix);
	if (run.changed && o->obs && o->obs->user_changed)
		o->obs->user_changed(o->obs->ctx, a->user);
	return r->status == FETCH_OK && r->n_held == 0 ? 0 : -1;
}
