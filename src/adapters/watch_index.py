"""What the watchdog reads of the state table, in bulk: the sparse index ``watch``.

Only the status items (``status#<channel_id>``) and the poll leases (``lease#<channel_id>``) carry
the index's key, so one ``Query`` a page reads every channel's last poll and lease and nothing of
the ledger, the mailbox memories or the counters (which a ``Scan`` would read and bill).
"""

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify
from adapters.state import LEASE_PREFIX
from adapters.status_item import STATUS_PREFIX, WATCH_INDEX, WATCHED
from domain.watch import LeaseRecord, PollRecord


class WatchIndex:
    """Implements ``service.watchdog.Records`` (a low-level ``dynamodb`` client)."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def records(self) -> tuple[dict[str, PollRecord], dict[str, LeaseRecord]]:
        """Every channel's status record and lease, by channel id (all pages)."""
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
        return polls, leases


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
