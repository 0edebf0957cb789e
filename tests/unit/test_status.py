"""The channel status item (``adapters.status``): written when it says something new, and at least
once per heartbeat (issue 20), against a client with DynamoDB's documented condition semantics."""

from datetime import UTC, datetime, timedelta

import pytest

from adapters.status import ChannelStatusStore, WrittenStatuses
from adapters.status_item import ChannelStatus
from domain.outcomes import PollResult
from domain.watch import HEARTBEAT, heartbeat_slot
from tests.unit.atomic_dynamodb import AtomicDynamoDb

AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def table() -> AtomicDynamoDb:
    client = AtomicDynamoDb()
    client.create_table("state")
    return client


def empty(at: datetime) -> ChannelStatus:
    return ChannelStatus.from_result(PollResult("acme"), at)


def test_the_status_is_written_when_it_changes_or_messages_were_handled(table: AtomicDynamoDb) -> None:
    warm: WrittenStatuses = {}
    store = ChannelStatusStore("state", table, written=warm)

    assert store.record("acme", empty(AT)) is True
    assert store.record("acme", empty(AT)) is False  # unchanged and nothing handled: no request at all
    assert table.calls == ["UpdateItem", "PutItem"]  # no item yet: the update's condition fails
    warm.clear()  # a cold start: one conditional update finds nothing new
    assert store.record("acme", empty(AT)) is False
    busy = PollResult("acme", seen=2, recognized=2, processed=1, rejected=1, deleted=2)
    assert store.record("acme", ChannelStatus.from_result(busy, AT)) is True
    failed = PollResult("acme", status="error", error="POP3 login failed", setting="pop3_password_secret")
    assert store.record("acme", ChannelStatus.from_result(failed, AT)) is True

    stored = store.get("acme")
    assert stored is not None
    assert (stored.status, stored.detail, stored.setting, stored.at) == (
        "error",
        "POP3 login failed",
        "pop3_password_secret",
        AT,
    )
    assert store.get("beta") is None
    assert ChannelStatus.from_result(busy, AT).summary() == "ok: 1 processed, 1 rejected"
    assert stored.summary() == "error: POP3 login failed"


def test_an_unchanged_status_is_written_once_per_heartbeat_slot_and_keeps_its_since(
    table: AtomicDynamoDb,
) -> None:
    warm: WrittenStatuses = {}
    store = ChannelStatusStore("state", table, written=warm)
    store.record("acme", empty(AT), interval_minutes=1)
    table.calls.clear()

    # polled every minute for three hours
    minutes = range(1, 181)
    written = [
        m for m in minutes if store.record("acme", empty(AT + timedelta(minutes=m)), interval_minutes=1)
    ]

    # one write per slot, by the first poll in it, and no other request
    slots = [
        m
        for m in minutes
        if heartbeat_slot("acme", AT + timedelta(minutes=m))
        > heartbeat_slot("acme", AT + timedelta(minutes=m - 1))
    ]
    assert written == slots
    assert len(written) == 3
    assert table.calls == ["UpdateItem"] * 3
    stored = store.get("acme")
    assert stored is not None
    assert (stored.at, stored.since) == (AT + timedelta(minutes=written[-1]), AT)


def test_many_processes_polling_one_channel_write_its_heartbeat_about_once_an_hour(
    table: AtomicDynamoDb,
) -> None:
    # Lambda spreads a channel's polls over many execution environments, each with its own memo
    processes = [ChannelStatusStore("state", table, written={}) for _ in range(20)]
    processes[0].record("acme", empty(AT), interval_minutes=1)
    table.calls.clear()

    for minute in range(1, 6 * 60 + 1):
        processes[minute % 20].record("acme", empty(AT + timedelta(minutes=minute)), interval_minutes=1)

    # each process's first poll asks once (cold); then per hour one write and, at most, one refused
    # update by the next poll within the slot's window
    cold = 20
    assert len(table.calls) <= cold + 6 * 2
    assert table.calls.count("PutItem") == 0


def test_a_cold_process_learns_the_stored_heartbeat_from_its_one_refused_update(
    table: AtomicDynamoDb,
) -> None:
    slot = heartbeat_slot("acme", AT)
    ChannelStatusStore("state", table).record("acme", empty(slot), interval_minutes=5)
    warm: WrittenStatuses = {}
    store = ChannelStatusStore("state", table, written=warm)
    table.calls.clear()

    assert store.record("acme", empty(slot + timedelta(minutes=5)), interval_minutes=5) is False
    assert store.record("acme", empty(slot + timedelta(minutes=50)), interval_minutes=5) is False
    assert store.record("acme", empty(slot + HEARTBEAT + timedelta(minutes=5)), interval_minutes=5) is True

    assert table.calls == ["UpdateItem", "UpdateItem"]  # the first (refused), then the next slot's


def test_a_changed_status_starts_its_since_anew_and_an_error_keeps_it(table: AtomicDynamoDb) -> None:
    store = ChannelStatusStore("state", table)
    store.record("acme", empty(AT))
    for minutes in (5, 65, 125):  # each error text is another (a server's trace id, a timestamp)
        failed = PollResult("acme", status="error", error=f"login failed (trace {minutes})", setting="pop3")
        store.record("acme", ChannelStatus.from_result(failed, AT + timedelta(minutes=minutes)))

    stored = store.get("acme")
    assert stored is not None
    assert (stored.status, stored.since, stored.at, stored.detail) == (
        "error",
        AT + timedelta(minutes=5),
        AT + timedelta(minutes=125),
        "login failed (trace 125)",
    )
    store.record("acme", empty(AT + timedelta(minutes=130)))
    back = store.get("acme")
    assert back is not None
    assert (back.status, back.since, back.setting) == ("ok", AT + timedelta(minutes=130), None)


def test_an_item_from_before_the_heartbeat_is_rewritten_into_the_watch_index(table: AtomicDynamoDb) -> None:
    ChannelStatusStore("state", table).put("acme", empty(AT))
    del table.tables["state"]["status#acme"]["watch"]  # as written before issue 20

    assert ChannelStatusStore("state", table).record("acme", empty(AT + timedelta(minutes=1))) is True
    assert table.tables["state"]["status#acme"]["watch"] == {"S": "channel"}


def test_the_sync_replaces_only_its_own_invalid_record(table: AtomicDynamoDb) -> None:
    store = ChannelStatusStore("state", table)
    store.put("acme", ChannelStatus.from_result(PollResult("acme", processed=1), AT))
    assert store.mark_saved("acme", ChannelStatus.saved(AT)) is False

    store.put("acme", ChannelStatus.invalid([("pop3_host", "Field required")], AT))
    invalid = store.get("acme")
    assert invalid is not None
    assert invalid.detail == "invalid: pop3_host: Field required"
    assert store.mark_saved("acme", ChannelStatus.saved(AT)) is True
    saved = store.get("acme")
    assert saved is not None
    assert saved.status == "saved"
