"""The Graph-shaped server of the local stack (``devstack.graph``) against the contract it follows.

Real parts: the server over HTTPS, tokens of the local authorization server (``devstack.oauth``)
obtained with the client-credentials grant and checked by introspection. The client here is
plain ``urllib``, so every status, header and body is the server's own.
"""

import base64
import json
import secrets
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from devstack.graph import GraphServer
from devstack.oauth import AuthorizationServer
from devstack.stack import MICROSOFT_SCOPE, LocalStack
from devstack.tls import TlsFiles, make_tls_files

TENANT = "contoso.onmicrosoft.com"
BOTH = frozenset({"Mail.ReadWrite", "Mail.Send"})
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}
MB = 1024 * 1024


@dataclass
class Parts:
    tls: TlsFiles
    oauth: AuthorizationServer
    graph: GraphServer


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    tls = make_tls_files(tmp_path_factory.mktemp("graph-tls"))
    with AuthorizationServer(tls) as oauth, GraphServer(tls, oauth.introspector()) as graph:
        yield Parts(tls, oauth, graph)


@pytest.fixture
def graph(parts: Parts) -> Iterator[GraphServer]:
    parts.graph.clear()
    parts.oauth.clear()
    yield parts.graph
    parts.graph.clear()


def call(
    parts: Parts,
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    if not url.startswith("https://"):
        url = parts.graph.endpoint + url
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=sent, method=method)  # noqa: S310
    context = ssl.create_default_context(cafile=str(parts.tls.ca_file))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read())


def token_for(parts: Parts, client_id: str, secret: str, scope: str) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": scope,
    }
    answer = call(
        parts,
        "POST",
        parts.oauth.microsoft_token_url(TENANT),
        body=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 200, answer.body
    return str(answer.json()["access_token"])


def mailbox(parts: Parts, roles: frozenset[str] = BOTH) -> tuple[str, str]:
    """A mailbox and a Graph token of an app allowed to use it: ``(user, token)``."""
    user = f"box-{secrets.token_hex(3)}@contoso.example"
    parts.graph.add_mailbox(user)
    client_id, secret = parts.oauth.add_client(user, {parts.graph.scope, MICROSOFT_SCOPE}, roles)
    return user, token_for(parts, client_id, secret, parts.graph.scope)


def mail(subject: str, *, to: str = "partner@example.org", body: str = "hello\n") -> bytes:
    message = EmailMessage()
    message["From"] = "Orders <orders@partner.example>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{secrets.token_hex(6)}@partner.example>"
    message.set_content(body)
    return message.as_bytes()


def b64(raw: bytes) -> bytes:
    return base64.encodebytes(raw)  # lines of 76 characters, as the page's example


# ----------------------------------------------------------------- tokens and permissions


def test_a_request_without_a_valid_graph_token_is_401(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    inbox = f"/users/{user}/mailFolders/inbox/messages"
    client_id, secret = parts.oauth.add_client(user, {MICROSOFT_SCOPE}, BOTH)
    exchange_token = token_for(parts, client_id, secret, MICROSOFT_SCOPE)

    assert call(parts, "GET", inbox).status == 401
    wrong_audience = call(parts, "GET", inbox, token=exchange_token)
    assert wrong_audience.status == 401
    assert wrong_audience.json()["error"] == {
        "code": "InvalidAuthenticationToken",
        "message": "Access token validation failure. Invalid audience.",
    }
    assert call(parts, "GET", inbox, token=token).status == 200
    parts.oauth.expire_tokens()
    assert call(parts, "GET", inbox, token=token).json()["error"]["code"] == "InvalidAuthenticationToken"


def test_each_request_needs_its_application_permission(parts: Parts, graph: GraphServer) -> None:
    reading, reader = mailbox(parts, frozenset({"Mail.ReadWrite"}))
    sending, sender = mailbox(parts, frozenset({"Mail.Send"}))
    plain = {"Content-Type": "text/plain"}
    raw = mail("Re: LetterShop")

    denied = call(parts, "POST", f"/users/{reading}/sendMail", token=reader, body=b64(raw), headers=plain)
    blind = call(parts, "GET", f"/users/{sending}/mailFolders/inbox/messages", token=sender)

    assert (denied.status, denied.json()["error"]["code"]) == (403, "ErrorAccessDenied")
    assert (blind.status, blind.json()["error"]["code"]) == (403, "ErrorAccessDenied")
    assert call(parts, "GET", f"/users/{reading}/mailFolders/inbox/messages", token=reader).status == 200
    sent = call(parts, "POST", f"/users/{sending}/sendMail", token=sender, body=b64(raw), headers=plain)
    assert sent.status == 202
    assert [mail.mailbox for mail in graph.sent] == [sending]


def test_an_app_may_use_only_the_mailbox_of_its_rbac_scope(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    other, _ = mailbox(parts)
    graph.deliver(other, mail("LetterShop"))

    answer = call(parts, "GET", f"/users/{other}/mailFolders/inbox/messages", token=token)

    assert (answer.status, answer.json()["error"]["code"]) == (403, "ErrorAccessDenied")
    assert call(parts, "GET", f"/users/{user}/mailFolders/inbox/messages", token=token).json()["value"] == []


def test_consent_revoked_takes_effect_with_the_next_token(parts: Parts, graph: GraphServer) -> None:
    user = f"box-{secrets.token_hex(3)}@contoso.example"
    graph.add_mailbox(user)
    client_id, secret = parts.oauth.add_client(user, {graph.scope}, BOTH)
    inbox = f"/users/{user}/mailFolders/inbox/messages"
    before = token_for(parts, client_id, secret, graph.scope)

    parts.oauth.set_roles(client_id, set())
    after = token_for(parts, client_id, secret, graph.scope)

    assert call(parts, "GET", inbox, token=before).status == 200  # an issued token keeps its roles
    assert call(parts, "GET", inbox, token=after).status == 403


# ------------------------------------------------------------------------- listing


def test_the_inbox_is_listed_in_pages_of_top_following_next_link(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    delivered = [
        graph.deliver(user, mail(f"LetterShop {n}"), received=start + timedelta(minutes=n)) for n in range(25)
    ]
    url = f"/users/{user}/mailFolders/inbox/messages?$select=subject,receivedDateTime&$top=10"

    pages = []
    while url:
        answer = call(parts, "GET", url, token=token, headers=IMMUTABLE)
        assert answer.status == 200
        pages.append(answer.json()["value"])
        url = answer.json().get("@odata.nextLink", "")

    assert [len(page) for page in pages] == [10, 10, 5]
    listed = [message for page in pages for message in page]
    assert [m["id"] for m in listed] == delivered[::-1]  # newest first
    assert listed[0] == {
        "id": delivered[-1],
        "subject": "LetterShop 24",
        "receivedDateTime": "2026-12-01T00:24:00Z",
    }
    assert [r.query.get("$skip") for r in graph.requests] == [None, "10", "20"]


def test_select_gives_the_screening_properties_and_refuses_others(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    raw = mail("=?utf-8?q?LetterShop_Auftr=C3=A4ge?=")
    graph.deliver(user, raw)
    select = "id,subject,from,sender,internetMessageId,receivedDateTime"

    [message] = call(
        parts, "GET", f"/users/{user}/mailFolders/inbox/messages?$select={select}", token=token
    ).json()["value"]
    refused = call(parts, "GET", f"/users/{user}/mailFolders/inbox/messages?$select=body", token=token)

    assert set(message) == set(select.split(","))
    assert message["subject"] == "LetterShop Aufträge"
    assert message["from"] == {"emailAddress": {"name": "Orders", "address": "orders@partner.example"}}
    assert message["sender"] == message["from"]
    assert message["internetMessageId"].endswith("@partner.example>")
    assert refused.status == 400


@pytest.mark.parametrize("top", ["0", "1001", "x"])
def test_top_is_one_to_a_thousand(parts: Parts, graph: GraphServer, top: str) -> None:
    user, token = mailbox(parts)

    assert (
        call(parts, "GET", f"/users/{user}/mailFolders/inbox/messages?$top={top}", token=token).status == 400
    )


def test_the_default_page_is_ten_and_oldest_first_can_be_asked_for(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    ids = [graph.deliver(user, mail(f"m{n}"), received=start + timedelta(seconds=n)) for n in range(12)]

    default = call(
        parts, "GET", f"/users/{user}/mailFolders/inbox/messages", token=token, headers=IMMUTABLE
    ).json()
    oldest = call(
        parts,
        "GET",
        f"/users/{user}/mailFolders/inbox/messages?$orderby=receivedDateTime%20asc&$top=3",
        token=token,
        headers=IMMUTABLE,
    ).json()

    assert len(default["value"]) == 10
    assert "@odata.nextLink" in default
    assert [m["id"] for m in oldest["value"]] == ids[:3]


def test_the_inbox_count_is_one_request(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    for n in range(3):
        graph.deliver(user, mail(f"m{n}"))

    answer = call(parts, "GET", f"/users/{user}/mailFolders/inbox", token=token)

    assert answer.json()["totalItemCount"] == 3


# ---------------------------------------------------------------- ids, MIME, deletes


def test_immutable_ids_only_when_asked_and_they_survive_a_move(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    raw = mail("LetterShop")
    immutable = graph.deliver(user, raw)
    inbox = f"/users/{user}/mailFolders/inbox/messages"
    [rest] = [m["id"] for m in call(parts, "GET", inbox, token=token).json()["value"]]

    graph.move(user, immutable, "deleteditems")

    assert rest != immutable
    assert call(parts, "GET", f"/users/{user}/messages/{rest}/$value", token=token).status == 404
    assert call(parts, "GET", f"/users/{user}/messages/{immutable}/$value", token=token).body == raw


def test_value_streams_the_mime_as_delivered(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    raw = mail("LetterShop", body="x" * 70 + "\n") + b"\n" + b"A" * (5 * MB)
    message_id = graph.deliver(user, raw)

    answer = call(parts, "GET", f"/users/{user}/messages/{message_id}/$value", token=token)

    assert answer.status == 200
    assert int(answer.headers["Content-Length"]) == len(raw)
    assert answer.body == raw


def test_delete_moves_to_deleted_items_and_permanent_delete_removes(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    first, second = graph.deliver(user, mail("a")), graph.deliver(user, mail("b"))

    deleted = call(parts, "DELETE", f"/users/{user}/messages/{first}", token=token)
    purged = call(parts, "POST", f"/users/{user}/messages/{second}/permanentDelete", token=token)

    assert (deleted.status, purged.status) == (204, 204)
    assert graph.messages(user) == []
    assert [m.immutable_id for m in graph.messages(user, "deleteditems")] == [first]
    gone = call(parts, "GET", f"/users/{user}/messages/{second}/$value", token=token)
    assert (gone.status, gone.json()["error"]["code"]) == (404, "ErrorItemNotFound")
    assert call(parts, "DELETE", f"/users/{user}/messages/{second}", token=token).status == 404


# -------------------------------------------------------------------------- sending


def test_send_mail_takes_base64_mime_and_saves_it_in_sent_items(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    raw = mail("Re: LetterShop", to="orders@partner.example")

    answer = call(
        parts,
        "POST",
        f"/users/{user}/sendMail",
        token=token,
        body=b64(raw),
        headers={"Content-Type": "text/plain"},
    )

    assert (answer.status, answer.body) == (202, b"")
    [sent] = graph.sent
    assert (sent.mailbox, sent.mime, sent.via, sent.recipients) == (
        user,
        raw,
        "sendMail",
        ["orders@partner.example"],
    )
    assert [m.raw for m in graph.messages(user, "sentitems")] == [raw]


def test_send_mail_refuses_more_than_4_mb_bad_base64_and_json(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    url, plain = f"/users/{user}/sendMail", {"Content-Type": "text/plain"}
    large = mail("Re: LetterShop", body="y" * (3 * MB + MB // 8))

    too_large = call(parts, "POST", url, token=token, body=b64(large), headers=plain)
    bad = call(parts, "POST", url, token=token, body=b"not base64 at all!", headers=plain)
    as_json = call(parts, "POST", url, token=token, body=b"{}", headers={"Content-Type": "application/json"})

    assert len(b64(large)) > 4 * MB
    assert too_large.status == 413
    assert (bad.status, bad.json()["error"]) == (
        400,
        {"code": "ErrorMimeContentInvalidBase64String", "message": "Invalid base64 string for MIME content."},
    )
    assert as_json.status == 415
    assert graph.sent == []


def test_a_large_reply_goes_as_a_draft_with_an_upload_session(parts: Parts, graph: GraphServer) -> None:
    user, token = mailbox(parts)
    plain = {"Content-Type": "text/plain"}
    export = bytes(range(256)) * (22 * 1024)  # 5.5 MiB
    draft = call(
        parts,
        "POST",
        f"/users/{user}/messages",
        token=token,
        body=b64(mail("Re: LetterShop")),
        headers=plain | IMMUTABLE,
    )
    assert draft.status == 201
    draft_id = draft.json()["id"]

    session = call(
        parts,
        "POST",
        f"/users/{user}/messages/{draft_id}/attachments/createUploadSession",
        token=token,
        body=json.dumps(
            {"AttachmentItem": {"attachmentType": "file", "name": "orders_export.csv", "size": len(export)}}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert session.status == 201
    assert session.json()["nextExpectedRanges"] == ["0-"]
    upload = session.json()["uploadUrl"]

    def put(start: int, end: int, *, authorization: bool = False) -> Answer:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {start}-{end}/{len(export)}",
        }
        if authorization:
            headers["Authorization"] = f"Bearer {token}"
        return call(parts, "PUT", upload, body=export[start : end + 1], headers=headers)

    assert put(0, 4 * MB - 1, authorization=True).status == 401
    assert put(MB, 2 * MB - 1).status == 416
    assert put(0, 4 * MB).status == 413
    first = put(0, 4 * MB - 1)
    assert (first.status, first.json()["nextExpectedRanges"]) == (200, [str(4 * MB)])
    last = put(4 * MB, len(export) - 1)
    assert last.status == 201
    assert f"/messages/{draft_id}/attachments/" in last.headers["Location"]

    sent = call(parts, "POST", f"/users/{user}/messages/{draft_id}/send", token=token)

    assert sent.status == 202
    [mail_sent] = graph.sent
    assert mail_sent.via == "draft"
    assert [(a.name, a.content) for a in mail_sent.attachments] == [("orders_export.csv", export)]
    assert graph.messages(user, "drafts") == []


@pytest.mark.parametrize("size", [3 * MB - 1, 150 * MB + 1])
def test_an_upload_session_takes_3_to_150_mb(parts: Parts, graph: GraphServer, size: int) -> None:
    user, token = mailbox(parts)
    draft = call(
        parts,
        "POST",
        f"/users/{user}/messages",
        token=token,
        body=b64(mail("d")),
        headers={"Content-Type": "text/plain"},
    )
    item = {"AttachmentItem": {"attachmentType": "file", "name": "f.csv", "size": size}}

    answer = call(
        parts,
        "POST",
        f"/users/{user}/messages/{draft.json()['id']}/attachments/createUploadSession",
        token=token,
        body=json.dumps(item).encode(),
        headers={"Content-Type": "application/json"},
    )

    assert answer.status == 400


# ------------------------------------------------------------------------ throttling


@pytest.mark.parametrize(("status", "retry_after"), [(429, 3), (503, 2), (504, None)])
def test_injected_throttling_answers_then_lets_requests_through(
    parts: Parts, graph: GraphServer, status: int, retry_after: int | None
) -> None:
    user, token = mailbox(parts)
    graph.fail_next(2, status, retry_after=retry_after)
    inbox = f"/users/{user}/mailFolders/inbox/messages"

    answers = [call(parts, "GET", inbox, token=token) for _ in range(3)]

    assert [a.status for a in answers] == [status, status, 200]
    assert answers[0].headers.get("Retry-After") == (None if retry_after is None else str(retry_after))
    assert [r.status for r in graph.requests] == [status, status, 200]


def test_a_bad_token_is_401_before_any_injected_fault(parts: Parts, graph: GraphServer) -> None:
    user, _ = mailbox(parts)
    graph.fail_next(1)

    assert call(parts, "GET", f"/users/{user}/mailFolders/inbox/messages", token="forged").status == 401
    assert graph.requests[-1].status == 401


# ------------------------------------------------------------------------- the stack


def test_the_stack_gives_a_graph_mailbox_with_an_app_for_it_alone(stack: LocalStack, tmp_path: Path) -> None:
    box = stack.new_graph_mailbox()
    stack.graph.deliver(box.user, mail("LetterShop"))
    parts = Parts(stack.tls, stack.oauth, stack.graph)  # type: ignore[arg-type]
    token = token_for(parts, box.client_id, box.client_secret, stack.graph.scope)

    answer = call(parts, "GET", f"/users/{box.user}/mailFolders/inbox", token=token)

    assert answer.json()["totalItemCount"] == 1
    stack.reset()
    assert stack.graph.requests == []
