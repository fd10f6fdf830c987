/* progress: rate and ETA of a folder's fetch, as one line of text. */
#include "progress.h"

#include <math.h>

/* "42 s", "1:35", "2:03:04": how long, for a person. */
static int fmt_duration(struct buf *out, double secs)
{
	unsigned long s = secs < 0 ? 0 : secs > 359999999.0 ? 359999999ul : (unsigned long)(secs + 0.5);

	if (s < 60)
		return buf_printf(out, "%lu s", s);
	if (s < 3600)
		return buf_printf(out, "%lu:%02lu", s / 60, s % 60);
	return buf_printf(out, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
}

int progress_format(struct buf *out, const char *label, const char *folder, size_t done,
		    size_t total, uint64_t bytes, double elapsed)
{
	int rc = buf_printf(out, "%s %s: %zu/%zu messages, %.1f MB", label, folder, done, total,
			    (double)bytes / 1e6);

	if (rc || done == 0 || !(elapsed >= PROGRESS_MIN_ELAPSED) || !isfinite(elapsed))
		return rc;
	double msg_rate = (double)done / elapsed;
	rc = buf_printf(out, ", %.1f MB/s, %.0f msg/s", (double)bytes / 1e6 / elapsed, msg_rate);
	if (rc == 0 && done < total) {
		rc = buf_appends(out, ", ETA ");
		if (rc == 0)
			rc = fmt_duration(out, (double)(total - done) / msg_rate);
	}
	return rc;
}
