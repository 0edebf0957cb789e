"""The last known status of each channel: one small item ``status#<channel_id>`` in the state table.

Written by the poll only when something is worth saying (the status or its error changed, or
messages were handled), so an empty poll of an unchanged mailbox costs no extra request once the
function is warm; and by the schedule sync when an operator saves an invalid item
("invalid: <reasons>"). Read by the operator's command line (``lettershop channel list/show``).
"""

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, conditional
from domain.outcomes import PollResult

STATUS_RETENTION_SECONDS = 400 * 24 * 3600
MAX_DETAIL_CHARS = 2000
COUNTS = ("seen", "recognized", "processed", "failed", "rejected", "deferred", "deleted", "skipped")
HANDLED = ("processed", "failed", "rejected", "deferred")
INVALID = "invalid_config"
SAVED = "saved"

# What this process last wrote per (table, channel): a warm function skips unchanged empty polls
# (kept warm by ``app.warm``).
type WrittenStatuses = dict[tuple[str, str], tuple[str, str | None, int]]


@dataclass(frozen=True)
class ChannelStatus:
    """What happened to a channel last: a poll's status and counts, or the sync's verdict on its item.

    ``status`` is a poll status (``ok``, ``inactive``, ``locked``, ``invalid_config``, ``error``) or
    ``saved`` (the schedule sync found a saved item valid again); ``source`` is ``poll`` or
    ``schedule-sync``; ``detail`` is the error, or ``invalid: <field>: <reason>; ...``.
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


class ChannelStatusStore:
    """Reads and writes ``status#<channel_id>`` in the state table (a low-level ``dynamodb`` client);
    ``written`` is the warm state's memo of what this process wrote (default: a private, cold one)."""

    def __init__(self, table_name: str, client: Any, *, written: WrittenStatuses | None = None) -> None:
        self._table = table_name
        self._client = client
        self._written = written if written is not None else {}

    def get(self, channel_id: str) -> ChannelStatus | None:
        try:
            answer = self._client.get_item(TableName=self._table, Key={"pk": {"S": status_key(channel_id)}})
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"reading the status of {channel_id} in table {self._table}") from error
        item = answer.get("Item")
        return None if item is None else _record(item)

    def put(self, channel_id: str, record: ChannelStatus) -> None:
        """Write the record, whatever was there."""
        self._write(channel_id, record, condition=None)

    def record(self, channel_id: str, record: ChannelStatus) -> bool:
        """Write the record only when it says something new: messages were handled, or the status,
        its detail or the count of skipped messages differs from the stored one. A warm process
        remembers what it wrote and skips the request; otherwise one conditional write decides.
        Whether it was written."""
        signature = (record.status, record.detail, record.skipped)
        memo = (self._table, channel_id)
        if not record.handled and self._written.get(memo) == signature:
            return False
        condition = None
        if not record.handled:
            condition = (
                "attribute_not_exists(pk) OR #status <> :status OR #detail <> :detail"
                " OR attribute_not_exists(#skipped) OR #skipped <> :skipped"
            )
        written = self._write(channel_id, record, condition=condition)
        self._written[memo] = signature
        return written

    def mark_saved(self, channel_id: str, record: ChannelStatus) -> bool:
        """Replace an ``invalid_config`` record of the schedule sync (the item was fixed); leave any
        other record alone. Whether it was written."""
        return self._write(channel_id, record, condition="#source = :sync AND #status = :invalid")

    def _write(self, channel_id: str, record: ChannelStatus, *, condition: str | None) -> bool:
        request: dict[str, Any] = {"TableName": self._table, "Item": _item(channel_id, record)}
        if condition is not None:
            names = {"#status": "status", "#detail": "detail", "#source": "source", "#skipped": "skipped"}
            values = {
                ":status": {"S": record.status},
                ":skipped": {"N": str(record.skipped)},
                ":detail": {"S": _detail(record)},
                ":sync": {"S": "schedule-sync"},
                ":invalid": {"S": INVALID},
            }
            request["ConditionExpression"] = condition
            request["ExpressionAttributeNames"] = {k: v for k, v in names.items() if k in condition}
            request["ExpressionAttributeValues"] = {k: v for k, v in values.items() if k in condition}
        return conditional(
            lambda: self._client.put_item(**request),
            f"writing the status of {channel_id} in table {self._table}",
        )


def status_key(channel_id: str) -> str:
    return f"status#{channel_id}"


def _item(channel_id: str, record: ChannelStatus) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": status_key(channel_id)},
        "channel_id": {"S": channel_id},
        "status": {"S": record.status},
        "at": {"S": record.at.astimezone(UTC).isoformat(timespec="seconds")},
        "source": {"S": record.source},
        # Always present (empty when none), so the "changed?" condition can compare it.
        "detail": {"S": _detail(record)},
        "expires_at": {"N": str(int(time.time()) + STATUS_RETENTION_SECONDS)},
    }
    if record.setting:
        item["setting"] = {"S": record.setting}
    for name in COUNTS:
        item[name] = {"N": str(getattr(record, name))}
    return item


def _detail(record: ChannelStatus) -> str:
    return (record.detail or "")[:MAX_DETAIL_CHARS]


def _record(item: dict[str, Any]) -> ChannelStatus:
    def count(name: str) -> int:
        return int(item.get(name, {}).get("N", "0"))

    return ChannelStatus(
        status=item["status"]["S"],
        at=datetime.fromisoformat(item["at"]["S"]),
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


class ScheduleSyncStatuses:
    """Implements ``service.schedules.ChannelStatuses``: what the schedule sync says about saved items."""

    def __init__(self, store: ChannelStatusStore) -> None:
        self._store = store

    def invalid(self, channel_id: str, errors: Iterable[tuple[str, str]]) -> None:
        self._store.put(channel_id, ChannelStatus.invalid(errors, datetime.now(UTC)))

    def valid(self, channel_id: str) -> None:
        self._store.mark_saved(channel_id, ChannelStatus.saved(datetime.now(UTC)))
