"""What the watchdog reads of the state table, in bulk: the sparse index ``watch``.

Only the status items (``status#<channel_id>``) and the poll leases (``lease#<channel_id>``) carry
the index's key, so one ``Query`` a page reads every channel's last poll and lease and nothing of
the ledger, the mailbox memories or the counters (which a ``Scan`` would read and bill). A status
item written before the index existed lacks the key until its channel's next heartbeat; the
channels the index does not know are read by key (``BatchGetItem``, 100 a request), so an upgrade
does not make every channel look unpolled.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify
from adapters.state import LEASE_PREFIX
from adapters.status_item import STATUS_PREFIX, WATCH_INDEX, WATCHED, status_key
from domain.watch import LeaseRecord, PollRecord

BATCH_KEYS = 100  # BatchGetItem's limit
BATCH_TRIES = 3


class WatchIndex:
    """Implements ``service.watchdog.Records`` (a low-level ``dynamodb`` client)."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def records(self, channel_ids: Sequence[str]) -> tuple[dict[str, PollRecord], dict[str, LeaseRecord]]:
        """Every channel's status record and lease, by channel id (all pages); the status items of
        ``channel_ids`` the index lacks are read by key."""
        polls: dict[str, PollRecord] = {}
        leases: dict[str, LeaseRecord] = {}
        try:
            pages = self._client.get_paginator("query").paginate(
                TableName=self._table,
                IndexName=WATCH_INDEX,
                KeyConditionExpression="#watch = :watched",
                ExpressionAttributeNames={"#watch": "watch"},
                ExpressionAttributeValues={":watched": {"S": WATCHED}},
            )
            for page in pages:
                for item in page.get("Items", []):
                    _sort(item, polls, leases)
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"reading the index {WATCH_INDEX} of table {self._table}") from error
        missing = [channel_id for channel_id in channel_ids if channel_id not in polls]
        for start in range(0, len(missing), BATCH_KEYS):
            for item in self._by_key(missing[start : start + BATCH_KEYS]):
                _sort(item, polls, leases)
        return polls, leases

    def _by_key(self, channel_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The status items of ``channel_ids`` that exist; what DynamoDB leaves unprocessed is asked
        again (``BATCH_TRIES`` requests in all)."""
        request: dict[str, Any] = {
            self._table: {
                "Keys": [{"pk": {"S": status_key(channel_id)}} for channel_id in channel_ids],
                "ProjectionExpression": "pk, #status, #at, since",
                "ExpressionAttributeNames": {"#status": "status", "#at": "at"},
            }
        }
        found: list[dict[str, Any]] = []
        try:
            for _ in range(BATCH_TRIES):
                answer = self._client.batch_get_item(RequestItems=request)
                found.extend(answer.get("Responses", {}).get(self._table, []))
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"reading status items of table {self._table}") from error
        return found


def _sort(item: dict[str, Any], polls: dict[str, PollRecord], leases: dict[str, LeaseRecord]) -> None:
    key = item["pk"]["S"]
    if key.startswith(STATUS_PREFIX):
        at = datetime.fromisoformat(item["at"]["S"])
        since = datetime.fromisoformat(item["since"]["S"]) if "since" in item else at
        polls[key.removeprefix(STATUS_PREFIX)] = PollRecord(status=item["status"]["S"], at=at, since=since)
    elif key.startswith(LEASE_PREFIX):
        leases[key.removeprefix(LEASE_PREFIX)] = LeaseRecord(
            acquired_at=_epoch(item["acquired_at"]), expires_at=_epoch(item["expires_at"])
        )


def _epoch(value: dict[str, str]) -> datetime:
    return datetime.fromtimestamp(int(value["N"]), UTC)
