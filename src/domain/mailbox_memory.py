"""What a channel remembers of its mailbox between polls (DESIGN §6: an unchanged mailbox costs
almost nothing; whatever its size, a new partner message is processed within two polls).

* **Foreign messages** (a shared account's mail without the keyword) by UIDL, so a poll spends
  ``TOP`` only on messages it has not looked at before. A UIDL is kept as a 6-byte BLAKE2b
  fingerprint: 50,000 messages take 300 KB, inside DynamoDB's 400 KB item. Two UIDLs share a
  fingerprint with odds of about 1 in 2^48 / (messages in the mailbox): for 50,000 foreign
  messages, a new message is mistaken for a known foreign one about once in 5.6 billion.
  The verdicts belong to the recognition settings that gave them (``recognition``, from
  ``domain.inbound.recognition_key``): other settings forget them (``deciding``).
* **Broken downloads** by UIDL: how often ``RETR`` of a message broke the connection, so one that
  cannot be read is skipped after ``max_attempts`` (``service.retrieval``).
* **Where to go on** (``resume``, ``tail``): when a poll stopped before it had looked at every
  message, the first one it did not reach, and the last messages of its listing.

UIDLs never change and are never reused (RFC 1939), so a remembered fingerprint can only go stale
by its message leaving the server: ``kept`` drops those, so the memory is as large as the mailbox,
up to ``MAX_FOREIGN`` foreign messages: past that, the newest are kept and the oldest are looked at
again, at most ``MAX_OLDER_PER_POLL`` a poll, after which the new messages come (``screening``).
"""

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

FINGERPRINT_BYTES = 6
# The item stays well inside DynamoDB's 400 KB whatever the mailbox: 50,000 fingerprints (300 KB),
# 200 broken downloads by UIDL (at most 70 characters each, RFC 1939: 15 KB), a short recognition key.
MAX_FOREIGN = 50_000
MAX_FAILURES = 200
MAX_OLDER_PER_POLL = 1_000
TAIL = 4  # last messages of a listing kept: what is listed after them arrived since


def fingerprint(uid: str) -> bytes:
    return hashlib.blake2b(uid.encode("utf-8", "surrogateescape"), digest_size=FINGERPRINT_BYTES).digest()


@dataclass(frozen=True)
class Screening:
    """The messages a poll looks at, as indexes into the mailbox's listing, in the order to look at
    them: every message not remembered as foreign, once; only the first ``now`` in this poll."""

    order: tuple[int, ...]
    now: int


@dataclass(frozen=True)
class MailboxMemory:
    foreign: frozenset[bytes] = frozenset()
    failures: Mapping[str, int] = field(default_factory=dict)
    recognition: str = ""  # the recognition settings that found ``foreign`` foreign
    resume: bytes = b""  # the first message the last poll did not reach
    tail: frozenset[bytes] = frozenset()  # the last messages the last poll listed (with ``resume``)

    def deciding(self, recognition: str) -> "MailboxMemory":
        """The memory for a poll that recognises by ``recognition``: the foreign verdicts of other
        settings are forgotten (every message is looked at once more); broken downloads are kept."""
        if recognition == self.recognition:
            return self
        return MailboxMemory(failures=self.failures, recognition=recognition)

    def is_foreign(self, uid: str) -> bool:
        return bool(uid) and fingerprint(uid) in self.foreign

    def with_foreign(self, uids: Iterable[str]) -> "MailboxMemory":
        added = {fingerprint(uid) for uid in uids if uid}
        return replace(self, foreign=self.foreign | added) if added - self.foreign else self

    def failures_of(self, uid: str) -> int:
        return self.failures.get(uid, 0)

    def with_failure(self, uid: str) -> "MailboxMemory":
        return replace(self, failures={**self.failures, uid: self.failures_of(uid) + 1})

    def screening(self, uids: Sequence[str]) -> Screening:
        """In which order to look at the messages of the listing ``uids`` that are not foreign.

        *Older* messages — listed before the newest one the memory knows (remembered foreign, or
        in the last poll's ``tail``) — come first, from where the last poll stopped (``resume``)
        round to it, at most ``MAX_OLDER_PER_POLL`` of them; then every message listed after, in
        the listing's order: those arrived since. So a new message waits for at most that many
        older ones, however many there are, and a message nobody reached goes first next time.
        """
        prints = [fingerprint(uid) if uid else b"" for uid in uids]
        known = self.foreign | self.tail
        newest_known = max((i for i, p in enumerate(prints) if p in known), default=-1)
        waiting = [i for i, p in enumerate(prints) if p not in self.foreign]
        older = [i for i in waiting if i <= newest_known]
        new = [i for i in waiting if i > newest_known]
        start = next((k for k, i in enumerate(older) if self.resume and prints[i] == self.resume), 0)
        rotated = older[start:] + older[:start]
        now = rotated[:MAX_OLDER_PER_POLL]
        return Screening(order=tuple(now + new + rotated[MAX_OLDER_PER_POLL:]), now=len(now) + len(new))

    def kept(self, uids_on_server: Sequence[str], *, next_up: str = "") -> "MailboxMemory":
        """Only what concerns messages still on the server: the newest ``MAX_FOREIGN`` foreign ones
        (listing order), their broken downloads; and ``next_up``, the first message of the poll's
        ``screening`` it did not reach ("" when it reached all), with the listing's last ones."""
        prints = [fingerprint(uid) for uid in uids_on_server if uid]
        foreign = frozenset([p for p in prints if p in self.foreign][-MAX_FOREIGN:])
        present = set(uids_on_server)
        failures = {uid: n for uid, n in self.failures.items() if uid in present}
        failures = dict(list(failures.items())[:MAX_FAILURES])
        return MailboxMemory(
            foreign=foreign,
            failures=failures,
            recognition=self.recognition,
            resume=fingerprint(next_up) if next_up else b"",
            tail=frozenset(prints[-TAIL:]) if next_up else frozenset(),
        )

    def packed_foreign(self) -> bytes:
        """The fingerprints as one byte string (sorted, so equal memories store equal bytes)."""
        return pack(self.foreign)

    @classmethod
    def unpacked(
        cls,
        foreign: bytes,
        failures: Mapping[str, int],
        *,
        recognition: str = "",
        resume: bytes = b"",
        tail: bytes = b"",
    ) -> "MailboxMemory":
        return cls(
            foreign=unpack(foreign),
            failures=dict(failures),
            recognition=recognition,
            resume=resume,
            tail=unpack(tail),
        )


def pack(prints: frozenset[bytes]) -> bytes:
    return b"".join(sorted(prints))


def unpack(packed: bytes) -> frozenset[bytes]:
    size = FINGERPRINT_BYTES
    return frozenset(packed[i : i + size] for i in range(0, len(packed) - size + 1, size))
