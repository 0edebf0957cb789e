"""One recognised message from RETR to DELE, kept in the ledger at every step (DESIGN §6).

The order is what makes "nothing lost, nothing twice" hold when the Lambda dies at any instruction:
raw bytes archived (or quarantined) before anything else is decided; the answer — reply and export
files — stored and recorded before it is sent; the reply recorded as sent before DELE; DELE only
for settled messages. A later poll reads the ledger and continues where the dead one stopped.
"""

import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import BinaryIO, cast

from aws_lambda_powertools.metrics import MetricUnit

from domain.channel import Channel
from domain.errors import ConfigurationError, ConnectionLost, PermanentError, TransientError
from domain.inbound import Headers, is_recognized, parse_headers
from domain.ledger import LedgerEntry, Stage
from domain.outcomes import Outcome, PollResult
from service.answer import Answer, Answering, screen
from service.ports import Archive, Ledger, MailboxSession, MessageRef, ReplySender
from service.telemetry import logger, metrics

SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024
RECORD_ATTEMPTS = 3

Checkpoint = Callable[[str], None]


@dataclass
class _Message:
    ref: MessageRef
    headers: Headers
    received: datetime
    raw: BinaryIO
    digest: str = ""
    entry: LedgerEntry | None = None


@dataclass
class MessageHandler:
    """Handles the messages of one POP3 session of one channel."""

    channel: Channel
    session: MailboxSession
    archive: Archive
    ledger: Ledger
    replies: ReplySender
    answering: Answering
    result: PollResult
    now: Callable[[], datetime]
    checkpoint: Checkpoint

    def handle(self, ref: MessageRef) -> None:
        """Bring one message one step closer to its single outcome; deferred ones stay on the server."""
        channel = self.channel
        try:
            headers = parse_headers(self.session.headers(ref.number))
        except ConnectionLost:
            raise
        except TransientError as error:
            logger.warning("headers not readable; the message waits for the next poll: %s", error)
            return
        if not is_recognized(
            headers.subject, exclusive_account=channel.exclusive_account, keyword=channel.subject_keyword
        ):
            logger.debug("not a LetterShop message; left on the server untouched")
            return
        self.result.recognized += 1
        if self._unretrievable(ref):
            self.result.count(Outcome.DEFERRED)
            return
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as spool:
            message = _Message(ref, headers, self.now(), cast(BinaryIO, spool))
            try:
                outcome = self._settle(message)
            except ConnectionLost:
                self.result.count(Outcome.DEFERRED)
                raise
            except ConfigurationError:
                raise
            except TransientError as error:
                outcome = self._defer(message, str(error))
            except Exception as error:
                logger.exception("unexpected error while handling the message")
                outcome = self._defer(message, f"unexpected error: {error!r}")
        if outcome is Outcome.DEFERRED:
            self.result.count(outcome)
            return
        self._delete(message, outcome)

    def _delete(self, message: _Message, outcome: Outcome | None) -> None:
        """DELE a settled message; its outcome counts once the server took the deletion."""
        try:
            self.session.delete(message.ref.number)
        except ConnectionLost:
            raise
        except TransientError as error:
            logger.warning("deletion refused; the next poll deletes it: %s", error)
            return
        if outcome is not None:
            self.result.count(outcome)
        self.result.deleted += 1
        self.checkpoint("deleted")
        if message.entry is not None and message.entry.stage is not Stage.DONE:
            self._save(message.entry.done(), quietly=True)

    def _unretrievable(self, ref: MessageRef) -> bool:
        """A message whose RETR broke the connection ``max_attempts`` times is skipped, so it no longer
        stops every poll before the messages behind it; it stays on the server for the operator."""
        if not ref.uid:
            return False
        try:
            failures = self.ledger.retrieval_failures(self.channel.channel_id, ref.uid)
        except TransientError:
            return False
        if failures < self.channel.max_attempts:
            return False
        logger.error(
            "message cannot be retrieved (the connection broke %d times); skipped, left on the server",
            failures,
            extra={"uidl": ref.uid, "size": ref.size},
        )
        metrics.add_metric(name="MessageUnretrievable", unit=MetricUnit.Count, value=1)
        return True

    def _count_retrieval_failure(self, ref: MessageRef) -> None:
        if not ref.uid:
            return
        try:
            self.ledger.count_retrieval_failure(self.channel.channel_id, ref.uid)
        except TransientError as error:
            logger.warning("retrieval failure not recorded: %s", error)

    def _settle(self, message: _Message) -> Outcome | None:
        """The outcome to count (``None``: counted by an earlier poll) once the message may be deleted."""
        try:
            self.session.retrieve(message.ref.number, message.raw)
        except ConnectionLost:
            self._count_retrieval_failure(message.ref)
            raise
        message.raw.seek(0)
        message.digest = hashlib.file_digest(message.raw, "sha256").hexdigest()  # type: ignore[arg-type]  # BinaryIO has readinto
        logger.append_keys(message_sha256=message.digest)
        self.checkpoint("retrieved")
        known = self.ledger.get(self.channel.channel_id, message.digest)
        entry = known or LedgerEntry(self.channel.channel_id, message.digest)
        message.entry = entry
        if entry.settled:
            logger.info("answered by an earlier poll; deleting it now", extra={"stage": entry.stage.value})
            self._archive_again(message, entry)
            return entry.outcome if entry.stage is Stage.REPLIED else None
        entry = self._save(entry.claimed())
        message.entry = entry
        if entry.exhausted(self.channel.max_attempts):
            return self._give_up(message, entry.last_error or "too many attempts")
        if entry.has_answer:
            logger.info(
                "sending the answer stored by an earlier attempt", extra={"attempt": entry.attempts + 1}
            )
            if entry.reply_key:
                self._send(_stored_reply(self.archive.load(entry.reply_key)))
        else:
            entry = self._answer(message, entry)
        self.checkpoint("sent")
        message.entry = self._record_sent(entry.replied())
        self.checkpoint("replied")
        return entry.outcome

    def _archive_again(self, message: _Message, entry: LedgerEntry) -> None:
        """Archive an answered message once more (it was, before its answer): never a reason to keep it."""
        if entry.outcome not in (Outcome.PROCESSED, Outcome.FAILED):
            return
        try:
            self.archive.store_inbound(self.channel.channel_id, message.digest, message.raw, message.received)
        except TransientError as error:
            logger.warning("archive not refreshed (it holds the message already): %s", error)

    def _answer(self, message: _Message, entry: LedgerEntry) -> LedgerEntry:
        """Decide a fresh message, keep the decision, then send the reply."""
        channel = self.channel
        sender, reason = screen(channel, message.headers, message.ref.size)
        if sender is None:
            return self._quarantine(message, entry, reason or "rejected")
        self.archive.store_inbound(channel.channel_id, message.digest, message.raw, message.received)
        self.checkpoint("archived")
        message.raw.seek(0)
        answer = self.answering.answer(message.raw.read(), sender, message.received)
        if answer.outcome is Outcome.REJECTED:
            return self._quarantine(message, entry, answer.reason or "rejected")
        entry = message.entry = self._save(entry.answered(answer.outcome, self._store(message, answer)))
        self.checkpoint("answered")
        if answer.reply is not None:
            self._send(answer.reply)
        logger.info("message %s", answer.outcome.value, extra={"outcome": answer.outcome.value})
        return entry

    def _store(self, message: _Message, answer: Answer) -> str | None:
        for export in answer.exports:
            self.archive.store_export(
                self.channel.channel_id,
                message.digest,
                export.export_name,
                export.export_bytes,
                message.received,
            )
        if answer.reply is None:
            return None
        return self.archive.store_reply(
            self.channel.channel_id, message.digest, answer.reply.as_bytes(), message.received
        )

    def _send(self, reply: EmailMessage) -> None:
        """Send a reply; a recipient refused for good is logged, the message stays archived."""
        try:
            self.replies.send(reply, sender=str(reply["From"]), recipient=str(reply["To"]))
        except PermanentError as error:
            logger.error("reply could not be delivered: %s", error, extra={"recipient": str(reply["To"])})

    def _quarantine(self, message: _Message, entry: LedgerEntry, reason: str) -> LedgerEntry:
        headers = message.headers
        details = {
            "channel_id": self.channel.channel_id,
            "reason": reason,
            "from": headers.get_all("From"),
            "subject": headers.subject,
            "message_id": headers.message_id,
            "sha256": message.digest,
            "received": message.received.isoformat(),
            "attempts": entry.attempts,
        }
        key = self.archive.quarantine(
            self.channel.channel_id, message.digest, message.raw, details, message.received
        )
        logger.warning("message rejected: %s", reason, extra={"outcome": "rejected", "quarantine": key})
        return entry.answered(Outcome.REJECTED, None)

    def _give_up(self, message: _Message, error: str) -> Outcome:
        assert message.entry is not None  # noqa: S101  # set before any attempt is counted
        reason = f"gave up after {message.entry.attempts} attempts; last error: {error}"
        entry = self._quarantine(message, message.entry, reason)
        metrics.add_metric(name="MessageQuarantined", unit=MetricUnit.Count, value=1)
        message.entry = self._save(entry.replied())
        return Outcome.REJECTED

    def _defer(self, message: _Message, error: str) -> Outcome:
        """Keep the message for the next poll; after ``max_attempts`` quarantine it instead."""
        logger.warning("message deferred: %s", error, extra={"outcome": "deferred"})
        if message.entry is None:
            return Outcome.DEFERRED
        try:
            entry = self._save(message.entry.failed(error))
            message.entry = entry
            if entry.exhausted(self.channel.max_attempts):
                return self._give_up(message, error)
        except TransientError as still:
            logger.warning("attempt not recorded: %s", still)
        return Outcome.DEFERRED

    def _record_sent(self, entry: LedgerEntry) -> LedgerEntry:
        """Record a reply that went out. It must not be deferred now, or the next poll sends it again."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                return self._save(entry)
            except TransientError as error:
                logger.warning("reply sent but not recorded (try %d): %s", attempt, error)
                time.sleep(0.2 * attempt)
        logger.error("reply sent but not recorded; deleting the message all the same")
        return entry

    def _save(self, entry: LedgerEntry, *, quietly: bool = False) -> LedgerEntry:
        try:
            self.ledger.save(entry)
        except TransientError as error:
            if not quietly:
                raise
            logger.warning("ledger not updated (the next poll will repair it): %s", error)
        return entry


def _stored_reply(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.SMTP)
