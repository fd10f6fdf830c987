/* imap_int: what the files of the IMAP session share (imap.c: the
 * session, its pipelined commands, LIST and STATUS, IDLE; imap_fetch.c:
 * UID SEARCH listings and FETCH; imap_examine.c: EXAMINE and what changed).
 * Not a contract for other modules: imap.h is. */
#ifndef MAILDISK_IMAP_INT_H
#define MAILDISK_IMAP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "imap.h"
#include "uidset.h"

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
	struct exam *next;          /* owned: the EXAMINE to send with the last FETCH */
	struct exam *ready;         /* owned: an EXAMINE already answered, for imap_examine */
	/* A UID FETCH $ of the folder after ready's, sent with its EXAMINE and
	 * listing for a first sync and not read yet: its bodies stream in while this
	 * side commits the folder before. imap_fetch of that folder reads it;
	 * any other command drains it first (answers come in order). */
	char ahead_tag[16];         /* "" when none */
	char *ahead_raw;            /* owned: the folder it fetches */
	bool ahead_selected;        /* imap_examine took that folder's answer */
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

/* One command of a pipelined batch (run_batch). */
struct imap_cmd {
	const char *what;             /* for messages: "EXAMINE" */
	const char *text;             /* borrowed: the command, without tag and line end */
	untagged_fn fn;               /* may be NULL: gets the untagged responses */
	void *ctx;
	const struct imap_sink *sink; /* may be NULL: where its literals go */
	/* may be NULL: called with the tagged answer, once st is set */
	void (*done)(struct imap *s, struct imap_cmd *c, const struct imap_resp *r);
	enum fetch_status st;         /* set by run_batch */
	char tag[16];
};

/* Commands in flight at most: enough to hide the round trips of a batch,
 * few enough that the server's answers never fill both sockets' buffers
 * while we are still writing (which would deadlock the two sides). */
#define IMAP_PIPELINE_MAX 32

/* A listing being read: ranges, bounded while they arrive by what the
 * folder announced (EXISTS may still grow by an untagged EXISTS after the
 * SEARCH data, hence the slack; the exact check comes at the end). */
struct listing {
	struct imap *s;
	struct uidset set;
	bool oom;
};

struct fetch_ctx {
	struct imap *s;            /* borrowed */
	const struct imap_fetch_handler *h;
	bool streamed;             /* this response's BODY[] went to the sink */
	uint64_t body_size;        /* the size of the literal that went to the sink */
	bool stop;
	struct buf flags;
};

struct changes_ctx {
	struct imap_changes *ch;
	struct uidset vanished;
	size_t cap_flags;
	bool oom;
	struct fetch_ctx fetch;       /* FETCH responses, parsed as imap_fetch does */
};


struct exam;

/* Sets s->error to "LABEL: " and the message. */
void imap_set_error(struct imap *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends c[0..n) pipelined and reads every answer (imap.c says how). */
enum fetch_status imap_run_batch(struct imap *s, struct imap_cmd *c, size_t n);
/* The same, where c[0..already) were sent before (their tags set) and
 * c[n - keep..n) are sent but their answers left unread. */
enum fetch_status imap_run_batch_ahead(struct imap *s, struct imap_cmd *c, size_t n, size_t already,
				       size_t keep);
/* A FETCH of folder raw went ahead under tag: its answer is on its way
 * whatever happens next, so it is always recorded (to be read, or
 * drained); without a copy of raw (no memory) it can only be drained. */
void imap_ahead_sent(struct imap *s, const char *tag, const char *raw);
/* Forgets the FETCH sent ahead (s->ahead_*), when its answer is read. */
void imap_ahead_forget(struct imap *s);
/* Sends s->cmd alone and reads its answer. */
enum fetch_status imap_run(struct imap *s, const char *what, untagged_fn fn, void *ctx,
			   const struct imap_sink *sink);
int imap_cmd_set(struct imap *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends an IMAP quoted string to s->cmd; 8-bit, CR and LF refused. */
int imap_cmd_quote(struct imap *s, const char *str);
/* "UIDVALIDITY 123" -> true, *v = 123 when code starts with key. */
bool imap_code_number(const char *code, const char *key, uint64_t *v);
/* What an untagged response says of a folder's state (EXISTS, and the
 * UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ codes), into st. */
void imap_state_note(struct imap_folder_state *st, const struct imap_resp *r);

/* imap_fetch.c */
int imap_keep_inline(void *ctx, const char *key, uint64_t n);
int imap_listing_number(void *ctx, uint64_t n);
int imap_search_collect(struct imap *s, const struct imap_resp *r, void *ctx);
/* The listing command for UIDs >= from; save: the result is also kept as
 * $ for a command after it (SEARCHRES, RFC 5182; the caller checks the
 * capability). */
int imap_search_text(struct imap *s, uint32_t from, bool save, struct buf *out);
int imap_fetch_collect(struct imap *s, const struct imap_resp *r, void *ctx);

/* imap_examine.c */
void imap_exam_free(struct exam **e);
size_t imap_exam_cmds(struct exam *e, struct imap_cmd *c);
/* The FETCH planned to go ahead after e's commands, into c[0]; 0 or 1. */
size_t imap_exam_ahead(struct exam *e, struct imap_cmd *c);
const char *imap_exam_raw(const struct exam *e);
void imap_exam_answered(struct exam *e, const struct imap_cmd *c, size_t n);

/* imap.c */
int imap_status_collect(struct imap *s, const struct imap_resp *r, void *ctx);

#endif
