#!/usr/bin/env python3
"""Deletion upstream moves messages to trash/, restorable, with safety holds.

1. A few messages expunged upstream: the next sync moves their files to
   trash/ (same bytes), marks the rows trashed (trashed_at, trash_sync
   pointing at a syncs row, trash_reason), and they leave cur/.
2. `maildisk trash list` lists exactly the trashed rows by ID;
   `trash restore ID` puts one back (state 2, file in cur/, trash file gone)
   and a later sync does not trash it again.
3. Expunging more than half of a folder, or emptying one, is held: nothing
   is trashed and the hold is recorded and shown by `maildisk status`, until
   `sync --allow-mass-delete`."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

ACCT = ("alice", "work")


def trash_list_ids(cfg):
    r = h.maildisk("trash", cfg, "list", expect=0)
    ids = set()
    for line in r.out.splitlines():
        m = re.match(r"\s*(\d+)\b", line)
        if m:
            ids.add(int(m.group(1)))
    return ids


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-trash")
    msgs = mailgen.generate(66, seed=31, max_size=80000)
    inbox = dc.append("alice", "INBOX", [m.raw for m in msgs[:40]])
    bulk = dc.append("alice", "Bulk", [m.raw for m in msgs[40:60]])
    gone = dc.append("alice", "Gone", [m.raw for m in msgs[60:66]])
    acct = h.Account(*ACCT, dc.url("imaps"), "alice", "pw-trash", ["INBOX", "Bulk", "Gone"], dc.ca_pem)
    cfg = ctx.config([acct])
    st = h.Store(ctx.store_dir())

    h.maildisk("sync", cfg, expect=0)
    rows1 = h.assert_folder_matches(st, dc, *ACCT, "INBOX")
    content = {r["id"]: st.read(r) for r in rows1.values()}

    # 1. A few expunged: trashed.
    victims = [inbox[2], inbox[6], inbox[10], inbox[19], inbox[32]]
    dc.expunge("alice", "INBOX", victims)
    h.maildisk("sync", cfg, expect=0)
    h.assert_folder_matches(st, dc, *ACCT, "INBOX")
    syncs = {r["id"]: r for r in st.query("SELECT * FROM syncs")}
    trashed = {int(r["remote_id"]): r for r in st.messages(*ACCT, "INBOX", state=h.TRASHED)}
    h.check(set(trashed) == set(victims), "trashed UIDs", sorted(trashed), victims)
    for uid, r in trashed.items():
        old = rows1[uid]
        h.check(r["id"] == old["id"], "UID %d: trashed row has a new id" % uid)
        h.check(r["store_file"].startswith("trash/alice/work/INBOX/"),
                "UID %d: trashed file at %s" % (uid, r["store_file"]))
        h.check(not os.path.exists(st.path(old["store_file"])), "UID %d: %s still in cur/" % (
            uid, old["store_file"]))
        h.check(st.read(r) == content[r["id"]], "UID %d: trashed file content changed" % uid)
        h.check(r["trashed_at"] and r["trashed_at"] > 0, "UID %d: trashed_at not set" % uid)
        h.check(r["trash_reason"], "UID %d: no trash_reason" % uid)
        h.check(r["trash_sync"] in syncs, "UID %d: trash_sync %r is no syncs row" % (uid, r["trash_sync"]))
        h.check(syncs[r["trash_sync"]]["n_trashed"] >= len(victims) and
                syncs[r["trash_sync"]]["user"] == "alice", "syncs row of the trashing sync",
                syncs[r["trash_sync"]])
    h.check(not st.messages(state=h.TRASHED, folder="Bulk") and not st.messages(state=h.TRASHED, folder="Gone"),
            "other folders had trash")
    h.assert_cur_matches_rows(st)

    # 2. trash list and restore.
    listed = trash_list_ids(cfg)
    h.check(listed == {r["id"] for r in trashed.values()}, "trash list IDs", sorted(listed),
            sorted(r["id"] for r in trashed.values()))
    back = trashed[victims[0]]
    trash_file = back["store_file"]
    h.maildisk("trash", cfg, "restore", str(back["id"]), expect=0)
    r = st.query("SELECT * FROM messages WHERE id = ?", back["id"])[0]
    h.check(r["state"] == h.RESTORED, "restored row state", r["state"])
    h.check(r["store_file"].startswith("mail/alice/work/INBOX/cur/"), "restored file at", r["store_file"])
    h.check(st.read(r) == content[back["id"]], "restored content differs")
    h.check(not os.path.exists(st.path(trash_file)), "trash file still there after restore", trash_file)
    h.check(trash_list_ids(cfg) == listed - {back["id"]}, "trash list after restore")
    h.assert_cur_matches_rows(st)

    h.maildisk("sync", cfg, expect=0)
    r = st.query("SELECT * FROM messages WHERE id = ?", back["id"])[0]
    h.check(r["state"] == h.RESTORED and os.path.exists(st.path(r["store_file"])),
            "a sync trashed the restored message again", r)
    h.check(trash_list_ids(cfg) == listed - {back["id"]}, "trash list after the next sync")

    # 3. Mass deletions are held.
    dc.expunge("alice", "Bulk", bulk[:11])          # 55% of the folder
    dc.expunge("alice", "Gone", gone)               # all of it
    snap = st.snapshot()
    h.maildisk("sync", cfg, expect=(0, 1))
    h.check(st.snapshot() == snap, "a held mass deletion changed the store")
    for f in ("Bulk", "Gone"):
        fr = st.folder(*ACCT, f)
        h.check(fr["held"], "%s: no hold recorded for a mass deletion" % f, fr)
        h.check(not st.messages(*ACCT, f, state=h.TRASHED), "%s: trashed despite the hold" % f)
    h.check(st.folder(*ACCT, "INBOX")["held"] is None, "INBOX held without reason")
    status = h.maildisk("status", cfg, expect=0)
    h.check(re.search(r"held", status.text, re.I), "status does not show the held deletions")

    h.maildisk("sync", cfg, "--allow-mass-delete", expect=0)
    for f, uids in (("Bulk", bulk[:11]), ("Gone", gone)):
        fr = st.folder(*ACCT, f)
        h.check(fr["held"] is None, "%s: hold not cleared" % f, fr["held"])
        got = sorted(int(x["remote_id"]) for x in st.messages(*ACCT, f, state=h.TRASHED))
        h.check(got == sorted(uids), "%s: trashed after --allow-mass-delete" % f, got, uids)
        h.assert_folder_matches(st, dc, *ACCT, f)
    h.check(len(trash_list_ids(cfg)) == 4 + 11 + 6, "trash list after the confirmed mass deletion")
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)


if __name__ == "__main__":
    h.run(main, deadline=240)
