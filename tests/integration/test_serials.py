"""The S10 serial counter against the real moto server, in the state table built from the template."""

import random
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from adapters.aws_errors import DEPLOYMENT
from adapters.serials import DynamoDbSerialCounter
from devstack import aws
from devstack.aws import StackNames
from devstack.moto import MotoServer
from devstack.stack import LocalStack
from domain.errors import ChannelFailure, PermanentError, TransientError
from domain.shipments import SerialSource

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


def test_concurrent_allocations_never_hand_out_a_serial_twice(
    table: tuple[Any, str], moto_endpoint: str
) -> None:
    # Given two workers, each with its own client, like two concurrent polls
    _, name = table
    results: list[list[range]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(slot: int) -> None:
        counter = DynamoDbSerialCounter(name, client=_client(moto_endpoint))
        sizes = random.Random(slot).choices(range(1, 30), k=50)  # noqa: S311 - sizes, not secrets
        try:
            start.wait()
            results[slot].extend(counter.allocate(size) for size in sizes)
        except BaseException as error:  # reported below, in the test's own thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(2)]
    # When both allocate 50 blocks of random sizes at the same time
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Then every serial was handed out exactly once, and together they are 1..total
    assert not errors
    serials = [serial for blocks in results for block in blocks for serial in block]
    assert len(results[0]) == len(results[1]) == 50
    assert len(serials) == len(set(serials))
    assert sorted(serials) == list(range(1, len(serials) + 1))


def test_the_counter_never_passes_eight_digits(table: tuple[Any, str]) -> None:
    # Given a counter close to the end of the S10 serial range
    client, name = table
    client.put_item(TableName=name, Item={"pk": {"S": "counter#s10"}, "value": {"N": "99999990"}})
    counter = DynamoDbSerialCounter(name, client=client)
    # When a block would pass 99_999_999 / Then it fails permanently and the counter is not moved
    with pytest.raises(PermanentError, match="exhausted"):
        counter.allocate(10)
    assert counter.allocate(9) == range(99_999_991, 100_000_000)


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
