/* imap_examine: EXAMINE, and what changed since a known state (CONDSTORE
 * and QRESYNC, RFC 7162), sent alone or with the last FETCH of the folder
 * before. Part of the IMAP session (imap_int.h). */
#include "imap_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../cache/log.h"
#include "msgmeta.h"

/* ---- EXAMINE, and what changed (RFC 7162) ---- */

void imap_changes_release(struct imap_changes *c)
{
	for (size_t i = 0; i < c->n_flags; i++)
		free(c->flags[i].flags);
	free(c->flags);
	uidset_release(&c->vanished);
	memset(c, 0, sizeof(*c));
}


static int imap_flag_change(void *ctx, const struct imap_fetched *m)
{
	struct changes_ctx *c = ctx;
	struct imap_changes *ch = c->ch;

	if (!m->flags)
		return 0;
	if (buf_array_grow(&ch->flags, &c->cap_flags, ch->n_flags, sizeof(*ch->flags), 64) < 0) {
		c->oom = true;
		return 1;
	}
	char *f = strdup(m->flags);
	if (!f) {
		c->oom = true;
		return 1;
	}
	ch->flags[ch->n_flags++] = (struct imap_flag_change){ m->uid, f };
	return 0;
}

static int imap_changes_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	struct changes_ctx *c = ctx;

	if (imap_is(r->name, "VANISHED")) {
		/* "* VANISHED (EARLIER) 1:3,5"; without EARLIER it is a live
		 * expunge, which counts the same for a read-only session. */
		size_t i = 0;
		if (r->n_toks && r->toks[0].type == IMAP_LIST_BEGIN)
			i = r->toks[0].end + 1;
		if (i >= r->n_toks || (r->toks[i].type != IMAP_ATOM &&
				       r->toks[i].type != IMAP_NUMBER)) {
			imap_set_error(s, "VANISHED: malformed answer");
			return -1;
		}
		int rc = uidset_parse(&c->vanished, r->toks[i].s);
		if (rc < 0) {
			c->oom = rc == -ENOMEM;
			imap_set_error(s, c->oom ? "VANISHED: out of memory" : "VANISHED: malformed UID set");
			return -1;
		}
		/* Each line is bounded; their number is not, unless counted. */
		if (c->vanished.n > IMAP_MAX_VANISHED_RANGES) {
			imap_set_error(s, "VANISHED: %s reported more than %u separate UID ranges; the "
				  "connection was closed", s->host, IMAP_MAX_VANISHED_RANGES);
			return -1;
		}
		return 0;
	}
	if (r->has_num && imap_is(r->name, "FETCH")) {
		/* One FETCH per changed message at most, and the folder holds
		 * EXISTS of them (which may grow a little meanwhile). */
		if (c->ch->n_flags > 2 * (size_t)s->st.exists + 1024) {
			imap_set_error(s, "FETCH: %s reported flag changes for more messages than the "
				  "folder's %" PRIu32 "; the connection was closed", s->host,
				  s->st.exists);
			return -1;
		}
		return imap_fetch_collect(s, r, &c->fetch);
	}
	return 0;
}

/* Hands the vanished ranges to ch. They are never expanded: sync.c
 * intersects them with the UIDs it knows. */
static void imap_changes_finish(struct changes_ctx *c)
{
	uidset_normalize(&c->vanished);
	if (c->ch) {
		uidset_release(&c->ch->vanished);
		c->ch->vanished = c->vanished;
	} else {
		uidset_release(&c->vanished);
	}
	c->vanished = (struct uidset)UIDSET_INIT;
	buf_release(&c->fetch.flags);
}

/* An EXAMINE, and the UID SEARCH that goes with it, in some batch: sent
 * alone by imap_examine, or after the last UID FETCH of the folder before
 * (imap_plan_examine), to save that round trip. It keeps its own copy of
 * the folder's state, so the answers of the commands around it in a batch
 * cannot mix with it. */
struct exam {
	char *raw;                    /* owned */
	uint32_t since_uidvalidity;
	uint64_t since_modseq;
	uint32_t list_from;
	bool qresync;
	struct buf cmd, search;       /* the two commands' text */
	struct buf ahead;             /* "UID FETCH $ ..." to send after them, "" for none */
	struct imap_folder_state st;  /* from this EXAMINE's own answers */
	struct imap_changes ch;       /* QRESYNC's vanished and flags */
	struct changes_ctx c;
	struct imap_fetch_handler h;
	struct listing l;
	struct imap_sink lsink;
	enum fetch_status exam_st, search_st;
	char error[768];              /* why the EXAMINE failed, "" if it did not */
};

void imap_exam_free(struct exam **ep)
{
	struct exam *e = *ep;

	if (!e)
		return;
	free(e->raw);
	buf_release(&e->cmd);
	buf_release(&e->search);
	buf_release(&e->ahead);
	uidset_release(&e->c.vanished);
	buf_release(&e->c.fetch.flags);
	imap_changes_release(&e->ch);
	uidset_release(&e->l.set);
	free(e);
	*ep = NULL;
}

/* The EXAMINE's untagged answers, into the exam's own state. */
static int exam_untagged(struct imap *s, const struct imap_resp *r, void *ctx)
{
	struct exam *e = ctx;

	imap_state_note(&e->st, r);
	return e->qresync ? imap_changes_collect(s, r, &e->c) : 0;
}

static void exam_done(struct imap *s, struct imap_cmd *c, const struct imap_resp *r)
{
	struct exam *e = c->ctx;

	(void)s;
	e->exam_st = c->st;
	if (c->st == FETCH_OK)
		return;
	snprintf(e->error, sizeof(e->error), "EXAMINE \"%.200s\": the server answered %s %s%s%s%s", e->raw,
		 r->status == IMAP_ST_NO ? "NO" : "BAD", r->code ? "[" : "",
		 r->code ? r->code : "", r->code ? "] " : "", r->text);
	if (r->code && strncasecmp(r->code, "NONEXISTENT", 11) == 0)
		e->st.nonexistent = true;
}

static struct exam *exam_new(struct imap *s, const char *raw, uint32_t since_uidvalidity,
			     uint64_t since_modseq, uint32_t list_from)
{
	struct exam *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->since_uidvalidity = since_uidvalidity;
	e->since_modseq = since_modseq;
	e->list_from = list_from;
	e->qresync = since_uidvalidity && since_modseq && s->qresync;
	e->exam_st = e->search_st = FETCH_ACCOUNT_BAD;    /* until answered */
	buf_init(&e->cmd, IMAP_MAX_LINE);
	buf_init(&e->search, 256);
	buf_init(&e->ahead, 256);
	e->h = (struct imap_fetch_handler){ .message = imap_flag_change, .ctx = &e->c };
	e->c = (struct changes_ctx){ .ch = &e->ch, .vanished = UIDSET_INIT };
	e->c.fetch = (struct fetch_ctx){ .s = s, .h = &e->h };
	buf_init(&e->c.fetch.flags, 64 * 1024);
	e->l = (struct listing){ .s = s, .set = UIDSET_INIT };
	e->lsink = (struct imap_sink){ .begin = imap_keep_inline, .number = imap_listing_number, .ctx = &e->l };
	if (!(e->raw = strdup(raw)))
		goto fail;
	/* cmd_quote writes into s->cmd; the text is copied out */
	imap_cmd_set(s, "EXAMINE ");
	if (imap_cmd_quote(s, raw) < 0)
		goto fail;
	if (e->qresync)
		buf_printf(&s->cmd, " (QRESYNC (%" PRIu32 " %" PRIu64 "))", since_uidvalidity,
			   since_modseq);
	else if (imap_has_cap(s, "CONDSTORE") && !s->qresync)
		/* makes the server report HIGHESTMODSEQ (QRESYNC implies it) */
		buf_appends(&s->cmd, " (CONDSTORE)");
	if (buf_appends(&e->cmd, s->cmd.data) < 0 ||
	    (list_from && imap_search_text(s, list_from, false, &e->search) < 0))
		goto fail;
	return e;
fail:
	imap_exam_free(&e);
	return NULL;
}

/* The commands of e, into c[0..2); how many. The listing goes in the same
 * round trip: a failed EXAMINE leaves no folder selected, so the SEARCH
 * then fails too, harmlessly. */
size_t imap_exam_cmds(struct exam *e, struct imap_cmd *c)
{
	c[0] = (struct imap_cmd){ .what = "EXAMINE", .text = e->cmd.data, .fn = exam_untagged,
				  .ctx = e, .done = exam_done };
	if (!e->list_from)
		return 1;
	c[1] = (struct imap_cmd){ .what = "UID SEARCH", .text = e->search.data,
				  .fn = imap_search_collect, .ctx = &e->l, .sink = &e->lsink };
	return 2;
}

/* After the batch that carried e: the SEARCH's outcome. */
void imap_exam_answered(struct exam *e, const struct imap_cmd *c, size_t n)
{
	if (n == 2)
		e->search_st = c[1].st;
	imap_changes_finish(&e->c);
}

/* e's outcome becomes the session's: its folder is the one selected. */
static enum fetch_status exam_take(struct imap *s, struct exam *e, struct imap_folder_state *st_r,
				   struct imap_changes *ch)
{
	enum fetch_status st = e->exam_st;

	s->st = e->st;
	s->exists_examined = e->st.exists;
	if (st != FETCH_OK && e->error[0])
		imap_set_error(s, "%s", e->error);
	if (st == FETCH_OK && e->list_from) {
		s->pre_set = e->l.set;
		e->l.set = (struct uidset)UIDSET_INIT;
		s->pre_from = e->list_from;
		s->pre_st = e->search_st;
	}
	if (e->c.oom) {
		imap_set_error(s, "EXAMINE: out of memory");
		st = FETCH_LOCAL_BAD;
	}
	if (st == FETCH_OK && s->st.uidvalidity == 0) {
		imap_set_error(s, "EXAMINE \"%s\": the server sent no UIDVALIDITY", e->raw);
		st = FETCH_FOLDER_BAD;
	}
	if (st == FETCH_OK && s->st.exists > IMAP_MAX_FOLDER_MESSAGES) {
		imap_set_error(s, "EXAMINE \"%s\": %s claims %" PRIu32 " messages in one folder, more "
			  "than the %u maildisk believes; nothing is deleted", e->raw, s->host,
			  s->st.exists, IMAP_MAX_FOLDER_MESSAGES);
		st = FETCH_FOLDER_BAD;
	}
	if (ch) {
		*ch = e->ch;
		e->ch = (struct imap_changes){ 0 };
		ch->valid = st == FETCH_OK && e->qresync && s->st.uidvalidity == e->since_uidvalidity;
		if (!ch->valid)
			imap_changes_release(ch);
	}
	*st_r = s->st;
	return st;
}

/* ahead_items: e's listing saves its result and a UID FETCH $ of these
 * items goes right behind it, unawaited. Only $ behind a listing that
 * saves it (SEARCHRES): a server must not run that FETCH before the SEARCH
 * ends, so the answers still come in order; Dovecot runs a plain UID FETCH
 * beside a UID SEARCH and mixes their answers. Without SEARCHRES or
 * ahead_items, nothing changes. 0, or -ENOMEM (e unusable). */
static int exam_set_ahead(struct imap *s, struct exam *e, const char *ahead_items)
{
	if (!ahead_items || !e->list_from || !imap_has_cap(s, "SEARCHRES"))
		return 0;
	buf_reset(&e->search);
	if (imap_search_text(s, e->list_from, true, &e->search) == 0 &&
	    buf_printf(&e->ahead, "UID FETCH $ %s", ahead_items) == 0)
		return 0;
	buf_reset(&e->search);
	buf_reset(&e->ahead);
	return imap_search_text(s, e->list_from, false, &e->search) < 0 ? -ENOMEM : 0;
}

static bool exam_is(const struct exam *e, const char *raw, uint32_t since_uidvalidity,
		    uint64_t since_modseq, uint32_t list_from)
{
	return e && strcmp(e->raw, raw) == 0 && e->since_uidvalidity == since_uidvalidity &&
	       e->since_modseq == since_modseq && e->list_from == list_from;
}

void imap_plan_examine(struct imap *s, const char *raw, uint32_t since_uidvalidity,
		       uint64_t since_modseq, uint32_t list_from, const char *ahead_items)
{
	imap_exam_free(&s->next);
	s->next = exam_new(s, raw, since_uidvalidity, since_modseq, list_from);
	if (s->next && exam_set_ahead(s, s->next, ahead_items) < 0)
		imap_exam_free(&s->next);
}

size_t imap_exam_ahead(struct exam *e, struct imap_cmd *c)
{
	if (!e->ahead.len)
		return 0;
	c[0] = (struct imap_cmd){ .what = "UID FETCH", .text = e->ahead.data };
	return 1;
}

const char *imap_exam_raw(const struct exam *e)
{
	return e->raw;
}

enum fetch_status imap_examine(struct imap *s, const char *raw, uint32_t since_uidvalidity,
			       uint64_t since_modseq, uint32_t list_from, const char *ahead_items,
			       struct imap_folder_state *st_r, struct imap_changes *ch)
{
	struct exam *e;
	struct imap_cmd c[3];
	enum fetch_status st;
	size_t n, keep;

	uidset_release(&s->pre_set);
	s->pre_from = 0;
	if (ch)
		memset(ch, 0, sizeof(*ch));
	/* Planned for this folder and still not sent (nothing was fetched
	 * before it): it is sent now instead. One planned for another folder
	 * waits for this folder's last FETCH. */
	if (s->next && strcmp(s->next->raw, raw) == 0)
		imap_exam_free(&s->next);
	if (exam_is(s->ready, raw, since_uidvalidity, since_modseq, list_from)) {
		/* answered already, after the last FETCH of the folder before */
		e = s->ready;
		s->ready = NULL;
		s->ahead_selected = s->ahead_tag[0] && s->ahead_raw && !strcmp(s->ahead_raw, raw);
	} else {
		imap_exam_free(&s->ready);
		memset(&s->st, 0, sizeof(s->st));
		if (!(e = exam_new(s, raw, since_uidvalidity, since_modseq, list_from)) ||
		    exam_set_ahead(s, e, ahead_items) < 0) {
			imap_exam_free(&e);
			imap_set_error(s, "folder name \"%s\" cannot be sent to the server", raw);
			return FETCH_FOLDER_BAD;
		}
		n = imap_exam_cmds(e, c);
		keep = imap_exam_ahead(e, c + n);
		imap_run_batch_ahead(s, c, n + keep, 0, keep);
		imap_exam_answered(e, c, n);
		/* Its FETCH $ is in flight: this folder's fetch reads it. */
		if (keep && c[n].tag[0] && !s->broken) {
			imap_ahead_sent(s, c[n].tag, raw);
			s->ahead_selected = s->ahead_raw != NULL;
		}
	}
	st = exam_take(s, e, st_r, ch);
	imap_exam_free(&e);
	if (st != FETCH_OK)
		s->ahead_selected = false;   /* drained by the next command */
	return st;
}

enum fetch_status imap_flag_changes(struct imap *s, uint64_t since_modseq,
				    struct imap_changes *ch)
{
	struct imap_fetch_handler h = { .message = imap_flag_change };
	struct changes_ctx c = { .ch = ch };
	enum fetch_status st;

	memset(ch, 0, sizeof(*ch));
	h.ctx = &c;
	c.fetch.s = s;
	c.fetch.h = &h;
	buf_init(&c.fetch.flags, 64 * 1024);
	imap_cmd_set(s, "UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE %" PRIu64 ")", since_modseq);
	st = imap_run(s, "UID FETCH CHANGEDSINCE", imap_changes_collect, &c, NULL);
	imap_changes_finish(&c);
	if (c.oom) {
		imap_set_error(s, "UID FETCH: out of memory");
		st = FETCH_LOCAL_BAD;
	}

	ch->valid = st == FETCH_OK;
	if (!ch->valid)
		imap_changes_release(ch);
	return st;
}
