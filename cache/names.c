/* names: path components from server names, and message file names (see
 * names.h for the escaping rule).
 *
 * Escaping is a bijection on the set of strings it produces: names_unescape
 * accepts exactly the canonical escaped forms (upper-case hex, nothing
 * escaped that need not be, nothing left raw that must be escaped), so two
 * different mount names never map to the same folder.
 *
 * Message file names (names_message_file) replace, in the subject:
 *   '/' and control characters (C0 other than whitespace, DEL, C1) and the
 *   bidirectional formatting characters (U+200E, U+200F, U+202A-U+202E,
 *   U+2066-U+2069, which can make a name display as something else) -> '_';
 *   each byte that is not part of valid UTF-8 -> U+FFFD;
 *   runs of whitespace (ASCII and Unicode spaces, line breaks) -> one space,
 *   none at either end.
 * The name begins with the date digits, so it never begins with '.'. */
#include "names.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "log.h"

/* Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF) at p, or 0 if there is none. */
static size_t utf8_seq(const unsigned char *p, size_t n, uint32_t *cp_r)
{
	/* The Unicode Standard's table 3-7 of well-formed sequences: by the
	 * first byte, the length and the range of the second byte (any later
	 * byte is 80..BF). */
	static const struct {
		unsigned char first, last, len, lo, hi;
	} rows[] = {
		{ 0xC2, 0xDF, 2, 0x80, 0xBF }, { 0xE0, 0xE0, 3, 0xA0, 0xBF },
		{ 0xE1, 0xEC, 3, 0x80, 0xBF }, { 0xED, 0xED, 3, 0x80, 0x9F },
		{ 0xEE, 0xEF, 3, 0x80, 0xBF }, { 0xF0, 0xF0, 4, 0x90, 0xBF },
		{ 0xF1, 0xF3, 4, 0x80, 0xBF }, { 0xF4, 0xF4, 4, 0x80, 0x8F },
	};
	size_t k = 0, len;
	uint32_t cp;

	if (n == 0)
		return 0;
	if (p[0] < 0x80) {
		*cp_r = p[0];
		return 1;
	}
	while (k < sizeof rows / sizeof rows[0] && !(p[0] >= rows[k].first && p[0] <= rows[k].last))
		k++;
	if (k == sizeof rows / sizeof rows[0])
		return 0;
	len = rows[k].len;
	if (n < len || p[1] < rows[k].lo || p[1] > rows[k].hi)
		return 0;
	cp = p[0] & (0x7Fu >> len);
	for (size_t i = 1; i < len; i++) {
		if (i > 1 && (p[i] < 0x80 || p[i] > 0xBF))
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	*cp_r = cp;
	return len;
}

static bool must_escape(unsigned char c, size_t pos)
{
	return c == '%' || c == '/' || c < 0x20 || c == 0x7F || (pos == 0 && c == '.');
}

static void buf_truncate(struct buf *out, size_t len)
{
	out->len = len;
	if (out->data)
		out->data[len] = '\0';
}

int names_escape(const char *in, size_t len, struct buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)in;
	size_t start = out->len;
	int rc = 0;

	if (len == 0)
		return buf_appendc(out, '%');
	for (size_t i = 0; i < len && rc == 0;) {
		uint32_t cp;
		size_t n = utf8_seq(p + i, len - i, &cp);

		if (n == 0 || must_escape(p[i], i)) {
			char e[3] = { '%', hex[p[i] >> 4], hex[p[i] & 0xF] };

			rc = buf_append(out, e, 3);
			i++;
		} else {
			rc = buf_append(out, p + i, n);
			i += n;
		}
		if (rc == 0 && out->len - start > NAMES_COMPONENT_MAX)
			rc = -ENAMETOOLONG;
	}
	if (rc)
		buf_truncate(out, start);
	return rc;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int names_unescape(const char *in, size_t len, struct buf *out)
{
	size_t start = out->len;
	struct buf check = BUF_INIT(NAMES_COMPONENT_MAX);
	int rc = 0;

	if (len == 1 && in[0] == '%')
		return buf_append(out, "", 0);
	if (len == 0 || len > NAMES_COMPONENT_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len && rc == 0; i++) {
		if (in[i] == '%') {
			int h, l;

			if (len - i < 3 || (h = hexval(in[i + 1])) < 0 ||
			    (l = hexval(in[i + 2])) < 0) {
				rc = -EINVAL;
				break;
			}
			rc = buf_appendc(out, (char)(h << 4 | l));
			i += 2;
		} else {
			rc = buf_appendc(out, in[i]);
		}
	}
	/* Only the canonical form is accepted: escaping the result again must
	 * give back exactly the input. */
	if (rc == 0) {
		rc = names_escape(out->data + start, out->len - start, &check);
		if (rc == 0 && (check.len != len || memcmp(check.data, in, len) != 0))
			rc = -EINVAL;
		else if (rc)
			rc = -EINVAL;
	}
	buf_release(&check);
	if (rc)
		buf_truncate(out, start);
	return rc;
}

/* A Maildir's own subdirectories, raw and as a folder component: a folder
 * component with one of these names would otherwise put that folder inside
 * its parent's Maildir. */
enum { SUB_RAW, SUB_ESCAPED };
static const char *const maildir_subs[3][2] = {
	{ "cur", "%63ur" }, { "new", "%6Eew" }, { "tmp", "%74mp" },
};

/* Which of maildir_subs s[0..len) is in the given form, or -1. */
static int maildir_sub(const char *s, size_t len, int form)
{
	for (int i = 0; i < 3; i++)
		if (strlen(maildir_subs[i][form]) == len && memcmp(s, maildir_subs[i][form], len) == 0)
			return i;
	return -1;
}

bool names_is_maildir_sub(const char *comp, size_t len)
{
	return maildir_sub(comp, len, SUB_RAW) >= 0;
}

int names_folder_unescape(const char *in, size_t len, struct buf *out)
{
	int i = maildir_sub(in, len, SUB_ESCAPED);

	if (i >= 0)
		return buf_appends(out, maildir_subs[i][SUB_RAW]);
	if (maildir_sub(in, len, SUB_RAW) >= 0)
		return -EINVAL;
	return names_unescape(in, len, out);
}

const char *names_folder_view(const char *comp)
{
	int i = maildir_sub(comp, strlen(comp), SUB_ESCAPED);

	return i >= 0 ? maildir_subs[i][SUB_RAW] : comp;
}

int names_folder_path(const char *folder, char delim, struct buf *out)
{
	size_t start = out->len;
	const char *p = folder, *end;
	int rc = 0;

	if (!folder)
		return -EINVAL;
	for (;;) {
		end = delim ? strchr(p, delim) : NULL;
		if (!end)
			end = p + strlen(p);
		if (p != folder)
			rc = buf_appendc(out, '/');
		if (rc == 0) {
			size_t len = (size_t)(end - p);
			int sub = maildir_sub(p, len, SUB_RAW);

			rc = sub >= 0 ? buf_appends(out, maildir_subs[sub][SUB_ESCAPED])
				      : names_escape(p, len, out);
		}
		if (rc || *end == '\0')
			break;
		p = end + 1;
	}
	if (rc)
		buf_truncate(out, start);
	return rc;
}

static bool is_space(uint32_t cp)
{
	return cp == ' ' || (cp >= '\t' && cp <= '\r') || cp == 0x85 || cp == 0xA0 ||
	       cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
	       cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static bool is_replaced(uint32_t cp)
{
	return cp == '/' || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) ||
	       cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

/* Sanitises subject into out (at most budget bytes), cutting only between
 * whole characters. Returns the length. */
static size_t clean_subject(const char *subject, char *out, size_t budget)
{
	const unsigned char *p = (const unsigned char *)subject;
	size_t n = strlen(subject), len = 0;
	bool space = false;

	for (size_t i = 0; i < n;) {
		const char *unit;
		uint32_t cp;
		size_t ulen = utf8_seq(p + i, n - i, &cp);

		if (ulen == 0) {
			unit = "\xEF\xBF\xBD";   /* U+FFFD for one bad byte */
			i += 1;
			ulen = 3;
		} else {
			unit = (const char *)p + i;
			i += ulen;
			if (is_space(cp)) {
				space = len > 0;
				continue;
			}
			if (is_replaced(cp)) {
				unit = "_";
				ulen = 1;
			}
		}
		if (len + (space ? 1 : 0) + ulen > budget)
			break;
		if (space)
			out[len++] = ' ';
		space = false;
		memcpy(out + len, unit, ulen);
		len += ulen;
	}
	return len;
}

static bool tag_ok(const char *tag, size_t *len_r)
{
	size_t n = 0;

	if (!tag)
		return false;
	for (; tag[n]; n++) {
		char c = tag[n];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
			return false;
	}
	*len_r = n;
	return n > 0 && n <= 64;
}

int names_message_file(int64_t date, const char *subject, const char *tag, struct buf *out)
{
	char head[64], subj[NAMES_COMPONENT_MAX + 1];
	size_t taglen, budget, slen = 0;
	struct tm tm;
	time_t t = (time_t)date;

	if (!tag_ok(tag, &taglen))
		return -EINVAL;
	if (date > 0 && localtime_r(&t, &tm) && tm.tm_year + 1900 <= 9999)
		snprintf(head, sizeof head, "%04d-%02d-%02d %02d%02d ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
	else
		snprintf(head, sizeof head, "0000-00-00 0000 ");
	/* head + subject + " ~" + tag + ".eml" */
	budget = NAMES_COMPONENT_MAX - strlen(head) - 2 - taglen - 4;
	if (subject)
		slen = clean_subject(subject, subj, budget);
	if (slen == 0) {
		strcpy(subj, "(no subject)");
		slen = strlen(subj);
	}
	return buf_printf(out, "%s%.*s ~%s.eml", head, (int)slen, subj, tag);
}

void names_tag(const char *account, const char *folder, uint32_t uidvalidity,
	       const char *remote_id, char *tag_r, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char uv[16];
	EVP_MD_CTX *ctx;
	bool ok;

	account = account ? account : "";
	folder = folder ? folder : "";
	remote_id = remote_id ? remote_id : "";
	if (len > 16)
		len = 16;
	snprintf(uv, sizeof uv, "%u", uidvalidity);
	/* Each field ends in a NUL, so ("ab", "c") and ("a", "bc") differ. */
	ctx = EVP_MD_CTX_new();
	ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	     EVP_DigestUpdate(ctx, account, strlen(account) + 1) &&
	     EVP_DigestUpdate(ctx, folder, strlen(folder) + 1) &&
	     EVP_DigestUpdate(ctx, uv, strlen(uv) + 1) &&
	     EVP_DigestUpdate(ctx, remote_id, strlen(remote_id) + 1) &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		/* A constant tag only makes names collide, which the index refuses. */
		log_error("names: SHA-256 failed for %s %s %s", account, folder, remote_id);
		memset(md, 0, sizeof md);
	}
	for (size_t i = 0; i < len; i++)
		tag_r[i] = hex[(md[i / 2] >> (i % 2 ? 0 : 4)) & 0xF];
	tag_r[len] = '\0';
}
