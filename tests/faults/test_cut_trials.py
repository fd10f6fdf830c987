#!/usr/bin/env python3
"""Cut connections: a proxy between maildisk and a real private Dovecot
hangs up after a random number of bytes, trial after trial.

The mailbox starts with a few hundred messages. Each trial first changes
the server (seeded): a first sync from an empty store, or a resync after
some messages were expunged and others appended, or (less often) a
resync after Dovecot forgot its UIDs (new UIDVALIDITY). Then one account
syncs through the proxy with a cut point drawn from the bytes that sync
should move (so cuts land in the greeting, TLS, login, LIST, EXAMINE,
SEARCH, FETCH or LOGOUT alike); a quarter of the trials use the POP3
account (RETR by RETR). After the cut sync:
  - no trashed row names a message the server still has (for that
    account), checked against the server's own listing;
  - nothing is in tmp/, every cur/ file has a visible row and each visible
    row its file, with its size; a sample of files is byte-exact;
then a clean sync of both accounts, after which the store equals the
server: every server message has exactly one visible row per account
(none lost, none duplicated), a sample is byte-exact, and again nothing
the server has is in the trash.

MAILDISK_TRIALS (default 20; 200 for the full run), MAILDISK_SEED to
repeat a run, MAILDISK_CUT_MESSAGES (default 300) for the mailbox size."""

import os
import poplib
import shutil
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, check, log  # noqa: E402

USER, PW = "alice", "pw-cut"
poplib._MAXLINE = 1 << 22     # mailgen writes header lines of 20 KB
IMAP_ACCT, POP_ACCT = "work", "pop"


def pop3_listing(dc):
    """{uidl: msgnum} as Dovecot's POP3 lists it now."""
    p = poplib.POP3_SSL("127.0.0.1", dc.ports["pop3s"], context=ssl.create_default_context(cafile=dc.ca_pem),
                        timeout=30)
    try:
        p.user(USER)
        p.pass_(PW)
        out = {}
        for line in p.uidl()[1]:
            n, u = line.decode().split(" ", 1)
            out[u] = int(n)
        return out, p
    except BaseException:
        p.quit()
        raise


def pop3_bodies(dc, uidls):
    listing, p = pop3_listing(dc)
    try:
        out = {}
        for u in uidls:
            lines = p.retr(listing[u])[1]
            out[u] = b"".join(l + b"\r\n" for l in lines)
        return out
    finally:
        p.rset()
        p.quit()


def check_trash(st, dc, acct, old=frozenset()):
    """No trashed row names a message the server still has. old: ids of
    rows trashed under an earlier UIDVALIDITY, whose UIDs mean nothing now.
    Returns the number of trashed rows."""
    rows = [t for t in st.messages(state=F.TRASHED) if t["id"] not in old]
    if acct == IMAP_ACCT:
        uids = set(dc.uids(USER, "INBOX"))
        f = st.folder(USER, IMAP_ACCT, "INBOX")
        same = f is not None and f["uidvalidity"] == dc.uidvalidity(USER, "INBOX")
        for t in rows:
            if same and t["remote_id"].isdigit():
                check(int(t["remote_id"]) not in uids,
                      "UID %s is trashed (%s) but the server still has it" % (t["remote_id"], t["trash_reason"]))
    else:
        uidls = set(pop3_listing_only(dc))
        for t in rows:
            check(t["remote_id"] not in uidls,
                  "UIDL %s is trashed (%s) but the server still has it" % (t["remote_id"], t["trash_reason"]))
    return len(rows)


def pop3_listing_only(dc):
    listing, p = pop3_listing(dc)
    p.quit()
    return listing


def sample_bodies(rng, st, dc, acct, k=25):
    """bodies_for for check_store: a sample of rows compared with the
    server, sizes only for the rest."""
    rows = F.visible_rows(st)
    pick = {r["id"]: r for r in rng.sample(rows, min(k, len(rows)))}
    if acct == IMAP_ACCT:
        f = st.folder(USER, IMAP_ACCT, "INBOX")
        uids = [int(r["remote_id"]) for r in pick.values() if r["remote_id"].isdigit()]
        got = {}
        if uids and f and f["uidvalidity"] == dc.uidvalidity(USER, "INBOX"):
            got = dc.fetch_bodies(USER, "INBOX", ",".join(map(str, uids)))
        want = {i: got.get(int(r["remote_id"])) for i, r in pick.items() if r["remote_id"].isdigit()}
    else:
        listing = pop3_listing_only(dc)
        got = pop3_bodies(dc, [r["remote_id"] for r in pick.values() if r["remote_id"] in listing])
        want = {i: got.get(r["remote_id"]) for i, r in pick.items()}
    # A sampled row the server no longer has (expunged, not yet trashed)
    # is compared by size only.
    return lambda r: want.get(r["id"])


def converged(rng, st, dc, acct):
    """The account holds exactly the server's set, each message once."""
    if acct == IMAP_ACCT:
        return len(H.assert_folder_matches(st, dc, USER, IMAP_ACCT, "INBOX", sample=20))
    rows = F.visible_rows(st, USER, POP_ACCT, "INBOX")
    ids = [r["remote_id"] for r in rows]
    listing = pop3_listing_only(dc)
    check(len(ids) == len(set(ids)), "POP3: duplicate rows")
    check(set(ids) == set(listing), "POP3: rows differ from the server",
          "missing", sorted(set(listing) - set(ids))[:10], "extra", sorted(set(ids) - set(listing))[:10])
    pick = rng.sample(rows, min(10, len(rows)))
    bodies = pop3_bodies(dc, [r["remote_id"] for r in pick])
    for r in pick:
        check(st.read(r) == bodies[r["remote_id"]], "POP3 %s: file is not the message" % r["remote_id"])
    return len(ids)


def main(ctx):
    rng, seed = F.rng("cut trials")
    n_trials = F.trials(20)
    n_msgs = int(os.environ.get("MAILDISK_CUT_MESSAGES", "300"))
    pool = F.mailgen.generate(n_msgs + 30 * n_trials + 10, seed=seed % 100000, max_size=30000)
    dc = ctx.dovecot()
    dc.add_user(USER, PW)
    sizes = {}
    for uid, m in zip(dc.append(USER, "INBOX", [m.raw for m in pool[:n_msgs]]), pool[:n_msgs]):
        sizes[uid] = len(m.raw)
    next_msg = n_msgs
    log("%d messages (%d bytes) on the server" % (n_msgs, sum(sizes.values())))

    # One store per account, so that a trial's clean sync only redoes the
    # account the trial cut.
    px = {IMAP_ACCT: ctx.proxy(dc.ports["imaps"]), POP_ACCT: ctx.proxy(dc.ports["pop3s"])}
    port = {IMAP_ACCT: dc.ports["imaps"], POP_ACCT: dc.ports["pop3s"]}
    scheme = {IMAP_ACCT: "imaps", POP_ACCT: "pop3s"}
    store, st, direct, cut, base = {}, {}, {}, {}, {}
    since = {}          # per account: bytes appended and resets since its last convergence
    for a in (IMAP_ACCT, POP_ACCT):
        store[a] = ctx.store_dir("store-" + a)
        st[a] = H.Store(store[a])
        mk = lambda p: [H.Account(USER, a, "%s://127.0.0.1:%d" % (scheme[a], p), USER, PW, ["INBOX"],  # noqa
                                  dc.ca_pem, timeout=15)]
        direct[a] = F.write_config(os.path.join(ctx.tmp, "direct-%s.conf" % a), store[a], mk(port[a]))
        cut[a] = F.write_config(os.path.join(ctx.tmp, "cut-%s.conf" % a), store[a], mk(px[a].port))
        H.maildisk("sync", cut[a], expect=0, timeout=180)
        converged(rng, st[a], dc, a)
        # What a sync moves besides the mail: measured with nothing new.
        px[a].reset()
        H.maildisk("sync", cut[a], expect=0)
        base[a] = px[a].s2c
        since[a] = {"bytes": 0, "reset": False}
    log("bytes of a sync with nothing new: IMAP %d, POP3 %d" % (base[IMAP_ACCT], base[POP_ACCT]))

    old_trash = set()       # IMAP rows trashed under an earlier UIDVALIDITY
    stats = {"cuts": 0, "completed": 0, "first": 0, "resync": 0, "uidvalidity": 0, IMAP_ACCT: 0, POP_ACCT: 0,
             "expunged": 0, "appended": 0, "exit1": 0}
    for trial in range(1, n_trials + 1):
        kind = rng.choices(["first", "resync", "uidvalidity"], [3, 6, 1])[0]
        acct = POP_ACCT if rng.random() < 0.25 else IMAP_ACCT
        if kind == "first":
            shutil.rmtree(store[acct], ignore_errors=True)
            if acct == IMAP_ACCT:
                old_trash = set()
        if kind == "uidvalidity":
            uids = dc.uids(USER, "INBOX")
            dc.reset_uidvalidity(USER, "INBOX")
            # Dovecot numbers the same messages again from 1, in order.
            sizes = {i + 1: sizes[u] for i, u in enumerate(uids)}
            for a in since:
                since[a]["reset"] = True
            old_trash |= {t["id"] for t in st[IMAP_ACCT].messages(state=F.TRASHED)}
        if kind in ("resync", "uidvalidity"):
            uids = sorted(sizes)
            gone = rng.sample(uids, min(len(uids) - 1, rng.randint(0, 12)))
            dc.expunge(USER, "INBOX", gone)
            for u in gone:
                del sizes[u]
            add = [pool[(next_msg + i) % len(pool)].raw for i in range(rng.randint(0, 20))]
            next_msg += len(add)
            if add:
                for u, raw in zip(dc.append(USER, "INBOX", add), add):
                    sizes[u] = len(raw)
            for a in since:
                since[a]["bytes"] += sum(len(r) for r in add)
            stats["expunged"] += len(gone)
            stats["appended"] += len(add)
        total = sum(sizes.values())
        if kind == "first" or (acct == POP_ACCT and since[acct]["reset"]):
            new_bytes = total          # everything is fetched (POP3: every UIDL changed)
        else:
            new_bytes = since[acct]["bytes"] + (200 * len(sizes) if since[acct]["reset"] else 0)
        expect = base[acct] + int(new_bytes * 1.05) + 1
        where = rng.randint(1, expect)
        px[acct].cut_after = where
        cuts_before = px[acct].cuts
        stats[kind] += 1
        stats[acct] += 1
        log("---- trial %d/%d (seed %d): %s, %s account, cut after %d of ~%d bytes" % (
            trial, n_trials, seed, kind, acct, where, expect))
        r = H.maildisk("sync", cut[acct], expect=(0, 1), timeout=120)
        px[acct].cut_after = None
        was_cut = px[acct].cuts > cuts_before
        stats["cuts"] += was_cut
        if not was_cut:
            stats["completed"] += 1
            # A sync that was never cut must succeed (a held deletion aside).
            check(r.rc == 0 or "deletions held" in r.err,
                  "trial %d: a sync that was not cut exited %d" % (trial, r.rc))
        if r.rc == 1:
            stats["exit1"] += 1
            check("%s/%s" % (USER, acct) in r.err, "trial %d: the error does not name the account" % trial)
        check_trash(st[acct], dc, acct, old_trash)
        F.check_store(st[acct], sample_bodies(rng, st[acct], dc, acct), "trial %d after the cut" % trial)

        r = H.maildisk("sync", direct[acct], expect=(0, 1), timeout=180)
        if r.rc == 1:
            # Dovecot's POP3 UIDLs contain the UIDVALIDITY: after a reset every
            # UIDL is new and every old one gone, which the mass-delete guard
            # holds until the user confirms. Nothing else may fail here.
            check(acct == POP_ACCT and since[acct]["reset"] and "INBOX: deletions held" in r.err,
                  "trial %d: the clean sync failed" % trial)
            H.maildisk("sync", direct[acct], "--allow-mass-delete", expect=0, timeout=180)
        n = converged(rng, st[acct], dc, acct)
        n_trash = check_trash(st[acct], dc, acct, old_trash)
        F.check_store(st[acct], sample_bodies(rng, st[acct], dc, acct), "trial %d converged" % trial)
        since[acct] = {"bytes": 0, "reset": False}
        log("  converged: %d messages on the server and in the store, %d trashed rows" % (n, n_trash))
    log("cut trials (seed %d): %d trials (%d first syncs, %d resyncs, %d UIDVALIDITY changes; %d IMAP, "
        "%d POP3), %d connections cut, %d syncs not reached by the cut, %d exited 1; %d expunged and %d "
        "appended upstream; 0 messages lost, 0 duplicated, 0 trashed while on the server" % (
            seed, n_trials, stats["first"], stats["resync"], stats["uidvalidity"], stats[IMAP_ACCT],
            stats[POP_ACCT], stats["cuts"], stats["completed"], stats["exit1"], stats["expunged"],
            stats["appended"]))


if __name__ == "__main__":
    # Longer runs (MAILDISK_TRIALS) get a deadline to match; meson's timeout
    # then needs its multiplier (meson test -t).
    H.run(main, deadline=int(os.environ.get("MAILDISK_TRIAL_DEADLINE", max(280, 14 * F.trials(20)))))
