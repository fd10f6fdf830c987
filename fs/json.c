/* json: JSON strings from untrusted bytes (RFC 8259 section 7). */
#include "json.h"

#include <inttypes.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence of two to four bytes at p (n
 * bytes available), or 0. The ranges are RFC 3629's table. */
static size_t utf8_multibyte(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xBF;
	size_t len;

	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		len = 2;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		len = 3, lo = p[0] == 0xE0 ? 0xA0 : 0x80, hi = p[0] == 0xED ? 0x9F : 0xBF;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		len = 4, lo = p[0] == 0xF0 ? 0x90 : 0x80, hi = p[0] == 0xF4 ? 0x8F : 0xBF;
	else
		return 0;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t k = 2; k < len; k++)
		if (p[k] < 0x80 || p[k] > 0xBF)
			return 0;
	return len;
}

int json_append_string(struct buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	int rc = buf_appendc(b, '"');

	for (size_t i = 0; rc == 0 && i < len;) {
		unsigned char c = p[i];
		size_t n;

		if (c == '"' || c == '\\') {
			rc = buf_appendc(b, '\\');
			if (rc == 0)
				rc = buf_appendc(b, (char)c);
			i++;
		} else if (c < 0x20 || c == 0x7F) {
			rc = buf_printf(b, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			rc = buf_appendc(b, (char)c);
			i++;
		} else if ((n = utf8_multibyte(p + i, len - i)) > 0) {
			rc = buf_append(b, p + i, n);
			i += n;
		} else {
			rc = buf_appends(b, "\\ufffd");
			i++;
		}
	}
	return rc ? rc : buf_appendc(b, '"');
}

int json_append_cstr(struct buf *b, const char *s)
{
	return s ? json_append_string(b, s, strlen(s)) : buf_appends(b, "null");
}

int json_append_time(struct buf *b, int64_t v)
{
	return v > 0 ? buf_printf(b, "%" PRId64, v) : buf_appends(b, "null");
}
