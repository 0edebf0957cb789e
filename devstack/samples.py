"""Sample partner e-mails and import files, for the demo and the tests."""

import re
from collections.abc import Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid

VALID_IMPORT = (
    "reference;name;company;street;house_number;postcode;city;country;product;weight_g\r\n"
    "R-1001;Anna Muster;;Bahnhofstrasse;12;8001;Zürich;CH;A-POST;80\r\n"
    "R-1002;Beat Beispiel;Beispiel AG;Sinserstrasse;47;6330;Cham;CH;REGISTERED;450\r\n"
    "R-1003;Carla Test;;Hauptstrasse;1;12;Bern;CH;B-POST;120\r\n"
).encode()


def partner_mail(
    *,
    sender: str = "orders@partner.example",
    to: str = "lettershop@operator.example",
    subject: str = "LetterShop import",
    attachments: Sequence[tuple[str, bytes]] = (("orders.csv", VALID_IMPORT),),
    body: str = "Please find our shipments attached.",
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A partner's message with import-file attachments, as raw bytes with CRLF line ends."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Fri, 27 Nov 2026 08:00:00 +0100"
    message["Message-ID"] = make_msgid(domain="partner.example")
    for name, value in headers:
        message[name] = value
    message.set_content(body)
    for filename, content in attachments:
        message.add_attachment(content, maintype="text", subtype="csv", filename=filename)
    return message.as_bytes()


def bounce_mail(to: str = "lettershop@operator.example") -> bytes:
    """A delivery status notification, as a mail server would send it."""
    return (
        "Return-Path: <>\r\n"
        "From: Mail Delivery System <MAILER-DAEMON@partner.example>\r\n"
        f"To: {to}\r\n"
        "Subject: LetterShop import: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n"
        "--b1\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.partner.example\r\n\r\n"
        "Final-Recipient: rfc822; nobody@partner.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--b1--\r\n"
    ).encode()


def with_sender(raw: bytes, from_value: bytes) -> bytes:
    """The message with its From header(s) replaced by one ``From: <from_value>`` (raw bytes, so
    senders that ``EmailMessage`` would rewrite arrive exactly as written)."""
    head, separator, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    newline = b"\r\n" if separator == b"\r\n\r\n" else b"\n"
    without_from = re.sub(rb"(?im)^from[ \t]*:.*(?:\r?\n[ \t].*)*(?:\r?\n|$)", b"", head + newline)
    return b"From: " + from_value + newline + without_from.rstrip(b"\r\n") + separator + body


def out_of_office(reply: bytes, *, sender: str = "orders@partner.example") -> bytes:
    """A partner's out-of-office answer to one of our replies, without any RFC 3834 header: the kind
    of autoresponder that would ping-pong with us."""
    answered = message_from_bytes(reply, policy=policy.default)
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = str(answered["From"])
    message["Subject"] = f"Out of office: {answered['Subject']}"
    message["Date"] = "Fri, 27 Nov 2026 09:00:00 +0100"
    message["Message-ID"] = make_msgid(domain="partner.example")
    message["In-Reply-To"] = str(answered["Message-ID"])
    message["References"] = str(answered["Message-ID"])
    message.set_content("I am out of the office until Monday.")
    return message.as_bytes()
