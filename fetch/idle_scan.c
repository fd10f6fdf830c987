/* idle_scan: the bytes of an IDLE connection, line by line (idle_scan.h). */
#include "idle_scan.h"

#include <string.h>
#include <strings.h>

void idle_scan_expect(struct idle_scan *sc, const char *old_tag)
{
	size_t n = strlen(old_tag);

	if (n >= sizeof(sc->old_tag))
		n = sizeof(sc->old_tag) - 1;
	memcpy(sc->old_tag, old_tag, n);
	sc->old_tag[n] = '\0';
	sc->want_ok = sc->want_plus = true;
	sc->total = 0;
}

bool idle_scan_waiting(const struct idle_scan *sc)
{
	return sc->want_ok || sc->want_plus;
}

static bool is_word(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);

	return (size_t)(end - p) >= n && strncasecmp(p, word, n) == 0 &&
	       (p + n == end || p[n] == ' ' || p[n] == '\r' || p[n] == '\n');
}

/* One line's start: 0 (a change counted in *changes), or -1 with *why. */
static int classify(struct idle_scan *sc, unsigned *changes, const char **why)
{
	const char *p = sc->head, *end = sc->head + sc->head_len;

	if (end - p >= 2 && p[0] == '*' && p[1] == ' ') {
		p += 2;
		if (p < end && *p >= '0' && *p <= '9') {
			while (p < end && *p >= '0' && *p <= '9')
				p++;
			if (p < end && *p == ' ' &&
			    (is_word(p + 1, end, "EXISTS") || is_word(p + 1, end, "EXPUNGE") ||
			     is_word(p + 1, end, "FETCH")))
				(*changes)++;
		} else if (is_word(p, end, "VANISHED")) {
			(*changes)++;
		} else if (is_word(p, end, "BYE")) {
			*why = "the server said BYE";
			return -1;
		}
		return 0;   /* OK (keep-alives), FLAGS, RECENT, ...: nothing to do */
	}
	if (p < end && p[0] == '+') {
		if (!sc->want_plus) {
			*why = "the server sent a continuation outside IDLE";
			return -1;
		}
		sc->want_plus = false;
		return 0;
	}
	size_t t = strlen(sc->old_tag);

	if (!sc->want_ok || !t || (size_t)(end - p) < t + 1 || memcmp(p, sc->old_tag, t) != 0 ||
	    p[t] != ' ' || !is_word(p + t + 1, end, "OK")) {
		*why = "the server ended the IDLE";
		return -1;
	}
	sc->want_ok = false;
	return 0;
}

/* A line ended: classify it unless it continues a response after a
 * literal, and note a literal announced at its end. */
static int line_done(struct idle_scan *sc, unsigned *changes, const char **why)
{
	const char *t = sc->tail, *e = sc->tail + sc->tail_len;
	uint64_t lit = 0;
	bool has_lit = false;

	while (e > t && (e[-1] == '\n' || e[-1] == '\r'))
		e--;
	if (e > t && e[-1] == '}') {
		const char *q = e - 1, *d;

		if (q > t && q[-1] == '+')
			q--;
		for (d = q; d > t && d[-1] >= '0' && d[-1] <= '9'; d--)
			;
		if (d < q && d > t && d[-1] == '{') {
			has_lit = true;
			for (; d < q && lit <= IDLE_SCAN_LITERAL_MAX; d++)
				lit = lit * 10 + (uint64_t)(*d - '0');
		}
	}
	if (has_lit && lit > IDLE_SCAN_LITERAL_MAX) {
		*why = "the server sent too large a literal";
		return -1;
	}
	if (!sc->cont && classify(sc, changes, why) < 0)
		return -1;
	sc->cont = has_lit;
	sc->literal_left = (uint32_t)lit;
	sc->head_len = sc->tail_len = 0;
	sc->line_len = 0;
	return 0;
}

int idle_scan_feed(struct idle_scan *sc, const char *p, size_t n, unsigned *changes_r,
		   const char **why_r)
{
	*changes_r = 0;
	if (n > IDLE_SCAN_TOTAL_MAX - sc->total) {
		*why_r = "the server sent too much while idling";
		return -1;
	}
	sc->total += (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		if (sc->literal_left) {
			size_t k = n - i < sc->literal_left ? n - i : sc->literal_left;

			sc->literal_left -= (uint32_t)k;
			i += k - 1;
			continue;
		}
		if (++sc->line_len > IDLE_SCAN_LINE_MAX) {
			*why_r = "the server sent too long a line";
			return -1;
		}
		if (sc->head_len < sizeof(sc->head))
			sc->head[sc->head_len++] = p[i];
		if (sc->tail_len == sizeof(sc->tail)) {
			memmove(sc->tail, sc->tail + 1, sizeof(sc->tail) - 1);
			sc->tail_len--;
		}
		sc->tail[sc->tail_len++] = p[i];
		if (p[i] == '\n' && line_done(sc, changes_r, why_r) < 0)
			return -1;
	}
	return 0;
}
