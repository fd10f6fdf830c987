/* json: JSON text (RFC 8259) written into a struct buf, for the machine
 * readable output of `maildisk status --json`.
 *
 * Strings reaching it (folder names, server error messages) may hold any
 * bytes, so every input becomes a valid JSON string: '"', '\\' and the
 * control characters U+0000-U+001F and U+007F are escaped, well-formed UTF-8
 * (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF) is
 * copied as it is, and every other byte becomes U+FFFD, one for each byte.
 * Any thread; no global state. */
#ifndef MAILDISK_JSON_H
#define MAILDISK_JSON_H

#include <stddef.h>
#include <stdint.h>
#include "../cache/buf.h"

/* Appends s (len bytes, NUL bytes included) as a quoted JSON string.
 * 0, or buf_append's -ENOMEM / -E2BIG (b then holds a partial string). */
int json_append_string(struct buf *b, const char *s, size_t len);

/* Appends s as a JSON string, or null when s is NULL. */
int json_append_cstr(struct buf *b, const char *s);

/* Appends v as a JSON number, or null when v <= 0 (a time never set). */
int json_append_time(struct buf *b, int64_t v);

#endif
