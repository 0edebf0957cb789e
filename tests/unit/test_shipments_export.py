"""The export file, shipment ids, postage, the one serial allocation per file, and the summary."""

from decimal import Decimal

import pytest

from domain.shipments import (
    EXPORT_COLUMNS,
    ProcessedFile,
    RowResult,
    Status,
    export_name,
    is_valid_s10,
    process_import,
)
from domain.shipments.partner_text import FORMULA_STARTS
from tests.unit.fakes import FakeSerials
from tests.unit.test_shipments_support import COLUMNS, csv_bytes, export_rows, row


def _mixed_file() -> bytes:
    return csv_bytes(
        [
            row(reference="R-1", product="A-POST", weight_g="100"),
            row(reference="R-2", postcode="12"),
            row(reference="R-3", product="B-POST", weight_g="101"),
            row(reference="R-4", product="REGISTERED", weight_g="2000"),
            row(reference="R-5", weight_g="2001"),
        ]
    )


def test_export_has_one_row_per_import_row_in_order() -> None:
    # Check digits by hand (weights 8 6 4 2 3 5 9 7): 47312482 -> sum 200 -> 9 (Wikipedia's example);
    # 47312483 -> 207, 207 mod 11 = 9 -> 2; 47312484 -> 214, 214 mod 11 = 5 -> 6.
    # Given five rows, two of them invalid
    serials = FakeSerials(next_serial=47312482)
    # When the file is processed
    processed = process_import("orders.csv", _mixed_file(), serials)
    # Then the export lists all five in import order, each accepted one with an id and its postage
    assert export_rows(processed) == [
        {
            "reference": "R-1",
            "status": "ACCEPTED",
            "shipment_id": "LA473124829CH",
            "product": "A-POST",
            "weight_g": "100",
            "postage_chf": "1.20",
            "message": "",
        },
        {
            "reference": "R-2",
            "status": "REJECTED",
            "shipment_id": "",
            "product": "B-POST",
            "weight_g": "100",
            "postage_chf": "",
            "message": "postcode '12' is not a valid CH postcode (4 digits)",
        },
        {
            "reference": "R-3",
            "status": "ACCEPTED",
            "shipment_id": "LB473124832CH",
            "product": "B-POST",
            "weight_g": "101",
            "postage_chf": "1.70",
            "message": "",
        },
        {
            "reference": "R-4",
            "status": "ACCEPTED",
            "shipment_id": "RR473124846CH",
            "product": "REGISTERED",
            "weight_g": "2000",
            "postage_chf": "12.00",
            "message": "",
        },
        {
            "reference": "R-5",
            "status": "REJECTED",
            "shipment_id": "",
            "product": "B-POST",
            "weight_g": "",
            "postage_chf": "",
            "message": "weight_g 2001 is not between 1 and 2000 grams",
        },
    ]
    assert (processed.accepted, processed.rejected) == (3, 2)
    assert processed.total_postage_chf == Decimal("14.90")
    assert str(processed.total_postage_chf) == "14.90"


def test_serials_are_allocated_once_per_file_for_the_valid_rows_only() -> None:
    serials = FakeSerials()
    process_import("orders.csv", _mixed_file(), serials)
    assert serials.calls == [3]


def test_no_serials_are_allocated_when_no_row_is_valid() -> None:
    serials = FakeSerials()
    processed = process_import(
        "orders.csv", csv_bytes([row(weight_g="0"), row(reference="R-2", city="")]), serials
    )
    assert serials.calls == []
    assert processed.total_postage_chf == Decimal("0.00")


def test_two_files_never_share_a_shipment_id() -> None:
    serials = FakeSerials(next_serial=99_999_990)
    first = process_import("a.csv", csv_bytes([row(reference=f"A-{n}") for n in range(4)]), serials)
    second = process_import("b.csv", csv_bytes([row(reference=f"B-{n}") for n in range(4)]), serials)
    ids = [r.shipment_id for r in (*first.rows, *second.rows)]
    assert len(set(ids)) == 8
    assert all(is_valid_s10(shipment_id) for shipment_id in ids)
    # 99999997: 9 * (8+6+4+2+3+5+9) + 7 * 7 = 382; 382 mod 11 = 8 -> 3
    assert ids[-1] == "LB999999973CH"


def test_the_issuer_country_ends_every_shipment_id() -> None:
    processed = process_import("orders.csv", csv_bytes([row()]), FakeSerials(8), issuer_country="LI")
    assert processed.rows[0].shipment_id == "LB000000080LI"


def test_an_unknown_issuer_country_is_a_programming_error_before_any_allocation() -> None:
    serials = FakeSerials()
    with pytest.raises(ValueError, match="issuer_country"):
        process_import("orders.csv", csv_bytes([row()]), serials, issuer_country="ZZ")
    assert serials.calls == []


class _BrokenSerials:
    def allocate(self, count: int) -> range:
        return range(1, count)  # one short


def test_a_serial_source_returning_the_wrong_block_is_not_trusted() -> None:
    with pytest.raises(RuntimeError, match="serial source"):
        process_import("orders.csv", csv_bytes([row(), row(reference="R-2")]), _BrokenSerials())


@pytest.mark.parametrize(
    ("reference", "start"),
    [
        ("=cmd|' /C calc'!A0", "'='"),
        ("=HYPERLINK(1)", "'='"),
        ("+41", "'+'"),
        ("-7", "'-'"),
        ("@SUM(1)", "'@'"),
        (" \t=1+1", "'='"),  # cells are trimmed first: what would be echoed is checked
    ],
)
def test_a_reference_that_starts_like_a_formula_is_rejected_and_never_echoed(
    reference: str, start: str
) -> None:
    # Given a valid row whose reference a spreadsheet would run as a formula
    serials = FakeSerials()
    # When the file is processed
    processed = process_import("orders.csv", csv_bytes([row(reference=reference)]), serials)
    # Then the row is rejected, gets no id, its reference cell stays empty and the message quotes it
    [exported] = export_rows(processed)
    shown = reference.strip()
    assert exported == {
        "reference": "",
        "status": "REJECTED",
        "shipment_id": "",
        "product": "B-POST",
        "weight_g": "100",
        "postage_chf": "",
        "message": f"reference '{shown}' must not start with {start} (it could run as a spreadsheet formula)",
    }
    assert serials.calls == []
    assert processed.summary().splitlines()[1] == (
        f"  row 2 (reference {shown}): reference '{shown}' must not start with {start} "
        "(it could run as a spreadsheet formula)"
    )


def test_formula_characters_inside_a_reference_are_fine() -> None:
    references = ["R-1", "A+B", "x=y", "mail@partner"]
    data = csv_bytes([row(reference=reference) for reference in references])
    exported = export_rows(process_import("orders.csv", data, FakeSerials()))
    assert [(r["reference"], r["status"]) for r in exported] == [(ref, "ACCEPTED") for ref in references]


def test_no_export_cell_starts_with_a_formula_character_whatever_the_partner_sends() -> None:
    # Given rows whose every cell starts with a formula character
    hostile = {column: f"{start}1+1" for column, start in zip(COLUMNS, "=+-@=+-@=+", strict=True)}
    rows = [hostile, row(reference="@x", postcode="=1"), row(reference="ok", weight_g="-5", product="+A")]
    # When the file is processed
    processed = process_import("orders.csv", csv_bytes(rows), FakeSerials())
    # Then every row is rejected and no cell of the export starts with a formula character
    exported = export_rows(processed)
    assert [r["status"] for r in exported] == ["REJECTED"] * 3
    cells = [cell for record in exported for cell in record.values()]
    assert [cell for cell in cells if cell.startswith(FORMULA_STARTS)] == []
    assert exported[2]["message"] == (
        "product '+A' is not one of A-POST, B-POST, REGISTERED; weight_g '-5' is not a whole number of grams"
    )


def test_a_cell_that_would_start_a_formula_is_still_written_as_data() -> None:
    # The last guard of export_cells: no message of ours starts so, but none may slip through.
    result = RowResult(
        line=2,
        reference="R-1",
        status=Status.REJECTED,
        shipment_id="",
        product=None,
        weight_g=None,
        postage_chf=None,
        problems=("=not ours",),
    )
    assert result.export_cells() == ["R-1", "REJECTED", "", "", "", "", "'=not ours"]


def test_export_cells_with_delimiters_or_quotes_are_quoted() -> None:
    data = csv_bytes([row(reference='R;"1"')])
    processed = process_import("orders.csv", data, FakeSerials())
    assert b'"R;""1""";ACCEPTED' in processed.export_bytes
    assert export_rows(processed)[0]["reference"] == 'R;"1"'


def test_export_columns_are_the_design_columns() -> None:
    assert EXPORT_COLUMNS == (
        "reference",
        "status",
        "shipment_id",
        "product",
        "weight_g",
        "postage_chf",
        "message",
    )


@pytest.mark.parametrize(
    ("attachment", "expected"),
    [
        ("orders.csv", "orders_export.csv"),
        ("Orders 2025.CSV", "Orders 2025_export.csv"),
        ("orders.2025.txt", "orders.2025_export.csv"),
        ("orders", "orders_export.csv"),
        ("../../etc/orders.csv", "orders_export.csv"),
        ("C:\\Users\\x\\orders.csv", "orders_export.csv"),
        ("bad\r\nname.csv", "bad__name_export.csv"),
        (".csv", "csv_export.csv"),
        ("", "import_export.csv"),
    ],
)
def test_export_name_is_the_import_stem_with_export_suffix(attachment: str, expected: str) -> None:
    assert export_name(attachment) == expected


def test_the_processed_file_keeps_both_names() -> None:
    processed = process_import("Bestellungen.csv", csv_bytes([row()]), FakeSerials())
    assert (processed.import_name, processed.export_name) == ("Bestellungen.csv", "Bestellungen_export.csv")


def test_summary_gives_counts_total_and_the_rejection_reasons() -> None:
    processed = process_import("orders.csv", _mixed_file(), FakeSerials())
    assert processed.summary() == (
        "orders.csv: 5 rows, 3 accepted, 2 rejected, total postage CHF 14.90\n"
        "  row 3 (reference R-2): postcode '12' is not a valid CH postcode (4 digits)\n"
        "  row 6 (reference R-5): weight_g 2001 is not between 1 and 2000 grams"
    )


def test_summary_of_a_clean_single_row_file_is_one_line() -> None:
    processed = process_import("orders.csv", csv_bytes([row()]), FakeSerials())
    assert processed.summary() == "orders.csv: 1 row, 1 accepted, 0 rejected, total postage CHF 1.00"


def test_summary_shows_the_first_reasons_and_counts_the_rest() -> None:
    # Given eight rejected rows, one of them without a reference
    rows = [row(reference=f"R-{n}", weight_g="0") for n in range(7)] + [row(reference="", weight_g="5")]
    processed = process_import("orders.csv", csv_bytes(rows), FakeSerials())
    # When the summary is written / Then five reasons are shown, then a pointer to the export
    lines = processed.summary().splitlines()
    assert lines[0] == "orders.csv: 8 rows, 0 accepted, 8 rejected, total postage CHF 0.00"
    assert lines[1] == "  row 2 (reference R-0): weight_g 0 is not between 1 and 2000 grams"
    assert lines[6] == "  ... and 3 more rejected rows, see orders_export.csv"
    assert len(lines) == 7
    assert processed.summary(max_reasons=8).splitlines()[-1] == "  row 9: reference is missing"


def test_processed_file_can_be_built_directly_and_hides_its_bytes_in_repr() -> None:
    processed = ProcessedFile(
        import_name="a.csv",
        export_name="a_export.csv",
        export_bytes=b"secret partner data",
        accepted=2,
        rejected=1,
        total_postage_chf=Decimal("12.30"),
    )
    assert processed.summary() == "a.csv: 3 rows, 2 accepted, 1 rejected, total postage CHF 12.30"
    assert "secret" not in repr(processed)


def test_partner_text_in_the_summary_is_shortened_to_40_characters() -> None:
    # Given a long file name and a long (too long) reference
    name = "Bestellungen " + "x" * 60 + ".csv"
    reference = "R" * 50
    processed = process_import(name, csv_bytes([row(reference=reference)]), FakeSerials())
    # When the summary is written / Then both are cut at 40 characters, then "…"
    first, reason = processed.summary().splitlines()
    assert first.startswith(f"{name[:40]}…: 1 row, 0 accepted, 1 rejected")
    assert reason == f"  row 2 (reference {'R' * 40}…): reference is longer than 35 characters (50)"


@pytest.mark.parametrize("name", ["=cmd|' calc'!A0.csv", "+41.csv", "-rf.csv", "@SUM.csv"])
def test_a_file_name_that_starts_like_a_formula_does_not_start_the_summary_line(name: str) -> None:
    processed = process_import(name, csv_bytes([row()]), FakeSerials())
    assert processed.summary() == f"'{name}': 1 row, 1 accepted, 0 rejected, total postage CHF 1.00"
