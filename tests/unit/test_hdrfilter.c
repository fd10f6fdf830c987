/* Unit tests for cache/hdrfilter.c: the fields kept, and GMime's own reading
 * of a filtered block equal to its reading of the whole one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <gmime/gmime.h>

#include "../../cache/hdrfilter.h"

static const char *const names[] = { "Subject", "To", "Content-Type", NULL };

static void expect(const char *in, size_t len, const char *want, size_t want_end)
{
	char *out = malloc(len + 1);
	size_t end, n = hdrfilter(in, len, names, out, &end);

	assert_true(n <= len);
	out[n] = 0;
	assert_string_equal(out, want);
	assert_int_equal(end, want_end);
	free(out);
}

#define EXPECT(in, want, end) expect(in, sizeof(in) - 1, want, end)

static void test_cases(void **state)
{
	(void)state;
	/* folding, order, the empty line kept, the body not */
	EXPECT("X-A: 1\nSubject: a\n b\n\tc\nX-B: 2\n  d\nTo: t\n\nbody\n",
	       "Subject: a\n b\n\tc\nTo: t\n\n", 42);
	/* CRLF */
	EXPECT("Received: x\r\n y\r\nsubject: s\r\n\r\nbody", "subject: s\r\n\r\n", 31);
	/* a field at the end without empty line, with or without its LF */
	EXPECT("X: 1\nTo: t", "To: t", 10);
	EXPECT("X: 1\nSub ject", "\n", 13);
	EXPECT("X: 1\nTo: t\n", "To: t\n", 11);
	/* a line without colon after a header: GMime skips it, with its folds */
	EXPECT("To: t\nbogus line\n more\nSubject: s\n\n", "To: t\nSubject: s\n\n", 35);
	/* before any header, lines stay: GMime fails on them, or skips "From " */
	EXPECT("bogus\nSubject: s\n\n", "bogus\nSubject: s\n\n", 18);
	EXPECT("From a@b Mon Jan  1 00:00:00 2026\nX: 1\nTo: t\n\n",
	       "From a@b Mon Jan  1 00:00:00 2026\nTo: t\n\n", 46);
	/* 8-bit bytes in names and values */
	EXPECT("Subj\xe9\x63t: x\nSubject: caf\xe9\n\n", "Subject: caf\xe9\n\n", 26);
	/* a name that begins another is not it; blanks before the colon */
	EXPECT("Content-Type-X: a\nContent-Type : b\nContent-Typ: c\n\n",
	       "Content-Type : b\n\n", 51);
	/* a name with a blank inside is no header */
	EXPECT("To: t\nSub ject: s\n\n", "To: t\n\n", 19);
	/* a line cut by the end in its name stays: GMime fails on it */
	EXPECT("To: t\nX: 1\nbogus", "To: t\nbogus", 16);
	EXPECT("X: 1\nbogus \t", "bogus \t", 12);
	/* no header at all */
	EXPECT("\nSubject: s\n", "\n", 1);
	EXPECT("", "", 0);
}

/* GMime's headers of a message, those in names only, as "name\0raw" lines,
 * or "NULL" when it builds no message. */
static GString *gmime_view(const char *p, size_t n)
{
	GMimeStream *s = g_mime_stream_mem_new_with_buffer(p, n);
	GMimeParser *parser = g_mime_parser_new_with_stream(s);
	GMimeMessage *m = g_mime_parser_construct_message(parser, NULL);
	GString *v = g_string_new(m ? "" : "NULL");

	if (m) {
		GMimeHeaderList *hl = g_mime_object_get_header_list((GMimeObject *)m);

		for (int i = 0; i < g_mime_header_list_get_count(hl); i++) {
			GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
			const char *name = g_mime_header_get_name(h);

			for (const char *const *w = names; *w; w++)
				if (!g_ascii_strcasecmp(*w, name))
					g_string_append_printf(v, "%s|%s\n", name,
							       g_mime_header_get_raw_value(h));
		}
		GMimeObject *top = g_mime_message_get_mime_part(m);
		char *ct = top ? g_mime_content_type_get_mime_type(
				     g_mime_object_get_content_type(top)) : NULL;

		g_string_append_printf(v, "type %s\n", ct ? ct : "-");
		g_free(ct);
		g_object_unref(m);
	}
	g_object_unref(parser);
	g_object_unref(s);
	return v;
}

/* k lines picked at random from lines, each ended by LF or CRLF, into
 * buf; returns their length. */
static size_t random_lines(char *buf, size_t size, const char *const *lines, size_t n_lines,
			   int k)
{
	size_t n = 0;

	for (int i = 0; i < k; i++)
		n += snprintf(buf + n, size - n, "%s%s", lines[rand() % n_lines],
			      rand() % 4 ? "\n" : "\r\n");
	return n;
}

/* Random header blocks of troublesome lines: GMime reads the same fields
 * from the filtered block as from the whole. */
static void test_same_as_gmime(void **state)
{
	(void)state;
	static const char *const lines[] = {
		"Subject: s", "To: a@b", "X-A: 1", " cont", "\tcont", "bogus", "From x",
		"Content-Type: text/html", "Content-Type-X: y", ":v", " :v", "To : c@d",
		"Subj\xe9\x63t: q", "Sub ject: z", "subject: =?utf-8?q?caf=C3=A9?=", " ", "\r",
		"To:", "X\x01Y: 1", "Content-Type: multipart/mixed; boundary=b",
	};
	char in[1024], out[1024];

	g_mime_init();
	srand(1);
	for (int round = 0; round < 20000; round++) {
		size_t end, fn;
		int k = rand() % 8;
		size_t n = random_lines(in, sizeof in, lines, sizeof lines / sizeof *lines, k);

		if (k && rand() % 8 == 0) {
			n -= in[n - 2] == '\r' ? 2 : 1;    /* cut in the last line */
		} else {
			if (rand() % 4)
				n += snprintf(in + n, sizeof in - n, rand() % 2 ? "\n" : "\r\n");
			n += snprintf(in + n, sizeof in - n, "body\n");
		}
		fn = hdrfilter(in, n, names, out, &end);
		assert_true(fn <= end);
		memcpy(out + fn, in + end, n - end);
		GString *a = gmime_view(in, n), *b = gmime_view(out, fn + n - end);

		if (strcmp(a->str, b->str))
			fail_msg("round %d: [%.*s] gives\n%s\nfiltered [%.*s] gives\n%s", round,
				 (int)n, in, a->str, (int)(fn + n - end), out, b->str);
		g_string_free(a, TRUE);
		g_string_free(b, TRUE);
	}
}

/* The same blocks overwritten in place: same length, line ends where they
 * were, and GMime reads the same wanted fields and type. */
static void test_blank_same_as_gmime(void **state)
{
	(void)state;
	static const char *const lines[] = {
		"Subject: s", "To: a@b", "X-A: 1", " cont", "\tcont", "bogus", "From x",
		"Content-Type: text/html", "Received: from a\r\n\tby b", "--x: y", ":v",
		"To : c@d", "DKIM: a=1;\n b=2", "X\x01Y: 1", " ", "\r",
		"Content-Type: multipart/mixed; boundary=b",
	};
	char in[1024], out[1024];

	g_mime_init();
	srand(2);
	for (int round = 0; round < 20000; round++) {
		size_t n = random_lines(in, sizeof in, lines, sizeof lines / sizeof *lines,
					rand() % 8);

		if (rand() % 4)
			n += snprintf(in + n, sizeof in - n, rand() % 2 ? "\n" : "\r\n");
		n += snprintf(in + n, sizeof in - n, "body\n");
		memcpy(out, in, n);
		size_t fields = hdrfilter_blank(out, n, names);

		if (!hdrfilter_has_end(in, n))
			assert_int_equal(fields, 0);
		for (size_t i = 0; i < n; i++)
			assert_true((in[i] == '\n') == (out[i] == '\n'));
		GString *a = gmime_view(in, n), *b = gmime_view(out, n);

		if (strcmp(a->str, b->str))
			fail_msg("round %d: [%.*s] gives\n%s\nblanked [%.*s] gives\n%s", round,
				 (int)n, in, a->str, (int)n, out, b->str);
		g_string_free(a, TRUE);
		g_string_free(b, TRUE);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_blank_same_as_gmime),
		cmocka_unit_test(test_same_as_gmime),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
