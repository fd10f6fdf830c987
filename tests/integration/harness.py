#!/usr/bin/env python3
"""Integration test harness for maildisk: a private Dovecot on loopback.

Standard library only. What it gives the tests:

  Dovecot        a private Dovecot 2.3 instance (context manager): its own
                 temp dir, CA and server certificate, dovecot.conf, passwd-file
                 users, Maildirs owned by a system user, IMAP (STARTTLS
                 offered), IMAPS, POP3 and POP3S on free 127.0.0.1 ports.
                 Never /etc/dovecot, never default ports; stopped by the PID
                 in its master.pid.
  Proxy          a threaded TCP proxy on a free port that counts bytes and
                 can hang up after N bytes server->client or throttle.
  Store          read-only views of a maildisk store (index.db, files).
  Ctx, run()     the frame of one test program: hard deadline, cleanup on
                 any exit, exit code 0 pass / 1 fail / 77 skip.
  write_config() a maildisk config (0600) for given accounts.
  wait_for()     polls a state until it holds or a deadline passes: tests
                 wait on what they need, never for a fixed time.
  Runs           maildisk(), keeping every run's output for later checks.

Why some things are as they are (measured on Debian 12, Dovecot 2.3.19):
  - Dovecot refuses to open mail as uid 0, so Maildirs belong to a system
    user (maildisk-vmail), and every directory above base_dir must be
    world-traversable (o+x).
  - Dovecot returns NUL bytes in BODY[] as 0x80 and always sends CRLF line
    ends, so "byte-exact" means equal to what BODY.PEEK[] returns, never to
    the file Dovecot keeps on disk.
  - UIDVALIDITY is reset by removing the folder's dovecot-uidlist and
    dovecot.index* files (and the mailbox list index, which caches it) while
    no session has the folder open; Dovecot then numbers the messages again
    from 1 under a new, larger UIDVALIDITY (see reset_uidvalidity).
  - The server is tuned for tests: mail_fsync = never (2000 APPENDs took
    36 s with an fsync each, 5 s without), and no auth failure delay or
    per-IP auth penalty (after one wrong-password test every later login
    from 127.0.0.1 waited 2 to 15 s).
  - Maildir++ with its default '.' separator refuses names like "a/b",
    "../x" or ".hidden"; Dovecot(listescape=True) accepts them, with either
    separator, so hostile names can exist upstream.
  - imaplib.append() rewrites bare LF line ends to CRLF, so append() sends
    the literal itself, byte for byte.

Run `python3 harness.py selftest` to check the harness alone, and
`python3 harness.py demo-up DIR` / `demo-down DIR` for scripts/demo.
"""

import base64
import contextlib
import fcntl
import imaplib
import json
import os
import poplib
import pwd
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VMAIL_USER = "maildisk-vmail"
EXIT_PASS, EXIT_FAIL, EXIT_SKIP = 0, 1, 77


LOG = sys.stdout     # demo-up logs to stderr: its stdout is the config path


def log(*args):
    print("[%s]" % time.strftime("%H:%M:%S"), *args, file=LOG, flush=True)


class Skip(Exception):
    """Raise to end the test with exit code 77."""


class Deadline(BaseException):
    """Raised by SIGALRM/SIGTERM; a BaseException so that no test code
    swallows it, while with-blocks still clean up."""


class Failure(AssertionError):
    pass


def check(cond, msg, *detail):
    if not cond:
        raise Failure(msg + ("" if not detail else ": " + " ".join(str(d) for d in detail)))


# ---------------------------------------------------------------- helpers

def free_port():
    """A port that was free a moment ago. Parallel tests may race for it;
    Dovecot.start retries with fresh ports when a bind fails."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what, interval=0.05):
    """Calls pred until it returns something true, and returns that; fails
    the test after timeout seconds, naming what it waited for."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise Failure("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def write_file(path, text, mode=0o600):
    """Writes text to path, created with mode (and set to it, whatever the
    umask or an older file had). Returns path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def run_cmd(argv, timeout=60, check_rc=True, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, **kw)
    if check_rc and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), p.returncode,
                                                    p.stderr.decode(errors="replace").strip()))
    return p


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children_of(pid):
    """PIDs whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


def ensure_vmail_user():
    """Creates the system user owning the test Maildirs (Dovecot refuses
    uid 0). Serialised with a lock file: tests run in parallel and useradd
    fails when /etc/passwd is locked by another useradd."""
    try:
        pw = pwd.getpwnam(VMAIL_USER)
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        pass
    with open("/tmp/.maildisk-harness-useradd.lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        for attempt in range(20):
            try:
                pw = pwd.getpwnam(VMAIL_USER)
                return pw.pw_uid, pw.pw_gid
            except KeyError:
                pass
            p = subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                                "--shell", "/usr/sbin/nologin", "--home-dir", "/nonexistent",
                                VMAIL_USER], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if p.returncode == 0:
                continue
            time.sleep(0.2)
        raise RuntimeError("useradd %s failed: %s" % (VMAIL_USER, p.stderr.decode(errors="replace")))


# ---------------------------------------------------------------- TLS material

def make_ca(directory, name="ca"):
    """A self-signed CA (EC P-256: fast to generate). Returns (cert, key)."""
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    run_cmd(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "3",
             "-subj", "/O=maildisk tests/CN=maildisk test CA %s %s" % (name, secrets.token_hex(4)),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    os.chmod(key, 0o600)
    return cert, key


def make_server_cert(directory, ca_cert, ca_key, name="server"):
    """A server certificate for 127.0.0.1 and localhost signed by the CA."""
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    csr = os.path.join(directory, name + ".csr")
    ext = os.path.join(directory, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run_cmd(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", csr, "-subj", "/O=maildisk tests/CN=127.0.0.1"])
    run_cmd(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
             "-set_serial", str(int.from_bytes(secrets.token_bytes(8), "big")),
             "-days", "3", "-extfile", ext, "-out", cert])
    os.chmod(key, 0o600)
    return cert, key


# ---------------------------------------------------------------- modified UTF-7 (RFC 3501 5.1.3)

def utf7_encode(s):
    out, pending = [], []

    def flush():
        if pending:
            b = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()
    for ch in s:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def utf7_decode(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "&":
            j = s.index("-", i)
            if j == i + 1:
                out.append("&")
            else:
                b64 = s[i + 1:j].replace(",", "/")
                b64 += "=" * (-len(b64) % 4)
                out.append(base64.b64decode(b64).decode("utf-16-be"))
            i = j + 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def imap_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def escape_component(name):
    """The store's path escaping of one name component (cache/names.h):
    '%', '/', control bytes, DEL, invalid UTF-8 and a leading '.' become
    %XX; the empty name is a lone "%"."""
    if name == "":
        return "%"
    raw = name.encode("utf-8", errors="surrogateescape")
    try:
        raw.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    out = bytearray()
    for i, b in enumerate(raw):
        if b in (0x25, 0x2F, 0x7F) or b < 0x20 or (i == 0 and b == 0x2E) or (not valid and b >= 0x80):
            out += b"%%%02X" % b
        else:
            out.append(b)
    return out.decode("utf-8", errors="surrogateescape")


# A Maildir's own subdirectories, as folder path components (cache/names.h).
MAILDIR_SUBS = {"cur": "%63ur", "new": "%6Eew", "tmp": "%74mp"}


def folder_path(name, delim):
    """names_folder_path(): the folder's path below mail/<user>/<account>/."""
    parts = name.split(delim) if delim else [name]
    return "/".join(MAILDIR_SUBS.get(p) or escape_component(p) for p in parts)


def unescape_component(c):
    """Reverses the store's path escaping of a folder path component
    (cache/names.h): %XX -> byte, lone "%" -> empty name."""
    if c in MAILDIR_SUBS:
        raise ValueError("%r is no folder path component" % c)
    if c == "%":
        return ""
    out, i = bytearray(), 0
    raw = c.encode()
    while i < len(raw):
        if raw[i:i + 1] == b"%":
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", errors="surrogateescape")


# ---------------------------------------------------------------- Dovecot

class Dovecot:
    """A private Dovecot. Use as a context manager, or start()/stop().

    Users are added with add_user() at any time (the passwd-file is re-read
    by Dovecot when it changes). All mail operations go through IMAP (one
    imaplib connection per call, closed at the end) so the server's own
    view is what the tests compare against.
    """

    def __init__(self, separator=None, listescape=False, keep=False, parent="/tmp", oauth2_url=None,
                 oauth2_mechanisms="xoauth2 oauthbearer", connections=None, imap_client_limit=1,
                 login_client_limit=None):
        # connections: room for that many IMAP sessions at once (Dovecot's
        # default is 100 imap processes); imap_client_limit: sessions per
        # imap process (above 1, the titles no longer show who idles);
        # login_client_limit: TLS sessions per imap-login process (Dovecot's
        # "high-performance mode"), instead of a login process per session,
        # which at 10,000 sessions is 10,000 processes.
        self.connections = connections
        self.imap_client_limit = imap_client_limit
        self.login_client_limit = login_client_limit
        self.separator = separator    # None: Dovecot's default ('.' for Maildir++)
        # oauth2_url: an RFC 7662 introspection URL (see TokenServer); when
        # set, Dovecot also offers oauth2_mechanisms (XOAUTH2 and OAUTHBEARER
        # by default), checked by its oauth2 passdb against that URL;
        # passwords keep working as before.
        self.oauth2_url = oauth2_url
        self.oauth2_mechanisms = oauth2_mechanisms
        # listescape lets folder names hold what Maildir++ otherwise refuses
        # ("..", ".hidden", "a/b" with '.' as separator): hostile names.
        self.listescape = listescape
        self.keep = keep              # leave the temp dir (the demo reads it)
        self.parent = parent          # where the temp dir goes; must be o+x
        self.dir = None
        self.pid = None
        self.users = {}
        self.ports = {}

    # -- life cycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        if os.geteuid() != 0:
            raise Skip("the Dovecot harness needs root")
        if not shutil.which("dovecot") and not os.path.exists("/usr/sbin/dovecot"):
            raise Skip("dovecot is not installed")
        self.vmail_uid, self.vmail_gid = ensure_vmail_user()
        self.dir = tempfile.mkdtemp(prefix="maildisk-dovecot-", dir=self.parent)
        # Dovecot's login and auth processes run as other users: every
        # directory above base_dir must be traversable by them.
        os.chmod(self.dir, 0o711)
        for sub in ("run", "state"):
            os.mkdir(os.path.join(self.dir, sub), 0o755)
        for sub in ("mail", "home"):
            p = os.path.join(self.dir, sub)
            os.mkdir(p, 0o700)
            os.chown(p, self.vmail_uid, self.vmail_gid)
        self.ca_pem, self.ca_key = make_ca(self.dir, "ca")
        self.cert, self.key = make_server_cert(self.dir, self.ca_pem, self.ca_key)
        self.users_file = os.path.join(self.dir, "users")
        self._write_users()
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.dovecot_bin = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self.doveadm_bin = shutil.which("doveadm") or "/usr/bin/doveadm"
        last = None
        for attempt in range(5):
            self.ports = {k: free_port() for k in ("imap", "imaps", "pop3", "pop3s")}
            if len(set(self.ports.values())) < 4:
                continue
            self._write_conf()
            try:
                self._launch()
                return self
            except RuntimeError as e:
                last = e
                log("dovecot start failed (attempt %d): %s" % (attempt + 1, e))
                self._kill_master()
        self.stop()
        raise RuntimeError("dovecot did not start: %s" % last)

    def _write_conf(self):
        d = self.dir
        ns = ""
        if self.separator:
            ns = "namespace inbox {\n  inbox = yes\n  separator = %s\n}\n" % self.separator
        if self.listescape:
            ns += 'mail_plugins = listescape\nplugin {\n  listescape_char = "\\\\"\n}\n'
        mechanisms, pw_mechs, oauth2_passdb = "plain login", "", ""
        if self.oauth2_url:
            mechanisms = "plain login " + self.oauth2_mechanisms
            # the password passdb must not judge tokens, nor oauth2 passwords
            pw_mechs = "  mechanisms = plain login\n"
            oauth2_conf = os.path.join(d, "oauth2.conf.ext")
            with open(oauth2_conf, "w") as f:
                f.write("introspection_mode = post\n"
                        "introspection_url = %s\n"
                        "force_introspection = yes\n"
                        "username_attribute = username\n"
                        "active_attribute = active\n"
                        "active_value = true\n"
                        "timeout_msecs = 10000\n" % self.oauth2_url)
            os.chmod(oauth2_conf, 0o644)
            oauth2_passdb = ("passdb {\n  driver = oauth2\n  mechanisms = %s\n"
                             "  args = %s\n}\n" % (self.oauth2_mechanisms, oauth2_conf))
        # a plaintext (STARTTLS) and an implicit-TLS listener per protocol
        listeners = "".join(
            "service %s-login {\n" % proto + "".join(
                "  inet_listener %s {\n    address = 127.0.0.1\n    port = %d\n%s  }\n"
                % (name, self.ports[name], "    ssl = yes\n" if name.endswith("s") else "")
                for name in (proto, proto + "s")) + "}\n"
            for proto in ("imap", "pop3"))
        limits = ""
        if self.connections:
            n = self.connections + 100
            k = self.imap_client_limit
            limits = ("default_process_limit = %d\ndefault_client_limit = %d\n"
                      "service imap {\n  process_limit = %d\n  client_limit = %d\n%s}\n"
                      % (n, 2 * n + 1000, n // k + 50, k, "  service_count = 0\n" if k > 1 else ""))
            if self.login_client_limit:
                limits += ("service imap-login {\n  service_count = 0\n  client_limit = %d\n"
                           "  process_min_avail = 2\n  vsz_limit = 4G\n}\n" % self.login_client_limit)
        conf = f"""# private maildisk test instance; generated by tests/integration/harness.py
instance_name = maildisk-test-{os.path.basename(d)}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap pop3
# the imap processes show "[USER IP COMMAND]" in ps: tests see a session idle
verbose_proctitle = yes
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_verbose = yes
# no 2 s delay (and per-IP penalty) after the wrong-password tests
auth_failure_delay = 0
# IDLE notices changes by inotify; when the machine's inotify instances are
# used up (many test Dovecots at once), it polls, by default every 30 s,
# longer than the IDLE test waits for a wake-up
mailbox_idle_check_interval = 1 secs
first_valid_uid = {self.vmail_uid}
last_valid_uid = {self.vmail_uid}
first_valid_gid = {self.vmail_gid}
last_valid_gid = {self.vmail_gid}
mail_uid = {VMAIL_USER}
mail_gid = {VMAIL_USER}
mail_location = maildir:{d}/mail/%u
mail_max_userip_connections = 200
# the test server need not survive power loss; fsync per APPEND is slow
mail_fsync = never
{ns}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_file}
{pw_mechs}}}
{oauth2_passdb}userdb {{
  driver = passwd-file
  args = username_format=%u {self.users_file}
  default_fields = home={d}/home/%u
}}
# no per-IP auth penalty either (documented way to disable it)
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{listeners}{limits}"""
        with open(self.conf, "w") as f:
            f.write(conf)

    def _write_users(self):
        tmp = self.users_file + ".new"
        with open(tmp, "w") as f:
            for name, pw in self.users.items():
                f.write("%s:{PLAIN}%s::::::\n" % (name, pw))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.users_file)

    def _launch(self):
        # The daemonised master keeps its stdout: a pipe would never reach
        # EOF, so its early messages go to a file.
        out_path = os.path.join(self.dir, "dovecot.out")
        with open(out_path, "wb") as out:
            p = subprocess.run([self.dovecot_bin, "-c", self.conf], stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=30)
        if p.returncode != 0:
            with open(out_path, errors="replace") as f:
                raise RuntimeError("dovecot -c %s exited %d: %s%s" % (self.conf, p.returncode, f.read(),
                                                                     self.log_tail()))
        pidfile = os.path.join(self.dir, "run", "master.pid")
        end = time.monotonic() + 10
        while self.pid is None:
            # The file may exist before the PID is written into it.
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(pidfile) as f:
                    self.pid = int(f.read().split()[0])
            if self.pid is None:
                if time.monotonic() > end:
                    raise RuntimeError("no PID in %s: %s" % (pidfile, self.log_tail()))
                time.sleep(0.02)
        for name, port in self.ports.items():
            if not wait_port(port, 10):
                raise RuntimeError("port %d (%s) does not accept: %s" % (port, name, self.log_tail()))
        if not pid_alive(self.pid):
            raise RuntimeError("dovecot exited: " + self.log_tail())
        log("dovecot pid %d in %s: imap %d imaps %d pop3 %d pop3s %d" % (
            self.pid, self.dir, self.ports["imap"], self.ports["imaps"],
            self.ports["pop3"], self.ports["pop3s"]))

    def _kill_master(self):
        """Stops the master by its PID and waits for it and its children
        (all started by us) to be gone."""
        pid = self.pid if self.pid is not None else self._find_master()
        if pid is None:
            return
        kids = children_of(pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        end = time.monotonic() + 10
        while time.monotonic() < end and pid_alive(pid):
            time.sleep(0.02)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 5
        for k in kids:
            while time.monotonic() < end and pid_alive(k):
                time.sleep(0.02)
            if pid_alive(k):
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pid = None

    def _find_master(self):
        """The master's PID when start() failed before reading it: from
        master.pid, else the process whose command line is exactly
        `dovecot -c <our conf>` (the conf path is unique to this instance)."""
        if not self.dir:
            return None
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(os.path.join(self.dir, "run", "master.pid")) as f:
                return int(f.read().split()[0])
        want = b"\0-c\0" + os.path.join(self.dir, "dovecot.conf").encode() + b"\0"
        for d in os.listdir("/proc"):
            if d.isdigit():
                with contextlib.suppress(OSError):
                    with open("/proc/%s/cmdline" % d, "rb") as f:
                        if f.read().endswith(want):
                            return int(d)
        return None

    def stop(self):
        if self.dir is None:
            return
        self._kill_master()
        if not self.keep and not os.environ.get("MAILDISK_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def restart(self):
        """Stops and starts the same instance on the same ports (the mail
        and its UIDs stay)."""
        self._kill_master()
        self._launch()

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "\n--- dovecot log ---\n" + "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # -- users and URLs
    def populate(self, users, layout, n, seed, max_size):
        """Adds users ({login: password}) and appends mail: for each (login,
        folder, k) of layout in turn, the next k of n messages that
        mailgen.generate(n, seed, max_size) makes. Returns (the n messages,
        the list of UIDs of each layout entry)."""
        import mailgen
        for u, pw in users.items():
            self.add_user(u, pw)
        msgs = mailgen.generate(n, seed=seed, max_size=max_size)
        uids, at = [], 0
        for login, folder, k in layout:
            uids.append(self.append(login, folder, [m.raw for m in msgs[at:at + k]]))
            at += k
        return msgs, uids

    def add_user(self, name, password):
        if ":" in name or ":" in password or "\n" in name + password:
            raise ValueError("passwd-file users must not contain ':' or newlines")
        self.users[name] = password
        self._write_users()

    def idle_sessions(self, user):
        """How many IMAP sessions of user are in IDLE now, from the titles
        of this instance's imap processes ("[USER IP IDLE]")."""
        title = re.compile(r"/imap \[%s \S+ IDLE\]" % re.escape(user))
        n = 0
        for pid in children_of(self.pid) if self.pid else ():
            with contextlib.suppress(OSError):
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    n += bool(title.search(f.read().replace(b"\0", b" ").decode(errors="replace")))
        return n

    def url(self, kind="imaps", port=None):
        return "%s://127.0.0.1:%d" % (kind, port or self.ports[kind])

    # -- IMAP access
    @contextlib.contextmanager
    def imap(self, user, kind="imaps"):
        ctx = ssl.create_default_context(cafile=self.ca_pem)
        if kind == "imaps":
            c = imaplib.IMAP4_SSL("127.0.0.1", self.ports["imaps"], ssl_context=ctx, timeout=60)
        else:
            c = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=60)
            if kind == "starttls":
                c.starttls(ssl_context=ctx)
        try:
            c.login(user, self.users[user])
            yield c
        finally:
            try:
                c.logout()
            except Exception:
                pass

    @staticmethod
    def _ok(typ, data, what):
        if typ != "OK":
            raise RuntimeError("%s: %s %r" % (what, typ, data))
        return data

    def separator_of(self, user):
        with self.imap(user) as c:
            data = self._ok(*c.list('""', '""'), "LIST")
        m = re.match(rb'\(.*?\) (?:"(.)"|NIL)', data[0])
        return m.group(1).decode() if m and m.group(1) else None

    def folders(self, user):
        """Folder names (UTF-8) as LIST shows them."""
        with self.imap(user) as c:
            data = self._ok(*c.list(), "LIST")
        out = []
        for line in data:
            if line is None:
                continue
            if isinstance(line, tuple):   # name sent as a literal
                out.append(utf7_decode(line[1].decode()))
                continue
            m = re.match(rb'\((.*?)\) (?:"(?:\\.|[^"])*"|NIL) (.*)$', line)
            name = m.group(2).decode()
            if name.startswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            out.append(utf7_decode(name))
        return out

    def _ensure_folder(self, c, folder):
        if folder.upper() == "INBOX":
            return
        typ, data = c.create(imap_quote(utf7_encode(folder)))
        if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(d for d in data if d):
            raise RuntimeError("CREATE %r: %s %r" % (folder, typ, data))

    def create_folder(self, user, folder):
        with self.imap(user) as c:
            self._ensure_folder(c, folder)

    def append(self, user, folder, raw, flags=()):
        """APPENDs one message (bytes) or many (a list; each item bytes or
        (bytes, flags)) over one connection, creating the folder if needed.
        The bytes go to the server untouched (imaplib.append would rewrite
        bare LF line ends). Returns the new UIDs (UIDPLUS APPENDUID)."""
        items = raw if isinstance(raw, list) else [(raw, flags)]
        mbox = imap_quote(utf7_encode(folder))
        uids = []
        with self.imap(user) as c:
            self._ensure_folder(c, folder)
            for item in items:
                body, fl = (item, ()) if isinstance(item, (bytes, bytearray)) else item
                flagstr = "(" + " ".join(fl) + ")" if fl else None
                c.literal = bytes(body)
                args = [mbox] + ([flagstr] if flagstr else [])
                typ, data = c._simple_command("APPEND", *args)
                self._ok(typ, data, "APPEND to %r" % folder)
                m = re.search(rb"APPENDUID (\d+) (\d+)", data[0] or b"")
                if not m:
                    raise RuntimeError("no APPENDUID in %r" % data)
                uids.append(int(m.group(2)))
        return uids if isinstance(raw, list) else uids[0]

    def _select(self, c, folder, readonly=True):
        typ, data = c.select(imap_quote(utf7_encode(folder)), readonly=readonly)
        self._ok(typ, data, "SELECT %r" % folder)

    def uids(self, user, folder):
        with self.imap(user) as c:
            self._select(c, folder)
            data = self._ok(*c.uid("SEARCH", "ALL"), "UID SEARCH")
        return sorted(int(x) for x in data[0].split())

    def uidvalidity(self, user, folder):
        with self.imap(user) as c:
            data = self._ok(*c.status(imap_quote(utf7_encode(folder)), "(UIDVALIDITY)"), "STATUS")
        return int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))

    def _fetch(self, c, uidset, item):
        typ, data = c.uid("FETCH", uidset, "(UID %s)" % item)
        self._ok(typ, data, "UID FETCH")
        return data

    def fetch_body(self, user, folder, uid):
        return self.fetch_bodies(user, folder, str(uid))[uid]

    def fetch_bodies(self, user, folder, uidset="1:*"):
        """{uid: bytes exactly as BODY.PEEK[] returns them} (never sets \\Seen)."""
        out = {}
        with self.imap(user) as c:
            self._select(c, folder)
            for part in self._fetch(c, uidset, "BODY.PEEK[]"):
                if isinstance(part, tuple):
                    uid = int(re.search(rb"UID (\d+)", part[0]).group(1))
                    out[uid] = part[1]
        return out

    def flags(self, user, folder):
        """{uid: frozenset of stored flags} (without \\Recent)."""
        out = {}
        with self.imap(user) as c:
            self._select(c, folder)
            for line in self._fetch(c, "1:*", "FLAGS"):
                if not line or isinstance(line, tuple):
                    continue
                m = re.search(rb"UID (\d+)", line)
                f = re.search(rb"FLAGS \(([^)]*)\)", line)
                if m and f:
                    # \Recent is per session, not a stored flag.
                    out[int(m.group(1))] = frozenset(f.group(1).decode().split()) - {"\\Recent"}
        return out

    def expunge(self, user, folder, uids):
        """Expunges the given UIDs (UID STORE \\Deleted + UID EXPUNGE)."""
        uids = list(uids)
        if not uids:
            return
        with self.imap(user) as c:
            self._select(c, folder, readonly=False)
            for i in range(0, len(uids), 500):
                chunk = ",".join(str(u) for u in uids[i:i + 500])
                self._ok(*c.uid("STORE", chunk, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
                self._ok(*c.uid("EXPUNGE", chunk), "UID EXPUNGE")

    def set_flags(self, user, folder, uids, flags):
        with self.imap(user) as c:
            self._select(c, folder, readonly=False)
            chunk = ",".join(str(u) for u in uids)
            self._ok(*c.uid("STORE", chunk, "+FLAGS.SILENT", "(%s)" % " ".join(flags)), "UID STORE")

    # -- server-side maintenance
    def doveadm(self, *args, check_rc=True):
        return run_cmd([self.doveadm_bin, "-c", self.conf] + list(args), check_rc=check_rc)

    def mailbox_path(self, user, folder):
        p = self.doveadm("mailbox", "path", "-u", user, folder)   # doveadm takes UTF-8
        return p.stdout.decode().strip()

    def reset_uidvalidity(self, user, folder):
        """Makes Dovecot forget the folder's UIDs so that it assigns a new
        UIDVALIDITY and numbers the messages again from 1.

        How: with no session on the user's mail (our own helpers log out
        after each call; doveadm kick ends any other), remove the Maildir's
        dovecot-uidlist and dovecot.index* files, and the user's mailbox list
        index (dovecot.list.index*, which caches UIDVALIDITY; Dovecot
        rebuilds it). The message files stay, so the content is unchanged.
        Returns (old, new) UIDVALIDITY."""
        old = self.uidvalidity(user, folder)
        path = self.mailbox_path(user, folder)
        self.doveadm("kick", user, check_rc=False)
        root = os.path.join(self.dir, "mail", user)
        victims = []
        for d in {path, root}:
            for n in os.listdir(d):
                if n == "dovecot-uidlist" and d == path or \
                   n.startswith("dovecot.index") and d == path or n.startswith("dovecot.list.index"):
                    victims.append(os.path.join(d, n))
        for v in victims:
            os.unlink(v)
        new = self.uidvalidity(user, folder)
        if new == old:
            raise RuntimeError("UIDVALIDITY of %s %r did not change (%d)" % (user, folder, old))
        log("%s %r: UIDVALIDITY %d -> %d" % (user, folder, old, new))
        return old, new


# ---------------------------------------------------------------- servers of the tests

class Closing:
    """A context manager whose exit calls self.close()."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Listener(Closing):
    """A TCP listener on a free 127.0.0.1 port (.port). Its thread accepts
    until close() and calls self.on_conn(sock) in that thread for each
    connection, which it keeps in .conns and closes at close(). A subclass
    sets what on_conn needs before calling Listener.__init__."""

    def __init__(self, backlog=8):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._accept_each, daemon=True)
        self.thread.start()

    def on_conn(self, conn):
        pass

    def _accept_each(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.on_conn(c)

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        self.thread.join(5)


class Proxy(Closing):
    """A threaded TCP proxy on 127.0.0.1:<free port> to 127.0.0.1:target.

    cut_after: after this many bytes server->client on a connection, both
    sides of that connection are closed (a server hanging up mid-message).
    rate: bytes per second server->client (a slow link), or None.
    latency: seconds each byte takes one way, in both directions (a
    distant server: the round trip is twice this), or None. With latency,
    rate is a link's: each direction sends one chunk after the other at
    that rate, and an idle link saves no credit for a burst.
    s2c: bytes sent server->client, summed over all connections so far.
    """

    def __init__(self, target_port, cut_after=None, rate=None, latency=None):
        self.target = target_port
        self.cut_after = cut_after
        self.rate = rate
        self.latency = latency
        self.s2c = 0
        self.c2s = 0
        self.connections = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks = set()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, kind="imaps"):
        return "%s://127.0.0.1:%d" % (kind, self.port)

    def reset(self):
        """Zeroes the byte counters (between two runs)."""
        with self._lock:
            self.s2c = self.c2s = 0

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._socks.update((client, server))
            state = {"s2c": 0, "closed": False}
            pump = self._pump_link if self.latency is not None else self._pump
            threading.Thread(target=pump, args=(client, server, False, state), daemon=True).start()
            threading.Thread(target=pump, args=(server, client, True, state), daemon=True).start()

    def _hangup(self, a, b, state):
        with self._lock:
            if state["closed"]:
                return
            state["closed"] = True
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _pump(self, src, dst, server_to_client, state):
        t0 = time.monotonic()
        sent = 0
        try:
            while not self._stop.is_set():
                data = src.recv(16384)
                if not data:
                    break
                if server_to_client:
                    if self.cut_after is not None:
                        room = self.cut_after - state["s2c"]
                        if room <= len(data):
                            if room > 0:
                                dst.sendall(data[:room])
                                with self._lock:
                                    self.s2c += room
                                state["s2c"] += room
                            with self._lock:
                                self.cuts += 1
                            break
                    if self.rate:
                        # Sleep until this chunk is within the rate.
                        due = t0 + (sent + len(data)) / self.rate
                        delay = due - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    dst.sendall(data)
                    sent += len(data)
                    state["s2c"] += len(data)
                    with self._lock:
                        self.s2c += len(data)
                else:
                    dst.sendall(data)
                    with self._lock:
                        self.c2s += len(data)
        except OSError:
            pass
        self._hangup(src, dst, state)

    def _pump_link(self, src, dst, server_to_client, state):
        """One direction of a distant link: a chunk read at t leaves the
        link (serialised at rate, if any) and arrives latency later; a
        sender thread delivers chunks at their arrival times."""
        import collections
        queue = collections.deque()
        cond = threading.Condition()
        free_at = [0.0]             # when the link has sent everything queued so far

        def sender():
            try:
                while True:
                    with cond:
                        while not queue:
                            cond.wait()
                        due, data = queue.popleft()
                    if data is None:
                        break
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    dst.sendall(data)
                    with self._lock:
                        if server_to_client:
                            self.s2c += len(data)
                        else:
                            self.c2s += len(data)
            except OSError:
                pass
            self._hangup(src, dst, state)
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                now = time.monotonic()
                start = max(now, free_at[0])
                free_at[0] = start + (len(data) / self.rate if self.rate else 0)
                with cond:
                    queue.append((free_at[0] + self.latency, data))
                    cond.notify()
        except OSError:
            pass
        with cond:
            queue.append((max(time.monotonic(), free_at[0]) + self.latency, None))
            cond.notify()


# ---------------------------------------------------------------- OAuth2 token introspection

class TokenServer:
    """A token introspection endpoint (RFC 7662) on 127.0.0.1:<free port>
    for Dovecot's oauth2 passdb with introspection_mode = post (pass its
    url as Dovecot(oauth2_url=...)). A POST whose form field token is a key
    of self.tokens answers {"active": true, "username": tokens[token]};
    any other token {"active": false}. requests: the tokens asked about, in
    order (tests check that the right one reached the server)."""

    def __init__(self, tokens=None):
        import http.server
        import urllib.parse
        self.tokens = dict(tokens or {})
        self.requests = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(n).decode(errors="replace"))
                token = (form.get("token") or [""])[0]
                with owner._lock:
                    owner.requests.append(token)
                    user = owner.tokens.get(token)
                answer = {"active": True, "username": user} if user else {"active": False}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass    # tokens stay out of the test log

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d/introspect" % self.port
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


# ---------------------------------------------------------------- maildisk config and runs

class Account:
    """One [account USER/NAME] section. password_mode: 'file' (a 0600
    password_file next to the config) or 'inline' (password = in the
    0600 config)."""

    def __init__(self, user, name, url, login, password, folders=("INBOX",), ca_file=None,
                 timeout=20, password_mode="file", extra=None):
        self.user, self.name, self.url = user, name, url
        self.login, self.password = login, password
        self.folders = list(folders)
        self.ca_file, self.timeout = ca_file, timeout
        self.password_mode = password_mode
        self.extra = dict(extra or {})


def write_config(path, store, accounts, users=None, trash_days=30, extra_store=None, extra_sync=None,
                 extra_mount=None):
    """Writes a maildisk config (mode 0600) and the accounts' password
    files (0600) beside it. users: {name: local account}; by default each
    account's user maps to root (the tests run as root and do not mount)."""
    users = dict(users or {})
    for a in accounts:
        users.setdefault(a.user, "root")
    lines = ["[store]", "path = %s" % store, "trash_days = %d" % trash_days]
    for k, v in (extra_store or {}).items():
        lines.append("%s = %s" % (k, v))
    lines.append("")
    if extra_sync:
        lines.append("[sync]")
        lines += ["%s = %s" % kv for kv in extra_sync.items()]
        lines.append("")
    if extra_mount:
        lines.append("[mount]")
        lines += ["%s = %s" % kv for kv in extra_mount.items()]
        lines.append("")
    for u, local in users.items():
        lines += ["[user %s]" % u, "uid = %s" % local, ""]
    for a in accounts:
        lines += ["[account %s/%s]" % (a.user, a.name), "url = %s" % a.url, "login = %s" % a.login]
        if a.password_mode == "inline":
            lines.append("password = %s" % a.password)
        else:
            pwfile = os.path.join(os.path.dirname(os.path.abspath(path)),
                                  "%s-%s.pass" % (a.user, a.name))
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(a.password + "\n")
            os.chmod(pwfile, 0o600)
            lines.append("password_file = %s" % pwfile)
        if a.folders:      # folders=() leaves the line out (POP3 accounts refuse it)
            lines.append("folders = %s" % ", ".join(a.folders))
        if a.ca_file:
            lines.append("ca_file = %s" % a.ca_file)
        if a.timeout:
            lines.append("timeout = %d" % a.timeout)
        for k, v in a.extra.items():
            lines.append("%s = %s" % (k, v))
        lines.append("")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    os.chmod(path, 0o600)
    return path


SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error:|"
                          r"SUMMARY: (Address|Undefined|Leak)")


def drop_pop3_folders(path):
    """Removes the folders line of each POP3 account from the config at
    path: write_config writes one for every account with folders, and the
    config refuses it in a pop3:// or pop3s:// section."""
    out, pop = [], False
    with open(path) as f:
        for line in f.read().split("\n"):
            if line.startswith("["):
                pop = False
            if line.startswith("url = pop3"):
                pop = True
            if pop and line.startswith("folders = "):
                continue
            out.append(line)
    with open(path, "w") as f:
        f.write("\n".join(out))
    return path


class Result:
    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed

    @property
    def text(self):
        return self.out + self.err

    def __repr__(self):
        return "<maildisk %s rc=%s>" % (" ".join(self.argv[1:]), self.rc)


def sanitized(binary=None):
    """True when maildisk is built with ASan (its memory use means nothing)."""
    path = binary or maildisk_path()
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def maildisk_path():
    """$MAILDISK (meson sets it), else build/maildisk or build/fs/maildisk."""
    cands = [os.environ["MAILDISK"]] if os.environ.get("MAILDISK") else \
        [os.path.join(REPO, "build", "maildisk"), os.path.join(REPO, "build", "fs", "maildisk")]
    for p in cands:
        if os.access(p, os.X_OK):
            return p
    raise Failure("maildisk binary not found at %s (set MAILDISK, or build it first)" % " or ".join(cands))


def maildisk_env():
    env = dict(os.environ)
    # A sanitiser report must never pass for an expected exit code 1.
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if "exitcode=" not in env.get(var, ""):
            env[var] = (env[var] + ":" if env.get(var) else "") + "exitcode=86"
    env.pop("MAILDISK_CONFIG", None)
    return env


def maildisk(cmd, config, *args, timeout=120, expect=None):
    """Runs `maildisk CMD -c CONFIG ARGS...`, logs everything, fails the test
    on a sanitiser report or timeout, and on an exit code not in expect
    (an int or a tuple; None: anything)."""
    argv = [maildisk_path(), cmd] + (["-c", config] if config else []) + list(args)
    log("$ " + " ".join(argv))
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=maildisk_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise Failure("maildisk %s did not finish within %ds; stderr: %s" % (
            cmd, timeout, (e.stderr or b"").decode(errors="replace")[-2000:]))
    r = Result(argv, p.returncode, p.stdout.decode(errors="replace"),
               p.stderr.decode(errors="replace"), time.monotonic() - t0)
    log("  exit %d in %.2fs" % (r.rc, r.elapsed))
    for name, text in (("stdout", r.out), ("stderr", r.err)):
        if text.strip():
            cut = text if len(text) < 6000 else text[:3000] + "\n[...]\n" + text[-3000:]
            log("  %s:\n%s" % (name, "\n".join("    " + l for l in cut.rstrip().splitlines())))
    check(not SANITIZER_RE.search(r.err), "sanitizer report from maildisk %s" % cmd)
    check(r.rc >= 0, "maildisk %s died of signal %d" % (cmd, -r.rc))
    if expect is not None:
        ok = (r.rc in expect) if isinstance(expect, tuple) else r.rc == expect
        check(ok, "maildisk %s exited %d, expected %s" % (cmd, r.rc, expect))
    return r


class Runs:
    """maildisk() that keeps the output of every run in .outputs, for the
    checks a test makes over all of them (no password in any)."""

    def __init__(self):
        self.outputs = []

    def __call__(self, *a, **kw):
        r = maildisk(*a, **kw)
        self.outputs.append(r.text)
        return r


# ---------------------------------------------------------------- store inspection

ACTIVE, TRASHED, RESTORED = 0, 1, 2


class Store:
    """Read-only view of a maildisk store."""

    def __init__(self, root):
        self.root = root
        self.db = os.path.join(root, "index.db")

    def query(self, sql, *params):
        if not os.path.exists(self.db):
            return []
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(sql, params)]
        finally:
            con.close()

    def folders(self):
        return self.query("SELECT * FROM folders ORDER BY user, account, name")

    def folder(self, user, account, name):
        rows = self.query("SELECT * FROM folders WHERE user=? AND account=? AND name=?",
                          user, account, name)
        return rows[0] if rows else None

    def messages(self, user=None, account=None, folder=None, state=None):
        sql = ("SELECT m.*, f.user AS f_user, f.account AS f_account, f.name AS f_name, "
               "f.path AS f_path FROM messages m JOIN folders f ON f.id = m.folder_id WHERE 1")
        params = []
        for col, val in (("f.user", user), ("f.account", account), ("f.name", folder),
                         ("m.state", state)):
            if val is not None:
                sql += " AND %s = ?" % col
                params.append(val)
        return self.query(sql + " ORDER BY m.id", *params)

    def path(self, rel):
        return os.path.join(self.root, rel)

    def read(self, row):
        with open(self.path(row["store_file"]), "rb") as f:
            return f.read()

    def inode(self, row):
        return os.stat(self.path(row["store_file"])).st_ino

    def files(self, top=("mail", "trash")):
        """{store-relative path: (size, inode)} of every regular file."""
        out = {}
        for t in top:
            base = os.path.join(self.root, t)
            for dp, dns, fns in os.walk(base):
                for fn in fns:
                    p = os.path.join(dp, fn)
                    try:
                        st = os.lstat(p)
                    except FileNotFoundError:   # renamed by a running sync
                        continue
                    out[os.path.relpath(p, self.root)] = (st.st_size, st.st_ino)
        return out

    def tmp_files(self):
        return sorted(p for p in self.files(("mail",)) if "/tmp/" in "/" + p)

    def snapshot(self):
        """Files and message rows, for "the store is unchanged" checks."""
        rows = [(r["id"], r["folder_id"], r["remote_id"], r["state"], r["store_file"])
                for r in self.messages()]
        return {"files": self.files(), "rows": rows}


def assert_folder_matches(store, dc, user, account, folder, server_user=None, sample=None,
                          server_folder=None):
    """Every server UID has exactly one active row whose file equals
    BODY.PEEK[]; no other active rows. folder is the name in the index,
    server_folder the server's (default: the same), server_user the login
    (default: user). sample: compare only that many bodies (spread over
    the folder). Returns the active rows by UID."""
    server_user = server_user or user
    server_folder = server_folder or folder
    uids = dc.uids(server_user, server_folder)
    rows = store.messages(user, account, folder, ACTIVE)
    by_uid = {}
    for r in rows:
        check(r["remote_id"] is not None and r["remote_id"].isdigit(),
              "%s/%s %r: active row %d has remote_id %r" % (user, account, folder, r["id"], r["remote_id"]))
        uid = int(r["remote_id"])
        check(uid not in by_uid, "%s/%s %r: two active rows for UID %d" % (user, account, folder, uid))
        by_uid[uid] = r
    missing = sorted(set(uids) - set(by_uid))
    extra = sorted(set(by_uid) - set(uids))
    check(not missing and not extra, "%s/%s %r: rows differ from the server" % (user, account, folder),
          "missing UIDs", missing[:20], "extra UIDs", extra[:20])
    want = uids
    if sample is not None and len(uids) > sample:
        step = len(uids) / sample
        want = sorted({uids[int(i * step)] for i in range(sample)} | {uids[-1]})
    if want:
        bodies = {}
        for i in range(0, len(want), 200):
            bodies.update(dc.fetch_bodies(server_user, server_folder, ",".join(map(str, want[i:i + 200]))))
        for uid in want:
            r = by_uid[uid]
            got = store.read(r)
            check(got == bodies[uid], "%s/%s %r UID %d: file %s differs from BODY.PEEK[] (%d vs %d bytes)" % (
                user, account, folder, uid, r["store_file"], len(got), len(bodies[uid])))
            check(r["size"] == len(got), "UID %d: row size %d, file %d bytes" % (uid, r["size"], len(got)))
            check(r["store_file"].startswith(r["f_path"] + "/cur/"),
                  "UID %d: file %s is not in %s/cur/" % (uid, r["store_file"], r["f_path"]))
    return by_uid


def pop3_bodies(dc, login, kind="pop3s"):
    """{uidl: bytes exactly as RETR sends them, dot-stuffing undone} of a
    Dovecot user's mailbox, over POP3S (or pop3 with STLS); fails when UIDL
    lists another count than STAT says. The session ends with RSET, so
    Dovecot marks nothing \\Seen at QUIT."""
    poplib._MAXLINE = max(poplib._MAXLINE, 1 << 20)    # mailgen's 20 KB header lines
    ctx = ssl.create_default_context(cafile=dc.ca_pem)
    if kind == "pop3s":
        p = poplib.POP3_SSL("127.0.0.1", dc.ports["pop3s"], context=ctx, timeout=60)
    else:
        p = poplib.POP3("127.0.0.1", dc.ports["pop3"], timeout=60)
        p.stls(context=ctx)
    try:
        p.user(login)
        p.pass_(dc.users[login])
        count = p.stat()[0]
        out = {}
        for line in p.uidl()[1]:
            num, uidl = line.split()
            out[uidl.decode()] = b"".join(x + b"\r\n" for x in p.retr(int(num))[1])
        check(len(out) == count, "%s: UIDL lists %d, STAT says %d" % (login, len(out), count))
        p.rset()
        return out
    finally:
        with contextlib.suppress(Exception):
            p.quit()


def assert_pop3_matches(store, dc, user, account, server_user=None, kept=()):
    """The active rows of (user, account) are exactly the server's UIDLs in
    folder INBOX plus kept (UIDLs the server no longer lists that must stay:
    mirror_deletions = no), each file byte for byte what RETR returns,
    stored under mail/<user>/<account>/INBOX/cur/. Returns {uidl: row}."""
    server = pop3_bodies(dc, server_user or user)
    by_uidl = {}
    for r in store.messages(user, account, "INBOX", ACTIVE):
        check(r["remote_id"] not in by_uidl, "%s/%s: two active rows for UIDL %s" % (
            user, account, r["remote_id"]))
        by_uidl[r["remote_id"]] = r
    want = set(server) | set(kept)
    check(set(by_uidl) == want, "%s/%s: rows differ from the POP3 server" % (user, account),
          "missing", sorted(want - set(by_uidl))[:10],
          "extra", sorted(set(by_uidl) - want)[:10])
    for uidl, r in by_uidl.items():
        if uidl not in server:
            continue
        got = store.read(r)
        check(got == server[uidl], "%s/%s UIDL %s: file differs from RETR (%d vs %d bytes)" % (
            user, account, uidl, len(got), len(server[uidl])))
        check(r["size"] == len(got), "UIDL %s: row size %d, file %d" % (uidl, r["size"], len(got)))
        check(r["store_file"].startswith("mail/%s/%s/INBOX/cur/" % (user, account)),
              "%s/%s UIDL %s: file at %s" % (user, account, uidl, r["store_file"]))
    return by_uidl


def assert_no_tmp(store):
    left = store.tmp_files()
    check(not left, "files left in tmp/", left[:10])


def assert_cur_matches_rows(store):
    """Every file in a cur/ belongs to a visible row and vice versa."""
    files = {p for p in store.files(("mail",)) if "/cur/" in p}
    rows = {r["store_file"] for r in store.messages() if r["state"] in (ACTIVE, RESTORED)}
    check(files == rows, "cur/ files and visible rows differ",
          "files without row", sorted(files - rows)[:10], "rows without file", sorted(rows - files)[:10])


# ---------------------------------------------------------------- test frame

class Ctx:
    """Per-test context: a temp dir, and everything registered to be
    cleaned up (Dovecots, proxies, child processes) on any exit."""

    def __init__(self, name):
        self.name = name
        self.stack = contextlib.ExitStack()
        self.tmp = None

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="maildisk-test-%s-" % self.name, dir="/tmp")
        os.chmod(self.tmp, 0o700)
        return self

    def __exit__(self, *exc):
        self.stack.close()
        if os.environ.get("MAILDISK_TEST_KEEP"):
            log("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def dovecot(self, **kw):
        dc = Dovecot(**kw)
        self.stack.callback(dc.stop)
        dc.start()
        return dc

    def token_server(self, tokens=None):
        t = TokenServer(tokens)
        self.stack.callback(t.close)
        return t

    def proxy(self, target_port, **kw):
        p = Proxy(target_port, **kw)
        self.stack.callback(p.close)
        return p

    def popen(self, argv, **kw):
        """A child process killed (by its PID) at cleanup if still running."""
        p = subprocess.Popen(argv, **kw)

        def reap():
            if p.poll() is None:
                p.kill()
            p.wait()
        self.stack.callback(reap)
        return p

    def store_dir(self, name="store"):
        return os.path.join(self.tmp, name)

    def config(self, accounts, name="maildisk.conf", store=None, **kw):
        return write_config(os.path.join(self.tmp, name), store or self.store_dir(), accounts, **kw)


_deadline = 0


def _raise_deadline(signum, frame):
    if signum == signal.SIGALRM:
        raise Deadline("hard deadline of %ds reached" % _deadline)
    raise Deadline("terminated by signal %d" % signum)


def run(main, deadline=240, needs_maildisk=True):
    """Runs main(ctx) as one test program: exits 0 pass, 1 fail, 77 skip.
    A hard deadline (SIGALRM) and SIGTERM (meson's timeout) both unwind
    through the cleanups, so no Dovecot or child outlives the test."""
    global _deadline
    _deadline = deadline
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    signal.signal(signal.SIGALRM, _raise_deadline)
    signal.signal(signal.SIGTERM, _raise_deadline)
    signal.alarm(deadline)
    code = EXIT_FAIL
    try:
        if needs_maildisk:
            maildisk_path()
        with Ctx(name) as ctx:
            main(ctx)
        code = EXIT_PASS
        log("PASS %s" % name)
    except Skip as e:
        code = EXIT_SKIP
        log("SKIP %s: %s" % (name, e))
    except Deadline as e:
        log("FAIL %s: %s" % (name, e))
        traceback.print_exc(file=sys.stdout)
    except Failure as e:
        log("FAIL %s: %s" % (name, e))
        traceback.print_exc(file=sys.stdout)
    except Exception as e:
        log("FAIL %s: %s: %s" % (name, type(e).__name__, e))
        traceback.print_exc(file=sys.stdout)
    finally:
        signal.alarm(0)
    sys.stdout.flush()
    sys.exit(code)


# ---------------------------------------------------------------- self test and demo

def selftest(ctx):
    """Checks the harness alone: start, logins over IMAPS, STARTTLS, POP3,
    POP3S with the generated CA, delivery, expunge, UIDVALIDITY reset, the
    proxy, and stop by PID."""
    sys.path.insert(0, HERE)
    import mailgen
    dc = ctx.dovecot()
    dc.add_user("alice", "secret-a")
    dc.add_user("bob", "secret-b")
    sep = dc.separator_of("alice")
    log("hierarchy separator %r" % sep)
    msgs = mailgen.generate(12, seed=7)
    uids = dc.append("alice", "INBOX", [m.raw for m in msgs])
    check(uids == list(range(1, 13)), "APPENDUIDs", uids)
    dc.append("alice", "Ärchiv", msgs[0].raw, flags=("\\Seen",))
    check("Ärchiv" in dc.folders("alice"), "folder list", dc.folders("alice"))
    check(dc.flags("alice", "Ärchiv") == {1: frozenset({"\\Seen"})}, "flags", dc.flags("alice", "Ärchiv"))
    bodies = dc.fetch_bodies("alice", "INBOX")
    for m, uid in zip(msgs, uids):
        want = m.raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        check(bodies[uid] == want, "body of UID %d differs from what was appended" % uid)
    check(all(not f for f in dc.flags("alice", "INBOX").values()), "fetch set flags")
    # STARTTLS on the imap port, with certificate and host name checked.
    with dc.imap("alice", kind="starttls") as c:
        check(isinstance(c.sock, ssl.SSLSocket), "STARTTLS did not upgrade")
        check(set(c.sock.getpeercert()["subjectAltName"]) == {("DNS", "localhost"), ("IP Address", "127.0.0.1")},
              "server SAN", c.sock.getpeercert())
    with imaplib.IMAP4("127.0.0.1", dc.ports["imap"]) as c:
        check("STARTTLS" in c.capabilities, "STARTTLS not offered", c.capabilities)
    # A client trusting another CA must fail the handshake.
    other_ca, _ = make_ca(ctx.tmp, "other")
    try:
        imaplib.IMAP4_SSL("127.0.0.1", dc.ports["imaps"],
                          ssl_context=ssl.create_default_context(cafile=other_ca), timeout=10)
        raise Failure("TLS with a foreign CA succeeded")
    except ssl.SSLCertVerificationError:
        pass
    # Wrong password is refused.
    try:
        with imaplib.IMAP4_SSL("127.0.0.1", dc.ports["imaps"],
                               ssl_context=ssl.create_default_context(cafile=dc.ca_pem)) as c:
            c.login("alice", "wrong")
        raise Failure("wrong password accepted")
    except imaplib.IMAP4.error:
        pass
    # POP3 with STLS, and POP3S.
    p = poplib.POP3("127.0.0.1", dc.ports["pop3"], timeout=10)
    p.stls(context=ssl.create_default_context(cafile=dc.ca_pem))
    p.user("alice")
    p.pass_("secret-a")
    check(p.stat()[0] == 12, "POP3 STAT", p.stat())
    uidl = p.uidl()[1]
    check(len(uidl) == 12, "POP3 UIDL", uidl)
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", dc.ports["pop3s"], context=ssl.create_default_context(cafile=dc.ca_pem))
    p.user("bob")
    p.pass_("secret-b")
    check(p.stat()[0] == 0, "POP3S STAT for bob", p.stat())
    p.quit()
    # Expunge.
    dc.expunge("alice", "INBOX", [2, 4, 6])
    check(dc.uids("alice", "INBOX") == [1, 3, 5, 7, 8, 9, 10, 11, 12], "after expunge", dc.uids("alice", "INBOX"))
    # UIDVALIDITY reset keeps the content, renumbers from 1.
    before = dc.fetch_bodies("alice", "INBOX")
    old, new = dc.reset_uidvalidity("alice", "INBOX")
    check(new > old, "UIDVALIDITY did not grow", old, new)
    after = dc.fetch_bodies("alice", "INBOX")
    check(sorted(after) == list(range(1, 10)), "UIDs after reset", sorted(after))
    check(sorted(before.values()) == sorted(after.values()), "content changed by the reset")
    old2, new2 = dc.reset_uidvalidity("alice", "Ärchiv")
    check(dc.uids("alice", "Ärchiv") == [1], "Ärchiv after reset")
    # Cutting proxy: a FETCH through it is cut after N bytes.
    big = mailgen.generate(40, seed=3)
    dc.append("bob", "INBOX", [m.raw for m in big])
    with ctx.proxy(dc.ports["imaps"], cut_after=20000) as px:
        c = imaplib.IMAP4_SSL("127.0.0.1", px.port, ssl_context=ssl.create_default_context(cafile=dc.ca_pem),
                              timeout=10)
        c.login("bob", "secret-b")
        c.select("INBOX", readonly=True)
        try:
            c.uid("FETCH", "1:*", "(BODY.PEEK[])")
            raise Failure("FETCH through the cutting proxy completed")
        except (imaplib.IMAP4.abort, OSError, ssl.SSLError):
            pass
        check(px.cuts == 1 and px.s2c == 20000, "proxy cut", px.cuts, px.s2c)
    with ctx.proxy(dc.ports["imaps"]) as px:
        c = imaplib.IMAP4_SSL("127.0.0.1", px.port, ssl_context=ssl.create_default_context(cafile=dc.ca_pem))
        c.login("bob", "secret-b")
        c.select("INBOX", readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
        check(typ == "OK" and sum(1 for d in data if isinstance(d, tuple)) == 40, "FETCH through proxy")
        c.logout()
        check(px.s2c > sum(len(m.raw) for m in big), "proxy byte count", px.s2c)
    # Stop by PID: master and children gone.
    pid = dc.pid
    kids = children_of(pid)
    check(kids, "dovecot has no children?")
    dc.stop()
    check(not pid_alive(pid) and not any(pid_alive(k) for k in kids), "dovecot processes left after stop")
    check(not wait_port(dc.ports["imaps"], 0.2), "imaps port still open after stop")


def demo_up(directory):
    """Starts a Dovecot with sample mail for alice (two accounts) and bob,
    writes DIR/maildisk.conf and DIR/demo.json. Dovecot keeps running
    (it daemonises) until demo_down(DIR)."""
    sys.path.insert(0, HERE)
    import mailgen
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o711)     # Dovecot's own users traverse it to base_dir
    dc = Dovecot(keep=True, parent=directory)
    dc.start()
    try:
        dc.add_user("alice", "alice-pw")
        dc.add_user("alice-home", "alice-home-pw")
        dc.add_user("bob", "bob-pw")
        msgs = mailgen.generate(60, seed=2026, max_size=60000)
        dc.append("alice", "INBOX", [m.raw for m in msgs[:30]])
        dc.append("alice", "Archive", [m.raw for m in msgs[30:40]])
        dc.append("alice-home", "INBOX", [m.raw for m in msgs[40:50]])
        dc.append("bob", "INBOX", [m.raw for m in msgs[50:56]])
        dc.append("bob", "Receipts", [m.raw for m in msgs[56:]])
        accounts = [
            Account("alice", "work", dc.url("imaps"), "alice", "alice-pw", ["INBOX", "Archive"], dc.ca_pem),
            Account("alice", "home", dc.url("imap"), "alice-home", "alice-home-pw", ["INBOX"], dc.ca_pem),
            Account("bob", "mail", dc.url("imaps"), "bob", "bob-pw", ["*"], dc.ca_pem),
        ]
        conf = write_config(os.path.join(directory, "maildisk.conf"), os.path.join(directory, "store"), accounts)
        with open(os.path.join(directory, "demo.json"), "w") as f:
            json.dump({"dovecot_dir": dc.dir, "pid": dc.pid, "ports": dc.ports, "config": conf}, f)
    except BaseException:
        dc.keep = False
        dc.stop()
        raise
    print(conf)


def demo_down(directory):
    try:
        with open(os.path.join(directory, "demo.json")) as f:
            st = json.load(f)
    except OSError:
        return
    dc = Dovecot()
    dc.dir, dc.pid = st["dovecot_dir"], st["pid"]
    # Only the PID we recorded, and only while it is still that Dovecot.
    try:
        with open("/proc/%d/cmdline" % dc.pid, "rb") as f:
            ours = dc.dir.encode() + b"/dovecot.conf" in f.read()
    except OSError:
        ours = False
    if ours:
        dc.stop()
    else:
        shutil.rmtree(dc.dir, ignore_errors=True)
    os.unlink(os.path.join(directory, "demo.json"))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "selftest":
        run(selftest, deadline=120, needs_maildisk=False)
    elif cmd == "demo-up" and len(sys.argv) == 3:
        LOG = sys.stderr
        demo_up(sys.argv[2])
    elif cmd == "demo-down" and len(sys.argv) == 3:
        demo_down(sys.argv[2])
    else:
        sys.stderr.write("usage: harness.py selftest | demo-up DIR | demo-down DIR\n")
        sys.exit(2)
