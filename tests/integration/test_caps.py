"""max_import_files (DESIGN §3) through the handler on Dovecot, aiosmtpd and moto: a message with more
import files than the cap gets one error reply naming it, and not one serial is spent on it."""

from email import message_from_bytes, policy
from email.message import EmailMessage

from devstack import aws
from devstack.invoke import invoke_poll, store_channel
from devstack.samples import VALID_IMPORT, partner_mail
from devstack.stack import LocalStack

EVENT = {"channel_id": "acme"}
PARTNER = "orders@partner.example"


def serial_counter(stack: LocalStack) -> str:
    answer = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": "counter#s10"}}, ConsistentRead=True
    )
    return str(answer["Item"]["value"]["N"])


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_a_message_over_max_import_files_gets_one_error_reply_and_the_serial_counter_stays(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    # Given a channel taking at most two import files per message, whose serial counter has moved once
    store_channel(stack, mailbox, max_import_files=2)
    stack.dovecot.deliver(mailbox[0], partner_mail())
    assert invoke_poll(EVENT)["processed"] == 1
    counter_before = serial_counter(stack)
    exports_before = aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "exports/")

    # When a message with three import files arrives and the channel is polled
    attachments = [(f"orders{n}.csv", VALID_IMPORT) for n in range(3)]
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=attachments))
    result = invoke_poll(EVENT)

    # Then it failed, was deleted and answered once, naming the cap, with no export and no serial spent
    assert (result["failed"], result["processed"], result["deleted"]) == (1, 0, 1)
    assert stack.dovecot.mailbox(mailbox[0]) == []
    first_reply, cap_reply = stack.smtp.received
    assert cap_reply.rcpt_tos == [PARTNER]
    reply = parsed(cap_reply.data)
    body = reply.get_body()
    assert body is not None
    text = str(body.get_content())
    assert (
        "This message carries 3 import files; at most 2 are taken from one message (max_import_files)."
        in text
    )
    assert list(reply.iter_attachments()) == []
    assert serial_counter(stack) == counter_before
    assert aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "exports/") == exports_before
    assert len(list(parsed(first_reply.data).iter_attachments())) == 1
    assert invoke_poll(EVENT)["recognized"] == 0  # answered once: nothing is left to poll
    assert len(stack.smtp.received) == 2
