/* store_flags: IMAP flags as Maildir info suffixes ("...:2,FS") on the
 * store's files (see store.h, store_set_flags for the order). */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "store_int.h"

struct relink {
	char *from;    /* owned, store-relative: the name the row has */
	char *to;      /* owned, store-relative: the name its flags give; NULL: unchanged */
	bool linked;   /* to exists because we linked it */
};

static void relinks_free(struct relink *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].from);
		free(v[i].to);
	}
	free(v);
}

/* Unlinks, for each entry we linked, its new name (new_names) or its old
 * one, and fsyncs their directories. */
static int relinks_unlink(struct store *s, struct relink *v, size_t n, bool new_names)
{
	struct store_dirset dirs = { 0 };
	char path[PATH_MAX];
	int rc = 0;

	for (size_t i = 0; v && i < n; i++) {
		if (!v[i].linked || store_path(s, new_names ? v[i].to : v[i].from, path, sizeof path))
			continue;
		if (unlink(path) < 0 && errno != ENOENT) {
			log_warn("unlink(%s): %m", path);
			if (rc == 0)
				rc = -errno;
		} else if (rc == 0) {
			rc = store_dirset_add_parent(&dirs, path);
		}
	}
	if (rc == 0)
		rc = store_dirset_sync(&dirs);
	store_dirset_free(&dirs);
	return rc;
}

/* The name of row m's file with the info suffix of flags, or NULL (and
 * *rc_r 0) when it already has it. */
static char *flagged_name(const struct index_msg *m, const char *flags, int *rc_r)
{
	const char *base = store_base_name(m->store_file);
	size_t dirlen = (size_t)(base - m->store_file), keylen = strcspn(base, ":");
	char letters[16], *to = NULL;

	*rc_r = 0;
	store_maildir_flags(flags, letters, sizeof letters);
	if (asprintf(&to, "%.*s%.*s:2,%s", (int)dirlen, m->store_file, (int)keylen, base,
		     letters) < 0) {
		*rc_r = -ENOMEM;
		return NULL;
	}
	if (strcmp(to, m->store_file) == 0) {
		free(to);
		return NULL;
	}
	return to;
}

int store_set_flags(struct store *s, struct index *ix, const struct store_flag_change *v, size_t n)
{
	struct relink *rl = calloc(n ? n : 1, sizeof *rl);
	struct store_dirset dirs = { 0 };
	char from[PATH_MAX], to[PATH_MAX];
	int rc = rl ? 0 : -ENOMEM;

	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct index_msg m = { 0 };

		rc = index_msg_get(ix, v[i].id, &m);
		if (rc == 0 && m.state != MSG_ACTIVE) {
			log_error("message %lld is not active (state %d), not setting its flags",
				  (long long)v[i].id, (int)m.state);
			rc = -EINVAL;
		}
		if (rc == 0) {
			rl[i].from = strdup(m.store_file);
			rl[i].to = flagged_name(&m, v[i].flags, &rc);
			if (rc == 0 && !rl[i].from)
				rc = -ENOMEM;
		}
		index_msg_release(&m);
	}

	/* New names first, made durable: until the commit the row names the old
	 * file, after it the new one, and both exist in between, so a reader of
	 * the mount never finds its file missing. The old names go only after
	 * the commit. */
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (!rl[i].to)
			continue;
		rc = store_path(s, rl[i].from, from, sizeof from);
		if (rc == 0)
			rc = store_path(s, rl[i].to, to, sizeof to);
		if (rc)
			break;
		if (link(from, to) == 0) {
			rl[i].linked = true;
			rc = store_dirset_add_parent(&dirs, to);
		} else if (errno == ENOENT) {
			/* Renamed by another Maildir reader: store_recover follows it. */
			log_warn("%s: file missing, recording only the flags", from);
			free(rl[i].to);
			rl[i].to = NULL;
		} else {
			rc = -errno;
			log_error("link(%s, %s): %m", from, to);
		}
	}
	if (rc == 0)
		rc = store_dirset_sync(&dirs);
	store_dirset_free(&dirs);

	if (rc == 0)
		rc = index_begin(ix);
	if (rc == 0) {
		for (size_t i = 0; rc == 0 && i < n; i++) {
			rc = index_msg_set_flags(ix, v[i].id, v[i].flags);
			if (rc == 0 && rl[i].to)
				rc = index_msg_set_store_file(ix, v[i].id, rl[i].to);
		}
		rc = index_end(ix, rc);
		if (rc == 0)
			rc = relinks_unlink(s, rl, n, false);
		else
			relinks_unlink(s, rl, n, true);
	} else {
		relinks_unlink(s, rl, n, true);
	}
	relinks_free(rl, n);
	return rc;
}

void store_maildir_flags(const char *imap_flags, char *out, size_t outlen)
{
	/* Maildir info letters in ASCII order, as the spec wants them. */
	static const struct {
		const char *imap;
		char c;
	} map[] = {
		{ "\\Draft", 'D' }, { "\\Flagged", 'F' }, { "$Forwarded", 'P' },
		{ "\\Answered", 'R' }, { "\\Seen", 'S' }, { "\\Deleted", 'T' },
	};
	bool have[sizeof map / sizeof map[0]] = { false };
	const char *p = imap_flags;
	size_t len = 0;

	if (outlen == 0)
		return;
	while (p && *p) {
		size_t n;

		p += strspn(p, " ()");
		n = strcspn(p, " ()");
		for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
			if (n == strlen(map[i].imap) && strncasecmp(p, map[i].imap, n) == 0)
				have[i] = true;
		p += n;
	}
	for (size_t i = 0; i < sizeof map / sizeof map[0] && len + 1 < outlen; i++)
		if (have[i])
			out[len++] = map[i].c;
	out[len] = '\0';
}
