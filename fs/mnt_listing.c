/* mnt_listing: directory listings for READDIR and READDIRPLUS, built from
 * the tree and the index and kept between the requests of one listing and
 * for the next one (struct mnt_dir). */
#include "mnt_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
	atomic_bool refreshing;   /* mnt_dir_refresh is building its successor */
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
	const struct user_settings *user;   /* borrowed, may be NULL */
	uid_t uid;
	gid_t gid;
};

/* A message, and its parts directory when it has one. */
static int dir_add_msg(void *ctx, const struct index_msg *msg)
{
	struct msg_walk *w = ctx;
	struct stat st;
	char name[256];
	int rc;

	if (msg->id <= 0 || msg->id >= MNT_ID_MAX || !mnt_tree_name_ok(msg->view_name))
		return 0;
	mnt_file_stat(&st, MNT_INO_OF_MSG(msg->id), msg->size, mnt_msg_time(msg), w->uid, w->gid);
	rc = dir_add(w->d, msg->view_name, &st, false);
	if (rc || !mnt_parts_shown(w->user, msg, name))
		return rc;
	mnt_parts_dir_stat(&st, MNT_INO_OF_PART(msg->id, 0), mnt_msg_time(msg), w->uid, w->gid);
	return dir_add(w->d, name, &st, false);
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
	const struct user_settings *user;
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
	mnt_node_stat(m, n, &st);
	rc = dir_add(d, ".", &st, true);
	if (!rc) {
		if (n->parent)
			mnt_node_stat(m, n->parent, &st);
		rc = dir_add(d, "..", &st, true);
	}
	for (size_t i = 0; !rc && i < n->n_children; i++) {
		const struct mnt_node *c = n->children[i];

		mnt_node_stat(m, c, &st);
		rc = dir_add(d, c->name, &st, c->kind == MNT_NODE_STATUS);
	}
	d->folder_id = n->folder_id;
	d->removals = n->removals;
	user = n->user;
	mnt_owner_of(m, n->user, &uid, &gid);
	pthread_rwlock_unlock(&m->lock);
	if (!rc && d->folder_id) {
		struct index *ix = mnt_ix(m);
		struct msg_walk w = { d, user, uid, gid };

		mnt_index_warm(m);
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
		/* While the sync thread rebuilds it after a change, the kept
		 * listing is served: building a second one here would make
		 * this READDIR wait as long (20,000 messages: 40 to 100 ms). The
		 * kernel's copy is invalidated once the new one is in. */
		if (off > 0 || m->listings[i]->gen == atomic_load(&m->gen) ||
		    atomic_load(&m->listings[i]->refreshing)) {
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

void mnt_dir_refreshing(struct mnt *m, fuse_ino_t ino, bool on)
{
	pthread_mutex_lock(&m->dir_lock);
	for (size_t i = 0; i < MNT_LISTINGS && m->listings[i]; i++)
		if (m->listings[i]->ino == ino)
			atomic_store(&m->listings[i]->refreshing, on);
	pthread_mutex_unlock(&m->dir_lock);
}

/* Directory ino changed (the caller bumped m->gen): when a listing of it
 * is kept, build it again now, on the sync thread that reports the
 * change, so that the next listing finds it ready instead of building it
 * inside a READDIR (20,000 messages: 40 to 100 ms here, one request). */
void mnt_dir_refresh(struct mnt *m, fuse_ino_t ino)
{
	struct mnt_dir *d = NULL, *drop = NULL;
	bool kept = false;

	pthread_mutex_lock(&m->dir_lock);
	for (size_t i = 0; i < MNT_LISTINGS && m->listings[i] && !kept; i++)
		kept = m->listings[i]->ino == ino;
	pthread_mutex_unlock(&m->dir_lock);
	if (!kept || dir_build(m, ino, &d)) {
		mnt_dir_refreshing(m, ino, false);
		return;
	}
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

void mnt_dirs_release(struct mnt *m)
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
	mnt_set_times(st, de->mtime);
}

/* Where a listing goes on after an entry: the offset the kernel gets with
 * each entry is a cookie that names the entry, not its position, so that
 * a listing which crosses a change (a rebuilt listing, mnt_dir_refresh) still
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

void mnt_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
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
