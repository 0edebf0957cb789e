"""The keys of the archive bucket, built and parsed here only (the archive, the dry run, the replay and
``lettershop message list`` all use these; no other module spells a prefix)::

    inbound/<channel>/<yyyy>/<mm>/<dd>/<sha256>.eml        raw message as received
    quarantine/<channel>/<yyyy>/<mm>/<dd>/<sha256>.eml     rejected or given up
    quarantine/<channel>/<yyyy>/<mm>/<dd>/<sha256>.json    why (the reason record)
    exports/<channel>/<sha256>/<yyyymmdd>T<hhmmss>.<ffffff>Z.eml   a processed message's reply
    replies/<channel>/<sha256>/<yyyymmdd>T<hhmmss>.<ffffff>Z.eml   an error report

A reply's key names the message and the instant the poll that stored it claimed the message
(``Claim.since``): every answer ever stored has a key of its own, so a replay never replaces the
first answer, a poll that finds the claim of one that died finds its reply by that claim's time, and
all the replies to one message are found under one prefix. Replies stored before this layout lie at
``exports/<channel>/<yyyy>/<mm>/<dd>/<sha256>.eml`` (and ``replies/…``); they are still recognised.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.outcomes import Outcome

INBOUND = "inbound"
QUARANTINE = "quarantine"
EXPORTS = "exports"  # a processed message's reply, with its export files
REPLIES = "replies"  # an error report (or the notice sent instead of a reply too large)
REPLY_FOLDERS = (EXPORTS, REPLIES)
RAW_KEY_FORM = f"{INBOUND}/<channel>/<yyyy>/<mm>/<dd>/<sha256>.eml"  # for the operator's messages

_CHANNEL = r"(?P<channel>[a-z0-9][a-z0-9-]{0,62})"
_DIGEST = r"(?P<digest>[0-9a-f]{64})"
_DAY = r"(?P<day>\d{4}/\d{2}/\d{2})"
ARCHIVE_KEY = re.compile(rf"^(?P<area>{INBOUND}|{QUARANTINE})/{_CHANNEL}/{_DAY}/{_DIGEST}\.eml$")
_FOLDER = rf"(?P<folder>{EXPORTS}|{REPLIES})"
REPLY_KEY = re.compile(rf"^{_FOLDER}/{_CHANNEL}/{_DIGEST}/\d{{8}}T\d{{6}}\.\d{{6}}Z\.eml$")
EARLIER_REPLY_KEY = re.compile(rf"^{_FOLDER}/{_CHANNEL}/{_DAY}/{_DIGEST}\.eml$")


@dataclass(frozen=True)
class ArchivedMessage:
    """Where a raw message lies in the archive bucket: ``inbound/`` or ``quarantine/``, channel,
    UTC day (``yyyy/mm/dd``), SHA-256."""

    key: str
    area: str
    channel_id: str
    day: str
    digest: str


@dataclass(frozen=True)
class ReplyKey:
    """A stored reply's key: which channel's message (SHA-256) it answers."""

    key: str
    channel_id: str
    digest: str


def inbound_key(channel_id: str, digest: str, received: datetime) -> str:
    return f"{INBOUND}/{_day(channel_id, received)}/{digest}.eml"


def quarantine_key(channel_id: str, digest: str, received: datetime) -> str:
    """Where a rejected (or given up) raw message is kept; its reason beside it (``reason_key``)."""
    return f"{QUARANTINE}/{_day(channel_id, received)}/{digest}.eml"


def reason_key(quarantined: str) -> str:
    """The reason record (``.json``) of the quarantined raw message at ``quarantined``."""
    return f"{quarantined.removesuffix('.eml')}.json"


def area_prefix(channel_id: str, *, quarantined: bool) -> str:
    """The prefix of a channel's raw messages: ``inbound/<channel>/`` or ``quarantine/<channel>/``."""
    return f"{QUARANTINE if quarantined else INBOUND}/{channel_id}/"


def channel_reply_prefixes(channel_id: str) -> tuple[str, ...]:
    """The prefixes under which every reply to a channel's messages lies (both folders)."""
    return tuple(f"{folder}/{channel_id}/" for folder in REPLY_FOLDERS)


def reply_key(channel_id: str, digest: str, claimed: datetime, outcome: Outcome) -> str:
    """The key of the reply stored by the poll that claimed the message at ``claimed``."""
    instant = claimed.astimezone(UTC) if claimed.tzinfo is not None else claimed
    return f"{reply_prefix(_folder(outcome), channel_id, digest)}{instant:%Y%m%dT%H%M%S.%fZ}.eml"


def reply_prefix(folder: str, channel_id: str, digest: str) -> str:
    """The prefix of every reply (of ``folder``) to one message."""
    return f"{folder}/{channel_id}/{digest}/"


def earlier_reply_key(folder: str, channel_id: str, day: str, digest: str) -> str:
    """Where a reply stored before the one-key-per-answer layout lies, for a message of ``day``."""
    return f"{folder}/{channel_id}/{day}/{digest}.eml"


def message_reply_prefixes(channel_id: str, day: str, digest: str) -> tuple[str, ...]:
    """Where the replies to a message archived on ``day`` lie, in both folders: under the message's
    own prefix, and (stored before every reply had its own key) at that day."""
    return tuple(
        key
        for folder in REPLY_FOLDERS
        for key in (
            reply_prefix(folder, channel_id, digest),
            earlier_reply_key(folder, channel_id, day, digest),
        )
    )


def parse_reply_key(key: str) -> ReplyKey | None:
    """A stored reply's key (either layout), else None."""
    match = REPLY_KEY.match(key) or EARLIER_REPLY_KEY.match(key)
    return None if match is None else ReplyKey(key, match["channel"], match["digest"])


def parse_archive_key(key: str) -> ArchivedMessage | None:
    """``inbound/<channel>/<yyyy>/<mm>/<dd>/<sha256>.eml`` (or ``quarantine/...``), else None.

    Accepts ``s3://<bucket>/<key>`` too."""
    if key.startswith("s3://"):
        key = key[len("s3://") :].partition("/")[2]
    match = ARCHIVE_KEY.match(key)
    if match is None:
        return None
    return ArchivedMessage(key, match["area"], match["channel"], match["day"], match["digest"])


def _folder(outcome: Outcome) -> str:
    return EXPORTS if outcome is Outcome.PROCESSED else REPLIES


def _day(channel_id: str, received: datetime) -> str:
    return f"{channel_id}/{received:%Y/%m/%d}"
