#!/usr/bin/env python3
"""Hostile servers and a full disk: one reply must not take the daemon down,
fill the disk or hold a worker forever.

Each IMAP scenario runs through test_fake_imap.run_scenario: a clean first
sync, a change on the server (3 expunged, 15 new), then the hostile answer
and `maildisk sync`, which must end within its time with a message naming
what broke, trash nothing, leave tmp/ empty and every file byte-exact; then
a clean sync converges. On top of that, each records and bounds:
  - peak RSS (VmHWM) <= 64 MiB (not checked under ASan);
  - bytes written under the store <= what the clean mail needs + 1 MiB;
  - the time to the end.
The other scenarios need their own setup: SIGTERM obeyed within 2 s while a
server stalls (in the middle of a message, and before its greeting); the
free-space floor ([store] min_free); a disk that really fills up (a small
tmpfs); and max_message_size for POP3 RETR.

Usage: test_hostile.py [GROUP], GROUP one of imap, local (default: both).
MAILDISK_FAULTS=name,name runs only those scenarios."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
import test_fake_imap as T  # noqa: E402
from faultlib import H, Fault, check, log  # noqa: E402

RSS_LIMIT_KB = 64 * 1024
BOUND_SECONDS = T.TIMEOUT + 4
REPORT = []                      # (scenario, rc, seconds, rss KiB, bytes written, last log line)


def store_bytes(store):
    total = 0
    for root, _dirs, files in os.walk(store):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def bounded(name):
    """check_after: RSS and disk within bounds; the figures go to the report."""
    def chk(ctx, srv, st, res):
        written = store_bytes(st.root) - chk.before
        took = time.monotonic() - chk.t0
        REPORT.append((name, res.rc, took, res.rss, written, res.err.strip().splitlines()[-1:]))
        check(written <= (1 << 20) + 64 * 1024, "%s: %d bytes written to the store by the hostile run" % (
            name, written))
        if F.sanitized():
            log("  peak RSS %d KiB (ASan build: not checked)" % res.rss)
            return
        check(res.rss <= RSS_LIMIT_KB, "%s: peak RSS %d KiB (limit %d KiB)" % (name, res.rss, RSS_LIMIT_KB))
    chk.before = 0
    chk.t0 = 0
    return chk


def stream_until_closed(conn, first, chunk, seconds=30, limit=600 << 20):
    """Sends first, then chunk again and again until the client hangs up
    (or seconds or limit bytes have passed: the test's own bound)."""
    end = time.monotonic() + seconds
    sent = 0
    try:
        conn.send(first)
        while time.monotonic() < end and sent < limit:
            conn.send(chunk)
            sent += len(chunk)
    except OSError:
        pass
    log("  fake IMAP: streamed %d MiB before the client hung up" % (sent >> 20))
    raise F.Hangup()


def esearch_everything(conn, tag):
    conn.send(b'* ESEARCH (TAG "' + tag + b'") UID ALL 1:4294967295\r\n' + tag + b" OK done\r\n")


def search_endless(conn, tag):
    stream_until_closed(conn, b"* SEARCH", b"".join(b" %d" % u for u in range(1, 20001)))


def endless_line(conn, tag):
    stream_until_closed(conn, b"* OK ", b"x" * 65536)


def endless_tokens(conn, tag):
    stream_until_closed(conn, b"* FLAGS (", b"a " * 32768)


def body_over_size(srv):
    f = srv.folders["INBOX"]
    uid = f.uids()[-1]

    def produce(conn, tag):
        stream_until_closed(conn, b"* %d FETCH (UID %d RFC822.SIZE 100 BODY[] {5000000}\r\n" % (
            len(f.msgs), uid), b"y" * 65536, limit=5000000)
    return Fault("UID FETCH", "custom", produce=produce)


def trickle(conn, tag):
    """One byte a second, for ever: each read is quick, progress is nil."""
    end = time.monotonic() + 30
    try:
        for b in b"* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[] {100000}\r\n" * 100:
            if time.monotonic() > end:
                break
            conn.send(bytes([b]))
            time.sleep(1)
    except OSError:
        pass
    raise F.Hangup()


def examine_flood(line):
    """EXAMINE (QRESYNC ...) answered with the folder's state, then the
    same changed-message line for ever."""
    def make(srv):
        f = srv.folders["INBOX"]

        def produce(conn, tag):
            head = (b"* %d EXISTS\r\n* OK [UIDVALIDITY %d] x\r\n* OK [UIDNEXT %d] x\r\n"
                    b"* OK [HIGHESTMODSEQ %d] x\r\n" % (len(f.msgs), f.uidvalidity, f.uidnext, f.modseq + 5))
            stream_until_closed(conn, head, line * 2000)
        return Fault("EXAMINE", "custom", produce=produce)
    return make


def many_folders(n):
    def produce(conn, tag):
        lines = [b'* LIST (\\HasNoChildren) "/" "INBOX"']
        lines += [b'* LIST (\\HasNoChildren) "/" "f%05d"' % i for i in range(n)]
        try:
            conn.send(b"\r\n".join(lines) + b"\r\n" + tag + b" OK List completed\r\n")
        except OSError:
            raise F.Hangup()
    return produce


S = T.Scenario
ESEARCH = ("ESEARCH",)
IMAP = [
    S("esearch_all_uids", Fault("UID SEARCH", "custom", produce=esearch_everything), caps=ESEARCH,
      log_re=r"UID SEARCH: 127\.0\.0\.1 listed more than \d+ UIDs for a folder of \d+ messages",
      max_seconds=BOUND_SECONDS),
    S("search_endless_numbers", Fault("UID SEARCH", "custom", produce=search_endless),
      log_re=r"UID SEARCH: 127\.0\.0\.1 listed more than \d+ UIDs", max_seconds=BOUND_SECONDS),
    # VANISHED naming every UID: intersected with what is known, never
    # expanded; UIDs past UIDNEXT make it untrusted, so all UIDs are listed
    # and only the truly expunged go.
    S("vanished_all_uids", Fault("EXAMINE", "vanished", set="1:4294967295"), caps=T.QRESYNC,
      expect_rc=0, legit=True, log_re=r"expunged UIDs at or beyond UIDNEXT", max_seconds=BOUND_SECONDS),
    S("qresync_flag_flood", examine_flood(b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (9))\r\n"),
      caps=T.QRESYNC, log_re=r"FETCH: 127\.0\.0\.1 reported flag changes for more messages than the folder",
      max_seconds=BOUND_SECONDS),
    S("qresync_vanished_flood", examine_flood(b"* VANISHED (EARLIER) 1,3,5,7,9,11,13,15,17,19\r\n"),
      caps=T.QRESYNC, log_re=r"VANISHED: 127\.0\.0\.1 reported more than \d+ separate UID ranges",
      max_seconds=BOUND_SECONDS + 10),
    S("endless_line", Fault("UID SEARCH", "custom", produce=endless_line),
      log_re=r"UID SEARCH: 127\.0\.0\.1 sent a response line longer than 4 MiB", max_seconds=BOUND_SECONDS),
    S("endless_tokens", Fault("UID SEARCH", "custom", produce=endless_tokens),
      log_re=r"UID SEARCH: 127\.0\.0\.1 sent a response line .*more than 65536 tokens",
      max_seconds=BOUND_SECONDS),
    S("endless_literal", Fault("UID FETCH", "huge", size=999999999999, send=8 << 20),
      log_re=r"literal of 999999999999 bytes, larger than max_message_size \(268435456 bytes\)",
      max_seconds=BOUND_SECONDS),
    S("body_over_rfc822_size", body_over_size,
      log_re=r"announced a body of 5000000 bytes for a message of 100 bytes \(RFC822\.SIZE\)",
      max_seconds=BOUND_SECONDS),
    S("trickle", Fault("UID FETCH", "custom", produce=trickle),
      log_re=r"UID FETCH: the server sent only \d+ bytes in %d s" % T.TIMEOUT, max_seconds=BOUND_SECONDS),
    S("too_many_folders", Fault("LIST", "custom", produce=many_folders(10050)),
      log_re=r"LIST: 127\.0\.0\.1 lists more than 10000 folders", max_seconds=BOUND_SECONDS),
]
for sc in IMAP:
    sc.check_after = bounded(sc.name)


def run_imap(ctx, sc):
    """One IMAP scenario, bounded: what the clean mail needs is measured by
    the scenario's own baseline; the hostile run may add at most 1 MiB to it."""
    sc.check_after.t0 = time.monotonic()
    orig_setup = sc.setup

    def setup(srv, sc=sc, orig=orig_setup):
        (orig or T.default_change)(srv)
        sc.check_after.before = store_bytes(os.path.join(ctx.tmp, sc.name, "store"))
        sc.check_after.t0 = time.monotonic()
    sc.setup = setup
    try:
        return T.run_scenario(ctx, sc, None)
    finally:
        sc.setup = orig_setup


# ---------------------------------------------------------------- local

def sigterm_while_stalled(ctx, where):
    """maildisk sync against a server that stalls (timeout = 60 s) gets
    SIGTERM: it must end within 2 s, record the run as interrupted and
    trash nothing; a clean sync then converges."""
    srv = F.FakeImap(T.USER, T.PW)
    try:
        cfg, st = F.scenario_store(ctx, "sigterm-" + where, srv, T.USER, T.ACCT, T.PW)
        srv.folders["INBOX"].add([m.raw for m in T.MSGS[:T.BASE]])
        if where == "greeting":
            H.maildisk("sync", cfg, expect=0)
            T.default_change(srv)
            fault = srv.arm(Fault("GREETING", "stall", at="start", seconds=40))
        else:
            fault = srv.arm(Fault("UID FETCH", "stall", at="mid_literal", literal=5, seconds=40))
        p = ctx.popen([H.maildisk_path(), "sync", "-c", cfg], stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE, env=H.maildisk_env())
        # at the greeting maildisk waits as soon as the server has it; in a
        # message, once the 5 messages before it and half of it are in tmp/
        H.wait_for(lambda: fault.fired, 20, "the stall to start")
        if where == "message":
            H.wait_for(lambda: len(st.tmp_files()) >= 6, 20, "5 whole files and a half-written one in tmp/")
        took, err = F.sigterm_sync(p, "the server stalled at the " + where)
        REPORT.append(("sigterm_" + where, p.returncode, took, 0, 0, err.strip().splitlines()[-1:]))
        check(not st.messages(state=F.TRASHED), "a stopped sync trashed messages")
        check(not st.tmp_files(), "a stopped sync left files in tmp/", st.tmp_files()[:3])
        srv.disarm()
        H.maildisk("sync", cfg, expect=0)
        F.imap_converged(st, srv, T.USER, T.ACCT)
    finally:
        srv.close()


def min_free_floor(ctx):
    """[store] min_free above what the filesystem has: the sync stops with
    a clear error in status, stores and trashes nothing, loses nothing; once
    the floor is lowered (space is back) the next sync converges."""
    tmp = os.path.join(ctx.tmp, "min-free")
    os.mkdir(tmp, 0o700)
    srv = F.FakeImap(T.USER, T.PW)
    try:
        store = os.path.join(tmp, "store")
        acct = F.account(T.USER, T.ACCT, srv.url(), T.PW)
        cfg = os.path.join(tmp, "maildisk.conf")
        F.write_config(cfg, store, [acct])
        st = H.Store(store)
        srv.folders["INBOX"].add([m.raw for m in T.MSGS[:T.BASE]])
        H.maildisk("sync", cfg, expect=0)
        T.default_change(srv)
        F.write_config(cfg, store, [acct], extra_store={"min_free": "1000T"})
        r = H.maildisk("sync", cfg, expect=1)
        log("  " + r.err.strip().splitlines()[-1])
        check(F.re.search(r"alice/fake INBOX: the store's filesystem \(.*\) has \d+ MiB free, at or "
                          r"below min_free \(\d+ MiB\): syncing is paused", r.err), "no clear min_free error",
              r.err[-800:])
        check(not st.messages(state=F.TRASHED), "trashed while below the free-space floor")
        check(not st.tmp_files(), "files left in tmp/ below the floor")
        s = H.maildisk("status", cfg, expect=(0, 1))
        check("min_free" in s.text, "maildisk status does not show the min_free stop", s.text[-1200:])
        REPORT.append(("min_free", r.rc, 0, 0, 0, r.err.strip().splitlines()[-1:]))
        F.write_config(cfg, store, [acct], extra_store={"min_free": "1M"})
        H.maildisk("sync", cfg, expect=0)
        F.imap_converged(st, srv, T.USER, T.ACCT)
    finally:
        srv.close()


def disk_full(ctx):
    """A disk that really fills up (an 8 MiB tmpfs, min_free 4K, so the
    writes themselves fail): the sync stops with a clear error, keeps only
    complete messages with their rows (check --store agrees), leaves tmp/
    empty and trashes nothing; once there is room the next sync converges."""
    tmp = os.path.join(ctx.tmp, "disk-full")
    disk = os.path.join(tmp, "disk")
    os.makedirs(disk, 0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M,mode=0700", "maildisk-test", disk], check=True)
    srv = F.FakeImap(T.USER, T.PW)
    try:
        store = os.path.join(disk, "store")
        acct = F.account(T.USER, T.ACCT, srv.url(), T.PW)
        cfg = os.path.join(tmp, "maildisk.conf")
        F.write_config(cfg, store, [acct], extra_store={"min_free": "4K"})
        st = H.Store(store)
        srv.folders["INBOX"].add([m.raw for m in F.mailgen.generate(1500, seed=733, min_size=2000, max_size=8000)])
        r = H.maildisk("sync", cfg, expect=1)
        log("  " + r.err.strip().splitlines()[-1])
        check(F.re.search(r"alice/fake INBOX: .*(No space left on device|disk is full|min_free)", r.err),
              "no clear error for the full disk", r.err[-800:])
        rows = F.visible_rows(st, T.USER, T.ACCT, "INBOX")
        want = srv.folders["INBOX"].by_uid()
        check(0 < len(rows) < len(want), "expected part of the mail stored before the disk filled", len(rows))
        for row in rows:
            check(st.read(row) == want[int(row["remote_id"])], "UID %s: file is not the message" % row["remote_id"])
        check(not st.messages(state=F.TRASHED), "trashed while the disk was full")
        check(not st.tmp_files(), "files left in tmp/ on the full disk", st.tmp_files()[:5])
        H.maildisk("check", cfg, "--store", expect=0)
        REPORT.append(("disk_full", r.rc, 0, 0, store_bytes(store), r.err.strip().splitlines()[-1:]))
        subprocess.run(["mount", "-o", "remount,size=64M", disk], check=True)
        H.maildisk("sync", cfg, expect=0)
        F.imap_converged(st, srv, T.USER, T.ACCT)
        H.maildisk("check", cfg, "--store", expect=0)
    finally:
        srv.close()
        subprocess.run(["umount", disk])


def pop3_too_big(ctx):
    """A POP3 message larger than max_message_size: refused while it
    arrives, no more than max_message_size written, nothing stored from
    the cut transfer, the other messages kept; raising the limit converges."""
    tmp = os.path.join(ctx.tmp, "pop3-big")
    os.mkdir(tmp, 0o700)
    srv = F.FakePop3(T.USER, T.PW)
    try:
        store = os.path.join(tmp, "store")
        acct = F.account(T.USER, "pop", srv.url(), T.PW, folders=())
        cfg = os.path.join(tmp, "maildisk.conf")
        small = [m.raw for m in T.MSGS[:5]]
        big = T.MSGS[5].raw.replace(b"\r\n\r\n", b"\r\n\r\n" + b"z" * 998 + b"\r\n", 1)
        big = big + (b"z" * 998 + b"\r\n") * 600        # about 600 KB
        srv.add(small + [big])
        F.write_config(cfg, store, [acct], extra_sync={"max_message_size": "256K"})
        st = H.Store(store)
        rc, out, err, rss = F.run_measured([H.maildisk_path(), "sync", "-c", cfg], timeout=60)
        log("  POP3 over max_message_size: exit %d, peak RSS %d KiB" % (rc, rss))
        REPORT.append(("pop3_max_message_size", rc, 0, rss, store_bytes(store), err.strip().splitlines()[-1:]))
        check(rc == 1, "exit %d, expected 1" % rc, err[-800:])
        check(F.re.search(r"a message from 127\.0\.0\.1 is larger than max_message_size \(262144 bytes\)", err),
              "no clear max_message_size error", err[-800:])
        check(len(F.visible_rows(st)) == 5, "the messages before the big one were not kept",
              len(F.visible_rows(st)))
        check(not st.tmp_files(), "the cut message stayed in tmp/")
        F.write_config(cfg, store, [acct], extra_sync={"max_message_size": "1M"})
        H.maildisk("sync", cfg, expect=0)
        F.pop3_converged(st, srv, T.USER, "pop")
    finally:
        srv.close()


LOCAL = {
    "sigterm_mid_message": lambda ctx: sigterm_while_stalled(ctx, "message"),
    "sigterm_at_greeting": lambda ctx: sigterm_while_stalled(ctx, "greeting"),
    "min_free": min_free_floor,
    "disk_full": disk_full,
    "pop3_max_message_size": pop3_too_big,
}


def main(ctx):
    group = sys.argv[1] if len(sys.argv) > 1 else "all"
    runs = []
    if group in ("all", "imap"):
        runs += [(sc.name, lambda sc=sc: run_imap(ctx, sc)) for sc in IMAP]
    if group in ("all", "local"):
        runs += [(name, lambda fn=fn: fn(ctx)) for name, fn in LOCAL.items()]
    _ran, _injected, failed = F.run_each(runs)
    log("hostile scenarios: scenario, exit, seconds, peak RSS KiB, bytes written, last line")
    for name, rc, took, rss, written, last in REPORT:
        log("  %-24s exit %d  %5.2f s  %6d KiB  %8d B  %s" % (name, rc, took, rss, written,
                                                            (last[0] if last else "")[:160]))
    check(not failed, "%d hostile scenarios failed" % len(failed), *["\n  " + f for f in failed])


if __name__ == "__main__":
    H.run(main, deadline=280)
