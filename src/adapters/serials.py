"""S10 serials from an atomic counter item in the state table (DESIGN §5).

One ``UpdateItem`` per import file: ``ADD #value :count`` on the item ``{"pk": "counter#s10"}``,
returning the new value; the caller owns the block ``new - count + 1 .. new``. DynamoDB applies
``ADD`` atomically, so concurrent polls of any channel get disjoint blocks. The condition keeps the
counter from ever passing 99_999_999 (S10 serials have 8 digits): an exhausted counter fails
permanently and is not bumped.

A block whose answer is lost (the SDK retries after the write went through) is skipped, never
handed out twice: gaps are harmless, repeats are not.

The range is shared by every channel and can never be reused, so it warns early: every allocation
that leaves the counter at or past 90 % of the range (``WARN_FROM``), and every allocation refused
there, logs a warning with the serials left and counts ``SerialRangeLow`` (dimension ``service``
only: the range is not a channel's), which raises ``SerialRangeLowAlarm`` (docs/deploy.md).
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from domain.errors import PermanentError
from service.telemetry import NAMESPACE, SERVICE, logger

SERIAL_MAX = 99_999_999
DEFAULT_COUNTER_KEY = "counter#s10"
# The first counter value at or past 90 % of 1..SERIAL_MAX (89_999_999.1, rounded up).
WARN_FROM = 90_000_000
RANGE_LOW_METRIC = "SerialRangeLow"


def range_is_low(highest: int) -> bool:
    """Whether a counter whose highest serial handed out is ``highest`` has used 90 % of the range."""
    return highest >= WARN_FROM


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
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                current = _counter_value(error.response.get("Item"))
                if current is not None:
                    self._warn_if_low(current)
                raise PermanentError(
                    f"{what}: the S10 serial range is exhausted (would pass {SERIAL_MAX})"
                ) from error
            raise classify(error, what) from error
        except BotoCoreError as error:
            raise classify(error, what) from error
        new = int(answer["Attributes"]["value"]["N"])
        self._warn_if_low(new)
        return range(new - count + 1, new + 1)

    def _warn_if_low(self, highest: int) -> None:
        if not range_is_low(highest):
            return
        left = SERIAL_MAX - highest
        logger.warning(
            "S10 serial range at least 90%% used: counter %s at %d of %d, %d serials left for all channels",
            self._key,
            highest,
            SERIAL_MAX,
            left,
            extra={
                "counter": self._key,
                "table": self._table,
                "highest_serial": highest,
                "serials_left": left,
            },
        )
        # Namespace and service are passed (telemetry's values, with their defaults): without
        # POWERTOOLS_METRICS_NAMESPACE single_metric raises (adapters.scripts), and a metric without
        # the service dimension would be invisible to the alarm's query.
        with single_metric(
            name=RANGE_LOW_METRIC,
            unit=MetricUnit.Count,
            value=1,
            namespace=NAMESPACE,
            default_dimensions={"service": SERVICE},
        ) as metric:
            metric.add_metadata("counter", self._key)
            metric.add_metadata("serials_left", left)


def _counter_value(item: Any) -> int | None:
    """The ``value`` of the counter item DynamoDB returned with a failed condition, if it did."""
    try:
        return int(item["value"]["N"])
    except (KeyError, TypeError, ValueError):
        return None
