"""The poll handler driven with fake wiring: every poll status comes from the service, the handler
only parses the event, calls it and emits the metrics of its result."""

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import pytest

from app.root import WARM
from devstack.invoke import FakeLambdaContext
from devstack.samples import partner_mail
from domain.channel import Channel
from domain.errors import ChannelFailure, TransientError
from domain.outcomes import PollResult
from handlers.poll import PollFailed, handler
from service.ports import Ports
from tests.unit.fakes import World, make_channel


class FakeWiring:
    """Channel items by id, and the World's fakes as every channel's ports; records the end of
    each poll (its status, and each time the secrets were forgotten)."""

    def __init__(
        self, world: World, items: Mapping[str, Mapping[str, Any]], secret_missing: bool = False
    ) -> None:
        self.world = world
        self.items = items
        self.secret_missing = secret_missing
        self.statuses: list[PollResult] = []
        self.forgotten = 0

    def status_log(self) -> "FakeWiring":
        return self

    def record(self, result: PollResult, at: datetime) -> None:
        self.statuses.append(result)

    def credentials(self) -> "FakeWiring":
        return self

    def forget(self) -> None:
        self.forgotten += 1

    def channel_item(self, channel_id: str) -> Mapping[str, Any] | None:
        return self.items.get(channel_id)

    def ports(self, channel: Channel) -> Ports:
        if self.secret_missing:
            raise ChannelFailure(
                "secret lettershop/acme/pop3 cannot be read: ResourceNotFoundException",
                setting="pop3_password_secret",
            )
        return self.world.ports()


class RecordingWiring(FakeWiring):
    """Records the channel each poll's ports were built with."""

    def __init__(self, world: World, items: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__(world, items)
        self.built: list[Channel] = []

    def ports(self, channel: Channel) -> Ports:
        self.built.append(channel)
        return super().ports(channel)


def item(**changes: Any) -> dict[str, Any]:
    channel = make_channel(**changes)
    return {key: value for key, value in channel.model_dump().items() if value is not None}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("CHANNELS_TABLE", "STATE_TABLE", "SCRIPTS_BUCKET", "ARCHIVE_BUCKET"):
        monkeypatch.setenv(f"LETTERSHOP_{name}", f"test-{name.lower()}")
    WARM.reset()
    yield
    WARM.reset()


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


def test_after_a_failed_setting_the_secrets_are_forgotten_and_the_status_recorded() -> None:
    """The end of a poll is the service's step (``service.poll.poll_ended``); the wiring gives its ports."""
    wiring = FakeWiring(World(), {"acme": item()}, secret_missing=True)

    with pytest.raises(PollFailed):
        invoke(wiring)

    [status] = wiring.statuses
    assert (status.status, status.setting, wiring.forgotten) == ("error", "pop3_password_secret", 1)


def test_a_poll_that_names_no_setting_forgets_no_secret() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())
    world.lease.holder = "another poll"
    wiring = FakeWiring(world, {"acme": item()})

    assert invoke(wiring)["status"] == "locked"
    assert ([status.status for status in wiring.statuses], wiring.forgotten) == (["locked"], 0)


class StatusUnwritable(FakeWiring):
    def record(self, result: PollResult, at: datetime) -> None:
        raise TransientError("DynamoDB PutItem on the state table: ProvisionedThroughputExceededException")


def test_a_status_that_cannot_be_written_is_logged_and_the_poll_still_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())

    result = invoke(StatusUnwritable(world, {"acme": item()}))

    assert (result["status"], result["processed"]) == ("ok", 1)
    [logged] = [record for record in caplog.records if "channel status not recorded" in record.getMessage()]
    assert logged.levelname == "WARNING"
    assert "ProvisionedThroughputExceededException" in logged.getMessage()


def test_a_locked_channel_counts_as_locked(capsys: pytest.CaptureFixture[str]) -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())
    world.lease.holder = "another poll"

    assert invoke(FakeWiring(world, {"acme": item()}))["status"] == "locked"
    assert metrics_of(capsys)["PollLocked"] == [1.0]


def test_a_warm_poll_connects_only_with_the_item_it_has_just_read() -> None:
    """DESIGN §6: no connection is opened, and no credential sent, with settings of an earlier item."""
    world = World()
    items: dict[str, Mapping[str, Any]] = {"acme": item()}
    wiring = RecordingWiring(world, items)
    invoke(wiring)
    world.mailbox.deliver("u1", partner_mail())
    items["acme"] = item(pop3_host="pop.moved.example")

    result = invoke(wiring)

    assert [channel.pop3_host for channel in wiring.built] == ["pop.example", "pop.moved.example"]
    assert world.mailbox.logins == 2  # one login a poll, each with the ports of the item it read
    assert (result["processed"], result["deleted"]) == (1, 1)


def test_a_warm_poll_of_a_deactivated_channel_opens_no_connection() -> None:
    world = World()
    items: dict[str, Mapping[str, Any]] = {"acme": item()}
    wiring = RecordingWiring(world, items)
    invoke(wiring)
    world.mailbox.deliver("u1", partner_mail())
    items["acme"] = item(active=False)

    assert invoke(wiring)["status"] == "inactive"
    assert (len(wiring.built), world.mailbox.logins) == (1, 1)
    assert list(world.mailbox.messages) == ["u1"]
