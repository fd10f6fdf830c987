/* store_batch: adding messages (see store.h, store_batch_commit for the
 * write order).
 *
 * Maildir (https://cr.yp.to/proto/maildir.html): a message is written to
 * tmp/ under a unique name, then renamed into cur/ with an info suffix
 * ":2,<flags>". Our names are "<unix time>.M<usec>P<pid>Q<counter>.maildisk";
 * O_EXCL catches the collision that time, pid and counter already exclude. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "names.h"
#include "parts.h"
#include "store_int.h"

struct store_msg {
	struct store_batch *b;  /* borrowed: the batch that owns this handle */
	int fd;                 /* the tmp/ file while writing, -1 after */
	char name[128];         /* unique base name: tmp/<name>, cur/<name>:2,<flags> */
	uint64_t size;
	bool finished;
	bool dup;               /* at commit: the row already exists, drop this copy */
	bool queued;            /* its parts are (being) analysed into parts */
	int parts_rc;           /* the analysis: 0, -errno, -EINPROGRESS (store_analyse.c) */
	struct index_msg meta;  /* owned strings once finished */
	struct parts_list parts;  /* owned: inserted with the row */
};

struct store_batch {
	struct store *s;         /* borrowed */
	int64_t folder_id;
	char *dir;               /* owned: the folder's Maildir, store-relative */
	struct store_msg **msgs; /* owned, each owned */
	size_t n, cap;
	size_t n_finished;
	uint64_t bytes;
	bool analyse;            /* each finished message's parts are recorded */
	struct store_analyser *an;  /* owned, from the first finished message; NULL:
				  * none yet, or none could start (then inline) */
	bool an_failed;          /* no thread could start: analyse inline */
	int sync_fd;             /* the folder's tmp/, open since the batch began: its
				  * filesystem is synced with syncfs(2), which reports
				  * writeback errors seen since this open */
};

/* From this size on, a message's writeback is started as soon as it is
 * complete. Started for every message, it cost about 80 us of CPU per
 * file here (a submission and a virtio notify each), a quarter of the
 * sync's CPU for 20,000 small messages; the batch's syncfs submits many
 * small files in one go. */
#define STORE_WRITEBACK_EARLY ((uint64_t)256 << 10)

static unsigned long store_seq;   /* atomic: the Q<counter> of file names */

/* getpid() without a system call per message (per thread: the store is
 * never written from a forked child). */
static pid_t store_pid(void)
{
	static __thread pid_t cached;
	pid_t p = cached;

	if (p == 0)
		cached = p = getpid();
	return p;
}

int store_batch_create(struct store *s, const struct index_folder *f, struct store_batch **r)
{
	char tmp[PATH_MAX];
	struct store_batch *b = NULL;
	int rc = f->path && store_rel_ok(f->path) ? 0 : -EINVAL;

	*r = NULL;
	if (rc == 0)
		rc = store_maildir_create(s, f->path);
	if (rc == 0 && snprintf(tmp, sizeof tmp, "%s/%s/tmp", s->root, f->path) >= (int)sizeof tmp)
		rc = -ENAMETOOLONG;
	if (rc == 0 && !(b = calloc(1, sizeof *b)))
		rc = -ENOMEM;
	if (rc)
		return rc;
	b->s = s;
	b->folder_id = f->id;
	b->analyse = true;
	b->sync_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->sync_fd < 0) {
		rc = -errno;
		log_error("open(%s): %m", tmp);
	} else if (!(b->dir = strdup(f->path))) {
		rc = -ENOMEM;
	}
	if (rc) {
		store_batch_destroy(&b);
		return rc;
	}
	*r = b;
	return 0;
}

static int msg_path(const struct store_msg *m, bool cur, char *out, size_t outlen)
{
	const struct store_batch *b = m->b;
	int n;

	if (cur)
		n = snprintf(out, outlen, "%s/%s", b->s->root, m->meta.store_file);
	else
		n = snprintf(out, outlen, "%s/%s/tmp/%s", b->s->root, b->dir, m->name);
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

static void msg_free(struct store_msg *m)
{
	if (m->fd >= 0)
		close(m->fd);
	index_msg_release(&m->meta);
	parts_list_release(&m->parts);
	free(m);
}

/* Takes m out of its batch's list and frees it. */
static void msg_remove(struct store_msg *m)
{
	struct store_batch *b = m->b;

	for (size_t i = 0; i < b->n; i++) {
		if (b->msgs[i] == m) {
			memmove(&b->msgs[i], &b->msgs[i + 1], (b->n - i - 1) * sizeof *b->msgs);
			b->n--;
			break;
		}
	}
	if (m->finished) {
		b->n_finished--;
		b->bytes -= m->size;
	}
	msg_free(m);
}

static void unlink_quiet(const char *path)
{
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("unlink(%s): %m", path);
}

void store_batch_destroy(struct store_batch **bp)
{
	struct store_batch *b = bp ? *bp : NULL;
	char path[PATH_MAX];

	if (!b)
		return;
	store_analyse_stop(&b->an);
	/* Uncommitted files are still in tmp/ (commit moves only what it
	 * also indexes, or takes it back). */
	for (size_t i = 0; i < b->n; i++) {
		if (msg_path(b->msgs[i], false, path, sizeof path) == 0)
			unlink_quiet(path);
		msg_free(b->msgs[i]);
	}
	free(b->msgs);
	free(b->dir);
	if (b->sync_fd >= 0)
		close(b->sync_fd);
	free(b);
	*bp = NULL;
}

int store_msg_begin(struct store_batch *b, struct store_msg **m_r)
{
	struct store_msg *m;
	char path[PATH_MAX];
	int rc;

	*m_r = NULL;
	rc = buf_array_grow(&b->msgs, &b->cap, b->n, sizeof *b->msgs, 32);
	if (rc)
		return rc;
	m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	m->b = b;
	m->fd = -1;
	for (int tries = 0; m->fd < 0; tries++) {
		struct timeval tv;
		unsigned long q = __atomic_fetch_add(&store_seq, 1, __ATOMIC_RELAXED);

		gettimeofday(&tv, NULL);
		snprintf(m->name, sizeof m->name, "%lld.M%ldP%ldQ%lu.maildisk",
			 (long long)tv.tv_sec, (long)tv.tv_usec, (long)store_pid(), q);
		rc = msg_path(m, false, path, sizeof path);
		if (rc)
			break;
		/* Read too: store_msg_finish analyses the parts through it. */
		m->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (m->fd < 0 && (errno != EEXIST || tries >= 100)) {
			rc = -errno;
			log_error("open(%s): %m", path);
			break;
		}
	}
	if (m->fd < 0) {
		free(m);
		return rc;
	}
	b->msgs[b->n++] = m;
	*m_r = m;
	return 0;
}

int store_msg_write(struct store_msg *m, const void *p, size_t n)
{
	const char *c = p;

	if (m->fd < 0 || m->finished)
		return -EINVAL;
	while (n > 0) {
		ssize_t w = write(m->fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			char path[PATH_MAX];
			int rc = w < 0 ? -errno : -EIO;

			msg_path(m, false, path, sizeof path);
			errno = -rc;
			log_error("write(%s): %m", path);
			return rc;
		}
		c += w;
		n -= (size_t)w;
		m->size += (uint64_t)w;
	}
	return 0;
}

static bool view_name_ok(const char *v)
{
	return v && *v && !strchr(v, '/') && strcmp(v, ".") != 0 && strcmp(v, "..") != 0 &&
	       strlen(v) <= NAMES_COMPONENT_MAX;
}

/* The parts, while the file is still open and in the page cache: on the
 * batch's analysing thread, else inline. */
static void analyse(struct store_msg *m)
{
	struct store_batch *b = m->b;
	int rc = -1;

	if (!b->an && !b->an_failed)
		b->an_failed = store_analyse_start(&b->an) != 0;
	if (b->an)
		rc = store_analyse_add(b->an, m->fd, (int64_t)m->size, &m->parts, &m->parts_rc);
	if (rc)
		m->parts_rc = parts_analyse(m->fd, (int64_t)m->size, &m->parts);
	m->queued = true;
}

int store_msg_finish(struct store_msg *m, struct index_msg *meta)
{
	struct store_batch *b = m->b;
	char flags[16], path[PATH_MAX], *file = NULL;
	int rc;

	if (m->fd < 0 || m->finished)
		return -EINVAL;
	if (!view_name_ok(meta->view_name)) {
		log_error("%s: bad view name \"%s\" for message %s", b->dir,
			  meta->view_name ? meta->view_name : "(null)",
			  meta->remote_id ? meta->remote_id : "(none)");
		return -EINVAL;
	}
	store_maildir_flags(meta->flags, flags, sizeof flags);
	if (asprintf(&file, "%s/cur/%s:2,%s", b->dir, m->name, flags) < 0)
		return -ENOMEM;
	/* A large message's writeback starts now, so that the disk works on
	 * it while the network delivers the next and the syncfs at commit
	 * mostly finds it done. Small ones are left to that syncfs, which
	 * submits the batch's files together (see STORE_WRITEBACK_EARLY). */
	if (m->size >= STORE_WRITEBACK_EARLY)
		sync_file_range(m->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	if (b->analyse)
		analyse(m);
	if (close(m->fd) < 0) {
		rc = -errno;
		m->fd = -1;
		msg_path(m, false, path, sizeof path);
		log_error("close(%s): %m", path);
		free(file);
		return rc;
	}
	m->fd = -1;
	m->meta = *meta;
	memset(meta, 0, sizeof *meta);
	free(m->meta.store_file);
	m->meta.store_file = file;
	m->meta.id = 0;
	m->meta.folder_id = b->folder_id;
	m->meta.size = (int64_t)m->size;
	m->finished = true;
	b->n_finished++;
	b->bytes += m->size;
	return 0;
}

void store_msg_abort(struct store_msg *m)
{
	char path[PATH_MAX];

	if (!m)
		return;
	if (m->queued)
		store_analyse_wait(m->b->an);   /* it writes into m */
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	if (msg_path(m, false, path, sizeof path) == 0)
		unlink_quiet(path);
	msg_remove(m);
}

void store_batch_set_parts(struct store_batch *b, bool analyse)
{
	b->analyse = analyse;
}

size_t store_batch_count(const struct store_batch *b)
{
	return b->n_finished;
}

uint64_t store_batch_bytes(const struct store_batch *b)
{
	return b->bytes;
}

/* Inserts m's row. A message already indexed (same remote id) is marked as
 * a duplicate to drop; a view name taken by another visible message (a
 * restored copy of the same message, say) gets " (2)", " (3)"... */
static int insert_row(struct index *ix, struct store_msg *m)
{
	int64_t other;
	char *orig;
	int rc = index_msg_insert(ix, &m->meta);

	if (rc != -EEXIST)
		return rc;
	if (m->meta.remote_id &&
	    index_msg_find(ix, m->meta.folder_id, m->meta.remote_id, &other) == 0) {
		log_warn("%s: message %s is already stored, dropping the new copy",
			 m->b->dir, m->meta.remote_id);
		m->dup = true;
		return 0;
	}
	orig = m->meta.view_name;
	m->meta.view_name = NULL;
	for (int n = 2; rc == -EEXIST && n < 1000; n++) {
		char suffix[16];

		free(m->meta.view_name);
		snprintf(suffix, sizeof suffix, " (%d)", n);
		m->meta.view_name = store_view_variant(orig, suffix);
		if (!m->meta.view_name) {
			rc = -ENOMEM;
			break;
		}
		rc = index_msg_insert(ix, &m->meta);
	}
	if (rc == 0)
		log_info("%s: \"%s\" is taken, message %s is \"%s\"", m->b->dir, orig,
			 m->meta.remote_id ? m->meta.remote_id : "(none)", m->meta.view_name);
	free(orig);
	return rc;
}

/* Step 1 of store_batch_commit: the bytes reach the disk before the name
 * does, since a name in cur/ must never stand for a file whose data a crash
 * can lose. One syncfs makes the whole batch durable with one journal
 * commit and one cache flush, where an fsync per file would pay both per
 * message; it is at least as strong, and since Linux 5.8 reports a
 * writeback error on any file of the filesystem since sync_fd was opened.
 * Where it fails for want of support, each file is fsync'd. */
static int batch_sync(struct store_batch *b, struct store_msg **done, size_t nd)
{
	char path[PATH_MAX];
	int rc = 0;

	if (syncfs(b->sync_fd) == 0)
		return 0;
	if (errno != ENOSYS && errno != EOPNOTSUPP) {
		rc = -errno;
		log_error("syncfs(%s/%s): %m", b->s->root, b->dir);
		return rc;
	}
	for (size_t i = 0; i < nd && rc == 0; i++) {
		int fd;

		msg_path(done[i], false, path, sizeof path);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 || fsync(fd) < 0) {
			rc = -errno;
			log_error("fsync(%s): %m", path);
		}
		if (fd >= 0)
			close(fd);
	}
	return rc;
}

/* Step 2: into cur/, complete files only, under their final names.
 * *renamed_r: how many were renamed (the first ones), also on failure. */
static int batch_rename(struct store_msg **done, size_t nd, size_t *renamed_r)
{
	char from[PATH_MAX], to[PATH_MAX];
	int rc = 0;

	for (*renamed_r = 0; *renamed_r < nd; (*renamed_r)++) {
		msg_path(done[*renamed_r], false, from, sizeof from);
		rc = msg_path(done[*renamed_r], true, to, sizeof to);
		if (rc == 0)
			rc = store_rename_noreplace(from, to);
		if (rc) {
			errno = -rc;
			log_error("rename(%s, %s): %m", from, to);
			break;
		}
	}
	return rc;
}

/* m's part records, with its row. A failed analysis costs only the parts:
 * the row goes in with n_parts NULL, and the backfill
 * (fetch/parts_backfill.c) tries again. */
static int insert_parts(struct index *ix, struct store_msg *m)
{
	if (!m->queued || m->dup)
		return 0;
	if (m->parts_rc == 0)
		return index_parts_put_new(ix, m->meta.id, &m->parts);
	log_warn("%s: message %s: cannot read its parts (%s); a later sync tries again",
		 m->b->dir, m->meta.remote_id ? m->meta.remote_id : "(none)",
		 strerror(-m->parts_rc));
	return 0;
}

/* Step 4: the rows, in one transaction; ids gets the ids of the rows added
 * (*k_r of them: duplicates add none). */
static int batch_insert(struct store_batch *b, struct index *ix, struct store_msg **done,
			size_t nd, int64_t now, int64_t *ids, size_t *k_r)
{
	int rc = index_begin(ix);

	if (rc)
		return rc;
	for (size_t i = 0; i < nd && rc == 0; i++) {
		rc = insert_row(ix, done[i]);
		if (rc == 0)
			rc = insert_parts(ix, done[i]);
		if (rc == 0 && !done[i]->dup)
			ids[(*k_r)++] = done[i]->meta.id;
	}
	if (rc == 0)
		rc = index_folder_touch(ix, b->folder_id, now);
	return index_end(ix, rc);
}

/* Takes the batch's finished messages out of it. After a failure their
 * files go (from cur/ for the first renamed, else from tmp/); after a
 * commit only those of dropped duplicates go (or recovery removes them). */
static void batch_drop(struct store_msg **done, size_t nd, size_t renamed, bool failed)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < nd; i++) {
		if ((failed || done[i]->dup) &&
		    msg_path(done[i], i < renamed, path, sizeof path) == 0)
			unlink_quiet(path);
		msg_remove(done[i]);
	}
}

int store_batch_commit(struct store_batch *b, struct index *ix, int64_t now,
		       int64_t **ids_r, size_t *n_r)
{
	struct store_msg **done = NULL;
	char cur[PATH_MAX];
	size_t nd = 0, renamed = 0, k = 0;
	int64_t *ids = NULL;
	int rc;

	if (ids_r)
		*ids_r = NULL;
	if (n_r)
		*n_r = 0;
	if (b->n_finished == 0)
		return 0;
	done = malloc(b->n_finished * sizeof *done);
	ids = malloc(b->n_finished * sizeof *ids);
	if (!done || !ids) {
		free(done);
		free(ids);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b->n; i++)
		if (b->msgs[i]->finished)
			done[nd++] = b->msgs[i];

	/* 1. The files' data, durable (batch_sync says why first). */
	rc = batch_sync(b, done, nd);
	/* 2. Renamed into cur/. */
	if (rc == 0)
		rc = batch_rename(done, nd, &renamed);
	/* 3. One fsync of cur/ makes every rename durable before any row names
	 *    it: a committed row must never point at a name a crash takes back. */
	if (rc == 0) {
		snprintf(cur, sizeof cur, "%s/%s/cur", b->s->root, b->dir);
		rc = store_fsync_dir(cur);
	}
	/* The parts, analysed meanwhile; also before a failure frees the
	 * handles the analysis writes into. */
	store_analyse_wait(b->an);
	/* 4. The rows last, in one transaction. A crash before the commit
	 *    leaves complete files in cur/ without rows: store_recover removes
	 *    them, and the next sync fetches them again from the server, which
	 *    still has them. (Inside a caller's transaction the rows become
	 *    durable only with the caller's commit; the same holds.) */
	if (rc == 0)
		rc = batch_insert(b, ix, done, nd, now, ids, &k);

	batch_drop(done, nd, renamed, rc != 0);
	free(done);
	if (rc || !ids_r)
		free(ids);
	else
		*ids_r = ids;
	if (rc == 0 && n_r)
		*n_r = k;
	return rc;
}
