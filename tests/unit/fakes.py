"""In-memory fakes that record what the poll did to them (unit tests only)."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import BinaryIO

from domain.errors import TransientError
from service.ports import MessageRef


@dataclass
class FakeMailbox:
    """A POP3 mailbox: messages by UIDL; deletions commit when the session ends cleanly."""

    messages: dict[str, bytes] = field(default_factory=dict)
    retrieved: list[str] = field(default_factory=list)
    fail_retrieve: set[str] = field(default_factory=set)

    def deliver(self, uid: str, raw: bytes) -> None:
        self.messages[uid] = raw

    @contextmanager
    def session(self) -> Iterator["FakeSession"]:
        session = FakeSession(self, list(self.messages))
        yield session
        for uid in session.marked:
            del self.messages[uid]


@dataclass
class FakeSession:
    box: FakeMailbox
    uids: list[str]
    marked: set[str] = field(default_factory=set)

    def messages(self) -> list[MessageRef]:
        return [MessageRef(n, len(self.box.messages[uid]), uid) for n, uid in enumerate(self.uids, start=1)]

    def headers(self, number: int) -> bytes:
        raw = self.box.messages[self.uids[number - 1]]
        return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"

    def retrieve(self, number: int, sink: BinaryIO) -> None:
        uid = self.uids[number - 1]
        if uid in self.box.fail_retrieve:
            raise TransientError("connection lost")
        self.box.retrieved.append(uid)
        sink.write(self.box.messages[uid])

    def delete(self, number: int) -> None:
        self.marked.add(self.uids[number - 1])


@dataclass
class FakeArchive:
    objects: dict[str, bytes] = field(default_factory=dict)
    reasons: dict[str, Mapping[str, object]] = field(default_factory=dict)

    def store_inbound(self, channel_id: str, digest: str, raw: BinaryIO, received: datetime) -> str:
        key = f"inbound/{channel_id}/{digest}.eml"
        self.objects[key] = raw.read()
        return key

    def store_export(self, channel_id: str, digest: str, name: str, data: bytes, received: datetime) -> str:
        key = f"exports/{channel_id}/{digest}/{name}"
        self.objects[key] = data
        return key

    def quarantine(
        self, channel_id: str, digest: str, raw: BinaryIO, reason: Mapping[str, object], received: datetime
    ) -> str:
        key = f"quarantine/{channel_id}/{digest}.eml"
        self.objects[key] = raw.read()
        self.reasons[key] = reason
        return key

    def keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))


@dataclass
class SentReply:
    message: EmailMessage
    sender: str
    recipient: str


@dataclass
class FakeReplies:
    sent: list[SentReply] = field(default_factory=list)
    error: Exception | None = None

    def send(self, message: EmailMessage, *, sender: str, recipient: str) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(SentReply(message, sender, recipient))


@dataclass
class FakeSerials:
    next_serial: int = 1
    calls: list[int] = field(default_factory=list)

    def allocate(self, count: int) -> range:
        self.calls.append(count)
        block = range(self.next_serial, self.next_serial + count)
        self.next_serial += count
        return block
