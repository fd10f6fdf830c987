#!/usr/bin/env python3
"""kill -9 in the middle of a first sync, twice, then a sync that finishes.

2000 messages are fetched through a throttling proxy so the sync is surely
still fetching when the first message files appear (the test polls the
store, it does not sleep a fixed time). The first kill comes as soon as any
message file exists, the second after more files than at the first kill.
The final sync, direct, must leave exactly the server's set: one active
row per UID, byte-exact (sampled), nothing in tmp/, no file in cur/ without
a row, nothing trashed."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

N = 2000
RATE = 6 * 1024 * 1024     # bytes/s through the proxy: ~20 MB take a few seconds


def count_files(st):
    n_tmp = n_cur = 0
    for p in st.files(("mail",)):
        if "/tmp/" in p:
            n_tmp += 1
        elif "/cur/" in p or "/new/" in p:
            n_cur += 1
    return n_tmp, n_cur


def sync_and_kill(ctx, cfg, st, enough, timeout=120):
    """Starts a sync and kills it with SIGKILL once enough(n_tmp, n_cur)
    holds. Returns True if killed, False if it finished first."""
    argv = [h.maildisk_path(), "sync", "-c", cfg]
    h.log("$ %s  (to be killed)" % " ".join(argv))
    log = open(os.path.join(ctx.tmp, "killed-sync.log"), "ab")
    p = ctx.popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                  env=h.maildisk_env())
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            h.log("  sync finished (exit %d) before the kill condition" % p.returncode)
            return False
        n_tmp, n_cur = count_files(st)
        if enough(n_tmp, n_cur):
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            h.log("  killed pid %d with %d files in tmp/, %d in cur/, %d rows" % (
                p.pid, n_tmp, n_cur, len(st.messages())))
            return True
        time.sleep(0.005)
    raise h.Failure("sync neither finished nor reached the kill condition in %ds" % timeout)


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-crash")
    msgs = mailgen.generate(N, seed=71, max_size=60000)
    t0 = time.monotonic()
    uids = dc.append("alice", "INBOX", [m.raw for m in msgs])
    h.log("appended %d messages (%d bytes) in %.1fs" % (len(uids), sum(len(m.raw) for m in msgs),
                                                       time.monotonic() - t0))
    px = ctx.proxy(dc.ports["imaps"], rate=RATE)
    slow = ctx.config([h.Account("alice", "work", px.url("imaps"), "alice", "pw-crash", ["INBOX"], dc.ca_pem)],
                      name="slow.conf")
    direct = ctx.config([h.Account("alice", "work", dc.url("imaps"), "alice", "pw-crash", ["INBOX"], dc.ca_pem)],
                        name="direct.conf")
    st = h.Store(ctx.store_dir())

    killed = sync_and_kill(ctx, slow, st, lambda t, c: t + c > 0)
    h.check(killed, "the first sync finished before any file appeared: cannot test a crash")
    _, cur1 = count_files(st)
    killed2 = sync_and_kill(ctx, slow, st, lambda t, c: c > cur1 + 150)
    if not killed2:
        h.log("second sync finished before the second kill; the first kill is still tested")

    h.maildisk("sync", direct, expect=0, timeout=180)
    rows = h.assert_folder_matches(st, dc, "alice", "work", "INBOX", sample=300)
    h.check(len(rows) == N, "rows after recovery", len(rows))
    h.check(len(st.messages()) == N, "extra rows after recovery", len(st.messages()))
    h.check(not st.messages(state=h.TRASHED), "recovery trashed messages")
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)
    # Every row's size matches its file (no half-written file was adopted).
    for r in st.messages():
        size = os.path.getsize(st.path(r["store_file"]))
        h.check(size == r["size"], "row %d: size %d, file %d" % (r["id"], r["size"], size))


if __name__ == "__main__":
    h.run(main, deadline=360)
