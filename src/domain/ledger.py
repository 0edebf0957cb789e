"""The ledger of one recognised message: how far it got, so nothing is lost and nothing is answered twice.

A message is known by channel + SHA-256 of its raw bytes. Its stage only ever moves forward:

``received``  seen; nothing decided yet (the serial blocks of its import files may be recorded)
``answered``  outcome decided; the reply (if any), its recipient and the exports are stored
``replied``   the reply was sent, or none is due, and the outcome counted: what is left is the
              deletion on the server, which needs no record (a copy that comes back is deleted
              without a word)

The one named exception is ``reopened``: the operator's replay (``lettershop message replay``) takes a
settled message through the state machine again. It starts ``received`` with no attempt, error,
outcome, reply or claim, and keeps the serial blocks, so its import files get the same shipment ids
again. The replies answered before are not forgotten: each lies in the archive under a key of its
own (``domain.archive_keys``), which a replay never replaces.

Which poll works on the message, and since when, is the separate ``claim``. A claim left behind by
another poll means that poll died on the message (killed, timed out, out of memory): the next claim
counts that as an attempt. A failure that is not the message's own releases the claim without one.
The start of a poll that died while the message was ``received`` is kept (``dead_claims``) until a
poll has looked whether it stored an answer: its stored reply is found by that time, and sent, never
a second one — also when the first look fails and the message waits for the next poll.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from domain.outcomes import Outcome


class Stage(StrEnum):
    RECEIVED = "received"
    ANSWERED = "answered"
    REPLIED = "replied"


_ORDER = {stage: position for position, stage in enumerate(Stage)}

CRASHED = "an earlier poll ended while handling this message (killed, timed out or out of memory)"


class StageMovedBack(ValueError):
    """A programming error: the stage of a ledger entry only ever moves forward (a settled entry
    may be ``reopened``)."""


@dataclass(frozen=True)
class Claim:
    """The poll working on a message now, and since when."""

    poll_id: str
    since: datetime


@dataclass(frozen=True)
class SerialBlock:
    """The S10 serials issued to one import file of a message: recorded before they are used."""

    first: int
    count: int

    def serials(self, count: int) -> range | None:
        """The first ``count`` serials of the block; None when the block is smaller than that."""
        return range(self.first, self.first + count) if count <= self.count else None


@dataclass(frozen=True)
class StoredReply:
    """A reply kept in the archive: where, to whom it goes, and the outcome it answers. The
    archive records the recipient with it, so a poll that died after storing it can still send
    it, unchanged, to the one recorded address."""

    key: str
    recipient: str
    outcome: Outcome


@dataclass(frozen=True)
class LedgerEntry:
    channel_id: str
    digest: str
    stage: Stage = Stage.RECEIVED
    attempts: int = 0
    last_error: str | None = None
    outcome: Outcome | None = None
    reply_key: str | None = None
    recipient: str | None = None
    serial_blocks: Mapping[str, SerialBlock] = field(default_factory=dict)
    claim: Claim | None = None
    dead_claims: tuple[datetime, ...] = ()  # when polls that died while it was received started

    @classmethod
    def first_seen(cls, channel_id: str, digest: str) -> "LedgerEntry":
        """A message the ledger has no entry for: ``received``, nothing recorded yet."""
        return cls(channel_id, digest)

    @classmethod
    def restored(  # every recorded field, named: a new one must be read back too
        cls,
        channel_id: str,
        digest: str,
        *,
        stage: Stage,
        attempts: int,
        last_error: str | None,
        outcome: Outcome | None,
        reply_key: str | None,
        recipient: str | None,
        serial_blocks: Mapping[str, SerialBlock],
        claim: Claim | None,
        dead_claims: tuple[datetime, ...],
    ) -> "LedgerEntry":
        """An entry as the ledger stored it (each of its transitions was checked when it was made)."""
        return cls(
            channel_id,
            digest,
            stage,
            attempts,
            last_error,
            outcome,
            reply_key,
            recipient,
            serial_blocks,
            claim,
            dead_claims,
        )

    @property
    def settled(self) -> bool:
        """The partner has been answered (or rightly not): only the deletion may be missing."""
        return _ORDER[self.stage] >= _ORDER[Stage.REPLIED]

    def exhausted(self, max_attempts: int) -> bool:
        return self.attempts >= max_attempts

    def claimed(self, poll_id: str, now: datetime) -> "LedgerEntry":
        """Taken up by ``poll_id``; a claim another poll left behind counts as one failed attempt,
        and, while nothing is recorded as answered, is kept among ``dead_claims``."""
        if self.claim is not None and self.claim.poll_id != poll_id:
            dead = self.dead_claims
            if self.stage is Stage.RECEIVED and self.claim.since not in dead:
                dead = (*dead, self.claim.since)
            return replace(
                self,
                claim=Claim(poll_id, now),
                attempts=self.attempts + 1,
                last_error=CRASHED,
                dead_claims=dead,
            )
        return replace(self, claim=Claim(poll_id, now))

    def none_stored_by_dead_claims(self) -> "LedgerEntry":
        """The polls that died stored no answer (looked up): nothing is left to look for."""
        return replace(self, dead_claims=())

    def released(self, error: str, *, attempt: bool) -> "LedgerEntry":
        """Let go after a failure; ``attempt``: the failure was the message's and counts as one."""
        return replace(self, claim=None, attempts=self.attempts + int(attempt), last_error=error)

    def with_serial_block(self, key: str, block: SerialBlock) -> "LedgerEntry":
        return replace(self, serial_blocks={**self.serial_blocks, key: block})

    def answered(self, outcome: Outcome, *, reply_key: str | None, recipient: str | None) -> "LedgerEntry":
        """The outcome is decided and its answer stored; a reply is stored with its one recipient."""
        if (reply_key is None) != (recipient is None):
            raise ValueError("a stored reply needs its recipient, and a recipient a stored reply")
        return self._to(
            Stage.ANSWERED, outcome=outcome, reply_key=reply_key, recipient=recipient, dead_claims=()
        )

    def replied(self, outcome: Outcome | None = None, *, error: str | None = None) -> "LedgerEntry":
        """Settled: the reply went out, or none is due (``outcome`` overrides the stored one)."""
        return self._to(
            Stage.REPLIED, outcome=outcome or self.outcome, claim=None, last_error=error or self.last_error
        )

    def reopened(self) -> "LedgerEntry":
        """The one way back: a settled entry starts again as ``received`` for a replay. Kept: the
        message (channel, digest) and its serial blocks (the same shipment ids again). Forgotten:
        attempts, last error, outcome, the stored reply's key and recipient, claim and dead claims
        (the earlier reply stays in the archive under its own key)."""
        if not self.settled:
            raise StageMovedBack(f"ledger entry {self.digest}: a {self.stage} entry is not reopened")
        return LedgerEntry(self.channel_id, self.digest, serial_blocks=self.serial_blocks)

    def _to(self, stage: Stage, **changes: object) -> "LedgerEntry":
        if _ORDER[stage] < _ORDER[self.stage]:
            raise StageMovedBack(f"ledger entry {self.digest}: {self.stage} cannot move back to {stage}")
        return replace(self, stage=stage, **changes)  # type: ignore[arg-type]
