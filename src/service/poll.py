"""One poll of one channel: look at every message, decide, answer, archive, delete (DESIGN §1, §6)."""

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import BinaryIO, cast

from domain.attachments import ParsedMessage, parse_message
from domain.channel import Channel
from domain.errors import ConfigurationError, PermanentError, RejectedMessage, TransientError
from domain.inbound import Headers, is_recognized, parse_headers, rejection_reason
from domain.outcomes import Outcome, PollResult
from domain.reply import FileReport, ReplyContext, reply_with_error, reply_with_exports
from domain.shipments import SerialSource, process_import
from service.ports import Archive, Mailbox, MailboxSession, MessageRef, ReplySender
from service.telemetry import logger

SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Ports:
    """The outside world of one poll."""

    mailbox: Mailbox
    archive: Archive
    replies: ReplySender
    serials: SerialSource


def poll_channel(
    channel: Channel,
    ports: Ports,
    *,
    now: Callable[[], datetime],
    time_left: Callable[[], float],
) -> PollResult:
    """Poll the channel's mailbox once and return what happened.

    ``time_left`` answers how many seconds the poll may still start a new message in; the poll
    stops taking messages when it reaches zero or ``max_messages_per_poll`` is reached, and always
    ends the POP3 session cleanly so that deletions commit.
    """
    result = PollResult(channel_id=channel.channel_id)
    with ports.mailbox.session() as session:
        run = _Poll(channel, ports, session, result, now)
        for ref in session.messages():
            if result.recognized >= channel.max_messages_per_poll:
                logger.info(
                    "message limit of this poll reached", extra={"limit": channel.max_messages_per_poll}
                )
                break
            if time_left() <= 0:
                logger.warning("time budget of this poll used up; the rest waits for the next poll")
                break
            result.seen += 1
            with _message_keys(ref):
                run.handle(ref)
    logger.info("poll finished", extra=result.as_dict())
    return result


@contextmanager
def _message_keys(ref: MessageRef) -> Iterator[None]:
    logger.append_keys(message_key=ref.uid or f"#{ref.number}")
    try:
        yield
    finally:
        logger.remove_keys(["message_key", "message_sha256"])


@dataclass
class _Message:
    """One recognised message while it is handled: where it is, what it is, its archived raw bytes."""

    ref: MessageRef
    headers: Headers
    received: datetime
    raw: BinaryIO
    digest: str = ""


@dataclass
class _Poll:
    channel: Channel
    ports: Ports
    session: MailboxSession
    result: PollResult
    now: Callable[[], datetime]

    def handle(self, ref: MessageRef) -> None:
        """Bring one message to exactly one outcome; only a deferred message stays on the server."""
        channel = self.channel
        headers = parse_headers(self.session.headers(ref.number))
        if not is_recognized(
            headers.subject, exclusive_account=channel.exclusive_account, keyword=channel.subject_keyword
        ):
            logger.debug("not a LetterShop message; left on the server untouched")
            return
        self.result.recognized += 1
        try:
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as raw:
                outcome = self._settle(_Message(ref, headers, self.now(), cast(BinaryIO, raw)))
        except TransientError as error:
            logger.warning("message deferred: %s", error, extra={"outcome": Outcome.DEFERRED.value})
            outcome = Outcome.DEFERRED
        except ConfigurationError:
            raise
        except Exception:
            logger.exception("unexpected error; message kept on the server", extra={"outcome": "deferred"})
            outcome = Outcome.DEFERRED
        self.result.count(outcome)
        if outcome is not Outcome.DEFERRED:
            self.session.delete(ref.number)
            self.result.deleted += 1

    def _settle(self, message: _Message) -> Outcome:
        channel = self.channel
        self.session.retrieve(message.ref.number, message.raw)
        message.digest = _sha256(message.raw)
        logger.append_keys(message_sha256=message.digest)
        if message.ref.size > channel.max_message_bytes:
            return self._reject(
                message,
                f"message of {message.ref.size} bytes is larger than max_message_bytes "
                f"({channel.max_message_bytes})",
            )
        sender, reason = rejection_reason(
            message.headers,
            allowed_senders=channel.allowed_senders,
            require_authenticated_sender=channel.require_authenticated_sender,
            trusted_authserv_ids=channel.trusted_authserv_ids,
        )
        if reason is not None or sender is None:
            return self._reject(message, reason or "no sender")
        try:
            parsed = parse_message(message.raw.read(), channel.import_file_patterns)
        except RejectedMessage as error:
            return self._reject(message, str(error))
        self.ports.archive.store_inbound(channel.channel_id, message.digest, message.raw, message.received)
        return self._answer(message, parsed, sender)

    def _answer(self, message: _Message, parsed: ParsedMessage, sender: str) -> Outcome:
        channel = self.channel
        context = ReplyContext(
            sender_address=channel.sender_address,
            recipient=sender,
            subject=parsed.headers.subject,
            message_id=parsed.headers.message_id,
            references=parsed.headers.references,
            reply_message_id=make_msgid(domain=channel.sender_address.rpartition("@")[2]),
            date=message.received,
        )
        if not parsed.import_files:
            found = ", ".join(parsed.other_attachments) or "no attachments"
            patterns = ", ".join(channel.import_file_patterns)
            problem = f"No import file was found (import files are named {patterns}; found: {found})."
            logger.warning("message failed: no import file", extra={"outcome": "failed", "found": found})
            self._send(reply_with_error(context, problem), context)
            return Outcome.FAILED

        reports = [self._process(file.filename, file.content) for file in parsed.import_files]
        processed = [report.processed for report in reports if report.processed is not None]
        if not processed:
            logger.warning("message failed: no import file could be processed", extra={"outcome": "failed"})
            self._send(
                reply_with_error(context, "None of the import files could be processed.", reports), context
            )
            return Outcome.FAILED
        for export in processed:
            self.ports.archive.store_export(
                channel.channel_id, message.digest, export.export_name, export.export_bytes, message.received
            )
        self._send(reply_with_exports(context, reports), context)
        files = [{"name": p.import_name, "accepted": p.accepted, "rejected": p.rejected} for p in processed]
        logger.info("message processed", extra={"outcome": Outcome.PROCESSED.value, "files": files})
        return Outcome.PROCESSED

    def _send(self, reply: EmailMessage, context: ReplyContext) -> None:
        """Send a reply; a recipient refused for good is logged, the message stays archived."""
        try:
            self.ports.replies.send(reply, sender=context.sender_address, recipient=context.recipient)
        except PermanentError as error:
            logger.error("reply could not be delivered: %s", error, extra={"recipient": context.recipient})

    def _process(self, filename: str, content: bytes) -> FileReport:
        try:
            processed = process_import(filename, content, self.ports.serials)
        except PermanentError as error:
            logger.warning("import file failed: %s", error, extra={"import_file": filename})
            return FileReport(import_name=filename, error=str(error))
        return FileReport(import_name=filename, processed=processed)

    def _reject(self, message: _Message, reason: str) -> Outcome:
        details = {
            "channel_id": self.channel.channel_id,
            "reason": reason,
            "from": message.headers.get_all("From"),
            "subject": message.headers.subject,
            "message_id": message.headers.message_id,
            "sha256": message.digest,
            "received": message.received.isoformat(),
        }
        key = self.ports.archive.quarantine(
            self.channel.channel_id, message.digest, message.raw, details, message.received
        )
        logger.warning(
            "message rejected: %s", reason, extra={"outcome": Outcome.REJECTED.value, "quarantine": key}
        )
        return Outcome.REJECTED


def _sha256(raw: BinaryIO) -> str:
    raw.seek(0)
    digest = hashlib.file_digest(raw, "sha256").hexdigest()  # type: ignore[arg-type]  # BinaryIO has readinto
    raw.seek(0)
    return digest
