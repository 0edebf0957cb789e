"""What a poll reports: one outcome per recognised message and the handler's result (DESIGN §6)."""

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Literal

PollStatus = Literal["ok", "inactive", "locked", "invalid_config", "error"]


class Outcome(StrEnum):
    PROCESSED = "processed"
    FAILED = "failed"
    REJECTED = "rejected"
    DEFERRED = "deferred"


@dataclass
class PollResult:
    """The handler's result: counts of what one poll did to the channel's mailbox."""

    channel_id: str
    status: PollStatus = "ok"
    seen: int = 0
    recognized: int = 0
    processed: int = 0
    failed: int = 0
    rejected: int = 0
    deferred: int = 0
    deleted: int = 0
    skipped: int = 0  # left on the server unlooked at: they broke RETR ``max_attempts`` times
    error: str | None = None
    setting: str | None = None  # the channel attribute(s) to fix, when the channel failed
    # The channel's poll interval (0 when its item was not read): when its status heartbeat is due.
    interval_minutes: int = 0

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    def as_dict(self) -> dict[str, object]:
        """Every count; ``skipped``, ``error`` and ``setting`` only when there are some."""
        optional = ("skipped", "error", "setting")
        return {
            key: value
            for key, value in asdict(self).items()
            if key != "interval_minutes" and (key not in optional or value)
        }
