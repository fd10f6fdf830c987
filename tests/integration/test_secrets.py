#!/usr/bin/env python3
"""Secrets and config errors, against a real Dovecot.

1. Files holding secrets that others could read are refused with exit 2
   and a message naming the file and the fix, by sync, check and status:
   a password_file readable by others (0644) or by the group (0640), a
   password_file owned by another user, a config holding `password =`
   readable by others or the group; a config others could write, or owned
   by another user, is refused too (its commands would run as us).
2. `password = ` in a 0600 config and `password_command = /bin/cat FILE`
   both work.
3. password_command failing (non-zero exit, not found, empty output):
   exit 1, a message naming the account and the command; the good account
   in the same config is synced in the same run; status shows the errors.
4. Each malformed config case (unknown key, bad url, two secrets, missing
   login, bad number, tls = off on imaps://, and more from fs/config*.c's
   error set) gives one line "FILE:LINE: KEY: message" and exit 2, and
   creates no store.
5. Every test password and token is searched for in everything maildisk
   printed (stdout and stderr of every run, one of them with -v), in
   `maildisk status`, in Dovecot's log and in the store's files (index.db
   with its WAL, which keeps the error texts): none may appear."""
import os
import pwd
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PW = {"sam": "Pw-sam-e0f4b7a2", "sam-pop": "Pw-sampop-19c3d8ee", "tina": "Pw-tina-6a5b0c91"}
WRONG = "Pw-wrong-tina-2e8d"
URL_PW = "Pw-in-url-55aa01"         # a password written into a url: refused, never echoed
SEMI_PW = "Pw-semi-7733 ;after"     # " ;" would cut an inline password: refused, never echoed
OTHER = ["Pw-open-file-0d1c", "Pw-group-file-3f3f", "Pw-foreign-file-8c8c", "Pw-open-conf-4b4b",
         "Pw-group-conf-9e9e"]


write = h.write_file


def nobody():
    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return 65534


class Conf:
    """A config assembled from sections, so that line numbers are known."""

    def __init__(self, store):
        self.lines = ["[store]", "path = %s" % store, "", "[user sam]", "uid = root", ""]

    def account(self, name, url, login, ca=None, **keys):
        self.lines.append("[account sam/%s]" % name)
        self.lines += ["url = %s" % url, "login = %s" % login]
        for k, v in keys.items():
            self.lines.append("%s = %s" % (k, v))
        if ca:
            self.lines.append("ca_file = %s" % ca)
        self.lines.append("")
        return self

    def line_of(self, prefix, nth=0):
        hits = [i + 1 for i, x in enumerate(self.lines) if x.startswith(prefix)]
        return hits[nth]

    def text(self):
        return "\n".join(self.lines) + "\n"

    def write(self, path, mode=0o600):
        return write(path, self.text(), mode)


def main(ctx):
    dc = ctx.dovecot()
    msgs, _ = dc.populate(PW, [("sam", "INBOX", 8), ("sam-pop", "INBOX", 6), ("tina", "INBOX", 4)],
                          24, seed=777, max_size=40000)
    msgs = [m.raw for m in msgs]
    store = ctx.store_dir()
    st = h.Store(store)
    secrets_dir = os.path.join(ctx.tmp, "secrets")
    os.mkdir(secrets_dir, 0o700)
    run = h.Runs()
    outputs = run.outputs
    messages = []        # (case, the line the user saw), for the report

    def pwfile(name, secret, mode=0o600):
        return write(os.path.join(secrets_dir, name), secret + "\n", mode)

    sam_pw = pwfile("sam.pass", PW["sam"])

    def base(name="work", **keys):
        keys = keys or {"password_file": sam_pw}
        return Conf(store).account(name, dc.url("imaps"), "sam", dc.ca_pem, **keys)

    # 1. Readable secrets and unsafe configs: exit 2, file named, fix given.
    perm_cases = []
    for label, mode, secret in (("password_file 0644", 0o644, OTHER[0]), ("password_file 0640", 0o640, OTHER[1])):
        f = pwfile("open-%o.pass" % mode, secret, mode)
        c = base(password_file=f)
        perm_cases.append((label, c.write(os.path.join(ctx.tmp, "open-%o.conf" % mode)),
                           r"%s:%d: password_file: %s is open to group or others \(mode %04o\); run: chmod 600 %s$" % (
                               "{cfg}", c.line_of("password_file"), re.escape(f), mode, re.escape(f))))
    foreign = pwfile("foreign.pass", OTHER[2])
    os.chown(foreign, nobody(), -1)
    c = base(password_file=foreign)
    perm_cases.append(("password_file owned by another user", c.write(os.path.join(ctx.tmp, "foreign.conf")),
                       r"%s:%d: password_file: %s is owned by uid %d, expected uid 0 or root; run: chown 0 %s$" % (
                           "{cfg}", c.line_of("password_file"), re.escape(foreign), nobody(), re.escape(foreign))))
    for label, mode, secret in (("config with password = 0644", 0o644, OTHER[3]),
                                ("config with password = 0640", 0o640, OTHER[4])):
        cfg = base(password=secret).write(os.path.join(ctx.tmp, "inline-%o.conf" % mode), mode)
        perm_cases.append((label, cfg, r"{cfg}: holds a password but is readable by others \(mode %04o\); "
                                       r"run: chmod 600 {cfg}$" % mode))
    cfg = base().write(os.path.join(ctx.tmp, "writable.conf"), 0o666)
    perm_cases.append(("config writable by others", cfg,
                       r"{cfg}: writable by others \(mode 0666\), who could make it run any command; "
                       r"run: chmod go-w {cfg}$"))
    cfg = base().write(os.path.join(ctx.tmp, "foreign-owner.conf"))
    os.chown(cfg, nobody(), -1)
    perm_cases.append(("config owned by another user", cfg,
                       r"{cfg}: owned by uid %d, expected uid 0 or root, since its commands run as uid 0; "
                       r"run: chown 0 {cfg}$" % nobody()))
    for label, cfg, pattern in perm_cases:
        want = "^maildisk: " + pattern.replace("{cfg}", re.escape(cfg))
        for cmd in ("sync", "check", "status"):
            r = run(cmd, cfg, expect=2)
            h.check(re.search(want, r.err, re.M), "%s (%s): message %r does not match %r" % (
                label, cmd, r.err.strip(), want))
        messages.append((label, r.err.strip()))
        h.check(not os.path.exists(store), "%s: a store was created" % label)

    # 2. Inline password (0600 config) and password_command both work.
    inline = base(password=PW["sam"]).write(os.path.join(ctx.tmp, "inline-ok.conf"))
    run("sync", inline, expect=0)
    h.assert_folder_matches(st, dc, "sam", "work", "INBOX")
    pop_pw = pwfile("sam-pop.pass", PW["sam-pop"])
    good = (base(password_command="/bin/cat %s" % sam_pw)
            .account("pop", dc.url("pop3s"), "sam-pop", dc.ca_pem, password_command="/bin/cat '%s'" % pop_pw))
    good_cfg = good.write(os.path.join(ctx.tmp, "command.conf"))
    dc.append("sam", "INBOX", msgs[18:20])
    run("sync", good_cfg, expect=0)
    h.assert_folder_matches(st, dc, "sam", "work", "INBOX")
    h.assert_pop3_matches(st, dc, "sam", "pop", server_user="sam-pop")

    # 3. Failing password commands beside a good account.
    dc.append("sam", "INBOX", msgs[20:22])
    tina_pw = pwfile("tina.pass", PW["tina"])
    mixed = (base(password_command="/bin/cat %s" % sam_pw)
             .account("false", dc.url("imaps"), "tina", dc.ca_pem, password_command="/bin/false")
             .account("missing", dc.url("imaps"), "tina", dc.ca_pem,
                      password_command="/nonexistent/pass-helper show tina")
             .account("silent", dc.url("imaps"), "tina", dc.ca_pem, password_command="/bin/true")
             .account("tina", dc.url("imaps"), "tina", dc.ca_pem, password_file=tina_pw))
    mixed_cfg = mixed.write(os.path.join(ctx.tmp, "mixed.conf"))
    r = run("sync", mixed_cfg, expect=1)
    expect_err = {
        "false": "sam/false: password_command /bin/false: exited with status 1",
        "missing": "sam/missing: password_command /nonexistent/pass-helper: cannot run: No such file or directory",
        "silent": "sam/silent: password_command /bin/true: printed nothing",
    }
    for name, text in expect_err.items():
        h.check(re.search(r"^maildisk: %s$" % re.escape(text), r.err, re.M),
                "failing password_command %s: stderr lacks %r" % (name, text), r.err)
        messages.append(("password_command fails (%s)" % name, "maildisk: " + text))
    h.check(not re.search(r"^sam/(work|tina): ", r.out, re.M), "the good accounts report errors", r.out)
    h.assert_folder_matches(st, dc, "sam", "work", "INBOX")
    h.assert_folder_matches(st, dc, "sam", "tina", "INBOX", server_user="tina")
    r = run("status", mixed_cfg, expect=0)
    for name, text in expect_err.items():
        h.check(re.search(r"^sam/%s\s.*ERROR: %s$" % (name, re.escape(text)), r.out, re.M),
                "status does not show sam/%s's error" % name, r.out)
    h.check(not re.search(r"^sam/(work|tina)\s.*ERROR", r.out, re.M), "status shows errors for good accounts", r.out)

    # 4. Malformed configs: FILE:LINE: KEY: message, exit 2, no store.
    bad_store = os.path.join(ctx.tmp, "never-created")

    def bconf(**keys):
        keys = keys or {"password_file": sam_pw}
        return Conf(bad_store).account("work", "imaps://127.0.0.1:993", "sam", **keys)

    cases = []    # (name, Conf, line, key, words the message must hold)

    def at_key(name, key, words, **keys):
        """A case whose message is about key, at key's own line."""
        c = bconf(**keys)
        cases.append((name, c, c.line_of(key), key, words))

    def replaced(name, at, line, key, words):
        """A case whose line that starts with at is replaced by line."""
        c = bconf()
        c.lines[c.line_of(at) - 1] = line
        cases.append((name, c, c.line_of(at), key, words))

    def appended(name, line, key, words):
        """A case whose last line is line."""
        c = bconf()
        c.lines.append(line)
        cases.append((name, c, len(c.lines), key, words))

    at_key("unknown key", "colour", "unknown key in [account sam/work]", password_file=sam_pw, colour="blue")
    replaced("bad url (scheme)", "url", "url = imaps//127.0.0.1", "url", "unknown scheme")
    replaced("bad url (port)", "url", "url = imaps://127.0.0.1:99999", "url", "bad port")
    replaced("bad url (path)", "url", "url = imaps://127.0.0.1/INBOX", "url", "nothing may follow HOST[:PORT]")
    replaced("bad url (user:password@)", "url", "url = imaps://sam:%s@127.0.0.1" % URL_PW, "url",
             "holds a user or password")
    c = bconf(password_file=sam_pw, password_command="/bin/cat %s" % sam_pw)
    cases.append(("two secrets", c, c.line_of("password_command"), "password_command",
                  "password_file is already given at line %d" % c.line_of("password_file")))
    c = bconf()
    del c.lines[c.line_of("login") - 1]
    cases.append(("missing login", c, c.line_of("[account"), "login", "missing in [account sam/work]"))
    c = bconf()
    del c.lines[c.line_of("password_file") - 1]
    cases.append(("no secret", c, c.line_of("[account"), "[account sam/work]", "no secret"))
    at_key("bad number (timeout)", "timeout", "whole number of seconds", password_file=sam_pw, timeout="5s")
    at_key("number out of range (interval)", "interval", "from 10 to 604800",
           password_file=sam_pw, interval="1")
    c = bconf()
    c.lines[1:1] = ["trash_days = lots"]
    cases.append(("bad number (trash_days)", c, 2, "trash_days", "whole number of days"))
    c = bconf()
    c.lines += ["[sync]", "workers = 0"]
    cases.append(("bad number (workers)", c, c.line_of("workers"), "workers", "from 1 to 64"))
    at_key("tls = off on imaps", "tls", "off is not possible with imaps://", password_file=sam_pw, tls="off")
    c = Conf(bad_store).account("pop", "pop3s://127.0.0.1", "sam", password_file=sam_pw, folders="INBOX")
    cases.append(("folders on pop3s", c, c.line_of("folders"), "folders", "POP3 has one mailbox"))
    at_key("bad yes/no", "mirror_deletions", "expected yes or no",
           password_file=sam_pw, mirror_deletions="sometimes")
    at_key("bad fraction", "mass_delete_limit", "percentage", password_file=sam_pw, mass_delete_limit="150%")
    at_key("unterminated quote", "password_command", "unterminated quote",
           password_command="/bin/cat '%s" % sam_pw)
    at_key("inline password with ' ;'", "password", "put it in a password_file", password=SEMI_PW)
    at_key("relative password_file", "password_file", "not an absolute path", password_file="secrets/sam.pass")
    at_key("missing password_file", "password_file", "No such file", password_file="/nonexistent/sam.pass")
    at_key("missing ca_file", "ca_file", "No such file", password_file=sam_pw, ca_file="/nonexistent/ca.pem")
    appended("key given twice", "login = twice", "login", "given twice")
    replaced("undeclared user", "[account", "[account carol/work]", "[account carol/work]", "user carol is not declared")
    appended("unknown section", "[colour]", "[colour]", "unknown section")
    replaced("unknown local user", "uid", "uid = no-such-local-user-x", "uid", "no local account named")
    appended("line without =", "this line is not a setting", None, "expected KEY = VALUE")

    required = {"unknown key", "bad url (scheme)", "two secrets", "missing login", "bad number (timeout)",
                "tls = off on imaps"}
    for i, (name, c, line, key, words) in enumerate(cases):
        cfg = c.write(os.path.join(ctx.tmp, "bad-%02d.conf" % i))
        want = r"^maildisk: %s:%d: %s" % (re.escape(cfg), line, re.escape(key) + ": " if key else "")
        for cmd in (("sync", "check", "status") if name in required else ("sync",)):
            r = run(cmd, cfg, expect=2)
            lines = r.err.strip().splitlines()
            h.check(len(lines) == 1, "%s (%s): expected one line, got %r" % (name, cmd, r.err))
            h.check(re.match(want, lines[0]), "%s (%s): %r does not start with %r" % (name, cmd, lines[0], want))
            h.check(words in lines[0], "%s (%s): %r does not say %r" % (name, cmd, lines[0], words))
        messages.append((name, lines[0]))
        h.check(not os.path.exists(bad_store), "%s: the store was created" % name)

    # 5. One verbose sync with a wrong password among good accounts, then grep.
    verbose = (base(password_command="/bin/cat %s" % sam_pw)
               .account("pop", dc.url("pop3s"), "sam-pop", dc.ca_pem, password_file=pop_pw)
               .account("tina", dc.url("imap"), "tina", dc.ca_pem,
                        password_file=pwfile("wrong.pass", WRONG)))
    vcfg = verbose.write(os.path.join(ctx.tmp, "verbose.conf"))
    dc.append("sam", "INBOX", msgs[22:24])
    r = run("sync", vcfg, "-v", expect=1)
    h.check(re.search(r"sam/tina: login refused", r.text), "verbose run: no login error for sam/tina", r.err)
    h.assert_folder_matches(st, dc, "sam", "work", "INBOX")
    run("check", vcfg, expect=1)
    run("status", vcfg, expect=0)
    run("trash", vcfg, "list", expect=0)

    secrets = list(PW.values()) + [WRONG, URL_PW, SEMI_PW, SEMI_PW.split(" ;")[0]] + OTHER
    with open(dc.log_path, "rb") as f:
        dlog = f.read()
    store_bytes = []
    for dp, _, fns in os.walk(store):
        for fn in fns:
            if fn.startswith("index.db"):
                with open(os.path.join(dp, fn), "rb") as f:
                    store_bytes.append((fn, f.read()))
    h.check(store_bytes, "no index.db to search")
    for s in secrets:
        for i, text in enumerate(outputs):
            h.check(s not in text, "a test password appears in the output of maildisk run %d" % i)
        h.check(s.encode() not in dlog, "a test password appears in Dovecot's log")
        for fn, data in store_bytes:
            h.check(s.encode() not in data, "a test password appears in the store's %s" % fn)
    h.log("%d maildisk runs, Dovecot's log and %d index files searched for %d secrets: none found" % (
        len(outputs), len(store_bytes), len(secrets)))
    h.log("messages seen:\n" + "\n".join("  %-34s %s" % m for m in messages))


if __name__ == "__main__":
    h.run(main, deadline=240)
