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

/* The length of the field name at the start of p[0..n) (p[0] not a blank),
 * and in *k where the blanks after it end. */
static size_t scan_name(const char *p, size_t n, size_t *k)
{
	size_t i = 0;

	while (i < n && p[i] != ':' && (unsigned char)p[i] > ' ' && p[i] != 0x7f)
		i++;
	for (*k = i; *k < n && (p[*k] == ' ' || p[*k] == '\t'); ++*k)
		;
	return i;
}

static bool wanted(const char *name, size_t n, const char *const *names)
{
	for (; *names; names++)
		if (strlen(*names) == n && !strncasecmp(*names, name, n))
			return true;
	return false;
}

/* One field of a header block, as GMime reads it. */
struct field {
	const char *end;       /* after its last continuation line */
	size_t name_len;       /* 0: not a field (a bad line, or a continuation) */
	bool cut;              /* a name cut by the end of the input */
	bool empty;            /* the empty line that ends the block (end: after it) */
};

/* The field at p (p < e): this line, then those that begin with a blank. */
static struct field field_at(const char *p, const char *e)
{
	const char *le = line_end(p, e);
	struct field f = { .end = le };
	size_t k = 0;

	if (is_empty_line(p, le)) {
		f.empty = true;
		return f;
	}
	f.name_len = p[0] == ' ' || p[0] == '\t' ? 0 : scan_name(p, le - p, &k);
	f.cut = f.name_len && k == (size_t)(le - p);
	if (!(k < (size_t)(le - p) && p[k] == ':'))
		f.name_len = 0;
	while (f.end < e && (*f.end == ' ' || *f.end == '\t'))
		f.end = line_end(f.end, e);
	return f;
}

size_t hdrfilter(const char *in, size_t len, const char *const *names, char *out,
		 size_t *end)
{
	const char *p = in, *e = in + len;
	size_t o = 0;
	bool seen = false;     /* a header line was met: GMime skips bad lines */

	*end = len;
	while (p < e) {
		struct field f = field_at(p, e);

		if (f.empty) {
			memcpy(out + o, p, f.end - p);
			*end = f.end - in;
			return o + (f.end - p);
		}
		bool keep = f.name_len ? wanted(p, f.name_len, names) : !seen;

		seen = seen || f.name_len;
		/* GMime fails on a name cut by the end: so must it here */
		if (f.cut)
			keep = true;
		if (keep) {
			memcpy(out + o, p, f.end - p);
			o += f.end - p;
		}
		p = f.end;
	}
	/* nothing kept and no end: GMime fails on nothing, not on an empty
	 * block (a message without fields) */
	if (o == 0 && len > 0)
		out[o++] = '\n';
	return o;
}

/* Overwrites p[0..n) (a line, without its line end) as the first line of
 * a placeholder field, or as a continuation of the one before. */
static void blank_line(char *p, size_t n, bool first)
{
	size_t i = 0;

	if (first && n >= 2) {
		p[0] = 'X';
		p[1] = ':';
		i = 2;
	} else if (n >= 1) {
		p[0] = ' ';
		i = 1;
	}
	memset(p + i, 'x', n - i);
}

/* The length of the line p..le without its line end. */
static size_t body_len(const char *p, const char *le)
{
	size_t n = le - p;

	if (n && p[n - 1] == '\n')
		n--;
	if (n && p[n - 1] == '\r')
		n--;
	return n;
}

size_t hdrfilter_blank(char *buf, size_t len, const char *const *names)
{
	char *p = buf, *e = buf + len, *blank_end = NULL;
	size_t fields = 0;

	if (!hdrfilter_has_end(buf, len))
		return 0;
	while (p < e) {
		struct field f = field_at(p, e);
		char *fe = (char *)f.end;

		if (f.empty)
			break;
		/* A line that begins with "--" stays: callers count those. */
		if (f.name_len && p[0] != '-' && !wanted(p, f.name_len, names)) {
			/* Right after another placeholder: one field for both. */
			bool first = blank_end != p;

			for (char *q = p; q < fe; q = (char *)line_end(q, fe))
				blank_line(q, body_len(q, line_end(q, fe)), first && q == p);
			blank_end = fe;
			fields++;
		}
		p = fe;
	}
	return fields;
}

bool hdrfilter_has_end(const char *in, size_t len)
{
	const char *p = in, *e = in + len;

	while (p < e) {
		const char *le = line_end(p, e);

		if (is_empty_line(p, le))
			return true;
		p = le;
	}
	return false;
}
