"""S10 serials from an atomic counter item in the state table (DESIGN §5).

One ``UpdateItem`` per import file: ``ADD #value :count`` on the item ``{"pk": "counter#s10"}``,
returning the new value; the caller owns the block ``new - count + 1 .. new``. DynamoDB applies
``ADD`` atomically, so concurrent polls of any channel get disjoint blocks. The condition keeps the
counter from ever passing 99_999_999 (S10 serials have 8 digits): an exhausted counter fails
permanently and is not bumped.

A block whose answer is lost (the SDK retries after the write went through) is skipped, never
handed out twice: gaps are harmless, repeats are not.
"""

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from domain.errors import PermanentError

SERIAL_MAX = 99_999_999
DEFAULT_COUNTER_KEY = "counter#s10"


class DynamoDbSerialCounter:
    """``SerialSource`` backed by one counter item (hash key ``pk``, number attribute ``value``)."""

    def __init__(self, table_name: str, client: Any, counter_key: str = DEFAULT_COUNTER_KEY) -> None:
        self._table = table_name
        self.client = client
        self._key = counter_key

    def allocate(self, count: int) -> range:
        """``count`` fresh serials, contiguous; an empty range for 0 without calling DynamoDB."""
        if count < 0 or count > SERIAL_MAX:
            raise ValueError(f"cannot allocate {count} serials")
        if count == 0:
            return range(1, 1)
        what = f"allocating {count} serials from counter {self._key} in table {self._table}"
        try:
            answer = self.client.update_item(
                TableName=self._table,
                Key={"pk": {"S": self._key}},
                UpdateExpression="ADD #value :count",
                ConditionExpression="attribute_not_exists(#value) OR #value <= :highest_start",
                ExpressionAttributeNames={"#value": "value"},
                ExpressionAttributeValues={
                    ":count": {"N": str(count)},
                    ":highest_start": {"N": str(SERIAL_MAX - count)},
                },
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise PermanentError(
                    f"{what}: the S10 serial range is exhausted (would pass {SERIAL_MAX})"
                ) from error
            raise classify(error, what) from error
        except BotoCoreError as error:
            raise classify(error, what) from error
        new = int(answer["Attributes"]["value"]["N"])
        return range(new - count + 1, new + 1)
