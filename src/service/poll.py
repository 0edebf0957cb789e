"""One poll of one channel: read the channel, take the lease, look at every message, end the session
cleanly (DESIGN §1, §6). Every poll status is decided here: ``ok``, ``inactive``, ``locked``,
``invalid_config`` (an invalid item, or none with that id) and ``error``.

* ``poll_channel(channel_id, wiring)``: the use case the poll handler and ``lettershop poll`` run —
  read the channel's item, build its ports, poll its mailbox;
* ``poll_mailbox(channel, ports)``: the mailbox part, for a channel already read (also run by the
  dry run and the replay, on their own ports);
* ``poll_ended(result, wiring)``: what follows every real poll (its status recorded, the secrets
  forgotten after a failed setting), run by the handler and ``lettershop poll`` alike.
"""

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from domain.channel import Channel, InvalidChannel, load_channel
from domain.errors import ChannelFailure, ConnectionLost, LetterShopError, TransientError
from domain.ledger import LedgerEntry
from domain.mailbox_memory import MailboxMemory
from domain.outcomes import PollResult
from domain.senders import normalization_notes
from service.decide import Decider, script_seconds
from service.message import Checkpoint, Handled, MessageSettler
from service.ports import ExpectsHeaders, MailboxSession, MessageRef, PollEndWiring, Ports, Wiring
from service.retrieval import RetrievalFailures
from service.screening import queue, recognition, save_memory
from service.telemetry import logger


def _no_checkpoint(step: str) -> None:
    """Production runs pass no checkpoint; the crash tests pass one that stops the process."""


def poll_channel(
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
            return PollResult(channel_id, status="inactive", interval_minutes=channel.poll_interval_minutes)
        result = poll_mailbox(
            channel,
            wiring.ports(channel),
            now=now,
            time_left=time_left,
            lease_seconds=lease_seconds,
            checkpoint=checkpoint,
        )
        result.interval_minutes = channel.poll_interval_minutes
        return result
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


def poll_ended(result: PollResult, wiring: PollEndWiring, *, at: datetime) -> None:
    """After a real poll: when it failed on a setting, the secrets are read afresh by the next one
    (a rotated password fails one poll, not an hour of them); and the result is recorded as the
    channel's status for ``lettershop channel list`` (the log may skip what says nothing new).
    Never raises: a status that cannot be written is logged."""
    if result.status == "error" and result.setting:
        wiring.credentials().forget()
    try:
        wiring.status_log().record(result, at)
    except LetterShopError as error:
        logger.warning("channel status not recorded: %s", error)


def _log_channel_failure(error: ChannelFailure) -> None:
    logger.error(
        "the channel failed; no message is charged for it, they wait until %s is fixed: %s",
        error.setting or "the channel",
        error,
        extra={"setting": error.setting},
    )


def poll_mailbox(
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
            run = PollRun(
                channel=channel,
                ports=ports,
                session=session,
                result=result,
                poll_id=owner,
                retrievals=retrievals,
                waiting=waiting,
                late=late,
                now=now,
                time_left=time_left,
                checkpoint=checkpoint,
            )
            try:
                try:
                    _look_at_messages(run)
                finally:
                    unreached = (waiting + later)[len(run.looked) :]
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
                _release_lease(channel, ports, owner)
    except ConnectionLost as error:
        logger.error("mail server connection lost; no deletion of this poll is committed: %s", error)
        result.status, result.error, result.deleted = "error", str(error), 0
    finally:
        ports.replies.close()
        _record_late(ports, late)
    logger.info("poll finished", extra=result.as_dict())
    return result


@dataclass
class PollRun:
    """One poll's state while it looks at the messages of its session: what it reads and what it fills in."""

    channel: Channel
    ports: Ports
    session: MailboxSession
    result: PollResult
    poll_id: str  # the lease's owner, and the claim each message's ledger entry gets
    retrievals: RetrievalFailures
    waiting: list[MessageRef]  # the messages to look at, in order
    late: list[LedgerEntry]  # settled entries the ledger did not take in time, tried again at the end
    now: Callable[[], datetime]
    time_left: Callable[[], float]
    checkpoint: Checkpoint
    looked: list[MessageRef] = field(default_factory=list)  # those looked at, in order


def _look_at_messages(run: PollRun) -> None:
    channel, ports, result = run.channel, run.ports, run.result
    settler = MessageSettler(
        channel=channel,
        session=run.session,
        archive=ports.archive,
        ledger=ports.ledger,
        replies=ports.replies,
        serials=ports.serials,
        decider=Decider(channel, ports.scripts, ports.limiter, run.time_left),
        result=result,
        poll_id=run.poll_id,
        now=run.now,
        checkpoint=run.checkpoint,
        retrievals=run.retrievals,
        late=run.late,
    )
    foreign: list[str] = []
    try:
        for index, ref in enumerate(run.waiting):
            if result.recognized >= channel.max_messages_per_poll:
                logger.info(
                    "message limit of this poll reached", extra={"limit": channel.max_messages_per_poll}
                )
                break
            if run.time_left() <= script_seconds(channel):
                logger.warning("time budget of this poll used up; the rest waits for the next poll")
                break
            result.seen += 1
            run.looked.append(ref)
            if not channel.exclusive_account and index + 1 < len(run.waiting):
                _expect_headers(run.session, run.waiting[index + 1].number)
            with _message_keys(ref):
                handled = _handle_or_stop(settler, ref, result)
            if handled is Handled.FOREIGN:
                foreign.append(ref.uid)
            if handled is Handled.STOP:
                break
    finally:
        settler.finish()  # the last reply's record, and its DELE
        run.retrievals.memory = run.retrievals.memory.with_foreign(foreign)
    run.checkpoint("before_quit")


def _expect_headers(session: MailboxSession, number: int) -> None:
    """On a shared account the next message's headers (``TOP``) may come with this one's ``RETR``."""
    if isinstance(session, ExpectsHeaders):
        session.expect_headers(number)


def _record_late(ports: Ports, entries: list[LedgerEntry]) -> None:
    """One more try, together, for the settled entries the ledger did not take in time."""
    if not entries:
        return
    try:
        ports.ledger.save_all(entries)
    except TransientError as error:
        logger.error("settled messages not recorded in the ledger: %s", error)


def _release_lease(channel: Channel, ports: Ports, owner: str) -> None:
    try:
        ports.lease.release(channel.channel_id, owner)
    except TransientError as error:
        logger.warning("lease not released; it expires by itself: %s", error)


def _handle_or_stop(settler: MessageSettler, ref: MessageRef, result: PollResult) -> Handled:
    """Handle one message; ``STOP`` when the channel failed (say, a refused SMTP login): the poll
    stops. The messages settled so far keep their counts, and QUIT still commits them."""
    try:
        return settler.handle(ref)
    except ChannelFailure as error:
        _log_channel_failure(error)
        result.status, result.error, result.setting = "error", str(error), error.setting
        return Handled.STOP


@contextmanager
def _message_keys(ref: MessageRef) -> Iterator[None]:
    logger.append_keys(message_key=ref.uid or f"#{ref.number}")
    try:
        yield
    finally:
        logger.remove_keys(["message_key", "message_sha256"])
