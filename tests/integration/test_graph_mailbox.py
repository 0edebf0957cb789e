"""The Graph mailbox adapter (``adapters.graph``) against the Graph-shaped server of the local stack.

Real parts: ``devstack.graph`` over HTTPS and tokens of ``devstack.oauth`` (client credentials,
checked by introspection). The token source here asks the authorization server directly (the
channel's ``MailboxTokens``, which reads the client secret from Secrets Manager, is tested in
``test_oauth.py``); a poll runs with the real adapter and the recording fakes of the other ports.
"""

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from adapters.graph import ACCESS_SETTINGS, GraphMailbox, MessageGone
from devstack.graph import GraphServer
from devstack.proxy import TcpProxy
from devstack.samples import partner_mail
from devstack.stack import MICROSOFT_SCOPE
from domain.errors import ChannelFailure, ConnectionLost, TransientError
from service.poll import poll_mailbox
from service.ports import MessageRef
from tests.integration import graph_parts
from tests.integration.graph_parts import Box, Parts, Tokens, new_box
from tests.unit.fakes import World, make_channel

MB = 1024 * 1024
parts = graph_parts.parts  # the module's fixtures
graph = graph_parts.graph


def read(mailbox: GraphMailbox) -> list[MessageRef]:
    with mailbox.session() as session:
        return session.messages()


# ---------------------------------------------------------------------------- reading


def test_the_listing_gives_immutable_ids_and_subjects_in_pages(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    ids = [
        graph.deliver(
            box.user, partner_mail(subject=f"LetterShop {n}"), received=start + timedelta(minutes=n)
        )
        for n in range(25)
    ]

    with box.mailbox(parts, page_size=10).session() as session:
        refs = session.messages()

    assert [ref.uid for ref in refs] == ids  # oldest first, as a POP3 listing
    assert [ref.number for ref in refs] == list(range(1, 26))
    assert (refs[-1].subject, refs[-1].size) == ("LetterShop 24", 0)
    assert [r.query.get("$orderby") for r in graph.requests] == ["receivedDateTime desc"] * 3
    assert [r.query.get("$select") for r in graph.requests] == ["id,subject"] * 3
    assert [r.query.get("$skip") for r in graph.requests] == [None, "10", "20"]


def test_the_listing_stops_at_its_page_budget_leaving_out_the_oldest(
    parts: Parts, graph: GraphServer
) -> None:
    box = new_box(parts)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    ids = [
        graph.deliver(box.user, partner_mail(subject=f"m{n}"), received=start + timedelta(minutes=n))
        for n in range(25)
    ]

    with box.mailbox(parts, page_size=10, max_pages=2).session() as session:
        assert [ref.uid for ref in session.messages()] == ids[5:]
    assert len(graph.requests) == 2


def test_headers_are_the_header_block_and_retrieve_streams_the_whole_mime(
    parts: Parts, graph: GraphServer
) -> None:
    box = new_box(parts)
    raw = partner_mail(attachments=[("orders.csv", b"reference;name\r\n" + b"x" * (3 * MB))])
    graph.deliver(box.user, raw)
    sink = io.BytesIO()

    with box.mailbox(parts).session() as session:
        [ref] = session.messages()
        headers = session.headers(ref.number)
        session.retrieve(ref.number, sink)

    assert headers == raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert sink.getvalue() == raw
    assert [r.status for r in graph.requests] == [200, 200, 200]
    assert box.tokens.fetched == 1  # one token for the session's requests


def test_delete_moves_to_deleted_items_at_once(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)
    first = graph.deliver(box.user, partner_mail(subject="a"))
    second = graph.deliver(box.user, partner_mail(subject="b"))

    with box.mailbox(parts).session() as session:
        refs = {ref.uid: ref.number for ref in session.messages()}
        session.delete(refs[first])
        session.delete(refs[second])

    assert graph.messages(box.user) == []
    assert {m.immutable_id for m in graph.messages(box.user, "deleteditems")} == {first, second}
    assert [(r.method, r.status) for r in graph.requests if r.method == "DELETE"] == [("DELETE", 204)] * 2


def test_a_message_deleted_by_another_client_is_gone(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)
    message_id = graph.deliver(box.user, partner_mail())

    with box.mailbox(parts).session() as session:
        [ref] = session.messages()
        graph.remove(box.user, message_id)  # another client deleted it for good
        with pytest.raises(MessageGone, match="no longer in mailbox"):
            session.retrieve(ref.number, io.BytesIO())
        session.delete(ref.number)  # nothing to delete: done


# ---------------------------------------------------------------------- whose failure


def test_a_token_graph_does_not_take_is_renewed_once_then_a_channel_failure(
    parts: Parts, graph: GraphServer
) -> None:
    box = new_box(parts)
    exchange = Tokens(parts, box.tokens.client_id, box.tokens.secret, MICROSOFT_SCOPE)
    box.tokens.preset = exchange.token().value  # a cached token for the wrong audience

    with box.mailbox(parts).session() as session:
        assert session.messages() == []
    assert len(box.tokens.forgotten) == 1
    assert [r.status for r in graph.requests] == [401, 200]

    wrong = Box(box.user, exchange)
    wrong.tokens._current = None  # a fresh token, still for Exchange
    with (
        pytest.raises(ChannelFailure, match="refused the app's token") as failed,
        wrong.mailbox(parts).session() as session,
    ):
        session.messages()
    assert failed.value.setting.startswith("oauth_tenant, oauth_client_id, oauth_secret")


@pytest.mark.parametrize("roles", [frozenset({"Mail.Send"}), frozenset()])
def test_a_missing_permission_is_a_channel_failure_saying_what_to_grant(
    parts: Parts, graph: GraphServer, roles: frozenset[str]
) -> None:
    box = new_box(parts, roles)
    graph.deliver(box.user, partner_mail())

    with pytest.raises(ChannelFailure, match=r"grant the application permission Mail\.ReadWrite") as failed:
        read(box.mailbox(parts))

    assert failed.value.setting == ACCESS_SETTINGS
    assert [m.immutable_id for m in graph.messages(box.user)] != []  # untouched


def test_a_mailbox_outside_the_rbac_scope_or_unknown_is_a_channel_failure(
    parts: Parts, graph: GraphServer
) -> None:
    box = new_box(parts)
    other = new_box(parts)
    unknown = new_box(parts, add=False)

    with pytest.raises(ChannelFailure, match="denied the app access"):
        read(replace_mailbox(box, other.user).mailbox(parts))
    with pytest.raises(ChannelFailure, match="does not know mailbox") as failed:
        read(unknown.mailbox(parts))
    assert failed.value.setting == "graph_mailbox"


def replace_mailbox(box: Box, user: str) -> Box:
    return Box(user, box.tokens, box.waits)


def test_throttling_waits_as_retry_after_asks_within_the_budget(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)
    graph.deliver(box.user, partner_mail())
    graph.fail_next(2, 429, retry_after=2)

    with box.mailbox(parts).session() as session:
        assert len(session.messages()) == 1

    assert box.waits == [2.0, 2.0]
    assert [r.status for r in graph.requests] == [429, 429, 200]


@pytest.mark.parametrize(("status", "retry_after"), [(429, 60), (503, 30)])
def test_a_wait_past_the_budget_is_transient_for_the_next_poll(
    parts: Parts, graph: GraphServer, status: int, retry_after: int
) -> None:
    box = new_box(parts)
    graph.fail_next(1, status, retry_after=retry_after)

    with pytest.raises(TransientError, match=f"answered {status}"):
        read(box.mailbox(parts))
    assert box.waits == []


def test_the_inbox_count_for_channel_check(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)
    for n in range(3):
        graph.deliver(box.user, partner_mail(subject=f"m{n}"))

    assert box.mailbox(parts).inbox_count() == 3


# ------------------------------------------------------------------- a poll through it


def test_an_unchanged_shared_mailbox_of_1000_foreign_messages_costs_one_list_request(
    parts: Parts, graph: GraphServer
) -> None:
    box = new_box(parts)
    for n in range(1000):
        graph.deliver(box.user, partner_mail(subject=f"Newsletter {n}"))
    world = World()
    ports = replace(world.ports(), mailbox=box.mailbox(parts))
    channel = make_channel()

    def poll() -> dict[str, object]:
        return poll_mailbox(
            channel,
            ports,
            now=lambda: datetime(2026, 12, 8, tzinfo=UTC),
            time_left=lambda: 1000.0,
            lease_seconds=360,
        ).as_dict()

    first = poll()
    after_first = len(graph.requests)
    again = poll()
    after_again = len(graph.requests)
    graph.deliver(box.user, partner_mail())
    answered = poll()

    assert (first["seen"], first["recognized"], after_first) == (1000, 0, 1)  # screened by subject
    assert (again["seen"], after_again) == (0, 2)
    assert (answered["processed"], answered["deleted"]) == (1, 1)
    # 1001 messages are two pages; then the download (the listed subject screened it: its headers
    # come with it) and the deletion
    assert [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in graph.requests[after_again:]][:3] == [
        ("GET", "messages", 200),
        ("GET", "messages", 200),
        ("GET", "$value", 200),
    ]
    assert [(r.method, r.status) for r in graph.requests[after_again + 3 :]] == [("DELETE", 204)]
    assert len(graph.messages(box.user)) == 1000
    [reply] = world.replies.sent
    assert reply.recipient == "orders@partner.example"


def test_a_download_that_breaks_off_is_a_lost_connection_as_a_broken_retr(
    parts: Parts, graph: GraphServer
) -> None:
    box = new_box(parts)
    raw = partner_mail(attachments=[("orders.csv", b"reference;name\r\n" + b"y" * (2 * MB))])
    graph.deliver(box.user, raw)
    with TcpProxy(graph.port) as proxy:
        mailbox = box.mailbox(parts, endpoint=f"https://{proxy.host}:{proxy.port}/v1.0")
        with mailbox.session() as session:
            [ref] = session.messages()
            proxy.cut_after(500_000)
            with pytest.raises(ConnectionLost, match="download of the message broke off"):
                session.retrieve(ref.number, io.BytesIO())
            proxy.reset()
            sink = io.BytesIO()
            session.retrieve(ref.number, sink)

    assert sink.getvalue() == raw


def test_a_listing_that_breaks_off_is_transient(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)
    for n in range(300):
        graph.deliver(box.user, partner_mail(subject=f"Newsletter {n}"))
    with TcpProxy(graph.port) as proxy:
        proxy.cut_after(8_000)  # past the status line and headers, inside the JSON
        mailbox = box.mailbox(parts, endpoint=f"https://{proxy.host}:{proxy.port}/v1.0")
        with pytest.raises(TransientError, match="broke off"):
            read(mailbox)
