/* index_parts: the parts table, a message's part records (see index.h,
 * cache/parts.h, and schema_v3 in index.c for the table).
 *
 * marks: each mark is two unsigned LEB128 varints, the growth of enc_off
 * and of dec_off since the previous mark (the first since 0, 0); 7 bits a
 * byte, low bits first, the high bit set on every byte but the last. Marks
 * every 64 KiB of decoded bytes then take about 6 bytes each, where two
 * int64 would take 16. A blob that does not decode is an -EIO. */
#include "index.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"
#include "index_int.h"
#include "parts.h"

#define VARINT_MAX 10   /* bytes of a 64-bit LEB128 varint */

static size_t varint_put(unsigned char *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	return n;
}

/* 0, or -1 when the bytes end inside a varint or it passes 63 bits. */
static int varint_get(const unsigned char *p, size_t len, size_t *pos, uint64_t *v_r)
{
	uint64_t v = 0;

	for (unsigned shift = 0; *pos < len && shift < 63; shift += 7) {
		unsigned char c = p[(*pos)++];

		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v_r = v;
			return v <= INT64_MAX ? 0 : -1;
		}
	}
	return -1;
}

/* The blob of p's marks (malloc'd, *len_r bytes), NULL with *len_r 0 when it
 * has none. -EINVAL for marks that go backwards. */
static int marks_encode(const struct part_rec *p, unsigned char **blob_r, size_t *len_r)
{
	struct part_mark prev = { 0, 0 };
	unsigned char *b;
	size_t len = 0;

	*blob_r = NULL;
	*len_r = 0;
	if (!p->marks || p->n_marks == 0)
		return 0;
	if (p->n_marks > SIZE_MAX / (2 * VARINT_MAX) || !(b = malloc(p->n_marks * 2 * VARINT_MAX)))
		return -ENOMEM;
	for (size_t i = 0; i < p->n_marks; i++) {
		const struct part_mark *m = &p->marks[i];

		if (m->enc_off < prev.enc_off || m->dec_off < prev.dec_off) {
			free(b);
			return -EINVAL;
		}
		len += varint_put(b + len, (uint64_t)(m->enc_off - prev.enc_off));
		len += varint_put(b + len, (uint64_t)(m->dec_off - prev.dec_off));
		prev = *m;
	}
	*blob_r = b;
	*len_r = len;
	return 0;
}

static int marks_decode(const unsigned char *b, size_t len, struct part_rec *p)
{
	struct part_mark cur = { 0, 0 };
	size_t pos = 0, n = 0;

	if (len == 0)
		return 0;
	/* Each mark takes at least two bytes. */
	p->marks = malloc(len / 2 * sizeof *p->marks);
	if (!p->marks)
		return -ENOMEM;
	while (pos < len) {
		uint64_t de, dd;

		if (varint_get(b, len, &pos, &de) || varint_get(b, len, &pos, &dd) ||
		    de > (uint64_t)(INT64_MAX - cur.enc_off) ||
		    dd > (uint64_t)(INT64_MAX - cur.dec_off))
			return -EIO;
		cur.enc_off += (int64_t)de;
		cur.dec_off += (int64_t)dd;
		p->marks[n++] = cur;
	}
	p->n_marks = n;
	return 0;
}

static int part_from_row(sqlite3_stmt *st, void *out)
{
	struct part_rec *p = out;
	bool oom = false;
	int rc;

	memset(p, 0, sizeof *p);
	p->n = sqlite3_column_int(st, 0);
	p->parent = sqlite3_column_int(st, 1);
	p->kind = sqlite3_column_int(st, 2) == PART_DIR ? PART_DIR : PART_FILE;
	p->name = ix_col_dup(st, 3, &oom);
	p->content_type = ix_col_dup(st, 4, &oom);
	p->enc = (enum part_enc)sqlite3_column_int(st, 5);
	p->charset = ix_col_dup(st, 6, &oom);
	p->off = sqlite3_column_int64(st, 7);
	p->len = sqlite3_column_int64(st, 8);
	p->size = sqlite3_column_int64(st, 9);
	rc = oom || !p->name ? -ENOMEM : 0;
	if (rc == 0)
		rc = marks_decode(sqlite3_column_blob(st, 10), (size_t)sqlite3_column_bytes(st, 10), p);
	if (rc == 0 && (p->enc < PART_ENC_IDENTITY || p->enc > PART_ENC_UU))
		rc = -EIO;
	if (rc)
		part_rec_release(p);
	return rc;
}

static int int_from_row(sqlite3_stmt *st, void *out)
{
	*(int *)out = sqlite3_column_int(st, 0);
	return 0;
}

static int part_insert(struct index *ix, int64_t msg_id, const struct part_rec *p)
{
	unsigned char *blob;
	size_t blen;
	sqlite3_stmt *st;
	int rc = marks_encode(p, &blob, &blen);

	if (rc == -EINVAL)
		log_error("%s: message %lld part %d: its resume marks go backwards", ix->path,
			  (long long)msg_id, p->n);
	if (rc == 0 && !p->name)
		rc = -EINVAL;
	if (rc == 0)
		rc = ix_stmt(ix, ST_PARTS_INSERT, &st);
	if (rc == 0)
		rc = ix_run(ix, st,
			    bind_i64(st, 1, msg_id) || bind_i64(st, 2, p->n) ||
			    bind_i64(st, 3, p->parent) || bind_i64(st, 4, p->kind) ||
			    bind_text(st, 5, p->name) || bind_text(st, 6, p->content_type) ||
			    bind_i64(st, 7, p->enc) || bind_text(st, 8, p->charset) ||
			    bind_i64(st, 9, p->off) || bind_i64(st, 10, p->len) ||
			    bind_i64(st, 11, p->size) ||
			    (blob ? sqlite3_bind_blob(st, 12, blob, (int)blen, SQLITE_STATIC)
				  : sqlite3_bind_null(st, 12)),
			    NULL);
	free(blob);
	return rc;
}

static int parts_write(struct index *ix, int64_t msg_id, const struct parts_list *l, bool fresh);

int index_parts_put(struct index *ix, int64_t msg_id, const struct parts_list *l)
{
	return parts_write(ix, msg_id, l, false);
}

int index_parts_put_new(struct index *ix, int64_t msg_id, const struct parts_list *l)
{
	return parts_write(ix, msg_id, l, true);
}

/* fresh: the row was inserted in this transaction, so it has no records to
 * replace (a DELETE each message of a batch was 5% of a first sync). */
static int parts_write(struct index *ix, int64_t msg_id, const struct parts_list *l, bool fresh)
{
	sqlite3_stmt *st;
	int rc;

	if (l->n > INT_MAX)
		return -EINVAL;
	rc = index_begin(ix);
	if (rc)
		return rc;
	rc = ix_stmt(ix, ST_PARTS_SET_N, &st);
	if (rc == 0)
		rc = ix_update_one(ix, st, bind_i64(st, 1, msg_id) || bind_i64(st, 2, (int64_t)l->n));
	if (rc == -ENOENT) {
		/* Nothing written: the caller's transaction stays usable. */
		rc = index_commit(ix);
		return rc ? rc : -ENOENT;
	}
	if (rc == 0 && !fresh)
		rc = ix_stmt(ix, ST_PARTS_DELETE, &st);
	if (rc == 0 && !fresh)
		rc = ix_run(ix, st, bind_i64(st, 1, msg_id), NULL);
	for (size_t i = 0; rc == 0 && i < l->n; i++)
		rc = part_insert(ix, msg_id, &l->v[i]);
	return index_end(ix, rc);
}

int index_parts_get(struct index *ix, int64_t msg_id, struct parts_list *out)
{
	sqlite3_stmt *st;
	int n_parts = 0, end, rc;

	memset(out, 0, sizeof *out);
	if (ix->version < 3)
		return -ENOENT;     /* an old index: nothing analysed yet */
	/* The count and the rows from one snapshot. */
	rc = index_begin(ix);
	if (rc)
		return rc;
	rc = ix_stmt(ix, ST_PARTS_N, &st);
	if (rc == 0)
		rc = ix_one_row(ix, st, bind_i64(st, 1, msg_id), int_from_row, &n_parts);
	if (rc == 0)
		rc = ix_stmt(ix, ST_PARTS_GET, &st);
	if (rc == 0)
		rc = ix_all_rows(ix, st, bind_i64(st, 1, msg_id), part_from_row, &out->v,
				 sizeof *out->v, &out->n);
	if (rc == 0 && out->n != (size_t)n_parts)
		rc = -EIO;
	if (rc == -EIO)
		log_error("%s: message %lld: its part records are damaged (%zu of %d read);"
			  " its parts are not shown", ix->path, (long long)msg_id, out->n, n_parts);
	/* Only read: commit even after a failure, which leaves a caller's
	 * transaction usable (a rollback would doom it). */
	end = index_commit(ix);
	if (rc == 0)
		rc = end;
	if (rc)
		parts_list_release(out);
	return rc;
}

static int pending(struct index *ix, sqlite3_stmt *st, int bind_rc, int64_t *ids, size_t max,
		   size_t *n_r)
{
	int rc = bind_rc;

	while (rc == SQLITE_OK && *n_r < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		ids[(*n_r)++] = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	}
	rc = rc == SQLITE_OK || rc == SQLITE_DONE ? 0 : ix_fail(ix, st, rc);
	ix_reset(st);
	return rc;
}

int index_parts_pending(struct index *ix, int64_t after, int64_t *ids, size_t max, size_t *n_r)
{
	sqlite3_stmt *st;
	int rc;

	*n_r = 0;
	if (ix->version < 3 || max == 0)
		return 0;
	rc = ix_stmt(ix, ST_PARTS_PENDING, &st);
	return rc ? rc : pending(ix, st, bind_i64(st, 1, after) ||
				 bind_i64(st, 2, (int64_t)(max > INT64_MAX ? INT64_MAX : max)),
				 ids, max, n_r);
}

int index_parts_pending_in(struct index *ix, int64_t folder_id, int64_t after, int64_t *ids,
			   size_t max, size_t *n_r)
{
	sqlite3_stmt *st;
	int rc;

	*n_r = 0;
	if (ix->version < 3 || max == 0)
		return 0;
	rc = ix_stmt(ix, ST_PARTS_PENDING_IN, &st);
	return rc ? rc : pending(ix, st, bind_i64(st, 1, folder_id) || bind_i64(st, 2, after) ||
				 bind_i64(st, 3, (int64_t)(max > INT64_MAX ? INT64_MAX : max)),
				 ids, max, n_r);
}
