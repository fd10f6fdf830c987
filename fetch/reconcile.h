/* reconcile: the decisions of a sync, kept apart from I/O so they can be
 * tested on their own. Given what the index knows and what the server
 * listed, say what to fetch, what to trash, and when to hold back.
 *
 * The safety rules (docs/design.md, Deletion rules): nothing is trashed
 * unless the listing was complete; an empty listing for a folder that had
 * mail, or one that would trash more than the mass-delete limit, is held
 * until the user confirms; after a UIDVALIDITY change, rows are re-matched
 * by Message-ID and size (or INTERNALDATE and size without a Message-ID)
 * and the unmatched are trashed only when the re-match is convincing. Pure
 * functions, any thread. */
#ifndef MAILDISK_RECONCILE_H
#define MAILDISK_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reconcile_policy {
	bool listing_complete;     /* the server's listing was whole and checked */
	double mass_delete_limit;  /* fraction of known messages, e.g. 0.5 */
	bool allow_mass_delete;    /* the user confirmed (sync --allow-mass-delete) */
};

/* Whether n_gone of n_known may be trashed given n_remote listed.
 * Returns true when they may; false with why (a sentence for status) when
 * they are held. Incomplete listings are never a deletion: false, and why
 * says so. */
bool reconcile_may_delete(size_t n_known, size_t n_gone, size_t n_remote,
			  const struct reconcile_policy *p, char *why, size_t whylen);

/* Set differences of two id lists (IMAP UIDs in decimal, POP3 UIDLs):
 * new = remote - known, gone = known - remote. Inputs need not be sorted;
 * outputs are sorted by strcmp and borrow the input pointers (arrays
 * malloc'd, NULL when empty; the caller frees the arrays). */
int reconcile_ids(char *const *known, size_t n_known, char *const *remote, size_t n_remote,
		  char ***new_r, size_t *n_new_r, char ***gone_r, size_t *n_gone_r);

/* ---- UIDVALIDITY change ---- */
struct rematch_local {
	int64_t row_id;
	const char *message_id;    /* may be NULL */
	int64_t size;
	int64_t internal_date;
};
struct rematch_remote {
	uint32_t uid;
	const char *message_id;    /* may be NULL */
	int64_t size;
	int64_t internal_date;
};
struct rematch_pair {
	int64_t row_id;
	uint32_t uid;
};
struct rematch_result {
	struct rematch_pair *pairs;   /* owned */
	size_t n_pairs;
	int64_t *lost_rows;           /* owned: local rows that matched nothing */
	size_t n_lost;
	uint32_t *fresh_uids;         /* owned, ascending: remote messages that matched nothing */
	size_t n_fresh;
	bool convincing;              /* at least 20 pairs or 80% of the local rows paired, or no local rows */
};
/* A key matches when it occurs exactly once on each side; keys seen more
 * than once on either side pair nothing (ambiguous evidence). */
int reconcile_rematch(const struct rematch_local *local, size_t n_local,
		      const struct rematch_remote *remote, size_t n_remote,
		      struct rematch_result *r);
void reconcile_rematch_release(struct rematch_result *r);

#endif
