/* imap_parse: a streaming, literal-aware reader of IMAP server responses
 * (RFC 3501 / RFC 9051 section 9 grammar, response side only).
 *
 * It pulls bytes from a source (the connection, or memory in tests) and
 * returns one whole response at a time, tokenised. Literals ({n}\r\n and
 * n bytes) are either kept inline (small ones) or streamed to a sink while
 * they arrive, so a message body is never held in memory and a body that
 * contains "A004 OK", "* 3 EXPUNGE" or ")" lines cannot be mistaken for
 * responses. Everything the source returns is consumed exactly; reads may be
 * split at any byte.
 *
 * Threads: a reader belongs to one thread. */
#ifndef MAILDISK_IMAP_PARSE_H
#define MAILDISK_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "../cache/buf.h"

/* Byte source: returns bytes read (> 0), 0 at end of stream, or < 0 on error. */
struct imap_src {
	ssize_t (*read)(void *ctx, void *p, size_t n);
	void *ctx;
};

/* A literal's destination. begin is called when "{n}\r\n" has been read;
 * key is the token just before the literal when that is an atom (for
 * "BODY[] {1234}" it is "BODY[]"), else NULL. begin returns 1 to stream the
 * literal through write() and end(), 0 to keep it inline as an IMAP_STRING
 * token (allowed only when n <= IMAP_INLINE_LITERAL_MAX, else the response
 * fails with IMAP_ERR_TOOBIG), IMAP_SINK_DROP to read the literal and drop
 * it (the response then ends in IMAP_ERR_ABORT, the stream still usable), or
 * IMAP_SINK_REFUSE to fail at once with IMAP_ERR_REFUSED without reading it
 * (the stream is then unusable: close the connection).
 * If the response fails after begin returned 1 and before end, abort() is
 * called instead of end(). write() and end() return 0, or < 0 to abort.
 *
 * number, when not NULL, receives the numbers of untagged SEARCH responses
 * ("* SEARCH 2 3 5") one at a time instead of tokens: a listing of a
 * million UIDs then costs no memory here, and the caller bounds it (0 to go
 * on, < 0 to fail the response with IMAP_ERR_REFUSED). */
struct imap_sink {
	int (*begin)(void *ctx, const char *key, uint64_t n);
	int (*write)(void *ctx, const void *p, size_t n);
	int (*end)(void *ctx);
	void (*abort)(void *ctx);
	int (*number)(void *ctx, uint64_t n);
	void *ctx;
};

#define IMAP_SINK_DROP (-1)
#define IMAP_SINK_REFUSE (-2)

#define IMAP_INLINE_LITERAL_MAX (64 * 1024)

enum imap_err {
	IMAP_ERR_EOF = -1,     /* the source ended (connection closed) */
	IMAP_ERR_IO = -2,      /* the source returned an error */
	IMAP_ERR_PROTO = -3,   /* bytes that are not an IMAP response */
	IMAP_ERR_TOOBIG = -4,  /* a line, a token count or an inline literal passed its limit */
	IMAP_ERR_ABORT = -5,   /* the sink asked to stop */
	IMAP_ERR_NOMEM = -6,
	IMAP_ERR_REFUSED = -7, /* the sink refused a literal or a number; the stream is not at a boundary */
	IMAP_ERR_LITERAL = -8, /* a literal announced larger than max_literal; nothing of it was read */
};
const char *imap_strerror(int err);

enum imap_tok_type {
	IMAP_ATOM,        /* includes flags (\Seen), sequence sets (1:3,5), BODY[] */
	IMAP_NUMBER,      /* digits only, fits in 63 bits: also in num */
	IMAP_STRING,      /* quoted string (unescaped) or inline literal */
	IMAP_NIL,
	IMAP_LIST_BEGIN,  /* "("; end is the index of its IMAP_LIST_END */
	IMAP_LIST_END,    /* ")" */
	IMAP_STREAMED,    /* a literal that went to the sink; num is its size */
};

struct imap_tok {
	enum imap_tok_type type;
	const char *s;    /* NUL-terminated text (ATOM, NUMBER, STRING); "" otherwise; valid until the next read */
	size_t len;       /* bytes in s (STRING may contain NUL from a literal) */
	uint64_t num;     /* NUMBER value, STREAMED size */
	size_t end;       /* LIST_BEGIN: index of the matching LIST_END */
};

enum imap_kind { IMAP_UNTAGGED, IMAP_TAGGED, IMAP_CONTINUATION };
enum imap_status { IMAP_ST_NONE = 0, IMAP_ST_OK, IMAP_ST_NO, IMAP_ST_BAD,
		   IMAP_ST_BYE, IMAP_ST_PREAUTH };

/* One response. All pointers are into the reader and valid until the next
 * imap_read_response call on it. */
struct imap_resp {
	enum imap_kind kind;
	const char *tag;           /* IMAP_TAGGED: the tag; else "" */
	bool has_num;              /* "* 12 FETCH ...": true, num = 12 */
	uint32_t num;
	const char *name;          /* untagged: "FETCH", "EXISTS", "CAPABILITY", "LIST", "SEARCH", "OK", ... as sent; tagged: "OK"/"NO"/"BAD"; "" for continuation */
	enum imap_status status;   /* tagged and untagged OK/NO/BAD/BYE/PREAUTH; else NONE */
	const char *code;          /* status responses: text inside [...] ("UIDVALIDITY 3857529045"), NULL if none */
	const char *text;          /* status responses and continuations: the human-readable rest of the line, "" if none */
	struct imap_tok *toks;     /* data responses: the tokens after name ("* LIST (\HasNoChildren) "/" INBOX" -> LIST_BEGIN, ATOM, LIST_END, STRING, ATOM) */
	size_t n_toks;
};

struct imap_reader;

/* max_line bounds the bytes of one response outside streamed literals and
 * SEARCH numbers (inline literals count); with the token cap
 * (IMAP_MAX_TOKENS) it bounds the reader's memory to about 2 * max_line. */
int imap_reader_create(const struct imap_src *src, size_t max_line, struct imap_reader **r);

/* The most tokens one response may have before it fails with
 * IMAP_ERR_TOOBIG. A real response has a few hundred at most (a FETCH with
 * many keywords); SEARCH numbers go to the sink and do not count. */
#define IMAP_MAX_TOKENS 65536

/* Literals announced as larger than max fail with IMAP_ERR_LITERAL before
 * any of their bytes is read (default: no limit). */
void imap_reader_set_max_literal(struct imap_reader *rd, uint64_t max);
/* The size of the last literal announced ("{n}"), e.g. the one refused. */
uint64_t imap_reader_literal_size(const struct imap_reader *rd);

/* Inside a sink's begin(): the tokens of the response read so far (their
 * s pointers valid until begin returns), e.g. the RFC822.SIZE that came
 * before a BODY[] literal. */
const struct imap_tok *imap_reader_tokens_so_far(struct imap_reader *rd, size_t *n_r);
void imap_reader_destroy(struct imap_reader **r);

/* Reads the next response. 0, or an imap_err. After an error other than
 * IMAP_ERR_ABORT the stream position is unknown: close the connection.
 * sink may be NULL: then every literal is kept inline (and one larger than
 * IMAP_INLINE_LITERAL_MAX fails with IMAP_ERR_TOOBIG). */
int imap_read_response(struct imap_reader *rd, struct imap_resp *resp,
		       const struct imap_sink *sink);

/* Bytes read from the source but not yet parsed. A read that fails before
 * any byte of a response arrived, with nothing buffered, leaves the stream
 * intact (an IDLE wait that timed out). */
size_t imap_reader_buffered(const struct imap_reader *rd);
/* Moves up to n of those bytes to p and returns how many: for a caller
 * that reads the rest of the stream itself (IDLE in an event loop). Only
 * between responses. */
size_t imap_reader_take(struct imap_reader *rd, void *p, size_t n);

/* Case-insensitive ASCII comparison helper for names and atoms. */
bool imap_is(const char *a, const char *b);

#endif
