"""LetterShop shipment import v1 (DESIGN §5): one import file in, one export file out.

``process_import`` reads the CSV, checks every row (``rows.check_row``), allocates one block of
serials for the valid rows (a single ``SerialSource.allocate`` call per file), gives each valid row
an S10 shipment id and its postage, and writes the export in the import's delimiter and encoding.

Decisions worth knowing:

* Row numbers in messages are file line numbers (header = row 1, blank lines counted), so they
  match the row numbers the partner sees in a spreadsheet.
* Blank lines (also ``;;;;`` lines) are skipped and produce no export row. Columns the import has
  beyond the known ones are ignored; a repeated known column makes the header invalid. Extra
  non-blank cells beyond the header reject that row; missing trailing cells count as empty.
* A reference is compared exactly (after trimming). Any later row that repeats the reference of an
  earlier row, valid or not, is rejected as a duplicate; the first one stands on its own merits.
* A header with no data rows is a valid, empty import: the export holds only its header line.
* Caps: a file with more data rows than ``max_rows`` (the channel's ``max_rows_per_file``) is an
  ``InvalidImportFile`` that names the cap; rows are counted after reading, before ``allocate``, so
  no serial is spent on it. A quote that opens a cell and is never closed fails the file too, naming
  the line (``csv_io``): the rows after it would be lost, and a partner fixes and re-sends a file
  safely only when none of its rows was issued an id.
* Cells are data, never formulas (DESIGN §6). A reference that starts with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return is a row error, and the reference cell of such a rejected row
  stays empty (its message quotes the value, shortened, inside the sentence). Every other cell is
  produced here: ``product`` and ``weight_g`` carry only validated values (empty when invalid) and
  ``message`` always starts with a column name; ``export_cells`` still guards every cell
  (``partner_text.as_data``). Partner text in the summary is shortened to 40 characters, then ``…``.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from domain.errors import InvalidImportFile
from domain.shipments import csv_io
from domain.shipments.countries import ISO_3166_ALPHA2
from domain.shipments.partner_text import as_data, leading, shorten, starts_like_formula
from domain.shipments.products import Product
from domain.shipments.rows import KNOWN_COLUMNS, REQUIRED_COLUMNS, CheckedRow, check_row, show
from domain.shipments.s10 import SERIAL_MAX, SERIAL_MIN, s10_id
from domain.shipments.tariff import Tariff, default_tariff

EXPORT_COLUMNS = ("reference", "status", "shipment_id", "product", "weight_g", "postage_chf", "message")
SUMMARY_REASONS = 5


class SerialSource(Protocol):
    """Where S10 serials come from (the atomic counter in the state table)."""

    def allocate(self, count: int) -> range:
        """``count`` fresh serials in 1..99_999_999 that were never handed out before."""
        ...


class Status(StrEnum):
    """Outcome of one import row."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class RowResult:
    """One export row: the outcome of the import row that starts on file line ``line``."""

    line: int
    reference: str
    status: Status
    shipment_id: str
    product: Product | None
    weight_g: int | None
    postage_chf: Decimal | None
    problems: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """Every problem of the row, ``"; "``-joined; empty for an accepted row."""
        return "; ".join(self.problems)

    def export_cells(self) -> list[str]:
        """The row's cells in ``EXPORT_COLUMNS`` order; none starts with a formula character."""
        cells = [
            "" if starts_like_formula(self.reference) else self.reference,
            self.status.value,
            self.shipment_id,
            self.product.value if self.product else "",
            "" if self.weight_g is None else str(self.weight_g),
            "" if self.postage_chf is None else f"{self.postage_chf:.2f}",
            self.message,
        ]
        return [as_data(cell) for cell in cells]

    def describe(self) -> str:
        """``row 4 (reference R-4): <message>`` for the reply body (the reference shortened)."""
        reference = shorten(self.reference)
        where = f"row {self.line} (reference {reference})" if reference else f"row {self.line}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class ProcessedFile:
    """The result of one import file; ``export_bytes`` is the file to attach to the reply."""

    import_name: str
    export_name: str
    export_bytes: bytes = field(repr=False)
    accepted: int
    rejected: int
    total_postage_chf: Decimal
    rows: tuple[RowResult, ...] = field(default=(), repr=False)

    def summary(self, max_reasons: int = SUMMARY_REASONS) -> str:
        """A few human lines for the reply body: counts, total postage, the first rejection reasons."""
        total = self.accepted + self.rejected
        name = leading(self.import_name) if self.import_name else "import file"
        lines = [
            f"{name}: {total} {'row' if total == 1 else 'rows'}, {self.accepted} accepted, "
            f"{self.rejected} rejected, total postage CHF {self.total_postage_chf:.2f}"
        ]
        rejected = [row for row in self.rows if row.status is Status.REJECTED]
        lines.extend(f"  {row.describe()}" for row in rejected[:max_reasons])
        if len(rejected) > max_reasons:
            more = len(rejected) - max_reasons
            noun = "row" if more == 1 else "rows"
            lines.append(f"  ... and {more} more rejected {noun}, see {self.export_name}")
        return "\n".join(lines)


def process_import(
    filename: str,
    data: bytes,
    serials: SerialSource,
    *,
    issuer_country: str = "CH",
    tariff: Tariff | None = None,
    max_rows: int | None = None,
) -> ProcessedFile:
    """Process one import file; ``InvalidImportFile`` when it has no usable header, is not text,
    has a quote that is never closed, or has more than ``max_rows`` data rows (None: no cap)."""
    if issuer_country not in ISO_3166_ALPHA2:
        raise ValueError(f"issuer_country must be an ISO 3166-1 alpha-2 code, got {issuer_country!r}")
    prices = tariff or default_tariff()
    name = shorten(filename) if filename else "import file"  # as the file is named in messages
    text, text_format = csv_io.decode(name, data)
    delimiter, header, records = _read_table(name, text)
    if max_rows is not None and len(records) > max_rows:
        raise InvalidImportFile(
            f"{name}: the file has {len(records)} data rows; at most {max_rows} are taken from one file "
            f"(max_rows_per_file). No shipment id was issued for it: split it into files of at most "
            f"{max_rows} rows and send them again"
        )

    checked = _check_rows(header, records)
    valid_count = sum(1 for _, row in checked if row.is_valid)
    fresh = _allocate(serials, valid_count)

    results: list[RowResult] = []
    for line, row in checked:
        if row.is_valid and row.product is not None and row.weight_g is not None:
            results.append(
                RowResult(
                    line=line,
                    reference=row.reference,
                    status=Status.ACCEPTED,
                    shipment_id=s10_id(row.product.service_indicator, next(fresh), issuer_country),
                    product=row.product,
                    weight_g=row.weight_g,
                    postage_chf=prices.postage(row.product, row.weight_g),
                )
            )
        else:
            results.append(
                RowResult(
                    line=line,
                    reference=row.reference,
                    status=Status.REJECTED,
                    shipment_id="",
                    product=row.product,
                    weight_g=row.weight_g,
                    postage_chf=None,
                    problems=row.problems,
                )
            )

    export = csv_io.encode(
        [EXPORT_COLUMNS, *(result.export_cells() for result in results)], delimiter, text_format
    )
    accepted = [result for result in results if result.status is Status.ACCEPTED]
    return ProcessedFile(
        import_name=filename,
        export_name=export_name(filename),
        export_bytes=export,
        accepted=len(accepted),
        rejected=len(results) - len(accepted),
        total_postage_chf=sum((r.postage_chf for r in accepted if r.postage_chf), Decimal("0.00")),
        rows=tuple(results),
    )


def export_name(filename: str) -> str:
    """``<import stem>_export.csv``; the name's folders, if any, are dropped (names are never paths)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if base.rfind(".") > 0 else base
    safe = "".join(char if char.isprintable() else "_" for char in stem).strip().lstrip(".")
    return f"{safe or 'import'}_export.csv"


def _read_table(name: str, text: str) -> tuple[str, list[str], list[csv_io.Record]]:
    """The delimiter, the normalised header and the data records; the header must be valid."""
    attempts: list[tuple[str, list[str], csv_io.Table]] = []
    for delimiter in csv_io.candidate_delimiters(text):
        table = csv_io.read_records(name, text, delimiter)
        records = table.records
        if not records:
            if table.unclosed_quote_line is not None:
                raise InvalidImportFile(csv_io.unclosed_quote_problem(name, table.unclosed_quote_line))
            raise InvalidImportFile(f"{name}: the file is empty")
        header = [cell.strip().lstrip("\ufeff").lower() for cell in records[0].cells]
        if all(column in header for column in REQUIRED_COLUMNS):
            if table.unclosed_quote_line is not None:
                raise InvalidImportFile(csv_io.unclosed_quote_problem(name, table.unclosed_quote_line))
            duplicates = sorted({c for c in header if c in KNOWN_COLUMNS and header.count(c) > 1})
            if duplicates:
                raise InvalidImportFile(f"{name}: the header repeats columns: {', '.join(duplicates)}")
            return delimiter, header, records[1:]
        attempts.append((delimiter, header, table))
    # Neither delimiter gives a complete header: explain it with the one that recognises more columns.
    _, header, table = max(attempts, key=lambda attempt: sum(c in KNOWN_COLUMNS for c in attempt[1]))
    if table.unclosed_quote_line is not None and len(table.records) == 1:
        # The header itself never ends: its quote swallowed the whole file.
        raise InvalidImportFile(csv_io.unclosed_quote_problem(name, table.unclosed_quote_line))
    if not any(column in KNOWN_COLUMNS for column in header):
        raise InvalidImportFile(
            f"{name}: the first line is not a valid header; it must name the columns "
            f"{', '.join(REQUIRED_COLUMNS)} (and optionally the others of the import format)"
        )
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    raise InvalidImportFile(f"{name}: missing required columns: {', '.join(missing)}")


def _check_rows(header: list[str], records: list[csv_io.Record]) -> list[tuple[int, CheckedRow]]:
    checked: list[tuple[int, CheckedRow]] = []
    first_line_of: dict[str, int] = {}
    for record in records:
        row = check_row(dict(zip(header, record.cells, strict=False)))
        extra: list[str] = []
        if any(cell.strip() for cell in record.cells[len(header) :]):
            extra.append(f"the row has {len(record.cells)} values but the header has {len(header)} columns")
        if row.reference:
            earlier = first_line_of.setdefault(row.reference, record.line)
            if earlier != record.line:
                extra.append(f"reference {show(row.reference)} is a duplicate of row {earlier}")
        if extra:
            row = replace(row, problems=(*row.problems, *extra))
        checked.append((record.line, row))
    return checked


def _allocate(serials: SerialSource, count: int) -> Iterator[int]:
    """One ``allocate`` call for the whole file (none for a file without valid rows)."""
    if count == 0:
        return iter(())
    block = serials.allocate(count)
    if len(block) != count or block.step != 1 or block[0] < SERIAL_MIN or block[-1] > SERIAL_MAX:
        raise RuntimeError(f"serial source returned {block!r} for {count} serials")
    return iter(block)
