"""Outlook ``winmail.dat`` (TNEF) attachments, through ``tnefparse``, with guard rails.

Before handing a blob to tnefparse, ``domain.tnef_layout`` walks its structure with bounds checks and
refuses what no Outlook would write: counts or lengths beyond the data of a whole attribute are
``TnefError`` (the blob is listed as a broken attachment); more attributes or MAPI values than
``domain.bounds`` allows, even when the data holds them, is ``BoundExceeded`` (the message is
rejected) - both before tnefparse allocates anything. Whatever tnefparse raises on broken data is
turned into ``TnefError``. A blob that ends inside its last attribute (cut short, seen in real mail)
is read up to that attribute: tnefparse gets only the whole attributes, and the attachment the blob
ends before the data of is marked ``cut`` (``read_tnef``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from tnefparse.tnef import TNEF  # untyped; ignore_missing_imports covers it

from domain.headers import decode_header_bytes
from domain.tnef_layout import MAX_DEPTH, Insane, check_layout

SIGNATURE = b"\x78\x9f\x3e\x22"
_PAD = b"\x00\x00"  # tnefparse reads an attribute only while more than 12 bytes are left (tnef_layout)


class TnefError(ValueError):
    """The blob is not TNEF, or not one we are willing to read."""


@dataclass(frozen=True)
class TnefFile:
    name: str  # as stored, not yet made safe; "" when the blob names none
    content: bytes
    embedded: tuple[TnefFile, ...] = ()  # attachments of an attached Outlook message
    cut: bool = False  # the blob ends before this attachment's data: it has none


def _name_of(attachment: object) -> str:
    """The long file name when there is one, else the short one; bytes decoded tolerantly."""
    name: object
    try:
        name = attachment.long_filename()  # type: ignore[attr-defined]
    except (UnicodeError, AttributeError, IndexError, TypeError):
        name = getattr(attachment, "_name", b"")
    if isinstance(name, bytes):
        name = decode_header_bytes(name)
    return name.replace("\x00", "") if isinstance(name, str) else ""


def _files(parsed: object, depth: int) -> Iterator[TnefFile]:
    for attachment in getattr(parsed, "attachments", None) or []:
        content = getattr(attachment, "data", b"")
        embedded = getattr(attachment, "embed", None)
        children = tuple(_files(embedded, depth + 1)) if embedded is not None and depth < MAX_DEPTH else ()
        yield TnefFile(
            name=_name_of(attachment),
            content=bytes(content) if isinstance(content, bytes | bytearray) else b"",
            embedded=children,
        )


def read_tnef(data: bytes) -> tuple[TnefFile, ...]:
    """The attachments in a TNEF blob; raises TnefError when it cannot or should not be read, and
    ``BoundExceeded`` (a ``RejectedMessage``) when it holds more than ``domain.bounds`` allows.

    A blob cut short (it ends inside an attribute, as some real ``winmail.dat`` files do) is read up
    to its last whole attribute: the attachments before the cut are read. The last attachment is
    ``cut`` (no content) when the blob ends before its data (``attAttachData``, or the property list
    that carries an attached message); one whose data is whole is read under its short name when the
    property list with its long name is what was cut.
    """
    if not data.startswith(SIGNATURE):
        raise TnefError("not a TNEF file (wrong signature)")
    try:
        layout = check_layout(data)
    except (Insane, struct.error) as exc:
        raise TnefError("TNEF structure is inconsistent (counts or lengths beyond the data)") from exc
    try:
        files = list(_files(TNEF(data[: layout.end] + _PAD, do_checksum=False), 0))
    except Exception as exc:  # tnefparse raises anything from struct.error to UnboundLocalError
        raise TnefError(f"TNEF cannot be decoded: {type(exc).__name__}: {exc}") from exc
    if files and len(files) == layout.attachments and layout.last_is_cut():
        files[-1] = TnefFile(name=files[-1].name, content=b"", cut=True)
    return tuple(files)
