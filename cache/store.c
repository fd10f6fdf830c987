/* store: the store's root, its writer lock, and paths inside it (see
 * store.h). The rest of the store is one file per concern:
 *   store_batch.c    adding messages: tmp/, syncfs, rename into cur/, rows
 *   store_trash.c    trash, restore, purge
 *   store_flags.c    flags as Maildir info suffixes
 *   store_recover.c  the start-up pass that repairs what a crash left
 *   store_layout.c   moving folders out of older layouts
 *   store_fs.c       the file-system helpers and names they share
 *
 * Every multi-step change moves files first and commits rows last, with
 * the files and directories made durable in between (docs/design.md,
 * Write order), so a crash at any instant leaves one of a few states that
 * store_recover recognises and finishes or undoes:
 *   adding:    file in tmp/                -> removed (half-written)
 *              file in cur/, no row         -> removed (server still has it)
 *   trashing:  active row, file in trash/  -> row marked trashed
 *   restoring: trashed row, file in cur/   -> row marked restored
 * and a visible row whose file is gone everywhere is dropped, so the next
 * sync fetches the message again. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "log.h"
#include "store_int.h"

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

/* ---- folders ---- */

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
