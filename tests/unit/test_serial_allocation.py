"""No serial is handed out twice, and no channel passes its budget, under concurrent allocations.

The real allocation code (``adapters.serials.DynamoDbSerialCounter`` and
``service.serial_blocks.RecordedSerials``) runs from many threads against ``AtomicDynamoDb``, a store
with DynamoDB's documented atomicity (see its docstring). Against moto these claims cannot be proved:
its ``TransactWriteItems`` lets two writes conditioned on the same counter value both succeed (issue
17; tests/README.md). ``atomic=False`` reproduces that gap, and the same check finds it, so the
check can fail.
"""

import random
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.serials import DynamoDbSerialCounter
from adapters.state import DynamoDbLedger
from app.root import WARM
from domain.errors import PermanentError
from domain.ledger import LedgerEntry, SerialBlock
from domain.serial_budget import DailyBudget
from service.serial_blocks import RecordedSerials
from tests.unit.atomic_dynamodb import AtomicDynamoDb

TABLE = "state"
DAY = "2026-12-07"


@pytest.fixture(autouse=True)
def cold_counters() -> Iterator[None]:
    WARM.reset()
    yield
    WARM.reset()


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    """Threads switch every microsecond instead of every 5 ms, so requests interleave."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def store(*, atomic: bool = True, pause: Callable[[], object] | None = None) -> AtomicDynamoDb:
    client = AtomicDynamoDb(atomic=atomic) if pause is None else AtomicDynamoDb(atomic=atomic, pause=pause)
    client.create_table(TABLE)
    return client


@dataclass
class Message:
    """``service.serial_blocks.HoldsEntry``: one message's ledger entry."""

    entry: LedgerEntry | None

    @property
    def ledger_entry(self) -> LedgerEntry:
        assert self.entry is not None
        return self.entry


def in_threads(workers: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(slot)`` in ``workers`` threads started together; the errors they raised."""
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(slot: int) -> None:
        try:
            start.wait()
            work(slot)
        except BaseException as error:  # reported by the caller, in the test's own thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def issued(client: Any, channel_id: str) -> int:
    item = client.get_item(TableName=TABLE, Key={"pk": {"S": f"shipments#{channel_id}#{DAY}"}})
    return int(item["Item"]["issued"]["N"]) if "Item" in item else 0


def test_many_concurrent_polls_never_hand_out_a_serial_twice() -> None:
    # Given one counter (warm: the next allocations try the transaction on the value they know)
    client = store()
    assert DynamoDbSerialCounter(TABLE, client, known=WARM.counters).allocate(1) == range(1, 2)
    blocks: list[list[range]] = [[] for _ in range(8)]
    budget = DailyBudget("acme", DAY, limit=1_000_000)
    sizes = [random.Random(slot).choices(range(1, 30), k=60) for slot in range(8)]  # noqa: S311

    def poll(slot: int) -> None:
        counter = DynamoDbSerialCounter(TABLE, client, known=WARM.counters)
        ledger = DynamoDbLedger(TABLE, client)
        for number, size in enumerate(sizes[slot]):
            message = Message(LedgerEntry("acme", f"{slot:02d}{number:062d}"))
            blocks[slot].append(
                RecordedSerials(counter, "0:orders.csv", message).within(budget).allocate(size)
            )
            assert ledger.get("acme", message.ledger_entry.digest) == message.entry

    # When 8 polls take 60 blocks each at the same time
    assert in_threads(8, poll) == []
    # Then every serial was handed out once: together they are 2..total, in blocks of the sizes asked
    serials = [serial for taken in blocks for block in taken for serial in block]
    assert sorted(serials) == list(range(2, len(serials) + 2))
    assert [[len(block) for block in taken] for taken in blocks] == sizes
    # and each block was counted once against the channel's budget, and written in its ledger entry
    assert issued(client, "acme") == len(serials)
    # and the transaction raced: some were cancelled and took the safe way (UpdateItem ADD)
    assert client.calls.count("TransactWriteItems") >= 1
    assert client.calls.count("UpdateItem") > 2


def test_the_check_finds_a_store_that_is_not_atomic() -> None:
    # Given moto's gap: a transaction's condition is checked, then another request runs, then it writes
    meet = threading.Barrier(2, timeout=5)
    client = store(atomic=False, pause=meet.wait)
    assert DynamoDbSerialCounter(TABLE, client, known=WARM.counters).allocate(1) == range(1, 2)
    blocks: list[range] = []

    def poll(slot: int) -> None:
        blocks.append(DynamoDbSerialCounter(TABLE, client, known=WARM.counters).allocate(5))

    # When two polls that know the counter's value take a block at the same time
    assert in_threads(2, poll) == []
    # Then both transactions passed their condition on the same value: the same block, twice
    assert blocks == [range(2, 7), range(2, 7)]


def test_concurrent_files_never_pass_the_channels_budget() -> None:
    # Given a budget of 100 ids a day, and 8 polls with files of 7 valid rows each
    client = store()
    budget = DailyBudget("acme", DAY, limit=100)
    taken: list[range] = []
    refused: list[str] = []

    def poll(slot: int) -> None:
        counter = DynamoDbSerialCounter(TABLE, client, known=WARM.counters)
        for number in range(5):
            message = Message(LedgerEntry("acme", f"{slot:02d}{number:062d}"))
            try:
                taken.append(RecordedSerials(counter, "0:a.csv", message).within(budget).allocate(7))
            except PermanentError as error:
                refused.append(str(error))

    # When they take their blocks at the same time (40 files, 280 ids asked for)
    assert in_threads(8, poll) == []
    # Then 14 files got ids (98), every other one was refused naming the budget, and the count is exact
    assert (len(taken), len(refused)) == (14, 26)
    assert issued(client, "acme") == sum(len(block) for block in taken) == 98
    assert {text.split(" and has ")[1].split(" left")[0] for text in refused} == {"2"}
    assert "at most 100 a day (max_shipments_per_day)" in refused[0]
    serials = sorted(serial for block in taken for serial in block)
    assert serials == list(range(1, 99))


def test_a_retry_reuses_the_recorded_block_and_counts_it_once() -> None:
    # Given a file whose block was taken and recorded, in a message that was then deferred
    client = store()
    budget = DailyBudget("acme", DAY, limit=10)
    counter = DynamoDbSerialCounter(TABLE, client, known=WARM.counters)
    first = Message(LedgerEntry("acme", "d" * 64))
    assert RecordedSerials(counter, "0:a.csv", first).within(budget).allocate(6) == range(1, 7)
    client.calls.clear()
    # When the next poll processes it again, from the entry it reads back
    retry = Message(DynamoDbLedger(TABLE, client).get("acme", "d" * 64))
    client.calls.clear()
    again = RecordedSerials(counter, "0:a.csv", retry).within(budget).allocate(6)
    # Then it gets the same block without a request, and the budget still counts 6 of 10
    assert again == range(1, 7)
    assert client.calls == []
    assert retry.ledger_entry.serial_blocks == {"0:a.csv": SerialBlock(1, 6)}
    assert issued(client, "acme") == 6
    # and a file of 6 in another message is refused: only 4 are left today
    other = Message(LedgerEntry("acme", "e" * 64))
    with pytest.raises(PermanentError, match=r"needs 6 shipment ids.* has 4 left today \(2026-12-07, UTC\)"):
        RecordedSerials(counter, "0:a.csv", other).within(budget).allocate(6)
    assert issued(client, "acme") == 6


def test_a_file_larger_than_the_whole_budget_is_refused_without_a_write() -> None:
    client = store()
    counter = DynamoDbSerialCounter(TABLE, client, known=WARM.counters)
    budget = DailyBudget("acme", DAY, limit=10)
    assert counter.allocate_recorded(3, None, budget) == range(1, 4)
    client.calls.clear()

    with pytest.raises(PermanentError, match=r"needs 11 shipment ids.*at most 10 a day.* has 7 left"):
        counter.allocate_recorded(11, None, budget)

    assert client.calls == ["GetItem"]
    assert issued(client, "acme") == 3
    assert counter.allocate(1) == range(4, 5)  # nothing was taken from the range


def test_budgets_are_per_channel_and_per_day() -> None:
    client = store()
    counter = DynamoDbSerialCounter(TABLE, client, known=WARM.counters)
    acme, other = DailyBudget("acme", DAY, limit=5), DailyBudget("beta", DAY, limit=5)
    tomorrow = DailyBudget("acme", "2026-12-08", limit=5)

    assert counter.allocate_recorded(5, None, acme) == range(1, 6)
    assert counter.allocate_recorded(5, None, other) == range(6, 11)
    assert counter.allocate_recorded(5, None, tomorrow) == range(11, 16)
    with pytest.raises(PermanentError, match="channel acme may be issued at most 5 a day"):
        counter.allocate_recorded(1, None, acme)
    assert (issued(client, "acme"), issued(client, "beta")) == (5, 5)


def test_a_message_deferred_across_midnight_is_not_issued_two_days_worth() -> None:
    # Given a message whose first file took 6 of yesterday's 10 ids before the poll deferred it
    client = store()
    counter = DynamoDbSerialCounter(TABLE, client, known=WARM.counters)
    message = Message(LedgerEntry("acme", "d" * 64))
    yesterday, today = DailyBudget("acme", "2026-12-06", limit=10), DailyBudget("acme", DAY, limit=10)
    assert RecordedSerials(counter, "0:a.csv", message).within(yesterday).allocate(6) == range(1, 7)
    client.calls.clear()
    # When the next poll, after midnight, reaches its second file of 6 / Then it is refused, today's
    # budget untouched: one message never takes more than one day's budget
    with pytest.raises(PermanentError) as refused:
        RecordedSerials(counter, "1:b.csv", message).within(today).allocate(6)
    assert str(refused.value) == (
        "this file needs 6 shipment ids, but one message may be issued at most 10 "
        "(max_shipments_per_day, the budget of channel acme for a day) and this one was issued 6 for "
        "its other files: 4 left for it. No shipment id was issued for it: send it again in another message"
    )
    assert client.calls == []
    # while the first file, processed again, keeps its block, and a file of 4 still fits
    assert RecordedSerials(counter, "0:a.csv", message).within(today).allocate(6) == range(1, 7)
    assert RecordedSerials(counter, "1:b.csv", message).within(today).allocate(4) == range(7, 11)
    assert issued(client, "acme") == 4
