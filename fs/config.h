/* config: reads the maildisk config file (INI, parsed with inih) into a
 * struct settings (cache/settings.h), refusing anything doubtful.
 *
 * Sections and keys (every other section or key is an error, so a typo is
 * never silently ignored; a key or section given twice is an error too):
 *   [store]             path (required, absolute), trash_days (1..3650, 30)
 *   [sync]              workers (1..64, 4)
 *   [mount]             keep_cpus_awake (yes|no, yes: fs/cpu_awake.h)
 *   [user NAME]         uid (required: local account name or numeric uid;
 *                       the account must exist), on_change (a command)
 *   [account USER/NAME] url (required: imap:// imaps:// pop3:// pop3s://
 *                       HOST[:PORT] and at most a trailing '/'), login
 *                       (required), exactly one of password, password_file,
 *                       password_command, oauth2_token_command; folders
 *                       (IMAP only: "A, B", or "*" alone for all; INBOX),
 *                       interval (10..604800 s, 300), timeout (5..3600 s, 60),
 *                       tls (on|off; off only for imap:// and pop3://, warned
 *                       at load), ca_file (absolute, readable), mirror_deletions
 *                       (yes|no|true|false|on|off, yes), mass_delete_limit
 *                       ("50%" or a fraction 0..1, 0.5)
 * USER must be a declared [user]. User and account names are path
 * components: 1..255 bytes of [A-Za-z0-9._@+-], not starting with '.'.
 *
 * Syntax is inih's: "key = value", ';' or '#' starts a comment line, and
 * " ;" (whitespace then ';') starts a comment inside a line, so an inline
 * password may not contain " ;" (that case is refused; use password_file).
 * Values are taken literally after trimming (no quote removal); lines are
 * at most CONFIG_LINE_MAX bytes; no continuation lines.
 *
 * Commands (password_command, oauth2_token_command, on_change) are split
 * into words without a shell (secret_split_argv in fetch/secret.h) and
 * checked for balanced quotes at load.
 *
 * Every error is ONE line, with no trailing newline:
 *   "FILE:LINE: KEY: what is wrong; what is expected"
 * where KEY is a key name, or "[section]" for a problem with a whole
 * section, and LINE is the key's line or the section header's line. Problems
 * with the file itself have no LINE or KEY ("FILE: cannot read: ...").
 * Secrets are never quoted in a message.
 *
 * Not thread-safe (inih keeps its options in globals): call from one
 * thread, before others start. */
#ifndef MAILDISK_CONFIG_H
#define MAILDISK_CONFIG_H

#include <stddef.h>
#include "../cache/buf.h"
#include "../cache/settings.h"

/* Longest accepted config line, newline included. */
#define CONFIG_LINE_MAX 4096
/* Largest accepted config file. An account takes 150 to 400 bytes (url,
 * login, a password_file or ca_file path, folders) and its [user] 30, so
 * 10,000 accounts, each its own user, fill 2 to 4 MiB: 16 MiB holds
 * 40,000 or more, and still refuses a wrong path (a log, a disk image)
 * before it is read. The file is read into a buffer of its own size. */
#define CONFIG_FILE_MAX (16 * 1024 * 1024)

/* Reads and checks the config at path. On success returns 0 and *r owns a
 * new tree (free with settings_free); a warning is logged for each account
 * with tls = off.
 * On failure *r is NULL, err is reset to hold one line as above, and the
 * return is -EINVAL (content or permissions), -ENOMEM, or -errno from
 * reading the file.
 * The file must be a regular file owned by the effective uid or root and
 * not writable by group or others (its commands run as this process);
 * when it holds "password =" it must not be readable by group or others
 * either. password_file must be a regular file owned by the effective uid
 * or root with no group or other permissions; ca_file must be readable. */
int config_load(const char *path, struct settings **r, struct buf *err);

/* The same parse and checks as config_load over text already in memory
 * (NUL-terminated), naming it name in messages and in (*r)->path; the only
 * difference is that there is no file whose permissions could be checked.
 * It still resolves users and stats password_file and ca_file. Used by
 * config_load and the fuzz target. */
int config_parse_string(const char *text, const char *name, struct settings **r,
			struct buf *err);

/* Writes the default config path into out: $MAILDISK_CONFIG when set and
 * not empty, else /etc/maildisk.conf when the effective uid is root, else
 * $HOME/.config/maildisk/config (the passwd entry's home when HOME is unset).
 * 0, -ENAMETOOLONG when it does not fit in outlen, -ENOENT when there is no
 * home directory to use. */
int config_default_path(char *out, size_t outlen);

#endif
