"""The one warm state (``app.warm``, issue 18) through the handler: a warm instance keeps what it
learnt (an empty poll of an unchanged mailbox costs one AWS request, the channel's item), and one
``reset()`` makes it cold again."""

from collections import Counter

import pytest

from app.root import WARM
from bench.probes import ApiCalls
from devstack.invoke import invoke_poll, store_channel
from devstack.samples import partner_mail
from devstack.stack import LocalStack

pytestmark = pytest.mark.integration

EVENT = {"channel_id": "acme"}


def test_a_warm_empty_poll_costs_one_request_and_a_reset_makes_the_process_cold(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    # Given a channel polled once (cold: secrets read, memory and status written)
    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], partner_mail(subject="Invoice November"))  # foreign: stays
    with ApiCalls() as calls:
        with calls.window() as cold:
            assert invoke_poll(EVENT)["status"] == "ok"
        # When the same instance polls the unchanged mailbox again
        with calls.window() as warm:
            assert invoke_poll(EVENT)["status"] == "ok"
        # and again after one reset (a new function instance)
        WARM.reset()
        with calls.window() as after_reset:
            assert invoke_poll(EVENT)["status"] == "ok"

    # Then the warm poll read only the channel's item: secrets, memory and status came from memory
    assert warm.calls == ["dynamodb.GetItem"]
    # and the poll after the reset read both secrets (POP3, SMTP) and the mailbox memory again
    assert Counter(cold.calls)["secretsmanager.GetSecretValue"] == 2
    assert Counter(after_reset.calls)["secretsmanager.GetSecretValue"] == 2
    assert Counter(after_reset.calls)["dynamodb.GetItem"] == 2  # the channel's item and its memory
    # and its status, unchanged, was checked with one conditional update (refused: nothing new, the
    # heartbeat not due) instead of being skipped
    assert Counter(after_reset.calls)["dynamodb.UpdateItem"] == 1
    assert "dynamodb.PutItem" not in after_reset.calls


def test_forgetting_the_secrets_reads_them_once_more_and_keeps_the_rest_warm(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    store_channel(stack, mailbox)
    invoke_poll(EVENT)

    WARM.forget_secrets()  # what a poll that failed on a setting does (service.poll.poll_ended)
    with ApiCalls() as calls, calls.window() as window:
        invoke_poll(EVENT)

    assert Counter(window.calls) == {"dynamodb.GetItem": 1, "secretsmanager.GetSecretValue": 2}
