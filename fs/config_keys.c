/* config_keys: the keys each section takes and the parser of each kind of
 * value (see config.h for the rules, config_int.h for how the parts of the
 * config parser fit together). Numbers are read digit by digit, never with
 * strtol or strtod: no sign, no locale, no hex, no "inf". */
#include "config_int.h"

#include <ctype.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../fetch/secret.h"

const struct keydef config_store_keys[] = {
	{ .name = "path", .kind = K_DIR, .off = offsetof(struct settings, store_path) },
	{ .name = "trash_days", .kind = K_INT, .off = offsetof(struct settings, trash_days),
	  .min = 1, .max = 3650, .unit = "days" },
	{ .name = "min_free", .kind = K_MIN_FREE },
	{ .name = "parts", .kind = K_BOOL, .off = offsetof(struct settings, parts) },
	{ .name = NULL },
};

const struct keydef config_sync_keys[] = {
	{ .name = "workers", .kind = K_INT, .off = offsetof(struct settings, workers),
	  .min = 1, .max = 64, .unit = "workers" },
	{ .name = "max_message_size", .kind = K_SIZE,
	  .off = offsetof(struct settings, max_message_size) },
	{ .name = "max_folders", .kind = K_INT, .off = offsetof(struct settings, max_folders),
	  .min = 1, .max = 1000000, .unit = "folders" },
	{ .name = NULL },
};

const struct keydef config_mount_keys[] = {
	{ .name = "keep_cpus_awake", .kind = K_BOOL, .off = offsetof(struct settings, keep_cpus_awake) },
	{ .name = NULL },
};

const struct keydef config_user_keys[] = {
	{ .name = "uid", .kind = K_UID },
	{ .name = "on_change", .kind = K_COMMAND, .off = offsetof(struct user_settings, on_change) },
	{ .name = "parts", .kind = K_BOOL, .off = offsetof(struct user_settings, parts) },
	{ .name = NULL },
};

const struct keydef config_account_keys[] = {
	{ .name = "url", .kind = K_URL },
	{ .name = "login", .kind = K_STRING, .off = offsetof(struct account_settings, login) },
	{ .name = "password", .kind = K_PASSWORD,
	  .off = offsetof(struct account_settings, password), .secret = true },
	{ .name = "password_file", .kind = K_PASSWORD_FILE,
	  .off = offsetof(struct account_settings, password_file), .secret = true },
	{ .name = "password_command", .kind = K_COMMAND,
	  .off = offsetof(struct account_settings, password_command), .secret = true },
	{ .name = "oauth2_token_command", .kind = K_COMMAND,
	  .off = offsetof(struct account_settings, oauth2_token_command), .secret = true },
	{ .name = "folders", .kind = K_FOLDERS },
	{ .name = "interval", .kind = K_INT, .off = offsetof(struct account_settings, interval),
	  .min = 10, .max = 7 * 24 * 3600, .unit = "seconds" },
	{ .name = "timeout", .kind = K_INT, .off = offsetof(struct account_settings, timeout),
	  .min = 5, .max = 3600, .unit = "seconds" },
	{ .name = "tls", .kind = K_TLS },
	{ .name = "ca_file", .kind = K_CA_FILE, .off = offsetof(struct account_settings, ca_file) },
	{ .name = "mirror_deletions", .kind = K_BOOL,
	  .off = offsetof(struct account_settings, mirror_deletions) },
	{ .name = "mass_delete_limit", .kind = K_FRACTION },
	{ .name = NULL },
};

/* Whole decimal number, no sign, in [min, max]. */
static bool parse_int(const char *v, long min, long max, long *r)
{
	long x = 0;

	if (!*v)
		return false;
	for (const char *c = v; *c; c++) {
		if (*c < '0' || *c > '9' || c - v >= 10)
			return false;
		x = x * 10 + (*c - '0');
	}
	if (x < min || x > max)
		return false;
	*r = x;
	return true;
}

/* "262144", "256K", "256M", "1G", "2T" (powers of 1024) -> bytes, at
 * least 1 KiB and at most 1 PiB. */
static bool parse_size(const char *v, uint64_t *r)
{
	uint64_t x = 0, mult = 1;
	const char *c = v;

	for (; *c >= '0' && *c <= '9'; c++) {
		if (c - v >= 16)
			return false;
		x = x * 10 + (uint64_t)(*c - '0');
	}
	if (c == v)
		return false;
	switch (*c) {
	case '\0': break;
	case 'k': case 'K': mult = 1ull << 10; c++; break;
	case 'm': case 'M': mult = 1ull << 20; c++; break;
	case 'g': case 'G': mult = 1ull << 30; c++; break;
	case 't': case 'T': mult = 1ull << 40; c++; break;
	default: return false;
	}
	if (mult > 1 && *c == 'i')
		c++;                      /* "MiB" */
	if (*c == 'B' || *c == 'b')
		c++;
	if (*c || x > (1ull << 50) / mult || x * mult < 1024)
		return false;
	*r = x * mult;
	return true;
}

static int set_uid(struct parse *p, const char *key, const char *v, struct user_settings *u)
{
	struct passwd pw, *res = NULL;
	long bufsize = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t len = bufsize > 0 ? (size_t)bufsize : 16384;
	char *buf = NULL;
	char q[72];
	bool numeric = v[0] != '\0';
	long num = 0;
	int rc;

	for (const char *c = v; *c; c++)
		if (!isdigit((unsigned char)*c))
			numeric = false;
	if (numeric && !parse_int(v, 0, (long)UINT32_MAX - 1, &num))
		return fail(p, p->line, key,
			    "%s is out of range; expected a local account name or its numeric uid",
			    config_shown(v, q, sizeof(q)));
	for (;;) {
		char *nb = realloc(buf, len);
		if (!nb) {
			free(buf);
			return fail_nomem(p);
		}
		buf = nb;
		rc = numeric ? getpwuid_r((uid_t)num, &pw, buf, len, &res)
			     : getpwnam_r(v, &pw, buf, len, &res);
		if (rc != ERANGE || len >= 1024 * 1024)
			break;
		len *= 2;
	}
	if (!res) {
		free(buf);
		/* glibc returns 0 or ENOENT and similar for "no such entry" */
		if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM)
			return fail(p, p->line, key,
				    numeric ? "no local account has uid %s; expected a local account name or its numeric uid"
					    : "no local account named %s; expected a local account name or its numeric uid",
				    config_shown(v, q, sizeof(q)));
		return fail(p, p->line, key, "looking up %s: %s", config_shown(v, q, sizeof(q)), strerror(rc));
	}
	u->uid_name = strdup(pw.pw_name);
	u->uid = pw.pw_uid;
	u->gid = pw.pw_gid;
	free(buf);
	return u->uid_name ? 0 : fail_nomem(p);
}

static int set_url(struct parse *p, const char *key, const char *v, struct account_settings *a)
{
	static const struct {
		const char *prefix;
		enum proto proto;
	} schemes[] = {
		{ "imap://", PROTO_IMAP },
		{ "imaps://", PROTO_IMAPS },
		{ "pop3://", PROTO_POP3 },
		{ "pop3s://", PROTO_POP3S },
	};
	static const char *expect = "expected imap://, imaps://, pop3:// or pop3s:// HOST[:PORT]";
	const char *h = NULL, *hend, *q;
	long port = 0;

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i].prefix);
		if (strncasecmp(v, schemes[i].prefix, n) == 0) {
			h = v + n;
			a->proto = schemes[i].proto;
			break;
		}
	}
	if (!h)
		return fail(p, p->line, key, "unknown scheme; %s", expect);
	/* the url is not quoted back: a url with user:password@ holds a secret */
	if (strchr(h, '@'))
		return fail(p, p->line, key, "holds a user or password; %s, with the user in login =",
			    expect);
	if (*h == '[') {
		hend = strchr(h, ']');
		if (!hend || hend == h + 1)
			return fail(p, p->line, key, "bad IPv6 address; expected [ADDRESS]");
		for (q = h + 1; q < hend; q++)
			if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
				return fail(p, p->line, key, "bad IPv6 address; expected [ADDRESS]");
		hend++;
	} else {
		for (hend = h; config_ascii_alnum(*hend) || (*hend && strchr("-._", *hend)); hend++)
			;
		if (hend == h)
			return fail(p, p->line, key, "no host; %s", expect);
	}
	q = hend;
	if (*q == ':') {
		const char *ps = ++q;
		char digits[8];
		while (isdigit((unsigned char)*q))
			q++;
		if (q - ps == 0 || q - ps > 5)
			return fail(p, p->line, key, "bad port; expected a number from 1 to 65535");
		memcpy(digits, ps, (size_t)(q - ps));
		digits[q - ps] = '\0';
		if (!parse_int(digits, 1, 65535, &port))
			return fail(p, p->line, key, "bad port; expected a number from 1 to 65535");
	}
	if (*q == '/')
		q++;
	if (*q)
		return fail(p, p->line, key,
			    "nothing may follow HOST[:PORT] but '/'; %s (folders go in folders =)",
			    expect);
	a->url = strdup(v);
	a->host = strndup(h, (size_t)(hend - h));
	a->port = (int)port;
	if (!a->url || !a->host)
		return fail_nomem(p);
	return 0;
}

static int set_folders(struct parse *p, const char *key, const char *v, struct account_settings *a)
{
	size_t n = 1;
	const char *c = v;
	char q[72];

	for (const char *t = v; *t; t++)
		n += *t == ',';
	a->folders = calloc(n + 1, sizeof(*a->folders));
	if (!a->folders)
		return fail_nomem(p);
	for (size_t i = 0; i < n; i++) {
		const char *end = strchr(c, ',');
		const char *e = end ? end : c + strlen(c);
		while (c < e && isspace((unsigned char)*c))
			c++;
		while (e > c && isspace((unsigned char)e[-1]))
			e--;
		if (e == c)
			return fail(p, p->line, key,
				    "empty folder name in the list; expected NAME, NAME, ... or *");
		a->folders[i] = strndup(c, (size_t)(e - c));
		if (!a->folders[i])
			return fail_nomem(p);
		a->n_folders = i + 1;
		for (size_t j = 0; j < i; j++)
			if (strcmp(a->folders[j], a->folders[i]) == 0)
				return fail(p, p->line, key, "%s listed twice",
					    config_shown(a->folders[i], q, sizeof(q)));
		c = end ? end + 1 : e;
	}
	if (n > 1)
		for (size_t i = 0; i < n; i++)
			if (strcmp(a->folders[i], "*") == 0)
				return fail(p, p->line, key,
					    "* means all folders and must stand alone; expected * or NAME, NAME, ...");
	return 0;
}

/* "50%" (0..100) or a fraction 0..1; digits with at most 6 decimals, no
 * strtod: no locale, no hex, no "inf". */
static int set_fraction(struct parse *p, const char *key, const char *v, struct account_settings *a)
{
	size_t n = strlen(v);
	bool pct = n > 0 && v[n - 1] == '%';
	double x = 0, scale = 1;
	size_t i = 0, ip = 0, fp = 0;
	char q[72];

	if (pct)
		n--;
	for (; i < n && isdigit((unsigned char)v[i]); i++, ip++)
		x = x * 10 + (v[i] - '0');
	if (i < n && v[i] == '.') {
		for (i++; i < n && isdigit((unsigned char)v[i]); i++, fp++) {
			scale /= 10;
			x += (v[i] - '0') * scale;
		}
		if (fp == 0)
			ip = 0;
	}
	if (i != n || ip == 0 || ip > 3 || fp > 6 || x > (pct ? 100 : 1))
		return fail(p, p->line, key,
			    "expected a percentage from 0%% to 100%% (50%%) or a fraction from 0 to 1 (0.5), got %s",
			    config_shown(v, q, sizeof(q)));
	a->mass_delete_limit = pct ? x / 100 : x;
	return 0;
}

/* Did inih cut this line's value at an inline comment (" ;")? */
static bool raw_has_inline_comment(const struct parse *p)
{
	const char *s = p->raw, *end = p->raw + p->raw_len;
	const char *sep = NULL;

	for (const char *t = s; t < end; t++)
		if (*t == '=' || *t == ':') {
			sep = t;
			break;
		}
	if (!sep)
		return false;
	for (const char *t = sep + 1; t < end; t++)
		if (*t == ';' && isspace((unsigned char)t[-1]))
			return true;
	return false;
}

/* [store] min_free: a size ("2G") or a percentage of the filesystem ("5%"). */
static int set_min_free(struct parse *p, const char *key, const char *v, struct settings *s)
{
	size_t n = strlen(v);
	long pct;
	char num[8], q[72];

	s->min_free_set = true;
	if (n >= 2 && n - 1 < sizeof(num) && v[n - 1] == '%') {
		memcpy(num, v, n - 1);
		num[n - 1] = '\0';
		if (parse_int(num, 0, 50, &pct)) {
			s->min_free_fraction = (double)pct / 100;
			return 0;
		}
	} else if (parse_size(v, &s->min_free_bytes)) {
		return 0;
	}
	return fail(p, p->line, key, "expected a size such as 1G or a percentage of the "
		    "filesystem from 0%% to 50%%, got %s", config_shown(v, q, sizeof(q)));
}

/* One of the words in yes (then *r is true) or in no, in any case; each
 * list ends in NULL. */
static bool parse_switch(const char *v, const char *const *yes, const char *const *no, bool *r)
{
	for (int want = 1; want >= 0; want--)
		for (const char *const *w = want ? yes : no; *w; w++)
			if (strcasecmp(v, *w) == 0) {
				*r = want;
				return true;
			}
	return false;
}

/* tls = on|off (K_TLS, into tls_off) and yes|true|on / no|false|off (K_BOOL). */
static int set_switch(struct parse *p, const struct keydef *k, const char *v, void *obj)
{
	static const char *const on[] = { "on", NULL }, *const off[] = { "off", NULL };
	static const char *const yes[] = { "yes", "true", "on", NULL };
	static const char *const no[] = { "no", "false", "off", NULL };
	char q[72];

	if (k->kind == K_TLS) {
		/* tls_off is the member: "off" sets it */
		if (!parse_switch(v, off, on, &((struct account_settings *)obj)->tls_off))
			return fail(p, p->line, k->name, "expected on or off, got %s",
				    config_shown(v, q, sizeof(q)));
		return 0;
	}
	if (!parse_switch(v, yes, no, (bool *)((char *)obj + k->off)))
		return fail(p, p->line, k->name, "expected yes or no, got %s", config_shown(v, q, sizeof(q)));
	return 0;
}

/* A path value must be absolute; example is what to suggest ("/DIR"). */
static int need_absolute(struct parse *p, const char *key, const char *v, const char *example)
{
	char q[72];

	if (v[0] != '/')
		return fail(p, p->line, key, "%s is not an absolute path; expected %s = %s",
			    config_shown(v, q, sizeof(q)), key, example);
	return 0;
}

int config_set_value(struct parse *p, const struct keydef *k, void *obj, const char *v)
{
	char **str = (char **)((char *)obj + k->off);
	int *num = (int *)((char *)obj + k->off);
	char q[72];
	long x;

	if (!*v)
		return fail(p, p->line, k->name, "no value; expected %s = VALUE, or remove the line",
			    k->name);
	switch (k->kind) {
	case K_DIR:
		if (need_absolute(p, k->name, v, "/DIR") < 0)
			return p->rc;
		break;
	case K_INT:
		if (!parse_int(v, k->min, k->max, &x))
			return fail(p, p->line, k->name,
				    "expected a whole number of %s from %d to %d, got %s", k->unit,
				    k->min, k->max, config_shown(v, q, sizeof(q)));
		*num = (int)x;
		return 0;
	case K_STRING:
		break;
	case K_COMMAND: {
		char **argv = NULL;
		int rc = secret_split_argv(v, &argv);
		secret_free_argv(&argv);
		if (rc == -ENOMEM)
			return fail_nomem(p);
		if (rc < 0)
			return fail(p, p->line, k->name,
				    "unterminated quote or trailing backslash; expected a command and its arguments, quoted with '' or \"\" (no shell)");
		break;
	}
	case K_UID:
		return set_uid(p, k->name, v, obj);
	case K_URL:
		return set_url(p, k->name, v, obj);
	case K_PASSWORD:
		if (raw_has_inline_comment(p))
			return fail(p, p->line, k->name,
				    "\" ;\" starts a comment here, so the password would be cut; put it in a password_file");
		break;
	case K_PASSWORD_FILE:
		if (need_absolute(p, k->name, v, "/FILE") < 0 ||
		    config_check_password_file(p, k->name, v) < 0)
			return p->rc;
		break;
	case K_CA_FILE:
		if (need_absolute(p, k->name, v, "/FILE") < 0 ||
		    config_check_ca_file(p, k->name, v) < 0)
			return p->rc;
		break;
	case K_FOLDERS:
		return set_folders(p, k->name, v, obj);
	case K_TLS:
	case K_BOOL:
		return set_switch(p, k, v, obj);
	case K_FRACTION:
		return set_fraction(p, k->name, v, obj);
	case K_SIZE:
		if (!parse_size(v, (uint64_t *)((char *)obj + k->off)))
			return fail(p, p->line, k->name, "expected a size such as 256M or 1G "
				    "(from 1K to 1024T), got %s", config_shown(v, q, sizeof(q)));
		return 0;
	case K_MIN_FREE:
		return set_min_free(p, k->name, v, obj);
	}
	*str = strdup(v);
	return *str ? 0 : fail_nomem(p);
}
