/* config: the maildisk config file, parsed with inih (see config.h).
 *
 * inih calls us once per "key = value" but, as Debian builds it, tells us
 * no line numbers (no INI_HANDLER_LINENO), never reports a section that has
 * no keys, and cuts section names at 50 bytes. So the text reaches inih
 * through our own reader, which counts lines and reads each section header
 * itself: a header is checked and recorded, with its line, when the reader
 * hands that line over, and the key handler files keys under that record,
 * never under inih's copy of the name. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../cache/log.h"
#include "../fetch/secret.h"

#define NAME_MAX_BYTES 255   /* user and account names are path components */
#define KEYS_MAX 16

enum sect { SECT_NONE, SECT_STORE, SECT_SYNC, SECT_USER, SECT_ACCOUNT };

enum kind {
	K_DIR,         /* absolute path, not checked on disk */
	K_INT,         /* whole decimal number in [min, max] */
	K_STRING,      /* any non-empty text */
	K_COMMAND,     /* split by secret_split_argv */
	K_UID,         /* local account name or numeric uid */
	K_URL,
	K_PASSWORD,
	K_PASSWORD_FILE,
	K_FOLDERS,
	K_TLS,
	K_CA_FILE,
	K_BOOL,
	K_FRACTION,
	K_SIZE,        /* bytes, with an optional K, M, G or T suffix (powers of 1024) */
	K_MIN_FREE,    /* a K_SIZE or a percentage */
};

struct keydef {
	const char *name;
	enum kind kind;
	size_t off;        /* of the member the value goes to */
	int min, max;      /* K_INT */
	const char *unit;  /* K_INT: shown in messages */
	bool secret;       /* one of the four ways to give the secret */
};

static const struct keydef store_keys[] = {
	{ .name = "path", .kind = K_DIR, .off = offsetof(struct settings, store_path) },
	{ .name = "trash_days", .kind = K_INT, .off = offsetof(struct settings, trash_days),
	  .min = 1, .max = 3650, .unit = "days" },
	{ .name = "min_free", .kind = K_MIN_FREE },
	{ .name = NULL },
};

static const struct keydef sync_keys[] = {
	{ .name = "workers", .kind = K_INT, .off = offsetof(struct settings, workers),
	  .min = 1, .max = 64, .unit = "workers" },
	{ .name = "max_message_size", .kind = K_SIZE,
	  .off = offsetof(struct settings, max_message_size) },
	{ .name = "max_folders", .kind = K_INT, .off = offsetof(struct settings, max_folders),
	  .min = 1, .max = 1000000, .unit = "folders" },
	{ .name = NULL },
};

static const struct keydef user_keys[] = {
	{ .name = "uid", .kind = K_UID },
	{ .name = "on_change", .kind = K_COMMAND, .off = offsetof(struct user_settings, on_change) },
	{ .name = NULL },
};

static const struct keydef account_keys[] = {
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

/* Where each section and key was seen, for messages and duplicate checks. */
struct sect_meta {
	int line;                /* of the header; 0: section absent */
	int key_line[KEYS_MAX];  /* 0: key not given */
};

struct parse {
	const char *name;        /* borrowed: file name for messages */
	const char *text;        /* borrowed */
	size_t len, pos;
	int line;                /* line being parsed, from 1 */
	const char *raw;         /* borrowed: that line as written */
	size_t raw_len;
	struct settings *s;      /* owned until handed to the caller */
	struct buf *err;         /* borrowed */
	int rc;                  /* first error; parsing stops there */
	enum sect cur;
	size_t cur_idx;          /* into users or accounts */
	struct sect_meta store, sync;
	struct sect_meta *user_meta;     /* owned, parallel to s->users */
	struct sect_meta *account_meta;  /* owned, parallel to s->accounts */
	size_t users_cap, accounts_cap;
};

/* Appends s cut to max bytes with control bytes shown as '?', so a message
 * stays one line whatever the file holds. */
static void put_clean(struct buf *b, const char *s, size_t max)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n && i < max; i++)
		buf_appendc(b, (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i]);
	if (n > max)
		buf_appends(b, "...");
}

/* Records the first error as "NAME:LINE: KEY: message"; LINE and KEY are
 * left out when 0 or NULL. Returns p->rc. */
__attribute__((format(printf, 5, 6)))
static int fail_rc(struct parse *p, int rc, int line, const char *key, const char *fmt, ...)
{
	va_list ap;
	size_t mark;

	if (p->rc)
		return p->rc;
	p->rc = rc;
	buf_reset(p->err);
	put_clean(p->err, p->name, 4096);
	if (line > 0)
		buf_printf(p->err, ":%d", line);
	buf_appends(p->err, ": ");
	if (key) {
		put_clean(p->err, key, 600);
		buf_appends(p->err, ": ");
	}
	mark = p->err->len;
	va_start(ap, fmt);
	buf_vprintf(p->err, fmt, ap);
	va_end(ap);
	/* values quoted in the message could carry control bytes */
	for (size_t i = mark; p->err->data && i < p->err->len; i++)
		if ((unsigned char)p->err->data[i] < 0x20 || p->err->data[i] == 0x7f)
			p->err->data[i] = '?';
	return rc;
}

#define fail(p, line, key, ...) fail_rc((p), -EINVAL, (line), (key), __VA_ARGS__)

static int fail_nomem(struct parse *p)
{
	return fail_rc(p, -ENOMEM, 0, NULL, "out of memory");
}

/* A value shown in a message: quoted and cut short. Never used for secrets. */
static const char *shown(const char *v, char *out, size_t outlen)
{
	size_t n = strlen(v);

	if (n + 3 <= outlen)
		snprintf(out, outlen, "\"%s\"", v);
	else
		snprintf(out, outlen, "\"%.*s...\"", (int)(outlen - 6), v);
	return out;
}

/* ASCII only, whatever the locale: names become path components. */
static bool ascii_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool valid_name(const char *s, size_t n)
{
	if (n == 0 || n > NAME_MAX_BYTES || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!ascii_alnum(s[i]) && !(s[i] && strchr("._@+-", s[i])))
			return false;
	return true;
}

static const char *name_rule =
	"expected 1 to 255 of A-Z a-z 0-9 . _ @ + - not starting with '.'";

static struct sect_meta *cur_meta(struct parse *p)
{
	switch (p->cur) {
	case SECT_STORE:
		return &p->store;
	case SECT_SYNC:
		return &p->sync;
	case SECT_USER:
		return &p->user_meta[p->cur_idx];
	case SECT_ACCOUNT:
		return &p->account_meta[p->cur_idx];
	case SECT_NONE:
		break;
	}
	return NULL;
}

static int key_index(const struct keydef *keys, const char *name)
{
	for (int i = 0; keys[i].name; i++)
		if (strcmp(keys[i].name, name) == 0)
			return i;
	return -1;
}

static int add_user(struct parse *p, const char *hdr, const char *name, size_t n)
{
	struct settings *s = p->s;

	for (size_t i = 0; i < s->n_users; i++)
		if (strlen(s->users[i].name) == n && memcmp(s->users[i].name, name, n) == 0)
			return fail(p, p->line, hdr, "given twice (first at line %d)",
				    p->user_meta[i].line);
	if (s->n_users == p->users_cap) {
		size_t cap = p->users_cap ? 2 * p->users_cap : 4;
		struct user_settings *u = realloc(s->users, cap * sizeof(*u));
		if (!u)
			return fail_nomem(p);
		s->users = u;
		struct sect_meta *m = realloc(p->user_meta, cap * sizeof(*m));
		if (!m)
			return fail_nomem(p);
		p->user_meta = m;
		p->users_cap = cap;
	}
	struct user_settings *u = &s->users[s->n_users];
	memset(u, 0, sizeof(*u));
	memset(&p->user_meta[s->n_users], 0, sizeof(p->user_meta[0]));
	u->name = strndup(name, n);
	if (!u->name)
		return fail_nomem(p);
	p->user_meta[s->n_users].line = p->line;
	p->cur = SECT_USER;
	p->cur_idx = s->n_users++;
	return 0;
}

static int add_account(struct parse *p, const char *hdr, const char *user, size_t un,
		       const char *name, size_t nn)
{
	struct settings *s = p->s;

	for (size_t i = 0; i < s->n_accounts; i++) {
		struct account_settings *a = &s->accounts[i];
		if (strlen(a->user) == un && memcmp(a->user, user, un) == 0 &&
		    strlen(a->name) == nn && memcmp(a->name, name, nn) == 0)
			return fail(p, p->line, hdr, "given twice (first at line %d)",
				    p->account_meta[i].line);
	}
	if (s->n_accounts == p->accounts_cap) {
		size_t cap = p->accounts_cap ? 2 * p->accounts_cap : 4;
		struct account_settings *a = realloc(s->accounts, cap * sizeof(*a));
		if (!a)
			return fail_nomem(p);
		s->accounts = a;
		struct sect_meta *m = realloc(p->account_meta, cap * sizeof(*m));
		if (!m)
			return fail_nomem(p);
		p->account_meta = m;
		p->accounts_cap = cap;
	}
	struct account_settings *a = &s->accounts[s->n_accounts];
	memset(a, 0, sizeof(*a));
	memset(&p->account_meta[s->n_accounts], 0, sizeof(p->account_meta[0]));
	a->interval = 300;
	a->timeout = 60;
	a->mirror_deletions = true;
	a->mass_delete_limit = 0.5;
	/* counted before the strdups so settings_free sees them on failure */
	p->account_meta[s->n_accounts].line = p->line;
	p->cur = SECT_ACCOUNT;
	p->cur_idx = s->n_accounts++;
	a->user = strndup(user, un);
	a->name = strndup(name, nn);
	if (!a->user || !a->name)
		return fail_nomem(p);
	return 0;
}

/* inner is what stands between '[' and ']', trimmed. */
static int begin_section(struct parse *p, const char *inner, size_t n)
{
	char shown_hdr[96];
	size_t tn = 0, rest;
	const char *arg;

	snprintf(shown_hdr, sizeof(shown_hdr), "[%.*s%s]", n > 80 ? 80 : (int)n, inner,
		 n > 80 ? "..." : "");
	while (tn < n && !isspace((unsigned char)inner[tn]))
		tn++;
	arg = inner + tn;
	rest = n - tn;
	while (rest && isspace((unsigned char)*arg))
		arg++, rest--;

	if (tn == 5 && memcmp(inner, "store", 5) == 0 && rest == 0) {
		if (p->store.line)
			return fail(p, p->line, shown_hdr, "given twice (first at line %d)",
				    p->store.line);
		p->store.line = p->line;
		p->cur = SECT_STORE;
		return 0;
	}
	if (tn == 4 && memcmp(inner, "sync", 4) == 0 && rest == 0) {
		if (p->sync.line)
			return fail(p, p->line, shown_hdr, "given twice (first at line %d)",
				    p->sync.line);
		p->sync.line = p->line;
		p->cur = SECT_SYNC;
		return 0;
	}
	if (tn == 4 && memcmp(inner, "user", 4) == 0 && rest > 0) {
		if (!valid_name(arg, rest))
			return fail(p, p->line, shown_hdr, "bad user name; %s", name_rule);
		return add_user(p, shown_hdr, arg, rest);
	}
	if (tn == 7 && memcmp(inner, "account", 7) == 0 && rest > 0) {
		const char *slash = memchr(arg, '/', rest);
		if (!slash)
			return fail(p, p->line, shown_hdr, "expected [account USER/NAME]");
		size_t un = (size_t)(slash - arg), nn = rest - un - 1;
		if (!valid_name(arg, un))
			return fail(p, p->line, shown_hdr, "bad user name; %s", name_rule);
		if (!valid_name(slash + 1, nn))
			return fail(p, p->line, shown_hdr, "bad account name; %s", name_rule);
		return add_account(p, shown_hdr, arg, un, slash + 1, nn);
	}
	if ((tn == 5 && memcmp(inner, "store", 5) == 0) || (tn == 4 && memcmp(inner, "sync", 4) == 0))
		return fail(p, p->line, shown_hdr, "takes no name; expected [%.*s]", (int)tn, inner);
	if (tn == 4 && memcmp(inner, "user", 4) == 0)
		return fail(p, p->line, shown_hdr, "expected [user NAME]");
	if (tn == 7 && memcmp(inner, "account", 7) == 0)
		return fail(p, p->line, shown_hdr, "expected [account USER/NAME]");
	return fail(p, p->line, shown_hdr,
		    "unknown section; expected [store], [sync], [user NAME] or [account USER/NAME]");
}

/* Reads the header on the current raw line, if it is one, as inih will. */
static int scan_header(struct parse *p)
{
	const char *s = p->raw, *end = p->raw + p->raw_len;
	const char *close;

	if (p->line == 1 && p->raw_len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	while (s < end && isspace((unsigned char)*s))
		s++;
	if (s == end || *s != '[')
		return 0;
	close = memchr(s, ']', (size_t)(end - s));
	if (!close)
		return fail(p, p->line, NULL, "section header without ']'; expected [NAME]");
	/* inih ignores what follows ']'; we allow only a comment there */
	for (const char *t = close + 1; t < end && *t != ';' && *t != '#'; t++)
		if (!isspace((unsigned char)*t))
			return fail(p, p->line, NULL,
				    "text after the section header's ']'; expected a comment (;) or nothing");
	s++;
	while (s < close && isspace((unsigned char)*s))
		s++;
	while (close > s && isspace((unsigned char)close[-1]))
		close--;
	return begin_section(p, s, (size_t)(close - s));
}

/* inih's ini_reader: one whole line per call, so inih's line count is ours. */
static char *read_line(char *str, int num, void *stream)
{
	struct parse *p = stream;
	const char *start, *nl;
	size_t n;

	if (p->rc || p->pos >= p->len)
		return NULL;
	start = p->text + p->pos;
	nl = memchr(start, '\n', p->len - p->pos);
	n = nl ? (size_t)(nl - start) + 1 : p->len - p->pos;
	p->line++;
	/* inih would parse the rest of a longer line as a line of its own */
	if (num < 2 || n > (size_t)num - 1) {
		fail(p, p->line, NULL, "line longer than %d bytes", num - 2);
		return NULL;
	}
	memcpy(str, start, n);
	str[n] = '\0';
	p->pos += n;
	p->raw = start;
	p->raw_len = n;
	if (scan_header(p) < 0)
		return NULL;
	return str;
}

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
			    shown(v, q, sizeof(q)));
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
				    shown(v, q, sizeof(q)));
		return fail(p, p->line, key, "looking up %s: %s", shown(v, q, sizeof(q)), strerror(rc));
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
		for (hend = h; ascii_alnum(*hend) || (*hend && strchr("-._", *hend)); hend++)
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
					    shown(a->folders[i], q, sizeof(q)));
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
			    shown(v, q, sizeof(q)));
	a->mass_delete_limit = pct ? x / 100 : x;
	return 0;
}

/* The rules secret_get applies again when it reads the file. */
static int check_password_file(struct parse *p, const char *key, const char *v)
{
	struct buf why = BUF_INIT(8192);
	int fd = secret_file_open(v, &why), rc = 0;

	if (fd >= 0)
		close(fd);
	else
		rc = why.data ? fail(p, p->line, key, "%s", why.data) : fail_nomem(p);
	buf_release(&why);
	return rc;
}

static int check_ca_file(struct parse *p, const char *key, const char *v)
{
	struct stat st;
	int fd;

	if (stat(v, &st) < 0)
		return fail(p, p->line, key, "%s: %s; expected a readable PEM file", v, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(p, p->line, key, "%s: not a regular file; expected a readable PEM file", v);
	fd = open(v, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return fail(p, p->line, key, "%s: cannot read: %s", v, strerror(errno));
	close(fd);
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
		    "filesystem from 0%% to 50%%, got %s", shown(v, q, sizeof(q)));
}

static int set_value(struct parse *p, const struct keydef *k, void *obj, const char *v)
{
	char **str = (char **)((char *)obj + k->off);
	int *num = (int *)((char *)obj + k->off);
	struct account_settings *a = obj;
	char q[72];
	long x;

	if (!*v)
		return fail(p, p->line, k->name, "no value; expected %s = VALUE, or remove the line",
			    k->name);
	switch (k->kind) {
	case K_DIR:
		if (v[0] != '/')
			return fail(p, p->line, k->name, "%s is not an absolute path; expected %s = /DIR",
				    shown(v, q, sizeof(q)), k->name);
		break;
	case K_INT:
		if (!parse_int(v, k->min, k->max, &x))
			return fail(p, p->line, k->name,
				    "expected a whole number of %s from %d to %d, got %s", k->unit,
				    k->min, k->max, shown(v, q, sizeof(q)));
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
		if (v[0] != '/')
			return fail(p, p->line, k->name, "%s is not an absolute path; expected %s = /FILE",
				    shown(v, q, sizeof(q)), k->name);
		if (check_password_file(p, k->name, v) < 0)
			return p->rc;
		break;
	case K_CA_FILE:
		if (v[0] != '/')
			return fail(p, p->line, k->name, "%s is not an absolute path; expected %s = /FILE",
				    shown(v, q, sizeof(q)), k->name);
		if (check_ca_file(p, k->name, v) < 0)
			return p->rc;
		break;
	case K_FOLDERS:
		return set_folders(p, k->name, v, obj);
	case K_TLS:
		if (strcasecmp(v, "on") == 0)
			a->tls_off = false;
		else if (strcasecmp(v, "off") == 0)
			a->tls_off = true;
		else
			return fail(p, p->line, k->name, "expected on or off, got %s", shown(v, q, sizeof(q)));
		return 0;
	case K_BOOL: {
		bool *b = (bool *)((char *)obj + k->off);
		if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on"))
			*b = true;
		else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcasecmp(v, "off"))
			*b = false;
		else
			return fail(p, p->line, k->name, "expected yes or no, got %s",
				    shown(v, q, sizeof(q)));
		return 0;
	}
	case K_FRACTION:
		return set_fraction(p, k->name, v, obj);
	case K_SIZE:
		if (!parse_size(v, (uint64_t *)((char *)obj + k->off)))
			return fail(p, p->line, k->name, "expected a size such as 256M or 1G "
				    "(from 1K to 1024T), got %s", shown(v, q, sizeof(q)));
		return 0;
	case K_MIN_FREE:
		return set_min_free(p, k->name, v, obj);
	}
	*str = strdup(v);
	return *str ? 0 : fail_nomem(p);
}

static const char *sect_title(const struct parse *p, char *out, size_t outlen)
{
	switch (p->cur) {
	case SECT_STORE:
		return "[store]";
	case SECT_SYNC:
		return "[sync]";
	case SECT_USER:
		snprintf(out, outlen, "[user %s]", p->s->users[p->cur_idx].name);
		return out;
	case SECT_ACCOUNT:
		snprintf(out, outlen, "[account %s/%s]", p->s->accounts[p->cur_idx].user,
			 p->s->accounts[p->cur_idx].name);
		return out;
	case SECT_NONE:
		break;
	}
	return "";
}

/* inih's ini_handler. Returns nonzero to go on. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	const struct keydef *keys = NULL;
	struct sect_meta *m;
	void *obj = NULL;
	char title[600];
	int i;

	(void)section; /* cut at 50 bytes by inih; p->cur is the truth */
	if (p->rc)
		return 0;
	if (!*name) {
		fail(p, p->line, NULL, "value without a key; expected KEY = VALUE");
		return 0;
	}
	switch (p->cur) {
	case SECT_NONE:
		fail(p, p->line, name,
		     "before any section; expected a [store], [sync], [user NAME] or [account USER/NAME] header above it");
		return 0;
	case SECT_STORE:
		keys = store_keys, obj = p->s;
		break;
	case SECT_SYNC:
		keys = sync_keys, obj = p->s;
		break;
	case SECT_USER:
		keys = user_keys, obj = &p->s->users[p->cur_idx];
		break;
	case SECT_ACCOUNT:
		keys = account_keys, obj = &p->s->accounts[p->cur_idx];
		break;
	}
	i = key_index(keys, name);
	if (i < 0) {
		struct buf list = BUF_INIT(1024);
		for (int j = 0; keys[j].name; j++)
			buf_printf(&list, "%s%s", j ? ", " : "", keys[j].name);
		fail(p, p->line, name, "unknown key in %s; expected one of: %s",
		     sect_title(p, title, sizeof(title)), list.data ? list.data : "");
		buf_release(&list);
		return 0;
	}
	m = cur_meta(p);
	if (m->key_line[i]) {
		fail(p, p->line, name, "given twice in %s (first at line %d)",
		     sect_title(p, title, sizeof(title)), m->key_line[i]);
		return 0;
	}
	if (keys[i].secret)
		for (int j = 0; keys[j].name; j++)
			if (keys[j].secret && m->key_line[j]) {
				fail(p, p->line, name,
				     "%s is already given at line %d; expected exactly one of password, password_file, password_command, oauth2_token_command",
				     keys[j].name, m->key_line[j]);
				return 0;
			}
	m->key_line[i] = p->line;
	return set_value(p, &keys[i], obj, value) == 0;
}

/* Checks that need a whole section, reported at its header's line. */
static void finish(struct parse *p)
{
	struct settings *s = p->s;
	int secret_idx[] = {
		key_index(account_keys, "password"), key_index(account_keys, "password_file"),
		key_index(account_keys, "password_command"),
		key_index(account_keys, "oauth2_token_command"),
	};

	if (!p->store.line) {
		fail(p, 0, "[store]", "missing; expected a [store] section with path = DIR");
		return;
	}
	if (!s->store_path) {
		fail(p, p->store.line, "path", "missing in [store]; expected path = DIR (absolute)");
		return;
	}
	for (size_t i = 0; i < s->n_users; i++) {
		if (!s->users[i].uid_name) {
			fail(p, p->user_meta[i].line, "uid",
			     "missing in [user %s]; expected uid = LOCAL_ACCOUNT or a numeric uid",
			     s->users[i].name);
			return;
		}
	}
	for (size_t i = 0; i < s->n_accounts; i++) {
		struct account_settings *a = &s->accounts[i];
		struct sect_meta *m = &p->account_meta[i];
		bool have_secret = false;
		char title[600];

		const struct user_settings *u = settings_user(s, a->user);

		snprintf(title, sizeof(title), "[account %s/%s]", a->user, a->name);
		if (!u) {
			fail(p, m->line, title, "user %s is not declared; expected a [user %s] section with uid =",
			     a->user, a->user);
			return;
		}
		a->uid = u->uid;
		a->gid = u->gid;
		if (!a->url) {
			fail(p, m->line, "url",
			     "missing in %s; expected url = imaps://HOST[:PORT] (or imap://, pop3://, pop3s://)",
			     title);
			return;
		}
		if (!a->login) {
			fail(p, m->line, "login", "missing in %s; expected login = NAME", title);
			return;
		}
		for (size_t j = 0; j < sizeof(secret_idx) / sizeof(secret_idx[0]); j++)
			have_secret |= m->key_line[secret_idx[j]] != 0;
		if (!have_secret) {
			fail(p, m->line, title,
			     "no secret; expected one of password_file, password_command, oauth2_token_command or password");
			return;
		}
		if (a->folders && (a->proto == PROTO_POP3 || a->proto == PROTO_POP3S)) {
			fail(p, m->key_line[key_index(account_keys, "folders")], "folders",
			     "POP3 has one mailbox; folders is only for imap:// and imaps:// accounts");
			return;
		}
		if (a->tls_off && (a->proto == PROTO_IMAPS || a->proto == PROTO_POP3S)) {
			fail(p, m->key_line[key_index(account_keys, "tls")], "tls",
			     "off is not possible with %s, which always uses TLS; expected tls = on, or an imap:// or pop3:// url",
			     a->proto == PROTO_IMAPS ? "imaps://" : "pop3s://");
			return;
		}
		if (!a->folders) {
			a->folders = calloc(2, sizeof(*a->folders));
			if (!a->folders || !(a->folders[0] = strdup("INBOX"))) {
				fail_nomem(p);
				return;
			}
			a->n_folders = 1;
		}
	}
}

int config_parse_string(const char *text, const char *name, struct settings **r,
			struct buf *err)
{
	struct parse p = {
		.name = name, .text = text, .len = strlen(text), .err = err,
	};
	int rc;

	*r = NULL;
	buf_reset(err);
	p.s = calloc(1, sizeof(*p.s));
	if (!p.s || !(p.s->path = strdup(name))) {
		fail_nomem(&p);
		goto out;
	}
	p.s->trash_days = 30;
	p.s->workers = 4;
	/* Exchange Online allows the largest messages of the big providers,
	 * 150 MB; Gmail 50 MB. A message past 256 MiB is an attack or a
	 * mistake, and refusing it keeps one reply from filling the disk. */
	p.s->max_message_size = 256ull << 20;
	p.s->max_folders = 10000;

	/* Debian's libinih turns its compile-time options into globals. No
	 * continuation lines: an indented key must not be glued to the value
	 * above it. A heap buffer of known size, no realloc: read_line then sees
	 * the real limit and refuses a long line instead of inih splitting it. */
	ini_allow_multiline = false;
	ini_stop_on_first_error = true;
	ini_allow_no_value = false;
	ini_allow_inline_comments = true;
	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_initial_alloc = CONFIG_LINE_MAX;
	ini_max_line = CONFIG_LINE_MAX;

	rc = ini_parse_stream(read_line, &p, on_key, &p);
	if (p.rc)
		goto out;
	if (rc == -2) {
		fail_nomem(&p);
		goto out;
	}
	if (rc != 0) {
		fail(&p, rc, NULL, "expected KEY = VALUE, a [section] header or a comment");
		goto out;
	}
	finish(&p);
	if (p.rc)
		goto out;
	for (size_t i = 0; i < p.s->n_accounts; i++) {
		p.s->accounts[i].max_message_size = p.s->max_message_size;
		p.s->accounts[i].max_folders = (size_t)p.s->max_folders;
	}
	for (size_t i = 0; i < p.s->n_accounts; i++) {
		const struct account_settings *a = &p.s->accounts[i];
		if (a->tls_off)
			log_warn("%s:%d: account %s/%s: tls = off: the login and the mail cross the network unencrypted",
				 name, p.account_meta[i].key_line[key_index(account_keys, "tls")],
				 a->user, a->name);
	}
	*r = p.s;
	p.s = NULL;
out:
	settings_free(&p.s);
	free(p.user_meta);
	free(p.account_meta);
	return p.rc;
}

static int file_fail(struct buf *err, int rc, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int file_fail(struct buf *err, int rc, const char *path, const char *fmt, ...)
{
	va_list ap;

	buf_reset(err);
	put_clean(err, path, 4096);
	buf_appends(err, ": ");
	va_start(ap, fmt);
	buf_vprintf(err, fmt, ap);
	va_end(ap);
	for (size_t i = 0; err->data && i < err->len; i++)
		if ((unsigned char)err->data[i] < 0x20 || err->data[i] == 0x7f)
			err->data[i] = '?';
	return rc;
}

int config_load(const char *path, struct settings **r, struct buf *err)
{
	struct stat st;
	char *text = NULL;
	size_t n = 0;
	int fd, rc;

	*r = NULL;
	buf_reset(err);
	/* O_NONBLOCK: a FIFO in its place must not hang us before the S_ISREG check */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		return file_fail(err, rc, path, "cannot read: %s", strerror(-rc));
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		file_fail(err, rc, path, "cannot read: %s", strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = file_fail(err, -EINVAL, path, "not a regular file");
		goto out;
	}
	/* its commands (password_command, on_change) run as this process */
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		rc = file_fail(err, -EINVAL, path,
			       "owned by uid %u, expected uid %u or root, since its commands run as uid %u; run: chown %u %s",
			       (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)geteuid(),
			       (unsigned)geteuid(), path);
		goto out;
	}
	if (st.st_mode & 022) {
		rc = file_fail(err, -EINVAL, path,
			       "writable by others (mode %04o), who could make it run any command; run: chmod go-w %s",
			       (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		rc = file_fail(err, -EINVAL, path, "larger than %d bytes; is this a config file?",
			       CONFIG_FILE_MAX);
		goto out;
	}
	text = malloc(CONFIG_FILE_MAX + 1);
	if (!text) {
		rc = file_fail(err, -ENOMEM, path, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t got = read(fd, text + n, CONFIG_FILE_MAX + 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			file_fail(err, rc, path, "cannot read: %s", strerror(-rc));
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		if (n > CONFIG_FILE_MAX) {
			rc = file_fail(err, -EINVAL, path, "larger than %d bytes; is this a config file?",
				       CONFIG_FILE_MAX);
			goto out;
		}
	}
	text[n] = '\0';
	if (memchr(text, '\0', n)) {
		rc = file_fail(err, -EINVAL, path, "holds a NUL byte; expected a text file");
		goto out;
	}
	rc = config_parse_string(text, path, r, err);
	if (rc < 0)
		goto out;
	if (st.st_mode & 044) {
		for (size_t i = 0; i < (*r)->n_accounts; i++) {
			if ((*r)->accounts[i].password) {
				settings_free(r);
				rc = file_fail(err, -EINVAL, path,
					       "holds a password but is readable by others (mode %04o); run: chmod 600 %s",
					       (unsigned)(st.st_mode & 07777), path);
				break;
			}
		}
	}
out:
	if (text) {
		explicit_bzero(text, n);
		free(text);
	}
	close(fd);
	return rc;
}

int config_default_path(char *out, size_t outlen)
{
	const char *env = getenv("MAILDISK_CONFIG");
	const char *home;
	struct passwd pw, *res = NULL;
	char buf[16384];
	int n;

	if (env && *env)
		n = snprintf(out, outlen, "%s", env);
	else if (geteuid() == 0)
		n = snprintf(out, outlen, "/etc/maildisk.conf");
	else {
		home = getenv("HOME");
		if (!home || !*home) {
			if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &res) != 0 || !res ||
			    !res->pw_dir || !*res->pw_dir)
				return -ENOENT;
			home = res->pw_dir;
		}
		n = snprintf(out, outlen, "%s/.config/maildisk/config", home);
	}
	if (n < 0 || (size_t)n >= outlen)
		return -ENAMETOOLONG;
	return 0;
}
