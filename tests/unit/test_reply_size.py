"""A reply larger than the relay takes settles its own message with a short notice (issue 17 item 14):
the message state machine with recording fakes, and the notice itself."""

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from devstack.samples import partner_mail
from domain.errors import ChannelFailure, ReplyTooLarge, TransientError, UndeliverableReply
from domain.ledger import Stage
from domain.outcomes import Outcome
from domain.reply import ReplyContext, reply_bytes, reply_too_large
from service.failures import Consequence, consequence_of
from tests.unit.fakes import FakeReplies, World, body_of

PARTNER = "orders@partner.example"
LIMIT = 10_000
HEADER = "reference;name;company;street;house_number;postcode;city;country;product;weight_g\r\n"
CONTEXT = ReplyContext(
    sender_address="lettershop@operator.example",
    recipient=PARTNER,
    subject="LetterShop import",
    message_id="<abc@partner.example>",
    references=None,
    reply_message_id="<reply-1.lettershop-reply@operator.example>",
    date=datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
)


def big_mail(rows: int = 400) -> bytes:
    """A partner message whose reply, with its export, is well over ``LIMIT`` bytes."""
    lines = [f"R-{2000 + n};Anna Muster;;Bahnhofstrasse;12;8001;Zürich;CH;A-POST;80\r\n" for n in range(rows)]
    return partner_mail(attachments=[("orders.csv", (HEADER + "".join(lines)).encode())])


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


@dataclass
class LimitedRelay(FakeReplies):
    """Refuses replies over ``limit`` as too large; ``fail_fitting`` fails the next fitting one."""

    limit: int = LIMIT
    fail_fitting: Exception | None = None
    tried: list[int] = field(default_factory=list)

    def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        self.tried.append(len(data))
        if len(data) > self.limit:
            raise ReplyTooLarge("the relay takes less", size=len(data), limit=self.limit)
        failure, self.fail_fitting = self.fail_fitting, None
        if failure is not None:
            raise failure
        super().send(data, sender=sender, recipient=recipient)


def world_with(relay: LimitedRelay) -> World:
    world = World()
    world.replies = relay
    return world


def test_a_too_large_reply_means_a_notice() -> None:
    assert consequence_of(ReplyTooLarge("too big", size=2, limit=1)) is Consequence.NOTIFY


def test_the_notice_is_the_recorded_answer_and_the_message_behind_is_answered() -> None:
    relay = LimitedRelay()
    world = world_with(relay)
    big = big_mail()
    world.mailbox.deliver("u1", big)
    world.mailbox.deliver("u2", partner_mail())

    result = world.poll()

    assert (result["status"], result["failed"], result["processed"], result["deleted"]) == ("ok", 1, 1, 2)
    notice, answer = relay.sent
    assert (notice.recipient, answer.recipient) == (PARTNER, PARTNER)
    assert list(notice.message.iter_attachments()) == []
    [large] = [key for key in world.archive.keys("exports/") if digest_of(big) in key]
    assert relay.tried[0] == len(world.archive.objects[large]) > LIMIT
    body = body_of(notice.message)
    assert f"({relay.tried[0]:,} bytes)" in body
    assert "(10,000 bytes)" in body
    entry = world.ledger.get("acme", digest_of(big))
    assert entry is not None
    assert (entry.stage, entry.outcome, entry.attempts, entry.recipient) == (
        Stage.REPLIED,
        Outcome.FAILED,
        0,
        PARTNER,
    )
    assert entry.reply_key is not None
    assert entry.reply_key.startswith("replies/")
    assert world.archive.objects[entry.reply_key] == notice.data
    assert world.archive.stored[entry.reply_key].outcome is Outcome.FAILED
    assert entry.last_error == "the relay takes less"


def test_a_notice_that_does_not_fit_either_settles_the_message_without_a_reply() -> None:
    relay = LimitedRelay(limit=100)
    world = world_with(relay)
    world.mailbox.deliver("u1", partner_mail())

    result = world.poll()

    assert (result["status"], result["failed"], result["deleted"]) == ("ok", 1, 1)
    assert relay.sent == []
    assert len(relay.tried) == 2  # the reply, then the notice
    entry = world.ledger.only()
    assert (entry.stage, entry.outcome) == (Stage.REPLIED, Outcome.FAILED)
    assert str(entry.last_error).startswith("not even the notice fits: ")


def test_a_notice_refused_for_good_settles_the_message_without_a_reply() -> None:
    relay = LimitedRelay(fail_fitting=UndeliverableReply("550 no such user"))
    world = world_with(relay)
    world.mailbox.deliver("u1", big_mail())

    result = world.poll()

    assert (result["failed"], result["deleted"]) == (1, 1)
    assert relay.sent == []
    assert world.ledger.only().last_error == "550 no such user"


def test_a_notice_that_fails_for_now_is_what_the_next_poll_sends_never_the_large_reply() -> None:
    relay = LimitedRelay(fail_fitting=TransientError("451 try later"))
    world = world_with(relay)
    world.mailbox.deliver("u1", big_mail())

    first = world.poll()

    assert (first["status"], first["deferred"], first["deleted"]) == ("ok", 1, 0)
    waiting = world.ledger.only()
    assert (waiting.stage, waiting.outcome, waiting.attempts) == (Stage.ANSWERED, Outcome.FAILED, 1)
    assert waiting.reply_key is not None
    assert waiting.reply_key.startswith("replies/")
    notice = world.archive.objects[waiting.reply_key]

    second = world.poll()

    assert (second["failed"], second["deleted"]) == (1, 1)
    assert [sent.data for sent in relay.sent] == [notice]
    assert relay.tried == [relay.tried[0], len(notice), len(notice)]  # the large reply only once
    assert world.ledger.only().stage is Stage.REPLIED


def test_a_channel_failure_at_the_notice_costs_no_attempt_and_the_notice_follows_once_fixed() -> None:
    refused = ChannelFailure("SMTP server refused the login", setting="smtp_username, smtp_password_secret")
    relay = LimitedRelay(fail_fitting=refused)
    world = world_with(relay)
    world.mailbox.deliver("u1", big_mail())

    stopped = world.poll()
    fixed = world.poll()

    assert (stopped["status"], stopped["deleted"]) == ("error", 0)
    assert (fixed["status"], fixed["failed"], fixed["deleted"]) == ("ok", 1, 1)
    [notice] = relay.sent
    assert "could not be sent" in body_of(notice.message)
    assert world.ledger.only().attempts == 0


# ------------------------------------------------------------------ the notice itself


def test_the_notice_names_both_sizes_and_how_many_files_to_send_instead() -> None:
    message = parsed(reply_bytes(reply_too_large(CONTEXT, size=26_918_000, limit=10_485_760)))

    assert list(message.iter_attachments()) == []
    assert (message["To"], message["Subject"]) == (PARTNER, "Re: LetterShop import")
    assert message["In-Reply-To"] == "<abc@partner.example>"
    assert message["Auto-Submitted"] == "auto-replied"
    body = body_of(message)
    assert "it comes to 26.9 MB (26,918,000 bytes), more than the 10.5 MB (10,485,760 bytes)" in body
    assert "split the import into at least 3 smaller files" in body


def test_the_notice_without_a_known_limit_still_names_the_replys_size() -> None:
    body = body_of(parsed(reply_bytes(reply_too_large(CONTEXT, size=4_200, limit=None))))

    assert "it comes to 4.2 kB (4,200 bytes), more than what our mail server takes." in body
    assert "split the import into smaller files" in body
