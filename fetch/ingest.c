/* ingest: messages into the store and out to the trash, for every protocol.
 * The order that keeps a crash harmless is the store's (store.h); the order
 * here is the mount's: nothing is announced before its commit. */
#include "ingest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../cache/log.h"
#include "../cache/names.h"
#include "msgmeta.h"
#include "progress.h"

/* Messages and bytes per durable batch: each batch costs an fsync per file,
 * one rename each, one directory fsync and one transaction. */
#define BATCH_MAX_MSGS 512
#define BATCH_MAX_BYTES (64u << 20)

void ingest_note_status(struct ingest_run *run, enum fetch_status st)
{
	static const int rank[] = {
		[FETCH_OK] = 0, [FETCH_MSG_BAD] = 1, [FETCH_FOLDER_BAD] = 2,
		[FETCH_ACCOUNT_BAD] = 3, [FETCH_LOCAL_BAD] = 4, [FETCH_STOPPED] = 5,
	};
	if (rank[st] > rank[run->r->status])
		run->r->status = st;
}

void ingest_note_error(struct ingest_run *run, const char *msg)
{
	if (!run->r->error[0])
		snprintf(run->r->error, sizeof(run->r->error), "%s", msg);
}

void ingest_local_error(struct ingest_run *run, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s", msg);
	if (!run->local_error[0])
		snprintf(run->local_error, sizeof(run->local_error), "%s", msg);
}

bool ingest_stopping(const struct ingest_run *run)
{
	return run->o->stop && atomic_load(run->o->stop);
}

int ingest_folder_path(const struct account_settings *a, const char *folder, char delim,
		       struct buf *out)
{
	int rc = buf_appends(out, "mail/");

	if (rc == 0)
		rc = names_escape(a->user, strlen(a->user), out);
	if (rc == 0)
		rc = buf_appendc(out, '/');
	if (rc == 0)
		rc = names_escape(a->name, strlen(a->name), out);
	if (rc == 0)
		rc = buf_appendc(out, '/');
	if (rc == 0)
		rc = names_folder_path(folder, delim, out);
	return rc;
}

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* On a terminal: the folder's line (fetch/progress.h), redrawn at most
 * twice a second, ended with a newline by the last call. */
static void progress(struct ingest *in, bool last)
{
	const struct ingest_run *run = in->run;
	struct buf line = BUF_INIT(1024);
	double t = now_mono();

	if (!run->o->progress || (!last && t - in->shown < 0.5))
		return;
	in->shown = t;
	if (progress_format(&line, run->label, in->f->name, in->done, in->total,
			    run->r->bytes - in->bytes0, t - in->started) == 0)
		fprintf(stderr, "\r%s\033[K%s", line.data, last ? "\n" : "");
	buf_release(&line);
}

enum fetch_status ingest_open(struct ingest *in, struct ingest_run *run,
			      const struct index_folder *f, uint32_t uidvalidity, size_t total)
{
	int rc;

	memset(in, 0, sizeof(*in));
	in->run = run;
	in->f = f;
	in->uidvalidity = uidvalidity;
	in->total = total;
	in->started = now_mono();
	in->bytes0 = run->r->bytes;
	msgmeta_header_init(&in->hdr, INGEST_HEADER_KEEP);
	rc = store_batch_create(run->st, f, &in->batch);
	if (rc < 0) {
		ingest_local_error(run, "%s %s: cannot prepare the folder in the store: %s",
				   run->label, f->name, strerror(-rc));
		msgmeta_header_release(&in->hdr);
		return FETCH_LOCAL_BAD;
	}
	/* A user whose mount shows no parts pays nothing for them here. */
	const struct user_settings *u = run->cfg ? settings_user(run->cfg, run->a->user) : NULL;
	store_batch_set_parts(in->batch, !u || u->parts);
	return FETCH_OK;
}

/* The free-space floor: [store] min_free, else the smaller of 1 GiB and
 * 5% of the filesystem, so a small disk is not held back by a large floor. */
static uint64_t free_floor(const struct settings *cfg, uint64_t total)
{
	if (cfg && cfg->min_free_set)
		return cfg->min_free_bytes ? cfg->min_free_bytes
					   : (uint64_t)(cfg->min_free_fraction * (double)total);
	return total / 20 < (1ull << 30) ? total / 20 : 1ull << 30;
}

/* How much may be written before the filesystem reaches its floor; < 0
 * when it is below already (failed_local set, the reason said). Checked
 * per message: a message is small next to the floor. */
static int measure_room(struct ingest *in)
{
	struct ingest_run *run = in->run;
	uint64_t avail, total, floor;
	int rc = store_free_space(run->st, &avail, &total);

	if (rc < 0) {
		ingest_local_error(run, "%s %s: cannot read the free space of %s: %s", run->label,
				   in->f->name, store_root(run->st), strerror(-rc));
		in->failed_local = true;
		return -1;
	}
	floor = free_floor(run->cfg, total);
	if (avail <= floor) {
		ingest_local_error(run, "%s %s: the store's filesystem (%s) has %" PRIu64 " MiB free, "
				   "at or below min_free (%" PRIu64 " MiB): syncing is paused until "
				   "space is freed; nothing was lost", run->label, in->f->name,
				   store_root(run->st), avail >> 20, floor >> 20);
		in->failed_local = true;
		return -1;
	}
	in->room = (int64_t)(avail - floor);
	return 0;
}

int ingest_msg_begin(struct ingest *in)
{
	int rc;

	ingest_msg_abort(in);
	if (measure_room(in) < 0)
		return -1;
	rc = store_msg_begin(in->batch, &in->cur);
	if (rc < 0) {
		ingest_local_error(in->run, "%s %s: cannot create a message file: %s",
				   in->run->label, in->f->name, strerror(-rc));
		in->cur = NULL;
		in->failed_local = true;
		return -1;
	}
	msgmeta_header_reset(&in->hdr);
	in->msg_bytes = 0;
	return 0;
}

int ingest_msg_write(struct ingest *in, const void *p, size_t n)
{
	struct ingest_run *run = in->run;
	uint64_t max = run->a->max_message_size;
	int rc;

	in->msg_bytes += n;
	if (max && in->msg_bytes > max) {
		/* IMAP refuses such a literal before it starts; POP3 only
		 * learns it here. What was written goes with the message. */
		/* said once, by the engine, with the driver's error */
		if (!in->too_big)
			snprintf(in->too_big_error, sizeof(in->too_big_error), "%s %s: a message from "
				 "%s is larger than max_message_size (%" PRIu64 " bytes); it was not "
				 "stored: raise max_message_size in [sync] if it is real", run->label,
				 in->f->name, run->a->host, max);
		in->too_big = true;
		return -1;
	}
	in->room -= (int64_t)n;
	if (in->room < 0) {
		ingest_local_error(run, "%s %s: the store's filesystem (%s) reached min_free while "
				   "a message was written: syncing is paused until space is freed; "
				   "nothing was lost", run->label, in->f->name, store_root(run->st));
		in->failed_local = true;
		return -1;
	}
	rc = store_msg_write(in->cur, p, n);
	if (rc < 0) {
		ingest_local_error(run, "%s %s: cannot write a message file: %s", run->label,
				   in->f->name, strerror(-rc));
		in->failed_local = true;
		return -1;
	}
	/* A header of several MB is kept only in part; that is no failure. */
	msgmeta_header_feed(&in->hdr, p, n);
	run->r->bytes += n;
	return 0;
}

void ingest_msg_abort(struct ingest *in)
{
	if (in->cur)
		store_msg_abort(in->cur);
	in->cur = NULL;
}

static int commit(struct ingest *in)
{
	struct ingest_run *run = in->run;
	int64_t *ids = NULL;
	size_t n = 0;
	size_t pending = store_batch_count(in->batch);   /* the commit empties the batch */
	int rc;

	if (pending == 0)
		return 0;
	rc = store_batch_commit(in->batch, run->ix, (int64_t)time(NULL), &ids, &n);
	if (rc < 0) {
		ingest_local_error(run, "%s %s: cannot commit %zu messages to the store (the next "
				   "sync fetches them again): %s", run->label, in->f->name, pending,
				   index_strerror(rc));
		in->failed_local = true;
		return rc;
	}
	run->r->n_new += (int64_t)n;
	run->changed = run->changed || n;
	/* The index has committed: only now may the mount show them. */
	if (run->o->obs && run->o->obs->added && n)
		run->o->obs->added(run->o->obs->ctx, in->f->id, ids, n);
	free(ids);
	return 0;
}

int ingest_msg_finish(struct ingest *in, const char *remote_id, int64_t internal_date,
		      const char *flags)
{
	struct ingest_run *run = in->run;
	struct msgmeta mm;
	struct index_msg meta = { 0 };
	struct buf name = BUF_INIT(1024);
	char tag[12];
	int rc;

	if (!in->cur)
		return 0;
	if (internal_date == 0)
		internal_date = (int64_t)time(NULL);
	const struct buf *hdr = &in->hdr.buf;
	size_t hl = hdr->len ? msgmeta_header_len(hdr->data, hdr->len) : 0;
	if (msgmeta_parse(hdr->data ? hdr->data : "", hl ? hl : hdr->len, &mm) < 0)
		goto nomem;
	names_tag(run->a->name, in->f->name, in->uidvalidity, remote_id, tag, 8);
	if (names_message_file(mm.date ? mm.date : internal_date, mm.subject, tag, &name) < 0) {
		log_error("%s %s: message %s: cannot make a file name", run->label, in->f->name,
			  remote_id);
		ingest_msg_abort(in);
		msgmeta_release(&mm);
		buf_release(&name);
		ingest_note_status(run, FETCH_MSG_BAD);
		return 0;
	}
	meta.folder_id = in->f->id;
	meta.remote_id = strdup(remote_id);
	meta.message_id = mm.message_id;
	meta.subject = mm.subject;
	meta.sender = mm.from;
	meta.recipients = mm.to;
	meta.date = mm.date;
	meta.internal_date = internal_date;
	meta.flags = flags ? strdup(flags) : NULL;
	meta.view_name = buf_detach(&name);
	meta.state = MSG_ACTIVE;
	if (!meta.remote_id || !meta.view_name || (flags && !meta.flags)) {
		index_msg_release(&meta);
		goto nomem;
	}
	/* The strings now belong to meta, and then to the batch. */
	rc = store_msg_finish(in->cur, &meta);
	in->cur = NULL;
	index_msg_release(&meta);
	if (rc < 0) {
		ingest_local_error(run, "%s %s: message %s: cannot store it: %s", run->label,
				   in->f->name, remote_id, strerror(-rc));
		in->failed_local = true;
		return -1;
	}
	in->done++;
	if (store_batch_count(in->batch) >= BATCH_MAX_MSGS ||
	    store_batch_bytes(in->batch) >= BATCH_MAX_BYTES)
		if (commit(in) < 0)
			return -1;
	progress(in, false);
	return 0;
nomem:
	ingest_local_error(run, "%s %s: out of memory", run->label, in->f->name);
	ingest_msg_abort(in);
	in->failed_local = true;
	return -1;
}

enum fetch_status ingest_close(struct ingest *in, enum fetch_status st)
{
	if (!in->batch)
		return st;
	ingest_msg_abort(in);
	if (commit(in) < 0 || in->failed_local)
		st = FETCH_LOCAL_BAD;
	progress(in, true);
	store_batch_destroy(&in->batch);
	msgmeta_header_release(&in->hdr);
	return st;
}

int ingest_trash(struct ingest_run *run, const struct index_folder *f, const int64_t *ids,
		 size_t n, const char *reason)
{
	char **names;
	int rc;

	if (n == 0)
		return 0;
	names = calloc(n, sizeof(char *));
	if (!names)
		return -ENOMEM;
	/* The mount needs the names the rows had before they go. */
	for (size_t i = 0; i < n; i++) {
		struct index_msg m;

		if (index_msg_get(run->ix, ids[i], &m) == 0) {
			names[i] = m.view_name;
			m.view_name = NULL;
			index_msg_release(&m);
		}
	}
	rc = store_trash(run->st, run->ix, ids, n, run->sync_id, reason, (int64_t)time(NULL));
	if (rc == 0) {
		run->r->n_trashed += (int64_t)n;
		run->changed = true;
		log_info("%s %s: %zu message(s) moved to trash: %s", run->label, f->name, n, reason);
		if (run->o->obs && run->o->obs->removed)
			run->o->obs->removed(run->o->obs->ctx, f->id, ids, names, n);
	} else {
		ingest_local_error(run, "%s %s: cannot move %zu message(s) to trash: %s",
				   run->label, f->name, n, strerror(-rc));
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

enum fetch_status ingest_trash_remote(struct ingest_run *run, const struct index_folder *f,
				      char *const *remote_ids, size_t n, const char *reason)
{
	int64_t *ids = malloc((n ? n : 1) * sizeof(*ids));
	size_t k = 0;
	int rc;

	if (!ids)
		return FETCH_LOCAL_BAD;
	for (size_t i = 0; i < n; i++)
		if (index_msg_find(run->ix, f->id, remote_ids[i], &ids[k]) == 0)
			k++;
	rc = ingest_trash(run, f, ids, k, reason);
	free(ids);
	return rc < 0 ? FETCH_LOCAL_BAD : FETCH_OK;
}
