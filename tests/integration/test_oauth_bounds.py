"""The OAuth token request is bounded in time and size (issue 17, item 8), against a hostile endpoint.

A real HTTPS server on 127.0.0.1 (``devstack.hostile_http``, the stack's certificate) drips its
answer a byte at a time or floods it; the poll must end within the deadline (not per read) and read
at most the cap of the answer.
"""

import hashlib
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adapters import oauth
from adapters.token_http import CHUNK_BYTES, MAX_ANSWER_BYTES, BoundedTransport
from devstack import aws
from devstack.hostile_http import HUGE, Behaviour, HostileEndpoint
from devstack.invoke import invoke_poll, store_oauth_channel
from devstack.samples import partner_mail
from devstack.stack import LocalStack, OAuthMailbox
from domain.errors import ChannelFailure, TransientError
from handlers.poll import PollFailed
from tests.integration.conftest import JsonLogs

EVENT = {"channel_id": "acme"}
DEADLINE = 2.0
MARGIN = 4.0  # the poll's own start (imports, secrets, moto) on a busy machine; a drip would go on 60 s
BUFFERS = 16 * 1024 * 1024  # what the kernel's socket buffers may take beyond what the client read


@pytest.fixture
def hostile(stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[HostileEndpoint]:
    assert stack.tls is not None
    with HostileEndpoint(stack.tls, request.param) as endpoint:
        yield endpoint


def finished(endpoint: HostileEndpoint) -> list[int]:
    """The body bytes per connection, once the endpoint noticed the client went away."""
    deadline = time.monotonic() + 10
    while len(endpoint.sent) < endpoint.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    return endpoint.sent


def ledger_entry(stack: LocalStack, raw: bytes) -> dict[str, Any]:
    pk = f"ledger#acme#{hashlib.sha256(raw).hexdigest()}"
    answer = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": pk}}, ConsistentRead=True
    )
    return dict(answer.get("Item", {}))


def poll_against(
    stack: LocalStack, hostile: HostileEndpoint, monkeypatch: pytest.MonkeyPatch
) -> tuple[bytes, OAuthMailbox]:
    monkeypatch.setattr(oauth, "TIMEOUT_SECONDS", DEADLINE)
    box = stack.new_oauth_mailbox()
    store_oauth_channel(stack, box, oauth_token_url=hostile.url)
    raw = partner_mail()
    stack.oauth_dovecot.deliver(box.user, raw)
    return raw, box


def failure_of(json_logs: JsonLogs) -> dict[str, Any]:
    [line] = [line for line in json_logs.lines() if line["message"] == "poll ended in error"]
    return line


@pytest.mark.parametrize("hostile", ["drip_headers", "drip_body"], indirect=True)
def test_a_dripping_token_endpoint_ends_the_poll_at_the_deadline_as_transient(
    stack: LocalStack, hostile: HostileEndpoint, json_logs: JsonLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, box = poll_against(stack, hostile, monkeypatch)

    started = time.monotonic()
    with pytest.raises(PollFailed, match=re.escape(f"did not answer within {DEADLINE:g} s")):
        invoke_poll(EVENT)
    elapsed = time.monotonic() - started

    assert elapsed < DEADLINE + MARGIN
    assert hostile.requests == 1
    assert not failure_of(json_logs).get("setting")  # transient: nothing to fix
    assert stack.oauth_dovecot.mailbox(box.user) == [raw]
    assert ledger_entry(stack, raw) == {}  # no attempt charged


@pytest.mark.parametrize("hostile", ["huge_declared", "huge_endless"], indirect=True)
def test_a_huge_token_answer_is_cut_at_the_cap_and_names_the_token_url(
    stack: LocalStack, hostile: HostileEndpoint, json_logs: JsonLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, box = poll_against(stack, hostile, monkeypatch)

    with pytest.raises(PollFailed, match="a token answer has at most 65536 bytes"):
        invoke_poll(EVENT)

    assert failure_of(json_logs)["setting"] == "oauth_token_url"
    [taken] = finished(hostile)
    assert taken < BUFFERS < HUGE  # the client stopped reading long before the end
    assert stack.oauth_dovecot.mailbox(box.user) == [raw]
    assert ledger_entry(stack, raw) == {}


@pytest.mark.parametrize("hostile", ["not_json"], indirect=True)
def test_an_answer_that_is_not_json_names_the_token_url(
    stack: LocalStack, hostile: HostileEndpoint, json_logs: JsonLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, box = poll_against(stack, hostile, monkeypatch)

    with pytest.raises(PollFailed, match="not a JSON"):
        invoke_poll(EVENT)

    assert failure_of(json_logs)["setting"] == "oauth_token_url"
    assert stack.oauth_dovecot.mailbox(box.user) == [raw]


BOUNDS: dict[Behaviour, type[Exception]] = {
    "huge_endless": ChannelFailure,
    "huge_declared": ChannelFailure,
    "drip_body": TransientError,
}


@pytest.mark.parametrize("hostile", sorted(BOUNDS), indirect=True)
def test_the_transport_reads_at_most_the_cap_and_stops_at_the_deadline(
    stack: LocalStack, hostile: HostileEndpoint
) -> None:
    transport = BoundedTransport("token endpoint", DEADLINE)
    started = time.monotonic()
    with requests.Session() as session:
        session.mount("https://", transport)
        with pytest.raises(BOUNDS[hostile.behaviour]):
            session.post(hostile.url, data={"grant_type": "client_credentials"})

    assert time.monotonic() - started < DEADLINE + MARGIN
    if hostile.behaviour == "huge_declared":
        assert transport.bytes_read == 0  # refused on its Content-Length, nothing read
    elif hostile.behaviour == "huge_endless":
        assert MAX_ANSWER_BYTES < transport.bytes_read <= MAX_ANSWER_BYTES + CHUNK_BYTES
    else:
        assert transport.bytes_read < CHUNK_BYTES  # a byte every 0.1 s: no chunk complete
