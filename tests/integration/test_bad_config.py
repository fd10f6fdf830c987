#!/usr/bin/env python3
"""Config and usage errors: exit 2, a message in "FILE:LINE: KEY: ..." form,
and nothing created on disk. No server is needed."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


write = h.write_file


def main(ctx):
    store = ctx.store_dir()
    pw = write(os.path.join(ctx.tmp, "pw"), "secret\n")
    head = "[store]\npath = %s\ntrash_days = 30\n\n[user alice]\nuid = root\n\n" % store
    acct = ("[account alice/work]\nurl = imaps://127.0.0.1:1\nlogin = alice\n"
            "password_file = %s\nfolders = INBOX\n" % pw)
    # (name, text, line, key); line counts from 1 in the text.
    cases = [
        ("bad-number", "[store]\npath = %s\ntrash_days = banana\n" % store, 3, "trash_days"),
        ("negative-timeout", head + acct + "timeout = -5\n", 13, "timeout"),
        ("bad-scheme", head + acct.replace("imaps://", "ftp://"), 9, "url"),
        ("unknown-key", "[store]\npath = %s\ncolour = blue\n" % store, 3, "colour"),
        ("no-equals", "[store]\npath = %s\nthis line is not a setting\n" % store, 3, None),
    ]
    for name, text, line, key in cases:
        cfg = write(os.path.join(ctx.tmp, name + ".conf"), text)
        want = re.escape(cfg) + ":%d:" % line + (r" ?%s\b" % re.escape(key) if key else "")
        for cmd in ("sync", "check"):
            r = h.maildisk(cmd, cfg, expect=2)
            h.check(re.search(want, r.err), "%s (%s): stderr lacks %r" % (name, cmd, want.replace("\\", "")))
        h.check(not os.path.exists(store), "%s: the store was created despite a config error" % name)

    # Secrets readable by others are refused.
    cfg = write(os.path.join(ctx.tmp, "open-config.conf"),
                head + acct.replace("password_file = %s" % pw, "password = secret"), 0o644)
    r = h.maildisk("sync", cfg, expect=2)
    h.check(cfg in r.err, "a 0644 config with a password: the error does not name the file")
    open_pw = write(os.path.join(ctx.tmp, "open-pw"), "secret\n", 0o644)
    cfg = write(os.path.join(ctx.tmp, "open-pwfile.conf"), head + acct.replace(pw, open_pw))
    # Refused at load (2) or when the account is used (1); either way named.
    r = h.maildisk("sync", cfg, expect=(1, 2))
    h.check(open_pw in r.err, "a 0644 password_file: the error does not name it")
    h.check("secret" not in r.text, "a password appeared in the output")
    h.check(not os.path.exists(store), "the store was created despite a config error")

    # A missing config file and usage errors.
    missing = os.path.join(ctx.tmp, "does-not-exist.conf")
    r = h.maildisk("sync", missing, expect=2)
    h.check(missing in r.err, "a missing config: the error does not name the file")
    good = write(os.path.join(ctx.tmp, "good.conf"), head + acct)
    h.maildisk("sync", good, "--no-such-option", expect=2)
    h.maildisk("frobnicate", good, expect=2)
    h.maildisk("trash", good, "restore", expect=2)            # restore needs an ID
    h.maildisk("trash", good, "restore", "not-a-number", expect=2)
    h.maildisk("sync", good, "nobody/nothing", expect=2)      # no such account
    h.check(not os.path.exists(store) or not h.Store(store).messages(), "usage errors synced something")


if __name__ == "__main__":
    h.run(main, deadline=120)
