/* config_file: the files of the config: the config file itself (its owner,
 * mode and size, read whole into memory for config_parse_string), the files
 * its keys name (password_file, ca_file), and where it is by default. */
#include "config_int.h"

#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fetch/secret.h"

/* The rules secret_get applies again when it reads the file. */
int config_check_password_file(struct parse *p, const char *key, const char *v)
{
	struct buf why = BUF_INIT(8192);
	int fd = secret_file_open(v, &why), rc = 0;

	if (fd >= 0)
		close(fd);
	else
		rc = why.data ? fail(p, p->line, key, "%s", why.data) : fail_nomem(p);
	buf_release(&why);
	return rc;
}

int config_check_ca_file(struct parse *p, const char *key, const char *v)
{
	struct stat st;
	int fd;

	if (stat(v, &st) < 0)
		return fail(p, p->line, key, "%s: %s; expected a readable PEM file", v, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(p, p->line, key, "%s: not a regular file; expected a readable PEM file", v);
	fd = open(v, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return fail(p, p->line, key, "%s: cannot read: %s", v, strerror(errno));
	close(fd);
	return 0;
}


static int file_fail(struct buf *err, int rc, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int file_fail(struct buf *err, int rc, const char *path, const char *fmt, ...)
{
	va_list ap;

	buf_reset(err);
	config_put_clean(err, path, 4096);
	buf_appends(err, ": ");
	va_start(ap, fmt);
	buf_vprintf(err, fmt, ap);
	va_end(ap);
	config_clean_tail(err, 0);
	return rc;
}

/* The rules for the config file itself, from its fstat: 0 or -EINVAL with
 * the message in err. */
static int check_file(const struct stat *st, const char *path, struct buf *err)
{
	if (!S_ISREG(st->st_mode))
		return file_fail(err, -EINVAL, path, "not a regular file");
	/* its commands (password_command, on_change) run as this process */
	if (st->st_uid != geteuid() && st->st_uid != 0)
		return file_fail(err, -EINVAL, path,
				 "owned by uid %u, expected uid %u or root, since its commands run as uid %u; run: chown %u %s",
				 (unsigned)st->st_uid, (unsigned)geteuid(), (unsigned)geteuid(),
				 (unsigned)geteuid(), path);
	if (st->st_mode & 022)
		return file_fail(err, -EINVAL, path,
				 "writable by others (mode %04o), who could make it run any command; run: chmod go-w %s",
				 (unsigned)(st->st_mode & 07777), path);
	if (st->st_size > CONFIG_FILE_MAX)
		return file_fail(err, -EINVAL, path, "larger than %d bytes; is this a config file?",
				 CONFIG_FILE_MAX);
	return 0;
}

/* Moves the n bytes read so far into a buffer of cap bytes, wiping the
 * old one: it may hold a password. */
static char *grow_text(char *text, size_t n, size_t cap)
{
	char *t = malloc(cap);

	if (t && n)
		memcpy(t, text, n);
	if (text) {
		explicit_bzero(text, n);
		free(text);
	}
	return t;
}

/* Reads fd to its end into *text_r, NUL-terminated, starting with room for
 * the size fstat gave (the file may still grow, up to CONFIG_FILE_MAX).
 * *n_r counts the bytes read, also on failure, so the caller can wipe them.
 * 0, or a negative errno with the message in err. */
static int read_text(int fd, const char *path, size_t size, char **text_r, size_t *n_r,
		     struct buf *err)
{
	size_t n = 0, cap = size + 2;   /* one byte to see a growth, one for the NUL */
	char *text = grow_text(NULL, 0, cap);
	int rc;

	for (;;) {
		if (text && n + 1 == cap) {
			cap = cap - 1 > CONFIG_FILE_MAX / 2 ? (size_t)CONFIG_FILE_MAX + 2 : 2 * cap;
			text = grow_text(text, n, cap);
		}
		*text_r = text;
		if (!text) {
			*n_r = 0;
			return file_fail(err, -ENOMEM, path, "out of memory");
		}
		ssize_t got = read(fd, text + n, cap - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			return file_fail(err, rc, path, "cannot read: %s", strerror(-rc));
		}
		if (got == 0)
			break;
		n += (size_t)got;
		*n_r = n;
		if (n > CONFIG_FILE_MAX)
			return file_fail(err, -EINVAL, path, "larger than %d bytes; is this a config file?",
					 CONFIG_FILE_MAX);
	}
	text[n] = '\0';
	if (memchr(text, '\0', n))
		return file_fail(err, -EINVAL, path, "holds a NUL byte; expected a text file");
	return 0;
}

int config_load(const char *path, struct settings **r, struct buf *err)
{
	struct stat st;
	char *text = NULL;
	size_t n = 0;
	int fd, rc;

	*r = NULL;
	buf_reset(err);
	/* O_NONBLOCK: a FIFO in its place must not hang us before the S_ISREG check */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		return file_fail(err, rc, path, "cannot read: %s", strerror(-rc));
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		file_fail(err, rc, path, "cannot read: %s", strerror(-rc));
		goto out;
	}
	if ((rc = check_file(&st, path, err)) < 0)
		goto out;
	if ((rc = read_text(fd, path, (size_t)st.st_size, &text, &n, err)) < 0)
		goto out;
	rc = config_parse_string(text, path, r, err);
	if (rc < 0)
		goto out;
	if (st.st_mode & 044) {
		for (size_t i = 0; i < (*r)->n_accounts; i++) {
			if ((*r)->accounts[i].password) {
				settings_free(r);
				rc = file_fail(err, -EINVAL, path,
					       "holds a password but is readable by others (mode %04o); run: chmod 600 %s",
					       (unsigned)(st.st_mode & 07777), path);
				break;
			}
		}
	}
out:
	if (text) {
		explicit_bzero(text, n);
		free(text);
	}
	close(fd);
	return rc;
}

int config_default_path(char *out, size_t outlen)
{
	const char *env = getenv("MAILDISK_CONFIG");
	const char *home;
	struct passwd pw, *res = NULL;
	char buf[16384];
	int n;

	if (env && *env)
		n = snprintf(out, outlen, "%s", env);
	else if (geteuid() == 0)
		n = snprintf(out, outlen, "/etc/maildisk.conf");
	else {
		home = getenv("HOME");
		if (!home || !*home) {
			if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &res) != 0 || !res ||
			    !res->pw_dir || !*res->pw_dir)
				return -ENOENT;
			home = res->pw_dir;
		}
		n = snprintf(out, outlen, "%s/.config/maildisk/config", home);
	}
	if (n < 0 || (size_t)n >= outlen)
		return -ENAMETOOLONG;
	return 0;
}

