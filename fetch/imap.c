/* imap: the IMAP client session maildisk syncs with.
 *
 * RFC 3501 / RFC 9051 (commands, FETCH, EXAMINE, LIST), RFC 4731 (ESEARCH),
 * RFC 7162 (CONDSTORE, QRESYNC), modified UTF-7 names (RFC 3501 5.1.3).
 * The connection is opened by conn.c; every byte after the login goes
 * through imap_parse.c, which is what keeps a message body that contains
 * "A004 OK" from ending a command early (curl issue 22865). */
#include "imap.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../cache/log.h"
#include "conn.h"
#include "utf7.h"

/* A response line outside literals; a UID SEARCH of a million messages
 * without ESEARCH is about 8 MB. */
#define IMAP_MAX_LINE (32u << 20)

struct imap {
	struct conn *conn;          /* owned */
	struct imap_reader *rd;     /* owned */
	char label[128];
	unsigned tag_counter;
	bool broken;                /* the stream is in an unknown state: no LOGOUT */
	char *caps;                 /* owned: " CAP1 CAP2 ... " upper-cased */
	struct imap_folder_state st;
	struct buf cmd;             /* the command being sent */
	char error[768];
};

typedef int (*untagged_fn)(struct imap *s, const struct imap_resp *r, void *ctx);

static void set_error(struct imap *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_error(struct imap *s, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(s->error, sizeof(s->error), "%s: ", s->label);

	va_start(ap, fmt);
	vsnprintf(s->error + n, sizeof(s->error) - (size_t)n, fmt, ap);
	va_end(ap);
}

const char *imap_error(const struct imap *s)
{
	return s->error;
}

bool imap_has_cap(const struct imap *s, const char *cap)
{
	char want[64];
	size_t i;

	if (!s->caps || strlen(cap) + 3 > sizeof(want))
		return false;
	want[0] = ' ';
	for (i = 0; cap[i]; i++)
		want[i + 1] = (char)toupper((unsigned char)cap[i]);
	want[i + 1] = ' ';
	want[i + 2] = '\0';
	return strstr(s->caps, want) != NULL;
}

const struct imap_folder_state *imap_state(const struct imap *s)
{
	return &s->st;
}

/* "UIDVALIDITY 123" -> true, *v = 123 when code starts with key. */
static bool code_number(const char *code, const char *key, uint64_t *v)
{
	size_t kl = strlen(key);
	char *end;

	if (!code || strncasecmp(code, key, kl) != 0 || code[kl] != ' ')
		return false;
	errno = 0;
	unsigned long long x = strtoull(code + kl + 1, &end, 10);
	if (errno || end == code + kl + 1)
		return false;
	*v = x;
	return true;
}

/* Untagged responses any command may bring. */
static void note_untagged(struct imap *s, const struct imap_resp *r)
{
	uint64_t v;

	if (r->has_num && imap_is(r->name, "EXISTS"))
		s->st.exists = r->num;
	else if (r->status == IMAP_ST_OK && r->code) {
		if (code_number(r->code, "UIDVALIDITY", &v))
			s->st.uidvalidity = (uint32_t)v;
		else if (code_number(r->code, "UIDNEXT", &v))
			s->st.uidnext = (uint32_t)v;
		else if (code_number(r->code, "HIGHESTMODSEQ", &v))
			s->st.highestmodseq = v;
	}
}

/* Sends one command and reads until its tagged response. Untagged
 * responses go to fn (if any) after note_untagged. */
static enum fetch_status run(struct imap *s, const char *what, untagged_fn fn, void *ctx,
			     const struct imap_sink *sink)
{
	char tag[16];
	struct imap_resp r;
	int rc;

	if (s->broken) {
		set_error(s, "connection lost earlier in this session");
		return FETCH_ACCOUNT_BAD;
	}
	snprintf(tag, sizeof(tag), "M%u", ++s->tag_counter);
	struct buf line = BUF_INIT(IMAP_MAX_LINE);
	if (buf_printf(&line, "%s %s\r\n", tag, s->cmd.data) < 0) {
		buf_release(&line);
		set_error(s, "%s: command too long", what);
		return FETCH_FOLDER_BAD;
	}
	rc = conn_write(s->conn, line.data, line.len);
	buf_release(&line);
	if (rc < 0) {
		s->broken = true;
		set_error(s, "%s: %s", what, conn_error(s->conn));
		return FETCH_ACCOUNT_BAD;
	}
	for (;;) {
		rc = imap_read_response(s->rd, &r, sink);
		if (rc < 0) {
			s->broken = true;
			if (rc == IMAP_ERR_IO)
				set_error(s, "%s: %s", what, conn_error(s->conn));
			else if (rc == IMAP_ERR_EOF)
				set_error(s, "%s: the server closed the connection", what);
			else
				set_error(s, "%s: %s", what, imap_strerror(rc));
			return rc == IMAP_ERR_ABORT ? FETCH_LOCAL_BAD : FETCH_ACCOUNT_BAD;
		}
		if (r.kind == IMAP_TAGGED) {
			if (strcmp(r.tag, tag) != 0) {
				s->broken = true;
				set_error(s, "%s: answer to an unknown command (tag %s)", what, r.tag);
				return FETCH_ACCOUNT_BAD;
			}
			if (r.status == IMAP_ST_OK)
				return FETCH_OK;
			set_error(s, "%s: the server answered %s %s%s%s%s", what,
				  r.status == IMAP_ST_NO ? "NO" : "BAD",
				  r.code ? "[" : "", r.code ? r.code : "", r.code ? "] " : "", r.text);
			if (r.code && strncasecmp(r.code, "NONEXISTENT", 11) == 0)
				s->st.nonexistent = true;
			return FETCH_FOLDER_BAD;
		}
		if (r.kind == IMAP_CONTINUATION) {
			s->broken = true;
			set_error(s, "%s: unexpected continuation request", what);
			return FETCH_ACCOUNT_BAD;
		}
		if (r.status == IMAP_ST_BYE) {
			s->broken = true;
			set_error(s, "%s: the server is closing the connection: %s", what, r.text);
			return FETCH_ACCOUNT_BAD;
		}
		note_untagged(s, &r);
		if (fn && fn(s, &r, ctx) != 0) {
			/* fn recorded why in s->error; the stream is intact. */
			return FETCH_FOLDER_BAD;
		}
	}
}

static int cmd_set(struct imap *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int cmd_set(struct imap *s, const char *fmt, ...)
{
	va_list ap;
	int rc;

	buf_reset(&s->cmd);
	va_start(ap, fmt);
	rc = buf_vprintf(&s->cmd, fmt, ap);
	va_end(ap);
	return rc;
}

/* Appends an IMAP quoted string; mailbox names are 7-bit after modified
 * UTF-7, so CR, LF and 8-bit bytes are refused rather than sent. */
static int cmd_quote(struct imap *s, const char *str)
{
	if (buf_appendc(&s->cmd, '"') < 0)
		return -ENOMEM;
	for (const char *p = str; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '\r' || c == '\n' || c >= 0x80)
			return -EINVAL;
		if ((c == '"' || c == '\\') && buf_appendc(&s->cmd, '\\') < 0)
			return -ENOMEM;
		if (buf_appendc(&s->cmd, (char)c) < 0)
			return -ENOMEM;
	}
	return buf_appendc(&s->cmd, '"');
}

static int caps_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	struct buf *b = ctx;

	(void)s;
	if (!imap_is(r->name, "CAPABILITY"))
		return 0;
	for (size_t i = 0; i < r->n_toks; i++) {
		if (r->toks[i].type != IMAP_ATOM)
			continue;
		for (const char *p = r->toks[i].s; *p; p++)
			buf_appendc(b, (char)toupper((unsigned char)*p));
		buf_appendc(b, ' ');
	}
	return 0;
}

static ssize_t src_read(void *ctx, void *p, size_t n)
{
	return conn_read(ctx, p, n);
}

enum fetch_status imap_open(const struct account_settings *a, const char *secret,
			    bool xoauth2, struct imap **r, enum fetch_retry *retry_r,
			    struct buf *err)
{
	struct imap *s = calloc(1, sizeof(*s));
	char url[512], label[128];
	enum fetch_status st;

	*r = NULL;
	*retry_r = RETRY_LATER;
	if (!s) {
		buf_printf(err, "%s/%s: out of memory", a->user, a->name);
		return FETCH_LOCAL_BAD;
	}
	snprintf(label, sizeof(label), "%s/%s", a->user, a->name);
	snprintf(s->label, sizeof(s->label), "%s", label);
	if (a->port)
		snprintf(url, sizeof(url), "%s://%s:%d/",
			 a->proto == PROTO_IMAPS ? "imaps" : "imap", a->host, a->port);
	else
		snprintf(url, sizeof(url), "%s://%s/",
			 a->proto == PROTO_IMAPS ? "imaps" : "imap", a->host);
	struct conn_opts co = {
		.url = url, .login = a->login, .secret = secret, .xoauth2 = xoauth2,
		.tls_off = a->tls_off, .ca_file = a->ca_file,
		.timeout = a->timeout > 0 ? a->timeout : 60, .label = label,
	};
	st = conn_open(&co, &s->conn, retry_r, err);
	if (st != FETCH_OK) {
		free(s);
		return st;
	}
	buf_init(&s->cmd, IMAP_MAX_LINE);
	struct imap_src src = { .read = src_read, .ctx = s->conn };
	if (imap_reader_create(&src, IMAP_MAX_LINE, &s->rd) < 0) {
		buf_printf(err, "%s: out of memory", label);
		s->broken = true;
		imap_close(&s);
		return FETCH_LOCAL_BAD;
	}

	/* curl consumed the capabilities it read before and after login;
	 * ask again, since they change after authentication. */
	struct buf caps = BUF_INIT(64 * 1024);
	buf_appendc(&caps, ' ');
	cmd_set(s, "CAPABILITY");
	st = run(s, "CAPABILITY", caps_collect, &caps, NULL);
	s->caps = buf_detach(&caps);
	if (st == FETCH_OK && imap_has_cap(s, "QRESYNC")) {
		cmd_set(s, "ENABLE QRESYNC");
		st = run(s, "ENABLE QRESYNC", NULL, NULL, NULL);
	}
	if (st != FETCH_OK) {
		buf_printf(err, "%s", s->error);
		imap_close(&s);
		return FETCH_ACCOUNT_BAD;
	}
	*r = s;
	return FETCH_OK;
}

void imap_close(struct imap **sp)
{
	struct imap *s = *sp;

	if (!s)
		return;
	if (s->conn && s->rd && !s->broken) {
		/* Courtesy only: the session changed nothing on the server. */
		cmd_set(s, "LOGOUT");
		run(s, "LOGOUT", NULL, NULL, NULL);
	}
	imap_reader_destroy(&s->rd);
	conn_close(&s->conn);
	buf_release(&s->cmd);
	free(s->caps);
	free(s);
	*sp = NULL;
}

/* ---- LIST ---- */

struct list_ctx {
	struct imap_mailbox *v;
	size_t n, cap;
};

static int list_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	struct list_ctx *l = ctx;
	const struct imap_tok *t = r->toks;
	struct imap_mailbox m = { 0 };
	size_t i;

	if (!imap_is(r->name, "LIST"))
		return 0;
	if (r->n_toks < 4 || t[0].type != IMAP_LIST_BEGIN)
		goto bad;
	for (i = 1; i < t[0].end; i++)
		if (t[i].type == IMAP_ATOM && (imap_is(t[i].s, "\\Noselect") ||
					       imap_is(t[i].s, "\\NonExistent")))
			m.noselect = true;
	i = t[0].end + 1;
	if (i + 1 >= r->n_toks)
		goto bad;
	if (t[i].type == IMAP_STRING && t[i].len == 1)
		m.delim = t[i].s[0];
	else if (t[i].type != IMAP_NIL)
		goto bad;
	i++;
	if (i >= r->n_toks || (t[i].type != IMAP_STRING && t[i].type != IMAP_ATOM &&
			       t[i].type != IMAP_NUMBER) || memchr(t[i].s, 0, t[i].len))
		goto bad;
	m.raw = strdup(t[i].s);
	struct buf name = BUF_INIT(4096);
	if (utf7_decode(t[i].s, t[i].len, &name) < 0) {
		/* Not valid modified UTF-7: keep the bytes; names.c escapes them. */
		log_warn("%s: folder name \"%s\" is not valid modified UTF-7; using it as is",
			 s->label, t[i].s);
		buf_reset(&name);
		buf_append(&name, t[i].s, t[i].len);
	}
	m.name = buf_detach(&name);
	if (!m.raw || !m.name)
		goto nomem;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 16;
		struct imap_mailbox *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv)
			goto nomem;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = m;
	return 0;
bad:
	set_error(s, "LIST: malformed answer");
	return -1;
nomem:
	free(m.raw);
	free(m.name);
	set_error(s, "LIST: out of memory");
	return -1;
}

void imap_mailboxes_free(struct imap_mailbox *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(m[i].name);
		free(m[i].raw);
	}
	free(m);
}

enum fetch_status imap_list(struct imap *s, struct imap_mailbox **r, size_t *n_r)
{
	struct list_ctx l = { 0 };
	enum fetch_status st;

	cmd_set(s, "LIST \"\" \"*\"");
	st = run(s, "LIST", list_collect, &l, NULL);
	if (st != FETCH_OK) {
		imap_mailboxes_free(l.v, l.n);
		*r = NULL;
		*n_r = 0;
		return st;
	}
	*r = l.v;
	*n_r = l.n;
	return FETCH_OK;
}

/* ---- UID SEARCH ---- */

struct uid_vec {
	uint32_t *v;
	size_t n, cap;
	bool oom;
};

static int uid_push(void *ctx, uint32_t uid)
{
	struct uid_vec *u = ctx;

	if (u->n == u->cap) {
		size_t nc = u->cap ? u->cap * 2 : 1024;
		uint32_t *nv = realloc(u->v, nc * sizeof(*nv));
		if (!nv) {
			u->oom = true;
			return -1;
		}
		u->v = nv;
		u->cap = nc;
	}
	u->v[u->n++] = uid;
	return 0;
}

static int search_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	struct uid_vec *u = ctx;

	if (imap_is(r->name, "SEARCH")) {
		for (size_t i = 0; i < r->n_toks; i++) {
			if (r->toks[i].type != IMAP_NUMBER || r->toks[i].num == 0 ||
			    r->toks[i].num > UINT32_MAX) {
				set_error(s, "UID SEARCH: malformed answer");
				return -1;
			}
			if (uid_push(u, (uint32_t)r->toks[i].num) < 0)
				goto nomem;
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
				if (t->type != IMAP_ATOM && t->type != IMAP_NUMBER) {
					set_error(s, "UID SEARCH: malformed ESEARCH answer");
					return -1;
				}
				int rc = imap_seqset_foreach(t->s, uid_push, u);
				if (u->oom)
					goto nomem;
				if (rc != 0) {
					set_error(s, "UID SEARCH: malformed UID set in ESEARCH answer");
					return -1;
				}
			}
		}
	}
	return 0;
nomem:
	set_error(s, "UID SEARCH: out of memory");
	return -1;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

enum fetch_status imap_uid_list(struct imap *s, uint32_t from, uint32_t **uids_r, size_t *n_r)
{
	struct uid_vec u = { 0 };
	enum fetch_status st;
	char crit[32] = "ALL";
	size_t i, j;

	*uids_r = NULL;
	*n_r = 0;
	if (from > 1)
		snprintf(crit, sizeof(crit), "UID %" PRIu32 ":*", from);
	if (imap_has_cap(s, "ESEARCH"))
		cmd_set(s, "UID SEARCH RETURN (ALL) %s", crit);
	else
		cmd_set(s, "UID SEARCH %s", crit);
	st = run(s, "UID SEARCH", search_collect, &u, NULL);
	if (st != FETCH_OK) {
		free(u.v);
		return st;
	}
	if (u.n)
		qsort(u.v, u.n, sizeof(*u.v), cmp_u32);
	/* "n:*" always matches the last message, even below n (RFC 3501 6.4.8) */
	for (i = j = 0; i < u.n; i++)
		if ((j == 0 || u.v[j - 1] != u.v[i]) && u.v[i] >= from)
			u.v[j++] = u.v[i];
	*uids_r = u.v;
	*n_r = j;
	return FETCH_OK;
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

struct fetch_ctx {
	const struct imap_fetch_handler *h;
	bool streamed;             /* this response's BODY[] went to the sink */
	bool stop;
	struct buf flags;
};

static int fsink_begin(void *ctx, const char *key, uint64_t n)
{
	struct fetch_ctx *f = ctx;
	int rc;

	if (!key || !imap_is(key, "BODY[]"))
		return 0;        /* small items (header fields) stay inline */
	rc = f->h->sink.begin(f->h->sink.ctx, key, n);
	if (rc == 1)
		f->streamed = true;
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

static int fetch_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	struct fetch_ctx *f = ctx;
	const struct imap_tok *t = r->toks;
	struct imap_fetched m = { .seq = r->num };
	bool streamed = f->streamed;

	f->streamed = false;
	if (!r->has_num || !imap_is(r->name, "FETCH"))
		return 0;
	if (r->n_toks < 2 || t[0].type != IMAP_LIST_BEGIN) {
		set_error(s, "FETCH: malformed answer");
		return -1;
	}
	for (size_t i = 1; i + 1 < t[0].end; i++) {
		const struct imap_tok *k = &t[i], *v = &t[i + 1];

		if (k->type != IMAP_ATOM) {
			set_error(s, "FETCH: malformed answer");
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
	if (m.uid == 0) {
		/* An EXAMINE session can still see other clients' flag changes
		 * without a UID when the server has no CONDSTORE; nothing to do. */
		if (m.body) {
			set_error(s, "FETCH: a message body came without its UID");
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

enum fetch_status imap_fetch(struct imap *s, const char *uidset, const char *items,
			     const struct imap_fetch_handler *h)
{
	struct fetch_ctx f = { .h = h };
	struct imap_sink sink = {
		.begin = fsink_begin, .write = fsink_write, .end = fsink_end,
		.abort = fsink_abort, .ctx = &f,
	};
	enum fetch_status st;

	buf_init(&f.flags, 64 * 1024);
	cmd_set(s, "UID FETCH %s %s", uidset, items);
	st = run(s, "UID FETCH", fetch_collect, &f, &sink);
	buf_release(&f.flags);
	return st;
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

/* ---- EXAMINE, and what changed (RFC 7162) ---- */

void imap_changes_release(struct imap_changes *c)
{
	for (size_t i = 0; i < c->n_flags; i++)
		free(c->flags[i].flags);
	free(c->flags);
	free(c->vanished);
	memset(c, 0, sizeof(*c));
}

struct changes_ctx {
	struct imap_changes *ch;
	struct uid_vec vanished;
	size_t cap_flags;
	bool oom;
	struct fetch_ctx fetch;       /* FETCH responses, parsed as imap_fetch does */
};

static int flag_change(void *ctx, const struct imap_fetched *m)
{
	struct changes_ctx *c = ctx;
	struct imap_changes *ch = c->ch;

	if (!m->flags)
		return 0;
	if (ch->n_flags == c->cap_flags) {
		size_t nc = c->cap_flags ? c->cap_flags * 2 : 64;
		struct imap_flag_change *nv = realloc(ch->flags, nc * sizeof(*nv));
		if (!nv) {
			c->oom = true;
			return 1;
		}
		ch->flags = nv;
		c->cap_flags = nc;
	}
	char *f = strdup(m->flags);
	if (!f) {
		c->oom = true;
		return 1;
	}
	ch->flags[ch->n_flags++] = (struct imap_flag_change){ m->uid, f };
	return 0;
}

static int changes_collect(struct imap *s, const struct imap_resp *r, void *ctx)
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
			set_error(s, "VANISHED: malformed answer");
			return -1;
		}
		if (imap_seqset_foreach(r->toks[i].s, uid_push, &c->vanished) != 0) {
			set_error(s, c->vanished.oom ? "VANISHED: out of memory"
						     : "VANISHED: malformed UID set");
			return -1;
		}
		return 0;
	}
	if (r->has_num && imap_is(r->name, "FETCH"))
		return fetch_collect(s, r, &c->fetch);
	return 0;
}

static void changes_finish(struct changes_ctx *c)
{
	struct uid_vec *u = &c->vanished;
	size_t i, j;

	if (u->n)
		qsort(u->v, u->n, sizeof(*u->v), cmp_u32);
	for (i = j = 0; i < u->n; i++)
		if (j == 0 || u->v[j - 1] != u->v[i])
			u->v[j++] = u->v[i];
	if (c->ch) {
		free(c->ch->vanished);
		c->ch->vanished = u->v;
		c->ch->n_vanished = j;
	} else {
		free(u->v);
	}
	u->v = NULL;
	buf_release(&c->fetch.flags);
}

enum fetch_status imap_examine(struct imap *s, const char *raw, uint32_t since_uidvalidity,
			       uint64_t since_modseq, struct imap_folder_state *st_r,
			       struct imap_changes *ch)
{
	struct imap_fetch_handler h = { .message = flag_change };
	struct changes_ctx c = { .ch = ch };
	bool qresync = ch && since_uidvalidity && since_modseq && imap_has_cap(s, "QRESYNC");
	enum fetch_status st;

	if (ch)
		memset(ch, 0, sizeof(*ch));
	memset(&s->st, 0, sizeof(s->st));
	cmd_set(s, "EXAMINE ");
	if (cmd_quote(s, raw) < 0) {
		set_error(s, "folder name \"%s\" cannot be sent to the server", raw);
		return FETCH_FOLDER_BAD;
	}
	if (qresync)
		buf_printf(&s->cmd, " (QRESYNC (%" PRIu32 " %" PRIu64 "))", since_uidvalidity,
			   since_modseq);
	else if (imap_has_cap(s, "CONDSTORE") && !imap_has_cap(s, "QRESYNC"))
		/* makes the server report HIGHESTMODSEQ (QRESYNC implies it) */
		buf_appends(&s->cmd, " (CONDSTORE)");
	h.ctx = &c;
	c.fetch.h = &h;
	buf_init(&c.fetch.flags, 64 * 1024);
	st = run(s, "EXAMINE", qresync ? changes_collect : NULL, &c, NULL);
	changes_finish(&c);
	if (c.oom) {
		set_error(s, "EXAMINE: out of memory");
		st = FETCH_LOCAL_BAD;
	}
	if (st == FETCH_OK && s->st.uidvalidity == 0) {
		set_error(s, "EXAMINE \"%s\": the server sent no UIDVALIDITY", raw);
		st = FETCH_FOLDER_BAD;
	}
	if (ch) {
		ch->valid = st == FETCH_OK && qresync && s->st.uidvalidity == since_uidvalidity;
		if (!ch->valid)
			imap_changes_release(ch);
	}
	*st_r = s->st;
	return st;
}

enum fetch_status imap_flag_changes(struct imap *s, uint64_t since_modseq,
				    struct imap_changes *ch)
{
	struct imap_fetch_handler h = { .message = flag_change };
	struct changes_ctx c = { .ch = ch };
	enum fetch_status st;

	memset(ch, 0, sizeof(*ch));
	h.ctx = &c;
	c.fetch.h = &h;
	buf_init(&c.fetch.flags, 64 * 1024);
	cmd_set(s, "UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE %" PRIu64 ")", since_modseq);
	st = run(s, "UID FETCH CHANGEDSINCE", changes_collect, &c, NULL);
	changes_finish(&c);
	if (c.oom) {
		set_error(s, "UID FETCH: out of memory");
		st = FETCH_LOCAL_BAD;
	}
	ch->valid = st == FETCH_OK;
	if (!ch->valid)
		imap_changes_release(ch);
	return st;
}

/* ---- IDLE ---- */

bool imap_usable(const struct imap *s)
{
	return !s->broken;
}

void imap_set_cancel(struct imap *s, int fd)
{
	conn_set_cancel(s->conn, fd);
}

static bool is_change(const struct imap_resp *r)
{
	if (imap_is(r->name, "VANISHED"))
		return true;
	return r->has_num && (imap_is(r->name, "EXISTS") || imap_is(r->name, "EXPUNGE") ||
			      imap_is(r->name, "FETCH"));
}

/* Reads one response for IDLE; 0, or the status to return (s->broken set). */
static enum fetch_status idle_read(struct imap *s, struct imap_resp *r)
{
	int rc = imap_read_response(s->rd, r, NULL);

	if (rc == 0 && r->status == IMAP_ST_BYE)
		rc = IMAP_ERR_EOF;
	if (rc == 0)
		return FETCH_OK;
	s->broken = true;
	if (conn_cancelled(s->conn))
		return FETCH_STOPPED;
	set_error(s, "IDLE: %s", rc == IMAP_ERR_IO ? conn_error(s->conn) : imap_strerror(rc));
	return FETCH_ACCOUNT_BAD;
}

/* Writes an IDLE-phase line; FETCH_OK or FETCH_ACCOUNT_BAD (s->broken set). */
static enum fetch_status idle_write(struct imap *s, const char *line)
{
	if (conn_write(s->conn, line, strlen(line)) == 0)
		return FETCH_OK;
	s->broken = true;
	set_error(s, "IDLE: %s", conn_error(s->conn));
	return FETCH_ACCOUNT_BAD;
}

enum fetch_status imap_idle(struct imap *s, int seconds, bool *changed_r)
{
	struct imap_resp r;
	enum fetch_status st;
	char tag[16], line[32];
	int timeout_ms_saved;

	*changed_r = false;
	if (s->broken) {
		set_error(s, "connection lost earlier in this session");
		return FETCH_ACCOUNT_BAD;
	}
	snprintf(tag, sizeof(tag), "M%u", ++s->tag_counter);
	snprintf(line, sizeof(line), "%s IDLE\r\n", tag);
	if ((st = idle_write(s, line)) != FETCH_OK)
		return st;
	/* Until "+ idling": a refusal is the tagged answer. */
	for (;;) {
		if ((st = idle_read(s, &r)) != FETCH_OK)
			return st;
		if (r.kind == IMAP_CONTINUATION)
			break;
		if (r.kind == IMAP_TAGGED) {
			set_error(s, "IDLE: the server answered %s", r.text);
			return strcmp(r.tag, tag) == 0 ? FETCH_FOLDER_BAD : FETCH_ACCOUNT_BAD;
		}
		note_untagged(s, &r);
		*changed_r = *changed_r || is_change(&r);
	}
	timeout_ms_saved = conn_timeout_ms(s->conn);
	conn_set_timeout(s->conn, seconds);
	while (!*changed_r) {
		int rc = imap_read_response(s->rd, &r, NULL);

		if (rc == IMAP_ERR_IO && conn_timed_out(s->conn)) {
			/* Time to start over; the half-read state is not worth proving. */
			s->broken = true;
			return FETCH_OK;
		}
		if (rc < 0 || r.status == IMAP_ST_BYE || r.kind != IMAP_UNTAGGED) {
			s->broken = true;
			if (conn_cancelled(s->conn))
				return FETCH_STOPPED;
			set_error(s, "IDLE: %s", rc < 0 ? (rc == IMAP_ERR_IO ? conn_error(s->conn)
								: imap_strerror(rc))
						     : "the server ended the IDLE");
			return FETCH_ACCOUNT_BAD;
		}
		note_untagged(s, &r);
		*changed_r = is_change(&r);
	}
	conn_set_timeout_ms(s->conn, timeout_ms_saved);
	if ((st = idle_write(s, "DONE\r\n")) != FETCH_OK)
		return st;
	for (;;) {
		if ((st = idle_read(s, &r)) != FETCH_OK)
			return st;
		if (r.kind == IMAP_TAGGED)
			return strcmp(r.tag, tag) == 0 && r.status == IMAP_ST_OK ? FETCH_OK
										   : FETCH_ACCOUNT_BAD;
		note_untagged(s, &r);
	}
}
