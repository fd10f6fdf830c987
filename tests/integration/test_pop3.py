#!/usr/bin/env python3
"""POP3 and POP3S accounts against a real Dovecot.

1. First sync of a pop3s:// account and of a pop3:// account (STLS):
   every message the server lists is stored once, keyed by its UIDL,
   byte for byte what RETR returns (checked with poplib, and against
   IMAP BODY.PEEK[] with the CRLF POP3 adds before its final "."), in
   folder INBOX with UIDVALIDITY 1. Dot-stuffed lines survive.
2. The server is unchanged afterwards: same messages, no flag set (no
   \\Seen: maildisk ends its session with RSET), no DELE in Dovecot's log.
3. A sync with nothing new changes nothing; new mail arrives on the next.
4. A message deleted upstream is moved to trash with reason and audit
   row; with mirror_deletions = no nothing is trashed.
5. A wrong password: exit 1, a message naming the account and saying the
   login was refused, the password nowhere, the store unchanged.

Then, against a scripted POP3 server (faults Dovecot will not produce on
demand; pop3:// with tls = off), each session's commands recorded:
6. RETR answered -ERR: what came before is kept, the folder fails, nothing
   is trashed, and the connection is cut without QUIT (a QUIT would let a
   server like Dovecot mark the retrieved messages \\Seen).
7. A UIDL listed twice, or a STAT count the listing does not match: the
   listing is no proof, nothing is trashed; a complete one trashes.
8. The server drops the connection after UIDL: libcurl would log in again
   and RETR by a number from the old session; the sync refuses instead.
9. A hang-up in the middle of a message: nothing partial is kept.
10. A listing that would trash most of the folder is held until
    sync --allow-mass-delete.
11. pop3:// at a server without STLS fails before any credentials are sent.
No session ever sends DELE, and a healthy one ends with RSET, QUIT."""
import contextlib
import os
import poplib
import re
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

# Lines of 12 to 20 KB (mailgen's long-header kind) are longer than
# poplib's default limit of 2048.
poplib._MAXLINE = 1 << 20

# Bodies that exercise POP3 dot-stuffing (RFC 1939 section 3): a line that
# is a lone ".", lines starting with "." or "..", and a message without a
# final line end (POP3 adds one before its terminating ".").
DOTS = [
    b"Subject: dots\r\nMessage-ID: <dots@test>\r\n\r\n.first line dot\r\n..two dots\r\n.\r\nx\r\n"
    b". \r\n...\r\nend without newline",
    b"Subject: dotty bare lf\nMessage-ID: <dotty@test>\n\n.\n..\nbare lf\n",
    b"Subject: .\r\n\r\n.\r\n",
]


def pop3_config(ctx, accounts, name="maildisk.conf"):
    """ctx.config for POP3 accounts: harness.write_config always writes a
    folders = line, which the config parser refuses for pop3 urls."""
    return h.drop_pop3_folders(ctx.config(accounts, name=name))


drop_folders = h.drop_pop3_folders


def uid_of(uidl):
    """Dovecot's default pop3_uidl_format is %08Xu%08Xv: the IMAP UID first."""
    return int(uidl[:8], 16)


def assert_pop3_matches(st, dc, user, account):
    """Active rows of (user, account) are exactly the server's UIDLs, each
    file byte-exact (h.assert_pop3_matches), and also what IMAP BODY.PEEK[]
    returns, with a view name, a date and the folder row. Returns
    {uidl: row}."""
    by_uidl = h.assert_pop3_matches(st, dc, user, account)
    imap = dc.fetch_bodies(user, "INBOX")
    for uidl, r in by_uidl.items():
        got = st.read(r)
        want = imap[uid_of(uidl)]
        if not want.endswith(b"\r\n"):
            want += b"\r\n"
        h.check(got == want, "%s/%s UIDL %s: file differs from BODY.PEEK[]" % (user, account, uidl))
        h.check(re.match(r"^\d{4}-\d\d-\d\d \d{4} .+ ~[0-9a-f]{8}\.eml$", r["view_name"]),
                "UIDL %s: view name %r" % (uidl, r["view_name"]))
        h.check(r["internal_date"] > 0, "UIDL %s: no internal_date" % uidl)
    f = st.folder(user, account, "INBOX")
    h.check(f and f["uidvalidity"] == 1 and f["path"] == "mail/%s/%s/INBOX" % (user, account),
            "%s/%s: folder row" % (user, account), f)
    return by_uidl


def server_state(dc, users):
    """What must not change on the server: UIDs and stored flags."""
    return {u: (dc.uids(u, "INBOX"), dc.flags(u, "INBOX")) for u in users}


def pop3_log_lines(dc):
    with open(dc.log_path, errors="replace") as f:
        return [line for line in f if "pop3(" in line and "Disconnected" in line]


# ---------------------------------------------------------------- scripted server

class FakePop3(h.Listener):
    """A plaintext POP3 server on a free 127.0.0.1 port (USER/PASS, UIDL, no
    STLS), serving self.mailbox: a list of (uidl, bytes). Faults:
      retr_err   message number answered -ERR
      extra_uidl lines appended to the UIDL listing
      stat_extra added to STAT's count
      drop_after_uidl  close the connection right after the UIDL answer
      cut_retr   message number whose body stops halfway (connection closed)
    sessions: one list of commands per connection (PASS argument hidden)."""

    def __init__(self, password):
        self.password = password
        self.mailbox = []
        self.retr_err = None
        self.extra_uidl = []
        self.stat_extra = 0
        self.drop_after_uidl = False
        self.cut_retr = None
        self.sessions = []
        self.lock = threading.Lock()
        super().__init__()

    def reset_faults(self):
        self.retr_err = self.cut_retr = None
        self.extra_uidl = []
        self.stat_extra = 0
        self.drop_after_uidl = False

    def on_conn(self, c):
        log_ = []
        with self.lock:
            self.sessions.append(log_)
        threading.Thread(target=self._serve, args=(c, log_), daemon=True).start()

    @staticmethod
    def _stuffed(body):
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        lines = body.split(b"\r\n")[:-1]
        return b"".join((b"." + x if x.startswith(b".") else x) + b"\r\n" for x in lines)

    def _serve(self, c, log_):
        f = c.makefile("rb")
        box = list(self.mailbox)    # the session's view, as a real server keeps it

        def send(data):
            c.sendall(data)
        try:
            send(b"+OK fake POP3 ready\r\n")
            user_ok = False
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode(errors="replace").strip()
                verb = cmd.split(" ")[0].upper()
                log_.append("PASS ***" if verb == "PASS" else cmd)
                if verb == "CAPA":
                    send(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
                elif verb == "USER":
                    user_ok = True
                    send(b"+OK\r\n")
                elif verb == "PASS":
                    if user_ok and cmd[5:] == self.password:
                        send(b"+OK logged in\r\n")
                    else:
                        send(b"-ERR [AUTH] authentication failed\r\n")
                elif verb == "STAT":
                    send(b"+OK %d %d\r\n" % (len(box) + self.stat_extra, sum(len(b) for _, b in box)))
                elif verb == "UIDL":
                    out = b"+OK\r\n" + b"".join(b"%d %s\r\n" % (i + 1, u.encode())
                                                for i, (u, _) in enumerate(box))
                    out += b"".join(x.encode() + b"\r\n" for x in self.extra_uidl)
                    send(out + b".\r\n")
                    if self.drop_after_uidl:
                        c.shutdown(socket.SHUT_RDWR)
                        return
                elif verb == "RETR":
                    n = int(cmd.split()[1])
                    if n == self.retr_err or not 1 <= n <= len(box):
                        send(b"-ERR no such message\r\n")
                        continue
                    body = self._stuffed(box[n - 1][1])
                    if n == self.cut_retr:
                        send(b"+OK\r\n" + body[:len(body) // 2])
                        c.shutdown(socket.SHUT_RDWR)
                        return
                    send(b"+OK %d octets\r\n" % len(box[n - 1][1]) + body + b".\r\n")
                elif verb == "RSET":
                    send(b"+OK\r\n")
                elif verb == "QUIT":
                    send(b"+OK bye\r\n")
                    return
                else:
                    send(b"-ERR unknown command\r\n")
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                c.close()

    def take_sessions(self):
        with self.lock:
            s, self.sessions = self.sessions, []
        return s


def fake_message(i):
    return (b"Subject: fake %d\r\nMessage-ID: <fake%d@test>\r\nDate: Mon, 13 Nov 2023 10:%02d:00 +0000\r\n"
            b"\r\nbody %d\r\n.dot line\r\n" % (i, i, i % 60, i)) + b"x" * (i * 1000) + b"\r\n"


def check_sessions(sessions, healthy=True):
    """No DELE anywhere; a healthy run ends its one session with RSET, QUIT."""
    h.check(sessions, "no POP3 session recorded")
    for cmds in sessions:
        h.check(not any(c.upper().startswith("DELE") for c in cmds), "DELE sent", cmds)
    if healthy:
        h.check(len(sessions) == 1, "one connection per run", sessions)
        h.check(sessions[0][-2:] == ["RSET", "QUIT"], "session does not end with RSET, QUIT",
                sessions[0])


def fake_rows(st, state=h.ACTIVE):
    return {r["remote_id"]: r for r in st.messages("dave", "fake", "INBOX", state)}


def fake_part(ctx):
    srv = FakePop3("fake-pw-dave")
    ctx.stack.callback(srv.close)
    msgs = {("u%d" % i): fake_message(i) for i in range(1, 12)}
    srv.mailbox = [(u, msgs[u]) for u in ("u1", "u2", "u3", "u4", "u5")]
    acct = h.Account("dave", "fake", "pop3://127.0.0.1:%d" % srv.port, "dave", "fake-pw-dave",
                     timeout=5, extra={"tls": "off"})
    fdir = os.path.join(ctx.tmp, "fake")
    os.mkdir(fdir, 0o700)
    cfg = h.write_config(os.path.join(fdir, "maildisk.conf"), os.path.join(ctx.tmp, "fakestore"), [acct])
    drop_folders(cfg)
    st = h.Store(os.path.join(ctx.tmp, "fakestore"))

    def body_ok(rows):
        for u, r in rows.items():
            h.check(st.read(r) == msgs[u], "fake %s: stored bytes differ" % u)

    sync(cfg, 0)
    check_sessions(srv.take_sessions())
    rows = fake_rows(st)
    h.check(sorted(rows) == ["u1", "u2", "u3", "u4", "u5"], "fake first sync", sorted(rows))
    body_ok(rows)

    # 6. u2 deleted upstream, u6 and u7 new; RETR of u7 refused.
    srv.mailbox = [(u, msgs[u]) for u in ("u1", "u3", "u4", "u5", "u6", "u7")]
    srv.retr_err = 6
    r = sync(cfg, 1)
    h.check("refused RETR 6" in r.err, "no message for the refused RETR", r.err)
    sess = srv.take_sessions()
    check_sessions(sess, healthy=False)
    h.check(len(sess) == 1 and sess[0][-1] == "RETR 6",
            "after -ERR the connection must be cut without QUIT", sess)
    rows = fake_rows(st)
    h.check(sorted(rows) == ["u1", "u2", "u3", "u4", "u5", "u6"], "kept before the -ERR", sorted(rows))
    body_ok(rows)
    h.check(not fake_rows(st, h.TRASHED), "trashed although the folder failed")
    h.check(st.folder("dave", "fake", "INBOX")["last_error"], "folder error not recorded")

    # 7. A repeated UIDL, then a STAT that does not match: no deletions.
    srv.reset_faults()
    srv.extra_uidl = ["7 u3"]
    srv.mailbox = [(u, msgs[u]) for u in ("u1", "u3", "u4", "u5", "u6", "u7")]
    r = sync(cfg, 0)
    h.check("more than once" in r.err, "no warning for the repeated UIDL", r.err)
    check_sessions(srv.take_sessions())
    h.check("u7" in fake_rows(st) and "u2" in fake_rows(st) and not fake_rows(st, h.TRASHED),
            "repeated UIDL: u7 fetched, u2 kept", sorted(fake_rows(st)))
    srv.reset_faults()
    srv.stat_extra = 1
    r = sync(cfg, 0)
    h.check("STAT says" in r.err, "no warning for the STAT mismatch", r.err)
    check_sessions(srv.take_sessions())
    h.check("u2" in fake_rows(st) and not fake_rows(st, h.TRASHED), "STAT mismatch trashed")
    srv.reset_faults()
    sync(cfg, 0)
    check_sessions(srv.take_sessions())
    trashed = fake_rows(st, h.TRASHED)
    h.check(sorted(trashed) == ["u2"] and trashed["u2"]["trash_reason"] == "deleted on the POP3 server",
            "complete listing: u2 trashed", trashed)
    h.check(st.read(trashed["u2"]) == msgs["u2"], "trashed u2 content")

    # 8. Connection dropped after UIDL: no RETR in a new session is trusted.
    srv.mailbox.append(("u8", msgs["u8"]))
    srv.drop_after_uidl = True
    snap = st.snapshot()
    r = sync(cfg, 1)
    sess = srv.take_sessions()
    check_sessions(sess, healthy=False)
    h.check(st.snapshot() == snap, "a RETR from a new session was stored", sess)
    h.check(all(c != "QUIT" for cmds in sess[1:] for c in cmds), "QUIT in the second session", sess)
    h.check(re.search(r"opened again|closed the connection|connection to the POP3 server lost", r.err), "no clear error", r.err)

    # 9. Hang-up in the middle of u8.
    srv.reset_faults()
    srv.cut_retr = len(srv.mailbox)
    r = sync(cfg, 1)
    check_sessions(srv.take_sessions(), healthy=False)
    h.check(st.snapshot() == snap, "a partial message was stored")
    h.assert_no_tmp(st)
    srv.reset_faults()
    sync(cfg, 0)
    check_sessions(srv.take_sessions())
    h.check("u8" in fake_rows(st), "u8 after the faults")
    body_ok(fake_rows(st))

    # 10. Most of the folder gone: held until confirmed.
    srv.mailbox = [(u, msgs[u]) for u in ("u1", "u9")]
    snap = st.snapshot()
    r = sync(cfg, (0, 1))
    check_sessions(srv.take_sessions())
    f = st.folder("dave", "fake", "INBOX")
    h.check(f["held"], "no hold recorded", f)
    h.check(sorted(fake_rows(st, h.TRASHED)) == ["u2"], "trashed despite the hold")
    h.check("u9" in fake_rows(st), "new mail not fetched while deletions are held")
    r = h.maildisk("sync", cfg, "--allow-mass-delete", expect=0)
    OUTPUTS.append(r.text)
    check_sessions(srv.take_sessions())
    h.check(sorted(fake_rows(st)) == ["u1", "u9"], "after --allow-mass-delete", sorted(fake_rows(st)))
    h.check(st.folder("dave", "fake", "INBOX")["held"] is None, "hold not cleared")
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)

    # 11. pop3:// without tls = off at a server that offers no STLS: refused
    # before the login, so the password never crosses in clear text.
    acct.extra = {}
    cfg2 = h.write_config(os.path.join(fdir, "maildisk.conf"), os.path.join(ctx.tmp, "fakestore"), [acct])
    drop_folders(cfg2)
    snap = st.snapshot()
    r = sync(cfg2, 1)
    h.check("does not offer STLS" in r.err, "no clear message for a server without STLS", r.err)
    sess = srv.take_sessions()
    h.check(sess and all(c.split()[0] not in ("USER", "PASS", "AUTH", "APOP") for cmds in sess for c in cmds),
            "credentials sent to a server without STLS", sess)
    h.check(st.snapshot() == snap, "the refused session changed the store")
    return ["fake-pw-dave"]


OUTPUTS = []


def sync(cfg, expect):
    r = h.maildisk("sync", cfg, expect=expect)
    OUTPUTS.append(r.text)
    return r


def main(ctx):
    dc = ctx.dovecot()
    users = {"alice": "pw-pop-alice", "bob": "pw-pop-bob", "carol": "pw-pop-carol"}
    for u, pw in users.items():
        dc.add_user(u, pw)
    msgs = [m.raw for m in mailgen.generate(24, seed=43, max_size=120000)] + DOTS
    dc.append("alice", "INBOX", msgs[:16] + DOTS)
    dc.append("bob", "INBOX", msgs[10:24])
    carol = dc.append("carol", "INBOX", msgs[:8])

    accounts = [
        h.Account("alice", "pop", dc.url("pop3s"), "alice", users["alice"], ca_file=dc.ca_pem),
        h.Account("bob", "stls", dc.url("pop3"), "bob", users["bob"], ca_file=dc.ca_pem),
        h.Account("carol", "keep", dc.url("pop3s"), "carol", users["carol"], ca_file=dc.ca_pem,
                  extra={"mirror_deletions": "no"}),
    ]
    cfg = pop3_config(ctx, accounts)
    st = h.Store(ctx.store_dir())
    before = server_state(dc, users)

    # 1. First sync, both transports.
    sync(cfg, 0)
    # Only maildisk has logged in so far: bob's pop3:// login went over STLS.
    with open(dc.log_path, errors="replace") as f:
        logins = [x for x in f if re.search(r"pop3-login: .*Login: user=<bob>", x)]
    h.check(len(logins) == 1 and ", TLS," in logins[0], "bob's pop3:// login was not over STLS", logins)
    alice1 = assert_pop3_matches(st, dc, "alice", "pop")
    bob1 = assert_pop3_matches(st, dc, "bob", "stls")
    carol1 = assert_pop3_matches(st, dc, "carol", "keep")
    h.check(len(alice1) == 19 and len(bob1) == 14 and len(carol1) == 8, "message counts",
            len(alice1), len(bob1), len(carol1))
    dots = [r for r in alice1.values() if r["message_id"] in ("dots@test", "dotty@test")]
    h.check(len(dots) == 2, "dot-stuffed messages", [r["message_id"] for r in alice1.values()])
    h.check({r["message_id"]: r["subject"] for r in dots} == {"dots@test": "dots",
                                                              "dotty@test": "dotty bare lf"},
            "subjects", [(r["message_id"], r["subject"]) for r in dots])
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)

    # 2. The server is as it was: nothing deleted, no \Seen, no DELE.
    h.check(server_state(dc, users) == before, "the sync changed the server")
    lines = pop3_log_lines(dc)
    h.check(lines, "no POP3 session in Dovecot's log")
    for line in lines:
        h.check("del=0/" in line, "a POP3 session deleted something", line.strip())

    # 3. No change, then new mail.
    snap = st.snapshot()
    sync(cfg, 0)
    h.check(st.snapshot() == snap, "a sync with nothing new changed the store")
    extra = [m.raw for m in mailgen.generate(3, seed=44)]
    dc.append("alice", "INBOX", extra)
    sync(cfg, 0)
    alice2 = assert_pop3_matches(st, dc, "alice", "pop")
    h.check(len(alice2) == len(alice1) + 3, "new mail count", len(alice2))
    for uidl, r in alice1.items():
        h.check(alice2[uidl]["id"] == r["id"] and alice2[uidl]["view_name"] == r["view_name"],
                "UIDL %s: row changed by the next sync" % uidl)

    # 4. Deleted upstream: trashed for alice; kept for carol (mirror_deletions = no).
    victims = sorted(alice2, key=uid_of)[1:3]
    content = {u: st.read(alice2[u]) for u in victims}
    dc.expunge("alice", "INBOX", [uid_of(u) for u in victims])
    dc.expunge("carol", "INBOX", carol[:2])
    sync(cfg, 0)
    alice3 = assert_pop3_matches(st, dc, "alice", "pop")
    h.check(set(alice3) == set(alice2) - set(victims), "alice after the expunge")
    syncs = {r["id"]: r for r in st.query("SELECT * FROM syncs")}
    trashed = {r["remote_id"]: r for r in st.messages("alice", "pop", "INBOX", h.TRASHED)}
    h.check(set(trashed) == set(victims), "trashed UIDLs", sorted(trashed), victims)
    for u, r in trashed.items():
        h.check(r["id"] == alice2[u]["id"], "UIDL %s: trashed row has a new id" % u)
        h.check(r["store_file"].startswith("trash/alice/pop/INBOX/"), "UIDL %s: trashed to %s" % (
            u, r["store_file"]))
        h.check(not os.path.exists(st.path(alice2[u]["store_file"])), "UIDL %s: still in cur/" % u)
        h.check(st.read(r) == content[u], "UIDL %s: trashed content changed" % u)
        h.check(r["trash_reason"] == "deleted on the POP3 server", "trash reason", r["trash_reason"])
        h.check(r["trash_sync"] in syncs and syncs[r["trash_sync"]]["account"] == "pop",
                "UIDL %s: trash_sync %r" % (u, r["trash_sync"]))
    kept = st.messages("carol", "keep", "INBOX", h.ACTIVE)
    h.check(len(kept) == 8 and not st.messages("carol", "keep", "INBOX", h.TRASHED),
            "mirror_deletions = no: carol's rows changed", len(kept))
    h.check(st.folder("carol", "keep", "INBOX")["held"] is None, "carol's folder shows a hold")
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)

    # 5. Wrong password: exit 1, clear message, nothing changed.
    bad_dir = os.path.join(ctx.tmp, "bad")
    os.mkdir(bad_dir, 0o700)
    wrong = "wrong-pop-password-4711"
    bad = [h.Account("alice", "pop", dc.url("pop3s"), "alice", wrong, ca_file=dc.ca_pem)]
    bad_cfg = h.write_config(os.path.join(bad_dir, "maildisk.conf"), ctx.store_dir(), bad)
    drop_folders(bad_cfg)
    snap = st.snapshot()
    server = server_state(dc, users)
    r = sync(bad_cfg, 1)
    h.check(re.search(r"alice/pop: login refused", r.err), "no clear login error", r.err)
    h.check(wrong not in r.text, "the password appears in the output")
    h.check(st.snapshot() == snap, "a failed login changed the store")
    h.check(server_state(dc, users) == server, "a failed login changed the server")

    # The good config still works, and the server still has everything.
    sync(cfg, 0)
    h.check(server_state(dc, users) == server, "the last sync changed the server")
    h.check(len(dc.uids("alice", "INBOX")) == 19 + 3 - 2, "alice's server mailbox")
    for line in pop3_log_lines(dc):
        h.check("del=0/" in line, "a POP3 session deleted something", line.strip())
    secrets = list(users.values()) + [wrong] + fake_part(ctx)
    for pw in secrets:
        h.check(not any(pw in text for text in OUTPUTS), "a password in maildisk's output")


if __name__ == "__main__":
    h.run(main, deadline=240)
