/* conn: a libcurl CONNECT_ONLY session that maildisk then drives itself.
 *
 * libcurl performs the connection phase of imap://, imaps://, pop3:// and
 * pop3s:// URLs (TCP, TLS or STARTTLS per RFC 2595, greeting, CAPABILITY,
 * SASL or LOGIN) and returns; from there curl_easy_send/curl_easy_recv move
 * bytes through its TLS layer. The socket from CURLINFO_ACTIVESOCKET is used
 * only to poll(): writing to it directly would bypass TLS. */
#include "conn.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "../cache/child.h"

struct conn {
	CURL *curl;              /* owned */
	curl_socket_t sock;
	int timeout_ms;
	int cancel_fd;           /* borrowed, -1 for none */
	bool timed_out;          /* the last failure was the timeout */
	bool cancelled;          /* the last failure was cancel_fd */
	struct timespec window;  /* start of the current progress window */
	size_t window_bytes;     /* bytes received in it */
	struct timespec last;    /* when the last byte came, or the window began */
	char label[128];
	char error[CURL_ERROR_SIZE + 160];
	/* during conn_open only */
	const struct conn_opts *opts;   /* borrowed */
	char last_line[256];     /* the server's last line, printable, for messages */
	const char *ca_file;     /* borrowed: the CA file the login verifies with */
	const char *ca_path;     /* borrowed: libcurl's CA directory, NULL if none */
};

bool conn_fd_fired(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* libcurl's progress callback during the login: a stop must not wait for
 * a server that stalls its greeting. */
static int login_progress(void *fdp, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	return conn_fd_fired(*(const int *)fdp);
}

static int64_t ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void window_restart(struct conn *c)
{
	clock_gettime(CLOCK_MONOTONIC, &c->window);
	c->last = c->window;
	c->window_bytes = 0;
}

/* One certificate store per CA file, shared by every connection that
 * trusts it. libcurl gives each connection its own OpenSSL context with
 * its own store: the system's 140-odd roots cost about 0.8 MB per
 * connection for as long as it lasts, which a thousand IDLE connections
 * cannot afford. The stores live as long as the process. */
#define CA_STORES 16
static pthread_mutex_t ca_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char *key;                  /* owned: "file\npath" */
	X509_STORE *store;          /* owned: one reference */
} ca_stores[CA_STORES];         /* protected by ca_lock */

/* A new reference to the store for (file, path), or NULL (then libcurl's
 * own stays: it reports a bad file as it always did). */
static X509_STORE *ca_store_get(const char *file, const char *path)
{
	char key[2048];
	X509_STORE *st = NULL;
	size_t i;

	if (!file || snprintf(key, sizeof(key), "%s\n%s", file, path ? path : "") >= (int)sizeof(key))
		return NULL;
	pthread_mutex_lock(&ca_lock);
	for (i = 0; i < CA_STORES && ca_stores[i].key; i++)
		if (strcmp(ca_stores[i].key, key) == 0)
			break;
	if (i < CA_STORES && !ca_stores[i].key) {
		X509_STORE *n = X509_STORE_new();
		char *k = strdup(key);

		/* as libcurl sets its own up (lib/vtls/openssl.c) */
		if (n && k && X509_STORE_load_file(n, file) == 1 &&
		    (!path || X509_STORE_load_path(n, path) == 1) &&
		    X509_STORE_set_flags(n, X509_V_FLAG_TRUSTED_FIRST | X509_V_FLAG_PARTIAL_CHAIN) == 1) {
			ca_stores[i].key = k;
			ca_stores[i].store = n;
		} else {
			X509_STORE_free(n);
			free(k);
		}
	}
	if (i < CA_STORES && ca_stores[i].key && X509_STORE_up_ref(ca_stores[i].store) == 1)
		st = ca_stores[i].store;
	pthread_mutex_unlock(&ca_lock);
	return st;
}

/* CURLOPT_SSL_CTX_FUNCTION: swaps the context's store for the shared one
 * (SSL_CTX_set_cert_store takes the reference and frees the old store). */
static CURLcode share_ca_store(CURL *h, void *ssl_ctx, void *ud)
{
	const struct conn *c = ud;
	X509_STORE *st = ca_store_get(c->ca_file, c->ca_path);

	(void)h;
	if (st)
		SSL_CTX_set_cert_store(ssl_ctx, st);
	return CURLE_OK;
}

/* The connection's socket, close-on-exec from the start: other workers
 * start password commands at any moment. libcurl before 8.8 also gives
 * each handle a wakeup socketpair without close-on-exec, and no hook to add
 * it; it exists by now, so mark it here, while the connection is still
 * being made (a child closes such leftovers anyway: child_spawn). */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	(void)ud;
	(void)purpose;
	child_cloexec_all();
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* libcurl hands every line of the login dialogue to the header callback
 * (its pingpong layer counts response lines as headers). */
static size_t on_login_line(char *p, size_t size, size_t n, void *ud)
{
	struct conn *c = ud;
	size_t len = size * n, k = 0, l = len;

	while (l && (p[l - 1] == '\n' || p[l - 1] == '\r'))
		l--;
	for (size_t i = 0; i < l && k + 1 < sizeof(c->last_line); i++)
		c->last_line[k++] = (unsigned char)p[i] < 0x20 || p[i] == 0x7f ? '?' : p[i];
	c->last_line[k] = '\0';
	if (c->opts && c->opts->login_line)
		c->opts->login_line(c->opts->login_line_ctx, p, l);
	return len;
}

/* Maps libcurl's connection-phase failures to what the user should do.
 * last: the server's last line. POP3 messages name the protocol, and its
 * -ERR answer to the login or greeting says more than libcurl does. */
static enum fetch_retry describe_failure(CURLcode rc, const struct conn_opts *o,
					 const char *detail, const char *last, struct buf *err)
{
	const char *d = detail[0] ? detail : curl_easy_strerror(rc);
	bool pop3 = strncmp(o->url, "pop3", 4) == 0;
	const char *server = pop3 ? "the POP3 server" : "the server";

	switch (rc) {
	case CURLE_LOGIN_DENIED:
		if (pop3 && strncmp(last, "-ERR", 4) == 0)
			d = last;
		if (o->xoauth2)
			buf_printf(err, "%s: %s rejected the OAuth2 token, or offers "
				   "neither OAUTHBEARER nor XOAUTH2 (%s): check "
				   "oauth2_token_command and the login", o->label, server, d);
		else
			buf_printf(err, "%s: login refused by %s (%s): check login and "
				   "password", o->label, server, d);
		return RETRY_AFTER_FIX;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ISSUER_ERROR:
		buf_printf(err, "%s: the server's TLS certificate is not trusted (%s): "
			   "check the host name, or set ca_file to the CA that signed it",
			   o->label, d);
		return RETRY_AFTER_FIX;
	case CURLE_USE_SSL_FAILED:
		if (pop3) {
			buf_printf(err, "%s: the POP3 server does not offer STLS, so the login "
				   "would go in clear text: use a pop3s:// url (or tls = off on a "
				   "trusted network)", o->label);
			return RETRY_AFTER_FIX;
		}
		buf_printf(err, "%s: the server does not offer STARTTLS, so the login would go "
			   "in clear text: use an imaps:// or pop3s:// url (or tls = off on a "
			   "trusted network)", o->label);
		return RETRY_AFTER_FIX;
	case CURLE_COULDNT_RESOLVE_HOST:
		buf_printf(err, "%s: cannot resolve the server's name (%s)", o->label, d);
		return RETRY_LATER;
	case CURLE_COULDNT_CONNECT:
		buf_printf(err, "%s: cannot connect to the server (%s)", o->label, d);
		return RETRY_LATER;
	case CURLE_OPERATION_TIMEDOUT:
		buf_printf(err, "%s: the server did not answer within %d s (%s)",
			   o->label, o->timeout, d);
		return RETRY_LATER;
	case CURLE_ABORTED_BY_CALLBACK:
		buf_printf(err, "%s: stopped while logging in", o->label);
		return RETRY_LATER;
	case CURLE_WEIRD_SERVER_REPLY:
		if (pop3 && strncmp(last, "-ERR", 4) == 0) {
			buf_printf(err, "%s: the POP3 server refused the session (%s)", o->label,
				   last);
			return RETRY_LATER;
		}
		/* fall through */
	default:
		buf_printf(err, "%s: connection failed: %s", o->label, d);
		return RETRY_LATER;
	}
}

enum fetch_status conn_open(const struct conn_opts *o, struct conn **r,
			    enum fetch_retry *retry_r, struct buf *err)
{
	struct conn *c = calloc(1, sizeof(*c));
	CURLcode rc;
	curl_socket_t sock = CURL_SOCKET_BAD;
	bool plain = strncmp(o->url, "imap://", 7) == 0 || strncmp(o->url, "pop3://", 7) == 0;

	*r = NULL;
	*retry_r = RETRY_LATER;
	if (!c || !(c->curl = curl_easy_init())) {
		free(c);
		buf_printf(err, "%s: out of memory", o->label);
		return FETCH_LOCAL_BAD;
	}
	c->timeout_ms = o->timeout * 1000;
	c->cancel_fd = -1;
	snprintf(c->label, sizeof(c->label), "%s", o->label);

	CURL *h = c->curl;
	curl_easy_setopt(h, CURLOPT_URL, o->url);
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->error);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)o->timeout);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)o->timeout * 2);
	curl_easy_setopt(h, CURLOPT_USERNAME, o->login);
	if (o->xoauth2) {
		curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, o->secret);
		/* only the token mechanisms: without this libcurl falls back to
		 * PLAIN with an empty password when the server offers neither */
		curl_easy_setopt(h, CURLOPT_LOGIN_OPTIONS, "AUTH=OAUTHBEARER;AUTH=XOAUTH2");
	} else {
		curl_easy_setopt(h, CURLOPT_PASSWORD, o->secret);
	}
	/* POP3's AUTH takes the initial response on the command line (RFC
	 * 5034), saving a round trip; IMAP's needs the SASL-IR capability,
	 * which libcurl checks by itself. */
	if (strncmp(o->url, "pop3", 4) == 0)
		curl_easy_setopt(h, CURLOPT_SASL_IR, 1L);
	/* Plain URLs must upgrade with STARTTLS or fail: never fall back. */
	if (plain)
		curl_easy_setopt(h, CURLOPT_USE_SSL,
				 o->tls_off ? (long)CURLUSESSL_NONE : (long)CURLUSESSL_ALL);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (o->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
	/* libcurl's defaults, when the account names no CA file */
	char *ca_default = NULL, *ca_path = NULL;
	if (curl_easy_getinfo(h, CURLINFO_CAINFO, &ca_default) != CURLE_OK)
		ca_default = NULL;
	if (curl_easy_getinfo(h, CURLINFO_CAPATH, &ca_path) != CURLE_OK)
		ca_path = NULL;
	c->ca_file = o->ca_file ? o->ca_file : ca_default;
	c->ca_path = ca_path;
	if (!plain || !o->tls_off) {
		/* fails harmlessly with a TLS backend other than OpenSSL */
		if (curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, share_ca_store) == CURLE_OK)
			curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, c);
	}
	c->cancel_fd = o->cancel_fd;
	if (o->cancel_fd >= 0) {
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, login_progress);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, &c->cancel_fd);
	}

	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	c->opts = o;
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_login_line);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, c);

	rc = curl_easy_perform(h);
	c->opts = NULL;
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, NULL);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, NULL);
	if (rc == CURLE_OK)
		rc = curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &sock);
	if (rc != CURLE_OK || sock == CURL_SOCKET_BAD) {
		*retry_r = describe_failure(rc, o, c->error, c->last_line, err);
		curl_easy_cleanup(h);
		/* The password was handed to curl only; nothing of it is in err. */
		free(c);
		return FETCH_ACCOUNT_BAD;
	}
	c->sock = sock;
	c->error[0] = '\0';
	window_restart(c);
	*r = c;
	return FETCH_OK;
}

void conn_close(struct conn **cp)
{
	struct conn *c = *cp;

	if (!c)
		return;
	/* The goodbyes are the protocols' (imap.c's LOGOUT, pop3.c's QUIT).
	 * libcurl's cleanup sends its own and blocks for the answer: a round
	 * trip per connection (10,000 IDLE connections stopped one after
	 * another), and minutes on a server that stalls. */
	conn_cut(c);
	curl_easy_cleanup(c->curl);
	free(c);
	*cp = NULL;
}

void conn_cut(struct conn *c)
{
	shutdown(c->sock, SHUT_RDWR);
}

const char *conn_error(const struct conn *c)
{
	return c->error;
}

bool conn_timed_out(const struct conn *c)
{
	return c->timed_out;
}

bool conn_cancelled(const struct conn *c)
{
	return c->cancelled;
}

void conn_set_timeout(struct conn *c, int seconds)
{
	c->timeout_ms = seconds * 1000;
}

int conn_timeout_ms(const struct conn *c)
{
	return c->timeout_ms;
}

void conn_set_timeout_ms(struct conn *c, int ms)
{
	c->timeout_ms = ms;
}

void conn_set_cancel(struct conn *c, int fd)
{
	c->cancel_fd = fd;
}

/* Waits for the socket until the progress window ends; 1 ready, 0 timed
 * out or cancelled, -1 error. */
static int wait_sock(struct conn *c, short events)
{
	struct pollfd p[2] = { { .fd = c->sock, .events = events },
			       { .fd = c->cancel_fd, .events = POLLIN } };
	int n;

	c->timed_out = c->cancelled = false;
	do {
		int64_t left = c->timeout_ms - ms_since(&c->window);

		n = left > 0 ? poll(p, c->cancel_fd >= 0 ? 2 : 1, (int)left) : 0;
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		snprintf(c->error, sizeof(c->error), "poll: %s", strerror(errno));
		return -1;
	}
	if (c->cancel_fd >= 0 && (p[1].revents & POLLIN)) {
		c->cancelled = true;
		snprintf(c->error, sizeof(c->error), "cancelled");
		return 0;
	}
	if (n == 0) {
		c->timed_out = true;
		/* A burst that stopped dead reads as silence; a trickle as such. */
		if (ms_since(&c->last) >= c->timeout_ms / 10 * 9)
			snprintf(c->error, sizeof(c->error), "no data from the server for %d s",
				 c->timeout_ms / 1000);
		else
			snprintf(c->error, sizeof(c->error), "the server sent only %zu bytes in %d s",
				 c->window_bytes, c->timeout_ms / 1000);
		return 0;
	}
	return 1;
}

ssize_t conn_read(void *conn, void *p, size_t n)
{
	struct conn *c = conn;

	c->timed_out = c->cancelled = false;
	for (;;) {
		size_t got = 0;
		/* Try first: TLS may hold decrypted bytes the socket no longer shows. */
		CURLcode rc = curl_easy_recv(c->curl, p, n, &got);

		if (rc == CURLE_OK) {
			clock_gettime(CLOCK_MONOTONIC, &c->last);
			c->window_bytes += got;
			if (c->window_bytes >= CONN_MIN_PROGRESS)
				window_restart(c);
			return (ssize_t)got;   /* 0: the server closed the connection */
		}
		if (rc != CURLE_AGAIN) {
			snprintf(c->error, sizeof(c->error), "receive failed: %s",
				 curl_easy_strerror(rc));
			return -1;
		}
		if (wait_sock(c, POLLIN) <= 0)
			return -1;
	}
}

int conn_write(struct conn *c, const void *p, size_t n)
{
	const char *s = p;

	/* A command: the wait for its answer starts now. */
	window_restart(c);
	while (n > 0) {
		size_t sent = 0;
		CURLcode rc = curl_easy_send(c->curl, s, n, &sent);

		if (rc == CURLE_AGAIN) {
			if (wait_sock(c, POLLOUT) <= 0)
				return -1;
			continue;
		}
		if (rc != CURLE_OK) {
			snprintf(c->error, sizeof(c->error), "send failed: %s",
				 curl_easy_strerror(rc));
			return -1;
		}
		s += sent;
		n -= sent;
	}
	return 0;
}

int conn_socket(const struct conn *c)
{
	return (int)c->sock;
}

ssize_t conn_read_nowait(struct conn *c, void *p, size_t n)
{
	size_t got = 0;
	CURLcode rc = curl_easy_recv(c->curl, p, n, &got);

	if (rc == CURLE_OK)
		return (ssize_t)got;
	if (rc == CURLE_AGAIN)
		return CONN_AGAIN;
	snprintf(c->error, sizeof(c->error), "receive failed: %s", curl_easy_strerror(rc));
	return -1;
}

int conn_write_nowait(struct conn *c, const void *p, size_t n)
{
	size_t sent = 0;
	CURLcode rc = curl_easy_send(c->curl, p, n, &sent);

	if (rc == CURLE_OK && sent == n)
		return 0;
	snprintf(c->error, sizeof(c->error), "send failed: %s",
		 rc == CURLE_OK || rc == CURLE_AGAIN ? "the server does not take a short line"
						     : curl_easy_strerror(rc));
	return -1;
}
