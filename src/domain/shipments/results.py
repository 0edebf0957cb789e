"""What processing one import file produces, row by row (DESIGN §5): the export row of each import
row, and where its serials come from."""

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from domain.shipments.partner_text import as_data, shorten, starts_like_formula
from domain.shipments.products import Product

EXPORT_COLUMNS = ("reference", "status", "shipment_id", "product", "weight_g", "postage_chf", "message")


class SerialSource(Protocol):
    """Where S10 serials come from (the atomic counter in the state table)."""

    def allocate(self, count: int) -> range:
        """``count`` fresh serials in 1..99_999_999 that were never handed out before."""
        ...


class Status(StrEnum):
    """Outcome of one import row."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class RowResult:
    """One export row: the outcome of the import row that starts on file line ``line``."""

    line: int
    reference: str
    status: Status
    shipment_id: str
    product: Product | None
    weight_g: int | None
    postage_chf: Decimal | None
    problems: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """Every problem of the row, ``"; "``-joined; empty for an accepted row."""
        return "; ".join(self.problems)

    def export_cells(self) -> list[str]:
        """The row's cells in ``EXPORT_COLUMNS`` order; none starts with a formula character."""
        cells = [
            "" if starts_like_formula(self.reference) else self.reference,
            self.status.value,
            self.shipment_id,
            self.product.value if self.product else "",
            "" if self.weight_g is None else str(self.weight_g),
            "" if self.postage_chf is None else f"{self.postage_chf:.2f}",
            self.message,
        ]
        return [as_data(cell) for cell in cells]

    def describe(self) -> str:
        """``row 4 (reference R-4): <message>`` for the reply body (the reference shortened)."""
        reference = shorten(self.reference)
        where = f"row {self.line} (reference {reference})" if reference else f"row {self.line}"
        return f"{where}: {self.message}"
