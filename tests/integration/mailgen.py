#!/usr/bin/env python3
"""Deterministic, varied test messages for maildisk (standard library only).

generate(n, seed) returns n Message objects (raw bytes plus what a test may
want to know about them). The same (n, seed, max_size) gives the same bytes
on every machine and Python version: only random.Random(seed) and fixed
tables are used, never hash() or the clock.

Kinds, cycled so that any 12 consecutive messages hold each one once:
  plain         text/plain, CRLF
  multipart     multipart/mixed with a base64 attachment (random bytes)
  rfc2047       encoded-word subjects (UTF-8 B, ISO-8859-1 Q, Japanese)
  no-date       no Date header
  no-msgid      no Message-ID header
  no-subject    no Subject header
  long-header   one unfolded header line of 12 to 20 KB (longer than the
                8 KB a libcurl line buffer keeps)
  8bit-header   raw 8-bit bytes in Subject and From (UTF-8 and Latin-1)
  bare-lf       every line ends in LF only
  imap-lines    body lines that look like IMAP protocol: "A004 OK",
                "* 3 EXPUNGE", ")", "{123}", ". OK"
  dup-subject   the same subject as another message (view names must differ)
  nested        multipart/alternative inside multipart/mixed, quoted-printable
Sizes are spread log-uniformly from 200 B to max_size (300 KB by default);
message 0 is the smallest kind (about 200 B) and message 1 is padded to
max_size, so any n >= 2 spans the range.

Command line: mailgen.py N OUTDIR [SEED]  writes OUTDIR/00001.eml ...
"""

import base64
import math
import os
import random
import sys

KINDS = ["plain", "multipart", "rfc2047", "no-date", "no-msgid", "no-subject",
         "long-header", "8bit-header", "bare-lf", "imap-lines", "dup-subject", "nested"]

WORDS = ("report quarterly budget meeting notes draft review invoice travel plan "
         "update schedule lunch release build server backup photo garden recipe "
         "question answer minutes contract project launch ticket holiday").split()

NAMES = [("Alice Example", "alice@example.org"), ("Bob Builder", "bob@example.net"),
         ("Carol Ärger", "carol@example.com"), ("Dave O'Brien", "dave@example.org"),
         ("Eve", "eve@example.net")]

ENCODED_SUBJECTS = [
    # (header value, decoded)
    ("=?UTF-8?B?" + base64.b64encode("Grüße aus Köln".encode()).decode() + "?=", "Grüße aus Köln"),
    ("=?ISO-8859-1?Q?Caf=E9_cr=E8me_br=FBl=E9e?=", "Café crème brûlée"),
    ("=?UTF-8?B?" + base64.b64encode("日本語の件名".encode()).decode() + "?=", "日本語の件名"),
    ("Re: =?UTF-8?Q?=C3=A9t=C3=A9?= plans", "Re: été plans"),
    ("=?utf-8?b?" + base64.b64encode("Ελληνικά / slash".encode()).decode() + "?=", "Ελληνικά / slash"),
]

IMAP_LINES = [b"A004 OK", b"* 3 EXPUNGE", b")", b"{123}", b". OK FETCH completed",
              b"* 1 FETCH (FLAGS (\\Seen))", b"A001 OK LOGOUT"]


class Message:
    def __init__(self, index, kind, raw, message_id, subject, size_target):
        self.index = index
        self.kind = kind
        self.raw = raw                # bytes as appended
        self.message_id = message_id  # without <>, or None
        self.subject = subject        # decoded, or None
        self.size_target = size_target

    def __repr__(self):
        return "<Message %d %s %d bytes>" % (self.index, self.kind, len(self.raw))


def _text_line(rnd, width=72):
    words, n = [], 0
    while n < width - 10:
        w = rnd.choice(WORDS)
        words.append(w)
        n += len(w) + 1
    return " ".join(words).encode()


def _date(rnd, i):
    # A fixed epoch plus a per-message offset: stable, sorted roughly by i.
    t = 1700000000 + i * 3607 + rnd.randrange(3600)
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    import time
    tm = time.gmtime(t)
    return "%s, %02d %s %04d %02d:%02d:%02d +0000" % (days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon - 1],
                                                       tm.tm_year, tm.tm_hour, tm.tm_min, tm.tm_sec)


def _pad_text(rnd, target):
    """Lines of words totalling about target bytes (CRLF counted)."""
    lines, n = [], 0
    while n < target:
        line = _text_line(rnd)
        lines.append(line)
        n += len(line) + 2
    return lines


def _one(rnd, i, kind, size_target, seed):
    sender = NAMES[i % len(NAMES)]
    rcpt = NAMES[(i + 1) % len(NAMES)]
    subject = "%s %s #%d" % (rnd.choice(WORDS).capitalize(), rnd.choice(WORDS), i)
    subject_hdr = subject
    msgid = "mailgen.%d.%d.%s@maildisk.test" % (seed, i, rnd.randrange(10 ** 9))
    headers = []
    if kind == "rfc2047":
        subject_hdr, subject = ENCODED_SUBJECTS[i % len(ENCODED_SUBJECTS)]
        subject_hdr = "%s #%d" % (subject_hdr, i)
        subject = "%s #%d" % (subject, i)
    if kind == "dup-subject":
        subject = subject_hdr = "Same subject every time"
    headers.append(b"From: " + ("%s <%s>" % sender).encode())
    if kind == "8bit-header":
        headers[-1] = b"From: Ren\xe9 Latin1 <rene@example.org>"
        subject = "Raw 8bit: Grüße, naïve #%d" % i
        subject_hdr = None
        headers.append(b"Subject: " + subject.encode("utf-8"))
    headers.append(b"To: " + ("%s <%s>" % rcpt).encode())
    if kind != "no-date":
        headers.append(b"Date: " + _date(rnd, i).encode())
    if kind == "no-msgid":
        msgid = None
    else:
        headers.append(b"Message-ID: <" + msgid.encode() + b">")
    if kind == "no-subject":
        subject = None
    elif subject_hdr is not None:
        headers.append(b"Subject: " + subject_hdr.encode())
    if kind == "long-header":
        n = 12000 + rnd.randrange(8000)
        refs = " ".join("<ref%d.%d@maildisk.test>" % (i, k) for k in range(n // 24))
        headers.append(b"References: " + refs.encode())
    headers.append(b"MIME-Version: 1.0")
    headers.append(b"X-Mailgen: seed=%d index=%d kind=%s" % (seed, i, kind.encode()))

    used = sum(len(h) + 2 for h in headers) + 200
    room = max(0, size_target - used)
    if kind == "multipart":
        boundary = b"=_mailgen_%d_%d" % (seed, i)
        headers.append(b'Content-Type: multipart/mixed; boundary="' + boundary + b'"')
        text = _pad_text(rnd, min(room // 4, 2000))
        blob = rnd.randbytes(max(16, (room - 700 - sum(len(t) + 2 for t in text)) * 57 // 78))
        b64 = base64.b64encode(blob)
        body = [b"This is a multi-part message in MIME format.", b"", b"--" + boundary,
                b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: 8bit", b""]
        body += text
        body += [b"", b"--" + boundary,
                 b'Content-Type: application/octet-stream; name="data-%d.bin"' % i,
                 b"Content-Transfer-Encoding: base64",
                 b'Content-Disposition: attachment; filename="data-%d.bin"' % i, b""]
        body += [b64[k:k + 76] for k in range(0, len(b64), 76)]
        body += [b"--" + boundary + b"--", b""]
    elif kind == "nested":
        outer = b"=_outer_%d" % i
        inner = b"=_inner_%d" % i
        headers.append(b'Content-Type: multipart/mixed; boundary="' + outer + b'"')
        text = _pad_text(rnd, room // 2)
        body = [b"--" + outer, b'Content-Type: multipart/alternative; boundary="' + inner + b'"', b"",
                b"--" + inner, b"Content-Type: text/plain; charset=utf-8",
                b"Content-Transfer-Encoding: quoted-printable", b""]
        body += [l + b" caf=C3=A9=" for l in text[:-1]] + text[-1:]
        body += [b"--" + inner, b"Content-Type: text/html; charset=utf-8", b"",
                 b"<p>" + (text[0] if text else b"") + b"</p>", b"--" + inner + b"--", b"",
                 b"--" + outer + b"--", b""]
    else:
        headers.append(b"Content-Type: text/plain; charset=utf-8")
        body = [b"Message %d of kind %s." % (i, kind.encode()), b""]
        if kind == "imap-lines":
            for k, l in enumerate(IMAP_LINES):
                body.append(l)
                body += _pad_text(rnd, room // (len(IMAP_LINES) + 1))
        else:
            body += _pad_text(rnd, room)
        if kind == "8bit-header":
            body.append("Body with UTF-8 too: ÄÖÜ 日本".encode())
    eol = b"\n" if kind == "bare-lf" else b"\r\n"
    raw = eol.join(headers) + eol + eol + eol.join(body) + eol
    return Message(i, kind, raw, msgid, subject, size_target)


def _tiny(seed, size):
    """Message 0: minimal headers, exactly size bytes."""
    head = b"From: a@example.org\r\nMessage-ID: <tiny.%d@maildisk.test>\r\nSubject: tiny\r\n\r\n" % seed
    room = max(4, size - len(head) - 2)
    raw = head + b"t" * room + b"\r\n"
    return Message(0, "plain", raw, "tiny.%d@maildisk.test" % seed, "tiny", size)


def _size(rnd, i, min_size, max_size):
    if i == 0:
        return min_size
    if i == 1:
        return max_size
    return int(math.exp(rnd.uniform(math.log(min_size), math.log(max_size))))


def generate(n, seed=1, max_size=300_000, min_size=200, kinds=None):
    """n messages, deterministic in (n, seed, max_size, min_size, kinds).
    Message i depends only on (seed, i, ...), so generate(10) is a prefix
    of generate(20)."""
    kinds = kinds or KINDS
    out = []
    for i in range(n):
        rnd = random.Random("%d:%d:%d" % (seed, i, max_size))
        if i == 0:
            out.append(_tiny(seed, min_size))
            continue
        kind = kinds[i % len(kinds)]
        size = _size(rnd, i, min_size, max_size)
        m = _one(rnd, i, kind, size, seed)
        if i == 1 and len(m.raw) < max_size:
            # Pad the largest message to exactly max_size with a text line.
            extra = max_size - len(m.raw)
            eol = b"\n" if kind == "bare-lf" else b"\r\n"
            filler = b""
            while extra - len(filler) > 70 + 2 * len(eol):
                filler += b"x" * 70 + eol
            rest = extra - len(filler) - len(eol)
            if rest > 0:
                filler += b"y" * rest + eol
            m.raw = m.raw + filler
        out.append(m)
    return out


def main(argv):
    if len(argv) < 3:
        sys.stderr.write("usage: mailgen.py N OUTDIR [SEED]\n")
        return 2
    n, outdir = int(argv[1]), argv[2]
    seed = int(argv[3]) if len(argv) > 3 else 1
    os.makedirs(outdir, exist_ok=True)
    for m in generate(n, seed):
        with open(os.path.join(outdir, "%05d.eml" % (m.index + 1)), "wb") as f:
            f.write(m.raw)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
