"""max_shipments_per_day (issue 17) through poll_mailbox with the recording fakes: the budget of the
UTC day the poll received the message, a refused file failing alone, its reply naming the budget."""

from devstack.samples import VALID_IMPORT, partner_mail
from domain.serial_budget import DailyBudget
from tests.unit.fakes import World, body_of, make_channel


def test_the_budget_is_the_channels_for_the_day_of_the_poll_and_a_file_past_it_fails_alone() -> None:
    # Given a channel with a budget of 3 ids a day, polled on 2026-11-27, whose day has 2 left
    world = World()
    channel = make_channel(max_shipments_per_day=3)
    world.serials.issued[("acme", "2026-11-27")] = 1
    # When a message with two files of 2 valid rows each arrives
    attachments = [("first.csv", VALID_IMPORT), ("second.csv", VALID_IMPORT)]
    world.mailbox.deliver("u1", partner_mail(attachments=attachments))
    result = world.poll(channel)
    # Then the first file takes 2 ids of that day; the second is refused before any id, by name
    assert (result["processed"], result["failed"], result["deleted"]) == (1, 0, 1)
    assert world.serials.calls == [2]
    assert world.serials.issued == {("acme", "2026-11-27"): 3}
    [reply] = world.replies.sent
    assert [part.get_filename() for part in reply.message.iter_attachments()] == ["first_export.csv"]
    refusal = DailyBudget("acme", "2026-11-27", 3).message_refusal(2, 2)
    assert f"second.csv: not processed: {refusal}" in " ".join(body_of(reply.message).split())


def test_a_message_on_a_spent_day_fails_with_a_reply_naming_the_budget_and_nothing_left() -> None:
    world = World()
    world.serials.issued[("acme", "2026-11-27")] = 100_000  # the default budget, spent

    world.mailbox.deliver("u1", partner_mail())
    result = world.poll()

    assert (result["processed"], result["failed"]) == (0, 1)
    assert world.serials.calls == []
    [reply] = world.replies.sent
    text = " ".join(body_of(reply.message).split())
    assert (
        "orders.csv: not processed: this file needs 2 shipment ids, but channel acme may be issued at "
        "most 100000 a day (max_shipments_per_day) and has 0 left today (2026-11-27, UTC)."
    ) in text
