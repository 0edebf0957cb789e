"""The archive bucket keeps every reply ever stored (issue 17, item 6), against moto server."""

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
