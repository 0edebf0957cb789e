"""One recognised message from RETR to DELE: a state machine kept in the ledger (DESIGN §6).

The ledger entry's stage only moves forward, one small step per stage::

    received --answer--> answered --send--> replied --delete--> done

* ``answer``: screen the sender, archive the raw message (a small one's copy is on its way since
  RETR, sent on a thread of its own while the ledger is claimed and the files are processed:
  ``Upload``; waited for before the answer is stored), process its import files (each file's
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
import io
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import BinaryIO, cast

from aws_lambda_powertools.metrics import MetricUnit

from domain.bounds import MAX_SCREENED_HEADER_BYTES
from domain.channel import Channel
from domain.errors import ConnectionLost, LetterShopError, ReplyTooLarge, TransientError, UndeliverableReply
from domain.inbound import is_recognized, parse_headers
from domain.ledger import LedgerEntry, Stage
from domain.outcomes import Outcome, PollResult
from domain.reply import reply_bytes, reply_too_large
from service.decide import Decider, Decision, reply_context, screen
from service.failures import Consequence, consequence_of
from service.in_flight import Handover, InFlight, Upload
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
    _handover: Handover | None = field(default=None, init=False)  # the last reply's record on its way

    def handle(self, ref: MessageRef) -> Handled:
        """Bring one message to its single outcome, or leave it on the server for the next poll
        (``OURS``); ``FOREIGN`` for a message that is not a LetterShop message (left untouched).
        On a shared account the message is screened by its headers (``TOP``) before it is
        downloaded; on an exclusive one every message is LetterShop's, so no ``TOP`` is asked and the
        headers are read from the downloaded message (one round trip less per message).

        Raises ``ChannelFailure`` (the poll must stop) or ``ConnectionLost`` (the session is gone).
        """
        channel = self.channel
        if ref.subject is not None and not is_recognized(
            ref.subject, exclusive_account=channel.exclusive_account, keyword=channel.subject_keyword
        ):  # the listing gave the subject (Graph): a colleague's mail costs no request of its own
            logger.debug("not a LetterShop message (its listed subject); left on the server untouched")
            return Handled.FOREIGN
        headers = None
        # Screened before download on a shared account (never RETR a colleague's mail), unless the
        # listing's subject already did (Graph): then the headers come with the download.
        if not channel.exclusive_account and ref.subject is None:
            try:
                headers = parse_headers(self.session.headers(ref.number))
            except TransientError as error:
                logger.warning("headers not readable; the message waits for the next poll: %s", error)
                return Handled.OURS
            if not is_recognized(headers.subject, exclusive_account=False, keyword=channel.subject_keyword):
                logger.debug("not a LetterShop message; left on the server untouched")
                return Handled.FOREIGN
        self.result.recognized += 1
        if headers is not None and screen(channel, headers, ref.size)[0] is not None:
            self.replies.prepare()  # a reply is likely: its connection logs in meanwhile
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as spool:
            message = InFlight(ref, self.now(), cast(BinaryIO, spool), headers)
            try:
                try:
                    self._settle(message)
                finally:
                    self._forget_upload(message)
            except Exception as error:  # every error goes to the one mapping
                self._on_failure(message, error)
        return Handled.OURS

    # ------------------------------------------------------------------ the steps

    def _settle(self, message: InFlight) -> None:
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
            self._send(message, hand_over=True)
            return  # its DELE follows the replied record (``_finish_handover``)
        self._delete(message)

    def _retrieve(self, message: InFlight) -> LedgerEntry:
        """RETR into the spool, then claim these bytes in the ledger (one write that also reads):
        the entry as it was before the claim, or a fresh one."""
        try:
            self.session.retrieve(message.ref.number, message.raw)
        except ConnectionLost:
            self.retrievals.count_failure(message.ref)
            raise
        self._finish_handover()  # the last reply's record was written meanwhile: its DELE now
        message.raw.seek(0)
        message.digest = hashlib.file_digest(message.raw, "sha256").hexdigest()  # type: ignore[arg-type]  # BinaryIO has readinto
        logger.append_keys(message_sha256=message.digest)
        if message.screened is None:  # an exclusive account's message: no TOP asked, its headers are here
            message.raw.seek(0)
            message.screened = parse_headers(message.raw.read(MAX_SCREENED_HEADER_BYTES))
        self.checkpoint("retrieved")
        self._start_upload(message)
        known = self.ledger.claim(self.channel.channel_id, message.digest, self.poll_id, message.received)
        message.entry = known or LedgerEntry.first_seen(self.channel.channel_id, message.digest)
        return message.entry

    def _answer(self, message: InFlight) -> None:
        """received -> answered (or replied, for a rejected message): decide and store the answer."""
        channel = self.channel
        # the size the listing gave, or (a listing without sizes: Graph) the size downloaded
        size = max(message.ref.size, message.raw.seek(0, 2))
        message.raw.seek(0)
        sender, reason = screen(channel, message.headers, size)
        if sender is None:
            self._quarantine(message, reason or "rejected")
            return
        if message.upload is None:
            self.archive.store_inbound(channel.channel_id, message.digest, message.raw, message.received)
            self.checkpoint("archived")
        decision = self.decider.decide(
            message.raw,  # read in pieces from its start, never whole (domain.attachments)
            sender,
            message.received,
            lambda key: RecordedSerials(self.serials, key, message),
        )
        if message.uploaded():  # the copy sent after RETR, stored while the files were processed
            self.checkpoint("archived")
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

    def _send(self, message: InFlight, *, hand_over: bool = False) -> None:
        """answered -> replied: the stored reply goes to the recorded recipient, and nowhere else.
        ``hand_over``: the ``replied`` record is written on a thread of its own while the next
        message is downloaded (``Handover``); its DELE waits for it."""
        entry = message.ledger_entry
        if entry.reply_key is not None and entry.recipient is not None:
            if entry.attempts:
                logger.info(
                    "sending the answer stored by an earlier attempt", extra={"attempt": entry.attempts}
                )
            data = message.reply if message.reply is not None else self.archive.load(entry.reply_key)
            self.replies.send(data, sender=self.channel.sender_address, recipient=entry.recipient)
        self.checkpoint("sent")
        if hand_over:
            self._finish_handover()  # one record on its way at a time
            replied = entry.replied()
            recorded = Upload(lambda: self._record_sent_on_the_side(message, replied), "ledger-replied")
            self._handover = Handover(message.ref, recorded)
            self.checkpoint("recording")
            return
        message.entry = self._record_sent(entry.replied())
        self.checkpoint("replied")

    def finish(self) -> None:
        """The poll looks at no more messages: the last reply's record is waited for, and its DELE
        asked (before QUIT); a session that is gone keeps the message for the next poll."""
        try:
            self._finish_handover()
        except ConnectionLost as error:
            logger.warning("the deletion waits for the next poll: %s", error)

    def _finish_handover(self) -> None:
        """Wait for the last reply's ``replied`` record, then DELE its message."""
        handover, self._handover = self._handover, None
        if handover is None:
            return
        handover.recorded.wait()
        self.checkpoint("replied")
        try:
            self.session.delete(handover.ref.number)
        except TransientError as error:
            logger.warning("the deletion waits for the next poll: %s", error)
            return
        self.result.deleted += 1
        self.checkpoint("deleted")

    def _record_sent_on_the_side(self, message: InFlight, replied: LedgerEntry) -> None:
        """``_record_sent`` on the handover's thread; never raises (what it cannot write is late)."""
        try:
            message.entry = self._record_sent(replied)
        except Exception:
            logger.exception("reply sent but not recorded; deleting the message all the same")
            self.late.append(replied)

    def _delete(self, message: InFlight) -> None:
        """DELE (it commits at the poll's QUIT). Nothing is written: ``replied`` says all that the
        entry needs to, also for a copy of the message that comes back later."""
        self.session.delete(message.ref.number)
        self.result.deleted += 1
        self.checkpoint("deleted")

    # ------------------------------------------------------------- the one mapping

    def _on_failure(self, message: InFlight, error: Exception) -> None:
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

    def _notify(self, message: InFlight, recipient: str, error: ReplyTooLarge) -> None:
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

    def _defer(self, message: InFlight, error: str) -> None:
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

    def _delete_after_failure(self, message: InFlight) -> None:
        try:
            self._delete(message)
        except TransientError as error:
            logger.warning("the deletion waits for the next poll: %s", error)

    def _release_claim(self, message: InFlight, error: str) -> None:
        """Not the message's failure: let go of it without counting an attempt."""
        entry = message.entry
        if entry is None or entry.claim is None:
            return
        try:
            message.entry = self._save(entry.released(error, attempt=False))
        except LetterShopError as still:
            logger.warning("claim not released (the next poll counts it as an attempt): %s", still)

    # --------------------------------------------------------------- the pieces

    def _quarantine(self, message: InFlight, reason: str) -> None:
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

    def _give_up(self, message: InFlight, error: str) -> None:
        reason = f"gave up after {message.ledger_entry.attempts} attempts; last error: {error}"
        self._quarantine(message, reason)
        metrics.add_metric(name="MessageQuarantined", unit=MetricUnit.Count, value=1)

    def _store(self, message: InFlight, decision: Decision, recipient: str) -> str | None:
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

    def _recovered(self, message: InFlight, claimed: LedgerEntry) -> LedgerEntry:
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

    def _archive_again(self, message: InFlight) -> None:
        """Archive an answered message once more (it was, before its answer): never a reason to keep it."""
        if message.ledger_entry.outcome not in (Outcome.PROCESSED, Outcome.FAILED):
            return
        try:
            if not message.uploaded():
                self.archive.store_inbound(
                    self.channel.channel_id, message.digest, message.raw, message.received
                )
        except TransientError as error:
            logger.warning("archive not refreshed (it holds the message already): %s", error)

    def _start_upload(self, message: InFlight) -> None:
        """Send a small message's archive copy on its way while the ledger is claimed, when the
        message will be archived (its sender passes the screening; a rejected one is quarantined
        instead), and have the reply's connection made ready. A larger message (on disk) is stored
        in ``_answer``, in pieces, as before."""
        if screen(self.channel, message.headers, message.ref.size)[0] is None:
            return
        self.replies.prepare()  # a reply is likely: its connection logs in meanwhile
        if message.ref.size > SPOOL_IN_MEMORY_BYTES:
            return
        message.raw.seek(0)
        copy = io.BytesIO(message.raw.read())
        message.raw.seek(0)
        if copy.getbuffer().nbytes > SPOOL_IN_MEMORY_BYTES:
            return
        channel_id, digest, received = self.channel.channel_id, message.digest, message.received
        message.upload = Upload(lambda: self.archive.store_inbound(channel_id, digest, copy, received))
        self.checkpoint("archiving")

    def _forget_upload(self, message: InFlight) -> None:
        """The message is left (settled, or waiting for the next poll): an archive copy still on its
        way is waited for, so no thread outlives the message; its failure changes nothing now (a
        message that goes on to be answered waited for it in ``_answer``)."""
        try:
            message.uploaded()
        except Exception as error:  # the copy is stored again by whoever answers it
            logger.warning(
                "archive copy not stored; it is stored again before the message is answered: %s", error
            )

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
