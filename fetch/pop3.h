/* pop3: a POP3 session (RFC 1939 with UIDL; CAPA and PIPELINING, RFC
 * 2449) over a conn.c connection, and the parsers of its answers.
 *
 * libcurl connects, upgrades with STLS (RFC 2595), verifies the certificate
 * and logs in (USER/PASS or SASL incl. XOAUTH2) with CURLOPT_CONNECT_ONLY;
 * from there this module speaks POP3 itself: STAT, UIDL and LIST once,
 * then RETR of the messages asked for. When the server announces
 * PIPELINING, a window of RETR commands is kept in flight (sized by count
 * and by the bytes LIST announced), each followed by "UIDL n", whose
 * answer proves that the message before it is the one asked for: POP3
 * answers carry no tag, and a server that drops or reorders an answer
 * would otherwise shift every message after it onto the wrong UIDL.
 * Without PIPELINING, one command at a time.
 *
 * Message numbers are valid within one session only, and a conn never
 * connects again, so no request can use a stale number.
 *
 * Read-only by construction: no DELE is ever sent, and pop3_close sends
 * RSET before QUIT, because some servers (Dovecot) set \Seen on every
 * message retrieved once the session ends with QUIT. A session that fails
 * is cut without QUIT: it never reaches the UPDATE state.
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
#include <sys/types.h>
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

#define POP3_SIZE_UNKNOWN UINT64_MAX

struct pop3_entry {
	uint32_t msgnum;    /* the message number in this session */
	char *uidl;         /* owned */
	uint64_t size;      /* what LIST says, or POP3_SIZE_UNKNOWN */
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

/* Parses the body of a LIST answer (lines "msgnum size", as for
 * pop3_uidl_parse) and sets the size of l's entries by message number
 * (entries LIST does not mention keep theirs). 0; -EINVAL for a malformed
 * line or a message number listed twice, with why (may be NULL); -ENOMEM.
 * l is unchanged on error. */
int pop3_list_parse(const char *p, size_t len, struct pop3_listing *l, char *why,
		    size_t whylen);

/* Undoes a multi-line answer's dot-stuffing (RFC 1939 section 3) as its
 * bytes arrive, in pieces of any size. Lines end in CRLF; a line that is
 * "." alone ends the answer, and the CRLF before it belongs to the body. */
struct pop3_undot {
	int state;
	bool done;          /* the terminating line was seen */
};

/* Starts a body: the next byte begins a line. */
void pop3_undot_init(struct pop3_undot *u);
/* Feeds p[0..n): the body's bytes go to write(ctx, ...), which returns 0
 * to go on. Returns the bytes consumed: all n, or fewer when the
 * terminating line ended within them (u->done; the rest is the next
 * answer); -1 when write failed. */
ssize_t pop3_undot_feed(struct pop3_undot *u, const char *p, size_t n,
			int (*write)(void *ctx, const void *p, size_t n), void *ctx);

/* Parses a STAT answer "+OK nn mm" (line end optional, anything after mm
 * ignored). 0, or -EINVAL. */
int pop3_stat_parse(const char *line, uint32_t *count_r, uint64_t *size_r);

/* ---- the session ---- */

struct pop3;

/* Connects, upgrades with STLS for pop3:// (refusing plaintext unless
 * tls_off), verifies the certificate (ca_file added as a trust anchor),
 * logs in with the password or the XOAUTH2 bearer token, and issues STAT
 * (with UIDL and LIST behind it when the server pipelines). cancel_fd (-1:
 * none), once readable, ends any wait at once. FETCH_OK with *count_r the
 * number of messages STAT announced; else FETCH_ACCOUNT_BAD (or
 * FETCH_LOCAL_BAD when out of memory) with err holding one line for the
 * user and retry_r saying whether trying again without a change can help.
 * The secret is handed to libcurl only; it never reaches err or a log. */
enum fetch_status pop3_open(const struct account_settings *a, const char *secret,
			    bool xoauth2, int cancel_fd, struct pop3 **r, uint32_t *count_r,
			    enum fetch_retry *retry_r, struct buf *err);
/* A healthy session ends with RSET (nothing retrieved counts as seen),
 * then QUIT; a failed one is cut without QUIT. Safe on NULL; clears *s. */
void pop3_close(struct pop3 **s);
const char *pop3_error(const struct pop3 *s);
/* Whether the server announced PIPELINING (RFC 2449). */
bool pop3_pipelining(const struct pop3 *s);

/* UIDL for all messages, parsed, with LIST's sizes (LIST refused: sizes
 * unknown). Once per session. On FETCH_OK *r holds the listing (release
 * it); a malformed listing is FETCH_FOLDER_BAD with the reason in
 * pop3_error, and *r is empty. */
enum fetch_status pop3_uidl(struct pop3 *s, struct pop3_listing *r);

/* Where pop3_fetch puts messages. Each returns 0 to go on; non-zero stops
 * the fetch (FETCH_STOPPED: the caller knows why). */
struct pop3_sink {
	int (*begin)(void *ctx, size_t i);               /* message v[i] starts */
	int (*write)(void *ctx, const void *p, size_t n);/* its bytes, unstuffed */
	int (*end)(void *ctx, size_t i);                 /* it arrived whole */
	void (*abort)(void *ctx);                        /* it did not: forget it */
};

/* RETR of v[0..n) (entries of this session's listing), in that order;
 * never held whole in memory. Messages arrive through k one after the
 * other; end is called only for a message that arrived whole and, when
 * pipelined, whose "UIDL n" answer named it. FETCH_OK when all arrived.
 * Otherwise the message in progress is aborted, the session is unusable,
 * and the status says why: FETCH_FOLDER_BAD the server's -ERR to a RETR,
 * FETCH_ACCOUNT_BAD the connection (lost, timed out, answers out of
 * order), FETCH_STOPPED the sink or the cancel descriptor. */
enum fetch_status pop3_fetch(struct pop3 *s, const struct pop3_entry *const *v, size_t n,
			     const struct pop3_sink *k, void *ctx);

/* The pipeline window: at most this many RETR in flight, and no more
 * than this many bytes announced by LIST (at least one command, whatever
 * its size; an unknown size counts as POP3_WINDOW_GUESS). 4 MiB covers the
 * bandwidth-delay product of 200 Mbit/s at 150 ms. */
#define POP3_WINDOW_CMDS 512
#define POP3_WINDOW_BYTES (4u << 20)
#define POP3_WINDOW_GUESS (64u << 10)
/* A status line longer than this is an error (RFC 2449 allows 512). */
#define POP3_LINE_MAX 4096

#endif
