#!/usr/bin/env python3
"""A folder deleted on the server (or no longer listed) keeps its local
messages: nothing is trashed, and `maildisk status` says why."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-del")
    msgs = mailgen.generate(20, seed=8, max_size=8000)
    dc.append("alice", "INBOX", [m.raw for m in msgs[:10]])
    dc.append("alice", "Projects", [m.raw for m in msgs[10:]])
    acct = h.Account("alice", "work", dc.url("imaps"), "alice", "pw-del", ("*",), dc.ca_pem)
    cfg = ctx.config([acct])
    h.maildisk("sync", cfg, expect=0)
    st = h.Store(ctx.store_dir())
    before = st.messages("alice", "work", "Projects", h.ACTIVE)
    h.check(len(before) == 10, "Projects rows after the first sync", len(before))

    dc.doveadm("mailbox", "delete", "-u", "alice", "Projects")
    h.check("Projects" not in dc.folders("alice"), "test setup: Projects still on the server")
    h.maildisk("sync", cfg, expect=0)
    after = st.messages("alice", "work", "Projects", h.ACTIVE)
    h.check(len(after) == 10, "messages of a deleted folder were removed locally", len(after))
    h.check(not st.messages(state=h.TRASHED), "something was trashed")
    h.assert_cur_matches_rows(st)
    r = h.maildisk("status", cfg, expect=0)
    h.check("no longer lists this folder" in r.out, "status does not explain the folder", r.out)


if __name__ == "__main__":
    h.run(main, deadline=120)
