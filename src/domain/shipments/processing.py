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
* Streaming (issue 10): the file is read in passes, never held as text or rows. The first pass
  checks and counts the rows (keeping only each reference's first line, for duplicates); after the
  one ``allocate``, the second numbers the rows and writes the export (``csv_io.ExportWriter``,
  spooled to a temporary file). ``ProcessedFile.rows`` of a processed file reads the rows again
  each time it is iterated; the ``export_bytes`` are the only copy of the export in memory.
* Cells are data, never formulas (DESIGN §6). A reference that starts with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return is a row error, and the reference cell of such a rejected row
  stays empty (its message quotes the value, shortened, inside the sentence). Every other cell is
  produced here: ``product`` and ``weight_g`` carry only validated values (empty when invalid) and
  ``message`` always starts with a column name; ``export_cells`` still guards every cell
  (``partner_text.as_data``). Partner text in the summary is shortened to 40 characters, then ``…``.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from itertools import islice
from typing import overload

from domain.errors import InvalidImportFile
from domain.shipments import csv_io
from domain.shipments.countries import ISO_3166_ALPHA2
from domain.shipments.partner_text import leading, shorten
from domain.shipments.results import EXPORT_COLUMNS, RowResult, SerialSource, Status
from domain.shipments.rows import KNOWN_COLUMNS, REQUIRED_COLUMNS, CheckedRow, check_row, show
from domain.shipments.s10 import SERIAL_MAX, SERIAL_MIN, s10_id
from domain.shipments.tariff import Tariff, default_tariff

SUMMARY_REASONS = 5


@dataclass(frozen=True)
class ProcessedFile:
    """The result of one import file; ``export_bytes`` is the file to attach to the reply."""

    import_name: str
    export_name: str
    export_bytes: bytes = field(repr=False)
    accepted: int
    rejected: int
    total_postage_chf: Decimal
    rows: Sequence[RowResult] = field(default=(), repr=False)

    def summary(self, max_reasons: int = SUMMARY_REASONS) -> str:
        """A few human lines for the reply body: counts, total postage, the first rejection reasons."""
        total = self.accepted + self.rejected
        name = leading(self.import_name) if self.import_name else "import file"
        lines = [
            f"{name}: {total} {'row' if total == 1 else 'rows'}, {self.accepted} accepted, "
            f"{self.rejected} rejected, total postage CHF {self.total_postage_chf:.2f}"
        ]
        rejected = (row for row in self.rows if row.status is Status.REJECTED)
        shown = list(islice(rejected, max_reasons))
        lines.extend(f"  {row.describe()}" for row in shown)
        # Rows from process_import know their count; reading them all again only to count is slow.
        more = self.rows.rejected - len(shown) if isinstance(self.rows, _Rows) else sum(1 for _ in rejected)
        if more > 0:
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
    source = csv_io.decode(name, data)
    delimiter, scan = _read_table(name, source, max_rows)
    if max_rows is not None and scan.rows > max_rows:
        raise InvalidImportFile(
            f"{name}: the file has {scan.rows} data rows; at most {max_rows} are taken from one file "
            f"(max_rows_per_file). No shipment id was issued for it: split it into files of at most "
            f"{max_rows} rows and send them again"
        )

    block = _allocate(serials, scan.valid)

    def produce() -> Iterator[RowResult]:
        return _results(
            name,
            source,
            delimiter=delimiter,
            header=scan.header,
            block=block,
            issuer_country=issuer_country,
            prices=prices,
        )

    rows = _Rows(produce, count=scan.rows, rejected=scan.rows - scan.valid)
    accepted = 0
    total_postage = Decimal("0.00")
    writer = csv_io.ExportWriter(delimiter, source.format)
    try:
        writer.write(EXPORT_COLUMNS)
        for result in rows:  # the second pass: numbers each row and writes it, keeping none
            writer.write(result.export_cells())
            if result.status is Status.ACCEPTED:
                accepted += 1
                if result.postage_chf:
                    total_postage += result.postage_chf
        export = writer.finish()
    finally:
        writer.close()
    return ProcessedFile(
        import_name=filename,
        export_name=export_name(filename),
        export_bytes=export,
        accepted=accepted,
        rejected=scan.rows - accepted,
        total_postage_chf=total_postage,
        rows=rows,
    )


def export_name(filename: str) -> str:
    """``<import stem>_export.csv``; the name's folders, if any, are dropped (names are never paths)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if base.rfind(".") > 0 else base
    safe = "".join(char if char.isprintable() else "_" for char in stem).strip().lstrip(".")
    return f"{safe or 'import'}_export.csv"


@dataclass
class _Scan:
    """What one pass over the file with one delimiter found; no row is kept."""

    header: list[str]
    rows: int = 0  # data records (non-blank, after the header)
    valid: int = 0  # rows that pass every check (counted up to ``max_rows`` rows only)
    unclosed_quote_line: int | None = None


class _RowChecker:
    """``rows.check_row`` plus the checks that need the header or the rows before: extra cells and
    duplicate references (it keeps the first line of every reference, nothing else)."""

    def __init__(self, header: list[str]) -> None:
        self._header = header
        self._first_line_of: dict[str, int] = {}

    def check(self, record: csv_io.Record) -> CheckedRow:
        header = self._header
        row = check_row(dict(zip(header, record.cells, strict=False)))
        extra: list[str] = []
        if any(cell.strip() for cell in record.cells[len(header) :]):
            extra.append(f"the row has {len(record.cells)} values but the header has {len(header)} columns")
        if row.reference:
            earlier = self._first_line_of.setdefault(row.reference, record.line)
            if earlier != record.line:
                extra.append(f"reference {show(row.reference)} is a duplicate of row {earlier}")
        if extra:
            row = replace(row, problems=(*row.problems, *extra))
        return row


def _read_table(name: str, source: csv_io.TextSource, max_rows: int | None) -> tuple[str, _Scan]:
    """The delimiter and the first pass over the file: the normalised header (it must be valid),
    the number of data rows and of valid ones. Rows are checked as they are read and not kept."""
    attempts: list[_Scan] = []
    for delimiter in csv_io.candidate_delimiters(source):
        reader = csv_io.RecordReader(name, source, delimiter)
        records = iter(reader)
        first = next(records, None)
        if first is None:
            if reader.unclosed_quote_line is not None:
                raise InvalidImportFile(csv_io.unclosed_quote_problem(name, reader.unclosed_quote_line))
            raise InvalidImportFile(f"{name}: the file is empty")
        scan = _Scan(header=[cell.strip().lstrip("\ufeff").lower() for cell in first.cells])
        header = scan.header
        if all(column in header for column in REQUIRED_COLUMNS):
            duplicates = sorted({c for c in header if c in KNOWN_COLUMNS and header.count(c) > 1})
            checker = None if duplicates else _RowChecker(header)
            for record in records:
                scan.rows += 1
                if checker is not None and (max_rows is None or scan.rows <= max_rows):
                    scan.valid += checker.check(record).is_valid
            if reader.unclosed_quote_line is not None:
                raise InvalidImportFile(csv_io.unclosed_quote_problem(name, reader.unclosed_quote_line))
            if duplicates:
                raise InvalidImportFile(f"{name}: the header repeats columns: {', '.join(duplicates)}")
            return delimiter, scan
        scan.rows = sum(1 for _ in records)
        scan.unclosed_quote_line = reader.unclosed_quote_line
        attempts.append(scan)
    # Neither delimiter gives a complete header: explain it with the one that recognises more columns.
    scan = max(attempts, key=lambda attempt: sum(c in KNOWN_COLUMNS for c in attempt.header))
    header = scan.header
    if scan.unclosed_quote_line is not None and scan.rows == 0:
        # The header itself never ends: its quote swallowed the whole file.
        raise InvalidImportFile(csv_io.unclosed_quote_problem(name, scan.unclosed_quote_line))
    if not any(column in KNOWN_COLUMNS for column in header):
        raise InvalidImportFile(
            f"{name}: the first line is not a valid header; it must name the columns "
            f"{', '.join(REQUIRED_COLUMNS)} (and optionally the others of the import format)"
        )
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    raise InvalidImportFile(f"{name}: missing required columns: {', '.join(missing)}")


def _results(
    name: str,
    source: csv_io.TextSource,
    *,
    delimiter: str,
    header: list[str],
    block: range,
    issuer_country: str,
    prices: Tariff,
) -> Iterator[RowResult]:
    """The second pass: every data row's result, in order, numbered from ``block``."""
    records = iter(csv_io.RecordReader(name, source, delimiter))
    next(records)  # the header
    checker = _RowChecker(header)
    fresh = iter(block)
    for record in records:
        row = checker.check(record)
        if row.is_valid and row.product is not None and row.weight_g is not None:
            yield RowResult(
                line=record.line,
                reference=row.reference,
                status=Status.ACCEPTED,
                shipment_id=s10_id(row.product.service_indicator, next(fresh), issuer_country),
                product=row.product,
                weight_g=row.weight_g,
                postage_chf=prices.postage(row.product, row.weight_g),
            )
        else:
            yield RowResult(
                line=record.line,
                reference=row.reference,
                status=Status.REJECTED,
                shipment_id="",
                product=row.product,
                weight_g=row.weight_g,
                postage_chf=None,
                problems=row.problems,
            )


class _Rows(Sequence[RowResult]):
    """The rows of a processed file, read again from the import file on every pass over them.

    Keeping a ``RowResult`` per row would cost several times the file's size; the import bytes are
    kept anyway, and reading them again gives the same rows (the serial block is already allocated).
    """

    def __init__(self, produce: Callable[[], Iterator[RowResult]], *, count: int, rejected: int) -> None:
        self._produce = produce
        self._count = count
        self.rejected = rejected

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[RowResult]:
        return self._produce()

    @overload
    def __getitem__(self, index: int) -> RowResult: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[RowResult, ...]: ...

    def __getitem__(self, index: int | slice) -> RowResult | tuple[RowResult, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        position = range(self._count)[index]  # IndexError as a tuple raises it
        return next(islice(self, position, None))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"<{self._count} rows>"


def _allocate(serials: SerialSource, count: int) -> range:
    """One ``allocate`` call for the whole file (none for a file without valid rows)."""
    if count == 0:
        return range(0)
    block = serials.allocate(count)
    if len(block) != count or block.step != 1 or block[0] < SERIAL_MIN or block[-1] > SERIAL_MAX:
        raise RuntimeError(f"serial source returned {block!r} for {count} serials")
    return block
