/* progress: the one-line report of a sync fetching many messages, shown on
 * a terminal (`maildisk sync` with stderr a tty):
 *
 *   alice/work INBOX: 1200/5210 messages, 85.3 MB, 2.1 MB/s, 42 msg/s, ETA 1:35
 *
 * The rates are averages since the folder's fetch began; the ETA assumes the
 * remaining messages come at the same message rate. Before there is a rate
 * to go by (nothing done yet, or less than PROGRESS_MIN_ELAPSED seconds),
 * the rates and ETA are left out. Any thread; no global state. */
#ifndef MAILDISK_PROGRESS_H
#define MAILDISK_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include "../cache/buf.h"

#define PROGRESS_MIN_ELAPSED 0.5

/* Appends the line (without "\r" or newline) to out: label and folder as
 * given, done of total messages, bytes stored so far in this folder,
 * elapsed seconds since it began. 0, or buf's -ENOMEM / -E2BIG. */
int progress_format(struct buf *out, const char *label, const char *folder, size_t done,
		    size_t total, uint64_t bytes, double elapsed);

#endif
