#!/usr/bin/env python3
"""The server hangs up in the middle of a message.

A proxy closes both sides of the connection after N bytes server->client.
A: first sync, cut half way through the mail: exit 1 with an error naming
   the account; nothing trashed; whatever was committed is byte-exact;
   then a direct sync converges to the server's set.
B: after a complete sync, some mail is expunged and much is added; the cut
   falls while the new mail is fetched: exit 1; no message that is still
   on the server is trashed; a direct sync converges (and trashes exactly
   the expunged ones)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

ACCT = ("alice", "work")


def committed_rows_are_exact(st, dc):
    rows = st.messages(*ACCT, "INBOX", state=h.ACTIVE)
    if not rows:
        return 0
    bodies = dc.fetch_bodies("alice", "INBOX", ",".join(r["remote_id"] for r in rows))
    for r in rows:
        uid = int(r["remote_id"])
        h.check(uid in bodies, "row %d has UID %d, not on the server" % (r["id"], uid))
        h.check(st.read(r) == bodies[uid], "row %d (UID %d): committed file is not the message" % (r["id"], uid))
    return len(rows)


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-hangup")
    msgs = mailgen.generate(140, seed=81)
    dc.append("alice", "INBOX", [m.raw for m in msgs[:60]])
    total = sum(len(m.raw) for m in msgs[:60])
    direct = ctx.config([h.Account(*ACCT, dc.url("imaps"), "alice", "pw-hangup", ["INBOX"], dc.ca_pem,
                                   timeout=15)], name="direct.conf")
    st = h.Store(ctx.store_dir())

    # A: cut during the first sync.
    px = ctx.proxy(dc.ports["imaps"], cut_after=total // 2)
    cut = ctx.config([h.Account(*ACCT, px.url("imaps"), "alice", "pw-hangup", ["INBOX"], dc.ca_pem,
                                timeout=15)], name="cut.conf")
    r = h.maildisk("sync", cut, expect=1)
    h.check(px.cuts >= 1, "the proxy never cut the connection")
    h.check(r.err.strip() or r.out.strip(), "no error message after a hang-up")
    h.check("alice/work" in r.text, "the error does not name the account alice/work")
    h.check(not st.messages(state=h.TRASHED), "a hang-up trashed messages")
    n = committed_rows_are_exact(st, dc)
    h.log("%d of 60 messages committed before the hang-up" % n)
    h.check(n < 60, "all messages committed although the connection was cut half way")
    h.maildisk("sync", direct, expect=0)
    h.assert_folder_matches(st, dc, *ACCT, "INBOX")
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)

    # B: cut while fetching new mail after a listing that lacks some UIDs.
    count = ctx.proxy(dc.ports["imaps"])
    counted = ctx.config([h.Account(*ACCT, count.url("imaps"), "alice", "pw-hangup", ["INBOX"], dc.ca_pem,
                                    timeout=15)], name="counted.conf")
    h.maildisk("sync", counted, expect=0)
    base = count.s2c          # bytes of a sync with nothing to fetch
    uids = dc.uids("alice", "INBOX")
    gone = uids[5:8]
    dc.expunge("alice", "INBOX", gone)
    dc.append("alice", "INBOX", [m.raw for m in msgs[60:140]])
    new_bytes = sum(len(m.raw) for m in msgs[60:140])
    px2 = ctx.proxy(dc.ports["imaps"], cut_after=base + new_bytes // 2)
    cut2 = ctx.config([h.Account(*ACCT, px2.url("imaps"), "alice", "pw-hangup", ["INBOX"], dc.ca_pem,
                                 timeout=15)], name="cut2.conf")
    r = h.maildisk("sync", cut2, expect=1)
    h.check(px2.cuts >= 1, "the proxy never cut the connection")
    h.check("alice/work" in r.text, "the error does not name the account alice/work")
    on_server = set(dc.uids("alice", "INBOX"))
    for t in st.messages(state=h.TRASHED):
        h.check(int(t["remote_id"]) not in on_server, "UID %s trashed although still on the server" % t["remote_id"])
    active = {int(x["remote_id"]): x for x in st.messages(*ACCT, "INBOX", state=h.ACTIVE)}
    lost = sorted(set(uids) - set(gone) - set(active))
    h.check(not lost, "UIDs lost their active row after a hang-up", lost[:10])
    fresh = sorted(u for u in active if u not in uids)
    h.log("%d of 80 new messages committed before the hang-up" % len(fresh))
    if fresh:
        bodies = dc.fetch_bodies("alice", "INBOX", ",".join(map(str, fresh)))
        for u in fresh:
            h.check(st.read(active[u]) == bodies.get(u), "UID %d: committed file is not the message" % u)
    h.maildisk("sync", direct, expect=0)
    h.assert_folder_matches(st, dc, *ACCT, "INBOX")
    trashed = sorted(int(t["remote_id"]) for t in st.messages(state=h.TRASHED))
    h.check(trashed == gone, "trashed after convergence", trashed, gone)
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)


if __name__ == "__main__":
    h.run(main, deadline=240)
