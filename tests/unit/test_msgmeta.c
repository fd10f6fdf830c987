/* Unit tests for fetch/msgmeta.c: header fields as the index records them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>
#include <gmime/gmime.h>

#include "../../fetch/msgmeta.h"

static void test_fields(void **state)
{
	(void)state;
	static const struct {
		const char *hdr;
		const char *message_id, *subject, *from_has, *to_has;
		int64_t date;
		const char *subject_has;   /* subject not known exactly: valid UTF-8 holding this */
	} cases[] = {
		{ "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
		  "Subject: Quarterly report\r\nDate: Fri, 27 Nov 2026 14:32:00 +0000\r\n"
		  "Message-ID: <abc@example.com>\r\n\r\n",
		  "abc@example.com", "Quarterly report", "alice@example.com", "bob@example.org",
		  1795789920, NULL },
		/* RFC 2047 subject and display name */
		{ "From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.de>\r\n"
		  "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus =?UTF-8?B?S8O2bG4=?=\r\n\r\n",
		  NULL, "Grüße aus Köln", "Jürgen", NULL, 0, NULL },
		/* folded subject, bare LF line ends, timezone offset */
		{ "Subject: a long\n subject line\nDate: Mon, 2 Jan 2006 15:04:05 -0700\n\n",
		  NULL, "a long subject line", NULL, NULL, 1136239445, NULL },
		/* nothing useful at all */
		{ "X-Nothing: here\r\n\r\n", NULL, NULL, NULL, NULL, 0, NULL },
		/* unparsable date */
		{ "Date: yesterday-ish\r\nSubject: x\r\n\r\n", NULL, "x", NULL, NULL, 0, NULL },
		/* 8-bit header bytes that are not UTF-8 must come out as valid UTF-8 */
		{ "Subject: caf\xe9 cr\xe8me\r\n\r\n", NULL, NULL, NULL, NULL, 0, "caf" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct msgmeta m;

		assert_int_equal(msgmeta_parse(cases[i].hdr, strlen(cases[i].hdr), &m), 0);
		if (cases[i].message_id)
			assert_string_equal(m.message_id, cases[i].message_id);
		else
			assert_null(m.message_id);
		if (cases[i].subject_has) {
			assert_non_null(m.subject);
			assert_true(g_utf8_validate(m.subject, -1, NULL));
			assert_non_null(strstr(m.subject, cases[i].subject_has));
		} else if (cases[i].subject) {
			assert_string_equal(m.subject, cases[i].subject);
		} else {
			assert_null(m.subject);
		}
		if (cases[i].from_has)
			assert_non_null(strstr(m.from, cases[i].from_has));
		else
			assert_null(m.from);
		if (cases[i].to_has)
			assert_non_null(strstr(m.to, cases[i].to_has));
		else
			assert_null(m.to);
		assert_int_equal(m.date, cases[i].date);
		msgmeta_release(&m);
	}
}

static void test_empty_and_header_len(void **state)
{
	(void)state;
	struct msgmeta m;

	assert_int_equal(msgmeta_parse("", 0, &m), 0);
	assert_null(m.subject);
	msgmeta_release(&m);

	assert_int_equal(msgmeta_header_len("A: b\r\n\r\nbody", 12), 8);
	assert_int_equal(msgmeta_header_len("A: b\n\nbody", 10), 6);
	assert_int_equal(msgmeta_header_len("\r\nbody", 6), 2);
	assert_int_equal(msgmeta_header_len("\nbody", 5), 1);
	assert_int_equal(msgmeta_header_len("A: b\r\nC: d", 10), 0);   /* not complete */
}

/* ---- a header arriving in pieces (ingest) ---- */

static const char *const split_msgs[] = {
	"Return-Path: <a@example.org>\r\n"
	"Message-ID: <split-1@example.org>\r\n"
	"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
	"From: Anna <a@example.org>\r\n"
	"To: Bob <b@example.org>\r\n"
	"Subject: =?UTF-8?Q?=C3=84pfel?= and pears\r\n"
	"\r\n"
	"Body line one\r\n\r\nBody after a blank line\r\n",
	/* LF line ends, a folded header */
	"Message-ID: <split-2@example.org>\n"
	"Subject: a long\n subject, folded\n"
	"Date: Wed, 02 Dec 2026 11:00:00 +0100\n"
	"\n"
	"body\n",
	/* no body at all, header ends the message */
	"Message-ID: <split-3@example.org>\r\nSubject: only a header\r\n\r\n",
	/* no header at all */
	"\r\nSubject: this is the body, not a header\r\n",
	/* an empty body line right after the header's first line */
	"Subject: x\r\n\r\n\r\n",
	"",
};

struct whole {
	size_t hlen;
	struct msgmeta mm;
};

static void feed_pieces(const char *m, size_t n, const size_t *cuts, size_t n_cuts,
			struct msgmeta_header *h)
{
	size_t at = 0;

	msgmeta_header_reset(h);
	for (size_t i = 0; i <= n_cuts; i++) {
		size_t to = i < n_cuts ? cuts[i] : n;

		assert_int_equal(msgmeta_header_feed(h, m + at, to - at), 0);
		at = to;
	}
}

static void check_same(const struct msgmeta_header *h, const struct whole *w, const char *m,
		       const size_t *cuts, size_t n_cuts)
{
	size_t hl = h->buf.len ? msgmeta_header_len(h->buf.data, h->buf.len) : 0;
	struct msgmeta mm;

	if (hl != w->hlen)
		fail_msg("header length %zu, whole %zu, cut at %zu/%zu of \"%.20s\"", hl, w->hlen,
			 n_cuts ? cuts[0] : 0, n_cuts > 1 ? cuts[1] : 0, m);
	assert_int_equal(msgmeta_parse(h->buf.data ? h->buf.data : "", hl ? hl : h->buf.len, &mm), 0);
	if (w->mm.subject)
		assert_string_equal(mm.subject, w->mm.subject);
	else
		assert_null(mm.subject);
	if (w->mm.message_id)
		assert_string_equal(mm.message_id, w->mm.message_id);
	else
		assert_null(mm.message_id);
	assert_true(mm.date == w->mm.date);
	msgmeta_release(&mm);
}

/* The kept header, and what is parsed from it, do not depend on where the
 * message was split: every single cut, and every pair of cuts. */
static void test_header_split_anywhere(void **state)
{
	struct msgmeta_header h;

	(void)state;
	msgmeta_header_init(&h, 1 << 16);
	for (size_t k = 0; k < sizeof(split_msgs) / sizeof(split_msgs[0]); k++) {
		const char *m = split_msgs[k];
		size_t n = strlen(m);
		struct whole w = { msgmeta_header_len(m, n), { 0 } };

		assert_int_equal(msgmeta_parse(m, w.hlen ? w.hlen : n, &w.mm), 0);
		if (k == 0) {
			assert_string_equal(w.mm.subject, "\xc3\x84pfel and pears");
			assert_string_equal(w.mm.message_id, "split-1@example.org");
		}
		for (size_t i = 0; i <= n; i++) {
			feed_pieces(m, n, &i, 1, &h);
			check_same(&h, &w, m, &i, 1);
			for (size_t j = i; j <= n; j++) {
				size_t cuts[2] = { i, j };

				feed_pieces(m, n, cuts, 2, &h);
				check_same(&h, &w, m, cuts, 2);
			}
		}
		msgmeta_release(&w.mm);
	}
	msgmeta_header_release(&h);
}

/* A piece ending one byte after a line break was taken for the end of the
 * header (the scan restarted at a "\n" it took for an empty line). */
static void test_header_piece_after_line_break(void **state)
{
	static const char m[] = "Subject: one\r\nMessage-ID: <x@y>\r\nDate: Tue, 01 Dec 2026 "
				"10:00:00 +0000\r\n\r\nbody";
	struct msgmeta_header h;
	const char *p = m;

	(void)state;
	msgmeta_header_init(&h, 4096);
	/* "Subject: one\r\nM" then the rest, 3 bytes at a time */
	assert_int_equal(msgmeta_header_feed(&h, p, 15), 0);
	assert_false(h.done);
	for (p += 15; *p; p += strlen(p) < 3 ? strlen(p) : 3)
		assert_int_equal(msgmeta_header_feed(&h, p, strlen(p) < 3 ? strlen(p) : 3), 0);
	assert_true(h.done);
	assert_int_equal(msgmeta_header_len(h.buf.data, h.buf.len), sizeof(m) - 1 - 4);
	msgmeta_header_release(&h);
}

/* Past keep bytes the header is cut, and done. */
static void test_header_keep(void **state)
{
	struct msgmeta_header h;

	(void)state;
	msgmeta_header_init(&h, 16);
	assert_int_equal(msgmeta_header_feed(&h, "Subject: a very long subject\r\n", 30), 0);
	assert_true(h.done);
	assert_int_equal(h.buf.len, 16);
	assert_int_equal(msgmeta_header_feed(&h, "more", 4), 0);
	assert_int_equal(h.buf.len, 16);
	msgmeta_header_release(&h);
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* msgmeta_parse (GMime given the fields it reads) equals GMime's reading of
 * the whole block, for hdr[0..len) and for prefixes of it (a kept header
 * may be cut anywhere). */
static void same_as_whole(const char *hdr, size_t len, const char *what)
{
	size_t cuts[] = { len, len / 2, 64, 7 };

	for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
		struct msgmeta a, b;
		size_t n = cuts[i] < len ? cuts[i] : len;

		assert_int_equal(msgmeta_parse(hdr, n, &a), 0);
		assert_int_equal(msgmeta_parse_whole(hdr, n, &b), 0);
		if (!str_eq(a.message_id, b.message_id) || !str_eq(a.subject, b.subject) ||
		    !str_eq(a.from, b.from) || !str_eq(a.to, b.to) || a.date != b.date)
			fail_msg("%s, first %zu bytes: filtered and whole parse differ", what, n);
		msgmeta_release(&a);
		msgmeta_release(&b);
	}
}

/* Over odd blocks, and over each file of the directories in
 * $MAILDISK_MSGMETA_CORPUS (colon-separated; meson gives the parts corpus,
 * a mailgen.py directory may be given by hand). */
static void test_filtered_same_as_whole(void **state)
{
	static const char *const odd[] = {
		"From a@b Sat Jan  3 01:05:34 1996\nSubject: s\nFrom: x@y\n\n",
		"bogus\nSubject: s\n\n",
		"Subject: s\nbogus line\n folded\nTo: a@b, c@d\nTo: e@f\n\n",
		"Received: from x\n\tby y\nSubject: one\nSubject: two\nDate: Mon, 2 Jan 2006 15:04:05 -0700\n\n",
		"Message-ID: <a@b>\r\nMessage-Id: <c@d>\r\nFROM: =?utf-8?q?J=C3=BCrgen?= <j@x>\r\n\r\n",
		"Subject : spaced\nSub ject: no\nTo:\n\n",
		"Subj\xe9\x63t: x\nSubject: caf\xe9\nFrom: \xe9 <a@b>\n\n",
		"X-A: 1\nbody line\n",
		"Subject: a\r\n\rX\nTo: b\n\n",
	};
	const char *env = getenv("MAILDISK_MSGMETA_CORPUS");
	char *dirs = strdup(env ? env : ""), *save = NULL;
	int files = 0;

	(void)state;
	for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
		same_as_whole(odd[i], strlen(odd[i]), odd[i]);
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		DIR *dir = opendir(d);
		struct dirent *e;

		assert_non_null(dir);
		while ((e = readdir(dir))) {
			char path[4096];
			gchar *data;
			gsize n;

			snprintf(path, sizeof path, "%s/%s", d, e->d_name);
			if (e->d_name[0] == '.' || !g_file_get_contents(path, &data, &n, NULL))
				continue;
			size_t hl = msgmeta_header_len(data, n);

			same_as_whole(data, hl ? hl : n, path);
			g_free(data);
			files++;
		}
		closedir(dir);
	}
	if (env)
		printf("compared %d files\n", files);
	free(dirs);
}

/* From and To read as GMime writes an address list unencoded, except
 * that a domain stays as the message wrote it (no IDN ASCII form). */
static void test_addresses_like_gmime(void **state)
{
	static const char *const lists[] = {
		"Alice <alice@example.com>",
		"alice@example.com",
		"\"Doe, John\" <john@example.com>",
		"John Q. Public <jqp@example.com>",
		"a@x.org, B <b@y.org>, \"C, c\" <c@z.org>",
		"Undisclosed recipients:;",
		"Team: a@x.org, Bob <b@x.org>;, after@x.org",
		"=?UTF-8?Q?J=C3=BCrgen?= <j@example.de>",
		"\"say \\\"hi\\\"\" <q@x.org>",
		"(a comment) c@x.org",
		"<bare@x.org>",
		"Name Only <>",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		InternetAddressList *l = internet_address_list_parse(NULL, lists[i]);
		gchar *want = l ? internet_address_list_to_string(l, NULL, FALSE) : NULL;
		char hdr[512];
		struct msgmeta m;

		snprintf(hdr, sizeof hdr, "From: %s\r\nTo: %s\r\n\r\n", lists[i], lists[i]);
		assert_int_equal(msgmeta_parse(hdr, strlen(hdr), &m), 0);
		if (want && *want) {
			if (!m.from || strcmp(m.from, want) != 0)
				fail_msg("%s: got [%s], GMime [%s]", lists[i], m.from ? m.from : "(null)", want);
			assert_string_equal(m.to, want);
		} else {
			assert_null(m.from);
		}
		msgmeta_release(&m);
		g_free(want);
		if (l)
			g_object_unref(l);
	}
}

static void test_address_domain_as_written(void **state)
{
	static const char hdr[] = "From: Ann <ann@b\xc3\xbc" "cher.example>\r\n\r\n";
	struct msgmeta m;

	(void)state;
	assert_int_equal(msgmeta_parse(hdr, strlen(hdr), &m), 0);
	assert_string_equal(m.from, "Ann <ann@b\xc3\xbc" "cher.example>");
	msgmeta_release(&m);
}

int main(void)
{
	msgmeta_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_addresses_like_gmime),
		cmocka_unit_test(test_address_domain_as_written),
		cmocka_unit_test(test_empty_and_header_len),
		cmocka_unit_test(test_header_split_anywhere),
		cmocka_unit_test(test_header_piece_after_line_break),
		cmocka_unit_test(test_header_keep),
		cmocka_unit_test(test_filtered_same_as_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
