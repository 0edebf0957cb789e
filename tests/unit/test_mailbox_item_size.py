"""The mailbox memory's item stays inside DynamoDB's 400 KB item limit, whatever the mailbox and the
channel's settings (a larger item would fail every save, and the memory would be lost each poll)."""

from typing import Any

from adapters.mailbox_memory import DynamoDbMailboxMemory
from domain.inbound import recognition_key
from domain.mailbox_memory import MAX_FAILURES, MAX_FOREIGN, MailboxMemory

DYNAMODB_ITEM_LIMIT = 400 * 1024
LONGEST_UIDL = 70  # RFC 1939: 1 to 70 characters


class RecordingClient:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put_item(self, *, TableName: str, Item: dict[str, Any]) -> None:  # boto3's names
        self.items.append(Item)


def item_size(value: Any) -> int:
    """An upper bound of DynamoDB's size of an attribute value (its documented rules, numbers
    counted at their largest: 21 bytes)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "B":
        return len(inner)
    if kind == "N":
        return 21
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + 1 + item_size(v) for name, v in inner.items())
    raise AssertionError(f"unexpected attribute type {kind}")


def test_the_largest_memory_a_poll_can_keep_fits_in_one_item() -> None:
    uids = [f"{n:0{LONGEST_UIDL}d}" for n in range(MAX_FOREIGN + MAX_FAILURES + 10)]
    memory = MailboxMemory(recognition=recognition_key(exclusive_account=False, keyword="x" * 100_000))
    memory = memory.with_foreign(uids[: MAX_FOREIGN + 5])
    for uid in uids[MAX_FOREIGN + 5 :]:
        memory = memory.with_failure(uid)
    memory = memory.kept(uids)
    client = RecordingClient()

    DynamoDbMailboxMemory("state", client).save("a" * 63, memory)

    [item] = client.items
    size = sum(len(name) + item_size(value) for name, value in item.items())
    assert (len(memory.foreign), len(memory.failures)) == (MAX_FOREIGN, MAX_FAILURES)
    assert size < DYNAMODB_ITEM_LIMIT * 0.85, size


def test_a_long_keyword_is_remembered_by_its_digest_and_still_tells_settings_apart() -> None:
    long_one = recognition_key(exclusive_account=False, keyword="orders " * 30)
    other = recognition_key(exclusive_account=False, keyword="orders " * 31)

    assert long_one.startswith("keyword-blake2b:")
    assert len(long_one) == len("keyword-blake2b:") + 32
    assert long_one != other
    assert recognition_key(exclusive_account=False, keyword="ORDERS " * 30) == long_one
    assert recognition_key(exclusive_account=False, keyword="LetterShop") == "keyword:lettershop"
