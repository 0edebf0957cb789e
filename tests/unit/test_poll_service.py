"""poll_mailbox with recording fakes: every outcome of DESIGN §6 that needs no real server."""

from datetime import UTC, datetime

import pytest

from devstack.samples import VALID_IMPORT, bounce_mail, partner_mail
from domain.errors import TransientError, UndeliverableReply
from service.poll import poll_mailbox
from tests.unit.fakes import World, body_of, make_channel

PARTNER = "orders@partner.example"


@pytest.fixture
def world() -> World:
    return World()


def test_partner_import_is_answered_with_export_archived_and_deleted(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail())

    result = world.poll()

    assert result == {
        "channel_id": "acme", "status": "ok", "seen": 1, "recognized": 1, "processed": 1,
        "failed": 0, "rejected": 0, "deferred": 0, "deleted": 1,
    }  # fmt: skip
    assert world.mailbox.messages == {}
    [reply] = world.replies.sent
    assert reply.recipient == PARTNER
    assert reply.sender == "lettershop@operator.example"
    assert reply.message["Subject"] == "Re: LetterShop import"
    assert reply.message["Auto-Submitted"] == "auto-replied"
    [attachment] = list(reply.message.iter_attachments())
    assert attachment.get_filename() == "orders_export.csv"
    export = attachment.get_content()
    assert "R-1001;ACCEPTED;LA" in export
    assert "R-1003;REJECTED" in export
    assert len(world.archive.keys("inbound/")) == 1
    [stored] = world.archive.keys("exports/")  # the reply as sent, with its export file
    assert world.archive.objects[stored] == reply.data
    assert world.serials.calls == [2]


def test_message_without_keyword_on_shared_account_is_never_downloaded(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail(subject="Invoice November"))

    result = world.poll()

    assert (result["seen"], result["recognized"], result["deleted"]) == (1, 0, 0)
    assert world.mailbox.retrieved == []
    assert "u1" in world.mailbox.messages
    assert world.replies.sent == []


def test_exclusive_account_takes_messages_without_keyword(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail(subject="shipments"))

    result = world.poll(make_channel(exclusive_account=True, subject_keyword=None))

    assert result["processed"] == 1


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        (partner_mail(sender="someone@stranger.example"), "not in the allowed"),
        (bounce_mail(), "report"),
        (partner_mail(headers=[("Auto-Submitted", "auto-generated")]), "Auto-Submitted"),
        (partner_mail(headers=[("Precedence", "bulk")]), "bulk"),
    ],
)
def test_strangers_and_automatic_messages_are_quarantined_without_reply(
    world: World, raw: bytes, reason_part: str
) -> None:
    world.mailbox.deliver("u1", raw)

    result = world.poll()

    assert (result["rejected"], result["deleted"]) == (1, 1)
    assert world.replies.sent == []
    [key] = world.archive.keys("quarantine/")
    assert world.archive.objects[key] == raw
    assert reason_part.lower() in str(world.archive.reasons[key]["reason"]).lower()


def test_too_large_message_is_quarantined(world: World) -> None:
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)

    result = world.poll(make_channel(max_message_bytes=len(raw) - 1))

    assert result["rejected"] == 1
    [key] = world.archive.keys("quarantine/")
    assert "larger than max_message_bytes" in str(world.archive.reasons[key]["reason"])


def test_message_without_import_file_gets_error_reply(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail(attachments=[("invoice.pdf", b"%PDF-1.4")]))

    result = world.poll()

    assert (result["failed"], result["deleted"]) == (1, 1)
    [reply] = world.replies.sent
    body = body_of(reply.message)
    assert "No import file was found" in body
    assert "invoice.pdf" in body
    assert len(world.archive.keys("inbound/")) == 1


def test_bad_file_fails_but_good_file_of_same_message_is_processed(world: World) -> None:
    attachments = [("broken.csv", b"just some words\r\n"), ("orders.csv", VALID_IMPORT)]
    world.mailbox.deliver("u1", partner_mail(attachments=attachments))

    result = world.poll()

    assert result["processed"] == 1
    [reply] = world.replies.sent
    body = body_of(reply.message)
    assert "broken.csv: not processed" in body
    assert [a.get_filename() for a in reply.message.iter_attachments()] == ["orders_export.csv"]


def test_only_bad_files_fail_the_message_with_reasons(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail(attachments=[("broken.csv", b"just some words\r\n")]))

    result = world.poll()

    assert result["failed"] == 1
    body = body_of(world.replies.sent[0].message)
    assert "broken.csv" in body
    assert world.archive.keys("exports/") == []


def test_transient_failure_keeps_message_for_next_poll(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail())
    world.replies.error = TransientError("SMTP 451 try later")

    result = world.poll()

    assert (result["deferred"], result["deleted"]) == (1, 0)
    assert "u1" in world.mailbox.messages


def test_reply_refused_for_good_settles_the_message_as_failed_and_deletes_it(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail())
    world.replies.error = UndeliverableReply("550 no such user")

    result = world.poll()

    assert (result["failed"], result["deleted"], result["status"]) == (1, 1, "ok")
    assert len(world.archive.keys("inbound/")) == 1
    assert "550 no such user" in str(world.ledger.only().last_error)


def test_poll_stops_at_message_limit_and_time_budget(world: World) -> None:
    for n in range(5):
        world.mailbox.deliver(f"u{n}", partner_mail())

    assert world.poll(make_channel(max_messages_per_poll=2))["processed"] == 2
    world.time_left = 0
    assert world.poll()["seen"] == 0
    assert len(world.mailbox.messages) == 3


def test_prescript_and_postscript_run_around_processing(world: World) -> None:
    world.scripts.scripts = {
        "to_canonical.py": lambda data: data.replace(b"\t", b";"),
        "stamp.py": lambda data: data + b"# stamped\r\n",
    }
    tab_separated = VALID_IMPORT.replace(b";", b"\t")
    world.mailbox.deliver("u1", partner_mail(attachments=[("orders.csv", tab_separated)]))

    result = world.poll(
        make_channel(prescript="to_canonical.py", postscript="stamp.py", partner_id="acme-ag")
    )

    assert result["processed"] == 1
    pre, post = world.scripts.calls
    assert (pre.stage, pre.filename, pre.partner_id, pre.sender) == ("pre", "orders.csv", "acme-ag", PARTNER)
    assert (post.stage, post.filename) == ("post", "orders_export.csv")
    [attachment] = list(world.replies.sent[0].message.iter_attachments())
    assert attachment.get_content().endswith("# stamped\r\n")


def test_missing_script_fails_the_file_with_its_name(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail())

    result = world.poll(make_channel(prescript="missing.py"))

    assert result["failed"] == 1
    assert "missing.py" in body_of(world.replies.sent[0].message)


def test_no_message_starts_unless_its_scripts_can_run_to_their_timeout(world: World) -> None:
    world.scripts.scripts = {"same.py": lambda data: data}
    world.mailbox.deliver("u1", partner_mail())
    channel = make_channel(prescript="same.py", postscript="same.py", script_timeout_seconds=20)

    world.time_left = 40
    assert world.poll(channel)["seen"] == 0
    world.time_left = 41
    assert world.poll(channel)["processed"] == 1


def test_import_files_with_the_same_stem_get_distinct_exports(world: World) -> None:
    world.mailbox.deliver(
        "u1", partner_mail(attachments=[("orders.csv", VALID_IMPORT), ("orders.txt", VALID_IMPORT)])
    )

    assert world.poll()["processed"] == 1

    names = [a.get_filename() for a in world.replies.sent[0].message.iter_attachments()]
    assert names == ["orders_export.csv", "orders_export (2).csv"]
    assert len(world.archive.keys("exports/")) == 1  # one stored reply carries both


def test_a_file_whose_scripts_no_longer_fit_defers_the_message(world: World) -> None:
    world.scripts.scripts = {"same.py": lambda data: data}
    attachments = [("a.csv", VALID_IMPORT), ("b.csv", VALID_IMPORT)]
    world.mailbox.deliver("u1", partner_mail(attachments=attachments))
    channel = make_channel(prescript="same.py", script_timeout_seconds=20)
    budget = iter([25.0, 25.0, 15.0])  # the message starts, file a fits, file b does not

    result = poll_mailbox(
        channel,
        world.ports(),
        now=lambda: datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
        time_left=lambda: next(budget),
        lease_seconds=360,
    ).as_dict()

    assert (result["deferred"], result["deleted"]) == (1, 0)
    assert world.replies.sent == []
    assert "too little time" in str(world.ledger.only().last_error)


# ----------------------------------------------- a listing with subjects and no sizes (Graph, issue 22)


def test_a_listed_subject_screens_foreign_mail_out_without_a_request_of_its_own(world: World) -> None:
    world.mailbox.listed_subjects = True
    world.mailbox.deliver("foreign", partner_mail(subject="Invoice November"))
    world.mailbox.deliver("ours", partner_mail())

    first = world.poll()
    again = world.poll()

    assert (first["seen"], first["recognized"], first["processed"]) == (2, 1, 1)
    assert world.mailbox.headers_read == ["ours"]  # the foreign one: neither headers nor body read
    assert world.mailbox.retrieved == ["ours"]
    assert list(world.mailbox.messages) == ["foreign"]
    assert (again["seen"], again["recognized"]) == (0, 0)  # remembered as foreign: not looked at
    assert world.mailbox.headers_read == ["ours"]


def test_without_a_listed_size_the_cap_applies_to_the_bytes_downloaded(world: World) -> None:
    world.mailbox.listed_subjects = True
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)

    result = world.poll(make_channel(max_message_bytes=len(raw) - 1))

    assert (result["rejected"], result["processed"], result["deleted"]) == (1, 0, 1)
    [key] = world.archive.keys("quarantine/")
    assert world.archive.objects[key] == raw
    assert "larger than max_message_bytes" in str(world.archive.reasons[key]["reason"])
    assert world.replies.sent == []


def test_a_message_the_listing_sizes_at_the_cap_is_still_taken(world: World) -> None:
    world.mailbox.listed_subjects = True
    raw = partner_mail()
    world.mailbox.deliver("u1", raw)

    assert world.poll(make_channel(max_message_bytes=len(raw)))["processed"] == 1
