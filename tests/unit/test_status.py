"""The channel status item (``adapters.status``): written when it says something new, and at least
once per heartbeat (issue 20), against a client with DynamoDB's documented condition semantics."""

from datetime import UTC, datetime, timedelta

import pytest

from adapters.status import ChannelStatusStore, WrittenStatuses
from adapters.status_item import ChannelStatus
from domain.outcomes import PollResult
from domain.watch import HEARTBEAT
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


def test_an_unchanged_status_is_written_once_per_heartbeat_and_keeps_its_since(table: AtomicDynamoDb) -> None:
    warm: WrittenStatuses = {}
    store = ChannelStatusStore("state", table, written=warm)
    store.record("acme", empty(AT))
    table.calls.clear()

    # every minute for two hours and a bit
    written = [store.record("acme", empty(AT + timedelta(minutes=m))) for m in range(1, 125)]

    assert [m + 1 for m, was in enumerate(written) if was] == [60, 120]  # one write per heartbeat
    assert table.calls == ["UpdateItem", "UpdateItem"]  # and no other request
    stored = store.get("acme")
    assert stored is not None
    assert (stored.at, stored.since) == (AT + timedelta(minutes=120), AT)


def test_a_cold_process_learns_the_stored_heartbeat_from_its_one_failed_update(table: AtomicDynamoDb) -> None:
    ChannelStatusStore("state", table).record("acme", empty(AT))
    warm: WrittenStatuses = {}
    store = ChannelStatusStore("state", table, written=warm)
    table.calls.clear()

    assert store.record("acme", empty(AT + timedelta(minutes=10))) is False
    assert store.record("acme", empty(AT + timedelta(minutes=20))) is False
    assert store.record("acme", empty(AT + HEARTBEAT)) is True

    assert table.calls == ["UpdateItem", "UpdateItem"]  # the first (refused), then the heartbeat


def test_a_changed_status_starts_its_since_anew_and_an_error_keeps_it(table: AtomicDynamoDb) -> None:
    store = ChannelStatusStore("state", table)
    failed = PollResult("acme", status="error", error="POP3 login failed", setting="pop3_password_secret")
    store.record("acme", empty(AT))
    for minutes in (5, 65, 125):
        store.record("acme", ChannelStatus.from_result(failed, AT + timedelta(minutes=minutes)))

    stored = store.get("acme")
    assert stored is not None
    assert (stored.status, stored.since, stored.at) == (
        "error",
        AT + timedelta(minutes=5),
        AT + timedelta(minutes=125),
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
