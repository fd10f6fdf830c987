/* main: the maildisk command line.
 *
 *   maildisk mount  [-c FILE] [-f] [-o FUSEOPTS] MOUNTPOINT
 *   maildisk sync   [-c FILE] [--allow-mass-delete] [USER[/ACCOUNT]]
 *   maildisk status [-c FILE] [--json]
 *   maildisk check  [-c FILE] [--store]
 *   maildisk trash  [-c FILE] list | restore ID | purge
 *
 * Exit codes: 0 success, 1 a sync or check finished with errors (or held
 * deletions), 2 usage or config error. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "../cache/log.h"
#include "../cache/store.h"
#include "../fetch/imap.h"
#include "../fetch/pop3.h"
#include "../fetch/scheduler.h"
#include "../fetch/secret.h"
#include "../fetch/sync.h"
#include "config.h"
#include "json.h"
#include "mnt.h"

enum { EXIT_OK = 0, EXIT_SYNC_ERRORS = 1, EXIT_USAGE = 2 };

static const char usage_text[] =
	"usage: maildisk COMMAND [OPTIONS]\n"
	"\n"
	"  mount  [-c FILE] [-f] [-o FUSEOPTS] MOUNTPOINT\n"
	"                     sync in the background and mount the store\n"
	"  sync   [-c FILE] [--allow-mass-delete] [USER[/ACCOUNT]]\n"
	"                     sync once (asks a running mount to do it, if there is one)\n"
	"  status [-c FILE] [--json]\n"
	"                     accounts, folders, counts, last sync, errors\n"
	"  check  [-c FILE] [--store]\n"
	"                     validate the config and try each login;\n"
	"                     --store: check that the index and the files agree\n"
	"  trash  [-c FILE] list | restore ID | purge\n"
	"                     messages that vanished upstream, kept trash_days\n"
	"\n"
	"  -c FILE   config file (default: $MAILDISK_CONFIG, /etc/maildisk.conf for root,\n"
	"            ~/.config/maildisk/config otherwise)\n"
	"  -v        more log output\n"
	"  --help, --version\n";

/* Lock-free (checked below), so the signal handler may set it. */
static atomic_bool stop_flag;
_Static_assert(ATOMIC_BOOL_LOCK_FREE == 2, "the stop flag is set from a signal handler");
/* Readable once a stop was asked for: ends every network wait of a sync at
 * once (sync_opts.cancel_fd), where the flag is only seen between messages. */
static int stop_pipe[2] = { -1, -1 };

static void on_stop_signal(int sig)
{
	int saved = errno;

	(void)sig;
	atomic_store(&stop_flag, true);
	if (stop_pipe[1] >= 0 && write(stop_pipe[1], "q", 1) < 0) {
		/* full: a stop is already pending */
	}
	errno = saved;
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "maildisk: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nrun 'maildisk --help' for usage\n");
	return EXIT_USAGE;
}

/* An option every command takes, from getopt_long: -c FILE, -v, -h; any
 * other is unknown to cmd. Returns -1 to go on, or the exit code to end
 * with. */
static int common_opt(int opt, const char *cmd, const char **config_r)
{
	switch (opt) {
	case 'c':
		*config_r = optarg;
		return -1;
	case 'v':
		log_set_level(LOG_LVL_DEBUG);
		return -1;
	case 'h':
		fputs(usage_text, stdout);
		return EXIT_OK;
	}
	return usage_error("%s: unknown option", cmd);
}

/* Common options of every command: -c FILE and -v. */
struct common {
	char config_path[PATH_MAX];
	struct settings *cfg;
	struct store *st;
};

static int load(struct common *c, const char *path)
{
	struct buf err = BUF_INIT(4096);
	int rc;

	if (path)
		snprintf(c->config_path, sizeof(c->config_path), "%s", path);
	else if (config_default_path(c->config_path, sizeof(c->config_path)) < 0) {
		fprintf(stderr, "maildisk: cannot find a config: set MAILDISK_CONFIG or use -c FILE\n");
		return EXIT_USAGE;
	}
	rc = config_load(c->config_path, &c->cfg, &err);
	if (rc < 0) {
		fprintf(stderr, "maildisk: %s\n", err.data ? err.data : "cannot load the config");
		buf_release(&err);
		return EXIT_USAGE;
	}
	buf_release(&err);
	rc = store_open(c->cfg->store_path, &c->st);
	if (rc < 0) {
		fprintf(stderr, "maildisk: %s: cannot open the store %s: %s\n", c->config_path,
			c->cfg->store_path, strerror(-rc));
		settings_free(&c->cfg);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

static void unload(struct common *c)
{
	store_close(&c->st);
	settings_free(&c->cfg);
}

/* Takes the writer lock, or says who has it. */
static int lock_store(struct common *c, pid_t *holder_r)
{
	int rc = store_lock(c->st, holder_r);

	if (rc == -EWOULDBLOCK || rc == -EAGAIN)
		return 1;
	if (rc < 0) {
		fprintf(stderr, "maildisk: cannot lock the store %s: %s\n", store_root(c->st),
			strerror(-rc));
		return -1;
	}
	return 0;
}

/* The writer's start: creates or migrates the index (readers such as the
 * mount's threads open it read-only), and repairs what a writer that died
 * left behind. */
static void recover(struct common *c)
{
	struct index *ix;
	struct store_report rep = { 0 };

	size_t moved = 0;

	if (store_index_open(c->st, false, &ix) < 0)
		return;
	/* Before recovery, which must find each folder's files at its path. */
	store_migrate_layout(c->st, ix, true, &moved);
	if (store_needs_recovery(c->st)) {
		log_info("the last writer of %s did not end cleanly; checking the store",
			 store_root(c->st));
		/* store_recover says what it repaired */
		store_recover(c->st, ix, true, &rep);
	}
	index_close(&ix);
}

/* ---- sync ---- */

/* A running mount owns the store: ask it to sync now and wait until every
 * selected account has finished a sync that started after the request. */
static int sync_via_daemon(struct common *c, pid_t holder, const char *user, const char *account)
{
	struct index *ix;
	int failed = 0;
	size_t n = c->cfg->n_accounts;
	int64_t *mark = calloc(n ? n : 1, sizeof(*mark));

	if (!mark || store_index_open(c->st, true, &ix) < 0) {
		free(mark);
		return EXIT_SYNC_ERRORS;
	}
	/* The answer is a sync that starts after the request: one whose audit
	 * row is newer than the newest row now. */
	for (size_t i = 0; i < n; i++) {
		int64_t started, finished;
		char *error = NULL;

		index_sync_last(ix, c->cfg->accounts[i].user, c->cfg->accounts[i].name, &mark[i],
				&started, &finished, &error);
		free(error);
	}
	if (kill(holder, SIGUSR1) < 0) {
		fprintf(stderr, "maildisk: the store is held by process %d, which cannot be "
			"signalled: %s\n", (int)holder, strerror(errno));
		index_close(&ix);
		free(mark);
		return EXIT_SYNC_ERRORS;
	}
	fprintf(stderr, "maildisk: asked the running mount (pid %d) to sync; waiting\n",
		(int)holder);
	for (size_t i = 0; i < n; i++) {
		const struct account_settings *a = &c->cfg->accounts[i];
		int64_t id = 0, started = 0, finished = 0;
		char *error = NULL;

		if ((user && strcmp(a->user, user)) || (account && strcmp(a->name, account)))
			continue;
		for (int waited = 0; waited < 3600 * 10 && !atomic_load(&stop_flag); waited++) {
			free(error);
			error = NULL;
			if (index_sync_last(ix, a->user, a->name, &id, &started, &finished,
					    &error) == 0 && id > mark[i] && finished)
				break;
			usleep(100 * 1000);
		}
		if (error) {
			fprintf(stderr, "maildisk: %s/%s: %s\n", a->user, a->name, error);
			failed = 1;
		}
		free(error);
	}
	index_close(&ix);
	free(mark);
	return failed ? EXIT_SYNC_ERRORS : EXIT_OK;
}

/* The sync of `maildisk sync` in this process, the store lock held: runs
 * the matching accounts once and prints a line per account (every line on
 * a terminal, else only those with errors or held deletions). */
static int sync_here(struct common *c, const char *user, const char *account, bool allow)
{
	int rc;

	recover(c);

	struct sync_result *res = calloc(c->cfg->n_accounts, sizeof(*res));
	bool *ran = calloc(c->cfg->n_accounts, sizeof(*ran));
	struct sync_opts o = { .allow_mass_delete = allow, .progress = isatty(STDERR_FILENO),
			       .stop = &stop_flag, .cancel_fd = stop_pipe[0] };
	if (!res || !ran) {
		fprintf(stderr, "maildisk: out of memory\n");
		rc = EXIT_SYNC_ERRORS;
		goto out;
	}
	sched_run_once(c->st, c->cfg, user, account, &o, res, ran);
	rc = EXIT_OK;
	for (size_t i = 0; i < c->cfg->n_accounts; i++) {
		const struct account_settings *a = &c->cfg->accounts[i];

		if (!ran[i])
			continue;
		if (res[i].status != FETCH_OK || res[i].n_held)
			rc = EXIT_SYNC_ERRORS;
		if (isatty(STDOUT_FILENO) || res[i].status != FETCH_OK || res[i].n_held)
			printf("%s/%s: %s: %" PRId64 " new, %" PRId64 " moved to trash%s%s%s\n",
			       a->user, a->name, fetch_status_str(res[i].status), res[i].n_new,
			       res[i].n_trashed, res[i].n_held ? ", deletions held (see maildisk status)" : "",
			       res[i].error[0] ? ": " : "", res[i].error);
	}
out:
	free(res);
	free(ran);
	return rc;
}

static int cmd_sync(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "allow-mass-delete", no_argument, NULL, 'M' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *config = NULL;
	bool allow = false;
	char *user = NULL, *account = NULL;
	struct common c = { 0 };
	int opt, rc;
	pid_t holder = 0;

	while ((opt = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		if (opt == 'M')
			allow = true;
		else if ((rc = common_opt(opt, "sync", &config)) >= 0)
			return rc;
	}
	if (optind < argc) {
		user = strdup(argv[optind]);
		char *slash = strchr(user, '/');
		if (slash) {
			*slash = '\0';
			account = slash + 1;
		}
		if (optind + 1 < argc) {
			free(user);
			return usage_error("sync: unexpected argument '%s'", argv[optind + 1]);
		}
	}
	if ((rc = load(&c, config)) != EXIT_OK) {
		free(user);
		return rc;
	}
	size_t n_match = 0;
	for (size_t i = 0; i < c.cfg->n_accounts; i++)
		n_match += (!user || strcmp(c.cfg->accounts[i].user, user) == 0) &&
			   (!account || strcmp(c.cfg->accounts[i].name, account) == 0);
	if (n_match == 0) {
		fprintf(stderr, "maildisk: %s: no account matches '%s%s%s'\n", c.config_path,
			user ? user : "", account ? "/" : "", account ? account : "");
		unload(&c);
		free(user);
		return EXIT_USAGE;
	}
	rc = lock_store(&c, &holder);
	if (rc == 1) {
		if (allow)
			fprintf(stderr, "maildisk: --allow-mass-delete is not passed to a running "
				"mount; stop it and run 'maildisk sync --allow-mass-delete'\n");
		rc = holder > 0 ? sync_via_daemon(&c, holder, user, account) : EXIT_SYNC_ERRORS;
		if (holder <= 0)
			fprintf(stderr, "maildisk: the store is locked by another process\n");
		unload(&c);
		free(user);
		return rc;
	}
	if (rc < 0) {
		unload(&c);
		free(user);
		return EXIT_SYNC_ERRORS;
	}
	rc = sync_here(&c, user, account, allow);
	unload(&c);
	free(user);
	return rc;
}

/* The options of status, check and trash: -c FILE, -h, --store where
 * store_r is not NULL and --json where json_r is not NULL. Returns -1 to go
 * on, or the exit code to end with. */
static int simple_opts(int argc, char **argv, const char *cmd, const char **config_r,
		       bool *store_r, bool *json_r)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "store", no_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'J' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	int opt, rc;

	*config_r = NULL;
	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (opt == 'S' && store_r)
			*store_r = true;
		else if (opt == 'J' && json_r)
			*json_r = true;
		else if ((rc = common_opt(opt, cmd, config_r)) >= 0)
			return rc;
	}
	return -1;
}

/* ---- status ---- */

static void fmt_time(int64_t t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0) {
		snprintf(out, n, "never");
		return;
	}
	localtime_r(&tt, &tm);
	strftime(out, n, "%Y-%m-%d %H:%M", &tm);
}

/* `maildisk status --json`: the same facts as the table, for monitoring.
 * Times are Unix seconds or null (never); "ok" is false when an account's
 * last sync or a folder has an error, or deletions are held. */
static int status_json(struct common *c, struct index *ix, pid_t holder)
{
	struct buf out = BUF_INIT(64u << 20);
	bool ok = true;
	int rc;

	rc = buf_appends(&out, "{\"store\":");
	rc = rc ?: json_append_cstr(&out, store_root(c->st));
	rc = rc ?: buf_printf(&out, ",\"mounted\":%s,\"pid\":", holder > 0 ? "true" : "false");
	rc = rc ?: (holder > 0 ? buf_printf(&out, "%d", (int)holder) : buf_appends(&out, "null"));
	rc = rc ?: buf_appends(&out, ",\"accounts\":[");
	for (size_t i = 0; rc == 0 && i < c->cfg->n_accounts; i++) {
		const struct account_settings *a = &c->cfg->accounts[i];
		struct index_folder *fs = NULL;
		size_t n = 0;
		int64_t started = 0, finished = 0;
		char *error = NULL;

		index_sync_last(ix, a->user, a->name, NULL, &started, &finished, &error);
		rc = index_folder_list(ix, a->user, a->name, &fs, &n);
		if (rc < 0) {
			fprintf(stderr, "maildisk: %s/%s: cannot list folders: %s\n", a->user, a->name,
				index_strerror(rc));
			free(error);
			buf_release(&out);
			return EXIT_SYNC_ERRORS;
		}
		ok = ok && !error;
		rc = buf_appends(&out, i ? ",{\"user\":" : "{\"user\":");
		rc = rc ?: json_append_cstr(&out, a->user);
		rc = rc ?: buf_appends(&out, ",\"account\":");
		rc = rc ?: json_append_cstr(&out, a->name);
		rc = rc ?: buf_appends(&out, ",\"url\":");
		rc = rc ?: json_append_cstr(&out, a->url);
		rc = rc ?: buf_appends(&out, ",\"last_sync_started\":");
		rc = rc ?: json_append_time(&out, started);
		rc = rc ?: buf_appends(&out, ",\"last_sync_finished\":");
		rc = rc ?: json_append_time(&out, finished);
		rc = rc ?: buf_appends(&out, ",\"error\":");
		rc = rc ?: json_append_cstr(&out, error);
		rc = rc ?: buf_appends(&out, ",\"folders\":[");
		for (size_t j = 0; rc == 0 && j < n; j++) {
			ok = ok && !fs[j].last_error && !fs[j].held;
			rc = buf_appends(&out, j ? ",{\"name\":" : "{\"name\":");
			rc = rc ?: json_append_cstr(&out, fs[j].name);
			rc = rc ?: buf_printf(&out, ",\"messages\":%" PRId64 ",\"trashed\":%" PRId64
					      ",\"synced_at\":", fs[j].n_active, fs[j].n_trashed);
			rc = rc ?: json_append_time(&out, fs[j].synced_at);
			rc = rc ?: buf_appends(&out, ",\"error\":");
			rc = rc ?: json_append_cstr(&out, fs[j].last_error);
			rc = rc ?: buf_appends(&out, ",\"held\":");
			rc = rc ?: json_append_cstr(&out, fs[j].held);
			rc = rc ?: buf_appendc(&out, '}');
		}
		rc = rc ?: buf_appends(&out, "]}");
		free(error);
		index_folder_array_free(&fs, n);
	}
	rc = rc ?: buf_printf(&out, "],\"ok\":%s}\n", ok ? "true" : "false");
	if (rc < 0) {
		fprintf(stderr, "maildisk: status --json: %s\n", index_strerror(rc));
		buf_release(&out);
		return EXIT_SYNC_ERRORS;
	}
	fwrite(out.data, 1, out.len, stdout);
	buf_release(&out);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_SYNC_ERRORS;
}

/* Prints text from a server (a folder name) padded with spaces to width columns,
 * counting columns as the terminal does (wcwidth: "Äpfel" is 5, "日本語" 6),
 * not bytes. A character the terminal would act on instead of showing (C0,
 * DEL, C1) and a byte that is not UTF-8 print as '?'. */
static void print_name_padded(const char *name, int width)
{
	mbstate_t mbs = { 0 };
	size_t len = strlen(name);
	int used = 0;

	for (size_t i = 0; i < len;) {
		wchar_t wc;
		size_t n = mbrtowc(&wc, name + i, len - i, &mbs);
		int w = n == (size_t)-1 || n == (size_t)-2 || n == 0 ? -1 : wcwidth(wc);

		if (w < 0) {
			putchar('?');
			memset(&mbs, 0, sizeof mbs);
			i++;
			used++;
			continue;
		}
		fwrite(name + i, 1, n, stdout);
		i += n;
		used += w;
	}
	printf("%*s", width > used ? width - used : 0, "");
}

static int cmd_status(int argc, char **argv)
{
	const char *config;
	struct common c = { 0 };
	struct index *ix;
	bool json = false, failed = false;
	int rc;

	if ((rc = simple_opts(argc, argv, "status", &config, NULL, &json)) >= 0)
		return rc;
	/* Folder names are UTF-8 whatever the locale says: their widths need
	 * a UTF-8 LC_CTYPE (C.UTF-8 is built into glibc). */
	if (!setlocale(LC_CTYPE, "") || strcmp(nl_langinfo(CODESET), "UTF-8") != 0)
		setlocale(LC_CTYPE, "C.UTF-8");
	if ((rc = load(&c, config)) != EXIT_OK)
		return rc;
	rc = store_index_open(c.st, true, &ix);
	if (rc < 0) {
		fprintf(stderr, "maildisk: cannot open the index in %s: %s\n", store_root(c.st),
			index_strerror(rc));
		unload(&c);
		return EXIT_SYNC_ERRORS;
	}
	pid_t holder = store_lock_holder(c.st);
	if (json) {
		rc = status_json(&c, ix, holder);
		index_close(&ix);
		unload(&c);
		return rc;
	}
	printf("store %s%s", store_root(c.st), holder > 0 ? "" : "\n");
	if (holder > 0)
		printf(" (mounted, pid %d)\n", (int)holder);
	for (size_t i = 0; i < c.cfg->n_accounts; i++) {
		const struct account_settings *a = &c.cfg->accounts[i];
		struct index_folder *fs = NULL;
		size_t n = 0;
		int64_t started = 0, finished = 0;
		char *error = NULL, when[32];

		index_sync_last(ix, a->user, a->name, NULL, &started, &finished, &error);
		fmt_time(finished, when, sizeof(when));
		printf("\n%s/%s  %s  last sync %s%s%s\n", a->user, a->name, a->url,
		       started ? when : "never", error ? "  ERROR: " : "", error ? error : "");
		free(error);
		if ((rc = index_folder_list(ix, a->user, a->name, &fs, &n)) < 0) {
			fprintf(stderr, "maildisk: %s/%s: cannot list folders: %s\n", a->user, a->name,
				index_strerror(rc));
			failed = true;
			continue;
		}
		for (size_t j = 0; j < n; j++) {
			fmt_time(fs[j].synced_at, when, sizeof(when));
			printf("  ");
			print_name_padded(fs[j].name, 24);
			printf(" %7" PRId64 " messages %5" PRId64 " in trash  synced %s\n",
			       fs[j].n_active, fs[j].n_trashed, when);
			if (fs[j].last_error)
				printf("    error: %s\n", fs[j].last_error);
			if (fs[j].held)
				printf("    deletions held: %s\n", fs[j].held);
			char *note = NULL;
			if (index_folder_note(ix, fs[j].id, &note) == 0 && note) {
				printf("    warning: ");
				print_name_padded(note, 0);
				putchar('\n');
			}
			free(note);
		}
		index_folder_array_free(&fs, n);
	}
	index_close(&ix);
	unload(&c);
	return failed ? EXIT_SYNC_ERRORS : EXIT_OK;
}

/* ---- check ---- */

static int check_store(struct common *c)
{
	struct index *ix;
	struct store_report rep = { 0 };
	pid_t holder = 0;
	int rc = lock_store(c, &holder);

	if (rc == 1) {
		fprintf(stderr, "maildisk: the store is in use by process %d; its check runs "
			"against a moving target: stop it first\n", (int)holder);
		return EXIT_SYNC_ERRORS;
	}
	if (rc < 0 || store_index_open(c->st, true, &ix) < 0)
		return EXIT_SYNC_ERRORS;
	size_t old_layout = 0;

	rc = store_migrate_layout(c->st, ix, false, &old_layout);
	if (rc == 0)
		rc = store_recover(c->st, ix, false, &rep);
	index_close(&ix);
	if (rc < 0) {
		fprintf(stderr, "maildisk: store check failed: %s\n", index_strerror(rc));
		return EXIT_SYNC_ERRORS;
	}
	printf("store %s\n"
	       "  partial files in tmp/:              %zu\n"
	       "  files in cur/ with no index row:     %zu\n"
	       "  unfinished moves to trash:           %zu\n"
	       "  index rows whose file is missing:    %zu\n"
	       "  index rows whose size is wrong:      %zu\n"
	       "  folders to move to their own place:  %zu\n",
	       store_root(c->st), rep.tmp_removed, rep.orphans_removed, rep.trash_completed,
	       rep.rows_missing_file, rep.size_mismatch, old_layout);
	bool clean = !rep.tmp_removed && !rep.orphans_removed && !rep.trash_completed &&
		     !rep.rows_missing_file && !rep.size_mismatch && !old_layout;
	printf("%s\n", clean ? "the index and the files agree"
			     : "disagreements found: a sync or mount that starts after one that did "
			       "not end cleanly repairs them; otherwise they are left as they are");
	return clean ? EXIT_OK : EXIT_SYNC_ERRORS;
}

static int cmd_check(int argc, char **argv)
{
	const char *config;
	bool store_only = false;
	struct common c = { 0 };
	int rc, failed = 0;

	if ((rc = simple_opts(argc, argv, "check", &config, &store_only, NULL)) >= 0)
		return rc;
	if ((rc = load(&c, config)) != EXIT_OK)
		return rc;
	if (store_only) {
		rc = check_store(&c);
		unload(&c);
		return rc;
	}
	printf("config %s: ok (%zu users, %zu accounts)\n\n", c.config_path, c.cfg->n_users,
	       c.cfg->n_accounts);
	printf("%-24s %-6s %-9s %-6s %-8s %s\n", "ACCOUNT", "PROTO", "TLS", "LOGIN", "FOLDERS",
	       "ERROR");
	for (size_t i = 0; i < c.cfg->n_accounts; i++) {
		const struct account_settings *a = &c.cfg->accounts[i];
		struct buf err = BUF_INIT(1024);
		char *secret = NULL, label[160], folders[16] = "-";
		const char *login = "failed";
		bool imap = a->proto == PROTO_IMAP || a->proto == PROTO_IMAPS;
		const char *tls = a->tls_off ? "OFF" : (a->proto == PROTO_IMAPS || a->proto == PROTO_POP3S)
							? "implicit" : "STARTTLS";

		snprintf(label, sizeof(label), "%s/%s", a->user, a->name);
		if (secret_get(a, &secret, &err) == 0 && imap) {
			struct imap *s = NULL;
			enum fetch_retry retry;

			buf_reset(&err);
			if (imap_open(a, secret, secret_is_token(a), -1, &s, &retry, &err) == FETCH_OK) {
				struct imap_mailbox *mbs;
				size_t n;

				login = "ok";
				if (imap_list(s, &mbs, &n) == FETCH_OK) {
					snprintf(folders, sizeof(folders), "%zu", n);
					imap_mailboxes_free(mbs, n);
				} else {
					buf_printf(&err, "%s", imap_error(s));
				}
				imap_close(&s);
			}
		} else if (secret) {
			struct pop3 *s = NULL;
			enum fetch_retry retry;
			uint32_t count;

			buf_reset(&err);
			if (pop3_open(a, secret, secret_is_token(a), -1, &s, &count, &retry, &err) ==
			    FETCH_OK) {
				login = "ok";
				/* one mailbox; say how many messages it holds */
				snprintf(folders, sizeof(folders), "1 (%" PRIu32 ")", count);
				pop3_close(&s);
			}
		}
		if (secret) {
			explicit_bzero(secret, strlen(secret));
			free(secret);
		}
		if (strcmp(login, "failed") == 0)
			failed = 1;
		printf("%-24s %-6s %-9s %-6s %-8s %s\n", label, imap ? "IMAP" : "POP3", tls, login,
		       folders, err.data ? err.data : "");
		buf_release(&err);
	}
	unload(&c);
	return failed ? EXIT_SYNC_ERRORS : EXIT_OK;
}

/* ---- trash ---- */

struct trash_list {
	struct index *ix;
	size_t n;
};

static int print_trashed(void *ctx, const struct index_msg *m)
{
	struct trash_list *t = ctx;
	struct index_folder f = { 0 };
	char when[32];

	fmt_time(m->trashed_at, when, sizeof(when));
	index_folder_get(t->ix, m->folder_id, &f);
	printf("%" PRId64 "\t%s\t%s/%s/%s\t%s\t%s\n", m->id, when, f.user ? f.user : "?",
	       f.account ? f.account : "?", f.name ? f.name : "?", m->view_name,
	       m->trash_reason ? m->trash_reason : "");
	index_folder_release(&f);
	t->n++;
	return 0;
}

static int cmd_trash(int argc, char **argv)
{
	const char *config;
	struct common c = { 0 };
	struct index *ix = NULL;
	int rc;
	pid_t holder = 0;

	if ((rc = simple_opts(argc, argv, "trash", &config, NULL, NULL)) >= 0)
		return rc;
	if (optind >= argc)
		return usage_error("trash: say list, restore ID or purge%s", "");
	const char *verb = argv[optind];
	bool list = strcmp(verb, "list") == 0, restore = strcmp(verb, "restore") == 0,
	     purge = strcmp(verb, "purge") == 0;
	if (!list && !restore && !purge)
		return usage_error("trash: unknown action '%s' (list, restore ID, purge)", verb);
	if (restore && optind + 1 >= argc)
		return usage_error("trash restore: which ID? (see 'maildisk trash list')%s", "");
	if ((rc = load(&c, config)) != EXIT_OK)
		return rc;
	if (!list) {
		rc = lock_store(&c, &holder);
		if (rc != 0) {
			if (rc == 1)
				fprintf(stderr, "maildisk: the store is in use by 'maildisk mount' "
					"(pid %d); unmount it, then run this again\n", (int)holder);
			unload(&c);
			return EXIT_SYNC_ERRORS;
		}
	}
	rc = store_index_open(c.st, list, &ix);
	if (rc < 0) {
		fprintf(stderr, "maildisk: cannot open the index: %s\n", index_strerror(rc));
		unload(&c);
		return EXIT_SYNC_ERRORS;
	}
	if (list) {
		struct trash_list t = { .ix = ix };

		rc = index_trash_foreach(ix, NULL, print_trashed, &t);
		if (t.n == 0 && rc == 0)
			printf("the trash is empty\n");
		rc = rc < 0 ? EXIT_SYNC_ERRORS : EXIT_OK;
	} else if (restore) {
		char *end;
		long long id = strtoll(argv[optind + 1], &end, 10);

		if (*end || id <= 0) {
			fprintf(stderr, "maildisk: trash restore: '%s' is not an ID from "
				"'maildisk trash list'\n", argv[optind + 1]);
			rc = EXIT_USAGE;
		} else if ((rc = store_restore(c.st, ix, id)) < 0) {
			fprintf(stderr, "maildisk: trash restore %lld: %s\n", id,
				rc == -ENOENT ? "no such message in the trash" : index_strerror(rc));
			rc = EXIT_SYNC_ERRORS;
		} else {
			printf("restored %lld; it stays in its folder from now on, whatever the "
			       "server does\n", id);
			rc = EXIT_OK;
		}
	} else {
		size_t n = 0;
		int64_t cutoff = (int64_t)time(NULL) - (int64_t)c.cfg->trash_days * 86400;

		rc = store_purge(c.st, ix, cutoff, &n);
		if (rc < 0) {
			fprintf(stderr, "maildisk: trash purge: %s\n", index_strerror(rc));
			rc = EXIT_SYNC_ERRORS;
		} else {
			printf("purged %zu message(s) trashed more than %d days ago\n", n,
			       c.cfg->trash_days);
			rc = EXIT_OK;
		}
	}
	index_close(&ix);
	unload(&c);
	return rc;
}

/* ---- mount ---- */

static int cmd_mount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *config = NULL, *fuse_opts = NULL;
	bool foreground = false;
	struct common c = { 0 };
	int opt, rc;
	pid_t holder = 0;

	while ((opt = getopt_long(argc, argv, "c:fo:vh", opts, NULL)) != -1) {
		if (opt == 'f')
			foreground = true;
		else if (opt == 'o')
			fuse_opts = optarg;
		else if ((rc = common_opt(opt, "mount", &config)) >= 0)
			return rc;
	}
	if (optind + 1 != argc)
		return usage_error("mount: give exactly one MOUNTPOINT%s", "");
	if ((rc = load(&c, config)) != EXIT_OK)
		return rc;
	rc = lock_store(&c, &holder);
	if (rc != 0) {
		if (rc == 1)
			fprintf(stderr, "maildisk: the store %s is already in use by process %d "
				"(another 'maildisk mount' or 'maildisk sync'); one writer per store\n",
				store_root(c.st), (int)holder);
		unload(&c);
		return EXIT_SYNC_ERRORS;
	}
	recover(&c);
	struct mnt_opts mo = { .mountpoint = argv[optind], .foreground = foreground,
			       .fuse_opts = fuse_opts, .sync = true };
	rc = mnt_run(c.st, c.cfg, &mo);
	unload(&c);
	return rc == 0 ? EXIT_OK : EXIT_SYNC_ERRORS;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "mount", cmd_mount }, { "sync", cmd_sync }, { "status", cmd_status },
		{ "check", cmd_check }, { "trash", cmd_trash },
	};
	struct sigaction sa = { .sa_handler = on_stop_signal };

	log_init("maildisk", false, LOG_LVL_INFO);
	if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		stop_pipe[0] = stop_pipe[1] = -1;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("maildisk %s\n", MAILDISK_VERSION);
		return EXIT_OK;
	}
	/* Before any thread: libcurl's global state, GMime, and no SIGPIPE
	 * from a server that hangs up (the write reports it instead). */
	signal(SIGPIPE, SIG_IGN);
	if (sync_global_init() < 0) {
		fprintf(stderr, "maildisk: cannot initialise libcurl\n");
		return EXIT_SYNC_ERRORS;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name) == 0) {
			int rc = cmds[i].fn(argc - 1, argv + 1);

			sync_global_cleanup();
			return rc;
		}
	}
	sync_global_cleanup();
	return usage_error("unknown command '%s'", argv[1]);
}
