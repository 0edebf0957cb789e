"""Postage by product and weight bracket, kept as data (``tariff.json`` next to this module).

The file maps each product to its brackets; a bracket key is the upper weight limit in grams
(inclusive), e.g. ``"250": "2.00"`` means 101-250 g cost CHF 2.00 when the bracket before it is 100.
Prices are decimal *strings* so no binary float ever touches money. The file is validated when it is
loaded: every product is priced, all products share the same brackets, the last bracket covers the
heaviest letter (``MAX_WEIGHT_G``), prices are positive with at most two decimals.
"""

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from domain.shipments.products import Product

MIN_WEIGHT_G = 1
MAX_WEIGHT_G = 2000
TARIFF_RESOURCE = "tariff.json"


class _TariffFile(BaseModel):
    # built when the first tariff is read (an import file is processed), not at import
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    version: str
    currency: Literal["CHF"]
    note: str = ""
    postage_chf: dict[Product, dict[int, Decimal]]

    @field_validator("postage_chf")
    @classmethod
    def _complete_and_consistent(
        cls, value: dict[Product, dict[int, Decimal]]
    ) -> dict[Product, dict[int, Decimal]]:
        missing = [product.value for product in Product if product not in value]
        if missing:
            raise ValueError(f"no prices for {', '.join(missing)}")
        brackets = {product: sorted(prices) for product, prices in value.items()}
        first = brackets[Product.A_POST]
        if any(other != first for other in brackets.values()):
            raise ValueError("all products must use the same weight brackets")
        if not first or first[0] < MIN_WEIGHT_G or first[-1] != MAX_WEIGHT_G:
            raise ValueError(f"weight brackets must end at exactly {MAX_WEIGHT_G} g, got {first}")
        for product, prices in value.items():
            for limit, price in prices.items():
                exponent = price.as_tuple().exponent
                if not price.is_finite() or price <= 0 or (isinstance(exponent, int) and exponent < -2):
                    raise ValueError(f"{product.value} up to {limit} g: {price} is not a CHF amount")
        return value


@dataclass(frozen=True)
class Tariff:
    """Postage lookup: ``postage(product, weight_g)``; build with ``from_json`` or ``default_tariff``."""

    version: str
    brackets_g: tuple[int, ...]
    prices: Mapping[Product, tuple[Decimal, ...]]

    @classmethod
    def from_json(cls, text: str | bytes) -> "Tariff":
        """Parse and validate a tariff document; ``ValueError`` names every problem."""
        try:
            parsed = _TariffFile.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'tariff'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ValueError(f"invalid tariff: {problems}") from exc
        brackets = tuple(sorted(parsed.postage_chf[Product.A_POST]))
        prices = {
            product: tuple(parsed.postage_chf[product][limit].quantize(Decimal("0.01")) for limit in brackets)
            for product in Product
        }
        return cls(version=parsed.version, brackets_g=brackets, prices=prices)

    def postage(self, product: Product, weight_g: int) -> Decimal:
        """CHF postage for one letter; ``ValueError`` outside ``MIN_WEIGHT_G..MAX_WEIGHT_G``."""
        if weight_g < MIN_WEIGHT_G:
            raise ValueError(f"weight {weight_g} g is below {MIN_WEIGHT_G} g")
        for index, limit in enumerate(self.brackets_g):
            if weight_g <= limit:
                return self.prices[product][index]
        raise ValueError(f"weight {weight_g} g is above the heaviest bracket ({self.brackets_g[-1]} g)")


@functools.cache
def default_tariff() -> Tariff:
    """The tariff shipped with the code (``tariff.json``), read once per process."""
    text = resources.files("domain.shipments").joinpath(TARIFF_RESOURCE).read_text(encoding="utf-8")
    return Tariff.from_json(text)
