#!/usr/bin/env python3
"""A damaged index (a page of index.db overwritten, as a bad disk or a
careless copy would leave it).

1. After a sync of two folders and three messages trashed, one page of the
   index (the messages_folder_state b-tree) is overwritten with garbage.
2. `maildisk status`, `sync`, `check --store` and `mount` each exit 1
   and say that the index is damaged and what to do, once, instead of an
   SQL statement; none of them removes, adds or changes a file under mail/
   or trash/.
3. The README's repair (sqlite3's .dump into a new file, with the old
   schema version, put in place) gives back a store that `check --store` finds in agreement, whose next
   sync converges with the server without fetching anything again, and
   whose trash still lists the three messages."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

DAMAGED = re.compile(r"index\.db is damaged \(.*\)\. The mail files are not affected.*"
                     r"If the index is damaged")


def page_of(db, name):
    """The first page of b-tree name in db (sqlite3's dbstat), and the page size."""
    out = subprocess.run(["sqlite3", db, "SELECT pageno FROM dbstat WHERE name = '%s' ORDER BY pageno LIMIT 1;"
                          "PRAGMA page_size;" % name], check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


def damage(db, name):
    page, size = page_of(db, name)
    with open(db, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(b"\xde\xad\xbe\xef" * (size // 4))
        f.flush()
        os.fsync(f.fileno())
    h.log("overwrote page %d (%s) of %s" % (page, name, db))


def recover(db):
    """The README's repair: the tables dumped into a new file with the
    schema version of the old one, put in place of it. (sqlite3's .recover
    needs sqlite_dbpage, which Debian's sqlite3 does not have.)"""
    new = db + ".rebuilt"
    version = subprocess.run(["sqlite3", db, "PRAGMA user_version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    dump = subprocess.run(["sqlite3", db, ".dump"], check=True, capture_output=True).stdout
    subprocess.run(["sqlite3", new], input=dump, check=True, capture_output=True)
    subprocess.run(["sqlite3", new, "PRAGMA user_version = %d" % int(version)], check=True)
    os.replace(new, db)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("alice", "pw-damaged")
    msgs = mailgen.generate(40, seed=41, max_size=6000)
    dc.append("alice", "INBOX", [m.raw for m in msgs[:30]])
    dc.append("alice", "Archive", [m.raw for m in msgs[30:]])
    acct = h.Account("alice", "work", dc.url("imaps"), "alice", "pw-damaged", ("*",), dc.ca_pem)
    cfg = ctx.config([acct])
    h.maildisk("sync", cfg, expect=0)
    dc.expunge("alice", "INBOX", dc.uids("alice", "INBOX")[:3])
    h.maildisk("sync", cfg, expect=0)
    st = h.Store(ctx.store_dir())
    h.check(len(st.messages(state=h.TRASHED)) == 3, "test setup: three messages in the trash")
    files = st.files()
    db = os.path.join(st.root, "index.db")
    h.check(not os.path.exists(db + "-wal") or os.path.getsize(db + "-wal") == 0,
            "test setup: the WAL was not checkpointed at close")

    damage(db, "messages_folder_state")
    mp = os.path.join(ctx.tmp, "mnt")
    os.mkdir(mp)
    for cmd in (("status",), ("sync",), ("check", "--store"), ("mount", "-f", mp)):
        try:
            r = h.maildisk(cmd[0], cfg, *cmd[1:], expect=1, timeout=30)
        finally:
            if os.path.ismount(mp):
                subprocess.run(["umount", "-l", mp])
        said = r.err + r.out
        h.check(DAMAGED.search(said), "%s: does not say the index is damaged and what to do" % cmd[0], said[-1500:])
        h.check(len(DAMAGED.findall(said)) == 1, "%s: said more than once" % cmd[0], said[-1500:])
        h.check("SELECT" not in said and "INSERT" not in said, "%s: an SQL statement in the error" % cmd[0],
                said[-1500:])
        h.check(st.files() == files, "%s: changed the files of a store whose index is damaged" % cmd[0])

    recover(db)
    r = h.maildisk("check", cfg, "--store", expect=0)
    h.check("the index and the files agree" in r.out, "check --store after the repair", r.out)
    h.maildisk("sync", cfg, expect=0)
    h.check(st.files() == files, "the sync after the repair fetched or removed files")
    h.assert_cur_matches_rows(st)
    for folder in ("INBOX", "Archive"):
        rows = st.messages("alice", "work", folder, h.ACTIVE)
        h.check(sorted(int(r["remote_id"]) for r in rows) == sorted(dc.uids("alice", folder)),
                "%s: rows differ from the server after the repair" % folder)
    r = h.maildisk("trash", cfg, "list", expect=0)
    h.check(len([x for x in r.out.splitlines() if re.match(r"^\s*\d+\s", x)]) == 3,
            "trash list after the repair", r.out)


if __name__ == "__main__":
    h.run(main, deadline=120)
