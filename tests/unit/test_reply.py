"""Replies (DESIGN §6): addressing, threading, loop protection, no header injection, safe names."""

from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes, policy

from domain.reply import FileReport, ReplyContext, reply_with_error, reply_with_exports, safe_filename
from domain.shipments import ProcessedFile

CONTEXT = ReplyContext(
    sender_address="lettershop@operator.example",
    recipient="orders@partner.example",
    subject="LetterShop import",
    message_id="<abc@partner.example>",
    references="<older@partner.example> <abc@partner.example>",
    reply_message_id="<reply-1@operator.example>",
    date=datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
)

EXPORT = ProcessedFile(
    import_name="orders.csv",
    export_name="orders_export.csv",
    export_bytes=b"reference;status\r\nR-1;ACCEPTED\r\n",
    accepted=1,
    rejected=0,
    total_postage_chf=Decimal("1.20"),
)


def reparsed(raw: bytes):  # type: ignore[no-untyped-def]
    return message_from_bytes(raw, policy=policy.default)


def test_export_reply_is_addressed_threaded_and_marked_automatic() -> None:
    message = reparsed(reply_with_exports(CONTEXT, [FileReport("orders.csv", processed=EXPORT)]).as_bytes())

    assert message["From"] == "lettershop@operator.example"
    assert message["To"] == "orders@partner.example"
    assert message["Subject"] == "Re: LetterShop import"
    assert message["In-Reply-To"] == "<abc@partner.example>"
    assert message["References"] == "<older@partner.example> <abc@partner.example>"
    assert message["Auto-Submitted"] == "auto-replied"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "orders_export.csv"
    assert attachment.get_content().replace("\r\n", "\n") == "reference;status\nR-1;ACCEPTED\n"
    assert "orders.csv" in message.get_body().get_content()


def test_error_reply_explains_each_file() -> None:
    reports = [FileReport("a.csv", error="a.csv: missing required columns: weight_g")]

    message = reparsed(
        reply_with_error(CONTEXT, "None of the import files could be processed.", reports).as_bytes()
    )

    body = message.get_body().get_content()
    assert "could not be processed" in body
    assert "missing required columns: weight_g" in body
    assert list(message.iter_attachments()) == []


def test_subject_with_line_breaks_cannot_inject_headers() -> None:
    context = ReplyContext(**{**CONTEXT.__dict__, "subject": "Hi\r\nBcc: victim@evil.example"})

    raw = reply_with_error(context, "x").as_bytes()

    assert b"\r\nBcc:" not in raw
    assert reparsed(raw)["Bcc"] is None


def test_existing_re_prefix_is_not_doubled() -> None:
    context = ReplyContext(**{**CONTEXT.__dict__, "subject": "RE: LetterShop import"})

    assert reply_with_error(context, "x")["Subject"] == "RE: LetterShop import"


def test_safe_filename_strips_folders_and_control_characters() -> None:
    assert safe_filename("../../etc/passwd_export.csv") == "passwd_export.csv"
    assert safe_filename("C:\\temp\\a b.csv") == "a b.csv"
    assert safe_filename("bad\r\nname.csv") == "bad name.csv"
    assert safe_filename("...") == "export.csv"
