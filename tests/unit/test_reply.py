"""Replies (DESIGN §6): addressing, threading, loop protection, no header injection, safe names."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes, policy

from domain.reply import FileReport, ReplyContext, reply_with_error, reply_with_exports, safe_filename
from domain.shipments import ProcessedFile
from domain.shipments.partner_text import FORMULA_STARTS

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


def test_safe_filename_keeps_the_extension_when_it_cuts_at_120_characters() -> None:
    name = "Bestellungen " + "x" * 200 + "_export.csv"

    cut = safe_filename(name)

    assert cut == "Bestellungen " + "x" * 103 + ".csv"  # 120 characters
    assert safe_filename(cut) == cut


def test_safe_filename_keeps_long_names_that_differ_beyond_the_cut_apart() -> None:
    # Given three export names alike in their first 150 characters, one differing only in case
    first, second = "a" * 150 + "_one_export.csv", "a" * 150 + "_two_export.csv"
    taken: set[str] = set()

    names = [safe_filename(name, taken) for name in (first, second, first.upper())]

    assert names == ["a" * 116 + ".csv", "a" * 112 + " (2).csv", "A" * 112 + " (3).CSV"]
    assert [safe_filename(name, set()) for name in names] == names  # safe names come back unchanged


def test_export_reply_never_gives_two_attachments_the_same_name() -> None:
    long = "b" * 130
    exports = [
        FileReport(f"{long}{n}.csv", processed=replace(EXPORT, export_name=f"{long}{n}_export.csv"))
        for n in (1, 2)
    ]

    message = reparsed(reply_with_exports(CONTEXT, exports).as_bytes())

    names = [attachment.get_filename() for attachment in message.iter_attachments()]
    assert names == ["b" * 116 + ".csv", "b" * 112 + " (2).csv"]


def test_file_names_in_a_reply_are_shortened_and_never_start_a_line_as_a_formula() -> None:
    reports = [
        FileReport("=cmd|' /C calc'!A0.csv", error="=cmd|' /C calc'!A0.csv: the file is empty"),
        FileReport("-" + "x" * 60 + ".csv", error="script failed; its error output:\n=2+2\n\tx\n-rf"),
        FileReport("orders.csv", processed=replace(EXPORT, import_name="@" + "y" * 50 + ".csv")),
    ]

    body = reparsed(reply_with_exports(CONTEXT, reports).as_bytes()).get_body().get_content()

    lines = body.splitlines()
    lines = lines[: lines.index("-- ")]  # the signature's separator is ours
    assert [line for line in lines if line.startswith(FORMULA_STARTS)] == []
    assert "'=cmd|' /C calc'!A0.csv': not processed: =cmd|' /C calc'!A0.csv: the file is empty" in lines
    assert f"'-{'x' * 39}…': not processed: script failed; its error output:" in lines
    assert lines[lines.index("'=2+2") : lines.index("'-rf") + 1] == ["'=2+2", "'\tx", "'-rf"]
    assert any(line.startswith(f"'@{'y' * 39}…': 1 row, 1 accepted") for line in lines)


def test_error_reply_lines_never_start_as_a_formula() -> None:
    body = reparsed(reply_with_error(CONTEXT, "+problem\n@line").as_bytes()).get_body().get_content()

    assert "'+problem\n'@line\n" in body.replace("\r\n", "\n")
