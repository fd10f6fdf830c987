/* mnt_notify: the sync side. The sync workers report changes through a
 * struct sync_observer; the tree and the kept listings are brought up to
 * date and the kernel's caches invalidated, after the index commit, with
 * no lock held: a notify call blocks on the kernel's directory lock while
 * a lookup in that directory waits for us, so holding a lock a FUSE
 * handler takes would deadlock (libfuse fuse_lowlevel.h,
 * notify_inval_entry). Messages never change once stored, so only what
 * does change is invalidated: directory listings and mtimes, a message
 * leaving. */
#include "mnt_int.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "../cache/log.h"

/* Reads every folder row and adds what is new to the tree. */
int mnt_refresh_tree(struct mnt *m, struct index *ix)
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
	uint64_t chain[MNT_CHAIN_MAX], folder_ino = 0;
	size_t k = 0;
	struct mnt_node *node;

	if (ix && index_folder_get(ix, folder_id, &f) == 0) {
		changed = f.changed_at;
		index_folder_release(&f);
	}
	pthread_rwlock_rdlock(&m->lock);
	node = mnt_tree_by_folder(m->tree, folder_id);
	if (node)
		folder_ino = node->ino;
	pthread_rwlock_unlock(&m->lock);
	if (!node && ix)
		mnt_refresh_tree(m, ix);
	if (folder_ino)
		mnt_dir_refreshing(m, folder_ino, true);
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
		mnt_dir_refresh(m, chain[0]);
	if (folder_ino && (!k || chain[0] != folder_ino))
		mnt_dir_refreshing(m, folder_ino, false);
	if (!k || !atomic_load(&m->notify_ok))
		return;
	for (size_t i = 0; names && i < n; i++) {
		char dir[256];

		if (ids[i] <= 0 || ids[i] >= MNT_ID_MAX || !names[i])
			continue;
		notify_report("delete notification", MNT_INO_OF_MSG(ids[i]),
			      fuse_lowlevel_notify_delete(m->se, chain[0], MNT_INO_OF_MSG(ids[i]),
							  names[i], strlen(names[i])));
		/* Its parts directory leaves with it (ENOENT when never looked up). */
		if (ids[i] < MNT_PART_ID_MAX && mnt_parts_dir_name(names[i], dir))
			notify_report("delete notification", MNT_INO_OF_PART(ids[i], 0),
				      fuse_lowlevel_notify_delete(m->se, chain[0],
								  MNT_INO_OF_PART(ids[i], 0),
								  dir, strlen(dir)));
	}
	inval_chain(m, chain, k);
}

static void obs_added(void *ctx, int64_t folder_id, const int64_t *msg_ids, size_t n)
{
	folder_changed(ctx, folder_id, msg_ids, NULL, n);
}

/* The backfill recorded parts of msg_ids: their parts directories appear,
 * which changes the folder's listing as added messages do. */
static void obs_analysed(void *ctx, int64_t folder_id, const int64_t *msg_ids, size_t n)
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

	if (!ix || mnt_refresh_tree(m, ix))
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

void mnt_notify_init(struct mnt *m)
{
	m->obs = (struct sync_observer){
		.added = obs_added,
		.removed = obs_removed,
		.analysed = obs_analysed,
		.folder_added = obs_folder_added,
		.user_changed = obs_user_changed,
		.ctx = m,
	};
}
