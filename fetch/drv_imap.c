/* drv_imap: the IMAP driver of the sync engine (driver.h) over an imap.c
 * session: RFC 3501/9051, CONDSTORE and QRESYNC (RFC 7162), ESEARCH
 * (RFC 4731).
 *
 * Remote ids are UIDs in decimal. A folder is opened with EXAMINE; when the
 * index's UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ still hold, nothing
 * changed and the folder stops there. With QRESYNC the EXAMINE also says
 * what vanished since the recorded modseq, so only UIDs from the old
 * UIDNEXT on are listed; the result is trusted only when it adds up to
 * EXISTS, otherwise every UID is listed. Bodies are fetched in bulk
 * (UID FETCH of up to FETCH_MAX_UIDS) straight into ingest. */
#include "driver.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../cache/log.h"
#include "imap.h"
#include "ingest.h"
#include "msgmeta.h"
#include "sync_names.h"
#include "uidset.h"

/* What a message's FETCH asks for. */
#define FETCH_ITEMS "(UID RFC822.SIZE INTERNALDATE FLAGS BODY.PEEK[])"

/* UIDs per UID FETCH command; bounded so one command line stays short. */
#define FETCH_MAX_UIDS 2000
#define FETCH_MAX_SET_LEN 8000

struct drv_imap_conn {
	struct imap *s;                 /* owned */
	char label[160];                /* "alice/work" */
	const char *host;               /* borrowed from the account */
	const char *folder;             /* borrowed: the selected folder's name */
	struct imap_folder_state st;    /* of the selected folder, at EXAMINE */
	struct imap_changes ch;         /* QRESYNC's answer to the EXAMINE, if valid */
};

static const char *imap_drv_error(void *conn)
{
	struct drv_imap_conn *c = conn;

	return imap_error(c->s);
}

static enum fetch_status imap_drv_open(struct ingest_run *run, const char *secret, bool token,
				       void **conn_r, struct buf *err)
{
	struct drv_imap_conn *c = calloc(1, sizeof(*c));
	enum fetch_status st;

	*conn_r = NULL;
	if (!c) {
		buf_printf(err, "%s: out of memory", run->label);
		return FETCH_LOCAL_BAD;
	}
	snprintf(c->label, sizeof(c->label), "%s", run->label);
	c->host = run->a->host;
	st = imap_open(run->a, secret, token, run->o->cancel_fd, &c->s, &run->r->retry, err);
	if (st != FETCH_OK) {
		free(c);
		return st;
	}
	*conn_r = c;
	return FETCH_OK;
}

static void imap_drv_close(void **conn)
{
	struct drv_imap_conn *c = *conn;

	if (!c)
		return;
	imap_changes_release(&c->ch);
	imap_close(&c->s);
	free(c);
	*conn = NULL;
}

static enum fetch_status imap_drv_list_folders(void *conn, struct drv_folder **r, size_t *n_r)
{
	struct drv_imap_conn *c = conn;
	struct imap_mailbox *mbs = NULL;
	size_t n = 0;
	char **notes = NULL;
	enum fetch_status st;

	*r = NULL;
	*n_r = 0;
	st = imap_list(c->s, &mbs, &n);
	if (st != FETCH_OK)
		return st;
	/* Two spellings of one name must not share a folder row. */
	if (sync_names_dedupe(c->label, mbs, n, &notes) < 0) {
		imap_mailboxes_free(mbs, n);
		return FETCH_LOCAL_BAD;
	}
	struct drv_folder *v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		sync_names_free(notes, n);
		imap_mailboxes_free(mbs, n);
		return FETCH_LOCAL_BAD;
	}
	for (size_t i = 0; i < n; i++) {
		/* the strings move from the mailbox to the folder */
		v[i] = (struct drv_folder){ mbs[i].name, mbs[i].raw, mbs[i].delim, !mbs[i].noselect,
					    notes ? notes[i] : NULL };
		mbs[i].name = mbs[i].raw = NULL;
		if (notes)
			notes[i] = NULL;
	}
	sync_names_free(notes, n);
	imap_mailboxes_free(mbs, n);
	*r = v;
	*n_r = n;
	return FETCH_OK;
}

/* What EXAMINE would prove, asked of every folder at once with STATUS
 * (or learnt from LIST-STATUS): same UIDVALIDITY, UIDNEXT and a non-zero
 * HIGHESTMODSEQ, and the last sync had no error and no hold. */
static enum fetch_status imap_drv_probe(void *conn, const struct drv_folder *fs,
					const struct index_folder *known, size_t n,
					bool *unchanged_r)
{
	struct drv_imap_conn *c = conn;
	struct imap_status_row *rows;
	char **raws;
	size_t k = 0;
	enum fetch_status st = FETCH_OK;

	for (size_t i = 0; i < n; i++)
		unchanged_r[i] = false;
	if (!imap_has_cap(c->s, "CONDSTORE"))
		return FETCH_OK;      /* without HIGHESTMODSEQ nothing can be proved */
	rows = calloc(n ? n : 1, sizeof(*rows));
	raws = calloc(n ? n : 1, sizeof(*raws));
	size_t *idx = calloc(n ? n : 1, sizeof(*idx));
	if (!rows || !raws || !idx) {
		free(rows), free(raws), free(idx);
		return FETCH_LOCAL_BAD;
	}
	for (size_t i = 0; i < n; i++)
		if (known[i].uidvalidity && known[i].highestmodseq && !known[i].last_error &&
		    !known[i].held) {
			raws[k] = fs[i].raw;
			idx[k++] = i;
		}
	if (k)
		st = imap_status_many(c->s, raws, k, rows);
	for (size_t j = 0; st == FETCH_OK && j < k; j++) {
		const struct index_folder *f = &known[idx[j]];

		unchanged_r[idx[j]] = rows[j].valid && rows[j].highestmodseq &&
				      rows[j].uidvalidity == f->uidvalidity &&
				      rows[j].uidnext == f->uidnext &&
				      rows[j].highestmodseq == f->highestmodseq;
	}
	free(rows), free(raws), free(idx);
	return st;
}

/* What imap_examine is asked for a folder the index knows as known. With
 * QRESYNC the EXAMINE itself says what vanished and which flags changed
 * since the last good sync; after an error or a hold, everything is listed
 * again instead. The listing the folder will most likely need goes with
 * the EXAMINE: from the old UIDNEXT when QRESYNC will say what vanished,
 * else all. */
static void examine_args(struct drv_imap_conn *c, const struct index_folder *known,
			 uint32_t *uv_r, uint64_t *modseq_r, uint32_t *list_from_r)
{
	bool since = known->uidvalidity && known->highestmodseq && !known->last_error &&
		     !known->held;

	*uv_r = since ? known->uidvalidity : 0;
	*modseq_r = since ? known->highestmodseq : 0;
	*list_from_r = since && imap_qresync(c->s) && known->uidnext ? known->uidnext : 1;
}

/* What the FETCH that goes with a folder's EXAMINE asks for: every
 * message of a folder never synced that holds no row (a first sync that
 * ended in a crash after a commit stored some: only the listing minus
 * those is fetched then), else NULL, no FETCH goes ahead. */
static const char *ahead_items(const struct index_folder *known)
{
	bool first = !known->uidvalidity && !known->n_active && !known->n_trashed && !known->held &&
		     !known->last_error;

	return first ? FETCH_ITEMS : NULL;
}

/* The folder the engine syncs after this one: its EXAMINE rides with this
 * folder's last FETCH. A folder never synced will have every message
 * fetched: that FETCH goes too, so its bodies follow this folder's on the
 * link instead of a round trip and this folder's commit later. */
static void imap_drv_hint_next(void *conn, const struct drv_folder *f,
			       const struct index_folder *known)
{
	struct drv_imap_conn *c = conn;
	uint32_t uv, list_from;
	uint64_t modseq;

	examine_args(c, known, &uv, &modseq, &list_from);
	imap_plan_examine(c->s, f->raw, uv, modseq, list_from, ahead_items(known));
}

static enum fetch_status imap_drv_select(void *conn, const struct drv_folder *f,
					 const struct index_folder *known, struct drv_state *st_r)
{
	struct drv_imap_conn *c = conn;
	uint32_t uv, list_from;
	uint64_t modseq;
	enum fetch_status st;

	imap_changes_release(&c->ch);
	c->folder = f->name;
	examine_args(c, known, &uv, &modseq, &list_from);
	st = imap_examine(c->s, f->raw, uv, modseq, list_from, ahead_items(known), &c->st, &c->ch);
	*st_r = (struct drv_state){
		.uidvalidity = c->st.uidvalidity, .uidnext = c->st.uidnext,
		.highestmodseq = c->st.highestmodseq, .exists = c->st.exists,
	};
	/* CONDSTORE says nothing changed: one round trip. */
	st_r->unchanged = st == FETCH_OK && known->uidvalidity == c->st.uidvalidity &&
			  c->st.highestmodseq && known->highestmodseq == c->st.highestmodseq &&
			  known->uidnext == c->st.uidnext && !known->last_error && !known->held;
	return st;
}

/* ---- listing ---- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The index's ids that are UIDs, ascending; the others (rows a re-match
 * parked) are the engine's business. */
static uint32_t *known_uids(char *const *ids, size_t n, size_t *n_r)
{
	uint32_t *u = malloc((n ? n : 1) * sizeof(*u));
	size_t k = 0;

	if (!u)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char *end;
		unsigned long v = strtoul(ids[i], &end, 10);

		if (*end == '\0' && v > 0 && v <= UINT32_MAX)
			u[k++] = (uint32_t)v;
	}
	if (k)
		qsort(u, k, sizeof(*u), cmp_u32);
	*n_r = k;
	return u;
}

static int ids_from_uids(const uint32_t *uids, size_t n, struct drv_listing *l)
{
	l->ids = calloc(n ? n : 1, sizeof(*l->ids));
	if (!l->ids)
		return -ENOMEM;
	for (l->n = 0; l->n < n; l->n++)
		if (asprintf(&l->ids[l->n], "%" PRIu32, uids[l->n]) < 0) {
			l->ids[l->n] = NULL;
			return -ENOMEM;
		}
	return 0;
}

/* QRESYNC: the listing is what the index knows, less what vanished, plus
 * the UIDs from the old UIDNEXT on. *trusted_r false when that does not add
 * up to EXISTS (the caller lists everything instead). */
static enum fetch_status qresync_listing(struct drv_imap_conn *c, const struct index_folder *known,
					 const uint32_t *kn, size_t n_kn, uint32_t **uids_r,
					 size_t *n_r, bool *trusted_r)
{
	const struct imap_folder_state *now = imap_state(c->s);
	uint32_t *fresh = NULL, *v = NULL;
	size_t n_fresh = 0, n_gone, k = 0;
	enum fetch_status st;

	*trusted_r = false;
	st = imap_uid_list(c->s, known->uidnext ? known->uidnext : 1, &fresh, &n_fresh);
	if (st != FETCH_OK)
		return st;
	uint32_t *gone = malloc((n_kn ? n_kn : 1) * sizeof(*gone));
	v = malloc((n_kn + n_fresh ? n_kn + n_fresh : 1) * sizeof(*v));
	if (!gone || !v) {
		free(gone), free(v), free(fresh);
		return FETCH_LOCAL_BAD;
	}
	n_gone = uidset_intersect(&c->ch.vanished, kn, n_kn, gone);
	/* Expunged UIDs at or beyond UIDNEXT were never given out. */
	uint64_t beyond = c->st.uidnext ? uidset_count_from(&c->ch.vanished, c->st.uidnext) : 0;
	/* known - gone, then the fresh ones not known (both ascending) */
	for (size_t i = 0, j = 0; i < n_kn; i++) {
		while (j < n_gone && gone[j] < kn[i])
			j++;
		if (j >= n_gone || gone[j] != kn[i])
			v[k++] = kn[i];
	}
	size_t n_old = k, n_new = 0;
	for (size_t i = 0; i < n_fresh; i++)
		if (!bsearch(&fresh[i], kn, n_kn, sizeof(*kn), cmp_u32)) {
			v[k++] = fresh[i];
			n_new++;
		}
	free(fresh);
	free(gone);
	if (k)
		qsort(v, k, sizeof(*v), cmp_u32);
	if (!beyond && k == now->exists) {
		log_debug("%s %s: QRESYNC: %zu vanished, %zu new", c->label, c->folder, n_gone, n_new);
		*trusted_r = true;
		*uids_r = v;
		*n_r = k;
		return FETCH_OK;
	}
	if (beyond)
		log_warn("%s %s: the changes %s reported do not add up: %" PRIu64 " expunged UIDs at "
			 "or beyond UIDNEXT %" PRIu32 ", which were never given out; listing all UIDs",
			 c->label, c->folder, c->host, beyond, c->st.uidnext);
	else
		log_info("%s %s: the changes the server reported do not add up (%zu known, %zu "
			 "vanished, %zu new, %" PRIu32 " on the server); listing all UIDs", c->label,
			 c->folder, n_old + n_gone, n_gone, n_new, now->exists);
	free(v);
	return FETCH_OK;
}

static int take_flags(struct imap_changes *ch, struct drv_listing *l)
{
	if (ch->n_flags == 0)
		return 0;
	l->flags = calloc(ch->n_flags, sizeof(*l->flags));
	if (!l->flags)
		return -ENOMEM;
	for (size_t i = 0; i < ch->n_flags; i++) {
		if (asprintf(&l->flags[i].id, "%" PRIu32, ch->flags[i].uid) < 0)
			return -ENOMEM;
		l->n_flags++;
		l->flags[i].flags = ch->flags[i].flags;
		ch->flags[i].flags = NULL;
	}
	return 0;
}

static enum fetch_status imap_drv_list_ids(void *conn, const struct index_folder *known,
					   char *const *known_ids, size_t n_known,
					   struct drv_listing *r)
{
	struct drv_imap_conn *c = conn;
	uint32_t *kn, *uids = NULL;
	size_t n_kn = 0, n = 0;
	bool complete = false;
	enum fetch_status st = FETCH_OK;

	memset(r, 0, sizeof(*r));
	if (!(kn = known_uids(known_ids, n_known, &n_kn)))
		return FETCH_LOCAL_BAD;
	if (c->ch.valid)
		st = qresync_listing(c, known, kn, n_kn, &uids, &n, &complete);
	free(kn);
	if (st == FETCH_OK && !complete) {
		st = imap_uid_list(c->s, 1, &uids, &n);
		/* A listing is complete only if it agrees with the message count
		 * the server announced (EXISTS, updated by any EXISTS since). */
		complete = st == FETCH_OK && n == imap_state(c->s)->exists;
		if (st == FETCH_OK && !complete)
			snprintf(r->incomplete, sizeof(r->incomplete), "the server listed %zu UIDs but "
				 "says the folder has %" PRIu32 " messages", n, imap_state(c->s)->exists);
		/* CONDSTORE without QRESYNC: the flag changes come separately. */
		if (st == FETCH_OK && known->highestmodseq && c->st.highestmodseq &&
		    imap_has_cap(c->s, "CONDSTORE") && !c->ch.valid)
			st = imap_flag_changes(c->s, known->highestmodseq, &c->ch);
	}
	if (st == FETCH_OK && (ids_from_uids(uids, n, r) < 0 || take_flags(&c->ch, r) < 0))
		st = FETCH_LOCAL_BAD;
	free(uids);
	r->complete = complete;
	if (st != FETCH_OK)
		drv_listing_release(r);
	return st;
}

/* ---- fetching into the store ---- */

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

static enum fetch_status imap_drv_fetch(void *conn, char *const *ids, size_t n, struct ingest *in)
{
	struct drv_imap_conn *c = conn;
	struct buf set = BUF_INIT(FETCH_MAX_SET_LEN + 64);
	struct imap_fetch_handler h = {
		.sink = { .begin = fx_begin, .write = fx_write, .end = fx_end,
			  .abort = fx_abort, .ctx = in },
		.message = fx_message, .ctx = in,
	};
	enum fetch_status st = FETCH_OK;
	uint32_t *uids = malloc((n ? n : 1) * sizeof(*uids));
	size_t pos = 0;

	if (!uids)
		return FETCH_LOCAL_BAD;
	for (size_t i = 0; i < n; i++)
		uids[i] = (uint32_t)strtoul(ids[i], NULL, 10);
	/* The whole folder went ahead (hint_next): its answer holds them all. */
	if (imap_fetch_ahead(c->s)) {
		st = imap_fetch(c->s, NULL, FETCH_ITEMS, &h, true);
		pos = n;
	}
	while (pos < n && st == FETCH_OK) {
		if (imap_uidset(uids, n, &pos, FETCH_MAX_UIDS, FETCH_MAX_SET_LEN, &set) < 0) {
			st = FETCH_LOCAL_BAD;
			break;
		}
		/* the last chunk carries the next folder's EXAMINE (hint_next) */
		st = imap_fetch(c->s, set.data, FETCH_ITEMS, &h, pos >= n);
	}
	buf_release(&set);
	free(uids);
	return st;
}

/* ---- evidence for a UIDVALIDITY change ---- */

struct evidence {
	struct rematch_remote *v;
	char **msgids;          /* owned Message-IDs */
	size_t n, cap_v, cap_ids;
};

static int collect_evidence(void *ctx, const struct imap_fetched *m)
{
	struct evidence *e = ctx;
	struct msgmeta mm = { 0 };

	if (buf_array_grow(&e->v, &e->cap_v, e->n, sizeof(*e->v), 256) < 0 ||
	    buf_array_grow(&e->msgids, &e->cap_ids, e->n, sizeof(*e->msgids), 256) < 0)
		return 1;
	if (m->header_value)
		msgmeta_parse(m->header_value, strlen(m->header_value), &mm);
	e->msgids[e->n] = mm.message_id;
	mm.message_id = NULL;
	msgmeta_release(&mm);
	e->v[e->n] = (struct rematch_remote){ m->uid, e->msgids[e->n], (int64_t)m->size,
					      m->internal_date };
	e->n++;
	return 0;
}

static void sink_discard_abort(void *ctx)
{
	(void)ctx;
}

static int sink_inline(void *ctx, const char *key, uint64_t n)
{
	(void)ctx, (void)key, (void)n;
	return 0;
}

static enum fetch_status imap_drv_rematch_evidence(void *conn, struct rematch_remote **r,
						   char ***msgids_r, size_t *n_r)
{
	struct drv_imap_conn *c = conn;
	struct evidence e = { 0 };
	struct imap_fetch_handler h = {
		.sink = { .begin = sink_inline, .abort = sink_discard_abort },
		.message = collect_evidence, .ctx = &e,
	};
	enum fetch_status st = FETCH_OK;

	if (c->st.exists)
		st = imap_fetch(c->s, "1:*", "(UID RFC822.SIZE INTERNALDATE "
				"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", &h, false);
	*r = e.v;
	*msgids_r = e.msgids;
	*n_r = e.n;
	return st;
}

const struct fetch_driver drv_imap = {
	.name = "IMAP",
	.gone_reason = "expunged on the server",
	.has_folders = true,
	.open = imap_drv_open,
	.close = imap_drv_close,
	.error = imap_drv_error,
	.list_folders = imap_drv_list_folders,
	.probe = imap_drv_probe,
	.hint_next = imap_drv_hint_next,
	.select = imap_drv_select,
	.list_ids = imap_drv_list_ids,
	.fetch = imap_drv_fetch,
	.rematch_evidence = imap_drv_rematch_evidence,
};
