"""Issue 10, point 1: a message is parsed from its file in pieces, large bodies stay on disk, and
the reply is built with one copy of each export; none of it changes what comes out.

The figure itself (peak RSS growth of a real poll, at most 6 times the import) is ``make bench``'s;
here each saving is shown to give exactly the result of the way it replaces, and the parse of a
large attachment is shown to hold the decoded file and little else (tracemalloc, not time).
"""

from __future__ import annotations

import base64
import io
import random
import tempfile
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given

import domain.bounds
from devstack.samples import partner_mail
from domain.attachments import ParsedMessage, parse_message
from domain.reply import (
    FileReport,
    ReplyContext,
    exports_reply_bytes,
    reply_bytes,
    reply_with_exports,
)
from domain.shipments import ProcessedFile
from tests import corpus
from tests.unit.test_mime_properties import Mail, mails
from tests.unit.tnef_samples import tnef

PATTERNS = ("*.csv", "*.txt")
TOP = (
    b"From: orders@partner.example\r\nTo: lettershop@operator.example\r\nSubject: LetterShop import\r\n"
    b"MIME-Version: 1.0\r\n"
)


@pytest.fixture
def every_body_spooled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every leaf body of more than 0 bytes is kept in its file: the streamed paths run for all."""
    monkeypatch.setattr(domain.bounds, "_SPOOL_BODY_BYTES", 0)


def parsed_in_memory(raw: bytes) -> ParsedMessage:
    """``parse_message`` with every body read as text, as the standard parser keeps it."""
    saved = domain.bounds._SPOOL_BODY_BYTES
    domain.bounds._SPOOL_BODY_BYTES = 1 << 62
    try:
        return parse_message(raw, PATTERNS)
    finally:
        domain.bounds._SPOOL_BODY_BYTES = saved


def parsed_streamed(raw: bytes) -> ParsedMessage:
    """``parse_message`` from a file on disk, every body spooled (the fixture)."""
    with tempfile.TemporaryFile() as file:
        file.write(raw)
        return parse_message(file, PATTERNS)


def outcome(parse: object, raw: bytes) -> object:
    try:
        return parse(raw)  # type: ignore[operator]
    except Exception as error:  # the same error, or the same result
        return (type(error), str(error))


def multipart(*parts: bytes, boundary: bytes = b"b1") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    head = TOP + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
    return head + body + b"--" + boundary + b"--\r\n"


def attachment(name: bytes, body: bytes, cte: bytes = b"base64", kind: bytes = b"text/csv") -> bytes:
    return (
        b"Content-Type: " + kind + b"\r\nContent-Transfer-Encoding: " + cte + b"\r\n"
        b'Content-Disposition: attachment; filename="' + name + b'"\r\n\r\n' + body
    )


CSV = ("reference;name\r\n" + "".join(f"R-{n};Name {n} Zürich\r\n" for n in range(400))).encode()
B64 = base64.encodebytes(CSV)  # LF line ends, 76 characters
B64_CRLF = B64.replace(b"\n", b"\r\n")
QP = CSV.replace(b"\xc3\xbc", b"=C3=BC")
UU = b"begin 644 a.csv\r\n#86)C\r\n`\r\nend\r\n"
JUNK = B64_CRLF[:300] + b"*!\r\n" + B64_CRLF[300:]

# Bodies each decoding path must read exactly as email's get_payload(decode=True) (or our own
# lenient decoder) does: clean base64, junk and padding in odd places, other encodings.
SAMPLES = {
    "clean base64, CRLF": multipart(attachment(b"a.csv", B64_CRLF)),
    "clean base64, LF": multipart(attachment(b"a.csv", B64)).replace(b"\r\n", b"\n"),
    "base64, bare CR line ends": multipart(attachment(b"a.csv", B64.replace(b"\n", b"\r"))),
    "base64 without its padding": multipart(attachment(b"a.csv", base64.b64encode(CSV[:-1]).rstrip(b"="))),
    "base64 one character too long": multipart(attachment(b"a.csv", base64.b64encode(CSV) + b"Q")),
    "base64 with junk characters": multipart(attachment(b"a.csv", JUNK)),
    "base64 with padding inside": multipart(attachment(b"a.csv", base64.b64encode(b"ab") + B64_CRLF)),
    "base64 with blanks": multipart(attachment(b"a.csv", B64_CRLF.replace(b"\r\n", b" \r\n"))),
    "base64 written BASE64 ": multipart(attachment(b"a.csv", B64_CRLF, cte=b"BASE64 ")),
    "8bit": multipart(attachment(b"a.csv", CSV, cte=b"8bit")),
    "no encoding, no final line break": TOP + b"Content-Type: text/csv; name=a.csv\r\n\r\n" + CSV.rstrip(),
    "quoted-printable": multipart(attachment(b"a.csv", QP, cte=b"quoted-printable")),
    "uuencode": multipart(attachment(b"a.csv", UU, cte=b"x-uuencode")),
    "no close boundary": multipart(attachment(b"a.csv", B64_CRLF)).removesuffix(b"--b1--\r\n"),
    "two files, nested": multipart(
        b'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n--b2\r\n'
        + attachment(b"a.csv", B64_CRLF)
        + b"\r\n--b2\r\n"
        + attachment(b"b.txt", CSV, cte=b"binary")
        + b"\r\n--b2--\r\n",
        attachment(b"c.pdf", B64_CRLF, kind=b"application/pdf"),
    ),
    "forwarded, base64": multipart(
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(multipart(attachment(b"inner.csv", B64_CRLF))).replace(b"\n", b"\r\n")
    ),
    "forwarded, quoted-printable": multipart(
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + multipart(attachment(b"inner.csv", B64_CRLF)).replace(b"=", b"=3D")
    ),
    "winmail.dat": multipart(
        attachment(
            b"winmail.dat",
            base64.encodebytes(tnef((b"t.csv", CSV, None))).replace(b"\n", b"\r\n"),
            kind=b"application/ms-tnef",
        )
    ),
    "header only, no body": TOP,
    "a long header line": TOP.replace(b"Subject: ", b"Subject: " + b"x" * 300_000) + b"\r\nbody\r\n",
    "a line that is no header ends the header": TOP + b"not a header line\r\n\r\n" + CSV,
}


@pytest.mark.parametrize("name", SAMPLES)
def test_given_a_body_kept_on_disk_when_parsed_from_a_file_then_the_same_result_as_in_memory(
    every_body_spooled: None, name: str
) -> None:
    raw = SAMPLES[name]

    assert outcome(parsed_streamed, raw) == outcome(parsed_in_memory, raw)


def test_given_a_clean_base64_import_when_parsed_from_a_file_then_the_file_is_decoded_exactly(
    every_body_spooled: None,
) -> None:
    parsed = parsed_streamed(SAMPLES["clean base64, CRLF"])

    assert [file.content for file in parsed.import_files] == [CSV]


@given(mails(wild=True))
def test_given_generated_mail_when_parsed_from_a_file_with_bodies_on_disk_then_the_same_result(
    generated: tuple[bytes, Mail],
) -> None:
    raw, _ = generated
    saved = domain.bounds._SPOOL_BODY_BYTES
    domain.bounds._SPOOL_BODY_BYTES = 0
    try:
        streamed = outcome(parsed_streamed, raw)
    finally:
        domain.bounds._SPOOL_BODY_BYTES = saved
    assert streamed == outcome(parsed_in_memory, raw)


@pytest.mark.parametrize("relative", corpus.message_names())
def test_given_a_real_world_mail_when_parsed_from_a_file_with_bodies_on_disk_then_the_same_result(
    mail_corpus: Path, every_body_spooled: None, relative: str
) -> None:
    raw = (mail_corpus / relative).read_bytes()

    assert outcome(parsed_streamed, raw) == outcome(parsed_in_memory, raw)


def test_given_a_large_attachment_when_parsed_from_a_file_then_little_more_than_the_file_is_held() -> None:
    # Given a message carrying a 4 MB import, on disk
    data = ("reference;name\r\n" + "".join(f"R-{n};Name {n}\r\n" for n in range(250_000))).encode()
    raw = partner_mail(attachments=[("orders.csv", data)])
    with tempfile.TemporaryFile() as file:
        file.write(raw)
        del raw
        # When it is parsed from the file
        tracemalloc.start()
        try:
            parsed = parse_message(file, PATTERNS)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # Then the decoded file is all it holds, give or take the pieces read (the text of the message
    # and the lines of its base64 body took about 4 times the file before)
    assert [file.content for file in parsed.import_files] == [data]
    assert peak < 1.5 * len(data)


# ---------------------------------------------------------------- the reply, built with one copy

CONTEXT = ReplyContext(
    sender_address="lettershop@operator.example",
    recipient="orders@partner.example",
    subject="LetterShop import",
    message_id="<m1@partner.example>",
    references="<m0@partner.example>",
    reply_message_id="<r1.lettershop-reply@operator.example>",
    date=datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
)


def processed(name: str, export: bytes) -> ProcessedFile:
    return ProcessedFile(name, name.rsplit(".", 1)[0] + "_export.csv", export, 2, 1, Decimal("3.40"))


EXPORT = b"reference;status;shipment_id\r\n" + b"".join(
    f"R-{n};ACCEPTED;LA{n:08d}5CH;Zürich\r\n".encode() for n in range(3_000)
)
REPLIES = {
    "one export": [FileReport("orders.csv", processed=processed("orders.csv", EXPORT))],
    "an export of 57 bytes": [FileReport("a.csv", processed=processed("a.csv", EXPORT[:57]))],
    "an empty export": [FileReport("a.csv", processed=processed("a.csv", b""))],
    "exports and a failed file": [
        FileReport("a.csv", processed=processed("a.csv", EXPORT)),
        FileReport("b.csv", error="b.csv: no valid header"),
        FileReport("a.txt", processed=processed("a.txt", EXPORT[: len(EXPORT) // 3])),
    ],
}


@pytest.mark.parametrize("name", REPLIES)
@pytest.mark.parametrize("recipient", ["orders@partner.example", "bestellung@bäckerei.example"])
def test_given_exports_when_the_reply_is_built_with_one_copy_then_the_bytes_of_the_plain_way(
    name: str, recipient: str
) -> None:
    context = ReplyContext(**{**CONTEXT.__dict__, "recipient": recipient})
    reports = REPLIES[name]

    random.seed(10)  # the MIME boundary is drawn from `random`
    plain = reply_bytes(reply_with_exports(context, reports))
    random.seed(10)
    streamed = exports_reply_bytes(context, reports)

    assert streamed == plain


def test_given_a_large_export_when_the_reply_is_built_then_one_copy_of_it_is_held() -> None:
    export = EXPORT * 40  # about 4 MB
    reports = [FileReport("orders.csv", processed=processed("orders.csv", export))]

    tracemalloc.start()
    try:
        reply = exports_reply_bytes(CONTEXT, reports)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # the reply itself (the export in base64, 4/3 of it) and pieces; the plain way held four copies
    assert len(reply) > len(export) * 4 // 3
    assert peak < len(reply) + len(export) // 4
    assert io.BytesIO(reply).read(5) == b"From:"
