#!/usr/bin/env python3
"""Bad messages through a real sync, and back out through the mount.

The same set of hostile messages goes to a private Dovecot (which stores
what it accepts, and turns NUL into 0x80) and to the scripted fake server
(which serves the bytes exactly as written, so a 0-byte message and raw
NULs reach maildisk too): no Date, no Message-ID, no Subject, 0 bytes,
only headers (no blank line), 8-bit and invalid UTF-8 headers, subjects
that try to escape ("../../x", "/", control characters, bidi overrides,
encoded words that decode to '/' and NUL), a 1 MB header line and a 1 MB
Subject, NUL bytes, bare LF line ends, and one 50 MB message.

After one `maildisk sync`:
  - every message has one visible row whose file is byte-exact: equal to
    what BODY.PEEK[] returns from Dovecot, and to the raw bytes from the
    fake server;
  - every name is sane: at most 255 bytes, valid UTF-8, no '/', no NUL or
    other control character, not "." or "..", ending in ".eml", unique
    in its folder;
  - the peak RSS of the sync stays under 32 MiB although it stored a 50 MB
    message (not checked in an ASan build);
then, when `maildisk mount -f` comes up here, each file read back through
the mount equals the same bytes, its size is exact, and its extended
attributes can be read (and are valid UTF-8). Without a usable FUSE mount
that part is skipped with a note."""

import base64
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, check, log  # noqa: E402

USER = "alice"
RSS_LIMIT_KB = 32 * 1024
BIG = 50 * 1000 * 1000


def msg(headers, body=b"body line\r\n", eol=b"\r\n"):
    return eol.join(headers) + eol + eol + body


def big_message():
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789=\r\n"
    head = msg([b"From: big@example.org", b"Subject: fifty megabytes", b"Date: Mon, 1 Jan 2024 10:00:00 +0000",
                b"Message-ID: <big@maildisk.test>"], b"")
    n = (BIG - len(head)) // len(line)
    return head + line * n + b"x" * (BIG - len(head) - n * len(line) - 2) + b"\r\n"


def cases():
    """[(name, bytes, dovecot)]: dovecot False for what only the fake server serves."""
    date = b"Date: Tue, 2 Jan 2024 11:22:33 +0100"
    frm = b"From: Bad Sender <bad@example.org>"
    qp = lambda s: b"=?UTF-8?B?" + base64.b64encode(s) + b"?="   # noqa: E731
    out = [
        ("no-date", msg([frm, b"Subject: no date here", b"Message-ID: <nodate@x>"]), True),
        ("no-message-id", msg([frm, date, b"Subject: no message-id"]), True),
        ("no-subject", msg([frm, date, b"Message-ID: <nosubj@x>"]), True),
        ("no-headers-at-all", b"\r\njust a body, no header at all\r\n", True),
        ("only-headers", frm + b"\r\n" + date + b"\r\nSubject: only headers, no blank line\r\n", True),
        ("only-headers-no-eol", frm + b"\r\nSubject: only headers, no final line end", True),
        ("8bit-latin1", msg([b"From: Ren\xe9 <r@x>", date, b"Subject: caf\xe9 cr\xe8me \xa4"]), True),
        ("8bit-utf8", msg([b"From: J\xc3\xbcrgen <j@x>", date, "Subject: Grüße 日本語 😀".encode()]), True),
        ("invalid-utf8", msg([frm, date, b"Subject: bad \xff\xfe \xc0\xaf \xed\xa0\x80 \xf8\x88\x80\x80\x80 end"]), True),
        ("escape-dotdot", msg([frm, date, b"Subject: ../../../../etc/passwd"]), True),
        ("slash-only", msg([frm, date, b"Subject: /"]), True),
        ("dot", msg([frm, date, b"Subject: ."]), True),
        ("control-chars", msg([frm, date, b"Subject: a\x01b\x07c\x1bd\x7fe\tf"]), True),
        ("bidi", msg([frm, date, "Subject: invoice \u202egpj.exe".encode()]), True),
        ("encoded-slash-nul", msg([frm, date, b"Subject: " + qp(b"a/b\x00c\r\nd") + b" " +
                                   b"=?ISO-8859-1?Q?=2F=00=E9?="]), True),
        ("encoded-bad-charset", msg([frm, date, b"Subject: =?X-NOPE?B?////?= =?UTF-8?B?***?="]), True),
        ("long-utf8-subject", msg([frm, date, ("Subject: " + "日本語の件名" * 60).encode()]), True),
        ("folded-subject", msg([frm, date, b"Subject: folded\r\n  over\r\n\tthree lines"]), True),
        ("1mb-header-line", msg([frm, date, b"Subject: a 1 MB header follows",
                                 b"X-Long: " + b"y" * (1 << 20)]), True),
        ("1mb-subject", msg([frm, date, b"Subject: " + b"s" * (1 << 20)]), True),
        ("nul-bytes", msg([frm, date, b"Subject: nul\x00in subject"], b"body\x00with\x00nuls\r\n\x00\r\n"), True),
        ("bare-lf", msg([frm, date, b"Subject: bare LF line ends"], b"line one\nline two\n", eol=b"\n"), True),
        ("bare-cr", msg([frm, date, b"Subject: bare CR"], b"line one\rline two\r\n"), True),
        ("mixed-eol", frm + b"\n" + date + b"\r\nSubject: mixed\n\r\nbody\n", True),
        ("huge-date", msg([frm, b"Date: Fri, 31 Dec 99999 23:59:59 +9999", b"Subject: far future"]), True),
        ("negative-date", msg([frm, b"Date: Thu, 1 Jan 1901 00:00:00 -1200", b"Subject: before 1970"]), True),
        ("garbage-date", msg([frm, b"Date: yesterday-ish", b"Subject: bad date"]), True),
        ("50mb", big_message(), True),
        # Dovecot refuses to store an empty message; the fake server serves one.
        ("zero-bytes", b"", False),
    ]
    return out


def sane_name(name, what):
    b = name.encode("utf-8", errors="surrogateescape")
    check(len(b) <= 255, "%s: name of %d bytes" % (what, len(b)), name[:80])
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        raise F.Failure("%s: name is not valid UTF-8: %r" % (what, b[:120]))
    check("/" not in name and "\0" not in name, "%s: '/' or NUL in name %r" % (what, name[:120]))
    check(not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in name),
          "%s: control character in name %r" % (what, name[:120]))
    check(name not in (".", "..") and not name.startswith("."), "%s: name %r" % (what, name))
    check(name.endswith(".eml"), "%s: name %r does not end in .eml" % (what, name[:120]))


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user(USER, "pw-bad")
    fake = F.FakeImap(USER, "pw-fake")
    ctx.stack.callback(fake.close)
    by_name = {}
    stored = []
    for name, raw, ok in cases():
        if ok:
            try:
                uid = dc.append(USER, "INBOX", raw)
                stored.append(name)
                by_name[("work", uid)] = name
            except RuntimeError as e:
                log("NOTE: Dovecot refuses %s (%d bytes): %s" % (name, len(raw), str(e)[:200]))
        uid = fake.folder("INBOX").add([raw])[0]
        by_name[("fake", uid)] = name
    log("Dovecot stored %d of %d bad messages; the fake server serves all %d" % (
        len(stored), sum(1 for c in cases() if c[2]), len(cases())))

    accounts = [H.Account(USER, "work", dc.url("imaps"), USER, "pw-bad", ["INBOX"], dc.ca_pem, timeout=60),
                F.account(USER, "fake", fake.url(), "pw-fake", timeout=60)]
    cfg = F.write_config(os.path.join(ctx.tmp, "maildisk.conf"), ctx.store_dir(), accounts)
    st = H.Store(ctx.store_dir())

    rc, out, err, rss = F.run_measured([H.maildisk_path(), "sync", "-c", cfg], timeout=240)
    for l in err.rstrip().splitlines()[-20:]:
        log("  " + l[:300])
    log("sync: exit %d, peak RSS %d KiB (VmHWM)" % (rc, rss))
    check(not H.SANITIZER_RE.search(err), "sanitizer report", err[-3000:])
    check(rc == 0, "the sync of bad messages exited %d" % rc)
    if F.sanitized():
        log("NOTE: ASan build: peak RSS not checked")
    else:
        check(rss < RSS_LIMIT_KB, "peak RSS of the sync %d KiB, limit %d KiB (a 50 MB message)" % (rss, RSS_LIMIT_KB))

    # Bytes as the servers give them.
    want = {}
    dv = dc.fetch_bodies(USER, "INBOX")
    for uid, b in dv.items():
        want[("work", uid)] = b
    for uid, b in fake.folders["INBOX"].by_uid().items():
        want[("fake", uid)] = b
    rows = {}
    for r in F.visible_rows(st):
        key = (r["f_account"], int(r["remote_id"]))
        check(key not in rows, "two rows for %s" % (key,))
        rows[key] = r
    check(set(rows) == set(want), "rows differ from the servers",
          "missing", sorted(set(want) - set(rows)), "extra", sorted(set(rows) - set(want)))
    names = {}
    for key, r in rows.items():
        what = "%s %s (%s)" % (key[0], key[1], by_name[key])
        data = st.read(r)
        check(len(data) == len(want[key]) and data == want[key], "%s: stored file is not the message (%d vs %d "
              "bytes)" % (what, len(data), len(want[key])))
        check(r["size"] == len(data), "%s: row size %d, file %d" % (what, r["size"], len(data)))
        sane_name(r["view_name"], what)
        check((r["f_account"], r["view_name"]) not in names, "%s: name %r already taken by %s" % (
            what, r["view_name"], names.get((r["f_account"], r["view_name"]))))
        names[(r["f_account"], r["view_name"])] = what
        if by_name[key] in ("escape-dotdot", "slash-only", "bidi", "control-chars"):
            log("  %-22s -> %r" % (by_name[key], r["view_name"]))
    F.check_store(st, lambda r: None, "after the sync")
    log("%d messages stored byte-exact under sane names" % len(rows))

    mp = os.path.join(ctx.tmp, "mnt")
    mountlib = F.mountlib()
    marks = mountlib.sync_marks(st) if mountlib else {}
    m = F.try_mount(ctx, cfg, mp)
    if m is None:
        return
    # The mount syncs on start; let that finish (it changes nothing).
    mountlib.wait_synced(st, [(USER, "work"), (USER, "fake")], marks, timeout=120)
    n = 0
    problems = []
    for key, r in rows.items():
        what = "%s %s (%s)" % (key[0], key[1], by_name[key])
        fdir = mountlib.folder_dir(mp, st.folder(USER, key[0], "INBOX"))
        p = os.path.join(fdir, r["view_name"])
        s = os.stat(p)
        if by_name[key] in ("no-date", "huge-date", "negative-date", "garbage-date", "zero-bytes") and key[0] == "work":
            log("  %-14s mtime %d  %r" % (by_name[key], s.st_mtime, r["view_name"]))
        # mtime is the Date header's time, else INTERNALDATE: never before
        # 1970 or after 9999 (tools choke on those), whatever the header says.
        if not 0 <= s.st_mtime < 253402300800:
            problems.append("%s: mtime %d" % (what, s.st_mtime))
        check(s.st_size == len(want[key]), "%s: size through the mount %d, message %d" % (
            what, s.st_size, len(want[key])))
        h = hashlib.sha256()
        got = 0
        with open(p, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
                got += len(b)
        check(got == len(want[key]) and h.digest() == hashlib.sha256(want[key]).digest(),
              "%s: bytes read through the mount differ from the message" % what)
        for a in os.listxattr(p):
            try:
                v = os.getxattr(p, a)
            except OSError as e:
                # Listed but unreadable: an indexer gets an error for this file.
                problems.append("%s: getxattr %s: %s" % (what, a, e.strerror))
                continue
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                problems.append("%s: xattr %s is not valid UTF-8: %r" % (what, a, v[:100]))
        n += 1
    names_in_mount = set()
    for key in rows:
        fdir = mountlib.folder_dir(mp, st.folder(USER, key[0], "INBOX"))
        listing = os.listdir(fdir)
        for x in listing:
            if os.path.isdir(os.path.join(fdir, x)):
                # a message's parts directory, beside its .eml (parts.h)
                check(x + ".eml" in listing, "a directory %r without its .eml" % x)
            else:
                names_in_mount.add((key[0], x))
    check(names_in_mount == set(names), "names in the mount differ from the index",
          sorted(names_in_mount ^ set(names))[:10])
    log("%d messages read back through the mount byte-exact" % n)
    m.unmount()
    for p in problems:
        log("PROBLEM: " + p)
    check(not problems, "%d extended attribute problems through the mount" % len(problems), problems[:4])


if __name__ == "__main__":
    H.run(main, deadline=280)
