/* driver: what the sync engine needs from a mail protocol, in the spirit
 * of isync's struct driver. IMAP (drv_imap.c) and POP3 (drv_pop3.c) fill
 * it; the engine (sync.c) decides, once for both, what to fetch, what a
 * listing proves gone, when to hold back, and what is recorded.
 *
 * A driver names messages by remote ids, strings as the index keeps them:
 * IMAP UIDs in decimal (with the folder's UIDVALIDITY), POP3 UIDLs. Each
 * operation works on a whole set (every id of a listing, every message to
 * fetch), so a driver is free to keep several commands in flight.
 *
 * Errors: operations return enum fetch_status; the text for the user is
 * error(conn). The engine says it once, with the account and folder.
 * FETCH_FOLDER_BAD leaves the connection usable for other folders;
 * FETCH_ACCOUNT_BAD does not.
 *
 * Threads: a connection belongs to the sync worker that opened it. */
#ifndef MAILDISK_DRIVER_H
#define MAILDISK_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../cache/buf.h"
#include "../cache/index.h"
#include "fetch_status.h"
#include "reconcile.h"

struct ingest;
struct ingest_run;

/* A folder as the server lists it. */
struct drv_folder {
	char *name;             /* owned: UTF-8, the index's name for it */
	char *raw;              /* owned: as the server spells it */
	char delim;             /* hierarchy delimiter, 0 if none */
	bool selectable;
	char *note;             /* owned, may be NULL: why name is not the server's plain name */
};

void drv_folders_free(struct drv_folder *v, size_t n);

/* What opening a folder reports. */
struct drv_state {
	uint32_t uidvalidity;   /* the remote ids' epoch; a constant for POP3 */
	uint32_t uidnext;       /* 0 when the protocol has none */
	uint64_t highestmodseq; /* 0 without CONDSTORE */
	uint32_t exists;        /* messages the server counts in the folder */
	bool unchanged;         /* the server proved nothing changed since the index's state */
};

/* A flag change of a message the index may know. */
struct drv_flags {
	char *id;               /* owned */
	char *flags;            /* owned: "\\Seen \\Flagged", "" for none */
};

/* Every message of a folder, by remote id. */
struct drv_listing {
	char **ids;             /* owned: in the order to fetch them */
	size_t n;
	bool complete;          /* agrees with the server's own count: may prove a deletion */
	char incomplete[256];   /* when not complete: why, for the log */
	struct drv_flags *flags;/* owned: flag changes the server reported */
	size_t n_flags;
};

void drv_listing_release(struct drv_listing *l);

struct fetch_driver {
	const char *name;               /* "IMAP", "POP3" */
	const char *gone_reason;        /* the trash reason of what a listing proves gone */
	bool has_folders;               /* the config's folders = applies */

	/* Connects and logs in (secret: the password, or the OAuth2 token
	 * when token). On failure err holds one line for the user and
	 * run->r->retry says whether retrying can help. */
	enum fetch_status (*open)(struct ingest_run *run, const char *secret, bool token,
				  void **conn_r, struct buf *err);
	/* Safe on NULL; clears *conn. */
	void (*close)(void **conn);
	const char *(*error)(void *conn);

	enum fetch_status (*list_folders)(void *conn, struct drv_folder **r, size_t *n_r);
	/* Optional: which of the folders fs[0..n) the server proves unchanged
	 * since the index's rows known[0..n), all at once (a handful of round
	 * trips however many folders), so the engine skips them. */
	enum fetch_status (*probe)(void *conn, const struct drv_folder *fs,
				   const struct index_folder *known, size_t n, bool *unchanged_r);
	/* Optional: the folder the engine will open after the one it opens
	 * next, so the driver may ask for it ahead, with the other's last
	 * command. Only a hint: the engine may open another. */
	void (*hint_next)(void *conn, const struct drv_folder *f, const struct index_folder *known);
	/* Opens f; known is the index's row (its recorded state lets a
	 * driver ask only for what changed). */
	enum fetch_status (*select)(void *conn, const struct drv_folder *f,
				    const struct index_folder *known, struct drv_state *st_r);
	/* The selected folder's listing; known_ids (sorted by strcmp) are
	 * the ids the index has for it. */
	enum fetch_status (*list_ids)(void *conn, const struct index_folder *known,
				      char *const *known_ids, size_t n_known,
				      struct drv_listing *r);
	/* Streams the messages ids (in listing order) into in. FETCH_OK when
	 * the server answered for all of them (it may have sent fewer: those
	 * expunged meanwhile). */
	enum fetch_status (*fetch)(void *conn, char *const *ids, size_t n, struct ingest *in);
	/* After a UIDVALIDITY change: every message's id with the evidence to
	 * re-match it (Message-ID, size, date). NULL for a protocol whose ids
	 * have no epoch. *msgids_r owns the Message-IDs the rows point to. */
	enum fetch_status (*rematch_evidence)(void *conn, struct rematch_remote **r, char ***msgids_r,
					      size_t *n_r);
};

extern const struct fetch_driver drv_imap;
extern const struct fetch_driver drv_pop3;

#endif
