"""A partner's message is reached (DESIGN §6, issue 17 items 1-3), with recording fakes: past the
mailbox memory's cap, behind unretrievable messages, and after a corrected recognition setting."""

import itertools
from datetime import UTC, datetime

import pytest

from devstack.samples import partner_mail
from domain.channel import Channel
from domain.mailbox_memory import MailboxMemory
from service.poll import poll_mailbox
from service.telemetry import metrics
from tests.unit.fakes import World, make_channel

SHARED = make_channel(exclusive_account=False, subject_keyword="LetterShop")


def poll_with_budget(world: World, channel: Channel, looks: int) -> dict[str, object]:
    """One poll whose time lasts for ``looks`` messages (one ``time_left`` question each)."""
    asked = itertools.count()
    result = poll_mailbox(
        channel,
        world.ports(),
        now=lambda: datetime(2026, 12, 7, 8, 0, tzinfo=UTC),
        time_left=lambda: 1000.0 if next(asked) < looks else 0.0,
        lease_seconds=360,
    )
    return result.as_dict()


def test_a_new_partner_message_behind_more_foreign_mail_than_the_memory_holds_is_processed_next_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a memory that holds 20 foreign messages, 50 of them, and polls whose time lasts for
    # 30 looks: the excess (30) alone would use up every poll's time.
    monkeypatch.setattr("domain.mailbox_memory.MAX_FOREIGN", 20)
    monkeypatch.setattr("domain.mailbox_memory.MAX_OLDER_PER_POLL", 5, raising=False)
    world = World()
    for n in range(50):
        world.mailbox.deliver(f"f{n:02}", partner_mail(subject=f"Newsletter {n}"))
    learning = [poll_with_budget(world, SHARED, looks=30) for _ in range(3)]
    world.mailbox.deliver("partner", partner_mail())

    # When the next poll runs
    result = poll_with_budget(world, SHARED, looks=30)

    # Then it looks at 5 older messages, then at the new one, and answers it
    assert [r["seen"] for r in learning] == [30, 5, 5]  # then 5 older ones a poll
    assert (result["seen"], result["processed"], result["deleted"]) == (6, 1, 1)
    assert "partner" not in world.mailbox.messages
    assert len(world.replies.sent) == 1
    assert len(world.memory.load("acme").foreign) == 20


def test_the_excess_is_looked_at_in_turn_so_an_old_waiting_message_is_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an old partner message that could not be read at first, amid 30 foreign messages of
    # which the memory holds 10, 5 older messages looked at per poll, and polls with time for 6 looks
    monkeypatch.setattr("domain.mailbox_memory.MAX_FOREIGN", 10)
    monkeypatch.setattr("domain.mailbox_memory.MAX_OLDER_PER_POLL", 5, raising=False)
    world = World()
    for n in range(30):
        if n == 15:
            world.mailbox.deliver("partner", partner_mail())
        world.mailbox.deliver(f"f{n:02}", partner_mail(subject=f"Newsletter {n}"))
    world.mailbox.fail_retrieve.add("partner")
    first = poll_with_budget(world, SHARED, looks=100)
    world.mailbox.fail_retrieve.clear()

    # When four polls follow
    later = [poll_with_budget(world, SHARED, looks=6) for _ in range(4)]

    # Then each goes on where the last one stopped: the fourth reaches the partner message (behind
    # 15 older foreign ones, which are no longer remembered)
    assert (first["seen"], first["deferred"]) == (31, 1)
    assert [r["seen"] for r in later] == [5, 5, 5, 5]
    assert [r["processed"] for r in later] == [0, 0, 0, 1]
    assert "partner" not in world.mailbox.messages


def test_unretrievable_messages_use_up_no_batch_and_are_counted() -> None:
    # Given three messages given up as unretrievable in front of two partner messages, and a batch of 2
    world = World()
    for uid in ("broken1", "broken2", "broken3"):
        world.mailbox.deliver(uid, partner_mail(subject=f"LetterShop {uid}"))
    world.mailbox.deliver("p1", partner_mail())
    world.mailbox.deliver("p2", partner_mail(subject="LetterShop import 2"))
    world.memory.save("acme", MailboxMemory(failures={"broken1": 5, "broken2": 5, "broken3": 7}))

    # When the channel is polled
    result = world.poll(make_channel(max_messages_per_poll=2))

    # Then both partner messages are processed, the three are skipped (not looked at) and counted
    assert (result["processed"], result["recognized"], result["deferred"]) == (2, 2, 0)
    assert (result["skipped"], result["seen"]) == (3, 2)
    assert list(world.mailbox.messages) == ["broken1", "broken2", "broken3"]
    assert metrics.metric_set["MessageUnretrievable"]["Value"] == [1.0, 1.0, 1.0]


def test_a_mailbox_holding_only_unretrievable_messages_takes_no_lease_and_says_so() -> None:
    world = World()
    world.mailbox.deliver("broken", partner_mail())
    world.memory.save("acme", MailboxMemory(failures={"broken": 5}))

    result = world.poll()

    assert (result["status"], result["skipped"], result["seen"]) == ("ok", 1, 0)
    assert world.lease.taken == []
    assert metrics.metric_set["MessageUnretrievable"]["Value"] == [1.0]


def test_a_corrected_keyword_forgets_the_messages_remembered_as_foreign() -> None:
    # Given a partner message that the wrong keyword found foreign, and a broken download counted
    world = World()
    world.mailbox.deliver("orders", partner_mail(subject="Orders for December"))
    world.mailbox.deliver("broken", partner_mail(subject="Orders broken"))
    world.mailbox.break_retrieve.add("broken")
    wrong = make_channel(subject_keyword="LetterShop")
    assert poll_with_budget(world, wrong, looks=10)["recognized"] == 0
    assert world.memory.load("acme").is_foreign("orders")
    world.memory.save("acme", world.memory.load("acme").with_failure("broken").with_failure("broken"))

    # When the operator corrects the keyword (any case, other blanks)
    fixed = make_channel(subject_keyword="  ORDERS ", max_attempts=2)
    result = poll_with_budget(world, fixed, looks=10)

    # Then the next poll looks at it again and processes it; the broken one stays given up
    assert (result["seen"], result["processed"], result["skipped"]) == (1, 1, 1)
    memory = world.memory.load("acme")
    assert (memory.recognition, memory.foreign, memory.failures) == (
        "keyword:orders",
        frozenset(),
        {"broken": 2},
    )


def test_switching_to_an_exclusive_account_forgets_the_foreign_messages() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail(subject="shipments"))
    assert world.poll(make_channel(subject_keyword="LetterShop"))["recognized"] == 0

    result = world.poll(make_channel(exclusive_account=True, subject_keyword=None))

    assert (result["seen"], result["processed"]) == (1, 1)
    assert world.memory.load("acme").recognition == "exclusive"


def test_the_same_keyword_written_otherwise_keeps_the_memory() -> None:
    world = World()
    world.mailbox.deliver("f1", partner_mail(subject="Newsletter"))
    world.poll(make_channel(subject_keyword="Letter  Shop"))

    again = world.poll(make_channel(subject_keyword="letter shop"))

    assert again["seen"] == 0
    assert world.memory.saves == 1
