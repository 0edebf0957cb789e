"""Prescript: a partner's tab-separated list -> the LetterShop shipment import v1 CSV (docs/processing.md).

The partner's columns (header row, any order, case-insensitive):

    Ref  Recipient  Company  Street  No  ZIP  Town  Country  Product  Grams

``Company``, ``No``, ``Country`` and ``Product`` may be missing. A file that already has the
canonical header (``reference;...``) is left as it is, so the script is safe on every import file.

Runs as ``python3 -I tsv_to_canonical.py`` with LETTERSHOP_FILE naming the file to rewrite in place.
Standard library only. Exit 0 = done; anything else fails this import file, and the last lines of
stderr are shown to the partner.
"""

import csv
import io
import os
import sys

COLUMNS = {  # partner column -> canonical column
    "ref": "reference",
    "recipient": "name",
    "company": "company",
    "street": "street",
    "no": "house_number",
    "zip": "postcode",
    "town": "city",
    "country": "country",
    "product": "product",
    "grams": "weight_g",
}
REQUIRED = ("ref", "recipient", "street", "zip", "town", "grams")


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def main() -> int:
    path = os.environ["LETTERSHOP_FILE"]
    with open(path, "rb") as handle:
        text = decode(handle.read())
    first_line = text.split("\n", 1)[0]
    if "\t" not in first_line and "reference" in first_line.lower():
        print("already in the canonical format; left unchanged")
        return 0

    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows:
        print("the file is empty", file=sys.stderr)
        return 2
    header = [name.strip().lower() for name in rows[0]]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        print(
            f"{os.environ.get('LETTERSHOP_FILENAME', 'the file')}: columns missing: {', '.join(missing)} "
            f"(expected tab-separated columns Ref, Recipient, Street, No, ZIP, Town, Grams)",
            file=sys.stderr,
        )
        return 2
    known = [(index, COLUMNS[name]) for index, name in enumerate(header) if name in COLUMNS]

    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow([canonical for _, canonical in known])
    converted = 0
    for row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        writer.writerow([row[index].strip() if index < len(row) else "" for index, _ in known])
        converted += 1

    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(out.getvalue())
    print(f"converted {converted} rows from tab-separated partner columns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
