"""The poll handler end to end on real servers: Dovecot, aiosmtpd and moto server on 127.0.0.1."""

import json
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from adapters.state import DynamoDbLease
from devstack import aws
from devstack.invoke import SENDER_ADDRESS, invoke_poll, load_event, store_channel
from devstack.samples import VALID_IMPORT, bounce_mail, partner_mail
from devstack.stack import LocalStack
from domain.shipments import is_valid_s10
from handlers.poll import PollFailed
from tests.integration.conftest import JsonLogs

PARTNER = "orders@partner.example"
EVENT = load_event("poll-channel.json", channel_id="acme")


def parse(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)


def export_rows(reply: EmailMessage) -> list[list[str]]:
    [attachment] = list(reply.iter_attachments())
    assert attachment.get_filename() == "orders_export.csv"
    text = attachment.get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
    return [line.split(";") for line in text.splitlines()]


def counts(result: dict[str, Any]) -> tuple[int, ...]:
    keys = ("seen", "recognized", "processed", "failed", "rejected", "deferred", "deleted")
    return tuple(result[key] for key in keys)


def archive_keys(stack: LocalStack, prefix: str) -> list[str]:
    return aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, prefix)


def test_partner_import_is_answered_archived_and_deleted(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox)
    raw = partner_mail(sender=f"Orders <{PARTNER}>")
    stack.dovecot.deliver(mailbox[0], raw)

    result = invoke_poll(EVENT)

    assert result["status"] == "ok"
    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)
    [mail] = stack.smtp.wait_for(1)
    assert (mail.mail_from, mail.rcpt_tos, mail.authenticated_user) == (
        SENDER_ADDRESS,
        [PARTNER],
        stack.smtp_user,
    )
    reply = parse(mail.data)
    assert reply["To"] == PARTNER
    assert reply["Subject"] == "Re: LetterShop import"
    assert reply["In-Reply-To"] == parse(raw)["Message-ID"]
    assert reply["Auto-Submitted"] == "auto-replied"
    header, first, second, third = export_rows(reply)
    assert header == ["reference", "status", "shipment_id", "product", "weight_g", "postage_chf", "message"]
    assert first[:2] == ["R-1001", "ACCEPTED"]
    assert first[2].startswith("LA")
    assert is_valid_s10(first[2])
    assert second[:2] == ["R-1002", "ACCEPTED"]
    assert second[2].startswith("RR")
    assert second[5] == "8.00"  # REGISTERED, 450 g: the 500 g bracket of tariff.json
    assert third[:2] == ["R-1003", "REJECTED"]
    assert "postcode" in third[6]
    [inbound] = archive_keys(stack, "inbound/acme/")
    assert aws.get_object(stack.endpoint_url, stack.names.archive_bucket, inbound) == raw
    s3 = aws.client("s3", stack.endpoint_url)
    for key in archive_keys(stack, ""):
        assert s3.head_object(Bucket=stack.names.archive_bucket, Key=key)["ServerSideEncryption"] == "AES256"
    [stored] = archive_keys(stack, "exports/acme/")  # the reply as sent, with its export file
    assert aws.get_object(stack.endpoint_url, stack.names.archive_bucket, stored) == mail.data
    assert stack.dovecot.mailbox(mailbox[0]) == []


@pytest.mark.parametrize(
    ("pop3_security", "smtp"),
    [("starttls", "tls"), ("none", "none"), ("tls", "ses")],
)
def test_every_transport_delivers_the_reply(
    stack: LocalStack, mailbox: tuple[str, str], pop3_security: str, smtp: str
) -> None:
    port = stack.dovecot.pop3s_port if pop3_security == "tls" else stack.dovecot.pop3_port
    store_channel(stack, mailbox, smtp=smtp, pop3_security=pop3_security, pop3_port=port)
    stack.dovecot.deliver(mailbox[0], partner_mail())

    result = invoke_poll(EVENT)

    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)
    if smtp == "ses":
        [sent] = stack.moto.ses_messages()
        reply = parse(sent["raw"])
    else:
        server = stack.smtps if smtp == "tls" else stack.smtp_open
        [mail] = server.wait_for(1)
        reply = parse(mail.data)
    assert reply["To"] == PARTNER
    assert export_rows(reply)[1][1] == "ACCEPTED"
    assert stack.dovecot.mailbox(mailbox[0]) == []


def test_strangers_and_bounces_are_quarantined_and_other_mail_is_left_alone(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    store_channel(stack, mailbox)
    private = partner_mail(subject="Lunch on Friday?", attachments=())
    for raw in (partner_mail(sender="someone@stranger.example"), bounce_mail(), private):
        stack.dovecot.deliver(mailbox[0], raw)

    result = invoke_poll(EVENT)

    assert counts(result) == (3, 2, 0, 0, 2, 0, 2)
    assert stack.smtp.received == []
    quarantined = archive_keys(stack, "quarantine/acme/")
    assert len([key for key in quarantined if key.endswith(".eml")]) == 2
    reasons = [
        json.loads(aws.get_object(stack.endpoint_url, stack.names.archive_bucket, key))["reason"]
        for key in quarantined
        if key.endswith(".json")
    ]
    assert any("stranger.example" in reason for reason in reasons)
    assert any("report" in reason or "return path" in reason.lower() for reason in reasons)
    assert stack.dovecot.mailbox(mailbox[0]) == [private]


def test_message_without_import_file_gets_an_error_reply(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=[("orders.xlsx", b"PK\x03\x04")]))

    result = invoke_poll(EVENT)

    assert counts(result) == (1, 1, 0, 1, 0, 0, 1)
    [mail] = stack.smtp.wait_for(1)
    body = parse(mail.data).get_body()
    assert body is not None
    assert "orders.xlsx" in body.get_content()
    assert len(archive_keys(stack, "inbound/acme/")) == 1
    assert stack.dovecot.mailbox(mailbox[0]) == []


def test_too_large_message_is_quarantined(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox, max_message_bytes=2000)
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=[("orders.csv", VALID_IMPORT * 40)]))

    result = invoke_poll(EVENT)

    assert counts(result) == (1, 1, 0, 0, 1, 0, 1)
    assert stack.smtp.received == []
    assert len(archive_keys(stack, "quarantine/acme/")) == 2


def test_exclusive_account_answers_every_allowed_message(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox, exclusive_account=True, subject_keyword=None)
    stack.dovecot.deliver(mailbox[0], partner_mail(subject="shipments week 48"))

    assert counts(invoke_poll(EVENT)) == (1, 1, 1, 0, 0, 0, 1)


def test_eventbridge_event_with_detail_is_accepted(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox)
    event = load_event("poll-channel-eventbridge.json", detail={"channel_id": "acme"})

    assert invoke_poll(event)["status"] == "ok"


def test_invalid_channel_lists_every_error_and_leaves_the_mailbox(
    stack: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    store_channel(stack, mailbox, subject_keyword=None, smtp_port=70000, allowed_senders=["@x"])
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)

    result = invoke_poll(EVENT)

    assert result["status"] == "invalid_config"
    assert stack.dovecot.mailbox(mailbox[0]) == [raw]
    [line] = [
        line for line in json_logs.lines() if line["message"].startswith("channel configuration is invalid")
    ]
    assert line["channel_id"] == "acme"
    fields = {error["field"] for error in line["errors"]}
    assert {"smtp_port", "allowed_senders"} <= fields
    assert any("subject_keyword is required" in error["reason"] for error in line["errors"])
    [metrics] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert metrics["InvalidChannelConfig"] == [1.0]
    assert metrics["channel_id"] == "acme"


def test_inactive_or_unknown_channel_leaves_the_mailbox(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox, active=False)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)

    assert invoke_poll(EVENT)["status"] == "inactive"
    assert invoke_poll({"channel_id": "nobody"})["status"] == "invalid_config"
    assert stack.dovecot.mailbox(mailbox[0]) == [raw]


def test_missing_secret_is_a_clear_error_and_no_secret_is_logged(
    stack: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    store_channel(stack, mailbox, smtp_password_secret="lettershop/acme/missing")
    stack.dovecot.deliver(mailbox[0], partner_mail())

    with pytest.raises(PollFailed, match="secret lettershop/acme/missing cannot be read"):
        invoke_poll(EVENT)

    [ended] = [line for line in json_logs.lines() if line["message"] == "poll ended in error"]
    assert ended["result"]["status"] == "error"
    output = json_logs.text
    assert "lettershop/acme/missing" in output
    assert mailbox[1] not in output
    assert stack.smtp_password not in output
    assert len(stack.dovecot.mailbox(mailbox[0])) == 1


def test_secret_values_are_never_logged_in_a_full_poll(
    stack: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], partner_mail())

    assert invoke_poll(EVENT)["processed"] == 1

    output = json_logs.text
    assert '"channel_id":"acme"' in output.replace(" ", "")
    assert mailbox[1] not in output
    assert stack.smtp_password not in output


def test_secrets_are_cached_across_warm_invocations(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox)
    assert invoke_poll(EVENT)["status"] == "ok"
    aws.client("secretsmanager", stack.endpoint_url).delete_secret(
        SecretId="lettershop/acme/pop3", ForceDeleteWithoutRecovery=True
    )
    stack.dovecot.deliver(mailbox[0], partner_mail())

    assert invoke_poll(EVENT)["processed"] == 1


def test_untrusted_certificate_is_refused(
    stack: LocalStack, mailbox: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    other_ca = tmp_path / "empty-ca.pem"
    other_ca.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    store_channel(stack, mailbox)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)

    with pytest.raises(PollFailed, match="certificate verify failed"):
        invoke_poll(EVENT)

    assert stack.dovecot.mailbox(mailbox[0]) == [raw]


def test_wrong_pop3_password_is_a_clear_error(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, (mailbox[0], "wrong-password"))

    with pytest.raises(PollFailed, match=f"POP3 login of {mailbox[0]}"):
        invoke_poll(EVENT)


@pytest.mark.filterwarnings("ignore:Dimension 'channel_id' has already been added")
def test_two_polls_at_once_never_issue_a_shipment_id_twice(stack: LocalStack) -> None:
    """Two channels' polls through the handler at once, each answering its three messages with ids.

    What this can show on moto is the whole flow under concurrency; it cannot prove that ids never
    repeat: moto's TransactWriteItems is not atomic (two transactions conditioned on the same counter
    value can both succeed, tests/README.md), so a duplicate here would be moto's, and with six
    allocations it is rare. The proof is tests/unit/test_serial_allocation.py, against a store with
    DynamoDB's documented atomicity."""
    channels = []
    for channel_id in ("north", "south"):
        box = stack.new_mailbox()
        store_channel(stack, box, channel_id=channel_id)
        for _ in range(3):
            stack.dovecot.deliver(box[0], partner_mail())
        channels.append(channel_id)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda cid: invoke_poll({"channel_id": cid}), channels))

    assert [r["processed"] for r in results] == [3, 3]
    ids = [
        row[2]
        for mail in stack.smtp.wait_for(6)
        for row in export_rows(parse(mail.data))[1:]
        if row[1] == "ACCEPTED"
    ]
    assert len(ids) == 12
    assert len(set(ids)) == 12
    assert all(is_valid_s10(shipment_id) for shipment_id in ids)


def test_a_poll_finding_the_lease_taken_is_locked_and_touches_nothing(
    stack: LocalStack, mailbox: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store_channel(stack, mailbox)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)
    lease = DynamoDbLease(stack.names.state_table, aws.client("dynamodb", stack.endpoint_url))
    assert lease.acquire("acme", "a poll still running", seconds=300)

    result = invoke_poll(EVENT)

    assert result["status"] == "locked"
    assert stack.dovecot.mailbox(mailbox[0]) == [raw]
    [metrics] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert metrics["PollLocked"] == [1.0]
    assert metrics["MessagesRecognized"] == [0.0]
