/* parts: a stored message's MIME parts as ordinary files.
 *
 * At ingest (and once for messages stored before this existed) a message
 * file is read by GMime and its leaf parts become a list of records: where
 * the encoded bytes lie in the file, how they are encoded, what they decode
 * to (exact size), and the name the mount shows. The mount serves a part by
 * offset from the records, without parsing the message again.
 *
 * What the mount shows (fs/mnt_parts.c), for a message <stem>.eml:
 *
 *   <stem>/                     the message's parts directory
 *     body.txt                  the first inline text/plain part: transfer-
 *                               decoded, then converted from its charset
 *                               to UTF-8 (what g_mime_text_part_get_text
 *                               gives); line ends as they are
 *     body.html                 the first inline text/html part, likewise
 *     body (2).txt ...          further inline text parts
 *     <filename>                each attachment, transfer-decoded only
 *                               (byte-identical to what GMime decodes)
 *     part <n>.<ext>            an inline non-text part with no file name
 *                               (n: its position among the leaves of its
 *                               directory, from 1)
 *     <name>.eml                a nested message/rfc822: its raw bytes, from
 *                               its first header to the end of its part.
 *                               <name>: the part's filename or name
 *                               parameter (a trailing ".eml" dropped), else
 *                               its Subject, else "message <n>"
 *     <name>/                   and, beside it, its parts, laid out the same
 *                               way (down to PARTS_DEPTH_MAX nested levels;
 *                               its record's content_type is message/rfc822)
 *
 * Names: RFC 2231 and RFC 2047 file names decoded (GMime); only what follows
 * the last '/' or '\\' kept; control bytes, DEL and invalid UTF-8 become
 * '_'; a leading '.' becomes '_'; an empty name, "." or ".." becomes
 * "part <n>.<ext>"; cut at a UTF-8 boundary to PARTS_NAME_MAX bytes, the
 * extension (up to 16 bytes) kept; a name already taken in the same
 * directory (exact bytes, files and directories alike) gets " (2)", " (3)"
 * ... before its extension. The extension of an unnamed part comes from a
 * fixed table of content types (parts.c), ".bin" otherwise: names must not
 * depend on the machine.
 *
 * Hostile mail: a message is parsed only up to PARTS_SCAN_LINES lines that
 * begin with "--" (every boundary is one; this bounds GMime's memory and
 * recursion), at most PARTS_MAX records are kept, and a leaf cut by that
 * prefix is dropped. Such a message shows its .eml and the parts that could
 * honestly be decoded. A message GMime cannot parse at all has no parts
 * (n == 0) and no parts directory.
 *
 * Threads: nothing here is shared; a parts_cursors is locked inside. */
#ifndef MAILDISK_PARTS_H
#define MAILDISK_PARTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PARTS_MAX 1000            /* records (files and directories) per message */
#define PARTS_DEPTH_MAX 8         /* nested message levels shown as directories */
#define PARTS_NAME_MAX 255        /* bytes */
#define PARTS_SCAN_LINES 20000    /* "--" lines GMime is given at most */
#define PARTS_MARK_EVERY (64 << 10) /* decoded bytes between two resume marks */

enum part_enc {
	PART_ENC_IDENTITY = 0,    /* 7bit, 8bit, binary, none, unknown */
	PART_ENC_BASE64 = 1,
	PART_ENC_QP = 2,
	PART_ENC_UU = 3,
};

enum part_kind {
	PART_FILE = 0,
	PART_DIR = 1,             /* the parts of a nested message */
};

/* A resume mark: decoding may start afresh at enc_off (relative to the
 * part's off) and then yields the decoded bytes from dec_off on. */
struct part_mark {
	int64_t enc_off;
	int64_t dec_off;
};

struct part_rec {
	int n;                    /* 1..PARTS_MAX, in tree order; the inode's part number */
	int parent;               /* 0: the message's directory; else n of a PART_DIR */
	enum part_kind kind;
	char *name;               /* owned: the name in its directory */
	char *content_type;       /* owned: "type/subtype", lower case */
	enum part_enc enc;        /* transfer encoding of the bytes at off */
	char *charset;            /* owned, may be NULL: convert from it to UTF-8 (body parts only) */
	int64_t off, len;         /* the encoded bytes in the message file; a
	                           * nested .eml: its raw bytes (enc identity) */
	int64_t size;             /* exact decoded size (0 for a directory) */
	struct part_mark *marks;  /* owned, may be NULL: every PARTS_MARK_EVERY
	                           * decoded bytes, only for base64 and QP parts
	                           * without charset conversion */
	size_t n_marks;
};

struct parts_list {
	struct part_rec *v;       /* owned */
	size_t n;
};

/* Reads the message in fd (a regular file of size bytes; the offset of fd
 * is not used, and moved only where /proc/self/fd is missing) and fills
 * *out. 0 (out->n may be 0), or -ENOMEM / -EIO. A malformed message is not
 * an error: it has fewer parts. Memory (RSS included: no more than a few
 * MiB of the file is mapped in at a time) does not grow with the size of
 * the message's parts. */
int parts_analyse(int fd, int64_t size, struct parts_list *out);
void parts_list_release(struct parts_list *l);
void part_rec_release(struct part_rec *p);

/* True when the part's decoded bytes are its stored bytes (identity
 * encoding, no charset conversion): the mount reads them straight from the
 * file, at p->off + offset. */
bool part_is_plain(const struct part_rec *p);

/* Decoding cursors kept between the READs of a part, so that a sequential
 * reader costs one pass whatever the part's size. Bounded: at most
 * PARTS_CURSORS cursors, each with a fixed buffer; the least recently used
 * goes. Thread-safe. */
#define PARTS_CURSORS 32
struct parts_cursors;
int parts_cursors_create(struct parts_cursors **r);
void parts_cursors_destroy(struct parts_cursors **c);

/* Reads up to size decoded bytes of part p, from decoded offset off, out of
 * the message file fd, into out; key names the part (the mount's inode).
 * Returns the number of bytes (short only at the end of the part) or a
 * negative errno (-EIO when the file no longer decodes as recorded). Starts
 * from a cursor at off, else from the last mark at or before off, else from
 * the part's start. */
ssize_t parts_read(struct parts_cursors *c, uint64_t key, int fd, const struct part_rec *p,
		   char *out, size_t size, int64_t off);

#endif
