#!/usr/bin/env python3
"""`maildisk check`: tries every account's login and folder list and prints
a table (account, protocol, TLS, login, folders found, error).

1. An imaps:// account, an imap:// account (STARTTLS), a pop3s:// account,
   a pop3:// account (STLS) and an imaps:// account with a wrong password:
   one row per account, in config order, with the right protocol and TLS
   column; the IMAP rows count the folders the server lists, the POP3 rows
   say "1 (N)" with N the messages in the mailbox; the wrong password's row
   says failed with a login error naming the account; exit 1.
2. Without the bad account: every row ok, exit 0.
3. A pop3s:// account with a wrong password fails too; a server that is
   down gives a connection error; a failing password_command is reported
   in the table, not as a crash.
4. check changes nothing: no store rows, the server's flags and UIDs as
   they were (no \\Seen from the POP3 session), no password in the output."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PW = {"chris": "Pw-chris-1a2b3c", "chris-st": "Pw-chrisst-4d5e6f", "chris-pop": "Pw-chrispop-7a8b9c"}
WRONG = "Pw-wrong-chris-0f0f0f"
ROW = re.compile(r"^(\S+/\S+)\s+(IMAP|POP3)\s+(implicit|STARTTLS|OFF)\s+(ok|failed)\s+"
                 r"(-|\d+(?: \(\d+\))?)\s*(.*)$")


def table(out):
    """[(account, proto, tls, login, folders, error)] from check's stdout."""
    lines = out.splitlines()
    h.check(any(re.match(r"^ACCOUNT\s+PROTO\s+TLS\s+LOGIN\s+FOLDERS\s+ERROR\s*$", x) for x in lines),
            "no table header", out)
    rows = []
    for line in lines:
        m = ROW.match(line)
        if m:
            rows.append(tuple(g.strip() for g in m.groups()))
    return rows


def main(ctx):
    dc = ctx.dovecot()
    # Projects.2026: Maildir++ separator, a subfolder
    dc.populate(PW, [("chris", "INBOX", 5), ("chris", "Archive", 2), ("chris", "Projects.2026", 1),
                     ("chris-st", "INBOX", 3), ("chris-pop", "INBOX", 7)],
                20, seed=1212, max_size=30000)
    server_before = {u: (dc.uids(u, "INBOX"), dc.flags(u, "INBOX")) for u in PW}
    n_chris = len(dc.folders("chris"))
    n_st = len(dc.folders("chris-st"))
    run = h.Runs()
    outputs = run.outputs

    good = [
        h.Account("chris", "imaps", dc.url("imaps"), "chris", PW["chris"], ["*"], dc.ca_pem),
        h.Account("chris", "starttls", dc.url("imap"), "chris-st", PW["chris-st"], ["INBOX"], dc.ca_pem),
        h.Account("chris", "pop3s", dc.url("pop3s"), "chris-pop", PW["chris-pop"], (), dc.ca_pem),
        h.Account("chris", "stls", dc.url("pop3"), "chris-pop", PW["chris-pop"], (), dc.ca_pem),
    ]
    bad = h.Account("chris", "badpw", dc.url("imaps"), "chris", WRONG, ["INBOX"], dc.ca_pem)

    # 1. Four good accounts and one with a wrong password.
    cfg = ctx.config(good + [bad], name="mixed.conf")
    r = run("check", cfg, expect=1)
    h.check(re.search(r"^config %s: ok \(1 users, 5 accounts\)$" % re.escape(cfg), r.out, re.M),
            "no config summary line", r.out)
    rows = table(r.out)
    want = [
        ("chris/imaps", "IMAP", "implicit", "ok", str(n_chris), ""),
        ("chris/starttls", "IMAP", "STARTTLS", "ok", str(n_st), ""),
        ("chris/pop3s", "POP3", "implicit", "ok", "1 (7)", ""),
        ("chris/stls", "POP3", "STARTTLS", "ok", "1 (7)", ""),
    ]
    h.check(rows[:4] == want, "rows of the good accounts", rows[:4], want)
    h.check(len(rows) == 5, "one row per account", rows)
    acct, proto, tls, login, folders, error = rows[4]
    h.check((acct, proto, tls, login, folders) == ("chris/badpw", "IMAP", "implicit", "failed", "-"),
            "the wrong password's row", rows[4])
    h.check(re.match(r"chris/badpw: login refused by the server", error), "the wrong password's error", error)
    # STARTTLS really happened: every login of chris-st was over TLS.
    with open(dc.log_path, errors="replace") as f:
        logins = [x for x in f if re.search(r"-login: Info: Login: user=<chris-(st|pop)>", x)]
    h.check(logins and all(", TLS" in x for x in logins), "a check login was not over TLS", logins)

    # 2. All good: exit 0.
    cfg_ok = ctx.config(good, name="good.conf")
    r = run("check", cfg_ok, expect=0)
    h.check(table(r.out) == want, "all-good table", table(r.out))

    # 3. More failures, each in its row.
    down = h.free_port()
    more = [
        h.Account("chris", "pop-badpw", dc.url("pop3s"), "chris-pop", WRONG, (), dc.ca_pem),
        h.Account("chris", "down", "imaps://127.0.0.1:%d" % down, "chris", PW["chris"], ["INBOX"], dc.ca_pem,
                  timeout=5),
        h.Account("chris", "nocmd", dc.url("imaps"), "chris", "unused", ["INBOX"], dc.ca_pem),
    ]
    cfg_more = ctx.config(good[:1] + more, name="more.conf")
    with open(cfg_more) as f:
        text = f.read()
    nocmd_pw = os.path.join(ctx.tmp, "chris-nocmd.pass")
    text = text.replace("password_file = %s" % nocmd_pw, "password_command = /bin/false")
    with open(cfg_more, "w") as f:
        f.write(text)
    r = run("check", cfg_more, expect=1)
    rows = {x[0]: x for x in table(r.out)}
    h.check(set(rows) == {"chris/imaps", "chris/pop-badpw", "chris/down", "chris/nocmd"}, "rows", rows)
    h.check(rows["chris/imaps"][3] == "ok", "the good account failed", rows["chris/imaps"])
    h.check(rows["chris/pop-badpw"][1:5] == ("POP3", "implicit", "failed", "-") and
            re.match(r"chris/pop-badpw: login refused by the POP3 server", rows["chris/pop-badpw"][5]),
            "POP3 wrong password row", rows["chris/pop-badpw"])
    h.check(rows["chris/down"][3] == "failed" and
            re.match(r"chris/down: cannot connect to the server", rows["chris/down"][5]),
            "server down row", rows["chris/down"])
    h.check(rows["chris/nocmd"][3] == "failed" and
            rows["chris/nocmd"][5] == "chris/nocmd: password_command /bin/false: exited with status 1",
            "failing password_command row", rows["chris/nocmd"])

    # 4. check changed nothing.
    st = h.Store(ctx.store_dir())
    h.check(not st.messages(), "check stored messages")
    h.check({u: (dc.uids(u, "INBOX"), dc.flags(u, "INBOX")) for u in PW} == server_before,
            "check changed the server")
    for pw in list(PW.values()) + [WRONG]:
        h.check(not any(pw in t for t in outputs), "a password appears in check's output")


if __name__ == "__main__":
    h.run(main, deadline=150)
