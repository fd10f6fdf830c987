/* imap_fetch: UID SEARCH listings (kept as ranges until checked against
 * the folder: uidset.h) and UID FETCH into a handler (RFC 3501 6.4.4,
 * 6.4.5; ESEARCH, RFC 4731). Part of the IMAP session (imap_int.h). */
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

/* ---- UID SEARCH ---- */


static bool listing_too_long(struct listing *l)
{
	uint64_t bound = 2 * (uint64_t)l->s->st.exists + 1024;

	if (l->set.added <= bound)
		return false;
	snprintf(l->s->refusal, sizeof(l->s->refusal), "%s listed more than %" PRIu64
		 " UIDs for a folder of %" PRIu32 " messages", l->s->host, bound, l->s->st.exists);
	return true;
}

int imap_listing_number(void *ctx, uint64_t n)
{
	struct listing *l = ctx;

	if (n == 0 || n > UINT32_MAX) {
		snprintf(l->s->refusal, sizeof(l->s->refusal), "malformed UID %" PRIu64 " in SEARCH", n);
		return -1;
	}
	if (uidset_add(&l->set, (uint32_t)n, (uint32_t)n) < 0) {
		l->oom = true;
		snprintf(l->s->refusal, sizeof(l->s->refusal), "out of memory");
		return -1;
	}
	return listing_too_long(l) ? -1 : 0;
}

int imap_search_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	struct listing *l = ctx;

	if (imap_is(r->name, "SEARCH")) {
		/* The numbers went to listing_number; what is left is not a UID. */
		for (size_t i = 0; i < r->n_toks; i++) {
			if (r->toks[i].type == IMAP_LIST_BEGIN) {
				i = r->toks[i].end;   /* "(MODSEQ n)" */
				continue;
			}
			imap_set_error(s, "UID SEARCH: malformed answer");
			return -1;
		}
	} else if (imap_is(r->name, "ESEARCH")) {
		/* (TAG "x") UID ALL 1:5,7 — other return items are not asked for. */
		for (size_t i = 0; i < r->n_toks; i++) {
			if (r->toks[i].type == IMAP_LIST_BEGIN) {
				i = r->toks[i].end;
				continue;
			}
			if (r->toks[i].type == IMAP_ATOM && imap_is(r->toks[i].s, "ALL") &&
			    i + 1 < r->n_toks) {
				const struct imap_tok *t = &r->toks[++i];
				int rc = t->type == IMAP_ATOM || t->type == IMAP_NUMBER
						 ? uidset_parse(&l->set, t->s) : -EINVAL;

				if (rc == -ENOMEM) {
					l->oom = true;
					imap_set_error(s, "UID SEARCH: out of memory");
					return -1;
				}
				if (rc < 0) {
					imap_set_error(s, "UID SEARCH: malformed UID set in ESEARCH answer");
					return -1;
				}
				if (listing_too_long(l)) {
					imap_set_error(s, "UID SEARCH: %s", s->refusal);
					return -1;
				}
			}
		}
	}
	return 0;
}

int imap_keep_inline(void *ctx, const char *key, uint64_t n)
{
	(void)ctx, (void)key, (void)n;
	return 0;                /* small literals stay inline; large ones fail */
}

/* The UID SEARCH for UIDs >= from, as command text. */
int imap_search_text(struct imap *s, uint32_t from, bool save, struct buf *out)
{
	char crit[32] = "ALL";

	if (from > 1)
		snprintf(crit, sizeof(crit), "UID %" PRIu32 ":*", from);
	if (save)
		return buf_printf(out, "UID SEARCH RETURN (SAVE ALL) %s", crit);
	return imap_has_cap(s, "ESEARCH") ? buf_printf(out, "UID SEARCH RETURN (ALL) %s", crit)
					  : buf_printf(out, "UID SEARCH %s", crit);
}

/* Checks a listing against what the folder can hold and expands it. */
static enum fetch_status imap_listing_finish(struct imap *s, struct uidset *set, uint32_t from,
					uint32_t **uids_r, size_t *n_r)
{
	uint64_t n = uidset_normalize(set);
	uint32_t growth = s->st.exists > s->exists_examined ? s->st.exists - s->exists_examined : 0;
	uint64_t beyond = s->st.uidnext ? uidset_count_from(set, s->st.uidnext) : 0;

	/* What the folder can hold: EXISTS messages, and UIDs below UIDNEXT
	 * but for messages that arrived during the session. */
	if (n > s->st.exists) {
		imap_set_error(s, "UID SEARCH: %s listed %" PRIu64 " UIDs for a folder of %" PRIu32
			  " messages; nothing is deleted", s->host, n, s->st.exists);
		return FETCH_FOLDER_BAD;
	}
	if (beyond > growth) {
		imap_set_error(s, "UID SEARCH: %s listed %" PRIu64 " UIDs at or beyond UIDNEXT %" PRIu32
			  "; nothing is deleted", s->host, beyond, s->st.uidnext);
		return FETCH_FOLDER_BAD;
	}
	/* "n:*" always matches the last message, even below n (RFC 3501
	 * 6.4.8): uidset_expand keeps only the UIDs >= from. */
	if (uidset_expand(set, from, uids_r, n_r) < 0) {
		imap_set_error(s, "UID SEARCH: out of memory");
		return FETCH_LOCAL_BAD;
	}
	return FETCH_OK;
}

enum fetch_status imap_uid_list(struct imap *s, uint32_t from, uint32_t **uids_r, size_t *n_r)
{
	struct listing l = { .s = s, .set = UIDSET_INIT };
	struct imap_sink sink = { .begin = imap_keep_inline, .number = imap_listing_number, .ctx = &l };
	enum fetch_status st;

	*uids_r = NULL;
	*n_r = 0;
	if (s->pre_from && s->pre_from == from) {
		/* asked for already, with the EXAMINE */
		l.set = s->pre_set;
		st = s->pre_st;
		s->pre_set = (struct uidset)UIDSET_INIT;
		s->pre_from = 0;
	} else {
		buf_reset(&s->cmd);
		imap_search_text(s, from, false, &s->cmd);
		st = imap_run(s, "UID SEARCH", imap_search_collect, &l, &sink);
	}
	if (st == FETCH_OK)
		st = imap_listing_finish(s, &l.set, from, uids_r, n_r);
	uidset_release(&l.set);
	return st;
}

/* ---- FETCH ---- */

/* "17-Jul-1996 02:44:25 -0700" -> unix time; 0 if malformed. */
static int64_t parse_internaldate(const char *s)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	int day, year, hh, mm, ss, zone;
	char mon[4], sign;
	struct tm tm = { 0 };

	while (*s == ' ')
		s++;
	if (sscanf(s, "%d-%3s-%d %d:%d:%d %c%4d", &day, mon, &year, &hh, &mm, &ss,
		   &sign, &zone) != 8)
		return 0;
	const char *p = strstr(months, mon);
	if (!p || (p - months) % 3 != 0 || (sign != '+' && sign != '-'))
		return 0;
	tm.tm_mday = day;
	tm.tm_mon = (int)((p - months) / 3);
	tm.tm_year = year - 1900;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	int64_t t = (int64_t)timegm(&tm);
	int64_t off = (zone / 100) * 3600 + (zone % 100) * 60;
	return sign == '+' ? t - off : t + off;
}


/* The most bytes a body may have for a message of RFC822.SIZE size: the
 * server may count LF line ends and send CRLF, which at worst doubles it. */
static uint64_t body_limit(uint64_t size)
{
	return 2 * size + 1024;
}

/* A BODY[] literal larger than the RFC822.SIZE sent before it in the same
 * response: refused before a byte of it is written. */
static bool body_too_big(struct fetch_ctx *f, uint64_t n)
{
	size_t nt;
	const struct imap_tok *t = imap_reader_tokens_so_far(f->s->rd, &nt);
	uint64_t uid = 0, size = UINT64_MAX;

	for (size_t i = 1; i + 1 < nt; i++) {
		if (t[i].type != IMAP_ATOM || t[i + 1].type != IMAP_NUMBER)
			continue;
		if (imap_is(t[i].s, "RFC822.SIZE"))
			size = t[i + 1].num;
		else if (imap_is(t[i].s, "UID"))
			uid = t[i + 1].num;
	}
	if (size == UINT64_MAX || n <= body_limit(size))
		return false;
	snprintf(f->s->refusal, sizeof(f->s->refusal), "message UID %" PRIu64 ": %s announced "
		 "a body of %" PRIu64 " bytes for a message of %" PRIu64 " bytes (RFC822.SIZE)",
		 uid, f->s->host, n, size);
	return true;
}

static int fsink_begin(void *ctx, const char *key, uint64_t n)
{
	struct fetch_ctx *f = ctx;
	int rc;

	if (!key || !imap_is(key, "BODY[]"))
		return 0;        /* small items (header fields) stay inline */
	if (body_too_big(f, n))
		return IMAP_SINK_REFUSE;
	rc = f->h->sink.begin(f->h->sink.ctx, key, n);
	if (rc == 1) {
		f->streamed = true;
		f->body_size = n;
	}
	return rc;
}

static int fsink_write(void *ctx, const void *p, size_t n)
{
	struct fetch_ctx *f = ctx;

	return f->h->sink.write(f->h->sink.ctx, p, n);
}

static int fsink_end(void *ctx)
{
	struct fetch_ctx *f = ctx;

	return f->h->sink.end(f->h->sink.ctx);
}

static void fsink_abort(void *ctx)
{
	struct fetch_ctx *f = ctx;

	f->streamed = false;
	f->h->sink.abort(f->h->sink.ctx);
}

int imap_fetch_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	struct fetch_ctx *f = ctx;
	const struct imap_tok *t = r->toks;
	struct imap_fetched m = { .seq = r->num };
	bool streamed = f->streamed;

	f->streamed = false;
	if (!r->has_num || !imap_is(r->name, "FETCH"))
		return 0;
	if (r->n_toks < 2 || t[0].type != IMAP_LIST_BEGIN) {
		imap_set_error(s, "FETCH: malformed answer");
		return -1;
	}
	for (size_t i = 1; i + 1 < t[0].end; i++) {
		const struct imap_tok *k = &t[i], *v = &t[i + 1];

		if (k->type != IMAP_ATOM) {
			imap_set_error(s, "FETCH: malformed answer");
			return -1;
		}
		if (imap_is(k->s, "UID") && v->type == IMAP_NUMBER) {
			m.uid = (uint32_t)v->num;
		} else if (imap_is(k->s, "RFC822.SIZE") && v->type == IMAP_NUMBER) {
			m.size = v->num;
		} else if (imap_is(k->s, "INTERNALDATE") && v->type == IMAP_STRING) {
			m.internal_date = parse_internaldate(v->s);
		} else if (imap_is(k->s, "FLAGS") && v->type == IMAP_LIST_BEGIN) {
			buf_reset(&f->flags);
			for (size_t j = i + 2; j < v->end; j++) {
				/* \Recent belongs to one session, not to the message */
				if (t[j].type != IMAP_ATOM || imap_is(t[j].s, "\\Recent"))
					continue;
				if (f->flags.len)
					buf_appendc(&f->flags, ' ');
				buf_appends(&f->flags, t[j].s);
			}
			m.flags = f->flags.data ? f->flags.data : "";
		} else if (imap_is(k->s, "MODSEQ") && v->type == IMAP_LIST_BEGIN &&
			   v->end == i + 3 && t[i + 2].type == IMAP_NUMBER) {
			m.modseq = t[i + 2].num;
		} else if (imap_is(k->s, "BODY[]")) {
			m.body = streamed && v->type == IMAP_STREAMED;
		} else if (strncasecmp(k->s, "BODY[HEADER.FIELDS", 18) == 0 &&
			   v->type == IMAP_STRING) {
			m.header_value = v->s;
		}
		i = v->type == IMAP_LIST_BEGIN ? v->end : i + 1;
	}
	if (m.body && m.size && f->body_size > body_limit(m.size)) {
		/* RFC822.SIZE came after the body: the file goes unstored. */
		imap_set_error(s, "FETCH: message UID %" PRIu32 ": %s sent a body of %" PRIu64 " bytes "
			  "for a message of %" PRIu64 " bytes (RFC822.SIZE)", m.uid, s->host,
			  f->body_size, m.size);
		return -1;
	}
	if (m.uid == 0) {
		/* An EXAMINE session can still see other clients' flag changes
		 * without a UID when the server has no CONDSTORE; nothing to do. */
		if (m.body) {
			imap_set_error(s, "FETCH: a message body came without its UID");
			return -1;
		}
		return 0;
	}
	if (f->stop)
		return 0;
	if (f->h->message(f->h->ctx, &m) != 0)
		f->stop = true;
	return 0;
}

bool imap_fetch_ahead(const struct imap *s)
{
	return s->ahead_tag[0] && s->ahead_selected;
}

enum fetch_status imap_fetch(struct imap *s, const char *uidset, const char *items,
			     const struct imap_fetch_handler *h, bool last)
{
	struct fetch_ctx f = { .s = s, .h = h };
	struct imap_sink sink = {
		.begin = fsink_begin, .write = fsink_write, .end = fsink_end,
		.abort = fsink_abort, .ctx = &f,
	};
	struct imap_cmd c[4];
	size_t n = 1, n_exam = 0, already = 0, keep = 0;

	buf_init(&f.flags, 64 * 1024);
	c[0] = (struct imap_cmd){ .what = "UID FETCH", .fn = imap_fetch_collect, .ctx = &f,
				  .sink = &sink };
	if (imap_fetch_ahead(s)) {
		/* sent with this folder's EXAMINE: only its answer is read */
		snprintf(c[0].tag, sizeof(c[0].tag), "%s", s->ahead_tag);
		c[0].text = "";
		already = 1;
		imap_ahead_forget(s);
	} else {
		imap_cmd_set(s, "UID FETCH %s %s", uidset, items);
		c[0].text = s->cmd.data;
	}
	if (last && s->next) {
		n_exam = imap_exam_cmds(s->next, c + 1);
		n += n_exam;
		keep = imap_exam_ahead(s->next, c + n);
		n += keep;
	}
	imap_run_batch_ahead(s, c, n, already, keep);
	if (n_exam) {
		imap_exam_answered(s->next, c + 1, n_exam);
		imap_exam_free(&s->ready);
		s->ready = s->next;
		s->next = NULL;
		/* The FETCH sent ahead is the next folder's, if it was sent. */
		if (keep && c[n - 1].tag[0] && !s->broken)
			imap_ahead_sent(s, c[n - 1].tag, imap_exam_raw(s->ready));
	}
	buf_release(&f.flags);
	return c[0].st;
}

int imap_uidset(const uint32_t *uids, size_t n, size_t *pos, size_t max_uids,
		size_t max_len, struct buf *out)
{
	size_t i = *pos, taken = 0;

	buf_reset(out);
	while (i < n && taken < max_uids && out->len < max_len) {
		size_t j = i;

		while (j + 1 < n && uids[j + 1] == uids[j] + 1 && taken + (j + 1 - i) < max_uids)
			j++;
		int rc = j > i ? buf_printf(out, "%s%u:%u", out->len ? "," : "", uids[i], uids[j])
			       : buf_printf(out, "%s%u", out->len ? "," : "", uids[i]);
		if (rc < 0)
			return rc;
		taken += j - i + 1;
		i = j + 1;
	}
	*pos = i;
	return 0;
}
