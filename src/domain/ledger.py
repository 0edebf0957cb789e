"""The ledger of one recognised message: how far it got, so nothing is lost and nothing is answered twice.

A message is known by channel + SHA-256 of its raw bytes. Its stage only moves forward:

``pending``      seen, not settled; ``attempts`` counts transient failures and polls that died on it
``in_progress``  a poll is working on it now; found so by a later poll, the earlier one died
``answered``     outcome decided, reply (if any) and exports stored; the reply may not be sent yet
``replied``      reply sent (or none due); only the deletion on the server is missing
``done``         counted and deleted (the deletion commits at the next clean QUIT)

A poll that finds a message ``answered`` re-sends the stored reply and never processes the file
again; one that finds it ``replied`` or ``done`` only deletes it.
"""

from dataclasses import dataclass, replace
from enum import StrEnum

from domain.outcomes import Outcome


class Stage(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    ANSWERED = "answered"
    REPLIED = "replied"
    DONE = "done"


CRASHED = "an earlier poll ended while handling this message (killed, timed out or out of memory)"


@dataclass(frozen=True)
class LedgerEntry:
    channel_id: str
    digest: str
    stage: Stage = Stage.PENDING
    attempts: int = 0
    last_error: str | None = None
    outcome: Outcome | None = None
    reply_key: str | None = None

    @property
    def settled(self) -> bool:
        """The partner has been answered (or rightly not): only the deletion may be missing."""
        return self.stage in (Stage.REPLIED, Stage.DONE)

    def claimed(self) -> "LedgerEntry":
        """Taken up by this poll; a claim left over from a dead poll counts as a failed attempt."""
        if self.stage is Stage.IN_PROGRESS:
            return replace(self, attempts=self.attempts + 1, last_error=CRASHED)
        return replace(self, stage=Stage.IN_PROGRESS)

    @property
    def has_answer(self) -> bool:
        """An outcome was decided and its reply stored: a retry sends that, never processes again."""
        return self.outcome is not None

    def failed(self, error: str) -> "LedgerEntry":
        """A transient failure: one more attempt used; a stored answer is kept for the next try.

        A settled entry never moves back: its partner has been answered already.
        """
        if self.settled:
            return replace(self, last_error=error)
        stage = Stage.ANSWERED if self.has_answer else Stage.PENDING
        return replace(self, stage=stage, attempts=self.attempts + 1, last_error=error)

    def exhausted(self, max_attempts: int) -> bool:
        return self.attempts >= max_attempts

    def answered(self, outcome: Outcome, reply_key: str | None) -> "LedgerEntry":
        return replace(self, stage=Stage.ANSWERED, outcome=outcome, reply_key=reply_key)

    def replied(self, outcome: Outcome | None = None) -> "LedgerEntry":
        return replace(self, stage=Stage.REPLIED, outcome=outcome or self.outcome)

    def done(self) -> "LedgerEntry":
        return replace(self, stage=Stage.DONE)
