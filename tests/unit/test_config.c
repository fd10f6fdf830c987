/* Unit tests for fs/config.c (the config file) and fetch/secret.c (getting
 * the secret). Every file lives in a fresh mkdtemp directory. Runs as root
 * on the test machines ([user] uid = root, and nobody for a numeric uid);
 * as another user the owner rules still hold, since it owns what it writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../fs/config.h"
#include "../../cache/log.h"
#include "../../fetch/secret.h"
#include "fixture.h"

static char dir[64];          /* the test's mkdtemp directory */
static char me[64];           /* name of the effective user */
static uid_t nobody_uid;
static gid_t nobody_gid;

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		abort();
	return p;
}

/* Replaces every "@D@" in in with the test directory and "@ME@" with the
 * effective user's name. Returns a malloc'd string. */
static char *expand(const char *in)
{
	char *out = xmalloc(strlen(in) * 4 + 256);
	char *o = out;

	while (*in) {
		if (strncmp(in, "@D@", 3) == 0) {
			o = stpcpy(o, dir);
			in += 3;
		} else if (strncmp(in, "@ME@", 4) == 0) {
			o = stpcpy(o, me);
			in += 4;
		} else {
			*o++ = *in++;
		}
	}
	*o = '\0';
	return out;
}

/* Writes dir/name with text (after expand) and mode; returns its path. */
static char *write_file(const char *name, const char *text, mode_t mode)
{
	char *path = xmalloc(strlen(dir) + strlen(name) + 2);
	char *body = expand(text);
	int fd;

	sprintf(path, "%s/%s", dir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, body, strlen(body)), (ssize_t)strlen(body));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	free(body);
	return path;
}

static int setup(void **state)
{
	struct passwd *pw;

	(void)state;
	if (!fixture_mkdtemp(dir, sizeof dir, "maildisk-test-config"))
		return -1;
	pw = getpwuid(geteuid());
	if (!pw)
		return -1;
	snprintf(me, sizeof(me), "%s", pw->pw_name);
	pw = getpwnam("nobody");
	if (!pw)
		return -1;
	nobody_uid = pw->pw_uid;
	nobody_gid = pw->pw_gid;
	free(write_file("ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644));
	free(write_file("pw.secret", "s3cret pass\r\nsecond line\n", 0600));
	free(write_file("pw.world", "s3cret\n", 0644));
	free(write_file("pw.empty", "\nsecond\n", 0600));
	log_init("test_config", false, LOG_LVL_ERROR);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return fixture_rmtree(dir);
}

/* ---- a valid config, every field ---- */

static const char valid_conf[] =
	"; maildisk test config\n"
	"[store]\n"
	"path = /var/lib/maildisk\n"
	"trash_days = 14\n"
	"\n"
	"[sync]\n"
	"workers = 8\n"
	"\n"
	"[user alice]\n"
	"uid = @ME@                ; the local account\n"
	"on_change = notmuch new\n"
	"\n"
	"[user bob.b]\n"
	"  uid = 65534\n"
	"\n"
	"[account alice/work]\n"
	"url = IMAPS://imap.example.com:993/\n"
	"login = alice@example.com\n"
	"password_file = @D@/pw.secret\n"
	"folders = INBOX, Archive ,Sent Items\n"
	"interval = 600\n"
	"timeout = 30\n"
	"ca_file = @D@/ca.pem\n"
	"mirror_deletions = no\n"
	"mass_delete_limit = 25%\n"
	"\n"
	"[account bob.b/isp]\n"
	"url = pop3://pop.isp.example\n"
	"login = bob\n"
	"password_command = /bin/echo \"hunter 2\"\n"
	"tls = off\n"
	"mass_delete_limit = 0.75\n"
	"mirror_deletions = TRUE\n"
	"\n"
	"[account alice/gmail]\n"
	"url = imap://[::1]:143\n"
	"login = alice@gmail.example\n"
	"oauth2_token_command = /usr/bin/printf 'tok en\\nrest'\n"
	"folders = *\n"
	"\n"
	"[account bob.b/inline]\n"
	"url = pop3s://mail.example.net\n"
	"login = b\n"
	"password = pa#ss;word \n";

static void test_valid_full(void **state)
{
	struct settings *s = NULL;
	struct buf err = BUF_INIT(4096);
	char *path = write_file("valid.conf", valid_conf, 0600);
	char *pwfile = expand("@D@/pw.secret");
	char *cafile = expand("@D@/ca.pem");
	const struct account_settings *a;
	const struct user_settings *u;

	(void)state;
	if (nobody_uid != 65534)
		skip();
	assert_int_equal(config_load(path, &s, &err), 0);
	assert_non_null(s);
	assert_string_equal(s->path, path);
	assert_string_equal(s->store_path, "/var/lib/maildisk");
	assert_int_equal(s->trash_days, 14);
	assert_int_equal(s->workers, 8);

	assert_int_equal(s->n_users, 2);
	u = settings_user(s, "alice");
	assert_non_null(u);
	assert_string_equal(u->uid_name, me);
	assert_int_equal(u->uid, geteuid());
	assert_int_equal(u->gid, getpwuid(geteuid())->pw_gid);
	assert_string_equal(u->on_change, "notmuch new");
	u = settings_user(s, "bob.b");
	assert_non_null(u);
	assert_string_equal(u->uid_name, "nobody");
	assert_int_equal(u->uid, nobody_uid);
	assert_int_equal(u->gid, nobody_gid);
	assert_null(u->on_change);

	assert_int_equal(s->n_accounts, 4);
	a = settings_account(s, "alice", "work");
	assert_non_null(a);
	assert_string_equal(a->url, "IMAPS://imap.example.com:993/");
	assert_int_equal(a->proto, PROTO_IMAPS);
	assert_string_equal(a->host, "imap.example.com");
	assert_int_equal(a->port, 993);
	assert_string_equal(a->login, "alice@example.com");
	assert_string_equal(a->password_file, pwfile);
	assert_null(a->password);
	assert_null(a->password_command);
	assert_null(a->oauth2_token_command);
	assert_int_equal(a->n_folders, 3);
	assert_string_equal(a->folders[0], "INBOX");
	assert_string_equal(a->folders[1], "Archive");
	assert_string_equal(a->folders[2], "Sent Items");
	assert_null(a->folders[3]);
	assert_int_equal(a->interval, 600);
	assert_int_equal(a->timeout, 30);
	assert_false(a->tls_off);
	assert_string_equal(a->ca_file, cafile);
	assert_false(a->mirror_deletions);
	assert_true(a->mass_delete_limit > 0.2499 && a->mass_delete_limit < 0.2501);
	assert_false(secret_is_token(a));

	a = settings_account(s, "bob.b", "isp");
	assert_non_null(a);
	assert_int_equal(a->proto, PROTO_POP3);
	assert_string_equal(a->host, "pop.isp.example");
	assert_int_equal(a->port, 0);
	assert_string_equal(a->login, "bob");
	assert_string_equal(a->password_command, "/bin/echo \"hunter 2\"");
	assert_true(a->tls_off);
	assert_true(a->mirror_deletions);
	assert_true(a->mass_delete_limit > 0.7499 && a->mass_delete_limit < 0.7501);
	assert_int_equal(a->n_folders, 1);                 /* defaults */
	assert_string_equal(a->folders[0], "INBOX");
	assert_null(a->folders[1]);
	assert_int_equal(a->interval, 300);
	assert_int_equal(a->timeout, 60);
	assert_null(a->ca_file);

	a = settings_account(s, "alice", "gmail");
	assert_non_null(a);
	assert_int_equal(a->proto, PROTO_IMAP);
	assert_string_equal(a->host, "[::1]");
	assert_int_equal(a->port, 143);
	assert_string_equal(a->oauth2_token_command, "/usr/bin/printf 'tok en\\nrest'");
	assert_true(secret_is_token(a));
	assert_int_equal(a->n_folders, 1);
	assert_string_equal(a->folders[0], "*");
	assert_true(a->mirror_deletions);
	assert_true(a->mass_delete_limit > 0.4999 && a->mass_delete_limit < 0.5001);

	a = settings_account(s, "bob.b", "inline");
	assert_non_null(a);
	assert_int_equal(a->proto, PROTO_POP3S);
	assert_string_equal(a->password, "pa#ss;word");

	settings_free(&s);
	assert_null(s);
	buf_release(&err);
	free(path);
	free(pwfile);
	free(cafile);
}

static void test_defaults_minimal(void **state)
{
	struct settings *s = NULL;
	struct buf err = BUF_INIT(4096);

	(void)state;
	assert_int_equal(config_parse_string("[store]\npath=/s\n", "mem", &s, &err), 0);
	assert_string_equal(s->path, "mem");
	assert_int_equal(s->trash_days, 30);
	assert_int_equal(s->workers, 4);
	assert_true(s->keep_cpus_awake);
	assert_int_equal(s->n_users, 0);
	assert_int_equal(s->n_accounts, 0);
	settings_free(&s);
	buf_release(&err);
}

static void test_keep_cpus_awake(void **state)
{
	struct settings *s = NULL;
	struct buf err = BUF_INIT(4096);

	(void)state;
	assert_int_equal(config_parse_string("[mount]\nkeep_cpus_awake = no\n[store]\npath=/s\n", "mem",
					     &s, &err), 0);
	assert_false(s->keep_cpus_awake);
	settings_free(&s);
	buf_release(&err);
}

/* parts: [store] parts is every user's default (wherever [store] stands in
 * the file), a user's own parts overrides it, and it defaults to yes. */
static void test_parts_switch(void **state)
{
	static const struct {
		const char *text;
		bool store, alice, bob;
	} cases[] = {
		{ "[store]\npath=/s\n[user alice]\nuid = root\n[user bob]\nuid = root\n",
		  true, true, true },
		{ "[user alice]\nuid = root\n[user bob]\nuid = root\nparts = yes\n"
		  "[store]\npath=/s\nparts = no\n", false, false, true },
		{ "[store]\npath=/s\nparts = On\n[user alice]\nuid = root\nparts = off\n"
		  "[user bob]\nuid = root\n", true, false, true },
		{ "[store]\npath=/s\nparts = false\n[user alice]\nuid = root\nparts = no\n"
		  "[user bob]\nuid = root\nparts = TRUE\n", false, false, true },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct settings *s = NULL;
		struct buf err = BUF_INIT(4096);

		if (config_parse_string(cases[i].text, "mem", &s, &err) != 0)
			fail_msg("case %zu: %s", i, err.data ? err.data : "(no message)");
		assert_int_equal(s->parts, cases[i].store);
		assert_int_equal(settings_user(s, "alice")->parts, cases[i].alice);
		assert_int_equal(settings_user(s, "bob")->parts, cases[i].bob);
		settings_free(&s);
		buf_release(&err);
	}
}

/* ---- malformed configs: the exact "file:line: key: " start of the error ---- */

#define BASE "[store]\npath = /srv/md\n\n[user alice]\nuid = root\n\n"  /* lines 1-6 */
#define ACCT "[account alice/work]\nurl = imaps://h.example\nlogin = a\n" /* lines 7-9 */

struct bad_case {
	const char *what;
	const char *text;
	mode_t mode;
	int rc;
	const char *expect;   /* error must start with path + this (after expand) */
};

static const struct bad_case bad_cases[] = {
	{ "unknown key", BASE ACCT "password_command = true\nfodlers = INBOX\n", 0600, -EINVAL,
	  ":11: fodlers: unknown key in [account alice/work]; expected one of: url, login," },
	{ "unknown section", "[store]\npath = /x\n[stroe]\n", 0600, -EINVAL,
	  ":3: [stroe]: unknown section; expected [store], [sync], [mount], [user NAME] or [account USER/NAME]" },
	{ "store without path", "[store]\ntrash_days = 3\n", 0600, -EINVAL,
	  ":1: path: missing in [store]; expected path = DIR" },
	{ "no store section", "[sync]\nworkers = 2\n", 0600, -EINVAL,
	  ": [store]: missing; expected a [store] section with path = DIR" },
	{ "relative store path", "[store]\npath = srv\n", 0600, -EINVAL,
	  ":2: path: \"srv\" is not an absolute path" },
	{ "undeclared user", BASE "[account carol/x]\nurl = imaps://h\nlogin = a\npassword_command = true\n",
	  0600, -EINVAL, ":7: [account carol/x]: user carol is not declared; expected a [user carol] section" },
	{ "bad url scheme", BASE "[account alice/work]\nurl = http://h.example\n", 0600, -EINVAL,
	  ":8: url: unknown scheme; expected imap://, imaps://, pop3:// or pop3s:// HOST[:PORT]" },
	{ "url with a path", BASE "[account alice/work]\nurl = imaps://h.example/INBOX\n", 0600,
	  -EINVAL, ":8: url: nothing may follow HOST[:PORT] but '/'" },
	{ "url with a user", BASE "[account alice/work]\nurl = imaps://bob:pw@h.example\n", 0600,
	  -EINVAL, ":8: url: holds a user or password; expected" },
	{ "url port out of range", BASE "[account alice/work]\nurl = imaps://h:70000\n", 0600,
	  -EINVAL, ":8: url: bad port; expected a number from 1 to 65535" },
	{ "url without host", BASE "[account alice/work]\nurl = pop3s://\n", 0600, -EINVAL,
	  ":8: url: no host" },
	{ "two secrets", BASE ACCT "password_command = true\npassword_file = @D@/pw.secret\n", 0600,
	  -EINVAL, ":11: password_file: password_command is already given at line 10; expected exactly one of" },
	{ "no secret", BASE ACCT "interval = 60\n", 0600, -EINVAL,
	  ":7: [account alice/work]: no secret; expected one of" },
	{ "no url", BASE "[account alice/work]\nlogin = a\npassword_command = true\n", 0600, -EINVAL,
	  ":7: url: missing in [account alice/work]" },
	{ "no login", BASE "[account alice/work]\nurl = imap://h\npassword_command = true\n", 0600,
	  -EINVAL, ":7: login: missing in [account alice/work]" },
	{ "bad number", BASE ACCT "interval = 5m\n", 0600, -EINVAL,
	  ":10: interval: expected a whole number of seconds from 10 to 604800, got \"5m\"" },
	{ "interval too small", BASE ACCT "interval = 9\n", 0600, -EINVAL,
	  ":10: interval: expected a whole number of seconds from 10 to 604800, got \"9\"" },
	{ "negative timeout", BASE ACCT "timeout = -5\n", 0600, -EINVAL,
	  ":10: timeout: expected a whole number of seconds from 5 to 3600" },
	{ "workers out of range", "[store]\npath=/s\n[sync]\nworkers = 65\n", 0600, -EINVAL,
	  ":4: workers: expected a whole number of workers from 1 to 64, got \"65\"" },
	{ "tls off on imaps", BASE ACCT "password_command = true\ntls = off\n", 0600, -EINVAL,
	  ":11: tls: off is not possible with imaps://" },
	{ "tls maybe", BASE ACCT "tls = starttls\n", 0600, -EINVAL,
	  ":10: tls: expected on or off, got \"starttls\"" },
	{ "mirror_deletions maybe", BASE ACCT "mirror_deletions = maybe\n", 0600, -EINVAL,
	  ":10: mirror_deletions: expected yes or no, got \"maybe\"" },
	{ "mount key unknown", "[store]\npath=/s\n[mount]\nkeep_cpu_awake = no\n", 0600, -EINVAL,
	  ":4: keep_cpu_awake: unknown key in [mount]" },
	{ "mount with a name", "[store]\npath=/s\n[mount fast]\n", 0600, -EINVAL,
	  ":3: [mount fast]: takes no name; expected [mount]" },
	{ "mount twice", "[store]\npath=/s\n[mount]\n[mount]\n", 0600, -EINVAL,
	  ":4: [mount]: given twice" },
	{ "keep_cpus_awake maybe", "[store]\npath=/s\n[mount]\nkeep_cpus_awake = maybe\n", 0600,
	  -EINVAL, ":4: keep_cpus_awake: expected yes or no, got \"maybe\"" },
	{ "store parts maybe", "[store]\npath = /s\nparts = maybe\n", 0600, -EINVAL,
	  ":3: parts: expected yes or no, got \"maybe\"" },
	{ "user parts empty", BASE "parts =\n", 0600, -EINVAL, ":7: parts: no value" },
	{ "user parts twice", BASE "parts = yes\nparts = no\n", 0600, -EINVAL,
	  ":8: parts: given twice in [user alice] (first at line 7)" },
	{ "mass_delete_limit 150%", BASE ACCT "mass_delete_limit = 150%\n", 0600, -EINVAL,
	  ":10: mass_delete_limit: expected a percentage from 0% to 100% (50%) or a fraction from 0 to 1 (0.5), got \"150%\"" },
	{ "mass_delete_limit 1.5", BASE ACCT "mass_delete_limit = 1.5\n", 0600, -EINVAL,
	  ":10: mass_delete_limit: expected a percentage" },
	{ "folder list with an empty item", BASE ACCT "folders = INBOX,,Sent\n", 0600, -EINVAL,
	  ":10: folders: empty folder name in the list" },
	{ "folder list ending in a comma", BASE ACCT "folders = INBOX,\n", 0600, -EINVAL,
	  ":10: folders: empty folder name in the list" },
	{ "star among folders", BASE ACCT "folders = INBOX, *\n", 0600, -EINVAL,
	  ":10: folders: * means all folders and must stand alone" },
	{ "folder twice", BASE ACCT "folders = INBOX, Sent, INBOX\n", 0600, -EINVAL,
	  ":10: folders: \"INBOX\" listed twice" },
	{ "folders on pop3", BASE "[account alice/p]\nurl = pop3s://h\nlogin = a\npassword_command = true\nfolders = INBOX\n",
	  0600, -EINVAL, ":11: folders: POP3 has one mailbox" },
	{ "user name ../x", "[store]\npath = /s\n[user ../x]\nuid = root\n", 0600, -EINVAL,
	  ":3: [user ../x]: bad user name; expected 1 to 255 of" },
	{ "user name .hidden", "[store]\npath = /s\n[user .hidden]\nuid = root\n", 0600, -EINVAL,
	  ":3: [user .hidden]: bad user name" },
	{ "user name a/b", "[store]\npath = /s\n[user a/b]\nuid = root\n", 0600, -EINVAL,
	  ":3: [user a/b]: bad user name" },
	{ "account name a/b", BASE "[account alice/a/b]\n", 0600, -EINVAL,
	  ":7: [account alice/a/b]: bad account name" },
	{ "account name ../x", BASE "[account alice/../x]\n", 0600, -EINVAL,
	  ":7: [account alice/../x]: bad account name" },
	{ "account without slash", BASE "[account alice]\n", 0600, -EINVAL,
	  ":7: [account alice]: expected [account USER/NAME]" },
	{ "user without name", "[store]\npath = /s\n[user]\n", 0600, -EINVAL,
	  ":3: [user]: expected [user NAME]" },
	{ "store with a name", "[store x]\n", 0600, -EINVAL,
	  ":1: [store x]: takes no name; expected [store]" },
	{ "world-readable config with a password", BASE ACCT "password = hunter2\n", 0644, -EINVAL,
	  ": holds a password but is readable by others (mode 0644); run: chmod 600 " },
	{ "world-readable password_file", BASE ACCT "password_file = @D@/pw.world\n", 0600, -EINVAL,
	  ":10: password_file: @D@/pw.world is open to group or others (mode 0644); run: chmod 600 @D@/pw.world" },
	{ "nonexistent password_file", BASE ACCT "password_file = @D@/none\n", 0600, -EINVAL,
	  ":10: password_file: @D@/none: No such file or directory; expected a file holding the password" },
	{ "password_file is a directory", BASE ACCT "password_file = @D@\n", 0600, -EINVAL,
	  ":10: password_file: @D@: not a regular file" },
	{ "nonexistent ca_file", BASE ACCT "ca_file = @D@/none.pem\n", 0600, -EINVAL,
	  ":10: ca_file: @D@/none.pem: No such file or directory; expected a readable PEM file" },
	{ "duplicate key", BASE ACCT "login = b\n", 0600, -EINVAL,
	  ":10: login: given twice in [account alice/work] (first at line 9)" },
	{ "duplicate user section", BASE "[user alice]\nuid = root\n", 0600, -EINVAL,
	  ":7: [user alice]: given twice (first at line 4)" },
	{ "duplicate account section", BASE ACCT "password_command = true\n[account alice/work]\n",
	  0600, -EINVAL, ":11: [account alice/work]: given twice (first at line 7)" },
	{ "duplicate store section", BASE "[store]\n", 0600, -EINVAL,
	  ":7: [store]: given twice (first at line 1)" },
	{ "key before any section", "path = /x\n[store]\n", 0600, -EINVAL,
	  ":1: path: before any section" },
	{ "line without =", "[store]\npath /x\n", 0600, -EINVAL,
	  ":2: expected KEY = VALUE, a [section] header or a comment" },
	{ "header without ]", "[store\n", 0600, -EINVAL,
	  ":1: section header without ']'" },
	{ "text after header", "[store] path = /x\n", 0600, -EINVAL,
	  ":1: text after the section header's ']'" },
	{ "empty value", BASE ACCT "password_command =\n", 0600, -EINVAL,
	  ":10: password_command: no value" },
	{ "unbalanced quote", BASE ACCT "password_command = pass show 'mail\n", 0600, -EINVAL,
	  ":10: password_command: unterminated quote or trailing backslash" },
	{ "password cut by a comment", BASE ACCT "password = abc ;def\n", 0600, -EINVAL,
	  ":10: password: \" ;\" starts a comment here" },
	{ "unknown local user", "[store]\npath=/s\n[user alice]\nuid = no-such-user-maildisk\n", 0600,
	  -EINVAL, ":4: uid: no local account named \"no-such-user-maildisk\"" },
	{ "unknown numeric uid", "[store]\npath=/s\n[user alice]\nuid = 4000000123\n", 0600,
	  -EINVAL, ":4: uid: no local account has uid \"4000000123\"" },
	{ "user without uid", "[store]\npath=/s\n[user alice]\non_change = true\n", 0600,
	  -EINVAL, ":3: uid: missing in [user alice]" },
	{ "world-writable config", "[store]\npath=/s\n", 0666, -EINVAL,
	  ": writable by others (mode 0666), who could make it run any command; run: chmod go-w " },
	{ "indented key is no continuation", "[store]\npath = /s\n  junk = 1\n", 0600, -EINVAL,
	  ":3: junk: unknown key in [store]" },
};

static void test_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct settings *s = (struct settings *)1;
		struct buf err = BUF_INIT(4096);
		char *path = write_file("bad.conf", c->text, c->mode);
		char *tail = expand(c->expect);
		char *want = xmalloc(strlen(path) + strlen(tail) + 1);
		int rc;

		sprintf(want, "%s%s", path, tail);
		rc = config_load(path, &s, &err);
		if (rc != c->rc || !err.data || strncmp(err.data, want, strlen(want)) != 0 ||
		    strchr(err.data, '\n'))
			fail_msg("case \"%s\": rc %d (want %d)\n got: %s\nwant: %s...", c->what, rc,
				 c->rc, err.data ? err.data : "(none)", want);
		assert_null(s);
		buf_release(&err);
		free(path);
		free(tail);
		free(want);
	}
}

static void test_file_errors(void **state)
{
	struct settings *s = NULL;
	struct buf err = BUF_INIT(4096);
	char *missing = expand("@D@/missing.conf");
	char *want;
	char *long_conf;
	char *path;

	(void)state;
	assert_int_equal(config_load(missing, &s, &err), -ENOENT);
	want = expand("@D@/missing.conf: cannot read: No such file or directory");
	assert_string_equal(err.data, want);
	free(want);
	assert_null(s);

	assert_int_equal(config_load(dir, &s, &err), -EINVAL);
	want = expand("@D@: not a regular file");
	assert_string_equal(err.data, want);
	free(want);

	/* a line past CONFIG_LINE_MAX is refused, not split */
	long_conf = xmalloc(CONFIG_LINE_MAX + 64);
	strcpy(long_conf, "[store]\npath = /");
	memset(long_conf + strlen(long_conf), 'x', CONFIG_LINE_MAX);
	strcpy(long_conf + 16 + CONFIG_LINE_MAX, "\n");
	path = write_file("long.conf", long_conf, 0600);
	assert_int_equal(config_load(path, &s, &err), -EINVAL);
	want = xmalloc(strlen(path) + 64);
	sprintf(want, "%s:2: line longer than", path);
	assert_memory_equal(err.data, want, strlen(want));
	free(want);
	free(path);

	/* but a long line that fits is fine */
	strcpy(long_conf, "[store]\npath = /");
	memset(long_conf + strlen(long_conf), 'x', 3000);
	strcpy(long_conf + 16 + 3000, "\n");
	path = write_file("long.conf", long_conf, 0600);
	assert_int_equal(config_load(path, &s, &err), 0);
	assert_int_equal(strlen(s->store_path), 3001);
	settings_free(&s);
	free(path);
	free(long_conf);

	/* a section name longer than inih's 50 bytes is not cut */
	assert_int_equal(config_parse_string(
		"[store]\npath=/s\n[user alice]\nuid=root\n"
		"[account alice/a-very-long-account-name-that-inih-would-cut-short.example]\n"
		"url = imaps://h\nlogin = x\npassword_command = true\n", "mem", &s, &err), 0);
	assert_non_null(settings_account(s, "alice",
		"a-very-long-account-name-that-inih-would-cut-short.example"));
	settings_free(&s);
	buf_release(&err);
	free(missing);
}

/* Writes n bytes to dir/name: text, then "#xxx...\n" comment lines. */
static char *write_padded(const char *name, const char *text, size_t n)
{
	char *path = xmalloc(strlen(dir) + strlen(name) + 2);
	char *body = xmalloc(n);
	size_t at = strlen(text);
	int fd;

	memcpy(body, text, at);
	memset(body + at, 'x', n - at);
	for (size_t i = at; i < n; i += 100)
		body[i] = '#';
	for (size_t i = at + 99; i < n; i += 100)
		body[i] = '\n';
	body[n - 1] = '\n';
	sprintf(path, "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, body, n), (ssize_t)n);
	close(fd);
	free(body);
	return path;
}

/* The cap, and a file whose size fstat does not tell (read as it grows). */
static void test_file_size(void **state)
{
	struct settings *s = NULL;
	struct buf err = BUF_INIT(4096);
	char *path, want[256];

	(void)state;
	path = write_padded("big.conf", "[store]\npath = /s\n", CONFIG_FILE_MAX);
	assert_int_equal(config_load(path, &s, &err), 0);
	assert_string_equal(s->store_path, "/s");
	settings_free(&s);
	free(path);

	path = write_padded("big.conf", "[store]\npath = /s\n", CONFIG_FILE_MAX + 1);
	assert_int_equal(config_load(path, &s, &err), -EINVAL);
	snprintf(want, sizeof(want), "%s: larger than %d bytes; is this a config file?", path,
		 CONFIG_FILE_MAX);
	assert_string_equal(err.data, want);
	assert_null(s);
	unlink(path);
	free(path);

	/* a regular file of size 0 with text in it: the text is parsed */
	assert_int_equal(config_load("/proc/self/status", &s, &err), -EINVAL);
	assert_non_null(strstr(err.data, "/proc/self/status:1: Name: before any section"));
	buf_release(&err);
}

/* 10,000 users and accounts: each found by name, a repeat still named. */
static void test_many_sections(void **state)
{
	enum { N = 10000 };
	struct settings *s = NULL;
	struct buf text = BUF_INIT(8u << 20), err = BUF_INIT(4096);
	char user[32], name[32];
	size_t end;

	(void)state;
	buf_appends(&text, "[store]\npath = /s\n");
	for (int i = 0; i < N; i++)
		buf_printf(&text, "[user u%05d]\nuid = root\n", i);
	for (int i = 0; i < N; i++)
		buf_printf(&text, "[account u%05d/a%d]\nurl = imaps://h%d\nlogin = x\n"
			   "password_command = true\n", i, i % 3, i);
	assert_int_equal(config_parse_string(text.data, "mem", &s, &err), 0);
	assert_int_equal(s->n_users, N);
	assert_int_equal(s->n_accounts, N);
	for (int i = 0; i < N; i++) {
		snprintf(user, sizeof(user), "u%05d", i);
		snprintf(name, sizeof(name), "a%d", i % 3);
		assert_ptr_equal(settings_user(s, user), &s->users[i]);
		assert_ptr_equal(settings_account(s, user, name), &s->accounts[i]);
		assert_int_equal(s->accounts[i].uid, 0);
		snprintf(name, sizeof(name), "a%d", (i + 1) % 3);
		assert_null(settings_account(s, user, name));
	}
	assert_null(settings_user(s, "u10000"));
	assert_null(settings_user(s, "u0000"));
	settings_free(&s);

	end = text.len;
	buf_appends(&text, "[account u09999/a0]\n");
	assert_int_equal(config_parse_string(text.data, "mem", &s, &err), -EINVAL);
	assert_string_equal(err.data, "mem:60003: [account u09999/a0]: given twice (first at line 59999)");
	text.len = end;
	buf_appends(&text, "[user u00000]\n");
	assert_int_equal(config_parse_string(text.data, "mem", &s, &err), -EINVAL);
	assert_string_equal(err.data, "mem:60003: [user u00000]: given twice (first at line 3)");
	buf_release(&text);
	buf_release(&err);
}

static void test_default_path(void **state)
{
	char out[4096], small[8];

	(void)state;
	setenv("MAILDISK_CONFIG", "/x/y.conf", 1);
	assert_int_equal(config_default_path(out, sizeof(out)), 0);
	assert_string_equal(out, "/x/y.conf");
	assert_int_equal(config_default_path(small, sizeof(small)), -ENAMETOOLONG);
	unsetenv("MAILDISK_CONFIG");
	assert_int_equal(config_default_path(out, sizeof(out)), 0);
	if (geteuid() == 0) {
		assert_string_equal(out, "/etc/maildisk.conf");
	} else {
		char want[4096];
		snprintf(want, sizeof(want), "%s/.config/maildisk/config", getenv("HOME"));
		assert_string_equal(out, want);
	}
}

/* ---- secret_get ---- */

static struct account_settings work_account(void)
{
	struct account_settings a = { .user = "alice", .name = "work" };
	return a;
}

static void test_secret_sources(void **state)
{
	struct buf err = BUF_INIT(4096);
	struct account_settings a;
	char *sec = NULL;
	char *pw_secret = expand("@D@/pw.secret");
	char *pw_world = expand("@D@/pw.world");
	char *pw_empty = expand("@D@/pw.empty");
	char *pw_link = expand("@D@/pw.link");

	(void)state;
	a = work_account();
	a.password = "inline pw";
	assert_int_equal(secret_get(&a, &sec, &err), 0);
	assert_string_equal(sec, "inline pw");
	free(sec);

	a = work_account();
	a.password_file = pw_secret;
	assert_int_equal(secret_get(&a, &sec, &err), 0);
	assert_string_equal(sec, "s3cret pass");           /* first line, no \r\n */
	explicit_bzero(sec, strlen(sec));
	free(sec);

	a.password_file = pw_world;                          /* re-checked at read time */
	assert_int_equal(secret_get(&a, &sec, &err), -EPERM);
	assert_null(sec);
	assert_non_null(strstr(err.data, "alice/work: password_file "));
	assert_non_null(strstr(err.data, "open to group or others (mode 0644); run: chmod 600 "));
	assert_null(strstr(err.data, "s3cret"));

	a.password_file = pw_empty;
	assert_int_equal(secret_get(&a, &sec, &err), -ENODATA);
	assert_non_null(strstr(err.data, "first line is empty"));

	/* a link to a file that passes every check: refused, not followed */
	a.password_file = pw_link;
	assert_int_equal(symlink(pw_secret, pw_link), 0);
	assert_int_equal(secret_get(&a, &sec, &err), -ELOOP);
	assert_null(sec);
	assert_non_null(strstr(err.data, "alice/work: password_file "));
	assert_non_null(strstr(err.data, "pw.link is a symbolic link"));
	assert_null(strstr(err.data, "s3cret"));
	unlink(pw_link);

	a = work_account();
	assert_int_equal(secret_get(&a, &sec, &err), -EINVAL);
	assert_string_equal(err.data, "alice/work: no password, password_file, password_command or "
				      "oauth2_token_command configured");
	buf_release(&err);
	free(pw_secret);
	free(pw_world);
	free(pw_empty);
	free(pw_link);
}

struct cmd_case {
	const char *cmd;
	bool token;
	int rc;
	const char *secret;   /* on success */
	const char *err;      /* on failure: the whole message */
};

static const struct cmd_case cmd_cases[] = {
	{ "/bin/echo \"hunter 2\"", false, 0, "hunter 2", NULL },
	{ "  echo   'a  b'c\\ d  ", false, 0, "a  bc d", NULL },
	{ "/usr/bin/printf 'a b\\nsecond'", false, 0, "a b", NULL },
	{ "printf '%s\\r\\n' \"tok\\\\en\"", true, 0, "tok\\en", NULL },
	{ "/bin/false", false, -EIO, NULL,
	  "alice/work: password_command /bin/false: exited with status 1" },
	{ "sh -c 'echo secret-ish; exit 3'", false, -EIO, NULL,
	  "alice/work: password_command sh: exited with status 3" },
	{ "sh -c 'kill -TERM $$'", true, -EIO, NULL,
	  "alice/work: oauth2_token_command sh: killed by signal 15 (Terminated)" },
	{ "/bin/true", false, -ENODATA, NULL, "alice/work: password_command /bin/true: printed nothing" },
	{ "printf '\\n'", false, -ENODATA, NULL,
	  "alice/work: password_command printf: first line is empty" },
	{ "/nonexistent/maildisk-cmd x", false, -ENOENT, NULL,
	  "alice/work: password_command /nonexistent/maildisk-cmd: cannot run: No such file or directory" },
	{ "head -c 70000 /dev/zero", false, -EFBIG, NULL,
	  "alice/work: password_command head: printed more than 65536 bytes, killed" },
	{ "echo 'unterminated", false, -EINVAL, NULL,
	  "alice/work: password_command: no command, or an unterminated quote or backslash" },
};

static void test_secret_commands(void **state)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;

	(void)state;
	sigaction(SIGPIPE, &ign, &old);    /* as the daemon does */
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		struct account_settings a = work_account();
		struct buf err = BUF_INIT(4096);
		char *sec = (char *)1;
		int rc;

		if (c->token)
			a.oauth2_token_command = (char *)c->cmd;
		else
			a.password_command = (char *)c->cmd;
		assert_int_equal(secret_is_token(&a), c->token);
		rc = secret_get(&a, &sec, &err);
		if (rc != c->rc)
			fail_msg("command %s: rc %d, want %d (%s)", c->cmd, rc, c->rc,
				 err.data ? err.data : "");
		if (c->rc == 0) {
			assert_string_equal(sec, c->secret);
			free(sec);
		} else {
			assert_null(sec);
			assert_string_equal(err.data, c->err);
		}
		buf_release(&err);
	}
	sigaction(SIGPIPE, &old, NULL);
}

/* The daemon ignores SIGPIPE and its workers block signals; the command must
 * start with neither (a shell cannot undo an ignored SIGPIPE itself). */
static void test_secret_child_signals(void **state)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	struct account_settings a = work_account();
	struct buf err = BUF_INIT(4096);
	sigset_t block, oldmask;
	char line[256];
	unsigned long long ignored = 0, child;
	/* glibc's posix_spawn leaves its own internal signals (32, 33) ignored */
	const unsigned long long std = (1ULL << 31) - 1;
	char *sec = NULL;
	FILE *f;

	(void)state;
	sigaction(SIGPIPE, &ign, &old);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &oldmask);
	f = fopen("/proc/self/status", "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "SigIgn:", 7) == 0)
			ignored = strtoull(line + 7, NULL, 16);
	fclose(f);
	assert_true(ignored & (1ULL << (SIGPIPE - 1)));

	a.password_command = "grep SigIgn /proc/self/status";
	assert_int_equal(secret_get(&a, &sec, &err), 0);
	assert_memory_equal(sec, "SigIgn:\t", 8);
	child = strtoull(sec + 8, NULL, 16);
	/* the same ignored signals, less SIGPIPE */
	assert_int_equal(child & std, ignored & std & ~(1ULL << (SIGPIPE - 1)));
	free(sec);
	a.password_command = "grep SigBlk /proc/self/status";
	assert_int_equal(secret_get(&a, &sec, &err), 0);
	assert_string_equal(sec, "SigBlk:\t0000000000000000");
	free(sec);

	sigprocmask(SIG_SETMASK, &oldmask, NULL);
	sigaction(SIGPIPE, &old, NULL);
	buf_release(&err);
}

struct split_case {
	const char *in;
	int rc;
	const char *words[6];    /* NULL-terminated */
};

static const struct split_case split_cases[] = {
	{ "pass show mail/work", 0, { "pass", "show", "mail/work" } },
	{ "a\t\"b c\"  'd \"e' f\\ g", 0, { "a", "b c", "d \"e", "f g" } },
	{ "x \"\" ''", 0, { "x", "", "" } },
	{ "\"a\\\"b\\\\c\\d\"", 0, { "a\"b\\c\\d" } },
	{ "$HOME ~ * ; |", 0, { "$HOME", "~", "*", ";", "|" } },
	{ "", -EINVAL, { NULL } },
	{ "   ", -EINVAL, { NULL } },
	{ "a 'b", -EINVAL, { NULL } },
	{ "a \"b", -EINVAL, { NULL } },
	{ "a b\\", -EINVAL, { NULL } },
};

static void test_split_argv(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(split_cases) / sizeof(split_cases[0]); i++) {
		const struct split_case *c = &split_cases[i];
		char **argv = (char **)1;
		size_t n = 0;

		assert_int_equal(secret_split_argv(c->in, &argv), c->rc);
		if (c->rc < 0) {
			assert_null(argv);
			continue;
		}
		for (; c->words[n]; n++) {
			assert_non_null(argv[n]);
			assert_string_equal(argv[n], c->words[n]);
		}
		assert_null(argv[n]);
		secret_free_argv(&argv);
		assert_null(argv);
	}
}

/* The secret read through the loaded config, end to end. */
static void test_secret_from_config(void **state)
{
	struct settings *s = NULL;
	struct buf err = BUF_INIT(4096);
	char *path = write_file("valid.conf", valid_conf, 0600);
	char *sec = NULL;

	(void)state;
	if (nobody_uid != 65534)
		skip();
	assert_int_equal(config_load(path, &s, &err), 0);
	assert_int_equal(secret_get(settings_account(s, "alice", "work"), &sec, &err), 0);
	assert_string_equal(sec, "s3cret pass");
	free(sec);
	assert_int_equal(secret_get(settings_account(s, "bob.b", "isp"), &sec, &err), 0);
	assert_string_equal(sec, "hunter 2");
	free(sec);
	assert_int_equal(secret_get(settings_account(s, "alice", "gmail"), &sec, &err), 0);
	assert_string_equal(sec, "tok en");
	free(sec);
	assert_int_equal(secret_get(settings_account(s, "bob.b", "inline"), &sec, &err), 0);
	assert_string_equal(sec, "pa#ss;word");
	free(sec);
	settings_free(&s);
	buf_release(&err);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_full),
		cmocka_unit_test(test_defaults_minimal),
		cmocka_unit_test(test_parts_switch),
		cmocka_unit_test(test_keep_cpus_awake),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_file_size),
		cmocka_unit_test(test_many_sections),
		cmocka_unit_test(test_default_path),
		cmocka_unit_test(test_secret_sources),
		cmocka_unit_test(test_secret_commands),
		cmocka_unit_test(test_secret_child_signals),
		cmocka_unit_test(test_split_argv),
		cmocka_unit_test(test_secret_from_config),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
