/* config: the maildisk config file, parsed with inih (see config.h).
 *
 * inih calls us once per "key = value" but, as Debian builds it, tells us
 * no line numbers (no INI_HANDLER_LINENO), never reports a section that has
 * no keys, and cuts section names at 50 bytes. So the text reaches inih
 * through our own reader, which counts lines and reads each section header
 * itself: a header is checked and recorded, with its line, when the reader
 * hands that line over, and the key handler files keys under that record,
 * never under inih's copy of the name.
 *
 * This file is the reader and the checks of whole sections; the values of
 * keys are parsed in config_keys.c and the files in config_file.c (see
 * config_int.h). */
#include "config_int.h"

#include <ctype.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/log.h"

void config_put_clean(struct buf *b, const char *s, size_t max)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n && i < max; i++)
		buf_appendc(b, (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i]);
	if (n > max)
		buf_appends(b, "...");
}

void config_clean_tail(struct buf *b, size_t from)
{
	for (size_t i = from; b->data && i < b->len; i++)
		if ((unsigned char)b->data[i] < 0x20 || b->data[i] == 0x7f)
			b->data[i] = '?';
}

int config_fail_rc(struct parse *p, int rc, int line, const char *key, const char *fmt, ...)
{
	va_list ap;
	size_t mark;

	if (p->rc)
		return p->rc;
	p->rc = rc;
	buf_reset(p->err);
	config_put_clean(p->err, p->name, 4096);
	if (line > 0)
		buf_printf(p->err, ":%d", line);
	buf_appends(p->err, ": ");
	if (key) {
		config_put_clean(p->err, key, 600);
		buf_appends(p->err, ": ");
	}
	mark = p->err->len;
	va_start(ap, fmt);
	buf_vprintf(p->err, fmt, ap);
	va_end(ap);
	/* values quoted in the message could carry control bytes */
	config_clean_tail(p->err, mark);
	return rc;
}

const char *config_shown(const char *v, char *out, size_t outlen)
{
	size_t n = strlen(v);

	if (n + 3 <= outlen)
		snprintf(out, outlen, "\"%s\"", v);
	else
		snprintf(out, outlen, "\"%.*s...\"", (int)(outlen - 6), v);
	return out;
}

bool config_ascii_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool valid_name(const char *s, size_t n)
{
	if (n == 0 || n > NAME_MAX_BYTES || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!config_ascii_alnum(s[i]) && !(s[i] && strchr("._@+-", s[i])))
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
	case SECT_MOUNT:
		return &p->mount;
	case SECT_USER:
		return &p->user_meta[p->cur_idx];
	case SECT_ACCOUNT:
		return &p->account_meta[p->cur_idx];
	case SECT_NONE:
		break;
	}
	return NULL;
}

int config_key_index(const struct keydef *keys, const char *name)
{
	for (int i = 0; keys[i].name; i++)
		if (strcmp(keys[i].name, name) == 0)
			return i;
	return -1;
}

/* Makes room for section n in arr (of elem-byte entries, *cap of them) and
 * in its parallel *meta, zeroes both entries and records the header's line.
 * Returns arr, moved or not, or NULL after recording the error (then arr is
 * still the caller's). */
static void *grow_sections(struct parse *p, void *arr, size_t elem, struct sect_meta **meta,
			   size_t n, size_t *cap)
{
	if (n == *cap) {
		size_t c = *cap ? 2 * *cap : 4;
		struct sect_meta *m = realloc(*meta, c * sizeof(*m));
		if (!m) {
			fail_nomem(p);
			return NULL;
		}
		*meta = m;
		void *a = realloc(arr, c * elem);
		if (!a) {
			fail_nomem(p);
			return NULL;
		}
		arr = a;
		*cap = c;
	}
	memset((char *)arr + n * elem, 0, elem);
	memset(&(*meta)[n], 0, sizeof((*meta)[n]));
	(*meta)[n].line = p->line;
	return arr;
}

static int add_user(struct parse *p, const char *hdr, const char *name, size_t n)
{
	struct settings *s = p->s;
	long dup = settings_user_index(s, name, n);

	if (dup >= 0)
		return fail(p, p->line, hdr, "given twice (first at line %d)", p->user_meta[dup].line);
	struct user_settings *users = grow_sections(p, s->users, sizeof(*users), &p->user_meta,
						    s->n_users, &p->users_cap);
	if (!users)
		return p->rc;
	s->users = users;
	struct user_settings *u = &s->users[s->n_users];
	u->name = strndup(name, n);
	if (!u->name)
		return fail_nomem(p);
	p->cur = SECT_USER;
	p->cur_idx = s->n_users++;
	return settings_map_user(s, p->cur_idx) < 0 ? fail_nomem(p) : 0;
}

static int add_account(struct parse *p, const char *hdr, const char *user, size_t un,
		       const char *name, size_t nn)
{
	struct settings *s = p->s;
	long dup = settings_account_index(s, user, un, name, nn);

	if (dup >= 0)
		return fail(p, p->line, hdr, "given twice (first at line %d)",
			    p->account_meta[dup].line);
	struct account_settings *accounts = grow_sections(p, s->accounts, sizeof(*accounts),
							  &p->account_meta, s->n_accounts,
							  &p->accounts_cap);
	if (!accounts)
		return p->rc;
	s->accounts = accounts;
	struct account_settings *a = &s->accounts[s->n_accounts];
	a->interval = 300;
	a->timeout = 60;
	a->mirror_deletions = true;
	a->mass_delete_limit = 0.5;
	/* counted before the strdups so settings_free sees them on failure */
	p->cur = SECT_ACCOUNT;
	p->cur_idx = s->n_accounts++;
	a->user = strndup(user, un);
	a->name = strndup(name, nn);
	if (!a->user || !a->name || settings_map_account(s, p->cur_idx) < 0)
		return fail_nomem(p);
	return 0;
}

/* A section without a name ([store], [sync]): at most once. */
static int begin_single(struct parse *p, const char *hdr, struct sect_meta *m, enum sect sect)
{
	if (m->line)
		return fail(p, p->line, hdr, "given twice (first at line %d)", m->line);
	m->line = p->line;
	p->cur = sect;
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

	if (tn == 5 && memcmp(inner, "store", 5) == 0 && rest == 0)
		return begin_single(p, shown_hdr, &p->store, SECT_STORE);
	if (tn == 4 && memcmp(inner, "sync", 4) == 0 && rest == 0)
		return begin_single(p, shown_hdr, &p->sync, SECT_SYNC);
	if (tn == 5 && memcmp(inner, "mount", 5) == 0 && rest == 0)
		return begin_single(p, shown_hdr, &p->mount, SECT_MOUNT);
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
	if ((tn == 5 && memcmp(inner, "store", 5) == 0) || (tn == 4 && memcmp(inner, "sync", 4) == 0) ||
	    (tn == 5 && memcmp(inner, "mount", 5) == 0))
		return fail(p, p->line, shown_hdr, "takes no name; expected [%.*s]", (int)tn, inner);
	if (tn == 4 && memcmp(inner, "user", 4) == 0)
		return fail(p, p->line, shown_hdr, "expected [user NAME]");
	if (tn == 7 && memcmp(inner, "account", 7) == 0)
		return fail(p, p->line, shown_hdr, "expected [account USER/NAME]");
	return fail(p, p->line, shown_hdr,
		    "unknown section; expected [store], [sync], [mount], [user NAME] or [account USER/NAME]");
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


static const char *sect_title(const struct parse *p, char *out, size_t outlen)
{
	switch (p->cur) {
	case SECT_STORE:
		return "[store]";
	case SECT_SYNC:
		return "[sync]";
	case SECT_MOUNT:
		return "[mount]";
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
		     "before any section; expected a [store], [sync], [mount], [user NAME] or [account USER/NAME] header above it");
		return 0;
	case SECT_STORE:
		keys = config_store_keys, obj = p->s;
		break;
	case SECT_SYNC:
		keys = config_sync_keys, obj = p->s;
		break;
	case SECT_MOUNT:
		keys = config_mount_keys, obj = p->s;
		break;
	case SECT_USER:
		keys = config_user_keys, obj = &p->s->users[p->cur_idx];
		break;
	case SECT_ACCOUNT:
		keys = config_account_keys, obj = &p->s->accounts[p->cur_idx];
		break;
	}
	i = config_key_index(keys, name);
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
	return config_set_value(p, &keys[i], obj, value) == 0;
}

/* Checks that need a whole section, reported at its header's line. */
static void finish(struct parse *p)
{
	struct settings *s = p->s;
	int secret_idx[] = {
		config_key_index(config_account_keys, "password"), config_key_index(config_account_keys, "password_file"),
		config_key_index(config_account_keys, "password_command"),
		config_key_index(config_account_keys, "oauth2_token_command"),
	};

	if (!p->store.line) {
		fail(p, 0, "[store]", "missing; expected a [store] section with path = DIR");
		return;
	}
	if (!s->store_path) {
		fail(p, p->store.line, "path", "missing in [store]; expected path = DIR (absolute)");
		return;
	}
	int parts_idx = config_key_index(config_user_keys, "parts");

	for (size_t i = 0; i < s->n_users; i++) {
		/* [store] parts is the default, wherever [store] is in the file. */
		if (!p->user_meta[i].key_line[parts_idx])
			s->users[i].parts = s->parts;
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
			fail(p, m->key_line[config_key_index(config_account_keys, "folders")], "folders",
			     "POP3 has one mailbox; folders is only for imap:// and imaps:// accounts");
			return;
		}
		if (a->tls_off && (a->proto == PROTO_IMAPS || a->proto == PROTO_POP3S)) {
			fail(p, m->key_line[config_key_index(config_account_keys, "tls")], "tls",
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
	p.s->parts = true;
	p.s->keep_cpus_awake = true;

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
				 name, p.account_meta[i].key_line[config_key_index(config_account_keys, "tls")],
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
