"""Parse bounds: how much structure a message may claim, checked before or while it is parsed.

The standard library's parser, and tnefparse, do whatever the data asks: 800,000 empty MIME parts
in 5.6 MB take minutes, one TNEF property claiming 3 million values takes hundreds of megabytes.
Limits applied to the finished result come too late. Here every bound is checked as the structure
is read - the MIME part that would be one too many is never built - and a message beyond one of
them is ``RejectedMessage`` (quarantined with the reason, never answered).

The bounds are far above what real mail uses (DESIGN §6 "rejected ... unparsable"):

=====================  ==========  ===============================================================
bound                  value       real mail
=====================  ==========  ===============================================================
max_mime_parts         1,000       every part of the message, forwarded messages included; a
                                   mailer writes a handful, a digest a few hundred
max_mime_depth         30          multiparts and message/rfc822 nested in one message; real mail
                                   rarely goes beyond 10 (forwards of forwards)
max_header_fields      1,000       fields in one header block (message or part); a message that
                                   crossed many relays has some tens of Received fields
max_header_field       65,536      bytes of one field, folded lines included; long References or
                                   To/Cc lists stay far below this
max_tnef_attributes    10,000      attributes in one winmail.dat, embedded messages included;
                                   Outlook writes about 6 per attached file
max_tnef_values        50,000      MAPI property values in one winmail.dat (every value of a
                                   multi-valued property counts); Outlook writes a few hundred
=====================  ==========  ===============================================================
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from email import feedparser as _stdlib_feedparser
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import Policy
from typing import IO, TYPE_CHECKING, Any

from domain.errors import RejectedMessage

MAX_MIME_PARTS = 1_000
MAX_MIME_DEPTH = 30
MAX_HEADER_FIELDS = 1_000
MAX_HEADER_FIELD_BYTES = 64 * 1024
MAX_TNEF_ATTRIBUTES = 10_000
MAX_TNEF_VALUES = 50_000
# What the screening before download (``TOP n 0``) keeps of a header block; the rest is read from
# the connection and dropped. Recognition sees the first MiB; a message whose Subject stands later
# is not recognised on a shared account (an exclusive one downloads it, and the parse bounds apply).
MAX_SCREENED_HEADER_BYTES = 1024 * 1024

_CHUNK = 64 * 1024  # bytes handed to the parser at a time: it stops at the first bound crossed
_SPOOL_BODY_BYTES = 1024 * 1024  # a leaf body larger than this stays in a temporary file (``spooled_body``)
_BODY_ATTRIBUTE = "_lettershop_spooled_body"


class BoundExceeded(RejectedMessage):
    """The message claims more structure than any real message has; ``bound`` names the limit."""

    def __init__(self, bound: str, limit: int, what: str) -> None:
        super().__init__(f"message too complex to read: {what} (bound {bound} = {limit:,})")
        self.bound = bound
        self.limit = limit


def too_many_parts(where: str = "") -> BoundExceeded:
    scope = f" in {where}" if where else ""
    return BoundExceeded("max_mime_parts", MAX_MIME_PARTS, f"more than {MAX_MIME_PARTS:,} MIME parts{scope}")


def check_header_fields(lines: Iterable[bytes], where: str) -> None:
    """Raise ``BoundExceeded`` when a header block, given as its lines, has too many fields or one
    field too big: the one measure of a field (``field_sizes``) for the screened header block and
    for every header the parser reads."""
    sizes = field_sizes(lines)
    if len(sizes) > MAX_HEADER_FIELDS:
        what = f"{len(sizes):,} header fields in {where}"
        raise BoundExceeded("max_header_fields", MAX_HEADER_FIELDS, what)
    for size in sizes:
        if size > MAX_HEADER_FIELD_BYTES:
            what = f"a header field of {size:,} bytes in {where}"
            raise BoundExceeded("max_header_field", MAX_HEADER_FIELD_BYTES, what)


def field_sizes(lines: Iterable[bytes]) -> list[int]:
    """Sizes in bytes of the fields of a header block given as its lines, line breaks not counted:
    a line starting with a blank continues the field before it (one before any field counts as a
    field of its own)."""
    sizes: list[int] = []
    for line in lines:
        size = len(line.rstrip(b"\r\n"))
        if sizes and line[:1] in (b" ", b"\t"):
            sizes[-1] += size
        else:
            sizes.append(size)
    return sizes


class PartBudget:
    """MIME parts left for one message: shared by the parses of its forwarded messages."""

    def __init__(self) -> None:
        self.used = 0

    @property
    def left(self) -> int:
        return MAX_MIME_PARTS - self.used


if TYPE_CHECKING:
    _FeedParser = BytesFeedParser[Any]
else:
    _FeedParser = BytesFeedParser  # not subscriptable at run time


# Not in typeshed: the feed parser's input buffer, and what it answers when it needs more input.
_BufferedSubFile: Any = _stdlib_feedparser.BufferedSubFile  # type: ignore[attr-defined]
_NEED_MORE_DATA: object = _stdlib_feedparser.NeedMoreData  # type: ignore[attr-defined]


class _Body:
    """The body of one leaf part while it is parsed: every line but the last written to a spooled
    temporary file (in memory up to ``_SPOOL_BODY_BYTES``, then on disk) as the bytes it came from."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BODY_BYTES)  # noqa: SIM115
        self.size = 0
        self._pending: list[str] = []
        self._pending_chars = 0

    def add(self, line: str) -> None:
        self._pending.append(line)
        self._pending_chars += len(line)
        if self._pending_chars >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = "".join(self._pending).encode("ascii", "surrogateescape")
            self.file.write(data)
            self.size += len(data)
            self._pending = []
            self._pending_chars = 0


class _Input(_BufferedSubFile):  # type: ignore[misc]
    """The parser's input. While the parser reads the body of a leaf part (``divert``), it hands
    the parser an empty string for every line but the last, and the line itself goes to the part's
    ``_Body``: the parser's list of body lines stays a list of pointers to one empty string, and
    the payload it sets is the body's last line, which it cuts at the closing boundary as usual."""

    def __init__(self) -> None:
        super().__init__()
        self._body: _Body | None = None
        self._held: str | None = None

    def divert(self, body: _Body) -> None:
        self._body = body
        self._held = None

    def __next__(self) -> Any:
        if self._body is None:
            return super().__next__()
        line = self.readline()
        if line is _NEED_MORE_DATA:
            return line
        if line == "":  # the end of this body: its last line goes to the parser, then the end
            held, self._held = self._held, None
            if held is None:
                self._body.flush()
                self._body = None
                raise StopIteration
            return held
        if self._held is not None:
            self._body.add(self._held)
        self._held = line
        return ""


class _BoundedParser(_FeedParser):
    """``BytesFeedParser`` that counts parts, nesting and header fields as it creates them, and
    keeps the bodies of leaf parts out of its list of lines (``_Input``)."""

    def __init__(self, factory: type[Message[Any, Any]], policy: Policy[Any], allowance: int) -> None:
        super().__init__(factory, policy=policy)
        self._input = _Input()
        self.allowance = allowance
        self.parts = 0
        self.bodies: list[tuple[Message[Any, Any], _Body]] = []

    def _new_message(self) -> None:
        self.parts += 1
        if self.parts > self.allowance:
            raise too_many_parts()
        stack: list[Message[Any, Any]] = self._msgstack  # type: ignore[attr-defined]
        if len(stack) > MAX_MIME_DEPTH:  # the new part would sit one level below the deepest allowed
            what = f"MIME parts nested more than {MAX_MIME_DEPTH} levels deep"
            raise BoundExceeded("max_mime_depth", MAX_MIME_DEPTH, what)
        super()._new_message()  # type: ignore[misc]

    def _parse_headers(self, lines: list[str]) -> None:
        where = "the message header" if len(self._msgstack) <= 1 else "the header of a MIME part"  # type: ignore[attr-defined]
        # The parser keeps the bytes it read as ASCII with surrogates: encoded back, they are those bytes.
        check_header_fields((line.encode("ascii", "surrogateescape") for line in lines), where)
        super()._parse_headers(lines)  # type: ignore[misc]
        part: Message[Any, Any] = self._cur  # type: ignore[attr-defined]
        if self._reads_a_leaf_body(part):
            body = _Body()
            self.bodies.append((part, body))
            self._input.divert(body)

    def _reads_a_leaf_body(self, part: Message[Any, Any]) -> bool:
        """What ``FeedParser._parsegen`` does next, asked the way it asks: read the rest of the
        input as the body of this part (not a delivery status, not a message/* nor a multipart)."""
        if self._headersonly:  # type: ignore[attr-defined]
            return False
        try:
            return (
                part.get_content_type() != "message/delivery-status"
                and part.get_content_maintype() != "message"
                and part.get_content_maintype() != "multipart"
            )
        except Exception:  # the parser raises the same right after; let it, on its usual path
            return False

    def settle_bodies(self) -> None:
        """After ``close``: a body of at most ``_SPOOL_BODY_BYTES`` becomes the part's payload text,
        exactly as the standard parser sets it; a larger one stays in its file (``spooled_body``)."""
        for part, body in self.bodies:
            body.flush()
            if body.size <= _SPOOL_BODY_BYTES:
                body.file.seek(0)
                text = body.file.read().decode("ascii", "surrogateescape")
                body.file.close()
                part._payload = text + (part._payload or "")  # type: ignore[attr-defined]
            else:
                setattr(part, _BODY_ATTRIBUTE, body)
        self.bodies = []


def spooled_body(part: Message[Any, Any]) -> bool:
    """The part's body is larger than ``_SPOOL_BODY_BYTES`` and kept in a temporary file: read it
    with ``body_chunks`` (its payload holds only the body's last line)."""
    return getattr(part, _BODY_ATTRIBUTE, None) is not None


def body_chunks(part: Message[Any, Any], size: int = 1024 * 1024) -> Iterator[bytes]:
    """The raw bytes of the body of a part with a ``spooled_body``, in pieces of about ``size``."""
    body: _Body = getattr(part, _BODY_ATTRIBUTE)
    body.file.seek(0)
    while chunk := body.file.read(size):
        yield chunk
    last = part._payload  # type: ignore[attr-defined]
    if last:
        yield last.encode("ascii", "surrogateescape")


def unspool_body(part: Message[Any, Any]) -> None:
    """Give a part with a ``spooled_body`` its whole body as payload text, as the standard parser
    would have: for the rare readings that are not streamed."""
    body: _Body | None = getattr(part, _BODY_ATTRIBUTE, None)
    if body is None:
        return
    text = b"".join(body_chunks(part)).decode("ascii", "surrogateescape")
    body.file.close()
    setattr(part, _BODY_ATTRIBUTE, None)
    part._payload = text  # type: ignore[attr-defined]


def parse_bounded(
    raw: bytes | IO[bytes], factory: type[Message[Any, Any]], policy: Policy[Any], budget: PartBudget
) -> tuple[Message[Any, Any], int]:
    """Parse ``raw`` (bytes, or a binary file read from its start) like
    ``BytesParser(factory, policy=policy).parsebytes`` does, stopping with ``BoundExceeded`` at the
    first bound crossed; the message and how many parts it has.

    The bytes are fed in chunks, so the parser never holds more than a chunk of unread input, and
    it stops as soon as a part beyond ``budget.left`` or a header block beyond its bounds appears.
    The body of a leaf part larger than ``_SPOOL_BODY_BYTES`` is kept in a temporary file, not as
    text (``spooled_body``, ``body_chunks``): the parse holds no more than a chunk of it at a time.
    """
    parser = _BoundedParser(factory, policy, budget.left)
    if isinstance(raw, bytes):
        for start in range(0, len(raw), _CHUNK):
            parser.feed(raw[start : start + _CHUNK])
    else:
        raw.seek(0)
        while chunk := raw.read(_CHUNK):
            parser.feed(chunk)
    message = parser.close()
    parser.settle_bodies()
    return message, parser.parts
