/* pop3: a POP3 session through libcurl's own POP3 support (RFC 1939 with
 * UIDL; CAPA, RFC 2449; STLS, RFC 2595; SASL incl. XOAUTH2), and the parser
 * of the UIDL listing.
 *
 * One CURL easy handle per session: every request (STAT, UIDL, RETR n,
 * RSET) is a perform on the same handle, so libcurl keeps one connection
 * and logs in once. Message numbers are only valid within one POP3 session,
 * so a request that made libcurl connect again (the server dropped the idle
 * connection) fails instead of reading a message by a stale number.
 *
 * Read-only by construction: no DELE is ever sent, and pop3_close sends
 * RSET before libcurl's QUIT, because some servers (Dovecot) set \Seen on
 * every message retrieved once the session ends with QUIT.
 *
 * Errors: functions return enum fetch_status; the message for the user is
 * in pop3_error(). FETCH_FOLDER_BAD is the server's -ERR to a command;
 * FETCH_ACCOUNT_BAD a lost or timed-out connection. After either the
 * session is unusable: close it.
 *
 * Threads: a session belongs to the sync worker that opened it. The parser
 * functions are pure and may run on any thread. */
#ifndef MAILDISK_POP3_H
#define MAILDISK_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../cache/buf.h"
#include "../cache/settings.h"
#include "fetch_status.h"

/* RFC 1939 allows 1 to 70 characters (0x21-0x7E) in a UIDL; longer ones are
 * accepted up to this many bytes, beyond it the listing is an error. */
#define POP3_UIDL_MAX 255
/* The whole UIDL listing is held in memory to be parsed: about 80 bytes per
 * message, so this bounds a mailbox at several hundred thousand messages. */
#define POP3_LISTING_MAX (64u << 20)

/* ---- parsing ---- */

struct pop3_entry {
	uint32_t msgnum;    /* the message number in this session */
	char *uidl;         /* owned */
};

struct pop3_listing {
	struct pop3_entry *v;   /* owned: in listing order, each UIDL once */
	size_t n;
	size_t n_dup;           /* lines dropped: their UIDL was listed before */
};

/* Parses the body of a UIDL response (lines "msgnum uidl", the "+OK" line
 * and the terminating "." already removed, dot-stuffing undone). CRLF or
 * LF line ends; spaces and tabs around and between the fields; blank lines
 * skipped. A UIDL listed again is dropped and counted in n_dup (the first
 * one is kept). Returns 0; -EINVAL for anything else (a message number that
 * is 0, too large or listed twice, a UIDL with bytes outside 0x21-0x7E or
 * longer than POP3_UIDL_MAX, a missing or extra field), with why (may be
 * NULL) saying which line and what; -ENOMEM. *r is empty on error. */
int pop3_uidl_parse(const char *p, size_t len, struct pop3_listing *r, char *why,
		    size_t whylen);
void pop3_listing_release(struct pop3_listing *l);

/* Parses a STAT answer "+OK nn mm" (line end optional, anything after mm
 * ignored). 0, or -EINVAL. */
int pop3_stat_parse(const char *line, uint32_t *count_r, uint64_t *size_r);

/* ---- the session ---- */

struct pop3;

/* cancel_fd (-1: none), once readable, ends any request at once.
 * Connects, upgrades with STLS for pop3:// (refusing plaintext unless
 * tls_off), verifies the certificate (ca_file added as a trust anchor),
 * logs in with the password or the XOAUTH2 bearer token, and issues STAT
 * (libcurl connects only as part of a request). FETCH_OK with *count_r the
 * number of messages STAT announced; else FETCH_ACCOUNT_BAD (or
 * FETCH_LOCAL_BAD when out of memory) with err holding one line for the
 * user and retry_r saying whether trying again without a change can help.
 * The secret is handed to libcurl only; it never reaches err or a log. */
enum fetch_status pop3_open(const struct account_settings *a, const char *secret,
			    bool xoauth2, int cancel_fd, struct pop3 **r, uint32_t *count_r,
			    enum fetch_retry *retry_r, struct buf *err);
/* RSET when the session is healthy (nothing retrieved counts as seen),
 * then QUIT and close. Safe on NULL; clears *s. */
void pop3_close(struct pop3 **s);
const char *pop3_error(const struct pop3 *s);

/* UIDL for all messages, parsed. On FETCH_OK *r holds the listing (release
 * it); a malformed listing is FETCH_FOLDER_BAD with the reason in
 * pop3_error, and *r is empty. */
enum fetch_status pop3_uidl(struct pop3 *s, struct pop3_listing *r);

/* RETR msgnum: the message's bytes, dot-stuffing undone, go to write as
 * they arrive (never held whole in memory). write returns 0 to go on, or
 * non-zero to abort the transfer; pop3_retr then returns FETCH_STOPPED and
 * the session is unusable (the caller knows why it stopped). The bytes are
 * the message only when FETCH_OK is returned. */
enum fetch_status pop3_retr(struct pop3 *s, uint32_t msgnum,
			    int (*write)(void *ctx, const void *p, size_t n), void *ctx);

#endif
