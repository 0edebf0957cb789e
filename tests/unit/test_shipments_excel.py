"""Excel's own shapes of a CSV (issue 17 item 16): a first line ``sep=X`` naming the delimiter, and
"Unicode text" (UTF-16 with its byte order mark, tab-separated). Both are read, and the export is
written back the same way."""

import codecs
import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidImportFile
from domain.shipments import ProcessedFile, process_import
from tests.unit.fakes import FakeSerials
from tests.unit.test_shipments_support import COLUMNS, csv_bytes, csv_text, export_rows, row

EXPORT_HEADER = "reference;status;shipment_id;product;weight_g;postage_chf;message"


def test_a_file_with_excels_sep_line_is_read_with_that_delimiter_and_the_line_is_not_a_row() -> None:
    # Given Excel's delimiter hint before the header, and a bad postcode in the second data row
    data = b"sep=;\r\n" + csv_bytes([row(reference="R-1"), row(reference="R-2", postcode="12")])
    # When processed
    processed = process_import("orders.csv", data, FakeSerials())
    # Then the rows are read, numbered as Excel shows them (the hint line is hidden: header = row 1)
    assert [(result.line, result.reference, result.status.value) for result in processed.rows] == [
        (2, "R-1", "ACCEPTED"),
        (3, "R-2", "REJECTED"),
    ]
    # And the export carries the same hint, so Excel opens it the same way
    assert processed.export_bytes.startswith(f"sep=;\r\n{EXPORT_HEADER}\r\nR-1;ACCEPTED;LB".encode())


@pytest.mark.parametrize("delimiter", [",", "|", "\t"])
def test_a_sep_line_decides_the_delimiter_also_one_that_is_never_sniffed(delimiter: str) -> None:
    text = f"SEP={delimiter}\n" + csv_text([row(reference="R-1", city="Zurich; Stadt")], delimiter=delimiter)
    processed = process_import("orders.csv", text.replace("\r\n", "\n").encode("cp1252"), FakeSerials())
    assert (processed.accepted, processed.rejected) == (1, 0)
    first, second, *_ = processed.export_bytes.decode("cp1252").split("\n")
    assert first == f"sep={delimiter}"
    assert second == EXPORT_HEADER.replace(";", delimiter)


def test_a_sep_line_whose_delimiter_does_not_give_the_header_names_the_missing_columns() -> None:
    data = b"sep=,\r\n" + csv_bytes([row()])  # the hint says comma, the file uses semicolons
    with pytest.raises(InvalidImportFile, match=r"orders\.csv: the first line is not a valid header"):
        process_import("orders.csv", data, FakeSerials())


@pytest.mark.parametrize(
    ("bom", "encoding"), [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")]
)
def test_excels_unicode_text_is_read_and_answered_in_utf16_with_tabs(bom: bytes, encoding: str) -> None:
    # Given Excel's "Unicode text": UTF-16 with its byte order mark, tab-separated, CRLF
    rows = [row(reference="R-1", name="Zoë Ærø 😀"), row(reference="R-2", weight_g="0")]
    data = bom + csv_text(rows, delimiter="\t").encode(encoding)
    # When processed
    processed = process_import("orders.csv", data, FakeSerials(next_serial=7))
    # Then both rows are read, and the export is UTF-16 in the same byte order, with tabs
    assert [(result.line, result.reference, result.status.value) for result in processed.rows] == [
        (2, "R-1", "ACCEPTED"),
        (3, "R-2", "REJECTED"),
    ]
    assert processed.export_bytes.startswith(
        bom + EXPORT_HEADER.replace(";", "\t").encode(encoding) + "\r\n".encode(encoding)
    )
    exported = export_rows(processed, delimiter="\t", encoding="utf-16")
    assert [(cells["reference"], cells["status"], cells["shipment_id"]) for cells in exported] == [
        ("R-1", "ACCEPTED", "LB000000076CH"),
        ("R-2", "REJECTED", ""),
    ]


def test_a_utf16_file_keeps_its_lf_line_ends_in_the_export() -> None:
    data = codecs.BOM_UTF16_LE + csv_text([row()], delimiter="\t").replace("\r\n", "\n").encode("utf-16-le")
    processed = process_import("orders.csv", data, FakeSerials())
    assert processed.export_bytes.decode("utf-16").count("\n") == 2
    assert "\r" not in processed.export_bytes.decode("utf-16")


# --- round trip: any rows, written as Excel writes them, read as the same rows ---------------------------

_CELL = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_ROWS = st.lists(st.fixed_dictionaries(dict.fromkeys(COLUMNS, _CELL)), min_size=1, max_size=5)


def _same_rows(processed: ProcessedFile, reference: ProcessedFile, delimiter: str, encoding: str) -> None:
    assert list(processed.rows) == list(reference.rows)
    assert (processed.accepted, processed.rejected) == (reference.accepted, reference.rejected)
    text = processed.export_bytes.decode(encoding)
    if text.startswith("sep="):
        text = text.split("\n", 1)[1]
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    expected = list(
        csv.reader(io.StringIO(reference.export_bytes.decode("utf-8"), newline=""), delimiter=";")
    )
    assert records == expected


@pytest.mark.property
@given(
    rows=_ROWS,
    byte_order=st.sampled_from(["utf-16-le", "utf-16-be"]),
    line_end=st.sampled_from(["\r\n", "\n"]),
)
def test_any_rows_written_as_utf16_with_tabs_are_read_as_the_same_rows(
    rows: list[dict[str, str]], byte_order: str, line_end: str
) -> None:
    text = csv_text(rows).replace("\r\n", line_end)
    reference = process_import("orders.csv", text.encode("utf-8"), FakeSerials())
    tabbed = csv_text(rows, delimiter="\t").replace("\r\n", line_end)
    bom = codecs.BOM_UTF16_LE if byte_order == "utf-16-le" else codecs.BOM_UTF16_BE
    processed = process_import("orders.csv", bom + tabbed.encode(byte_order), FakeSerials())
    assert processed.export_bytes.startswith(bom)
    _same_rows(processed, reference, "\t", "utf-16")


@pytest.mark.property
@given(rows=_ROWS, delimiter=st.sampled_from([";", ",", "\t", "|"]))
def test_any_rows_written_after_a_sep_line_are_read_as_the_same_rows(
    rows: list[dict[str, str]], delimiter: str
) -> None:
    reference = process_import("orders.csv", csv_bytes(rows), FakeSerials())
    data = f"sep={delimiter}\r\n".encode() + csv_bytes(rows, delimiter=delimiter)
    processed = process_import("orders.csv", data, FakeSerials())
    assert processed.export_bytes.startswith(f"sep={delimiter}\r\n".encode())
    _same_rows(processed, reference, delimiter, "utf-8")
