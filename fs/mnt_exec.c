/* mnt_exec: the per-user on_change command (see mnt_exec.h). */
#include "mnt_exec.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../cache/child.h"
#include "../cache/log.h"
#include "../fetch/secret.h"

/* How long shutdown waits for a running command before SIGTERM, and after. */
#define EXEC_GRACE_S 10
#define EXEC_TERM_S 5

struct exec_user {
	struct mnt_exec *x;       /* borrowed: the runner this belongs to */
	char *name;               /* owned: [user] name */
	char **argv;              /* owned (secret_free_argv), NULL: no command */
	struct child_user as;     /* owned: who runs it, and its environment */
	/* protected by x->lock */
	bool running;             /* a waiter thread owns a run */
	bool pending;             /* a change came while running: run again */
	bool has_thread;          /* thread is joinable */
	pid_t pid;                /* the running child, 0 between runs */
	pthread_t thread;
};

struct mnt_exec {
	pthread_mutex_t lock;
	bool stopping;            /* protected by lock */
	struct exec_user *users;  /* owned array */
	size_t n_users;
};

/* Everything the child needs, computed here so that the child between fork
 * and exec only makes async-signal-safe calls. */
static int prepare_user(struct exec_user *u, const struct user_settings *us,
			const char *mountpoint)
{
	char mnt[4096];
	int rc;

	if (!(u->name = strdup(us->name)))
		return -ENOMEM;
	rc = secret_split_argv(us->on_change, &u->argv);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		log_error("user %s: on_change %s: unbalanced quotes or no command, not run",
			  us->name, us->on_change);
		return 0;
	}
	if (geteuid() != 0 && us->uid != geteuid()) {
		log_warn("user %s: on_change not run: an unprivileged daemon cannot act as uid %u",
			 us->name, (unsigned)us->uid);
		secret_free_argv(&u->argv);
		return 0;
	}
	snprintf(mnt, sizeof mnt, "%s/%s", strcmp(mountpoint, "/") ? mountpoint : "", us->name);
	const char *const extra[] = { "MAILDISK_USER", us->name, "MAILDISK_MOUNT", mnt, NULL };
	return child_user_init(&u->as, us->uid, us->gid, extra);
}

int mnt_exec_create(const struct settings *cfg, const char *mountpoint, struct mnt_exec **r)
{
	struct mnt_exec *x = calloc(1, sizeof *x);

	*r = NULL;
	if (!x)
		return -ENOMEM;
	pthread_mutex_init(&x->lock, NULL);
	x->users = calloc(cfg->n_users ? cfg->n_users : 1, sizeof *x->users);
	if (!x->users) {
		mnt_exec_destroy(&x);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_users; i++) {
		struct exec_user *u = &x->users[x->n_users++];

		u->x = x;
		if (!cfg->users[i].on_change || !*cfg->users[i].on_change)
			continue;
		if (prepare_user(u, &cfg->users[i], mountpoint)) {
			mnt_exec_destroy(&x);
			return -ENOMEM;
		}
	}
	*r = x;
	return 0;
}

/* Starts one run; returns the child's PID, or 0 when it could not start
 * (logged). */
static pid_t spawn(struct exec_user *u)
{
	pid_t pid;
	int rc = child_spawn(&u->as, u->argv, NULL, -1, -1, true, &pid);

	if (rc < 0) {
		log_error("user %s: on_change %s: %s", u->name, u->argv[0], strerror(-rc));
		return 0;
	}
	log_debug("user %s: on_change %s started, pid %d", u->name, u->argv[0], (int)pid);
	return pid;
}

static void *waiter(void *arg)
{
	struct exec_user *u = arg;
	struct mnt_exec *x = u->x;

	for (;;) {
		pid_t pid = spawn(u);

		if (pid > 0) {
			int st = 0;

			pthread_mutex_lock(&x->lock);
			u->pid = pid;
			pthread_mutex_unlock(&x->lock);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
				log_warn("user %s: on_change %s exited with status %d", u->name,
					 u->argv[0], WEXITSTATUS(st));
			else if (WIFSIGNALED(st))
				log_warn("user %s: on_change %s killed by signal %d", u->name,
					 u->argv[0], WTERMSIG(st));
		}
		pthread_mutex_lock(&x->lock);
		u->pid = 0;
		if (u->pending && !x->stopping) {
			u->pending = false;
			pthread_mutex_unlock(&x->lock);
			continue;
		}
		u->running = false;
		pthread_mutex_unlock(&x->lock);
		return NULL;
	}
}

void mnt_exec_user_changed(struct mnt_exec *x, const char *user)
{
	struct exec_user *u = NULL;
	sigset_t all, old;
	int rc;

	if (!x)
		return;
	for (size_t i = 0; i < x->n_users; i++)
		if (x->users[i].name && strcmp(x->users[i].name, user) == 0)
			u = &x->users[i];
	if (!u || !u->argv)
		return;
	pthread_mutex_lock(&x->lock);
	if (x->stopping) {
		pthread_mutex_unlock(&x->lock);
		return;
	}
	if (u->running) {
		u->pending = true;
		pthread_mutex_unlock(&x->lock);
		return;
	}
	if (u->has_thread) {
		/* Its last run is over (running is false): the join is immediate. */
		pthread_join(u->thread, NULL);
		u->has_thread = false;
	}
	/* The waiter takes no signals: SIGTERM and friends belong to the main
	 * thread, which turns them into a clean shutdown. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&u->thread, NULL, waiter, u);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		log_error("user %s: on_change: cannot start a thread: %s", u->name, strerror(rc));
	} else {
		u->running = true;
		u->has_thread = true;
	}
	pthread_mutex_unlock(&x->lock);
}

static bool join_until(pthread_t t, int seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

static void stop_user(struct mnt_exec *x, struct exec_user *u)
{
	static const int sigs[] = { SIGTERM, SIGKILL };
	bool joined = false;

	bool running;

	if (!u->has_thread)
		return;
	pthread_mutex_lock(&x->lock);
	running = u->running;
	pthread_mutex_unlock(&x->lock);
	if (running)
		log_info("user %s: waiting for on_change to finish", u->name);
	joined = join_until(u->thread, EXEC_GRACE_S);
	for (size_t i = 0; !joined && i < sizeof sigs / sizeof *sigs; i++) {
		pid_t pid;

		pthread_mutex_lock(&x->lock);
		pid = u->pid;
		pthread_mutex_unlock(&x->lock);
		if (pid > 0) {
			log_warn("user %s: on_change pid %d still running, sending %s", u->name,
				 (int)pid, sigs[i] == SIGTERM ? "SIGTERM" : "SIGKILL");
			kill(pid, sigs[i]);
		}
		joined = sigs[i] == SIGKILL ? pthread_join(u->thread, NULL) == 0
					     : join_until(u->thread, EXEC_TERM_S);
	}
	u->has_thread = false;
}

void mnt_exec_destroy(struct mnt_exec **xp)
{
	struct mnt_exec *x = *xp;

	if (!x)
		return;
	pthread_mutex_lock(&x->lock);
	x->stopping = true;
	pthread_mutex_unlock(&x->lock);
	for (size_t i = 0; i < x->n_users; i++) {
		struct exec_user *u = &x->users[i];

		stop_user(x, u);
		free(u->name);
		secret_free_argv(&u->argv);
		child_user_release(&u->as);
	}
	free(x->users);
	pthread_mutex_destroy(&x->lock);
	free(x);
	*xp = NULL;
}
