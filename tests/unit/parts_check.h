/* parts_check: the oracle the parts tests share (tests/unit/test_parts.c,
 * tests/fuzz/fuzz_parts.c): every record read back through parts_read,
 * whole and in pieces, equals what GMime itself decodes from the same file.
 * Header only, static functions; returns false on the first difference and
 * says which in *why. */
#ifndef MAILDISK_TEST_PARTS_CHECK_H
#define MAILDISK_TEST_PARTS_CHECK_H

#include <gmime/gmime.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../cache/parts.h"
#include "../../cache/parts_int.h"

/* A file holding len bytes of data (memfd). */
static inline int parts_check_file(const void *data, size_t len)
{
	int fd = memfd_create("msg", 0);

	if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len))
		abort();
	return fd;
}

static inline bool parts_check_str_eq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* Whether the shortcut for single-part mail (fast) gives exactly the
 * records of a full parse, for the message in fd. */
static inline bool parts_check_fast(int fd, int64_t size, const struct parts_list *l)
{
	struct parts_list full;
	bool same;

	if (parts_analyse_how(fd, size, false, &full) != 0)
		return false;
	same = full.n == l->n;
	for (size_t i = 0; same && i < l->n; i++) {
		const struct part_rec *a = &l->v[i], *b = &full.v[i];

		same = a->n == b->n && a->parent == b->parent && a->kind == b->kind &&
		       a->enc == b->enc && a->off == b->off && a->len == b->len &&
		       a->size == b->size && a->n_marks == b->n_marks &&
		       parts_check_str_eq(a->name, b->name) &&
		       parts_check_str_eq(a->content_type, b->content_type) &&
		       parts_check_str_eq(a->charset, b->charset) &&
		       (!a->n_marks || !memcmp(a->marks, b->marks, a->n_marks * sizeof(*a->marks)));
	}
	parts_list_release(&full);
	return same;
}

struct parts_check_ref {
	GHashTable *by_off;   /* bound_start -> GMimePart */
	GMimeMessage *msg;
};

static inline void parts_check_collect(GMimeObject *parent, GMimeObject *part, gpointer data)
{
	struct parts_check_ref *ref = data;

	(void)parent;
	if (GMIME_IS_PART(part)) {
		GMimeDataWrapper *w = g_mime_part_get_content((GMimePart *)part);
		GMimeStream *s = w ? g_mime_data_wrapper_get_stream(w) : NULL;

		if (s)
			g_hash_table_insert(ref->by_off, GINT_TO_POINTER((gint)s->bound_start), part);
	} else if (GMIME_IS_MESSAGE_PART(part)) {
		GMimeMessage *m = g_mime_message_part_get_message((GMimeMessagePart *)part);

		if (m)
			g_mime_message_foreach(m, parts_check_collect, data);
	}
}

/* What GMime gives for the part a record points at: its data wrapper's
 * decoding, through the charset filter for a converted body, which is what
 * g_mime_text_part_get_text does (that returns a C string, so it is
 * compared only up to a NUL byte). */
static inline GByteArray *parts_check_expected(GMimePart *part, const struct part_rec *r)
{
	GByteArray *a = g_byte_array_new();
	GMimeStream *mem = g_mime_stream_mem_new();
	GMimeStream *out = g_mime_stream_filter_new(mem);

	if (r->charset) {
		GMimeFilter *f = g_mime_filter_charset_new(r->charset, "utf-8");

		g_mime_stream_filter_add((GMimeStreamFilter *)out, f);
		g_object_unref(f);
	}
	g_mime_data_wrapper_write_to_stream(g_mime_part_get_content(part), out);
	g_mime_stream_flush(out);
	GByteArray *b = g_mime_stream_mem_get_byte_array((GMimeStreamMem *)mem);

	g_byte_array_append(a, b->data, b->len);
	g_object_unref(out);
	g_object_unref(mem);
	if (r->charset && GMIME_IS_TEXT_PART(part)) {
		char *t = g_mime_text_part_get_text((GMimeTextPart *)part);

		if (strlen(t) > a->len || (strlen(t) && memcmp(t, a->data, strlen(t))))
			abort();
		g_free(t);
	}
	return a;
}

static inline bool parts_check_read(struct parts_cursors *c, uint64_t key, int fd,
				    const struct part_rec *r, const guint8 *want, int64_t off,
				    size_t len, const char **why)
{
	char *buf = malloc(len + 1);
	ssize_t got = parts_read(c, key, fd, r, buf, len, off);
	size_t exp = off >= r->size ? 0 : (size_t)(r->size - off < (int64_t)len ? r->size - off : (int64_t)len);
	bool ok = got == (ssize_t)exp && (exp == 0 || !memcmp(buf, want + off, exp));

	free(buf);
	if (!ok)
		*why = "a read differs from GMime's decoding";
	return ok;
}

/* Checks every file record of l, for the message in fd (size bytes):
 * whole reads, splits at `splits` pseudo-random offsets, reads at each
 * mark. */
static inline bool parts_check_all(int fd, int64_t size, const struct parts_list *l, int splits,
				   unsigned seed, const char **why)
{
	struct parts_check_ref ref = { g_hash_table_new(NULL, NULL), NULL };
	struct parts_cursors *c;
	bool ok = true;

	*why = NULL;
	if (size <= 0)
		return l->n == 0;
	if (!parts_check_fast(fd, size, l)) {
		*why = "the single-part shortcut differs from a full parse";
		return false;
	}
	GMimeStream *s = g_mime_stream_mmap_new_with_bounds(dup(fd), PROT_READ, MAP_PRIVATE, 0, size);
	GMimeParser *p = g_mime_parser_new_with_stream(s);

	g_mime_parser_set_persist_stream(p, TRUE);
	ref.msg = g_mime_parser_construct_message(p, NULL);
	if (ref.msg)
		g_mime_message_foreach(ref.msg, parts_check_collect, &ref);
	if (ref.msg && g_mime_message_get_mime_part(ref.msg))
		parts_check_collect(NULL, g_mime_message_get_mime_part(ref.msg), &ref);
	parts_cursors_create(&c);
	for (size_t i = 0; ok && i < l->n; i++) {
		const struct part_rec *r = &l->v[i];
		GMimePart *part = g_hash_table_lookup(ref.by_off, GINT_TO_POINTER((gint)r->off));
		GByteArray *want;

		if (r->kind != PART_FILE)
			continue;
		if (!strcmp(r->content_type, "message/rfc822") && r->enc == PART_ENC_IDENTITY &&
		    !part) {
			/* a nested message: its raw bytes */
			want = g_byte_array_new();
			char *raw = malloc(r->len + 1);

			if (pread(fd, raw, r->len, r->off) != r->len)
				abort();
			g_byte_array_append(want, (guint8 *)raw, r->len);
			free(raw);
		} else if (!part) {
			*why = "a record points at no GMime part";
			ok = false;
			break;
		} else {
			want = parts_check_expected(part, r);
		}
		if ((int64_t)want->len != r->size) {
			*why = "the recorded size is not GMime's";
			ok = false;
		}
		ok = ok && parts_check_read(c, i + 1, fd, r, want->data, 0, r->size + 1, why);
		for (int k = 0; ok && k < splits && r->size > 0; k++) {
			seed = seed * 1103515245u + 12345u;
			int64_t at = (int64_t)(seed >> 4) % (r->size + 1);

			ok = parts_check_read(c, i + 1, fd, r, want->data, 0, at, why) &&
			     parts_check_read(c, i + 1, fd, r, want->data, at, r->size - at + 7, why);
			seed = seed * 1103515245u + 12345u;
			at = (int64_t)(seed >> 4) % (r->size + 1);
			ok = ok && parts_check_read(c, 1000 + i, fd, r, want->data, at, 1 + seed % 70000, why);
		}
		for (size_t m = 0; ok && m < r->n_marks; m++)
			ok = parts_check_read(c, 5000 + i, fd, r, want->data, r->marks[m].dec_off,
					      3 * 4096 + 1, why);
		g_byte_array_free(want, TRUE);
	}
	parts_cursors_destroy(&c);
	g_hash_table_destroy(ref.by_off);
	if (ref.msg)
		g_object_unref(ref.msg);
	g_object_unref(p);
	g_object_unref(s);
	return ok;
}

#endif
