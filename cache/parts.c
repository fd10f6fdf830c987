/* parts: a message's MIME structure (RFC 2045-2049, RFC 2231 and RFC 2047
 * file names, via GMime 3) turned into the records of parts.h.
 *
 * The parser keeps its stream (persist_stream), so each leaf's content is a
 * substream whose bounds are the offsets of its encoded bytes in the file.
 * Decoded sizes come from running GMime's own decoders over those bytes
 * (parts_dec.c). Memory stays bounded whatever the message's size: a large
 * file is given to GMime as a GMimeStreamFs (read, not mapped) and our own
 * passes over its map give back the pages behind them (drop_to).
 * The walk uses an explicit stack: GMime's tree may be deep (bounded only by
 * PARTS_SCAN_LINES), our own stack must not be. */
#include "parts_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buf.h"
#include "hdrfilter.h"

/* Enclosing multipart boundaries, innermost first, to find where GMime
 * ended a nested message. */
struct bchain {
	const char *boundary;      /* borrowed from the GMime tree */
	const struct bchain *up;
};

struct frame {
	GMimeObject *obj;          /* borrowed */
	int dir;                   /* n of the directory record, 0 for the top */
	int level;                 /* nested message level: 0 for the top */
	const struct bchain *bounds;
};

/* Files larger than this are mapped, read by GMime through a GMimeStreamFs,
 * and their pages given back every DROP_EVERY bytes of a pass. */
#define PARTS_MAP_FROM (1 << 20)
#define DROP_EVERY (1 << 20)

/* A forward pass over the map from some offset: what it has given back. */
struct pass {
	int64_t dropped;
};

struct walk {
	const char *map;           /* the file, [0, cut) as GMime saw it */
	bool mapped;               /* a mapping whose pages we give back */
	int64_t cut;
	bool truncated;            /* cut < size: a leaf reaching cut is dropped */
	int64_t head_end;          /* > 0: GMime saw only [0, head_end), a leaf
	                            * ending there really ends at cut */
	struct parts_list *out;
	size_t cap;
	struct parts_names *names;
	int *leaves;               /* per directory (index n), leaves counted */
	GPtrArray *chains;         /* owned bchain nodes */
	GArray *stack;             /* struct frame */
};

void part_rec_release(struct part_rec *p)
{
	free(p->name);
	free(p->content_type);
	free(p->charset);
	free(p->marks);
	memset(p, 0, sizeof(*p));
}

void parts_list_release(struct parts_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		part_rec_release(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

bool part_is_plain(const struct part_rec *p)
{
	return p->kind == PART_FILE && p->enc == PART_ENC_IDENTITY && !p->charset;
}

/* Gives back the pages of the map from where pass ps last did up to off,
 * once DROP_EVERY bytes lie between them or when the pass ends (last):
 * file-backed pages count in RSS for as long as they are mapped. Only
 * whole pages; one another pass still reads is read again from the file. */
static void drop_to(const struct walk *w, struct pass *ps, int64_t off, bool last)
{
	if (!w->mapped || (!last && off - ps->dropped < DROP_EVERY))
		return;
	int64_t page = sysconf(_SC_PAGESIZE), a = ps->dropped / page * page, b = off / page * page;

	if (b > a) {
		madvise((char *)w->map + a, b - a, MADV_DONTNEED);
		ps->dropped = b;
	}
}

/* The offset of the first line beyond the first PARTS_SCAN_LINES lines
 * beginning with "--", or size. */
static int64_t scan_cut(const struct walk *w, int64_t size)
{
	const char *map = w->map, *p = map, *end = map + size;
	struct pass ps = { 0 };
	long lines = 0;

	/* Each such line takes at least 3 bytes ("--\n"): a smaller file
	 * cannot have too many, and most mail is smaller. */
	if (size <= (int64_t)PARTS_SCAN_LINES * 3)
		return size;
	while (p < end) {
		if (end - p >= 2 && p[0] == '-' && p[1] == '-' && ++lines > PARTS_SCAN_LINES)
			break;
		p = memchr(p, '\n', end - p);
		if (!p)
			break;
		p++;
		drop_to(w, &ps, p - map, false);
	}
	drop_to(w, &ps, size, true);
	return p && p < end ? p - map : size;
}

static struct part_rec *new_rec(struct walk *w, int dir, enum part_kind kind)
{
	if (w->out->n >= PARTS_MAX)
		return NULL;
	if (buf_array_grow(&w->out->v, &w->cap, w->out->n, sizeof(struct part_rec), 8) < 0)
		return NULL;
	struct part_rec *r = &w->out->v[w->out->n];

	memset(r, 0, sizeof(*r));
	r->n = (int)w->out->n + 1;
	r->parent = dir;
	r->kind = kind;
	return r;
}

static char *mime_type_of(GMimeObject *o)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	char *s = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
	char *r = strdup(s ? s : "application/octet-stream");

	g_free(s);
	if (r)
		for (char *c = r; *c; c++)
			*c = g_ascii_tolower(*c);
	return r;
}

static int add_mark(struct part_rec *r, size_t *cap, int64_t enc, int64_t dec)
{
	if (buf_array_grow(&r->marks, cap, r->n_marks, sizeof(*r->marks), 16) < 0)
		return -ENOMEM;
	r->marks[r->n_marks].enc_off = enc;
	r->marks[r->n_marks].dec_off = dec;
	r->n_marks++;
	return 0;
}

/* The exact decoded size, and marks where a fresh decoder can start. */
static int measure(struct walk *w, struct part_rec *r)
{
	struct parts_dec d;
	int64_t pos = 0, dec = 0, last_mark = 0;
	struct pass ps = { r->off };
	const char *o;
	size_t on, mcap = 0;
	bool marks = !r->charset && (r->enc == PART_ENC_BASE64 || r->enc == PART_ENC_QP);
	int rc;

	if (part_is_plain(r)) {
		r->size = r->len;
		return 0;
	}
	if ((rc = parts_dec_init(&d, r->enc, r->charset)) < 0)
		return rc;
	while (pos < r->len) {
		size_t n = r->len - pos < PARTS_SLICE ? (size_t)(r->len - pos) : PARTS_SLICE;

		parts_dec_step(&d, w->map + r->off + pos, n, false, &o, &on);
		pos += n;
		dec += on;
		drop_to(w, &ps, r->off + pos, false);
		if (marks && pos < r->len && dec - last_mark >= PARTS_MARK_EVERY &&
		    parts_dec_clean(&d)) {
			if (add_mark(r, &mcap, pos, dec) < 0) {
				parts_dec_release(&d);
				return -ENOMEM;
			}
			last_mark = dec;
		}
	}
	drop_to(w, &ps, r->off + r->len, true);
	parts_dec_step(&d, NULL, 0, true, &o, &on);
	dec += on;
	parts_dec_release(&d);
	r->size = dec;
	return 0;
}

/* The charset to convert a body from, or NULL: none given, UTF-8 or ASCII
 * already, or unknown to iconv (GMime then does not convert either). */
static char *body_charset(GMimeObject *o)
{
	const char *cs = g_mime_object_get_content_type_parameter(o, "charset");

	if (!cs || !*cs)
		return NULL;
	const char *canon = g_mime_charset_canon_name(cs);

	if (canon && (!g_ascii_strcasecmp(canon, "utf-8") || !g_ascii_strcasecmp(canon, "us-ascii")))
		return NULL;
	GMimeFilter *f = g_mime_filter_charset_new(cs, "utf-8");

	if (!f)
		return NULL;
	g_object_unref(f);
	return strdup(cs);
}

static int leaf(struct walk *w, const struct frame *f, int leafno)
{
	GMimePart *part = (GMimePart *)f->obj;
	GMimeDataWrapper *content = g_mime_part_get_content(part);
	GMimeStream *s = content ? g_mime_data_wrapper_get_stream(content) : NULL;

	int64_t end = s && w->head_end > 0 && s->bound_end == w->head_end ? w->cut :
		      s ? s->bound_end : -1;

	if (!s || s->bound_start < 0 || end < s->bound_start)
		return 0;
	if (w->truncated && end >= w->cut)
		return 0;
	struct part_rec *r = new_rec(w, f->dir, PART_FILE);

	if (!r)
		return w->out->n >= PARTS_MAX ? 0 : -ENOMEM;
	r->off = s->bound_start;
	r->len = end - s->bound_start;
	switch (g_mime_data_wrapper_get_encoding(content)) {
	case GMIME_CONTENT_ENCODING_BASE64: r->enc = PART_ENC_BASE64; break;
	case GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE: r->enc = PART_ENC_QP; break;
	case GMIME_CONTENT_ENCODING_UUENCODE: r->enc = PART_ENC_UU; break;
	default: r->enc = PART_ENC_IDENTITY; break;
	}
	r->content_type = mime_type_of(f->obj);
	w->out->n++;
	if (!r->content_type)
		return -ENOMEM;

	const char *fname = g_mime_part_get_filename(part);
	GMimeContentDisposition *disp = g_mime_object_get_content_disposition(f->obj);
	bool attach = disp && g_mime_content_disposition_is_attachment(disp);
	bool html = !strcmp(r->content_type, "text/html");
	char stem[32];

	snprintf(stem, sizeof stem, "part %d", leafno);
	if (!fname && !attach && (html || !strcmp(r->content_type, "text/plain"))) {
		r->charset = body_charset(f->obj);
		r->name = parts_name_file(w->names, f->dir, NULL, false, "body",
					  html ? ".html" : ".txt");
	} else {
		r->name = parts_name_file(w->names, f->dir, fname, false, stem,
					  parts_ext_for(r->content_type));
	}
	if (!r->name)
		return -ENOMEM;
	return measure(w, r);
}

/* The first header of a message or of its top part: where it begins. */
static int64_t first_header(GMimeObject *o)
{
	GMimeHeaderList *hl = o ? g_mime_object_get_header_list(o) : NULL;

	if (!hl || g_mime_header_list_get_count(hl) == 0)
		return -1;
	return g_mime_header_get_offset(g_mime_header_list_get_header_at(hl, 0));
}

/* Whether the line at p (up to end) is "--<b>" or "--<b>--", then only
 * blanks, for one of the nearest enclosing boundaries (the nesting GMime
 * honours is bounded by PARTS_SCAN_LINES; 32 levels are what we look at). */
static bool is_boundary(const char *p, const char *end, const struct bchain *c)
{
	for (int depth = 0; c && depth < 32; c = c->up, depth++) {
		size_t bl = strlen(c->boundary);
		const char *q = p + 2 + bl;

		if (end - p < (ptrdiff_t)(2 + bl) || memcmp(p + 2, c->boundary, bl))
			continue;
		if (end - q >= 2 && q[0] == '-' && q[1] == '-')
			q += 2;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\r'))
			q++;
		if (q == end || *q == '\n')
			return true;
	}
	return false;
}

/* Where GMime ended a nested message that begins at start: before the
 * newline of the first enclosing boundary line, else at the cut. */
static int64_t message_end(const struct walk *w, int64_t start, const struct bchain *c)
{
	const char *p = w->map + start, *end = w->map + w->cut;
	struct pass ps = { start };
	int64_t e = w->cut;

	while (c && p < end) {
		const char *nl = memchr(p, '\n', end - p);
		const char *le = nl ? nl : end;

		if (p > w->map + start && le - p >= 2 && p[0] == '-' && p[1] == '-' &&
		    is_boundary(p, le, c)) {
			e = p - w->map - 1;
			if (e > start && w->map[e - 1] == '\r')
				e--;
			break;
		}
		if (!nl)
			break;
		p = nl + 1;
		drop_to(w, &ps, p - w->map, false);
	}
	drop_to(w, &ps, p - w->map, true);
	return e;
}

static int push(struct walk *w, GMimeObject *o, int dir, int level, const struct bchain *b)
{
	struct frame f = { o, dir, level, b };

	g_array_append_val(w->stack, f);
	return 0;
}

static int nested(struct walk *w, const struct frame *f, int leafno)
{
	GMimeMessage *m = g_mime_message_part_get_message((GMimeMessagePart *)f->obj);
	GMimeObject *top = m ? g_mime_message_get_mime_part(m) : NULL;
	int64_t a = first_header((GMimeObject *)m), b = first_header(top);
	int64_t start = a < 0 ? b : (b < 0 ? a : (a < b ? a : b));
	const char *fname = g_mime_object_get_content_disposition_parameter(f->obj, "filename");
	const char *subject = m ? g_mime_message_get_subject(m) : NULL;
	char stem[32], *eml = NULL, *dname = NULL;
	bool dir = f->level + 1 <= PARTS_DEPTH_MAX;

	if (!fname)
		fname = g_mime_object_get_content_type_parameter(f->obj, "name");

	if (!m || start < 0 || start > w->cut)
		return 0;
	int64_t end = message_end(w, start, f->bounds);
	bool whole = !(w->truncated && end >= w->cut);

	if (!whole && !dir)
		return 0;
	snprintf(stem, sizeof stem, "message %d", leafno);
	if (parts_name_message(w->names, f->dir, fname ? fname : subject, !fname, stem,
			       &eml, &dname) < 0)
		return -ENOMEM;
	if (whole) {
		struct part_rec *r = new_rec(w, f->dir, PART_FILE);

		if (!r)
			goto full;
		w->out->n++;
		r->name = eml;
		eml = NULL;
		r->content_type = strdup("message/rfc822");
		r->off = start;
		r->len = end - start;
		r->size = r->len;
		if (!r->content_type)
			goto nomem;
	}
	if (dir && top) {
		struct part_rec *r = new_rec(w, f->dir, PART_DIR);

		if (!r)
			goto full;
		w->out->n++;
		r->name = dname;
		dname = NULL;
		r->content_type = strdup("message/rfc822");
		if (!r->content_type)
			goto nomem;
		push(w, top, r->n, f->level + 1, f->bounds);
	}
	free(eml);
	free(dname);
	return 0;
full:
	free(eml);
	free(dname);
	return w->out->n >= PARTS_MAX ? 0 : -ENOMEM;
nomem:
	free(eml);
	free(dname);
	return -ENOMEM;
}

static int multipart(struct walk *w, const struct frame *f)
{
	GMimeMultipart *mp = (GMimeMultipart *)f->obj;
	const char *boundary = g_mime_multipart_get_boundary(mp);
	const struct bchain *b = f->bounds;

	if (boundary) {
		struct bchain *c = malloc(sizeof(*c));

		if (!c)
			return -ENOMEM;
		c->boundary = boundary;
		c->up = f->bounds;
		g_ptr_array_add(w->chains, c);
		b = c;
	}
	/* reversed, so that the stack pops them in order */
	for (int i = g_mime_multipart_get_count(mp) - 1; i >= 0; i--)
		push(w, g_mime_multipart_get_part(mp, i), f->dir, f->level, b);
	return 0;
}

static int walk_tree(struct walk *w, GMimeObject *top)
{
	int rc = 0;

	push(w, top, 0, 0, NULL);
	while (rc == 0 && w->stack->len > 0 && w->out->n < PARTS_MAX) {
		struct frame f = g_array_index(w->stack, struct frame, w->stack->len - 1);

		g_array_set_size(w->stack, w->stack->len - 1);
		if (GMIME_IS_MULTIPART(f.obj))
			rc = multipart(w, &f);
		else if (GMIME_IS_MESSAGE_PART(f.obj))
			rc = nested(w, &f, ++w->leaves[f.dir]);
		else if (GMIME_IS_PART(f.obj))
			rc = leaf(w, &f, ++w->leaves[f.dir]);
	}
	return rc;
}

/* Where the first empty line of the message ends, or -1. */
static int64_t blank_line_end(const struct walk *w)
{
	const char *p = w->map, *end = w->map + w->cut;

	while (p < end) {
		const char *nl = memchr(p, '\n', end - p);

		if (!nl)
			break;
		if (nl == p || (nl == p + 1 && *p == '\r'))
			return nl + 1 - w->map;
		p = nl + 1;
	}
	return -1;
}

/* Most mail is a single part: GMime is given only the bytes up to the first
 * empty line, which hold every header it reads. When the top part is then
 * a leaf whose content runs to the end of what GMime saw, a parse of the
 * whole would give the same tree, the content running to the end: a leaf's
 * content is not scanned for anything but boundaries, and it has none.
 * Else (a multipart, a nested message, a leaf cut short) NULL. */
static GMimeObject *parse_head(struct walk *w, GMimeStream *s, GMimeParser **pp)
{
	int64_t he = blank_line_end(w);

	if (he <= 0 || he >= w->cut)
		return NULL;
	GMimeStream *head = g_mime_stream_substream(s, 0, he);
	GMimeParser *parser = g_mime_parser_new_with_stream(head);

	g_object_unref(head);
	g_mime_parser_set_persist_stream(parser, TRUE);
	GMimeObject *top = g_mime_parser_construct_part(parser, NULL);
	GMimeDataWrapper *c = top && GMIME_IS_PART(top) ? g_mime_part_get_content((GMimePart *)top) : NULL;
	GMimeStream *cs = c ? g_mime_data_wrapper_get_stream(c) : NULL;

	if (!cs || cs->bound_end != he) {
		if (top)
			g_object_unref(top);
		g_object_unref(parser);
		return NULL;
	}
	w->head_end = he;
	*pp = parser;
	return top;
}

/* Parses file (the message; map: the same bytes) and walks its tree. */
static int analyse_stream(GMimeStream *file, const char *map, bool mapped, int64_t size,
			  bool fast, struct parts_list *out)
{
	struct walk w = { .map = map, .mapped = mapped, .out = out };
	GMimeStream *s = file;
	int rc = -ENOMEM;

	w.cut = scan_cut(&w, size);
	w.truncated = w.cut < size;
	if (w.truncated)
		s = g_mime_stream_substream(file, 0, w.cut);
	else
		g_object_ref(s);

	/* The top level is parsed as a part, not a message: the same tree and
	 * offsets, without GMimeMessage reading every address header (a
	 * third of the cost, callgrind). */
	GMimeParser *parser = NULL;
	GMimeObject *top = fast ? parse_head(&w, s, &parser) : NULL;

	if (!top) {
		parser = g_mime_parser_new_with_stream(s);
		g_mime_parser_set_persist_stream(parser, TRUE);
		top = g_mime_parser_construct_part(parser, NULL);
	}

	w.names = parts_names_new();
	w.leaves = calloc(PARTS_MAX + 1, sizeof(int));
	w.chains = g_ptr_array_new_with_free_func(free);
	w.stack = g_array_new(FALSE, FALSE, sizeof(struct frame));
	if (w.names && w.leaves)
		rc = top ? walk_tree(&w, top) : 0;
	g_array_free(w.stack, TRUE);
	g_ptr_array_free(w.chains, TRUE);
	free(w.leaves);
	parts_names_free(w.names);
	if (top)
		g_object_unref(top);
	g_object_unref(parser);
	g_object_unref(s);
	return rc;
}

/* A small file: read whole into memory, which GMime parses in place. */
static int analyse_small(int fd, int64_t size, bool fast, struct parts_list *out)
{
	GByteArray *a = g_byte_array_sized_new((guint)size);
	int64_t got = 0;

	g_byte_array_set_size(a, (guint)size);
	while (got < size) {
		ssize_t n = pread(fd, a->data + got, size - got, got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			g_byte_array_free(a, TRUE);
			return -EIO;
		}
		got += n;
	}
	/* Our own copy: the top-level fields we do not read become one
	 * placeholder each run, offsets unchanged. GMime made and freed a
	 * GObject per field (Received, DKIM...), a third of the cost. */
	static const char *const keep[] = { "Content-Type", "Content-Transfer-Encoding",
					    "Content-Disposition", "MIME-Version", NULL };
	hdrfilter_blank((char *)a->data, (size_t)size, keep);
	GMimeStream *file = g_mime_stream_mem_new_with_byte_array(a);
	int rc = analyse_stream(file, (const char *)a->data, false, size, fast, out);

	g_object_unref(file);
	return rc;
}

/* A descriptor of its own for the file in fd (GMimeStreamFs moves its
 * offset): a fresh open of the same file, else a dup. */
static int own_fd(int fd)
{
	char path[64];
	int r;

	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	r = open(path, O_RDONLY | O_CLOEXEC);
	return r >= 0 ? r : dup(fd);
}

/* A large file: GMime reads it (GMimeStreamFs), our passes use a map whose
 * pages they give back as they go. */
static int analyse_large(int fd, int64_t size, bool fast, struct parts_list *out)
{
	void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	int sfd = map == MAP_FAILED ? -1 : own_fd(fd);

	if (sfd < 0) {
		if (map != MAP_FAILED)
			munmap(map, size);
		return -EIO;
	}
	GMimeStream *file = g_mime_stream_fs_new_with_bounds(sfd, 0, size);
	int rc = analyse_stream(file, map, true, size, fast, out);

	g_object_unref(file);
	munmap(map, size);
	return rc;
}

int parts_analyse_how(int fd, int64_t size, bool fast, struct parts_list *out)
{
	int rc;

	out->v = NULL;
	out->n = 0;
	if (size <= 0)
		return 0;
	parts_gmime_init();
	if (size <= PARTS_MAP_FROM)
		rc = analyse_small(fd, size, fast, out);
	else
		rc = analyse_large(fd, size, fast, out);
	if (rc < 0)
		parts_list_release(out);
	return rc;
}

int parts_analyse(int fd, int64_t size, struct parts_list *out)
{
	return parts_analyse_how(fd, size, true, out);
}
