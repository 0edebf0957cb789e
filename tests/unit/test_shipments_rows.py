"""Column rules of DESIGN §5, one rule at a time, through ``process_import`` with real CSV bytes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.shipments import process_import
from domain.shipments.rows import check_row
from tests.unit.fakes import FakeSerials
from tests.unit.test_shipments_support import csv_bytes, export_rows, row

LONG = "x" * 36


def _outcome(**changes: str) -> dict[str, str]:
    """Given one import row with ``changes`` / When the file is processed / Then: its export row."""
    processed = process_import("orders.csv", csv_bytes([row(**changes)]), FakeSerials())
    [exported] = export_rows(processed)
    return exported


@pytest.mark.parametrize(
    "changes",
    [
        {"reference": "R"},
        {"reference": "R" * 35},
        {"name": "N"},
        {"name": "N" * 35},
        {"name": "  Hans Muster  "},
        {"company": ""},
        {"company": "C" * 35},
        {"street": "S" * 35},
        {"house_number": ""},
        {"house_number": "1234567890"},
        {"city": "Z" * 35},
        {"city": "Zürich Zürich Zürich Zürich Zürich"},  # 34 characters, 39 UTF-8 bytes
        {"country": "CH", "postcode": "8001"},
        {"country": "LI", "postcode": "9490"},
        {"country": "AT", "postcode": "1010"},
        {"country": "DE", "postcode": "10115"},
        {"country": "FR", "postcode": "75001"},
        {"country": "IT", "postcode": "00184"},
        {"country": "GB", "postcode": "SW1A 1AA"},
        {"country": "gb", "postcode": "sw1a 1aa"},
        {"country": "NL", "postcode": "1012 AB"},
        {"country": "US", "postcode": "12345-6789"},
        {"country": "PT", "postcode": "100"},
        {"country": ""},
        {"country": " li ", "postcode": "9490"},
        {"product": "A-POST"},
        {"product": "a-post"},
        {"product": " Registered "},
        {"product": ""},
        {"weight_g": "1"},
        {"weight_g": "2000"},
        {"weight_g": " 250 "},
        {"weight_g": "0250"},
        {"weight_g": "0000000100"},  # ten digits, a whole number all the same
        {"weight_g": "0" * 100 + "2000"},
    ],
)
def test_a_row_within_every_rule_is_accepted(changes: dict[str, str]) -> None:
    exported = _outcome(**changes)
    assert exported["status"] == "ACCEPTED", exported["message"]
    assert exported["message"] == ""


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reference": ""}, "reference is missing"),
        ({"reference": "   "}, "reference is missing"),
        ({"reference": LONG}, "reference is longer than 35 characters (36)"),
        ({"name": ""}, "name is missing"),
        ({"name": LONG}, "name is longer than 35 characters (36)"),
        ({"company": LONG}, "company is longer than 35 characters (36)"),
        ({"street": ""}, "street is missing"),
        ({"street": LONG}, "street is longer than 35 characters (36)"),
        ({"house_number": "12345678901"}, "house_number is longer than 10 characters (11)"),
        ({"city": ""}, "city is missing"),
        ({"city": LONG}, "city is longer than 35 characters (36)"),
        ({"postcode": ""}, "postcode is missing"),
        ({"postcode": "12"}, "postcode '12' is not a valid CH postcode (4 digits)"),
        ({"postcode": "80011"}, "postcode '80011' is not a valid CH postcode (4 digits)"),
        ({"postcode": "80a1"}, "postcode '80A1' is not a valid CH postcode (4 digits)"),
        (
            {"country": "LI", "postcode": "FL-9490"},
            "postcode 'FL-9490' is not a valid LI postcode (4 digits)",
        ),
        ({"country": "AT", "postcode": "10100"}, "postcode '10100' is not a valid AT postcode (4 digits)"),
        ({"country": "DE", "postcode": "1011"}, "postcode '1011' is not a valid DE postcode (5 digits)"),
        ({"country": "FR", "postcode": "7500I"}, "postcode '7500I' is not a valid FR postcode (5 digits)"),
        ({"country": "IT", "postcode": "0018"}, "postcode '0018' is not a valid IT postcode (5 digits)"),
        (
            {"country": "GB", "postcode": "AB"},
            "postcode 'AB' is not a valid GB postcode (3 to 10 letters, digits, blanks or hyphens)",
        ),
        (
            {"country": "GB", "postcode": "SW1A_1AA"},
            "postcode 'SW1A_1AA' is not a valid GB postcode (3 to 10 letters, digits, blanks or hyphens)",
        ),
        (
            {"country": "US", "postcode": "12345-67890"},
            "postcode '12345-67890' is not a valid US postcode (3 to 10 letters, digits, blanks or hyphens)",
        ),
        ({"country": "XX"}, "country 'XX' is not an ISO 3166-1 alpha-2 country code"),
        ({"country": "CHE"}, "country 'CHE' is not an ISO 3166-1 alpha-2 country code"),
        ({"country": "Schweiz"}, "country 'Schweiz' is not an ISO 3166-1 alpha-2 country code"),
        ({"product": "C-POST"}, "product 'C-POST' is not one of A-POST, B-POST, REGISTERED"),
        ({"product": "A POST"}, "product 'A POST' is not one of A-POST, B-POST, REGISTERED"),
        ({"weight_g": ""}, "weight_g is missing"),
        ({"weight_g": "0"}, "weight_g 0 is not between 1 and 2000 grams"),
        ({"weight_g": "2001"}, "weight_g 2001 is not between 1 and 2000 grams"),
        ({"weight_g": "0000000000"}, "weight_g 0 is not between 1 and 2000 grams"),
        ({"weight_g": "00002001"}, "weight_g 2001 is not between 1 and 2000 grams"),
        ({"weight_g": "1" + "0" * 60}, f"weight_g '1{'0' * 39}…' is not between 1 and 2000 grams"),
        ({"weight_g": "abc"}, "weight_g 'abc' is not a whole number of grams"),
        ({"weight_g": "1.5"}, "weight_g '1.5' is not a whole number of grams"),
        ({"weight_g": "-5"}, "weight_g '-5' is not a whole number of grams"),
        ({"weight_g": "+5"}, "weight_g '+5' is not a whole number of grams"),
        ({"weight_g": "1e3"}, "weight_g '1e3' is not a whole number of grams"),
        ({"weight_g": "\u0665"}, "weight_g '\u0665' is not a whole number of grams"),  # ARABIC-INDIC FIVE
    ],
)
def test_a_row_breaking_one_rule_is_rejected_with_the_reason(changes: dict[str, str], message: str) -> None:
    exported = _outcome(**changes)
    assert exported["status"] == "REJECTED"
    assert exported["message"] == message
    assert exported["shipment_id"] == ""
    assert exported["postage_chf"] == ""


def test_a_row_with_several_problems_lists_them_all_in_column_order() -> None:
    exported = _outcome(name="", postcode="12", product="C-POST", weight_g="9000")
    assert exported["message"] == (
        "name is missing; postcode '12' is not a valid CH postcode (4 digits); "
        "product 'C-POST' is not one of A-POST, B-POST, REGISTERED; "
        "weight_g 9000 is not between 1 and 2000 grams"
    )


def test_an_unknown_country_checks_the_postcode_by_the_general_rule() -> None:
    exported = _outcome(country="XX", postcode="!")
    assert exported["message"] == (
        "country 'XX' is not an ISO 3166-1 alpha-2 country code; "
        "postcode '!' is not a valid postcode (3 to 10 letters, digits, blanks or hyphens)"
    )


def test_a_rejected_row_still_shows_its_valid_product_and_weight() -> None:
    # Given a row whose only problem is the postcode
    exported = _outcome(postcode="1", product="registered", weight_g="300")
    # Then product and weight are shown normalised, so the partner sees what was understood
    assert (exported["product"], exported["weight_g"]) == ("REGISTERED", "300")


def test_invalid_product_and_weight_cells_stay_empty_in_the_export() -> None:
    exported = _outcome(product="=1+1", weight_g="=2+2")
    assert (exported["product"], exported["weight_g"]) == ("", "")


def test_long_or_unprintable_values_are_shortened_in_messages() -> None:
    exported = _outcome(weight_g="a\tb" + "c" * 40)
    shown = "a?b" + "c" * 37 + "…"  # 40 characters, then an ellipsis (DESIGN §6)
    assert exported["message"] == f"weight_g '{shown}' is not a whole number of grams"


def test_a_duplicate_reference_is_rejected_and_the_first_one_stands() -> None:
    # Given three rows, the third repeating the first one's reference
    data = csv_bytes([row(reference="R-1"), row(reference="R-2"), row(reference="R-1")])
    serials = FakeSerials()
    # When the file is processed
    exported = export_rows(process_import("orders.csv", data, serials))
    # Then the first two are accepted, the duplicate is rejected and names the row it repeats
    assert [r["status"] for r in exported] == ["ACCEPTED", "ACCEPTED", "REJECTED"]
    assert exported[2]["message"] == "reference 'R-1' is a duplicate of row 2"
    assert serials.calls == [2]


def test_a_reference_repeating_a_rejected_row_is_still_a_duplicate() -> None:
    data = csv_bytes([row(reference="R-1", weight_g="0"), row(reference="R-1")])
    exported = export_rows(process_import("orders.csv", data, FakeSerials()))
    assert [r["status"] for r in exported] == ["REJECTED", "REJECTED"]
    assert exported[1]["message"] == "reference 'R-1' is a duplicate of row 2"


def test_references_are_compared_exactly_after_trimming() -> None:
    data = csv_bytes([row(reference="R-1"), row(reference="r-1"), row(reference=" R-1 ")])
    exported = export_rows(process_import("orders.csv", data, FakeSerials()))
    assert [r["status"] for r in exported] == ["ACCEPTED", "ACCEPTED", "REJECTED"]


def test_a_duplicate_with_other_problems_lists_every_problem() -> None:
    data = csv_bytes([row(reference="R-1"), row(reference="R-1", city="")])
    exported = export_rows(process_import("orders.csv", data, FakeSerials()))
    assert exported[1]["message"] == "city is missing; reference 'R-1' is a duplicate of row 2"


def test_missing_optional_columns_use_the_defaults() -> None:
    # Given a file with only the required columns
    columns = ("reference", "name", "street", "postcode", "city", "weight_g")
    data = csv_bytes([row(weight_g="101")], columns=columns)
    # When it is processed
    processed = process_import("orders.csv", data, FakeSerials(next_serial=12345678))
    # Then the row is a B-POST letter to Switzerland, priced from the 250 g bracket
    [exported] = export_rows(processed)
    assert exported == {
        "reference": "R-1",
        "status": "ACCEPTED",
        "shipment_id": "LB123456785CH",
        "product": "B-POST",
        "weight_g": "101",
        "postage_chf": "1.70",
        "message": "",
    }
    assert processed.rows[0].product is not None


def test_a_row_with_more_values_than_header_columns_is_rejected() -> None:
    text = "reference;name;street;postcode;city;weight_g\r\nR-1;Hans;Weg;8001;Bern;100;surplus\r\n"
    exported = export_rows(process_import("orders.csv", text.encode(), FakeSerials()))
    assert exported[0]["status"] == "REJECTED"
    assert exported[0]["message"] == "the row has 7 values but the header has 6 columns"


def test_empty_trailing_values_beyond_the_header_are_ignored() -> None:
    text = "reference;name;street;postcode;city;weight_g\r\nR-1;Hans;Weg;8001;Bern;100;;\r\n"
    exported = export_rows(process_import("orders.csv", text.encode(), FakeSerials()))
    assert exported[0]["status"] == "ACCEPTED"


def test_a_short_row_counts_its_missing_cells_as_empty() -> None:
    text = "reference;name;street;postcode;city;weight_g\r\nR-1;Hans;Weg;8001\r\n"
    exported = export_rows(process_import("orders.csv", text.encode(), FakeSerials()))
    assert exported[0]["message"] == "city is missing; weight_g is missing"


@given(zeros=st.integers(min_value=0, max_value=60), weight=st.integers(min_value=0, max_value=10**12))
def test_leading_zeros_never_change_what_a_weight_means(zeros: int, weight: int) -> None:
    # Given a weight cell written with any number of leading zeros
    cell = "0" * zeros + str(weight)
    # When the row is checked
    checked = check_row(row(weight_g=cell))
    # Then it is read as the number it writes: taken within 1..2000 g, else refused for its range
    if 1 <= weight <= 2000:
        assert (checked.weight_g, checked.problems) == (weight, ())
    else:
        assert checked.weight_g is None
        [problem] = checked.problems
        assert problem.startswith("weight_g ")
        assert problem.endswith(" is not between 1 and 2000 grams")
