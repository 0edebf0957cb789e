"""Helpers shared by the shipment tests: CSV builders (the fake ``SerialSource`` is in ``fakes``).

(No tests here; the module name lets pytest import it like the test modules that use it.)
"""

import csv
import io
from collections.abc import Mapping, Sequence

from domain.shipments import ProcessedFile

COLUMNS = (
    "reference",
    "name",
    "company",
    "street",
    "house_number",
    "postcode",
    "city",
    "country",
    "product",
    "weight_g",
)
VALID_ROW: Mapping[str, str] = {
    "reference": "R-1",
    "name": "Hans Muster",
    "company": "Muster AG",
    "street": "Bahnhofstrasse",
    "house_number": "1a",
    "postcode": "8001",
    "city": "Zurich",
    "country": "CH",
    "product": "B-POST",
    "weight_g": "100",
}


def row(**changes: str) -> dict[str, str]:
    """A valid import row with some cells changed."""
    return {**VALID_ROW, **changes}


def csv_text(
    rows: Sequence[Mapping[str, str]], columns: Sequence[str] = COLUMNS, delimiter: str = ";"
) -> str:
    """An import file's text: header plus rows, CRLF line ends, RFC 4180 quoting."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([[values.get(column, "") for column in columns] for values in rows])
    return buffer.getvalue()


def csv_bytes(
    rows: Sequence[Mapping[str, str]],
    columns: Sequence[str] = COLUMNS,
    delimiter: str = ";",
    encoding: str = "utf-8",
) -> bytes:
    return csv_text(rows, columns, delimiter).encode(encoding)


def export_rows(
    processed: ProcessedFile, delimiter: str = ";", encoding: str = "utf-8"
) -> list[dict[str, str]]:
    """The export parsed back (header checked), one dict per export row."""
    text = processed.export_bytes.decode(encoding)
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    assert records[0] == [
        "reference",
        "status",
        "shipment_id",
        "product",
        "weight_g",
        "postage_chf",
        "message",
    ]
    return [dict(zip(records[0], record, strict=True)) for record in records[1:]]
