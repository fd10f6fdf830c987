/* mnt_int: what the files of the mount share (struct mnt and the functions
 * one file offers the others); not a public interface (that is mnt.h).
 *
 * The mount is the read-only FUSE file system of the store (libfuse3
 * low-level API) and the daemon around it, one concern a file:
 *   mnt.c          the daemon: mnt_run, signals, the control thread and the
 *                  shutdown order
 *   mnt_ops.c      the FUSE low-level operations
 *   mnt_attr.c     the attributes the mount shows, from tree nodes and rows
 *   mnt_read.c     reading: per-thread index connections, index warm-up,
 *                  LOOKUP -> READ hints, backing files, read-ahead
 *   mnt_listing.c  directory listings kept for READDIR
 *   mnt_status.c   /<user>/.status snapshots
 *   mnt_notify.c   change reports from the sync side -> kernel invalidation
 *   mnt_parts.c    each message's parts directory (cache/parts.h)
 *   mnt_tree.c, mnt_exec.c  the directory tree, the on_change commands
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
#ifndef MAILDISK_MNT_INT_H
#define MAILDISK_MNT_INT_H

#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "../cache/buf.h"
#include "../cache/index.h"
#include "../fetch/scheduler.h"
#include "../fetch/sync.h"
#include "cpu_awake.h"
#include "mnt.h"
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
 * (the kernel asks a page at a time) and for the next listing (mnt_dir_refresh
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
	int index_fd;                     /* owned, -1 if none: index.db, for mnt_index_warm only */
	atomic_int_fast64_t warm_checked; /* CLOCK_MONOTONIC ns of mnt_index_warm's last look */
	atomic_int_fast64_t ra_last;      /* mnt_msg_readahead: row id of the last message begun */
	atomic_int_fast64_t ra_upto;      /* mnt_msg_readahead: read ahead up to this row id */
	atomic_bool notify_ok;            /* the session takes notifications */
	atomic_bool loop_done;            /* fuse_session_loop_mt returned */
	pthread_t main_thread;
	int ctl[2];                       /* control pipe: signals -> control thread */
	struct parts_cursors *cursors;    /* owned: decoding cursors of part READs */
	struct cpu_awake awake;           /* started by run_threads when cfg->keep_cpus_awake */
};

/* The mount serving req, for the handlers of requests that a reader
 * waits for: each counts as activity for m->awake. */
static inline struct mnt *mnt_serving(fuse_req_t req)
{
	struct mnt *m = fuse_req_userdata(req);

	cpu_awake_note(&m->awake);
	return m;
}

/* What a handler needs of a folder's node, copied under the lock. */
struct folder_info {
	uint64_t ino;
	uid_t uid;
	gid_t gid;
	const char *account;      /* borrowed: set once, freed only with the tree */
	const char *folder_name;  /* borrowed, likewise */
	const struct user_settings *user;  /* borrowed from the settings, may be NULL */
	uint64_t removals;
};

/* mnt_attr.c: attributes. */
void mnt_owner_of(const struct mnt *m, const struct user_settings *u, uid_t *uid, gid_t *gid);
void mnt_set_times(struct stat *st, int64_t t);
/* Caller holds m->lock. */
void mnt_node_stat(const struct mnt *m, const struct mnt_node *n, struct stat *st);
int64_t mnt_msg_time(const struct index_msg *msg);
void mnt_leaf_stat(struct stat *st, uint64_t ino, mode_t mode, int64_t size, int64_t mtime,
		   uid_t uid, gid_t gid);
void mnt_file_stat(struct stat *st, uint64_t ino, int64_t size, int64_t mtime, uid_t uid,
		   gid_t gid);
/* False when the folder has no node; takes m->lock. */
bool mnt_folder_info(struct mnt *m, int64_t folder_id, struct folder_info *fi);
/* Reads a message row and its folder's owner; a negative errno. */
int mnt_msg_load(struct mnt *m, fuse_ino_t ino, struct index_msg *msg, struct folder_info *fi);

/* mnt_read.c: reading. */
/* This thread's read-only connection; NULL (logged) when it cannot open. */
struct index *mnt_ix(struct mnt *m);
/* Closes this thread's connection and backing file (the main thread's,
 * at shutdown; worker threads' close when they exit). */
void mnt_ix_close_mine(void);
void mnt_fd_close_mine(void);
/* Opens m->index_fd for mnt_index_warm (-1 when it cannot) and lets the
 * first call look at once. Before any FUSE worker runs. */
void mnt_warm_open(struct mnt *m);
void mnt_index_warm(struct mnt *m);
/* A READ at offset 0 of message id (or of one of its parts) in folder_id:
 * when id follows the message begun before, starts the disk reads of the
 * next messages of the folder (mnt_read.c). Call after replying. */
void mnt_msg_readahead(struct mnt *m, int64_t id, int64_t folder_id);
void mnt_hint_put(struct mnt *m, uint64_t ino, int64_t folder_id, const char *path);
/* READ of message ino: replies (data or error), then reads ahead. */
void mnt_read_msg(fuse_req_t req, struct mnt *m, fuse_ino_t ino, size_t size, off_t off);
/* The backing file of message ino, open read-only, and its folder (0 when
 * unknown); give it back with mnt_msg_fd_done. A negative errno. */
int mnt_msg_fd(struct mnt *m, fuse_ino_t ino, int64_t *folder_r);
void mnt_msg_fd_done(int fd);

/* mnt_status.c: /<user>/.status. */
/* One snapshot per cfg->users: 0 or -ENOMEM; free also after a failure. */
int mnt_status_init(struct mnt *m);
void mnt_status_free(struct mnt *m);
/* Builds the text afresh and makes it the snapshot when it differs; *st
 * gets its size and mtime. A negative errno (st untouched). */
int mnt_status_refresh(struct mnt *m, const struct user_settings *u, struct stat *st);
/* READ of .status: replies from the snapshot (built first if none yet). */
void mnt_status_read(fuse_req_t req, struct mnt *m, const struct user_settings *u, size_t size,
		     off_t off);

/* mnt_listing.c: kept directory listings. */
/* READDIR(PLUS) of ino: replies (entries or error). */
void mnt_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus);
/* Directory ino changed (the caller bumped m->gen): rebuilds a kept
 * listing of it now. From a sync worker, no lock held. */
void mnt_dir_refresh(struct mnt *m, fuse_ino_t ino);
/* on: before the change that mnt_dir_refresh(ino) follows is made known
 * (m->gen), so that until the refresh READDIRs get the kept listing of
 * ino; every mark is followed by mnt_dir_refresh(ino), which clears it, or
 * by this with on false. */
void mnt_dir_refreshing(struct mnt *m, fuse_ino_t ino, bool on);
void mnt_dirs_release(struct mnt *m);

/* mnt_notify.c: the sync side. */
/* Fills m->obs (its ctx is m). */
void mnt_notify_init(struct mnt *m);
/* Reads every folder row and adds what is new to the tree. */
int mnt_refresh_tree(struct mnt *m, struct index *ix);

/* mnt_parts.c: a message's parts (ino kind MNT_INO_PART). */
/* True when the folder listing shows msg's parts directory (of user u);
 * name (256 bytes) gets its name. */
bool mnt_parts_shown(const struct user_settings *u, const struct index_msg *msg, char *name);
/* The parts directory's name for a view name ("<stem>.eml" -> "<stem>");
 * false when it has none. out holds 256 bytes. */
bool mnt_parts_dir_name(const char *view_name, char *out);
void mnt_parts_dir_stat(struct stat *st, uint64_t ino, int64_t mtime, uid_t uid, gid_t gid);
/* LOOKUP of name in a folder that has no message of that name: the parts
 * directory "<name>" of message "<name>.eml". 0 (e filled) or a negative errno. */
int mnt_parts_lookup_dir(struct mnt *m, int64_t folder_id, const struct user_settings *u,
			 const char *name, uid_t uid, gid_t gid, struct fuse_entry_param *e);
/* The operations on part inodes; each replies. */
void mnt_parts_lookup(fuse_req_t req, struct mnt *m, fuse_ino_t parent, const char *name);
void mnt_parts_getattr(fuse_req_t req, struct mnt *m, fuse_ino_t ino);
void mnt_parts_readdir(fuse_req_t req, struct mnt *m, fuse_ino_t ino, size_t size, off_t off,
		       bool plus);
void mnt_parts_read(fuse_req_t req, struct mnt *m, fuse_ino_t ino, size_t size, off_t off);
/* The content type of part ino into *ctype (malloc'd), for its xattr. 0,
 * or -ENODATA for a directory, or a negative errno. */
int mnt_parts_content_type(struct mnt *m, fuse_ino_t ino, char **ctype);
/* Drops this thread's cached part records (thread exit). */
void mnt_parts_close_mine(void);

/* mnt_ops.c: the operations fuse_session_new gets; userdata is the mnt. */
extern const struct fuse_lowlevel_ops mnt_ops;

#endif
