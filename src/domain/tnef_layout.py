"""The structure of an Outlook ``winmail.dat`` (TNEF) blob, walked with bounds checks before tnefparse
sees it (``domain.tnef``).

tnefparse trusts the counts inside the blob: a crafted file can make it loop for billions of
iterations or copy the blob once per attribute. ``check_layout`` walks the attributes and MAPI
property lists as tnefparse would and raises ``Insane`` where tnefparse would loop (nearly) without
bound or hand out shortened data, and ``BoundExceeded`` beyond ``domain.bounds`` - before tnefparse
allocates anything. A blob cut short inside its last attribute is not insane: the walk stops there
and the ``Layout`` says what is known of the cut (issue 17 item 15).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from domain.bounds import MAX_TNEF_ATTRIBUTES, MAX_TNEF_VALUES, BoundExceeded

_IMESSAGE_SIG = b"\x07\x03\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46"
_ATT_MAPI_PROPS = 0x9003
_ATT_RECIP_TABLE = 0x9004
_ATT_ATTACHMENT = 0x9005
_ATT_ATTACH_RENDDATA = 0x9002
_ATT_ATTACH_DATA = 0x800F
_LEVEL_ATTACHMENT = 2
_ATTRIBUTE_FRAME = 11  # level (1), id (4), length (4) and checksum (2) around an attribute's data
_MAPI_ATTACH_DATA_OBJ = 0x3701
_MAPI_ATTACH_METHOD = 0x3705
_PT_LONG = 0x0003
_ATTACH_BY_VALUE = 1
_FIXED_SIZES = {0x0002: 2, 0x000B: 2, 0x0003: 4, 0x0004: 4, 0x000A: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8}
_FIXED_SIZES |= {0x0014: 8, 0x0040: 8, 0x0048: 16}
_VARIABLE_TYPES = {0x0000, 0x000D, 0x001E, 0x001F, 0x0102}
_MAX_COPY_BYTES = 2 * 1024**3  # tnefparse copies the rest of the blob once per attribute
MAX_DEPTH = 4
_MAX_SPIN = 1_000


class Insane(Exception):
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
    keep looping over a count the data cannot hold, we raise ``Insane``; every value a property
    claims is counted (``_Tally.claim``) once the data is known to hold it.
    """
    count = _u32(data, offset)  # beyond the data: tnefparse raises struct.error, which read_tnef reports
    offset += 4
    try:
        for index in range(count):
            if offset >= len(data):
                if count - index > _MAX_SPIN:
                    raise Insane
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
                    raise Insane
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
        raise Insane
    if values:
        tally.claim(values)
    for _ in range(values or 1):
        items = 1
        if not values:
            items = _u32(data, offset)
            offset += 4
        if items > (len(data) - offset) // 4 + 1:
            raise Insane
        if not values:
            tally.claim(max(items, 1))  # a single-valued property of several items: one object each
        for _ in range(items):
            length = _u32(data, offset)
            offset += 4
            item = data[offset : offset + length]
            if attr_name == _MAPI_ATTACH_DATA_OBJ and item.startswith(_IMESSAGE_SIG):
                check_layout(item[len(_IMESSAGE_SIG) :], depth + 1, tally)
            offset += length + (-length % 4)
    return offset


@dataclass
class Layout:
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


def check_layout(data: bytes, depth: int = 0, tally: _Tally | None = None) -> Layout:
    """Raise ``Insane`` for a blob tnefparse should not be given, ``BoundExceeded`` for one
    beyond the bounds; the layout of its whole attributes.

    The outermost blob may be cut short: the walk stops at the first attribute the data does not hold
    whole (``Layout.cut``), and only the attributes before it are checked and handed to tnefparse.
    An embedded message (depth > 0) lies inside a whole attribute: an attribute of it that runs beyond
    its data is ``Insane``, as tnefparse would quietly hand out the shortened data.
    """
    if tally is None:
        tally = _Tally()
    if depth > MAX_DEPTH:
        raise Insane
    layout = Layout(end=6)
    offset, copied = 6, 0
    # tnefparse reads an attribute while more than 12 bytes are left; the outermost blob is given to it
    # padded (``domain.tnef._PAD``), so that a last whole attribute of 11 or 12 bytes is read too.
    least = _ATTRIBUTE_FRAME if depth == 0 else _ATTRIBUTE_FRAME + 2
    while offset + least <= len(data):
        (name,) = struct.unpack_from("<H", data, offset + 1)
        length = _u32(data, offset + 5)
        if offset + _ATTRIBUTE_FRAME + length > len(data):
            if depth:
                raise Insane  # truncated: tnefparse would quietly hand out the shortened data
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
        raise Insane
    return layout


def _check_body(level: int, name: int, body: bytes, *, depth: int, tally: _Tally, layout: Layout) -> None:
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
            raise Insane
        row_offset = 4
        for _ in range(rows):
            if row_offset + 4 > len(body):
                break  # tnefparse raises struct.error here
            tally.claim(1)  # a row is an object of its own, also when it holds no property
            row_offset = _walk_mapi(body, row_offset, depth, tally)


def _note_cut(data: bytes, offset: int, layout: Layout) -> None:
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
