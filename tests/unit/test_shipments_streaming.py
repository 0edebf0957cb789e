"""Streaming import processing (issue 10): files larger than one decode or I/O chunk behave as small ones."""

import pytest

from domain.errors import InvalidImportFile
from domain.shipments import Status, process_import
from domain.shipments.csv_io import ExportWriter, TextFormat
from tests.unit.fakes import FakeSerials
from tests.unit.test_shipments_support import csv_bytes, export_rows, row


def test_a_file_larger_than_the_chunks_is_read_with_its_line_numbers_and_cr_line_ends() -> None:
    # Given 4000 rows with bare CR line ends and non-ASCII text, every 7th row invalid
    rows = [
        row(reference=f"R-{n}", city="Zürich", weight_g="0" if n % 7 == 0 else "100") for n in range(4000)
    ]
    data = csv_bytes(rows).replace(b"\r\n", b"\r")
    serials = FakeSerials()

    # When it is processed
    processed = process_import("orders.csv", data, serials)

    # Then every row is there, in order, on its own line, and one block of serials was allocated
    invalid = len(range(0, 4000, 7))
    assert (processed.accepted, processed.rejected) == (4000 - invalid, invalid)
    assert serials.calls == [4000 - invalid]
    assert len(processed.rows) == 4000
    assert [result.line for result in processed.rows] == list(range(2, 4002))
    assert processed.rows[-1].reference == "R-3999"
    assert processed.rows[0].status is Status.REJECTED
    assert processed.rows == tuple(processed.rows)  # reading the rows again gives the same rows
    exported = export_rows(processed)
    assert [cells["reference"] for cells in exported] == [f"R-{n}" for n in range(4000)]
    assert processed.export_bytes.count(b"\r\n") == 4001  # bare CRs: the export ends lines with CRLF


def test_a_utf8_character_across_a_decode_chunk_is_utf8() -> None:
    head = csv_bytes([row(name="Jürg")])
    padding = b"\r\n" * ((256 * 1024 - 1 - len(head)) // 2) + b"\n"[: (256 * 1024 - 1 - len(head)) % 2]
    data = head + padding + "ü\r\n".encode()
    assert data.rindex("ü".encode()) == 256 * 1024 - 1  # "ü" starts on the last byte of the first chunk
    processed = process_import("orders.csv", data, FakeSerials())
    exported = export_rows(processed)
    assert [cells["reference"] for cells in exported] == ["R-1", "ü"]
    assert exported[0]["status"] == "ACCEPTED"


def test_a_windows_1252_error_is_named_by_its_byte_in_the_whole_file() -> None:
    data = csv_bytes([row()]) + b"x" * 300_000 + b"\x81"
    with pytest.raises(InvalidImportFile, match=rf"byte {len(data) - 1}\)$"):
        process_import("orders.csv", data, FakeSerials())


@pytest.mark.parametrize("spool_bytes", [1, 1024 * 1024])
def test_the_export_writer_gives_the_same_bytes_spooled_or_in_memory(spool_bytes: int) -> None:
    text_format = TextFormat(encoding="cp1252", bom=False, line_terminator="\r\n")
    writer = ExportWriter(";", text_format, spool_bytes=spool_bytes)
    for n in range(20_000):
        writer.write([f"R-{n}", "Zürich; €", 'say "hi"', "\u4e2d"])
    expected = "".join(f'R-{n};"Zürich; €";"say ""hi""";?\r\n' for n in range(20_000)).encode("cp1252")
    assert writer.finish() == expected
