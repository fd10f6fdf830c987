#!/usr/bin/env python3
"""Secret commands and files as a local user could abuse them (issue 9,
items 5, 6 and 9). Needs root (exit 77 otherwise): it creates a local user
and runs maildisk as root, which is where these are holes.

  as_user   password_command and oauth2_token_command of a [user] mapped to
            a local account run with that account's uid, gid, supplementary
            groups and HOME, in a small environment: a variable set in the
            daemon's environment does not reach them, nor does its working
            directory. The command records `id` and `env` into a file; the
            account it served still syncs.
  unprivileged  maildisk run by that user itself: the command runs as
            the user, with maildisk's own environment (the user's).
  fds       every descriptor maildisk holds is close-on-exec, and a
            password_command gets only 0, 1 and 2. Made deterministic with
            [sync] workers = 2 and three accounts taken in order: `held`
            connects to a server that accepts and never answers; `gate`'s
            command waits until that connection is accepted (and the test
            has read the flags of every descriptor of maildisk) and then
            fails; `probe`'s command, `sleep`, starts on gate's worker after
            it while held's socket is open, and the test reads which
            descriptors it holds from /proc.
  daemon_fds  the same flags in the mounted daemon (`maildisk mount -f`),
            /dev/fuse and its pipes included; noted and left out where
            there is no /dev/fuse.
  symlink   a password_file that is a symbolic link (to a root-owned 0600
            file, which passes every owner and mode check) is refused with
            exit 2 and a message naming the file.

MAILDISK_FAULTS=as_user,fds picks scenarios."""
import fcntl
import grp
import os
import pwd
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, check, log  # noqa: E402

write = H.write_file

LOCAL_USER = "maildisk-secret"
EXTRA_GROUP = "maildisk-secgrp"
PW = "pw-secret-exec-3b1f"
LEAK = "MAILDISK_TEST_LEAK"
O_CLOEXEC_FLAG = 0o2000000      # flags: in /proc/PID/fdinfo/N are octal open(2) flags
# what a small environment may hold besides what sh adds itself
ENV_ALLOWED = {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG", "LC_ALL", "TZ",
               "XDG_RUNTIME_DIR", "MAILDISK_USER", "MAILDISK_ACCOUNT", "PWD", "OLDPWD", "SHLVL", "_"}


def ensure_local_user():
    """A local account with a supplementary group, created once per machine
    (serialised with harness.ensure_vmail_user's lock, as useradd fails while
    another holds /etc/passwd)."""
    with open("/tmp/.maildisk-harness-useradd.lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        try:
            grp.getgrnam(EXTRA_GROUP)
        except KeyError:
            H.run_cmd(["groupadd", "--system", EXTRA_GROUP])
        try:
            pwd.getpwnam(LOCAL_USER)
        except KeyError:
            H.run_cmd(["useradd", "--system", "--no-create-home", "--user-group",
                       "--shell", "/bin/sh", "--home-dir", "/nonexistent-maildisk-secret",
                       "--groups", EXTRA_GROUP, LOCAL_USER])
    pw = pwd.getpwnam(LOCAL_USER)
    return pw, grp.getgrnam(EXTRA_GROUP).gr_gid


def maildisk_env_with(extra):
    env = H.maildisk_env()
    env.update(extra)
    return env


def run_maildisk(argv, env, cwd=None, timeout=120):
    log("$ " + " ".join(argv))
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    log("  exit %d\n%s" % (p.returncode, "\n".join("    " + l for l in (out + err).splitlines())))
    check(not H.SANITIZER_RE.search(err), "sanitizer report from maildisk")
    check(p.returncode >= 0, "maildisk died of signal %d" % -p.returncode)
    return p.returncode, out, err


def parse_report(path):
    """KEY=VALUE lines written by report.sh; env lines under 'env:'."""
    info, env = {}, {}
    with open(path) as f:
        part = info
        for line in f.read().splitlines():
            if line == "env:":
                part = env
                continue
            k, _, v = line.partition("=")
            part[k] = v
    return info, env


def report_script(directory):
    return write(os.path.join(directory, "report.sh"),
                 "#!/bin/sh\n"
                 "# report.sh FILE SECRET: records who ran it, prints SECRET\n"
                 "{ echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G);\n"
                 "  echo home=$HOME; echo cwd=$(pwd); echo env:; env; } > \"$1\"\n"
                 "echo \"$2\"\n", 0o755)


def as_user_setup(ctx, name, pw, own_name, seed):
    """The directory of a scenario that runs commands as LOCAL_USER (pw):
    ctx.tmp/name (0755, under a 0711 ctx.tmp, so the user's command reaches
    report.sh there), a subdirectory own_name that the user owns (0700), and
    a fake IMAP server with one message. Returns (dir, own dir, report.sh,
    server)."""
    tmp = os.path.join(ctx.tmp, name)
    os.mkdir(tmp, 0o755)
    os.chmod(ctx.tmp, 0o711)
    own = os.path.join(tmp, own_name)
    os.mkdir(own, 0o700)
    os.chown(own, pw.pw_uid, pw.pw_gid)
    srv = F.FakeImap("alice", PW)
    srv.folder("INBOX").add([F.mailgen.generate(1, seed=seed)[0].raw])
    return tmp, own, report_script(tmp), srv


def sam_pw_config(path, store, srv, script, out, more=()):
    """A config of [user sam] (LOCAL_USER) with the account sam/pw, whose
    password_command is report.sh writing out/pw.txt, and the lines more."""
    return write(path, "\n".join([
        "[store]", "path = %s" % store, "",
        "[user sam]", "uid = %s" % LOCAL_USER, "",
        "[account sam/pw]", "url = %s" % srv.url(), "tls = off", "login = alice", "timeout = 5",
        "password_command = %s %s/pw.txt %s" % (script, out, PW), ""] + list(more)), 0o600)


def scenario_as_user(ctx):
    pw, extra_gid = ensure_local_user()
    tmp, out, script, srv = as_user_setup(ctx, "as_user", pw, "out", 5)
    store = os.path.join(tmp, "store")
    cfg = sam_pw_config(os.path.join(tmp, "maildisk.conf"), store, srv, script, out, [
        # the fake server offers no XOAUTH2: the login fails, after the command ran
        "[account sam/token]", "url = %s" % srv.url(), "tls = off", "login = alice", "timeout = 5",
        "oauth2_token_command = %s %s/token.txt tok-3b1f" % (script, out), ""])
    try:
        rc, _, err = run_maildisk([H.maildisk_path(), "sync", "-c", cfg],
                                  maildisk_env_with({LEAK: "from-the-daemon"}), cwd=tmp)
    finally:
        srv.close()
    want_groups = sorted({pw.pw_gid, extra_gid})
    for name in ("pw", "token"):
        path = os.path.join(out, name + ".txt")
        check(os.path.exists(path), "%s: the command did not run, or could not write %s" % (name, path))
        check(os.stat(path).st_uid == pw.pw_uid, "%s: report written by uid %d" % (name, os.stat(path).st_uid))
        info, env = parse_report(path)
        log("  %s ran as %s" % (name, info))
        check(info.get("uid") == str(pw.pw_uid), "%s_command ran as uid %s, expected %d (%s)" % (
            name, info.get("uid"), pw.pw_uid, LOCAL_USER))
        check(info.get("gid") == str(pw.pw_gid), "%s: gid %s, expected %d" % (name, info.get("gid"), pw.pw_gid))
        got_groups = sorted(int(g) for g in info.get("groups", "").split())
        check(got_groups == want_groups, "%s: groups %s, expected %s (initgroups)" % (name, got_groups, want_groups))
        check(info.get("home") == pw.pw_dir, "%s: HOME %r, expected %r" % (name, info.get("home"), pw.pw_dir))
        check(info.get("cwd") != tmp, "%s: ran in the daemon's working directory %s" % (name, tmp))
        check(LEAK not in env, "%s: the daemon's environment reached the command (%s)" % (name, LEAK))
        check(set(env) <= ENV_ALLOWED, "%s: unexpected environment variables" % name,
              sorted(set(env) - ENV_ALLOWED))
        check(env.get("USER") == LOCAL_USER and env.get("LOGNAME") == LOCAL_USER,
              "%s: USER/LOGNAME" % name, env.get("USER"), env.get("LOGNAME"))
    rows = H.Store(store).messages("sam", "pw")
    check(len(rows) == 1, "sam/pw: the password from the user's command did not log in", rows, err)
    check(rc == 1, "exit %d, expected 1 (sam/token cannot log in to a server without XOAUTH2)" % rc)


def scenario_unprivileged(ctx):
    """maildisk run by the user itself: the command runs as that user (it
    cannot become anyone else) and keeps maildisk's environment, which is
    the user's own (a password manager may need its agent's variables)."""
    pw, _ = ensure_local_user()
    tmp, own, script, srv = as_user_setup(ctx, "unprivileged", pw, "own", 6)
    store = os.path.join(own, "store")
    cfg = sam_pw_config(os.path.join(own, "maildisk.conf"), store, srv, script, own)
    os.chown(cfg, pw.pw_uid, pw.pw_gid)
    argv = ["runuser", "-u", LOCAL_USER, "--", "env", "%s=kept" % LEAK, H.maildisk_path(), "sync",
            "-c", cfg]
    try:
        rc, _, err = run_maildisk(argv, H.maildisk_env(), cwd="/")
    finally:
        srv.close()
    info, env = parse_report(os.path.join(own, "pw.txt"))
    log("  ran as %s" % info)
    check(info.get("uid") == str(pw.pw_uid), "ran as uid %s, expected %d" % (info.get("uid"), pw.pw_uid))
    check(env.get(LEAK) == "kept", "an unprivileged maildisk did not pass on its own environment")
    check(rc == 0, "exit %d, expected 0" % rc, err)
    check(len(H.Store(store).messages("sam", "pw")) == 1, "sam/pw did not sync")


class SilentServer(H.Listener):
    """Accepts connections and never answers; on_accept runs once per
    connection in the accepting thread."""

    def __init__(self, on_accept):
        self.on_accept = on_accept
        super().__init__()

    def on_conn(self, conn):
        self.on_accept()


def daemon_fds(pid):
    """{fd: (flags, target)} of every descriptor of pid."""
    out = {}
    for name in os.listdir("/proc/%d/fd" % pid):
        fd = int(name)
        try:
            target = os.readlink("/proc/%d/fd/%d" % (pid, fd))
            with open("/proc/%d/fdinfo/%d" % (pid, fd)) as f:
                flags = next(int(l.split()[1], 8) for l in f if l.startswith("flags:"))
        except (OSError, StopIteration):
            continue            # closed meanwhile
        out[fd] = (flags, target)
    return out


def child_sleeping(ppid, exe):
    """The PID of a child of ppid that runs exe and sleeps, or None."""
    for pid in H.children_of(ppid):
        try:
            if os.readlink("/proc/%d/exe" % pid) != exe:
                continue
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "S":
                    return pid
        except OSError:
            continue
    return None


def scenario_fds(ctx):
    tmp = os.path.join(ctx.tmp, "fds")
    os.mkdir(tmp, 0o700)
    gate = os.path.join(tmp, "held-connected")
    sleep = os.path.realpath("/bin/sleep")
    state = {"proc": None, "fds": None}
    accepted = threading.Event()

    def on_accept():
        # maildisk is blocked on held's greeting: read its descriptors now,
        # then let gate's command (and so probe's) go on
        if not accepted.is_set():
            for _ in range(500):
                if state["proc"] is not None:
                    break
                time.sleep(0.01)
            state["fds"] = daemon_fds(state["proc"].pid)
            write(gate, "", 0o600)
            accepted.set()

    srv = SilentServer(on_accept)
    refused = H.free_port()         # nothing listens: gate fails at once after its command
    store = os.path.join(tmp, "store")
    wait = "i=0; while [ ! -e %s ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done" % gate
    cfg = write(os.path.join(tmp, "maildisk.conf"), "\n".join([
        "[store]", "path = %s" % store, "",
        "[sync]", "workers = 2", "",
        "[user sam]", "uid = root", "",
        "[account sam/held]", "url = imap://127.0.0.1:%d" % srv.port, "tls = off", "login = x",
        "password = %s" % PW, "timeout = 20", "",
        "[account sam/gate]", "url = imap://127.0.0.1:%d" % refused, "tls = off", "login = x",
        "timeout = 5", "password_command = /bin/sh -c '%s; echo %s'" % (wait, PW), "",
        # sleep opens nothing: what it holds, maildisk gave it; it prints
        # nothing, so this account fails once it is looked at and killed
        "[account sam/probe]", "url = imap://127.0.0.1:%d" % refused, "tls = off", "login = x",
        "timeout = 5", "password_command = %s 20" % sleep, ""]), 0o600)
    argv = [H.maildisk_path(), "sync", "-c", cfg]
    log("$ " + " ".join(argv))
    p = ctx.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                  env=H.maildisk_env())
    state["proc"] = p
    probe_fds = None
    try:
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            pid = child_sleeping(p.pid, sleep) if accepted.is_set() else None
            if pid:
                # read twice: the same set both times is no start-up transient
                first = sorted(int(x) for x in os.listdir("/proc/%d/fd" % pid))
                time.sleep(0.05)
                probe_fds = sorted(int(x) for x in os.listdir("/proc/%d/fd" % pid))
                check(first == probe_fds, "probe's descriptors changed while it slept", first, probe_fds)
                targets = {fd: os.readlink("/proc/%d/fd/%d" % (pid, fd)) for fd in probe_fds}
                log("  probe's password_command (pid %d) holds %s" % (pid, targets))
                os.kill(pid, 9)     # maildisk's child, started by this test
                break
            time.sleep(0.02)
    finally:
        srv.close()              # held fails now: maildisk ends
    _, err = p.communicate(timeout=60)
    err = err.decode(errors="replace")
    log("  exit %d\n%s" % (p.returncode, "\n".join("    " + l for l in err.splitlines())))
    check(not H.SANITIZER_RE.search(err), "sanitizer report from maildisk")
    check(accepted.is_set(), "held never connected: the scenario did not happen")
    fds = state["fds"]
    log("  maildisk's descriptors while held was connected:")
    for fd, (flags, target) in sorted(fds.items()):
        log("    %3d %s flags %o" % (fd, target, flags))
    check(any(t.startswith("socket:") for fd, (_, t) in fds.items() if fd > 2),
          "no socket among maildisk's descriptors while held was connected", fds)
    open_on_exec = {fd: t for fd, (flags, t) in fds.items() if fd > 2 and not flags & O_CLOEXEC_FLAG}
    check(probe_fds is not None, "probe's password_command was never seen running", err)
    check(not open_on_exec, "descriptors of maildisk without close-on-exec", open_on_exec)
    check(probe_fds == [0, 1, 2], "password_command inherited descriptors %s, expected only 0, 1, 2" % probe_fds)


def scenario_daemon_fds(ctx):
    """The mounted daemon, while an account's connection is being made:
    every descriptor above 2 (/dev/fuse, its pipes, the index, the socket
    and libcurl's own) is close-on-exec."""
    tmp = os.path.join(ctx.tmp, "daemon_fds")
    os.mkdir(tmp, 0o700)
    srv = SilentServer(lambda: None)
    cfg = write(os.path.join(tmp, "maildisk.conf"), "\n".join([
        "[store]", "path = %s" % os.path.join(tmp, "store"), "",
        "[user sam]", "uid = root", "",
        "[account sam/held]", "url = imap://127.0.0.1:%d" % srv.port, "tls = off", "login = x",
        "password = %s" % PW, "timeout = 20", ""]), 0o600)
    try:
        ml = F.mountlib()
        if ml is None or not os.path.exists("/dev/fuse"):
            log("NOTE: no FUSE here: the daemon's descriptors are not checked")
            return
        m = ml.Mount(ctx, cfg, os.path.join(tmp, "mnt")).start()
        # the first sync starts at mount; its connection then waits for a
        # greeting for `timeout` seconds, long enough to look
        deadline = time.monotonic() + 15
        while not srv.conns and time.monotonic() < deadline:
            time.sleep(0.02)
        check(srv.conns, "the daemon never connected to the server", m.log_text()[-2000:])
        fds = daemon_fds(m.pid)
    finally:
        srv.close()
    m.unmount()
    log("  the daemon's descriptors while it connected:")
    for fd, (flags, target) in sorted(fds.items()):
        log("    %3d %s flags %o" % (fd, target, flags))
    check(any(t == "/dev/fuse" for _, t in fds.values()), "no /dev/fuse among the daemon's descriptors")
    open_on_exec = {fd: t for fd, (flags, t) in fds.items() if fd > 2 and not flags & O_CLOEXEC_FLAG}
    check(not open_on_exec, "descriptors of the daemon without close-on-exec", open_on_exec)


def scenario_symlink(ctx):
    tmp = os.path.join(ctx.tmp, "symlink")
    os.mkdir(tmp, 0o700)
    real = write(os.path.join(tmp, "root-secret"), PW + "\n", 0o600)
    link = os.path.join(tmp, "link.pass")
    os.symlink(real, link)
    cfg = write(os.path.join(tmp, "maildisk.conf"), "\n".join([
        "[store]", "path = %s" % os.path.join(tmp, "store"), "",
        "[user sam]", "uid = root", "",
        "[account sam/a]", "url = imap://127.0.0.1:%d" % H.free_port(), "tls = off", "login = x",
        "password_file = %s" % link, ""]), 0o600)
    rc, out, err = run_maildisk([H.maildisk_path(), "sync", "-c", cfg], H.maildisk_env())
    check(rc == 2, "a password_file that is a symbolic link: exit %d, expected 2" % rc, err)
    check(link in err and "symbolic link" in err,
          "the message does not name the file and say it is a symbolic link", err)
    check(PW not in out + err, "the secret appeared in the output")
    check(not os.path.exists(os.path.join(tmp, "store")), "a store was created despite the refused config")


SCENARIOS = [("as_user", scenario_as_user), ("unprivileged", scenario_unprivileged),
             ("fds", scenario_fds), ("daemon_fds", scenario_daemon_fds),
             ("symlink", scenario_symlink)]


def main(ctx):
    if os.geteuid() != 0:
        raise H.Skip("needs root: it creates a local user and runs commands as it")
    def passes(name, fn):
        fn(ctx)
        log("  scenario %s passed" % name)
    F.report_scenarios("secret_exec", *F.run_each([(name, lambda name=name, fn=fn: passes(name, fn))
                                                   for name, fn in SCENARIOS]))


if __name__ == "__main__":
    H.run(main, deadline=150)
