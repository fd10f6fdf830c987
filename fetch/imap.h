/* imap: an IMAP4rev1 client session for syncing (RFC 3501/9051; CONDSTORE
 * and QRESYNC, RFC 7162; ESEARCH, RFC 4731).
 *
 * Read-only by construction: folders are opened with EXAMINE and bodies
 * fetched with BODY.PEEK[], so a sync never changes anything on the server
 * (not even \Seen). One command at a time; every command waits for its
 * tagged response, and untagged data seen on the way (EXISTS, VANISHED,
 * FETCH flag updates) is folded into the session state.
 *
 * Errors: functions return enum fetch_status; the message for the user is
 * in imap_error(). After FETCH_ACCOUNT_BAD the session is unusable (the
 * connection is in an unknown state): close it. FETCH_FOLDER_BAD (a NO or
 * BAD to a command) leaves the session usable for other folders.
 *
 * Threads: a session belongs to the sync worker that opened it. */
#ifndef MAILDISK_IMAP_H
#define MAILDISK_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../cache/settings.h"
#include "imap_parse.h"
#include "fetch_status.h"
#include "uidset.h"

struct imap;

/* Connects and authenticates as the account's user (conn.h), reads the
 * capabilities, and enables QRESYNC when offered. cancel_fd (-1: none)
 * ends the login and every later wait at once (conn_set_cancel). */
enum fetch_status imap_open(const struct account_settings *a, const char *secret,
			    bool xoauth2, int cancel_fd, struct imap **r, enum fetch_retry *retry_r,
			    struct buf *err);
/* Sends LOGOUT when the session is healthy, then closes. Safe on NULL. */
void imap_close(struct imap **s);
const char *imap_error(const struct imap *s);
/* Asks the server first when the session has sent no command yet. */
bool imap_has_cap(struct imap *s, const char *cap);
/* Whether the server said ENABLED QRESYNC. */
bool imap_qresync(const struct imap *s);

struct imap_mailbox {
	char *name;      /* owned: UTF-8, decoded from modified UTF-7 */
	char *raw;       /* owned: as the server spells it */
	char delim;      /* hierarchy delimiter, 0 if none */
	bool noselect;   /* \Noselect or \NonExistent: not a folder with messages */
};
void imap_mailboxes_free(struct imap_mailbox *m, size_t n);
/* LIST "" "*" (with LIST-STATUS and CONDSTORE, RETURN (STATUS ...), whose
 * answers imap_status_many then reuses). */
enum fetch_status imap_list(struct imap *s, struct imap_mailbox **r, size_t *n_r);

/* A folder's STATUS (RFC 3501 6.3.10; HIGHESTMODSEQ, RFC 7162). */
struct imap_status_row {
	bool valid;                 /* the server answered for this folder */
	uint32_t uidvalidity, uidnext, messages;
	uint64_t highestmodseq;     /* 0 without CONDSTORE */
};
/* The STATUS of each raw (modified UTF-7) name, rows[i] for raws[i]:
 * what LIST-STATUS already reported is reused, the rest is asked for in
 * pipelined STATUS commands (one round trip per 32 names). A folder the
 * server refuses has valid false; only a lost connection fails. */
enum fetch_status imap_status_many(struct imap *s, char *const *raws, size_t n,
				   struct imap_status_row *rows);

struct imap_folder_state {
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t exists;            /* latest EXISTS seen in this session */
	uint64_t highestmodseq;     /* 0 when the server has no CONDSTORE for it */
	bool nonexistent;           /* EXAMINE answered NO [NONEXISTENT] */
};
/* What changed in a folder since a known (UIDVALIDITY, HIGHESTMODSEQ), as
 * the server reports it (RFC 7162): expunged UIDs and changed flags. */
struct imap_flag_change {
	uint32_t uid;
	char *flags;                /* owned: "\\Seen \\Flagged", "" for none */
};
struct imap_changes {
	bool valid;                 /* the server answered for that UIDVALIDITY: the lists are complete */
	struct uidset vanished;     /* owned, normalized ranges: expunged since then (QRESYNC); never
				     * expanded, only intersected with the UIDs the index knows */
	struct imap_flag_change *flags;   /* owned: messages whose flags changed (or that are new) */
	size_t n_flags;
};
void imap_changes_release(struct imap_changes *c);

/* EXAMINE raw (modified UTF-7 name). FETCH_FOLDER_BAD on NO. When ch is
 * not NULL, since_uidvalidity and since_modseq are non-zero and the server
 * has QRESYNC, the EXAMINE asks for what changed since then (VANISHED
 * (EARLIER) and FETCH FLAGS), collected in *ch; ch->valid is true only when
 * the folder's UIDVALIDITY is still since_uidvalidity. list_from, when not
 * 0, sends the UID SEARCH for UIDs >= list_from in the same round trip;
 * imap_uid_list(s, list_from) then takes its answer. ahead_items: as
 * for imap_plan_examine, when the EXAMINE is sent here (the folder before
 * fetched nothing, or this is the first). */
enum fetch_status imap_examine(struct imap *s, const char *raw, uint32_t since_uidvalidity,
			       uint64_t since_modseq, uint32_t list_from, const char *ahead_items,
			       struct imap_folder_state *st, struct imap_changes *ch);
/* CONDSTORE without QRESYNC: flag changes since modseq
 * (UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE m)) into ch->flags. */
enum fetch_status imap_flag_changes(struct imap *s, uint64_t since_modseq,
				    struct imap_changes *ch);
/* The state as updated by untagged responses since EXAMINE. */
const struct imap_folder_state *imap_state(const struct imap *s);

/* The UIDs >= from (1: all) of the examined folder (UID SEARCH, or
 * ESEARCH when offered), sorted ascending. The caller frees *uids_r. A
 * complete answer only: any error is FETCH_FOLDER_BAD or worse and *uids_r
 * is NULL. The answer is kept as ranges until it is checked: more UIDs
 * than EXISTS, or UIDs at or beyond UIDNEXT (but for messages that arrived
 * during the session), are a protocol error (FETCH_FOLDER_BAD), so memory
 * and work are bounded by the folder, not by what the server writes. */
enum fetch_status imap_uid_list(struct imap *s, uint32_t from, uint32_t **uids_r, size_t *n_r);

/* One message as a FETCH response reported it. */
struct imap_fetched {
	uint32_t uid;
	uint32_t seq;
	uint64_t size;          /* RFC822.SIZE, 0 if not sent */
	int64_t internal_date;  /* unix time, 0 if not sent */
	const char *flags;      /* "\\Seen \\Flagged", "" if none, NULL if not sent */
	uint64_t modseq;        /* 0 if not sent */
	bool body;              /* BODY[] was streamed to the sink for this response */
	const char *header_value; /* BODY[HEADER.FIELDS (MESSAGE-ID)] raw text, or NULL */
};

/* What imap_fetch does with each response: bodies stream through sink
 * (struct imap_sink, key "BODY[]"); then message() is called once per FETCH
 * response with its attributes (also for unsolicited flag updates, where
 * body is false). message() returns 0 to go on, non-zero to stop (the
 * response stream is still read to the tagged end). */
struct imap_fetch_handler {
	struct imap_sink sink;
	int (*message)(void *ctx, const struct imap_fetched *m);
	void *ctx;
};

/* UID FETCH uidset with the given items (e.g. "(UID RFC822.SIZE
 * INTERNALDATE FLAGS BODY.PEEK[])"). last: the folder's last command, so
 * the EXAMINE planned with imap_plan_examine goes in the same round trip.
 * With imap_fetch_ahead, the answer of the FETCH sent ahead is read
 * instead (uidset unused). */
enum fetch_status imap_fetch(struct imap *s, const char *uidset, const char *items,
			     const struct imap_fetch_handler *h, bool last);

/* The folder to be examined next, with imap_examine's arguments: its
 * EXAMINE (and listing) is sent right after the next imap_fetch(..., last)
 * instead of a round trip later, and imap_examine with the same arguments
 * then takes its answer. Forgotten by any other imap_examine.
 * ahead_items (a first sync of that folder, with list_from): when the
 * server has SEARCHRES, a UID FETCH $ of these items (every UID the
 * listing found) goes too, and is not waited for, so the folder's bodies
 * follow the ones before on the link; imap_fetch_ahead then says so, once
 * imap_examine took that folder's answer. */
void imap_plan_examine(struct imap *s, const char *raw, uint32_t since_uidvalidity,
		       uint64_t since_modseq, uint32_t list_from, const char *ahead_items);
/* Whether the examined folder's UID FETCH $ went ahead: imap_fetch then
 * reads its answer (its uidset is not sent), once for the whole folder. */
bool imap_fetch_ahead(const struct imap *s);

/* IDLE (RFC 2177), driven by an event loop (idle.c).
 * imap_idle_enter sends IDLE on the examined folder (tag in tag_r) and waits
 * for the server's "+" (a refusal: FETCH_FOLDER_BAD); untagged responses
 * before it are read too (*changed_r: one of them reported a change).
 * Bytes that came behind the "+" are moved to *rest_r (owned by the
 * caller, NULL when none; *rest_len_r bytes), unparsed: they are the start
 * of the raw stream. It then frees the session's reader: from here on the
 * caller reads the raw stream itself, with imap_idle_recv (conn_read_nowait: bytes, 0 at EOF,
 * CONN_AGAIN, -1) when imap_idle_fd is readable, and writes short lines
 * ("DONE") with imap_idle_send (conn_write_nowait: 0 or -1). No other
 * command may follow; imap_close then sends no LOGOUT. On an error
 * imap_error says why. */
enum fetch_status imap_idle_enter(struct imap *s, char tag_r[16], bool *changed_r,
				  char **rest_r, size_t *rest_len_r);
int imap_idle_fd(const struct imap *s);
ssize_t imap_idle_recv(struct imap *s, void *p, size_t n);
int imap_idle_send(struct imap *s, const char *line);
/* See conn_set_cancel. */
void imap_set_cancel(struct imap *s, int fd);

/* Builds compact UID sets ("1:5,9,12:14") from sorted uids, starting at
 * *pos and taking at most max_uids of them or max_len bytes; advances *pos. */
int imap_uidset(const uint32_t *uids, size_t n, size_t *pos, size_t max_uids,
		size_t max_len, struct buf *out);

#endif
