/* pop3: a POP3 session over conn.c (RFC 1939, RFC 2449 CAPA and
 * PIPELINING, RFC 2595 STLS through libcurl's login), and the parsers of
 * its answers.
 *
 * Why not libcurl's own POP3 requests: each is a transfer of its own, so
 * every RETR waits a full round trip, and libcurl 7.88 takes a hang-up
 * before the terminating "." for the end of the body. Here the multi-line
 * reader is strict about that ".", and RETR is pipelined when the server
 * allows it.
 *
 * Why a session is cut on any failure: QUIT ends a session in the UPDATE
 * state (RFC 1939 section 6), where Dovecot marks every message retrieved
 * in it \Seen; a session that ends without QUIT changes nothing. */
#include "pop3.h"
#include "conn.h"
#include "../cache/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ---- */

static void set_why(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

void pop3_listing_release(struct pop3_listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].uidl);
	free(l->v);
	l->v = NULL;
	l->n = 0;
	l->n_dup = 0;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* One line, without its line end: "msgnum uidl" with optional blanks. */
static int parse_line(const char *p, size_t len, size_t lineno, struct pop3_entry *e,
		      bool *empty_r, char *why, size_t whylen)
{
	size_t i = 0, start;
	uint64_t num = 0;

	*empty_r = false;
	while (i < len && is_blank(p[i]))
		i++;
	if (i == len) {
		*empty_r = true;
		return 0;
	}
	start = i;
	while (i < len && p[i] >= '0' && p[i] <= '9') {
		num = num * 10 + (uint64_t)(p[i] - '0');
		if (num > UINT32_MAX) {
			set_why(why, whylen, "line %zu: message number too large", lineno);
			return -EINVAL;
		}
		i++;
	}
	if (i == start || i == len || !is_blank(p[i])) {
		set_why(why, whylen, "line %zu: expected \"number uidl\"", lineno);
		return -EINVAL;
	}
	if (num == 0) {
		set_why(why, whylen, "line %zu: message number 0", lineno);
		return -EINVAL;
	}
	while (i < len && is_blank(p[i]))
		i++;
	start = i;
	while (i < len && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
		i++;
	if (i == start) {
		set_why(why, whylen, "line %zu: no uidl after message number %" PRIu64, lineno, num);
		return -EINVAL;
	}
	if (i - start > POP3_UIDL_MAX) {
		set_why(why, whylen, "line %zu: uidl longer than %d bytes", lineno, POP3_UIDL_MAX);
		return -EINVAL;
	}
	size_t end = i;
	while (i < len && is_blank(p[i]))
		i++;
	if (i != len) {
		set_why(why, whylen, "line %zu: unexpected %s after the uidl", lineno,
			end == i ? "byte" : "text");
		return -EINVAL;
	}
	e->msgnum = (uint32_t)num;
	e->size = POP3_SIZE_UNKNOWN;
	e->uidl = strndup(p + start, end - start);
	return e->uidl ? 0 : -ENOMEM;
}

/* For finding repeats: entries sorted by key, ties in listing order. */
struct dup_key {
	const struct pop3_entry *e;
	size_t pos;
};

static int cmp_uidl(const void *a, const void *b)
{
	const struct dup_key *x = a, *y = b;
	int c = strcmp(x->e->uidl, y->e->uidl);

	return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_num(const void *a, const void *b)
{
	const struct dup_key *x = a, *y = b;

	if (x->e->msgnum != y->e->msgnum)
		return x->e->msgnum < y->e->msgnum ? -1 : 1;
	return (x->pos > y->pos) - (x->pos < y->pos);
}

int pop3_uidl_parse(const char *p, size_t len, struct pop3_listing *r, char *why,
		    size_t whylen)
{
	struct pop3_entry *v = NULL;
	size_t n = 0, cap = 0, lineno = 0, pos = 0;
	struct dup_key *keys = NULL;
	bool *drop = NULL;
	int rc = 0;

	memset(r, 0, sizeof(*r));
	set_why(why, whylen, "%s", "");
	while (pos < len) {
		const char *nl = memchr(p + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - p) : len;
		size_t l = end - pos;
		struct pop3_entry e;
		bool empty;

		lineno++;
		if (l && p[pos + l - 1] == '\r')
			l--;
		rc = parse_line(p + pos, l, lineno, &e, &empty, why, whylen);
		if (rc < 0)
			goto fail;
		pos = nl ? end + 1 : len;
		if (empty)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct pop3_entry *nv = realloc(v, nc * sizeof(*nv));

			if (!nv) {
				free(e.uidl);
				rc = -ENOMEM;
				goto fail;
			}
			v = nv;
			cap = nc;
		}
		v[n++] = e;
	}
	if (n == 0)
		return 0;

	keys = malloc(n * sizeof(*keys));
	drop = calloc(n, sizeof(*drop));
	if (!keys || !drop) {
		rc = -ENOMEM;
		goto fail;
	}
	/* A message number twice cannot be retrieved unambiguously: garbage. */
	for (size_t i = 0; i < n; i++)
		keys[i] = (struct dup_key){ &v[i], i };
	qsort(keys, n, sizeof(*keys), cmp_num);
	for (size_t i = 1; i < n; i++)
		if (keys[i].e->msgnum == keys[i - 1].e->msgnum) {
			set_why(why, whylen, "message number %" PRIu32 " listed twice",
				keys[i].e->msgnum);
			rc = -EINVAL;
			goto fail;
		}
	/* A UIDL twice: keep the first, count the rest (the listing is then
	 * no proof of anything, which the caller decides). */
	qsort(keys, n, sizeof(*keys), cmp_uidl);
	for (size_t i = 1; i < n; i++)
		if (strcmp(keys[i].e->uidl, keys[i - 1].e->uidl) == 0)
			drop[keys[i].pos] = true;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (drop[i]) {
			free(v[i].uidl);
			r->n_dup++;
		} else {
			v[k++] = v[i];
		}
	}
	free(keys);
	free(drop);
	r->v = v;
	r->n = k;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		free(v[i].uidl);
	free(v);
	free(keys);
	free(drop);
	r->n_dup = 0;
	if (rc == -ENOMEM)
		set_why(why, whylen, "out of memory");
	return rc;
}

int pop3_stat_parse(const char *line, uint32_t *count_r, uint64_t *size_r)
{
	const char *p = line;
	char *end;
	unsigned long long c, s;

	if (strncmp(p, "+OK", 3) != 0 || (p[3] != ' ' && p[3] != '\t'))
		return -EINVAL;
	p += 3;
	while (is_blank(*p))
		p++;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	errno = 0;
	c = strtoull(p, &end, 10);
	if (errno || c > UINT32_MAX || !is_blank(*end))
		return -EINVAL;
	p = end;
	while (is_blank(*p))
		p++;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	s = strtoull(p, &end, 10);
	if (errno || (*end && *end != '\r' && *end != '\n' && !is_blank(*end)))
		return -EINVAL;
	*count_r = (uint32_t)c;
	*size_r = (uint64_t)s;
	return 0;
}


struct num_size {
	uint32_t msgnum;
	uint64_t size;
};

static int cmp_num_size(const void *a, const void *b)
{
	const struct num_size *x = a, *y = b;

	return (x->msgnum > y->msgnum) - (x->msgnum < y->msgnum);
}

/* "msgnum size" has the shape of "msgnum uidl": the same line parser, then
 * the second field must be a number. */
int pop3_list_parse(const char *p, size_t len, struct pop3_listing *l, char *why,
		    size_t whylen)
{
	struct num_size *v = NULL;
	size_t n = 0, cap = 0, lineno = 0, pos = 0;
	int rc = 0;

	set_why(why, whylen, "%s", "");
	while (pos < len) {
		const char *nl = memchr(p + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - p) : len;
		size_t ll = end - pos;
		struct pop3_entry e;
		bool empty;
		uint64_t size = 0;

		lineno++;
		if (ll && p[pos + ll - 1] == '\r')
			ll--;
		rc = parse_line(p + pos, ll, lineno, &e, &empty, why, whylen);
		pos = nl ? end + 1 : len;
		if (rc < 0)
			goto out;
		if (empty)
			continue;
		for (const char *d = e.uidl; *d && rc == 0; d++) {
			uint64_t digit = (uint64_t)(*d - '0');

			if (*d < '0' || *d > '9' || size > (UINT64_MAX - digit) / 10)
				rc = -EINVAL;
			else
				size = size * 10 + digit;
		}
		free(e.uidl);
		if (rc < 0 || size == POP3_SIZE_UNKNOWN) {
			set_why(why, whylen, "line %zu: expected \"number size\"", lineno);
			rc = -EINVAL;
			goto out;
		}
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct num_size *nv = realloc(v, nc * sizeof(*nv));

			if (!nv) {
				rc = -ENOMEM;
				set_why(why, whylen, "out of memory");
				goto out;
			}
			v = nv;
			cap = nc;
		}
		v[n++] = (struct num_size){ e.msgnum, size };
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_num_size);
	for (size_t i = 1; i < n; i++)
		if (v[i].msgnum == v[i - 1].msgnum) {
			set_why(why, whylen, "message number %" PRIu32 " listed twice", v[i].msgnum);
			rc = -EINVAL;
			goto out;
		}
	for (size_t i = 0; i < l->n; i++) {
		struct num_size key = { l->v[i].msgnum, 0 };
		const struct num_size *hit = n ? bsearch(&key, v, n, sizeof(*v), cmp_num_size) : NULL;

		if (hit)
			l->v[i].size = hit->size;
	}
out:
	free(v);
	return rc;
}

/* ---- dot-stuffing ---- */

enum {
	UNDOT_LINE,     /* at the start of a line */
	UNDOT_MID,      /* within a line */
	UNDOT_CR,       /* within a line, after a CR */
	UNDOT_DOT,      /* a "." began the line (not passed on) */
	UNDOT_DOTCR,    /* ".\r" began the line */
};

void pop3_undot_init(struct pop3_undot *u)
{
	u->state = UNDOT_LINE;
	u->done = false;
}

/* Bytes pass through in runs; only a leading dot is held back, so a run
 * is cut there. */
ssize_t pop3_undot_feed(struct pop3_undot *u, const char *p, size_t n,
			int (*write)(void *ctx, const void *p, size_t n), void *ctx)
{
	size_t i = 0, run = 0;

	while (i < n && !u->done) {
		char c = p[i];

		switch (u->state) {
		case UNDOT_LINE:
			if (c == '.') {
				if (i > run && write(ctx, p + run, i - run) != 0)
					return -1;
				run = ++i;
				u->state = UNDOT_DOT;
			} else {
				u->state = UNDOT_MID;
			}
			break;
		case UNDOT_DOT:
			if (c == '\r') {
				u->state = UNDOT_DOTCR;
				i++;
			} else {
				u->state = UNDOT_MID;
			}
			break;
		case UNDOT_DOTCR:
			if (c == '\n') {
				u->done = true;      /* nothing held since the dot */
				return (ssize_t)(i + 1);
			}
			/* ".\r" and more: the CR belongs to the line. Held at the
			 * end of the last piece, it goes out now. */
			if (i == 0 && write(ctx, "\r", 1) != 0)
				return -1;
			u->state = UNDOT_CR;
			break;
		case UNDOT_CR:
			if (c == '\n') {
				u->state = UNDOT_LINE;
				i++;
			} else {
				u->state = UNDOT_MID;
			}
			break;
		default: {
			const char *cr = memchr(p + i, '\r', n - i);

			if (cr) {
				i = (size_t)(cr - p) + 1;
				u->state = UNDOT_CR;
			} else {
				i = n;
			}
		}
		}
	}
	/* In UNDOT_DOTCR the CR just read (the last byte) is held back: it
	 * may end the body. */
	size_t end = u->state == UNDOT_DOTCR ? n - 1 : n;
	if (end > run && write(ctx, p + run, end - run) != 0)
		return -1;
	return (ssize_t)n;
}

/* ---- the session ---- */

struct pop3 {
	struct conn *conn;          /* owned */
	char label[160];            /* "alice/isp" */
	int timeout;
	bool pipelining;            /* PIPELINING announced (RFC 2449) */
	bool listing_sent;          /* UIDL and LIST went out behind STAT */
	bool listed;                /* pop3_uidl ran */
	bool retrieved;             /* a RETR went out: RSET matters */
	bool broken;                /* cut or failed: no more commands, no RSET */
	/* while libcurl logs in: the CAPA answer being read */
	bool in_list;
	bool list_pipelining;
	char *rbuf;                 /* owned: bytes read and not yet used */
	size_t rpos, rlen;
	char line[POP3_LINE_MAX];   /* the last status line, without its line end */
	char error[1024];
};

#define RBUF_SIZE (64u << 10)

static void set_error(struct pop3 *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(struct pop3 *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
}

/* The session is over: nothing more is sent, no QUIT. */
static void cut(struct pop3 *s)
{
	if (!s->broken && s->conn)
		conn_cut(s->conn);
	s->broken = true;
}

/* Printable, for a message: the server's line may hold anything. */
static const char *shown(struct pop3 *s)
{
	for (char *p = s->line; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (strlen(s->line) > 200)
		strcpy(s->line + 197, "...");
	return s->line;
}

/* A read or write failed during what: says why, cuts, and tells how bad. */
static enum fetch_status io_failed(struct pop3 *s, ssize_t got, const char *what)
{
	cut(s);
	if (got == 0) {
		set_error(s, "%s: the POP3 server closed the connection during %s; its answer is "
			  "incomplete, so it is not used", s->label, what);
		return FETCH_ACCOUNT_BAD;
	}
	if (conn_cancelled(s->conn)) {
		set_error(s, "%s: %s stopped", s->label, what);
		return FETCH_STOPPED;
	}
	if (conn_timed_out(s->conn) && strncmp(conn_error(s->conn), "no data", 7) == 0)
		set_error(s, "%s: the POP3 server sent nothing for %d s during %s", s->label,
			  s->timeout, what);
	else
		set_error(s, "%s: connection to the POP3 server lost during %s: %s", s->label, what,
			  conn_error(s->conn));
	return FETCH_ACCOUNT_BAD;
}

/* More bytes into rbuf (which must be used up): >0, or 0/-1 as conn_read. */
static ssize_t fill(struct pop3 *s)
{
	ssize_t got = conn_read(s->conn, s->rbuf, RBUF_SIZE);

	s->rpos = 0;
	s->rlen = got > 0 ? (size_t)got : 0;
	return got;
}

/* One status line into s->line. FETCH_OK, or the failure (session cut). */
static enum fetch_status read_line(struct pop3 *s, const char *what)
{
	size_t k = 0;

	for (;;) {
		if (s->rpos == s->rlen) {
			ssize_t got = fill(s);

			if (got <= 0)
				return io_failed(s, got, what);
		}
		const char *p = s->rbuf + s->rpos;
		size_t avail = s->rlen - s->rpos;
		const char *nl = memchr(p, '\n', avail);
		size_t take = nl ? (size_t)(nl - p) : avail;

		if (k + take >= sizeof(s->line)) {
			cut(s);
			set_error(s, "%s: the POP3 server sent a line longer than %u bytes during %s",
				  s->label, POP3_LINE_MAX, what);
			return FETCH_ACCOUNT_BAD;
		}
		memcpy(s->line + k, p, take);
		k += take;
		s->rpos += take + (nl ? 1 : 0);
		if (nl)
			break;
	}
	if (k && s->line[k - 1] == '\r')
		k--;
	s->line[k] = '\0';
	/* A NUL would end the line early for the parsers: it is no text. */
	for (char *z = memchr(s->line, '\0', k); z; z = memchr(z, '\0', k - (size_t)(z - s->line)))
		*z = '?';
	return FETCH_OK;
}

static bool is_ok(const char *line)
{
	return strncmp(line, "+OK", 3) == 0 && (line[3] == '\0' || line[3] == ' ' || line[3] == '\t');
}

/* The status line of an answer: FETCH_OK for +OK; the server's -ERR is
 * FETCH_FOLDER_BAD ("refused what"), anything else the connection's. */
static enum fetch_status read_status(struct pop3 *s, const char *what)
{
	enum fetch_status st = read_line(s, what);

	if (st != FETCH_OK)
		return st;
	if (is_ok(s->line))
		return FETCH_OK;
	cut(s);
	if (strncmp(s->line, "-ERR", 4) == 0) {
		set_error(s, "%s: the POP3 server refused %s (%s)", s->label, what, shown(s));
		return FETCH_FOLDER_BAD;
	}
	set_error(s, "%s: the POP3 server's answer to %s is not understood (%s)", s->label, what,
		  shown(s));
	return FETCH_ACCOUNT_BAD;
}

/* The body of a multi-line answer, unstuffed, into write; strict about
 * the terminating line. A write failure is FETCH_STOPPED. */
static enum fetch_status read_body(struct pop3 *s, const char *what,
				   int (*write)(void *, const void *, size_t), void *ctx)
{
	struct pop3_undot u;

	pop3_undot_init(&u);
	while (!u.done) {
		if (s->rpos == s->rlen) {
			ssize_t got = fill(s);

			if (got <= 0)
				return io_failed(s, got, what);
		}
		ssize_t used = pop3_undot_feed(&u, s->rbuf + s->rpos, s->rlen - s->rpos, write, ctx);

		if (used < 0) {
			cut(s);
			set_error(s, "%s: %s stopped", s->label, what);
			return FETCH_STOPPED;
		}
		s->rpos += (size_t)used;
	}
	return FETCH_OK;
}

static enum fetch_status send_cmds(struct pop3 *s, const char *cmds, const char *what)
{
	if (conn_write(s->conn, cmds, strlen(cmds)) == 0)
		return FETCH_OK;
	return io_failed(s, -1, what);
}

/* CAPA's answer as libcurl logs in: the last capability list wins (after
 * STLS libcurl asks again, and only that one is protected by TLS). */
static void on_login_line(void *ctx, const char *line, size_t n)
{
	struct pop3 *s = ctx;

	if (n >= 3 && memcmp(line, "+OK", 3) == 0) {
		s->in_list = true;
		s->list_pipelining = false;
	} else if (n == 1 && line[0] == '.' && s->in_list) {
		s->in_list = false;
		s->pipelining = s->list_pipelining;
	} else if (s->in_list && n == 10 && strncasecmp(line, "PIPELINING", 10) == 0) {
		s->list_pipelining = true;
	}
}

static void url_for(const struct account_settings *a, char *out, size_t outlen)
{
	const char *scheme = a->proto == PROTO_POP3S ? "pop3s" : "pop3";

	if (a->port)
		snprintf(out, outlen, "%s://%s:%d/", scheme, a->host, a->port);
	else
		snprintf(out, outlen, "%s://%s/", scheme, a->host);
}

enum fetch_status pop3_open(const struct account_settings *a, const char *secret,
			    bool xoauth2, int cancel_fd, struct pop3 **r, uint32_t *count_r,
			    enum fetch_retry *retry_r, struct buf *err)
{
	struct pop3 *s = calloc(1, sizeof(*s));
	char url[600];
	uint64_t size;
	enum fetch_status st;

	*r = NULL;
	*count_r = 0;
	*retry_r = RETRY_LATER;
	if (!s || !(s->rbuf = malloc(RBUF_SIZE))) {
		free(s);
		buf_printf(err, "%s/%s: out of memory", a->user, a->name);
		return FETCH_LOCAL_BAD;
	}
	s->timeout = a->timeout > 0 ? a->timeout : 60;
	snprintf(s->label, sizeof(s->label), "%s/%s", a->user, a->name);
	url_for(a, url, sizeof(url));

	struct conn_opts co = {
		.url = url,
		.login = a->login,
		.secret = secret,
		.xoauth2 = xoauth2,
		.tls_off = a->tls_off,
		.ca_file = a->ca_file,
		.timeout = s->timeout,
		.label = s->label,
		.cancel_fd = cancel_fd,
		.login_line = on_login_line,
		.login_line_ctx = s,
	};
	st = conn_open(&co, &s->conn, retry_r, err);
	if (st != FETCH_OK) {
		free(s->rbuf);
		free(s);
		return st;
	}
	/* One round trip for the three when the server pipelines. */
	s->listing_sent = s->pipelining;
	st = send_cmds(s, s->pipelining ? "STAT\r\nUIDL\r\nLIST\r\n" : "STAT\r\n", "STAT");
	if (st == FETCH_OK)
		st = read_line(s, "STAT");
	if (st == FETCH_OK && pop3_stat_parse(s->line, count_r, &size) < 0) {
		set_error(s, "%s: the POP3 server's answer to STAT is not understood (%s)", s->label,
			  shown(s));
		st = FETCH_ACCOUNT_BAD;
	}
	if (st != FETCH_OK) {
		buf_printf(err, "%s", s->error);
		pop3_close(&s);
		return st == FETCH_STOPPED ? st : FETCH_ACCOUNT_BAD;
	}
	*r = s;
	return FETCH_OK;
}

void pop3_close(struct pop3 **sp)
{
	struct pop3 *s = *sp;

	if (!s)
		return;
	/* Answers still owed (a listing never read) would have to be drained
	 * first: cutting is as good, nothing was retrieved. */
	if (s->conn && s->listing_sent && !s->listed)
		cut(s);
	/* RSET forgets what this session retrieved, so QUIT marks nothing
	 * \Seen. After a RETR, QUIT goes only once RSET's +OK is in (a
	 * refused RSET cuts instead); with nothing retrieved there is nothing
	 * to mark, and a pipelining server gets both at once. */
	if (s->conn && !s->broken) {
		enum fetch_status st;

		if (s->pipelining && !s->retrieved) {
			st = send_cmds(s, "RSET\r\nQUIT\r\n", "RSET");
			if (st == FETCH_OK)
				st = read_status(s, "RSET");
			if (st == FETCH_OK)
				read_status(s, "QUIT");
		} else {
			st = send_cmds(s, "RSET\r\n", "RSET");
			if (st == FETCH_OK)
				st = read_status(s, "RSET");
			if (st == FETCH_OK && send_cmds(s, "QUIT\r\n", "QUIT") == FETCH_OK)
				read_status(s, "QUIT");
			else if (st != FETCH_OK)
				log_warn("%s; the session was cut without QUIT, so the server marks "
					 "nothing seen", s->error);
		}
	}
	conn_close(&s->conn);
	free(s->rbuf);
	free(s);
	*sp = NULL;
}

const char *pop3_error(const struct pop3 *s)
{
	return s->error;
}

bool pop3_pipelining(const struct pop3 *s)
{
	return s->pipelining;
}

struct collect {
	struct buf *b;   /* borrowed */
	int rc;          /* buf_append's failure */
};

static int collect(void *ctx, const void *p, size_t n)
{
	struct collect *c = ctx;

	c->rc = buf_append(c->b, p, n);
	return c->rc < 0 ? -1 : 0;
}

/* A listing's answer into b (at most POP3_LISTING_MAX bytes). *refused_r:
 * the server answered -ERR (the session goes on). */
static enum fetch_status read_listing(struct pop3 *s, const char *what, struct buf *b,
				      bool *refused_r)
{
	enum fetch_status st;

	*refused_r = false;
	if (!s->listing_sent && (st = send_cmds(s, what[0] == 'U' ? "UIDL\r\n" : "LIST\r\n",
						what)) != FETCH_OK)
		return st;
	st = read_line(s, what);
	if (st != FETCH_OK)
		return st;
	if (strncmp(s->line, "-ERR", 4) == 0) {
		*refused_r = true;
		return FETCH_OK;
	}
	if (!is_ok(s->line)) {
		cut(s);
		set_error(s, "%s: the POP3 server's answer to %s is not understood (%s)", s->label,
			  what, shown(s));
		return FETCH_ACCOUNT_BAD;
	}
	struct collect c = { b, 0 };

	st = read_body(s, what, collect, &c);
	if (st == FETCH_STOPPED && c.rc == -E2BIG) {
		set_error(s, "%s: the %s listing is larger than %u MiB", s->label, what,
			  POP3_LISTING_MAX >> 20);
		return FETCH_FOLDER_BAD;
	}
	if (st == FETCH_STOPPED && c.rc < 0) {
		set_error(s, "%s: out of memory", s->label);
		return FETCH_LOCAL_BAD;
	}
	return st;
}

enum fetch_status pop3_uidl(struct pop3 *s, struct pop3_listing *r)
{
	struct buf b = BUF_INIT(POP3_LISTING_MAX);
	char why[200];
	enum fetch_status st;
	bool refused;
	int prc;

	memset(r, 0, sizeof(*r));
	if (s->broken || s->listed) {
		set_error(s, "%s: the POP3 session is closed", s->label);
		return FETCH_ACCOUNT_BAD;
	}
	st = read_listing(s, "UIDL", &b, &refused);
	s->listed = true;
	if (st == FETCH_OK && refused) {
		cut(s);
		set_error(s, "%s: the POP3 server refused UIDL (%s)", s->label, shown(s));
		st = FETCH_FOLDER_BAD;
	}
	if (st == FETCH_OK) {
		prc = pop3_uidl_parse(b.data ? b.data : "", b.len, r, why, sizeof(why));
		if (prc == -ENOMEM) {
			set_error(s, "%s: out of memory", s->label);
			st = FETCH_LOCAL_BAD;
		} else if (prc < 0) {
			set_error(s, "%s: the POP3 server's UIDL listing is not understood (%s)",
				  s->label, why);
			st = FETCH_FOLDER_BAD;
		}
	}
	buf_reset(&b);
	/* LIST's sizes: for the pipeline window and to refuse a message
	 * larger than max_message_size before asking for it. A server that
	 * refuses LIST just leaves them unknown. */
	if (st == FETCH_OK)
		st = read_listing(s, "LIST", &b, &refused);
	if (st == FETCH_OK && !refused) {
		prc = pop3_list_parse(b.data ? b.data : "", b.len, r, why, sizeof(why));
		if (prc == -ENOMEM) {
			set_error(s, "%s: out of memory", s->label);
			st = FETCH_LOCAL_BAD;
		} else if (prc < 0) {
			set_error(s, "%s: the POP3 server's LIST answer is not understood (%s)",
				  s->label, why);
			st = FETCH_FOLDER_BAD;
		}
	}
	buf_release(&b);
	if (st != FETCH_OK) {
		cut(s);
		pop3_listing_release(r);
	}
	return st;
}

static uint64_t window_size(const struct pop3_entry *e)
{
	return e->size == POP3_SIZE_UNKNOWN ? POP3_WINDOW_GUESS : e->size;
}

/* Whether line is the answer to "UIDL n" for e: "+OK n uidl". */
static bool names(const char *line, const struct pop3_entry *e)
{
	struct pop3_entry got = { 0 };
	bool empty, same;

	if (!is_ok(line) || parse_line(line + 3, strlen(line + 3), 1, &got, &empty, NULL, 0) < 0)
		return false;
	same = !empty && got.msgnum == e->msgnum && strcmp(got.uidl, e->uidl) == 0;
	free(got.uidl);
	return same;
}

/* The answer to RETR of e (and, pipelined, to the UIDL after it). */
static enum fetch_status read_retr(struct pop3 *s, const struct pop3_entry *e, size_t i,
				   const struct pop3_sink *k, void *ctx)
{
	char what[40];
	enum fetch_status st;

	snprintf(what, sizeof(what), "RETR %" PRIu32, e->msgnum);
	st = read_status(s, what);
	if (st != FETCH_OK)
		return st;
	if (k->begin(ctx, i) != 0) {
		cut(s);
		set_error(s, "%s: %s stopped", s->label, what);
		return FETCH_STOPPED;
	}
	st = read_body(s, what, k->write, ctx);
	if (st == FETCH_OK && s->pipelining) {
		/* "+OK n uidl": the body just read is message n's */
		st = read_line(s, what);
		if (st == FETCH_OK && !names(s->line, e)) {
			cut(s);
			set_error(s, "%s: the POP3 server's answers are out of order: after %s came "
				  "\"%s\" instead of the answer to UIDL %" PRIu32 "; nothing of it "
				  "was kept", s->label, what, shown(s), e->msgnum);
			st = FETCH_ACCOUNT_BAD;
		}
	}
	if (st != FETCH_OK) {
		k->abort(ctx);
		return st;
	}
	if (k->end(ctx, i) != 0) {
		cut(s);
		set_error(s, "%s: %s stopped", s->label, what);
		return FETCH_STOPPED;
	}
	return FETCH_OK;
}

enum fetch_status pop3_fetch(struct pop3 *s, const struct pop3_entry *const *v, size_t n,
			     const struct pop3_sink *k, void *ctx)
{
	struct buf cmds = BUF_INIT(1u << 20);
	size_t sent = 0, done = 0;
	uint64_t in_flight = 0;
	enum fetch_status st = FETCH_OK;

	if (s->broken || !s->listed) {
		set_error(s, "%s: the POP3 session is closed", s->label);
		return FETCH_ACCOUNT_BAD;
	}
	while (done < n && st == FETCH_OK) {
		/* Top the window up: one command when not pipelining; else up
		 * to its count and bytes, but always at least one. */
		buf_reset(&cmds);
		while (sent < n &&
		       (sent == done ||
			(s->pipelining && sent - done < POP3_WINDOW_CMDS &&
			 in_flight + window_size(v[sent]) <= POP3_WINDOW_BYTES))) {
			uint32_t m = v[sent]->msgnum;

			if ((s->pipelining ? buf_printf(&cmds, "RETR %" PRIu32 "\r\nUIDL %" PRIu32 "\r\n", m, m)
					   : buf_printf(&cmds, "RETR %" PRIu32 "\r\n", m)) < 0) {
				st = FETCH_LOCAL_BAD;
				break;
			}
			in_flight += window_size(v[sent]);
			sent++;
		}
		if (st == FETCH_OK && cmds.len) {
			s->retrieved = true;
			if (conn_write(s->conn, cmds.data, cmds.len) < 0) {
				char what[40];

				snprintf(what, sizeof(what), "RETR %" PRIu32, v[done]->msgnum);
				st = io_failed(s, -1, what);
			}
		}
		if (st == FETCH_OK)
			st = read_retr(s, v[done], done, k, ctx);
		if (st == FETCH_OK)
			in_flight -= window_size(v[done++]);
	}
	buf_release(&cmds);
	if (st == FETCH_LOCAL_BAD) {
		cut(s);
		set_error(s, "%s: out of memory", s->label);
	}
	return st;
}
