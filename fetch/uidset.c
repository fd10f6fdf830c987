/* uidset: UID sets as ranges, never expanded before they are checked. */
#include "uidset.h"

#include <errno.h>
#include <stdlib.h>

#include "../cache/buf.h"

void uidset_release(struct uidset *s)
{
	free(s->v);
	*s = (struct uidset)UIDSET_INIT;
}

int uidset_add(struct uidset *s, uint32_t lo, uint32_t hi)
{
	if (lo > hi) {
		uint32_t t = lo;
		lo = hi;
		hi = t;
	}
	s->added += (uint64_t)hi - lo + 1;
	if (s->n && s->v[s->n - 1].hi < UINT32_MAX && s->v[s->n - 1].hi + 1 == lo) {
		s->v[s->n - 1].hi = hi;
		return 0;
	}
	if (buf_array_grow(&s->v, &s->cap, s->n, sizeof(*s->v), 16) < 0)
		return -ENOMEM;
	s->v[s->n++] = (struct uid_range){ lo, hi };
	return 0;
}

/* One nz-number (no leading zero) up to UINT32_MAX; advances *p. */
static int parse_number(const char **p, uint32_t *n_r)
{
	const char *t = *p;
	uint64_t n = 0;

	if (*t < '1' || *t > '9')
		return -EINVAL;
	while (*t >= '0' && *t <= '9') {
		n = n * 10 + (uint64_t)(*t++ - '0');
		if (n > UINT32_MAX)
			return -EINVAL;
	}
	*p = t;
	*n_r = (uint32_t)n;
	return 0;
}

/* Walks the set; adds its ranges to s only when s is not NULL. */
static int walk(struct uidset *s, const char *text)
{
	const char *p = text;

	for (;;) {
		uint32_t lo, hi;
		int rc;

		if (parse_number(&p, &lo) < 0)
			return -EINVAL;
		hi = lo;
		if (*p == ':') {
			p++;
			if (parse_number(&p, &hi) < 0)
				return -EINVAL;
		}
		if (*p != ',' && *p != '\0')
			return -EINVAL;
		if (s && (rc = uidset_add(s, lo, hi)) < 0)
			return rc;
		if (*p++ == '\0')
			return 0;
	}
}

int uidset_parse(struct uidset *s, const char *text)
{
	/* Check it all first, so a malformed set adds nothing. */
	int rc = text ? walk(NULL, text) : -EINVAL;

	return rc ? rc : walk(s, text);
}

static int cmp_range(const void *a, const void *b)
{
	const struct uid_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

uint64_t uidset_normalize(struct uidset *s)
{
	uint64_t count = 0;
	size_t j = 0;

	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), cmp_range);
	for (size_t i = 0; i < s->n; i++) {
		if (j && (uint64_t)s->v[j - 1].hi + 1 >= s->v[i].lo) {
			if (s->v[i].hi > s->v[j - 1].hi)
				s->v[j - 1].hi = s->v[i].hi;
			continue;
		}
		s->v[j++] = s->v[i];
	}
	s->n = j;
	for (size_t i = 0; i < s->n; i++)
		count += (uint64_t)s->v[i].hi - s->v[i].lo + 1;
	return count;
}

uint64_t uidset_count_from(const struct uidset *s, uint32_t from)
{
	uint64_t count = 0;

	for (size_t i = 0; i < s->n; i++) {
		uint32_t lo = s->v[i].lo > from ? s->v[i].lo : from;

		if (s->v[i].hi >= lo)
			count += (uint64_t)s->v[i].hi - lo + 1;
	}
	return count;
}

int uidset_expand(const struct uidset *s, uint32_t from, uint32_t **uids_r, size_t *n_r)
{
	uint64_t count = uidset_count_from(s, from);
	uint32_t *v;
	size_t k = 0;

	*uids_r = NULL;
	*n_r = 0;
	if (count == 0)
		return 0;
	if (count > SIZE_MAX / sizeof(*v) || !(v = malloc((size_t)count * sizeof(*v))))
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		uint32_t lo = s->v[i].lo > from ? s->v[i].lo : from;

		for (uint64_t u = lo; u <= s->v[i].hi; u++)
			v[k++] = (uint32_t)u;
	}
	*uids_r = v;
	*n_r = k;
	return 0;
}

size_t uidset_intersect(const struct uidset *s, const uint32_t *a, size_t n, uint32_t *out)
{
	size_t i = 0, r = 0, k = 0;

	while (i < n && r < s->n) {
		if (a[i] < s->v[r].lo)
			i++;
		else if (a[i] > s->v[r].hi)
			r++;
		else
			out[k++] = a[i++];
	}
	return k;
}
