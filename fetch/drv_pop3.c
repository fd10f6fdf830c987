/* drv_pop3: the POP3 driver of the sync engine (driver.h) over a pop3.c
 * session (RFC 1939 with UIDL, RFC 2449).
 *
 * A POP3 mailbox is one folder, INBOX; remote ids are UIDLs, and their
 * epoch (UIDVALIDITY) is the constant 1. A listing is complete when the
 * same session's STAT agrees with it, every message number is one STAT
 * counts, and no UIDL repeats (which message would it be?). Messages are
 * retrieved by their number in this session, in the server's order,
 * pipelined when the server allows it (pop3_fetch). */
#include "driver.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/log.h"
#include "ingest.h"
#include "pop3.h"

#define POP3_FOLDER "INBOX"
#define POP3_UIDVALIDITY 1u

struct drv_pop3_conn {
	struct pop3 *s;                 /* owned */
	char label[160];
	uint32_t count;                 /* what STAT said at login */
	struct pop3_listing l;          /* owned: the UIDL listing, for message numbers */
	char error[1024];               /* a failure of this driver's own, "" if none */
};

static const char *pop3_drv_error(void *conn)
{
	struct drv_pop3_conn *c = conn;

	return c->error[0] ? c->error : pop3_error(c->s);
}

static enum fetch_status pop3_drv_open(struct ingest_run *run, const char *secret, bool token,
				       void **conn_r, struct buf *err)
{
	struct drv_pop3_conn *c = calloc(1, sizeof(*c));
	enum fetch_status st;

	*conn_r = NULL;
	if (!c) {
		buf_printf(err, "%s: out of memory", run->label);
		return FETCH_LOCAL_BAD;
	}
	snprintf(c->label, sizeof(c->label), "%s", run->label);
	st = pop3_open(run->a, secret, token, run->o->cancel_fd, &c->s, &c->count, &run->r->retry,
		       err);
	if (st != FETCH_OK) {
		free(c);
		return st;
	}
	*conn_r = c;
	return FETCH_OK;
}

static void pop3_drv_close(void **conn)
{
	struct drv_pop3_conn *c = *conn;

	if (!c)
		return;
	pop3_close(&c->s);
	pop3_listing_release(&c->l);
	free(c);
	*conn = NULL;
}

static enum fetch_status pop3_drv_list_folders(void *conn, struct drv_folder **r, size_t *n_r)
{
	struct drv_folder *v = calloc(1, sizeof(*v));

	(void)conn;
	*r = NULL;
	*n_r = 0;
	if (!v || !(v->name = strdup(POP3_FOLDER)) || !(v->raw = strdup(POP3_FOLDER))) {
		drv_folders_free(v, v ? 1 : 0);
		return FETCH_LOCAL_BAD;
	}
	v->selectable = true;
	*r = v;
	*n_r = 1;
	return FETCH_OK;
}

static enum fetch_status pop3_drv_select(void *conn, const struct drv_folder *f,
					 const struct index_folder *known, struct drv_state *st_r)
{
	struct drv_pop3_conn *c = conn;

	(void)f, (void)known;
	*st_r = (struct drv_state){ .uidvalidity = POP3_UIDVALIDITY, .exists = c->count };
	return FETCH_OK;
}

static enum fetch_status pop3_drv_list_ids(void *conn, const struct index_folder *known,
					   char *const *known_ids, size_t n_known,
					   struct drv_listing *r)
{
	struct drv_pop3_conn *c = conn;
	struct pop3_listing *l = &c->l;
	enum fetch_status st;

	(void)known, (void)known_ids, (void)n_known;
	memset(r, 0, sizeof(*r));
	pop3_listing_release(l);
	st = pop3_uidl(c->s, l);
	if (st != FETCH_OK)
		return st;
	r->complete = l->n_dup == 0 && l->n == c->count;
	for (size_t i = 0; r->complete && i < l->n; i++)
		r->complete = l->v[i].msgnum <= c->count;
	if (l->n_dup)
		snprintf(r->incomplete, sizeof(r->incomplete), "the POP3 server lists %zu UIDL(s) "
			 "more than once; only the first message of each is kept", l->n_dup);
	else if (!r->complete)
		snprintf(r->incomplete, sizeof(r->incomplete), "the POP3 server listed %zu UIDLs "
			 "but STAT says %" PRIu32 " messages", l->n, c->count);
	r->ids = calloc(l->n ? l->n : 1, sizeof(*r->ids));
	if (!r->ids)
		return FETCH_LOCAL_BAD;
	for (r->n = 0; r->n < l->n; r->n++)
		if (!(r->ids[r->n] = strdup(l->v[r->n].uidl))) {
			drv_listing_release(r);
			return FETCH_LOCAL_BAD;
		}
	return FETCH_OK;
}

struct fetch_ctx {
	struct ingest *in;                      /* borrowed */
	const struct pop3_entry *const *v;      /* borrowed */
};

static int sink_begin(void *ctx, size_t i)
{
	struct fetch_ctx *f = ctx;

	(void)i;
	if (ingest_stopping(f->in->run))
		return -1;
	return ingest_msg_begin(f->in);
}

/* RETR's bytes, straight into the message's tmp/ file. */
static int sink_write(void *ctx, const void *p, size_t n)
{
	struct fetch_ctx *f = ctx;

	return ingest_msg_write(f->in, p, n);
}

static int sink_end(void *ctx, size_t i)
{
	struct fetch_ctx *f = ctx;

	/* POP3 has no INTERNALDATE: the time of download stands in. */
	return ingest_msg_finish(f->in, f->v[i]->uidl, 0, NULL);
}

/* A message that did not arrive whole is never kept. */
static void sink_abort(void *ctx)
{
	struct fetch_ctx *f = ctx;

	ingest_msg_abort(f->in);
}

static const struct pop3_sink sink = {
	.begin = sink_begin,
	.write = sink_write,
	.end = sink_end,
	.abort = sink_abort,
};

static int cmp_uidl(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, ((const struct pop3_entry *)b)->uidl);
}

/* The listing's entry of a UIDL; the listing is searched in order (it is
 * in the server's order, which the engine keeps). */
static const struct pop3_entry *entry_of(const struct pop3_listing *l, size_t *from, const char *uidl)
{
	for (size_t i = *from; i < l->n; i++)
		if (cmp_uidl(&uidl, &l->v[i]) == 0) {
			*from = i + 1;
			return &l->v[i];
		}
	return NULL;
}

static enum fetch_status pop3_drv_fetch(void *conn, char *const *ids, size_t n, struct ingest *in)
{
	struct drv_pop3_conn *c = conn;
	const struct pop3_entry **v = calloc(n ? n : 1, sizeof(*v));
	struct fetch_ctx f = { in, v };
	uint64_t max = in->run->a->max_message_size;
	enum fetch_status st;
	size_t k = 0, from = 0;
	const struct pop3_entry *big = NULL;

	if (!v)
		return FETCH_LOCAL_BAD;
	for (size_t i = 0; i < n; i++) {
		const struct pop3_entry *e = entry_of(&c->l, &from, ids[i]);

		if (!e)
			continue;
		/* LIST said it is too large: refused before it is asked for,
		 * after the messages before it (as if it had been cut). */
		if (max && e->size != POP3_SIZE_UNKNOWN && e->size > max) {
			big = e;
			break;
		}
		v[k++] = e;
	}
	st = pop3_fetch(c->s, v, k, &sink, &f);
	free(v);
	if (st == FETCH_OK && big) {
		snprintf(in->too_big_error, sizeof(in->too_big_error), "%s %s: a message from %s is "
			 "larger than max_message_size (%" PRIu64 " bytes): LIST announces %" PRIu64
			 " bytes; it was not stored: raise max_message_size in [sync] if it is real",
			 in->run->label, in->f->name, in->run->a->host, max, big->size);
		in->too_big = true;
	}
	if (in->too_big) {
		/* the transfer was cut, or never asked for: the engine says why */
		snprintf(c->error, sizeof(c->error), "%s", in->too_big_error);
		return FETCH_ACCOUNT_BAD;
	}
	return st;
}

const struct fetch_driver drv_pop3 = {
	.name = "POP3",
	.gone_reason = "deleted on the POP3 server",
	.has_folders = false,
	.open = pop3_drv_open,
	.close = pop3_drv_close,
	.error = pop3_drv_error,
	.list_folders = pop3_drv_list_folders,
	.select = pop3_drv_select,
	.list_ids = pop3_drv_list_ids,
	.fetch = pop3_drv_fetch,
	.rematch_evidence = NULL,
};
