#!/usr/bin/env python3
"""Faults a real POP3 server will not produce on demand, from a scripted
fake server (faultlib.FakePop3).

Each scenario: a fresh store, a clean first sync of 20 messages, then the
server changes (3 deleted, 10 new) and one fault is armed. After the
faulty `maildisk sync`: the expected exit code and a log line naming the
account and the failure; nothing trashed; nothing in tmp/; every cur/ file
has a visible row and is byte-exact; the fault fired; no DELE was ever
sent. Then, the fault removed, a clean sync converges: the visible rows are
exactly the server's UIDLs, byte-exact, and the trash holds exactly the 3
deleted messages.

The fake announces PIPELINING (except in the *_lockstep scenarios, where
maildisk must send one command at a time), so maildisk keeps a window of RETR
commands in flight (each followed by "UIDL n"); the faults marked
`window` must fire while commands behind the faulty one had already
arrived. The dangerous ones: a hang-up before a message's or the
listing's terminating "." (a cut answer must not look complete), and a
server that drops or reorders answers (every message after it would be
stored under the wrong UIDL unless the UIDL answers are checked).
MAILDISK_FAULTS=name,name runs only those scenarios."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, Fault, check, log  # noqa: E402

USER, ACCT, PW = "alice", "pop", "pw-fake"
TIMEOUT = 5
BASE, NEW = 20, 10
MSGS = F.mailgen.generate(BASE + NEW, seed=707, max_size=30000)
ACCOUNT_RE = r"alice/pop"


class Scenario:
    def __init__(self, name, fault, expect_rc=1, log_re=None, max_seconds=None, hold=False,
                 window=False, pipelining=True):
        self.name, self.fault, self.expect_rc, self.log_re = name, fault, expect_rc, log_re
        self.max_seconds, self.hold, self.window = max_seconds, hold, window
        self.pipelining = pipelining


def deleted(srv):
    return [u for u, _ in srv.msgs[2:5]]


SCENARIOS = [
    Scenario("hangup_mid_retr", Fault("RETR", "hangup", nth=4, at="mid_literal"),
             log_re=r"connection to the POP3 server lost during RETR|closed the connection during RETR",
             window=True),
    Scenario("hangup_between_answers", Fault("RETR", "hangup", nth=5, at="start"),
             log_re=r"connection to the POP3 server lost during RETR|closed the connection during RETR",
             window=True),
    # Pipelining faults: an answer dropped, or sent after the next one.
    Scenario("drop_retr_answer", Fault("RETR", "drop", nth=3),
             log_re=r"answers are out of order|sent nothing for %d s during RETR" % TIMEOUT,
             window=True, max_seconds=TIMEOUT + 5),
    Scenario("swap_retr_answers", Fault("RETR", "swap", nth=2),
             log_re=r"answers are out of order", window=True),
    Scenario("drop_uidl_n_answer", Fault("UIDL", "drop", nth=4),
             log_re=r"answers are out of order", max_seconds=TIMEOUT + 5),
    Scenario("hangup_before_retr_dot", Fault("RETR", "hangup", nth=2, at="before_tagged"),
             log_re=r"closed the connection during RETR"),
    Scenario("hangup_mid_retr_first_line", Fault("RETR", "hangup", nth=1, at="mid_line"),
             log_re=r"RETR"),
    Scenario("err_to_retr", Fault("RETR", "status", nth=3, text="message locked"),
             log_re=r"refused RETR \d+ \(-ERR message locked\)", window=True),
    # Without PIPELINING: one command at a time, same outcomes.
    Scenario("err_to_retr_lockstep", Fault("RETR", "status", nth=3, text="message locked"),
             log_re=r"refused RETR \d+ \(-ERR message locked\)", pipelining=False),
    Scenario("hangup_mid_retr_lockstep", Fault("RETR", "hangup", nth=4, at="mid_literal"),
             log_re=r"closed the connection during RETR", pipelining=False),
    Scenario("err_to_uidl", Fault("UIDL", "status", text="UIDL unavailable"),
             log_re=r"refused UIDL \(-ERR UIDL unavailable\)"),
    Scenario("hangup_mid_uidl", Fault("UIDL", "hangup", at="middle"),
             log_re=r"closed the connection during UIDL|lost during UIDL"),
    Scenario("hangup_before_uidl_dot", Fault("UIDL", "hangup", at="before_tagged"),
             log_re=r"closed the connection during UIDL"),
    Scenario("garbage_in_uidl", Fault("UIDL", "garbage", at="middle", then="rest",
                                      data=b"\x01\x02 garbage \xff\xfe\r\n"),
             log_re=r"UIDL listing is not understood"),
    Scenario("garbage_for_stat", Fault("STAT", "garbage", at="start", data=b"\x00\xffHELLO\r\n", then="close"),
             log_re=ACCOUNT_RE + r": "),
    Scenario("hangup_at_greeting", Fault("GREETING", "hangup", at="start"), log_re=ACCOUNT_RE + r": "),
    # UIDL lists fewer messages than STAT: no proof of deletion.
    Scenario("short_listing", lambda srv: Fault("UIDL", "listing", uids=[u for u, _ in srv.msgs][5:]),
             expect_rc=(0, 1), log_re=r"listed \d+ UIDLs but STAT says \d+ messages"),
    # STAT 0 and an empty listing: complete, but it would empty the folder.
    Scenario("empty_mailbox_lie", [Fault("STAT", "exists", value=0), Fault("UIDL", "listing", uids=[])],
             log_re=r"deletions held", hold=True),
    Scenario("stall_mid_retr", Fault("RETR", "stall", nth=2, at="mid_literal", seconds=12),
             log_re=r"sent nothing for %d s during RETR" % TIMEOUT, max_seconds=TIMEOUT + 5),
    Scenario("stall_uidl", Fault("UIDL", "stall", at="middle", seconds=12),
             log_re=r"sent nothing for %d s during UIDL" % TIMEOUT, max_seconds=TIMEOUT + 5),
]


def run_scenario(ctx, sc):
    tmp = os.path.join(ctx.tmp, sc.name)
    os.mkdir(tmp, 0o700)
    srv = F.FakePop3(USER, PW, pipelining=sc.pipelining)
    try:
        acct = F.account(USER, ACCT, srv.url(), PW, timeout=TIMEOUT)
        cfg = F.write_config(os.path.join(tmp, "maildisk.conf"), os.path.join(tmp, "store"), [acct])
        st = H.Store(os.path.join(tmp, "store"))
        srv.add([m.raw for m in MSGS[:BASE]])
        H.maildisk("sync", cfg, expect=0)
        F.pop3_converged(st, srv, USER, ACCT)
        before = {r["id"]: (r["remote_id"], r["store_file"]) for r in st.messages()}
        gone = deleted(srv)
        srv.delete(gone)
        srv.add([m.raw for m in MSGS[BASE:BASE + NEW]])
        faults = sc.fault(srv) if callable(sc.fault) else sc.fault
        faults = faults if isinstance(faults, list) else [faults]
        srv.arm(*faults)
        rc, err, _rss, took, problems = F.faulty_sync(cfg, sc, faults, ACCOUNT_RE)
        if sc.window and not all(getattr(f, "ahead", 0) > 0 for f in faults):
            problems.append("the fault did not fire inside a window of pipelined commands")
        if sc.max_seconds and took > sc.max_seconds:
            problems.append("the sync took %.1fs with timeout = %d" % (took, TIMEOUT))
        trashed = st.messages(state=F.TRASHED)
        check(not trashed, "%s: the faulty sync trashed messages" % sc.name,
              [(t["remote_id"], t["trash_reason"]) for t in trashed][:10])
        now = {r["id"]: (r["remote_id"], r["store_file"]) for r in st.messages()}
        check(all(now.get(k) == v for k, v in before.items()), "%s: a baseline row changed" % sc.name)
        n = F.check_store(st, lambda r: srv.history[r["remote_id"]], sc.name)
        log("  after the fault: %d visible rows, none trashed, tmp/ empty, files byte-exact" % n)
        if sc.hold:
            s = H.maildisk("status", cfg)
            if "held" not in s.text.lower():
                problems.append("maildisk status does not show the held deletions")

        srv.disarm()
        H.maildisk("sync", cfg, expect=0)
        F.pop3_converged(st, srv, USER, ACCT)
        F.check_store(st, lambda r: srv.history[r["remote_id"]], sc.name + " (converged)")
        got = sorted(t["remote_id"] for t in st.messages(state=F.TRASHED))
        check(got == sorted(gone), "%s: trashed after convergence" % sc.name, got, sorted(gone))
        check((srv.ahead > 0) == sc.pipelining, "%s: maildisk %s" % (
            sc.name, "never pipelined" if sc.pipelining else "pipelined, unasked"))
        F.converged(sc, srv, st, len(got), problems, "the server saw DELE")
        return len(faults)
    finally:
        srv.close()


def sigterm_mid_window(ctx):
    """SIGTERM while the server stalls inside a window of pipelined RETRs
    (timeout = 60 s): maildisk ends within 2 s, exit 1, nothing partial
    stored, nothing trashed; a clean sync then converges."""
    srv = F.FakePop3(USER, PW)
    try:
        cfg, st = F.scenario_store(ctx, "sigterm", srv, USER, ACCT, PW)
        srv.add([m.raw for m in MSGS[:BASE]])
        fault = srv.arm(Fault("RETR", "stall", nth=5, at="mid_literal", seconds=40))
        p = ctx.popen([H.maildisk_path(), "sync", "-c", cfg], stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE, env=H.maildisk_env())
        H.wait_for(lambda: fault.fired, 20, "the stall to start")
        H.wait_for(lambda: len(st.tmp_files()) >= 5, 20, "4 whole files and a half-written one in tmp/")
        F.sigterm_sync(p, "inside a window of RETRs")
        check(fault.ahead > 0, "the stall was not inside a window of pipelined commands")
        check(not st.messages(state=F.TRASHED), "a stopped sync trashed messages")
        F.check_store(st, lambda r: srv.history[r["remote_id"]], "sigterm")
        srv.disarm()
        H.maildisk("sync", cfg, expect=0)
        F.pop3_converged(st, srv, USER, ACCT)
        check(not srv.violations, "the server saw DELE", srv.violations[:5])
    finally:
        srv.close()


def rset_refused(ctx):
    """RSET refused after messages were retrieved: QUIT must not follow
    (it would let the server mark them seen); the messages are stored."""
    srv = F.FakePop3(USER, PW)
    try:
        cfg, st = F.scenario_store(ctx, "rset", srv, USER, ACCT, PW, timeout=TIMEOUT)
        srv.add([m.raw for m in MSGS[:BASE]])
        fault = srv.arm(Fault("RSET", "status", text="cannot reset"))
        H.maildisk("sync", cfg, expect=(0, 1))
        check(fault.fired, "RSET was never sent")
        cmds = [c.split(" ")[0].upper() for c in srv.commands]
        check("QUIT" not in cmds[cmds.index("RSET"):], "QUIT after a refused RSET", cmds[-5:])
        F.pop3_converged(st, srv, USER, ACCT)
    finally:
        srv.close()


def main(ctx):
    runs = [(sc.name, lambda sc=sc: run_scenario(ctx, sc)) for sc in SCENARIOS]
    runs += [("sigterm_mid_window", lambda: sigterm_mid_window(ctx) or 1),
             ("rset_refused", lambda: rset_refused(ctx) or 1)]
    ran, injected, failed = F.run_each(runs)
    F.report_scenarios("fake POP3", ran, injected, failed)


if __name__ == "__main__":
    H.run(main, deadline=240)
