#!/usr/bin/env python3
"""Incremental sync: new mail appended upstream is added, and only it.

The sync runs through a counting proxy, so "no re-download" is checked two
ways: old rows keep their ids, files and inode numbers, and the bytes the
server sent stay near the size of the new mail alone."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

SLACK = 128 * 1024   # TLS handshake, greeting, EXAMINE, listing, FETCH metadata


def rows_state(st):
    return {r["id"]: (r["folder_id"], r["remote_id"], r["state"], r["store_file"], st.inode(r))
            for r in st.messages()}


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-inc")
    msgs = mailgen.generate(200, seed=21)
    dc.append("alice", "INBOX", [m.raw for m in msgs[:120]])
    dc.append("alice", "Lists", [m.raw for m in msgs[120:150]])
    px = ctx.proxy(dc.ports["imaps"])
    acct = h.Account("alice", "work", px.url("imaps"), "alice", "pw-inc", ["INBOX", "Lists"], dc.ca_pem)
    cfg = ctx.config([acct])
    st = h.Store(ctx.store_dir())

    h.maildisk("sync", cfg, expect=0)
    first = sum(len(m.raw) for m in msgs[:150])
    h.check(px.s2c >= first, "first sync moved fewer bytes than the mail", px.s2c, first)
    before = rows_state(st)
    h.check(len(before) == 150, "rows after first sync", len(before))

    # No change upstream: a cheap sync that changes nothing.
    px.reset()
    h.maildisk("sync", cfg, expect=0)
    h.check(rows_state(st) == before, "a sync with no upstream change changed rows or files")
    h.check(px.s2c < SLACK, "a sync with no upstream change downloaded %d bytes" % px.s2c)

    # New mail in both folders.
    new_inbox = dc.append("alice", "INBOX", [m.raw for m in msgs[150:185]])
    new_lists = dc.append("alice", "Lists", [m.raw for m in msgs[185:200]])
    new_bytes = sum(len(m.raw) for m in msgs[150:200])
    px.reset()
    h.maildisk("sync", cfg, expect=0)
    after = rows_state(st)
    for rid, old in before.items():
        h.check(after.get(rid) == old, "old row %d changed" % rid, old, after.get(rid))
    added = [r for r in st.messages() if r["id"] not in before]
    h.check(len(added) == 50, "new rows", len(added))
    got = {}
    for r in added:
        got.setdefault(r["f_name"], set()).add(int(r["remote_id"]))
    h.check(got.get("INBOX") == set(new_inbox), "new INBOX rows", sorted(got.get("INBOX", ())), new_inbox)
    h.check(got.get("Lists") == set(new_lists), "new Lists rows", sorted(got.get("Lists", ())), new_lists)
    h.check(px.s2c < new_bytes * 1.05 + SLACK,
            "incremental sync downloaded %d bytes for %d bytes of new mail" % (px.s2c, new_bytes))
    for f in ("INBOX", "Lists"):
        h.assert_folder_matches(st, dc, "alice", "work", f)
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)
    h.check(not st.messages(state=h.TRASHED), "incremental sync trashed something")


if __name__ == "__main__":
    h.run(main, deadline=240)
