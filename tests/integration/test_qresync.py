#!/usr/bin/env python3
"""Incremental sync by QRESYNC and CONDSTORE (RFC 7162).

After a first sync: with nothing changed, a resync is one EXAMINE per
folder (no UID SEARCH, no FETCH); an expunge upstream is learned from
VANISHED (EARLIER) and lands in trash; flag changes upstream reach the
index (and so user.mail.flags); new mail still arrives. The resync that
learns these never lists all UIDs."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-q")
    msgs = mailgen.generate(60, seed=21, max_size=20000)
    uids = dc.append("alice", "INBOX", [m.raw for m in msgs[:50]])
    acct = h.Account("alice", "work", dc.url("imaps"), "alice", "pw-q", ("INBOX",), dc.ca_pem)
    cfg = ctx.config([acct])
    h.maildisk("sync", cfg, expect=0)
    st = h.Store(ctx.store_dir())
    h.assert_folder_matches(st, dc, "alice", "work", "INBOX")
    fr = st.folder("alice", "work", "INBOX")
    h.check(fr["highestmodseq"] > 0, "no HIGHESTMODSEQ stored after the first sync", fr)

    # Nothing changed: one round trip, nothing listed.
    r = h.maildisk("sync", cfg, "-v", expect=0)
    h.check("QRESYNC" not in r.err, "an unchanged folder went past the EXAMINE", r.err)

    # Expunge two, flag three, add five.
    gone = uids[3:5]
    flagged = uids[10:13]
    dc.expunge("alice", "INBOX", gone)
    dc.set_flags("alice", "INBOX", flagged, ["\\Flagged", "\\Answered"])
    new_uids = dc.append("alice", "INBOX", [m.raw for m in msgs[50:55]])
    r = h.maildisk("sync", cfg, "-v", expect=0)
    h.check("QRESYNC: 2 vanished, 5 new" in r.err,
            "the resync did not use the QRESYNC changes", r.err[-2000:])

    rows = h.assert_folder_matches(st, dc, "alice", "work", "INBOX")
    h.check(set(rows) == set(dc.uids("alice", "INBOX")), "store differs from server")
    for u in new_uids:
        h.check(u in rows, "new UID %d missing" % u)
    trashed = {int(m["remote_id"]) for m in st.messages(state=h.TRASHED) if m["remote_id"]}
    h.check(trashed == set(gone), "trash holds %s, expected %s" % (sorted(trashed), gone))
    for u in flagged:
        fl = set((rows[u]["flags"] or "").split())
        h.check({"\\Flagged", "\\Answered"} <= fl, "UID %d flags %r not updated" % (u, rows[u]["flags"]))
    h.assert_no_tmp(st)


if __name__ == "__main__":
    h.run(main, deadline=180)
