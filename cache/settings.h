/* settings: the plain structures the config file fills.
 *
 * Parsed by fs/config.c (inih); read by fetch/ and cache/, which must not
 * depend on the parser or on FUSE. After config_load() returns, a settings
 * tree is immutable and may be read from any thread without a lock. */
#ifndef MAILDISK_SETTINGS_H
#define MAILDISK_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum proto { PROTO_IMAP, PROTO_IMAPS, PROTO_POP3, PROTO_POP3S };

struct user_settings {
	char *name;        /* owned: section name, "[user NAME]"; a path component */
	char *uid_name;    /* owned: local account that owns /NAME ("uid =") */
	uid_t uid;         /* resolved from uid_name at load time */
	gid_t gid;
	char *on_change;   /* owned, may be NULL: command run as the user after a sync that changed mail */
	bool parts;        /* the mount shows each message's parts ("parts =", default [store] parts, yes) */
};

struct account_settings {
	char *user;        /* owned: owning user's name */
	uid_t uid;         /* the owning user's uid and gid, copied at load time: */
	gid_t gid;         /* its secret commands run as them */
	char *name;        /* owned: account name; a path component */
	char *url;         /* owned: imap://, imaps://, pop3://, pop3s:// host[:port] */
	enum proto proto;
	char *host;        /* owned: host part of url */
	int port;          /* 0: protocol default */
	char *login;       /* owned */
	char *password_command;    /* owned, may be NULL: run without a shell, first line is the secret */
	char *password_file;       /* owned, may be NULL: first line is the secret; must be 0600 */
	char *password;            /* owned, may be NULL: inline secret (config must then be 0600) */
	char *oauth2_token_command;/* owned, may be NULL: XOAUTH2 bearer token */
	char **folders;    /* owned, NULL-terminated: IMAP folders; {"*"} means all; default {"INBOX"} */
	size_t n_folders;
	int interval;      /* seconds between syncs; default 300 */
	int timeout;       /* seconds without progress before a network operation fails; default 60 */
	bool tls_off;      /* "tls = off": plaintext allowed, warned on every sync */
	char *ca_file;     /* owned, may be NULL: extra trust anchor (PEM) */
	bool mirror_deletions;     /* default true: vanished upstream -> trash */
	double mass_delete_limit;  /* fraction of a folder; default 0.5 */
	uint64_t max_message_size; /* [sync] max_message_size, copied here: larger messages are refused */
	size_t max_folders;        /* [sync] max_folders, copied here: a LIST with more fails */
};

/* Users or accounts by name: open addressing, slots hold index + 1 (0 is
 * empty), so that 10,000 sections are found without a scan each. */
struct settings_map {
	uint32_t *slot;    /* owned, cap of them */
	size_t cap, used;
};

struct settings {
	char *path;        /* owned: the file these came from */
	char *store_path;  /* owned: [store] path */
	int trash_days;    /* default 30 */
	int workers;       /* [sync] workers, default 4 */
	uint64_t max_message_size; /* [sync] default 256 MiB: see config.c */
	int max_folders;           /* [sync] default 10,000 */
	uint64_t min_free_bytes;   /* [store] min_free as a size; 0 when given as a percentage */
	double min_free_fraction;  /* [store] min_free as a fraction of the filesystem */
	bool min_free_set;         /* given; else the floor is min(1 GiB, 5%) */
	bool parts;                /* [store] parts, default yes: each user's parts unless it says */
	bool keep_cpus_awake;      /* [mount] default yes: fs/cpu_awake.h */
	struct user_settings *users;       /* owned array */
	size_t n_users;
	struct account_settings *accounts; /* owned array */
	size_t n_accounts;
	struct settings_map user_map;      /* every user, by name */
	struct settings_map account_map;   /* every account, by user and name */
};

/* Frees the tree and sets *s to NULL. Safe on NULL. */
void settings_free(struct settings **s);

/* Files users[i] or accounts[i] (its names set) under its name for the
 * lookups below; the parser calls it for each section it adds. 0 or
 * -ENOMEM. */
int settings_map_user(struct settings *s, size_t i);
int settings_map_account(struct settings *s, size_t i);
/* The index of the user or account with these names (lengths given: the
 * parser's names are not NUL-terminated), or -1. */
long settings_user_index(const struct settings *s, const char *name, size_t n);
long settings_account_index(const struct settings *s, const char *user, size_t un,
			    const char *name, size_t nn);

/* Lookups; NULL when absent. Returned pointers are borrowed from s. */
const struct user_settings *settings_user(const struct settings *s, const char *name);
const struct account_settings *settings_account(const struct settings *s,
						const char *user, const char *name);

#endif
