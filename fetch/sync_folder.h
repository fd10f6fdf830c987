/* sync_folder: one folder of one account, once, for every protocol.
 *
 * Open the folder; stop there when the server proves nothing changed;
 * after a UIDVALIDITY change re-key the rows by evidence instead of
 * downloading or deleting anything blindly; else list every remote id,
 * apply flag changes, fetch what is new straight into the store, and trash
 * what a complete listing no longer has, subject to the guards in
 * reconcile.h. The outcome (synced, held, interrupted, or the error) is
 * recorded in the folder's row, where status and .status read it.
 *
 * Threads: the sync worker that owns run and conn. */
#ifndef MAILDISK_SYNC_FOLDER_H
#define MAILDISK_SYNC_FOLDER_H

#include "driver.h"
#include "ingest.h"

/* The folder's row in the index (created on first sight, with df's note),
 * into *f (release it). FETCH_OK; FETCH_FOLDER_BAD when its name cannot
 * be stored, FETCH_LOCAL_BAD when the index failed (both logged). */
enum fetch_status sync_folder_row(struct ingest_run *run, const struct drv_folder *df,
				  struct index_folder *f);

/* Syncs df, whose row is f (from sync_folder_row). FETCH_OK, or how far
 * the failure reaches. The failure was logged, recorded for the folder,
 * and noted for the account (the first one), naming the folder. */
enum fetch_status sync_folder(struct ingest_run *run, const struct fetch_driver *drv,
			      void *conn, const struct drv_folder *df, struct index_folder *f);

/* Records a folder the driver's probe proved unchanged as synced. */
void sync_folder_unchanged(struct ingest_run *run, const struct index_folder *f);

#endif
