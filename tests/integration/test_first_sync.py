#!/usr/bin/env python3
"""First sync over IMAPS: a few hundred varied messages in INBOX and Archive.

After `maildisk sync`: exit 0; for every server UID exactly one active row
whose file equals BODY.PEEK[] byte for byte; rows carry Message-ID and
flags; nothing is left in any tmp/ and every cur/ file has a row; the sync
set no flag on the server (\\Seen in particular). A second sync with nothing
new changes nothing."""
import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

FOLDERS = ("INBOX", "Archive")


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-alice-1")
    msgs = mailgen.generate(280, seed=11)
    # Mixed flags: the sync must leave them all as they are.
    inbox = []
    for i, m in enumerate(msgs[:220]):
        fl = ("\\Seen",) if i % 3 == 0 else ("\\Flagged", "$Label1") if i % 7 == 0 else ()
        inbox.append((m.raw, fl))
    by_uid = {"INBOX": dict(zip(dc.append("alice", "INBOX", inbox), msgs[:220])),
              "Archive": dict(zip(dc.append("alice", "Archive", [m.raw for m in msgs[220:]]), msgs[220:]))}
    flags_before = {f: dc.flags("alice", f) for f in FOLDERS}
    check_unseen = sum(1 for fl in flags_before["INBOX"].values() if "\\Seen" not in fl)
    h.check(check_unseen > 100, "test setup: too few unseen messages", check_unseen)

    acct = h.Account("alice", "work", dc.url("imaps"), "alice", "pw-alice-1", FOLDERS, dc.ca_pem)
    cfg = ctx.config([acct])
    h.maildisk("sync", cfg, expect=0)

    st = h.Store(ctx.store_dir())
    h.check(stat.S_IMODE(os.stat(st.root).st_mode) == 0o700, "store root is not mode 0700",
            oct(os.stat(st.root).st_mode))
    for f in FOLDERS:
        rows = h.assert_folder_matches(st, dc, "alice", "work", f)
        fr = st.folder("alice", "work", f)
        h.check(fr["path"] == "mail/alice/work/" + f, "folder path", fr["path"])
        h.check(fr["uidvalidity"] == dc.uidvalidity("alice", f), "stored UIDVALIDITY", fr["uidvalidity"])
        h.check(fr["synced_at"] and fr["synced_at"] > 0, "synced_at not set", f)
        h.check(fr["last_error"] is None and fr["held"] is None, "folder has an error or hold",
                fr["last_error"], fr["held"])
        for uid, r in rows.items():
            m = by_uid[f][uid]
            h.check(r["message_id"] == m.message_id, "%s UID %d: message_id %r, expected %r" % (
                f, uid, r["message_id"], m.message_id))
            got = set((r["flags"] or "").split()) - {"\\Recent"}
            h.check(got == set(flags_before[f][uid]), "%s UID %d: row flags %r, server %r" % (
                f, uid, r["flags"], sorted(flags_before[f][uid])))
    h.check(not st.messages(state=h.TRASHED), "something was trashed on a first sync")
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)

    flags_after = {f: dc.flags("alice", f) for f in FOLDERS}
    for f in FOLDERS:
        changed = [u for u in flags_before[f] if flags_before[f][u] != flags_after[f].get(u)]
        h.check(not changed, "%s: the sync changed server flags of UIDs" % f, changed[:10],
                [(flags_before[f][u], flags_after[f].get(u)) for u in changed[:3]])

    # Nothing new: nothing changes, not even inode numbers.
    snap = st.snapshot()
    h.maildisk("sync", cfg, expect=0)
    h.check(st.snapshot() == snap, "a sync with nothing new changed the store")
    h.check(dc.flags("alice", "INBOX") == flags_before["INBOX"], "second sync changed server flags")


if __name__ == "__main__":
    h.run(main, deadline=240)
