"""A channel whose mailbox is read through Microsoft Graph, through the handler (issue 22).

Real parts: the poll handler, moto (tables, archive, Secrets Manager with the app's client secret,
SES), the local authorization server (client credentials in Entra's shape, introspection), the
Graph-shaped server (``devstack.graph``) and aiosmtpd.
"""

import hashlib
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from devstack import aws
from devstack.invoke import invoke_poll, store_graph_channel
from devstack.samples import partner_mail
from devstack.stack import GraphMailbox, LocalStack
from handlers.poll import PollFailed

EVENT = {"channel_id": "acme"}
PARTNER = "orders@partner.example"


@pytest.fixture
def box(stack: LocalStack) -> GraphMailbox:
    return stack.new_graph_mailbox()


def ledger_entry(stack: LocalStack, raw: bytes) -> dict[str, Any]:
    pk = f"ledger#acme#{hashlib.sha256(raw).hexdigest()}"
    answer = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": pk}}, ConsistentRead=True
    )
    return dict(answer.get("Item", {}))


def test_a_graph_mailbox_is_answered_by_smtp_archived_and_deleted_with_one_token(
    stack: LocalStack, box: GraphMailbox
) -> None:
    store_graph_channel(stack, box, smtp="none")
    raw, newsletter = partner_mail(), partner_mail(subject="Newsletter")
    stack.graph.deliver(box.user, raw)
    stack.graph.deliver(box.user, newsletter)

    result = invoke_poll(EVENT)

    assert (result["status"], result["recognized"], result["processed"], result["deleted"]) == ("ok", 1, 1, 1)
    [mail] = stack.smtp_open.wait_for(1)
    assert mail.rcpt_tos == [PARTNER]
    assert [m.raw for m in stack.graph.messages(box.user, "deleteditems")] == [raw]
    assert [m.raw for m in stack.graph.messages(box.user)] == [newsletter]  # foreign: untouched
    assert ledger_entry(stack, raw)["stage"]["S"] == "replied"
    assert [(r.client_id, r.result) for r in stack.oauth.token_requests] == [(box.client_id, "ok")]
    assert all(r.status < 300 for r in stack.graph.requests)


def test_a_graph_mailbox_answered_by_ses(stack: LocalStack, box: GraphMailbox) -> None:
    store_graph_channel(stack, box, smtp="ses")
    stack.graph.deliver(box.user, partner_mail())

    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"], result["deleted"]) == ("ok", 1, 1)
    assert stack.graph.messages(box.user) == []


def test_an_unchanged_shared_mailbox_of_1000_foreign_messages_costs_one_list_request(
    stack: LocalStack, box: GraphMailbox
) -> None:
    store_graph_channel(stack, box, smtp="none")
    for n in range(1000):
        stack.graph.deliver(box.user, partner_mail(subject=f"Newsletter {n}"))

    first = invoke_poll(EVENT)
    before = len(stack.graph.requests)
    again = invoke_poll(EVENT)

    assert (first["status"], first["seen"], first["recognized"]) == ("ok", 1000, 0)
    assert before == 1  # the listing gave the subjects: no message was read
    assert (again["status"], again["seen"]) == ("ok", 0)
    assert [r.path.rsplit("/", 1)[-1] for r in stack.graph.requests[before:]] == ["messages"]


def test_throttling_then_success_within_the_poll(stack: LocalStack, box: GraphMailbox) -> None:
    store_graph_channel(stack, box, smtp="none")
    stack.graph.deliver(box.user, partner_mail())
    stack.graph.fail_next(2, 429, retry_after=1)

    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"]) == ("ok", 1)
    assert [r.status for r in stack.graph.requests[:3]] == [429, 429, 200]


def test_consent_revoked_is_a_channel_failure_and_the_mailbox_is_untouched(
    stack: LocalStack, box: GraphMailbox
) -> None:
    store_graph_channel(stack, box, smtp="none")
    stack.graph.deliver(box.user, partner_mail())
    stack.oauth.set_roles(box.client_id, set())

    with pytest.raises(PollFailed, match=r"grant the application permission Mail\.ReadWrite"):
        invoke_poll(EVENT)

    assert len(stack.graph.messages(box.user)) == 1
    assert stack.smtp_open.received == []
    assert ledger_entry(stack, stack.graph.messages(box.user)[0].raw) == {}  # no attempt counted

    stack.oauth.set_roles(box.client_id, {"Mail.ReadWrite", "Mail.Send"})
    with pytest.raises(PollFailed):  # the cached token still lacks the role...
        invoke_poll(EVENT)
    stack.oauth.expire_tokens()
    assert invoke_poll(EVENT)["processed"] == 1  # ...until a new one is issued


def test_a_graph_mailbox_answered_through_graph(stack: LocalStack, box: GraphMailbox) -> None:
    store_graph_channel(stack, box, reply_via="graph", smtp_host=None, smtp_security=None)
    raw = partner_mail()
    stack.graph.deliver(box.user, raw)

    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"], result["deleted"]) == ("ok", 1, 1)
    [sent] = stack.graph.sent
    assert (sent.via, sent.recipients, sent.mailbox) == ("sendMail", [PARTNER], box.user)
    stored = aws.client("s3", stack.endpoint_url).list_objects_v2(
        Bucket=stack.names.archive_bucket, Prefix="exports/"
    )
    [key] = [item["Key"] for item in stored["Contents"]]
    archived = aws.client("s3", stack.endpoint_url).get_object(Bucket=stack.names.archive_bucket, Key=key)
    assert sent.mime == archived["Body"].read()  # the stored reply's exact bytes
    assert ledger_entry(stack, raw)["stage"]["S"] == "replied"
    assert stack.smtp_open.received == []


def test_an_import_whose_export_needs_an_upload_session(stack: LocalStack, box: GraphMailbox) -> None:
    rows = "".join(
        f"R-{n};Anna Muster;;Bahnhofstrasse;12;8001;Zürich;CH;A-POST;80\r\n" for n in range(70_000)
    )
    header = "reference;name;company;street;house_number;postcode;city;country;product;weight_g\r\n"
    store_graph_channel(stack, box, reply_via="graph", smtp_host=None, smtp_security=None)
    stack.graph.deliver(box.user, partner_mail(attachments=[("orders.csv", (header + rows).encode())]))

    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"], result["deleted"]) == ("ok", 1, 1)
    [sent] = stack.graph.sent
    [attachment] = sent.attachments
    assert (sent.via, attachment.name) == ("draft", "orders_export.csv")
    assert len(attachment.content) > 3 * 1024 * 1024
    assert attachment.content.count(b";ACCEPTED;") == 70_000
    assert sent.recipients == [PARTNER]


def test_channel_check_reads_the_inbox_count_with_a_graph_token(stack: LocalStack, box: GraphMailbox) -> None:
    store_graph_channel(stack, box, smtp="none")
    for n in range(2):
        stack.graph.deliver(box.user, partner_mail(subject=f"m{n}"))

    result = CliRunner().invoke(
        app, ["channel", "check", "acme"], env={"POWERTOOLS_METRICS_DISABLED": "true"}
    )

    assert f"ok   Graph mailbox: {box.user} at {stack.graph.endpoint}" in result.stdout, result.stdout
    assert "2 message(s) in the inbox" in result.stdout


def test_channel_check_tries_sending_as_the_mailbox_without_sending(stack: LocalStack) -> None:
    box = stack.new_graph_mailbox(roles=frozenset({"Mail.ReadWrite"}))  # no Mail.Send
    store_graph_channel(stack, box, reply_via="graph", smtp_host=None, smtp_security=None)

    result = CliRunner().invoke(
        app, ["channel", "check", "acme"], env={"POWERTOOLS_METRICS_DISABLED": "true"}
    )

    assert "ok   Graph mailbox:" in result.stdout, result.stdout
    assert "FAIL Graph send: Microsoft Graph denied the app access" in result.stdout
    assert "Mail.Send" in result.stdout
    stack.oauth.set_roles(box.client_id, {"Mail.ReadWrite", "Mail.Send"})
    stack.oauth.expire_tokens()

    again = CliRunner().invoke(app, ["channel", "check", "acme"], env={"POWERTOOLS_METRICS_DISABLED": "true"})

    assert f"ok   Graph send: the app may send as {box.user}" in again.stdout, again.stdout
    assert stack.graph.sent == []
