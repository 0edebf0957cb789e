"""`make demo`: one real poll of each of four channels on the local stack, told as a story.

Starts Dovecot, aiosmtpd and moto server on 127.0.0.1, stores two channels and their passwords,
delivers e-mails to their mailboxes, invokes the poll handler once per channel with
events/poll-channel.json and prints what happened to each message, then stops everything.

The partners' imports are tab-separated lists in the partners' own columns. Every script under
examples/scripts/ is uploaded first, as an operator would with ``aws s3 sync examples/scripts
s3://<bucket>/``. The channel's Standard Script flag picks the folder for both of its scripts:

* channel ``demo`` (a shared mailbox, Standard Script on) runs ``standard/tsv_to_canonical.py``
  to turn the list into the import CSV and ``standard/stamp_export.py`` to add two columns;
* channel ``alpina`` (its own mailbox, Standard Script off, partner ``alpina``) runs
  ``partners/alpina/tsv_to_canonical.py`` (a copy of the standard one) and the partner's own
  ``partners/alpina/stamp_export.py``, which adds a tracking link instead.

A third channel, ``m365``, is a Microsoft 365-shaped mailbox without passwords: POP3S and SMTP log
in with OAuth 2.0 (``AUTH XOAUTH2``), with an access token the local authorization server issues to
the channel's app (client credentials; the client secret in Secrets Manager), and that Dovecot and
the SMTP server check by introspection at the same server. It gets a plain CSV import.

A fourth channel, ``graph``, is a Microsoft 365 mailbox read and answered through Microsoft Graph
(issue 22): the Graph-shaped server of the stack (``devstack.graph``) checks the app's token (same
authorization server, its Graph scope) and its roles ``Mail.ReadWrite`` and ``Mail.Send`` for that
one mailbox. It gets a CSV import and a newsletter, which is screened out by its listed subject.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

from devstack import aws
from devstack.invoke import invoke_poll, load_event, store_channel, store_graph_channel, store_oauth_channel
from devstack.samples import VALID_IMPORT, partner_mail
from devstack.stack import GraphMailbox, LocalStack, OAuthMailbox

SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "scripts"
PRESCRIPT, POSTSCRIPT = "tsv_to_canonical.py", "stamp_export.py"
PARTNER = "alpina"  # the second channel's partner_id (and channel_id): scripts in partners/alpina/
# The partner's own format: tab-separated, its own column names (the prescript converts it).
PARTNER_TSV = (
    "Ref\tRecipient\tStreet\tNo\tZIP\tTown\tProduct\tGrams\r\n"
    "R-1001\tAnna Muster\tBahnhofstrasse\t12\t8001\tZürich\tA-POST\t80\r\n"
    "R-1002\tBeat Beispiel\tSinserstrasse\t47\t6330\tCham\tREGISTERED\t450\r\n"
    "R-1003\tCarla Test\tHauptstrasse\t1\t12\tBern\tB-POST\t120\r\n"
).encode()

MESSAGES = {  # to the shared mailbox of channel "demo"
    "valid import from an allowed partner": partner_mail(
        sender="Orders <orders@partner.example>", attachments=[("orders.tsv", PARTNER_TSV)]
    ),
    "import from a stranger": partner_mail(sender="someone@stranger.example"),
    "private mail without the keyword": partner_mail(subject="Lunch on Friday?", attachments=()),
}
PARTNER_MESSAGES = {  # to channel "alpina"'s own mailbox
    f"valid import to {PARTNER}'s own channel": partner_mail(
        sender=f"Orders <orders@{PARTNER}.example>", attachments=[("orders.tsv", PARTNER_TSV)]
    ),
}
# What each postscript adds at the end of the export's header.
M365 = "m365"  # the OAuth channel: its id, and its app's tenant below
M365_TENANT = "contoso.onmicrosoft.com"
M365_MESSAGES = {
    "valid import to the OAuth mailbox": partner_mail(
        sender="Orders <orders@partner.example>", attachments=[("orders.csv", VALID_IMPORT)]
    ),
}
GRAPH = "graph"  # the Microsoft Graph channel's id
GRAPH_MESSAGES = {
    "valid import to the Graph mailbox": partner_mail(
        sender="Orders <orders@partner.example>", attachments=[("orders.csv", VALID_IMPORT)]
    ),
    "newsletter without the keyword": partner_mail(subject="Our November newsletter", attachments=()),
}
STAMPS = {
    ("partner", "order_subject"): f"standard/{POSTSCRIPT}",
    ("tracking_url",): f"partners/{PARTNER}/{POSTSCRIPT}",
}


def main() -> None:
    logging.getLogger("aiosmtpd").setLevel(logging.ERROR)
    with LocalStack() as stack:
        os.environ.update(stack.env())
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        event = load_event("poll-channel.json")
        print(f"scripts uploaded to s3://{stack.names.scripts_bucket}/: {', '.join(upload_scripts(stack))}")
        shared = stack.new_mailbox("shared")
        channel = store_channel(
            stack,
            shared,
            channel_id=event["channel_id"],
            import_file_patterns=["*.csv", "*.txt", "*.tsv"],
            use_standard_script=True,
            prescript=PRESCRIPT,
            postscript=POSTSCRIPT,
        )
        print(
            f"channel {channel['channel_id']!r}: POP3S {shared[0]}@{stack.host}:{channel['pop3_port']}, "
            f"keyword {channel['subject_keyword']!r}, allowed {channel['allowed_senders']}, "
            f"replies via SMTP STARTTLS+AUTH {channel['smtp_host']}:{channel['smtp_port']}; "
            f"Standard Script on: standard/{PRESCRIPT}, standard/{POSTSCRIPT}"
        )
        own = stack.new_mailbox(PARTNER)
        store_channel(
            stack,
            own,
            channel_id=PARTNER,
            partner_id=PARTNER,
            allowed_senders=[f"{PARTNER}.example"],
            import_file_patterns=["*.tsv"],
            use_standard_script=False,
            prescript=PRESCRIPT,
            postscript=POSTSCRIPT,
        )
        print(
            f"channel {PARTNER!r}: POP3S {own[0]}, allowed ['{PARTNER}.example']; Standard Script off, "
            f"partner {PARTNER!r}: partners/{PARTNER}/{PRESCRIPT}, partners/{PARTNER}/{POSTSCRIPT}"
        )
        box = stack.new_oauth_mailbox()
        store_oauth_channel(stack, box, channel_id=M365, tenant=M365_TENANT)
        print(
            f"channel {M365!r}: POP3S {box.user} and SMTP STARTTLS, both AUTH XOAUTH2 with a token for "
            f"app {box.client_id} of tenant {M365_TENANT} (client secret in Secrets Manager), issued by "
            f"{stack.oauth.base_url}"
        )
        graph_box = stack.new_graph_mailbox()
        store_graph_channel(
            stack,
            graph_box,
            channel_id=GRAPH,
            tenant=M365_TENANT,
            sender_address=graph_box.user,
            reply_via="graph",
            smtp_host=None,
            smtp_security=None,
        )
        print(
            f"channel {GRAPH!r}: Microsoft Graph mailbox {graph_box.user} at {stack.graph.endpoint}, read "
            f"and answered with app {graph_box.client_id}'s token for {stack.graph.scope} "
            "(roles Mail.ReadWrite, Mail.Send, this mailbox only)"
        )
        for raw in GRAPH_MESSAGES.values():
            stack.graph.deliver(graph_box.user, raw)
        mailboxes = {shared[0]: MESSAGES, own[0]: PARTNER_MESSAGES}
        for user, messages in mailboxes.items():
            for raw in messages.values():
                stack.dovecot.deliver(user, raw)
        for raw in M365_MESSAGES.values():
            stack.oauth_dovecot.deliver(box.user, raw)
        print(
            f"delivered {len(MESSAGES) + len(PARTNER_MESSAGES) + len(M365_MESSAGES) + len(GRAPH_MESSAGES)} "
            "messages; invoking handlers.poll.handler (events/poll-channel.json) for "
            f"{event['channel_id']!r}, {PARTNER!r}, {M365!r} and {GRAPH!r}\n"
        )

        results = [
            invoke_poll(event),
            invoke_poll(load_event("poll-channel.json", channel_id=PARTNER)),
            invoke_poll(load_event("poll-channel.json", channel_id=M365)),
            invoke_poll(load_event("poll-channel.json", channel_id=GRAPH)),
        ]

        print()
        for result in results:
            print("result:", json.dumps(result))
        report(stack, mailboxes)
        report_oauth(stack, box)
        report_graph(stack, graph_box)
    from app.root import WARM  # noqa: PLC0415  # src/ is on the path via devstack.invoke

    WARM.reset()  # the scripts the poll cached in /tmp, and every other cache of the poll


def report_oauth(stack: LocalStack, box: OAuthMailbox) -> None:
    """What the OAuth channel's poll did: its mailbox, and the reply the OAuth SMTP server took."""
    left = stack.oauth_dovecot.mailbox(box.user)
    print(f"\nchannel {M365!r} (OAuth 2.0 logins):")
    for what, raw in M365_MESSAGES.items():
        print(f"  {what}: {'still on server' if raw in left else 'deleted'}")
    for mail in stack.oauth_smtp.received:
        reply = parse(mail.data)
        names = [part.get_filename() for part in reply.iter_attachments()]
        print(
            f"  reply {reply['Subject']!r} to {', '.join(mail.rcpt_tos)} via SMTP as "
            f"{mail.authenticated_user} (XOAUTH2), attached {names}"
        )


def report_graph(stack: LocalStack, box: GraphMailbox) -> None:
    """What the Graph channel's poll did: the requests it made, its mailbox, the reply Graph sent."""
    left = [message.raw for message in stack.graph.messages(box.user)]
    print(f"\nchannel {GRAPH!r} (Microsoft Graph):")
    for request in stack.graph.requests:
        print(
            f"  {request.method} {request.path.split('/users/', 1)[-1].split('/', 1)[-1]} -> {request.status}"
        )
    for what, raw in GRAPH_MESSAGES.items():
        print(f"  {what}: {'still in the inbox' if raw in left else 'deleted (moved to Deleted Items)'}")
    for mail in stack.graph.sent:
        reply = parse(mail.mime)
        names = [part.get_filename() for part in reply.iter_attachments()]
        print(
            f"  reply {reply['Subject']!r} to {', '.join(mail.recipients)} via Graph {mail.via} "
            f"as {mail.mailbox}, attached {names}"
        )


def upload_scripts(stack: LocalStack) -> list[str]:
    """Every file under examples/scripts/, at the same key in the scripts bucket."""
    keys = []
    for path in sorted(SCRIPTS.rglob("*.py")):
        key = path.relative_to(SCRIPTS).as_posix()
        aws.put_object(stack.endpoint_url, stack.names.scripts_bucket, key, path.read_bytes())
        keys.append(key)
    return keys


def parse(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)


def report(stack: LocalStack, mailboxes: dict[str, dict[str, bytes]]) -> None:
    bucket = stack.names.archive_bucket
    archived = aws.list_keys(stack.endpoint_url, bucket)
    replies: dict[str, tuple[Any, EmailMessage]] = {}
    for mail in stack.smtp.received:
        reply = parse(mail.data)
        replies[str(reply["In-Reply-To"])] = (mail, reply)
    print(f"\n{'message':<38} {'POP3':<16} {'archive':<11} reply")
    for user, messages in mailboxes.items():
        left = stack.dovecot.mailbox(user)
        for what, raw in messages.items():
            digest = hashlib.sha256(raw).hexdigest()
            raw_copies = [k for k in archived if digest in k and k.startswith(("inbound/", "quarantine/"))]
            where = next((k.split("/")[0] for k in raw_copies if k.endswith(".eml")), "-")
            answer = "-"
            if (message_id := str(parse(raw)["Message-ID"])) in replies:
                mail, reply = replies[message_id]
                names = [part.get_filename() for part in reply.iter_attachments()]
                answer = f"{reply['Subject']!r} to {', '.join(mail.rcpt_tos)} via SMTP, attached {names}"
            on_server = "still on server" if raw in left else "deleted"
            print(f"{what:<38} {on_server:<16} {where:<11} {answer}")
    print(f"\narchive bucket s3://{bucket}/:")
    for key in archived:
        print(f"  {key}")
    for mail, reply in replies.values():
        for part in reply.iter_attachments():
            export = cast(bytes, part.get_payload(decode=True)).decode("utf-8")
            header = export.splitlines()[0].split(";")
            # A tab-separated file is processed only after the prescript; the postscript adds columns.
            stamp = next(
                ((key, cols) for cols, key in STAMPS.items() if tuple(header[-len(cols) :]) == cols), None
            )
            if stamp is None:
                print(f"\nscripts DID NOT RUN on {part.get_filename()}")
            else:
                folder = stamp[0].rsplit("/", 1)[0]
                print(
                    f"\nscripts ran: prescript {folder}/{PRESCRIPT} turned orders.tsv (tab-separated, the "
                    f"partner's columns) into the import CSV; postscript {stamp[0]} added {list(stamp[1])}"
                )
            print(f"export {part.get_filename()} as sent to {', '.join(mail.rcpt_tos)}:")
            print(export)


if __name__ == "__main__":
    main()
