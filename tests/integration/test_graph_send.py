"""Replies through Graph (``adapters.graph_send``) against the Graph-shaped server of the local stack.

The stored reply is the real one ``domain.reply`` builds (To = the recorded recipient, our
headers, the export attached); what the server sent is compared with it part by part.
"""

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from adapters.graph_send import GraphReplySender
from devstack.graph import GraphServer
from domain.errors import ChannelFailure, ReplyTooLarge, UndeliverableReply
from tests.integration import graph_parts
from tests.integration.graph_parts import Box, Parts, new_box

parts = graph_parts.parts  # the module's fixtures
graph = graph_parts.graph

MB = 1024 * 1024
PARTNER = "orders@partner.example"


def reply(
    *, to: str = PARTNER, exports: tuple[tuple[str, bytes], ...] = (("orders_export.csv", b"a;b\r\n"),)
) -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = "lettershop@contoso.example"
    message["To"] = to
    message["Subject"] = "Re: LetterShop import"
    message["Message-ID"] = "<1.lettershop-reply@contoso.example>"
    message["In-Reply-To"] = "<partner-1@partner.example>"
    message["Auto-Submitted"] = "auto-replied"
    message.set_content("1 file processed.\n")
    for name, content in exports:
        message.add_attachment(content, maintype="text", subtype="csv", filename=name)
    return message.as_bytes()


def export(size: int) -> bytes:
    row = b"R-1001;ACCEPTED;LA123456785CH;A-POST;250;2.30;\r\n"
    return (row * (size // len(row) + 1))[:size]


def sender(box: Box, parts: Parts, **changes: object) -> GraphReplySender:
    return GraphReplySender(box.account(parts), **changes)  # type: ignore[arg-type]


def test_a_reply_up_to_4_mb_is_one_send_mail_of_its_exact_bytes(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)
    data = reply()
    graph_sender = sender(box, parts)
    graph_sender.prepare()
    assert graph.requests == []  # getting ready costs nothing

    graph_sender.send(data, sender="lettershop@contoso.example", recipient=PARTNER)

    [sent] = graph.sent
    assert (sent.via, sent.mime, sent.recipients, sent.mailbox) == ("sendMail", data, [PARTNER], box.user)
    assert [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in graph.requests] == [
        ("POST", "sendMail", 202)
    ]
    assert [m.raw for m in graph.messages(box.user, "sentitems")] == [data]


def test_a_larger_reply_is_a_draft_with_its_large_exports_uploaded_then_sent(
    parts: Parts, graph: GraphServer
) -> None:
    box = new_box(parts)
    big, small = export(9 * MB + 12345), export(200 * 1024)
    data = reply(exports=(("orders_export.csv", big), ("returns_export.csv", small)))

    sender(box, parts).send(data, sender="lettershop@contoso.example", recipient=PARTNER)

    [sent] = graph.sent
    assert sent.via == "draft"
    assert [(a.name, a.content_type, a.content) for a in sent.attachments] == [
        ("orders_export.csv", "text/csv", big)
    ]
    draft = BytesParser(policy=policy.default).parsebytes(sent.mime)
    original = BytesParser(policy=policy.default).parsebytes(data)
    for header in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "Auto-Submitted"):
        assert draft[header] == original[header]
    assert [(p.get_filename(), p.get_payload(decode=True)) for p in draft.iter_attachments()] == [
        ("returns_export.csv", small)
    ]
    assert sent.recipients == [PARTNER]
    puts = [r for r in graph.requests if r.method == "PUT"]
    assert [r.status for r in puts] == [200, 200, 201]  # 4 + 4 + 1.x MB, in order
    assert graph.messages(box.user, "drafts") == []


def test_only_the_recorded_recipient_is_ever_sent_to(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)

    with pytest.raises(UndeliverableReply, match="not to the recorded recipient"):
        sender(box, parts).send(
            reply(to="other@elsewhere.example"), sender="x@contoso.example", recipient=PARTNER
        )

    assert graph.sent == []
    assert graph.requests == []


def test_a_recipient_graph_refuses_is_this_messages_failure(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)
    odd = "no-domain"

    with pytest.raises(UndeliverableReply, match="refused the recipient"):
        sender(box, parts).send(reply(to=odd), sender="x@contoso.example", recipient=odd)


def test_a_reply_past_the_tenants_size_limit_is_too_large(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)
    graph.message_size_limit = 8 * MB
    data = reply(exports=(("orders_export.csv", export(9 * MB)),))

    with pytest.raises(ReplyTooLarge):
        sender(box, parts).send(data, sender="x@contoso.example", recipient=PARTNER)

    assert graph.sent == []


def test_an_export_over_150_mb_is_too_large_before_anything_is_sent(
    parts: Parts, graph: GraphServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = new_box(parts)
    monkeypatch.setattr("adapters.graph_send.UPLOAD_MAX", 5 * MB)  # 150 MB, made small to test it cheaply
    data = reply(exports=(("orders_export.csv", export(5 * MB + 1)),))

    with pytest.raises(ReplyTooLarge, match="more than an upload session takes"):
        sender(box, parts).send(data, sender="x@contoso.example", recipient=PARTNER)

    assert graph.requests == []


def test_without_mail_send_the_channel_fails_saying_so(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts, frozenset({"Mail.ReadWrite"}))

    with pytest.raises(ChannelFailure, match=r"grant the application permission Mail\.Send") as failed:
        sender(box, parts).send(reply(), sender="x@contoso.example", recipient=PARTNER)

    assert failed.value.setting.startswith("graph_mailbox")
    assert graph.sent == []


def test_save_to_sent_items_false_is_not_built_and_sends_nothing(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)

    with pytest.raises(ChannelFailure, match="save_to_sent_items false") as failed:
        sender(box, parts, save_to_sent_items=False).send(
            reply(), sender="x@contoso.example", recipient=PARTNER
        )

    assert failed.value.setting == "save_to_sent_items"
    assert graph.requests == []


def test_throttled_send_waits_then_sends_once(parts: Parts, graph: GraphServer) -> None:
    box = new_box(parts)
    graph.fail_next(1, 429, retry_after=1)

    sender(box, parts).send(reply(), sender="x@contoso.example", recipient=PARTNER)

    assert len(graph.sent) == 1
    assert box.waits == [1.0]


@pytest.mark.parametrize(
    ("roles", "ok"), [(frozenset({"Mail.Send"}), True), (frozenset({"Mail.ReadWrite"}), False)]
)
def test_the_send_probe_sends_nothing(
    parts: Parts, graph: GraphServer, roles: frozenset[str], ok: bool
) -> None:
    box = new_box(parts, roles)

    if ok:
        assert "the app may send as" in sender(box, parts).probe()
    else:
        with pytest.raises(ChannelFailure, match=r"Mail\.Send"):
            sender(box, parts).probe()

    assert graph.sent == []
    assert [r.status for r in graph.requests] == [400 if ok else 403]
