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

Each block is also counted against the channel's budget of the day (``domain.serial_budget``), in
the item ``{"pk": "shipments#<channel_id>#<YYYY-MM-DD>"}`` (number ``issued``, TTL ``expires_at``):
``ADD #issued :count`` on condition that the sum stays within the budget. In the transaction it is a
third item, so block, entry and count are written together or not at all; the safe way counts first
(its failed condition returns what was issued: the refusal says how many are left), then takes the
block. A block a retry reuses is never asked for again (``service.serial_blocks``), so it is counted
once. A failure between the count and the block counts ids that were never handed out: the budget
errs on the side of the range.

The range is shared by every channel and can never be reused, so it warns early: every allocation
that leaves the counter at or past 90 % of the range (``WARN_FROM``), and every allocation refused
there, logs a warning with the serials left and counts ``SerialRangeLow`` (dimension ``service``
only: the range is not a channel's), which raises ``SerialRangeLowAlarm`` (docs/deploy.md).
"""

import time
from collections.abc import Callable
from typing import Any, NoReturn

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from adapters.state import ledger_item
from domain.errors import PermanentError
from domain.ledger import LedgerEntry
from domain.serial_budget import DailyBudget
from service.telemetry import NAMESPACE, SERVICE, logger

SERIAL_MAX = 99_999_999
DEFAULT_COUNTER_KEY = "counter#s10"
# The first counter value at or past 90 % of 1..SERIAL_MAX (89_999_999.1, rounded up).
WARN_FROM = 90_000_000
RANGE_LOW_METRIC = "SerialRangeLow"
# A day's count is kept a week (TTL): long enough to look at, never needed after its day.
BUDGET_RETENTION_SECONDS = 7 * 24 * 3600

# The counter's value after this process's last allocation, per (table, counter): the next
# allocation's guess, checked by the transaction's condition (kept warm by ``app.warm``).
type KnownValues = dict[tuple[str, str], int]


def range_is_low(highest: int) -> bool:
    """Whether a counter whose highest serial handed out is ``highest`` has used 90 % of the range."""
    return highest >= WARN_FROM


class DynamoDbSerialCounter:
    """``SerialCounter`` backed by one counter item (hash key ``pk``, number attribute ``value``);
    ``known`` is the warm state's memory of counter values (default: a private, cold one)."""

    def __init__(
        self,
        table_name: str,
        client: Any,
        counter_key: str = DEFAULT_COUNTER_KEY,
        *,
        known: KnownValues | None = None,
    ) -> None:
        self._table = table_name
        self.client = client
        self._key = counter_key
        self._known = known if known is not None else {}

    def allocate(self, count: int) -> range:
        """``count`` fresh serials, contiguous, counted against no budget; empty for 0 without a call."""
        return self.allocate_recorded(count, None, None)

    def allocate_recorded(
        self, count: int, record: Callable[[range], LedgerEntry] | None, budget: DailyBudget | None
    ) -> range:
        """``count`` fresh serials, the ledger entry ``record(serials)`` written with them, and the
        count added to ``budget``; ``PermanentError`` naming the budget when they would pass it.

        One ``TransactWriteItems`` when this process knows the counter's value (it took the last
        block): the counter moves from that value only if it still holds it, the budget only if it
        has room, and the entry is put in the same transaction. Otherwise, or when the transaction
        was cancelled, the budget's conditional ``ADD``, an atomic ``ADD`` on the counter (which also
        tells the value for next time), then the entry's ``PutItem``.
        """
        if count < 0 or count > SERIAL_MAX:
            raise ValueError(f"cannot allocate {count} serials")
        if count == 0:
            return range(1, 1)
        if budget is not None and count > budget.limit:
            self._refuse(budget, count, self._issued(budget))
        known = self._known.get((self._table, self._key))
        if known is not None and known + count <= SERIAL_MAX:
            block = range(known + 1, known + count + 1)
            if self._take_with_entry(block, record, budget):
                return self._taken(block)
        if budget is not None:
            self._count(budget, count)
        block = self._add(count)
        if record is not None:
            self._put_entry(record(block))
        return self._taken(block)

    def _take_with_entry(
        self, block: range, record: Callable[[range], LedgerEntry] | None, budget: DailyBudget | None
    ) -> bool:
        """The counter from ``block.start - 1`` to ``block.stop - 1``, the entry and the budget's
        count in one transaction; False when it was cancelled (nothing written)."""
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
        if budget is not None:
            items.append({"Update": {"TableName": self._table, **_count_request(budget, len(block))}})
        if record is not None:
            items.append({"Put": {"TableName": self._table, "Item": ledger_item(record(block))}})
        what = f"allocating {len(block)} serials from counter {self._key} in table {self._table}"
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as error:
            if error_code(error) == "TransactionCanceledException":
                # The counter moved, the budget is short, or another transaction touched an item:
                # the safe way finds out which.
                self._known.pop((self._table, self._key), None)
                return False
            raise classify(error, what) from error
        except BotoCoreError as error:
            raise classify(error, what) from error
        return True

    def _count(self, budget: DailyBudget, count: int) -> None:
        """``count`` more ids issued to the budget's channel today, if the budget has room."""
        what = f"counting {count} shipment ids of channel {budget.channel_id} in table {self._table}"
        try:
            self.client.update_item(
                TableName=self._table,
                **_count_request(budget, count),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                self._refuse(budget, count, _number(error.response.get("Item"), "issued") or 0)
            raise classify(error, what) from error
        except BotoCoreError as error:
            raise classify(error, what) from error

    def _issued(self, budget: DailyBudget) -> int:
        """The ids issued to the budget's channel today (read only to tell a refused partner)."""
        try:
            answer = self.client.get_item(
                TableName=self._table, Key={"pk": {"S": budget_key(budget)}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"reading {budget_key(budget)} in table {self._table}") from error
        return _number(answer.get("Item"), "issued") or 0

    def _refuse(self, budget: DailyBudget, count: int, issued: int) -> NoReturn:
        logger.warning(
            "shipment budget of channel %s reached: %d ids needed, %d of %d issued on %s",
            budget.channel_id,
            count,
            issued,
            budget.limit,
            budget.day,
            extra={
                "budget_day": budget.day,
                "max_shipments_per_day": budget.limit,
                "issued_today": issued,
                "needed": count,
            },
        )
        raise PermanentError(budget.refusal(count, issued))

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
                current = _number(error.response.get("Item"), "value")
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
        self._known[(self._table, self._key)] = block.stop - 1
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


def budget_key(budget: DailyBudget) -> str:
    """The state table key of a channel's count of shipment ids on one day."""
    return f"shipments#{budget.channel_id}#{budget.day}"


def _count_request(budget: DailyBudget, count: int) -> dict[str, Any]:
    """Key, expressions and values that add ``count`` to the day's count while it stays in budget."""
    return {
        "Key": {"pk": {"S": budget_key(budget)}},
        "UpdateExpression": "ADD #issued :count SET expires_at = :expires",
        "ConditionExpression": "attribute_not_exists(#issued) OR #issued <= :most",
        "ExpressionAttributeNames": {"#issued": "issued"},
        "ExpressionAttributeValues": {
            ":count": {"N": str(count)},
            ":most": {"N": str(budget.limit - count)},
            ":expires": {"N": str(int(time.time()) + BUDGET_RETENTION_SECONDS)},
        },
    }


def _number(item: Any, name: str) -> int | None:
    """The number attribute ``name`` of an item DynamoDB returned with a failed condition, if any."""
    try:
        return int(item[name]["N"])
    except (KeyError, TypeError, ValueError):
        return None
