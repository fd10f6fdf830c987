/* secret: an account's password or OAuth2 token, read from the config, a
 * file or a command's output when a session needs it (see secret.h).
 *
 * Every buffer that held a secret is cleared with explicit_bzero before it
 * is freed, and no error message quotes one. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../cache/child.h"

extern char **environ;

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int secret_split_argv(const char *command, char ***argv_r)
{
	size_t len = strlen(command);
	/* a word takes at least two bytes of the command (one and a blank) */
	size_t max_words = len / 2 + 2;
	char **argv = calloc(max_words, sizeof(*argv));
	size_t n = 0;
	const char *p = command;

	*argv_r = NULL;
	if (!argv)
		return -ENOMEM;
	for (;;) {
		while (is_blank(*p))
			p++;
		if (!*p)
			break;
		char *w = malloc(len + 1);
		size_t wn = 0;
		if (!w) {
			secret_free_argv(&argv);
			return -ENOMEM;
		}
		argv[n++] = w;
		while (*p && !is_blank(*p)) {
			if (*p == '\'') {
				for (p++; *p && *p != '\''; p++)
					w[wn++] = *p;
				if (!*p)
					goto bad;
				p++;
			} else if (*p == '"') {
				for (p++; *p && *p != '"'; p++) {
					if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
						p++;
					w[wn++] = *p;
				}
				if (!*p)
					goto bad;
				p++;
			} else if (*p == '\\') {
				if (!p[1])
					goto bad;
				w[wn++] = p[1];
				p += 2;
			} else {
				w[wn++] = *p++;
			}
		}
		w[wn] = '\0';
	}
	if (n == 0)
		goto bad;
	*argv_r = argv;
	return 0;
bad:
	secret_free_argv(&argv);
	return -EINVAL;
}

void secret_free_argv(char ***argv)
{
	if (!*argv)
		return;
	for (char **p = *argv; *p; p++)
		free(*p);
	free(*argv);
	*argv = NULL;
}

bool secret_is_token(const struct account_settings *a)
{
	return a->oauth2_token_command != NULL;
}

/* The first line of data[0..n) into *line_r, without "\n" or "\r\n".
 * -ENODATA when it is empty (why: nothing, when there was no byte at all)
 * or holds a NUL byte, which a C string would cut short; -ENOMEM. */
static int first_line(const char *data, size_t n, const char *nothing, char **line_r,
		      const char **why)
{
	const char *nl = memchr(data, '\n', n);
	size_t len = nl ? (size_t)(nl - data) : n;

	*line_r = NULL;
	if (len > 0 && data[len - 1] == '\r')
		len--;
	if (len == 0) {
		*why = n == 0 ? nothing : "first line is empty";
		return -ENODATA;
	}
	if (memchr(data, '\0', len)) {
		*why = "first line holds a NUL byte";
		return -ENODATA;
	}
	if (!(*line_r = strndup(data, len))) {
		*why = "out of memory";
		return -ENOMEM;
	}
	return 0;
}

int secret_file_open(const char *path, struct buf *why)
{
	struct stat st;
	int fd, e;

	/* lstat first: opening a device to look at it can have side effects */
	if (lstat(path, &st) < 0) {
		e = errno;
		buf_printf(why, "%s: %s; expected a file holding the password on its first line",
			   path, strerror(e));
		return -e;
	}
	if (S_ISLNK(st.st_mode))
		goto symlink;
	if (!S_ISREG(st.st_mode)) {
		buf_printf(why, "%s: not a regular file", path);
		return -EINVAL;
	}
	/* O_NOFOLLOW: a link put in its place since the lstat is refused too.
	 * O_NONBLOCK: so is a FIFO, without hanging the worker. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	if (fd < 0) {
		e = errno;
		if (e == ELOOP)
			goto symlink;
		buf_printf(why, "%s: cannot read: %s", path, strerror(e));
		return -e;
	}
	/* Every check is on the descriptor the caller reads from. */
	if (fstat(fd, &st) < 0) {
		e = errno;
		buf_printf(why, "%s: cannot read: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		buf_printf(why, "%s: not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		buf_printf(why, "%s is owned by uid %u, expected uid %u or root; run: chown %u %s",
			   path, (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)geteuid(), path);
		close(fd);
		return -EPERM;
	}
	if (st.st_mode & 077) {
		buf_printf(why, "%s is open to group or others (mode %04o); run: chmod 600 %s", path,
			   (unsigned)(st.st_mode & 07777), path);
		close(fd);
		return -EPERM;
	}
	return fd;
symlink:
	buf_printf(why, "%s is a symbolic link; name the file itself, whose owner and mode "
		   "are checked", path);
	return -ELOOP;
}

static int from_file(const struct account_settings *a, char **secret_r, struct buf *err)
{
	const char *path = a->password_file;
	char *data;
	size_t n = 0;
	const char *why = NULL;
	int fd, rc = 0;

	/* checked again here: the file may have changed since the config was loaded */
	buf_printf(err, "%s/%s: password_file ", a->user, a->name);
	fd = secret_file_open(path, err);
	if (fd < 0)
		return fd;
	buf_reset(err);
	data = malloc(SECRET_OUTPUT_MAX);
	if (!data) {
		close(fd);
		buf_printf(err, "%s/%s: password_file %s: out of memory", a->user, a->name, path);
		return -ENOMEM;
	}
	while (n < SECRET_OUTPUT_MAX && !memchr(data, '\n', n)) {
		ssize_t got = read(fd, data + n, SECRET_OUTPUT_MAX - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			buf_printf(err, "%s/%s: password_file %s: read: %s", a->user, a->name,
				   path, strerror(-rc));
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	if (n == SECRET_OUTPUT_MAX && !memchr(data, '\n', n)) {
		buf_printf(err, "%s/%s: password_file %s: first line longer than %d bytes",
			   a->user, a->name, path, SECRET_OUTPUT_MAX);
		rc = -EFBIG;
		goto out;
	}
	rc = first_line(data, n, "empty file", secret_r, &why);
	if (rc < 0)
		buf_printf(err, "%s/%s: password_file %s: %s", a->user, a->name, path, why);
out:
	explicit_bzero(data, SECRET_OUTPUT_MAX);
	free(data);
	close(fd);
	return rc;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for pid until deadline (ms, CLOCK_MONOTONIC); a child that closed
 * its stdout but keeps running must not hang the caller either. 0 with
 * *status set, or -ETIMEDOUT with the child killed and reaped. */
static int wait_child(pid_t pid, long long deadline, int *status)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR) {
			*status = 0;
			return 0;
		}
		if (now_ms() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, status, 0) < 0 && errno == EINTR)
				;
			return -ETIMEDOUT;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* Starts argv with its stdout on a pipe: *rfd_r is the read end. Root runs
 * the command as the account's user, in the small environment of child.h,
 * without the daemon's terminal. A daemon that is not root already is that
 * user: the command keeps its environment and stdin, which a password
 * manager may need (its agent's variables, a prompt). 0 or -errno. */
static int spawn(const struct account_settings *a, char **argv, pid_t *pid_r, int *rfd_r)
{
	const char *const extra[] = { "MAILDISK_USER", a->user, "MAILDISK_ACCOUNT", a->name, NULL };
	bool root = geteuid() == 0;
	struct child_user as;
	int fds[2], rc;

	/* O_CLOEXEC: a command spawned at the same time by another thread must
	 * not inherit our write end, or we would wait for its EOF too */
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	rc = child_user_init(&as, root ? a->uid : geteuid(), root ? a->gid : getegid(), extra);
	if (rc == 0) {
		rc = root ? child_spawn(&as, argv, NULL, -1, fds[1], true, pid_r)
			  : child_spawn(&as, argv, environ, STDIN_FILENO, fds[1], false, pid_r);
		child_user_release(&as);
	}
	close(fds[1]);
	if (rc < 0) {
		close(fds[0]);
		return rc;
	}
	*rfd_r = fds[0];
	return 0;
}

/* Reads fd until EOF into out (SECRET_OUTPUT_MAX bytes at most) before the
 * deadline. 0; -ETIMEDOUT, -EFBIG (more than the cap), or -errno. */
static int read_output(int fd, long long deadline, char *out, size_t *n_r)
{
	size_t n = 0;

	for (;;) {
		long long left = deadline - now_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t got;
		int rc;

		if (left <= 0)
			return -ETIMEDOUT;
		rc = poll(&pfd, 1, (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
		/* one byte of room past the cap tells "too much" from "exactly full" */
		got = read(fd, out + n, SECRET_OUTPUT_MAX + 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0) {
			*n_r = n;
			return 0;
		}
		n += (size_t)got;
		if (n > SECRET_OUTPUT_MAX)
			return -EFBIG;
	}
}

/* Says in err why the command (its output already read) failed: it did
 * not exit in time, was killed, or exited non-zero. 0 when it exited 0. */
static int judge_exit(const struct account_settings *a, const char *key, const char *prog,
		      pid_t pid, long long deadline, struct buf *err)
{
	int status = 0;

	if (wait_child(pid, deadline, &status) < 0) {
		buf_printf(err, "%s/%s: %s %s: did not exit within %d s, killed", a->user,
			   a->name, key, prog, SECRET_COMMAND_TIMEOUT);
		return -ETIMEDOUT;
	}
	if (WIFSIGNALED(status)) {
		buf_printf(err, "%s/%s: %s %s: killed by signal %d (%s)", a->user, a->name, key,
			   prog, WTERMSIG(status), strsignal(WTERMSIG(status)));
		return -EIO;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		buf_printf(err, "%s/%s: %s %s: exited with status %d", a->user, a->name, key,
			   prog, WEXITSTATUS(status));
		return -EIO;
	}
	return 0;
}

/* Runs cmd (the value of key) and returns the first line of its stdout. */
static int from_command(const struct account_settings *a, const char *key, const char *cmd,
			char **secret_r, struct buf *err)
{
	char **argv = NULL, *out = NULL;
	size_t n = 0;
	pid_t pid = -1;
	int fd = -1, rc, status;
	long long deadline;
	const char *why = NULL;

	rc = secret_split_argv(cmd, &argv);
	if (rc < 0) {
		buf_printf(err, "%s/%s: %s: %s", a->user, a->name, key,
			   rc == -ENOMEM ? "out of memory"
					 : "no command, or an unterminated quote or backslash");
		return rc;
	}
	if (!(out = malloc(SECRET_OUTPUT_MAX + 1))) {
		buf_printf(err, "%s/%s: %s %s: out of memory", a->user, a->name, key, argv[0]);
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = spawn(a, argv, &pid, &fd)) < 0) {
		buf_printf(err, "%s/%s: %s %s: cannot run: %s", a->user, a->name, key, argv[0],
			   strerror(-rc));
		goto out;
	}
	deadline = now_ms() + SECRET_COMMAND_TIMEOUT * 1000LL;
	rc = read_output(fd, deadline, out, &n);
	close(fd);
	if (rc < 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (rc == -ETIMEDOUT)
			buf_printf(err, "%s/%s: %s %s: no answer within %d s, killed", a->user,
				   a->name, key, argv[0], SECRET_COMMAND_TIMEOUT);
		else if (rc == -EFBIG)
			buf_printf(err, "%s/%s: %s %s: printed more than %d bytes, killed",
				   a->user, a->name, key, argv[0], SECRET_OUTPUT_MAX);
		else
			buf_printf(err, "%s/%s: %s %s: reading its output: %s", a->user, a->name,
				   key, argv[0], strerror(-rc));
		goto out;
	}
	if ((rc = judge_exit(a, key, argv[0], pid, deadline, err)) < 0)
		goto out;
	rc = first_line(out, n, "printed nothing", secret_r, &why);
	if (rc < 0)
		buf_printf(err, "%s/%s: %s %s: %s", a->user, a->name, key, argv[0], why);
out:
	if (out)
		explicit_bzero(out, SECRET_OUTPUT_MAX + 1);
	free(out);
	secret_free_argv(&argv);
	return rc;
}

int secret_get(const struct account_settings *a, char **secret_r, struct buf *err)
{
	*secret_r = NULL;
	buf_reset(err);
	if (a->password) {
		*secret_r = strdup(a->password);
		if (!*secret_r) {
			buf_printf(err, "%s/%s: password: out of memory", a->user, a->name);
			return -ENOMEM;
		}
		return 0;
	}
	if (a->password_file)
		return from_file(a, secret_r, err);
	if (a->password_command)
		return from_command(a, "password_command", a->password_command, secret_r, err);
	if (a->oauth2_token_command)
		return from_command(a, "oauth2_token_command", a->oauth2_token_command, secret_r,
				    err);
	buf_printf(err, "%s/%s: no password, password_file, password_command or "
		   "oauth2_token_command configured", a->user, a->name);
	return -EINVAL;
}
