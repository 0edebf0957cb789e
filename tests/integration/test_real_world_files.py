"""Files another program reads, through the poll handler against the local stack (issue 17 items 15
and 16): Excel's "Unicode text" (UTF-16 with its byte order mark, tab-separated) is answered in kind,
and a winmail.dat cut short inside its last attribute still yields the import file it carries."""

import codecs
from email import message_from_bytes, policy
from email.message import EmailMessage

from devstack.invoke import invoke_poll, load_event, store_channel
from devstack.samples import VALID_IMPORT, partner_mail
from devstack.stack import LocalStack
from domain.shipments import is_valid_s10
from tests.unit.tnef_samples import tnef

EVENT = load_event("poll-channel.json", channel_id="acme")
COUNTS = ("seen", "recognized", "processed", "failed", "rejected", "deferred", "deleted")


def the_export(raw: bytes) -> tuple[str, bytes]:
    reply: EmailMessage = message_from_bytes(raw, policy=policy.default)
    [attachment] = list(reply.iter_attachments())
    data = attachment.get_payload(decode=True)
    assert isinstance(data, bytes)
    return str(attachment.get_filename()), data


def test_excels_unicode_text_is_processed_and_answered_in_utf16_with_tabs(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    # Given Excel's "Unicode text" export of the sample import
    store_channel(stack, mailbox)
    unicode_text = codecs.BOM_UTF16_LE + VALID_IMPORT.decode().replace(";", "\t").encode("utf-16-le")
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=[("orders.txt", unicode_text)]))

    # When the channel is polled
    result = invoke_poll(EVENT)

    # Then the message is processed and the export comes back as Excel wrote the import
    assert tuple(result[key] for key in COUNTS) == (1, 1, 1, 0, 0, 0, 1)
    [mail] = stack.smtp.wait_for(1)
    name, export = the_export(mail.data)
    assert name == "orders_export.csv"
    assert export.startswith(codecs.BOM_UTF16_LE)
    header, first, second, third = [line.split("\t") for line in export.decode("utf-16").splitlines()]
    assert header == ["reference", "status", "shipment_id", "product", "weight_g", "postage_chf", "message"]
    assert first[:2] == ["R-1001", "ACCEPTED"]
    assert is_valid_s10(first[2])
    assert second[:2] == ["R-1002", "ACCEPTED"]
    assert third[:2] == ["R-1003", "REJECTED"]
    assert stack.dovecot.mailbox(mailbox[0]) == []


def test_a_winmail_dat_cut_inside_its_last_attribute_is_answered_with_its_export(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    store_channel(stack, mailbox)
    blob = tnef((b"ORDERS~1.CSV", VALID_IMPORT, "orders.csv"))[:-7]  # cut inside attMessageClass
    stack.dovecot.deliver(mailbox[0], partner_mail(attachments=[("winmail.dat", blob)]))

    result = invoke_poll(EVENT)

    assert tuple(result[key] for key in COUNTS) == (1, 1, 1, 0, 0, 0, 1)
    [mail] = stack.smtp.wait_for(1)
    name, export = the_export(mail.data)
    assert name == "orders_export.csv"
    assert export.decode("utf-8").splitlines()[1].startswith("R-1001;ACCEPTED;LA")
