"""What ``poll_channel`` needs from the outside world, as small interfaces (adapters implement them),
and the ``Wiring`` that builds them for a channel (``app.root`` builds the real one; tests pass fakes)."""

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Literal, Protocol, runtime_checkable

from domain.channel import Channel
from domain.ledger import LedgerEntry, StoredReply
from domain.mailbox_memory import MailboxMemory
from domain.outcomes import Outcome, PollResult
from domain.serial_budget import DailyBudget


@dataclass(frozen=True)
class MessageRef:
    """One message as the mailbox's listing shows it: its number in this session, size and UIDL
    (POP3), or id (Graph: its immutable id). ``size`` is 0 when the listing does not give it (then
    the size cap is applied to the downloaded bytes); ``subject`` is the decoded subject when the
    listing gives it (Graph), so a foreign message is screened out without a request of its own."""

    number: int
    size: int
    uid: str
    subject: str | None = None


class MailboxSession(Protocol):
    def messages(self) -> list[MessageRef]: ...

    def headers(self, number: int) -> bytes:
        """The header block only (``TOP n 0``): the body is not downloaded."""
        ...

    def retrieve(self, number: int, sink: BinaryIO) -> None:
        """Stream the whole raw message into ``sink`` (``RETR``)."""
        ...

    def delete(self, number: int) -> None:
        """Mark for deletion; the server commits it at ``QUIT``."""
        ...


@runtime_checkable
class ExpectsHeaders(Protocol):
    """A session that can fetch the headers asked for next together with its next command."""

    def expect_headers(self, number: int) -> None:
        """The headers of message ``number`` are asked next (a hint; ``headers`` gives them either
        way)."""
        ...


class Mailbox(Protocol):
    def session(self) -> AbstractContextManager[MailboxSession]:
        """Log in; leaving the context sends ``QUIT`` when the session is healthy."""
        ...


class Archive(Protocol):
    """Raw messages are read from their start, wherever the file position is."""

    def store_inbound(self, channel_id: str, digest: str, raw: BinaryIO, received: datetime) -> str: ...

    def quarantine(
        self, channel_id: str, digest: str, raw: BinaryIO, reason: Mapping[str, object], received: datetime
    ) -> str: ...

    def store_reply(
        self,
        channel_id: str,
        digest: str,
        data: bytes,
        received: datetime,
        *,
        outcome: Outcome,
        recipient: str,
    ) -> str:
        """Store the reply (carrying the export files) with its outcome and one recipient; its key."""
        ...

    def stored_reply(self, channel_id: str, digest: str, received: datetime) -> StoredReply | None:
        """The reply a poll that started at ``received`` stored for this message, if it did."""
        ...

    def load(self, key: str) -> bytes: ...


class Ledger(Protocol):
    def claim(self, channel_id: str, digest: str, poll_id: str, since: datetime) -> LedgerEntry | None:
        """Mark the message as worked on by ``poll_id`` (a fresh entry when there is none) and
        return the entry as it was before: one write that also reads."""
        ...

    def save(self, entry: LedgerEntry) -> None: ...

    def save_all(self, entries: Sequence[LedgerEntry]) -> None:
        """Write final entries together; one that is not written stays at its last stage."""
        ...


class SerialCounter(Protocol):
    def allocate_recorded(
        self, count: int, record: Callable[[range], LedgerEntry], budget: DailyBudget
    ) -> range:
        """``count`` fresh S10 serials; the ledger entry ``record(serials)`` is written with them,
        before they are used (in one request where the counter allows it), and they are counted
        against the channel's ``budget`` of the day: ``PermanentError`` naming it when they would
        pass it (nothing is issued then)."""
        ...


class MemoryStore(Protocol):
    """What a channel remembers of its mailbox between polls (``domain.mailbox_memory``)."""

    def load(self, channel_id: str) -> MailboxMemory: ...

    def save(self, channel_id: str, memory: MailboxMemory) -> None: ...


class Lease(Protocol):
    def acquire(self, channel_id: str, owner: str, seconds: float) -> bool:
        """Take the channel's poll lease for ``seconds``; ``False`` when another poll holds it."""
        ...

    def release(self, channel_id: str, owner: str) -> None: ...


class ReplySender(Protocol):
    def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        """Send the stored reply ``data`` byte for byte to the one recorded ``recipient``."""
        ...

    def prepare(self) -> None:
        """A reply is likely to follow: get ready to send it (a connection and its login, on their
        way while the message is handled); never raises (``send`` raises what went wrong)."""
        ...

    def close(self) -> None:
        """The poll is over: end what its replies kept open (never raises)."""
        ...


class ReplyLimiter(Protocol):
    def allow(self, channel_id: str, sender: str, hour: str, limit: int) -> bool:
        """Count one more error reply to ``sender`` in ``hour``; False when ``limit`` is reached."""
        ...


@dataclass(frozen=True)
class ScriptCall:
    """One run of a channel's pre- or postscript on one file (DESIGN §4)."""

    stage: Literal["pre", "post"]
    name: str
    use_standard_script: bool
    partner_id: str
    channel_id: str
    filename: str
    sender: str
    subject: str
    timeout_seconds: int


class ScriptRunner(Protocol):
    def run(self, call: ScriptCall, data: bytes) -> bytes:
        """The file after the script ran on it; ``domain.errors.ScriptFailed`` when it did not succeed."""
        ...


class StatusLog(Protocol):
    def record(self, result: PollResult, at: datetime) -> None:
        """Keep the poll's result as its channel's last status (``lettershop channel list``); it
        may skip a result that says nothing new."""
        ...


class Credentials(Protocol):
    def forget(self) -> None:
        """Read every channel secret afresh at its next use (after a refused login: it may have been
        rotated)."""
        ...


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
    """Where a poll finds its channel item and the outside world (``app.root`` builds
    the real one; unit tests pass fakes)."""

    def channel_item(self, channel_id: str) -> Mapping[str, Any] | None: ...

    def ports(self, channel: Channel) -> Ports:
        """The adapters of one channel; reads its secrets (``ChannelFailure`` when one is missing)."""
        ...


class PollEndWiring(Protocol):
    """Where the end of a real poll is recorded (``poll_ended``)."""

    def status_log(self) -> StatusLog: ...

    def credentials(self) -> Credentials: ...
