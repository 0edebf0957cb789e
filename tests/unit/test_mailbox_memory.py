"""What a channel remembers of its mailbox (DESIGN §6): fingerprints, packing, forgetting."""

from hypothesis import given
from hypothesis import strategies as st

from domain.mailbox_memory import FINGERPRINT_BYTES, MAX_FOREIGN, MailboxMemory, fingerprint

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


def test_the_fingerprints_kept_are_capped() -> None:
    on_server = [str(n) for n in range(MAX_FOREIGN + 10)]

    assert len(MailboxMemory().with_foreign(on_server).kept(on_server).foreign) == MAX_FOREIGN


@given(st.lists(uids, max_size=50), st.dictionaries(uids, st.integers(1, 9), max_size=5))
def test_packing_loses_nothing(foreign: list[str], failures: dict[str, int]) -> None:
    memory = MailboxMemory(failures=failures).with_foreign(foreign)

    assert MailboxMemory.unpacked(memory.packed_foreign(), failures) == memory
    assert all(memory.is_foreign(uid) for uid in foreign)
