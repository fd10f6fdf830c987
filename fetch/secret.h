/* secret: fetches an account's password or OAuth2 bearer token at the moment
 * it is needed, so secrets held in a file or a password manager never sit in
 * the settings tree.
 *
 * Commands are run without a shell: the string is split into words by
 * secret_split_argv, argv[0] is looked up in PATH, stdout is read through a
 * pipe, stderr is the daemon's (a password manager's complaints reach the
 * log or the terminal), and only descriptors 0, 1 and 2 are passed on. A
 * daemon running as root runs them as the account's [user] (child_spawn in
 * cache/child.h: its uid, gid, supplementary groups and home, child.h's
 * small environment plus MAILDISK_USER and MAILDISK_ACCOUNT, stdin from
 * /dev/null, a session of their own), never as root: an administrator who
 * wants a secret that only root can read uses password_file. A daemon that
 * is not root runs them as itself, with its own environment and stdin. A secret never appears in an
 * error message. Any thread: nothing here touches global state, and the
 * child is waited for by its PID (so a caller must not reap children with
 * waitpid(-1) while a secret is being fetched). */
#ifndef MAILDISK_SECRET_H
#define MAILDISK_SECRET_H

#include <stdbool.h>
#include "../cache/buf.h"
#include "../cache/settings.h"

/* A command must answer within this many seconds; then it is killed. */
#ifndef SECRET_COMMAND_TIMEOUT
#define SECRET_COMMAND_TIMEOUT 30
#endif
/* More output than this from a command is an error. */
#define SECRET_OUTPUT_MAX (64 * 1024)

/* Gets a's secret, from whichever of password, password_file,
 * password_command or oauth2_token_command is set:
 *   password: a copy;
 *   password_file: its first line without the line end, read from the
 *     descriptor secret_file_open checked (so the checks apply now, to the
 *     bytes read);
 *   commands: the first line of standard output. A non-zero exit, a
 *     signal, no answer within SECRET_COMMAND_TIMEOUT, more than
 *     SECRET_OUTPUT_MAX bytes, or an empty first line is an error.
 * Returns 0 with *secret_r a malloc'd, NUL-terminated string the caller
 * owns (explicit_bzero it, then free). On error *secret_r is NULL, err is
 * reset to one line naming the account ("USER/NAME: password_command pass:
 * exited with status 2") and the return is a negative errno: -ENOENT etc.
 * from open or exec, -EPERM (file owner or permissions), -ELOOP (a
 * password_file that is a symbolic link), -ENODATA (empty secret),
 * -EIO (the command failed), -ETIMEDOUT, -EFBIG, -EINVAL (nothing
 * configured, a malformed command, a password_file that is not a regular
 * file), -ENOMEM. */
int secret_get(const struct account_settings *a, char **secret_r, struct buf *err);

/* Opens path, a file holding a secret, for reading: refused when it is a
 * symbolic link (lstat, then O_NOFOLLOW), not a regular file, owned by
 * neither the effective uid nor root, or open to group or others. The owner
 * and mode are those of the open descriptor (fstat), so a caller that reads
 * from it reads the file that was checked. Returns the descriptor
 * (close-on-exec, non-blocking; the caller closes it), or a negative
 * errno (-ELOOP, -EINVAL, -EPERM, or that of lstat or open) with a line
 * appended to why that starts with the path and says what to do, for
 * example "/etc/mail.pw is open to group or others (mode 0644); run: chmod
 * 600 /etc/mail.pw". Used for the check at load time too. */
int secret_file_open(const char *path, struct buf *why);

/* True when the secret is an OAuth2 bearer token (oauth2_token_command),
 * to be sent with XOAUTH2 rather than as a password. */
bool secret_is_token(const struct account_settings *a);

/* Splits a command line into words without a shell: words are separated by
 * blanks (ASCII whitespace); inside '...' every byte is literal; inside "..." a
 * backslash escapes only '"' and '\\'; outside quotes a backslash escapes
 * the next byte; quoted and unquoted parts next to each other join into one
 * word ("a'b c'd" is one word "ab cd"); '' gives an empty word. No
 * expansion of any kind ($, ~, *, ;, | are ordinary bytes).
 * 0 with *argv_r a malloc'd NULL-terminated vector (free with
 * secret_free_argv); -EINVAL for an unterminated quote, a trailing
 * backslash or no word at all; -ENOMEM. */
int secret_split_argv(const char *command, char ***argv_r);

/* Frees a vector from secret_split_argv and sets *argv to NULL. NULL-safe. */
void secret_free_argv(char ***argv);

#endif
