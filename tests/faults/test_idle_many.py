#!/usr/bin/env python3
"""Push for many accounts from one event loop (issue 11): 200 IMAPS
accounts on the private Dovecot under one `maildisk mount` with
interval = 3600, beside two hostile fake servers whose IDLE goes wrong:
one sends half a line and stalls, one sends an endless line. Proves:

  - every account idles, and the daemon runs at most 32 threads (it used
    to run one per account) within 128 MB;
  - mail delivered to any of the accounts is visible in the mount within
    2 s, the stalled server notwithstanding (the loop reads only what has
    arrived);
  - the endless line gets its connection dropped and retried after a
    back-off;
  - SIGTERM ends the daemon within 2 s, with every connection open.

MAILDISK_IDLE_ACCOUNTS changes the 200 (scripts/bench --idle measures
1,000 and more)."""
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import faultlib as F  # noqa: E402
from faultlib import Fault, H, check, log  # noqa: E402

N = int(os.environ.get("MAILDISK_IDLE_ACCOUNTS", "200"))
PW = "pw-idle"
MAX_THREADS = 32
MAX_RSS_KB = 128 * 1024


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()[0] if v.split() else ""
    return out


def stall_idle(conn, tag):
    """IDLE accepted, then half a response, then nothing."""
    conn.send(b"+ idling\r\n* 1 EXI")
    time.sleep(300)
    raise F._Hangup()


def endless_idle(conn, tag):
    """IDLE accepted, then one line that never ends."""
    conn.send(b"+ idling\r\n* OK " + b"x" * (256 * 1024))
    time.sleep(300)
    raise F._Hangup()


def files_under(d):
    return sum(len(f) for _, _, f in os.walk(d))


def idle_commands(srv):
    return sum(1 for c in srv.commands if c.startswith("IDLE"))


def main(ctx):
    ml = F.mountlib()
    if ml is None or not os.path.exists("/dev/fuse"):
        raise H.Skip("no FUSE here")
    if os.geteuid() != 0:
        raise H.Skip("needs root (the private Dovecot)")
    # Several sessions per imap process: one inotify instance each, and
    # the kernel's default allows 128 per user (beyond, Dovecot polls).
    dc = ctx.dovecot(connections=N + 50, imap_client_limit=50)
    users = ["u%03d" % i for i in range(N)]
    for u in users:
        dc.users[u] = PW
    dc.add_user(users[0], PW)      # writes the passwd-file once for all
    stall = F.FakeImap("stall", "pw-fake", caps=("IDLE",))
    endless = F.FakeImap("endless", "pw-fake", caps=("IDLE",))
    for srv in (stall, endless):
        ctx.stack.callback(srv.close)
    stall.arm(Fault("IDLE", "custom", produce=stall_idle))
    endless.arm(Fault("IDLE", "custom", produce=endless_idle))

    accounts = [H.Account(u, "work", dc.url("imaps"), u, PW, ("INBOX",), dc.ca_pem, timeout=30,
                          extra={"interval": "3600"}) for u in users]
    accounts += [F.account(srv.user, "work", srv.url(), "pw-fake", timeout=30, interval="3600")
                 for srv in (stall, endless)]
    cfg = ctx.config(accounts)
    store = H.Store(ctx.store_dir())
    mp = os.path.join(ctx.tmp, "mnt")
    m = ml.Mount(ctx, cfg, mp, args=["-v"]).start()
    t_start = time.monotonic()
    ml.wait_synced(store, [(a.user, "work") for a in accounts], timeout=120)
    log("first syncs of %d accounts done in %.1f s" % (len(accounts), time.monotonic() - t_start))
    H.wait_for(lambda: m.log_text().count(": IDLE on INBOX") >= N + 2, 60,
               "all %d accounts in IDLE" % N, interval=0.2)
    H.wait_for(lambda: idle_commands(stall) >= 1, 30, "the stalling server's IDLE")
    log("all %d accounts idle %.1f s after the mount" % (N, time.monotonic() - t_start))

    st = proc_status(m.pid)
    threads, rss, hwm = int(st["Threads"]), int(st["VmRSS"]), int(st["VmHWM"])
    log("daemon: %d threads, VmRSS %d kB, VmHWM %d kB, %d accounts in IDLE" % (
        threads, rss, hwm, N))
    check(threads <= MAX_THREADS, "%d threads for %d accounts, expected at most %d" % (
        threads, N, MAX_THREADS))
    if F.sanitized():
        log("NOTE: ASan build: its memory use means nothing, the RSS check is skipped")
    else:
        check(hwm <= MAX_RSS_KB, "VmHWM %d kB for %d accounts, expected at most %d" % (
            hwm, N, MAX_RSS_KB))

    # The endless line is dropped and the account comes back after its back-off.
    H.wait_for(lambda: idle_commands(endless) >= 2, 30,
               "the endless line's connection dropped and made again")

    raws = [b"From: push@example.org\r\nTo: u@example.org\r\nSubject: push %d\r\n"
            b"Message-ID: <push-%d@example.org>\r\n\r\nbody %d\r\n" % (i, i, i) for i in range(3)]
    for i, u in enumerate((users[0], users[N // 2], users[-1])):
        inbox = ml.folder_dir(mp, store.folder(u, "work", "INBOX"))
        before = files_under(inbox)
        t0 = time.monotonic()
        dc.append(u, "INBOX", raws[i])
        H.wait_for(lambda: files_under(inbox) > before, 10, "the new message of %s in the mount" % u,
                   interval=0.02)
        took = time.monotonic() - t0
        log("%s: delivered and visible in the mount in %.2f s" % (u, took))
        check(took <= 2.0, "%s: new mail visible after %.2f s, expected within 2 s" % (u, took))

    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    m.wait_exit(timeout=30)
    took = time.monotonic() - t0
    log("SIGTERM to exit with %d idle connections: %.2f s" % (N + 1, took))
    check(took <= 2.0, "the daemon took %.2f s to stop, expected within 2 s" % took)


if __name__ == "__main__":
    H.run(main, deadline=280)
