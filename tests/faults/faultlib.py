"""Shared pieces of the fault trials (tests/faults/test_*.py).

Standard library only; builds on tests/integration/harness.py (the private
Dovecot, the cutting proxy, the test frame, store inspection). What it adds:

  FakeImap        a scripted IMAP server on a free 127.0.0.1 port: enough
                  IMAP4rev1 for maildisk (greeting, CAPABILITY, LOGIN or
                  AUTHENTICATE PLAIN as libcurl sends it, LIST, EXAMINE,
                  UID SEARCH / ESEARCH, UID FETCH, LOGOUT) over a mailbox
                  model the test changes, plus faults a real server will not
                  produce on demand (Fault).
  FakePop3        the same for POP3 (CAPA, USER/PASS, STAT, UIDL, RETR,
                  RSET, QUIT).
  Fault           one injected fault: when the n-th command of a kind
                  arrives, its answer is cut, stalled, replaced, garbled or
                  made to lie.
  check_store     the invariants every trial ends with: nothing in tmp/,
                  every cur/ file has a visible row and each row its file,
                  sizes agree, and each visible file is byte-exact.
  rng, trials     seeded randomness (the seed is printed and can be given
                  back with MAILDISK_SEED) and trial counts from the
                  environment (MAILDISK_TRIALS).
  run_measured    runs maildisk and reports its peak RSS (VmHWM).
  faulty_sync     one `maildisk sync` with faults armed, and the checks
                  every fake-server scenario makes of it.
  run_each        runs named scenarios one after another (all of them, or
                  those in MAILDISK_FAULTS), collecting the failures.
  write_config    harness.write_config without the folders line that the
                  config refuses in POP3 accounts.
  deliver         many messages into a Dovecot Maildir at once (no APPEND).
  try_mount       `maildisk mount -f` through tests/mount/mountlib.py, or
                  None with a note when FUSE is not usable here.

Both fake servers also act as a witness: any command that could change the
mailbox (SELECT, STORE, EXPUNGE, DELE, a FETCH without PEEK, ...) is
recorded in .violations, and the trials check that it stays empty.
"""

import base64
import contextlib
import os
import random
import re
import signal
import socketserver
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness as H  # noqa: E402
import mailgen  # noqa: E402,F401  (re-exported for the trials)
from harness import Failure, Skip, check, log  # noqa: E402,F401

ACTIVE, TRASHED, RESTORED = H.ACTIVE, H.TRASHED, H.RESTORED


# ---------------------------------------------------------------- randomness and counts

def rng(name):
    """A random.Random for this trial program. The seed comes from
    MAILDISK_SEED, else from the clock; it is logged so that any run can be
    repeated exactly (as far as timing allows)."""
    seed = os.environ.get("MAILDISK_SEED")
    seed = int(seed) if seed else int(time.time() * 1000) % 1000000007
    log("%s: seed %d (repeat with MAILDISK_SEED=%d)" % (name, seed, seed))
    return random.Random(seed), seed


def trials(default, var="MAILDISK_TRIALS"):
    v = os.environ.get(var)
    return int(v) if v else default


sanitized = H.sanitized


def _vmhwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_measured(argv, timeout=600, env=None):
    """Runs argv; returns (rc, stdout, stderr, peak RSS in KiB).

    The peak is the child's VmHWM, read from /proc every 10 ms until it
    exits (VmHWM only grows, so the last reading misses at most the last
    10 ms). Not wait4's ru_maxrss: on Linux that starts from the RSS of the
    forking Python process, which is about as large as what is measured."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             env=env or H.maildisk_env())
        end = time.monotonic() + timeout
        peak = 0
        try:
            while True:
                peak = max(peak, _vmhwm(p.pid))
                try:
                    p.wait(0.01)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() > end:
                    raise Failure("%s did not finish within %ds" % (" ".join(argv), timeout))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), peak


# ---------------------------------------------------------------- faults

class Fault:
    """One fault, armed on a server: the nth (1-based, counted over all
    connections) command whose name is cmd ("UID FETCH", "UID SEARCH",
    "EXAMINE", "LIST", "CAPABILITY", "LOGIN", "RETR", "UIDL", "STAT", ...;
    "GREETING" for the server's first line) gets action instead of its
    normal answer. Actions and their parameters:

      hangup    at=...: close the connection at that point of the answer
      stall     at=..., seconds=S: stop sending at that point for S s, then close
      garbage   at=..., data=bytes, then="close"|"rest": insert bytes there
      status    status="NO"|"BAD"|"-ERR", keep_untagged=True: the command fails
                (after its untagged data, when keep_untagged)
      listing   uids=[...]: UID SEARCH / UIDL answers exactly these;
                folders=[...]: LIST shows only these
      exists    value=N: EXAMINE (or STAT) announces N messages
      vanished  uids=[...]: EXAMINE (QRESYNC ...) reports these as VANISHED;
                set="1:4294967295": that UID set, as it is
      huge      size=N, send=K, then="close"|"stall", seconds=S: the first
                BODY[] literal is announced as {N}, K bytes follow, then
                the connection is closed or stalls
      custom    produce=f: f(conn, tag) writes the whole answer itself (tag:
                the command's tag, bytes); it may raise Hangup to end the
                connection, else the session goes on
      drop      (POP3) no answer at all; the session goes on
      swap      (POP3) the answer is held back and sent after the next
                command's answer: answers out of order

    Points ("at"): "start" (nothing sent), "mid_line" (half the first line),
    "middle" (half the answer), "mid_literal" (half way through literal
    number `literal`, default the last one; for POP3 the message of a
    RETR), "before_tagged" (all untagged data sent, no tagged answer; for
    POP3 before the terminating "." line), "end" (everything sent).
    """

    def __init__(self, cmd, action, nth=1, **params):
        self.cmd = cmd.upper()
        self.action = action
        self.nth = nth
        self.params = params
        self.seen = 0
        self.fired = 0

    def __repr__(self):
        return "Fault(%s #%d: %s %s)" % (self.cmd, self.nth, self.action,
                                         " ".join("%s=%r" % kv for kv in self.params.items()
                                                  if not isinstance(kv[1], (bytes, list))))


class Reply:
    """An answer being built: bytes plus the offsets faults cut at."""

    def __init__(self, tag=b"*"):
        self.data = bytearray()
        self.literals = []       # (offset of the literal's data, length)
        self.tagged = None       # offset of the tagged (final) line
        self.tag = tag           # the command's tag

    def line(self, b):
        self.data += b + b"\r\n"

    def literal(self, b):
        self.literals.append((len(self.data), len(b)))
        self.data += b

    def raw(self, b):
        self.data += b

    def final(self, b):
        self.tagged = len(self.data)
        self.line(b)

    def point(self, at, literal=None):
        if at == "start":
            return 0
        if at == "mid_line":
            nl = self.data.find(b"\r\n")
            return max(1, (nl if nl > 0 else len(self.data)) // 2)
        if at == "mid_literal":
            check(self.literals, "fault at mid_literal, but the answer has no literal")
            off, n = self.literals[-1 if literal is None else literal]
            return off + max(1, n // 2)
        if at == "before_tagged":
            return self.tagged if self.tagged is not None else len(self.data)
        if at == "end":
            return len(self.data)
        if at == "middle":
            return max(1, len(self.data) // 2)
        raise ValueError("unknown fault point %r" % at)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class _FakeBase(H.Closing):
    """A threaded server on a free 127.0.0.1 port; plaintext, or TLS when
    given a (cert, key) pair (implicit TLS, as imaps:// and pop3s://)."""

    proto = "?"

    def __init__(self, tls=None):
        self.faults = []
        self.commands = []          # every command line received, in order (tags removed)
        self.with_next = []         # commands that came with the next one behind them (pipelined)
        self.violations = []        # commands that could have changed the mailbox
        self.connections = 0
        self.fired = []             # faults that fired, in order
        self.lock = threading.Lock()
        self._socks = set()
        self._ctx = None
        if tls:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(*tls)
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                outer._serve(self.request)
        self.srv = _Server(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()

    def arm(self, *faults):
        """Arms faults and starts a new command log (sent() sees only what
        comes after)."""
        with self.lock:
            self.faults = list(faults)
            self.commands = []
            self.with_next = []
        return faults[0] if len(faults) == 1 else faults

    def disarm(self):
        with self.lock:
            self.faults = []

    def _fault_for(self, cmd):
        with self.lock:
            for f in self.faults:
                if f.cmd == cmd:
                    f.seen += 1
                    if f.seen == f.nth:
                        f.fired += 1
                        self.fired.append(f)
                        log("fake %s: fault fires: %r" % (self.proto, f))
                        return f
        return None

    def _serve(self, sock):
        with self.lock:
            self.connections += 1
            self._socks.add(sock)
        try:
            if self._ctx:
                sock.settimeout(10)
                sock = self._ctx.wrap_socket(sock, server_side=True)
                with self.lock:
                    self._socks.add(sock)
            sock.settimeout(120)
            self.session(_Conn(sock))
        except (OSError, ssl.SSLError, _Hangup):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    # Sends reply, changed by fault (if any). Raises _Hangup when the
    # connection is to end.
    def send(self, conn, reply, fault):
        data = bytes(reply.data)
        if fault is None or fault.action in ("listing", "exists", "status", "vanished"):
            conn.send(data)
            return
        p = fault.params
        a = fault.action
        if a in ("hangup", "stall", "garbage"):
            cut = reply.point(p.get("at", "mid_literal" if reply.literals else "mid_line"),
                              p.get("literal"))
            conn.send(data[:cut])
            if a == "stall":
                time.sleep(p.get("seconds", 10))
            if a == "garbage":
                conn.send(p.get("data") or bytes(random.Random(cut).randrange(256) for _ in range(512)))
                if p.get("then", "close") == "rest":
                    conn.send(data[cut:])
                    return
            raise _Hangup()
        if a == "custom":
            p["produce"](conn, reply.tag)
            return
        if a == "huge":
            conn.send(data)     # the builder already made the literal lie
            if p.get("then", "close") == "stall":
                time.sleep(p.get("seconds", 10))
            raise _Hangup()
        raise ValueError("unknown fault action %r" % a)

    def note(self, line, violation=False):
        with self.lock:
            self.commands.append(line)
            if violation:
                self.violations.append(line)
                log("fake %s: a command that could change the mailbox: %r" % (self.proto, line))

    def sent(self, prefix):
        """Commands received that start with prefix (case-insensitive)."""
        with self.lock:
            return [c for c in self.commands if c.upper().startswith(prefix.upper())]


class _Hangup(Exception):
    pass


Hangup = _Hangup


class _Conn:
    """Line and byte reads over a socket, with a small buffer."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, b):
        if b:
            self.sock.sendall(b)

    def readline(self, limit=1 << 20):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise _Hangup()
            d = self.sock.recv(65536)
            if not d:
                raise _Hangup()
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def read(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise _Hangup()
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


# ---------------------------------------------------------------- the mailbox model

class Msg:
    def __init__(self, uid, raw, flags=(), internal_date=None, modseq=1):
        self.uid = uid
        self.raw = bytes(raw)
        self.flags = tuple(flags)
        self.internal_date = internal_date or "17-Nov-2023 10:00:00 +0000"
        self.modseq = modseq


class Folder:
    """One folder: UIDVALIDITY, UIDNEXT, the messages in UID order, and for
    CONDSTORE/QRESYNC (RFC 7162) a modification sequence and the modseq at
    which each UID was expunged."""

    def __init__(self, name, uidvalidity=1000):
        self.name = name
        self.uidvalidity = uidvalidity
        self.uidnext = 1
        self.msgs = []
        self.modseq = 1
        self.vanished = {}

    def add(self, raws):
        uids = []
        self.modseq += 1
        for raw in raws:
            self.msgs.append(Msg(self.uidnext, raw, modseq=self.modseq))
            uids.append(self.uidnext)
            self.uidnext += 1
        return uids

    def expunge(self, uids):
        gone = set(uids)
        self.modseq += 1
        for m in self.msgs:
            if m.uid in gone:
                self.vanished[m.uid] = self.modseq
        self.msgs = [m for m in self.msgs if m.uid not in gone]

    def renumber(self, uidvalidity, raws=None):
        """A new UIDVALIDITY: the same messages (or raws instead) get UIDs
        from 1, as Dovecot does after losing its uidlist."""
        raws = [m.raw for m in self.msgs] if raws is None else raws
        self.uidvalidity = uidvalidity
        self.uidnext = 1
        self.msgs = []
        self.vanished = {}
        return self.add(raws)

    def uids(self):
        return [m.uid for m in self.msgs]

    def by_uid(self):
        return {m.uid: m.raw for m in self.msgs}


def _uidset(s, uids):
    """The UIDs of uids (ascending) that the IMAP set s names."""
    top = uids[-1] if uids else 0
    want = set()
    ranges = []
    for part in s.split(","):
        a, _, b = part.partition(":")
        lo = top if a == "*" else int(a)
        hi = lo if not b else (top if b == "*" else int(b))
        if lo > hi:
            lo, hi = hi, lo
        ranges.append((lo, hi))
    for u in uids:
        if any(lo <= u <= hi for lo, hi in ranges):
            want.add(u)
    return [u for u in uids if u in want]


def _compact(uids):
    out, i = [], 0
    while i < len(uids):
        j = i
        while j + 1 < len(uids) and uids[j + 1] == uids[j] + 1:
            j += 1
        out.append("%d" % uids[i] if i == j else "%d:%d" % (uids[i], uids[j]))
        i = j + 1
    return ",".join(out)


def _tokens(s):
    """Splits an IMAP command's arguments: atoms, quoted strings, and
    parenthesised groups kept whole."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == " ":
            i += 1
        elif c == '"':
            j, val = i + 1, []
            while j < len(s) and s[j] != '"':
                if s[j] == "\\" and j + 1 < len(s):
                    j += 1
                val.append(s[j])
                j += 1
            out.append("".join(val))
            i = j + 1
        elif c == "(":
            depth, j = 0, i
            while j < len(s):
                depth += s[j] == "("
                depth -= s[j] == ")"
                j += 1
                if depth == 0:
                    break
            out.append(s[i:j])
            i = j
        else:
            j = s.find(" ", i)
            j = len(s) if j < 0 else j
            out.append(s[i:j])
            i = j
    return out


def message_id_field(raw):
    """BODY[HEADER.FIELDS (MESSAGE-ID)] as Dovecot answers it."""
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    lines = re.split(rb"\r?\n", head)
    out, keep = [], False
    for l in lines:
        if l[:1] in (b" ", b"\t"):
            if keep:
                out.append(l)
            continue
        keep = l.lower().startswith(b"message-id:")
        if keep:
            out.append(l)
    return b"".join(l + b"\r\n" for l in out) + b"\r\n"


# ---------------------------------------------------------------- fake IMAP

MUTATING = ("SELECT", "STORE", "UID STORE", "EXPUNGE", "UID EXPUNGE", "COPY", "UID COPY", "MOVE",
            "UID MOVE", "APPEND", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE")


class FakeImap(_FakeBase):
    """A scripted IMAP4rev1 server. folders: {name: Folder}; caps: what
    CAPABILITY says after login (ESEARCH, CONDSTORE, QRESYNC, SEARCHRES:
    only claimed if listed; QRESYNC answers EXAMINE with VANISHED (EARLIER)
    and the changed messages' FLAGS; SEARCHRES keeps the UIDs of a UID
    SEARCH RETURN (SAVE ...) for a UID FETCH $); auth: "plain" (AUTH=PLAIN
    and SASL-IR offered, libcurl's choice) or "login"."""

    proto = "IMAP"

    def __init__(self, user="alice", password="pw-fake", caps=(), auth="plain", tls=None, delim="/"):
        self.user, self.password = user, password
        self.caps = list(caps)
        self.saved = []          # SEARCHRES: the UIDs of the last SEARCH RETURN (SAVE)
        self.auth = auth
        self.delim = delim
        self.folders = {"INBOX": Folder("INBOX")}
        # LIST as scripted instead of from folders: (delimiter, raw name
        # bytes) per line, the delimiter None for NIL; EXAMINE of a raw name
        # in raw_names opens that folder (key of folders)
        self.listing = None
        self.raw_names = {}
        # every message ever served: (folder, uidvalidity, uid) -> bytes,
        # to check rows of messages the server has since expunged
        self.history = {}
        super().__init__(tls)

    def url(self):
        return "%s://127.0.0.1:%d" % ("imaps" if self._ctx else "imap", self.port)

    def folder(self, name):
        if name not in self.folders:
            self.folders[name] = Folder(name)
        return self.folders[name]

    def remember(self):
        with self.lock:
            for f in self.folders.values():
                for m in f.msgs:
                    self.history[(f.name, f.uidvalidity, m.uid)] = m.raw

    def _caps(self, authed):
        c = ["IMAP4rev1", "LITERAL+"]
        if not authed:
            c += ["AUTH=PLAIN", "SASL-IR"] if self.auth == "plain" else []
        else:
            c += self.caps
        return " ".join(c).encode()

    def session(self, conn):
        self.remember()
        r = Reply()
        r.line(b"* OK [CAPABILITY " + self._caps(False) + b"] maildisk fake IMAP ready")
        self.send(conn, r, self._fault_for("GREETING"))
        authed = False
        selected = None
        while True:
            line = conn.readline()
            # a client literal ({n} or {n+}) continues the line
            while True:
                m = re.search(rb"\{(\d+)(\+?)\}$", line)
                if not m:
                    break
                if not m.group(2):
                    conn.send(b"+ go ahead\r\n")
                line = line + b"\r\n" + conn.read(int(m.group(1))) + conn.readline()
            text = line.decode("utf-8", errors="replace")
            tag, _, rest = text.partition(" ")
            words = rest.split(" ", 2)
            cmd = words[0].upper()
            if cmd == "UID" and len(words) > 1:
                cmd = "UID " + words[1].upper()
                args = words[2] if len(words) > 2 else ""
            else:
                args = rest[len(words[0]) + 1:] if len(words) > 1 else ""
            fetch_unpeeked = cmd in ("FETCH", "UID FETCH") and \
                re.search(r"(?<!\.)BODY\[|RFC822(?![.\w])|RFC822\.TEXT", args.upper()) is not None
            self.note(("%s %s" % (cmd, args)).strip() if cmd not in ("LOGIN", "AUTHENTICATE") else cmd,
                      violation=cmd in MUTATING or fetch_unpeeked)
            if conn.buf:
                # the client sent the next command before this one's answer
                with self.lock:
                    self.with_next.append(("%s %s" % (cmd, args)).strip())
            fault = self._fault_for(cmd)
            t = tag.encode()
            r = Reply(t)
            if cmd == "CAPABILITY":
                r.line(b"* CAPABILITY " + self._caps(authed))
                r.final(t + b" OK Capability completed")
            elif cmd == "NOOP":
                r.final(t + b" OK NOOP completed")
            elif cmd == "LOGOUT":
                r.line(b"* BYE Logging out")
                r.final(t + b" OK Logout completed")
                self.send(conn, r, fault)
                return
            elif cmd == "LOGIN":
                a = _tokens(args)
                if len(a) == 2 and a[0] == self.user and a[1] == self.password:
                    authed = True
                    r.final(t + b" OK [CAPABILITY " + self._caps(True) + b"] Logged in")
                else:
                    r.final(t + b" NO [AUTHENTICATIONFAILED] Authentication failed")
            elif cmd == "AUTHENTICATE":
                a = args.split(" ")
                if a[0].upper() != "PLAIN":
                    r.final(t + b" NO Unsupported mechanism")
                else:
                    if len(a) > 1:
                        ir = a[1]
                    else:
                        conn.send(b"+ \r\n")
                        ir = conn.readline().decode()
                    try:
                        parts = base64.b64decode(ir).split(b"\0")
                    except ValueError:
                        parts = []
                    if len(parts) == 3 and parts[1].decode() == self.user and parts[2].decode() == self.password:
                        authed = True
                        r.final(t + b" OK [CAPABILITY " + self._caps(True) + b"] Logged in")
                    else:
                        r.final(t + b" NO [AUTHENTICATIONFAILED] Authentication failed")
            elif not authed:
                r.final(t + b" BAD Log in first")
            elif cmd == "ENABLE":
                if "QRESYNC" in args.upper() and "QRESYNC" in self.caps:
                    r.line(b"* ENABLED QRESYNC")
                r.final(t + b" OK Enabled")
            elif cmd == "LIST":
                self._list(r, t, fault, args)
            elif cmd == "STATUS":
                self._status_cmd(r, t, args)
            elif cmd == "EXAMINE":
                selected = self._examine(r, t, args, fault)
            elif cmd == "UID SEARCH":
                self._search(r, t, args, selected, fault)
            elif cmd == "UID FETCH":
                self._fetch(r, t, args, selected, fault)
            else:
                r.final(t + b" BAD Not implemented by the fake server")
            if fault and fault.action == "status":
                self._status(r, t, fault)
            self.send(conn, r, fault)

    def _status(self, r, t, fault):
        keep = fault.params.get("keep_untagged", True)
        data = bytes(r.data[:r.tagged]) if keep and r.tagged is not None else b""
        r.data = bytearray(data)
        r.literals = [l for l in r.literals if l[0] < len(data)]
        r.final(t + b" " + fault.params.get("status", "NO").encode() + b" " +
                fault.params.get("text", "injected failure").encode())

    def _status_line(self, f, items):
        vals = {"MESSAGES": len(f.msgs), "UIDNEXT": f.uidnext, "UIDVALIDITY": f.uidvalidity,
                "HIGHESTMODSEQ": f.modseq}
        parts = ["%s %d" % (k, vals[k]) for k in items if k in vals and
                 (k != "HIGHESTMODSEQ" or "CONDSTORE" in self.caps or "QRESYNC" in self.caps)]
        return b'* STATUS "' + H.utf7_encode(f.name).encode() + b'" (' + " ".join(parts).encode() + b")"

    def _status_cmd(self, r, t, args):
        """STATUS, when claimed (caps has STATUS... every IMAP4rev1 server has it)."""
        a = _tokens(args)
        name = H.utf7_decode(a[0]) if a else ""
        f = self.folders.get(name)
        if f is None:
            r.final(t + b" NO [NONEXISTENT] Mailbox does not exist")
            return
        items = re.findall(r"[A-Z]+", args.upper().split("(", 1)[1]) if "(" in args else []
        r.line(self._status_line(f, items))
        r.final(t + b" OK Status completed")

    def _list(self, r, t, fault, args=""):
        if self.listing is not None and not fault:
            for delim, raw in self.listing:
                d = b"NIL" if delim is None else b'"' + delim.encode() + b'"'
                r.line(b"* LIST (\\HasNoChildren) " + d + b" {%d}" % len(raw))
                r.literal(raw)
                r.line(b"")
            r.final(t + b" OK List completed")
            return
        names = list(self.folders)
        if fault and fault.action == "listing":
            names = list(fault.params["folders"])
        for name in names:
            enc = H.utf7_encode(name).encode()
            if fault and fault.action == "huge":
                r.raw(b'* LIST (\\HasNoChildren) "' + self.delim.encode() + b'" {%d}\r\n' %
                      fault.params.get("size", 2147483648))
                r.literal(b"x" * fault.params.get("send", 65536))
                break
            r.line(b'* LIST (\\HasNoChildren) "' + self.delim.encode() + b'" "' + enc + b'"')
            ret = args.upper().split("RETURN (STATUS", 1)
            if len(ret) == 2 and "LIST-STATUS" in self.caps and name in self.folders:
                r.line(self._status_line(self.folders[name], re.findall(r"[A-Z]+", ret[1])))
        r.final(t + b" OK List completed")

    def _examine(self, r, t, args, fault):
        a = _tokens(args)
        name = H.utf7_decode(a[0]) if a and a[0] not in self.raw_names else ""
        f = self.folders.get(self.raw_names.get(a[0]) if a else None) or self.folders.get(name) or (self.folders.get("INBOX") if name.upper() == "INBOX" else None)
        if f is None:
            r.final(t + b" NO [NONEXISTENT] Mailbox does not exist")
            return None
        exists = len(f.msgs)
        if fault and fault.action == "exists":
            exists = fault.params["value"]
        r.line(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
        r.line(b"* OK [PERMANENTFLAGS ()] Read-only mailbox")
        r.line(b"* %d EXISTS" % exists)
        r.line(b"* 0 RECENT")
        r.line(b"* OK [UIDVALIDITY %d] UIDs valid" % f.uidvalidity)
        r.line(b"* OK [UIDNEXT %d] Predicted next UID" % f.uidnext)
        if "CONDSTORE" in self.caps or "QRESYNC" in self.caps:
            r.line(b"* OK [HIGHESTMODSEQ %d] Highest" % f.modseq)
        m = re.search(r"\(QRESYNC \((\d+) (\d+)", args.upper())
        if m and "QRESYNC" in self.caps and int(m.group(1)) == f.uidvalidity:
            since = int(m.group(2))
            gone = sorted(u for u, ms in f.vanished.items() if ms > since)
            if fault and fault.action == "vanished":
                gone = sorted(fault.params.get("uids", []))
            if fault and fault.action == "vanished" and "set" in fault.params:
                r.line(b"* VANISHED (EARLIER) " + fault.params["set"].encode())
            elif gone:
                r.line(b"* VANISHED (EARLIER) " + _compact(gone).encode())
            for i, msg in enumerate(f.msgs):
                if msg.modseq > since:
                    r.line(b"* %d FETCH (UID %d FLAGS (%s) MODSEQ (%d))" % (
                        i + 1, msg.uid, " ".join(msg.flags).encode(), msg.modseq))
        r.final(t + b" OK [READ-ONLY] Examine completed")
        return f

    def _search(self, r, t, args, f, fault):
        up = args.upper()
        save = "SEARCHRES" in self.caps and re.match(r"RETURN \([^)]*\bSAVE\b", up) is not None
        if save:
            self.saved = []      # RFC 5182: a failed SEARCH leaves $ empty
        if f is None:
            r.final(t + b" BAD No mailbox selected")
            return
        uids = f.uids()
        m = re.search(r"UID (\d+):\*", up)
        if m:
            lo = int(m.group(1))
            uids = [u for u in uids if u >= lo] or uids[-1:]
        if fault and fault.action == "listing":
            uids = list(fault.params["uids"])
        if save:
            self.saved = list(uids)
        if up.startswith("RETURN"):
            tm = t.decode()
            r.line(('* ESEARCH (TAG "%s") UID' % tm).encode() +
                   ((" ALL " + _compact(sorted(uids))).encode() if uids else b""))
        else:
            r.line(b"* SEARCH" + b"".join(b" %d" % u for u in uids))
        r.final(t + b" OK Search completed")

    def _fetch(self, r, t, args, f, fault):
        if f is None:
            r.final(t + b" BAD No mailbox selected")
            return
        a = _tokens(args)
        if len(a) < 2:
            r.final(t + b" BAD Missing arguments")
            return
        items = a[1].upper()
        seqs = {m.uid: i + 1 for i, m in enumerate(f.msgs)}
        msgs = {m.uid: m for m in f.msgs}
        huge = fault if fault and fault.action == "huge" else None
        chosen = [u for u in f.uids() if u in set(self.saved)] if a[0] == "$" else _uidset(a[0], f.uids())
        for uid in chosen:
            m = msgs[uid]
            r.raw(b"* %d FETCH (UID %d" % (seqs[uid], uid))
            if "RFC822.SIZE" in items:
                r.raw(b" RFC822.SIZE %d" % len(m.raw))
            if "INTERNALDATE" in items:
                r.raw(b' INTERNALDATE "%s"' % m.internal_date.encode())
            if "FLAGS" in items:
                r.raw(b" FLAGS (%s)" % " ".join(m.flags).encode())
            if "HEADER.FIELDS" in items:
                v = message_id_field(m.raw)
                r.raw(b" BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n" % len(v))
                r.literal(v)
            elif "BODY.PEEK[]" in items or "BODY[]" in items:
                if huge:
                    r.raw(b" BODY[] {%d}\r\n" % huge.params.get("size", 2147483648))
                    r.literal((m.raw * (1 + huge.params.get("send", 65536) // max(1, len(m.raw))))
                              [:huge.params.get("send", 65536)])
                    return
                r.raw(b" BODY[] {%d}\r\n" % len(m.raw))
                r.literal(m.raw)
            r.raw(b")\r\n")
        r.final(t + b" OK Fetch completed")


# ---------------------------------------------------------------- fake POP3

class FakePop3(_FakeBase):
    """A scripted POP3 server (RFC 1939 with UIDL). msgs: a list of
    (uidl, bytes) in message-number order, changed by the test between
    sessions (each session sees the list as it was at login).
    pipelining: CAPA announces PIPELINING (RFC 2449), as Dovecot does.
    ahead: commands that had arrived before the answer to the one before
    them was sent (the client pipelined), summed over all sessions."""

    proto = "POP3"

    def __init__(self, user="alice", password="pw-fake", tls=None, pipelining=True):
        self.user, self.password = user, password
        self.pipelining = pipelining
        self.ahead = 0
        self.msgs = []
        self.history = {}
        self._next = 1
        super().__init__(tls)

    def url(self):
        return "%s://127.0.0.1:%d" % ("pop3s" if self._ctx else "pop3", self.port)

    def add(self, raws):
        """Adds messages; returns their UIDLs. A message is kept as it goes
        over the wire (dot-stuffing aside): ending in CRLF, as RFC 1939
        requires of a multi-line answer, so that is what a client stores."""
        out = []
        for raw in raws:
            raw = bytes(raw)
            if raw and not raw.endswith(b"\r\n"):
                raw += b"\r\n"
            uidl = "fake%06d" % self._next
            self._next += 1
            self.msgs.append((uidl, bytes(raw)))
            self.history[uidl] = bytes(raw)
            out.append(uidl)
        return out

    def delete(self, uidls):
        gone = set(uidls)
        self.msgs = [m for m in self.msgs if m[0] not in gone]

    def by_uidl(self):
        return dict(self.msgs)

    def session(self, conn):
        r = Reply()
        r.final(b"+OK maildisk fake POP3 ready")
        self.send(conn, r, self._fault_for("GREETING"))
        authed = False
        user = None
        with self.lock:
            msgs = list(self.msgs)
        held = None
        while True:
            text = conn.readline().decode("utf-8", errors="replace")
            if b"\n" in conn.buf:
                with self.lock:
                    self.ahead += 1
            cmd, _, args = text.partition(" ")
            cmd = cmd.upper()
            self.note(cmd if cmd == "PASS" else text, violation=cmd == "DELE")
            fault = self._fault_for(cmd)
            if fault:
                fault.ahead = conn.buf.count(b"\n")    # commands behind it, already sent
            r = Reply()
            if cmd == "CAPA":
                r.line(b"+OK Capability list follows")
                for c in (b"TOP", b"UIDL", b"USER", b"RESP-CODES") + ((b"PIPELINING",) if self.pipelining else ()):
                    r.line(c)
                r.final(b".")
            elif cmd == "USER":
                user = args
                r.final(b"+OK")
            elif cmd == "PASS":
                if user == self.user and args == self.password:
                    authed = True
                    r.final(b"+OK Logged in")
                else:
                    r.final(b"-ERR [AUTH] Authentication failed")
            elif cmd == "QUIT":
                r.final(b"+OK Logging out")
                self.send(conn, r, fault)
                return
            elif not authed:
                r.final(b"-ERR Log in first")
            elif cmd == "NOOP" or cmd == "RSET":
                r.final(b"+OK")
            elif cmd == "STAT":
                n = fault.params["value"] if fault and fault.action == "exists" else len(msgs)
                r.final(b"+OK %d %d" % (n, sum(len(m[1]) for m in msgs)))
            elif cmd == "UIDL" and args:
                n = int(args) if args.isdigit() else 0
                r.final(b"+OK %d %s" % (n, msgs[n - 1][0].encode()) if 0 < n <= len(msgs)
                        else b"-ERR No such message")
            elif cmd == "UIDL":
                r.line(b"+OK")
                listing = [(i + 1, u) for i, (u, _) in enumerate(msgs)]
                if fault and fault.action == "listing":
                    listing = [(n, u) for n, u in listing if u in set(fault.params["uids"])]
                for n, u in listing:
                    r.line(b"%d %s" % (n, u.encode()))
                r.final(b".")
            elif cmd == "LIST":
                r.line(b"+OK")
                for i, (_, raw) in enumerate(msgs):
                    r.line(b"%d %d" % (i + 1, len(raw)))
                r.final(b".")
            elif cmd == "RETR":
                n = int(args) if args.isdigit() else 0
                if not 0 < n <= len(msgs):
                    r.final(b"-ERR No such message")
                else:
                    raw = msgs[n - 1][1]
                    r.line(b"+OK %d octets" % len(raw))
                    stuffed = re.sub(rb"(^|\n)\.", rb"\1..", raw)
                    r.literal(stuffed)
                    r.final(b".")
            elif cmd == "DELE":
                r.final(b"-ERR this fake server keeps everything")
            else:
                r.final(b"-ERR Unknown command")
            if fault and fault.action == "status":
                keep = fault.params.get("keep_untagged", False)
                data = bytes(r.data[:r.tagged]) if keep and r.tagged is not None else b""
                r.data = bytearray(data)
                r.literals = [l for l in r.literals if l[0] < len(data)]
                r.final(b"-ERR " + fault.params.get("text", "injected failure").encode())
            if fault and fault.action == "drop":
                continue
            if fault and fault.action == "swap":
                held = bytes(r.data)
                continue
            self.send(conn, r, fault)
            if held is not None:
                conn.send(held)
                held = None


# ---------------------------------------------------------------- scenarios

def only_scenarios():
    """The scenario names in MAILDISK_FAULTS=name,name; empty: all."""
    return set(filter(None, os.environ.get("MAILDISK_FAULTS", "").split(",")))


def run_each(runs):
    """Runs each (name, function) of runs whose name MAILDISK_FAULTS picks
    (all when it is unset). A function runs one scenario and returns the
    number of faults it injected (None counts as 0); a Failure is logged and
    the next scenario runs all the same. Returns (ran, injected, failed),
    failed as "name: why" lines."""
    only = only_scenarios()
    ran = injected = 0
    failed = []
    for name, fn in runs:
        if only and name not in only:
            continue
        ran += 1
        log("==== scenario %s" % name)
        try:
            injected += fn() or 0
        except Failure as e:
            log("FAILED scenario %s: %s" % (name, e))
            failed.append("%s: %s" % (name, e))
    return ran, injected, failed


def report_scenarios(what, ran, injected, failed):
    """Logs the count of run_each's scenarios and fails with every failure."""
    log("%s: %d scenarios, %d faults injected, %d failed" % (what, ran, injected, len(failed)))
    check(not failed, "%d of %d scenarios failed" % (len(failed), ran), *["\n  " + f for f in failed])


def converged(sc, srv, st, n_trashed, problems, violation):
    """The end of a fake-server scenario, after the converging sync: the
    server saw no command that changes mail (violation says which), and
    the faulty run's log said what it had to (problems from faulty_sync)."""
    check(not srv.violations, "%s: %s" % (sc.name, violation), srv.violations[:5])
    log("  converged: %d rows, %d trashed" % (len(visible_rows(st)), n_trashed))
    check(not problems, "%s: %s" % (sc.name, "; ".join(problems)))


def scenario_store(ctx, name, srv, user, acct, password, timeout=60, **kw):
    """A directory of its own for one scenario, a config with one account on
    srv, and the Store it writes: (config path, Store)."""
    tmp = os.path.join(ctx.tmp, name)
    os.mkdir(tmp, 0o700)
    cfg = write_config(os.path.join(tmp, "maildisk.conf"), os.path.join(tmp, "store"),
                       [account(user, acct, srv.url(), password, timeout=timeout)], **kw)
    return cfg, H.Store(os.path.join(tmp, "store"))


def sigterm_sync(p, what, limit=2.0):
    """Sends SIGTERM to a running `maildisk sync` (Popen p, stderr piped)
    and waits: it must end within limit seconds with exit 1 (interrupted).
    Returns (seconds taken, stderr text)."""
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        _out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise Failure("maildisk sync did not end within 10 s of SIGTERM (%s)" % what)
    took = time.monotonic() - t0
    err = err.decode(errors="replace")
    log("  SIGTERM (%s): exit %d after %.2f s" % (what, p.returncode, took))
    check(took <= limit, "SIGTERM was obeyed after %.2f s (%s), limit %.0f s" % (took, what, limit),
          err[-800:])
    check(p.returncode == 1, "exit %d after SIGTERM (%s), expected 1" % (p.returncode, what), err[-800:])
    return took, err


def faulty_sync(cfg, sc, faults, account_re, log_lines=10):
    """Arms faults on no server (the caller did) and runs `maildisk sync -c
    cfg` once, measured. Checks what every scenario demands of that run: no
    sanitizer report, no death by signal, an exit code in sc.expect_rc (an
    int or a tuple), and, unless sc.fires is False, every fault fired.
    Returns (rc, err, rss, took, problems): problems lists what the log
    fails to say (the account's name, sc.log_re), for the caller to fail on
    after its checks of the store."""
    t0 = time.monotonic()
    rc, _out, err, rss = run_measured([H.maildisk_path(), "sync", "-c", cfg], timeout=120)
    took = time.monotonic() - t0
    log("  faulty sync: exit %d in %.1fs, peak RSS %d KiB" % (rc, took, rss))
    for line in err.rstrip().splitlines()[-log_lines:]:
        log("    " + line)
    check(not H.SANITIZER_RE.search(err), "sanitizer report", err[-3000:])
    check(rc >= 0, "maildisk died of signal %d" % -rc)
    want = sc.expect_rc if isinstance(sc.expect_rc, tuple) else (sc.expect_rc,)
    check(rc in want, "%s: exit %d, expected %s" % (sc.name, rc, want))
    if getattr(sc, "fires", True):
        check(all(f.fired for f in faults), "%s: the fault never fired" % sc.name, faults)
    problems = []
    if not re.search(account_re, err):
        problems.append("the log does not name the account")
    if sc.log_re and not re.search(sc.log_re, err, re.S):
        problems.append("the log does not say /%s/" % sc.log_re)
    return rc, err, rss, took, problems


# ---------------------------------------------------------------- configs and checks

def account(user, name, url, password, folders=("INBOX",), timeout=5, tls_off=True, **extra):
    """A harness Account for a fake server (plaintext unless url is
    imaps:// or pop3s://)."""
    ex = dict(extra)
    if tls_off and (url.startswith("imap://") or url.startswith("pop3://")):
        ex["tls"] = "off"
    return H.Account(user, name, url, user, password, list(folders), None, timeout=timeout, extra=ex)


def write_config(path, store, accounts, **kw):
    """harness.write_config, without a folders line in POP3 sections (the
    config refuses one there; the harness writes it for every account)."""
    H.write_config(path, store, accounts, **kw)
    return H.drop_pop3_folders(path)


def visible_rows(st, user=None, acct=None, folder=None):
    """Active and restored rows; none when the index has no tables yet (a
    process killed while it created them)."""
    import sqlite3
    try:
        rows = st.messages(user, acct, folder)
    except sqlite3.OperationalError as e:
        if "no such table" not in str(e):
            raise
        return []
    return [r for r in rows if r["state"] in (ACTIVE, RESTORED)]


def check_store(st, bodies_for, what=""):
    """The invariants after any run, however it ended: no file in tmp/;
    the cur/ files are exactly the visible rows' files; each visible row's
    file has the row's size and is byte-exact. bodies_for(row) returns the
    bytes the row must hold (None: only sizes are compared). Returns the
    number of visible rows."""
    pre = what + ": " if what else ""
    left = st.tmp_files()
    check(not left, pre + "files left in tmp/", left[:10])
    files = {p for p in st.files(("mail",)) if "/cur/" in p or "/new/" in p}
    rows = visible_rows(st)
    names = {r["store_file"] for r in rows}
    check(files == names, pre + "cur/ files and visible rows differ",
          "files without a row", sorted(files - names)[:10],
          "rows without a file", sorted(names - files)[:10])
    for r in rows:
        data = st.read(r)
        check(len(data) == r["size"], pre + "row %d: size %d, file %d bytes" % (r["id"], r["size"], len(data)))
        want = bodies_for(r)
        if want is not None:
            check(data == want, pre + "row %d (%s %s %s): file %s is not the message (%d vs %d bytes)" % (
                r["id"], r["f_account"], r["f_name"], r["remote_id"], r["store_file"], len(data), len(want)))
    return len(rows)


def imap_bodies(server, st):
    """bodies_for for check_store against a FakeImap: a row holds the bytes
    the server had for (folder, the folder's UIDVALIDITY in the index, UID)
    at some time (its history)."""
    uv = {f["id"]: f["uidvalidity"] for f in st.folders()}

    def get(row):
        rid = row["remote_id"]
        if not rid.isdigit():
            return None           # parked by a UIDVALIDITY re-match: sizes only
        want = server.history.get((row["f_name"], uv.get(row["folder_id"]), int(rid)))
        check(want is not None, "row %d: %s UID %s under UIDVALIDITY %s was never on the server" % (
            row["id"], row["f_name"], rid, uv.get(row["folder_id"])))
        return want
    return get


def imap_converged(st, server, user, acct, folder="INBOX"):
    """The visible rows of the folder are exactly the server's UIDs, each
    byte-exact, one row per UID."""
    f = server.folders[folder]
    rows = visible_rows(st, user, acct, folder)
    uids = [int(r["remote_id"]) for r in rows if r["remote_id"].isdigit()]
    check(len(uids) == len(rows), "%s: rows with parked keys remain visible" % folder,
          [r["remote_id"] for r in rows if not r["remote_id"].isdigit()][:10])
    check(len(set(uids)) == len(uids), "%s: duplicate rows for a UID" % folder)
    want = f.by_uid()
    check(sorted(uids) == sorted(want), "%s: rows differ from the server" % folder,
          "missing", sorted(set(want) - set(uids))[:20], "extra", sorted(set(uids) - set(want))[:20])
    for r in rows:
        check(st.read(r) == want[int(r["remote_id"])], "%s UID %s: file is not the message" % (folder, r["remote_id"]))
    fr = st.folder(user, acct, folder)
    check(fr and fr["uidvalidity"] == f.uidvalidity, "%s: index UIDVALIDITY %s, server %d" % (
        folder, fr and fr["uidvalidity"], f.uidvalidity))


def pop3_converged(st, server, user, acct):
    rows = visible_rows(st, user, acct, "INBOX")
    ids = [r["remote_id"] for r in rows]
    check(len(set(ids)) == len(ids), "POP3: duplicate rows for a UIDL")
    want = server.by_uidl()
    check(sorted(ids) == sorted(want), "POP3: rows differ from the server",
          "missing", sorted(set(want) - set(ids))[:20], "extra", sorted(set(ids) - set(want))[:20])
    for r in rows:
        check(st.read(r) == want[r["remote_id"]], "POP3 %s: file is not the message" % r["remote_id"])


def trashed_ids(st):
    return {r["id"] for r in st.messages(state=TRASHED)}


# ---------------------------------------------------------------- fast delivery

def deliver(dc, user, folder, raws):
    """Puts messages straight into the Dovecot Maildir's new/ (owned by the
    mail user), much faster than one APPEND each; Dovecot assigns their
    UIDs, in file name order, at the next access. Byte-exact comparisons
    must then use what the server returns, as always."""
    if folder.upper() != "INBOX":
        dc.create_folder(user, folder)
    dc.uids(user, folder)          # makes Dovecot create the Maildir
    path = dc.mailbox_path(user, folder)
    new = os.path.join(path, "new")
    base = "%d.M%%06dP%d.maildisk-tests" % (int(time.time()), os.getpid())
    start = len(os.listdir(new)) + len(os.listdir(os.path.join(path, "cur")))
    for i, raw in enumerate(raws):
        p = os.path.join(new, base % (start + i))
        with open(p, "wb") as f:
            f.write(raw)
        os.chown(p, dc.vmail_uid, dc.vmail_gid)
    return len(raws)


# ---------------------------------------------------------------- mount probing

def mountlib():
    """tests/mount/mountlib.py, or None when it is not there."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "mount"))
    try:
        import mountlib as m
    except ImportError as e:
        log("NOTE: tests/mount/mountlib.py is not usable (%s)" % e)
        return None
    return m


def try_mount(ctx, conf, mountpoint):
    """Mounts with `maildisk mount -f` (tests/mount/mountlib.py); returns
    the Mount, or None with a logged note when mounting is not possible
    here (no /dev/fuse, no mountlib, or the mount does not come up)."""
    if not os.path.exists("/dev/fuse"):
        log("NOTE: /dev/fuse is absent: the mount part is skipped")
        return None
    ml = mountlib()
    if ml is None:
        log("NOTE: the mount part is skipped")
        return None
    m = ml.Mount(ctx, conf, mountpoint)
    try:
        m.start()
    except Failure as e:
        log("NOTE: maildisk mount does not come up here (%s): the mount part is skipped" % e)
        m.cleanup()
        return None
    return m
