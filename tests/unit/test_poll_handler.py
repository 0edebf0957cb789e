"""The poll handler driven with fake wiring: every poll status comes from the service, the handler
only parses the event, calls it and emits the metrics of its result."""

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from devstack.poll import FakeLambdaContext
from devstack.samples import partner_mail
from domain.channel import Channel
from domain.errors import ChannelFailure
from domain.outcomes import PollResult
from handlers.poll import PollFailed, handler
from service.early_login import forget_channels
from service.poll import Ports
from settings import poll_settings
from tests.unit.test_poll_service import World, make_channel


@pytest.fixture(autouse=True)
def cold_start() -> Iterator[None]:
    """Each test a new function instance: no channel remembered for an early login."""
    forget_channels()
    yield
    forget_channels()


class FakeWiring:
    """Channel items by id, and the World's fakes as every channel's ports."""

    def __init__(
        self, world: World, items: Mapping[str, Mapping[str, Any]], secret_missing: bool = False
    ) -> None:
        self.world = world
        self.items = items
        self.secret_missing = secret_missing
        self.statuses: list[PollResult] = []

    def poll_ended(self, result: PollResult) -> None:
        self.statuses.append(result)

    def channel_item(self, channel_id: str) -> Mapping[str, Any] | None:
        return self.items.get(channel_id)

    def ports(self, channel: Channel) -> Ports:
        if self.secret_missing:
            raise ChannelFailure(
                "secret lettershop/acme/pop3 cannot be read: ResourceNotFoundException",
                setting="pop3_password_secret",
            )
        return self.world.ports()


def item(**changes: Any) -> dict[str, Any]:
    channel = make_channel(**changes)
    return {key: value for key, value in channel.model_dump().items() if value is not None}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("CHANNELS_TABLE", "STATE_TABLE", "SCRIPTS_BUCKET", "ARCHIVE_BUCKET"):
        monkeypatch.setenv(f"LETTERSHOP_{name}", f"test-{name.lower()}")
    poll_settings.cache_clear()
    yield
    poll_settings.cache_clear()


def metrics_of(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    emitted: dict[str, Any] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith('{"_aws"'):
            emitted.update(json.loads(line))
    return emitted


def invoke(wiring: FakeWiring, channel_id: str = "acme") -> dict[str, object]:
    result: dict[str, object] = handler({"channel_id": channel_id}, FakeLambdaContext(), wiring=wiring)
    return result


def test_a_poll_through_the_handler_answers_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())

    wiring = FakeWiring(world, {"acme": item()})
    result = invoke(wiring)

    assert (result["status"], result["processed"], result["deleted"]) == ("ok", 1, 1)
    [status] = wiring.statuses  # kept as the channel's last status (lettershop channel list)
    assert status.as_dict() == result
    emitted = metrics_of(capsys)
    assert (emitted["MessagesProcessed"], emitted["channel_id"]) == ([1.0], "acme")
    assert "PollErrors" not in emitted


def test_no_such_channel_is_an_invalid_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(FakeWiring(World(), {}), "nobody")

    assert result["status"] == "invalid_config"
    assert result["error"] == "channel nobody does not exist"
    assert metrics_of(capsys)["InvalidChannelConfig"] == [1.0]


def test_an_invalid_item_is_reported_and_its_mailbox_not_touched(capsys: pytest.CaptureFixture[str]) -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())
    broken = item() | {"pop3_security": "ssl", "smtp_host": None}

    result = invoke(FakeWiring(world, {"acme": broken}))

    assert result["status"] == "invalid_config"
    assert "pop3_security" in str(result["error"])
    assert world.mailbox.retrieved == []
    assert metrics_of(capsys)["InvalidChannelConfig"] == [1.0]


def test_an_inactive_channel_is_not_polled() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())

    result = invoke(FakeWiring(world, {"acme": item(active=False)}))

    assert result["status"] == "inactive"
    assert world.mailbox.retrieved == []


def test_a_channel_failure_raises_after_naming_the_setting(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(PollFailed, match="ResourceNotFoundException"):
        invoke(FakeWiring(World(), {"acme": item()}, secret_missing=True))

    [logged] = [record for record in caplog.records if record.getMessage() == "poll ended in error"]
    assert logged.setting == "pop3_password_secret"  # type: ignore[attr-defined]
    assert metrics_of(capsys)["PollErrors"] == [1.0]


def test_a_locked_channel_counts_as_locked(capsys: pytest.CaptureFixture[str]) -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())
    world.lease.holder = "another poll"

    assert invoke(FakeWiring(world, {"acme": item()}))["status"] == "locked"
    assert metrics_of(capsys)["PollLocked"] == [1.0]


class SlowTable(FakeWiring):
    """A channel table that answers only once a login has started (or after a second): a poll
    that logs in while the item is read finds the login started, one that waits for the item not."""

    def __init__(self, world: World, items: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__(world, items)
        self.logins_while_reading: list[int] = []

    def channel_item(self, channel_id: str) -> Mapping[str, Any] | None:
        self.world.mailbox.logged_in.wait(timeout=1.0)
        self.logins_while_reading.append(self.world.mailbox.logins)
        return super().channel_item(channel_id)


def test_the_next_poll_of_an_unchanged_channel_logs_in_while_its_item_is_read() -> None:
    world = World()
    wiring = SlowTable(world, {"acme": item()})

    first = invoke(wiring)
    world.mailbox.deliver("u1", partner_mail())
    world.mailbox.logged_in.clear()
    second = invoke(wiring)

    assert wiring.logins_while_reading == [0, 2]  # the first poll knew no channel yet
    assert world.mailbox.logins == 2  # the early session was the second poll's
    assert (first["status"], second["processed"], second["deleted"]) == ("ok", 1, 1)


def test_a_changed_item_ends_the_early_session_unused_and_the_poll_logs_in_anew() -> None:
    world = World()
    items: dict[str, Mapping[str, Any]] = {"acme": item()}
    wiring = FakeWiring(world, items)
    invoke(wiring)
    world.mailbox.deliver("u1", partner_mail())
    items["acme"] = item(max_messages_per_poll=7)

    result = invoke(wiring)

    assert world.mailbox.logins == 3  # the first poll, the early login ended unused, the poll's own
    assert (result["processed"], result["deleted"]) == (1, 1)


def test_an_inactive_channel_ends_the_early_session_and_touches_nothing() -> None:
    world = World()
    items: dict[str, Mapping[str, Any]] = {"acme": item()}
    wiring = FakeWiring(world, items)
    invoke(wiring)
    world.mailbox.deliver("u1", partner_mail())
    items["acme"] = item(active=False)

    assert invoke(wiring)["status"] == "inactive"
    assert list(world.mailbox.messages) == ["u1"]
    assert world.mailbox.retrieved == []


def test_a_refused_early_login_is_the_polls_one_failure_not_a_second_attempt() -> None:
    world = World()
    wiring = FakeWiring(world, {"acme": item()})
    invoke(wiring)
    world.mailbox.refuse_login = ChannelFailure("POP3 login refused", setting="pop3_password_secret")

    with pytest.raises(PollFailed, match="POP3 login refused"):
        invoke(wiring)

    assert world.mailbox.logins == 2
