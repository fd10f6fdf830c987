"""scripts/bench --parts: reading a message's parts through the mount
against reading its .eml (issue 15: at most 1.3 times as long).

For each N (default 2000), on the harness's Dovecot: N deterministic
messages written into the Maildir (bench.deliver_direct), half text only
(1-20 KB of text), half with 1 to 3 base64 attachments of log-uniform
10 KB to 2 MB (random bytes, so no side gains from compression); one
`maildisk sync` (timed); `maildisk mount -f`; then, in one run and best of
3, alternating sides: every regular file under every parts directory read
to its end, against the .eml files read in name order until the same
number of bytes, and against the .eml files the parts come from read
whole, through the mount and straight from the store (the bytes a cold
read of the parts must take from the disk); cold (page, dentry and inode
caches dropped before each run) and warm. A benchmark, not a test: it asserts nothing but that the
parts are there, and says so when no parts directory is."""

import contextlib
import json
import math
import os
import random
import shutil
import subprocess
import tempfile
import time
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone

USER, PASSWORD, ACCOUNT, FOLDER = "bench", "bench-pw-1", "bench", "INBOX"
MB = 1024 * 1024
TARGET = 1.3
WORDS = ("mail disk part body text report figure budget plan meeting note draft attach "
         "quarter review project invoice schedule").split()


def make_parts_message(seed, i):
    """Message i, deterministic in (seed, i): even i text only, odd i with
    1 to 3 base64 attachments of 10 KB to 2 MB."""
    rnd = random.Random("parts:%d:%d" % (seed, i))
    m = EmailMessage()
    m["From"] = "Bench Parts <bench@example.org>"
    m["To"] = "bench@example.org"
    m["Subject"] = "Parts bench %d %s" % (i, rnd.choice(WORDS))
    m["Date"] = format_datetime(datetime.fromtimestamp(1700000000 + i * 3607, timezone.utc))
    m["Message-ID"] = "<parts-%d-%d@bench.example>" % (seed, i)
    n_words = int(math.exp(rnd.uniform(math.log(150), math.log(3000))))
    lines, line = [], []
    for _ in range(n_words):
        line.append(rnd.choice(WORDS))
        if len(line) == 12:
            lines.append(" ".join(line))
            line = []
    m.set_content("\n".join(lines + [" ".join(line)]) + "\n")
    if i % 2:
        for k in range(rnd.randint(1, 3)):
            size = int(math.exp(rnd.uniform(math.log(10 * 1024), math.log(2 * MB))))
            m.add_attachment(rnd.randbytes(size), maintype="application", subtype="octet-stream",
                             filename="file-%d-%d.bin" % (i, k))
    return m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def part_files(folder):
    """(parts directories, every regular file under them) beside the .eml
    files of folder, in name order."""
    dirs, files = [], []
    for name in sorted(os.listdir(folder)):
        d = os.path.join(folder, name)
        if name.endswith(".eml") or not os.path.isdir(d):
            continue
        dirs.append(d)
        for dp, dns, fns in os.walk(d):
            dns.sort()
            files += [os.path.join(dp, f) for f in sorted(fns)]
    return dirs, files


def read_limit(paths, limit):
    """Reads the files in order (1 MB reads) until limit bytes; returns
    (seconds, bytes)."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    t0 = time.monotonic()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while total < limit:
                k = f.readinto(view[:min(len(buf), limit - total)])
                if not k:
                    break
                total += k
        if total >= limit:
            break
    return time.monotonic() - t0, total


def measure(B, folder, mount_pid, cur):
    """The cold and warm rows on a mounted folder; cur: the store's cur/
    of that folder."""
    out = {}
    dirs, parts = part_files(folder)
    emls = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".eml")]
    if not dirs:
        raise SystemExit("bench --parts: no parts directory beside the %d .eml files in %s: this "
                         "build does not show parts (issue 15)" % (len(emls), folder))
    out["eml_files"], out["parts_dirs"], out["part_files"] = len(emls), len(dirs), len(parts)
    if len(dirs) != len(emls):
        out["note"] = "%d of %d messages have a parts directory" % (len(dirs), len(emls))
    part_bytes = sum(os.stat(p).st_size for p in parts)
    eml_bytes = sum(os.stat(p).st_size for p in emls)
    if eml_bytes < part_bytes:
        raise SystemExit("bench --parts: the parts hold %d bytes, the .eml files only %d" % (
            part_bytes, eml_bytes))
    out["bytes"] = part_bytes
    # The messages the parts come from, read whole: the bytes the daemon
    # must read to serve the parts (base64 is 4/3 of its data plus line
    # ends), so the floor of a cold read of the parts.
    srcs = [d + ".eml" for d in dirs]
    out["source_bytes"] = sum(os.stat(p).st_size for p in srcs)
    sides = [("parts", parts, None), ("eml", emls, part_bytes), ("source", srcs, None)]
    # The same bytes read straight from the store, without the mount: what
    # the disk alone takes to give the daemon what the parts are made of.
    direct = sorted(os.path.join(cur, n) for n in os.listdir(cur)) if cur else []
    if len(dirs) == len(emls) and sum(os.stat(p).st_size for p in direct) == out["source_bytes"]:
        sides.append(("source_direct", direct, None))

    def once(paths, limit):
        if limit is None:
            return B.time_read(paths)
        return read_limit(paths, limit)
    why = B.drop_caches()
    if why is None:
        cold = {side: [] for side, _, _ in sides}
        for _ in range(3):
            for side, paths, limit in sides:
                B.drop_caches()
                s, nb = once(paths, limit)
                if nb != (out["source_bytes"] if side.startswith("source") else part_bytes):
                    raise SystemExit("bench --parts: %s read %d bytes, expected %d" % (side, nb, part_bytes))
                cold[side].append(s)
        out["cold_runs"] = cold
        out["cold"] = {k: min(v) for k, v in cold.items()}
    else:
        out["cold_error"] = why
    for side, paths, limit in sides:
        once(paths, limit)          # warms the caches
    warm = {side: [] for side, _, _ in sides}
    for _ in range(3):
        for side, paths, limit in sides:
            warm[side].append(once(paths, limit)[0])
    out["warm_runs"] = warm
    out["warm"] = {k: min(v) for k, v in warm.items()}
    with open("/proc/%d/status" % mount_pid) as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def run_one(n, args, binary, B, later):
    H = B.H
    run = {"n": n, "load_before": os.getloadavg()[0]}
    with contextlib.ExitStack() as stack:
        dc = H.Dovecot(keep=True)
        stack.callback(dc.stop)
        dc.start()
        dc.add_user(USER, PASSWORD)
        tmp = tempfile.mkdtemp(prefix="maildisk-bench-parts-%d-" % n, dir="/tmp")
        os.chmod(tmp, 0o700)
        if args.keep:
            later.callback(B.log, "kept %s and %s" % (tmp, dc.dir))
        else:
            later.callback(shutil.rmtree, tmp, True)
            later.callback(shutil.rmtree, dc.dir, True)
        t0 = time.monotonic()
        sizes = B.deliver_direct(dc, USER, n, args.seed, make_parts_message)
        if len(dc.uids(USER, FOLDER)) != n:
            raise SystemExit("bench --parts: Dovecot indexed fewer than %d messages" % n)
        run["mailbox_bytes"] = sum(sizes)
        B.log("N=%d: %.1f MB of mail in %.1fs" % (n, sum(sizes) / MB, time.monotonic() - t0))
        store = os.path.join(tmp, "store")
        config = H.write_config(os.path.join(tmp, "maildisk.conf"), store,
                                [H.Account(USER, ACCOUNT, dc.url("imaps"), USER, PASSWORD, [FOLDER],
                                           dc.ca_pem, timeout=120)], users={USER: "root"})
        t0 = time.monotonic()
        p = subprocess.run([binary, "sync", "-c", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=H.maildisk_env())
        run["sync_s"] = time.monotonic() - t0
        if p.returncode != 0:
            raise SystemExit("bench --parts: maildisk sync exited %d: %s" % (
                p.returncode, p.stdout.decode(errors="replace")[-2000:]))
        mp = os.path.join(tmp, "mnt")
        m = B.MountProc(binary, config, mp, os.path.join(tmp, "mount.log"))
        mark = B.last_sync_id(store)
        stack.callback(m.stop)
        m.start()
        B.wait_mount_sync(store, mark)
        folder = os.path.join(mp, USER, ACCOUNT, FOLDER)
        run.update(measure(B, folder, m.proc.pid, B.maildisk_rows(store)[2]))
    return run


def print_run(run):
    print("\nscripts/bench --parts: N=%d, %.1f MB of mail, first sync %.2f s, load %.2f" % (
        run["n"], run["mailbox_bytes"] / MB, run["sync_s"], run["load_before"]))
    print("%d messages, %d parts directories, %d part files, %.1f MB read on each side%s" % (
        run["eml_files"], run["parts_dirs"], run["part_files"], run["bytes"] / MB,
        "" if "note" not in run else " (%s)" % run["note"]))
    print("%-6s %12s %12s %12s %12s %8s %8s" % ("", "parts", "MB/s", ".eml", "MB/s", "ratio", "target"))
    for kind in ("cold", "warm"):
        if kind not in run:
            print("%-6s %s" % (kind, run.get(kind + "_error", "-")))
            continue
        p, e = run[kind]["parts"], run[kind]["eml"]
        r = p / e if e else float("inf")
        print("%-6s %10.3f s %12.1f %10.3f s %12.1f %7.2fx %s" % (
            kind, p, run["bytes"] / MB / p, e, run["bytes"] / MB / e, r,
            "<= %.1f %s" % (TARGET, "met" if r <= TARGET else "MISSED")))
    for kind in ("cold", "warm"):
        if kind in run and run[kind].get("source"):
            src = run[kind]["source"]
            print("%s: the %.1f MB of .eml the parts come from, read whole: %.3f s; parts / that %.2fx" % (
                kind, run["source_bytes"] / MB, src, run[kind]["parts"] / src))
        if kind in run and run[kind].get("source_direct"):
            src = run[kind]["source_direct"]
            print("%s: the same files read from the store directly: %.3f s; parts / that %.2fx" % (
                kind, src, run[kind]["parts"] / src))
    if "VmHWM" in run:
        print("mount daemon: VmRSS %.1f MB, VmHWM %.1f MB" % (run["VmRSS"] / 1024, run["VmHWM"] / 1024))


def main(args, sizes, binary, result, B):
    later = contextlib.ExitStack()
    try:
        for n in sizes:
            run = run_one(n, args, binary, B, later)
            result["runs"].append(run)
            print_run(run)
    except B.Interrupted as e:
        B.log("interrupted (%s); cleaned up" % e)
        return 130
    finally:
        later.close()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1, default=str)
    return 0
