/* utf7: IMAP modified UTF-7 mailbox names (RFC 3501 section 5.1.3).
 *
 * Printable US-ASCII except '&' stands for itself, "&-" is '&', and any
 * other run of characters is UTF-16 in base64 (with ',' for '/', no
 * padding) between '&' and '-'. Only the one canonical form of each name is
 * accepted, so decoding and re-encoding gives back the same bytes: that is
 * what lets a folder name found on disk be mapped back to the server's. */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include "utf7.h"

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

static bool is_printable(uint32_t c)
{
	return c >= 0x20 && c <= 0x7e;
}

/* Leaves out as it was before a failed call. */
static int restore(struct buf *out, size_t len, int err)
{
	out->len = len;
	if (out->data)
		out->data[len] = '\0';
	return err;
}

static int put_utf8(struct buf *out, uint32_t cp)
{
	char s[4];
	size_t n;

	if (cp < 0x80) {
		s[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		s[0] = (char)(0xc0 | cp >> 6);
		s[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		s[0] = (char)(0xe0 | cp >> 12);
		s[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		s[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		s[0] = (char)(0xf0 | cp >> 18);
		s[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		s[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		s[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return buf_append(out, s, n);
}

/* Decodes one base64 run from s (just after '&', before '-');
 * *i is advanced past the closing '-'. */
static int decode_run(const unsigned char *s, size_t len, size_t *i, struct buf *out)
{
	uint32_t bits = 0, hi = 0;
	int nbits = 0, e;

	for (;;) {
		uint32_t unit;
		int v;

		if (*i >= len)
			return -EINVAL;   /* unterminated shift */
		if (s[*i] == '-') {
			(*i)++;
			break;
		}
		v = b64_val(s[(*i)++]);
		if (v < 0)
			return -EINVAL;
		bits = bits << 6 | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		unit = bits >> nbits & 0xffff;
		bits &= (1u << nbits) - 1;
		if (hi) {
			if (unit < 0xdc00 || unit > 0xdfff)
				return -EINVAL;
			e = put_utf8(out, 0x10000 + ((hi - 0xd800) << 10) + (unit - 0xdc00));
			hi = 0;
		} else if (unit >= 0xd800 && unit <= 0xdbff) {
			hi = unit;
			e = 0;
		} else if (unit >= 0xdc00 && unit <= 0xdfff) {
			return -EINVAL;
		} else if (unit == 0 || is_printable(unit)) {
			/* NUL, or a char that must stand for itself */
			return -EINVAL;
		} else {
			e = put_utf8(out, unit);
		}
		if (e)
			return e;
	}
	/* A dangling high surrogate, a whole unused base64 char, or padding
	 * bits that are not zero: none comes from a conforming encoder. */
	if (hi || nbits >= 6 || bits != 0)
		return -EINVAL;
	return 0;
}

int utf7_decode(const char *in, size_t len, struct buf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t keep = out->len, i = 0;
	bool after_run = false;
	int e;

	while (i < len) {
		unsigned char c = s[i];

		if (!is_printable(c))
			return restore(out, keep, -EINVAL);
		if (c != '&') {
			if ((e = buf_appendc(out, (char)c)))
				return restore(out, keep, e);
			i++;
			after_run = false;
			continue;
		}
		if (i + 1 < len && s[i + 1] == '-') {
			if ((e = buf_appendc(out, '&')))
				return restore(out, keep, e);
			i += 2;
			after_run = false;
			continue;
		}
		/* "-&" straight after a run is a null shift (not permitted). */
		if (after_run)
			return restore(out, keep, -EINVAL);
		i++;
		if ((e = decode_run(s, len, &i, out)))
			return restore(out, keep, e);
		after_run = true;
	}
	return 0;
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, <= U+10FFFF.
 * Returns the sequence length, or 0 if invalid. */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp_r)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, k;
	uint32_t cp;

	if (c < 0x80) {
		*cp_r = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n > len)
		return 0;
	for (k = 1; k < n; k++) {
		if (s[k] < lo || s[k] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	*cp_r = cp;
	return n;
}

static int put_b64(struct buf *out, uint32_t *bits, int *nbits, uint32_t unit)
{
	int e;

	*bits = *bits << 16 | unit;
	*nbits += 16;
	while (*nbits >= 6) {
		*nbits -= 6;
		if ((e = buf_appendc(out, b64[*bits >> *nbits & 0x3f])))
			return e;
	}
	*bits &= (1u << *nbits) - 1;
	return 0;
}

/* A NUL is refused too: utf7_decode would refuse its encoding. */
int utf7_encode(const char *in, size_t len, struct buf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t keep = out->len, i = 0;
	int e;

	while (i < len) {
		uint32_t bits = 0;
		int nbits = 0;

		if (is_printable(s[i])) {
			e = s[i] == '&' ? buf_append(out, "&-", 2) : buf_appendc(out, (char)s[i]);
			if (e)
				return restore(out, keep, e);
			i++;
			continue;
		}
		if ((e = buf_appendc(out, '&')))
			return restore(out, keep, e);
		while (i < len && !is_printable(s[i])) {
			uint32_t cp;
			size_t n = utf8_next(s + i, len - i, &cp);

			if (n == 0 || cp == 0)
				return restore(out, keep, -EINVAL);
			i += n;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				e = put_b64(out, &bits, &nbits, 0xd800 | cp >> 10);
				if (!e)
					e = put_b64(out, &bits, &nbits, 0xdc00 | (cp & 0x3ff));
			} else {
				e = put_b64(out, &bits, &nbits, cp);
			}
			if (e)
				return restore(out, keep, e);
		}
		if (nbits > 0 && (e = buf_appendc(out, b64[bits << (6 - nbits) & 0x3f])))
			return restore(out, keep, e);
		if ((e = buf_appendc(out, '-')))
			return restore(out, keep, e);
	}
	return 0;
}
