/* parts_dec: the decoding pipeline one part goes through, the same for
 * counting at ingest (parts.c) and for serving reads (parts_read.c), so
 * that both give GMime's own bytes (see PARTS_SLICE in parts_int.h). */
#include "parts_int.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_init_once(void)
{
	g_mime_init();
}

void parts_gmime_init(void)
{
	pthread_once(&gmime_once, gmime_init_once);
}

int parts_dec_init(struct parts_dec *d, enum part_enc enc, const char *charset)
{
	static const GMimeContentEncoding gm[] = {
		[PART_ENC_BASE64] = GMIME_CONTENT_ENCODING_BASE64,
		[PART_ENC_QP] = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE,
		[PART_ENC_UU] = GMIME_CONTENT_ENCODING_UUENCODE,
	};

	parts_gmime_init();
	d->basic = NULL;
	d->charset = NULL;
	d->base64 = enc == PART_ENC_BASE64 && !charset;
	if (enc == PART_ENC_BASE64 || enc == PART_ENC_QP || enc == PART_ENC_UU)
		d->basic = g_mime_filter_basic_new(gm[enc], FALSE);
	if (charset) {
		d->charset = g_mime_filter_charset_new(charset, "utf-8");
		if (!d->charset) {
			parts_dec_release(d);
			return -EIO;
		}
	}
	return 0;
}

void parts_dec_release(struct parts_dec *d)
{
	if (d->basic)
		g_object_unref(d->basic);
	if (d->charset)
		g_object_unref(d->charset);
	d->basic = NULL;
	d->charset = NULL;
}

/* The base64 alphabet's values, each shifted to its place in a quantum
 * of 4; every other byte has the top bit set. */
static uint32_t b64_val[4][256];
static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

static void b64_init(void)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (int k = 0; k < 4; k++)
		for (int c = 0; c < 256; c++)
			b64_val[k][c] = 0x80000000u;
	for (int i = 0; i < 64; i++)
		for (int k = 0; k < 4; k++)
			b64_val[k][(unsigned char)abc[i]] = (uint32_t)i << (18 - 6 * k);
}

/* Feeds n bytes to the transfer decoder alone, appending its output to
 * d->out at *len (room: the caller's slice is at most PARTS_SLICE). */
static void basic_feed(struct parts_dec *d, const char *in, size_t n, size_t *len)
{
	char *o;
	size_t on, pre;

	g_mime_filter_filter(d->basic, (char *)in, n, 0, &o, &on, &pre);
	memcpy(d->out + *len, o, on);
	*len += on;
}

/* GMime's base64 decoder takes 4 alphabet bytes to 3 output bytes one byte
 * at a time and skips every other byte but '=' (about 650 MB/s here); a
 * cold read of an attachment spent most of its time there. Where a slice
 * holds no '=' (all but a part's last), we complete a quantum GMime has
 * begun by giving it the bytes up to its end, decode the whole quanta
 * after it 4 bytes at once (about 2 GB/s), and give GMime the rest, so that
 * its state stays its own: the bytes are GMime's by construction. false:
 * the slice is not one for this loop, GMime decodes it whole. */
static bool b64_step(struct parts_dec *d, const char *in, size_t n, size_t *out_len)
{
	const unsigned char *p = (const unsigned char *)in, *end = p + n;
	size_t len = 0;

	if (memchr(in, '=', n))
		return false;
	pthread_once(&b64_once, b64_init);
	/* A quantum begun in the slice before: at most 3 alphabet bytes end it. */
	for (int k = 0; k < 4 && !parts_dec_clean(d); k++) {
		const unsigned char *q = p;

		while (q < end && b64_val[0][*q] & 0x80000000u)
			q++;
		if (q == end)
			break;
		basic_feed(d, (const char *)p, q + 1 - p, &len);
		p = q + 1;
	}
	if (!parts_dec_clean(d)) {
		if (p < end)
			basic_feed(d, (const char *)p, end - p, &len);
		*out_len = len;
		return true;
	}
	unsigned char *o = (unsigned char *)d->out + len;
	const unsigned char *tail = p;

	while (end - p >= 4) {
		uint32_t v = b64_val[0][p[0]] | b64_val[1][p[1]] | b64_val[2][p[2]] | b64_val[3][p[3]];

		if (v & 0x80000000u) {
			/* A skipped byte (a line end) within the next 4. */
			if (b64_val[0][*p] & 0x80000000u) {
				tail = ++p;
				continue;
			}
			/* It splits a quantum: gather the quantum byte by byte;
			 * one the slice ends inside is left to GMime. */
			const unsigned char *r = p;
			int k = 0;

			v = 0;
			for (; r < end && k < 4; r++)
				if (!(b64_val[k][*r] & 0x80000000u))
					v |= b64_val[k++][*r];
			if (k < 4)
				break;
			p = r;
		} else {
			p += 4;
		}
		o[0] = (unsigned char)(v >> 16);
		o[1] = (unsigned char)(v >> 8);
		o[2] = (unsigned char)v;
		o += 3;
		tail = p;
	}
	len = (char *)o - d->out;
	if (tail < end)
		basic_feed(d, (const char *)tail, end - tail, &len);
	*out_len = len;
	return true;
}

/* As GMimeStreamFilter does: each filter's output is the next one's input;
 * at the end each filter is completed in turn (stream_flush). */
void parts_dec_step(struct parts_dec *d, const char *in, size_t n, bool last,
		    const char **out, size_t *out_len)
{
	static char empty[1];
	char *buf = in ? (char *)in : empty;
	size_t len = n, pre = 0;

	if (d->base64 && !last && n && b64_step(d, in, n, out_len)) {
		*out = d->out;
		return;
	}
	if (d->basic) {
		if (last)
			g_mime_filter_complete(d->basic, buf, len, pre, &buf, &len, &pre);
		else
			g_mime_filter_filter(d->basic, buf, len, pre, &buf, &len, &pre);
	}
	if (d->charset) {
		if (last)
			g_mime_filter_complete(d->charset, buf, len, pre, &buf, &len, &pre);
		else
			g_mime_filter_filter(d->charset, buf, len, pre, &buf, &len, &pre);
	}
	*out = buf;
	*out_len = len;
}

/* Base64 keeps the pending sextets and '=' count in state and save; QP
 * keeps in state whether it is inside an "=XX" (its save is read only
 * inside one). A charset filter's iconv state cannot be seen: no marks. */
bool parts_dec_clean(const struct parts_dec *d)
{
	if (!d->basic || d->charset || d->basic->backlen)
		return false;
	const GMimeEncoding *e = &((GMimeFilterBasic *)d->basic)->encoder;

	if (e->encoding == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE)
		return e->state == 0;
	return e->encoding == GMIME_CONTENT_ENCODING_BASE64 && e->state == 0 && e->save == 0;
}
