"""Whose failure is it (DESIGN §6), through the handler on Dovecot, aiosmtpd and moto: an operator's
typo never costs a message an attempt, an odd sender never blocks or misdirects mail, no loops."""

import hashlib
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from typing import Any

import pytest

from devstack import aws
from devstack.invoke import invoke_poll, store_channel
from devstack.samples import out_of_office, partner_mail, with_sender
from devstack.smtp import SmtpServer
from devstack.stack import LocalStack
from handlers.poll import PollFailed
from tests.integration.conftest import JsonLogs

EVENT = {"channel_id": "acme"}
PARTNER = "orders@partner.example"


def ledger(stack: LocalStack, raw: bytes) -> dict[str, Any]:
    pk = f"ledger#acme#{hashlib.sha256(raw).hexdigest()}"
    answer = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": pk}}, ConsistentRead=True
    )
    return {name: next(iter(value.values())) for name, value in answer.get("Item", {}).items()}


def serial_counter(stack: LocalStack) -> str:
    answer = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": "counter#s10"}}, ConsistentRead=True
    )
    return str(answer["Item"]["value"]["N"])


def export_of(data: bytes) -> bytes:
    [attachment] = list(message_from_bytes(data, policy=policy.default).iter_attachments())
    return bytes(attachment.get_content(), "utf-8")


def quarantine_keys(stack: LocalStack) -> list[str]:
    return aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "quarantine/acme/")


def test_a_wrong_smtp_password_keeps_the_message_until_it_is_fixed_then_answers_once(
    stack: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    item = store_channel(stack, mailbox, max_attempts=2)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)
    aws.put_secret(stack.endpoint_url, item["smtp_password_secret"], "not-the-password")

    for _ in range(4):  # twice max_attempts
        with pytest.raises(PollFailed, match="refused the login"):
            invoke_poll(EVENT)

    failures = [line for line in json_logs.lines() if line["message"] == "poll ended in error"]
    assert {line["setting"] for line in failures} == {"smtp_username, smtp_password_secret"}
    assert len(stack.dovecot.mailbox(mailbox[0])) == 1
    assert quarantine_keys(stack) == []
    assert stack.smtp.received == []
    entry = ledger(stack, raw)
    assert (entry["stage"], entry["attempts"], "claimed_by" in entry) == ("answered", "0", False)
    counter_before = serial_counter(stack)
    stored_reply = aws.get_object(stack.endpoint_url, stack.names.archive_bucket, entry["reply_key"])

    aws.put_secret(stack.endpoint_url, item["smtp_password_secret"], stack.smtp_password)
    result = invoke_poll(EVENT)  # the same warm function: the failed poll let go of cached secrets

    assert (result["processed"], result["deleted"]) == (1, 1)
    [mail] = stack.smtp.received
    assert mail.rcpt_tos == [PARTNER]
    assert export_of(mail.data) == export_of(stored_reply)
    assert serial_counter(stack) == counter_before
    assert stack.dovecot.mailbox(mailbox[0]) == []
    assert invoke_poll(EVENT)["recognized"] == 0
    assert len(stack.smtp.received) == 1


def test_a_rotated_pop3_password_fails_one_poll_and_the_next_reads_it_afresh(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    item = store_channel(stack, mailbox)
    assert invoke_poll(EVENT)["status"] == "ok"  # the password is cached now (an hour)
    stack.dovecot.add_user(mailbox[0], "rotated-password")
    aws.put_secret(stack.endpoint_url, item["pop3_password_secret"], {"password": "rotated-password"})
    stack.dovecot.deliver(mailbox[0], partner_mail())
    time.sleep(1.5)  # Dovecot re-reads its password file within a second

    with pytest.raises(PollFailed, match="POP3 login"):
        invoke_poll(EVENT)  # still the cached password
    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"]) == ("ok", 1)


def test_a_missing_archive_bucket_is_the_deployments_failure_and_costs_no_attempt(
    stack: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    store_channel(stack, mailbox, max_attempts=1)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)
    s3 = aws.client("s3", stack.endpoint_url)
    bucket = stack.names.archive_bucket
    for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    s3.delete_bucket(Bucket=bucket)

    try:
        for _ in range(2):  # more than max_attempts: none is charged
            with pytest.raises(PollFailed, match="NoSuchBucket"):
                invoke_poll(EVENT)
    finally:
        aws.create_resources(stack.endpoint_url, stack.names)  # the bucket again, for the tests after

    [failure] = {line["setting"] for line in json_logs.lines() if line["message"] == "poll ended in error"}
    assert failure.startswith("the stack")
    assert stack.dovecot.mailbox(mailbox[0]) == [raw]
    assert ledger(stack, raw)["attempts"] == "0"
    assert stack.smtp.received == []
    result = invoke_poll(EVENT)
    assert (result["processed"], result["deleted"]) == (1, 1)


def test_a_sender_the_relay_cannot_carry_does_not_hold_up_the_message_behind_it(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    assert not stack.smtp.smtputf8  # aiosmtpd with enable_SMTPUTF8=False
    store_channel(stack, mailbox)
    utf8_sender = with_sender(partner_mail(), "Jörg <jdöe@partner.example>".encode())
    stack.dovecot.deliver(mailbox[0], utf8_sender)
    stack.dovecot.deliver(mailbox[0], partner_mail())

    result = invoke_poll(EVENT)

    assert result["status"] == "ok"
    assert (result["failed"], result["processed"], result["deleted"]) == (1, 1, 2)
    assert [mail.rcpt_tos for mail in stack.smtp.received] == [[PARTNER]]
    settled = ledger(stack, utf8_sender)
    assert (settled["stage"], settled["outcome"]) == ("replied", "failed")
    assert "SMTPUTF8" in settled["last_error"]


@pytest.fixture
def utf8_relay(relay_with: Callable[..., SmtpServer]) -> SmtpServer:
    return relay_with(smtputf8=True)


def test_a_non_ascii_sender_is_answered_through_a_relay_that_offers_smtputf8(
    stack: LocalStack, mailbox: tuple[str, str], utf8_relay: SmtpServer
) -> None:
    store_channel(stack, mailbox, smtp_port=utf8_relay.port)
    stack.dovecot.deliver(mailbox[0], with_sender(partner_mail(), "Jörg <jdöe@partner.example>".encode()))

    result = invoke_poll(EVENT)

    assert result["processed"] == 1
    [mail] = utf8_relay.received
    assert mail.rcpt_tos == ["jdöe@partner.example"]
    assert str(message_from_bytes(mail.data, policy=policy.SMTPUTF8)["To"]) == "jdöe@partner.example"


ODD_SENDERS = [
    b'"xxx<someone@elsewhere.example>yyy' + b"a" * 60 + b'"@partner.example',
    b'"xxx<someone@elsewhere.example>yyy"@partner.example',
    b'"a\\"b"@partner.example',
    b"group: orders@partner.example;",
    b"=?utf-8?q?a=0D=0Ab?=@partner.example",
    b"x" * 64 + b"@partner.example",
    b"Orders <" + b"y" * 64 + b"@partner.example>",
]


@pytest.mark.parametrize("from_value", ODD_SENDERS, ids=range(len(ODD_SENDERS)))
def test_a_retried_reply_goes_to_the_screened_sender_or_nowhere(
    stack: LocalStack, mailbox: tuple[str, str], from_value: bytes
) -> None:
    store_channel(stack, mailbox)
    raw = with_sender(partner_mail(), from_value)
    stack.dovecot.deliver(mailbox[0], raw)
    stack.smtp.fail_next(451, "4.3.0 try again later", at="DATA")

    first = invoke_poll(EVENT)
    second = invoke_poll(EVENT)

    entry = ledger(stack, raw)
    if first["rejected"]:
        assert [key for key in quarantine_keys(stack) if key.endswith(".eml")]
        assert stack.smtp.received == []
        assert "recipient" not in entry
        return
    assert (first["deferred"], second["processed"]) == (1, 1)
    [mail] = stack.smtp.received
    assert mail.rcpt_tos == [entry["recipient"]]
    assert "elsewhere" not in entry["recipient"] or entry["recipient"].startswith('"')
    to = message_from_bytes(mail.data, policy=policy.default)["To"]
    assert [address.addr_spec for address in to.addresses] == [entry["recipient"]]


def test_an_autoresponder_ping_pong_ends_after_one_reply(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], partner_mail())
    replies = 0

    for _ in range(4):  # the partner's out-of-office answers every mail we send
        invoke_poll(EVENT)
        for mail in stack.smtp.received:
            stack.dovecot.deliver(mailbox[0], out_of_office(mail.data))
        replies += len(stack.smtp.received)
        stack.smtp.clear()

    assert replies == 1
    assert stack.dovecot.mailbox(mailbox[0]) == []
    reasons = [key for key in quarantine_keys(stack) if key.endswith(".json")]
    assert len(reasons) == 1
    reason = aws.get_object(stack.endpoint_url, stack.names.archive_bucket, reasons[0])
    assert b"answers one of our replies" in reason
