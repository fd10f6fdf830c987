/* store: Maildir files, the trash, and the recovery pass (see store.h and
 * docs/design.md, Write order).
 *
 * Maildir (https://cr.yp.to/proto/maildir.html): a message is written to
 * tmp/ under a unique name, then renamed into cur/ with an info suffix
 * ":2,<flags>". Our names are "<unix time>.M<usec>P<pid>Q<counter>.maildisk";
 * O_EXCL catches the collision that time, pid and counter already exclude.
 *
 * Every multi-step change moves files first and commits rows last, with
 * fsyncs in between, so a crash at any instant leaves one of a few states
 * that store_recover recognises and finishes or undoes:
 *   adding:    file in tmp/                -> removed (half-written)
 *              file in cur/, no row         -> removed (server still has it)
 *   trashing:  active row, file in trash/  -> row marked trashed
 *   restoring: trashed row, file in cur/   -> row marked restored
 * and a visible row whose file is gone everywhere is dropped, so the next
 * sync fetches the message again. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "names.h"
#include "store_fs.h"

#define RECOVERED_REASON "recovered after crash"

struct store {
	char *root;   /* owned: absolute, no trailing '/' */
	int lock_fd;  /* -1 unless store_lock succeeded; closing it releases the lock */
	bool unclean; /* the lock file still named a writer: it did not end cleanly */
};

struct store_msg {
	struct store_batch *b;  /* borrowed: the batch that owns this handle */
	int fd;                 /* the tmp/ file while writing, -1 after */
	char name[128];         /* unique base name: tmp/<name>, cur/<name>:2,<flags> */
	uint64_t size;
	bool finished;
	bool dup;               /* at commit: the row already exists, drop this copy */
	struct index_msg meta;  /* owned strings once finished */
};

struct store_batch {
	struct store *s;         /* borrowed */
	int64_t folder_id;
	char *dir;               /* owned: the folder's Maildir, store-relative */
	struct store_msg **msgs; /* owned, each owned */
	size_t n, cap;
	size_t n_finished;
	uint64_t bytes;
	int sync_fd;             /* the folder's tmp/, open since the batch began: its
				  * filesystem is synced with syncfs(2), which reports
				  * writeback errors seen since this open */
};

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

/* ---- paths and directories ---- */

/* Store-relative paths come from the index and names.c; refusing absolute
 * paths and "." or ".." components keeps even a corrupt row inside root. */
bool store_rel_ok(const char *rel)
{
	const char *p = rel;

	if (!rel || !*rel || *rel == '/')
		return false;
	while (*p) {
		size_t n = strcspn(p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

int store_path(const struct store *s, const char *rel, char *out, size_t outlen)
{
	int n;

	if (!store_rel_ok(rel)) {
		log_error("store: refusing path \"%s\"", rel ? rel : "(null)");
		return -EINVAL;
	}
	n = snprintf(out, outlen, "%s/%s", s->root, rel);
	if (n < 0 || (size_t)n >= outlen)
		return -ENAMETOOLONG;
	return 0;
}

static const char *base_name(const char *path)
{
	const char *p = strrchr(path, '/');

	return p ? p + 1 : path;
}

int store_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0) {
		rc = -errno;
		log_error("open(%s): %m", dir);
		return rc;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		log_error("fsync(%s): %m", dir);
	}
	close(fd);
	return rc;
}

/* A directory we create is made durable in its parent at once: files
 * fsync'd into it later must not lose their way. */
int store_mkdirs(const char *path)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof tmp)
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		if (tmp[i] == '/' && tmp[i - 1] == '/')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0700) == 0) {
			char *slash = strrchr(tmp, '/');
			int rc;

			if (slash && slash != tmp) {
				*slash = '\0';
				rc = store_fsync_dir(tmp);
				*slash = '/';
			} else {
				rc = store_fsync_dir(slash ? "/" : ".");
			}
			if (rc)
				return rc;
		} else if (errno != EEXIST) {
			int rc = -errno;

			log_error("mkdir(%s): %m", tmp);
			return rc;
		}
		if (i < len)
			tmp[i] = '/';
	}
	return 0;
}

static int mkdirs_parent(const char *file)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(file, '/');
	size_t n = slash ? (size_t)(slash - file) : 0;

	if (n == 0 || n >= sizeof dir)
		return -EINVAL;
	memcpy(dir, file, n);
	dir[n] = '\0';
	return store_mkdirs(dir);
}

/* rename that never replaces: a name clash means something is wrong, and
 * overwriting a message would lose it. */
static int rename_noreplace(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EINVAL || errno == ENOSYS) {
		/* File system without RENAME_NOREPLACE: names are unique anyway. */
		if (access(to, F_OK) == 0)
			errno = EEXIST;
		else if (rename(from, to) == 0)
			return 0;
	}
	return -errno;
}

/* A set of directories to fsync once each. */
struct dirset {
	char **v;   /* owned */
	size_t n;
};

static int dirset_add_parent(struct dirset *d, const char *file)
{
	const char *slash = strrchr(file, '/');
	size_t len = slash ? (size_t)(slash - file) : 0;
	char **p, *dir;

	for (size_t i = 0; i < d->n; i++)
		if (strlen(d->v[i]) == len && memcmp(d->v[i], file, len) == 0)
			return 0;
	dir = strndup(file, len);
	p = realloc(d->v, (d->n + 1) * sizeof *p);
	if (!dir || !p) {
		free(dir);
		if (p)
			d->v = p;
		return -ENOMEM;
	}
	d->v = p;
	d->v[d->n++] = dir;
	return 0;
}

static int dirset_sync(struct dirset *d)
{
	int rc = 0;

	for (size_t i = 0; i < d->n; i++) {
		int r = store_fsync_dir(d->v[i]);

		if (r && !rc)
			rc = r;
	}
	return rc;
}

static void dirset_free(struct dirset *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i]);
	free(d->v);
	d->v = NULL;
	d->n = 0;
}

/* "trash/<user>/<account>/<folder path>/<file>" for a folder whose Maildir
 * is "mail/<user>/<account>/<folder path>". */
static char *trash_rel(const char *folder_path, const char *file)
{
	const char *p = strncmp(folder_path, "mail/", 5) == 0 ? folder_path + 5 : folder_path;
	char *r;

	if (asprintf(&r, "trash/%s/%s", p, file) < 0)
		return NULL;
	return r;
}

/* view with suffix put before ".eml", its stem cut at a UTF-8 boundary so
 * the result still fits a path component. NULL on allocation failure. */
static char *view_variant(const char *view, const char *suffix)
{
	size_t vlen = strlen(view), slen = strlen(suffix), elen = 0, keep;
	char *r;

	if (vlen >= 4 && strcmp(view + vlen - 4, ".eml") == 0) {
		elen = 4;
		vlen -= 4;
	}
	keep = vlen;
	if (keep + slen + elen > NAMES_COMPONENT_MAX) {
		keep = NAMES_COMPONENT_MAX - slen - elen;
		while (keep > 0 && ((unsigned char)view[keep] & 0xC0) == 0x80)
			keep--;
	}
	if (asprintf(&r, "%.*s%s%s", (int)keep, view, suffix, elen ? ".eml" : "") < 0)
		return NULL;
	return r;
}

/* A view name for folder_id not used by any visible message: view itself,
 * else view with " (restored N)". *name_r is NULL when view is free. */
static int free_view_name(struct index *ix, int64_t folder_id, const char *view, char **name_r)
{
	struct index_msg other;
	int rc;

	*name_r = NULL;
	rc = index_msg_lookup(ix, folder_id, view, &other);
	index_msg_release(&other);
	if (rc == -ENOENT)
		return 0;
	for (int n = 1; rc == 0 && n < 10000; n++) {
		char suffix[32];

		free(*name_r);
		snprintf(suffix, sizeof suffix, " (restored %d)", n);
		*name_r = view_variant(view, suffix);
		if (!*name_r)
			return -ENOMEM;
		rc = index_msg_lookup(ix, folder_id, *name_r, &other);
		index_msg_release(&other);
	}
	if (rc == -ENOENT)
		return 0;
	free(*name_r);
	*name_r = NULL;
	return rc ? rc : -EEXIST;
}

/* ---- open, close, lock ---- */

int store_open(const char *root, struct store **r)
{
	char sub[PATH_MAX];
	struct store *s;
	struct stat st;
	int rc;

	*r = NULL;
	if (!root || !*root)
		return -EINVAL;
	rc = store_mkdirs(root);
	if (rc)
		return rc;
	s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->lock_fd = -1;
	/* Absolute, so a daemon that changes directory keeps its store. */
	s->root = realpath(root, NULL);
	if (!s->root) {
		rc = -errno;
		log_error("realpath(%s): %m", root);
		goto fail;
	}
	if (stat(s->root, &st) < 0) {
		rc = -errno;
		log_error("stat(%s): %m", s->root);
		goto fail;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_error("store %s is not a directory", s->root);
		rc = -ENOTDIR;
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		log_error("store %s belongs to uid %u, not to uid %u that runs maildisk; refusing to use it",
			  s->root, (unsigned)st.st_uid, (unsigned)geteuid());
		rc = -EPERM;
		goto fail;
	}
	if ((st.st_mode & 077) != 0) {
		log_warn("store %s had mode %03o, setting 0700", s->root, (unsigned)(st.st_mode & 0777));
		if (chmod(s->root, 0700) < 0) {
			rc = -errno;
			log_error("chmod(%s): %m", s->root);
			goto fail;
		}
	}
	for (int i = 0; i < 2; i++) {
		snprintf(sub, sizeof sub, "%s/%s", s->root, i ? "trash" : "mail");
		rc = store_mkdirs(sub);
		if (rc)
			goto fail;
	}
	*r = s;
	return 0;
fail:
	store_close(&s);
	return rc;
}

void store_close(struct store **sp)
{
	struct store *s = sp ? *sp : NULL;

	if (!s)
		return;
	if (s->lock_fd >= 0) {
		/* An empty lock file says "ended cleanly" (store_needs_recovery).
		 * When a dead writer's mark was found and not repaired (check
		 * --store, trash), it stays for the next writer's recovery. */
		if (!s->unclean && ftruncate(s->lock_fd, 0) < 0)
			log_warn("ftruncate(%s/lock): %m", s->root);
		close(s->lock_fd);
	}
	free(s->root);
	free(s);
	*sp = NULL;
}

int store_free_space(const struct store *s, uint64_t *avail_r, uint64_t *total_r)
{
	struct statvfs v;

	if (statvfs(s->root, &v) < 0)
		return -errno;
	*avail_r = (uint64_t)v.f_bavail * v.f_frsize;
	*total_r = (uint64_t)v.f_blocks * v.f_frsize;
	return 0;
}

const char *store_root(const struct store *s)
{
	return s->root;
}

int store_index_open(const struct store *s, bool readonly, struct index **r)
{
	char path[PATH_MAX];
	int rc = store_path(s, "index.db", path, sizeof path);

	if (rc) {
		*r = NULL;
		return rc;
	}
	return index_open(path, readonly, r);
}

static pid_t read_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	long pid;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	return pid > 0 && pid <= INT_MAX ? (pid_t)pid : 0;
}

int store_lock(struct store *s, pid_t *holder_r)
{
	char path[PATH_MAX], pid[32];
	int fd, rc, n;

	if (holder_r)
		*holder_r = 0;
	if (s->lock_fd >= 0)
		return 0;
	rc = store_path(s, "lock", path, sizeof path);
	if (rc)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
		log_error("open(%s): %m", path);
		return rc;
	}
	/* A reader (store_lock_holder) holds a shared lock for an instant;
	 * retry briefly so it cannot make a writer fail to start. */
	for (int tries = 0;; tries++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		rc = -errno;
		if (rc == -EINTR)
			continue;
		if (rc != -EWOULDBLOCK || tries >= 10) {
			if (rc == -EWOULDBLOCK) {
				if (holder_r)
					*holder_r = read_pid(fd);
			} else {
				log_error("flock(%s): %m", path);
			}
			close(fd);
			return rc;
		}
		usleep(20 * 1000);
	}
	/* store_close empties the file: a PID still in it is a writer that
	 * died (kill -9, a crash, power loss), and recovery is due. */
	s->unclean = read_pid(fd) != 0;
	n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		rc = errno ? -errno : -EIO;
		log_error("writing %s: %m", path);
		close(fd);
		return rc;
	}
	s->lock_fd = fd;
	return 0;
}

bool store_needs_recovery(const struct store *s)
{
	return s->unclean;
}

pid_t store_lock_holder(const struct store *s)
{
	char path[PATH_MAX];
	pid_t pid = 0;
	int fd;

	if (s->lock_fd >= 0)
		return getpid();
	if (store_path(s, "lock", path, sizeof path))
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0)
		flock(fd, LOCK_UN);         /* nobody holds it */
	else if (errno == EWOULDBLOCK)
		pid = read_pid(fd);
	close(fd);
	return pid;
}

int store_open_file(const struct store *s, const char *rel)
{
	char path[PATH_MAX];
	int rc = store_path(s, rel, path, sizeof path);
	int fd;

	if (rc)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = -errno;
		log_warn("open(%s): %m", path);
		return rc;
	}
	return fd;
}

/* ---- adding messages ---- */

int store_maildir_create(const struct store *s, const char *dir)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char path[PATH_MAX], sub[PATH_MAX];
	int rc = store_path(s, dir, path, sizeof path);

	for (int i = 0; rc == 0 && i < 3; i++) {
		if (snprintf(sub, sizeof sub, "%s/%s", path, subs[i]) >= (int)sizeof sub)
			return -ENAMETOOLONG;
		rc = store_mkdirs(sub);
	}
	return rc;
}

int store_folder_create(struct store *s, const struct index_folder *f)
{
	char cur[PATH_MAX];
	struct stat st;
	int rc;

	if (!f->path || !store_rel_ok(f->path))
		return -EINVAL;
	rc = store_path(s, f->path, cur, sizeof cur);
	if (rc == 0 && strlen(cur) + 4 >= sizeof cur)
		rc = -ENAMETOOLONG;
	if (rc)
		return rc;
	strcat(cur, "/cur");
	if (stat(cur, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	return store_maildir_create(s, f->path);
}

int store_batch_create(struct store *s, const struct index_folder *f, struct store_batch **r)
{
	struct store_batch *b;
	int rc;

	*r = NULL;
	if (!f->path || !store_rel_ok(f->path))
		return -EINVAL;
	rc = store_maildir_create(s, f->path);
	if (rc)
		return rc;
	b = calloc(1, sizeof *b);
	if (!b)
		return -ENOMEM;
	b->s = s;
	b->folder_id = f->id;
	b->dir = strdup(f->path);
	if (!b->dir) {
		free(b);
		return -ENOMEM;
	}
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s/%s/tmp", s->root, b->dir);
	b->sync_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->sync_fd < 0) {
		rc = -errno;
		log_error("open(%s): %m", tmp);
		free(b->dir);
		free(b);
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
	struct store_msg *m, **p;
	char path[PATH_MAX];
	int rc;

	*m_r = NULL;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 32;

		p = realloc(b->msgs, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		b->msgs = p;
		b->cap = cap;
	}
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
		m->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
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
	/* Start writeback now, so the fsync at commit mostly finds it done
	 * and the disk works while the network delivers the next message. */
	sync_file_range(m->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
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
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	if (msg_path(m, false, path, sizeof path) == 0)
		unlink_quiet(path);
	msg_remove(m);
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
		m->meta.view_name = view_variant(orig, suffix);
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

int store_batch_commit(struct store_batch *b, struct index *ix, int64_t now,
		       int64_t **ids_r, size_t *n_r)
{
	struct store_msg **done = NULL;
	char from[PATH_MAX], to[PATH_MAX];
	size_t nd = 0, renamed = 0, k = 0, nd_synced = 0;
	int64_t *ids = NULL;
	int rc = 0;

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

	/* 1. The bytes reach the disk before the name does: a name in cur/
	 *    must never stand for a file whose data a crash can lose. One
	 *    syncfs makes the whole batch durable with one journal commit
	 *    and one cache flush, where an fsync per file would pay both per
	 *    message; it is at least as strong, and since Linux 5.8 reports a
	 *    writeback error on any file of the filesystem since sync_fd was
	 *    opened. Where it fails for want of support, fsync each file. */
	if (syncfs(b->sync_fd) == 0) {
		nd_synced = nd;
	} else if (errno != ENOSYS && errno != EOPNOTSUPP) {
		rc = -errno;
		log_error("syncfs(%s/%s): %m", b->s->root, b->dir);
	}
	for (size_t i = nd_synced; i < nd && rc == 0; i++) {
		int fd;

		msg_path(done[i], false, from, sizeof from);
		fd = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 || fsync(fd) < 0) {
			rc = -errno;
			log_error("fsync(%s): %m", from);
		}
		if (fd >= 0)
			close(fd);
	}
	/* 2. Into cur/: complete files only, under their final names. */
	for (; renamed < nd && rc == 0; renamed++) {
		msg_path(done[renamed], false, from, sizeof from);
		rc = msg_path(done[renamed], true, to, sizeof to);
		if (rc == 0)
			rc = rename_noreplace(from, to);
		if (rc) {
			errno = -rc;
			log_error("rename(%s, %s): %m", from, to);
			break;
		}
	}
	/* 3. One fsync of cur/ makes every rename durable before any row names
	 *    it: a committed row must never point at a name a crash takes back. */
	if (rc == 0) {
		snprintf(to, sizeof to, "%s/%s/cur", b->s->root, b->dir);
		rc = store_fsync_dir(to);
	}
	/* 4. The rows last, in one transaction. A crash before the commit
	 *    leaves complete files in cur/ without rows: store_recover removes
	 *    them, and the next sync fetches them again from the server, which
	 *    still has them. (Inside a caller's transaction the rows become
	 *    durable only with the caller's commit; the same holds.) */
	if (rc == 0)
		rc = index_begin(ix);
	if (rc == 0) {
		for (size_t i = 0; i < nd && rc == 0; i++) {
			rc = insert_row(ix, done[i]);
			if (rc == 0 && !done[i]->dup)
				ids[k++] = done[i]->meta.id;
		}
		if (rc == 0)
			rc = index_folder_touch(ix, b->folder_id, now);
		if (rc == 0)
			rc = index_commit(ix);
		else
			index_rollback(ix);
	}

	for (size_t i = 0; i < nd; i++) {
		bool in_cur = i < renamed;

		if (rc == 0 && !done[i]->dup)
			continue;
		/* Failure: take back what was renamed, drop the rest. A dropped
		 * duplicate goes after the commit (or with recovery). */
		if (msg_path(done[i], in_cur, from, sizeof from) == 0)
			unlink_quiet(from);
	}
	for (size_t i = 0; i < nd; i++)
		msg_remove(done[i]);
	free(done);
	if (rc) {
		free(ids);
		return rc;
	}
	if (ids_r)
		*ids_r = ids;
	else
		free(ids);
	if (n_r)
		*n_r = k;
	return 0;
}

/* ---- trash, restore, purge ---- */

struct move {
	int64_t id;
	int64_t folder_id;
	char *from;   /* owned: store-relative */
	char *to;     /* owned: store-relative */
	bool moved;
};

static void moves_free(struct move *mv, size_t n)
{
	for (size_t i = 0; mv && i < n; i++) {
		free(mv[i].from);
		free(mv[i].to);
	}
	free(mv);
}

/* Best effort after a failed transaction: files go back where the rows say
 * they are. What this cannot undo, store_recover repairs. */
static void moves_undo(struct store *s, struct move *mv, size_t n)
{
	char from[PATH_MAX], to[PATH_MAX];

	for (size_t i = 0; i < n; i++) {
		if (!mv[i].moved || store_path(s, mv[i].to, from, sizeof from) ||
		    store_path(s, mv[i].from, to, sizeof to))
			continue;
		int rc = rename_noreplace(from, to);

		if (rc && rc != -ENOENT) {
			errno = -rc;
			log_warn("rename(%s, %s): %m", from, to);
		}
	}
}

/* Renames each mv[i].from to mv[i].to, creating directories; then fsyncs
 * the directories on both sides. */
static int moves_do(struct store *s, struct move *mv, size_t n)
{
	char from[PATH_MAX], to[PATH_MAX];
	struct dirset dirs = { 0 };
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = store_path(s, mv[i].from, from, sizeof from);
		if (rc == 0)
			rc = store_path(s, mv[i].to, to, sizeof to);
		if (rc == 0)
			rc = mkdirs_parent(to);
		if (rc)
			break;
		rc = rename_noreplace(from, to);
		if (rc == -ENOENT && access(to, F_OK) == 0) {
			rc = 0;         /* moved by an earlier attempt */
		} else if (rc == -ENOENT) {
			log_warn("%s: file missing, recording the move anyway", from);
			rc = 0;
		} else if (rc) {
			errno = -rc;
			log_error("rename(%s, %s): %m", from, to);
			break;
		}
		mv[i].moved = true;
		rc = dirset_add_parent(&dirs, from);
		if (rc == 0)
			rc = dirset_add_parent(&dirs, to);
	}
	if (rc == 0)
		rc = dirset_sync(&dirs);
	dirset_free(&dirs);
	return rc;
}

/* Bumps changed_at of each distinct folder among the moved. */
static int moves_touch(struct index *ix, const struct move *mv, size_t n, int64_t now)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = mv[j].moved && mv[j].folder_id == mv[i].folder_id;
		if (mv[i].moved && !seen)
			rc = index_folder_touch(ix, mv[i].folder_id, now);
	}
	return rc;
}

static int id_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The same id twice would be moved once and marked twice, failing all. */
static int ids_distinct(const int64_t *ids, size_t n)
{
	int64_t *sorted = malloc(n * sizeof *sorted);
	int rc = 0;

	if (!sorted)
		return -ENOMEM;
	memcpy(sorted, ids, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, id_cmp);
	for (size_t i = 1; i < n && rc == 0; i++) {
		if (sorted[i] == sorted[i - 1]) {
			log_error("message %lld is listed twice for the trash", (long long)sorted[i]);
			rc = -EINVAL;
		}
	}
	free(sorted);
	return rc;
}

int store_trash(struct store *s, struct index *ix, const int64_t *ids, size_t n,
		int64_t sync_id, const char *reason, int64_t now)
{
	struct index_folder f = { 0 };
	struct move *mv;
	int rc, rc2;

	if (n == 0)
		return 0;
	rc = ids_distinct(ids, n);
	if (rc)
		return rc;
	mv = calloc(n, sizeof *mv);
	if (!mv)
		return -ENOMEM;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct index_msg m;

		rc = index_msg_get(ix, ids[i], &m);
		if (rc == 0 && m.state != MSG_ACTIVE) {
			/* Restored messages are local only; no sync trashes them. */
			log_error("message %lld is not active (state %d), not trashing it",
				  (long long)ids[i], (int)m.state);
			rc = -EINVAL;
		}
		if (rc == 0 && f.id != m.folder_id) {
			index_folder_release(&f);
			rc = index_folder_get(ix, m.folder_id, &f);
		}
		if (rc == 0) {
			mv[i].id = m.id;
			mv[i].folder_id = m.folder_id;
			mv[i].from = strdup(m.store_file);
			mv[i].to = trash_rel(f.path, base_name(m.store_file));
			if (!mv[i].from || !mv[i].to)
				rc = -ENOMEM;
		}
		index_msg_release(&m);
	}
	index_folder_release(&f);
	if (rc) {
		moves_free(mv, n);
		return rc;
	}

	/* Files first, their directories fsync'd, then the rows: a crash in
	 * between leaves active rows whose files are in trash/, which
	 * store_recover marks trashed. The other order could leave trashed
	 * rows whose files still show in cur/ with no visible row. */
	rc = moves_do(s, mv, n);
	rc2 = index_begin(ix);
	if (rc2)
		goto undo;
	for (size_t i = 0; i < n && rc2 == 0; i++)
		if (mv[i].moved)
			rc2 = index_msg_mark_trashed(ix, mv[i].id, mv[i].to, sync_id, reason, now);
	if (rc2 == 0)
		rc2 = moves_touch(ix, mv, n, now);
	if (rc2 == 0)
		rc2 = index_commit(ix);
	else
		index_rollback(ix);
undo:
	if (rc2) {
		moves_undo(s, mv, n);
		if (!rc)
			rc = rc2;
	}
	moves_free(mv, n);
	return rc;
}

int store_restore(struct store *s, struct index *ix, int64_t id)
{
	struct index_folder f = { 0 };
	struct index_msg m;
	struct move mv = { 0 };
	char *view = NULL;
	int rc;

	rc = index_msg_get(ix, id, &m);
	if (rc)
		return rc;
	if (m.state != MSG_TRASHED) {
		log_error("message %lld is not in the trash", (long long)id);
		rc = -EINVAL;
		goto out;
	}
	rc = index_folder_get(ix, m.folder_id, &f);
	if (rc == 0)
		rc = store_maildir_create(s, f.path);
	if (rc == 0)
		rc = free_view_name(ix, m.folder_id, m.view_name, &view);
	if (rc)
		goto out;
	mv.id = id;
	mv.folder_id = m.folder_id;
	mv.from = strdup(m.store_file);
	if (!mv.from || asprintf(&mv.to, "%s/cur/%s", f.path, base_name(m.store_file)) < 0) {
		mv.to = NULL;
		rc = -ENOMEM;
		goto out;
	}
	/* Files first again: a crash before the commit leaves a trashed row
	 * whose file is back in cur/, which store_recover finishes restoring. */
	rc = moves_do(s, &mv, 1);
	if (rc == 0)
		rc = index_begin(ix);
	if (rc == 0) {
		if (view)
			rc = index_msg_set_view_name(ix, id, view);
		if (rc == 0)
			rc = index_msg_mark_restored(ix, id, mv.to);
		if (rc == 0)
			rc = index_folder_touch(ix, m.folder_id, (int64_t)time(NULL));
		if (rc == 0)
			rc = index_commit(ix);
		else
			index_rollback(ix);
	}
	if (rc)
		moves_undo(s, &mv, 1);
	if (rc == 0)
		log_info("restored message %lld as %s/%s", (long long)id, f.path,
			 view ? view : m.view_name);
out:
	free(mv.from);
	free(mv.to);
	free(view);
	index_folder_release(&f);
	index_msg_release(&m);
	return rc;
}

struct purge_item {
	int64_t id;
	char *file;   /* owned: store-relative */
	bool gone;
};

struct purge_list {
	int64_t cutoff;
	struct purge_item *v;   /* owned */
	size_t n, cap;
};

static int purge_collect(void *ctx, const struct index_msg *m)
{
	struct purge_list *l = ctx;

	if (m->trashed_at >= l->cutoff)
		return 1;   /* oldest first: the rest are younger */
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct purge_item *p = realloc(l->v, cap * sizeof *p);

		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n].id = m->id;
	l->v[l->n].gone = false;
	l->v[l->n].file = strdup(m->store_file);
	if (!l->v[l->n].file)
		return -ENOMEM;
	l->n++;
	return 0;
}

int store_purge(struct store *s, struct index *ix, int64_t cutoff, size_t *n_r)
{
	struct purge_list l = { .cutoff = cutoff };
	struct dirset dirs = { 0 };
	char path[PATH_MAX];
	size_t n = 0;
	int rc;

	*n_r = 0;
	rc = index_trash_foreach(ix, NULL, purge_collect, &l);
	if (rc > 0)
		rc = 0;
	/* Files first, then rows: a crash in between leaves trashed rows
	 * without files, which the next purge deletes. The directories are
	 * fsync'd first so no file can come back without its row. */
	for (size_t i = 0; i < l.n && rc == 0; i++) {
		if (store_path(s, l.v[i].file, path, sizeof path))
			continue;
		if (unlink(path) < 0 && errno != ENOENT) {
			log_error("unlink(%s): %m", path);
			continue;
		}
		l.v[i].gone = true;
		rc = dirset_add_parent(&dirs, path);
	}
	if (rc == 0)
		rc = dirset_sync(&dirs);
	if (rc == 0)
		rc = index_begin(ix);
	if (rc == 0) {
		for (size_t i = 0; i < l.n && rc == 0; i++) {
			if (!l.v[i].gone)
				continue;
			rc = index_msg_delete(ix, l.v[i].id);
			if (rc == -ENOENT)
				rc = 0;     /* someone else purged it */
			else if (rc == 0)
				n++;
		}
		if (rc == 0)
			rc = index_commit(ix);
		else
			index_rollback(ix);
	}
	if (rc == 0)
		*n_r = n;
	dirset_free(&dirs);
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].file);
	free(l.v);
	return rc;
}

/* ---- flags ---- */

struct relink {
	char *from;    /* owned, store-relative: the name the row has */
	char *to;      /* owned, store-relative: the name its flags give; NULL: unchanged */
	bool linked;   /* to exists because we linked it */
};

static void relinks_free(struct relink *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].from);
		free(v[i].to);
	}
	free(v);
}

/* Unlinks, for each entry we linked, its new name (new_names) or its old
 * one, and fsyncs their directories. */
static int relinks_unlink(struct store *s, struct relink *v, size_t n, bool new_names)
{
	struct dirset dirs = { 0 };
	char path[PATH_MAX];
	int rc = 0;

	for (size_t i = 0; v && i < n; i++) {
		if (!v[i].linked || store_path(s, new_names ? v[i].to : v[i].from, path, sizeof path))
			continue;
		if (unlink(path) < 0 && errno != ENOENT) {
			log_warn("unlink(%s): %m", path);
			if (rc == 0)
				rc = -errno;
		} else if (rc == 0) {
			rc = dirset_add_parent(&dirs, path);
		}
	}
	if (rc == 0)
		rc = dirset_sync(&dirs);
	dirset_free(&dirs);
	return rc;
}

/* The name of row m's file with the info suffix of flags, or NULL (and
 * *rc_r 0) when it already has it. */
static char *flagged_name(const struct index_msg *m, const char *flags, int *rc_r)
{
	const char *base = base_name(m->store_file);
	size_t dirlen = (size_t)(base - m->store_file), keylen = strcspn(base, ":");
	char letters[16], *to = NULL;

	*rc_r = 0;
	store_maildir_flags(flags, letters, sizeof letters);
	if (asprintf(&to, "%.*s%.*s:2,%s", (int)dirlen, m->store_file, (int)keylen, base,
		     letters) < 0) {
		*rc_r = -ENOMEM;
		return NULL;
	}
	if (strcmp(to, m->store_file) == 0) {
		free(to);
		return NULL;
	}
	return to;
}

int store_set_flags(struct store *s, struct index *ix, const struct store_flag_change *v, size_t n)
{
	struct relink *rl = calloc(n ? n : 1, sizeof *rl);
	struct dirset dirs = { 0 };
	char from[PATH_MAX], to[PATH_MAX];
	int rc = rl ? 0 : -ENOMEM;

	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct index_msg m = { 0 };

		rc = index_msg_get(ix, v[i].id, &m);
		if (rc == 0 && m.state != MSG_ACTIVE) {
			log_error("message %lld is not active (state %d), not setting its flags",
				  (long long)v[i].id, (int)m.state);
			rc = -EINVAL;
		}
		if (rc == 0) {
			rl[i].from = strdup(m.store_file);
			rl[i].to = flagged_name(&m, v[i].flags, &rc);
			if (rc == 0 && !rl[i].from)
				rc = -ENOMEM;
		}
		index_msg_release(&m);
	}

	/* New names first, made durable: until the commit the row names the old
	 * file, after it the new one, and both exist in between, so a reader of
	 * the mount never finds its file missing. The old names go only after
	 * the commit. */
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (!rl[i].to)
			continue;
		rc = store_path(s, rl[i].from, from, sizeof from);
		if (rc == 0)
			rc = store_path(s, rl[i].to, to, sizeof to);
		if (rc)
			break;
		if (link(from, to) == 0) {
			rl[i].linked = true;
			rc = dirset_add_parent(&dirs, to);
		} else if (errno == ENOENT) {
			/* Renamed by another Maildir reader: store_recover follows it. */
			log_warn("%s: file missing, recording only the flags", from);
			free(rl[i].to);
			rl[i].to = NULL;
		} else {
			rc = -errno;
			log_error("link(%s, %s): %m", from, to);
		}
	}
	if (rc == 0)
		rc = dirset_sync(&dirs);
	dirset_free(&dirs);

	if (rc == 0)
		rc = index_begin(ix);
	if (rc == 0) {
		for (size_t i = 0; rc == 0 && i < n; i++) {
			rc = index_msg_set_flags(ix, v[i].id, v[i].flags);
			if (rc == 0 && rl[i].to)
				rc = index_msg_set_store_file(ix, v[i].id, rl[i].to);
		}
		if (rc == 0)
			rc = index_commit(ix);
		else
			index_rollback(ix);
		if (rc == 0)
			rc = relinks_unlink(s, rl, n, false);
		else
			relinks_unlink(s, rl, n, true);
	} else {
		relinks_unlink(s, rl, n, true);
	}
	relinks_free(rl, n);
	return rc;
}

/* ---- recovery ---- */

struct rec_row {
	int64_t id;
	enum msg_state state;
	int64_t size;
	char *file;         /* owned: store_file */
	char *view;         /* owned: view_name */
	const char *key;    /* into file: the unique part of the base name, before ':' */
	size_t keylen;
	bool seen;          /* its file was found */
};

struct rec_rows {
	struct rec_row *v;  /* owned */
	size_t n, cap;
};

static int rec_collect(void *ctx, const struct index_msg *m)
{
	struct rec_rows *l = ctx;
	struct rec_row *r;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct rec_row *p = realloc(l->v, cap * sizeof *p);

		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	r = &l->v[l->n];
	memset(r, 0, sizeof *r);
	r->id = m->id;
	r->state = m->state;
	r->size = m->size;
	r->file = strdup(m->store_file);
	r->view = strdup(m->view_name);
	if (!r->file || !r->view) {
		free(r->file);
		free(r->view);
		return -ENOMEM;
	}
	r->key = base_name(r->file);
	r->keylen = strcspn(r->key, ":");
	l->n++;
	return 0;
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

static int rec_sort_cmp(const void *pa, const void *pb)
{
	const struct rec_row *a = *(struct rec_row *const *)pa, *b = *(struct rec_row *const *)pb;

	return key_cmp(a->key, a->keylen, b->key, b->keylen);
}

static struct rec_row *rec_find(struct rec_row **v, size_t n, const char *key, size_t keylen)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(key, keylen, v[mid]->key, v[mid]->keylen);

		if (c == 0)
			return v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static bool exists(const char *path, struct stat *st)
{
	struct stat tmp;

	return lstat(path, st ? st : &tmp) == 0;
}

struct rec_folder {
	struct store *s;
	struct index *ix;
	const struct index_folder *f;
	bool repair;
	int64_t now;
	struct store_report *r;
	bool changed;
	char label[512];
};

static void check_size(struct rec_folder *c, const struct rec_row *row, const struct stat *st)
{
	if (st->st_size != row->size) {
		c->r->size_mismatch++;
		log_warn("%s: %s has %lld bytes, the index says %lld", c->label, row->file,
			 (long long)st->st_size, (long long)row->size);
	}
}

static int rec_tmp(struct rec_folder *c)
{
	char dir[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (snprintf(dir, sizeof dir, "%s/%s/tmp", c->s->root, c->f->path) >= (int)sizeof dir)
		return -ENAMETOOLONG;
	d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		log_error("opendir(%s): %m", dir);
		return rc;
	}
	while ((de = readdir(d))) {
		struct stat st;

		/* Only files are half-written messages; a directory here is
		 * none of ours to remove (a store not yet moved out of the old
		 * layout had folders inside tmp/: store_layout.c). */
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
			continue;
		c->r->tmp_removed++;
		if (!c->repair)
			continue;
		log_debug("%s: removing half-written tmp/%s", c->label, de->d_name);
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			rc = -errno;
			log_error("unlink(%s/%s): %m", dir, de->d_name);
		}
	}
	closedir(d);
	return rc;
}

/* A file in cur/ that no visible row names. */
static int rec_cur_file(struct rec_folder *c, struct rec_row **vis, size_t nvis,
			struct rec_row **tr, size_t ntr, DIR *dir, const char *name,
			const struct stat *st)
{
	size_t keylen = strcspn(name, ":");
	struct rec_row *row = rec_find(vis, nvis, name, keylen);
	char path[PATH_MAX], *rel = NULL, *view = NULL;
	int rc = 0;

	if (asprintf(&rel, "%s/cur/%s", c->f->path, name) < 0)
		return -ENOMEM;
	if (row && !row->seen && store_path(c->s, row->file, path, sizeof path) == 0 &&
	    !exists(path, NULL)) {
		/* Same message, new flags: another Maildir reader renamed it. */
		row->seen = true;
		check_size(c, row, st);
		log_info("%s: %s was renamed to %s, following it", c->label, row->file, rel);
		if (c->repair)
			rc = index_msg_set_store_file(c->ix, row->id, rel);
		goto out;
	}
	row = row ? NULL : rec_find(tr, ntr, name, keylen);
	if (row && store_path(c->s, row->file, path, sizeof path) == 0 && !exists(path, NULL)) {
		/* Crash inside store_restore: the file is back, the row is not. */
		c->r->trash_completed++;
		log_warn("%s: finishing the restore of %s", c->label, rel);
		if (c->repair) {
			rc = free_view_name(c->ix, c->f->id, row->view, &view);
			if (rc == 0 && view)
				rc = index_msg_set_view_name(c->ix, row->id, view);
			if (rc == 0)
				rc = index_msg_mark_restored(c->ix, row->id, rel);
			c->changed = true;
		}
		goto out;
	}
	/* Crash between rename and commit in store_batch_commit (or a
	 * duplicate copy): the server still has the message. */
	c->r->orphans_removed++;
	log_debug("%s: %s has no row%s", c->label, rel, c->repair ? ", removing it" : "");
	if (c->repair && unlinkat(dirfd(dir), name, 0) < 0 && errno != ENOENT) {
		rc = -errno;
		log_error("unlink(%s/%s): %m", c->s->root, rel);
	}
out:
	free(view);
	free(rel);
	return rc;
}

static int rec_folder(struct rec_folder *c)
{
	struct rec_rows rows = { 0 };
	struct rec_row **vis = NULL, **tr = NULL;
	size_t nvis = 0, ntr = 0;
	char dir[PATH_MAX], path[PATH_MAX];
	struct dirent *de;
	DIR *d = NULL;
	int rc;

	rc = rec_tmp(c);
	if (rc == 0)
		rc = index_msg_foreach(c->ix, c->f->id, 7u, rec_collect, &rows);
	if (rc)
		goto out;
	vis = malloc((rows.n + 1) * sizeof *vis);
	tr = malloc((rows.n + 1) * sizeof *tr);
	if (!vis || !tr) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < rows.n; i++) {
		if (rows.v[i].state == MSG_TRASHED)
			tr[ntr++] = &rows.v[i];
		else
			vis[nvis++] = &rows.v[i];
	}
	qsort(vis, nvis, sizeof *vis, rec_sort_cmp);
	qsort(tr, ntr, sizeof *tr, rec_sort_cmp);

	if (c->repair) {
		rc = index_begin(c->ix);
		if (rc)
			goto out;
	}
	/* Files in cur/ against the rows. */
	if (snprintf(dir, sizeof dir, "%s/%s/cur", c->s->root, c->f->path) >= (int)sizeof dir) {
		rc = -ENAMETOOLONG;
		goto done;
	}
	d = opendir(dir);
	if (!d && errno != ENOENT) {
		rc = -errno;
		log_error("opendir(%s): %m", dir);
		goto done;
	}
	while (d && rc == 0 && (de = readdir(d))) {
		struct rec_row *row;
		struct stat st;
		size_t keylen;

		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		keylen = strcspn(de->d_name, ":");
		row = rec_find(vis, nvis, de->d_name, keylen);
		if (row && !row->seen && strcmp(base_name(row->file), de->d_name) == 0) {
			row->seen = true;
			check_size(c, row, &st);
			continue;
		}
		rc = rec_cur_file(c, vis, nvis, tr, ntr, d, de->d_name, &st);
	}
	/* Visible rows whose file was not there. */
	for (size_t i = 0; i < nvis && rc == 0; i++) {
		struct rec_row *row = vis[i];
		struct stat st;
		char *trash;

		if (row->seen)
			continue;
		rc = store_path(c->s, row->file, path, sizeof path);
		if (rc)
			break;
		if (exists(path, &st)) {
			check_size(c, row, &st);
			continue;
		}
		trash = trash_rel(c->f->path, base_name(row->file));
		if (!trash) {
			rc = -ENOMEM;
			break;
		}
		if (row->state == MSG_ACTIVE && store_path(c->s, trash, path, sizeof path) == 0 &&
		    exists(path, NULL)) {
			/* Crash inside store_trash: the file moved, the row did not. */
			c->r->trash_completed++;
			log_warn("%s: %s was moved to the trash, marking it trashed", c->label,
				 row->view);
			if (c->repair)
				rc = index_msg_mark_trashed(c->ix, row->id, trash, 0,
							    RECOVERED_REASON, c->now);
		} else {
			c->r->rows_missing_file++;
			log_warn("%s: %s (%s) is missing%s", c->label, row->view, row->file,
				 c->repair ? ", dropping its row so the next sync fetches it again" : "");
			if (c->repair)
				rc = index_msg_delete(c->ix, row->id);
		}
		c->changed = true;
		free(trash);
	}
done:
	if (c->repair) {
		if (rc == 0 && c->changed)
			rc = index_folder_touch(c->ix, c->f->id, c->now);
		if (rc == 0)
			rc = index_commit(c->ix);
		else
			index_rollback(c->ix);
	}
out:
	if (d)
		closedir(d);
	free(vis);
	free(tr);
	for (size_t i = 0; i < rows.n; i++) {
		free(rows.v[i].file);
		free(rows.v[i].view);
	}
	free(rows.v);
	return rc;
}

int store_recover(struct store *s, struct index *ix, bool repair, struct store_report *r)
{
	struct index_folder *fs = NULL;
	size_t n = 0;
	int rc, first = 0;

	memset(r, 0, sizeof *r);
	rc = index_folder_list(ix, NULL, NULL, &fs, &n);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct rec_folder c = {
			.s = s, .ix = ix, .f = &fs[i], .repair = repair,
			.now = (int64_t)time(NULL), .r = r,
		};

		snprintf(c.label, sizeof c.label, "%s/%s %s", fs[i].user, fs[i].account, fs[i].name);
		if (!store_rel_ok(fs[i].path)) {
			log_error("%s: bad folder path \"%s\" in the index", c.label, fs[i].path);
			rc = -EINVAL;
		} else {
			rc = rec_folder(&c);
		}
		/* One broken folder does not stop the others from being repaired. */
		if (rc && !first)
			first = rc;
	}
	index_folder_array_free(&fs, n);
	if (repair && (r->tmp_removed || r->orphans_removed || r->trash_completed ||
		       r->rows_missing_file))
		log_info("store %s recovered: %zu tmp files removed, %zu orphans removed, "
			 "%zu trash moves completed, %zu rows without file dropped",
			 s->root, r->tmp_removed, r->orphans_removed, r->trash_completed,
			 r->rows_missing_file);
	/* Repaired: the mark of the writer that died may go now. */
	if (repair && first == 0)
		s->unclean = false;
	return first;
}

void store_maildir_flags(const char *imap_flags, char *out, size_t outlen)
{
	/* Maildir info letters in ASCII order, as the spec wants them. */
	static const struct {
		const char *imap;
		char c;
	} map[] = {
		{ "\\Draft", 'D' }, { "\\Flagged", 'F' }, { "$Forwarded", 'P' },
		{ "\\Answered", 'R' }, { "\\Seen", 'S' }, { "\\Deleted", 'T' },
	};
	bool have[sizeof map / sizeof map[0]] = { false };
	const char *p = imap_flags;
	size_t len = 0;

	if (outlen == 0)
		return;
	while (p && *p) {
		size_t n;

		p += strspn(p, " ()");
		n = strcspn(p, " ()");
		for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
			if (n == strlen(map[i].imap) && strncasecmp(p, map[i].imap, n) == 0)
				have[i] = true;
		p += n;
	}
	for (size_t i = 0; i < sizeof map / sizeof map[0] && len + 1 < outlen; i++)
		if (have[i])
			out[len++] = map[i].c;
	out[len] = '\0';
}
