#!/usr/bin/env python3
"""`meson install` into a scratch DESTDIR puts every file a system needs in
place, and each of them works:

  - the binary, the three man pages (when scdoc is there), the system and
    user units, the mount helper (executable), bash completion, the example
    config and README.md under share/doc/maildisk;
  - the man pages render without a warning; maildisk(1) names every command
    of `maildisk --help`, maildisk.conf(5) every key fs/config_keys.c accepts;
  - `systemd-analyze verify` accepts both units (with ExecStart pointed at
    the built binary, and the man pages of Documentation= found in DESTDIR);
  - the example config loads (`maildisk status`) once its uid, store and
    password file are made real;
  - bash completion completes commands, options, trash actions and the
    accounts of the config given with -c;
  - the mount helper turns mount(8)'s arguments into the right `maildisk
    mount` command line (mount(8) itself: tests/mount/test_fstab.py).
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import harness as H  # noqa: E402
from harness import check, log  # noqa: E402


def run(argv, **kw):
    kw.setdefault("timeout", 120)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def installed_files(build):
    rc, out, err = run(["meson", "introspect", "--installed", build])
    check(rc == 0, "meson introspect --installed", err)
    return json.loads(out)  # {build or source path: install path}


def find_installed(files, pattern):
    hits = [dst for dst in files.values() if re.search(pattern, dst)]
    check(len(hits) == 1, "exactly one installed file matches %s" % pattern, hits)
    return hits[0]


def render_man(path):
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="100", MAN_KEEP_FORMATTING="0")
    rc, out, err = run(["man", "--warnings", "-l", path], env=env)
    check(rc == 0, "man -l %s" % path, err)
    check(err.strip() == "", "warnings rendering %s" % path, err)
    return re.sub(r".\x08", "", out)


def check_man(dest, files):
    if not shutil.which("scdoc"):
        log("scdoc is not installed: no man pages to check")
        return
    pages = {}
    for name in ("maildisk.1", "maildisk.conf.5", "mount.fuse.maildisk.8"):
        dst = find_installed(files, r"/man/man\d/%s$" % re.escape(name))
        check(re.search(r"/man%s/" % name[-1], dst), "%s in section %s" % (dst, name[-1]))
        if shutil.which("man"):
            pages[name] = render_man(dest + dst)
    if not pages:
        log("man is not installed: pages not rendered")
        return
    rc, usage, _ = run([H.maildisk_path(), "--help"])
    commands = re.findall(r"^  (\w+)\s", usage, re.M)
    check(len(commands) >= 5, "commands in maildisk --help", usage)
    for c in commands:
        check(re.search(r"\bmaildisk %s\b" % c, pages["maildisk.1"]), "maildisk(1) covers %s" % c)
    for opt in set(re.findall(r"(--[a-z][a-z-]+)", usage)):
        check(opt in pages["maildisk.1"], "maildisk(1) covers %s" % opt)
    with open(os.path.join(REPO, "fs", "config_keys.c")) as f:
        keys = set(re.findall(r'\.name = "([a-z0-9_]+)"', f.read()))
    check(len(keys) >= 15, "keys found in fs/config_keys.c", keys)
    for k in sorted(keys):
        check(re.search(r"^\s+%s = " % re.escape(k), pages["maildisk.conf.5"], re.M),
              "maildisk.conf(5) documents %s" % k)
    for s in ("[store]", "[sync]", "[user NAME]", "[account USER/NAME]"):
        check(s in pages["maildisk.conf.5"], "maildisk.conf(5) has %s" % s)


def check_units(ctx, dest, files, bindir):
    system = find_installed(files, r"/systemd/system/maildisk\.service$")
    user = find_installed(files, r"/systemd/user/maildisk\.service$")
    for unit in (system, user):
        with open(dest + unit) as f:
            text = f.read()
        check("@BINDIR@" not in text, "%s: @BINDIR@ substituted" % unit)
        check(re.search(r"^ExecStart=%s/maildisk mount -f " % re.escape(bindir), text, re.M),
              "%s runs %s/maildisk mount -f" % (unit, bindir), text)
    with open(dest + system) as f:
        check("-c /etc/maildisk.conf" in f.read(), "the system unit reads /etc/maildisk.conf")
    with open(dest + user) as f:
        text = f.read()
        check("%h/Mail" in text and "%h/.config/maildisk/config" in text, "the user unit: ~/Mail, own config")

    if not shutil.which("systemd-analyze"):
        log("systemd-analyze is not installed: units not verified")
        return
    mandirs = sorted({os.path.dirname(os.path.dirname(dest + d)) for d in files.values() if "/man/man" in d})
    runtime = os.path.join(ctx.tmp, "runtime")
    os.mkdir(runtime, 0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime)
    if mandirs:
        env["MANPATH"] = ":".join(mandirs)
    man = "yes" if mandirs and shutil.which("man") else "no"
    for kind, unit in (("system", system), ("user", user)):
        d = os.path.join(ctx.tmp, "verify-" + kind)
        os.mkdir(d)
        with open(dest + unit) as f:
            text = f.read().replace("%s/maildisk " % bindir, "%s " % H.maildisk_path())
        path = os.path.join(d, "maildisk.service")
        with open(path, "w") as f:
            f.write(text)
        argv = ["systemd-analyze"] + (["--user"] if kind == "user" else []) + \
            ["verify", "--man=" + man, path]
        log("$ " + " ".join(argv))
        rc, out, err = run(argv, env=env)
        check(rc == 0 and (out + err).strip() == "", "systemd-analyze verify of the %s unit" % kind,
              out + err)
    # It does find faults: the same check rejects a misspelt key.
    bad = os.path.join(ctx.tmp, "verify-system", "maildisk.service")
    with open(bad) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(text.replace("KillMode=", "KilMode="))
    rc, out, err = run(["systemd-analyze", "verify", "--man=no", bad], env=env)
    check("KilMode" in out + err, "systemd-analyze verify reports a misspelt key", out + err)


def check_example(ctx, dest, files):
    example = find_installed(files, r"/doc/maildisk/examples/maildisk\.conf\.example$")
    find_installed(files, r"/doc/maildisk/README\.md$")
    with open(dest + example) as f:
        text = f.read()
    pw = os.path.join(ctx.tmp, "isp.pass")
    with open(pw, "w") as f:
        f.write("secret\n")
    os.chmod(pw, 0o600)
    text = re.sub(r"^path = \S+", "path = " + os.path.join(ctx.tmp, "store"), text, flags=re.M)
    text = re.sub(r"^uid = \S+", "uid = %d" % os.geteuid(), text, flags=re.M)
    text = re.sub(r"^password_file = \S+", "password_file = " + pw, text, flags=re.M)
    # A closed loopback port: the sync fails at once, but creates the index.
    text = re.sub(r"^url = (\w+)://\S+", r"url = \1://127.0.0.1:1", text, flags=re.M)
    conf = os.path.join(ctx.tmp, "example.conf")
    with open(conf, "w") as f:
        f.write(text)
    os.chmod(conf, 0o600)
    rc, out, err = run([H.maildisk_path(), "sync", "-c", conf], env=H.maildisk_env())
    check(rc == 1, "maildisk sync on the example config fails to connect, exit 1 (2: config error)",
          out + err)
    rc, out, err = run([H.maildisk_path(), "status", "-c", conf], env=H.maildisk_env())
    check(rc == 0, "maildisk status on the example config", out + err)
    for a in ("alice/work", "alice/isp"):
        check(re.search(r"^%s\s" % a, out, re.M), "status lists %s" % a, out)
    return conf


def complete(dest, completion, words, cur_index=None, env=None):
    """COMPREPLY for a command line given as a list of words (the last is
    the one being completed)."""
    loader = "/usr/share/bash-completion/bash_completion"
    script = """
source %s
source %s
COMP_WORDS=(%s)
COMP_CWORD=%d
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
_maildisk maildisk "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%%s\\n' "${COMPREPLY[@]}"
""" % (loader, dest + completion, " ".join("'%s'" % w for w in words),
       len(words) - 1 if cur_index is None else cur_index)
    rc, out, err = run(["bash", "-c", script], env=env)
    check(rc == 0, "bash completion of %r" % words, err)
    return sorted(x for x in out.splitlines() if x)


def check_completion(ctx, dest, files, conf):
    completion = find_installed(files, r"/bash-completion/completions/maildisk$")
    rc, out, err = run(["bash", "-n", dest + completion])
    check(rc == 0, "bash -n on the completion", err)
    if not os.path.exists("/usr/share/bash-completion/bash_completion"):
        log("bash-completion is not installed: completion not exercised")
        return
    env = dict(os.environ, HOME=ctx.tmp)
    env.pop("MAILDISK_CONFIG", None)
    got = complete(dest, completion, ["maildisk", ""], env=env)
    check(got == sorted(["mount", "sync", "status", "check", "trash", "--help", "--version"]), "commands", got)
    check(complete(dest, completion, ["maildisk", "st"], env=env) == ["status"], "st -> status")
    check(complete(dest, completion, ["maildisk", "trash", "r"], env=env) == ["restore"], "trash r")
    check(complete(dest, completion, ["maildisk", "check", "--s"], env=env) == ["--store"], "check --s")
    check(complete(dest, completion, ["maildisk", "status", "--j"], env=env) == ["--json"], "status --j")
    got = complete(dest, completion, ["maildisk", "sync", "-c", conf, ""], env=env)
    check(got == ["alice", "alice/isp", "alice/work"], "sync -c CONF completes users and accounts", got)
    got = complete(dest, completion, ["maildisk", "sync", "-c", conf, "alice/w"], env=env)
    check(got == ["alice/work"], "sync alice/w", got)
    env["MAILDISK_CONFIG"] = conf
    got = complete(dest, completion, ["maildisk", "sync", "--allow-mass-delete", "alice/i"], env=env)
    check(got == ["alice/isp"], "sync with $MAILDISK_CONFIG", got)
    d = os.path.join(ctx.tmp, "mnt-here")
    os.mkdir(d)
    got = complete(dest, completion, ["maildisk", "mount", "-c", conf, os.path.join(ctx.tmp, "mnt-")], env=env)
    check(got == [d], "mount completes a directory", got)


def check_helper(ctx, dest, files, bindir):
    helper = find_installed(files, r"/mount\.fuse\.maildisk$")
    check(helper.endswith("sbin/mount.fuse.maildisk"), "the helper goes where mount(8) looks", helper)
    st = os.stat(dest + helper)
    check(stat.S_IMODE(st.st_mode) == 0o755, "helper mode %o" % stat.S_IMODE(st.st_mode))
    # A stand-in for maildisk that prints its arguments, one per line.
    fake = os.path.join(ctx.tmp, "fake-maildisk")
    with open(fake, "w") as f:
        f.write('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    os.chmod(fake, 0o755)
    with open(dest + helper) as f:
        text = f.read()
    check("MAILDISK=%s/maildisk\n" % bindir in text, "the helper runs %s/maildisk" % bindir)
    copy = os.path.join(ctx.tmp, "mount.fuse.maildisk")
    with open(copy, "w") as f:
        f.write(text.replace("MAILDISK=%s/maildisk\n" % bindir, "MAILDISK=%s\n" % fake))
    os.chmod(copy, 0o755)
    conf = os.path.join(ctx.tmp, "example.conf")
    cases = [
        ([conf, "/srv/mail", "-o", "rw"], ["mount", "-c", conf, "-o", "fsname=" + conf, "/srv/mail"]),
        ([conf, "/srv/mail", "-o", "defaults,_netdev,nofail,x-systemd.automount,noatime,comment=x,nosuid",
          "-n", "-t", "fuse.maildisk"],
         ["mount", "-c", conf, "-o", "fsname=%s,noatime,nosuid" % conf, "/srv/mail"]),
        ([conf, "/srv/mail", "-s", "-v", "-oro,allow_other"],
         ["mount", "-c", conf, "-o", "fsname=%s,allow_other" % conf, "/srv/mail"]),
        ([conf, "/srv/mail", "-f", "-o", "noexec"], []),
    ]
    for args, want in cases:
        rc, out, err = run([copy] + args)
        check(rc == 0 and out.splitlines() == want, "mount.fuse.maildisk %s" % " ".join(args), out, err)
    for args, what in (([conf], "no mount point"), ([conf, "/srv/mail", "-N", "1"], "-N"),
                       ([os.path.join(ctx.tmp, "none.conf"), "/srv/mail"], "a missing config"),
                       ([conf, "/srv/mail", "extra"], "an extra argument")):
        rc, out, err = run([copy] + args)
        check(rc != 0 and out == "" and err.strip(), "the helper refuses %s" % what, out, err)


def main(ctx):
    build = os.environ.get("MESON_BUILD_ROOT")
    check(build, "MESON_BUILD_ROOT is set (run by meson test)")
    files = installed_files(build)
    dest = os.path.join(ctx.tmp, "dest")
    rc, out, err = run(["meson", "install", "-C", build, "--no-rebuild", "--quiet", "--destdir", dest],
                       timeout=300)
    check(rc == 0, "meson install --destdir", out + err)
    for dst in files.values():
        check(os.path.lexists(dest + dst), "%s installed" % dst)
    binary = find_installed(files, r"/bin/maildisk$")
    check(os.access(dest + binary, os.X_OK), "the binary is executable")
    rc, out, _ = run([dest + binary, "--version"])
    check(rc == 0 and out.startswith("maildisk "), "installed maildisk --version", out)
    bindir = os.path.dirname(binary)

    check_man(dest, files)
    check_units(ctx, dest, files, bindir)
    conf = check_example(ctx, dest, files)
    check_completion(ctx, dest, files, conf)
    check_helper(ctx, dest, files, bindir)


if __name__ == "__main__":
    H.run(main, deadline=200)
