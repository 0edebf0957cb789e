"""An import file as text: its encoding, byte order mark and Excel's ``sep=`` line (``csv_io``).

* Encoding: UTF-8 (a BOM is allowed and remembered), failing that Windows-1252; or UTF-16 (little or
  big endian) when the file starts with its byte order mark, as Excel's "Unicode text" is written.
  NUL characters and UTF-32 byte order marks mean "not a CSV text file" (an Excel workbook renamed to
  .csv).
* A first line ``sep=X`` (Excel's delimiter hint) is not part of the table: ``TextSource`` reads the
  text after it and remembers ``X`` (``TextFormat.delimiter_hint``).
* Nothing is decoded whole: the checks decode chunk by chunk and keep none of the text.
"""

import codecs
import io
import re
from dataclasses import dataclass, replace
from typing import Literal

from domain.errors import InvalidImportFile

Encoding = Literal["utf-8", "cp1252", "utf-16-le", "utf-16-be"]
_SNIFF_SAMPLE_CHARS = 64 * 1024
_DECODE_CHUNK_BYTES = 256 * 1024
_FOREIGN_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)  # checked first: UTF-32 LE starts like UTF-16 LE
_UTF16_BOMS: tuple[tuple[bytes, Encoding], ...] = (
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
BOMS: dict[Encoding, bytes] = {"utf-8": codecs.BOM_UTF8, **{encoding: bom for bom, encoding in _UTF16_BOMS}}
_SEP_LINE = re.compile(r"sep=(.)(?:\r\n|\r|\n|\Z)", re.IGNORECASE)
_SEP_LINE_CHARS = 8  # "sep=X" and its line end: the characters looked at for it


@dataclass(frozen=True)
class TextFormat:
    """How an import file was written, so its export can be written the same way."""

    encoding: Encoding
    bom: bool
    line_terminator: str
    delimiter_hint: str | None = None  # the delimiter of a first line "sep=X", written back in the export


class TextSource:
    """An import file known to be text in one of the ``Encoding``s, read as text as often as needed.

    Nothing is decoded up front: ``open`` decodes incrementally, so one pass over the file holds a
    chunk of its text at a time, never the whole of it.
    """

    def __init__(self, data: bytes, text_format: TextFormat) -> None:
        self._data = data
        self._start = len(BOMS[text_format.encoding]) if text_format.bom else 0
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
