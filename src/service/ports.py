"""What ``poll_channel`` needs from the outside world, as small interfaces (adapters implement them)."""

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class MessageRef:
    """One message as the POP3 listing shows it: its number in this session, size and UIDL."""

    number: int
    size: int
    uid: str


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


class Mailbox(Protocol):
    def session(self) -> AbstractContextManager[MailboxSession]:
        """Log in; leaving the context sends ``QUIT`` when the session is healthy."""
        ...


class Archive(Protocol):
    def store_inbound(self, channel_id: str, digest: str, raw: BinaryIO, received: datetime) -> str: ...

    def store_export(
        self, channel_id: str, digest: str, name: str, data: bytes, received: datetime
    ) -> str: ...

    def quarantine(
        self, channel_id: str, digest: str, raw: BinaryIO, reason: Mapping[str, object], received: datetime
    ) -> str: ...


class ReplySender(Protocol):
    def send(self, message: EmailMessage, *, sender: str, recipient: str) -> None: ...
