"""The message state machine (service/message.py) and whose failure it is (DESIGN §6), with fakes."""

import hashlib
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from devstack.samples import out_of_office, partner_mail, with_sender
from domain.errors import (
    ChannelFailure,
    ConnectionLost,
    PermanentError,
    RejectedMessage,
    TransientError,
    UndeliverableReply,
)
from domain.ledger import Claim, LedgerEntry, SerialBlock, Stage
from domain.outcomes import Outcome
from service.failures import Consequence, consequence_of
from tests.unit.fakes import FakeReplies, World, make_channel

PARTNER = "orders@partner.example"
REFUSED_LOGIN = ChannelFailure("SMTP server refused the login", setting="smtp_username, smtp_password_secret")


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize(
    ("error", "consequence"),
    [
        (ChannelFailure("login refused", setting="pop3_password_secret"), Consequence.STOP),
        (ConnectionLost("POP3 connection lost"), Consequence.DISCONNECT),
        (UndeliverableReply("550 no such user"), Consequence.SETTLE),
        (TransientError("451 try later"), Consequence.DEFER),
        (PermanentError("an import file escaped its handling"), Consequence.DEFER),
        (RejectedMessage("escaped the screening"), Consequence.DEFER),
        (RuntimeError("a bug"), Consequence.DEFER),
    ],
)
def test_one_mapping_from_error_to_consequence(error: Exception, consequence: Consequence) -> None:
    assert consequence_of(error) is consequence


def test_a_channel_failure_counts_no_attempt_and_never_quarantines() -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    world.replies.error = REFUSED_LOGIN
    channel = make_channel(max_attempts=2)

    results = [world.poll(channel) for _ in range(5)]

    assert {(r["status"], r["deleted"], r.get("setting")) for r in results} == {
        ("error", 0, "smtp_username, smtp_password_secret")
    }
    entry = world.ledger.only()
    assert (entry.stage, entry.attempts, entry.claim) == (Stage.ANSWERED, 0, None)
    assert world.archive.keys("quarantine/") == []
    assert list(world.mailbox.messages) == ["u1"]

    world.replies.error = None  # the operator fixed the password
    fixed = world.poll(channel)

    assert (fixed["processed"], fixed["deleted"]) == (1, 1)
    [reply] = world.replies.sent
    assert reply.data == world.archive.objects[entry.reply_key or ""]
    assert world.serials.calls == [2]


def test_a_channel_failure_leaves_the_messages_behind_it_alone() -> None:
    world = World()
    for uid in ("u1", "u2"):
        world.mailbox.deliver(uid, partner_mail())
    world.replies.error = REFUSED_LOGIN

    result = world.poll()

    assert (result["status"], result["recognized"], result["deferred"]) == ("error", 1, 1)
    assert world.mailbox.retrieved == ["u1"]


def test_an_undeliverable_reply_settles_its_message_and_the_next_one_is_answered() -> None:
    class RefusesOne(FakeReplies):
        def send(self, data: bytes, *, sender: str, recipient: str) -> None:
            if recipient == "jdöe@partner.example":
                raise UndeliverableReply("the relay does not offer SMTPUTF8")
            super().send(data, sender=sender, recipient=recipient)

    world = World()
    world.replies = RefusesOne()
    world.mailbox.deliver("u1", with_sender(partner_mail(), "jdöe@partner.example".encode()))
    world.mailbox.deliver("u2", partner_mail())

    result = world.poll()

    assert (result["failed"], result["processed"], result["deleted"]) == (1, 1, 2)
    assert [reply.recipient for reply in world.replies.sent] == [PARTNER]


def test_a_transient_failure_counts_an_attempt_and_releases_the_claim() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())
    world.replies.error = TransientError("451 try later")

    world.poll()

    entry = world.ledger.only()
    assert (entry.stage, entry.attempts, entry.claim, entry.last_error) == (
        Stage.ANSWERED,
        1,
        None,
        "451 try later",
    )


def test_a_retry_of_a_file_reuses_its_recorded_serial_block() -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    dead = Claim("a poll killed after numbering the file", datetime(2026, 11, 27, 7, 55, tzinfo=UTC))
    block = SerialBlock(first=4711, count=2)
    world.ledger.save(LedgerEntry("acme", digest_of(raw), claim=dead, serial_blocks={"0:orders.csv": block}))

    result = world.poll()

    assert result["processed"] == 1
    assert world.serials.calls == []
    export = next(world.replies.sent[0].message.iter_attachments()).get_content()
    assert "LA00004711" in export
    assert "RR00004712" in export
    assert world.ledger.only().attempts == 1  # the killed poll's claim counted


def test_a_poll_that_died_after_storing_its_answer_has_that_answer_sent_unchanged() -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    dead = Claim("a poll killed after storing its answer", datetime(2026, 11, 27, 7, 55, tzinfo=UTC))
    world.ledger.save(LedgerEntry("acme", digest_of(raw), claim=dead))
    key = world.archive.store_reply(
        "acme", digest_of(raw), b"the stored reply", dead.since, outcome=Outcome.FAILED, recipient=PARTNER
    )

    result = world.poll()

    assert (result["failed"], result["deleted"]) == (1, 1)
    [sent] = world.replies.sent
    assert (sent.data, sent.recipient) == (b"the stored reply", PARTNER)
    assert world.serials.calls == []
    entry = world.ledger.only()
    assert (entry.stage, entry.reply_key, entry.attempts) == (Stage.REPLIED, key, 1)


def test_a_poll_that_died_before_storing_an_answer_is_answered_anew() -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    dead = Claim("a poll killed while processing", datetime(2026, 11, 27, 7, 55, tzinfo=UTC))
    world.ledger.save(LedgerEntry("acme", digest_of(raw), claim=dead))

    result = world.poll()

    assert result["processed"] == 1
    [sent] = world.replies.sent
    assert sent.recipient == PARTNER
    assert world.serials.calls == [2]


def test_a_retry_after_processing_failed_transiently_issues_no_new_serials() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())
    world.archive.unavailable_replies = True

    first = world.poll()
    world.archive.unavailable_replies = False
    second = world.poll()

    assert (first["deferred"], second["processed"]) == (1, 1)
    assert world.serials.calls == [2]


def test_an_answer_to_our_reply_without_an_import_file_gets_no_reply() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail())
    world.poll()
    [reply] = world.replies.sent
    world.mailbox.deliver("u2", out_of_office(reply.data))

    result = world.poll()

    assert (result["rejected"], result["deleted"]) == (1, 1)
    assert len(world.replies.sent) == 1
    [key] = world.archive.keys("quarantine/")
    assert "answers one of our replies" in str(world.archive.reasons[key]["reason"])


def test_an_answer_to_our_reply_with_a_corrected_import_file_is_processed() -> None:
    world = World()
    world.mailbox.deliver("u1", partner_mail(attachments=[("orders.csv", b"no header here\r\n")]))
    world.poll()
    [error_reply] = world.replies.sent
    our_id = str(error_reply.message["Message-ID"])
    world.mailbox.deliver("u2", partner_mail(headers=[("In-Reply-To", our_id)]))

    assert world.poll()["processed"] == 1


def test_error_replies_to_one_sender_are_limited_per_hour() -> None:
    world = World()
    for n in range(5):
        world.mailbox.deliver(f"u{n}", partner_mail(attachments=[("invoice.pdf", b"%PDF")]))

    result = world.poll(make_channel(max_error_replies_per_hour=3))

    assert (result["failed"], result["rejected"], result["deleted"]) == (3, 2, 5)
    assert len(world.replies.sent) == 3
    reasons = [str(world.archive.reasons[key]["reason"]) for key in world.archive.keys("quarantine/")]
    assert all("limited to 3 per hour" in reason for reason in reasons)


def test_exports_are_not_limited() -> None:
    world = World()
    for n in range(4):
        world.mailbox.deliver(f"u{n}", partner_mail())

    result = world.poll(make_channel(max_error_replies_per_hour=1))

    assert result["processed"] == 4


@pytest.mark.parametrize(
    "from_value",
    [
        b'"xxx<someone@elsewhere>yyy' + b"a" * 60 + b'"@partner.example',
        b"=?utf-8?q?a=0D=0Ab?=@partner.example",
    ],
)
def test_a_sender_that_does_not_survive_a_reply_header_is_rejected_before_processing(
    from_value: bytes,
) -> None:
    world = World()
    world.mailbox.deliver("u1", with_sender(partner_mail(), from_value))

    result = world.poll()

    assert (result["rejected"], result["deleted"]) == (1, 1)
    assert world.replies.sent == []
    assert world.serials.calls == []


def test_a_non_ascii_sender_is_rejected_when_replies_go_through_ses() -> None:
    world = World()
    world.mailbox.deliver("u1", with_sender(partner_mail(), "jdöe@partner.example".encode()))

    result = world.poll(make_channel(reply_via="ses", smtp_host=None))

    assert result["rejected"] == 1
    [key] = world.archive.keys("quarantine/")
    assert "not ASCII" in str(world.archive.reasons[key]["reason"])


def test_a_settled_entry_is_only_deleted() -> None:
    world = World()
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)
    entry = LedgerEntry("acme", digest_of(raw), outcome=Outcome.FAILED)
    world.ledger.save(replace(entry, stage=Stage.REPLIED))

    result = world.poll()

    assert (result["failed"], result["deleted"]) == (0, 1)  # counted by the poll that settled it
    assert world.replies.sent == []
    assert world.ledger.history[1:] == []  # deleted; the entry needs no write
