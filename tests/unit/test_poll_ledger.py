"""Nothing lost, nothing twice (DESIGN §6): the ledger, the lease and retries, with recording fakes."""

import hashlib
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from devstack.samples import partner_mail
from domain.errors import TransientError
from domain.ledger import CRASHED, Claim, LedgerEntry, SerialBlock, Stage, StageMovedBack
from domain.mailbox_memory import MailboxMemory
from domain.outcomes import Outcome
from tests.unit.fakes import World, make_channel


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def test_each_step_is_recorded_before_the_next() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())

    world.poll()

    # The claim came first, as an update; "answered" is written only when the send fails (the
    # stored reply records its recipient), so a reply sent at once costs no write of its own.
    numbered, replied = world.ledger.history  # and no "done": after a clean QUIT it is gone
    assert numbered.claim is not None
    assert (numbered.stage, numbered.serial_blocks) == (Stage.RECEIVED, {"0:orders.csv": SerialBlock(1, 2)})
    assert (replied.stage, replied.claim) == (Stage.REPLIED, None)
    assert replied.recipient == "orders@partner.example"
    assert world.archive.stored[replied.reply_key or ""].recipient == "orders@partner.example"
    assert world.ledger.only().outcome is Outcome.PROCESSED
    assert world.ledger.only().reply_key in world.archive.objects


def test_reply_failing_transiently_is_resent_from_store_without_processing_again() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())
    world.replies.error = TransientError("451 try again later")

    first = world.poll()
    world.replies.error = None
    second = world.poll()

    assert (first["deferred"], first["deleted"]) == (1, 0)
    assert (second["processed"], second["deleted"]) == (1, 1)
    assert world.serials.calls == [2]  # shipment ids issued once
    [reply] = world.replies.sent
    stored = world.archive.objects[world.ledger.only().reply_key or ""]
    assert reply.data == stored
    assert reply.recipient == world.ledger.only().recipient == "orders@partner.example"
    assert world.mailbox.messages == {}


def test_message_already_replied_is_deleted_without_a_second_reply() -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    world.ledger.save(LedgerEntry("acme", digest_of(raw), Stage.REPLIED, outcome=Outcome.PROCESSED))

    result = world.poll()

    assert (result["processed"], result["deleted"]) == (0, 1)  # counted by the poll that replied
    assert world.replies.sent == []
    assert world.archive.keys("inbound/")  # archived if it was not yet
    assert world.ledger.only().stage is Stage.REPLIED  # gone after a clean QUIT: nothing to add


def test_transient_failures_end_in_quarantine_after_max_attempts() -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    world.replies.error = TransientError("421 service not available")
    channel = make_channel(max_attempts=3)

    results = [world.poll(channel) for _ in range(3)]

    assert [r["deferred"] for r in results] == [1, 1, 0]
    assert (results[2]["rejected"], results[2]["deleted"]) == (1, 1)
    [key] = world.archive.keys("quarantine/")
    assert world.archive.objects[key] == raw
    assert "gave up after 3 attempts" in str(world.archive.reasons[key]["reason"])
    assert "421" in str(world.archive.reasons[key]["reason"])
    assert world.mailbox.messages == {}


def test_poll_that_died_on_a_message_counts_as_an_attempt() -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    dead = Claim("a poll that was killed", datetime(2026, 11, 27, 7, 55, tzinfo=UTC))
    world.ledger.save(LedgerEntry("acme", digest_of(raw), Stage.RECEIVED, attempts=4, claim=dead))

    result = world.poll(make_channel(max_attempts=5))

    assert result["rejected"] == 1
    [key] = world.archive.keys("quarantine/")
    assert CRASHED in str(world.archive.reasons[key]["reason"])


def test_crash_after_answer_was_stored_resends_it() -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    world.poll()  # answered, replied and deleted
    dead = Claim("a poll that was killed", datetime(2026, 11, 27, 7, 55, tzinfo=UTC))
    answered = replace(world.ledger.only(), stage=Stage.ANSWERED, claim=dead)
    world.ledger.save(answered)
    world.mailbox.deliver("u1", raw)  # the QUIT never committed the deletion

    result = world.poll()

    assert result["processed"] == 1
    assert len(world.replies.sent) == 2
    assert world.replies.sent[0].data == world.replies.sent[1].data
    assert world.serials.calls == [2]


def test_locked_channel_leaves_the_mailbox_alone() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())
    world.lease.holder = "another poll"

    result = world.poll()

    assert result["status"] == "locked"
    assert world.mailbox.retrieved == []


def test_lease_is_taken_for_the_given_time_and_released() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())

    world.poll()

    assert world.lease.taken == [("acme", 360)]
    assert world.lease.holder is None


def test_nothing_to_do_takes_no_lease_and_reads_no_state() -> None:
    world = World()

    empty = world.poll()
    world.mailbox.deliver("f1", partner_mail(subject="Lunch on Friday"))
    world.mailbox.deliver("f2", partner_mail(subject="Invoice 42"))
    learning = world.poll(make_channel(exclusive_account=False))
    unchanged = world.poll(make_channel(exclusive_account=False))

    assert empty["status"] == unchanged["status"] == "ok"
    assert (learning["seen"], unchanged["seen"]) == (2, 0)
    assert world.lease.taken == [("acme", 360)]  # only the poll that looked at new messages
    assert world.memory.saves == 1
    assert world.ledger.history == []
    assert list(world.mailbox.messages) == ["f1", "f2"]


def test_a_new_message_behind_remembered_foreign_ones_is_the_only_one_looked_at() -> None:
    world = World()
    shared = make_channel(exclusive_account=False)
    for n in range(30):
        world.mailbox.deliver(f"f{n}", partner_mail(subject=f"Newsletter {n}"))
    world.poll(shared)
    world.mailbox.deliver("new", partner_mail())

    result = world.poll(shared)

    assert (result["seen"], result["processed"]) == (1, 1)
    assert "new" not in world.mailbox.messages
    assert len(world.memory.load("acme").foreign) == 30


def test_the_memory_forgets_messages_that_left_the_server() -> None:
    world = World()
    shared = make_channel(exclusive_account=False)
    world.mailbox.deliver("f1", partner_mail(subject="Newsletter"))
    world.mailbox.deliver("f2", partner_mail(subject="Newsletter"))
    world.poll(shared)
    del world.mailbox.messages["f1"]
    world.mailbox.deliver("new", partner_mail())

    world.poll(shared)

    assert world.memory.load("acme").foreign == MailboxMemory().with_foreign(["f2"]).foreign


def test_retrieve_failure_keeps_message_without_ledger_entry() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())
    world.mailbox.fail_retrieve.add("u1")

    result = world.poll()

    assert (result["deferred"], result["deleted"]) == (1, 0)
    assert world.ledger.entries == {}


def test_reply_sent_but_not_recorded_in_time_is_recorded_at_the_end_and_not_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    world.ledger.unavailable_for = {Stage.REPLIED}
    waits: list[float] = []

    def wait(seconds: float) -> None:  # the table recovers after the settler's last try
        waits.append(seconds)
        if len(waits) == 3:
            world.ledger.unavailable_for = set()

    monkeypatch.setattr("service.message.time.sleep", wait)

    first = world.poll()
    assert world.ledger.only().stage is Stage.REPLIED
    world.mailbox.deliver("u1", raw)  # as if the QUIT had not committed the deletion
    second = world.poll()

    assert (first["processed"], first["deleted"]) == (1, 1)
    assert len(world.replies.sent) == 1
    assert second["deleted"] == 1


def test_settled_message_whose_archive_fails_stays_settled() -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    world.ledger.save(LedgerEntry("acme", digest_of(raw), Stage.REPLIED, outcome=Outcome.PROCESSED))
    world.archive.unavailable = True

    result = world.poll()

    assert result["deleted"] == 1
    assert world.replies.sent == []
    assert world.ledger.only().stage is Stage.REPLIED


def test_the_stage_never_moves_back() -> None:
    entry = LedgerEntry("acme", "d", Stage.REPLIED, attempts=1, outcome=Outcome.PROCESSED)

    assert entry.released("s3 down", attempt=True).stage is Stage.REPLIED
    with pytest.raises(StageMovedBack):
        entry.answered(Outcome.FAILED, reply_key=None, recipient=None)


def test_a_message_that_always_breaks_retr_is_skipped_after_max_attempts() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail(subject="LetterShop broken"))
    world.mailbox.deliver("u2", partner_mail())
    world.mailbox.break_retrieve.add("u1")
    channel = make_channel(max_attempts=2)

    first, second = world.poll(channel), world.poll(channel)
    third = world.poll(channel)

    assert [r["status"] for r in (first, second)] == ["error", "error"]
    # The second poll goes on after the message the first one broke on: u2 is answered, but the
    # broken session commits no deletion; the third skips u1 and deletes u2 without a second reply.
    assert (second["processed"], second["deleted"]) == (1, 0)
    assert third["status"] == "ok"
    assert (third["skipped"], third["recognized"], third["deferred"], third["deleted"]) == (1, 1, 0, 1)
    assert len(world.replies.sent) == 1
    assert list(world.mailbox.messages) == ["u1"]
    assert world.memory.load("acme").failures == {"u1": 2}
