#!/usr/bin/env python3
"""`maildisk status --json`: the facts of `maildisk status` for monitoring.

1. Two accounts of one user, one with a wrong password, synced once: valid
   JSON; the store path, not mounted (pid null); the accounts in config
   order; per folder the messages and trashed counts equal the index's rows
   and synced_at is set; the good account has no error, the bad one its
   login error and no folders; "ok" is false.
2. A message expunged upstream: trashed 1 after the next sync. Without the
   bad account every error is null and "ok" is true.
3. Deletions held (the whole folder emptied upstream): that folder's "held"
   says why and "ok" is false again.
4. A folder with a non-ASCII name comes out as the same UTF-8 text."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402


def status(conf):
    r = h.maildisk("status", conf, "--json", expect=0)
    try:
        return json.loads(r.out)
    except ValueError as e:
        raise h.Failure("status --json is not JSON: %s" % e, r.out)


def counts(store, user, account):
    out = {}
    for f in store.query("SELECT * FROM folders WHERE user = ? AND account = ?", user, account):
        rows = store.messages(user, account, f["name"])
        out[f["name"]] = (sum(1 for m in rows if m["state"] != h.TRASHED),
                          sum(1 for m in rows if m["state"] == h.TRASHED))
    return out


def check_counts(doc, store):
    for a in doc["accounts"]:
        got = {f["name"]: (f["messages"], f["trashed"]) for f in a["folders"]}
        want = counts(store, a["user"], a["account"])
        h.check(got == want, "%s/%s folder counts" % (a["user"], a["account"]), got, want)


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("dora", "pw-dora")
    msgs = [m.raw for m in mailgen.generate(12, seed=1313, max_size=20000)]
    dc.append("dora", "INBOX", msgs[:6])
    dc.append("dora", "Ärchiv", msgs[6:9])
    good = h.Account("dora", "work", dc.url("imaps"), "dora", "pw-dora", ["INBOX", "Ärchiv"], dc.ca_pem)
    bad = h.Account("dora", "old", dc.url("imaps"), "dora", "pw-wrong", ["INBOX"], dc.ca_pem)
    conf = ctx.config([good, bad])
    store = h.Store(ctx.store_dir())

    # 1.
    h.maildisk("sync", conf, expect=1)
    doc = status(conf)
    h.check(doc["store"] == ctx.store_dir(), "store path", doc["store"])
    h.check(doc["mounted"] is False and doc["pid"] is None, "not mounted", doc)
    h.check([(a["user"], a["account"]) for a in doc["accounts"]] == [("dora", "work"), ("dora", "old")],
            "accounts in config order", doc["accounts"])
    work, old = doc["accounts"]
    h.check(work["url"] == good.url and work["error"] is None, "the good account", work)
    h.check(isinstance(work["last_sync_finished"], int) and work["last_sync_started"] <= work["last_sync_finished"],
            "the good account's sync times", work)
    h.check(sorted(f["name"] for f in work["folders"]) == ["INBOX", "Ärchiv"], "folder names (UTF-8)",
            work["folders"])
    for f in work["folders"]:
        h.check(isinstance(f["synced_at"], int) and f["error"] is None and f["held"] is None,
                "folder %s synced, no error" % f["name"], f)
    check_counts(doc, store)
    h.check(isinstance(old["error"], str) and old["error"] and old["folders"] == [],
            "the bad account's error, and no folders", old)
    h.check("pw-wrong" not in json.dumps(doc), "no password in the output")
    h.check(doc["ok"] is False, "ok is false with a failing account")

    # 2.
    conf = ctx.config([good], name="good.conf")
    dc.expunge("dora", "INBOX", dc.uids("dora", "INBOX")[:1])
    h.maildisk("sync", conf, expect=0)
    doc = status(conf)
    check_counts(doc, store)
    inbox = [f for f in doc["accounts"][0]["folders"] if f["name"] == "INBOX"][0]
    h.check((inbox["messages"], inbox["trashed"]) == (5, 1), "INBOX after the expunge", inbox)
    h.check(doc["ok"] is True and doc["accounts"][0]["error"] is None, "ok without the bad account", doc)

    # 3.
    dc.expunge("dora", "Ärchiv", dc.uids("dora", "Ärchiv"))
    h.maildisk("sync", conf, expect=1)
    doc = status(conf)
    arch = [f for f in doc["accounts"][0]["folders"] if f["name"] == "Ärchiv"][0]
    h.check(isinstance(arch["held"], str) and arch["held"] and arch["messages"] == 3,
            "the emptied folder's deletions are held", arch)
    h.check(doc["ok"] is False, "ok is false while deletions are held")


if __name__ == "__main__":
    h.run(main, deadline=200)
