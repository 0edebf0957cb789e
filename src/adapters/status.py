"""The last known status of each channel: one small item ``status#<channel_id>`` in the state table.

Written by the poll when something is worth saying (the status or its error changed, or messages
were handled) and, as a heartbeat, when the stored one is older than ``domain.watch.HEARTBEAT``: so
an empty poll of an unchanged mailbox costs no extra request once the function is warm, except one
write an hour, and the watchdog knows when each channel last completed a poll. Also written by the
schedule sync when an operator saves an invalid item ("invalid: <reasons>"). Read by the operator's
command line (``lettershop channel list/show``) and, through the sparse index ``watch``, by the
watchdog (``adapters.watch_index``).
"""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, conditional, error_code
from adapters.status_item import (
    INVALID,
    ChannelStatus,
    Stored,
    read_status,
    same_status,
    status_item,
    status_key,
    stored_detail,
    stored_of,
    timestamp,
)
from domain.watch import heartbeat_due

# What this process knows is stored per (table, channel): a warm function skips unchanged empty
# polls until the heartbeat is due (kept warm by ``app.warm``).
type WrittenStatuses = dict[tuple[str, str], Stored]


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
        return None if item is None else read_status(item)

    def put(self, channel_id: str, record: ChannelStatus) -> None:
        """Write the record, whatever was there."""
        self._write(channel_id, record, condition=None)

    def record(self, channel_id: str, record: ChannelStatus, interval_minutes: int = 0) -> bool:
        """Write the poll's record when it says something new (messages were handled; the status,
        its detail or the count of skipped messages differs from the stored one) or when the
        heartbeat is due: once in each of the channel's heartbeat slots, by a poll within the slot's
        window (``domain.watch.heartbeat_due``; ``interval_minutes``: the channel's interval). A warm
        process knows what is stored and skips the request; otherwise one conditional ``UpdateItem``
        decides (and keeps ``since`` while the status holds), followed by a ``PutItem`` when the
        status changed. Whether it was written."""
        signature = (record.status, stored_detail(record), record.skipped)
        memo = (self._table, channel_id)
        known = self._written.get(memo)
        slot = heartbeat_due(channel_id, interval_minutes, record.at)
        heartbeat = slot is not None and (known is None or known.at < slot)
        if not record.handled and known is not None and known.signature == signature and not heartbeat:
            return False
        stored, written = self._update(channel_id, record, slot)
        if stored is None:
            stored = self._replace(channel_id, record)
            written = True
        self._written[memo] = stored
        return written

    def _update(
        self, channel_id: str, record: ChannelStatus, slot: datetime | None
    ) -> tuple[Stored | None, bool]:
        """The update of an item whose status holds on: ``(stored, True)`` when written, ``(stored,
        False)`` when the stored item said the same (and its heartbeat is not due: ``slot``, the
        start of the current one, when this poll may write it), ``(None, False)`` when the status
        changed or there is no item."""
        item = status_item(channel_id, record)
        item.pop("pk")
        setting = item.pop("setting", None)
        names = {f"#{name}": name for name in item}
        values = {f":{name}": value for name, value in item.items()}
        assignments = [f"#{name} = :{name}" for name in item if name != "since"]
        assignments.append("#since = if_not_exists(#since, :at)")
        expression = "SET " + ", ".join(assignments)
        if setting is not None:
            names["#setting"], values[":setting"] = "setting", setting
            expression += ", #setting = :setting"
        else:
            names["#setting"] = "setting"
            expression += " REMOVE #setting"
        same = "#source = :source AND #status = :status"
        condition = same
        if not record.handled:  # then only when something else changed, or the heartbeat is due
            news = ["#detail <> :detail", "attribute_not_exists(#skipped)", "#skipped <> :skipped"]
            news.append("attribute_not_exists(#watch)")  # an item from before the watchdog's index
            if slot is not None:
                news.append("#at < :slot")
                values[":slot"] = {"S": timestamp(slot)}
            condition = " OR ".join(f"{same} AND {term}" for term in news)  # AND binds tighter than OR
        values.pop(":since")
        what = f"writing the status of {channel_id} in table {self._table}"
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": status_key(channel_id)}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise classify(error, what) from error
            old: Any = error.response.get("Item")  # ALL_OLD: the item that failed the condition
            if old and same_status(old, record):
                return stored_of(old), False
            return None, False
        except BotoCoreError as error:
            raise classify(error, what) from error
        return stored_of(answer["Attributes"]), True

    def _replace(self, channel_id: str, record: ChannelStatus) -> Stored:
        """A new status: the whole item, ``since`` now."""
        self.put(channel_id, record)
        return Stored((record.status, stored_detail(record), record.skipped), record.at, record.at)

    def mark_saved(self, channel_id: str, record: ChannelStatus) -> bool:
        """Replace an ``invalid_config`` record of the schedule sync (the item was fixed); leave any
        other record alone. Whether it was written."""
        return self._write(channel_id, record, condition="#source = :sync AND #status = :invalid")

    def _write(self, channel_id: str, record: ChannelStatus, *, condition: str | None) -> bool:
        request: dict[str, Any] = {"TableName": self._table, "Item": status_item(channel_id, record)}
        if condition is not None:
            names = {"#status": "status", "#detail": "detail", "#source": "source", "#skipped": "skipped"}
            values = {
                ":status": {"S": record.status},
                ":skipped": {"N": str(record.skipped)},
                ":detail": {"S": stored_detail(record)},
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


class ScheduleSyncStatuses:
    """Implements ``service.schedules.ChannelStatuses``: what the schedule sync says about saved items."""

    def __init__(self, store: ChannelStatusStore) -> None:
        self._store = store

    def invalid(self, channel_id: str, errors: Iterable[tuple[str, str]]) -> None:
        self._store.put(channel_id, ChannelStatus.invalid(errors, datetime.now(UTC)))

    def valid(self, channel_id: str) -> None:
        self._store.mark_saved(channel_id, ChannelStatus.saved(datetime.now(UTC)))
