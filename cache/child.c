/* child: commands run as a local user, with only descriptors 0, 1 and 2
 * (see child.h). */
#include "child.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"

#define CHILD_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define CHILD_GROUPS_MAX 1024

static int env_add(char ***envp, size_t *n, const char *key, const char *val)
{
	char **e;
	struct buf b = BUF_INIT(65536);

	if (!val)
		return 0;
	e = realloc(*envp, (*n + 2) * sizeof *e);
	if (!e)
		return -ENOMEM;
	*envp = e;
	if (buf_printf(&b, "%s=%s", key, val)) {
		buf_release(&b);
		return -ENOMEM;
	}
	e[(*n)++] = buf_detach(&b);
	e[*n] = NULL;
	return e[*n - 1] ? 0 : -ENOMEM;
}

/* /run/user/UID when it is a directory of the user's: where systemd puts
 * the user's agent sockets (gpg-agent, the D-Bus session bus). */
static const char *runtime_dir(uid_t uid, char *out, size_t len)
{
	struct stat st;

	snprintf(out, len, "/run/user/%u", (unsigned)uid);
	if (stat(out, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != uid)
		return NULL;
	return out;
}

int child_user_init(struct child_user *u, uid_t uid, gid_t gid, const char *const *extra)
{
	struct passwd pw, *pwp = NULL;
	char pwbuf[4096], num[24], rdir[64];
	static const char *const copied[] = { "LANG", "LC_ALL", "TZ" };
	const char *name, *path = getenv("PATH");
	size_t n_env = 0;

	memset(u, 0, sizeof *u);
	u->uid = uid;
	u->gid = gid;
	u->switch_ids = geteuid() == 0;
	getpwuid_r(uid, &pw, pwbuf, sizeof pwbuf, &pwp);
	snprintf(num, sizeof num, "%u", (unsigned)uid);
	name = pwp ? pwp->pw_name : num;
	u->groups = calloc(CHILD_GROUPS_MAX, sizeof *u->groups);
	if (!u->groups)
		goto nomem;
	u->n_groups = CHILD_GROUPS_MAX;
	if (!pwp || getgrouplist(pwp->pw_name, gid, u->groups, &u->n_groups) < 0) {
		u->groups[0] = gid;
		u->n_groups = 1;
	}
	u->home = strdup(pwp && pwp->pw_dir && *pwp->pw_dir ? pwp->pw_dir : "/");
	if (!u->home)
		goto nomem;
	if (env_add(&u->envp, &n_env, "HOME", u->home) ||
	    env_add(&u->envp, &n_env, "USER", name) ||
	    env_add(&u->envp, &n_env, "LOGNAME", name) ||
	    env_add(&u->envp, &n_env, "SHELL", pwp && *pwp->pw_shell ? pwp->pw_shell : "/bin/sh") ||
	    /* execvpe searches the daemon's PATH: give the command the same */
	    env_add(&u->envp, &n_env, "PATH", path && *path ? path : CHILD_DEFAULT_PATH) ||
	    env_add(&u->envp, &n_env, "XDG_RUNTIME_DIR", runtime_dir(uid, rdir, sizeof rdir)))
		goto nomem;
	for (size_t i = 0; i < sizeof copied / sizeof *copied; i++)
		if (env_add(&u->envp, &n_env, copied[i], getenv(copied[i])))
			goto nomem;
	for (size_t i = 0; extra && extra[i]; i += 2)
		if (env_add(&u->envp, &n_env, extra[i], extra[i + 1]))
			goto nomem;
	return 0;
nomem:
	child_user_release(u);
	return -ENOMEM;
}

void child_user_release(struct child_user *u)
{
	if (u->envp)
		for (char **p = u->envp; *p; p++)
			free(*p);
	free(u->envp);
	free(u->groups);
	free(u->home);
	memset(u, 0, sizeof *u);
}

/* Closes every descriptor from lo up, but keep. Async-signal-safe. */
static void close_from(int lo, int keep)
{
	struct rlimit rl;
	int hi = 65536;

	if (keep >= lo) {
		if (keep > lo && close_range((unsigned)lo, (unsigned)keep - 1, 0) < 0)
			goto loop;
		if (close_range((unsigned)keep + 1, ~0u, 0) < 0)
			goto loop;
		return;
	}
	if (close_range((unsigned)lo, ~0u, 0) == 0)
		return;
loop:
	/* kernels before 5.9 */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)hi)
		hi = (int)rl.rlim_cur;
	for (int fd = lo; fd < hi; fd++)
		if (fd != keep)
			close(fd);
}

/* In the child, between fork and exec: only async-signal-safe calls. A
 * failure is reported through errfd (close-on-exec, above 2) as the errno
 * of the step that failed. */
static void __attribute__((noreturn))
child_exec(const struct child_user *u, char *const argv[], char *const envp[], int in_fd,
	   int out_fd, bool new_session, int errfd)
{
	struct sigaction sa;
	sigset_t none;
	int e;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGPIPE, &sa, NULL);
	if (new_session)
		setsid();
	/* stdout first: out_fd may be 0 when the daemon runs without a stdin */
	if (out_fd >= 0) {
		if (out_fd == STDOUT_FILENO) {
			if (fcntl(out_fd, F_SETFD, 0) < 0)
				goto fail;
		} else if (dup2(out_fd, STDOUT_FILENO) < 0) {
			goto fail;
		}
	}
	if (in_fd < 0) {
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (nul < 0 || dup2(nul, STDIN_FILENO) < 0)
			goto fail;
	} else if (in_fd != STDIN_FILENO) {
		if (dup2(in_fd, STDIN_FILENO) < 0)
			goto fail;
	} else if (fcntl(in_fd, F_SETFD, 0) < 0) {
		goto fail;
	}
	if (u->switch_ids &&
	    (setgroups((size_t)u->n_groups, u->groups) || setgid(u->gid) || setuid(u->uid)))
		goto fail;
	if (chdir(u->home) && chdir("/"))
		goto fail;
	/* the FUSE device, the index, the store lock, other accounts' sockets */
	close_from(3, errfd);
	execvpe(argv[0], argv, envp ? envp : u->envp);
fail:
	e = errno;
	if (write(errfd, &e, sizeof e) < 0)
		_exit(126);
	_exit(127);
}

int child_spawn(const struct child_user *u, char *const argv[], char *const envp[], int in_fd,
		int out_fd, bool new_session, pid_t *pid_r)
{
	int pfd[2], e = 0;
	ssize_t got;
	pid_t pid;

	*pid_r = 0;
	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	/* the write end must survive the child's closing of 3 and up */
	if (pfd[1] < 3) {
		int hi = fcntl(pfd[1], F_DUPFD_CLOEXEC, 3);

		e = errno;
		close(pfd[1]);
		if (hi < 0) {
			close(pfd[0]);
			return -e;
		}
		pfd[1] = hi;
	}
	pid = fork();
	if (pid == 0)
		child_exec(u, argv, envp, in_fd, out_fd, new_session, pfd[1]);
	e = errno;
	close(pfd[1]);
	if (pid < 0) {
		close(pfd[0]);
		return -e;
	}
	/* the pipe closes on exec: no bytes means the command is running */
	e = 0;
	do
		got = read(pfd[0], &e, sizeof e);
	while (got < 0 && errno == EINTR);
	close(pfd[0]);
	if (got == (ssize_t)sizeof e) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		return e > 0 ? -e : -EIO;
	}
	*pid_r = pid;
	return 0;
}

int child_cloexec_all(void)
{
	DIR *d;
	struct dirent *de;
	int marked = 0;

	/* One call, whatever the number of descriptors: a scan of
	 * /proc/self/fd per connection made 10,000 IDLE connections cost
	 * 10,000 scans of up to 10,000 entries (Linux 5.11 and later). */
	if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) == 0)
		return 0;
	d = opendir("/proc/self/fd");
	if (!d) {
		for (int fd = 3; fd < 1024; fd++) {
			int fl = fcntl(fd, F_GETFD);

			if (fl >= 0 && !(fl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) == 0)
				marked++;
		}
		return marked;
	}
	while ((de = readdir(d))) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		int fl;

		if (*end || end == de->d_name || fd < 3 || fd == dirfd(d))
			continue;
		fl = fcntl((int)fd, F_GETFD);
		if (fl >= 0 && !(fl & FD_CLOEXEC) && fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC) == 0)
			marked++;
	}
	closedir(d);
	return marked;
}
