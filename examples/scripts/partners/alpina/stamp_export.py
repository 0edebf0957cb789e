"""Postscript of partner ``alpina`` only: add a tracking link to every shipped row of the export.

Used by a channel with ``use_standard_script: false`` and ``partner_id: alpina``, which reads both
scripts from ``partners/alpina/`` (the standard ``stamp_export.py`` is a different script of the
same name). Runs on the export file (``<import>_export.csv``, columns
``reference;status;shipment_id;product;weight_g;postage_chf;message``, same delimiter and encoding
as the import) before it is sent back, and appends the column ``tracking_url``: a link into the
partner's own shop for every accepted row, empty for a rejected one.

Runs as ``python3 -I stamp_export.py`` with LETTERSHOP_FILE naming the file to rewrite in place.
Standard library only.
"""

import csv
import io
import os
import sys
from urllib.parse import quote

TRACKING = "https://shop.alpina.example/tracking/{shipment_id}"


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
    if not rows or rows[0][:3] != ["reference", "status", "shipment_id"]:
        print(f"not a LetterShop export file: header {rows[0] if rows else 'missing'}", file=sys.stderr)
        return 2

    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow([*rows[0], "tracking_url"])
    linked = 0
    for row in rows[1:]:
        shipment_id = row[2] if len(row) > 2 else ""
        url = TRACKING.format(shipment_id=quote(shipment_id)) if shipment_id else ""
        linked += bool(url)
        writer.writerow([*row, url])

    with open(path, "wb") as handle:
        handle.write(out.getvalue().encode(encoding, "replace"))
    print(f"added tracking links to {linked} of {len(rows) - 1} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
