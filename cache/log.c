/* log: lines to stderr ("<ident>: <msg>\n") or to syslog, filtered by level.
 *
 * Each line is formatted into one stack buffer and leaves with one write(2)
 * (or one syslog(3) call), so lines from different threads never interleave
 * and no lock is needed. Level and destination are atomics; the ident is
 * set by log_init before any thread starts (see log.h). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

/* Longer messages are cut and end in "..."; a log line is not a data path. */
#define LOG_LINE_MAX 4096

static char log_ident[64] = "maildisk";
static int log_to_syslog;               /* atomic */
static int log_max = LOG_LVL_INFO;      /* atomic */

void log_init(const char *ident, bool to_syslog, enum log_level max_level)
{
	if (ident && *ident)
		snprintf(log_ident, sizeof log_ident, "%s", ident);
	log_set_level(max_level);
	log_use_syslog(to_syslog);
}

void log_use_syslog(bool on)
{
	/* openlog keeps the pointer: log_ident is static and never changes
	 * once threads run. */
	if (on)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	__atomic_store_n(&log_to_syslog, on ? 1 : 0, __ATOMIC_RELAXED);
}

void log_set_level(enum log_level max_level)
{
	__atomic_store_n(&log_max, (int)max_level, __ATOMIC_RELAXED);
}

enum log_level log_get_level(void)
{
	return (enum log_level)__atomic_load_n(&log_max, __ATOMIC_RELAXED);
}

static int syslog_priority(enum log_level level)
{
	switch (level) {
	case LOG_LVL_ERROR: return LOG_ERR;
	case LOG_LVL_WARN: return LOG_WARNING;
	case LOG_LVL_INFO: return LOG_INFO;
	case LOG_LVL_DEBUG: break;
	}
	return LOG_DEBUG;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	int saved_errno = errno;   /* callers log after a failed call and then return -errno */
	char line[LOG_LINE_MAX];
	bool to_syslog;
	size_t off = 0, room, len;
	va_list ap;
	int n;

	if ((int)level > __atomic_load_n(&log_max, __ATOMIC_RELAXED))
		return;
	to_syslog = __atomic_load_n(&log_to_syslog, __ATOMIC_RELAXED);
	if (!to_syslog) {
		n = snprintf(line, sizeof line, "%s: ", log_ident);
		off = n > 0 ? (size_t)n : 0;
	}
	/* Keep one byte for the '\n'. */
	room = sizeof line - off - 1;
	errno = saved_errno;       /* for %m */
	va_start(ap, fmt);
	n = vsnprintf(line + off, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	len = (size_t)n;
	if (len > room - 1) {
		len = room - 1;
		memcpy(line + off + len - 3, "...", 3);
	}
	/* Server-supplied text (folder names, subjects, error lines) must not
	 * reach a terminal or the journal as control sequences. */
	for (size_t i = off; i < off + len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f)
			line[i] = '?';
	}

	if (to_syslog) {
		line[off + len] = '\0';
		syslog(syslog_priority(level), "%s", line + off);
	} else {
		const char *p = line;
		size_t left = off + len + 1;
		ssize_t w;

		line[off + len] = '\n';
		while (left > 0) {
			w = write(STDERR_FILENO, p, left);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			p += w;
			left -= (size_t)w;
		}
	}
	errno = saved_errno;
}
