/* sync_pop3: one POP3 account, once (RFC 1939 with UIDL). The account is
 * one folder, "INBOX"; a message's identity is its UIDL; the UIDVALIDITY
 * column holds the constant 1, since a UIDL never changes meaning.
 *
 * STAT, then UIDL: new = listed - known, retrieved with RETR in listing
 * order into durable batches; gone = known - listed, trashed only when the
 * listing is complete (it parsed, no UIDL repeats, and it has as many
 * messages as STAT announced in the same session), mirror_deletions is on,
 * and the guards in reconcile.c agree. Nothing on the server changes: no
 * DELE, and the session ends with RSET (pop3.h). Mirrors the IMAP path in
 * sync.c for batches, observer calls, trash, folder result and audit. */
#include "sync_pop3.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../cache/log.h"
#include "pop3.h"
#include "reconcile.h"

#define POP3_FOLDER "INBOX"
#define POP3_UIDVALIDITY 1u

/* ---- retrieving new messages into the store ---- */

/* RETR's bytes, straight into the message's tmp/ file. */
static int on_bytes(void *ctx, const void *p, size_t n)
{
	return ingest_msg_write(ctx, p, n);
}

/* RETRs todo (listing order) into the folder, stopping at the first
 * failure or at a message boundary when asked to stop. What arrived whole
 * is committed in every case. */
static enum fetch_status fetch_new(struct ingest_run *run, struct pop3 *s,
				   const struct index_folder *f,
				   const struct pop3_entry *const *todo, size_t n)
{
	struct ingest in;
	enum fetch_status st;

	if (n == 0)
		return FETCH_OK;
	st = ingest_open(&in, run, f, POP3_UIDVALIDITY, n);
	for (size_t i = 0; i < n && st == FETCH_OK; i++) {
		if (ingest_stopping(run)) {
			st = FETCH_STOPPED;
			break;
		}
		if (ingest_msg_begin(&in) < 0)
			break;
		st = pop3_retr(s, todo[i]->msgnum, on_bytes, &in);
		if (st != FETCH_OK) {
			/* A message that did not arrive whole is never kept. */
			ingest_msg_abort(&in);
			if (in.too_big)
				st = FETCH_ACCOUNT_BAD;    /* the transfer was cut */
			break;
		}
		/* POP3 has no INTERNALDATE: the time of download stands in. */
		if (ingest_msg_finish(&in, todo[i]->uidl, 0, NULL) < 0)
			break;
	}
	return ingest_close(&in, st);
}

/* ---- the account ---- */

/* Orders strings by address: the new UIDLs are pointers into the listing. */
static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(char *const *)a, y = (uintptr_t)*(char *const *)b;

	return (x > y) - (x < y);
}

enum fetch_status sync_pop3(struct ingest_run *run, const char *secret, bool token)
{
	struct index *ix = run->ix;
	const struct account_settings *a = run->a;
	const struct sync_opts *o = run->o;
	struct sync_result *r = run->r;
	struct pop3 *s = NULL;
	struct pop3_listing l = { 0 };
	struct index_folder f = { 0 };
	struct buf err = BUF_INIT(1024);
	struct buf path = BUF_INIT(8192);
	char **known = NULL, **remote = NULL, **nw = NULL, **gone = NULL;
	const struct pop3_entry **todo = NULL;
	size_t n_known = 0, n_new = 0, n_gone = 0, n_todo = 0;
	char held[768] = "", error[1024] = "";
	uint32_t count = 0;
	bool complete = false;
	enum fetch_status ret;
	int rc;

	ret = pop3_open(a, secret, token, run->o->cancel_fd, &s, &count, &r->retry, &err);
	if (ret != FETCH_OK) {
		log_error("%s", err.data ? err.data : run->label);
		ingest_note_error(run, err.data ? err.data : "connection failed");
		buf_release(&err);
		ingest_note_status(run, ret);
		return ret;
	}
	buf_release(&err);

	rc = ingest_folder_path(a, POP3_FOLDER, 0, &path);
	if (rc == 0)
		rc = index_folder_ensure(ix, a->user, a->name, POP3_FOLDER, path.data, &f);
	if (rc == 0)
		rc = store_folder_create(run->st, &f);
	buf_release(&path);
	if (rc < 0) {
		snprintf(error, sizeof(error), "%s: cannot record the folder in the index: %s",
			 run->label, strerror(-rc));
		log_error("%s", error);
		ingest_note_error(run, error);
		pop3_close(&s);
		ingest_note_status(run, FETCH_LOCAL_BAD);
		return FETCH_LOCAL_BAD;
	}
	if (f.uidvalidity == 0 && f.synced_at == 0 && o->obs && o->obs->folder_added)
		o->obs->folder_added(o->obs->ctx, f.id);

	ret = pop3_uidl(s, &l);
	if (ret != FETCH_OK) {
		/* An unreadable listing is never evidence of deletion. */
		snprintf(error, sizeof(error), "%s", pop3_error(s));
		log_error("%s", error);
		goto done;
	}
	/* Complete: the same session's STAT agrees, every message number is
	 * one STAT counts, and no UIDL repeats (which message would it be?). */
	complete = l.n_dup == 0 && l.n == count;
	for (size_t i = 0; complete && i < l.n; i++)
		complete = l.v[i].msgnum <= count;
	if (l.n_dup)
		log_warn("%s %s: the POP3 server lists %zu UIDL(s) more than once; only the first "
			 "message of each is kept, and no deletions this time", run->label,
			 POP3_FOLDER, l.n_dup);
	else if (!complete)
		log_warn("%s %s: the POP3 server listed %zu UIDLs but STAT says %" PRIu32
			 " messages; no deletions this time", run->label, POP3_FOLDER, l.n, count);

	remote = malloc((l.n ? l.n : 1) * sizeof(*remote));
	todo = malloc((l.n ? l.n : 1) * sizeof(*todo));
	if (!remote || !todo || index_known_ids(ix, f.id, &known, &n_known) < 0) {
		ret = FETCH_LOCAL_BAD;
		goto done;
	}
	for (size_t i = 0; i < l.n; i++)
		remote[i] = l.v[i].uidl;
	if (reconcile_ids(known, n_known, remote, l.n, &nw, &n_new, &gone, &n_gone) < 0) {
		ret = FETCH_LOCAL_BAD;
		goto done;
	}
	/* reconcile_ids returns the new ones sorted by UIDL, as pointers into
	 * the listing; retrieve them in the server's order instead. */
	if (n_new) {
		qsort(nw, n_new, sizeof(*nw), cmp_ptr);
		for (size_t i = 0; i < l.n; i++)
			if (bsearch(&remote[i], nw, n_new, sizeof(*nw), cmp_ptr))
				todo[n_todo++] = &l.v[i];
	}
	ret = fetch_new(run, s, &f, todo, n_todo);
	if (ret == FETCH_ACCOUNT_BAD && run->r->error[0]) {
		/* fetch_new said why (a message past max_message_size) */
		snprintf(error, sizeof(error), "%s", run->r->error);
	} else if (ret == FETCH_FOLDER_BAD || ret == FETCH_ACCOUNT_BAD) {
		snprintf(error, sizeof(error), "%s", pop3_error(s));
		log_error("%s", error);
	}
	pop3_close(&s);
	if (ret != FETCH_OK)
		goto done;

	if (n_gone) {
		struct reconcile_policy pol = { complete, a->mass_delete_limit, o->allow_mass_delete };

		if (!a->mirror_deletions) {
			/* Gmail-like servers list only what they have not handed out yet:
			 * a missing UIDL proves nothing, and the user said so. */
			log_debug("%s %s: %zu message(s) no longer listed by the server, kept "
				  "(mirror_deletions = no)", run->label, POP3_FOLDER, n_gone);
		} else if (reconcile_may_delete(n_known, n_gone, l.n, &pol, held, sizeof(held))) {
			held[0] = '\0';
			ret = ingest_trash_remote(run, &f, gone, n_gone, "deleted on the POP3 server");
		} else if (!complete) {
			held[0] = '\0';      /* not a hold: just no proof this time */
		}
	}
	if (ret == FETCH_OK)
		index_folder_set_state(ix, f.id, POP3_UIDVALIDITY, 0, 0);
done:
	if (ret != FETCH_OK && ingest_stopping(run))
		ret = FETCH_STOPPED;     /* the cancel descriptor ended a request */
	pop3_close(&s);
	if (held[0] && ret == FETCH_OK) {
		r->n_held += (int64_t)n_gone;
		log_warn("%s %s: deletions held: %s", run->label, POP3_FOLDER, held);
	}
	if (ret == FETCH_LOCAL_BAD && !error[0])
		snprintf(error, sizeof(error), "%s", run->local_error[0] ? run->local_error
					: "local store error (see the log)");
	if (ret == FETCH_OK || ret == FETCH_STOPPED)
		index_folder_set_result(ix, f.id, (int64_t)time(NULL), NULL, held[0] ? held : NULL);
	else
		index_folder_set_result(ix, f.id, (int64_t)time(NULL), error, f.held);
	if (error[0])
		ingest_note_error(run, error);
	ingest_note_status(run, ret);
	pop3_listing_release(&l);
	index_ids_free(known, n_known);
	free(remote);
	free(todo);
	free(nw);
	free(gone);
	index_folder_release(&f);
	return ret;
}
