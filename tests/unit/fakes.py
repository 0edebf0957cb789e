"""In-memory fakes that record what the poll did to them, and the ``World`` of a poll made of them
(unit tests only: every test module takes its fakes from here)."""

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, BinaryIO

from domain.channel import Channel, load_channel
from domain.errors import ConnectionLost, PermanentError, ScriptFailed, TransientError
from domain.inbound import parse_headers
from domain.ledger import Claim, LedgerEntry, Stage, StoredReply
from domain.mailbox_memory import MailboxMemory
from domain.outcomes import Outcome
from domain.serial_budget import DailyBudget
from service.poll import poll_mailbox
from service.ports import MessageRef, Ports, ScriptCall


@dataclass
class FakeMailbox:
    """A POP3 mailbox: messages by UIDL; deletions commit when the session ends cleanly.
    ``listed_subjects``: its listing gives each message's decoded subject and no size, as a Graph
    listing does (``screened`` records the messages whose headers were asked for)."""

    messages: dict[str, bytes] = field(default_factory=dict)
    retrieved: list[str] = field(default_factory=list)
    screened: list[str] = field(default_factory=list)  # the messages asked for their headers (TOP)
    expected: list[str] = field(default_factory=list)  # the headers announced as asked next
    listed_subjects: bool = False  # the listing gives each message's subject (as Graph's does)
    fail_retrieve: set[str] = field(default_factory=set)
    break_retrieve: set[str] = field(default_factory=set)

    def deliver(self, uid: str, raw: bytes) -> None:
        self.messages[uid] = raw

    logins: int = 0
    refuse_login: Exception | None = None
    logged_in: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def session(self) -> Iterator["FakeSession"]:
        self.logins += 1
        self.logged_in.set()
        if self.refuse_login is not None:
            raise self.refuse_login
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
        if self.box.listed_subjects:
            return [
                MessageRef(n, 0, uid, subject=parse_headers(self._header_block(uid)).subject)
                for n, uid in enumerate(self.uids, start=1)
            ]
        return [MessageRef(n, len(self.box.messages[uid]), uid) for n, uid in enumerate(self.uids, start=1)]

    def headers(self, number: int) -> bytes:
        uid = self.uids[number - 1]
        self.box.screened.append(uid)
        return self._header_block(uid)

    def _header_block(self, uid: str) -> bytes:
        return self.box.messages[uid].split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"

    def expect_headers(self, number: int) -> None:
        self.box.expected.append(self.uids[number - 1])

    def retrieve(self, number: int, sink: BinaryIO) -> None:
        uid = self.uids[number - 1]
        if uid in self.box.fail_retrieve:
            raise TransientError("server refused RETR")
        if uid in self.box.break_retrieve:
            raise ConnectionLost("connection lost in the middle of RETR")
        self.box.retrieved.append(uid)
        sink.write(self.box.messages[uid])

    def delete(self, number: int) -> None:
        self.marked.add(self.uids[number - 1])


@dataclass
class FakeArchive:
    objects: dict[str, bytes] = field(default_factory=dict)
    reasons: dict[str, Mapping[str, object]] = field(default_factory=dict)
    unavailable: bool = False
    unavailable_replies: bool = False
    stored: dict[str, StoredReply] = field(default_factory=dict)

    def store_inbound(self, channel_id: str, digest: str, raw: BinaryIO, received: datetime) -> str:
        if self.unavailable:
            raise TransientError("archive bucket unreachable")
        key = f"inbound/{channel_id}/{digest}.eml"
        raw.seek(0)
        self.objects[key] = raw.read()
        return key

    def quarantine(
        self, channel_id: str, digest: str, raw: BinaryIO, reason: Mapping[str, object], received: datetime
    ) -> str:
        key = f"quarantine/{channel_id}/{digest}.eml"
        raw.seek(0)
        self.objects[key] = raw.read()
        self.reasons[key] = reason
        return key

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
        if self.unavailable_replies:
            raise TransientError("archive bucket throttled")
        key = self._reply_key(channel_id, digest, received, outcome)
        self.objects[key] = data
        self.stored[key] = StoredReply(key, recipient, outcome)
        return key

    def stored_reply(self, channel_id: str, digest: str, received: datetime) -> StoredReply | None:
        keys = [self._reply_key(channel_id, digest, received, o) for o in (Outcome.PROCESSED, Outcome.FAILED)]
        return next((self.stored[key] for key in keys if key in self.stored), None)

    @staticmethod
    def _reply_key(channel_id: str, digest: str, received: datetime, outcome: Outcome) -> str:
        folder = "exports" if outcome is Outcome.PROCESSED else "replies"
        return f"{folder}/{channel_id}/{received:%Y%m%d%H%M%S%f}/{digest}.eml"

    def load(self, key: str) -> bytes:
        return self.objects[key]

    def keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))


@dataclass
class SentReply:
    data: bytes
    sender: str
    recipient: str

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class FakeReplies:
    sent: list[SentReply] = field(default_factory=list)
    error: Exception | None = None

    closed: int = 0
    prepared: int = 0

    def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(SentReply(data, sender, recipient))

    def close(self) -> None:
        self.closed += 1

    def prepare(self) -> None:
        self.prepared += 1


@dataclass
class FakeLimiter:
    """Counts error replies per (channel, sender, hour), as the state table's counter items do."""

    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def allow(self, channel_id: str, sender: str, hour: str, limit: int) -> bool:
        key = (channel_id, sender, hour)
        if self.counts.get(key, 0) >= limit:
            return False
        self.counts[key] = self.counts.get(key, 0) + 1
        return True


@dataclass
class FakeSerials:
    """The counter (``SerialSource`` of the shipment processing, ``SerialCounter`` of a poll): counts
    up from ``next_serial`` and records every ``allocate``; a poll's (``World``) also has the ledger
    that takes the entry recording each block, and counts the ids issued per channel and day."""

    next_serial: int = 1
    ledger: "FakeLedger | None" = None
    calls: list[int] = field(default_factory=list)
    issued: dict[tuple[str, str], int] = field(default_factory=dict)  # per channel and day

    def allocate(self, count: int) -> range:
        self.calls.append(count)
        block = range(self.next_serial, self.next_serial + count)
        self.next_serial += count
        return block

    def allocate_recorded(
        self, count: int, record: Callable[[range], LedgerEntry], budget: DailyBudget
    ) -> range:
        assert self.ledger is not None, "a poll's serials record their blocks in its ledger"
        key = (budget.channel_id, budget.day)
        issued = self.issued.get(key, 0)
        if issued + count > budget.limit:
            raise PermanentError(budget.refusal(count, issued))
        self.issued[key] = issued + count
        block = self.allocate(count)
        self.ledger.save(record(block))
        return block


@dataclass
class FakeScripts:
    """Runs "scripts" as Python callables by name; records every call."""

    scripts: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)
    calls: list[ScriptCall] = field(default_factory=list)

    def run(self, call: ScriptCall, data: bytes) -> bytes:
        self.calls.append(call)
        if call.name not in self.scripts:
            raise ScriptFailed(f"script {call.name} does not exist")
        return self.scripts[call.name](data)


@dataclass
class FakeLedger:
    entries: dict[tuple[str, str], LedgerEntry] = field(default_factory=dict)
    history: list[LedgerEntry] = field(default_factory=list)
    unavailable_for: set[Stage] = field(default_factory=set)

    def get(self, channel_id: str, digest: str) -> LedgerEntry | None:
        return self.entries.get((channel_id, digest))

    def claim(self, channel_id: str, digest: str, poll_id: str, since: datetime) -> LedgerEntry | None:
        """Like DynamoDB's update: the claim is set, ``history`` (the saves) is not extended."""
        previous = self.entries.get((channel_id, digest))
        claimed = replace(previous or LedgerEntry(channel_id, digest), claim=Claim(poll_id, since))
        if claimed.stage in self.unavailable_for:
            raise TransientError("ledger table throttled")
        self.entries[(channel_id, digest)] = claimed
        return previous

    def save(self, entry: LedgerEntry) -> None:
        if entry.stage in self.unavailable_for:
            raise TransientError("ledger table throttled")
        self.entries[(entry.channel_id, entry.digest)] = entry
        self.history.append(entry)

    def save_all(self, entries: Sequence[LedgerEntry]) -> None:
        for entry in entries:
            self.save(entry)

    def only(self) -> LedgerEntry:
        [entry] = self.entries.values()
        return entry


@dataclass
class FakeMemory:
    """The channels' mailbox memories, as the state table would keep them."""

    memories: dict[str, MailboxMemory] = field(default_factory=dict)
    saves: int = 0

    def load(self, channel_id: str) -> MailboxMemory:
        return self.memories.get(channel_id, MailboxMemory())

    def save(self, channel_id: str, memory: MailboxMemory) -> None:
        self.memories[channel_id] = memory
        self.saves += 1


@dataclass
class FakeLease:
    holder: str | None = None
    taken: list[tuple[str, float]] = field(default_factory=list)

    def acquire(self, channel_id: str, owner: str, seconds: float) -> bool:
        if self.holder is not None:
            return False
        self.holder = owner
        self.taken.append((channel_id, seconds))
        return True

    def release(self, channel_id: str, owner: str) -> None:
        if self.holder == owner:
            self.holder = None


def make_channel(**overrides: Any) -> Channel:
    """A valid channel (shared account, keyword "LetterShop", partner.example allowed), with changes."""
    item: dict[str, Any] = {
        "channel_id": "acme",
        "active": True,
        "exclusive_account": False,
        "subject_keyword": "LetterShop",
        "pop3_host": "pop.example",
        "pop3_username": "acme",
        "pop3_password_secret": "lettershop/acme/pop3",
        "sender_address": "lettershop@operator.example",
        "smtp_host": "smtp.example",
        "allowed_senders": ["partner.example"],
    }
    item.update(overrides)
    return load_channel(item)


def body_of(message: EmailMessage) -> str:
    """The text of a reply's body."""
    body = message.get_body()
    assert body is not None
    return str(body.get_content())


class World:
    """Every port of a poll as a recording fake, and a poll of a channel with them."""

    def __init__(self) -> None:
        self.mailbox = FakeMailbox()
        self.archive = FakeArchive()
        self.replies = FakeReplies()
        self.scripts = FakeScripts()
        self.ledger = FakeLedger()
        self.serials = FakeSerials(ledger=self.ledger)
        self.lease = FakeLease()
        self.limiter = FakeLimiter()
        self.memory = FakeMemory()
        self.time_left = 1000.0

    def ports(self) -> Ports:
        return Ports(
            mailbox=self.mailbox,
            archive=self.archive,
            replies=self.replies,
            serials=self.serials,
            scripts=self.scripts,
            ledger=self.ledger,
            lease=self.lease,
            limiter=self.limiter,
            memory=self.memory,
        )

    def poll(self, channel: Channel | None = None) -> dict[str, object]:
        result = poll_mailbox(
            channel or make_channel(),
            self.ports(),
            now=lambda: datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
            time_left=lambda: self.time_left,
            lease_seconds=360,
        )
        return result.as_dict()
