"""Channel items from the DynamoDB channel table, as plain Python values (``Decimal`` numbers, sets)."""

from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify

_deserializer = TypeDeserializer()


class ChannelTable:
    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def items(self) -> Iterator[dict[str, Any]]:
        """Every item of the table (consistent scan, all pages), as plain values."""
        paginator = self._client.get_paginator("scan")
        try:
            for page in paginator.paginate(TableName=self._table, ConsistentRead=True):
                for item in page.get("Items", []):
                    yield _plain(item)
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"reading the channel table {self._table}") from error

    def get(self, channel_id: str) -> dict[str, Any] | None:
        """The item as the console shows it, or ``None`` when there is no such channel."""
        try:
            answer = self._client.get_item(
                TableName=self._table, Key={"channel_id": {"S": channel_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"reading channel {channel_id} from table {self._table}") from error
        item = answer.get("Item")
        if item is None:
            return None
        return _plain(item)


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}
