/* mnt_parts: each message's parts as a directory beside it, "<stem>/"
 * next to "<stem>.eml" (cache/parts.h says what is in it and how the
 * names are made). The records come from the index (index_parts_get),
 * kept per thread for the message asked last. A READ of a plain part is
 * spliced from the message file like a message; any other is decoded by
 * parts_read, from a kept cursor or a resume mark. Parts never change once
 * recorded, so their entries and attributes are cached as long as
 * messages'; they leave with their message (mnt_notify.c). */
#include "mnt_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/parts.h"

/* ------------------------------------------------------------------ *
 * Per-thread records                                                 *
 * ------------------------------------------------------------------ */

/* The records of the message this thread asked for last: a listing, its
 * LOOKUPs and GETATTRs, and a file's READs mostly ask for one message
 * several times in a row. */
struct parts_cache {
	int64_t msg_id;
	struct parts_list l;
};

static pthread_key_t parts_key;
static pthread_once_t parts_once = PTHREAD_ONCE_INIT;
static bool parts_key_ok;

static void cache_destructor(void *p)
{
	struct parts_cache *c = p;

	parts_list_release(&c->l);
	free(c);
}

static void parts_key_init(void)
{
	parts_key_ok = pthread_key_create(&parts_key, cache_destructor) == 0;
}

/* The records of message id, owned by this thread's cache: valid until
 * this thread's next call. -ENOENT when it was never analysed. */
static int parts_of(struct mnt *m, int64_t id, const struct parts_list **r)
{
	struct parts_cache *c;
	struct parts_list l = { 0 };
	struct index *ix;
	int rc;

	pthread_once(&parts_once, parts_key_init);
	if (!parts_key_ok)
		return -ENOMEM;
	c = pthread_getspecific(parts_key);
	if (c && c->msg_id == id) {
		*r = &c->l;
		return 0;
	}
	ix = mnt_ix(m);
	if (!ix)
		return -EIO;
	rc = index_parts_get(ix, id, &l);
	if (rc)
		return rc;
	if (!c) {
		c = calloc(1, sizeof *c);
		if (!c || pthread_setspecific(parts_key, c)) {
			free(c);
			parts_list_release(&l);
			return -ENOMEM;
		}
	} else {
		parts_list_release(&c->l);
	}
	c->msg_id = id;
	c->l = l;
	*r = &c->l;
	return 0;
}

void mnt_parts_close_mine(void)
{
	struct parts_cache *c;

	pthread_once(&parts_once, parts_key_init);
	if (!parts_key_ok || !(c = pthread_getspecific(parts_key)))
		return;
	pthread_setspecific(parts_key, NULL);
	cache_destructor(c);
}

static const struct part_rec *rec_of(const struct parts_list *l, int n)
{
	if (n >= 1 && (size_t)n <= l->n && l->v[n - 1].n == n)
		return &l->v[n - 1];
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].n == n)
			return &l->v[i];
	return NULL;
}

/* ------------------------------------------------------------------ *
 * Names and attributes                                               *
 * ------------------------------------------------------------------ */

bool mnt_parts_dir_name(const char *view_name, char *out)
{
	size_t len = strlen(view_name);

	if (len <= 4 || len > 255 || strcmp(view_name + len - 4, ".eml") != 0)
		return false;
	memcpy(out, view_name, len - 4);
	out[len - 4] = '\0';
	return mnt_tree_name_ok(out);
}

bool mnt_parts_shown(const struct user_settings *u, const struct index_msg *msg, char *name)
{
	return u && u->parts && msg->n_parts > 0 && msg->id > 0 && msg->id < MNT_PART_ID_MAX &&
	       mnt_parts_dir_name(msg->view_name, name);
}

/* A parts directory's link count is 1, "not counted": find and fts then
 * never conclude from it that a directory has no more sub-directories
 * (the folder directories holding them say 1 as well, mnt_node_stat). */
void mnt_parts_dir_stat(struct stat *st, uint64_t ino, int64_t mtime, uid_t uid, gid_t gid)
{
	mnt_leaf_stat(st, ino, S_IFDIR | 0500, 0, mtime, uid, gid);
}

/* What part inode ino is, loaded: its message row (owned), the folder's
 * owner, the records and the one it names (NULL: the parts directory). */
struct part_at {
	struct index_msg msg;
	struct folder_info f;
	const struct parts_list *l;   /* this thread's cache */
	const struct part_rec *rec;
};

/* 0 (release at->msg after) or a negative errno. */
static int part_load(struct mnt *m, fuse_ino_t ino, struct part_at *at)
{
	int64_t id = MNT_PART_MSG_OF_INO(ino);
	int n = MNT_PART_N_OF_INO(ino);
	char name[256];
	int rc;

	memset(at, 0, sizeof *at);
	if (id <= 0 || id >= MNT_PART_ID_MAX)
		return -ENOENT;
	rc = mnt_msg_load(m, MNT_INO_OF_MSG(id), &at->msg, &at->f);
	if (rc)
		return rc;
	if (!mnt_parts_shown(at->f.user, &at->msg, name))
		rc = -ENOENT;
	else
		rc = parts_of(m, id, &at->l);
	if (!rc && n > 0 && !(at->rec = rec_of(at->l, n)))
		rc = -ENOENT;
	if (rc)
		index_msg_release(&at->msg);
	return rc;
}

static void rec_stat(const struct part_at *at, const struct part_rec *p, struct stat *st)
{
	int64_t t = mnt_msg_time(&at->msg);
	uint64_t ino = MNT_INO_OF_PART(at->msg.id, p ? p->n : 0);

	if (!p || p->kind == PART_DIR)
		mnt_parts_dir_stat(st, ino, t, at->f.uid, at->f.gid);
	else
		mnt_file_stat(st, ino, p->size, t, at->f.uid, at->f.gid);
}

static void entry_of(const struct part_at *at, const struct part_rec *p,
		     struct fuse_entry_param *e)
{
	memset(e, 0, sizeof *e);
	rec_stat(at, p, &e->attr);
	e->ino = e->attr.st_ino;
	e->attr_timeout = MNT_MSG_TIMEOUT;
	e->entry_timeout = MNT_MSG_TIMEOUT;
}

int mnt_parts_lookup_dir(struct mnt *m, int64_t folder_id, const struct user_settings *u,
			 const char *name, uid_t uid, gid_t gid, struct fuse_entry_param *e)
{
	struct index_msg msg = { 0 };
	char view[256], dir[256];
	struct index *ix;
	int rc;

	if (!u || !u->parts || strlen(name) + 4 > 255)
		return -ENOENT;
	ix = mnt_ix(m);
	if (!ix)
		return -EIO;
	snprintf(view, sizeof view, "%s.eml", name);
	rc = index_msg_lookup(ix, folder_id, view, &msg);
	if (rc)
		return rc;
	if (mnt_parts_shown(u, &msg, dir)) {
		memset(e, 0, sizeof *e);
		mnt_parts_dir_stat(&e->attr, MNT_INO_OF_PART(msg.id, 0), mnt_msg_time(&msg), uid,
				   gid);
		e->ino = e->attr.st_ino;
		e->attr_timeout = MNT_MSG_TIMEOUT;
		e->entry_timeout = MNT_MSG_TIMEOUT;
	} else {
		rc = -ENOENT;
	}
	index_msg_release(&msg);
	return rc;
}

/* ------------------------------------------------------------------ *
 * Operations                                                         *
 * ------------------------------------------------------------------ */

static int dir_load(struct mnt *m, fuse_ino_t ino, struct part_at *at)
{
	int rc = part_load(m, ino, at);

	if (!rc && at->rec && at->rec->kind != PART_DIR) {
		index_msg_release(&at->msg);
		rc = -ENOTDIR;
	}
	return rc;
}

void mnt_parts_lookup(fuse_req_t req, struct mnt *m, fuse_ino_t parent, const char *name)
{
	int pn = MNT_PART_N_OF_INO(parent);
	struct fuse_entry_param e;
	struct part_at at;
	int rc = dir_load(m, parent, &at);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = -ENOENT;
	for (size_t i = 0; i < at.l->n; i++) {
		const struct part_rec *p = &at.l->v[i];

		if (p->parent == pn && strcmp(p->name, name) == 0) {
			entry_of(&at, p, &e);
			rc = 0;
			break;
		}
	}
	index_msg_release(&at.msg);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

void mnt_parts_getattr(fuse_req_t req, struct mnt *m, fuse_ino_t ino)
{
	struct part_at at;
	struct stat st;
	int rc = part_load(m, ino, &at);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	rec_stat(&at, at.rec, &st);
	index_msg_release(&at.msg);
	fuse_reply_attr(req, &st, MNT_MSG_TIMEOUT);
}

/* The next record after *ri whose parent is dir, or NULL. */
static const struct part_rec *next_child(const struct part_at *at, int dir, size_t *ri)
{
	while (*ri < at->l->n && at->l->v[*ri].parent != dir)
		(*ri)++;
	return *ri < at->l->n ? &at->l->v[(*ri)++] : NULL;
}

/* Adds entry k of directory (dir, at) to out: 0 ".", 1 "..", then the
 * records whose parent is dir, in record order. The offset of entry k is
 * k + 1: the records never change, so positions name entries. Returns
 * the bytes it takes (not added when over room), or SIZE_MAX past the end. */
static size_t add_entry(fuse_req_t req, const struct part_at *at, int dir, size_t k, size_t *ri,
			char *out, size_t room, bool plus)
{
	const struct part_rec *p = NULL;
	struct fuse_entry_param e;
	const char *name;

	memset(&e, 0, sizeof e);
	if (k == 0) {
		name = ".";
		rec_stat(at, at->rec, &e.attr);
	} else if (k == 1) {
		name = "..";
		if (!at->rec) {
			e.attr.st_ino = at->f.ino;
			e.attr.st_mode = S_IFDIR;
		} else {
			rec_stat(at, at->rec->parent ? rec_of(at->l, at->rec->parent) : NULL, &e.attr);
		}
	} else {
		if (!(p = next_child(at, dir, ri)))
			return SIZE_MAX;
		name = p->name;
		entry_of(at, p, &e);
	}
	if (!plus)
		return fuse_add_direntry(req, out, room, name, &e.attr, (off_t)k + 1);
	if (!p)
		e.ino = 0;   /* "." and "..": listed, no entry kept */
	return fuse_add_direntry_plus(req, out, room, name, &e, (off_t)k + 1);
}

void mnt_parts_readdir(fuse_req_t req, struct mnt *m, fuse_ino_t ino, size_t size, off_t off,
		       bool plus)
{
	int dir = MNT_PART_N_OF_INO(ino);
	struct part_at at;
	size_t pos = 0, ri = 0;
	char *out;
	int rc = dir_load(m, ino, &at);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	out = malloc(size ? size : 1);
	if (!out) {
		index_msg_release(&at.msg);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t k = 0;; k++) {
		size_t len;

		if ((off_t)k < off) {   /* already sent: only walked past */
			if (k >= 2 && !next_child(&at, dir, &ri))
				break;
			continue;
		}
		len = add_entry(req, &at, dir, k, &ri, out + pos, size - pos, plus);
		if (len == SIZE_MAX || len > size - pos)
			break;
		pos += len;
	}
	index_msg_release(&at.msg);
	fuse_reply_buf(req, out, pos);
	free(out);
}

/* The encoded bytes a reader of part p at decoded offset off will want
 * next are asked from the disk at once (POSIX_FADV_WILLNEED does not
 * wait). The kernel's own readahead cannot do it: the READs of one part
 * come on several worker threads, each with its own descriptor of the
 * message file, so none of them looks sequential, and a cold part was
 * decoded from 32 KiB synchronous reads (4.6 times slower than the .eml). */
#define MNT_PART_AHEAD ((int64_t)4 << 20)

static void part_readahead(int fd, const struct part_rec *p, int64_t off)
{
	/* Encoded offsets grow about in proportion to decoded ones. */
	int64_t from = p->size > 0 ? (int64_t)((double)off / (double)p->size * (double)p->len) : 0;
	int64_t n = p->len - from < MNT_PART_AHEAD ? p->len - from : MNT_PART_AHEAD;

	if (n > 0)
		posix_fadvise(fd, p->off + from, n, POSIX_FADV_WILLNEED);
}

/* READ of a part file. Like a message's READ it does not look at the
 * message's state: a reader finishes a part whose message was trashed. */
void mnt_parts_read(fuse_req_t req, struct mnt *m, fuse_ino_t ino, size_t size, off_t off)
{
	int64_t id = MNT_PART_MSG_OF_INO(ino), folder_id;
	const struct parts_list *l;
	const struct part_rec *p;
	size_t len;
	int fd, rc;

	if (id <= 0 || id >= MNT_PART_ID_MAX || MNT_PART_N_OF_INO(ino) == 0) {
		fuse_reply_err(req, id > 0 ? EISDIR : ENOENT);
		return;
	}
	rc = parts_of(m, id, &l);
	p = rc ? NULL : rec_of(l, MNT_PART_N_OF_INO(ino));
	if (!p || p->kind == PART_DIR) {
		fuse_reply_err(req, rc ? -rc : p ? EISDIR : ENOENT);
		return;
	}
	if (off < 0 || off >= p->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	len = (int64_t)size < p->size - off ? size : (size_t)(p->size - off);
	fd = mnt_msg_fd(m, MNT_INO_OF_MSG(id), &folder_id);
	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	/* Once per MNT_PART_AHEAD / 4 of the part: the window stays ahead. */
	if (off == 0 || (p->len > MNT_PART_AHEAD && (off / (MNT_PART_AHEAD / 4)) !=
						   ((off + (int64_t)len) / (MNT_PART_AHEAD / 4))))
		part_readahead(fd, p, off);
	if (part_is_plain(p)) {
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);

		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		bv.buf[0].fd = fd;
		bv.buf[0].pos = p->off + off;
		fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
	} else {
		char *buf = malloc(len);
		ssize_t got = buf ? parts_read(m->cursors, ino, fd, p, buf, len, off) : -ENOMEM;

		if (got < 0)
			fuse_reply_err(req, (int)-got);
		else
			fuse_reply_buf(req, buf, (size_t)got);
		free(buf);
	}
	mnt_msg_fd_done(fd);
	/* A walk over the parts directories reads the messages' parts one
	 * message after the other, as a walk over the .eml files does. */
	if (off == 0 && folder_id)
		mnt_msg_readahead(m, id, folder_id);
}

int mnt_parts_content_type(struct mnt *m, fuse_ino_t ino, char **ctype)
{
	struct part_at at;
	int rc = part_load(m, ino, &at);

	if (rc)
		return rc;
	if (!at.rec || at.rec->kind == PART_DIR)
		rc = -ENODATA;
	else if (!(*ctype = strdup(at.rec->content_type)))
		rc = -ENOMEM;
	index_msg_release(&at.msg);
	return rc;
}
