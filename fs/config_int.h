/* config_int: what the parts of the config parser share, inside fs/ only.
 *
 *   config.c        the reader: lines, section headers, keys filed under
 *                   their section, whole-section checks, config_parse_string
 *   config_keys.c   the table of keys per section and the parser of each
 *                   kind of value
 *   config_file.c   the files: the config file's ownership, mode and size
 *                   (config_load), password_file and ca_file, the default
 *                   path
 *
 * Every function here reports through config_fail_rc: the first error wins
 * and parsing stops there. Not thread-safe, like config.h. */
#ifndef MAILDISK_CONFIG_INT_H
#define MAILDISK_CONFIG_INT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define NAME_MAX_BYTES 255   /* user and account names are path components */
#define KEYS_MAX 16

enum sect { SECT_NONE, SECT_STORE, SECT_SYNC, SECT_MOUNT, SECT_USER, SECT_ACCOUNT };

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
	struct sect_meta store, sync, mount;
	struct sect_meta *user_meta;     /* owned, parallel to s->users */
	struct sect_meta *account_meta;  /* owned, parallel to s->accounts */
	size_t users_cap, accounts_cap;
};

/* The keys of each section, ending in { .name = NULL } (config_keys.c). */
extern const struct keydef config_store_keys[];
extern const struct keydef config_sync_keys[];
extern const struct keydef config_mount_keys[];
extern const struct keydef config_user_keys[];
extern const struct keydef config_account_keys[];

/* Index of name in keys, or -1. */
int config_key_index(const struct keydef *keys, const char *name);

/* Parses v as k says and stores it in obj (struct settings, user_settings
 * or account_settings, as the section is). 0, or p->rc after recording the
 * error. */
int config_set_value(struct parse *p, const struct keydef *k, void *obj, const char *v);

/* Records the first error as "NAME:LINE: KEY: message"; LINE and KEY are
 * left out when 0 or NULL. Returns p->rc. */
__attribute__((format(printf, 5, 6)))
int config_fail_rc(struct parse *p, int rc, int line, const char *key, const char *fmt, ...);

#define fail(p, line, key, ...) config_fail_rc((p), -EINVAL, (line), (key), __VA_ARGS__)
#define fail_nomem(p) config_fail_rc((p), -ENOMEM, 0, NULL, "out of memory")

/* Appends s cut to max bytes with control bytes shown as '?'. */
void config_put_clean(struct buf *b, const char *s, size_t max);

/* Shows each control byte of b from offset from on as '?', so a message
 * stays one line whatever the file holds. */
void config_clean_tail(struct buf *b, size_t from);

/* A value shown in a message: quoted and cut short into out. Never used for
 * secrets. Returns out. */
const char *config_shown(const char *v, char *out, size_t outlen);

/* [A-Za-z0-9] in ASCII, whatever the locale: names become path components. */
bool config_ascii_alnum(char c);

/* The checks of a password_file or ca_file value (config_file.c): 0, or
 * p->rc after recording the error. */
int config_check_password_file(struct parse *p, const char *key, const char *v);
int config_check_ca_file(struct parse *p, const char *key, const char *v);

#endif
