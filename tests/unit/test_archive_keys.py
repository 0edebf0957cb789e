"""The archive bucket's keys are built and parsed in one module (``domain.archive_keys``); every
other module asks it, so the archive, the dry run, the replay and ``message list`` cannot drift."""

import ast
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from domain.archive_keys import (
    area_prefix,
    channel_reply_prefixes,
    inbound_key,
    message_reply_prefixes,
    parse_archive_key,
    parse_reply_key,
    quarantine_key,
    reason_key,
    reply_key,
)
from domain.outcomes import Outcome

ROOT = Path(__file__).resolve().parents[2]
PREFIXES = ("inbound/", "quarantine/", "exports/", "replies/")
CHANNELS = st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)
INSTANTS = st.datetimes(min_value=datetime(2000, 1, 1), timezones=st.just(UTC))


@given(CHANNELS, st.binary(min_size=1, max_size=64), INSTANTS, st.booleans())
def test_a_raw_message_key_is_read_back_and_lies_under_its_area(
    channel_id: str, raw: bytes, received: datetime, quarantined: bool
) -> None:
    digest = hashlib.sha256(raw).hexdigest()
    key = (quarantine_key if quarantined else inbound_key)(channel_id, digest, received)

    parsed = parse_archive_key(key)

    assert parsed is not None
    assert (parsed.area, parsed.channel_id, parsed.digest) == (
        "quarantine" if quarantined else "inbound",
        channel_id,
        digest,
    )
    assert parsed.day == f"{received:%Y/%m/%d}"
    assert key.startswith(area_prefix(channel_id, quarantined=quarantined))
    assert not key.startswith(area_prefix(channel_id, quarantined=not quarantined))


def test_the_reason_record_lies_beside_the_quarantined_message() -> None:
    key = quarantine_key("acme", "ab" * 32, datetime(2026, 12, 7, 23, 59, tzinfo=UTC))

    assert key == f"quarantine/acme/2026/12/07/{'ab' * 32}.eml"
    assert reason_key(key) == f"quarantine/acme/2026/12/07/{'ab' * 32}.json"
    assert parse_archive_key(reason_key(key)) is None  # the record is not a message to replay


@given(CHANNELS, st.binary(min_size=1, max_size=64), INSTANTS, INSTANTS, st.sampled_from(list(Outcome)))
def test_every_reply_lies_under_the_prefixes_the_listings_use(
    channel_id: str, raw: bytes, received: datetime, claimed: datetime, outcome: Outcome
) -> None:
    digest = hashlib.sha256(raw).hexdigest()
    key = reply_key(channel_id, digest, claimed, outcome)
    day = f"{received:%Y/%m/%d}"

    assert parse_reply_key(key) is not None
    assert [prefix for prefix in channel_reply_prefixes(channel_id) if key.startswith(prefix)] == [
        f"{'exports' if outcome is Outcome.PROCESSED else 'replies'}/{channel_id}/"
    ]
    assert sum(key.startswith(prefix) for prefix in message_reply_prefixes(channel_id, day, digest)) == 1


def _spelled_prefixes(source: str, name: str) -> list[str]:
    """String literals (docstrings left out; f-strings' literal parts in) that spell a key prefix."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        f"{name}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and any(prefix in node.value for prefix in PREFIXES)
    ]


def test_no_other_module_spells_an_archive_key_prefix() -> None:
    own = ROOT / "src" / "domain" / "archive_keys.py"
    modules = [path for folder in ("src", "cli") for path in sorted((ROOT / folder).rglob("*.py"))]

    spelled = [
        line
        for path in modules
        if path != own
        for line in _spelled_prefixes(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]

    assert spelled == []
    # what cli/message.py and adapters/dry_run.py spelled before: seen
    old = 'def f(area, c):\n    """inbound/ is fine here"""\n    return f"{area}/{c}/", f"replies/{c}/"\n'
    assert _spelled_prefixes(old, "old.py") == ["old.py:3: 'replies/'"]
