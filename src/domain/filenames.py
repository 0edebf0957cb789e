"""Attachment names: read them (RFC 2045 parameters, RFC 2231, RFC 2047) and make them safe.

A safe name is a base name only: no directories, no path separators, no control or bidi-override
characters, none of ``<>:"|?*``, no leading or trailing dots and spaces, NFC-normalised, at most 200
UTF-8 bytes (the extension is kept). Names are still never used as paths (DESIGN §3).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from urllib.parse import unquote_to_bytes

from domain.headers import decode_charset, decode_words

_SEPARATORS = re.compile(r"[/\\]")
_RESERVED = re.compile(r'[<>:"|?*]')
_CONTINUATION = re.compile(r"^(?P<name>[^*]+)\*(?P<index>\d+)(?P<extended>\*?)$")
_MAX_NAME_BYTES = 200
_MAX_EXTENSION = 16
_EXTENSIONS = {"text/csv": ".csv", "text/plain": ".txt", "application/pdf": ".pdf"}


def split_parameters(value: str) -> list[tuple[str, str]]:
    """``type/sub; a="x; y"; b=z`` -> ``[("a", "x; y"), ("b", "z")]``: keys lower case, quotes removed."""
    items: list[str] = []
    current: list[str] = []
    in_quotes = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and in_quotes:
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == ";" and not in_quotes:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    parameters = []
    for item in items[1:]:
        key, equals, raw = item.partition("=")
        if not equals or not key.strip():
            continue
        raw = raw.strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:])
        parameters.append((key.strip().lower(), raw))
    return parameters


def _extended(value: str) -> tuple[str, bytes]:
    """``charset'lang'%XX...`` -> (charset, bytes); without the two quotes the charset is empty."""
    if value.count("'") >= 2:
        charset, _, rest = value.partition("'")
        _, _, encoded = rest.partition("'")
        return charset, unquote_to_bytes(encoded)
    return "", unquote_to_bytes(value)


def _join_segments(segments: dict[int, tuple[str, bool]]) -> str:
    """RFC 2231 continuations ``name*0*=utf-8''a%C3;`` ``name*1*=%BC.csv`` joined, then decoded."""
    charset = ""
    chunks: list[bytes] = []
    index = 0
    while index in segments:
        value, is_extended = segments[index]
        if is_extended and index == 0:
            charset, chunk = _extended(value)
        elif is_extended:
            chunk = unquote_to_bytes(value)
        else:
            chunk = value.encode("utf-8", errors="replace")
        chunks.append(chunk)
        index += 1
    return decode_charset(b"".join(chunks), charset)


def parameter(parameters: Sequence[tuple[str, str]], name: str) -> str | None:
    """A parameter value with RFC 2231 (``name*``, ``name*0*``...) and RFC 2047 decoding; None if absent."""
    plain: str | None = None
    extended: str | None = None
    segments: dict[int, tuple[str, bool]] = {}
    for key, value in parameters:
        if key == name and plain is None:
            plain = value
        elif key == f"{name}*" and extended is None:
            extended = value
        else:
            match = _CONTINUATION.match(key)
            if match and match.group("name") == name:
                segments.setdefault(int(match.group("index")), (value, bool(match.group("extended"))))
    if extended is not None:
        charset, data = _extended(extended)
        return decode_words(decode_charset(data, charset))
    if 0 in segments:
        return decode_words(_join_segments(segments))
    if plain is not None:
        return decode_words(plain)
    return None


def attachment_name(content_disposition: str | None, content_type: str | None) -> str | None:
    """The name a part carries: Content-Disposition ``filename`` first, then Content-Type ``name``."""
    for header, key in ((content_disposition, "filename"), (content_type, "name")):
        if header:
            value = parameter(split_parameters(header), key)
            if value and value.strip():
                return value
    return None


def split_extension(name: str) -> tuple[str, str]:
    """``orders.csv`` -> (``orders``, ``.csv``); no extension -> (name, "")."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > _MAX_EXTENSION or " " in extension:
        return name, ""
    return stem, f".{extension}"


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def fit_name(
    name: str, *, marker: str = "", limit: int = _MAX_NAME_BYTES, size: Callable[[str], int] = utf8_size
) -> str:
    """``name`` with ``marker`` before its extension, the stem cut so that ``size`` of the whole is at
    most ``limit`` (UTF-8 bytes by default); the extension is always kept."""
    stem, extension = split_extension(name)
    if marker:  # "orders .csv" -> "orders (2).csv", one space as safe_filename leaves it
        stem = stem.rstrip(" .")
    tail = f"{marker}{extension}"
    if size(f"{stem}{tail}") <= limit:
        return f"{stem}{tail}"
    budget = limit - size(tail)
    while stem and size(stem) > budget:
        stem = stem[:-1]
    return f"{stem.rstrip(' .')}{tail}"


def clean_filename(name: str | None) -> str:
    """The safe base name left of ``name``; "" when nothing is left (only control, format or bidi
    characters, separators, dots and blanks) - such a name names no file."""
    text = unicodedata.normalize("NFC", name or "")
    text = "".join(
        " " if unicodedata.category(ch) in {"Cc", "Cs", "Zl", "Zp"} else ch
        for ch in text
        if unicodedata.category(ch) != "Cf"
    )
    components = [part for part in _SEPARATORS.split(text) if part.strip(" .")]
    base = _RESERVED.sub("_", components[-1]) if components else ""
    return fit_name(" ".join(base.split()).strip(" ."))


def safe_filename(name: str | None, *, index: int, content_type: str = "") -> str:
    """A base name that is safe to show, log and pass on; ``attachment-<index><ext>`` when nothing is left.

    The generated name is only a label: whether an attachment is an import file is decided on
    ``clean_filename``, never on a generated name (attachments.py).
    """
    return clean_filename(name) or f"attachment-{index}{_EXTENSIONS.get(content_type, '.bin')}"


def unique_filename(
    name: str, taken: set[str], *, limit: int = _MAX_NAME_BYTES, size: Callable[[str], int] = utf8_size
) -> str:
    """``orders.csv`` -> ``orders (2).csv`` when taken (case-insensitively); adds the result to ``taken``.

    The number goes before the extension, and the stem is cut so the name stays within ``limit``.
    """
    candidate, number = name, 1
    while candidate.casefold() in taken:
        number += 1
        candidate = fit_name(name, marker=f" ({number})", limit=limit, size=size)
    taken.add(candidate.casefold())
    return candidate
