"""The answer a partner receives: export files and a summary, or an error report (DESIGN §6).

Headers are set through ``email.message.EmailMessage`` only, and every value taken from the
partner's message is stripped of line breaks first, so nothing can inject a header.

Partner text in the body is data, never formulas (DESIGN §6): file names and references are shortened
to 40 characters, then ``…`` (``domain.shipments.partner_text``), a file name that would start a line
with ``=``, ``+``, ``-`` or ``@`` is quoted, and a last guard quotes any body line that still starts
with one of them (or with a tab or a carriage return), e.g. a line of a script's error output.
"""

import binascii
import io
import math
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from domain.filenames import fit_name, unique_filename
from domain.headers import Headers
from domain.shipments import ProcessedFile
from domain.shipments.partner_text import as_data, leading

# Every Message-ID of ours carries this mark (``<...lettershop-reply@operator.example>``), so a
# message that answers one of our replies is known as such (DESIGN §6, "No loops").
REPLY_ID_MARK = "lettershop-reply"
_OUR_ID = re.compile(rf"\.{REPLY_ID_MARK}@", re.IGNORECASE)
_LINE_BREAKS = re.compile(r"[\r\n\t]+")
_UNSAFE_NAME = re.compile(r"[^\w.\- ()]+")
_MAX_NAME_CHARS = 120
# An attachment's base64 lines as email.contentmanager writes them: max_line_length 78 // 4 * 3 bytes.
_BASE64_LINE_BYTES = 57
_SIGNATURE = "-- \nLetterShop e-mail channel. This message was written automatically; replies are not read."


@dataclass(frozen=True)
class FileReport:
    """What happened to one import file: processed into an export, or failed with a reason."""

    import_name: str
    processed: ProcessedFile | None = None
    error: str | None = None


@dataclass(frozen=True)
class ReplyContext:
    """Who answers whom, about which message."""

    sender_address: str
    recipient: str
    subject: str
    message_id: str | None
    references: str | None
    reply_message_id: str
    date: datetime


def reply_with_exports(context: ReplyContext, reports: Sequence[FileReport]) -> EmailMessage:
    """The answer to a message with at least one processed import file."""
    return _with_exports(context, reports, lambda index, processed: processed.export_bytes)


def exports_reply_bytes(context: ReplyContext, reports: Sequence[FileReport]) -> bytes:
    """``reply_bytes(reply_with_exports(context, reports))``, the same bytes, built with one copy of
    each export in memory instead of four: the message is rendered with a short stand-in for each
    export, whose base64 line is then replaced by the export's base64 lines (76 characters, CRLF,
    as ``email`` writes them), written straight into the reply."""
    token = secrets.token_hex(12)
    stand_ins: dict[int, bytes] = {}

    def stand_in(index: int, processed: ProcessedFile) -> bytes:
        stand_ins[index] = f"lettershop-export-{index}-{token}".encode()  # one base64 line (< 57 bytes)
        return stand_ins[index]

    rendered = reply_bytes(_with_exports(context, reports, stand_in))
    exports = [report.processed for report in reports]
    spots: list[tuple[int, int, bytes]] = []
    for index, marker in stand_ins.items():
        line = binascii.b2a_base64(marker, newline=False) + b"\r\n"
        processed = exports[index]
        if rendered.count(line) != 1 or processed is None:  # never expected; the plain way then
            return reply_bytes(reply_with_exports(context, reports))
        at = rendered.index(line)
        spots.append((at, at + len(line), processed.export_bytes))
    out = io.BytesIO()
    position = 0
    for start, end, data in sorted(spots, key=lambda spot: spot[0]):
        out.write(rendered[position:start])
        _write_base64(out, data)
        position = end
    out.write(rendered[position:])
    return out.getvalue()


def _with_exports(
    context: ReplyContext,
    reports: Sequence[FileReport],
    content: Callable[[int, ProcessedFile], bytes],
) -> EmailMessage:
    lines = ["Your import has been processed.", ""]
    lines += [_describe(report) for report in reports]
    message = _base(context, "\n".join(lines))
    taken: set[str] = set()
    for index, report in enumerate(reports):
        if report.processed is not None:
            message.add_attachment(
                content(index, report.processed),
                maintype="text",
                subtype="csv",
                filename=safe_filename(report.processed.export_name, taken),
            )
    return message


def _write_base64(out: io.BytesIO, data: bytes) -> None:
    """``data`` in base64 as ``email`` writes an attachment: lines of 76 characters (57 bytes,
    ``policy.max_line_length`` 78 // 4 * 3), each ended by CRLF."""
    view = memoryview(data)
    step = _BASE64_LINE_BYTES * 1024  # whole lines: only the last one may end in padding
    width = _BASE64_LINE_BYTES // 3 * 4
    for start in range(0, len(data), step):
        encoded = binascii.b2a_base64(view[start : start + step], newline=False)
        out.write(b"\r\n".join([encoded[at : at + width] for at in range(0, len(encoded), width)]))
        out.write(b"\r\n")


def reply_with_error(context: ReplyContext, problem: str, reports: Sequence[FileReport] = ()) -> EmailMessage:
    """The answer to a message that could not be processed: what went wrong and what to do."""
    lines = ["Your message could not be processed.", "", problem]
    if reports:
        lines += ["", *(_describe(report) for report in reports)]
    lines += ["", "Please correct the file and send it again. Nothing from this message has been imported."]
    return _base(context, "\n".join(lines))


def reply_too_large(context: ReplyContext, *, size: int, limit: int | None) -> EmailMessage:
    """The short notice, without attachments, that goes instead of an answer of ``size`` bytes the
    mail server did not take (``limit``: the most it takes, None when it did not say): both sizes,
    and into how many files to split the import so each answer fits."""
    most = f"the {_amount(limit)} that our mail server takes" if limit else "what our mail server takes"
    parts = f"at least {math.ceil(size / limit)} smaller files" if limit else "smaller files"
    lines = [
        "The answer to your message could not be sent: with its export files it comes to "
        f"{_amount(size)}, more than {most}.",
        "",
        f"Please split the import into {parts} and send them again, each in a message of its own.",
        "No shipment id of this message has reached you; use those of the new answers.",
    ]
    return _base(context, "\n".join(lines))


def _amount(size: int) -> str:
    """``12.3 MB (12,345,678 bytes)``: decimal units, as mail servers state their limits."""
    rounded = f"{size / 1_000_000:.1f} MB" if size >= 1_000_000 else f"{size / 1000:.1f} kB"
    return f"{rounded} ({size:,} bytes)"


def answers_our_reply(headers: Headers) -> bool:
    """The message names one of our replies in In-Reply-To or References."""
    return any(_OUR_ID.search(message_id) for message_id in headers.replied_to)


def reply_bytes(message: EmailMessage) -> bytes:
    """The reply as it is stored and sent: UTF-8 headers (RFC 6532) only for a non-ASCII recipient,
    whose transport must then offer SMTPUTF8."""
    recipient = str(message["To"])
    return message.as_bytes(policy=policy.SMTP if recipient.isascii() else policy.SMTPUTF8)


def safe_filename(name: str, taken: set[str] | None = None) -> str:
    """A file name for an attachment: no folders, no control characters, never empty, at most 120
    characters with its extension kept when cut.

    With ``taken`` (case-folded names already used) the name is also made unique: `` (2)``, `` (3)``…
    before the extension, within the 120 characters; the result is added to ``taken``. A safe,
    unique name comes back unchanged, so the names decided once (``service.decide``) stay the same.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_NAME.sub("_", _LINE_BREAKS.sub(" ", base)).strip(" .") or "export.csv"
    candidate = fit_name(cleaned, limit=_MAX_NAME_CHARS, size=len)
    if taken is None:
        return candidate
    return unique_filename(candidate, taken, limit=_MAX_NAME_CHARS, size=len)


def _describe(report: FileReport) -> str:
    if report.processed is not None:
        return report.processed.summary()
    return f"{leading(report.import_name)}: not processed: {report.error}"


def _base(context: ReplyContext, text: str) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = context.sender_address
    message["To"] = context.recipient
    message["Subject"] = _reply_subject(context.subject)
    message["Date"] = format_datetime(context.date)
    message["Message-ID"] = context.reply_message_id
    if context.message_id:
        message["In-Reply-To"] = _one_line(context.message_id)
    if context.references:
        message["References"] = _one_line(context.references)
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    body = "\n".join(as_data(line) for line in text.split("\n"))
    message.set_content(f"{body}\n\n{_SIGNATURE}\n")
    return message


def _reply_subject(subject: str) -> str:
    flat = _one_line(subject)
    if flat.lower().startswith("re:"):
        return flat
    return f"Re: {flat}" if flat else "Re: your LetterShop import"


def _one_line(value: str) -> str:
    return _LINE_BREAKS.sub(" ", value).strip()
