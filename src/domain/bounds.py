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

from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import Policy
from typing import TYPE_CHECKING, Any

from domain.errors import RejectedMessage

MAX_MIME_PARTS = 1_000
MAX_MIME_DEPTH = 30
MAX_HEADER_FIELDS = 1_000
MAX_HEADER_FIELD_BYTES = 64 * 1024
MAX_TNEF_ATTRIBUTES = 10_000
MAX_TNEF_VALUES = 50_000

_CHUNK = 64 * 1024  # bytes handed to the parser at a time: it stops at the first bound crossed


class BoundExceeded(RejectedMessage):
    """The message claims more structure than any real message has; ``bound`` names the limit."""

    def __init__(self, bound: str, limit: int, what: str) -> None:
        super().__init__(f"message too complex to read: {what} (bound {bound} = {limit:,})")
        self.bound = bound
        self.limit = limit


def too_many_parts(where: str = "") -> BoundExceeded:
    scope = f" in {where}" if where else ""
    return BoundExceeded("max_mime_parts", MAX_MIME_PARTS, f"more than {MAX_MIME_PARTS:,} MIME parts{scope}")


def check_header_fields(sizes: list[int], where: str) -> None:
    """Raise ``BoundExceeded`` when a header block has too many fields, or one field too big.

    ``sizes`` are the sizes in bytes of the fields, folded lines included, in order.
    """
    if len(sizes) > MAX_HEADER_FIELDS:
        what = f"{len(sizes):,} header fields in {where}"
        raise BoundExceeded("max_header_fields", MAX_HEADER_FIELDS, what)
    for size in sizes:
        if size > MAX_HEADER_FIELD_BYTES:
            what = f"a header field of {size:,} bytes in {where}"
            raise BoundExceeded("max_header_field", MAX_HEADER_FIELD_BYTES, what)


def _field_sizes(lines: list[str]) -> list[int]:
    """Sizes of the fields of a header block given as its lines, line breaks not counted (a line
    starting with a blank continues the field before it; one before any field is a field itself).
    The parser keeps 8-bit bytes as one surrogate each, so a character here is a byte."""
    sizes: list[int] = []
    for line in lines:
        size = len(line.rstrip("\r\n"))
        if sizes and line[:1] in (" ", "\t"):
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


class _BoundedParser(_FeedParser):
    """``BytesFeedParser`` that counts parts, nesting and header fields as it creates them."""

    def __init__(self, factory: type[Message[Any, Any]], policy: Policy[Any], allowance: int) -> None:
        super().__init__(factory, policy=policy)
        self.allowance = allowance
        self.parts = 0

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
        check_header_fields(_field_sizes(lines), where)
        super()._parse_headers(lines)  # type: ignore[misc]


def parse_bounded(
    raw: bytes, factory: type[Message[Any, Any]], policy: Policy[Any], budget: PartBudget
) -> tuple[Message[Any, Any], int]:
    """Parse ``raw`` like ``BytesParser(factory, policy=policy).parsebytes`` does, stopping with
    ``BoundExceeded`` at the first bound crossed; the message and how many parts it has.

    The bytes are fed in chunks, so the parser never holds more than a chunk of unread input, and
    it stops as soon as a part beyond ``budget.left`` or a header block beyond its bounds appears.
    """
    parser = _BoundedParser(factory, policy, budget.left)
    for start in range(0, len(raw), _CHUNK):
        parser.feed(raw[start : start + _CHUNK])
    return parser.close(), parser.parts
