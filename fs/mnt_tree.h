/* mnt_tree: the directories of the mount, held in memory, and the inode
 * numbering of everything the mount shows.
 *
 *   /                               root
 *   /<user>/                        every [user] of the config, synced or not
 *   /<user>/.status                 a generated text file
 *   /<user>/<account>/              every account of the config, and any
 *                                   account the index has folders for
 *   /<user>/<account>/<c1>/.../<cn>/  a folder: c1..cn are the components of
 *                                   the folder's store path after
 *                                   "mail/<user>/<account>/", i.e. exactly
 *                                   what names_folder_path produced, so every
 *                                   name is a safe component ("Work/Projects"
 *                                   is two nested directories)
 *   .../<view_name>                 a message (not held here: the index has
 *                                   them)
 *
 * Inode numbers (the low two bits say what a number is, so a directory and
 * a message can never share one; numbers stay below 2^48 so that tools
 * keeping st_ino in a double compare them right):
 *   ...00  a message: row id << 2 (stable: the row id never changes)
 *   000001 the root (FUSE_ROOT_ID)
 *   ...10  the directory of a folder row: folder id << 2 | 2
 *   ...11  a user or account directory, a directory that only holds
 *          sub-folders, a .status file: a 46-bit FNV-1a hash of what it is
 *          (kind, user, account, path) << 2 | 3. A collision with a number
 *          already in the tree is probed on to the next hash, so numbers are
 *          stable across restarts unless two names collide (odds about
 *          n^2 / 2^47).
 *   ...01  a message's parts (cache/parts.h), any number but 1: message
 *          row id << 12 | part number << 2 | 1, where part number 0 is
 *          the message's parts directory and 1..1023 its part records.
 *          Row ids at or above 2^40 show no parts; numbers stay below 2^52
 *          (exact in a double).
 * A directory keeps the number it first got for the life of the mount:
 * when a folder row appears for a directory that so far only held
 * sub-folders, its number stays the hashed one until the next mount.
 *
 * Nodes are never removed while the mount lives (folders are never deleted
 * from the index), so node pointers stay valid until mnt_tree_destroy.
 *
 * Threads: nothing here locks. The caller (struct mnt, fs/mnt_int.h)
 * holds a rwlock: shared for the lookups, exclusive for mnt_tree_merge
 * and mnt_tree_set_changed. */
#ifndef MAILDISK_MNT_TREE_H
#define MAILDISK_MNT_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "../cache/index.h"
#include "../cache/settings.h"

#define MNT_INO_KIND(ino)     ((ino) & 3u)
#define MNT_INO_MSG           0u
#define MNT_INO_FOLDER        2u
#define MNT_INO_HASHED        3u
#define MNT_INO_ROOT          1u
#define MNT_INO_OF_MSG(id)    ((uint64_t)(id) << 2)
#define MNT_MSG_OF_INO(ino)   ((int64_t)((ino) >> 2))
/* Message and folder row ids above this cannot be numbered (2^46). */
#define MNT_ID_MAX            ((int64_t)1 << 46)
#define MNT_INO_PART          1u   /* with any number but MNT_INO_ROOT */
#define MNT_INO_IS_PART(ino)  (MNT_INO_KIND(ino) == MNT_INO_PART && (ino) != MNT_INO_ROOT)
#define MNT_INO_OF_PART(id, n) (((uint64_t)(id) << 12) | ((uint64_t)(n) << 2) | MNT_INO_PART)
#define MNT_PART_MSG_OF_INO(ino) ((int64_t)((ino) >> 12))
#define MNT_PART_N_OF_INO(ino)   ((int)(((ino) >> 2) & 1023u))
/* Message row ids at or above this show no parts (2^40). */
#define MNT_PART_ID_MAX       ((int64_t)1 << 40)

enum mnt_node_kind {
	MNT_NODE_ROOT,
	MNT_NODE_USER,
	MNT_NODE_ACCOUNT,
	MNT_NODE_DIR,       /* a folder, or a directory holding sub-folders, or both */
	MNT_NODE_STATUS,    /* /<user>/.status */
};

struct mnt_node {
	uint64_t ino;
	enum mnt_node_kind kind;
	struct mnt_node *parent;            /* borrowed; the root's is NULL */
	char *name;                         /* owned; "" for the root */
	const struct user_settings *user;   /* borrowed from the settings; NULL for the root */
	char *account;                      /* owned; NULL above account level */
	int64_t folder_id;                  /* 0: no folder row has this directory */
	char *folder_name;                  /* owned, NULL when folder_id is 0: the name as the user knows it */
	int64_t mtime;                      /* max changed_at of the folders at or below, 0 none yet */
	uint64_t removals;                  /* removal reports for this folder so far (readdir uses it) */
	struct mnt_node **children;         /* owned array of borrowed nodes, in insertion order */
	size_t n_children, cap_children;
	size_t n_subdirs;                   /* children that are directories */
};

struct mnt_tree;

/* The root, a directory and a .status file per configured user whose name
 * is a safe component, and a directory per configured account. cfg is
 * borrowed and must outlive the tree. 0 or -ENOMEM. */
int mnt_tree_create(const struct settings *cfg, struct mnt_tree **r);
void mnt_tree_destroy(struct mnt_tree **t);

/* Adds what the folder rows need (account and path directories) and marks
 * each folder's directory with its id, name and changed_at. Rows of users
 * not in the config, and rows whose path does not have the form
 * "mail/<user>/<account>/<components>", are skipped (logged once). Rows
 * already in the tree only update changed_at. 0 or -ENOMEM. */
int mnt_tree_merge(struct mnt_tree *t, const struct index_folder *fs, size_t n);

/* Records a folder's newer changed_at; directory mtimes above it follow.
 * Returns the folder's node, or NULL when the folder is not in the tree. */
struct mnt_node *mnt_tree_set_changed(struct mnt_tree *t, int64_t folder_id, int64_t changed_at);

struct mnt_node *mnt_tree_root(const struct mnt_tree *t);
/* NULL when absent. */
struct mnt_node *mnt_tree_by_ino(const struct mnt_tree *t, uint64_t ino);
struct mnt_node *mnt_tree_by_folder(const struct mnt_tree *t, int64_t folder_id);
/* dir's child of that name, from a hash map (no scan of the children). */
struct mnt_node *mnt_tree_child(const struct mnt_tree *t, const struct mnt_node *dir,
				const char *name);

/* True for a string that can be a name in the mount: 1..255 bytes, no '/',
 * no NUL, not "." or "..". */
bool mnt_tree_name_ok(const char *name);

#endif
