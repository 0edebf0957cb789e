"""Ports for a poll that changes nothing (``lettershop poll ID --dry-run``).

The same ``service.poll.poll_channel`` and message state machine run on them, so a dry run decides
exactly what a real poll would, but:

* the mailbox session sends no ``DELE`` and never ``QUIT``: the connection is dropped, so the server
  commits nothing, not even a "seen" flag;
* the archive stores nothing; the ledger and the mailbox memory read the real ones (a message
  answered before shows as such) and keep their own writes in memory; replies are recorded, not
  sent; shipment serials come from a local counter (placeholders, nothing is allocated); the lease
  is always granted and the error-reply limit never reached.

Everything the state machine did is kept in a :class:`Journal`, per message, for the report.
"""

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol

from domain.archive_keys import inbound_key, quarantine_key, reply_key
from domain.ledger import LedgerEntry, StoredReply
from domain.mailbox_memory import MailboxMemory
from domain.outcomes import Outcome
from domain.serial_budget import DailyBudget
from service.ports import Archive, ExpectsHeaders, Ledger, Mailbox, MailboxSession, MemoryStore, MessageRef


@dataclass
class MessageJournal:
    """What happened to one message of the mailbox in the dry run."""

    ref: MessageRef
    headers: bytes = b""
    digest: str | None = None
    known_before: LedgerEntry | None = None
    entry: LedgerEntry | None = None
    quarantine_reason: str | None = None
    reply: bytes | None = None
    reply_outcome: Outcome | None = None
    reply_key: str | None = None  # where a real poll claiming the message when this one did stores it
    sent_to: str | None = None
    deleted: bool = False


@dataclass
class Journal:
    """Every message of one dry run, in mailbox order; looked up by number or by SHA-256."""

    messages: dict[int, MessageJournal] = field(default_factory=dict)

    def by_digest(self, digest: str) -> MessageJournal | None:
        for message in self.messages.values():
            if message.digest == digest:
                return message
        return None


class _NoCommit(Exception):
    """Leaves the real session by an exception: a session left that way never commits."""


class DryRunMailbox:
    """Implements ``service.ports.Mailbox`` over a real one without changing it."""

    def __init__(self, inner: Mailbox, journal: Journal) -> None:
        self._inner = inner
        self._journal = journal

    @contextmanager
    def session(self) -> Iterator["DryRunSession"]:
        try:
            with self._inner.session() as real:
                yield DryRunSession(real, self._journal)
                raise _NoCommit
        except _NoCommit:
            pass


class DryRunSession:
    """Reads through to the real session; ``delete`` only notes what would be deleted."""

    def __init__(self, inner: MailboxSession, journal: Journal) -> None:
        self._inner = inner
        self._journal = journal

    def messages(self) -> list[MessageRef]:
        refs = self._inner.messages()
        for ref in refs:
            self._journal.messages.setdefault(ref.number, MessageJournal(ref))
        return refs

    def expect_headers(self, number: int) -> None:
        if isinstance(self._inner, ExpectsHeaders):
            self._inner.expect_headers(number)

    def headers(self, number: int) -> bytes:
        data = self._inner.headers(number)
        self._journal.messages[number].headers = data
        return data

    def retrieve(self, number: int, sink: BinaryIO) -> None:
        hashing = _Hashing(sink)
        self._inner.retrieve(number, hashing)  # type: ignore[arg-type]  # it has write()
        self._journal.messages[number].digest = hashing.hash.hexdigest()

    def delete(self, number: int) -> None:
        self._journal.messages[number].deleted = True


class _Hashing:
    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self._sink.write(data)


class DryRunArchive:
    """Implements ``service.ports.Archive``: stores nothing, notes what would be stored (under the
    key a real poll writes, marked ``(dry run)``); a reply an earlier poll stored is read from the
    ``real`` archive (reading changes nothing)."""

    def __init__(self, journal: Journal, real: Archive) -> None:
        self._journal = journal
        self._real = real
        self._replies: dict[str, bytes] = {}

    def store_inbound(self, channel_id: str, digest: str, raw: BinaryIO, received: datetime) -> str:
        return f"(dry run) {inbound_key(channel_id, digest, received)}"

    def quarantine(
        self, channel_id: str, digest: str, raw: BinaryIO, reason: Mapping[str, object], received: datetime
    ) -> str:
        message = self._journal.by_digest(digest)
        if message is not None:
            message.quarantine_reason = str(reason.get("reason", ""))
        return f"(dry run) {quarantine_key(channel_id, digest, received)}"

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
        real_key = reply_key(channel_id, digest, received, outcome)
        message = self._journal.by_digest(digest)
        if message is not None:
            message.reply = data
            message.reply_outcome = outcome
            message.reply_key = real_key
        key = f"(dry run) {real_key}"
        self._replies[key] = data
        return key

    def stored_reply(self, channel_id: str, digest: str, received: datetime) -> StoredReply | None:
        """The reply a poll that died stored, from the real archive (a dry run stores none)."""
        return self._real.stored_reply(channel_id, digest, received)

    def load(self, key: str) -> bytes:
        """A reply stored in this dry run, else the real one an earlier poll stored."""
        return self._replies[key] if key in self._replies else self._real.load(key)


class LedgerReader(Protocol):
    """Reading one ledger entry, without claiming it (``adapters.state.DynamoDbLedger.get``)."""

    def get(self, channel_id: str, digest: str) -> LedgerEntry | None: ...


class OverlayLedger:
    """Implements ``service.ports.Ledger``: reads the real ledger, keeps its writes in memory."""

    def __init__(self, real: LedgerReader, journal: Journal) -> None:
        self._real = real
        self._journal = journal
        self._entries: dict[tuple[str, str], LedgerEntry] = {}

    def get(self, channel_id: str, digest: str) -> LedgerEntry | None:
        mine = self._entries.get((channel_id, digest))
        if mine is not None:
            return mine
        known = self._real.get(channel_id, digest)
        message = self._journal.by_digest(digest)
        if message is not None:
            message.known_before = known
        return known

    def claim(self, channel_id: str, digest: str, poll_id: str, since: datetime) -> LedgerEntry | None:
        """The entry as it was (read from the real ledger), claimed in memory only."""
        before = self.get(channel_id, digest)
        self.save((before or LedgerEntry.first_seen(channel_id, digest)).claimed(poll_id, since))
        return before

    def save(self, entry: LedgerEntry) -> None:
        self._entries[(entry.channel_id, entry.digest)] = entry
        message = self._journal.by_digest(entry.digest)
        if message is not None:
            message.entry = entry

    def save_all(self, entries: Sequence[LedgerEntry]) -> None:
        for entry in entries:
            self.save(entry)


class ReadOnlyMemory:
    """Implements ``service.ports.MemoryStore``: reads what the channel remembers, writes nothing."""

    def __init__(self, real: MemoryStore) -> None:
        self._real = real
        self._saved: dict[str, MailboxMemory] = {}

    def load(self, channel_id: str) -> MailboxMemory:
        return self._saved.get(channel_id) or self._real.load(channel_id)

    def save(self, channel_id: str, memory: MailboxMemory) -> None:
        self._saved[channel_id] = memory


class RecordingReplySender:
    """Implements ``service.ports.ReplySender``: nothing is sent; the recipient is noted."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self.sent: list[tuple[str, str, bytes]] = []

    def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        self.sent.append((sender, recipient, data))
        for message in self._journal.messages.values():
            if message.reply == data:
                message.sent_to = recipient

    def close(self) -> None:
        """Nothing was opened."""

    def prepare(self) -> None:
        """Nothing to open."""


class PlaceholderSerials:
    """Implements ``service.ports.SerialCounter`` from a local counter: ids that look real and are
    never issued; the entries recording them go to the dry run's ``ledger`` (an overlay)."""

    def __init__(self, ledger: Ledger, start: int = 1) -> None:
        self._ledger = ledger
        self._next = start

    def allocate_recorded(
        self, count: int, record: Callable[[range], LedgerEntry], budget: DailyBudget
    ) -> range:
        """Counts nothing against ``budget`` (a dry run issues no id, and may not write the count)."""
        block = range(self._next, self._next + count)
        self._next += count
        self._ledger.save(record(block))
        return block


class GrantedLease:
    """Implements ``service.ports.Lease``: a dry run takes nothing, so it needs no lease."""

    def acquire(self, channel_id: str, owner: str, seconds: float) -> bool:
        return True

    def release(self, channel_id: str, owner: str) -> None:
        return None


class UnlimitedReplies:
    """Implements ``service.ports.ReplyLimiter`` without counting anything."""

    def allow(self, channel_id: str, sender: str, hour: str, limit: int) -> bool:
        return True
