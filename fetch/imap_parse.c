/* imap_parse: streaming, literal-aware reader of IMAP server responses
 * (RFC 3501 sections 7 and 9, RFC 9051 section 9; literal8 from RFC 3516).
 *
 * The reader pulls from its source into a fixed read buffer and copies only
 * the text of the current response into an arena bounded by max_line. While
 * parsing, tokens record arena offsets, because the arena moves as it grows;
 * their pointers are filled in once the response is complete. Streamed
 * literals go from the read buffer straight to the sink, in chunks.
 *
 * After a sink aborts, the rest of the response is still parsed and its
 * literals are discarded, so the reader stays at a response boundary and the
 * caller can go on reading (IMAP_ERR_ABORT is the only error that allows it).
 *
 * Leniency, for servers seen in the wild: a bare LF ends a line; ']' and
 * 8-bit bytes are accepted in atoms and 8-bit bytes in quoted strings; a
 * quoted string may escape any character; "+" may come without a space; a
 * response code without its closing ']' is kept as plain text; repeated
 * spaces between tokens are skipped. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "imap_parse.h"

#define IN_SIZE (64 * 1024)
#define NO_LIST SIZE_MAX

struct imap_reader {
	struct imap_src src;
	unsigned char *in;          /* owned: read buffer of IN_SIZE bytes */
	size_t in_pos, in_len;      /* unread bytes are in[in_pos .. in_len) */
	size_t max_line;
	size_t max_toks;
	uint64_t max_literal;
	uint64_t last_literal;      /* size of the last literal announced */
	struct buf arena;           /* owned: text of the current response; offset 0 holds "" */
	struct imap_tok *toks;      /* owned */
	size_t *offs;               /* owned: arena offset of each token's text */
	size_t n_toks, cap_toks;

	/* State of the response being read. */
	const struct imap_sink *sink;  /* borrowed, may be NULL */
	size_t used;                /* bytes counted against max_line */
	size_t open;                /* innermost open list, or NO_LIST; while a list is
				     * open its LIST_BEGIN.end links to the enclosing one */
	bool draining;              /* a sink aborted: finish the response, drop literals */
	bool numbers;               /* an untagged SEARCH: numbers go to sink->number */
};

size_t imap_reader_buffered(const struct imap_reader *rd)
{
	return rd->in_len - rd->in_pos;
}

size_t imap_reader_take(struct imap_reader *rd, void *p, size_t n)
{
	size_t k = rd->in_len - rd->in_pos < n ? rd->in_len - rd->in_pos : n;

	memcpy(p, rd->in + rd->in_pos, k);
	rd->in_pos += k;
	return k;
}

const char *imap_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case IMAP_ERR_EOF: return "connection closed by server";
	case IMAP_ERR_IO: return "read error";
	case IMAP_ERR_PROTO: return "malformed server response";
	case IMAP_ERR_TOOBIG: return "server response too large";
	case IMAP_ERR_ABORT: return "response aborted by receiver";
	case IMAP_ERR_NOMEM: return "out of memory";
	case IMAP_ERR_REFUSED: return "response refused by receiver";
	case IMAP_ERR_LITERAL: return "literal larger than allowed";
	}
	return "unknown imap reader error";
}

bool imap_is(const char *a, const char *b)
{
	if (!a || !b)
		return false;
	for (; *a && *b; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;

		if (x >= 'a' && x <= 'z')
			x -= 'a' - 'A';
		if (y >= 'a' && y <= 'z')
			y -= 'a' - 'A';
		if (x != y)
			return false;
	}
	return *a == *b;
}

int imap_reader_create(const struct imap_src *src, size_t max_line, struct imap_reader **r)
{
	struct imap_reader *rd;

	*r = NULL;
	rd = calloc(1, sizeof(*rd));
	if (!rd)
		return IMAP_ERR_NOMEM;
	rd->in = malloc(IN_SIZE);
	if (!rd->in) {
		free(rd);
		return IMAP_ERR_NOMEM;
	}
	rd->src = *src;
	rd->max_line = max_line;
	/* One counted byte stores at most itself plus a terminating NUL. */
	buf_init(&rd->arena, max_line > (SIZE_MAX - 64) / 2 ? SIZE_MAX : 2 * max_line + 64);
	/* Tokens cost 48 bytes each whatever their text: a line of "(((("
	 * would otherwise cost 24 times its length. */
	rd->max_toks = max_line / 2 + 16 < IMAP_MAX_TOKENS ? max_line / 2 + 16 : IMAP_MAX_TOKENS;
	rd->max_literal = UINT64_MAX;
	rd->open = NO_LIST;
	*r = rd;
	return 0;
}

void imap_reader_set_max_literal(struct imap_reader *rd, uint64_t max)
{
	rd->max_literal = max;
}

uint64_t imap_reader_literal_size(const struct imap_reader *rd)
{
	return rd->last_literal;
}

const struct imap_tok *imap_reader_tokens_so_far(struct imap_reader *rd, size_t *n_r)
{
	/* The arena does not move while a sink's begin() runs. */
	for (size_t i = 0; i < rd->n_toks; i++)
		rd->toks[i].s = rd->arena.data + rd->offs[i];
	*n_r = rd->n_toks;
	return rd->n_toks ? rd->toks : NULL;
}

void imap_reader_destroy(struct imap_reader **r)
{
	struct imap_reader *rd = *r;

	if (!rd)
		return;
	buf_release(&rd->arena);
	free(rd->toks);
	free(rd->offs);
	free(rd->in);
	free(rd);
	*r = NULL;
}

/* ---- input ---- */

static int in_fill(struct imap_reader *rd)
{
	ssize_t n;

	if (rd->in_pos < rd->in_len)
		return 0;
	n = rd->src.read(rd->src.ctx, rd->in, IN_SIZE);
	if (n == 0)
		return IMAP_ERR_EOF;
	if (n < 0 || (size_t)n > IN_SIZE)
		return IMAP_ERR_IO;
	rd->in_pos = 0;
	rd->in_len = (size_t)n;
	return 0;
}

static int peek(struct imap_reader *rd, int *c)
{
	int e = in_fill(rd);

	if (e)
		return e;
	*c = rd->in[rd->in_pos];
	return 0;
}

/* Consumes the byte peek() returned. */
static int take(struct imap_reader *rd)
{
	rd->in_pos++;
	if (++rd->used > rd->max_line)
		return IMAP_ERR_TOOBIG;
	return 0;
}

static int next(struct imap_reader *rd, int *c)
{
	int e = peek(rd, c);

	return e ? e : take(rd);
}

/* Consumes a line end; c is its first byte, already peeked. */
static int eol(struct imap_reader *rd, int c)
{
	int e = take(rd);

	if (e || c == '\n')
		return e;
	e = next(rd, &c);
	if (e)
		return e;
	return c == '\n' ? 0 : IMAP_ERR_PROTO;
}

/* Drops n literal bytes; they do not count against max_line. */
static int skip(struct imap_reader *rd, uint64_t n)
{
	while (n > 0) {
		size_t k;
		int e = in_fill(rd);

		if (e)
			return e;
		k = rd->in_len - rd->in_pos;
		if (k > n)
			k = (size_t)n;
		rd->in_pos += k;
		n -= k;
	}
	return 0;
}

/* ---- arena and tokens ---- */

static int arena_err(int e)
{
	return e == -E2BIG ? IMAP_ERR_TOOBIG : IMAP_ERR_NOMEM;
}

static int put(struct imap_reader *rd, int c)
{
	int e = buf_appendc(&rd->arena, (char)c);

	return e ? arena_err(e) : 0;
}

static int push_tok(struct imap_reader *rd, enum imap_tok_type type, size_t off,
		    size_t len, uint64_t num)
{
	struct imap_tok *t;

	if (rd->n_toks == rd->cap_toks) {
		size_t cap = rd->cap_toks ? 2 * rd->cap_toks : 64;
		struct imap_tok *toks;
		size_t *offs;

		if (rd->n_toks >= rd->max_toks)
			return IMAP_ERR_TOOBIG;
		if (cap > rd->max_toks)
			cap = rd->max_toks;
		toks = realloc(rd->toks, cap * sizeof(*toks));
		if (!toks)
			return IMAP_ERR_NOMEM;
		rd->toks = toks;
		offs = realloc(rd->offs, cap * sizeof(*offs));
		if (!offs)
			return IMAP_ERR_NOMEM;
		rd->offs = offs;
		rd->cap_toks = cap;
	}
	t = &rd->toks[rd->n_toks];
	t->type = type;
	t->s = NULL;
	t->len = len;
	t->num = num;
	t->end = 0;
	rd->offs[rd->n_toks++] = off;
	return 0;
}

/* ---- character classes (RFC 3501 section 9) ---- */

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* ATOM-CHAR plus the leniencies: ']', '%', '*', '\' (flags), 8-bit bytes.
 * '[' is an atom char too; the caller then reads a bracketed section. */
static bool is_atom_char(int c)
{
	return c > 0x20 && c != 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

/* Tags: ASTRING-CHAR except '+', ASCII only. */
static bool is_tag_char(int c)
{
	return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\+", c);
}

/* Response names: "FETCH", "OK", "X-GM-EXT-1"... */
static bool is_name_char(int c)
{
	return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\[]", c);
}

/* ---- tokens of data responses ---- */

/* Inside brackets ("BODY[HEADER.FIELDS (TO)]", "[PERMANENTFLAGS (\Seen)]"):
 * quoted strings with escapes, and nested brackets. */
struct brackets {
	int depth;              /* open brackets, the outermost included */
	bool inq, esc;
};

/* Follows c; true when c is the ']' that closes the outermost bracket. */
static bool brackets_step(struct brackets *b, int c)
{
	if (b->inq) {
		if (b->esc)
			b->esc = false;
		else if (c == '\\')
			b->esc = true;
		else if (c == '"')
			b->inq = false;
	} else if (c == '"') {
		b->inq = true;
	} else if (c == '[') {
		b->depth++;
	} else if (c == ']') {
		return --b->depth == 0;
	}
	return false;
}

/* An atom, possibly with a bracketed section ("BODY[HEADER.FIELDS (TO)]<0>")
 * that may hold spaces, parens and quoted strings. first is a byte already
 * consumed, or -1. */
static int parse_atom(struct imap_reader *rd, int first)
{
	size_t off = rd->arena.len, len, i;
	struct brackets b = { 0 };
	int c, e;
	bool digits = true;
	uint64_t num = 0;

	if (first >= 0 && (e = put(rd, first)))
		return e;
	for (;;) {
		if ((e = peek(rd, &c)))
			return e;
		if (b.depth == 0) {
			if (!is_atom_char(c))
				break;
			if (c == '[')
				b.depth = 1;
		} else {
			if (c == '\r' || c == '\n' || c == 0)
				return IMAP_ERR_PROTO;
			brackets_step(&b, c);
		}
		if ((e = take(rd)) || (e = put(rd, c)))
			return e;
	}
	len = rd->arena.len - off;
	if ((e = put(rd, 0)))
		return e;

	if (len == 3 && imap_is(rd->arena.data + off, "NIL"))
		return push_tok(rd, IMAP_NIL, 0, 0, 0);
	for (i = 0; i < len && digits; i++) {
		int d = rd->arena.data[off + i] - '0';

		if (d < 0 || d > 9 || num > (INT64_MAX - (uint64_t)d) / 10)
			digits = false;
		else
			num = num * 10 + (uint64_t)d;
	}
	if (digits)
		return push_tok(rd, IMAP_NUMBER, off, len, num);
	return push_tok(rd, IMAP_ATOM, off, len, 0);
}

static int parse_quoted(struct imap_reader *rd)
{
	size_t off = rd->arena.len, len;
	int c, e;

	if ((e = take(rd)))
		return e;
	for (;;) {
		if ((e = next(rd, &c)))
			return e;
		if (c == '"')
			break;
		if (c == '\\') {
			if ((e = next(rd, &c)))
				return e;
			if (c != '"' && c != '\\' && (e = put(rd, '\\')))
				return e;
		}
		if (c == '\r' || c == '\n' || c == 0)
			return IMAP_ERR_PROTO;
		if ((e = put(rd, c)))
			return e;
	}
	len = rd->arena.len - off;
	if ((e = put(rd, 0)))
		return e;
	return push_tok(rd, IMAP_STRING, off, len, 0);
}

static int literal_inline(struct imap_reader *rd, uint64_t n)
{
	size_t off = rd->arena.len;
	uint64_t left = n;
	int e;

	if (n > IMAP_INLINE_LITERAL_MAX || n > rd->max_line - rd->used)
		return IMAP_ERR_TOOBIG;
	while (left > 0) {
		size_t k;

		if ((e = in_fill(rd)))
			return e;
		k = rd->in_len - rd->in_pos;
		if (k > left)
			k = (size_t)left;
		if ((e = buf_append(&rd->arena, rd->in + rd->in_pos, k)))
			return arena_err(e);
		rd->in_pos += k;
		rd->used += k;
		left -= k;
	}
	if ((e = put(rd, 0)))
		return e;
	return push_tok(rd, IMAP_STRING, off, (size_t)n, 0);
}

static int literal_stream(struct imap_reader *rd, uint64_t n)
{
	const struct imap_sink *sk = rd->sink;
	uint64_t left = n;
	int e;

	while (left > 0) {
		size_t k;

		if ((e = in_fill(rd))) {
			sk->abort(sk->ctx);
			return e;
		}
		k = rd->in_len - rd->in_pos;
		if (k > left)
			k = (size_t)left;
		e = sk->write(sk->ctx, rd->in + rd->in_pos, k);
		rd->in_pos += k;
		left -= k;
		if (e < 0) {
			sk->abort(sk->ctx);
			rd->draining = true;
			return skip(rd, left);
		}
	}
	if (sk->end(sk->ctx) < 0)
		rd->draining = true;
	return push_tok(rd, IMAP_STREAMED, 0, 0, n);
}

/* "{n}" CRLF and n bytes, or "~{n}" (literal8); '{' is consumed. */
static int parse_literal(struct imap_reader *rd)
{
	uint64_t n = 0;
	bool any = false;
	const char *key = NULL;
	int c, e, how;

	for (;;) {
		if ((e = peek(rd, &c)))
			return e;
		if (!is_digit(c))
			break;
		if (n > (UINT64_MAX - (uint64_t)(c - '0')) / 10)
			return IMAP_ERR_PROTO;
		n = n * 10 + (uint64_t)(c - '0');
		any = true;
		if ((e = take(rd)))
			return e;
	}
	if (c == '+') {  /* LITERAL+ syntax, client side only, harmless */
		if ((e = take(rd)) || (e = peek(rd, &c)))
			return e;
	}
	if (!any || c != '}')
		return IMAP_ERR_PROTO;
	if ((e = take(rd)) || (e = peek(rd, &c)))
		return e;
	if (c != '\r' && c != '\n')
		return IMAP_ERR_PROTO;
	if ((e = eol(rd, c)))
		return e;
	/* Before a byte of it is read: "{999999999999}" and an endless stream
	 * must cost nothing. */
	rd->last_literal = n;
	if (n > rd->max_literal)
		return IMAP_ERR_LITERAL;

	if (rd->draining)
		return skip(rd, n);
	if (!rd->sink)
		return literal_inline(rd, n);
	if (rd->n_toks > 0 && rd->toks[rd->n_toks - 1].type == IMAP_ATOM)
		key = rd->arena.data + rd->offs[rd->n_toks - 1];
	how = rd->sink->begin(rd->sink->ctx, key, n);
	if (how == IMAP_SINK_REFUSE)
		return IMAP_ERR_REFUSED;
	if (how < 0) {
		rd->draining = true;
		return skip(rd, n);
	}
	if (how == 0)
		return literal_inline(rd, n);
	return literal_stream(rd, n);
}

static int open_list(struct imap_reader *rd)
{
	int e = take(rd);

	if (e || (e = push_tok(rd, IMAP_LIST_BEGIN, 0, 0, 0)))
		return e;
	rd->toks[rd->n_toks - 1].end = rd->open;
	rd->open = rd->n_toks - 1;
	return 0;
}

static int close_list(struct imap_reader *rd)
{
	size_t parent;
	int e;

	if (rd->open == NO_LIST)
		return IMAP_ERR_PROTO;
	if ((e = take(rd)) || (e = push_tok(rd, IMAP_LIST_END, 0, 0, 0)))
		return e;
	parent = rd->toks[rd->open].end;
	rd->toks[rd->open].end = rd->n_toks - 1;
	rd->open = parent;
	return 0;
}

/* In an untagged SEARCH, hands a top-level number just parsed to the sink
 * and takes it back out of the response; its bytes do not count against
 * max_line (the sink bounds how many it accepts). */
static int divert_number(struct imap_reader *rd, size_t used0)
{
	struct imap_tok *t = &rd->toks[rd->n_toks - 1];

	if (t->type != IMAP_NUMBER || rd->open != NO_LIST)
		return 0;
	if (rd->sink->number(rd->sink->ctx, t->num) < 0)
		return IMAP_ERR_REFUSED;
	rd->arena.len = rd->offs[rd->n_toks - 1];
	rd->n_toks--;
	rd->used = used0;
	return 0;
}

/* Tokens up to and including the line end (RFC 3501 "response-data"). */
static int parse_tokens(struct imap_reader *rd)
{
	int c, e;

	for (;;) {
		size_t used0 = rd->used;

		if ((e = peek(rd, &c)))
			return e;
		switch (c) {
		case ' ':
			e = take(rd);
			if (rd->numbers)
				rd->used = used0;
			break;
		case '\r':
		case '\n':
			if (rd->open != NO_LIST)
				return IMAP_ERR_PROTO;
			return eol(rd, c);
		case '(':
			e = open_list(rd);
			break;
		case ')':
			e = close_list(rd);
			break;
		case '"':
			e = parse_quoted(rd);
			break;
		case '{':
			e = take(rd);
			if (!e)
				e = parse_literal(rd);
			break;
		case '~':
			if ((e = take(rd)) || (e = peek(rd, &c)))
				return e;
			if (c != '{')
				e = parse_atom(rd, '~');
			else if (!(e = take(rd)))
				e = parse_literal(rd);
			break;
		default:
			if (!is_atom_char(c))
				return IMAP_ERR_PROTO;
			e = parse_atom(rd, -1);
			if (!e && rd->numbers)
				e = divert_number(rd, used0);
			break;
		}
		if (e)
			return e;
	}
}

/* ---- status responses and the response head ---- */

/* The rest of the line as text; consumes the line end. */
static int parse_text(struct imap_reader *rd, size_t *off_r)
{
	int c, e;

	*off_r = rd->arena.len;
	for (;;) {
		if ((e = peek(rd, &c)))
			return e;
		if (c == '\r' || c == '\n')
			break;
		if (c == 0)
			return IMAP_ERR_PROTO;
		if ((e = take(rd)) || (e = put(rd, c)))
			return e;
	}
	if ((e = put(rd, 0)))
		return e;
	return eol(rd, c);
}

/* resp-text: [SP] ["[" code "]" [SP]] text. The code may hold spaces,
 * parens, brackets and quoted strings ("PERMANENTFLAGS (\Seen \*)"). */
static int parse_resp_text(struct imap_reader *rd, size_t *code_r, size_t *text_r)
{
	size_t off;
	struct brackets b = { .depth = 1 };
	int c, e;

	*code_r = NO_LIST;
	if ((e = peek(rd, &c)))
		return e;
	if (c == ' ' && ((e = take(rd)) || (e = peek(rd, &c))))
		return e;
	if (c != '[')
		return parse_text(rd, text_r);

	off = rd->arena.len;
	if ((e = take(rd)) || (e = put(rd, '[')))
		return e;
	for (;;) {
		if ((e = peek(rd, &c)))
			return e;
		if (c == '\r' || c == '\n') {
			/* No closing bracket: keep it all as text. */
			if ((e = put(rd, 0)))
				return e;
			*text_r = off;
			return eol(rd, c);
		}
		if (c == 0)
			return IMAP_ERR_PROTO;
		if ((e = take(rd)))
			return e;
		if (brackets_step(&b, c))
			break;
		if ((e = put(rd, c)))
			return e;
	}
	if ((e = put(rd, 0)))
		return e;
	*code_r = off + 1;
	if ((e = peek(rd, &c)))
		return e;
	if (c == ' ' && (e = take(rd)))
		return e;
	return parse_text(rd, text_r);
}

static int parse_name(struct imap_reader *rd, size_t *off_r)
{
	int c, e;

	*off_r = rd->arena.len;
	for (;;) {
		if ((e = peek(rd, &c)))
			return e;
		if (!is_name_char(c))
			break;
		if ((e = take(rd)) || (e = put(rd, c)))
			return e;
	}
	if (rd->arena.len == *off_r)
		return IMAP_ERR_PROTO;
	return put(rd, 0);
}

static int expect(struct imap_reader *rd, int want)
{
	int c, e = next(rd, &c);

	if (e)
		return e;
	return c == want ? 0 : IMAP_ERR_PROTO;
}

static enum imap_status status_of(const char *name, bool tagged)
{
	if (imap_is(name, "OK"))
		return IMAP_ST_OK;
	if (imap_is(name, "NO"))
		return IMAP_ST_NO;
	if (imap_is(name, "BAD"))
		return IMAP_ST_BAD;
	if (tagged)
		return IMAP_ST_NONE;
	if (imap_is(name, "BYE"))
		return IMAP_ST_BYE;
	if (imap_is(name, "PREAUTH"))
		return IMAP_ST_PREAUTH;
	return IMAP_ST_NONE;
}

/* "* " [number SP] name, then resp-text or tokens. '*' is consumed. */
static int parse_untagged(struct imap_reader *rd, struct imap_resp *resp,
			  size_t *name_r, size_t *code_r, size_t *text_r)
{
	int c, e;

	if ((e = expect(rd, ' ')) || (e = peek(rd, &c)))
		return e;
	if (is_digit(c)) {
		uint32_t n = 0;

		while (is_digit(c)) {
			if (n > (UINT32_MAX - (uint32_t)(c - '0')) / 10)
				return IMAP_ERR_PROTO;
			n = n * 10 + (uint32_t)(c - '0');
			if ((e = take(rd)) || (e = peek(rd, &c)))
				return e;
		}
		if ((e = expect(rd, ' ')))
			return e;
		resp->has_num = true;
		resp->num = n;
	}
	if ((e = parse_name(rd, name_r)))
		return e;
	resp->status = status_of(rd->arena.data + *name_r, false);
	if (resp->status != IMAP_ST_NONE)
		return parse_resp_text(rd, code_r, text_r);
	rd->numbers = rd->sink && rd->sink->number && imap_is(rd->arena.data + *name_r, "SEARCH");
	return parse_tokens(rd);
}

static int parse_tagged(struct imap_reader *rd, struct imap_resp *resp, size_t *tag_r,
			size_t *name_r, size_t *code_r, size_t *text_r)
{
	int c, e;

	*tag_r = rd->arena.len;
	for (;;) {
		if ((e = peek(rd, &c)))
			return e;
		if (!is_tag_char(c))
			break;
		if ((e = take(rd)) || (e = put(rd, c)))
			return e;
	}
	if (rd->arena.len == *tag_r)
		return IMAP_ERR_PROTO;
	if ((e = put(rd, 0)) || (e = expect(rd, ' ')) || (e = parse_name(rd, name_r)))
		return e;
	resp->status = status_of(rd->arena.data + *name_r, true);
	if (resp->status == IMAP_ST_NONE)
		return IMAP_ERR_PROTO;
	return parse_resp_text(rd, code_r, text_r);
}

int imap_read_response(struct imap_reader *rd, struct imap_resp *resp,
		       const struct imap_sink *sink)
{
	size_t tag = 0, name = 0, code = NO_LIST, text = 0, i;
	int c, e;

	memset(resp, 0, sizeof(*resp));
	resp->tag = resp->name = resp->text = "";
	buf_reset(&rd->arena);
	rd->n_toks = 0;
	rd->sink = sink;
	rd->used = 0;
	rd->open = NO_LIST;
	rd->draining = false;
	rd->numbers = false;
	if ((e = put(rd, 0)) || (e = peek(rd, &c)))
		return e;

	if (c == '*') {
		resp->kind = IMAP_UNTAGGED;
		e = take(rd);
		if (!e)
			e = parse_untagged(rd, resp, &name, &code, &text);
	} else if (c == '+') {
		resp->kind = IMAP_CONTINUATION;
		e = take(rd);
		if (!e)
			e = peek(rd, &c);
		if (!e && c == ' ')
			e = take(rd);
		if (!e)
			e = parse_text(rd, &text);
	} else {
		resp->kind = IMAP_TAGGED;
		e = parse_tagged(rd, resp, &tag, &name, &code, &text);
	}
	if (e)
		return e;
	if (rd->draining)
		return IMAP_ERR_ABORT;

	resp->tag = rd->arena.data + tag;
	resp->name = rd->arena.data + name;
	resp->code = code == NO_LIST ? NULL : rd->arena.data + code;
	resp->text = rd->arena.data + text;
	for (i = 0; i < rd->n_toks; i++)
		rd->toks[i].s = rd->arena.data + rd->offs[i];
	resp->toks = rd->n_toks ? rd->toks : NULL;
	resp->n_toks = rd->n_toks;
	return 0;
}
