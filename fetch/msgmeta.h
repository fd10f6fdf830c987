/* msgmeta: what maildisk records about a message from its header (RFC 5322
 * fields, RFC 2047 encoded words, decoded with GMime 3 as notmuch does).
 *
 * Threads: any, after msgmeta_init() was called once before threads start. */
#ifndef MAILDISK_MSGMETA_H
#define MAILDISK_MSGMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../cache/buf.h"

/* Longest field kept, in bytes (cut at a UTF-8 boundary). */
#define MSGMETA_FIELD_MAX (16 * 1024)

struct msgmeta {
	char *message_id;   /* owned, may be NULL: without the angle brackets */
	char *subject;      /* owned, may be NULL: decoded, valid UTF-8 */
	char *from;         /* owned, may be NULL: decoded addresses, valid UTF-8 */
	char *to;           /* owned, may be NULL */
	int64_t date;       /* unix time of the Date header, 0 if absent or unparsable */
};

void msgmeta_init(void);
/* Parses the header block hdr[0..len) (the message up to and including the
 * blank line, or as much of it as was kept). Never fails on bad input: what
 * cannot be parsed is left NULL/0. Returns 0 or -ENOMEM. */
int msgmeta_parse(const char *hdr, size_t len, struct msgmeta *r);
/* The same from GMime's reading of the whole block, not of the fields
 * msgmeta_parse keeps for it: the reference its tests compare with. */
int msgmeta_parse_whole(const char *hdr, size_t len, struct msgmeta *r);
void msgmeta_release(struct msgmeta *m);

/* Length of the header block at the start of p[0..len): up to and including
 * the first empty line (CRLF CRLF or LF LF), or 0 if not complete yet. */
size_t msgmeta_header_len(const char *p, size_t len);

/* The header of a message that arrives in pieces split anywhere: its bytes
 * are kept up to and including the empty line that ends it, or up to keep
 * bytes when it is longer. */
struct msgmeta_header {
	struct buf buf;     /* owned: what was kept */
	size_t keep;
	bool done;          /* the end was seen, or keep bytes are kept */
};
void msgmeta_header_init(struct msgmeta_header *h, size_t keep);
void msgmeta_header_reset(struct msgmeta_header *h);
void msgmeta_header_release(struct msgmeta_header *h);
/* 0, or -ENOMEM (then done is set: the header is what was kept). */
int msgmeta_header_feed(struct msgmeta_header *h, const void *p, size_t n);

#endif
