"""The ledger entry's transitions (``domain.ledger``): forward only, and the one named way back."""

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.ledger import Claim, LedgerEntry, SerialBlock, Stage, StageMovedBack
from domain.outcomes import Outcome

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "cd" * 32
SINCE = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
BLOCKS = {"0:orders.csv": SerialBlock(first=41, count=3)}


def settled(outcome: Outcome = Outcome.PROCESSED) -> LedgerEntry:
    """A message answered by a poll that died once on it before: every field has a value."""
    entry = LedgerEntry.first_seen("acme", DIGEST).claimed("p1", SINCE).claimed("p2", SINCE)
    entry = entry.with_serial_block("0:orders.csv", BLOCKS["0:orders.csv"])
    return entry.answered(outcome, reply_key="exports/acme/x.eml", recipient="p@partner.example").replied()


def test_a_reopened_entry_starts_received_and_keeps_only_its_serial_blocks() -> None:
    before = settled()
    assert (before.attempts, before.last_error is not None, before.stage) == (1, True, Stage.REPLIED)

    reopened = before.reopened()

    assert reopened == LedgerEntry(
        "acme",
        DIGEST,
        stage=Stage.RECEIVED,
        attempts=0,
        last_error=None,
        outcome=None,
        reply_key=None,
        recipient=None,
        serial_blocks=BLOCKS,
        claim=None,
        dead_claims=(),
    )
    assert not reopened.settled


@pytest.mark.parametrize("stage", [Stage.RECEIVED, Stage.ANSWERED])
def test_only_a_settled_entry_is_reopened(stage: Stage) -> None:
    entry = LedgerEntry("acme", DIGEST, stage=stage, claim=Claim("p1", SINCE))

    with pytest.raises(StageMovedBack, match="is not reopened"):
        entry.reopened()


def test_a_reopened_entry_goes_forward_again_as_a_new_one_would() -> None:
    again = settled(Outcome.FAILED).reopened().claimed("replay", SINCE)

    answered = again.answered(
        Outcome.PROCESSED, reply_key="exports/acme/y.eml", recipient="p@partner.example"
    )

    assert (answered.stage, answered.outcome, answered.serial_blocks) == (
        Stage.ANSWERED,
        Outcome.PROCESSED,
        BLOCKS,
    )
    assert answered.attempts == 0


def test_restored_reads_back_every_field() -> None:
    entry = settled()

    restored = LedgerEntry.restored(
        entry.channel_id,
        entry.digest,
        stage=entry.stage,
        attempts=entry.attempts,
        last_error=entry.last_error,
        outcome=entry.outcome,
        reply_key=entry.reply_key,
        recipient=entry.recipient,
        serial_blocks=entry.serial_blocks,
        claim=entry.claim,
        dead_claims=entry.dead_claims,
    )

    assert restored == entry


def test_only_the_domain_builds_ledger_entries() -> None:
    """Outside ``src/domain`` an entry comes from a named step (``first_seen``, ``restored``,
    ``reopened``, a transition), never from ``LedgerEntry(...)`` itself."""
    built = []
    for folder in ("src/adapters", "src/service", "src/app", "src/handlers", "cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "LedgerEntry"
                ):
                    built.append(f"{path.relative_to(ROOT)}:{node.lineno}")

    assert built == []
