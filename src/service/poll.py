"""One poll of one channel: read the channel, take the lease, look at every message, end the session
cleanly (DESIGN §1, §6). Every poll status is decided here: ``ok``, ``inactive``, ``locked``,
``invalid_config`` (an invalid item, or none with that id) and ``error``.
"""

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from domain.channel import Channel, InvalidChannel, load_channel
from domain.errors import ChannelFailure, ConnectionLost, LetterShopError, TransientError
from domain.ledger import LedgerEntry
from domain.mailbox_memory import MailboxMemory
from domain.outcomes import PollResult
from domain.senders import normalization_notes
from service.decide import Decider, script_seconds
from service.message import Checkpoint, MessageSettler
from service.ports import (
    Archive,
    Lease,
    Ledger,
    Mailbox,
    MailboxSession,
    MemoryStore,
    MessageRef,
    ReplyLimiter,
    ReplySender,
    ScriptRunner,
    SerialCounter,
)
from service.retrieval import RetrievalFailures
from service.screening import queue, recognition, save_memory
from service.telemetry import logger


@dataclass(frozen=True)
class Ports:
    """The outside world of one poll."""

    mailbox: Mailbox
    archive: Archive
    replies: ReplySender
    serials: SerialCounter
    scripts: ScriptRunner
    ledger: Ledger
    lease: Lease
    limiter: ReplyLimiter
    memory: MemoryStore


class Wiring(Protocol):
    """Where a poll finds its channel item and the outside world (``app.root`` builds the
    real one; unit tests pass fakes)."""

    def channel_item(self, channel_id: str) -> Mapping[str, Any] | None: ...

    def ports(self, channel: Channel) -> Ports:
        """The adapters of one channel; reads its secrets (``ChannelFailure`` when one is missing)."""
        ...


def _no_checkpoint(step: str) -> None:
    """Production runs pass no checkpoint; the crash tests pass one that stops the process."""


def poll(
    channel_id: str,
    wiring: Wiring,
    *,
    now: Callable[[], datetime],
    time_left: Callable[[], float],
    lease_seconds: float,
    checkpoint: Checkpoint = _no_checkpoint,
) -> PollResult:
    """Poll the channel ``channel_id`` once, whatever state its item is in, and say what happened.
    Every connection of the poll is opened with the settings of the item it has just read."""
    try:
        item = wiring.channel_item(channel_id)
        if item is None:
            logger.error("no channel item with this id; nothing polled")
            return PollResult(
                channel_id, status="invalid_config", error=f"channel {channel_id} does not exist"
            )
        channel = load_channel(item)
        notes = normalization_notes(item.get("allowed_senders"))
        if notes:
            logger.info(
                "allowed_senders entries are used in their normalised form: %s",
                ", ".join(f"{typed!r} -> {normalised!r}" for typed, normalised in notes),
                extra={"allowed_senders_normalised": dict(notes)},
            )
        if not channel.active:
            logger.info("channel is not active; its mailbox is not polled")
            return PollResult(channel_id, status="inactive")
        return poll_channel(
            channel,
            wiring.ports(channel),
            now=now,
            time_left=time_left,
            lease_seconds=lease_seconds,
            checkpoint=checkpoint,
        )
    except InvalidChannel as error:
        logger.error(
            "channel configuration is invalid; its mailbox is not polled",
            extra={"errors": [{"field": field, "reason": reason} for field, reason in error.errors]},
        )
        return PollResult(channel_id, status="invalid_config", error=str(error))
    except ChannelFailure as error:
        _log_channel_failure(error)
        return PollResult(channel_id, status="error", error=str(error), setting=error.setting)
    except LetterShopError as error:
        logger.error("poll failed: %s", error)
        return PollResult(channel_id, status="error", error=str(error))


def _log_channel_failure(error: ChannelFailure) -> None:
    logger.error(
        "the channel failed; no message is charged for it, they wait until %s is fixed: %s",
        error.setting or "the channel",
        error,
        extra={"setting": error.setting},
    )


def poll_channel(
    channel: Channel,
    ports: Ports,
    *,
    now: Callable[[], datetime],
    time_left: Callable[[], float],
    lease_seconds: float,
    checkpoint: Checkpoint = _no_checkpoint,
) -> PollResult:
    """Poll the channel's mailbox once and return what happened.

    The poll logs in and lists the mailbox first: when every message on it is one it remembers as
    foreign (``MailboxMemory``, as decided with the channel's recognition settings) or skips as
    unretrievable (``RetrievalFailures``), there is nothing to do, and it ends without taking the
    lease. With work, only one poll of a channel runs at a time (``lease_seconds``: a little longer
    than the function may run). The messages are looked at in the memory's order (``screening``:
    what older ones the last poll did not reach, a bounded number, then the new ones). ``time_left``
    answers how many seconds the poll may still start a new message in; the poll stops taking
    messages when it reaches zero or ``max_messages_per_poll`` is reached (skipped messages count
    for neither), and ends the POP3 session with ``QUIT`` so that deletions commit.
    """
    result = PollResult(channel_id=channel.channel_id)
    late: list[LedgerEntry] = []
    try:
        with ports.mailbox.session() as session:
            refs = session.messages()
            stored = ports.memory.load(channel.channel_id) if refs else MailboxMemory()
            retrievals = RetrievalFailures(stored.deciding(recognition(channel)), channel)
            waiting, later = queue(refs, retrievals, result)
            if not waiting:
                logger.debug("nothing new on the server", extra={"messages": len(refs)})
                return result
            owner = uuid.uuid4().hex
            if not ports.lease.acquire(channel.channel_id, owner, lease_seconds):
                logger.warning("another poll of this channel is running; this one changes nothing")
                return PollResult(channel.channel_id, status="locked")
            try:
                looked: list[MessageRef] = []
                try:
                    _poll(
                        channel=channel,
                        ports=ports,
                        session=session,
                        waiting=waiting,
                        looked=looked,
                        retrievals=retrievals,
                        late=late,
                        result=result,
                        poll_id=owner,
                        now=now,
                        time_left=time_left,
                        checkpoint=checkpoint,
                    )
                finally:
                    unreached = (waiting + later)[len(looked) :]
                    next_up = unreached[0].uid if unreached else ""
                    save_memory(
                        channel,
                        ports.memory,
                        before=stored,
                        after=retrievals.memory,
                        refs=refs,
                        next_up=next_up,
                    )
            finally:
                _release(channel, ports, owner)
    except ConnectionLost as error:
        logger.error("mail server connection lost; no deletion of this poll is committed: %s", error)
        result.status, result.error, result.deleted = "error", str(error), 0
    finally:
        ports.replies.close()
        _record_late(ports, late)
    logger.info("poll finished", extra=result.as_dict())
    return result


def _poll(
    *,
    channel: Channel,
    ports: Ports,
    session: MailboxSession,
    waiting: list[MessageRef],
    looked: list[MessageRef],
    retrievals: RetrievalFailures,
    late: list[LedgerEntry],
    result: PollResult,
    poll_id: str,
    now: Callable[[], datetime],
    time_left: Callable[[], float],
    checkpoint: Checkpoint,
) -> None:
    settler = MessageSettler(
        channel=channel,
        session=session,
        archive=ports.archive,
        ledger=ports.ledger,
        replies=ports.replies,
        serials=ports.serials,
        decider=Decider(channel, ports.scripts, ports.limiter, time_left),
        result=result,
        poll_id=poll_id,
        now=now,
        checkpoint=checkpoint,
        retrievals=retrievals,
        late=late,
    )
    foreign: list[str] = []
    try:
        for ref in waiting:
            if result.recognized >= channel.max_messages_per_poll:
                logger.info(
                    "message limit of this poll reached", extra={"limit": channel.max_messages_per_poll}
                )
                break
            if time_left() <= script_seconds(channel):
                logger.warning("time budget of this poll used up; the rest waits for the next poll")
                break
            result.seen += 1
            looked.append(ref)
            with _message_keys(ref):
                keep_going, ours = _handle_or_stop(settler, ref, result)
            if not ours:
                foreign.append(ref.uid)
            if not keep_going:
                break
    finally:
        retrievals.memory = retrievals.memory.with_foreign(foreign)
    checkpoint("before_quit")


def _record_late(ports: Ports, entries: list[LedgerEntry]) -> None:
    """One more try, together, for the settled entries the ledger did not take in time."""
    if not entries:
        return
    try:
        ports.ledger.save_all(entries)
    except TransientError as error:
        logger.error("settled messages not recorded in the ledger: %s", error)


def _release(channel: Channel, ports: Ports, owner: str) -> None:
    try:
        ports.lease.release(channel.channel_id, owner)
    except TransientError as error:
        logger.warning("lease not released; it expires by itself: %s", error)


def _handle_or_stop(settler: MessageSettler, ref: MessageRef, result: PollResult) -> tuple[bool, bool]:
    """Handle one message: (go on, a LetterShop message). Going on is ``False`` when the channel
    failed (say, a refused SMTP login): the poll stops. The messages settled so far keep their
    counts, and QUIT still commits them."""
    try:
        return True, settler.handle(ref)
    except ChannelFailure as error:
        _log_channel_failure(error)
        result.status, result.error, result.setting = "error", str(error), error.setting
        return False, True


@contextmanager
def _message_keys(ref: MessageRef) -> Iterator[None]:
    logger.append_keys(message_key=ref.uid or f"#{ref.number}")
    try:
        yield
    finally:
        logger.remove_keys(["message_key", "message_sha256"])
