"""Reading import files: delimiters, encodings, headers, blank lines, unreadable files."""

import codecs

import pytest

from domain.errors import InvalidImportFile, PermanentError
from domain.shipments import process_import
from tests.unit.fakes import FakeSerials
from tests.unit.test_shipments_support import csv_bytes, csv_text, export_rows, row

REQUIRED = "reference;name;street;postcode;city;weight_g"


def test_a_semicolon_file_is_answered_with_a_semicolon_export() -> None:
    # Given a semicolon-separated file with a quoted semicolon inside a cell
    data = csv_bytes([row(reference="R-1", name="Muster; Hans"), row(reference="R-2")], delimiter=";")
    # When it is processed
    processed = process_import("orders.csv", data, FakeSerials())
    # Then both rows are read correctly and the export uses semicolons
    assert processed.export_bytes.startswith(
        b"reference;status;shipment_id;product;weight_g;postage_chf;message\r\n"
    )
    assert [r["status"] for r in export_rows(processed, delimiter=";")] == ["ACCEPTED", "ACCEPTED"]


def test_a_comma_file_is_answered_with_a_comma_export() -> None:
    # Given a comma-separated file whose cells contain commas and semicolons in quotes
    data = csv_bytes(
        [row(reference="R-1", name="Muster, Hans"), row(reference="R-2", company="A;B;C;D;E;F;G;H")],
        delimiter=",",
    )
    # When it is processed
    processed = process_import("orders.csv", data, FakeSerials())
    # Then the comma wins and the export is comma-separated
    assert processed.export_bytes.startswith(
        b"reference,status,shipment_id,product,weight_g,postage_chf,message\r\n"
    )
    assert [r["status"] for r in export_rows(processed, delimiter=",")] == ["ACCEPTED", "ACCEPTED"]


def test_a_single_row_comma_file_is_recognised_by_its_header() -> None:
    data = b"reference,name,street,postcode,city,weight_g\nR-1,Hans,Weg 1,8001,Bern,20\n"
    processed = process_import("orders.csv", data, FakeSerials())
    assert processed.accepted == 1
    assert (
        processed.export_bytes.split(b"\n")[0]
        == b"reference,status,shipment_id,product,weight_g,postage_chf,message"
    )


def test_header_names_are_case_insensitive_trimmed_and_in_any_order() -> None:
    text = (
        " Weight_G ;CITY;Postcode; street ;Name;REFERENCE;Country\r\n250;Vaduz;9490;Staedtle;Hans;R-1;li\r\n"
    )
    processed = process_import("orders.csv", text.encode(), FakeSerials(next_serial=47312482))
    assert export_rows(processed)[0]["shipment_id"] == "LB473124829CH"


def test_unknown_columns_are_ignored() -> None:
    data = csv_bytes([{**row(), "phone": "+41 44 000 00 00"}], columns=(*row().keys(), "phone"))
    assert process_import("orders.csv", data, FakeSerials()).accepted == 1


def test_utf8_with_bom_keeps_the_bom_in_the_export() -> None:
    # Given a UTF-8 file with a byte order mark and an umlaut in the reference
    data = codecs.BOM_UTF8 + csv_bytes([row(reference="Zürich-1")])
    # When it is processed
    processed = process_import("orders.csv", data, FakeSerials())
    # Then the export is UTF-8 with a BOM and the first column is still called "reference"
    assert processed.export_bytes.startswith(codecs.BOM_UTF8 + b"reference;")
    assert export_rows(processed, encoding="utf-8-sig")[0]["reference"] == "Zürich-1"


def test_utf8_without_bom_gets_no_bom() -> None:
    processed = process_import("orders.csv", csv_bytes([row(reference="Zürich-1")]), FakeSerials())
    assert processed.export_bytes.startswith(b"reference;")
    assert "Zürich-1".encode() in processed.export_bytes


def test_windows_1252_with_umlauts_round_trips_in_windows_1252() -> None:
    # Given a Windows-1252 file (Excel on Windows) with umlauts in several cells
    rows = [row(reference="Zürich-1", city="Zürich"), row(reference="Genève-2", country="Ö")]
    data = csv_bytes(rows, encoding="cp1252")
    assert b"Z\xfcrich" in data
    # When it is processed
    processed = process_import("orders.csv", data, FakeSerials())
    # Then the export is Windows-1252 too: the same bytes for the same characters
    assert b"Z\xfcrich-1;ACCEPTED" in processed.export_bytes
    exported = export_rows(processed, encoding="cp1252")
    assert [r["reference"] for r in exported] == ["Zürich-1", "Genève-2"]
    assert exported[1]["message"] == "country 'Ö' is not an ISO 3166-1 alpha-2 country code"
    with pytest.raises(UnicodeDecodeError):
        processed.export_bytes.decode("utf-8")


def test_line_endings_of_the_import_are_kept() -> None:
    lf = csv_text([row()]).replace("\r\n", "\n").encode()
    crlf = csv_text([row()]).encode()
    assert b"\r\n" not in process_import("lf.csv", lf, FakeSerials()).export_bytes
    assert process_import("crlf.csv", crlf, FakeSerials()).export_bytes.count(b"\r\n") == 2


def test_blank_lines_are_ignored_but_counted_in_row_numbers() -> None:
    # Given blank lines, a whitespace line and a spreadsheet's empty ";;;;" line between rows
    text = (
        f"\r\n{REQUIRED}\r\n\r\nR-1;Hans;Weg;8001;Bern;10\r\n   \r\n;;;;;\r\nR-2;Hans;Weg;12;Bern;10\r\n\r\n"
    )
    # When the file is processed
    processed = process_import("orders.csv", text.encode(), FakeSerials())
    # Then only the two real rows are in the export, and R-2's number is its line in the file
    assert [r["reference"] for r in export_rows(processed)] == ["R-1", "R-2"]
    assert [result.line for result in processed.rows] == [4, 7]


def test_a_quoted_cell_over_two_lines_keeps_later_row_numbers_right() -> None:
    text = f'{REQUIRED}\r\nR-1;"Hans\r\nMuster";Weg;8001;Bern;10\r\nR-2;Eva;Weg;8001;Bern;0\r\n'
    processed = process_import("orders.csv", text.encode(), FakeSerials())
    assert [result.line for result in processed.rows] == [2, 4]
    assert (
        processed.summary().splitlines()[1]
        == "  row 4 (reference R-2): weight_g 0 is not between 1 and 2000 grams"
    )


def test_a_header_without_data_rows_is_an_empty_import() -> None:
    serials = FakeSerials()
    processed = process_import("orders.csv", f"{REQUIRED}\r\n".encode(), serials)
    assert (processed.accepted, processed.rejected) == (0, 0)
    assert processed.export_bytes == b"reference;status;shipment_id;product;weight_g;postage_chf;message\r\n"
    assert serials.calls == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "orders.csv: the file is empty"),
        (b"\r\n  \r\n;;;\r\n", "orders.csv: the file is empty"),
        (
            b"R-1;Hans;Weg;8001;Bern;10\r\n",
            "orders.csv: the first line is not a valid header; it must name the columns "
            "reference, name, street, postcode, city, weight_g",
        ),
        (
            b"reference;name;street;postcode\r\nR-1;Hans;Weg;8001\r\n",
            "orders.csv: missing required columns: city, weight_g",
        ),
        (b"Reference,Name,Street,Postcode,City\r\n", "orders.csv: missing required columns: weight_g"),
        (f"{REQUIRED};City\r\n".encode(), "orders.csv: the header repeats columns: city"),
        (b"PK\x03\x04\x14\x00\x06\x00", "orders.csv: the file contains NUL bytes; it is not a CSV text file"),
        (
            codecs.BOM_UTF32_LE + REQUIRED.encode("utf-32-le"),
            "orders.csv: the file is UTF-32 encoded; send UTF-8, UTF-16 (with its byte order mark) or "
            "Windows-1252 text",
        ),
        (
            codecs.BOM_UTF16_LE + REQUIRED.encode("utf-16-le") + b"\r",  # an odd byte: no UTF-16
            "orders.csv: the file starts with a UTF-16 byte order mark but is not valid UTF-16 text",
        ),
        (
            codecs.BOM_UTF16_BE + f"{REQUIRED}\x00".encode("utf-16-be"),
            "orders.csv: the file contains NUL characters; it is not a CSV text file",
        ),
        (b"reference\x81;name", "orders.csv: the file is neither UTF-8 nor Windows-1252 text"),
        (codecs.BOM_UTF8 + b"reference\xfc", "orders.csv: the file starts with a UTF-8 byte order mark"),
    ],
    ids=[
        "empty",
        "only-blank-lines",
        "no-header",
        "missing-columns",
        "missing-weight",
        "repeated-column",
        "binary",
        "utf-32",
        "utf-16-odd-length",
        "utf-16-nul",
        "not-cp1252",
        "bom-but-not-utf8",
    ],
)
def test_a_file_that_cannot_be_read_is_an_invalid_import_file(data: bytes, message: str) -> None:
    # Given an unusable file / When it is processed / Then InvalidImportFile names the file and the problem
    serials = FakeSerials()
    with pytest.raises(InvalidImportFile) as caught:
        process_import("orders.csv", data, serials)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, PermanentError)
    assert serials.calls == []


# --- a quote that is never closed, and the row cap ----------------------------------------------------

UNCLOSED = 'line {line}: a quote (") opens a cell there and is never closed'


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # 5 rows in: csv would read rows 1 and 2 only, row 2's name swallowing rows 3 to 5
        (
            f'{REQUIRED}\r\nR-1;Hans;Weg;8001;Bern;10\r\nR-2;"Hans Weg;8001;Bern;10\r\n'
            "R-3;Eva;Weg;8001;Bern;10\r\nR-4;Eva;Weg;8001;Bern;10\r\nR-5;Eva;Weg;8001;Bern;10\r\n",
            3,
        ),
        # a properly closed two-line cell before the unclosed one: the opening line is named
        (f'{REQUIRED}\r\nR-1;"Hans\r\nMuster";Weg;8001;Bern;10\r\nR-2;Eva;"Weg;8001;Bern;10\r\n', 4),
        # a doubled quote inside the open cell does not close it
        (f'{REQUIRED}\nR-1;Hans;Weg;8001;Bern;10\nR-2;"Eva ""the"" Muster;Weg;8001;Bern;10\n', 3),
        # a lone quote on the last line, which would otherwise be dropped as a blank line
        (f'{REQUIRED}\r\nR-1;Hans;Weg;8001;Bern;10\r\n"\r\n', 3),
        # comma-separated, unclosed in the last cell
        (
            'reference,name,street,postcode,city,weight_g\nR-1,Hans,Weg,8001,Bern,"10\nR-2,Eva,Weg,8001,Bern,10\n',
            2,
        ),
        # the header itself never ends
        ('"reference;name;street;postcode;city;weight_g\r\nR-1;Hans;Weg;8001;Bern;10\r\n', 1),
        # lone CR line ends count as lines too
        (f'{REQUIRED}\rR-1;Hans;Weg;8001;Bern;10\rR-2;Eva;Weg;8001;Bern;"10\rR-3;Eva;Weg;8001;Bern;10\r', 3),
    ],
    ids=["five-rows", "after-a-two-line-cell", "doubled-quote-inside", "lone-quote", "comma", "header", "cr"],
)
def test_a_quote_that_is_never_closed_fails_the_file_naming_the_line(text: str, line: int) -> None:
    # Given a file in which a quote opens a cell and is never closed
    serials = FakeSerials()
    # When it is processed / Then the file fails with the line where the quote opened, no id issued
    with pytest.raises(InvalidImportFile) as caught:
        process_import("orders.csv", text.encode(), serials)
    assert str(caught.value).startswith(f"orders.csv: {UNCLOSED.format(line=line)}")
    assert "no row of this file was imported" in str(caught.value)
    assert serials.calls == []


def test_an_unclosed_quote_beyond_the_csv_field_limit_is_named_the_same_way() -> None:
    # Given an unclosed quote followed by more text than csv's field limit (131072 characters)
    rows = "".join(f"R-{n};Eva;Weg;8001;Bern;10\r\n" for n in range(2, 8000))
    text = f'{REQUIRED}\r\nR-1;"Hans;Weg;8001;Bern;10\r\n{rows}'
    with pytest.raises(InvalidImportFile, match=r"line 2: a quote \(\"\) opens a cell there and is never"):
        process_import("orders.csv", text.encode(), FakeSerials())


@pytest.mark.parametrize(
    "cells",
    [
        'R-2;Ha"ns;Weg;8001;Bern;10',  # a quote inside a cell is an ordinary character
        'R-2;"Eva"x;Weg;8001;Bern;10',  # text after a closing quote belongs to the cell
        'R-2;"Eva ""E"" Muster";Weg;8001;Bern;10',  # doubled quotes in a quoted cell
        'R-2;Eva;Weg,"x;8001;Bern;10',  # a quote after a comma in a semicolon file opens nothing
    ],
)
def test_other_quotes_keep_every_row(cells: str) -> None:
    text = f"{REQUIRED}\r\nR-1;Hans;Weg;8001;Bern;10\r\n{cells}\r\nR-3;Eva;Weg;8001;Bern;10\r\n"
    processed = process_import("orders.csv", text.encode(), FakeSerials())
    assert [r["reference"] for r in export_rows(processed)] == ["R-1", "R-2", "R-3"]


def test_a_file_with_more_rows_than_the_cap_fails_before_any_serial_is_allocated() -> None:
    # Given three data rows (blank lines do not count) and a cap of two
    text = csv_text([row(reference=f"R-{n}") for n in range(3)]) + "\r\n;;;\r\n"
    serials = FakeSerials()
    # When the file is processed / Then it fails, naming the count and the cap, and no id is issued
    with pytest.raises(InvalidImportFile) as caught:
        process_import("orders.csv", text.encode(), serials, max_rows=2)
    assert str(caught.value) == (
        "orders.csv: the file has 3 data rows; at most 2 are taken from one file (max_rows_per_file). "
        "No shipment id was issued for it: split it into files of at most 2 rows and send them again"
    )
    assert serials.calls == []


def test_a_file_with_exactly_the_cap_of_rows_is_processed() -> None:
    text = csv_text([row(reference=f"R-{n}") for n in range(3)]) + "\r\n\r\n"
    serials = FakeSerials()
    processed = process_import("orders.csv", text.encode(), serials, max_rows=3)
    assert (processed.accepted, serials.calls) == (3, [3])


def test_a_file_error_names_a_long_file_shortened() -> None:
    name = "x" * 60 + ".csv"
    with pytest.raises(InvalidImportFile) as caught:
        process_import(name, b"", FakeSerials())
    assert str(caught.value) == f"{'x' * 40}…: the file is empty"
