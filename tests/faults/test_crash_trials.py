#!/usr/bin/env python3
"""Crash trials: `maildisk sync` killed with SIGKILL at random moments.

Two series against a real private Dovecot, the moments drawn from a seeded
generator over the measured length of such a sync:
  first   a first sync of 600 messages into an empty store (two durable
          batches), killed;
  resync  after a complete sync, the server expunges some messages and
          gains others; the resync is killed (while it fetches, commits a
          batch, or moves the expunged ones to trash).
In a third of the trials the recovering sync is killed as well.

Right after each kill, before anything repairs the store:
  - every visible row's file exists with the row's size (the index never
    points at a half-written or missing message);
  - `maildisk check --store` runs and reports (exit 0 or 1, never a crash).
After a clean sync:
  - exactly the server's set: one visible row per server UID, none lost,
    none duplicated, a sample byte-exact; no file in tmp/; the cur/ files
    are exactly the visible rows' files;
  - the trash holds exactly the messages expunged upstream so far (first
    series: nothing);
  - `maildisk check --store` exits 0 (index and files agree).

MAILDISK_TRIALS (default 20 per series; 100 for the full run),
MAILDISK_SEED, MAILDISK_CRASH_MESSAGES (default 600)."""

import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, check, log  # noqa: E402

USER, ACCT, PW = "alice", "work", "pw-crash"


def killed_sync(ctx, cfg, delay, logf):
    """Starts `maildisk sync`, kills it with SIGKILL after delay seconds.
    Returns True if it was killed, False if it had finished."""
    p = ctx.popen([H.maildisk_path(), "sync", "-c", cfg], stdout=logf, stderr=subprocess.STDOUT,
                  stdin=subprocess.DEVNULL, env=H.maildisk_env())
    try:
        p.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        pass
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    return True


def index_points_at_whole_files(st):
    """After a crash: every visible row's file is whole, in cur/ or, when the
    crash fell inside a move to trash (files move first, then the rows are
    marked in one transaction: store_trash), already in trash/, where the
    next start's recovery marks the row. Returns how many were caught so."""
    mid_trash = 0
    for r in F.visible_rows(st):
        p = st.path(r["store_file"])
        if not os.path.exists(p):
            t = "trash/%s/%s" % (r["f_path"][len("mail/"):], os.path.basename(r["store_file"]))
            check(os.path.exists(st.path(t)), "after a kill, row %d points at %s, which is neither there nor "
                  "in trash/" % (r["id"], r["store_file"]))
            p = st.path(t)
            mid_trash += 1
        size = os.path.getsize(p)
        check(size == r["size"], "after a kill, row %d has size %d but its file %d bytes" % (
            r["id"], r["size"], size))
    return mid_trash


def check_store_cmd(cfg, expect):
    r = H.maildisk("check", cfg, "--store", expect=expect)
    return r


def final_checks(st, dc, cfg, expunged, what):
    rows = H.assert_folder_matches(st, dc, USER, ACCT, "INBOX", sample=30)
    files = [r["store_file"] for r in st.messages()]
    check(len(files) == len(set(files)), "%s: two rows share a file" % what)
    H.assert_no_tmp(st)
    H.assert_cur_matches_rows(st)
    trashed = st.messages(state=F.TRASHED)
    server = set(dc.uids(USER, "INBOX"))
    for t in trashed:
        check(int(t["remote_id"]) not in server, "%s: UID %s is trashed but on the server" % (what, t["remote_id"]))
    got = sorted(int(t["remote_id"]) for t in trashed)
    check(got == sorted(expunged), "%s: trash differs from what was expunged" % what,
          "trashed", got[:20], "expunged", sorted(expunged)[:20])
    r = check_store_cmd(cfg, expect=None)
    check(r.rc == 0, "%s: maildisk check --store exit %d after a clean sync" % (what, r.rc), r.text[-1500:])
    return len(rows)


def series(ctx, rng, seed, dc, kind, n_trials, n_msgs, pool, stats):
    cfg = ctx.config([H.Account(USER, ACCT, dc.url("imaps"), USER, PW, ["INBOX"], dc.ca_pem, timeout=20)],
                     name="%s.conf" % kind, store=ctx.store_dir(kind))
    st = H.Store(ctx.store_dir(kind))
    logf = open(os.path.join(ctx.tmp, "%s-killed.log" % kind), "ab")
    expunged = []
    # The length of a clean sync of this kind, to draw the moments from.
    t0 = time.monotonic()
    H.maildisk("sync", cfg, expect=0, timeout=300)
    first = time.monotonic() - t0
    next_msg = n_msgs
    for trial in range(1, n_trials + 1):
        if kind == "first":
            shutil.rmtree(ctx.store_dir(kind))
            span = first * 1.2
        else:
            uids = dc.uids(USER, "INBOX")
            gone = rng.sample(uids, rng.randint(10, 60))
            add = [pool[(next_msg + i) % len(pool)].raw for i in range(rng.randint(10, 80))]
            next_msg += len(add)
            dc.expunge(USER, "INBOX", gone)
            dc.append(USER, "INBOX", add)
            expunged += gone
            span = 0.15 + first * 1.5 * (len(add) + len(gone) / 4) / n_msgs
        delay = rng.uniform(0, span)
        again = rng.random() < 1 / 3
        log("---- %s trial %d/%d (seed %d): kill after %.3fs of ~%.2fs%s" % (
            kind, trial, n_trials, seed, delay, span, ", and the recovering sync too" if again else ""))
        killed = killed_sync(ctx, cfg, delay, logf)
        stats["kills"] += killed
        stats["finished"] += not killed
        if killed:
            stats["mid_trash"] += index_points_at_whole_files(st) > 0
            r = check_store_cmd(cfg, expect=(0, 1))
            stats["check_disagreed"] += r.rc == 1
        if again:
            d2 = rng.uniform(0, span)
            if killed_sync(ctx, cfg, d2, logf):
                stats["kills"] += 1
                stats["mid_trash"] += index_points_at_whole_files(st) > 0
        H.maildisk("sync", cfg, expect=0, timeout=300)
        n = final_checks(st, dc, cfg, expunged if kind == "resync" else [], "%s trial %d" % (kind, trial))
        stats["trials"] += 1
        log("  clean: %d messages, %d trashed, check --store agrees" % (n, len(st.messages(state=F.TRASHED))))
    logf.close()
    return first


def main(ctx):
    rng, seed = F.rng("crash trials")
    n_trials = F.trials(20)
    n_msgs = int(os.environ.get("MAILDISK_CRASH_MESSAGES", "600"))
    pool = F.mailgen.generate(n_msgs + 100 * n_trials, seed=seed % 100000, max_size=12000)
    dc = ctx.dovecot()
    dc.add_user(USER, PW)
    dc.append(USER, "INBOX", [m.raw for m in pool[:n_msgs]])
    stats = {"kills": 0, "finished": 0, "check_disagreed": 0, "trials": 0, "mid_trash": 0}
    d1 = series(ctx, rng, seed, dc, "first", n_trials, n_msgs, pool, stats)
    log("first syncs take %.2fs" % d1)
    series(ctx, rng, seed, dc, "resync", n_trials, n_msgs, pool, stats)
    log("crash trials (seed %d): %d trials (%d first sync, %d resync), %d processes killed with SIGKILL, "
        "%d syncs finished before their kill, %d kills fell inside a move to trash; check --store saw a disagreement right after %d kills "
        "(repaired by the next sync); after every clean sync: 0 messages lost, 0 duplicated, nothing in "
        "tmp/, check --store agrees" % (seed, stats["trials"], n_trials, n_trials, stats["kills"],
                                        stats["finished"], stats["mid_trash"], stats["check_disagreed"]))


if __name__ == "__main__":
    # Longer runs (MAILDISK_TRIALS) get a deadline to match; meson's timeout
    # then needs its multiplier (meson test -t).
    H.run(main, deadline=int(os.environ.get("MAILDISK_TRIAL_DEADLINE", max(280, 8 * F.trials(20)))))
