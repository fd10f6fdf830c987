/* libFuzzer target for cache/names.c: the one way a server's or a
 * message's text becomes a path component or a file name.
 *
 * Input layout: byte 0 picks the hierarchy delimiter for names_folder_path
 * (0 for none), bytes 1..8 are a date for names_message_file, the rest is
 * the name or subject. Invariants:
 *   names_escape: the result is a safe component (1 to 255 bytes, valid
 *     UTF-8, no '/', NUL or control byte, no leading '.', so never "." or
 *     ".."), and names_unescape gives back exactly the input; a refused
 *     name leaves the output as it was (only -ENAMETOOLONG may refuse).
 *   names_unescape: what it accepts escapes back to exactly the input
 *     (canonical forms only); a refusal leaves the output as it was.
 *   names_folder_path: '/'-separated safe components, none of them a
 *     Maildir subdirectory name, that names_folder_unescape decodes and
 *     that join with the delimiter to the folder name again.
 *   names_message_file: a safe component of at most 255 bytes that starts
 *     "YYYY-MM-DD HHMM " and ends " ~<tag>.eml", the same every time.
 *   names_tag: len lower-case hex digits, the same every time.
 * Every call appends to a buffer that already holds a prefix, which must
 * survive.
 *
 * Build: meson setup -Dfuzz=true (CC=clang), or clang -g -O1
 *        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
 *        -D_GNU_SOURCE cache/names.c cache/buf.c cache/log.c
 *        tests/fuzz/fuzz_names.c -lcrypto -o fuzz_names
 * Run:   ./fuzz_names -max_total_time=60 tests/fuzz/corpus/names */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../cache/log.h"
#include "../../cache/names.h"

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)
#define PREFIX "pre/"
#define PLEN 4

/* Strict UTF-8 (RFC 3629): no overlongs, surrogates or values past U+10FFFF. */
static bool utf8_valid(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		size_t len;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			len = 2, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			len = 3, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			len = 4, cp = c & 0x07;
		else
			return false;
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
			return false;
		i += len;
	}
	return true;
}

static void check_component(const char *s, size_t n)
{
	CHECK(n >= 1 && n <= NAMES_COMPONENT_MAX);
	CHECK(s[0] != '.');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		CHECK(c != '/' && c >= 0x20 && c != 0x7F);
	}
	CHECK(utf8_valid((const unsigned char *)s, n));
}

static void start(struct buf *b)
{
	buf_reset(b);
	CHECK(buf_appends(b, PREFIX) == 0);
}

static void prefix_intact(const struct buf *b)
{
	CHECK(b->len >= PLEN && memcmp(b->data, PREFIX, PLEN) == 0);
	CHECK(b->data[b->len] == '\0');
}

static void fuzz_escape(const char *in, size_t n, struct buf *a, struct buf *b)
{
	int rc;

	start(a);
	rc = names_escape(in, n, a);
	prefix_intact(a);
	if (rc != 0) {
		CHECK(rc == -ENAMETOOLONG);
		CHECK(a->len == PLEN);
		return;
	}
	check_component(a->data + PLEN, a->len - PLEN);
	start(b);
	CHECK(names_unescape(a->data + PLEN, a->len - PLEN, b) == 0);
	prefix_intact(b);
	CHECK(b->len - PLEN == n && memcmp(b->data + PLEN, in, n) == 0);
}

static void fuzz_unescape(const char *in, size_t n, struct buf *a, struct buf *b)
{
	int rc;

	start(a);
	rc = names_unescape(in, n, a);
	prefix_intact(a);
	if (rc != 0) {
		CHECK(a->len == PLEN);
		return;
	}
	start(b);
	CHECK(names_escape(a->data + PLEN, a->len - PLEN, b) == 0);
	CHECK(b->len - PLEN == n && memcmp(b->data + PLEN, in, n) == 0);
	check_component(in, n);
}

static void fuzz_folder(const char *name, char delim, struct buf *a, struct buf *b)
{
	size_t n = strlen(name);
	const char *c, *end;
	int rc;

	start(a);
	rc = names_folder_path(name, delim, a);
	prefix_intact(a);
	if (rc != 0) {
		CHECK(rc == -ENAMETOOLONG);
		CHECK(a->len == PLEN);
		return;
	}
	/* Unescape each component and join them with the delimiter. */
	start(b);
	c = a->data + PLEN;
	end = a->data + a->len;
	for (bool first = true;; first = false) {
		const char *slash = memchr(c, '/', (size_t)(end - c));
		size_t cl = slash ? (size_t)(slash - c) : (size_t)(end - c);

		check_component(c, cl);
		if (!first)
			CHECK(buf_appendc(b, delim) == 0);
		CHECK(!names_is_maildir_sub(c, cl));
		CHECK(names_folder_unescape(c, cl, b) == 0);
		if (!slash)
			break;
		CHECK(delim != 0);
		c = slash + 1;
	}
	CHECK(b->len - PLEN == n && memcmp(b->data + PLEN, name, n) == 0);
}

static void fuzz_message_file(int64_t date, const char *subject, struct buf *a, struct buf *b)
{
	char tag[17], tag2[17];
	size_t n;

	names_tag("acct", subject, (uint32_t)date, "42", tag, 8);
	names_tag("acct", subject, (uint32_t)date, "42", tag2, 8);
	CHECK(strlen(tag) == 8 && strcmp(tag, tag2) == 0);
	for (size_t i = 0; i < 8; i++)
		CHECK((tag[i] >= '0' && tag[i] <= '9') || (tag[i] >= 'a' && tag[i] <= 'f'));

	start(a);
	CHECK(names_message_file(date, subject, tag, a) == 0);
	prefix_intact(a);
	start(b);
	CHECK(names_message_file(date, subject, tag, b) == 0);
	CHECK(a->len == b->len && memcmp(a->data, b->data, a->len) == 0);

	const char *s = a->data + PLEN;
	n = a->len - PLEN;
	check_component(s, n);
	CHECK(n > 16 + 2 + 8 + 4);
	for (size_t i = 0; i < 16; i++)
		CHECK(i == 4 || i == 7 ? s[i] == '-' : i == 10 || i == 15 ? s[i] == ' '
			: s[i] >= '0' && s[i] <= '9');
	CHECK(memcmp(s + n - 4, ".eml", 4) == 0);
	CHECK(memcmp(s + n - 4 - 8 - 2, " ~", 2) == 0 && memcmp(s + n - 12, tag, 8) == 0);
	/* A bad tag is refused, never put in a name. */
	start(a);
	CHECK(names_message_file(date, subject, "a/b", a) == -EINVAL);
	CHECK(names_message_file(date, subject, "", a) == -EINVAL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_init("fuzz_names", false, LOG_LVL_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf a = BUF_INIT(1 << 20), b = BUF_INIT(1 << 20);
	char delim = size ? (char)data[0] : 0;
	int64_t date = 0;
	size_t off = size > 9 ? 9 : size;
	size_t n = size - off;
	/* exact-size copies, so ASan sees reads past the end */
	char *whole = malloc(size ? size : 1);
	char *str = malloc(n + 1);

	CHECK(whole && str);
	memcpy(whole, data, size);
	memcpy(str, data + off, n);
	str[n] = '\0';
	if (size > 9)
		memcpy(&date, data + 1, sizeof(date));

	fuzz_escape(whole, size, &a, &b);
	fuzz_unescape(whole, size, &a, &b);
	fuzz_folder(str, delim == '\0' ? 0 : delim, &a, &b);
	fuzz_message_file(date, str, &a, &b);
	fuzz_message_file(date, NULL, &a, &b);

	buf_release(&a);
	buf_release(&b);
	free(whole);
	free(str);
	return 0;
}
