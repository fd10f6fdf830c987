/* parts_name: the names a message's parts have in the mount (the rules are
 * in parts.h), and the fixed table of extensions for unnamed parts. */
#include "parts_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXT_MAX 16

struct parts_names {
	GHashTable *taken;  /* owned: "<dir>/<name>" -> 1 */
	GHashTable *next;   /* owned: "<dir>/<stem>|<ext>" -> next suffix to try */
};

struct parts_names *parts_names_new(void)
{
	struct parts_names *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->taken = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	s->next = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	return s;
}

void parts_names_free(struct parts_names *s)
{
	if (!s)
		return;
	g_hash_table_destroy(s->taken);
	g_hash_table_destroy(s->next);
	free(s);
}

/* Control characters (C0, DEL, C1), invalid UTF-8 and, in a subject, path
 * separators become '_'; a file name keeps only its last path component. */
static char *sanitize(const char *raw, bool subject)
{
	if (!raw)
		return NULL;
	if (!subject) {
		const char *a = strrchr(raw, '/'), *b = strrchr(raw, '\\');

		if (a && (!b || a > b))
			raw = a + 1;
		else if (b)
			raw = b + 1;
	}
	size_t n = strlen(raw), o = 0;
	char *out = malloc(n + 1);

	if (!out)
		return NULL;
	for (const char *p = raw; *p;) {
		gunichar c = g_utf8_get_char_validated(p, -1);

		if (c == (gunichar)-1 || c == (gunichar)-2) {
			out[o++] = '_';
			p++;
			continue;
		}
		const char *q = g_utf8_next_char(p);

		if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || (subject && (c == '/' || c == '\\')))
			out[o++] = '_';
		else
			while (p < q)
				out[o++] = *p++;
		p = q;
	}
	out[o] = '\0';
	if (o == 0 || !strcmp(out, ".") || !strcmp(out, "..")) {
		free(out);
		return NULL;
	}
	if (out[0] == '.')
		out[0] = '_';
	return out;
}

/* stem, cut at a UTF-8 boundary so that stem + " (k)" + ext fits; a
 * malloc'd string or NULL. */
static char *compose(const char *stem, const char *ext, int k)
{
	char suffix[16] = "", *r;

	if (k > 1)
		snprintf(suffix, sizeof suffix, " (%d)", k);
	size_t budget = PARTS_NAME_MAX - strlen(ext) - strlen(suffix), n = strlen(stem);

	if (n > budget) {
		n = budget;
		while (n > 0 && ((unsigned char)stem[n] & 0xC0) == 0x80)
			n--;
	}
	if (asprintf(&r, "%.*s%s%s", (int)n, stem, suffix, ext) < 0)
		return NULL;
	return r;
}

static char *key_of(int dir, const char *name)
{
	return g_strdup_printf("%d/%s", dir, name);
}

static bool is_free(struct parts_names *s, int dir, const char *name)
{
	char *key = key_of(dir, name);
	bool r = !g_hash_table_contains(s->taken, key);

	g_free(key);
	return r;
}

static void take(struct parts_names *s, int dir, const char *name)
{
	g_hash_table_add(s->taken, key_of(dir, name));
}

/* The suffix counter of stem+ext in dir, remembered so that many parts of
 * one name cost one try each rather than one per earlier part. */
static int *next_k(struct parts_names *s, int dir, const char *stem, const char *ext)
{
	char *key = g_strdup_printf("%d/%s|%s", dir, stem, ext);
	int *k = g_hash_table_lookup(s->next, key);

	if (k) {
		g_free(key);
		return k;
	}
	k = g_new(int, 1);
	*k = 1;
	g_hash_table_insert(s->next, key, k);
	return k;
}

/* Splits a sanitized name in place into stem and extension (with its dot,
 * up to EXT_MAX bytes after it; "" when none). */
static void split(char *name, char **ext_r)
{
	char *dot = strrchr(name, '.');
	size_t n = dot ? strlen(dot + 1) : 0;

	if (dot && dot > name && n >= 1 && n <= EXT_MAX) {
		*ext_r = strdup(dot);
		*dot = '\0';
	} else {
		*ext_r = strdup("");
	}
}

/* Finds the first " (k)" making stem+ext (and, for a message, stem alone)
 * free in dir, and takes it. */
static int pick(struct parts_names *s, int dir, const char *stem, const char *ext, bool message,
		char **name_r, char **dir_r)
{
	int *k = next_k(s, dir, stem, message ? "/" : ext);

	for (;; (*k)++) {
		char *name = compose(stem, ext, *k), *dname = NULL;

		if (!name)
			return -ENOMEM;
		if (message) {
			dname = strndup(name, strlen(name) - strlen(ext));
			if (!dname) {
				free(name);
				return -ENOMEM;
			}
		}
		if (is_free(s, dir, name) && (!dname || is_free(s, dir, dname))) {
			take(s, dir, name);
			if (dname)
				take(s, dir, dname);
			*name_r = name;
			if (dir_r)
				*dir_r = dname;
			return 0;
		}
		free(name);
		free(dname);
	}
}

static int name_any(struct parts_names *s, int dir, const char *raw, bool subject,
		    const char *fallback_stem, const char *fallback_ext, bool message,
		    char **name_r, char **dir_r)
{
	char *stem = sanitize(raw, subject), *ext = NULL;
	int r = -ENOMEM;

	if (stem && !message) {
		split(stem, &ext);
	} else if (stem) {
		size_t n = strlen(stem);

		/* "fwd.eml" names the message "fwd", its file "fwd.eml" */
		if (n > 4 && !g_ascii_strcasecmp(stem + n - 4, ".eml"))
			stem[n - 4] = '\0';
		ext = strdup(".eml");
	} else {
		stem = strdup(fallback_stem);
		ext = strdup(message ? ".eml" : fallback_ext);
	}
	if (stem && ext)
		r = pick(s, dir, stem, ext, message, name_r, dir_r);
	free(stem);
	free(ext);
	return r;
}

char *parts_name_file(struct parts_names *s, int dir, const char *raw, bool subject,
		      const char *fallback_stem, const char *fallback_ext)
{
	char *name = NULL;

	if (name_any(s, dir, raw, subject, fallback_stem, fallback_ext, false, &name, NULL) < 0)
		return NULL;
	return name;
}

int parts_name_message(struct parts_names *s, int dir, const char *raw, bool subject,
		       const char *fallback_stem, char **eml_r, char **dir_r)
{
	return name_any(s, dir, raw, subject, fallback_stem, ".eml", true, eml_r, dir_r);
}

/* Fixed, so that names do not depend on the machine's MIME database. */
const char *parts_ext_for(const char *content_type)
{
	static const char *const table[][2] = {
		{ "text/plain", ".txt" }, { "text/html", ".html" }, { "text/calendar", ".ics" },
		{ "text/csv", ".csv" }, { "text/xml", ".xml" }, { "text/vcard", ".vcf" },
		{ "text/x-vcard", ".vcf" }, { "text/markdown", ".md" }, { "text/css", ".css" },
		{ "text/rfc822-headers", ".txt" }, { "text/enriched", ".txt" },
		{ "message/rfc822", ".eml" }, { "message/delivery-status", ".txt" },
		{ "message/disposition-notification", ".txt" },
		{ "image/jpeg", ".jpg" }, { "image/png", ".png" }, { "image/gif", ".gif" },
		{ "image/webp", ".webp" }, { "image/svg+xml", ".svg" }, { "image/tiff", ".tif" },
		{ "image/bmp", ".bmp" }, { "image/heic", ".heic" },
		{ "application/pdf", ".pdf" }, { "application/zip", ".zip" },
		{ "application/gzip", ".gz" }, { "application/json", ".json" },
		{ "application/xml", ".xml" }, { "application/ics", ".ics" },
		{ "application/msword", ".doc" }, { "application/rtf", ".rtf" },
		{ "application/vnd.ms-excel", ".xls" },
		{ "application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx" },
		{ "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx" },
		{ "application/vnd.oasis.opendocument.text", ".odt" },
		{ "application/pgp-signature", ".asc" }, { "application/pgp-keys", ".asc" },
		{ "application/pkcs7-signature", ".p7s" }, { "application/x-pkcs7-signature", ".p7s" },
		{ "audio/mpeg", ".mp3" }, { "audio/ogg", ".ogg" }, { "video/mp4", ".mp4" },
	};

	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
		if (!strcmp(content_type, table[i][0]))
			return table[i][1];
	return ".bin";
}
