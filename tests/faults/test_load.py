#!/usr/bin/env python3
"""Readers under load: 8 threads walk and read the mount while the mount's
own sync fills it with a few thousand messages.

`maildisk mount -f` starts on an empty store whose first sync (3000
messages in two folders, through a proxy that throttles Dovecot to a few
MB/s so the sync lasts several seconds) runs inside the mount. From the
moment the mount is up until that sync has finished, 8 reader threads walk
the tree continuously: os.walk (readdir), stat, open + read to the end,
listxattr + getxattr. Then, phase two: 150 messages are expunged and 600
appended upstream, the mount's IDLE watcher starts a sync, `maildisk sync`
asks the mount to sync (SIGUSR1) while that runs, and the readers run
again until it returns; the store must then equal the server (a request
made during a running sync is not lost).

Every call is timed; afterwards:
  - no reader saw an error, except ENOENT in phase two for a name whose
    message was expunged upstream (a file that left the mount);
  - no partial message: for every read, the size stat gave equals the
    bytes read, and the bytes equal the store file the index names for
    that file (content hashes, checked after the sync);
  - no call took longer than 1 s.
Skipped (77) when the mount does not come up here."""

import errno
import hashlib
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, check, log  # noqa: E402

USER, PW = "alice", "pw-load"
N_INBOX, N_ARCHIVE = 2000, 1000
RATE = int(os.environ.get("MAILDISK_LOAD_RATE", str(4 * 1024 * 1024)))
READERS = 8
SLOW = 1.0


class Readers:
    def __init__(self, mp):
        self.mp = mp
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.reads = {}        # (relpath, sha256) -> (stat size, bytes read)
        self.errors = []       # (phase, op, relpath, errno, message)
        self.slow = []         # (seconds, op, relpath)
        self.calls = 0
        self.max = (0.0, "", "")
        self.walks = 0
        self.phase = 1

    def timed(self, op, rel, fn, *a):
        t0 = time.monotonic()
        try:
            return fn(*a)
        finally:
            d = time.monotonic() - t0
            with self.lock:
                self.calls += 1
                if d > self.max[0]:
                    self.max = (d, op, rel)
                if d > SLOW:
                    self.slow.append((d, op, rel))

    def error(self, op, rel, e):
        with self.lock:
            self.errors.append((self.phase, op, rel, getattr(e, "errno", None), str(e)))

    def read_file(self, path, rel):
        try:
            st = self.timed("stat", rel, os.stat, path)
            f = self.timed("open", rel, open, path, "rb")
        except OSError as e:
            self.error("open", rel, e)
            return
        h = hashlib.sha256()
        n = 0
        try:
            with f:
                while True:
                    b = self.timed("read", rel, f.read, 65536)
                    if not b:
                        break
                    h.update(b)
                    n += len(b)
            for a in self.timed("listxattr", rel, os.listxattr, path):
                self.timed("getxattr", rel, os.getxattr, path, a)
        except OSError as e:
            self.error("read", rel, e)
            return
        with self.lock:
            self.reads[(rel, h.digest())] = (st.st_size, n)

    def run(self):
        while not self.stop.is_set():
            it = os.walk(self.mp, onerror=lambda e: self.error("readdir", os.path.relpath(e.filename, self.mp), e))
            while True:
                try:
                    dp, dns, fns = self.timed("readdir", "", next, it)
                except StopIteration:
                    break
                for fn in fns:
                    if self.stop.is_set():
                        return
                    p = os.path.join(dp, fn)
                    self.read_file(p, os.path.relpath(p, self.mp))
            with self.lock:
                self.walks += 1

    def start(self):
        self.stop.clear()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(READERS)]
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
            check(not t.is_alive(), "a reader thread is stuck")


def store_hashes(st, mountlib, mp):
    """{path in the mount: sha256 of its store file} for visible rows, and
    {path: view name} of every row ever seen (to recognise expunged ones)."""
    out, every = {}, {}
    folders = {f["id"]: f for f in st.folders()}
    for r in st.messages():
        rel = os.path.relpath(os.path.join(mountlib.folder_dir(mp, folders[r["folder_id"]]), r["view_name"]), mp)
        every[rel] = r["state"]
        if r["state"] in (F.ACTIVE, F.RESTORED):
            with open(st.path(r["store_file"]), "rb") as f:
                out[rel] = hashlib.sha256(f.read()).digest()
    return out, every


def main(ctx):
    mountlib = F.mountlib()
    if mountlib is None or not os.path.exists("/dev/fuse"):
        raise F.Skip("no FUSE mount here")
    dc = ctx.dovecot()
    dc.add_user(USER, PW)
    msgs = F.mailgen.generate(N_INBOX + N_ARCHIVE + 600, seed=909, max_size=12000)
    t0 = time.monotonic()
    F.deliver(dc, USER, "INBOX", [m.raw for m in msgs[:N_INBOX]])
    F.deliver(dc, USER, "Archive", [m.raw for m in msgs[N_INBOX:N_INBOX + N_ARCHIVE]])
    check(len(dc.uids(USER, "INBOX")) == N_INBOX, "Dovecot did not pick up the delivered messages")
    log("%d messages appended in %.1fs" % (N_INBOX + N_ARCHIVE, time.monotonic() - t0))
    px = ctx.proxy(dc.ports["imaps"], rate=RATE)
    cfg = ctx.config([H.Account(USER, "work", px.url("imaps"), USER, PW, ["INBOX", "Archive"], dc.ca_pem,
                                timeout=60)])
    st = H.Store(ctx.store_dir())
    mp = os.path.join(ctx.tmp, "mnt")
    rd = Readers(mp)
    m = F.try_mount(ctx, cfg, mp)
    if m is None:
        raise F.Skip("maildisk mount does not come up here")
    rd.start()
    t0 = time.monotonic()
    mountlib.wait_synced(st, [(USER, "work")], {}, timeout=200)
    took1 = time.monotonic() - t0
    time.sleep(0.5)        # the readers see the finished tree once more
    rd.join()
    n1 = len(F.visible_rows(st))
    log("phase 1: sync of %d messages inside the mount took %.1fs; readers: %d walks, %d calls, %d distinct "
        "reads" % (n1, took1, rd.walks, rd.calls, len(rd.reads)))
    check(n1 == N_INBOX + N_ARCHIVE, "rows after the first sync", n1)

    # Phase two: expunges (files leave the mount) and additions. The IDLE
    # connection of the mount notices them and starts a sync; `maildisk
    # sync` asked while that sync runs must still get a sync that starts
    # after it asked (and so sees everything), not wait for the interval.
    rd.phase = 2
    px.rate = 300 * 1024         # the mount's sync of the changes takes several seconds
    marks = mountlib.sync_marks(st)
    gone = sorted(dc.uids(USER, "INBOX"))[100:250]
    rd.start()
    dc.expunge(USER, "INBOX", gone)
    F.deliver(dc, USER, "INBOX", [m.raw for m in msgs[N_INBOX + N_ARCHIVE:]])
    dc.uids(USER, "INBOX")       # Dovecot takes in the new files now, which IDLE reports
    # Wait until that sync has run for over a second (syncs.started_at has
    # whole seconds), so a sync that began before the request cannot pass
    # for one that began after it.
    running = None
    end = time.monotonic() + 20
    while time.monotonic() < end:
        rows = st.query("SELECT id, started_at, finished_at FROM syncs WHERE id > ? ORDER BY id",
                        marks.get((USER, "work"), 0))
        running = rows[-1]["finished_at"] is None if rows else None
        if running is False or (running and rows[-1]["started_at"] < time.time() - 1.2):
            break
        time.sleep(0.01)
    log("phase 2: the mount's own sync %s when maildisk sync asks for one" % (
        "is running" if running else "has finished" if running is False else "has not started"))
    t0 = time.monotonic()
    try:
        r = H.maildisk("sync", cfg, expect=None, timeout=120)
    except F.Failure as e:
        if running:
            raise F.Failure("%s: the sync asked for while the mount's own sync was running never started "
                            "(scheduler.c drops a wake-up that comes during a sync: the request waits for the "
                            "next interval)" % e)
        raise
    took2 = time.monotonic() - t0
    check(r.rc == 0, "maildisk sync through the mount exited %d" % r.rc)
    time.sleep(0.5)
    rd.join()
    log("phase 2: resync (150 expunged, 600 new) through the mount took %.1fs" % took2)
    H.assert_folder_matches(st, dc, USER, "work", "INBOX", sample=50)
    m.check_log()
    hashes, every = store_hashes(st, mountlib, mp)
    m.unmount()

    trashed = {os.path.relpath(os.path.join(mountlib.folder_dir(mp, f), t["view_name"]), mp)
               for f in st.folders() for t in st.messages(USER, "work", f["name"], F.TRASHED)}
    check(len(trashed) == len(gone), "trashed in phase 2", len(trashed), len(gone))
    known = set(hashes) | trashed | set(every)

    def parts_of(rel, messages):
        """The message whose parts directory rel is, or is in (a path in
        messages), or None: files there are decoded parts, not store files
        (tests/mount/test_parts.py checks their bytes)."""
        comps = rel.split("/")
        for i in range(len(comps), 0, -1):
            if "/".join(comps[:i]) + ".eml" in messages:
                return "/".join(comps[:i]) + ".eml"
        return None

    bad = []
    for phase, op, rel, err, text in rd.errors:
        if phase == 2 and err == errno.ENOENT and (rel in trashed or parts_of(rel, trashed)):
            continue           # an expunged message (or its parts) left the mount while being read
        bad.append((phase, op, rel, err, text))
    check(not bad, "%d reader errors" % len(bad), bad[:5])
    # .status is generated and may change between stat and read: only
    # that reading it never fails is checked.
    reads = {k: v for k, v in rd.reads.items() if os.path.basename(k[0]) != ".status"}
    partial = [(rel, s, n) for (rel, _), (s, n) in reads.items() if s != n]
    check(not partial, "%d reads where stat size and bytes read differ" % len(partial), partial[:5])
    wrong = []
    for (rel, digest), _ in reads.items():
        if parts_of(rel, known):
            continue
        if rel in hashes:
            if hashes[rel] != digest:
                wrong.append(rel)
        elif rel not in trashed:
            wrong.append(rel + " (no such message in the index)")
    check(not wrong, "%d reads whose bytes are not the store file" % len(wrong), wrong[:5])
    check(not rd.slow, "%d calls took longer than %.0f s" % (len(rd.slow), SLOW),
          sorted(rd.slow, reverse=True)[:5])
    log("load: %d readers, %d walks, %d timed calls (readdir, stat, open, read, listxattr, getxattr), %d "
        "distinct file contents read, 0 errors, 0 partial messages, slowest call %.3fs (%s %s)" % (
            READERS, rd.walks, rd.calls, len(rd.reads), rd.max[0], rd.max[1], rd.max[2][:60]))


if __name__ == "__main__":
    H.run(main, deadline=280)
