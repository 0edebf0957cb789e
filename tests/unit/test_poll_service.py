"""poll_mailbox with recording fakes: every outcome of DESIGN §6 that needs no real server."""

import hashlib
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.samples import VALID_IMPORT, bounce_mail, partner_mail
from domain.errors import TransientError, UndeliverableReply
from domain.ledger import LedgerEntry, Stage
from service.poll import poll_mailbox
from tests.unit.fakes import FakeSession, World, body_of, make_channel

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


def test_an_exclusive_account_asks_no_top_and_screens_the_headers_of_the_download(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail(subject="shipments"))
    world.mailbox.deliver("u2", partner_mail(sender="someone@stranger.example"))
    world.mailbox.deliver("u3", bounce_mail())

    result = world.poll(make_channel(exclusive_account=True, subject_keyword=None))

    assert (result["processed"], result["rejected"], result["deleted"]) == (1, 2, 3)
    assert world.mailbox.screened == []  # no TOP: every message is LetterShop's
    assert world.mailbox.retrieved == ["u1", "u2", "u3"]
    [reply] = world.replies.sent
    assert (reply.recipient, reply.message["Subject"]) == (PARTNER, "Re: shipments")
    reasons = sorted(str(reason["reason"]) for reason in world.archive.reasons.values())
    assert "not in the allowed" in reasons[0] + reasons[1]


def test_a_shared_account_asks_top_once_per_message_and_only_for_messages_it_does_not_know(
    world: World,
) -> None:
    world.mailbox.deliver("u1", partner_mail(subject="Invoice November"))
    world.mailbox.deliver("u2", partner_mail())
    world.poll()
    world.mailbox.deliver("u3", partner_mail(subject="LetterShop orders, second batch"))

    world.poll()

    assert world.mailbox.screened == ["u1", "u2", "u3"]  # u1 is remembered as foreign
    assert world.mailbox.retrieved == ["u2", "u3"]
    assert world.mailbox.expected == ["u2"]  # u2's headers announced while u1 was looked at


def test_an_exclusive_account_announces_no_headers(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail())
    world.mailbox.deliver("u2", partner_mail(subject="LetterShop orders, second batch"))

    world.poll(make_channel(exclusive_account=True, subject_keyword=None))

    assert (world.mailbox.expected, world.mailbox.screened) == ([], [])


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


def test_a_small_messages_archive_copy_is_on_its_way_while_the_ledger_is_claimed(world: World) -> None:
    """Issue 21: the upload and the claim wait for the network together, not one after the other."""
    uploading = threading.Event()
    store_inbound, claim = world.archive.store_inbound, world.ledger.claim

    def slow_store(*args: Any) -> str:
        uploading.set()
        return store_inbound(*args)

    def claim_during_upload(*args: Any) -> Any:
        assert uploading.wait(5), "the claim was made before the archive copy was sent"
        return claim(*args)

    world.archive.store_inbound = slow_store  # type: ignore[method-assign,assignment]
    world.ledger.claim = claim_during_upload  # type: ignore[method-assign,assignment]
    world.mailbox.deliver("u1", partner_mail())

    result = world.poll()

    assert (result["processed"], result["deleted"]) == (1, 1)
    assert len(world.archive.keys("inbound/")) == 1


def test_an_archive_copy_that_fails_on_its_way_defers_the_message_unanswered(world: World) -> None:
    world.archive.unavailable = True
    world.mailbox.deliver("u1", partner_mail())

    result = world.poll()

    assert (result["deferred"], result["processed"], result["deleted"]) == (1, 0, 0)
    assert (world.replies.sent, world.archive.keys("exports/")) == ([], [])  # no answer stored
    world.archive.unavailable = False
    again = world.poll()
    assert (again["processed"], again["deleted"]) == (1, 1)
    assert world.serials.calls == [2]  # the block recorded by the first try is reused, never a new one


def test_a_strangers_message_is_never_copied_to_inbound(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail(sender="someone@stranger.example"))

    result = world.poll()

    assert result["rejected"] == 1
    assert world.archive.keys("inbound/") == []
    assert len(world.archive.keys("quarantine/")) == 1


def test_a_partners_message_gets_the_reply_connection_ready_and_a_strangers_does_not(world: World) -> None:
    world.mailbox.deliver("u1", partner_mail(sender="someone@stranger.example"))

    world.poll()
    assert world.replies.prepared == 0

    world.mailbox.deliver("u2", partner_mail())
    world.poll()
    assert world.replies.prepared >= 1
    assert len(world.replies.sent) == 1


def test_a_sent_replys_record_is_written_while_the_next_message_is_downloaded(world: World) -> None:
    """Issue 21: the replied record waits for the network beside the next RETR, not before it."""
    downloading = threading.Event()
    save, retrieve = world.ledger.save, FakeSession.retrieve

    def save_during_download(entry: LedgerEntry) -> None:
        if entry.stage is Stage.REPLIED and entry.digest == first_digest:
            assert downloading.wait(5), "the record was written before the next message was downloaded"
        save(entry)

    def retrieve_noting(session: FakeSession, number: int, sink: Any) -> None:
        if session.uids[number - 1] == "u2":
            downloading.set()
        retrieve(session, number, sink)

    first = partner_mail()
    first_digest = hashlib.sha256(first).hexdigest()
    world.ledger.save = save_during_download  # type: ignore[method-assign]
    FakeSession.retrieve = retrieve_noting  # type: ignore[method-assign,assignment]
    try:
        world.mailbox.deliver("u1", first)
        world.mailbox.deliver("u2", partner_mail(subject="LetterShop orders, second batch"))
        result = world.poll()
    finally:
        FakeSession.retrieve = retrieve  # type: ignore[method-assign]

    assert (result["processed"], result["deleted"]) == (2, 2)
    assert world.mailbox.messages == {}


def test_a_message_is_deleted_only_after_its_replied_record(world: World) -> None:
    events: list[str] = []
    save, delete = world.ledger.save, FakeSession.delete

    def save_noting(entry: LedgerEntry) -> None:
        save(entry)
        if entry.stage is Stage.REPLIED:
            events.append(f"replied {entry.digest[:8]}")

    def delete_noting(session: FakeSession, number: int) -> None:
        events.append(
            f"dele {hashlib.sha256(session.box.messages[session.uids[number - 1]]).hexdigest()[:8]}"
        )
        delete(session, number)

    world.ledger.save = save_noting  # type: ignore[method-assign]
    FakeSession.delete = delete_noting  # type: ignore[method-assign,assignment]
    try:
        for number in range(3):
            world.mailbox.deliver(f"u{number}", partner_mail(subject=f"LetterShop batch {number}"))
        world.poll()
    finally:
        FakeSession.delete = delete  # type: ignore[method-assign]

    replied = [event.split()[1] for event in events if event.startswith("replied")]
    assert len(replied) == 3
    for digest in replied:
        assert events.index(f"replied {digest}") < events.index(f"dele {digest}")


# ----------------------------------------------- a listing with subjects and no sizes (Graph, issue 22)


def test_a_listed_subject_screens_foreign_mail_out_without_a_request_of_its_own(world: World) -> None:
    world.mailbox.listed_subjects = True
    world.mailbox.deliver("foreign", partner_mail(subject="Invoice November"))
    world.mailbox.deliver("ours", partner_mail())

    first = world.poll()
    again = world.poll()

    assert (first["seen"], first["recognized"], first["processed"]) == (2, 1, 1)
    # the foreign one: neither headers nor body read; ours: its headers came with its download
    assert world.mailbox.screened == []
    assert world.mailbox.retrieved == ["ours"]
    assert list(world.mailbox.messages) == ["foreign"]
    assert (again["seen"], again["recognized"]) == (0, 0)  # remembered as foreign: not looked at
    assert world.mailbox.screened == []


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
