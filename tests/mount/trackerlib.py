"""GNOME Tracker 3 (Debian 12: tracker 3.4.2, tracker-miner-fs and
tracker-extract 3.4.3) indexing chosen directories, as root, without a
desktop. Standard library only.

The recipe (measured on Debian 12):
  - Everything of Tracker's lives in one private directory outside /tmp
    (HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME, XDG_DATA_HOME, XDG_RUNTIME_DIR),
    removed at the end. Tracker silently skips what lies under /tmp, so the
    indexed directories must be elsewhere too (/var/tmp here).
  - Settings without dconf: GSETTINGS_BACKEND=keyfile reads
    $XDG_CONFIG_HOME/glib-2.0/settings/keyfile, whose group
    [org/freedesktop/tracker/miner/files] gives index-recursive-directories
    (the directories), index-single-directories=@as [] (not $HOME),
    initial-sleep=0 (else 15 s), enable-monitors=false (no inotify on the
    mount), index-applications=false.
  - A private session bus: `dbus-run-session -- sh -c '...'` whose child
    writes $DBUS_SESSION_BUS_ADDRESS to a file and then waits on its stdin;
    closing that stdin ends the child, and dbus-run-session then ends the
    bus. Nothing is started by hand: the first `tracker3 status` is a D-Bus
    call that activates tracker-miner-fs-3, which activates
    tracker-extract-3 (both from /usr/share/dbus-1/services, with the bus's
    environment). Starting tracker-miner-fs-3 by hand races with that
    activation: the loser exits at once.
  - Activated services are double-forked by dbus-daemon (their parent is
    init), so they are found by a marker in /proc/<pid>/environ; they exit
    by themselves when the bus goes, and any left after a grace time are
    killed by PID.
  - Full-text search: tracker3 sparql --dbus-service
    org.freedesktop.Tracker3.Miner.Files with
      SELECT ?url WHERE { ?ie fts:match "WORD" ; nie:isStoredAs ?f .
                          ?f nie:url ?url }
    (the text is on the information element, the URL on the file). Only
    *.txt, *.md and *.mdwn are read as plain text (the Extract schema's
    text-allowlist); HTML, PDF and others go by their own extractors.
  - Done: the word's query answers and `tracker3 status` says "indexing
    complete"; until a deadline, after which the failure shows what
    Tracker and the bus printed.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from harness import Failure, check, log  # noqa: F401


def fail(msg, *detail):
    check(False, msg, *detail)

MINER_SERVICE = "org.freedesktop.Tracker3.Miner.Files"
PACKAGES = {"tracker3": "tracker", "/usr/libexec/tracker-miner-fs-3": "tracker-miner-fs",
            "/usr/libexec/tracker-extract-3": "tracker-extract", "dbus-run-session": "dbus-daemon"}


def missing():
    """Debian packages Tracker needs here that are not installed."""
    out = []
    for tool, pkg in PACKAGES.items():
        if not (os.access(tool, os.X_OK) if tool.startswith("/") else shutil.which(tool)):
            out.append(pkg)
    return out


def fts_literal(word):
    if not word.replace("-", "").isalnum():
        raise ValueError("not a plain word: %r" % word)
    return '"%s"' % word


class Tracker:
    """One private Tracker indexing dirs (absolute paths, not under /tmp).
    Use as a context manager; everything is gone after close()."""

    def __init__(self, dirs, parent="/var/tmp"):
        for d in dirs:
            real = os.path.realpath(d)
            if real == "/tmp" or real.startswith("/tmp/"):
                raise ValueError("Tracker skips %s: it is under /tmp" % d)
        self.dirs = [os.path.realpath(d) for d in dirs]
        self.root = tempfile.mkdtemp(prefix="maildisk-tracker-", dir=parent)
        os.chmod(self.root, 0o700)
        self.marker = os.path.basename(self.root)
        self.proc = None
        self.env = None
        self.bus_log = os.path.join(self.root, "bus.log")

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _write_settings(self, cfg):
        d = os.path.join(cfg, "glib-2.0", "settings")
        os.makedirs(d)
        dirs = ", ".join("'%s'" % p.replace("\\", "\\\\").replace("'", "\\'") for p in self.dirs)
        with open(os.path.join(d, "keyfile"), "w") as f:
            f.write("[org/freedesktop/tracker/miner/files]\n"
                    "index-recursive-directories=[%s]\n"
                    "index-single-directories=@as []\n"
                    "initial-sleep=0\n"
                    "enable-monitors=false\n"
                    "index-applications=false\n"
                    "throttle=0\n" % dirs)

    def start(self, timeout=20):
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
               "GSETTINGS_BACKEND": "keyfile", "MAILDISK_TRACKER": self.marker}
        for var, sub in (("HOME", "home"), ("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"),
                         ("XDG_DATA_HOME", "data"), ("XDG_RUNTIME_DIR", "run")):
            env[var] = os.path.join(self.root, sub)
            os.mkdir(env[var], 0o700)
        self._write_settings(env["XDG_CONFIG_HOME"])
        addr_file = os.path.join(self.root, "bus.address")
        script = 'printf %s "$DBUS_SESSION_BUS_ADDRESS" > "$1.new" && mv "$1.new" "$1" && exec cat >/dev/null'
        logf = open(self.bus_log, "ab")
        self.proc = subprocess.Popen(["dbus-run-session", "--", "sh", "-c", script, "sh", addr_file],
                                     stdin=subprocess.PIPE, stdout=logf, stderr=subprocess.STDOUT, env=env)
        logf.close()
        end = time.monotonic() + timeout
        while not os.path.exists(addr_file):
            if self.proc.poll() is not None or time.monotonic() > end:
                fail("dbus-run-session gave no bus address (exit %s)" % self.proc.poll(),
                     self.bus_text())
            time.sleep(0.05)
        with open(addr_file) as f:
            env["DBUS_SESSION_BUS_ADDRESS"] = f.read()
        self.env = env
        log("tracker: private bus %s, data in %s, indexing %s" % (
            env["DBUS_SESSION_BUS_ADDRESS"], self.root, ", ".join(self.dirs)))
        # The first call activates tracker-miner-fs-3 (and it tracker-extract-3).
        self.tracker3("status", timeout=60)

    def bus_text(self, n=4000):
        try:
            with open(self.bus_log, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def tracker3(self, *args, timeout=30):
        """Runs tracker3 on the private bus: (rc, stdout, stderr)."""
        try:
            p = subprocess.run(["tracker3"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=self.env, timeout=timeout)
        except subprocess.TimeoutExpired:
            fail("tracker3 %s did not answer within %ds" % (" ".join(args), timeout),
                 "bus log:", self.bus_text())
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def status(self):
        rc, out, err = self.tracker3("status")
        return (out + err).strip()

    def urls(self, word):
        """The file URLs whose extracted text holds word (a full-text match)."""
        q = ("SELECT ?url WHERE { ?ie fts:match %s ; nie:isStoredAs ?f . ?f nie:url ?url }"
             % fts_literal(word))
        rc, out, err = self.tracker3("sparql", "--dbus-service", MINER_SERVICE, "-q", q)
        if rc != 0:
            fail("tracker3 sparql failed (%d) for %r" % (rc, word), out, err, "bus log:", self.bus_text())
        return sorted({line.strip() for line in out.splitlines() if line.strip().startswith("file://")})

    def find(self, words, timeout=120):
        """Waits until each word is found and the miners are idle; returns
        {word: [file URLs]}. Fails at timeout with what Tracker printed."""
        end = time.monotonic() + timeout
        got, status = {}, ""
        while True:
            status = self.status()
            got = {w: self.urls(w) for w in words}
            if all(got.values()) and "indexing complete" in status:
                break
            if time.monotonic() > end:
                fail("Tracker did not find %s within %ds" % (
                    ", ".join(w for w in words if not got[w]) or "(all found, not idle)", timeout),
                    "found: %r" % got, "\ntracker3 status:\n" + status,
                    "\nbus and miner log:\n" + self.bus_text())
            time.sleep(0.5)
        log("tracker: %r (%s)" % (got, status.splitlines()[0] if status else ""))
        return got

    def _ours(self):
        """PIDs of processes carrying this session's marker (the activated
        miners double-forked away from the bus)."""
        want = ("MAILDISK_TRACKER=%s" % self.marker).encode()
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open("/proc/%s/environ" % d, "rb") as f:
                    if want in f.read().split(b"\0"):
                        out.append(int(d))
            except OSError:
                pass
        return out

    def close(self, grace=10):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.stdin.close()     # the child's cat ends, then the bus
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            end = time.monotonic() + grace
            left = self._ours()
            while left and time.monotonic() < end:
                time.sleep(0.1)
                left = self._ours()
            for pid in left:
                log("tracker: pid %d outlived its bus, killed" % pid)
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            self.proc = None
        if os.environ.get("MAILDISK_TEST_KEEP"):
            log("kept %s" % self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def selftest():
    """The recipe on a plain directory: a .txt with a unique word."""
    top = tempfile.mkdtemp(prefix="maildisk-tracker-plain-", dir="/var/tmp")
    try:
        word = "zanzibar%s" % os.urandom(4).hex().replace("0", "q").replace("1", "r")
        word = "".join(c if c.isalpha() else "x" for c in word)
        path = os.path.join(top, "note.txt")
        with open(path, "w") as f:
            f.write("a note with %s inside\n" % word)
        t0 = time.monotonic()
        with Tracker([top]) as t:
            got = t.find([word], timeout=90)
            if got[word] != ["file://" + path]:
                raise Failure("Tracker answered %r for %s" % (got[word], path))
            if t.urls("nosuchwordanywhere"):
                raise Failure("Tracker answers an absent word")
        log("tracker selftest: %s found in %s after %.1fs" % (word, path, time.monotonic() - t0))
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    selftest()
