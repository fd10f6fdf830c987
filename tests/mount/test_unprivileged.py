#!/usr/bin/env python3
"""One user running maildisk unprivileged on their own config and store:
`maildisk sync` and `maildisk mount -f` as that user (fusermount3 does the
mounting), everything in the mount belongs to them (root directory 0500,
parts directories too),
without allow_other nobody else gets in (not even root), SIGUSR1 syncs and
`fusermount3 -u` run by the user ends the daemon cleanly; after a SIGKILL
the user's next start detaches the dead mount (fusermount3) and mounts
again. Where /dev/fuse
is mode 0600 the user is granted access to it for the test's duration
(mountlib.grant_fuse), so the test runs there too."""

import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as L  # noqa: E402
from mountlib import H, check, log  # noqa: E402

import mailgen  # noqa: E402


def main(ctx):
    L.require_fuse()
    os.chmod(ctx.tmp, 0o711)
    home = os.path.join(ctx.tmp, "home")
    pw = L.local_user(ctx, "mdtu", home)
    # A device of mode 0600 would stop libfuse before fusermount3: the
    # user gets an ACL entry on /dev/fuse until the test ends.
    L.grant_fuse(ctx, pw)
    dc = ctx.dovecot()
    dc.add_user("ursula", "pw-ursula")
    msgs = mailgen.generate(10, seed=12, max_size=50000)
    dc.append("ursula", "INBOX", [m.raw for m in msgs[:8]])

    conf = H.write_config(os.path.join(home, "maildisk.conf"), os.path.join(home, "store"),
                          [H.Account("ursula", "mail", dc.url("imaps"), "ursula", "pw-ursula", ["INBOX"],
                                     dc.ca_pem)],
                          users={"ursula": pw.pw_name})
    for f in os.listdir(home):
        os.chown(os.path.join(home, f), pw.pw_uid, pw.pw_gid)
    mp = os.path.join(home, "mnt")
    os.mkdir(mp, 0o700)
    os.chown(mp, pw.pw_uid, pw.pw_gid)
    env = dict(H.maildisk_env(), HOME=home)

    p = L.as_user(pw.pw_name, [H.maildisk_path(), "sync", "-c", conf], env={"HOME": home})
    check(p.returncode == 0, "maildisk sync as %s" % pw.pw_name, p.stderr.decode(errors="replace"))
    store = H.Store(os.path.join(home, "store"))
    check(len(store.messages("ursula", "mail", "INBOX", H.ACTIVE)) == 8, "rows after the user's sync")

    argv = ["runuser", "-u", pw.pw_name, "--", H.maildisk_path(), "mount", "-c", conf, "-f", mp]

    def start(name):
        """The user's `maildisk mount -f`, logging to ctx.tmp/name: (the
        runuser process, a function that reads the log)."""
        path = os.path.join(ctx.tmp, name)
        log("$ " + " ".join(argv))
        with open(path, "wb") as f:
            q = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

        def cleanup():
            if L.in_mount_table(mp):
                subprocess.run(["fusermount3", "-u", "-z", mp])
            if q.poll() is None:
                try:
                    q.wait(10)
                except subprocess.TimeoutExpired:
                    q.kill()
                    q.wait()
        ctx.stack.callback(cleanup)
        return q, lambda: open(path, errors="replace").read()

    def daemon_of(q):
        """The maildisk process under runuser q (its child, found by PID)."""
        kids = H.children_of(q.pid)
        return ([k for k in kids if open("/proc/%d/comm" % k).read().strip() == "maildisk"] or [q.pid])[0]

    proc, mount_log = start("mount.log")
    L.wait_for(lambda: proc.poll() is not None or L.in_mount_table(mp), 20, "the user's mount")
    check(proc.poll() is None, "maildisk mount as the user exited", mount_log())

    # Without allow_other the kernel lets only the mounting user in.
    try:
        os.listdir(mp)
        raise H.Failure("root could list an unprivileged mount without allow_other")
    except PermissionError:
        pass

    p = L.as_user(pw.pw_name, ["stat", "-c", "%u %g %a %F", mp, mp + "/ursula", mp + "/ursula/mail/INBOX"])
    lines = p.stdout.decode().splitlines()
    check(lines == ["%d %d 500 directory" % (pw.pw_uid, pw.pw_gid)] * 3, "owners and modes", lines)
    p = L.as_user(pw.pw_name, ["ls", "-1", mp + "/ursula/mail/INBOX"])
    names = p.stdout.decode().splitlines()
    want = L.folder_listing(store, "ursula", "mail", "INBOX")
    check(set(names) == want and len(names) == len(want), "listing", names)
    bodies = dc.fetch_bodies("ursula", "INBOX")
    by_name = {r["view_name"]: int(r["remote_id"]) for r in store.messages("ursula", "mail", "INBOX", H.ACTIVE)}
    messages = sorted(L.messages_in(names))
    check(len(messages) == 8 and len(names) > 8, "messages and parts directories listed", names)
    for n in messages:
        p = L.as_user(pw.pw_name, ["cat", os.path.join(mp, "ursula/mail/INBOX", n)])
        check(p.returncode == 0 and p.stdout == bodies[by_name[n]], "bytes of %r" % n)
    p = L.as_user(pw.pw_name, ["stat", "-c", "%u %a", os.path.join(mp, "ursula/mail/INBOX", messages[0])])
    check(p.stdout.decode().split() == [str(pw.pw_uid), "400"], "file owner/mode", p.stdout)
    # A parts directory and what is in it belong to the user as well.
    pd = os.path.join(mp, "ursula/mail/INBOX", sorted(set(names) - set(messages))[0])
    p = L.as_user(pw.pw_name, ["find", pd, "-printf", "%U %G %m %y\n"])
    lines = p.stdout.decode().splitlines()
    mine = "%d %d " % (pw.pw_uid, pw.pw_gid)
    check(p.returncode == 0 and lines[0] == mine + "500 d" and len(lines) > 1 and
          set(lines[1:]) <= {mine + "400 f", mine + "500 d"}, "parts directory owners and modes", lines, p.stderr)

    # SIGUSR1 to the daemon (our grandchild: runuser's child).
    marks = L.sync_marks(store)
    dc.append("ursula", "INBOX", msgs[8].raw)
    os.kill(daemon_of(proc), signal.SIGUSR1)
    L.wait_synced(store, [("ursula", "mail")], marks)
    want = L.folder_listing(store, "ursula", "mail", "INBOX")
    check(len(L.messages_in(want)) == 9, "rows after the second sync", sorted(want))
    L.wait_for(lambda: set(L.as_user(pw.pw_name, ["ls", "-1", mp + "/ursula/mail/INBOX"]).stdout.decode()
                           .splitlines()) == want,
               20, "the new message (and its parts directory) in the user's mount")

    p = L.as_user(pw.pw_name, ["fusermount3", "-u", mp])
    check(p.returncode == 0, "fusermount3 -u as the user", p.stderr.decode(errors="replace"))
    try:
        rc = proc.wait(60)
    except subprocess.TimeoutExpired:
        raise H.Failure("the user's daemon did not exit after the unmount", mount_log())
    text = mount_log()
    log("mount log:\n" + text)
    check(rc == 0 and not H.SANITIZER_RE.search(text), "daemon exit %d" % rc, text[-2000:])
    check(not L.in_mount_table(mp), "still mounted")
    H.assert_no_tmp(store)
    H.assert_cur_matches_rows(store)

    # A daemon killed outright leaves the user's dead mount; the user's next
    # start detaches it through fusermount3 and mounts in its place.
    def statfs_ok():
        return L.as_user(pw.pw_name, ["stat", "-f", mp]).returncode == 0

    proc, text_of = start("mount-killed.log")
    L.wait_for(lambda: proc.poll() is not None or L.in_mount_table(mp), 20, "the user's mount")
    L.wait_for(statfs_ok, 20, "the user's mount to answer")
    os.kill(daemon_of(proc), signal.SIGKILL)
    proc.wait(30)
    check(L.in_mount_table(mp) and not statfs_ok(), "SIGKILL left no dead mount to test with")
    proc, text_of = start("mount-after.log")
    L.wait_for(lambda: statfs_ok() and "detached it" in text_of(), 20,
               "the user's new daemon to detach the dead mount and mount")
    p = L.as_user(pw.pw_name, ["ls", "-1", mp + "/ursula/mail/INBOX"])
    check(set(p.stdout.decode().splitlines()) == want, "the listing through the new mount")
    check(L.mounts_at(mp) == 1, "more than one mount at %s" % mp)
    p = L.as_user(pw.pw_name, ["fusermount3", "-u", mp])
    check(p.returncode == 0 and proc.wait(60) == 0, "the new daemon's end", p.stderr, text_of()[-2000:])
    check(not L.in_mount_table(mp), "still mounted at the end")
    log("after SIGKILL, the next start's log:\n" + text_of())


if __name__ == "__main__":
    H.run(main, deadline=200)
