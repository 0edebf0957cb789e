"""What a channel remembers of its mailbox (DESIGN §6): fingerprints, packing, forgetting, the order
in which a poll looks at messages."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.mailbox_memory import (
    FINGERPRINT_BYTES,
    MAX_FOREIGN,
    TAIL,
    MailboxMemory,
    Screening,
    fingerprint,
    pack,
    unpack,
)

uids = st.text(min_size=1, max_size=70)


def test_a_remembered_uidl_is_foreign_and_an_other_is_not() -> None:
    memory = MailboxMemory().with_foreign(["0000a1b2", ""])

    assert memory.is_foreign("0000a1b2")
    assert not memory.is_foreign("0000a1b3")
    assert not memory.is_foreign("")
    assert len(memory.foreign) == 1


def test_fifty_thousand_messages_fit_one_dynamodb_item() -> None:
    memory = MailboxMemory().with_foreign(f"{n:08x}{n * 7919:016x}" for n in range(50_000))

    assert len(memory.packed_foreign()) == 50_000 * FINGERPRINT_BYTES <= 300_000


def test_only_messages_still_on_the_server_are_kept() -> None:
    memory = MailboxMemory().with_foreign(["a", "b"]).with_failure("c").with_failure("d")

    kept = memory.kept(["b", "d", "new"])

    assert kept.foreign == {fingerprint("b")}
    assert kept.failures == {"d": 1}


def test_the_fingerprints_kept_are_capped_to_the_newest() -> None:
    on_server = [str(n) for n in range(MAX_FOREIGN + 10)]

    kept = MailboxMemory().with_foreign(on_server).kept(on_server)

    assert len(kept.foreign) == MAX_FOREIGN
    assert not kept.is_foreign("9")
    assert kept.is_foreign("10")
    assert kept.is_foreign(on_server[-1])


def test_without_anything_to_resume_the_order_is_the_listings() -> None:
    memory = MailboxMemory().with_foreign(["f1", "f3"])

    assert memory.screening(["a", "f1", "b", "f3", "c", ""]) == Screening(order=(0, 2, 4, 5), now=4)


def test_older_messages_go_on_from_where_the_last_poll_stopped_then_the_new_ones_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("domain.mailbox_memory.MAX_OLDER_PER_POLL", 3)
    listing = [f"o{n}" for n in range(8)]
    memory = MailboxMemory().kept(listing, next_up="o5")  # the last poll reached o0..o4

    screening = memory.screening([*listing, "new1", "new2"])

    # o5, o6, o7 (3 older ones), the two new ones; o0.. o4 wait for later polls
    assert screening == Screening(order=(5, 6, 7, 8, 9, 0, 1, 2, 3, 4), now=5)


def test_what_arrived_after_the_newest_remembered_foreign_message_is_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("domain.mailbox_memory.MAX_OLDER_PER_POLL", 1)
    memory = MailboxMemory().with_foreign(["f1", "f2"])

    screening = memory.screening(["old1", "f1", "old2", "f2", "new1", "new2"])

    assert screening == Screening(order=(0, 4, 5, 2), now=3)


def test_a_poll_that_reached_everything_leaves_nothing_to_resume() -> None:
    memory = MailboxMemory().kept(["a", "b"], next_up="b")

    assert (memory.resume, len(memory.tail)) == (fingerprint("b"), 2)
    assert memory.kept(["a", "b"]) == MailboxMemory()


def test_other_recognition_settings_forget_the_foreign_messages_and_keep_the_failures() -> None:
    memory = MailboxMemory(recognition="keyword:lettershop").with_foreign(["f1"]).with_failure("b")

    assert memory.deciding("keyword:lettershop") is memory
    assert memory.deciding("exclusive") == MailboxMemory(failures={"b": 1}, recognition="exclusive")


@given(
    st.lists(st.text(alphabet="abcdefgh", min_size=0, max_size=3), max_size=30),
    st.sets(st.text(alphabet="abcdefgh", min_size=1, max_size=3), max_size=10),
    st.text(alphabet="abcdefgh", max_size=3),
)
def test_the_screening_takes_every_waiting_message_once_and_every_new_one_now(
    listing: list[str], foreign: set[str], next_up: str
) -> None:
    memory = MailboxMemory().with_foreign(foreign).kept(listing, next_up=next_up)

    screening = memory.screening([*listing, "zz-new"])

    waiting = [i for i, uid in enumerate([*listing, "zz-new"]) if not memory.is_foreign(uid)]
    assert sorted(screening.order) == waiting
    assert len(listing) in screening.order[: screening.now]


@given(
    st.lists(uids, max_size=50),
    st.dictionaries(uids, st.integers(1, 9), max_size=5),
    st.text(max_size=20),
    st.lists(uids, max_size=6),
)
def test_packing_loses_nothing(
    foreign: list[str], failures: dict[str, int], recognition: str, listing: list[str]
) -> None:
    memory = MailboxMemory(failures=failures, recognition=recognition).with_foreign(foreign)
    memory = replace(
        memory,
        resume=fingerprint(listing[0]) if listing else b"",
        tail=unpack(pack(frozenset(fingerprint(uid) for uid in listing[-TAIL:]))),
    )

    unpacked = MailboxMemory.unpacked(
        memory.packed_foreign(),
        failures,
        recognition=recognition,
        resume=memory.resume,
        tail=pack(memory.tail),
    )

    assert unpacked == memory
    assert all(memory.is_foreign(uid) for uid in foreign)
