"""The answer a partner receives: export files and a summary, or an error report (DESIGN §6).

Headers are set through ``email.message.EmailMessage`` only, and every value taken from the
partner's message is stripped of line breaks first, so nothing can inject a header.

Partner text in the body is data, never formulas (DESIGN §6): file names and references are shortened
to 40 characters, then ``…`` (``domain.shipments.partner_text``), a file name that would start a line
with ``=``, ``+``, ``-`` or ``@`` is quoted, and a last guard quotes any body line that still starts
with one of them (or with a tab or a carriage return), e.g. a line of a script's error output.
"""

import re
from collections.abc import Sequence
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
    lines = ["Your import has been processed.", ""]
    lines += [_describe(report) for report in reports]
    message = _base(context, "\n".join(lines))
    taken: set[str] = set()
    for report in reports:
        if report.processed is not None:
            message.add_attachment(
                report.processed.export_bytes,
                maintype="text",
                subtype="csv",
                filename=safe_filename(report.processed.export_name, taken),
            )
    return message


def reply_with_error(context: ReplyContext, problem: str, reports: Sequence[FileReport] = ()) -> EmailMessage:
    """The answer to a message that could not be processed: what went wrong and what to do."""
    lines = ["Your message could not be processed.", "", problem]
    if reports:
        lines += ["", *(_describe(report) for report in reports)]
    lines += ["", "Please correct the file and send it again. Nothing from this message has been imported."]
    return _base(context, "\n".join(lines))


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
