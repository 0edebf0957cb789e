"""max_shipments_per_day (issue 17) through the handler on Dovecot, aiosmtpd and moto: a file whose
valid rows would pass the channel's budget fails alone, and its partner reads which budget it is and
how many ids are left; the files before it keep their ids, and no id is spent on a refused file."""

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from devstack import aws
from devstack.invoke import invoke_poll, store_channel
from devstack.samples import VALID_IMPORT, partner_mail
from devstack.stack import LocalStack

EVENT = {"channel_id": "acme"}


def reply_of(data: bytes) -> tuple[str, list[str]]:
    """The reply's text, on one line, and the names of its attachments."""
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = " ".join(str(body.get_content()).split())
    return text, [part.get_filename() or "" for part in message.iter_attachments()]


def state_number(stack: LocalStack, key: str, name: str) -> str:
    answer = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": key}}, ConsistentRead=True
    )
    return str(answer["Item"][name]["N"])


def test_a_file_past_the_days_budget_fails_alone_naming_the_budget_and_what_is_left(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    # Given a channel that may be issued 3 shipment ids a day, and import files of 2 valid rows each
    store_channel(stack, mailbox, max_shipments_per_day=3)
    today = datetime.now(UTC).date().isoformat()
    # When a message with one such file is polled, then another
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=[("first.csv", VALID_IMPORT)]))
    assert invoke_poll(EVENT)["processed"] == 1
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=[("second.csv", VALID_IMPORT)]))
    result = invoke_poll(EVENT)
    # Then the second fails with a reply naming the budget and the 1 id left today; none is spent on it
    assert (result["processed"], result["failed"], result["deleted"]) == (0, 1, 1)
    text, names = reply_of(stack.smtp.received[1].data)
    assert names == []
    assert (
        "second.csv: not processed: this file needs 2 shipment ids, but channel acme may be issued at "
        f"most 3 a day (max_shipments_per_day) and has 1 left today ({today}, UTC). No shipment id was "
        "issued for it"
    ) in text
    assert state_number(stack, "counter#s10", "value") == "2"
    assert state_number(stack, f"shipments#acme#{today}", "issued") == "2"


def test_one_message_never_takes_more_than_the_budget_its_first_files_keep_their_ids(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    # Given the same channel, and a message with two files of 2 valid rows each
    store_channel(stack, mailbox, max_shipments_per_day=3)
    attachments = [("first.csv", VALID_IMPORT), ("second.csv", VALID_IMPORT)]
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=attachments))
    # When it is polled
    result = invoke_poll(EVENT)
    # Then the first file is processed with 2 ids, the second fails alone, naming the budget
    assert (result["processed"], result["failed"], result["deleted"]) == (1, 0, 1)
    [answer] = stack.smtp.received
    text, names = reply_of(answer.data)
    assert names == ["first_export.csv"]
    assert (
        "second.csv: not processed: this file needs 2 shipment ids, but one message may be issued at "
        "most 3 (max_shipments_per_day, the budget of channel acme for a day) and this one was issued 2 "
        "for its other files: 1 left for it."
    ) in text
    assert state_number(stack, "counter#s10", "value") == "2"
