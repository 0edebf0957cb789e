"""Channel items from the DynamoDB channel table, as plain Python values (``Decimal`` numbers, sets)."""

from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify

if TYPE_CHECKING:
    from boto3.dynamodb.types import TypeDeserializer


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

    def put(self, item: dict[str, Any]) -> None:
        """Write an item given in DynamoDB's typed form, replacing the channel's item if there is one."""
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"writing a channel item to table {self._table}") from error


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    deserializer = _deserializer()
    return {name: deserializer.deserialize(value) for name, value in item.items()}


@cache
def _deserializer() -> "TypeDeserializer":
    """boto3's deserializer, made when the first item is read: ``boto3.dynamodb`` imports all of
    boto3, which the first AWS client (``adapters.clients``) imports then anyway, not the cold start."""
    from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415  # boto3, lazily

    return TypeDeserializer()
