#!/usr/bin/env python3
"""First-sync progress on a terminal: `maildisk sync` with stderr on a pty,
fetching 40 messages (about 800 kB) through a proxy limited to 400 kB/s,
redraws one line per folder ("\\r...\\033[K") with messages, MB, MB/s,
msg/s and an ETA, and ends it with the full count and a newline. With
stderr not a terminal (a pipe) there is no progress line at all."""
import os
import pty
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import mailgen  # noqa: E402

LINE = re.compile(r"^u/mail INBOX: (\d+)/(\d+) messages, (\d+\.\d) MB"
                  r"(?:, (\d+\.\d) MB/s, (\d+) msg/s(?:, ETA (\S+(?: s)?))?)?$")


def main(ctx):
    dc = ctx.dovecot()
    dc.add_user("u", "pw-u")
    msgs = mailgen.generate(40, seed=99, min_size=18000, max_size=22000)
    dc.append("u", "INBOX", [m.raw for m in msgs])
    total_bytes = sum(len(m.raw) for m in msgs)
    proxy = ctx.proxy(dc.ports["imaps"], rate=400_000)
    conf = ctx.config([h.Account("u", "mail", proxy.url("imaps"), "u", "pw-u", ["INBOX"], dc.ca_pem)])

    master, slave = pty.openpty()
    argv = [h.maildisk_path(), "sync", "-c", conf]
    h.log("$ %s (stderr on a pty)" % " ".join(argv))
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL,
                         env=h.maildisk_env())
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:          # EIO: the child closed the pty
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    rc = p.wait(120)
    text = out.decode(errors="replace").replace("\r\n", "\n")
    h.log("terminal output: %r" % text[-3000:])
    h.check(rc == 0 and not h.SANITIZER_RE.search(text), "maildisk sync on a pty exited %d" % rc, text[-2000:])

    lines = [seg.replace("\x1b[K", "") for seg in re.split(r"[\r\n]", text) if "messages" in seg]
    parsed = [LINE.match(x) for x in lines]
    h.check(lines and all(parsed), "every progress line has the expected form", lines)
    last = parsed[-1]
    h.check((last.group(1), last.group(2)) == ("40", "40"), "the last line counts all 40", lines[-1])
    h.check(abs(float(last.group(3)) - total_bytes / 1e6) <= 0.06, "the last line's MB", lines[-1], total_bytes)
    h.check(re.search(r"40/40 messages[^\r\n]*\n", text), "the last line ends with a newline")
    with_eta = [m for m in parsed[:-1] if m.group(6)]
    h.check(with_eta, "an intermediate line with rates and an ETA (a 2 s fetch)", lines)
    for m in with_eta:
        h.check(0 < int(m.group(1)) < 40 and float(m.group(4)) < 2.0, "plausible rate", m.group(0))
    h.check(all("\x1b[K" in seg for seg in text.split("\r")[1:] if "messages" in seg), "each redraw clears the line")

    # Not a terminal: no progress.
    conf2 = ctx.config([h.Account("u", "mail", dc.url("imaps"), "u", "pw-u", ["INBOX"], dc.ca_pem)],
                       name="again.conf", store=ctx.store_dir("store2"))
    r = h.maildisk("sync", conf2, expect=0)
    h.check("messages" not in r.err and "\r" not in r.err, "no progress on a pipe", r.err)


if __name__ == "__main__":
    h.run(main)
