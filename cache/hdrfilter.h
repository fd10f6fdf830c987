/* hdrfilter: a message's header block cut down to the fields a caller
 * reads, so that GMime builds objects for those only (one GObject per
 * header line is most of what parsing a header costs).
 *
 * GMime 3.2 gives the same result for the filtered block as for the whole
 * one, for the fields kept: a header line is "name[ \t]*:" with a name of
 * bytes other than controls, space, DEL and ':'; lines that follow it and
 * begin with a space or a tab are its continuation; a line that is not a
 * header after one that is, is skipped by GMime and dropped here; before the
 * first header (an mbox "From " line, or garbage that makes GMime fail),
 * lines are kept as they are, so GMime sees the same start; so is a last
 * line cut by the end of the input inside its name (GMime fails on it). The block ends
 * at the first empty line (LF or CRLF), which is kept. */
#ifndef MAILDISK_HDRFILTER_H
#define MAILDISK_HDRFILTER_H

#include <stdbool.h>
#include <stddef.h>

/* Copies into out (room for len bytes: the result is never longer) the
 * fields of the header block at in[0..len) whose names are in names (a
 * NULL-terminated list, compared without case), in their order, each with
 * its continuation lines, then the empty line. Returns the length written;
 * *end gets where the block ends in in: after its empty line, else len. */
size_t hdrfilter(const char *in, size_t len, const char *const *names, char *out,
		 size_t *end);

/* True when the header block at in[0..len) ends with an empty line. */
bool hdrfilter_has_end(const char *in, size_t len);

/* In place, without moving a byte: when the header block at buf[0..len)
 * ends with an empty line, each field whose name is not in names (and
 * its continuation lines) is overwritten with a placeholder ("X:xxx",
 * continued " xxx"), consecutive ones as one field; line ends, wanted
 * fields and lines GMime skips stay. GMime then builds one header for
 * each run instead of one per field, and every offset stays the file's.
 * Returns the fields overwritten (0: nothing changed). */
size_t hdrfilter_blank(char *buf, size_t len, const char *const *names);

#endif
