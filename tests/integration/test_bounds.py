"""Parse bounds (issue 10, point 2) through the handler on Dovecot, aiosmtpd and moto: a message
beyond a bound is quarantined with the bound in its reason, never answered, and the message behind
it is processed in the same poll."""

import json

from devstack import aws
from devstack.invoke import invoke_poll, store_channel
from devstack.samples import partner_mail
from devstack.stack import LocalStack

EVENT = {"channel_id": "acme"}
PARTNER = "orders@partner.example"


def many_parts(count: int) -> bytes:
    """An allowed partner's LetterShop message of ``count`` empty MIME parts."""
    head = (
        f"From: {PARTNER}\r\nTo: lettershop@operator.example\r\nSubject: LetterShop import\r\n"
        "Message-ID: <many-parts@partner.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    ).encode()
    return head + b"--b\r\n\r\n" * count + b"--b--\r\n"


def test_a_message_of_many_parts_is_quarantined_and_the_one_behind_it_processed(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], many_parts(20_000))
    stack.dovecot.deliver(mailbox[0], partner_mail())

    result = invoke_poll(EVENT)

    assert result["status"] == "ok"
    assert (result["rejected"], result["processed"], result["deleted"]) == (1, 1, 2)
    assert [mail.rcpt_tos for mail in stack.smtp.received] == [[PARTNER]]  # the second one's reply only
    keys = aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "quarantine/acme/")
    [reason_key] = [key for key in keys if key.endswith(".json")]
    reason = json.loads(aws.get_object(stack.endpoint_url, stack.names.archive_bucket, reason_key))
    assert "more than 1,000 MIME parts (bound max_mime_parts = 1,000)" in json.dumps(reason)
    assert any(key.endswith(".eml") for key in keys)  # the raw message is kept for the operator
    assert stack.dovecot.mailbox(mailbox[0]) == []


def test_a_huge_header_block_is_screened_from_its_first_mib_and_the_mail_behind_it_is_answered(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    store_channel(stack, mailbox)  # a shared account: recognised by the keyword in the Subject
    filler = b"".join(b"X-Filler-%d: " % n + b"f" * 990 + b"\r\n" for n in range(3_000))  # 3 MB
    huge = (
        f"From: {PARTNER}\r\nTo: lettershop@operator.example\r\n".encode()
        + filler
        + b"Subject: LetterShop import\r\nMIME-Version: 1.0\r\n\r\nbody\r\n"
    )
    stack.dovecot.deliver(mailbox[0], huge)
    stack.dovecot.deliver(mailbox[0], partner_mail())

    result = invoke_poll(EVENT)

    assert (result["seen"], result["recognized"], result["processed"]) == (2, 1, 1)
    assert stack.dovecot.mailbox(mailbox[0]) == [huge]  # its Subject stands past the first MiB
    assert invoke_poll(EVENT)["seen"] == 0  # remembered as not ours: never screened again
