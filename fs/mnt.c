/* mnt: the read-only FUSE mount of the store (libfuse3 low-level API), and
 * the daemon around it: signals, the sync scheduler, kernel cache
 * invalidation when a sync changes something, and the on_change commands.
 *
 * Directories live in memory (mnt_tree.h, which also documents the inode
 * numbers); messages are answered from the index: lookup by (folder,
 * view_name), getattr and read by row id, readdir by iterating the
 * folder's visible rows. Nothing here scans the store's directories.
 * There are no open handles (FUSE no-open and no-opendir, op_open): the
 * kernel caches file pages and listings itself, a READ finds its backing
 * file by inode, a READDIR its listing by directory, and .status is a
 * snapshot served by offset. Each thread
 * (FUSE workers, and sync workers when they report a change) uses its own
 * read-only index connection, opened on first use and closed when the
 * thread exits.
 *
 * Messages never change once stored, so entries and attributes are cached
 * by the kernel for a day and file pages are kept across opens; what does
 * change (directory listings and mtimes, a message leaving) is invalidated
 * from the sync side after the index commit, with no lock held: a notify
 * call blocks on the kernel's directory lock while a lookup in that
 * directory waits for us, so holding a lock a FUSE handler takes would
 * deadlock (libfuse fuse_lowlevel.h, notify_inval_entry). */
#define FUSE_USE_VERSION 312

#include "mnt.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../cache/buf.h"
#include "../cache/index.h"
#include "../cache/log.h"
#include "../fetch/scheduler.h"
#include "../fetch/sync.h"
#include "mnt_exec.h"
#include "mnt_tree.h"

/* Messages are immutable: their names and attributes can be cached long. */
#define MNT_MSG_TIMEOUT 86400.0
/* Directories are invalidated on every change; the timeout only bounds a
 * change the daemon did not see (a restore from trash by another process). */
#define MNT_DIR_TIMEOUT 3600.0
#define MNT_NAMES_MAX ((size_t)1 << 30)
#define MNT_STATUS_MAX ((size_t)16 << 20)
#define MNT_CHAIN_MAX 64
/* Directory listings kept between the READDIR requests of one listing
 * (the kernel asks a page at a time) and for the next listing (dir_refresh
 * rebuilds them after a change): most recent first, the oldest dropped
 * when a new one needs the room. Bounds the memory listings hold (1,000,000
 * messages: about 100 MB). */
#define MNT_LISTINGS 16
/* Slots of the LOOKUP -> READ path hints (msg_hint). */
#define MNT_HINTS 64
/* FUSE worker threads (fuse_session_loop_mt). */
#define MNT_WORKERS 6

struct mnt_dir;
struct status_snap;

struct msg_hint {
	uint64_t ino;
	int64_t folder_id;
	char *path;        /* owned: store-relative, NULL when empty */
};

struct mnt {
	struct store *st;                 /* borrowed */
	const struct settings *cfg;       /* borrowed */
	char *mountpoint;                 /* owned: absolute */
	struct fuse_session *se;          /* owned */
	bool as_root;                     /* root: allow_other, per-user owners */
	uid_t self_uid;
	gid_t self_gid;
	int64_t started;                  /* mtime of directories with no folder yet */
	pthread_rwlock_t lock;
	struct mnt_tree *tree;            /* owned, protected by lock */
	atomic_uint_fast64_t gen;         /* bumped by every change report: listings older are stale */
	pthread_mutex_t dir_lock;
	struct mnt_dir *listings[MNT_LISTINGS];   /* owned references, protected by dir_lock */
	struct status_snap *snaps;        /* owned: one per cfg->users, each with its own lock */
	pthread_mutex_t hint_lock;
	struct msg_hint hints[MNT_HINTS]; /* protected by hint_lock */
	struct mnt_exec *exec;            /* owned */
	struct sched *sched;              /* owned; touched by the main and control threads only */
	struct sync_observer obs;
	bool no_open, no_opendir;         /* set by op_init: FUSE_CAP_NO_OPEN(DIR)_SUPPORT */
	int index_fd;                     /* owned, -1 if none: index.db, for index_warm only */
	atomic_int_fast64_t warm_checked; /* CLOCK_MONOTONIC ns of index_warm's last look */
	atomic_int_fast64_t ra_last;      /* msg_readahead: row id of the last message begun */
	atomic_int_fast64_t ra_upto;      /* msg_readahead: read ahead up to this row id */
	atomic_bool notify_ok;            /* the session takes notifications */
	atomic_bool loop_done;            /* fuse_session_loop_mt returned */
	pthread_t main_thread;
	int ctl[2];                       /* control pipe: signals -> control thread */
};

/* ------------------------------------------------------------------ *
 * Per-thread index connections                                       *
 * ------------------------------------------------------------------ */

static pthread_key_t mnt_ix_key;
static pthread_once_t mnt_ix_once = PTHREAD_ONCE_INIT;
static bool mnt_ix_key_ok;

static void ix_destructor(void *p)
{
	struct index *ix = p;

	index_close(&ix);
}

static void ix_key_init(void)
{
	mnt_ix_key_ok = pthread_key_create(&mnt_ix_key, ix_destructor) == 0;
}

/* This thread's read-only connection; NULL (logged) when it cannot open. */
static struct index *mnt_ix(struct mnt *m)
{
	struct index *ix;

	pthread_once(&mnt_ix_once, ix_key_init);
	if (!mnt_ix_key_ok)
		return NULL;
	ix = pthread_getspecific(mnt_ix_key);
	if (ix)
		return ix;
	if (store_index_open(m->st, true, &ix)) {
		log_error("mount: cannot open the index of %s", store_root(m->st));
		return NULL;
	}
	if (pthread_setspecific(mnt_ix_key, ix)) {
		index_close(&ix);
		return NULL;
	}
	return ix;
}

static void mnt_ix_close_mine(void)
{
	struct index *ix;

	pthread_once(&mnt_ix_once, ix_key_init);
	if (!mnt_ix_key_ok)
		return;
	ix = pthread_getspecific(mnt_ix_key);
	if (ix) {
		pthread_setspecific(mnt_ix_key, NULL);
		index_close(&ix);
	}
}

/* ------------------------------------------------------------------ *
 * Keeping the index in the page cache                                *
 * ------------------------------------------------------------------ */

/* Once the kernel has dropped the index's pages (memory pressure,
 * drop_caches), SQLite reads them back 4 KB at a time as the B-trees are
 * walked, each a disk wait, and ten worker connections defeat the
 * kernel's sequential readahead: cold, a LOOKUP and a READ cost about two
 * such waits a message, which doubled the time to read 20,000 messages.
 * The index is small beside the mail (7.7 MB for 293 MB here), so when a
 * listing starts or a message is looked up and a few sampled pages of it
 * are not cached, the whole file (up to MNT_WARM_MAX) is read back in one
 * asynchronous sweep. Looks at most every 100 ms (eight reads that do not
 * wait, a few microseconds). */
#define MNT_WARM_MAX ((off_t)256 << 20)
#define MNT_WARM_EVERY_NS 100000000LL
#define MNT_WARM_SAMPLES 8

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* True when every sampled page of fd's first len bytes is in the page
 * cache (a read that would have to wait for the disk fails EAGAIN). */
static bool file_cached(int fd, off_t len)
{
	char c;

	for (int i = 0; i < MNT_WARM_SAMPLES; i++) {
		struct iovec iov = { &c, 1 };
		off_t at = len / MNT_WARM_SAMPLES * i;

		if (preadv2(fd, &iov, 1, at, RWF_NOWAIT) < 0)
			return errno != EAGAIN;   /* no RWF_NOWAIT here: never warm */
	}
	return true;
}

static void warm_fd(int fd)
{
	struct stat st;
	off_t len;

	if (fstat(fd, &st) || st.st_size <= 0)
		return;
	len = st.st_size < MNT_WARM_MAX ? st.st_size : MNT_WARM_MAX;
	if (!file_cached(fd, len))
		posix_fadvise(fd, 0, len, POSIX_FADV_WILLNEED);
}

static void index_warm(struct mnt *m)
{
	int64_t now = mono_ns(), last = atomic_load(&m->warm_checked);
	char path[PATH_MAX];
	int fd;

	if (m->index_fd < 0 || now - last < MNT_WARM_EVERY_NS ||
	    !atomic_compare_exchange_strong(&m->warm_checked, &last, now))
		return;
	warm_fd(m->index_fd);
	/* The WAL holds the latest commits until a checkpoint moves them. */
	if (store_path(m->st, "index.db-wal", path, sizeof path) == 0 &&
	    (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) >= 0) {
		warm_fd(fd);
		close(fd);
	}
}

/* ------------------------------------------------------------------ *
 * Attributes                                                         *
 * ------------------------------------------------------------------ */

static void owner_of(const struct mnt *m, const struct user_settings *u, uid_t *uid, gid_t *gid)
{
	/* Unprivileged, the daemon can only serve its own user: everything is
	 * shown as its own, or its user could not read it under
	 * default_permissions. */
	if (m->as_root && u) {
		*uid = u->uid;
		*gid = u->gid;
	} else {
		*uid = m->self_uid;
		*gid = m->self_gid;
	}
}

static void set_times(struct stat *st, int64_t t)
{
	st->st_mtim.tv_sec = (time_t)t;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

/* Caller holds m->lock. */
static void node_stat(const struct mnt *m, const struct mnt_node *n, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = n->ino;
	st->st_blksize = 4096;
	owner_of(m, n->user, &st->st_uid, &st->st_gid);
	switch (n->kind) {
	case MNT_NODE_ROOT:
		/* As root, users may pass through / to their own directory but not
		 * list the others' names. */
		st->st_mode = S_IFDIR | (m->as_root ? 0711 : 0500);
		break;
	case MNT_NODE_STATUS:
		st->st_mode = S_IFREG | 0400;
		st->st_nlink = 1;
		break;
	default:
		st->st_mode = S_IFDIR | 0500;
		break;
	}
	if (S_ISDIR(st->st_mode))
		st->st_nlink = 2 + n->n_subdirs;
	set_times(st, n->mtime ? n->mtime : m->started);
}

static int64_t msg_time(const struct index_msg *msg)
{
	return msg->date > 0 ? msg->date : msg->internal_date > 0 ? msg->internal_date : 0;
}

static void file_stat(struct stat *st, uint64_t ino, int64_t size, int64_t mtime, uid_t uid,
		      gid_t gid)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_mode = S_IFREG | 0400;
	st->st_nlink = 1;
	st->st_uid = uid;
	st->st_gid = gid;
	st->st_size = size;
	st->st_blksize = 4096;
	st->st_blocks = (size + 511) / 512;
	set_times(st, mtime);
}

/* What a handler needs of a folder's node, copied under the lock. */
struct folder_info {
	uint64_t ino;
	uid_t uid;
	gid_t gid;
	const char *account;      /* borrowed: set once, freed only with the tree */
	const char *folder_name;  /* borrowed, likewise */
	uint64_t removals;
};

static bool folder_info(struct mnt *m, int64_t folder_id, struct folder_info *fi)
{
	const struct mnt_node *n;

	pthread_rwlock_rdlock(&m->lock);
	n = mnt_tree_by_folder(m->tree, folder_id);
	if (n) {
		fi->ino = n->ino;
		owner_of(m, n->user, &fi->uid, &fi->gid);
		fi->account = n->account;
		fi->folder_name = n->folder_name;
		fi->removals = n->removals;
	}
	pthread_rwlock_unlock(&m->lock);
	return n != NULL;
}

/* Reads a message row and its folder's owner; a negative errno. */
static int msg_load(struct mnt *m, fuse_ino_t ino, struct index_msg *msg, struct folder_info *fi)
{
	struct index *ix = mnt_ix(m);
	int64_t id = MNT_MSG_OF_INO(ino);
	int rc;

	if (!ix)
		return -EIO;
	if (id <= 0)
		return -ENOENT;
	rc = index_msg_get(ix, id, msg);
	if (rc)
		return rc;
	if (!folder_info(m, msg->folder_id, fi)) {
		index_msg_release(msg);
		return -ENOENT;
	}
	return 0;
}

/* ------------------------------------------------------------------ *
 * /<user>/.status                                                    *
 * ------------------------------------------------------------------ */

static void fmt_local(char *out, size_t len, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (t <= 0 || !localtime_r(&tt, &tm) || !strftime(out, len, "%Y-%m-%d %H:%M:%S %z", &tm))
		snprintf(out, len, "never");
}

static int status_folder(struct buf *b, const struct index_folder *f)
{
	char when[64];

	fmt_local(when, sizeof when, f->synced_at);
	return buf_printf(b,
			  "  folder %s\n"
			  "    messages: %lld\n"
			  "    in trash: %lld\n"
			  "    last sync: %s\n"
			  "    last error: %s\n"
			  "    held deletions: %s\n",
			  f->name, (long long)f->n_active, (long long)f->n_trashed, when,
			  f->last_error ? f->last_error : "none", f->held ? f->held : "none");
}

/* The account's latest sync run: an account that never logs in has no
 * folder rows, and this is where its error shows. */
static int status_run(struct index *ix, struct buf *b, const char *user, const char *account)
{
	int64_t started = 0, finished = 0;
	char *error = NULL, when[64];
	int rc;

	if (index_sync_last(ix, user, account, NULL, &started, &finished, &error) != 0)
		return buf_printf(b, "  last run: never\n");
	if (!finished) {
		fmt_local(when, sizeof when, started);
		rc = buf_printf(b, "  last run: running since %s\n", when);
	} else {
		fmt_local(when, sizeof when, finished);
		rc = buf_printf(b, "  last run: %s, %s%s\n", when, error ? "error: " : "ok",
				error ? error : "");
	}
	free(error);
	return rc;
}

/* The text of /<user>/.status: per account, each folder's counts, last
 * sync, last error and held deletions. It holds no clock reading of its
 * own, so the size getattr reports is the size a read finds unless a sync
 * ran in between. *mtime_r: the latest sync or change. */
static int status_text(struct mnt *m, const char *user, struct buf *b, int64_t *mtime_r)
{
	struct index *ix = mnt_ix(m);
	struct index_folder *fs = NULL;
	size_t n = 0;
	int64_t mt = 0;
	int rc;

	*mtime_r = m->started;
	if (!ix)
		return -EIO;
	rc = index_folder_list(ix, user, NULL, &fs, &n);
	if (rc)
		return rc;
	rc = buf_printf(b, "# maildisk status of %s\n", user);
	for (size_t i = 0; !rc && i < m->cfg->n_accounts; i++) {
		const struct account_settings *a = &m->cfg->accounts[i];
		bool any = false;

		if (strcmp(a->user, user) != 0)
			continue;
		rc = buf_printf(b, "\naccount %s\n", a->name);
		if (!rc)
			rc = status_run(ix, b, user, a->name);
		for (size_t j = 0; !rc && j < n; j++) {
			if (strcmp(fs[j].account, a->name) != 0)
				continue;
			any = true;
			rc = status_folder(b, &fs[j]);
		}
		if (!rc && !any)
			rc = buf_printf(b, "  not synced yet\n");
	}
	for (size_t j = 0; !rc && j < n; j++) {
		if (!settings_account(m->cfg, user, fs[j].account)) {
			if (j == 0 || strcmp(fs[j - 1].account, fs[j].account) != 0)
				rc = buf_printf(b, "\naccount %s (no longer in the config)\n",
						fs[j].account);
			if (!rc)
				rc = status_folder(b, &fs[j]);
		}
	}
	for (size_t j = 0; j < n; j++) {
		if (fs[j].synced_at > mt)
			mt = fs[j].synced_at;
		if (fs[j].changed_at > mt)
			mt = fs[j].changed_at;
	}
	if (mt)
		*mtime_r = mt;
	index_folder_array_free(&fs, n);
	return rc ? -ENOMEM : 0;
}

/* /<user>/.status without open handles (FUSE no-open: the kernel sends
 * no OPEN and keeps the file's pages cached). The text is a snapshot,
 * replaced when a LOOKUP or GETATTR finds the index says something else;
 * READ serves the snapshot by offset and never rebuilds it. The attribute
 * timeout is 0, so the kernel asks GETATTR before every read(2), and a new
 * snapshot gets a new size or mtime (its generation is the mtime's
 * nanoseconds) so that the kernel drops pages of the old one
 * (FUSE_CAP_AUTO_INVAL_DATA) instead of mixing them with the new. A
 * read(2) thus sees one snapshot whole, unless another process's stat
 * replaces it while the READs of that one call are in flight, which
 * takes a sync committing in that same instant and a text longer than
 * the kernel's first READ (128 KB). */
struct status_snap {
	pthread_mutex_t lock;
	char *text;        /* owned, protected by lock; NULL before the first build */
	size_t len;        /* protected by lock */
	int64_t mtime;     /* protected by lock */
	uint64_t gen;      /* protected by lock: bumped when the text changes */
};

static struct status_snap *status_snap_of(struct mnt *m, const struct user_settings *u)
{
	return &m->snaps[u - m->cfg->users];
}

/* Builds the text afresh and makes it the snapshot when it differs; *st
 * gets its size and mtime. A negative errno (st untouched). */
static int status_refresh(struct mnt *m, const struct user_settings *u, struct stat *st)
{
	struct status_snap *sn = status_snap_of(m, u);
	struct buf b = BUF_INIT(MNT_STATUS_MAX);
	char *old = NULL, *text;
	size_t len;
	int64_t mt;
	int rc = status_text(m, u->name, &b, &mt);

	len = b.len;
	text = rc ? NULL : buf_detach(&b);
	buf_release(&b);
	if (rc || !text) {
		free(text);
		return rc ? rc : -ENOMEM;
	}
	pthread_mutex_lock(&sn->lock);
	if (!sn->text || sn->len != len || sn->mtime != mt || memcmp(sn->text, text, len) != 0) {
		old = sn->text;
		sn->text = text;
		sn->len = len;
		sn->mtime = mt;
		sn->gen++;
		text = NULL;
	}
	st->st_size = (off_t)sn->len;
	set_times(st, sn->mtime);
	st->st_mtim.tv_nsec = (long)(sn->gen % 1000000000u);
	pthread_mutex_unlock(&sn->lock);
	free(old);
	free(text);
	return 0;
}

static void status_read(fuse_req_t req, struct mnt *m, const struct user_settings *u, size_t size,
			off_t off)
{
	struct status_snap *sn = status_snap_of(m, u);
	char *copy = NULL;
	size_t n = 0;
	bool have;

	pthread_mutex_lock(&sn->lock);
	have = sn->text != NULL;
	pthread_mutex_unlock(&sn->lock);
	if (!have) {
		struct stat st;
		int rc = status_refresh(m, u, &st);

		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	pthread_mutex_lock(&sn->lock);
	if (off >= 0 && (size_t)off < sn->len)
		n = sn->len - (size_t)off < size ? sn->len - (size_t)off : size;
	/* Reply from a copy: the snapshot may be replaced the moment the lock
	 * is released. */
	if (n && (copy = malloc(n)))
		memcpy(copy, sn->text + off, n);
	pthread_mutex_unlock(&sn->lock);
	if (n && !copy) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fuse_reply_buf(req, copy, n);
	free(copy);
}

/* ------------------------------------------------------------------ *
 * Directory snapshots for readdir                                    *
 * ------------------------------------------------------------------ */

struct mnt_dirent {
	uint64_t ino;
	int64_t size;
	int64_t mtime;
	uint32_t name_off;   /* into mnt_dir.names */
	uint32_t nlink;
	uint32_t mode;
	uid_t uid;
	gid_t gid;
	bool no_attrs;       /* readdirplus gives no attributes (.status, ".", "..") */
};

/* A directory as read from the tree and the index (FUSE no-opendir: there
 * is no handle to hang it on), kept for the next READDIRs of it: a
 * listing that starts (offset 0) gets a fresh one when anything changed
 * since, one that goes on gets the kept one, whichever it is (the
 * offsets name entries, dir_cookie). The kernel caches the entries
 * (FOPEN_CACHE_DIR) and asks again only after an invalidation. Shared by
 * reference count: m->listings holds one, each READDIR in progress one. */
struct mnt_dir {
	struct mnt_dirent *ents;  /* owned */
	size_t n, cap;
	struct buf names;         /* NUL-separated */
	uint64_t ino;
	uint64_t gen;             /* m->gen when it was built */
	int64_t folder_id;        /* 0: no messages in this directory */
	uint64_t removals;        /* the folder's removal count when the snapshot began */
	atomic_uint refs;
};

static void dir_put(struct mnt_dir *d)
{
	if (!d || atomic_fetch_sub(&d->refs, 1) != 1)
		return;
	free(d->ents);
	buf_release(&d->names);
	free(d);
}

static int dir_add(struct mnt_dir *d, const char *name, const struct stat *st, bool no_attrs)
{
	struct mnt_dirent *e;
	size_t off = d->names.len;
	int rc;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct mnt_dirent *p = realloc(d->ents, cap * sizeof *p);

		if (!p)
			return -ENOMEM;
		d->ents = p;
		d->cap = cap;
	}
	rc = buf_append(&d->names, name, strlen(name) + 1);
	if (rc)
		return rc == -E2BIG ? -ENOMEM : rc;
	e = &d->ents[d->n++];
	e->ino = st->st_ino;
	e->size = st->st_size;
	e->mtime = st->st_mtim.tv_sec;
	e->name_off = (uint32_t)off;
	e->nlink = (uint32_t)st->st_nlink;
	e->mode = st->st_mode;
	e->uid = st->st_uid;
	e->gid = st->st_gid;
	e->no_attrs = no_attrs;
	return 0;
}

struct msg_walk {
	struct mnt_dir *d;
	uid_t uid;
	gid_t gid;
};

static int dir_add_msg(void *ctx, const struct index_msg *msg)
{
	struct msg_walk *w = ctx;
	struct stat st;

	if (msg->id <= 0 || msg->id >= MNT_ID_MAX || !mnt_tree_name_ok(msg->view_name))
		return 0;
	file_stat(&st, MNT_INO_OF_MSG(msg->id), msg->size, msg_time(msg), w->uid, w->gid);
	return dir_add(w->d, msg->view_name, &st, false);
}

/* ------------------------------------------------------------------ *
 * FUSE operations                                                    *
 * ------------------------------------------------------------------ */

static void reply_rofs(fuse_req_t req, const char *op)
{
	log_info("read-only mount: %s refused", op);
	fuse_reply_err(req, EROFS);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct mnt *m = userdata;

	/* Lookups and listings of one directory may run in parallel: every
	 * answer comes from a snapshot or one index read. */
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* The kernel's "auto" mode stays: it asks READDIRPLUS for a listing
	 * with no cached entries, which is what makes a cold `ls -l` need no
	 * LOOKUP a file, and plain READDIR once it has them. READDIRPLUS for
	 * every page made the first listdir of 1,000,000 messages take 11.7 s
	 * instead of 2.0 s here (a kernel inode for every entry). */
	/* Nothing is ever written: no write-back cache to keep coherent. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* No POSIX ACLs: permissions are the mode bits (default_permissions),
	 * and the ACL names get "not supported" like every other name outside
	 * user.mail.* (xattr_foreign_err), which `ls` remembers. With
	 * FUSE_CAP_POSIX_ACL the kernel cached our "no ACL" (ENODATA) instead,
	 * but forgets it whenever a READDIRPLUS entry refreshes an inode, and
	 * `ls -l` then asked it again for every file. */
	conn->want &= ~FUSE_CAP_POSIX_ACL;
	/* No OPEN, FLUSH, RELEASE, OPENDIR or RELEASEDIR at all (op_open,
	 * op_opendir): 20,000 messages read warm took 0.8 to 1.9 s through
	 * the mount against 0.18 s directly with them. */
	m->no_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
	m->no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
	if (m->no_open)
		conn->want |= FUSE_CAP_NO_OPEN_SUPPORT;
	if (m->no_opendir)
		conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
	/* Cached pages of a file whose size or mtime changed are dropped: what
	 * keeps .status current (status_refresh). Messages never change. */
	if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	/* Message bytes go from the backing file's page cache to the kernel
	 * through a pipe, without a copy through our memory (op_read). */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
}

static void entry_of_node(const struct mnt *m, const struct mnt_node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof *e);
	node_stat(m, n, &e->attr);
	e->ino = n->ino;
	e->entry_timeout = MNT_DIR_TIMEOUT;
	/* .status changes with every sync and has no notify: never cached. */
	e->attr_timeout = n->kind == MNT_NODE_STATUS ? 0 : MNT_DIR_TIMEOUT;
}

/* Where a LOOKUP just found a message's file, for the READ that mostly
 * follows: it opens the file without reading the row again. Only a hint:
 * a file that a sync moved since is not there any more (ENOENT) and the
 * row is read after all; the store never gives a file name to another
 * message. */
static void hint_put(struct mnt *m, uint64_t ino, int64_t folder_id, const char *path)
{
	struct msg_hint *h = &m->hints[(ino >> 2) % MNT_HINTS];
	char *copy = strdup(path), *old;

	if (!copy)
		return;
	pthread_mutex_lock(&m->hint_lock);
	old = h->path;
	h->ino = ino;
	h->folder_id = folder_id;
	h->path = copy;
	pthread_mutex_unlock(&m->hint_lock);
	free(old);
}

/* The hint for ino, taken out (the caller frees it), or NULL. */
static char *hint_take(struct mnt *m, uint64_t ino, int64_t *folder_r)
{
	struct msg_hint *h = &m->hints[(ino >> 2) % MNT_HINTS];
	char *path = NULL;

	pthread_mutex_lock(&m->hint_lock);
	if (h->path && h->ino == ino) {
		path = h->path;
		*folder_r = h->folder_id;
		h->path = NULL;
	}
	pthread_mutex_unlock(&m->hint_lock);
	return path;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mnt *m = fuse_req_userdata(req);
	struct fuse_entry_param e;
	const struct mnt_node *dir, *c;
	const struct user_settings *u = NULL;
	int64_t folder_id;
	bool status = false;
	struct index *ix;
	struct index_msg msg = { 0 };
	uid_t uid;
	gid_t gid;
	int rc;

	if (MNT_INO_KIND(parent) == MNT_INO_MSG) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	pthread_rwlock_rdlock(&m->lock);
	dir = mnt_tree_by_ino(m->tree, parent);
	if (!dir || dir->kind == MNT_NODE_STATUS) {
		pthread_rwlock_unlock(&m->lock);
		fuse_reply_err(req, dir ? ENOTDIR : ENOENT);
		return;
	}
	c = mnt_tree_child(dir, name);
	if (c) {
		entry_of_node(m, c, &e);
		status = c->kind == MNT_NODE_STATUS;
		u = c->user;
	}
	folder_id = dir->folder_id;
	owner_of(m, dir->user, &uid, &gid);
	pthread_rwlock_unlock(&m->lock);
	if (c) {
		if (status)
			status_refresh(m, u, &e.attr);
		fuse_reply_entry(req, &e);
		return;
	}
	if (!folder_id) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	index_warm(m);
	ix = mnt_ix(m);
	if (!ix) {
		fuse_reply_err(req, EIO);
		return;
	}
	rc = index_msg_lookup(ix, folder_id, name, &msg);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (msg.id <= 0 || msg.id >= MNT_ID_MAX) {
		index_msg_release(&msg);
		fuse_reply_err(req, EOVERFLOW);
		return;
	}
	memset(&e, 0, sizeof e);
	file_stat(&e.attr, MNT_INO_OF_MSG(msg.id), msg.size, msg_time(&msg), uid, gid);
	e.ino = e.attr.st_ino;
	e.attr_timeout = MNT_MSG_TIMEOUT;
	e.entry_timeout = MNT_MSG_TIMEOUT;
	hint_put(m, e.ino, msg.folder_id, msg.store_file);
	index_msg_release(&msg);
	fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	/* Nothing is kept per inode: directories live as long as the mount,
	 * messages are read from the index each time. */
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mnt *m = fuse_req_userdata(req);
	const struct mnt_node *n;
	const struct user_settings *u = NULL;
	struct stat st;
	bool status = false;

	(void)fi;
	if (MNT_INO_KIND(ino) == MNT_INO_MSG) {
		struct index_msg msg = { 0 };
		struct folder_info f;
		int rc = msg_load(m, ino, &msg, &f);

		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
		file_stat(&st, ino, msg.size, msg_time(&msg), f.uid, f.gid);
		index_msg_release(&msg);
		fuse_reply_attr(req, &st, MNT_MSG_TIMEOUT);
		return;
	}
	pthread_rwlock_rdlock(&m->lock);
	n = mnt_tree_by_ino(m->tree, ino);
	if (n) {
		node_stat(m, n, &st);
		status = n->kind == MNT_NODE_STATUS;
		u = n->user;
	}
	pthread_rwlock_unlock(&m->lock);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (status) {
		int rc = status_refresh(m, u, &st);

		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	fuse_reply_attr(req, &st, status ? 0 : MNT_DIR_TIMEOUT);
}

static int dirent_cmp(const void *a, const void *b)
{
	const struct mnt_dirent *x = a, *y = b;

	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Reads directory ino: its nodes from the tree, its messages from the
 * index, in inode order after "." and ".." (see dir_cookie). 0 or a
 * positive errno for the reply. */
static int dir_build(struct mnt *m, fuse_ino_t ino, struct mnt_dir **r)
{
	struct mnt_dir *d;
	const struct mnt_node *n;
	struct stat st;
	int rc = 0;
	uid_t uid;
	gid_t gid;

	if (MNT_INO_KIND(ino) == MNT_INO_MSG)
		return ENOTDIR;
	d = calloc(1, sizeof *d);
	if (!d)
		return ENOMEM;
	buf_init(&d->names, MNT_NAMES_MAX);
	atomic_init(&d->refs, 1);
	d->ino = ino;
	/* Read before the content: a change reported while we read makes
	 * the listing stale, never the other way round. */
	d->gen = atomic_load(&m->gen);
	pthread_rwlock_rdlock(&m->lock);
	n = mnt_tree_by_ino(m->tree, ino);
	if (!n || n->kind == MNT_NODE_STATUS) {
		pthread_rwlock_unlock(&m->lock);
		dir_put(d);
		return n ? ENOTDIR : ENOENT;
	}
	node_stat(m, n, &st);
	rc = dir_add(d, ".", &st, true);
	if (!rc) {
		if (n->parent)
			node_stat(m, n->parent, &st);
		rc = dir_add(d, "..", &st, true);
	}
	for (size_t i = 0; !rc && i < n->n_children; i++) {
		const struct mnt_node *c = n->children[i];

		node_stat(m, c, &st);
		rc = dir_add(d, c->name, &st, c->kind == MNT_NODE_STATUS);
	}
	d->folder_id = n->folder_id;
	d->removals = n->removals;
	owner_of(m, n->user, &uid, &gid);
	pthread_rwlock_unlock(&m->lock);
	if (!rc && d->folder_id) {
		struct index *ix = mnt_ix(m);
		struct msg_walk w = { d, uid, gid };

		index_warm(m);
		rc = ix ? index_msg_foreach(ix, d->folder_id, MSG_VISIBLE_MASK, dir_add_msg, &w) : -EIO;
	}
	if (rc) {
		dir_put(d);
		return rc < 0 ? -rc : EIO;
	}
	if (d->n > 2)
		qsort(d->ents + 2, d->n - 2, sizeof *d->ents, dirent_cmp);
	*r = d;
	return 0;
}

/* The listing of ino to serve offset off from, with a reference for the
 * caller: the kept one, unless off is 0 and something changed since it
 * was built (a new listing starts). 0 or a positive errno. */
static int dir_get(struct mnt *m, fuse_ino_t ino, off_t off, struct mnt_dir **r)
{
	struct mnt_dir *d = NULL, *drop = NULL;
	size_t i;
	int rc;

	pthread_mutex_lock(&m->dir_lock);
	for (i = 0; i < MNT_LISTINGS && m->listings[i]; i++) {
		if (m->listings[i]->ino != ino)
			continue;
		if (off > 0 || m->listings[i]->gen == atomic_load(&m->gen)) {
			d = m->listings[i];
			atomic_fetch_add(&d->refs, 1);
		}
		break;
	}
	pthread_mutex_unlock(&m->dir_lock);
	if (d) {
		*r = d;
		return 0;
	}
	rc = dir_build(m, ino, &d);
	if (rc)
		return rc;
	atomic_fetch_add(&d->refs, 1);
	pthread_mutex_lock(&m->dir_lock);
	/* In front; an older listing of ino (or the oldest of all) goes. */
	for (i = 0; i < MNT_LISTINGS - 1 && m->listings[i] && m->listings[i]->ino != ino; i++)
		;
	drop = m->listings[i];
	memmove(&m->listings[1], &m->listings[0], i * sizeof m->listings[0]);
	m->listings[0] = d;
	pthread_mutex_unlock(&m->dir_lock);
	dir_put(drop);
	*r = d;
	return 0;
}

/* Directory ino changed (the caller bumped m->gen): when a listing of it
 * is kept, build it again now, on the sync thread that reports the
 * change, so that the next listing finds it ready instead of building it
 * inside a READDIR (20,000 messages: 40 to 100 ms here, one request). */
static void dir_refresh(struct mnt *m, fuse_ino_t ino)
{
	struct mnt_dir *d = NULL, *drop = NULL;
	bool kept = false;

	pthread_mutex_lock(&m->dir_lock);
	for (size_t i = 0; i < MNT_LISTINGS && m->listings[i] && !kept; i++)
		kept = m->listings[i]->ino == ino;
	pthread_mutex_unlock(&m->dir_lock);
	if (!kept || dir_build(m, ino, &d))
		return;
	pthread_mutex_lock(&m->dir_lock);
	for (size_t i = 0; i < MNT_LISTINGS && m->listings[i]; i++) {
		if (m->listings[i]->ino == ino) {
			drop = m->listings[i];
			m->listings[i] = d;
			d = NULL;
			break;
		}
	}
	pthread_mutex_unlock(&m->dir_lock);
	dir_put(drop);
	dir_put(d);
}

static void dirs_release(struct mnt *m)
{
	for (size_t i = 0; i < MNT_LISTINGS; i++) {
		dir_put(m->listings[i]);
		m->listings[i] = NULL;
	}
}

/* True when messages left the folder since the snapshot was taken: its
 * entries may then name messages that are gone, and must not create
 * dentries the notify_delete already missed. */
static bool dir_stale(struct mnt *m, const struct mnt_dir *d)
{
	const struct mnt_node *n;
	bool stale = false;

	if (!d->folder_id)
		return false;
	pthread_rwlock_rdlock(&m->lock);
	n = mnt_tree_by_folder(m->tree, d->folder_id);
	stale = n && n->removals != d->removals;
	pthread_rwlock_unlock(&m->lock);
	return stale;
}

static void dirent_stat(const struct mnt_dirent *de, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = de->ino;
	st->st_mode = de->mode;
	st->st_nlink = de->nlink;
	st->st_uid = de->uid;
	st->st_gid = de->gid;
	st->st_size = de->size;
	st->st_blksize = 4096;
	st->st_blocks = (de->size + 511) / 512;
	set_times(st, de->mtime);
}

/* Where a listing goes on after an entry: the offset the kernel gets with
 * each entry is a cookie that names the entry, not its position, so that
 * a listing which crosses a change (a rebuilt listing, dir_refresh) still
 * returns every entry that did not change exactly once. "." and ".." are
 * 1 and 2; every other entry is its inode number + 3 (inode numbers are
 * at least 1 and below 2^48), and dir_build sorts them by inode number. */
static off_t dir_cookie(const struct mnt_dir *d, size_t i)
{
	return i < 2 ? (off_t)i + 1 : (off_t)(d->ents[i].ino + 3);
}

/* The index of the first entry after cookie off (0: the start). */
static size_t dir_seek(const struct mnt_dir *d, off_t off)
{
	size_t lo = 0, hi = d->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (dir_cookie(d, mid) <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct mnt *m = fuse_req_userdata(req);
	struct mnt_dir *d = NULL;
	bool attrs;
	char *out;
	size_t pos = 0, first;
	int rc;

	if (off < 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	rc = dir_get(m, ino, off, &d);
	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	first = dir_seek(d, off);
	if (first >= d->n) {
		dir_put(d);
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	attrs = plus && !dir_stale(m, d);
	out = malloc(size ? size : 1);
	if (!out) {
		dir_put(d);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = first; i < d->n; i++) {
		const struct mnt_dirent *de = &d->ents[i];
		const char *name = d->names.data + de->name_off;
		struct stat st;
		size_t len;

		dirent_stat(de, &st);
		if (plus) {
			struct fuse_entry_param e;
			double tmo = S_ISDIR(de->mode) ? MNT_DIR_TIMEOUT : MNT_MSG_TIMEOUT;

			memset(&e, 0, sizeof e);
			e.attr = st;
			/* e.ino == 0: listed, but the kernel keeps no entry for it. */
			if (attrs && !de->no_attrs) {
				e.ino = de->ino;
				e.attr_timeout = tmo;
				e.entry_timeout = tmo;
			}
			len = fuse_add_direntry_plus(req, out + pos, size - pos, name, &e,
						     dir_cookie(d, i));
		} else {
			len = fuse_add_direntry(req, out + pos, size - pos, name, &st, dir_cookie(d, i));
		}
		if (len > size - pos)
			break;
		pos += len;
	}
	dir_put(d);
	fuse_reply_buf(req, out, pos);
	free(out);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

/* With FUSE_CAP_NO_OPENDIR_SUPPORT the kernel sends one OPENDIR, takes our
 * ENOSYS as "never again" and caches listings itself; a kernel without it
 * gets an open with no handle and the same caching asked for. */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mnt *m = fuse_req_userdata(req);
	const struct mnt_node *n;
	bool is_dir;

	if (m->no_opendir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	pthread_rwlock_rdlock(&m->lock);
	n = mnt_tree_by_ino(m->tree, ino);
	is_dir = n && n->kind != MNT_NODE_STATUS;
	pthread_rwlock_unlock(&m->lock);
	if (!is_dir) {
		fuse_reply_err(req, MNT_INO_KIND(ino) == MNT_INO_MSG ? ENOTDIR : ENOENT);
		return;
	}
	fi->fh = 0;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/* With FUSE_CAP_NO_OPEN_SUPPORT the kernel sends one OPEN, takes our
 * ENOSYS as "never again" and from then on opens every file itself,
 * keeping its pages (FOPEN_KEEP_CACHE) and sending no FLUSH or RELEASE:
 * a warm read is the page cache alone. Reads therefore come without a
 * handle and find the backing file by inode (msg_fd). A kernel without it
 * gets an open with no handle. The mount is "ro" to the kernel, so a
 * write open never gets here; the check stays for a kernel that asks. */
static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mnt *m = fuse_req_userdata(req);

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		reply_rofs(req, "open for writing");
		return;
	}
	if (m->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->fh = 0;
	fi->noflush = 1;
	/* Messages never change; .status changes on every sync. */
	if (MNT_INO_KIND(ino) == MNT_INO_MSG)
		fi->keep_cache = 1;
	else
		fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

/* Each FUSE worker keeps the backing file of the message it read last
 * open: the READs of one file (128 KB each, the kernel's readahead) come
 * one after the other, mostly to the same thread. The descriptor also
 * lets a reader finish a message that a sync moved to the trash between
 * two READs (the row then names the file's new place, which a fresh open
 * would find as well). */
struct msg_fd {
	uint64_t ino;
	int fd;
};

static pthread_key_t mnt_fd_key;
static pthread_once_t mnt_fd_once = PTHREAD_ONCE_INIT;
static bool mnt_fd_key_ok;

static void fd_destructor(void *p)
{
	struct msg_fd *c = p;

	close(c->fd);
	free(c);
}

static void fd_key_init(void)
{
	mnt_fd_key_ok = pthread_key_create(&mnt_fd_key, fd_destructor) == 0;
}

/* The backing file of message ino, open read-only; owned by this thread's
 * cache (do not close). A negative errno. */
static int msg_fd(struct mnt *m, fuse_ino_t ino, int64_t *folder_r)
{
	struct msg_fd *c;
	struct index_msg msg = { 0 };
	struct folder_info f;
	int rc = 0, fd = -ENOENT;
	char *hint;

	pthread_once(&mnt_fd_once, fd_key_init);
	c = mnt_fd_key_ok ? pthread_getspecific(mnt_fd_key) : NULL;
	*folder_r = 0;
	if (c && c->ino == ino)
		return c->fd;
	hint = hint_take(m, ino, folder_r);
	if (hint) {
		fd = store_open_file(m->st, hint);
		if (fd < 0 && fd != -ENOENT)
			log_error("mount: open %s: %s", hint, strerror(-fd));
		free(hint);
	}
	/* A sync may move the file to trash/ between our reading the row and
	 * opening the file; the row then names the new place. */
	for (int attempt = 0; attempt < 3 && fd == -ENOENT; attempt++) {
		rc = msg_load(m, ino, &msg, &f);
		if (rc)
			break;
		fd = store_open_file(m->st, msg.store_file);
		if (fd < 0 && fd != -ENOENT)
			log_error("mount: open %s: %s", msg.store_file, strerror(-fd));
		*folder_r = msg.folder_id;
		index_msg_release(&msg);
	}
	if (rc)
		return rc;
	if (fd < 0)
		return fd == -ENOENT ? -ENOENT : -EIO;
	if (!mnt_fd_key_ok)
		return fd;   /* not reached in practice; see op_read */
	if (!c) {
		c = malloc(sizeof *c);
		if (!c || pthread_setspecific(mnt_fd_key, c)) {
			free(c);
			close(fd);
			return -ENOMEM;
		}
	} else {
		close(c->fd);
	}
	c->ino = ino;
	c->fd = fd;
	return fd;
}

static void mnt_fd_close_mine(void)
{
	struct msg_fd *c;

	pthread_once(&mnt_fd_once, fd_key_init);
	if (!mnt_fd_key_ok || !(c = pthread_getspecific(mnt_fd_key)))
		return;
	pthread_setspecific(mnt_fd_key, NULL);
	fd_destructor(c);
}

/* Readahead across files. A reader that walks a folder (grep -r, cp -a,
 * a desktop indexer) reads its messages one after the other in listing
 * order, which is date order, which for mail stored by a sync is mostly
 * row id order. Each message alone is one short READ, and read directly
 * from the store each would be one disk wait; through the mount each
 * also waits for a LOOKUP and a READ round trip, so waits would add up
 * to about twice the time. When a READ begins a message whose row id
 * follows the one begun before, this starts the disk reads of the
 * messages of the same folder among the next MNT_RA_FILES rows
 * (posix_fadvise WILLNEED, which
 * does not wait), after the reply went out, so their waits overlap with
 * the round trips. Any other pattern reads nothing ahead. */
#define MNT_RA_FILES 16
/* "Follows": at most this many rows on, as rows of folders synced at the
 * same time interleave. */
#define MNT_RA_GAP 4

static void msg_readahead(struct mnt *m, int64_t id, int64_t folder_id)
{
	int64_t last = atomic_exchange(&m->ra_last, id);
	int64_t upto = atomic_load(&m->ra_upto);
	int64_t from = upto >= id + 1 && upto <= id + MNT_RA_FILES ? upto + 1 : id + 1;
	int64_t to = id + MNT_RA_FILES;
	struct index *ix;

	if (id <= last || id - last > MNT_RA_GAP || from > to || to >= MNT_ID_MAX ||
	    !atomic_compare_exchange_strong(&m->ra_upto, &upto, to))
		return;
	ix = mnt_ix(m);
	for (int64_t i = from; ix && i <= to; i++) {
		struct index_msg msg = { 0 };
		int fd;

		if (index_msg_get(ix, i, &msg))
			continue;
		if (msg.folder_id == folder_id && ((1u << msg.state) & MSG_VISIBLE_MASK) &&
		    (fd = store_open_file(m->st, msg.store_file)) >= 0) {
			posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
			close(fd);
		}
		index_msg_release(&msg);
	}
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct mnt *m = fuse_req_userdata(req);
	const struct mnt_node *n;
	const struct user_settings *u = NULL;

	(void)fi;
	if (MNT_INO_KIND(ino) == MNT_INO_MSG) {
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
		int64_t folder_id = 0;
		int fd = msg_fd(m, ino, &folder_id);

		if (fd < 0) {
			fuse_reply_err(req, -fd);
			return;
		}
		/* libfuse splices from the backing file into the reply
		 * (FUSE_CAP_SPLICE_WRITE), else preads into its buffer. */
		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		bv.buf[0].fd = fd;
		bv.buf[0].pos = off;
		fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
		if (!mnt_fd_key_ok)
			close(fd);
		if (off == 0 && folder_id)
			msg_readahead(m, MNT_MSG_OF_INO(ino), folder_id);
		return;
	}
	pthread_rwlock_rdlock(&m->lock);
	n = mnt_tree_by_ino(m->tree, ino);
	if (n && n->kind == MNT_NODE_STATUS)
		u = n->user;
	pthread_rwlock_unlock(&m->lock);
	if (!u) {
		fuse_reply_err(req, n ? EISDIR : ENOENT);
		return;
	}
	status_read(req, m, u, size, off);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct mnt *m = fuse_req_userdata(req);
	struct statvfs sv;

	(void)ino;
	if (statvfs(store_root(m->st), &sv)) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = 255;
	sv.f_flag |= ST_RDONLY;
	fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes (messages only) ---- */

struct xattr_set {
	const char *name[8];
	const char *value[8];
	size_t n;
	char date[40];
};

static void xattrs_of(struct xattr_set *x, const struct index_msg *msg, const struct folder_info *f)
{
	int64_t t = msg_time(msg);
	struct tm tm;
	time_t tt = (time_t)t;

	x->n = 0;
	x->date[0] = '\0';
	/* RFC 3339 in UTC: the Date header's own zone is not kept. */
	if (t > 0 && gmtime_r(&tt, &tm))
		strftime(x->date, sizeof x->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
#define XA(n_, v_) do { if ((v_) && *(v_)) { x->name[x->n] = (n_); x->value[x->n++] = (v_); } } while (0)
	XA("user.mail.from", msg->sender);
	XA("user.mail.to", msg->recipients);
	XA("user.mail.subject", msg->subject);
	XA("user.mail.date", x->date);
	XA("user.mail.message_id", msg->message_id);
	XA("user.mail.flags", msg->flags);
	XA("user.mail.account", f->account);
	XA("user.mail.folder", f->folder_name);
#undef XA
}

/* The answer for a name outside user.mail.*: "not supported". coreutils'
 * `ls -l` asks every file for security.selinux and
 * system.posix_acl_access; "not supported" it remembers per device and
 * stops asking, "no data" it does not, which cost a round trip per file
 * and name. */
static int xattr_foreign_err(const char *name)
{
	(void)name;
	return ENOTSUP;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct mnt *m = fuse_req_userdata(req);
	struct index_msg msg = { 0 };
	struct folder_info f;
	struct xattr_set x;
	const char *val = NULL;
	size_t len;
	int rc;

	if (strncmp(name, "user.mail.", 10) != 0) {
		fuse_reply_err(req, xattr_foreign_err(name));
		return;
	}
	if (MNT_INO_KIND(ino) != MNT_INO_MSG) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	rc = msg_load(m, ino, &msg, &f);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	xattrs_of(&x, &msg, &f);
	for (size_t i = 0; i < x.n; i++)
		if (strcmp(x.name[i], name) == 0)
			val = x.value[i];
	if (!val) {
		fuse_reply_err(req, ENODATA);
	} else if (len = strlen(val), size == 0) {
		fuse_reply_xattr(req, len);
	} else if (size < len) {
		fuse_reply_err(req, ERANGE);
	} else {
		fuse_reply_buf(req, val, len);
	}
	index_msg_release(&msg);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct mnt *m = fuse_req_userdata(req);
	struct index_msg msg = { 0 };
	struct folder_info f;
	struct xattr_set x;
	char list[256];
	size_t len = 0;
	int rc;

	if (MNT_INO_KIND(ino) != MNT_INO_MSG) {
		if (size == 0)
			fuse_reply_xattr(req, 0);
		else
			fuse_reply_buf(req, NULL, 0);
		return;
	}
	rc = msg_load(m, ino, &msg, &f);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	xattrs_of(&x, &msg, &f);
	for (size_t i = 0; i < x.n; i++) {
		size_t l = strlen(x.name[i]) + 1;

		memcpy(list + len, x.name[i], l);
		len += l;
	}
	index_msg_release(&msg);
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, list, len);
}

/* ---- everything that would write ---- */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)ino, (void)attr, (void)to_set, (void)fi;
	reply_rofs(req, "setattr");
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	reply_rofs(req, "mknod");
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	reply_rofs(req, "mkdir");
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	reply_rofs(req, "unlink");
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	reply_rofs(req, "rmdir");
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	reply_rofs(req, "symlink");
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	reply_rofs(req, "rename");
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	reply_rofs(req, "link");
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	reply_rofs(req, "create");
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino, (void)buf, (void)size, (void)off, (void)fi;
	reply_rofs(req, "write");
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	reply_rofs(req, "setxattr");
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	reply_rofs(req, "removexattr");
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	(void)ino, (void)mode, (void)offset, (void)length, (void)fi;
	reply_rofs(req, "fallocate");
}

static const struct fuse_lowlevel_ops mnt_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
};

/* ------------------------------------------------------------------ *
 * The sync side: change reports -> kernel cache invalidation         *
 * ------------------------------------------------------------------ */

/* Reads every folder row and adds what is new to the tree. */
static int tree_refresh(struct mnt *m, struct index *ix)
{
	struct index_folder *fs = NULL;
	size_t n = 0;
	int rc = index_folder_list(ix, NULL, NULL, &fs, &n);

	if (rc)
		return rc;
	pthread_rwlock_wrlock(&m->lock);
	rc = mnt_tree_merge(m->tree, fs, n);
	pthread_rwlock_unlock(&m->lock);
	index_folder_array_free(&fs, n);
	return rc;
}

/* The folder's directory and every directory above it, nearest first;
 * caller holds m->lock. */
static size_t chain_of(const struct mnt_node *n, uint64_t *chain)
{
	size_t k = 0;

	for (; n && k < MNT_CHAIN_MAX; n = n->parent)
		chain[k++] = n->ino;
	return k;
}

static void notify_report(const char *what, uint64_t ino, int rc)
{
	/* -ENOENT: the kernel had nothing cached for it, which is fine. */
	if (rc && rc != -ENOENT)
		log_debug("mount: %s of inode %llu: %s", what, (unsigned long long)ino, strerror(-rc));
}

static void inval_chain(struct mnt *m, const uint64_t *chain, size_t k)
{
	for (size_t i = 0; i < k; i++)
		notify_report("invalidation", chain[i],
			      fuse_lowlevel_notify_inval_inode(m->se, chain[i], 0, 0));
}

/* A folder's content changed: record its changed_at, then invalidate.
 * Runs on a sync worker, after the commit; no lock is held across a notify. */
static void folder_changed(struct mnt *m, int64_t folder_id, const int64_t *ids,
			   char *const *names, size_t n)
{
	struct index *ix = mnt_ix(m);
	struct index_folder f = { 0 };
	int64_t changed = time(NULL);
	uint64_t chain[MNT_CHAIN_MAX];
	size_t k = 0;
	struct mnt_node *node;

	if (ix && index_folder_get(ix, folder_id, &f) == 0) {
		changed = f.changed_at;
		index_folder_release(&f);
	}
	pthread_rwlock_rdlock(&m->lock);
	node = mnt_tree_by_folder(m->tree, folder_id);
	pthread_rwlock_unlock(&m->lock);
	if (!node && ix)
		tree_refresh(m, ix);
	atomic_fetch_add(&m->gen, 1);
	pthread_rwlock_wrlock(&m->lock);
	node = mnt_tree_set_changed(m->tree, folder_id, changed);
	if (node) {
		if (names)
			node->removals++;
		k = chain_of(node, chain);
	}
	pthread_rwlock_unlock(&m->lock);
	if (k)
		dir_refresh(m, chain[0]);
	if (!k || !atomic_load(&m->notify_ok))
		return;
	for (size_t i = 0; names && i < n; i++) {
		if (ids[i] <= 0 || ids[i] >= MNT_ID_MAX || !names[i])
			continue;
		notify_report("delete notification", MNT_INO_OF_MSG(ids[i]),
			      fuse_lowlevel_notify_delete(m->se, chain[0], MNT_INO_OF_MSG(ids[i]),
							  names[i], strlen(names[i])));
	}
	inval_chain(m, chain, k);
}

static void obs_added(void *ctx, int64_t folder_id, const int64_t *msg_ids, size_t n)
{
	folder_changed(ctx, folder_id, msg_ids, NULL, n);
}

static void obs_removed(void *ctx, int64_t folder_id, const int64_t *msg_ids,
			char *const *view_names, size_t n)
{
	folder_changed(ctx, folder_id, msg_ids, view_names, n);
}

static void obs_folder_added(void *ctx, int64_t folder_id)
{
	struct mnt *m = ctx;
	struct index *ix = mnt_ix(m);
	const struct mnt_node *node;
	uint64_t chain[MNT_CHAIN_MAX];
	size_t k = 0;

	if (!ix || tree_refresh(m, ix))
		return;
	atomic_fetch_add(&m->gen, 1);
	pthread_rwlock_rdlock(&m->lock);
	node = mnt_tree_by_folder(m->tree, folder_id);
	if (node)
		k = chain_of(node, chain);
	pthread_rwlock_unlock(&m->lock);
	/* The new directory itself is unknown to the kernel; its parents'
	 * listings, link counts and mtimes changed. */
	if (k > 1 && atomic_load(&m->notify_ok))
		inval_chain(m, chain + 1, k - 1);
}

static void obs_user_changed(void *ctx, const char *user)
{
	struct mnt *m = ctx;

	mnt_exec_user_changed(m->exec, user);
}

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
			  strerror(-rc));
		return rc;
	}
	rc = tree_refresh(m, ix);
	index_close(&ix);
	return rc;
}

static void mnt_free(struct mnt *m)
{
	dirs_release(m);
	pthread_mutex_destroy(&m->dir_lock);
	for (size_t i = 0; i < MNT_HINTS; i++)
		free(m->hints[i].path);
	pthread_mutex_destroy(&m->hint_lock);
	for (size_t i = 0; m->snaps && i < m->cfg->n_users; i++) {
		free(m->snaps[i].text);
		pthread_mutex_destroy(&m->snaps[i].lock);
	}
	free(m->snaps);
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

int mnt_run(struct store *st, const struct settings *cfg, const struct mnt_opts *o)
{
	struct mnt m;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct saved_signals sv;
	struct fuse_loop_config *lc = NULL;
	bool mounted = false, signals = false, ctl_started = false;
	pthread_t ctl_thread;
	sigset_t oldmask;
	int rc, ret = 1;

	memset(&m, 0, sizeof m);
	m.ctl[0] = m.ctl[1] = -1;
	m.index_fd = -1;
	m.st = st;
	m.cfg = cfg;
	m.as_root = geteuid() == 0;
	m.self_uid = geteuid();
	m.self_gid = getegid();
	m.started = time(NULL);
	m.main_thread = pthread_self();
	atomic_init(&m.notify_ok, false);
	atomic_init(&m.loop_done, false);
	pthread_rwlock_init(&m.lock, NULL);
	pthread_mutex_init(&m.dir_lock, NULL);
	pthread_mutex_init(&m.hint_lock, NULL);
	atomic_init(&m.gen, 0);
	m.obs = (struct sync_observer){
		.added = obs_added,
		.removed = obs_removed,
		.folder_added = obs_folder_added,
		.user_changed = obs_user_changed,
		.ctx = &m,
	};

	/* fuse_daemonize moves to /: every path we keep must be absolute. */
	m.mountpoint = realpath(o->mountpoint, NULL);
	if (!m.mountpoint) {
		log_error("mount point %s: %s", o->mountpoint, strerror(errno));
		goto out;
	}
	if (!o->foreground && store_root(st)[0] != '/') {
		log_error("store %s: a relative store path does not survive daemonising; use -f or an absolute path",
			  store_root(st));
		goto out;
	}
	m.snaps = calloc(cfg->n_users ? cfg->n_users : 1, sizeof *m.snaps);
	if (!m.snaps) {
		log_error("mount: out of memory");
		goto out;
	}
	for (size_t i = 0; i < cfg->n_users; i++)
		pthread_mutex_init(&m.snaps[i].lock, NULL);
	if (tree_load(&m))
		goto out;
	{
		char path[PATH_MAX];

		if (store_path(st, "index.db", path, sizeof path) == 0)
			m.index_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		atomic_init(&m.warm_checked, mono_ns() - MNT_WARM_EVERY_NS);
	}
	if (mnt_exec_create(cfg, m.mountpoint, &m.exec)) {
		log_error("mount: out of memory preparing on_change commands");
		goto out;
	}
	if (build_args(&m, o, &args)) {
		log_error("mount: out of memory building FUSE options");
		goto out;
	}
	m.se = fuse_session_new(&args, &mnt_ops, sizeof mnt_ops, &m);
	if (!m.se) {
		log_error("mount %s: bad FUSE options (%s)", m.mountpoint,
			  o->fuse_opts ? o->fuse_opts : "none given");
		goto out;
	}
	if (pipe2(m.ctl, O_CLOEXEC)) {
		log_error("mount: pipe: %s", strerror(errno));
		goto out;
	}
	/* A signal handler must never block on a full pipe. */
	fcntl(m.ctl[1], F_SETFL, fcntl(m.ctl[1], F_GETFL) | O_NONBLOCK);
	atomic_store(&mnt_sig_ctl, m.ctl[1]);
	rc = signals_install(&sv);
	if (rc) {
		log_error("mount: sigaction: %s", strerror(-rc));
		goto out;
	}
	signals = true;
	if (fuse_session_mount(m.se, m.mountpoint)) {
		log_error("mount %s: mounting failed (see the message above)", m.mountpoint);
		goto out;
	}
	mounted = true;
	if (fuse_daemonize(o->foreground)) {
		log_error("mount %s: cannot daemonise", m.mountpoint);
		goto out;
	}
	if (!o->foreground) {
		log_use_syslog(true);
		lock_repid(st);
	}
	m.main_thread = pthread_self();
	atomic_store(&m.notify_ok, true);

	block_stop_signals(&oldmask);
	if (o->sync) {
		rc = sched_start(st, cfg, &m.obs, &m.sched);
		if (rc) {
			pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
			log_error("mount %s: cannot start syncing: %s", m.mountpoint, strerror(-rc));
			goto out;
		}
		atomic_store(&mnt_sig_sched, m.sched);
	}
	rc = pthread_create(&ctl_thread, NULL, ctl_main, &m);
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
	if (rc) {
		log_error("mount: cannot start the control thread: %s", strerror(rc));
		goto out;
	}
	ctl_started = true;

	log_info("mounted %s at %s%s", store_root(st), m.mountpoint,
		 o->sync ? ", syncing in the background" : "");
	lc = fuse_loop_cfg_create();
	if (!lc) {
		log_error("mount: out of memory");
		goto out;
	}
	fuse_loop_cfg_set_clone_fd(lc, 0);
	/* Each worker holds an index connection with its own page cache (up
	 * to 2 MB): ten of them made half the daemon's memory after one read
	 * of 20,000 messages. A worker mostly waits for the disk, and the
	 * cross-file readahead lets those waits overlap, so a few suffice. */
	fuse_loop_cfg_set_max_threads(lc, MNT_WORKERS);
	fuse_loop_cfg_set_idle_threads(lc, MNT_WORKERS);
	rc = fuse_session_loop_mt(m.se, lc);
	if (rc)
		log_error("mount %s: session loop ended with error %d", m.mountpoint, rc);
	else
		ret = 0;
out:
	atomic_store(&m.loop_done, true);
	if (ctl_started) {
		unsigned char quit = 0;

		/* The control thread either stopped us (and is about to return)
		 * or still waits for a signal: tell it we are done. */
		while (write(m.ctl[1], &quit, 1) < 0 && errno == EINTR)
			;
		pthread_join(ctl_thread, NULL);
	}
	/* After an external unmount the scheduler is still running; notify
	 * calls now fail fast (the connection is gone). */
	sched_halt(&m);
	atomic_store(&m.notify_ok, false);
	mnt_exec_destroy(&m.exec);
	if (mounted)
		fuse_session_unmount(m.se);
	if (signals)
		signals_restore(&sv);
	atomic_store(&mnt_sig_ctl, -1);
	if (m.se)
		fuse_session_destroy(m.se);
	if (lc)
		fuse_loop_cfg_destroy(lc);
	fuse_opt_free_args(&args);
	mnt_ix_close_mine();
	mnt_fd_close_mine();
	if (ret == 0)
		log_info("unmounted %s", m.mountpoint ? m.mountpoint : o->mountpoint);
	mnt_free(&m);
	return ret;
}
