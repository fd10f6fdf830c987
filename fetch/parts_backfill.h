/* parts_backfill: records the parts (cache/parts.h) of messages that have
 * none yet: those stored before parts existed, while the user's parts were
 * off, or whose analysis failed at ingest. A little at each account's sync
 * run, so an old store is filled in over its first syncs without holding
 * any sync up for long.
 *
 * Threads: runs on the account's sync worker, with its index connection. */
#ifndef MAILDISK_PARTS_BACKFILL_H
#define MAILDISK_PARTS_BACKFILL_H

#include "ingest.h"

#define BACKFILL_BATCH 200          /* messages per transaction */
#define BACKFILL_RECORDS 20000      /* part records held at once, at most */
#define BACKFILL_SECONDS 2.0        /* per run; the rest waits for the next */

/* Analyses visible messages of run's account that have no records, oldest
 * row first, in transactions of at most BACKFILL_BATCH messages, until none
 * is left, the run is asked to stop, or seconds have passed (what is
 * analysed by then is written). Nothing when the user's parts are off. Logs one
 * line when it recorded or missed any. Returns the messages recorded. */
size_t parts_backfill(struct ingest_run *run, double seconds);

#endif
