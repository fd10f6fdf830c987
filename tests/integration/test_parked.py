#!/usr/bin/env python3
"""A crash between a UIDVALIDITY re-key and the trashing of the rows that
matched nothing leaves those rows parked ("v<old uidvalidity>:<row>"): the
next complete listing moves exactly them to trash, and nothing else."""
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-park")
    msgs = mailgen.generate(12, seed=3, max_size=8000)
    dc.append("alice", "INBOX", [m.raw for m in msgs])
    acct = h.Account("alice", "work", dc.url("imaps"), "alice", "pw-park", ("INBOX",), dc.ca_pem)
    cfg = ctx.config([acct])
    h.maildisk("sync", cfg, expect=0)
    st = h.Store(ctx.store_dir())
    rows = st.messages("alice", "work", "INBOX", h.ACTIVE)
    victim = rows[0]
    # What the crash leaves: the row re-keyed away from any UID, still active.
    db = sqlite3.connect(os.path.join(ctx.store_dir(), "index.db"))
    db.execute("UPDATE messages SET remote_id = ? WHERE id = ?", ("v1:%d" % victim["id"], victim["id"]))
    db.execute("UPDATE folders SET highestmodseq = 0")   # force a full listing
    db.commit()
    db.close()
    h.maildisk("sync", cfg, expect=0)
    trashed = st.messages(state=h.TRASHED)
    h.check([r["id"] for r in trashed] == [victim["id"]], "trashed rows", [r["id"] for r in trashed])
    h.check("UIDVALIDITY" in (trashed[0]["trash_reason"] or ""), "reason", trashed[0]["trash_reason"])
    # The server still has that message under its UID: it comes back as a new row.
    h.assert_folder_matches(st, dc, "alice", "work", "INBOX")


if __name__ == "__main__":
    h.run(main, deadline=120)
