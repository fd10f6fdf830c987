#!/usr/bin/env python3
"""Flags for Maildir readers of the store: each store file's info suffix
(":2,<letters>") follows the message's IMAP flags, at the first sync and
after flags change on the server, so mutt, mu and notmuch reading the store
see the current flags.

1. Four messages with no flags, \\Seen, \\Seen and $Label: after the first
   sync Python's mailbox.Maildir reads flags "", "S", "S", "".
2. On the server: +\\Flagged on the first two, -\\Seen on the third,
   +\\Answered on the fourth. After the next sync the index has the new
   flags, Maildir reads "F", "FS", "", "R", every file still holds the
   server's bytes, and cur/ has exactly one file per message.
3. A sync without changes renames nothing."""
import mailbox
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402


def maildir_flags(store, folder_row):
    """{UID: flag letters} as a Maildir reader sees the folder (its files
    matched to rows by the unique part of the name)."""
    md = mailbox.Maildir(store.path(folder_row["path"]), factory=None, create=False)
    uid_of = {os.path.basename(r["store_file"]).split(":")[0]: int(r["remote_id"])
              for r in store.messages("ann", "mail", "INBOX", h.ACTIVE)}
    return {uid_of[key]: md[key].get_flags() for key in md.keys()}


def rows_by_uid(store):
    return {int(r["remote_id"]): r for r in store.messages("ann", "mail", "INBOX", h.ACTIVE)}


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("ann", "pw-ann")
    msgs = mailgen.generate(4, seed=2024, max_size=20000)
    for m, flags in zip(msgs, [(), ("\\Seen",), ("\\Seen",), ("$Label",)]):
        dc.append("ann", "INBOX", m.raw, flags=flags)
    uids = dc.uids("ann", "INBOX")
    conf = ctx.config([h.Account("ann", "mail", dc.url("imaps"), "ann", "pw-ann", ["INBOX"], dc.ca_pem)])
    store = h.Store(ctx.store_dir())

    # 1.
    h.maildisk("sync", conf, expect=0)
    folder = store.folder("ann", "mail", "INBOX")
    got = maildir_flags(store, folder)
    h.check(got == dict(zip(uids, ["", "S", "S", ""])), "flags after the first sync", got)

    # 2.
    dc.set_flags("ann", "INBOX", uids[:2], ["\\Flagged"])
    dc.set_flags("ann", "INBOX", uids[3:4], ["\\Answered"])
    with dc.imap("ann") as c:
        dc._select(c, "INBOX", readonly=False)
        dc._ok(*c.uid("STORE", str(uids[2]), "-FLAGS.SILENT", "(\\Seen)"), "UID STORE -FLAGS")
    before = {uid: r["store_file"] for uid, r in rows_by_uid(store).items()}
    h.maildisk("sync", conf, expect=0)
    rows = rows_by_uid(store)
    server = dc.flags("ann", "INBOX")
    for uid in uids:
        have = set((rows[uid]["flags"] or "").split())
        h.check(have == set(server[uid]), "index flags of UID %d" % uid, have, server[uid])
    got = maildir_flags(store, folder)
    h.check(got == dict(zip(uids, ["F", "FS", "", "R"])), "flags after the server changed them", got)
    for uid in uids:
        h.check(rows[uid]["store_file"] != before[uid], "UID %d's file was renamed" % uid)
        h.check(not os.path.exists(store.path(before[uid])), "old name %s is gone" % before[uid])
    cur = os.listdir(os.path.join(store.path(folder["path"]), "cur"))
    h.check(len(cur) == 4, "one file per message in cur/", cur)
    h.assert_folder_matches(store, dc, "ann", "mail", "INBOX")
    h.assert_cur_matches_rows(store)

    # 3.
    files = {uid: r["store_file"] for uid, r in rows_by_uid(store).items()}
    h.maildisk("sync", conf, expect=0)
    h.check({uid: r["store_file"] for uid, r in rows_by_uid(store).items()} == files,
            "a sync without changes renames nothing")


if __name__ == "__main__":
    h.run(main)
