"""A relay's size limit is the message's problem, not the channel's (DESIGN §6, issue 17 item 14):
through the handler on Dovecot, aiosmtpd (with a small ``SIZE``) and moto, the reply that does not fit
settles its own message with a short notice to the partner, and the messages behind it are answered."""

import hashlib
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from devstack import aws
from devstack.invoke import invoke_poll, store_channel
from devstack.samples import partner_mail
from devstack.smtp import SmtpServer
from devstack.stack import LocalStack

EVENT = {"channel_id": "acme"}
PARTNER = "orders@partner.example"
LIMIT = 20_000
HEADER = "reference;name;company;street;house_number;postcode;city;country;product;weight_g\r\n"


def big_import(rows: int = 400) -> bytes:
    """An import file whose export, in the reply, is well over ``LIMIT`` bytes."""
    lines = [f"R-{2000 + n};Anna Muster;;Bahnhofstrasse;12;8001;Zürich;CH;A-POST;80\r\n" for n in range(rows)]
    return (HEADER + "".join(lines)).encode()


def ledger(stack: LocalStack, raw: bytes) -> dict[str, Any]:
    pk = f"ledger#acme#{hashlib.sha256(raw).hexdigest()}"
    answer = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": pk}}, ConsistentRead=True
    )
    return {name: next(iter(value.values())) for name, value in answer.get("Item", {}).items()}


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


@pytest.fixture
def small_relay(relay_with: Callable[..., SmtpServer]) -> SmtpServer:
    """A relay that takes at most ``LIMIT`` bytes (``SIZE 20000`` in its EHLO)."""
    return relay_with(data_size_limit=LIMIT)


def test_a_reply_over_the_relays_size_settles_its_message_with_a_notice_and_the_next_is_answered(
    stack: LocalStack, mailbox: tuple[str, str], small_relay: SmtpServer
) -> None:
    store_channel(stack, mailbox, smtp_port=small_relay.port, max_attempts=1)
    big = partner_mail(attachments=[("orders.csv", big_import())])
    small = partner_mail()
    stack.dovecot.deliver(mailbox[0], big)
    stack.dovecot.deliver(mailbox[0], small)

    result = invoke_poll(EVENT)

    assert (result["status"], result["failed"], result["processed"]) == ("ok", 1, 1)
    assert (result["deferred"], result["rejected"], result["deleted"]) == (0, 0, 2)
    notice, answer = small_relay.received
    assert (notice.rcpt_tos, answer.rcpt_tos) == ([PARTNER], [PARTNER])
    entry = ledger(stack, big)
    assert (entry["stage"], entry["outcome"], entry["attempts"]) == ("replied", "failed", "0")
    assert "claimed_by" not in entry
    assert "takes messages of at most 20000 bytes (SIZE)" in entry["last_error"]
    # The notice is the recorded answer, stored as sent; the large reply stays in the archive.
    assert entry["reply_key"].startswith("replies/acme/")
    bucket = stack.names.archive_bucket
    assert aws.get_object(stack.endpoint_url, bucket, entry["reply_key"]) == notice.data
    digest = hashlib.sha256(big).hexdigest()
    [export_key] = [
        key for key in aws.list_keys(stack.endpoint_url, bucket, "exports/acme/") if digest in key
    ]
    large = aws.get_object(stack.endpoint_url, bucket, export_key)
    assert len(large) > LIMIT
    message = parsed(notice.data)
    assert list(message.iter_attachments()) == []
    assert message["In-Reply-To"] == parsed(big)["Message-ID"]
    assert message["Auto-Submitted"] == "auto-replied"
    body = body_of(message)
    assert f"({len(large):,} bytes)" in body
    assert "(20,000 bytes)" in body
    assert f"at least {-(-len(large) // LIMIT)} smaller files" in body
    assert [part.get_filename() for part in parsed(answer.data).iter_attachments()] == ["orders_export.csv"]
    assert ledger(stack, small)["outcome"] == "processed"
    assert stack.dovecot.mailbox(mailbox[0]) == []

    again = invoke_poll(EVENT)

    assert (again["status"], again["recognized"]) == ("ok", 0)
    assert len(small_relay.received) == 2


@pytest.mark.parametrize("at", ["MAIL", "DATA"])
def test_a_relay_refusing_a_reply_as_too_large_gets_the_notice_instead(
    stack: LocalStack, mailbox: tuple[str, str], at: str
) -> None:
    assert stack.smtp.data_size_limit > 0  # it offers SIZE, so MAIL FROM carries SIZE=
    store_channel(stack, mailbox)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)
    stack.dovecot.deliver(mailbox[0], partner_mail(subject="LetterShop import 2"))
    stack.smtp.fail_next(552, "5.3.4 Message size exceeds fixed maximum message size", at=at)  # type: ignore[arg-type]

    result = invoke_poll(EVENT)

    assert (result["status"], result["failed"], result["processed"], result["deleted"]) == ("ok", 1, 1, 2)
    [refused] = stack.smtp.refused
    assert (refused.at, refused.code) == (at, 552)
    notice, answer = stack.smtp.received
    body = body_of(parsed(notice.data))
    assert "more than what our mail server takes" in body
    assert list(parsed(notice.data).iter_attachments()) == []
    assert parsed(answer.data)["Subject"] == "Re: LetterShop import 2"
    entry = ledger(stack, raw)
    assert (entry["stage"], entry["outcome"], entry["attempts"]) == ("replied", "failed", "0")
    assert "refused the reply" in entry["last_error"]
    assert "552 5.3.4" in entry["last_error"]
