#!/usr/bin/env python3
"""Folders named like a Maildir's own directories (issue 14), and the move of
a store written before they were escaped.

A Dovecot with separator '/' and the listescape plugin holds INBOX/tmp,
INBOX/cur, INBOX/new, INBOX/new/cur, INBOX/.hidden, INBOX/.tmp, tmp,
new/cur/tmp, Äpfel, INBOX/日本語, and an empty INBOX/empty. After a sync:
  - each folder is at names_folder_path (cur, new and tmp as %63ur, %6Eew,
    %74mp), byte-exact against the server, and no cur/, new/ or tmp/ of any
    Maildir in the store holds anything but files;
  - the empty folder has its Maildir; `check --store` finds nothing;
  - `maildisk status` lines up its columns by display width, also in the C
    locale.
Then the store is put back into the layout the previous maildisk wrote
(folders inside their parent's Maildir; the same files, hard links and
index rows as it left them), and:
  - `check --store` reports the folders to move and exits 1;
  - the next writer start moves them: every message keeps its file (same
    inode: nothing fetched again), `check --store` is clean, a sync
    converges;
  - kill -9 at every instant of the move: before each Nth mkdir, link,
    fsync, write to the index, unlink and rmdir of the move (strace fault
    injection), for every N until the move runs through. After each kill
    the next start finishes the move with every message kept under the same
    inode, and `check --store` agrees."""
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

SEP = "/"
FOLDERS = ["INBOX/tmp", "INBOX/cur", "INBOX/new", "INBOX/new/cur", "INBOX/.hidden", "INBOX/.tmp",
           "tmp", "new/cur/tmp", "Äpfel", "INBOX/日本語"]
EMPTY = "INBOX/empty"
RAW_SUBS = {v: k for k, v in h.MAILDIR_SUBS.items()}
KILL_CALLS = ["mkdir", "linkat", "fsync", "pwrite64", "unlinkat", "rmdir"]


def width(s):
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def check_maildirs(st, prefix):
    """No directory inside any folder's cur/, new/ or tmp/."""
    root = os.path.realpath(st.root)
    folders = {f["path"] for f in st.folders()}
    for path in folders:
        for sub in ("cur", "new", "tmp"):
            d = os.path.join(root, path, sub)
            if not os.path.isdir(d):
                continue
            dirs = [n for n in os.listdir(d) if os.path.isdir(os.path.join(d, n))]
            h.check(not dirs, "directories inside the Maildir %s/%s" % (path, sub), dirs)


def old_layout(path):
    """The folder path the previous maildisk wrote for this one."""
    parts = path.split("/")
    return "/".join(parts[:3] + [RAW_SUBS.get(p, p) for p in parts[3:]])


def downgrade(root):
    """Puts the store into the previous layout, as the previous maildisk
    left it: each folder's Maildir at its raw path, its visible files in
    cur/ there, rows pointing at them. Returns the number of folders moved."""
    con = sqlite3.connect(os.path.join(root, "index.db"))
    moved = []
    with con:
        for fid, path in con.execute("SELECT id, path FROM folders").fetchall():
            old = old_layout(path)
            if old == path:
                continue
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(root, old, sub), mode=0o700, exist_ok=True)
            for mid, sf in con.execute("SELECT id, store_file FROM messages WHERE folder_id = ? "
                                       "AND state IN (0, 2)", (fid,)).fetchall():
                nf = old + "/cur/" + os.path.basename(sf)
                os.rename(os.path.join(root, sf), os.path.join(root, nf))
                con.execute("UPDATE messages SET store_file = ? WHERE id = ?", (nf, mid))
            con.execute("UPDATE folders SET path = ? WHERE id = ?", (old, fid))
            moved.append(path)
    con.close()
    # The new-layout directories the previous maildisk never made.
    for path in sorted(moved, key=lambda p: -p.count("/")):
        for sub in ("cur", "new", "tmp"):
            os.rmdir(os.path.join(root, path, sub))
        p = path
        while re.search(r"(^|/)(%63ur|%6Eew|%74mp)(/|$)", p):
            try:
                os.rmdir(os.path.join(root, p))
            except OSError:
                break
            p = os.path.dirname(p)
    return len(moved)


def inodes(st):
    """(folder name, UID) -> inode of the file of each visible row."""
    return {(r["f_name"], r["remote_id"]): st.inode(r) for r in st.messages()
            if r["state"] in (h.ACTIVE, h.RESTORED)}


def check_clean(cfg, what):
    r = h.maildisk("check", cfg, "--store", expect=0)
    h.check("the index and the files agree" in r.out, what + ": check --store disagrees", r.out)


def check_mount(ctx, cfg, st):
    """The mount shows the server's names (tmp, not %74mp), each folder's
    messages, and the empty folder."""
    if not os.path.exists("/dev/fuse"):
        h.log("NOTE: /dev/fuse is absent: the mount part is skipped")
        return
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mount"))
    import mountlib as ml
    mp = os.path.join(ctx.tmp, "mnt")
    marks = ml.sync_marks(st)
    with ml.Mount(ctx, cfg, mp) as m:
        ml.wait_synced(st, [("alice", "res")], marks)
        top = os.path.join(mp, "alice", "res")
        inbox = set(os.listdir(os.path.join(top, "INBOX")))
        for n in ("tmp", "cur", "new", "%2Ehidden", "%2Etmp", "empty", "日本語"):
            h.check(n in inbox, "mount: INBOX/%s missing" % n, sorted(inbox))
        h.check(os.listdir(os.path.join(top, "INBOX", "empty")) == [], "mount: INBOX/empty not empty")
        h.check(os.path.isdir(os.path.join(top, "new", "cur", "tmp")), "mount: new/cur/tmp missing",
                os.listdir(top))
        for f in st.folders():
            d = ml.folder_dir(mp, f)
            files = sorted(n for n in os.listdir(d) if n.endswith(".eml"))
            rows = sorted(r["view_name"] for r in st.messages("alice", "res", f["name"])
                          if r["state"] in (h.ACTIVE, h.RESTORED))
            h.check(files == rows, "mount: %r shows %s, the index has %s" % (f["name"], files, rows))
        m.unmount()


def main(ctx):
    dc = ctx.dovecot(separator=SEP, listescape=True)
    dc.add_user("alice", "pw-res")
    msgs = iter(mailgen.generate(2 * len(FOLDERS) + 2, seed=1414, max_size=8000))
    for n in ["INBOX"] + FOLDERS:
        dc.append("alice", n, [next(msgs).raw, next(msgs).raw] if n != "INBOX" else [next(msgs).raw])
    dc.create_folder("alice", EMPTY)
    listed = dc.folders("alice")
    for n in FOLDERS + [EMPTY]:
        h.check(n in listed, "folder %r not on the server" % n, listed)
    acct = h.Account("alice", "res", dc.url("imaps"), "alice", "pw-res", ["*"], dc.ca_pem)
    cfg = ctx.config([acct])
    h.maildisk("sync", cfg, expect=0)
    st = h.Store(ctx.store_dir())
    root = os.path.realpath(st.root)
    prefix = "mail/alice/res/"

    by_name = {f["name"]: f for f in st.folders()}
    for n in ["INBOX"] + FOLDERS + [EMPTY]:
        h.check(n in by_name, "folder %r not in the index" % n, sorted(by_name))
        want = prefix + h.folder_path(n, SEP)
        h.check(by_name[n]["path"] == want, "%r: stored at %s, not %s" % (n, by_name[n]["path"], want))
        h.check(os.path.isdir(os.path.join(root, want, "cur")), "%r: no Maildir at %s" % (n, want))
        h.assert_folder_matches(st, dc, "alice", "res", n)
    h.check(by_name["INBOX/new/cur"]["path"] == prefix + "INBOX/%6Eew/%63ur", "INBOX/new/cur path",
            by_name["INBOX/new/cur"]["path"])
    check_maildirs(st, prefix)
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)
    check_clean(cfg, "after the first sync")
    check_mount(ctx, cfg, st)

    # status: one column for the counts, however wide the names are.
    env = dict(h.maildisk_env(), LANG="C", LC_ALL="C")
    out = subprocess.run([h.maildisk_path(), "status", "-c", cfg], stdout=subprocess.PIPE,
                         env=env, check=True).stdout.decode()
    cols = set()
    for line in out.splitlines():
        m = re.match(r"^  (\S.*?) +(\d+) messages", line)
        if m and width(m.group(1)) <= 24:
            cols.add(width(line[:line.index(" messages")]))
            h.check("?" not in m.group(1), "status mangled a name", line)
    h.check(len(cols) == 1, "status columns do not line up by display width", out)
    h.check("Äpfel" in out and "INBOX/日本語" in out, "status lost a name", out)

    # ---- a store written before the escaping: moved at the next start
    before = inodes(st)
    h.check(len(before) == 2 * len(FOLDERS) + 1, "rows before the move", len(before))
    want_old = sum(1 for f in st.folders() if old_layout(f["path"]) != f["path"])
    n_old = downgrade(root)
    h.check(n_old == want_old >= 6, "folders put into the old layout", n_old, want_old)
    h.check(os.path.isdir(os.path.join(root, prefix, "INBOX/new/cur/cur")), "old layout not made")
    old_store = os.path.join(ctx.tmp, "old-store")
    shutil.copytree(root, old_store, symlinks=True)
    r = h.maildisk("check", cfg, "--store", expect=1)
    h.check(re.search(r"folders to move to their own place: +%d" % n_old, r.out), "check --store "
            "does not report the old layout", r.out)

    # A config whose server is gone: the start (and so the move) happens,
    # the sync itself fails at once.
    dead = h.Account("alice", "res", "imaps://127.0.0.1:%d" % h.free_port(), "alice", "pw-res",
                     ["*"], dc.ca_pem)
    dead_cfg = ctx.config([dead], name="dead.conf")
    h.maildisk("sync", dead_cfg, expect=1)
    h.check(inodes(st) == before, "the move lost or copied messages")
    check_maildirs(st, prefix)
    for n in FOLDERS:
        h.check(st.folder("alice", "res", n)["path"] == prefix + h.folder_path(n, SEP), "%r not moved" % n)
    h.check(not os.path.exists(os.path.join(root, prefix, "INBOX/new/cur")), "old directories left")
    check_clean(cfg, "after the move")
    h.maildisk("sync", cfg, expect=0)
    h.check(inodes(st) == before, "a sync after the move fetched messages again")
    for n in ["INBOX"] + FOLDERS + [EMPTY]:
        h.assert_folder_matches(st, dc, "alice", "res", n)

    # ---- kill -9 at every step of the move
    if not shutil.which("strace"):
        raise h.Skip("strace is not installed (scripts/lib/deps.sh installs it)")
    kills = 0
    # LeakSanitizer cannot run under ptrace; the runs after each kill have it.
    env = h.maildisk_env()
    env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"] + ":detect_leaks=0"
    for call in KILL_CALLS:
        for nth in range(1, 400):
            shutil.rmtree(root)
            shutil.copytree(old_store, root, symlinks=True)
            base = inodes(st)     # a copy: new inodes
            argv = ["strace", "-f", "-o", "/dev/null", "-e", "inject=%s:signal=KILL:when=%d" % (call, nth),
                    h.maildisk_path(), "sync", "-c", dead_cfg]
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
            if p.returncode not in (137, -9):
                h.check(p.returncode == 1, "%s #%d: exit %d" % (call, nth, p.returncode),
                        p.stderr.decode(errors="replace")[-2000:])
                break
            kills += 1
            # The next start finishes what the kill interrupted.
            h.maildisk("sync", dead_cfg, expect=1)
            got = inodes(st)
            h.check(got == base, "kill at %s #%d: messages lost or copied" % (call, nth),
                    "lost", sorted(set(base) - set(got))[:10],
                    "changed", sorted(k for k in got if k in base and got[k] != base[k])[:10])
            check_maildirs(st, prefix)
            check_clean(cfg, "kill at %s #%d" % (call, nth))
        else:
            raise h.Failure("%s: the move still killed after 400 calls" % call)
    h.log("killed the move at %d points; each start after finished it" % kills)
    h.check(kills >= 40, "too few kill points to mean anything", kills)
    h.maildisk("sync", cfg, expect=0)
    for n in ["INBOX"] + FOLDERS + [EMPTY]:
        h.assert_folder_matches(st, dc, "alice", "res", n)


if __name__ == "__main__":
    h.run(main, deadline=500)
