"""Import files out of a full raw message (DESIGN §3 "Import files").

Every leaf part with a name is an attachment; those whose safe name matches one of the channel's
``import_file_patterns`` (case-insensitive globs) are import files, the others are listed by name for
the error reply. Forwarded messages (``message/rfc822``, also when base64- or quoted-printable-encoded)
and Outlook ``winmail.dat`` (TNEF) are containers: we look inside them instead of treating them as
attachments. A part without a name (a body, a nameless ``text/csv``), or with a name of which nothing
is left once made safe (only dots, separators, control or bidi characters), is never an import file:
it is listed as an unnamed attachment.

The structure comes from ``email`` with ``policy.default`` (``compat32`` when that one gives up); the
headers of each part are read by our own tolerant code, so a broken header never raises later.
"""

from __future__ import annotations

import binascii
import io
import quopri
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.errors import (
    InvalidBase64PaddingDefect,
    MultipartInvariantViolationDefect,
    StartBoundaryNotFoundDefect,
)
from email.message import EmailMessage, Message
from fnmatch import fnmatchcase
from typing import IO, TYPE_CHECKING, Any

from domain.bounds import (
    BoundExceeded,
    PartBudget,
    body_chunks,
    check_header_fields,
    parse_bounded,
    spooled_body,
    unspool_body,
)
from domain.errors import RejectedMessage
from domain.filenames import attachment_name, clean_filename, unique_filename
from domain.headers import Headers, decode_header_bytes, header_lines, parse_headers
from domain.shipments.partner_text import shorten
from domain.tnef import SIGNATURE, TnefError, TnefFile, read_tnef

_TNEF_TYPES = {"application/ms-tnef", "application/vnd.ms-tnef"}
_MAX_MESSAGE_NESTING = 5
# Boundary defects that lose parts; a missing close delimiter (CloseBoundaryNotFoundDefect) loses
# none - every part up to the end was read - so it does not count against a reading.
_BOUNDARY_DEFECTS = (StartBoundaryNotFoundDefect, MultipartInvariantViolationDefect)
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_MIME_TYPE = re.compile(r"[a-z0-9!#$&.+^_`{|}~-]+/[a-z0-9!#$&.+^_`{|}~-]+")
_UU_ENCODINGS = ("x-uuencode", "uuencode", "uue", "x-uue")
_DECODE_PIECE = 256 * 1024  # bytes of a spooled body read and decoded at a time
_HEAD_READ = 64 * 1024  # the header block of a message given as a file is read in growing pieces

type _Part = Message[Any, Any]

if TYPE_CHECKING:
    _Compat32Message = Message[str, str]
else:
    _Compat32Message = Message  # not subscriptable at run time


@dataclass(frozen=True)
class ImportFile:
    filename: str  # decoded, safe base name, never empty, unique within the message
    content: bytes
    problem: str | None = None  # why it cannot be processed (it arrived cut short); content is then b""


@dataclass(frozen=True)
class ParsedMessage:
    headers: Headers
    import_files: tuple[ImportFile, ...]
    other_attachments: tuple[str, ...]  # safe names of attachments that are not import files
    defects: tuple[str, ...]  # what the parser found wrong, in words, for the log


def _children(part: _Part) -> list[_Part]:
    """Sub-parts of a multipart or message/* part; [] for a leaf (no header is read for this)."""
    if not part.is_multipart():
        return []
    payload = part.get_payload()
    return [child for child in payload if isinstance(child, Message)] if isinstance(payload, list) else []


def _boundary_trouble(message: _Part) -> tuple[int, int]:
    """How many multiparts lost parts at their boundary, and minus how many parts were found
    (iterative: nesting may be deep). Less is better: at equal trouble, the reading that found more
    parts lost fewer of them."""
    trouble = parts = 0
    stack = [message]
    while stack:
        part = stack.pop()
        parts += 1
        trouble += sum(isinstance(defect, _BOUNDARY_DEFECTS) for defect in part.defects)
        stack.extend(_children(part))
    return trouble, -parts


def _parse(raw: bytes | IO[bytes], label: str, budget: PartBudget) -> tuple[_Part, list[str]]:
    """Parse with policy.default; with compat32 when that raises or cannot find boundaries.

    compat32 reads unquoted boundaries containing ``=`` (Outlook's ``----=_NextPart_...``), which the
    modern parameter parser cuts short; and it never parses headers lazily, so it never raises on one.
    Both readings stop at the parse bounds (``domain.bounds``); the parts of the reading taken are
    spent from ``budget``.
    """
    modern: _Part | None = None
    modern_parts = 0
    try:
        modern, modern_parts = parse_bounded(raw, _ModernPart, policy.default, budget)
        trouble = _boundary_trouble(modern)
        if not trouble[0]:
            budget.used += modern_parts
            return modern, []
        note = f"{label}: read with compat32, policy.default could not find {trouble[0]} boundary(ies)"
    except BoundExceeded:
        raise
    except Exception as exc:  # the modern header parser raises lazily on some broken headers
        trouble = (0, 0)
        note = f"{label}: read with compat32 after {type(exc).__name__} in policy.default"
    try:
        legacy, legacy_parts = parse_bounded(raw, _LegacyPart, policy.compat32, budget)
        if modern is None or _boundary_trouble(legacy) < trouble:
            budget.used += legacy_parts
            return legacy, [note]
    except BoundExceeded:
        raise
    except Exception as exc:
        if modern is None:
            raise RejectedMessage(f"message cannot be parsed: {type(exc).__name__}: {exc}") from exc
    budget.used += modern_parts
    return modern, []


def _headers_of(part: _Part) -> dict[str, str]:
    """First value of each header of one part, decoded our tolerant way; keys lower case."""
    result: dict[str, str] = {}
    for name, value in part.raw_items():
        text = str(value)
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeError:
            data = text.encode("utf-8", "replace")
        result.setdefault(name.strip().lower(), " ".join(decode_header_bytes(data).split()))
    return result


def _content_type(headers: dict[str, str]) -> str:
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind if "/" in kind else "text/plain"


def _quoted_printable_message(part: _Part) -> bool:
    """A ``message/rfc822`` part in quoted-printable (not allowed by RFC 2046, sent anyway)."""
    headers = _headers_of(part)
    encoding = headers.get("content-transfer-encoding", "").strip().lower()
    return _content_type(headers) == "message/rfc822" and encoding == "quoted-printable"


class _LegacyPart(_Compat32Message):
    """compat32's part, except that a quoted-printable ``message/rfc822`` stays one leaf.

    The parser reads every ``message/*`` body as a message, whatever its transfer encoding. Read so,
    a quoted-printable one loses its soft line breaks and ``=3D`` escapes into header fields that end
    too early; kept whole, its raw body can be decoded and then parsed (``_Collector.part``).
    """

    def get_content_maintype(self) -> str:
        maintype = super().get_content_maintype()
        return "application" if maintype == "message" and _quoted_printable_message(self) else maintype


class _ModernPart(EmailMessage):
    """policy.default's part, with the same exception as ``_LegacyPart``."""

    def get_content_maintype(self) -> str:
        maintype = super().get_content_maintype()
        return "application" if maintype == "message" and _quoted_printable_message(self) else maintype


def _lenient_base64(data: bytes) -> bytes:
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
    try:
        return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        return b""


def _payload(part: _Part, headers: dict[str, str]) -> bytes:
    """The decoded content. The email package's own decoding is used only where it reads the
    Content-Transfer-Encoding as we do: it takes ``base64 `` (a blank after it) for an unknown
    encoding, and its quoted-printable decoder drops the rest of a file written with lone-CR line
    breaks at its first soft break (it skips to the next LF).

    A large body the parser kept in a file (``domain.bounds.spooled_body``) is decoded from it
    piece by piece, with the same result; where that is not certain (quoted-printable, uuencode,
    base64 that is not clean), it is read whole first and decoded as below."""
    if spooled_body(part):
        streamed = _streamed_payload(part, headers)
        if streamed is not None:
            return streamed
        unspool_body(part)
    encoding = headers.get("content-transfer-encoding", "").strip().lower()
    raw_encoding = str(part.get("content-transfer-encoding", "") or "").lower()
    if encoding != "quoted-printable" and raw_encoding == encoding:
        try:
            decoded = part.get_payload(decode=True)
            if isinstance(decoded, bytes):
                return decoded
        except Exception:  # noqa: S110 - a header the modern policy cannot read; decode it ourselves below
            pass
    try:
        payload = part.get_payload()
    except Exception:  # same as above, for the charset lookup get_payload does on 8-bit text
        payload = getattr(part, "_payload", "")
    if not isinstance(payload, str):
        return b""
    data = payload.encode("utf-8", "surrogateescape")
    if encoding == "base64":
        return _lenient_base64(data)
    if encoding == "quoted-printable":
        return quopri.decodestring(data if b"\n" in data else data.replace(b"\r", b"\r\n"))
    return data


def _streamed_payload(part: _Part, headers: dict[str, str]) -> bytes | None:
    """What ``_payload`` returns for a part with a spooled body, decoded piece by piece; None
    where only the whole body gives the same result (``_payload`` then reads it whole).

    Taken only where ``_payload`` would use ``part.get_payload(decode=True)``, which returns the
    body's bytes as they are for any encoding but base64, quoted-printable and uuencode, and for
    base64 strips every line break and decodes strictly (``binascii.a2b_base64``, strict mode),
    padding a short last quantum: piece by piece that gives the same bytes as long as no piece but
    the last holds padding and every piece decodes strictly.
    """
    encoding = headers.get("content-transfer-encoding", "").strip().lower()
    try:
        cte = str(part.get("content-transfer-encoding", "") or "").lower()
    except Exception:  # read whole, so that _payload meets the same error
        return None
    if encoding == "quoted-printable" or cte != encoding or cte == "quoted-printable" or cte in _UU_ENCODINGS:
        return None
    if cte == "base64":
        return _streamed_base64(part)
    out = io.BytesIO()
    for chunk in body_chunks(part, _DECODE_PIECE):
        out.write(chunk)
    return out.getvalue()


def _streamed_base64(part: _Part) -> bytes | None:
    """``decode_b(b"".join(body.splitlines()))`` of ``email`` on a spooled body, piece by piece, as
    long as the strict decoding it tries first succeeds; None when it would not."""
    out = io.BytesIO()
    carry = b""
    for chunk in body_chunks(part, _DECODE_PIECE):
        data = carry + chunk.translate(None, b"\r\n")
        cut = max(0, len(data) - (len(data) % 4 or 4))  # the last quantum may hold padding: kept back
        block, carry = data[:cut], data[cut:]
        if b"=" in block:
            return None
        try:
            out.write(binascii.a2b_base64(block, strict_mode=True))
        except binascii.Error:
            return None
    short = len(carry) % 4
    try:
        out.write(binascii.a2b_base64(carry + b"==="[: 4 - short] if short else carry, strict_mode=True))
    except binascii.Error:
        return None
    if short:
        part.policy.handle_defect(part, InvalidBase64PaddingDefect())
    return out.getvalue()


def _describe_defect(defect: object) -> str:
    words = _CAMEL.sub(" ", type(defect).__name__.removesuffix("Defect")).lower()
    detail = " ".join(str(defect).split())[:160]
    return f"{words} ({detail})" if detail else words


class _Collector:
    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = [unicodedata.normalize("NFC", p.strip()).casefold() for p in patterns if p.strip()]
        self.import_files: list[ImportFile] = []
        self.others: list[str] = []
        self.defects: list[str] = []
        self.taken: set[str] = set()
        self.budget = PartBudget()  # parts and nesting are bounded while parsing (domain.bounds)

    def add(self, name: str | None, content: bytes, content_type: str = "", *, cut: bool = False) -> None:
        """One attachment; ``cut``: it arrived cut short (no content), an import file that fails."""
        safe = clean_filename(name)
        if not safe:  # no name, or nothing left of it: never an import file, whatever the patterns
            kind = f"{content_type} " if _MIME_TYPE.fullmatch(content_type) else ""  # no control characters
            self.others.append(f"(unnamed {kind}attachment{', cut short' if cut else ''})")
            return
        if any(fnmatchcase(safe.casefold(), pattern) for pattern in self.patterns):
            filename = unique_filename(safe, self.taken)
            problem = _cut_problem(filename) if cut else None
            self.import_files.append(ImportFile(filename, b"" if cut else content, problem))
        else:
            self.others.append(f"{safe} (cut short)" if cut else safe)

    def add_tnef(self, files: Sequence[TnefFile], label: str, nesting: int) -> None:
        for file in files:
            if file.cut:
                self.defects.append(
                    f"{label}: winmail.dat ends before the data of its attachment {file.name!r}"
                )
                self.add(file.name, b"", cut=True)
            elif file.embedded and nesting < _MAX_MESSAGE_NESTING:
                self.add_tnef(file.embedded, label, nesting + 1)
            elif file.content or file.name:
                self.add(file.name, file.content)  # no name: "(unnamed attachment)"

    def message(self, raw: bytes, label: str, nesting: int) -> None:
        """Walk a nested message given as bytes (a base64- or quoted-printable-encoded message/rfc822)."""
        if nesting > _MAX_MESSAGE_NESTING:
            self.defects.append(f"{label}: messages nested too deep, not searched")
            return
        try:
            parsed, notes = _parse(raw, label, self.budget)
        except BoundExceeded:
            raise  # a forwarded message beyond the bounds costs what the message itself would
        except RejectedMessage as exc:
            self.defects.append(f"{label}: forwarded message unreadable ({exc})")
            return
        self.defects.extend(notes)
        self.walk(parsed, label, nesting)

    def walk(self, root: _Part, label: str, nesting: int) -> None:
        """Every part, iteratively; their number and depth were bounded while parsing."""
        stack: list[tuple[_Part, str]] = [(root, label)]
        while stack:
            part, where = stack.pop()
            self.defects.extend(f"{where}: {_describe_defect(defect)}" for defect in part.defects)
            self.part(part, where, nesting, stack)

    def part(self, part: _Part, where: str, nesting: int, stack: list[tuple[_Part, str]]) -> None:
        headers = _headers_of(part)
        kind = _content_type(headers)
        encoding = headers.get("content-transfer-encoding", "").strip().lower()
        children = _children(part)
        if kind == "message/rfc822" and encoding == "base64" and children:
            # Not allowed by RFC 2046, sent anyway: the parser took the base64 text for a body.
            self.message(_lenient_base64(_payload(children[0], {})), where, nesting + 1)
            return
        if kind == "message/rfc822" and encoding == "quoted-printable" and not part.is_multipart():
            # Not allowed by RFC 2046 either; the parser kept it whole (_LegacyPart, _ModernPart).
            self.message(_payload(part, headers), where, nesting + 1)
            return
        if part.is_multipart():
            prefix = "part " if where == "message" else f"{where}."
            numbered = [(child, f"{prefix}{number}") for number, child in enumerate(children, 1)]
            stack.extend(reversed(numbered))
            return
        name = attachment_name(headers.get("content-disposition"), headers.get("content-type"))
        disposition = headers.get("content-disposition", "").split(";", 1)[0].strip().lower()
        is_tnef = kind in _TNEF_TYPES or (name or "").strip().lower() == "winmail.dat"
        if name is None and not is_tnef and kind != "message/rfc822":
            if disposition == "attachment":
                self.add(None, b"", kind)
            return
        content = _payload(part, headers)
        if is_tnef and content.startswith(SIGNATURE):
            try:
                self.add_tnef(read_tnef(content), where, nesting)
            except BoundExceeded:
                raise
            except TnefError as exc:
                self.defects.append(f"{where}: {exc}")
                self.add(name or "winmail.dat", content, kind)
            return
        if is_tnef:
            self.defects.append(f"{where}: declared as TNEF (winmail.dat) but has no TNEF signature")
        if kind == "message/rfc822" and name is None:
            self.message(content, where, nesting + 1)
            return
        self.add(name, content, kind)


def _cut_problem(filename: str) -> str:
    """Why an import file that arrived cut short inside a ``winmail.dat`` is not processed."""
    return (
        f"{shorten(filename)}: the file arrived cut short: the Outlook winmail.dat that carries it ends "
        "before the file's data, so no row of it was imported. Send the file again, if you can as an "
        "ordinary attachment (Outlook sends winmail.dat for messages in its Rich Text format)"
    )


def _header_block(raw: bytes | IO[bytes]) -> Headers:
    """The message's header block (``parse_headers``), read from the start of a file only as far
    as it takes: until the line after the block is complete, or the end of the file."""
    if isinstance(raw, bytes):
        return parse_headers(raw)
    raw.seek(0)
    head = bytearray()
    size = _HEAD_READ
    while True:
        chunk = raw.read(size)
        head += chunk
        headers = parse_headers(bytes(head))
        if not chunk or b"\n" in head[len(headers.raw) :]:
            return headers
        size *= 2


def parse_message(raw: bytes | IO[bytes], patterns: Sequence[str]) -> ParsedMessage:
    """The import files and other attachments of a full raw message, given as bytes or as a binary
    file (read from its start, in pieces: the message is never held whole in memory).

    Raises RejectedMessage("message cannot be parsed: ...") only when there is no header at all or
    the parser itself gives up, and ``BoundExceeded`` (a RejectedMessage naming the bound) when the
    message claims more structure than ``domain.bounds`` allows - checked before the header fields
    are decoded and while the parts are parsed; any other damage is recorded in ``defects``.
    """
    headers = _header_block(raw)
    check_header_fields(header_lines(headers.raw), "the message header")
    if not headers.fields:
        raise RejectedMessage("message cannot be parsed: no header fields")
    collector = _Collector(patterns)
    message, notes = _parse(raw, "message", collector.budget)
    collector.defects.extend(notes)
    collector.walk(message, "message", 0)
    return ParsedMessage(
        headers=headers,
        import_files=tuple(collector.import_files),
        other_attachments=tuple(collector.others),
        defects=tuple(dict.fromkeys(collector.defects)),
    )
