"""What a fresh recognised message deserves: rejection, an error report or exports (DESIGN §4 to §6).

It reads the message, runs scripts and processing, and says what to send to whom. Storing and
sending is the caller's part, so that the answer can be kept before it is sent. The serials of each
import file come from ``serials_for(file_key)``, which the caller records in the ledger, so a retry
of the same file gets the same block.

Caps (DESIGN §3) come first: a message with more import files than ``max_import_files`` fails as a
whole before any file is looked at, and a file with more data rows than ``max_rows_per_file`` fails
alone (``process_import(max_rows=...)``); neither spends a serial. So does a file whose valid rows
would pass the channel's budget of shipment ids for the day (``max_shipments_per_day``): the
counter refuses it, naming the budget and what is left.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import make_msgid
from typing import IO, Literal, Protocol

from domain.attachments import ParsedMessage, parse_message
from domain.channel import Channel
from domain.errors import PermanentError, RejectedMessage, ScriptFailed, TransientError
from domain.inbound import Headers, rejection_reason
from domain.outcomes import Outcome
from domain.reply import (
    REPLY_ID_MARK,
    FileReport,
    ReplyContext,
    answers_our_reply,
    exports_reply_bytes,
    reply_bytes,
    reply_with_error,
    safe_filename,
)
from domain.senders import reply_address_problem
from domain.serial_budget import DailyBudget
from domain.shipments import SerialSource, process_import
from domain.shipments.partner_text import shorten
from service.ports import ReplyLimiter, ScriptCall, ScriptRunner
from service.telemetry import logger


@dataclass(frozen=True)
class Decision:
    """The decided outcome: a reason to reject, or the reply's bytes (with the export files it carries)."""

    outcome: Outcome
    reason: str | None = None
    reply: bytes | None = None


class FileSerials(Protocol):
    """Where the serials of one import file come from (``service.serial_blocks.RecordedSerials``)."""

    def within(self, budget: DailyBudget) -> SerialSource: ...


SerialsFor = Callable[[str], FileSerials]


def screen(channel: Channel, headers: Headers, size: int) -> tuple[str, None] | tuple[None, str]:
    """``(sender, None)`` for a message to answer, ``(None, reason)`` for one to reject unanswered."""
    if size > channel.max_message_bytes:
        return None, f"message of {size} bytes is larger than max_message_bytes ({channel.max_message_bytes})"
    sender, reason = rejection_reason(
        headers,
        allowed_senders=channel.allowed_senders,
        require_authenticated_sender=channel.require_authenticated_sender,
        trusted_authserv_ids=channel.trusted_authserv_ids,
    )
    if reason is not None or sender is None:
        return None, reason or "no sender address"
    problem = reply_address_problem(sender, ascii_only=channel.reply_via == "ses")
    if problem is not None:
        return None, problem
    return sender, None


def reply_context(channel: Channel, headers: Headers, recipient: str, date: datetime) -> ReplyContext:
    """The channel answers ``recipient`` about the message with these headers, in a reply of its own."""
    return ReplyContext(
        sender_address=channel.sender_address,
        recipient=recipient,
        subject=headers.subject,
        message_id=headers.message_id,
        references=headers.references,
        reply_message_id=make_msgid(REPLY_ID_MARK, domain=channel.sender_address.rpartition("@")[2]),
        date=date,
    )


def script_seconds(channel: Channel) -> float:
    """Seconds one import file may spend in the channel's scripts: it starts only when they fit."""
    scripts = sum(1 for name in (channel.prescript, channel.postscript) if name)
    return float(scripts * channel.script_timeout_seconds)


@dataclass(frozen=True)
class Decider:
    """Decides what the fresh messages of one channel deserve."""

    channel: Channel
    scripts: ScriptRunner
    limiter: ReplyLimiter
    time_left: Callable[[], float]

    def decide(
        self, raw: bytes | IO[bytes], sender: str, received: datetime, serials_for: SerialsFor
    ) -> Decision:
        """Parse, run scripts, process; a message that cannot be parsed is rejected, and an error
        reply beyond the channel's hourly limit for this sender is not sent (rejected instead).

        ``raw`` is the whole message, as bytes or as a binary file that is read from its start in
        pieces (``domain.attachments.parse_message``), never whole."""
        decision = self._decide(raw, sender, received, serials_for)
        if decision.outcome is Outcome.FAILED and not self._may_send_error_reply(sender, received):
            limit = self.channel.max_error_replies_per_hour
            reason = f"error replies to {sender} are limited to {limit} per hour; this one was not sent"
            logger.warning("message rejected: %s", reason)
            return Decision(Outcome.REJECTED, reason=reason)
        return decision

    def _may_send_error_reply(self, sender: str, received: datetime) -> bool:
        limit = self.channel.max_error_replies_per_hour
        hour = received.strftime("%Y-%m-%dT%H")
        return limit > 0 and self.limiter.allow(self.channel.channel_id, sender, hour, limit)

    def _decide(
        self, raw: bytes | IO[bytes], sender: str, received: datetime, serials_for: SerialsFor
    ) -> Decision:
        channel = self.channel
        try:
            parsed = parse_message(raw, channel.import_file_patterns)
        except RejectedMessage as error:
            return Decision(Outcome.REJECTED, reason=str(error))
        if not parsed.import_files and answers_our_reply(parsed.headers):
            reason = "automatic: it answers one of our replies and carries no import file (no loop)"
            return Decision(Outcome.REJECTED, reason=reason)
        context = reply_context(channel, parsed.headers, sender, received)
        if parsed.defects:
            logger.info("message parsed with defects", extra={"defects": list(parsed.defects)})
        if not parsed.import_files:
            found = ", ".join(shorten(name) for name in parsed.other_attachments) or "no attachments"
            patterns = ", ".join(channel.import_file_patterns)
            problem = f"No import file was found (import files are named {patterns}; found: {found})."
            logger.warning("message failed: no import file", extra={"found": found})
            return Decision(Outcome.FAILED, reply=reply_bytes(reply_with_error(context, problem)))

        count, cap = len(parsed.import_files), channel.max_import_files
        if count > cap:
            problem = (
                f"This message carries {count} import files; at most {cap} are taken from one message "
                "(max_import_files). None of them has been processed: send them in several messages."
            )
            extra = {"import_files": count, "max_import_files": cap}
            logger.warning("message failed: too many import files", extra=extra)
            return Decision(Outcome.FAILED, reply=reply_bytes(reply_with_error(context, problem)))

        budget = DailyBudget.on(channel.channel_id, channel.max_shipments_per_day, received)
        taken: set[str] = set()
        reports = []
        for index, file in enumerate(parsed.import_files):
            if file.problem is not None:  # it arrived cut short: nothing to process
                logger.warning("import file failed: %s", file.problem, extra={"import_file": file.filename})
                reports.append(FileReport(import_name=file.filename, error=file.problem))
                continue
            serials = serials_for(f"{index}:{file.filename}").within(budget)
            report = self._process(file.filename, file.content, sender, parsed, serials)
            reports.append(_unique_export(report, taken))
        exports = [report.processed for report in reports if report.processed is not None]
        if not exports:
            logger.warning("message failed: no import file could be processed")
            problem = "None of the import files could be processed."
            return Decision(Outcome.FAILED, reply=reply_bytes(reply_with_error(context, problem, reports)))
        files = [{"name": p.import_name, "accepted": p.accepted, "rejected": p.rejected} for p in exports]
        logger.info("message processed", extra={"files": files})
        # The exports are not kept with the decision: once in the reply, their bytes (and the import
        # files' contents behind them) are let go before the reply is stored and sent.
        return Decision(Outcome.PROCESSED, reply=exports_reply_bytes(context, reports))

    def _process(
        self, filename: str, content: bytes, sender: str, parsed: ParsedMessage, serials: SerialSource
    ) -> FileReport:
        """Prescript, processing, postscript (DESIGN §4, §5); a failure fails this file only."""
        channel = self.channel

        def script(stage: Literal["pre", "post"], name: str, file_name: str, data: bytes) -> bytes:
            call = ScriptCall(
                stage=stage,
                name=name,
                use_standard_script=channel.use_standard_script,
                partner_id=channel.partner,
                channel_id=channel.channel_id,
                filename=file_name,
                sender=sender,
                subject=parsed.headers.subject,
                timeout_seconds=channel.script_timeout_seconds,
            )
            return self.scripts.run(call, data)

        if self.time_left() <= script_seconds(channel):
            raise TransientError(f"{filename}: too little time left in this poll for the channel's scripts")
        try:
            if channel.prescript:
                content = script("pre", channel.prescript, filename, content)
            processed = process_import(filename, content, serials, max_rows=channel.max_rows_per_file)
            if channel.postscript:
                export = script("post", channel.postscript, processed.export_name, processed.export_bytes)
                processed = replace(processed, export_bytes=export)
        except PermanentError as error:
            kind = "script failed" if isinstance(error, ScriptFailed) else "import file failed"
            logger.warning("%s: %s", kind, error, extra={"import_file": filename})
            return FileReport(import_name=filename, error=str(error))
        return FileReport(import_name=filename, processed=processed)


def _unique_export(report: FileReport, taken: set[str]) -> FileReport:
    """``orders.csv`` and ``orders.txt`` both export ``orders_export.csv``: the second becomes
    ``orders_export (2).csv``, so neither attachment nor archived export overwrites the other.

    The name is the attachment's name (``reply.safe_filename``: at most 120 characters, extension
    kept), decided here once, so archive, summary and attachment agree and two long names that only
    differ beyond the cut stay two files."""
    if report.processed is None:
        return report
    name = safe_filename(report.processed.export_name, taken)
    return replace(report, processed=replace(report.processed, export_name=name))
