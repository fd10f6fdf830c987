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
#include "uidset.h"
#include "utf7.h"

/* A response outside literals and SEARCH numbers (which stream): the
 * largest real ones are ESEARCH sets of badly fragmented folders and FETCH
 * responses with many keywords. With the token cap this bounds a
 * connection's reader to about 8 MiB, whatever the server writes. */
#define IMAP_MAX_LINE (4u << 20)

/* A folder claiming more messages than this is not believed: the listing
 * of a folder is expanded to 4 bytes a message once it is checked, and no
 * real folder comes near (Gmail's "All Mail" of a heavy user holds a few
 * million). */
#define IMAP_MAX_FOLDER_MESSAGES 10000000u

/* VANISHED (EARLIER) ranges kept for one EXAMINE: 8 MiB. A server compacts
 * its expunged UIDs into ranges; a million separate ones is a flood. */
#define IMAP_MAX_VANISHED_RANGES (1u << 20)

struct imap {
	struct conn *conn;          /* owned */
	struct imap_reader *rd;     /* owned */
	char label[128];
	char host[128];             /* the server, for errors about what it sent */
	uint64_t max_message_size;  /* a BODY[] literal larger than this is refused */
	size_t max_folders;         /* a LIST with more folders than this fails */
	uint32_t exists_examined;   /* EXISTS when the EXAMINE completed */
	bool qresync;               /* the server said ENABLED QRESYNC */
	bool caps_pending;          /* CAPABILITY and ENABLE go with the next command */
	/* a UID SEARCH sent with the EXAMINE, in the same round trip */
	struct uidset pre_set;      /* owned: its answer */
	uint32_t pre_from;          /* UIDs from this on; 0 when there is none */
	enum fetch_status pre_st;
	struct imap_status_row *statuses;  /* owned: STATUS answers seen (LIST-STATUS), by raw name */
	char **status_raws;         /* owned, parallel to statuses */
	size_t n_statuses, cap_statuses, cap_raws;
	char refusal[256];          /* why a sink refused the response, "" if none */
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

struct imap_cmd;
static enum fetch_status run_batch(struct imap *s, struct imap_cmd *c, size_t n);

bool imap_has_cap(struct imap *s, const char *cap)
{
	char want[64];
	size_t i;

	if (s->caps_pending)
		run_batch(s, NULL, 0);      /* asks for them alone: one round trip */
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

/* One command of a pipelined batch (run_batch). */
struct imap_cmd {
	const char *what;             /* for messages: "EXAMINE" */
	const char *text;             /* borrowed: the command, without tag and line end */
	untagged_fn fn;               /* may be NULL: gets the untagged responses */
	void *ctx;
	const struct imap_sink *sink; /* may be NULL: where its literals go */
	enum fetch_status st;         /* set by run_batch */
	char tag[16];
};

/* Commands in flight at most: enough to hide the round trips of a batch,
 * few enough that the server's answers never fill both sockets' buffers
 * while we are still writing (which would deadlock the two sides). */
#define IMAP_PIPELINE_MAX 32

/* The reader's failure, as the user reads it. */
static void read_error(struct imap *s, const char *what, int rc)
{
	if (rc == IMAP_ERR_IO)
		set_error(s, "%s: %s", what, conn_error(s->conn));
	else if (rc == IMAP_ERR_EOF)
		set_error(s, "%s: the server closed the connection", what);
	else if (rc == IMAP_ERR_REFUSED && s->refusal[0])
		set_error(s, "%s: %s; the connection was closed", what, s->refusal);
	else if (rc == IMAP_ERR_TOOBIG)
		set_error(s, "%s: %s sent a response line longer than %u MiB or with more than "
			  "%u tokens; the connection was closed", what, s->host, IMAP_MAX_LINE >> 20,
			  IMAP_MAX_TOKENS);
	else if (rc == IMAP_ERR_LITERAL)
		set_error(s, "%s: %s announced a literal of %" PRIu64 " bytes, larger than "
			  "max_message_size (%" PRIu64 " bytes); nothing of it was stored and the "
			  "connection was closed", what, s->host, imap_reader_literal_size(s->rd),
			  s->max_message_size);
	else
		set_error(s, "%s: %s", what, imap_strerror(rc));
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
			set_error(s, "%s: command too long", c[i].what);
	}
	if (rc == 0 && conn_write(s->conn, out.data, out.len) < 0) {
		set_error(s, "%s: %s", c[from].what, conn_error(s->conn));
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
		set_error(s, "%s: the server answered %s %s%s%s%s", c->what,
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
static enum fetch_status run_pipe(struct imap *s, struct imap_cmd *c, size_t n);
static int caps_collect(struct imap *s, const struct imap_resp *r, void *ctx);
static int enabled_collect(struct imap *s, const struct imap_resp *r, void *ctx);

/* curl consumed the capabilities it read before and after login; they are
 * asked again, since they change after authentication, together with
 * ENABLE QRESYNC, in the same round trip as the session's first command: a
 * server without QRESYNC (or ENABLE) ignores it or answers BAD, and QRESYNC
 * is on only when it says ENABLED. */
static enum fetch_status run_batch(struct imap *s, struct imap_cmd *c, size_t n)
{
	struct buf caps = BUF_INIT(64 * 1024);
	struct imap_cmd *all;
	enum fetch_status st;

	if (!s->caps_pending)
		return run_pipe(s, c, n);
	s->caps_pending = false;
	if (!(all = calloc(n + 2, sizeof(*all)))) {
		set_error(s, "out of memory");
		return FETCH_LOCAL_BAD;
	}
	buf_appendc(&caps, ' ');
	all[0] = (struct imap_cmd){ .what = "CAPABILITY", .text = "CAPABILITY",
				    .fn = caps_collect, .ctx = &caps };
	all[1] = (struct imap_cmd){ .what = "ENABLE QRESYNC", .text = "ENABLE QRESYNC",
				    .fn = enabled_collect };
	if (n)
		memcpy(all + 2, c, n * sizeof(*c));
	st = run_pipe(s, all, n + 2);
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

static enum fetch_status run_pipe(struct imap *s, struct imap_cmd *c, size_t n)
{
	size_t sent = 0, done = 0;
	enum fetch_status worst = FETCH_OK;
	bool failed = false;
	struct imap_resp r;
	int rc;

	for (size_t i = 0; i < n; i++)
		c[i].st = FETCH_ACCOUNT_BAD;
	if (s->broken) {
		set_error(s, "connection lost earlier in this session");
		return FETCH_ACCOUNT_BAD;
	}
	while (done < n) {
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
				set_error(s, "%s: answer to an unknown command or out of order (tag %s)",
					  cur->what, r.tag);
				return FETCH_ACCOUNT_BAD;
			}
			tagged(s, cur, &r, &failed);
			if (cur->st > worst)
				worst = cur->st;
			done++;
			continue;
		}
		if (r.kind == IMAP_CONTINUATION) {
			s->broken = true;
			set_error(s, "%s: unexpected continuation request", cur->what);
			return FETCH_ACCOUNT_BAD;
		}
		if (r.status == IMAP_ST_BYE) {
			s->broken = true;
			set_error(s, "%s: the server is closing the connection: %s", cur->what, r.text);
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
static enum fetch_status run(struct imap *s, const char *what, untagged_fn fn, void *ctx,
			     const struct imap_sink *sink)
{
	struct imap_cmd c = { .what = what, .text = s->cmd.data, .fn = fn, .ctx = ctx,
			      .sink = sink };

	return run_batch(s, &c, 1);
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

static int status_collect(struct imap *s, const struct imap_resp *r, void *ctx);

static int list_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	struct list_ctx *l = ctx;
	const struct imap_tok *t = r->toks;
	struct imap_mailbox m = { 0 };
	size_t i;

	if (imap_is(r->name, "STATUS"))
		return status_collect(s, r, NULL);      /* LIST-STATUS (RFC 5819) */
	if (!imap_is(r->name, "LIST"))
		return 0;
	if (s->max_folders && l->n >= s->max_folders) {
		set_error(s, "LIST: %s lists more than %zu folders; nothing was synced from this "
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

	/* With LIST-STATUS (and CONDSTORE, for HIGHESTMODSEQ) the listing also
	 * says which folders changed. It is asked for before the capabilities
	 * are known, in the round trip that learns them; a server without it
	 * answers BAD, and then the plain LIST follows. */
	cmd_set(s, "LIST \"\" \"*\" RETURN (STATUS (UIDVALIDITY UIDNEXT MESSAGES "
		"HIGHESTMODSEQ))");
	st = run(s, "LIST", list_collect, &l, NULL);
	if (st == FETCH_FOLDER_BAD) {
		imap_mailboxes_free(l.v, l.n);
		l = (struct list_ctx){ 0 };
		cmd_set(s, "LIST \"\" \"*\"");
		st = run(s, "LIST", list_collect, &l, NULL);
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
static int status_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	const struct imap_tok *t = r->toks;
	struct imap_status_row row = { .valid = true }, *slot;

	(void)ctx;
	if (!imap_is(r->name, "STATUS"))
		return 0;
	if (r->n_toks < 3 || (t[0].type != IMAP_STRING && t[0].type != IMAP_ATOM &&
			      t[0].type != IMAP_NUMBER) || t[1].type != IMAP_LIST_BEGIN) {
		set_error(s, "STATUS: malformed answer");
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
		set_error(s, "STATUS: %s sent more STATUS answers than folders", s->host);
		return -1;
	}
	if (buf_array_grow(&s->statuses, &s->cap_statuses, s->n_statuses, sizeof(*s->statuses),
			   32) < 0 ||
	    buf_array_grow(&s->status_raws, &s->cap_raws, s->n_statuses, sizeof(*s->status_raws),
			   32) < 0) {
		set_error(s, "STATUS: out of memory");
		return -1;
	}
	if (!(s->status_raws[s->n_statuses] = strdup(t[0].s))) {
		set_error(s, "STATUS: out of memory");
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
		set_error(s, "STATUS: out of memory");
		return FETCH_LOCAL_BAD;
	}
	/* Ask only for what LIST-STATUS did not already say, all at once. */
	for (size_t i = 0; i < n; i++) {
		if (status_slot(s, raws[i]))
			continue;
		buf_init(&text[k], IMAP_MAX_LINE);
		buf_reset(&s->cmd);
		if (buf_appends(&s->cmd, "STATUS ") < 0 || cmd_quote(s, raws[i]) < 0 ||
		    buf_printf(&s->cmd, " %s", items) < 0 || buf_appends(&text[k], s->cmd.data) < 0)
			continue;     /* a name that cannot be sent is not probed */
		c[k] = (struct imap_cmd){ .what = "STATUS", .text = text[k].data, .fn = status_collect };
		k++;
	}
	if (k)
		st = run_batch(s, c, k);
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

/* ---- UID SEARCH ---- */

/* A listing being read: ranges, bounded while they arrive by what the
 * folder announced (EXISTS may still grow by an untagged EXISTS after the
 * SEARCH data, hence the slack; the exact check comes at the end). */
struct listing {
	struct imap *s;
	struct uidset set;
	bool oom;
};

static bool listing_too_long(struct listing *l)
{
	uint64_t bound = 2 * (uint64_t)l->s->st.exists + 1024;

	if (l->set.added <= bound)
		return false;
	snprintf(l->s->refusal, sizeof(l->s->refusal), "%s listed more than %" PRIu64
		 " UIDs for a folder of %" PRIu32 " messages", l->s->host, bound, l->s->st.exists);
	return true;
}

static int listing_number(void *ctx, uint64_t n)
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

static int search_collect(struct imap *s, const struct imap_resp *r, void *ctx)
{
	struct listing *l = ctx;

	if (imap_is(r->name, "SEARCH")) {
		/* The numbers went to listing_number; what is left is not a UID. */
		for (size_t i = 0; i < r->n_toks; i++) {
			if (r->toks[i].type == IMAP_LIST_BEGIN) {
				i = r->toks[i].end;   /* "(MODSEQ n)" */
				continue;
			}
			set_error(s, "UID SEARCH: malformed answer");
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
					set_error(s, "UID SEARCH: out of memory");
					return -1;
				}
				if (rc < 0) {
					set_error(s, "UID SEARCH: malformed UID set in ESEARCH answer");
					return -1;
				}
				if (listing_too_long(l)) {
					set_error(s, "UID SEARCH: %s", s->refusal);
					return -1;
				}
			}
		}
	}
	return 0;
}

static int keep_inline(void *ctx, const char *key, uint64_t n)
{
	(void)ctx, (void)key, (void)n;
	return 0;                /* small literals stay inline; large ones fail */
}

/* The UID SEARCH for UIDs >= from, as command text. */
static int search_text(struct imap *s, uint32_t from, struct buf *out)
{
	char crit[32] = "ALL";

	if (from > 1)
		snprintf(crit, sizeof(crit), "UID %" PRIu32 ":*", from);
	return imap_has_cap(s, "ESEARCH") ? buf_printf(out, "UID SEARCH RETURN (ALL) %s", crit)
					  : buf_printf(out, "UID SEARCH %s", crit);
}

/* Checks a listing against what the folder can hold and expands it. */
static enum fetch_status listing_finish(struct imap *s, struct uidset *set, uint32_t from,
					uint32_t **uids_r, size_t *n_r)
{
	uint64_t n = uidset_normalize(set);
	uint32_t growth = s->st.exists > s->exists_examined ? s->st.exists - s->exists_examined : 0;
	uint64_t beyond = s->st.uidnext ? uidset_count_from(set, s->st.uidnext) : 0;

	/* What the folder can hold: EXISTS messages, and UIDs below UIDNEXT
	 * but for messages that arrived during the session. */
	if (n > s->st.exists) {
		set_error(s, "UID SEARCH: %s listed %" PRIu64 " UIDs for a folder of %" PRIu32
			  " messages; nothing is deleted", s->host, n, s->st.exists);
		return FETCH_FOLDER_BAD;
	}
	if (beyond > growth) {
		set_error(s, "UID SEARCH: %s listed %" PRIu64 " UIDs at or beyond UIDNEXT %" PRIu32
			  "; nothing is deleted", s->host, beyond, s->st.uidnext);
		return FETCH_FOLDER_BAD;
	}
	/* "n:*" always matches the last message, even below n (RFC 3501
	 * 6.4.8): uidset_expand keeps only the UIDs >= from. */
	if (uidset_expand(set, from, uids_r, n_r) < 0) {
		set_error(s, "UID SEARCH: out of memory");
		return FETCH_LOCAL_BAD;
	}
	return FETCH_OK;
}

enum fetch_status imap_uid_list(struct imap *s, uint32_t from, uint32_t **uids_r, size_t *n_r)
{
	struct listing l = { .s = s, .set = UIDSET_INIT };
	struct imap_sink sink = { .begin = keep_inline, .number = listing_number, .ctx = &l };
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
		search_text(s, from, &s->cmd);
		st = run(s, "UID SEARCH", search_collect, &l, &sink);
	}
	if (st == FETCH_OK)
		st = listing_finish(s, &l.set, from, uids_r, n_r);
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

struct fetch_ctx {
	struct imap *s;            /* borrowed */
	const struct imap_fetch_handler *h;
	bool streamed;             /* this response's BODY[] went to the sink */
	uint64_t body_size;        /* the size of the literal that went to the sink */
	bool stop;
	struct buf flags;
};

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
	if (m.body && m.size && f->body_size > body_limit(m.size)) {
		/* RFC822.SIZE came after the body: the file goes unstored. */
		set_error(s, "FETCH: message UID %" PRIu32 ": %s sent a body of %" PRIu64 " bytes "
			  "for a message of %" PRIu64 " bytes (RFC822.SIZE)", m.uid, s->host,
			  f->body_size, m.size);
		return -1;
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
	struct fetch_ctx f = { .s = s, .h = h };
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
	uidset_release(&c->vanished);
	memset(c, 0, sizeof(*c));
}

struct changes_ctx {
	struct imap_changes *ch;
	struct uidset vanished;
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
		int rc = uidset_parse(&c->vanished, r->toks[i].s);
		if (rc < 0) {
			c->oom = rc == -ENOMEM;
			set_error(s, c->oom ? "VANISHED: out of memory" : "VANISHED: malformed UID set");
			return -1;
		}
		/* Each line is bounded; their number is not, unless counted. */
		if (c->vanished.n > IMAP_MAX_VANISHED_RANGES) {
			set_error(s, "VANISHED: %s reported more than %u separate UID ranges; the "
				  "connection was closed", s->host, IMAP_MAX_VANISHED_RANGES);
			return -1;
		}
		return 0;
	}
	if (r->has_num && imap_is(r->name, "FETCH")) {
		/* One FETCH per changed message at most, and the folder holds
		 * EXISTS of them (which may grow a little meanwhile). */
		if (c->ch->n_flags > 2 * (size_t)s->st.exists + 1024) {
			set_error(s, "FETCH: %s reported flag changes for more messages than the "
				  "folder's %" PRIu32 "; the connection was closed", s->host,
				  s->st.exists);
			return -1;
		}
		return fetch_collect(s, r, &c->fetch);
	}
	return 0;
}

/* Hands the vanished ranges to ch. They are never expanded: sync.c
 * intersects them with the UIDs it knows. */
static void changes_finish(struct changes_ctx *c)
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

enum fetch_status imap_examine(struct imap *s, const char *raw, uint32_t since_uidvalidity,
			       uint64_t since_modseq, uint32_t list_from,
			       struct imap_folder_state *st_r, struct imap_changes *ch)
{
	struct imap_fetch_handler h = { .message = flag_change };
	struct changes_ctx c = { .ch = ch };
	bool qresync = ch && since_uidvalidity && since_modseq && s->qresync;
	struct listing l = { .s = s, .set = UIDSET_INIT };
	struct imap_sink lsink = { .begin = keep_inline, .number = listing_number, .ctx = &l };
	struct buf search = BUF_INIT(256);
	enum fetch_status st;

	uidset_release(&s->pre_set);
	s->pre_from = 0;
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
	else if (imap_has_cap(s, "CONDSTORE") && !s->qresync)
		/* makes the server report HIGHESTMODSEQ (QRESYNC implies it) */
		buf_appends(&s->cmd, " (CONDSTORE)");
	h.ctx = &c;
	c.fetch.s = s;
	c.fetch.h = &h;
	buf_init(&c.fetch.flags, 64 * 1024);
	/* The listing goes in the same round trip: a failed EXAMINE leaves no
	 * folder selected, so the SEARCH then fails too, harmlessly. */
	struct imap_cmd cmds[2] = {
		{ .what = "EXAMINE", .text = s->cmd.data, .fn = qresync ? changes_collect : NULL,
		  .ctx = &c },
		{ .what = "UID SEARCH", .fn = search_collect, .ctx = &l, .sink = &lsink },
	};
	size_t n_cmds = 1;
	if (list_from && search_text(s, list_from, &search) == 0) {
		cmds[1].text = search.data;
		n_cmds = 2;
	}
	run_batch(s, cmds, n_cmds);
	st = cmds[0].st;
	if (n_cmds == 2 && st == FETCH_OK) {
		s->pre_set = l.set;
		l.set = (struct uidset)UIDSET_INIT;
		s->pre_from = list_from;
		s->pre_st = cmds[1].st;
	}
	uidset_release(&l.set);
	buf_release(&search);
	changes_finish(&c);
	s->exists_examined = s->st.exists;
	if (c.oom) {
		set_error(s, "EXAMINE: out of memory");
		st = FETCH_LOCAL_BAD;
	}
	if (st == FETCH_OK && s->st.uidvalidity == 0) {
		set_error(s, "EXAMINE \"%s\": the server sent no UIDVALIDITY", raw);
		st = FETCH_FOLDER_BAD;
	}
	if (st == FETCH_OK && s->st.exists > IMAP_MAX_FOLDER_MESSAGES) {
		set_error(s, "EXAMINE \"%s\": %s claims %" PRIu32 " messages in one folder, more "
			  "than the %u maildisk believes; nothing is deleted", raw, s->host,
			  s->st.exists, IMAP_MAX_FOLDER_MESSAGES);
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
	c.fetch.s = s;
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
		set_error(s, "connection lost earlier in this session");
		return FETCH_ACCOUNT_BAD;
	}
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
			set_error(s, "IDLE: the server answered %s", r.text);
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
			set_error(s, "out of memory");
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
		set_error(s, "IDLE: %s", conn_error(s->conn));
	}
	return got;
}

int imap_idle_send(struct imap *s, const char *line)
{
	if (conn_write_nowait(s->conn, line, strlen(line)) == 0)
		return 0;
	s->broken = true;
	set_error(s, "IDLE: %s", conn_error(s->conn));
	return -1;
}
