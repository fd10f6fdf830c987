#!/usr/bin/env python3
"""The mounted tree against the server and the index: folders and names,
bytes equal to BODY.PEEK[], sizes, mtimes, modes, link counts, extended
attributes (values, listing, size probe, ERANGE, ENODATA), /<user>/.status,
EROFS for every kind of write, statfs, grep -r / find -newer / cp -a /
rsync -a out of the mount, one writer per store, and inode numbers that
survive a remount. Each message with parts has its parts directory beside
it (the parts themselves: test_parts.py), and a folder directory then
counts 1 link ("not counted"); with `parts = no` in [store] the folders
list the messages alone and count 2 + sub-directories again. Last, mount
points that cannot work (the store itself, a directory inside it, a
file) are refused with exit 1 and the reason."""

import email.parser
import email.policy
import email.utils
import errno
import os
import re
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as L  # noqa: E402
from mountlib import H, check, log  # noqa: E402

import mailgen  # noqa: E402  (tests/integration, on the path through mountlib)


def escape_component(s):
    """cache/names.h escaping of one component, for the names we use here."""
    out = []
    for i, ch in enumerate(s):
        b = ch.encode()
        if ch == "%" or ch == "/" or (len(b) == 1 and (b[0] < 0x20 or b[0] == 0x7F)) or (i == 0 and ch == "."):
            out.append("".join("%%%02X" % x for x in b))
        else:
            out.append(ch)
    return "".join(out) if s else "%"


def header_date(raw):
    hdr = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    d = hdr.get("Date")
    if not d:
        return None
    return int(email.utils.parsedate_to_datetime(d).timestamp())


def check_dirs(mp, store, frows, parts):
    """Every folder directory lists its messages (their parts directories
    beside them when parts are shown) and its sub-folders; link counts are
    1 for a folder's directory when parts are shown ("not counted"), else
    2 + sub-directories, as for a directory that only holds sub-folders.
    Each parts directory: 0500, root's, one link, the message's mtime, the
    inode of part 0 of its row (row id << 12 | 1)."""
    fdirs = {L.folder_dir(mp, f): f for f in frows.values()}
    acct = os.path.join(mp, "alice", "work")
    below = {os.path.join(acct, *os.path.relpath(d, acct).split(os.sep)[:i])
             for d in fdirs for i in range(1, len(os.path.relpath(d, acct).split(os.sep)) + 1)}
    for d in sorted(below):
        subs = {os.path.relpath(x, d).split(os.sep)[0] for x in below if x.startswith(d + os.sep)}
        f = fdirs.get(d)
        rows = store.messages("alice", "work", f["name"]) if f else []
        want = L.listing(rows, parts) | subs
        got = set(os.listdir(d))
        check(got == want, "%s: listing differs from the index" % d, sorted(got ^ want)[:10])
        nlink = 1 if f and parts else 2 + len(subs)
        check(os.stat(d).st_nlink == nlink, "%s nlink (parts %s)" % (d, parts), os.stat(d).st_nlink, nlink)
        for r in rows:
            if not (parts and r["n_parts"] and r["state"] in (H.ACTIVE, H.RESTORED)):
                continue
            pd = os.path.join(d, L.stem(r["view_name"]))
            st, est = os.stat(pd), os.stat(os.path.join(d, r["view_name"]))
            check(stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o500 and st.st_uid == 0,
                  "%s: mode %o owner %d" % (pd, st.st_mode, st.st_uid))
            check(st.st_nlink == 1 and st.st_ino == (r["id"] << 12) | 1, "%s: nlink %d inode %d, row %d" % (
                pd, st.st_nlink, st.st_ino, r["id"]))
            check(int(st.st_mtime) == int(est.st_mtime), "%s: mtime %d, its .eml's %d" % (
                pd, st.st_mtime, est.st_mtime))
    return below


def main(ctx):
    L.require_fuse()
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-alice")
    sep = dc.separator_of("alice")
    msgs = mailgen.generate(26, seed=31, max_size=120000)
    layout = {"INBOX": msgs[0:14], "Work%sProjects" % sep: msgs[14:19], "Ärchiv": msgs[19:26]}
    by_uid = {}
    for folder, ms in layout.items():
        uids = dc.append("alice", folder, [m.raw for m in ms])
        for u, m in zip(uids, ms):
            by_uid[(folder, u)] = m
    dc.set_flags("alice", "INBOX", [1, 2], ["\\Seen", "\\Flagged"])

    accounts = [
        H.Account("alice", "work", dc.url("imaps"), "alice", "pw-alice", ["*"], dc.ca_pem),
        # Never logs in: its directory must still be there, and .status says so.
        H.Account("alice", "broken", dc.url("imaps"), "alice", "wrong-password", ["INBOX"], dc.ca_pem),
    ]
    conf = ctx.config(accounts, users={"alice": "root", "carol": "root"})
    store = H.Store(ctx.store_dir())
    H.maildisk("sync", conf, expect=1)
    rows = store.messages("alice", "work", state=H.ACTIVE)
    check(len(rows) == len(msgs), "rows after sync", len(rows), len(msgs))

    mp = os.path.join(ctx.tmp, "mnt")
    marks = L.sync_marks(store)
    m = L.Mount(ctx, conf, mp).start()
    # The daemon's first sync changes nothing; let it finish so that
    # nothing moves while we look.
    L.wait_synced(store, [("alice", "work"), ("alice", "broken")], marks)

    # ---- the top of the tree
    check(sorted(os.listdir(mp)) == ["alice", "carol"], "users in /", os.listdir(mp))
    st = os.stat(mp)
    check(stat.S_IMODE(st.st_mode) == 0o711 and st.st_uid == 0, "root dir mode/owner",
          oct(st.st_mode), st.st_uid)
    for u in ("alice", "carol"):
        st = os.stat(os.path.join(mp, u))
        check(stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o500, "/%s mode" % u, oct(st.st_mode))
    check(sorted(os.listdir(os.path.join(mp, "alice"))) == [".status", "broken", "work"],
          "/alice", os.listdir(os.path.join(mp, "alice")))
    check(os.listdir(os.path.join(mp, "carol")) == [".status"], "/carol", os.listdir(os.path.join(mp, "carol")))
    check(os.listdir(os.path.join(mp, "alice", "broken")) == [], "broken account dir not empty")

    # ---- folders: what the server lists, as nested escaped components
    frows = {f["name"]: f for f in store.folders() if f["user"] == "alice" and f["account"] == "work"}
    for folder in layout:
        check(folder in frows, "no folder row for %r" % folder, sorted(frows))
        parts = [escape_component(c) for c in folder.split(sep)] if sep else [escape_component(folder)]
        d = os.path.join(mp, "alice", "work", *parts)
        check(os.path.isdir(d), "folder %r is not the directory %s" % (folder, d))
        check(L.folder_dir(mp, frows[folder]) == d, "folder dir", L.folder_dir(mp, frows[folder]), d)
    check(os.path.isdir(os.path.join(mp, "alice", "work", "Work")), "Work/ (parent of Projects)")

    # ---- every message: bytes, size, mtime, owner, mode, inode, name, xattrs
    bodies = {}
    for folder in layout:
        for uid, body in dc.fetch_bodies("alice", folder).items():
            bodies[(folder, uid)] = body
    with_parts = [r for r in rows if r["n_parts"]]
    check(len(with_parts) > len(rows) // 2, "messages with parts recorded", len(with_parts), len(rows))
    dirs = check_dirs(mp, store, frows, parts=True)
    seen_files = 0
    for folder, f in frows.items():
        d = L.folder_dir(mp, f)
        vis = {r["view_name"]: r for r in store.messages("alice", "work", folder) if r["state"] in (H.ACTIVE, H.RESTORED)}
        dst = os.stat(d)
        check(int(dst.st_mtime) == f["changed_at"], "%r dir mtime %d != changed_at %d" % (
            folder, dst.st_mtime, f["changed_at"]))
        for name, r in vis.items():
            p = os.path.join(d, name)
            key = (folder, int(r["remote_id"]))
            gen = by_uid[key]
            data = open(p, "rb").read()
            check(data == bodies[key], "%s: bytes differ from BODY.PEEK[] (%d vs %d)" % (p, len(data), len(bodies[key])))
            st = os.stat(p)
            check(st.st_size == len(data), "%s: st_size %d, read %d" % (p, st.st_size, len(data)))
            check(stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o400, "%s mode %o" % (p, st.st_mode))
            check(st.st_uid == 0 and st.st_nlink == 1, "%s owner/nlink" % p, st.st_uid, st.st_nlink)
            check(st.st_ino == r["id"] << 2, "%s: inode %d, row id %d" % (p, st.st_ino, r["id"]))
            want = header_date(gen.raw)
            if want is not None:
                check(int(st.st_mtime) == want, "%s: mtime %d, Date header %d" % (p, st.st_mtime, want))
            else:
                check(int(st.st_mtime) == r["internal_date"], "%s: mtime %d, INTERNALDATE %d" % (
                    p, st.st_mtime, r["internal_date"]))
            raw_name = name.encode()
            check(len(raw_name) <= 255 and name.endswith(".eml"), "name %r" % name)
            check(not re.search(r"[\x00-\x1f\x7f/]", name), "control character or slash in %r" % name)
            check(name.startswith(time.strftime("%Y-%m-%d %H%M", time.localtime(st.st_mtime))),
                  "name %r does not start with its date" % name)
            # xattrs
            want_x = {
                "user.mail.from": r["sender"], "user.mail.to": r["recipients"],
                "user.mail.subject": r["subject"], "user.mail.message_id": r["message_id"],
                "user.mail.flags": r["flags"], "user.mail.account": "work", "user.mail.folder": folder,
                "user.mail.date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
            }
            want_x = {k: v for k, v in want_x.items() if v}
            got_names = os.listxattr(p)
            check(set(got_names) == set(want_x), "%s: listxattr" % name, got_names, sorted(want_x))
            for k, v in want_x.items():
                check(os.getxattr(p, k) == v.encode(), "%s: %s = %r, want %r" % (name, k, os.getxattr(p, k), v))
            if gen.subject and gen.kind in ("plain", "rfc2047", "multipart", "nested", "long-header"):
                check(r["subject"] == gen.subject, "decoded subject %r, want %r" % (r["subject"], gen.subject))
            if gen.message_id:
                check(os.getxattr(p, "user.mail.message_id") == gen.message_id.encode(), "message_id xattr")
            seen_files += 1
    check(seen_files == len(msgs), "files seen", seen_files, len(msgs))

    inbox = L.folder_dir(mp, frows["INBOX"])
    one = os.path.join(inbox, sorted(L.messages_in(os.listdir(inbox)))[0])
    flagged = [r for r in store.messages("alice", "work", "INBOX") if r["remote_id"] == "1"][0]
    check("\\Flagged" in os.getxattr(os.path.join(inbox, flagged["view_name"]), "user.mail.flags").decode(),
          "flags xattr lacks \\Flagged")
    n, e, _ = L.xattr_raw(one, "user.mail.account", 0)
    check(n == 4, "getxattr size probe", n, e)
    n, e, _ = L.xattr_raw(one, "user.mail.account", 2)
    check(n == -1 and e == errno.ERANGE, "getxattr into 2 bytes", n, e)
    n, e, v = L.xattr_raw(one, "user.mail.account", 64)
    check(n == 4 and v == b"work", "getxattr", n, e, v)
    n, e, _ = L.xattr_raw(one, "user.mail.nothing", 64)
    check(n == -1 and e == errno.ENODATA, "unknown xattr", n, e)
    # Names outside user.mail.*: "not supported", which ls remembers per
    # device (it asks every file for the first two otherwise).
    for path in (one, inbox, os.path.join(mp, "alice", ".status")):
        for name in ("security.selinux", "system.posix_acl_access", "user.other", "trusted.x",
                     "security.capability"):
            n, e, _ = L.xattr_raw(path, name, 64)
            check(n == -1 and e == errno.EOPNOTSUPP, "%s on %s" % (name, path), n, e)
    n, e, _ = L.xattr_raw(inbox, "user.mail.from", 64)
    check(n == -1 and e == errno.ENODATA, "user.mail.from on a directory", n, e)
    total, e = L.listxattr_raw(one, 0)
    check(total == sum(len(x) + 1 for x in os.listxattr(one)), "listxattr size probe", total)
    n, e = L.listxattr_raw(one, 3)
    check(n == -1 and e == errno.ERANGE, "listxattr into 3 bytes", n, e)
    check(os.listxattr(inbox) == [], "xattrs on a directory", os.listxattr(inbox))

    # ---- .status
    sp = os.path.join(mp, "alice", ".status")
    text = open(sp, encoding="utf-8").read()
    log(".status:\n" + text)
    check(os.stat(sp).st_size == len(text.encode()), ".status st_size", os.stat(sp).st_size, len(text.encode()))
    check(stat.S_IMODE(os.stat(sp).st_mode) == 0o400, ".status mode")
    check("account work" in text and "account broken" in text, ".status accounts")
    for folder, ms in layout.items():
        check(re.search(r"folder %s\n\s+messages: %d\n" % (re.escape(folder), len(ms)), text),
              ".status lacks %r with %d messages" % (folder, len(ms)))
    check("not synced yet" in text, ".status: the broken account should show as not synced")
    check("last error: none" in text and "held deletions: none" in text, ".status fields")
    # Served by offset without an open handle: every slice read with
    # pread, the pages dropped first, is that slice of the whole, and
    # small reads put the whole together again.
    raw = text.encode()
    fd = os.open(sp, os.O_RDONLY)
    try:
        for off in (len(raw) // 2, 0, 1, 7, len(raw) - 1, len(raw), len(raw) + 10):
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("1\n")
            got = os.pread(fd, 13, off)
            check(got == raw[off:off + 13], ".status pread at %d" % off, got, raw[off:off + 13])
    finally:
        os.close(fd)
    with open(sp, "rb", buffering=0) as f:
        check(b"".join(iter(lambda: f.read(5), b"")) == raw, ".status read 5 bytes at a time")

    # ---- every write is EROFS
    def erofs(what, fn):
        try:
            fn()
        except OSError as e:
            check(e.errno == errno.EROFS, "%s: %s, want EROFS" % (what, e))
            return
        raise H.Failure("%s succeeded on the read-only mount" % what)
    erofs("open for writing", lambda: open(one, "r+b"))
    erofs("open for appending", lambda: open(one, "ab"))
    erofs("create", lambda: open(os.path.join(inbox, "new.eml"), "wb"))
    erofs("truncate", lambda: os.truncate(one, 0))
    erofs("unlink", lambda: os.unlink(one))
    erofs("rename", lambda: os.rename(one, one + ".x"))
    erofs("mkdir", lambda: os.mkdir(os.path.join(inbox, "sub")))
    erofs("rmdir", lambda: os.rmdir(os.path.join(mp, "alice", "broken")))
    erofs("symlink", lambda: os.symlink("x", os.path.join(inbox, "ln")))
    erofs("link", lambda: os.link(one, os.path.join(inbox, "hard")))
    erofs("chmod", lambda: os.chmod(one, 0o600))
    erofs("utime", lambda: os.utime(one, (0, 0)))
    erofs("setxattr", lambda: os.setxattr(one, "user.mail.subject", b"x"))
    erofs("removexattr", lambda: os.removexattr(one, "user.mail.subject"))
    erofs("mknod", lambda: os.mkfifo(os.path.join(inbox, "fifo")))
    sv = os.statvfs(mp)
    check(sv.f_namemax == 255 and sv.f_flag & os.ST_RDONLY, "statvfs", sv)

    # ---- tools reading out of the mount
    alice = os.path.join(mp, "alice")
    files = L.mount_files(alice)
    target = [r for r in rows if r["message_id"]][3]
    needle = target["message_id"]
    want = sorted(p for p in files if needle.encode() in open(os.path.join(alice, p), "rb").read())
    p = subprocess.run(["grep", "-r", "-l", "-F", "--", needle, alice], stdout=subprocess.PIPE, timeout=60)
    got = sorted(os.path.relpath(x, alice) for x in p.stdout.decode().splitlines())
    check(p.returncode == 0 and got == want and got, "grep -r", got, want)

    inbox_msgs = sorted(L.messages_in(os.listdir(inbox)))
    ref = os.path.join(inbox, inbox_msgs[len(inbox_msgs) // 2])
    ref_m = os.stat(ref).st_mtime_ns
    want = sorted(k for k, s in files.items() if s.st_mtime_ns > ref_m)
    p = subprocess.run(["find", alice, "-type", "f", "-newer", ref], stdout=subprocess.PIPE, timeout=60)
    got = sorted(os.path.relpath(x, alice) for x in p.stdout.decode().splitlines())
    check(p.returncode == 0 and got == want, "find -newer", got, want)
    check(0 < len(got) < len(files), "find -newer should select some files, not all", len(got), len(files))

    out = os.path.join(ctx.tmp, "copies")
    os.mkdir(out)
    copiers = [("cp -a", ["cp", "-a", alice + "/work", os.path.join(out, "cp")], os.path.join(out, "cp"))]
    if L.have("rsync"):
        copiers.append(("rsync -a", ["rsync", "-a", alice + "/work/", os.path.join(out, "rsync") + "/"],
                        os.path.join(out, "rsync")))
    else:
        log("rsync is not installed: rsync -a not tested")
    src = L.mount_files(os.path.join(alice, "work"))
    for what, argv, dest in copiers:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        check(p.returncode == 0, "%s failed" % what, p.stderr.decode(errors="replace"))
        copied = L.mount_files(dest)
        check(set(copied) == set(src), "%s: file set differs" % what, sorted(set(copied) ^ set(src))[:5])
        for rel, s in src.items():
            c = copied[rel]
            check(c.st_size == s.st_size and int(c.st_mtime) == int(s.st_mtime),
                  "%s: %s size/mtime differ" % (what, rel))
            check(open(os.path.join(dest, rel), "rb").read() == open(os.path.join(alice, "work", rel), "rb").read(),
                  "%s: %s bytes differ" % (what, rel))
        log("%s copied %d files" % (what, len(copied)))

    # ---- idle CPUs kept awake while the mount serves, and only then
    emls = [os.path.join(alice, "work", r) for r in src if r.endswith(".eml")]
    check(len(emls) == len(msgs), "messages to read", len(emls), len(msgs))
    if os.path.exists(L.CPU_LATENCY_DEVICE):
        held, after = L.cpu_latency_during_reads(m.pid, emls)
        check(held, "the daemon did not hold %s while serving reads" % L.CPU_LATENCY_DEVICE)
        check(not after, "the daemon still holds %s 0.5 s after the last request" % L.CPU_LATENCY_DEVICE)
    else:
        log("%s is missing: keep_cpus_awake not tested" % L.CPU_LATENCY_DEVICE)

    # ---- one writer per store
    mp2 = os.path.join(ctx.tmp, "mnt2")
    os.mkdir(mp2)
    r = H.maildisk("mount", conf, "-f", mp2, timeout=30)
    check(r.rc != 0 and str(m.pid) in r.text, "a second mount of the store must refuse, naming pid %d" % m.pid)
    check(not L.in_mount_table(mp2), "second mount point is mounted")

    # ---- inode numbers survive a remount
    def inodes():
        out = {}
        for dp, dns, fns in os.walk(mp):
            for n in dns + fns:
                q = os.path.join(dp, n)
                out[os.path.relpath(q, mp)] = os.lstat(q).st_ino
        return out
    before = inodes()
    check(len(set(before.values())) == len(before), "inode numbers not unique")
    m.unmount()
    m2 = L.Mount(ctx, conf, mp).start()
    after = inodes()
    check(before == after, "inode numbers changed across a remount",
          [(k, before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)][:5])
    m2.unmount()

    # ---- parts = no in [store]: the messages alone, the old link counts,
    # the same inode numbers for what is still shown
    conf_off = ctx.config(accounts, name="noparts.conf", users={"alice": "root", "carol": "root"},
                          extra_store={"parts": "no"}, extra_mount={"keep_cpus_awake": "no"})
    m3 = L.Mount(ctx, conf_off, mp).start()
    if os.path.exists(L.CPU_LATENCY_DEVICE):
        held, _ = L.cpu_latency_during_reads(m3.pid, emls, 0.5)
        check(not held, "keep_cpus_awake = no, but the daemon held %s" % L.CPU_LATENCY_DEVICE)
    check(check_dirs(mp, store, frows, parts=False) == dirs, "directories with parts = no")
    off = inodes()
    shown = {k: v for k, v in before.items() if not (v & 3 == 1 and v != 1)}   # no part inodes
    check(off == shown and len(shown) < len(before), "with parts = no: the tree without the parts, "
          "same inode numbers", sorted(set(off) ^ set(shown))[:5])
    m3.unmount()

    # ---- mount points that cannot work are refused, said why
    inside = os.path.join(store.root, "mnt")
    os.mkdir(inside)
    for bad, said in ((store.root, "would hide the store"), (inside, "is inside the store"),
                      (conf, "is not a directory")):
        try:
            r = H.maildisk("mount", conf, "-f", bad, timeout=30)
        finally:
            if L.in_mount_table(bad):
                subprocess.run(["umount", "-l", bad])
        check(r.rc == 1 and said in r.err, "mount at %s: want exit 1 and %r" % (bad, said), r.rc, r.err[-600:])
    os.rmdir(inside)


if __name__ == "__main__":
    H.run(main, deadline=280)
