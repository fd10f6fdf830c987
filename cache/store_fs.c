/* store_fs: the file-system helpers and names that the store*.c files
 * share (see store_int.h). */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "names.h"
#include "store_int.h"

/* ---- paths and directories ---- */

const char *store_base_name(const char *path)
{
	const char *p = strrchr(path, '/');

	return p ? p + 1 : path;
}

int store_opendir(const char *dir, DIR **d_r)
{
	int rc;

	*d_r = opendir(dir);
	if (*d_r || errno == ENOENT)
		return 0;
	rc = -errno;
	log_error("opendir(%s): %m", dir);
	return rc;
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

int store_mkdirs_parent(const char *file)
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
int store_rename_noreplace(const char *from, const char *to)
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

int store_dirset_add_parent(struct store_dirset *d, const char *file)
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

int store_dirset_sync(struct store_dirset *d)
{
	int rc = 0;

	for (size_t i = 0; i < d->n; i++) {
		int r = store_fsync_dir(d->v[i]);

		if (r && !rc)
			rc = r;
	}
	return rc;
}

void store_dirset_free(struct store_dirset *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i]);
	free(d->v);
	d->v = NULL;
	d->n = 0;
}

/* ---- names ---- */

/* "trash/<user>/<account>/<folder path>/<file>" for a folder whose Maildir
 * is "mail/<user>/<account>/<folder path>". */
char *store_trash_rel(const char *folder_path, const char *file)
{
	const char *p = strncmp(folder_path, "mail/", 5) == 0 ? folder_path + 5 : folder_path;
	char *r;

	if (asprintf(&r, "trash/%s/%s", p, file) < 0)
		return NULL;
	return r;
}

/* view with suffix put before ".eml", its stem cut at a UTF-8 boundary so
 * the result still fits a path component. NULL on allocation failure. */
char *store_view_variant(const char *view, const char *suffix)
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
int store_free_view_name(struct index *ix, int64_t folder_id, const char *view, char **name_r)
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
		*name_r = store_view_variant(view, suffix);
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
