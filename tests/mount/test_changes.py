#!/usr/bin/env python3
"""Changes reach a running mount: after SIGUSR1 (never a fixed sleep) a
message expunged upstream leaves `ls` and a cached stat at once although
entries are cached for a day, its parts directory with it, and its file is
in the store's trash; a
reader that had it open reads on to the end; a new message and a new folder
appear; directory mtimes advance; the user's on_change command runs with
its environment."""

import errno
import ctypes
import os
import re
import signal
import stat
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as L  # noqa: E402
from mountlib import H, check, log  # noqa: E402



def visible(store, folder):
    return {r["view_name"]: r for r in store.messages("alice", "work", folder)
            if r["state"] in (H.ACTIVE, H.RESTORED)}


_libc = ctypes.CDLL(None, use_errno=True)
SYS_getdents64 = {"x86_64": 217, "aarch64": 61}.get(os.uname().machine)


def getdents(fd, size=400):
    """One getdents64(2) with a small buffer: [(d_off, name)], [] at the end."""
    buf = ctypes.create_string_buffer(size)
    n = _libc.syscall(SYS_getdents64, fd, buf, size)
    if n < 0:
        raise OSError(ctypes.get_errno(), "getdents64")
    out, pos = [], 0
    while pos < n:
        d_off, reclen = struct.unpack_from("<qH", buf.raw, pos + 8)
        name = buf.raw[pos + 19:pos + reclen].split(b"\0", 1)[0].decode()
        out.append((d_off, name))
        pos += reclen
    return out


def main(ctx):
    L.require_fuse()
    dc = ctx.dovecot()
    msgs, (uids, _) = dc.populate({"alice": "pw-alice"}, [("alice", "INBOX", 10), ("alice", "Archive", 3)],
                                  16, seed=77, max_size=200000)

    marker = os.path.join(ctx.tmp, "on_change.out")
    on_change = "/bin/sh -c 'echo \"$MAILDISK_USER $MAILDISK_MOUNT $HOME\" >> %s'" % marker
    conf = ctx.config([H.Account("alice", "work", dc.url("imaps"), "alice", "pw-alice", ["*"], dc.ca_pem)])
    with open(conf, "a") as f:
        f.write("\n")
    # on_change belongs in the [user] section, which write_config writes first.
    text = open(conf).read().replace("[user alice]\nuid = root\n",
                                     "[user alice]\nuid = root\non_change = %s\n" % on_change)
    with open(conf, "w") as f:
        f.write(text)
    store = H.Store(ctx.store_dir())
    H.maildisk("sync", conf, expect=0)

    mp = os.path.join(ctx.tmp, "mnt")
    marks = L.sync_marks(store)
    m = L.Mount(ctx, conf, mp).start()
    L.wait_synced(store, [("alice", "work")], marks)
    check(not os.path.exists(marker), "on_change ran after a sync that changed nothing")

    inbox_row = store.folder("alice", "work", "INBOX")
    inbox = L.folder_dir(mp, inbox_row)
    acct = os.path.join(mp, "alice", "work")
    before = visible(store, "INBOX")
    # Fill the kernel's caches: entries, attributes, pages.
    want = L.listing(before.values())
    check(set(os.listdir(inbox)) == want, "initial listing", sorted(set(os.listdir(inbox)) ^ want))
    stats = {n: os.stat(os.path.join(inbox, n)) for n in want}
    gone_uids = uids[2:4]
    gone = {n for n, r in before.items() if int(r["remote_id"]) in gone_uids}
    check(len(gone) == 2, "rows of the UIDs to expunge", gone)
    # Their parts directories (cached above too) must leave with them.
    gone_dirs = {L.stem(n) for n in gone if before[n]["n_parts"]}
    check(gone_dirs, "no parts directory among the messages to expunge", gone)
    held_name = sorted(gone)[0]
    held_bytes = open(os.path.join(inbox, held_name), "rb").read()
    # Unbuffered: what it reads after the expunge comes from the kernel.
    reader = open(os.path.join(inbox, held_name), "rb", buffering=0)
    head = reader.read(100)
    # .status read now (its pages cached by the kernel: no open handles
    # means no direct I/O) must not be what a read after the sync shows.
    status_path = os.path.join(mp, "alice", ".status")
    status_before = open(status_path, encoding="utf-8").read()
    check(re.search(r"folder INBOX\n\s+messages: %d\n" % len(before), status_before),
          ".status before the sync", status_before)
    dir_mtime = os.stat(inbox).st_mtime
    acct_nlink = os.stat(acct).st_nlink
    check(sorted(os.listdir(acct)) == ["Archive", "INBOX"], "account listing", os.listdir(acct))

    # A listing begun before the change: read in small steps up to (and
    # past) the messages that will go, to go on after the sync.
    lister = None
    if SYS_getdents64:
        lister = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY)
        listed = []
        while not gone | gone_dirs <= {n for _, n in listed}:
            step = getdents(lister)
            check(step, "listing ended before the messages to expunge", listed)
            listed += step

    # ---- upstream: two expunged, one new message, one new folder
    L.wait_clock_past(inbox_row["changed_at"])
    dc.expunge("alice", "INBOX", gone_uids)
    dc.append("alice", "INBOX", msgs[13].raw)
    dc.append("alice", "Later", msgs[14].raw)
    marks = L.sync_marks(store)
    m.signal(signal.SIGUSR1)
    log("sent SIGUSR1 to %d" % m.pid)

    def settled():
        names = L.messages_in(os.listdir(inbox))
        return not (names & gone) and len(names) == len(before) - 1 and names
    names = L.wait_for(settled, 30, "the expunged messages to leave and the new one to come")
    L.wait_synced(store, [("alice", "work")], marks)
    now = set(os.listdir(inbox))
    want = L.folder_listing(store, "alice", "work", "INBOX")
    check(now == want, "listing after the sync", sorted(now ^ want))
    check(not (now & gone_dirs), "parts directories of expunged messages still listed", now & gone_dirs)
    # .status shows the sync at once, whole, with the size stat reports.
    status_after = open(status_path, encoding="utf-8").read()
    check(re.search(r"folder INBOX\n\s+messages: %d\n" % (len(before) - 1), status_after),
          ".status after the sync still shows the old count", status_after)
    check(re.search(r"folder INBOX\n(\s+.*\n)*?\s+in trash: 2\n", status_after), ".status trash count",
          status_after)
    check(os.stat(status_path).st_size == len(status_after.encode()), ".status st_size after the sync")
    check(status_after.endswith("\n") and status_after.startswith("# maildisk status of alice\n"),
          ".status whole", status_after)

    new = names - set(before)  # names: the .eml files
    check(len(new) == 1, "new names", new)
    new_name = new.pop()
    check(open(os.path.join(inbox, new_name), "rb").read() ==
          dc.fetch_bodies("alice", "INBOX", "*").popitem()[1], "new message bytes")

    # The listing goes on after the change: every message that stayed is
    # listed exactly once (offsets name entries, not positions).
    if lister is not None:
        while True:
            step = getdents(lister)
            if not step:
                break
            listed += step
        os.close(lister)
        names_listed = [n for _, n in listed if n not in (".", "..")]
        for n in L.listing(r for v, r in before.items() if v not in gone):
            check(names_listed.count(n) == 1, "%r listed %d times across the change" % (
                n, names_listed.count(n)), names_listed)

    # A dentry the kernel held for a day is gone at once: notify_delete,
    # for the message and for its parts directory.
    for n in gone | gone_dirs:
        try:
            os.stat(os.path.join(inbox, n))
            raise H.Failure("stat of expunged %r still succeeds (stale kernel entry)" % n)
        except FileNotFoundError:
            pass
    for n in L.listing(r for v, r in before.items() if v not in gone):
        check(os.stat(os.path.join(inbox, n)).st_ino == stats[n].st_ino, "inode of %r changed" % n)

    # A reader that had it open reads on; the file is in trash. The page
    # cache is dropped first, so the rest comes from the daemon: a READ
    # with no open handle (no-open), which finds the file by its row.
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")
    rest = reader.read()
    reader.close()
    check(head + rest == held_bytes, "open reader lost data after the message was trashed")
    trashed = [r for r in store.messages("alice", "work", "INBOX", H.TRASHED)]
    check({r["view_name"] for r in trashed} == gone, "trashed rows", [r["view_name"] for r in trashed])
    for r in trashed:
        check(r["store_file"].startswith("trash/"), "trashed file %s not in trash/" % r["store_file"])
        data = open(store.path(r["store_file"]), "rb").read()
        check(len(data) == r["size"], "trash file size")
    held_row = [r for r in trashed if r["view_name"] == held_name][0]
    check(open(store.path(held_row["store_file"]), "rb").read() == held_bytes, "trash file bytes")

    # Directory mtimes follow the content (notmuch and mu rescan by them).
    new_mtime = os.stat(inbox).st_mtime
    check(new_mtime > dir_mtime, "INBOX mtime did not advance", dir_mtime, new_mtime)
    check(int(new_mtime) == store.folder("alice", "work", "INBOX")["changed_at"], "INBOX mtime vs changed_at")
    check(os.stat(os.path.join(mp, "alice")).st_mtime >= new_mtime, "/alice mtime below its folder's")

    # The new folder: the account's listing and link count were cached.
    check(sorted(os.listdir(acct)) == ["Archive", "INBOX", "Later"], "new folder", os.listdir(acct))
    check(os.stat(acct).st_nlink == acct_nlink + 1, "account nlink", os.stat(acct).st_nlink, acct_nlink)
    later = set(os.listdir(os.path.join(acct, "Later")))
    check(len(L.messages_in(later)) == 1 and later == L.folder_listing(store, "alice", "work", "Later"),
          "Later listing", later)

    # on_change ran once (or twice) as the user, with its environment.
    line = L.wait_for(lambda: os.path.exists(marker) and open(marker).read(), 20, "on_change output")
    want = "alice %s %s" % (os.path.join(mp, "alice"), os.path.expanduser("~root"))
    check(line.splitlines()[0] == want, "on_change environment", line, want)

    # A .status read after the sync shows the trash.
    text = open(os.path.join(mp, "alice", ".status")).read()
    check("in trash: 2" in text, ".status after trashing", text)

    # A sync that changes no mail changes only times in .status: a text of
    # the same size. The kernel keeps .status pages (no open handles, no
    # direct I/O); a read must show the new text, not the cached old one.
    old_text = open(status_path, encoding="utf-8").read()
    last = L.wait_synced(store, [("alice", "work")])[("alice", "work")]
    L.wait_clock_past(last["finished_at"])
    marks = L.sync_marks(store)
    m.signal(signal.SIGUSR1)
    row = L.wait_synced(store, [("alice", "work")], marks)[("alice", "work")]
    check(row["finished_at"] > last["finished_at"], "the second sync's time", row, last)
    new_text = open(status_path, encoding="utf-8").read()
    want = "last run: %s, ok\n" % time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(row["finished_at"]))
    check(want in new_text, ".status shows a stale last run", want, new_text)
    log(".status %d bytes before, %d after a sync that changed no mail" % (len(old_text), len(new_text)))

    # Nothing of this changed what is a write.
    try:
        os.unlink(os.path.join(inbox, new_name))
        raise H.Failure("unlink succeeded")
    except OSError as e:
        check(e.errno == errno.EROFS, "unlink errno", e)
    check(stat.S_IMODE(os.stat(os.path.join(inbox, new_name)).st_mode) == 0o400, "new file mode")
    m.unmount()


if __name__ == "__main__":
    H.run(main, deadline=240)
