#!/usr/bin/env python3
"""Ending the daemon while it syncs: `fusermount3 -u` and SIGTERM in the
middle of a first sync (slowed by a throttling proxy) both end the process
cleanly (exit 0, unmounted) and leave the store consistent (nothing in
tmp/, every cur/ file has its row and every visible row its file); the next
run carries on and converges to the server. Then the daemon as a daemon
(no -f): it detaches, the store lock names its PID, `maildisk sync` asks it
to sync through that PID (the messages it expunges leave the mount with
their parts directories), and `fusermount3 -u` ends it. Last, a daemon
killed with SIGKILL leaves a dead mount (ENOTCONN); the next start
detaches it and mounts in its place."""

import errno
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as L  # noqa: E402
from mountlib import H, check, log  # noqa: E402

import mailgen  # noqa: E402

N = 240


def statfs_errno(path):
    """0 when statfs works, else its errno: statfs always reaches the
    daemon, where stat may be answered from the kernel's cache."""
    try:
        os.statvfs(path)
        return 0
    except OSError as e:
        return e.errno


def consistent(store, what):
    H.assert_no_tmp(store)
    H.assert_cur_matches_rows(store)
    n = len(store.messages("alice", "work", "INBOX", H.ACTIVE))
    log("%s: store consistent, %d of %d messages" % (what, n, N))
    return n


def stop_mid_sync(ctx, conf, store, px, mp, total, how):
    """Mounts, lets the proxy pass another sixth of the mail, then stops
    the daemon the given way. Returns the rows stored by then."""
    start_rows = len(store.messages("alice", "work", "INBOX", H.ACTIVE))
    mark = L.sync_marks(store).get(("alice", "work"), 0)
    m = L.Mount(ctx, conf, mp).start()
    goal = px.s2c + total // 6
    L.wait_for(lambda: px.s2c >= goal or m.proc.poll() is not None, 60,
               "the sync to pass %d bytes" % goal, interval=0.02)
    check(m.proc.poll() is None, "daemon exited on its own", m.log_text()[-2000:])
    unfinished = store.query("SELECT id FROM syncs WHERE finished_at IS NULL AND id > ?", mark)
    check(unfinished, "%s: no sync in flight at the moment of stopping; slow the proxy down" % how)
    t0 = time.monotonic()
    if how == "unmount":
        L.fusermount_u(mp)
    else:
        m.signal(signal.SIGTERM)
    m.wait_exit(timeout=60)
    log("%s: daemon gone %.2fs after the request" % (how, time.monotonic() - t0))
    check("sanitizer" not in m.log_text().lower(), "sanitizer output")
    n = consistent(store, "after " + how)
    check(n < N, "%s: the sync was not interrupted (all %d stored)" % (how, N))
    check(n >= start_rows, "rows went away", n, start_rows)
    return n


def main(ctx):
    L.require_fuse()
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-alice")
    msgs = mailgen.generate(N, seed=9, max_size=60000)
    dc.append("alice", "INBOX", [m.raw for m in msgs])
    total = sum(len(m.raw) for m in msgs)
    # About 12 s for the whole first sync: room to stop it twice midway.
    px = ctx.proxy(dc.ports["imaps"], rate=max(total // 12, 50000))
    conf = ctx.config([H.Account("alice", "work", px.url("imaps"), "alice", "pw-alice", ["INBOX"], dc.ca_pem)])
    store = H.Store(ctx.store_dir())
    mp = os.path.join(ctx.tmp, "mnt")

    stop_mid_sync(ctx, conf, store, px, mp, total, "unmount")
    stop_mid_sync(ctx, conf, store, px, mp, total, "SIGTERM")

    # ---- as a daemon, at full speed now
    px.rate = None
    marks = L.sync_marks(store)
    r = H.maildisk("mount", conf, mp, timeout=30, expect=0)
    L.wait_for(lambda: os.path.ismount(mp), 10, "the daemon's mount")
    lock = os.path.join(ctx.store_dir(), "lock")
    pid = L.wait_for(lambda: int(open(lock).read().split()[0] or 0), 10, "a PID in the lock file")

    def cleanup():
        if L.in_mount_table(mp):
            subprocess.run(["fusermount3", "-u", "-z", mp])
    ctx.stack.callback(cleanup)
    check(H.pid_alive(pid), "the lock file names PID %d, which is not running" % pid)
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        cmd = f.read().split(b"\0")
    check(cmd[1:3] == [b"mount", b"-c"] and os.path.basename(cmd[0]) == b"maildisk",
          "PID %d in the lock is not the daemon" % pid, cmd)
    L.wait_synced(store, [("alice", "work")], marks, timeout=120)
    H.assert_folder_matches(store, dc, "alice", "work", "INBOX", sample=40)
    inbox = L.folder_dir(mp, store.folder("alice", "work", "INBOX"))
    want = L.folder_listing(store, "alice", "work", "INBOX")
    got = set(os.listdir(inbox))
    check(got == want and len(L.messages_in(want)) == N, "listing after convergence",
          len(L.messages_in(want)), sorted(got ^ want)[:5])

    # `maildisk sync` beside the mount goes through the daemon's PID.
    expunged = dc.uids("alice", "INBOX")[:3]
    gone = {r["view_name"] for r in store.messages("alice", "work", "INBOX", H.ACTIVE)
            if int(r["remote_id"]) in expunged}
    gone |= {L.stem(r["view_name"]) for r in store.messages("alice", "work", "INBOX", H.ACTIVE)
             if int(r["remote_id"]) in expunged and r["n_parts"]}
    check(len(gone) > 3 and gone <= got, "the messages to expunge and their parts directories", gone)
    dc.expunge("alice", "INBOX", expunged)
    r = H.maildisk("sync", conf, timeout=120, expect=0)
    check(str(pid) in r.text, "maildisk sync did not ask the daemon", r.text)
    L.wait_for(lambda: len(L.messages_in(os.listdir(inbox))) == N - 3, 20,
               "the expunged messages to leave the mount")
    got = set(os.listdir(inbox))
    check(not (got & gone) and got == L.folder_listing(store, "alice", "work", "INBOX"),
          "listing after the expunge", sorted(got & gone))
    consistent(store, "after a sync through the daemon")

    L.fusermount_u(mp)
    L.wait_for(lambda: not H.pid_alive(pid), 60, "the daemon (pid %d) to exit after the unmount" % pid)
    check(not L.in_mount_table(mp), "still mounted")
    consistent(store, "after the daemon ended")

    # ---- a daemon killed outright leaves a dead mount behind (ENOTCONN,
    # where a restart's mkdir -p fails); the next start detaches it
    m = L.Mount(ctx, conf, mp).start()
    m.signal(signal.SIGKILL)
    m.proc.wait(30)
    check(statfs_errno(mp) == errno.ENOTCONN, "SIGKILL left no dead mount to test with", statfs_errno(mp))
    m2 = L.Mount(ctx, conf, mp).start()
    L.wait_for(lambda: statfs_errno(mp) == 0 and "detached it" in m2.log_text(), 20,
               "the new daemon to detach the dead mount and mount")
    check(L.mounts_at(mp) == 1, "mounts at %s: %d, want 1 (the dead one detached)" % (mp, L.mounts_at(mp)))
    check(len(L.messages_in(os.listdir(inbox))) == N - 3, "the listing through the new mount")
    m2.unmount()
    check(L.mounts_at(mp) == 0, "a mount is left at %s" % mp)


if __name__ == "__main__":
    H.run(main, deadline=330)
