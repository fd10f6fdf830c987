/* reconcile: set differences, the mass-deletion guard and the UIDVALIDITY
 * re-match (isync's recovery rule as the floor). No I/O here. */
#include "reconcile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool reconcile_may_delete(size_t n_known, size_t n_gone, size_t n_remote,
			  const struct reconcile_policy *p, char *why, size_t whylen)
{
	why[0] = '\0';
	if (n_gone == 0)
		return true;
	if (!p->listing_complete) {
		snprintf(why, whylen, "the server's listing was incomplete; %zu vanished "
			 "message(s) kept until a complete listing", n_gone);
		return false;
	}
	if (p->allow_mass_delete)
		return true;
	if (n_remote == 0) {
		snprintf(why, whylen, "the server lists no messages in a folder that had %zu; "
			 "nothing trashed: run 'maildisk sync --allow-mass-delete' to confirm",
			 n_known);
		return false;
	}
	if ((double)n_gone > p->mass_delete_limit * (double)n_known) {
		snprintf(why, whylen, "%zu of %zu messages (%.0f%%) vanished upstream, more than "
			 "mass_delete_limit (%.0f%%); nothing trashed: run 'maildisk sync "
			 "--allow-mass-delete' to confirm", n_gone, n_known,
			 100.0 * (double)n_gone / (double)n_known, 100.0 * p->mass_delete_limit);
		return false;
	}
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int reconcile_ids(char *const *known, size_t nk, char *const *remote, size_t nr,
		  char ***new_r, size_t *n_new_r, char ***gone_r, size_t *n_gone_r)
{
	char **k = nk ? malloc(nk * sizeof(*k)) : NULL;
	char **r = nr ? malloc(nr * sizeof(*r)) : NULL;
	char **nw = nr ? malloc(nr * sizeof(*nw)) : NULL;
	char **gn = nk ? malloc(nk * sizeof(*gn)) : NULL;
	size_t i = 0, j = 0, a = 0, b = 0;

	if ((nk && (!k || !gn)) || (nr && (!r || !nw))) {
		free(k), free(r), free(nw), free(gn);
		return -ENOMEM;
	}
	if (nk)
		memcpy(k, known, nk * sizeof(*k));
	if (nr)
		memcpy(r, remote, nr * sizeof(*r));
	if (nk)
		qsort(k, nk, sizeof(*k), cmp_str);
	if (nr)
		qsort(r, nr, sizeof(*r), cmp_str);
	while (i < nk || j < nr) {
		int c = i == nk ? 1 : j == nr ? -1 : strcmp(k[i], r[j]);

		if (c < 0)
			gn[b++] = k[i++];
		else if (c > 0)
			nw[a++] = r[j++];
		else
			i++, j++;
	}
	free(k);
	free(r);
	if (a == 0) {
		free(nw);
		nw = NULL;
	}
	if (b == 0) {
		free(gn);
		gn = NULL;
	}
	*new_r = nw;
	*n_new_r = a;
	*gone_r = gn;
	*n_gone_r = b;
	return 0;
}

/* ---- re-match ---- */

struct keyed {
	char *key;       /* owned */
	size_t idx;      /* index into the caller's array */
	int side;        /* 0 local, 1 remote */
};

static char *make_key(const char *message_id, int64_t size, int64_t internal_date)
{
	char *k = NULL;
	int n;

	/* Message-ID alone is not enough (copies share it); with the size it
	 * is isync's evidence. Without a Message-ID, INTERNALDATE and size. */
	if (message_id && *message_id)
		n = asprintf(&k, "M%" PRId64 " %s", size, message_id);
	else if (internal_date)
		n = asprintf(&k, "D%" PRId64 " %" PRId64, size, internal_date);
	else
		return strdup("");   /* no evidence: never matches */
	return n < 0 ? NULL : k;
}

static int cmp_keyed(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c ? c : x->side - y->side;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int reconcile_rematch(const struct rematch_local *local, size_t nl,
		      const struct rematch_remote *remote, size_t nr,
		      struct rematch_result *r)
{
	size_t n = nl + nr, i, np = 0, nlost = 0, nfresh = 0;
	struct keyed *v = n ? calloc(n, sizeof(*v)) : NULL;
	bool *paired_l = nl ? calloc(nl, sizeof(bool)) : NULL;
	bool *paired_r = nr ? calloc(nr, sizeof(bool)) : NULL;
	int rc = -ENOMEM;

	memset(r, 0, sizeof(*r));
	if ((n && !v) || (nl && !paired_l) || (nr && !paired_r))
		goto out;
	for (i = 0; i < nl; i++) {
		v[i] = (struct keyed){ make_key(local[i].message_id, local[i].size,
						local[i].internal_date), i, 0 };
		if (!v[i].key)
			goto out;
	}
	for (i = 0; i < nr; i++) {
		v[nl + i] = (struct keyed){ make_key(remote[i].message_id, remote[i].size,
						     remote[i].internal_date), i, 1 };
		if (!v[nl + i].key)
			goto out;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_keyed);

	r->pairs = nl ? calloc(nl, sizeof(*r->pairs)) : NULL;
	if (nl && !r->pairs)
		goto out;
	for (i = 0; i < n;) {
		size_t j = i, cl = 0, cr = 0;

		while (j < n && strcmp(v[j].key, v[i].key) == 0) {
			if (v[j].side == 0)
				cl++;
			else
				cr++;
			j++;
		}
		/* Exactly one on each side, with real evidence: a pair. */
		if (v[i].key[0] && cl == 1 && cr == 1) {
			size_t li = v[i].idx, ri = v[i + 1].idx;

			r->pairs[np++] = (struct rematch_pair){ local[li].row_id, remote[ri].uid };
			paired_l[li] = true;
			paired_r[ri] = true;
		}
		i = j;
	}
	r->n_pairs = np;
	r->lost_rows = nl - np ? malloc((nl - np) * sizeof(int64_t)) : NULL;
	r->fresh_uids = nr - np ? malloc((nr - np) * sizeof(uint32_t)) : NULL;
	if ((nl - np && !r->lost_rows) || (nr - np && !r->fresh_uids))
		goto out;
	for (i = 0; i < nl; i++)
		if (!paired_l[i])
			r->lost_rows[nlost++] = local[i].row_id;
	for (i = 0; i < nr; i++)
		if (!paired_r[i])
			r->fresh_uids[nfresh++] = remote[i].uid;
	if (nfresh)
		qsort(r->fresh_uids, nfresh, sizeof(uint32_t), cmp_u32);
	r->n_lost = nlost;
	r->n_fresh = nfresh;
	r->convincing = nl == 0 || np >= 20 || (double)np >= 0.8 * (double)nl;
	rc = 0;
out:
	for (i = 0; v && i < n; i++)
		free(v[i].key);
	free(v);
	free(paired_l);
	free(paired_r);
	if (rc < 0)
		reconcile_rematch_release(r);
	return rc;
}

void reconcile_rematch_release(struct rematch_result *r)
{
	free(r->pairs);
	free(r->lost_rows);
	free(r->fresh_uids);
	memset(r, 0, sizeof(*r));
}
