"""The LetterShop products a partner can order (DESIGN §5) and their S10 service indicators."""

from enum import StrEnum


class Product(StrEnum):
    """A postal product; the value is the spelling used in import and export files."""

    A_POST = "A-POST"
    B_POST = "B-POST"
    REGISTERED = "REGISTERED"

    @property
    def service_indicator(self) -> str:
        """The two S10 service letters printed in front of the serial."""
        return _SERVICE_INDICATORS[self]

    @classmethod
    def parse(cls, text: str) -> "Product | None":
        """The product named by ``text`` (case-insensitive, surrounding blanks ignored), else None."""
        try:
            return cls(text.strip().upper())
        except ValueError:
            return None


DEFAULT_PRODUCT = Product.B_POST

_SERVICE_INDICATORS: dict[Product, str] = {
    Product.A_POST: "LA",
    Product.B_POST: "LB",
    Product.REGISTERED: "RR",
}
