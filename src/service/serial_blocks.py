"""Shipment ids are issued once per file, ever (DESIGN §6): each import file's serial block is
recorded in the message's ledger entry before processing uses it, and every retry reuses it."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from domain.ledger import LedgerEntry, SerialBlock
from domain.shipments import SerialSource
from service.telemetry import logger


class HoldsEntry(Protocol):
    """The message being settled: its ledger entry as last saved."""

    entry: LedgerEntry | None

    @property
    def ledger_entry(self) -> LedgerEntry: ...


@dataclass
class RecordedSerials:
    """The ``SerialSource`` of one import file (``key``: its position and name in the message)."""

    serials: SerialSource
    key: str
    message: HoldsEntry
    record: Callable[[LedgerEntry], LedgerEntry]

    def allocate(self, count: int) -> range:
        entry = self.message.ledger_entry
        recorded = entry.serial_blocks.get(self.key)
        reused = recorded.serials(count) if recorded is not None else None
        if reused is not None:
            logger.info("reusing the serial block recorded for this file", extra={"import_file": self.key})
            return reused
        fresh = self.serials.allocate(count)
        block = SerialBlock(first=fresh.start, count=len(fresh))
        self.message.entry = self.record(entry.with_serial_block(self.key, block))
        return fresh
