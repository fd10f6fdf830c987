/* idle_scan: what an IMAP server sends during IDLE (RFC 2177), scanned
 * line by line with a few dozen bytes of state, for an event loop that
 * watches many connections (idle.c).
 *
 * During IDLE a server sends untagged data, "+" after an IDLE command and
 * the tagged answer to DONE; nothing else. Lines are not parsed into
 * responses: only their start decides (EXISTS, EXPUNGE, FETCH, VANISHED:
 * a change; BYE: the end), and a literal announced at a line's end ({n})
 * is skipped by count, so bytes inside it are never taken for a line.
 * Every byte is hostile: a line, a literal or the total past its bound,
 * or anything IDLE does not send, ends the scan with a reason.
 *
 * Threads: a scanner belongs to one thread. */
#ifndef MAILDISK_IDLE_SCAN_H
#define MAILDISK_IDLE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What one IDLE connection may send: a longer line, a larger literal, or
 * more bytes between two idle_scan_expect calls is not a mailbox at rest. */
#define IDLE_SCAN_LINE_MAX 8192
#define IDLE_SCAN_LITERAL_MAX (64 * 1024)
#define IDLE_SCAN_TOTAL_MAX (1u << 20)

/* Zero it to start (right after the server's "+"). */
struct idle_scan {
	bool want_plus, want_ok, cont;
	uint8_t head_len, tail_len;
	uint32_t line_len, literal_left, total;
	char old_tag[16];
	char head[32], tail[24];
};

/* A DONE and a new IDLE were sent: the tagged OK to old_tag and a "+" are
 * due (in either order). Restarts the byte count. */
void idle_scan_expect(struct idle_scan *sc, const char *old_tag);
/* Whether answers expected are still due. */
bool idle_scan_waiting(const struct idle_scan *sc);

/* Scans n bytes. *changes_r: how many lines reported a change. 0, or -1
 * with *why_r (static text, for a log line) when the connection must be
 * dropped. The state after -1 is meaningless. */
int idle_scan_feed(struct idle_scan *sc, const char *p, size_t n, unsigned *changes_r,
		   const char **why_r);

#endif
