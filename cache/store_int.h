/* store_int: what the cache/store*.c files share and nothing else includes.
 * Each function returns 0 or a negative errno and logs the failing system
 * call with its path, unless it says otherwise. */
#ifndef MAILDISK_STORE_INT_H
#define MAILDISK_STORE_INT_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "store.h"

struct store {
	char *root;   /* owned: absolute, no trailing '/' */
	int lock_fd;  /* -1 unless store_lock succeeded; closing it releases the lock */
	bool unclean; /* the lock file still named a writer: it did not end cleanly
		       * (cleared by a store_recover that repaired everything) */
};

/* ---- paths and directories (store.c, store_fs.c) ---- */

/* A store-relative path from the index or names.c: not absolute, no empty,
 * "." or ".." component, so even a corrupt row stays inside the root. */
bool store_rel_ok(const char *rel);
/* The last component of path (into path). */
const char *store_base_name(const char *path);
int store_fsync_dir(const char *dir);
/* opendir(3); 0 with *d_r NULL when dir does not exist. */
int store_opendir(const char *dir, DIR **d_r);
/* mkdir -p with mode 0700; each directory created is fsync'd into its
 * parent at once. */
int store_mkdirs(const char *path);
/* store_mkdirs of the directory that holds file. */
int store_mkdirs_parent(const char *file);
/* <root>/<dir>/{tmp,new,cur}, as store_mkdirs. */
int store_maildir_create(const struct store *s, const char *dir);
/* rename(2) that never replaces the target (-EEXIST). Logs nothing: the
 * caller knows whether a missing source is an error. */
int store_rename_noreplace(const char *from, const char *to);

/* A set of directories to fsync once each. */
struct store_dirset {
	char **v;   /* owned */
	size_t n;
};
/* Adds the directory that holds file (once). -ENOMEM only. */
int store_dirset_add_parent(struct store_dirset *d, const char *file);
/* fsyncs each; the first error, after trying all. */
int store_dirset_sync(struct store_dirset *d);
void store_dirset_free(struct store_dirset *d);

/* ---- parts (store_analyse.c) ---- */

/* A thread that analyses the parts of a batch's finished messages. */
struct store_analyser;
struct parts_list;
/* 0, or a negative errno (logged) when no thread can start: then analyse
 * inline. */
int store_analyse_start(struct store_analyser **r);
/* Queues the file fd (dup'd: the caller may close fd) of size bytes;
 * parts_analyse fills *out and then sets *rc_out, which is -EINPROGRESS
 * until then. Blocks while the queue is full. 0, or -errno of dup. */
int store_analyse_add(struct store_analyser *a, int fd, int64_t size, struct parts_list *out,
		      int *rc_out);
/* Returns once everything queued is analysed. Safe on NULL. */
void store_analyse_wait(struct store_analyser *a);
/* Finishes what is queued and ends the thread. Safe on NULL. */
void store_analyse_stop(struct store_analyser **a);

/* ---- names (store_fs.c) ---- */

/* "trash/<user>/<account>/<folder path>/<file>" for a folder whose Maildir
 * is "mail/<user>/<account>/<folder path>"; malloc'd, NULL without memory. */
char *store_trash_rel(const char *folder_path, const char *file);
/* view with suffix put before ".eml", its stem cut at a UTF-8 boundary so
 * the result still fits a path component; malloc'd, NULL without memory. */
char *store_view_variant(const char *view, const char *suffix);
/* A view name for folder_id not used by any visible message: view itself,
 * else view with " (restored N)". *name_r (malloc'd) is NULL when view is
 * free. */
int store_free_view_name(struct index *ix, int64_t folder_id, const char *view, char **name_r);

#endif
