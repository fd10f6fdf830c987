#!/usr/bin/env python3
"""UIDVALIDITY change upstream.

1. Same content, new UIDVALIDITY (Dovecot forgot its UIDs): the sync re-keys
   the rows by Message-ID and size: same row ids, same files and inode
   numbers, remote_id now the new UID (checked by content), no new row,
   nothing downloaded again, nothing trashed.
2. Content replaced under a new UIDVALIDITY (no known Message-ID left): the
   re-match is not convincing, so deletions are held: nothing trashed, the
   old rows and files stay, the hold is recorded and shown by status."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

ACCT = ("alice", "work")
# Re-matching needs a Message-ID: leave out the kind that has none.
KINDS = [k for k in mailgen.KINDS if k != "no-msgid"]


def rows_state(st, folder):
    return {r["id"]: (r["store_file"], st.inode(r), r["size"], r["message_id"])
            for r in st.messages(*ACCT, folder)}


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-uv")
    msgs = mailgen.generate(90, seed=41, max_size=100000, kinds=KINDS)
    dc.append("alice", "INBOX", [m.raw for m in msgs[:60]])
    dc.append("alice", "Other", [m.raw for m in msgs[60:90]])
    px = ctx.proxy(dc.ports["imaps"])
    acct = h.Account(*ACCT, px.url("imaps"), "alice", "pw-uv", ["INBOX", "Other"], dc.ca_pem)
    cfg = ctx.config([acct])
    st = h.Store(ctx.store_dir())
    h.maildisk("sync", cfg, expect=0)
    h.assert_folder_matches(st, dc, *ACCT, "INBOX")
    before = rows_state(st, "INBOX")
    before_other = rows_state(st, "Other")
    old_uids = {r["id"]: r["remote_id"] for r in st.messages(*ACCT, "INBOX")}

    # 1. Same content, new UIDVALIDITY.
    old_uv, new_uv = dc.reset_uidvalidity("alice", "INBOX")
    h.check(st.folder(*ACCT, "INBOX")["uidvalidity"] == old_uv, "stored UIDVALIDITY before the reset")
    px.reset()
    h.maildisk("sync", cfg, expect=0)
    h.check(rows_state(st, "INBOX") == before, "re-keying changed row ids, files or inodes")
    h.check(rows_state(st, "Other") == before_other, "an untouched folder changed")
    h.check(not st.messages(state=h.TRASHED), "a UIDVALIDITY change trashed messages")
    h.check(st.folder(*ACCT, "INBOX")["uidvalidity"] == new_uv, "stored UIDVALIDITY after the reset",
            st.folder(*ACCT, "INBOX")["uidvalidity"], new_uv)
    h.check(st.folder(*ACCT, "INBOX")["held"] is None, "a convincing re-match was held")
    # Content check: every row now points at the UID holding its bytes.
    h.assert_folder_matches(st, dc, *ACCT, "INBOX")
    moved = sum(1 for r in st.messages(*ACCT, "INBOX") if r["remote_id"] != old_uids[r["id"]])
    h.log("%d of %d rows got another UID" % (moved, len(before)))
    inbox_bytes = sum(len(m.raw) for m in msgs[:60])
    h.check(px.s2c < inbox_bytes / 4, "re-keying downloaded %d bytes (INBOX holds %d)" % (px.s2c, inbox_bytes))

    # 2. Content replaced under a new UIDVALIDITY: not convincing, held.
    dc.expunge("alice", "Other", dc.uids("alice", "Other"))
    dc.append("alice", "Other", [m.raw for m in mailgen.generate(30, seed=4242, max_size=50000, kinds=KINDS)])
    dc.reset_uidvalidity("alice", "Other")
    h.maildisk("sync", cfg, expect=(0, 1))
    h.check(not st.messages(state=h.TRASHED), "an unconvincing re-match trashed messages",
            len(st.messages(state=h.TRASHED)))
    old_rows = {rid: v for rid, v in rows_state(st, "Other").items() if rid in before_other}
    h.check(old_rows == before_other, "old rows or files of the replaced folder changed")
    for row in st.messages(*ACCT, "Other"):
        if row["id"] in before_other:
            h.check(row["state"] == h.ACTIVE and os.path.exists(st.path(row["store_file"])),
                    "old message %d is no longer active" % row["id"])
    h.check(st.folder(*ACCT, "Other")["held"], "no hold recorded for an unconvincing re-match",
            st.folder(*ACCT, "Other"))
    status = h.maildisk("status", cfg, expect=0)
    h.check(re.search(r"held", status.text, re.I), "status does not show the hold")
    h.check(rows_state(st, "INBOX") == before, "INBOX changed while Other was held")
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)


if __name__ == "__main__":
    h.run(main, deadline=240)
