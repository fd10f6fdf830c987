/* settings: freeing and looking up the config tree (see settings.h). The
 * parser that fills it is fs/config.c; it files each section in the name
 * maps here as it adds it. */
#include "settings.h"

#include <errno.h>
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
	free(s->user_map.slot);
	free(s->account_map.slot);
	free(s);
	*sp = NULL;
}

/* FNV-1a over user, a '/' (never in a name) and name, if any. */
static uint64_t name_hash(const char *user, size_t un, const char *name, size_t nn)
{
	uint64_t h = 0xcbf29ce484222325u;

	for (size_t i = 0; i < un; i++)
		h = (h ^ (unsigned char)user[i]) * 0x100000001b3u;
	if (name) {
		h = (h ^ '/') * 0x100000001b3u;
		for (size_t i = 0; i < nn; i++)
			h = (h ^ (unsigned char)name[i]) * 0x100000001b3u;
	}
	return h;
}

static bool same(const char *s, const char *p, size_t n)
{
	return strncmp(s, p, n) == 0 && s[n] == '\0';
}

static uint64_t hash_at(const struct settings *s, bool account, size_t i)
{
	if (account)
		return name_hash(s->accounts[i].user, strlen(s->accounts[i].user),
				 s->accounts[i].name, strlen(s->accounts[i].name));
	return name_hash(s->users[i].name, strlen(s->users[i].name), NULL, 0);
}

/* Puts index i into m's first free slot after its hash; m has room. */
static void map_place(struct settings_map *m, uint64_t h, size_t i)
{
	size_t k = (size_t)h & (m->cap - 1);

	while (m->slot[k])
		k = (k + 1) & (m->cap - 1);
	m->slot[k] = (uint32_t)(i + 1);
	m->used++;
}

/* Half full at most, so that probes stay short. */
static int map_add(struct settings *s, bool account, size_t i)
{
	struct settings_map *m = account ? &s->account_map : &s->user_map;

	if (i >= UINT32_MAX)
		return -ENOMEM;
	if ((m->used + 1) * 2 > m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 64;
		uint32_t *old = m->slot, *slot = calloc(cap, sizeof(*slot));
		size_t old_cap = m->cap;

		if (!slot)
			return -ENOMEM;
		m->slot = slot;
		m->cap = cap;
		m->used = 0;
		for (size_t k = 0; k < old_cap; k++)
			if (old[k])
				map_place(m, hash_at(s, account, old[k] - 1), old[k] - 1);
		free(old);
	}
	map_place(m, hash_at(s, account, i), i);
	return 0;
}

int settings_map_user(struct settings *s, size_t i)
{
	return map_add(s, false, i);
}

int settings_map_account(struct settings *s, size_t i)
{
	return map_add(s, true, i);
}

long settings_user_index(const struct settings *s, const char *name, size_t n)
{
	const struct settings_map *m = &s->user_map;

	if (!m->cap)
		return -1;
	for (size_t k = (size_t)name_hash(name, n, NULL, 0) & (m->cap - 1); m->slot[k];
	     k = (k + 1) & (m->cap - 1))
		if (same(s->users[m->slot[k] - 1].name, name, n))
			return (long)m->slot[k] - 1;
	return -1;
}

long settings_account_index(const struct settings *s, const char *user, size_t un,
			    const char *name, size_t nn)
{
	const struct settings_map *m = &s->account_map;

	if (!m->cap)
		return -1;
	for (size_t k = (size_t)name_hash(user, un, name, nn) & (m->cap - 1); m->slot[k];
	     k = (k + 1) & (m->cap - 1)) {
		const struct account_settings *a = &s->accounts[m->slot[k] - 1];

		if (same(a->user, user, un) && same(a->name, name, nn))
			return (long)m->slot[k] - 1;
	}
	return -1;
}

const struct user_settings *settings_user(const struct settings *s, const char *name)
{
	long i;

	if (!s || !name || (i = settings_user_index(s, name, strlen(name))) < 0)
		return NULL;
	return &s->users[i];
}

const struct account_settings *settings_account(const struct settings *s,
						const char *user, const char *name)
{
	long i;

	if (!s || !user || !name ||
	    (i = settings_account_index(s, user, strlen(user), name, strlen(name))) < 0)
		return NULL;
	return &s->accounts[i];
}
