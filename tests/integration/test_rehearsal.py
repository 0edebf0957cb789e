"""The Lambda rehearsal (issue 19, point 3): the *built* poll function, run by the Lambda runtime's
stand-in inside a sandbox shaped like Lambda (``tools/rehearse.py``), against the local stack.

Needs ``make build``: without ``.aws-sam/build/template.yaml`` every test here is skipped with one
reason, one line in the summary (``make rehearse`` builds first). ``tests/rehearsal/test_sandbox.py``
proves the sandbox itself and needs no build.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devstack import aws
from devstack.invoke import store_channel
from devstack.samples import VALID_IMPORT, partner_mail
from devstack.stack import LocalStack
from domain.channel import MAX_MESSAGE_BYTES
from tools import rehearse

EVENT = {"channel_id": "acme"}
PARTNER = "orders@partner.example"
SKIP_REASON = (
    "Lambda rehearsal not run: no build (.aws-sam/build/template.yaml); `make rehearse` builds and runs it"
)
pytestmark = pytest.mark.timeout(rehearse.INIT_SECONDS + 600)


if not (rehearse.BUILD_DIR / "template.yaml").is_file():
    pytest.skip(SKIP_REASON, allow_module_level=True)  # one line in the summary, not one per test


@pytest.fixture(scope="module")
def poll() -> rehearse.Target:
    """The poll function of the build (made by ``make build``, with its runtime)."""
    if not rehearse.RUNTIME_PYTHON.exists():
        pytest.fail(f"the build exists but not its runtime {rehearse.RUNTIME_PYTHON}: run `make build`")
    [target] = [t for t in rehearse.find_targets().values() if t.function.handler == "handlers.poll.handler"]
    return target


def run(poll: rehearse.Target, stack: LocalStack) -> rehearse.Rehearsal:
    rehearsal = rehearse.rehearse(poll, EVENT, stack.env())
    assert rehearsal.problems() == [], rehearsal.output[-4000:]
    print(f"rehearsal: {rehearsal.summary()}")
    return rehearsal


def test_the_build_answers_a_partner_inside_lambda_limits(
    poll: rehearse.Target, stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], partner_mail())

    rehearsal = run(poll, stack)

    assert rehearsal.result["status"] == "ok"
    assert (rehearsal.result["processed"], rehearsal.result["deleted"]) == (1, 1)
    assert [mail.rcpt_tos for mail in stack.smtp.received] == [[PARTNER]]
    assert stack.dovecot.mailbox(mailbox[0]) == []


def big_import(size: int) -> bytes:
    """An import file of at least ``size`` bytes: valid rows of ~200 bytes, unique references."""
    header, *_ = VALID_IMPORT.split(b"\r\n", 1)
    rows: list[bytes] = [header + b"\r\n"]
    total, number = len(rows[0]), 0
    while total < size:
        number += 1
        row = (
            f"R-{number:033d};{'Anna Muster':<35};{'Muster AG':<35};{'Bahnhofstrasse':<35};12;8001;"
            f"{'Zuerich':<35};CH;A-POST;80\r\n"
        ).encode()
        rows.append(row)
        total += len(row)
    return b"".join(rows)


def test_the_build_answers_a_20_mb_import_inside_lambda_limits(
    poll: rehearse.Target, stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    content = big_import(20 * 1024 * 1024)
    rows = content.count(b"\r\n") - 1
    # base64 makes the message ~28 MB: beyond the default max_message_bytes (25 MiB)
    limits: dict[str, Any] = {
        "max_message_bytes": 40 * 1024 * 1024,
        "max_rows_per_file": 1_000_000,
        "max_shipments_per_day": 1_000_000,
    }
    store_channel(stack, mailbox, **limits)
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=[("big.csv", content)]))

    rehearsal = run(poll, stack)

    assert (rehearsal.result["processed"], rehearsal.result["deleted"]) == (1, 1), rehearsal.output[-3000:]
    [reply] = stack.smtp.received
    assert reply.rcpt_tos == [PARTNER]
    assert rows > 100_000


def message_of_exactly(size: int) -> bytes:
    """An allowed partner's LetterShop message of exactly ``size`` bytes (CRLF line ends, as POP3
    counts them): a small valid import and a base64 attachment filling the rest."""
    head = (
        f"From: {PARTNER}\r\nTo: lettershop@operator.example\r\nSubject: LetterShop import\r\n"
        "Message-ID: <at-the-limit@partner.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        '--b\r\nContent-Type: text/csv; name="orders.csv"\r\n'
        'Content-Disposition: attachment; filename="orders.csv"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + base64.encodebytes(VALID_IMPORT).replace(b"\n", b"\r\n")
    head += (
        b'--b\r\nContent-Type: application/pdf; name="scan.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    )
    tail = b"--b--\r\n"
    line = b"QUJD" * 19 + b"\r\n"  # 78 bytes a line
    room = size - len(head) - len(tail)
    lines, rest = divmod(room, len(line))
    filler = line * lines + (b"QUJD" * 20)[: max(rest - 2, 0)] + b"\r\n"[:rest]
    raw = head + filler + tail
    assert len(raw) == size
    return raw


@pytest.fixture
def largest_message() -> bytes:
    return message_of_exactly(MAX_MESSAGE_BYTES)


def test_the_build_settles_a_message_at_the_largest_max_message_bytes_inside_lambda_limits(
    poll: rehearse.Target, stack: LocalStack, mailbox: tuple[str, str], largest_message: bytes
) -> None:
    store_channel(stack, mailbox, max_message_bytes=MAX_MESSAGE_BYTES)
    stack.dovecot.deliver(mailbox[0], largest_message)

    rehearsal = run(poll, stack)

    assert rehearsal.result["deleted"] == 1, rehearsal.result
    keys = aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "quarantine/acme/")
    if rehearsal.result["processed"] == 1:  # answered
        assert [mail.rcpt_tos for mail in stack.smtp.received] == [[PARTNER]]
    else:  # quarantined, naming the size
        [reason_key] = [key for key in keys if key.endswith(".json")]
        reason = aws.get_object(stack.endpoint_url, stack.names.archive_bucket, reason_key)
        text = json.dumps(json.loads(reason))
        assert f"{MAX_MESSAGE_BYTES:,}" in text or str(MAX_MESSAGE_BYTES) in text, reason
