"""Answered once, with the first answer kept (issue 17, items 4 and 6): a dead poll's claim is kept
until its stored reply was looked for, and every reply has a key of its own."""

import hashlib
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from adapters.dry_run import DryRunArchive, Journal
from adapters.state import ledger_item
from devstack.samples import partner_mail
from domain.archive_keys import parse_archive_key, parse_reply_key, reply_key
from domain.errors import TransientError
from domain.ledger import Claim, LedgerEntry, Stage, StoredReply
from domain.outcomes import Outcome
from tests.unit.fakes import FakeArchive, World

PARTNER = "orders@partner.example"
DIGEST = "ab" * 32
DEAD = Claim("a poll killed after storing its answer", datetime(2026, 11, 27, 7, 55, 1, 250, tzinfo=UTC))


class FlakyArchive(FakeArchive):
    """The fake archive whose first ``failing`` looks for a stored reply fail transiently."""

    failing: int = 1

    def stored_reply(self, channel_id: str, digest: str, received: datetime) -> StoredReply | None:
        if self.failing:
            self.failing -= 1
            raise TransientError("looking for a stored reply: SlowDown (will be retried)")
        return super().stored_reply(channel_id, digest, received)


def test_a_failed_look_for_a_dead_polls_reply_keeps_it_and_the_next_poll_sends_that_reply() -> None:
    world = World()
    world.archive = FlakyArchive()
    raw = partner_mail()
    digest = hashlib.sha256(raw).hexdigest()
    world.mailbox.deliver("u1", raw)
    world.ledger.save(LedgerEntry("acme", digest, claim=DEAD))
    key = world.archive.store_reply(
        "acme", digest, b"the stored reply", DEAD.since, outcome=Outcome.PROCESSED, recipient=PARTNER
    )

    first = world.poll()

    assert (first["deferred"], first["deleted"]) == (1, 0)
    assert world.replies.sent == []
    waiting = world.ledger.only()
    assert (waiting.stage, waiting.claim, waiting.dead_claims) == (Stage.RECEIVED, None, (DEAD.since,))

    second = world.poll()

    assert (second["processed"], second["deleted"]) == (1, 1)
    [sent] = world.replies.sent
    assert (sent.data, sent.recipient) == (b"the stored reply", PARTNER)
    assert world.serials.calls == []
    assert world.archive.keys("exports/") == [key]
    done = world.ledger.only()
    assert (done.stage, done.reply_key, done.dead_claims) == (Stage.REPLIED, key, ())


def test_a_dead_claim_is_kept_only_while_nothing_is_recorded_as_answered() -> None:
    now = DEAD.since + timedelta(minutes=5)
    received = LedgerEntry("acme", DIGEST, claim=DEAD)
    answered = LedgerEntry("acme", DIGEST, claim=DEAD).answered(
        Outcome.PROCESSED, reply_key="exports/x.eml", recipient=PARTNER
    )

    taken = received.claimed("next", now)

    assert (taken.attempts, taken.dead_claims) == (1, (DEAD.since,))
    assert taken.claimed("third", now + timedelta(minutes=5)).dead_claims == (DEAD.since, now)
    assert answered.claimed("next", now).dead_claims == ()
    assert taken.released("SlowDown", attempt=True).dead_claims == (DEAD.since,)
    assert taken.answered(Outcome.FAILED, reply_key="replies/x.eml", recipient=PARTNER).dead_claims == ()
    assert ledger_item(taken)["dead_claims"] == {"L": [{"S": "2026-11-27T07:55:01.000250+00:00"}]}


def test_every_claim_time_has_its_own_reply_key_found_by_that_time() -> None:
    later = DEAD.since + timedelta(microseconds=1)

    first = reply_key("acme", DIGEST, DEAD.since, Outcome.PROCESSED)

    assert first == f"exports/acme/{DIGEST}/20261127T075501.000250Z.eml"
    assert reply_key("acme", DIGEST, later, Outcome.PROCESSED) != first
    assert reply_key("acme", DIGEST, DEAD.since, Outcome.FAILED).startswith(f"replies/acme/{DIGEST}/")
    earlier_layout = parse_reply_key(f"exports/acme/2026/11/27/{DIGEST}.eml")
    assert earlier_layout is not None
    assert (earlier_layout.channel_id, earlier_layout.digest) == ("acme", DIGEST)
    assert parse_reply_key(f"inbound/acme/2026/11/27/{DIGEST}.eml") is None
    assert parse_archive_key(first) is None  # a reply is not a raw message to replay


@given(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True),
    st.binary(min_size=1, max_size=64),
    st.datetimes(min_value=datetime(2000, 1, 1), timezones=st.just(UTC)),
    st.sampled_from([Outcome.PROCESSED, Outcome.FAILED]),
)
def test_a_reply_key_names_its_channel_and_message(
    channel_id: str, raw: bytes, claimed: datetime, outcome: Outcome
) -> None:
    digest = hashlib.sha256(raw).hexdigest()

    parsed = parse_reply_key(reply_key(channel_id, digest, claimed, outcome))

    assert parsed is not None
    assert (parsed.channel_id, parsed.digest) == (channel_id, digest)


def test_a_dry_run_names_the_reply_key_a_real_poll_writes() -> None:
    real = FakeArchive()
    dry = DryRunArchive(Journal(), real)

    key = dry.store_reply("acme", DIGEST, b"reply", DEAD.since, outcome=Outcome.PROCESSED, recipient=PARTNER)

    assert key == f"(dry run) {reply_key('acme', DIGEST, DEAD.since, Outcome.PROCESSED)}"
    assert real.objects == {}
