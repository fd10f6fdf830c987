/* imap: the IMAP client session maildisk syncs with.
 *
 * RFC 3501 / RFC 9051 (commands, FETCH, EXAMINE, LIST), RFC 4731 (ESEARCH),
 * RFC 7162 (CONDSTORE, QRESYNC), modified UTF-7 names (RFC 3501 5.1.3).
 * The connection is opened by conn.c; every byte after the login goes
 * through imap_parse.c, which is what keeps a message body that contains
 * "A004 OK" from ending a command early (curl issue 22865). */
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
#include "conn.h"
#include "uidset.h"
#include "utf7.h"

void imap_set_error(struct imap *s, const char *fmt, ...)
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

bool imap_has_cap(struct imap *s, const char *cap)
{
	char want[64];
	size_t i;

	if (s->caps_pending)
		imap_run_batch(s, NULL, 0);      /* asks for them alone: one round trip */
	if (!s->caps || strlen(cap) + 3 > sizeof(want))
		return false;
	want[0] = ' ';
	for (i = 0; cap[i]; i++)
		want[i + 1] = (char)toupper((unsigned char)cap[i]);
	want[i + 1] = ' ';
	want[i + 2] = '\0';
	return strstr(s->caps, want) != NULL;
}

bool imap_qresync(const struct imap *s)
{
	return s->qresync;
}

const struct imap_folder_state *imap_state(const struct imap *s)
{
	return &s->st;
}

/* "UIDVALIDITY 123" -> true, *v = 123 when code starts with key. */
bool imap_code_number(const char *code, const char *key, uint64_t *v)
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

void imap_state_note(struct imap_folder_state *st, const struct imap_resp *r)
{
	uint64_t v;

	if (r->has_num && imap_is(r->name, "EXISTS"))
		st->exists = r->num;
	else if (r->status == IMAP_ST_OK && r->code) {
		if (imap_code_number(r->code, "UIDVALIDITY", &v))
			st->uidvalidity = (uint32_t)v;
		else if (imap_code_number(r->code, "UIDNEXT", &v))
			st->uidnext = (uint32_t)v;
		else if (imap_code_number(r->code, "HIGHESTMODSEQ", &v))
			st->highestmodseq = v;
	}
}

/* Untagged responses any command may bring. */
static void note_untagged(struct imap *s, const struct imap_resp *r)
{
	imap_state_note(&s->st, r);
}


/* The reader's failure, as the user reads it. */
static void read_error(struct imap *s, const char *what, int rc)
{
	if (rc == IMAP_ERR_IO)
		imap_set_error(s, "%s: %s", what, conn_error(s->conn));
	else if (rc == IMAP_ERR_EOF)
		imap_set_error(s, "%s: the server closed the connection", what);
	else if (rc == IMAP_ERR_REFUSED && s->refusal[0])
		imap_set_error(s, "%s: %s; the connection was closed", what, s->refusal);
	else if (rc == IMAP_ERR_TOOBIG)
		imap_set_error(s, "%s: %s sent a response line longer than %u MiB or with more than "
			  "%u tokens; the connection was closed", what, s->host, IMAP_MAX_LINE >> 20,
			  IMAP_MAX_TOKENS);
	else if (rc == IMAP_ERR_LITERAL)
		imap_set_error(s, "%s: %s announced a literal of %" PRIu64 " bytes, larger than "
			  "max_message_size (%" PRIu64 " bytes); nothing of it was stored and the "
			  "connection was closed", what, s->host, imap_reader_literal_size(s->rd),
			  s->max_message_size);
	else
		imap_set_error(s, "%s: %s", what, imap_strerror(rc));
	s->refusal[0] = '\0';
}

/* Sends c[from..to) in one write. 0, or -1 with the session broken. */
static int send_cmds(struct imap *s, struct imap_cmd *c, size_t from, size_t to)
{
	struct buf out = BUF_INIT(IMAP_MAX_LINE * 2);
	int rc = 0;

	for (size_t i = from; rc == 0 && i < to; i++) {
		snprintf(c[i].tag, sizeof(c[i].tag), "M%u", ++s->tag_counter);
		rc = buf_printf(&out, "%s %s\r\n", c[i].tag, c[i].text);
		if (rc < 0)
			imap_set_error(s, "%s: command too long", c[i].what);
	}
	if (rc == 0 && conn_write(s->conn, out.data, out.len) < 0) {
		imap_set_error(s, "%s: %s", c[from].what, conn_error(s->conn));
		rc = -1;
	}
	buf_release(&out);
	if (rc < 0)
		s->broken = true;
	return rc;
}

/* A tagged answer for c (its untagged data was read before it). */
static void tagged(struct imap *s, struct imap_cmd *c, const struct imap_resp *r, bool *failed)
{
	if (r->status == IMAP_ST_OK) {
		c->st = FETCH_OK;
		return;
	}
	/* the first failure of a batch is the one the user reads */
	if (!*failed)
		imap_set_error(s, "%s: the server answered %s %s%s%s%s", c->what,
			  r->status == IMAP_ST_NO ? "NO" : "BAD", r->code ? "[" : "",
			  r->code ? r->code : "", r->code ? "] " : "", r->text);
	*failed = true;
	if (r->code && strncasecmp(r->code, "NONEXISTENT", 11) == 0)
		s->st.nonexistent = true;
	c->st = FETCH_FOLDER_BAD;
}

/* Sends the commands c[0..n), at most IMAP_PIPELINE_MAX in flight, and
 * reads until every one has its tagged answer. Untagged responses go to
 * the fn of the oldest command not yet answered (a server executes
 * pipelined commands in order), after note_untagged. Each c[i].st says how
 * that command ended; the return value is the worst of them. After a
 * broken stream every command not yet answered is FETCH_ACCOUNT_BAD. */
static enum fetch_status run_pipe(struct imap *s, struct imap_cmd *c, size_t n, size_t already,
				  size_t keep);
static int caps_collect(struct imap *s, const struct imap_resp *r, void *ctx);
static int enabled_collect(struct imap *s, const struct imap_resp *r, void *ctx);

/* curl consumed the capabilities it read before and after login; they are
 * asked again, since they change after authentication, together with
 * ENABLE QRESYNC, in the same round trip as the session's first command: a
 * server without QRESYNC (or ENABLE) ignores it or answers BAD, and QRESYNC
 * is on only when it says ENABLED. */
enum fetch_status imap_run_batch(struct imap *s, struct imap_cmd *c, size_t n)
{
	struct buf caps = BUF_INIT(64 * 1024);
	struct imap_cmd *all;
	enum fetch_status st;

	if (!s->caps_pending)
		return run_pipe(s, c, n, 0, 0);
	s->caps_pending = false;
	if (!(all = calloc(n + 2, sizeof(*all)))) {
		imap_set_error(s, "out of memory");
		return FETCH_LOCAL_BAD;
	}
	buf_appendc(&caps, ' ');
	all[0] = (struct imap_cmd){ .what = "CAPABILITY", .text = "CAPABILITY",
				    .fn = caps_collect, .ctx = &caps };
	all[1] = (struct imap_cmd){ .what = "ENABLE QRESYNC", .text = "ENABLE QRESYNC",
				    .fn = enabled_collect };
	if (n)
		memcpy(all + 2, c, n * sizeof(*c));
	st = run_pipe(s, all, n + 2, 0, 0);
	free(s->caps);
	s->caps = buf_detach(&caps);
	if (n)
		memcpy(c, all + 2, n * sizeof(*c));
	if (all[0].st != FETCH_OK) {
		/* without capabilities the session is not to be trusted */
		s->broken = true;
		st = FETCH_ACCOUNT_BAD;
		for (size_t i = 0; i < n; i++)
			c[i].st = FETCH_ACCOUNT_BAD;
	} else {
		st = FETCH_OK;
		for (size_t i = 0; i < n; i++)
			if (c[i].st > st)
				st = c[i].st;
	}
	free(all);
	return st;
}

void imap_ahead_sent(struct imap *s, const char *tag, const char *raw)
{
	imap_ahead_forget(s);
	snprintf(s->ahead_tag, sizeof(s->ahead_tag), "%s", tag);
	s->ahead_raw = strdup(raw);
}

void imap_ahead_forget(struct imap *s)
{
	s->ahead_tag[0] = '\0';
	free(s->ahead_raw);
	s->ahead_raw = NULL;
	s->ahead_selected = false;
}

/* A sink that streams every literal to nowhere (IMAP_SINK_DROP would mark
 * the response aborted; 0 would keep it inline, refused past 64 KiB). */
static int drop_begin(void *ctx, const char *key, uint64_t n)
{
	(void)ctx;
	(void)key;
	(void)n;
	return 1;
}

static int drop_write(void *ctx, const void *p, size_t n)
{
	(void)ctx;
	(void)p;
	(void)n;
	return 0;
}

static int drop_end(void *ctx)
{
	(void)ctx;
	return 0;
}

static void drop_abort(void *ctx)
{
	(void)ctx;
}

/* Reads the answer of the FETCH sent ahead and throws it away: the folder
 * was not fetched after all (its EXAMINE failed, or it had nothing new),
 * and another command's answer comes after it. Its outcome is nobody's. */
static enum fetch_status drain_ahead(struct imap *s)
{
	static const struct imap_sink drop = { .begin = drop_begin, .write = drop_write,
					       .end = drop_end, .abort = drop_abort };
	struct imap_cmd c = { .what = "UID FETCH (sent ahead)", .text = "", .sink = &drop };
	char error[sizeof(s->error)];
	enum fetch_status st;

	snprintf(c.tag, sizeof(c.tag), "%s", s->ahead_tag);
	imap_ahead_forget(s);
	memcpy(error, s->error, sizeof(error));
	st = run_pipe(s, &c, 1, 1, 0);
	if (!s->broken)
		memcpy(s->error, error, sizeof(error));
	return s->broken ? st : FETCH_OK;
}

enum fetch_status imap_run_batch_ahead(struct imap *s, struct imap_cmd *c, size_t n, size_t already,
				       size_t keep)
{
	/* The session's first command carries CAPABILITY and ENABLE; nothing
	 * is sent ahead with it (a kept command stays unsent, its tag ""). */
	if (s->caps_pending && !already)
		return imap_run_batch(s, c, n - keep);
	return run_pipe(s, c, n, already, keep);
}

static enum fetch_status run_pipe(struct imap *s, struct imap_cmd *c, size_t n, size_t already,
				  size_t keep)
{
	size_t sent = already, done = 0;
	enum fetch_status worst = FETCH_OK;
	bool failed = false;
	struct imap_resp r;
	int rc;

	for (size_t i = 0; i < n; i++)
		c[i].st = FETCH_ACCOUNT_BAD;
	if (s->broken) {
		imap_set_error(s, "connection lost earlier in this session");
		return FETCH_ACCOUNT_BAD;
	}
	/* A FETCH sent ahead that c does not read: its answer comes first. */
	if (s->ahead_tag[0] && !already && drain_ahead(s) != FETCH_OK)
		return FETCH_ACCOUNT_BAD;
	while (done < n - keep) {
		struct imap_cmd *cur = &c[done];
		size_t to = done + IMAP_PIPELINE_MAX < n ? done + IMAP_PIPELINE_MAX : n;

		if (sent < to) {
			if (send_cmds(s, c, sent, to) < 0)
				return FETCH_ACCOUNT_BAD;
			sent = to;
		}
		rc = imap_read_response(s->rd, &r, cur->sink);
		if (rc < 0) {
			s->broken = true;
			read_error(s, cur->what, rc);
			if (rc == IMAP_ERR_ABORT)
				cur->st = FETCH_LOCAL_BAD;
			return rc == IMAP_ERR_ABORT ? FETCH_LOCAL_BAD : FETCH_ACCOUNT_BAD;
		}
		if (r.kind == IMAP_TAGGED) {
			if (strcmp(r.tag, cur->tag) != 0) {
				s->broken = true;
				imap_set_error(s, "%s: answer to an unknown command or out of order (tag %s)",
					  cur->what, r.tag);
				return FETCH_ACCOUNT_BAD;
			}
			tagged(s, cur, &r, &failed);
			if (cur->done)
				cur->done(s, cur, &r);
			if (cur->st > worst)
				worst = cur->st;
			done++;
			continue;
		}
		if (r.kind == IMAP_CONTINUATION) {
			s->broken = true;
			imap_set_error(s, "%s: unexpected continuation request", cur->what);
			return FETCH_ACCOUNT_BAD;
		}
		if (r.status == IMAP_ST_BYE) {
			s->broken = true;
			imap_set_error(s, "%s: the server is closing the connection: %s", cur->what, r.text);
			return FETCH_ACCOUNT_BAD;
		}
		note_untagged(s, &r);
		if (cur->fn && cur->fn(s, &r, cur->ctx) != 0) {
			/* fn recorded why in s->error. The rest of the answer is
			 * not worth reading: it comes from a server that just
			 * broke the protocol, and could be endless. */
			s->broken = true;
			return FETCH_ACCOUNT_BAD;
		}
	}
	return worst;
}

/* Sends s->cmd and reads until its tagged response (run_batch of one). */
enum fetch_status imap_run(struct imap *s, const char *what, untagged_fn fn, void *ctx,
			     const struct imap_sink *sink)
{
	struct imap_cmd c = { .what = what, .text = s->cmd.data, .fn = fn, .ctx = ctx,
			      .sink = sink };

	return imap_run_batch(s, &c, 1);
}

int imap_cmd_set(struct imap *s, const char *fmt, ...)
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
int imap_cmd_quote(struct imap *s, const char *str)
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

static int enabled_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	(void)ctx;
	if (!imap_is(r->name, "ENABLED"))
		return 0;
	for (size_t i = 0; i < r->n_toks; i++)
		if (r->toks[i].type == IMAP_ATOM && imap_is(r->toks[i].s, "QRESYNC"))
			s->qresync = true;
	return 0;
}

static ssize_t src_read(void *ctx, void *p, size_t n)
{
	return conn_read(ctx, p, n);
}

enum fetch_status imap_open(const struct account_settings *a, const char *secret,
			    bool xoauth2, int cancel_fd, struct imap **r, enum fetch_retry *retry_r,
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
	snprintf(s->host, sizeof(s->host), "%s", a->host);
	s->max_message_size = a->max_message_size;
	s->max_folders = a->max_folders;
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
		.cancel_fd = cancel_fd,
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
	if (s->max_message_size)
		imap_reader_set_max_literal(s->rd, s->max_message_size);

	s->caps_pending = true;     /* with the first command (run_batch) */
	*r = s;
	return FETCH_OK;
}

void imap_close(struct imap **sp)
{
	struct imap *s = *sp;

	if (!s)
		return;
	if (s->conn && s->rd && !s->broken && !s->caps_pending) {
		/* Courtesy only: the session changed nothing on the server, so
		 * its answer is not waited for (a round trip saved). */
		static const char logout[] = "Z LOGOUT\r\n";

		conn_write(s->conn, logout, sizeof(logout) - 1);
	}
	imap_reader_destroy(&s->rd);
	conn_close(&s->conn);
	uidset_release(&s->pre_set);
	imap_exam_free(&s->next);
	imap_exam_free(&s->ready);
	imap_ahead_forget(s);
	for (size_t i = 0; i < s->n_statuses; i++)
		free(s->status_raws[i]);
	free(s->status_raws);
	free(s->statuses);
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

	if (imap_is(r->name, "STATUS"))
		return imap_status_collect(s, r, NULL);      /* LIST-STATUS (RFC 5819) */
	if (!imap_is(r->name, "LIST"))
		return 0;
	if (s->max_folders && l->n >= s->max_folders) {
		imap_set_error(s, "LIST: %s lists more than %zu folders; nothing was synced from this "
			  "account: raise max_folders in [sync] if that many are real", s->host,
			  s->max_folders);
		return -1;
	}
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
	if (buf_array_grow(&l->v, &l->cap, l->n, sizeof(*l->v), 16) < 0)
		goto nomem;
	l->v[l->n++] = m;
	return 0;
bad:
	imap_set_error(s, "LIST: malformed answer");
	return -1;
nomem:
	free(m.raw);
	free(m.name);
	imap_set_error(s, "LIST: out of memory");
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

	/* With LIST-STATUS (and CONDSTORE, for HIGHESTMODSEQ) the listing also
	 * says which folders changed. It is asked for before the capabilities
	 * are known, in the round trip that learns them; a server without it
	 * answers BAD, and then the plain LIST follows. */
	imap_cmd_set(s, "LIST \"\" \"*\" RETURN (STATUS (UIDVALIDITY UIDNEXT MESSAGES "
		"HIGHESTMODSEQ))");
	st = imap_run(s, "LIST", list_collect, &l, NULL);
	if (st == FETCH_FOLDER_BAD) {
		imap_mailboxes_free(l.v, l.n);
		l = (struct list_ctx){ 0 };
		imap_cmd_set(s, "LIST \"\" \"*\"");
		st = imap_run(s, "LIST", list_collect, &l, NULL);
	}
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

/* ---- STATUS ---- */

static struct imap_status_row *status_slot(struct imap *s, const char *raw)
{
	for (size_t i = 0; i < s->n_statuses; i++)
		if (strcmp(s->status_raws[i], raw) == 0)
			return &s->statuses[i];
	return NULL;
}

/* "* STATUS <mailbox> (UIDNEXT 5 UIDVALIDITY 3 ...)": kept by raw name. */
int imap_status_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	const struct imap_tok *t = r->toks;
	struct imap_status_row row = { .valid = true }, *slot;

	(void)ctx;
	if (!imap_is(r->name, "STATUS"))
		return 0;
	if (r->n_toks < 3 || (t[0].type != IMAP_STRING && t[0].type != IMAP_ATOM &&
			      t[0].type != IMAP_NUMBER) || t[1].type != IMAP_LIST_BEGIN) {
		imap_set_error(s, "STATUS: malformed answer");
		return -1;
	}
	for (size_t i = 2; i + 1 < t[1].end; i += 2) {
		if (t[i].type != IMAP_ATOM || t[i + 1].type != IMAP_NUMBER)
			continue;
		if (imap_is(t[i].s, "UIDVALIDITY"))
			row.uidvalidity = (uint32_t)t[i + 1].num;
		else if (imap_is(t[i].s, "UIDNEXT"))
			row.uidnext = (uint32_t)t[i + 1].num;
		else if (imap_is(t[i].s, "MESSAGES"))
			row.messages = (uint32_t)t[i + 1].num;
		else if (imap_is(t[i].s, "HIGHESTMODSEQ"))
			row.highestmodseq = t[i + 1].num;
	}
	if ((slot = status_slot(s, t[0].s))) {
		*slot = row;
		return 0;
	}
	/* One per folder the server lists, and LIST is bounded by max_folders. */
	if (s->n_statuses >= (s->max_folders ? s->max_folders : 10000) * 2) {
		imap_set_error(s, "STATUS: %s sent more STATUS answers than folders", s->host);
		return -1;
	}
	if (buf_array_grow(&s->statuses, &s->cap_statuses, s->n_statuses, sizeof(*s->statuses),
			   32) < 0 ||
	    buf_array_grow(&s->status_raws, &s->cap_raws, s->n_statuses, sizeof(*s->status_raws),
			   32) < 0) {
		imap_set_error(s, "STATUS: out of memory");
		return -1;
	}
	if (!(s->status_raws[s->n_statuses] = strdup(t[0].s))) {
		imap_set_error(s, "STATUS: out of memory");
		return -1;
	}
	s->statuses[s->n_statuses++] = row;
	return 0;
}

enum fetch_status imap_status_many(struct imap *s, char *const *raws, size_t n,
				   struct imap_status_row *rows)
{
	struct imap_cmd *c = calloc(n ? n : 1, sizeof(*c));
	struct buf *text = calloc(n ? n : 1, sizeof(*text));
	size_t k = 0;
	enum fetch_status st = FETCH_OK;
	const char *items = imap_has_cap(s, "CONDSTORE") ? "(UIDVALIDITY UIDNEXT MESSAGES "
				"HIGHESTMODSEQ)" : "(UIDVALIDITY UIDNEXT MESSAGES)";

	if (!c || !text) {
		free(c), free(text);
		imap_set_error(s, "STATUS: out of memory");
		return FETCH_LOCAL_BAD;
	}
	/* Ask only for what LIST-STATUS did not already say, all at once. */
	for (size_t i = 0; i < n; i++) {
		if (status_slot(s, raws[i]))
			continue;
		buf_init(&text[k], IMAP_MAX_LINE);
		buf_reset(&s->cmd);
		if (buf_appends(&s->cmd, "STATUS ") < 0 || imap_cmd_quote(s, raws[i]) < 0 ||
		    buf_printf(&s->cmd, " %s", items) < 0 || buf_appends(&text[k], s->cmd.data) < 0)
			continue;     /* a name that cannot be sent is not probed */
		c[k] = (struct imap_cmd){ .what = "STATUS", .text = text[k].data, .fn = imap_status_collect };
		k++;
	}
	if (k)
		st = imap_run_batch(s, c, k);
	for (size_t i = 0; i < k; i++)
		buf_release(&text[i]);
	free(text);
	free(c);
	/* A NO for one folder leaves its row invalid; only a lost
	 * connection fails the probe. */
	if (st == FETCH_FOLDER_BAD)
		st = FETCH_OK;
	for (size_t i = 0; i < n; i++) {
		const struct imap_status_row *row = status_slot(s, raws[i]);

		rows[i] = row ? *row : (struct imap_status_row){ 0 };
	}
	return st;
}

/* ---- IDLE ---- */

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
	imap_set_error(s, "IDLE: %s", rc == IMAP_ERR_IO ? conn_error(s->conn) : imap_strerror(rc));
	return FETCH_ACCOUNT_BAD;
}

/* Writes an IDLE-phase line; FETCH_OK or FETCH_ACCOUNT_BAD (s->broken set). */
static enum fetch_status idle_write(struct imap *s, const char *line)
{
	if (conn_write(s->conn, line, strlen(line)) == 0)
		return FETCH_OK;
	s->broken = true;
	imap_set_error(s, "IDLE: %s", conn_error(s->conn));
	return FETCH_ACCOUNT_BAD;
}

enum fetch_status imap_idle_enter(struct imap *s, char tag_r[16], bool *changed_r,
				  char **rest_r, size_t *rest_len_r)
{
	struct imap_resp r;
	enum fetch_status st;
	char line[32];
	size_t n;

	*changed_r = false;
	*rest_r = NULL;
	*rest_len_r = 0;
	if (s->broken || !s->rd) {
		imap_set_error(s, "connection lost earlier in this session");
		return FETCH_ACCOUNT_BAD;
	}
	if (s->ahead_tag[0] && drain_ahead(s) != FETCH_OK)
		return FETCH_ACCOUNT_BAD;      /* s->error says why */
	snprintf(tag_r, 16, "M%u", ++s->tag_counter);
	snprintf(line, sizeof(line), "%s IDLE\r\n", tag_r);
	if ((st = idle_write(s, line)) != FETCH_OK)
		return st;
	for (;;) {
		if ((st = idle_read(s, &r)) != FETCH_OK)
			return st;
		if (r.kind == IMAP_CONTINUATION)
			break;
		if (r.kind == IMAP_TAGGED) {
			imap_set_error(s, "IDLE: the server answered %s", r.text);
			s->broken = true;
			return strcmp(r.tag, tag_r) == 0 ? FETCH_FOLDER_BAD : FETCH_ACCOUNT_BAD;
		}
		note_untagged(s, &r);
		*changed_r = *changed_r || is_change(&r);
	}
	/* Behind the "+" may be anything, a line that never ends included:
	 * the caller scans it, under its own limits and without blocking. */
	if ((n = imap_reader_buffered(s->rd)) > 0) {
		if (!(*rest_r = malloc(n))) {
			imap_set_error(s, "out of memory");
			return FETCH_LOCAL_BAD;
		}
		*rest_len_r = imap_reader_take(s->rd, *rest_r, n);
	}
	/* The reader's buffers are the bulk of an idle session's memory. */
	imap_reader_destroy(&s->rd);
	buf_release(&s->cmd);
	return FETCH_OK;
}

int imap_idle_fd(const struct imap *s)
{
	return conn_socket(s->conn);
}

ssize_t imap_idle_recv(struct imap *s, void *p, size_t n)
{
	ssize_t got = conn_read_nowait(s->conn, p, n);

	if (got == -1) {
		s->broken = true;
		imap_set_error(s, "IDLE: %s", conn_error(s->conn));
	}
	return got;
}

int imap_idle_send(struct imap *s, const char *line)
{
	if (conn_write_nowait(s->conn, line, strlen(line)) == 0)
		return 0;
	s->broken = true;
	imap_set_error(s, "IDLE: %s", conn_error(s->conn));
	return -1;
}
