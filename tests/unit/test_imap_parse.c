/* Unit tests for fetch/imap_parse.c: byte-exact server transcripts (most of
 * them as Dovecot sends them) are read to the end, and everything the reader
 * reports (responses, tokens, sink calls, the final error) is written to a
 * text dump compared with the expected one. Every transcript is fed 1, 2, 3
 * and 7 bytes at a time and whole, and must give the same dump each time. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../fetch/imap_parse.h"

/* ---- a source reading from memory ---- */

struct mem_src {
	const char *p;
	size_t len, pos;
	size_t chunk;     /* bytes per read at most */
	bool io_error;    /* at the end, fail instead of returning 0 */
};

static ssize_t mem_read(void *ctx, void *p, size_t n)
{
	struct mem_src *m = ctx;
	size_t k = m->len - m->pos;

	if (k == 0)
		return m->io_error ? -1 : 0;
	if (k > n)
		k = n;
	if (k > m->chunk)
		k = m->chunk;
	memcpy(p, m->p + m->pos, k);
	m->pos += k;
	return (ssize_t)k;
}

/* A reader over m (which must outlive it): the bytes p[0..len), at most
 * chunk of them a read; max_line as imap_reader_create. */
static struct imap_reader *mem_reader(struct mem_src *m, const char *p, size_t len, size_t chunk,
				      size_t max_line)
{
	struct imap_src src = { mem_read, m };
	struct imap_reader *rd;

	*m = (struct mem_src){ p, len, 0, chunk, false };
	assert_int_equal(imap_reader_create(&src, max_line, &rd), 0);
	return rd;
}

/* ---- dumps ---- */

static void out(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	assert_int_equal(buf_vprintf(b, fmt, ap), 0);
	va_end(ap);
}

/* quoted: also escape '"', '\', CR, LF (for strings, text and literal data) */
static void out_bytes(struct buf *b, const char *p, size_t n, bool quoted)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (quoted && c == '\r')
			out(b, "\\r");
		else if (quoted && c == '\n')
			out(b, "\\n");
		else if (quoted && (c == '"' || c == '\\'))
			out(b, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			out(b, "\\x%02x", c);
		else
			out(b, "%c", c);
	}
}

static const char *err_name(int e)
{
	switch (e) {
	case IMAP_ERR_EOF: return "EOF";
	case IMAP_ERR_IO: return "IO";
	case IMAP_ERR_PROTO: return "PROTO";
	case IMAP_ERR_TOOBIG: return "TOOBIG";
	case IMAP_ERR_ABORT: return "ABORT";
	case IMAP_ERR_NOMEM: return "NOMEM";
	}
	return "?";
}

static enum imap_status status_for(const char *name)
{
	static const char *names[] = { "", "OK", "NO", "BAD", "BYE", "PREAUTH" };

	for (int i = 1; i < 6; i++)
		if (imap_is(name, names[i]))
			return (enum imap_status)i;
	return IMAP_ST_NONE;
}

/* Writes one response, checking the invariants the dump does not show. */
static void dump_resp(struct buf *b, const struct imap_resp *r)
{
	size_t stack[64], depth = 0;

	assert_non_null(r->tag);
	assert_non_null(r->name);
	assert_non_null(r->text);
	if (r->kind == IMAP_UNTAGGED) {
		assert_string_equal(r->tag, "");
		out(b, "* ");
		if (r->has_num)
			out(b, "%u ", r->num);
		out_bytes(b, r->name, strlen(r->name), false);
	} else if (r->kind == IMAP_TAGGED) {
		assert_false(r->has_num);
		assert_true(r->status == IMAP_ST_OK || r->status == IMAP_ST_NO ||
			    r->status == IMAP_ST_BAD);
		out(b, "%s %s", r->tag, r->name);
	} else {
		assert_int_equal(r->kind, IMAP_CONTINUATION);
		assert_string_equal(r->tag, "");
		assert_string_equal(r->name, "");
		assert_false(r->has_num);
		out(b, "+");
	}
	if (r->kind != IMAP_CONTINUATION)
		assert_int_equal(r->status, status_for(r->name));
	if (r->code) {
		out(b, " [");
		out_bytes(b, r->code, strlen(r->code), false);
		out(b, "]");
	}
	if (r->status != IMAP_ST_NONE || r->kind == IMAP_CONTINUATION) {
		assert_int_equal(r->n_toks, 0);
		out(b, " \"");
		out_bytes(b, r->text, strlen(r->text), true);
		out(b, "\"");
	} else {
		assert_null(r->code);
		assert_string_equal(r->text, "");
	}
	if (r->n_toks == 0)
		assert_null(r->toks);
	for (size_t i = 0; i < r->n_toks; i++) {
		const struct imap_tok *t = &r->toks[i];

		assert_non_null(t->s);
		out(b, " ");
		switch (t->type) {
		case IMAP_ATOM:
			assert_int_equal(strlen(t->s), t->len);
			out_bytes(b, t->s, t->len, false);
			break;
		case IMAP_NUMBER:
			assert_int_equal(strlen(t->s), t->len);
			assert_int_equal(strtoull(t->s, NULL, 10), t->num);
			out(b, "#%llu", (unsigned long long)t->num);
			break;
		case IMAP_STRING:
			assert_int_equal(t->s[t->len], '\0');
			out(b, "\"");
			out_bytes(b, t->s, t->len, true);
			out(b, "\"");
			break;
		case IMAP_NIL:
			assert_string_equal(t->s, "");
			out(b, "NIL");
			break;
		case IMAP_LIST_BEGIN:
			assert_true(depth < 64);
			stack[depth++] = i;
			out(b, "(");
			break;
		case IMAP_LIST_END:
			assert_true(depth > 0);
			assert_int_equal(r->toks[stack[--depth]].end, i);
			out(b, ")");
			break;
		case IMAP_STREAMED:
			assert_string_equal(t->s, "");
			out(b, "<%llu>", (unsigned long long)t->num);
			break;
		}
	}
	assert_int_equal(depth, 0);
	out(b, "\n");
}

/* ---- a sink that logs what it is told ---- */

enum sink_mode {
	SK_NONE,          /* no sink: every literal inline */
	SK_INLINE,        /* begin says inline */
	SK_STREAM,        /* begin says stream */
	SK_BODY,          /* stream BODY[...] and BINARY[...], inline the rest */
	SK_ABORT_BEGIN,   /* like SK_BODY, but begin refuses what it would stream */
	SK_ABORT_WRITE,   /* like SK_BODY, but the first write fails */
	SK_ABORT_END,     /* like SK_BODY, but end fails */
};

struct log_sink {
	enum sink_mode mode;
	struct buf *log;
	struct buf data;  /* bytes of the literal being streamed */
	bool active;
	size_t max_write;
};

static bool is_body(const char *key)
{
	return key && (strncmp(key, "BODY[", 5) == 0 || strncmp(key, "BINARY[", 7) == 0);
}

static int ls_begin(void *ctx, const char *key, uint64_t n)
{
	struct log_sink *s = ctx;

	assert_false(s->active);
	out(s->log, "begin %s %llu\n", key ? key : "-", (unsigned long long)n);
	if (s->mode == SK_INLINE || (s->mode != SK_STREAM && !is_body(key)))
		return 0;
	if (s->mode == SK_ABORT_BEGIN)
		return -1;
	s->active = true;
	buf_reset(&s->data);
	return 1;
}

static int ls_write(void *ctx, const void *p, size_t n)
{
	struct log_sink *s = ctx;

	assert_true(s->active);
	assert_true(n > 0);
	if (n > s->max_write)
		s->max_write = n;
	if (s->mode == SK_ABORT_WRITE)
		return -1;
	assert_int_equal(buf_append(&s->data, p, n), 0);
	return 0;
}

/* The streamed literal ends (how: "end" or "abort"): logged with its bytes. */
static void ls_close(struct log_sink *s, const char *how)
{
	assert_true(s->active);
	s->active = false;
	out(s->log, "%s \"", how);
	out_bytes(s->log, s->data.data, s->data.len, true);
	out(s->log, "\"\n");
}

static int ls_end(void *ctx)
{
	struct log_sink *s = ctx;

	ls_close(s, "end");
	return s->mode == SK_ABORT_END ? -1 : 0;
}

static void ls_abort(void *ctx)
{
	ls_close(ctx, "abort");
}

/* Reads the whole transcript; returns the dump in log. */
static void run(const char *in, size_t len, enum sink_mode mode, size_t max_line,
		bool io_error, size_t chunk, struct buf *log, struct log_sink *ls_r)
{
	struct mem_src m = { in, len, 0, chunk, io_error };
	struct imap_src src = { mem_read, &m };
	struct log_sink ls = { mode, log, BUF_INIT(1 << 24), false, 0 };
	struct imap_sink sink = { ls_begin, ls_write, ls_end, ls_abort, NULL, &ls };
	struct imap_reader *rd;
	int i;

	assert_int_equal(imap_reader_create(&src, max_line ? max_line : 1 << 20, &rd), 0);
	for (i = 0; i < 10000; i++) {
		struct imap_resp r;
		int e = imap_read_response(rd, &r, mode == SK_NONE ? NULL : &sink);

		if (e == 0) {
			dump_resp(log, &r);
		} else if (e == IMAP_ERR_ABORT) {
			out(log, "ABORT\n");
		} else {
			out(log, "ERR %s\n", err_name(e));
			break;
		}
	}
	assert_true(i < 10000);
	assert_false(ls.active);
	imap_reader_destroy(&rd);
	assert_null(rd);
	if (ls_r)
		*ls_r = ls;
	else
		buf_release(&ls.data);
}

struct tcase {
	const char *name;
	const char *in;
	size_t len;
	enum sink_mode mode;
	size_t max_line;  /* 0: 1 MiB */
	bool io_error;
	const char *expect;
};

#define IN(s) s, sizeof(s) - 1

static const struct tcase cases[] = {
	/* ---- response kinds ---- */
	{ "greeting",
	  IN("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n"),
	  SK_BODY, 0, false,
	  "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] \"Dovecot (Debian) ready.\"\n"
	  "ERR EOF\n" },
	{ "capability",
	  IN("* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE AUTH=PLAIN\r\n"
	     "A001 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"),
	  SK_BODY, 0, false,
	  "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE AUTH=PLAIN\n"
	  "A001 OK \"Pre-login capabilities listed, post-login capabilities have more.\"\n"
	  "ERR EOF\n" },
	{ "examine",
	  IN("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
	     "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n"
	     "* 5 EXISTS\r\n"
	     "* 0 RECENT\r\n"
	     "* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
	     "* OK [UIDNEXT 6] Predicted next UID\r\n"
	     "* OK [HIGHESTMODSEQ 12] Highest\r\n"
	     "A002 OK [READ-ONLY] Examine completed (0.001 + 0.000 secs).\r\n"),
	  SK_BODY, 0, false,
	  "* FLAGS ( \\Answered \\Flagged \\Deleted \\Seen \\Draft )\n"
	  "* OK [PERMANENTFLAGS ()] \"Read-only mailbox.\"\n"
	  "* 5 EXISTS\n"
	  "* 0 RECENT\n"
	  "* OK [UIDVALIDITY 1700000000] \"UIDs valid\"\n"
	  "* OK [UIDNEXT 6] \"Predicted next UID\"\n"
	  "* OK [HIGHESTMODSEQ 12] \"Highest\"\n"
	  "A002 OK [READ-ONLY] \"Examine completed (0.001 + 0.000 secs).\"\n"
	  "ERR EOF\n" },
	{ "response codes",
	  IN("* OK [PERMANENTFLAGS (\\Seen \\Deleted \\*)] Flags permitted.\r\n"
	     "* OK [ALERT]\r\n"
	     "* OK [BADCHARSET (UTF-8 \"x]\")] no\r\n"
	     "* OK [BADURL imap://h/INBOX;UID=1/;SECTION=BODY[1]] bad\r\n"
	     "* NO [ALERT unterminated\r\n"
	     "* OK\r\n"
	     "* OK \r\n"
	     "* OK[CLOSED] no space\r\n"
	     "* OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"),
	  SK_BODY, 0, false,
	  "* OK [PERMANENTFLAGS (\\Seen \\Deleted \\*)] \"Flags permitted.\"\n"
	  "* OK [ALERT] \"\"\n"
	  "* OK [BADCHARSET (UTF-8 \"x]\")] \"no\"\n"
	  "* OK [BADURL imap://h/INBOX;UID=1/;SECTION=BODY[1]] \"bad\"\n"
	  "* NO \"[ALERT unterminated\"\n"
	  "* OK \"\"\n"
	  "* OK \"\"\n"
	  "* OK [CLOSED] \"no space\"\n"
	  "* OK [COPYUID 38505 304,319:320 3956:3958] \"Done\"\n"
	  "ERR EOF\n" },
	{ "list",
	  IN("* LIST (\\HasNoChildren) \".\" INBOX\r\n"
	     "* LIST (\\HasChildren \\Noselect) \"/\" \"&AMQ-rchiv\"\r\n"
	     "* LIST () NIL {11}\r\nLiteral Box\r\n"
	     "* LSUB () \"/\" \"Entw\xc3\xbcrfe\"\r\n"
	     "* LIST (\\HasNoChildren) \"/\" \"a\\\\b\\\"c\"\r\n"
	     "* LIST () \"/\" Entw\xc3\xbcrfe]\r\n"
	     "A3 OK List completed (0.001 + 0.000 secs).\r\n"),
	  SK_BODY, 0, false,
	  "* LIST ( \\HasNoChildren ) \".\" INBOX\n"
	  "* LIST ( \\HasChildren \\Noselect ) \"/\" \"&AMQ-rchiv\"\n"
	  "begin - 11\n"
	  "* LIST ( ) NIL \"Literal Box\"\n"
	  "* LSUB ( ) \"/\" \"Entw\\xc3\\xbcrfe\"\n"
	  "* LIST ( \\HasNoChildren ) \"/\" \"a\\\\b\\\"c\"\n"
	  "* LIST ( ) \"/\" Entw\\xc3\\xbcrfe]\n"
	  "A3 OK \"List completed (0.001 + 0.000 secs).\"\n"
	  "ERR EOF\n" },
	{ "search",
	  IN("* SEARCH 1 2 3 7 4294967295 18446744073709551616\r\n"
	     "* SEARCH\r\n"
	     "* SEARCH 9223372036854775807 9223372036854775808  5\r\n"
	     "A4 OK Search completed (0.001 + 0.000 secs).\r\n"),
	  SK_BODY, 0, false,
	  "* SEARCH #1 #2 #3 #7 #4294967295 18446744073709551616\n"
	  "* SEARCH\n"
	  "* SEARCH #9223372036854775807 9223372036854775808 #5\n"
	  "A4 OK \"Search completed (0.001 + 0.000 secs).\"\n"
	  "ERR EOF\n" },
	{ "esearch and vanished",
	  IN("* ESEARCH (TAG \"a\") UID ALL 1:5,7\r\n"
	     "* VANISHED (EARLIER) 1:3,5\r\n"
	     "* VANISHED 8\r\n"
	     "* ESEARCH (TAG \"b\") UID\r\n"
	     "* ESEARCH (TAG \"c\") UID MIN 2 MAX 9 COUNT 4\r\n"),
	  SK_BODY, 0, false,
	  "* ESEARCH ( TAG \"a\" ) UID ALL 1:5,7\n"
	  "* VANISHED ( EARLIER ) 1:3,5\n"
	  "* VANISHED #8\n"
	  "* ESEARCH ( TAG \"b\" ) UID\n"
	  "* ESEARCH ( TAG \"c\" ) UID MIN #2 MAX #9 COUNT #4\n"
	  "ERR EOF\n" },
	{ "status, enabled, id, namespace",
	  IN("* STATUS \"INBOX\" (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 1700000000 HIGHESTMODSEQ 90060115205545359)\r\n"
	     "* STATUS Archive ()\r\n"
	     "* ENABLED QRESYNC CONDSTORE\r\n"
	     "* ID (\"name\" \"Dovecot\")\r\n"
	     "* NAMESPACE ((\"\" \".\")) NIL NIL\r\n"
	     "* QUOTAROOT INBOX \"\"\r\n"),
	  SK_BODY, 0, false,
	  "* STATUS \"INBOX\" ( MESSAGES #231 UIDNEXT #44292 UIDVALIDITY #1700000000 HIGHESTMODSEQ #90060115205545359 )\n"
	  "* STATUS Archive ( )\n"
	  "* ENABLED QRESYNC CONDSTORE\n"
	  "* ID ( \"name\" \"Dovecot\" )\n"
	  "* NAMESPACE ( ( \"\" \".\" ) ) NIL NIL\n"
	  "* QUOTAROOT INBOX \"\"\n"
	  "ERR EOF\n" },
	{ "expunge, recent, bye",
	  IN("* 3 EXPUNGE\r\n"
	     "* 4294967295 EXPUNGE\r\n"
	     "* 4 RECENT\r\n"
	     "* 2 EXISTS\r\n"
	     "* BYE Logging out\r\n"
	     "A9 OK Logout completed (0.001 + 0.000 secs).\r\n"),
	  SK_BODY, 0, false,
	  "* 3 EXPUNGE\n"
	  "* 4294967295 EXPUNGE\n"
	  "* 4 RECENT\n"
	  "* 2 EXISTS\n"
	  "* BYE \"Logging out\"\n"
	  "A9 OK \"Logout completed (0.001 + 0.000 secs).\"\n"
	  "ERR EOF\n" },
	{ "continuation",
	  IN("+ idling\r\n"
	     "+\r\n"
	     "+ \r\n"
	     "+ YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJ\r\n"
	     "+ Ready for literal data\r\n"),
	  SK_BODY, 0, false,
	  "+ \"idling\"\n"
	  "+ \"\"\n"
	  "+ \"\"\n"
	  "+ \"YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJ\"\n"
	  "+ \"Ready for literal data\"\n"
	  "ERR EOF\n" },
	{ "tagged and untagged status",
	  IN("A5 NO [TRYCREATE] Mailbox doesn't exist: Foo\r\n"
	     "A6 BAD Error in IMAP command: Unknown command\r\n"
	     "a7 ok lower case\r\n"
	     "A8 NO\r\n"
	     "tag.with]chars OK x\r\n"
	     "* PREAUTH [CAPABILITY IMAP4rev1] Logged in as alice\r\n"
	     "* NO [ALERT] Disk almost full\r\n"
	     "* BAD bad thing \xc3\xa4\r\n"),
	  SK_BODY, 0, false,
	  "A5 NO [TRYCREATE] \"Mailbox doesn't exist: Foo\"\n"
	  "A6 BAD \"Error in IMAP command: Unknown command\"\n"
	  "a7 ok \"lower case\"\n"
	  "A8 NO \"\"\n"
	  "tag.with]chars OK \"x\"\n"
	  "* PREAUTH [CAPABILITY IMAP4rev1] \"Logged in as alice\"\n"
	  "* NO [ALERT] \"Disk almost full\"\n"
	  "* BAD \"bad thing \\xc3\\xa4\"\n"
	  "ERR EOF\n" },

	/* ---- FETCH and literals ---- */
	{ "fetch, UID before BODY[], streamed",
	  IN("* 1 FETCH (UID 4 RFC822.SIZE 12 FLAGS (\\Seen) INTERNALDATE \"27-Nov-2026 14:32:00 +0100\" BODY[] {12}\r\n"
	     "Hello world!)\r\n"
	     "A7 OK Fetch completed (0.001 + 0.000 secs).\r\n"),
	  SK_BODY, 0, false,
	  "begin BODY[] 12\n"
	  "end \"Hello world!\"\n"
	  "* 1 FETCH ( UID #4 RFC822.SIZE #12 FLAGS ( \\Seen ) INTERNALDATE \"27-Nov-2026 14:32:00 +0100\" BODY[] <12> )\n"
	  "A7 OK \"Fetch completed (0.001 + 0.000 secs).\"\n"
	  "ERR EOF\n" },
	{ "fetch, UID before BODY[], inline",
	  IN("* 1 FETCH (UID 4 RFC822.SIZE 12 FLAGS (\\Seen) INTERNALDATE \"27-Nov-2026 14:32:00 +0100\" BODY[] {12}\r\n"
	     "Hello world!)\r\n"
	     "A7 OK Fetch completed (0.001 + 0.000 secs).\r\n"),
	  SK_NONE, 0, false,
	  "* 1 FETCH ( UID #4 RFC822.SIZE #12 FLAGS ( \\Seen ) INTERNALDATE \"27-Nov-2026 14:32:00 +0100\" BODY[] \"Hello world!\" )\n"
	  "A7 OK \"Fetch completed (0.001 + 0.000 secs).\"\n"
	  "ERR EOF\n" },
	{ "fetch, UID after BODY[]",
	  IN("* 2 FETCH (BODY[] {5}\r\nhello UID 5 MODSEQ (17))\r\n"
	     "* 3 FETCH (FLAGS () BODY[] {0}\r\n UID 6)\r\n"),
	  SK_BODY, 0, false,
	  "begin BODY[] 5\n"
	  "end \"hello\"\n"
	  "* 2 FETCH ( BODY[] <5> UID #5 MODSEQ ( #17 ) )\n"
	  "begin BODY[] 0\n"
	  "end \"\"\n"
	  "* 3 FETCH ( FLAGS ( ) BODY[] <0> UID #6 )\n"
	  "ERR EOF\n" },
	{ "body that looks like responses, streamed",
	  IN("* 3 FETCH (UID 9 BODY[] {43}\r\n"
	     "From: a@b\r\n\r\nA004 OK done\r\n* 3 EXPUNGE\r\n)\r\n"
	     ")\r\n"
	     "A004 OK Fetch completed.\r\n"),
	  SK_BODY, 0, false,
	  "begin BODY[] 43\n"
	  "end \"From: a@b\\r\\n\\r\\nA004 OK done\\r\\n* 3 EXPUNGE\\r\\n)\\r\\n\"\n"
	  "* 3 FETCH ( UID #9 BODY[] <43> )\n"
	  "A004 OK \"Fetch completed.\"\n"
	  "ERR EOF\n" },
	{ "body that looks like responses, inline",
	  IN("* 3 FETCH (UID 9 BODY[] {43}\r\n"
	     "From: a@b\r\n\r\nA004 OK done\r\n* 3 EXPUNGE\r\n)\r\n"
	     ")\r\n"
	     "A004 OK Fetch completed.\r\n"),
	  SK_NONE, 0, false,
	  "* 3 FETCH ( UID #9 BODY[] \"From: a@b\\r\\n\\r\\nA004 OK done\\r\\n* 3 EXPUNGE\\r\\n)\\r\\n\" )\n"
	  "A004 OK \"Fetch completed.\"\n"
	  "ERR EOF\n" },
	{ "section keys with spaces, parens, quotes",
	  IN("* 4 FETCH (UID 10 BODY[HEADER.FIELDS (FROM TO)] {22}\r\n"
	     "From: a@b\r\nTo: c@d\r\n\r\n)\r\n"
	     "* 5 FETCH (BODY[HEADER.FIELDS (\"X-]\")]<0> {3}\r\nabc)\r\n"),
	  SK_BODY, 0, false,
	  "begin BODY[HEADER.FIELDS (FROM TO)] 22\n"
	  "end \"From: a@b\\r\\nTo: c@d\\r\\n\\r\\n\"\n"
	  "* 4 FETCH ( UID #10 BODY[HEADER.FIELDS (FROM TO)] <22> )\n"
	  "begin BODY[HEADER.FIELDS (\"X-]\")]<0> 3\n"
	  "end \"abc\"\n"
	  "* 5 FETCH ( BODY[HEADER.FIELDS (\"X-]\")]<0> <3> )\n"
	  "ERR EOF\n" },
	{ "escaped quotes and nested brackets in sections and codes, LITERAL+ form",
	  IN("* 1 FETCH (BODY[HEADER.FIELDS (\"A\\\"]\" B)] {1}\r\nx X[a[b]c] {2+}\r\nyz)\r\n"
	     "* OK [X \"a\\\"]\" y] t\r\n"),
	  SK_BODY, 0, false,
	  "begin BODY[HEADER.FIELDS (\"A\\\"]\" B)] 1\n"
	  "end \"x\"\n"
	  "begin X[a[b]c] 2\n"
	  "* 1 FETCH ( BODY[HEADER.FIELDS (\"A\\\"]\" B)] <1> X[a[b]c] \"yz\" )\n"
	  "* OK [X \"a\\\"]\" y] \"t\"\n"
	  "ERR EOF\n" },
	{ "literal8 and two literals in one response, streamed",
	  IN("* 5 FETCH (BINARY[] ~{3}\r\na\0c UID 11)\r\n"
	     "* 6 FETCH (BODY[HEADER] {4}\r\nH: x BODY[TEXT] {4}\r\nbody)\r\n"),
	  SK_BODY, 0, false,
	  "begin BINARY[] 3\n"
	  "end \"a\\x00c\"\n"
	  "* 5 FETCH ( BINARY[] <3> UID #11 )\n"
	  "begin BODY[HEADER] 4\n"
	  "end \"H: x\"\n"
	  "begin BODY[TEXT] 4\n"
	  "end \"body\"\n"
	  "* 6 FETCH ( BODY[HEADER] <4> BODY[TEXT] <4> )\n"
	  "ERR EOF\n" },
	{ "literal8 and two literals in one response, inline",
	  IN("* 5 FETCH (BINARY[] ~{3}\r\na\0c UID 11)\r\n"
	     "* 6 FETCH (BODY[HEADER] {4}\r\nH: x BODY[TEXT] {4}\r\nbody)\r\n"
	     "* 7 FETCH (X ~abc)\r\n"),
	  SK_NONE, 0, false,
	  "* 5 FETCH ( BINARY[] \"a\\x00c\" UID #11 )\n"
	  "* 6 FETCH ( BODY[HEADER] \"H: x\" BODY[TEXT] \"body\" )\n"
	  "* 7 FETCH ( X ~abc )\n"
	  "ERR EOF\n" },
	{ "sink says inline",
	  IN("* 6 FETCH (BODY[] {4}\r\nbody)\r\n"),
	  SK_INLINE, 0, false,
	  "begin BODY[] 4\n"
	  "* 6 FETCH ( BODY[] \"body\" )\n"
	  "ERR EOF\n" },
	{ "NIL, \"NIL\", empty strings",
	  IN("* 6 FETCH (UID 3 ENVELOPE (NIL \"NIL\" \"\" nil Nil {0}\r\n))\r\n"
	     "* LIST () NIL NILS\r\n"),
	  SK_NONE, 0, false,
	  "* 6 FETCH ( UID #3 ENVELOPE ( NIL \"NIL\" \"\" NIL NIL \"\" ) )\n"
	  "* LIST ( ) NIL NILS\n"
	  "ERR EOF\n" },
	{ "nested lists",
	  IN("* 7 FETCH (UID 12 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1)"
	     "(\"text\" \"html\" NIL NIL NIL \"7bit\" 20 1) \"alternative\"))\r\n"),
	  SK_NONE, 0, false,
	  "* 7 FETCH ( UID #12 BODYSTRUCTURE ( ( \"text\" \"plain\" ( \"charset\" \"utf-8\" ) NIL NIL \"7bit\" #12 #1 )"
	  " ( \"text\" \"html\" NIL NIL NIL \"7bit\" #20 #1 ) \"alternative\" ) )\n"
	  "ERR EOF\n" },
	{ "bare LF line ends",
	  IN("* 3 EXISTS\nA1 OK done\n* 1 FETCH (BODY[] {4}\nab\r\n)\n+ go\n"),
	  SK_BODY, 0, false,
	  "* 3 EXISTS\n"
	  "A1 OK \"done\"\n"
	  "begin BODY[] 4\n"
	  "end \"ab\\r\\n\"\n"
	  "* 1 FETCH ( BODY[] <4> )\n"
	  "+ \"go\"\n"
	  "ERR EOF\n" },
	{ "gmail extensions, keywords",
	  IN("* 1 FETCH (X-GM-THRID 1278455344230334865 X-GM-LABELS (\\Inbox \"Some label\" \\Sent) UID 3)\r\n"
	     "* FLAGS (\\Seen $Forwarded $MDNSent Junk NonJunk)\r\n"),
	  SK_BODY, 0, false,
	  "* 1 FETCH ( X-GM-THRID #1278455344230334865 X-GM-LABELS ( \\Inbox \"Some label\" \\Sent ) UID #3 )\n"
	  "* FLAGS ( \\Seen $Forwarded $MDNSent Junk NonJunk )\n"
	  "ERR EOF\n" },
	{ "quoted escapes and 8-bit",
	  IN("* LIST () \"/\" \"q\\\"b\\\\s\\x \xff\"\r\n"),
	  SK_NONE, 0, false,
	  "* LIST ( ) \"/\" \"q\\\"b\\\\s\\\\x \\xff\"\n"
	  "ERR EOF\n" },

	/* ---- sinks that abort: the reader stays in step ---- */
	{ "sink refuses at begin",
	  IN("* 1 FETCH (UID 4 BODY[] {12}\r\nHello world! BODY[HEADER] {3}\r\nabc)\r\n"
	     "* 2 FETCH (UID 5 FLAGS (\\Seen))\r\n"
	     "A1 OK done\r\n"),
	  SK_ABORT_BEGIN, 0, false,
	  "begin BODY[] 12\n"
	  "ABORT\n"
	  "* 2 FETCH ( UID #5 FLAGS ( \\Seen ) )\n"
	  "A1 OK \"done\"\n"
	  "ERR EOF\n" },
	{ "sink fails a write",
	  IN("* 1 FETCH (UID 4 BODY[] {12}\r\nHello world! BODY[HEADER] {3}\r\nabc)\r\n"
	     "* 2 FETCH (UID 5 FLAGS (\\Seen))\r\n"
	     "A1 OK done\r\n"),
	  SK_ABORT_WRITE, 0, false,
	  "begin BODY[] 12\n"
	  "abort \"\"\n"
	  "ABORT\n"
	  "* 2 FETCH ( UID #5 FLAGS ( \\Seen ) )\n"
	  "A1 OK \"done\"\n"
	  "ERR EOF\n" },
	{ "sink fails at end",
	  IN("* 1 FETCH (UID 4 BODY[] {12}\r\nHello world! BODY[HEADER] {3}\r\nabc)\r\n"
	     "* 2 FETCH (UID 5 FLAGS (\\Seen))\r\n"
	     "A1 OK done\r\n"),
	  SK_ABORT_END, 0, false,
	  "begin BODY[] 12\n"
	  "end \"Hello world!\"\n"
	  "ABORT\n"
	  "* 2 FETCH ( UID #5 FLAGS ( \\Seen ) )\n"
	  "A1 OK \"done\"\n"
	  "ERR EOF\n" },
	{ "abort, then a broken rest of the response",
	  IN("* 1 FETCH (BODY[] {3}\r\nabc))\r\n"),
	  SK_ABORT_BEGIN, 0, false,
	  "begin BODY[] 3\n"
	  "ERR PROTO\n" },

	/* ---- the connection ends ---- */
	{ "empty stream", IN(""), SK_BODY, 0, false, "ERR EOF\n" },
	{ "EOF in a streamed literal",
	  IN("* 1 FETCH (UID 4 BODY[] {10}\r\nabc"),
	  SK_BODY, 0, false,
	  "begin BODY[] 10\n"
	  "abort \"abc\"\n"
	  "ERR EOF\n" },
	{ "EOF in an inline literal",
	  IN("* 1 FETCH (UID 4 BODY[] {10}\r\nabc"),
	  SK_NONE, 0, false,
	  "ERR EOF\n" },
	{ "read error in a streamed literal",
	  IN("* 1 FETCH (UID 4 BODY[] {10}\r\nabc"),
	  SK_BODY, 0, true,
	  "begin BODY[] 10\n"
	  "abort \"abc\"\n"
	  "ERR IO\n" },
	{ "EOF in a line",
	  IN("* 1 EXISTS\r\n* 1 FETCH (UID"),
	  SK_BODY, 0, false,
	  "* 1 EXISTS\n"
	  "ERR EOF\n" },
	{ "EOF between CR and LF", IN("* 1 EXISTS\r"), SK_BODY, 0, false, "ERR EOF\n" },
	{ "EOF in a literal announcement", IN("* 1 FETCH (BODY[] {12"), SK_BODY, 0, false, "ERR EOF\n" },
	{ "EOF in a quoted string", IN("* LIST () \"/\" \"INB"), SK_BODY, 0, false, "ERR EOF\n" },
	{ "EOF before the tagged response",
	  IN("* 1 FETCH (UID 4 BODY[] {3}\r\nabc)\r\n"),
	  SK_BODY, 0, false,
	  "begin BODY[] 3\n"
	  "end \"abc\"\n"
	  "* 1 FETCH ( UID #4 BODY[] <3> )\n"
	  "ERR EOF\n" },
	{ "read error between responses",
	  IN("* 1 EXISTS\r\n"),
	  SK_BODY, 0, true,
	  "* 1 EXISTS\n"
	  "ERR IO\n" },

	/* ---- huge literal announcements never allocate their size ---- */
	{ "2 GiB literal, streamed, then EOF",
	  IN("* 1 FETCH (UID 4 BODY[] {2147483648}\r\nabc"),
	  SK_BODY, 0, false,
	  "begin BODY[] 2147483648\n"
	  "abort \"abc\"\n"
	  "ERR EOF\n" },
	{ "2 GiB literal, no sink",
	  IN("* 1 FETCH (UID 4 BODY[] {2147483648}\r\nabc"),
	  SK_NONE, 0, false,
	  "ERR TOOBIG\n" },
	{ "2 GiB literal, sink says inline",
	  IN("* 1 FETCH (UID 4 BODY[] {2147483648}\r\nabc"),
	  SK_INLINE, 0, false,
	  "begin BODY[] 2147483648\n"
	  "ERR TOOBIG\n" },
	{ "literal of UINT64_MAX bytes, streamed",
	  IN("* 1 FETCH (X {18446744073709551615}\r\n"),
	  SK_STREAM, 0, false,
	  "begin X 18446744073709551615\n"
	  "abort \"\"\n"
	  "ERR EOF\n" },
	{ "literal size past 64 bits",
	  IN("* 1 FETCH (BODY[] {18446744073709551616}\r\n"),
	  SK_STREAM, 0, false,
	  "ERR PROTO\n" },
	{ "literal just over the inline maximum",
	  IN("* 1 FETCH (BODY[] {65537}\r\n"),
	  SK_NONE, 0, false,
	  "ERR TOOBIG\n" },

	/* ---- not IMAP ---- */
	{ "TLS handshake bytes", IN("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "HTTP", IN("HTTP/1.1 400 Bad Request\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "empty line", IN("\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "leading space", IN(" A1 OK\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "unknown tagged status", IN("A1 FOO bar\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "tagged BYE", IN("A1 BYE bar\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "tag without status", IN("A1\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "star alone", IN("*\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "star without name", IN("*  \r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "number without name", IN("* 12\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "number past 32 bits", IN("* 4294967296 EXISTS\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "number glued to name", IN("* 12EXISTS\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "extra close paren", IN("* 1 FETCH (UID 4))\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "unclosed list", IN("* 1 FETCH ((UID 4)\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "NUL in text", IN("* OK hi\0there\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "NUL in code", IN("* OK [A\0] x\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "NUL in quoted string", IN("* LIST () \"/\" \"a\0b\"\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "CR without LF", IN("A1 OK done\rX\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "line end in quoted string", IN("* SEARCH \"abc\r\n\"\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "line end in a section", IN("* 1 FETCH (BODY[1 {3}\r\nabc)\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "bad literal size", IN("* 1 FETCH (BODY[] {5x}\r\nhello)\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "empty literal size", IN("* 1 FETCH (BODY[] {}\r\n)\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "no line end after literal size", IN("* 1 FETCH (BODY[] {5}hello)\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "CR then junk after literal size", IN("* 1 FETCH (BODY[] {5}\rhello)\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "control char in data", IN("* SEARCH 1\x01\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "tab between tokens", IN("* 1 FETCH (UID 3\tFLAGS ())\r\n"), SK_BODY, 0, false, "ERR PROTO\n" },
	{ "garbage after good responses",
	  IN("* 1 EXISTS\r\n\x00garbage\r\n"),
	  SK_BODY, 0, false,
	  "* 1 EXISTS\n"
	  "ERR PROTO\n" },

	/* ---- limits ---- */
	{ "line at max_line",
	  IN("* SEARCH 1234567890123456789 1\r\n"),
	  SK_BODY, 32, false,
	  "* SEARCH #1234567890123456789 #1\n"
	  "ERR EOF\n" },
	{ "line one byte over max_line",
	  IN("* SEARCH 1234567890123456789 12\r\n"),
	  SK_BODY, 32, false,
	  "ERR TOOBIG\n" },
	{ "overlong line after a good one",
	  IN("* 1 EXISTS\r\n* CAPABILITY IMAP4rev1 IDLE LITERAL+ STARTTLS AUTH=PLAIN\r\nA1 OK\r\n"),
	  SK_BODY, 32, false,
	  "* 1 EXISTS\n"
	  "ERR TOOBIG\n" },
	{ "overlong status text",
	  IN("A1 OK this text is longer than thirty-two bytes\r\n"),
	  SK_BODY, 32, false,
	  "ERR TOOBIG\n" },
	{ "too many tokens",
	  IN("* FLAGS (((((((((((((((((((((((((())))))))))))))))))))))))))\r\n"),
	  SK_BODY, 64, false,
	  "ERR TOOBIG\n" },
	{ "inline literal counts against max_line",
	  IN("* 1 FETCH (BODY[] {60}\r\n"
	     "012345678901234567890123456789012345678901234567890123456789)\r\n"),
	  SK_NONE, 64, false,
	  "ERR TOOBIG\n" },
	{ "streamed literal does not count against max_line",
	  IN("* 1 FETCH (BODY[] {60}\r\n"
	     "012345678901234567890123456789012345678901234567890123456789)\r\n"),
	  SK_BODY, 64, false,
	  "begin BODY[] 60\n"
	  "end \"012345678901234567890123456789012345678901234567890123456789\"\n"
	  "* 1 FETCH ( BODY[] <60> )\n"
	  "ERR EOF\n" },
};

static const size_t chunks[] = { 1, 2, 3, 7, SIZE_MAX };

static void test_transcripts(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *tc = &cases[i];

		for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
			struct buf log = BUF_INIT(1 << 20);

			run(tc->in, tc->len, tc->mode, tc->max_line, tc->io_error, chunks[k], &log, NULL);
			if (strcmp(log.data, tc->expect) != 0)
				fail_msg("%s (chunk %zu):\n--- got\n%s--- expected\n%s", tc->name,
					 chunks[k], log.data, tc->expect);
			buf_release(&log);
		}
	}
}

/* LIST_BEGIN.end indices, spelled out. */
static void test_list_ends(void **state)
{
	static const char in[] =
		"* 7 FETCH (UID 12 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1)"
		"(\"text\" \"html\" NIL NIL NIL \"7bit\" 20 1) \"alternative\"))\r\n";
	static const struct { size_t at, end; } ends[] = {
		{ 0, 30 }, { 4, 29 }, { 5, 17 }, { 8, 11 }, { 18, 27 },
	};
	struct mem_src m;
	struct imap_reader *rd;
	struct imap_resp r;

	(void)state;
	rd = mem_reader(&m, in, sizeof(in) - 1, 5, 4096);
	assert_int_equal(imap_read_response(rd, &r, NULL), 0);
	assert_int_equal(r.n_toks, 31);
	for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
		assert_int_equal(r.toks[ends[i].at].type, IMAP_LIST_BEGIN);
		assert_int_equal(r.toks[ends[i].at].end, ends[i].end);
		assert_int_equal(r.toks[ends[i].end].type, IMAP_LIST_END);
	}
	assert_int_equal(r.toks[3].type, IMAP_ATOM);
	assert_string_equal(r.toks[3].s, "BODYSTRUCTURE");
	assert_int_equal(r.toks[12].type, IMAP_NIL);
	assert_int_equal(r.toks[15].type, IMAP_NUMBER);
	assert_int_equal(r.toks[15].num, 12);
	assert_int_equal(imap_read_response(rd, &r, NULL), IMAP_ERR_EOF);
	imap_reader_destroy(&rd);
	imap_reader_destroy(&rd);  /* harmless on NULL */
}

/* Many tokens: the arena and token array grow (move) during the response;
 * every pointer must still be right at the end. */
static void test_many_tokens(void **state)
{
	struct buf in = BUF_INIT(1 << 20);
	struct imap_reader *rd;
	struct imap_resp r;
	struct mem_src m;

	(void)state;
	assert_int_equal(buf_appends(&in, "* SEARCH"), 0);
	for (unsigned u = 1; u <= 20000; u++)
		assert_int_equal(buf_printf(&in, " %u", u * 7), 0);
	assert_int_equal(buf_appends(&in, "\r\n* LIST () \"/\" {5}\r\nhello\r\nA1 OK done\r\n"), 0);
	for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		rd = mem_reader(&m, in.data, in.len, chunks[k] == 1 ? 4093 : chunks[k], 1 << 20);
		assert_int_equal(imap_read_response(rd, &r, NULL), 0);
		assert_string_equal(r.name, "SEARCH");
		assert_int_equal(r.n_toks, 20000);
		for (unsigned u = 1; u <= 20000; u++) {
			char s[16];

			snprintf(s, sizeof(s), "%u", u * 7);
			assert_int_equal(r.toks[u - 1].type, IMAP_NUMBER);
			assert_int_equal(r.toks[u - 1].num, u * 7);
			assert_string_equal(r.toks[u - 1].s, s);
		}
		assert_int_equal(imap_read_response(rd, &r, NULL), 0);
		assert_int_equal(r.n_toks, 4);
		assert_int_equal(r.toks[3].type, IMAP_STRING);
		assert_string_equal(r.toks[3].s, "hello");
		assert_int_equal(imap_read_response(rd, &r, NULL), 0);
		assert_string_equal(r.tag, "A1");
		assert_int_equal(imap_read_response(rd, &r, NULL), IMAP_ERR_EOF);
		imap_reader_destroy(&rd);
	}
	buf_release(&in);
}

/* A big body is streamed in pieces no larger than the read buffer, byte
 * exact, and the next responses are read normally. */
static void test_big_streamed_body(void **state)
{
	const size_t n = 300 * 1000;
	struct buf in = BUF_INIT(1 << 20), log = BUF_INIT(1 << 20);
	struct log_sink ls;
	char *body = malloc(n);

	(void)state;
	assert_non_null(body);
	for (size_t i = 0; i < n; i++)
		body[i] = (char)(i * 131 + i / 977);
	assert_int_equal(buf_printf(&in, "* 1 FETCH (UID 1 BODY[] {%zu}\r\n", n), 0);
	assert_int_equal(buf_append(&in, body, n), 0);
	assert_int_equal(buf_appends(&in, " FLAGS (\\Seen))\r\nA1 OK done\r\n"), 0);
	for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		/* 1 byte at a time would be slow under ASan; 997 splits everywhere too */
		size_t chunk = chunks[k] == 1 ? 997 : chunks[k];

		buf_reset(&log);
		run(in.data, in.len, SK_STREAM, 4096, false, chunk, &log, &ls);
		assert_int_equal(ls.data.len, n);
		assert_memory_equal(ls.data.data, body, n);
		assert_true(ls.max_write <= 64 * 1024);
		assert_true(strstr(log.data, "* 1 FETCH ( UID #1 BODY[] <300000> FLAGS ( \\Seen ) )\n"
						"A1 OK \"done\"\nERR EOF\n") != NULL);
		buf_release(&ls.data);
	}
	free(body);
	buf_release(&in);
	buf_release(&log);
}

/* The inline maximum is inclusive. */
static void test_inline_max(void **state)
{
	struct buf in = BUF_INIT(1 << 20), log = BUF_INIT(1 << 20);

	(void)state;
	assert_int_equal(buf_printf(&in, "* 1 FETCH (BODY[] {%d}\r\n", IMAP_INLINE_LITERAL_MAX), 0);
	for (int i = 0; i < IMAP_INLINE_LITERAL_MAX; i++)
		assert_int_equal(buf_appendc(&in, 'x'), 0);
	assert_int_equal(buf_appends(&in, ")\r\n"), 0);
	run(in.data, in.len, SK_NONE, 0, false, SIZE_MAX, &log, NULL);
	assert_int_equal(log.len, strlen("* 1 FETCH ( BODY[] \"\" )\nERR EOF\n") + IMAP_INLINE_LITERAL_MAX);
	buf_release(&in);
	buf_release(&log);
}

/* A VANISHED set is an atom the caller hands to uidset_parse (test_uidset
 * covers the sets themselves). */
static void test_vanished_set_token(void **state)
{
	static const char in[] = "* VANISHED (EARLIER) 1:3,5\r\n";
	struct mem_src m;
	struct imap_reader *rd;
	struct imap_resp r;

	(void)state;
	rd = mem_reader(&m, in, sizeof(in) - 1, SIZE_MAX, 4096);
	assert_int_equal(imap_read_response(rd, &r, NULL), 0);
	assert_true(imap_is(r.name, "vanished"));
	assert_int_equal(r.n_toks, 4);
	assert_true(imap_is(r.toks[1].s, "EARLIER"));
	assert_int_equal(r.toks[3].type, IMAP_ATOM);
	assert_string_equal(r.toks[3].s, "1:3,5");
	imap_reader_destroy(&rd);
}

/* ---- bounds against hostile servers ---- */

struct num_sink {
	uint64_t sum, n, stop_after;
};

static int ns_number(void *ctx, uint64_t n)
{
	struct num_sink *ns = ctx;

	ns->sum += n;
	return ++ns->n == ns->stop_after ? -1 : 0;
}

static int ns_inline(void *ctx, const char *key, uint64_t n)
{
	(void)ctx, (void)key, (void)n;
	return 0;
}

/* SEARCH numbers go to the sink one by one and cost neither tokens nor
 * line bytes: 200,000 of them pass a reader whose line limit is 4 KiB. */
static void test_search_numbers_stream(void **state)
{
	struct buf in = BUF_INIT(4 << 20);
	struct num_sink ns = { 0 };
	struct imap_sink sink = { .begin = ns_inline, .number = ns_number, .ctx = &ns };
	struct imap_reader *rd;
	struct imap_resp r;
	struct mem_src m;
	uint64_t want = 0;

	(void)state;
	assert_int_equal(buf_appends(&in, "* SEARCH"), 0);
	for (unsigned u = 1; u <= 200000; u++) {
		assert_int_equal(buf_printf(&in, " %u", u * 3), 0);
		want += u * 3;
	}
	assert_int_equal(buf_appends(&in, " (MODSEQ 17)\r\n* 3 EXISTS\r\nA1 OK done\r\n"), 0);
	rd = mem_reader(&m, in.data, in.len, 4093, 4096);
	assert_int_equal(imap_read_response(rd, &r, &sink), 0);
	assert_string_equal(r.name, "SEARCH");
	assert_int_equal(ns.n, 200000);
	assert_true(ns.sum == want);
	/* only the (MODSEQ 17) list is left as tokens */
	assert_int_equal(r.n_toks, 4);
	assert_int_equal(r.toks[0].type, IMAP_LIST_BEGIN);
	assert_int_equal(imap_read_response(rd, &r, &sink), 0);
	assert_string_equal(r.name, "EXISTS");
	assert_int_equal(imap_read_response(rd, &r, &sink), 0);
	assert_string_equal(r.tag, "A1");
	imap_reader_destroy(&rd);

	/* the sink's refusal ends the response at once */
	ns = (struct num_sink){ .stop_after = 10 };
	rd = mem_reader(&m, in.data, in.len, 4093, 4096);
	assert_int_equal(imap_read_response(rd, &r, &sink), IMAP_ERR_REFUSED);
	assert_int_equal(ns.n, 10);
	assert_true(m.pos < 16384);
	imap_reader_destroy(&rd);
	buf_release(&in);
}

/* A line of open parens, or of a million tiny atoms, stops at the token
 * cap, long before the line limit; the reader's memory stays bounded. */
static void test_token_cap(void **state)
{
	static const char *fill[] = { "(", "a ", "1 " };
	struct buf in = BUF_INIT(8 << 20);
	struct imap_reader *rd;
	struct imap_resp r;
	struct mem_src m;

	(void)state;
	for (size_t f = 0; f < sizeof(fill) / sizeof(fill[0]); f++) {
		buf_reset(&in);
		assert_int_equal(buf_appends(&in, "* FLAGS ("), 0);
		for (unsigned i = 0; i < 2 * IMAP_MAX_TOKENS; i++)
			assert_int_equal(buf_appends(&in, fill[f]), 0);
		assert_int_equal(buf_appends(&in, ")\r\n"), 0);
		rd = mem_reader(&m, in.data, in.len, SIZE_MAX, 8 << 20);
		assert_int_equal(imap_read_response(rd, &r, NULL), IMAP_ERR_TOOBIG);
		/* it stopped near the cap: at most 2 bytes a token were
		 * parsed, and the reader reads ahead 64 KiB at most */
		assert_true(m.pos <= 2 * (size_t)IMAP_MAX_TOKENS + (64 << 10) + 64);
		imap_reader_destroy(&rd);
	}
	buf_release(&in);
}

/* A line without an end stops at max_line. */
static void test_endless_line(void **state)
{
	struct buf in = BUF_INIT(4 << 20);
	struct imap_reader *rd;
	struct imap_resp r;
	struct mem_src m;

	(void)state;
	assert_int_equal(buf_appends(&in, "* OK "), 0);
	for (unsigned i = 0; i < 3 << 20; i++)
		assert_int_equal(buf_appendc(&in, 'x'), 0);
	rd = mem_reader(&m, in.data, in.len, SIZE_MAX, 1 << 20);
	assert_int_equal(imap_read_response(rd, &r, NULL), IMAP_ERR_TOOBIG);
	assert_true(m.pos <= (1 << 20) + 64 * 1024);
	imap_reader_destroy(&rd);
	buf_release(&in);
}

static int refusing_begin(void *ctx, const char *key, uint64_t n)
{
	size_t *calls = ctx;

	(void)key, (void)n;
	++*calls;
	return IMAP_SINK_REFUSE;
}

/* A literal announced past max_literal fails before a byte of it is read;
 * a sink's refusal fails at once too, with no skipping of the literal. */
static void test_literal_limits(void **state)
{
	static const char huge[] = "* 1 FETCH (UID 7 BODY[] {999999999999}\r\nxxxxxxxx";
	static const char fine[] = "* 1 FETCH (UID 7 RFC822.SIZE 5 BODY[] {5000}\r\nxxxxxxxx";
	size_t calls = 0;
	struct imap_sink sink = { .begin = refusing_begin, .ctx = &calls };
	struct imap_reader *rd;
	struct imap_resp r;
	struct mem_src m;

	(void)state;
	rd = mem_reader(&m, huge, sizeof(huge) - 1, SIZE_MAX, 4096);
	imap_reader_set_max_literal(rd, 1 << 20);
	assert_int_equal(imap_read_response(rd, &r, &sink), IMAP_ERR_LITERAL);
	assert_int_equal(calls, 0);
	assert_true(imap_reader_literal_size(rd) == 999999999999ull);
	imap_reader_destroy(&rd);

	rd = mem_reader(&m, fine, sizeof(fine) - 1, SIZE_MAX, 4096);
	imap_reader_set_max_literal(rd, 1 << 20);
	assert_int_equal(imap_read_response(rd, &r, &sink), IMAP_ERR_REFUSED);
	assert_int_equal(calls, 1);
	imap_reader_destroy(&rd);
}

static int size_begin(void *ctx, const char *key, uint64_t n)
{
	struct imap_reader **rd = ctx;
	size_t nt;
	const struct imap_tok *t = imap_reader_tokens_so_far(*rd, &nt);

	(void)n;
	assert_string_equal(key, "BODY[]");
	/* "(" "UID" "7" "RFC822.SIZE" "5" "BODY[]" */
	assert_int_equal(nt, 6);
	assert_string_equal(t[3].s, "RFC822.SIZE");
	assert_int_equal(t[4].num, 5);
	return IMAP_SINK_DROP;
}

/* The tokens before a literal are there for the sink to check. */
static void test_tokens_so_far(void **state)
{
	static const char in[] = "* 1 FETCH (UID 7 RFC822.SIZE 5 BODY[] {3}\r\nabc)\r\nA1 OK\r\n";
	struct imap_reader *rd;
	struct imap_sink sink = { .begin = size_begin, .ctx = &rd };
	struct imap_resp r;
	struct mem_src m;

	(void)state;
	rd = mem_reader(&m, in, sizeof(in) - 1, SIZE_MAX, 4096);
	assert_int_equal(imap_read_response(rd, &r, &sink), IMAP_ERR_ABORT);
	assert_int_equal(imap_read_response(rd, &r, &sink), 0);
	assert_string_equal(r.tag, "A1");
	imap_reader_destroy(&rd);
}

static void test_is(void **state)
{
	(void)state;
	assert_true(imap_is("FETCH", "fetch"));
	assert_true(imap_is("Ok", "OK"));
	assert_true(imap_is("", ""));
	assert_true(imap_is("X-GM-EXT-1", "x-gm-ext-1"));
	assert_false(imap_is("OK", "OKAY"));
	assert_false(imap_is("OKAY", "OK"));
	assert_false(imap_is("OK", "NO"));
	assert_false(imap_is("[", "{"));      /* 0x5b vs 0x7b: not letters */
	assert_false(imap_is("\xc3\xa4", "\xc3\x84"));
	assert_false(imap_is(NULL, "OK"));
	assert_false(imap_is("OK", NULL));
}

static void test_strerror(void **state)
{
	static const int errs[] = { IMAP_ERR_EOF, IMAP_ERR_IO, IMAP_ERR_PROTO,
				    IMAP_ERR_TOOBIG, IMAP_ERR_ABORT, IMAP_ERR_NOMEM,
				    IMAP_ERR_REFUSED, IMAP_ERR_LITERAL };

	(void)state;
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		assert_non_null(imap_strerror(errs[i]));
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(imap_strerror(errs[i]), imap_strerror(errs[j]));
	}
	assert_non_null(imap_strerror(-99));
	assert_non_null(imap_strerror(0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transcripts),
		cmocka_unit_test(test_list_ends),
		cmocka_unit_test(test_many_tokens),
		cmocka_unit_test(test_big_streamed_body),
		cmocka_unit_test(test_inline_max),
		cmocka_unit_test(test_vanished_set_token),
		cmocka_unit_test(test_search_numbers_stream),
		cmocka_unit_test(test_token_cap),
		cmocka_unit_test(test_endless_line),
		cmocka_unit_test(test_literal_limits),
		cmocka_unit_test(test_tokens_so_far),
		cmocka_unit_test(test_is),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
