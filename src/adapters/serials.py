"""S10 serials from an atomic counter item in the state table (DESIGN §5).

A block per import file, taken from the item ``{"pk": "counter#s10"}`` and recorded in the
message's ledger entry (DESIGN §6: recorded before it is used) in one request where it can be:

* this process took the last block, so it knows the counter's value: one ``TransactWriteItems``
  moves the counter on from that value (condition: it still holds it) and puts the ledger entry;
* else (a cold start, or another poll took a block meanwhile and the transaction was cancelled):
  ``ADD #value :count``, returning the new value (the caller owns ``new - count + 1 .. new``), then
  the entry's ``PutItem``. DynamoDB applies ``ADD`` atomically, so concurrent polls of any channel
  get disjoint blocks; its condition keeps the counter from ever passing 99_999_999 (S10 serials
  have 8 digits): an exhausted counter fails permanently and is not bumped.

A block whose answer is lost (the SDK retries after the write went through) is skipped, never
handed out twice: gaps are harmless, repeats are not.

The range is shared by every channel and can never be reused, so it warns early: every allocation
that leaves the counter at or past 90 % of the range (``WARN_FROM``), and every allocation refused
there, logs a warning with the serials left and counts ``SerialRangeLow`` (dimension ``service``
only: the range is not a channel's), which raises ``SerialRangeLowAlarm`` (docs/deploy.md).
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from adapters.state import ledger_item
from domain.errors import PermanentError
from domain.ledger import LedgerEntry
from service.telemetry import NAMESPACE, SERVICE, logger

SERIAL_MAX = 99_999_999
DEFAULT_COUNTER_KEY = "counter#s10"
# The first counter value at or past 90 % of 1..SERIAL_MAX (89_999_999.1, rounded up).
WARN_FROM = 90_000_000
RANGE_LOW_METRIC = "SerialRangeLow"

# The counter's value after this process's last allocation, per (table, counter): the next
# allocation's guess, checked by the transaction's condition.
_known_values: dict[tuple[str, str], int] = {}


def range_is_low(highest: int) -> bool:
    """Whether a counter whose highest serial handed out is ``highest`` has used 90 % of the range."""
    return highest >= WARN_FROM


class DynamoDbSerialCounter:
    """``SerialCounter`` backed by one counter item (hash key ``pk``, number attribute ``value``)."""

    def __init__(self, table_name: str, client: Any, counter_key: str = DEFAULT_COUNTER_KEY) -> None:
        self._table = table_name
        self.client = client
        self._key = counter_key

    def allocate(self, count: int) -> range:
        """``count`` fresh serials, contiguous; an empty range for 0 without calling DynamoDB."""
        return self.allocate_recorded(count, None)

    def allocate_recorded(self, count: int, record: Callable[[range], LedgerEntry] | None) -> range:
        """``count`` fresh serials, and the ledger entry ``record(serials)`` written with them.

        One ``TransactWriteItems`` when this process knows the counter's value (it took the last
        block): the counter moves from that value only if it still holds it, and the entry is put in
        the same transaction. Otherwise, or when another process moved the counter meanwhile, an
        atomic ``ADD`` (which also tells the value for next time) and then the entry's ``PutItem``.
        """
        if count < 0 or count > SERIAL_MAX:
            raise ValueError(f"cannot allocate {count} serials")
        if count == 0:
            return range(1, 1)
        known = _known_values.get((self._table, self._key))
        if known is not None and known + count <= SERIAL_MAX:
            block = range(known + 1, known + count + 1)
            if self._take_with_entry(block, record):
                return self._taken(block)
        block = self._add(count)
        if record is not None:
            self._put_entry(record(block))
        return self._taken(block)

    def _take_with_entry(self, block: range, record: Callable[[range], LedgerEntry] | None) -> bool:
        """The counter from ``block.start - 1`` to ``block.stop - 1``, and the entry, in one
        transaction; False when the counter had moved (nothing written)."""
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": self._key}},
                    "UpdateExpression": "SET #value = :new",
                    "ConditionExpression": "#value = :old",
                    "ExpressionAttributeNames": {"#value": "value"},
                    "ExpressionAttributeValues": {
                        ":old": {"N": str(block.start - 1)},
                        ":new": {"N": str(block.stop - 1)},
                    },
                }
            }
        ]
        if record is not None:
            items.append({"Put": {"TableName": self._table, "Item": ledger_item(record(block))}})
        what = f"allocating {len(block)} serials from counter {self._key} in table {self._table}"
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as error:
            if error_code(error) == "TransactionCanceledException":
                _known_values.pop((self._table, self._key), None)
                return False
            raise classify(error, what) from error
        except BotoCoreError as error:
            raise classify(error, what) from error
        return True

    def _add(self, count: int) -> range:
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
        return range(new - count + 1, new + 1)

    def _put_entry(self, entry: LedgerEntry) -> None:
        try:
            self.client.put_item(TableName=self._table, Item=ledger_item(entry))
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"writing the ledger in table {self._table}") from error

    def _taken(self, block: range) -> range:
        _known_values[(self._table, self._key)] = block.stop - 1
        self._warn_if_low(block.stop - 1)
        return block

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


def forget_known_counters() -> None:
    """As after a cold start (tests start each case so)."""
    _known_values.clear()
