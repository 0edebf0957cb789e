"""`make demo`: one real poll of one channel on the local stack, told as a story.

Starts Dovecot, aiosmtpd and moto server on 127.0.0.1, stores a channel and its passwords, delivers
three e-mails to the shared mailbox, invokes the poll handler once with events/poll-channel.json
and prints what happened to each message, then stops everything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from email import message_from_bytes, policy

from devstack import aws
from devstack.poll import invoke_poll, load_event, store_channel
from devstack.samples import partner_mail
from devstack.stack import LocalStack

MESSAGES = {
    "valid import from an allowed partner": partner_mail(sender="Orders <orders@partner.example>"),
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
        channel = store_channel(stack, (user, password), channel_id=event["channel_id"])
        print(
            f"channel {channel['channel_id']!r}: POP3S {user}@{channel['pop3_host']}:{channel['pop3_port']}, "
            f"keyword {channel['subject_keyword']!r}, allowed {channel['allowed_senders']}, "
            f"replies via SMTP STARTTLS+AUTH {channel['smtp_host']}:{channel['smtp_port']}"
        )
        for raw in MESSAGES.values():
            stack.dovecot.deliver(user, raw)
        print(
            f"delivered {len(MESSAGES)} messages; invoking handlers.poll.handler (events/poll-channel.json)\n"
        )

        result = invoke_poll(event)

        print("\nresult:", json.dumps(result))
        report(stack, user, channel["channel_id"])


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
            print(f"\nexport {part.get_filename()} as sent to {', '.join(mail.rcpt_tos)}:")
            print(part.get_payload(decode=True).decode("utf-8"))


if __name__ == "__main__":
    main()
