/* parts_read: a part's decoded bytes by offset, for the mount.
 *
 * Plain parts are pread. Encoded or converted parts are decoded by a
 * cursor: the decoder state, where it stands, and what it decoded but has
 * not handed out yet. A read starts from the cursor of its part when one
 * stands at or before its offset (and after the last mark before it), else
 * from that mark, else from the part's start. Every cursor's buffers are
 * fixed in size, so memory does not depend on the part's size. */
#include "parts_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IN_BLOCK (8 * PARTS_SLICE)  /* encoded bytes read at once */
/* One slice's output: 4096 input bytes give at most 4096 transfer-decoded
 * bytes, and a charset filter at most 4 UTF-8 bytes for each of those and
 * of what it kept back; more means the filter misbehaves. */
#define OUT_MAX (6 * PARTS_SLICE)

struct cursor {
	uint64_t key;
	int64_t part_off, part_len;   /* which record the cursor decodes */
	struct parts_dec dec;
	int64_t enc_pos;              /* encoded bytes fed, from the part's start */
	int64_t dec_pos;              /* decoded offset of out[out_lo] */
	bool done;                    /* the decoder was completed */
	char in[IN_BLOCK];
	size_t in_lo, in_hi;          /* read but not fed */
	char out[OUT_MAX];
	size_t out_lo, out_hi;        /* decoded but not handed out */
	uint64_t used;                /* LRU clock */
};

struct parts_cursors {
	pthread_mutex_t lock;
	struct cursor *v[PARTS_CURSORS];  /* protected by lock; owned, NULL when free */
	uint64_t clock;                   /* protected by lock */
};

int parts_cursors_create(struct parts_cursors **r)
{
	struct parts_cursors *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	parts_gmime_init();
	*r = c;
	return 0;
}

static void cursor_free(struct cursor *k)
{
	if (!k)
		return;
	parts_dec_release(&k->dec);
	free(k);
}

void parts_cursors_destroy(struct parts_cursors **cp)
{
	struct parts_cursors *c = *cp;

	if (!c)
		return;
	for (int i = 0; i < PARTS_CURSORS; i++)
		cursor_free(c->v[i]);
	pthread_mutex_destroy(&c->lock);
	free(c);
	*cp = NULL;
}

/* The last mark at or before off, or the start. */
static struct part_mark start_for(const struct part_rec *p, int64_t off)
{
	struct part_mark m = { 0, 0 };
	size_t lo = 0, hi = p->n_marks;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (p->marks[mid].dec_off <= off) {
			m = p->marks[mid];
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return m;
}

/* Takes out the cursor of this part that stands at or before off and not
 * before from (a mark), so no other thread uses it meanwhile. */
static struct cursor *take(struct parts_cursors *c, uint64_t key, const struct part_rec *p,
			   int64_t off, int64_t from)
{
	struct cursor *best = NULL;
	int at = -1;

	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < PARTS_CURSORS; i++) {
		struct cursor *k = c->v[i];

		if (!k || k->key != key || k->part_off != p->off || k->part_len != p->len ||
		    k->dec_pos > off || k->dec_pos < from)
			continue;
		if (!best || k->dec_pos > best->dec_pos) {
			best = k;
			at = i;
		}
	}
	if (best)
		c->v[at] = NULL;
	pthread_mutex_unlock(&c->lock);
	return best;
}

/* Puts a cursor back, in a free slot or in place of the least recently
 * used one. */
static void give_back(struct parts_cursors *c, struct cursor *k)
{
	struct cursor *old = NULL;
	int at = 0;

	pthread_mutex_lock(&c->lock);
	k->used = ++c->clock;
	for (int i = 0; i < PARTS_CURSORS; i++) {
		if (!c->v[i]) {
			at = i;
			break;
		}
		if (c->v[i]->used < c->v[at]->used)
			at = i;
	}
	old = c->v[at];
	c->v[at] = k;
	pthread_mutex_unlock(&c->lock);
	cursor_free(old);
}

static struct cursor *cursor_new(uint64_t key, const struct part_rec *p, struct part_mark m,
				 int *err)
{
	struct cursor *k = malloc(sizeof(*k));

	if (!k) {
		*err = -ENOMEM;
		return NULL;
	}
	k->key = key;
	k->part_off = p->off;
	k->part_len = p->len;
	k->enc_pos = m.enc_off;
	k->dec_pos = m.dec_off;
	k->done = false;
	k->in_lo = k->in_hi = 0;
	k->out_lo = k->out_hi = 0;
	if ((*err = parts_dec_init(&k->dec, p->enc, p->charset)) < 0) {
		free(k);
		return NULL;
	}
	return k;
}

/* Decodes the next slice into k->out (empty before). 0, or -EIO when the
 * file is shorter than the record or a slice decodes to too much. */
static int refill(struct cursor *k, int fd, const struct part_rec *p)
{
	const char *o;
	size_t on;

	if (k->enc_pos >= p->len) {
		parts_dec_step(&k->dec, NULL, 0, true, &o, &on);
		k->done = true;
	} else {
		if (k->in_lo == k->in_hi) {
			int64_t left = p->len - k->enc_pos;
			size_t want = left < IN_BLOCK ? (size_t)left : IN_BLOCK;
			ssize_t got = pread(fd, k->in, want, p->off + k->enc_pos);

			if (got < 0)
				return -errno;
			if ((size_t)got != want)
				return -EIO;
			k->in_lo = 0;
			k->in_hi = want;
		}
		size_t n = k->in_hi - k->in_lo < PARTS_SLICE ? k->in_hi - k->in_lo : PARTS_SLICE;

		parts_dec_step(&k->dec, k->in + k->in_lo, n, false, &o, &on);
		k->in_lo += n;
		k->enc_pos += n;
	}
	if (on > OUT_MAX)
		return -EIO;
	memcpy(k->out, o, on);
	k->out_lo = 0;
	k->out_hi = on;
	return 0;
}

/* Skips to off, then copies up to size bytes. */
static ssize_t decode(struct cursor *k, int fd, const struct part_rec *p, char *out,
		      size_t size, int64_t off)
{
	size_t got = 0;

	while (got < size) {
		if (k->out_lo == k->out_hi) {
			if (k->done)
				break;
			int rc = refill(k, fd, p);

			if (rc < 0)
				return rc;
			continue;
		}
		size_t have = k->out_hi - k->out_lo;

		if (k->dec_pos < off) {
			size_t skip = off - k->dec_pos < (int64_t)have ? (size_t)(off - k->dec_pos) : have;

			k->out_lo += skip;
			k->dec_pos += skip;
			continue;
		}
		size_t n = have < size - got ? have : size - got;

		memcpy(out + got, k->out + k->out_lo, n);
		k->out_lo += n;
		k->dec_pos += n;
		got += n;
	}
	if (k->dec_pos > p->size || (got < size && k->dec_pos != p->size))
		return -EIO;
	return (ssize_t)got;
}

ssize_t parts_read(struct parts_cursors *c, uint64_t key, int fd, const struct part_rec *p,
		   char *out, size_t size, int64_t off)
{
	if (p->kind != PART_FILE || off < 0)
		return -EINVAL;
	if (off >= p->size || size == 0)
		return 0;
	if ((int64_t)size > p->size - off)
		size = p->size - off;
	if (part_is_plain(p)) {
		ssize_t got = pread(fd, out, size, p->off + off);

		if (got < 0)
			return -errno;
		return (size_t)got == size ? got : -EIO;
	}

	struct part_mark m = start_for(p, off);
	struct cursor *k = take(c, key, p, off, m.dec_off);
	int err = 0;

	if (!k && !(k = cursor_new(key, p, m, &err)))
		return err;
	ssize_t r = decode(k, fd, p, out, size, off);

	if (r < 0) {
		cursor_free(k);
		return r;
	}
	give_back(c, k);
	return r;
}
