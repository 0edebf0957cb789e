"""Reading and writing the CSV text of import and export files.

* Encoding: UTF-8 (a BOM is allowed and remembered), failing that Windows-1252; or UTF-16 (little or
  big endian) when the file starts with its byte order mark, as Excel's "Unicode text" is written.
  NUL characters and UTF-32 byte order marks mean "not a CSV text file" (an Excel workbook renamed to
  .csv).
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

import codecs
import csv
import io
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from domain.errors import InvalidImportFile

Encoding = Literal["utf-8", "cp1252", "utf-16-le", "utf-16-be"]
DELIMITERS = (";", ",", "\t")
_SNIFF_SAMPLE_CHARS = 64 * 1024
_DECODE_CHUNK_BYTES = 256 * 1024
_FLUSH_CHARS = 64 * 1024  # export text encoded and written per chunk of about this size
_SPOOL_BYTES = 1024 * 1024  # an export larger than this is spooled to a temporary file
_FOREIGN_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)  # checked first: UTF-32 LE starts like UTF-16 LE
_UTF16_BOMS: tuple[tuple[bytes, Encoding], ...] = (
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_BOMS: dict[Encoding, bytes] = {"utf-8": codecs.BOM_UTF8, **{encoding: bom for bom, encoding in _UTF16_BOMS}}
_SEP_LINE = re.compile(r"sep=(.)(?:\r\n|\r|\n|\Z)", re.IGNORECASE)
_SEP_LINE_CHARS = 8  # "sep=X" and its line end: the characters looked at for it
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the line ends of io.StringIO(newline=""), as csv counts lines


@dataclass(frozen=True)
class TextFormat:
    """How an import file was written, so its export can be written the same way."""

    encoding: Encoding
    bom: bool
    line_terminator: str
    delimiter_hint: str | None = None  # the delimiter of a first line "sep=X", written back in the export


@dataclass(frozen=True)
class Record:
    """One CSV record and the file line it starts on (1-based, as a spreadsheet numbers rows)."""

    line: int
    cells: list[str]

    @property
    def is_blank(self) -> bool:
        """An empty line, or one with only blanks and delimiters (``;;;;`` from a spreadsheet)."""
        return all(not cell.strip() for cell in self.cells)


class TextSource:
    """An import file known to be text in one of the ``Encoding``s, read as text as often as needed.

    Nothing is decoded up front: ``open`` decodes incrementally, so one pass over the file holds a
    chunk of its text at a time, never the whole of it.
    """

    def __init__(self, data: bytes, text_format: TextFormat) -> None:
        self._data = data
        self._start = len(_BOMS[text_format.encoding]) if text_format.bom else 0
        self.format = text_format
        with self.open() as stream:
            hint = _delimiter_hint(stream.read(_SEP_LINE_CHARS))
        if hint is not None:
            self._start += len(hint[1].encode(text_format.encoding))
            self.format = replace(text_format, delimiter_hint=hint[0])

    def open(self) -> io.TextIOWrapper:
        """A fresh text stream over the file (after the BOM and a ``sep=`` line); lines end as written
        (``newline=""``)."""
        raw = io.BytesIO(self._data)  # shares the bytes, no copy
        raw.seek(self._start)
        return io.TextIOWrapper(raw, encoding=self.format.encoding, newline="")

    def sample(self) -> str:
        """The first ``_SNIFF_SAMPLE_CHARS`` characters or so, cut after a line end (for ``sniff``)."""
        with self.open() as stream:
            head = stream.read(_SNIFF_SAMPLE_CHARS + 1)
        if len(head) <= _SNIFF_SAMPLE_CHARS:
            return head
        cut = head.rfind("\n", 0, _SNIFF_SAMPLE_CHARS)
        return head[: cut if cut > 0 else _SNIFF_SAMPLE_CHARS]


def decode(filename: str, data: bytes) -> TextSource:
    """The file as text; ``InvalidImportFile`` when it is not UTF-8, Windows-1252 or UTF-16 text.

    The encoding is decided for the whole file: UTF-16 when it starts with a UTF-16 byte order mark,
    UTF-8 when every byte of it decodes as UTF-8, else Windows-1252. The check decodes chunk by chunk
    and keeps none of the text.
    """
    if data.startswith(_FOREIGN_BOMS):
        raise InvalidImportFile(
            f"{filename}: the file is UTF-32 encoded; send UTF-8, UTF-16 (with its byte order mark) or "
            "Windows-1252 text"
        )
    for utf16_bom, utf16 in _UTF16_BOMS:
        if data.startswith(utf16_bom):
            return _decode_utf16(filename, data, utf16)
    if b"\x00" in data:
        raise InvalidImportFile(f"{filename}: the file contains NUL bytes; it is not a CSV text file")
    bom = data.startswith(codecs.BOM_UTF8)
    start = len(codecs.BOM_UTF8) if bom else 0
    encoding: Encoding = "utf-8"
    if _first_undecodable(data, start, "utf-8") is not None:
        if bom:
            raise InvalidImportFile(
                f"{filename}: the file starts with a UTF-8 byte order mark but is not valid UTF-8"
            )
        bad = _first_undecodable(data, 0, "cp1252")
        if bad is not None:
            raise InvalidImportFile(
                f"{filename}: the file is neither UTF-8 nor Windows-1252 text (byte {bad})"
            )
        encoding = "cp1252"
    # Both encodings write CR and LF as the single bytes 0x0D and 0x0A, and no other character
    # contains those bytes: the line ends of the bytes are the line ends of the text.
    terminator = "\r\n" if b"\r\n" in data or b"\n" not in data else "\n"
    return TextSource(data, TextFormat(encoding=encoding, bom=bom, line_terminator=terminator))


def _decode_utf16(filename: str, data: bytes, encoding: Encoding) -> TextSource:
    """A file that starts with a UTF-16 byte order mark, checked to be UTF-16 text without NUL."""
    decoder = codecs.getincrementaldecoder(encoding)()
    view = memoryview(data)
    nul = crlf = lf = False
    last = ""
    try:
        for offset in range(len(codecs.BOM_UTF16_LE), len(data) + 1, _DECODE_CHUNK_BYTES):
            final = offset + _DECODE_CHUNK_BYTES >= len(data)
            text = last + decoder.decode(view[offset : offset + _DECODE_CHUNK_BYTES], final=final)
            nul, crlf, lf = nul or "\x00" in text, crlf or "\r\n" in text, lf or "\n" in text
            last = text[-1:]
    except UnicodeDecodeError:
        raise InvalidImportFile(
            f"{filename}: the file starts with a UTF-16 byte order mark but is not valid UTF-16 text"
        ) from None
    if nul:
        raise InvalidImportFile(f"{filename}: the file contains NUL characters; it is not a CSV text file")
    terminator = "\r\n" if crlf or not lf else "\n"
    return TextSource(data, TextFormat(encoding=encoding, bom=True, line_terminator=terminator))


def _delimiter_hint(head: str) -> tuple[str, str] | None:
    """The delimiter of Excel's hint line ``sep=X`` at the start of ``head``, and that line as written;
    None when there is none, or its ``X`` cannot be a delimiter (a quote, letter, digit, blank)."""
    match = _SEP_LINE.match(head)
    if match is None:
        return None
    delimiter = match.group(1)
    if delimiter != "\t" and (delimiter.isalnum() or not delimiter.isprintable() or delimiter in '" '):
        return None
    return delimiter, match.group(0)


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
            self._file.write(_BOMS[text_format.encoding])
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


def _first_undecodable(data: bytes, start: int, encoding: Encoding) -> int | None:
    """The offset of the first byte of ``data[start:]`` that does not decode, or None."""
    decoder = codecs.getincrementaldecoder(encoding)()
    view = memoryview(data)
    for offset in range(start, len(data), _DECODE_CHUNK_BYTES):
        try:
            decoder.decode(view[offset : offset + _DECODE_CHUNK_BYTES], final=False)
        except UnicodeDecodeError as exc:
            return offset + exc.start  # exact for Windows-1252, which keeps no state across chunks
    try:
        decoder.decode(b"", final=True)  # a UTF-8 sequence cut off by the end of the file
    except UnicodeDecodeError:
        return len(data)  # only UTF-8 keeps state, and its callers need no offset
    return None


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
