/* mnt_tree: the mount's directories in memory and its inode numbers (see
 * mnt_tree.h for the layout and the numbering rule). */
#include "mnt_tree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/buf.h"
#include "../cache/log.h"
#include "../cache/names.h"

/* An open-addressing map from a non-zero 64-bit key to a node. by_ino and
 * by_folder hold one node per key; by_name keys a node by a hash of its
 * parent and name, so keys may repeat and a lookup checks both. */
struct mnt_map {
	uint64_t *keys;             /* owned; 0 marks a free slot */
	struct mnt_node **vals;     /* owned array of borrowed nodes */
	size_t cap;                 /* a power of two, or 0 */
	size_t n;
};

struct mnt_tree {
	const struct settings *cfg;   /* borrowed */
	struct mnt_node *root;        /* borrowed from nodes */
	struct mnt_node **nodes;      /* owned array of owned nodes */
	size_t n_nodes, cap_nodes;
	struct mnt_map by_ino;
	struct mnt_map by_folder;
	struct mnt_map by_name;       /* every node but the root: mnt_tree_child without a scan */
	bool warned_foreign;          /* logged once: rows of users not configured */
};

#define MNT_HASH_BITS 46

static size_t map_slot(uint64_t key, size_t cap)
{
	/* Fibonacci hashing spreads the low-bit-tagged inode numbers. */
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static struct mnt_node *map_get(const struct mnt_map *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	for (size_t i = map_slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key)
			return m->vals[i];
		if (!m->keys[i])
			return NULL;
	}
}

/* replace: a node of the same key gives way (by_ino, by_folder); else the
 * next free slot takes it (by_name, and every rehash). */
static void map_place(struct mnt_map *m, uint64_t key, struct mnt_node *v, bool replace)
{
	size_t i = map_slot(key, m->cap);

	while (m->keys[i] && !(replace && m->keys[i] == key))
		i = (i + 1) & (m->cap - 1);
	if (!m->keys[i])
		m->n++;
	m->keys[i] = key;
	m->vals[i] = v;
}

/* Room for one more key, so that a map_place after it cannot fail. */
static int map_reserve(struct mnt_map *m)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct mnt_map g = { 0 };

		g.cap = m->cap ? m->cap * 2 : 64;
		g.keys = calloc(g.cap, sizeof *g.keys);
		g.vals = calloc(g.cap, sizeof *g.vals);
		if (!g.keys || !g.vals) {
			free(g.keys);
			free(g.vals);
			return -ENOMEM;
		}
		for (size_t i = 0; i < m->cap; i++)
			if (m->keys[i])
				map_place(&g, m->keys[i], m->vals[i], false);
		free(m->keys);
		free(m->vals);
		*m = g;
	}
	return 0;
}

static void map_release(struct mnt_map *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof *m);
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
	/* The terminating NUL is hashed too, so ("ab","c") differs from ("a","bc"). */
	do {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	} while (*s++);
	return h;
}

/* by_name's key: the parent's number and the name. Never 0 (a free slot). */
static uint64_t name_key(const struct mnt_node *parent, const char *name)
{
	uint64_t h = fnv1a(0xcbf29ce484222325ull ^ (parent->ino * 0x9E3779B97F4A7C15ull), name);

	return h ? h : 1;
}

/* The stable number of a node that has no row of its own: a hash of what
 * it is, probed on past numbers already taken. */
static uint64_t hashed_ino(const struct mnt_tree *t, char kind, const char *user,
			   const char *account, const char *path)
{
	char k[2] = { kind, '\0' };
	uint64_t h = 0xcbf29ce484222325ull;

	h = fnv1a(h, k);
	h = fnv1a(h, user ? user : "");
	h = fnv1a(h, account ? account : "");
	h = fnv1a(h, path ? path : "");
	for (;;) {
		uint64_t ino = ((h & ((1ull << MNT_HASH_BITS) - 1)) << 2) | MNT_INO_HASHED;

		if (!map_get(&t->by_ino, ino))
			return ino;
		h = fnv1a(h ^ 0x5bd1e995u, "probe");
	}
}

bool mnt_tree_name_ok(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	if (len == 0 || len > 255)
		return false;
	if (strchr(name, '/'))
		return false;
	return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static void node_free(struct mnt_node *n)
{
	if (!n)
		return;
	free(n->name);
	free(n->account);
	free(n->folder_name);
	free(n->children);
	free(n);
}

static bool is_dir_kind(enum mnt_node_kind k)
{
	return k != MNT_NODE_STATUS;
}

/* Creates a node under parent (NULL for the root) and files it in the maps. */
static struct mnt_node *node_add(struct mnt_tree *t, struct mnt_node *parent,
				 enum mnt_node_kind kind, const char *name, uint64_t ino,
				 const struct user_settings *user, const char *account)
{
	struct mnt_node *n = calloc(1, sizeof *n);

	if (!n)
		return NULL;
	n->ino = ino;
	n->kind = kind;
	n->parent = parent;
	n->user = user;
	n->name = strdup(name);
	if (!n->name || (account && !(n->account = strdup(account))))
		goto fail;
	if (buf_array_grow(&t->nodes, &t->cap_nodes, t->n_nodes, sizeof(*t->nodes), 32) < 0 ||
	    (parent && buf_array_grow(&parent->children, &parent->cap_children, parent->n_children,
				      sizeof(*parent->children), 8) < 0))
		goto fail;
	/* Both maps take the node, or neither does. */
	if (map_reserve(&t->by_ino) || (parent && map_reserve(&t->by_name)))
		goto fail;
	map_place(&t->by_ino, ino, n, true);
	if (parent)
		map_place(&t->by_name, name_key(parent, name), n, false);
	t->nodes[t->n_nodes++] = n;
	if (parent) {
		parent->children[parent->n_children++] = n;
		if (is_dir_kind(kind))
			parent->n_subdirs++;
	}
	return n;
fail:
	node_free(n);
	return NULL;
}

struct mnt_node *mnt_tree_root(const struct mnt_tree *t)
{
	return t->root;
}

struct mnt_node *mnt_tree_by_ino(const struct mnt_tree *t, uint64_t ino)
{
	return map_get(&t->by_ino, ino);
}

struct mnt_node *mnt_tree_by_folder(const struct mnt_tree *t, int64_t folder_id)
{
	return folder_id > 0 ? map_get(&t->by_folder, (uint64_t)folder_id) : NULL;
}

struct mnt_node *mnt_tree_child(const struct mnt_tree *t, const struct mnt_node *dir,
				const char *name)
{
	const struct mnt_map *m = &t->by_name;
	uint64_t key = name_key(dir, name);

	if (!m->cap)
		return NULL;
	for (size_t i = map_slot(key, m->cap); m->keys[i]; i = (i + 1) & (m->cap - 1))
		if (m->keys[i] == key && m->vals[i]->parent == dir &&
		    strcmp(m->vals[i]->name, name) == 0)
			return m->vals[i];
	return NULL;
}

static struct mnt_node *ensure_account(struct mnt_tree *t, struct mnt_node *un,
				       const char *account)
{
	struct mnt_node *an = mnt_tree_child(t, un, account);

	if (an)
		return an->kind == MNT_NODE_ACCOUNT ? an : NULL;
	return node_add(t, un, MNT_NODE_ACCOUNT, account,
			hashed_ino(t, 'a', un->name, account, NULL), un->user, account);
}

int mnt_tree_create(const struct settings *cfg, struct mnt_tree **r)
{
	struct mnt_tree *t = calloc(1, sizeof *t);

	*r = NULL;
	if (!t)
		return -ENOMEM;
	t->cfg = cfg;
	t->root = node_add(t, NULL, MNT_NODE_ROOT, "", MNT_INO_ROOT, NULL, NULL);
	if (!t->root)
		goto nomem;
	for (size_t i = 0; i < cfg->n_users; i++) {
		const struct user_settings *u = &cfg->users[i];
		struct mnt_node *un;

		if (!mnt_tree_name_ok(u->name) || u->name[0] == '.' ||
		    mnt_tree_child(t, t->root, u->name)) {
			log_warn("user %s: not a usable directory name, left out of the mount", u->name);
			continue;
		}
		un = node_add(t, t->root, MNT_NODE_USER, u->name,
			      hashed_ino(t, 'u', u->name, NULL, NULL), u, NULL);
		if (!un || !node_add(t, un, MNT_NODE_STATUS, ".status",
				     hashed_ino(t, 's', u->name, NULL, NULL), u, NULL))
			goto nomem;
	}
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const struct account_settings *a = &cfg->accounts[i];
		struct mnt_node *un = mnt_tree_child(t, t->root, a->user);

		if (!un || !mnt_tree_name_ok(a->name) || a->name[0] == '.')
			continue;
		if (!ensure_account(t, un, a->name) && !mnt_tree_child(t, un, a->name))
			goto nomem;
	}
	*r = t;
	return 0;
nomem:
	mnt_tree_destroy(&t);
	return -ENOMEM;
}

void mnt_tree_destroy(struct mnt_tree **tp)
{
	struct mnt_tree *t = *tp;

	if (!t)
		return;
	for (size_t i = 0; i < t->n_nodes; i++)
		node_free(t->nodes[i]);
	free(t->nodes);
	map_release(&t->by_ino);
	map_release(&t->by_folder);
	map_release(&t->by_name);
	free(t);
	*tp = NULL;
}

static void raise_mtime(struct mnt_node *n, int64_t v)
{
	for (; n; n = n->parent)
		if (n->mtime < v)
			n->mtime = v;
}

/* Splits "mail/<user>/<account>/<rest>" into its parts; rest points into
 * path. False when the path does not have that form. */
static bool split_path(const char *path, const struct index_folder *f, const char **rest_r)
{
	size_t ul = strlen(f->user), al = strlen(f->account);

	if (strncmp(path, "mail/", 5) != 0)
		return false;
	path += 5;
	if (strncmp(path, f->user, ul) != 0 || path[ul] != '/')
		return false;
	path += ul + 1;
	if (strncmp(path, f->account, al) != 0 || path[al] != '/')
		return false;
	path += al + 1;
	if (!*path)
		return false;
	*rest_r = path;
	return true;
}

static int merge_one(struct mnt_tree *t, const struct index_folder *f)
{
	struct mnt_node *un = mnt_tree_child(t, t->root, f->user), *dir;
	const char *rest, *p;
	char comp[256];

	if (!un || un->kind != MNT_NODE_USER) {
		if (!t->warned_foreign)
			log_info("index has folders of user %s, who is not in %s: not shown",
				 f->user, t->cfg->path ? t->cfg->path : "the config");
		t->warned_foreign = true;
		return 0;
	}
	if (f->id <= 0 || f->id >= MNT_ID_MAX || !f->path || !split_path(f->path, f, &rest) ||
	    !mnt_tree_name_ok(f->account) || f->account[0] == '.') {
		log_warn("%s/%s %s: folder %lld has an unusable path %s, not shown", f->user,
			 f->account, f->name, (long long)f->id, f->path ? f->path : "(none)");
		return 0;
	}
	dir = ensure_account(t, un, f->account);
	if (!dir)
		return mnt_tree_child(t, un, f->account) ? 0 : -ENOMEM;
	for (p = rest; *p;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		bool last = !slash || !slash[1];
		struct mnt_node *c;

		if (len == 0 || len >= sizeof comp) {
			log_warn("%s/%s %s: bad component in path %s, not shown", f->user,
				 f->account, f->name, f->path);
			return 0;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		/* "%74mp" in the store is "tmp" here: the mount is no Maildir. */
		if (names_folder_view(comp) != comp)
			strcpy(comp, names_folder_view(comp));
		if (!mnt_tree_name_ok(comp)) {
			log_warn("%s/%s %s: bad component in path %s, not shown", f->user,
				 f->account, f->name, f->path);
			return 0;
		}
		c = mnt_tree_child(t, dir, comp);
		if (c && c->kind != MNT_NODE_DIR) {
			log_warn("%s/%s %s: %s clashes with another name, not shown", f->user,
				 f->account, f->name, f->path);
			return 0;
		}
		if (!c) {
			uint64_t ino;

			if (last) {
				ino = ((uint64_t)f->id << 2) | MNT_INO_FOLDER;
			} else {
				char prefix[4096];
				size_t plen = (size_t)(p - rest) + len;

				if (plen >= sizeof prefix)
					plen = sizeof prefix - 1;
				memcpy(prefix, rest, plen);
				prefix[plen] = '\0';
				ino = hashed_ino(t, 'd', f->user, f->account, prefix);
			}
			c = node_add(t, dir, MNT_NODE_DIR, comp, ino, un->user, f->account);
			if (!c)
				return -ENOMEM;
		}
		dir = c;
		p += len;
		if (*p == '/')
			p++;
	}
	if (dir->folder_id && dir->folder_id != f->id) {
		log_warn("%s/%s %s: folders %lld and %lld share the path %s; showing the first",
			 f->user, f->account, f->name, (long long)dir->folder_id,
			 (long long)f->id, f->path);
		return 0;
	}
	if (!dir->folder_id) {
		char *name = strdup(f->name ? f->name : "");

		if (!name || map_reserve(&t->by_folder)) {
			free(name);
			return -ENOMEM;
		}
		map_place(&t->by_folder, (uint64_t)f->id, dir, true);
		dir->folder_id = f->id;
		dir->folder_name = name;
	}
	raise_mtime(dir, f->changed_at);
	return 0;
}

int mnt_tree_merge(struct mnt_tree *t, const struct index_folder *fs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = merge_one(t, &fs[i]);

		if (rc)
			return rc;
	}
	return 0;
}

struct mnt_node *mnt_tree_set_changed(struct mnt_tree *t, int64_t folder_id, int64_t changed_at)
{
	struct mnt_node *n = mnt_tree_by_folder(t, folder_id);

	if (n)
		raise_mtime(n, changed_at);
	return n;
}
