#!/usr/bin/env python3
"""What a sync asks of the server when little or nothing changed, against
the scripted fake IMAP server with CONDSTORE: a folder is EXAMINEd only
when its STATUS (or LIST-STATUS) says it changed, so a no-change sync of
many folders costs a fixed handful of round trips.

For each capability set (CONDSTORE with STATUS; LIST-STATUS; neither):
  - a first sync of 12 folders fetches everything;
  - a second sync with no change EXAMINEs no folder (with CONDSTORE) and
    asks STATUS at most once per folder, all pipelined, or nothing beyond
    LIST with LIST-STATUS; without CONDSTORE every folder is EXAMINEd, as
    nothing can be proved otherwise;
  - after one message is added to one folder and one expunged from another,
    exactly those two folders are EXAMINEd (the second one's EXAMINE sent
    with the first one's FETCH), the new one is fetched and the expunged
    one is trashed;
  - nothing ever changes the server's mailbox."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, check, log  # noqa: E402

USER, ACCT, PW = "alice", "rt", "pw-rt"
FOLDERS = ["INBOX"] + ["Folder%02d" % i for i in range(11)]
MSGS = F.mailgen.generate(80, seed=808, max_size=8000)

CASES = [
    ("condstore_status", ("CONDSTORE", "ESEARCH")),
    ("list_status", ("CONDSTORE", "ESEARCH", "LIST-STATUS")),
    ("qresync_list_status", ("ENABLE", "CONDSTORE", "QRESYNC", "ESEARCH", "LIST-STATUS")),
    ("no_condstore", ("ESEARCH",)),
]


def examined(srv):
    return sorted(H.utf7_decode(F._tokens(c.split(" ", 1)[1])[0]) for c in srv.sent("EXAMINE"))


SEARCHRES = ("CONDSTORE", "ESEARCH", "SEARCHRES")


def five_each(empty=()):
    """{folder: its 5 messages} for FOLDERS, none for those in empty."""
    return {f: [] if f in empty else [m.raw for m in MSGS[i * 5:i * 5 + 5]] for i, f in enumerate(FOLDERS)}


def fake_account(ctx, name, caps, contents):
    """A fake server with caps holding contents ({folder: raws}, in LIST
    order), and a config and store for it in a directory of its own.
    Returns (server, config, store); the caller closes the server."""
    tmp = os.path.join(ctx.tmp, name)
    os.mkdir(tmp, 0o700)
    srv = F.FakeImap(USER, PW, caps=caps)
    for fname, raws in contents.items():
        srv.folder(fname).add(raws)
    cfg = F.write_config(os.path.join(tmp, "maildisk.conf"), os.path.join(tmp, "store"),
                         [F.account(USER, ACCT, srv.url(), PW, folders=("*",))])
    return srv, cfg, H.Store(os.path.join(tmp, "store"))


def run_case(ctx, name, caps):
    log("==== %s (%s)" % (name, " ".join(caps)))
    srv, cfg, st = fake_account(ctx, name, caps, five_each())
    try:
        H.maildisk("sync", cfg, expect=0)
        check(len(F.visible_rows(st)) == 5 * len(FOLDERS), "first sync", len(F.visible_rows(st)))

        srv.arm()
        H.maildisk("sync", cfg, expect=0)
        ex, status = examined(srv), srv.sent("STATUS")
        lists = srv.sent("LIST")
        log("  no change: %d EXAMINE, %d STATUS, LIST %r" % (len(ex), len(status), lists))
        if "CONDSTORE" in caps:
            check(not ex, "%s: a no-change sync EXAMINEd folders" % name, ex)
            if "LIST-STATUS" in caps:
                check(not status and any("RETURN (STATUS" in c for c in lists),
                      "%s: LIST-STATUS was not used" % name, status, lists)
            else:
                check(len(status) == len(FOLDERS), "%s: STATUS per folder" % name, len(status))
        else:
            check(ex == sorted(FOLDERS), "%s: without CONDSTORE every folder is examined" % name, ex)
        check(not srv.sent("UID FETCH"), "%s: a no-change sync fetched" % name, srv.sent("UID FETCH"))

        srv.folder("Folder03").add([MSGS[70].raw])
        srv.folder("Folder07").expunge([srv.folder("Folder07").uids()[1]])
        srv.arm()
        H.maildisk("sync", cfg, expect=0)
        ex = examined(srv)
        log("  one added, one expunged: EXAMINE %r" % ex)
        if "CONDSTORE" in caps:
            check(ex == ["Folder03", "Folder07"], "%s: only the changed folders are examined" % name, ex)
            # Folder07's EXAMINE went with Folder03's last FETCH, not a round trip later
            piped = [c for c in srv.with_next if c.startswith("UID FETCH")]
            check(piped, "%s: the next folder's EXAMINE did not ride with the FETCH" % name,
                  srv.with_next[-6:])
        check(len(F.visible_rows(st)) == 5 * len(FOLDERS), "%s: rows after the change" % name,
              len(F.visible_rows(st)))
        check(len(st.messages(state=F.TRASHED)) == 1, "%s: the expunged message is trashed" % name)
        check(not srv.violations, "%s: commands that change mail" % name, srv.violations[:3])
    finally:
        srv.close()


def run_ahead(ctx):
    """A first sync with SEARCHRES: each folder's UID FETCH $ goes with its
    EXAMINE and listing, sent with the folder before's FETCH, not a round
    trip (and that folder's commit) later; the first folder, and one after
    a folder that fetched nothing, has its EXAMINE, listing and FETCH $
    sent together. An empty folder (nothing to
    fetch) and a folder whose EXAMINE is refused after its FETCH $ went
    out get their answers drained, and every other folder arrives whole."""
    log("==== searchres: the FETCH goes ahead")
    srv, cfg, st = fake_account(ctx, "searchres", SEARCHRES, five_each(empty=("Folder02",)))
    try:
        full = [f for f in FOLDERS if f not in ("Folder02", "Folder05")]
        # Folder05 is the seventh EXAMINE (INBOX, Folder00, ...): refused,
        # with its SEARCH and FETCH $ already on their way.
        srv.arm(F.Fault("EXAMINE", "status", nth=7, status="NO", text="[NONEXISTENT] gone meanwhile"))
        r = H.maildisk("sync", cfg, expect=None)
        ahead = [c for c in srv.sent("UID FETCH") if c.startswith("UID FETCH $")]
        # with_next: commands with another one already behind them
        piped = [c for c in srv.with_next if c.startswith("UID SEARCH RETURN (SAVE")]
        log("  exit %d; %d UID FETCH $; %d saving listings had their FETCH $ right behind" % (
            r.rc, len(ahead), len(piped)))
        # Every folder's FETCH went ahead. INBOX, and the folders after the
        # two that fetched nothing (Folder03, Folder06), had no FETCH for
        # their EXAMINE to ride with: it went alone, with its FETCH $.
        plain = [c for c in srv.sent("UID FETCH") if not c.startswith("UID FETCH $")]
        check(len(ahead) == len(FOLDERS) and not plain, "a UID FETCH $ for every folder", ahead, plain)
        check(len(piped) == len(ahead), "every UID FETCH $ went with its listing", srv.with_next[-8:])
        for fname in full:
            F.imap_converged(st, srv, USER, ACCT, fname)
        check(len(F.visible_rows(st)) == 5 * len(full), "rows after the first sync", len(F.visible_rows(st)))
        check(r.rc != 0 and 'EXAMINE "Folder05": the server answered NO' in r.err,
              "the refused folder is reported by name", r.rc, r.err[-400:])

        check(not srv.violations, "commands that change mail", srv.violations[:3])
    finally:
        srv.close()


def run_ahead_cut(ctx):
    """A first sync cut inside a FETCH $ (Folder06's, the eighth UID FETCH):
    the whole messages before the cut are kept, and the next sync fetches
    that folder's rest, not all of it again: no message twice."""
    log("==== searchres: a first sync cut inside a FETCH $")
    srv, cfg, st = fake_account(ctx, "searchres-cut", SEARCHRES, five_each())
    try:
        srv.arm(F.Fault("UID FETCH", "hangup", nth=8, at="mid_literal", literal=3))
        r = H.maildisk("sync", cfg, expect=None)
        cut = len(F.visible_rows(st, USER, ACCT, "Folder06"))
        log("  exit %d; Folder06 kept %d of its 5 messages" % (r.rc, cut))
        check(r.rc != 0 and 0 < cut < 5, "the cut came inside Folder06's FETCH", r.rc, cut)
        srv.arm()
        H.maildisk("sync", cfg, expect=0)
        for fname in FOLDERS:
            F.imap_converged(st, srv, USER, ACCT, fname)
        check(len(F.visible_rows(st)) == 5 * len(FOLDERS), "rows after the resync", len(F.visible_rows(st)))
        refetched = [c for c in srv.sent("UID FETCH") if not c.startswith("UID FETCH $")]
        log("  resync: %r" % refetched)
        check(not srv.violations, "commands that change mail", srv.violations[:3])
    finally:
        srv.close()


def run_ahead_crash(ctx):
    """A first sync killed inside a FETCH $ after a batch of it committed
    (Big's 600 messages: a batch is 512): the folder has rows but no
    UIDVALIDITY, and no error was recorded. The next sync must fetch only
    its listing minus those rows; a FETCH $ of all of it would store them
    twice."""
    log("==== searchres: a first sync killed after a commit inside a FETCH $")
    big = [m.raw for m in F.mailgen.generate(600, seed=809, max_size=1500)]
    srv, cfg, st = fake_account(ctx, "searchres-crash", SEARCHRES,
                                {"INBOX": [m.raw for m in MSGS[:5]], "Big": big})
    try:
        srv.arm(F.Fault("UID FETCH", "stall", nth=2, at="mid_literal", literal=560, seconds=30))
        p = ctx.popen([H.maildisk_path(), "sync", "-c", cfg], env=H.maildisk_env(),
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        kept = 0
        while time.monotonic() < end and p.poll() is None:
            with contextlib.suppress(Exception):
                kept = len(F.visible_rows(st, USER, ACCT, "Big"))
            if kept >= 512:
                break
            time.sleep(0.05)
        check(p.poll() is None and kept >= 512, "the sync did not stall after Big's first batch", p.poll(), kept)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        fr = st.folder(USER, ACCT, "Big")
        log("  killed with %d of Big's 600 stored, its UIDVALIDITY %s" % (kept, fr and fr["uidvalidity"]))
        # New mail in INBOX: its FETCH is the one Big's EXAMINE rides with.
        srv.folder("INBOX").add([MSGS[6].raw])
        srv.arm()
        H.maildisk("sync", cfg, expect=0)
        for fname in ("INBOX", "Big"):
            F.imap_converged(st, srv, USER, ACCT, fname)
        again = [c for c in srv.sent("UID FETCH")]
        log("  resync: %r" % [c[:40] for c in again])
        check(not any(c.startswith("UID FETCH $") for c in again), "the resync sent a FETCH $ for Big", again)
        check(not srv.violations, "commands that change mail", srv.violations[:3])
    finally:
        srv.close()


def run_ahead_drained(ctx):
    """A FETCH $ that went ahead with bodies and is then not read: Folder01
    (messages of 100 KB and more, past what a response keeps inline)
    announces EXISTS 1 and lists 5 UIDs, so its listing is refused and
    nothing of it is fetched. Its FETCH $ answer, already on the wire, is
    drained before Folder02's commands; the folders after it still sync."""
    log("==== searchres: a FETCH $ with bodies drained")
    big = [m.raw for m in F.mailgen.generate(5, seed=810, min_size=100000, max_size=300000)]
    contents = {"INBOX": [m.raw for m in MSGS[:5]], "Folder01": big,
                "Folder02": [m.raw for m in MSGS[5:10]], "Folder03": [m.raw for m in MSGS[10:15]]}
    srv, cfg, st = fake_account(ctx, "searchres-drained", SEARCHRES, contents)
    try:
        srv.arm(F.Fault("EXAMINE", "exists", nth=2, value=1))
        r = H.maildisk("sync", cfg, expect=None)
        log("  exit %d: %s" % (r.rc, r.err.strip().splitlines()[-1:] if r.err.strip() else ""))
        for fname in ("INBOX", "Folder02", "Folder03"):
            F.imap_converged(st, srv, USER, ACCT, fname)
        check(not F.visible_rows(st, USER, ACCT, "Folder01"), "Folder01 stored from a refused listing")
        check(r.rc != 0 and "listed 5 UIDs for a folder of 1 messages" in r.err and "sent ahead" not in r.err,
              "the refused listing is reported, and only it", r.rc, r.err[-400:])
        check(re.search(r"alice/rt Folder01: UID SEARCH: 127\.0\.0\.1 listed 5 UIDs", r.err),
              "the log names the folder whose listing was refused", r.err[-400:])
        check(not srv.violations, "commands that change mail", srv.violations[:3])
    finally:
        srv.close()


def main(ctx):
    for name, caps in CASES:
        run_case(ctx, name, caps)
    run_ahead(ctx)
    run_ahead_cut(ctx)
    run_ahead_crash(ctx)
    run_ahead_drained(ctx)
    log("round trips: %d cases and the FETCH sent ahead" % len(CASES))


if __name__ == "__main__":
    H.run(main, deadline=200)
