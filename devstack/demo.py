"""`make demo`: one real poll of one channel on the local stack, told as a story.

Starts Dovecot, aiosmtpd and moto server on 127.0.0.1, stores a channel and its passwords, delivers
three e-mails to the shared mailbox, invokes the poll handler once with events/poll-channel.json
and prints what happened to each message, then stops everything.

The partner's import is a tab-separated list in the partner's own columns: the channel's standard
prescript (examples/scripts/standard/tsv_to_canonical.py) turns it into the import CSV, and its
standard postscript (stamp_export.py) adds two columns to the export. Both are uploaded to the
scripts bucket first, as an operator would with ``aws s3 sync examples/scripts s3://<bucket>/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from email import message_from_bytes, policy
from pathlib import Path

from devstack import aws
from devstack.poll import invoke_poll, load_event, store_channel
from devstack.samples import partner_mail
from devstack.stack import LocalStack

SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "scripts"
PRESCRIPT, POSTSCRIPT = "tsv_to_canonical.py", "stamp_export.py"
# The partner's own format: tab-separated, its own column names (the prescript converts it).
PARTNER_TSV = (
    "Ref\tRecipient\tStreet\tNo\tZIP\tTown\tProduct\tGrams\r\n"
    "R-1001\tAnna Muster\tBahnhofstrasse\t12\t8001\tZürich\tA-POST\t80\r\n"
    "R-1002\tBeat Beispiel\tSinserstrasse\t47\t6330\tCham\tREGISTERED\t450\r\n"
    "R-1003\tCarla Test\tHauptstrasse\t1\t12\tBern\tB-POST\t120\r\n"
).encode()

MESSAGES = {
    "valid import from an allowed partner": partner_mail(
        sender="Orders <orders@partner.example>", attachments=[("orders.tsv", PARTNER_TSV)]
    ),
    "import from a stranger": partner_mail(sender="someone@stranger.example"),
    "private mail without the keyword": partner_mail(subject="Lunch on Friday?", attachments=()),
}


def main() -> None:
    logging.getLogger("aiosmtpd").setLevel(logging.ERROR)
    with LocalStack() as stack:
        os.environ.update(stack.env())
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        user, password = stack.new_mailbox("shared")
        event = load_event("poll-channel.json")
        uploaded = upload_scripts(stack)
        channel = store_channel(
            stack,
            (user, password),
            channel_id=event["channel_id"],
            import_file_patterns=["*.csv", "*.txt", "*.tsv"],
            use_standard_script=True,
            prescript=PRESCRIPT,
            postscript=POSTSCRIPT,
        )
        print(
            f"channel {channel['channel_id']!r}: POP3S {user}@{channel['pop3_host']}:{channel['pop3_port']}, "
            f"keyword {channel['subject_keyword']!r}, allowed {channel['allowed_senders']}, "
            f"replies via SMTP STARTTLS+AUTH {channel['smtp_host']}:{channel['smtp_port']}"
        )
        print(
            f"scripts uploaded to s3://{stack.names.scripts_bucket}/: {', '.join(uploaded)}; "
            f"Standard Script on: prescript {PRESCRIPT}, postscript {POSTSCRIPT}"
        )
        for raw in MESSAGES.values():
            stack.dovecot.deliver(user, raw)
        print(
            f"delivered {len(MESSAGES)} messages; invoking handlers.poll.handler (events/poll-channel.json)\n"
        )

        result = invoke_poll(event)

        print("\nresult:", json.dumps(result))
        report(stack, user, channel["channel_id"])
    from adapters.script_store import DEFAULT_CACHE  # noqa: PLC0415  # src/ is on the path via devstack.poll

    DEFAULT_CACHE.clear()  # the scripts the poll cached in /tmp


def upload_scripts(stack: LocalStack) -> list[str]:
    """Every file under examples/scripts/, at the same key in the scripts bucket."""
    keys = []
    for path in sorted(SCRIPTS.rglob("*.py")):
        key = path.relative_to(SCRIPTS).as_posix()
        aws.put_object(stack.endpoint_url, stack.names.scripts_bucket, key, path.read_bytes())
        keys.append(key)
    return keys


def report(stack: LocalStack, user: str, channel_id: str) -> None:
    left = stack.dovecot.mailbox(user)
    bucket = stack.names.archive_bucket
    archived = aws.list_keys(stack.endpoint_url, bucket)
    replies = {}
    for mail in stack.smtp.received:
        reply = message_from_bytes(mail.data, policy=policy.default)
        replies[str(reply["In-Reply-To"])] = (mail, reply)
    print(f"\n{'message':<38} {'POP3':<16} {'archive':<11} reply")
    for what, raw in MESSAGES.items():
        original = message_from_bytes(raw, policy=policy.default)
        digest = hashlib.sha256(raw).hexdigest()
        where = next((key.split("/")[0] for key in archived if digest in key and key.endswith(".eml")), "-")
        answer = "-"
        if str(original["Message-ID"]) in replies:
            mail, reply = replies[str(original["Message-ID"])]
            names = [part.get_filename() for part in reply.iter_attachments()]  # type: ignore[attr-defined]
            answer = f"{reply['Subject']!r} to {', '.join(mail.rcpt_tos)} via SMTP, attached {names}"
        on_server = "still on server" if raw in left else "deleted"
        print(f"{what:<38} {on_server:<16} {where:<11} {answer}")
    print(f"\narchive bucket s3://{bucket}/ (channel {channel_id}):")
    for key in archived:
        print(f"  {key}")
    for mail, reply in replies.values():
        for part in reply.iter_attachments():  # type: ignore[attr-defined]
            export = part.get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
            header = export.splitlines()[0].split(";")
            # A tab-separated file is processed only after the prescript; these columns are the postscript's.
            ran = header[-2:] == ["partner", "order_subject"]
            print(
                f"\nscripts {'ran' if ran else 'DID NOT RUN'}: prescript standard/{PRESCRIPT} turned "
                f"orders.tsv (tab-separated, the partner's columns) into the import CSV; postscript "
                f"standard/{POSTSCRIPT} added the columns {header[-2:]} to the export"
            )
            print(f"\nexport {part.get_filename()} as sent to {', '.join(mail.rcpt_tos)}:")
            print(export)


if __name__ == "__main__":
    main()
