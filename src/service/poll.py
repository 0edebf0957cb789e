"""One poll of one channel: take the lease, look at every message, end the session cleanly (DESIGN §1, §6)."""

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from domain.channel import Channel
from domain.errors import ConfigurationError, ConnectionLost, TransientError
from domain.outcomes import PollResult
from domain.shipments import SerialSource
from service.answer import Answering, script_seconds
from service.message import Checkpoint, MessageHandler
from service.ports import Archive, Lease, Ledger, Mailbox, MessageRef, ReplySender, ScriptRunner
from service.telemetry import logger


@dataclass(frozen=True)
class Ports:
    """The outside world of one poll."""

    mailbox: Mailbox
    archive: Archive
    replies: ReplySender
    serials: SerialSource
    scripts: ScriptRunner
    ledger: Ledger
    lease: Lease


def _no_checkpoint(step: str) -> None:
    """Production runs pass no checkpoint; the crash tests pass one that stops the process."""


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

    Only one poll of a channel runs at a time (``lease_seconds``: a little longer than the function
    may run). ``time_left`` answers how many seconds the poll may still start a new message in; the
    poll stops taking messages when it reaches zero or ``max_messages_per_poll`` is reached, and
    ends the POP3 session with ``QUIT`` so that deletions commit.
    """
    owner = uuid.uuid4().hex
    if not ports.lease.acquire(channel.channel_id, owner, lease_seconds):
        logger.warning("another poll of this channel is running; mailbox not touched")
        return PollResult(channel.channel_id, status="locked")
    try:
        result = _poll(channel, ports, now, time_left, checkpoint)
    finally:
        try:
            ports.lease.release(channel.channel_id, owner)
        except TransientError as error:
            logger.warning("lease not released; it expires by itself: %s", error)
    logger.info("poll finished", extra=result.as_dict())
    return result


def _poll(
    channel: Channel,
    ports: Ports,
    now: Callable[[], datetime],
    time_left: Callable[[], float],
    checkpoint: Checkpoint,
) -> PollResult:
    result = PollResult(channel_id=channel.channel_id)
    try:
        with ports.mailbox.session() as session:
            handler = MessageHandler(
                channel=channel,
                session=session,
                archive=ports.archive,
                ledger=ports.ledger,
                replies=ports.replies,
                answering=Answering(channel, ports.serials, ports.scripts, time_left),
                result=result,
                now=now,
                checkpoint=checkpoint,
            )
            for ref in session.messages():
                if result.recognized >= channel.max_messages_per_poll:
                    logger.info(
                        "message limit of this poll reached", extra={"limit": channel.max_messages_per_poll}
                    )
                    break
                if time_left() <= script_seconds(channel):
                    logger.warning("time budget of this poll used up; the rest waits for the next poll")
                    break
                result.seen += 1
                with _message_keys(ref):
                    if not _handle_or_stop(handler, ref, result):
                        break
            checkpoint("before_quit")
    except ConnectionLost as error:
        logger.error("mail server connection lost; no deletion of this poll is committed: %s", error)
        result.status, result.error, result.deleted = "error", str(error), 0
    return result


def _handle_or_stop(handler: MessageHandler, ref: MessageRef, result: PollResult) -> bool:
    """Handle one message; ``False`` when the channel's configuration stops the poll (say, a refused
    SMTP login). The messages settled so far keep their counts, and QUIT still commits them."""
    try:
        handler.handle(ref)
    except ConfigurationError as error:
        logger.error("poll stopped: %s", error)
        result.status, result.error = "error", str(error)
        return False
    return True


@contextmanager
def _message_keys(ref: MessageRef) -> Iterator[None]:
    logger.append_keys(message_key=ref.uid or f"#{ref.number}")
    try:
        yield
    finally:
        logger.remove_keys(["message_key", "message_sha256"])
