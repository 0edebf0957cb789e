"""Reading and writing the CSV text of import and export files.

* Encoding: UTF-8 (a BOM is allowed and remembered), failing that Windows-1252. NUL bytes and UTF-16/32
  byte order marks mean "not a CSV text file" (an Excel workbook renamed to .csv, a UTF-16 export).
* Delimiter: ``;`` or ``,``. ``csv.Sniffer`` (restricted to those two) makes the first guess; when it
  cannot decide, the more frequent of the two in the first line wins. The caller tries the other one
  too when the guess does not give a valid header (see ``candidate_delimiters``).
* Quoting is always ``"`` with doubled quotes inside (RFC 4180); only the delimiter is sniffed. A
  quote in the middle of a cell is an ordinary character. A quote that opens a cell and is never
  closed would make the rest of the file one cell (``csv`` says nothing about it): ``read_records``
  reports the line where it opened (``Table.unclosed_quote_line``), and the file is not processed.
* The export keeps the import's encoding, BOM, delimiter and line ending (CRLF or LF).
"""

import codecs
import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from domain.errors import InvalidImportFile

Encoding = Literal["utf-8", "cp1252"]
DELIMITERS = (";", ",")
_SNIFF_SAMPLE_CHARS = 64 * 1024
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the line ends of io.StringIO(newline=""), as csv counts lines


@dataclass(frozen=True)
class TextFormat:
    """How an import file was written, so its export can be written the same way."""

    encoding: Encoding
    bom: bool
    line_terminator: str


@dataclass(frozen=True)
class Record:
    """One CSV record and the file line it starts on (1-based, as a spreadsheet numbers rows)."""

    line: int
    cells: list[str]

    @property
    def is_blank(self) -> bool:
        """An empty line, or one with only blanks and delimiters (``;;;;`` from a spreadsheet)."""
        return all(not cell.strip() for cell in self.cells)


@dataclass(frozen=True)
class Table:
    """The non-blank records of a file, read with one delimiter.

    ``unclosed_quote_line`` is the line where a quoted cell opens that the file never closes: that
    cell swallowed everything after it, so ``records`` does not hold the rows the partner sent.
    """

    records: list[Record]
    unclosed_quote_line: int | None = None


def decode(filename: str, data: bytes) -> tuple[str, TextFormat]:
    """The file's text and format; ``InvalidImportFile`` when it is not UTF-8 or Windows-1252 text."""
    for foreign_bom, name in _FOREIGN_BOMS:
        if data.startswith(foreign_bom):
            raise InvalidImportFile(
                f"{filename}: the file is {name} encoded; send UTF-8 or Windows-1252 text"
            )
    if b"\x00" in data:
        raise InvalidImportFile(f"{filename}: the file contains NUL bytes; it is not a CSV text file")
    bom = data.startswith(codecs.BOM_UTF8)
    encoding: Encoding
    try:
        text = data[len(codecs.BOM_UTF8) :].decode("utf-8") if bom else data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        if bom:
            raise InvalidImportFile(
                f"{filename}: the file starts with a UTF-8 byte order mark but is not valid UTF-8"
            ) from None
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise InvalidImportFile(
                f"{filename}: the file is neither UTF-8 nor Windows-1252 text (byte {exc.start})"
            ) from None
        encoding = "cp1252"
    terminator = "\r\n" if "\r\n" in text or "\n" not in text else "\n"
    return text, TextFormat(encoding=encoding, bom=bom, line_terminator=terminator)


def candidate_delimiters(text: str) -> tuple[str, str]:
    """Both delimiters, the more likely one first."""
    sample = _sample(text)
    try:
        guess = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        first_line = next((line for line in sample.splitlines() if line.strip()), "")
        guess = "," if first_line.count(",") > first_line.count(";") else ";"
    return (guess, ",") if guess == ";" else (guess, ";")


def read_records(filename: str, text: str, delimiter: str) -> Table:
    """Every non-blank record of ``text``, in order, with the line it starts on."""
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True)
    records: list[Record] = []
    next_line, next_start = 1, 0  # where the record about to be read starts: line and offset
    last_line, last_start = 1, 0  # where the last record read (blank or not) starts
    try:
        for cells in reader:
            record = Record(line=next_line, cells=cells)
            last_line, last_start = next_line, next_start
            next_line, next_start = reader.line_num + 1, lines.consumed
            if not record.is_blank:
                records.append(record)
    except csv.Error as exc:
        # e.g. "field larger than field limit": most likely a quote that is never closed
        opened = _unclosed_quote_line(text, next_start, next_line, delimiter)
        if opened is None:
            raise InvalidImportFile(
                f"{filename}: line {reader.line_num}: not readable as CSV ({exc})"
            ) from None
        return Table(records, unclosed_quote_line=opened)
    return Table(records, unclosed_quote_line=_unclosed_quote_line(text, last_start, last_line, delimiter))


def unclosed_quote_problem(filename: str, line: int) -> str:
    """The reason a file with a quote that is never closed is not processed."""
    return (
        f'{filename}: line {line}: a quote (") opens a cell there and is never closed, so the rest of '
        "the file would be read as that one cell; no row of this file was imported. Close the quote "
        '(a quote inside a cell is written twice, "") and send the file again'
    )


def encode(rows: Iterable[Sequence[str]], delimiter: str, text_format: TextFormat) -> bytes:
    """CSV bytes for ``rows`` in the given delimiter and format (minimal RFC 4180 quoting)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(
        buffer,
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        quoting=csv.QUOTE_MINIMAL,
        lineterminator=text_format.line_terminator,
    )
    writer.writerows(rows)
    body = buffer.getvalue().encode(text_format.encoding, errors="replace")
    return codecs.BOM_UTF8 + body if text_format.bom else body


class _Lines:
    """The lines of ``text`` as ``csv.reader`` takes them, counting the characters handed out."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline="")
        self.consumed = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.consumed += len(line)
        return line


def _unclosed_quote_line(text: str, start: int, line: int, delimiter: str) -> int | None:
    """The line of the quote that opens a cell of the record at ``text[start:]`` (which starts on
    ``line``) and is never closed; None when every quoted cell closes.

    The same reading as ``csv.reader`` (not strict): a quote opens a cell only at the cell's start;
    inside it, ``""`` is a quote and ``"`` closes it; after it, quotes are ordinary characters.
    """
    cell_end = re.compile(f"[{re.escape(delimiter)}\r\n]")
    position = start
    while position < len(text):
        if text[position] == '"':
            opened = position
            position += 1
            while True:
                close = text.find('"', position)
                if close < 0:
                    return line + len(_LINE_BREAK.findall(text, start, opened))
                if text.startswith('"', close + 1):
                    position = close + 2
                    continue
                position = close + 1
                break
        end = cell_end.search(text, position)
        if end is None:
            return None
        position = end.end()
    return None


def _sample(text: str) -> str:
    if len(text) <= _SNIFF_SAMPLE_CHARS:
        return text
    cut = text.rfind("\n", 0, _SNIFF_SAMPLE_CHARS)
    return text[: cut if cut > 0 else _SNIFF_SAMPLE_CHARS]
