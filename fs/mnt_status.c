/* mnt_status: /<user>/.status, generated from the index and served as a
 * snapshot by offset (struct status_snap says how a read(2) sees one
 * text whole). */
#include "mnt_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
int mnt_status_refresh(struct mnt *m, const struct user_settings *u, struct stat *st)
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
	mnt_set_times(st, sn->mtime);
	st->st_mtim.tv_nsec = (long)(sn->gen % 1000000000u);
	pthread_mutex_unlock(&sn->lock);
	free(old);
	free(text);
	return 0;
}

void mnt_status_read(fuse_req_t req, struct mnt *m, const struct user_settings *u, size_t size,
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
		int rc = mnt_status_refresh(m, u, &st);

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

int mnt_status_init(struct mnt *m)
{
	m->snaps = calloc(m->cfg->n_users ? m->cfg->n_users : 1, sizeof *m->snaps);
	if (!m->snaps)
		return -ENOMEM;
	for (size_t i = 0; i < m->cfg->n_users; i++)
		pthread_mutex_init(&m->snaps[i].lock, NULL);
	return 0;
}

void mnt_status_free(struct mnt *m)
{
	for (size_t i = 0; m->snaps && i < m->cfg->n_users; i++) {
		free(m->snaps[i].text);
		pthread_mutex_destroy(&m->snaps[i].lock);
	}
	free(m->snaps);
	m->snaps = NULL;
}
