/* mnt_attr: the attributes the mount shows (fs/mnt.h says which), made
 * from a tree node or an index row, and the folder facts a handler copies
 * out of the tree under its lock. */
#include "mnt_int.h"

#include <errno.h>
#include <string.h>

void mnt_owner_of(const struct mnt *m, const struct user_settings *u, uid_t *uid, gid_t *gid)
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

void mnt_set_times(struct stat *st, int64_t t)
{
	st->st_mtim.tv_sec = (time_t)t;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

/* Caller holds m->lock. */
void mnt_node_stat(const struct mnt *m, const struct mnt_node *n, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = n->ino;
	st->st_blksize = 4096;
	mnt_owner_of(m, n->user, &st->st_uid, &st->st_gid);
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
	/* Messages' parts directories are not counted: 1 says "not counted"
	 * to find and fts, which otherwise stop looking for directories once
	 * they have seen as many as the count says. */
	if (n->folder_id && n->user && n->user->parts)
		st->st_nlink = 1;
	mnt_set_times(st, n->mtime ? n->mtime : m->started);
}

int64_t mnt_msg_time(const struct index_msg *msg)
{
	return msg->date > 0 ? msg->date : msg->internal_date > 0 ? msg->internal_date : 0;
}

/* Something with one link: a message, a part, or a parts directory
 * (whose 1 says "not counted", see mnt_parts_dir_stat). */
void mnt_leaf_stat(struct stat *st, uint64_t ino, mode_t mode, int64_t size, int64_t mtime,
		   uid_t uid, gid_t gid)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_mode = mode;
	st->st_nlink = 1;
	st->st_uid = uid;
	st->st_gid = gid;
	st->st_size = size;
	st->st_blksize = 4096;
	st->st_blocks = (size + 511) / 512;
	mnt_set_times(st, mtime);
}

void mnt_file_stat(struct stat *st, uint64_t ino, int64_t size, int64_t mtime, uid_t uid,
		   gid_t gid)
{
	mnt_leaf_stat(st, ino, S_IFREG | 0400, size, mtime, uid, gid);
}

bool mnt_folder_info(struct mnt *m, int64_t folder_id, struct folder_info *fi)
{
	const struct mnt_node *n;

	pthread_rwlock_rdlock(&m->lock);
	n = mnt_tree_by_folder(m->tree, folder_id);
	if (n) {
		fi->ino = n->ino;
		mnt_owner_of(m, n->user, &fi->uid, &fi->gid);
		fi->account = n->account;
		fi->folder_name = n->folder_name;
		fi->user = n->user;
		fi->removals = n->removals;
	}
	pthread_rwlock_unlock(&m->lock);
	return n != NULL;
}

/* Reads a message row and its folder's owner; a negative errno. */
int mnt_msg_load(struct mnt *m, fuse_ino_t ino, struct index_msg *msg, struct folder_info *fi)
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
	if (!mnt_folder_info(m, msg->folder_id, fi)) {
		index_msg_release(msg);
		return -ENOENT;
	}
	return 0;
}
