"""Postscript: add the partner and the subject of the partner's e-mail to every row of the export.

Runs on the export file (``<import>_export.csv``, columns
``reference;status;shipment_id;product;weight_g;postage_chf;message``, same delimiter and encoding
as the import) before it is sent back, and appends two columns: ``partner`` (LETTERSHOP_PARTNER_ID)
and ``order_subject`` (LETTERSHOP_SUBJECT), so the partner can match the answer to the order.

Runs as ``python3 -I stamp_export.py`` with LETTERSHOP_FILE naming the file to rewrite in place.
Standard library only. The subject is the partner's text: a value that a spreadsheet would run as a
formula (it starts with = + - @, TAB or CR) is written with a leading ' so it stays data.
"""

import csv
import io
import os
import sys


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_data(value: str) -> str:
    """A cell value that no spreadsheet runs as a formula."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def main() -> int:
    path = os.environ["LETTERSHOP_FILE"]
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        encoding, text = "utf-8", raw.decode("utf-8")
    except UnicodeDecodeError:
        encoding, text = "cp1252", raw.decode("cp1252")
    delimiter = "," if text.startswith("reference,") else ";"
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    if not rows or rows[0][:2] != ["reference", "status"]:
        print(f"not a LetterShop export file: header {rows[0] if rows else 'missing'}", file=sys.stderr)
        return 2

    partner = os.environ.get("LETTERSHOP_PARTNER_ID", "")
    subject = as_data(os.environ.get("LETTERSHOP_SUBJECT", ""))
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow([*rows[0], "partner", "order_subject"])
    for row in rows[1:]:
        writer.writerow([*row, partner, subject])

    with open(path, "wb") as handle:
        handle.write(out.getvalue().encode(encoding, "replace"))
    print(f"stamped {len(rows) - 1} rows for partner {partner}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
