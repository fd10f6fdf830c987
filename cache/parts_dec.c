/* parts_dec: the decoding pipeline one part goes through, the same for
 * counting at ingest (parts.c) and for serving reads (parts_read.c), so
 * that both give GMime's own bytes (see PARTS_SLICE in parts_int.h). */
#include "parts_int.h"

#include <errno.h>
#include <pthread.h>

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

/* As GMimeStreamFilter does: each filter's output is the next one's input;
 * at the end each filter is completed in turn (stream_flush). */
void parts_dec_step(struct parts_dec *d, const char *in, size_t n, bool last,
		    const char **out, size_t *out_len)
{
	static char empty[1];
	char *buf = in ? (char *)in : empty;
	size_t len = n, pre = 0;

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
