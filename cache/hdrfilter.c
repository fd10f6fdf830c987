/* hdrfilter: see hdrfilter.h for the rules, which are GMime 3.2's. */
#include "hdrfilter.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* The end of the line at p (after its '\n'), or end. */
static const char *line_end(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', end - p);

	return nl ? nl + 1 : end;
}

static bool is_empty_line(const char *p, const char *le)
{
	return (le - p == 1 && p[0] == '\n') || (le - p == 2 && p[0] == '\r' && p[1] == '\n');
}

/* The length of the field name of a header line p[0..n), 0 if the line is
 * not one (n > 0, p[0] not a blank). */
static size_t name_len(const char *p, size_t n)
{
	size_t i = 0, k;

	while (i < n && p[i] != ':' && (unsigned char)p[i] > ' ' && p[i] != 0x7f)
		i++;
	for (k = i; k < n && (p[k] == ' ' || p[k] == '\t'); k++)
		;
	return i > 0 && k < n && p[k] == ':' ? i : 0;
}

static bool wanted(const char *name, size_t n, const char *const *names)
{
	for (; *names; names++)
		if (strlen(*names) == n && !strncasecmp(*names, name, n))
			return true;
	return false;
}

size_t hdrfilter(const char *in, size_t len, const char *const *names, char *out,
		 size_t *end)
{
	const char *p = in, *e = in + len;
	size_t o = 0;
	bool seen = false;     /* a header line was met: GMime skips bad lines */

	*end = len;
	while (p < e) {
		const char *le = line_end(p, e);

		if (is_empty_line(p, le)) {
			memcpy(out + o, p, le - p);
			*end = le - in;
			return o + (le - p);
		}
		size_t nl = p[0] == ' ' || p[0] == '\t' ? 0 : name_len(p, le - p);
		bool keep = nl ? wanted(p, nl, names) : !seen;

		seen = seen || nl;
		/* the field: this line, then those that begin with a blank */
		const char *fe = le;

		while (fe < e && (*fe == ' ' || *fe == '\t'))
			fe = line_end(fe, e);
		if (keep) {
			memcpy(out + o, p, fe - p);
			o += fe - p;
		}
		p = fe;
	}
	/* nothing kept and no end: GMime fails on nothing, not on an empty
	 * block (a message without fields) */
	if (o == 0 && len > 0)
		out[o++] = '\n';
	return o;
}
