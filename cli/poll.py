"""``lettershop poll ID [--dry-run]``: one poll now, from this machine, with the deployed configuration.

``--dry-run`` runs ``service.poll.poll_mailbox`` on the ports of a dry run (``adapters.dry_run``, built
by the composition root ``app.root``): the same decisions, nothing changed (no reply, no DELE, no
archive, no ledger entry, no shipment id), and a report per message. Without it,
``service.poll.poll_channel`` runs for real and ``service.poll.poll_ended`` records its end, as the
poll function does.
"""

import csv
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Annotated, BinaryIO

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from adapters.dry_run import Journal, MessageJournal
from app.root import AwsRoot
from cli.context import CliError, err, handled, out, say, stack_of
from domain.channel import Channel
from domain.inbound import is_recognized, parse_headers
from domain.outcomes import PollResult
from service.poll import poll_channel, poll_ended, poll_mailbox
from service.ports import ExpectsHeaders, Mailbox, MailboxSession, MessageRef
from settings import PollSettings

# A local poll runs as long as the poll function may (template.yaml: Timeout 300 s), less its margin.
FUNCTION_SECONDS = 300
LEASE_BEYOND_SECONDS = 60
COUNTS = ("seen", "recognized", "processed", "failed", "rejected", "deferred", "deleted")
MAX_ROW_REASONS = 5


def register(app: typer.Typer) -> None:
    app.command("poll")(poll_command)


@handled
def poll_command(
    ctx: typer.Context,
    channel_id: Annotated[str, typer.Argument(metavar="ID")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report what would happen; change nothing")
    ] = False,
) -> None:
    """Poll a channel once now. With --dry-run: say per message what would happen, change nothing."""
    stack = stack_of(ctx)
    if dry_run:
        _dry_run(stack.channel(channel_id), stack.poll_settings())
        return
    settings = stack.poll_settings()
    started = time.monotonic()
    margin = settings.time_margin_seconds
    with _progress(channel_id) as advance:
        root = AwsRoot(settings, watch=lambda box: ProgressMailbox(box, advance))
        result = poll_channel(
            channel_id,
            root,
            now=lambda: datetime.now(UTC),
            time_left=lambda: FUNCTION_SECONDS - margin - (time.monotonic() - started),
            lease_seconds=FUNCTION_SECONDS + LEASE_BEYOND_SECONDS,
        )
    poll_ended(result, root, at=datetime.now(UTC))
    _print_result(result)
    if result.status == "inactive":
        say("the channel is not active: its mailbox was not touched (lettershop poll ID --dry-run shows")
        say("what a poll would do; set active to true to let the schedule poll it)")
    if result.status in ("error", "invalid_config", "locked"):
        raise CliError(f"poll of {channel_id} ended {result.status}: {result.error or ''}".rstrip(": "))


def _dry_run(channel: Channel, settings: PollSettings) -> None:
    journal = Journal()
    with _progress(channel.channel_id) as advance:
        root = AwsRoot(settings, watch=lambda box: ProgressMailbox(box, advance))
        ports = root.dry_run_ports(channel, journal)
        result = poll_mailbox(
            channel,
            ports,
            now=lambda: datetime.now(UTC),
            time_left=lambda: float(FUNCTION_SECONDS),
            lease_seconds=0,
        )
    say(f"dry run of channel {channel.channel_id}: nothing was changed, sent, archived or deleted")
    if not channel.active:
        say("(the channel is not active: the schedule does not poll it yet)")
    report_messages(journal, channel)
    _print_result(result, would=True)
    if result.status != "ok":
        raise CliError(f"the poll would end {result.status}: {result.error or ''}".rstrip(": "))


def report_messages(journal: Journal, channel: Channel) -> None:
    if not journal.messages:
        say("the mailbox is empty")
        return
    table = Table(title="what a poll would do")
    for column in ("#", "from", "subject", "outcome", "what happens"):
        table.add_column(column, overflow="fold")
    details: list[tuple[int, str | None, str]] = []
    for number, message in sorted(journal.messages.items()):
        headers = _headers(message.headers)
        outcome, what = describe(message, channel)
        table.add_row(str(number), _header(headers, "From"), _header(headers, "Subject"), outcome, what)
        if message.reply is not None:
            details.append((number, message.reply_key, _reply_text(message.reply)))
    out().print(table)
    for number, key, text in details:
        say(f"--- reply to message {number} (not sent) ---")
        if key is not None:
            say(f"a poll would archive it as {key} (named by the time the poll took the message)")
        say(text.rstrip())
    if any(exports_of(m.reply) for m in journal.messages.values()):
        say("(shipment ids in a dry run are placeholders: none was allocated)")


def describe(message: MessageJournal, channel: Channel) -> tuple[str, str]:
    """The outcome of one message and, in words, what a real poll would do with it."""
    if message.digest is None:
        if not message.headers:
            return "-", "not looked at (message limit or time budget of one poll)"
        subject = parse_headers(message.headers).subject
        if not is_recognized(
            subject, exclusive_account=channel.exclusive_account, keyword=channel.subject_keyword
        ):
            return "-", "not a LetterShop message: left on the server untouched"
        return "deferred", "stays on the server: it could not be retrieved (see --verbose)"
    known = message.known_before
    if known is not None and known.settled:
        return (
            str(known.outcome or "replied"),
            "answered by an earlier poll; only the deletion on the server is missing (DELE)",
        )
    entry = message.entry
    if entry is None or entry.outcome is None:
        reason = entry.last_error if entry is not None else None
        return "deferred", f"stays on the server for the next poll: {reason or 'not settled'}"
    parts: list[str] = []
    if message.quarantine_reason is not None:
        parts.append(f"quarantined without reply: {message.quarantine_reason}")
    for name, data in exports_of(message.reply):
        parts.append(_export_summary(name, data))
    if message.reply is not None:
        kind = "error reply" if str(entry.outcome) == "failed" else "reply"
        parts.append(f"{kind} to {message.sent_to or entry.recipient or '?'} (below)")
    if str(entry.outcome) == "failed" and message.reply is None and entry.last_error:
        parts.append(entry.last_error)
    if message.deleted:
        parts.append("then deleted from the server")
    return str(entry.outcome), "; ".join(parts)


def exports_of(reply: bytes | None) -> list[tuple[str, bytes]]:
    """The export files a reply carries (its CSV attachments)."""
    if reply is None:
        return []
    message = message_from_bytes(reply, policy=policy.default)
    found = []
    for part in message.iter_attachments():
        name = part.get_filename() or ""
        data = part.get_payload(decode=True)
        if name.lower().endswith(".csv") and isinstance(data, bytes):
            found.append((name, data))
    return found


def _export_summary(name: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", "replace")
    first = text.partition("\n")[0]
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";" if ";" in first else ","))
    accepted = sum(1 for row in rows if row.get("status") == "ACCEPTED")
    rejected = [row for row in rows if row.get("status") == "REJECTED"]
    summary = f"{name}: {accepted} row(s) accepted, {len(rejected)} rejected"
    reasons = [f"{row.get('reference') or '?'}: {row.get('message') or ''}" for row in rejected]
    if reasons:
        more = len(reasons) - MAX_ROW_REASONS
        summary += " (" + "; ".join(reasons[:MAX_ROW_REASONS]) + (f"; {more} more" if more > 0 else "") + ")"
    return summary


def _headers(data: bytes) -> EmailMessage | None:
    if not data:
        return None
    parsed = message_from_bytes(data, policy=policy.default)
    return parsed if isinstance(parsed, EmailMessage) else None


def _header(headers: EmailMessage | None, name: str) -> str:
    if headers is None:
        return ""
    try:
        return str(headers.get(name, ""))[:80]
    except (ValueError, TypeError):
        return "(unreadable)"


def _reply_text(reply: bytes) -> str:
    message = message_from_bytes(reply, policy=policy.default)
    assert isinstance(message, EmailMessage)  # noqa: S101  # policy.default makes EmailMessage
    body = message.get_body(("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    attachments = [part.get_filename() or "?" for part in message.iter_attachments()]
    head = f"To: {message['To']}\nSubject: {message['Subject']}\n"
    if attachments:
        head += f"Attachments: {', '.join(attachments)}\n"
    return head + "\n" + str(text)


def _print_result(result: PollResult, *, would: bool = False) -> None:
    counts = ", ".join(f"{name} {getattr(result, name)}" for name in COUNTS)
    say(f"{'would end' if would else 'poll ended'}: {result.status}; {counts}")
    if result.error:
        say(f"error: {result.error}")
    if result.setting:
        say(f"setting to fix: {result.setting}")


# ------------------------------------------------------------------------ progress


@contextmanager
def _progress(channel_id: str) -> Iterator[Callable[[int | None], None]]:
    """A progress bar on stderr; the callback takes the number of messages (once), then None each."""
    progress = Progress(
        TextColumn(f"polling {channel_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err(),
        transient=True,
    )
    task = progress.add_task("messages", total=None)

    def advance(total: int | None) -> None:
        if total is not None:
            progress.update(task, total=total)
        else:
            progress.advance(task)

    with progress:
        yield advance


class ProgressMailbox:
    """A mailbox that reports each message it is asked about (for the progress display)."""

    def __init__(self, inner: Mailbox, advance: Callable[[int | None], None]) -> None:
        self._inner = inner
        self._advance = advance

    @contextmanager
    def session(self) -> Iterator[MailboxSession]:
        with self._inner.session() as session:
            yield _ProgressSession(session, self._advance)


class _ProgressSession:
    def __init__(self, inner: MailboxSession, advance: Callable[[int | None], None]) -> None:
        self._inner = inner
        self._advance = advance

    def messages(self) -> list[MessageRef]:
        refs = self._inner.messages()
        self._advance(len(refs))
        return refs

    def expect_headers(self, number: int) -> None:
        """The TOP prefetch of the real session (issue 21) passed on: ``lettershop poll`` saves the
        same round trips as the function."""
        if isinstance(self._inner, ExpectsHeaders):
            self._inner.expect_headers(number)

    def headers(self, number: int) -> bytes:
        self._advance(None)
        return self._inner.headers(number)

    def retrieve(self, number: int, sink: BinaryIO) -> None:
        self._inner.retrieve(number, sink)

    def delete(self, number: int) -> None:
        self._inner.delete(number)
