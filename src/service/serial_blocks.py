"""Shipment ids are issued once per file, ever (DESIGN §6): each import file's serial block is
recorded in the message's ledger entry before processing uses it, and every retry reuses it."""

from dataclasses import dataclass
from typing import Protocol

from domain.ledger import LedgerEntry, SerialBlock
from service.ports import SerialCounter
from service.telemetry import logger


class HoldsEntry(Protocol):
    """The message being settled: its ledger entry as last saved."""

    entry: LedgerEntry | None

    @property
    def ledger_entry(self) -> LedgerEntry: ...


@dataclass
class RecordedSerials:
    """The ``SerialSource`` of one import file (``key``: its position and name in the message)."""

    counter: SerialCounter
    key: str
    message: HoldsEntry

    def allocate(self, count: int) -> range:
        entry = self.message.ledger_entry
        recorded = entry.serial_blocks.get(self.key)
        reused = recorded.serials(count) if recorded is not None else None
        if reused is not None:
            logger.info("reusing the serial block recorded for this file", extra={"import_file": self.key})
            return reused

        def with_block(serials: range) -> LedgerEntry:
            return entry.with_serial_block(self.key, SerialBlock(first=serials.start, count=len(serials)))

        fresh = self.counter.allocate_recorded(count, with_block)
        if len(fresh):
            self.message.entry = with_block(fresh)
        return fresh
