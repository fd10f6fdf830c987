#!/usr/bin/env python3
"""Desktop search through the parts files (issue 15), on a real mount:

  - recoll, told to skip the .eml files (so its own MIME handling of a
    message is not the route), finds a word that occurs only inside a text
    attachment and answers that attachment's part file; likewise a word
    only in the text body (body.txt) and one only in a PDF attachment;
  - GNOME Tracker 3 (trackerlib: tracker-miner-fs-3 in a private D-Bus
    session, its data in a private directory) indexes the mount and finds
    a word only in a message body, answering .../body.txt, and a word only
    in a text attachment, answering the attachment's file.

Tracker skips everything under /tmp, so the mount point is under
/var/tmp. A plain directory with a .txt of its own word is indexed by the
same Tracker, so a failure says whether Tracker or the mount is at fault."""

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as L  # noqa: E402
from mountlib import H, check, log  # noqa: E402

import mailgen  # noqa: E402
import partmail as P  # noqa: E402
import trackerlib  # noqa: E402
from test_parts import msg_dir, parts_dir  # noqa: E402

CONTROL_WORD = "pumpernickelsonar"


def recoll_find(confdir, env, query):
    argv = ["recollq", "-c", confdir, "-b", query]
    log("$ " + " ".join(argv))
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    out = p.stdout.decode(errors="replace")
    check(p.returncode == 0, "recollq %s" % query, p.stderr.decode(errors="replace"))
    paths = sorted({line[len("file://"):] for line in out.splitlines() if line.startswith("file://")})
    log("recollq %s -> %s" % (query, paths))
    return paths


def recoll(ctx, top, want):
    """Indexes top (the .eml files skipped) and checks {word: [paths]}."""
    confdir = os.path.join(ctx.tmp, "recoll")
    os.mkdir(confdir, 0o700)
    with open(os.path.join(confdir, "recoll.conf"), "w") as f:
        f.write("topdirs = %s\nskippedNames = .status *.eml\nloglevel = 3\n" % top)
    env = dict(os.environ, HOME=ctx.tmp, RECOLL_CONFDIR=confdir)
    p = subprocess.run(["recollindex", "-c", confdir, "-z"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=150)
    check(p.returncode == 0, "recollindex", p.stderr.decode(errors="replace")[-4000:])
    for word, paths in want.items():
        check(recoll_find(confdir, env, word) == paths, "recoll: %s answers %s" % (word, paths))
    check(recoll_find(confdir, env, "nosuchwordanywhere") == [], "recoll: no hit for an absent word")


def tracker(ctx, top, want):
    """Tracker on top and on a plain control directory; checks {word: [paths]}."""
    plain = tempfile.mkdtemp(prefix="maildisk-parts-plain-", dir="/var/tmp")
    ctx.stack.callback(shutil.rmtree, plain, True)
    with open(os.path.join(plain, "control.txt"), "w") as f:
        f.write("a plain file with %s\n" % CONTROL_WORD)
    with trackerlib.Tracker([top, plain]) as t:
        words = [CONTROL_WORD] + list(want)
        try:
            got = t.find(words, timeout=120)
        except H.Failure as e:
            control = t.urls(CONTROL_WORD)
            raise H.Failure("%s\n(the plain control file was %sfound: %s)" % (
                e, "" if control else "NOT ", "the mount" if control else "Tracker itself"))
        paths = {w: sorted(urllib.parse.unquote(u[len("file://"):]) for u in urls) for w, urls in got.items()}
        check(paths[CONTROL_WORD] == [os.path.join(plain, "control.txt")], "Tracker: control", paths)
        for word, expect in want.items():
            check(paths[word] == expect, "Tracker: %s answers %s" % (word, expect), paths[word])
        check(t.urls("nosuchwordanywhere") == [], "Tracker: no hit for an absent word")


def main(ctx):
    L.require_fuse()
    need = [pkg for tool, pkg in (("recollindex", "recollcmd"), ("recollq", "recollcmd"),
                                  ("pdftotext", "poppler-utils")) if not L.have(tool)]
    need += trackerlib.missing()
    if need:
        raise H.Failure("not installed (Debian packages): %s" % " ".join(sorted(set(need))))
    t0 = datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc)
    kinds_raw, _, _ = P.kinds_message(t0)
    dc = ctx.dovecot()
    dc.add_user("rita", "pw-rita")
    dc.append("rita", "INBOX", [kinds_raw] + [m.raw for m in mailgen.generate(6, seed=77, max_size=20000)])
    conf = ctx.config([H.Account("rita", "mail", dc.url("imaps"), "rita", "pw-rita", ["INBOX"], dc.ca_pem)])
    store = H.Store(ctx.store_dir())

    # Not under /tmp: Tracker would skip it. Removed after the unmount.
    top = tempfile.mkdtemp(prefix="maildisk-parts-search-", dir="/var/tmp")
    ctx.stack.callback(shutil.rmtree, top, True)
    mp = os.path.join(top, "mnt")
    m = L.Mount(ctx, conf, mp).start()
    L.wait_synced(store, [("rita", "mail")])
    row = [r for r in store.messages("rita", "mail", "INBOX", H.ACTIVE) if r["subject"] == P.SUBJECT]
    check(len(row) == 1, "the kinds message's row")
    d = parts_dir(os.path.join(msg_dir(mp, row[0]), row[0]["view_name"]))
    want = {P.BODY_WORD: [os.path.join(d, "body.txt")], P.ATTACH_WORD: [os.path.join(d, "notes.txt")]}
    for p in (want[P.BODY_WORD][0], want[P.ATTACH_WORD][0]):
        check(os.path.isfile(p), "no %s" % p)

    recoll(ctx, os.path.join(mp, "rita"), dict(want, **{P.PDF_WORD: [os.path.join(d, "report.pdf")]}))
    tracker(ctx, os.path.join(mp, "rita"), want)
    m.unmount()
    m.check_log()


if __name__ == "__main__":
    H.run(main, deadline=270)
