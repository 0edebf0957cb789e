"""Which messages a poll looks at, in which order, and what it remembers of them afterwards
(DESIGN §6: an unchanged mailbox costs almost nothing, a new partner message is processed within
two polls, skipped messages never use up a batch). The order is ``MailboxMemory.screening``."""

from domain.channel import Channel
from domain.errors import TransientError
from domain.inbound import recognition_key
from domain.mailbox_memory import MailboxMemory
from domain.outcomes import PollResult
from service.ports import MemoryStore, MessageRef
from service.retrieval import RetrievalFailures
from service.telemetry import logger


def recognition(channel: Channel) -> str:
    """The channel's recognition settings, which the remembered foreign verdicts belong to."""
    return recognition_key(exclusive_account=channel.exclusive_account, keyword=channel.subject_keyword)


def queue(
    refs: list[MessageRef], retrievals: RetrievalFailures, result: PollResult
) -> tuple[list[MessageRef], list[MessageRef]]:
    """The messages this poll looks at, in order, and those it leaves for later polls (the
    memory's ``screening``), without the ones skipped as unretrievable (counted in ``skipped``)."""
    screening = retrievals.memory.screening([ref.uid for ref in refs])
    skipped = {i for i in screening.order if retrievals.given_up(refs[i])}
    result.skipped = len(skipped)
    waiting = [refs[i] for i in screening.order[: screening.now] if i not in skipped]
    later = [refs[i] for i in screening.order[screening.now :] if i not in skipped]
    return waiting, later


def save_memory(
    channel: Channel,
    store: MemoryStore,
    *,
    before: MailboxMemory,
    after: MailboxMemory,
    refs: list[MessageRef],
    next_up: str,
) -> None:
    """Save what the poll learnt of the mailbox, when it learnt anything (one write); ``next_up``:
    the first message it did not look at ("" when it looked at all)."""
    kept = after.kept([ref.uid for ref in refs], next_up=next_up)
    if kept == before:
        return
    try:
        store.save(channel.channel_id, kept)
    except TransientError as error:
        logger.warning("mailbox memory not saved; the next poll looks at these messages again: %s", error)
