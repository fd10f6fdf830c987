#!/usr/bin/env python3
"""OAuth2 bearer tokens (oauth2_token_command) against Dovecot's oauth2 passdb.

Dovecot checks each token by POSTing it to a local introspection endpoint
(harness.TokenServer on 127.0.0.1, RFC 7662 answers) that knows one valid
token per server user; XOAUTH2 and OAUTHBEARER are offered beside PLAIN.

1. An imaps:// and a pop3s:// account whose oauth2_token_command is
   `/bin/echo TOKEN` sync completely (rows equal the server, bytes equal
   BODY.PEEK[] / RETR); Dovecot's log shows token logins (XOAUTH2 or
   OAUTHBEARER), never PLAIN, for those users, and the introspection
   endpoint saw exactly the valid tokens. `maildisk check` logs in too.
2. A wrong token: exit 1, the message says the server rejected the OAuth2
   token (IMAP: "rejected the OAuth2 token"), the store is unchanged.
3. A valid token of another user (login olga, token of pete): rejected too.
4. No token appears in any maildisk output or in Dovecot's log.
All of it three times: Dovecot offering XOAUTH2 and OAUTHBEARER (libcurl
7.88 then picks OAUTHBEARER), XOAUTH2 alone (as Outlook.com), OAUTHBEARER
alone; the login method in Dovecot's log must be one the server offered.
5. A server that offers no OAuth2 mechanism at all: exit 1, the account
   named, and no password login (AUTHENTICATE PLAIN or LOGIN, with an
   empty password) attempted in the token's place.
If Dovecot here cannot start with its oauth2 passdb, the test is skipped."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

TOKENS = {"tok-olga-6d2f9a41c3": "olga", "tok-olgapop-0b7e55d1a8": "olga-pop",
          "tok-pete-93c1e07b2f": "pete"}
TOKEN_OF = {u: t for t, u in TOKENS.items()}
WRONG = "tok-wrong-41f0c2aa97"


def token_account(user, name, url, login, token, ca, folders=("INBOX",)):
    """An account with oauth2_token_command = /bin/echo TOKEN (the harness
    would write a password_file: rewritten below)."""
    return h.Account(user, name, url, login, "unused", folders, ca,
                     extra={"oauth2_token_command": "/bin/echo %s" % token})


def write_token_config(ctx, accounts, name, store):
    """ctx.config, with each password_file line dropped (one secret only)."""
    path = ctx.config(accounts, name=name, store=store)
    with open(path) as f:
        lines = [x for x in f if not x.startswith("password_file =")]
    with open(path, "w") as f:
        f.write("".join(lines))
    for a in accounts:
        os.unlink(os.path.join(ctx.tmp, "%s-%s.pass" % (a.user, a.name)))
    return path


def token_logins(dc):
    """[(service, user, method)] of successful logins in Dovecot's log."""
    out = []
    with open(dc.log_path, errors="replace") as f:
        for line in f:
            m = re.search(r"(imap|pop3)-login: Info: Login: user=<([^>]*)>, method=([A-Z0-9-]+)", line)
            if m:
                out.append(m.groups())
    return out


def main(ctx):
    for mechs in ("xoauth2 oauthbearer", "xoauth2", "oauthbearer"):
        h.log("=== Dovecot offering %s" % mechs)
        ts = ctx.token_server(TOKENS)
        try:
            dc = ctx.dovecot(oauth2_url=ts.url, oauth2_mechanisms=mechs)
        except RuntimeError as e:
            raise h.Skip("Dovecot did not start with its oauth2 passdb: %s" % e)
        one_server(ctx, dc, ts, {m.upper() for m in mechs.split()}, mechs.replace(" ", "-"))
        dc.stop()
        ts.close()
    no_oauth2_server(ctx)


def no_oauth2_server(ctx):
    """5. Token accounts at a Dovecot without XOAUTH2 and OAUTHBEARER."""
    h.log("=== Dovecot offering no OAuth2 mechanism")
    dc = ctx.dovecot()
    dc.add_user("quinn", "pw-quinn-harness-only")      # never logged in by the harness
    dc.add_user("quinn-pop", "pw-quinnpop-harness-only")
    accounts = [
        token_account("quinn", "imap", dc.url("imaps"), "quinn", TOKEN_OF["olga"], dc.ca_pem),
        token_account("quinn", "pop", dc.url("pop3s"), "quinn-pop", TOKEN_OF["olga"], dc.ca_pem, ()),
    ]
    cfg = write_token_config(ctx, accounts, "no-oauth2.conf", ctx.store_dir("no-oauth2"))
    r = h.maildisk("sync", cfg, expect=1)
    for name in ("imap", "pop"):
        h.check(re.search(r"^quinn/%s: .*(OAuth2|XOAUTH2|OAUTHBEARER)" % name, r.out, re.M),
                "quinn/%s: no message about the OAuth2 login" % name, r.out)
    h.check(TOKEN_OF["olga"] not in r.text, "the token appears in maildisk's output")
    with open(dc.log_path, errors="replace") as f:
        tried = [x.strip() for x in f if re.search(r"user=<quinn(-pop)?>.*method=(PLAIN|LOGIN)", x)]
    # libcurl 7.88, given CURLOPT_XOAUTH2_BEARER and no password, falls back
    # to AUTHENTICATE PLAIN with an empty password when neither XOAUTH2 nor
    # OAUTHBEARER is offered; maildisk must not let it (a failed password
    # login counts against the account at many providers) and cannot then
    # claim that the token was rejected.
    h.check(not tried, "a token account attempted a password login at a server without OAuth2", tried)


def one_server(ctx, dc, ts, offered, tag):
    # passwd-file entries too: the harness's own checks (IMAP fetches,
    # POP3 RETR) log in with these passwords, maildisk only with tokens.
    msgs, _ = dc.populate({"olga": "pw-olga-harness-only", "olga-pop": "pw-olgapop-harness-only",
                           "pete": "pw-pete-harness-only"},
                          [("olga", "INBOX", 12), ("olga", "Archive", 4), ("olga-pop", "INBOX", 10)],
                          30, seed=404, max_size=80000)
    msgs = [m.raw for m in msgs]
    st = h.Store(ctx.store_dir(tag))
    run = h.Runs()
    outputs = run.outputs

    accounts = [
        token_account("olga", "imap", dc.url("imaps"), "olga", TOKEN_OF["olga"], dc.ca_pem,
                      ("INBOX", "Archive")),
        token_account("olga", "pop", dc.url("pop3s"), "olga-pop", TOKEN_OF["olga-pop"], dc.ca_pem, ()),
    ]
    cfg = write_token_config(ctx, accounts, "good-%s.conf" % tag, st.root)

    # 1. Both protocols sync with a token.
    r = run("sync", cfg)
    if r.rc != 0 and not ts.requests:
        raise h.Skip("maildisk's token login never reached Dovecot's oauth2 passdb: %s%s" % (
            r.err.strip(), dc.log_tail()))
    h.check(r.rc == 0, "sync with valid tokens exited %d" % r.rc, r.err.strip())
    h.assert_folder_matches(st, dc, "olga", "imap", "INBOX")
    h.assert_folder_matches(st, dc, "olga", "imap", "Archive")
    pop = h.assert_pop3_matches(st, dc, "olga", "pop", server_user="olga-pop")
    h.check(len(pop) == 10, "POP3 message count", len(pop))
    logins = [x for x in token_logins(dc) if x[1] in ("olga", "olga-pop")]
    mine = [x for x in logins if x[2] in ("XOAUTH2", "OAUTHBEARER")]
    h.check({(s, u) for s, u, _ in mine} == {("imap", "olga"), ("pop3", "olga-pop")},
            "no token login over IMAP and POP3 in Dovecot's log", logins)
    h.check({m for _, _, m in mine} <= offered, "a token login with a method not offered", mine, offered)
    h.log("token logins: %s" % sorted(set(mine)))
    h.check(set(ts.requests) == {TOKEN_OF["olga"], TOKEN_OF["olga-pop"]},
            "the introspection endpoint saw other tokens than the configured ones",
            len(ts.requests))
    r = run("check", cfg, expect=0)
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^(olga/\S+)\s+\S+\s+\S+\s+(ok|failed)\b", r.out, re.M)}
    h.check(rows == {"olga/imap": "ok", "olga/pop": "ok"}, "check with tokens", r.out)

    # New mail, so that a login that got through would change the store.
    dc.append("olga", "INBOX", msgs[26:28])
    dc.append("olga-pop", "INBOX", msgs[28:30])
    snap = st.snapshot()
    n_requests = len(ts.requests)

    # 2. A token the server does not know.
    for acct, proto in ((accounts[0], "IMAP"), (accounts[1], "POP3")):
        bad = token_account(acct.user, acct.name, acct.url, acct.login, WRONG, dc.ca_pem, acct.folders)
        bcfg = write_token_config(ctx, [bad], "wrong-%s-%s.conf" % (acct.name, tag), st.root)
        r = run("sync", bcfg, expect=1)
        # IMAP: "the server rejected the OAuth2 token"; POP3: "the POP3 server rejected ..."
        h.check(re.search(r"olga/%s: .*rejected the OAuth2 token" % acct.name, r.text),
                "%s, wrong token: the message does not say the token was rejected" % proto, r.text)
        h.check(st.snapshot() == snap, "%s: a rejected token changed the store" % proto)
        r = run("check", bcfg, expect=1)
        h.check(re.search(r"^olga/%s\s+%s\s+\S+\s+failed\b.*OAuth2 token" % (acct.name, proto), r.out, re.M),
                "%s: check does not show the rejected token" % proto, r.out)
    h.check(ts.requests[n_requests:].count(WRONG) >= 2, "the wrong token never reached the endpoint",
            len(ts.requests) - n_requests)

    # 3. A valid token, but another user's: Dovecot must refuse it.
    other = token_account("olga", "imap", dc.url("imaps"), "olga", TOKEN_OF["pete"], dc.ca_pem,
                          ("INBOX", "Archive"))
    ocfg = write_token_config(ctx, [other], "other-user-%s.conf" % tag, st.root)
    r = run("sync", ocfg, expect=1)
    h.check("rejected the OAuth2 token" in r.text, "another user's token: no clear message", r.text)
    h.check(st.snapshot() == snap, "another user's token changed the store")

    # The good config still works, and gets the new mail.
    run("sync", cfg, expect=0)
    h.assert_folder_matches(st, dc, "olga", "imap", "INBOX")
    h.assert_pop3_matches(st, dc, "olga", "pop", server_user="olga-pop")
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)

    # 4. No token anywhere.
    r = run("status", cfg, expect=0)
    with open(dc.log_path, errors="replace") as f:
        dlog = f.read()
    for tok in list(TOKENS) + [WRONG]:
        h.check(not any(tok in t for t in outputs), "a token appears in maildisk's output")
        h.check(tok not in dlog, "a token appears in Dovecot's log")


if __name__ == "__main__":
    h.run(main, deadline=180)
