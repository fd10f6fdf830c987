"""Shared pieces of the mount tests (tests/mount/test_*.py).

Standard library only; builds on tests/integration/harness.py (the private
Dovecot, the test frame, store inspection). What it adds:

  Mount           one `maildisk mount -f` started by the test: its own mount
                  point, a deadline for coming up, unmounted by
                  `fusermount3 -u` (and only its own PID killed) on any exit.
  wait_for        polls a condition until a deadline (never a fixed sleep).
  sync_marks / wait_synced
                  the syncs table: wait for a sync of each account that
                  started after a mark, so a SIGUSR1 is followed by polling,
                  not by sleeping.
  xattr_raw       getxattr(2) with a chosen buffer size (size 0, ERANGE).
  local_user      a real local account created for the test, removed after.
  grant_fuse      lets such a user open /dev/fuse for the test's duration
                  (an ACL entry, removed after).
  stem / folder_listing / messages_in
                  what a folder directory lists now that a message's parts
                  show as a directory <stem>/ beside its <stem>.eml.
"""

import ctypes
import errno
import fcntl
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness as H  # noqa: E402
from harness import Failure, Skip, check, log  # noqa: E402,F401

EROFS = errno.EROFS


def require_fuse():
    """Exit 77 only when there is no FUSE device at all."""
    if not os.path.exists("/dev/fuse"):
        raise Skip("/dev/fuse is absent")


wait_for = H.wait_for


def mounts_at(mountpoint):
    """How many mounts /proc/self/mounts has at mountpoint (works where
    stat is refused, as for root on a mount without allow_other, or
    answers ENOTCONN, as a dead daemon's mount does)."""
    want = os.path.realpath(mountpoint)
    n = 0
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            mp = fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            n += mp == want
    return n


def in_mount_table(mountpoint):
    """True when mountpoint is in /proc/self/mounts."""
    return mounts_at(mountpoint) > 0


def fusermount_u(mountpoint, lazy=False, timeout=15):
    """Unmounts, retrying while the kernel says busy (a reader closing)."""
    argv = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [mountpoint]
    end = time.monotonic() + timeout
    while True:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode == 0:
            return
        err = p.stderr.decode(errors="replace")
        if "busy" not in err.lower() or time.monotonic() > end:
            raise Failure("%s failed: %s" % (" ".join(argv), err.strip()))
        time.sleep(0.1)


class Mount:
    """`maildisk mount -c CONFIG -f MOUNTPOINT` as a child of the test."""

    def __init__(self, ctx, config, mountpoint, opts=None, args=()):
        self.ctx, self.config, self.mountpoint, self.opts = ctx, config, mountpoint, opts
        self.args = list(args)      # more options, e.g. ["-v"]
        self.proc = None
        self.reported = False
        self.log_path = mountpoint.rstrip("/") + ".log"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=20):
        try:
            os.makedirs(self.mountpoint, exist_ok=True)
        except FileExistsError:
            pass        # a dead mount (ENOTCONN): maildisk detaches it
        argv = [H.maildisk_path(), "mount", "-c", self.config, "-f"] + self.args
        if self.opts:
            argv += ["-o", self.opts]
        argv.append(self.mountpoint)
        log("$ " + " ".join(argv))
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=H.maildisk_env())
        logf.close()
        self.ctx.stack.callback(self.cleanup)
        wait_for(lambda: self.proc.poll() is not None or os.path.ismount(self.mountpoint),
                 timeout, "%s to be mounted" % self.mountpoint)
        check(self.proc.poll() is None, "maildisk mount exited %s" % self.proc.returncode,
              self.log_text())
        log("mounted %s (pid %d)" % (self.mountpoint, self.proc.pid))
        return self

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def check_log(self):
        text = self.log_text()
        check(not H.SANITIZER_RE.search(text), "sanitizer report from maildisk mount", text[-4000:])

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=60, expect=0):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure("maildisk mount (pid %d) did not exit within %ds" % (self.proc.pid, timeout),
                          self.log_text()[-3000:])
        log("maildisk mount exited %d" % rc)
        self.check_log()
        check(rc == expect, "maildisk mount exited %d, expected %d" % (rc, expect), self.log_text()[-3000:])
        check(not in_mount_table(self.mountpoint), "%s still mounted after exit" % self.mountpoint)
        return rc

    def unmount(self, timeout=60):
        fusermount_u(self.mountpoint)
        return self.wait_exit(timeout)

    def cleanup(self):
        if self.proc is None:
            return
        # The mount table, not stat: a dead daemon's mount answers ENOTCONN.
        if in_mount_table(self.mountpoint):
            try:
                fusermount_u(self.mountpoint, lazy=True, timeout=5)
            except Failure as e:
                log("cleanup: %s" % e)
        if self.proc.poll() is None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.returncode != 0 and not self.reported:
            log("maildisk mount (pid %d) ended with %d; its log:\n%s" % (
                self.proc.pid, self.proc.returncode, self.log_text()[-6000:]))
        self.reported = True


# ---------------------------------------------------------------- syncs

def sync_marks(store):
    """{(user, account): highest syncs.id so far}."""
    rows = store.query("SELECT user, account, MAX(id) AS id FROM syncs GROUP BY user, account")
    return {(r["user"], r["account"]): r["id"] for r in rows}


def wait_synced(store, accounts, marks=None, timeout=60):
    """Waits until each (user, account) has a finished sync started after
    marks (a sync_marks() result). Returns {(user, account): row}."""
    marks = marks or {}

    def done():
        out = {}
        for ua in accounts:
            rows = store.query("SELECT * FROM syncs WHERE user = ? AND account = ? AND id > ? "
                               "AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
                               ua[0], ua[1], marks.get(ua, 0))
            if not rows:
                return None
            out[ua] = rows[0]
        return out
    return wait_for(done, timeout, "a finished sync of %s" % ", ".join("/".join(a) for a in accounts),
                    interval=0.1)


def wait_clock_past(t):
    """Waits until the wall clock's second is past t, so that a change now
    gets a newer whole-second timestamp than t."""
    wait_for(lambda: int(time.time()) > t, 3, "the clock to pass %d" % t, interval=0.02)


# ---------------------------------------------------------------- xattrs

_libc = ctypes.CDLL(None, use_errno=True)
_libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.getxattr.restype = ctypes.c_ssize_t
_libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.listxattr.restype = ctypes.c_ssize_t


def xattr_raw(path, name, size):
    """getxattr(2) with a buffer of size bytes: (result, errno, bytes)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    r = _libc.getxattr(os.fsencode(path), name.encode(), buf if size else None, size)
    return r, (ctypes.get_errno() if r < 0 else 0), buf.raw[:r] if r > 0 and size else b""


def listxattr_raw(path, size):
    buf = ctypes.create_string_buffer(max(size, 1))
    r = _libc.listxattr(os.fsencode(path), buf if size else None, size)
    return r, (ctypes.get_errno() if r < 0 else 0)


# ---------------------------------------------------------------- local users

def local_user(ctx, prefix, home=None):
    """Creates a real local user (name prefix + random hex) that the test
    removes at the end; home: a directory made its home (created, owned by
    it, 0700). Returns the passwd entry."""
    name = "%s%s" % (prefix, os.urandom(3).hex())
    argv = ["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin",
            "--home-dir", home or "/nonexistent", name]
    # useradd fails while another holds /etc/passwd's lock: tests run in parallel.
    with open("/tmp/.maildisk-harness-useradd.lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        last = None
        for attempt in range(20):
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if p.returncode == 0:
                break
            last = p.stderr.decode(errors="replace")
            time.sleep(0.2)
        else:
            raise RuntimeError("useradd %s: %s" % (name, last))

    def remove():
        with open("/tmp/.maildisk-harness-useradd.lock", "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            subprocess.run(["userdel", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ctx.stack.callback(remove)
    pw = pwd.getpwnam(name)
    if home:
        os.makedirs(home, exist_ok=True)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o700)
    log("local user %s uid %d" % (name, pw.pw_uid))
    return pw


def as_user(user, argv, env=None, timeout=120, input=None):
    """Runs argv as user (runuser -u), returns CompletedProcess (bytes)."""
    # LC_ALL=C: the tests look for "Permission denied" in messages.
    full = ["runuser", "-u", user, "--", "env", "LC_ALL=C"]
    full += ["%s=%s" % kv for kv in (env or {}).items()]
    full += list(argv)
    return subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                          input=input)


def mount_files(root):
    """{path relative to root: os.stat_result} of every regular file below root."""
    out = {}
    for dp, dns, fns in os.walk(root):
        for fn in fns:
            p = os.path.join(dp, fn)
            out[os.path.relpath(p, root)] = os.lstat(p)
    return out


def folder_dir(mountpoint, row):
    """The mount directory of a folder row: its store path minus mail/,
    with the escaped Maildir names %63ur, %6Eew, %74mp shown as cur, new,
    tmp (cache/names.h names_folder_view)."""
    check(row["path"].startswith("mail/"), "folder path %r" % row["path"])
    view = {v: k for k, v in H.MAILDIR_SUBS.items()}
    parts = row["path"][len("mail/"):].split("/")
    return os.path.join(mountpoint, *[view.get(p, p) for p in parts])


# ---------------------------------------------------------------- parts directories

def stem(view_name):
    """The name of a message's parts directory: its view name without
    ".eml" (fs/mnt_parts.c mnt_parts_dir_name)."""
    check(len(view_name) > 4 and view_name.endswith(".eml"), "not a message name: %r" % view_name)
    return view_name[:-len(".eml")]


def listing(rows, parts=True):
    """The names a folder directory lists for these message rows (sub-
    folders aside): each visible row's view name, and beside it its stem
    when its parts were recorded (n_parts > 0; NULL until analysed, 0 when
    GMime could not parse it). parts: False where `parts = no`."""
    out = set()
    for r in rows:
        if r["state"] not in (H.ACTIVE, H.RESTORED):
            continue
        out.add(r["view_name"])
        if parts and r["n_parts"]:
            out.add(stem(r["view_name"]))
    return out


def folder_listing(store, user, account, folder, parts=True):
    """listing() of one folder's rows in the index."""
    return listing(store.messages(user, account, folder), parts)


def messages_in(names):
    """The message files (.eml) of a folder directory's listing: a parts
    directory's name never ends in .eml (a view name ends "~tag.eml" or
    "~tag (n).eml")."""
    return {n for n in names if n.endswith(".eml")}


CPU_LATENCY_DEVICE = "/dev/cpu_dma_latency"


def holds_cpu_latency(pid):
    """True when process pid has the kernel's CPU latency request open
    (fs/cpu_awake.c holds it while the mount serves)."""
    fd_dir = "/proc/%d/fd" % pid
    for n in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, n)) == CPU_LATENCY_DEVICE:
                return True
        except OSError:
            pass   # closed meanwhile
    return False


def cpu_latency_during_reads(pid, paths, seconds=1.0):
    """Reads paths (from the daemon, not the page cache) round and round
    for about `seconds` while watching pid's descriptors; returns (held
    while reading, still held 0.5 s after the last read)."""
    seen = False
    end = time.monotonic() + seconds
    while time.monotonic() < end and not seen:
        for p in paths:
            with open(p, "rb") as f:
                # Cached pages would spare the daemon every request.
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                f.read()
        seen = holds_cpu_latency(pid)
    time.sleep(0.5)
    return seen, holds_cpu_latency(pid)


def have(tool):
    return shutil.which(tool) is not None


def signal_name(sig):
    return signal.Signals(sig).name


# ---------------------------------------------------------------- /dev/fuse

FUSE_DEV = "/dev/fuse"
_FUSE_ACL_LOCK = "/tmp/.maildisk-harness-devfuse.lock"


def _setfacl(*args):
    p = subprocess.run(["setfacl"] + list(args) + [FUSE_DEV], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise Failure("setfacl %s %s: %s" % (" ".join(args), FUSE_DEV, p.stderr.decode(errors="replace")))


def grant_fuse(ctx, pw):
    """Lets the user pw open /dev/fuse read-write until the test ends.

    libfuse opens /dev/fuse itself before it falls back to fusermount3, and
    gives up when that is refused, so a device of mode 0600 (hardened hosts,
    containers) leaves an ordinary user unable to mount. Instead of changing
    the mode for everyone, this adds one ACL entry for that uid and removes
    it at cleanup; when no other named entry is left, the ACL is removed
    altogether, so the device ends as it was. Tests running at the same
    time each add and remove their own entry, under one lock."""
    st = os.stat(FUSE_DEV)
    if st.st_mode & 0o006 == 0o006:
        return
    if not have("setfacl"):
        raise Skip("%s is mode %o and setfacl is missing (apt-get install acl)" % (
            FUSE_DEV, stat_mode(st)))
    with open(_FUSE_ACL_LOCK, "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        _setfacl("-m", "u:%d:rw" % pw.pw_uid)

    def revoke():
        with open(_FUSE_ACL_LOCK, "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            _setfacl("-x", "u:%d" % pw.pw_uid)
            acl = subprocess.run(["getfacl", "-cn", FUSE_DEV], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE).stdout.decode()
            if not re.search(r"^(user|group):\d+:", acl, re.M):
                _setfacl("-b")
        log("%s: ACL entry for uid %d removed, mode %o" % (FUSE_DEV, pw.pw_uid, stat_mode(os.stat(FUSE_DEV))))
    ctx.stack.callback(revoke)
    log("%s: uid %d may open it for this test" % (FUSE_DEV, pw.pw_uid))


def stat_mode(st):
    return st.st_mode & 0o7777
