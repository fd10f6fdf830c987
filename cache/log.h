/* log: one place where maildisk says what happened.
 *
 * Lines go to stderr (foreground, CLI) or syslog (daemon). Each call writes
 * one whole line with one write(2), so lines from different threads never
 * interleave. A message has a lower-case first word, no full stop, and
 * names the objects ("alice/work INBOX: ..."). Never pass a password. */
#ifndef MAILDISK_LOG_H
#define MAILDISK_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Any thread; call once before threads start. ident prefixes stderr lines. */
void log_init(const char *ident, bool to_syslog, enum log_level max_level);
/* Switch to syslog after daemonising. */
void log_use_syslog(bool on);
void log_set_level(enum log_level max_level);
enum log_level log_get_level(void);

/* Any thread. */
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
