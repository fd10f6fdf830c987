#!/usr/bin/env python3
"""Many users, many accounts: two users (alice, bob), each with an imaps://
account and a POP3 account, on one Dovecot with a separate server-side
mail user per account, and [sync] workers = 4.

1. One `maildisk sync` fills each user's part of the store with exactly
   that user's mail: every row and file lies under mail/<user>/<account>/,
   rows per folder equal the server's UIDs (IMAP) or UIDLs (POP3), each
   file byte for byte what the server returns, no file without a row. The
   four accounts ran at the same time (their password_command calls,
   which each take a second, overlap), each with one login.
2. A message deleted upstream by a POP3 client (DELE, QUIT) moves to
   alice's trash with its reason; on bob's POP3 account, which has
   mirror_deletions = no, the same kind of deletion trashes nothing.
3. One account with a wrong password: exit 1 naming that account; the
   other three accounts still got their new mail in the same run;
   `maildisk status` shows that account's error and no error for the rest.
4. `maildisk sync alice/work` syncs that account only (one sync record,
   no new rows elsewhere); `maildisk sync bob` syncs both of bob's.
5. A full sync afterwards clears the error; no password in any output."""
import os
import poplib
import re
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SERVER = {   # server-side mail user: password
    "alice-work": "pw-alice-work-5e1d",
    "alice-pop": "pw-alice-pop-77c0",
    "bob-work": "pw-bob-work-a91f",
    "bob-pop": "pw-bob-pop-3b26",
}
WRONG = "pw-wrong-bob-work-c4d8"
SLOW_PW = """#!/bin/sh
# password_command for the concurrency check: log start and end, take 1 s
echo "start $2 $(date +%s.%N)" >> "$3"
sleep 1
echo "end $2 $(date +%s.%N)" >> "$3"
exec cat "$1"
"""


def accounts(dc):
    return [
        h.Account("alice", "work", dc.url("imaps"), "alice-work", SERVER["alice-work"],
                  ["INBOX", "Archive"], dc.ca_pem),
        h.Account("alice", "pop", dc.url("pop3s"), "alice-pop", SERVER["alice-pop"], (), dc.ca_pem),
        h.Account("bob", "work", dc.url("imaps"), "bob-work", SERVER["bob-work"], ["*"], dc.ca_pem),
        h.Account("bob", "pop", dc.url("pop3"), "bob-pop", SERVER["bob-pop"], (), dc.ca_pem,
                  extra={"mirror_deletions": "no"}),
    ]


def config(ctx, accts, name):
    d = os.path.join(ctx.tmp, name)
    os.makedirs(d, mode=0o700, exist_ok=True)
    return h.write_config(os.path.join(d, "maildisk.conf"), ctx.store_dir(), accts)


def add_workers(path, n=4):
    with open(path, "a") as f:
        f.write("\n[sync]\nworkers = %d\n" % n)


def slow_config(ctx, accts):
    """The same accounts, each password given by a command that takes 1 s
    and logs when it runs."""
    d = os.path.join(ctx.tmp, "slow")
    os.makedirs(d, mode=0o700, exist_ok=True)
    script = os.path.join(d, "slowpw")
    with open(script, "w") as f:
        f.write(SLOW_PW)
    os.chmod(script, 0o700)
    timeline = os.path.join(d, "timeline")
    path = h.write_config(os.path.join(d, "maildisk.conf"), ctx.store_dir(), accts)
    out = []
    with open(path) as f:
        section = None
        for line in f:
            m = re.match(r"\[account (\S+)\]", line)
            if m:
                section = m.group(1)
            if line.startswith("password_file = "):
                pwfile = line.split(" = ", 1)[1].strip()
                line = "password_command = %s %s %s %s\n" % (script, pwfile, section, timeline)
            out.append(line)
    with open(path, "w") as f:
        f.write("".join(out))
    add_workers(path)
    return path, timeline


def max_overlap(timeline):
    """Most password commands running at one instant."""
    events = []
    with open(timeline) as f:
        for line in f:
            kind, _, t = line.split()
            events.append((float(t), 1 if kind == "start" else -1))
    cur = best = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        cur += d
        best = max(best, cur)
    return best, len(events)


def pop3_delete(dc, login, n):
    """A POP3 client deletes message n (DELE, then QUIT commits it)."""
    p = poplib.POP3_SSL("127.0.0.1", dc.ports["pop3s"],
                        context=ssl.create_default_context(cafile=dc.ca_pem), timeout=30)
    p.user(login)
    p.pass_(dc.users[login])
    uidl = p.uidl(n).split()[2].decode()
    p.dele(n)
    p.quit()
    return uidl


def check_user_tree(st, dc, bob_kept=()):
    """Each user's rows and files are exactly that user's mail (bob_kept:
    UIDLs bob/pop keeps although the server dropped them)."""
    want = {
        ("alice", "work"): {"INBOX", "Archive"},
        ("alice", "pop"): {"INBOX"},
        ("bob", "work"): set(dc.folders("bob-work")),
        ("bob", "pop"): {"INBOX"},
    }
    got = {}
    for f in st.folders():
        got.setdefault((f["user"], f["account"]), set()).add(f["name"])
        h.check(f["path"].startswith("mail/%s/%s/" % (f["user"], f["account"])),
                "folder %r of %s/%s at %s" % (f["name"], f["user"], f["account"], f["path"]))
    h.check(got == want, "folders per account", got, want)
    bodies = {}
    for r in st.messages(state=h.ACTIVE):
        top = "mail/%s/%s/" % (r["f_user"], r["f_account"])
        h.check(r["store_file"].startswith(top), "row %d of %s at %s" % (r["id"], top, r["store_file"]))
        bodies.setdefault(r["f_user"], set()).add(st.read(r))
    for user in ("alice", "bob"):
        for name, folders in ((n, f) for (u, n), f in want.items() if u == user):
            login = "%s-%s" % (user, name)
            if name == "pop":
                h.assert_pop3_matches(st, dc, user, name, server_user=login,
                                      kept=bob_kept if user == "bob" else ())
            else:
                for folder in folders:
                    h.assert_folder_matches(st, dc, user, name, folder, server_user=login)
    # No message of one user is stored under the other (the mail differs).
    h.check(not (bodies.get("alice", set()) & bodies.get("bob", set())), "a message is in both users' trees")
    # Files on disk: every one under mail/<user>/ belongs to a row of that user.
    for path in st.files(("mail",)):
        if "/cur/" not in path:
            continue
        user = path.split("/")[1]
        h.check(user in ("alice", "bob"), "file outside the users' trees", path)
    h.assert_no_tmp(st)
    h.assert_cur_matches_rows(st)


def counts(st):
    """{(user, account, folder): active rows}."""
    out = {}
    for r in st.messages(state=h.ACTIVE):
        k = (r["f_user"], r["f_account"], r["f_name"])
        out[k] = out.get(k, 0) + 1
    return out


def status_blocks(text):
    """{"user/account": header line} from `maildisk status` output."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+/\S+)\s+\S+://\S+\s+last sync", line)
        if m:
            out[m.group(1)] = line
    return out


def main(ctx):
    dc = ctx.dovecot()
    msgs, _ = dc.populate(SERVER, [("alice-work", "INBOX", 14), ("alice-work", "Archive", 6),
                                   ("alice-pop", "INBOX", 10), ("bob-work", "INBOX", 10),
                                   ("bob-work", "Receipts", 4), ("bob-pop", "INBOX", 8)],
                          80, seed=4004, max_size=60000)
    fresh = iter([m.raw for m in msgs[52:]])
    accts = accounts(dc)
    cfg = config(ctx, accts, "main")
    add_workers(cfg)
    st = h.Store(ctx.store_dir())
    run = h.Runs()
    outputs = run.outputs

    # 1. One sync, four accounts at once.
    slow, timeline = slow_config(ctx, accts)
    log_mark = os.path.getsize(dc.log_path)
    run("sync", slow, expect=0)
    with open(dc.log_path, errors="replace") as f:
        f.seek(log_mark)
        logins = re.findall(r"(imap|pop3)-login: Info: Login: user=<([^>]+)>", f.read())
    h.check(sorted(logins) == [("imap", "alice-work"), ("imap", "bob-work"), ("pop3", "alice-pop"),
                               ("pop3", "bob-pop")], "not one login per account", sorted(logins))
    best, n = max_overlap(timeline)
    h.check(n == 8, "password commands that ran", n // 2)
    h.check(best == 4, "with workers = 4 the four accounts did not run at once (at most %d did)" % best)
    check_user_tree(st, dc)
    h.check(counts(st) == {("alice", "work", "INBOX"): 14, ("alice", "work", "Archive"): 6,
                           ("alice", "pop", "INBOX"): 10, ("bob", "work", "INBOX"): 10,
                           ("bob", "work", "Receipts"): 4, ("bob", "pop", "INBOX"): 8},
            "rows per folder", counts(st))

    # 2. Deleted upstream over POP3: trashed for alice, kept for bob.
    before = {r["remote_id"]: r for r in st.messages("alice", "pop", "INBOX", h.ACTIVE)}
    gone = pop3_delete(dc, "alice-pop", 3)
    content = st.read(before[gone])
    bob_gone = pop3_delete(dc, "bob-pop", 2)
    bob_before = st.messages("bob", "pop", "INBOX", h.ACTIVE)
    run("sync", cfg, expect=0)
    trashed = st.messages("alice", "pop", "INBOX", h.TRASHED)
    h.check([r["remote_id"] for r in trashed] == [gone], "alice/pop trash", [r["remote_id"] for r in trashed])
    t = trashed[0]
    h.check(t["id"] == before[gone]["id"], "the trashed row is a new row")
    h.check(t["store_file"].startswith("trash/alice/pop/INBOX/"), "trashed to", t["store_file"])
    h.check(st.read(t) == content, "the trashed message's bytes changed")
    h.check(t["trash_reason"] == "deleted on the POP3 server", "trash reason", t["trash_reason"])
    h.assert_pop3_matches(st, dc, "alice", "pop", server_user="alice-pop")
    bob_after = st.messages("bob", "pop", "INBOX", h.ACTIVE)
    h.check([r["id"] for r in bob_after] == [r["id"] for r in bob_before],
            "mirror_deletions = no: bob/pop's rows changed")
    h.check(bob_gone in {r["remote_id"] for r in bob_after}, "bob/pop dropped the UIDL deleted upstream")
    h.assert_pop3_matches(st, dc, "bob", "pop", server_user="bob-pop", kept=[bob_gone])
    h.check(not st.messages("bob", state=h.TRASHED), "mirror_deletions = no: bob has trash")
    h.check(st.folder("bob", "pop", "INBOX")["held"] is None, "bob/pop shows a hold")
    h.check(not os.path.exists(st.path("trash/bob")) or not st.files(("trash/bob",)), "files in bob's trash")

    # 3. bob/work with a wrong password; new mail on all four servers.
    for login in SERVER:
        dc.append(login, "INBOX", [next(fresh), next(fresh)])
    bad = [a if (a.user, a.name) != ("bob", "work") else
           h.Account("bob", "work", a.url, a.login, WRONG, a.folders, a.ca_file) for a in accts]
    bad_cfg = config(ctx, bad, "wrongpw")
    add_workers(bad_cfg)
    bob_work_ids = {f["id"] for f in st.folders() if (f["user"], f["account"]) == ("bob", "work")}

    def bob_work_rows():
        return [x for x in st.snapshot()["rows"] if x[1] in bob_work_ids]
    bob_work = bob_work_rows()
    r = run("sync", bad_cfg, expect=1)
    h.check(re.search(r"^bob/work: .*login refused", r.out, re.M), "sync output does not name bob/work's login error",
            r.out)
    h.check(not re.search(r"^(alice/\S+|bob/pop): ", r.out, re.M), "the good accounts report errors", r.out)
    for user, name in (("alice", "work"), ("alice", "pop"), ("bob", "pop")):
        login = "%s-%s" % (user, name)
        if name == "pop":
            got = h.assert_pop3_matches(st, dc, user, name, server_user=login,
                                        kept=[bob_gone] if user == "bob" else ())
        else:
            got = h.assert_folder_matches(st, dc, user, name, "INBOX", server_user=login)
        h.check(len(got) >= 2, "%s/%s after the run" % (user, name))
    h.check(bob_work_rows() == bob_work, "the failed account's rows changed")
    h.check(len(dc.uids("bob-work", "INBOX")) == 12, "bob-work's new mail is not on the server")
    r = run("status", bad_cfg, expect=0)
    blocks = status_blocks(r.out)
    h.check(set(blocks) == {"alice/work", "alice/pop", "bob/work", "bob/pop"}, "status blocks", r.out)
    h.check(re.search(r"ERROR: .*bob/work: login refused", blocks["bob/work"]),
            "status does not show bob/work's error", blocks["bob/work"])
    for k in ("alice/work", "alice/pop", "bob/pop"):
        h.check("ERROR" not in blocks[k], "status shows an error for %s" % k, blocks[k])

    # 4. Only the named account, then only the named user.
    for login in SERVER:
        dc.append(login, "INBOX", next(fresh))
    before = counts(st)
    n_syncs = len(st.query("SELECT * FROM syncs"))
    run("sync", cfg, "alice/work", expect=0)
    syncs = st.query("SELECT * FROM syncs ORDER BY id")[n_syncs:]
    h.check([(s["user"], s["account"]) for s in syncs] == [("alice", "work")], "sync records of 'sync alice/work'",
            [(s["user"], s["account"]) for s in syncs])
    after = counts(st)
    h.assert_folder_matches(st, dc, "alice", "work", "INBOX", server_user="alice-work")
    h.check(after[("alice", "work", "INBOX")] == before[("alice", "work", "INBOX")] + 1, "alice/work new mail")
    for k in before:
        if k[:2] != ("alice", "work"):
            h.check(after[k] == before[k], "'sync alice/work' changed %s/%s %s" % k)
    n_syncs = len(st.query("SELECT * FROM syncs"))
    run("sync", cfg, "bob", expect=0)
    syncs = st.query("SELECT * FROM syncs ORDER BY id")[n_syncs:]
    h.check(sorted((s["user"], s["account"]) for s in syncs) == [("bob", "pop"), ("bob", "work")],
            "sync records of 'sync bob'", [(s["user"], s["account"]) for s in syncs])
    h.check(counts(st)[("alice", "pop", "INBOX")] == before[("alice", "pop", "INBOX")], "'sync bob' synced alice/pop")
    run("sync", cfg, "carol", expect=2)
    run("sync", cfg, "alice/nothing", expect=2)

    # 5. Everything, the error gone, no password anywhere.
    run("sync", cfg, expect=0)
    check_user_tree(st, dc, bob_kept=[bob_gone])
    r = run("status", cfg, expect=0)
    h.check("ERROR" not in r.out, "status still shows an error", r.out)
    with open(dc.log_path, errors="replace") as f:
        dlog = f.read()
    for pw in list(SERVER.values()) + [WRONG]:
        h.check(not any(pw in t for t in outputs), "a password appears in maildisk's output")
        h.check(pw not in dlog, "a password appears in Dovecot's log")


if __name__ == "__main__":
    h.run(main, deadline=240)
