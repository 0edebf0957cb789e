"""Minimal Outlook winmail.dat (TNEF) streams, built byte by byte, for the parsing tests."""

import struct


def tnef_attribute(level: int, attr_id: int, data: bytes) -> bytes:
    """level, attribute id, length, data, checksum (sum of the data bytes mod 65536)."""
    return struct.pack("<BII", level, attr_id, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def mapi_long_filename(name: str, *, by_value: bool = False) -> bytes:
    """A MAPI property list with PR_ATTACH_LONG_FILENAME (0x3707) as a Unicode string; ``by_value``:
    after PR_ATTACH_METHOD (0x3705, PT_LONG) = 1, attached by value, as Outlook writes for a file."""
    text = name.encode("utf-16-le") + b"\x00\x00"
    padded = text + b"\x00" * (-len(text) % 4)
    method = struct.pack("<HHI", 0x0003, 0x3705, 1) if by_value else b""
    return (
        struct.pack("<I", 1 + by_value) + method + struct.pack("<HHII", 0x001F, 0x3707, 1, len(text)) + padded
    )


def tnef(*files: tuple[bytes, bytes, str | None], by_value: bool = False) -> bytes:
    """A minimal TNEF stream: signature, key, version, code page, then per file rendering/title/data
    (and its long name, ``mapi_long_filename``)."""
    out = struct.pack("<IH", 0x223E9F78, 0x0102)
    out += tnef_attribute(1, 0x00089006, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += tnef_attribute(1, 0x00069007, struct.pack("<II", 1252, 0))  # attOemCodepage
    for title, data, long_name in files:
        out += tnef_attribute(2, 0x00069002, b"\x01\x00" + b"\xff" * 4 + b"\x00" * 8)  # attAttachRenddata
        out += tnef_attribute(2, 0x00018010, title + b"\x00")  # attAttachTitle
        out += tnef_attribute(2, 0x0006800F, data)  # attAttachData
        if long_name is not None:
            out += tnef_attribute(
                2, 0x00069005, mapi_long_filename(long_name, by_value=by_value)
            )  # attAttachment
    return out + tnef_attribute(1, 0x00078008, b"IPM.Note\x00")  # attMessageClass
