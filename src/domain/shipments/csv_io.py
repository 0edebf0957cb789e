"""Reading and writing the CSV text of import and export files.

* Encoding, byte order mark and Excel's ``sep=`` line: ``text_source`` (``decode``, ``TextSource``).
* Delimiter: a first line ``sep=X`` (Excel's delimiter hint) decides it: ``X`` is the delimiter and
  that line is not part of the table (Excel does not show it; line numbers count from the line after
  it). Otherwise ``;``, ``,`` or a tab: ``csv.Sniffer`` (restricted to those) makes the first guess;
  when it cannot decide, the most frequent of them in the first line wins. The caller tries the others
  too when the guess does not give a valid header (see ``candidate_delimiters``).
* Quoting is always ``"`` with doubled quotes inside (RFC 4180); only the delimiter is sniffed. A
  quote in the middle of a cell is an ordinary character. A quote that opens a cell and is never
  closed would make the rest of the file one cell (``csv`` says nothing about it): ``RecordReader``
  reports the line where it opened (``unclosed_quote_line``), and the file is not processed.
* The export keeps the import's encoding, BOM, delimiter, ``sep=`` line and line ending (CRLF or LF).
* Streaming: the file is never decoded whole. ``TextSource`` decodes a fresh pass chunk by chunk,
  ``RecordReader`` holds one record at a time, and ``ExportWriter`` spools the export to a temporary
  file past ``_SPOOL_BYTES``; the caller reads the file in as many passes as it needs.
"""

import csv
import io
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from domain.errors import InvalidImportFile
from domain.shipments.text_source import BOMS, TextFormat, TextSource, decode

# The text side (``text_source``) is part of this module's interface, as before it was split off.
__all__ = [
    "DELIMITERS",
    "ExportWriter",
    "Record",
    "RecordReader",
    "TextFormat",
    "TextSource",
    "candidate_delimiters",
    "decode",
    "unclosed_quote_problem",
]

DELIMITERS = (";", ",", "\t")
_FLUSH_CHARS = 64 * 1024  # export text encoded and written per chunk of about this size
_SPOOL_BYTES = 1024 * 1024  # an export larger than this is spooled to a temporary file
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the line ends of io.StringIO(newline=""), as csv counts lines


@dataclass(frozen=True)
class Record:
    """One CSV record and the file line it starts on (1-based, as a spreadsheet numbers rows)."""

    line: int
    cells: list[str]

    @property
    def is_blank(self) -> bool:
        """An empty line, or one with only blanks and delimiters (``;;;;`` from a spreadsheet)."""
        return all(not cell.strip() for cell in self.cells)


def candidate_delimiters(source: TextSource) -> tuple[str, ...]:
    """The delimiter of a ``sep=`` line alone; else every delimiter, the most likely one first."""
    if source.format.delimiter_hint is not None:
        return (source.format.delimiter_hint,)
    sample = source.sample()
    try:
        guess = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        first_line = next((line for line in sample.splitlines() if line.strip()), "")
        guess = max(DELIMITERS, key=first_line.count)  # the first of equals: ";" before ","
    return (guess, *(delimiter for delimiter in DELIMITERS if delimiter != guess))


class RecordReader:
    """Every non-blank record of the file, in order, with the line it starts on: one pass, one
    record in memory at a time.

    After the iteration, ``unclosed_quote_line`` is the line where a quoted cell opens that the file
    never closes (that cell swallowed everything after it, so the records read are not the rows the
    partner sent), or None. A file that is not readable as CSV for another reason raises
    ``InvalidImportFile`` during the iteration.
    """

    def __init__(self, filename: str, source: TextSource, delimiter: str) -> None:
        self._filename = filename
        self._source = source
        self._delimiter = delimiter
        self.unclosed_quote_line: int | None = None

    def __iter__(self) -> Iterator[Record]:
        with self._source.open() as stream:
            lines = _Lines(stream)
            reader = csv.reader(lines, delimiter=self._delimiter, quotechar='"', doublequote=True)
            next_line = 1  # the line the record about to be read starts on
            last_line, last_text = 1, ""  # the last record read (blank or not): its line and text
            try:
                for cells in reader:
                    record = Record(line=next_line, cells=cells)
                    last_line, last_text = next_line, lines.take()
                    next_line = reader.line_num + 1
                    if not record.is_blank:
                        yield record
            except csv.Error as exc:
                # e.g. "field larger than field limit": most likely a quote that is never closed
                rest = lines.take() + stream.read()
                opened = _unclosed_quote_line(rest, 0, next_line, self._delimiter)
                if opened is None:
                    raise InvalidImportFile(
                        f"{self._filename}: line {reader.line_num}: not readable as CSV ({exc})"
                    ) from None
                self.unclosed_quote_line = opened
                return
            tail = last_text + lines.take()
            self.unclosed_quote_line = _unclosed_quote_line(tail, 0, last_line, self._delimiter)


def unclosed_quote_problem(filename: str, line: int) -> str:
    """The reason a file with a quote that is never closed is not processed."""
    return (
        f'{filename}: line {line}: a quote (") opens a cell there and is never closed, so the rest of '
        "the file would be read as that one cell; no row of this file was imported. Close the quote "
        '(a quote inside a cell is written twice, "") and send the file again'
    )


class ExportWriter:
    """Writes the export row by row: CSV in the given delimiter and format (minimal RFC 4180
    quoting), spooled to a temporary file once it grows past ``spool_bytes``."""

    def __init__(self, delimiter: str, text_format: TextFormat, spool_bytes: int = _SPOOL_BYTES) -> None:
        self._format = text_format
        self._file = tempfile.SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115 (closed in finish)
        self._buffer = io.StringIO(newline="")
        self._writer = csv.writer(
            self._buffer,
            delimiter=delimiter,
            quotechar='"',
            doublequote=True,
            quoting=csv.QUOTE_MINIMAL,
            lineterminator=text_format.line_terminator,
        )
        if text_format.bom:
            self._file.write(BOMS[text_format.encoding])
        if text_format.delimiter_hint is not None:  # so that Excel opens the export as it opened the import
            self._buffer.write(f"sep={text_format.delimiter_hint}{text_format.line_terminator}")

    def write(self, row: Sequence[str]) -> None:
        """One export row."""
        self._writer.writerow(row)
        if self._buffer.tell() >= _FLUSH_CHARS:
            self._flush()

    def finish(self) -> bytes:
        """The export file's bytes; the writer is closed."""
        try:
            self._flush()
            self._file.seek(0)
            return self._file.read()
        finally:
            self.close()

    def close(self) -> None:
        """Drop what was written (also after ``finish``)."""
        self._file.close()
        self._buffer.close()

    def _flush(self) -> None:
        # The encoders keep no state (UTF-16 with its byte order given writes no BOM), so encoding chunk
        # by chunk gives the bytes of the whole text.
        self._file.write(self._buffer.getvalue().encode(self._format.encoding, errors="replace"))
        self._buffer.seek(0)
        self._buffer.truncate()


class _Lines:
    """The lines of a text stream as ``csv.reader`` takes them, keeping those handed out since the
    last ``take`` (the text of the record being read)."""

    def __init__(self, stream: io.TextIOWrapper) -> None:
        self._stream = stream
        self._pending: list[str] = []

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = self._stream.readline()
        if not line:
            raise StopIteration
        self._pending.append(line)
        return line

    def take(self) -> str:
        """The text handed out since the last call."""
        text = "".join(self._pending)
        self._pending = []
        return text


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
