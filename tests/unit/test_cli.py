"""The command line's own pieces, without servers: schema, example, items as files, the status
record, the dry-run and replay ports, the stack's names. Every command against the real stack:
tests/integration/test_cli.py."""

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

import cli.context
from adapters.clients import new_client
from adapters.dry_run import (
    DryRunArchive,
    DryRunMailbox,
    Journal,
    MessageJournal,
    OverlayLedger,
    PlaceholderSerials,
    RecordingReplySender,
)
from adapters.replay import ReplayMailbox, header_block
from cli.channel import example_item, schema_text, warnings_for
from cli.context import CliError, Stack, read_item, to_dynamodb
from cli.main import app
from cli.poll import _ProgressSession
from domain.archive_keys import parse_archive_key
from domain.channel import load_channel
from domain.ledger import LedgerEntry, SerialBlock, Stage
from domain.outcomes import Outcome
from domain.serial_budget import DailyBudget
from service.ports import ExpectsHeaders, MessageRef
from tests.unit.fakes import FakeArchive, FakeMailbox

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "channel-schema.json"
DIGEST = "ab" * 32


def test_docs_channel_schema_is_the_models_schema() -> None:
    """Regenerate with: lettershop channel schema > docs/channel-schema.json"""
    assert SCHEMA.read_text(encoding="utf-8") == schema_text()


def test_channel_schema_command_prints_it() -> None:
    result = CliRunner().invoke(app, ["channel", "schema"])

    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert "channel_id" in schema["required"]


def test_the_example_is_a_valid_inactive_channel_with_every_usual_attribute() -> None:
    item = example_item()

    channel = load_channel(item)

    assert channel.active is False
    assert {"poll_interval_minutes", "max_attempts", "import_file_patterns", "allowed_senders"} <= set(item)
    assert warnings_for(channel) == []


def test_the_graph_example_is_a_valid_graph_channel_without_pop3_or_smtp_attributes() -> None:
    item = example_item(graph=True)

    channel = load_channel(item)

    assert (channel.mailbox_protocol, channel.reply_via) == ("graph", "graph")
    assert channel.save_to_sent_items is True
    assert not [name for name in item if name.startswith(("pop3_", "smtp_"))]
    assert warnings_for(channel) == []
    result = CliRunner().invoke(app, ["channel", "example", "--graph"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == item


def test_a_graph_reply_from_another_address_is_warned_about() -> None:
    channel = load_channel(example_item(graph=True) | {"sender_address": "orders@acme-mail.example"})

    assert warnings_for(channel) == [
        "sender_address orders@acme-mail.example is not graph_mailbox lettershop@acme-mail.example: "
        "Exchange sends a reply From another address only when the mailbox has Send As permission for it"
    ]


def test_an_item_file_may_be_plain_json_or_dynamodb_json(tmp_path: Path) -> None:
    plain = {
        "channel_id": "acme",
        "active": True,
        "poll_interval_minutes": 5,
        "allowed_senders": ["a.example"],
    }
    typed = tmp_path / "typed.json"
    typed.write_text(json.dumps(to_dynamodb(plain)))
    (tmp_path / "plain.json").write_text(json.dumps(plain))

    assert read_item(tmp_path / "plain.json") == plain
    assert read_item(typed) == plain  # Decimal(5) == 5
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(CliError, match="one JSON object"):
        read_item(tmp_path / "list.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CliError, match="is not JSON"):
        read_item(tmp_path / "broken.json")


def test_the_stack_names_come_from_its_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    client = new_client("cloudformation")
    stubber = Stubber(client)
    outputs = [
        {"OutputKey": "ChannelsTableName", "OutputValue": "prod-channels"},
        {"OutputKey": "StateTableName", "OutputValue": "prod-state"},
        {"OutputKey": "ScheduleGroupName", "OutputValue": "prod-schedules"},
    ]
    stubber.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "prod",
                    "CreationTime": datetime.now(UTC),
                    "StackStatus": "UPDATE_COMPLETE",
                    "Outputs": outputs,
                }
            ]
        },
        {"StackName": "prod"},
    )
    monkeypatch.setattr(cli.context, "aws_client", lambda service: client)
    monkeypatch.setenv("LETTERSHOP_CHANNELS_TABLE", "from-the-environment")

    with stubber:
        stack = Stack(stack_name="prod")
        assert (stack.channels_table, stack.state_table) == ("prod-channels", "prod-state")
        assert stack.optional("schedule_group") == "prod-schedules"
        with pytest.raises(CliError, match="stack prod has no output ScriptsBucketName"):
            _ = stack.scripts_bucket

    assert Stack().channels_table == "from-the-environment"


# --------------------------------------------------------------------------- dry run


class OneMessageMailbox:
    """A mailbox that commits deletions only when its session ends cleanly."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.committed = False

    def session(self) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def session() -> Any:
            yield ReplayMailbox(self.raw).session().__enter__()
            self.committed = True

        return session()


def test_a_dry_run_session_reads_everything_and_never_commits() -> None:
    raw = b"From: a@b.example\r\nSubject: LetterShop\r\n\r\nbody\r\n"
    journal = Journal()
    real = OneMessageMailbox(raw)

    with DryRunMailbox(real, journal).session() as session:
        [ref] = session.messages()
        assert session.headers(ref.number) == b"From: a@b.example\r\nSubject: LetterShop\r\n\r\n"
        sink = io.BytesIO()
        session.retrieve(ref.number, sink)
        session.delete(ref.number)

    assert sink.getvalue() == raw
    assert real.committed is False
    [message] = journal.messages.values()
    assert (message.deleted, message.digest is not None) == (True, True)


def test_dry_run_archive_ledger_replies_and_serials_keep_everything_in_memory() -> None:
    journal = Journal()
    journal_message = MessageJournal(MessageRef(1, 10, "u1"), digest=DIGEST)
    journal.messages[1] = journal_message
    real = FakeArchive()
    archive = DryRunArchive(journal, real)
    now = datetime(2026, 11, 29, tzinfo=UTC)
    key = archive.store_reply(
        "acme", DIGEST, b"reply", now, outcome=Outcome.PROCESSED, recipient="p@partner.example"
    )
    assert archive.load(key) == b"reply"
    assert archive.stored_reply("acme", DIGEST, now) is None
    assert real.objects == {}  # nothing stored for real
    earlier = real.store_reply(
        "acme", DIGEST, b"sent before", now, outcome=Outcome.FAILED, recipient="p@x.example"
    )
    assert archive.stored_reply("acme", DIGEST, now) == real.stored[earlier]
    assert archive.load(earlier) == b"sent before"
    assert journal_message.reply_outcome is Outcome.PROCESSED
    replies = RecordingReplySender(journal)
    replies.send(b"reply", sender="s@o.example", recipient="p@partner.example")
    assert journal_message.sent_to == "p@partner.example"

    class RealLedger:
        def get(self, channel_id: str, digest: str) -> LedgerEntry | None:
            return LedgerEntry(channel_id, digest, stage=Stage.REPLIED, outcome=Outcome.PROCESSED)

        def save(self, entry: LedgerEntry) -> None:
            raise AssertionError("a dry run never writes the real ledger")

    ledger = OverlayLedger(RealLedger(), journal)
    known = ledger.get("acme", DIGEST)
    assert known is not None
    assert known.settled
    assert journal_message.known_before == known
    ledger.save(LedgerEntry("acme", DIGEST))
    assert ledger.get("acme", DIGEST) == LedgerEntry("acme", DIGEST)
    serials = PlaceholderSerials(ledger)
    budget = DailyBudget("acme", "2026-12-07", limit=1)  # a dry run issues no id: nothing counted
    numbered = serials.allocate_recorded(
        2, lambda block: LedgerEntry("acme", DIGEST, attempts=len(block)), budget
    )
    assert (numbered, serials.allocate_recorded(1, lambda block: LedgerEntry("acme", DIGEST), budget)) == (
        range(1, 3),
        range(3, 4),
    )
    assert journal_message.entry is not None


# ----------------------------------------------------------------------------- replay


def test_archive_keys_name_area_channel_and_digest() -> None:
    key = f"quarantine/acme/2026/11/27/{DIGEST}.eml"

    found = parse_archive_key(key)

    assert found is not None
    assert (found.area, found.channel_id, found.digest) == ("quarantine", "acme", DIGEST)
    assert parse_archive_key(f"s3://lettershop-archive/inbound/acme/2026/11/27/{DIGEST}.eml") is not None
    assert parse_archive_key(f"quarantine/acme/2026/11/27/{DIGEST}.json") is None
    assert parse_archive_key("exports/acme/2026/11/27/x/orders_export.csv") is None


def test_a_reopened_entry_keeps_its_serial_blocks() -> None:
    entry = LedgerEntry(
        "acme",
        DIGEST,
        stage=Stage.REPLIED,
        attempts=2,
        outcome=Outcome.PROCESSED,
        reply_key="replies/x.eml",
        recipient="p@partner.example",
        serial_blocks={"0": SerialBlock(first=7, count=2)},
    )

    fresh = entry.reopened()

    assert (fresh.stage, fresh.attempts, fresh.outcome, fresh.reply_key) == (Stage.RECEIVED, 0, None, None)
    assert fresh.serial_blocks == entry.serial_blocks


def test_the_replay_mailbox_presents_one_message_and_reopens_at_the_first_retrieve() -> None:
    raw = b"Subject: x\n\nbody\n"
    opened: list[str] = []
    box = ReplayMailbox(raw, on_retrieve=lambda: opened.append("reopened"))

    with box.session() as session:
        [ref] = session.messages()
        assert session.headers(1) == header_block(raw) == b"Subject: x\n\n"
        assert opened == []
        session.retrieve(1, io.BytesIO())
        session.retrieve(1, io.BytesIO())
        session.delete(1)

    assert (ref.size, opened, box.deleted) == (len(raw), ["reopened"], True)


def test_lettershop_poll_passes_the_header_prefetch_on_to_the_real_session() -> None:
    box = FakeMailbox(messages={"u1": b"Subject: a\r\n\r\nx", "u2": b"Subject: b\r\n\r\ny"})
    with box.session() as session:
        progress = _ProgressSession(session, lambda _: None)
        assert isinstance(progress, ExpectsHeaders)
        progress.expect_headers(2)

    assert box.expected == ["u2"]
