/* uidset: IMAP UID sets kept as ranges (RFC 3501 sequence-set, RFC 4731
 * ESEARCH ALL, RFC 7162 VANISHED).
 *
 * A server can write "1:4294967295" in 12 bytes. Expanding that one UID
 * at a time is what a hostile server wants, so sets stay ranges, and their
 * memory stays proportional to the bytes that described them, until they
 * have been checked against what the folder can hold (EXISTS, UIDNEXT) or
 * intersected with what the index already knows.
 *
 * Threads: a uidset belongs to its caller; the functions keep no state. */
#ifndef MAILDISK_UIDSET_H
#define MAILDISK_UIDSET_H

#include <stddef.h>
#include <stdint.h>

struct uid_range {
	uint32_t lo, hi;            /* inclusive, lo <= hi */
};

struct uidset {
	struct uid_range *v;        /* owned */
	size_t n, cap;
	uint64_t added;             /* UIDs added, duplicates included: what the server claimed */
};

#define UIDSET_INIT { NULL, 0, 0, 0 }

void uidset_release(struct uidset *s);

/* Adds lo..hi (either order). Consecutive ascending additions merge into
 * the last range, so a sorted listing costs one range per gap. 0 or
 * -ENOMEM. */
int uidset_add(struct uidset *s, uint32_t lo, uint32_t hi);

/* Adds the ranges of an IMAP sequence set of UIDs ("1:3,7,9:8"; '*' is
 * not accepted). 0, -EINVAL for a malformed set (nothing added), -ENOMEM. */
int uidset_parse(struct uidset *s, const char *text);

/* Sorts and merges, so the ranges ascend and neither overlap nor touch.
 * Returns how many distinct UIDs the set holds. */
uint64_t uidset_normalize(struct uidset *s);

/* After normalize: distinct UIDs >= from. */
uint64_t uidset_count_from(const struct uidset *s, uint32_t from);

/* After normalize: the UIDs >= from as an ascending array (*uids_r is
 * malloc'd, NULL when empty). Expands: call it only once the count has
 * been checked against the folder. 0 or -ENOMEM. */
int uidset_expand(const struct uidset *s, uint32_t from, uint32_t **uids_r, size_t *n_r);

/* After normalize: the members of the ascending array a[0..n) that are in
 * the set, written to out (room for n). Returns how many. Costs
 * O(n + ranges), whatever the ranges span. */
size_t uidset_intersect(const struct uidset *s, const uint32_t *a, size_t n, uint32_t *out);

#endif
