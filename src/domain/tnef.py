"""Outlook ``winmail.dat`` (TNEF) attachments, through ``tnefparse``, with guard rails.

tnefparse trusts the counts inside the blob: a crafted file can make it loop for billions of
iterations or copy the blob once per attribute. Before handing data to it we walk the structure
ourselves with bounds checks (``_check``) and refuse what no Outlook would write: counts or lengths
beyond the data of a whole attribute are ``TnefError`` (the blob is listed as a broken attachment).
A blob that ends inside its last attribute (cut short in transit, seen in real mail) is read up to
that attribute: tnefparse gets only the whole attributes, and the attachment the cut falls into
before its data is whole is marked ``cut`` (``read_tnef``). More attributes or
MAPI values than ``domain.bounds`` allows, even when the data holds them, is ``BoundExceeded`` (the
message is rejected) - both before tnefparse allocates anything. Whatever tnefparse raises on broken
data is turned into ``TnefError``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from tnefparse.tnef import TNEF  # untyped; ignore_missing_imports covers it

from domain.bounds import MAX_TNEF_ATTRIBUTES, MAX_TNEF_VALUES, BoundExceeded
from domain.headers import decode_header_bytes

SIGNATURE = b"\x78\x9f\x3e\x22"
_IMESSAGE_SIG = b"\x07\x03\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46"
_ATT_MAPI_PROPS = 0x9003
_ATT_RECIP_TABLE = 0x9004
_ATT_ATTACHMENT = 0x9005
_ATT_ATTACH_RENDDATA = 0x9002
_ATT_ATTACH_DATA = 0x800F
_LEVEL_ATTACHMENT = 2
_ATTRIBUTE_FRAME = 11  # level (1), id (4), length (4) and checksum (2) around an attribute's data
_PAD = b"\x00\x00"
_MAPI_ATTACH_DATA_OBJ = 0x3701
_MAPI_ATTACH_METHOD = 0x3705
_PT_LONG = 0x0003
_ATTACH_BY_VALUE = 1
_FIXED_SIZES = {0x0002: 2, 0x000B: 2, 0x0003: 4, 0x0004: 4, 0x000A: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8}
_FIXED_SIZES |= {0x0014: 8, 0x0040: 8, 0x0048: 16}
_VARIABLE_TYPES = {0x0000, 0x000D, 0x001E, 0x001F, 0x0102}
_MAX_COPY_BYTES = 2 * 1024**3  # tnefparse copies the rest of the blob once per attribute
_MAX_DEPTH = 4
_MAX_SPIN = 1_000


class TnefError(ValueError):
    """The blob is not TNEF, or not one we are willing to read."""


@dataclass(frozen=True)
class TnefFile:
    name: str  # as stored, not yet made safe; "" when the blob names none
    content: bytes
    embedded: tuple[TnefFile, ...] = ()  # attachments of an attached Outlook message
    cut: bool = False  # the blob ends before this attachment's data: it has none


class _Insane(Exception):
    """tnefparse would loop (nearly) without bound on this data."""


class _Tally:
    """Attributes and MAPI values of one blob, embedded messages included: what tnefparse would
    build an object for. Counted before tnefparse runs; beyond a bound is ``BoundExceeded``."""

    def __init__(self) -> None:
        self.attributes = 0
        self.values = 0

    def attribute(self) -> None:
        self.attributes += 1
        if self.attributes > MAX_TNEF_ATTRIBUTES:
            what = f"a winmail.dat (TNEF) with more than {MAX_TNEF_ATTRIBUTES:,} attributes"
            raise BoundExceeded("max_tnef_attributes", MAX_TNEF_ATTRIBUTES, what)

    def claim(self, values: int) -> None:
        """A property claims ``values`` values (already checked against the bytes left)."""
        self.values += values
        if self.values > MAX_TNEF_VALUES:
            what = f"a winmail.dat (TNEF) whose properties claim more than {MAX_TNEF_VALUES:,} values"
            raise BoundExceeded("max_tnef_values", MAX_TNEF_VALUES, what)


def _u32(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", data, offset)[0])


def _skip_property_name(data: bytes, offset: int) -> int:
    """Skip a named property's GUID, kind and number or name."""
    kind = _u32(data, offset + 16)
    offset += 20
    if kind == 0:
        return offset + 4
    name_length = _u32(data, offset)
    return offset + 4 + name_length + (-name_length % 4)


def _walk_mapi(data: bytes, offset: int, depth: int, tally: _Tally) -> int:
    """Walk a MAPI property list like tnefparse's ``decode_mapi``; the offset where it ends.

    Where tnefparse would stop with an exception it catches itself, we stop as well. Where it would
    keep looping over a count the data cannot hold, we raise ``_Insane``; every value a property
    claims is counted (``_Tally.claim``) once the data is known to hold it.
    """
    count = _u32(data, offset)  # beyond the data: tnefparse raises struct.error, which read_tnef reports
    offset += 4
    try:
        for index in range(count):
            if offset >= len(data):
                if count - index > _MAX_SPIN:
                    raise _Insane
                break
            attr_type, attr_name = struct.unpack_from("<HH", data, offset)
            offset += 4
            if attr_name >= 0x8000:
                offset = _skip_property_name(data, offset)
            values = None
            if attr_type & 0x1000:
                attr_type ^= 0x1000
                values = _u32(data, offset)
                offset += 4
            if attr_type in _FIXED_SIZES:
                total = (values or 1) * _FIXED_SIZES[attr_type]
                if offset + total > len(data) and (values or 1) > _MAX_SPIN:
                    raise _Insane
                tally.claim(values or 1)
                offset += total
            elif attr_type in _VARIABLE_TYPES:
                offset = _walk_variable(data, offset, attr_name, values, depth, tally=tally)
            else:
                break  # tnefparse: ValueError("Unknown MAPI type"), caught inside decode_mapi
            if (values or 1) % 2 and attr_type in (0x0002, 0x000B):
                offset += 2
    except struct.error:
        pass  # tnefparse stops here too
    return offset


def _walk_variable(
    data: bytes, offset: int, attr_name: int, values: int | None, depth: int, *, tally: _Tally
) -> int:
    if values and values > (len(data) - offset) // 4 + 1:
        raise _Insane
    if values:
        tally.claim(values)
    for _ in range(values or 1):
        items = 1
        if not values:
            items = _u32(data, offset)
            offset += 4
        if items > (len(data) - offset) // 4 + 1:
            raise _Insane
        if not values:
            tally.claim(max(items, 1))  # a single-valued property of several items: one object each
        for _ in range(items):
            length = _u32(data, offset)
            offset += 4
            item = data[offset : offset + length]
            if attr_name == _MAPI_ATTACH_DATA_OBJ and item.startswith(_IMESSAGE_SIG):
                _check(item[len(_IMESSAGE_SIG) :], depth + 1, tally)
            offset += length + (-length % 4)
    return offset


@dataclass
class _Layout:
    """What the walk over a blob's attributes found: where its last whole attribute ends, the
    attachments begun, and what is known of the attribute the blob is cut short inside of, if any."""

    end: int
    attachments: int = 0
    last_data: bool = False  # the last attachment begun has a whole attAttachData
    last_properties: bool = False  # ... and a whole attAttachment (its MAPI property list)
    cut: bool = False  # the blob goes on past ``end``, inside an attribute it does not hold whole
    cut_level: int = 0
    cut_name: int | None = None  # None: the cut leaves less of the attribute than its id
    cut_by_value: bool = False  # the cut attAttachment shows its attachment attached by value

    def last_is_cut(self) -> bool:
        """Whether the blob ends before the data of the last attachment begun.

        Its data is whole when its property list is (an attached message's or OLE object's data is
        there), or, when the cut falls into nothing of that attachment (a message attribute, a new
        attachment), when its attAttachData is. When the cut falls into an attribute that may be its
        own, its attAttachData counts only if the cut property list shows it is attached by value
        (Outlook puts placeholder text in the attAttachData of an attached message).
        """
        if self.last_properties:
            return False
        if not self.cut or self.cut_level != _LEVEL_ATTACHMENT or self.cut_name == _ATT_ATTACH_RENDDATA:
            return not self.last_data
        return not (self.last_data and self.cut_by_value)


def _check(data: bytes, depth: int = 0, tally: _Tally | None = None) -> _Layout:
    """Raise ``_Insane`` for a blob tnefparse should not be given, ``BoundExceeded`` for one
    beyond the bounds; the layout of its whole attributes.

    The outermost blob may be cut short: the walk stops at the first attribute the data does not hold
    whole (``_Layout.cut``), and only the attributes before it are checked and handed to tnefparse.
    An embedded message (depth > 0) lies inside a whole attribute: an attribute of it that runs beyond
    its data is ``_Insane``, as tnefparse would quietly hand out the shortened data.
    """
    if tally is None:
        tally = _Tally()
    if depth > _MAX_DEPTH:
        raise _Insane
    layout = _Layout(end=6)
    offset, copied = 6, 0
    # tnefparse reads an attribute while more than 12 bytes are left; the outermost blob is given to it
    # padded (``_PAD``), so that a last whole attribute of 11 or 12 bytes is read too.
    least = _ATTRIBUTE_FRAME if depth == 0 else _ATTRIBUTE_FRAME + 2
    while offset + least <= len(data):
        (name,) = struct.unpack_from("<H", data, offset + 1)
        length = _u32(data, offset + 5)
        if offset + _ATTRIBUTE_FRAME + length > len(data):
            if depth:
                raise _Insane  # truncated: tnefparse would quietly hand out the shortened data
            break
        tally.attribute()  # counted on past the copy limit below: many attributes is a bound
        copied += len(data) - offset
        body = data[offset + 9 : offset + 9 + length]
        _check_body(data[offset], name, body, depth=depth, tally=tally, layout=layout)
        offset += length + _ATTRIBUTE_FRAME
        layout.end = offset
    if depth == 0 and offset < len(data):
        _note_cut(data, offset, layout)
    if copied > _MAX_COPY_BYTES:
        raise _Insane
    return layout


def _check_body(level: int, name: int, body: bytes, *, depth: int, tally: _Tally, layout: _Layout) -> None:
    """Check one whole attribute's data; note in ``layout`` where attachments begin and hold data."""
    if name == _ATT_ATTACH_RENDDATA:  # tnefparse begins a new attachment with it, at any level
        layout.attachments += 1
        layout.last_data = layout.last_properties = False
    elif level == _LEVEL_ATTACHMENT and name == _ATT_ATTACH_DATA:
        layout.last_data = True
    elif level == _LEVEL_ATTACHMENT and name == _ATT_ATTACHMENT:
        layout.last_properties = True
    if name in (_ATT_MAPI_PROPS, _ATT_ATTACHMENT) and len(body) >= 4:
        _walk_mapi(body, 0, depth, tally)
    if name == _ATT_RECIP_TABLE and len(body) >= 4:
        rows = _u32(body, 0)
        if rows > len(body) // 4:
            raise _Insane
        row_offset = 4
        for _ in range(rows):
            if row_offset + 4 > len(body):
                break  # tnefparse raises struct.error here
            tally.claim(1)  # a row is an object of its own, also when it holds no property
            row_offset = _walk_mapi(body, row_offset, depth, tally)


def _note_cut(data: bytes, offset: int, layout: _Layout) -> None:
    """Note what the blob holds of the attribute at ``offset``, which it ends inside of."""
    layout.cut = True
    layout.cut_level = data[offset]
    if offset + 3 <= len(data):
        (layout.cut_name,) = struct.unpack_from("<H", data, offset + 1)
    if layout.cut_name == _ATT_ATTACHMENT:
        layout.cut_by_value = _attached_by_value(data[offset + 9 :])


def _attached_by_value(properties: bytes) -> bool:
    """Whether the start of a property list that is cut short shows PR_ATTACH_METHOD = by value before
    any PR_ATTACH_DATA property begins: the attachment's data is then its attAttachData, not in the
    part of the list that was cut. Every step reads at least 4 bytes, so the walk ends with the data."""
    offset = 4
    try:
        for _ in range(_u32(properties, 0)):
            attr_type, attr_name = struct.unpack_from("<HH", properties, offset)
            offset += 4
            if attr_name == _MAPI_ATTACH_DATA_OBJ:
                return False
            if attr_name >= 0x8000:
                offset = _skip_property_name(properties, offset)
            values = None
            if attr_type & 0x1000:
                attr_type ^= 0x1000
                values = _u32(properties, offset)
                offset += 4
            if attr_name == _MAPI_ATTACH_METHOD and attr_type == _PT_LONG and values is None:
                return _u32(properties, offset) == _ATTACH_BY_VALUE
            if attr_type in _FIXED_SIZES:
                offset += (values or 1) * _FIXED_SIZES[attr_type]
                offset += 2 if (values or 1) % 2 and attr_type in (0x0002, 0x000B) else 0
            elif attr_type in _VARIABLE_TYPES:
                items = values  # multi-valued: one item per value; single-valued: a count of items
                if items is None:
                    items = _u32(properties, offset)
                    offset += 4
                for _ in range(items):
                    length = _u32(properties, offset)
                    offset += 4 + length + (-length % 4)
            else:
                return False
    except struct.error:
        pass
    return False


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
        children = tuple(_files(embedded, depth + 1)) if embedded is not None and depth < _MAX_DEPTH else ()
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
        layout = _check(data)
    except (_Insane, struct.error) as exc:
        raise TnefError("TNEF structure is inconsistent (counts or lengths beyond the data)") from exc
    try:
        files = list(_files(TNEF(data[: layout.end] + _PAD, do_checksum=False), 0))
    except Exception as exc:  # tnefparse raises anything from struct.error to UnboundLocalError
        raise TnefError(f"TNEF cannot be decoded: {type(exc).__name__}: {exc}") from exc
    if files and len(files) == layout.attachments and layout.last_is_cut():
        files[-1] = TnefFile(name=files[-1].name, content=b"", cut=True)
    return tuple(files)
