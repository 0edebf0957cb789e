"""Header blocks of inbound mail, read the tolerant way.

Everything here takes whatever a mail server hands us - folded lines, 8-bit bytes, broken RFC 2047
words, unknown charsets - and never raises. Header values come back as ``str``: unfolded, stripped,
decoded from UTF-8 (RFC 6532) or, failing that, Windows-1252.

The POP3 ``TOP n 0`` header block and the full message use the same reader (``parse_headers``), so the
decision taken on the headers before a download is the decision taken after it.
"""

from __future__ import annotations

import binascii
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property

_LINE = re.compile(rb"([^\r\n]*)(\r\n|\r|\n|$)")
_FIELD = re.compile(rb"^([\x21-\x39\x3b-\x7e]+):(.*)$", re.DOTALL)
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*?)\?=")
_MSG_ID = re.compile(r"<([\x21-\x3b\x3d\x3f-\x7e]{1,250})>")
_BARE_MSG_ID = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+$")
_MIME_TYPE = re.compile(r"[a-z0-9!#$&.+^_`{|}~-]+/[a-z0-9!#$&.+^_`{|}~-]+")
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_MAX_REFERENCES = 20
_FALLBACK_CHARSETS = {"unknown-8bit", "x-unknown", "unknown", "8bit", "us-ascii", "ascii", "default"}


def decode_header_bytes(data: bytes) -> str:
    """UTF-8 when the bytes are valid UTF-8 (RFC 6532), else Windows-1252 with replacement marks."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def decode_charset(data: bytes, charset: str) -> str:
    """Decode bytes in a charset named by the message; unknown or unfit names fall back, never raise."""
    name = charset.strip().strip('"').lower()
    if name and name not in _FALLBACK_CHARSETS:
        try:
            return data.decode(name, errors="replace")
        except (LookupError, UnicodeError, ValueError, TypeError):
            pass  # a charset Python does not know or cannot use for text: fall back below
    return decode_header_bytes(data)


def _decode_b(text: str) -> bytes:
    cleaned = _NOT_BASE64.sub("", text)
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return binascii.a2b_base64(cleaned)
    except (binascii.Error, ValueError):
        return b""


def _decode_q(text: str) -> bytes:
    data = text.encode("utf-8", errors="replace").replace(b"_", b" ")
    return _Q_ESCAPE.sub(lambda match: bytes([int(match.group(1), 16)]), data)


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words anywhere in ``text``; whitespace between two of them is dropped.

    Adjacent words in the same charset are joined before decoding, so a multi-byte character split
    over two words survives. Broken words decode as well as they can; this never raises.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    run: list[bytes] = []  # bytes of adjacent words in one charset, decoded together
    run_charset = ""
    position = 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        charset = match.group(1).split("*", 1)[0].lower()
        data = _decode_b(match.group(3)) if match.group(2) in "bB" else _decode_q(match.group(3))
        if not (run and charset == run_charset and not between.strip()):
            if run:
                out.append(decode_charset(b"".join(run), run_charset))
            if between and not (run and between.isspace()):  # whitespace between two words goes
                out.append(between)
            run, run_charset = [], charset
        run.append(data)
        position = match.end()
    if run:
        out.append(decode_charset(b"".join(run), run_charset))
    out.append(text[position:])
    return "".join(out)


def clean_text(text: str) -> str:
    """One line of human text: control characters and whitespace runs become one space, stripped."""
    replaced = "".join(" " if unicodedata.category(ch) in {"Cc", "Cs", "Zl", "Zp"} else ch for ch in text)
    return " ".join(replaced.split())


def _msg_ids(text: str) -> list[str]:
    return [f"<{match.group(1)}>" for match in _MSG_ID.finditer(text)]


def _header_lines(raw: bytes) -> tuple[list[bytes], int]:
    """The header lines (mbox "From " line skipped) and the offset just after the header block."""
    lines: list[bytes] = []
    position = 0
    while position < len(raw):
        match = _LINE.match(raw, position)
        if match is None or match.end() == position:
            break
        line = match.group(1)
        if position == 0 and line.startswith(b"From "):  # mbox "From " separator line
            position = match.end()
            continue
        if not line:
            return lines, match.end()  # the empty line ends the header block
        if line[:1] not in (b" ", b"\t") and _FIELD.match(line) is None:
            return lines, position  # not a header line: the body starts here, as in Python's parser
        lines.append(line)
        position = match.end()
    return lines, position


def header_lines(raw: bytes) -> list[bytes]:
    """The lines (without line breaks) of the header block at the start of ``raw``, mbox "From "
    line left out: what ``domain.bounds.check_header_fields`` measures before a field is decoded."""
    return _header_lines(raw)[0]


def _parse_fields(raw: bytes) -> tuple[tuple[str, str], ...]:
    fields: list[tuple[str, list[bytes]]] = []
    for line in _header_lines(raw)[0]:
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1].append(line)
            continue  # a continuation without a header before it is ignored, as Python's parser does
        field = _FIELD.match(line)
        if field is not None:
            fields.append((decode_header_bytes(field.group(1)), [field.group(2)]))
    return tuple((name, decode_header_bytes(b"".join(parts)).strip()) for name, parts in fields)


@dataclass(frozen=True)
class Headers:
    """The header block of one message (``TOP n 0`` or the start of the full message)."""

    raw: bytes

    @cached_property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """All ``(name, value)`` pairs in order, top first; values unfolded and stripped."""
        return _parse_fields(self.raw)

    def get_all(self, name: str) -> list[str]:
        """All values of a header, top first, as str (not RFC 2047-decoded); [] when absent."""
        wanted = name.lower()
        return [value for field, value in self.fields if field.lower() == wanted]

    def get(self, name: str) -> str | None:
        """The topmost value of a header, or None."""
        values = self.get_all(name)
        return values[0] if values else None

    @cached_property
    def subject(self) -> str:
        """The first Subject: RFC 2047-decoded, on one line, no control characters; "" when absent."""
        return clean_text(decode_words(self.get("Subject") or ""))

    @cached_property
    def content_type(self) -> str:
        """``type/subtype`` of the top level, lower case; ``text/plain`` when absent or malformed."""
        value = self.get("Content-Type") or ""
        kind = value.split(";", 1)[0].strip().lower()
        return kind if _MIME_TYPE.fullmatch(kind) else "text/plain"

    @cached_property
    def message_id(self) -> str | None:
        """``<id@host>`` from the first Message-ID, safe to put into a header; None when there is none."""
        value = self.get("Message-ID")
        if value is None:
            return None
        ids = _msg_ids(value)
        if ids:
            return ids[0]
        return f"<{value}>" if len(value) <= 250 and _BARE_MSG_ID.match(value) else None

    @cached_property
    def replied_to(self) -> tuple[str, ...]:
        """Every ``<id>`` this message says it answers: its In-Reply-To and References headers."""
        return tuple(_msg_ids(" ".join(self.get_all("In-Reply-To") + self.get_all("References"))))

    @cached_property
    def references(self) -> str | None:
        """``References`` for a reply (RFC 5322 §3.6.4): the original References + its Message-ID.

        Without References, a single In-Reply-To id stands in for them. Long chains keep the first
        id and the most recent ones (at most 20 in all). None when there is nothing to refer to.
        """
        ids = _msg_ids(" ".join(self.get_all("References")))
        if not ids:
            in_reply_to = _msg_ids(" ".join(self.get_all("In-Reply-To")))
            ids = in_reply_to if len(in_reply_to) == 1 else []
        if self.message_id is not None:
            ids.append(self.message_id)
        unique = list(dict.fromkeys(ids))
        if len(unique) > _MAX_REFERENCES:
            unique = [unique[0], *unique[-(_MAX_REFERENCES - 1) :]]
        return " ".join(unique) or None


def parse_headers(raw: bytes) -> Headers:
    """Headers of a header block or of a whole message (reading stops at the first empty line)."""
    return Headers(raw=bytes(raw[: _header_lines(raw)[1]]))
