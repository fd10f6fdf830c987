/* settings: freeing and looking up the config tree (see settings.h). The
 * parser that fills it is fs/config.c. */
#include "settings.h"

#include <stdlib.h>
#include <string.h>

/* Secrets are wiped before their memory goes back to the allocator. */
static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static void user_release(struct user_settings *u)
{
	free(u->name);
	free(u->uid_name);
	free(u->on_change);
}

static void account_release(struct account_settings *a)
{
	free(a->user);
	free(a->name);
	free(a->url);
	free(a->host);
	free(a->login);
	free(a->password_command);
	free(a->password_file);
	free_secret(a->password);
	free(a->oauth2_token_command);
	if (a->folders) {
		for (char **f = a->folders; *f; f++)
			free(*f);
		free(a->folders);
	}
	free(a->ca_file);
}

void settings_free(struct settings **sp)
{
	struct settings *s;

	if (!sp || !*sp)
		return;
	s = *sp;
	free(s->path);
	free(s->store_path);
	for (size_t i = 0; i < s->n_users; i++)
		user_release(&s->users[i]);
	free(s->users);
	for (size_t i = 0; i < s->n_accounts; i++)
		account_release(&s->accounts[i]);
	free(s->accounts);
	free(s);
	*sp = NULL;
}

const struct user_settings *settings_user(const struct settings *s, const char *name)
{
	if (!s || !name)
		return NULL;
	for (size_t i = 0; i < s->n_users; i++)
		if (s->users[i].name && strcmp(s->users[i].name, name) == 0)
			return &s->users[i];
	return NULL;
}

const struct account_settings *settings_account(const struct settings *s,
						const char *user, const char *name)
{
	if (!s || !user || !name)
		return NULL;
	for (size_t i = 0; i < s->n_accounts; i++) {
		const struct account_settings *a = &s->accounts[i];

		if (a->user && a->name && strcmp(a->user, user) == 0 &&
		    strcmp(a->name, name) == 0)
			return a;
	}
	return NULL;
}
