/* sync: one account, once. IMAP (RFC 3501/9051, RFC 7162 for the modseq
 * shortcut); POP3 lives in pop3 sync (sync_pop3.c) behind the same result.
 *
 * Per folder: EXAMINE; if nothing changed (same UIDVALIDITY, UIDNEXT and
 * HIGHESTMODSEQ) stop there; else list the UIDs, fetch what is new in bulk
 * straight into the store, and trash what the complete listing no longer
 * has — subject to the guards in reconcile.c. A changed UIDVALIDITY re-keys
 * rows by evidence instead of downloading or deleting anything blindly. */
#include "sync.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../cache/log.h"
#include "imap.h"
#include "ingest.h"
#include "msgmeta.h"
#include "reconcile.h"
#include "secret.h"
#include "sync_names.h"
#include "sync_pop3.h"
#include "uidset.h"

/* UIDs per UID FETCH command; bounded so one command line stays short. */
#define FETCH_MAX_UIDS 2000
#define FETCH_MAX_SET_LEN 8000

/* ---- fetching new messages into the store ---- */

/* imap.c's sink and message callback, in terms of ingest. A body starts
 * at its literal; it is complete only when its whole FETCH response (with
 * the UID, which may come after the body) has been read. */
static int fx_begin(void *ctx, const char *key, uint64_t n)
{
	struct ingest *in = ctx;

	(void)key;
	(void)n;
	/* Leaving: the rest of the answer is not worth reading, and a stop
	 * must not wait for a large body to arrive. */
	if (ingest_stopping(in->run) || in->failed_local)
		return IMAP_SINK_REFUSE;
	return ingest_msg_begin(in) < 0 ? IMAP_SINK_REFUSE : 1;
}

static int fx_write(void *ctx, const void *p, size_t n)
{
	return ingest_msg_write(ctx, p, n);
}

static int fx_end(void *ctx)
{
	(void)ctx;
	return 0;
}

static void fx_abort(void *ctx)
{
	ingest_msg_abort(ctx);
}

static int fx_message(void *ctx, const struct imap_fetched *m)
{
	struct ingest *in = ctx;
	char uid[16];

	if (!m->body || !in->cur)
		return 0;      /* a flag update, or a body the server did not send */
	snprintf(uid, sizeof(uid), "%" PRIu32, m->uid);
	if (ingest_msg_finish(in, uid, m->internal_date, m->flags) < 0)
		return 1;
	return ingest_stopping(in->run) ? 1 : 0;
}

/* Fetches uids (ascending) into the folder. FETCH_OK when all came. */
static enum fetch_status fetch_new(struct ingest_run *run, struct imap *s,
				   const struct index_folder *f, uint32_t uidvalidity,
				   const uint32_t *uids, size_t n)
{
	struct ingest in;
	struct buf set = BUF_INIT(FETCH_MAX_SET_LEN + 64);
	struct imap_fetch_handler h = {
		.sink = { .begin = fx_begin, .write = fx_write, .end = fx_end,
			  .abort = fx_abort, .ctx = &in },
		.message = fx_message, .ctx = &in,
	};
	enum fetch_status st;
	size_t pos = 0;

	if (n == 0)
		return FETCH_OK;
	st = ingest_open(&in, run, f, uidvalidity, n);
	while (pos < n && st == FETCH_OK) {
		if (imap_uidset(uids, n, &pos, FETCH_MAX_UIDS, FETCH_MAX_SET_LEN, &set) < 0) {
			st = FETCH_LOCAL_BAD;
			break;
		}
		st = imap_fetch(s, set.data,
				"(UID RFC822.SIZE INTERNALDATE FLAGS BODY.PEEK[])", &h);
		if (in.failed_local)
			st = FETCH_LOCAL_BAD;
		else if (ingest_stopping(run))
			st = FETCH_STOPPED;
	}
	size_t done = in.done;
	st = ingest_close(&in, st);
	buf_release(&set);
	if (st == FETCH_OK && done < n)
		log_info("%s %s: %zu of %zu new messages were not sent by the server "
			 "(expunged meanwhile?); the next sync checks again",
			 run->label, f->name, n - done, n);
	return st;
}

static enum fetch_status trash_uids(struct ingest_run *run, const struct index_folder *f,
				    const uint32_t *gone, size_t n, const char *reason)
{
	char **ids = calloc(n ? n : 1, sizeof(*ids));
	enum fetch_status st = FETCH_LOCAL_BAD;
	size_t k = 0;

	if (!ids)
		return st;
	for (; k < n; k++)
		if (asprintf(&ids[k], "%" PRIu32, gone[k]) < 0) {
			ids[k] = NULL;
			goto out;
		}
	st = ingest_trash_remote(run, f, ids, n, reason);
out:
	for (size_t i = 0; i < k; i++)
		free(ids[i]);
	free(ids);
	return st;
}

/* ---- one IMAP folder ---- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The folder's active UIDs, ascending, and apart from them the rows a
 * UIDVALIDITY re-match parked ("v<old uidvalidity>:<row>") because they
 * matched nothing: a crash after the re-key and before their trashing
 * leaves them, and they are trashed with the next complete listing. */
static int known_uids(struct ingest_run *run, int64_t folder_id, uint32_t **uids_r, size_t *n_r,
		      char ***parked_r, size_t *n_parked_r)
{
	char **ids;
	size_t n, k = 0, np = 0;
	int rc = index_known_ids(run->ix, folder_id, &ids, &n);

	*uids_r = NULL;
	*n_r = 0;
	*parked_r = NULL;
	*n_parked_r = 0;
	if (rc < 0)
		return rc;
	uint32_t *u = malloc((n ? n : 1) * sizeof(*u));
	char **parked = malloc((n ? n : 1) * sizeof(*parked));
	if (!u || !parked) {
		free(u);
		free(parked);
		index_ids_free(ids, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		char *end;
		unsigned long v = strtoul(ids[i], &end, 10);

		if (*end == '\0' && v > 0 && v <= UINT32_MAX) {
			u[k++] = (uint32_t)v;
			free(ids[i]);
		} else {
			parked[np++] = ids[i];
		}
	}
	free(ids);
	if (k)
		qsort(u, k, sizeof(*u), cmp_u32);
	*uids_r = u;
	*n_r = k;
	*parked_r = parked;
	*n_parked_r = np;
	return 0;
}

struct remote_row {
	struct rematch_remote *v;
	char **ids;        /* owned Message-IDs */
	size_t n, cap;
};

static int collect_remote(void *ctx, const struct imap_fetched *m)
{
	struct remote_row *rr = ctx;
	struct msgmeta mm = { 0 };

	if (rr->n == rr->cap) {
		size_t nc = rr->cap ? rr->cap * 2 : 256;
		struct rematch_remote *nv = realloc(rr->v, nc * sizeof(*nv));
		char **ni = realloc(rr->ids, nc * sizeof(*ni));
		if (nv)
			rr->v = nv;
		if (ni)
			rr->ids = ni;
		if (!nv || !ni)
			return 1;
		rr->cap = nc;
	}
	if (m->header_value)
		msgmeta_parse(m->header_value, strlen(m->header_value), &mm);
	rr->ids[rr->n] = mm.message_id;
	mm.message_id = NULL;
	msgmeta_release(&mm);
	rr->v[rr->n] = (struct rematch_remote){ m->uid, rr->ids[rr->n], (int64_t)m->size,
						m->internal_date };
	rr->n++;
	return 0;
}

struct local_rows {
	struct rematch_local *v;
	char **ids;
	size_t n, cap;
	bool oom;
};

static int collect_local(void *ctx, const struct index_msg *m)
{
	struct local_rows *l = ctx;

	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 256;
		struct rematch_local *nv = realloc(l->v, nc * sizeof(*nv));
		char **ni = realloc(l->ids, nc * sizeof(*ni));
		if (nv)
			l->v = nv;
		if (ni)
			l->ids = ni;
		if (!nv || !ni) {
			l->oom = true;
			return 1;
		}
		l->cap = nc;
	}
	l->ids[l->n] = m->message_id ? strdup(m->message_id) : NULL;
	l->v[l->n] = (struct rematch_local){ m->id, l->ids[l->n], m->size, m->internal_date };
	l->n++;
	return 0;
}

static void sink_discard_abort(void *ctx) { (void)ctx; }
static int sink_inline(void *ctx, const char *key, uint64_t n)
{
	(void)ctx, (void)key, (void)n;
	return 0;
}

/* UIDVALIDITY changed: re-key what the evidence pairs, fetch the rest, and
 * trash the unmatched only when the re-match is convincing. */
static enum fetch_status rematch_folder(struct ingest_run *run, struct imap *s,
					const struct index_folder *f,
					const struct imap_folder_state *st, char *held,
					size_t heldlen)
{
	struct remote_row rr = { 0 };
	struct local_rows lr = { 0 };
	struct rematch_result rm = { 0 };
	struct imap_fetch_handler h = {
		.sink = { .begin = sink_inline, .abort = sink_discard_abort },
		.message = collect_remote, .ctx = &rr,
	};
	enum fetch_status ret = FETCH_OK;
	int rc;

	log_warn("%s %s: UIDVALIDITY changed (%" PRIu32 " -> %" PRIu32 "), re-matching %" PRId64
		 " messages by Message-ID and size", run->label, f->name, f->uidvalidity,
		 st->uidvalidity, f->n_active);
	if (st->exists) {
		ret = imap_fetch(s, "1:*", "(UID RFC822.SIZE INTERNALDATE "
				 "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", &h);
		if (ret != FETCH_OK)
			goto out;
	}
	if (rr.n != imap_state(s)->exists) {
		snprintf(held, heldlen, "UIDVALIDITY changed and the server listed %zu of %" PRIu32
			 " messages; nothing changed locally", rr.n, imap_state(s)->exists);
		goto out;
	}
	rc = index_msg_foreach(run->ix, f->id, 1u << MSG_ACTIVE, collect_local, &lr);
	if (rc < 0 || lr.oom || reconcile_rematch(lr.v, lr.n, rr.v, rr.n, &rm) < 0) {
		ret = FETCH_LOCAL_BAD;
		goto out;
	}
	struct reconcile_policy pol = { true, run->a->mass_delete_limit,
					run->o->allow_mass_delete };
	char why[512];
	if (!rm.convincing && !run->o->allow_mass_delete) {
		snprintf(held, heldlen, "UIDVALIDITY changed (%" PRIu32 " -> %" PRIu32 ") and only %zu "
			 "of %zu messages could be matched by Message-ID and size; nothing changed "
			 "locally: run 'maildisk sync --allow-mass-delete' to accept the server's "
			 "new state", f->uidvalidity, st->uidvalidity, rm.n_pairs, lr.n);
		goto out;
	}
	if (!reconcile_may_delete(lr.n, rm.n_lost, rr.n, &pol, why, sizeof(why))) {
		snprintf(held, heldlen, "UIDVALIDITY changed: %s", why);
		goto out;
	}
	/* Park every active row on a key no UID can take, then give the paired
	 * ones their new UID, in one transaction with the new UIDVALIDITY: a
	 * crash leaves either the old keys or the new ones, never a mix. */
	rc = index_begin(run->ix);
	for (size_t i = 0; rc == 0 && i < lr.n; i++) {
		char parked[48];
		snprintf(parked, sizeof(parked), "v%" PRIu32 ":%" PRId64, f->uidvalidity, lr.v[i].row_id);
		rc = index_msg_rekey(run->ix, lr.v[i].row_id, parked);
	}
	for (size_t i = 0; rc == 0 && i < rm.n_pairs; i++) {
		char uid[16];
		snprintf(uid, sizeof(uid), "%" PRIu32, rm.pairs[i].uid);
		rc = index_msg_rekey(run->ix, rm.pairs[i].row_id, uid);
	}
	if (rc == 0)
		rc = index_folder_set_state(run->ix, f->id, st->uidvalidity, 0, 0);
	if (rc == 0)
		rc = index_commit(run->ix);
	else
		index_rollback(run->ix);
	if (rc < 0) {
		ret = FETCH_LOCAL_BAD;
		goto out;
	}
	run->r->n_rekeyed += (int64_t)rm.n_pairs;
	log_info("%s %s: re-keyed %zu messages to the new UIDVALIDITY without downloading "
		 "them; %zu unmatched local, %zu new on the server", run->label, f->name,
		 rm.n_pairs, rm.n_lost, rm.n_fresh);
	if (rm.n_lost) {
		char reason[160];
		snprintf(reason, sizeof(reason), "not found after UIDVALIDITY change %" PRIu32
			 " -> %" PRIu32, f->uidvalidity, st->uidvalidity);
		if (ingest_trash(run, f, rm.lost_rows, rm.n_lost, reason) < 0) {
			ret = FETCH_LOCAL_BAD;
			goto out;
		}
	}
	ret = fetch_new(run, s, f, st->uidvalidity, rm.fresh_uids, rm.n_fresh);
out:
	for (size_t i = 0; i < rr.n; i++)
		free(rr.ids[i]);
	free(rr.ids);
	free(rr.v);
	for (size_t i = 0; i < lr.n; i++)
		free(lr.ids[i]);
	free(lr.ids);
	free(lr.v);
	reconcile_rematch_release(&rm);
	return ret;
}

/* Flag changes the server reported into the index (user.mail.flags) and
 * the store files' Maildir info suffixes (store_set_flags). */
static enum fetch_status apply_flags(struct ingest_run *run, const struct index_folder *f,
				     const struct imap_changes *ch)
{
	struct store_flag_change *v;
	int rc = 0;
	size_t n = 0;

	if (ch->n_flags == 0)
		return FETCH_OK;
	v = calloc(ch->n_flags, sizeof *v);
	if (!v)
		rc = -ENOMEM;
	for (size_t i = 0; rc == 0 && i < ch->n_flags; i++) {
		char uid[16];

		snprintf(uid, sizeof(uid), "%" PRIu32, ch->flags[i].uid);
		if (index_msg_find(run->ix, f->id, uid, &v[n].id) < 0)
			continue;      /* new, or not ours: its flags come with it */
		v[n++].flags = ch->flags[i].flags;
	}
	if (rc == 0)
		rc = store_set_flags(run->st, run->ix, v, n);
	free(v);
	if (rc < 0) {
		log_error("%s %s: cannot record flag changes: %s", run->label, f->name, strerror(-rc));
		return FETCH_LOCAL_BAD;
	}
	if (n)
		log_debug("%s %s: flags of %zu message(s) changed", run->label, f->name, n);
	return FETCH_OK;
}

/* note: why the folder's local name is not the plain one, or NULL. */
static enum fetch_status sync_imap_folder(struct ingest_run *run, struct imap *s,
					  const struct imap_mailbox *mb, const char *note)
{
	struct index_folder f = { 0 };
	struct imap_folder_state st;
	struct imap_changes ch = { 0 };
	struct buf path = BUF_INIT(8192);
	char held[768] = "";
	uint32_t *remote = NULL, *known = NULL, *nw = NULL, *gone = NULL;
	size_t n_remote = 0, n_known = 0, n_new = 0, n_gone = 0, n_parked = 0;
	char **parked = NULL;
	bool complete = false;
	enum fetch_status ret;
	int rc;

	rc = ingest_folder_path(run->a, mb->name, mb->delim, &path);
	if (rc < 0) {
		log_error("%s: folder \"%s\" cannot be stored: %s", run->label, mb->name,
			  rc == -ENAMETOOLONG ? "a part of its name is longer than 255 bytes"
					      : strerror(-rc));
		buf_release(&path);
		return FETCH_FOLDER_BAD;
	}
	rc = index_folder_ensure(run->ix, run->a->user, run->a->name, mb->name, path.data, &f);
	buf_release(&path);
	if (rc == 0 && note)
		rc = index_folder_set_note(run->ix, f.id, note);
	if (rc < 0) {
		index_folder_release(&f);
		return FETCH_LOCAL_BAD;
	}

	/* With QRESYNC the EXAMINE itself says what vanished and which flags
	 * changed since the last good sync; after an error or a hold, list
	 * everything again instead. */
	bool since = f.uidvalidity && f.highestmodseq && !f.last_error && !f.held;
	ret = imap_examine(s, mb->raw, since ? f.uidvalidity : 0, since ? f.highestmodseq : 0,
			   &st, &ch);
	if (ret != FETCH_OK) {
		/* A folder the server refuses is never evidence of deletion. */
		log_error("%s", imap_error(s));
		index_folder_set_result(run->ix, f.id, time(NULL), imap_error(s), f.held);
		index_folder_release(&f);
		return ret;
	}
	/* Its Maildir exists from the first sync, messages or not. */
	if (store_folder_create(run->st, &f) < 0) {
		index_folder_release(&f);
		return FETCH_LOCAL_BAD;
	}
	if (f.uidvalidity == 0 && f.synced_at == 0 && run->o->obs && run->o->obs->folder_added)
		run->o->obs->folder_added(run->o->obs->ctx, f.id);

	if (f.uidvalidity && f.uidvalidity != st.uidvalidity) {
		ret = rematch_folder(run, s, &f, &st, held, sizeof(held));
		if (ret == FETCH_OK && !held[0])
			index_folder_set_state(run->ix, f.id, st.uidvalidity, st.uidnext,
					       st.highestmodseq);
		if (ret != FETCH_OK)
			goto failed;
		goto done;
	}
	if (f.uidvalidity == st.uidvalidity && st.highestmodseq &&
	    f.highestmodseq == st.highestmodseq && f.uidnext == st.uidnext &&
	    !f.last_error && !f.held) {
		ret = FETCH_OK;    /* CONDSTORE says nothing changed: one round trip */
		goto done;
	}
	if (known_uids(run, f.id, &known, &n_known, &parked, &n_parked) < 0) {
		ret = FETCH_LOCAL_BAD;
		goto done;
	}

	if (ch.valid) {
		/* QRESYNC: gone = what the server says vanished; new = UIDs from
		 * the old UIDNEXT on. Trusted only if the result adds up to the
		 * server's message count; otherwise list everything. */
		gone = malloc((n_known ? n_known : 1) * sizeof(*gone));
		ret = gone ? imap_uid_list(s, f.uidnext ? f.uidnext : 1, &remote, &n_remote)
			   : FETCH_LOCAL_BAD;
		if (ret != FETCH_OK)
			goto failed;
		n_gone = uidset_intersect(&ch.vanished, known, n_known, gone);
		/* Expunged UIDs at or beyond UIDNEXT were never given out. */
		uint64_t beyond = st.uidnext ? uidset_count_from(&ch.vanished, st.uidnext) : 0;
		uint32_t *dummy = NULL;
		size_t n_dummy = 0;
		if (reconcile_uids(known, n_known, remote, n_remote, &nw, &n_new, &dummy, &n_dummy) < 0) {
			ret = FETCH_LOCAL_BAD;
			goto done;
		}
		free(dummy);
		complete = !beyond && n_known - n_gone + n_new == imap_state(s)->exists;
		if (complete) {
			n_remote = imap_state(s)->exists;
			log_debug("%s %s: QRESYNC: %zu vanished, %zu new", run->label, f.name,
				  n_gone, n_new);
		} else {
			if (beyond)
				log_warn("%s %s: the changes %s reported do not add up: %" PRIu64
					 " expunged UIDs at or beyond UIDNEXT %" PRIu32 ", which were "
					 "never given out; listing all UIDs", run->label, f.name,
					 run->a->host, beyond, st.uidnext);
			else
				log_info("%s %s: the changes the server reported do not add up (%zu known, "
				 "%zu vanished, %zu new, %" PRIu32 " on the server); listing all UIDs",
					 run->label, f.name, n_known, n_gone, n_new,
					 imap_state(s)->exists);
			free(remote), free(nw), free(gone);
			remote = nw = gone = NULL;
			n_remote = n_new = n_gone = 0;
		}
	}
	if (!complete) {
		ret = imap_uid_list(s, 1, &remote, &n_remote);
		if (ret != FETCH_OK)
			goto failed;
		/* A listing is complete only if it agrees with the message count
		 * the server announced (EXISTS, updated by any EXISTS since). */
		complete = n_remote == imap_state(s)->exists;
		if (!complete)
			log_warn("%s %s: the server listed %zu UIDs but says the folder has %" PRIu32
				 " messages; no deletions this time", run->label, f.name, n_remote,
				 imap_state(s)->exists);
		if (reconcile_uids(known, n_known, remote, n_remote, &nw, &n_new, &gone, &n_gone) < 0) {
			ret = FETCH_LOCAL_BAD;
			goto done;
		}
		if (f.highestmodseq && st.highestmodseq && imap_has_cap(s, "CONDSTORE") &&
		    !ch.valid) {
			ret = imap_flag_changes(s, f.highestmodseq, &ch);
			if (ret != FETCH_OK)
				goto failed;
		}
	}
	ret = apply_flags(run, &f, &ch);
	if (ret != FETCH_OK)
		goto done;
	/* Parked rows first: they hold names that new messages may want. */
	if (n_parked && complete && run->a->mirror_deletions) {
		struct reconcile_policy pol = { true, run->a->mass_delete_limit,
						run->o->allow_mass_delete };
		char why[512];

		if (reconcile_may_delete(n_known + n_parked, n_parked, n_known, &pol, why, sizeof(why)))
			ret = ingest_trash_remote(run, &f, parked, n_parked,
						  "not found after a UIDVALIDITY change");
		if (ret != FETCH_OK)
			goto done;
	}
	ret = fetch_new(run, s, &f, st.uidvalidity, nw, n_new);
	if (ret != FETCH_OK)
		goto failed;
	if (n_gone) {
		struct reconcile_policy pol = { complete, run->a->mass_delete_limit,
						run->o->allow_mass_delete };
		if (!run->a->mirror_deletions) {
			/* the user asked us to keep local copies */
		} else if (reconcile_may_delete(n_known, n_gone, n_remote, &pol, held, sizeof(held))) {
			held[0] = '\0';
			ret = trash_uids(run, &f, gone, n_gone, "expunged on the server");
		} else if (!complete) {
			held[0] = '\0';      /* not a hold: just no proof this time */
		}
	}
	if (ret == FETCH_OK)
		index_folder_set_state(run->ix, f.id, st.uidvalidity, st.uidnext,
				       complete ? st.highestmodseq : 0);
	goto done;
failed:
	if (ingest_stopping(run))
		ret = FETCH_STOPPED;     /* the cancel descriptor ended a wait */
	/* A local failure was said where it happened (ingest). */
	if (ret != FETCH_STOPPED && ret != FETCH_LOCAL_BAD)
		log_error("%s", imap_error(s));
done:
	if (held[0] && ret == FETCH_OK) {
		run->r->n_held += n_gone ? (int64_t)n_gone : 1;
		log_warn("%s %s: deletions held: %s", run->label, f.name, held);
	}
	if (ret == FETCH_OK)
		index_folder_set_result(run->ix, f.id, time(NULL), NULL, held[0] ? held : NULL);
	else
		index_folder_set_result(run->ix, f.id, time(NULL),
					ret == FETCH_STOPPED ? "interrupted; the next sync goes on"
					: ret == FETCH_LOCAL_BAD ? (run->local_error[0] ? run->local_error
								   : "local store error (see the log)")
					: imap_error(s), f.held);
	imap_changes_release(&ch);
	index_ids_free(parked, n_parked);
	free(remote);
	free(known);
	free(nw);
	free(gone);
	index_folder_release(&f);
	return ret;
}

/* A configured folder name against a listed one: INBOX case-insensitively
 * (RFC 3501 5.1), everything else exactly. */
static bool folder_is(const char *wanted, const struct imap_mailbox *mb)
{
	if (mb->noselect)
		return false;
	return strcasecmp(wanted, "INBOX") == 0 ? strcasecmp(mb->name, "INBOX") == 0
						: strcmp(wanted, mb->name) == 0;
}

/* Which of the server's folders to sync: all selectable ones for "*", else
 * the configured names. */
static bool wanted(const struct account_settings *a, const struct imap_mailbox *mb)
{
	for (size_t i = 0; i < a->n_folders; i++)
		if ((strcmp(a->folders[i], "*") == 0 && !mb->noselect) ||
		    folder_is(a->folders[i], mb))
			return true;
	return false;
}

/* Folders in the index that the server no longer lists: kept, never
 * trashed (a rename or a server hiccup must not empty anything), and
 * reported in status. */
static void note_unlisted(struct ingest_run *run, const struct imap_mailbox *mbs, size_t n_mbs)
{
	struct index_folder *fs = NULL;
	size_t n = 0;

	if (index_folder_list(run->ix, run->a->user, run->a->name, &fs, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		bool listed = false;

		for (size_t j = 0; !listed && j < n_mbs; j++)
			listed = strcmp(fs[i].name, mbs[j].name) == 0 && !mbs[j].noselect;
		if (listed || (fs[i].last_error && strstr(fs[i].last_error, "no longer")))
			continue;
		char msg[512];
		snprintf(msg, sizeof(msg), "the server no longer lists this folder; its %" PRId64
			 " messages are kept here", fs[i].n_active);
		log_warn("%s %s: %s", run->label, fs[i].name, msg);
		index_folder_set_result(run->ix, fs[i].id, time(NULL), msg, fs[i].held);
	}
	index_folder_array_free(&fs, n);
}

static enum fetch_status sync_imap(struct ingest_run *run, const char *secret, bool token)
{
	struct imap *s = NULL;
	struct imap_mailbox *mbs = NULL;
	size_t n_mbs = 0;
	struct buf err = BUF_INIT(1024);
	enum fetch_status st;

	st = imap_open(run->a, secret, token, run->o->cancel_fd, &s, &run->r->retry, &err);
	if (st != FETCH_OK) {
		log_error("%s", err.data ? err.data : run->label);
		ingest_note_error(run, err.data ? err.data : "connection failed");
		buf_release(&err);
		return st;
	}
	buf_release(&err);
	st = imap_list(s, &mbs, &n_mbs);
	if (st != FETCH_OK) {
		log_error("%s", imap_error(s));
		ingest_note_error(run, imap_error(s));
		imap_close(&s);
		return st;
	}
	/* Configured folders the server does not list: an error, never a
	 * deletion (a typo or a rename must not empty anything). */
	for (size_t i = 0; i < run->a->n_folders; i++) {
		const char *w = run->a->folders[i];
		bool found = strcmp(w, "*") == 0;

		for (size_t j = 0; !found && j < n_mbs; j++)
			found = folder_is(w, &mbs[j]);
		if (!found) {
			char msg[512];
			snprintf(msg, sizeof(msg), "%s: folder \"%s\" does not exist on the server "
				 "(check 'folders =' in the config)", run->label, w);
			log_error("%s", msg);
			ingest_note_error(run, msg);
			ingest_note_status(run, FETCH_FOLDER_BAD);
		}
	}
	char **notes = NULL;
	if (sync_names_dedupe(run->label, mbs, n_mbs, &notes) < 0) {
		imap_mailboxes_free(mbs, n_mbs);
		imap_close(&s);
		return FETCH_LOCAL_BAD;
	}
	note_unlisted(run, mbs, n_mbs);
	st = FETCH_OK;
	for (size_t i = 0; i < n_mbs && !ingest_stopping(run); i++) {
		if (!wanted(run->a, &mbs[i]))
			continue;
		enum fetch_status fs = sync_imap_folder(run, s, &mbs[i], notes[i]);

		ingest_note_status(run, fs);
		if (fs == FETCH_FOLDER_BAD)
			ingest_note_error(run, imap_error(s));
		if (fs == FETCH_ACCOUNT_BAD)
			ingest_note_error(run, imap_error(s));
		if (fs == FETCH_LOCAL_BAD && run->local_error[0])
			ingest_note_error(run, run->local_error);
		if (fs >= FETCH_ACCOUNT_BAD) {
			st = fs;
			break;
		}
	}
	if (ingest_stopping(run))
		st = FETCH_STOPPED;
	sync_names_free(notes, n_mbs);
	imap_mailboxes_free(mbs, n_mbs);
	imap_close(&s);
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
			 strerror(-rc));
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
	} else if (a->proto == PROTO_IMAP || a->proto == PROTO_IMAPS) {
		stat = sync_imap(&run, secret, secret_is_token(a));
	} else {
		stat = sync_pop3(&run, secret, secret_is_token(a));
	}
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	buf_release(&err);
	ingest_note_status(&run, stat);
	index_sync_finish(run.ix, run.sync_id, (int64_t)time(NULL), r->n_new, r->n_trashed,
			  r->status == FETCH_OK ? NULL : r->error[0] ? r->error
								  : fetch_status_str(r->status));
	index_close(&run.ix);
	if (run.changed && o->obs && o->obs->user_changed)
		o->obs->user_changed(o->obs->ctx, a->user);
	return r->status == FETCH_OK && r->n_held == 0 ? 0 : -1;
}
