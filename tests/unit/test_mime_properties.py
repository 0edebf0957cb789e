"""Property-based robustness of header screening and MIME parsing on mail we build ourselves (issue 8).

``test_corpus.py`` proves its invariants on 103 external messages; here Hypothesis builds raw messages
from scratch - random multipart nesting, forwarded messages, winmail.dat, every transfer encoding,
charsets, RFC 2231 and RFC 2047 names, odd From and Subject headers, LF/CRLF/CR line breaks - and
breaks them on purpose. The same invariants must hold on all of it:

* header screening (``parse_headers``, ``is_recognized``, ``automatic_reason``, ``rejection_reason``,
  ``sender_address``) never raises and answers with the documented types;
* ``parse_message`` returns a ``ParsedMessage`` or raises ``RejectedMessage`` ("message cannot be
  parsed"), nothing else; import-file names are safe and unique; defects are non-empty strings;
* every message ends in exactly one outcome.

The generator also knows what it built: an import file it planted, correctly encoded, on a path of
intact containers must be found with its exact content (whatever else in the message is broken), a
plain allowed sender must be accepted, a planted keyword must be recognised, automatic headers must
make a message automatic.

``make test`` runs the bounded profile (tests/conftest.py); ``make fuzz`` runs many more examples.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import string
import struct
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from domain.attachments import ImportFile, ParsedMessage, parse_message
from domain.errors import RejectedMessage
from domain.filenames import safe_filename, split_extension
from domain.inbound import automatic_reason, is_recognized, parse_headers, rejection_reason
from domain.senders import sender_address
from domain.tnef import TnefError, read_tnef
from tests.unit.outcomes import PATTERNS, outcome
from tests.unit.tnef_samples import tnef

KEYWORD = "LetterShop"
TRUSTED = ["mx.lettershop.example"]
FORBIDDEN_IN_NAMES = "/\\\x00\r\n"
MAX_DEPTH = 3  # containers (multipart, message/rfc822) above a leaf; the parser's limits are higher

type Draw = st.DrawFn
# Import files that must be found: (name, content, loose), loose when a missing close delimiter at the
# end of the message leaves it open whether the last line break belongs to the content.
type Planted = tuple[tuple[str, bytes, bool], ...]

# --- building blocks ----------------------------------------------------------------------------------


class Style:
    """The line breaks of one message: CRLF, LF, lone CR (old Macs), or LF and CRLF mixed line by line."""

    def __init__(self, draw: Draw, newline: bytes) -> None:
        self.draw = draw
        self.newline = newline

    def nl(self) -> bytes:
        return self.newline or self.draw(st.sampled_from([b"\r\n", b"\n"]))

    def lines(self, lines: Sequence[bytes]) -> bytes:
        return b"".join(
            line + (self.nl() if index < len(lines) - 1 else b"") for index, line in enumerate(lines)
        )


@dataclass(frozen=True)
class Part:
    """One MIME entity before it is put together: header fields (already folded) and body bytes."""

    headers: tuple[bytes, ...]
    body: bytes
    planted: Planted = ()  # found when this entity is reached through intact containers
    surprises: bool = False  # other import files may turn up (wild names, broken containers)

    def render(self, style: Style) -> bytes:
        return b"".join(field + style.nl() for field in self.headers) + style.nl() + self.body


def header(draw: Draw, style: Style, name: str, pieces: Sequence[bytes], separator: bytes = b" ") -> bytes:
    """``Name: piece1<sep>piece2...``, folded (line break + blank) between some pieces."""
    out = name.encode("ascii") + b":"
    for index, piece in enumerate(pieces):
        if index == 0:
            gap = b" "
        elif draw(st.integers(0, 3)) == 0:
            gap = separator.rstrip() + style.nl() + draw(st.sampled_from([b" ", b"\t", b"   "]))
        else:
            gap = separator
        out += gap + piece
    return out


def with_params(draw: Draw, style: Style, name: str, value: bytes, params: Sequence[bytes]) -> bytes:
    """``Name: value; p1; p2`` with the parameters in random order, some folded."""
    ordered = draw(st.permutations(list(params))) if params else []
    return header(draw, style, name, [value, *ordered], separator=b"; ")


def header_name(draw: Draw, name: str) -> str:
    return draw(st.sampled_from([name, name.lower(), name.upper()]))


# --- file names -----------------------------------------------------------------------------------------

_LATIN = "äöüßéèñçÅØ"  # none of them encodes to a UTF-8 continuation byte in Latin-1
_STEM_CHARS = (
    string.ascii_letters + string.digits + " -_()+,;=&'#!~[]{}@$%" + _LATIN + "てすとかきくけこ漢字Ωλ€"
)
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'+\-.^_`{|}~]+")
_ATTRIBUTE_CHARS = string.ascii_letters + string.digits + "!#$&+-.^_`|~"
_IMPORT_EXTENSIONS = [".csv", ".CSV", ".txt", ".Txt"]
_OTHER_EXTENSIONS = [".pdf", ".png", ".xlsx", ".bin", ".csv.gz", ".txt.pdf", ""]


def _is_safe(name: str) -> bool:
    return safe_filename(name, index=1) == name


stems = st.text(alphabet=_STEM_CHARS, min_size=1, max_size=20)
import_names = st.builds(lambda stem, ext: stem + ext, stems, st.sampled_from(_IMPORT_EXTENSIONS)).filter(
    _is_safe
)
other_names = st.builds(lambda stem, ext: stem + ext, stems, st.sampled_from(_OTHER_EXTENSIONS)).filter(
    lambda name: _is_safe(name) and not any(fnmatchcase(name.casefold(), p) for p in PATTERNS)
)

# Names no parser can read sensibly: path tricks, control characters, broken RFC 2231 and RFC 2047.
wild_name_params = st.sampled_from(
    [
        b'filename="../../etc/orders.csv"',
        b'filename="C:\\\\Users\\\\x\\\\orders.csv"',
        b'filename="a\x00b.csv"',
        b"filename*=utf-8''line%0D%0Abreak%00%0D.csv",
        b"filename*=utf-8''..%2F..%2F%5Cevil%E2%80%AE%E2%80%8B.csv",
        b'filename="=?utf-8?Q?=2E=2E=2Fetc=2Forders=00=0D=0A.csv?="',
        b'filename="=?utf-8?B?Li5cLi5cb3JkZXJzLmNzdg==?="',
        b'filename="tab\there\x7f\x1b.csv"',
        b'filename="\xe2\x80\xaecsv.exe"',
        b'filename=".csv"',
        b'filename="  ..  "',
        b'filename=""',
        b"filename=",
        b'filename="unterminated.csv',
        b"filename*=utf-8''%ZZ%4%.csv",
        b"filename*=bogus-charset''%E4%F6.csv",
        b"filename*=iso-2022-jp'ja'01%20Quien%20Te%20Dij%8aat.csv",
        b"filename*=utf-8''%C3.txt",
        b"filename*=''%FF%FE.csv",
        b"filename*=utf-8'orders.csv",
        b"filename*0*=utf-8''a%C3; filename*2*=%BC.csv",
        b"filename*1*=%BC.csv",
        b"filename*0*=utf-8''a%C3; filename*1*=%BC.csv; filename*1=x.txt",
        b"filename*0=a; filename*00=b.csv; filename*9999999999999999999=c",
        b'filename="=?utf-8?B?b3JkZXJzLmNzdg?="',
        b'filename="=?utf-8?B?!!!?=.csv"',
        b'filename="=?x-bogus?Q?orders=2Ecsv?="',
        b'filename="=?utf-8?Q?orders=2?=.csv"',
        b'filename="=?utf-8*de?Q?orders.csv?="',
        b'filename="=?iso-2022-jp?B?GyRCJEYkOSRIGyhC?=.csv"',
        b'filename="=?utf-8?Q?a?= =?latin-1?Q?=E4?= =?utf-8?B?LmNzdg==?="',
        b'filename="=?utf-8?B?' + b"QUFB" * 300 + b'?=.csv"',
        b"filename=" + b"x" * 3000 + b".csv",
        b'filename="' + "ü".encode() * 150 + b'.csv"',
        b'filename="\xff\xfe.csv"',
        b'name="orders.csv"; name*=utf-8\'\'other.txt; filename*0="a"; filename*1="b.csv"',
    ]
)


def _q_encode(data: bytes) -> bytes:
    return b"".join(bytes([byte]) if chr(byte).isalnum() and byte < 128 else b"=%02X" % byte for byte in data)


def _charsets_for(text: str) -> list[str]:
    """Charsets (as mail clients spell them) in which ``text`` can be written."""
    names = ["utf-8", "UTF-8"]
    for charset, spellings in (
        ("latin-1", ["iso-8859-1", "ISO-8859-1", "latin1"]),
        ("cp1252", ["windows-1252"]),
        ("iso-2022-jp", ["iso-2022-jp", "ISO-2022-JP"]),
        ("shift_jis", ["shift_jis"]),
    ):
        try:
            text.encode(charset)
        except UnicodeEncodeError:
            continue
        names += spellings
    return names


def _split(draw: Draw, items: Sequence[str], most: int) -> list[str]:
    """``items`` cut into 1..most non-empty consecutive runs, joined."""
    if len(items) < 2:
        return ["".join(items)]
    cuts = draw(st.sets(st.integers(1, len(items) - 1), max_size=most - 1))
    bounds = [0, *sorted(cuts), len(items)]
    return ["".join(items[a:b]) for a, b in itertools.pairwise(bounds)]


def _encoded_words(draw: Draw, text: str) -> bytes:
    """``text`` as one or more RFC 2047 encoded words (each chunk its own charset and B or Q)."""
    words = []
    for chunk in _split(draw, list(text), 3):
        charset = draw(st.sampled_from(_charsets_for(chunk)))
        data = chunk.encode(charset)
        if draw(st.booleans()):
            words.append(b"=?%s?B?%s?=" % (charset.encode(), base64.b64encode(data)))
        else:
            words.append(
                b"=?%s?%s?%s?=" % (charset.encode(), draw(st.sampled_from([b"Q", b"q"])), _q_encode(data))
            )
    return b" ".join(words)


def name_params(draw: Draw, key: str, name: str) -> list[bytes]:
    """Parameters that carry ``name`` under ``key`` (filename or name), written the ways mail clients do."""
    forms = ["quoted", "2231", "2231-continued", "2231-plain-continued", "2047"]
    if _TOKEN.fullmatch(name):
        forms.append("token")
    if all(ch.isascii() or ch in _LATIN for ch in name) and not name.isascii():
        forms.append("raw-latin-1")
    form = draw(st.sampled_from(forms))
    k = key.encode("ascii")
    if form.startswith("2231"):
        return _rfc2231_params(draw, k, name, form)
    if form == "2047":
        words = _encoded_words(draw, name)
        if b" " not in words and b"?B?" in words and draw(st.booleans()):
            return [k + b"=" + words]  # unquoted, as some Outlook versions write it
        return [k + b'="' + words + b'"']
    value = name.encode("latin-1" if form == "raw-latin-1" else "utf-8")
    return [k + b"=" + value if form == "token" else k + b'="' + value + b'"']


def _rfc2231_params(draw: Draw, k: bytes, name: str, form: str) -> list[bytes]:
    """``k*=charset'lang'%XX..``, or continuations ``k*0*=``, ``k*1*=``, ``k*2=""`` in any order."""
    if form == "2231-plain-continued":
        segments = _split(draw, list(name), 4)
        return draw(st.permutations([b'%s*%d="%s"' % (k, i, seg.encode()) for i, seg in enumerate(segments)]))
    charset = draw(st.sampled_from(_charsets_for(name)))
    language = draw(st.sampled_from([b"", b"en", b"de-CH", b"ja"]))
    safe = draw(st.sampled_from(["", _ATTRIBUTE_CHARS]))
    atoms = [quote_from_bytes(bytes([byte]), safe=safe) for byte in name.encode(charset)]
    prefix = charset.encode("ascii") + b"'" + language + b"'"
    if form == "2231":
        value = prefix + "".join(atoms).encode("ascii")
        return [k + b'*="' + value + b'"' if draw(st.booleans()) else k + b"*=" + value]
    params = []
    for index, segment in enumerate(_split(draw, atoms, 4)):
        if index == 0:
            params.append(b"%s*0*=%s%s" % (k, prefix, segment.encode("ascii")))
        elif "%" not in segment and segment and draw(st.booleans()):
            params.append(b'%s*%d="%s"' % (k, index, segment.encode("ascii")))  # plain: same bytes
        else:
            params.append(b"%s*%d*=%s" % (k, index, segment.encode("ascii")))
    return draw(st.permutations(params))


# --- bodies and transfer encodings ---------------------------------------------------------------------

_CHARSETS = [b"utf-8", b"UTF-8", b"iso-8859-1", b"latin-1", b"windows-1252", b"iso-2022-jp", b"us-ascii"]
_BOGUS_CHARSETS = [b"x-bogus", b"utf-42", b'"utf-8', b"unknown-8bit", b"", b"\xff\xfe", b"utf-7", b"idna"]

text_lines = st.lists(
    st.text(alphabet=string.ascii_letters + string.digits + ";,.-_ \t\"'" + _LATIN + "\x00", max_size=30),
    max_size=5,
)


@st.composite
def text_content(draw: Draw) -> bytes:
    """CSV-like text: UTF-8 (maybe NUL) lines with CRLF or LF; never ending in a lone CR."""
    lines = [line.encode("utf-8") for line in draw(text_lines)]
    out = b"".join(line + draw(st.sampled_from([b"\r\n", b"\n"])) for line in lines)
    out = out if draw(st.booleans()) else out.rstrip(b"\r\n")
    return out * draw(st.sampled_from([1, 1, 1, 8]))  # now and then long enough for folded encodings


# File contents: CSV-like text or any bytes; some long enough that base64 and QP need several lines.
contents = st.one_of(text_content(), st.binary(max_size=40), st.binary(min_size=60, max_size=240))


def encode(draw: Draw, style: Style, content: bytes, cte: str) -> bytes:
    """``content`` encoded correctly for the transfer encoding ``cte`` (case as written in the header)."""
    kind = cte.strip().lower()
    if kind == "base64":
        encoded = base64.b64encode(content)
        width = draw(st.sampled_from([76, 76, 64, 4, 0]))
        lines = [encoded[i : i + width] for i in range(0, len(encoded), width)] if width else [encoded]
        return style.lines(lines) + (style.nl() if draw(st.booleans()) else b"")
    if kind == "quoted-printable":
        encoded = binascii.b2a_qp(content, quotetabs=draw(st.booleans()), istext=False)
        # b2a_qp writes "=\r\n" soft breaks when the content has a CRLF: the message's line breaks instead
        return style.lines([line.removesuffix(b"\r") for line in encoded.split(b"\n")])
    return content


def damaged(draw: Draw, style: Style, content: bytes, cte: str) -> bytes:
    """``content`` encoded for ``cte`` and then broken: what an undecodable body looks like."""
    kind = cte.strip().lower()
    if kind == "base64":
        encoded = base64.b64encode(content)
        return draw(
            st.sampled_from(
                [
                    encoded[: max(0, len(encoded) - draw(st.integers(1, 5)))],  # truncated
                    encoded + b"=",
                    b"====" + encoded,
                    encoded.replace(b"A", b"!").replace(b"=", b""),
                    b"not base64 at all: \xff\x00 " + encoded,
                    style.lines([encoded[:3], encoded[3:]]) + b"\x00",
                    b"A",
                ]
            )
        )
    if kind == "quoted-printable":
        encoded = binascii.b2a_qp(content, istext=False)
        return draw(
            st.sampled_from(
                [
                    encoded + b"=",  # soft break at the very end
                    encoded.replace(b"=\n", b"=  " + style.nl()),  # blanks after the soft break
                    encoded.replace(b"=\n", b"=\r"),
                    b"=ZZ=4=\r=\x00" + encoded,
                    encoded.replace(b"\n", b"\r"),
                ]
            )
        )
    if kind in {"x-uuencode", "uuencode"}:
        return draw(
            st.sampled_from(
                [
                    b"begin 644 a.bin"
                    + style.nl()
                    + binascii.b2a_uu(content[:45])
                    + b"`"
                    + style.nl()
                    + b"end",
                    b"begin 644 a.bin" + style.nl() + b"M" + b"\xff" * 10,
                    b"garbage",
                ]
            )
        )
    return content + draw(st.sampled_from([b"\x00", b"\r", b"\r\x00\r", b"\xff\xfe", b"\x1b$B"]))


# --- TNEF (winmail.dat) -----------------------------------------------------------------------------


@st.composite
def tnef_files(draw: Draw) -> tuple[list[tuple[bytes, bytes, str | None]], Planted]:
    """Files for a winmail.dat: import files (planted) and others; ASCII titles, any long name."""
    files: list[tuple[bytes, bytes, str | None]] = []
    planted: list[tuple[str, bytes, bool]] = []
    for _ in range(draw(st.integers(0, 3))):
        is_import = draw(st.booleans())
        name = draw(import_names if is_import else other_names)
        content = draw(st.binary(max_size=60))
        if name.isascii() and draw(st.booleans()):
            files.append((name.encode("ascii"), content, None))
        else:
            files.append((b"LONGNA~1.DAT", content, name))
        if is_import:
            planted.append((name, content, False))
    return files, tuple(planted)


@st.composite
def mangled_tnef(draw: Draw) -> bytes:
    """Random bytes, or a valid winmail.dat cut short, overwritten or with a length field lied about."""
    kind = draw(st.sampled_from(["random", "signature", "truncated", "overwritten", "lengths"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "signature":
        return b"\x78\x9f\x3e\x22" + draw(st.binary(max_size=200))
    blob = tnef(*draw(tnef_files())[0])
    if kind == "truncated":
        return blob[: draw(st.integers(0, len(blob)))]
    position = draw(st.integers(0, len(blob) - 1))
    if kind == "overwritten":
        return blob[:position] + draw(st.binary(min_size=1, max_size=8)) + blob[position + 8 :]
    return (
        blob[:position]
        + struct.pack("<I", draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF])))
        + blob[position + 4 :]
    )


# --- leaves -----------------------------------------------------------------------------------------------


def disposition(draw: Draw, style: Style, params: Sequence[bytes]) -> bytes:
    kind = draw(st.sampled_from([b"attachment", b"inline", b"Attachment", b"ATTACHMENT"]))
    return with_params(draw, style, header_name(draw, "Content-Disposition"), kind, params)


def extra_part_headers(draw: Draw, style: Style) -> list[bytes]:
    """Harmless headers of a part: ids, descriptions in any bytes, one very long line."""
    candidates = [
        b"Content-ID: <part." + draw(st.text(string.ascii_letters, max_size=8)).encode() + b"@x>",
        b"Content-Description: " + draw(st.binary(max_size=30)).replace(b"\r", b"").replace(b"\n", b""),
        b"X-Long: " + b"y" * draw(st.integers(900, 4000)),
        header(draw, style, "X-Folded", [b"a", b"b", b"c"]),
        b"Content-Language: de-CH",
    ]
    return draw(st.lists(st.sampled_from(candidates), max_size=2))


def planted_file(draw: Draw, style: Style) -> Part:
    """A correctly written import file: it must be found with exactly this name and content."""
    name = draw(import_names)
    cte = draw(
        st.sampled_from(
            ["base64", "Base64", " BASE64", "base64 ", "quoted-printable", "7bit", "8bit", "binary", ""]
        )
    )
    if cte.strip().lower() in {"base64", "quoted-printable"}:
        content = draw(contents)
    else:
        content = draw(text_content())
    content_type = draw(
        st.sampled_from(
            [
                b"text/csv",
                b"text/plain",
                b"application/octet-stream",
                b"application/vnd.ms-excel",
                b"TEXT/CSV",
            ]
        )
    )
    type_params = (
        [b"charset=" + draw(st.sampled_from(_CHARSETS + _BOGUS_CHARSETS[:2]))] if draw(st.booleans()) else []
    )
    where = draw(st.sampled_from(["disposition", "type", "both", "disposition-and-decoy", "no-content-type"]))
    fields: list[bytes] = []
    if where in {"type", "both"}:
        type_params += name_params(draw, "name", name)
    if where == "disposition-and-decoy":
        type_params.append(b'name="decoy.pdf"')  # the Content-Disposition filename wins
    if where != "no-content-type":
        fields.append(with_params(draw, style, header_name(draw, "Content-Type"), content_type, type_params))
    if where != "type":
        fields.append(disposition(draw, style, name_params(draw, "filename", name)))
    if cte:
        fields.append(header_name(draw, "Content-Transfer-Encoding").encode() + b": " + cte.encode())
    fields += extra_part_headers(draw, style)
    fields = list(draw(st.permutations(fields)))
    if where != "type" and draw(st.integers(0, 5)) == 0:  # a second Content-Disposition: the first counts
        fields.append(b'Content-Disposition: attachment; filename="second.pdf"')
    if style.newline == b"\r":  # "\r" + "\n..." would read as one CRLF line break
        content = content.lstrip(b"\n")
    body = encode(draw, style, content, cte)
    return Part(tuple(fields), body, planted=((name, content, False),))


def text_body(draw: Draw, style: Style, wild: bool) -> Part:
    """A message body without a name (never an import file): any charset, any encoding, maybe broken."""
    charsets = _CHARSETS + _BOGUS_CHARSETS
    content_type = draw(st.sampled_from([b"text/plain", b"text/html", b"text/csv", b"text/x-unknown"]))
    params = [b"charset=" + draw(st.sampled_from(charsets))] if draw(st.booleans()) else []
    if draw(st.booleans()):
        params.append(b"format=flowed")
    cte = draw(st.sampled_from(["", "7bit", "8bit", "binary", "base64", "quoted-printable", "x-unknown"]))
    content = draw(st.one_of(text_content(), st.binary(max_size=80)))
    if content_type == b"text/plain" and draw(st.booleans()):
        charset = draw(st.sampled_from(["utf-8", "iso-2022-jp", "shift_jis"]))
        content = ("Grüße, " if charset == "utf-8" else "").encode() + "まみむめも".encode(charset)
    body = damaged(draw, style, content, cte) if draw(st.booleans()) else encode(draw, style, content, cte)
    fields = (
        [with_params(draw, style, "Content-Type", content_type, params)] if draw(st.integers(0, 4)) else []
    )
    if cte:
        fields.append(b"Content-Transfer-Encoding: " + cte.encode())
    if draw(st.booleans()):
        fields.append(b"Content-Disposition: inline")
    fields += extra_part_headers(draw, style)
    return Part(tuple(fields), body)


def other_attachment(draw: Draw, style: Style, wild: bool) -> Part:
    """An attachment that is not an import file (or, wild, whose name nobody can predict)."""
    content_type = draw(
        st.sampled_from([b"application/pdf", b"image/png", b"application/octet-stream", b"application/x-foo"])
    )
    cte = draw(st.sampled_from(["base64", "quoted-printable", "8bit", "x-uuencode", "x-token", ""]))
    content = draw(st.binary(max_size=80))
    body = damaged(draw, style, content, cte) if draw(st.booleans()) else encode(draw, style, content, cte)
    kind = draw(st.sampled_from(["named", "named", "nameless", "wild"] if wild else ["named", "nameless"]))
    if kind == "named":
        params = name_params(draw, "filename", draw(other_names))
    elif kind == "wild":
        params = [draw(wild_name_params)]
    else:
        params = []
    fields = [
        b"Content-Type: " + content_type,
        disposition(draw, style, params),
        *([b"Content-Transfer-Encoding: " + cte.encode()] if cte else []),
    ]
    return Part(tuple(draw(st.permutations(fields))), body, surprises=kind == "wild")


nothing_left_params = st.sampled_from(
    [
        b'filename="../"',
        b'filename=".."',
        b'filename=" . . "',
        b"filename*=utf-8''%2F%5C%2E",
        b"filename*=utf-8''%01%1B%7F",
        b"filename*=utf-8''%E2%80%AE%E2%80%8F%E2%80%8B",
        b'filename="=?utf-8?Q?=2E=2E=2F?="',
    ]
)


def nameless_csv(draw: Draw, style: Style) -> Part:
    """A CSV whose name cleans to nothing: listed as unnamed, never an import file (nothing planted)."""
    fields = [
        b"Content-Type: " + draw(st.sampled_from([b"text/csv", b"text/plain"])),
        disposition(draw, style, [draw(nothing_left_params)]),
    ]
    return Part(tuple(draw(st.permutations(fields))), draw(text_content()))


def winmail(draw: Draw, style: Style, wild: bool) -> Part:
    """An Outlook winmail.dat: a valid TNEF stream with planted files, or (wild) a mangled one."""
    mangled = wild and draw(st.booleans())
    planted: Planted = ()
    if mangled:
        blob = draw(mangled_tnef())
    else:
        files, planted = draw(tnef_files())
        blob = tnef(*files)
    content_type, params = draw(
        st.sampled_from(
            [
                (b"application/ms-tnef", [b'name="winmail.dat"']),
                (b"application/vnd.ms-tnef", []),
                (b"application/octet-stream", [b'name="winmail.dat"']),
                (b"Application/MS-TNEF", [b"name=WINMAIL.DAT"]),
            ]
        )
    )
    fields = [
        with_params(draw, style, "Content-Type", content_type, params),
        b"Content-Transfer-Encoding: base64",
    ]
    if draw(st.booleans()):
        fields.append(b'Content-Disposition: attachment; filename="winmail.dat"')
    return Part(tuple(fields), encode(draw, style, blob, "base64"), planted=planted, surprises=mangled)


def broken_file(draw: Draw, style: Style) -> Part:
    """An import file that cannot be read as written: expected nowhere, allowed anywhere."""
    part = planted_file(draw, style)
    cte = draw(st.sampled_from(["base64", "quoted-printable", "x-uuencode", "8bit"]))
    fields = [field for field in part.headers if not field.lower().startswith(b"content-transfer-encoding")]
    fields.append(b"Content-Transfer-Encoding: " + cte.encode())
    body = damaged(draw, style, part.planted[0][1] if part.planted else b"a;b", cte)
    return Part(tuple(fields), body, surprises=True)


def leaf(draw: Draw, style: Style, wild: bool) -> Part:
    kinds = ["planted", "planted", "text", "other", "winmail", "nameless csv"] + (["broken"] if wild else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "planted":
        return planted_file(draw, style)
    if kind == "nameless csv":
        return nameless_csv(draw, style)
    if kind == "text":
        return text_body(draw, style, wild)
    if kind == "other":
        return other_attachment(draw, style, wild)
    if kind == "winmail":
        return winmail(draw, style, wild)
    return broken_file(draw, style)


# --- containers ------------------------------------------------------------------------------------------

_QUOTED_BOUNDARY_CHARS = string.ascii_letters + string.digits + "'()+_,-./:=? "


def boundary_param(draw: Draw, path: str) -> tuple[bytes, bytes]:
    """(boundary, its parameter); ``path`` keeps every boundary of a message distinct."""
    kind = draw(st.sampled_from(["quoted", "token", "outlook"]))
    suffix = "_p" + path.replace(".", "x")
    if kind == "outlook":  # unquoted, with "=": read by compat32 only
        boundary = f"----=_NextPart_000_{draw(st.integers(0, 0xFFFF)):04X}" + suffix
        return boundary.encode(), b"boundary=" + boundary.encode()
    if kind == "token":
        boundary = draw(st.text(string.ascii_letters + string.digits + "-_.", max_size=30)) + suffix
        return boundary.encode(), b"boundary=" + boundary.encode()
    boundary = draw(st.text(_QUOTED_BOUNDARY_CHARS, max_size=60)) + suffix
    return boundary.encode(), b'boundary="' + boundary.encode() + b'"'


def has_delimiter(data: bytes, boundary: bytes) -> bool:
    """Whether a line of ``data`` is a delimiter of ``boundary`` as Python's feedparser sees it."""
    delimiter = re.compile(b"--" + re.escape(boundary) + rb"(?:--)?[ \t]*")
    return any(delimiter.fullmatch(line) for line in re.split(rb"\r\n|\r|\n", data))


def multipart(draw: Draw, style: Style, depth: int, path: str, wild: bool) -> Part:
    subtypes = ["mixed", "mixed", "alternative", "related", "report", "signed", "x-unknown"]
    subtype = draw(st.sampled_from(subtypes + (["digest"] if wild else [])))
    children = [node(draw, style, depth + 1, f"{path}.{i}", wild) for i in range(draw(st.integers(1, 3)))]
    boundary, param = boundary_param(draw, path)
    damage = draw(
        st.sampled_from(
            ["none", "none", "no close", "padding", "mid-line", "preamble"]
            + (
                ["no boundary", "other boundary", "no content type", "no open", "delimiter in body"]
                if wild
                else []
            )
        )
    )
    params = [param]
    if subtype == "report":
        params.append(b"report-type=delivery-status")
    if subtype == "related" and draw(st.booleans()):
        params.append(b'type="text/plain"')
    if damage == "no boundary":
        params = params[1:]
    elif damage == "other boundary":
        params = [b'boundary="not-' + boundary + b'"', *params[1:]]
    maintype = draw(st.sampled_from([b"multipart/", b"Multipart/", b"MULTIPART/"]))
    fields = [
        with_params(draw, style, header_name(draw, "Content-Type"), maintype + subtype.encode(), params)
    ]
    if damage == "no content type":
        fields = []
    if draw(st.booleans()):
        fields.append(b"Content-Transfer-Encoding: " + draw(st.sampled_from([b"7bit", b"8bit", b"binary"])))

    body, rendered = multipart_body(
        draw, style, boundary, [child.render(style) for child in children], damage
    )
    broken = {"no boundary", "other boundary", "no content type", "no open"}
    # multipart/digest: a part without Content-Type is message/rfc822 there, so a file may be read as one
    intact = (
        damage not in broken
        and subtype != "digest"
        and not any(has_delimiter(child, boundary) for child in rendered)
    )
    planted = tuple(file for child in children[:-1] for file in child.planted) + tuple(
        (name, content, loose or damage == "no close") for name, content, loose in children[-1].planted
    )
    return Part(
        tuple(fields),
        body,
        planted=planted if intact else (),
        surprises=not intact or any(child.surprises for child in children),
    )


def multipart_body(
    draw: Draw, style: Style, boundary: bytes, rendered: list[bytes], damage: str
) -> tuple[bytes, list[bytes]]:
    """The body of a multipart around its rendered parts, damaged as asked; also the parts as placed."""
    if damage == "mid-line":  # the boundary inside lines of text is no delimiter
        rendered.insert(
            draw(st.integers(0, len(rendered))),
            Part(
                (b"Content-Type: text/plain",),
                style.lines([b"x--" + boundary, b" --" + boundary, b"--" + boundary + b"x"]),
            ).render(style),
        )
    if damage == "delimiter in body":
        rendered[-1] += style.nl() + b"--" + boundary
    padding = b" \t" if damage == "padding" else b""
    body = b""
    if damage == "preamble":
        body += (
            style.lines([b"This is a multi-part message in MIME format.", b"", b"--" + boundary + b"x"])
            + style.nl()
        )
    for index, child in enumerate(rendered):
        if index:
            body += style.nl()  # this line break belongs to the delimiter after the part
        if not (damage == "no open" and index == 0):
            body += b"--" + boundary + padding + style.nl()
        body += child
    if damage != "no close":  # without one, the part ends where the enclosing entity does
        body += style.nl() + b"--" + boundary + b"--" + padding
        if draw(st.booleans()):
            body += style.nl() + style.lines([b"epilogue", b"--" + boundary + b"-- not the end"])
    return body, rendered


def forwarded(draw: Draw, style: Style, depth: int, path: str, wild: bool) -> Part:
    """A message/rfc822 part: as is, or base64- or quoted-printable-encoded (not allowed by RFC 2046,
    sent anyway)."""
    inner = message(draw, style, depth + 1, path, wild)
    cte = draw(
        st.sampled_from(["", "7bit", "8bit", "base64", "quoted-printable"] + (["x-bogus"] if wild else []))
    )
    inner_raw = inner.render(style)
    fields = [b"Content-Type: message/rfc822" + draw(st.sampled_from([b"", b'; name="fwd.eml"']))]
    if draw(st.booleans()):
        fields.append(disposition(draw, style, draw(st.sampled_from([[], [b'filename="Fwd: orders.eml"']]))))
    if cte:
        fields.append(b"Content-Transfer-Encoding: " + cte.encode())
    body = encode(draw, style, inner_raw, cte) if cte in {"base64", "quoted-printable"} else inner_raw
    intact = cte in {"", "7bit", "8bit", "base64", "quoted-printable"}
    return Part(
        tuple(fields),
        body,
        planted=inner.planted if intact else (),
        surprises=inner.surprises or not intact,
    )


def node(draw: Draw, style: Style, depth: int, path: str, wild: bool) -> Part:
    if depth >= MAX_DEPTH:
        return leaf(draw, style, wild)
    kind = draw(st.sampled_from(["leaf", "leaf", "multipart", "multipart", "forwarded"]))
    if kind == "multipart":
        return multipart(draw, style, depth, path, wild)
    if kind == "forwarded":
        return forwarded(draw, style, depth, path, wild)
    return leaf(draw, style, wild)


# --- top-level headers --------------------------------------------------------------------------------

_DOMAINS = [
    ("example.com", "example.com"),
    ("Partner.CH", "partner.ch"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("mail.sub.example.org", "mail.sub.example.org"),
]
local_parts = st.text(string.ascii_letters + string.digits + "._+-", min_size=1, max_size=16).filter(
    lambda local: (
        not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
        and "mailer-daemon" not in local.lower()
    )
)
display_names = st.text(string.ascii_letters + " ", min_size=1, max_size=20).filter(lambda n: n.strip() != "")


@dataclass(frozen=True)
class FromHeader:
    fields: tuple[bytes, ...]
    sender: str | None  # what sender_address must answer (None: it must refuse)
    known: bool = True  # False: the generator does not predict the answer
    automatic: bool = False  # From MAILER-DAEMON


@st.composite
def from_headers(draw: Draw) -> FromHeader:
    local = draw(local_parts)
    domain, normalized = draw(st.sampled_from(_DOMAINS))
    address = f"{local}@{domain}".encode()
    ascii_address = f"{local}@example.com".encode()
    sender = f"{local.lower()}@{normalized}"
    name = draw(display_names).encode()
    plain = {
        "bare": address,
        "angle": b"<" + address + b">",
        "named": name + b" <" + address + b">",
        "quoted comma": b'"Doe, ' + name + b'" <' + address + b">",
        "quoted at": b'"boss@partner.ch" <' + address + b">",
        "encoded name": b"=?utf-8?Q?J=C3=B6rg?= <" + address + b">",
        "broken encoded name": b"=?utf-8?B?!!?= <" + address + b">",
        # Latin-1 beside a UTF-8 domain reads as Windows-1252 mojibake: only with ASCII domains
        "latin-1 name": b"J\xf6rg M\xfcller <" + (address if domain.isascii() else ascii_address) + b">",
        "comment": address + b" (J\xc3\xb6rg)",
        "utf-8 local part": b"j\xc3\xb6" + address,
    }
    refused = {
        "group": b"undisclosed-recipients:;",
        "group of two": b"Team: " + address + b", other@example.com;",
        "two": address + b", other@example.com",
        "empty": b"",
        "null": b"<>",
        "no at": local.encode(),
        "quoted local part": b'"john doe"@example.com',
        "too long": b"x" * 2100 + b"@example.com",
    }
    unknown = [
        b"<" + address,
        address + b" (unclosed comment",
        b'"unclosed <' + address + b">",
        b"@",
        b"a@b@c.example",
        b"Name <>",
        b"=?utf-8?Q?a=40b.example?= <" + address + b">",
        name + b" " + address,
        b"boss@partner.ch <" + address + b">",
        b"\x00" + address,
        b"x@[127.0.0.1]",
        b"x@" + b"a" * 70 + b".example",
    ]
    kind = draw(st.sampled_from(["plain"] * 4 + ["refused", "unknown", "none", "twice", "daemon"]))
    if kind == "plain":
        form = draw(st.sampled_from(sorted(plain)))
        expected = sender if form != "utf-8 local part" else "jö" + sender
        if form == "latin-1 name" and not domain.isascii():
            expected = f"{local.lower()}@example.com"
        return FromHeader((b"From: " + plain[form],), expected)
    if kind == "refused":
        return FromHeader((b"From: " + refused[draw(st.sampled_from(sorted(refused)))],), None)
    if kind == "none":
        return FromHeader((), None)
    if kind == "twice":
        return FromHeader((b"From: " + address, b"FROM: " + address), None)
    if kind == "daemon":
        return FromHeader(
            (b"From: MAILER-DAEMON@" + domain.encode(),), f"mailer-daemon@{normalized}", automatic=True
        )
    return FromHeader((b"From: " + draw(st.sampled_from(unknown)),), None, known=False)


_BROKEN_WORDS = [
    b"=?utf-8?B?!!!?=",
    b"=?utf-8?Q?unterminated",
    b"=?x-bogus?Q?abc?=",
    b"=?utf-8?X?abc?=",
    b"=??Q?abc?=",
    b"=?utf-8?B?w?=",
    b"=?utf-8?Q?=ZZ=4?=",
    b"=?utf-8?B?4pyT?==?utf-8?B?4p?=",
    b"=?iso-2022-jp?B?GyRCJF4kXyRgJGEkYhsoQg==?=",
    b"=?utf-8*en?Q?lang?=",
    b"\xff\xfe\x00",
    b"\x1b$B",
]


def subjects(draw: Draw, style: Style) -> tuple[tuple[bytes, ...], bool]:
    """Subject fields and whether the first one certainly carries the keyword."""
    words: list[bytes] = [
        w.encode()
        for w in draw(st.lists(st.text(string.ascii_letters + _LATIN, min_size=1, max_size=8), max_size=4))
    ]
    with_keyword = draw(st.booleans())
    if with_keyword:
        keyword = draw(st.sampled_from([KEYWORD, KEYWORD.lower(), KEYWORD.upper()]))
        how = draw(st.sampled_from(["plain", "encoded"]))
        piece = keyword.encode() if how == "plain" else _encoded_words(draw, f"Import {keyword} 2024")
        words.insert(draw(st.integers(0, len(words))), piece)
    if draw(st.booleans()):
        words.insert(
            draw(st.integers(0, len(words))),
            _encoded_words(draw, draw(st.text(_STEM_CHARS, max_size=10)) or "x"),
        )
    if draw(st.booleans()):
        words.insert(draw(st.integers(0, len(words))), draw(st.sampled_from(_BROKEN_WORDS)))
    kind = draw(st.sampled_from(["one", "one", "none", "twice", "long"]))
    if kind == "none":
        return (), False
    first = header(draw, style, "Subject", words or [b""])
    if kind == "long":
        first += b" " + b"z" * draw(st.integers(998, 5000))
    fields = (first, b"Subject: second") if kind == "twice" else (first,)  # kept in this order
    return fields, with_keyword


_AUTOMATIC = [
    b"Auto-Submitted: auto-replied",
    b"Auto-Submitted: auto-generated (vacation)",
    b"Precedence: bulk",
    b"Precedence: JUNK",
    b"List-Id: Partner news <news.partner.example>",
    b"Return-Path: <>",
    b"X-Autoreply: yes",
]
_NOT_AUTOMATIC = [b"Auto-Submitted: no", b"Precedence: first-class", b"Return-Path: <orders@partner.ch>"]


def other_top_headers(draw: Draw, style: Style) -> list[bytes]:
    candidates = [
        b"Date: Mon, 3 Jun 2024 10:00:00 +0200",
        b"Date: yesterday-ish",
        b"Message-ID: <"
        + draw(st.text(string.ascii_letters, min_size=1, max_size=10)).encode()
        + b"@partner.ch>",
        b"Message-ID: not an id",
        b"To: import@lettershop.example",
        b"To: undisclosed-recipients:;",
        b"MIME-Version: 1.0",
        b"MIME-Version: 1.0 (Produced by PhotoMail)",
        b"Received: from mx.partner.ch by mx.lettershop.example; " + b"x" * draw(st.integers(0, 3000)),
        b"X-Mailer: \xe2\x9c\x93 \xff",
        b"X-Odd!#$%&'*+-.^_`|~: value",
        b"X-Nul: a\x00b",
        b"Authentication-Results: mx.lettershop.example; dmarc=pass header.from=partner.ch",
        b"In-Reply-To: <a@b>",
        header(draw, style, "References", [b"<a@b>", b"<c@d>", b"<e@f>"]),
    ]
    return draw(st.lists(st.sampled_from(candidates), max_size=5))


def interleave(draw: Draw, first: Sequence[bytes], second: Sequence[bytes]) -> list[bytes]:
    """The two lists shuffled into each other, each keeping its own order."""
    slots = draw(st.permutations([0] * len(first) + [1] * len(second)))
    sources = [iter(first), iter(second)]
    return [next(sources[slot]) for slot in slots]


@dataclass(frozen=True)
class Mail:
    """A generated message and what the generator knows about it."""

    part: Part  # the whole message as a Part: top-level header fields and body
    sender: FromHeader
    keyword: bool  # the first Subject carries the keyword, decodably
    automatic: bool | None  # must be (True) / must not be (False) automatic; None: unknown
    well_formed_headers: bool = True

    def render(self, style: Style) -> bytes:
        return self.part.render(style)


def message(draw: Draw, style: Style, depth: int, path: str, wild: bool) -> Part:
    """A whole message (a forwarded one, or the top level) as a Part."""
    return top_message(draw, style, depth, path, wild).part


def top_message(draw: Draw, style: Style, depth: int, path: str, wild: bool) -> Mail:
    body = node(draw, style, depth, path, wild)
    sender = draw(from_headers())
    subject_fields, keyword = subjects(draw, style)
    automatic_fields = draw(st.lists(st.sampled_from(_AUTOMATIC + _NOT_AUTOMATIC), max_size=2))
    is_report = any(field.lower().startswith(b"content-type: multipart/report") for field in body.headers)
    automatic = any(field in _AUTOMATIC for field in automatic_fields) or sender.automatic or is_report
    others = draw(st.permutations([*sender.fields, *automatic_fields, *other_top_headers(draw, style)]))
    # Where a header is doubled the first one counts: Subject and the body's fields keep their order.
    fields = interleave(draw, interleave(draw, others, subject_fields), body.headers)
    if not fields:
        fields = [b"X-Only: one header"]
    part = replace(body, headers=tuple(fields))
    mail = Mail(part, sender, keyword, automatic)
    if wild:
        mail = wild_headers(draw, mail)
    return mail


def wild_headers(draw: Draw, mail: Mail) -> Mail:
    """Header damage that can change what comes after it: nothing is predicted any more."""
    damage = draw(
        st.sampled_from(["none", "none", "none", "garbage line", "lone CR", "leading blank", "no headers"])
    )
    if damage == "none":
        return mail
    fields = list(mail.part.headers)
    position = draw(st.integers(0, len(fields)))
    if damage == "garbage line":
        fields.insert(
            position, draw(st.sampled_from([b"not a header", b"Name : spaced", b": empty name", b"\x00: x"]))
        )
    elif damage == "lone CR":
        fields.insert(position, b"X-Cr: a\rb: c\r")
    elif damage == "leading blank":
        fields.insert(0, b" continuation without a field")
    else:
        fields = []
    part = replace(mail.part, headers=tuple(fields), planted=(), surprises=True)
    return Mail(part, replace(mail.sender, known=False), False, None, well_formed_headers=False)


@st.composite
def mails(draw: Draw, wild: bool) -> tuple[bytes, Mail]:
    style = Style(draw, draw(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r", b""])))
    mail = top_message(draw, style, 0, "0", wild)
    raw = mail.render(style)
    if draw(st.booleans()):
        raw = b"From orders@partner.ch Mon Jun  3 10:00:00 2024" + style.nl() + raw  # mbox separator
    if wild and draw(st.booleans()):
        raw = draw(mutated(raw))
        part = replace(mail.part, planted=(), surprises=True)
        mail = Mail(part, replace(mail.sender, known=False), False, None, well_formed_headers=False)
    return raw, mail


@st.composite
def mutated(draw: Draw, raw: bytes) -> bytes:
    """Byte-level damage anywhere: truncation, NUL, lone CR, LF for CRLF, a cut-out or doubled slice."""
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        to = draw(st.integers(at, min(len(raw), at + 200)))
        kind = draw(st.sampled_from(["truncate", "nul", "cr", "lf", "cut", "double", "bytes"]))
        if kind == "truncate":
            raw = raw[:at]
        elif kind == "nul":
            raw = raw[:at] + b"\x00" + raw[at:]
        elif kind == "cr":
            raw = raw[:at] + b"\r" + raw[at:]
        elif kind == "lf":
            raw = raw[:at] + raw[at:to].replace(b"\r\n", b"\n") + raw[to:]
        elif kind == "cut":
            raw = raw[:at] + raw[to:]
        elif kind == "double":
            raw = raw[:to] + raw[at:to] + raw[to:]
        else:
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=20)) + raw[to:]
    return raw


# --- the invariants ------------------------------------------------------------------------------------


def check_screening(raw: bytes, mail: Mail) -> None:
    """Header screening never raises, answers with the documented types, and what was planted holds."""
    headers = parse_headers(raw)
    assert isinstance(headers.subject, str)
    assert "\n" not in headers.subject
    assert "\r" not in headers.subject
    assert parse_headers(headers.raw).fields == headers.fields  # TOP n 0 decides as RETR does
    recognized = is_recognized(headers.subject, exclusive_account=False, keyword=KEYWORD)
    assert isinstance(recognized, bool)
    assert is_recognized(headers.subject, exclusive_account=True, keyword=KEYWORD) is True
    if mail.keyword:
        assert recognized, f"keyword not recognised in {headers.subject!r}"
    automatic = automatic_reason(headers)
    assert automatic is None or (isinstance(automatic, str) and automatic)
    if mail.automatic is not None:
        assert (automatic is not None) == mail.automatic, automatic

    refusal = ""
    try:
        sender: str | None = sender_address(headers.get_all("From"))
    except RejectedMessage as exc:
        sender, refusal = None, str(exc)
    assert (sender is None) == bool(refusal)
    if mail.sender.known:
        assert sender == mail.sender.sender

    for require in (False, True):
        for allowed in (["example.com", "*.example.com"], [sender] if sender else []):
            found, reason = rejection_reason(
                headers,
                allowed_senders=allowed,
                require_authenticated_sender=require,
                trusted_authserv_ids=TRUSTED,
            )
            assert found is None or ("@" in found and found == found.lower())
            assert found == sender
            assert reason is None or (isinstance(reason, str) and reason)
            if require and not headers.get_all("Authentication-Results"):
                assert reason is not None  # nobody is authenticated without a trusted server's word
            if sender is None or automatic is not None:
                assert reason is not None
            elif allowed == [sender] and not require:
                assert reason is None  # an allowed, parsable, non-automatic sender is accepted


def check_parsing(raw: bytes, mail: Mail) -> None:
    """parse_message: a ParsedMessage or RejectedMessage only; safe unique names; planted files found."""
    parsed: ParsedMessage | None = None
    try:
        parsed = parse_message(raw, PATTERNS)
    except RejectedMessage as exc:
        rejection = str(exc)
    if parsed is None:
        assert rejection.startswith("message cannot be parsed")
        assert not mail.part.planted, f"rejected ({rejection}) but it holds {mail.part.planted}"
        assert not mail.well_formed_headers or not parse_headers(raw).fields
    else:
        assert isinstance(parsed, ParsedMessage)
        seen: set[str] = set()
        for file in parsed.import_files:
            assert file.filename
            assert not any(ch in file.filename for ch in FORBIDDEN_IN_NAMES), file.filename
            assert file.filename.casefold() not in seen
            seen.add(file.filename.casefold())
            assert any(fnmatchcase(file.filename.casefold(), pattern) for pattern in PATTERNS)
            assert isinstance(file.content, bytes)
            assert follows_the_name_rules(file.filename), file.filename  # renamed duplicates too
        for name in parsed.other_attachments:
            assert name
            assert not any(ch in name for ch in "\x00\r\n"), name
            assert follows_the_name_rules(name) or re.fullmatch(
                r"\(unnamed [^\x00-\x1f]*attachment\)", name
            ), name
        assert all(isinstance(defect, str) and defect for defect in parsed.defects)
        check_planted(parsed, mail.part)
        event(f"planted import files expected: {min(len(mail.part.planted), 3)}")
        event(f"import files found: {min(len(parsed.import_files), 3)}")

    kind, detail = outcome(raw)
    assert (kind, type(detail)) in {("rejected", str), ("parsed", ParsedMessage)}
    event(f"outcome: {kind}")


def follows_the_name_rules(name: str) -> bool:
    """The rules of a safe name (filenames.py): a base name, no control, format (bidi) or reserved
    characters, no leading or trailing dots and spaces, NFC, at most 200 UTF-8 bytes."""
    return (
        bool(name)
        and unicodedata.is_normalized("NFC", name)
        and not any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for ch in name)
        and not any(ch in '/\\<>:"|?*' for ch in name)
        and name.strip(" .") == name
        and len(name.encode("utf-8")) <= 200
    )


def _same_file(found: str, planted: str) -> bool:
    """``found`` is ``planted``, or the name unique_filename gives a second file of that name."""
    if found == planted:
        return True
    stem, extension = split_extension(planted)
    renamed = re.escape(stem.rstrip(" ")) + r" +\([0-9]+\)" + re.escape(extension)  # "a .csv": "a (2).csv"
    return re.fullmatch(renamed, found) is not None


def check_planted(parsed: ParsedMessage, part: Part) -> None:
    remaining = list(parsed.import_files)
    for name, content, loose in part.planted:
        match = next(
            (
                file
                for file in remaining
                if _same_file(file.filename, unicodedata.normalize("NFC", name))
                and (
                    file.content == content
                    or (loose and file.content.rstrip(b"\r\n") == content.rstrip(b"\r\n"))
                )
            ),
            None,
        )
        assert match is not None, (
            f"planted import file {name!r} ({content!r}) not found; import files: "
            f"{[(f.filename, f.content) for f in parsed.import_files]}, others: {parsed.other_attachments}, "
            f"defects: {parsed.defects}"
        )
        remaining.remove(match)
    if not part.surprises:
        assert remaining == [], f"import files nobody planted: {remaining}"


# --- the tests --------------------------------------------------------------------------------------------

# pytest-timeout's 120 s (pyproject.toml) is per test, and a Hypothesis test is one test: `make fuzz`
# (20000 examples, about 20 ms each) needs more. The bounded run takes a few seconds.
scaled_timeout = pytest.mark.timeout(max(120, settings().max_examples // 20))


@pytest.mark.property
@scaled_timeout
@given(mails(wild=False))
def test_given_generated_well_formed_mail_when_parsed_then_every_planted_import_file_is_found(
    generated: tuple[bytes, Mail],
) -> None:
    raw, mail = generated
    check_screening(raw, mail)
    check_parsing(raw, mail)


@pytest.mark.property
@scaled_timeout
@given(mails(wild=True))
def test_given_generated_broken_mail_when_screened_and_parsed_then_exactly_one_defined_outcome(
    generated: tuple[bytes, Mail],
) -> None:
    raw, mail = generated
    check_screening(raw, mail)
    check_parsing(raw, mail)


@pytest.mark.property
@scaled_timeout
@given(mangled_tnef())
def test_given_a_mangled_winmail_dat_when_read_then_files_or_tnef_error_only(blob: bytes) -> None:
    try:
        files = read_tnef(blob)
    except TnefError as exc:
        files, refusal = (), str(exc)
    else:
        refusal = "none"
    assert refusal
    for file in files:
        assert isinstance(file.name, str)
        assert "\x00" not in file.name
        assert isinstance(file.content, bytes)


# --- regressions: bugs the properties found, fixed in src/domain --------------------------------------

CSV = b"reference;name\r\nA1;Muster\r\n"


def test_given_a_blank_after_base64_in_the_transfer_encoding_when_parsed_then_the_file_is_decoded() -> None:
    raw = (
        b"From: orders@partner.ch\r\nSubject: LetterShop import\r\nContent-Type: text/csv\r\n"
        b'Content-Disposition: attachment; filename="orders.csv"\r\n'
        b"Content-Transfer-Encoding: base64 \r\n\r\n"
        b"cmVmZXJlbmNlO25hbWUNCkExO011c3Rlcg0K\r\n"
    )
    assert parse_message(raw, PATTERNS).import_files == (ImportFile("orders.csv", CSV),)


def test_given_an_unquoted_outlook_boundary_without_close_delimiter_when_parsed_then_the_file_is_found() -> (
    None
):
    raw = (
        b"From: orders@partner.ch\r\nSubject: LetterShop import\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\nContent-Type: multipart/mixed; boundary=----=_NextPart_000_0001\r\n\r\n"
        b"------=_NextPart_000_0001\r\nContent-Type: text/csv\r\n"
        b'Content-Disposition: attachment; filename="orders.csv"\r\n\r\n'
        b"reference;name\r\nA1;Muster\r\n"
        b"--outer--\r\n"  # the inner close delimiter ------=_NextPart_000_0001-- is missing
    )
    assert parse_message(raw, PATTERNS).import_files == (
        ImportFile("orders.csv", b"reference;name\r\nA1;Muster"),
    )


def test_given_quoted_printable_with_lone_cr_line_breaks_when_parsed_then_the_file_is_complete() -> None:
    raw = (
        b"From: orders@partner.ch\rSubject: LetterShop import\rContent-Type: text/csv\r"
        b'Content-Disposition: attachment; filename="orders.csv"\r'
        b"Content-Transfer-Encoding: quoted-printable\r\r"
        b"reference;na=\rme=0D=0AA1;Muster=0D=0A"
    )
    assert parse_message(raw, PATTERNS).import_files == (ImportFile("orders.csv", CSV),)


def test_given_two_import_files_with_the_same_long_name_when_parsed_then_both_names_are_safe() -> None:
    name = b"x" * 300 + b".csv"
    part = b'--b\r\nContent-Disposition: attachment; filename="' + name + b'"\r\n\r\nA1;Muster\r\n'
    head = b'From: orders@partner.ch\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    raw = head + part * 2 + b"--b--\r\n"
    names = [file.filename for file in parse_message(raw, PATTERNS).import_files]
    assert len(names) == 2
    assert all(len(name.encode("utf-8")) <= 200 and safe_filename(name, index=1) == name for name in names)


def test_given_an_outlook_boundary_around_an_unclosed_multipart_when_parsed_then_the_file_is_found() -> None:
    raw = (
        b"From: orders@partner.ch\r\nSubject: LetterShop import\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\nContent-Type: multipart/mixed; boundary=----=_NextPart_000_0001\r\n\r\n"
        b'------=_NextPart_000_0001\r\nContent-Type: multipart/mixed; boundary="inner"\r\n\r\n'
        b"--inner\r\nContent-Type: text/csv\r\n"
        b'Content-Disposition: attachment; filename="orders.csv"\r\n\r\n'
        b"reference;name\r\nA1;Muster\r\n"
        b"--outer--\r\n"  # neither ------=_NextPart_000_0001-- nor --inner-- is there
    )
    assert parse_message(raw, PATTERNS).import_files == (
        ImportFile("orders.csv", b"reference;name\r\nA1;Muster"),
    )
