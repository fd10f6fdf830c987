/* libFuzzer target for fs/config.c: config_parse_string over any text (cut
 * at the first NUL, as a config file with a NUL is refused before parsing).
 *
 * A rejected text must leave *r NULL and one error line naming the file; an
 * accepted one must satisfy what the rest of maildisk relies on: names that
 * are safe path components, a url with a host, a login, exactly one way to
 * get the secret, a non-empty NULL-terminated folder list, values in range.
 * Commands are only split, never run; password_file and ca_file are only
 * stat'ed and opened read-only if they are regular files.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined
 *        -fno-sanitize-recover=all -D_GNU_SOURCE fs/config.c fetch/secret.c
 *        cache/log.c cache/buf.c cache/settings.c tests/fuzz/fuzz_config.c
 *        $(pkg-config --libs inih) -o fuzz_config
 * Run:   ./fuzz_config -max_total_time=60 tests/fuzz/corpus/config */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../cache/log.h"
#include "../../fs/config.h"

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

static void check_name(const char *s)
{
	size_t n = strlen(s);

	CHECK(n > 0 && n <= 255 && s[0] != '.');
	CHECK(strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@+-") == n);
}

static void check_settings(const struct settings *s)
{
	CHECK(s->path && strcmp(s->path, "fuzz.conf") == 0);
	CHECK(s->store_path && s->store_path[0] == '/');
	CHECK(s->trash_days >= 1 && s->trash_days <= 3650);
	CHECK(s->workers >= 1 && s->workers <= 64);
	for (size_t i = 0; i < s->n_users; i++) {
		check_name(s->users[i].name);
		CHECK(s->users[i].uid_name);
		CHECK(settings_user(s, s->users[i].name) == &s->users[i]);
	}
	for (size_t i = 0; i < s->n_accounts; i++) {
		const struct account_settings *a = &s->accounts[i];
		int secrets = !!a->password + !!a->password_file + !!a->password_command +
			      !!a->oauth2_token_command;

		check_name(a->user);
		check_name(a->name);
		CHECK(settings_user(s, a->user));
		CHECK(settings_account(s, a->user, a->name) == a);
		CHECK(a->url && a->host && a->host[0] && a->login && a->login[0]);
		CHECK(!strchr(a->url, '@'));
		CHECK(a->port >= 0 && a->port <= 65535);
		CHECK(secrets == 1);
		CHECK(a->folders && a->n_folders >= 1);
		for (size_t j = 0; j < a->n_folders; j++)
			CHECK(a->folders[j] && a->folders[j][0]);
		CHECK(a->folders[a->n_folders] == NULL);
		if (a->proto == PROTO_POP3 || a->proto == PROTO_POP3S)
			CHECK(a->n_folders == 1 && strcmp(a->folders[0], "INBOX") == 0);
		CHECK(a->interval >= 10 && a->timeout >= 5 && a->timeout <= 3600);
		CHECK(!a->tls_off || a->proto == PROTO_IMAP || a->proto == PROTO_POP3);
		CHECK(a->mass_delete_limit >= 0 && a->mass_delete_limit <= 1);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_init("fuzz_config", false, LOG_LVL_ERROR);   /* no tls = off warnings */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct settings *s = (struct settings *)1;
	struct buf err = BUF_INIT(1 << 16);
	char *text = malloc(size + 1);
	int rc;

	CHECK(text);
	memcpy(text, data, size);
	text[size] = '\0';
	rc = config_parse_string(text, "fuzz.conf", &s, &err);
	if (rc == 0) {
		CHECK(s);
		check_settings(s);
	} else {
		CHECK(rc == -EINVAL || rc == -ENOMEM);
		CHECK(s == NULL);
		CHECK(err.data && strncmp(err.data, "fuzz.conf:", 10) == 0);
		CHECK(!strpbrk(err.data, "\n\r"));
	}
	settings_free(&s);
	buf_release(&err);
	free(text);
	return 0;
}
