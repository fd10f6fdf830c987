#!/usr/bin/env python3
"""Faults a real IMAP server will not produce on demand, from a scripted
fake server (faultlib.FakeImap).

Every scenario starts the same way: a fresh store, a clean first sync of
30 messages, then the server changes (3 expunged, 15 new), so the faulty
sync has both something to fetch and something it might wrongly delete.
Then one fault is armed and `maildisk sync` runs. What must hold after the
faulty run, whatever it was:
  - the exit code is the expected one (1 for an error or a hold; 0 only
    where the server's answer is merely incomplete) and the log names the
    account and says what went wrong;
  - nothing is trashed (the 3 expunged messages may only go after a
    complete listing, and no fault here gives one);
  - nothing is left in tmp/, every cur/ file has a visible row and every
    visible row its file, and every visible file is byte-exact;
  - the fault fired, and the server never saw a command that could change
    the mailbox.
Then the fault is removed and a clean sync must converge: the visible rows
are exactly the server's UIDs, byte-exact, and the trash holds exactly the
3 expunged messages.

Usage: test_fake_imap.py GROUP, GROUP one of: cuts (hang-ups, NO, BAD,
garbage, 2 GB literals), stalls (replies that stall past timeout = 5),
lies (short and empty listings, UIDVALIDITY changes), qresync (lying or
broken VANISHED answers to EXAMINE (QRESYNC ...)), tls (hang-up and stall
under TLS, logging in with LOGIN), kill (SIGKILL while the server stalls
mid-message, then a read-only command, then clean syncs: recovery must
still happen). Some scenarios are no fault at all but the server telling
the truth (a UIDVALIDITY change, QRESYNC): there the first run may
already trash exactly the expunged ones. MAILDISK_FAULTS=name,name runs
only those scenarios."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, Fault, check, log  # noqa: E402

USER, ACCT, PW = "alice", "fake", "pw-fake"
TIMEOUT = 5                     # the account's timeout; stalls last longer
BASE, NEW, GONE = 30, 15, [3, 7, 11]
MSGS = F.mailgen.generate(BASE + NEW + 40, seed=606, max_size=40000)
ACCOUNT_RE = r"alice/fake"


class Scenario:
    def __init__(self, name, fault, expect_rc=1, log_re=None, setup=None, clean_args=(),
                 check_after=None, max_seconds=None, fires=True, expunged=GONE, legit=False, caps=()):
        self.name = name
        self.fault = fault              # a Fault, a list of them, or a function(server) -> faults
        self.expect_rc = expect_rc      # int or tuple
        self.log_re = log_re            # regex the faulty run's stderr must match
        self.setup = setup              # function(server) after the baseline, instead of the default change
        self.clean_args = clean_args    # extra args of the converging sync
        self.check_after = check_after  # function(ctx, server, store, result) after the faulty run
        self.max_seconds = max_seconds
        self.fires = fires
        self.expunged = expunged        # UIDs the converging sync must trash
        self.legit = legit              # no fault: the first run may already trash what is expunged
        self.caps = caps                # what the fake server claims after login


def default_change(srv):
    inbox = srv.folders["INBOX"]
    inbox.expunge(GONE)
    inbox.add([m.raw for m in MSGS[BASE:BASE + NEW]])


def rows_by_id(st):
    return {r["id"]: (r["remote_id"], r["store_file"], r["state"]) for r in st.messages()}


# ---- checks specific to some scenarios

def no_refetch(ctx, srv, st, res):
    """A re-match by Message-ID downloads no known body again: the bodies
    fetched after it are the new messages only."""
    f = srv.folders["INBOX"]
    known = {m.raw for m in MSGS[:BASE]}
    fresh = {m.uid for m in f.msgs if m.raw not in known}
    fetched = set()
    for c in srv.sent("UID FETCH"):
        if "BODY.PEEK[]" in c:
            fetched.update(F._uidset(c.split(" ")[2], f.uids()))
    check(fetched <= fresh, "the UIDVALIDITY re-match downloaded known bodies again",
          sorted(fetched - fresh)[:10])
    check(fetched == fresh, "new messages not fetched after the re-match", sorted(fresh - fetched)[:10])


def used_qresync(ctx, srv, st, res):
    """The QRESYNC path ran: EXAMINE asked for changes, and only the UIDs
    from the old UIDNEXT on were listed (no full listing)."""
    ex = srv.sent("EXAMINE")
    check(any("(QRESYNC (" in c for c in ex), "maildisk did not EXAMINE with QRESYNC", ex)
    full = [c for c in srv.sent("UID SEARCH") if "UID 31:*" not in c]
    check(not full, "maildisk listed every UID although QRESYNC said what vanished", full)


def status_shows_hold(ctx, srv, st, res):
    r = H.maildisk("status", res.config, expect=None)
    check("held" in r.text.lower(), "maildisk status does not show the held deletions", r.text[-1500:])


def small_rss(limit_kb):
    def chk(ctx, srv, st, res):
        if F.sanitized():
            log("  peak RSS %d KiB (ASan build: not checked)" % res.rss)
            return
        log("  peak RSS %d KiB" % res.rss)
        check(res.rss < limit_kb, "peak RSS %d KiB after a 2 GB literal announcement (limit %d KiB)" % (
            res.rss, limit_kb))
    return chk


def renumber_same(srv):
    default_change(srv)
    srv.folders["INBOX"].renumber(5000)


def renumber_other(srv):
    # Entirely different mail under a new UIDVALIDITY: no Message-ID matches.
    srv.folders["INBOX"].renumber(5001, [m.raw for m in MSGS[BASE + NEW:BASE + NEW + 40]])


def listing_without(uids_fn):
    def make(srv):
        return Fault("UID SEARCH", "listing", uids=uids_fn(srv.folders["INBOX"]))
    return make


def hangup(name, cmd, at, **kw):
    """The server hangs up at at in its answer to cmd; the log names cmd."""
    return Scenario(name, Fault(cmd, "hangup", at=at, **kw), log_re=r"%s.*closed the connection" % cmd)


def answered(name, cmd, status, keep_untagged):
    """cmd is answered NO or BAD (after its untagged data when keep_untagged)."""
    return Scenario(name, Fault(cmd, "status", status=status, keep_untagged=keep_untagged),
                    log_re=r"%s( \"[^\"]*\")?: the server answered %s" % (cmd, status))


def stall(name, cmd, at, **kw):
    """The server stops sending at at in its answer to cmd, for longer than the timeout."""
    return Scenario(name, Fault(cmd, "stall", at=at, seconds=12, **kw),
                    log_re=r"%s.*no data from the server for %d s" % (cmd, TIMEOUT), max_seconds=TIMEOUT + 5)


SCENARIOS = {
    "cuts": [
        hangup("hangup_mid_literal", "UID FETCH", "mid_literal", literal=5),
        hangup("hangup_mid_first_literal", "UID FETCH", "mid_literal", literal=0),
        hangup("hangup_mid_search_line", "UID SEARCH", "mid_line"),
        hangup("hangup_before_search_ok", "UID SEARCH", "before_tagged"),
        hangup("hangup_before_fetch_ok", "UID FETCH", "before_tagged"),
        hangup("hangup_mid_examine", "EXAMINE", "mid_line"),
        hangup("hangup_mid_list", "LIST", "mid_line"),
        Scenario("hangup_at_greeting", Fault("GREETING", "hangup", at="start"),
                 log_re=r"alice/fake: "),
        answered("no_to_fetch", "UID FETCH", "NO", False),
        answered("no_to_fetch_after_bodies", "UID FETCH", "NO", True),
        answered("bad_to_fetch", "UID FETCH", "BAD", False),
        answered("no_to_search_after_listing", "UID SEARCH", "NO", True),
        answered("no_to_examine", "EXAMINE", "NO", False),
        Scenario("garbage_for_examine", Fault("EXAMINE", "garbage", at="start", then="close"),
                 log_re=ACCOUNT_RE + r".*EXAMINE"),
        Scenario("garbage_in_search", Fault("UID SEARCH", "garbage", at="mid_line", then="rest",
                                            data=b"\x00\xff\x1b[2J 9x \xfe\r\n"),
                 log_re=ACCOUNT_RE + r".*UID SEARCH"),
        Scenario("garbage_inside_literal", Fault("UID FETCH", "garbage", at="mid_literal", literal=4,
                                                 then="rest"),
                 log_re=ACCOUNT_RE + r".*UID FETCH"),
        Scenario("garbage_between_fetches", Fault("UID FETCH", "garbage", at="before_tagged", then="rest"),
                 log_re=ACCOUNT_RE + r".*UID FETCH"),
        # 2 GB is past max_message_size (256 MiB): refused before a byte is read.
        Scenario("huge_literal_in_fetch", Fault("UID FETCH", "huge", size=2147483648, send=1 << 20),
                 log_re=r"UID FETCH.*literal of 2147483648 bytes, larger than max_message_size",
                 check_after=small_rss(32 * 1024)),
        Scenario("huge_literal_in_list", Fault("LIST", "huge", size=2147483648, send=1 << 20),
                 log_re=ACCOUNT_RE + r".*LIST", check_after=small_rss(48 * 1024)),
    ],
    "stalls": [
        stall("stall_mid_literal", "UID FETCH", "mid_literal", literal=3),
        stall("stall_before_search_ok", "UID SEARCH", "before_tagged"),
        stall("stall_examine", "EXAMINE", "start"),
        Scenario("stall_greeting", Fault("GREETING", "stall", at="start", seconds=12),
                 log_re=ACCOUNT_RE, max_seconds=2 * TIMEOUT + 5),
        # Refused at its announcement: the stall that follows is never waited for.
        Scenario("huge_literal_then_stall", Fault("UID FETCH", "huge", size=2147483648, send=256 << 10,
                                                  then="stall", seconds=12),
                 log_re=r"UID FETCH.*larger than max_message_size", max_seconds=3,
                 check_after=small_rss(32 * 1024)),
    ],
    "lies": [
        # EXISTS says 42, the listing has fewer: no proof of deletion, so no
        # deletion, and what is listed and new is fetched.
        Scenario("short_listing", listing_without(lambda f: [u for u in f.uids() if u not in (1, 2, 4)]),
                 expect_rc=(0, 1), log_re=r"listed \d+ UIDs but says the folder has \d+ messages"),
        Scenario("empty_listing", listing_without(lambda f: []),
                 expect_rc=(0, 1), log_re=r"listed 0 UIDs but says the folder has \d+ messages"),
        # The server says the folder is empty (EXISTS 0, no UIDs): complete,
        # but it would trash everything: held until confirmed.
        Scenario("empty_folder_lie", [Fault("EXAMINE", "exists", value=0),
                                      Fault("UID SEARCH", "listing", uids=[])],
                 log_re=r"deletions held", check_after=status_shows_hold),
        # A complete-looking listing that drops most of the folder: held.
        Scenario("mass_vanish_lie", lambda srv: [Fault("EXAMINE", "exists", value=12),
                                                 Fault("UID SEARCH", "listing",
                                                       uids=srv.folders["INBOX"].uids()[-12:])],
                 log_re=r"deletions held", check_after=status_shows_hold),
        # The configured folder is missing from LIST (renamed? a server bug?):
        # an error, never a reason to trash the folder's mail.
        Scenario("folder_missing_from_list", Fault("LIST", "listing", folders=[]),
                 log_re=r'folder "INBOX" does not exist on the server'),
        Scenario("uidvalidity_same_mail", None, setup=renumber_same, expect_rc=0,
                 log_re=r"UIDVALIDITY changed", check_after=no_refetch, fires=False, legit=True),
        Scenario("uidvalidity_other_mail", None, setup=renumber_other, expect_rc=1,
                 log_re=r"UIDVALIDITY changed.*nothing changed locally", check_after=status_shows_hold,
                 fires=False, clean_args=("--allow-mass-delete",), expunged="all"),
        Scenario("uidvalidity_short_rematch", Fault("EXAMINE", "exists", value=BASE + NEW - 3 + 5),
                 setup=renumber_same, expect_rc=1,
                 log_re=r"UIDVALIDITY changed and the server listed \d+ of \d+"),
        Scenario("uidvalidity_hangup_in_rematch", Fault("UID FETCH", "hangup", at="mid_literal", literal=9),
                 setup=renumber_same, log_re=r"UID FETCH.*closed the connection"),
    ],
}


def tls_material(ctx):
    ca, ca_key = H.make_ca(ctx.tmp, "fakeca")
    cert, key = H.make_server_cert(ctx.tmp, ca, ca_key, "fake")
    return ca, (cert, key)


QRESYNC = ("ENABLE", "CONDSTORE", "QRESYNC", "ESEARCH")

SCENARIOS["qresync"] = [
    # No fault: EXAMINE (QRESYNC ...) reports the 3 expunged as VANISHED.
    Scenario("qresync_clean", None, caps=QRESYNC, expect_rc=0, fires=False, legit=True,
             check_after=used_qresync),
    # VANISHED names messages the server still has (and not the expunged
    # ones): the counts do not add up to EXISTS, so everything is listed
    # again and only the truly expunged go.
    Scenario("qresync_vanished_lie", Fault("EXAMINE", "vanished", uids=[1, 2, 4, 5, 6]), caps=QRESYNC,
             expect_rc=0, legit=True, log_re=r"do not add up"),
    Scenario("qresync_vanished_unknown", Fault("EXAMINE", "vanished", uids=[9000, 9001]), caps=QRESYNC,
             expect_rc=0, legit=True, log_re=r"do not add up"),
    Scenario("qresync_hangup_before_examine_ok", Fault("EXAMINE", "hangup", at="before_tagged"), caps=QRESYNC,
             log_re=r"EXAMINE.*closed the connection"),
    Scenario("qresync_garbage_vanished", Fault("EXAMINE", "garbage", at="before_tagged", then="rest",
                                               data=b"* VANISHED (EARLIER) 1:*x,,7\r\n"), caps=QRESYNC,
             log_re=r"VANISHED"),
    Scenario("qresync_no_to_search", Fault("UID SEARCH", "status", status="NO", keep_untagged=True),
             caps=QRESYNC, log_re=r"UID SEARCH: the server answered NO"),
    Scenario("qresync_stall_examine", Fault("EXAMINE", "stall", at="before_tagged", seconds=12), caps=QRESYNC,
             log_re=r"EXAMINE.*no data from the server for %d s" % TIMEOUT, max_seconds=TIMEOUT + 5),
]

SCENARIOS["tls"] = [
    Scenario("tls_hangup_mid_literal", Fault("UID FETCH", "hangup", at="mid_literal", literal=5),
             log_re=ACCOUNT_RE + r".*UID FETCH"),
    Scenario("tls_hangup_before_fetch_ok", Fault("UID FETCH", "hangup", at="before_tagged"),
             log_re=ACCOUNT_RE + r".*UID FETCH"),
    Scenario("tls_stall_mid_literal", Fault("UID FETCH", "stall", at="mid_literal", literal=2, seconds=12),
             log_re=r"UID FETCH.*no data from the server for %d s" % TIMEOUT, max_seconds=TIMEOUT + 5),
    Scenario("tls_garbage_in_fetch", Fault("UID FETCH", "garbage", at="mid_literal", literal=1, then="rest"),
             log_re=ACCOUNT_RE + r".*UID FETCH"),
]


class Res:
    pass


def kill_during_stall(ctx, inspect):
    """Deterministic crash: the fake server stalls in the middle of the 10th
    message, maildisk (with 9 messages in tmp/ and one half-written) is
    killed with SIGKILL, inspect(cfg) runs (a read-only command, or
    nothing), then clean syncs must leave the server's set and nothing in
    tmp/, and `check --store` must agree."""
    import signal
    import subprocess
    srv = F.FakeImap(USER, PW)
    try:
        cfg, st = F.scenario_store(ctx, "kill-%s" % (inspect.__name__ if inspect else "none"), srv,
                                   USER, ACCT, PW)
        srv.folders["INBOX"].add([m.raw for m in MSGS[:BASE]])
        srv.arm(Fault("UID FETCH", "stall", at="mid_literal", literal=9, seconds=30))
        p = ctx.popen([H.maildisk_path(), "sync", "-c", cfg], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL, env=H.maildisk_env())
        # the 9 messages before the stalled one, and the half-written 10th
        H.wait_for(lambda: len(st.tmp_files()) >= 10, 20, "9 whole files and a half-written one in tmp/")
        n_tmp = len(st.tmp_files())
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        log("  killed maildisk with %d files in tmp/" % n_tmp)
        check(n_tmp >= 1, "no file in tmp/ when maildisk was killed")
        srv.disarm()
        if inspect:
            inspect(cfg)
        H.maildisk("sync", cfg, expect=0)
        H.maildisk("sync", cfg, expect=0)
        F.imap_converged(st, srv, USER, ACCT)
        left = st.tmp_files()
        check(not left, "%d files stay in tmp/ after a kill%s and two clean syncs" % (
            len(left), (", " + inspect.__doc__) if inspect else ""), left[:3])
        r = H.maildisk("check", cfg, "--store", expect=None)
        check(r.rc == 0, "check --store disagrees after a kill%s and two clean syncs" % (
            (", " + inspect.__doc__) if inspect else ""), r.out[-600:])
        return 1
    finally:
        srv.close()


def check_store_cmd(cfg):
    """then maildisk check --store"""
    H.maildisk("check", cfg, "--store", expect=(0, 1))


def status_cmd(cfg):
    """then maildisk status"""
    H.maildisk("status", cfg, expect=(0, 1))


KILLS = {"kill_then_sync": None, "kill_then_status": status_cmd, "kill_then_check_store": check_store_cmd}


def run_scenario(ctx, sc, tls):
    tmp = os.path.join(ctx.tmp, sc.name)
    os.mkdir(tmp, 0o700)
    # The TLS scenarios also log in with LOGIN instead of AUTHENTICATE PLAIN.
    srv = F.FakeImap(USER, PW, tls=tls[1] if tls else None, caps=sc.caps, auth="login" if tls else "plain")
    try:
        acct = F.account(USER, ACCT, srv.url(), PW, timeout=TIMEOUT, mass_delete_limit="0.5")
        if tls:
            acct.ca_file = tls[0]
        cfg = H.write_config(os.path.join(tmp, "maildisk.conf"), os.path.join(tmp, "store"), [acct])
        st = H.Store(os.path.join(tmp, "store"))
        srv.folders["INBOX"].add([m.raw for m in MSGS[:BASE]])
        H.maildisk("sync", cfg, expect=0)
        F.imap_converged(st, srv, USER, ACCT)
        before = rows_by_id(st)
        check(srv.sent("LOGIN" if tls else "AUTHENTICATE"), "libcurl did not log in as expected", srv.commands[:4])
        (sc.setup or default_change)(srv)
        faults = sc.fault(srv) if callable(sc.fault) else sc.fault
        faults = [] if faults is None else faults if isinstance(faults, list) else [faults]
        srv.arm(*faults)
        # A missing or unclear message fails the scenario, but only after
        # the checks on the store and the convergence have run too.
        rc, err, rss, took, problems = F.faulty_sync(cfg, sc, faults, ACCOUNT_RE, log_lines=12)
        if sc.max_seconds:
            check(took <= sc.max_seconds, "%s: the sync took %.1fs (timeout %d s)" % (sc.name, took, TIMEOUT))
        trashed = st.messages(state=F.TRASHED)
        if sc.legit:
            trashed = [t for t in trashed if int(before[t["id"]][0]) not in sc.expunged]
        check(not trashed, "%s: the faulty sync trashed messages" % sc.name,
              [(t["remote_id"], t["trash_reason"]) for t in trashed][:10])
        # No row of the baseline vanished or changed its file (a re-key may
        # change remote_id only).
        now = rows_by_id(st)
        for rid, (uid, sf, state) in before.items():
            if sc.legit and int(uid) in sc.expunged:
                continue
            check(rid in now and now[rid][1] == sf and now[rid][2] == state,
                  "%s: baseline row %d changed: %r -> %r" % (sc.name, rid, before[rid], now.get(rid)))
        n = F.check_store(st, F.imap_bodies(srv, st), sc.name)
        log("  after the fault: %d visible rows, none trashed, tmp/ empty, files byte-exact" % n)
        res = Res()
        res.rc, res.err, res.rss, res.config = rc, err, rss, cfg
        if sc.check_after:
            sc.check_after(ctx, srv, st, res)

        srv.disarm()
        H.maildisk("sync", cfg, *sc.clean_args, expect=0)
        F.imap_converged(st, srv, USER, ACCT)
        F.check_store(st, F.imap_bodies(srv, st), sc.name + " (converged)")
        trashed = st.messages(state=F.TRASHED)
        if sc.expunged == "all":
            want_ids = set(before)
            check({t["id"] for t in trashed} == want_ids, "%s: trashed rows after --allow-mass-delete" % sc.name)
        else:
            got = sorted(int(t["remote_id"]) for t in trashed if t["remote_id"].isdigit())
            old_uid = {rid: int(v[0]) for rid, v in before.items()}
            got_old = sorted(old_uid[t["id"]] for t in trashed)
            check(got_old == sorted(sc.expunged), "%s: trashed after convergence" % sc.name, got_old, got)
        F.converged(sc, srv, st, len(trashed), problems, "the fake server saw commands that change mail")
        return len(faults)
    finally:
        srv.close()


def main(ctx):
    group = sys.argv[1] if len(sys.argv) > 1 else "cuts"
    tls = tls_material(ctx) if group == "tls" else None
    runs = []
    if group == "kill":
        runs += [(name, lambda inspect=inspect: kill_during_stall(ctx, inspect)) for name, inspect in KILLS.items()]
    runs += [(sc.name, lambda sc=sc: run_scenario(ctx, sc, tls)) for sc in SCENARIOS.get(group, [])]
    ran, injected, failed = F.run_each(runs)
    F.report_scenarios("fake IMAP %s" % group, ran, injected, failed)


if __name__ == "__main__":
    H.run(main, deadline=280)
