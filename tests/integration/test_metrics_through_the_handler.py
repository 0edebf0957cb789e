"""Alarmed metrics the other integration tests make only an adapter emit, made through the handler.

The alarm check (test_alarms_watch_emitted.py) counts only the EMF a handler printed, as Lambda
would ship it; these tests make the poll handler emit what its alarm watches.
"""

import json
from typing import Any

import pytest

from adapters.serials import WARN_FROM
from devstack import aws
from devstack.invoke import invoke_poll, load_event, store_channel
from devstack.samples import partner_mail
from devstack.stack import LocalStack

pytestmark = pytest.mark.integration

EVENT = load_event("poll-channel.json", channel_id="acme")


def emf_documents(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]


def test_a_poll_whose_import_reaches_ninety_percent_of_the_serial_range_emits_serial_range_low(
    stack: LocalStack, mailbox: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the shared S10 counter one serial short of the 90 % mark, and a partner's import file
    store_channel(stack, mailbox)
    aws.client("dynamodb", stack.endpoint_url).put_item(
        TableName=stack.names.state_table,
        Item={"pk": {"S": "counter#s10"}, "value": {"N": str(WARN_FROM - 1)}},
    )
    stack.dovecot.deliver(mailbox[0], partner_mail())
    capsys.readouterr()

    result = invoke_poll(EVENT)

    # Then the poll answers, and emits SerialRangeLow for the stack (no channel) beside its own metrics
    assert (result["status"], result["processed"]) == ("ok", 1)
    [range_low] = [doc for doc in emf_documents(capsys) if "SerialRangeLow" in doc]
    [directive] = range_low["_aws"]["CloudWatchMetrics"]
    assert (directive["Namespace"], directive["Dimensions"]) == ("LetterShop", [["service"]])
    assert (range_low["service"], range_low["SerialRangeLow"]) == ("lettershop-email-channel", [1.0])
