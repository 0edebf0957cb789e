"""A channel's ``MailboxMemory`` (DESIGN §6), kept in the state table and, across the warm
invocations of one function instance, in this process.

One item per channel, ``{"pk": "mailbox#<channel_id>"}``: ``foreign`` (binary, the packed UIDL
fingerprints), ``recognition`` (the recognition settings that found them foreign), ``failures``
(UIDL -> broken downloads), ``resume`` and ``tail`` (binary, where the next poll goes on, when the
last one stopped early) and ``expires_at`` (TTL: a channel that is not polled for 30 days forgets
its mailbox and looks at every message once more).

The copy in memory may be older than the item when another instance polled in between: it then
lacks the newest foreign messages (looked at again, once) or the newest broken downloads (a message
that cannot be read is tried a little more often). It never holds a message as foreign wrongly:
UIDLs never change, and the copy carries the recognition settings that decided it, so a poll with
other settings forgets its verdicts as it forgets the item's (``MailboxMemory.deciding``). It is
not checked against the item, so an item deleted by hand reaches only instances started later.
"""

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify
from domain.mailbox_memory import MailboxMemory, pack

RETENTION_SECONDS = 30 * 24 * 3600

# The memories this process loaded or saved, per (table, channel); kept warm by ``app.warm``.
type WarmMemories = dict[tuple[str, str], MailboxMemory]


class DynamoDbMailboxMemory:
    """Implements ``service.ports.MemoryStore``; ``warm`` is the warm state's copy of the memories
    (default: a private, cold one)."""

    def __init__(self, table_name: str, client: Any, *, warm: WarmMemories | None = None) -> None:
        self._table = table_name
        self._client = client
        self._warm = warm if warm is not None else {}

    def load(self, channel_id: str) -> MailboxMemory:
        cached = self._warm.get((self._table, channel_id))
        if cached is not None:
            return cached
        try:
            answer = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": _key(channel_id)}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"reading the mailbox memory in table {self._table}") from error
        item = answer.get("Item") or {}
        memory = MailboxMemory.unpacked(
            bytes(item.get("foreign", {}).get("B", b"")),
            {uid: int(n["N"]) for uid, n in item.get("failures", {}).get("M", {}).items()},
            recognition=item.get("recognition", {}).get("S", ""),
            resume=bytes(item.get("resume", {}).get("B", b"")),
            tail=bytes(item.get("tail", {}).get("B", b"")),
        )
        self._warm[(self._table, channel_id)] = memory
        return memory

    def save(self, channel_id: str, memory: MailboxMemory) -> None:
        item: dict[str, Any] = {
            "pk": {"S": _key(channel_id)},
            "foreign": {"B": memory.packed_foreign()},
            "expires_at": {"N": str(int(time.time()) + RETENTION_SECONDS)},
        }
        if memory.recognition:
            item["recognition"] = {"S": memory.recognition}
        if memory.failures:
            item["failures"] = {"M": {uid: {"N": str(n)} for uid, n in memory.failures.items()}}
        if memory.resume:
            item["resume"] = {"B": memory.resume}
        if memory.tail:
            item["tail"] = {"B": pack(memory.tail)}
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"writing the mailbox memory in table {self._table}") from error
        self._warm[(self._table, channel_id)] = memory


def _key(channel_id: str) -> str:
    return f"mailbox#{channel_id}"
