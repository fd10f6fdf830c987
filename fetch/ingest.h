/* ingest: how messages from any protocol enter the store and leave it.
 *
 * Bytes stream into a tmp/ file while the header is kept for msgmeta; a
 * complete message is named (names.c) and handed to a store batch; batches
 * are committed durably (store_batch_commit) and only then announced to the
 * mount; vanished rows move to trash and are announced after. The IMAP and
 * POP3 paths both go through here, so both follow the same order and the
 * same rules.
 *
 * Threads: an ingest_run and its ingests belong to one sync worker. */
#ifndef MAILDISK_INGEST_H
#define MAILDISK_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../cache/buf.h"
#include "../cache/index.h"
#include "../cache/store.h"
#include "msgmeta.h"
#include "sync.h"

/* One account's sync run. */
struct ingest_run {
	struct store *st;                   /* borrowed */
	const struct settings *cfg;         /* borrowed: store-wide limits (min_free) */
	struct index *ix;                   /* owned by sync_account: the worker's writer connection */
	const struct account_settings *a;   /* borrowed */
	const struct sync_opts *o;          /* borrowed */
	struct sync_result *r;              /* borrowed: counts, worst status, first error */
	int64_t sync_id;                    /* audit row of this run */
	char label[160];                    /* "alice/work" */
	bool changed;                       /* something was added or trashed */
	char local_error[512];              /* the first local failure, said where its cause was known */
};

/* Worst-of into r->status: STOPPED, then local, account, folder, message. */
void ingest_note_status(struct ingest_run *run, enum fetch_status st);
/* Keeps the first account-level error message for r->error. */
void ingest_note_error(struct ingest_run *run, const char *msg);
/* Logs a local failure once, with its context, and keeps the first one in
 * run->local_error for the folder's status. */
void ingest_local_error(struct ingest_run *run, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
bool ingest_stopping(const struct ingest_run *run);

/* "mail/<user>/<account>/<folder path>", every part through names.c. */
int ingest_folder_path(const struct account_settings *a, const char *folder, char delim,
		       struct buf *out);

/* New messages for one folder. */
struct ingest {
	struct ingest_run *run;             /* borrowed */
	const struct index_folder *f;       /* borrowed */
	uint32_t uidvalidity;               /* for names_tag: part of the identity */
	struct store_batch *batch;          /* owned */
	struct store_msg *cur;              /* borrowed from batch: the message being written, or NULL */
	struct msgmeta_header hdr;          /* the current message's header, up to INGEST_HEADER_KEEP */
	uint64_t msg_bytes;                 /* of the current message */
	int64_t room;                       /* bytes that may still be written above the free-space floor */
	bool failed_local;                  /* the store refused something: the caller must stop */
	bool too_big;                       /* the current message passed max_message_size: stop */
	char too_big_error[512];            /* then why, for the driver's error */
	size_t done, total;
	double started, shown;              /* monotonic seconds: ingest_open, the last progress line */
	uint64_t bytes0;                    /* run->r->bytes at ingest_open */
};

#define INGEST_HEADER_KEEP (256u << 10)

/* Prepares the folder's Maildir and a batch; total is for progress only.
 * FETCH_OK or FETCH_LOCAL_BAD (logged). */
enum fetch_status ingest_open(struct ingest *in, struct ingest_run *run,
			      const struct index_folder *f, uint32_t uidvalidity, size_t total);
/* A message starts: 0, or -1 when the store failed or the filesystem is
 * below its free-space floor ([store] min_free; failed_local set, the
 * reason in run->local_error). */
int ingest_msg_begin(struct ingest *in);
/* 0, or -1 when the store failed (failed_local set), or the message passed
 * max_message_size (too_big set, the reason in too_big_error): stop. */
int ingest_msg_write(struct ingest *in, const void *p, size_t n);
/* The message did not arrive whole: its file goes. Safe with no message. */
void ingest_msg_abort(struct ingest *in);
/* The message arrived whole: named from its header and added to the batch,
 * which is committed when it is full. internal_date 0 means "now" (POP3).
 * 0, or -1 when the store failed (failed_local set: stop). A message that
 * cannot be named is dropped and counted as FETCH_MSG_BAD. */
int ingest_msg_finish(struct ingest *in, const char *remote_id, int64_t internal_date,
		      const char *flags);
/* Commits what is complete (also after a failure: those files are whole
 * and their ids known), reports progress, frees the batch. Returns st, or
 * FETCH_LOCAL_BAD if the store failed. */
enum fetch_status ingest_close(struct ingest *in, enum fetch_status st);

/* Moves the rows with these ids to trash (store_trash) and tells the mount.
 * 0 or a negative errno (logged). */
int ingest_trash(struct ingest_run *run, const struct index_folder *f, const int64_t *ids,
		 size_t n, const char *reason);
/* The same by remote ids (IMAP UIDs in decimal, POP3 UIDLs); ids no longer
 * active are skipped. FETCH_OK or FETCH_LOCAL_BAD. */
enum fetch_status ingest_trash_remote(struct ingest_run *run, const struct index_folder *f,
				      char *const *remote_ids, size_t n, const char *reason);

#endif
