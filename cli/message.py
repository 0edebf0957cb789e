"""``lettershop message list ID [--quarantined]`` and ``lettershop message replay KEY [--force]``.

A replay reads an archived (``inbound/``) or quarantined (``quarantine/``) raw message from the
archive bucket and gives it to ``service.poll.poll_mailbox`` through a one-message mailbox
(``adapters.replay``): the real ledger, archive, scripts and reply transport, the same state machine.
No POP3 connection is made, and the channel's mailbox memory is neither read nor written
(``adapters.replay.ReplayMemory``). A message that was answered before — its ledger entry says so,
or, once the entry is forgotten (after 90 days) or settled, a reply to it is stored in the archive —
is refused unless ``--force``. Every reply keeps its own key (``domain.archive_keys``): a replay
never replaces an earlier one, and ``message list`` shows each.
"""

import hashlib
from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Annotated

import typer
from rich.table import Table

from adapters.archive import ArchivedReply, S3Archive
from adapters.state import DynamoDbLedger
from app.root import AwsRoot, aws_client
from cli.context import CliError, handled, out, say, stack_of, warn
from domain.archive_keys import (
    INBOUND,
    QUARANTINE,
    RAW_KEY_FORM,
    ArchivedMessage,
    area_prefix,
    channel_reply_prefixes,
    message_reply_prefixes,
    parse_archive_key,
)
from domain.errors import LetterShopError
from domain.ledger import LedgerEntry
from domain.outcomes import Outcome
from service.poll import poll_mailbox

app = typer.Typer(help="Archived and quarantined messages: list them, replay one.", no_args_is_help=True)

REPLAY_SECONDS = 300.0


@app.command("list")
@handled
def list_command(
    ctx: typer.Context,
    channel_id: Annotated[str, typer.Argument(metavar="ID")],
    quarantined: Annotated[
        bool, typer.Option("--quarantined", help=f"the quarantine, not {INBOUND}/")
    ] = False,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50,
) -> None:
    """The raw messages of a channel in the archive bucket (inbound/, or quarantine/ with reasons)."""
    stack = stack_of(ctx)
    bucket = stack.archive_bucket
    archive = S3Archive(bucket, aws_client("s3"))
    prefix = area_prefix(channel_id, quarantined=quarantined)
    try:
        found = archive.raw_messages(channel_id, quarantined=quarantined)
    except LetterShopError as error:
        raise CliError(str(error)) from None
    table = Table(title=f"{prefix} in {bucket}")
    shown = found[:limit]
    # Keys are copied into `message replay`: never folded or cut.
    table.add_column("key", no_wrap=True, min_width=max((len(raw.message.key) for raw in shown), default=3))
    for column in ("bytes", "stored", *(("reason",) if quarantined else ())):
        table.add_column(column, overflow="fold")
    for raw in shown:
        row = [raw.message.key, str(raw.size), raw.stored.astimezone(UTC).strftime("%Y-%m-%d %H:%M")]
        if quarantined:
            row.append(_reason(archive, raw.message.key))
        table.add_row(*row)
    out().print(table)
    say(f"{len(found)} message(s)" + (f", {limit} shown" if len(found) > limit else ""))
    if not quarantined:
        _list_replies(archive, channel_id, limit)
    if found:
        say("replay one with: lettershop message replay KEY")


def _list_replies(archive: S3Archive, channel_id: str, limit: int) -> None:
    """Every reply stored for the channel's messages, each under its own key (a replay's too)."""
    try:
        replies = [
            reply for prefix in channel_reply_prefixes(channel_id) for reply in archive.replies(prefix)
        ]
    except LetterShopError as error:
        raise CliError(str(error)) from None
    replies.sort(key=lambda reply: (reply.stored, reply.key.key), reverse=True)
    shown = replies[:limit]
    folders = ", ".join(channel_reply_prefixes(channel_id))
    table = Table(title=f"replies to {channel_id}'s messages ({folders})")
    table.add_column("key", no_wrap=True, min_width=max((len(r.key.key) for r in shown), default=3))
    for column in ("bytes", "stored"):
        table.add_column(column, overflow="fold")
    for reply in shown:
        table.add_row(reply.key.key, str(reply.size), reply.stored.astimezone(UTC).strftime("%Y-%m-%d %H:%M"))
    out().print(table)
    say(f"{len(replies)} reply(ies)" + (f", {limit} shown" if len(replies) > limit else ""))


@app.command("replay")
@handled
def replay_command(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help=f"{INBOUND}/... or {QUARANTINE}/... key of the raw .eml")],
    force: Annotated[
        bool, typer.Option("--force", help="answer again a message that was answered before")
    ] = False,
) -> None:
    """Process an archived or quarantined message again, as a poll would, without POP3."""
    stack = stack_of(ctx)
    where = parse_archive_key(key)
    if where is None:
        raise CliError(
            f"{key} is not a raw message of the archive: {RAW_KEY_FORM} "
            f"or {QUARANTINE}/... (lettershop message list ID [--quarantined])"
        )
    channel = stack.channel(where.channel_id)
    settings = stack.poll_settings()
    archive = S3Archive(settings.archive_bucket, aws_client("s3"))
    try:
        raw = archive.load(where.key)
    except LetterShopError as error:
        raise CliError(str(error)) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != where.digest:
        warn(f"warning: the object's SHA-256 is {digest}, not the one its key names")
    ledger = DynamoDbLedger(settings.state_table, aws_client("dynamodb"))
    before = _unless_answered_before(ledger, archive, where, digest, force=force)

    def reopen() -> None:
        if before is not None and before.settled:
            ledger.save(before.reopened())

    ports = AwsRoot(settings).replay_ports(channel, raw, uid=f"replay-{digest[:16]}", on_retrieve=reopen)
    result = poll_mailbox(
        channel,
        ports,
        now=lambda: datetime.now(UTC),
        time_left=lambda: REPLAY_SECONDS,
        lease_seconds=REPLAY_SECONDS + 60,
    )
    if result.status == "locked":
        raise CliError(f"a poll of {channel.channel_id} is running; try again in a minute")
    if result.status != "ok":
        raise CliError(f"replay ended {result.status}: {result.error}")
    if not result.recognized:
        raise CliError(
            f"channel {channel.channel_id} does not recognise this message (subject_keyword); nothing done"
        )
    after = ledger.get(channel.channel_id, digest)
    outcome = after.outcome if after is not None else None
    say(f"replayed {where.key} for channel {channel.channel_id}: {outcome or 'deferred'}")
    if after is not None and after.recipient and outcome is not None and outcome != "rejected":
        say(f"reply sent to {after.recipient} (stored as {after.reply_key})")
    if after is not None and after.last_error and outcome != "processed":
        say(f"reason: {after.last_error}")
    if result.deferred or outcome is None:
        raise CliError("the message was deferred (a transient failure); replay it again later")
    if outcome == "rejected":
        raise CliError(
            "the message was rejected again (see lettershop message list "
            f"{channel.channel_id} --quarantined): fix the cause, e.g. allowed_senders, then replay it"
        )


def _unless_answered_before(
    ledger: DynamoDbLedger, archive: S3Archive, where: ArchivedMessage, digest: str, *, force: bool
) -> LedgerEntry | None:
    """The message's ledger entry, after refusing (without ``force``) a message answered before:
    its ledger entry says so, or a reply to it is stored in the archive and the entry is settled or
    forgotten (an entry still in progress goes on from its stage: a stored answer is sent, once)."""
    try:
        before = ledger.get(where.channel_id, digest)
        stored = _stored_replies(archive, where, digest)
    except LetterShopError as error:
        raise CliError(str(error)) from None
    if not answered(before) and not (stored and (before is None or before.settled)):
        return before
    say(_sent_before(before, stored, archive))
    if not force:
        raise CliError(
            "this message was answered before; nothing done. --force answers it again "
            "(the partner gets a second reply)"
        )
    if before is None:
        warn(
            "--force: answering it again; the ledger no longer knows it (entries are kept 90 days), "
            "so its files get new shipment ids"
        )
    else:
        warn("--force: answering it again; the same shipment ids are used for the files answered before")
    return before


def answered(entry: LedgerEntry | None) -> bool:
    """Whether a reply was sent (or tried for good) for this message: a stored reply of a settled
    processed or failed message. A quarantined one (given up, too) was never answered."""
    return (
        entry is not None
        and entry.settled
        and entry.reply_key is not None
        and entry.outcome in (Outcome.PROCESSED, Outcome.FAILED)
    )


def _stored_replies(archive: S3Archive, where: ArchivedMessage, digest: str) -> list[ArchivedReply]:
    """The replies to this message in the archive (kept ``ArchiveRetentionDays``, longer than the
    ledger's 90 days), in both layouts (``domain.archive_keys.message_reply_prefixes``)."""
    found = []
    for prefix in message_reply_prefixes(where.channel_id, where.day, digest):
        found += archive.replies(prefix)
    return sorted(found, key=lambda reply: (reply.stored, reply.key.key))


def _sent_before(entry: LedgerEntry | None, stored: list[ArchivedReply], archive: S3Archive) -> str:
    keys = [reply.key.key for reply in stored]
    if answered(entry) and entry is not None and entry.reply_key not in keys:
        keys.insert(0, str(entry.reply_key))
    lines = []
    for key in keys:
        try:
            found = archive.reply_at(key)
            reply = message_from_bytes(archive.load(key), policy=policy.default)
        except LetterShopError as error:
            lines.append(f"answered before: stored as {key} (not readable: {error})")
            continue
        if found is None:
            lines.append(f"answered before: stored as {key} (no longer in the archive)")
            continue
        lines.append(f"answered before: outcome {found.outcome}, reply to {found.recipient}, stored as {key}")
        for name in ("Date", "Subject", "Message-ID"):
            lines.append(f"  {name}: {reply.get(name, '')}")
        names = [part.get_filename() or "?" for part in reply.iter_attachments()]
        if names:
            lines.append(f"  attachments: {', '.join(names)}")
    return "\n".join(lines)


def _reason(archive: S3Archive, key: str) -> str:
    """The reason a quarantined message was put there, "?" when it cannot be read."""
    try:
        reason = archive.quarantine_reason(key)
    except LetterShopError:
        return "?"
    return "?" if reason is None else reason
