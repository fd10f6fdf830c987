/* mnt_ops: the FUSE low-level operations of the read-only mount. Directories
 * come from the tree (mnt_tree.h), messages from the index: lookup by
 * (folder, view_name), getattr and read by row id, readdir by iterating
 * the folder's visible rows (mnt_listing.c); a part inode goes to
 * mnt_parts.c. There are no open handles
 * (FUSE no-open and no-opendir, op_open): the kernel caches file pages and
 * listings itself, a READ finds its backing file by inode (mnt_read.c), a
 * READDIR its listing by directory, and .status is a snapshot served by
 * offset (mnt_status.c). Every write is refused with EROFS. */
#include "mnt_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "../cache/log.h"

static void reply_rofs(fuse_req_t req, const char *op)
{
	log_info("read-only mount: %s refused", op);
	fuse_reply_err(req, EROFS);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct mnt *m = userdata;

	/* Lookups and listings of one directory may run in parallel: every
	 * answer comes from a snapshot or one index read. */
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* The kernel's "auto" mode stays: it asks READDIRPLUS for a listing
	 * with no cached entries, which is what makes a cold `ls -l` need no
	 * LOOKUP a file, and plain READDIR once it has them. READDIRPLUS for
	 * every page made the first listdir of 1,000,000 messages take 11.7 s
	 * instead of 2.0 s here (a kernel inode for every entry). */
	/* Nothing is ever written: no write-back cache to keep coherent. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* No POSIX ACLs: permissions are the mode bits (default_permissions),
	 * and the ACL names get "not supported" like every other name outside
	 * user.mail.* (xattr_foreign_err), which `ls` remembers. With
	 * FUSE_CAP_POSIX_ACL the kernel cached our "no ACL" (ENODATA) instead,
	 * but forgets it whenever a READDIRPLUS entry refreshes an inode, and
	 * `ls -l` then asked it again for every file. */
	conn->want &= ~FUSE_CAP_POSIX_ACL;
	/* No OPEN, FLUSH, RELEASE, OPENDIR or RELEASEDIR at all (op_open,
	 * op_opendir): 20,000 messages read warm took 0.8 to 1.9 s through
	 * the mount against 0.18 s directly with them. */
	m->no_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
	m->no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
	if (m->no_open)
		conn->want |= FUSE_CAP_NO_OPEN_SUPPORT;
	if (m->no_opendir)
		conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
	/* Cached pages of a file whose size or mtime changed are dropped: what
	 * keeps .status current (mnt_status_refresh). Messages never change. */
	if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	/* Message bytes go from the backing file's page cache to the kernel
	 * through a pipe, without a copy through our memory (mnt_read_msg). */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	/* READs of up to 1 MiB instead of 128 KiB (the kernel takes the
	 * request size from max_write: FUSE_MAX_PAGES), a quarter of the
	 * round trips for a large message or part. */
	conn->max_write = 1u << 20;
}

static void entry_of_node(const struct mnt *m, const struct mnt_node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof *e);
	mnt_node_stat(m, n, &e->attr);
	e->ino = n->ino;
	e->entry_timeout = MNT_DIR_TIMEOUT;
	/* .status changes with every sync and has no notify: never cached. */
	e->attr_timeout = n->kind == MNT_NODE_STATUS ? 0 : MNT_DIR_TIMEOUT;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mnt *m = mnt_serving(req);
	struct fuse_entry_param e;
	const struct mnt_node *dir, *c;
	const struct user_settings *u = NULL, *du;
	int64_t folder_id;
	bool status = false;
	struct index *ix;
	struct index_msg msg = { 0 };
	uid_t uid;
	gid_t gid;
	int rc;

	if (MNT_INO_KIND(parent) == MNT_INO_MSG) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (MNT_INO_IS_PART(parent)) {
		mnt_parts_lookup(req, m, parent, name);
		return;
	}
	pthread_rwlock_rdlock(&m->lock);
	dir = mnt_tree_by_ino(m->tree, parent);
	if (!dir || dir->kind == MNT_NODE_STATUS) {
		pthread_rwlock_unlock(&m->lock);
		fuse_reply_err(req, dir ? ENOTDIR : ENOENT);
		return;
	}
	c = mnt_tree_child(m->tree, dir, name);
	if (c) {
		entry_of_node(m, c, &e);
		status = c->kind == MNT_NODE_STATUS;
		u = c->user;
	}
	folder_id = dir->folder_id;
	du = dir->user;
	mnt_owner_of(m, dir->user, &uid, &gid);
	pthread_rwlock_unlock(&m->lock);
	if (c) {
		if (status)
			mnt_status_refresh(m, u, &e.attr);
		fuse_reply_entry(req, &e);
		return;
	}
	if (!folder_id) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	mnt_index_warm(m);
	ix = mnt_ix(m);
	if (!ix) {
		fuse_reply_err(req, EIO);
		return;
	}
	rc = index_msg_lookup(ix, folder_id, name, &msg);
	if (rc == -ENOENT) {
		/* Not a message: perhaps the parts directory of one. */
		rc = mnt_parts_lookup_dir(m, folder_id, du, name, uid, gid, &e);
		if (!rc) {
			fuse_reply_entry(req, &e);
			return;
		}
	}
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (msg.id <= 0 || msg.id >= MNT_ID_MAX) {
		index_msg_release(&msg);
		fuse_reply_err(req, EOVERFLOW);
		return;
	}
	memset(&e, 0, sizeof e);
	mnt_file_stat(&e.attr, MNT_INO_OF_MSG(msg.id), msg.size, mnt_msg_time(&msg), uid, gid);
	e.ino = e.attr.st_ino;
	e.attr_timeout = MNT_MSG_TIMEOUT;
	e.entry_timeout = MNT_MSG_TIMEOUT;
	mnt_hint_put(m, e.ino, msg.folder_id, msg.store_file);
	index_msg_release(&msg);
	fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	/* Nothing is kept per inode: directories live as long as the mount,
	 * messages are read from the index each time. */
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mnt *m = mnt_serving(req);
	const struct mnt_node *n;
	const struct user_settings *u = NULL;
	struct stat st;
	bool status = false;

	(void)fi;
	if (MNT_INO_IS_PART(ino)) {
		mnt_parts_getattr(req, m, ino);
		return;
	}
	if (MNT_INO_KIND(ino) == MNT_INO_MSG) {
		struct index_msg msg = { 0 };
		struct folder_info f;
		int rc = mnt_msg_load(m, ino, &msg, &f);

		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
		mnt_file_stat(&st, ino, msg.size, mnt_msg_time(&msg), f.uid, f.gid);
		index_msg_release(&msg);
		fuse_reply_attr(req, &st, MNT_MSG_TIMEOUT);
		return;
	}
	pthread_rwlock_rdlock(&m->lock);
	n = mnt_tree_by_ino(m->tree, ino);
	if (n) {
		mnt_node_stat(m, n, &st);
		status = n->kind == MNT_NODE_STATUS;
		u = n->user;
	}
	pthread_rwlock_unlock(&m->lock);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (status) {
		int rc = mnt_status_refresh(m, u, &st);

		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	fuse_reply_attr(req, &st, status ? 0 : MNT_DIR_TIMEOUT);
}

static void readdir_any(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct mnt *m = mnt_serving(req);

	if (MNT_INO_IS_PART(ino))
		mnt_parts_readdir(req, m, ino, size, off, plus);
	else
		mnt_readdir(req, ino, size, off, plus);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	readdir_any(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	readdir_any(req, ino, size, off, true);
}

/* With FUSE_CAP_NO_OPENDIR_SUPPORT the kernel sends one OPENDIR, takes our
 * ENOSYS as "never again" and caches listings itself; a kernel without it
 * gets an open with no handle and the same caching asked for. */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mnt *m = fuse_req_userdata(req);
	const struct mnt_node *n;
	bool is_dir;

	if (m->no_opendir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	pthread_rwlock_rdlock(&m->lock);
	n = mnt_tree_by_ino(m->tree, ino);
	/* A part inode that is a file fails its first READDIR instead. */
	is_dir = (n && n->kind != MNT_NODE_STATUS) || MNT_INO_IS_PART(ino);
	pthread_rwlock_unlock(&m->lock);
	if (!is_dir) {
		fuse_reply_err(req, MNT_INO_KIND(ino) == MNT_INO_MSG ? ENOTDIR : ENOENT);
		return;
	}
	fi->fh = 0;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/* With FUSE_CAP_NO_OPEN_SUPPORT the kernel sends one OPEN, takes our
 * ENOSYS as "never again" and from then on opens every file itself,
 * keeping its pages (FOPEN_KEEP_CACHE) and sending no FLUSH or RELEASE:
 * a warm read is the page cache alone. Reads therefore come without a
 * handle and find the backing file by inode (msg_fd). A kernel without it
 * gets an open with no handle. The mount is "ro" to the kernel, so a
 * write open never gets here; the check stays for a kernel that asks. */
static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mnt *m = fuse_req_userdata(req);

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		reply_rofs(req, "open for writing");
		return;
	}
	if (m->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->fh = 0;
	fi->noflush = 1;
	/* Messages and parts never change; .status changes on every sync. */
	if (MNT_INO_KIND(ino) == MNT_INO_MSG || MNT_INO_IS_PART(ino))
		fi->keep_cache = 1;
	else
		fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct mnt *m = mnt_serving(req);
	const struct mnt_node *n;
	const struct user_settings *u = NULL;

	(void)fi;
	if (MNT_INO_KIND(ino) == MNT_INO_MSG) {
		mnt_read_msg(req, m, ino, size, off);
		return;
	}
	if (MNT_INO_IS_PART(ino)) {
		mnt_parts_read(req, m, ino, size, off);
		return;
	}
	pthread_rwlock_rdlock(&m->lock);
	n = mnt_tree_by_ino(m->tree, ino);
	if (n && n->kind == MNT_NODE_STATUS)
		u = n->user;
	pthread_rwlock_unlock(&m->lock);
	if (!u) {
		fuse_reply_err(req, n ? EISDIR : ENOENT);
		return;
	}
	mnt_status_read(req, m, u, size, off);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct mnt *m = fuse_req_userdata(req);
	struct statvfs sv;

	(void)ino;
	if (statvfs(store_root(m->st), &sv)) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = 255;
	sv.f_flag |= ST_RDONLY;
	fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes (messages and parts) ---- */

struct xattr_set {
	const char *name[9];
	const char *value[9];
	size_t n;
	char date[40];
};

static void xattrs_of(struct xattr_set *x, const struct index_msg *msg, const struct folder_info *f)
{
	int64_t t = mnt_msg_time(msg);
	struct tm tm;
	time_t tt = (time_t)t;

	x->n = 0;
	x->date[0] = '\0';
	/* RFC 3339 in UTC: the Date header's own zone is not kept. */
	if (t > 0 && gmtime_r(&tt, &tm))
		strftime(x->date, sizeof x->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
#define XA(n_, v_) do { if ((v_) && *(v_)) { x->name[x->n] = (n_); x->value[x->n++] = (v_); } } while (0)
	XA("user.mail.from", msg->sender);
	XA("user.mail.to", msg->recipients);
	XA("user.mail.subject", msg->subject);
	XA("user.mail.date", x->date);
	XA("user.mail.message_id", msg->message_id);
	XA("user.mail.flags", msg->flags);
	XA("user.mail.account", f->account);
	XA("user.mail.folder", f->folder_name);
#undef XA
}

/* The answer for a name outside user.mail.*: "not supported". coreutils'
 * `ls -l` asks every file for security.selinux and
 * system.posix_acl_access; "not supported" it remembers per device and
 * stops asking, "no data" it does not, which cost a round trip per file
 * and name. */
static int xattr_foreign_err(const char *name)
{
	(void)name;
	return ENOTSUP;
}

/* The xattrs of message or part ino into x (their values point into msg
 * and *ctype: release and free them after). A part file has its
 * message's and its content type; a parts directory its message's. On
 * failure the request has had its error reply. */
static int load_xattrs(fuse_req_t req, fuse_ino_t ino, struct index_msg *msg,
		       struct folder_info *f, struct xattr_set *x, char **ctype)
{
	struct mnt *m = fuse_req_userdata(req);
	int rc = 0;

	*ctype = NULL;
	if (MNT_INO_IS_PART(ino)) {
		rc = mnt_parts_content_type(m, ino, ctype);
		if (rc == -ENODATA)
			rc = 0;
		ino = MNT_INO_OF_MSG(MNT_PART_MSG_OF_INO(ino));
	}
	if (!rc)
		rc = mnt_msg_load(m, ino, msg, f);
	if (rc) {
		free(*ctype);
		*ctype = NULL;
		fuse_reply_err(req, -rc);
		return rc;
	}
	xattrs_of(x, msg, f);
	if (*ctype) {
		x->name[x->n] = "user.mail.content_type";
		x->value[x->n++] = *ctype;
	}
	return 0;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct index_msg msg = { 0 };
	struct folder_info f;
	struct xattr_set x;
	const char *val = NULL;
	char *ctype;
	size_t len;

	if (strncmp(name, "user.mail.", 10) != 0) {
		fuse_reply_err(req, xattr_foreign_err(name));
		return;
	}
	if (MNT_INO_KIND(ino) != MNT_INO_MSG && !MNT_INO_IS_PART(ino)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	if (load_xattrs(req, ino, &msg, &f, &x, &ctype))
		return;
	for (size_t i = 0; i < x.n; i++)
		if (strcmp(x.name[i], name) == 0)
			val = x.value[i];
	if (!val) {
		fuse_reply_err(req, ENODATA);
	} else if (len = strlen(val), size == 0) {
		fuse_reply_xattr(req, len);
	} else if (size < len) {
		fuse_reply_err(req, ERANGE);
	} else {
		fuse_reply_buf(req, val, len);
	}
	index_msg_release(&msg);
	free(ctype);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct index_msg msg = { 0 };
	struct folder_info f;
	struct xattr_set x;
	char list[256], *ctype;
	size_t len = 0;

	if (MNT_INO_KIND(ino) != MNT_INO_MSG && !MNT_INO_IS_PART(ino)) {
		if (size == 0)
			fuse_reply_xattr(req, 0);
		else
			fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (load_xattrs(req, ino, &msg, &f, &x, &ctype))
		return;
	for (size_t i = 0; i < x.n; i++) {
		size_t l = strlen(x.name[i]) + 1;

		memcpy(list + len, x.name[i], l);
		len += l;
	}
	index_msg_release(&msg);
	free(ctype);
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, list, len);
}

/* ---- everything that would write ---- */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)ino, (void)attr, (void)to_set, (void)fi;
	reply_rofs(req, "setattr");
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	reply_rofs(req, "mknod");
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	reply_rofs(req, "mkdir");
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	reply_rofs(req, "unlink");
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	reply_rofs(req, "rmdir");
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	reply_rofs(req, "symlink");
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	reply_rofs(req, "rename");
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	reply_rofs(req, "link");
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	reply_rofs(req, "create");
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino, (void)buf, (void)size, (void)off, (void)fi;
	reply_rofs(req, "write");
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	reply_rofs(req, "setxattr");
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	reply_rofs(req, "removexattr");
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	(void)ino, (void)mode, (void)offset, (void)length, (void)fi;
	reply_rofs(req, "fallocate");
}

const struct fuse_lowlevel_ops mnt_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
};
