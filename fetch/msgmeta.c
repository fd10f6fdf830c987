/* msgmeta: header fields for the index and the mount's names and xattrs,
 * parsed with GMime 3 (RFC 5322, RFC 2047 encoded words, RFC 2231). */
#include "msgmeta.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/hdrfilter.h"

void msgmeta_init(void)
{
	g_mime_init();
}

/* GMime returns UTF-8 for decoded words but passes raw 8-bit bytes of
 * undeclared charsets through its fallback list; make sure of it here. */
static char *dup_utf8(const char *s)
{
	if (!s || !*s)
		return NULL;
	gchar *v = g_utf8_make_valid(s, -1);
	size_t n = strlen(v);

	/* A header of a megabyte is an attack or a mistake, not a subject:
	 * keep what a name, an xattr (64 KiB at most) or a search can use. */
	if (n > MSGMETA_FIELD_MAX) {
		const char *end = g_utf8_find_prev_char(v, v + MSGMETA_FIELD_MAX + 1);
		n = end ? (size_t)(end - v) : 0;
	}
	char *r = strndup(v, n);
	g_free(v);
	return r;
}

/* GMime's unencoded form of a list ("Name <addr>, addr, Group: a, b;",
 * names quoted where they need it), but with each address as the message
 * wrote it: internet_address_list_to_string turns every domain into its
 * IDN ASCII form (libidn2), 2.5% of a first sync's CPU, and shows a
 * person xn--... where the message said a name in their own script. */
static void append_addresses(GString *s, InternetAddressList *l)
{
	int n = internet_address_list_length(l);

	for (int i = 0; i < n; i++) {
		InternetAddress *ia = internet_address_list_get_address(l, i);
		const char *name = internet_address_get_name(ia);
		gchar *quoted = name ? g_mime_utils_quote_string(name) : NULL;

		if (i > 0)
			g_string_append(s, ", ");
		if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			if (quoted)
				g_string_append(s, quoted);
			g_string_append(s, ": ");
			append_addresses(s, internet_address_group_get_members(
						    INTERNET_ADDRESS_GROUP(ia)));
			g_string_append_c(s, ';');
		} else if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
			const char *addr = internet_address_mailbox_get_addr(
				INTERNET_ADDRESS_MAILBOX(ia));

			if (quoted && *quoted)
				g_string_append_printf(s, "%s <%s>", quoted, addr ? addr : "");
			else if (addr)
				g_string_append(s, addr);
		}
		g_free(quoted);
	}
}

static char *addresses(InternetAddressList *l)
{
	if (!l || internet_address_list_length(l) == 0)
		return NULL;
	GString *s = g_string_new(NULL);
	append_addresses(s, l);
	char *r = dup_utf8(s->str);
	g_string_free(s, TRUE);
	return r;
}

/* The fields parse reads: msgmeta_parse gives GMime only these
 * (hdrfilter.h), as it spends most of its time on one object per line. */
static const char *const wanted[] = {
	"From", "To", "Subject", "Date", "Message-ID", NULL
};

static void parse(const char *hdr, size_t len, struct msgmeta *r)
{
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(hdr, len);
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);

	if (msg) {
		const char *id = g_mime_message_get_message_id(msg);
		GDateTime *d = g_mime_message_get_date(msg);

		r->message_id = dup_utf8(id);
		r->subject = dup_utf8(g_mime_message_get_subject(msg));
		r->from = addresses(g_mime_message_get_from(msg));
		r->to = addresses(g_mime_message_get_to(msg));
		if (d)
			r->date = g_date_time_to_unix(d);
		g_object_unref(msg);
	}
	g_object_unref(parser);
	g_object_unref(stream);
}

int msgmeta_parse(const char *hdr, size_t len, struct msgmeta *r)
{
	memset(r, 0, sizeof(*r));
	if (len == 0)
		return 0;

	char *cut = malloc(len);
	size_t end;

	if (!cut)
		return -ENOMEM;
	parse(cut, hdrfilter(hdr, len, wanted, cut, &end), r);
	free(cut);
	return 0;
}

int msgmeta_parse_whole(const char *hdr, size_t len, struct msgmeta *r)
{
	memset(r, 0, sizeof(*r));
	if (len > 0)
		parse(hdr, len, r);
	return 0;
}

void msgmeta_release(struct msgmeta *m)
{
	free(m->message_id);
	free(m->subject);
	free(m->from);
	free(m->to);
	memset(m, 0, sizeof(*m));
}

/* The end of the header block in p[0..len), looking at the line ends from
 * `from` on; the bytes before from are context only (a piece may end right
 * after a line break, or between the CR and the LF of an empty line). */
static size_t header_end(const char *p, size_t len, size_t from)
{
	const char *nl;

	for (size_t i = from; i < len; i = (size_t)(nl - p) + 1) {
		nl = memchr(p + i, '\n', len - i);
		if (!nl)
			break;
		i = (size_t)(nl - p);
		/* an empty line: "\n" or "\r\n" at the start, or after a "\n" */
		if (i == 0 || p[i - 1] == '\n' ||
		    (p[i - 1] == '\r' && (i == 1 || p[i - 2] == '\n')))
			return i + 1;
	}
	return 0;
}

size_t msgmeta_header_len(const char *p, size_t len)
{
	return header_end(p, len, 0);
}

void msgmeta_header_init(struct msgmeta_header *h, size_t keep)
{
	buf_init(&h->buf, keep + 1);
	h->keep = keep;
	h->done = false;
}

void msgmeta_header_reset(struct msgmeta_header *h)
{
	buf_reset(&h->buf);
	h->done = false;
}

void msgmeta_header_release(struct msgmeta_header *h)
{
	buf_release(&h->buf);
	h->done = false;
}

int msgmeta_header_feed(struct msgmeta_header *h, const void *p, size_t n)
{
	size_t from = h->buf.len, room = h->keep - h->buf.len;
	int rc;

	if (h->done)
		return 0;
	rc = buf_append(&h->buf, p, n < room ? n : room);
	if (rc < 0) {
		h->done = true;
		return rc;
	}
	if (header_end(h->buf.data, h->buf.len, from) || h->buf.len >= h->keep)
		h->done = true;
	return 0;
}
