"""Shipment ids are issued once per file, ever (DESIGN §6): each import file's serial block is
recorded in the message's ledger entry before processing uses it, and every retry reuses it.

A fresh block is counted against the channel's budget of the day (``domain.serial_budget``) by the
counter, in the write that takes it; a reused block is not asked for again, so never counted twice.
The blocks of one message together stay within one day's budget, whatever days they were taken on."""

from dataclasses import dataclass
from typing import Protocol

from domain.errors import PermanentError
from domain.ledger import LedgerEntry, SerialBlock
from domain.serial_budget import DailyBudget
from domain.shipments import SerialSource
from service.ports import SerialCounter
from service.telemetry import logger


class HoldsEntry(Protocol):
    """The message being settled: its ledger entry as last saved."""

    entry: LedgerEntry | None

    @property
    def ledger_entry(self) -> LedgerEntry: ...


@dataclass
class RecordedSerials:
    """The serials of one import file (``key``: its position and name in the message)."""

    counter: SerialCounter
    key: str
    message: HoldsEntry

    def within(self, budget: DailyBudget) -> SerialSource:
        """This file's ``SerialSource``: fresh serials are counted against ``budget``."""
        return _Budgeted(self, budget)

    def allocate(self, count: int, budget: DailyBudget) -> range:
        entry = self.message.ledger_entry
        recorded = entry.serial_blocks.get(self.key)
        reused = recorded.serials(count) if recorded is not None else None
        if reused is not None:
            logger.info("reusing the serial block recorded for this file", extra={"import_file": self.key})
            return reused

        earlier = sum(block.count for key, block in entry.serial_blocks.items() if key != self.key)
        if earlier + count > budget.limit:  # a message deferred across midnight: not two days' worth
            raise PermanentError(budget.message_refusal(count, earlier))

        def with_block(serials: range) -> LedgerEntry:
            return entry.with_serial_block(self.key, SerialBlock(first=serials.start, count=len(serials)))

        fresh = self.counter.allocate_recorded(count, with_block, budget)
        if len(fresh):
            self.message.entry = with_block(fresh)
        return fresh


@dataclass(frozen=True)
class _Budgeted:
    serials: RecordedSerials
    budget: DailyBudget

    def allocate(self, count: int) -> range:
        return self.serials.allocate(count, self.budget)
