/* store_fs: the file-system helpers that store.c and store_layout.c share.
 * Private to cache/store*.c. Each returns 0 or a negative errno and logs
 * the failing system call with its path. */
#ifndef MAILDISK_STORE_FS_H
#define MAILDISK_STORE_FS_H

#include <stdbool.h>
#include "store.h"

/* A store-relative path from the index or names.c: not absolute, no empty,
 * "." or ".." component, so even a corrupt row stays inside the root. */
bool store_rel_ok(const char *rel);
int store_fsync_dir(const char *dir);
/* mkdir -p with mode 0700; each directory created is fsync'd into its
 * parent at once. */
int store_mkdirs(const char *path);
/* <root>/<dir>/{tmp,new,cur}, as store_mkdirs. */
int store_maildir_create(const struct store *s, const char *dir);

#endif
