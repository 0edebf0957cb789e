"""The shape of a channel's status item ``status#<channel_id>`` in the state table: what a
``ChannelStatus`` is, and how it is written and read (``adapters.status``, ``adapters.watch_index``)."""

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.outcomes import PollResult

STATUS_RETENTION_SECONDS = 400 * 24 * 3600
MAX_DETAIL_CHARS = 2000
COUNTS = ("seen", "recognized", "processed", "failed", "rejected", "deferred", "deleted", "skipped")
HANDLED = ("processed", "failed", "rejected", "deferred")
INVALID = "invalid_config"
SAVED = "saved"
STATUS_PREFIX = "status#"
WATCH_INDEX = "watch"
"""The state table's sparse index of the items the watchdog reads: status items and leases."""
WATCHED = "channel"
"""The value of the ``watch`` attribute (the index's key) on those items."""


@dataclass(frozen=True)
class Stored:
    """What a channel's status item holds, as far as deciding the next write needs: its status,
    detail and skipped count, when it was written and since when the status holds."""

    signature: tuple[str, str, int]
    at: datetime
    since: datetime


@dataclass(frozen=True)
class ChannelStatus:
    """What happened to a channel last: a poll's status and counts, or the sync's verdict on its item.

    ``status`` is a poll status (``ok``, ``inactive``, ``locked``, ``invalid_config``, ``error``) or
    ``saved`` (the schedule sync found a saved item valid again); ``source`` is ``poll`` or
    ``schedule-sync``; ``detail`` is the error, or ``invalid: <field>: <reason>; ...``. ``at`` is
    when it was written (for a poll's: the last completed poll, give or take the heartbeat) and
    ``since`` when this status and detail began (as read; ``at`` when not stored).
    """

    status: str
    at: datetime
    source: str = "poll"
    detail: str | None = None
    setting: str | None = None
    seen: int = 0
    recognized: int = 0
    processed: int = 0
    failed: int = 0
    rejected: int = 0
    deferred: int = 0
    deleted: int = 0
    skipped: int = 0  # unretrievable messages the poll left on the server without looking at them
    since: datetime | None = None

    @classmethod
    def from_result(cls, result: PollResult, at: datetime) -> "ChannelStatus":
        counts = {name: getattr(result, name) for name in COUNTS}
        return cls(status=result.status, at=at, detail=result.error, setting=result.setting, **counts)

    @classmethod
    def invalid(cls, errors: Iterable[tuple[str, str]], at: datetime) -> "ChannelStatus":
        reasons = "; ".join(f"{name}: {reason}" for name, reason in errors)
        return cls(status=INVALID, at=at, source="schedule-sync", detail=f"invalid: {reasons}")

    @classmethod
    def saved(cls, at: datetime, detail: str = "item valid again") -> "ChannelStatus":
        return cls(status=SAVED, at=at, source="schedule-sync", detail=detail)

    @property
    def handled(self) -> int:
        """Messages given an outcome (processed, failed, rejected, deferred)."""
        return sum(getattr(self, name) for name in HANDLED)

    def summary(self) -> str:
        """One line for a table: ``ok: 2 processed, 1 rejected, 1 skipped (unretrievable)`` or
        ``error: <detail>``."""
        counted = [f"{getattr(self, name)} {name}" for name in HANDLED if getattr(self, name)]
        if self.skipped:
            counted.append(f"{self.skipped} skipped (unretrievable)")
        counts = ", ".join(counted)
        text = self.status
        if counts:
            text += f": {counts}"
        if self.detail:
            text += f" ({self.detail})" if counts else f": {self.detail}"
        return text


def status_key(channel_id: str) -> str:
    return f"{STATUS_PREFIX}{channel_id}"


def status_item(channel_id: str, record: ChannelStatus) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": status_key(channel_id)},
        "watch": {"S": WATCHED},
        "channel_id": {"S": channel_id},
        "status": {"S": record.status},
        "at": {"S": timestamp(record.at)},
        "since": {"S": timestamp(record.since or record.at)},
        "source": {"S": record.source},
        # Always present (empty when none), so the "changed?" condition can compare it.
        "detail": {"S": stored_detail(record)},
        "expires_at": {"N": str(int(time.time()) + STATUS_RETENTION_SECONDS)},
    }
    if record.setting:
        item["setting"] = {"S": record.setting}
    for name in COUNTS:
        item[name] = {"N": str(getattr(record, name))}
    return item


def stored_detail(record: ChannelStatus) -> str:
    return (record.detail or "")[:MAX_DETAIL_CHARS]


def timestamp(moment: datetime) -> str:
    """``2026-12-07T23:00:00+00:00``: one format, so that stored times compare as strings."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def same_status(item: dict[str, Any], record: ChannelStatus) -> bool:
    """Whether the stored item holds the record's status (its detail, counts and heartbeat aside)."""
    source, status = item.get("source", {}).get("S"), item.get("status", {}).get("S")
    return bool(source == record.source and status == record.status)


def stored_of(item: dict[str, Any]) -> Stored:
    at = datetime.fromisoformat(item["at"]["S"])
    since = datetime.fromisoformat(item["since"]["S"]) if "since" in item else at
    signature = (
        item["status"]["S"],
        item.get("detail", {}).get("S", ""),
        int(item.get("skipped", {}).get("N", "0")),
    )
    return Stored(signature, at, since)


def read_status(item: dict[str, Any]) -> ChannelStatus:
    def count(name: str) -> int:
        return int(item.get(name, {}).get("N", "0"))

    at = datetime.fromisoformat(item["at"]["S"])
    return ChannelStatus(
        status=item["status"]["S"],
        at=at,
        since=datetime.fromisoformat(item["since"]["S"]) if "since" in item else at,
        source=item.get("source", {}).get("S", "poll"),
        detail=item.get("detail", {}).get("S") or None,
        setting=item.get("setting", {}).get("S"),
        seen=count("seen"),
        recognized=count("recognized"),
        processed=count("processed"),
        failed=count("failed"),
        rejected=count("rejected"),
        deferred=count("deferred"),
        deleted=count("deleted"),
        skipped=count("skipped"),
    )
