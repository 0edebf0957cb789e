"""The S10 serial counter against the real moto server, in the state table built from the template.

These tests check the requests and what moto answers to them, one poll at a time. Whether two
concurrent polls could ever get the same serial is not tested here: moto's ``TransactWriteItems`` is
not atomic (two transactions conditioned on the same counter value both succeed, about 1 round in
20), which real DynamoDB never allows, so such a test neither proves it nor stays green. It is
proved against a store with DynamoDB's documented atomicity in tests/unit/test_serial_allocation.py
(tests/README.md).
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from adapters.aws_errors import DEPLOYMENT
from adapters.serials import SERIAL_MAX, WARN_FROM, DynamoDbSerialCounter, range_is_low
from adapters.state import DynamoDbLedger
from devstack import aws
from devstack.aws import StackNames
from devstack.moto import MotoServer
from devstack.stack import LocalStack
from domain.errors import ChannelFailure, PermanentError, TransientError
from domain.ledger import LedgerEntry, SerialBlock
from domain.serial_budget import DailyBudget
from domain.shipments import SerialSource
from tests.integration.conftest import JsonLogs

pytestmark = pytest.mark.integration

TABLE = StackNames().state_table


def _client(endpoint: str, **config: Any) -> Any:
    return (
        aws.client("dynamodb", endpoint)
        if not config
        else boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name=aws.REGION,
            aws_access_key_id=aws.ACCESS_KEY,
            aws_secret_access_key=aws.ACCESS_KEY,
            config=Config(**config),
        )
    )


@pytest.fixture
def moto_endpoint(stack: LocalStack) -> str:
    return stack.endpoint_url


@pytest.fixture
def table(stack: LocalStack) -> tuple[Any, str]:
    """The state table as the template defines it, empty for this test."""
    return _client(stack.endpoint_url), stack.names.state_table


def test_allocations_are_contiguous_and_never_overlap(table: tuple[Any, str]) -> None:
    # Given a fresh counter
    client, name = table
    counter: SerialSource = DynamoDbSerialCounter(name, client=client)
    # When three files ask for 3, 1 and 5 serials
    blocks = [counter.allocate(3), counter.allocate(1), counter.allocate(5)]
    # Then the blocks follow each other from 1, without gaps or overlaps
    assert blocks == [range(1, 4), range(4, 5), range(5, 10)]
    item = client.get_item(TableName=name, Key={"pk": {"S": "counter#s10"}}, ConsistentRead=True)["Item"]
    assert item["value"] == {"N": "9"}


def calls_of(client: Any) -> list[str]:
    """The names of the API calls ``client`` makes from now on."""
    made: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: made.append(model.name))
    return made


def test_a_block_and_its_ledger_entry_are_one_transaction_once_the_counter_is_known(
    table: tuple[Any, str],
) -> None:
    client, name = table
    counter = DynamoDbSerialCounter(name, client=client)
    ledger = DynamoDbLedger(name, client)
    entry = LedgerEntry("acme", "d" * 64)

    def recording(key: str) -> Callable[[range], LedgerEntry]:
        return lambda block: entry.with_serial_block(key, SerialBlock(block.start, len(block)))

    made = calls_of(client)
    budget = DailyBudget("acme", "2026-11-29", limit=100)
    first = counter.allocate_recorded(3, recording("0:a.csv"), budget)
    second = counter.allocate_recorded(2, recording("1:b.csv"), budget)

    assert (first, second) == (range(1, 4), range(4, 6))
    # a cold start: the budget's count, the counter's ADD, the entry; then one request for all three
    assert made == ["UpdateItem", "UpdateItem", "PutItem", "TransactWriteItems"]
    recorded = ledger.claim("acme", "d" * 64, "poll", datetime(2026, 11, 29, tzinfo=UTC))
    assert recorded is not None
    assert recorded.serial_blocks == {"1:b.csv": SerialBlock(4, 2)}
    count = client.get_item(TableName=name, Key={"pk": {"S": "shipments#acme#2026-11-29"}})["Item"]
    assert count["issued"] == {"N": "5"}
    assert int(count["expires_at"]["N"]) > datetime.now(UTC).timestamp() + 6 * 24 * 3600


def test_a_file_past_the_budget_is_refused_naming_it_and_the_ids_left(table: tuple[Any, str]) -> None:
    # Given a channel that was issued 8 of its 10 ids today, by a poll that knows the counter
    client, name = table
    counter = DynamoDbSerialCounter(name, client=client)
    budget = DailyBudget("acme", "2026-11-29", limit=10)
    assert counter.allocate_recorded(8, None, budget) == range(1, 9)
    made = calls_of(client)
    # When a file needs 3 / Then the transaction is cancelled, and the count's own condition says why
    with pytest.raises(PermanentError) as refused:
        counter.allocate_recorded(3, lambda block: LedgerEntry("acme", "f" * 64), budget)
    assert made == ["TransactWriteItems", "UpdateItem"]
    assert str(refused.value) == (
        "this file needs 3 shipment ids, but channel acme may be issued at most 10 a day "
        "(max_shipments_per_day) and has 2 left today (2026-11-29, UTC). No shipment id was issued "
        "for it: send it again tomorrow, or in smaller files, or ask the LetterShop operator to raise "
        "the budget"
    )
    # and nothing was written: no entry, the counter and the count where they were
    assert DynamoDbLedger(name, client).get("acme", "f" * 64) is None
    assert counter.allocate_recorded(2, None, budget) == range(9, 11)


def test_a_counter_moved_by_another_poll_cancels_the_transaction_and_nothing_is_handed_out_twice(
    table: tuple[Any, str],
) -> None:
    client, name = table
    counter = DynamoDbSerialCounter(name, client=client)
    assert counter.allocate(5) == range(1, 6)
    client.update_item(  # another poll, in another process, takes 6..8
        TableName=name,
        Key={"pk": {"S": "counter#s10"}},
        UpdateExpression="ADD #value :count",
        ExpressionAttributeNames={"#value": "value"},
        ExpressionAttributeValues={":count": {"N": "3"}},
    )

    made = calls_of(client)
    after = counter.allocate_recorded(1, lambda block: LedgerEntry("acme", "e" * 64), None)

    assert after == range(9, 10)
    assert made == ["TransactWriteItems", "UpdateItem", "PutItem"]  # cancelled, then the safe way
    assert DynamoDbLedger(name, client).claim("acme", "e" * 64, "poll", datetime.now(UTC)) is not None


def test_zero_serials_need_no_call(table: tuple[Any, str]) -> None:
    client, name = table
    counter = DynamoDbSerialCounter(name, client=client)
    assert len(counter.allocate(0)) == 0
    assert counter.allocate(1) == range(1, 2)


def test_counters_with_different_keys_are_independent(table: tuple[Any, str]) -> None:
    client, name = table
    first = DynamoDbSerialCounter(name, client=client)
    other = DynamoDbSerialCounter(name, client=client, counter_key="counter#test")
    assert first.allocate(5) == range(1, 6)
    assert other.allocate(2) == range(1, 3)
    assert first.allocate(1) == range(6, 7)


def test_the_counter_never_passes_eight_digits(table: tuple[Any, str]) -> None:
    # Given a counter close to the end of the S10 serial range
    client, name = table
    client.put_item(TableName=name, Item={"pk": {"S": "counter#s10"}, "value": {"N": "99999990"}})
    counter = DynamoDbSerialCounter(name, client=client)
    # When a block would pass 99_999_999 / Then it fails permanently and the counter is not moved
    with pytest.raises(PermanentError, match="exhausted"):
        counter.allocate(10)
    assert counter.allocate(9) == range(99_999_991, 100_000_000)


def test_the_range_is_low_from_ninety_percent_on() -> None:
    assert WARN_FROM - 1 < SERIAL_MAX * 0.9 <= WARN_FROM  # the first serial at or past 90 %
    assert not range_is_low(WARN_FROM - 1)
    assert range_is_low(WARN_FROM)
    assert range_is_low(SERIAL_MAX)


def _set_counter(client: Any, name: str, value: int) -> None:
    client.put_item(TableName=name, Item={"pk": {"S": "counter#s10"}, "value": {"N": str(value)}})


def _range_low_metrics(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(out) for out in capsys.readouterr().out.splitlines() if '"SerialRangeLow"' in out]


def _range_low_lines(json_logs: JsonLogs) -> list[dict[str, Any]]:
    return [line for line in json_logs.lines() if line["message"].startswith("S10 serial range at least 90%")]


def test_an_allocation_reaching_ninety_percent_warns_with_the_serials_left(
    table: tuple[Any, str], json_logs: JsonLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a counter 5 serials short of 90 % of the range
    client, name = table
    _set_counter(client, name, WARN_FROM - 6)
    counter = DynamoDbSerialCounter(name, client=client)
    capsys.readouterr()
    # When a file takes 5 serials, then another takes 1
    assert counter.allocate(5) == range(WARN_FROM - 5, WARN_FROM)
    before = (_range_low_metrics(capsys), _range_low_lines(json_logs))
    assert counter.allocate(1) == range(WARN_FROM, WARN_FROM + 1)
    # Then the first stays quiet; the second, which reaches the mark, is counted once for the
    # stack, without a channel, and logged with the counter and the serials left
    assert before == ([], [])
    [metric] = _range_low_metrics(capsys)
    assert metric["SerialRangeLow"] == [1.0]
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LetterShop"
    assert metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert (metric["service"], metric["counter"]) == ("lettershop-email-channel", "counter#s10")
    assert metric["serials_left"] == SERIAL_MAX - WARN_FROM == 9_999_999
    [line] = _range_low_lines(json_logs)
    assert line["level"] == "WARNING"
    assert (line["counter"], line["table"]) == ("counter#s10", name)
    assert (line["highest_serial"], line["serials_left"]) == (WARN_FROM, 9_999_999)
    assert "9999999 serials left" in line["message"]


def test_every_allocation_past_the_mark_warns_again(
    table: tuple[Any, str], json_logs: JsonLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    client, name = table
    _set_counter(client, name, 95_000_000)
    counter = DynamoDbSerialCounter(name, client=client)
    capsys.readouterr()

    counter.allocate(100)
    counter.allocate(1)

    metrics = _range_low_metrics(capsys)
    assert [m["serials_left"] for m in metrics] == [4_999_899, 4_999_898]
    assert [line["serials_left"] for line in _range_low_lines(json_logs)] == [4_999_899, 4_999_898]


def test_a_fresh_counter_never_warns(
    table: tuple[Any, str], json_logs: JsonLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    client, name = table
    counter = DynamoDbSerialCounter(name, client=client)
    capsys.readouterr()

    counter.allocate(1000)

    assert _range_low_metrics(capsys) == []
    assert _range_low_lines(json_logs) == []
    assert not [line for line in json_logs.lines() if line["level"] == "WARNING"]


def test_an_exhausted_counter_warns_too(
    table: tuple[Any, str], json_logs: JsonLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a counter with 9 serials left
    client, name = table
    _set_counter(client, name, 99_999_990)
    counter = DynamoDbSerialCounter(name, client=client)
    capsys.readouterr()
    # When a file needs 10 / Then it fails, and the alarm's metric counts it with the 9 left
    with pytest.raises(PermanentError, match="exhausted"):
        counter.allocate(10)
    [metric] = _range_low_metrics(capsys)
    assert metric["serials_left"] == 9
    [line] = _range_low_lines(json_logs)
    assert line["highest_serial"] == 99_999_990


def test_a_missing_table_is_the_deployments_failure_naming_the_table(moto_endpoint: str) -> None:
    counter = DynamoDbSerialCounter("no-such-table", client=_client(moto_endpoint))
    with pytest.raises(ChannelFailure, match="no-such-table") as caught:
        counter.allocate(1)
    assert caught.value.setting == DEPLOYMENT


def test_a_stopped_server_is_a_transient_error(tmp_path: Path) -> None:
    # Given a counter whose moto server worked and then stopped
    with MotoServer(tmp_path) as server:
        aws.create_resources(server.endpoint_url)
        client = _client(server.endpoint_url, retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2)
        counter = DynamoDbSerialCounter(StackNames().state_table, client=client)
        assert counter.allocate(2) == range(1, 3)
    # When it allocates again / Then the failure is transient: the message will be tried later
    with pytest.raises(TransientError, match=TABLE):
        counter.allocate(1)
