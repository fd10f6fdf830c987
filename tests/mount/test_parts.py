#!/usr/bin/env python3
"""Each message's parts as files beside its .eml (issue 15; the layout is
cache/parts.h's top comment), on a real mount of a store synced from the
harness Dovecot:

  1. A message with a part of every kind (partmail.kinds_message): the
     parts directory lists exactly the names parts.h gives (body.txt,
     body.html, attachments by name, RFC 2231 and RFC 2047 names decoded,
     "../../x" as x, a leading dot as _, a repeated name as "same (2).txt",
     an unnamed inline image as "part <n>.png", a nested message as
     forwarded.eml beside forwarded/); each file reads back as Python's
     email library decodes the stored message (attachments byte for byte,
     text bodies as UTF-8 with their CRLF line ends), with st_size right
     before the first read, the .eml's mtime, owner and mode, no write
     access, and the xattrs user.mail.content_type and user.mail.subject.
     A Latin-1 body reads back as UTF-8.
  2. Hostile mail (partmail.hostile_messages): the sync succeeds, every
     .eml is there and reads as the server sends it, every parts directory
     lists, every file in it reads to its st_size, every name is at most
     255 bytes of valid UTF-8 without '/' or control bytes, and the
     daemon's VmRSS stays under 64 MB.
  3. A 50 MB attachment reads back exact, the daemon's VmRSS sampled
     during the read staying under 64 MB.
  4. Expunged upstream and synced: the .eml and its parts directory are
     both gone; `maildisk trash restore` (mount stopped: one writer per
     store) brings both back.
  5. `parts = no` in a [user] section: that user's folders hold .eml files
     and no directory; the other user's still have theirs."""

import errno
import os
import signal
import stat
import sys
import threading
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as L  # noqa: E402
from mountlib import H, check, log  # noqa: E402

import mailgen  # noqa: E402
import partmail as P  # noqa: E402

# An ASan build's memory use means nothing: the limit holds for the real one.
RSS_LIMIT_KB = float("inf") if H.sanitized() else 64 * 1024
BIG = 50 * 1024 * 1024


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise H.Failure("no VmRSS for pid %d" % pid)


def msg_dir(mp, row):
    """The mount directory holding a message row's .eml."""
    return L.folder_dir(mp, {"path": row["f_path"]})


def parts_dir(eml):
    """The parts directory beside eml (<stem>.eml -> <stem>/)."""
    d = os.path.join(os.path.dirname(eml), L.stem(os.path.basename(eml)))
    if not os.path.isdir(d):
        check(False, "no parts directory %r beside %s (is issue 15's parts feature in this build?)"
              % (os.path.basename(d), os.path.basename(eml)),
              "the folder holds:", sorted(os.listdir(os.path.dirname(eml)))[:20])
    return d


def check_name(name, where):
    raw = os.fsencode(name)
    check(0 < len(raw) <= 255, "%s: name of %d bytes" % (where, len(raw)), name[:80])
    check(not any(b < 0x20 or b == 0x7F for b in raw) and b"/" not in raw,
          "%s: control byte or slash in %r" % (where, name[:80]))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise H.Failure("%s: name is not valid UTF-8: %r" % (where, raw[:80]))
    check(name not in (".", "..") and not name.startswith("."), "%s: name %r" % (where, name))


def walk(d):
    """{relative path: (lstat, bytes or None)} of everything under d: each
    entry's lstat is taken before it is read, each file read whole and
    checked against that st_size."""
    out = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        check_name(name, d)
        st = os.lstat(p)
        if stat.S_ISDIR(st.st_mode):
            out[name] = (st, None)
            for rel, v in walk(p).items():
                out[os.path.join(name, rel)] = v
            continue
        check(stat.S_ISREG(st.st_mode), "%s: neither file nor directory (mode %o)" % (p, st.st_mode))
        with open(p, "rb") as f:
            data = f.read()
        check(len(data) == st.st_size, "%s: st_size %d before the first read, %d bytes read" % (
            p, st.st_size, len(data)))
        out[name] = (st, data)
    return out


def xattr(p, name):
    try:
        return os.getxattr(p, name).decode()
    except OSError as e:
        raise H.Failure("getxattr %s %s: %s" % (p, name, e.strerror))


def check_file(p, st, eml_st, ctype, subject=None):
    check(int(st.st_mtime) == int(eml_st.st_mtime), "%s: mtime %d, the .eml's %d" % (
        p, st.st_mtime, eml_st.st_mtime))
    check((st.st_uid, st.st_gid) == (eml_st.st_uid, eml_st.st_gid), "%s: owner" % p, st.st_uid, st.st_gid)
    if stat.S_ISREG(st.st_mode):
        check(stat.S_IMODE(st.st_mode) == stat.S_IMODE(eml_st.st_mode), "%s: mode %o, the .eml's %o" % (
            p, stat.S_IMODE(st.st_mode), stat.S_IMODE(eml_st.st_mode)))
        try:
            open(p, "r+b").close()
            raise H.Failure("%s opened for writing" % p)
        except OSError as e:
            check(e.errno in (errno.EROFS, errno.EACCES), "%s: open for writing: %s" % (p, e))
    check(not st.st_mode & 0o222, "%s: write bits in mode %o" % (p, st.st_mode))
    if ctype:
        got = xattr(p, "user.mail.content_type")
        check(got == ctype, "%s: user.mail.content_type %r, expected %r" % (p, got, ctype))
    if subject:
        got = xattr(p, "user.mail.subject")
        check(got == subject, "%s: user.mail.subject %r, expected %r" % (p, got, subject))


def match_leaves(tree, prefix, leaves, names, raw_of_nested, eml_st, subject):
    """Checks the files of one parts directory (tree: walk() entries under
    prefix) against the parsed leaves and their expected names."""
    want = set()
    for leaf, (name, ctype) in zip(leaves, names):
        if name is None:
            found = [n for n in tree if os.path.dirname(n) == prefix.rstrip("/") and
                     os.path.basename(n).startswith("part ") and n.endswith(".png")]
            check(len(found) == 1, "%s: one 'part <n>.png' for the unnamed image" % prefix, found)
            name = os.path.basename(found[0])
            check(name[5:-4].isdigit(), "unnamed part's name %r" % name)
        rel = os.path.join(prefix, name)
        want.add(rel)
        check(rel in tree, "no %r in the parts directory" % rel, sorted(tree))
        st, data = tree[rel]
        expect = raw_of_nested if ctype == "message/rfc822" else P.expected_bytes(leaf)
        check(data == expect, "%s: %d bytes differ from Python's decoding (%d bytes)" % (
            rel, len(data), len(expect)), data[:60], expect[:60])
        check_file(rel, st, eml_st, ctype, subject)
    return want


def check_kinds(folder_dir, row, raw, top, nested):
    eml = os.path.join(folder_dir, row["view_name"])
    d = parts_dir(eml)
    eml_st = os.stat(eml)
    tree = {rel: v for rel, v in walk(d).items()}
    tree_abs = {os.path.join(d, rel): v for rel, v in tree.items()}
    msg = P.parse(raw)
    leaves = list(P.leaves(msg))
    check(len(leaves) == len(top), "leaves of the kinds message", len(leaves), len(top))
    want = match_leaves(tree_abs, d + "/", leaves, top, P.nested_raw(raw, msg), eml_st, row["subject"])
    # the nested message: its directory beside forwarded.eml, laid out the same way
    fwd = [lf for lf in leaves if lf.get_content_type() == "message/rfc822"][0]
    inner = fwd.get_payload()[0]
    nd = os.path.join(d, "forwarded")
    check(nd in tree_abs and tree_abs[nd][1] is None, "no directory forwarded/ beside forwarded.eml",
          sorted(tree))
    check_file(nd, tree_abs[nd][0], eml_st, None)
    want.add(nd)
    want |= match_leaves(tree_abs, nd + "/", list(P.leaves(inner)), nested, None, eml_st, None)
    check(set(tree_abs) == want, "parts directory: unexpected entries", sorted(set(tree_abs) - want))
    body = tree_abs[os.path.join(d, "body.txt")][1]
    check(b"\r\n" in body and P.BODY_WORD.encode() in body and "na\u00efve".encode() in body,
          "body.txt keeps CRLF line ends and is UTF-8", body[:80])
    log("kinds message: %d entries in %s, all as Python decodes them" % (len(tree), d))


def check_latin1(folder_dir, row, raw):
    d = parts_dir(os.path.join(folder_dir, row["view_name"]))
    tree = walk(d)
    check(sorted(tree) == ["body.txt"], "Latin-1 message's parts", sorted(tree))
    want = P.parse(raw).get_content().encode("utf-8")
    check(tree["body.txt"][1] == want, "Latin-1 body.txt", tree["body.txt"][1], want)
    check("Caf\u00e9 cr\u00e8me".encode() in want, "the Latin-1 body as UTF-8", want)


def check_hostile(mp, store, dc, pid):
    """Part 2: returns the daemon's VmRSS (kB) after walking everything."""
    rows = store.messages("rita", "mail", "Hostile", H.ACTIVE)
    bodies = dc.fetch_bodies("rita", "Hostile")
    check(len(rows) == len(bodies), "Hostile: %d rows, %d on the server" % (len(rows), len(bodies)))
    d = msg_dir(mp, rows[0])
    n_dirs = n_files = 0
    for r in rows:
        eml = os.path.join(d, r["view_name"])
        with open(eml, "rb") as f:
            data = f.read()
        check(data == bodies[int(r["remote_id"])], "%s: bytes differ from BODY.PEEK[]" % eml)
        pd = os.path.join(d, L.stem(r["view_name"]))
        if not os.path.isdir(pd):
            log("hostile: %r has no parts directory" % r["subject"])
            continue
        tree = walk(pd)
        n_dirs += 1
        n_files += sum(1 for st, data in tree.values() if data is not None)
        check(len(tree) <= 1000, "%r: %d entries, over PARTS_MAX" % (r["subject"], len(tree)))
        if r["subject"] == "ten thousand parts":
            names = {os.path.basename(k) for k in tree}
            check("f.txt" in names and "f (2).txt" in names, "10,000 parts: f.txt, f (2).txt ...",
                  sorted(names)[:5])
        if r["subject"] == "a 1 MB file name":
            long = [k for k in tree if k.endswith(".txt")]
            check(len(long) == 2 and all(len(os.fsencode(k)) <= 255 for k in long),
                  "1 MB names cut to 255 bytes, .txt kept", [k[:40] for k in tree])
        if r["subject"] == "dot dot name":
            check({"x", "y"} <= set(tree), "../../x and ..\\..\\y as x and y", sorted(tree))
        rss = rss_kb(pid)
        check(rss < RSS_LIMIT_KB, "daemon VmRSS %d kB after %r" % (rss, r["subject"]))
    check(n_dirs > 0, "no hostile message has a parts directory")
    rss = rss_kb(pid)
    log("hostile: %d messages, %d parts directories, %d files read; daemon VmRSS %d kB" % (
        len(rows), n_dirs, n_files, rss))
    return rss


def check_big(mp, store, data, pid):
    rows = store.messages("rita", "mail", "Big", H.ACTIVE)
    check(len(rows) == 1, "Big: rows", len(rows))
    d = parts_dir(os.path.join(msg_dir(mp, rows[0]), rows[0]["view_name"]))
    p = os.path.join(d, "big.bin")
    check(os.stat(p).st_size == len(data), "big.bin st_size", os.stat(p).st_size, len(data))
    peak, done = [rss_kb(pid)], threading.Event()

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_kb(pid))
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    got = bytearray()
    t0 = time.monotonic()
    try:
        with open(p, "rb", buffering=0) as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                got += b
    finally:
        done.set()
        t.join()
    check(bytes(got) == data, "big.bin: %d bytes read, differ from the 50 MB attachment" % len(got))
    check(peak[0] < RSS_LIMIT_KB, "daemon VmRSS peaked at %d kB reading a 50 MB attachment" % peak[0])
    log("50 MB attachment read exact in %.2fs, daemon VmRSS peak %d kB" % (time.monotonic() - t0, peak[0]))


def kinds_row(store, dc):
    bodies = dc.fetch_bodies("rita", "INBOX")
    for r in store.messages("rita", "mail", "INBOX"):
        if r["state"] in (H.ACTIVE, H.RESTORED) and r["subject"] == P.SUBJECT:
            # A restored row has no remote id any more.
            return r, bodies.get(int(r["remote_id"])) if r["remote_id"] else None
    raise H.Failure("no visible row for the kinds message")


def deliver(ctx, dc):
    t0 = datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc)
    kinds_raw, top, nested = P.kinds_message(t0)
    latin = P.latin1_message(t0.replace(hour=11))
    filler = [m.raw for m in mailgen.generate(5, seed=15, max_size=40000)]
    dc.add_user("rita", "pw-rita")
    dc.add_user("bob", "pw-bob")
    dc.append("rita", "INBOX", [kinds_raw, latin] + filler)
    dc.append("rita", "Hostile", list(P.hostile_messages().values()) +
              [m.raw for m in mailgen.generate(12, seed=16, max_size=200000)])
    big_raw, big_data = P.big_message(t0, BIG)
    dc.append("rita", "Big", big_raw)
    dc.append("bob", "INBOX", [P.plain_message("Bob's note", "hi bob\n", t0), kinds_raw])
    return (top, nested), big_data


def write_conf(ctx, dc, name, bob_parts=None):
    accts = [H.Account("rita", "mail", dc.url("imaps"), "rita", "pw-rita", ["INBOX", "Hostile", "Big"],
                       dc.ca_pem, timeout=120),
             H.Account("bob", "mail", dc.url("imaps"), "bob", "pw-bob", ["INBOX"], dc.ca_pem)]
    conf = ctx.config(accts, name=name)
    if bob_parts is not None:
        with open(conf) as f:
            text = f.read()
        text = text.replace("[user bob]\nuid = root\n", "[user bob]\nuid = root\nparts = %s\n" % bob_parts)
        check("parts = " in text, "no [user bob] section to add parts = to")
        H.write_file(conf, text)
    return conf


def main(ctx):
    L.require_fuse()
    dc = ctx.dovecot()
    (top, nested), big_data = deliver(ctx, dc)
    conf = write_conf(ctx, dc, "maildisk.conf")
    store = H.Store(ctx.store_dir())
    mp = os.path.join(ctx.tmp, "mnt")
    accounts = [("rita", "mail"), ("bob", "mail")]

    # 1-3, on the first mount
    m = L.Mount(ctx, conf, mp).start()
    L.wait_synced(store, accounts, timeout=180)
    rss0 = rss_kb(m.pid)
    log("daemon VmRSS after the first sync: %d kB" % rss0)
    check(rss0 < RSS_LIMIT_KB, "daemon VmRSS %d kB after syncing the hostile set" % rss0)
    row, raw = kinds_row(store, dc)
    inbox = msg_dir(mp, row)
    check_kinds(inbox, row, raw, top, nested)
    lat = [r for r in store.messages("rita", "mail", "INBOX", H.ACTIVE) if r["subject"] == "Latin-1 body"]
    check(len(lat) == 1, "the Latin-1 row")
    check_latin1(inbox, lat[0], dc.fetch_body("rita", "INBOX", int(lat[0]["remote_id"])))
    for r in store.messages("rita", "mail", "INBOX", H.ACTIVE):
        walk(parts_dir(os.path.join(inbox, r["view_name"])))
    check_hostile(mp, store, dc, m.pid)
    check_big(mp, store, big_data, m.pid)

    # 4. expunged upstream: both go; restored: both come back
    eml = os.path.join(inbox, row["view_name"])
    marks = L.sync_marks(store)
    dc.expunge("rita", "INBOX", [int(row["remote_id"])])
    m.signal(signal.SIGUSR1)
    L.wait_synced(store, [("rita", "mail")], marks)
    check(not os.path.exists(eml), "%s still there after its expunge was synced" % eml)
    check(not os.path.exists(eml[:-4]), "the parts directory %s outlived its message" % eml[:-4])
    m.unmount()
    m.check_log()
    H.maildisk("trash", conf, "restore", str(row["id"]), expect=0)

    # 5. restored, and bob with parts = no
    conf2 = write_conf(ctx, dc, "maildisk-noparts.conf", bob_parts="no")
    marks = L.sync_marks(store)   # before the mount: its first sync may end at once
    m = L.Mount(ctx, conf2, mp).start()
    L.wait_synced(store, accounts, marks)
    row2, raw2 = kinds_row(store, dc)
    check(row2["id"] == row["id"], "the restored row", row2["id"], row["id"])
    check_kinds(inbox, row2, raw, top, nested)
    bob_rows = store.messages("bob", "mail", "INBOX", H.ACTIVE)
    bob_dir = msg_dir(mp, bob_rows[0])
    entries = os.listdir(bob_dir)
    check(sorted(entries) == sorted(r["view_name"] for r in bob_rows),
          "bob (parts = no): only .eml files", sorted(entries))
    check(not any(os.path.isdir(os.path.join(bob_dir, e)) for e in entries), "bob has a parts directory")
    parts_dir(os.path.join(inbox, row2["view_name"]))
    m.unmount()
    m.check_log()


if __name__ == "__main__":
    H.run(main, deadline=330)
