/* sync_names: unique names for server folders (see sync_names.h). Sorting
 * a permutation keeps this O(n log n) for a LIST of many folders. */
#include "sync_names.h"

#include "../cache/index.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/buf.h"
#include "../cache/log.h"
#include "utf7.h"

/* qsort_r comparator: indexes into the mailbox array ctx, by name. */
static int by_name(const void *a, const void *b, void *ctx)
{
	const struct imap_mailbox *mbs = ctx;
	const struct imap_mailbox *x = &mbs[*(const size_t *)a];
	const struct imap_mailbox *y = &mbs[*(const size_t *)b];
	int c = strcmp(x->name, y->name);

	/* Ties in LIST order, so "the first listed" is the first of a run. */
	return c ? c : (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

/* Whether raw is exactly the modified UTF-7 spelling of name. */
static bool canonical(const struct imap_mailbox *m)
{
	struct buf enc = BUF_INIT(4096);
	bool ok = utf7_encode(m->name, strlen(m->name), &enc) == 0 &&
		  strcmp(enc.data ? enc.data : "", m->raw) == 0;

	buf_release(&enc);
	return ok;
}

/* Whether a listed mailbox has name (ord: its m selectable ones, sorted by
 * name). */
static bool taken(const struct imap_mailbox *mbs, const size_t *ord, size_t m, const char *name)
{
	size_t lo = 0, hi = m;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(mbs[ord[mid]].name, name);

		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

int sync_names_dedupe(const char *label, struct imap_mailbox *mbs, size_t n, char ***notes_r)
{
	char **notes = calloc(n ? n : 1, sizeof *notes);
	char **renamed = calloc(n ? n : 1, sizeof *renamed);   /* new names, by mailbox */
	bool *dup = calloc(n ? n : 1, sizeof *dup);             /* a second listing */
	size_t *ord = malloc((n ? n : 1) * sizeof *ord), m = 0;
	int rc = 0;

	*notes_r = NULL;
	if (!notes || !renamed || !dup || !ord) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (!mbs[i].noselect)
			ord[m++] = i;
	qsort_r(ord, m, sizeof *ord, by_name, mbs);
	for (size_t a = 0; a < m && rc == 0;) {
		size_t b = a + 1, keep = ord[a];

		while (b < m && strcmp(mbs[ord[b]].name, mbs[ord[a]].name) == 0)
			b++;
		for (size_t k = a; k < b; k++)
			if (canonical(&mbs[ord[k]])) {
				keep = ord[k];
				break;
			}
		for (size_t k = a; k < b && rc == 0; k++) {
			struct imap_mailbox *x = &mbs[ord[k]];
			const struct imap_mailbox *w = &mbs[keep];

			if (ord[k] == keep)
				continue;
			if (strcmp(x->raw, w->raw) == 0) {
				log_warn("%s: the server lists folder \"%s\" twice; syncing it once", label,
					 x->raw);
				dup[ord[k]] = true;
				continue;
			}
			for (int num = 2; rc == 0 && !renamed[ord[k]]; num++) {
				char *cand;
				bool used = false;

				if (asprintf(&cand, "%s (%d)", x->name, num) < 0) {
					rc = -ENOMEM;
					break;
				}
				used = taken(mbs, ord, m, cand);
				for (size_t i = 0; !used && i < n; i++)
					used = renamed[i] && strcmp(renamed[i], cand) == 0;
				if (used)
					free(cand);
				else
					renamed[ord[k]] = cand;
			}
			if (rc == 0 && asprintf(&notes[ord[k]], "the server's \"%s\" and \"%s\" both "
						"read \"%s\"; this one (\"%s\") is shown as \"%s\"",
						w->raw, x->raw, x->name, x->raw, renamed[ord[k]]) < 0) {
				notes[ord[k]] = NULL;
				rc = -ENOMEM;
			}
		}
		a = b;
	}
	if (rc)
		goto out;
	/* Applied only now: the names were the sort keys. */
	for (size_t i = 0; i < n; i++) {
		if (renamed[i]) {
			log_warn("%s: %s", label, notes[i]);
			free(mbs[i].name);
			mbs[i].name = renamed[i];
			renamed[i] = NULL;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (dup[i])
			mbs[i].noselect = true;
	*notes_r = notes;
	notes = NULL;
out:
	sync_names_free(notes, n);
	sync_names_free(renamed, n);
	free(dup);
	free(ord);
	return rc;
}

void sync_names_free(char **notes, size_t n)
{
	index_ids_free(notes, n);      /* the same shape: n owned strings */
}
