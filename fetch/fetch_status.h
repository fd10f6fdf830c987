/* fetch_status: how far a fetch-layer failure reaches and when to try
 * again (docs/hacking.md, House style: errors). cache/ speaks negative
 * errno; fetch/ converts at its boundary into one of these. */
#ifndef MAILDISK_FETCH_STATUS_H
#define MAILDISK_FETCH_STATUS_H

enum fetch_status {
	FETCH_OK = 0,
	FETCH_MSG_BAD,      /* one message could not be stored; the folder goes on */
	FETCH_FOLDER_BAD,   /* this folder failed (NO to EXAMINE, bad listing); other folders go on */
	FETCH_ACCOUNT_BAD,  /* connection, TLS, login, protocol: the account stops for this run */
	FETCH_LOCAL_BAD,    /* the store or index failed: stop everything, the disk needs attention */
	FETCH_STOPPED,      /* asked to stop (shutdown): nothing half-done is visible */
};

/* When an account failed: retry on the next interval with backoff, or only
 * after the user changed something (wrong password, untrusted certificate). */
enum fetch_retry { RETRY_LATER = 0, RETRY_AFTER_FIX };

const char *fetch_status_str(enum fetch_status s);

#endif
