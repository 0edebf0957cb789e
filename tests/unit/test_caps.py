"""Issue 10 through poll_mailbox with the recording fakes: the caps max_import_files and
max_rows_per_file (DESIGN §3), formula cells and partner text in replies (DESIGN §6), long export
names, and a quote that is never closed."""

import csv
import io
from email import message_from_bytes, policy

import pytest

from devstack.samples import VALID_IMPORT, partner_mail
from domain.outcomes import Outcome
from domain.shipments.partner_text import FORMULA_STARTS
from tests.unit.fakes import World, body_of, make_channel

HEADER = "reference;name;street;postcode;city;weight_g\r\n"


def rows(count: int, prefix: str = "R") -> bytes:
    return (HEADER + "".join(f"{prefix}-{n};Hans;Weg;8001;Bern;100\r\n" for n in range(count))).encode()


def body_lines(world: World) -> list[str]:
    [reply] = world.replies.sent
    lines = body_of(reply.message).splitlines()
    return lines[: lines.index("-- ")]  # the signature's separator is ours


@pytest.fixture
def world() -> World:
    return World()


def test_a_message_over_max_import_files_fails_whole_with_one_reply_naming_the_cap(world: World) -> None:
    # Given three import files, a channel taking at most two, and a prescript that would run per file
    world.scripts.scripts = {"pre.py": lambda data: data}
    attachments = [(f"orders{n}.csv", VALID_IMPORT) for n in range(3)]
    world.mailbox.deliver("u1", partner_mail(attachments=attachments))

    # When the channel is polled
    result = world.poll(make_channel(max_import_files=2, prescript="pre.py"))

    # Then the message failed, was answered once with the cap, and no file of it was touched
    assert (result["failed"], result["processed"], result["deleted"]) == (1, 0, 1)
    body = body_of(world.replies.sent[0].message)
    assert (
        "This message carries 3 import files; at most 2 are taken from one message (max_import_files)."
        in body
    )
    assert "Nothing from this message has been imported." in body
    assert list(world.replies.sent[0].message.iter_attachments()) == []
    assert world.serials.calls == []
    assert world.scripts.calls == []
    assert world.archive.keys("exports/") == []
    entry = world.ledger.only()
    assert (entry.outcome, dict(entry.serial_blocks)) == (Outcome.FAILED, {})


def test_a_message_with_exactly_max_import_files_is_processed(world: World) -> None:
    attachments = [(f"orders{n}.csv", VALID_IMPORT) for n in range(2)]
    world.mailbox.deliver("u1", partner_mail(attachments=attachments))

    result = world.poll(make_channel(max_import_files=2))

    assert result["processed"] == 1
    assert world.serials.calls == [2, 2]


def test_a_file_over_max_rows_per_file_fails_alone_and_gets_no_shipment_id(world: World) -> None:
    # Given a file of three rows, a file of two, and a cap of two rows per file
    attachments = [("big.csv", rows(3, "B")), ("small.csv", rows(2, "S"))]
    world.mailbox.deliver("u1", partner_mail(attachments=attachments))

    # When the channel is polled
    result = world.poll(make_channel(max_rows_per_file=2))

    # Then the small file is processed, the big one is named with the cap, and only two ids are issued
    assert result["processed"] == 1
    body = body_of(world.replies.sent[0].message)
    assert (
        "big.csv: not processed: big.csv: the file has 3 data rows; at most 2 are taken from one file "
        "(max_rows_per_file). No shipment id was issued for it" in body
    )
    assert "small.csv: 2 rows, 2 accepted, 0 rejected" in body
    names = [a.get_filename() for a in world.replies.sent[0].message.iter_attachments()]
    assert names == ["small_export.csv"]
    assert world.serials.calls == [2]
    assert list(world.ledger.only().serial_blocks) == ["1:small.csv"]


def test_a_single_file_over_max_rows_per_file_fails_the_message(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail(attachments=[("big.csv", rows(3))]))

    result = world.poll(make_channel(max_rows_per_file=2))

    assert result["failed"] == 1
    assert "at most 2 are taken from one file (max_rows_per_file)" in body_of(world.replies.sent[0].message)
    assert world.serials.calls == []


def test_a_formula_reference_is_rejected_and_nothing_of_it_starts_a_cell_or_a_reply_line(
    world: World,
) -> None:
    # Given a row whose reference would run as a formula in the partner's spreadsheet, in a file
    # whose name starts like a formula too
    data = (HEADER + "=cmd|' /C calc'!A0;Hans;Weg;8001;Bern;100\r\nR-2;Eva;Weg;8001;Bern;100\r\n").encode()
    world.mailbox.deliver("u1", partner_mail(attachments=[("=orders.csv", data)]))

    # When the channel is polled
    assert world.poll()["processed"] == 1

    # Then the row is rejected, its reference cell is empty, and no export cell or reply line starts so
    [attachment] = list(world.replies.sent[0].message.iter_attachments())
    export = list(csv.reader(io.StringIO(attachment.get_content(), newline=""), delimiter=";"))
    assert export[1][:3] == ["", "REJECTED", ""]
    assert export[1][6].startswith("reference '=cmd|' /C calc'!A0' must not start with '='")
    assert export[2][:2] == ["R-2", "ACCEPTED"]
    assert [cell for record in export for cell in record if cell.startswith(FORMULA_STARTS)] == []
    lines = body_lines(world)
    assert [line for line in lines if line.startswith(FORMULA_STARTS)] == []
    assert "'=orders.csv': 2 rows, 1 accepted, 1 rejected, total postage CHF 1.00" in lines
    assert world.serials.calls == [1]


def test_attachment_names_in_a_no_import_file_reply_are_shortened(world: World) -> None:
    name = "=" + "x" * 60 + ".pdf"
    world.mailbox.deliver("u1", partner_mail(attachments=[(name, b"%PDF-1.4")]))

    world.poll()

    body = body_of(world.replies.sent[0].message)
    assert f"found: {name[:40]}…)" in body


def test_long_import_names_get_distinct_export_names_that_keep_csv(world: World) -> None:
    # Given two import files whose names differ only after the 120th character
    stem = "Bestellungen Kunde " + "x" * 120
    attachments = [(f"{stem}1.csv", VALID_IMPORT), (f"{stem}2.csv", VALID_IMPORT)]
    world.mailbox.deliver("u1", partner_mail(attachments=attachments))

    assert world.poll()["processed"] == 1

    # Then both exports are attached and archived under distinct names of at most 120 characters
    names = [str(a.get_filename()) for a in world.replies.sent[0].message.iter_attachments()]
    assert names == [stem[:116] + ".csv", stem[:112] + " (2).csv"]
    [stored] = world.archive.keys("exports/")  # the reply, with its export files, is one object
    archived = message_from_bytes(world.archive.objects[stored], policy=policy.default)
    assert sorted(str(a.get_filename()) for a in archived.iter_attachments()) == sorted(names)


def test_an_unclosed_quote_fails_the_file_naming_the_line_and_issues_no_id(world: World) -> None:
    # Given five rows, the second opening a quote it never closes, and a good file beside it
    data = (
        HEADER
        + 'R-1;Hans;Weg;8001;Bern;10\r\nR-2;"Hans Weg;8001;Bern;10\r\n'
        + "".join(f"R-{n};Eva;Weg;8001;Bern;10\r\n" for n in (3, 4, 5))
    ).encode()
    world.mailbox.deliver(
        "u1", partner_mail(attachments=[("quotes.csv", data), ("orders.csv", VALID_IMPORT)])
    )

    assert world.poll()["processed"] == 1

    body = body_of(world.replies.sent[0].message)
    assert (
        'quotes.csv: not processed: quotes.csv: line 3: a quote (") opens a cell there and is never closed'
        in body
    )
    names = [a.get_filename() for a in world.replies.sent[0].message.iter_attachments()]
    assert names == ["orders_export.csv"]
    assert world.serials.calls == [2]
