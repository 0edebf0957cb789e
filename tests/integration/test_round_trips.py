"""The round trips a poll waits for (issue 21): counted as client turns by the TCP proxy in front of
the mail servers, the only figure that matters once a server is tens of milliseconds away."""

import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.archive import SMALL_BODY_BYTES, S3Archive
from devstack import aws
from devstack.invoke import invoke_poll, store_channel
from devstack.proxy import TcpProxy
from devstack.samples import partner_mail
from devstack.smtp import SmtpServer
from devstack.stack import LocalStack
from domain.outcomes import Outcome

pytestmark = pytest.mark.integration

EVENT = {"channel_id": "acme"}


def smtp_turns_per_reply(
    stack: LocalStack, mailbox: tuple[str, str], proxy: TcpProxy, relay: SmtpServer
) -> int:
    """The SMTP turns a poll of three messages takes more than a poll of one, per reply more."""
    store_channel(stack, mailbox, smtp_port=proxy.port)
    turns = []
    for messages in (1, 3):
        for number in range(messages):
            stack.dovecot.deliver(mailbox[0], partner_mail(subject=f"LetterShop {messages}/{number}"))
        before = proxy.turns
        result = invoke_poll(EVENT)
        assert (result["processed"], result["deleted"]) == (messages, messages)
        turns.append(proxy.turns - before)
    assert len(relay.received) == 4
    return (turns[1] - turns[0]) // 2


@pytest.mark.parametrize(
    "case",
    [
        (True, 2),  # MAIL+RCPT+DATA in one write, then the data; no NOOP before it
        (False, 4),  # MAIL, RCPT, DATA, the data: as smtplib's sendmail, and nothing more
    ],
)
def test_a_reply_takes_two_round_trips_through_a_relay_offering_pipelining_and_four_without(
    stack: LocalStack,
    mailbox: tuple[str, str],
    proxy_to: Callable[[int], TcpProxy],
    relay_with: Callable[..., SmtpServer],
    case: tuple[bool, int],
) -> None:
    pipelining, round_trips = case
    relay = relay_with(pipelining=pipelining)

    per_reply = smtp_turns_per_reply(stack, mailbox, proxy_to(relay.port), relay)

    assert per_reply == round_trips


def pop3_turns_per_message(stack: LocalStack, mailbox: tuple[str, str], proxy: TcpProxy, **item: Any) -> int:
    """The POP3 turns a poll of three messages takes more than a poll of one, per message more."""
    store_channel(stack, mailbox, pop3_port=proxy.port, **item)
    turns = []
    for messages in (1, 3):
        for number in range(messages):
            stack.dovecot.deliver(mailbox[0], partner_mail(subject=f"LetterShop {messages}/{number}"))
        before = proxy.turns
        result = invoke_poll(EVENT)
        assert (result["processed"], result["deleted"]) == (messages, messages)
        turns.append(proxy.turns - before)
    assert stack.dovecot.mailbox(mailbox[0]) == []  # every deletion committed
    return (turns[1] - turns[0]) // 2


def test_a_shared_account_spends_one_round_trip_per_message_retr_with_the_next_top_and_last_dele(
    stack: LocalStack, mailbox: tuple[str, str], proxy_to: Callable[[int], TcpProxy]
) -> None:
    per_message = pop3_turns_per_message(stack, mailbox, proxy_to(stack.dovecot.pop3s_port))

    assert per_message == 1  # RETR with the next TOP and the last DELE; was TOP, RETR, DELE


def test_an_exclusive_account_spends_one_round_trip_per_message(
    stack: LocalStack, mailbox: tuple[str, str], proxy_to: Callable[[int], TcpProxy]
) -> None:
    per_message = pop3_turns_per_message(
        stack, mailbox, proxy_to(stack.dovecot.pop3s_port), exclusive_account=True, subject_keyword=None
    )

    assert per_message == 1  # RETR with the last DELE; was TOP, RETR, DELE


def test_a_small_object_goes_to_s3_in_one_round_trip_a_large_one_asks_to_continue_first(
    stack: LocalStack, proxy_to: Callable[[int], TcpProxy]
) -> None:
    proxy = proxy_to(stack.moto.port)
    archive = S3Archive(stack.names.archive_bucket, aws.client("s3", f"http://{proxy.host}:{proxy.port}"))
    received = datetime(2026, 12, 8, tzinfo=UTC)
    archive.store_inbound("acme", "0" * 64, io.BytesIO(b"x" * 1000), received)  # the connection is made
    turns = []
    for digest, size in (("1" * 64, 200_000), ("2" * 64, SMALL_BODY_BYTES + 1)):
        before = proxy.turns
        archive.store_reply(
            "acme", digest, b"x" * size, received, outcome=Outcome.PROCESSED, recipient="a@b.example"
        )
        turns.append(proxy.turns - before)

    assert turns == [1, 2]  # Expect: 100-continue only where a refusal would save a large upload
