"""What a channel's schedule should look like (DESIGN §7): pure decisions from the channel item."""

import json
from decimal import Decimal
from typing import Any

import pytest

from domain.schedule import decide_schedule, plan_reconcile, rate_expression, schedule_name

CHANNEL: dict[str, Any] = {
    "channel_id": "acme",
    "active": True,
    "subject_keyword": "LetterShop",
    "pop3_host": "pop.example.com",
    "pop3_username": "acme",
    "pop3_password_secret": "lettershop/acme/pop3",
    "sender_address": "lettershop@operator.example",
    "smtp_host": "smtp.example.com",
    "poll_interval_minutes": Decimal("10"),
}


@pytest.mark.parametrize(
    ("minutes", "expression"),
    [(1, "rate(1 minute)"), (2, "rate(2 minutes)"), (5, "rate(5 minutes)"), (1440, "rate(1440 minutes)")],
)
def test_rate_expression_is_singular_for_one_minute(minutes: int, expression: str) -> None:
    assert rate_expression(minutes) == expression


@pytest.mark.parametrize("minutes", [0, -5, 1441])
def test_rate_expression_refuses_intervals_outside_the_channel_range(minutes: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 1440"):
        rate_expression(minutes)


def test_valid_active_channel_gets_an_enabled_schedule_named_after_it() -> None:
    decision = decide_schedule(CHANNEL)

    assert decision.valid
    schedule = decision.schedule
    assert schedule is not None
    assert (schedule.name, schedule.expression, schedule.state) == ("acme", "rate(10 minutes)", "ENABLED")
    assert json.loads(schedule.input) == {"channel_id": "acme"}
    assert "poll every 10 minutes; enabled" in schedule.description


def test_inactive_channel_gets_a_disabled_schedule_with_its_interval() -> None:
    decision = decide_schedule({**CHANNEL, "active": False, "poll_interval_minutes": Decimal(1)})

    assert decision.valid
    assert decision.schedule is not None
    assert (decision.schedule.state, decision.schedule.expression) == ("DISABLED", "rate(1 minute)")
    assert "not active" in decision.schedule.description


def test_missing_active_flag_means_inactive() -> None:
    item = {key: value for key, value in CHANNEL.items() if key != "active"}

    schedule = decide_schedule(item).schedule

    assert schedule is not None
    assert schedule.state == "DISABLED"


def test_default_interval_is_five_minutes() -> None:
    item = {key: value for key, value in CHANNEL.items() if key != "poll_interval_minutes"}

    schedule = decide_schedule(item).schedule

    assert schedule is not None
    assert schedule.expression == "rate(5 minutes)"


def test_invalid_active_channel_gets_a_disabled_schedule_and_every_error() -> None:
    item = {**CHANNEL, "pop3_host": "", "poll_interval_minutes": Decimal(0), "subject_keywrd": "x"}

    decision = decide_schedule(item)

    assert not decision.valid
    fields = {field for field, _ in decision.errors}
    assert {"pop3_host", "poll_interval_minutes", "subject_keywrd"} <= fields
    assert decision.schedule is not None
    # the bad interval cannot be used: the disabled schedule keeps the default
    assert (decision.schedule.state, decision.schedule.expression) == ("DISABLED", "rate(5 minutes)")
    assert "invalid" in decision.schedule.description


@pytest.mark.parametrize(
    ("interval", "expression"),
    [(Decimal(15), "rate(15 minutes)"), (Decimal("2.5"), "rate(5 minutes)"), ("ten", "rate(5 minutes)")],
)
def test_invalid_item_keeps_its_interval_only_when_that_is_usable(interval: Any, expression: str) -> None:
    decision = decide_schedule({**CHANNEL, "pop3_host": "", "poll_interval_minutes": interval})

    assert decision.schedule is not None
    assert decision.schedule.expression == expression


def test_channel_id_that_cannot_name_a_schedule_gets_none() -> None:
    decision = decide_schedule({**CHANNEL, "channel_id": "acme corp"})

    assert decision.schedule is None
    assert ("channel_id", decision.errors[0][1]) == decision.errors[0]
    assert schedule_name("acme corp") is None
    assert schedule_name("acme-1") == "acme-1"


def test_key_from_the_stream_names_the_schedule() -> None:
    decision = decide_schedule(CHANNEL, channel_id="acme")

    assert decision.channel_id == "acme"


@pytest.mark.parametrize(("minutes", "age"), [(1, 60), (5, 300), (1440, 86_400)])
def test_a_late_invocation_expires_when_the_next_poll_is_due(minutes: int, age: int) -> None:
    schedule = decide_schedule({**CHANNEL, "poll_interval_minutes": Decimal(minutes)}).schedule

    assert schedule is not None
    assert schedule.max_event_age_seconds == age
    assert schedule.max_retry_attempts >= 1


def test_reconcile_plans_every_item_and_deletes_only_strays() -> None:
    items = [CHANNEL, {**CHANNEL, "channel_id": "beta", "active": False}, {"channel_id": "gamma"}]

    plan = plan_reconcile(items, existing=["acme", "gone", "old-channel"])

    assert [d.channel_id for d in plan.decisions] == ["acme", "beta", "gamma"]
    assert [d.schedule.state for d in plan.decisions if d.schedule] == ["ENABLED", "DISABLED", "DISABLED"]
    assert plan.stray_schedules == ("gone", "old-channel")
