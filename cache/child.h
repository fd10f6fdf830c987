/* child: starts a command as a local user, and keeps the daemon's
 * descriptors out of every command it starts.
 *
 * maildisk runs as root for many users; the commands it runs for one of
 * them (password_command, oauth2_token_command, on_change) must run as that
 * user: the user's uid, primary gid and supplementary groups (as
 * initgroups(3) sets them), the user's home as the working directory, and a
 * small fixed environment:
 *   HOME USER LOGNAME SHELL (from the passwd entry), PATH (the daemon's,
 *   where the command is looked up, else /usr/local/bin:/usr/bin:/bin),
 *   LANG LC_ALL TZ (copied when the daemon has them), XDG_RUNTIME_DIR
 *   (/run/user/UID when that directory exists and belongs to the user, for
 *   password managers that talk to an agent), and what the caller adds.
 * A daemon that is not root cannot become anyone else: it runs commands as
 * itself, and child_user_init says so in switch_ids.
 *
 * A child gets only descriptors 0, 1 and 2: every other one is closed in
 * the child before exec, whatever its close-on-exec flag, so a socket of
 * another account that a library opened without the flag never reaches it.
 *
 * Threads: any thread. child_spawn forks; between fork and exec the child
 * makes only async-signal-safe calls (everything it needs is computed by
 * child_user_init beforehand). A caller reaps its child by PID. */
#ifndef MAILDISK_CHILD_H
#define MAILDISK_CHILD_H

#include <stdbool.h>
#include <sys/types.h>

struct child_user {
	bool switch_ids;   /* the daemon is root: setgroups, setgid, setuid in the child */
	uid_t uid;
	gid_t gid;
	gid_t *groups;     /* owned: supplementary groups, gid included */
	int n_groups;
	char *home;        /* owned: working directory: the user's home, or "/" */
	char **envp;       /* owned, NULL-terminated: the environment above */
};

/* Prepares running commands as uid (primary group gid). extra: NULL or a
 * NULL-terminated list of name, value, name, value...; a NULL value leaves
 * that name out. A uid without a passwd entry gets HOME=/, USER and
 * LOGNAME the number, and only gid as its group. 0, or -ENOMEM with u
 * released. */
int child_user_init(struct child_user *u, uid_t uid, gid_t gid, const char *const *extra);
/* Frees what child_user_init allocated and zeroes u. Safe on a zeroed u. */
void child_user_release(struct child_user *u);

/* Starts argv[0] (looked up in the daemon's PATH) with argv as u, in a
 * session of its own when new_session. envp: the child's environment, NULL
 * for u->envp. in_fd: its stdin, -1 for /dev/null. out_fd: its stdout, -1
 * to keep the daemon's. stderr is the daemon's. Signals: mask emptied,
 * SIGPIPE back to its default (the daemon ignores it).
 * 0 with *pid_r set once the exec succeeded; else a negative errno from the
 * step that failed (fork, setuid's -EPERM, exec's -ENOENT or -EACCES), with
 * the child already reaped. */
int child_spawn(const struct child_user *u, char *const argv[], char *const envp[], int in_fd,
		int out_fd, bool new_session, pid_t *pid_r);

/* Marks every open descriptor above 2 close-on-exec. For descriptors a
 * library opens without the flag and without a hook to add it (libcurl
 * before 8.8 creates its wakeup socketpair that way): call right after the
 * library call that opened them. Returns how many it had to mark, or 0
 * when the kernel marked them all at once (close_range). */
int child_cloexec_all(void);

#endif
