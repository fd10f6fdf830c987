/* ingest: messages into the store and out to the trash, for every protocol.
 * The order that keeps a crash harmless is the store's (store.h); the order
 * here is the mount's: nothing is announced before its commit. */
#include "ingest.h"

#include <errno.h>
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

bool ingest_stopping(const struct ingest_run *run)
{
	return run->o->stop && *run->o->stop;
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
	buf_init(&in->hdr, INGEST_HEADER_KEEP + 1);
	rc = store_batch_create(run->st, f, &in->batch);
	if (rc < 0) {
		log_error("%s %s: cannot prepare the folder in the store: %s", run->label,
			  f->name, strerror(-rc));
		buf_release(&in->hdr);
		return FETCH_LOCAL_BAD;
	}
	return FETCH_OK;
}

int ingest_msg_begin(struct ingest *in)
{
	int rc;

	ingest_msg_abort(in);
	rc = store_msg_begin(in->batch, &in->cur);
	if (rc < 0) {
		log_error("%s %s: cannot create a message file: %s", in->run->label, in->f->name,
			  strerror(-rc));
		in->cur = NULL;
		in->failed_local = true;
		return -1;
	}
	buf_reset(&in->hdr);
	in->hdr_done = false;
	return 0;
}

int ingest_msg_write(struct ingest *in, const void *p, size_t n)
{
	int rc = store_msg_write(in->cur, p, n);

	if (rc < 0) {
		log_error("%s %s: cannot write a message file: %s", in->run->label, in->f->name,
			  strerror(-rc));
		in->failed_local = true;
		return -1;
	}
	if (!in->hdr_done) {
		size_t room = INGEST_HEADER_KEEP - in->hdr.len;
		/* the blank line may straddle two writes */
		size_t from = in->hdr.len > 3 ? in->hdr.len - 3 : 0;

		buf_append(&in->hdr, p, n < room ? n : room);
		if (msgmeta_header_len(in->hdr.data + from, in->hdr.len - from) ||
		    in->hdr.len >= INGEST_HEADER_KEEP)
			in->hdr_done = true;
	}
	in->run->r->bytes += n;
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
	int rc;

	if (store_batch_count(in->batch) == 0)
		return 0;
	rc = store_batch_commit(in->batch, run->ix, (int64_t)time(NULL), &ids, &n);
	if (rc < 0) {
		log_error("%s %s: cannot commit %zu messages to the store: %s", run->label,
			  in->f->name, store_batch_count(in->batch), strerror(-rc));
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
	size_t hl = in->hdr.len ? msgmeta_header_len(in->hdr.data, in->hdr.len) : 0;
	if (msgmeta_parse(in->hdr.data ? in->hdr.data : "", hl ? hl : in->hdr.len, &mm) < 0)
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
		log_error("%s %s: message %s: cannot store it: %s", run->label, in->f->name,
			  remote_id, strerror(-rc));
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
	log_error("%s %s: out of memory", run->label, in->f->name);
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
	buf_release(&in->hdr);
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
		log_error("%s %s: cannot move %zu message(s) to trash: %s", run->label, f->name,
			  n, strerror(-rc));
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
