"""Channel items from the DynamoDB channel table, as plain Python values (``Decimal`` numbers, sets)."""

from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify

_deserializer = TypeDeserializer()


class ChannelTable:
    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

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
        return {name: _deserializer.deserialize(value) for name, value in item.items()}
