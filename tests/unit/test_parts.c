/* Unit tests for cache/parts*.c: the layout and names of a message's parts,
 * and that every part reads back, whole or in pieces, as GMime decodes it
 * (the oracle is parts_check.h); hostile structures stay bounded. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cmocka.h>

#include "../../cache/buf.h"
#include "../../cache/parts.h"
#include "parts_check.h"

/* Analyses msg (len bytes), checks every part against GMime, returns the
 * records (and the file in *fd_r when asked). */
static struct parts_list analyse(const char *msg, size_t len, int *fd_r)
{
	struct parts_list l;
	const char *why = NULL;
	int fd = parts_check_file(msg, len);

	assert_int_equal(parts_analyse(fd, len, &l), 0);
	if (!parts_check_all(fd, len, &l, 8, (unsigned)len, &why))
		fail_msg("%s", why ? why : "records without a message");
	if (fd_r)
		*fd_r = fd;
	else
		close(fd);
	return l;
}

static const struct part_rec *find(const struct parts_list *l, int parent, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].parent == parent && !strcmp(l->v[i].name, name))
			return &l->v[i];
	return NULL;
}

static char *read_all(int fd, const struct part_rec *r)
{
	struct parts_cursors *c;
	char *b = malloc(r->size + 1);

	assert_int_equal(parts_cursors_create(&c), 0);
	assert_int_equal(parts_read(c, 1, fd, r, b, r->size, 0), r->size);
	b[r->size] = '\0';
	parts_cursors_destroy(&c);
	return b;
}

/* Every name obeys parts.h: no '/', no control byte, at most 255 bytes,
 * unique in its directory, not "." or "..", no leading dot. */
static void assert_names_ok(const struct parts_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const char *s = l->v[i].name;

		assert_int_equal(l->v[i].n, (int)i + 1);
		assert_true(strlen(s) > 0 && strlen(s) <= PARTS_NAME_MAX);
		assert_true(g_utf8_validate(s, -1, NULL));
		assert_null(strchr(s, '/'));
		assert_true(s[0] != '.');
		for (const char *p = s; *p; p++)
			assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
		for (size_t j = 0; j < i; j++)
			assert_false(l->v[j].parent == l->v[i].parent && !strcmp(l->v[j].name, s));
	}
}

#define HDR "From: a@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\n"

static void test_alternative(void **state)
{
	(void)state;
	static const char m[] = HDR
		"Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n"
		"--o\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n"
		"--a\r\nContent-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
		"Caf=C3=A9 soft=\r\nbreak =3D end\r\n"
		"--a\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--a--\r\n"
		"--o\r\nContent-Type: text/plain\r\n\r\nsecond body\r\n"
		"--o\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"iVBORw0KGgo=\r\n--o--\r\n";
	int fd;
	struct parts_list l = analyse(m, sizeof m - 1, &fd);

	assert_names_ok(&l);
	assert_int_equal(l.n, 4);
	const struct part_rec *t = find(&l, 0, "body.txt");

	assert_non_null(t);
	assert_int_equal(t->enc, PART_ENC_QP);
	char *s = read_all(fd, t);

	assert_string_equal(s, "Caf\xc3\xa9 softbreak = end");
	free(s);
	assert_non_null(find(&l, 0, "body.html"));
	assert_non_null(find(&l, 0, "body (2).txt"));
	const struct part_rec *png = find(&l, 0, "part 4.png");

	assert_non_null(png);
	assert_string_equal(png->content_type, "image/png");
	assert_int_equal(png->size, 8);
	parts_list_release(&l);
	close(fd);
}

/* An attachment part named by a header value (the rest of its headers
 * fixed). */
static void add_named(struct buf *b, const char *disp_params)
{
	buf_printf(b, "--b\r\nContent-Type: application/octet-stream\r\n"
		   "Content-Disposition: attachment;%s\r\n"
		   "Content-Transfer-Encoding: base64\r\n\r\nQUJD\r\n", disp_params);
}

static void test_names(void **state)
{
	(void)state;
	struct buf b = BUF_INIT(4 << 20);

	buf_appends(&b, HDR "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	add_named(&b, " filename*=utf-8''na%C3%AFve%20r%C3%A9sum%C3%A9.pdf");
	add_named(&b, " filename=\"=?utf-8?B?w7xiZXIudHh0?=\"");
	add_named(&b, " filename=\"a.pdf\"");
	add_named(&b, " filename=\"a.pdf\"");
	add_named(&b, " filename=\"a.pdf\"");
	add_named(&b, " filename=\"../../x\"");
	add_named(&b, " filename=\"..\"");
	add_named(&b, " filename=\".hidden\"");
	add_named(&b, " filename=\"c:\\\\dir\\\\win.doc\"");
	add_named(&b, " filename*=utf-8''tab%09bell%07del%7F.txt");
	buf_appends(&b, "--b\r\nContent-Type: application/x-unknown-thing\r\n\r\nzz\r\n");
	buf_appends(&b, "--b\r\nContent-Disposition: attachment; filename=\"");
	for (int i = 0; i < (1 << 20) / 10; i++)
		buf_appends(&b, "\xc3\xa9long name");
	buf_appends(&b, ".tar.gz\"\r\n\r\nbig\r\n--b--\r\n");

	struct parts_list l = analyse(b.data, b.len, NULL);

	assert_names_ok(&l);
	assert_int_equal(l.n, 12);
	assert_string_equal(l.v[0].name, "na\xc3\xafve r\xc3\xa9sum\xc3\xa9.pdf");
	assert_string_equal(l.v[1].name, "\xc3\xbc" "ber.txt");
	assert_string_equal(l.v[2].name, "a.pdf");
	assert_string_equal(l.v[3].name, "a (2).pdf");
	assert_string_equal(l.v[4].name, "a (3).pdf");
	assert_string_equal(l.v[5].name, "x");
	assert_string_equal(l.v[6].name, "part 7.bin");
	assert_string_equal(l.v[7].name, "_hidden");
	assert_string_equal(l.v[8].name, "win.doc");
	assert_string_equal(l.v[9].name, "tab_bell_del_.txt");
	assert_string_equal(l.v[10].name, "part 11.bin");
	assert_int_equal(strlen(l.v[11].name) <= PARTS_NAME_MAX, 1);
	assert_true(g_str_has_suffix(l.v[11].name, ".gz"));
	assert_true(strlen(l.v[11].name) >= PARTS_NAME_MAX - 1);
	parts_list_release(&l);
	buf_release(&b);
}

static void test_nested(void **state)
{
	(void)state;
	static const char m[] = HDR
		"Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n"
		"--o\r\nContent-Type: text/plain\r\n\r\nouter\r\n"
		"--o\r\nContent-Type: message/rfc822\r\n\r\n"
		"From: b@example.org\r\nSubject: Fwd: report/2026\r\n"
		"Content-Type: multipart/mixed; boundary=\"i\"\r\n\r\n"
		"--i\r\nContent-Type: text/plain\r\n\r\ninner\r\n"
		"--i\r\nContent-Type: text/csv; name=\"r.csv\"\r\n"
		"Content-Disposition: attachment\r\n\r\na,b\r\n--i--\r\nepilogue\r\n"
		"--o--\r\n";
	int fd;
	struct parts_list l = analyse(m, sizeof m - 1, &fd);

	assert_names_ok(&l);
	assert_int_equal(l.n, 5);
	const struct part_rec *eml = find(&l, 0, "Fwd: report_2026.eml");
	const struct part_rec *dir = find(&l, 0, "Fwd: report_2026");

	assert_non_null(eml);
	assert_non_null(dir);
	assert_int_equal(dir->kind, PART_DIR);
	char *raw = read_all(fd, eml);

	assert_true(g_str_has_prefix(raw, "From: b@example.org\r\n"));
	assert_true(g_str_has_suffix(raw, "--i--\r\nepilogue"));
	free(raw);
	assert_non_null(find(&l, dir->n, "body.txt"));
	assert_non_null(find(&l, dir->n, "r.csv"));
	parts_list_release(&l);
	close(fd);
}

static void test_deep(void **state)
{
	(void)state;
	struct buf b = BUF_INIT(64 << 20);

	buf_appends(&b, HDR);
	for (int i = 0; i < 100; i++)
		buf_printf(&b, "Content-Type: multipart/mixed; boundary=\"d%d\"\r\n\r\n--d%d\r\n"
			   "Content-Type: text/plain\r\n\r\nlevel %d\r\n--d%d\r\n"
			   "Content-Type: message/rfc822\r\n\r\nSubject: level %d\r\n", i, i, i, i, i);
	buf_appends(&b, "\r\nbottom\r\n");
	struct parts_list l = analyse(b.data, b.len, NULL);
	int dirs = 0;

	assert_names_ok(&l);
	for (size_t i = 0; i < l.n; i++)
		dirs += l.v[i].kind == PART_DIR;
	assert_int_equal(dirs, PARTS_DEPTH_MAX);
	parts_list_release(&l);

	/* 10,000 parts: PARTS_MAX records */
	buf_reset(&b);
	buf_appends(&b, HDR "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	for (int i = 0; i < 10000; i++)
		buf_appends(&b, "--b\r\nContent-Type: text/plain; name=p.txt\r\n\r\nx\r\n");
	l = analyse(b.data, b.len, NULL);
	assert_int_equal(l.n, PARTS_MAX);
	assert_string_equal(l.v[PARTS_MAX - 1].name, "p (1000).txt");
	parts_list_release(&l);

	/* a boundary a million times: parsed up to the cut, nothing reaching it */
	buf_reset(&b);
	buf_appends(&b, HDR "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	for (int i = 0; i < 1000000; i++)
		buf_appends(&b, "--b\r\n");
	l = analyse(b.data, b.len, NULL);
	assert_true(l.n <= PARTS_MAX);
	parts_list_release(&l);
	buf_release(&b);
}

static void test_malformed(void **state)
{
	(void)state;
	static const char *const msgs[] = {
		/* missing boundary: the part runs to the end */
		HDR "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
		"Content-Type: text/plain\r\n\r\nno end",
		/* no boundary parameter */
		HDR "Content-Type: multipart/mixed\r\n\r\n--b\r\n\r\nx\r\n",
		/* bad base64 */
		HDR "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"QU!!JD=x=\r\n====\r\n\x80\xffQQ\r\nQUJ\r\n",
		/* 0-byte body, headers only, no Content-Type, nothing at all */
		HDR "Content-Type: text/plain\r\n\r\n",
		HDR,
		"Subject: x\r\n\r\nbody\r\n",
		"no headers at all",
		"",
		/* uuencode */
		HDR "Content-Type: application/octet-stream; name=u.bin\r\n"
		"Content-Transfer-Encoding: x-uuencode\r\n\r\n"
		"junk\r\nbegin 644 u.bin\r\n#86)C\r\n`\r\nend\r\n",
	};

	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
		struct parts_list l = analyse(msgs[i], strlen(msgs[i]), NULL);

		assert_names_ok(&l);
		parts_list_release(&l);
	}
}

/* Single-part mail, which parts.c parses from its header block alone: the
 * records are those of a full parse (parts_check_fast, through analyse). */
static void test_single_part(void **state)
{
	(void)state;
	static const char *const msgs[] = {
		HDR "Content-Type: text/plain; charset=iso-8859-1\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n\r\n",
		HDR "Content-Type: application/pdf; name=\"=?utf-8?q?r=C3=A9sum=C3=A9?=.pdf\"\r\n"
		"Content-Disposition: attachment\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n\r\n--x\r\n",
		/* LF only; a folded header; a blank line inside the body */
		"Subject: a\n b\nContent-Type: text/html\n\n<p>\n\n</p>\n",
		/* a line that is no header before the empty line */
		"Subject: a\r\nnot a header\r\nContent-Type: image/png\r\n\r\nxx",
		/* a header line of blanks only; "\r" alone; "\n\r\n" */
		"Subject: a\r\n \r\nContent-Type: text/plain\r\n\r\nx",
		"Subject: a\r\r\n\r\nx\r\n",
		"Subject: a\n\r\nx",
		/* an mbox From line; a body that is one empty line */
		"From a@b Mon Jan  1 00:00:00 2024\nSubject: a\n\nbody\n",
		"Subject: a\r\n\r\n\r\n",
		/* not single parts: the full parse is used */
		HDR "Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner\r\n",
		HDR "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
		HDR "Content-Type: multipart/mixed; boundary=b\r\n\r\nno parts at all\r\n",
	};

	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
		struct parts_list l = analyse(msgs[i], strlen(msgs[i]), NULL);

		assert_names_ok(&l);
		parts_list_release(&l);
	}

	/* over 1 MiB (read through GMimeStreamFs), and a body cut short by
	 * PARTS_SCAN_LINES: dropped either way */
	for (int cut = 0; cut < 2; cut++) {
		struct buf b = BUF_INIT(8 << 20);

		buf_appends(&b, HDR "Content-Type: application/zip; name=z.zip\r\n"
			    "Content-Transfer-Encoding: base64\r\n\r\n");
		for (int i = 0; i < 30000; i++)
			buf_appends(&b, cut ? "--QUJD\r\n" : "QUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJD\r\n");
		struct parts_list l = analyse(b.data, b.len, NULL);

		assert_int_equal(l.n, cut ? 0 : 1);
		parts_list_release(&l);
		buf_release(&b);
	}
}

static void test_charsets(void **state)
{
	(void)state;
	static const char latin1[] = HDR
		"Content-Type: text/plain; charset=iso-8859-1\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
		"Gr=FC=DFe, gar=E7on=\r\n na=EFve\r\n";
	static const char jis[] = HDR
		"Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
		"\x1b$B$3$s$K$A$O\x1b(B world\r\n";
	int fd;
	struct parts_list l = analyse(latin1, sizeof latin1 - 1, &fd);

	assert_int_equal(l.n, 1);
	assert_non_null(l.v[0].charset);
	char *s = read_all(fd, &l.v[0]);

	assert_string_equal(s, "Gr\xc3\xbc\xc3\x9f" "e, gar\xc3\xa7on na\xc3\xafve\r\n");
	free(s);
	parts_list_release(&l);
	close(fd);
	l = analyse(jis, sizeof jis - 1, &fd);
	s = read_all(fd, &l.v[0]);
	assert_string_equal(s, "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf world\r\n");
	free(s);
	parts_list_release(&l);
	close(fd);
}

/* Large encoded parts: irregular lines, garbage, stray '=' (which GMime
 * decodes differently by where its 4096-byte reads fall), long QP. */
static void test_big_irregular(void **state)
{
	(void)state;
	struct buf b = BUF_INIT(16 << 20);
	unsigned seed = 7;
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	buf_appends(&b, HDR "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
		    "--b\r\nContent-Type: application/zip; name=a.zip\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n");
	for (int i = 0; i < 400000; i++) {
		seed = seed * 1103515245u + 12345u;
		unsigned r = seed >> 16;

		if (r % 97 == 0)
			buf_appendc(&b, '=');
		else if (r % 89 == 0)
			buf_appends(&b, "!*\t");
		else if (r % 61 == 0)
			buf_appends(&b, "\r\n");
		else
			buf_appendc(&b, b64[r % 64]);
	}
	buf_appends(&b, "\r\n--b\r\nContent-Type: text/plain; name=q.txt\r\n"
		    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	for (int i = 0; i < 60000; i++)
		buf_appends(&b, i % 3 ? "abc=3D=\r\n" : "x=E9y=\n=41 ");
	buf_appends(&b, "\r\n--b\r\nContent-Type: application/pdf; name=p.pdf\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n");
	for (int i = 0; i < 20000; i++)
		buf_appends(&b, "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZQ==\r\n");
	/* a quartet with '=' ending GMime's first 4096-byte read */
	buf_appends(&b, "--b\r\nContent-Type: image/gif; name=g.gif\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n");
	for (int i = 0; i < 1023; i++)
		buf_appends(&b, "QUJD");
	buf_appends(&b, "QUI=QUJDQUJD\r\n--b--\r\n");

	struct parts_list l = analyse(b.data, b.len, NULL);

	assert_int_equal(l.n, 4);
	assert_true(l.v[1].n_marks > 0);
	parts_list_release(&l);
	buf_release(&b);
}

/* Base64 with no '=' but at its end, so parts_dec's own loop serves most
 * slices: lines of every length (quanta split by line ends), skipped bytes
 * (spaces, '*', bytes above 127) inside quanta, a part of a length that
 * leaves GMime 1 to 3 bytes of a quantum at every slice's end. */
static void test_base64_loop(void **state)
{
	(void)state;
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	static const char *const junk[] = { " ", "*", "\x80", "\xff\t", "\r", "\n\n" };

	for (int v = 0; v < 4; v++) {
		struct buf b = BUF_INIT(8 << 20);
		unsigned seed = 11 + v;
		int line = 0, width = 1 + v * 25;

		buf_appends(&b, HDR "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
			    "--b\r\nContent-Type: application/octet-stream; name=x.bin\r\n"
			    "Content-Transfer-Encoding: base64\r\n\r\n");
		for (int i = 0; i < 300000 + v; i++) {
			seed = seed * 1103515245u + 12345u;
			unsigned r = seed >> 16;

			if (v >= 2 && r % 53 == 0)
				buf_appends(&b, junk[r % 6]);
			buf_appendc(&b, b64[r % 64]);
			if (++line == width) {
				buf_appends(&b, v % 2 ? "\n" : "\r\n");
				line = 0;
				width = 1 + (r >> 6) % 100;
			}
		}
		buf_appends(&b, "==\r\n--b--\r\n");

		struct parts_list l = analyse(b.data, b.len, NULL);

		assert_int_equal(l.n, 1);
		assert_true(l.v[0].n_marks > 2);
		parts_list_release(&l);
		buf_release(&b);
	}
}

static long rss_kb(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%ld %ld", &pages, &rss), 2);
	fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* 50 MB of base64, read sequentially in 128 KiB reads: one pass, memory
 * that does not grow with the part. */
static void test_50mb(void **state)
{
	(void)state;
	enum { RAW = 50 << 20, LINE = 57 };
	int fd = memfd_create("big", 0);
	struct buf b = BUF_INIT(1 << 20);
	unsigned char line[LINE];
	uint32_t x = 1;

	buf_appends(&b, HDR "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
		    "Content-Type: application/octet-stream; name=big.bin\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n");
	for (size_t done = 0; done < RAW; done += LINE) {
		for (int i = 0; i < LINE; i++)
			line[i] = (x = x * 1664525u + 1013904223u) >> 24;
		gchar *e = g_base64_encode(line, LINE);

		buf_appends(&b, e);
		buf_appends(&b, "\r\n");
		g_free(e);
		if (b.len > (1 << 19)) {
			assert_int_equal(write(fd, b.data, b.len), b.len);
			buf_reset(&b);
		}
	}
	buf_appends(&b, "--b--\r\n");
	assert_int_equal(write(fd, b.data, b.len), b.len);
	buf_release(&b);
	off_t size = lseek(fd, 0, SEEK_END);
	struct parts_list l;
	struct parts_cursors *c;
	size_t raw_len = (RAW + LINE - 1) / LINE * LINE;
	char *chunk = malloc(128 << 10);
	clock_t t0 = clock();

	assert_int_equal(parts_analyse(fd, size, &l), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.v[0].size, (int64_t)raw_len);
	assert_true(l.v[0].n_marks >= raw_len / PARTS_MARK_EVERY / 2);
	assert_int_equal(parts_cursors_create(&c), 0);

	long rss0 = rss_kb(), peak = rss0;
	int64_t off = 0;

	x = 1;
	while (off < (int64_t)raw_len) {
		ssize_t n = parts_read(c, 9, fd, &l.v[0], chunk, 128 << 10, off);

		assert_true(n > 0);
		for (ssize_t i = 0; i < n; i++) {
			x = x * 1664525u + 1013904223u;
			if ((unsigned char)chunk[i] != (unsigned char)(x >> 24))
				fail_msg("byte %lld differs", (long long)(off + i));
		}
		off += n;
		long r = rss_kb();

		peak = r > peak ? r : peak;
	}
	assert_int_equal(parts_read(c, 9, fd, &l.v[0], chunk, 128 << 10, off), 0);
	print_message("50 MB base64: analyse + sequential read %.2f s CPU, RSS growth %ld KiB\n",
		      (double)(clock() - t0) / CLOCKS_PER_SEC, peak - rss0);
	assert_true(peak - rss0 < 8192);
	/* a read in the middle starts at a mark, not at the part's start */
	assert_int_equal(parts_read(c, 10, fd, &l.v[0], chunk, 10, raw_len / 2), 10);
	parts_cursors_destroy(&c);
	parts_list_release(&l);
	free(chunk);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alternative),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_deep),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_single_part),
		cmocka_unit_test(test_charsets),
		cmocka_unit_test(test_big_irregular),
		cmocka_unit_test(test_base64_loop),
		cmocka_unit_test(test_50mb),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
