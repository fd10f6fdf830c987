#!/usr/bin/env python3
"""Desktop search on maildisk, for real:

  - recoll indexes the mount (a root mount, run as root) and finds a
    message by a word of its subject, by a word inside a text/plain
    attachment, and by a word inside a PDF attachment (recoll's PDF filter
    runs pdftotext): each query answers exactly the .eml file of the mount
    that holds it and, beside it, what of its parts holds the word: the
    parts directory (a subject word is in its name), the attachment's file
    (recoll reads both; the parts alone: test_parts_search.py);
  - mu (maildir-utils) indexes the store's Maildir folders and finds the
    message by subject, at its store path (mutt, mu and notmuch read the
    store without the mount);
  - notmuch on the mount is tested in test_users.py.

The attachments are built here: a text file, and a one-page PDF whose text
pdftotext is first shown to extract, so a failure points at the indexer."""

import email.policy
import os
import subprocess
import sys
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as L  # noqa: E402
from mountlib import H, check, log  # noqa: E402

import mailgen  # noqa: E402

SUBJECT_WORD = "xylophonic"
TEXT_WORD = "quokkaberry"
PDF_WORD = "marzipanolith"


def pdf_with_text(text):
    """A minimal one-page PDF 1.4 showing text in Helvetica."""
    content = b"BT /F1 24 Tf 72 700 Td (%s) Tj ET" % text.encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def message(subject, body, when, attachment=None):
    m = EmailMessage(policy=email.policy.SMTP)
    m["From"] = "Rita Search <rita@example.org>"
    m["To"] = "rita@example.org"
    m["Subject"] = subject
    m["Date"] = format_datetime(when)
    m["Message-ID"] = make_msgid(domain="search.example")
    m.set_content(body)
    if attachment:
        data, maintype, subtype, filename = attachment
        m.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return m.as_bytes()


def run(argv, env=None, timeout=120):
    log("$ " + " ".join(argv))
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def recoll_find(confdir, query):
    """The file paths recollq answers for query (one per hit)."""
    rc, out, err = run(["recollq", "-c", confdir, "-b", query])
    check(rc == 0, "recollq %s" % query, err)
    paths = []
    for line in out.splitlines():
        if line.startswith("file://"):
            paths.append(line[len("file://"):])
    log("recollq %s -> %s" % (query, paths))
    return sorted(set(paths))


def main(ctx):
    L.require_fuse()
    for tool, pkg in (("recollindex", "recollcmd"), ("recollq", "recollcmd"), ("mu", "maildir-utils"),
                      ("pdftotext", "poppler-utils")):
        if not L.have(tool):
            raise H.Failure("%s is not installed (Debian package %s)" % (tool, pkg))
    pdf = pdf_with_text("Budget %s appendix" % PDF_WORD)
    pdf_path = os.path.join(ctx.tmp, "check.pdf")
    with open(pdf_path, "wb") as f:
        f.write(pdf)
    rc, out, err = run(["pdftotext", pdf_path, "-"])
    check(rc == 0 and PDF_WORD in out, "pdftotext reads the test PDF", out, err)

    t0 = datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc)
    wanted = [
        message("Quarterly %s report" % SUBJECT_WORD, "The figures are attached.\n", t0),
        message("Notes from the meeting", "See the notes.\n", t0.replace(hour=11),
                (("Action items: buy %s jam.\n" % TEXT_WORD).encode(), "text", "plain", "notes.txt")),
        message("Budget draft", "The draft is attached.\n", t0.replace(hour=12),
                (pdf, "application", "pdf", "budget.pdf")),
    ]
    filler = [m.raw for m in mailgen.generate(6, seed=77, max_size=20000)]
    dc = ctx.dovecot()
    dc.add_user("rita", "pw-rita")
    dc.append("rita", "INBOX", wanted + filler)

    conf = ctx.config([H.Account("rita", "mail", dc.url("imaps"), "rita", "pw-rita", ["INBOX"], dc.ca_pem)])
    store = H.Store(ctx.store_dir())
    mp = os.path.join(ctx.tmp, "mnt")
    m = L.Mount(ctx, conf, mp).start()
    L.wait_synced(store, [("rita", "mail")])
    rows = store.messages("rita", "mail", "INBOX", H.ACTIVE)
    check(len(rows) == len(wanted) + len(filler), "rows after the sync", len(rows))
    inbox = os.path.join(mp, "rita", "mail", "INBOX")

    def mount_path_of(raw):
        for r in rows:
            p = os.path.join(inbox, r["view_name"])
            with open(p, "rb") as f:
                if f.read() == raw:
                    return p
        raise H.Failure("no file in %s holds the message" % inbox)
    by_subject, by_text, by_pdf = (mount_path_of(raw) for raw in wanted)

    def parts_of(eml, *name):
        """The message's parts directory, or a file in it."""
        return os.path.join(inbox, L.stem(os.path.basename(eml)), *name)

    # recoll on the mount.
    confdir = os.path.join(ctx.tmp, "recoll")
    os.mkdir(confdir, 0o700)
    with open(os.path.join(confdir, "recoll.conf"), "w") as f:
        f.write("topdirs = %s\nskippedNames = .status\nloglevel = 3\n" % os.path.join(mp, "rita"))
    env = dict(os.environ, HOME=ctx.tmp, RECOLL_CONFDIR=confdir)
    rc, out, err = run(["recollindex", "-c", confdir, "-z"], env=env, timeout=150)
    check(rc == 0, "recollindex", out[-2000:], err[-4000:])
    check(recoll_find(confdir, SUBJECT_WORD) == sorted([by_subject, parts_of(by_subject)]),
          "recoll finds the subject word (the .eml, and its parts directory by name)")
    check(recoll_find(confdir, "subject:" + SUBJECT_WORD) == [by_subject], "recoll subject: query")
    check(recoll_find(confdir, TEXT_WORD) == sorted([by_text, parts_of(by_text, "notes.txt")]),
          "recoll finds the word in the text attachment (the .eml and the part)")
    check(recoll_find(confdir, PDF_WORD) == sorted([by_pdf, parts_of(by_pdf, "budget.pdf")]),
          "recoll finds the word in the PDF attachment (the .eml and the part)")
    check(recoll_find(confdir, "nosuchwordanywhere") == [], "recoll: no hit for an absent word")
    m.unmount()

    # mu on the store (no mount needed).
    muhome = os.path.join(ctx.tmp, "mu")
    maildir = os.path.join(ctx.store_dir(), "mail", "rita")
    rc, out, err = run(["mu", "init", "--muhome=" + muhome, "--maildir=" + maildir], env=env)
    check(rc == 0, "mu init", out, err)
    rc, out, err = run(["mu", "index", "--muhome=" + muhome], env=env, timeout=150)
    check(rc == 0, "mu index", out, err)
    rc, out, err = run(["mu", "find", "--muhome=" + muhome, "--fields=l", "subject:" + SUBJECT_WORD], env=env)
    check(rc == 0, "mu find subject:%s" % SUBJECT_WORD, out, err)
    row = [r for r in rows if store.path(r["store_file"]) and
           open(store.path(r["store_file"]), "rb").read() == wanted[0]]
    check(len(row) == 1, "the subject message's store file")
    check([os.path.realpath(p) for p in out.splitlines()] == [os.path.realpath(store.path(row[0]["store_file"]))],
          "mu finds the message at its store path", out)
    rc, out, err = run(["mu", "find", "--muhome=" + muhome, "--fields=l", "subject:nosuchwordanywhere"],
                       env=env)
    check(rc != 0 and out.strip() == "", "mu: no hit for an absent word", out)


if __name__ == "__main__":
    H.run(main, deadline=240)
