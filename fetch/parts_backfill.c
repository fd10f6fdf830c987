/* parts_backfill: see parts_backfill.h.
 *
 * The messages of a batch are analysed first, outside any transaction, and
 * their records then written in one: the index's write lock, which every
 * sync worker shares, is held only for the writes. A message that cannot
 * be read (its file gone, -EIO, -ENOMEM) is skipped and stays unanalysed:
 * the next run tries it again (and store_recover drops a row whose file is
 * gone). */
#include "parts_backfill.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../cache/log.h"
#include "../cache/parts.h"

struct backfill {
	struct ingest_run *run;
	double deadline;              /* monotonic seconds */
	int64_t ids[BACKFILL_BATCH];  /* analysed, not yet written */
	struct parts_list lists[BACKFILL_BATCH];
	size_t n, records;
	size_t done, missed;
	const struct index_folder *f;
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool out_of_time(const struct backfill *b)
{
	return ingest_stopping(b->run) || now_mono() >= b->deadline;
}

/* The records of message id into *l: 0, or a negative errno. */
static int analyse(struct ingest_run *run, int64_t id, struct parts_list *l)
{
	struct index_msg m;
	struct stat st;
	int fd, rc = index_msg_get(run->ix, id, &m);

	if (rc)
		return rc;
	fd = store_open_file(run->st, m.store_file);
	if (fd < 0)
		rc = fd;
	else if (fstat(fd, &st) < 0)
		rc = -errno;
	else
		rc = parts_analyse(fd, (int64_t)st.st_size, l);
	if (fd >= 0)
		close(fd);
	index_msg_release(&m);
	return rc;
}

/* Writes what is held in one transaction and tells the mount. */
static int flush(struct backfill *b)
{
	struct ingest_run *run = b->run;
	size_t k = 0;
	int rc = b->n ? index_begin(run->ix) : 0;

	for (size_t i = 0; rc == 0 && i < b->n; i++) {
		rc = index_parts_put(run->ix, b->ids[i], &b->lists[i]);
		if (rc == -ENOENT) {
			rc = 0;      /* purged meanwhile: nothing to record */
			continue;
		}
		b->ids[k++] = b->ids[i];
	}
	if (b->n)
		rc = index_end(run->ix, rc);
	if (rc == 0) {
		b->done += k;
		if (k && run->o->obs && run->o->obs->analysed)
			run->o->obs->analysed(run->o->obs->ctx, b->f->id, b->ids, k);
	} else {
		ingest_local_error(run, "%s %s: cannot record the parts of %zu message(s): %s",
				   run->label, b->f->name, b->n, strerror(-rc));
	}
	for (size_t i = 0; i < b->n; i++)
		parts_list_release(&b->lists[i]);
	b->n = 0;
	b->records = 0;
	return rc;
}

/* One folder, until it has nothing left or time is up. */
static int backfill_folder(struct backfill *b, const struct index_folder *f)
{
	int64_t ids[BACKFILL_BATCH], after = 0;
	size_t n = 0;
	int rc;

	b->f = f;
	do {
		rc = index_parts_pending_in(b->run->ix, f->id, after, ids, BACKFILL_BATCH, &n);
		for (size_t i = 0; rc == 0 && i < n && !out_of_time(b); i++) {
			after = ids[i];
			if (analyse(b->run, ids[i], &b->lists[b->n]) < 0) {
				parts_list_release(&b->lists[b->n]);
				b->missed++;
				continue;
			}
			b->records += b->lists[b->n].n;
			b->ids[b->n++] = ids[i];
			if (b->n == BACKFILL_BATCH || b->records >= BACKFILL_RECORDS)
				rc = flush(b);
		}
		if (rc == 0)
			rc = flush(b);
	} while (rc == 0 && n == BACKFILL_BATCH && !out_of_time(b));
	return rc;
}

size_t parts_backfill(struct ingest_run *run, double seconds)
{
	const struct user_settings *u = run->cfg ? settings_user(run->cfg, run->a->user) : NULL;
	struct index_folder *fs = NULL;
	struct backfill *b;
	size_t n = 0, done;
	double t0 = now_mono();
	int rc = 0;

	if ((u && !u->parts) || !(b = calloc(1, sizeof *b)))
		return 0;
	b->run = run;
	b->deadline = t0 + seconds;
	if (index_folder_list(run->ix, run->a->user, run->a->name, &fs, &n) < 0)
		n = 0;
	for (size_t i = 0; i < n && rc == 0 && !out_of_time(b); i++)
		rc = backfill_folder(b, &fs[i]);
	if (b->done || b->missed)
		log_info("%s: recorded the parts of %zu older message(s) in %.1f s%s%s", run->label,
			 b->done, now_mono() - t0, b->missed ? "; some could not be read" : "",
			 out_of_time(b) ? "; the rest at the next sync" : "");
	done = b->done;
	index_folder_array_free(&fs, n);
	free(b);
	return done;
}
