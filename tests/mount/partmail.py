"""Messages for the parts tests (issue 15, layout in cache/parts.h), and
what each part must read back as. Standard library only.

kinds_message() builds one message with a part of every kind the layout
names, and says, leaf by leaf in tree order, the name the mount must show.
The bytes each part must read back as are not taken from what was built
but from Python's email library on the stored message (BODY.PEEK[]), as
the issue asks: get_payload(decode=True) for attachments, get_content()
encoded as UTF-8 for body text. Checked against GMime 3.2.13
(g_mime_text_part_get_text and g_mime_data_wrapper_write_to_stream) on
these messages: both keep the CRLF line ends of the stored message, and
both drop the CRLF before a boundary (RFC 2046: it belongs to the
boundary).

hostile_messages() builds the malformed set of the issue."""

import email
import email.policy
import io
import os
import struct
import sys
import zipfile
import zlib
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_desktop_search import pdf_with_text  # noqa: E402,F401

BODY_WORD = "glockenspielwurst"       # only in the text body of the kinds message
HTML_WORD = "marmaladeroof"           # only in its HTML body
ATTACH_WORD = "quetzalpickle"         # only in its notes.txt attachment
PDF_WORD = "tangerinecastle"          # only in its PDF
INNER_WORD = "walrusharmonica"        # only in the nested message's attachment
SUBJECT = "Parts of every kind"
PLACEHOLDER_2047 = "PLACEHOLDER-2047.txt"
NAME_2047 = "\u00dcberblick.txt"
ENCODED_2047 = "=?utf-8?q?=C3=9Cberblick.txt?="


def png_bytes():
    """A valid 2x1 RGB PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"\x00\xff\x00\x00\x00\x00\xff"          # one row: filter 0, red, blue
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def zip_bytes():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("inside/a.txt", "zipped text\n" * 50)
        z.writestr("b.bin", bytes(range(256)) * 4)
    return buf.getvalue()


def new_message(subject, when, sender="Rita Parts <rita@example.org>"):
    m = EmailMessage(policy=email.policy.SMTP)
    m["From"] = sender
    m["To"] = "rita@example.org"
    m["Subject"] = subject
    m["Date"] = format_datetime(when)
    m["Message-ID"] = make_msgid(domain="parts.example")
    return m


def kinds_message(when):
    """(raw bytes, top, nested): top lists (mount name, content type) for
    each leaf of the message in tree order (None as name: an unnamed
    inline part, shown as "part <n>.<ext>"); the nested message/rfc822
    is the leaf named forwarded.eml, and nested lists its own leaves."""
    inner = new_message("The forwarded one", when)
    inner.set_content("Inner body text.\n")
    inner.add_attachment(("inner attachment %s\n" % INNER_WORD).encode(), maintype="text",
                         subtype="plain", filename="inner.txt")
    nested = [("body.txt", "text/plain"), ("inner.txt", "text/plain")]

    m = new_message(SUBJECT, when)
    m.set_content("Hello,\nthe na\u00efve body with %s in it.\nBye.\n" % BODY_WORD)
    m.add_alternative("<html><body><p>The %s body.</p></body></html>\n" % HTML_WORD, subtype="html")
    top = [("body.txt", "text/plain"), ("body.html", "text/html")]

    def att(name, data, maintype, subtype, shown=None, **kw):
        if isinstance(data, str):
            m.add_attachment(data, subtype=subtype, filename=name, **kw)
        else:
            m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name, **kw)
        top.append((shown or name, "%s/%s" % (maintype, subtype)))

    att("report.pdf", pdf_with_text("Report %s" % PDF_WORD), "application", "pdf")
    att("notes.txt", ("Notes: buy %s today.\n" % ATTACH_WORD).encode(), "text", "plain")
    att("readme.txt", "seven bit\nlines\n", "text", "plain", cte="7bit")
    att("qp.txt", "quoted printable caf\u00e9 and a long line " + "z" * 90 + "\n", "text", "plain",
        cte="quoted-printable")
    att("pixel.png", png_bytes(), "image", "png")
    m.add_attachment(png_bytes()[:-4] + b"\x00\x00\x00\x01", maintype="image", subtype="png",
                     disposition="inline")
    top.append((None, "image/png"))
    att("bundle.zip", zip_bytes(), "application", "zip")
    m.add_attachment(inner, filename="forwarded.eml")
    top.append(("forwarded.eml", "message/rfc822"))
    att("r\u00e9sum\u00e9.txt", b"RFC 2231 name\n", "text", "plain")
    att(PLACEHOLDER_2047, b"RFC 2047 name\n", "text", "plain", shown=NAME_2047)
    att("../../x", b"not outside\n", "application", "octet-stream", shown="x")
    att(".hidden.txt", b"leading dot\n", "text", "plain", shown="_hidden.txt")
    att("same.txt", b"the first same\n", "text", "plain")
    att("same.txt", b"the second same\n", "text", "plain", shown="same (2).txt")
    raw = m.as_bytes()
    raw = raw.replace(('filename="%s"' % PLACEHOLDER_2047).encode(),
                      ('filename="%s"' % ENCODED_2047).encode())
    assert b"filename*=utf-8''r%C3%A9sum%C3%A9.txt" in raw, "Python no longer writes RFC 2231 names"
    return raw, top, nested


def latin1_message(when):
    m = new_message("Latin-1 body", when)
    m.set_content("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\nfor the %s\n" % "menu", charset="iso-8859-1",
                  cte="quoted-printable")
    return m.as_bytes()


def plain_message(subject, body, when):
    m = new_message(subject, when)
    m.set_content(body)
    return m.as_bytes()


def big_message(when, size):
    """(raw, data): one base64 attachment of size bytes (incompressible)."""
    data = os.urandom(size)
    m = new_message("A big attachment", when)
    m.set_content("See the attachment.\n")
    m.add_attachment(data, maintype="application", subtype="octet-stream", filename="big.bin")
    return m.as_bytes(), data


# ---------------------------------------------------------------- reading the stored message

def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def leaves(part):
    """The leaves of part in tree order; a message/rfc822 is a leaf."""
    if part.get_content_maintype() == "multipart":
        for sub in part.iter_parts():
            yield from leaves(sub)
    else:
        yield part


def expected_bytes(leaf):
    """What the mount must show for a leaf (not message/rfc822): inline
    text bodies as UTF-8 text, everything else transfer-decoded only."""
    if leaf.get_content_maintype() == "text" and not leaf.is_attachment():
        return leaf.get_content().encode("utf-8")
    return leaf.get_payload(decode=True)


def nested_raw(raw, outer):
    """The raw bytes of the first message/rfc822 part directly under
    outer (a parsed multipart of raw): after its header, up to the CRLF
    that begins the next boundary line."""
    delim = b"\r\n--" + outer.get_boundary().encode()
    for chunk in raw.split(delim)[1:]:
        chunk = chunk.split(b"\r\n", 1)[1] if b"\r\n" in chunk else b""
        head, sep, body = chunk.partition(b"\r\n\r\n")
        if sep and b"message/rfc822" in head.lower():
            return body
    raise AssertionError("no message/rfc822 part in the message")


# ---------------------------------------------------------------- hostile mail

def _hdr(subject, ctype):
    return ("From: h@example.org\r\nTo: rita@example.org\r\nSubject: %s\r\n"
            "Date: Tue, 03 Mar 2026 10:00:00 +0000\r\nMessage-ID: <%s@hostile.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: %s\r\n\r\n" % (subject, os.urandom(6).hex(), ctype)).encode()


def hostile_messages():
    """{label: raw}: the malformed mail of issue 15."""
    out = {}
    out["no-boundary"] = _hdr("no boundary", "multipart/mixed") + (
        b"--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n")
    out["boundary-million"] = _hdr("a million boundaries", 'multipart/mixed; boundary="b"') + (
        b"--b\r\n" * 1000000 + b"--b--\r\n")
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
                     b"filename=\"f.txt\"\r\n\r\npart %d\r\n" % i for i in range(10000))
    out["10000-parts"] = _hdr("ten thousand parts", 'multipart/mixed; boundary="b"') + parts + b"--b--\r\n"
    body = b"Content-Type: text/plain\r\n\r\ndeep down\r\n"
    for i in range(100):
        body = (b"Content-Type: multipart/mixed; boundary=\"d%d\"\r\n\r\n--d%d\r\n%s\r\n--d%d--\r\n"
                % (i, i, body, i))
    out["multipart-100-deep"] = _hdr("multipart 100 deep", "multipart/mixed; boundary=\"top\"") + (
        b"--top\r\n" + body + b"\r\n--top--\r\n")
    inner = b"Subject: level 0\r\nContent-Type: text/plain\r\n\r\nthe bottom\r\n"
    for i in range(1, 100):
        inner = b"Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n%s" % (i, inner)
    out["rfc822-100-deep"] = _hdr("message 100 deep", "message/rfc822") + inner
    out["bad-base64"] = _hdr("bad base64", 'multipart/mixed; boundary="b"') + (
        b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"!!!!@@@@\r\nSGVsbG8=V29ybGQ\r\n%%%%\r\nQUJD\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=\"broken.pdf\"\r\n\r\nJVBERi0x*LjQK\r\nAAA\r\n--b--\r\n")
    out["dotdot-name"] = _hdr("dot dot name", 'multipart/mixed; boundary="b"') + (
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"../../x\"\r\n\r\nx\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"..\\\\..\\\\y\"\r\n\r\ny\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"..\"\r\n\r\nz\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"a\x01b\x7fc.bin\"\r\n\r\nc\r\n--b--\r\n")
    out["1mb-name"] = _hdr("a 1 MB file name", 'multipart/mixed; boundary="b"') + (
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"" +
        b"n" * (1 << 20) + b".txt\"\r\n\r\nlong name\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename*=utf-8''" +
        b"%C3%A9" * 180000 + b".txt\r\n\r\nlong UTF-8 name\r\n--b--\r\n")
    out["garbage"] = os.urandom(3000).replace(b"\r", b"").replace(b"\n", b"\r\n") + b"\r\n"
    return out
