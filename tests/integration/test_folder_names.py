#!/usr/bin/env python3
"""Hostile and non-ASCII folder names stay inside the store.

Two servers, both with Dovecot's listescape plugin so that names Maildir++
would refuse can exist upstream:
  slash: hierarchy separator '/': "../x", "..", ".hidden", "a/b", "x.y"
  dot:   hierarchy separator '.': "a/b" (one name with a slash), "x.y"
Both also hold "Ärchiv", "日本語" and "%41" (modified UTF-7 on the wire).
With `folders = *`, every folder lands at mail/<user>/<account>/<path>,
where <path> is the names.h escaping of the name split on the server's
separator; the components decode back to the name; nothing in the store is
outside mail/, trash/ and the index files, and no symlink exists."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

COMMON = ["Ärchiv", "日本語", "%41"]
SERVERS = {
    "slash": ("/", ["../x", "..", ".hidden", "a/b", "x.y"] + COMMON),
    "dot": (".", ["a/b", "x.y"] + COMMON),
}
TOP_FILES = {"index.db", "index.db-wal", "index.db-shm", "index.db-journal", "lock"}


def main(ctx):
    accounts, servers = [], {}
    msgs = iter(mailgen.generate(40, seed=61, max_size=20000))
    for acct, (sep, names) in SERVERS.items():
        dc = ctx.dovecot(separator=sep, listescape=True)
        dc.add_user("alice", "pw-names")
        h.check(dc.separator_of("alice") == sep, "server separator", dc.separator_of("alice"), sep)
        for n in names + ["INBOX"]:
            dc.append("alice", n, next(msgs).raw)
        listed = dc.folders("alice")
        for n in names:
            h.check(n in listed, "%s: folder %r not on the server" % (acct, n), listed)
        servers[acct] = (dc, sep, names)
        accounts.append(h.Account("alice", acct, dc.url("imaps"), "alice", "pw-names", ["*"], dc.ca_pem))
    cfg = ctx.config(accounts)
    h.maildisk("sync", cfg, expect=0)
    st = h.Store(ctx.store_dir())
    root = os.path.realpath(st.root)

    # Every path in the store is where it may be.
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n)
            h.check(not os.path.islink(p), "symlink in the store", p)
            rp = os.path.realpath(p)
            h.check(rp.startswith(root + os.sep), "path escapes the store", p)
            rel = os.path.relpath(rp, root)
            top = rel.split(os.sep)[0]
            h.check(top in ("mail", "trash") or rel in TOP_FILES, "unexpected path in the store", rel)
            if top == "mail":
                h.check(not n.startswith("."), "hidden or dot component in the store", rel)

    by_path = {f["path"]: f for f in st.folders()}
    for acct, (dc, sep, names) in servers.items():
        prefix = "mail/alice/%s/" % acct
        for n in names + ["INBOX"]:
            want = prefix + h.folder_path(n, sep)
            h.check(want in by_path, "%s %r: no folder at %s" % (acct, n, want),
                    sorted(p for p in by_path if p.startswith(prefix)))
            f = by_path[want]
            # The index keeps the name as the user knows it: the server's
            # separator or '/'.
            h.check(f["name"] in (n, n.replace(sep, "/")), "%s %r: index name %r" % (acct, n, f["name"]))
            comps = want[len(prefix):].split("/")
            h.check(sep.join(h.unescape_component(c) for c in comps) == n,
                    "%s %r: path %s does not decode back" % (acct, n, want))
            h.check(os.path.isdir(os.path.join(root, want, "cur")), "%s %r: no Maildir at %s" % (acct, n, want))
            h.assert_folder_matches(st, dc, "alice", acct, f["name"], server_folder=n)
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)


if __name__ == "__main__":
    h.run(main, deadline=200)
