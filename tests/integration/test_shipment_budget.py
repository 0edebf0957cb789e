"""max_shipments_per_day (issue 17) through the handler on Dovecot, aiosmtpd and moto: a file whose
valid rows would pass the channel's budget of the day fails alone, and its partner reads which
budget it is and how many ids are left; the files before it keep their ids."""

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from devstack import aws
from devstack.poll import invoke_poll, store_channel
from devstack.samples import VALID_IMPORT, partner_mail
from devstack.stack import LocalStack

EVENT = {"channel_id": "acme"}


def reply_of(data: bytes) -> tuple[str, list[str]]:
    """The reply's text and the names of its attachments."""
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content()), [part.get_filename() or "" for part in message.iter_attachments()]


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
    refusal = (
        "this file needs 2 shipment ids, but channel acme may be issued at most 3 a day "
        f"(max_shipments_per_day) and has 1 left today ({today}, UTC). No shipment id was issued for it"
    )
    # When a message with two such files arrives
    attachments = [("first.csv", VALID_IMPORT), ("second.csv", VALID_IMPORT)]
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=attachments))
    result = invoke_poll(EVENT)
    # Then the first file is processed with 2 ids; the second fails alone, its reason in the reply
    assert (result["processed"], result["failed"], result["deleted"]) == (1, 0, 1)
    [answer] = stack.smtp.received
    text, names = reply_of(answer.data)
    assert names == ["first_export.csv"]
    assert f"second.csv: not processed: {refusal}" in " ".join(text.split())
    assert state_number(stack, "counter#s10", "value") == "2"
    assert state_number(stack, f"shipments#acme#{today}", "issued") == "2"

    # When another message of the same day needs 2 more / Then it fails with the same reason
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=[("third.csv", VALID_IMPORT)]))
    result = invoke_poll(EVENT)
    assert (result["processed"], result["failed"]) == (0, 1)
    text, names = reply_of(stack.smtp.received[1].data)
    assert names == []
    assert f"third.csv: not processed: {refusal}" in " ".join(text.split())
    assert state_number(stack, "counter#s10", "value") == "2"  # no id spent on refused files
