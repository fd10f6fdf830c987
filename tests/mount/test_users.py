#!/usr/bin/env python3
"""Two real local users created for the test, one mount run as root with
allow_other,default_permissions: each user owns and reads their own tree,
neither can list the root or touch the other's tree (EACCES), each user's
on_change runs as that user after the mount's first sync, and `notmuch new`
(alice's on_change, and run by hand) indexes every message of the read-only
mount with the database elsewhere (notmuch >= 0.32: database.mail_root),
forwarded messages in the parts directories included. Each user lists and
reads their own parts directories; the other's are refused."""

import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as L  # noqa: E402
from mountlib import H, check, log  # noqa: E402



def denied(p, what):
    err = p.stderr.decode(errors="replace")
    check(p.returncode != 0 and "Permission denied" in err, "%s should be denied" % what,
          "rc", p.returncode, err.strip(), p.stdout[:200])


def main(ctx):
    L.require_fuse()
    if not L.have("notmuch"):
        raise H.Failure("notmuch is not installed (Debian package notmuch)")
    # The mount point and the users' homes live below the test dir.
    os.chmod(ctx.tmp, 0o711)
    mp = os.path.join(ctx.tmp, "mnt")
    home_a, home_b = os.path.join(ctx.tmp, "home-a"), os.path.join(ctx.tmp, "home-b")
    ua = L.local_user(ctx, "mdta", home_a)
    ub = L.local_user(ctx, "mdtb", home_b)

    dc = ctx.dovecot()
    dc.populate({"alice": "pw-alice", "bob": "pw-bob"},
                [("alice", "INBOX", 9), ("alice", "Lists", 4), ("bob", "INBOX", 7)],
                20, seed=404, max_size=80000)

    nm_conf = os.path.join(home_a, ".notmuch-config")
    with open(nm_conf, "w") as f:
        f.write("[database]\npath=%s\nmail_root=%s\n\n[user]\nname=Alice\nprimary_email=alice@example.org\n\n"
                "[new]\ntags=new\nignore=.status\n\n[maildir]\nsynchronize_flags=false\n"
                % (os.path.join(home_a, "notmuch-db"), os.path.join(mp, "alice")))
    os.chown(nm_conf, ua.pw_uid, ua.pw_gid)
    # notmuch new creates the database, but not the directory it lives in.
    os.mkdir(os.path.join(home_a, "notmuch-db"), 0o700)
    os.chown(os.path.join(home_a, "notmuch-db"), ua.pw_uid, ua.pw_gid)
    oc_b = os.path.join(home_b, "on_change.uid")

    conf = ctx.config([
        H.Account("alice", "work", dc.url("imaps"), "alice", "pw-alice", ["INBOX", "Lists"], dc.ca_pem),
        H.Account("bob", "work", dc.url("imaps"), "bob", "pw-bob", ["INBOX"], dc.ca_pem),
    ], users={"alice": ua.pw_name, "bob": ub.pw_name})
    text = open(conf).read()
    text = text.replace("[user alice]\nuid = %s\n" % ua.pw_name,
                        "[user alice]\nuid = %s\non_change = notmuch new --quiet\n" % ua.pw_name)
    text = text.replace("[user bob]\nuid = %s\n" % ub.pw_name,
                        "[user bob]\nuid = %s\non_change = /bin/sh -c 'id -u > %s; id -G >> %s'\n"
                        % (ub.pw_name, oc_b, oc_b))
    with open(conf, "w") as f:
        f.write(text)

    store = H.Store(ctx.store_dir())
    m = L.Mount(ctx, conf, mp).start()
    L.wait_synced(store, [("alice", "work"), ("bob", "work")], {}, timeout=60)

    # ---- ownership as root sees it
    for user, pw in (("alice", ua), ("bob", ub)):
        d = os.path.join(mp, user)
        st = os.stat(d)
        check((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, pw.pw_gid, 0o500),
              "/%s owner/mode" % user, st.st_uid, st.st_gid, oct(st.st_mode))
        for rel, fst in L.mount_files(d).items():
            check(fst.st_uid == pw.pw_uid and stat.S_IMODE(fst.st_mode) == 0o400, "%s/%s owner" % (user, rel))
    st = os.stat(mp)
    check(st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o711, "root dir", st.st_uid, oct(st.st_mode))

    # ---- each user reads their own tree
    files, parts = {}, {}
    for user, pw in (("alice", ua), ("bob", ub)):
        inbox = os.path.join(mp, user, "work", "INBOX")
        names = sorted(L.folder_listing(store, user, "work", "INBOX"))
        p = L.as_user(pw.pw_name, ["ls", "-1", inbox])
        check(p.returncode == 0 and sorted(p.stdout.decode().splitlines()) == names,
              "%s lists own INBOX" % user, p.stderr, names)
        one = os.path.join(inbox, sorted(L.messages_in(names))[0])
        # and a message's parts, the parts directory owned like the rest
        row = [r for r in store.messages(user, "work", "INBOX", H.ACTIVE) if r["n_parts"]][0]
        pd = os.path.join(inbox, L.stem(row["view_name"]))
        p = L.as_user(pw.pw_name, ["ls", "-1", pd])
        check(p.returncode == 0 and sorted(p.stdout.decode().splitlines()) == sorted(os.listdir(pd)),
              "%s lists own parts directory" % user, p.stderr)
        st = os.stat(pd)
        check((st.st_uid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, 0o500), "%s: owner/mode" % pd,
              st.st_uid, oct(st.st_mode))
        part = os.path.join(pd, sorted(os.listdir(pd))[0])
        p = L.as_user(pw.pw_name, ["cat", part])
        check(p.returncode == 0 and p.stdout == open(part, "rb").read(), "%s reads own part" % user, p.stderr)
        parts[user] = pd
        p = L.as_user(pw.pw_name, ["cat", one])
        check(p.returncode == 0 and p.stdout == open(one, "rb").read(), "%s reads own message" % user)
        p = L.as_user(pw.pw_name, ["cat", os.path.join(mp, user, ".status")])
        check(p.returncode == 0 and b"account work" in p.stdout, "%s reads own .status" % user)
        p = L.as_user(pw.pw_name, ["getfattr", "-n", "user.mail.account", "--only-values", one])
        check(p.returncode == 0 and p.stdout == b"work", "%s reads own xattr" % user, p.stderr)
        files[user] = one

    # ---- and nothing of the other's, nor the list of users
    for user, pw, other in (("alice", ua, "bob"), ("bob", ub, "alice")):
        denied(L.as_user(pw.pw_name, ["ls", mp]), "%s listing /" % user)
        denied(L.as_user(pw.pw_name, ["ls", os.path.join(mp, other)]), "%s listing /%s" % (user, other))
        denied(L.as_user(pw.pw_name, ["ls", os.path.dirname(files[other])]), "%s listing %s's INBOX" % (user, other))
        denied(L.as_user(pw.pw_name, ["cat", files[other]]), "%s reading %s's message" % (user, other))
        denied(L.as_user(pw.pw_name, ["cat", os.path.join(mp, other, ".status")]), "%s reading %s's .status" % (user, other))
        denied(L.as_user(pw.pw_name, ["stat", files[other]]), "%s stat of %s's message" % (user, other))
        denied(L.as_user(pw.pw_name, ["ls", parts[other]]), "%s listing %s's parts" % (user, other))
        denied(L.as_user(pw.pw_name, ["getfattr", "-d", files[other]]), "%s reading %s's xattrs" % (user, other))

    # ---- on_change ran as the user
    out = L.wait_for(lambda: os.path.exists(oc_b) and open(oc_b).read().count("\n") >= 2 and open(oc_b).read(),
                     30, "bob's on_change output", interval=0.1)
    uid_line, groups_line = out.splitlines()[:2]
    check(uid_line == str(ub.pw_uid), "bob's on_change ran as uid %s, want %d" % (uid_line, ub.pw_uid))
    check("0" not in groups_line.split(), "bob's on_change kept root's groups", groups_line)
    check(os.stat(oc_b).st_uid == ub.pw_uid, "on_change output owner")

    # ---- notmuch over the mount, as alice
    alice_files = L.mount_files(os.path.join(mp, "alice"))
    # Every .eml, a forwarded message's inside a parts directory too: notmuch
    # takes those for mail as well (and the other parts files for not mail).
    n_mail = len([p for p in alice_files if p.endswith(".eml")])
    log("%d .eml files below /alice, %d of them in parts directories" % (
        n_mail, n_mail - len([p for p in alice_files if p.endswith(".eml") and p.count(os.sep) == 2])))
    env = {"NOTMUCH_CONFIG": nm_conf, "HOME": home_a}

    def counted():
        p = L.as_user(ua.pw_name, ["notmuch", "count", "--output=files", "*"], env=env)
        return p.returncode == 0 and p.stdout.strip().isdigit() and int(p.stdout) == n_mail
    try:
        L.wait_for(counted, 60, "alice's on_change (notmuch new) to index %d files" % n_mail, interval=0.25)
    except H.Failure:
        log("mount log:\n" + m.log_text()[-3000:])
        raise
    # By hand too: nothing left to add, no complaint about the read-only tree.
    def new_ok():
        p = L.as_user(ua.pw_name, ["notmuch", "new"], env=env)
        if p.returncode != 0:
            log("notmuch new: %s" % p.stderr.decode(errors="replace").strip())
        return p.returncode == 0 and p
    p = L.wait_for(new_ok, 30, "notmuch new to succeed", interval=0.25)
    log("notmuch new: %s" % (p.stdout + p.stderr).decode(errors="replace").strip())
    row = [r for r in store.messages("alice", "work", "Lists", H.ACTIVE) if r["subject"] and r["message_id"]][0]
    want = os.path.join(mp, "alice", "work", "Lists", row["view_name"])
    p = L.as_user(ua.pw_name, ["notmuch", "search", "--output=files", 'subject:"%s"' % row["subject"]], env=env)
    got = p.stdout.decode().splitlines()
    check(p.returncode == 0 and want in got, "notmuch search subject:%r" % row["subject"], got, want,
          p.stderr.decode(errors="replace"))
    p = L.as_user(ua.pw_name, ["notmuch", "search", "--output=files", "id:%s" % row["message_id"]], env=env)
    check(p.stdout.decode().splitlines() == [want], "notmuch search id:", p.stdout)
    # bob cannot index alice's tree.
    p = L.as_user(ub.pw_name, ["find", os.path.join(mp, "alice"), "-type", "f"])
    denied(p, "bob walking alice's tree")

    m.unmount()


if __name__ == "__main__":
    H.run(main, deadline=280)
