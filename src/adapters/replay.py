"""Replay one archived or quarantined raw message from S3 through the poll's own state machine.

:class:`ReplayMailbox` is a ``service.ports.Mailbox`` that presents exactly one message, the raw
bytes read from the archive bucket; ``service.poll.poll_channel`` then screens, archives, processes,
answers and records it with the real ledger, archive and reply transport, as for new mail. Its
``delete`` only notes the deletion: the message is not on the mail server any more.

Before the state machine reads the ledger (inside the poll's lease, at the first ``RETR``),
``on_retrieve`` runs: the command line uses it to re-open a settled ledger entry
(``domain.ledger.LedgerEntry.reopened``), which keeps the entry's recorded serial blocks, so the same
import file gets the same shipment ids again, never new ones.

:class:`ReplayMemory` stands in for the channel's mailbox memory: the one-message mailbox is not the
channel's mailbox, so what the channel remembers of it (foreign messages, broken downloads: the
``mailbox#<channel>`` item) is neither read nor written by a replay.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

from domain.mailbox_memory import MailboxMemory
from service.ports import MessageRef


def header_block(raw: bytes) -> bytes:
    """The header block of a raw message, as ``TOP n 0`` returns it."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, _ = raw.partition(separator)
        if found:
            return head + separator
    return raw


@dataclass
class ReplayMailbox:
    """Implements ``service.ports.Mailbox`` with one message: ``raw``."""

    raw: bytes
    uid: str = "replay"
    on_retrieve: Callable[[], None] = lambda: None
    deleted: bool = field(default=False, init=False)
    retrieved: int = field(default=0, init=False)

    @contextmanager
    def session(self) -> Iterator["ReplaySession"]:
        yield ReplaySession(self)


class ReplaySession:
    def __init__(self, box: ReplayMailbox) -> None:
        self._box = box

    def messages(self) -> list[MessageRef]:
        return [MessageRef(number=1, size=len(self._box.raw), uid=self._box.uid)]

    def headers(self, number: int) -> bytes:
        self._check(number)
        return header_block(self._box.raw)

    def expect_headers(self, number: int) -> None:
        """One message: nothing to fetch ahead."""

    def retrieve(self, number: int, sink: BinaryIO) -> None:
        self._check(number)
        if not self._box.retrieved:
            self._box.on_retrieve()
        self._box.retrieved += 1
        sink.write(self._box.raw)

    def delete(self, number: int) -> None:
        self._check(number)
        self._box.deleted = True

    @staticmethod
    def _check(number: int) -> None:
        if number != 1:
            raise ValueError(f"a replay has one message, not #{number}")


class ReplayMemory:
    """Implements ``service.ports.MemoryStore`` for a replay: remembers nothing, saves nothing."""

    def load(self, channel_id: str) -> MailboxMemory:
        return MailboxMemory()

    def save(self, channel_id: str, memory: MailboxMemory) -> None:
        """The channel's own memory is left as it is."""
