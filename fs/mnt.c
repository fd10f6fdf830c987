/* mnt: the daemon around the mount (fs/mnt.h): mnt_run sets it up, mounts,
 * starts the sync scheduler and the control thread, serves, and stops in
 * the documented order; signals reach it through the control thread. The
 * rest of the mount is in the mnt_*.c files (mnt_int.h lists them). */
#include "mnt_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../cache/child.h"
#include "../cache/log.h"
#include "../cache/parts.h"

/* ------------------------------------------------------------------ *
 * Signals and shutdown                                               *
 * ------------------------------------------------------------------ */

/* The signal handlers' view of the daemon. SIGUSR1 may arrive on any
 * thread at any time: it loads the scheduler inside a busy count, and
 * shutdown clears the pointer and waits for the count to drop before the
 * scheduler goes, so a handler never touches a stopped scheduler. */
static _Atomic(struct sched *) mnt_sig_sched;
static atomic_int mnt_sig_busy;
static atomic_int mnt_sig_ctl = -1;   /* write end of the control pipe */

static void on_usr1(int sig)
{
	int saved = errno;
	struct sched *s;

	(void)sig;
	atomic_fetch_add(&mnt_sig_busy, 1);
	s = atomic_load(&mnt_sig_sched);
	if (s)
		sched_sync_now(s);
	atomic_fetch_sub(&mnt_sig_busy, 1);
	errno = saved;
}

static void on_stop(int sig)
{
	int saved = errno, fd = atomic_load(&mnt_sig_ctl);
	unsigned char c = (unsigned char)sig;

	if (fd >= 0 && write(fd, &c, 1) < 0) {
		/* pipe full: a stop is already pending */
	}
	errno = saved;
}

static void sched_halt(struct mnt *m)
{
	if (!m->sched)
		return;
	atomic_store(&mnt_sig_sched, NULL);
	while (atomic_load(&mnt_sig_busy))
		sched_yield();
	sched_stop(&m->sched);
}

/* The control thread turns SIGINT/SIGTERM/SIGHUP into an orderly stop: the
 * scheduler stops first while the mount still answers (a sync worker may
 * be inside a notify call that waits for a FUSE reply), then the session
 * loop is ended. */
static void *ctl_main(void *arg)
{
	struct mnt *m = arg;
	unsigned char c = 0;

	for (;;) {
		ssize_t r = read(m->ctl[0], &c, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || c == 0)
			return NULL;
		break;
	}
	log_info("mount %s: signal %d, stopping", m->mountpoint, c);
	sched_halt(m);
	fuse_session_exit(m->se);
	/* The loop's main thread sleeps in sem_wait until a signal interrupts
	 * it; repeat the signal until it has noticed (it may have been just
	 * about to sleep when the first arrived). */
	while (!atomic_load(&m->loop_done)) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		pthread_kill(m->main_thread, SIGTERM);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

struct saved_signals {
	struct sigaction old[5];
};

static const int mnt_signals[5] = { SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGPIPE };

static int signals_install(struct saved_signals *sv)
{
	for (size_t i = 0; i < 5; i++) {
		struct sigaction sa;

		memset(&sa, 0, sizeof sa);
		sigemptyset(&sa.sa_mask);
		/* No SA_RESTART for the stop signals: the kernel would restart the
		 * loop's sem_wait (a futex wait without timeout) instead of letting
		 * it return EINTR and see that the session ended. */
		sa.sa_flags = mnt_signals[i] == SIGUSR1 ? SA_RESTART : 0;
		sa.sa_handler = mnt_signals[i] == SIGUSR1 ? on_usr1
			      : mnt_signals[i] == SIGPIPE ? SIG_IGN : on_stop;
		if (sigaction(mnt_signals[i], &sa, &sv->old[i]))
			return -errno;
	}
	return 0;
}

static void signals_restore(const struct saved_signals *sv)
{
	for (size_t i = 0; i < 5; i++)
		sigaction(mnt_signals[i], &sv->old[i], NULL);
}

/* Threads the daemon starts (sync workers, the control thread) leave the
 * stop signals to the main thread: there they interrupt the session loop. */
static void block_stop_signals(sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

/* ------------------------------------------------------------------ *
 * mnt_run                                                            *
 * ------------------------------------------------------------------ */

static int build_args(const struct mnt *m, const struct mnt_opts *o, struct fuse_args *args)
{
	char opts[256];

	snprintf(opts, sizeof opts, "fsname=maildisk,subtype=maildisk,ro,default_permissions%s",
		 m->as_root ? ",allow_other" : "");
	if (fuse_opt_add_arg(args, "maildisk") || fuse_opt_add_arg(args, "-o") ||
	    fuse_opt_add_arg(args, opts))
		return -ENOMEM;
	if (o->fuse_opts && *o->fuse_opts &&
	    (fuse_opt_add_arg(args, "-o") || fuse_opt_add_arg(args, o->fuse_opts)))
		return -ENOMEM;
	return 0;
}

/* fuse_daemonize forked: the store's lock file still names the process
 * that took the lock, and `maildisk sync` signals that PID. The flock
 * itself came along (it belongs to the open file, not the process). The
 * format is store_lock's: the PID in decimal and a newline. */
static void lock_repid(const struct store *st)
{
	char path[PATH_MAX], pid[32];
	int fd, n;

	if (store_path(st, "lock", path, sizeof path))
		return;
	fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		log_error("open(%s): %s", path, strerror(errno));
		return;
	}
	n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_error("writing %s: %s", path, strerror(errno));
	close(fd);
}

static int tree_load(struct mnt *m)
{
	struct index *ix = NULL;
	int rc;

	rc = mnt_tree_create(m->cfg, &m->tree);
	if (rc)
		return rc;
	/* A connection of its own, closed before fuse_daemonize forks: SQLite
	 * connections must not cross a fork. */
	rc = store_index_open(m->st, true, &ix);
	if (rc) {
		log_error("mount: cannot open the index of %s: %s", store_root(m->st),
			  index_strerror(rc));
		return rc;
	}
	rc = mnt_refresh_tree(m, ix);
	index_close(&ix);
	return rc;
}

static void mnt_free(struct mnt *m)
{
	mnt_dirs_release(m);
	pthread_mutex_destroy(&m->dir_lock);
	for (size_t i = 0; i < MNT_HINTS; i++)
		free(m->hints[i].path);
	pthread_mutex_destroy(&m->hint_lock);
	mnt_status_free(m);
	parts_cursors_destroy(&m->cursors);
	mnt_exec_destroy(&m->exec);
	mnt_tree_destroy(&m->tree);
	pthread_rwlock_destroy(&m->lock);
	free(m->mountpoint);
	for (int i = 0; i < 2; i++)
		if (m->ctl[i] >= 0)
			close(m->ctl[i]);
	if (m->index_fd >= 0)
		close(m->index_fd);
}

/* What mnt_run's steps share: the daemon and what run_stop undoes. */
struct run {
	struct mnt m;
	struct fuse_args args;
	struct saved_signals sv;
	struct fuse_loop_config *lc;      /* owned, NULL until run_serve */
	bool mounted, signals, ctl_started;
	pthread_t ctl_thread;
};

static void run_init(struct run *r, struct store *st, const struct settings *cfg)
{
	struct mnt *m = &r->m;

	memset(r, 0, sizeof *r);
	r->args = (struct fuse_args)FUSE_ARGS_INIT(0, NULL);
	m->ctl[0] = m->ctl[1] = -1;
	m->index_fd = -1;
	m->st = st;
	m->cfg = cfg;
	m->as_root = geteuid() == 0;
	m->self_uid = geteuid();
	m->self_gid = getegid();
	m->started = time(NULL);
	m->main_thread = pthread_self();
	atomic_init(&m->notify_ok, false);
	atomic_init(&m->loop_done, false);
	pthread_rwlock_init(&m->lock, NULL);
	pthread_mutex_init(&m->dir_lock, NULL);
	pthread_mutex_init(&m->hint_lock, NULL);
	atomic_init(&m->gen, 0);
	mnt_notify_init(m);
}

/* A FUSE mount whose daemon died (SIGKILL, a crash) stays in place and
 * answers every request with ENOTCONN, so a restart would fail on it or
 * mount over it. statfs always reaches the daemon, where stat may be
 * answered from the kernel's cache. Root detaches it; anyone else is told
 * how. A live mount is never touched. */
/* fusermount3 -u -z mp, as this process's user (a user's own mount); true
 * when it succeeded. */
static bool fusermount_detach(const char *mp)
{
	char *const argv[] = { "fusermount3", "-u", "-z", "--", (char *)mp, NULL };
	struct child_user me;
	pid_t pid;
	int status;
	bool ok;

	if (child_user_init(&me, geteuid(), getegid(), NULL) < 0)
		return false;
	ok = child_spawn(&me, argv, environ, -1, -1, false, &pid) == 0 &&
	     waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	child_user_release(&me);
	return ok;
}

static int clear_dead_mount(const char *mp)
{
	struct statfs sf;

	if (statfs(mp, &sf) == 0 || errno != ENOTCONN)
		return 0;
	if (umount2(mp, MNT_DETACH) == 0 || (errno == EPERM && fusermount_detach(mp))) {
		log_info("mount point %s held a mount whose daemon had died; detached it", mp);
		return 0;
	}
	log_error("mount point %s holds a mount whose daemon died (%s): run fusermount3 -u -z %s",
		  mp, strerror(ENOTCONN), mp);
	return -1;
}

/* Whether path is dir or below it. */
static bool path_within(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/' || (n == 1 && dir[0] == '/'));
}

/* A mount point that is not a directory, or that would hide the store (the
 * daemon reads its files by path) or sit inside it (the store's walks
 * would enter the mount), is refused, said why. mp is a realpath. */
static bool mountpoint_unfit(const char *mp, const char *store)
{
	struct stat st;
	char *root;
	bool unfit = false;

	if (stat(mp, &st) == 0 && !S_ISDIR(st.st_mode)) {
		log_error("mount point %s is not a directory", mp);
		return true;
	}
	root = realpath(store, NULL);     /* NULL: not made yet, nothing to hide */
	if (root && path_within(root, mp)) {
		log_error("mount point %s would hide the store %s, which the mount reads from: "
			  "mount it elsewhere, or move the store ([store] path)", mp, root);
		unfit = true;
	} else if (root && path_within(mp, root)) {
		log_error("mount point %s is inside the store %s: mount it elsewhere", mp, root);
		unfit = true;
	}
	free(root);
	return unfit;
}

/* Step 1: everything the mount serves from, before anything is mounted. */
static int run_prepare(struct run *r, const struct mnt_opts *o)
{
	struct mnt *m = &r->m;

	if (clear_dead_mount(o->mountpoint))
		return -1;
	/* fuse_daemonize moves to /: every path we keep must be absolute. */
	m->mountpoint = realpath(o->mountpoint, NULL);
	if (!m->mountpoint) {
		log_error("mount point %s: %s", o->mountpoint, strerror(errno));
		return -1;
	}
	if (mountpoint_unfit(m->mountpoint, store_root(m->st)))
		return -1;
	if (!o->foreground && store_root(m->st)[0] != '/') {
		log_error("store %s: a relative store path does not survive daemonising; use -f or an absolute path",
			  store_root(m->st));
		return -1;
	}
	if (mnt_status_init(m) || parts_cursors_create(&m->cursors)) {
		log_error("mount: out of memory");
		return -1;
	}
	if (tree_load(m))
		return -1;
	mnt_warm_open(m);
	if (mnt_exec_create(m->cfg, m->mountpoint, &m->exec)) {
		log_error("mount: out of memory preparing on_change commands");
		return -1;
	}
	return 0;
}

/* Step 2: the session, the signal handlers, the mount, daemonising. */
static int run_session(struct run *r, const struct mnt_opts *o)
{
	struct mnt *m = &r->m;
	int rc;

	if (build_args(m, o, &r->args)) {
		log_error("mount: out of memory building FUSE options");
		return -1;
	}
	m->se = fuse_session_new(&r->args, &mnt_ops, sizeof mnt_ops, m);
	if (!m->se) {
		log_error("mount %s: bad FUSE options (%s)", m->mountpoint,
			  o->fuse_opts ? o->fuse_opts : "none given");
		return -1;
	}
	if (pipe2(m->ctl, O_CLOEXEC)) {
		log_error("mount: pipe: %s", strerror(errno));
		return -1;
	}
	/* A signal handler must never block on a full pipe. */
	fcntl(m->ctl[1], F_SETFL, fcntl(m->ctl[1], F_GETFL) | O_NONBLOCK);
	atomic_store(&mnt_sig_ctl, m->ctl[1]);
	rc = signals_install(&r->sv);
	if (rc) {
		log_error("mount: sigaction: %s", strerror(-rc));
		return -1;
	}
	r->signals = true;
	if (fuse_session_mount(m->se, m->mountpoint)) {
		log_error("mount %s: mounting failed (see the message above)", m->mountpoint);
		return -1;
	}
	r->mounted = true;
	if (fuse_daemonize(o->foreground)) {
		log_error("mount %s: cannot daemonise", m->mountpoint);
		return -1;
	}
	if (!o->foreground) {
		log_use_syslog(true);
		lock_repid(m->st);
	}
	m->main_thread = pthread_self();
	atomic_store(&m->notify_ok, true);
	return 0;
}

/* Step 3: the sync scheduler and the control thread, with the stop
 * signals blocked so that they stay with the main thread. */
static int run_threads(struct run *r, const struct mnt_opts *o)
{
	struct mnt *m = &r->m;
	sigset_t oldmask;
	int rc;

	block_stop_signals(&oldmask);
	if (o->sync) {
		rc = sched_start(m->st, m->cfg, &m->obs, &m->sched);
		if (rc) {
			pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
			log_error("mount %s: cannot start syncing: %s", m->mountpoint, strerror(-rc));
			return -1;
		}
		atomic_store(&mnt_sig_sched, m->sched);
	}
	rc = pthread_create(&r->ctl_thread, NULL, ctl_main, m);
	/* After daemonising, like every thread of ours (fork keeps none). */
	if (rc == 0 && m->cfg->keep_cpus_awake && cpu_awake_start(&m->awake, CPU_AWAKE_DEVICE))
		log_info("mount: cannot start the thread that keeps CPUs awake while serving");
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
	if (rc) {
		log_error("mount: cannot start the control thread: %s", strerror(rc));
		return -1;
	}
	r->ctl_started = true;
	return 0;
}

/* Step 4: serve until unmounted or stopped. 0 or 1, mnt_run's result. */
static int run_serve(struct run *r, const struct mnt_opts *o)
{
	struct mnt *m = &r->m;
	int rc;

	log_info("mounted %s at %s%s", store_root(m->st), m->mountpoint,
		 o->sync ? ", syncing in the background" : "");
	r->lc = fuse_loop_cfg_create();
	if (!r->lc) {
		log_error("mount: out of memory");
		return 1;
	}
	fuse_loop_cfg_set_clone_fd(r->lc, 0);
	/* Each worker holds an index connection with its own page cache (up
	 * to 2 MB): ten of them made half the daemon's memory after one read
	 * of 20,000 messages. A worker mostly waits for the disk, and the
	 * cross-file readahead lets those waits overlap, so a few suffice. */
	fuse_loop_cfg_set_max_threads(r->lc, MNT_WORKERS);
	fuse_loop_cfg_set_idle_threads(r->lc, MNT_WORKERS);
	rc = fuse_session_loop_mt(m->se, r->lc);
	if (rc) {
		log_error("mount %s: session loop ended with error %d", m->mountpoint, rc);
		return 1;
	}
	return 0;
}

/* Step 5: stop, in this order, whichever step the run got to. */
static void run_stop(struct run *r, const struct mnt_opts *o, int ret)
{
	struct mnt *m = &r->m;

	atomic_store(&m->loop_done, true);
	if (r->ctl_started) {
		unsigned char quit = 0;

		/* The control thread either stopped us (and is about to return)
		 * or still waits for a signal: tell it we are done. */
		while (write(m->ctl[1], &quit, 1) < 0 && errno == EINTR)
			;
		pthread_join(r->ctl_thread, NULL);
	}
	/* After an external unmount the scheduler is still running; notify
	 * calls now fail fast (the connection is gone). */
	sched_halt(m);
	cpu_awake_stop(&m->awake);
	atomic_store(&m->notify_ok, false);
	mnt_exec_destroy(&m->exec);
	if (r->mounted)
		fuse_session_unmount(m->se);
	if (r->signals)
		signals_restore(&r->sv);
	atomic_store(&mnt_sig_ctl, -1);
	if (m->se)
		fuse_session_destroy(m->se);
	if (r->lc)
		fuse_loop_cfg_destroy(r->lc);
	fuse_opt_free_args(&r->args);
	mnt_ix_close_mine();
	mnt_fd_close_mine();
	mnt_parts_close_mine();
	if (ret == 0)
		log_info("unmounted %s", m->mountpoint ? m->mountpoint : o->mountpoint);
	mnt_free(m);
}

int mnt_run(struct store *st, const struct settings *cfg, const struct mnt_opts *o)
{
	struct run r;
	int ret = 1;

	run_init(&r, st, cfg);
	if (run_prepare(&r, o) == 0 && run_session(&r, o) == 0 && run_threads(&r, o) == 0)
		ret = run_serve(&r, o);
	run_stop(&r, o, ret);
	return ret;
}
