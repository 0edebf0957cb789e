"""The archive bucket keeps every reply ever stored (issue 17, item 6), against moto server."""

import io
import time
from datetime import UTC, datetime, timedelta

import pytest

from adapters.archive import S3Archive
from devstack import aws
from devstack.stack import LocalStack
from domain.errors import TransientError
from domain.outcomes import Outcome

DIGEST = "cd" * 32
PARTNER = "orders@partner.example"
CLAIMED = datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=UTC)


def test_a_reply_never_replaces_one_stored_before(stack: LocalStack) -> None:
    archive = S3Archive(stack.names.archive_bucket, aws.client("s3", stack.endpoint_url))
    first = archive.store_reply(
        "acme", DIGEST, b"the first answer", CLAIMED, outcome=Outcome.PROCESSED, recipient=PARTNER
    )

    with pytest.raises(TransientError, match="a reply is stored there already"):
        archive.store_reply(
            "acme", DIGEST, b"another answer", CLAIMED, outcome=Outcome.PROCESSED, recipient=PARTNER
        )
    later = archive.store_reply(
        "acme",
        DIGEST,
        b"a replay's answer",
        CLAIMED + timedelta(hours=2),
        outcome=Outcome.PROCESSED,
        recipient=PARTNER,
    )

    assert aws.get_object(stack.endpoint_url, stack.names.archive_bucket, first) == b"the first answer"
    assert aws.get_object(stack.endpoint_url, stack.names.archive_bucket, later) == b"a replay's answer"
    assert archive.stored_reply("acme", DIGEST, CLAIMED) is not None
    assert [reply.key.key for reply in archive.replies(f"exports/acme/{DIGEST}/")] == [first, later]


def test_the_command_lines_listing_and_quarantine_reasons_come_from_the_archive_adapter(
    stack: LocalStack,
) -> None:
    """``lettershop message list`` asks the adapter (no raw S3 call in cli/): a channel's raw
    messages newest first, a quarantined one with the reason its record names."""
    bucket = stack.names.archive_bucket
    archive = S3Archive(bucket, aws.client("s3", stack.endpoint_url))
    first = archive.store_inbound("acme", "a" * 64, io.BytesIO(b"first"), CLAIMED)
    time.sleep(1.1)  # S3's LastModified counts whole seconds
    second = archive.store_inbound("acme", "b" * 64, io.BytesIO(b"second!"), CLAIMED - timedelta(days=3))
    archive.store_inbound("acme-2", "c" * 64, io.BytesIO(b"another channel's"), CLAIMED)
    rejected = archive.quarantine(
        "acme", "d" * 64, io.BytesIO(b"rejected"), {"reason": "sender not allowed"}, CLAIMED
    )
    unexplained = archive.quarantine("acme", "e" * 64, io.BytesIO(b"given up"), {}, CLAIMED)
    aws.client("s3", stack.endpoint_url).delete_object(
        Bucket=bucket, Key=unexplained.replace(".eml", ".json")
    )

    listed = archive.raw_messages("acme", quarantined=False)
    quarantined = archive.raw_messages("acme", quarantined=True)

    assert [(raw.message.key, raw.size, raw.message.digest) for raw in listed] == [
        (second, 7, "b" * 64),
        (first, 5, "a" * 64),
    ]
    assert sorted(raw.message.key for raw in quarantined) == sorted([rejected, unexplained])  # no .json
    assert archive.quarantine_reason(rejected) == "sender not allowed"
    assert archive.quarantine_reason(unexplained) is None
