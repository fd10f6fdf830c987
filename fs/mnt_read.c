/* mnt_read: how the mount reads. Each thread (FUSE workers, and sync
 * workers when they report a change) uses its own read-only index
 * connection, opened on first use and closed when the thread exits; the
 * index is kept in the page cache (index warm-up); a LOOKUP leaves the
 * READ that follows a hint of the message's file; each FUSE worker keeps
 * the backing file it read last open; and a walk through a folder reads
 * the next messages ahead. */
#include "mnt_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../cache/log.h"

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
struct index *mnt_ix(struct mnt *m)
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

void mnt_ix_close_mine(void)
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

void mnt_index_warm(struct mnt *m)
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

void mnt_warm_open(struct mnt *m)
{
	char path[PATH_MAX];

	if (store_path(m->st, "index.db", path, sizeof path) == 0)
		m->index_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	atomic_init(&m->warm_checked, mono_ns() - MNT_WARM_EVERY_NS);
}

/* ------------------------------------------------------------------ *
 * LOOKUP -> READ hints                                               *
 * ------------------------------------------------------------------ */

/* Where a LOOKUP just found a message's file, for the READ that mostly
 * follows: it opens the file without reading the row again. Only a hint:
 * a file that a sync moved since is not there any more (ENOENT) and the
 * row is read after all; the store never gives a file name to another
 * message. */
void mnt_hint_put(struct mnt *m, uint64_t ino, int64_t folder_id, const char *path)
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

/* ------------------------------------------------------------------ *
 * Backing files and read-ahead                                       *
 * ------------------------------------------------------------------ */

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
 * cache (mnt_msg_fd_done closes it only when there is no cache). A
 * negative errno. */
int mnt_msg_fd(struct mnt *m, fuse_ino_t ino, int64_t *folder_r)
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
		rc = mnt_msg_load(m, ino, &msg, &f);
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
		return fd;   /* not reached in practice; see mnt_msg_fd_done */
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

void mnt_msg_fd_done(int fd)
{
	if (!mnt_fd_key_ok)
		close(fd);
}

void mnt_fd_close_mine(void)
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

void mnt_msg_readahead(struct mnt *m, int64_t id, int64_t folder_id)
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

/* READ of a message: from its backing file, then the read-ahead after the
 * reply went out. */
void mnt_read_msg(fuse_req_t req, struct mnt *m, fuse_ino_t ino, size_t size, off_t off)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
	int64_t folder_id = 0;
	int fd = mnt_msg_fd(m, ino, &folder_id);

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
	mnt_msg_fd_done(fd);
	if (off == 0 && folder_id)
		mnt_msg_readahead(m, MNT_MSG_OF_INO(ino), folder_id);
}
