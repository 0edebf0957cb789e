"""A POP3 server without the optional commands the poll relies on (issue 17, item 10).

``UIDL`` and ``TOP`` are optional in RFC 1939, ``CAPA`` in RFC 2449. Dovecot offers all three, so a
filter in front of it (``devstack.pop3_filter``) answers ``-ERR`` for the ones a test takes away, or
a ``CAPA`` that lists less. Lacking ``UIDL`` or ``TOP`` stops the poll with a channel failure naming
``pop3_host``, and no message is charged; lacking only ``CAPA`` changes nothing (``STLS`` included).
"""

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from devstack import aws
from devstack.invoke import invoke_poll, store_channel
from devstack.pop3_filter import Pop3Filter
from devstack.samples import partner_mail
from devstack.stack import LocalStack
from handlers.poll import PollFailed
from tests.integration.conftest import JsonLogs

EVENT = {"channel_id": "acme"}
Filter = Callable[..., Pop3Filter]


@pytest.fixture
def pop3_filter(stack: LocalStack) -> Iterator[Filter]:
    """Start a filter in front of Dovecot's plain POP3 port; every one is stopped after the test."""
    started: list[Pop3Filter] = []

    def start(**rules: Any) -> Pop3Filter:
        server = Pop3Filter(stack.dovecot.pop3_port, **rules)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def channel_behind(
    stack: LocalStack, mailbox: tuple[str, str], server: Pop3Filter, security: str = "none"
) -> None:
    store_channel(
        stack, mailbox, pop3_security=security, pop3_host=server.host, pop3_port=server.port, max_attempts=1
    )


def ledger(stack: LocalStack, raw: bytes) -> dict[str, Any]:
    pk = f"ledger#acme#{hashlib.sha256(raw).hexdigest()}"
    answer = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": pk}}, ConsistentRead=True
    )
    return dict(answer.get("Item", {}))


def failures(json_logs: JsonLogs) -> list[dict[str, Any]]:
    return [line for line in json_logs.lines() if line["message"] == "poll ended in error"]


CAPA_WITHOUT = {"UIDL": ["USER", "TOP", "PIPELINING"], "TOP": ["USER", "UIDL", "PIPELINING"]}


CASES = [(command, capa) for command in ("UIDL", "TOP") for capa in ("none", "lists less")]


@pytest.mark.parametrize("case", CASES, ids=[f"{command}-capa {capa}" for command, capa in CASES])
def test_a_server_without_uidl_or_top_stops_the_poll_naming_it_and_charges_no_message(
    stack: LocalStack,
    mailbox: tuple[str, str],
    pop3_filter: Filter,
    json_logs: JsonLogs,
    case: tuple[str, str],
) -> None:
    lacking, capa = case
    if capa == "none":
        server = pop3_filter(refuse=frozenset({lacking, "CAPA"}))
    else:
        server = pop3_filter(refuse=frozenset({lacking}), capabilities=CAPA_WITHOUT[lacking])
    channel_behind(stack, mailbox, server)
    raw, other = partner_mail(), partner_mail(subject="LetterShop orders, second batch")
    stack.dovecot.deliver(mailbox[0], raw)
    stack.dovecot.deliver(mailbox[0], other)

    for _ in range(2):  # more than max_attempts: none is charged
        with pytest.raises(PollFailed, match=f"does not offer {lacking}"):
            invoke_poll(EVENT)

    assert [(line["result"]["status"], line["setting"]) for line in failures(json_logs)] == [
        ("error", "pop3_host"),
        ("error", "pop3_host"),
    ]
    reason = "it does not answer CAPA" if capa == "none" else "its CAPA does not list it"
    assert reason in failures(json_logs)[0]["result"]["error"]
    assert stack.dovecot.mailbox(mailbox[0]) == [raw, other]
    assert (ledger(stack, raw), ledger(stack, other)) == ({}, {})
    assert stack.smtp.received == []
    assert "RETR" not in server.commands


def test_top_refused_for_one_message_by_a_server_that_offers_it_defers_only_that_message(
    stack: LocalStack, mailbox: tuple[str, str], pop3_filter: Filter
) -> None:
    server = pop3_filter(refuse=frozenset({"TOP"}), capabilities=["USER", "TOP", "UIDL"])
    channel_behind(stack, mailbox, server)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)

    result = invoke_poll(EVENT)  # the server says it has TOP: the refusal is about this message

    assert (result["status"], result["recognized"], result["deleted"]) == ("ok", 0, 0)
    assert stack.dovecot.mailbox(mailbox[0]) == [raw]


def test_top_refused_for_one_message_by_a_server_without_capa_defers_only_that_message(
    stack: LocalStack, mailbox: tuple[str, str], pop3_filter: Filter
) -> None:
    server = pop3_filter(refuse=frozenset({"CAPA", "TOP 1"}))
    channel_behind(stack, mailbox, server)
    first, second = partner_mail(), partner_mail(subject="LetterShop orders, second batch")
    stack.dovecot.deliver(mailbox[0], first)
    stack.dovecot.deliver(mailbox[0], second)

    result = invoke_poll(EVENT)  # TOP of message 2 works: only message 1's headers were refused

    assert (result["status"], result["processed"], result["deleted"]) == ("ok", 1, 1)
    assert stack.dovecot.mailbox(mailbox[0]) == [first]
    assert ledger(stack, first) == {}


@pytest.mark.parametrize("security", ["none", "starttls"])
def test_a_server_without_capa_is_polled_as_any_other_stls_included(
    stack: LocalStack, mailbox: tuple[str, str], pop3_filter: Filter, security: str
) -> None:
    server = pop3_filter(refuse=frozenset({"CAPA"}))
    channel_behind(stack, mailbox, server, security)
    stack.dovecot.deliver(mailbox[0], partner_mail())

    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"], result["deleted"]) == ("ok", 1, 1)
    assert stack.dovecot.mailbox(mailbox[0]) == []
    if security == "starttls":
        assert server.commands[:2] == ["CAPA", "STLS"]  # asked, refused, STLS tried all the same
    assert len(stack.smtp.wait_for(1)) == 1


def test_channel_check_says_which_optional_commands_the_server_offers(
    stack: LocalStack, mailbox: tuple[str, str], pop3_filter: Filter
) -> None:
    runner = CliRunner()
    env = {"POWERTOOLS_METRICS_DISABLED": "true"}
    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], partner_mail())

    offered = runner.invoke(app, ["channel", "check", "acme"], env=env)

    assert offered.exit_code == 0, offered.output
    assert "1 message(s) waiting; optional commands: UIDL yes, TOP yes, CAPA: " in offered.stdout

    server = pop3_filter(refuse=frozenset({"UIDL", "TOP", "CAPA"}))
    channel_behind(stack, mailbox, server)

    lacking = runner.invoke(app, ["channel", "check", "acme"], env=env)

    assert lacking.exit_code == 1, lacking.output
    assert "FAIL POP3: logged in as" in lacking.stdout
    assert "optional commands: UIDL no, TOP no, CAPA not answered" in lacking.stdout
    assert "the server does not offer UIDL and TOP" in lacking.stdout
    assert "fix: the poll needs UIDL and TOP" in lacking.stdout
    assert len(stack.dovecot.mailbox(mailbox[0])) == 1
