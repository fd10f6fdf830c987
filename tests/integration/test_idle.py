#!/usr/bin/env python3
"""Push by IMAP IDLE (RFC 2177): inside `maildisk mount`, with a sync
interval of an hour and no SIGUSR1, new mail and an expunge upstream each
start a sync of that account within two seconds."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "mount"))
import harness as h  # noqa: E402
import mountlib as L  # noqa: E402


def wait_sync_after(store, mark, t0, what):
    rows = L.wait_synced(store, [("alice", "work")], mark, timeout=30)
    row = rows[("alice", "work")]
    started = row["started_at"]
    h.log("%s: sync started %.1f s after the change" % (what, started - t0))
    # started_at has whole seconds: allow the second the change fell in.
    h.check(started - int(t0) <= 2, "%s: the sync started %d s after the change, expected "
            "within 2 s (IDLE did not wake it)" % (what, started - int(t0)))


def main(ctx):
    L.require_fuse()
    dc = ctx.dovecot()
    msgs, (uids,) = dc.populate({"alice": "pw-idle"}, [("alice", "INBOX", 8)], 12, seed=5, max_size=10000)
    acct = h.Account("alice", "work", dc.url("imaps"), "alice", "pw-idle", ("INBOX",), dc.ca_pem,
                     extra={"interval": "3600"})
    cfg = ctx.config([acct])
    store = h.Store(ctx.store_dir())
    mp = os.path.join(ctx.tmp, "mnt")
    marks = L.sync_marks(store)
    m = L.Mount(ctx, cfg, mp).start()
    L.wait_synced(store, [("alice", "work")], marks)
    # The IDLE connection logs in beside the first sync: wait until it idles
    # (this waits for a connection, it triggers nothing).
    L.wait_for(lambda: dc.idle_sessions("alice"), 15, "maildisk's IDLE session")

    mark = L.sync_marks(store)
    t0 = time.time()
    new_uid = dc.append("alice", "INBOX", msgs[8].raw)
    wait_sync_after(store, mark, t0, "new mail")
    L.wait_for(lambda: any(r["remote_id"] == str(new_uid) for r in store.messages("alice", "work", "INBOX")),
               10, "the new message in the index")

    L.wait_for(lambda: dc.idle_sessions("alice"), 15, "maildisk's IDLE session after the sync")
    mark = L.sync_marks(store)
    t0 = time.time()
    dc.expunge("alice", "INBOX", uids[:1])
    wait_sync_after(store, mark, t0, "expunge")
    L.wait_for(lambda: len(store.messages("alice", "work", "INBOX", h.TRASHED)) == 1, 10,
               "the expunged message in trash")
    m.unmount()


if __name__ == "__main__":
    h.run(main, deadline=120)
