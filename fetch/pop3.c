/* pop3: POP3 through libcurl (RFC 1939, RFC 2449, RFC 2595), and the UIDL
 * listing parser.
 *
 * Why libcurl's POP3 and not a CONNECT_ONLY session like IMAP: its POP3
 * transfer is byte-exact here (dot-stuffing undone, the CRLF before the
 * terminating "." kept as part of the message, as RFC 1939 section 3 says),
 * and POP3 has no bulk fetch to gain from driving the protocol ourselves.
 *
 * libcurl sends a request as a custom command (STAT, UIDL, RSET) on the
 * base URL or as RETR by URL ("pop3://host/5"); the status line of each
 * answer reaches the header callback, a multi-line body the write callback.
 * After the server's -ERR, libcurl closes the connection with QUIT, and
 * QUIT ends the session in the UPDATE state (RFC 1939 section 6), where
 * Dovecot marks every message retrieved in the session \Seen. So once
 * logged in, any failure cuts the connection (shutdown(2) on libcurl's
 * socket, which we know from the open/close socket callbacks) before
 * libcurl can say QUIT: a session that ends without QUIT changes nothing. */
#include "pop3.h"
#include "conn.h"
#include "../cache/child.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* ---- the session ---- */

struct pop3 {
	CURL *curl;                /* owned */
	char base[600];            /* "pop3s://host:port/" */
	char label[160];           /* "alice/isp" */
	int timeout;
	int cancel_fd;             /* borrowed, -1 for none */
	bool logged_in;            /* the first request succeeded */
	bool broken;               /* cut or failed: no more requests, no RSET */
	/* The connection libcurl holds for us, or CURL_SOCKET_BAD; maintained by
	 * the socket callbacks, so it never names a descriptor curl closed. */
	curl_socket_t sock;
	unsigned n_opened;         /* sockets libcurl opened: a change means a new session */
	unsigned opened_at_login;
	/* where the body of the current request goes */
	int (*write)(void *ctx, const void *p, size_t n);
	void *write_ctx;
	bool aborted;              /* write asked to stop */
	char line[256];            /* last status line from the server, made printable */
	char errbuf[CURL_ERROR_SIZE];
	char error[1024];
};

/* Ends the connection without QUIT (see the file comment). */
static void cut(struct pop3 *s)
{
	s->broken = true;
	if (s->logged_in && s->sock != CURL_SOCKET_BAD)
		shutdown(s->sock, SHUT_RDWR);
}

static curl_socket_t on_open(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct pop3 *s = ud;
	curl_socket_t fd;

	/* CLOEXEC: other workers fork password commands meanwhile. libcurl
	 * 7.88 also opens a wakeup socketpair per handle without it; that
	 * exists by now: mark it (conn.c says more). */
	child_cloexec_all();
	fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);

	(void)purpose;
	if (fd != CURL_SOCKET_BAD) {
		s->sock = fd;
		s->n_opened++;
	}
	return fd;
}

static int on_close(void *ud, curl_socket_t fd)
{
	struct pop3 *s = ud;

	if (fd == s->sock)
		s->sock = CURL_SOCKET_BAD;
	return close(fd);
}

/* A stop ends a request at once, whatever the server does. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct pop3 *s = ud;

	(void)dt, (void)dn, (void)ut, (void)un;
	return conn_fd_fired(s->cancel_fd);
}

static size_t on_line(char *p, size_t size, size_t n, void *ud)
{
	struct pop3 *s = ud;
	size_t len = size * n, k = 0;

	/* Kept for messages: printable, without the line end. */
	for (size_t i = 0; i < len && k + 1 < sizeof(s->line); i++) {
		if (p[i] == '\r' || p[i] == '\n')
			break;
		s->line[k++] = (unsigned char)p[i] < 0x20 || p[i] == 0x7f ? '?' : p[i];
	}
	s->line[k] = '\0';
	if (s->logged_in && len >= 4 && memcmp(p, "-ERR", 4) == 0)
		cut(s);      /* before libcurl answers the -ERR with QUIT */
	return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct pop3 *s = ud;
	size_t len = size * n;

	if (!s->write || s->write(s->write_ctx, p, len) != 0) {
		s->aborted = true;
		cut(s);
		return len ? 0 : 1;     /* anything but len is an error to libcurl */
	}
	return len;
}

/* One request on the session's handle. cmd NULL with a URL naming a message
 * is RETR; else cmd is sent as it is. */
static CURLcode request(struct pop3 *s, const char *url, const char *cmd, bool nobody,
			int (*write)(void *, const void *, size_t), void *ctx)
{
	CURL *h = s->curl;

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, cmd);
	curl_easy_setopt(h, CURLOPT_NOBODY, nobody ? 1L : 0L);
	s->write = write;
	s->write_ctx = ctx;
	s->aborted = false;
	s->line[0] = '\0';
	s->errbuf[0] = '\0';
	CURLcode rc = curl_easy_perform(h);
	s->write = NULL;
	s->write_ctx = NULL;
	return rc;
}

static void url_for(const struct account_settings *a, char *out, size_t outlen)
{
	const char *scheme = a->proto == PROTO_POP3S ? "pop3s" : "pop3";

	if (a->port)
		snprintf(out, outlen, "%s://%s:%d/", scheme, a->host, a->port);
	else
		snprintf(out, outlen, "%s://%s/", scheme, a->host);
}

/* The first request's failure (connection, TLS, login), for the user. */
static enum fetch_retry describe_open(struct pop3 *s, CURLcode rc, bool xoauth2,
				      struct buf *err)
{
	const char *d = s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc);

	switch (rc) {
	case CURLE_LOGIN_DENIED:
		if (strncmp(s->line, "-ERR", 4) == 0)
			d = s->line;      /* the server's own words say more than libcurl's */
		if (xoauth2)
			buf_printf(err, "%s: the POP3 server rejected the OAuth2 token, or offers "
				   "neither OAUTHBEARER nor XOAUTH2 (%s): check "
				   "oauth2_token_command and the login", s->label, d);
		else
			buf_printf(err, "%s: login refused by the POP3 server (%s): check login and "
				   "password", s->label, d);
		return RETRY_AFTER_FIX;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ISSUER_ERROR:
		buf_printf(err, "%s: the server's TLS certificate is not trusted (%s): check the "
			   "host name, or set ca_file to the CA that signed it", s->label, d);
		return RETRY_AFTER_FIX;
	case CURLE_USE_SSL_FAILED:
		buf_printf(err, "%s: the POP3 server does not offer STLS, so the login would go in "
			   "clear text: use a pop3s:// url (or tls = off on a trusted network)",
			   s->label);
		return RETRY_AFTER_FIX;
	case CURLE_COULDNT_RESOLVE_HOST:
		buf_printf(err, "%s: cannot resolve the server's name (%s)", s->label, d);
		return RETRY_LATER;
	case CURLE_COULDNT_CONNECT:
		buf_printf(err, "%s: cannot connect to the server (%s)", s->label, d);
		return RETRY_LATER;
	case CURLE_OPERATION_TIMEDOUT:
		buf_printf(err, "%s: the server did not answer within %d s (%s)", s->label,
			   s->timeout, d);
		return RETRY_LATER;
	case CURLE_WEIRD_SERVER_REPLY:
		if (strncmp(s->line, "-ERR", 4) == 0) {
			buf_printf(err, "%s: the POP3 server refused the session (%s)", s->label,
				   s->line);
			return RETRY_LATER;
		}
		/* fall through */
	default:
		buf_printf(err, "%s: connection failed: %s", s->label, d);
		return RETRY_LATER;
	}
}

/* A later request's failure: -ERR is the server refusing that command;
 * anything else is the connection. what: "UIDL", "RETR 5". */
static enum fetch_status describe_request(struct pop3 *s, CURLcode rc, const char *what)
{
	const char *d = s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc);

	cut(s);
	if (rc == CURLE_WEIRD_SERVER_REPLY && strncmp(s->line, "-ERR", 4) == 0) {
		snprintf(s->error, sizeof(s->error), "%s: the POP3 server refused %s (%s)",
			 s->label, what, s->line);
		return FETCH_FOLDER_BAD;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT)
		snprintf(s->error, sizeof(s->error), "%s: the POP3 server sent nothing for %d s "
			 "during %s", s->label, s->timeout, what);
	else
		snprintf(s->error, sizeof(s->error), "%s: connection to the POP3 server lost "
			 "during %s: %s", s->label, what, d);
	return FETCH_ACCOUNT_BAD;
}

/* After a request that libcurl reports as done: was it done on the
 * session's own connection, and is that connection still open? Message
 * numbers belong to one session, so a request that made libcurl log in
 * again (the server closed the idle connection) may not be trusted. And
 * libcurl 7.88 ends a POP3 transfer without error when the server hangs up
 * before the terminating "." (it takes the end of the stream for the end of
 * the body), so a connection the server closed means the answer may be cut
 * short. A server idle between commands sends nothing, so poll() with no
 * wait tells; the socket is never read or written here. */
static bool session_intact(struct pop3 *s, const char *what)
{
	struct pollfd p = { .fd = s->sock, .events = POLLRDHUP };

	if (s->n_opened != s->opened_at_login) {
		snprintf(s->error, sizeof(s->error), "%s: the connection to the POP3 server was "
			 "lost before %s and had to be opened again; message numbers of the earlier "
			 "listing are not valid in a new session, so this sync stops here",
			 s->label, what);
		cut(s);
		return false;
	}
	if (s->sock == CURL_SOCKET_BAD ||
	    (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))) {
		snprintf(s->error, sizeof(s->error), "%s: the POP3 server closed the connection "
			 "during %s; its answer may be incomplete, so it is not used", s->label, what);
		cut(s);
		return false;
	}
	return true;
}

enum fetch_status pop3_open(const struct account_settings *a, const char *secret,
			    bool xoauth2, int cancel_fd, struct pop3 **r, uint32_t *count_r,
			    enum fetch_retry *retry_r, struct buf *err)
{
	struct pop3 *s = calloc(1, sizeof(*s));
	uint64_t size;
	CURLcode rc;

	*r = NULL;
	*count_r = 0;
	*retry_r = RETRY_LATER;
	if (!s || !(s->curl = curl_easy_init())) {
		free(s);
		buf_printf(err, "%s/%s: out of memory", a->user, a->name);
		return FETCH_LOCAL_BAD;
	}
	s->sock = CURL_SOCKET_BAD;
	s->timeout = a->timeout > 0 ? a->timeout : 60;
	s->cancel_fd = cancel_fd;
	snprintf(s->label, sizeof(s->label), "%s/%s", a->user, a->name);
	url_for(a, s->base, sizeof(s->base));

	CURL *h = s->curl;
	/* Never CURLOPT_VERBOSE: its trace shows the login, password included. */
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "pop3,pop3s");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)s->timeout);
	curl_easy_setopt(h, CURLOPT_SERVER_RESPONSE_TIMEOUT, (long)s->timeout);
	/* A transfer that brings less than CONN_MIN_PROGRESS bytes in timeout
	 * seconds fails (no total limit: a large message on a slow link may
	 * take long, but never crawls or stands still). */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT,
			 (long)((CONN_MIN_PROGRESS + s->timeout - 1) / s->timeout));
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)s->timeout);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, s);
	curl_easy_setopt(h, CURLOPT_USERNAME, a->login);
	if (xoauth2) {
		curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, secret);
		/* only the token mechanisms: without this libcurl falls back to
		 * PLAIN with an empty password when the server offers neither */
		curl_easy_setopt(h, CURLOPT_LOGIN_OPTIONS, "AUTH=OAUTHBEARER;AUTH=XOAUTH2");
	} else {
		curl_easy_setopt(h, CURLOPT_PASSWORD, secret);
	}
	/* pop3:// must upgrade with STLS or fail: never fall back to plaintext. */
	if (a->proto == PROTO_POP3)
		curl_easy_setopt(h, CURLOPT_USE_SSL,
				 a->tls_off ? (long)CURLUSESSL_NONE : (long)CURLUSESSL_ALL);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (a->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, a->ca_file);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_open);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, s);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, on_close);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, s);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_line);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, s);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, s);

	/* libcurl connects and logs in as part of the first request. */
	rc = request(s, s->base, "STAT", true, NULL, NULL);
	if (rc != CURLE_OK) {
		*retry_r = describe_open(s, rc, xoauth2, err);
		s->broken = true;
		pop3_close(&s);
		return FETCH_ACCOUNT_BAD;
	}
	if (pop3_stat_parse(s->line, count_r, &size) < 0) {
		buf_printf(err, "%s: the POP3 server's answer to STAT is not understood (%s)",
			   s->label, s->line);
		pop3_close(&s);
		return FETCH_ACCOUNT_BAD;
	}
	curl_socket_t sock = CURL_SOCKET_BAD;
	if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &sock) == CURLE_OK &&
	    sock != CURL_SOCKET_BAD)
		s->sock = sock;
	s->logged_in = true;
	s->opened_at_login = s->n_opened;
	*r = s;
	return FETCH_OK;
}

void pop3_close(struct pop3 **sp)
{
	struct pop3 *s = *sp;

	if (!s)
		return;
	/* RSET forgets what this session retrieved, so the QUIT libcurl sends
	 * on cleanup marks nothing \Seen. If it fails, cut instead. */
	if (s->logged_in && !s->broken &&
	    (request(s, s->base, "RSET", true, NULL, NULL) != CURLE_OK ||
	     s->n_opened != s->opened_at_login))
		cut(s);
	curl_easy_cleanup(s->curl);
	free(s);
	*sp = NULL;
}

const char *pop3_error(const struct pop3 *s)
{
	return s->error;
}

static int collect(void *ctx, const void *p, size_t n)
{
	return buf_append(ctx, p, n) < 0 ? -1 : 0;
}

enum fetch_status pop3_uidl(struct pop3 *s, struct pop3_listing *r)
{
	struct buf b = BUF_INIT(POP3_LISTING_MAX);
	char why[200];
	CURLcode rc;
	int prc;

	memset(r, 0, sizeof(*r));
	if (s->broken) {
		snprintf(s->error, sizeof(s->error), "%s: the POP3 session is closed", s->label);
		return FETCH_ACCOUNT_BAD;
	}
	rc = request(s, s->base, "UIDL", false, collect, &b);
	if (rc != CURLE_OK) {
		enum fetch_status st;

		if (s->aborted) {
			snprintf(s->error, sizeof(s->error), "%s: the UIDL listing is larger than "
				 "%u MiB", s->label, POP3_LISTING_MAX >> 20);
			st = FETCH_FOLDER_BAD;
		} else {
			st = describe_request(s, rc, "UIDL");
		}
		buf_release(&b);
		return st;
	}
	if (!session_intact(s, "UIDL")) {
		buf_release(&b);
		return FETCH_ACCOUNT_BAD;
	}
	prc = pop3_uidl_parse(b.data ? b.data : "", b.len, r, why, sizeof(why));
	buf_release(&b);
	if (prc == -ENOMEM) {
		snprintf(s->error, sizeof(s->error), "%s: out of memory", s->label);
		return FETCH_LOCAL_BAD;
	}
	if (prc < 0) {
		snprintf(s->error, sizeof(s->error), "%s: the POP3 server's UIDL listing is not "
			 "understood (%s)", s->label, why);
		return FETCH_FOLDER_BAD;
	}
	return FETCH_OK;
}

enum fetch_status pop3_retr(struct pop3 *s, uint32_t msgnum,
			    int (*write)(void *ctx, const void *p, size_t n), void *ctx)
{
	char url[640], what[32];
	CURLcode rc;

	snprintf(what, sizeof(what), "RETR %" PRIu32, msgnum);
	if (s->broken) {
		snprintf(s->error, sizeof(s->error), "%s: the POP3 session is closed", s->label);
		return FETCH_ACCOUNT_BAD;
	}
	snprintf(url, sizeof(url), "%s%" PRIu32, s->base, msgnum);
	rc = request(s, url, NULL, false, write, ctx);
	if (s->aborted) {
		snprintf(s->error, sizeof(s->error), "%s: %s stopped", s->label, what);
		return FETCH_STOPPED;
	}
	if (rc != CURLE_OK)
		return describe_request(s, rc, what);
	return session_intact(s, what) ? FETCH_OK : FETCH_ACCOUNT_BAD;
}
