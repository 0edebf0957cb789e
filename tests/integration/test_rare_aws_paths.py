"""The rare AWS paths of a poll, reached through the real handler in this process (issue 19).

Each test makes one rarely taken path run against moto server — the late ledger entries after
throttled ``replied`` writes (``BatchWriteItem``), the abort of a large raw message's multipart upload,
a poll that finds the claim of one that died and looks for its stored reply — so that every AWS
request of those paths is made, and seen by whatever records the requests of the test process. The
faults come from ``aws_faults.AwsFaultProxy`` in front of moto (DynamoDB throttling one kind of write,
S3 failing one part); ``AWS_MAX_ATTEMPTS=1`` makes each adapter call one request.
"""

import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from typing import Any

import pytest

import handlers.poll
from devstack import aws
from devstack.invoke import invoke_poll, store_channel
from devstack.samples import VALID_IMPORT, partner_mail
from devstack.stack import LocalStack
from tests.integration.aws_faults import AwsFaultProxy, Request
from tests.integration.conftest import JsonLogs

pytestmark = pytest.mark.integration

CHANNEL = "acme"
EVENT = {"channel_id": CHANNEL}
COUNTS = ("seen", "recognized", "processed", "failed", "rejected", "deferred", "deleted")


def counts(result: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(result[key]) for key in COUNTS)


def ledger(stack: LocalStack, raw: bytes) -> dict[str, str]:
    pk = f"ledger#{CHANNEL}#{hashlib.sha256(raw).hexdigest()}"
    item = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": pk}}, ConsistentRead=True
    )["Item"]
    return {name: str(next(iter(value.values()))) for name, value in item.items()}


def archive_keys(stack: LocalStack, prefix: str) -> list[str]:
    return aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, prefix)


@pytest.fixture
def aws_faults(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsFaultProxy]:
    """The fault proxy in front of the stack's moto server; one try per call (no SDK retry)."""
    proxy = AwsFaultProxy(stack.endpoint_url)
    proxy.start()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    try:
        yield proxy
    finally:
        proxy.stop()


# ----------------------------------------------------------- late ledger entries


def replied_ledger_write(request: Request) -> bool:
    """A ``PutItem`` of a ledger entry at stage ``replied`` (``MessageSettler._record_sent``)."""
    if request.operation != "PutItem":
        return False
    item = request.json().get("Item", {})
    return bool(
        item.get("pk", {}).get("S", "").startswith("ledger#") and item.get("stage") == {"S": "replied"}
    )


def test_throttled_replied_write_is_recorded_late_with_batch_write_item(
    stack: LocalStack,
    mailbox: tuple[str, str],
    aws_faults: AwsFaultProxy,
    monkeypatch: pytest.MonkeyPatch,
    json_logs: JsonLogs,
) -> None:
    """The reply went out, the ``replied`` write is throttled three times: the message is deleted all
    the same, and the entry is written at the poll's end (``DynamoDbLedger.save_all``)."""
    store_channel(stack, mailbox)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", aws_faults.url)
    aws_faults.fail_dynamodb(replied_ledger_write, "ProvisionedThroughputExceededException", times=3)

    result = invoke_poll(EVENT)

    assert result["status"] == "ok"
    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)
    assert [request.operation for request in aws_faults.refused()] == ["PutItem"] * 3
    [batch] = [request for request in aws_faults.requests if request.operation == "BatchWriteItem"]
    assert batch.status == 200
    [written] = batch.json()["RequestItems"][stack.names.state_table]
    assert written["PutRequest"]["Item"]["stage"] == {"S": "replied"}
    entry = ledger(stack, raw)
    assert (entry["stage"], entry["outcome"]) == ("replied", "processed")
    messages = [line["message"] for line in json_logs.lines()]
    assert "reply sent but not recorded; deleting the message all the same" in messages
    assert not any(message.startswith("settled messages not recorded") for message in messages)
    assert len(stack.smtp.wait_for(1)) == 1
    assert stack.dovecot.mailbox(mailbox[0]) == []


# ------------------------------------------------------------ multipart upload


def upload_part(request: Request) -> bool:
    return request.method == "PUT" and "partNumber=" in request.path and "uploadId=" in request.path


def test_failed_part_aborts_the_multipart_upload_of_a_large_raw_message(
    stack: LocalStack, mailbox: tuple[str, str], aws_faults: AwsFaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw message over 8 MB is archived in parts (``S3Archive._upload``); a part S3 refuses makes
    the upload abort (``AbortMultipartUpload``) and the message wait; the next poll archives it."""
    store_channel(stack, mailbox)
    appendix = bytes(range(256)) * (9 * 1024 * 1024 // 256)  # 9 MB, about 12 MB in base64
    raw = partner_mail(attachments=[("orders.csv", VALID_IMPORT), ("appendix.pdf", appendix)])
    assert len(raw) > 8 * 1024 * 1024
    stack.dovecot.deliver(mailbox[0], raw)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_faults.url)
    aws_faults.fail_s3(upload_part, "SlowDown", 503, times=1)

    first = invoke_poll(EVENT)

    assert counts(first) == (1, 1, 0, 0, 0, 1, 0)
    assert len(aws_faults.refused()) == 1
    aborts = [r for r in aws_faults.requests if r.method == "DELETE" and "uploadId=" in r.path]
    assert [abort.status for abort in aborts] == [204]
    s3 = aws.client("s3", stack.endpoint_url)
    assert s3.list_multipart_uploads(Bucket=stack.names.archive_bucket).get("Uploads", []) == []
    assert archive_keys(stack, "inbound/") == []
    assert stack.dovecot.mailbox(mailbox[0]) == [raw]
    assert stack.smtp.received == []

    second = invoke_poll(EVENT)

    assert counts(second) == (1, 1, 1, 0, 0, 0, 1)
    [inbound] = archive_keys(stack, "inbound/acme/")
    assert aws.get_object(stack.endpoint_url, stack.names.archive_bucket, inbound) == raw
    assert any(r.method == "POST" and "uploadId=" in r.path and r.status == 200 for r in aws_faults.requests)
    assert len(stack.smtp.wait_for(1)) == 1


# ------------------------------------------------------- a dead poll's reply


class Died(BaseException):
    """A poll's end without any of its own error handling: what SIGKILL does to a Lambda."""


@contextmanager
def dying_poll(step: str) -> Iterator[None]:
    """The polls of the block die when they reach ``step`` (``service.poll``'s checkpoints), as the
    subprocess of ``test_recovery`` does by SIGKILL; here in this process, so its requests are seen."""

    def checkpoint(reached: str) -> None:
        if reached == step:
            raise Died(step)

    real = vars(handlers.poll)["poll_channel"]  # the name the handler calls (as devstack.run_poll wraps it)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(vars(handlers.poll), "poll_channel", functools.partial(real, checkpoint=checkpoint))
        with pytest.raises(Died, match=step):
            yield


def expire_lease(stack: LocalStack) -> None:
    aws.client("dynamodb", stack.endpoint_url).delete_item(
        TableName=stack.names.state_table, Key={"pk": {"S": f"lease#{CHANNEL}"}}
    )


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # the dying poll emits none
def test_recovery_sends_the_reply_a_dead_poll_had_stored(
    stack: LocalStack,
    mailbox: tuple[str, str],
    aws_faults: AwsFaultProxy,
    monkeypatch: pytest.MonkeyPatch,
    json_logs: JsonLogs,
) -> None:
    """The poll dies after storing its answer (``exports/``); the next one finds the dead claim, looks
    the reply up by that claim's time (``HeadObject``), reads it (``GetObject``) and sends it."""
    store_channel(stack, mailbox)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_faults.url)  # no fault: to see the requests
    with dying_poll("answered"):
        invoke_poll(EVENT)
    [stored_key] = archive_keys(stack, "exports/acme/")
    stored = aws.get_object(stack.endpoint_url, stack.names.archive_bucket, stored_key)
    expire_lease(stack)
    aws_faults.requests.clear()

    result = invoke_poll(EVENT)

    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)
    [mail] = stack.smtp.wait_for(1)
    assert mail.data == stored
    assert [(r.method, r.status) for r in aws_faults.requests if stored_key in r.path] == [
        ("HEAD", 200),
        ("GET", 200),
    ]
    assert "the poll that died had stored its answer; it is sent now" in [
        line["message"] for line in json_logs.lines()
    ]
    assert archive_keys(stack, "exports/acme/") == [stored_key]
    entry = ledger(stack, raw)
    assert (entry["stage"], entry["reply_key"]) == ("replied", stored_key)


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # the dying poll emits none
def test_recovery_finds_no_reply_of_a_dead_poll_that_stored_none(
    stack: LocalStack,
    mailbox: tuple[str, str],
    aws_faults: AwsFaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The poll dies after archiving the raw message, before any answer: the next one looks for a
    stored reply (``HeadObject`` answering 404 for both folders: ``s3:ListBucket`` in AWS) and then
    answers the message itself, once."""
    store_channel(stack, mailbox)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_faults.url)  # no fault: to see the requests
    with dying_poll("archived"):
        invoke_poll(EVENT)
    assert archive_keys(stack, "exports/") == archive_keys(stack, "replies/") == []
    expire_lease(stack)
    aws_faults.requests.clear()

    result = invoke_poll(EVENT)

    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)
    heads = [(r.path.split("/")[2], r.status) for r in aws_faults.requests if r.method == "HEAD"]
    assert heads == [("exports", 404), ("replies", 404)]
    [mail] = stack.smtp.wait_for(1)
    reply = message_from_bytes(mail.data, policy=policy.default)
    assert reply["In-Reply-To"] == message_from_bytes(raw, policy=policy.default)["Message-ID"]
    [stored_key] = archive_keys(stack, "exports/acme/")
    assert aws.get_object(stack.endpoint_url, stack.names.archive_bucket, stored_key) == mail.data
    assert ledger(stack, raw)["attempts"] == "1"  # the dead poll's claim counted as one attempt
