"""One recognised message from RETR to DELE: a state machine kept in the ledger (DESIGN §6).

The ledger entry's stage only moves forward, one small step per stage::

    received --answer--> answered --send--> replied --delete--> done

* ``answer``: screen the sender, archive the raw message, process its import files (each file's
  serial block recorded before use) and store the reply, which carries the export files, with its
  one recipient; a rejected message is quarantined and goes straight to ``replied`` (nothing to
  send). The ledger is not written for ``answered`` when the send follows at once: the stored reply
  records recipient and outcome itself, a failure writes the entry, and a poll that finds the claim
  of one that died looks for that stored reply first (``_recovered``).
* ``send``: send the stored reply, byte for byte, to the recorded recipient; record it as sent.
* ``delete``: DELE; the outcome is counted once the server took the deletion.

A later poll reads the entry and goes on from its stage: an answer is never computed twice, a reply
never sent twice once recorded, shipment ids never issued twice for one file. Every failure goes to
one place, ``_on_failure``, which does what ``service.failures.consequence_of`` says.
"""

import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import BinaryIO, cast

from aws_lambda_powertools.metrics import MetricUnit

from domain.channel import Channel
from domain.errors import ConnectionLost, LetterShopError, ReplyTooLarge, TransientError, UndeliverableReply
from domain.inbound import Headers, is_recognized, parse_headers
from domain.ledger import LedgerEntry, Stage
from domain.outcomes import Outcome, PollResult
from domain.reply import reply_bytes, reply_too_large
from service.decide import Decider, Decision, reply_context, screen
from service.failures import Consequence, consequence_of
from service.ports import Archive, Ledger, MailboxSession, MessageRef, ReplySender, SerialCounter
from service.retrieval import RetrievalFailures
from service.serial_blocks import RecordedSerials
from service.telemetry import logger, metrics

SPOOL_IN_MEMORY_BYTES = 1024 * 1024  # a larger raw message waits on disk (/tmp), read in pieces
RECORD_ATTEMPTS = 3

Checkpoint = Callable[[str], None]


class Handled(Enum):
    """What handling one message came to, for the poll's loop."""

    FOREIGN = "foreign"  # not a LetterShop message: left untouched, remembered as foreign
    OURS = "ours"  # a LetterShop message: settled, or left on the server for the next poll
    STOP = "stop"  # the channel failed on it: the poll stops (``service.poll``)


@dataclass
class _Message:
    """One message being settled; ``entry`` is its ledger entry as last saved (None before RETR)."""

    ref: MessageRef
    headers: Headers
    received: datetime
    raw: BinaryIO
    digest: str = ""
    entry: LedgerEntry | None = None
    reply: bytes | None = None  # the stored reply, while this poll still holds it in memory

    @property
    def ledger_entry(self) -> LedgerEntry:
        if self.entry is None:
            raise RuntimeError("the message has no ledger entry before it was retrieved")
        return self.entry


@dataclass
class MessageSettler:
    """Settles the messages of one POP3 session of one channel, one at a time."""

    channel: Channel
    session: MailboxSession
    archive: Archive
    ledger: Ledger
    replies: ReplySender
    serials: SerialCounter
    decider: Decider
    result: PollResult
    poll_id: str
    now: Callable[[], datetime]
    checkpoint: Checkpoint

    retrievals: RetrievalFailures
    late: list[LedgerEntry]  # settled entries the ledger did not take in time (``_record_sent``)

    def handle(self, ref: MessageRef) -> Handled:
        """Bring one message to its single outcome, or leave it on the server for the next poll
        (``OURS``); ``FOREIGN`` for a message that is not a LetterShop message (left untouched).

        Raises ``ChannelFailure`` (the poll must stop) or ``ConnectionLost`` (the session is gone).
        """
        channel = self.channel
        if ref.subject is not None and not is_recognized(
            ref.subject, exclusive_account=channel.exclusive_account, keyword=channel.subject_keyword
        ):
            logger.debug("not a LetterShop message (its listed subject); left on the server untouched")
            return Handled.FOREIGN
        try:
            headers = parse_headers(self.session.headers(ref.number))
        except TransientError as error:
            logger.warning("headers not readable; the message waits for the next poll: %s", error)
            return Handled.OURS
        if not is_recognized(
            headers.subject, exclusive_account=channel.exclusive_account, keyword=channel.subject_keyword
        ):
            logger.debug("not a LetterShop message; left on the server untouched")
            return Handled.FOREIGN
        self.result.recognized += 1
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as spool:
            message = _Message(ref, headers, self.now(), cast(BinaryIO, spool))
            try:
                self._settle(message)
            except Exception as error:  # every error goes to the one mapping
                self._on_failure(message, error)
        return Handled.OURS

    # ------------------------------------------------------------------ the steps

    def _settle(self, message: _Message) -> None:
        entry = self._retrieve(message)
        if entry.settled:
            logger.info("answered by an earlier poll; deleting it now", extra={"stage": entry.stage.value})
            self._archive_again(message)
        else:
            claimed = entry.claimed(self.poll_id, message.received)
            if claimed.attempts != entry.attempts or claimed.dead_claims:  # another poll died on it
                claimed = self._recovered(message, claimed)
            entry = message.entry = claimed
            if entry.exhausted(self.channel.max_attempts):
                self._give_up(message, entry.last_error or "too many attempts")
        if message.ledger_entry.stage is Stage.RECEIVED:
            self._answer(message)
        if message.ledger_entry.stage is Stage.ANSWERED:
            self._send(message)
        self._delete(message)

    def _retrieve(self, message: _Message) -> LedgerEntry:
        """RETR into the spool, then claim these bytes in the ledger (one write that also reads):
        the entry as it was before the claim, or a fresh one."""
        try:
            self.session.retrieve(message.ref.number, message.raw)
        except ConnectionLost:
            self.retrievals.count_failure(message.ref)
            raise
        message.raw.seek(0)
        message.digest = hashlib.file_digest(message.raw, "sha256").hexdigest()  # type: ignore[arg-type]  # BinaryIO has readinto
        logger.append_keys(message_sha256=message.digest)
        self.checkpoint("retrieved")
        known = self.ledger.claim(self.channel.channel_id, message.digest, self.poll_id, message.received)
        message.entry = known or LedgerEntry.first_seen(self.channel.channel_id, message.digest)
        return message.entry

    def _answer(self, message: _Message) -> None:
        """received -> answered (or replied, for a rejected message): decide and store the answer."""
        channel = self.channel
        # the size the listing gave, or (a listing without sizes: Graph) the size downloaded
        size = max(message.ref.size, message.raw.seek(0, 2))
        message.raw.seek(0)
        sender, reason = screen(channel, message.headers, size)
        if sender is None:
            self._quarantine(message, reason or "rejected")
            return
        self.archive.store_inbound(channel.channel_id, message.digest, message.raw, message.received)
        self.checkpoint("archived")
        decision = self.decider.decide(
            message.raw,  # read in pieces from its start, never whole (domain.attachments)
            sender,
            message.received,
            lambda key: RecordedSerials(self.serials, key, message),
        )
        if decision.outcome is Outcome.REJECTED:
            self._quarantine(message, decision.reason or "rejected")
            return
        reply_key = self._store(message, decision, sender)
        message.reply = decision.reply
        recipient = sender if reply_key is not None else None
        # Not written: the stored reply records its recipient, and a failure writes the entry.
        message.entry = message.ledger_entry.answered(
            decision.outcome, reply_key=reply_key, recipient=recipient
        )
        self.checkpoint("answered")
        logger.info("message %s", decision.outcome.value, extra={"outcome": decision.outcome.value})

    def _send(self, message: _Message) -> None:
        """answered -> replied: the stored reply goes to the recorded recipient, and nowhere else."""
        entry = message.ledger_entry
        if entry.reply_key is not None and entry.recipient is not None:
            if entry.attempts:
                logger.info(
                    "sending the answer stored by an earlier attempt", extra={"attempt": entry.attempts}
                )
            data = message.reply if message.reply is not None else self.archive.load(entry.reply_key)
            self.replies.send(data, sender=self.channel.sender_address, recipient=entry.recipient)
        self.checkpoint("sent")
        message.entry = self._record_sent(entry.replied())
        self.checkpoint("replied")

    def _delete(self, message: _Message) -> None:
        """DELE (it commits at the poll's QUIT). Nothing is written: ``replied`` says all that the
        entry needs to, also for a copy of the message that comes back later."""
        self.session.delete(message.ref.number)
        self.result.deleted += 1
        self.checkpoint("deleted")

    # ------------------------------------------------------------- the one mapping

    def _on_failure(self, message: _Message, error: Exception) -> None:
        """Do what the error means for this message (``service.failures``)."""
        consequence = consequence_of(error)
        entry = message.entry
        if consequence in (Consequence.STOP, Consequence.DISCONNECT):
            if entry is None or not entry.settled:
                self._release_claim(message, str(error))
                self.result.count(Outcome.DEFERRED)
            raise error
        if consequence is Consequence.NOTIFY and entry is not None and entry.recipient is not None:
            self._notify(message, entry.recipient, cast(ReplyTooLarge, error))
            return
        if consequence is Consequence.SETTLE and entry is not None:
            logger.error(
                "reply could not be delivered; the message is settled as failed: %s",
                error,
                extra={"recipient": entry.recipient},
            )
            metrics.add_metric(name="ReplyUndeliverable", unit=MetricUnit.Count, value=1)
            message.entry = self._record_sent(entry.replied(Outcome.FAILED, error=str(error)))
            self._delete_after_failure(message)
            return
        if entry is not None and entry.settled:
            logger.warning("the deletion waits for the next poll: %s", error)
            return
        if not isinstance(error, TransientError):
            logger.exception("unexpected error while handling the message")
        self._defer(
            message, str(error) if isinstance(error, TransientError) else f"unexpected error: {error!r}"
        )

    def _notify(self, message: _Message, recipient: str, error: ReplyTooLarge) -> None:
        """The reply is more than the relay takes: a short notice naming both sizes becomes the
        answer, to the recorded recipient through the same transport. It is stored (``replies/``;
        the large reply stays where it is) and recorded before it is sent, so a retry sends the
        notice, never the large reply again. A notice that fails is handled as any answer's
        failure; one that does not fit either settles the message without a reply."""
        logger.error(
            "reply too large for the relay; the partner gets a notice instead: %s",
            error,
            extra={"recipient": recipient, "reply_bytes": error.size, "limit_bytes": error.limit},
        )
        metrics.add_metric(name="ReplyTooLarge", unit=MetricUnit.Count, value=1)
        context = reply_context(self.channel, message.headers, recipient, self.now())
        notice = reply_bytes(reply_too_large(context, size=error.size, limit=error.limit))
        try:
            key = self._store(message, Decision(Outcome.FAILED, reply=notice), recipient)
            answered = message.ledger_entry.answered(Outcome.FAILED, reply_key=key, recipient=recipient)
            message.entry = self._save(replace(answered, last_error=str(error)))
            message.reply = notice
            self._send(message)
        except ReplyTooLarge as still:
            self._on_failure(message, UndeliverableReply(f"not even the notice fits: {still}"))
            return
        except Exception as failed:  # the notice's failure goes to the one mapping
            self._on_failure(message, failed)
            return
        self._delete_after_failure(message)

    def _defer(self, message: _Message, error: str) -> None:
        """Keep the message for the next poll (one attempt counted); after ``max_attempts`` quarantine it."""
        logger.warning("message deferred: %s", error, extra={"outcome": "deferred"})
        entry = message.entry
        if entry is not None:
            try:
                entry = message.entry = self._save(entry.released(error, attempt=True))
                if entry.exhausted(self.channel.max_attempts):
                    self._give_up(message, error)
                    self._delete_after_failure(message)
                    return
            except TransientError as still:
                logger.warning("attempt not recorded: %s", still)
        self.result.count(Outcome.DEFERRED)

    def _delete_after_failure(self, message: _Message) -> None:
        try:
            self._delete(message)
        except TransientError as error:
            logger.warning("the deletion waits for the next poll: %s", error)

    def _release_claim(self, message: _Message, error: str) -> None:
        """Not the message's failure: let go of it without counting an attempt."""
        entry = message.entry
        if entry is None or entry.claim is None:
            return
        try:
            message.entry = self._save(entry.released(error, attempt=False))
        except LetterShopError as still:
            logger.warning("claim not released (the next poll counts it as an attempt): %s", still)

    # --------------------------------------------------------------- the pieces

    def _quarantine(self, message: _Message, reason: str) -> None:
        """Rejected: the raw message and the reason go to the quarantine; settled, nothing to send."""
        entry = message.ledger_entry
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
        message.entry = self._record_sent(entry.replied(Outcome.REJECTED))

    def _give_up(self, message: _Message, error: str) -> None:
        reason = f"gave up after {message.ledger_entry.attempts} attempts; last error: {error}"
        self._quarantine(message, reason)
        metrics.add_metric(name="MessageQuarantined", unit=MetricUnit.Count, value=1)

    def _store(self, message: _Message, decision: Decision, recipient: str) -> str | None:
        """The reply with its export files, stored before anything is sent; its key (or None)."""
        if decision.reply is None:
            return None
        return self.archive.store_reply(
            self.channel.channel_id,
            message.digest,
            decision.reply,
            message.received,
            outcome=decision.outcome,
            recipient=recipient,
        )

    def _recovered(self, message: _Message, claimed: LedgerEntry) -> LedgerEntry:
        """Polls died on this message (one attempt more): one that had stored its answer already
        (the ledger records an answer only when something fails) has it sent now — never a new one.
        The entry is saved first with the dead polls' claims, so a look-up that fails (the message
        waits, ``_on_failure``) or a crash keeps what the next poll must look for."""
        message.entry = claimed
        self._save(claimed)
        for since in claimed.dead_claims:
            stored = self.archive.stored_reply(self.channel.channel_id, claimed.digest, since)
            if stored is not None:
                logger.info(
                    "the poll that died had stored its answer; it is sent now", extra={"reply": stored.key}
                )
                return claimed.answered(stored.outcome, reply_key=stored.key, recipient=stored.recipient)
        return claimed.none_stored_by_dead_claims()

    def _archive_again(self, message: _Message) -> None:
        """Archive an answered message once more (it was, before its answer): never a reason to keep it."""
        if message.ledger_entry.outcome not in (Outcome.PROCESSED, Outcome.FAILED):
            return
        try:
            self.archive.store_inbound(self.channel.channel_id, message.digest, message.raw, message.received)
        except TransientError as error:
            logger.warning("archive not refreshed (it holds the message already): %s", error)

    def _record_sent(self, entry: LedgerEntry) -> LedgerEntry:
        """Record a settled entry, and count its outcome (once: a settled entry is never counted
        again). It must not be deferred now, or the next poll sends it again: when the ledger does
        not take it, the poll tries once more at its end (``late``)."""
        if entry.outcome is not None:
            self.result.count(entry.outcome)
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                return self._save(entry)
            except TransientError as error:
                logger.warning("reply sent but not recorded (try %d): %s", attempt, error)
                time.sleep(0.2 * attempt)
        logger.error("reply sent but not recorded; deleting the message all the same")
        self.late.append(entry)
        return entry

    def _save(self, entry: LedgerEntry, *, quietly: bool = False) -> LedgerEntry:
        try:
            self.ledger.save(entry)
        except TransientError as error:
            if not quietly:
                raise
            logger.warning("ledger not updated (the next poll will repair it): %s", error)
        return entry
