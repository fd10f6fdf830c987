/* parts_int.h: what parts.c, parts_name.c and parts_read.c share (not for
 * other modules). */
#ifndef MAILDISK_PARTS_INT_H
#define MAILDISK_PARTS_INT_H

#include <gmime/gmime.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parts.h"

/* GMime's data wrapper decodes a part by reading its stream 4096 bytes at a
 * time (g_mime_stream_write_to_stream) and filtering each read. Some GMime
 * versions' base64 decoders treat a '=' differently when it ends a read, so
 * we slice the same way, from the part's start, and marks lie only on slice
 * boundaries: the bytes are GMime's whatever its decoder does there. */
#define PARTS_SLICE 4096

/* parts_analyse, with or without (fast false) its single-part shortcut
 * (parse_head in parts.c): the tests check that both give the same. */
int parts_analyse_how(int fd, int64_t size, bool fast, struct parts_list *out);

/* g_mime_init once per process, from any thread. */
void parts_gmime_init(void);

/* A decoder for one part: GMime's transfer decoder (GMimeFilterBasic, so
 * that uuencode's "begin" line is found as GMime finds it), then the
 * charset filter to UTF-8 when the record has a charset. */
struct parts_dec {
	GMimeFilter *basic;    /* owned, NULL for identity */
	GMimeFilter *charset;  /* owned, NULL without conversion */
	bool base64;           /* basic decodes base64: parts_dec_step's own loop may serve */
	char out[PARTS_SLICE]; /* that loop's output for one slice */
};

/* 0, or -ENOMEM, or -EIO when the record's charset is no longer known. */
int parts_dec_init(struct parts_dec *d, enum part_enc enc, const char *charset);
void parts_dec_release(struct parts_dec *d);
/* Decodes one slice (n <= PARTS_SLICE) and points *out at the result,
 * owned by the filters until the next call. At the end of the part, call it
 * once more with last (and n == 0): the filters are completed, as GMime's
 * stream flush completes them. */
void parts_dec_step(struct parts_dec *d, const char *in, size_t n, bool last,
		    const char **out, size_t *out_len);
/* Whether a fresh decoder started after the slices fed so far yields what
 * this one yields (no bits, '=' or pad count carried). */
bool parts_dec_clean(const struct parts_dec *d);

/* Names (parts_name.c). A set of the names taken in each directory. */
struct parts_names;
struct parts_names *parts_names_new(void);
void parts_names_free(struct parts_names *s);
/* The file name for raw (a decoded file name, any bytes, may be NULL) in
 * directory dir: sanitized, cut, made unique, and taken. fallback_stem and
 * fallback_ext ("part 3", ".pdf") serve when raw gives no usable name.
 * subject: raw is a subject, so '/' and '\\' are replaced, not cut at.
 * NULL on allocation failure. */
char *parts_name_file(struct parts_names *s, int dir, const char *raw, bool subject,
		      const char *fallback_stem, const char *fallback_ext);
/* For a nested message: a stem such that "<stem>.eml" and "<stem>" are both
 * free in dir; takes both and returns them. 0 or -ENOMEM. */
int parts_name_message(struct parts_names *s, int dir, const char *raw, bool subject,
		       const char *fallback_stem, char **eml_r, char **dir_r);
/* The extension for an unnamed part of this content type (".bin" when the
 * table does not know it). */
const char *parts_ext_for(const char *content_type);

#endif
