/* sync_folder: the protocol-neutral folder sync (sync_folder.h). The
 * deletion rules live here once, for IMAP and POP3 alike: nothing is
 * trashed unless the listing was complete and the guards allow it; an
 * error, a timeout or a stop proves nothing. */
#include "sync_folder.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../cache/log.h"
#include "reconcile.h"

/* What one folder's run decided, for the record. */
struct outcome {
	char held[768];           /* deletions held back: why ("" if none) */
	size_t n_held;            /* how many (at least 1 when held) */
	char error[1024];         /* the failure, said once ("" if none) */
};

/* ---- the folder's row and Maildir ---- */

enum fetch_status sync_folder_row(struct ingest_run *run, const struct drv_folder *df,
				  struct index_folder *f)
{
	struct buf path = BUF_INIT(8192);
	int rc = ingest_folder_path(run->a, df->name, df->delim, &path);

	if (rc < 0) {
		char msg[1024];

		snprintf(msg, sizeof(msg), "%s: folder \"%s\" cannot be stored: %s", run->label,
			 df->name, rc == -ENAMETOOLONG ? "a part of its name is longer than 255 bytes"
						       : strerror(-rc));
		log_error("%s", msg);
		ingest_note_error(run, msg);   /* the driver's error is not this one */
		buf_release(&path);
		return FETCH_FOLDER_BAD;
	}
	rc = index_folder_ensure(run->ix, run->a->user, run->a->name, df->name, path.data, f);
	buf_release(&path);
	if (rc == 0 && df->note)
		rc = index_folder_set_note(run->ix, f->id, df->note);
	if (rc < 0) {
		ingest_local_error(run, "%s %s: cannot record the folder in the index: %s",
				   run->label, df->name, strerror(-rc));
		return FETCH_LOCAL_BAD;
	}
	return FETCH_OK;
}

/* ---- what the index knows ---- */

/* A row a UIDVALIDITY re-match parked ("v<old uidvalidity>:<row>") because
 * it matched nothing: a crash after the re-key and before its trashing
 * leaves it, and it is trashed with the next complete listing. Only
 * protocols with an epoch park rows (a POP3 UIDL may look like one). */
static bool is_parked(const struct fetch_driver *drv, const char *id)
{
	return drv->rematch_evidence && id[0] == 'v' && strchr(id, ':');
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The index's ids for the folder, sorted, with the parked ones apart. */
static int known_ids(struct ingest_run *run, const struct fetch_driver *drv, int64_t folder_id,
		     char ***ids_r, size_t *n_r, char ***parked_r, size_t *n_parked_r)
{
	char **ids, **parked;
	size_t n, k = 0, np = 0;
	int rc = index_known_ids(run->ix, folder_id, &ids, &n);

	*ids_r = *parked_r = NULL;
	*n_r = *n_parked_r = 0;
	if (rc < 0)
		return rc;
	if (!(parked = malloc((n ? n : 1) * sizeof(*parked)))) {
		index_ids_free(ids, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (is_parked(drv, ids[i]))
			parked[np++] = ids[i];
		else
			ids[k++] = ids[i];
	}
	if (k)
		qsort(ids, k, sizeof(*ids), cmp_str);
	*ids_r = ids;
	*n_r = k;
	*parked_r = parked;
	*n_parked_r = np;
	return 0;
}

/* new = listing - known, in the listing's order (the order to fetch);
 * gone = known - listing. Both borrow the strings. */
static int diff(char *const *known, size_t n_known, const struct drv_listing *l,
		char ***new_r, size_t *n_new_r, char ***gone_r, size_t *n_gone_r)
{
	char **nw = NULL, **gone = NULL;
	size_t n_new = 0, n_gone = 0;

	if (reconcile_ids(known, n_known, l->ids, l->n, &nw, &n_new, &gone, &n_gone) < 0)
		return -ENOMEM;
	/* reconcile_ids gives the new ones sorted by id; put them back in the
	 * listing's order, which is the server's. */
	if (n_new) {
		size_t k = 0;

		qsort(nw, n_new, sizeof(*nw), cmp_str);
		char **ordered = malloc(n_new * sizeof(*ordered));
		if (!ordered) {
			free(nw), free(gone);
			return -ENOMEM;
		}
		for (size_t i = 0; i < l->n && k < n_new; i++)
			if (bsearch(&l->ids[i], nw, n_new, sizeof(*nw), cmp_str))
				ordered[k++] = l->ids[i];
		free(nw);
		nw = ordered;
		n_new = k;
	}
	*new_r = nw;
	*n_new_r = n_new;
	*gone_r = gone;
	*n_gone_r = n_gone;
	return 0;
}

/* ---- fetching ---- */

/* Streams ids into the folder. FETCH_OK when the server answered for all;
 * what arrived whole is committed whatever happened. */
static enum fetch_status fetch_new(struct ingest_run *run, const struct fetch_driver *drv,
				   void *conn, const struct index_folder *f, uint32_t uidvalidity,
				   char *const *ids, size_t n)
{
	struct ingest in;
	enum fetch_status st;

	if (n == 0)
		return FETCH_OK;
	st = ingest_open(&in, run, f, uidvalidity, n);
	if (st == FETCH_OK)
		st = drv->fetch(conn, ids, n, &in);
	if (in.failed_local)
		st = FETCH_LOCAL_BAD;
	else if (ingest_stopping(run))
		st = FETCH_STOPPED;
	size_t done = in.done;
	st = ingest_close(&in, st);
	if (st == FETCH_OK && done < n)
		log_info("%s %s: %zu of %zu new messages were not sent by the server "
			 "(expunged meanwhile?); the next sync checks again",
			 run->label, f->name, n - done, n);
	return st;
}

/* Flag changes the server reported into the index (user.mail.flags) and
 * the store files' Maildir info suffixes (store_set_flags). */
static enum fetch_status apply_flags(struct ingest_run *run, const struct index_folder *f,
				     const struct drv_listing *l)
{
	struct store_flag_change *v;
	size_t n = 0;
	int rc = 0;

	if (l->n_flags == 0)
		return FETCH_OK;
	if (!(v = calloc(l->n_flags, sizeof(*v))))
		rc = -ENOMEM;
	for (size_t i = 0; rc == 0 && i < l->n_flags; i++) {
		if (index_msg_find(run->ix, f->id, l->flags[i].id, &v[n].id) < 0)
			continue;      /* new, or not ours: its flags come with it */
		v[n++].flags = l->flags[i].flags;
	}
	if (rc == 0)
		rc = store_set_flags(run->st, run->ix, v, n);
	free(v);
	if (rc < 0) {
		ingest_local_error(run, "%s %s: cannot record flag changes: %s", run->label, f->name,
				   strerror(-rc));
		return FETCH_LOCAL_BAD;
	}
	if (n)
		log_debug("%s %s: flags of %zu message(s) changed", run->label, f->name, n);
	return FETCH_OK;
}

/* ---- after a UIDVALIDITY change ---- */

struct local_rows {
	struct rematch_local *v;
	char **msgids;            /* owned */
	size_t n, cap_v, cap_ids;
	bool oom;
};

static int collect_local(void *ctx, const struct index_msg *m)
{
	struct local_rows *l = ctx;

	if (buf_array_grow(&l->v, &l->cap_v, l->n, sizeof(*l->v), 256) < 0 ||
	    buf_array_grow(&l->msgids, &l->cap_ids, l->n, sizeof(*l->msgids), 256) < 0) {
		l->oom = true;
		return 1;
	}
	l->msgids[l->n] = m->message_id ? strdup(m->message_id) : NULL;
	l->v[l->n] = (struct rematch_local){ m->id, l->msgids[l->n], m->size, m->internal_date };
	l->n++;
	return 0;
}

/* Parks every active row on a key no remote id can take, then gives the
 * paired ones their new id, in one transaction with the new UIDVALIDITY:
 * a crash leaves either the old keys or the new ones, never a mix. */
static int rekey(struct ingest_run *run, const struct index_folder *f, uint32_t uidvalidity,
		 const struct local_rows *lr, const struct rematch_result *rm)
{
	int rc = index_begin(run->ix);

	for (size_t i = 0; rc == 0 && i < lr->n; i++) {
		char parked[48];

		snprintf(parked, sizeof(parked), "v%" PRIu32 ":%" PRId64, f->uidvalidity,
			 lr->v[i].row_id);
		rc = index_msg_rekey(run->ix, lr->v[i].row_id, parked);
	}
	for (size_t i = 0; rc == 0 && i < rm->n_pairs; i++) {
		char uid[16];

		snprintf(uid, sizeof(uid), "%" PRIu32, rm->pairs[i].uid);
		rc = index_msg_rekey(run->ix, rm->pairs[i].row_id, uid);
	}
	if (rc == 0)
		rc = index_folder_set_state(run->ix, f->id, uidvalidity, 0, 0);
	if (rc == 0)
		return index_commit(run->ix);
	index_rollback(run->ix);
	return rc;
}

static int fresh_ids(const struct rematch_result *rm, char ***ids_r)
{
	char **ids = calloc(rm->n_fresh ? rm->n_fresh : 1, sizeof(*ids));

	*ids_r = ids;
	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < rm->n_fresh; i++)
		if (asprintf(&ids[i], "%" PRIu32, rm->fresh_uids[i]) < 0) {
			ids[i] = NULL;
			return -ENOMEM;
		}
	return 0;
}

/* UIDVALIDITY changed: re-key what the evidence pairs, fetch the rest, and
 * trash the unmatched only when the re-match is convincing. */
static enum fetch_status rematch(struct ingest_run *run, const struct fetch_driver *drv,
				 void *conn, const struct index_folder *f,
				 const struct drv_state *st, struct outcome *out)
{
	struct rematch_remote *rv = NULL;
	char **rmsgids = NULL, **fresh = NULL;
	size_t n_remote = 0;
	struct local_rows lr = { 0 };
	struct rematch_result rm = { 0 };
	struct reconcile_policy pol = { true, run->a->mass_delete_limit, run->o->allow_mass_delete };
	enum fetch_status ret;
	char why[512];

	log_warn("%s %s: UIDVALIDITY changed (%" PRIu32 " -> %" PRIu32 "), re-matching %" PRId64
		 " messages by Message-ID and size", run->label, f->name, f->uidvalidity,
		 st->uidvalidity, f->n_active);
	ret = drv->rematch_evidence(conn, &rv, &rmsgids, &n_remote);
	if (ret != FETCH_OK)
		goto out;
	if (n_remote != st->exists) {
		snprintf(out->held, sizeof(out->held), "UIDVALIDITY changed and the server listed %zu "
			 "of %" PRIu32 " messages; nothing changed locally", n_remote, st->exists);
		goto out;
	}
	if (index_msg_foreach(run->ix, f->id, 1u << MSG_ACTIVE, collect_local, &lr) < 0 || lr.oom ||
	    reconcile_rematch(lr.v, lr.n, rv, n_remote, &rm) < 0) {
		ingest_local_error(run, "%s %s: cannot re-match the messages: out of memory or the "
				   "index failed", run->label, f->name);
		ret = FETCH_LOCAL_BAD;
		goto out;
	}
	if (!rm.convincing && !run->o->allow_mass_delete) {
		snprintf(out->held, sizeof(out->held), "UIDVALIDITY changed (%" PRIu32 " -> %" PRIu32
			 ") and only %zu of %zu messages could be matched by Message-ID and size; "
			 "nothing changed locally: run 'maildisk sync --allow-mass-delete' to accept "
			 "the server's new state", f->uidvalidity, st->uidvalidity, rm.n_pairs, lr.n);
		goto out;
	}
	if (!reconcile_may_delete(lr.n, rm.n_lost, n_remote, &pol, why, sizeof(why))) {
		snprintf(out->held, sizeof(out->held), "UIDVALIDITY changed: %s", why);
		goto out;
	}
	if (rekey(run, f, st->uidvalidity, &lr, &rm) < 0) {
		ingest_local_error(run, "%s %s: cannot re-key the messages in the index", run->label,
				   f->name);
		ret = FETCH_LOCAL_BAD;
		goto out;
	}
	run->r->n_rekeyed += (int64_t)rm.n_pairs;
	log_info("%s %s: re-keyed %zu messages to the new UIDVALIDITY without downloading them; "
		 "%zu unmatched local, %zu new on the server", run->label, f->name, rm.n_pairs,
		 rm.n_lost, rm.n_fresh);
	if (rm.n_lost) {
		char reason[160];

		snprintf(reason, sizeof(reason), "not found after UIDVALIDITY change %" PRIu32
			 " -> %" PRIu32, f->uidvalidity, st->uidvalidity);
		if (ingest_trash(run, f, rm.lost_rows, rm.n_lost, reason) < 0) {
			ret = FETCH_LOCAL_BAD;
			goto out;
		}
	}
	if (fresh_ids(&rm, &fresh) < 0) {
		ret = FETCH_LOCAL_BAD;
		goto out;
	}
	ret = fetch_new(run, drv, conn, f, st->uidvalidity, fresh, rm.n_fresh);
out:
	if (fresh)
		for (size_t i = 0; i < rm.n_fresh; i++)
			free(fresh[i]);
	free(fresh);
	for (size_t i = 0; i < n_remote; i++)
		free(rmsgids[i]);
	free(rmsgids);
	free(rv);
	for (size_t i = 0; i < lr.n; i++)
		free(lr.msgids[i]);
	free(lr.msgids);
	free(lr.v);
	reconcile_rematch_release(&rm);
	return ret;
}

/* ---- the listing's consequences ---- */

/* Parked rows go first: they hold names that new messages may want. */
static enum fetch_status trash_parked(struct ingest_run *run, const struct index_folder *f,
				      char *const *parked, size_t n_parked, size_t n_known)
{
	struct reconcile_policy pol = { true, run->a->mass_delete_limit, run->o->allow_mass_delete };
	char why[512];

	if (!n_parked || !run->a->mirror_deletions ||
	    !reconcile_may_delete(n_known + n_parked, n_parked, n_known, &pol, why, sizeof(why)))
		return FETCH_OK;
	return ingest_trash_remote(run, f, parked, n_parked, "not found after a UIDVALIDITY change");
}

/* What a listing proves gone goes to trash, unless a guard holds it. */
static enum fetch_status trash_gone(struct ingest_run *run, const struct fetch_driver *drv,
				    const struct index_folder *f, const struct drv_listing *l,
				    size_t n_known, char *const *gone, size_t n_gone,
				    struct outcome *out)
{
	struct reconcile_policy pol = { l->complete, run->a->mass_delete_limit,
					run->o->allow_mass_delete };

	if (!n_gone)
		return FETCH_OK;
	if (!run->a->mirror_deletions) {
		/* Gmail-like servers may list only part of the mail: the user
		 * said a missing id proves nothing. */
		log_debug("%s %s: %zu message(s) no longer listed by the server, kept "
			  "(mirror_deletions = no)", run->label, f->name, n_gone);
		return FETCH_OK;
	}
	if (reconcile_may_delete(n_known, n_gone, l->n, &pol, out->held, sizeof(out->held))) {
		out->held[0] = '\0';
		return ingest_trash_remote(run, f, gone, n_gone, drv->gone_reason);
	}
	if (!l->complete)
		out->held[0] = '\0';      /* not a hold: just no proof this time */
	else
		out->n_held = n_gone;
	return FETCH_OK;
}

/* Lists, fetches and trashes; st is the folder's state as opened. */
static enum fetch_status sync_listing(struct ingest_run *run, const struct fetch_driver *drv,
				      void *conn, const struct index_folder *f,
				      const struct drv_state *st, struct outcome *out)
{
	struct drv_listing l = { 0 };
	char **known = NULL, **parked = NULL, **nw = NULL, **gone = NULL;
	size_t n_known = 0, n_parked = 0, n_new = 0, n_gone = 0;
	enum fetch_status ret;

	if (known_ids(run, drv, f->id, &known, &n_known, &parked, &n_parked) < 0) {
		ingest_local_error(run, "%s %s: cannot read the index", run->label, f->name);
		return FETCH_LOCAL_BAD;
	}
	ret = drv->list_ids(conn, f, known, n_known, &l);
	if (ret != FETCH_OK)
		goto out;
	if (!l.complete)
		log_warn("%s %s: %s; no deletions this time", run->label, f->name, l.incomplete);
	if (diff(known, n_known, &l, &nw, &n_new, &gone, &n_gone) < 0) {
		ret = FETCH_LOCAL_BAD;
		goto out;
	}
	ret = apply_flags(run, f, &l);
	if (ret == FETCH_OK && l.complete)
		ret = trash_parked(run, f, parked, n_parked, n_known);
	if (ret == FETCH_OK)
		ret = fetch_new(run, drv, conn, f, st->uidvalidity, nw, n_new);
	if (ret == FETCH_OK)
		ret = trash_gone(run, drv, f, &l, n_known, gone, n_gone, out);
	if (ret == FETCH_OK)
		index_folder_set_state(run->ix, f->id, st->uidvalidity, st->uidnext,
				       l.complete ? st->highestmodseq : 0);
out:
	drv_listing_release(&l);
	free(nw);
	free(gone);
	index_ids_free(known, n_known);
	index_ids_free(parked, n_parked);
	return ret;
}

/* ---- the record ---- */

/* One place says how the folder's run ended, for both protocols: a stop
 * is "interrupted", never a success; a failure says what broke. */
static void record(struct ingest_run *run, const struct fetch_driver *drv, void *conn,
		   const struct index_folder *f, enum fetch_status ret, struct outcome *out)
{
	const char *error = NULL;

	if (ret == FETCH_OK && out->held[0]) {
		run->r->n_held += out->n_held ? (int64_t)out->n_held : 1;
		log_warn("%s %s: deletions held: %s", run->label, f->name, out->held);
	}
	if (ret == FETCH_OK) {
		index_folder_set_result(run->ix, f->id, time(NULL), NULL,
					out->held[0] ? out->held : NULL);
		return;
	}
	if (ret == FETCH_STOPPED) {
		error = "interrupted; the next sync goes on";
	} else if (ret == FETCH_LOCAL_BAD) {
		/* said where it happened (ingest) */
		error = run->local_error[0] ? run->local_error : "local store error";
	} else {
		const char *what = drv->error(conn);
		size_t n = strlen(run->label);
		char named[sizeof(out->error) + 256];

		snprintf(out->error, sizeof(out->error), "%s", what);
		error = out->error;
		/* The driver's text says the account ("alice/work: ..."), not
		 * the folder; the log and the account's summary say both. */
		if (strncmp(what, run->label, n) == 0 && strncmp(what + n, ": ", 2) == 0)
			what += n + 2;
		snprintf(named, sizeof(named), "%s %s: %s", run->label, f->name, what);
		log_error("%s", named);
		ingest_note_error(run, named);
	}
	index_folder_set_result(run->ix, f->id, time(NULL), error, f->held);
}

void sync_folder_unchanged(struct ingest_run *run, const struct index_folder *f)
{
	log_debug("%s %s: unchanged", run->label, f->name);
	index_folder_set_result(run->ix, f->id, time(NULL), NULL, NULL);
}

enum fetch_status sync_folder(struct ingest_run *run, const struct fetch_driver *drv,
			      void *conn, const struct drv_folder *df, struct index_folder *fp)
{
	struct index_folder f = *fp;
	struct drv_state st = { 0 };
	struct outcome out = { 0 };
	enum fetch_status ret;

	/* A folder the server refuses is never evidence of deletion. */
	ret = drv->select(conn, df, &f, &st);
	if (ret == FETCH_OK && store_folder_create(run->st, &f) < 0) {
		/* its Maildir exists from the first sync, messages or not */
		ingest_local_error(run, "%s %s: cannot create the folder in the store", run->label,
				   f.name);
		ret = FETCH_LOCAL_BAD;
	}
	if (ret == FETCH_OK && f.uidvalidity == 0 && f.synced_at == 0 && run->o->obs &&
	    run->o->obs->folder_added)
		run->o->obs->folder_added(run->o->obs->ctx, f.id);
	if (ret != FETCH_OK) {
		/* nothing to do: record() says it */
	} else if (f.uidvalidity && f.uidvalidity != st.uidvalidity && drv->rematch_evidence) {
		ret = rematch(run, drv, conn, &f, &st, &out);
		if (ret == FETCH_OK && !out.held[0])
			index_folder_set_state(run->ix, f.id, st.uidvalidity, st.uidnext,
					       st.highestmodseq);
	} else if (!st.unchanged) {
		ret = sync_listing(run, drv, conn, &f, &st, &out);
	}
	if (ret != FETCH_OK && ingest_stopping(run))
		ret = FETCH_STOPPED;     /* the cancel descriptor ended a wait */
	record(run, drv, conn, &f, ret, &out);
	return ret;
}
