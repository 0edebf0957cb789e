"""The state table: the message ledger, the per-channel poll lease and the error-reply counters (§6).

Both are single items keyed by ``pk``; ``expires_at`` is the table's TTL attribute, so old ledger
entries and abandoned leases disappear by themselves. The lease is taken with a conditional write
and is only ever released by its owner; a crashed poll's lease simply expires.
"""

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, conditional
from adapters.status_item import WATCHED
from domain.ledger import Claim, LedgerEntry, SerialBlock, Stage
from domain.outcomes import Outcome

LEDGER_RETENTION_SECONDS = 90 * 24 * 3600
BATCH_SIZE = 25
BATCH_TRIES = 3
REPLY_COUNTER_RETENTION_SECONDS = 2 * 3600
LEASE_PREFIX = "lease#"


class DynamoDbLedger:
    """Implements ``service.ports.Ledger``."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def get(self, channel_id: str, digest: str) -> LedgerEntry | None:
        try:
            answer = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": _ledger_key(channel_id, digest)}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"reading the ledger in table {self._table}") from error
        item = answer.get("Item")
        return None if item is None else _entry(channel_id, digest, item)

    def claim(self, channel_id: str, digest: str, poll_id: str, since: datetime) -> LedgerEntry | None:
        """One ``UpdateItem``: the claim is set (a fresh entry made around it when there is none),
        and the item as it was comes back (``ALL_OLD``)."""
        now = int(time.time())
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _ledger_key(channel_id, digest)}},
                UpdateExpression=(
                    "SET claimed_by = :poll, claimed_at = :since, updated_at = :now, expires_at = :expires, "
                    "channel_id = if_not_exists(channel_id, :channel), "
                    "sha256 = if_not_exists(sha256, :digest), "
                    "stage = if_not_exists(stage, :received), attempts = if_not_exists(attempts, :zero)"
                ),
                ExpressionAttributeValues={
                    ":poll": {"S": poll_id},
                    ":since": {"S": since.isoformat()},
                    ":now": {"N": str(now)},
                    ":expires": {"N": str(now + LEDGER_RETENTION_SECONDS)},
                    ":channel": {"S": channel_id},
                    ":digest": {"S": digest},
                    ":received": {"S": Stage.RECEIVED.value},
                    ":zero": {"N": "0"},
                },
                ReturnValues="ALL_OLD",
            )
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"claiming the message in the ledger in table {self._table}") from error
        item = answer.get("Attributes")
        return None if not item else _entry(channel_id, digest, item)

    def save(self, entry: LedgerEntry) -> None:
        try:
            self._client.put_item(TableName=self._table, Item=ledger_item(entry))
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"writing the ledger in table {self._table}") from error

    def save_all(self, entries: Sequence[LedgerEntry]) -> None:
        """``BatchWriteItem``, 25 entries a call; what DynamoDB leaves unprocessed is tried again
        (``BATCH_TRIES`` times in all) and then left at its last stage."""
        requests = [{"PutRequest": {"Item": ledger_item(entry)}} for entry in entries]
        for start in range(0, len(requests), BATCH_SIZE):
            pending = requests[start : start + BATCH_SIZE]
            for _ in range(BATCH_TRIES):
                try:
                    answer = self._client.batch_write_item(RequestItems={self._table: pending})
                except (ClientError, BotoCoreError) as error:
                    raise classify(error, f"writing the ledger in table {self._table}") from error
                pending = answer.get("UnprocessedItems", {}).get(self._table, [])
                if not pending:
                    break


class DynamoDbLease:
    """Implements ``service.ports.Lease``: at most one poll per channel at a time."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def acquire(self, channel_id: str, owner: str, seconds: float) -> bool:
        now = time.time()
        return conditional(
            lambda: self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": _lease_key(channel_id)},
                    "watch": {"S": WATCHED},  # in the watchdog's index (adapters.watch_index)
                    "channel_id": {"S": channel_id},
                    "owner": {"S": owner},
                    "acquired_at": {"N": str(int(now))},
                    "expires_at": {"N": str(int(now + seconds))},
                },
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(int(now))}},
            ),
            f"taking the poll lease of {channel_id} in table {self._table}",
        )

    def release(self, channel_id: str, owner: str) -> None:
        """Only the owner's own lease is deleted (one that expired and was taken since stays)."""
        conditional(
            lambda: self._client.delete_item(
                TableName=self._table,
                Key={"pk": {"S": _lease_key(channel_id)}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            ),
            f"releasing the poll lease of {channel_id}",
        )


class DynamoDbReplyLimiter:
    """Implements ``service.ports.ReplyLimiter``: one counter item per channel, sender and hour."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def allow(self, channel_id: str, sender: str, hour: str, limit: int) -> bool:
        expires = int(time.time()) + REPLY_COUNTER_RETENTION_SECONDS
        return conditional(
            lambda: self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"replies#{channel_id}#{sender}#{hour}"}},
                UpdateExpression="ADD #sent :one SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(#sent) OR #sent < :limit",
                ExpressionAttributeNames={"#sent": "sent"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":expires": {"N": str(expires)},
                },
            ),
            f"counting error replies to {sender} in table {self._table}",
        )


def ledger_item(entry: LedgerEntry) -> dict[str, Any]:
    """The entry as the state table keeps it (kept ``LEDGER_RETENTION_SECONDS`` from now)."""
    now = int(time.time())
    item: dict[str, Any] = {
        "pk": {"S": _ledger_key(entry.channel_id, entry.digest)},
        "channel_id": {"S": entry.channel_id},
        "sha256": {"S": entry.digest},
        "stage": {"S": entry.stage.value},
        "attempts": {"N": str(entry.attempts)},
        "updated_at": {"N": str(now)},
        "expires_at": {"N": str(now + LEDGER_RETENTION_SECONDS)},
    }
    if entry.last_error:
        item["last_error"] = {"S": entry.last_error[:2000]}
    if entry.outcome is not None:
        item["outcome"] = {"S": entry.outcome.value}
    if entry.reply_key:
        item["reply_key"] = {"S": entry.reply_key}
    if entry.recipient:
        item["recipient"] = {"S": entry.recipient}
    if entry.serial_blocks:
        item["serial_blocks"] = {
            "M": {
                key: {"M": {"first": {"N": str(block.first)}, "count": {"N": str(block.count)}}}
                for key, block in entry.serial_blocks.items()
            }
        }
    if entry.claim is not None:
        item["claimed_by"] = {"S": entry.claim.poll_id}
        item["claimed_at"] = {"S": entry.claim.since.isoformat()}
    if entry.dead_claims:
        item["dead_claims"] = {"L": [{"S": since.isoformat()} for since in entry.dead_claims]}
    return item


def _entry(channel_id: str, digest: str, item: dict[str, Any]) -> LedgerEntry:
    blocks = {
        key: SerialBlock(first=int(value["M"]["first"]["N"]), count=int(value["M"]["count"]["N"]))
        for key, value in item.get("serial_blocks", {}).get("M", {}).items()
    }
    claim = None
    if "claimed_by" in item:
        claim = Claim(item["claimed_by"]["S"], datetime.fromisoformat(item["claimed_at"]["S"]))
    return LedgerEntry.restored(
        channel_id,
        digest,
        stage=Stage(item["stage"]["S"]),
        attempts=int(item["attempts"]["N"]),
        last_error=item.get("last_error", {}).get("S"),
        outcome=Outcome(item["outcome"]["S"]) if "outcome" in item else None,
        reply_key=item.get("reply_key", {}).get("S"),
        recipient=item.get("recipient", {}).get("S"),
        serial_blocks=blocks,
        claim=claim,
        dead_claims=tuple(
            datetime.fromisoformat(since["S"]) for since in item.get("dead_claims", {}).get("L", [])
        ),
    )


def _ledger_key(channel_id: str, digest: str) -> str:
    return f"ledger#{channel_id}#{digest}"


def _lease_key(channel_id: str) -> str:
    return f"{LEASE_PREFIX}{channel_id}"
