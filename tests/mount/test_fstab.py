#!/usr/bin/env python3
"""mount(8) and /etc/fstab: `mount -t fuse.maildisk CONFIG MOUNTPOINT` goes
through the mount helper (dist/mount.fuse.maildisk) to a daemonised
`maildisk mount`, which syncs in the background; `umount MOUNTPOINT` ends
the daemon cleanly. The same from an fstab line (`mount -a -T FSTAB`), and
systemd-fstab-generator turns that line into a mount unit wanted by
remote-fs.target, which is how it mounts at boot.

mount(8) looks for helpers only in /sbin, so the test puts a copy of the
built helper there under a name of its own (mount.fuse.mdtXXXXXX, type
fuse.mdtXXXXXX, pointing at the built binary) and removes it at the end: an
installed /sbin/mount.fuse.maildisk is never touched."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as L  # noqa: E402
from mountlib import H, check, log  # noqa: E402

import mailgen  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GENERATOR = "/lib/systemd/system-generators/systemd-fstab-generator"


def mount_entry(mp):
    """(source, fstype, options) of mp in /proc/self/mounts, or None."""
    want = os.path.realpath(mp)
    with open("/proc/self/mounts") as f:
        for line in f:
            src, where, fstype, opts = line.split()[:4]
            if where.replace("\\040", " ") == want:
                return src, fstype, opts.split(",")
    return None


def helper_text(bindir_binary):
    """The configured helper from the build dir, running bindir_binary."""
    build = os.environ.get("MESON_BUILD_ROOT") or os.path.join(REPO, "build")
    path = os.path.join(build, "dist", "mount.fuse.maildisk")
    if not os.path.exists(path):
        raise H.Skip("no configured helper at %s" % path)
    with open(path) as f:
        text = f.read()
    new, n = re.subn(r"^MAILDISK=.*$", "MAILDISK=%s" % bindir_binary, text, flags=re.M)
    check(n == 1, "one MAILDISK= line in the helper")
    return new


def install_helper(ctx, subtype):
    path = "/sbin/mount.fuse." + subtype
    check(not os.path.lexists(path), "%s does not exist yet" % path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    ctx.stack.callback(lambda: os.path.lexists(path) and os.unlink(path))
    with os.fdopen(fd, "w") as f:
        f.write(helper_text(H.maildisk_path()))
    os.chmod(path, 0o755)
    log("helper %s" % path)


def daemon_pid(conf):
    """The PID `maildisk status` reports for the store's mount."""
    r = H.maildisk("status", conf)
    m = re.search(r"\(mounted, pid (\d+)\)", r.out)
    check(m, "maildisk status names the mount's PID", r.out)
    return int(m.group(1))


def guard(ctx, mp):
    """At cleanup: lazy unmount if still mounted, so no test leaves a mount."""
    def undo():
        if L.in_mount_table(mp):
            subprocess.run(["umount", "-l", mp])
    ctx.stack.callback(undo)


def mounted_and_synced(ctx, conf, mp, store, dc, n):
    ent = L.wait_for(lambda: mount_entry(mp), 5, "%s in the mount table" % mp)
    src, fstype, opts = ent
    check(fstype == "fuse.maildisk" and src == conf, "source (the config) and type", ent)
    check("ro" in opts and "noatime" in opts, "ro and noatime (given in -o) in the options", opts)
    pid = daemon_pid(conf)
    check(H.pid_alive(pid), "the daemon %d runs" % pid)
    L.wait_synced(store, [("ursula", "mail")])
    inbox = os.path.join(mp, "ursula", "mail", "INBOX")
    # n messages, and beside each its parts directory (cache/parts.h); the
    # rows are polled too: a sync of an earlier mount satisfies wait_synced.

    def shown():
        want = L.folder_listing(store, "ursula", "mail", "INBOX")
        return (len(L.messages_in(want)) == n and os.path.isdir(inbox) and set(os.listdir(inbox)) == want
                and want)
    want = L.wait_for(shown, 30, "%d messages and their parts directories in %s" % (n, inbox))
    bodies = dc.fetch_bodies("ursula", "INBOX")
    with open(os.path.join(inbox, sorted(L.messages_in(want))[0]), "rb") as f:
        check(f.read() in bodies.values(), "a message read through the mount is a server's message")
    return pid


def umount_and_wait(mp, pid):
    p = subprocess.run(["umount", mp], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    check(p.returncode == 0, "umount %s" % mp, p.stderr.decode(errors="replace"))
    check(not L.in_mount_table(mp), "%s gone from the mount table" % mp)
    L.wait_for(lambda: not H.pid_alive(pid), 60, "the daemon %d to exit after umount" % pid, interval=0.1)


def main(ctx):
    L.require_fuse()
    if os.geteuid() != 0:
        raise H.Skip("mount(8) needs root")
    for tool in ("mount", "umount"):
        if not L.have(tool):
            raise H.Skip("no %s" % tool)
    subtype = "mdt" + os.urandom(3).hex()
    install_helper(ctx, subtype)

    dc = ctx.dovecot()
    dc.add_user("ursula", "pw-ursula")
    msgs = mailgen.generate(4, seed=13, max_size=20000)
    dc.append("ursula", "INBOX", [m.raw for m in msgs[:3]])
    conf = ctx.config([H.Account("ursula", "mail", dc.url("imaps"), "ursula", "pw-ursula", ["INBOX"],
                                 dc.ca_pem)])
    store = H.Store(ctx.store_dir())
    mp = os.path.join(ctx.tmp, "mnt")
    os.mkdir(mp)
    guard(ctx, mp)

    # 1. mount -t: options for mount(8) and systemd are dropped, noatime is kept.
    argv = ["mount", "-t", "fuse." + subtype, "-o", "_netdev,nofail,noatime", conf, mp]
    log("$ " + " ".join(argv))
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                       env=H.maildisk_env())
    check(p.returncode == 0, " ".join(argv), p.stderr.decode(errors="replace"))
    pid = mounted_and_synced(ctx, conf, mp, store, dc, 3)
    umount_and_wait(mp, pid)

    # 2. An fstab line, mounted the way boot does it: every entry of the table.
    fstab = os.path.join(ctx.tmp, "fstab")
    with open(fstab, "w") as f:
        f.write("# maildisk test\n%s %s fuse.%s defaults,_netdev,nofail,noatime 0 0\n" % (conf, mp, subtype))
    dc.append("ursula", "INBOX", msgs[3].raw)
    argv = ["mount", "-a", "-T", fstab]
    log("$ " + " ".join(argv))
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                       env=H.maildisk_env())
    check(p.returncode == 0, " ".join(argv), p.stderr.decode(errors="replace"))
    pid = mounted_and_synced(ctx, conf, mp, store, dc, 4)
    # The mount table names the config as the source, as the fstab line
    # does, so mount -a knows the line is mounted and leaves it alone.
    p = subprocess.run(["mount", "-a", "-T", fstab], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    check(p.returncode == 0, "mount -a again", p.stderr.decode(errors="replace"))
    check(daemon_pid(conf) == pid and H.pid_alive(pid), "mount -a again leaves the one mount")
    umount_and_wait(mp, pid)
    H.assert_no_tmp(store)
    H.assert_cur_matches_rows(store)

    # 3. At boot systemd turns the line into a mount unit after the network.
    if not os.access(GENERATOR, os.X_OK):
        log("no %s: boot ordering not checked" % GENERATOR)
        return
    out = os.path.join(ctx.tmp, "generator")
    os.mkdir(out)
    p = subprocess.run([GENERATOR, out, out, out], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=dict(os.environ, SYSTEMD_FSTAB=fstab), timeout=30)
    check(p.returncode == 0, "systemd-fstab-generator", p.stderr.decode(errors="replace"))
    unit = subprocess.run(["systemd-escape", "--path", "--suffix=mount", mp], stdout=subprocess.PIPE,
                          check=True).stdout.decode().strip()
    wanted = os.path.join(out, "remote-fs.target.wants", unit)
    check(os.path.exists(wanted), "%s is wanted by remote-fs.target (_netdev)" % unit, os.listdir(out))
    with open(os.path.join(out, unit)) as f:
        text = f.read()
    for line in ("What=%s" % conf, "Where=%s" % mp, "Type=fuse.%s" % subtype):
        check(line in text.splitlines(), "the mount unit has %s" % line, text)


if __name__ == "__main__":
    H.run(main, deadline=200)
