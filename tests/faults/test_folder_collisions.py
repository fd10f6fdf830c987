#!/usr/bin/env python3
"""Server folder names that would share a local path (issue 9 item 8) or
land in a parent's Maildir (issue 14), from a scripted fake server whose
LIST a real server will not produce: a delimiter per folder, raw 8-bit
names, the same folder listed twice.

  collide   "a.b" with delimiter '.' and "a/b" with '/' (both mail/.../a/b
            before the fix); "x/y" with '/' and "x.y" with '.'; the 8-bit
            "Äpfel" and its modified UTF-7 spelling "&AMQ-pfel" (one name
            "Äpfel" before the fix, so one index row); "dup" listed twice.
  reserved  Cyrus-style "INBOX.tmp", "INBOX.cur", "INBOX.new",
            "INBOX.new.cur" with '.', and ".hidden", "INBOX/.cur", ".." with '/'.

Each folder holds its own messages. After `maildisk sync`:
  - every folder the server can open is in the index under its own name
    and a path no other folder has, and its visible rows are exactly its
    UIDs, byte-exact;
  - no folder's directory is inside another's cur/, new/ or tmp/, and
    `check --store` agrees;
  - a folder that was given another name or path has a warning in
    `maildisk status`.
Then the writer is made to look killed (its PID left in the lock file) and
the next sync recovers: no message file may be removed as an orphan of a
folder it does not belong to, so every visible row keeps its file (same
inode) and nothing is fetched again. Before the fix, "a.b" and "a/b" shared
one Maildir and that recovery unlinked each other's files.

Last, "toolong": a folder with a 300-byte name part is named in the error.

Usage: test_folder_collisions.py [collide|reserved|toolong] (default all)."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, check, log  # noqa: E402

USER, ACCT, PW = "alice", "fake", "pw-fake"
MSGS = iter(F.mailgen.generate(60, seed=914, max_size=6000))

# (delimiter, raw name, folder key in the fake server, name in the index,
#  path below mail/alice/fake/, renamed: warning expected)
SETS = {
    "collide": [
        (".", b"a.b", "a.b", "a.b", "a/b", False),
        ("/", b"a/b", "a/b", "a/b", "a/b (2)", True),
        ("/", b"x/y", "x/y", "x/y", "x/y", False),
        (".", b"x.y", "x.y", "x.y", "x/y (2)", True),
        ("/", b"&AMQ-pfel", "utf7", "Äpfel", "Äpfel", False),
        ("/", "Äpfel".encode(), "8bit", "Äpfel (2)", "Äpfel (2)", True),
        ("/", b"dup", "dup", "dup", "dup", False),
        ("/", b"dup", "dup", None, None, False),
    ],
    "reserved": [
        (".", b"INBOX.tmp", "INBOX.tmp", "INBOX.tmp", "INBOX/%74mp", False),
        (".", b"INBOX.cur", "INBOX.cur", "INBOX.cur", "INBOX/%63ur", False),
        (".", b"INBOX.new", "INBOX.new", "INBOX.new", "INBOX/%6Eew", False),
        (".", b"INBOX.new.cur", "INBOX.new.cur", "INBOX.new.cur", "INBOX/%6Eew/%63ur", False),
        ("/", b".hidden", ".hidden", ".hidden", "%2Ehidden", False),
        ("/", b"INBOX/.cur", "INBOX/.cur", "INBOX/.cur", "INBOX/%2Ecur", False),
        ("/", b"..", "..", "..", "%2E.", False),
        ("/", b"tmp", "tmp", "tmp", "%74mp", False),
    ],
}
PREFIX = "mail/%s/%s/" % (USER, ACCT)


def inodes(st):
    return {(r["f_name"], r["remote_id"]): st.inode(r) for r in F.visible_rows(st)}


def check_folders(st, srv, entries):
    by_name = {f["name"]: f for f in st.folders()}
    paths = [f["path"] for f in by_name.values()]
    check(len(paths) == len(set(paths)), "two folders share a local path", sorted(paths))
    opened = 0
    for delim, raw, key, name, path, renamed in entries:
        if name is None:
            continue
        check(name in by_name, "folder %r (server %r) not in the index" % (name, raw), sorted(by_name))
        f = by_name[name]
        check(f["path"] == PREFIX + path, "%r: path %s, want %s" % (name, f["path"], PREFIX + path))
        if f["last_error"]:
            # a raw 8-bit name cannot be sent back to the server (imap.c)
            check(key == "8bit", "%r: %s" % (name, f["last_error"]))
            continue
        opened += 1
        want = srv.folders[key].by_uid()
        rows = F.visible_rows(st, USER, ACCT, name)
        got = {int(r["remote_id"]): st.read(r) for r in rows}
        check(len(rows) == len(want) and got == want, "%r: rows are not the server folder %r" % (name, key),
              sorted(got), sorted(want))
        for r in rows:
            check(r["store_file"].startswith(f["path"] + "/cur/"), "%r: file %s outside its Maildir"
                  % (name, r["store_file"]))
    root = os.path.realpath(st.root)
    for p in paths:
        for sub in ("cur", "new", "tmp"):
            d = os.path.join(root, p, sub)
            if os.path.isdir(d):
                dirs = [n for n in os.listdir(d) if os.path.isdir(os.path.join(d, n))]
                check(not dirs, "directories inside the Maildir %s/%s" % (p, sub), dirs)
    return opened


def run_set(ctx, which):
    entries = SETS[which]
    tmp = os.path.join(ctx.tmp, which)
    os.makedirs(tmp)
    with F.FakeImap(USER, PW) as srv:
        srv.listing = [(d, raw) for d, raw, *_ in entries]
        for d, raw, key, *_ in entries:
            srv.raw_names[raw.decode()] = key
            if key not in srv.folders:
                srv.folder(key).add([next(MSGS).raw, next(MSGS).raw])
        srv.remember()
        acct = F.account(USER, ACCT, srv.url(), PW, folders=["*"])
        cfg = F.write_config(os.path.join(tmp, "maildisk.conf"), os.path.join(tmp, "store"), [acct])
        st = H.Store(os.path.join(tmp, "store"))
        has_8bit = any(e[2] == "8bit" for e in entries)
        r = H.maildisk("sync", cfg, expect=(0, 1) if has_8bit else 0)
        opened = check_folders(st, srv, entries)
        log("%s: %d folders synced, each at its own path" % (which, opened))
        check(not srv.violations, "the server saw a command that changes mail", srv.violations)

        out = H.maildisk("status", cfg, expect=0).out
        for d, raw, key, name, path, renamed in entries:
            if renamed:
                check(re.search(r"warning: .*%s" % re.escape(path), out), "status: no warning for %r" % name, out)
        n_warn = out.count("warning:")
        check(n_warn == sum(1 for e in entries if e[5]), "status: warnings", n_warn, out)
        if which == "collide":
            check(re.search(r"the server lists folder \"dup\" twice", r.err), "no warning for the listed-twice folder",
                  r.err[-2000:])

        # A writer killed mid-sync: its PID stays in the lock file, and the
        # next start runs recovery over every folder.
        before = inodes(st)
        check(before, "nothing stored")
        with open(os.path.join(st.root, "lock"), "w") as f:
            f.write("999999\n")
        r = H.maildisk("sync", cfg, expect=(0, 1) if has_8bit else 0)
        check("did not end cleanly" in r.err, "recovery did not run", r.err[-2000:])
        after = inodes(st)
        check(after == before, "recovery removed or replaced message files",
              "lost", sorted(set(before) - set(after))[:10],
              "replaced", sorted(k for k in after if k in before and after[k] != before[k])[:10])
        check_folders(st, srv, entries)
        H.maildisk("check", cfg, "--store", expect=0)


def run_too_long(ctx):
    """A folder whose name has a part of 300 bytes cannot be a directory:
    the sync says which folder and why, in the log and in its summary
    line, and still syncs the folders beside it."""
    tmp = os.path.join(ctx.tmp, "toolong")
    os.makedirs(tmp)
    long_name = "L" * 300
    with F.FakeImap(USER, PW) as srv:
        srv.listing = [("/", b"ok"), ("/", long_name.encode())]
        srv.folder("ok").add([next(MSGS).raw])
        srv.folder(long_name).add([next(MSGS).raw])
        srv.remember()
        acct = F.account(USER, ACCT, srv.url(), PW, folders=["*"])
        cfg = F.write_config(os.path.join(tmp, "maildisk.conf"), os.path.join(tmp, "store"), [acct])
        st = H.Store(os.path.join(tmp, "store"))
        r = H.maildisk("sync", cfg, expect=1)
        said = 'folder "%s" cannot be stored: a part of its name is longer than 255 bytes' % long_name
        check(said in r.err, "the log does not say which folder cannot be stored", r.err[-1500:])
        check(said in r.out, "the summary line does not say which folder cannot be stored", r.out[-1500:])
        F.imap_converged(st, srv, USER, ACCT, "ok")
        check(not srv.violations, "the server saw a command that changes mail", srv.violations)
        log("toolong: the 300-byte folder named in the log and the summary; \"ok\" synced")


def main(ctx):
    which = sys.argv[1:] or list(SETS) + ["toolong"]
    for w in which:
        if w == "toolong":
            run_too_long(ctx)
        else:
            run_set(ctx, w)


if __name__ == "__main__":
    H.run(main, deadline=200)
