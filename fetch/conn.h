/* conn: one authenticated connection to a mail server, opened by libcurl
 * and then driven by maildisk itself.
 *
 * libcurl does DNS, TCP, TLS (or STARTTLS, RFC 2595) with certificate
 * verification, the greeting, CAPABILITY and authentication, with
 * CURLOPT_CONNECT_ONLY; after that the caller speaks the protocol over
 * conn_read/conn_write (curl_easy_recv/curl_easy_send). Why not libcurl's
 * own IMAP requests: docs/design.md, Transport.
 *
 * Threads: a conn belongs to the sync worker that opened it. */
#ifndef MAILDISK_CONN_H
#define MAILDISK_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "../cache/buf.h"
#include "fetch_status.h"

struct conn;

struct conn_opts {
	const char *url;        /* borrowed: "imaps://host:port/" */
	const char *login;      /* borrowed */
	const char *secret;     /* borrowed: password, or the bearer token when xoauth2 */
	bool xoauth2;
	bool tls_off;           /* plaintext allowed (imap:// without STARTTLS) */
	const char *ca_file;    /* borrowed, may be NULL */
	int timeout;            /* seconds without progress before an operation fails */
	const char *label;      /* borrowed: "alice/work", for messages */
	int cancel_fd;          /* borrowed, -1 for none: see conn_set_cancel; also ends the login */
	/* Optional: each line the server sends while libcurl logs in (the
	 * greeting, CAPA or CAPABILITY answers, ...), without its line end,
	 * for a caller that needs what libcurl does not report (POP3's
	 * PIPELINING). Hostile bytes: the callee bounds what it keeps. */
	void (*login_line)(void *ctx, const char *line, size_t n);
	void *login_line_ctx;   /* borrowed */
};

/* Progress: a command must bring at least this many bytes within each
 * timeout window, else it fails as timed out. One byte every 59 s keeps a
 * per-read timeout of 60 s happy forever; this does not. */
#define CONN_MIN_PROGRESS 1024

/* FETCH_OK, or FETCH_ACCOUNT_BAD with err describing the failure for a user
 * ("alice/work: login refused by 127.0.0.1: check the password") and
 * retry_r saying whether retrying can help. */
enum fetch_status conn_open(const struct conn_opts *o, struct conn **r,
			    enum fetch_retry *retry_r, struct buf *err);
/* Cuts the connection (conn_cut: no goodbye is sent here, nor waited
 * for) and frees it; sets *c to NULL. Safe on NULL. */
void conn_close(struct conn **c);

/* Blocks until some bytes arrive (up to n), the peer closes (0), or an
 * error or the timeout (-1, conn_error says which). The timeout counts from
 * the last write (a command), or from the last time CONN_MIN_PROGRESS bytes
 * had arrived since then: a trickle fails like silence. Has the signature
 * of struct imap_src's read, with the conn as ctx. */
ssize_t conn_read(void *conn, void *p, size_t n);
/* Writes all n bytes; 0 or -1 (conn_error). */
int conn_write(struct conn *c, const void *p, size_t n);
/* The last read/write failure, "" if none. */
const char *conn_error(const struct conn *c);
/* Whether the last failure was the timeout (no byte for that long). */
bool conn_timed_out(const struct conn *c);
/* Changes the timeout of later reads and writes. */
void conn_set_timeout(struct conn *c, int seconds);
int conn_timeout_ms(const struct conn *c);
void conn_set_timeout_ms(struct conn *c, int ms);
/* A file descriptor that, once readable, makes every wait fail at once
 * (shutdown of a thread blocked in IDLE); -1 for none. Borrowed. */
void conn_set_cancel(struct conn *c, int fd);
/* Whether the last failure was the cancel descriptor. */
bool conn_cancelled(const struct conn *c);
/* Ends the connection at once: nothing more is sent, not even a
 * protocol's goodbye (a POP3 session cut this way never reaches the
 * UPDATE state). Later reads and writes fail; conn_close still frees. */
void conn_cut(struct conn *c);
/* Whether fd (-1: never) is readable now: a cancel descriptor has fired. */
bool conn_fd_fired(int fd);

/* For an event loop that watches many connections from one thread (idle.c).
 * conn_socket: the descriptor to poll for readability; never read or write
 * it directly (TLS). conn_read_nowait: one receive that never waits: bytes
 * (> 0), 0 when the peer closed, CONN_AGAIN when nothing is there (TLS may
 * hold decrypted bytes the socket no longer shows: call it until
 * CONN_AGAIN), -1 on an error (conn_error). conn_write_nowait: sends all n
 * bytes at once or fails (-1, conn_error) without waiting; meant for a
 * short line on an otherwise quiet connection, which a partial send leaves
 * unusable (close it). The thread that owns the connection calls these. */
#define CONN_AGAIN (-2)
int conn_socket(const struct conn *c);
ssize_t conn_read_nowait(struct conn *c, void *p, size_t n);
int conn_write_nowait(struct conn *c, const void *p, size_t n);

#endif
