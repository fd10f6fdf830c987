/* buf: the one growable byte buffer, with a hard maximum.
 *
 * Used for protocol lines, names and small strings; message bodies never go
 * in one (they stream to disk). data is always NUL-terminated after a
 * successful call, so it can be used as a C string when it holds text.
 * Not thread-safe: a buffer belongs to one thread at a time. */
#ifndef MAILDISK_BUF_H
#define MAILDISK_BUF_H

#include <stddef.h>
#include <stdarg.h>

struct buf {
	char *data;   /* owned; NULL until the first append */
	size_t len;   /* bytes used, excluding the terminating NUL */
	size_t cap;   /* bytes allocated */
	size_t max;   /* hard limit on len; an append past it fails */
};

#define BUF_INIT(maxbytes) { NULL, 0, 0, (maxbytes) }

void buf_init(struct buf *b, size_t max);
/* Frees the storage; the buffer can be reused after buf_init. */
void buf_release(struct buf *b);
/* Empties without freeing. */
void buf_reset(struct buf *b);

/* 0, or -ENOMEM, or -E2BIG when len would pass max (buffer unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_appendc(struct buf *b, char c);
int buf_appends(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);

/* Returns the data as a malloc'd string owned by the caller and leaves the
 * buffer empty (buf_init state, same max). Never NULL on success; NULL on
 * allocation failure. */
char *buf_detach(struct buf *b);

/* The one growth step for arrays of structs or pointers: makes room for
 * element n of the array *vp (vp is a T **, each element elem_size bytes,
 * *cap_r allocated). When n == *cap_r the array is reallocated to twice
 * *cap_r, or to first elements while it is empty. 0, or -ENOMEM with the
 * array and *cap_r unchanged. */
int buf_array_grow(void *vp, size_t *cap_r, size_t n, size_t elem_size, size_t first);

#endif
