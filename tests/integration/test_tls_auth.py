#!/usr/bin/env python3
"""TLS and authentication.

- imap:// upgrades with STARTTLS (Dovecot's log shows the login was TLS).
- A wrong password: exit 1, an error about authentication/login, the store
  unchanged, and no password in any output.
- A CA that did not sign the server's certificate (imaps:// and STARTTLS):
  exit 1, an error about the certificate, the store unchanged.
- `maildisk check` succeeds on a good config and fails on a wrong password.
Not tested: imap:// against a server that offers no STARTTLS (Dovecot
always offers it once ssl is on; the fake-server suite covers it)."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

GOOD_PW = "Good-Pw-7c1e"
BAD_PW = "Wrong-Pw-93af"


def main(ctx):
    dc = ctx.dovecot()
    # alice-st: only ever used by maildisk over STARTTLS
    msgs, _ = dc.populate({"alice-st": GOOD_PW, "alice": GOOD_PW},
                          [("alice-st", "INBOX", 20), ("alice", "INBOX", 10)], 40, seed=51, max_size=50000)
    st = h.Store(ctx.store_dir())
    run = h.Runs()
    outputs = run.outputs

    # STARTTLS on the imap port.
    starttls = h.Account("alice", "st", dc.url("imap"), "alice-st", GOOD_PW, ["INBOX"], dc.ca_pem)
    imaps = h.Account("alice", "work", dc.url("imaps"), "alice", GOOD_PW, ["INBOX"], dc.ca_pem)
    good = ctx.config([starttls, imaps], name="good.conf")
    run("check", good, expect=0)
    run("sync", good, expect=0)
    h.assert_folder_matches(st, dc, "alice", "st", "INBOX", server_user="alice-st")
    h.assert_folder_matches(st, dc, "alice", "work", "INBOX")
    with open(dc.log_path, errors="replace") as f:
        logins = [l for l in f if "imap-login: Info: Login: user=<alice-st>" in l]
    h.check(logins, "no login of alice-st in the Dovecot log")
    # Dovecot logs "TLS" for a TLS login and "secured" for plaintext on loopback.
    h.check(all(", TLS, " in l for l in logins),
            "a login over imap:// did not use TLS", logins)

    # New mail upstream, so that any sync that got through would change the store.
    dc.append("alice-st", "INBOX", [m.raw for m in msgs[30:35]])
    dc.append("alice", "INBOX", [m.raw for m in msgs[35:40]])
    snap = st.snapshot()

    # Wrong password.
    for acct in (starttls, imaps):
        bad = h.Account(acct.user, acct.name, acct.url, acct.login, BAD_PW, ["INBOX"], dc.ca_pem)
        cfg = ctx.config([bad], name="badpw-%s.conf" % acct.name)
        r = run("sync", cfg, expect=1)
        h.check(re.search(r"auth|login", r.text, re.I), "wrong password: no error about authentication")
        h.check("alice/" + acct.name in r.text, "wrong password: the error does not name the account")
        h.check(st.snapshot() == snap, "wrong password changed the store")
        r = run("check", cfg)
        h.check(r.rc != 0, "check passed with a wrong password")
        h.check(re.search(r"auth|login", r.text, re.I), "check: no error about authentication")

    # A CA that did not sign the server certificate.
    other_ca, _ = h.make_ca(ctx.tmp, "other")
    for acct in (starttls, imaps):
        bad = h.Account(acct.user, acct.name, acct.url, acct.login, GOOD_PW, ["INBOX"], other_ca)
        cfg = ctx.config([bad], name="badca-%s.conf" % acct.name)
        r = run("sync", cfg, expect=1)
        h.check(re.search(r"certif", r.text, re.I), "foreign CA (%s): no error about the certificate" % acct.url)
        h.check(st.snapshot() == snap, "foreign CA changed the store")

    # The good config still works afterwards.
    run("sync", good, expect=0)
    h.assert_folder_matches(st, dc, "alice", "st", "INBOX", server_user="alice-st")
    h.assert_folder_matches(st, dc, "alice", "work", "INBOX")

    for text in outputs:
        h.check(GOOD_PW not in text and BAD_PW not in text, "a password appeared in maildisk's output")
    h.log("skipped: imap:// against a server without STARTTLS (Dovecot always offers it)")


if __name__ == "__main__":
    h.run(main, deadline=200)
